//! The analysis on the host, for captures: the kernel program's per-packet sequence (parse,
//! port filter, flow lookup, port-reuse check, `flow::update`, the payload sample) over a
//! HashMap instead of BPF maps. Everything that decides a figure is shared code from
//! `monitor_common`, so a capture replayed here and the same frames run through the kernel
//! give identical records and samples (the kernel-equals-host test holds them to that).

use std::collections::hash_map::Entry;

use foldhash::HashMap;

use monitor_common::{
    config::{Config, PortSet},
    flow::{src_is_client, starts_new_connection, update, FlowKey, FlowState},
    parse::{Packet, Skip},
    sample::{captured_len, take, Sample, SAMPLE_BYTES},
    stats,
};

use crate::{
    model::{Counters, FlowRecord},
    snapshot::Snapshot,
    table::SharedTable,
};

pub struct HostFlows {
    cfg: Config,
    /// Each flow's place in `states`. A capture's flows are never removed (port reuse
    /// replaces a record in place), so they live in a vector in the order they came, and
    /// the index moves 4 bytes when it grows, not a 500-byte record.
    flows: HashMap<FlowKey, u32>,
    /// Each flow's record, and the tick that last changed it.
    states: Vec<(FlowState, u64)>,
    /// The ticks handed over so far (see [`HostFlows::take_changes`]).
    tick: u64,
    /// Flows changed since the last tick was handed over, once each.
    touched: Vec<FlowKey>,
    /// Records ended by port reuse.
    closed: Vec<FlowRecord>,
    /// How many of `closed` were handed over.
    closed_taken: usize,
    counters: Counters,
    last_ts: u64,
    /// Payload samples taken since [`HostFlows::take_samples`] last took them.
    samples: Vec<Sample>,
}

impl HostFlows {
    pub fn new(ports: &PortSet) -> Self {
        Self {
            cfg: ports.to_config(0),
            flows: HashMap::default(),
            states: Vec::new(),
            tick: 1,
            touched: Vec::new(),
            closed: Vec::new(),
            closed_taken: 0,
            counters: Counters::default(),
            last_ts: 0,
            samples: Vec::new(),
        }
    }

    /// Samples the first `n` payload segments of each flow direction (`--media-samples`;
    /// the default is `monitor_common::sample::DEFAULT_SAMPLES`).
    pub fn with_samples(mut self, n: u32) -> Self {
        self.cfg = self.cfg.with_samples(n);
        self
    }

    /// The payload samples taken since the last call, in the order of their segments.
    pub fn take_samples(&mut self) -> Vec<Sample> {
        std::mem::take(&mut self.samples)
    }

    /// Drops the samples taken so far, for a caller that has no use for them.
    pub fn discard_samples(&mut self) {
        self.samples.clear();
    }

    fn bump(&mut self, idx: u32) {
        self.counters.0[idx as usize] += 1;
    }

    /// Counts a frame the parser could not use, or whose link type is not supported.
    pub fn skipped(&mut self, skip: Skip) {
        self.bump(stats::PACKETS);
        self.bump(skip.counter());
    }

    /// One parsed packet at capture time `ts` (ns); `bytes` is what the parser read it from
    /// (the payload samples are copied from there).
    pub fn packet(&mut self, pkt: &Packet, bytes: &[u8], segs: u32, ts: u64) {
        self.bump(stats::PACKETS);
        self.last_ts = self.last_ts.max(ts);
        let (sw, dw) = (self.cfg.watches(pkt.sport), self.cfg.watches(pkt.dport));
        if !sw && !dw {
            self.bump(stats::UNWATCHED);
            return;
        }
        self.bump(stats::WATCHED);
        let (key, src_is_a) = FlowKey::of(pkt);
        let fresh = || FlowState::new(key, src_is_a, src_is_client(pkt, sw, dw), ts);
        let created = &mut self.counters.0[stats::FLOWS_CREATED as usize];
        let (st, changed_in) = match self.flows.entry(key) {
            Entry::Vacant(v) => {
                *created += 1;
                v.insert(self.states.len() as u32);
                self.states.push((fresh(), 0));
                let Some((st, changed_in)) = self.states.last_mut() else {
                    return;
                };
                (st, changed_in)
            }
            Entry::Occupied(o) => {
                let Some((st, changed_in)) = self.states.get_mut(*o.get() as usize) else {
                    return;
                };
                if starts_new_connection(st, pkt) {
                    let old = std::mem::replace(st, fresh());
                    self.closed.push(FlowRecord::of(&old));
                    *created += 1;
                }
                (st, changed_in)
            }
        };
        if *changed_in != self.tick {
            *changed_in = self.tick;
            self.touched.push(key);
        }
        // A capture does not say where it was taken: Wireshark's reading.
        update(st, src_is_a, pkt, segs, ts, false);
        let dir = st.last.dir;
        if take(st, dir as usize, pkt.payload_len, self.cfg.samples) {
            let off = pkt.payload_off as usize;
            let payload = bytes.get(off..).unwrap_or_default();
            let n = captured_len(pkt.payload_len, payload.len());
            let mut sample = Sample {
                ts_ns: ts,
                key,
                seq: pkt.seq,
                payload_len: pkt.payload_len,
                len: n as u16,
                dir,
                ttl: pkt.ttl,
                _pad2: 0,
                bytes: [0; SAMPLE_BYTES],
            };
            sample.bytes[..n].copy_from_slice(&payload[..n]);
            self.samples.push(sample);
        }
    }

    /// What changed since the last call, as a tick hands it to the flow table: the records
    /// of the flows that saw packets, and the records port reuse ended.
    pub fn take_changes(&mut self) -> (Vec<FlowRecord>, Vec<FlowRecord>) {
        self.tick += 1;
        let changed = std::mem::take(&mut self.touched)
            .into_iter()
            .filter_map(|key| self.flow(&key).map(FlowRecord::of))
            .collect();
        let closed = self.closed[self.closed_taken..].to_vec();
        self.closed_taken = self.closed.len();
        (changed, closed)
    }

    /// A tick of what changed since the last, into `table`, as a snapshot at capture
    /// time `now_ns`.
    pub fn tick_into(&mut self, table: &SharedTable, now_ns: u64) -> Snapshot {
        let (changed, closed) = self.take_changes();
        table.write().apply(changed, closed);
        Snapshot::of(table.clone(), self.counters.clone(), now_ns)
    }

    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// The full record of every live flow, as the kernel would hold it (the kernel-equals-
    /// host test compares them field for field).
    pub fn states(&self) -> Vec<FlowState> {
        self.states.iter().map(|(s, _)| *s).collect()
    }

    /// The record `key` is counted into now: right after [`HostFlows::packet`], its `last`
    /// outcome is the analysis' verdict on that packet (the evidence captures' comments).
    pub fn flow(&self, key: &FlowKey) -> Option<&FlowState> {
        let i = *self.flows.get(key)?;
        self.states.get(i as usize).map(|(s, _)| s)
    }

    /// The latest capture timestamp seen.
    pub fn last_ts(&self) -> u64 {
        self.last_ts
    }

    /// Every record, closed and open, as the outputs want them. "Now" is the capture's
    /// last timestamp, so handshake timeouts are judged in capture time.
    pub fn snapshot(&self) -> Snapshot {
        let flows = self.states.iter().map(|(s, _)| FlowRecord::of(s));
        Snapshot::new(
            flows.collect(),
            &self.closed,
            self.counters.clone(),
            self.last_ts,
        )
    }
}
