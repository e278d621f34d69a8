//! Recordings (`--record FILE`): append-only JSON lines a report is made from later.

pub mod reader;
pub mod writer;

/// The header's `format` and `version`: readers refuse newer versions.
pub const FORMAT: &str = "monitor-recording";
pub const VERSION: u64 = 1;
