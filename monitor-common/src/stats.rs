//! Global counters the kernel keeps per CPU (a `PerCpuArray<u64>` indexed by these), so the
//! hot path never contends on a shared cache line; userspace sums the CPUs.

pub const PACKETS: u32 = 0;
pub const NOT_IP: u32 = 1;
pub const NOT_TCP: u32 = 2;
pub const FRAGMENTS: u32 = 3;
pub const TRUNCATED: u32 = 4;
pub const MALFORMED: u32 = 5;
pub const UNWATCHED: u32 = 6;
pub const WATCHED: u32 = 7;
pub const FLOWS_CREATED: u32 = 8;
pub const FLOW_INSERT_FAILED: u32 = 9;
pub const EVENTS_LOST: u32 = 10;
/// Changed flows the kernel could not report (ring full): userspace then reads the map whole.
pub const CHANGES_LOST: u32 = 11;
/// Frames with more VLAN tags or IPv6 extension headers than the parser follows.
pub const TOO_MANY_HEADERS: u32 = 12;
/// Connection records port reuse closed that the kernel could not hand over (ring full):
/// gone with the events, not evicted by the map, so a larger map would not keep them.
pub const CLOSED_LOST: u32 = 13;
/// Payload samples the kernel could not hand over (the `SAMPLES` ring was full): the
/// segment was counted as sampled, its bytes are gone.
pub const SAMPLES_LOST: u32 = 14;
/// Watched packets the kernel could not hand over to the evidence captures (`--evidence`:
/// the `EVIDENCE` ring was full).
pub const EVIDENCE_LOST: u32 = 15;
pub const COUNT: u32 = 16;

/// Names used in JSON and logs, indexed like the constants above.
pub const NAMES: [&str; COUNT as usize] = [
    "packets",
    "not_ip",
    "not_tcp",
    "fragments",
    "truncated",
    "malformed",
    "unwatched",
    "watched",
    "flows_created",
    "flow_insert_failed",
    "lost_events",
    "lost_changes",
    "too_many_headers",
    "lost_closed",
    "lost_samples",
    "lost_evidence",
];

/// Traffic per interface and hook direction, whatever the port: what the interface
/// carried, next to what the monitor analysed. A `PerCpuArray<IfCounters>` indexed by
/// [`if_slot`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IfCounters {
    pub packets: u64,
    /// Bytes as the hook saw them (link header included).
    pub bytes: u64,
}

/// Interface slots: ifindexes are small on real hosts; two interfaces whose ifindexes
/// differ by a multiple of this would share a slot (userspace refuses to watch both).
pub const IF_SLOTS: u32 = 256;

/// The slot of an interface's ingress (`egress` false) or egress counters.
#[inline(always)]
pub fn if_slot(ifindex: u32, egress: bool) -> u32 {
    (ifindex % IF_SLOTS) * 2 + egress as u32
}

// SAFETY: `IfCounters` is repr(C) of integers and byte arrays only: every bit pattern is a
// valid value, as a map or ring read from the kernel needs.
#[cfg(feature = "user")]
unsafe impl aya::Pod for IfCounters {}
