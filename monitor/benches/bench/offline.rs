//! Group 4, offline: `monitor replay` against tshark's TCP analysis on the same capture,
//! made by the lab (a veth pair, small segments, tcpdump writing the file).

use std::{
    io::Write,
    net::TcpStream,
    process::{Command, Stdio},
    time::{Duration, Instant},
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

fn timed(cmd: &mut Command) -> f64 {
    let t = Instant::now();
    let st = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("run");
    assert!(st.success(), "{cmd:?} failed");
    t.elapsed().as_secs_f64()
}

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
        let b = timed(Command::new("tshark").arg("-r").arg(&path).args([
            "-q",
            "-n",
            "-o",
            "tcp.analyze_sequence_numbers:TRUE",
            "-Y",
            "tcp.analysis.flags",
        ]));
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
