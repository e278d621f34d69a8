//! Recordings and reports: `kill -9` mid-run loses at most the last second and the reader
//! and report still work; a damaged line is an error with its number; a capture becomes a
//! report with one command; the HTML report renders in headless Chromium, chart included,
//! with a screenshot kept as a test artifact (`target/test-artifacts/report.png`).

mod common;

use std::{
    io::{BufRead, BufReader, Write},
    net::TcpStream,
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use common::{Lab, MONITOR};
use serde_json::Value;

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("monitor-rec-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir.join(name)
}

fn monitor(args: &[&str]) -> Output {
    Command::new(MONITOR)
        .args(args)
        .output()
        .expect("run monitor")
}

fn ok(out: &Output) -> String {
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "monitor failed: {err}");
    err
}

/// The Markdown report of the recording `rec`, printed on stdout.
fn markdown(rec: &Path) -> String {
    let out = monitor(&[
        "report",
        &rec.to_string_lossy(),
        "--format",
        "md",
        "-o",
        "-",
    ]);
    ok(&out);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn lines(p: &Path) -> Vec<Value> {
    std::fs::read_to_string(p)
        .expect("recording")
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

fn epoch_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

#[test]
fn kill_9_loses_at_most_the_last_second() {
    if !common::privileged() {
        return;
    }
    let lab = Lab::new("k");
    let rec = tmp("killed.jsonl");
    let srv = lab.sink(50001);
    let mut child = lab
        .monitor(&["--ports", "50001", "--record", &rec.to_string_lossy()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start monitor");
    // The recording is in place once the programs are attached: wait for that, however
    // long loading takes on a busy machine (the reader stays open for its later lines).
    let mut err = BufReader::new(child.stderr.take().expect("stderr"));
    let mut line = String::new();
    err.read_line(&mut line).expect("read monitor stderr");
    assert!(line.contains("attached"), "monitor did not attach: {line}");
    let ip = lab.server_ip;
    let cli = Lab::in_ns(&lab.client_ns, move || {
        let mut s = TcpStream::connect((ip, 50001)).expect("connect");
        for _ in 0..60 {
            s.write_all(&[1u8; 1000]).expect("write");
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    // Kill mid-run, once the flow is on disk and a few ticks have followed it.
    let end = Instant::now() + Duration::from_secs(30);
    loop {
        let now = std::fs::read_to_string(&rec).unwrap_or_default();
        let after_flow = now
            .lines()
            .skip_while(|l| !l.contains("\"type\":\"flow\""))
            .filter(|l| l.contains("\"type\":\"tick\""))
            .count();
        if after_flow >= 3 {
            break;
        }
        assert!(Instant::now() < end, "no flow and ticks recorded:\n{now}");
        std::thread::sleep(Duration::from_millis(100));
    }
    // `ip netns exec` runs the monitor as its child after exec: kill the monitor itself.
    let killed_at = epoch_ns();
    let pid = child.id() as i32;
    // SAFETY: a plain system call on a process id we own; it touches no memory of ours.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    let _ = child.wait();
    drop(err);
    let _ = cli.join();
    let _ = srv.join();

    let all = lines(&rec);
    assert_eq!(all[0]["type"], "header", "{:?}", all.first());
    let last_tick = all
        .iter()
        .filter(|v| v["type"] == "tick")
        .filter_map(|v| v["ts_ns"].as_u64())
        .max()
        .expect("ticks");
    let lost = killed_at.saturating_sub(last_tick) as f64 / 1e9;
    assert!(
        lost <= 1.5,
        "the last tick on disk is {lost:.2} s before the kill"
    );
    assert!(
        all.iter().any(|v| v["type"] == "flow"),
        "flow lines recorded"
    );

    // A kill in the middle of a write leaves a cut line: the reader drops it and says so.
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&rec)
        .expect("append");
    f.write_all(br#"{"type":"flow","ts_ns":1,"cli"#)
        .expect("cut line");
    drop(f);
    let text = markdown(&rec);
    assert!(
        text.contains("# TCP health report") && text.contains("cut line"),
        "{text}"
    );
    assert!(
        text.contains(":50001"),
        "the flow is in the report:\n{text}"
    );
    let html = tmp("killed.html");
    let err = ok(&monitor(&[
        "report",
        &rec.to_string_lossy(),
        "-o",
        &html.to_string_lossy(),
    ]));
    assert!(err.contains("report written"), "{err}");
    assert!(std::fs::read_to_string(&html)
        .expect("html")
        .contains("<svg"));
}

#[test]
fn a_damaged_line_in_the_middle_is_an_error_with_its_number() {
    let rec = tmp("damaged.jsonl");
    record_capture(&rec);
    let text = std::fs::read_to_string(&rec).expect("recording");
    let mut lines: Vec<&str> = text.lines().collect();
    assert!(lines.len() > 10);
    lines[6] = "{\"type\":\"tick\",\"ts_ns\":12 garbage";
    std::fs::write(&rec, lines.join("\n") + "\n").expect("damage");
    let out = monitor(&["report", &rec.to_string_lossy()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("line 7") && err.contains("hint:"), "{err}");
    assert!(!err.contains("panicked"));
    assert!(
        !rec.with_extension("html").exists(),
        "no report from a damaged recording"
    );
    let out = monitor(&["report", "/nonexistent.jsonl"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn a_capture_becomes_a_report_that_renders_in_chromium() {
    let rec = tmp("capture.jsonl");
    record_capture(&rec);
    let all = lines(&rec);
    assert_eq!(all[0]["source"], "replay");
    assert!(
        all.iter().any(|v| v["type"] == "alert"),
        "replay judges alerts too"
    );
    let html = tmp("capture.html");
    ok(&monitor(&[
        "report",
        &rec.to_string_lossy(),
        "-o",
        &html.to_string_lossy(),
    ]));
    let page = std::fs::read_to_string(&html).expect("report");
    // Self-contained: nothing to fetch (the only URL is the SVG namespace, an identifier).
    for fetch in [
        "<script",
        "<link",
        "src=\"http",
        "href=\"http",
        "url(http",
        "@import",
    ] {
        assert!(
            !page.contains(fetch),
            "the report fetches something: {fetch}"
        );
    }
    assert!(page.contains("id=\"chart-retx\"") && page.contains("<svg"));

    // Rendered by a real browser: the DOM holds the charts' drawn lines...
    let url = format!("file://{}", html.display());
    let chrome = |extra: &[&str]| {
        Command::new("chromium")
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--hide-scrollbars",
            ])
            .args(extra)
            .arg(&url)
            .output()
            .expect("chromium (Debian package; cargo xtask setup installs it)")
    };
    let dom = chrome(&["--dump-dom"]);
    let dom = String::from_utf8_lossy(&dom.stdout);
    assert!(
        dom.contains("<svg") && dom.contains("<polyline"),
        "charts in the DOM"
    );
    assert!(
        dom.contains("Retransmission rate") && dom.contains("Worst flows"),
        "{dom}"
    );
    assert!(
        dom.contains("<dt>What it means</dt>") && dom.contains("class=\"alert-label\""),
        "each alert explained, its marker labelled: {dom}"
    );
    // ...and a screenshot, kept for people to look at.
    let artifacts = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/test-artifacts");
    std::fs::create_dir_all(&artifacts).expect("artifacts dir");
    let shot = artifacts.join("report.png");
    let _ = std::fs::remove_file(&shot);
    let out = chrome(&[
        "--window-size=1200,1600",
        &format!("--screenshot={}", shot.display()),
    ]);
    let png = std::fs::read(&shot)
        .unwrap_or_else(|_| panic!("no screenshot: {}", String::from_utf8_lossy(&out.stderr)));
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 20_000,
        "a real screenshot ({} bytes)",
        png.len()
    );
}

/// Both reports say each alert in plain sentences with its evidence rounded, never as the
/// recording's JSON (`"no_ack_progress_s": 300.0`).
#[test]
fn the_reports_explain_each_alert_in_sentences() {
    let rec = tmp("explained.jsonl");
    record_capture(&rec);
    let md = markdown(&rec);
    for want in [
        "### Alert #1: stall (critical), 10.0.0.1:51889 > 192.168.0.1:80",
        "- **Observed:** Data sent from the client to the server stayed unacknowledged: no \
         acknowledgment moved forward for 5m00s, while 1 retransmission was sent.",
        "- **A healthy flow:** The receiver acknowledges data within a round trip",
        "- **What it means:** The data and its retransmissions do not get through",
        "- **Evidence:** bytes in flight: 0 bytes; no acknowledgment progress for: 5m00s; \
         retransmissions without progress: 1",
    ] {
        assert!(md.contains(want), "{want:?} not in:\n{md}");
    }
    let html = tmp("explained.html");
    ok(&monitor(&[
        "report",
        &rec.to_string_lossy(),
        "-o",
        &html.to_string_lossy(),
    ]));
    let page = std::fs::read_to_string(&html).expect("report");
    assert!(
        page.contains("<section class=\"alert\" id=\"alert-1\">")
            && page.contains("<dt>What it means</dt><dd>The data and its retransmissions"),
        "{page}"
    );
    assert!(
        page.contains("<td>no acknowledgment progress for</td><td>5m00s</td>"),
        "{page}"
    );
    for raw in ["no_ack_progress_s", "bytes_in_flight", "<pre>"] {
        assert!(!page.contains(raw), "raw evidence {raw:?} in the report");
        assert!(!md.contains(raw), "raw evidence {raw:?} in the Markdown");
    }
}

/// Records the replay of a capture with retransmissions and a timeout into `rec`.
fn record_capture(rec: &Path) {
    let cap = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../testdata/pcaps/zeek-retransmit-timeout.pcapng");
    ok(&monitor(&[
        "replay",
        &cap.to_string_lossy(),
        "--record",
        &rec.to_string_lossy(),
    ]));
}

/// The media verdicts reach the report: a replay of an intercepted pseudo-TLS exchange,
/// recorded, gives a Media section naming the flow's verdict, in HTML and Markdown; a
/// capture with no media flow has none.
#[test]
fn the_report_has_a_media_section_with_each_verdict() {
    let cap = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/media/intercepted.pcap");
    let rec = tmp("media.jsonl");
    ok(&monitor(&[
        "replay",
        &cap.to_string_lossy(),
        "--record",
        &rec.to_string_lossy(),
    ]));
    let md = markdown(&rec);
    assert!(md.contains("## Media"), "{md}");
    assert!(
        md.contains("Verdicts on the media flows' first bytes: 1 intercepted."),
        "{md}"
    );
    assert!(
        md.contains("| pseudo_tls | tls | intercepted | - |"),
        "{md}"
    );
    let html = tmp("media.html");
    ok(&monitor(&[
        "report",
        &rec.to_string_lossy(),
        "-o",
        &html.to_string_lossy(),
    ]));
    let page = std::fs::read_to_string(&html).expect("report");
    assert!(
        page.contains("<table id=\"media\">") && page.contains("<td>intercepted</td>"),
        "{page}"
    );
    let plain = tmp("plain.jsonl");
    record_capture(&plain);
    let md = markdown(&plain);
    assert!(!md.contains("## Media"));
}

/// An alert with an evidence capture gets a ladder diagram of its flow's key packets in the
/// report, drawn by a real browser: the pseudo-TLS hello, the answer made in the server's
/// name and the reset, with their TTLs (61 where the server's SYN/ACK had 64).
#[test]
fn an_alert_with_a_capture_gets_its_ladder_diagram() {
    let cap = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/media/intercepted.pcap");
    let dir = tmp("ladder-evidence");
    let _ = std::fs::remove_dir_all(&dir);
    let rec = tmp("ladder.jsonl");
    ok(&monitor(&[
        "replay",
        &cap.to_string_lossy(),
        "--record",
        &rec.to_string_lossy(),
        "--evidence",
        &dir.to_string_lossy(),
    ]));
    let html = tmp("ladder.html");
    ok(&monitor(&[
        "report",
        &rec.to_string_lossy(),
        "-o",
        &html.to_string_lossy(),
    ]));
    let page = std::fs::read_to_string(&html).expect("report");
    assert!(page.contains("<svg class=\"ladder\""), "{page}");
    for want in [
        "pseudo-TLS hello (TTL 64)",
        // Cut at the evidence snap length (256 bytes): the Certificate runs past it.
        "TLS ServerHello + Certificate (TTL 61)",
        "RST (TTL 61)",
    ] {
        assert!(page.contains(want), "{want:?} not in the ladder");
    }
    let url = format!("file://{}", html.display());
    let dom = Command::new("chromium")
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--dump-dom"])
        .arg(&url)
        .output()
        .expect("chromium (Debian package; cargo xtask setup installs it)");
    let dom = String::from_utf8_lossy(&dom.stdout);
    assert!(
        // Two alerts on the flow (media_intercepted and reset), a ladder each.
        dom.contains("class=\"ladder\"") && dom.matches("class=\"step bad\"").count() == 4,
        "the ladder in the rendered DOM, the forged answer and the reset marked: {dom}"
    );
    // A report of a recording whose capture is gone still renders, without the diagram.
    let _ = std::fs::remove_dir_all(&dir);
    ok(&monitor(&[
        "report",
        &rec.to_string_lossy(),
        "-o",
        &html.to_string_lossy(),
    ]));
    let page = std::fs::read_to_string(&html).expect("report");
    assert!(!page.contains("<svg class=\"ladder\""));
}
