//! `monitor report FILE --bundle OUT.tar.gz`: the archive unpacks (with the system's `tar`)
//! into exactly the files it says it holds, the recording and every evidence capture its
//! alerts name among them, byte for byte; a named capture that is missing, or an OUT that
//! is an input or cannot be written, is refused (exit 2) with nothing written.

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
    process::{Command, Output},
};

use serde_json::Value;

const MONITOR: &str = env!("CARGO_BIN_EXE_monitor");

fn monitor(args: &[&Path]) -> Output {
    let mut c = Command::new(MONITOR);
    c.arg("report");
    for a in args {
        c.arg(a);
    }
    c.output().expect("run monitor")
}

fn testdata(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../testdata/pcaps")
        .join(name)
}

/// A recording of a capture's replay whose alerts name evidence captures: its stall alert
/// `ev/1-stall.pcapng` (relative to the recording), and a second alert, a reset, an absolute
/// path in another directory. Both captures exist unless `missing`.
struct Case {
    _dir: tempfile::TempDir,
    dir: PathBuf,
    rec: PathBuf,
    stall: PathBuf,
    reset: PathBuf,
}

fn case(missing: bool) -> Case {
    let tmp = tempfile::tempdir().expect("temporary directory");
    let dir = tmp.path().to_path_buf();
    let raw = dir.join("raw.jsonl");
    let out = Command::new(MONITOR)
        .arg("replay")
        .arg(testdata("zeek-retransmit-timeout.pcapng"))
        .arg("--record")
        .arg(&raw)
        .output()
        .expect("run monitor replay");
    assert!(out.status.success(), "{out:?}");
    std::fs::create_dir_all(dir.join("ev")).expect("ev");
    std::fs::create_dir_all(dir.join("elsewhere")).expect("elsewhere");
    let stall = dir.join("ev/1-stall.pcapng");
    let reset = dir.join("elsewhere/2-reset.pcap");
    if !missing {
        std::fs::copy(testdata("zeek-retransmit-timeout.pcapng"), &stall).expect("copy");
    }
    std::fs::copy(testdata("zeek-single-rst.pcap"), &reset).expect("copy");
    let mut lines = Vec::new();
    let mut alerts = 0;
    for line in std::fs::read_to_string(&raw).expect("recording").lines() {
        let mut v: Value = serde_json::from_str(line).expect("a JSON line");
        if v["type"] == "alert" {
            alerts += 1;
            v["capture"] = "ev/1-stall.pcapng".into();
            lines.push(v.to_string());
            v["id"] = 2.into();
            v["kind"] = "reset".into();
            v["evidence"] =
                serde_json::json!({"rsts": 1, "suspect_injected": 1, "ttl_baseline": 63});
            v["capture"] = reset.to_string_lossy().into_owned().into();
        }
        lines.push(v.to_string());
    }
    assert_eq!(alerts, 1, "the capture raises one alert");
    let rec = dir.join("r.jsonl");
    std::fs::write(&rec, lines.join("\n") + "\n").expect("write the recording");
    Case {
        _dir: tmp,
        dir,
        rec,
        stall,
        reset,
    }
}

fn files_under(dir: &Path, root: &Path, out: &mut BTreeSet<String>) {
    for e in std::fs::read_dir(dir).expect("list").flatten() {
        let p = e.path();
        if p.is_dir() {
            files_under(&p, root, out);
        } else {
            let rel = p.strip_prefix(root).expect("under root");
            out.insert(rel.to_string_lossy().into_owned());
        }
    }
}

fn usage_error(out: &Output, needle: &str) -> String {
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "{err}");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 2, "one error line and one hint: {err}");
    assert!(
        lines[0].starts_with("error: ") && lines[1].starts_with("hint: "),
        "{err}"
    );
    assert!(err.contains(needle), "{needle:?} in: {err}");
    err
}

#[test]
fn the_bundle_unpacks_into_exactly_the_files_it_names() {
    let c = case(false);
    let out_path = c.dir.join("ticket-42.tar.gz");
    let out = monitor(&[&c.rec, Path::new("--bundle"), &out_path]);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{err}");
    // What it says it holds: `ticket-42/{report.html, ...}`.
    let said = err
        .split_once("ticket-42/{")
        .and_then(|(_, rest)| rest.split_once('}'))
        .map(|(names, _)| names)
        .unwrap_or_else(|| panic!("no file list in: {err}"));
    let named: BTreeSet<String> = said.split(", ").map(|n| format!("ticket-42/{n}")).collect();
    let expected: BTreeSet<String> = [
        "report.html",
        "report.md",
        "recording/r.jsonl",
        "captures/1-stall.pcapng",
        "captures/2-reset.pcap",
    ]
    .iter()
    .map(|n| format!("ticket-42/{n}"))
    .collect();
    assert_eq!(named, expected, "{err}");

    let unpacked = c.dir.join("unpacked");
    std::fs::create_dir_all(&unpacked).expect("dir");
    let tar = Command::new("tar")
        .arg("-xzf")
        .arg(&out_path)
        .arg("-C")
        .arg(&unpacked)
        .output()
        .expect("tar");
    assert!(tar.status.success(), "{tar:?}");
    let mut held = BTreeSet::new();
    files_under(&unpacked, &unpacked, &mut held);
    assert_eq!(held, expected, "the archive holds exactly what it names");

    let top = unpacked.join("ticket-42");
    let same = |inside: &str, original: &Path| {
        assert_eq!(
            std::fs::read(top.join(inside)).expect(inside),
            std::fs::read(original).expect("original"),
            "{inside} is the file itself"
        );
    };
    same("recording/r.jsonl", &c.rec);
    same("captures/1-stall.pcapng", &c.stall);
    same("captures/2-reset.pcap", &c.reset);
    // The reports in it name each capture where the bundle holds it, in sentences.
    let md = std::fs::read_to_string(top.join("report.md")).expect("report.md");
    for want in [
        "- **Evidence capture:** `captures/1-stall.pcapng`",
        "- **Evidence capture:** `captures/2-reset.pcap`",
        "- **Observed:** 1 reset travelling from the client to the server ended an established \
         session; it looks injected",
    ] {
        assert!(md.contains(want), "{want:?} not in:\n{md}");
    }
    let html = std::fs::read_to_string(top.join("report.html")).expect("report.html");
    assert!(
        html.contains("<code class=\"capture\">captures/2-reset.pcap</code>"),
        "{html}"
    );
    assert!(html.contains("<svg"), "the charts are in it");
    // The bundle writes nothing but OUT: no report beside the recording, no temporary file.
    let mut beside = BTreeSet::new();
    for e in std::fs::read_dir(&c.dir).expect("list").flatten() {
        beside.insert(e.file_name().to_string_lossy().into_owned());
    }
    let want: BTreeSet<String> = [
        "raw.jsonl",
        "r.jsonl",
        "ev",
        "elsewhere",
        "ticket-42.tar.gz",
        "unpacked",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    assert_eq!(beside, want);
}

#[test]
fn a_missing_capture_refuses_the_bundle_and_leaves_out_as_it_was() {
    let c = case(true);
    let out_path = c.dir.join("t.tar.gz");
    let out = monitor(&[&c.rec, Path::new("--bundle"), &out_path]);
    let err = usage_error(&out, "alert #1 names the evidence capture");
    assert!(err.contains("1-stall.pcapng"), "{err}");
    assert!(!out_path.exists(), "no bundle without its capture");
    // An existing OUT stays as it was.
    std::fs::write(&out_path, b"earlier bundle").expect("write");
    let out = monitor(&[&c.rec, Path::new("--bundle"), &out_path]);
    usage_error(&out, "1-stall.pcapng");
    assert_eq!(std::fs::read(&out_path).expect("read"), b"earlier bundle");
    let left: Vec<String> = std::fs::read_dir(&c.dir)
        .expect("list")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(left.is_empty(), "temporary files left: {left:?}");
}

#[test]
fn an_out_that_is_an_input_or_cannot_be_written_is_refused() {
    let c = case(false);
    let rec_before = std::fs::read(&c.rec).expect("read");
    let cap_before = std::fs::read(&c.reset).expect("read");
    let bundle = Path::new("--bundle");
    usage_error(&monitor(&[&c.rec, bundle, &c.rec]), "same file as FILE");
    usage_error(
        &monitor(&[&c.rec, bundle, &c.reset]),
        "same file as the evidence capture",
    );
    assert_eq!(std::fs::read(&c.rec).expect("read"), rec_before);
    assert_eq!(std::fs::read(&c.reset).expect("read"), cap_before);
    usage_error(
        &monitor(&[&c.rec, bundle, &c.dir.join("no/such/dir/t.tar.gz")]),
        "cannot write --bundle",
    );
    usage_error(
        &monitor(&[&c.rec, bundle, &c.dir.join("ev")]),
        "is a directory",
    );
    usage_error(
        &monitor(&[
            &c.rec,
            bundle,
            &c.dir.join("t.tar.gz"),
            Path::new("-o"),
            &c.dir.join("x"),
        ]),
        "cannot be used with",
    );
    usage_error(
        &monitor(&[
            &c.dir.join("nonexistent.jsonl"),
            bundle,
            &c.dir.join("t.tar.gz"),
        ]),
        "cannot read recording",
    );
    assert!(!c.dir.join("t.tar.gz").exists());
}
