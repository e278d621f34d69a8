//! `monitor replay --evidence DIR` within its limits: `--evidence-max-mb` drops files
//! (cleared alerts' first), says so and holds; bad directories are refused before anything
//! is read. tshark is a test tool (`cargo xtask setup`): missing, these tests fail.

mod common;
mod evidence;

use std::{path::Path, process::Command};

use evidence::*;
use serde_json::Value;

#[test]
fn the_directory_limit_drops_files_cleared_first_and_says_so() {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("lossy.pcap");
    let ev = dir.path().join("ev");
    let record = dir.path().join("run.jsonl");
    // Four lossy sessions of about 0.6 MB of evidence each, one after the other (the first
    // ones' alerts clear while the later ones run): 2.4 MB for a 1 MB directory.
    let mut frames = Vec::new();
    for i in 0..4u8 {
        frames.extend(
            Session {
                client: ip([10, 88, 1, 20 + i]),
                cport: 41000,
                server: ip(SERVER),
                sport: 50002,
                isn: 1000 + u32::from(i),
                t: T0 + u64::from(i) * 60_000 * MS,
                segments: 1600,
                lossy: Some(4),
                reset_ttl: None,
            }
            .frames_every(20 * MS),
        );
    }
    write_raw_ip_capture(&input, frames);
    let (v, stderr) = run_replay(&[
        &input.display().to_string(),
        "--json",
        "--evidence",
        &ev.display().to_string(),
        "--evidence-max-mb",
        "1",
        "--record",
        &record.display().to_string(),
    ]);
    let total: u64 = std::fs::read_dir(&ev)
        .expect("evidence dir")
        .map(|e| e.expect("entry").metadata().expect("size").len())
        .sum();
    assert!(total <= 1024 * 1024, "{total} bytes in {}", ev.display());
    // Every alert raised named a capture; those not in the directory were said dropped,
    // cleared alerts' first, oldest first.
    let rec: Vec<Value> = std::fs::read_to_string(&record)
        .expect("recording")
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .filter(|l: &Value| l["type"] == "alert")
        .collect();
    let raised: Vec<&Value> = rec.iter().filter(|l| l["alert"] == "raised").collect();
    assert!(raised.len() >= 4, "{rec:#?}");
    let cleared = |id: &Value| {
        rec.iter()
            .any(|l| l["alert"] == "cleared" && &l["id"] == id)
    };
    let mut order: Vec<(bool, u64, String)> = raised
        .iter()
        .map(|l| {
            let path = l["capture"].as_str().expect("capture").to_string();
            (!cleared(&l["id"]), l["id"].as_u64().expect("id"), path)
        })
        .collect();
    order.sort();
    let dropped: Vec<&str> = stderr.lines().filter(|l| l.contains("dropped")).collect();
    assert!(!dropped.is_empty(), "nothing dropped: {stderr}");
    let missing: Vec<&String> = order
        .iter()
        .map(|o| &o.2)
        .filter(|p| !Path::new(p).exists())
        .collect();
    assert_eq!(missing.len(), dropped.len(), "{stderr}");
    for (line, path) in dropped.iter().zip(&missing) {
        assert!(
            line.contains(path.as_str()) && line.contains("--evidence-max-mb 1"),
            "{line}"
        );
    }
    // What goes first is what comes first in that order.
    let firsts: Vec<&String> = order.iter().take(missing.len()).map(|o| &o.2).collect();
    assert_eq!(missing, firsts, "{stderr}");
    // The files kept are whole, of the input's link type, and the summary names only them.
    let kept: Vec<&String> = order
        .iter()
        .map(|o| &o.2)
        .filter(|p| Path::new(p).exists())
        .collect();
    assert!(!kept.is_empty(), "{stderr}");
    for p in &kept {
        let info = String::from_utf8_lossy(
            &Command::new("capinfos")
                .arg(p)
                .output()
                .expect("capinfos")
                .stdout,
        )
        .into_owned();
        assert!(info.contains("Raw IP"), "{p}: {info}");
        assert!(!tshark(&["-r", p]).is_empty(), "{p}");
    }
    for a in v["alerts"].as_array().expect("alerts") {
        if let Some(p) = a["capture"].as_str() {
            assert!(
                Path::new(p).exists(),
                "the summary names a dropped file: {a}"
            );
        }
    }
    let leftovers: Vec<_> = std::fs::read_dir(&ev)
        .expect("evidence dir")
        .filter_map(|e| e.ok())
        .filter(|e| {
            !e.file_name().to_string_lossy().ends_with(".pcapng")
                || e.file_name().to_string_lossy().starts_with('.')
        })
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
}

/// Each bad `--evidence` is one error line, one hint line, exit 2, before anything is read
/// or written: no summary on stdout, no directory made.
#[test]
fn bad_evidence_directories_are_refused_before_anything_is_read() {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("in.pcap");
    write_capture(
        &input,
        Session {
            client: ip(CLIENT),
            cport: 40002,
            server: ip(SERVER),
            sport: 50002,
            isn: 1,
            t: T0,
            segments: 3,
            lossy: None,
            reset_ttl: None,
        }
        .frames(),
    );
    let a_file = dir.path().join("plain-file");
    std::fs::write(&a_file, b"x").expect("write");
    let ev = dir.path().join("ev");
    std::fs::create_dir(&ev).expect("ev");
    let inside = ev.join("1-reset-10.0.0.1_1-10.0.0.2_2.pcapng");
    std::fs::copy(&input, &inside).expect("copy");
    let missing_parent = dir.path().join("no/such/dir");
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec![
                input.display().to_string(),
                "--evidence".into(),
                a_file.display().to_string(),
            ],
            "is not a directory",
        ),
        (
            vec![
                input.display().to_string(),
                "--evidence".into(),
                "/proc/1".into(),
            ],
            "cannot be written",
        ),
        (
            vec![
                input.display().to_string(),
                "--evidence".into(),
                missing_parent.display().to_string(),
            ],
            "nor does its parent",
        ),
        (
            vec![
                inside.display().to_string(),
                "--evidence".into(),
                ev.display().to_string(),
            ],
            "could be overwritten",
        ),
        (
            vec!["-".into(), "--evidence".into(), ev.display().to_string()],
            "standard input",
        ),
    ];
    for (args, why) in cases {
        let out = Command::new(common::MONITOR)
            .arg("replay")
            .args(&args)
            .stdin(std::process::Stdio::null())
            .output()
            .expect("run");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(lines.len(), 2, "{args:?}: {err}");
        assert!(
            lines[0].starts_with("error: ") && lines[0].contains(why),
            "{args:?}: {err}"
        );
        assert!(lines[1].starts_with("hint: "), "{args:?}: {err}");
        assert!(out.stdout.is_empty(), "{args:?}");
    }
    assert!(!missing_parent.exists());
    // A capture found damaged while it is read: exit 2, and the new DIR is not made.
    let damaged = dir.path().join("damaged.pcap");
    let mut bytes = std::fs::read(&input).expect("read");
    // A record header claiming 1 GB: refused as damaged, not waited for as a cut.
    bytes.extend_from_slice(&[0; 8]);
    bytes.extend_from_slice(&(1u32 << 30).to_le_bytes());
    bytes.extend_from_slice(&(1u32 << 30).to_le_bytes());
    bytes.extend_from_slice(&[0; 64]);
    std::fs::write(&damaged, bytes).expect("write");
    let fresh = dir.path().join("fresh");
    let out = Command::new(common::MONITOR)
        .arg("replay")
        .arg(&damaged)
        .arg("--evidence")
        .arg(&fresh)
        .output()
        .expect("run");
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!fresh.exists(), "a failed run made --evidence's directory");
    assert_eq!(
        std::fs::read_dir(&ev).expect("ev").count(),
        1,
        "only the input is in ev"
    );
}
