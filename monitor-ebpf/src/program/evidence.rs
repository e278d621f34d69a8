//! The evidence ring (`monitor_common::evidence`): with `--evidence`, every watched
//! packet's first bytes and verdict, after the flow's unlock. Without it the program's
//! `CONFIG.snaplen` is 0, a constant of the frozen `.rodata`, and the verifier drops the
//! call along with its branch.

use core::{
    ffi::c_void,
    ptr::{addr_of, addr_of_mut, read_volatile},
};

use aya_ebpf::{macros::map, maps::RingBuf};
use monitor_common::{
    evidence::{kept_len, EvidencePacket, EVIDENCE_BYTES},
    flow::{FlowKey, FlowState, Outcome, C2S, S2C},
};

use monitor_common::parse::Frame;

use super::sample::{copy_bounded, CopyOut};

/// Resized by userspace from `--evidence-ring-mb` when `--evidence` is on; a page
/// otherwise, never written. A full ring counts `EVIDENCE_LOST`.
#[map]
static EVIDENCE: RingBuf = RingBuf::with_byte_size(4096, 0);

/// The packet into `EVIDENCE`: `snaplen` bytes of it from its first (link header) byte,
/// its verdict, and what the reset test compared. The record's fields are read after the
/// unlock: another CPU may be counting the other direction into it, which can only make
/// `peer_ip_id` one packet newer, and the baseline TTL is written once, by the first
/// packet of its direction.
#[inline(always)]
pub(super) fn record<F: Frame + CopyOut>(
    f: &F,
    entry: *const FlowState,
    key: &FlowKey,
    o: &Outcome,
    snaplen: u32,
    now: u64,
    lost: impl Fn(),
) {
    let Some(mut slot) = EVIDENCE.reserve::<EvidencePacket>(0) else {
        lost();
        return;
    };
    let wire = f.wire_len();
    let n = kept_len(wire, snaplen);
    let d = (o.dir & 1) as usize;
    let peer = if d == C2S { S2C } else { C2S };
    let p = slot.as_mut_ptr();
    // SAFETY: `p` is the reserved entry, a whole `EvidencePacket`, each field written
    // through its own address; `entry` is the flow's map value, looked up by the caller.
    unsafe {
        addr_of_mut!((*p).ts_ns).write(now);
        addr_of_mut!((*p).first_seen_ns).write(read_volatile(addr_of!((*entry).first_seen_ns)));
        addr_of_mut!((*p).key).write(*key);
        addr_of_mut!((*p).outcome).write(*o);
        addr_of_mut!((*p).orig_len).write(wire as u32);
        addr_of_mut!((*p).ifindex).write(f.ifindex());
        addr_of_mut!((*p).len).write(n as u16);
        addr_of_mut!((*p).link).write(f.link());
        addr_of_mut!((*p).ttl_base).write(read_volatile(addr_of!((*entry).dir[d].ttl_base)));
        addr_of_mut!((*p)._pad).write(0);
        addr_of_mut!((*p).peer_ip_id).write(read_volatile(addr_of!((*entry).dir[peer].last_ip_id)));
    }
    if n == 0 {
        slot.submit(0);
        return;
    }
    // SAFETY: `bytes` is EVIDENCE_BYTES long in the reserved entry.
    let dst = unsafe { addr_of_mut!((*p).bytes) as *mut c_void };
    if copy_bounded::<EVIDENCE_BYTES, F>(f, 0, dst, n) == 0 {
        slot.submit(0);
    } else {
        slot.discard(0);
        lost();
    }
}
