//! Connection records port reuse closed (a new ISN on a 4-tuple ends the record before it),
//! which the kernel hands over once through its `CLOSED` ring and no longer holds. The
//! collector keeps them as rows of its table, so that the outputs show a connection that
//! ended, but not forever: past [`KEEP`] the oldest go, counted, and never one that closed
//! in the tick being made, so every closed connection is in at least the snapshot (JSON,
//! recording, UI) of the tick it closed.

use foldhash::HashSet;

use crate::{model::FlowRecord, snapshot::OrderKey};

/// Closed records kept at most past a tick's own (about 9 MB of records). Trimming goes
/// down to half of it, so that the whole read a trim costs (rows leave the table) comes
/// once per `KEEP / 2` closed connections, not once per tick.
pub const KEEP: usize = 16_384;

#[derive(Debug, Default)]
pub(crate) struct Closed {
    /// Oldest first, as the kernel handed them over.
    records: Vec<FlowRecord>,
    /// Their order keys: the table never replaces those records by key.
    orders: HashSet<OrderKey>,
    /// Records trimmed so far: still connections the kernel created and closed, neither
    /// evicted nor lost.
    pub dropped: u64,
}

impl Closed {
    /// The records kept, oldest first.
    pub fn records(&self) -> &[FlowRecord] {
        &self.records
    }

    pub(crate) fn orders(&self) -> &HashSet<OrderKey> {
        &self.orders
    }

    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Adds the records closed since the last tick, then trims the oldest of the others
    /// if there are more than [`KEEP`]. True when records went: they are rows of the
    /// table, which only a whole read takes out.
    pub fn add(&mut self, fresh: &[FlowRecord]) -> bool {
        self.records.extend_from_slice(fresh);
        self.orders.extend(fresh.iter().map(OrderKey::of));
        if self.records.len() <= KEEP {
            return false;
        }
        let older = self.records.len() - fresh.len();
        let go = (self.records.len() - KEEP / 2).min(older);
        if go == 0 {
            return false;
        }
        for r in self.records.drain(..go) {
            self.orders.remove(&OrderKey::of(&r));
        }
        self.dropped += go as u64;
        log::debug!(
            "{go} records of connections closed by port reuse no longer shown ({} in all)",
            self.dropped
        );
        true
    }

    /// Bytes held (the benchmark's account of resident memory).
    pub fn bytes(&self) -> u64 {
        use crate::footprint::buffer;
        buffer::<FlowRecord>(self.records.capacity()) + buffer::<OrderKey>(self.orders.capacity())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use monitor_common::flow::FlowState;

    /// The record of the connection that started at `t` on one 4-tuple.
    fn record(t: u64) -> FlowRecord {
        let mut state = FlowState {
            first_seen_ns: t,
            client_is_a: 1,
            ..FlowState::default()
        };
        state.key.family = 4;
        state.key.port_a = 40_000;
        state.key.port_b = 443;
        FlowRecord {
            key: state.key,
            state,
        }
    }

    #[test]
    fn stays_bounded_over_many_ticks_of_port_reuse_and_keeps_each_ticks_own() {
        let mut c = Closed::default();
        let mut next = 0u64;
        let mut trims = 0;
        for tick in 0..2_000u64 {
            // A varying number a tick, some ticks more than KEEP alone.
            let n = match tick % 100 {
                0 => KEEP as u64 + 10,
                k => 40 + k * 7,
            };
            let fresh: Vec<FlowRecord> = (next..next + n).map(record).collect();
            next += n;
            trims += c.add(&fresh) as u32;
            // This tick's records are all there, the newest last.
            assert!(c.len() >= fresh.len());
            assert_eq!(&c.records()[c.len() - fresh.len()..], &fresh[..]);
            // Bounded: at most KEEP, or half of it and this tick's.
            assert!(c.len() <= KEEP.max(KEEP / 2 + fresh.len()), "{}", c.len());
            // Every record closed is kept or counted dropped, the oldest dropped first.
            assert_eq!(c.len() as u64 + c.dropped, next);
            assert_eq!(c.records()[0].state.first_seen_ns, c.dropped);
            assert_eq!(c.orders().len(), c.len());
        }
        // A trim at most every KEEP / 2 records, not every tick.
        assert!(trims > 0 && (trims as u64) <= next / (KEEP as u64 / 2) + 1);
    }
}
