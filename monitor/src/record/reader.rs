//! Reading a recording back. A recording cut by `kill -9` ends in a partial line: that line
//! is dropped and said so, the rest reads. Any other line that is not a recording line is
//! an error naming its line number: the file was damaged, not merely cut.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use anyhow::Result;
use serde_json::Value;

use super::{FORMAT, VERSION};
use crate::error::usage;

#[derive(Debug, Default)]
pub struct Recording {
    pub path: PathBuf,
    pub header: Value,
    /// One per tick: time, totals, interfaces.
    pub ticks: Vec<Value>,
    /// Flow lines by flow id, in time order.
    pub flows: BTreeMap<String, Vec<Value>>,
    pub events: Vec<Value>,
    /// Alert transitions, in time order.
    pub alerts: Vec<Value>,
    /// The last line was cut short (the writer was killed) and was dropped.
    pub truncated_tail: bool,
}

impl Recording {
    /// First and last tick times (ns).
    pub fn span(&self) -> Option<(u64, u64)> {
        let t = |v: &Value| v["ts_ns"].as_u64();
        Some((t(self.ticks.first()?)?, t(self.ticks.last()?)?))
    }
}

pub fn read(path: &Path) -> Result<Recording> {
    let bytes = std::fs::read(path).map_err(|e| {
        usage(
            format!("cannot read recording {}: {e}", path.display()),
            "give a file written by --record",
        )
    })?;
    parse(&bytes, path)
}

fn damaged(path: &Path, line: usize, why: String) -> anyhow::Error {
    usage(
        format!("recording {} line {line}: {why}", path.display()),
        "the file is damaged there (only a cut last line is tolerated); the lines before it can be kept with `head -n`",
    )
}

/// Reads a recording's bytes. UTF-8 is checked line by line, so a damaged line is named
/// (a lossy decoding would have read it as other text) and a last line cut inside a
/// character is still only a cut line.
pub fn parse(bytes: &[u8], path: &Path) -> Result<Recording> {
    let mut rec = Recording {
        path: path.to_path_buf(),
        ..Recording::default()
    };
    let ends_cleanly = bytes.ends_with(b"\n");
    let body = bytes.strip_suffix(b"\n").unwrap_or(bytes);
    let lines: Vec<&[u8]> = if bytes.is_empty() {
        Vec::new()
    } else {
        body.split(|&b| b == b'\n').collect()
    };
    for (i, raw) in lines.iter().enumerate() {
        let n = i + 1;
        let last = n == lines.len();
        let not_recording = || {
            usage(
                format!(
                    "{} is not a monitor recording (no header line)",
                    path.display()
                ),
                "give a file written by `monitor live|demo|replay --record FILE`",
            )
        };
        let line = match std::str::from_utf8(raw) {
            Ok(l) => l.strip_suffix('\r').unwrap_or(l),
            Err(_) if n == 1 => return Err(not_recording()),
            Err(_) if last && !ends_cleanly => {
                rec.truncated_tail = true;
                break;
            }
            Err(e) => {
                return Err(damaged(
                    path,
                    n,
                    format!(
                        "not valid UTF-8 (at byte {} of the line)",
                        e.valid_up_to() + 1
                    ),
                ))
            }
        };
        if line.trim().is_empty() {
            continue;
        }
        let v: Value = match serde_json::from_str(line) {
            Ok(v) => v,
            Err(_) if n == 1 => return Err(not_recording()),
            Err(_) if last && !ends_cleanly => {
                rec.truncated_tail = true;
                break;
            }
            Err(e) => return Err(damaged(path, n, format!("not valid JSON ({e})"))),
        };
        let kind = v["type"].as_str().unwrap_or_default().to_string();
        if n == 1 {
            if kind != "header" || v["format"] != FORMAT {
                return Err(not_recording());
            }
            // The version is a whole number from 1: a string, 0 or none is no version this
            // or any monitor wrote.
            let version = match v.get("version") {
                Some(x) if x.as_u64().is_some_and(|x| x >= 1) => x.as_u64().unwrap_or(VERSION),
                got => {
                    let got = got.map_or("no \"version\"".to_string(), |g| {
                        format!("\"version\": {g}")
                    });
                    return Err(usage(
                        format!(
                            "recording {} line 1: the header has {got}, not a format version (a whole number from 1)",
                            path.display()
                        ),
                        "the header is damaged or was not written by `monitor --record`",
                    ));
                }
            };
            if version > VERSION {
                return Err(usage(
                    format!(
                        "{} is recording format {version}; this monitor reads up to {VERSION}",
                        path.display()
                    ),
                    "read it with a newer monitor",
                ));
            }
            rec.header = v;
            continue;
        }
        match kind.as_str() {
            "tick" => rec.ticks.push(v),
            "flow" => {
                let id = v["id"].as_str().unwrap_or_default().to_string();
                if id.is_empty() {
                    return Err(damaged(path, n, "a flow line without an id".into()));
                }
                rec.flows.entry(id).or_default().push(v);
            }
            "event" => rec.events.push(v),
            "alert" => rec.alerts.push(v),
            "header" => {
                return Err(damaged(
                    path,
                    n,
                    "a second header (two recordings in one file?)".into(),
                ))
            }
            "" => return Err(damaged(path, n, "a JSON line without a \"type\"".into())),
            // A newer writer's line kinds: skipped, the rest still reads.
            _ => {}
        }
    }
    if rec.header.is_null() {
        return Err(usage(
            format!("{} is empty", path.display()),
            "give a file written by --record",
        ));
    }
    Ok(rec)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEAD: &str = r#"{"type":"header","format":"monitor-recording","version":1}"#;

    fn p(text: &str) -> Result<Recording> {
        parse(text.as_bytes(), Path::new("rec.jsonl"))
    }

    #[test]
    fn a_cut_last_line_is_dropped_and_said() {
        let text = format!("{HEAD}\n{{\"type\":\"tick\",\"ts_ns\":1}}\n{{\"type\":\"tick\",\"ts_");
        let r = p(&text).expect("reads");
        assert!(r.truncated_tail);
        assert_eq!(r.ticks.len(), 1);
    }

    #[test]
    fn a_damaged_middle_line_names_its_number() {
        let text = format!("{HEAD}\n{{\"type\":\"tick\",\"ts_ns\":1}}\ngarbage\n{{\"type\":\"tick\",\"ts_ns\":2}}\n");
        let e = p(&text).expect_err("damaged").to_string();
        assert!(e.contains("line 3") && e.contains("not valid JSON"), "{e}");
    }

    #[test]
    fn a_header_without_a_whole_version_is_refused() {
        for (version, shown) in [
            (r#","version":"1""#, r#""version": "1""#),
            (r#","version":0"#, r#""version": 0"#),
            (r#","version":1.5"#, r#""version": 1.5"#),
            (r#","version":-1"#, r#""version": -1"#),
            ("", r#"no "version""#),
        ] {
            let text = format!(
                "{{\"type\":\"header\",\"format\":\"monitor-recording\"{version}}}\n{{\"type\":\"tick\",\"ts_ns\":1}}\n"
            );
            let e = p(&text).expect_err(&text).to_string();
            assert!(e.contains("line 1") && e.contains(shown), "{e}");
            assert!(e.contains("not a format version"), "{e}");
        }
        assert!(p(&format!("{HEAD}\n")).is_ok());
    }

    #[test]
    fn invalid_utf8_in_a_middle_line_names_its_number() {
        let mut bytes = format!("{HEAD}\n{{\"type\":\"tick\",\"ts_ns\":1}}\n").into_bytes();
        bytes.extend_from_slice(b"{\"type\":\"event\",\"what\":\"\xff\xfe\"}\n");
        bytes.extend_from_slice(b"{\"type\":\"tick\",\"ts_ns\":2}\n");
        let e = parse(&bytes, Path::new("rec.jsonl"))
            .expect_err("invalid UTF-8")
            .to_string();
        assert!(e.contains("line 3") && e.contains("UTF-8"), "{e}");
        // The same bytes on a cut last line are only a cut line.
        let mut cut = format!("{HEAD}\n{{\"type\":\"tick\",\"ts_ns\":1}}\n").into_bytes();
        cut.extend_from_slice(b"{\"type\":\"event\",\"what\":\"\xe2\x82");
        let r = parse(&cut, Path::new("rec.jsonl")).expect("a cut last line reads");
        assert!(r.truncated_tail);
        assert_eq!(r.ticks.len(), 1);
    }

    #[test]
    fn not_a_recording() {
        for text in ["", "{\"type\":\"tick\"}\n", "hello\n"] {
            let e = p(text).expect_err(text).to_string();
            assert!(
                e.contains("not a monitor recording") || e.contains("empty"),
                "{e}"
            );
        }
        let newer = r#"{"type":"header","format":"monitor-recording","version":99}"#;
        assert!(p(newer)
            .expect_err("newer")
            .to_string()
            .contains("format 99"));
    }
}
