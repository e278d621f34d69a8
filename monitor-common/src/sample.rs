//! The first payload bytes of each flow direction's first segments, for the media decoders
//! (`monitor/src/media/`): the kernel hands them over through its `SAMPLES` ring, the host
//! engine (`monitor/src/host.rs`) takes the same from captures. Both sides decide with
//! [`take`] and size the copy with [`captured_len`], so they sample the same segments and
//! the same bytes.

use crate::flow::{FlowKey, FlowState};

/// Payload bytes a sample holds at most: a pseudo-TLS hello (50 bytes), its reply (83), a
/// STUN message or the start of a real TLS handshake fit.
pub const SAMPLE_BYTES: usize = 256;
/// Payload segments sampled per direction unless `--media-samples` says otherwise: the
/// hello, the reply and the first framed messages after them.
pub const DEFAULT_SAMPLES: u32 = 4;
/// The most `--media-samples` allows (and [`crate::config::Config::with_samples`] keeps to).
pub const MAX_SAMPLES: u32 = 16;

/// One sampled segment, as the kernel writes it into the `SAMPLES` ring.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sample {
    /// The segment's time (kernel clock in the ring; Unix epoch once collected).
    pub ts_ns: u64,
    pub key: FlowKey,
    pub seq: u32,
    /// The segment's whole payload length: `len` may be less.
    pub payload_len: u32,
    /// Bytes of `bytes` that hold payload (see [`captured_len`]); the rest is not payload.
    pub len: u16,
    /// 0 client-to-server, 1 server-to-client.
    pub dir: u8,
    /// The segment's TTL (hop limit): a reply made by a device in the path comes from
    /// another distance than the server's packets.
    pub ttl: u8,
    pub _pad2: u32,
    pub bytes: [u8; SAMPLE_BYTES],
}

impl Sample {
    /// The payload bytes the sample holds.
    pub fn captured(&self) -> &[u8] {
        &self.bytes[..(self.len as usize).min(SAMPLE_BYTES)]
    }
}

/// Whether the segment just counted into `st` (by `flow::update`, direction `dir`) is
/// sampled; if so it is counted in that direction's `sampled`. Called right after `update`, under the same
/// lock in the kernel, so two CPUs never take the same place. Once a direction has its `max`,
/// every later segment costs the first compare and nothing more.
#[inline(always)]
pub fn take(st: &mut FlowState, dir: usize, payload_len: u32, max: u32) -> bool {
    let n = &mut st.dir[dir & 1].sampled;
    if *n as u32 >= max || payload_len == 0 {
        return false;
    }
    *n = n.saturating_add(1);
    true
}

/// Bytes a sample of a segment with `payload_len` bytes of payload holds: the payload up to
/// [`SAMPLE_BYTES`], and no more than the `present` bytes the frame has from the payload's
/// start on (what a capture's snap length kept; in the kernel the whole payload is there).
#[inline(always)]
pub fn captured_len(payload_len: u32, present: usize) -> usize {
    let n = if (payload_len as usize) < SAMPLE_BYTES {
        payload_len as usize
    } else {
        SAMPLE_BYTES
    };
    if present < n {
        present
    } else {
        n
    }
}

// SAFETY: `Sample` is repr(C) of integers and byte arrays only: every bit pattern is a
// valid value, as a map or ring read from the kernel needs.
#[cfg(feature = "user")]
unsafe impl aya::Pod for Sample {}

#[cfg(all(test, feature = "user"))]
mod tests {
    use super::*;

    #[test]
    fn the_first_max_payload_segments_of_each_direction_are_taken() {
        let mut st = FlowState::default();
        let taken: std::vec::Vec<bool> = [(0, 10), (0, 0), (1, 5), (0, 1), (0, 7), (1, 3), (0, 2)]
            .iter()
            .map(|&(d, len)| take(&mut st, d, len, 3))
            .collect();
        // Pure ACKs (length 0) are never taken; the fourth payload segment of C2S is not.
        assert_eq!(taken, [true, false, true, true, true, true, false]);
        assert_eq!((st.dir[0].sampled, st.dir[1].sampled), (3, 2));
        let mut off = FlowState::default();
        assert!(!take(&mut off, 0, 100, 0), "0: sampling off");
        assert_eq!((off.dir[0].sampled, off.dir[1].sampled), (0, 0));
    }

    #[test]
    fn a_sample_holds_the_payload_up_to_its_size_and_what_is_present() {
        assert_eq!(captured_len(50, 1000), 50);
        assert_eq!(captured_len(1400, 1400), SAMPLE_BYTES);
        assert_eq!(captured_len(256, 256), 256);
        assert_eq!(captured_len(1400, 10), 10, "a snap length cut the payload");
        assert_eq!(captured_len(0, 10), 0);
    }

    #[test]
    fn layout_is_fixed() {
        assert_eq!(core::mem::size_of::<Sample>(), 64 + SAMPLE_BYTES);
        // The count sits in what was padding of each direction's counters.
        assert_eq!(core::mem::size_of::<crate::flow::DirStats>(), 128);
    }
}
