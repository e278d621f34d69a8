//! Captures holding frames whose headers lie: `monitor replay` trusts only what each frame
//! carries, as the kernel does (the same parser; lab_forged.rs is the live case). A lying
//! frame is counted by reason in `totals.skipped` and changes no flow.

mod common;

use std::{net::IpAddr, path::Path};

use monitor_common::{
    craft::TcpFrame,
    parse::{ACK, SYN},
};
use serde_json::Value;

const SIZE: usize = 500;
const BEFORE: u32 = 30;
const AFTER: u32 = 150;
const MS: u64 = 1_000_000;

/// A flow on port 50001: handshake, then the server sends BEFORE + AFTER segments of SIZE
/// bytes 10 ms apart, each ACKed by the client; `odd(server_next_seq)` frames are put in
/// between the two runs.
fn flow(client: IpAddr, server: IpAddr, odd: impl Fn(&TcpFrame) -> Vec<Vec<u8>>) -> Vec<Vec<u8>> {
    let c = TcpFrame::new(client, 40000, server, 50001);
    let s = TcpFrame::new(server, 50001, client, 40000);
    let (cisn, sisn) = (1000u32, 500_000u32);
    let mut frames = Vec::new();
    let mut syn = c.clone().flags(SYN);
    syn.seq = cisn;
    frames.push(syn.ethernet());
    let mut synack = s.clone().flags(SYN | ACK);
    synack.seq = sisn;
    synack.ack = cisn + 1;
    frames.push(synack.ethernet());
    let mut ack = c.clone();
    ack.seq = cisn + 1;
    ack.ack = sisn + 1;
    frames.push(ack.ethernet());
    let mut seq = sisn + 1;
    for i in 0..BEFORE + AFTER {
        if i == BEFORE {
            let mut next = s.clone().payload(&[0x55; 40]);
            next.seq = seq;
            next.ack = cisn + 1;
            frames.extend(odd(&next));
        }
        let mut d = s.clone().payload(&[0xab; SIZE]);
        d.seq = seq;
        d.ack = cisn + 1;
        frames.push(d.ethernet());
        seq += SIZE as u32;
        let mut a = c.clone();
        a.seq = cisn + 1;
        a.ack = seq;
        frames.push(a.ethernet());
    }
    frames
}

fn replay(dir: &Path, name: &str, frames: &[Vec<u8>], snap: Option<usize>) -> Value {
    let records: Vec<(u64, &[u8], u32)> = frames
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let kept = snap.map_or(f.len(), |s| s.min(f.len()));
            (
                1_700_000_000_000 * MS + i as u64 * 5 * MS,
                &f[..kept],
                f.len() as u32,
            )
        })
        .collect();
    common::replay_records(&dir.join(name), &records)
}

/// The flow as the real segments make it, and one frame counted under `reason`.
fn assert_untouched(name: &str, v: &Value, reason: &str) {
    let flows = v["flows"].as_array().expect("flows");
    assert_eq!(flows.len(), 1, "{name}: {flows:?}");
    let s2c = &flows[0]["s2c"];
    assert_eq!(
        s2c["payload_bytes"],
        u64::from(BEFORE + AFTER) * SIZE as u64,
        "{name}: payload is what the frames carried: {s2c}"
    );
    for field in [
        "retransmits",
        "out_of_order",
        "lost_segments",
        "acked_unseen",
    ] {
        assert_eq!(s2c[field], 0, "{name}: s2c.{field}: {s2c}");
    }
    assert_eq!(
        v["alerts"],
        serde_json::json!([]),
        "{name}: {}",
        v["alerts"]
    );
    let skipped = &v["totals"]["skipped"];
    assert_eq!(skipped[reason], 1, "{name}: skipped {skipped}");
    let total: u64 = skipped
        .as_object()
        .expect("skipped")
        .values()
        .filter_map(Value::as_u64)
        .sum();
    assert_eq!(total, 1, "{name}: only the odd frame is skipped: {skipped}");
}

#[test]
fn frames_whose_headers_lie_change_no_flow() {
    let dir = tempfile::tempdir().expect("tempdir");
    let v4 = |d| IpAddr::from([10, 0, 0, d]);
    let v6 = |d| IpAddr::from([0xfd00, 0, 0, 0, 0, 0, 0, d]);
    // The spoofed frame of the live case: 106 bytes claiming 65535.
    let lie4 = |f: &TcpFrame| {
        let mut f = f.clone();
        f.ip_len = Some(65535);
        vec![f.ethernet()]
    };
    let v = replay(
        dir.path(),
        "v4-length.pcap",
        &flow(v4(1), v4(2), lie4),
        None,
    );
    assert_untouched("ipv4 total length past the frame", &v, "malformed");
    let v = replay(
        dir.path(),
        "v6-length.pcap",
        &flow(v6(1), v6(2), lie4),
        None,
    );
    assert_untouched("ipv6 payload length past the frame", &v, "malformed");
    let first_fragment = |f: &TcpFrame| {
        let mut f = f.clone();
        f.more_fragments = true;
        vec![f.ethernet()]
    };
    let v = replay(
        dir.path(),
        "frag4.pcap",
        &flow(v4(1), v4(2), first_fragment),
        None,
    );
    assert_untouched("ipv4 first fragment", &v, "fragments");
    let v = replay(
        dir.path(),
        "frag6.pcap",
        &flow(v6(1), v6(2), first_fragment),
        None,
    );
    assert_untouched("ipv6 first fragment", &v, "fragments");
    let vlans = |f: &TcpFrame| {
        let mut f = f.clone();
        f.vlans = vec![1, 2, 3];
        vec![f.ethernet()]
    };
    let v = replay(dir.path(), "vlans.pcap", &flow(v4(1), v4(2), vlans), None);
    assert_untouched("three vlan tags", &v, "too_many_headers");
    let chain = |f: &TcpFrame| {
        let mut f = f.clone();
        f.ipv6_ext = (0..7).map(|_| (60u8, vec![0u8; 6])).collect();
        vec![f.ethernet()]
    };
    let v = replay(dir.path(), "chain.pcap", &flow(v6(1), v6(2), chain), None);
    assert_untouched("ipv6 extension chain too long", &v, "too_many_headers");
}

#[test]
fn a_snap_length_is_not_a_lie() {
    // Every record cut to 68 bytes, its original length kept: lengths are held to the
    // original length, so the flow is counted whole and nothing is malformed.
    let dir = tempfile::tempdir().expect("tempdir");
    let v4 = |d| IpAddr::from([10, 0, 0, d]);
    let v = replay(
        dir.path(),
        "snapped.pcap",
        &flow(v4(1), v4(2), |_| Vec::new()),
        Some(68),
    );
    let s2c = &v["flows"][0]["s2c"];
    assert_eq!(
        s2c["payload_bytes"],
        u64::from(BEFORE + AFTER) * SIZE as u64,
        "{s2c}"
    );
    assert_eq!(v["totals"]["skipped"]["malformed"], 0, "{}", v["totals"]);
}
