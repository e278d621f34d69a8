//! `--evidence DIR` on `live` and `demo`: the packets come from the kernel's evidence ring
//! as the run goes. A writer thread of its own keeps the latest of every flow
//! ([`RecentPackets`]); when an alert is raised it writes what it kept of the alert's flow,
//! puts the file under its name at once (the transition lines name it), then appends the
//! flow's packets each tick until the alert has been cleared for
//! [`super::FOLLOW_AFTER_CLEAR_NS`], or the per-file limit. The tick hands over and waits
//! only for a new alert's file to be placed, at most [`PLACE_WAIT`], so that the transition
//! lines after it name a file that is there; a writer that falls behind has packets
//! dropped and counted.

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicU64, AtomicUsize, Ordering},
        mpsc, Arc,
    },
    thread::JoinHandle,
};

use anyhow::Result;
use monitor_common::{evidence::EvidencePacket, parse::Packet};

use super::{
    files::Holds,
    recent::{flow_of, RecentPackets, HEAD, TAIL},
    verdict::{answers, comment, PacketFacts},
    CaptureFiles, CapturePlan, EvidenceSettings, PlannedCapture, FOLLOW_AFTER_CLEAR_NS,
};
use crate::{
    alerts::{Change, Transition},
    capture::{decode_link, Record},
    model::Alert,
    output,
};

/// Packets handed to the writer and not yet taken, at most: some 60 MB of entries.
const MAX_QUEUED: usize = 200_000;

/// The longest a tick waits for new alerts' files to be placed.
pub const PLACE_WAIT: std::time::Duration = std::time::Duration::from_millis(500);

/// One tick's work for the writer.
struct Batch {
    packets: Vec<EvidencePacket>,
    raised: Vec<PlannedCapture>,
    /// Alert ids and when they cleared.
    cleared: Vec<(u64, u64)>,
    now_ns: u64,
}

/// The evidence captures of a live run (the pipeline's output for them is in
/// `pipeline/outputs.rs`).
pub struct LiveCaptures {
    plan: CapturePlan,
    packets: Vec<EvidencePacket>,
    to_writer: Option<mpsc::Sender<Batch>>,
    /// Alert ids whose file the writer has placed (or failed to).
    placed: mpsc::Receiver<u64>,
    queued: Arc<AtomicUsize>,
    /// Packets the writer dropped (its room, or behind) and the tick could not hand over.
    lost: Arc<AtomicU64>,
    writer: Option<JoinHandle<Result<Vec<u64>, String>>>,
    failed: Option<String>,
}

impl LiveCaptures {
    /// Captures in `settings.dir` of the flows of alerts `plan` names; `ring_bytes` bounds
    /// what is kept of flows before an alert; `interface` names where packets were seen.
    pub fn start(
        plan: CapturePlan,
        settings: EvidenceSettings,
        ring_bytes: usize,
        interface: String,
    ) -> Result<Self> {
        let (tx, rx) = mpsc::channel::<Batch>();
        let (placed_tx, placed) = mpsc::channel::<u64>();
        let queued = Arc::new(AtomicUsize::new(0));
        let lost = Arc::new(AtomicU64::new(0));
        let (q, l) = (queued.clone(), lost.clone());
        let writer = std::thread::Builder::new()
            .name("monitor-evidence".into())
            .spawn(move || write(rx, &placed_tx, settings, ring_bytes, &interface, &q, &l))?;
        Ok(Self {
            plan,
            packets: Vec::new(),
            to_writer: Some(tx),
            placed,
            queued,
            lost,
            writer: Some(writer),
            failed: None,
        })
    }

    /// Packets lost to the evidence captures in userspace so far.
    pub fn lost_packets(&self) -> u64 {
        self.lost.load(Ordering::Relaxed)
    }

    /// The evidence ring's packets of the tick about to be judged.
    pub fn take_packets(&mut self, packets: &[EvidencePacket]) {
        self.packets.extend_from_slice(packets);
    }

    /// Hands the tick's packets and alert transitions to the writer (never waits for it).
    pub fn tick(&mut self, now_ns: u64, transitions: &[Transition]) {
        self.plan.note(transitions);
        let mut packets = std::mem::take(&mut self.packets);
        if self.queued.load(Ordering::Relaxed) + packets.len() > MAX_QUEUED {
            self.lost.fetch_add(packets.len() as u64, Ordering::Relaxed);
            packets.clear();
        }
        let mut raised = Vec::new();
        let mut cleared = Vec::new();
        for t in transitions {
            match t.change {
                Change::Raised => raised.extend(self.plan.get(t.alert.id)),
                Change::Cleared => cleared.push((t.alert.id, t.ts_ns)),
                Change::Escalated => {}
            }
        }
        self.queued.fetch_add(packets.len(), Ordering::Relaxed);
        let mut waiting = raised.len();
        let batch = Batch {
            packets,
            raised,
            cleared,
            now_ns,
        };
        if let Some(tx) = &self.to_writer {
            if tx.send(batch).is_err() {
                // The writer ended early: what it said is taken at the end.
                self.to_writer = None;
                waiting = 0;
            }
        }
        let deadline = std::time::Instant::now() + PLACE_WAIT;
        while waiting > 0 {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.placed.recv_timeout(left) {
                Ok(_) => waiting -= 1,
                Err(_) => break,
            }
        }
    }

    /// The run ended: the writer completes every capture; `latest` are the last tick's
    /// alerts (their summaries). Says on stderr what was written and what was lost.
    pub fn finish(&mut self, latest: &[Alert]) {
        self.plan.refresh(latest);
        self.to_writer = None;
        let Some(writer) = self.writer.take() else {
            return;
        };
        let done = writer
            .join()
            .unwrap_or_else(|_| Err("the evidence writer panicked".into()));
        let lost = self.lost_packets();
        if lost > 0 {
            output::status(&format!(
                "monitor: {lost} packet(s) were not kept for the evidence captures (the \
                 writer's room or queue was full); raise --evidence-ring-mb to keep more"
            ));
        }
        match done {
            Ok(ids) => {
                self.plan.mark_written(&ids);
                output::status(&format!(
                    "monitor: {} evidence capture(s) in {}",
                    ids.len(),
                    self.plan.dir().display()
                ));
            }
            Err(why) => {
                output::status(&format!("monitor: {why} (the monitor exits 1)"));
                self.failed = Some(why);
            }
        }
    }

    /// Why the captures could not all be written, if they could not: the run exits 1.
    pub fn failed(&self) -> Option<&str> {
        self.failed.as_deref()
    }
}

/// One packet of the ring into the captures that follow its flow, with its verdict, and
/// `note` after it.
fn frame(files: &mut CaptureFiles, p: &EvidencePacket, note: Option<&str>) {
    let data = p.captured();
    let rec = Record {
        ts_ns: p.ts_ns,
        linktype: u32::from(p.link),
        link: decode_link(u32::from(p.link), data),
        data,
        orig_len: p.orig_len,
    };
    let mut pkt = Packet::default();
    let (facts, answer) = match rec.parse(&mut pkt) {
        Ok(()) => {
            let f = PacketFacts::recorded(p, &pkt);
            (f, answers(&f, &pkt))
        }
        // Cut by the snap length before the TCP header: the kernel's verdict alone.
        Err(_) => (
            PacketFacts {
                outcome: p.outcome,
                ..PacketFacts::default()
            },
            false,
        ),
    };
    let said = match (comment(&facts), note) {
        (Some(c), Some(n)) => Some(format!("{c}; {n}")),
        (c, n) => c.or(n.map(str::to_string)),
    };
    files.frame(&flow_of(p), &rec, said.as_deref(), answer);
}

/// Starts the capture `plan` names: what `recent` kept of its flow written, and placed
/// under its name. `Ok(false)`: the directory limit dropped it at once.
fn start(
    files: &mut Option<CaptureFiles>,
    settings: &EvidenceSettings,
    interface: &str,
    plan: PlannedCapture,
    recent: &RecentPackets,
) -> std::io::Result<bool> {
    let f = match files {
        Some(f) => f,
        None => files.insert(CaptureFiles::new(settings.clone(), interface)?),
    };
    let (id, flow) = (plan.id, plan.flow);
    f.add(plan, Holds::Following)?;
    let kept = recent.kept(&flow);
    for (i, p) in kept.packets.iter().enumerate() {
        let gap = kept.gap.filter(|(at, _)| *at == i).map(|(_, n)| {
            format!(
                "{n} packet(s) of the flow before this one are not in this file (the \
                 evidence ring keeps a flow's first {HEAD} and latest {TAIL} until an alert)"
            )
        });
        frame(f, p, gap.as_deref());
    }
    f.place(id)
}

/// The writer thread: takes batches until the run ends, then completes every capture.
fn write(
    batches: mpsc::Receiver<Batch>,
    placed: &mpsc::Sender<u64>,
    settings: EvidenceSettings,
    ring_bytes: usize,
    interface: &str,
    queued: &AtomicUsize,
    lost: &AtomicU64,
) -> Result<Vec<u64>, String> {
    let dir = settings.dir.clone();
    let failed = |e: std::io::Error| format!("evidence captures in {}: {e}", dir.display());
    let mut recent = RecentPackets::new(ring_bytes);
    let mut files: Option<CaptureFiles> = None;
    // Alerts whose flow is followed: when each cleared, if it did.
    let mut following: HashMap<u64, Option<u64>> = HashMap::new();
    let max_packets = settings.max_file_packets;
    while let Ok(b) = batches.recv() {
        queued.fetch_sub(b.packets.len(), Ordering::Relaxed);
        let before = recent.lost;
        for p in &b.packets {
            if let Some(f) = files.as_mut().filter(|f| f.wants(&flow_of(p))) {
                frame(f, p, None);
            }
            recent.push(*p);
        }
        lost.fetch_add(recent.lost - before, Ordering::Relaxed);
        for plan in b.raised {
            let id = plan.id;
            let started = start(&mut files, &settings, interface, plan, &recent);
            // Said placed even when it failed: the tick must not wait for it.
            let _ = placed.send(id);
            if started.map_err(failed)? {
                following.insert(id, None);
            }
        }
        for (id, at) in b.cleared {
            if let Some(c) = following.get_mut(&id) {
                *c = Some(at);
            }
        }
        let Some(f) = files.as_mut() else { continue };
        let done: Vec<u64> = following
            .iter()
            .filter(|(id, c)| {
                c.is_some_and(|at| b.now_ns >= at + FOLLOW_AFTER_CLEAR_NS)
                    || f.packets_of(**id) >= max_packets
            })
            .map(|(id, _)| *id)
            .collect();
        for id in done {
            following.remove(&id);
            f.close(id).map_err(failed)?;
        }
        f.flush();
    }
    match files {
        Some(f) => f.finish(&[]),
        None => Ok(Vec::new()),
    }
}
