//! The kernel side: parse, filter on the port set, find the flow, count. Nothing per packet
//! leaves the kernel; rare transitions go to the ring buffer.

use core::{
    ffi::c_void,
    intrinsics::{atomic_xadd, AtomicOrdering},
    ptr::{addr_of, read_volatile},
};

use aya_ebpf::{
    bindings::{xdp_action, BPF_NOEXIST, TC_ACT_UNSPEC},
    helpers::{
        bpf_ktime_get_ns,
        generated::{bpf_skb_load_bytes, bpf_xdp_get_buff_len, bpf_xdp_load_bytes},
    },
    macros::{classifier, map, xdp},
    maps::{LruHashMap, PerCpuArray, RingBuf},
    programs::{TcContext, XdpContext},
    EbpfContext,
};
use monitor_common::{
    config::{Config, FLAG_SKB_TSTAMP},
    event::{self, Event},
    flow::{increments, src_is_client, DirStats, FlowKey, FlowState},
    parse::{parse_ethernet, parse_l3, Frame, Packet, Skip, RST},
    stats,
};

/// Filled in by userspace before load (`.rodata`, frozen: the verifier sees constants).
#[unsafe(no_mangle)]
static CONFIG: Config = Config::empty();

/// Resized by userspace from `--max-flows` before load. LRU: when full, the least recently
/// used flow is evicted rather than a new one refused; userspace reports evictions.
#[map]
static FLOWS: LruHashMap<FlowKey, FlowState> = LruHashMap::with_max_entries(262_144, 0);

#[map]
static STATS: PerCpuArray<u64> = PerCpuArray::with_max_entries(stats::COUNT, 0);

/// Per-CPU working memory for what does not fit the 512-byte BPF stack: the parsed packet
/// and a new flow record built before insertion.
#[repr(C)]
struct Scratch {
    pkt: Packet,
    init: FlowState,
}

#[map]
static SCRATCH: PerCpuArray<Scratch> = PerCpuArray::with_max_entries(1, 0);

#[map]
static EVENTS: RingBuf = RingBuf::with_byte_size(256 * 1024, 0);

#[inline(always)]
fn bump(idx: u32) {
    if let Some(p) = STATS.get_ptr_mut(idx) {
        // Per-CPU slot: no other CPU writes it, a plain add is safe.
        unsafe { *p += 1 };
    }
}

#[inline(always)]
fn watched(port: u16) -> bool {
    // Volatile: the compiler must not fold the zero-initialised static.
    let word = unsafe { read_volatile(addr_of!(CONFIG.ports[(port >> 6) as usize])) };
    (word >> (port & 63)) & 1 == 1
}

#[inline(always)]
fn flags() -> u32 {
    unsafe { read_volatile(addr_of!(CONFIG.flags)) }
}

struct Skb<'a>(&'a TcContext);

impl Frame for Skb<'_> {
    #[inline(always)]
    fn captured_len(&self) -> usize {
        self.0.len() as usize
    }

    #[inline(always)]
    fn load<const N: usize>(&self, off: usize) -> Option<[u8; N]> {
        let mut buf = [0u8; N];
        let r = unsafe {
            bpf_skb_load_bytes(
                self.0.as_ptr() as *const _,
                off as u32,
                buf.as_mut_ptr() as *mut c_void,
                N as u32,
            )
        };
        (r == 0).then_some(buf)
    }
}

struct Xdp<'a>(&'a XdpContext);

impl Frame for Xdp<'_> {
    #[inline(always)]
    fn captured_len(&self) -> usize {
        // Whole frame, fragments of multi-buffer XDP included.
        unsafe { bpf_xdp_get_buff_len(self.0.as_ptr() as *mut _) as usize }
    }

    #[inline(always)]
    fn load<const N: usize>(&self, off: usize) -> Option<[u8; N]> {
        let mut buf = [0u8; N];
        let r = unsafe {
            bpf_xdp_load_bytes(
                self.0.as_ptr() as *mut _,
                off as u32,
                buf.as_mut_ptr() as *mut c_void,
                N as u32,
            )
        };
        (r == 0).then_some(buf)
    }
}

/// A raw-pointer field address, without forming a reference to shared map memory.
macro_rules! addr_of_mut_field {
    ($p:expr, $f:ident) => {
        core::ptr::addr_of_mut!((*$p).$f)
    };
}

#[inline(always)]
fn emit(kind: u8, key: &FlowKey, dir: usize, pkt: &Packet, now: u64) {
    match EVENTS.reserve::<Event>(0) {
        Some(mut slot) => {
            slot.write(Event {
                ts_ns: now,
                key: *key,
                kind,
                dir: dir as u8,
                tcp_flags: pkt.flags,
                ttl: pkt.ttl,
                _pad: [0; 4],
            });
            slot.submit(0);
        }
        // Never silent: userspace reports lost events.
        None => bump(stats::EVENTS_LOST),
    }
}

/// Atomic add (BPF_ATOMIC | BPF_ADD): both directions of a flow may be handled on different
/// CPUs at the same time, and each counter must see every increment.
#[inline(always)]
fn add(field: *mut u64, v: u64) {
    if v != 0 {
        unsafe { atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(field, v) };
    }
}

#[inline(always)]
fn count(dst: *mut DirStats, inc: &DirStats) {
    unsafe {
        add(addr_of_mut_field!(dst, packets), inc.packets);
        add(addr_of_mut_field!(dst, bytes), inc.bytes);
        add(addr_of_mut_field!(dst, payload_bytes), inc.payload_bytes);
        add(addr_of_mut_field!(dst, syns), inc.syns);
        add(addr_of_mut_field!(dst, synacks), inc.synacks);
        add(addr_of_mut_field!(dst, fins), inc.fins);
        add(addr_of_mut_field!(dst, rsts), inc.rsts);
    }
}

// Map arguments by reference on purpose: by value, the flow record would be copied onto the
// 512-byte BPF stack, which the scratch slot exists to avoid.
#[allow(clippy::needless_borrows_for_generic_args)]
#[inline(always)]
fn track(scratch: *mut Scratch, parsed: Result<(), Skip>, now: u64) {
    let pkt = unsafe { &(*scratch).pkt };
    bump(stats::PACKETS);
    match parsed {
        Ok(()) => {}
        Err(skip) => {
            bump(match skip {
                Skip::NotIp => stats::NOT_IP,
                Skip::NotTcp => stats::NOT_TCP,
                Skip::Fragment => stats::FRAGMENTS,
                Skip::Truncated => stats::TRUNCATED,
                Skip::Malformed => stats::MALFORMED,
            });
            return;
        }
    }
    let (sw, dw) = (watched(pkt.sport), watched(pkt.dport));
    if !sw && !dw {
        bump(stats::UNWATCHED);
        return;
    }
    bump(stats::WATCHED);
    let (key, src_is_a) = FlowKey::of(pkt);
    let st = match FLOWS.get_ptr_mut(&key) {
        Some(p) => p,
        None => {
            let init = unsafe { &mut (*scratch).init };
            *init = FlowState::new(src_is_a, src_is_client(pkt, sw, dw), now);
            // BPF_NOEXIST: if the other direction inserted it first on another CPU, we
            // lose the race, keep its record, and count into it below.
            if FLOWS.insert(&key, &*init, BPF_NOEXIST as u64).is_ok() {
                bump(stats::FLOWS_CREATED);
                emit(event::FLOW_SEEN, &key, init.direction(src_is_a), pkt, now);
            }
            match FLOWS.get_ptr_mut(&key) {
                Some(p) => p,
                None => {
                    bump(stats::FLOW_INSERT_FAILED);
                    return;
                }
            }
        }
    };
    let dir = unsafe { (*st).direction(src_is_a) };
    count(
        unsafe { addr_of_mut_field!(st, dir) as *mut DirStats }.wrapping_add(dir),
        &increments(pkt),
    );
    unsafe { core::ptr::write_volatile(addr_of_mut_field!(st, last_seen_ns), now) };
    if pkt.flags & RST != 0 {
        emit(event::RESET, &key, dir, pkt, now);
    }
}

#[inline(always)]
fn tc_now(ctx: &TcContext) -> u64 {
    if flags() & FLAG_SKB_TSTAMP != 0 {
        unsafe { (*ctx.skb.skb).tstamp }
    } else {
        unsafe { bpf_ktime_get_ns() }
    }
}

/// tc ingress/egress on interfaces with an Ethernet header (loopback included).
#[classifier]
pub fn tc_eth(ctx: TcContext) -> i32 {
    if let Some(s) = SCRATCH.get_ptr_mut(0) {
        let r = parse_ethernet(&Skb(&ctx), unsafe { &mut (*s).pkt });
        track(s, r, tc_now(&ctx));
    }
    // Observe only: let the next program or the default action decide.
    TC_ACT_UNSPEC
}

/// tc on interfaces without a link header (tun, WireGuard): the IP header is at offset 0.
#[classifier]
pub fn tc_rawip(ctx: TcContext) -> i32 {
    let proto = u16::from_be(ctx.skb.protocol() as u16);
    if let Some(s) = SCRATCH.get_ptr_mut(0) {
        let r = parse_l3(&Skb(&ctx), 0, proto, unsafe { &mut (*s).pkt });
        track(s, r, tc_now(&ctx));
    }
    TC_ACT_UNSPEC
}

/// XDP ingress, for the highest packet rates.
#[xdp]
pub fn xdp_eth(ctx: XdpContext) -> u32 {
    if let Some(s) = SCRATCH.get_ptr_mut(0) {
        let r = parse_ethernet(&Xdp(&ctx), unsafe { &mut (*s).pkt });
        track(s, r, unsafe { bpf_ktime_get_ns() });
    }
    xdp_action::XDP_PASS
}

#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // No panic path survives to the verifier; this only satisfies the compiler.
    unsafe { core::hint::unreachable_unchecked() }
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
