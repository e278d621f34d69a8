//! The metrics endpoint on a live monitor: `promtool check metrics` on a real scrape, both
//! exposition formats, and a real Prometheus server scraping two monitors (two "hosts",
//! each a namespace lab with its own loss) whose query API sees the faults of each.

mod common;

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::{SocketAddr, TcpStream},
    process::{Child, ChildStderr, Command, Stdio},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use common::{sh, Lab, MONITOR};
use serde_json::Value;

/// Children killed on drop, so a failing test leaves no monitor or Prometheus behind.
struct Procs(Vec<Child>);

impl Drop for Procs {
    fn drop(&mut self) {
        for c in &mut self.0 {
            // SAFETY: a plain system call on a process id we own; it touches no memory of ours.
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            let _ = c.wait();
        }
    }
}

fn drop_5_percent(ns: &str) {
    let rules = "table inet loss {\n chain in {\n type filter hook input priority 0;\n tcp dport 50001 numgen random mod 100 < 5 drop\n }\n}\n";
    let mut c = Command::new("ip")
        .args(["netns", "exec", ns, "nft", "-f", "-"])
        .stdin(Stdio::piped())
        .spawn()
        .expect("nft");
    c.stdin
        .take()
        .expect("stdin")
        .write_all(rules.as_bytes())
        .expect("rules");
    assert!(c.wait().expect("nft").success(), "nft rules");
}

/// A server reading everything, and a client sending until `stop`.
fn traffic(lab: &Lab, stop: Arc<AtomicBool>) -> Vec<std::thread::JoinHandle<()>> {
    let srv = lab.sink(50001);
    let ip = lab.server_ip;
    let cli = Lab::in_ns(&lab.client_ns, move || {
        let mut s = TcpStream::connect((ip, 50001)).expect("connect");
        let chunk = vec![7u8; 1400];
        while !stop.load(Ordering::Relaxed) {
            if s.write_all(&chunk).is_err() {
                break;
            }
            std::thread::sleep(Duration::from_micros(300));
        }
    });
    vec![srv, cli]
}

/// Starts the monitor in the lab's client namespace; returns it once attached, with the
/// address its metrics endpoint bound.
fn start(lab: &Lab, metrics: &str, extra: &[&str]) -> (Child, BufReader<ChildStderr>, SocketAddr) {
    let mut child = lab
        .monitor(&["--ports", "50001", "--metrics", metrics])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start monitor");
    let mut err = BufReader::new(child.stderr.take().expect("stderr"));
    let mut addr = None;
    for _ in 0..4 {
        let mut line = String::new();
        err.read_line(&mut line).expect("monitor stderr");
        if let Some(a) = line.split("http://").nth(1) {
            addr = a.trim().trim_end_matches("/metrics").parse().ok();
        }
        if line.contains("attached") {
            break;
        }
    }
    let addr = addr.expect("the monitor printed its metrics address");
    (child, err, addr)
}

/// One HTTP/1.1 GET from inside namespace `ns`: (status line, content type, body).
fn get(ns: &str, addr: SocketAddr, path: &str, accept: Option<&str>) -> (String, String, String) {
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{}\r\n",
        accept
            .map(|a| format!("Accept: {a}\r\n"))
            .unwrap_or_default()
    );
    Lab::in_ns(ns, move || {
        let mut s = TcpStream::connect(addr).expect("connect to /metrics");
        s.write_all(req.as_bytes()).expect("request");
        let mut resp = String::new();
        s.read_to_string(&mut resp).expect("response");
        let (head, body) = resp.split_once("\r\n\r\n").expect("HTTP response");
        let status = head.lines().next().unwrap_or_default().to_string();
        let ctype = head
            .lines()
            .find_map(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix("content-type: ")
                    .map(String::from)
            })
            .unwrap_or_default();
        (status, ctype, body.to_string())
    })
    .join()
    .expect("GET thread")
}

fn sum(text: &str, prefix: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[test]
fn a_live_scrape_passes_promtool_in_both_formats() {
    if !common::privileged() {
        return;
    }
    let lab = Lab::new("p");
    drop_5_percent(&lab.server_ns);
    let (child, _err, addr) = start(&lab, "127.0.0.1:0", &["--self-stats"]);
    let mut procs = Procs(vec![child]);
    let stop = Arc::new(AtomicBool::new(false));
    let threads = traffic(&lab, stop.clone());
    // Scrape until the lossy traffic shows in the counters asserted below.
    let end = Instant::now() + Duration::from_secs(30);
    let (status, ctype, body) = loop {
        let (status, ctype, body) = get(&lab.client_ns, addr, "/metrics", None);
        if sum(&body, "monitor_tcp_retransmissions_total{direction=\"c2s\"") > 0.0
            && sum(&body, "monitor_handshakes_total{outcome=\"ok\"}") > 0.0
            && sum(&body, "monitor_kernel_runs_total") > 0.0
        {
            break (status, ctype, body);
        }
        assert!(Instant::now() < end, "no retransmission scraped:\n{body}");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(status.contains("200"), "{status}");
    assert!(ctype.starts_with("text/plain; version=0.0.4"), "{ctype}");
    let file = std::env::temp_dir().join(format!("monitor-scrape-{}.prom", std::process::id()));
    std::fs::write(&file, &body).expect("write scrape");
    let check = Command::new("sh")
        .arg("-c")
        .arg(format!("promtool check metrics < {}", file.display()))
        .output()
        .expect("promtool (Debian package prometheus; cargo xtask setup installs it)");
    assert!(
        check.status.success() && check.stdout.is_empty() && check.stderr.is_empty(),
        "promtool check metrics: {}{}\n{body}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
    let _ = std::fs::remove_file(&file);
    assert!(
        sum(&body, "monitor_tcp_retransmissions_total{direction=\"c2s\"") > 0.0,
        "{body}"
    );
    assert!(
        sum(&body, "monitor_interface_packets_total{")
            > sum(&body, "monitor_flow_packets_total{") * 0.99
    );
    assert_eq!(sum(&body, "monitor_handshakes_total{outcome=\"ok\"}"), 1.0);
    // `--self-stats`: the programs' time, more than a nanosecond a run.
    assert!(
        sum(&body, "monitor_kernel_run_seconds_total") * 1e9
            > sum(&body, "monitor_kernel_runs_total"),
        "{body}"
    );

    let (_, ctype, om) = get(
        &lab.client_ns,
        addr,
        "/metrics",
        Some("application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"),
    );
    assert!(ctype.starts_with("application/openmetrics-text"), "{ctype}");
    assert!(
        om.ends_with("# EOF\n") && om.contains("# UNIT monitor_flow_bytes bytes"),
        "{om}"
    );
    let (status, _, body) = get(&lab.client_ns, addr, "/healthz", None);
    assert!(status.contains("200") && body == "ok\n", "{status} {body}");
    let (status, _, _) = get(&lab.client_ns, addr, "/nope", None);
    assert!(status.contains("404"), "{status}");

    stop.store(true, Ordering::Relaxed);
    for t in threads {
        let _ = t.join();
    }
    let mut child = procs.0.remove(0);
    // SAFETY: a plain system call on a process id we own; it touches no memory of ours.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    assert!(child.wait().expect("monitor").success());
}

#[test]
fn a_taken_metrics_port_is_a_usage_error_before_attaching() {
    if !common::privileged() {
        return;
    }
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = l.local_addr().expect("addr").port().to_string();
    let out = Command::new(MONITOR)
        .args(["live", "-i", "lo", "--headless", "--metrics", &port])
        .output()
        .expect("monitor");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("cannot listen on 127.0.0.1:") && err.contains("hint:"),
        "{err}"
    );
    assert!(!err.contains("attached"), "{err}");
}

/// Two monitors on two "hosts"; one Prometheus scrapes both through veths into their
/// namespaces; its query API sums retransmissions across hosts and sees each host's share.
#[test]
fn prometheus_sums_retransmissions_across_two_hosts() {
    if !common::privileged() {
        return;
    }
    let labs = [Lab::new("q"), Lab::new("r")];
    let mut procs = Procs(Vec::new());
    let mut targets = Vec::new();
    let stop = Arc::new(AtomicBool::new(false));
    let mut threads = Vec::new();
    let mut stderrs = Vec::new();
    for (n, lab) in labs.iter().enumerate() {
        // A link from the root namespace (where Prometheus runs) into the monitor's.
        let (root_if, ns_if) = (
            format!("pr{n}{}", std::process::id() % 10000),
            format!("pm{n}"),
        );
        sh(&[
            "ip",
            "link",
            "add",
            &root_if,
            "type",
            "veth",
            "peer",
            "name",
            &ns_if,
            "netns",
            &lab.client_ns,
        ]);
        sh(&[
            "ip",
            "addr",
            "add",
            &format!("10.99.{n}.1/30"),
            "dev",
            &root_if,
        ]);
        sh(&["ip", "link", "set", &root_if, "up"]);
        sh(&[
            "ip",
            "-n",
            &lab.client_ns,
            "addr",
            "add",
            &format!("10.99.{n}.2/30"),
            "dev",
            &ns_if,
        ]);
        sh(&["ip", "-n", &lab.client_ns, "link", "set", &ns_if, "up"]);
        drop_5_percent(&lab.server_ns);
        let (child, err, addr) = start(lab, &format!("10.99.{n}.2:9464"), &[]);
        stderrs.push(err);
        procs.0.push(child);
        targets.push(addr.to_string());
        threads.extend(traffic(lab, stop.clone()));
    }
    let dir = std::env::temp_dir().join(format!("monitor-prom-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let web = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port");
    let rules =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/prometheus/rules.yml");
    let config = format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - {}\nscrape_configs:\n  - job_name: monitor\n    static_configs:\n      - targets: [{}]\n",
        rules.display(),
        targets.iter().map(|t| format!("'{t}'")).collect::<Vec<_>>().join(", ")
    );
    std::fs::write(dir.join("prometheus.yml"), config).expect("config");
    let prom = Command::new("prometheus")
        .arg(format!(
            "--config.file={}",
            dir.join("prometheus.yml").display()
        ))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("data").display()
        ))
        .arg(format!("--web.listen-address={web}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("prometheus (Debian package prometheus; cargo xtask setup installs it)");
    procs.0.push(prom);

    let query = |q: &str| -> Value {
        let out = Command::new("curl")
            .args(["-s", "-G", "--data-urlencode", &format!("query={q}")])
            .arg(format!("http://{web}/api/v1/query"))
            .output()
            .expect("curl");
        serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
    };
    let value = |v: &Value| -> f64 { v[1].as_str().and_then(|s| s.parse().ok()).unwrap_or(0.0) };
    let end = Instant::now() + Duration::from_secs(60);
    let (per_host, total) = loop {
        let per = query("sum by (instance) (monitor_tcp_retransmissions_total{direction=\"c2s\"})");
        let all = query("sum(monitor_tcp_retransmissions_total{direction=\"c2s\"})");
        let rows = per["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let each: Vec<(String, f64)> = rows
            .iter()
            .map(|r| {
                (
                    r["metric"]["instance"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                    value(&r["value"]),
                )
            })
            .collect();
        let total = all["data"]["result"][0]["value"].clone();
        if each.len() == 2 && each.iter().all(|(_, v)| *v > 0.0) {
            break (each, value(&total));
        }
        assert!(
            Instant::now() < end,
            "Prometheus never saw retransmissions on both hosts: {per}"
        );
        std::thread::sleep(Duration::from_secs(1));
    };
    let mut hosts: Vec<&str> = per_host.iter().map(|(h, _)| h.as_str()).collect();
    hosts.sort();
    let mut want: Vec<&str> = targets.iter().map(String::as_str).collect();
    want.sort();
    assert_eq!(hosts, want, "one series per monitor");
    let parts: f64 = per_host.iter().map(|(_, v)| v).sum();
    assert!(
        total >= parts * 0.9,
        "the sum across hosts ({total}) covers both ({per_host:?})"
    );
    // The shipped rules load and evaluate on the real server.
    let up = query("up{job=\"monitor\"}");
    assert_eq!(
        up["data"]["result"].as_array().map(|a| a.len()),
        Some(2),
        "{up}"
    );
    let rules_loaded = Command::new("curl")
        .args(["-s", &format!("http://{web}/api/v1/rules")])
        .output()
        .expect("curl");
    let rules: Value = serde_json::from_slice(&rules_loaded.stdout).unwrap_or(Value::Null);
    assert_eq!(
        rules["data"]["groups"].as_array().map(|g| g.len()),
        Some(2),
        "{rules}"
    );

    stop.store(true, Ordering::Relaxed);
    drop(procs);
    for t in threads {
        let _ = t.join();
    }
    let _ = std::fs::remove_dir_all(&dir);
}
