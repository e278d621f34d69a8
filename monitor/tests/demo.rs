//! The demo in headless mode for 20 s: each faulty session raises its expected alert kind,
//! the healthy ones raise none, and the lab is gone afterwards.

mod common;
mod evidence;

use std::{collections::BTreeMap, process::Command};

use monitor::demo::SESSIONS;
use serde_json::Value;

#[test]
fn each_fault_raises_its_alert_and_no_other_session_alerts() {
    if !common::privileged() {
        return;
    }
    let log =
        std::env::temp_dir().join(format!("monitor-demo-alerts-{}.jsonl", std::process::id()));
    let _ = std::fs::remove_file(&log);
    let ev = tempfile::tempdir().expect("tempdir");
    let child = Command::new(common::MONITOR)
        .args([
            "demo",
            "--headless",
            "--json",
            "--duration",
            "20",
            "--alerts-log",
        ])
        .arg(&log)
        .arg("--evidence")
        .arg(ev.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start the demo");
    let pid = child.id();
    let out = child.wait_with_output().expect("demo output");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "demo failed: {stderr}");
    assert!(stderr.contains("lab removed"), "{stderr}");

    let lines: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let transitions: Vec<&Value> = lines.iter().filter(|v| v.get("alert").is_some()).collect();
    let summaries: Vec<&Value> = lines.iter().filter(|v| v.get("flows").is_some()).collect();
    assert!(
        summaries.len() >= 15,
        "a summary per tick: {}",
        summaries.len()
    );

    // Kinds raised per client host (the session's remote).
    let mut raised: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for t in &transitions {
        if t["alert"] == "raised" {
            let session = t["session"].as_str().expect("session");
            let host = session.split('#').next().unwrap_or_default().to_string();
            raised
                .entry(host)
                .or_default()
                .push(t["kind"].as_str().unwrap_or_default().into());
        }
    }
    for s in &SESSIONS {
        let host = s.client_ip().to_string();
        let kinds = raised.get(&host).cloned().unwrap_or_default();
        match s.expect {
            Some(k) => assert!(
                kinds.iter().any(|x| x == k),
                "session {} ({host}) should raise {k}, raised {kinds:?}\n{stderr}",
                s.name
            ),
            None => assert!(
                kinds.is_empty(),
                "session {} ({host}) raised {kinds:?}",
                s.name
            ),
        }
    }
    // Every raised alert carries its evidence.
    for t in &transitions {
        assert!(
            t["evidence"].is_object() && t["summary"].as_str().is_some_and(|s| !s.is_empty()),
            "{t}"
        );
    }
    // The media verdicts name the cause: the hello answered in the relay's name is
    // `intercepted`, the hello reset by the middlebox `rejected` (one alert: no `tls_stall`
    // beside it); only the STUN session's checks fail.
    let media = |host: &str| -> Vec<&Value> {
        transitions
            .iter()
            .filter(|t| t["alert"] == "raised" && t["kind"] == "media_intercepted")
            .filter(|t| {
                t["session"]
                    .as_str()
                    .is_some_and(|s| s.starts_with(&format!("{host}#")))
            })
            .copied()
            .collect()
    };
    let host = |name: &str| {
        SESSIONS
            .iter()
            .find(|s| s.name == name)
            .map(|s| s.client_ip().to_string())
            .unwrap_or_default()
    };
    let intercepted = media(&host("intercepted"));
    assert!(
        intercepted
            .iter()
            .any(|t| t["evidence"]["verdict"] == "intercepted"),
        "{intercepted:?}"
    );
    let reset = media(&host("reset"));
    assert!(
        reset
            .iter()
            .any(|t| t["evidence"]["verdict"] == "rejected" && t["evidence"]["cause"] == "reset"),
        "{reset:?}"
    );
    let reset_kinds = raised.get(&host("reset")).cloned().unwrap_or_default();
    assert!(
        !reset_kinds.iter().any(|k| k == "tls_stall"),
        "{reset_kinds:?}"
    );
    for (h, kinds) in &raised {
        if *h != host("ice") {
            assert!(
                !kinds.iter().any(|k| k == "ice_check_failure"),
                "{h}: {kinds:?}"
            );
        }
    }
    // Every flow of the healthy sessions speaks genuine pseudo-TLS and MS-TURN.
    let last = summaries.last().expect("a summary");
    for f in last["flows"].as_array().into_iter().flatten() {
        if f["server"].as_str().is_some_and(|s| s.ends_with(":50001")) {
            assert_eq!(f["media"]["verdict"], "ok", "{f}");
            assert_eq!(f["media"]["client_sent"], "pseudo_tls", "{f}");
        }
    }

    // The alerts log has the same transitions, one JSON line each.
    let logged = std::fs::read_to_string(&log).expect("alerts log");
    assert_eq!(logged.lines().count(), transitions.len());
    for l in logged.lines() {
        let v: Value = serde_json::from_str(l).expect("log line is JSON");
        assert!(v.get("alert").is_some() && v.get("kind").is_some());
    }
    let _ = std::fs::remove_file(&log);

    // Every raised alert names its evidence capture, the same in stdout and the log, and
    // each capture shows what its alert is about (`evidence::check_live_capture`).
    let raised_lines: Vec<&Value> = transitions
        .iter()
        .filter(|t| t["alert"] == "raised")
        .copied()
        .collect();
    let logged_raised: Vec<Value> = logged
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["alert"] == "raised")
        .collect();
    let mut kinds_with_capture = Vec::new();
    for (t, l) in raised_lines.iter().zip(&logged_raised) {
        assert_eq!(t["capture"], l["capture"], "{t}\n{l}");
        let comments = evidence::check_live_capture(t, ev.path());
        assert!(
            comments.iter().any(|c| !c.is_empty()),
            "{}: no packet commented",
            t["capture"]
        );
        kinds_with_capture.push(t["kind"].as_str().unwrap_or_default().to_string());
    }
    for kind in [
        "retransmit_rate",
        "reset",
        "media_intercepted",
        "ice_check_failure",
    ] {
        assert!(
            kinds_with_capture.iter().any(|k| k == kind),
            "a {kind} alert with its capture: {kinds_with_capture:?}"
        );
    }
    assert!(
        stderr.contains(&format!("evidence capture(s) in {}", ev.path().display())),
        "{stderr}"
    );

    // The last summary lists the active alerts on their flows.
    let last = summaries.last().expect("a summary");
    let flows = last["flows"].as_array().expect("flows");
    let lossy = flows
        .iter()
        .find(|f| f["server"].as_str().is_some_and(|s| s.ends_with(":50002")))
        .expect("the lossy flow");
    assert!(lossy["s2c"]["retransmits"].as_u64().unwrap_or(0) > 0);
    assert!(last["alerts"].as_array().is_some_and(|a| !a.is_empty()));
    assert_eq!(last["totals"]["lost_events"], 0);

    // Nothing of the lab is left.
    assert_eq!(common::demo_namespaces(Some(pid)), Vec::<String>::new());
}

#[test]
fn the_demo_removes_its_lab_on_sigterm() {
    if !common::privileged() {
        return;
    }
    let mut child = Command::new(common::MONITOR)
        .args(["demo", "--headless", "--json"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start the demo");
    let pid = child.id();
    // Its stderr, line by line, read on a thread so the wait for a line has a deadline.
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line);
        }
    });
    // Wait until the lab exists and the monitor is attached in it.
    let end = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let mut seen = Vec::new();
    while !seen
        .iter()
        .any(|l: &String| l.contains("monitor: attached"))
    {
        let left = end.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok(l) => seen.push(l),
            Err(e) => panic!("the demo did not attach ({e}): {seen:#?}"),
        }
    }
    assert_eq!(common::demo_namespaces(Some(pid)).len(), 3, "the lab is up");
    // SAFETY: a plain system call on a process id we own; it touches no memory of ours.
    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    let status = child.wait().expect("demo exit");
    reader.join().expect("stderr reader");
    seen.extend(rx.try_iter());
    let stderr = seen.join("\n");
    assert!(status.success(), "{stderr}");
    assert!(stderr.contains("lab removed"), "{stderr}");
    assert_eq!(common::demo_namespaces(Some(pid)), Vec::<String>::new());
}
