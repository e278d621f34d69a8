//! Reading captures as a stream: classic pcap and pcapng (the `pcap-parser` crate parses the
//! records), either byte order, gzip- or zstd-compressed, from a file or standard input, in
//! bounded memory. Every length is checked before it is waited for: a damaged record is an
//! error naming its byte offset, a capture cut mid-record yields its complete records and
//! says where it was cut, and nothing is read without end.

mod input;
mod link;
mod pcap;
mod pcapng;
mod stream;

use std::{fmt, io::Read, path::Path};

use monitor_common::parse::{parse_ethernet, parse_l3, Captured, Packet, Skip};

pub use link::{decode as decode_link, Link};

use input::{Format, Opened};
pub use stream::BUFFER;

/// One captured frame.
pub struct Record<'a> {
    /// Unix-epoch nanoseconds (0 when the format has none: pcapng Simple Packet Blocks).
    pub ts_ns: u64,
    /// The capture's link type number (LINKTYPE_*), kept for the evidence captures.
    pub linktype: u32,
    pub link: Link,
    /// The captured bytes (possibly fewer than the frame had on the wire).
    pub data: &'a [u8],
    pub orig_len: u32,
}

impl Record<'_> {
    /// The frame through the parser. Its headers are held to the length the frame had on
    /// the wire (the original length), not to the bytes a snap length kept: an IP length
    /// past the frame is malformed here as in the kernel.
    pub fn parse(&self, pkt: &mut Packet) -> Result<(), Skip> {
        let f = Captured {
            bytes: self.data,
            wire_len: self.orig_len as usize,
        };
        match self.link {
            Link::Ethernet => parse_ethernet(&f, pkt),
            Link::L3 { offset, ethertype } => parse_l3(&f, offset, ethertype, pkt),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaptureError {
    /// Byte offset in the capture (after decompression, as Wireshark counts).
    pub offset: u64,
    pub reason: String,
}

impl fmt::Display for CaptureError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at byte {}", self.reason, self.offset)
    }
}

impl std::error::Error for CaptureError {}

pub(crate) fn err<T>(offset: u64, reason: impl Into<String>) -> Result<T, CaptureError> {
    Err(CaptureError {
        offset,
        reason: reason.into(),
    })
}

/// Largest record accepted: far above any real snap length (262144), so only absurd
/// lengths from a damaged file are refused. It also bounds the read buffer.
pub(crate) const MAX_RECORD: usize = 16 * 1024 * 1024;

/// What a read to the end found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frames {
    /// Frames handed to the caller.
    pub count: u64,
    /// Where the capture ends mid-record, if it does: the frames before it were read (a
    /// capture still being written, or a copy cut short), as tshark reads them.
    pub cut: Option<CaptureError>,
    /// The most bytes the reader held at once (its buffers), the proof of bounded memory.
    pub peak_buffer: usize,
}

/// A capture opened and recognised by its magic, ready to be read once.
pub struct Reader {
    opened: Opened,
}

impl Reader {
    /// Opens a file, or standard input for `-`.
    pub fn open(path: &Path) -> Result<Reader, CaptureError> {
        if path.as_os_str() == "-" {
            return Self::new(std::io::stdin().lock());
        }
        let file = std::fs::File::open(path).map_err(|e| CaptureError {
            offset: 0,
            reason: e.to_string(),
        })?;
        Self::new(file)
    }

    /// Reads the magic (and a compressed stream's inner magic): a stream that is not a
    /// capture is refused here, after a few bytes, whatever its length.
    pub fn new(input: impl Read + 'static) -> Result<Reader, CaptureError> {
        Ok(Reader {
            opened: input::open(Box::new(input))?,
        })
    }

    pub fn from_bytes(bytes: Vec<u8>) -> Result<Reader, CaptureError> {
        Self::new(std::io::Cursor::new(bytes))
    }

    /// Calls `f` for each frame in file order; stops at the first damaged record.
    pub fn for_each(self, f: impl FnMut(Record<'_>)) -> Result<Frames, CaptureError> {
        let o = self.opened;
        match o.format {
            Format::Pcap => pcap::read(o.source, f),
            Format::Pcapng => pcapng::read(o.source, f),
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
mod input_tests;
#[cfg(test)]
mod tests;
