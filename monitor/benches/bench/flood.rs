//! Group 3b, a SYN flood, live: `clients` spoofed SYNs, each from its own client, sent at
//! about `pps` into the watched port of a host that serves one real session meanwhile, with
//! `monitor live --headless` on that host's veth at a 1 s interval. What it measures: how
//! many reports came and the longest gap between two (reports keep their interval when no
//! tick takes longer than it), events lost to a full ring, the alerts live at the end (the
//! flood rolls up), and whether the healthy session raised anything. `tests/lab_flood.rs`
//! holds the same properties on a smaller flood in the test command.

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::{IpAddr, Ipv4Addr, TcpStream},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use monitor_common::{craft::TcpFrame, parse::SYN};
use serde_json::{json, Value};

use crate::{
    common::{packet_socket, send_frame, sh, Lab},
    stats::Figure,
};

const PORT: u16 = 50000;

fn mac(ns: &str, ifname: &str) -> [u8; 6] {
    let out = sh(&[
        "ip",
        "netns",
        "exec",
        ns,
        "cat",
        &format!("/sys/class/net/{ifname}/address"),
    ]);
    let mut m = [0u8; 6];
    for (b, part) in m
        .iter_mut()
        .zip(String::from_utf8_lossy(&out.stdout).trim().split(':'))
    {
        *b = u8::from_str_radix(part, 16).unwrap_or(0);
    }
    m
}

/// One run: the flood starts 2 s into a `secs` run.
fn run(clients: u32, pps: u32, secs: f64) -> Value {
    let lab = Lab::new("bf");
    sh(&[
        "ip",
        "-n",
        &lab.client_ns,
        "route",
        "add",
        "198.18.0.0/15",
        "via",
        lab.server_ip,
    ]);
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
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the monitor");
    let mut err = BufReader::new(monitor.stderr.take().expect("stderr"));
    let mut line = String::new();
    err.read_line(&mut line).expect("the monitor's first line");
    assert!(line.contains("attached"), "monitor did not attach: {line}");
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

    let (tx, rx) = std::sync::mpsc::channel();
    let ip = lab.client_ip;
    let server = Lab::in_ns(&lab.client_ns, move || {
        let l = std::net::TcpListener::bind((ip, PORT)).expect("bind");
        tx.send(()).expect("bench alive");
        let (mut s, _) = l.accept().expect("accept");
        let mut buf = [0u8; 4096];
        while let Ok(n) = s.read(&mut buf) {
            if n == 0 || s.write_all(&buf[..n]).is_err() {
                break;
            }
        }
    });
    rx.recv_timeout(Duration::from_secs(5)).expect("listening");
    let healthy_for = Duration::from_secs_f64(secs - 1.0);
    let client = Lab::in_ns(&lab.server_ns, move || {
        let mut s = TcpStream::connect((ip, PORT)).expect("the healthy session connects");
        s.set_nodelay(true).expect("nodelay");
        let mut buf = [0u8; 200];
        let end = Instant::now() + healthy_for;
        while Instant::now() < end {
            if s.write_all(&[0x5a; 200]).is_err() || s.read_exact(&mut buf).is_err() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    });
    std::thread::sleep(Duration::from_secs(2));
    let dst_mac = mac(&lab.client_ns, &lab.client_if);
    let server_if = lab.server_if.clone();
    let dst: IpAddr = lab.client_ip.parse().expect("ip");
    let flood = Lab::in_ns(&lab.server_ns, move || {
        let (fd, ifindex) = packet_socket(&server_if);
        let t0 = Instant::now();
        for i in 0..clients {
            let src = IpAddr::V4(Ipv4Addr::new(
                198,
                18 + (i >> 16) as u8,
                (i >> 8) as u8,
                i as u8,
            ));
            let mut f = TcpFrame::new(src, 1024 + (i % 60_000) as u16, dst, PORT)
                .flags(SYN)
                .ethernet();
            f[..6].copy_from_slice(&dst_mac);
            send_frame(&fd, ifindex, &f);
            // Paced: the i-th SYN not before i/pps seconds.
            if i % 256 == 0 {
                let due = Duration::from_secs_f64(f64::from(i) / f64::from(pps));
                if let Some(wait) = due.checked_sub(t0.elapsed()) {
                    std::thread::sleep(wait);
                }
            }
        }
        f64::from(clients) / t0.elapsed().as_secs_f64()
    });
    let sent_pps = flood.join().expect("the flood");
    let _ = client.join();
    let _ = monitor.wait();
    drop(server);
    let (ends, totals, active, healthy_alerts) = reader.join().expect("the reader");
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
        "sent_pps": sent_pps,
        "flows": field("flows "),
        "lost_events": field("lost events "),
        "active_alerts": active,
        "healthy_alerts": healthy_alerts,
    })
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
        "### 3b. A SYN flood, live\n\n{} spoofed SYNs, each from its own client, at {} packets/s wanted, into the watched port of a host serving one healthy echo session; `monitor live --headless` on its veth at a 1 s interval for {} s, {} runs. Reports: how many came and the longest gap between two (the interval is kept when no gap passes 1 s by much).\n\n| reports | longest gap s | SYNs/s sent | flows at the end | lost events | active alerts at the end | alerts of the healthy session |\n|---|---|---|---|---|---|---|\n| {} | {} | {} | {} | {} | {} | {} |\n\n",
        f["clients"], f["target_pps"], f["seconds"], f["runs"],
        c("reports", 0), c("longest_gap_s", 2), c("sent_pps", 0), c("flows", 0),
        c("lost_events", 0), c("active_alerts", 0), c("healthy_alerts", 0)
    )
}
