//! `monitor live --evidence DIR` between two namespaces, a lossy flow (nftables drops 5 %
//! of the client's data) paced over several seconds: its `retransmit_rate` alert's capture
//! is under its name while the alert is active, tshark reads it after a `kill -9` and
//! finds the retransmissions the monitor commented; with `--evidence-max-mb` the directory
//! stays within the limit and the monitor says what it dropped.

mod common;
mod evidence;

use std::{
    io::{BufRead, Read, Write},
    net::{Shutdown, TcpStream},
    path::Path,
    process::Command,
    time::{Duration, Instant},
};

use common::Lab;
use serde_json::Value;

const PORT: u16 = 50001;

fn lossy(lab: &Lab) {
    let rules = format!(
        "table inet loss {{\n chain in {{\n type filter hook input priority 0;\n tcp dport {PORT} numgen random mod 100 < 5 drop\n }}\n}}\n"
    );
    common::nft(&lab.server_ns, &rules);
}

/// The client sends 1,400-byte writes every 2 ms for `secs` seconds.
fn paced_client(lab: &Lab, secs: f64) -> std::thread::JoinHandle<()> {
    let ip = lab.server_ip;
    Lab::in_ns(&lab.client_ns, move || {
        let mut s = TcpStream::connect((ip, PORT)).expect("connect");
        s.set_nodelay(true).expect("nodelay");
        let chunk = vec![7u8; 1400];
        let end = Instant::now() + Duration::from_secs_f64(secs);
        while Instant::now() < end {
            if s.write_all(&chunk).is_err() {
                break;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        let _ = s.shutdown(Shutdown::Write);
        let _ = s.read(&mut [0u8; 16]);
    })
}

/// The raised alerts the log holds so far.
fn raised(log: &Path) -> Vec<Value> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["alert"] == "raised")
        .collect()
}

#[test]
fn a_capture_is_under_its_name_while_its_alert_is_active_and_reads_after_kill_9() {
    if !common::privileged() {
        return;
    }
    let lab = Lab::new("e");
    lossy(&lab);
    let sink = lab.sink(PORT);
    let dir = tempfile::tempdir().expect("tempdir");
    let ev = dir.path().join("ev");
    let log = dir.path().join("alerts.jsonl");
    let (ev_s, log_s) = (ev.display().to_string(), log.display().to_string());
    let (mut child, _err) = lab.start_monitor(&[
        "--ports",
        &PORT.to_string(),
        "--interval",
        "1",
        "--evidence",
        &ev_s,
        "--alerts-log",
        &log_s,
    ]);
    // Its stdout read away, so that the monitor never waits on a full pipe.
    let mut out = child.stdout.take().expect("stdout");
    let drain = std::thread::spawn(move || {
        let _ = std::io::copy(&mut out, &mut std::io::sink());
    });
    let client = paced_client(&lab, 12.0);
    let deadline = Instant::now() + Duration::from_secs(30);
    let alert = loop {
        let found = raised(&log)
            .into_iter()
            .find(|a| a["kind"] == "retransmit_rate");
        if let Some(a) = found {
            break a;
        }
        assert!(
            Instant::now() < deadline,
            "no retransmit_rate alert: {:?}",
            raised(&log)
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let path = evidence::capture_of(&alert, &ev);
    // Two more ticks of the flow appended in place, then the monitor killed mid-run.
    let size = std::fs::metadata(&path).expect("capture").len();
    let grown = Instant::now() + Duration::from_secs(20);
    while std::fs::metadata(&path).map_or(0, |m| m.len()) <= size {
        assert!(
            Instant::now() < grown,
            "the capture does not grow while the alert is active"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(1500));
    child.kill().expect("kill -9");
    let _ = child.wait();
    let _ = drain.join();
    client.join().expect("client");
    sink.join().expect("sink");
    // tshark reads it to its end without a word about a cut file.
    let read = Command::new("tshark")
        .args(["-r"])
        .arg(&path)
        .output()
        .expect("tshark is a test tool (cargo xtask setup)");
    let err = String::from_utf8_lossy(&read.stderr);
    assert!(read.status.success(), "tshark: {err}");
    assert!(
        !err.contains("cut short") && !err.contains("damaged"),
        "{err}"
    );
    let comments = evidence::check_live_capture(&alert, &ev);
    assert!(
        comments.len() > 100,
        "the flow's packets after the alert are in it: {} frames",
        comments.len()
    );
}

#[test]
fn the_evidence_directory_stays_within_its_limit_and_says_what_it_dropped() {
    if !common::privileged() {
        return;
    }
    let lab = Lab::new("m");
    lossy(&lab);
    let sink = lab.sink(PORT);
    let dir = tempfile::tempdir().expect("tempdir");
    let ev = dir.path().join("ev");
    let ev_s = ev.display().to_string();
    let (child, mut err) = lab.start_monitor(&[
        "--ports",
        &PORT.to_string(),
        "--interval",
        "1",
        "--duration",
        "14",
        "--evidence",
        &ev_s,
        "--evidence-max-mb",
        "1",
    ]);
    let client = paced_client(&lab, 12.0);
    let (summary, status) = common::last_json(child);
    client.join().expect("client");
    sink.join().expect("sink");
    let mut said = String::new();
    let _ = err.read_to_string(&mut said);
    assert!(status.success(), "monitor: {status}\n{said}");
    assert!(
        summary["alerts"].as_array().is_some_and(|a| !a.is_empty()),
        "the lossy flow alerts: {summary}"
    );
    assert!(
        said.lines()
            .any(|l| l.contains("dropped to keep") && l.contains("--evidence-max-mb 1")),
        "the drop is said: {said}"
    );
    let total: u64 = std::fs::read_dir(&ev)
        .expect("evidence dir")
        .filter_map(|e| e.ok()?.metadata().ok())
        .map(|m| m.len())
        .sum();
    assert!(total <= 1 << 20, "{total} bytes in {ev_s}");
    let _ = err.lines();
}
