//! `monitor demo`: the embedded default. A private lab (`lab`), synthetic media sessions
//! (`traffic`), faults a few seconds in (nftables rules, a reset injector), and the live
//! monitor on the edge's interface, so a viewer sees a healthy table turn into alerts.
//! Everything is removed on every exit path.

pub mod injector;
pub mod lab;
mod sys;
pub mod traffic;

use std::{
    net::{Ipv4Addr, SocketAddr},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Duration,
};

use anyhow::Result;

use crate::{
    cli::{DemoArgs, LiveArgs, TcApi, DEFAULT_PORTS},
    live, output,
};
use lab::{Lab, CLIENT_NET, EDGE_IF, EDGE_IP};
use traffic::{ClientPlan, Traffic};

/// When the faults begin (seconds after the sessions start).
pub const FAULT_AT: f64 = 4.0;

/// One demo session: its client address, server port, what happens to it, and the alert
/// kind it must raise (`None`: it must raise none).
pub struct Session {
    pub name: &'static str,
    pub client: u8,
    pub port: u16,
    pub expect: Option<&'static str>,
    pub story: &'static str,
}

pub const SESSIONS: [Session; 6] = [
    Session {
        name: "healthy",
        client: 11,
        port: 50001,
        expect: None,
        story: "steady screen-share traffic both ways",
    },
    Session {
        name: "lossy",
        client: 12,
        port: 50002,
        expect: Some("retransmit_rate"),
        story: "5 % of the server's packets toward the client dropped by the middlebox",
    },
    Session {
        name: "blackholed",
        client: 13,
        port: 50003,
        expect: Some("handshake_failure"),
        story: "connects after the faults begin; the middlebox drops every SYN/ACK",
    },
    Session {
        name: "reset",
        client: 14,
        port: 50004,
        expect: Some("tls_stall"),
        story: "the middlebox resets both sides right after each ClientHello",
    },
    Session {
        name: "stalled",
        client: 15,
        port: 50005,
        expect: Some("zero_window"),
        story: "the client stops reading: its receive window closes",
    },
    Session {
        name: "closed",
        client: 16,
        port: 50006,
        expect: None,
        story: "closes cleanly (FIN both ways) two seconds after the faults begin",
    },
];

fn client_ip(s: &Session) -> Ipv4Addr {
    format!("{CLIENT_NET}.{}", s.client)
        .parse()
        .unwrap_or(Ipv4Addr::UNSPECIFIED)
}

fn plan(s: &Session) -> ClientPlan {
    let mut p = ClientPlan {
        start_at: 0.0,
        stop_reading_at: None,
        close_at: None,
        retry_after: None,
        small_rcvbuf: false,
    };
    match s.name {
        "blackholed" => {
            // After the middlebox's rule is in (it goes in at FAULT_AT).
            p.start_at = FAULT_AT + 1.0;
            p.retry_after = Some(12.0);
        }
        "reset" => {
            p.start_at = FAULT_AT;
            p.retry_after = Some(5.0);
        }
        "stalled" => {
            p.stop_reading_at = Some(FAULT_AT);
            p.small_rcvbuf = true;
        }
        "closed" => p.close_at = Some(FAULT_AT + 2.0),
        _ => {}
    }
    p
}

/// The faults the middlebox applies at `FAULT_AT` (nftables rules in its forward chain).
fn faults(lab: &Lab) -> Result<()> {
    let s = |name: &str| {
        SESSIONS
            .iter()
            .find(|s| s.name == name)
            .map(|s| (client_ip(s), s.port))
    };
    if let Some((ip, port)) = s("lossy") {
        lab.nft(&format!(
            "add rule inet demo forward ip daddr {ip} tcp sport {port} numgen random mod 100 < 5 counter drop"
        ))?;
    }
    if let Some((ip, port)) = s("blackholed") {
        lab.nft(&format!(
            "add rule inet demo forward ip daddr {ip} tcp sport {port} tcp flags & (syn | ack) == syn | ack counter drop"
        ))?;
    }
    Ok(())
}

pub async fn run(mut args: DemoArgs) -> Result<()> {
    if !args.headless && crate::tui::Ui::check_terminal().is_err() {
        // Run from a script or CI: the same lab, with output a program can read.
        output::status("monitor demo: no terminal; running headless (alert transitions and JSON summaries on stdout)");
        args.headless = true;
        args.json = true;
    }
    // Every argument and the files they name are checked before the lab is built.
    let live_args = live_args(&args)?;
    live::check(&live_args)?;
    let mut lab = Lab::build(SESSIONS.len())?;
    output::status(&format!(
        "monitor demo: lab {} / {} / {} (clients {CLIENT_NET}.11-16, edge {EDGE_IP} on {EDGE_IF}); faults at {FAULT_AT} s:",
        lab.clients, lab.middlebox, lab.edge
    ));
    for s in &SESSIONS {
        output::status(&format!(
            "  {:<10} {}.{} -> {EDGE_IP}:{}  {}",
            s.name, CLIENT_NET, s.client, s.port, s.story
        ));
    }
    let result = run_in_lab(live_args, &lab).await;
    lab.remove();
    output::status("monitor demo: lab removed");
    result
}

/// What the monitor on the edge is asked to do.
fn live_args(args: &DemoArgs) -> Result<LiveArgs> {
    Ok(LiveArgs {
        interfaces: vec![EDGE_IF.into()],
        ports: DEFAULT_PORTS.parse().map_err(|e| anyhow::anyhow!("{e}"))?,
        attach: args.attach,
        tc_api: TcApi::Auto,
        headless: args.headless,
        json: args.json,
        interval: args.interval,
        duration: args.duration,
        max_flows: 65_536,
        media_samples: args.media_samples,
        alerting: args.alerting.clone(),
        export: args.export.clone(),
    })
}

async fn run_in_lab(live_args: LiveArgs, lab: &Lab) -> Result<()> {
    let edge = Lab::open(&lab.edge)?;
    let mut traffic = Traffic::new();
    for s in &SESSIONS {
        traffic.server(
            Lab::open(&lab.edge)?,
            SocketAddr::from(([10, 88, 2, 2], s.port)),
        )?;
    }
    // The monitor attaches before the sessions start, so it sees every handshake.
    let stop_inj = Arc::new(AtomicBool::new(false));
    let injector = {
        let ns = Lab::open(&lab.middlebox)?;
        let stop = stop_inj.clone();
        let target = SESSIONS
            .iter()
            .find(|s| s.name == "reset")
            .map(|s| (client_ip(s), s.port));
        std::thread::Builder::new()
            .name("demo-injector".into())
            .spawn(move || -> Result<()> {
                let Some((ip, port)) = target else {
                    return Ok(());
                };
                crate::kernel::netns::within(Some(&ns), || {
                    let inj = injector::Injector::open("dm0", ip, port)?;
                    while !stop.load(Ordering::Relaxed) {
                        if inj.poll()? {
                            log::info!("demo: injected resets after a ClientHello from {ip}");
                        }
                    }
                    Ok(())
                })
            })?
    };
    let lab_ref = lab;
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let sessions = async {
        // Sessions begin once the monitor is attached, so it sees every handshake.
        if ready_rx.await.is_err() {
            return std::future::pending::<Result<()>>().await;
        }
        traffic.begin();
        for s in &SESSIONS {
            traffic.client(
                Lab::open(&lab_ref.clients)?,
                SocketAddr::from((client_ip(s), 0)),
                SocketAddr::from(([10, 88, 2, 2], s.port)),
                plan(s),
            )?;
        }
        tokio::time::sleep(Duration::from_secs_f64(FAULT_AT)).await;
        faults(lab_ref)?;
        log::info!("demo: faults applied");
        std::future::pending::<Result<()>>().await
    };
    let result = tokio::select! {
        r = live::run_in(live_args, Some(&edge), Some(ready_tx)) => r,
        r = sessions => r,
    };
    stop_inj.store(true, Ordering::SeqCst);
    traffic.stop();
    match injector.join() {
        Ok(Err(e)) => output::status(&format!("monitor demo: reset injector: {e:#}")),
        Err(_) => output::status("monitor demo: the reset injector panicked"),
        Ok(Ok(())) => {}
    }
    result
}
