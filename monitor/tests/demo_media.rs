//! The demo's traffic, captured on the edge's interface (tcpdump) and read through the host
//! analysis, judged by `media::verdict::judge`: the healthy MS-TURN sessions are genuine
//! pseudo-TLS (`ok`), the session behind the decrypting firewall is `intercepted`, and the
//! ICE session's Binding requests outnumber their responses. The monitor itself does not
//! run: this is the traffic the demo test's media alerts stand on.

mod common;

use std::{
    io::{BufRead, BufReader},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use common::media::{judge_capture, table, Judged};
use monitor::{
    demo::{self, lab::Lab, Scenario, SESSIONS},
    media::verdict::{ClientSent, ServerReplied, Verdict},
};

/// tcpdump on the edge's interface, once it said it is listening. Killed on drop.
struct Capture(Child);

impl Capture {
    fn start(lab: &Lab, file: &std::path::Path) -> Self {
        let mut child = Command::new("ip")
            .args([
                "netns", "exec", &lab.edge, "tcpdump", "-i", "edge0", "-U", "-s", "0",
            ])
            .arg("-w")
            .arg(file)
            .arg("tcp")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("tcpdump (cargo xtask setup installs it)");
        let mut err = BufReader::new(child.stderr.take().expect("stderr"));
        let mut line = String::new();
        while !line.contains("listening on") {
            line.clear();
            let n = err.read_line(&mut line).expect("tcpdump stderr");
            assert!(n > 0, "tcpdump ended before listening");
        }
        Capture(child)
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn session(name: &str) -> &'static demo::Session {
    SESSIONS.iter().find(|s| s.name == name).expect("a session")
}

fn of<'a>(judged: &'a [Judged], name: &str) -> Vec<&'a Judged> {
    let s = session(name);
    judged
        .iter()
        .filter(|j| j.client.ip() == s.client_ip() && j.server == s.server())
        .collect()
}

/// What is still missing from the capture, or nothing.
fn missing(judged: &[Judged]) -> Vec<String> {
    let mut out = Vec::new();
    for name in ["healthy", "lossy", "stalled", "closed"] {
        let genuine = of(judged, name).into_iter().any(|j| {
            let m = &j.media;
            let allocate = m.stun.is_some_and(|c| c.requests == 1 && c.responses == 1);
            m.client_sent == Some(ClientSent::PseudoTls)
                && m.server_replied == Some(ServerReplied::PseudoTls)
                && m.verdict == Some(Verdict::Ok)
                && allocate
        });
        if !genuine {
            out.push(format!(
                "{name}: a genuine pseudo-TLS exchange and Allocate"
            ));
        }
    }
    let intercepted = of(judged, "intercepted").into_iter().any(|j| {
        let m = &j.media;
        m.client_sent == Some(ClientSent::PseudoTls)
            && m.server_replied == Some(ServerReplied::Tls)
            && m.verdict == Some(Verdict::Intercepted)
            && m.evidence.as_ref().is_some_and(|e| {
                e.got.cipher == Some(0x002f) && e.got.handshakes.starts_with(&[2, 11])
            })
    });
    if !intercepted {
        out.push("intercepted: the firewall's ServerHello and Certificate".into());
    }
    let ice = of(judged, "ice").into_iter().any(|j| {
        let m = &j.media;
        m.client_sent == Some(ClientSent::Stun)
            && m.stun.is_some_and(|c| {
                c.responses >= 1 && c.requests > c.responses + c.errors && c.unanswered >= 1
            })
    });
    if !ice {
        out.push("ice: Binding requests unanswered".into());
    }
    out
}

#[test]
fn the_demo_traffic_is_genuine_ms_turn_intercepted_tls_and_unanswered_ice_checks() {
    if !common::privileged() {
        return;
    }
    let mut lab = Lab::build(SESSIONS.len()).expect("the demo's lab");
    let file = std::env::temp_dir().join(format!("monitor-demo-media-{}.pcap", std::process::id()));
    let capture = Capture::start(&lab, &file);
    let mut scenario = Scenario::start(&lab).expect("servers and injectors");
    scenario.begin(&lab).expect("clients");
    // The demo's own timeline: the faults go in at FAULT_AT.
    std::thread::sleep(Duration::from_secs_f64(demo::FAULT_AT));
    demo::faults(&lab).expect("faults");
    // Then wait for what is asserted, with a generous deadline.
    let deadline = Instant::now() + Duration::from_secs(60);
    let (judged, left) = loop {
        let judged = judge_capture(&file);
        let left = missing(&judged);
        if left.is_empty() || Instant::now() > deadline {
            break (judged, left);
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    scenario.stop();
    drop(capture);
    lab.remove();
    let _ = std::fs::remove_file(&file);
    println!("{}", table(&judged));
    assert!(left.is_empty(), "missing {left:?} in\n{}", table(&judged));
}
