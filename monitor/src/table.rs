//! The flow table: every flow the monitor knows, one row each at an index that stays the
//! flow's while it lives, so the alert engine and the outputs keep their own per-flow state
//! in plain vectors by index instead of pairing lists by key every tick. A tick's source
//! writes the flows it read into the table; the table says what that changed (a
//! [`ChangeSet`]), and every consumer takes its work from that one list.
//!
//! A flow is a connection record: a 4-tuple reused by a new connection is another row, and
//! the one port reuse ended stays as a closed row (bounded: [`KEEP_CLOSED`]).

use crate::model::FlowStats;
use std::{
    collections::VecDeque,
    hash::BuildHasher,
    sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard},
};

use hashbrown::HashTable;
use monitor_common::flow::FlowKey;

use crate::{
    media::verdict::Media,
    model::{FlowHealth, FlowId, FlowRecord},
};

/// Closed rows kept at most past a tick's own (a few MB): past it the oldest go, counted,
/// never one that closed in the tick being made, so every closed connection is in at least
/// the report of the tick it closed.
pub const KEEP_CLOSED: usize = 16_384;

/// One flow: the record as last read, whether port reuse ended it, and the alert engine's
/// verdict on it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FlowRow {
    pub flow: FlowRecord,
    /// Port reuse ended the connection: the kernel no longer holds it, and its record no
    /// longer changes.
    pub closed: bool,
    pub health: FlowHealth,
    /// What its first payload bytes say (`media::flows`): `None` until something is known.
    /// Boxed: most flows of a big table carry no media.
    pub media: Option<Box<Media>>,
    /// The media verdict is final: no more samples of the flow are judged.
    pub media_done: bool,
    /// The TTL of the server side's first sampled payload (its first reply): against the
    /// server's baseline, it tells a reply made by a device in the path.
    pub reply_ttl: Option<u8>,
    /// The generation that last read it (a whole read drops the live rows it did not), and
    /// what that generation's change set says of it.
    read_in: u64,
    mark: Mark,
}

/// What the change set of the generation that last read a row says of it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum Mark {
    /// Read, the same as before.
    #[default]
    Same,
    Added,
    Changed,
}

/// What a tick changed, by row index: every consumer's work list.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ChangeSet {
    /// The tick that made it: a consumer that saw the one before knows it missed nothing.
    pub generation: u64,
    /// Rows new this tick.
    pub added: Vec<u32>,
    /// Rows whose record differs from the last tick's, with the record before.
    pub changed: Vec<(u32, FlowStats)>,
    /// Rows gone (their index may be given to a new flow in a later tick), with the flow
    /// that had them and its last record.
    pub removed: Vec<(u32, FlowRecord)>,
    /// Rows whose media verdict changed, and whether it became final.
    pub media: Vec<(u32, bool)>,
}

#[derive(Debug, Default)]
pub struct FlowTable {
    rows: Vec<Option<FlowRow>>,
    /// Indices of empty rows, reused before the table grows.
    free: Vec<u32>,
    /// Every row, by flow id.
    by_id: HashTable<u32>,
    /// The live row of each key (a closed row is not one).
    live: HashTable<u32>,
    /// Closed rows, oldest first, with their flow (an index whose row went may be reused).
    closed: VecDeque<(u32, FlowId)>,
    /// Closed rows removed to keep [`KEEP_CLOSED`]: connections that ended, neither evicted
    /// nor lost.
    pub closed_dropped: u64,
    changes: ChangeSet,
    hasher: foldhash::fast::FixedState,
}

impl FlowTable {
    /// A table holding `records`, as one tick would write them (tests, one-shot reports).
    pub fn of(records: impl IntoIterator<Item = FlowRecord>, closed: &[FlowRecord]) -> Self {
        let mut t = Self::default();
        t.begin();
        for r in closed {
            t.close(r.clone());
        }
        for r in records {
            t.put(r);
        }
        t
    }

    /// A whole tick that read `live` as every live flow (tests, fakes of a source): the
    /// live rows not in it are gone.
    pub fn read_whole(&mut self, live: impl IntoIterator<Item = FlowRecord>) {
        self.begin();
        for r in live {
            self.put(r);
        }
        self.drop_unread();
    }

    /// A tick of what a source read since the last one: the records port reuse ended,
    /// then the records of the flows that changed (the capture engine's ticks).
    pub fn apply(&mut self, changed: Vec<FlowRecord>, closed: Vec<FlowRecord>) {
        self.begin();
        // At most this many new rows (most of a tick's records are of rows it holds).
        self.reserve(self.len() + changed.len() + closed.len());
        for r in closed {
            self.close(r);
        }
        for r in changed {
            self.put(r);
        }
    }

    /// Room for `n` flows, for a tick about to read that many: rows and indices grow once,
    /// not by doubling (each doubling moves every row and rehashes every index entry).
    /// Room not used is address space, not memory the monitor holds.
    pub fn reserve(&mut self, n: usize) {
        let more = n.saturating_sub(self.len());
        self.rows.reserve(more.saturating_sub(self.free.len()));
        let (rows, hasher) = (&self.rows, &self.hasher);
        self.by_id.reserve(more, |&j| id_hash(hasher, rows, j));
        self.live.reserve(more, |&j| key_hash(hasher, rows, j));
    }

    /// Starts a tick: the change set from here on is this tick's.
    pub fn begin(&mut self) {
        let generation = self.changes.generation + 1;
        self.changes = ChangeSet {
            generation,
            ..ChangeSet::default()
        };
    }

    /// What this tick changed so far.
    pub fn changes(&self) -> &ChangeSet {
        &self.changes
    }

    pub fn generation(&self) -> u64 {
        self.changes.generation
    }

    /// How many flows the table holds, closed ones included.
    pub fn len(&self) -> usize {
        self.rows.len() - self.free.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Closed rows held.
    pub fn closed_len(&self) -> usize {
        self.closed.len()
    }

    /// One past the highest row index: a per-row vector this long has a place for every row.
    pub fn capacity(&self) -> usize {
        self.rows.len()
    }

    pub fn row(&self, at: u32) -> Option<&FlowRow> {
        self.rows.get(at as usize).and_then(Option::as_ref)
    }

    pub fn row_mut(&mut self, at: u32) -> Option<&mut FlowRow> {
        self.rows.get_mut(at as usize).and_then(Option::as_mut)
    }

    /// Every row with its index, in index order (not a display order: see [`Self::sorted`]).
    pub fn rows(&self) -> impl Iterator<Item = (u32, &FlowRow)> {
        self.rows
            .iter()
            .enumerate()
            .filter_map(|(i, r)| r.as_ref().map(|r| (i as u32, r)))
    }

    /// FlowRow indices in report order: client, then server, then first seen.
    pub fn sorted(&self) -> Vec<u32> {
        self.in_report_order(|i, _| i)
    }

    /// What `value` makes of every row, in report order. The rows are read forward, in
    /// index order, and the values put in report order after: reading a big table's rows
    /// in report order would jump from row to row (they are in the order flows came).
    pub fn in_report_order<T: Copy>(&self, mut value: impl FnMut(u32, &FlowRow) -> T) -> Vec<T> {
        let mut order: Vec<(crate::model::OrderKey, u32)> = Vec::with_capacity(self.len());
        let values: Vec<T> = self
            .rows()
            .map(|(i, r)| {
                order.push((crate::model::OrderKey::of(&r.flow), order.len() as u32));
                value(i, r)
            })
            .collect();
        order.sort_unstable();
        order.into_iter().map(|(_, k)| values[k as usize]).collect()
    }

    /// Every record in report order.
    pub fn records(&self) -> Vec<FlowRecord> {
        self.sorted()
            .into_iter()
            .filter_map(|i| self.row(i).map(|r| r.flow.clone()))
            .collect()
    }

    /// The row of flow `id`.
    pub fn find(&self, id: &FlowId) -> Option<u32> {
        self.find_hashed(self.hasher.hash_one(id), id)
    }

    fn find_hashed(&self, h: u64, id: &FlowId) -> Option<u32> {
        let rows = &self.rows;
        self.by_id
            .find(h, |&i| id_at(rows, i) == Some(*id))
            .copied()
    }

    /// The live row of `key`, if the table holds one.
    pub fn find_live(&self, key: &FlowKey) -> Option<u32> {
        self.find_live_hashed(self.hasher.hash_one(key), key)
    }

    fn find_live_hashed(&self, h: u64, key: &FlowKey) -> Option<u32> {
        let rows = &self.rows;
        self.live
            .find(h, |&i| id_at(rows, i).is_some_and(|id| id.key == *key))
            .copied()
    }

    /// The kernel's record of a live flow, read this tick (once: the change set keeps the
    /// record a row had when the tick began): written over the flow's row, or a new row. A new record for a key whose live row is another connection replaces it
    /// (the old one was evicted and its key used again, or its closing was lost).
    pub fn put(&mut self, flow: FlowRecord) {
        let id = FlowId::of(&flow);
        let generation = self.changes.generation;
        // Each hash once, and the live row first: a record of a flow the table holds live
        // (most of a tick's) is found with one lookup.
        let h_key = self.hasher.hash_one(id.key);
        let live = self.find_live_hashed(h_key, &flow.key);
        if let Some(i) = live {
            if let Some(row) = self.rows[i as usize].as_mut() {
                if row.flow.state.first_seen_ns == id.first_seen_ns {
                    let before = std::mem::replace(&mut row.flow, flow);
                    row.note(generation, &before, &mut self.changes, i);
                    return;
                }
            }
        }
        // A connection port reuse ended already: its record no longer changes.
        let h_id = self.hasher.hash_one(id);
        if self
            .find_hashed(h_id, &id)
            .is_some_and(|i| self.row(i).is_some_and(|r| r.closed))
        {
            return;
        }
        if let Some(i) = live {
            self.remove(i);
        }
        let i = self.insert_hashed(flow, false, h_id);
        let (rows, hasher) = (&self.rows, &self.hasher);
        self.live
            .insert_unique(h_key, i, |&j| key_hash(hasher, rows, j));
    }

    /// A record port reuse ended: its row, found by flow id, becomes closed (a new row if
    /// the table never had it live). The oldest closed rows go past [`KEEP_CLOSED`].
    pub fn close(&mut self, flow: FlowRecord) {
        let id = FlowId::of(&flow);
        let generation = self.changes.generation;
        let i = match self.find(&id) {
            Some(i) => {
                self.unlink_live(i);
                if let Some(row) = self.rows[i as usize].as_mut() {
                    let before = std::mem::replace(&mut row.flow, flow);
                    let was_closed = std::mem::replace(&mut row.closed, true);
                    row.note(generation, &before, &mut self.changes, i);
                    if !was_closed && row.mark == Mark::Same {
                        row.mark = Mark::Changed;
                        self.changes.changed.push((i, before.state.clone()));
                    }
                }
                i
            }
            None => self.insert(flow, true),
        };
        self.closed.push_back((i, id));
        self.trim_closed();
    }

    /// The live row of `key` goes: the kernel no longer holds the flow (its LRU evicted it).
    pub fn evict(&mut self, key: &FlowKey) {
        if let Some(i) = self.find_live(key) {
            self.remove(i);
        }
    }

    /// After a tick that read every live flow: the live rows it did not read are gone.
    pub fn drop_unread(&mut self) {
        let generation = self.changes.generation;
        let unread: Vec<u32> = self
            .rows()
            .filter(|(_, r)| !r.closed && r.read_in != generation)
            .map(|(i, _)| i)
            .collect();
        for i in unread {
            self.remove(i);
        }
    }

    /// The media verdict of flow `id` at row `at` (a row given to another flow since is
    /// left alone), listed in the change set.
    pub fn set_media(&mut self, at: u32, id: &FlowId, media: Media, done: bool) {
        let Some(row) = self.row_mut(at).filter(|r| FlowId::of(&r.flow) == *id) else {
            return;
        };
        row.media = Some(Box::new(media));
        row.media_done |= done;
        self.changes.media.push((at, done));
    }

    /// How many live rows the table holds.
    pub fn live_len(&self) -> usize {
        self.live.len()
    }

    fn trim_closed(&mut self) {
        let generation = self.changes.generation;
        while self.closed.len() > KEEP_CLOSED {
            let Some(&(i, id)) = self.closed.front() else {
                break;
            };
            match self.row(i) {
                // Never one closed this tick.
                Some(r) if r.read_in == generation => break,
                Some(r) if r.closed && FlowId::of(&r.flow) == id => {
                    self.remove(i);
                    self.closed_dropped += 1;
                }
                // Gone already (the row went with its key's live row).
                _ => {}
            }
            self.closed.pop_front();
        }
    }

    fn insert(&mut self, flow: FlowRecord, closed: bool) -> u32 {
        let h = self.hasher.hash_one(FlowId::of(&flow));
        self.insert_hashed(flow, closed, h)
    }

    /// [`Self::insert`] with the flow id's hash.
    fn insert_hashed(&mut self, flow: FlowRecord, closed: bool, h: u64) -> u32 {
        let row = FlowRow {
            flow,
            closed,
            health: FlowHealth::default(),
            media: None,
            media_done: false,
            reply_ttl: None,
            read_in: self.changes.generation,
            mark: Mark::Added,
        };
        let i = match self.free.pop() {
            Some(i) => {
                self.rows[i as usize] = Some(row);
                i
            }
            None => {
                self.rows.push(Some(row));
                (self.rows.len() - 1) as u32
            }
        };
        let (rows, hasher) = (&self.rows, &self.hasher);
        self.by_id
            .insert_unique(h, i, |&j| id_hash(hasher, rows, j));
        self.changes.added.push(i);
        i
    }

    fn unlink_live(&mut self, i: u32) {
        let Some(key) = id_at(&self.rows, i).map(|id| id.key) else {
            return;
        };
        let h = self.hasher.hash_one(key);
        if let Ok(e) = self.live.find_entry(h, |&j| j == i) {
            e.remove();
        }
    }

    fn remove(&mut self, i: u32) {
        let Some(id) = id_at(&self.rows, i) else {
            return;
        };
        self.unlink_live(i);
        let h = self.hasher.hash_one(id);
        if let Ok(e) = self.by_id.find_entry(h, |&j| j == i) {
            e.remove();
        }
        if let Some(row) = self.rows[i as usize].take() {
            let mark = if row.read_in == self.changes.generation {
                row.mark
            } else {
                Mark::Same
            };
            match mark {
                // A row added this tick and gone again is neither added nor removed.
                Mark::Added => self.changes.added.retain(|&j| j != i),
                Mark::Changed => {
                    // Removed as the flow it was before this tick.
                    let k = self.changes.changed.iter().position(|(j, _)| *j == i);
                    let before = k.map(|k| self.changes.changed.swap_remove(k).1);
                    let flow = FlowRecord {
                        key: row.flow.key,
                        state: before.unwrap_or(row.flow.state),
                    };
                    self.changes.removed.push((i, flow));
                }
                Mark::Same => self.changes.removed.push((i, row.flow)),
            }
        }
        self.free.push(i);
    }

    /// Bytes the table holds (the benchmark's account of resident memory). Rows as many
    /// as were ever used: the room [`Self::reserve`] leaves beyond them is never touched,
    /// so never resident. The rows' anomaly blocks count where they are held.
    pub fn bytes(&self) -> u64 {
        use crate::footprint::{block, buffer};
        let boxed = self
            .rows
            .iter()
            .flatten()
            .filter(|r| r.flow.state.anomalies.is_boxed())
            .count() as u64;
        let anomalies = boxed * block(std::mem::size_of::<[crate::model::Anomalies; 2]>());
        buffer::<Option<FlowRow>>(self.rows.len())
            + anomalies
            + buffer::<u32>(self.free.capacity())
            + buffer::<(u32, FlowId)>(self.closed.capacity())
            + (self.by_id.capacity() + self.live.capacity()) as u64 * 5
    }
}

/// The record of row `i`, for code that holds a row index of this tick (a finding's): an
/// empty row there is a bug in the engine, not something the input can cause.
impl std::ops::Index<usize> for FlowTable {
    type Output = FlowRecord;

    fn index(&self, i: usize) -> &FlowRecord {
        match self.rows.get(i).and_then(Option::as_ref) {
            Some(r) => &r.flow,
            None => panic!("flow table row {i} is empty"),
        }
    }
}

impl FlowRow {
    /// The row was read in `generation`, its record before it `before`: the change set
    /// lists it once, with the record it had when the generation began.
    fn note(&mut self, generation: u64, before: &FlowRecord, changes: &mut ChangeSet, i: u32) {
        if self.read_in != generation {
            self.read_in = generation;
            self.mark = Mark::Same;
        }
        if self.mark == Mark::Same && before.state != self.flow.state {
            self.mark = Mark::Changed;
            changes.changed.push((i, before.state.clone()));
        }
    }
}

fn id_at(rows: &[Option<FlowRow>], i: u32) -> Option<FlowId> {
    rows.get(i as usize)
        .and_then(Option::as_ref)
        .map(|r| FlowId::of(&r.flow))
}

fn id_hash(hasher: &foldhash::fast::FixedState, rows: &[Option<FlowRow>], i: u32) -> u64 {
    id_at(rows, i).map_or(0, |id| hasher.hash_one(id))
}

fn key_hash(hasher: &foldhash::fast::FixedState, rows: &[Option<FlowRow>], i: u32) -> u64 {
    id_at(rows, i).map_or(0, |id| hasher.hash_one(id.key))
}

/// The table as the source, the alert engine and the terminal UI's thread share it: the
/// source and the engine write it during a tick, the outputs read it after.
#[derive(Clone, Debug, Default)]
pub struct SharedTable(Arc<RwLock<FlowTable>>);

impl SharedTable {
    pub fn new(table: FlowTable) -> Self {
        Self(Arc::new(RwLock::new(table)))
    }

    /// A panic elsewhere while writing leaves the table as it was written so far: still a
    /// table to show.
    pub fn read(&self) -> RwLockReadGuard<'_, FlowTable> {
        self.0.read().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn write(&self) -> RwLockWriteGuard<'_, FlowTable> {
        self.0.write().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
#[path = "table_tests.rs"]
mod tests;
