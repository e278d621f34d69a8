//! A scan in a capture: 20,000 clients each send one SYN toward one server port and are never
//! answered. `monitor replay --json` ends with one roll-up alert for that server counting
//! the sessions, not one alert per client, and a healthy session toward the same server
//! stays out of it.

mod common;

use std::net::IpAddr;

use monitor_common::{
    craft::TcpFrame,
    parse::{ACK, SYN},
};

const CLIENTS: u32 = 20_000;
const MS: u64 = 1_000_000;
const T0: u64 = 1_700_000_000_000 * MS;
/// The SYNs are spread over 10 s of capture time: those of the first 7 s time out (3 s).
const SPACING_NS: u64 = 10_000 * MS / CLIENTS as u64;

fn scan_client(i: u32) -> IpAddr {
    IpAddr::from([10, 100 + (i >> 16) as u8, (i >> 8) as u8, i as u8])
}

/// A session that works all along: handshake, then a segment each way every 500 ms.
fn healthy(client: IpAddr, server: IpAddr) -> Vec<(u64, Vec<u8>)> {
    let c = TcpFrame::new(client, 45000, server, 50001);
    let s = TcpFrame::new(server, 50001, client, 45000);
    let (mut cseq, mut sseq) = (7000u32, 900_000u32);
    let mut out = Vec::new();
    let mut syn = c.clone().flags(SYN);
    syn.seq = cseq;
    out.push((T0, syn.ethernet()));
    let mut synack = s.clone().flags(SYN | ACK);
    (synack.seq, synack.ack) = (sseq, cseq + 1);
    out.push((T0 + MS, synack.ethernet()));
    (cseq, sseq) = (cseq + 1, sseq + 1);
    for k in 0..22u64 {
        let t = T0 + 2 * MS + k * 500 * MS;
        let mut d = c.clone().payload(&[0x11; 100]);
        (d.seq, d.ack) = (cseq, sseq);
        cseq += 100;
        out.push((t, d.ethernet()));
        let mut r = s.clone().payload(&[0x22; 100]);
        (r.seq, r.ack) = (sseq, cseq);
        sseq += 100;
        out.push((t + MS, r.ethernet()));
        let mut a = c.clone();
        (a.seq, a.ack) = (cseq, sseq);
        out.push((t + 2 * MS, a.ethernet()));
    }
    out
}

#[test]
fn a_scan_of_one_server_port_is_one_alert_counting_its_sessions() {
    let server = IpAddr::from([10, 0, 0, 2]);
    let mut frames: Vec<(u64, Vec<u8>)> = (0..CLIENTS)
        .map(|i| {
            let mut syn = TcpFrame::new(scan_client(i), 40000, server, 50001).flags(SYN);
            syn.seq = i.wrapping_mul(2_654_435_761);
            (T0 + i as u64 * SPACING_NS, syn.ethernet())
        })
        .collect();
    let fine = IpAddr::from([10, 9, 9, 9]);
    frames.extend(healthy(fine, server));
    frames.sort_by_key(|(t, _)| *t);
    let records: Vec<(u64, &[u8], u32)> = frames
        .iter()
        .map(|(t, f)| (*t, f.as_slice(), f.len() as u32))
        .collect();
    let dir = tempfile::tempdir().expect("tempdir");
    let v = common::replay_records(&dir.path().join("scan.pcap"), &records);
    let flows = v["flows"].as_array().expect("flows");
    assert_eq!(flows.len(), CLIENTS as usize + 1);
    let alerts = v["alerts"].as_array().expect("alerts");
    let brief: Vec<String> = alerts
        .iter()
        .map(|a| format!("{} {} {}", a["kind"], a["session"], a["summary"]))
        .collect();
    assert!(
        alerts.len() <= 3,
        "a bounded number of alerts: {}",
        alerts.len()
    );
    let rollup = alerts
        .iter()
        .find(|a| a["session"] == "rollup:10.0.0.2:50001")
        .unwrap_or_else(|| panic!("no roll-up alert for the server: {brief:?}"));
    assert_eq!(rollup["kind"], "handshake_failure");
    assert_eq!(rollup["server"], "10.0.0.2:50001");
    let sessions = rollup["evidence"]["sessions"].as_u64().expect("sessions");
    // The SYNs of the first 7 s have timed out by the end of the capture.
    assert!(
        (13_000..CLIENTS as u64).contains(&sessions),
        "sessions {sessions}"
    );
    assert_eq!(rollup["flows"], sessions, "one flow per client");
    let summary = rollup["summary"].as_str().expect("summary");
    assert!(
        summary.starts_with(&format!("{sessions} sessions toward 10.0.0.2:50001: ")),
        "{summary}"
    );
    assert!(rollup["evidence"]["worst_session"].is_string(), "{rollup}");
    // The healthy session toward the same server is in no alert.
    let f = flows
        .iter()
        .find(|f| f["client"] == "10.9.9.9:45000")
        .expect("the healthy flow");
    assert_eq!(f["alerts"], serde_json::json!([]), "{f}");
    assert_eq!(f["handshake"]["outcome"], "ok", "{f}");
}
