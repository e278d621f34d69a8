//! Group 3b, a SYN flood, live: `clients` spoofed SYNs, each from its own client, sent at
//! about `pps` into the watched port of a host that serves one real session meanwhile, with
//! `monitor live --headless` on that host's veth at a 1 s interval. What it measures: how
//! many reports came and the longest gap between two (reports keep their interval when no
//! tick takes longer than it), events lost to a full ring, the alerts live at the end (the
//! flood rolls up), and whether the healthy session raised anything. `tests/lab_flood.rs`
//! holds the same properties on a smaller flood in the test command.

use std::{
    io::{BufRead, BufReader},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::{json, Value};

use crate::{common::Lab, stats::Figure};

const PORT: u16 = 50000;

/// One run: the flood starts 2 s into a `secs` run.
fn run(clients: u32, pps: u32, secs: f64) -> Value {
    let lab = Lab::new("bf");
    let mut monitor = Command::new("ip")
        .args([
            "netns",
            "exec",
            &lab.client_ns,
            crate::MONITOR,
            "live",
            "-i",
            &lab.client_if,
        ])
        .args([
            "--headless",
            "--ports",
            &PORT.to_string(),
            "--interval",
            "1",
        ])
        .args(["--max-flows", &(clients * 2).to_string()])
        .arg("--duration")
        .arg(secs.to_string())
        // Each tick's duration, from the monitor's own account of where a tick went.
        .env("RUST_LOG", "monitor::pipeline=debug")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the monitor");
    let mut err = BufReader::new(monitor.stderr.take().expect("stderr"));
    let mut line = String::new();
    err.read_line(&mut line).expect("the monitor's first line");
    assert!(line.contains("attached"), "monitor did not attach: {line}");
    let ticks = std::thread::spawn(move || {
        err.lines()
            .map_while(Result::ok)
            .filter_map(|l| tick_seconds(&l))
            .fold(0.0, f64::max)
    });
    // Reports (text: each ends with its "not analysed" line), timed as they arrive, and
    // the alert transitions before them.
    let out = monitor.stdout.take().expect("stdout");
    let reader = std::thread::spawn(move || {
        let (mut ends, mut last_totals, mut raised, mut cleared) =
            (Vec::new(), String::new(), 0i64, 0i64);
        let mut healthy_alerts = 0;
        for l in BufReader::new(out).lines().map_while(Result::ok) {
            if l.starts_with("not analysed:") {
                ends.push(Instant::now());
            } else if l.starts_with("flows ") {
                last_totals = l;
            } else if l.starts_with('{') {
                let v: Value = serde_json::from_str(&l).unwrap_or(Value::Null);
                match v["alert"].as_str() {
                    Some("raised") => raised += 1,
                    Some("cleared") => cleared += 1,
                    _ => {}
                }
                if v["alert"] == "raised"
                    && v["client"]
                        .as_str()
                        .is_some_and(|c| c.starts_with("10.77.0.2:"))
                {
                    healthy_alerts += 1;
                }
            }
        }
        (ends, last_totals, raised - cleared, healthy_alerts)
    });

    let server = lab.echo_on_client_side(PORT);
    let client = lab.healthy_session(PORT, secs - 1.0);
    std::thread::sleep(Duration::from_secs(2));
    let flood = lab.syn_flood(PORT, clients, Some(pps));
    let sent_pps = flood.join().expect("the flood");
    let _ = client.join();
    let _ = monitor.wait();
    drop(server);
    let (ends, totals, active, healthy_alerts) = reader.join().expect("the reader");
    let longest_tick = ticks.join().expect("the stderr reader");
    assert!(
        longest_tick > 0.0,
        "the monitor logged no tick at RUST_LOG=debug"
    );
    let gaps: Vec<f64> = ends
        .windows(2)
        .map(|w| (w[1] - w[0]).as_secs_f64())
        .collect();
    // "flows N  evicted N  lost flows N  lost events N"
    let field = |name: &str| {
        totals
            .split(name)
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or(0)
    };
    json!({
        "reports": ends.len(),
        "longest_gap_s": gaps.iter().cloned().fold(0.0, f64::max),
        "longest_tick_s": longest_tick,
        "sent_pps": sent_pps,
        "flows": field("flows "),
        "lost_events": field("lost events "),
        "active_alerts": active,
        "healthy_alerts": healthy_alerts,
    })
}

/// A tick's seconds from the monitor's debug line about it: "tick of N flows: read A ms,
/// judged B ms, outputs C ms".
fn tick_seconds(line: &str) -> Option<f64> {
    let (_, parts) = line.split_once(" flows: ")?;
    let ms: Vec<f64> = parts
        .split(", ")
        .filter_map(|p| p.split_whitespace().nth(1)?.parse().ok())
        .collect();
    (ms.len() == 3).then(|| ms.iter().sum::<f64>() / 1e3)
}

pub fn bench(clients: u32, pps: u32, secs: f64, runs: usize) -> Value {
    let all: Vec<Value> = (0..runs).map(|_| run(clients, pps, secs)).collect();
    let fig = |k: &str| Figure::of(all.iter().filter_map(|r| r[k].as_f64()).collect()).json();
    json!({
        "clients": clients,
        "target_pps": pps,
        "seconds": secs,
        "runs": runs,
        "reports": fig("reports"),
        "longest_gap_s": fig("longest_gap_s"),
        "longest_tick_s": fig("longest_tick_s"),
        "sent_pps": fig("sent_pps"),
        "flows": fig("flows"),
        "lost_events": fig("lost_events"),
        "active_alerts": fig("active_alerts"),
        "healthy_alerts": fig("healthy_alerts"),
    })
}

pub fn table(f: &Value) -> String {
    let c = |k: &str, d: usize| Figure::from_json(&f[k]).cell(d);
    format!(
        "### 3b. A SYN flood, live\n\n{} spoofed SYNs, each from its own client, at {} packets/s wanted, into the watched port of a host serving one healthy echo session; `monitor live --headless` on its veth at a 1 s interval for {} s, {} runs. Reports: how many came and the longest gap between two; the longest tick (read, judged, written, from the monitor's `RUST_LOG=debug` line). The interval is kept when no tick takes over 1 s; a gap is then 1 s plus how much longer its tick took than the one before.\n\n| reports | longest gap s | longest tick s | SYNs/s sent | flows at the end | lost events | active alerts at the end | alerts of the healthy session |\n|---|---|---|---|---|---|---|---|\n| {} | {} | {} | {} | {} | {} | {} | {} |\n\n",
        f["clients"], f["target_pps"], f["seconds"], f["runs"],
        c("reports", 0), c("longest_gap_s", 2), c("longest_tick_s", 2), c("sent_pps", 0), c("flows", 0),
        c("lost_events", 0), c("active_alerts", 0), c("healthy_alerts", 0)
    )
}
