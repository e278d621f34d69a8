//! A flow as the monitor keeps it between ticks: the kernel's record less what only the
//! kernel's next packet needs (the sequence analysis, the latest packet's outcome, the
//! marking epoch, a second copy of the key), with the three facts the outputs and rules
//! read from the sequence analysis. Every output and the alert engine read this; the full
//! record stays in the kernel map (or the capture engine).

use monitor_common::flow::{DirStats, FlowState};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
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
    pub in_flight: [Option<u32>; 2],
    /// Whether each side's receive window is closed now.
    pub zero_window: [bool; 2],
    /// 1 when endpoint `a` of the key is the client.
    pub client_is_a: u8,
    /// One of the `ROLE_BY_*` values.
    pub role_by: u8,
    /// `seen::*` bits.
    pub seen: u16,
    /// Indexed by `C2S` / `S2C`.
    pub dir: [DirStats; 2],
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
            in_flight: [0, 1].map(|d| in_flight(st, d)),
            zero_window: [0, 1].map(|d| st.tcp.dir[d].zero_window != 0),
            client_is_a: st.client_is_a,
            role_by: st.role_by,
            seen: st.seen,
            dir: st.dir,
        }
    }
}
