//! The TCP analysis core: Wireshark 4.0's `tcp_analyze_sequence_number()` rules (restated in
//! docs/analysis.md), as a pure function of (flow state, one segment, time) that the kernel
//! program and the capture replay both run.
//!
//! Verifier-friendly by construction: no loops, no allocation, no panics, scalar state only.
//! Sequence comparisons are modulo 2^32. Sequence and ACK numbers are kept relative, as
//! Wireshark does by default, because its "0 means not yet known" tests depend on that
//! numbering: a side's SYN is 0, and a side first seen without a SYN starts at 1.

use crate::parse::{ACK, FIN, RST, SYN};

/// Analysis flags of one segment (Wireshark's `tcp.analysis.*`).
pub mod flag {
    pub const RETRANSMISSION: u32 = 1 << 0;
    pub const FAST_RETRANSMISSION: u32 = 1 << 1;
    pub const SPURIOUS_RETRANSMISSION: u32 = 1 << 2;
    pub const OUT_OF_ORDER: u32 = 1 << 3;
    pub const LOST_SEGMENT: u32 = 1 << 4;
    pub const ACK_LOST_SEGMENT: u32 = 1 << 5;
    pub const DUPLICATE_ACK: u32 = 1 << 6;
    pub const ZERO_WINDOW: u32 = 1 << 7;
    pub const ZERO_WINDOW_PROBE: u32 = 1 << 8;
    pub const ZERO_WINDOW_PROBE_ACK: u32 = 1 << 9;
    pub const WINDOW_FULL: u32 = 1 << 10;
    pub const WINDOW_UPDATE: u32 = 1 << 11;
    pub const KEEP_ALIVE: u32 = 1 << 12;
    pub const KEEP_ALIVE_ACK: u32 = 1 << 13;
    pub const REUSED_PORTS: u32 = 1 << 14;
    /// Not a Wireshark flag: this segment's ACK moved forward (progress for the other
    /// side's data). Stall detection uses it.
    pub const ACK_ADVANCED: u32 = 1 << 15;
}

/// Window scale not yet known (Wireshark's -1). Every "unknown" is zero, so that an
/// all-zero state (the kernel's insertion template) is exactly the initial state.
pub const WS_UNKNOWN: u8 = 0;
/// Window scaling not in use (Wireshark's -2). A scale `s` in use is stored as `2 + s`.
pub const WS_NOT_USED: u8 = 1;

/// What the core needs of a segment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Segment {
    pub seq: u32,
    pub ack: u32,
    pub flags: u8,
    pub window: u16,
    pub len: u32,
    /// Window scale option on a SYN, or `NO_WSCALE`.
    pub wscale: u8,
}

/// Analysis state of one direction (the sender of the segments it describes). All zeros is
/// the initial state.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DirState {
    pub base_seq: u32,
    /// Relative; 0 = not known yet (Wireshark's convention).
    pub nextseq: u32,
    pub maxseqtobeacked: u32,
    /// Last ACK this side sent, relative to the other side's base.
    pub lastack: u32,
    /// Raw window + 1; 0 = unknown (Wireshark starts it at G_MAXUINT32).
    pub window_p1: u32,
    pub dupacknum: u32,
    pub nextseq_time: u64,
    pub lastack_time: u64,
    /// Analysis flags of this side's previous segment.
    pub last_flags: u32,
    /// `WS_UNKNOWN`, `WS_NOT_USED`, or 2 + scale.
    pub win_scale: u8,
    pub base_set: u8,
    /// Set by this side's first ACK: scaling applies from then on.
    pub ack_seen: u8,
    /// 1 while this side's receive window is closed: set by a segment flagged
    /// `ZERO_WINDOW`, ended by a later segment of this side advertising a window, or by a
    /// reset either way. Kept apart from `window_p1` because a SYN, FIN or RST carries a
    /// window that is no zero window (Wireshark's rule excludes them), yet Wireshark's other
    /// rules read the window of every segment.
    pub zero_window: u8,
}

impl DirState {
    /// The raw window, `u32::MAX` when unknown (never equal to a real 16-bit window).
    #[inline(always)]
    fn window(&self) -> u32 {
        self.window_p1.wrapping_sub(1)
    }

    /// The shift to apply to this side's window (0 before its first ACK or when unused).
    #[inline(always)]
    fn shift(&self) -> u32 {
        if self.ack_seen == 0 || self.win_scale < 2 {
            0
        } else {
            (self.win_scale - 2) as u32
        }
    }
}

/// Per-connection analysis state: both directions and the handshake RTT.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ConnState {
    pub dir: [DirState; 2],
    /// Time of the latest pure SYN (0: none seen).
    pub syn_time: u64,
    /// SYN to first pure ACK (Wireshark's `ts_first_rtt`); 0 = unknown.
    pub rtt_ns: u64,
    /// Raw ISN of the first SYN and SYN/ACK, for reused-port detection.
    pub syn_isn: u32,
    pub synack_isn: u32,
    /// Flags of the segment being analysed. Accumulated here rather than in a local: in the
    /// kernel this is map memory, whose contents the verifier does not track, so paths that
    /// set different flags merge again instead of multiplying (2^rules).
    pub cur: u32,
    pub seen: u8,
    pub _pad: [u8; 3],
}

const SEEN_SYN: u8 = 1;
const SEEN_SYNACK: u8 = 2;

#[inline(always)]
fn lt(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) < 0
}

#[inline(always)]
fn gt(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) > 0
}

#[inline(always)]
fn le(a: u32, b: u32) -> bool {
    !gt(a, b)
}

/// Whether a SYN with this raw ISN starts a new connection on the same 4-tuple (Wireshark:
/// "reused ports"): a pure SYN whose ISN differs from the connection's first SYN. The caller
/// then closes the old record and starts a fresh one.
#[inline(always)]
pub fn is_port_reuse(c: &ConnState, flags: u8, raw_seq: u32) -> bool {
    flags & (SYN | ACK) == SYN && c.seen & SEEN_SYN != 0 && c.syn_isn != raw_seq
}

/// Runs the rules for one segment sent by direction `d` (0 or 1) at `now` (ns) and returns
/// its analysis flags. `d` must be 0 or 1; anything else is treated as 1.
#[inline(always)]
pub fn analyze(c: &mut ConnState, d: usize, raw: &Segment, now: u64) -> u32 {
    let (fi, ri) = if d == 0 { (0, 1) } else { (1, 0) };
    let flags = raw.flags;
    let syn = flags & SYN != 0;
    // Handshake bookkeeping Wireshark keeps outside the sequence analysis.
    if syn && flags & ACK == 0 {
        c.syn_time = now;
        if c.seen & SEEN_SYN == 0 {
            c.seen |= SEEN_SYN;
            c.syn_isn = raw.seq;
        }
    } else if syn {
        if c.seen & SEEN_SYNACK == 0 {
            c.seen |= SEEN_SYNACK;
            c.synack_isn = raw.seq;
        }
    } else if flags & ACK != 0 && c.syn_time != 0 && c.rtt_ns == 0 && c.seen & SEEN_SYNACK != 0 {
        c.rtt_ns = now.saturating_sub(c.syn_time);
    }
    // Relative numbering: a side's base is its SYN's sequence number, or one below the
    // first one seen when that is no SYN (so even a first pure ACK makes its next sequence
    // known: 1, not the 0 that means unknown).
    if c.dir[fi].base_set == 0 || syn {
        c.dir[fi].base_seq = if syn {
            raw.seq
        } else {
            raw.seq.wrapping_sub(1)
        };
        c.dir[fi].base_set = 1;
    }
    if flags & ACK != 0 && c.dir[ri].base_set == 0 {
        // The other side has not been seen: its base is what this ACK acknowledges.
        c.dir[ri].base_seq = raw.ack.wrapping_sub(1);
        c.dir[ri].base_set = 1;
    }
    let seq = raw.seq.wrapping_sub(c.dir[fi].base_seq);
    let ack = if flags & ACK != 0 {
        raw.ack.wrapping_sub(c.dir[ri].base_seq)
    } else {
        0
    };
    let window = raw.window as u32;
    let len = raw.len;
    // Window scale, negotiated on SYNs (Wireshark's verify_tcp_window_scaling).
    if syn {
        if raw.wscale != crate::parse::NO_WSCALE {
            c.dir[fi].win_scale = 2 + raw.wscale.min(14);
        }
        if c.dir[fi].win_scale == WS_UNKNOWN {
            c.dir[fi].win_scale = WS_NOT_USED;
            c.dir[ri].win_scale = WS_NOT_USED;
        } else if flags & ACK != 0 && c.dir[ri].win_scale == WS_NOT_USED {
            c.dir[fi].win_scale = WS_NOT_USED;
        }
    }

    let fwd = c.dir[fi];
    let rev = c.dir[ri];
    let sfr = flags & (SYN | FIN | RST) == 0;
    c.cur = 0;

    // 1. Zero-window probe.
    if len == 1 && seq == fwd.nextseq && rev.window() == 0 {
        c.cur |= flag::ZERO_WINDOW_PROBE;
    }
    if c.cur & flag::ZERO_WINDOW_PROBE == 0 {
        // 2. Zero window.
        if window == 0 && sfr {
            c.cur |= flag::ZERO_WINDOW;
        }
        // 3. Lost segment (a hole before this one).
        if fwd.nextseq != 0 && gt(seq, fwd.nextseq) && flags & RST == 0 {
            c.cur |= flag::LOST_SEGMENT;
        }
        // 4. Keep-alive.
        if len <= 1 && seq == fwd.nextseq.wrapping_sub(1) && sfr {
            c.cur |= flag::KEEP_ALIVE;
        }
        // 5. Window update.
        if len == 0
            && window != 0
            && window != fwd.window()
            && seq == fwd.nextseq
            && ack == fwd.lastack
            && sfr
        {
            c.cur |= flag::WINDOW_UPDATE;
        }
        // 6. Window full.
        if len > 0 && rev.win_scale != WS_UNKNOWN && sfr {
            let edge = rev
                .lastack
                .wrapping_add(rev.window().wrapping_shl(rev.shift()));
            if seq.wrapping_add(len) == edge {
                c.cur |= flag::WINDOW_FULL;
            }
        }
        let dup_shape = len == 0 && window == fwd.window() && seq == fwd.nextseq && sfr;
        // 7. Keep-alive ACK and zero-window-probe ACK end the checks (the else-if chain).
        if dup_shape && window != 0 && ack == fwd.lastack && rev.last_flags & flag::KEEP_ALIVE != 0
        {
            c.cur |= flag::KEEP_ALIVE_ACK;
        } else if dup_shape
            && window == 0
            && (ack == fwd.lastack || ack == fwd.lastack.wrapping_add(1))
            && rev.last_flags & flag::ZERO_WINDOW_PROBE != 0
        {
            c.cur |= flag::ZERO_WINDOW_PROBE_ACK;
        } else if dup_shape && window != 0 && ack == fwd.lastack {
            // 8. Duplicate ACK.
            c.dir[fi].dupacknum = fwd.dupacknum.wrapping_add(1);
            c.cur |= flag::DUPLICATE_ACK;
        }
    }
    // 9. A new ACK resets the duplicate count.
    if ack != fwd.lastack {
        c.dir[fi].dupacknum = 0;
        if flags & ACK != 0 && gt(ack, fwd.lastack) {
            c.cur |= flag::ACK_ADVANCED;
        }
    }
    // 10. ACKed unseen segment.
    if flags & ACK != 0 && rev.maxseqtobeacked != 0 && gt(ack, rev.maxseqtobeacked) {
        if lt(rev.maxseqtobeacked, rev.nextseq) {
            c.dir[ri].maxseqtobeacked = rev.nextseq;
            c.cur |= flag::ACK_LOST_SEGMENT;
        } else {
            if rev.dupacknum == 0 {
                c.cur |= flag::ACK_LOST_SEGMENT;
            }
            // Wireshark's counter is unsigned and decremented here: all ones, so a later
            // "dupacknum >= 2" test passes. Copied for frame-exact agreement.
            c.dir[ri].dupacknum = u32::MAX;
        }
    }
    // 11. Retransmission, fast retransmission, spurious, out-of-order.
    if (len > 0 || flags & (SYN | FIN) != 0)
        && c.cur & flag::KEEP_ALIVE == 0
        && c.cur & flag::ZERO_WINDOW_PROBE == 0
    {
        let mut not_advanced = fwd.nextseq != 0 && lt(seq, fwd.nextseq);
        if len > 1 && fwd.nextseq.wrapping_sub(1) == seq {
            not_advanced = false;
        }
        let rev_now = c.dir[ri];
        let since_rev_ack = now.saturating_sub(rev_now.lastack_time);
        let since_next = now.saturating_sub(fwd.nextseq_time);
        let ooo_thres = if c.rtt_ns == 0 { 3_000_000 } else { c.rtt_ns };
        let seg_end = seq
            .wrapping_add(len)
            .wrapping_add((flags & (SYN | FIN) != 0) as u32);
        if not_advanced
            && len > 0
            && rev_now.lastack != 0
            && le(seq.wrapping_add(len), rev_now.lastack)
        {
            c.cur |= flag::SPURIOUS_RETRANSMISSION | flag::RETRANSMISSION;
        } else if not_advanced
            && rev_now.dupacknum >= 2
            && rev_now.lastack == seq
            && since_rev_ack < 20_000_000
        {
            c.cur |= flag::FAST_RETRANSMISSION | flag::RETRANSMISSION;
        } else if not_advanced && since_next < ooo_thres && fwd.nextseq != seg_end {
            c.cur |= flag::OUT_OF_ORDER;
        } else if not_advanced {
            c.cur |= flag::RETRANSMISSION;
        }
    }
    // 12. Update this side's state.
    let f = &mut c.dir[fi];
    let nextseq = seq
        .wrapping_add(len)
        .wrapping_add((flags & (SYN | FIN) != 0) as u32);
    if c.cur & flag::ZERO_WINDOW_PROBE == 0 {
        if f.nextseq == 0 || gt(nextseq, f.nextseq) {
            f.nextseq = nextseq;
            f.nextseq_time = now;
        }
        if f.maxseqtobeacked == 0 || seq == f.maxseqtobeacked {
            f.maxseqtobeacked = f.nextseq;
        }
    }
    f.window_p1 = window + 1;
    if c.cur & flag::ZERO_WINDOW != 0 {
        f.zero_window = 1;
    } else if window != 0 {
        f.zero_window = 0;
    }
    f.lastack = ack;
    f.lastack_time = now;
    if flags & ACK != 0 && !syn {
        f.ack_seen = 1;
    }
    if flags & RST != 0 {
        // A reset ends the connection: no sender waits on either side's window any more.
        c.dir[0].zero_window = 0;
        c.dir[1].zero_window = 0;
    }
    let out = c.cur;
    c.dir[fi].last_flags = out;
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::NO_WSCALE;

    fn seg(seq: u32, ack: u32, flags: u8, len: u32) -> Segment {
        Segment {
            seq,
            ack,
            flags,
            window: 1000,
            len,
            wscale: NO_WSCALE,
        }
    }

    /// A clean exchange: handshake, then `n` data segments from the client each ACKed.
    fn clean(isn_c: u32, isn_s: u32, n: u32, size: u32) -> (ConnState, u32) {
        let mut c = ConnState::default();
        let mut t = 1_000_000u64;
        let mut all = 0;
        all |= analyze(&mut c, 0, &seg(isn_c, 0, SYN, 0), t);
        t += 100_000;
        all |= analyze(
            &mut c,
            1,
            &seg(isn_s, isn_c.wrapping_add(1), SYN | ACK, 0),
            t,
        );
        t += 100_000;
        all |= analyze(
            &mut c,
            0,
            &seg(isn_c.wrapping_add(1), isn_s.wrapping_add(1), ACK, 0),
            t,
        );
        let mut next = isn_c.wrapping_add(1);
        for _ in 0..n {
            t += 100_000;
            all |= analyze(&mut c, 0, &seg(next, isn_s.wrapping_add(1), ACK, size), t);
            next = next.wrapping_add(size);
            t += 100_000;
            all |= analyze(&mut c, 1, &seg(isn_s.wrapping_add(1), next, ACK, 0), t);
        }
        (c, all)
    }

    #[test]
    fn a_clean_exchange_raises_no_flag_even_across_the_wrap() {
        for isn in [1u32, 0x7fff_ff00, u32::MAX - 1000, u32::MAX] {
            let (c, all) = clean(isn, 5, 50, 100);
            // Progress is not an expert flag.
            let all = all & !flag::ACK_ADVANCED;
            assert_eq!(all, 0, "isn {isn:#x}: flags {all:#x}");
            assert!(c.rtt_ns > 0);
        }
    }

    #[test]
    fn a_resent_segment_is_a_retransmission_across_the_wrap() {
        let isn = u32::MAX - 150;
        let (mut c, _) = clean(isn, 5, 3, 100); // data crosses 2^32
                                                // The second segment again, long after: a retransmission, and spurious (ACKed).
        let second = isn.wrapping_add(101);
        let f = analyze(&mut c, 0, &seg(second, 6, ACK, 100), 10_000_000_000);
        assert_ne!(f & flag::RETRANSMISSION, 0, "{f:#x}");
        assert_ne!(f & flag::SPURIOUS_RETRANSMISSION, 0, "{f:#x}");
        // A hole: data beyond what was sent.
        let next = isn.wrapping_add(1 + 300);
        let f = analyze(
            &mut c,
            0,
            &seg(next.wrapping_add(500), 6, ACK, 100),
            10_100_000_000,
        );
        assert_ne!(f & flag::LOST_SEGMENT, 0, "{f:#x}");
    }

    #[test]
    fn duplicate_acks_then_fast_retransmission() {
        let (mut c, _) = clean(1000, 5000, 2, 100);
        let mut t = 50_000_000u64;
        // Client sends 3 more; the first is lost, the server dup-ACKs twice.
        let base = 1001 + 200;
        for k in 1..3 {
            analyze(&mut c, 0, &seg(base + 100 * k, 5001, ACK, 100), t);
            t += 1000;
        }
        for _ in 0..3 {
            let f = analyze(&mut c, 1, &seg(5001, base, ACK, 0), t);
            assert_ne!(f & flag::DUPLICATE_ACK, 0, "{f:#x}");
            t += 1000;
        }
        let f = analyze(&mut c, 0, &seg(base, 5001, ACK, 100), t);
        assert_ne!(f & flag::FAST_RETRANSMISSION, 0, "{f:#x}");
        assert_ne!(f & flag::RETRANSMISSION, 0, "{f:#x}");
    }

    #[test]
    fn a_new_isn_on_the_same_ports_is_reuse_and_the_same_isn_a_retry() {
        let mut c = ConnState::default();
        analyze(&mut c, 0, &seg(100, 0, SYN, 0), 1);
        assert!(
            !is_port_reuse(&c, SYN, 100),
            "same ISN: a SYN retransmission"
        );
        assert!(is_port_reuse(&c, SYN, 9999), "new ISN: a new connection");
        assert!(!is_port_reuse(&c, SYN | ACK, 9999));
    }

    #[test]
    fn a_side_first_seen_at_a_pure_ack_is_numbered_from_1() {
        // Mid-connection: the client's first segment is a pure ACK, then the server ACKs
        // client data never seen. Numbered from 0, the pure ACK would leave the client's
        // next sequence unknown and neither flag would be raised.
        let mut c = ConnState::default();
        analyze(&mut c, 0, &seg(5000, 9000, ACK, 0), 1_000_000);
        assert_eq!((c.dir[0].nextseq, c.dir[0].maxseqtobeacked), (1, 1));
        let f = analyze(&mut c, 1, &seg(9000, 5200, ACK | FIN, 0), 2_000_000);
        assert_ne!(f & flag::ACK_LOST_SEGMENT, 0, "{f:#x}");
        let f = analyze(&mut c, 0, &seg(5200, 9000, ACK, 100), 3_000_000);
        assert_ne!(f & flag::LOST_SEGMENT, 0, "{f:#x}");
        // The server's FIN again, named by the client's ACK: a fast retransmission.
        let f = analyze(&mut c, 1, &seg(9000, 5300, ACK | FIN, 0), 4_000_000);
        assert_ne!(f & flag::FAST_RETRANSMISSION, 0, "{f:#x}");
    }

    fn with_window(mut s: Segment, window: u16) -> Segment {
        s.window = window;
        s
    }

    #[test]
    fn a_reset_is_no_zero_window_and_ends_one() {
        // A reset with window 0 after a clean exchange: no flag, no closed window.
        let (mut c, _) = clean(1000, 5000, 2, 100);
        let f = analyze(
            &mut c,
            1,
            &with_window(seg(5001, 1201, RST | ACK, 0), 0),
            9_000_000,
        );
        assert_eq!(f & flag::ZERO_WINDOW, 0, "{f:#x}");
        assert_eq!((c.dir[0].zero_window, c.dir[1].zero_window), (0, 0));
        // A FIN with window 0 neither.
        let (mut c, _) = clean(1000, 5000, 2, 100);
        analyze(
            &mut c,
            1,
            &with_window(seg(5001, 1201, FIN | ACK, 0), 0),
            9_000_000,
        );
        assert_eq!(c.dir[1].zero_window, 0);
        // A real zero window stays closed through a FIN with window 0, opens with a window,
        // and ends with a reset from either side.
        let (mut c, _) = clean(1000, 5000, 2, 100);
        let f = analyze(
            &mut c,
            1,
            &with_window(seg(5001, 1201, ACK, 0), 0),
            9_000_000,
        );
        assert_ne!(f & flag::ZERO_WINDOW, 0, "{f:#x}");
        assert_eq!(c.dir[1].zero_window, 1);
        analyze(
            &mut c,
            1,
            &with_window(seg(5001, 1201, FIN | ACK, 0), 0),
            9_100_000,
        );
        assert_eq!(c.dir[1].zero_window, 1, "a FIN's window says nothing");
        analyze(&mut c, 1, &seg(5002, 1201, ACK, 0), 9_200_000);
        assert_eq!(c.dir[1].zero_window, 0, "a window opens it");
        analyze(
            &mut c,
            1,
            &with_window(seg(5002, 1201, ACK, 0), 0),
            9_300_000,
        );
        assert_eq!(c.dir[1].zero_window, 1);
        analyze(&mut c, 0, &seg(1201, 5002, RST, 0), 9_400_000);
        assert_eq!(c.dir[1].zero_window, 0, "the other side's reset ends it");
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_segments_never_panic(
            segs in proptest::collection::vec(
                (0usize..2, proptest::num::u32::ANY, proptest::num::u32::ANY, proptest::num::u8::ANY,
                 proptest::num::u16::ANY, 0u32..70_000, proptest::num::u8::ANY, proptest::num::u64::ANY),
                0..60)
        ) {
            let mut c = ConnState::default();
            for (d, seq, ack, flags, window, len, ws, t) in segs {
                let s = Segment { seq, ack, flags, window, len, wscale: ws };
                let _ = analyze(&mut c, d, &s, t);
            }
        }
    }
}
