//! Groups 2 and 3: overhead on a live path, and the same traffic watched by peers.
//!
//! A veth lab carries the most small segments the machine can make (64-byte writes,
//! TCP_NODELAY, autocorking off). Runs alternate: monitor detached, attached with tc, with
//! XDP; then the monitor, tshark's live TCP analysis and `tcpdump -w /dev/null` one after
//! another on the same traffic. Packets/s come from the receiver's kernel (InSegs), CPU from
//! /proc/stat (whole machine) and from each tool's own process (plus, for the monitor, the
//! kernel's run time of its programs). The kernel keeps that run time only while run-time
//! statistics are on, and keeping it costs two clock reads per program run, so they are on
//! (through a BPF_ENABLE_STATS file descriptor, off again when it closes) only while group 3
//! measures the monitor; group 2 measures the path as it runs in production.

use std::{
    io::{Read, Write},
    net::TcpStream,
    process::{Child, Command, Stdio},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use serde_json::{json, Value};

use crate::{
    common::{tcp_segs, Lab},
    stats::{ratio, Figure},
};

fn ticks_per_s() -> f64 {
    // SAFETY: sysconf has no preconditions.
    (unsafe { libc::sysconf(libc::_SC_CLK_TCK) }) as f64
}

/// Busy CPU seconds of the whole machine so far.
fn machine_cpu() -> f64 {
    let s = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let v: Vec<f64> = s
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal
    let busy: f64 = [0, 1, 2, 5, 6, 7].iter().filter_map(|i| v.get(*i)).sum();
    busy / ticks_per_s()
}

/// User + system CPU seconds of one process (and its threads).
fn proc_cpu(pid: u32) -> f64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = s.rsplit(')').next().unwrap_or_default();
    let f: Vec<&str> = after.split_whitespace().collect();
    let get = |i: usize| f.get(i).and_then(|x| x.parse::<f64>().ok()).unwrap_or(0.0);
    (get(11) + get(12)) / ticks_per_s()
}

/// Kernel run time of the BPF programs a process holds (kept only while run-time statistics
/// are on).
fn bpf_run_s(pid: u32) -> f64 {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fdinfo")) else {
        return 0.0;
    };
    dir.flatten()
        .filter_map(|e| std::fs::read_to_string(e.path()).ok())
        .filter_map(|t| {
            t.lines()
                .find(|l| l.starts_with("run_time_ns:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .sum::<f64>()
        / 1e9
}

struct Traffic {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

fn start_traffic(lab: &Lab) -> Traffic {
    let stop = Arc::new(AtomicBool::new(false));
    let s2 = stop.clone();
    let srv = lab.sink(50001);
    let ip = lab.server_ip;
    let cli = Lab::in_ns(&lab.client_ns, move || {
        let mut s = TcpStream::connect((ip, 50001)).expect("connect");
        s.set_nodelay(true).expect("nodelay");
        let chunk = [0x17u8; 64];
        while !s2.load(Ordering::Relaxed) {
            if s.write_all(&chunk).is_err() {
                break;
            }
        }
    });
    Traffic {
        stop,
        threads: vec![srv, cli],
    }
}

impl Traffic {
    fn end(self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            let _ = t.join();
        }
    }
}

/// Segments the server's kernel received so far.
fn in_segs(lab: &Lab) -> u64 {
    Lab::in_ns(&lab.server_ns, || tcp_segs().1)
        .join()
        .unwrap_or(0)
}

/// A watcher in the server namespace on its veth.
fn spawn(lab: &Lab, tool: &str, secs: f64) -> Child {
    let mut c = Command::new("ip");
    c.args(["netns", "exec", &lab.server_ns]);
    match tool {
        "tc" | "xdp" => {
            c.arg(crate::MONITOR).args([
                "live",
                "-i",
                &lab.server_if,
                "--headless",
                "--json",
                "--ports",
                "50001",
                "--attach",
                tool,
            ]);
            c.arg("--duration").arg(format!("{}", secs + 30.0));
        }
        "tshark" => {
            c.args([
                "tshark",
                "-i",
                &lab.server_if,
                "-q",
                "-n",
                "-o",
                "tcp.analyze_sequence_numbers:TRUE",
                "-Y",
                "tcp.analysis.flags",
                "-f",
                "tcp port 50001",
            ]);
        }
        _ => {
            c.args([
                "tcpdump",
                "-i",
                &lab.server_if,
                "-w",
                "/dev/null",
                "tcp port 50001",
            ]);
        }
    }
    c.stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start a watcher")
}

struct Sample {
    pps: f64,
    machine_cpu_s: f64,
    tool_cpu_s: f64,
    packets: u64,
    dropped: u64,
}

/// Whether the kernel's BPF run-time statistics are on machine-wide (sysctl or another
/// process's BPF_ENABLE_STATS): they would inflate every program run measured.
pub fn run_time_stats_on() -> bool {
    std::fs::read_to_string("/proc/sys/kernel/bpf_stats_enabled").is_ok_and(|s| s.trim() == "1")
}

/// `account_bpf`: keep the BPF programs' run time while measuring (the monitor in group 3).
fn measure(lab: &Lab, tool: Option<&str>, secs: f64, account_bpf: bool) -> Sample {
    let _stats = account_bpf.then(|| {
        aya::sys::enable_stats(aya::sys::Stats::RunTime).expect("BPF_ENABLE_STATS (as root)")
    });
    let mut child = tool.map(|t| spawn(lab, t, secs));
    // Let the watcher attach (or open its capture) before the traffic starts.
    std::thread::sleep(Duration::from_millis(if tool.is_some() {
        2500
    } else {
        200
    }));
    let tr = start_traffic(lab);
    std::thread::sleep(Duration::from_millis(300));
    let (seg0, cpu0, t0) = (in_segs(lab), machine_cpu(), Instant::now());
    let tool0 = child
        .as_ref()
        .map_or(0.0, |c| proc_cpu(c.id()) + bpf_run_s(c.id()));
    std::thread::sleep(Duration::from_secs_f64(secs));
    let (seg1, cpu1, dt) = (in_segs(lab), machine_cpu(), t0.elapsed().as_secs_f64());
    let tool1 = child
        .as_ref()
        .map_or(0.0, |c| proc_cpu(c.id()) + bpf_run_s(c.id()));
    tr.end();
    let mut dropped = 0;
    if let Some(c) = child.as_mut() {
        // SAFETY: a plain system call on a process id we own; it touches no memory of ours.
        unsafe { libc::kill(c.id() as i32, libc::SIGINT) };
        let mut err = String::new();
        if let Some(mut e) = c.stderr.take() {
            let _ = e.read_to_string(&mut err);
        }
        let _ = c.wait();
        // tcpdump: "N packets dropped by kernel"; tshark: "N packets dropped".
        for l in err.lines().filter(|l| l.contains("dropped")) {
            dropped += l
                .split_whitespace()
                .find_map(|w| w.parse::<u64>().ok())
                .unwrap_or(0);
        }
    }
    let packets = seg1.saturating_sub(seg0);
    Sample {
        pps: packets as f64 / dt,
        machine_cpu_s: cpu1 - cpu0,
        tool_cpu_s: tool1 - tool0,
        packets,
        dropped,
    }
}

pub fn bench(secs: f64, runs: usize) -> Value {
    let stats_were_on = run_time_stats_on();
    let lab = Lab::with_offloads("bl", true);
    lab.no_autocork();
    let modes = [("detached", None), ("tc", Some("tc")), ("xdp", Some("xdp"))];
    let mut pps: Vec<Vec<f64>> = vec![Vec::new(); 3];
    let mut cpu: Vec<Vec<f64>> = vec![Vec::new(); 3];
    for _ in 0..runs {
        for (i, (_, tool)) in modes.iter().enumerate() {
            let s = measure(&lab, *tool, secs, false);
            pps[i].push(s.pps);
            cpu[i].push(s.machine_cpu_s / (s.packets.max(1) as f64 / 1e6));
        }
    }
    let pf: Vec<Figure> = pps.into_iter().map(Figure::of).collect();
    let cf: Vec<Figure> = cpu.into_iter().map(Figure::of).collect();
    let overhead = json!(modes
        .iter()
        .enumerate()
        .map(|(i, (name, _))| json!({
            "mode": name,
            "pps": pf[i].json(),
            "machine_cpu_s_per_mpkt": cf[i].json(),
            "pps_vs_detached": ratio(&pf[i], &pf[0]).json(),
        }))
        .collect::<Vec<_>>());

    let tools = ["monitor", "tshark", "tcpdump"];
    let mut per_mpkt: Vec<Vec<f64>> = vec![Vec::new(); 3];
    let mut drops: Vec<Vec<f64>> = vec![Vec::new(); 3];
    let mut ppss: Vec<Vec<f64>> = vec![Vec::new(); 3];
    for _ in 0..runs {
        for (i, t) in tools.iter().enumerate() {
            let monitor = *t == "monitor";
            let s = measure(&lab, Some(if monitor { "tc" } else { t }), secs, monitor);
            per_mpkt[i].push(s.tool_cpu_s / (s.packets.max(1) as f64 / 1e6));
            drops[i].push(s.dropped as f64);
            ppss[i].push(s.pps);
        }
    }
    let tf: Vec<Figure> = per_mpkt.into_iter().map(Figure::of).collect();
    let peers = json!(tools
        .iter()
        .enumerate()
        .map(|(i, t)| json!({
            "tool": t,
            "cpu_s_per_mpkt": tf[i].json(),
            "dropped": Figure::of(drops[i].clone()).json(),
            "pps": Figure::of(ppss[i].clone()).json(),
            "cpu_vs_monitor": ratio(&tf[i], &tf[0]).json(),
        }))
        .collect::<Vec<_>>());
    json!({ "seconds": secs, "runs": runs, "overhead": overhead, "peers": peers, "run_time_stats_were_on": stats_were_on })
}

pub fn table(l: &Value) -> String {
    let mut s = format!(
        "### 2. Overhead on a live path (veth lab, 64-byte segments)\n\n{} runs of {} s per mode, alternating. CPU: the whole machine's busy time per million packets delivered.\n\n| mode | packets/s delivered | vs detached (per run) | machine CPU s per Mpkt |\n|---|---|---|---|\n",
        l["runs"], l["seconds"]
    );
    for m in l["overhead"].as_array().into_iter().flatten() {
        s += &format!(
            "| {} | {} | {} | {} |\n",
            m["mode"].as_str().unwrap_or(""),
            Figure::from_json(&m["pps"]).cell(0),
            Figure::from_json(&m["pps_vs_detached"]).cell(3),
            Figure::from_json(&m["machine_cpu_s_per_mpkt"]).cell(2)
        );
    }
    s += "\n### 3. Peers on the same traffic\n\nCPU of each tool's own process (for the monitor: its process plus the kernel's run time of its programs), per million packets delivered; packets the tool reported dropped.\n\n| tool | CPU s per Mpkt | vs monitor (per run) | dropped | packets/s delivered meanwhile |\n|---|---|---|---|---|\n";
    for p in l["peers"].as_array().into_iter().flatten() {
        s += &format!(
            "| {} | {} | {} | {} | {} |\n",
            p["tool"].as_str().unwrap_or(""),
            Figure::from_json(&p["cpu_s_per_mpkt"]).cell(3),
            Figure::from_json(&p["cpu_vs_monitor"]).cell(1),
            Figure::from_json(&p["dropped"]).cell(0),
            Figure::from_json(&p["pps"]).cell(0)
        );
    }
    s + "\n"
}
