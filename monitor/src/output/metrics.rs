//! The Prometheus/OpenMetrics families, fed from snapshots. Counters stay monotonic although
//! flows come and go: each tick adds the growth of every flow's counters since the previous
//! tick. Label sets are bounded (direction, kind, outcome, interface): no label per flow,
//! except the opt-in `--metrics-top-flows N`, which exposes only the N worst flows.

use crate::model::FlowStats;
use std::sync::atomic::AtomicU64;

use foldhash::HashMap;

use monitor_common::stats;
use prometheus_client::{
    encoding::text::encode,
    metrics::{
        counter::Counter,
        family::Family,
        gauge::Gauge,
        histogram::{exponential_buckets, Histogram},
        info::Info,
    },
    registry::{Registry, Unit},
};

use super::metric_labels::{
    AlertLabels, Dir, FlowLabels, IfDir, Outcome, Reason, Retx, Rst, DIRS, SKIPPED,
};
use super::{kernel_metrics::KernelMetrics, media_metrics::MediaMetrics};
use crate::{
    model::{FlowId, FlowRecord, Kind, Level},
    snapshot::Snapshot,
    table::FlowTable,
};

/// Per-direction counters a flow contributes, in a fixed order.
const FIELDS: usize = 12;

fn fields(st: &FlowStats, d: usize) -> [u64; FIELDS] {
    let (s, a) = (&st.dir[d], st.anomalies(d));
    let fast = a.fast_retransmits as u64;
    let spurious = a.spurious_retransmits as u64;
    [
        s.packets,
        s.bytes,
        s.data_segments,
        fast,
        spurious,
        // Wireshark's flags are exclusive: fast, spurious and the rest partition them.
        (a.retransmits as u64).saturating_sub(fast + spurious),
        a.dup_acks as u64,
        a.out_of_order as u64,
        a.lost_segments as u64,
        a.zero_windows as u64,
        s.rsts.saturating_sub(a.suspect_injected_rsts) as u64,
        a.suspect_injected_rsts as u64,
    ]
}

pub struct Metrics {
    registry: Registry,
    if_packets: Family<IfDir, Counter>,
    if_bytes: Family<IfDir, Counter>,
    packets: Family<Dir, Counter>,
    bytes: Family<Dir, Counter>,
    data_segments: Family<Dir, Counter>,
    retransmissions: Family<Retx, Counter>,
    dup_acks: Family<Dir, Counter>,
    out_of_order: Family<Dir, Counter>,
    lost_segments: Family<Dir, Counter>,
    zero_windows: Family<Dir, Counter>,
    resets: Family<Rst, Counter>,
    handshakes: Family<Outcome, Counter>,
    media: MediaMetrics,
    /// `--self-stats`: registered at the first tick that has them.
    kernel: Option<KernelMetrics>,
    rtt: Histogram,
    active_flows: Gauge,
    active_sessions: Gauge,
    evicted: Counter,
    lost_flows: Counter,
    lost_events: Counter,
    analysed: Counter,
    skipped: Family<Reason, Counter>,
    alerts: Family<AlertLabels, Gauge>,
    tick: Gauge<f64, AtomicU64>,
    worst: Family<FlowLabels, Gauge<f64, AtomicU64>>,
    top_flows: usize,
    /// Flows whose handshake outcome is not known yet: counted once it is.
    pending: Vec<FlowId>,
    /// The table generation observed last.
    generation: u64,
    prev_ifaces: HashMap<String, [u64; 4]>,
    prev_counters: [u64; 4],
    prev_skipped: [u64; SKIPPED.len()],
    /// Watched interfaces found gone, for `/healthz`.
    gone: Vec<String>,
}

impl Metrics {
    /// `top_flows`: how many worst flows get their own series (0: none).
    pub fn new(top_flows: usize) -> Self {
        let mut r = Registry::default();
        let if_packets = Family::default();
        let if_bytes = Family::default();
        let packets = Family::default();
        let bytes = Family::default();
        let data_segments = Family::default();
        let retransmissions = Family::default();
        let dup_acks = Family::default();
        let out_of_order = Family::default();
        let lost_segments = Family::default();
        let zero_windows = Family::default();
        let resets = Family::default();
        let handshakes = Family::default();
        let rtt = Histogram::new(exponential_buckets(0.0001, 2.0, 17));
        let active_flows = Gauge::default();
        let active_sessions = Gauge::default();
        let evicted = Counter::default();
        let lost_flows = Counter::default();
        let lost_events = Counter::default();
        let analysed = Counter::default();
        let skipped = Family::default();
        let alerts = Family::default();
        let tick = Gauge::default();
        let worst = Family::default();
        let pk = || Unit::Other("packets".into());
        r.register_with_unit(
            "monitor_interface",
            "Packets each watched interface carried, every port (rx: ingress hook, tx: egress)",
            pk(),
            if_packets.clone(),
        );
        r.register_with_unit(
            "monitor_interface",
            "Bytes each watched interface carried, link header included",
            Unit::Bytes,
            if_bytes.clone(),
        );
        r.register_with_unit(
            "monitor_flow",
            "Packets of watched TCP flows, by direction (c2s: client to server)",
            pk(),
            packets.clone(),
        );
        r.register_with_unit(
            "monitor_flow",
            "IP bytes of watched TCP flows, by direction",
            Unit::Bytes,
            bytes.clone(),
        );
        r.register(
            "monitor_tcp_data_segments",
            "TCP segments carrying payload: the denominator of a retransmission rate",
            data_segments.clone(),
        );
        r.register(
            "monitor_tcp_retransmissions",
            "Retransmitted segments by direction and Wireshark's kind (fast, spurious, other: exclusive)",
            retransmissions.clone(),
        );
        r.register(
            "monitor_tcp_dup_acks",
            "Duplicate ACKs sent, by direction",
            dup_acks.clone(),
        );
        r.register(
            "monitor_tcp_out_of_order",
            "Out-of-order segments, by direction",
            out_of_order.clone(),
        );
        r.register(
            "monitor_tcp_lost_segments",
            "Gaps: data seen past a segment never seen, by direction",
            lost_segments.clone(),
        );
        r.register(
            "monitor_tcp_zero_windows",
            "Zero-window advertisements, by the advertising direction",
            zero_windows.clone(),
        );
        r.register(
            "monitor_tcp_resets",
            "Resets by sending direction; suspect_injected by TTL, copied IP-ID or burst",
            resets.clone(),
        );
        r.register(
            "monitor_handshakes",
            "Handshakes by outcome (ok, timeout, refused, reset, midstream), counted once decided",
            handshakes.clone(),
        );
        r.register_with_unit(
            "monitor_handshake_rtt",
            "SYN to the client's first ACK",
            Unit::Seconds,
            rtt.clone(),
        );
        r.register(
            "monitor_active_flows",
            "Flows in the monitor's table",
            active_flows.clone(),
        );
        r.register(
            "monitor_active_sessions",
            "Sessions (flows grouped by remote host) with a flow in the table",
            active_sessions.clone(),
        );
        r.register(
            "monitor_evicted_flows",
            "Flows the kernel's LRU map evicted to make room (raise --max-flows)",
            evicted.clone(),
        );
        r.register(
            "monitor_lost_flows",
            "Records of connections closed by port reuse, lost because the kernel's ring was \
             full between two ticks (a larger --max-flows would not keep them)",
            lost_flows.clone(),
        );
        r.register(
            "monitor_lost_events",
            "Kernel events dropped because the ring buffer was full",
            lost_events.clone(),
        );
        r.register_with_unit(
            "monitor_analysed",
            "Packets on watched ports the analysis ran on",
            pk(),
            analysed.clone(),
        );
        r.register_with_unit(
            "monitor_skipped",
            "Frames not analysed, by reason (malformed: a header claims more than the frame \
             carries, or contradicts itself)",
            pk(),
            skipped.clone(),
        );
        r.register(
            "monitor_active_alerts",
            "Active alerts by kind and severity",
            alerts.clone(),
        );
        r.register_with_unit(
            "monitor_collector_tick",
            "Time the latest tick took to read the kernel and judge the flows",
            Unit::Seconds,
            tick.clone(),
        );
        if top_flows > 0 {
            r.register(
                "monitor_flow_retransmit_ratio",
                "Retransmitted share of data segments over the alert window, worst flows only (--metrics-top-flows)",
                worst.clone(),
            );
        }
        r.register(
            "monitor_build",
            "Version of the monitor",
            Info::new(vec![("version", env!("CARGO_PKG_VERSION"))]),
        );
        // Every bounded series exists from the start, so queries and rules see 0 rather
        // than no data on a quiet host.
        for (_, d) in DIRS {
            let l = Dir { direction: d };
            for f in [
                &packets,
                &bytes,
                &data_segments,
                &dup_acks,
                &out_of_order,
                &lost_segments,
                &zero_windows,
            ] {
                let _ = f.get_or_create(&l);
            }
            for kind in ["fast", "spurious", "other"] {
                let _ = retransmissions.get_or_create(&Retx { direction: d, kind });
            }
            for suspect_injected in ["false", "true"] {
                let _ = resets.get_or_create(&Rst {
                    direction: d,
                    suspect_injected,
                });
            }
        }
        for (reason, _) in SKIPPED {
            let _ = skipped.get_or_create(&Reason { reason });
        }
        let media = MediaMetrics::register(&mut r);
        for outcome in ["ok", "timeout", "refused", "reset", "midstream"] {
            let _ = handshakes.get_or_create(&Outcome { outcome });
        }
        for k in Kind::ALL {
            for l in [Level::Warning, Level::Critical] {
                let _ = alerts.get_or_create(&AlertLabels {
                    kind: k.name(),
                    severity: l.name(),
                });
            }
        }
        Self {
            registry: r,
            if_packets,
            if_bytes,
            packets,
            bytes,
            data_segments,
            retransmissions,
            dup_acks,
            out_of_order,
            lost_segments,
            zero_windows,
            resets,
            handshakes,
            media,
            kernel: None,
            rtt,
            active_flows,
            active_sessions,
            evicted,
            lost_flows,
            lost_events,
            analysed,
            skipped,
            alerts,
            tick,
            worst,
            top_flows,
            pending: Vec::new(),
            generation: 0,
            prev_ifaces: HashMap::default(),
            prev_counters: [0; 4],
            prev_skipped: [0; SKIPPED.len()],
            gone: Vec::new(),
        }
    }

    /// The watched interfaces the last snapshot found gone.
    pub fn gone(&self) -> &[String] {
        &self.gone
    }

    /// Counts the handshake outcome of connection `f` if it is known (a timeout is known by
    /// time alone); whether it was.
    fn handshake_known(&mut self, snap: &Snapshot, f: &FlowRecord) -> bool {
        let Some(o) = snap.outcome(&f.state) else {
            return false;
        };
        self.handshakes.get_or_create(&Outcome { outcome: o }).inc();
        if o == "ok" && f.state.rtt_ns > 0 {
            self.rtt.observe(f.state.rtt_ns as f64 / 1e9);
        }
        true
    }

    /// Adds what changed since the previous snapshot.
    pub fn observe(&mut self, snap: &Snapshot) {
        self.gone.clear();
        self.gone.extend(
            snap.interfaces
                .iter()
                .filter(|i| i.gone)
                .map(|i| i.name.clone()),
        );
        for i in &snap.interfaces {
            let now = [i.rx.packets, i.tx.packets, i.rx.bytes, i.tx.bytes];
            let prev = self
                .prev_ifaces
                .insert(i.name.clone(), now)
                .unwrap_or([0; 4]);
            for (k, dir) in [(0, "rx"), (1, "tx")] {
                let l = IfDir {
                    interface: i.name.clone(),
                    direction: dir,
                };
                self.if_packets
                    .get_or_create(&l)
                    .inc_by(now[k].saturating_sub(prev[k]));
                self.if_bytes
                    .get_or_create(&l)
                    .inc_by(now[k + 2].saturating_sub(prev[k + 2]));
            }
        }
        // Each tick adds what the rows that changed grew by: a million-flow table changes
        // a few thousand rows a tick, and the metrics keep no copy of any flow. A table
        // that does not follow the one seen last (another source) counts as all new.
        let table = snap.flows.read();
        let ch = table.changes();
        let follows = ch.generation == self.generation + 1;
        self.generation = ch.generation;
        let all: Vec<u32>;
        let added: &[u32] = if follows {
            &ch.added
        } else {
            all = table.rows().map(|(i, _)| i).collect();
            &all
        };
        let changed: &[(u32, FlowStats)] = if follows { &ch.changed } else { &[] };
        // Summed over the rows first: a counter's series is looked up once a tick, not once
        // a row (a first tick brings every row at once, two dozen series each).
        let mut grown = [[0u64; FIELDS]; 2];
        // A new flow's handshake counts now if its outcome is known, from the row in hand;
        // the others wait in `pending`, after those already there.
        let mut waiting = Vec::new();
        let rows = added
            .iter()
            .map(|i| (*i, None))
            .chain(changed.iter().map(|(i, b)| (*i, Some(b))));
        for (i, before) in rows {
            let Some(r) = table.row(i) else {
                continue;
            };
            for (sum, (d, _)) in grown.iter_mut().zip(DIRS) {
                let now = fields(&r.flow.state, d);
                let before = before.map_or([0; FIELDS], |b| fields(b, d));
                for k in 0..FIELDS {
                    sum[k] = sum[k].saturating_add(now[k].saturating_sub(before[k]));
                }
            }
            if before.is_none() && !self.handshake_known(snap, &r.flow) {
                waiting.push(FlowId::of(&r.flow));
            }
        }
        for (delta, (_, name)) in grown.into_iter().zip(DIRS) {
            if delta == [0; FIELDS] {
                continue;
            }
            let l = Dir { direction: name };
            self.packets.get_or_create(&l).inc_by(delta[0]);
            self.bytes.get_or_create(&l).inc_by(delta[1]);
            self.data_segments.get_or_create(&l).inc_by(delta[2]);
            for (k, kind) in [(3, "fast"), (4, "spurious"), (5, "other")] {
                self.retransmissions
                    .get_or_create(&Retx {
                        direction: name,
                        kind,
                    })
                    .inc_by(delta[k]);
            }
            self.dup_acks.get_or_create(&l).inc_by(delta[6]);
            self.out_of_order.get_or_create(&l).inc_by(delta[7]);
            self.lost_segments.get_or_create(&l).inc_by(delta[8]);
            self.zero_windows.get_or_create(&l).inc_by(delta[9]);
            for (k, suspect) in [(10, "false"), (11, "true")] {
                self.resets
                    .get_or_create(&Rst {
                        direction: name,
                        suspect_injected: suspect,
                    })
                    .inc_by(delta[k]);
            }
        }
        // Each connection's handshake outcome, once, when it is known (a timeout is known
        // by time alone); flows that left before are forgotten.
        for k in std::mem::take(&mut self.pending) {
            let Some(f) = table.find(&k).and_then(|i| table.row(i)).map(|r| &r.flow) else {
                continue;
            };
            if !self.handshake_known(snap, f) {
                self.pending.push(k);
            }
        }
        self.pending.append(&mut waiting);

        self.media.observe(&table);
        if let Some(c) = &snap.kernel_cost {
            let k = match &mut self.kernel {
                Some(k) => k,
                None => self
                    .kernel
                    .insert(KernelMetrics::register(&mut self.registry)),
            };
            k.observe(c);
        }
        let c = [
            snap.evicted_flows,
            snap.lost_flows,
            snap.counters.get(stats::EVENTS_LOST),
            snap.counters.get(stats::WATCHED),
        ];
        let counters = [
            &self.evicted,
            &self.lost_flows,
            &self.lost_events,
            &self.analysed,
        ];
        for (k, counter) in counters.into_iter().enumerate() {
            counter.inc_by(c[k].saturating_sub(self.prev_counters[k]));
        }
        for ((reason, idx), prev) in SKIPPED.iter().zip(&mut self.prev_skipped) {
            let now = snap.counters.get(*idx);
            self.skipped
                .get_or_create(&Reason { reason })
                .inc_by(now.saturating_sub(*prev));
            *prev = now;
        }
        self.prev_counters = self.prev_counters.map(|_| 0);
        for (k, v) in c.iter().enumerate() {
            self.prev_counters[k] = *v;
        }
        self.active_flows.set(table.len() as i64);
        self.active_sessions.set(snap.sessions as i64);
        for k in Kind::ALL {
            for l in [Level::Warning, Level::Critical] {
                let n = snap
                    .alerts
                    .iter()
                    .filter(|a| a.cleared_ns.is_none() && a.kind == k && a.severity == l)
                    .count();
                self.alerts
                    .get_or_create(&AlertLabels {
                        kind: k.name(),
                        severity: l.name(),
                    })
                    .set(n as i64);
            }
        }
        self.tick.set(snap.collect_ns as f64 / 1e9);
        if self.top_flows > 0 {
            self.worst_flows(&table);
        }
    }

    fn worst_flows(&self, table: &FlowTable) {
        self.worst.clear();
        let mut rated: Vec<(f64, u32, usize)> = table
            .rows()
            .flat_map(|(i, r)| {
                let h = &r.health;
                DIRS.iter()
                    .filter_map(move |(d, _)| h.retx_rate[*d].get().map(|r| (r, i, *d)))
            })
            .collect();
        rated.sort_by(|a, b| b.0.total_cmp(&a.0));
        for (r, i, d) in rated.into_iter().take(self.top_flows) {
            let Some(f) = table.row(i).map(|r| &r.flow) else {
                continue;
            };
            self.worst
                .get_or_create(&FlowLabels {
                    client: f.client().to_string(),
                    server: f.server().to_string(),
                    direction: DIRS[d].1,
                })
                .set(r);
        }
    }

    /// The OpenMetrics text exposition.
    pub fn openmetrics(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }

    /// The classic Prometheus text format (0.0.4), for scrapers that do not ask for
    /// OpenMetrics: counters are typed by their `_total` name, info metrics are gauges,
    /// and there is no `# UNIT` or `# EOF`.
    pub fn prometheus_text(&self) -> String {
        super::prometheus_text::of_openmetrics(&self.openmetrics())
    }
}

#[cfg(test)]
#[path = "metrics_tests.rs"]
mod tests;
