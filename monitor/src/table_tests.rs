//! The table against a naive model: a map of every flow id to its record, rebuilt from
//! what each tick read. Whatever the ticks, the rows are the model's and the change set
//! is the difference between the model before and after.

use std::collections::BTreeMap;

use super::*;
use crate::model::OrderKey;
use proptest::prelude::*;

/// A record between two endpoints, IPv4 or IPv6; `v6` picks the family of both.
fn record(v6: bool, a: u128, pa: u16, b: u128, pb: u16, client_is_a: bool, t: u64) -> FlowRecord {
    let mut key = FlowKey {
        port_a: pa,
        port_b: pb,
        family: if v6 { 6 } else { 4 },
        ..FlowKey::default()
    };
    if v6 {
        key.addr_a = a.to_be_bytes();
        key.addr_b = b.to_be_bytes();
    } else {
        key.addr_a[..4].copy_from_slice(&(a as u32).to_be_bytes());
        key.addr_b[..4].copy_from_slice(&(b as u32).to_be_bytes());
    }
    let state = FlowStats {
        first_seen_ns: t,
        client_is_a: client_is_a as u8,
        ..FlowStats::default()
    };
    FlowRecord { key, state }
}

fn any_record() -> impl Strategy<Value = FlowRecord> {
    // Few distinct values, so equal parts are common and later fields decide.
    (
        any::<bool>(),
        0u128..3,
        0u16..3,
        prop_oneof![Just(0u128), Just(u128::MAX), 0u128..3],
        0u16..3,
        any::<bool>(),
        0u64..3,
    )
        .prop_map(|(v6, a, pa, b, pb, c, t)| record(v6, a << 90 | a, pa, b, pb, c, t))
}

proptest! {
    /// Snapshot order is client, then server (as `SocketAddr`s order them: IPv4 first,
    /// then address, then port), then first seen.
    #[test]
    fn flows_sort_by_client_then_server_then_start(x in any_record(), y in any_record()) {
        let plain = |f: &FlowRecord| (f.client(), f.server(), f.state.first_seen_ns);
        prop_assert_eq!(OrderKey::of(&x).cmp(&OrderKey::of(&y)), plain(&x).cmp(&plain(&y)));
    }
}

/// A record of key number `k` (a few keys, so that they collide), first seen at `t`.
fn rec(k: u8, t: u64, packets: u64) -> FlowRecord {
    let mut key = FlowKey {
        family: 4,
        port_a: 40_000 + u16::from(k % 3),
        port_b: 50_000,
        ..FlowKey::default()
    };
    key.addr_a[..4].copy_from_slice(&[10, 0, 0, 1 + k / 3]);
    key.addr_b[..4].copy_from_slice(&[10, 0, 1, 1]);
    let mut state = FlowStats {
        first_seen_ns: t,
        client_is_a: 1,
        ..FlowStats::default()
    };
    state.dir[0].packets = packets;
    FlowRecord { key, state }
}

#[derive(Clone, Debug)]
enum Op {
    /// The kernel's record of key `k`: first seen at `t`, `n` packets.
    Put(u8, u64, u64),
    /// Port reuse ended key `k`'s live connection (its record read with `n` packets).
    Close(u8, u64),
    Evict(u8),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0u8..6, 0u64..3, 0u64..4).prop_map(|(k, t, n)| Op::Put(k, t, n)),
        1 => (0u8..6, 0u64..4).prop_map(|(k, n)| Op::Close(k, n)),
        1 => (0u8..6).prop_map(Op::Evict),
    ]
}

/// Each tick: its operations, and whether it read every live flow (then the ones it did
/// not put are gone).
fn ticks() -> impl Strategy<Value = Vec<(Vec<Op>, bool)>> {
    prop::collection::vec((prop::collection::vec(op(), 0..8), any::<bool>()), 1..8)
}

/// The naive model: flow id to (record, closed).
type Model = BTreeMap<FlowId, (FlowRecord, bool)>;

fn live_id(m: &Model, key: &FlowKey) -> Option<FlowId> {
    m.iter()
        .find(|(id, (_, closed))| id.key == *key && !closed)
        .map(|(id, _)| *id)
}

proptest! {
    #[test]
    fn the_table_is_the_model_and_its_changes_the_difference(ticks in ticks()) {
        let mut table = FlowTable::default();
        let mut model = Model::new();
        for (ops, whole) in ticks {
            table.begin();
            let before = model.clone();
            let mut read = std::collections::BTreeSet::new();
            // A flow the kernel let go comes back as another record (a later first seen):
            // not as the same one within the tick.
            let mut gone = std::collections::BTreeSet::new();
            let mut put_keys = std::collections::BTreeSet::new();
            for op in ops {
                match op {
                    Op::Put(k, t, n) => {
                        // First seen is fixed for a connection: a later start is a new one.
                        let r = rec(k, t, n);
                        let id = FlowId::of(&r);
                        // The kernel's record of a key is read once a tick.
                        if gone.contains(&id) || !put_keys.insert(k) {
                            continue;
                        }
                        // A connection already closed is not written again by a put.
                        if model.get(&id).is_some_and(|(_, closed)| *closed) {
                            continue;
                        }
                        if let Some(old) = live_id(&model, &r.key) {
                            if old != id {
                                model.remove(&old);
                                gone.insert(old);
                            }
                        }
                        read.insert(id);
                        model.insert(id, (r.clone(), false));
                        table.put(r);
                    }
                    Op::Close(k, n) => {
                        let Some(id) = live_id(&model, &rec(k, 0, 0).key) else {
                            continue;
                        };
                        let r = rec(k, id.first_seen_ns, n);
                        model.insert(id, (r.clone(), true));
                        table.close(r);
                    }
                    Op::Evict(k) => {
                        let key = rec(k, 0, 0).key;
                        if let Some(id) = live_id(&model, &key) {
                            model.remove(&id);
                            gone.insert(id);
                        }
                        table.evict(&key);
                    }
                }
            }
            if whole {
                model.retain(|id, (_, closed)| *closed || read.contains(id));
                table.drop_unread();
            }
            // The rows are the model's.
            let rows: Model = table
                .rows()
                .map(|(_, r)| (FlowId::of(&r.flow), (r.flow.clone(), r.closed)))
                .collect();
            prop_assert_eq!(&rows, &model);
            for id in model.keys() {
                let at = table.find(id);
                prop_assert!(at.is_some_and(|i| table.row(i).is_some_and(|r| FlowId::of(&r.flow) == *id)));
            }
            // The change set is the difference.
            let ch = table.changes();
            let id_of = |i: u32| table.row(i).map(|r| FlowId::of(&r.flow));
            let added: std::collections::BTreeSet<FlowId> =
                ch.added.iter().filter_map(|&i| id_of(i)).collect();
            let want_added: std::collections::BTreeSet<FlowId> =
                model.keys().filter(|id| !before.contains_key(id)).copied().collect();
            prop_assert_eq!(added, want_added);
            let removed: std::collections::BTreeSet<FlowId> =
                ch.removed.iter().map(|(_, r)| FlowId::of(r)).collect();
            let want_removed: std::collections::BTreeSet<FlowId> =
                before.keys().filter(|id| !model.contains_key(id)).copied().collect();
            prop_assert_eq!(removed, want_removed);
            let changed: BTreeMap<FlowId, FlowStats> = ch
                .changed
                .iter()
                .filter_map(|(i, b)| id_of(*i).map(|id| (id, b.clone())))
                .collect();
            let want_changed: BTreeMap<FlowId, FlowStats> = model
                .iter()
                .filter_map(|(id, (r, closed))| {
                    let (b, was_closed) = before.get(id)?;
                    (b.state != r.state || was_closed != closed).then(|| (*id, b.state.clone()))
                })
                .collect();
            prop_assert_eq!(changed, want_changed);
        }
    }
}

#[test]
fn closed_rows_are_bounded_and_the_ones_closed_this_tick_stay() {
    let mut t = FlowTable::default();
    t.begin();
    for n in 0..(KEEP_CLOSED as u64 + 10) {
        t.close(rec(0, n, 1));
    }
    // All closed in this tick: none may go yet.
    assert_eq!(t.closed_len(), KEEP_CLOSED + 10);
    t.begin();
    t.close(rec(1, 0, 1));
    assert_eq!(
        t.closed_len(),
        KEEP_CLOSED,
        "the oldest went, down to the bound"
    );
    assert_eq!(t.closed_dropped, 11);
    assert!(
        t.find(&FlowId::of(&rec(1, 0, 1))).is_some(),
        "this tick's stays"
    );
}
#[test]
fn a_row_stays_small() {
    // One per flow: at a million flows each byte here is a megabyte resident.
    let row = std::mem::size_of::<Option<FlowRow>>();
    assert!(row <= 360, "a flow table row grew to {row} bytes");
}
