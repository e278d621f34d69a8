//! The alert engine: on every tick, counters become rates (`history`), the rules judge each
//! flow (`rules`), flows group into sessions by remote host (`sessions`), and findings of a
//! session become alerts with a lifecycle: raised, escalated, cleared. Many sessions failing
//! the same way toward one server become one alert about that server (`rollup`).
//!
//! Hysteresis: an alert clears only after its condition has been gone for `clear_after_s`,
//! and a rate must fall below `clear_ratio` of its threshold to count as gone, so a rate
//! hovering at the threshold does not flap.

pub mod config;
pub mod history;
mod rollup;
pub mod rules;
pub mod sessions;

use std::{
    cmp::Reverse,
    collections::{BTreeMap, BinaryHeap, VecDeque},
};

// foldhash: several times faster than SipHash on our 48-byte keys, and seeded per map at
// random, so flows crafted to collide do not degrade the tick.
use foldhash::HashMap;

use monitor_common::{
    event::{Event, EventKind},
    flow::{seen, FlowKey, C2S, S2C},
};
use serde::Serialize;

pub use config::AlertConfig;
use history::{FlowHistory, IdleClock, Sample};

use crate::{
    footprint::Footprint,
    model::{Alert, FlowHealth, FlowId, FlowRecord, Kind, Level, Point, Scope, SessionId},
    shelf::{fit, insert_rows, Lent, Refill},
    snapshot::{OrderKey, RowChange, Snapshot, Walk},
};

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

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
struct AlertKey {
    scope: Scope,
    kind: Kind,
    dir: Option<usize>,
}

/// Cleared alerts kept for the UI and the summary.
const RECENT_CLEARED: usize = 200;

pub struct AlertEngine {
    cfg: AlertConfig,
    /// Every flow of the last snapshot, in its order (client, server, first seen). When
    /// the snapshot says how its rows follow from the last (see `aligned`), new flows are
    /// inserted and only the flows that changed or are not idle yet are looked at; else
    /// the rows are paired by walking both lists: a hash table lookup per flow is a cache
    /// miss each. Boxed: inserting or rebuilding moves a
    /// pointer per flow rather than its few hundred bytes.
    #[allow(clippy::vec_box)]
    flows: Vec<Box<Tracked>>,
    /// Their order keys, apart: the pairing walk reads only these, sequentially.
    orders: Vec<OrderKey>,
    /// The list before, written over by the next tick that pairs by walking (not a fresh
    /// list of every flow, faulted in page by page); let go by ticks that edit.
    spare_orders: Vec<OrderKey>,
    /// Whether `orders` is sorted (the snapshot was in order): rows are then found by
    /// binary search.
    sorted: bool,
    /// When frozen flows must be judged again (their window's oldest counters leave it),
    /// by order key; an entry whose flow was judged since is only a spare judging.
    wakes: BinaryHeap<Reverse<(u64, OrderKey)>>,
    /// Per row: what the sessions' working flows are counted from.
    brief: Vec<Brief>,
    /// Rows whose flow was not idle after the last tick (ascending): a tick judges them
    /// besides those whose record changed.
    awake: Vec<usize>,
    /// Rows whose health lists active alerts (ascending).
    alerted: Vec<usize>,
    /// The health lists lent to the last snapshots, edited or rewritten for the next.
    health: Lent<FlowHealth>,
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
            sorted: true,
            wakes: BinaryHeap::new(),
            brief: Vec::new(),
            awake: Vec::new(),
            alerted: Vec::new(),
            health: Lent::default(),
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

    /// What the engine holds for its flows, by holder (the benchmark's account of
    /// resident memory).
    pub fn footprint(&self) -> Footprint {
        use crate::footprint::{block, buffer};
        let state = self.flows.len() as u64 * block(std::mem::size_of::<Tracked>())
            + buffer::<Box<Tracked>>(self.flows.capacity());
        let histories = self.flows.iter().map(|t| t.hist.heap_bytes()).sum();
        let lists = buffer::<OrderKey>(self.orders.capacity())
            + buffer::<OrderKey>(self.spare_orders.capacity())
            + buffer::<Brief>(self.brief.capacity())
            + buffer::<usize>(self.awake.capacity() + self.alerted.capacity())
            + buffer::<Reverse<(u64, OrderKey)>>(self.wakes.capacity());
        vec![
            ("flow state", state),
            ("flow histories' buffers", histories),
            ("engine's per-row lists", lists),
            ("health lists (lent and spare)", self.health.bytes()),
        ]
    }

    /// The sparkline points of one flow, oldest first (the one the UI shows in detail).
    pub fn spark(&self, id: &FlowId) -> Vec<Point> {
        let window = ns(self.cfg.retransmit_window_s);
        self.rows_of(id)
            .next()
            .map(|row| {
                let t = &self.flows[row];
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
        for ev in events
            .iter()
            .filter(|e| e.kind() == Some(EventKind::ClientHello))
        {
            hellos.entry(ev.key).or_insert(ev.ts_ns);
        }
        let mut judging = Judging {
            cfg: &cfg,
            clock: self.clock.clone(),
            hellos: &hellos,
            now,
            skip_settled: self.skip_settled,
            findings: Findings::new(),
            wakes: Vec::new(),
            awake: Vec::new(),
        };
        let written = match self.aligned(snap) {
            Some(changed) => self.judge_changed(snap, changed, &mut judging),
            None => Written::Whole(self.judge_all(snap, &mut judging)),
        };
        let mut findings = judging.findings;
        // Whether a session still has a working flow matters only where something is wrong.
        let session_of = |k: &AlertKey| match k.scope {
            Scope::Session(s) => Some(s),
            Scope::Server(_) => None,
        };
        let mut session_ok: HashMap<SessionId, bool> = findings
            .keys()
            .chain(self.active.keys())
            .filter_map(session_of)
            .map(|s| (s, false))
            .collect();
        if !session_ok.is_empty() {
            let window = ns(cfg.session_window_s);
            for b in self.brief.iter().filter(|b| b.works(now, window)) {
                if let Some(v) = b.session.and_then(|s| session_ok.get_mut(&s)) {
                    *v = true;
                }
            }
        }

        let covered = rollup::fold(
            &mut findings,
            &snap.flows,
            cfg.rollup_above as usize,
            &self.active,
        );
        let taken_over = rollup::taken_over(&covered, &findings, &self.active);
        let mut out = Vec::new();
        for (key, mut list) in findings {
            // In row order, however the flows came to be judged: ties go to the last row.
            list.sort_by_key(|(i, _)| *i);
            let Some((wi, worst)) = list.iter().max_by_key(|(_, x)| x.level) else {
                continue;
            };
            let flow = &snap.flows[*wi];
            let raising = || list.iter().filter(|(_, x)| x.level >= Level::Warning);
            let ids: Vec<FlowId> = raising()
                .map(|(i, _)| FlowId::of(&snap.flows[*i]))
                .collect();
            let ok = |s: &SessionId| session_ok.get(s).copied().unwrap_or(false);
            let (healthy, summary, evidence) = match (key.scope, covered.get(&key)) {
                (Scope::Server(server), Some(c)) => {
                    let sessions = c.sessions_of(raising().map(|(i, _)| *i));
                    let mut evidence = worst.evidence.clone();
                    evidence.insert("sessions".into(), sessions.len().into());
                    if let Some(s) = c.session_of(*wi) {
                        evidence.insert("worst_session".into(), s.to_string().into());
                    }
                    let summary = format!(
                        "{} sessions toward {server}: {}",
                        sessions.len(),
                        worst.summary
                    );
                    (c.sessions().any(|s| ok(&s)), summary, evidence)
                }
                _ => (
                    session_of(&key).is_some_and(|s| ok(&s)),
                    worst.summary.clone(),
                    worst.evidence.clone(),
                ),
            };
            match self.active.get_mut(&key) {
                Some(a) => {
                    a.last_true_ns = now;
                    a.session_has_healthy_flow = healthy;
                    if worst.level >= Level::Warning {
                        a.summary = summary;
                        a.evidence = evidence;
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
                        session: key.scope,
                        client: flow.client().to_string(),
                        server: flow.server().to_string(),
                        flows: ids.len(),
                        since_ns: now,
                        changed_ns: now,
                        cleared_ns: None,
                        summary,
                        evidence,
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
        let mut done: Vec<(AlertKey, Option<Scope>)> = self
            .active
            .iter()
            .filter(|(_, a)| {
                now.saturating_sub(a.last_true_ns) >= clear_after && a.last_true_ns != now
            })
            .map(|(k, _)| (*k, None))
            .collect();
        done.extend(taken_over.into_iter().map(|(k, into)| (k, Some(into))));
        done.sort_unstable();
        done.dedup_by_key(|(k, _)| *k);
        for (key, into) in done {
            if let Some(mut a) = self.active.remove(&key) {
                a.cleared_ns = Some(now);
                a.changed_ns = now;
                if let Some(s) = session_of(&key) {
                    a.session_has_healthy_flow = session_ok.get(&s).copied().unwrap_or(false);
                }
                if let Some(into) = into {
                    a.evidence
                        .insert("rolled_up_into".into(), into.to_string().into());
                }
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
        // Which active alerts each flow is part of, by row (in the active alerts' order).
        let mut part_of: Vec<(usize, u64)> = Vec::new();
        for a in self.active.values() {
            for id in &a.flow_ids {
                part_of.extend(self.rows_of(id).map(|row| (row, a.id)));
            }
        }
        part_of.sort_by_key(|(row, _)| *row);
        let alerted: Vec<usize> = part_of.iter().map(|(row, _)| *row).collect();
        snap.health = match written {
            Written::Whole(mut health) => {
                for &(row, id) in &part_of {
                    health[row].alerts.push(id);
                }
                self.health.lend(health)
            }
            Written::Rows { inserted, mut rows } => {
                // Rows that leave an alert or join one are written too (idle ones as such).
                rows.sort_by_key(|(row, _)| *row);
                let mut more: Vec<usize> = self.alerted.iter().chain(&alerted).copied().collect();
                more.sort_unstable();
                more.dedup();
                more.retain(|row| rows.binary_search_by_key(row, |(r, _)| *r).is_err());
                if !more.is_empty() {
                    rows.extend(
                        more.iter()
                            .map(|&row| (row, self.flows[row].idle_health(&cfg, &snap.flows[row]))),
                    );
                    rows.sort_by_key(|(row, _)| *row);
                }
                for &(row, id) in &part_of {
                    if let Ok(k) = rows.binary_search_by_key(&row, |(r, _)| *r) {
                        rows[k].1.alerts.push(id);
                    }
                }
                self.health.lend_edited(inserted, rows)
            }
        };
        self.alerted = alerted;
        self.alerted.dedup();
        debug_assert_eq!(snap.health.len(), snap.flows.len());
        debug_assert_eq!(self.flows.len(), snap.flows.len());
        debug_assert_eq!(self.brief.len(), snap.flows.len());
        self.clock.advance(now, ns(cfg.retransmit_window_s));
        snap.alerts = self.alerts();
        snap.judged = true;
        snap.handshake_timeout_ns = ns(cfg.handshake_timeout_s);
        out
    }

    /// The rows of the flow `id`: found by its order key in either role, or by a scan
    /// when the last snapshot was not in order.
    fn rows_of<'a>(&'a self, id: &'a FlowId) -> impl Iterator<Item = usize> + 'a {
        let by_key = self.sorted.then(|| {
            [true, false].into_iter().filter_map(|client_is_a| {
                let k = OrderKey::parts(&id.key, client_is_a, id.first_seen_ns);
                self.orders.binary_search(&k).ok()
            })
        });
        let scan = (!self.sorted).then_some(0..self.flows.len());
        by_key
            .into_iter()
            .flatten()
            .chain(scan.into_iter().flatten())
            .filter(move |&row| self.flows[row].id == *id)
    }

    /// Judges the flows whose record changed, the new ones and those not idle yet, the
    /// rows being the last tick's with the new ones inserted (see `aligned`): an idle flow
    /// is not looked at, and its health row stays as it was.
    fn judge_changed(
        &mut self,
        snap: &Snapshot,
        changed: &[RowChange],
        judging: &mut Judging,
    ) -> Written {
        let now = snap.now_ns;
        let inserted: Vec<usize> = changed
            .iter()
            .filter(|c| c.before.is_none())
            .map(|c| c.row)
            .collect();
        // Last tick's rows not idle yet, where they are now, and the rows whose record
        // changed. A ClientHello event comes for a flow whose record changes: the event
        // alone (its record's change read at the tick before or after) changes nothing.
        let mut due = std::mem::take(&mut self.awake);
        shift(&mut due, &inserted);
        shift(&mut self.alerted, &inserted);
        due.extend(changed.iter().filter(|c| c.before.is_some()).map(|c| c.row));
        let new_orders = inserted.iter().map(|&i| OrderKey::of(&snap.flows[i]));
        insert_rows(&mut self.orders, &inserted, new_orders.collect());
        // Only a tick that pairs by walking writes a new list (one key per flow).
        self.spare_orders = Vec::new();
        // And frozen flows whose window's oldest counters leave it now (found by order
        // key: a flow judged since may have frozen again, and is judged once more).
        while let Some(Reverse((_, k))) = self.wakes.peek().filter(|Reverse((w, _))| *w <= now) {
            if let Ok(row) = self.orders.binary_search(k) {
                if inserted.binary_search(&row).is_err() {
                    due.push(row);
                }
            }
            self.wakes.pop();
        }
        due.sort_unstable();
        due.dedup();
        let mut rows = Vec::with_capacity(due.len() + inserted.len());
        // A due row's flow, at its place in the last tick's rows (before the new ones).
        let place = |i: usize| i - inserted.partition_point(|&r| r < i);
        for (k, &i) in due.iter().enumerate() {
            // Scattered rows: their state, record and buffers fetched a few rows ahead.
            if let Some(&i) = due.get(k + 16) {
                history::prefetch_block(&*self.flows[place(i)]);
                history::prefetch_block(&snap.flows[i]);
            }
            if let Some(&i) = due.get(k + 8) {
                self.flows[place(i)].hist.prefetch();
            }
            let j = place(i);
            let (h, brief) = judging.row(&mut self.flows[j], i, &snap.flows[i], &mut self.sessions);
            self.brief[j] = brief;
            rows.push((i, h));
        }
        // New flows join sessions in the order they started.
        let mut fresh: Vec<(usize, Box<Tracked>, Brief)> = Vec::with_capacity(inserted.len());
        let mut by_start = inserted.clone();
        by_start.sort_by_key(|&i| snap.flows[i].state.first_seen_ns);
        for i in by_start {
            let f = &snap.flows[i];
            let mut t = track(&mut self.sessions, judging.cfg, f);
            let (h, brief) = judging.row(&mut t, i, f, &mut self.sessions);
            rows.push((i, h));
            fresh.push((i, t, brief));
        }
        fresh.sort_by_key(|(i, _, _)| *i);
        let (boxes, briefs) = fresh.into_iter().map(|(_, t, b)| (t, b)).unzip();
        insert_rows(&mut self.flows, &inserted, boxes);
        insert_rows(&mut self.brief, &inserted, briefs);
        self.awake = judging.finish(&self.orders, &mut self.wakes);
        Written::Rows { inserted, rows }
    }

    /// Judges every flow, pairing the rows with the last tick's flows by walking both.
    fn judge_all(&mut self, snap: &Snapshot, judging: &mut Judging) -> Vec<FlowHealth> {
        let n = snap.flows.len();
        let mut rows = Rows {
            health: Refill::new(self.health.take(), n),
            brief: Vec::with_capacity(n),
            slots: Vec::with_capacity(n),
            missed: Vec::new(),
        };
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
        // Every flow is judged: a frozen one whose wake time came thaws on its own.
        while self
            .wakes
            .peek()
            .is_some_and(|Reverse((w, _))| *w <= judging.now)
        {
            self.wakes.pop();
        }
        // Paired with their state by walking the last tick's order keys as the rows go
        // (each record is read once, for its key and its judging).
        let mut walk = Walk::new(&self.orders);
        for (i, f) in snap.flows.iter().enumerate() {
            prefetch(&old, walk.position());
            let k = OrderKey::of(f);
            orders.push(k);
            match walk.step(&k).and_then(|j| old[j].take()) {
                Some(mut t) => {
                    let judged = judging.row(&mut t, i, f, &mut self.sessions);
                    rows.paired(t, judged);
                }
                None => rows.unpaired(i),
            }
        }
        let spare = if rows.missed.is_empty() {
            Default::default()
        } else {
            walk.spare()
        };
        let Rows {
            health,
            mut brief,
            mut slots,
            missed,
        } = rows;
        let mut health = health.finish();
        // What was not paired is new, or known from a list out of order: looked up.
        let mut fresh = Vec::new();
        for i in missed {
            let Some(mut t) = spare.get(&orders[i]).and_then(|&j| old[j].take()) else {
                fresh.push(i);
                continue;
            };
            (health[i], brief[i]) = judging.row(&mut t, i, &snap.flows[i], &mut self.sessions);
            slots[i] = Some(t);
        }
        drop((old, spare));
        // New flows join sessions in the order they started.
        fresh.sort_by_key(|&i| snap.flows[i].state.first_seen_ns);
        for i in fresh {
            let f = &snap.flows[i];
            let mut t = track(&mut self.sessions, judging.cfg, f);
            (health[i], brief[i]) = judging.row(&mut t, i, f, &mut self.sessions);
            slots[i] = Some(t);
        }
        // Every slot is filled: the known flows carried, the new ones just judged.
        self.flows = slots.into_iter().flatten().collect();
        self.awake = judging.finish(&orders, &mut self.wakes);
        self.sorted = orders.is_sorted();
        self.spare_orders = std::mem::replace(&mut self.orders, orders);
        self.brief = brief;
        health
    }

    /// The snapshot's changed rows, when they say how its rows follow from the last
    /// snapshot's: every row not listed new was a row of it, in the same order (no row
    /// left). Checked on a sample of rows, so a snapshot from elsewhere is not taken for
    /// the next one; `None`: pair the rows by walking.
    fn aligned<'a>(&self, snap: &'a Snapshot) -> Option<&'a [RowChange]> {
        let changed = snap.changed.as_deref().filter(|_| self.sorted)?;
        let new: Vec<usize> = changed
            .iter()
            .filter(|c| c.before.is_none())
            .map(|c| c.row)
            .collect();
        let n = snap.flows.len();
        // Most rows new (the first tick): one walk building every list costs less than
        // inserting them, and judges them all anyway.
        if n != self.orders.len() + new.len() || new.len() > n / 4 {
            return None;
        }
        // New rows in order with their neighbours: the order keys stay sorted.
        let key = |i: usize| OrderKey::of(&snap.flows[i]);
        let in_order = new.iter().all(|&i| {
            let k = key(i);
            (i == 0 || key(i - 1) < k) && (i + 1 == n || k < key(i + 1))
        });
        if !in_order {
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

/// Findings of the flows, by the alert they belong to, with the row of each.
type Findings = BTreeMap<AlertKey, Vec<(usize, rules::Finding)>>;

/// The health rows a tick wrote.
enum Written {
    /// Every row, in order.
    Whole(Vec<FlowHealth>),
    /// Rows inserted at `inserted` (positions after, ascending), then `rows` written; the
    /// others are as the last tick left them.
    Rows {
        inserted: Vec<usize>,
        rows: Vec<(usize, FlowHealth)>,
    },
}

/// What the sessions' working flows are counted from, kept per row: a walk of these is
/// sequential, where reading each flow's state was a cache miss per flow.
#[derive(Clone, Copy, Debug, Default)]
struct Brief {
    session: Option<SessionId>,
    last_seen_ns: u64,
    /// Established, not closed, nothing wrong found: it works while its packets are recent.
    may_work: bool,
}

impl Brief {
    fn works(&self, now: u64, window_ns: u64) -> bool {
        self.may_work && now.saturating_sub(self.last_seen_ns) < window_ns
    }
}

/// Moves last tick's `rows` (ascending) to where they are once rows were inserted at `at`
/// (positions after, ascending).
fn shift(rows: &mut [usize], at: &[usize]) {
    let mut k = 0;
    for r in rows {
        while k < at.len() && at[k] <= *r + k {
            k += 1;
        }
        *r += k;
    }
}

/// A tick's rows as they are paired when every flow is judged, in row order: health is
/// written over a recycled list (no default-filled copy of a million first); a row not
/// paired yet holds a placeholder until it is judged after the walk.
struct Rows {
    health: Refill<FlowHealth>,
    brief: Vec<Brief>,
    #[allow(clippy::vec_box)]
    slots: Vec<Option<Box<Tracked>>>,
    missed: Vec<usize>,
}

impl Rows {
    fn paired(&mut self, t: Box<Tracked>, (health, brief): (FlowHealth, Brief)) {
        self.health.push(health);
        self.brief.push(brief);
        self.slots.push(Some(t));
    }

    fn unpaired(&mut self, row: usize) {
        self.health.push(FlowHealth::default());
        self.brief.push(Brief::default());
        self.slots.push(None);
        self.missed.push(row);
    }
}

/// One tick's judging, row by row: the same steps for every flow judged, however the
/// rows were paired, and what they add up to.
struct Judging<'a> {
    cfg: &'a AlertConfig,
    /// The engine's, as the last tick left it (a few sample times).
    clock: IdleClock,
    hellos: &'a HashMap<FlowKey, u64>,
    now: u64,
    skip_settled: bool,
    findings: Findings,
    /// Rows whose flow froze with a time to wake, and that time.
    wakes: Vec<(u64, usize)>,
    /// Rows whose flow is not idle after judging.
    awake: Vec<usize>,
}

impl Judging<'_> {
    /// Judges flow `t`, row `i` with record `f`: its health, and what its session's
    /// working flows are counted from.
    fn row(
        &mut self,
        t: &mut Tracked,
        i: usize,
        f: &FlowRecord,
        sessions: &mut sessions::Sessions,
    ) -> (FlowHealth, Brief) {
        t.settled &= self.skip_settled;
        let hello = self.hellos.get(&f.key).copied();
        let mut wake = None;
        let found = t.judge(
            self.cfg,
            f,
            self.now,
            hello,
            sessions,
            &self.clock,
            &mut wake,
        );
        self.wakes.extend(wake.map(|w| (w, i)));
        let judged = t.health(self.cfg, f, &found);
        collect(&mut self.findings, t.session, i, found);
        if !t.idle() {
            self.awake.push(i);
        }
        judged
    }

    /// Files the wake times by the rows' order keys; the rows not idle, ascending.
    fn finish(
        &mut self,
        orders: &[OrderKey],
        wakes: &mut BinaryHeap<Reverse<(u64, OrderKey)>>,
    ) -> Vec<usize> {
        let due = self.wakes.drain(..).map(|(w, i)| Reverse((w, orders[i])));
        wakes.extend(due);
        let mut awake = std::mem::take(&mut self.awake);
        awake.sort_unstable();
        awake
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
}

impl Tracked {
    /// This tick's findings for the flow. `wake` gets when it must be judged again, if its
    /// history froze now with more than one run of counters in its window.
    #[allow(clippy::too_many_arguments)]
    fn judge(
        &mut self,
        cfg: &AlertConfig,
        f: &FlowRecord,
        now: u64,
        hello: Option<u64>,
        sessions: &mut sessions::Sessions,
        clock: &IdleClock,
        wake: &mut Option<u64>,
    ) -> Vec<rules::Finding> {
        let st = &f.state;
        let window = ns(cfg.retransmit_window_s);
        let mark = Some((
            st.last_seen_ns,
            [st.dir[C2S].packets, st.dir[S2C].packets],
            st.seen,
        ));
        if self.settled && hello.is_none() && mark == self.mark {
            // Same counters as before: the sample only moves the rate window on, and the
            // idle clock takes the samples for it until the window's oldest counters leave.
            if self.hist.wakes_by(now) {
                self.hist.thaw(clock, window);
            }
            if !self.hist.is_frozen() {
                let s = Sample::of(st, now);
                if self.hist.freeze(&s, clock, window) {
                    *wake = self.hist.wake_ns();
                } else {
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

    /// Whether the flow need not be looked at while its record stays as it is (and no
    /// ClientHello event comes for it): it is settled, its history frozen.
    fn idle(&self) -> bool {
        self.settled && self.hist.is_frozen()
    }

    /// The flow's health with nothing found: an idle flow's (rates as its frozen history
    /// gives them), and what [`Tracked::health`] adds the level to.
    fn idle_health(&self, cfg: &AlertConfig, f: &FlowRecord) -> FlowHealth {
        let (throughput, retx_rate) = self.hist.rates(cfg.retransmit_min_segments);
        FlowHealth {
            session: Some(self.session),
            level: None,
            throughput,
            retx_rate,
            zero_window_ns: self.hist.zero_total_ns,
            in_flight: [C2S, S2C].map(|d| rules::in_flight(&f.state, d)),
            alerts: Vec::new(),
            history: self.hist.zeek.clone(),
        }
    }

    /// The flow's health for the snapshot, and what its session's working flows are
    /// counted from.
    fn health(
        &self,
        cfg: &AlertConfig,
        f: &FlowRecord,
        found: &[rules::Finding],
    ) -> (FlowHealth, Brief) {
        let st = &f.state;
        let level = found
            .iter()
            .map(|x| x.level)
            .filter(|l| *l >= Level::Warning)
            .max();
        let closed = st.dir.iter().any(|d| d.fins > 0 || d.rsts > 0);
        let brief = Brief {
            session: Some(self.session),
            last_seen_ns: st.last_seen_ns,
            may_work: st.seen & (seen::ESTABLISHED | seen::MIDSTREAM) != 0
                && !closed
                && level.is_none(),
        };
        let health = FlowHealth {
            level,
            ..self.idle_health(cfg, f)
        };
        (health, brief)
    }
}

/// The state of a flow first seen now, in the session it joins.
fn track(sessions: &mut sessions::Sessions, cfg: &AlertConfig, f: &FlowRecord) -> Box<Tracked> {
    let st = &f.state;
    let session = sessions.join(
        st.first_seen_ns,
        f.client().ip(),
        st.last_seen_ns,
        ns(cfg.session_window_s),
    );
    Box::new(Tracked {
        id: FlowId::of(f),
        hist: FlowHistory::default(),
        session,
        mark: None,
        settled: false,
    })
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
            scope: Scope::Session(session),
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
        // The side's receive window is closed (a reset's or FIN's window 0 is not): keep the
        // time it was first seen so.
        let zero = st.tcp.dir[d].zero_window != 0;
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
mod rollup_tests;
#[cfg(test)]
mod tests;
