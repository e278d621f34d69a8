//! The flow summary JSON (docs/contract.md). Field names are a contract; values the monitor does
//! not know yet are `null`, never invented.

use monitor_common::{
    flow::{seen, C2S, S2C},
    stats,
};
use std::{borrow::Cow, net::SocketAddr, sync::RwLockReadGuard};

use serde::{Serialize, Serializer};

use crate::{
    media::verdict::Media,
    model::{Anomalies, DirCounts},
    snapshot::Snapshot,
    table::{FlowRow, FlowTable},
};

#[derive(Serialize)]
pub struct Summary<'a> {
    pub flows: Flows<'a>,
    pub totals: Totals,
    /// Active alerts with their evidence (only where an alert engine judged the flows).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alerts: Option<Vec<SummaryAlert<'a>>>,
}

/// An active alert as the summary lists it: as its transition line says it, and in plain
/// sentences (`explain.rs`, the same the report and the terminal UI use).
#[derive(Serialize, Debug)]
pub struct SummaryAlert<'a> {
    #[serde(flatten)]
    pub alert: &'a crate::model::Alert,
    pub explanation: Explained,
    /// The alert's evidence capture (`--evidence`), when one was written.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub capture: Option<String>,
}

/// The flows of a summary in report order (client, server, first seen), each built as it
/// is written: the summary of a big table is never held whole (100,000 flows would be some
/// 60 MB of these structs).
pub struct Flows<'a> {
    table: RwLockReadGuard<'a, FlowTable>,
    order: Vec<u32>,
    snap: &'a Snapshot,
}

impl Flows<'_> {
    pub fn iter(&self) -> impl Iterator<Item = Flow<'_>> + '_ {
        self.order
            .iter()
            .filter_map(|&i| self.table.row(i))
            .map(|r| flow(r, self.snap))
    }
}

impl Serialize for Flows<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.iter())
    }
}

#[derive(Serialize, Debug)]
pub struct Explained {
    pub observed: String,
    pub healthy: String,
    pub meaning: String,
}

impl<'a> SummaryAlert<'a> {
    pub fn of(alert: &'a crate::model::Alert, capture: Option<String>) -> Self {
        let evidence = serde_json::Value::Object(alert.evidence.clone());
        let x = crate::explain::explain(alert.kind.name(), alert.direction, &evidence);
        Self {
            alert,
            explanation: Explained {
                observed: x.observed,
                healthy: x.healthy,
                meaning: x.meaning,
            },
            capture,
        }
    }
}

#[derive(Serialize, Debug)]
pub struct Flow<'a> {
    pub client: SocketAddr,
    pub server: SocketAddr,
    pub first_seen_ns: u64,
    pub last_seen_ns: u64,
    pub handshake: Handshake,
    pub tls: Tls,
    /// What the first payload bytes say (issue 16's contract: every field `null` until
    /// known).
    pub media: Cow<'a, Media>,
    pub c2s: Direction,
    pub s2c: Direction,
    pub alerts: Vec<FlowAlert>,
}

#[derive(Serialize, Debug)]
pub struct Handshake {
    pub syn: u64,
    pub syn_retransmits: Option<u64>,
    pub synack_retransmits: Option<u64>,
    pub outcome: Option<&'static str>,
    pub rtt_us: Option<u64>,
}

#[derive(Serialize, Debug)]
pub struct Tls {
    pub client_hello: Option<bool>,
    pub server_hello: Option<bool>,
}

#[derive(Serialize, Debug)]
pub struct Direction {
    pub packets: u64,
    pub bytes: u64,
    pub payload_bytes: u64,
    pub retransmits: Option<u64>,
    pub fast_retransmits: Option<u64>,
    pub spurious_retransmits: Option<u64>,
    pub out_of_order: Option<u64>,
    pub lost_segments: Option<u64>,
    pub dup_acks: Option<u64>,
    pub zero_windows: Option<u64>,
    pub zero_window_probes: Option<u64>,
    pub keep_alives: Option<u64>,
    pub window_full: Option<u64>,
    pub acked_unseen: Option<u64>,
    pub rsts: u64,
    pub suspect_injected_rsts: Option<u64>,
    pub fins: u64,
}

#[derive(Serialize, Debug)]
pub struct FlowAlert {
    pub id: u64,
    pub kind: &'static str,
    pub severity: &'static str,
    pub direction: Option<&'static str>,
    pub since_ns: u64,
}

#[derive(Serialize, Debug)]
pub struct Totals {
    pub packets: u64,
    pub flows: u64,
    pub evicted_flows: u64,
    /// Closed connection records lost with a full ring (not evicted: see `Snapshot`).
    pub lost_flows: u64,
    pub lost_events: u64,
    /// Payload samples lost with a full ring (the media decoders miss their bytes).
    pub lost_samples: u64,
    /// Packets the evidence ring could not take (`--evidence` on a live run).
    pub lost_evidence: u64,
    /// What the monitor's programs cost the kernel (`--self-stats`; else `null`).
    pub kernel: Option<crate::model::KernelCost>,
    pub skipped: Skipped,
}

/// Frames the parser did not analyse, by reason: a forged or damaged header is counted
/// here rather than in a flow.
#[derive(Serialize, Debug)]
pub struct Skipped {
    pub not_ip: u64,
    pub not_tcp: u64,
    pub fragments: u64,
    pub truncated: u64,
    pub malformed: u64,
    pub too_many_headers: u64,
}

impl Skipped {
    pub fn of(snap: &Snapshot) -> Self {
        let c = |i| snap.counters.get(i);
        Skipped {
            not_ip: c(stats::NOT_IP),
            not_tcp: c(stats::NOT_TCP),
            fragments: c(stats::FRAGMENTS),
            truncated: c(stats::TRUNCATED),
            malformed: c(stats::MALFORMED),
            too_many_headers: c(stats::TOO_MANY_HEADERS),
        }
    }
}

fn direction(d: &DirCounts, a: &Anomalies) -> Direction {
    let n = |v: u32| Some(v as u64);
    Direction {
        packets: d.packets,
        bytes: d.bytes,
        payload_bytes: d.payload_bytes,
        retransmits: n(a.retransmits),
        fast_retransmits: n(a.fast_retransmits),
        spurious_retransmits: n(a.spurious_retransmits),
        out_of_order: n(a.out_of_order),
        lost_segments: n(a.lost_segments),
        dup_acks: n(a.dup_acks),
        zero_windows: n(a.zero_windows),
        zero_window_probes: n(a.zero_window_probes),
        keep_alives: n(a.keep_alives),
        window_full: n(a.window_full),
        acked_unseen: n(a.acked_unseen),
        rsts: d.rsts as u64,
        suspect_injected_rsts: n(a.suspect_injected_rsts),
        fins: d.fins as u64,
    }
}

pub fn flow<'a>(row: &'a FlowRow, snap: &Snapshot) -> Flow<'a> {
    let f = &row.flow;
    let s = &f.state;
    let (c, sv) = (&s.dir[C2S], &s.dir[S2C]);
    // A hello is known absent only once that side has sent payload.
    let hello = |bit: u16, d: &DirCounts| {
        (s.seen & bit != 0 || d.payload_bytes > 0).then_some(s.seen & bit != 0)
    };
    Flow {
        client: f.client(),
        server: f.server(),
        first_seen_ns: s.first_seen_ns,
        last_seen_ns: s.last_seen_ns,
        handshake: Handshake {
            syn: c.syns as u64,
            syn_retransmits: Some(c.syns.saturating_sub(1) as u64),
            synack_retransmits: Some(sv.synacks.saturating_sub(1) as u64),
            outcome: snap.outcome(s),
            rtt_us: (s.rtt_ns != 0).then_some(s.rtt_ns / 1000),
        },
        tls: Tls {
            client_hello: hello(seen::CLIENT_HELLO, c),
            server_hello: hello(seen::SERVER_HELLO, sv),
        },
        media: row
            .media
            .as_deref()
            .map_or_else(|| Cow::Owned(Media::default()), Cow::Borrowed),
        c2s: direction(c, s.anomalies(C2S)),
        s2c: direction(sv, s.anomalies(S2C)),
        alerts: row
            .health
            .alerts
            .iter()
            .filter_map(|id| snap.alerts.iter().find(|a| a.id == *id))
            .map(|a| FlowAlert {
                id: a.id,
                kind: a.kind.name(),
                severity: a.severity.name(),
                direction: a.direction,
                since_ns: a.since_ns,
            })
            .collect(),
    }
}

/// The summary of `snap`: every flow in report order (client, server, first seen).
pub fn summary(snap: &Snapshot) -> Summary<'_> {
    summary_with(snap, |_| None)
}

/// [`summary`], naming each active alert's evidence capture (`capture`: by alert id).
pub fn summary_with(snap: &Snapshot, capture: impl Fn(u64) -> Option<String>) -> Summary<'_> {
    let table = snap.flows.read();
    let flows = table.len() as u64;
    Summary {
        alerts: snap.judged.then(|| {
            snap.alerts
                .iter()
                .filter(|a| a.cleared_ns.is_none())
                .map(|a| SummaryAlert::of(a, capture(a.id)))
                .collect()
        }),
        flows: Flows {
            order: table.sorted(),
            table,
            snap,
        },
        totals: Totals {
            // Packets the monitor analysed: those on watched ports.
            packets: snap.counters.get(stats::WATCHED),
            flows,
            evicted_flows: snap.evicted_flows,
            lost_flows: snap.lost_flows,
            lost_events: snap.counters.get(stats::EVENTS_LOST),
            lost_samples: snap.counters.get(stats::SAMPLES_LOST),
            lost_evidence: snap.counters.get(stats::EVIDENCE_LOST),
            kernel: snap.kernel_cost,
            skipped: Skipped::of(snap),
        },
    }
}

/// The summary as one line of JSON into `w`, with its newline.
pub fn write(snap: &Snapshot, w: &mut impl std::io::Write) -> std::io::Result<()> {
    write_summary(&summary(snap), w)
}

/// `summary` as one line of JSON into `w` (a buffered stream: the serializer writes in
/// small pieces), with its newline.
pub fn write_summary(summary: &Summary, w: &mut impl std::io::Write) -> std::io::Result<()> {
    serde_json::to_writer(&mut *w, summary).map_err(std::io::Error::from)?;
    w.write_all(b"\n")
}

/// One line of JSON.
pub fn render(snap: &Snapshot) -> String {
    // Serialising plain structs of numbers and strings cannot fail.
    serde_json::to_string(&summary(snap)).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
}

/// One alert transition as a JSON line (`--alerts-log`, and stdout with `--headless`).
pub fn transition_line(t: &crate::alerts::Transition) -> String {
    serde_json::to_string(t).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
}

/// [`transition_line`], naming the alert's evidence capture (`--evidence`) when it has one.
pub fn transition_line_with(t: &crate::alerts::Transition, capture: Option<String>) -> String {
    let Some(path) = capture else {
        return transition_line(t);
    };
    let mut v = serde_json::to_value(t).unwrap_or(serde_json::Value::Null);
    if let serde_json::Value::Object(m) = &mut v {
        m.insert("capture".into(), path.into());
    }
    v.to_string()
}
