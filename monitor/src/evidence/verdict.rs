//! The monitor's verdict on one packet, as the comment an evidence capture gives it: what
//! `monitor_common::flow::update` concluded about the segment (its `Outcome`), in words a
//! support engineer reads beside Wireshark's own analysis. Nothing to say, no comment.

use monitor_common::{
    analysis::flag,
    flow::{seen, FlowState, C2S, S2C},
    parse::{Packet, RST},
};

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

/// The verdict on `pkt`, just counted into `st` by `flow::update` (`st.last` is its
/// outcome), or `None` when the monitor saw nothing of note in it.
pub fn comment(st: &FlowState, pkt: &Packet) -> Option<String> {
    let o = &st.last;
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
    if pkt.flags & RST != 0 {
        said.push(reset(st, pkt, dir));
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
fn reset(st: &FlowState, pkt: &Packet, dir: usize) -> String {
    let who = side(dir);
    if st.last.suspect_rst == 0 {
        return format!("reset from the {who}");
    }
    let mine = &st.dir[dir];
    let peer = &st.dir[if dir == C2S { S2C } else { C2S }];
    let why = if pkt.ttl != mine.ttl_base {
        format!("TTL {}, the {who}'s {}", pkt.ttl, mine.ttl_base)
    } else if pkt.family == 4 && pkt.ip_id != 0 && pkt.ip_id == peer.last_ip_id {
        format!(
            "IP-ID {} copied from the {}'s latest packet",
            pkt.ip_id,
            side(1 - dir)
        )
    } else {
        "a second reset within 1 ms".into()
    };
    format!("reset, suspect injected: {why}")
}
