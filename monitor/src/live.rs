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
use monitor_common::event;
use tokio::signal::unix::{signal, SignalKind};

use crate::{
    alerts::{AlertConfig, AlertEngine, FlowId, Transition},
    cli::{AlertArgs, LiveArgs},
    collector::{Clock, Collector},
    error::usage,
    kernel::{
        attach::{attach_all, remove_added_clsact, Target},
        load::load,
        netns, preflight,
    },
    output::{self, http, metrics::Metrics},
    record::writer::{Recorder, RunMeta},
    snapshot::Snapshot,
    tui,
};

/// What the header of every output says about this run.
#[derive(Clone, Debug, Default)]
pub struct RunInfo {
    pub interfaces: Vec<String>,
    /// The interfaces attached to: name and ifindex (duplicates removed).
    pub targets: Vec<(String, u32)>,
    /// How the programs are attached, as the start-up lines said it.
    pub attach: String,
    pub ports: String,
}

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

/// The alert engine's config and log, checked before anything is attached.
pub struct Alerting {
    engine: AlertEngine,
    log: Option<File>,
    /// Fed every tick when `--metrics` serves them.
    metrics: Option<Arc<Mutex<Metrics>>>,
    recorder: Option<Recorder>,
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
        })
    }

    fn write(&mut self, transitions: &[Transition]) {
        let Some(f) = self.log.as_mut() else { return };
        for t in transitions {
            let line = output::json::transition_line(t);
            if let Err(e) = writeln!(f, "{line}").and_then(|_| f.flush()) {
                output::status(&format!("monitor: alerts log: {e}; no longer written"));
                self.log = None;
                return;
            }
        }
    }
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
    /// Publishes one tick; `false` when the run should end (stdout gone).
    fn publish(&mut self, snap: Snapshot, transitions: &[Transition]) -> bool {
        match self {
            Sink::Headless { json } => {
                for t in transitions {
                    if output::stdout_line(&output::json::transition_line(t)).is_err() {
                        return false;
                    }
                }
                let text = if *json {
                    output::json::render(&snap)
                } else {
                    output::text::render(&snap)
                };
                output::stdout_line(&text).is_ok()
            }
            Sink::Ui(ui) => {
                ui.publish(Arc::new(snap));
                true
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
        if args.interval > 1.0 {
            return Err(usage(
                format!(
                    "--record with --interval {}: a tick longer than 1 s",
                    args.interval
                ),
                "recordings are written every tick and lose at most one: use --interval 1 or less",
            ));
        }
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
            args.export.record.record_max_mb,
        )?);
    }
    let cfg = args.ports.to_config(0);
    let mut clsact_added = Vec::new();
    let (mut ebpf, lines, targets) = netns::within(ns, || {
        let targets = targets(&args)?;
        if !args.headless {
            tui::Ui::check_terminal()?;
        }
        let mut ebpf = load(&cfg, args.max_flows)?;
        match attach_all(
            &mut ebpf,
            &targets,
            args.attach,
            args.tc_api,
            &mut clsact_added,
        ) {
            Ok(lines) => Ok((ebpf, lines, targets)),
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
    result
}

async fn watch(
    args: &LiveArgs,
    info: &RunInfo,
    ebpf: &mut Ebpf,
    alerting: &mut Alerting,
    sigint: &mut tokio::signal::unix::Signal,
    sigterm: &mut tokio::signal::unix::Signal,
) -> Result<()> {
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
        let transitions = alerting.engine.tick(&mut snap, &events);
        alerting.write(&transitions);
        if let Some(r) = alerting.recorder.as_mut() {
            if let Err(e) = r.tick(&snap, &events, &transitions) {
                output::status(&format!("monitor: recording: {e}; no longer written"));
                alerting.recorder = None;
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
        Ok(sink.publish(snap, &transitions))
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
        ui.stop()
    } else {
        // The last word in headless mode: a final report.
        step(&mut collector, &mut sink)?;
        Ok(())
    }
}

fn log_events(events: &[monitor_common::event::Event]) {
    for ev in events {
        let kind = match ev.kind {
            event::FLOW_SEEN => "flow seen",
            event::RESET => "reset",
            event::HANDSHAKE_DONE => "handshake done",
            event::HANDSHAKE_REFUSED => "handshake refused",
            event::CLIENT_HELLO => "TLS ClientHello",
            event::SERVER_HELLO => "TLS ServerHello",
            event::SUSPECT_INJECTED_RST => "suspect injected reset",
            event::RESET_AFTER_HELLO => "reset after ClientHello",
            event::STALL_BEGAN => "stall began",
            event::STALL_ENDED => "stall ended",
            _ => "unknown event",
        };
        log::info!("{kind}: {:?} dir {} ttl {}", ev.key, ev.dir, ev.ttl);
    }
}
