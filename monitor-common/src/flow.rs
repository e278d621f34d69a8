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
    pub _pad: [u8; 3],
}

impl FlowKey {
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
                _pad: [0; 3],
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

/// Counters of one direction. The kernel updates them with atomic adds.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DirStats {
    pub packets: u64,
    /// IP bytes (header and payload, as the IP header gives them: no link header, no
    /// Ethernet padding), so live and capture figures agree whatever the link type.
    pub bytes: u64,
    pub payload_bytes: u64,
    pub syns: u64,
    pub synacks: u64,
    pub fins: u64,
    pub rsts: u64,
}

/// The value of the flow map.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowState {
    pub first_seen_ns: u64,
    /// Last writer wins: two CPUs may race here, and either value is a fine answer.
    pub last_seen_ns: u64,
    /// 1 when endpoint `a` of the key is the client.
    pub client_is_a: u8,
    /// One of the `ROLE_BY_*` values.
    pub role_by: u8,
    pub _pad: [u8; 6],
    /// Indexed by `C2S` / `S2C`.
    pub dir: [DirStats; 2],
}

impl FlowState {
    /// A new record, roles as [`src_is_client`] decided, no packet counted yet.
    #[inline(always)]
    pub fn new(src_is_a: bool, (client, role_by): (bool, u8), now_ns: u64) -> Self {
        Self {
            first_seen_ns: now_ns,
            last_seen_ns: now_ns,
            client_is_a: (client == src_is_a) as u8,
            role_by,
            _pad: [0; 6],
            dir: [DirStats::default(); 2],
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

/// What one packet adds to its direction's counters. Kept apart from the update itself so
/// the kernel (atomic adds) and userspace (plain adds) count exactly the same things.
#[inline(always)]
pub fn increments(pkt: &Packet) -> DirStats {
    use crate::parse::{ACK, FIN, RST, SYN};
    let syn = pkt.flags & SYN != 0;
    let ack = pkt.flags & ACK != 0;
    DirStats {
        packets: 1,
        bytes: pkt.l3_len as u64,
        payload_bytes: pkt.payload_len as u64,
        syns: (syn && !ack) as u64,
        synacks: (syn && ack) as u64,
        fins: (pkt.flags & FIN != 0) as u64,
        rsts: (pkt.flags & RST != 0) as u64,
    }
}

impl DirStats {
    /// Plain (non-atomic) accumulation, for userspace and captures.
    pub fn add(&mut self, d: &DirStats) {
        self.packets += d.packets;
        self.bytes += d.bytes;
        self.payload_bytes += d.payload_bytes;
        self.syns += d.syns;
        self.synacks += d.synacks;
        self.fins += d.fins;
        self.rsts += d.rsts;
    }
}

#[cfg(feature = "user")]
unsafe impl aya::Pod for FlowKey {}
#[cfg(feature = "user")]
unsafe impl aya::Pod for FlowState {}

#[cfg(all(test, feature = "user"))]
mod tests {
    use super::*;
    use crate::{config::PortSet, parse::Packet};

    fn pkt(src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16, flags: u8) -> Packet {
        let mut p = Packet {
            family: 4,
            sport,
            dport,
            flags,
            ..Packet::default()
        };
        p.src[..4].copy_from_slice(&src);
        p.dst[..4].copy_from_slice(&dst);
        p
    }

    #[test]
    fn both_directions_share_one_key() {
        let fwd = pkt([10, 0, 0, 1], 40000, [10, 0, 0, 2], 50001, 0);
        let rev = pkt([10, 0, 0, 2], 50001, [10, 0, 0, 1], 40000, 0);
        let (k1, a1) = FlowKey::of(&fwd);
        let (k2, a2) = FlowKey::of(&rev);
        assert_eq!(k1, k2);
        assert_ne!(a1, a2);
        // Same address, ports decide.
        let x = pkt([10, 0, 0, 1], 2, [10, 0, 0, 1], 1, 0);
        let y = pkt([10, 0, 0, 1], 1, [10, 0, 0, 1], 2, 0);
        assert_eq!(FlowKey::of(&x).0, FlowKey::of(&y).0);
    }

    #[test]
    fn roles_from_syn_then_port_then_guess() {
        let cfg = "50000-59999".parse::<PortSet>().unwrap().to_config(0);
        use crate::parse::{ACK, SYN};
        // Watched destination port: the source is the client, even on a server's reply.
        let p = pkt([10, 0, 0, 1], 40000, [10, 0, 0, 2], 50001, ACK);
        assert_eq!(
            src_is_client(&p, cfg.watches(p.sport), cfg.watches(p.dport)),
            (true, ROLE_BY_PORT)
        );
        let p = pkt([10, 0, 0, 2], 50001, [10, 0, 0, 1], 40000, ACK);
        assert_eq!(
            src_is_client(&p, cfg.watches(p.sport), cfg.watches(p.dport)),
            (false, ROLE_BY_PORT)
        );
        // The SYN decides, even against the ports.
        let p = pkt([10, 0, 0, 2], 50001, [10, 0, 0, 1], 40000, SYN);
        assert_eq!(
            src_is_client(&p, cfg.watches(p.sport), cfg.watches(p.dport)),
            (true, ROLE_BY_SYN)
        );
        let p = pkt([10, 0, 0, 2], 50001, [10, 0, 0, 1], 50002, SYN);
        assert_eq!(
            src_is_client(&p, cfg.watches(p.sport), cfg.watches(p.dport)),
            (true, ROLE_BY_SYN)
        );
        let p = pkt([10, 0, 0, 2], 50001, [10, 0, 0, 1], 50002, SYN | ACK);
        assert_eq!(
            src_is_client(&p, cfg.watches(p.sport), cfg.watches(p.dport)),
            (false, ROLE_BY_SYNACK)
        );
        let p = pkt([10, 0, 0, 2], 50001, [10, 0, 0, 1], 50002, ACK);
        assert_eq!(
            src_is_client(&p, cfg.watches(p.sport), cfg.watches(p.dport)),
            (false, ROLE_BY_GUESS)
        );
    }

    #[test]
    fn direction_follows_the_client() {
        let cfg = "50001".parse::<PortSet>().unwrap().to_config(0);
        let reply = pkt([10, 0, 0, 2], 50001, [10, 0, 0, 1], 40000, 0);
        let (_, src_is_a) = FlowKey::of(&reply);
        let roles = src_is_client(&reply, cfg.watches(reply.sport), cfg.watches(reply.dport));
        let st = FlowState::new(src_is_a, roles, 7);
        assert_eq!(st.direction(src_is_a), S2C);
        assert_eq!(st.direction(!src_is_a), C2S);
        assert_eq!(st.first_seen_ns, 7);
    }
}
