//! Smaller fixes of issue 14, each through the same code paths a user reaches: crafted
//! frames through the host engine and the alert engine; a live monitor's metrics address.

mod common;

use std::{
    io::BufRead,
    net::{IpAddr, Ipv4Addr},
};

use monitor::{
    alerts::{AlertConfig, AlertEngine},
    host::HostFlows,
    table::SharedTable,
};
use monitor_common::{
    config::PortSet,
    craft::TcpFrame,
    flow::{C2S, S2C},
    parse::{parse_ethernet, Packet, ACK, FIN, RST, SYN},
};

const S: u64 = 1_000_000_000;
const CLIENT: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
const SERVER: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2));

/// One segment: client to server when `c2s`, else back.
fn frame(c2s: bool, seq: u32, ack: u32, flags: u8, window: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = if c2s {
        TcpFrame::new(CLIENT, 40000, SERVER, 443)
    } else {
        TcpFrame::new(SERVER, 443, CLIENT, 40000)
    }
    .flags(flags)
    .payload(payload);
    f.seq = seq;
    f.ack = ack;
    f.window = window;
    f.ethernet()
}

/// Runs `frames` (at 1 ms apart from `t0`) through the engine, then judges it every second
/// for `ticks` seconds; returns the zero-window time each direction was charged and whether
/// a zero_window alert was raised.
fn zero_window_after(frames: &[Vec<u8>], ticks: u64) -> ([u64; 2], bool) {
    let ports: PortSet = "443".parse().expect("ports");
    let mut engine = HostFlows::new(&ports);
    let mut alerts = AlertEngine::new(AlertConfig::default());
    let t0 = 1_700_000_000 * S;
    let mut pkt = Packet::default();
    for (i, f) in frames.iter().enumerate() {
        parse_ethernet(f.as_slice(), &mut pkt).expect("a crafted frame parses");
        engine.packet(&pkt, f, 1, t0 + i as u64 * 1_000_000);
    }
    let mut raised = false;
    let mut zero = [0; 2];
    let table = SharedTable::default();
    for k in 1..=ticks {
        let mut snap = engine.tick_into(&table, t0 + k * S);
        let t = alerts.tick(&mut snap, &[]);
        raised |= t.iter().any(|t| t.alert.kind.name() == "zero_window");
        let t = table.read();
        let h = &t.rows().next().expect("the flow's row").1.health;
        zero = [h.zero_window_ns[C2S], h.zero_window_ns[S2C]];
    }
    (zero, raised)
}

/// Handshake and one request, both answered: relative sequence numbers from 1.
fn handshake_and_request() -> Vec<Vec<u8>> {
    vec![
        frame(true, 100, 0, SYN, 64240, b""),
        frame(false, 900, 101, SYN | ACK, 65160, b""),
        frame(true, 101, 901, ACK, 502, b""),
        frame(true, 101, 901, ACK, 502, b"GET / HTTP/1.1\r\n\r\n"),
        frame(false, 901, 119, ACK, 509, b""),
    ]
}

#[test]
fn a_reset_with_window_zero_is_no_zero_window() {
    let mut frames = handshake_and_request();
    frames.push(frame(false, 901, 119, RST | ACK, 0, b""));
    let (zero, raised) = zero_window_after(&frames, 5);
    assert_eq!(zero, [0, 0], "zero-window time charged after a reset");
    assert!(!raised, "a zero_window alert after a reset");
}

#[test]
fn a_fin_with_window_zero_is_no_zero_window() {
    let mut frames = handshake_and_request();
    frames.push(frame(false, 901, 119, FIN | ACK, 0, b""));
    let (zero, raised) = zero_window_after(&frames, 5);
    assert_eq!(zero, [0, 0], "zero-window time charged after a FIN");
    assert!(!raised);
}

#[test]
fn a_closed_window_is_still_timed() {
    // The server stops reading: its ACK advertises window 0 and stays so.
    let mut frames = handshake_and_request();
    frames.push(frame(false, 901, 119, ACK, 0, b""));
    let (zero, raised) = zero_window_after(&frames, 5);
    assert!(
        zero[S2C] >= 3 * S,
        "the server's closed window is timed: {zero:?}"
    );
    assert_eq!(zero[C2S], 0);
    assert!(raised, "held over a second: zero_window");
}

/// The monitor's stderr up to its attach line (every start-up line before it).
fn start_up_lines(metrics: &str) -> Vec<String> {
    let lab = common::Lab::new("w");
    let mut child = lab
        .monitor(&["--metrics", metrics, "--duration", "1"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start monitor");
    let err = std::io::BufReader::new(child.stderr.take().expect("stderr"));
    let lines: Vec<String> = err.lines().map_while(Result::ok).collect();
    assert!(child.wait().expect("monitor").success(), "{lines:#?}");
    lines
        .into_iter()
        .take_while(|l| !l.contains("monitor: attached"))
        .collect()
}

#[test]
fn metrics_on_every_address_are_served_with_one_warning() {
    if !common::privileged() {
        return;
    }
    let open = start_up_lines("0.0.0.0:0");
    let warnings: Vec<&String> = open.iter().filter(|l| l.starts_with("warning: ")).collect();
    assert_eq!(warnings.len(), 1, "{open:#?}");
    assert!(warnings[0].contains("beyond this host"), "{open:#?}");
    assert!(open.iter().any(|l| l.contains("/metrics")), "{open:#?}");
    let local = start_up_lines("127.0.0.1:0");
    assert!(
        !local.iter().any(|l| l.starts_with("warning: ")),
        "{local:#?}"
    );
}
