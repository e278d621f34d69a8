//! `monitor live`: preflight, load, attach, then report every interval until a signal or
//! `--duration`; detach on every exit path (the `Ebpf` value owns every link).

use std::time::Duration;

use anyhow::Result;
use monitor_common::event;
use tokio::signal::unix::{signal, SignalKind};

use crate::{
    cli::LiveArgs,
    collector::{Clock, Collector},
    kernel::{
        attach::{attach_all, Target},
        load::load,
        preflight,
    },
    output,
    snapshot::Snapshot,
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
        preflight::check_no_legacy_filter(name)?;
        out.push(Target {
            name: name.clone(),
            index,
            kind,
        });
    }
    Ok(out)
}

/// Prints one report; `false` when stdout is gone and the run should end.
fn print(args: &LiveArgs, snap: &Snapshot) -> bool {
    let text = if args.json {
        output::json::render(snap)
    } else {
        output::text::render(snap)
    };
    output::stdout_line(&text).is_ok()
}

pub async fn run(args: LiveArgs) -> Result<()> {
    // Before attaching: a signal that arrives once we are attached must find its handler.
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sigterm = signal(SignalKind::terminate())?;
    let targets = targets(&args)?;
    let cfg = args.ports.to_config(0);
    let mut ebpf = load(&cfg, args.max_flows)?;
    let lines = attach_all(&mut ebpf, &targets, args.attach, args.tc_api)?;
    for l in &lines {
        output::status(&format!(
            "monitor: attached {l}; watching ports {}",
            args.ports
        ));
    }
    let mut collector = Collector::new(&mut ebpf, Clock::monotonic())?;
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
    loop {
        tokio::select! {
            _ = tick.tick() => {
                log_events(&mut collector);
                if !print(&args, &collector.collect()?) {
                    break;
                }
            }
            _ = sigint.recv() => break,
            _ = sigterm.recv() => break,
            _ = &mut stop => break,
        }
    }
    log_events(&mut collector);
    print(&args, &collector.collect()?);
    drop(collector);
    drop(ebpf);
    output::status("monitor: detached");
    Ok(())
}

fn log_events(c: &mut Collector) {
    for ev in c.drain_events() {
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
