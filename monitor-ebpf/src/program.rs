//! The kernel side: parse, filter on the port set, find the flow, count. Nothing per packet
//! leaves the kernel; rare transitions go to the ring buffer, and so do the first bytes of
//! each direction's first few payload segments (`SAMPLES`).

use core::{
    ffi::c_void,
    mem::MaybeUninit,
    ptr::{addr_of, addr_of_mut, read_volatile, write_volatile},
};

use aya_ebpf::{
    bindings::{xdp_action, BPF_NOEXIST, TC_ACT_UNSPEC},
    btf_maps::Array,
    helpers::{
        bpf_ktime_get_ns,
        generated::{
            bpf_skb_load_bytes, bpf_spin_lock, bpf_spin_unlock, bpf_xdp_get_buff_len,
            bpf_xdp_load_bytes,
        },
    },
    macros::{btf_map, classifier, map, xdp},
    maps::{Array as LegacyArray, LruHashMap, PerCpuArray, RingBuf},
    programs::{TcContext, XdpContext},
    EbpfContext,
};
use aya_log_ebpf::debug;
use monitor_common::{
    config::{Config, FLAG_COPY_ONLY, FLAG_SKB_TSTAMP},
    event::{Event, EventKind},
    evidence::{LINK_ETHERNET, LINK_RAW},
    flow::{
        seen, src_is_client, starts_new_connection, update, Changed, FlowKey, FlowState, Outcome,
    },
    parse::{parse_ethernet, parse_l3, Frame, Packet, Skip, RST},
    sample::take,
    stats,
};

mod evidence;
mod reference;
mod sample;
use sample::{emit_sample, CopyOut};

/// Filled in by userspace before load (`.rodata`, frozen: the verifier sees constants).
// SAFETY: the only symbol of this name in the object; userspace sets CONFIG by it.
#[unsafe(no_mangle)]
static CONFIG: Config = Config::empty();

/// Resized by userspace from `--max-flows` before load. LRU: when full, the least recently
/// used flow is evicted rather than a new one refused; userspace reports evictions.
#[map]
static FLOWS: LruHashMap<FlowKey, FlowState> = LruHashMap::with_max_entries(262_144, 0);

/// Lock stripes. Both directions of a flow may be handled on different CPUs at once, and the
/// analysis reads and writes both directions' state, so each update runs under a lock. The
/// kernel allows `bpf_spin_lock` in array and hash maps but not in LRU maps, hence locks
/// apart from the flows, one stripe per hash of the key (4096: contention between unrelated
/// flows is negligible for a critical section of a few hundred instructions).
const STRIPES: u32 = 4096;

/// The verifier recognises the lock by this exact type name in the map value's BTF.
#[allow(non_camel_case_types)]
#[repr(C)]
struct bpf_spin_lock {
    val: u32,
}

#[repr(C)]
struct Stripe {
    lock: bpf_spin_lock,
}

#[btf_map]
static LOCKS: Array<Stripe, { STRIPES as usize }> = Array::new();

#[map]
static STATS: PerCpuArray<u64> = PerCpuArray::with_max_entries(stats::COUNT, 0);

/// Per-CPU working memory for what does not fit the 512-byte BPF stack: the parsed packet,
/// and the template new flow records are inserted from. The template is all zeros except
/// the few fields `prepare` writes: zeroing 500 bytes per new flow would be a byte loop.
#[repr(C)]
struct Scratch {
    pkt: Packet,
    init: FlowState,
    /// Where [`read`] hides a header offset from the verifier.
    off: u64,
}

#[map]
static SCRATCH: PerCpuArray<Scratch> = PerCpuArray::with_max_entries(1, 0);

#[map]
static EVENTS: RingBuf = RingBuf::with_byte_size(256 * 1024, 0);

/// Connection records closed by port reuse (a new ISN on the same 4-tuple).
#[map]
static CLOSED: RingBuf = RingBuf::with_byte_size(1024 * 1024, 0);

/// The marking epoch, advanced by userspace at each tick (slot 0).
#[map]
static EPOCH: LegacyArray<u32> = LegacyArray::with_max_entries(1, 0);

/// Flows changed in an epoch, once each (see [`mark`]). Resized by userspace with the map.
#[map]
static CHANGED: RingBuf = RingBuf::with_byte_size(4 * 1024 * 1024, 0);

#[map]
static IFACES: PerCpuArray<stats::IfCounters> =
    PerCpuArray::with_max_entries(stats::IF_SLOTS * 2, 0);

/// Counts a packet on its interface and hook, before any parsing.
#[inline(always)]
fn count_iface(ifindex: u32, len: u32, egress: bool) {
    if let Some(c) = IFACES.get_ptr_mut(stats::if_slot(ifindex, egress)) {
        // SAFETY: `c` is this CPU's slot of IFACES, valid for the run; no other CPU writes it.
        unsafe {
            (*c).packets += 1;
            (*c).bytes += len as u64;
        }
    }
}

#[inline(always)]
fn bump(idx: u32) {
    if let Some(p) = STATS.get_ptr_mut(idx) {
        // SAFETY: `p` is this CPU's slot of STATS, valid for the run; no other CPU writes it.
        unsafe { *p += 1 };
    }
}

/// A rare failure: counted like any counter, and said through aya-log (the `AYA_LOGS`
/// ring, which userspace shows at `RUST_LOG=debug`). Only the 1st, 2nd, 4th, 8th... of
/// each kind on each CPU is said, with the count so far, so a flood of failures costs a
/// few lines, not one each. A full log ring drops the line (aya-log's reserve fails and it
/// returns): a lost line never blocks or fails the program. Not inlined: the per-packet
/// path carries only the branch to it.
#[inline(never)]
fn failed(idx: u32) {
    let Some(p) = STATS.get_ptr_mut(idx) else {
        return;
    };
    // SAFETY: this CPU's slot of STATS, as in `bump`.
    let n = unsafe {
        *p += 1;
        *p
    };
    if n & (n - 1) != 0 {
        return;
    }
    // aya-log-ebpf evaluates its context argument and ignores it.
    match idx {
        stats::FLOW_INSERT_FAILED => {
            debug!(&(), "flow map refused an insert ({} on this cpu)", n)
        }
        stats::EVENTS_LOST => debug!(&(), "EVENTS ring full: event lost ({} on this cpu)", n),
        stats::CHANGES_LOST => debug!(
            &(),
            "CHANGED ring full: changed flow not reported ({} on this cpu)", n
        ),
        stats::CLOSED_LOST => debug!(
            &(),
            "CLOSED ring full: record closed by port reuse lost ({} on this cpu)", n
        ),
        stats::SAMPLES_LOST => debug!(
            &(),
            "SAMPLES ring full: payload sample lost ({} on this cpu)", n
        ),
        stats::EVIDENCE_LOST => debug!(
            &(),
            "EVIDENCE ring full: packet for the evidence captures lost ({} on this cpu)", n
        ),
        _ => {}
    }
}

#[inline(always)]
fn watched(port: u16) -> bool {
    // SAFETY: CONFIG is only read here; volatile so that its zero initialiser is not folded.
    let word = unsafe { read_volatile(addr_of!(CONFIG.ports[(port >> 6) as usize])) };
    (word >> (port & 63)) & 1 == 1
}

#[inline(always)]
fn flags() -> u32 {
    // SAFETY: a read of CONFIG, as in `watched`.
    unsafe { read_volatile(addr_of!(CONFIG.flags)) }
}

/// Payload segments sampled per direction (`--media-samples`).
#[inline(always)]
fn samples() -> u32 {
    // SAFETY: a read of CONFIG, as in `watched`.
    unsafe { read_volatile(addr_of!(CONFIG.samples)) }
}

/// Bytes of each watched packet for the evidence ring (`--evidence-snaplen`; 0: off).
#[inline(always)]
fn snaplen() -> u32 {
    // SAFETY: a read of CONFIG, as in `watched`.
    unsafe { read_volatile(addr_of!(CONFIG.snaplen)) }
}

/// `N` bytes at `off`: copied straight from the packet when they lie within `[data, end)`,
/// else by `copy` (the kernel's copy helper, which writes `N` bytes to its argument and
/// returns 0, or zeros and an error). The headers of nearly every packet are in the linear
/// part, and a helper call costs more than the copy (a call and a return, each through the
/// return thunks of CPUs that need them).
///
/// Written for the verifier, which walks every path: both routes leave the bytes in the same
/// stack buffer, so it sees one state after either. `data` and `end` are read afresh for
/// each copy (volatile), so no packet pointer stays live to differ between the routes. The
/// offset goes through map memory (`slot`), which the verifier does not track, so it
/// becomes "some value below 32 KiB": added to a packet pointer, an offset's exact range
/// would otherwise have to match between paths (TCP header length times IP header length
/// times option position...) and the paths would multiply past its budget.
#[inline(always)]
fn read<const N: usize>(
    (data, end): (*const u32, *const u32),
    off: usize,
    slot: *mut u64,
    copy: impl FnOnce(*mut c_void) -> i64,
) -> Option<[u8; N]> {
    // Uninitialised on purpose: zeroing costs a byte loop (BPF has no memset), and either
    // route writes every byte.
    let mut buf = MaybeUninit::<[u8; N]>::uninit();
    // SAFETY: `data` and `end` point at the context's own fields (the caller's `bounds`).
    let (data, end) = unsafe { (read_volatile(data) as usize, read_volatile(end) as usize) };
    // SAFETY: `slot` is this CPU's word of SCRATCH (the caller's), valid for the run.
    let off_seen = unsafe {
        write_volatile(slot, off as u64);
        read_volatile(slot) as usize
    };
    // At least two: LLVM turns a one-byte check into `start >= end`, from which the
    // verifier grants nothing. A last byte thus comes through the helper.
    let need = if N < 2 { 2 } else { N };
    // The verifier grants packet ranges only to offsets it knows stay below 64 KiB.
    let in_place =
        flags() & FLAG_COPY_ONLY == 0 && off_seen <= 0x7fff && data + off_seen + need <= end;
    let ok = if in_place {
        // SAFETY: `data + off_seen + need <= end` was checked just above, in the form the
        // verifier follows.
        unsafe {
            core::ptr::copy_nonoverlapping(
                (data + off_seen) as *const u8,
                buf.as_mut_ptr() as *mut u8,
                N,
            )
        };
        true
    } else {
        copy(buf.as_mut_ptr() as *mut c_void) == 0
    };
    // SAFETY: either route wrote all N bytes when it succeeded.
    ok.then(|| unsafe { buf.assume_init() })
}

/// A packet at tc, a word of per-CPU map memory for [`read`], and the pcap link type of
/// the interface's packets.
struct Skb<'a>(&'a TcContext, *mut u64, u16);

impl Frame for Skb<'_> {
    #[inline(always)]
    fn wire_len(&self) -> usize {
        self.0.len() as usize
    }

    #[inline(always)]
    fn load<const N: usize>(&self, off: usize) -> Option<[u8; N]> {
        let skb = self.0.skb.skb;
        // SAFETY: `skb` is the program's own context; only the fields' addresses are taken.
        let bounds = unsafe { (addr_of!((*skb).data), addr_of!((*skb).data_end)) };
        // SAFETY: the helper checks `off` and N against the skb; `read` gives N writable bytes
        // at `dst`.
        read::<N>(bounds, off, self.1, |dst| unsafe {
            bpf_skb_load_bytes(self.0.as_ptr() as *const _, off as u32, dst, N as u32)
        })
    }
}

impl CopyOut for Skb<'_> {
    #[inline(always)]
    fn copy_out(&self, off: u32, dst: *mut c_void, len: u32) -> i64 {
        // SAFETY: the program's own skb; the helper checks `off` and `len` against it, and
        // the caller gives `len` writable bytes at `dst`.
        unsafe { bpf_skb_load_bytes(self.0.as_ptr() as *const _, off, dst, len) }
    }

    #[inline(always)]
    fn ifindex(&self) -> u32 {
        // SAFETY: a field of the program's own context.
        unsafe { (*self.0.skb.skb).ifindex }
    }

    #[inline(always)]
    fn link(&self) -> u16 {
        self.2
    }
}

/// A packet at XDP, as [`Skb`]; the helper also reaches the fragments of multi-buffer XDP.
struct Xdp<'a>(&'a XdpContext, *mut u64);

impl Frame for Xdp<'_> {
    #[inline(always)]
    fn wire_len(&self) -> usize {
        // SAFETY: the program's own XDP buffer; the helper only reads it (fragments included).
        unsafe { bpf_xdp_get_buff_len(self.0.as_ptr() as *mut _) as usize }
    }

    #[inline(always)]
    fn load<const N: usize>(&self, off: usize) -> Option<[u8; N]> {
        let x = self.0.ctx;
        // SAFETY: `x` is the program's own context; only the fields' addresses are taken.
        let bounds = unsafe { (addr_of!((*x).data), addr_of!((*x).data_end)) };
        // SAFETY: as for tc: the helper checks `off` and N against the buffer.
        read::<N>(bounds, off, self.1, |dst| unsafe {
            bpf_xdp_load_bytes(self.0.as_ptr() as *mut _, off as u32, dst, N as u32)
        })
    }
}

impl CopyOut for Xdp<'_> {
    #[inline(always)]
    fn copy_out(&self, off: u32, dst: *mut c_void, len: u32) -> i64 {
        // SAFETY: as for tc, on the program's own XDP buffer.
        unsafe { bpf_xdp_load_bytes(self.0.as_ptr() as *mut _, off, dst, len) }
    }

    #[inline(always)]
    fn ifindex(&self) -> u32 {
        self.0.ingress_ifindex() as u32
    }

    #[inline(always)]
    fn link(&self) -> u16 {
        LINK_ETHERNET
    }
}

/// Sets the fields of the (otherwise zero) template that differ per flow.
#[inline(always)]
fn prepare(
    t: &mut FlowState,
    key: &FlowKey,
    src_is_a: bool,
    (client, role_by): (bool, u8),
    now: u64,
) {
    t.key = *key;
    t.first_seen_ns = now;
    t.last_seen_ns = now;
    t.client_is_a = (client == src_is_a) as u8;
    t.role_by = role_by;
}

#[inline(always)]
fn emit(kind: EventKind, key: &FlowKey, dir: usize, pkt: &Packet, now: u64) {
    match EVENTS.reserve::<Event>(0) {
        Some(mut slot) => {
            slot.write(Event {
                ts_ns: now,
                key: *key,
                kind: kind as u8,
                dir: dir as u8,
                tcp_flags: pkt.flags,
                ttl: pkt.ttl,
                _pad: [0; 4],
            });
            slot.submit(0);
        }
        // Never silent: userspace reports lost events.
        None => failed(stats::EVENTS_LOST),
    }
}

/// The rare transitions of one packet, as events.
#[inline(always)]
fn emit_outcome(o: &Outcome, key: &FlowKey, pkt: &Packet, now: u64) {
    let n = o.newly_seen;
    let dir = o.dir as usize;
    for (bit, kind) in [
        (seen::ESTABLISHED, EventKind::HandshakeDone),
        (seen::REFUSED, EventKind::HandshakeRefused),
        (seen::CLIENT_HELLO, EventKind::ClientHello),
        (seen::SERVER_HELLO, EventKind::ServerHello),
        (seen::RESET_AFTER_HELLO, EventKind::ResetAfterHello),
    ] {
        if n & bit != 0 {
            emit(kind, key, dir, pkt, now);
        }
    }
    let stalls = seen::STALLED_C2S | seen::STALLED_S2C;
    if n & stalls != 0 {
        emit(EventKind::StallBegan, key, dir, pkt, now);
    }
    if o.cleared != 0 {
        // The other side's data: this packet's ACK moved it.
        emit(EventKind::StallEnded, key, dir ^ 1, pkt, now);
    }
    if pkt.flags & RST != 0 {
        emit(EventKind::Reset, key, dir, pkt, now);
    }
    if o.suspect_rst != 0 {
        emit(EventKind::SuspectInjectedRst, key, dir, pkt, now);
    }
}

// Map arguments by reference on purpose: by value, the flow entry would be copied onto the
// 512-byte BPF stack, which the scratch slot exists to avoid.
#[allow(clippy::needless_borrows_for_generic_args)]
#[inline(always)]
/// `clock` is read only for packets the monitor analyses: the clock read is a measurable
/// share of what a packet it skips costs (BENCHMARKS.md).
fn track<F: Frame + CopyOut>(
    frame: &F,
    scratch: *mut Scratch,
    parsed: Result<(), Skip>,
    segs: u32,
    clock: impl Fn() -> u64,
    sent_here: bool,
) {
    // SAFETY: `scratch` is this CPU's SCRATCH slot, valid for the run; the packet was parsed
    // into it.
    let pkt = unsafe { &(*scratch).pkt };
    bump(stats::PACKETS);
    if let Err(skip) = parsed {
        bump(skip.counter());
        return;
    }
    let (sw, dw) = (watched(pkt.sport), watched(pkt.dport));
    if !sw && !dw {
        bump(stats::UNWATCHED);
        return;
    }
    bump(stats::WATCHED);
    let now = clock();
    let (key, src_is_a) = FlowKey::of(pkt);
    let entry = match FLOWS.get_ptr_mut(&key) {
        Some(p) => p,
        None => {
            // SAFETY: this CPU's SCRATCH slot; nothing else holds a reference to `init` now.
            let init = unsafe { &mut (*scratch).init };
            prepare(init, &key, src_is_a, src_is_client(pkt, sw, dw), now);
            // BPF_NOEXIST: if the other direction inserted it first on another CPU, we
            // lose the race, keep its record, and count into it below.
            // No event for a new flow: userspace learns of it from the changed-flow
            // reports, so a SYN flood cannot fill the events ring with them.
            if FLOWS.insert(&key, &*init, BPF_NOEXIST as u64).is_ok() {
                bump(stats::FLOWS_CREATED);
            }
            match FLOWS.get_ptr_mut(&key) {
                Some(p) => p,
                None => {
                    failed(stats::FLOW_INSERT_FAILED);
                    return;
                }
            }
        }
    };
    let Some(stripe) = LOCKS.get_ptr_mut(key.stripe(STRIPES)) else {
        return;
    };
    // SAFETY: `stripe` is a LOCKS value looked up above; only the lock's address is taken.
    let lock = unsafe { addr_of_mut!((*stripe).lock) as *mut aya_ebpf::bindings::bpf_spin_lock };
    let mut entry = entry;
    // A pure SYN with a new ISN starts a new connection on this 4-tuple: the old record
    // leaves through the CLOSED ring buffer and a fresh one replaces it.
    // SAFETY (this and the next): `entry` is the flow's FLOWS value, looked up above, valid for
    // the run; read only.
    if unsafe { starts_new_connection(&*entry, pkt) } {
        if CLOSED.output::<FlowState>(unsafe { &*entry }, 0).is_err() {
            failed(stats::CLOSED_LOST);
        }
        // SAFETY: this CPU's SCRATCH slot, as above.
        let init = unsafe { &mut (*scratch).init };
        prepare(init, &key, src_is_a, src_is_client(pkt, sw, dw), now);
        if FLOWS.insert(&key, &*init, 0).is_ok() {
            bump(stats::FLOWS_CREATED);
        } else {
            failed(stats::FLOW_INSERT_FAILED);
        }
        entry = match FLOWS.get_ptr_mut(&key) {
            Some(p) => p,
            None => return,
        };
    }
    let max_samples = samples();
    // Everything between lock and unlock is plain arithmetic on the entry: no helper calls.
    // Whether this segment is sampled is decided (and counted) here, with the record's other
    // counts: two CPUs with segments of one direction cannot both take its last place. The
    // copy comes after the unlock: it is a helper call, which the kernel forbids under a
    // spin lock, and the costly part.
    // SAFETY: `entry` is the flow's map value, looked up above; the stripe's lock guards it.
    let (outcome, sampled) = unsafe {
        bpf_spin_lock(lock);
        update(&mut *entry, src_is_a, pkt, segs, now, sent_here);
        // Copied under the lock: another CPU may update the entry right after.
        let o = (*entry).last;
        let sampled = take(&mut *entry, o.dir as usize, pkt.payload_len, max_samples);
        bpf_spin_unlock(lock);
        (o, sampled)
    };
    mark(entry, &key);
    emit_outcome(&outcome, &key, pkt, now);
    if sampled {
        emit_sample(frame, &key, pkt, outcome.dir, now, || {
            failed(stats::SAMPLES_LOST)
        });
    }
    let snap = snaplen();
    if snap != 0 {
        evidence::record(frame, entry, &key, &outcome, snap, now, || {
            failed(stats::EVIDENCE_LOST)
        });
    }
}

/// Reports the flow as changed, once per epoch. Called after the record is written, and
/// the epoch read after that: a tick that advanced the epoch before this read also reads
/// the record after this write, and one that advanced it later sees the flow again in the
/// new epoch. A flow the ring has no room for stays unmarked (the next packet tries again)
/// and is counted, and userspace reads the whole map.
#[inline(always)]
fn mark(entry: *mut FlowState, key: &FlowKey) {
    let Some(e) = EPOCH.get_ptr(0) else { return };
    // SAFETY: `e` is EPOCH's value, looked up above; `entry` is the flow's FLOWS value (the
    // caller's).
    let epoch = unsafe { read_volatile(e) };
    let at = unsafe { addr_of_mut!((*entry).epoch) };
    if unsafe { read_volatile(at) } == epoch {
        return;
    }
    match CHANGED.reserve::<Changed>(0) {
        Some(mut slot) => {
            slot.write(Changed {
                key: *key,
                epoch,
                _pad: 0,
            });
            slot.submit(0);
            // SAFETY: `at` is the flow's own epoch field. Unlocked: two CPUs racing here both
            // report the flow, which userspace dedups.
            unsafe { write_volatile(at, epoch) };
        }
        None => failed(stats::CHANGES_LOST),
    }
}

/// Segments in the skb: a GSO/GRO super-packet carries several.
#[inline(always)]
fn tc_segs(ctx: &TcContext) -> u32 {
    // SAFETY: a field of the program's own context.
    unsafe { (*ctx.skb.skb).gso_segs }
}

#[inline(always)]
fn tc_now(ctx: &TcContext) -> u64 {
    if flags() & FLAG_SKB_TSTAMP != 0 {
        // SAFETY: a field of the program's own context; the helper below takes no arguments.
        unsafe { (*ctx.skb.skb).tstamp }
    } else {
        unsafe { bpf_ktime_get_ns() }
    }
}

#[inline(always)]
fn tc_count(ctx: &TcContext, egress: bool) {
    // SAFETY: a field of the program's own context.
    let ifindex = unsafe { (*ctx.skb.skb).ifindex };
    count_iface(ifindex, ctx.len(), egress);
}

#[inline(always)]
fn tc_eth(ctx: &TcContext, egress: bool) {
    tc_count(ctx, egress);
    if let Some(s) = SCRATCH.get_ptr_mut(0) {
        // SAFETY: `s` is this CPU's SCRATCH slot, valid for the run; nothing else references
        // it.
        let (pkt, slot) = unsafe { (&mut (*s).pkt, addr_of_mut!((*s).off)) };
        let f = Skb(ctx, slot, LINK_ETHERNET);
        let r = parse_ethernet(&f, pkt);
        track(&f, s, r, tc_segs(ctx), || tc_now(ctx), egress);
    }
}

/// tc on interfaces without a link header (tun, WireGuard): the IP header is at offset 0.
#[inline(always)]
fn tc_rawip(ctx: &TcContext, egress: bool) {
    tc_count(ctx, egress);
    let proto = u16::from_be(ctx.skb.protocol() as u16);
    if let Some(s) = SCRATCH.get_ptr_mut(0) {
        // SAFETY: as in `tc_eth`.
        let (pkt, slot) = unsafe { (&mut (*s).pkt, addr_of_mut!((*s).off)) };
        let f = Skb(ctx, slot, LINK_RAW);
        let r = parse_l3(&f, 0, proto, pkt);
        track(&f, s, r, tc_segs(ctx), || tc_now(ctx), egress);
    }
}

// One program per hook direction, so the analysis knows which packets this host sent.
// Observe only: TC_ACT_UNSPEC lets the next program or the default action decide.

/// tc ingress, Ethernet (and loopback) interfaces.
#[classifier]
pub fn tc_eth_in(ctx: TcContext) -> i32 {
    tc_eth(&ctx, false);
    TC_ACT_UNSPEC
}

/// tc egress, Ethernet (and loopback) interfaces.
#[classifier]
pub fn tc_eth_out(ctx: TcContext) -> i32 {
    tc_eth(&ctx, true);
    TC_ACT_UNSPEC
}

/// tc ingress, interfaces without a link header.
#[classifier]
pub fn tc_rawip_in(ctx: TcContext) -> i32 {
    tc_rawip(&ctx, false);
    TC_ACT_UNSPEC
}

/// tc egress, interfaces without a link header.
#[classifier]
pub fn tc_rawip_out(ctx: TcContext) -> i32 {
    tc_rawip(&ctx, true);
    TC_ACT_UNSPEC
}

/// Does nothing. Never attached: the benchmarks run it through BPF_PROG_TEST_RUN to measure
/// the test harness's own cost per run, which they subtract from the real programs'.
#[classifier]
pub fn tc_calibrate(_ctx: TcContext) -> i32 {
    TC_ACT_UNSPEC
}

/// XDP ingress, for the highest packet rates.
#[xdp]
pub fn xdp_eth(ctx: XdpContext) -> u32 {
    count_iface(
        ctx.ingress_ifindex() as u32,
        (ctx.data_end() - ctx.data()) as u32,
        false,
    );
    if let Some(s) = SCRATCH.get_ptr_mut(0) {
        // SAFETY: as in `tc_eth`; `bpf_ktime_get_ns` takes no arguments.
        let (pkt, slot) = unsafe { (&mut (*s).pkt, addr_of_mut!((*s).off)) };
        let f = Xdp(&ctx, slot);
        let r = parse_ethernet(&f, pkt);
        track(&f, s, r, 1, || unsafe { bpf_ktime_get_ns() }, false);
    }
    xdp_action::XDP_PASS
}

#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // SAFETY: no panic path survives to the verifier; this only satisfies the compiler.
    unsafe { core::hint::unreachable_unchecked() }
}

// SAFETY: the kernel reads the licence from this section; nothing else is placed there.
#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
