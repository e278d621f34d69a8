//! The documentation stays true to the code: no file cites a design document that is not
//! in the repository, and every field the JSON outputs emit is named in docs/contract.md.
//! No privileges needed: it reads the tree and replays the test captures.

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
    process::Command,
};

use serde_json::Value;

const MONITOR: &str = env!("CARGO_BIN_EXE_monitor");

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Names of documents outside the repository that code and docs once cited. Built at run
/// time so this file does not name them itself.
fn outside_names() -> Vec<String> {
    let mut names: Vec<String> = ["DESIGN", "TOOLCHAIN", "ARCHITECTURE"]
        .iter()
        .map(|n| format!("{n}.md"))
        .collect();
    names.push(["TCP", "ANALYSIS"].join("-"));
    names.push(["", "work", "shared"].join("/"));
    names
}

/// Every file under `dir` (build output, git and fuzz corpora left out).
fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        let name = e.file_name();
        let name = name.to_string_lossy();
        if p.is_dir() {
            if !matches!(name.as_ref(), "target" | ".git" | "corpus" | "artifacts") {
                files(&p, out);
            }
        } else {
            out.push(p);
        }
    }
}

#[test]
fn no_file_cites_a_document_outside_the_repository() {
    let root = root();
    let mut all = Vec::new();
    files(&root, &mut all);
    let cited = outside_names();
    let mut found = Vec::new();
    for path in &all {
        let rel = path.strip_prefix(&root).unwrap_or(path);
        let top = rel.components().next().map(|c| c.as_os_str().to_owned());
        let checked = path
            .extension()
            .is_some_and(|e| e == "rs" || e == "md" || e == "toml")
            || top.is_some_and(|t| t == "scripts" || t == "deploy");
        if !checked {
            continue;
        }
        let Ok(text) = std::fs::read_to_string(path) else {
            continue;
        };
        for (n, line) in text.lines().enumerate() {
            for name in &cited {
                if line.contains(name.as_str()) {
                    found.push(format!("{}:{}: {}", rel.display(), n + 1, line.trim()));
                }
            }
        }
    }
    assert!(
        found.is_empty(),
        "these lines cite documents that are not in the repository (say the reason, or \
         cite docs/):\n{}",
        found.join("\n")
    );
}

/// Every key of `v`, recursively, with arrays' elements looked into. `skip` names
/// objects whose keys are not fields of the output (the alert config, the evidence).
fn keys(v: &Value, skip: &[&str], out: &mut BTreeSet<String>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                out.insert(k.clone());
                if !skip.contains(&k.as_str()) {
                    keys(v, skip, out);
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|v| keys(v, skip, out)),
        _ => {}
    }
}

fn captures() -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(root().join("testdata/pcaps"))
        .expect("testdata/pcaps")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "pcap" || e == "pcapng"))
        .collect();
    out.sort();
    out
}

#[test]
fn every_json_field_the_monitor_emits_is_named_in_the_contract() {
    let contract = std::fs::read_to_string(root().join("docs/contract.md"))
        .expect("docs/contract.md is the JSON and CLI contract");
    let dir = tempfile::tempdir().expect("temporary directory");
    let mut summary = BTreeSet::new();
    let mut recording = BTreeSet::new();
    let mut alerts = 0;
    for (i, pcap) in captures().iter().enumerate() {
        let record = dir.path().join(format!("r{i}.jsonl"));
        let out = Command::new(MONITOR)
            .arg("replay")
            .arg(pcap)
            .arg("--json")
            .arg("--record")
            .arg(&record)
            .output()
            .expect("run monitor replay");
        assert!(out.status.success(), "{}: {:?}", pcap.display(), out);
        let v: Value = serde_json::from_slice(&out.stdout).expect("one JSON summary");
        alerts += v["alerts"].as_array().map_or(0, Vec::len);
        keys(&v, &["evidence"], &mut summary);
        let text = std::fs::read_to_string(&record).expect("the recording");
        for line in text.lines() {
            let v: Value = serde_json::from_str(line).expect("a JSON line");
            keys(&v, &["evidence", "config"], &mut recording);
        }
    }
    // The captures exercise the alerts too, so their fields are checked, not skipped.
    assert!(alerts > 0, "no capture raised an alert");
    for k in ["flows", "totals", "c2s", "skipped", "severity", "session"] {
        assert!(summary.contains(k), "{k} not emitted: {summary:?}");
    }
    let missing: BTreeSet<&String> = summary
        .iter()
        .chain(&recording)
        .filter(|k| !contract.contains(&format!("`{k}`")))
        .collect();
    assert!(
        missing.is_empty(),
        "fields emitted by `monitor replay --json` or `--record` but not named (as `name`) \
         in docs/contract.md: {missing:?}"
    );
}
