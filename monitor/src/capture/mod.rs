//! Reading capture files: classic pcap and pcapng, either byte order, and the link types an
//! edge engineer's captures come in. Every length is checked against the file before use:
//! a damaged file is an error naming its byte offset, never a panic or a loop.

mod link;
mod pcap;
mod pcapng;

use std::{fmt, path::Path};

pub use link::Link;

/// One captured frame.
pub struct Packet<'a> {
    /// Unix-epoch nanoseconds (0 when the format has none: pcapng Simple Packet Blocks).
    pub ts_ns: u64,
    pub link: Link,
    /// The captured bytes (possibly fewer than the frame had on the wire).
    pub data: &'a [u8],
    pub orig_len: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaptureError {
    pub offset: u64,
    pub reason: String,
}

impl fmt::Display for CaptureError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at byte {}", self.reason, self.offset)
    }
}

impl std::error::Error for CaptureError {}

pub(crate) fn err<T>(offset: usize, reason: impl Into<String>) -> Result<T, CaptureError> {
    Err(CaptureError {
        offset: offset as u64,
        reason: reason.into(),
    })
}

/// Largest record accepted: far above any real snap length (262144), so only absurd
/// lengths from a damaged file are refused.
pub(crate) const MAX_RECORD: usize = 16 * 1024 * 1024;

pub struct Reader {
    bytes: Vec<u8>,
}

impl Reader {
    pub fn open(path: &Path) -> Result<Reader, CaptureError> {
        let bytes = std::fs::read(path).map_err(|e| CaptureError {
            offset: 0,
            reason: e.to_string(),
        })?;
        Self::from_bytes(bytes)
    }

    pub fn from_bytes(bytes: Vec<u8>) -> Result<Reader, CaptureError> {
        if bytes.is_empty() {
            return err(0, "empty file");
        }
        if bytes.len() < 4 {
            return err(0, "file too short for a capture header");
        }
        Ok(Reader { bytes })
    }

    /// Calls `f` for each frame in file order; stops at the first damaged record. Returns
    /// the number of frames.
    pub fn for_each(&self, f: impl FnMut(Packet<'_>)) -> Result<u64, CaptureError> {
        let magic = [self.bytes[0], self.bytes[1], self.bytes[2], self.bytes[3]];
        match magic {
            [0x0a, 0x0d, 0x0d, 0x0a] => pcapng::read(&self.bytes, f),
            m if pcap::is_magic(m) => pcap::read(&self.bytes, f),
            m => err(
                0,
                format!(
                    "magic {:02x}{:02x}{:02x}{:02x} is neither pcap nor pcapng",
                    m[0], m[1], m[2], m[3]
                ),
            ),
        }
    }
}

/// Byte-order-aware reads from a slice, all bounds-checked.
#[derive(Clone, Copy)]
pub(crate) struct Endian {
    pub big: bool,
}

impl Endian {
    pub fn u16(self, b: &[u8], off: usize) -> Option<u16> {
        let s: [u8; 2] = b.get(off..off.checked_add(2)?)?.try_into().ok()?;
        Some(if self.big {
            u16::from_be_bytes(s)
        } else {
            u16::from_le_bytes(s)
        })
    }

    pub fn u32(self, b: &[u8], off: usize) -> Option<u32> {
        let s: [u8; 4] = b.get(off..off.checked_add(4)?)?.try_into().ok()?;
        Some(if self.big {
            u32::from_be_bytes(s)
        } else {
            u32::from_le_bytes(s)
        })
    }
}

#[cfg(test)]
mod tests;
