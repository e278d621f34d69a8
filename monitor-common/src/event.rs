//! Rare transitions the kernel reports through the ring buffer. Per-packet facts never go
//! this way: they stay in the flow map.

use crate::flow::FlowKey;

/// What an [`Event`] reports. The kernel writes it as a `u8` (the `kind` field of the
/// wire record); [`EventKind::name`] is the one name every output uses, and the names a
/// recording's `event` lines carry (a contract: see README.md, "Recording and reports").
#[repr(u8)]
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum EventKind {
    Reset = 2,
    HandshakeDone = 3,
    HandshakeRefused = 4,
    ClientHello = 5,
    ServerHello = 6,
    SuspectInjectedRst = 7,
    ResetAfterHello = 8,
    /// `dir` is the direction whose data stalled, or resumed.
    StallBegan = 9,
    StallEnded = 10,
}

impl EventKind {
    /// Every kind, in wire order.
    pub const ALL: [EventKind; 9] = [
        EventKind::Reset,
        EventKind::HandshakeDone,
        EventKind::HandshakeRefused,
        EventKind::ClientHello,
        EventKind::ServerHello,
        EventKind::SuspectInjectedRst,
        EventKind::ResetAfterHello,
        EventKind::StallBegan,
        EventKind::StallEnded,
    ];

    /// The kind a wire byte stands for (`None`: a byte no kernel of this build writes).
    pub fn from_u8(v: u8) -> Option<Self> {
        Self::ALL.into_iter().find(|k| *k as u8 == v)
    }

    /// The kind's one name (snake_case), in logs, recordings and reports.
    pub fn name(self) -> &'static str {
        match self {
            EventKind::Reset => "reset",
            EventKind::HandshakeDone => "handshake_done",
            EventKind::HandshakeRefused => "handshake_refused",
            EventKind::ClientHello => "client_hello",
            EventKind::ServerHello => "server_hello",
            EventKind::SuspectInjectedRst => "suspect_injected_rst",
            EventKind::ResetAfterHello => "reset_after_hello",
            EventKind::StallBegan => "stall_began",
            EventKind::StallEnded => "stall_ended",
        }
    }
}

#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Event {
    pub ts_ns: u64,
    pub key: FlowKey,
    /// An [`EventKind`] as its byte: userspace reads the record straight from the ring,
    /// where any byte may stand, so the field is a plain `u8` (see [`Event::kind`]).
    pub kind: u8,
    /// 0 client-to-server, 1 server-to-client.
    pub dir: u8,
    pub tcp_flags: u8,
    /// TTL or hop limit of the packet that caused the event.
    pub ttl: u8,
    pub _pad: [u8; 4],
}

impl Event {
    /// What the event reports (`None`: a kind this build does not know).
    pub fn kind(&self) -> Option<EventKind> {
        EventKind::from_u8(self.kind)
    }
}

// SAFETY: `Event` is repr(C) of integers and byte arrays only: every bit pattern is a
// valid value, as a map or ring read from the kernel needs.
#[cfg(feature = "user")]
unsafe impl aya::Pod for Event {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_round_trips_through_its_byte() {
        for k in EventKind::ALL {
            assert_eq!(EventKind::from_u8(k as u8), Some(k));
        }
        // Bytes no kind has.
        for v in [0u8, 11, 255] {
            assert_eq!(EventKind::from_u8(v), None);
        }
        let known = (0..=255u8)
            .filter(|v| EventKind::from_u8(*v).is_some())
            .count();
        assert_eq!(known, EventKind::ALL.len());
    }

    #[test]
    fn names_are_unique_snake_case() {
        for (i, a) in EventKind::ALL.iter().enumerate() {
            let n = a.name();
            assert!(
                n.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
                "{n}"
            );
            for b in &EventKind::ALL[i + 1..] {
                assert_ne!(n, b.name(), "{a:?} and {b:?} share a name");
            }
        }
    }
}
