//! Group 4, offline: `monitor replay` against tshark's TCP analysis on the same capture,
//! made by the lab (a veth pair, small segments, tcpdump writing the file); and a scan, one
//! unanswered SYN from each of many clients toward one server port, crafted.

use std::{
    io::Write,
    net::TcpStream,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use monitor_common::{
    craft::{pcap, TcpFrame},
    parse::SYN,
};
use serde_json::{json, Value};

use crate::{
    common::Lab,
    stats::{ratio, Figure},
};

/// Records at least `packets` packets of one client's small writes to a server.
pub fn capture(path: &std::path::Path, packets: u64) -> u64 {
    let lab = Lab::new("bo");
    lab.no_autocork();
    let srv = lab.sink(50001);
    let mut dump = Command::new("ip")
        .args([
            "netns",
            "exec",
            &lab.client_ns,
            "tcpdump",
            "-i",
            &lab.client_if,
            "-s",
            "96",
            "-w",
        ])
        .arg(path)
        .args(["-U", "tcp port 50001"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("tcpdump");
    std::thread::sleep(Duration::from_millis(800));
    let ip = lab.server_ip;
    // Each write is one data segment; delayed ACKs add about one packet per two.
    let writes = packets;
    Lab::in_ns(&lab.client_ns, move || {
        let mut s = TcpStream::connect((ip, 50001)).expect("connect");
        s.set_nodelay(true).expect("nodelay");
        for _ in 0..writes {
            if s.write_all(&[0x17; 64]).is_err() {
                break;
            }
        }
    })
    .join()
    .expect("client");
    let _ = srv.join();
    std::thread::sleep(Duration::from_millis(500));
    // SAFETY: a plain system call on a process id we own; it touches no memory of ours.
    unsafe { libc::kill(dump.id() as i32, libc::SIGINT) };
    let _ = dump.wait();
    count(path)
}

/// Packets in a capture, as the monitor reads it.
fn count(path: &std::path::Path) -> u64 {
    let out = Command::new(crate::MONITOR)
        .args(["replay"])
        .arg(path)
        .arg("--json")
        .output()
        .expect("monitor replay");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    v["totals"]["packets"].as_u64().unwrap_or(0)
}

/// Runs `cmd` to its end: the seconds it took.
fn timed(cmd: &mut Command) -> f64 {
    timed_peak(cmd).0
}

/// tshark's offline TCP analysis, quiet: the peer every replay figure is compared with.
const TSHARK_ANALYSIS: [&str; 6] = [
    "-q",
    "-n",
    "-o",
    "tcp.analyze_sequence_numbers:TRUE",
    "-Y",
    "tcp.analysis.flags",
];

pub fn bench(packets: u64, runs: usize) -> Value {
    let path = std::env::temp_dir().join(format!("monitor-bench-{}.pcap", std::process::id()));
    let n = capture(&path, packets);
    let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        let a = timed(
            Command::new(crate::MONITOR)
                .arg("replay")
                .arg(&path)
                .args(["--json"]),
        );
        let b = timed(
            Command::new("tshark")
                .arg("-r")
                .arg(&path)
                .args(TSHARK_ANALYSIS),
        );
        ours.push(n as f64 / a);
        theirs.push(n as f64 / b);
    }
    let _ = std::fs::remove_file(&path);
    let (ours, theirs) = (Figure::of(ours), Figure::of(theirs));
    json!({
        "packets": n,
        "capture_bytes": size,
        "monitor_replay_pps": ours.json(),
        "tshark_pps": theirs.json(),
        "ratio": ratio(&ours, &theirs).json(),
    })
}

/// Writes a scan: one SYN from each of `clients` distinct clients toward 10.0.0.2:50001,
/// spread over 10 s of capture time (so those of the first 7 s time out), never answered.
fn scan_capture(path: &std::path::Path, clients: u32) {
    const T0: u64 = 1_700_000_000_000_000_000;
    let server = std::net::IpAddr::from([10, 0, 0, 2]);
    let spacing = 10_000_000_000 / u64::from(clients.max(1));
    let frames: Vec<Vec<u8>> = (0..clients)
        .map(|i| {
            let client =
                std::net::IpAddr::from([10, 100 + (i >> 16) as u8, (i >> 8) as u8, i as u8]);
            let mut syn = TcpFrame::new(client, 40000, server, 50001).flags(SYN);
            syn.seq = i.wrapping_mul(2_654_435_761);
            syn.ethernet()
        })
        .collect();
    let records: Vec<(u64, &[u8], u32)> = frames
        .iter()
        .enumerate()
        .map(|(i, f)| (T0 + i as u64 * spacing, f.as_slice(), f.len() as u32))
        .collect();
    std::fs::write(path, pcap(&records)).expect("write the scan capture");
}

/// Runs `cmd` to its end: the seconds it took and its peak resident memory in bytes (the
/// kernel's account of the child, from wait4's rusage).
// The child is reaped by wait4 (for its rusage), which clippy does not see.
#[allow(clippy::zombie_processes)]
fn timed_peak(cmd: &mut Command) -> (f64, u64) {
    let t = Instant::now();
    let child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("run");
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value of that plain C struct.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waits for our own child by its pid, writing into the two locals above.
    let pid = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
    let secs = t.elapsed().as_secs_f64();
    assert!(
        pid > 0 && libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "{cmd:?} failed"
    );
    // ru_maxrss is in KiB on Linux.
    (secs, usage.ru_maxrss as u64 * 1024)
}

/// The scan case: `monitor replay --json` against tshark's TCP analysis on a scan of
/// `clients` SYNs, packets/s, their ratio, each one's peak RSS, and the alerts the
/// monitor ends with (its roll-up counting the sessions).
pub fn scan(clients: u32, runs: usize) -> Value {
    let path = std::env::temp_dir().join(format!("monitor-bench-scan-{}.pcap", std::process::id()));
    scan_capture(&path, clients);
    let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    let n = f64::from(clients);
    let (mut ours, mut theirs, mut ours_rss, mut theirs_rss) = (vec![], vec![], vec![], vec![]);
    for _ in 0..runs {
        let (a, a_rss) = timed_peak(
            Command::new(crate::MONITOR)
                .arg("replay")
                .arg(&path)
                .args(["--json"]),
        );
        let (b, b_rss) = timed_peak(
            Command::new("tshark")
                .arg("-r")
                .arg(&path)
                .args(TSHARK_ANALYSIS),
        );
        ours.push(n / a);
        theirs.push(n / b);
        ours_rss.push(a_rss as f64);
        theirs_rss.push(b_rss as f64);
    }
    let out = Command::new(crate::MONITOR)
        .arg("replay")
        .arg(&path)
        .arg("--json")
        .output()
        .expect("monitor replay");
    let _ = std::fs::remove_file(&path);
    // Only the alerts are read: the flows (100,000 of them) are skipped as they are parsed,
    // not built as a tree whose memory would stay with this process and show in group 5.
    #[derive(serde::Deserialize)]
    struct Alerts {
        #[serde(default)]
        alerts: Vec<Value>,
    }
    let alerts = serde_json::from_slice::<Alerts>(&out.stdout)
        .map(|a| a.alerts)
        .unwrap_or_default();
    let rolled = alerts
        .iter()
        .filter_map(|a| a["evidence"]["sessions"].as_u64())
        .max()
        .unwrap_or(0);
    let (ours, theirs) = (Figure::of(ours), Figure::of(theirs));
    json!({
        "packets": clients,
        "capture_bytes": size,
        "monitor_replay_pps": ours.json(),
        "tshark_pps": theirs.json(),
        "ratio": ratio(&ours, &theirs).json(),
        "monitor_peak_rss_bytes": Figure::of(ours_rss).json(),
        "tshark_peak_rss_bytes": Figure::of(theirs_rss).json(),
        "alerts": alerts.len(),
        "rolled_up_sessions": rolled,
    })
}
