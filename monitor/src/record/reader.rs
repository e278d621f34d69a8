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
    let text = String::from_utf8_lossy(&bytes);
    parse(&text, path)
}

fn damaged(path: &Path, line: usize, why: String) -> anyhow::Error {
    usage(
        format!("recording {} line {line}: {why}", path.display()),
        "the file is damaged there (only a cut last line is tolerated); the lines before it can be kept with `head -n`",
    )
}

pub fn parse(text: &str, path: &Path) -> Result<Recording> {
    let mut rec = Recording {
        path: path.to_path_buf(),
        ..Recording::default()
    };
    let ends_cleanly = text.ends_with('\n');
    let lines: Vec<&str> = text.lines().collect();
    for (i, line) in lines.iter().enumerate() {
        let n = i + 1;
        let last = n == lines.len();
        if line.trim().is_empty() {
            continue;
        }
        let not_recording = || {
            usage(
                format!(
                    "{} is not a monitor recording (no header line)",
                    path.display()
                ),
                "give a file written by `monitor live|demo|replay --record FILE`",
            )
        };
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
            let version = v["version"].as_u64().unwrap_or(0);
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
        parse(text, Path::new("rec.jsonl"))
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
