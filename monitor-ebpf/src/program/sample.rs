//! Payload samples (`monitor_common::sample`): the ring they leave the kernel by and the
//! copy of a segment's first bytes into it. The program decides which segments, under the
//! flow's lock; this runs after the unlock.

use core::{
    ffi::c_void,
    ptr::{addr_of_mut, read_volatile, write_volatile},
};

use aya_ebpf::{macros::map, maps::RingBuf};
use monitor_common::{
    flow::FlowKey,
    parse::{Frame, Packet},
    sample::{captured_len, Sample, SAMPLE_BYTES},
};

/// The first payload bytes of each flow direction's first segments (`monitor_common::sample`),
/// for the media decoders in userspace. 4 MiB: some 12,000 samples between two ticks, new
/// flows' worth of 1,500 at the default 4 per direction; a full ring counts `SAMPLES_LOST`.
#[map]
static SAMPLES: RingBuf = RingBuf::with_byte_size(4 * 1024 * 1024, 0);

/// A packet as the copies out of it see it. `copy_out` copies `len` bytes at `off` of the
/// packet to `dst` with the hook's copy helper (which also reaches the non-linear part of
/// an skb and the fragments of multi-buffer XDP); it returns 0, or an error with `dst`
/// zeroed.
pub(super) trait CopyOut {
    fn copy_out(&self, off: u32, dst: *mut c_void, len: u32) -> i64;
    /// The interface the packet was seen on, and the pcap link type of its bytes (for the
    /// evidence ring).
    fn ifindex(&self) -> u32;
    fn link(&self) -> u16;
}

/// Copies `n` bytes (1 to `MAX`, a power of two) at `off` of the packet to `dst`, which has
/// room for `MAX`. The helper's length must have bounds the verifier knows, 1 to the
/// buffer's size. The compiler knows `n`'s range at the call and would drop a mask of it,
/// so `n` goes through a volatile stack slot first; for n in 1..=MAX the mask gives `n`
/// back.
#[inline(always)]
pub(super) fn copy_bounded<const MAX: usize, F: CopyOut>(
    f: &F,
    off: u32,
    dst: *mut c_void,
    n: usize,
) -> i64 {
    let mut hidden = n as u32;
    // SAFETY: `hidden` is a live local, written and read in place.
    let len = unsafe {
        write_volatile(&mut hidden, n as u32);
        read_volatile(&hidden)
    };
    let len = (len.wrapping_sub(1) & (MAX as u32 - 1)) + 1;
    f.copy_out(off, dst, len)
}

/// The segment's first payload bytes into `SAMPLES`, with its flow, direction, sequence
/// number and time; `lost` counts (and says) a sample the ring has no room for. The entry
/// has a fixed size (the ring reserves constant sizes); only `len` bytes of it are payload.
#[inline(always)]
pub(super) fn emit_sample<F: Frame + CopyOut>(
    f: &F,
    key: &FlowKey,
    pkt: &Packet,
    dir: u8,
    now: u64,
    lost: impl Fn(),
) {
    let Some(mut slot) = SAMPLES.reserve::<Sample>(0) else {
        // Never silent: userspace reports lost samples.
        lost();
        return;
    };
    let off = pkt.payload_off;
    let n = captured_len(pkt.payload_len, f.wire_len().saturating_sub(off as usize));
    let p = slot.as_mut_ptr();
    // SAFETY: `p` is the reserved entry, a whole `Sample`; each field is written through its
    // own address, the payload bytes by the helper below.
    unsafe {
        addr_of_mut!((*p).ts_ns).write(now);
        addr_of_mut!((*p).key).write(*key);
        addr_of_mut!((*p).seq).write(pkt.seq);
        addr_of_mut!((*p).payload_len).write(pkt.payload_len);
        addr_of_mut!((*p).len).write(n as u16);
        addr_of_mut!((*p).dir).write(dir);
        addr_of_mut!((*p).ttl).write(pkt.ttl);
        addr_of_mut!((*p)._pad2).write(0);
    }
    if n == 0 {
        slot.submit(0);
        return;
    }
    // SAFETY: `bytes` is SAMPLE_BYTES long in the reserved entry.
    let dst = unsafe { addr_of_mut!((*p).bytes) as *mut c_void };
    if copy_bounded::<SAMPLE_BYTES, F>(f, off, dst, n) == 0 {
        slot.submit(0);
    } else {
        // The payload lies within the frame (the parser held it to the frame's length):
        // a failed copy is not expected, and counted with the lost samples if it happens.
        slot.discard(0);
        lost();
    }
}
