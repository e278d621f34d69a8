//! The least a per-flow monitor does per packet, as the common per-flow counting tools do:
//! parse Ethernet, IPv4 and TCP in place, find the flow by its 4-tuple in an LRU hash (or
//! insert it), add to its packet and byte counts. Per CPU, so the adds need no atomics
//! (which the BPF target of this compiler does not offer) and no lock. Never attached: the benchmarks run it
//! beside the real program (group 1's `reference:` row), to say what the monitor's
//! analysis costs above the floor any per-flow counter pays.

use aya_ebpf::{
    bindings::{BPF_NOEXIST, TC_ACT_UNSPEC},
    macros::{classifier, map},
    maps::LruPerCpuHashMap,
    programs::TcContext,
};

/// An IPv4 4-tuple as the packet has it.
#[repr(C)]
#[derive(Clone, Copy)]
struct Key {
    saddr: u32,
    daddr: u32,
    sport: u16,
    dport: u16,
}

#[repr(C)]
struct Counts {
    packets: u64,
    bytes: u64,
}

#[map]
static REFERENCE_FLOWS: LruPerCpuHashMap<Key, Counts> =
    LruPerCpuHashMap::with_max_entries(65_536, 0);

/// Counts the packet into its flow; anything but TCP over IPv4 over Ethernet passes.
#[classifier]
pub fn tc_reference(ctx: TcContext) -> i32 {
    let (data, end) = (ctx.data(), ctx.data_end());
    // Ethernet (14) + the IPv4 header's first 20 bytes.
    if data + 34 > end {
        return TC_ACT_UNSPEC;
    }
    // SAFETY: the 34 bytes at `data` lie within the packet (checked just above).
    let (ethertype, vihl, proto, saddr, daddr) = unsafe {
        let p = data as *const u8;
        (
            u16::from_be_bytes([*p.add(12), *p.add(13)]),
            *p.add(14),
            *p.add(23),
            core::ptr::read_unaligned(p.add(26) as *const u32),
            core::ptr::read_unaligned(p.add(30) as *const u32),
        )
    };
    if ethertype != 0x0800 || proto != 6 || vihl >> 4 != 4 {
        return TC_ACT_UNSPEC;
    }
    let tcp = data + 14 + ((vihl & 0x0f) as usize) * 4;
    if tcp + 4 > end {
        return TC_ACT_UNSPEC;
    }
    // SAFETY: the TCP ports' 4 bytes at `tcp` lie within the packet (checked just above).
    let (sport, dport) = unsafe {
        let p = tcp as *const u16;
        (
            core::ptr::read_unaligned(p),
            core::ptr::read_unaligned(p.add(1)),
        )
    };
    let key = Key {
        saddr,
        daddr,
        sport,
        dport,
    };
    let len = ctx.len() as u64;
    match REFERENCE_FLOWS.get_ptr_mut(key) {
        // SAFETY: this CPU's copy of the flow's map value: no other CPU writes it.
        Some(c) => unsafe {
            (*c).packets += 1;
            (*c).bytes += len;
        },
        None => {
            let fresh = Counts {
                packets: 1,
                bytes: len,
            };
            let _ = REFERENCE_FLOWS.insert(key, &fresh, BPF_NOEXIST as u64);
        }
    }
    TC_ACT_UNSPEC
}
