//! One consistent view of everything the monitor knows at a tick. Outputs render from it
//! and never touch the kernel.

use std::sync::Arc;

use crate::model::{
    outcome, Alert, Counters, FlowHealth, FlowId, FlowRecord, IfaceTraffic, Point,
    HANDSHAKE_TIMEOUT_S,
};
use monitor_common::{
    flow::{FlowKey, FlowState},
    stats,
};

#[derive(Clone, Debug)]
pub struct Snapshot {
    /// Sorted by client, then server, then first seen (a reused 4-tuple is several records).
    /// Shared with the collector, which keeps the table between ticks and changes only
    /// what moved: a snapshot is not a copy of every record.
    pub flows: Arc<Vec<FlowRecord>>,
    pub counters: Counters,
    /// Flows the kernel created that are no longer in its map: the LRU evicted them.
    /// Records lost with a full ring are not among them (see `lost_flows`).
    pub evicted_flows: u64,
    /// Records of closed connections the kernel could not hand over, its ring full
    /// between two ticks: a larger map would not have kept them.
    pub lost_flows: u64,
    /// When the snapshot was taken (epoch ns; a capture's last timestamp for replay).
    pub now_ns: u64,
    /// The alert engine's view of each flow, aligned with `flows` (empty: not judged).
    /// Shared: the alert engine writes the next tick's into the list of a snapshot
    /// everybody let go (see `shelf`).
    pub health: Arc<Vec<FlowHealth>>,
    /// Active alerts (worst first), then recently cleared ones (newest first).
    pub alerts: Vec<Alert>,
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
    /// The rows whose record differs from the previous snapshot of the same source, in
    /// row order (`None`: not known; a consumer can find them with [`changes`]). A tick
    /// changes a few rows of a big table, and consumers that count should not walk it.
    pub changed: Option<Vec<RowChange>>,
}

/// A row of a snapshot whose record changed since the previous snapshot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RowChange {
    pub row: usize,
    /// The record before (`None`: new to this snapshot).
    pub before: Option<FlowState>,
}

/// The rows of `new` that are not in `old` as they are: one walk of both (each sorted in
/// snapshot order). Records of `old` gone from `new` are not rows of it, and are left out.
pub fn changes(old: &[FlowRecord], new: &[FlowRecord]) -> Vec<RowChange> {
    let old_orders: Vec<OrderKey> = old.iter().map(OrderKey::of).collect();
    let (pairs, _) = pair(&old_orders, new);
    pairs
        .into_iter()
        .zip(new)
        .enumerate()
        .filter_map(|(row, (j, f))| match j {
            Some(j) if old[j].state == f.state => None,
            j => Some(RowChange {
                row,
                before: j.map(|j| old[j].state),
            }),
        })
        .collect()
}

impl Default for Snapshot {
    fn default() -> Self {
        Self::sorted(Arc::default(), 0, Counters::default(), 0)
    }
}

impl Snapshot {
    /// `live` is how many of `flows` are still in the kernel map (the rest were closed).
    pub fn new(mut flows: Vec<FlowRecord>, live: u64, counters: Counters, now_ns: u64) -> Self {
        // Sorted where they are: the small keys are sorted, then the records moved once
        // each into place (no second copy of a big table).
        flows.sort_by_cached_key(OrderKey::of);
        Self::sorted(Arc::new(flows), live, counters, now_ns)
    }

    /// A flow's handshake outcome at this snapshot, or `None` while pending.
    pub fn outcome(&self, st: &FlowState) -> Option<&'static str> {
        outcome(st, self.now_ns, self.handshake_timeout_ns)
    }

    /// As [`Snapshot::new`], for `flows` already in snapshot order.
    pub fn sorted(flows: Arc<Vec<FlowRecord>>, live: u64, counters: Counters, now_ns: u64) -> Self {
        let created = counters.get(stats::FLOWS_CREATED);
        let closed = flows.len() as u64 - live;
        // A record port reuse closed leaves the map for the ring: if the ring is full it is
        // neither live nor closed here, and must not count as evicted.
        let lost_flows = counters.get(stats::CLOSED_LOST);
        let evicted_flows = created.saturating_sub(live + closed + lost_flows);
        Self {
            flows,
            counters,
            evicted_flows,
            lost_flows,
            now_ns,
            health: Arc::default(),
            alerts: Vec::new(),
            judged: false,
            spark: None,
            collect_ns: 0,
            interfaces: Vec::new(),
            handshake_timeout_ns: (HANDSHAKE_TIMEOUT_S * 1e9) as u64,
            changed: None,
        }
    }
}

/// For each flow of `flows`, the index of its state in a consumer's list kept in the
/// previous snapshot's order, whose order keys are `old` (a dense list: walking the states
/// themselves cost a cache miss per flow); and the flows' own order keys, the consumer's
/// `old` next time. Both are sorted the same way, so one walk pairs nearly all. What the
/// walk misses (a list out of order) is looked up by key, so the result never depends on
/// order. Equal order keys are the same connection record: same endpoints, same start.
pub(crate) fn pair(old: &[OrderKey], flows: &[FlowRecord]) -> (Vec<Option<usize>>, Vec<OrderKey>) {
    let keys: Vec<OrderKey> = flows.iter().map(OrderKey::of).collect();
    let mut walk = Walk::new(old);
    let mut out: Vec<Option<usize>> = keys.iter().map(|k| walk.step(k)).collect();
    if out.iter().any(Option::is_none) {
        let spare = walk.spare();
        for (o, k) in out.iter_mut().zip(&keys) {
            if o.is_none() {
                *o = spare.get(k).copied();
            }
        }
    }
    (out, keys)
}

/// The walk of [`pair`] one flow at a time, for a consumer that reads each flow's record
/// as it goes: the record is read once, for its key and for the consumer's work.
pub(crate) struct Walk<'a> {
    old: &'a [OrderKey],
    next: usize,
    taken: Vec<bool>,
}

impl<'a> Walk<'a> {
    pub(crate) fn new(old: &'a [OrderKey]) -> Self {
        Self {
            old,
            next: 0,
            taken: vec![false; old.len()],
        }
    }

    /// Where the walk stands in `old`: the entries just ahead are the next flows' states
    /// most likely (worth prefetching).
    pub(crate) fn position(&self) -> usize {
        self.next
    }

    /// The index in `old` of the next flow's state, keys given in snapshot order; `None`
    /// when the walk does not meet it (a new flow, or a list out of order: see `spare`).
    pub(crate) fn step(&mut self, k: &OrderKey) -> Option<usize> {
        while self.next < self.old.len() && self.old[self.next] < *k {
            self.next += 1;
        }
        let j = self.next;
        (j < self.old.len() && self.old[j] == *k).then(|| {
            self.taken[j] = true;
            self.next += 1;
            j
        })
    }

    /// The entries of `old` no step took, by key: a lookup for the flows the walk missed.
    pub(crate) fn spare(self) -> foldhash::HashMap<OrderKey, usize> {
        self.old
            .iter()
            .enumerate()
            .filter(|(j, _)| !self.taken[*j])
            .map(|(j, k)| (*k, j))
            .collect()
    }
}

/// Client, then server, then first seen, as bytes that compare as `SocketAddr`s do
/// (family, address, port, all big-endian), packed into big-endian words: comparing words
/// is a few integer compares where comparing the bytes was a `memcmp` call, and a tick
/// compares keys tens of millions of times at a million flows (sorting, pairing).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct OrderKey([u64; 6]);

impl OrderKey {
    /// Where the record with this key is, or would be, in `flows` (in snapshot order).
    pub(crate) fn find(&self, flows: &[FlowRecord]) -> Result<usize, usize> {
        flows.binary_search_by(|r| OrderKey::of(r).cmp(self))
    }

    /// Straight from the key's bytes (an IPv4 address is its first four, the rest zero),
    /// which is what `SocketAddr`s would compare, without building them.
    pub(crate) fn of(f: &FlowRecord) -> Self {
        Self::parts(&f.key, f.state.client_is_a != 0, f.state.first_seen_ns)
    }

    /// The order key a record of `key` with these roles and start would have.
    pub(crate) fn parts(k: &FlowKey, client_is_a: bool, first_seen_ns: u64) -> Self {
        let ((ca, cp), (sa, sp)) = if client_is_a {
            ((&k.addr_a, k.port_a), (&k.addr_b, k.port_b))
        } else {
            ((&k.addr_b, k.port_b), (&k.addr_a, k.port_a))
        };
        let v6 = u8::from(k.family != 4);
        let mut b = [0u8; 48];
        for (at, a, p) in [(0, ca, cp), (19, sa, sp)] {
            b[at] = v6;
            b[at + 1..at + 17].copy_from_slice(a);
            b[at + 17..at + 19].copy_from_slice(&p.to_be_bytes());
        }
        b[38..46].copy_from_slice(&first_seen_ns.to_be_bytes());
        let mut w = [0u64; 6];
        for (w, c) in w.iter_mut().zip(b.chunks_exact(8)) {
            *w = u64::from_be_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
        }
        Self(w)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A record between two endpoints, IPv4 or IPv6; `v6` picks the family of both.
    fn record(
        v6: bool,
        a: u128,
        pa: u16,
        b: u128,
        pb: u16,
        client_is_a: bool,
        t: u64,
    ) -> FlowRecord {
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
        let state = FlowState {
            key,
            first_seen_ns: t,
            client_is_a: client_is_a as u8,
            ..FlowState::default()
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
}
