//! `monitor live`: preflight, load, attach, then every tick collect, judge, publish, until
//! a signal, `--duration` or the UI's quit; detach on every exit path (the `Ebpf` value
//! owns every link).

use std::{
    fs::File,
    io::Write,
    path::Path,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::Result;
use aya::Ebpf;
use monitor_common::event::EventKind;
use tokio::signal::unix::{signal, SignalKind};

use crate::{
    alerts::{AlertConfig, AlertEngine, Transition},
    cli::{AlertArgs, LiveArgs, RecordArgs},
    collector::{Clock, Collector, Presence},
    error::usage,
    kernel::{
        attach::{attach_all, remove_added_clsact, Target},
        load::load,
        netns, preflight,
    },
    model::{FlowId, RunInfo},
    output::{self, http, metrics::Metrics},
    record::writer::{Recorder, Rotation, RunMeta},
    snapshot::Snapshot,
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
    check_files(&args.alerting, &args.export.record)
}

/// The alert engine's config and log, checked before anything is attached.
pub struct Alerting {
    engine: AlertEngine,
    log: Option<File>,
    /// Fed every tick when `--metrics` serves them.
    metrics: Option<Arc<Mutex<Metrics>>>,
    recorder: Option<Recorder>,
    /// Why a file output (the recording, the alerts log) stopped being written: the run
    /// goes on watching, and exits 1 at its end.
    lost: Option<String>,
}

impl Alerting {
    pub fn open(args: &AlertArgs, tick_s: f64) -> Result<Self> {
        let cfg = match &args.config {
            Some(p) => AlertConfig::load(p, tick_s)?,
            None => AlertConfig::default(),
        };
        let log = args.alerts_log.as_deref().map(open_log).transpose()?;
        Ok(Self {
            engine: AlertEngine::new(cfg),
            log,
            metrics: None,
            recorder: None,
            lost: None,
        })
    }

    /// Says on stderr that an output stopped, and remembers it for the exit code.
    fn lose(&mut self, what: &str, e: std::io::Error) {
        output::status(&format!(
            "monitor: {what}: {e}; no longer written (the monitor goes on, and exits 1 at the end)"
        ));
        self.lost.get_or_insert(format!("{what} stopped: {e}"));
    }

    fn write(&mut self, transitions: &[Transition]) {
        let Some(f) = self.log.as_mut() else { return };
        for t in transitions {
            let line = output::json::transition_line(t);
            if let Err(e) = writeln!(f, "{line}").and_then(|_| f.flush()) {
                self.log = None;
                self.lose("alerts log", e);
                return;
            }
        }
    }
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

/// Where the ticks go: stdout lines, or the terminal UI.
enum Sink {
    Headless { json: bool },
    Ui(tui::Ui),
}

impl Sink {
    /// Publishes one tick; `false` when the run should end (stdout's reader gone), an
    /// error when stdout could not be written (a full disk).
    fn publish(&mut self, snap: Snapshot, transitions: &[Transition]) -> Result<bool> {
        match self {
            Sink::Headless { json } => {
                for t in transitions {
                    if !output::print(&output::json::transition_line(t))? {
                        return Ok(false);
                    }
                }
                let text = if *json {
                    output::json::render(&snap)
                } else {
                    output::text::render(&snap)
                };
                output::print(&text)
            }
            Sink::Ui(ui) => {
                ui.publish(Arc::new(snap));
                Ok(true)
            }
        }
    }

    fn selected(&self) -> Option<FlowId> {
        match self {
            Sink::Ui(ui) => ui.selected(),
            Sink::Headless { .. } => None,
        }
    }
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
    let mut alerting = Alerting::open(&args.alerting, args.interval)?;
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
    alerting.metrics = args.export.metrics.is_some().then_some(metrics);
    if let Some(path) = &args.export.record.record {
        alerting.recorder = Some(Recorder::create(
            path,
            RunMeta {
                source: if ns.is_some() { "demo" } else { "live" },
                interfaces: args.interfaces.clone(),
                capture: None,
                ports: args.ports.to_string(),
                config: serde_json::to_value(alerting.engine.config()).unwrap_or_default(),
                start_ns: Clock::monotonic().now_epoch(),
            },
            Rotation::of(&args.export.record),
        )?);
    }
    let cfg = args.ports.to_config(0);
    let mut clsact_added = Vec::new();
    let (mut ebpf, lines, targets, presence) = netns::within(ns, || {
        let targets = targets(&args)?;
        if !args.headless {
            tui::Ui::check_terminal()?;
        }
        // Opened where the interfaces are, to ask about them from anywhere.
        let presence = Presence::open()?;
        let mut ebpf = load(&cfg, args.max_flows)?;
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
    let result = watch(
        &args,
        &info,
        &mut ebpf,
        presence,
        &mut alerting,
        &mut sigint,
        &mut sigterm,
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
    result?;
    match alerting.lost {
        Some(why) => Err(anyhow::anyhow!("{why}")),
        None => Ok(()),
    }
}

async fn watch(
    args: &LiveArgs,
    info: &RunInfo,
    ebpf: &mut Ebpf,
    presence: Presence,
    alerting: &mut Alerting,
    sigint: &mut tokio::signal::unix::Signal,
    sigterm: &mut tokio::signal::unix::Signal,
) -> Result<()> {
    // Attached: the recording replaces what was at its path (a run that failed before
    // this point left that file as it was).
    if let Some(r) = alerting.recorder.as_mut() {
        r.commit()
            .map_err(|e| anyhow::Error::from(e).context("writing the recording"))?;
    }
    let mut sink = if args.headless {
        for l in info.attach.split("; ") {
            output::status(&format!(
                "monitor: attached {l}; watching ports {}",
                info.ports
            ));
        }
        Sink::Headless { json: args.json }
    } else {
        Sink::Ui(tui::Ui::start(info.clone())?)
    };
    let mut collector = Collector::new(ebpf, Clock::monotonic(), info.targets.clone())?;
    collector.watch_presence(presence);
    // Interfaces already said to be gone, and whether every one is.
    let mut said_gone: Vec<String> = Vec::new();
    let mut all_gone = false;
    let mut tick = tokio::time::interval(Duration::from_secs_f64(args.interval));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    let stop = async {
        match args.duration {
            Some(d) => tokio::time::sleep(Duration::from_secs_f64(d)).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(stop);
    let quit_rx = match &mut sink {
        Sink::Ui(ui) => ui.take_quit(),
        Sink::Headless { .. } => None,
    };
    let quit = async move {
        match quit_rx {
            Some(rx) => {
                let _ = rx.await;
            }
            None => std::future::pending().await,
        }
    };
    let mut quit = std::pin::pin!(quit);
    let mut step = |collector: &mut Collector, sink: &mut Sink| -> Result<bool> {
        let started = Instant::now();
        let events = collector.drain_events();
        log_events(&events);
        let mut snap = collector.collect()?;
        for i in snap.interfaces.iter().filter(|i| i.gone) {
            if !said_gone.contains(&i.name) {
                output::status(&format!(
                    "monitor: interface {} is gone; nothing more is seen on it",
                    i.name
                ));
                said_gone.push(i.name.clone());
            }
        }
        all_gone = !snap.interfaces.is_empty() && snap.interfaces.iter().all(|i| i.gone);
        let transitions = alerting.engine.tick(&mut snap, &events);
        alerting.write(&transitions);
        if let Some(r) = alerting.recorder.as_mut() {
            if let Err(e) = r.tick(&snap, &events, &transitions) {
                alerting.recorder = None;
                alerting.lose("recording", e);
            }
        }
        if let Some(id) = sink.selected() {
            snap.spark = Some((id, alerting.engine.spark(&id)));
        }
        snap.collect_ns = started.elapsed().as_nanos() as u64;
        if let Some(m) = &alerting.metrics {
            if let Ok(mut m) = m.lock() {
                m.observe(&snap);
            }
        }
        Ok(sink.publish(snap, &transitions)? && !all_gone)
    };
    loop {
        tokio::select! {
            _ = tick.tick() => {
                if !step(&mut collector, &mut sink)? {
                    break;
                }
            }
            _ = &mut quit => break,
            _ = sigint.recv() => break,
            _ = sigterm.recv() => break,
            _ = &mut stop => break,
        }
    }
    if let Sink::Ui(ui) = sink {
        ui.stop()?;
    } else {
        // The last word in headless mode: a final report.
        step(&mut collector, &mut sink)?;
    }
    if all_gone {
        return Err(anyhow::anyhow!(
            "every watched interface is gone ({})",
            said_gone.join(", ")
        ));
    }
    Ok(())
}

fn log_events(events: &[monitor_common::event::Event]) {
    for ev in events {
        let kind = ev.kind().map_or("unknown", EventKind::name);
        log::info!("{kind}: {:?} dir {} ttl {}", ev.key, ev.dir, ev.ttl);
    }
}
