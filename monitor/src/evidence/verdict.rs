//! The monitor's verdict on one packet, as the comment an evidence capture gives it: what
//! `monitor_common::flow::update` concluded about the segment (its `Outcome`), in words a
//! support engineer reads beside Wireshark's own analysis. Nothing to say, no comment.

use monitor_common::{
    analysis::flag,
    evidence::EvidencePacket,
    flow::{seen, FlowState, Outcome, C2S, S2C},
    parse::{Packet, RST},
};

/// What the verdict on one packet is made of: the analysis' outcome for it, and what the
/// reset injection test compared. The host analysis gives it from its record and the
/// parsed packet ([`PacketFacts::of`]), the kernel in each evidence ring entry
/// ([`PacketFacts::recorded`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PacketFacts {
    pub outcome: Outcome,
    pub rst: bool,
    pub ttl: u8,
    /// The TTL of the packet's direction's first packet.
    pub ttl_base: u8,
    pub ipv4: bool,
    pub ip_id: u16,
    /// The other direction's latest IPv4 identification.
    pub peer_ip_id: u16,
}

impl PacketFacts {
    /// `pkt`, just counted into `st` by `flow::update` (`st.last` is its outcome).
    pub fn of(st: &FlowState, pkt: &Packet) -> Self {
        let dir = st.last.dir as usize & 1;
        let peer = if dir == C2S { S2C } else { C2S };
        Self {
            outcome: st.last,
            rst: pkt.flags & RST != 0,
            ttl: pkt.ttl,
            ttl_base: st.dir[dir].ttl_base,
            ipv4: pkt.family == 4,
            ip_id: pkt.ip_id,
            peer_ip_id: st.dir[peer].last_ip_id,
        }
    }

    /// An evidence ring entry, its header fields `pkt` (parsed from its bytes).
    pub fn recorded(e: &EvidencePacket, pkt: &Packet) -> Self {
        Self {
            outcome: e.outcome,
            rst: pkt.flags & RST != 0,
            ttl: pkt.ttl,
            ttl_base: e.ttl_base,
            ipv4: pkt.family == 4,
            ip_id: pkt.ip_id,
            peer_ip_id: e.peer_ip_id,
        }
    }
}

/// Analysis flags in the order they are said, with their words. A fast or spurious
/// retransmission is said as such instead of the plain one (the core sets both bits).
const FLAGS: [(u32, &str); 12] = [
    (flag::OUT_OF_ORDER, "out of order"),
    (flag::LOST_SEGMENT, "previous segment not seen (lost)"),
    (flag::ACK_LOST_SEGMENT, "ACKs a segment not seen"),
    (flag::DUPLICATE_ACK, "duplicate ACK"),
    (flag::ZERO_WINDOW, "zero window"),
    (flag::ZERO_WINDOW_PROBE, "zero window probe"),
    (flag::ZERO_WINDOW_PROBE_ACK, "zero window probe ACK"),
    (flag::WINDOW_FULL, "window full"),
    (flag::WINDOW_UPDATE, "window update"),
    (flag::KEEP_ALIVE, "keep-alive"),
    (flag::KEEP_ALIVE_ACK, "keep-alive ACK"),
    (flag::REUSED_PORTS, "ports reused by a new connection"),
];

/// Handshake and TLS facts a packet established first.
const SEEN: [(u16, &str); 11] = [
    (seen::SYN, "SYN: the handshake starts"),
    (seen::SYNACK, "SYN/ACK"),
    (seen::ESTABLISHED, "handshake complete"),
    (seen::MIDSTREAM, "first packet seen mid-connection (no SYN)"),
    (
        seen::REFUSED,
        "connection refused: a reset answered the SYN",
    ),
    (seen::RESET_IN_HANDSHAKE, "reset during the handshake"),
    (seen::CLIENT_HELLO, "ClientHello"),
    (seen::SERVER_HELLO, "ServerHello"),
    (seen::SERVER_HELLO_DONE, "ServerHelloDone"),
    (
        seen::RESET_AFTER_HELLO,
        "reset after the ClientHello, before any ServerHello",
    ),
    (
        seen::STALLED_C2S | seen::STALLED_S2C,
        "stall: data resent with no ACK progress for 2 s",
    ),
];

fn side(dir: usize) -> &'static str {
    if dir == C2S {
        "client"
    } else {
        "server"
    }
}

/// Whether `pkt` is what a client's hello gets back: server payload, or a reset either way.
pub fn answers(f: &PacketFacts, pkt: &Packet) -> bool {
    f.rst || (f.outcome.dir as usize & 1 == S2C && pkt.payload_len > 0)
}

/// The verdict on a packet, or `None` when the monitor saw nothing of note in it.
pub fn comment(f: &PacketFacts) -> Option<String> {
    let o = &f.outcome;
    let dir = o.dir as usize & 1;
    let mut said: Vec<String> = Vec::new();
    if o.flags & flag::RETRANSMISSION != 0 {
        said.push(
            if o.flags & flag::FAST_RETRANSMISSION != 0 {
                "retransmission (fast)"
            } else if o.flags & flag::SPURIOUS_RETRANSMISSION != 0 {
                "retransmission (spurious)"
            } else {
                "retransmission"
            }
            .into(),
        );
    }
    said.extend(
        FLAGS
            .iter()
            .filter(|(f, _)| o.flags & f != 0)
            .map(|(_, w)| (*w).to_string()),
    );
    if f.rst {
        said.push(reset(f, dir));
    }
    said.extend(
        SEEN.iter()
            .filter(|(b, _)| o.newly_seen & b != 0)
            .map(|(_, w)| (*w).to_string()),
    );
    if o.cleared != 0 {
        said.push("stall ended: the ACK moved again".into());
    }
    (!said.is_empty()).then(|| said.join("; "))
}

/// A reset, and why the monitor suspects it was injected when it does: the same three
/// tests as `flow::update` (TTL off the direction's first packet, the peer's IP-ID copied,
/// a second reset within 1 ms).
fn reset(f: &PacketFacts, dir: usize) -> String {
    let who = side(dir);
    if f.outcome.suspect_rst == 0 {
        return format!("reset from the {who}");
    }
    let why = if f.ttl != f.ttl_base {
        format!("TTL {}, the {who}'s {}", f.ttl, f.ttl_base)
    } else if f.ipv4 && f.ip_id != 0 && f.ip_id == f.peer_ip_id {
        format!(
            "IP-ID {} copied from the {}'s latest packet",
            f.ip_id,
            side(1 - dir)
        )
    } else {
        "a second reset within 1 ms".into()
    };
    format!("reset, suspect injected: {why}")
}
