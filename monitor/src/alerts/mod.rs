//! The alert engine: on every tick, counters become rates (`history`), the rules judge each
//! flow (`rules`), flows group into sessions by remote host (`sessions`), and findings of a
//! session become alerts with a lifecycle: raised, escalated, cleared.
//!
//! Hysteresis: an alert clears only after its condition has been gone for `clear_after_s`,
//! and a rate must fall below `clear_ratio` of its threshold to count as gone, so a rate
//! hovering at the threshold does not flap.

pub mod config;
pub mod history;
pub mod rules;
pub mod sessions;

use std::collections::{BTreeMap, VecDeque};

// foldhash: several times faster than SipHash on our 48-byte keys, and seeded per map at
// random, so flows crafted to collide do not degrade the tick.
use foldhash::HashMap;

use monitor_common::{
    event::{self, Event},
    flow::{seen, FlowKey, C2S, S2C},
};
use serde::{Serialize, Serializer};
use serde_json::{Map, Value};

pub use config::AlertConfig;
use history::{FlowHistory, IdleClock, Point, Sample};
pub use rules::{Kind, Level};
pub use sessions::SessionId;

use crate::{
    shelf::{fit, Refill, Shelf},
    snapshot::{FlowRecord, OrderKey, RowChange, Snapshot, Walk},
};

/// A connection record across ticks: a reused 4-tuple is another record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FlowId {
    pub key: FlowKey,
    pub first_seen_ns: u64,
}

impl FlowId {
    pub fn of(f: &FlowRecord) -> Self {
        Self {
            key: f.key,
            first_seen_ns: f.state.first_seen_ns,
        }
    }
}

impl Serialize for Kind {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl Serialize for Level {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl Serialize for SessionId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// One alert of one session, with the evidence of its worst flow.
#[derive(Clone, Debug, Serialize)]
pub struct Alert {
    pub id: u64,
    pub kind: Kind,
    pub severity: Level,
    pub direction: Option<&'static str>,
    pub session: SessionId,
    /// The flow whose finding is the evidence (the worst one of the session).
    pub client: String,
    pub server: String,
    /// How many of the session's flows show the condition.
    pub flows: usize,
    pub since_ns: u64,
    pub changed_ns: u64,
    pub cleared_ns: Option<u64>,
    pub summary: String,
    pub evidence: Map<String, Value>,
    /// Whether the session still has a flow that works: a client that tried several
    /// candidate connections may not be affected at all.
    pub session_has_healthy_flow: bool,
    #[serde(skip)]
    pub flow_ids: Vec<FlowId>,
    #[serde(skip)]
    last_true_ns: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Change {
    Raised,
    Escalated,
    Cleared,
}

/// One step of an alert's lifecycle: what the alert log and `--headless` print.
#[derive(Clone, Debug, Serialize)]
pub struct Transition {
    #[serde(rename = "alert")]
    pub change: Change,
    pub ts_ns: u64,
    #[serde(flatten)]
    pub alert: Alert,
}

/// What the engine concluded about one flow at this tick (aligned with `Snapshot::flows`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FlowHealth {
    pub session: Option<SessionId>,
    /// The worst active finding (`None`: healthy).
    pub level: Option<Level>,
    /// Bytes per second over the latest tick.
    pub throughput: [f64; 2],
    /// Retransmitted share of data segments over the alert window (`None`: too few).
    pub retx_rate: [Option<f64>; 2],
    /// Time each side's receive window has been seen at zero, in total.
    pub zero_window_ns: [u64; 2],
    pub in_flight: [Option<u32>; 2],
    /// Ids of the active alerts this flow is part of.
    pub alerts: Vec<u64>,
    /// Zeek's conn.log history letters (shared with the engine: no copy per tick).
    pub history: std::sync::Arc<str>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct AlertKey {
    session: SessionId,
    kind: Kind,
    dir: Option<usize>,
}

/// Cleared alerts kept for the UI and the summary.
const RECENT_CLEARED: usize = 200;

pub struct AlertEngine {
    cfg: AlertConfig,
    /// Every flow of the last snapshot, in its order (client, server, first seen). A tick
    /// pairs them with the new snapshot's flows by position when the snapshot says how
    /// its rows follow from the last (see `aligned`), else by walking both: a hash table of
    /// a million flows cost a cache miss per lookup, half of a tick. Boxed: each tick
    /// rebuilds the list, moving a pointer per flow rather than its few hundred bytes.
    #[allow(clippy::vec_box)]
    flows: Vec<Box<Tracked>>,
    /// Their order keys, apart: the pairing walk reads only these, sequentially.
    orders: Vec<OrderKey>,
    /// The list before, written over with the next tick's keys (not a fresh 48 MB a tick
    /// at a million flows, faulted in page by page).
    spare_orders: Vec<OrderKey>,
    /// The health lists lent to the last snapshots, rewritten once they are let go.
    health_shelf: Shelf<FlowHealth>,
    sessions: sessions::Sessions,
    /// The samples idle flows' histories skip (see `history::IdleClock`).
    clock: IdleClock,
    /// Settled flows whose record did not change are not judged again (off only in the
    /// test that holds the shortcut to judging everything).
    skip_settled: bool,
    active: BTreeMap<AlertKey, Alert>,
    cleared: VecDeque<Alert>,
    next_id: u64,
}

fn ns(s: f64) -> u64 {
    (s * 1e9) as u64
}

impl AlertEngine {
    pub fn new(cfg: AlertConfig) -> Self {
        Self {
            cfg,
            flows: Vec::new(),
            orders: Vec::new(),
            spare_orders: Vec::new(),
            health_shelf: Shelf::default(),
            sessions: sessions::Sessions::default(),
            clock: IdleClock::default(),
            skip_settled: true,
            active: BTreeMap::new(),
            cleared: VecDeque::new(),
            next_id: 1,
        }
    }

    pub fn config(&self) -> &AlertConfig {
        &self.cfg
    }

    /// The sparkline points of one flow, oldest first. A scan: called for the one flow the
    /// UI shows in detail, once a tick.
    pub fn spark(&self, id: &FlowId) -> Vec<Point> {
        let window = ns(self.cfg.retransmit_window_s);
        self.flows
            .iter()
            .find(|t| t.id == *id)
            .map(|t| {
                let mut h = t.hist.clone();
                h.thaw(&self.clock, window);
                h.spark.iter().collect()
            })
            .unwrap_or_default()
    }

    /// Judges one snapshot: fills its `health` and `alerts`, returns the transitions.
    /// `events` are those drained since the previous tick.
    pub fn tick(&mut self, snap: &mut Snapshot, events: &[Event]) -> Vec<Transition> {
        let now = snap.now_ns;
        let cfg = self.cfg.clone();
        let mut hellos: HashMap<FlowKey, u64> = HashMap::default();
        for ev in events.iter().filter(|e| e.kind == event::CLIENT_HELLO) {
            hellos.entry(ev.key).or_insert(ev.ts_ns);
        }
        let n = snap.flows.len();
        let mut rows = Rows {
            health: Refill::new(self.health_shelf.take(), n),
            works: Vec::with_capacity(n),
            slots: Vec::with_capacity(n),
            missed: Vec::new(),
        };
        let mut findings: BTreeMap<AlertKey, Vec<(usize, rules::Finding)>> = BTreeMap::new();
        let skip_settled = self.skip_settled;
        let clock = &self.clock;
        let mut judge = |t: &mut Tracked, i: usize, sessions: &mut sessions::Sessions| {
            let f = &snap.flows[i];
            t.settled &= skip_settled;
            let hello = hellos.get(&f.key).copied();
            let found = t.judge(&cfg, f, now, hello, sessions, clock);
            let (h, ok) = t.health(&cfg, f, now, &found);
            collect(&mut findings, t.session, i, found);
            (h, ok)
        };
        // Known flows first, paired with their state; new ones then join sessions in the
        // order they started.
        let mut old: Vec<Option<Box<Tracked>>> = std::mem::take(&mut self.flows)
            .into_iter()
            .map(Some)
            .collect();
        let mut orders = fit(std::mem::take(&mut self.spare_orders), n);
        orders.clear();
        // Each flow's state is a few scattered heap blocks, a cache miss each: fetched a
        // few flows ahead, the state first, then (once it is in cache) its buffers.
        let prefetch = |old: &[Option<Box<Tracked>>], at: usize| {
            if let Some(Some(t)) = old.get(at + 16) {
                history::prefetch_block(&**t);
            }
            if let Some(Some(t)) = old.get(at + 8) {
                if !t.hist.is_frozen() {
                    t.hist.prefetch();
                }
            }
        };
        let mut spare = Default::default();
        if let Some(changed) = self.aligned(snap) {
            // The snapshot says which rows changed and which are new, and no row left: the
            // rows are the last tick's in order. A row whose record did not change and
            // whose flow is idle is not read at all (its health is the flow's own).
            let mut changed = changed.iter().peekable();
            let mut j = 0;
            for (i, f) in snap.flows.iter().enumerate() {
                prefetch(&old, j);
                let (record_changed, new) = match changed.next_if(|c| c.row == i) {
                    Some(c) => (true, c.before.is_none()),
                    None => (false, false),
                };
                let known = if new {
                    None
                } else {
                    j += 1;
                    old.get_mut(j - 1).and_then(Option::take)
                };
                let Some(mut t) = known else {
                    orders.push(OrderKey::of(f));
                    rows.unpaired(i);
                    continue;
                };
                orders.push(self.orders[j - 1]);
                let judged = if !record_changed && t.idle(&hellos) {
                    (t.idle_health(), t.idle_works(&cfg, now))
                } else {
                    judge(&mut t, i, &mut self.sessions)
                };
                rows.paired(t, judged);
            }
        } else {
            // Paired with their state by walking the last tick's order keys as the rows go
            // (each record is read once, for its key and its judging).
            let mut walk = Walk::new(&self.orders);
            for (i, f) in snap.flows.iter().enumerate() {
                prefetch(&old, walk.position());
                let k = OrderKey::of(f);
                orders.push(k);
                match walk.step(&k).and_then(|j| old[j].take()) {
                    Some(mut t) => {
                        let judged = judge(&mut t, i, &mut self.sessions);
                        rows.paired(t, judged);
                    }
                    None => rows.unpaired(i),
                }
            }
            if !rows.missed.is_empty() {
                spare = walk.spare();
            }
        }
        let Rows {
            health,
            mut works,
            mut slots,
            missed,
        } = rows;
        let mut health = health.finish();
        // What was not paired is new, or known from a list out of order: looked up.
        let mut fresh = Vec::new();
        for i in missed {
            match spare.get(&orders[i]).and_then(|&j| old[j].take()) {
                Some(mut t) => {
                    (health[i], works[i]) = judge(&mut t, i, &mut self.sessions);
                    slots[i] = Some(t);
                }
                None => fresh.push(i),
            }
        }
        drop((old, spare));
        fresh.sort_by_key(|&i| snap.flows[i].state.first_seen_ns);
        for i in fresh {
            let f = &snap.flows[i];
            let st = &f.state;
            let session = self.sessions.join(
                st.first_seen_ns,
                f.client().ip(),
                st.last_seen_ns,
                ns(cfg.session_window_s),
            );
            let mut t = Box::new(Tracked {
                id: FlowId::of(f),
                hist: FlowHistory::default(),
                session,
                mark: None,
                settled: false,
                in_flight: [None; 2],
                closed: false,
            });
            (health[i], works[i]) = judge(&mut t, i, &mut self.sessions);
            slots[i] = Some(t);
        }
        // Every slot is filled: the known flows carried, the new ones just judged.
        self.flows = slots.into_iter().flatten().collect();
        self.spare_orders = std::mem::replace(&mut self.orders, orders);
        // Whether a session still has a working flow matters only where something is wrong.
        let mut session_ok: HashMap<SessionId, bool> = findings
            .keys()
            .map(|k| k.session)
            .chain(self.active.keys().map(|k| k.session))
            .map(|s| (s, false))
            .collect();
        if !session_ok.is_empty() {
            for (h, ok) in health.iter().zip(&works) {
                if let (true, Some(s)) = (*ok, h.session) {
                    if let Some(v) = session_ok.get_mut(&s) {
                        *v = true;
                    }
                }
            }
        }

        let mut out = Vec::new();
        for (key, mut list) in findings {
            // In row order, however the flows came to be judged: ties go to the last row.
            list.sort_by_key(|(i, _)| *i);
            let Some((wi, worst)) = list.iter().max_by_key(|(_, x)| x.level) else {
                continue;
            };
            let flow = &snap.flows[*wi];
            let ids: Vec<FlowId> = list
                .iter()
                .filter(|(_, x)| x.level >= Level::Warning)
                .map(|(i, _)| FlowId::of(&snap.flows[*i]))
                .collect();
            let healthy = session_ok.get(&key.session).copied().unwrap_or(false);
            match self.active.get_mut(&key) {
                Some(a) => {
                    a.last_true_ns = now;
                    a.session_has_healthy_flow = healthy;
                    if worst.level >= Level::Warning {
                        a.summary = worst.summary.clone();
                        a.evidence = worst.evidence.clone();
                        a.client = flow.client().to_string();
                        a.server = flow.server().to_string();
                        a.flows = ids.len();
                        a.flow_ids = ids;
                    }
                    if worst.level > a.severity {
                        a.severity = worst.level;
                        a.changed_ns = now;
                        out.push(Transition {
                            change: Change::Escalated,
                            ts_ns: now,
                            alert: a.clone(),
                        });
                    }
                }
                None if worst.level >= Level::Warning => {
                    let a = Alert {
                        id: self.next_id,
                        kind: key.kind,
                        severity: worst.level,
                        direction: key.dir.map(rules::dir_name),
                        session: key.session,
                        client: flow.client().to_string(),
                        server: flow.server().to_string(),
                        flows: ids.len(),
                        since_ns: now,
                        changed_ns: now,
                        cleared_ns: None,
                        summary: worst.summary.clone(),
                        evidence: worst.evidence.clone(),
                        session_has_healthy_flow: healthy,
                        flow_ids: ids,
                        last_true_ns: now,
                    };
                    self.next_id += 1;
                    out.push(Transition {
                        change: Change::Raised,
                        ts_ns: now,
                        alert: a.clone(),
                    });
                    self.active.insert(key, a);
                }
                None => {}
            }
        }
        let clear_after = ns(cfg.clear_after_s);
        let done: Vec<AlertKey> = self
            .active
            .iter()
            .filter(|(_, a)| {
                now.saturating_sub(a.last_true_ns) >= clear_after && a.last_true_ns != now
            })
            .map(|(k, _)| *k)
            .collect();
        for key in done {
            if let Some(mut a) = self.active.remove(&key) {
                a.cleared_ns = Some(now);
                a.changed_ns = now;
                a.session_has_healthy_flow = session_ok.get(&key.session).copied().unwrap_or(false);
                out.push(Transition {
                    change: Change::Cleared,
                    ts_ns: now,
                    alert: a.clone(),
                });
                if self.cleared.len() == RECENT_CLEARED {
                    self.cleared.pop_front();
                }
                self.cleared.push_back(a);
            }
        }
        // Which active alerts each flow is part of (`self.flows` is in snapshot order now).
        let mut part_of: HashMap<FlowId, Vec<u64>> = HashMap::default();
        for a in self.active.values() {
            for id in &a.flow_ids {
                part_of.entry(*id).or_default().push(a.id);
            }
        }
        if !part_of.is_empty() {
            for (t, h) in self.flows.iter().zip(health.iter_mut()) {
                if let Some(ids) = part_of.get(&t.id) {
                    h.alerts.extend_from_slice(ids);
                }
            }
        }
        snap.health = self.health_shelf.lend(health);
        self.clock.advance(now, ns(cfg.retransmit_window_s));
        snap.alerts = self.alerts();
        snap.judged = true;
        snap.handshake_timeout_ns = ns(cfg.handshake_timeout_s);
        out
    }

    /// The snapshot's changed rows, when they say how its rows follow from the last
    /// snapshot's: every row not listed new was a row of it, in the same order (no row
    /// left). Checked on a sample of rows, so a snapshot from elsewhere is not taken for
    /// the next one; `None`: pair the rows by walking.
    fn aligned<'a>(&self, snap: &'a Snapshot) -> Option<&'a [RowChange]> {
        let changed = snap.changed.as_deref()?;
        let new: Vec<usize> = changed
            .iter()
            .filter(|c| c.before.is_none())
            .map(|c| c.row)
            .collect();
        let n = snap.flows.len();
        if n != self.orders.len() + new.len() {
            return None;
        }
        let same = (0..n)
            .step_by(1024)
            .chain(n.checked_sub(1))
            .filter(|i| new.binary_search(i).is_err())
            .all(|i| {
                let j = i - new.partition_point(|&r| r < i);
                self.orders.get(j) == Some(&OrderKey::of(&snap.flows[i]))
            });
        same.then_some(changed)
    }

    /// Active alerts (worst first), then the recently cleared (newest first).
    pub fn alerts(&self) -> Vec<Alert> {
        let mut active: Vec<Alert> = self.active.values().cloned().collect();
        active.sort_by(|a, b| {
            b.severity
                .cmp(&a.severity)
                .then(a.since_ns.cmp(&b.since_ns))
        });
        active.extend(self.cleared.iter().rev().cloned());
        active
    }
}

/// A tick's rows as they are paired, in row order: health is written over the recycled
/// list (no default-filled copy of a million first); a row not paired yet holds a
/// placeholder until it is judged after the walk.
struct Rows {
    health: Refill<FlowHealth>,
    works: Vec<bool>,
    #[allow(clippy::vec_box)]
    slots: Vec<Option<Box<Tracked>>>,
    missed: Vec<usize>,
}

impl Rows {
    fn paired(&mut self, t: Box<Tracked>, (health, works): (FlowHealth, bool)) {
        self.health.push(health);
        self.works.push(works);
        self.slots.push(Some(t));
    }

    fn unpaired(&mut self, row: usize) {
        self.health.push(FlowHealth::default());
        self.works.push(false);
        self.slots.push(None);
        self.missed.push(row);
    }
}

/// What the engine keeps of one flow between ticks.
struct Tracked {
    id: FlowId,
    hist: FlowHistory,
    /// The session the flow joined when first seen.
    session: SessionId,
    /// The record when last judged: time of its last packet, packets each way, `seen` bits.
    mark: Option<(u64, [u64; 2], u16)>,
    /// The rules found nothing when last judged and time alone cannot change that: while
    /// the record stays as it was, judging it again would find nothing. Most flows of a big
    /// table are in this state, and skipping them is what keeps a tick short.
    settled: bool,
    /// What the flow's health took from its record when last computed: an idle flow's
    /// record stands, and its health is rebuilt without reading it (see `idle_health`).
    in_flight: [Option<u32>; 2],
    /// Whether either side sent a FIN or a reset.
    closed: bool,
}

impl Tracked {
    /// This tick's findings for the flow.
    fn judge(
        &mut self,
        cfg: &AlertConfig,
        f: &FlowRecord,
        now: u64,
        hello: Option<u64>,
        sessions: &mut sessions::Sessions,
        clock: &IdleClock,
    ) -> Vec<rules::Finding> {
        let st = &f.state;
        let window = ns(cfg.retransmit_window_s);
        let mark = Some((
            st.last_seen_ns,
            [st.dir[C2S].packets, st.dir[S2C].packets],
            st.seen,
        ));
        if self.settled && hello.is_none() && mark == self.mark {
            // Same counters as before: the sample only moves the rate window on, and once
            // the window holds nothing else, the idle clock takes the samples for it.
            if !self.hist.is_frozen() {
                let s = Sample::of(st, now);
                if !self.hist.freeze(&s, clock) {
                    self.hist.push(s, window);
                }
            }
            return Vec::new();
        }
        self.hist.thaw(clock, window);
        sessions.touch(f.client().ip(), st.last_seen_ns);
        observe(&mut self.hist, st, now, hello, window);
        let found = rules::evaluate(cfg, st, &self.hist, now);
        self.settled = found.is_empty() && !rules::time_may_raise(st, &self.hist);
        self.mark = mark;
        found
    }

    /// Whether the flow need not be looked at this tick, its record being as it was: it
    /// is settled, its history frozen, and no ClientHello event came for it.
    fn idle(&self, hellos: &HashMap<FlowKey, u64>) -> bool {
        self.settled && self.hist.is_frozen() && !hellos.contains_key(&self.id.key)
    }

    /// [`Tracked::health`] of an idle flow, without its record: nothing found, nothing
    /// moved, the rest as the record gave it when last read.
    fn idle_health(&self) -> FlowHealth {
        FlowHealth {
            session: Some(self.session),
            level: None,
            throughput: [0.0; 2],
            retx_rate: [None; 2],
            zero_window_ns: self.hist.zero_total_ns,
            in_flight: self.in_flight,
            alerts: Vec::new(),
            history: self.hist.zeek_shared.clone(),
        }
    }

    /// Whether an idle flow counts as a working flow of its session (see `health`).
    fn idle_works(&self, cfg: &AlertConfig, now: u64) -> bool {
        self.mark.is_some_and(|(last_seen_ns, _, seen)| {
            seen & (seen::ESTABLISHED | seen::MIDSTREAM) != 0
                && !self.closed
                && now.saturating_sub(last_seen_ns) < ns(cfg.session_window_s)
        })
    }

    /// The flow's health for the snapshot, and whether it counts as a working flow of its
    /// session.
    fn health(
        &mut self,
        cfg: &AlertConfig,
        f: &FlowRecord,
        now: u64,
        found: &[rules::Finding],
    ) -> (FlowHealth, bool) {
        let (st, h) = (&f.state, &self.hist);
        let level = found
            .iter()
            .map(|x| x.level)
            .filter(|l| *l >= Level::Warning)
            .max();
        self.closed = st.dir.iter().any(|d| d.fins > 0 || d.rsts > 0);
        self.in_flight = [rules::in_flight(st, C2S), rules::in_flight(st, S2C)];
        let works = st.seen & (seen::ESTABLISHED | seen::MIDSTREAM) != 0
            && !self.closed
            && level.is_none()
            && now.saturating_sub(st.last_seen_ns) < ns(cfg.session_window_s);
        // A frozen history's counters stand over the window: nothing moved, no rate.
        let (throughput, retx_rate) = if h.is_frozen() {
            ([0.0; 2], [None; 2])
        } else {
            (
                h.current_throughput(),
                h.window_rates(cfg.retransmit_min_segments)
                    .map(|r| r.map(|r| r.ratio)),
            )
        };
        let health = FlowHealth {
            session: Some(self.session),
            level,
            throughput,
            retx_rate,
            zero_window_ns: h.zero_total_ns,
            in_flight: self.in_flight,
            alerts: Vec::new(),
            history: h.zeek_shared.clone(),
        };
        (health, works)
    }
}

/// Files a flow's findings under the alert they belong to.
fn collect(
    findings: &mut BTreeMap<AlertKey, Vec<(usize, rules::Finding)>>,
    session: SessionId,
    index: usize,
    found: Vec<rules::Finding>,
) {
    for x in found {
        let key = AlertKey {
            session,
            kind: x.kind,
            dir: x.dir,
        };
        findings.entry(key).or_default().push((index, x));
    }
}

/// Updates a flow's history with this tick's record.
fn observe(
    h: &mut FlowHistory,
    st: &monitor_common::flow::FlowState,
    now: u64,
    hello_ns: Option<u64>,
    window_ns: u64,
) {
    let first = h.latest().is_none();
    let prev_ts = h.latest().map(|s| s.ts_ns);
    h.push(Sample::of(st, now), window_ns);
    for d in [C2S, S2C] {
        // The window a side advertised last is zero: keep the time it was first seen so.
        let zero = st.tcp.dir[d].window_p1 == 1;
        match (zero, h.zero_since_ns[d]) {
            (true, None) => h.zero_since_ns[d] = Some(now),
            (false, Some(_)) => h.zero_since_ns[d] = None,
            _ => {}
        }
        if zero {
            if let Some(p) = prev_ts {
                h.zero_total_ns[d] += now.saturating_sub(p);
            }
        }
        if first || st.acked_ns[d] != h.progress_mark_ns[d] {
            h.progress_mark_ns[d] = st.acked_ns[d];
            h.retx_at_progress[d] = st.dir[d].retransmits as u64;
        }
    }
    h.update_zeek(st);
    if h.client_hello_ns.is_none() && st.seen & seen::CLIENT_HELLO != 0 {
        h.client_hello_ns = Some(hello_ns.unwrap_or(now));
    }
}

#[cfg(test)]
mod tests;
