//! The canonical flow key, the per-flow record, and who is client and who is server.
//!
//! Direction comes from the packet, not the hook: on a mirror port every packet is ingress.
//! Both directions of a connection map to one key (endpoints ordered), and the record says
//! which endpoint is the client, decided once when the flow is first seen.

use crate::parse::Packet;

pub const C2S: usize = 0;
pub const S2C: usize = 1;

/// Both endpoints in a fixed order (`a` <= `b`), so both directions find the same entry.
/// IPv4 addresses sit in the first four bytes of the 16.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FlowKey {
    pub addr_a: [u8; 16],
    pub addr_b: [u8; 16],
    pub port_a: u16,
    pub port_b: u16,
    /// 4 or 6.
    pub family: u8,
    // Two fields, not `[u8; 3]`: zeroing that array compiles to a memset call in the kernel.
    pub _pad: u8,
    pub _pad2: u16,
}

impl FlowKey {
    /// A cheap mix of the key, to pick a lock stripe. Any function of the canonical key
    /// works: both directions share the key, so they share the stripe.
    #[inline(always)]
    pub fn stripe(&self, stripes: u32) -> u32 {
        let (a0, a1) = halves(&self.addr_a);
        let (b0, b1) = halves(&self.addr_b);
        let ports = ((self.port_a as u64) << 16) | self.port_b as u64;
        let h = (a0 ^ a1.rotate_left(17) ^ b0.rotate_left(31) ^ b1.rotate_left(47) ^ ports)
            .wrapping_mul(0x9e37_79b9_7f4a_7c15);
        ((h >> 32) as u32) & (stripes - 1)
    }

    /// The key of a packet's flow, and whether the packet's source is endpoint `a`.
    #[inline(always)]
    pub fn of(pkt: &Packet) -> (Self, bool) {
        let src_is_a = endpoint_le(&pkt.src, pkt.sport, &pkt.dst, pkt.dport);
        let (a, pa, b, pb) = if src_is_a {
            (pkt.src, pkt.sport, pkt.dst, pkt.dport)
        } else {
            (pkt.dst, pkt.dport, pkt.src, pkt.sport)
        };
        (
            Self {
                addr_a: a,
                addr_b: b,
                port_a: pa,
                port_b: pb,
                family: pkt.family,
                _pad: 0,
                _pad2: 0,
            },
            src_is_a,
        )
    }
}

/// A total order on endpoints. Any consistent order works; comparing two u64 halves keeps it
/// cheap in the kernel.
#[inline(always)]
fn endpoint_le(x: &[u8; 16], xp: u16, y: &[u8; 16], yp: u16) -> bool {
    let (x0, x1) = halves(x);
    let (y0, y1) = halves(y);
    if x0 != y0 {
        return x0 < y0;
    }
    if x1 != y1 {
        return x1 < y1;
    }
    xp <= yp
}

#[inline(always)]
fn halves(a: &[u8; 16]) -> (u64, u64) {
    let mut h = [0u8; 8];
    let mut l = [0u8; 8];
    h.copy_from_slice(&a[..8]);
    l.copy_from_slice(&a[8..]);
    (u64::from_be_bytes(h), u64::from_be_bytes(l))
}

/// How the client/server roles were decided, so a reader knows how far to trust them.
pub const ROLE_BY_PORT: u8 = 1;
pub const ROLE_BY_SYN: u8 = 2;
pub const ROLE_BY_SYNACK: u8 = 3;
pub const ROLE_BY_GUESS: u8 = 4;

/// Whether the packet's source is the client. A SYN names the roles outright (its sender is
/// the client), so it wins; without one (capture or monitor started mid-connection), the
/// server is the endpoint on a watched port; failing that, the lower port, since clients use
/// high ephemeral ports. The SYN comes first because Linux's ephemeral range (32768-60999)
/// overlaps the media range: a client's port is often "watched" too.
#[inline(always)]
pub fn src_is_client(pkt: &Packet, sport_watched: bool, dport_watched: bool) -> (bool, u8) {
    if pkt.flags & crate::parse::SYN != 0 {
        if pkt.flags & crate::parse::ACK == 0 {
            return (true, ROLE_BY_SYN);
        }
        return (false, ROLE_BY_SYNACK);
    }
    match (sport_watched, dport_watched) {
        (false, true) => (true, ROLE_BY_PORT),
        (true, false) => (false, ROLE_BY_PORT),
        _ => (pkt.sport >= pkt.dport, ROLE_BY_GUESS),
    }
}

/// The counters of one direction that stay zero on a healthy flow: what the TCP analysis
/// flagged (as tshark's `tcp.analysis` flags), and the time of the latest reset.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Anomalies {
    /// Every retransmission, fast and spurious included (tshark's `retransmission`).
    pub retransmits: u32,
    pub fast_retransmits: u32,
    pub spurious_retransmits: u32,
    pub out_of_order: u32,
    pub lost_segments: u32,
    pub dup_acks: u32,
    pub zero_windows: u32,
    pub zero_window_probes: u32,
    pub keep_alives: u32,
    pub window_full: u32,
    pub acked_unseen: u32,
    pub suspect_injected_rsts: u32,
    /// Time of this direction's latest reset: a second one soon after is a burst.
    pub last_rst_ns: u64,
}

impl Anomalies {
    /// None flagged.
    pub const NONE: Anomalies = Anomalies {
        retransmits: 0,
        fast_retransmits: 0,
        spurious_retransmits: 0,
        out_of_order: 0,
        lost_segments: 0,
        dup_acks: 0,
        zero_windows: 0,
        zero_window_probes: 0,
        keep_alives: 0,
        window_full: 0,
        acked_unseen: 0,
        suspect_injected_rsts: 0,
        last_rst_ns: 0,
    };
}

/// Counters of one direction, named as in the JSON contract.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DirStats {
    pub packets: u64,
    /// IP bytes (header and payload, as the IP header gives them: no link header, no
    /// Ethernet padding), so live and capture figures agree whatever the link type.
    pub bytes: u64,
    pub payload_bytes: u64,
    /// TCP segments: a GSO/GRO super-packet counts as the segments it carries.
    pub segments: u64,
    /// Segments carrying payload: the denominator of a retransmission rate (pure ACKs
    /// cannot be retransmitted, so counting them would dilute it).
    pub data_segments: u64,
    pub syns: u32,
    pub synacks: u32,
    pub fins: u32,
    pub rsts: u32,
    /// What the analysis flagged (one group, which the monitor keeps apart: most flows
    /// never have any).
    pub anomalies: Anomalies,
    /// TTL (hop limit) of this direction's first packet: the baseline an injected reset,
    /// sent by a middlebox at another distance, departs from.
    pub ttl_base: u8,
    /// Options of this side's SYN (client) or SYN/ACK (server): comparing the two shows
    /// options a middlebox stripped or rewrote.
    pub syn_opts: SynOpts,
    /// IPv4 identification of this direction's latest packet.
    pub last_ip_id: u16,
    /// Payload segments of this direction sampled so far (`sample::take`). In what was
    /// padding: the record does not grow.
    pub sampled: u8,
}

/// The options a side offered on its SYN or SYN/ACK, packed.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SynOpts {
    pub mss: u16,
    /// Window scale + 1; 0 = not offered.
    pub wscale_p1: u8,
    /// `SYN_OPT_*` bits.
    pub bits: u8,
    pub nops: u8,
}

pub const SYN_OPT_SEEN: u8 = 1;
pub const SYN_OPT_SACK: u8 = 2;
pub const SYN_OPT_TIMESTAMPS: u8 = 4;

/// Two resets from one side within this time are a burst: stacks send one per segment they
/// refuse, injectors several at once to win the race (Weaver, Sommer and Paxson, 2009).
pub const RST_BURST_NS: u64 = 1_000_000;

/// Handshake and first-bytes facts of a connection (bits of `FlowState::seen`).
pub mod seen {
    pub const SYN: u16 = 1 << 0;
    pub const SYNACK: u16 = 1 << 1;
    /// The client's first pure ACK after the SYN/ACK: the handshake completed.
    pub const ESTABLISHED: u16 = 1 << 2;
    /// A reset answered the SYN.
    pub const REFUSED: u16 = 1 << 3;
    /// A reset ended the handshake after the SYN/ACK.
    pub const RESET_IN_HANDSHAKE: u16 = 1 << 4;
    /// The first packet seen was not a SYN: the connection predates the monitor.
    pub const MIDSTREAM: u16 = 1 << 5;
    pub const CLIENT_HELLO: u16 = 1 << 6;
    pub const SERVER_HELLO: u16 = 1 << 7;
    pub const SERVER_HELLO_DONE: u16 = 1 << 8;
    /// A reset after the ClientHello before any server reply (a TLS-inspecting middlebox).
    pub const RESET_AFTER_HELLO: u16 = 1 << 9;
    /// The client's data stalled: a retransmission with no ACK progress for `STALL_NS`.
    /// Cleared when the server's ACK moves again.
    pub const STALLED_C2S: u16 = 1 << 10;
    /// The same for the server's data.
    pub const STALLED_S2C: u16 = 1 << 11;
}

/// No ACK progress for this long while data is being resent is a stall: the `stall` alert's
/// default (README.md, "Alerts"; docs/analysis.md).
pub const STALL_NS: u64 = 2_000_000_000;

/// The value of the flow map: one TCP connection.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowState {
    /// The record's own key, so a record that leaves the map (port reuse) says whose it was.
    pub key: FlowKey,
    pub first_seen_ns: u64,
    pub last_seen_ns: u64,
    /// Last time each direction's sequence number advanced (progress).
    pub progress_ns: [u64; 2],
    /// Last time the peer's ACK moved forward over each direction's data.
    pub acked_ns: [u64; 2],
    /// 1 when endpoint `a` of the key is the client.
    pub client_is_a: u8,
    /// One of the `ROLE_BY_*` values.
    pub role_by: u8,
    /// `seen::*` bits.
    pub seen: u16,
    /// The kernel's marking epoch the last time it reported this flow as changed (see
    /// [`Changed`]); zero in userspace, which has no use for it once the record is read.
    pub epoch: u32,
    /// Indexed by `C2S` / `S2C`.
    pub dir: [DirStats; 2],
    pub tcp: crate::analysis::ConnState,
    /// What the latest packet did.
    pub last: Outcome,
}

impl FlowState {
    /// A new record, roles as [`src_is_client`] decided, no packet counted yet.
    #[inline(always)]
    pub fn new(key: FlowKey, src_is_a: bool, (client, role_by): (bool, u8), now_ns: u64) -> Self {
        Self {
            key,
            first_seen_ns: now_ns,
            last_seen_ns: now_ns,
            client_is_a: (client == src_is_a) as u8,
            role_by,
            ..Self::default()
        }
    }

    /// `C2S` or `S2C` for a packet whose source is (or is not) endpoint `a`.
    #[inline(always)]
    pub fn direction(&self, src_is_a: bool) -> usize {
        if src_is_a == (self.client_is_a != 0) {
            C2S
        } else {
            S2C
        }
    }
}

/// A flow whose record changed during marking epoch `epoch`. The kernel sends one the
/// first time a flow changes in each epoch; userspace starts a new epoch every tick and
/// reads back only the flows sent, instead of the whole map (a million records per tick).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Changed {
    pub key: FlowKey,
    pub epoch: u32,
    pub _pad: u32,
}

/// Bytes of the changed-flows ring for a map of `max_flows`: room for one flow in four to
/// change per tick (a ring entry is its 8-byte header and the record), a power of two as
/// the kernel requires. When more change, the ring fills and userspace reads the whole map.
pub fn changed_ring_bytes(max_flows: u32) -> u32 {
    let entry = (core::mem::size_of::<Changed>() + 8) as u64;
    let want = (max_flows as u64 / 4).max(4096) * entry;
    want.next_power_of_two().min(1 << 30) as u32
}

/// What the latest packet did, for the caller to turn into events. Kept in the record,
/// not returned in registers: in the kernel the record is map memory, whose contents the
/// verifier does not track, so the paths inside `update` merge instead of multiplying.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// `analysis::flag` bits of the segment.
    pub flags: u32,
    /// `seen` bits this packet set for the first time.
    pub newly_seen: u16,
    /// `seen` bits this packet cleared (a stall that ended).
    pub cleared: u16,
    pub dir: u8,
    pub suspect_rst: u8,
    pub _pad: [u8; 6],
}

/// TLS record header and handshake type in the first payload bytes.
#[inline(always)]
fn tls_handshake_type(pkt: &Packet) -> Option<u8> {
    let h = &pkt.head;
    if pkt.head_len as usize >= crate::parse::HEAD_LEN && h[0] == 0x16 && h[1] == 3 && h[2] <= 4 {
        Some(h[5])
    } else {
        None
    }
}

/// Whether a pure SYN on this record starts a new connection (new ISN on the same ports).
#[inline(always)]
pub fn starts_new_connection(st: &FlowState, pkt: &Packet) -> bool {
    crate::analysis::is_port_reuse(&st.tcp, pkt.flags, pkt.seq)
}

/// Counts one packet into its flow and runs the analysis core. The kernel calls it with
/// the flow's lock held; the capture replay calls it directly. Same code, same figures.
///
/// `sent_here`: the packet was seen at this host's own egress. Wireshark's out-of-order rule
/// (a non-advancing segment soon after the highest one) exists for capture points inside
/// the network, where segments can overtake each other. Before the sender's own wire they
/// cannot: there, every such segment is a retransmission, which is what the sender's kernel
/// counts (TcpRetransSegs). Captures and ingress keep Wireshark's verdict.
#[inline(always)]
pub fn update(
    st: &mut FlowState,
    src_is_a: bool,
    pkt: &Packet,
    segs: u32,
    now: u64,
    sent_here: bool,
) {
    use crate::analysis::{analyze, flag, Segment};
    use crate::parse::{ACK, FIN, RST, SYN};
    let d = st.direction(src_is_a);
    st.last = Outcome {
        dir: d as u8,
        ..Outcome::default()
    };
    let first_packet = st.dir[C2S].packets == 0 && st.dir[S2C].packets == 0;
    let before = st.seen;
    let syn = pkt.flags & SYN != 0;
    let ack = pkt.flags & ACK != 0;
    let rst = pkt.flags & RST != 0;
    let pure_syn = syn && !ack;
    if first_packet && !pure_syn {
        st.seen |= seen::MIDSTREAM;
    }
    let seg = Segment {
        seq: pkt.seq,
        ack: pkt.ack,
        flags: pkt.flags,
        window: pkt.window,
        len: pkt.payload_len,
        wscale: pkt.opts.wscale,
    };
    let mut flags = analyze(&mut st.tcp, d, &seg, now);
    if sent_here && flags & flag::OUT_OF_ORDER != 0 {
        flags = (flags & !flag::OUT_OF_ORDER) | flag::RETRANSMISSION;
    }
    let s = &mut st.dir[if d == C2S { C2S } else { S2C }];
    if s.packets == 0 {
        s.ttl_base = pkt.ttl;
    }
    s.packets += 1;
    s.bytes += pkt.l3_len as u64;
    s.payload_bytes += pkt.payload_len as u64;
    s.segments += segs.max(1) as u64;
    s.data_segments += (pkt.payload_len > 0) as u64 * segs.max(1) as u64;
    s.syns += (syn && !ack) as u32;
    s.synacks += (syn && ack) as u32;
    s.fins += (pkt.flags & FIN != 0) as u32;
    s.rsts += rst as u32;
    // Evidence that a reset did not come from the peer's stack: a TTL off this direction's
    // baseline (another distance), the IP-ID of the other side's latest packet (copied by
    // an injector answering it), or a second reset right after the first.
    let peer_ip_id = st.dir[if d == C2S { S2C } else { C2S }].last_ip_id;
    let s = &mut st.dir[if d == C2S { C2S } else { S2C }];
    let ttl_off = s.packets > 1 && pkt.ttl != s.ttl_base;
    let id_copied = pkt.family == 4 && pkt.ip_id != 0 && pkt.ip_id == peer_ip_id;
    let burst =
        s.anomalies.last_rst_ns != 0 && now.saturating_sub(s.anomalies.last_rst_ns) < RST_BURST_NS;
    if rst {
        if ttl_off || id_copied || burst {
            s.anomalies.suspect_injected_rsts += 1;
            st.last.suspect_rst = 1;
        }
        st.dir[d & 1].anomalies.last_rst_ns = now;
    }
    let s = &mut st.dir[d & 1];
    s.last_ip_id = pkt.ip_id;
    if syn {
        let o = &pkt.opts;
        s.syn_opts = SynOpts {
            mss: o.mss,
            wscale_p1: if o.wscale == crate::parse::NO_WSCALE {
                0
            } else {
                o.wscale.wrapping_add(1)
            },
            bits: SYN_OPT_SEEN
                | (o.sack_perm as u8 * SYN_OPT_SACK)
                | (o.timestamps as u8 * SYN_OPT_TIMESTAMPS),
            nops: o.nops,
        };
    }
    let has = |f: u32| (flags & f != 0) as u32;
    // Segments, not packets: a retransmitted GSO super-packet resends all it carries, and
    // that is what the sender's kernel counts (TcpRetransSegs). A capture frame is one.
    let per_seg = |f: u32| has(f) * segs.max(1);
    let a = &mut s.anomalies;
    a.retransmits += per_seg(flag::RETRANSMISSION);
    a.fast_retransmits += per_seg(flag::FAST_RETRANSMISSION);
    a.spurious_retransmits += per_seg(flag::SPURIOUS_RETRANSMISSION);
    a.out_of_order += per_seg(flag::OUT_OF_ORDER);
    a.lost_segments += has(flag::LOST_SEGMENT);
    a.dup_acks += has(flag::DUPLICATE_ACK);
    a.zero_windows += has(flag::ZERO_WINDOW);
    a.zero_window_probes += has(flag::ZERO_WINDOW_PROBE);
    a.keep_alives += has(flag::KEEP_ALIVE);
    a.window_full += has(flag::WINDOW_FULL);
    a.acked_unseen += has(flag::ACK_LOST_SEGMENT);

    // Handshake and TLS first bytes.
    if syn && !ack && d == C2S {
        st.seen |= seen::SYN;
    } else if syn && ack && d == S2C {
        st.seen |= seen::SYNACK;
    } else if ack && !syn && !rst && d == C2S && st.seen & seen::SYNACK != 0 {
        st.seen |= seen::ESTABLISHED;
    }
    if rst && st.seen & seen::ESTABLISHED == 0 && st.seen & seen::MIDSTREAM == 0 {
        if st.seen & seen::SYNACK == 0 {
            st.seen |= seen::REFUSED;
        } else {
            st.seen |= seen::RESET_IN_HANDSHAKE;
        }
    }
    match (tls_handshake_type(pkt), d) {
        (Some(1), C2S) => st.seen |= seen::CLIENT_HELLO,
        (Some(2), S2C) => st.seen |= seen::SERVER_HELLO,
        (Some(14), S2C) => st.seen |= seen::SERVER_HELLO_DONE,
        _ => {}
    }
    if rst && st.seen & seen::CLIENT_HELLO != 0 && st.seen & seen::SERVER_HELLO == 0 {
        st.seen |= seen::RESET_AFTER_HELLO;
    }
    if pkt.payload_len > 0 && flags & (flag::RETRANSMISSION | flag::OUT_OF_ORDER) == 0 {
        st.progress_ns[d & 1] = now;
    }
    // Stalls: every decision below reads the record and writes it back, nothing stays in
    // registers (the verifier's path budget).
    let (mine, theirs, other) = if d == C2S {
        (seen::STALLED_C2S, seen::STALLED_S2C, S2C)
    } else {
        (seen::STALLED_S2C, seen::STALLED_C2S, C2S)
    };
    if flags & flag::ACK_ADVANCED != 0 {
        st.acked_ns[other] = now;
        if st.seen & theirs != 0 {
            st.seen &= !theirs;
            st.last.cleared = theirs;
        }
    }
    if flags & flag::RETRANSMISSION != 0
        && now.saturating_sub(st.acked_ns[d & 1].max(st.first_seen_ns)) >= STALL_NS
    {
        st.seen |= mine;
    }
    st.last_seen_ns = now;
    st.last.flags = flags;
    st.last.newly_seen = st.seen & !before;
}

// SAFETY: `FlowKey` is repr(C) of integers and byte arrays only: every bit pattern is a
// valid value, as a map or ring read from the kernel needs.
#[cfg(feature = "user")]
unsafe impl aya::Pod for FlowKey {}
// SAFETY: `FlowState` is repr(C) of integers and byte arrays only: every bit pattern is a
// valid value, as a map or ring read from the kernel needs.
#[cfg(feature = "user")]
unsafe impl aya::Pod for FlowState {}
// SAFETY: `Changed` is repr(C) of integers and byte arrays only: every bit pattern is a
// valid value, as a map or ring read from the kernel needs.
#[cfg(feature = "user")]
unsafe impl aya::Pod for Changed {}

#[cfg(all(test, feature = "user"))]
#[path = "flow_tests.rs"]
mod tests;
