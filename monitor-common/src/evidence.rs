//! The evidence ring: with `--evidence` on a live or demo run, the kernel hands over the
//! headers and first bytes of every watched packet, with its verdict, so the alert that
//! packet's flow raises can come with the packets that prove it (`monitor/src/evidence/`).
//! Off (the default), the program's branch to it is a constant the verifier removes, so
//! the per-packet path costs nothing more.

use crate::flow::{FlowKey, Outcome};

/// Bytes of a packet an entry holds at most, from its first byte (the link header): the
/// headers and the first payload bytes, as `--evidence-snaplen` asks, up to this.
pub const EVIDENCE_BYTES: usize = 256;

/// `--evidence-ring-mb`'s default, in MiB: the kernel ring holds some 50,000 packets
/// between two ticks.
pub const DEFAULT_RING_MB: u32 = 16;

/// pcap link types of the bytes an entry holds.
pub const LINK_ETHERNET: u16 = 1;
pub const LINK_RAW: u16 = 101;

/// One watched packet, as the kernel writes it into the `EVIDENCE` ring.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EvidencePacket {
    /// The packet's time (kernel clock in the ring; Unix epoch once collected).
    pub ts_ns: u64,
    /// The first packet's time of the connection the packet counted into: a flow's id
    /// with the key (port reuse starts a new connection on the same key).
    pub first_seen_ns: u64,
    pub key: FlowKey,
    /// What the analysis concluded about the packet (the record's `last`).
    pub outcome: Outcome,
    /// The packet's length on the wire.
    pub orig_len: u32,
    pub ifindex: u32,
    /// Bytes of `bytes` that hold the packet.
    pub len: u16,
    /// [`LINK_ETHERNET`] or [`LINK_RAW`].
    pub link: u16,
    /// The TTL (hop limit) of the packet's direction's first packet, and the latest IPv4
    /// identification of the other direction: what a reset's injection test compared.
    pub ttl_base: u8,
    pub _pad: u8,
    pub peer_ip_id: u16,
    pub bytes: [u8; EVIDENCE_BYTES],
}

impl EvidencePacket {
    /// The packet bytes the entry holds.
    pub fn captured(&self) -> &[u8] {
        &self.bytes[..(self.len as usize).min(EVIDENCE_BYTES)]
    }
}

/// Bytes copied of a packet of `wire_len` bytes with `snaplen` asked for: at most
/// [`EVIDENCE_BYTES`].
#[inline(always)]
pub fn kept_len(wire_len: usize, snaplen: u32) -> usize {
    let mut n = wire_len;
    if n > snaplen as usize {
        n = snaplen as usize;
    }
    if n > EVIDENCE_BYTES {
        n = EVIDENCE_BYTES;
    }
    n
}

// SAFETY: `EvidencePacket` is repr(C) of integers, byte arrays and repr(C) structs of
// integers only: every bit pattern is a valid value, as a ring read from the kernel needs.
#[cfg(feature = "user")]
unsafe impl aya::Pod for EvidencePacket {}

#[cfg(all(test, feature = "user"))]
mod tests {
    use super::*;

    #[test]
    fn an_entry_holds_the_snap_length_or_the_packet_whichever_is_less() {
        assert_eq!(kept_len(60, 256), 60);
        assert_eq!(kept_len(1514, 128), 128);
        assert_eq!(kept_len(1514, 9000), EVIDENCE_BYTES);
        assert_eq!(kept_len(0, 256), 0);
    }

    #[test]
    fn layout_is_fixed() {
        // 8 + 8 + 40 (key) + 16 (outcome) + 16 of fields + the bytes.
        assert_eq!(core::mem::size_of::<EvidencePacket>(), 88 + EVIDENCE_BYTES);
    }
}
