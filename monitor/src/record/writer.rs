//! Writing a recording: a header line, then on every tick the flows that changed, the
//! kernel's events and the alert transitions, each a JSON line. Everything a tick wrote is
//! flushed to the kernel before the tick ends, so `kill -9` loses at most the tick under
//! way (ticks are at most one second apart while recording).

use std::{
    collections::HashMap,
    fs::File,
    io::{BufWriter, Write},
    path::{Path, PathBuf},
};

use anyhow::Result;
use monitor_common::{
    event::{self, Event},
    flow::FlowKey,
    stats,
};
use serde_json::{json, Value};

use super::{FORMAT, VERSION};
use crate::{
    alerts::{rules::dir_name, FlowId, Transition},
    error::usage,
    output::json,
    snapshot::Snapshot,
};

/// Older files kept by rotation: FILE.1 (newest) .. FILE.KEEP.
const KEEP: u32 = 9;

pub struct Recorder {
    path: PathBuf,
    out: BufWriter<File>,
    header: Value,
    written: u64,
    max_bytes: Option<u64>,
    /// What each flow looked like when last written (last seen, packets both ways).
    last: HashMap<FlowId, (u64, u64)>,
}

fn hostname() -> String {
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

fn event_name(kind: u8) -> &'static str {
    match kind {
        event::FLOW_SEEN => "flow_seen",
        event::RESET => "reset",
        event::HANDSHAKE_DONE => "handshake_done",
        event::HANDSHAKE_REFUSED => "handshake_refused",
        event::CLIENT_HELLO => "client_hello",
        event::SERVER_HELLO => "server_hello",
        event::SUSPECT_INJECTED_RST => "suspect_injected_rst",
        event::RESET_AFTER_HELLO => "reset_after_hello",
        event::STALL_BEGAN => "stall_began",
        event::STALL_ENDED => "stall_ended",
        _ => "unknown",
    }
}

impl Recorder {
    /// Creates (or truncates) `path` and writes the header. `max_mb`: rotate past this size.
    pub fn create(path: &Path, meta: RunMeta, max_mb: Option<u64>) -> Result<Self> {
        let file = File::create(path).map_err(|e| {
            usage(
                format!("cannot create recording {}: {e}", path.display()),
                "give a writable path to --record",
            )
        })?;
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
            path: path.to_path_buf(),
            out: BufWriter::new(file),
            header,
            written: 0,
            max_bytes: max_mb.map(|m| m * 1024 * 1024),
            last: HashMap::new(),
        };
        let h = r.header.clone();
        r.line(&h)?;
        r.out.flush()?;
        Ok(r)
    }

    fn line(&mut self, v: &Value) -> std::io::Result<()> {
        let mut s = serde_json::to_string(v).unwrap_or_default();
        s.push('\n');
        self.out.write_all(s.as_bytes())?;
        self.written += s.len() as u64;
        Ok(())
    }

    /// Writes one tick and flushes it.
    pub fn tick(
        &mut self,
        snap: &Snapshot,
        events: &[Event],
        transitions: &[Transition],
    ) -> std::io::Result<()> {
        let ts = snap.now_ns;
        self.line(&json!({
            "type": "tick",
            "ts_ns": ts,
            "flows": snap.flows.len(),
            "packets": snap.counters.get(stats::WATCHED),
            "evicted_flows": snap.evicted_flows,
            "lost_flows": snap.lost_flows,
            "lost_events": snap.counters.get(stats::EVENTS_LOST),
            "interfaces": snap.interfaces.iter().map(|i| json!({
                "name": i.name,
                "rx_packets": i.rx.packets, "rx_bytes": i.rx.bytes,
                "tx_packets": i.tx.packets, "tx_bytes": i.tx.bytes,
            })).collect::<Vec<_>>(),
        }))?;
        let mut present = HashMap::with_capacity(snap.flows.len());
        for (i, f) in snap.flows.iter().enumerate() {
            let id = FlowId::of(f);
            let now = (
                f.state.last_seen_ns,
                f.state.dir[0].packets + f.state.dir[1].packets,
            );
            present.insert(id, now);
            if self.last.get(&id) == Some(&now) {
                continue;
            }
            let mut v = serde_json::to_value(json::flow(f, i, snap)).unwrap_or(Value::Null);
            if let Value::Object(m) = &mut v {
                m.insert("type".into(), "flow".into());
                m.insert("ts_ns".into(), ts.into());
                m.insert(
                    "id".into(),
                    flow_id(f.client(), f.server(), f.state.first_seen_ns).into(),
                );
                if let Some(h) = snap.health.get(i) {
                    m.insert(
                        "health".into(),
                        json!({
                            "level": h.level.map(|l| l.name()),
                            "session": h.session.map(|s| s.to_string()),
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
        self.last = present;
        if !events.is_empty() {
            let index: HashMap<FlowKey, usize> = snap
                .flows
                .iter()
                .enumerate()
                .map(|(i, f)| (f.key, i))
                .collect();
            for e in events {
                let flow = index.get(&e.key).map(|&i| &snap.flows[i]);
                self.line(&json!({
                    "type": "event",
                    "ts_ns": e.ts_ns,
                    "kind": event_name(e.kind),
                    "direction": dir_name(e.dir as usize & 1),
                    "ttl": e.ttl,
                    "client": flow.map(|f| f.client().to_string()),
                    "server": flow.map(|f| f.server().to_string()),
                }))?;
            }
        }
        for t in transitions {
            let mut v = serde_json::to_value(t).unwrap_or(Value::Null);
            if let Value::Object(m) = &mut v {
                m.insert("type".into(), "alert".into());
            }
            self.line(&v)?;
        }
        self.out.flush()?;
        if self.max_bytes.is_some_and(|m| self.written >= m) {
            self.rotate()?;
        }
        Ok(())
    }

    /// FILE becomes FILE.1 (older ones shift up, the oldest beyond KEEP is removed) and a
    /// new FILE starts with the same header: every file reads on its own.
    fn rotate(&mut self) -> std::io::Result<()> {
        self.out.flush()?;
        let name = |n: u32| PathBuf::from(format!("{}.{n}", self.path.display()));
        let _ = std::fs::remove_file(name(KEEP));
        for n in (1..KEEP).rev() {
            let _ = std::fs::rename(name(n), name(n + 1));
        }
        std::fs::rename(&self.path, name(1))?;
        self.out = BufWriter::new(File::create(&self.path)?);
        self.written = 0;
        // Every flow is written again in the new file's first tick.
        self.last.clear();
        let h = self.header.clone();
        self.line(&h)?;
        self.out.flush()
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
mod tests {
    use super::*;
    use crate::snapshot::{Counters, FlowRecord};
    use monitor_common::flow::FlowState;

    fn snap(t: u64) -> Snapshot {
        let flows: Vec<FlowRecord> = (0..3000u16)
            .map(|p| {
                let mut st = FlowState {
                    first_seen_ns: 1,
                    last_seen_ns: t,
                    client_is_a: 1,
                    ..FlowState::default()
                };
                st.key.port_a = p;
                st.dir[0].packets = t;
                FlowRecord {
                    key: st.key,
                    state: st,
                }
            })
            .collect();
        Snapshot::new(flows, 3000, Counters::default(), t)
    }

    #[test]
    fn rotation_keeps_every_file_whole_and_readable() {
        let dir = std::env::temp_dir().join(format!("monitor-rotate-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("rec.jsonl");
        let meta = RunMeta {
            source: "live",
            interfaces: vec!["eth0".into()],
            capture: None,
            ports: "443".into(),
            config: Value::Null,
            start_ns: 0,
        };
        let mut r = Recorder::create(&path, meta, Some(1)).expect("create");
        for t in 1..=3 {
            r.tick(&snap(t), &[], &[]).expect("tick");
        }
        drop(r);
        for p in [
            path.clone(),
            dir.join("rec.jsonl.1"),
            dir.join("rec.jsonl.2"),
        ] {
            let rec =
                super::super::reader::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            assert_eq!(rec.header["source"], "live");
            assert!(!rec.truncated_tail);
        }
        // Each full file holds one whole tick: every flow, written again after rotation.
        let rec = super::super::reader::read(&dir.join("rec.jsonl.1")).expect("read");
        assert_eq!((rec.ticks.len(), rec.flows.len()), (1, 3000));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
