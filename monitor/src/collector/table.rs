//! The collector's copy of the flow table, kept between ticks and brought up to date with
//! only what changed: reading a million records every tick was most of a tick.
//!
//! The table is what a snapshot shows: live records (one per key in the kernel map) and
//! closed ones (connections port reuse ended), sorted by [`OrderKey`]. A record's order
//! key never changes while it lives (its roles and first-seen time are fixed at creation),
//! so a changed flow is found by binary search and written over in its row; new flows
//! and closed records are inserted. The plan says which rows those are, so the table a
//! UI let go is brought up to date by copying them (see `shelf::Lent`), with no second
//! search. Flows that left the map send the tick to a whole read.

use foldhash::HashSet;

use crate::{
    model::FlowRecord,
    snapshot::{OrderKey, RowChange},
};
use monitor_common::flow::FlowKey;

/// What the kernel reported since the last tick.
#[derive(Clone, Debug, Default)]
pub struct Changes {
    /// Records read back for the flows the kernel marked changed (one per key).
    pub fresh: Vec<FlowRecord>,
    /// Marked flows no longer in the map: evicted since they were marked.
    pub gone: Vec<FlowKey>,
    /// Connections port reuse ended: each replaces the live record with its order key.
    pub closed: Vec<FlowRecord>,
}

/// How the table changes: rows inserted (their positions after, ascending) and rows
/// written (new ones included), as [`crate::shelf::Lent::lend_edited`] takes them, and
/// the rows whose record differs, as [`crate::snapshot::changes`] would find them.
#[derive(Debug, Default)]
pub struct Plan {
    pub inserted: Vec<usize>,
    pub rows: Vec<(usize, FlowRecord)>,
    pub changed: Vec<RowChange>,
}

/// Where `ch` goes in `table` (sorted, no two records with one order key): a changed
/// flow's record over its row (found by binary search: its order key never changes
/// while it lives), a new one inserted, a closed one over the live record it ends.
/// `closed_orders` holds the order keys of every closed record, this tick's included: a
/// closed record is history, never replaced by its key. `None` when a record must go (a
/// flow gone from the map, or a new record for a key whose old one ended unseen: evicted
/// and created again, or its closing lost), which only a whole read puts right.
pub fn plan(table: &[FlowRecord], closed_orders: &HashSet<OrderKey>, ch: Changes) -> Option<Plan> {
    if !ch.gone.is_empty() {
        return None;
    }
    // Rows written in place (by their index now), and records inserted (by order key,
    // with the index now of the record they go before: after any with their key).
    let mut written: Vec<(usize, FlowRecord)> = Vec::new();
    let mut insert: Vec<(OrderKey, usize, FlowRecord)> = Vec::new();
    for c in ch.closed {
        let k = OrderKey::of(&c);
        match k.find(table) {
            Ok(i) => written.push((i, c)),
            Err(p) => insert.push((k, p, c)),
        }
    }
    for f in ch.fresh {
        let k = OrderKey::of(&f);
        match k.find(table) {
            Ok(i) if table[i].key == f.key && !closed_orders.contains(&k) => written.push((i, f)),
            found => {
                if live_with_key(table, closed_orders, &f.key).next().is_some() {
                    return None;
                }
                insert.push((k, found.map_or_else(|p| p, |i| i + 1), f));
            }
        }
    }
    insert.sort_unstable_by_key(|(k, _, _)| *k);
    insert.dedup_by_key(|(k, _, _)| *k);
    // A row moves down by the insertions at or before it.
    let old_places: Vec<usize> = insert.iter().map(|(_, p, _)| *p).collect();
    let at: Vec<usize> = old_places.iter().enumerate().map(|(m, p)| p + m).collect();
    let moved = |i: usize| i + old_places.partition_point(|&p| p <= i);
    let mut out = Plan {
        inserted: at.clone(),
        ..Plan::default()
    };
    written.sort_by_key(|(i, _)| *i);
    written.dedup_by_key(|(i, _)| *i);
    for (i, r) in written {
        let row = moved(i);
        if table[i].state != r.state {
            out.changed.push(RowChange {
                row,
                before: Some(table[i].state),
            });
        }
        out.rows.push((row, r));
    }
    for (row, (_, _, r)) in at.into_iter().zip(insert) {
        out.changed.push(RowChange { row, before: None });
        out.rows.push((row, r));
    }
    out.changed.sort_unstable_by_key(|c| c.row);
    Some(out)
}

/// Indices of the live records of `key`: they sit among the records between the same
/// client and server, in whichever roles the key's endpoints were given.
fn live_with_key<'a>(
    table: &'a [FlowRecord],
    closed_orders: &'a HashSet<OrderKey>,
    key: &'a FlowKey,
) -> impl Iterator<Item = usize> + 'a {
    [false, true].into_iter().flat_map(move |client_is_a| {
        let lo = OrderKey::parts(key, client_is_a, 0);
        let hi = OrderKey::parts(key, client_is_a, u64::MAX);
        let start = table.partition_point(|r| OrderKey::of(r) < lo);
        let end = table.partition_point(|r| OrderKey::of(r) <= hi);
        (start..end).filter(move |&i| {
            table[i].key == *key && !closed_orders.contains(&OrderKey::of(&table[i]))
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shelf::insert_default;
    use monitor_common::flow::FlowState;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    fn record(id: u8, client_is_a: bool, first_seen: u64, packets: u64) -> FlowRecord {
        let mut key = FlowKey {
            family: 4,
            port_a: 40_000 + (id % 4) as u16,
            port_b: 50_000 + (id / 4) as u16,
            ..FlowKey::default()
        };
        key.addr_a[..4].copy_from_slice(&[10, 0, 0, 1 + id % 3]);
        key.addr_b[..4].copy_from_slice(&[10, 0, 1, 1]);
        let mut state = FlowState {
            key,
            first_seen_ns: first_seen,
            client_is_a: client_is_a as u8,
            ..FlowState::default()
        };
        state.dir[0].packets = packets;
        FlowRecord { key, state }
    }

    /// A table as the kernel would leave it: live records (one per key) and closed ones,
    /// then what happened since, all over a few keys so that collisions are common.
    #[derive(Debug, Clone)]
    struct Case {
        live: Vec<FlowRecord>,
        closed: Vec<FlowRecord>,
        changes: Vec<(u8, u8, bool, u64)>,
    }

    fn case() -> impl Strategy<Value = Case> {
        let rec = (0u8..12, any::<bool>(), 1u64..4);
        (
            prop::collection::vec(rec.clone(), 0..10),
            prop::collection::vec(rec, 0..4),
            // (key id, what: 0 fresh same record, 1 fresh new record, 2 gone, 3 closed,
            // 4 reported again unchanged; role of a new record, counter)
            prop::collection::vec((0u8..14, 0u8..5, any::<bool>(), 0u64..100), 0..10),
        )
            .prop_map(|(live, closed, changes)| {
                let mut by_key = BTreeMap::new();
                for (id, c, t) in live {
                    by_key.entry(id).or_insert(record(id, c, t, 0));
                }
                let live: Vec<_> = by_key.into_values().collect();
                // Closed records are older connections of some key: first seen before 1.
                let closed = closed
                    .into_iter()
                    .map(|(id, c, _)| (id, record(id, c, 0, 7)))
                    .collect::<BTreeMap<_, _>>()
                    .into_values()
                    .collect();
                let changes = changes
                    .into_iter()
                    .map(|(id, what, c, n)| (id, what, c, n + 1))
                    .collect();
                Case {
                    live,
                    closed,
                    changes,
                }
            })
    }

    fn sorted(mut v: Vec<FlowRecord>) -> Vec<FlowRecord> {
        v.sort_by_key(OrderKey::of);
        v
    }

    proptest! {
        /// Applying what changed gives the table a full read would: live records by key,
        /// and every closed record, sorted.
        #[test]
        fn applying_changes_equals_reading_everything(c in case()) {
            let mut live: BTreeMap<FlowKey, FlowRecord> =
                c.live.iter().map(|r| (r.key, r.clone())).collect();
            let mut closed = c.closed.clone();
            let mut ch = Changes::default();
            let mut touched = std::collections::BTreeSet::new();
            // Whether a record the table holds had to go (only a whole read does that).
            let mut must_go = false;
            for &(id, what, role, n) in &c.changes {
                let key = record(id, false, 0, 0).key;
                // The kernel reports a key once per tick.
                if !touched.insert(key) {
                    continue;
                }
                let old = live.get(&key).cloned();
                match (what, old) {
                    (0, Some(mut r)) => {
                        r.state.dir[0].packets += n;
                        live.insert(key, r.clone());
                        ch.fresh.push(r);
                    }
                    (4, Some(r)) => {
                        // Read again though it did not change since (see `recent`).
                        ch.fresh.push(r);
                    }
                    (2, _) => {
                        must_go = true;
                        live.remove(&key);
                        ch.gone.push(key);
                    }
                    (3, Some(r)) => {
                        // Port reuse: the old record closes, a new one takes the key.
                        let mut end = r.clone();
                        end.state.dir[0].packets += n;
                        closed.push(end.clone());
                        ch.closed.push(end);
                        let new = record(id, role, 10 + n, 1);
                        live.insert(key, new.clone());
                        ch.fresh.push(new);
                    }
                    (_, old) => {
                        // A new record for the key (new flow, or one evicted and back).
                        must_go |= old.is_some();
                        let new = record(id, role, 10 + n, n);
                        live.insert(key, new.clone());
                        ch.fresh.push(new);
                    }
                }
            }
            let table = sorted(c.live.iter().chain(&c.closed).cloned().collect());
            // The collector has this tick's closed records among them already.
            let orders: HashSet<OrderKey> =
                c.closed.iter().chain(&ch.closed).map(OrderKey::of).collect();
            let Some(p) = plan(&table, &orders, ch) else {
                prop_assert!(must_go, "a plan was refused though no record had to go");
                return Ok(());
            };
            prop_assert!(!must_go, "a record had to go, and the plan kept it");
            let mut t = table.clone();
            insert_default(&mut t, &p.inserted);
            for (i, r) in p.rows {
                t[i] = r;
            }
            let want = sorted(live.into_values().chain(closed).collect());
            prop_assert_eq!(&t, &want);
            // What changed, as the plan says it and as a walk of both tables finds it.
            prop_assert_eq!(p.changed, crate::snapshot::changes(&table, &t));
        }
    }
}
