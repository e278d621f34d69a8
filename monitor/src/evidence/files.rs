//! Writing the evidence captures: each alert's file grows as a temporary file in DIR while
//! its flow's frames are handed over, and is renamed onto its name whole: at the end of a
//! replay, or (live) as soon as it holds what came before the alert, after which it grows
//! in place by whole blocks, flushed every tick, so a file cut by a crash still reads up
//! to its last flush. The directory limit (`--evidence-max-mb`) counts every file, so DIR
//! never holds more: when a frame would pass it, files go, those of cleared alerts first,
//! oldest first, then those of active alerts, oldest first, each said on stderr.

use std::{
    collections::HashMap,
    fs::File,
    io::{BufWriter, Write},
    path::Path,
};

use tempfile::NamedTempFile;

use super::{pcapng, EvidenceSettings, PlannedCapture};
use crate::{capture::Record, model::FlowId, output, snapshot::Snapshot};

/// Frames one capture holds at most: about 100,000 x (snap length + 32 bytes of header +
/// its comment), 30 MB at the default snap length. Later frames of the flow are left out,
/// and the file's header comment says so.
pub const MAX_FILE_PACKETS: u64 = 100_000;

/// Where a capture's blocks go: its temporary file until it is placed under its name.
enum Out {
    Temporary(BufWriter<NamedTempFile>),
    Placed(BufWriter<File>),
}

impl Out {
    fn write_all(&mut self, block: &[u8]) -> std::io::Result<()> {
        match self {
            Self::Temporary(w) => w.write_all(block),
            Self::Placed(w) => w.write_all(block),
        }
    }
}

struct Target {
    planned: PlannedCapture,
    /// `None` once the file was dropped (the limit), closed, or could not be written.
    out: Option<Out>,
    /// Link types of the interfaces written so far: a frame's interface id is its index.
    links: Vec<u32>,
    bytes: u64,
    packets: u64,
    /// Frames of the flow left out by the per-file limit.
    cut: u64,
    /// Whether the media alert's words were said on a packet yet.
    media_said: bool,
}

/// The captures being written for a run's alerts.
pub struct CaptureFiles {
    settings: EvidenceSettings,
    interface: String,
    targets: Vec<Target>,
    by_flow: HashMap<FlowId, Vec<usize>>,
    total: u64,
    /// The first write that failed: the run then exits 1.
    failed: Option<String>,
}

/// The host name, the system and the monitor's version, for the section headers.
fn origin() -> (String, String, String) {
    let read = |p: &str| {
        std::fs::read_to_string(p)
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|_| "unknown".into())
    };
    let host = crate::record::writer::hostname();
    let os = format!(
        "{} {}",
        read("/proc/sys/kernel/ostype"),
        read("/proc/sys/kernel/osrelease")
    );
    (host, os, format!("monitor {}", env!("CARGO_PKG_VERSION")))
}

fn seconds(ns: u64) -> String {
    format!("{}.{:09}", ns / 1_000_000_000, ns % 1_000_000_000)
}

/// What a capture holds of its flow, as its header says it.
#[derive(Clone, Copy, Debug)]
pub enum Holds {
    /// The whole flow, read again from a capture (replay): its size when known.
    Whole(Option<u64>),
    /// What the evidence ring held before the alert, then the flow as it goes (live).
    Following,
}

/// The section header's comment: the alert, its flow, and what the file holds of it.
fn summary(p: &PlannedCapture, host: &str, interface: &str, holds: Holds, max: u64) -> String {
    let (clock, cleared, held) = match holds {
        Holds::Whole(n) => (
            "capture time",
            p.cleared_ns
                .map_or(", still active at the end".to_string(), |c| {
                    format!(", cleared at {} s", seconds(c))
                }),
            match n {
                Some(n) if n > max => {
                    format!("the first {max} of the flow's {n} packets (the per-file limit)")
                }
                Some(n) => format!("the flow's {n} packets"),
                None => "the flow's packets".to_string(),
            },
        ),
        Holds::Following => (
            "Unix time",
            String::new(),
            format!(
                "the flow's first packets and those just before the alert, as far as the \
                 evidence ring held them, then every packet of the flow until {} s after \
                 the alert cleared, or {max} packets",
                super::FOLLOW_AFTER_CLEAR_NS / 1_000_000_000
            ),
        ),
    };
    format!(
        "monitor alert {id}: {kind} ({severity}): {summary}. Flow {client} -> {server}, \
         raised at {raised} s ({clock}){cleared}. This file holds {held}, seen on \
         {interface} at host {host}; each packet's comment is the monitor's verdict on it.",
        id = p.id,
        kind = p.kind,
        severity = p.severity,
        summary = p.summary,
        client = p.client,
        server = p.server,
        raised = seconds(p.raised_ns),
    )
}

impl CaptureFiles {
    /// No capture yet; `interface` names where the frames were seen (the capture file in
    /// replay). DIR is made now, when there is something to write: a run that failed
    /// before made none.
    pub fn new(settings: EvidenceSettings, interface: &str) -> std::io::Result<Self> {
        std::fs::create_dir_all(&settings.dir)?;
        Ok(Self {
            settings,
            interface: interface.to_string(),
            targets: Vec::new(),
            by_flow: HashMap::new(),
            total: 0,
            failed: None,
        })
    }

    /// Starts the capture `p` plans, in its temporary file.
    pub fn add(&mut self, p: PlannedCapture, holds: Holds) -> std::io::Result<()> {
        let (host, os, application) = origin();
        let comment = summary(
            &p,
            &host,
            &self.interface,
            holds,
            self.settings.max_file_packets,
        );
        let header = pcapng::section_header(
            &comment,
            &pcapng::Origin {
                host: &host,
                os: &os,
                application: &application,
            },
        );
        let tmp = crate::output::file::temporary_beside(&p.path)?;
        let i = self.targets.len();
        self.by_flow.entry(p.flow).or_default().push(i);
        self.targets.push(Target {
            planned: p,
            out: Some(Out::Temporary(BufWriter::new(tmp))),
            links: Vec::new(),
            bytes: 0,
            packets: 0,
            cut: 0,
            media_said: false,
        });
        self.append(i, &header);
        Ok(())
    }

    /// Starts a capture for each of `plans` (the flow sizes from `last`, the run's last
    /// tick), as a replay does at its end.
    pub fn create(
        settings: EvidenceSettings,
        plans: Vec<PlannedCapture>,
        last: Option<&Snapshot>,
        interface: &str,
    ) -> std::io::Result<Self> {
        let sizes: HashMap<FlowId, u64> = last
            .map(|s| {
                s.records()
                    .iter()
                    .map(|f| {
                        let n = f.state.dir[0].packets + f.state.dir[1].packets;
                        (FlowId::of(f), n)
                    })
                    .collect()
            })
            .unwrap_or_default();
        let mut files = Self::new(settings, interface)?;
        for p in plans {
            let size = sizes.get(&p.flow).copied();
            files.add(p, Holds::Whole(size))?;
        }
        Ok(files)
    }

    /// Whether any capture holds `flow`'s frames.
    pub fn wants(&self, flow: &FlowId) -> bool {
        self.by_flow.contains_key(flow)
    }

    /// One frame of `flow`, with the monitor's verdict on it; `answer`: the frame is the
    /// server's first payload or a reset, where a media alert says what the hello got.
    pub fn frame(&mut self, flow: &FlowId, rec: &Record<'_>, comment: Option<&str>, answer: bool) {
        let Some(targets) = self.by_flow.get(flow).cloned() else {
            return;
        };
        let kept = &rec.data[..rec.data.len().min(self.settings.snaplen as usize)];
        for i in targets {
            let t = &mut self.targets[i];
            if t.out.is_none() {
                continue;
            }
            if t.packets >= self.settings.max_file_packets {
                t.cut += 1;
                continue;
            }
            let if_id = match t.links.iter().position(|l| *l == rec.linktype) {
                Some(id) => id,
                None => {
                    t.links.push(rec.linktype);
                    let idb =
                        pcapng::interface(rec.linktype, self.settings.snaplen, &self.interface);
                    self.append(i, &idb);
                    self.targets[i].links.len() - 1
                }
            };
            let t = &mut self.targets[i];
            let media = match &t.planned.media {
                Some(m) if answer && !t.media_said => {
                    t.media_said = true;
                    Some(m.as_str())
                }
                _ => None,
            };
            let said = match (comment, media) {
                (Some(c), Some(m)) => Some(format!("{c}; {m}")),
                (c, m) => c.or(m).map(str::to_string),
            };
            let epb = pcapng::packet(if_id as u32, rec.ts_ns, kept, rec.orig_len, said.as_deref());
            if self.append(i, &epb) {
                self.targets[i].packets += 1;
            }
        }
    }

    /// Appends `block` to capture `i` if the directory limit lets it (after dropping what
    /// must go); `false` when the capture was dropped instead or could not be written.
    fn append(&mut self, i: usize, block: &[u8]) -> bool {
        let n = block.len() as u64;
        if let Some(max) = self.settings.max_bytes {
            while self.total + n > max {
                let Some(victim) = self.next_to_go() else {
                    break;
                };
                self.drop_file(victim);
                if victim == i {
                    return false;
                }
            }
        }
        let t = &mut self.targets[i];
        let Some(out) = t.out.as_mut() else {
            return false;
        };
        if let Err(e) = out.write_all(block) {
            let what = format!("evidence capture {}", t.planned.path.display());
            self.failed.get_or_insert(format!("{what}: {e}"));
            output::status(&format!(
                "monitor: {what}: {e}; not written (exits 1 at the end)"
            ));
            t.out = None;
            self.total -= t.bytes;
            t.bytes = 0;
            return false;
        }
        t.bytes += n;
        self.total += n;
        true
    }

    /// The capture to drop first: a cleared alert's before an active one's, the oldest
    /// (lowest id) first; among those that still hold bytes in DIR.
    fn next_to_go(&self) -> Option<usize> {
        self.targets
            .iter()
            .enumerate()
            .filter(|(_, t)| t.bytes > 0)
            .min_by_key(|(_, t)| (t.planned.cleared_ns.is_none(), t.planned.id))
            .map(|(i, _)| i)
    }

    fn drop_file(&mut self, i: usize) {
        let t = &mut self.targets[i];
        // Dropping a temporary file removes it; a placed (or closed) one is removed here.
        let placed = !matches!(t.out.take(), Some(Out::Temporary(_)));
        if placed {
            if let Err(e) = std::fs::remove_file(&t.planned.path) {
                output::status(&format!(
                    "monitor: evidence capture {}: cannot remove it: {e}",
                    t.planned.path.display()
                ));
            }
        }
        self.total -= t.bytes;
        let state = if t.planned.cleared_ns.is_some() {
            "cleared"
        } else {
            "active"
        };
        output::status(&format!(
            "monitor: evidence capture {} of alert {} ({state}) dropped to keep {} within \
             --evidence-max-mb {}",
            t.planned.path.display(),
            t.planned.id,
            self.settings.dir.display(),
            self.settings.max_bytes.unwrap_or(0) / (1024 * 1024),
        ));
        t.bytes = 0;
    }

    /// The index of alert `id`'s capture, if it is still being written.
    fn open_target(&self, id: u64) -> Option<usize> {
        self.targets
            .iter()
            .position(|t| t.planned.id == id && t.out.is_some())
    }

    /// Puts alert `id`'s capture under its name now, whole as it stands; later frames are
    /// appended to it in place. `Ok(false)`: there was none to place (dropped by the limit).
    pub fn place(&mut self, id: u64) -> std::io::Result<bool> {
        let Some(i) = self.open_target(id) else {
            return Ok(false);
        };
        let t = &mut self.targets[i];
        let Some(Out::Temporary(w)) = t.out.take() else {
            return Ok(true);
        };
        let placed = w
            .into_inner()
            .map_err(|e| e.into_error())
            .and_then(|tmp| {
                tmp.as_file().sync_all()?;
                tmp.persist(&t.planned.path).map_err(|e| e.error)
            })
            .and_then(|f| {
                File::open(&self.settings.dir).and_then(|d| d.sync_all())?;
                Ok(f)
            });
        match placed {
            Ok(f) => {
                t.out = Some(Out::Placed(BufWriter::new(f)));
                Ok(true)
            }
            Err(e) => {
                self.total -= t.bytes;
                t.bytes = 0;
                Err(e)
            }
        }
    }

    /// Ends alert `id`'s capture: flushed, synced, and no more frames go into it.
    pub fn close(&mut self, id: u64) -> std::io::Result<()> {
        let Some(i) = self.open_target(id) else {
            return Ok(());
        };
        let t = &mut self.targets[i];
        let out = t.out.take();
        if let Some(ids) = self.by_flow.get_mut(&t.planned.flow) {
            ids.retain(|&j| j != i);
            if ids.is_empty() {
                self.by_flow.remove(&t.planned.flow);
            }
        }
        match out {
            Some(Out::Placed(w)) => w
                .into_inner()
                .map_err(|e| e.into_error())
                .and_then(|f| f.sync_all()),
            // Not placed yet: nothing of it is under its name, nothing to keep.
            _ => {
                self.total -= t.bytes;
                t.bytes = 0;
                Ok(())
            }
        }
    }

    /// Frames written into alert `id`'s capture so far, or left out by the per-file limit.
    pub fn packets_of(&self, id: u64) -> u64 {
        self.targets
            .iter()
            .filter(|t| t.planned.id == id)
            .map(|t| t.packets + t.cut)
            .sum()
    }

    /// Writes out what the placed captures buffered: each ends on a whole block.
    pub fn flush(&mut self) {
        for t in &mut self.targets {
            if let Some(Out::Placed(w)) = t.out.as_mut() {
                if let Err(e) = w.flush() {
                    let what = format!("evidence capture {}", t.planned.path.display());
                    output::status(&format!("monitor: {what}: {e}"));
                    self.failed.get_or_insert(format!("{what}: {e}"));
                    t.out = None;
                }
            }
        }
    }

    /// Flushes every capture to disk and renames it onto its name (a placed one is only
    /// synced); `inputs` are never replaced. Returns the alerts whose capture was written,
    /// or why the run must exit 1.
    pub fn finish(mut self, inputs: &[&Path]) -> Result<Vec<u64>, String> {
        let mut written = Vec::new();
        for t in &mut self.targets {
            let out = t.out.take();
            if out.is_none() && t.bytes == 0 {
                continue;
            }
            let path = t.planned.path.clone();
            let shown = path.display().to_string();
            let done = match out {
                // Closed before: already whole under its name.
                None => Ok(()),
                Some(Out::Placed(w)) => w
                    .into_inner()
                    .map_err(|e| e.into_error())
                    .and_then(|f| f.sync_all()),
                Some(Out::Temporary(w)) => {
                    if inputs.iter().any(|p| output::file::same_file(p, &path)) {
                        self.failed.get_or_insert(format!(
                            "evidence capture {shown} is an input: not replaced"
                        ));
                        continue;
                    }
                    w.into_inner()
                        .map_err(|e| e.into_error())
                        .and_then(|tmp| {
                            tmp.as_file().sync_all()?;
                            tmp.persist(&path).map_err(|e| e.error)
                        })
                        .and_then(|f: File| {
                            // The rename is durable once the directory is synced.
                            drop(f);
                            File::open(&self.settings.dir).and_then(|d| d.sync_all())
                        })
                }
            };
            match done {
                Ok(()) => written.push(t.planned.id),
                Err(e) => {
                    output::status(&format!("monitor: evidence capture {shown}: {e}"));
                    self.failed
                        .get_or_insert(format!("evidence capture {shown}: {e}"));
                    continue;
                }
            }
            if t.cut > 0 {
                output::status(&format!(
                    "monitor: evidence capture {shown} holds the first {} \
                     packets of its flow (the per-file limit); {} later ones are not in it",
                    t.packets, t.cut
                ));
            }
        }
        match self.failed {
            Some(why) => Err(why),
            None => Ok(written),
        }
    }
}

#[cfg(test)]
#[path = "files_tests.rs"]
mod tests;
