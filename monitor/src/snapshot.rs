//! What the monitor knows at a tick: the flow table and the tick's totals, alerts and
//! interfaces. Outputs render from it and never touch the kernel.

use crate::model::FlowStats;
use crate::{
    model::{
        outcome, Alert, Counters, FlowId, FlowRecord, IfaceTraffic, KernelCost, Point,
        HANDSHAKE_TIMEOUT_S,
    },
    table::{FlowTable, SharedTable},
};
use monitor_common::stats;

#[derive(Clone, Debug)]
pub struct Snapshot {
    /// The flow table, with the alert engine's health of each flow and what this tick
    /// changed. Shared with the source, which writes it at the next tick: a snapshot is
    /// not a copy of every record.
    pub flows: SharedTable,
    pub counters: Counters,
    /// Flows the kernel created that are no longer in its map: the LRU evicted them.
    /// Records lost with a full ring are not among them (see `lost_flows`).
    pub evicted_flows: u64,
    /// Records of closed connections the kernel could not hand over, its ring full
    /// between two ticks: a larger map would not have kept them.
    pub lost_flows: u64,
    /// When the snapshot was taken (epoch ns; a capture's last timestamp for replay).
    pub now_ns: u64,
    /// Active alerts (worst first), then recently cleared ones (newest first).
    pub alerts: Vec<Alert>,
    /// Sessions with a flow in the table (the alert engine's count; 0 where none judged).
    pub sessions: usize,
    /// Whether an alert engine judged this snapshot (live, demo), so "no alerts" means
    /// none rather than not looked at.
    pub judged: bool,
    /// Sparkline points of the flow the UI shows in detail.
    pub spark: Option<(FlowId, Vec<Point>)>,
    /// Time the collector took to read the kernel and judge the flows.
    pub collect_ns: u64,
    /// Per watched interface (live only).
    pub interfaces: Vec<IfaceTraffic>,
    /// How long a handshake may stay open before it is a timeout: the alert engine's
    /// setting, so the flow table, JSON and metrics agree with the alerts.
    pub handshake_timeout_ns: u64,
    /// What the monitor's programs cost the kernel (`--self-stats` only).
    pub kernel_cost: Option<KernelCost>,
}

impl Default for Snapshot {
    fn default() -> Self {
        Self::of(SharedTable::default(), Counters::default(), 0)
    }
}

impl Snapshot {
    /// A snapshot of `flows` (live records; `closed`: records port reuse ended), as one
    /// tick would read them: for one-shot reports and tests.
    pub fn new(
        flows: Vec<FlowRecord>,
        closed: &[FlowRecord],
        counters: Counters,
        now_ns: u64,
    ) -> Self {
        Self::of(
            SharedTable::new(FlowTable::of(flows, closed)),
            counters,
            now_ns,
        )
    }

    /// A flow's handshake outcome at this snapshot, or `None` while pending.
    pub fn outcome(&self, st: &FlowStats) -> Option<&'static str> {
        outcome(st, self.now_ns, self.handshake_timeout_ns)
    }

    /// The snapshot of `flows` as the table is now.
    pub fn of(flows: SharedTable, counters: Counters, now_ns: u64) -> Self {
        let (live, closed, dropped) = {
            let t = flows.read();
            (t.live_len() as u64, t.closed_len() as u64, t.closed_dropped)
        };
        let created = counters.get(stats::FLOWS_CREATED);
        // A record port reuse closed leaves the map for the ring: if the ring is full it is
        // neither live nor closed here, and must not count as evicted; nor does a closed
        // row the table let go.
        let lost_flows = counters.get(stats::CLOSED_LOST);
        let evicted_flows = created.saturating_sub(live + closed + lost_flows + dropped);
        Self {
            flows,
            counters,
            evicted_flows,
            lost_flows,
            now_ns,
            alerts: Vec::new(),
            sessions: 0,
            judged: false,
            spark: None,
            collect_ns: 0,
            interfaces: Vec::new(),
            handshake_timeout_ns: (HANDSHAKE_TIMEOUT_S * 1e9) as u64,
            kernel_cost: None,
        }
    }

    /// Every record in report order (client, server, first seen).
    pub fn records(&self) -> Vec<FlowRecord> {
        self.flows.read().records()
    }
}
