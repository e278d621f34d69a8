//! `monitor demo`: the embedded default. A private lab (`lab`), synthetic media sessions
//! (`traffic`), faults a few seconds in (nftables rules, a reset injector), and the live
//! monitor on the edge's interface, so a viewer sees a healthy table turn into alerts.
//! Everything is removed on every exit path.

mod ice;
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
    thread::JoinHandle,
    time::Duration,
};

use anyhow::Result;

use crate::{
    cli::{DemoArgs, LiveArgs, TcApi, DEFAULT_PORTS},
    live, output,
};
use injector::Mode;
use lab::{Lab, CLIENT_NET, EDGE_IF, EDGE_IP, EDGE_NET};
use traffic::{ClientPlan, Speaks, Traffic};

/// When the faults begin (seconds after the sessions start).
pub const FAULT_AT: f64 = 4.0;

/// One demo session: its client address, server port, what happens to it, and the alert
/// kind it must raise (`None`: it must raise none).
pub struct Session {
    pub name: &'static str,
    /// The host number of the client: in the clients' network, or (`outbound`) in the
    /// edge's.
    pub client: u8,
    pub port: u16,
    /// The edge is the client: it reaches a server in the clients' network (a partner's
    /// media relay, at the same host number), as edges relaying media between organisations
    /// do.
    pub outbound: bool,
    pub speaks: Speaks,
    pub expect: Option<&'static str>,
    pub story: &'static str,
}

impl Session {
    pub fn client_ip(&self) -> Ipv4Addr {
        let net = if self.outbound { EDGE_NET } else { CLIENT_NET };
        ip(net, self.client)
    }

    pub fn server(&self) -> SocketAddr {
        let ip = if self.outbound {
            ip(CLIENT_NET, self.client)
        } else {
            EDGE_IP.parse().unwrap_or(Ipv4Addr::UNSPECIFIED)
        };
        SocketAddr::from((ip, self.port))
    }
}

fn ip(net: &str, host: u8) -> Ipv4Addr {
    format!("{net}.{host}")
        .parse()
        .unwrap_or(Ipv4Addr::UNSPECIFIED)
}

/// A session in the edge's own network, speaking MS-TURN.
const fn inbound(
    name: &'static str,
    client: u8,
    port: u16,
    expect: Option<&'static str>,
    story: &'static str,
) -> Session {
    Session {
        name,
        client,
        port,
        outbound: false,
        speaks: Speaks::MsTurn,
        expect,
        story,
    }
}

pub const SESSIONS: [Session; 8] = [
    inbound(
        "healthy",
        11,
        50001,
        None,
        "steady screen-share traffic both ways",
    ),
    inbound(
        "lossy",
        12,
        50002,
        Some("retransmit_rate"),
        "5 % of the server's packets toward the client dropped by the middlebox",
    ),
    inbound(
        "blackholed",
        13,
        50003,
        Some("handshake_failure"),
        "connects after the faults begin; the middlebox drops every SYN/ACK",
    ),
    inbound(
        "reset",
        14,
        50004,
        Some("media_intercepted"),
        "the middlebox resets both sides right after each pseudo-TLS hello",
    ),
    inbound(
        "stalled",
        15,
        50005,
        Some("zero_window"),
        "the client stops reading: its receive window closes",
    ),
    inbound(
        "closed",
        16,
        50006,
        None,
        "closes cleanly (FIN both ways) two seconds after the faults begin",
    ),
    Session {
        name: "intercepted",
        client: 17,
        port: 443,
        outbound: true,
        speaks: Speaks::MsTurn,
        expect: Some("media_intercepted"),
        story: "the edge reaches a partner's relay after the faults begin; a decrypting \
                firewall in the middlebox answers its pseudo-TLS hello in the relay's name \
                (TLS ServerHello, cipher 0x002f, Certificate), then resets both sides",
    },
    Session {
        name: "ice",
        client: 18,
        port: 50008,
        outbound: false,
        speaks: Speaks::IceTcp,
        // The dropped responses are a gap in the client's stream too (its ACKs run past
        // them), which the edge also sees as a stall.
        expect: Some("ice_check_failure"),
        story: "ICE checks over TCP (STUN Binding, RFC 4571) after the faults begin; the \
                middlebox passes the client's first Binding response and drops the rest",
    },
];

fn plan(s: &Session) -> ClientPlan {
    let mut p = ClientPlan::steady(s.speaks);
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
        "intercepted" => {
            p.start_at = FAULT_AT + 1.0;
            p.retry_after = Some(5.0);
        }
        "ice" => p.start_at = FAULT_AT + 1.0,
        _ => {}
    }
    p
}

/// The faults the middlebox applies at `FAULT_AT` (nftables rules in its forward chain).
pub fn faults(lab: &Lab) -> Result<()> {
    let s = |name: &str| {
        SESSIONS
            .iter()
            .find(|s| s.name == name)
            .map(|s| (s.client_ip(), s.port))
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
    // The decrypting firewall holds the hello back from the server (its injector answers).
    if let Some((ip, port)) = s("intercepted") {
        lab.nft(&format!(
            "add rule inet demo forward ip saddr {ip} tcp dport {port} @ih,0,8 0x16 counter drop"
        ))?;
    }
    // Binding success responses (type 0x0101 after the 2-byte RFC 4571 length) from the
    // client: the first (86 bytes of IP packet) within the quota, the rest over it.
    if let Some((ip, port)) = s("ice") {
        lab.nft(&format!(
            "add rule inet demo forward ip saddr {ip} tcp dport {port} @ih,16,16 0x0101 quota over 100 bytes counter drop"
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
        "monitor demo: lab {} / {} / {} (clients {CLIENT_NET}.11-18, edge {EDGE_IP} on {EDGE_IF}); faults at {FAULT_AT} s:",
        lab.clients, lab.middlebox, lab.edge
    ));
    for s in &SESSIONS {
        output::status(&format!(
            "  {:<11} {} -> {}  {}",
            s.name,
            s.client_ip(),
            s.server(),
            s.story
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
        self_stats: args.self_stats,
        media_samples: args.media_samples,
        alerting: args.alerting.clone(),
        export: args.export.clone(),
    })
}

/// The demo's traffic in its lab: the servers and the middlebox's injectors from
/// [`Scenario::start`], the clients from [`Scenario::begin`] (their plans count from there);
/// [`faults`] goes in at `FAULT_AT` after it. Stopped on drop.
pub struct Scenario {
    traffic: Traffic,
    stop_injectors: Arc<AtomicBool>,
    injectors: Vec<JoinHandle<Result<()>>>,
}

impl Scenario {
    pub fn start(lab: &Lab) -> Result<Self> {
        let mut traffic = Traffic::new();
        for s in &SESSIONS {
            let ns = if s.outbound { &lab.clients } else { &lab.edge };
            if s.outbound {
                lab.add_edge_address(s.client_ip())?;
            }
            traffic.server(Lab::open(ns)?, s.server(), s.speaks)?;
        }
        let mut scenario = Scenario {
            traffic,
            stop_injectors: Arc::new(AtomicBool::new(false)),
            injectors: Vec::new(),
        };
        // The reset injector on the clients' side, the firewall on the edge's.
        for (name, iface, mode) in [
            ("reset", "dm0", Mode::Reset),
            ("intercepted", "dm1", Mode::Intercept),
        ] {
            if let Some(s) = SESSIONS.iter().find(|s| s.name == name) {
                let t = scenario.injector(lab, iface, s.client_ip(), s.port, mode)?;
                scenario.injectors.push(t);
            }
        }
        Ok(scenario)
    }

    fn injector(
        &self,
        lab: &Lab,
        iface: &'static str,
        ip: Ipv4Addr,
        port: u16,
        mode: Mode,
    ) -> Result<JoinHandle<Result<()>>> {
        let ns = Lab::open(&lab.middlebox)?;
        let stop = self.stop_injectors.clone();
        Ok(std::thread::Builder::new()
            .name("demo-injector".into())
            .spawn(move || -> Result<()> {
                crate::kernel::netns::within(Some(&ns), || {
                    let inj = injector::Injector::open(iface, ip, port, mode)?;
                    while !stop.load(Ordering::Relaxed) {
                        if inj.poll()? {
                            log::info!("demo: {mode:?} after a ClientHello from {ip}");
                        }
                    }
                    Ok(())
                })
            })?)
    }

    /// Starts the clients.
    pub fn begin(&mut self, lab: &Lab) -> Result<()> {
        self.traffic.begin();
        for s in &SESSIONS {
            let ns = if s.outbound { &lab.edge } else { &lab.clients };
            self.traffic.client(
                Lab::open(ns)?,
                SocketAddr::from((s.client_ip(), 0)),
                s.server(),
                plan(s),
            )?;
        }
        Ok(())
    }

    /// Ends the sessions and the injectors; an injector's failure is reported on stderr.
    pub fn stop(&mut self) {
        self.stop_injectors.store(true, Ordering::SeqCst);
        self.traffic.stop();
        for t in self.injectors.drain(..) {
            match t.join() {
                Ok(Err(e)) => output::status(&format!("monitor demo: injector: {e:#}")),
                Err(_) => output::status("monitor demo: an injector panicked"),
                Ok(Ok(())) => {}
            }
        }
    }
}

impl Drop for Scenario {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn run_in_lab(live_args: LiveArgs, lab: &Lab) -> Result<()> {
    let edge = Lab::open(&lab.edge)?;
    // The monitor attaches before the sessions start, so it sees every handshake.
    let mut scenario = Scenario::start(lab)?;
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let sessions = async {
        // Sessions begin once the monitor is attached, so it sees every handshake.
        if ready_rx.await.is_err() {
            return std::future::pending::<Result<()>>().await;
        }
        scenario.begin(lab)?;
        tokio::time::sleep(Duration::from_secs_f64(FAULT_AT)).await;
        faults(lab)?;
        log::info!("demo: faults applied");
        std::future::pending::<Result<()>>().await
    };
    let result = tokio::select! {
        r = live::run_in(live_args, Some(&edge), Some(ready_tx)) => r,
        r = sessions => r,
    };
    scenario.stop();
    result
}
