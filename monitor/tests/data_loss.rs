//! No path that loses data: an output that is one of the inputs is refused (exit 2, nothing
//! written); a failed run leaves an existing file at its output path as it was; a failed
//! write on stdout exits 1 (a closed pipe ends quietly); the report's temporary file is
//! created exclusively and removed when the rename fails; a run whose recording hit a full
//! disk finishes and exits 1.

mod common;

use std::{
    fs::File,
    io::Write,
    net::TcpStream,
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
    time::{Duration, Instant},
};

use common::{Lab, MONITOR};

fn dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("monitor-loss-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

fn capture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../testdata/pcaps")
        .join(name)
}

fn run(args: &[&str], stdout: Stdio) -> Output {
    Command::new(MONITOR)
        .args(args)
        .stdin(Stdio::null())
        .stdout(stdout)
        .output()
        .expect("run monitor")
}

fn monitor(args: &[&str]) -> Output {
    run(args, Stdio::piped())
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Exit 2 with one `error:` line naming `what` and one `hint:` line.
fn refused(out: &Output, what: &str) {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 2, "{err}");
    assert!(
        lines[0].starts_with("error: ") && lines[0].contains(what),
        "{err}"
    );
    assert!(lines[1].starts_with("hint: "), "{err}");
}

/// Exit 1 with one `error:` line containing `what`.
fn failed(out: &Output, what: &str) {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let last = err.lines().last().unwrap_or_default();
    assert!(last.starts_with("error: ") && last.contains(what), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

fn names(d: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(d)
        .expect("list")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .collect();
    v.sort();
    v
}

fn s(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

fn dev_full() -> Stdio {
    Stdio::from(
        std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .expect("/dev/full"),
    )
}

#[test]
fn an_output_that_is_an_input_is_refused_and_nothing_is_written() {
    let d = dir("same");
    let cap = d.join("x.pcapng");
    std::fs::copy(capture("zeek-retransmit-timeout.pcapng"), &cap).expect("copy");
    let before = std::fs::read(&cap).expect("read");
    let link = d.join("link.pcapng");
    std::os::unix::fs::symlink(&cap, &link).expect("symlink");
    for out in [&cap, &link] {
        refused(
            &monitor(&["replay", &s(&cap), "--record", &s(out)]),
            "same file",
        );
    }
    let cfg = d.join("alerts.toml");
    std::fs::write(&cfg, "# thresholds\n").expect("config");
    refused(
        &monitor(&[
            "replay",
            &s(&cap),
            "--config",
            &s(&cfg),
            "--record",
            &s(&cfg),
        ]),
        "--config",
    );
    // Appending stdout to the capture would grow it while it is read.
    let append = std::fs::OpenOptions::new()
        .append(true)
        .open(&cap)
        .expect("append");
    refused(
        &run(&["replay", &s(&cap)], Stdio::from(append)),
        "standard output",
    );
    assert_eq!(std::fs::read(&cap).expect("read"), before, "capture kept");
    assert_eq!(
        std::fs::read_to_string(&cfg).expect("read"),
        "# thresholds\n"
    );

    // A report over its own recording, named or by default (a recording called .html).
    let rec = d.join("r.jsonl");
    let out = monitor(&["replay", &s(&cap), "--record", &s(&rec)]);
    assert!(out.status.success(), "{}", stderr(&out));
    let recording = std::fs::read(&rec).expect("recording");
    refused(&monitor(&["report", &s(&rec), "-o", &s(&rec)]), "same file");
    refused(
        &monitor(&["report", &s(&rec), "--format", "md", "-o", &s(&rec)]),
        "same file",
    );
    let html_named = d.join("r.html");
    std::fs::copy(&rec, &html_named).expect("copy");
    refused(&monitor(&["report", &s(&html_named)]), "same file");
    assert_eq!(std::fs::read(&rec).expect("read"), recording);
    assert_eq!(std::fs::read(&html_named).expect("read"), recording);

    // live and demo: the recording, the alerts log and the config are three files. These
    // fail before anything is attached or built (without the check they would run).
    for cmd in [
        vec!["live", "-i", "lo", "--headless", "--duration", "1"],
        vec!["demo", "--headless", "--duration", "1"],
    ] {
        let mut a = cmd.clone();
        let (c, r) = (s(&cfg), s(&rec));
        a.extend(["--config", &c, "--record", &c]);
        refused(&monitor(&a), "--config");
        let mut a = cmd.clone();
        a.extend(["--record", &r, "--alerts-log", &r]);
        refused(&monitor(&a), "--alerts-log");
    }
    assert_eq!(
        std::fs::read_to_string(&cfg).expect("read"),
        "# thresholds\n"
    );
    assert_eq!(std::fs::read(&rec).expect("read"), recording);
    let _ = std::fs::remove_dir_all(&d);
}

/// A copy of a pcapng capture whose middle block has an impossible length: damaged, not
/// cut, so every reader refuses it with its offset.
fn damaged_capture(to: &Path) {
    let mut b = std::fs::read(capture("zeek-retransmit-timeout.pcapng")).expect("read");
    let mut starts = Vec::new();
    let mut off = 0;
    while off + 8 <= b.len() {
        starts.push(off);
        let len = u32::from_le_bytes(b[off + 4..off + 8].try_into().expect("4 bytes"));
        off += len as usize;
    }
    assert!(starts.len() > 4, "a capture of several blocks");
    let mid = starts[starts.len() / 2];
    b[mid + 4..mid + 8].copy_from_slice(&13u32.to_le_bytes());
    std::fs::write(to, b).expect("write");
}

#[test]
fn a_failed_replay_leaves_an_existing_recording_as_it_was() {
    let d = dir("failed");
    let rec = d.join("r.jsonl");
    std::fs::write(&rec, "precious\n").expect("write");
    let bad = d.join("bad.pcapng");
    damaged_capture(&bad);
    let out = monitor(&["replay", &s(&bad), "--record", &s(&rec)]);
    refused(&out, "damaged");
    let kept = || {
        assert_eq!(std::fs::read_to_string(&rec).expect("kept"), "precious\n");
        assert_eq!(
            names(&d),
            ["bad.pcapng", "r.jsonl"],
            "no temporary file left"
        );
    };
    kept();
    // A replay whose summary could not be written failed too.
    let good = capture("zeek-retransmit-timeout.pcapng");
    let out = run(&["replay", &s(&good), "--record", &s(&rec)], dev_full());
    failed(&out, "No space left");
    kept();
    let out = run(
        &[
            "replay",
            &s(&good),
            "--record",
            &s(&rec),
            "--record-max-mb",
            "1",
        ],
        dev_full(),
    );
    failed(&out, "No space left");
    kept();
    // A run that succeeds replaces it.
    let out = monitor(&["replay", &s(&good), "--record", &s(&rec)]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = std::fs::read_to_string(&rec).expect("read");
    let first: serde_json::Value =
        serde_json::from_str(text.lines().next().unwrap_or_default()).expect("JSON");
    assert_eq!(first["type"], "header");
    assert_eq!(names(&d), ["bad.pcapng", "r.jsonl"]);
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn a_failed_write_on_stdout_exits_1_and_a_closed_pipe_ends_quietly() {
    let d = dir("stdout");
    let cap = s(&capture("zeek-retransmit-timeout.pcapng"));
    for args in [vec!["replay", &cap, "--json"], vec!["replay", &cap]] {
        failed(&run(&args, dev_full()), "writing to standard output");
    }
    let rec = d.join("r.jsonl");
    let out = monitor(&["replay", &cap, "--record", &s(&rec)]);
    assert!(out.status.success(), "{}", stderr(&out));
    failed(
        &run(&["report", &s(&rec), "--format", "md"], dev_full()),
        "writing to standard output",
    );
    // A reader that has gone: nothing to say, exit 0.
    let (reader, writer) = std::io::pipe().expect("pipe");
    drop(reader);
    let out = run(&["replay", &cap, "--json"], Stdio::from(writer));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stderr(&out), "");
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn the_reports_temporary_file_follows_no_planted_link_and_never_stays() {
    let d = dir("report");
    let rec = d.join("r.jsonl");
    let cap = s(&capture("zeek-retransmit-timeout.pcapng"));
    let out = monitor(&["replay", &cap, "--record", &s(&rec)]);
    assert!(out.status.success(), "{}", stderr(&out));
    // A link planted at the name the report's temporary file used to have.
    let victim = d.join("victim");
    std::fs::write(&victim, "root's file\n").expect("victim");
    std::os::unix::fs::symlink(&victim, d.join("r.tmp-report")).expect("plant");
    let out = monitor(&["report", &s(&rec)]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        std::fs::read_to_string(&victim).expect("read"),
        "root's file\n"
    );
    let html = d.join("r.html");
    let meta = std::fs::symlink_metadata(&html).expect("report");
    assert!(
        meta.is_file(),
        "the report is a file of its own, not a link"
    );
    assert!(std::fs::read_to_string(&html)
        .expect("read")
        .contains("<svg"));
    assert_eq!(
        names(&d),
        ["r.html", "r.jsonl", "r.tmp-report", "victim"],
        "nothing else left"
    );
    // A rename that fails (a directory where the report goes): exit 1, nothing left.
    let target = d.join("out.html");
    std::fs::create_dir(&target).expect("dir");
    std::fs::write(target.join("inside"), "kept\n").expect("write");
    let before = names(&d);
    let out = monitor(&["report", &s(&rec), "-o", &s(&target)]);
    failed(&out, "out.html");
    assert_eq!(names(&d), before, "no temporary file stays");
    assert_eq!(names(&target), ["inside"]);
    let _ = std::fs::remove_dir_all(&d);
}

/// A tmpfs of `kb` KiB, unmounted (and its mount point removed) on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn new(tag: &str, kb: u32) -> Self {
        let d = dir(tag);
        common::sh(&[
            "mount",
            "-t",
            "tmpfs",
            "-o",
            &format!("size={kb}k"),
            "monitor-test",
            &s(&d),
        ]);
        Tmpfs(d)
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn a_replay_that_fills_the_disk_exits_1_and_keeps_what_was_there() {
    if !common::privileged() {
        return;
    }
    let fs = Tmpfs::new("fullreplay", 4);
    let rec = fs.0.join("r.jsonl");
    std::fs::write(&rec, "precious\n").expect("write");
    // A capture whose recording is larger than the file system.
    let cap = s(&capture("cs-inconsistent_printer.pcapng"));
    let out = monitor(&["replay", &cap, "--record", &s(&rec)]);
    failed(&out, "No space left");
    assert_eq!(std::fs::read_to_string(&rec).expect("read"), "precious\n");
    assert_eq!(names(&fs.0), ["r.jsonl"], "no temporary file left");
}

#[test]
fn a_live_run_whose_recording_fills_the_disk_goes_on_and_exits_1() {
    if !common::privileged() {
        return;
    }
    let fs = Tmpfs::new("fulllive", 4);
    let rec = fs.0.join("r.jsonl");
    let lab = Lab::new("df");
    let srv = lab.sink(50001);
    let (child, mut err) =
        lab.start_monitor(&["--ports", "50001", "--record", &s(&rec), "--duration", "8"]);
    // A flow that changes every tick until the recording has said it stopped.
    let ip = lab.server_ip;
    let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
    let cli = Lab::in_ns(&lab.client_ns, move || {
        let mut s = TcpStream::connect((ip, 50001)).expect("connect");
        while stop_rx.try_recv().is_err() {
            if s.write_all(&[1u8; 1000]).is_err() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    });
    let deadline = Instant::now() + Duration::from_secs(25);
    let mut said = String::new();
    while Instant::now() < deadline {
        let mut line = String::new();
        use std::io::BufRead;
        if err.read_line(&mut line).unwrap_or(0) == 0 {
            break;
        }
        if line.contains("recording") {
            said = line;
            break;
        }
    }
    let _ = stop_tx.send(());
    let _ = cli.join();
    let _ = srv.join();
    assert!(said.contains("No space left"), "{said:?}");
    // It goes on watching until its duration: summaries still come, then exit 1.
    let out = child.wait_with_output().expect("monitor");
    let mut rest = String::new();
    use std::io::Read;
    let _ = err.read_to_string(&mut rest);
    assert_eq!(out.status.code(), Some(1), "{rest}");
    assert!(
        rest.lines()
            .any(|l| l.starts_with("error: ") && l.contains("recording")),
        "{rest}"
    );
    let summaries = String::from_utf8_lossy(&out.stdout).lines().count();
    assert!(summaries > 3, "{summaries} summaries");
}

#[test]
fn live_output_to_a_full_disk_exits_1() {
    if !common::privileged() {
        return;
    }
    let lab = Lab::new("dl");
    let out = lab
        .monitor(&["--json", "--duration", "3"])
        .stdout(dev_full())
        .output()
        .expect("monitor");
    failed(&out, "writing to standard output");
    assert!(stderr(&out).contains("detached"), "{}", stderr(&out));
}

#[test]
fn a_record_path_that_is_a_device_is_written_in_place_and_never_removed() {
    if !common::privileged() {
        return;
    }
    let d = dir("device");
    // A private null device: a failed replay used to remove whatever was at --record.
    let null = d.join("null");
    common::sh(&["mknod", "-m", "666", &s(&null), "c", "1", "3"]);
    let is_device = |p: &Path| {
        use std::os::unix::fs::FileTypeExt;
        std::fs::symlink_metadata(p).is_ok_and(|m| m.file_type().is_char_device())
    };
    let bad = d.join("bad.pcapng");
    damaged_capture(&bad);
    refused(
        &monitor(&["replay", &s(&bad), "--record", &s(&null)]),
        "damaged",
    );
    assert!(is_device(&null), "the device is still there");
    let good = s(&capture("zeek-retransmit-timeout.pcapng"));
    let out = monitor(&["replay", &good, "--record", &s(&null)]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(is_device(&null), "written in place, not replaced");
    // Rotation renames files: refused for a device.
    refused(
        &monitor(&[
            "replay",
            &good,
            "--record",
            &s(&null),
            "--record-max-mb",
            "1",
        ]),
        "not a regular file",
    );
    assert!(is_device(&null));
    assert_eq!(names(&d), ["bad.pcapng", "null"]);
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn demo_output_to_a_full_disk_exits_1_and_removes_its_lab() {
    if !common::privileged() {
        return;
    }
    let child = Command::new(MONITOR)
        .args(["demo", "--headless", "--json", "--duration", "2"])
        .stdin(Stdio::null())
        .stdout(dev_full())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start demo");
    let pid = child.id();
    let out = child.wait_with_output().expect("demo");
    failed(&out, "writing to standard output");
    assert!(stderr(&out).contains("lab removed"), "{}", stderr(&out));
    assert_eq!(common::demo_namespaces(Some(pid)), Vec::<String>::new());
}

#[test]
fn a_link_stays_a_link_and_a_link_to_stdout_is_written_through() {
    let d = dir("links");
    let cap = s(&capture("zeek-retransmit-timeout.pcapng"));
    // A recording through a link to a file: the file is replaced, the link stays.
    let real = d.join("real.jsonl");
    std::fs::write(&real, "old\n").expect("write");
    let link = d.join("link.jsonl");
    std::os::unix::fs::symlink(&real, &link).expect("symlink");
    let out = monitor(&["replay", &cap, "--record", &s(&link)]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(std::fs::symlink_metadata(&link)
        .expect("link")
        .file_type()
        .is_symlink());
    assert!(std::fs::read_to_string(&real)
        .expect("read")
        .contains("\"header\""));
    // As `-o /dev/stdout` is: a link to the process's own stdout, here a pipe, then a file.
    let stdout = d.join("stdout");
    std::os::unix::fs::symlink("/proc/self/fd/1", &stdout).expect("symlink");
    let out = monitor(&["report", &s(&real), "-o", &s(&stdout)]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("<svg"));
    let file = d.join("captured.html");
    let out = run(
        &["report", &s(&real), "-o", &s(&stdout)],
        Stdio::from(File::create(&file).expect("create")),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(std::fs::read_to_string(&file)
        .expect("read")
        .contains("<svg"));
    for l in [&link, &stdout] {
        let m = std::fs::symlink_metadata(l).expect("link");
        assert!(m.file_type().is_symlink(), "{} replaced", l.display());
    }
    assert_eq!(
        names(&d),
        ["captured.html", "link.jsonl", "real.jsonl", "stdout"]
    );
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn a_live_run_that_fails_before_attaching_leaves_the_recording_as_it_was() {
    let d = dir("liveearly");
    let rec = d.join("r.jsonl");
    std::fs::write(&rec, "precious\n").expect("write");
    // Refused before attaching (no such interface; without root: no privileges).
    let out = monitor(&[
        "live",
        "-i",
        "no-such-if0",
        "--headless",
        "--record",
        &s(&rec),
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert_eq!(std::fs::read_to_string(&rec).expect("read"), "precious\n");
    assert_eq!(names(&d), ["r.jsonl"], "no temporary file left");
    let _ = std::fs::remove_dir_all(&d);
}
