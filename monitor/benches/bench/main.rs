//! `cargo xtask bench`: the numbers behind "at line rate". Writes the tables of
//! BENCHMARKS.md (between its `bench:begin`/`bench:end` markers, so the written findings
//! around them stay) and a JSON file of every raw figure. `--smoke` runs every benchmark
//! tiny, to prove the harness works (CI), not to measure.
//!
//! Every figure: run count, min / median / max; ratios within one run.

#[path = "../../tests/common/mod.rs"]
mod common;
mod flood;
mod kernel;
mod live;
mod offline;
mod scale;
mod stats;

use std::path::PathBuf;

use serde_json::{json, Value};
use stats::Figure;

pub const DEFAULT_PORTS: &str = "50000-59999,443";
pub const MONITOR: &str = env!("CARGO_BIN_EXE_monitor");

struct Args {
    smoke: bool,
    out: PathBuf,
    json: PathBuf,
    only: Option<Vec<String>>,
}

fn args() -> Args {
    let mut a = Args {
        smoke: false,
        out: PathBuf::from("BENCHMARKS.md"),
        json: PathBuf::from("target/bench/results.json"),
        only: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(x) = it.next() {
        match x.as_str() {
            "--smoke" => a.smoke = true,
            "--out" => a.out = it.next().map(PathBuf::from).unwrap_or(a.out),
            "--json" => a.json = it.next().map(PathBuf::from).unwrap_or(a.json),
            "--only" => a.only = it.next().map(|s| s.split(',').map(String::from).collect()),
            // cargo bench passes --bench; anything else is a mistake worth saying.
            "--bench" => {}
            other => {
                eprintln!("bench: unknown argument {other}\nhint: --smoke, --out FILE, --json FILE, --only kernel,live,flood,offline,scale");
                std::process::exit(2);
            }
        }
    }
    a
}

fn machine() -> Value {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_default();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .unwrap_or_default()
        .trim()
        .to_string();
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .next()
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .unwrap_or(0);
    json!({ "cpu": cpu, "cores": cores, "kernel": kernel, "memory_gib": mem / 1024 / 1024 })
}

/// Where a group's figures were measured (groups refreshed with `--only` may come from
/// another run, so each table says its own machine).
fn machine_line(m: &Value) -> String {
    format!(
        "Machine: {} cores ({}), {} GiB, kernel {}.\n",
        m["cores"],
        m["cpu"].as_str().unwrap_or("?"),
        m["memory_gib"],
        m["kernel"].as_str().unwrap_or("?")
    )
}

fn tables(r: &Value) -> String {
    let mut s = tables_without_machines(r);
    for (group, heading) in [
        ("kernel", "### 1."),
        ("live", "### 2."),
        ("live", "### 3."),
        ("live", "### 3b."),
        ("offline", "### 4."),
        ("scale", "### 5."),
    ] {
        let m = r[group].get("machine").unwrap_or(&r["machine"]);
        if let Some(at) = s.find(heading) {
            let end = at + s[at..].find("\n\n").map_or(0, |e| e + 2);
            s.insert_str(end, &machine_line(m));
        }
    }
    s
}

fn tables_without_machines(r: &Value) -> String {
    let mut s =
        format!(
        "Each cell: median (min-max) over the runs stated; ratios are taken within one run. {}\n\n",
        if r["smoke"] == true { "**Smoke run: tiny counts, not a measurement.**" } else { "" }
    );
    if let Some(k) = r.get("kernel") {
        s += &format!(
            "### 1. Kernel cost per packet (BPF_PROG_TEST_RUN, tc ingress)\n\n{} runs; repeat {} for repeatable classes, {} distinct frames otherwise (per-call overhead {} ns subtracted).\nBudget of one core at 10 GbE line rate with minimum frames (14.88 Mpps): 67.2 ns. The `reference:` row is the least a per-flow counter does (`monitor-ebpf/src/program/reference.rs`); each class's cost above the floor is also given as a multiple of the reference's.\n\n| class | ns/packet (measured) | ns above the floor | share of the 67.2 ns budget | x the reference |\n|---|---|---|---|---|\n",
            Figure::from_json(&k["classes"][0]["ns_per_packet"]).runs.len(), k["repeat"], k["distinct_frames"], Figure::from_json(&k["overhead_ns"]).cell(1)
        );
        let floor = Figure::from_json(&k["harness_floor_ns"]);
        s += &format!(
            "| *harness floor (a program that does nothing)* | {} | | | |\n",
            floor.cell(1)
        );
        let classes = k["classes"].as_array().cloned().unwrap_or_default();
        let reference = classes
            .iter()
            .find(|c| {
                c["class"]
                    .as_str()
                    .is_some_and(|n| n.starts_with("reference:"))
            })
            .map(|c| Figure::from_json(&c["ns_per_packet"]).median() - floor.median());
        for c in &classes {
            let f = Figure::from_json(&c["ns_per_packet"]);
            let net = f.median() - floor.median();
            let times = match reference {
                Some(r) if r > 0.0 => format!("{:.2}", net / r),
                _ => "-".into(),
            };
            s += &format!(
                "| {} | {} | {:.1} | {:.0} % | {times} |\n",
                c["class"].as_str().unwrap_or(""),
                f.cell(1),
                net,
                net / 67.2 * 100.0
            );
        }
        s += "\n";
    }
    if let Some(l) = r.get("live") {
        // A run of the flood alone has no figures of groups 2 and 3: their old tables stay.
        if l.get("overhead").is_some() {
            s += &live::table(l);
        }
        if let Some(f) = l.get("flood") {
            s += &flood::table(f);
        }
    }
    if let Some(o) = r.get("offline") {
        s += &format!(
            "### 4. Offline: `monitor replay` vs `tshark -r` with TCP analysis\n\nA lab capture of {} packets ({} bytes), {} runs.\n\n| tool | packets/s |\n|---|---|\n| monitor replay | {} |\n| tshark -o tcp.analyze_sequence_numbers:TRUE -Y tcp.analysis.flags | {} |\n| ratio (monitor / tshark, per run) | {} |\n\n",
            o["packets"], o["capture_bytes"], Figure::from_json(&o["ratio"]).runs.len(),
            Figure::from_json(&o["monitor_replay_pps"]).cell(0), Figure::from_json(&o["tshark_pps"]).cell(0), Figure::from_json(&o["ratio"]).cell(1)
        );
        if let Some(sc) = o.get("scan") {
            let mb = |k: &str| {
                let f = Figure::from_json(&sc[k]);
                Figure::of(f.runs.iter().map(|b| b / 1048576.0).collect()).cell(0)
            };
            s += &format!(
                "A scan: one unanswered SYN from each of {} distinct clients toward one server port, crafted over 10 s of capture time ({} bytes), {} runs; peak RSS from wait4's rusage of each child. The monitor ends with {} alerts, its roll-up counting {} sessions (the SYNs older than the 3 s handshake timeout).\n\n| tool | packets/s | peak RSS MB |\n|---|---|---|\n| monitor replay --json | {} | {} |\n| tshark (as above) | {} | {} |\n| ratio (monitor / tshark, per run) | {} | |\n\n",
                sc["packets"], sc["capture_bytes"], Figure::from_json(&sc["ratio"]).runs.len(), sc["alerts"], sc["rolled_up_sessions"],
                Figure::from_json(&sc["monitor_replay_pps"]).cell(0), mb("monitor_peak_rss_bytes"),
                Figure::from_json(&sc["tshark_pps"]).cell(0), mb("tshark_peak_rss_bytes"),
                Figure::from_json(&sc["ratio"]).cell(2)
            );
        }
    }
    if let Some(sc) = r.get("scale") {
        s += "### 5. Scale: flows in the kernel map\n\nTimes in ms; a tick = reading the map + judging the flows + feeding the metrics. The first tick meets every flow and reads the map whole (as many runs as the ticks: the monitor's first, then the collector starting over on the same map, after the memory figures); the ticks measured after it (and after 12 more, so that as many flows fall idle as a change wakes: the steady state) each see 1 % of the flows changed (one data segment each since the tick before), and read back the flows the kernel reported changed (\"whole reads\": how many of them read the whole map instead). Each snapshot is kept until the next is ready, as the terminal UI keeps the one it shows. Render: the flow table on a 160x48 terminal, for a new snapshot; key: a key press (cursor down) and the table drawn again. Scrape: encoding `/metrics`. RSS after 3 min: after 180 more ticks of judging (the flows idle), when every sparkline is full.\n\n| flows | first tick | runs | tick | read map | whole reads | judge | metrics | render | key | scrape | monitor RSS MB | RSS MB after 3 min | kernel map MB |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n";
        for z in sc["sizes"].as_array().into_iter().flatten() {
            let f = |k: &str| Figure::from_json(&z[k]);
            s += &format!(
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {:.0} | {:.0} | {:.0} |\n",
                z["flows"],
                f("first_tick_ms").cell(1),
                f("tick_ms").runs.len(),
                f("tick_ms").cell(1),
                f("read_map_ms").cell(1),
                z["ticks_read_whole"],
                f("judge_ms").cell(1),
                f("metrics_observe_ms").cell(1),
                f("render_table_ms").cell(1),
                f("key_redraw_ms").cell(1),
                f("scrape_ms").cell(2),
                z["rss_bytes"].as_f64().unwrap_or(0.0) / 1048576.0,
                z["rss_after_3min_bytes"].as_f64().unwrap_or(0.0) / 1048576.0,
                z["kernel_map_bytes"].as_f64().unwrap_or(0.0) / 1048576.0
            );
        }
        s += "\n";
        s += &memory_table(sc);
    }
    s
}

/// Group 5's resident memory after 3 minutes, by what holds it (as allocated).
fn memory_table(sc: &Value) -> String {
    let sizes: Vec<&Value> = sc["sizes"].as_array().into_iter().flatten().collect();
    let names: Vec<&str> = sizes
        .first()
        .and_then(|z| z["footprint_bytes"].as_array())
        .into_iter()
        .flatten()
        .filter_map(|p| p[0].as_str())
        .collect();
    if names.is_empty() {
        return String::new();
    }
    let mb = |b: f64| b / 1048576.0;
    let mut s = String::from(
        "Where the RSS after 3 min goes, MB: the structures' own account of what they hold (as glibc hands out blocks); other = the rest (program, allocator's free memory, what a tick holds briefly).\n\n| flows | RSS after 3 min |",
    );
    for n in &names {
        s += &format!(" {n} |");
    }
    s += " other | RSS bytes per flow |\n|---|---|";
    s += &"---|".repeat(names.len() + 2);
    s += "\n";
    for z in sizes {
        let rss = z["rss_after_3min_bytes"].as_f64().unwrap_or(0.0);
        let parts: Vec<f64> = z["footprint_bytes"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| p[1].as_f64().unwrap_or(0.0))
            .collect();
        let flows = z["flows"].as_f64().unwrap_or(1.0).max(1.0);
        s += &format!("| {} | {:.0} |", z["flows"], mb(rss));
        for p in &parts {
            s += &format!(" {:.0} |", mb(*p));
        }
        s += &format!(
            " {:.0} | {:.0} |\n",
            mb(rss - parts.iter().sum::<f64>()),
            rss / flows
        );
    }
    s + "\n"
}

/// The new tables, and the old ones of groups this run has no figures for (`--only` on a
/// checkout whose raw JSON is gone): a partial run never erases the other groups' tables.
fn merge_sections(old: &str, new: &str) -> String {
    fn split(body: &str) -> (&str, Vec<(&str, &str)>) {
        let mut starts: Vec<usize> = body.match_indices("\n### ").map(|(i, _)| i + 1).collect();
        let head = &body[..starts.first().copied().unwrap_or(body.len())];
        starts.push(body.len());
        let sections = starts
            .windows(2)
            .map(|w| {
                let text = &body[w[0]..w[1]];
                (text.split('.').next().unwrap_or(text), text)
            })
            .collect();
        (head, sections)
    }
    let (_, old) = split(old);
    let (head, mut sections) = split(new);
    for (id, text) in old {
        if !sections.iter().any(|(n, _)| *n == id) {
            sections.push((id, text));
        }
    }
    sections.sort_by_key(|(id, _)| *id);
    let mut out = head.to_string();
    for (_, text) in sections {
        out += text;
    }
    out
}

fn write_markdown(path: &PathBuf, body: &str) {
    const BEGIN: &str =
        "<!-- bench:begin (generated by cargo xtask bench; edit outside the markers) -->";
    const END: &str = "<!-- bench:end -->";
    let old = std::fs::read_to_string(path).unwrap_or_default();
    let new = match (old.find(BEGIN), old.find(END)) {
        (Some(b), Some(e)) if b < e => {
            let body = merge_sections(&old[b + BEGIN.len() + 1..e], body);
            format!("{}{BEGIN}\n{body}{}", &old[..b], &old[e..])
        }
        _ => format!("# Benchmarks\n\n{BEGIN}\n{body}{END}\n"),
    };
    std::fs::write(path, new).expect("write BENCHMARKS.md");
}

fn main() {
    let a = args();
    assert_eq!(
        // SAFETY: geteuid takes no arguments and cannot fail.
        unsafe { libc::geteuid() },
        0,
        "the benchmarks load eBPF programs and build namespaces: run them as root"
    );
    let want = |s: &str| a.only.as_ref().is_none_or(|o| o.iter().any(|x| x == s));
    // `--only` refreshes some groups: the others keep their figures from the last run.
    let previous = a
        .only
        .as_ref()
        .and_then(|_| std::fs::read_to_string(&a.json).ok())
        .and_then(|t| serde_json::from_str::<Value>(&t).ok())
        .filter(|v| v["smoke"] == a.smoke);
    let mut r = previous.unwrap_or_else(|| json!({}));
    r["machine"] = machine();
    r["smoke"] = json!(a.smoke);
    let runs = if a.smoke { 2 } else { 5 };
    if live::run_time_stats_on() {
        eprintln!("bench: warning: kernel.bpf_stats_enabled is 1, so every BPF program run pays two extra clock reads: groups 1 and 2 are inflated (set it to 0)");
    }
    if want("kernel") {
        eprintln!("bench: 1. kernel cost per packet");
        let plan = if a.smoke {
            kernel::Plan {
                runs,
                repeat: 1000,
                distinct: 200,
            }
        } else {
            kernel::Plan {
                runs,
                repeat: 2_000_000,
                distinct: 50_000,
            }
        };
        r["kernel"] = kernel::bench(&plan);
        r["kernel"]["machine"] = machine();
    }
    if want("live") {
        eprintln!("bench: 2-3. live path overhead and peers");
        r["live"] = live::bench(
            if a.smoke { 2.0 } else { 10.0 },
            if a.smoke { 1 } else { 3 },
        );
    }
    // `--only flood`: the flood alone (it is part of the live group).
    if want("live") || want("flood") {
        eprintln!("bench: 3b. a SYN flood, live");
        r["live"]["flood"] = flood::bench(
            if a.smoke { 2_000 } else { 200_000 },
            150_000,
            if a.smoke { 6.0 } else { 25.0 },
            if a.smoke { 1 } else { 2 },
        );
        r["live"]["machine"] = machine();
    }
    if want("offline") {
        eprintln!("bench: 4. offline replay vs tshark");
        r["offline"] = offline::bench(
            if a.smoke { 20_000 } else { 1_000_000 },
            if a.smoke { 1 } else { 3 },
        );
        r["offline"]["scan"] = offline::scan(
            if a.smoke { 2_000 } else { 100_000 },
            if a.smoke { 1 } else { 3 },
        );
        r["offline"]["machine"] = machine();
    }
    if want("scale") {
        eprintln!("bench: 5. scale");
        let sizes: &[u32] = if a.smoke {
            &[2_000]
        } else {
            &[10_000, 100_000, 1_000_000]
        };
        r["scale"] = scale::bench(sizes, if a.smoke { 2 } else { 3 });
        r["scale"]["machine"] = machine();
    }
    if let Some(dir) = a.json.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    std::fs::write(&a.json, serde_json::to_string_pretty(&r).expect("json"))
        .expect("write the JSON");
    write_markdown(&a.out, &tables(&r));
    eprintln!("bench: wrote {} and {}", a.out.display(), a.json.display());
}
