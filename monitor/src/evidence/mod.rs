//! `--evidence DIR`: for every alert raised, a pcapng file of its worst flow's packets, each
//! annotated with the monitor's verdict on it, for a vendor's support to open in Wireshark.
//! The file's path is decided when the alert is raised ([`CapturePlan`]), so the transition
//! lines can name it at once; the file itself is written by [`CaptureFiles`], fed by
//! `replay.rs` from a second read of the capture at the end, or live by [`LiveCaptures`]
//! from the kernel's evidence ring as the packets come.

mod files;
mod live;
pub mod pcapng;
mod recent;
pub mod verdict;

use std::{
    collections::HashMap,
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::{Arc, Mutex, MutexGuard},
};

use anyhow::Result;
pub use files::{CaptureFiles, Holds, MAX_FILE_PACKETS};
pub use live::LiveCaptures;

/// How long a live capture goes on following its flow after the alert cleared: the
/// recovery is part of the evidence.
pub const FOLLOW_AFTER_CLEAR_NS: u64 = 5_000_000_000;

use crate::{
    alerts::{Change, Transition},
    error::usage,
    model::{Alert, FlowId},
};

/// What `--evidence` and its limits asked for.
#[derive(Clone, Debug)]
pub struct EvidenceSettings {
    pub dir: PathBuf,
    /// `--evidence-max-mb` in bytes (`None`: no limit but the per-file one).
    pub max_bytes: Option<u64>,
    pub snaplen: u32,
    /// Frames one file holds at most: [`MAX_FILE_PACKETS`] (smaller only in tests).
    pub max_file_packets: u64,
}

/// One alert's capture, as decided when the alert was raised.
#[derive(Clone, Debug)]
pub struct PlannedCapture {
    pub id: u64,
    pub kind: &'static str,
    pub severity: &'static str,
    /// The alert's worst flow when it was raised: the flow the file holds.
    pub flow: FlowId,
    pub client: String,
    pub server: String,
    pub path: PathBuf,
    /// The alert's latest summary.
    pub summary: String,
    /// For a media alert: what the server's answer to the hello should have been and what
    /// came, said on the packet that came instead (the first server payload, or a reset).
    pub media: Option<String>,
    pub raised_ns: u64,
    pub cleared_ns: Option<u64>,
    /// The file was written whole at the end of the run.
    pub written: bool,
}

/// The captures of a run's alerts, by alert id: shared by the outputs that name them (the
/// recording, the final summary) and the one that writes them.
#[derive(Clone, Debug)]
pub struct CapturePlan {
    dir: PathBuf,
    alerts: Arc<Mutex<HashMap<u64, PlannedCapture>>>,
}

impl CapturePlan {
    pub fn new(dir: &Path) -> Self {
        Self {
            dir: dir.to_path_buf(),
            alerts: Arc::default(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<u64, PlannedCapture>> {
        // A panic elsewhere while it was held leaves a map that is still whole.
        self.alerts.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes one tick's transitions: a raised alert gets its path (once: noting the same
    /// tick twice changes nothing), an escalation its new summary, a clearing its time.
    pub fn note(&self, transitions: &[Transition]) {
        let mut alerts = self.lock();
        for t in transitions {
            let a = &t.alert;
            match t.change {
                Change::Raised => {
                    let Some(flow) = a.worst else { continue };
                    alerts.entry(a.id).or_insert_with(|| PlannedCapture {
                        id: a.id,
                        kind: a.kind.name(),
                        severity: a.severity.name(),
                        flow,
                        client: a.client.clone(),
                        server: a.server.clone(),
                        path: self
                            .dir
                            .join(file_name(a.id, a.kind.name(), &a.client, &a.server)),
                        summary: a.summary.clone(),
                        media: media_note(a),
                        raised_ns: t.ts_ns,
                        cleared_ns: None,
                        written: false,
                    });
                }
                Change::Escalated => {
                    if let Some(p) = alerts.get_mut(&a.id) {
                        p.summary = a.summary.clone();
                        p.severity = a.severity.name();
                    }
                }
                Change::Cleared => {
                    if let Some(p) = alerts.get_mut(&a.id) {
                        p.cleared_ns = Some(t.ts_ns);
                    }
                }
            }
        }
    }

    /// The capture planned for alert `id`.
    pub fn get(&self, id: u64) -> Option<PlannedCapture> {
        self.lock().get(&id).cloned()
    }

    /// The capture path of alert `id`, as the transition lines show it.
    pub fn path_of(&self, id: u64) -> Option<String> {
        self.lock().get(&id).map(|p| p.path.display().to_string())
    }

    /// Takes the alerts' latest summaries and severities (a summary follows the worst flow
    /// every tick, not only at a transition), e.g. from the run's last tick.
    pub fn refresh(&self, latest: &[Alert]) {
        let mut alerts = self.lock();
        for a in latest {
            if let Some(p) = alerts.get_mut(&a.id) {
                p.summary = a.summary.clone();
                p.severity = a.severity.name();
            }
        }
    }

    /// Marks the captures of alerts `ids` as written.
    pub fn mark_written(&self, ids: &[u64]) {
        let mut alerts = self.lock();
        for id in ids {
            if let Some(p) = alerts.get_mut(id) {
                p.written = true;
            }
        }
    }

    /// The capture path of alert `id` once its file was written.
    pub fn written_path_of(&self, id: u64) -> Option<String> {
        self.lock()
            .get(&id)
            .filter(|p| p.written)
            .map(|p| p.path.display().to_string())
    }

    /// Where the captures go.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Every alert's capture, in alert order.
    pub fn entries(&self) -> Vec<PlannedCapture> {
        let mut v: Vec<PlannedCapture> = self.lock().values().cloned().collect();
        v.sort_by_key(|p| p.id);
        v
    }
}

/// A media alert's words for the packet that answered the hello: its verdict and what was
/// expected and got (the alert's evidence).
fn media_note(a: &Alert) -> Option<String> {
    if a.kind != crate::model::Kind::MediaIntercepted {
        return None;
    }
    let s = |k: &str| {
        a.evidence
            .get(k)
            .and_then(|v| v.as_str())
            .unwrap_or_default()
    };
    Some(format!("media {}: {}", s("verdict"), s("got")))
}

/// `<id>-<kind>-<client>-<server>.pcapng`, with only characters every file system takes in
/// a name: `10.0.0.1:40000` becomes `10.0.0.1_40000`, `[fd00::1]:443` `fd00--1_443`.
pub fn file_name(id: u64, kind: &str, client: &str, server: &str) -> String {
    format!(
        "{id}-{}-{}-{}.pcapng",
        safe(kind),
        endpoint(client),
        endpoint(server)
    )
}

fn endpoint(s: &str) -> String {
    match s.parse::<SocketAddr>() {
        Ok(a) => format!("{}_{}", a.ip().to_string().replace(':', "-"), a.port()),
        Err(_) => safe(s),
    }
}

fn safe(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Whether `name` is one an evidence capture could be given (so a file of that name in
/// DIR may be replaced).
fn evidence_like(name: &str) -> bool {
    let Some(rest) = name.strip_suffix(".pcapng") else {
        return false;
    };
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    digits > 0 && rest[digits..].starts_with('-')
}

/// Refuses, before anything is read, a DIR that is not a directory or cannot be written,
/// and any input or other output inside DIR under a name a capture could be given (it
/// could be replaced). A DIR that does not exist yet is made only when the captures are
/// written, so a run that fails leaves none.
pub fn check(dir: &Path, others: &[(&str, &Path)]) -> Result<()> {
    let shown = dir.display();
    match std::fs::metadata(dir) {
        Ok(m) if !m.is_dir() => {
            return Err(usage(
                format!("--evidence {shown} is not a directory"),
                "give --evidence a directory (it is made if it does not exist)",
            ))
        }
        Ok(_) => {
            if let Err(e) = tempfile::tempfile_in(dir) {
                return Err(usage(
                    format!("--evidence {shown} cannot be written: {e}"),
                    "give --evidence a directory you can write",
                ));
            }
        }
        Err(_) => {
            let parent = match dir.parent() {
                Some(p) if !p.as_os_str().is_empty() => p,
                _ => Path::new("."),
            };
            if !std::fs::metadata(parent).is_ok_and(|m| m.is_dir()) {
                return Err(usage(
                    format!("--evidence {shown} does not exist, nor does its parent"),
                    "give --evidence a directory, or a new one inside an existing directory",
                ));
            }
            if let Err(e) = tempfile::tempfile_in(parent) {
                return Err(usage(
                    format!("--evidence {shown} cannot be made: {e}"),
                    "give --evidence a directory you can write",
                ));
            }
        }
    }
    for (what, p) in others {
        let parent = match p.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        let inside = match (std::fs::canonicalize(parent), std::fs::canonicalize(dir)) {
            (Ok(a), Ok(b)) => a == b,
            _ => false,
        };
        let name = p.file_name().map(|n| n.to_string_lossy().into_owned());
        if inside && name.as_deref().is_some_and(evidence_like) {
            return Err(usage(
                format!(
                    "{what} {} is in --evidence {shown} under a name an alert's capture could \
                     be given: it could be overwritten",
                    p.display()
                ),
                format!("move {what} out of {shown}, or give --evidence another directory"),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_have_no_character_a_file_system_refuses() {
        assert_eq!(
            file_name(3, "retransmit_rate", "10.88.1.12:40002", "10.88.2.2:50002"),
            "3-retransmit_rate-10.88.1.12_40002-10.88.2.2_50002.pcapng"
        );
        let v6 = file_name(12, "reset", "[fd00::1]:40000", "[fd00::2]:443");
        assert_eq!(v6, "12-reset-fd00--1_40000-fd00--2_443.pcapng");
        let odd = file_name(1, "reset", "a/b:c[d]", "x\\y*?");
        assert!(!odd.contains(['/', ':', '[', ']', '\\', '*', '?']), "{odd}");
        assert!(evidence_like(&v6) && !evidence_like("capture.pcapng"));
        assert!(!evidence_like("12-reset.pcap") && !evidence_like("-reset.pcapng"));
    }
}
