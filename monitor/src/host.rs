//! The analysis on the host, for captures: the kernel program's per-packet sequence (parse,
//! port filter, flow lookup, port-reuse check, `flow::update`, the payload sample) over a
//! HashMap instead of BPF maps. Everything that decides a figure is shared code from
//! `monitor_common`, so a capture replayed here and the same frames run through the kernel
//! give identical records and samples (the kernel-equals-host test holds them to that).

use std::collections::{hash_map::Entry, HashMap};

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
};

pub struct HostFlows {
    cfg: Config,
    flows: HashMap<FlowKey, FlowState>,
    /// Records ended by port reuse.
    closed: Vec<FlowRecord>,
    counters: Counters,
    last_ts: u64,
    /// Payload samples taken since [`HostFlows::take_samples`] last took them.
    samples: Vec<Sample>,
}

impl HostFlows {
    pub fn new(ports: &PortSet) -> Self {
        Self {
            cfg: ports.to_config(0),
            flows: HashMap::new(),
            closed: Vec::new(),
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
        let st = match self.flows.entry(key) {
            Entry::Vacant(v) => {
                *created += 1;
                v.insert(fresh())
            }
            Entry::Occupied(o) => {
                let st = o.into_mut();
                if starts_new_connection(st, pkt) {
                    let old = std::mem::replace(st, fresh());
                    self.closed.push(FlowRecord { key, state: old });
                    *created += 1;
                }
                st
            }
        };
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
                _pad: 0,
                _pad2: 0,
                bytes: [0; SAMPLE_BYTES],
            };
            sample.bytes[..n].copy_from_slice(&payload[..n]);
            self.samples.push(sample);
        }
    }

    /// The record `key` is counted into now: right after [`HostFlows::packet`], its `last`
    /// outcome is the analysis' verdict on that packet (the evidence captures' comments).
    pub fn flow(&self, key: &FlowKey) -> Option<&FlowState> {
        self.flows.get(key)
    }

    /// The latest capture timestamp seen.
    pub fn last_ts(&self) -> u64 {
        self.last_ts
    }

    /// Every record, closed and open, as the outputs want them. "Now" is the capture's
    /// last timestamp, so handshake timeouts are judged in capture time.
    pub fn snapshot(&self) -> Snapshot {
        let live = self.flows.len() as u64;
        let flows = self
            .closed
            .iter()
            .cloned()
            .chain(
                self.flows
                    .iter()
                    .map(|(k, s)| FlowRecord { key: *k, state: *s }),
            )
            .collect();
        Snapshot::new(flows, live, self.counters.clone(), self.last_ts)
    }
}
