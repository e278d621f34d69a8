//! `monitor replay` against tshark 4.0.17: for every capture in testdata/pcaps, per
//! connection and direction, each expert-flag count equals what tshark flagged (golden files
//! made by scripts/tshark-golden.py, never edited by hand). Differences that cannot be
//! avoided are listed in KNOWN_DIFFERENCES with the reason, and asserted as such.

use std::{collections::BTreeMap, net::SocketAddr, path::PathBuf};

use monitor::{
    model::{Anomalies, DirCounts, FlowRecord},
    replay::analyse,
};
use monitor_common::{
    config::PortSet,
    flow::{C2S, S2C},
};
use serde_json::Value;

fn root() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../testdata"))
}

/// (tshark field, our value) for one direction.
fn ours(d: &DirCounts, a: &Anomalies) -> BTreeMap<&'static str, u64> {
    BTreeMap::from([
        ("frames", d.packets),
        ("payload_bytes", d.payload_bytes),
        ("syn", d.syns as u64),
        ("synack", d.synacks as u64),
        ("fin", d.fins as u64),
        ("rst", d.rsts as u64),
        ("retransmission", a.retransmits as u64),
        ("fast_retransmission", a.fast_retransmits as u64),
        ("spurious_retransmission", a.spurious_retransmits as u64),
        ("out_of_order", a.out_of_order as u64),
        ("lost_segment", a.lost_segments as u64),
        ("ack_lost_segment", a.acked_unseen as u64),
        ("duplicate_ack", a.dup_acks as u64),
        ("zero_window", a.zero_windows as u64),
        ("zero_window_probe", a.zero_window_probes as u64),
        ("window_full", a.window_full as u64),
        ("keep_alive", a.keep_alives as u64),
    ])
}

/// Compares one capture; returns the mismatches as readable lines.
fn compare(capture: &str) -> Vec<String> {
    let golden_path = root().join("golden").join(format!("{capture}.json"));
    let golden: Value = serde_json::from_slice(
        &std::fs::read(&golden_path).unwrap_or_else(|e| panic!("{}: {e}", golden_path.display())),
    )
    .expect("golden JSON");
    let snap = analyse(&root().join("pcaps").join(capture), &PortSet::all()).expect("replay");
    // Our records by endpoint pair, in first-seen order (a reused 4-tuple has several).
    let mut by_pair: BTreeMap<(SocketAddr, SocketAddr), Vec<&FlowRecord>> = BTreeMap::new();
    let records = snap.records();
    for f in records.iter() {
        let (c, s) = (f.client(), f.server());
        by_pair.entry((c.min(s), c.max(s))).or_default().push(f);
    }
    for v in by_pair.values_mut() {
        v.sort_by_key(|f| f.state.first_seen_ns);
        v.reverse(); // pop() takes the earliest
    }
    let mut problems = Vec::new();
    for conn in golden["connections"].as_array().expect("connections") {
        let eps: Vec<SocketAddr> = conn["endpoints"]
            .as_array()
            .expect("endpoints")
            .iter()
            .map(|e| e.as_str().expect("str").parse().expect("endpoint"))
            .collect();
        let pair = (eps[0].min(eps[1]), eps[0].max(eps[1]));
        let Some(rec) = by_pair.get_mut(&pair).and_then(|v| v.pop()) else {
            problems.push(format!("stream {}: no record for {pair:?}", conn["stream"]));
            continue;
        };
        for (dir_name, counts) in conn["directions"].as_object().expect("directions") {
            let (src, _) = dir_name.split_once("->").expect("A->B");
            let src: SocketAddr = src.parse().expect("src");
            let d = if src == rec.client() { C2S } else { S2C };
            let mine = ours(&rec.state.dir[d], rec.state.anomalies(d));
            for (field, value) in &mine {
                let want = counts[*field]
                    .as_u64()
                    .unwrap_or_else(|| panic!("golden lacks {field}"));
                if want != *value {
                    problems.push(format!(
                        "stream {} {dir_name} {field}: tshark {want}, monitor {value}",
                        conn["stream"]
                    ));
                }
            }
        }
    }
    for (pair, left) in by_pair {
        if !left.is_empty() {
            problems.push(format!(
                "{} record(s) for {pair:?} tshark does not have",
                left.len()
            ));
        }
    }
    problems
}

/// Captures where exact agreement is impossible, with the reason and the exact expected
/// difference lines (so the test still fails if anything else changes).
const KNOWN_DIFFERENCES: &[(&str, &str, &[&str])] = &[];

#[test]
fn every_capture_agrees_with_tshark() {
    let mut captures: Vec<String> = std::fs::read_dir(root().join("pcaps"))
        .expect("testdata/pcaps")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".pcap") || n.ends_with(".pcapng"))
        .collect();
    captures.sort();
    assert!(captures.len() >= 30, "captures missing: {captures:?}");
    let mut failures = Vec::new();
    for c in &captures {
        let problems = compare(c);
        let known = KNOWN_DIFFERENCES.iter().find(|(name, _, _)| name == c);
        match known {
            Some((_, _why, expected)) => {
                let expected: Vec<String> = expected.iter().map(|s| s.to_string()).collect();
                if problems != expected {
                    failures.push(format!("{c}: documented difference changed: {problems:#?}"));
                }
            }
            None if !problems.is_empty() => {
                failures.push(format!("{c}:\n  {}", problems.join("\n  ")))
            }
            None => {}
        }
    }
    assert!(
        failures.is_empty(),
        "disagreements with tshark:\n{}",
        failures.join("\n")
    );
}
