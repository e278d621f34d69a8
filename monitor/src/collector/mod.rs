//! Reads the kernel's maps into a [`Snapshot`] and drains its event ring buffer.

mod batch;
mod clock;

use anyhow::{Context, Result};
use aya::{
    maps::{HashMap, MapData, PerCpuArray, RingBuf},
    Ebpf,
};
use monitor_common::{
    event::Event,
    flow::{FlowKey, FlowState},
    stats,
};

pub use clock::Clock;

use crate::snapshot::{Counters, FlowRecord, IfaceTraffic, Snapshot};

pub struct Collector {
    flows: HashMap<MapData, FlowKey, FlowState>,
    /// The same map read in batches, where the kernel can.
    batch: Option<batch::BatchReader>,
    stats: PerCpuArray<MapData, u64>,
    ifaces: PerCpuArray<MapData, stats::IfCounters>,
    /// The watched interfaces: name and ifindex.
    targets: Vec<(String, u32)>,
    events: RingBuf<MapData>,
    closed_rb: RingBuf<MapData>,
    /// Connection records ended by port reuse, kept for the summary.
    closed: Vec<FlowRecord>,
    /// Entries the latest tick read.
    last_len: usize,
    clock: Clock,
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
            targets,
            events: RingBuf::try_from(take(ebpf, "EVENTS")?)?,
            closed_rb: RingBuf::try_from(take(ebpf, "CLOSED")?)?,
            closed: Vec::new(),
            last_len: 0,
            clock,
        })
    }

    pub fn counters(&self) -> Result<Counters> {
        let mut c = Counters::default();
        for idx in 0..stats::COUNT {
            let per_cpu = self.stats.get(&idx, 0).context("reading STATS")?;
            c.0[idx as usize] = per_cpu.iter().sum();
        }
        Ok(c)
    }

    /// Traffic of each watched interface, ingress and egress, summed over CPUs.
    pub fn interfaces(&self) -> Result<Vec<IfaceTraffic>> {
        let mut out = Vec::with_capacity(self.targets.len());
        for (name, index) in &self.targets {
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
            });
        }
        Ok(out)
    }

    /// Every flow in the map, and the records port reuse closed.
    pub fn collect(&mut self) -> Result<Snapshot> {
        self.drain_closed();
        let counters = self.counters()?;
        let clock = self.clock;
        // Sized for the table as the last tick found it: growing by doubling would copy
        // the records several times over. Not kept between ticks, so it does not hold a
        // second copy of a big table in memory.
        let mut buf = Vec::with_capacity(self.last_len + self.last_len / 16);
        let batched = match self.batch.as_mut() {
            Some(b) => b
                .read(|k, st| {
                    buf.push(FlowRecord {
                        key: *k,
                        state: clock.state_to_epoch(*st),
                    })
                })
                .context("reading FLOWS in batches")?,
            None => false,
        };
        if !batched {
            self.batch = None;
            buf.clear();
            for item in self.flows.iter() {
                match item {
                    Ok((key, state)) => buf.push(FlowRecord {
                        key,
                        state: clock.state_to_epoch(state),
                    }),
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
        let live = buf.len() as u64;
        self.last_len = buf.len();
        // The buffer becomes the snapshot, sorted where it is: a second copy of a big table
        // would cost the kernel zeroing as many fresh pages again.
        buf.extend_from_slice(&self.closed);
        let mut snap = Snapshot::new(buf, live, counters, self.clock.now_epoch());
        snap.interfaces = self.interfaces()?;
        Ok(snap)
    }

    fn drain_closed(&mut self) {
        while let Some(item) = self.closed_rb.next() {
            if item.len() >= std::mem::size_of::<FlowState>() {
                // SAFETY: the kernel wrote a `FlowState` (repr(C), any bit pattern valid).
                let st: FlowState =
                    unsafe { std::ptr::read_unaligned(item.as_ptr() as *const FlowState) };
                self.closed.push(FlowRecord {
                    key: st.key,
                    state: self.clock.state_to_epoch(st),
                });
            }
        }
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
}
