//! Rare transitions the kernel reports through the ring buffer. Per-packet facts never go
//! this way: they stay in the flow map.

use crate::flow::FlowKey;

pub const FLOW_SEEN: u8 = 1;
pub const RESET: u8 = 2;
pub const HANDSHAKE_DONE: u8 = 3;
pub const HANDSHAKE_REFUSED: u8 = 4;
pub const CLIENT_HELLO: u8 = 5;
pub const SERVER_HELLO: u8 = 6;
pub const SUSPECT_INJECTED_RST: u8 = 7;
pub const RESET_AFTER_HELLO: u8 = 8;
/// `dir` is the direction whose data stalled, or resumed.
pub const STALL_BEGAN: u8 = 9;
pub const STALL_ENDED: u8 = 10;

#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Event {
    pub ts_ns: u64,
    pub key: FlowKey,
    pub kind: u8,
    /// 0 client-to-server, 1 server-to-client.
    pub dir: u8,
    pub tcp_flags: u8,
    /// TTL or hop limit of the packet that caused the event.
    pub ttl: u8,
    pub _pad: [u8; 4],
}

#[cfg(feature = "user")]
unsafe impl aya::Pod for Event {}
