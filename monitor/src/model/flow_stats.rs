//! A flow as the monitor keeps it between ticks: the kernel's record less what only the
//! kernel's next packet needs (the sequence analysis, the latest packet's outcome, the
//! marking epoch, a second copy of the key), with the three facts the outputs and rules
//! read from the sequence analysis. Every output and the alert engine read this; the full
//! record stays in the kernel map (or the capture engine).

pub use monitor_common::flow::Anomalies;
use monitor_common::flow::{DirStats, FlowState, SynOpts};

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FlowStats {
    pub first_seen_ns: u64,
    pub last_seen_ns: u64,
    /// Last time each direction's sequence number advanced (progress).
    pub progress_ns: [u64; 2],
    /// Last time the peer's ACK moved forward over each direction's data.
    pub acked_ns: [u64; 2],
    /// SYN to the first pure ACK (Wireshark's `ts_first_rtt`); 0 = unknown.
    pub rtt_ns: u64,
    /// Bytes sent each way and not yet acknowledged, when both ends are known.
    pub in_flight: [InFlight; 2],
    /// Whether each side's receive window is closed now.
    pub zero_window: [bool; 2],
    /// 1 when endpoint `a` of the key is the client.
    pub client_is_a: u8,
    /// One of the `ROLE_BY_*` values.
    pub role_by: u8,
    /// `seen::*` bits.
    pub seen: u16,
    /// Indexed by `C2S` / `S2C`.
    pub dir: [DirCounts; 2],
    /// What the TCP analysis flagged, each way (read with [`FlowStats::anomalies`]).
    pub anomalies: AnomalyCounts,
}

/// The counters of one direction that every flow has, named as in the JSON contract.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DirCounts {
    pub packets: u64,
    /// IP bytes (header and payload, as the IP header gives them).
    pub bytes: u64,
    pub payload_bytes: u64,
    /// TCP segments: a GSO/GRO super-packet counts as the segments it carries.
    pub segments: u64,
    /// Segments carrying payload: the denominator of a retransmission rate.
    pub data_segments: u64,
    pub syns: u32,
    pub synacks: u32,
    pub fins: u32,
    pub rsts: u32,
    /// TTL (hop limit) of this direction's first packet.
    pub ttl_base: u8,
    /// Options of this side's SYN (client) or SYN/ACK (server).
    pub syn_opts: SynOpts,
    /// Payload segments of this direction sampled so far.
    pub sampled: u8,
}

/// Both directions' [`Anomalies`], boxed only once one is not zero: most flows of a big
/// table never have any, and then they cost the row 8 bytes instead of 112. Equal when
/// the counters are, boxed or not.
#[derive(Clone, Debug, Default)]
pub struct AnomalyCounts(Option<Box<[Anomalies; 2]>>);

impl AnomalyCounts {
    pub fn get(&self, d: usize) -> &Anomalies {
        self.0.as_deref().map_or(&Anomalies::NONE, |a| &a[d & 1])
    }

    pub fn get_mut(&mut self, d: usize) -> &mut Anomalies {
        &mut self.0.get_or_insert_with(Box::default)[d & 1]
    }

    /// Whether a heap block of both directions' [`Anomalies`] is held (the memory
    /// account's question).
    pub fn is_boxed(&self) -> bool {
        self.0.is_some()
    }
}

impl PartialEq for AnomalyCounts {
    fn eq(&self, other: &Self) -> bool {
        self.get(0) == other.get(0) && self.get(1) == other.get(1)
    }
}

impl Eq for AnomalyCounts {}

impl From<&DirStats> for DirCounts {
    fn from(d: &DirStats) -> Self {
        Self {
            packets: d.packets,
            bytes: d.bytes,
            payload_bytes: d.payload_bytes,
            segments: d.segments,
            data_segments: d.data_segments,
            syns: d.syns,
            synacks: d.synacks,
            fins: d.fins,
            rsts: d.rsts,
            ttl_base: d.ttl_base,
            syn_opts: d.syn_opts,
            sampled: d.sampled,
        }
    }
}

impl FlowStats {
    /// Direction `d`'s [`Anomalies`] (zeros when none).
    pub fn anomalies(&self, d: usize) -> &Anomalies {
        self.anomalies.get(d)
    }

    /// Every time the row holds, through `f` (the collector's kernel clock to the epoch).
    pub fn map_times(&mut self, f: impl Fn(u64) -> u64) {
        self.first_seen_ns = f(self.first_seen_ns);
        self.last_seen_ns = f(self.last_seen_ns);
        self.progress_ns = self.progress_ns.map(&f);
        self.acked_ns = self.acked_ns.map(&f);
        if let Some(a) = self.anomalies.0.as_deref_mut() {
            for d in a {
                d.last_rst_ns = f(d.last_rst_ns);
            }
        }
    }
}

/// Bytes in flight, if known, in the 4 bytes of a `u32` (`u32::MAX`: unknown; the count
/// itself is at most `i32::MAX`) where an `Option<u32>` takes 8.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InFlight(u32);

impl InFlight {
    pub const UNKNOWN: InFlight = InFlight(u32::MAX);

    pub fn new(n: Option<u32>) -> Self {
        n.filter(|&n| n != u32::MAX).map_or(Self::UNKNOWN, InFlight)
    }

    pub fn get(self) -> Option<u32> {
        (self != Self::UNKNOWN).then_some(self.0)
    }
}

impl Default for InFlight {
    fn default() -> Self {
        Self::UNKNOWN
    }
}

/// Bytes sent in direction `d` and not yet acknowledged, when both ends are known.
fn in_flight(st: &FlowState, d: usize) -> Option<u32> {
    let (tx, rx) = (&st.tcp.dir[d], &st.tcp.dir[d ^ 1]);
    if tx.base_set == 0 || tx.nextseq == 0 || rx.ack_seen == 0 || rx.lastack == 0 {
        return None;
    }
    let n = tx.nextseq.wrapping_sub(rx.lastack) as i32;
    Some(n.max(0) as u32)
}

impl From<&FlowState> for FlowStats {
    fn from(st: &FlowState) -> Self {
        Self {
            first_seen_ns: st.first_seen_ns,
            last_seen_ns: st.last_seen_ns,
            progress_ns: st.progress_ns,
            acked_ns: st.acked_ns,
            rtt_ns: st.tcp.rtt_ns,
            in_flight: [0, 1].map(|d| InFlight::new(in_flight(st, d))),
            zero_window: [0, 1].map(|d| st.tcp.dir[d].zero_window != 0),
            client_is_a: st.client_is_a,
            role_by: st.role_by,
            seen: st.seen,
            dir: [0, 1].map(|d| DirCounts::from(&st.dir[d])),
            anomalies: {
                let a = [0, 1].map(|d| st.dir[d].anomalies);
                AnomalyCounts((a != [Anomalies::NONE; 2]).then(|| Box::new(a)))
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use monitor_common::flow::{C2S, S2C};

    #[test]
    fn a_healthy_flow_holds_no_anomaly_block() {
        let mut st = FlowState::default();
        st.dir[C2S].packets = 3;
        let row = FlowStats::from(&st);
        assert!(!row.anomalies.is_boxed(), "zeros must not be boxed");
        assert_eq!(*row.anomalies(S2C), Anomalies::NONE);

        st.dir[S2C].anomalies.last_rst_ns = 7;
        let row = FlowStats::from(&st);
        assert!(row.anomalies.is_boxed(), "a reset time is an anomaly");
        assert_eq!(row.anomalies(S2C).last_rst_ns, 7);
        assert_eq!(*row.anomalies(C2S), Anomalies::NONE);
    }

    #[test]
    fn boxed_zeros_equal_no_box() {
        let mut boxed = AnomalyCounts::default();
        boxed.get_mut(S2C).dup_acks = 0;
        assert!(boxed.is_boxed());
        assert_eq!(boxed, AnomalyCounts::default());
        boxed.get_mut(S2C).dup_acks = 1;
        assert_ne!(boxed, AnomalyCounts::default());
    }
}
