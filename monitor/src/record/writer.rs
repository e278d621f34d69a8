//! Writing a recording: a header line, then on every tick the flows that changed, the
//! kernel's events and the alert transitions, each a JSON line. Everything a tick wrote is
//! flushed to the kernel before the tick ends, so `kill -9` loses at most the tick under
//! way (ticks are at most one second apart while recording).
//!
//! The recording is written to a temporary file beside FILE until [`Recorder::commit`]
//! renames it into place (replay: once the capture was read to its end; live and demo: once
//! the programs are attached), so a run that fails never touches an existing FILE.

use std::{
    fs::{File, OpenOptions},
    io::{BufWriter, Write},
    path::{Path, PathBuf},
};

use anyhow::Result;
use monitor_common::{
    event::{Event, EventKind},
    stats,
};
use serde_json::{json, Value};
use tempfile::TempPath;

use super::{FORMAT, VERSION};
use crate::{
    alerts::{rules::dir_name, Transition},
    cli::RecordArgs,
    error::usage,
    model::OrderKey,
    output::{
        file::{replace_target, temporary_beside},
        json,
    },
    snapshot::Snapshot,
};

/// `--record-max-mb` and `--record-keep`: a file is cut before a line would take it past
/// `max_bytes`; at most `keep` files (FILE and FILE.1 .. FILE.(keep-1)) are kept.
#[derive(Clone, Copy, Debug)]
pub struct Rotation {
    pub max_bytes: Option<u64>,
    pub keep: u32,
}

impl Rotation {
    pub fn of(args: &RecordArgs) -> Self {
        Self {
            max_bytes: args.record_max_mb.map(|m| m.saturating_mul(1024 * 1024)),
            keep: args.record_keep.max(1),
        }
    }
}

pub struct Recorder {
    path: PathBuf,
    out: BufWriter<File>,
    /// Until [`Recorder::commit`]: the temporary file `out` writes (removed when dropped).
    pending: Option<TempPath>,
    /// Files cut by rotation before the commit, oldest first (removed when dropped).
    finished: Vec<TempPath>,
    header: Value,
    /// This file's number in the run's sequence of files (0: the first).
    part: u64,
    written: u64,
    /// Bytes of the lines a new file starts with (header, and the tick line it continues):
    /// a file is cut only once it holds more than these.
    base: u64,
    rotation: Rotation,
    /// This tick's `tick` line, repeated at the top of a file cut within the tick.
    tick_line: Option<String>,
    /// The table generation written last: the next tick writes the rows its change set
    /// names.
    generation: u64,
}

pub(crate) fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most `len` bytes into the buffer.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr() as *mut libc::c_char, buf.len()) };
    if rc != 0 {
        return "unknown".into();
    }
    let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

/// What the header says about the run.
pub struct RunMeta<'a> {
    /// "live", "demo" or "replay".
    pub source: &'a str,
    pub interfaces: Vec<String>,
    pub capture: Option<&'a Path>,
    pub ports: String,
    pub config: Value,
    pub start_ns: u64,
}

fn cannot_create(path: &Path, e: impl std::fmt::Display) -> anyhow::Error {
    usage(
        format!("cannot create recording {}: {e}", path.display()),
        "give a writable path to --record",
    )
}

impl Recorder {
    /// Starts the recording in a temporary file beside `path` and writes the header; `path`
    /// itself is untouched until [`Recorder::commit`]. A path that names no regular file (a
    /// FIFO, a device, `/dev/stdout` on a pipe) is written in place and never renamed.
    pub fn create(path: &Path, meta: RunMeta, rotation: Rotation) -> Result<Self> {
        if path.is_dir() {
            return Err(cannot_create(path, "it is a directory"));
        }
        // A link to a file: the file it names is replaced (and rotated), the link stays.
        let target = replace_target(path);
        let (file, pending) = match &target {
            None => {
                if rotation.max_bytes.is_some() {
                    return Err(usage(
                        format!(
                            "--record-max-mb with {}: not a regular file",
                            path.display()
                        ),
                        "rotation renames files: give a file path to --record",
                    ));
                }
                let f = OpenOptions::new()
                    .write(true)
                    .open(path)
                    .map_err(|e| cannot_create(path, e))?;
                (f, None)
            }
            Some(t) => {
                let (f, tmp) = temporary_beside(t)
                    .map_err(|e| cannot_create(path, e))?
                    .into_parts();
                (f, Some(tmp))
            }
        };
        let header = json!({
            "type": "header",
            "format": FORMAT,
            "version": VERSION,
            "monitor_version": env!("CARGO_PKG_VERSION"),
            "host": hostname(),
            "source": meta.source,
            "interfaces": meta.interfaces,
            "capture": meta.capture.map(|p| p.display().to_string()),
            "ports": meta.ports,
            "config": meta.config,
            "start_ns": meta.start_ns,
        });
        let mut r = Self {
            path: target.unwrap_or_else(|| path.to_path_buf()),
            out: BufWriter::new(file),
            pending,
            finished: Vec::new(),
            header,
            part: 0,
            written: 0,
            base: 0,
            rotation,
            tick_line: None,
            generation: 0,
        };
        r.start_file()?;
        r.out.flush()?;
        Ok(r)
    }

    /// The header of a new file (with its part number after the first) and, within a
    /// tick, that tick's line, so every file reads on its own.
    fn start_file(&mut self) -> std::io::Result<()> {
        self.written = 0;
        let mut h = self.header.clone();
        if self.part > 0 {
            if let Value::Object(m) = &mut h {
                m.insert("part".into(), self.part.into());
            }
        }
        let mut s = serde_json::to_string(&h).unwrap_or_default();
        s.push('\n');
        self.raw(&s)?;
        if let Some(t) = self.tick_line.clone() {
            self.raw(&t)?;
        }
        self.base = self.written;
        Ok(())
    }

    fn raw(&mut self, s: &str) -> std::io::Result<()> {
        self.out.write_all(s.as_bytes())?;
        self.written += s.len() as u64;
        Ok(())
    }

    /// One line; the file is cut first when the line would take it past its limit (and
    /// it holds more than what a new file starts with, so every file makes progress).
    fn put(&mut self, s: &str) -> std::io::Result<()> {
        let over = self
            .rotation
            .max_bytes
            .is_some_and(|m| self.written + s.len() as u64 > m);
        if over && self.written > self.base {
            self.rotate()?;
        }
        self.raw(s)
    }

    fn line(&mut self, v: &Value) -> std::io::Result<()> {
        let mut s = serde_json::to_string(v).unwrap_or_default();
        s.push('\n');
        self.put(&s)
    }

    /// Renames the recording into place (once: later calls do nothing). With rotation,
    /// files already at FILE and FILE.n move up by the number of files this run made, as
    /// rotation moves them, so an earlier run's recording is kept within `--record-keep`.
    pub fn commit(&mut self) -> std::io::Result<()> {
        let Some(current) = self.pending.take() else {
            return Ok(());
        };
        self.out.flush()?;
        let keep = self.rotation.keep;
        if self.rotation.max_bytes.is_some() {
            let made = self.finished.len() as u32;
            shift(&self.path, made + 1, keep);
            for (i, tmp) in std::mem::take(&mut self.finished)
                .into_iter()
                .rev()
                .enumerate()
            {
                let n = i as u32 + 1;
                if n < keep {
                    tmp.persist(numbered(&self.path, n)).map_err(|e| e.error)?;
                }
            }
        }
        current.persist(&self.path).map_err(|e| e.error)
    }
    /// Writes one tick and flushes it.
    pub fn tick(
        &mut self,
        snap: &Snapshot,
        events: &[Event],
        transitions: &[Transition],
    ) -> std::io::Result<()> {
        self.tick_with_captures(snap, events, transitions, &|_| None)
    }

    /// [`Recorder::tick`], each alert line naming its evidence capture (`--evidence`) as
    /// `capture_of` says, by alert id.
    pub fn tick_with_captures(
        &mut self,
        snap: &Snapshot,
        events: &[Event],
        transitions: &[Transition],
        capture_of: &dyn Fn(u64) -> Option<String>,
    ) -> std::io::Result<()> {
        let ts = snap.now_ns;
        let table = snap.flows.read();
        self.tick_line = None;
        let mut tick = serde_json::to_string(&json!({
            "type": "tick",
            "ts_ns": ts,
            "flows": table.len(),
            "packets": snap.counters.get(stats::WATCHED),
            "evicted_flows": snap.evicted_flows,
            "lost_flows": snap.lost_flows,
            "lost_events": snap.counters.get(stats::EVENTS_LOST),
            "interfaces": snap.interfaces.iter().map(|i| json!({
                "name": i.name,
                "rx_packets": i.rx.packets, "rx_bytes": i.rx.bytes,
                "tx_packets": i.tx.packets, "tx_bytes": i.tx.bytes,
            })).collect::<Vec<_>>(),
        }))
        .unwrap_or_default();
        tick.push('\n');
        self.put(&tick)?;
        self.tick_line = Some(tick);
        // The rows this tick added or changed, in report order; every row when the table
        // does not follow the one written last (another source).
        let ch = table.changes();
        let follows = ch.generation == self.generation + 1;
        self.generation = ch.generation;
        let mut rows: Vec<(OrderKey, u32)> = if follows {
            let changed = ch.changed.iter().map(|(i, _)| *i);
            ch.added.iter().copied().chain(changed).collect::<Vec<_>>()
        } else {
            table.rows().map(|(i, _)| i).collect()
        }
        .into_iter()
        .filter_map(|i| table.row(i).map(|r| (OrderKey::of(&r.flow), i)))
        .collect();
        rows.sort_unstable();
        for (_, i) in rows {
            let Some(row) = table.row(i) else {
                continue;
            };
            let (f, h) = (&row.flow, &row.health);
            let mut v = serde_json::to_value(json::flow(row, snap)).unwrap_or(Value::Null);
            if let Value::Object(m) = &mut v {
                m.insert("type".into(), "flow".into());
                m.insert("ts_ns".into(), ts.into());
                m.insert(
                    "id".into(),
                    flow_id(f.client(), f.server(), f.state.first_seen_ns).into(),
                );
                if snap.judged {
                    m.insert(
                        "health".into(),
                        json!({
                            "level": h.level.map(|l| l.name()),
                            "session": h.session(f).map(|s| s.to_string()),
                            "throughput_bps": h.throughput,
                            "retx_rate": h.retx_rate,
                            "zero_window_ns": h.zero_window_ns,
                            "history": &*h.history,
                        }),
                    );
                }
            }
            self.line(&v)?;
        }
        for e in events {
            let flow = table
                .find_live(&e.key)
                .and_then(|i| table.row(i))
                .map(|r| &r.flow);
            self.line(&json!({
                "type": "event",
                "ts_ns": e.ts_ns,
                "kind": e.kind().map_or("unknown", EventKind::name),
                "direction": dir_name(e.dir as usize & 1),
                "ttl": e.ttl,
                "client": flow.map(|f| f.client().to_string()),
                "server": flow.map(|f| f.server().to_string()),
            }))?;
        }
        for t in transitions {
            let mut v = serde_json::to_value(t).unwrap_or(Value::Null);
            if let Value::Object(m) = &mut v {
                m.insert("type".into(), "alert".into());
                if let Some(path) = capture_of(t.alert.id) {
                    m.insert("capture".into(), path.into());
                }
            }
            self.line(&v)?;
        }
        self.out.flush()
    }

    /// Ends this file and starts the next. Before the commit the finished file waits as a
    /// temporary file (the oldest beyond `--record-keep` removed); after it, FILE becomes
    /// FILE.1 (older ones move up, the oldest beyond `--record-keep` is removed). Flows
    /// are not written again: a file after the first holds the flows that changed in it.
    fn rotate(&mut self) -> std::io::Result<()> {
        self.out.flush()?;
        let file = if let Some(done) = self.pending.take() {
            self.finished.push(done);
            let over = self
                .finished
                .len()
                .saturating_sub(self.rotation.keep as usize - 1);
            self.finished.drain(..over);
            let (f, tmp) = temporary_beside(&self.path)?.into_parts();
            self.pending = Some(tmp);
            f
        } else {
            shift(&self.path, 1, self.rotation.keep);
            // Just moved away: a file there now was not made by this run.
            OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&self.path)?
        };
        self.out = BufWriter::new(file);
        self.part += 1;
        self.start_file()
    }
}

fn numbered(path: &Path, n: u32) -> PathBuf {
    PathBuf::from(format!("{}.{n}", path.display()))
}

/// Moves FILE and FILE.1 .. FILE.(keep-1) up by `by` places; those that would land at
/// `keep` or beyond are removed. Gaps (a file missing) are fine.
fn shift(path: &Path, by: u32, keep: u32) {
    for n in (0..keep).rev() {
        let from = if n == 0 {
            path.to_path_buf()
        } else {
            numbered(path, n)
        };
        if n + by < keep {
            let _ = std::fs::rename(&from, numbered(path, n + by));
        } else {
            let _ = std::fs::remove_file(&from);
        }
    }
}

/// A stable id for one connection record across lines.
pub fn flow_id(
    client: std::net::SocketAddr,
    server: std::net::SocketAddr,
    first_seen_ns: u64,
) -> String {
    format!("{client}>{server}@{first_seen_ns}")
}

#[cfg(test)]
#[path = "writer_tests.rs"]
mod tests;
