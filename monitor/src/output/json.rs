//! The flow summary JSON of DESIGN.md. Field names are a contract; values the monitor does
//! not know yet are `null`, never invented.

use monitor_common::{
    flow::{DirStats, C2S, S2C},
    stats,
};
use serde::Serialize;

use crate::snapshot::{FlowRecord, Snapshot};

#[derive(Serialize, Debug)]
pub struct Summary {
    pub flows: Vec<Flow>,
    pub totals: Totals,
}

#[derive(Serialize, Debug)]
pub struct Flow {
    pub client: String,
    pub server: String,
    pub first_seen_ns: u64,
    pub last_seen_ns: u64,
    pub handshake: Handshake,
    pub tls: Tls,
    pub c2s: Direction,
    pub s2c: Direction,
    pub alerts: Vec<Alert>,
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
pub struct Alert {
    pub kind: String,
    pub severity: String,
    pub since_ns: u64,
}

#[derive(Serialize, Debug)]
pub struct Totals {
    pub packets: u64,
    pub flows: u64,
    pub evicted_flows: u64,
    pub lost_events: u64,
}

fn direction(d: &DirStats) -> Direction {
    Direction {
        packets: d.packets,
        bytes: d.bytes,
        payload_bytes: d.payload_bytes,
        retransmits: None,
        fast_retransmits: None,
        spurious_retransmits: None,
        out_of_order: None,
        lost_segments: None,
        dup_acks: None,
        zero_windows: None,
        zero_window_probes: None,
        keep_alives: None,
        window_full: None,
        acked_unseen: None,
        rsts: d.rsts,
        suspect_injected_rsts: None,
        fins: d.fins,
    }
}

fn flow(f: &FlowRecord) -> Flow {
    let s = &f.state;
    Flow {
        client: f.client().to_string(),
        server: f.server().to_string(),
        first_seen_ns: s.first_seen_ns,
        last_seen_ns: s.last_seen_ns,
        handshake: Handshake {
            syn: s.dir[C2S].syns,
            syn_retransmits: None,
            synack_retransmits: None,
            outcome: None,
            rtt_us: None,
        },
        tls: Tls {
            client_hello: None,
            server_hello: None,
        },
        c2s: direction(&s.dir[C2S]),
        s2c: direction(&s.dir[S2C]),
        alerts: Vec::new(),
    }
}

pub fn summary(snap: &Snapshot) -> Summary {
    Summary {
        flows: snap.flows.iter().map(flow).collect(),
        totals: Totals {
            // Packets the monitor analysed: those on watched ports.
            packets: snap.counters.get(stats::WATCHED),
            flows: snap.flows.len() as u64,
            evicted_flows: snap.evicted_flows,
            lost_events: snap.counters.get(stats::EVENTS_LOST),
        },
    }
}

/// One line of JSON.
pub fn render(snap: &Snapshot) -> String {
    // Serialising plain structs of numbers and strings cannot fail.
    serde_json::to_string(&summary(snap)).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
}
