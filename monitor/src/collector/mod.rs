//! Reads the kernel's maps into a [`Snapshot`] and drains its event ring buffer.
//!
//! The first tick reads the flow map whole; later ticks read back only the flows the
//! kernel reported changed (see `mark` in the eBPF program) and update the table kept
//! from the tick before. When the kernel could not report everything (its ring was full,
//! or the map evicted flows), the tick reads the map whole again.

mod batch;
mod clock;
pub mod closed;
mod presence;
mod table;

use anyhow::{Context, Result};
use aya::{
    maps::{Array, HashMap, MapData, PerCpuArray, RingBuf},
    Ebpf,
};
use monitor_common::{
    event::Event,
    flow::{Changed, FlowKey, FlowState},
    sample::{Sample, SAMPLE_BYTES},
    stats,
};

pub use clock::Clock;
pub use presence::Presence;

use crate::{
    model::{Counters, FlowRecord, IfaceTraffic},
    shelf::Lent,
    snapshot::{changes, OrderKey, RowChange, Snapshot},
};

pub struct Collector {
    flows: HashMap<MapData, FlowKey, FlowState>,
    /// The same map read in batches, where the kernel can.
    batch: Option<batch::BatchReader>,
    stats: PerCpuArray<MapData, u64>,
    ifaces: PerCpuArray<MapData, stats::IfCounters>,
    /// The watched interfaces: name and ifindex.
    targets: Vec<(String, u32)>,
    /// Asks whether they still exist (`None`: not asked, as in tests of the program).
    presence: Option<Presence>,
    /// Those found gone, aligned with `targets`: once gone, an interface stays gone (its
    /// hooks went with it, and nothing attaches them again).
    gone: Vec<bool>,
    events: RingBuf<MapData>,
    /// First payload bytes of flows' first segments (`monitor_common::sample`).
    samples: RingBuf<MapData>,
    /// The kernel's log of its failures, moved into the `log` crate at each tick.
    kernel_log: Option<crate::kernel::load::KernelLog>,
    closed_rb: RingBuf<MapData>,
    /// Connection records ended by port reuse, kept (bounded) as rows of the table.
    closed: closed::Closed,
    /// Live records and closed ones, in snapshot order, as of the last tick; shared with
    /// its snapshot. A UI still shows the last snapshot: the next tick edits the table lent
    /// before (brought up to date by copying the rows the last tick wrote) instead of
    /// copying the whole table.
    table: Lent<FlowRecord>,
    /// Whether `table` is a base later ticks can update (false: read the map whole).
    synced: bool,
    epoch_map: Array<MapData, u32>,
    epoch: u32,
    changed: RingBuf<MapData>,
    /// Flows reported in the epoch that was current at the last tick: they may have
    /// changed again after that tick read them, unreported (see `mark`), so read again.
    recent: Vec<FlowKey>,
    /// The kernel's count of lost reports at the last tick.
    lost_changes: u64,
    /// The map's size, and how close to it the LRU may start evicting: it hands out free
    /// entries to each CPU in batches (up to 128), and evicts when the shared pool runs low.
    max_flows: u64,
    evict_margin: u64,
    /// How many full reads and how many updates from reports (for the benchmarks).
    pub reads: ReadCounts,
    clock: Clock,
}

/// How the ticks so far read the kernel map.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReadCounts {
    pub full: u64,
    pub changed: u64,
    /// Records read back one by one for reported flows.
    pub records: u64,
    /// Updates that had to copy the table (the previous two snapshots were still held,
    /// or the table lent before was a whole read behind).
    pub copies: u64,
}

fn take(ebpf: &mut Ebpf, name: &str) -> Result<aya::maps::Map> {
    ebpf.take_map(name)
        .with_context(|| format!("map {name} missing from the eBPF object"))
}

impl Collector {
    /// Takes the maps out of `ebpf` (its programs and links stay there). `targets` are the
    /// watched interfaces (name, ifindex), for their traffic counters.
    pub fn new(ebpf: &mut Ebpf, clock: Clock, targets: Vec<(String, u32)>) -> Result<Self> {
        let flows = take(ebpf, "FLOWS")?;
        let max_flows = match &flows {
            aya::maps::Map::LruHashMap(d) | aya::maps::Map::HashMap(d) => d.info()?.max_entries(),
            _ => 0,
        } as u64;
        let batch = match &flows {
            aya::maps::Map::LruHashMap(d) | aya::maps::Map::HashMap(d) => {
                use std::os::fd::AsFd;
                d.fd()
                    .as_fd()
                    .try_clone_to_owned()
                    .ok()
                    .map(batch::BatchReader::new)
            }
            _ => None,
        };
        Ok(Self {
            flows: HashMap::try_from(flows)?,
            batch,
            stats: PerCpuArray::try_from(take(ebpf, "STATS")?)?,
            ifaces: PerCpuArray::try_from(take(ebpf, "IFACES")?)?,
            gone: vec![false; targets.len()],
            targets,
            presence: None,
            events: RingBuf::try_from(take(ebpf, "EVENTS")?)?,
            samples: RingBuf::try_from(take(ebpf, "SAMPLES")?)?,
            kernel_log: crate::kernel::load::KernelLog::take(ebpf),
            closed_rb: RingBuf::try_from(take(ebpf, "CLOSED")?)?,
            closed: closed::Closed::default(),
            table: Lent::default(),
            synced: false,
            epoch_map: Array::try_from(take(ebpf, "EPOCH")?)?,
            epoch: 0,
            changed: RingBuf::try_from(take(ebpf, "CHANGED")?)?,
            recent: Vec::new(),
            lost_changes: 0,
            max_flows,
            evict_margin: 256 * (aya::util::nr_cpus().unwrap_or(64) as u64 + 1),
            reads: ReadCounts::default(),
            clock,
        })
    }

    /// What the collector holds for its flows (the benchmark's account of resident
    /// memory): the records, as lent with the last snapshot and the spare table.
    pub fn footprint(&self) -> crate::footprint::Footprint {
        vec![(
            "flow records (lent and spare)",
            self.table.bytes() + self.closed.bytes(),
        )]
    }

    pub fn counters(&self) -> Result<Counters> {
        let mut c = Counters::default();
        for idx in 0..stats::COUNT {
            let per_cpu = self.stats.get(&idx, 0).context("reading STATS")?;
            c.0[idx as usize] = per_cpu.iter().sum();
        }
        Ok(c)
    }

    /// From now on, each tick asks `presence` whether the watched interfaces still exist.
    pub fn watch_presence(&mut self, presence: Presence) {
        self.presence = Some(presence);
    }

    /// Traffic of each watched interface, ingress and egress, summed over CPUs, and
    /// whether it is gone.
    pub fn interfaces(&mut self) -> Result<Vec<IfaceTraffic>> {
        if let Some(p) = &self.presence {
            for (gone, (_, index)) in self.gone.iter_mut().zip(&self.targets) {
                *gone = *gone || !p.exists(*index);
            }
        }
        let mut out = Vec::with_capacity(self.targets.len());
        for ((name, index), gone) in self.targets.iter().zip(&self.gone) {
            let mut dirs = [stats::IfCounters::default(); 2];
            for (d, egress) in [false, true].into_iter().enumerate() {
                let per_cpu = self
                    .ifaces
                    .get(&stats::if_slot(*index, egress), 0)
                    .context("reading IFACES")?;
                for c in per_cpu.iter() {
                    dirs[d].packets += c.packets;
                    dirs[d].bytes += c.bytes;
                }
            }
            out.push(IfaceTraffic {
                name: name.clone(),
                rx: dirs[0],
                tx: dirs[1],
                gone: *gone,
            });
        }
        Ok(out)
    }

    /// Every flow in the map, and the records port reuse closed.
    pub fn collect(&mut self) -> Result<Snapshot> {
        if let Some(l) = &mut self.kernel_log {
            l.flush();
        }
        // A new epoch first: every change from here on is reported again (see `mark`).
        self.epoch = self.epoch.wrapping_add(1).max(1);
        self.epoch_map
            .set(0, self.epoch, 0)
            .context("advancing the marking epoch")?;
        // Reports before records that closed: a new connection's report comes after the
        // record of the one it replaced, so that record is here when the report is.
        let keys = self.drain_changed();
        let closed = self.drain_closed();
        // Older closed records trimmed: rows leave the table, which a whole read does.
        let trimmed = self.closed.add(&closed);
        let counters = self.counters()?;
        let lost = counters.get(stats::CHANGES_LOST);
        // Past this many, one batch read of everything costs less than lookups one by one.
        let cheap = keys.len() <= self.table.current().len() / 4 + 1024;
        let mut changed = None;
        if self.synced && lost == self.lost_changes && cheap && !trimmed {
            changed = self.update(keys, closed)?;
        }
        let changed = match changed {
            Some(rows) => rows,
            None => self.read_all()?,
        };
        self.lost_changes = lost;
        let mut snap = Snapshot::sorted(
            self.table.shared(),
            self.live(),
            counters,
            self.clock.now_epoch(),
        );
        // Trimmed closed records were neither evicted nor lost.
        snap.evicted_flows = snap.evicted_flows.saturating_sub(self.closed.dropped);
        snap.changed = Some(changed);
        snap.interfaces = self.interfaces()?;
        Ok(snap)
    }

    fn live(&self) -> u64 {
        (self.table.current().len() - self.closed.len()) as u64
    }

    /// The table from the last tick, updated with the reported flows, and the rows that
    /// changed. `None` when it cannot be trusted: the LRU map may have evicted flows, which
    /// it does not report. It evicts only near full, and every flow it holds was reported,
    /// so the table holds at least as many live flows as the map; a reported flow no longer
    /// there was evicted. Also `None` when a record of the table must go (see
    /// `table::plan`).
    fn update(
        &mut self,
        keys: Vec<FlowKey>,
        closed: Vec<FlowRecord>,
    ) -> Result<Option<Vec<RowChange>>> {
        let mut ch = table::Changes {
            closed,
            ..Default::default()
        };
        for key in keys {
            match self.flows.get(&key, 0) {
                Ok(st) => ch.fresh.push(record(self.clock, st)),
                Err(aya::maps::MapError::KeyNotFound) => ch.gone.push(key),
                Err(e) => return Err(e).context("reading FLOWS"),
            }
        }
        // Checked before the table changes: a whole read then walks it as last shown.
        // Each reported flow adds at most one live record. (A flow gone: see `plan`.)
        // The table does not hold this tick's closed records yet (those are kept already).
        let closed_before = self.closed.len() - ch.closed.len();
        let live_before = self.table.current().len().saturating_sub(closed_before);
        let live = (live_before + ch.fresh.len()) as u64;
        if live + self.evict_margin >= self.max_flows {
            return Ok(None);
        }
        let records = ch.fresh.len() as u64;
        let Some(plan) = table::plan(self.table.current(), self.closed.orders(), ch) else {
            return Ok(None);
        };
        self.reads.records += records;
        self.reads.changed += 1;
        self.table.lend_edited(plan.inserted, plan.rows);
        self.reads.copies = self.table.copies;
        Ok(Some(plan.changed))
    }

    /// Reads the whole map into a new table; the rows that changed are found by walking
    /// it with the old one, which is dropped only then.
    fn read_all(&mut self) -> Result<Vec<RowChange>> {
        let new = self.read_whole(self.table.current().len())?;
        let changed = changes(self.table.current(), &new);
        self.table.lend(new);
        self.synced = true;
        self.reads.full += 1;
        Ok(changed)
    }

    /// Every record in the map and every closed one, in snapshot order, read now; the
    /// table the ticks keep is left alone (tests hold it to this).
    pub fn whole(&mut self) -> Result<Vec<FlowRecord>> {
        self.read_whole(self.table.current().len())
    }

    fn read_whole(&mut self, expect: usize) -> Result<Vec<FlowRecord>> {
        let clock = self.clock;
        // Sized for the table as the last tick found it: growing by doubling would copy
        // the records several times over.
        let mut buf = Vec::with_capacity(expect + expect / 16);
        let batched = match self.batch.as_mut() {
            Some(b) => b
                .read(|_, st| buf.push(record(clock, *st)))
                .context("reading FLOWS in batches")?,
            None => false,
        };
        if !batched {
            self.batch = None;
            buf.clear();
            for item in self.flows.iter() {
                match item {
                    Ok((_, state)) => buf.push(record(clock, state)),
                    // The entry was evicted between listing and reading it.
                    Err(aya::maps::MapError::KeyNotFound) => continue,
                    Err(e) => return Err(e).context("reading FLOWS"),
                }
            }
            // The key-by-key walk starts over when the key it stands on is evicted, and
            // can visit an entry twice. Batches go bucket by bucket, each read whole under
            // its lock, and a key always hashes to the same bucket: no duplicates there.
            let mut seen = foldhash::HashSet::default();
            buf.retain(|f| seen.insert(f.key));
        }
        buf.extend_from_slice(self.closed.records());
        // Sorted where it is: the small keys are sorted, then the records moved once.
        buf.sort_by_cached_key(OrderKey::of);
        Ok(buf)
    }

    /// Keys reported since the last tick, once each, with those reported in the epoch
    /// that tick opened.
    fn drain_changed(&mut self) -> Vec<FlowKey> {
        let mut keys = std::mem::take(&mut self.recent);
        while let Some(item) = self.changed.next() {
            if item.len() >= std::mem::size_of::<Changed>() {
                // SAFETY: the kernel wrote a `Changed` (repr(C), any bit pattern valid).
                let c: Changed =
                    unsafe { std::ptr::read_unaligned(item.as_ptr() as *const Changed) };
                keys.push(c.key);
                if c.epoch == self.epoch {
                    self.recent.push(c.key);
                }
            }
        }
        let mut seen = foldhash::HashSet::default();
        keys.retain(|k| seen.insert(*k));
        keys
    }

    /// Records port reuse closed since the last tick.
    fn drain_closed(&mut self) -> Vec<FlowRecord> {
        let mut out = Vec::new();
        while let Some(item) = self.closed_rb.next() {
            if item.len() >= std::mem::size_of::<FlowState>() {
                // SAFETY: the kernel wrote a `FlowState` (repr(C), any bit pattern valid).
                let st: FlowState =
                    unsafe { std::ptr::read_unaligned(item.as_ptr() as *const FlowState) };
                out.push(record(self.clock, st));
            }
        }
        out
    }

    /// Closed records no longer shown, trimmed to bound what the collector holds.
    pub fn closed_dropped(&self) -> u64 {
        self.closed.dropped
    }

    /// Events the kernel sent since the last call, timestamps in Unix-epoch ns.
    pub fn drain_events(&mut self) -> Vec<Event> {
        let mut out = Vec::new();
        while let Some(item) = self.events.next() {
            if item.len() >= std::mem::size_of::<Event>() {
                // SAFETY: the kernel wrote an `Event` (repr(C), any bit pattern valid).
                let mut ev: Event =
                    unsafe { std::ptr::read_unaligned(item.as_ptr() as *const Event) };
                ev.ts_ns = self.clock.to_epoch(ev.ts_ns);
                out.push(ev);
            }
        }
        out
    }

    /// Payload samples the kernel took since the last call, in the order it took them,
    /// timestamps in Unix-epoch ns. The bytes past a sample's `len` are zeroed: the kernel
    /// leaves them as the ring had them.
    pub fn drain_samples(&mut self) -> Vec<Sample> {
        let mut out = Vec::new();
        while let Some(item) = self.samples.next() {
            if item.len() >= std::mem::size_of::<Sample>() {
                // SAFETY: the kernel wrote a `Sample` (repr(C), any bit pattern valid).
                let mut s: Sample =
                    unsafe { std::ptr::read_unaligned(item.as_ptr() as *const Sample) };
                s.ts_ns = self.clock.to_epoch(s.ts_ns);
                let n = (s.len as usize).min(SAMPLE_BYTES);
                s.len = n as u16;
                s.bytes[n..].fill(0);
                out.push(s);
            }
        }
        out
    }
}

/// A kernel record as the outputs see it: times on the Unix epoch, the marking epoch
/// (kernel bookkeeping) cleared.
fn record(clock: Clock, mut st: FlowState) -> FlowRecord {
    st.epoch = 0;
    FlowRecord {
        key: st.key,
        state: clock.state_to_epoch(st),
    }
}
