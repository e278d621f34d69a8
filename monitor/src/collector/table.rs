//! The collector's copy of the flow table, kept between ticks and brought up to date with
//! only what changed: reading a million records every tick was most of a tick.
//!
//! The table is what a snapshot shows: live records (one per key in the kernel map) and
//! closed ones (connections port reuse ended), sorted by [`OrderKey`]. A record's order
//! key never changes while it lives (its roles and first-seen time are fixed at creation),
//! so a changed flow is found by binary search and overwritten in place; only new flows,
//! flows that left and records that closed move others.

use foldhash::HashSet;

use crate::snapshot::{FlowRecord, OrderKey, RowChange};
use monitor_common::flow::{FlowKey, FlowState};

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

/// What a reported record replaced: its order key, and the record before (`None`: it is
/// new to the table).
pub type Replaced = Vec<(OrderKey, Option<FlowState>)>;

/// Brings `table` (sorted, no two records with one order key) up to date. `closed_orders`
/// holds the order keys of the closed records already in it, and gains the new ones:
/// a closed record is history, never replaced or removed by its key.
pub fn apply(
    table: &mut Vec<FlowRecord>,
    closed_orders: &mut HashSet<OrderKey>,
    ch: Changes,
) -> Replaced {
    let mut remove: Vec<usize> = Vec::new();
    let mut insert: Vec<(OrderKey, FlowRecord)> = Vec::new();
    let mut replaced = Vec::with_capacity(ch.closed.len() + ch.fresh.len());
    for c in ch.closed {
        let k = OrderKey::of(&c);
        closed_orders.insert(k);
        match k.find(table) {
            Ok(i) => {
                replaced.push((k, Some(table[i].state)));
                table[i] = c;
            }
            Err(_) => {
                replaced.push((k, None));
                insert.push((k, c));
            }
        }
    }
    for f in ch.fresh {
        let k = OrderKey::of(&f);
        match k.find(table) {
            Ok(i) if table[i].key == f.key && !closed_orders.contains(&k) => {
                replaced.push((k, Some(table[i].state)));
                table[i] = f;
            }
            // A new flow, or a new record for a key whose old one ended unseen (evicted and
            // created again, or its closing lost): the old one goes.
            _ => {
                remove.extend(live_with_key(table, closed_orders, &f.key));
                replaced.push((k, None));
                insert.push((k, f));
            }
        }
    }
    for key in &ch.gone {
        remove.extend(live_with_key(table, closed_orders, key));
    }
    remove.sort_unstable();
    remove.dedup();
    remove_at(table, &remove);
    insert.sort_unstable_by_key(|(k, _)| *k);
    insert.dedup_by_key(|(k, _)| *k);
    merge(table, insert);
    replaced
}

/// The rows of the updated `table` that `replaced` changed, as [`crate::snapshot::changes`]
/// would find them by walking the whole table: in row order, unchanged records left out.
pub fn rows(table: &[FlowRecord], replaced: Replaced) -> Vec<RowChange> {
    let mut out: Vec<RowChange> = replaced
        .into_iter()
        .filter_map(|(k, before)| {
            let row = k.find(table).ok()?;
            (before.as_ref() != Some(&table[row].state)).then_some(RowChange { row, before })
        })
        .collect();
    out.sort_unstable_by_key(|c| c.row);
    out.dedup_by_key(|c| c.row);
    out
}

/// Indices of the live records of `key`: they sit among the records between the same
/// client and server, in whichever roles the key's endpoints were given.
fn live_with_key<'a>(
    table: &'a [FlowRecord],
    closed_orders: &'a HashSet<OrderKey>,
    key: &'a FlowKey,
) -> impl Iterator<Item = usize> + 'a {
    [false, true].into_iter().flat_map(move |client_is_a| {
        let probe = |first_seen_ns| {
            let mut r = FlowRecord {
                key: *key,
                state: Default::default(),
            };
            r.state.client_is_a = client_is_a as u8;
            r.state.first_seen_ns = first_seen_ns;
            OrderKey::of(&r)
        };
        let (lo, hi) = (probe(0), probe(u64::MAX));
        let start = table.partition_point(|r| OrderKey::of(r) < lo);
        let end = table.partition_point(|r| OrderKey::of(r) <= hi);
        (start..end).filter(move |&i| {
            table[i].key == *key && !closed_orders.contains(&OrderKey::of(&table[i]))
        })
    })
}

/// Removes the records at `sorted` indices, moving only those after the first.
fn remove_at(table: &mut Vec<FlowRecord>, sorted: &[usize]) {
    let Some(&first) = sorted.first() else { return };
    let mut gone = sorted.iter().peekable();
    let mut w = first;
    for r in first..table.len() {
        if gone.peek() == Some(&&r) {
            gone.next();
            continue;
        }
        table.swap(w, r);
        w += 1;
    }
    table.truncate(w);
}

/// Merges sorted `insert` into `table`, from the back: only records after the first
/// insertion point move, each once, and no second table is allocated.
fn merge(table: &mut Vec<FlowRecord>, insert: Vec<(OrderKey, FlowRecord)>) {
    if insert.is_empty() {
        return;
    }
    let mut i = table.len();
    table.extend(insert.iter().map(|(_, r)| r.clone()));
    let mut w = table.len();
    for (k, r) in insert.into_iter().rev() {
        while i > 0 && OrderKey::of(&table[i - 1]) > k {
            table.swap(i - 1, w - 1);
            i -= 1;
            w -= 1;
        }
        table[w - 1] = r;
        w -= 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
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
            // role of a new record, counter)
            prop::collection::vec((0u8..14, 0u8..4, any::<bool>(), 0u64..100), 0..10),
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
                    (2, _) => {
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
                    _ => {
                        // A new record for the key (new flow, or one evicted and back).
                        let new = record(id, role, 10 + n, n);
                        live.insert(key, new.clone());
                        ch.fresh.push(new);
                    }
                }
            }
            let mut table = sorted(c.live.iter().chain(&c.closed).cloned().collect());
            let before = table.clone();
            let mut orders: HashSet<OrderKey> = c.closed.iter().map(OrderKey::of).collect();
            let replaced = apply(&mut table, &mut orders, ch);
            let want = sorted(live.into_values().chain(closed).collect());
            prop_assert_eq!(&table, &want);
            // What changed, as the reports say it and as a walk of both tables finds it.
            prop_assert_eq!(rows(&table, replaced), crate::snapshot::changes(&before, &table));
        }
    }

    #[test]
    fn merge_and_remove_keep_order() {
        let mut t = sorted((0..8).map(|i| record(i, true, 1, 0)).collect());
        let all = t.clone();
        remove_at(&mut t, &[1, 2, 6]);
        let back: Vec<_> = [1usize, 2, 6]
            .iter()
            .map(|&i| (OrderKey::of(&all[i]), all[i].clone()))
            .collect();
        merge(&mut t, back);
        assert_eq!(t, all);
    }
}
