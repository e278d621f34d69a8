//! Reads the kernel's maps into the flow table and drains its event ring buffers.
//!
//! The first tick reads the flow map whole; later ticks read back only the flows the
//! kernel reported changed (see `mark` in the eBPF program) and write them into the table.
//! When the kernel could not report everything (its ring was full, or the map may have
//! evicted flows, which it does not report), the tick reads the map whole again.

mod batch;
mod clock;
mod presence;

use anyhow::{Context, Result};
use aya::{
    maps::{Array, HashMap, MapData, PerCpuArray, RingBuf},
    Ebpf,
};
use monitor_common::{
    event::Event,
    evidence::{EvidencePacket, EVIDENCE_BYTES},
    flow::{Changed, FlowKey, FlowState},
    sample::{Sample, SAMPLE_BYTES},
    stats,
};

pub use clock::Clock;
pub use presence::Presence;

use crate::{
    model::{Counters, FlowRecord, IfaceTraffic, OrderKey},
    snapshot::Snapshot,
    table::{FlowTable, SharedTable},
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
    /// Watched packets for the evidence captures (`--evidence`; never written otherwise).
    evidence: RingBuf<MapData>,
    /// The kernel's log of its failures, moved into the `log` crate at each tick.
    kernel_log: Option<crate::kernel::load::KernelLog>,
    closed_rb: RingBuf<MapData>,
    /// Every flow read so far, live and closed; shared with the snapshots.
    table: SharedTable,
    /// Whether `table` holds every live flow, so that later ticks can read only the
    /// reported ones (false: read the map whole).
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
    /// The last tick read the map whole: see [`give_back_free_memory`].
    read_whole: bool,
    /// Ticks so far.
    ticks: u64,
    clock: Clock,
}

/// How the ticks so far read the kernel map.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReadCounts {
    pub full: u64,
    pub changed: u64,
    /// Records read back one by one for reported flows.
    pub records: u64,
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
            evidence: RingBuf::try_from(take(ebpf, "EVIDENCE")?)?,
            kernel_log: crate::kernel::load::KernelLog::take(ebpf),
            closed_rb: RingBuf::try_from(take(ebpf, "CLOSED")?)?,
            table: SharedTable::default(),
            synced: false,
            epoch_map: Array::try_from(take(ebpf, "EPOCH")?)?,
            epoch: 0,
            changed: RingBuf::try_from(take(ebpf, "CHANGED")?)?,
            recent: Vec::new(),
            lost_changes: 0,
            max_flows,
            evict_margin: 256 * (aya::util::nr_cpus().unwrap_or(64) as u64 + 1),
            reads: ReadCounts::default(),
            read_whole: false,
            ticks: 0,
            clock,
        })
    }

    /// What the collector holds for its flows (the benchmark's account of resident
    /// memory): the flow table.
    pub fn footprint(&self) -> crate::footprint::Footprint {
        vec![("flow table", self.table.read().bytes())]
    }

    /// Starts over with an empty table, as a monitor started now would: the next tick
    /// reads the map whole (the benchmark's first tick, again on the same map).
    pub fn start_over(&mut self) {
        self.table = SharedTable::default();
        self.synced = false;
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
        self.ticks += 1;
        if std::mem::take(&mut self.read_whole) || self.ticks.is_multiple_of(TRIM_EVERY) {
            give_back_free_memory();
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
        let counters = self.counters()?;
        let lost = counters.get(stats::CHANGES_LOST);
        let table = self.table.clone();
        let mut t = table.write();
        t.begin();
        // Closed first: the row of the connection port reuse ended becomes closed before
        // its key's new connection takes the key's live row.
        for r in closed {
            t.close(r);
        }
        // Past this many, one batch read of everything costs less than lookups one by one.
        let live = t.live_len();
        let cheap = keys.len() <= live / 4 + 1024;
        // The LRU evicts without a report only near full: each reported flow adds at most
        // one live flow.
        let room = ((live + keys.len()) as u64 + self.evict_margin) < self.max_flows;
        if self.synced && lost == self.lost_changes && cheap && room {
            self.read_reported(&mut t, keys)?;
        } else {
            self.read_all(&mut t)?;
        }
        drop(t);
        self.lost_changes = lost;
        let mut snap = Snapshot::of(table, counters, self.clock.now_epoch());
        snap.interfaces = self.interfaces()?;
        Ok(snap)
    }

    /// The reported flows' records into the table; a reported flow no longer in the map
    /// was evicted.
    fn read_reported(&mut self, t: &mut FlowTable, keys: Vec<FlowKey>) -> Result<()> {
        for key in keys {
            match self.flows.get(&key, 0) {
                Ok(st) => {
                    t.put(record(self.clock, &st));
                    self.reads.records += 1;
                }
                Err(aya::maps::MapError::KeyNotFound) => t.evict(&key),
                Err(e) => return Err(e).context("reading FLOWS"),
            }
        }
        self.reads.changed += 1;
        Ok(())
    }

    /// Every record of the map into the table; the live rows not in it are gone.
    fn read_all(&mut self, t: &mut FlowTable) -> Result<()> {
        // The map holds at most `max_flows`: room for them all up front.
        t.reserve(self.max_flows as usize + t.closed_len());
        self.read_map(|r| t.put(r))?;
        t.drop_unread();
        self.synced = true;
        self.read_whole = true;
        self.reads.full += 1;
        Ok(())
    }

    /// Every record in the map and every closed one, in report order, read now; the table
    /// the ticks keep is left alone (tests hold it to this).
    pub fn whole(&mut self) -> Result<Vec<FlowRecord>> {
        let mut out = Vec::new();
        self.read_map(|r| out.push(r))?;
        let mut seen = foldhash::HashSet::default();
        out.retain(|f| seen.insert(f.key));
        let t = self.table.read();
        out.extend(
            t.rows()
                .filter(|(_, r)| r.closed)
                .map(|(_, r)| r.flow.clone()),
        );
        out.sort_by_cached_key(OrderKey::of);
        Ok(out)
    }

    /// The kernel's full record of every flow in the map, read now, by key (the
    /// kernel-equals-host test compares them field for field with the capture engine's).
    pub fn states(&mut self) -> Result<Vec<FlowState>> {
        let mut out = Vec::new();
        for item in self.flows.iter() {
            match item {
                Ok((_, mut st)) => {
                    st.epoch = 0;
                    out.push(self.clock.state_to_epoch(st));
                }
                Err(aya::maps::MapError::KeyNotFound) => continue,
                Err(e) => return Err(e).context("reading FLOWS"),
            }
        }
        out.sort_by_key(|s| s.key);
        out.dedup_by_key(|s| s.key);
        Ok(out)
    }

    /// Hands every record of the map to `each`, in batches where the kernel can. The
    /// key-by-key walk (where it cannot) starts over when the key it stands on is evicted,
    /// and can hand a record twice.
    fn read_map(&mut self, mut each: impl FnMut(FlowRecord)) -> Result<()> {
        let clock = self.clock;
        let batched = match self.batch.as_mut() {
            Some(b) => b
                .read(|_, st| each(record(clock, st)))
                .context("reading FLOWS in batches")?,
            None => false,
        };
        if batched {
            return Ok(());
        }
        self.batch = None;
        for item in self.flows.iter() {
            match item {
                Ok((_, state)) => each(record(clock, &state)),
                // The entry was evicted between listing and reading it.
                Err(aya::maps::MapError::KeyNotFound) => continue,
                Err(e) => return Err(e).context("reading FLOWS"),
            }
        }
        Ok(())
    }

    /// Keys reported since the last tick, once each, with those reported in the epoch
    /// that tick opened.
    fn drain_changed(&mut self) -> Vec<FlowKey> {
        let mut keys = std::mem::take(&mut self.recent);
        for c in drain::<Changed>(&mut self.changed) {
            keys.push(c.key);
            if c.epoch == self.epoch {
                self.recent.push(c.key);
            }
        }
        let mut seen = foldhash::HashSet::default();
        keys.retain(|k| seen.insert(*k));
        keys
    }

    /// Records port reuse closed since the last tick.
    fn drain_closed(&mut self) -> Vec<FlowRecord> {
        let clock = self.clock;
        drain::<FlowState>(&mut self.closed_rb)
            .into_iter()
            .map(|st| record(clock, &st))
            .collect()
    }

    /// Closed records no longer shown, trimmed to bound what the table holds.
    pub fn closed_dropped(&self) -> u64 {
        self.table.read().closed_dropped
    }

    /// Events the kernel sent since the last call, timestamps in Unix-epoch ns.
    pub fn drain_events(&mut self) -> Vec<Event> {
        let mut out = drain::<Event>(&mut self.events);
        for ev in &mut out {
            ev.ts_ns = self.clock.to_epoch(ev.ts_ns);
        }
        out
    }

    /// Payload samples the kernel took since the last call, in the order it took them,
    /// timestamps in Unix-epoch ns. The bytes past a sample's `len` are zeroed: the kernel
    /// leaves them as the ring had them.
    pub fn drain_samples(&mut self) -> Vec<Sample> {
        let mut out = drain::<Sample>(&mut self.samples);
        for s in &mut out {
            s.ts_ns = self.clock.to_epoch(s.ts_ns);
            let n = (s.len as usize).min(SAMPLE_BYTES);
            s.len = n as u16;
            s.bytes[n..].fill(0);
        }
        out
    }

    /// Packets the kernel handed over for the evidence captures since the last call, in
    /// the order it took them, times in Unix-epoch ns, the bytes past `len` zeroed.
    pub fn drain_evidence(&mut self) -> Vec<EvidencePacket> {
        let mut out = drain::<EvidencePacket>(&mut self.evidence);
        for p in &mut out {
            p.ts_ns = self.clock.to_epoch(p.ts_ns);
            p.first_seen_ns = self.clock.to_epoch(p.first_seen_ns);
            let n = (p.len as usize).min(EVIDENCE_BYTES);
            p.len = n as u16;
            p.bytes[n..].fill(0);
        }
        out
    }
}

/// Ticks between two [`give_back_free_memory`] calls: a minute at the default interval.
const TRIM_EVERY: u64 = 64;

/// Free heap pages back to the kernel. A tick that read the map whole (the first, or one
/// after a flood) met every flow: the alert engine and the outputs built lists of them
/// all, tens of MB at a million flows; and flows that wake and fall idle again free the
/// rate windows they grew, small blocks between blocks in use. glibc keeps both as free
/// memory in its heap (it returns only the heap's top), resident for the rest of the run:
/// about 90 MB at a million flows (BENCHMARKS.md group 5). Called after a whole read and
/// every [`TRIM_EVERY`] ticks.
fn give_back_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free heap pages to the kernel; it touches no block
    // in use.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Every entry the kernel put in `ring` since the last call, as the `T` it wrote (an entry
/// too short to be one is skipped).
fn drain<T: aya::Pod>(ring: &mut RingBuf<MapData>) -> Vec<T> {
    let mut out = Vec::new();
    while let Some(item) = ring.next() {
        if item.len() >= std::mem::size_of::<T>() {
            // SAFETY: `T` is `Pod` (repr(C), any bit pattern valid) and the entry holds at
            // least its size; unaligned, as a ring's entries may be.
            out.push(unsafe { std::ptr::read_unaligned(item.as_ptr() as *const T) });
        }
    }
    out
}

/// A kernel record as the outputs see it: times on the Unix epoch (only the row's are
/// converted: the rest of the kernel's record is not kept).
fn record(clock: Clock, st: &FlowState) -> FlowRecord {
    let mut r = FlowRecord::of(st);
    r.state.map_times(|t| clock.to_epoch(t));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_row_converts_the_times_the_whole_record_would() {
        let mut st = FlowState {
            first_seen_ns: 10,
            last_seen_ns: 20,
            progress_ns: [11, 0],
            acked_ns: [0, 12],
            ..FlowState::default()
        };
        st.dir[1].anomalies.last_rst_ns = 19;
        st.dir[0].rsts = 1;
        let clock = Clock::monotonic();
        let row = record(clock, &st);
        assert_eq!(row, FlowRecord::of(&clock.state_to_epoch(st)));
        assert!(row.state.first_seen_ns > 10, "converted to the epoch");
        assert_eq!(row.state.progress_ns[1], 0, "an unset time stays unset");
    }
}
