//! `monitor live`: preflight, load, attach, then the pipeline on the kernel collector until
//! a signal, `--duration`, the UI's quit or every watched interface gone; detach on every
//! exit path (the `Ebpf` value owns every link).

mod source;

use std::{
    fs::File,
    path::Path,
    sync::{Arc, Mutex},
    time::Duration,
};

use anyhow::Result;
use aya::Ebpf;
use tokio::signal::unix::{signal, SignalKind};

pub use source::LiveSource;

use crate::{
    alerts::{AlertConfig, AlertEngine},
    cli::{AlertArgs, LiveArgs, RecordArgs},
    collector::{Clock, Collector, Presence},
    error::usage,
    evidence::{self, CapturePlan, EvidenceSettings, LiveCaptures},
    kernel::{
        attach::{attach_all, remove_added_clsact, Target},
        load::load_with_ring,
        netns, preflight,
        self_stats::SelfStats,
    },
    model::RunInfo,
    output::{self, http, metrics::Metrics},
    pipeline::{outputs, Pipeline},
    record::writer::{Recorder, Rotation, RunMeta},
    tui,
};

/// Checks everything a person could get wrong before touching the kernel.
fn targets(args: &LiveArgs) -> Result<Vec<Target>> {
    preflight::check_privileges()?;
    preflight::check_btf()?;
    let mut out: Vec<Target> = Vec::new();
    for name in &args.interfaces {
        let (index, kind) = preflight::interface(name)?;
        if out.iter().any(|t| t.index == index) {
            continue;
        }
        let slot = |i: u32| monitor_common::stats::if_slot(i, false);
        if let Some(t) = out.iter().find(|t| slot(t.index) == slot(index)) {
            return Err(usage(
                format!(
                    "interfaces {} (ifindex {}) and {name} (ifindex {index}) would share traffic counters",
                    t.name, t.index
                ),
                "watch them with two monitors",
            ));
        }
        preflight::check_no_legacy_filter(name)?;
        out.push(Target {
            name: name.clone(),
            index,
            kind,
        });
    }
    Ok(out)
}

/// The rules between arguments and the files they name that need no privileges and change
/// nothing: checked first, so that `demo` refuses them before it builds its lab.
pub fn check(args: &LiveArgs) -> Result<()> {
    if args.export.record.record.is_some() && args.interval > 1.0 {
        return Err(usage(
            format!(
                "--record with --interval {}: a tick longer than 1 s",
                args.interval
            ),
            "recordings are written every tick and lose at most one: use --interval 1 or less",
        ));
    }
    if let Some(p) = &args.alerting.config {
        AlertConfig::load(p, args.interval)?;
    }
    if let Some(addr) = args.export.metrics {
        // Tried and let go: `http::serve` binds it for good once the checks pass (the demo
        // only after building its lab).
        std::net::TcpListener::bind(addr).map_err(|e| {
            usage(
                format!("cannot listen on {addr} for --metrics: {e}"),
                "pick a free port, or an address of this host",
            )
        })?;
    }
    let files = [
        (args.export.record.record.as_deref(), "--record"),
        (args.alerting.alerts_log.as_deref(), "--alerts-log"),
    ];
    for (path, flag) in files {
        let Some(path) = path else { continue };
        let dir = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        if !dir.is_dir() {
            return Err(usage(
                format!("{flag} {}: no directory {}", path.display(), dir.display()),
                format!("give {flag} a file in an existing directory"),
            ));
        }
    }
    check_files(&args.alerting, &args.export.record)?;
    check_evidence(args)
}

/// `--evidence` on a live run: DIR writable and holding no other output under a capture's
/// name, and a snap length the kernel's ring holds.
fn check_evidence(args: &LiveArgs) -> Result<()> {
    let e = &args.export.evidence.evidence;
    let Some(dir) = &e.evidence else {
        return Ok(());
    };
    let max = monitor_common::evidence::EVIDENCE_BYTES as u32;
    if e.evidence_snaplen > max {
        return Err(usage(
            format!(
                "--evidence-snaplen {} on a live run: the kernel hands over at most {max} \
                 bytes of a packet",
                e.evidence_snaplen
            ),
            format!("give --evidence-snaplen {max} or less (a replay keeps up to 262144)"),
        ));
    }
    let others: Vec<(&str, &Path)> = [
        ("--record", args.export.record.record.as_deref()),
        ("--alerts-log", args.alerting.alerts_log.as_deref()),
        ("--config", args.alerting.config.as_deref()),
    ]
    .into_iter()
    .filter_map(|(what, p)| Some((what, p?)))
    .collect();
    evidence::check(dir, &others)
}

/// The evidence captures `--evidence` asks for: the plan the outputs name them by, and
/// the output that writes them.
fn evidence_output(args: &LiveArgs) -> Result<Option<(CapturePlan, LiveCaptures)>> {
    let e = &args.export.evidence;
    let Some(dir) = &e.evidence.evidence else {
        return Ok(None);
    };
    let plan = CapturePlan::new(dir);
    let settings = EvidenceSettings {
        dir: dir.clone(),
        max_bytes: e.evidence.evidence_max_mb.map(|mb| mb * 1024 * 1024),
        snaplen: e.evidence.evidence_snaplen,
        max_file_packets: evidence::MAX_FILE_PACKETS,
    };
    let ring = (e.evidence_ring_mb as usize) << 20;
    let writer = LiveCaptures::start(plan.clone(), settings, ring, args.interfaces.join(", "))?;
    Ok(Some((plan, writer)))
}

/// The alert engine, as `--config` sets it (the default rules without one).
pub fn engine(args: &AlertArgs, tick_s: f64) -> Result<AlertEngine> {
    let cfg = match &args.config {
        Some(p) => AlertConfig::load(p, tick_s)?,
        None => AlertConfig::default(),
    };
    Ok(AlertEngine::new(cfg))
}

/// Refuses an output that is one of the inputs, or two outputs that are one file, before
/// anything is built or attached (`demo` calls it before building its lab).
pub fn check_files(alerting: &AlertArgs, record: &RecordArgs) -> Result<()> {
    let inputs: Vec<(&str, &Path)> = alerting
        .config
        .iter()
        .map(|c| ("--config", c.as_path()))
        .collect();
    let outputs: Vec<(&str, &Path)> = [
        ("--record", record.record.as_deref()),
        ("--alerts-log", alerting.alerts_log.as_deref()),
    ]
    .into_iter()
    .filter_map(|(what, p)| Some((what, p?)))
    .collect();
    output::file::check_outputs(&outputs, &inputs)
}

fn open_log(p: &Path) -> Result<File> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(p)
        .map_err(|e| {
            usage(
                format!("cannot open alerts log {}: {e}", p.display()),
                "give a writable file path to --alerts-log",
            )
        })
}

pub async fn run(args: LiveArgs) -> Result<()> {
    run_in(args, None, None).await
}

/// `monitor live`, attaching inside network namespace `ns` when given (the demo's edge);
/// `ready` is told once the programs are attached.
pub async fn run_in(
    args: LiveArgs,
    ns: Option<&File>,
    ready: Option<tokio::sync::oneshot::Sender<()>>,
) -> Result<()> {
    // Before attaching: a signal that arrives once we are attached must find its handler.
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sigterm = signal(SignalKind::terminate())?;
    check(&args)?;
    let engine = engine(&args.alerting, args.interval)?;
    let alerts_log = args
        .alerting
        .alerts_log
        .as_deref()
        .map(open_log)
        .transpose()?;
    // Bound before attaching: a taken port is a usage error with nothing attached.
    let metrics = Arc::new(Mutex::new(Metrics::new(
        args.export.metrics_top_flows as usize,
    )));
    let server = match args.export.metrics {
        Some(addr) => {
            let (bound, task) = http::serve(addr, metrics.clone()).await?;
            output::status(&format!("monitor: metrics on http://{bound}/metrics"));
            if let Some(w) = http::exposure_warning(bound) {
                output::status(&w);
            }
            Some(task)
        }
        None => None,
    };
    let recorder = match &args.export.record.record {
        Some(path) => Some(Recorder::create(
            path,
            RunMeta {
                source: if ns.is_some() { "demo" } else { "live" },
                interfaces: args.interfaces.clone(),
                capture: None,
                ports: args.ports.to_string(),
                config: serde_json::to_value(engine.config()).unwrap_or_default(),
                start_ns: Clock::monotonic().now_epoch(),
            },
            Rotation::of(&args.export.record),
        )?),
        None => None,
    };
    let mut pipeline = Pipeline::new(engine).with_media_samples(u32::from(args.media_samples));
    let evidence = evidence_output(&args)?;
    let plan = evidence.as_ref().map(|(p, _)| p.clone());
    if let Some((_, writer)) = evidence {
        pipeline = pipeline.with(writer);
    }
    if let Some(f) = alerts_log {
        let log = outputs::AlertsLog::new(f);
        pipeline = pipeline.with(match &plan {
            Some(p) => log.with_captures(p.clone()),
            None => log,
        });
    }
    let snaplen = match &plan {
        Some(_) => args.export.evidence.evidence.evidence_snaplen,
        None => 0,
    };
    let cfg = args
        .ports
        .to_config(0)
        .with_samples(u32::from(args.media_samples))
        .with_snaplen(snaplen);
    let ring_bytes = args.export.evidence.evidence_ring_mb << 20;
    let mut clsact_added = Vec::new();
    let (mut ebpf, lines, targets, presence) = netns::within(ns, || {
        let targets = targets(&args)?;
        if !args.headless {
            tui::Ui::check_terminal()?;
        }
        // Opened where the interfaces are, to ask about them from anywhere.
        let presence = Presence::open()?;
        let mut ebpf = load_with_ring(&cfg, args.max_flows, ring_bytes)?;
        match attach_all(
            &mut ebpf,
            &targets,
            args.attach,
            args.tc_api,
            &mut clsact_added,
        ) {
            Ok(lines) => Ok((ebpf, lines, targets, presence)),
            Err(e) => {
                // Nothing is left attached: the links first, then the qdiscs added for them.
                drop(ebpf);
                for problem in remove_added_clsact(&clsact_added) {
                    output::status(&problem);
                }
                Err(e)
            }
        }
    })?;
    if let Some(r) = ready {
        let _ = r.send(());
    }
    let info = RunInfo {
        targets: targets.iter().map(|t| (t.name.clone(), t.index)).collect(),
        interfaces: args.interfaces.clone(),
        attach: lines.join("; "),
        ports: args.ports.to_string(),
    };
    let stop = async {
        tokio::select! {
            _ = sigint.recv() => {}
            _ = sigterm.recv() => {}
        }
    };
    let metrics = args.export.metrics.is_some().then_some(metrics);
    let result = watch(
        &args, &info, &mut ebpf, presence, pipeline, recorder, metrics, plan, stop,
    )
    .await;
    // Detach where we attached (netlink filters are found by ifindex in that namespace).
    netns::within(ns, move || {
        drop(ebpf);
        for problem in remove_added_clsact(&clsact_added) {
            output::status(&problem);
        }
        Ok(())
    })?;
    if let Some(t) = server {
        t.abort();
    }
    output::status("monitor: detached");
    result
}

/// The attached run: the collector as the pipeline's source, until `stop`, `--duration`,
/// the UI's quit, or every watched interface gone.
#[allow(clippy::too_many_arguments)]
async fn watch(
    args: &LiveArgs,
    info: &RunInfo,
    ebpf: &mut Ebpf,
    presence: Presence,
    mut pipeline: Pipeline,
    recorder: Option<Recorder>,
    metrics: Option<Arc<Mutex<Metrics>>>,
    captures: Option<CapturePlan>,
    stop: impl std::future::Future<Output = ()>,
) -> Result<()> {
    // Attached: the recording replaces what was at its path (a run that failed before
    // this point left that file as it was).
    if let Some(mut r) = recorder {
        r.commit()
            .map_err(|e| anyhow::Error::from(e).context("writing the recording"))?;
        let file = outputs::RecordFile::new(r);
        pipeline = pipeline.with(match &captures {
            Some(p) => file.with_captures(p.clone()),
            None => file,
        });
    }
    if let Some(m) = metrics {
        pipeline = pipeline.with(outputs::MetricsFeed(m));
    }
    let mut quit = None;
    if args.headless {
        for l in info.attach.split("; ") {
            output::status(&format!(
                "monitor: attached {l}; watching ports {}",
                info.ports
            ));
        }
        pipeline = pipeline.with(outputs::Headless {
            format: outputs::SummaryFormat::json(args.json),
            captures,
        });
    } else {
        let mut ui = tui::Ui::start(info.clone())?;
        quit = ui.take_quit();
        pipeline = pipeline.with(outputs::TerminalUi::new(ui));
    }
    let self_stats = match args.self_stats {
        true => Some(SelfStats::enable(ebpf)?),
        false => None,
    };
    let mut collector = Collector::new(ebpf, Clock::monotonic(), info.targets.clone())?;
    collector.watch_presence(presence);
    let mut source = LiveSource::new(collector, args.interval).await;
    if let Some(s) = self_stats {
        source = source.with_self_stats(s);
    }
    let duration = args.duration;
    let stop = async move {
        let quit = async move {
            match quit {
                Some(rx) => {
                    let _ = rx.await;
                }
                None => std::future::pending().await,
            }
        };
        let timeout = async move {
            match duration {
                Some(d) => tokio::time::sleep(Duration::from_secs_f64(d)).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = stop => {}
            () = quit => {}
            () = timeout => {}
        }
    };
    pipeline.run(&mut source, stop).await?;
    if let Some(gone) = source.all_gone() {
        return Err(anyhow::anyhow!("every watched interface is gone ({gone})"));
    }
    match pipeline.lost() {
        Some(why) => Err(anyhow::anyhow!("{why}")),
        None => Ok(()),
    }
}
