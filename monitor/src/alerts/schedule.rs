//! Which flows a tick judges. The engine keeps each flow's state at the flow's row index of
//! the flow table, so the tick's change set says everything: the rows new to it, the rows
//! whose record changed, the rows gone. A tick judges those, the flows not idle yet
//! (`busy`) and the paused flows whose wake time came (`wakes`); an idle flow is not looked
//! at, and its health stays as it was. A table that does not follow the last one judged
//! (another table, a tick missed) is judged whole. A property test (`shortcut_tests.rs`)
//! holds this to judging every flow every tick.

use std::{cmp::Reverse, collections::BinaryHeap};

use super::{
    flow::{id_hash, FlowEntry, Judge, RowChange, WorkingState},
    ns,
    sessions::Sessions,
    window::SampleCounters,
};
use crate::{
    footprint::buffer,
    model::{FlowId, FlowStats, SessionId},
    table::FlowTable,
};

/// This tick's rows whose media verdict changed, and whose record changed (`None`: every
/// row's), ascending.
#[derive(Clone, Copy)]
struct Lists<'a> {
    media: &'a [u32],
    moved: Option<&'a [u32]>,
}

/// The engine's per-row lists, by row index of the flow table.
#[derive(Default)]
pub(super) struct Schedule {
    /// Each row's flow as the engine keeps it.
    pub(super) flows: Vec<Option<FlowEntry>>,
    /// Per row: whether the flow counts as working for its session.
    working: Vec<WorkingState>,
    /// When paused flows must be judged again (their window's oldest counters leave it),
    /// with their row and first-seen time (a row given to another flow since is skipped).
    pub(super) wakes: BinaryHeap<Reverse<(u64, u32, u64)>>,
    /// Rows whose flow was not idle after the last tick: a tick judges them besides those
    /// whose record changed.
    busy: Vec<u32>,
    /// Rows whose flow stands (its one finding made again each tick, not judged).
    standing: Vec<u32>,
    /// Rows whose health lists active alerts.
    alerted: Vec<u32>,
    /// The table generation judged last.
    generation: u64,
}

impl Schedule {
    /// Judges the flows due this tick (see the module doc) and writes their health into
    /// their rows.
    pub(super) fn judge(
        &mut self,
        table: &mut FlowTable,
        judge: &mut Judge,
        sessions: &mut Sessions,
    ) {
        let n = table.capacity();
        self.flows.resize_with(n, || None);
        self.working.resize_with(n, WorkingState::default);
        let follows = table.generation() == self.generation + 1;
        self.generation = table.generation();
        let mut due: Vec<u32> = if follows {
            let ch = table.changes();
            for (i, gone) in &ch.removed {
                if self.entry_of(*i, &FlowId::of(gone)) {
                    self.drop_entry(*i, sessions);
                }
            }
            // An idle window holds no counters: its record's before this tick's change
            // were its own.
            let window = ns(judge.cfg.retransmit_window_s);
            for (i, before) in &ch.changed {
                let Some(row) = table.row(*i) else { continue };
                if let Some(Some(e)) = self.flows.get_mut(*i as usize) {
                    if e.hist.window.kept().is_none()
                        && e.id_hash == id_hash(&FlowId::of(&row.flow))
                    {
                        let held = SampleCounters::of_stats(before);
                        e.hist.window.catch_up(judge.idle, window, &held);
                    }
                }
            }
            let mut due = std::mem::take(&mut self.busy);
            due.extend(ch.changed.iter().map(|(i, _)| *i));
            due.extend(&ch.added);
            due.extend(ch.media.iter().map(|(i, _)| *i));
            due
        } else {
            // Another table: the state of rows it does not have goes.
            for i in 0..self.flows.len() as u32 {
                if table.row(i).is_none() {
                    self.drop_entry(i, sessions);
                }
            }
            table.rows().map(|(i, _)| i).collect()
        };
        // And paused flows whose window's oldest counters leave it now (a flow judged
        // since may have paused again, and is judged once more).
        while let Some(&Reverse((_, i, first_seen))) = self
            .wakes
            .peek()
            .filter(|Reverse((w, _, _))| *w <= judge.now)
        {
            self.wakes.pop();
            if table
                .row(i)
                .is_some_and(|r| r.flow.state.first_seen_ns == first_seen)
            {
                due.push(i);
            }
        }
        due.sort_unstable();
        due.dedup();
        let mut media: Vec<u32> = table.changes().media.iter().map(|(i, _)| *i).collect();
        media.sort_unstable();
        // Rows whose record this tick changed; a table that does not follow: every row's.
        let mut moved: Option<Vec<u32>> = follows.then(|| {
            let ch = table.changes();
            ch.changed
                .iter()
                .map(|(i, _)| *i)
                .chain(ch.added.iter().copied())
                .collect()
        });
        if let Some(m) = &mut moved {
            m.sort_unstable();
        }
        let lists = Lists {
            media: &media,
            moved: moved.as_deref(),
        };
        // New flows join sessions in the order they started, and are judged after the
        // others; every row is read in row order (a first tick's million rows read in the
        // order they started is a cache miss each).
        let mut fresh = Vec::new();
        for &i in &due {
            let Some(row) = table.row(i) else {
                continue;
            };
            let id = FlowId::of(&row.flow);
            if !self.entry_of(i, &id) {
                let st = &row.flow.state;
                fresh.push((st.first_seen_ns, i, row.flow.client().ip(), st.last_seen_ns));
                continue;
            }
            self.judge_row(table, i, lists, false, judge, sessions);
        }
        // Standing flows not due: their finding, not a judging.
        for i in std::mem::take(&mut self.standing) {
            if due.binary_search(&i).is_ok() {
                continue;
            }
            if let (Some(row), Some(Some(entry))) = (table.row(i), self.flows.get(i as usize)) {
                judge.stand(entry, i as usize, &row.flow);
            }
        }
        // The state another flow of a new flow's row left goes first.
        for &(_, i, _, _) in &fresh {
            self.drop_entry(i, sessions);
        }
        fresh.sort_unstable_by_key(|&(first_seen, i, _, _)| (first_seen, i));
        let window = ns(judge.cfg.session_window_s);
        let mut joined: Vec<(u32, SessionId)> = fresh
            .into_iter()
            .map(|(first, i, remote, last)| (i, sessions.join(first, remote, last, window)))
            .collect();
        joined.sort_unstable_by_key(|&(i, _)| i);
        for (i, session) in joined {
            if let Some(row) = table.row_mut(i) {
                // Judged from the start: the health another flow of the row had goes.
                row.health = Default::default();
                self.flows[i as usize] = Some(FlowEntry::new(session, &row.flow));
                self.judge_row(table, i, lists, true, judge, sessions);
            }
        }
        let (busy, wakes, standing) = judge.finish();
        self.busy = busy;
        self.standing = standing;
        for (w, i) in wakes {
            if let Some(r) = table.row(i) {
                self.wakes.push(Reverse((w, i, r.flow.state.first_seen_ns)));
            }
        }
    }

    /// Judges row `i` (`new`: its state was made this tick).
    fn judge_row(
        &mut self,
        table: &mut FlowTable,
        i: u32,
        lists: Lists,
        new: bool,
        judge: &mut Judge,
        sessions: &mut Sessions,
    ) {
        let (Some(row), Some(entry)) = (table.row_mut(i), self.flows[i as usize].as_mut()) else {
            return;
        };
        let now = RowChange {
            record: new || lists.moved.is_none_or(|m| m.binary_search(&i).is_ok()),
            joined: new,
            media: row.media.as_deref(),
            media_changed: lists.media.binary_search(&i).is_ok(),
        };
        // The health keeps the flow's Zeek history letters; judging adds to them.
        let history = std::mem::take(&mut row.health.history);
        let (health, working) = judge.row(entry, i as usize, &row.flow, now, sessions, history);
        row.health = health;
        self.working[i as usize] = working;
    }

    /// Drops the engine's state at row `i` (its flow gone, or another flow's there).
    fn drop_entry(&mut self, i: u32, sessions: &mut Sessions) {
        let Some(e) = self.flows.get_mut(i as usize).and_then(Option::take) else {
            return;
        };
        self.working[i as usize] = WorkingState::default();
        sessions.leave(e.session);
    }

    /// The sessions of the flows that count as working (see [`WorkingState`]).
    pub(super) fn working_sessions(
        &self,
        now: u64,
        window_ns: u64,
    ) -> impl Iterator<Item = SessionId> + '_ {
        self.working
            .iter()
            .zip(&self.flows)
            .filter(move |(w, _)| w.works(now, window_ns))
            .filter_map(|(_, e)| e.as_ref().map(|e| e.session))
    }

    /// Whether row `i` holds the engine's state of flow `id`.
    fn entry_of(&self, i: u32, id: &FlowId) -> bool {
        self.flows
            .get(i as usize)
            .and_then(Option::as_ref)
            .is_some_and(|e| e.id_hash == id_hash(id))
    }

    /// Writes which active alerts each row is part of (`part_of`: row and alert id) into
    /// the rows' health, and takes it out of the rows that left every alert.
    pub(super) fn write_alerts(&mut self, table: &mut FlowTable, part_of: &[(u32, u64)]) {
        for &i in &self.alerted {
            if let Some(r) = table.row_mut(i) {
                r.health.alerts.clear();
            }
        }
        for &(i, id) in part_of {
            if let Some(r) = table.row_mut(i) {
                if !r.health.alerts.contains(&id) {
                    r.health.alerts.push(id);
                }
            }
        }
        self.alerted = part_of.iter().map(|(i, _)| *i).collect();
        self.alerted.sort_unstable();
        self.alerted.dedup();
    }

    /// The engine's state of flow `id`, at its row of `table`, and the row's record.
    pub(super) fn entry<'a>(
        &'a self,
        table: &'a FlowTable,
        id: &FlowId,
    ) -> Option<(&'a FlowEntry, &'a FlowStats)> {
        let i = table.find(id)?;
        let entry = self
            .flows
            .get(i as usize)
            .and_then(Option::as_ref)
            .filter(|e| e.id_hash == id_hash(id))?;
        Some((entry, &table.row(i)?.flow.state))
    }

    /// What the lists hold, in bytes: the flows' state, their histories' buffers, the
    /// other lists.
    pub(super) fn footprint(&self) -> [u64; 3] {
        let state = buffer::<Option<FlowEntry>>(self.flows.capacity());
        let histories = self
            .flows
            .iter()
            .flatten()
            .map(|t| t.hist.heap_bytes())
            .sum();
        let lists = buffer::<WorkingState>(self.working.capacity())
            + buffer::<u32>(
                self.busy.capacity() + self.alerted.capacity() + self.standing.capacity(),
            )
            + buffer::<Reverse<(u64, u32, u64)>>(self.wakes.capacity());
        [state, histories, lists]
    }
}
