//! Which flows a tick judges, and the per-row lists that say so. When the change set says
//! how the rows follow from the last tick's, a tick judges the rows whose record changed,
//! the new ones, the flows not idle yet (`busy`) and the paused flows whose wake time came
//! (`wakes`); an idle flow's health row stays as it was. Otherwise every row is walked and
//! paired with its flow's state by order key. A property test (`tests.rs`, `shortcut`)
//! holds this to judging every flow every tick.

use std::{cmp::Reverse, collections::BinaryHeap, sync::Arc};

use super::{
    config::AlertConfig,
    flow::{FlowEntry, Judge, WorkingState},
    prefetch::prefetch_block,
    sessions::Sessions,
};
use crate::{
    footprint::buffer,
    model::{FlowHealth, FlowId},
    shelf::{fit, insert_rows, Lent, Refill},
    snapshot::{OrderKey, RowChange, Snapshot, Walk},
};

/// The engine's per-row lists, in the last snapshot's row order (client, server, first
/// seen).
#[derive(Default)]
pub(super) struct Schedule {
    /// Every flow of the last snapshot. Boxed: inserting or rebuilding moves a pointer per
    /// flow rather than its few hundred bytes.
    #[allow(clippy::vec_box)]
    pub(super) flows: Vec<Box<FlowEntry>>,
    /// Their order keys, apart: the pairing walk reads only these, sequentially.
    orders: Vec<OrderKey>,
    /// The list before, written over by the next tick that pairs by walking (not a fresh
    /// list of every flow, faulted in page by page); let go by ticks that edit.
    spare_orders: Vec<OrderKey>,
    /// Whether `orders` is not sorted (the snapshot was out of order): rows are then found
    /// by a scan rather than a binary search.
    unsorted: bool,
    /// When paused flows must be judged again (their window's oldest counters leave it),
    /// by order key; an entry whose flow was judged since is only a spare judging.
    pub(super) wakes: BinaryHeap<Reverse<(u64, OrderKey)>>,
    /// Per row: whether the flow counts as working for its session.
    pub(super) working: Vec<WorkingState>,
    /// Rows whose flow was not idle after the last tick (ascending): a tick judges them
    /// besides those whose record changed.
    busy: Vec<usize>,
    /// Rows whose health lists active alerts (ascending).
    alerted: Vec<usize>,
    /// The health lists lent to the last snapshots, edited or rewritten for the next.
    health: Lent<FlowHealth>,
}

/// The health rows a tick wrote.
pub(super) enum HealthUpdate {
    /// Every row, in order.
    All(Vec<FlowHealth>),
    /// Rows inserted at `inserted` (positions after, ascending), then `rows` written; the
    /// others are as the last tick left them.
    Rows {
        inserted: Vec<usize>,
        rows: Vec<(usize, FlowHealth)>,
    },
}

impl Schedule {
    /// Judges the flows due this tick (see the module doc).
    pub(super) fn judge(
        &mut self,
        snap: &Snapshot,
        judge: &mut Judge,
        sessions: &mut Sessions,
    ) -> HealthUpdate {
        match self.aligned(snap) {
            Some(changed) => self.judge_changed(snap, changed, judge, sessions),
            None => HealthUpdate::All(self.judge_all(snap, judge, sessions)),
        }
    }

    /// What the lists hold, in bytes: the flows' state, their histories' buffers, the
    /// other lists, the health lists.
    pub(super) fn footprint(&self) -> [u64; 4] {
        use crate::footprint::block;
        let state = self.flows.len() as u64 * block(std::mem::size_of::<FlowEntry>())
            + buffer::<Box<FlowEntry>>(self.flows.capacity());
        let histories = self.flows.iter().map(|t| t.hist.heap_bytes()).sum();
        let lists = buffer::<OrderKey>(self.orders.capacity())
            + buffer::<OrderKey>(self.spare_orders.capacity())
            + buffer::<WorkingState>(self.working.capacity())
            + buffer::<usize>(self.busy.capacity() + self.alerted.capacity())
            + buffer::<Reverse<(u64, OrderKey)>>(self.wakes.capacity());
        [state, histories, lists, self.health.bytes()]
    }

    /// Writes this tick's health rows into the list lent with the snapshot: `part_of` are
    /// the rows in active alerts with each alert's id (ascending by row). Rows that leave
    /// an alert or join one are written too (idle ones with their idle health).
    pub(super) fn write_health(
        &mut self,
        update: HealthUpdate,
        part_of: &[(usize, u64)],
        cfg: &AlertConfig,
        snap: &Snapshot,
    ) -> Arc<Vec<FlowHealth>> {
        let mut alerted: Vec<usize> = part_of.iter().map(|(row, _)| *row).collect();
        let health = match update {
            HealthUpdate::All(mut health) => {
                for &(row, id) in part_of {
                    health[row].alerts.push(id);
                }
                self.health.lend(health)
            }
            HealthUpdate::Rows { inserted, mut rows } => {
                rows.sort_by_key(|(row, _)| *row);
                let mut more: Vec<usize> = self.alerted.iter().chain(&alerted).copied().collect();
                more.sort_unstable();
                more.dedup();
                more.retain(|row| rows.binary_search_by_key(row, |(r, _)| *r).is_err());
                if !more.is_empty() {
                    rows.extend(
                        more.iter()
                            .map(|&row| (row, self.flows[row].idle_health(cfg, &snap.flows[row]))),
                    );
                    rows.sort_by_key(|(row, _)| *row);
                }
                for &(row, id) in part_of {
                    if let Ok(k) = rows.binary_search_by_key(&row, |(r, _)| *r) {
                        rows[k].1.alerts.push(id);
                    }
                }
                self.health.lend_edited(inserted, rows)
            }
        };
        alerted.dedup();
        self.alerted = alerted;
        debug_assert_eq!(health.len(), snap.flows.len());
        debug_assert_eq!(self.flows.len(), snap.flows.len());
        debug_assert_eq!(self.working.len(), snap.flows.len());
        health
    }

    /// The rows of the flow `id`: found by its order key in either role, or by a scan
    /// when the last snapshot was not in order.
    pub(super) fn rows_of<'a>(&'a self, id: &'a FlowId) -> impl Iterator<Item = usize> + 'a {
        let by_key = (!self.unsorted).then(|| {
            [true, false].into_iter().filter_map(|client_is_a| {
                let k = OrderKey::parts(&id.key, client_is_a, id.first_seen_ns);
                self.orders.binary_search(&k).ok()
            })
        });
        let scan = self.unsorted.then_some(0..self.flows.len());
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
        judge: &mut Judge,
        sessions: &mut Sessions,
    ) -> HealthUpdate {
        let now = snap.now_ns;
        let inserted: Vec<usize> = changed
            .iter()
            .filter(|c| c.before.is_none())
            .map(|c| c.row)
            .collect();
        // Last tick's rows not idle yet, where they are now, and the rows whose record
        // changed. A ClientHello event comes for a flow whose record changes: the event
        // alone (its record's change read at the tick before or after) changes nothing.
        let mut due = std::mem::take(&mut self.busy);
        shift(&mut due, &inserted);
        shift(&mut self.alerted, &inserted);
        due.extend(changed.iter().filter(|c| c.before.is_some()).map(|c| c.row));
        let new_orders = inserted.iter().map(|&i| OrderKey::of(&snap.flows[i]));
        insert_rows(&mut self.orders, &inserted, new_orders.collect());
        // Only a tick that pairs by walking writes a new list (one key per flow).
        self.spare_orders = Vec::new();
        // And paused flows whose window's oldest counters leave it now (found by order
        // key: a flow judged since may have paused again, and is judged once more).
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
                prefetch_block(&*self.flows[place(i)]);
                prefetch_block(&snap.flows[i]);
            }
            if let Some(&i) = due.get(k + 8) {
                self.flows[place(i)].hist.window.prefetch();
            }
            let j = place(i);
            let (h, working) = judge.row(&mut self.flows[j], i, &snap.flows[i], sessions);
            self.working[j] = working;
            rows.push((i, h));
        }
        // New flows join sessions in the order they started.
        let mut fresh: Vec<(usize, Box<FlowEntry>, WorkingState)> =
            Vec::with_capacity(inserted.len());
        let mut by_start = inserted.clone();
        by_start.sort_by_key(|&i| snap.flows[i].state.first_seen_ns);
        for i in by_start {
            let f = &snap.flows[i];
            let mut t = FlowEntry::new(sessions, judge.cfg, f);
            let (h, working) = judge.row(&mut t, i, f, sessions);
            rows.push((i, h));
            fresh.push((i, t, working));
        }
        fresh.sort_by_key(|(i, _, _)| *i);
        let (boxes, workings) = fresh.into_iter().map(|(_, t, b)| (t, b)).unzip();
        insert_rows(&mut self.flows, &inserted, boxes);
        insert_rows(&mut self.working, &inserted, workings);
        self.busy = judge.finish(&self.orders, &mut self.wakes);
        HealthUpdate::Rows { inserted, rows }
    }

    /// Judges every flow, pairing the rows with the last tick's flows by walking both.
    fn judge_all(
        &mut self,
        snap: &Snapshot,
        judge: &mut Judge,
        sessions: &mut Sessions,
    ) -> Vec<FlowHealth> {
        let n = snap.flows.len();
        let mut rows = Rows {
            health: Refill::new(self.health.take(), n),
            working: Vec::with_capacity(n),
            slots: Vec::with_capacity(n),
            missed: Vec::new(),
        };
        let mut old: Vec<Option<Box<FlowEntry>>> = std::mem::take(&mut self.flows)
            .into_iter()
            .map(Some)
            .collect();
        let mut orders = fit(std::mem::take(&mut self.spare_orders), n);
        orders.clear();
        // Each flow's state is a few scattered heap blocks, a cache miss each: fetched a
        // few flows ahead, the state first, then (once it is in cache) its buffers.
        let prefetch = |old: &[Option<Box<FlowEntry>>], at: usize| {
            if let Some(Some(t)) = old.get(at + 16) {
                prefetch_block(&**t);
            }
            if let Some(Some(t)) = old.get(at + 8) {
                if !t.hist.window.is_paused() {
                    t.hist.window.prefetch();
                }
            }
        };
        // Every flow is judged: a paused one whose wake time came catches up on its own.
        while self
            .wakes
            .peek()
            .is_some_and(|Reverse((w, _))| *w <= judge.now)
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
                    let judged = judge.row(&mut t, i, f, sessions);
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
            mut working,
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
            (health[i], working[i]) = judge.row(&mut t, i, &snap.flows[i], sessions);
            slots[i] = Some(t);
        }
        drop((old, spare));
        // New flows join sessions in the order they started.
        fresh.sort_by_key(|&i| snap.flows[i].state.first_seen_ns);
        for i in fresh {
            let f = &snap.flows[i];
            let mut t = FlowEntry::new(sessions, judge.cfg, f);
            (health[i], working[i]) = judge.row(&mut t, i, f, sessions);
            slots[i] = Some(t);
        }
        // Every slot is filled: the known flows carried, the new ones just judged.
        self.flows = slots.into_iter().flatten().collect();
        self.busy = judge.finish(&orders, &mut self.wakes);
        self.unsorted = !orders.is_sorted();
        self.spare_orders = std::mem::replace(&mut self.orders, orders);
        self.working = working;
        health
    }

    /// The snapshot's changed rows, when they say how its rows follow from the last
    /// snapshot's: every row not listed new was a row of it, in the same order (no row
    /// left). Checked on a sample of rows, so a snapshot from elsewhere is not taken for
    /// the next one; `None`: pair the rows by walking.
    fn aligned<'a>(&self, snap: &'a Snapshot) -> Option<&'a [RowChange]> {
        let changed = snap.changed.as_deref().filter(|_| !self.unsorted)?;
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
    working: Vec<WorkingState>,
    #[allow(clippy::vec_box)]
    slots: Vec<Option<Box<FlowEntry>>>,
    missed: Vec<usize>,
}

impl Rows {
    fn paired(&mut self, t: Box<FlowEntry>, (health, working): (FlowHealth, WorkingState)) {
        self.health.push(health);
        self.working.push(working);
        self.slots.push(Some(t));
    }

    fn unpaired(&mut self, row: usize) {
        self.health.push(FlowHealth::default());
        self.working.push(WorkingState::default());
        self.slots.push(None);
        self.missed.push(row);
    }
}
