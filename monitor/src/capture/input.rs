//! Where a capture's bytes come from: the first bytes are read ahead to recognise the format
//! by its magic (gzip and zstd are unwrapped first, as Wireshark does), then handed back in
//! front of the rest of the stream.

use std::{
    cell::RefCell,
    io::{self, Cursor, Read},
    rc::Rc,
};

use super::{err, CaptureError, Endian, MAX_RECORD};

const GZIP: [u8; 2] = [0x1f, 0x8b];
const ZSTD: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];
const PCAPNG: [u8; 4] = [0x0a, 0x0d, 0x0d, 0x0a];
const BYTE_ORDER_MAGIC: u32 = 0x1a2b_3c4d;
const PCAP_MICRO: u32 = 0xa1b2_c3d4;
const PCAP_NANO: u32 = 0xa1b2_3c4d;
/// zstd frames needing a larger window (made with `zstd --long`) are refused: decoding
/// them would hold up to 2^31 bytes.
const ZSTD_WINDOW_LOG_MAX: u32 = 25;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Format {
    Pcap,
    Pcapng,
}

/// What went wrong below the capture format, kept here because the record parser only
/// sees that a read failed.
#[derive(Default)]
pub(crate) struct Status {
    pub error: Option<io::Error>,
    /// The compressed stream ended before its end marker.
    pub cut: bool,
}

/// The capture's bytes: those read ahead, then the rest of the stream.
pub(crate) struct Input {
    head: Cursor<Vec<u8>>,
    rest: Box<dyn Read>,
    pub compression: Option<&'static str>,
    pub status: Rc<RefCell<Status>>,
    /// Bytes read ahead (the whole file header), so the first read can return them all.
    pub head_len: usize,
}

impl Read for Input {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if (self.head.position() as usize) < self.head.get_ref().len() {
            return self.head.read(buf);
        }
        match read_some(&mut *self.rest, buf, self.compression.is_some()) {
            Ok(Some(n)) => Ok(n),
            Ok(None) => {
                self.status.borrow_mut().cut = true;
                Ok(0)
            }
            Err(e) => {
                let kind = e.kind();
                self.status.borrow_mut().error = Some(e);
                Err(io::Error::from(kind))
            }
        }
    }
}

/// One read, retried when interrupted; `None` when a compressed stream ends early.
fn read_some(r: &mut dyn Read, buf: &mut [u8], compressed: bool) -> io::Result<Option<usize>> {
    loop {
        match r.read(buf) {
            Ok(n) => return Ok(Some(n)),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if compressed && e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(e) => return Err(e),
        }
    }
}

pub(crate) struct Opened {
    pub format: Format,
    pub source: Input,
}

/// Reads into `head` until it holds `n` bytes or the stream ends. A compressed stream
/// that ends early says so here: nothing before the cut makes a capture header.
fn read_to(
    r: &mut dyn Read,
    head: &mut Vec<u8>,
    n: usize,
    compression: Option<&str>,
) -> Result<(), CaptureError> {
    let mut chunk = [0u8; 4096];
    while head.len() < n {
        let want = (n - head.len()).min(chunk.len());
        match read_some(r, &mut chunk[..want], compression.is_some()) {
            Ok(Some(0)) => break,
            Ok(None) => {
                return err(
                    head.len() as u64,
                    format!(
                        "the {} stream ends before its end marker, inside the capture header",
                        compression.unwrap_or("compressed")
                    ),
                )
            }
            Ok(Some(k)) => head.extend_from_slice(&chunk[..k]),
            Err(e) => return err(head.len() as u64, read_failure(compression, &e)),
        }
    }
    Ok(())
}

pub(crate) fn read_failure(compression: Option<&str>, e: &io::Error) -> String {
    match compression {
        Some(c) => format!("cannot decompress the {c} stream: {e}"),
        None => format!("read failed: {e}"),
    }
}

/// Recognises the stream by its magic and reads ahead its whole file header.
pub(crate) fn open(input: Box<dyn Read>) -> Result<Opened, CaptureError> {
    open_inner(input, None)
}

fn open_inner(
    mut input: Box<dyn Read>,
    compression: Option<&'static str>,
) -> Result<Opened, CaptureError> {
    let mut head = Vec::new();
    read_to(&mut *input, &mut head, 4, compression)?;
    let inside = compression.map_or(String::new(), |c| format!(" (inside the {c} stream)"));
    if head.is_empty() {
        return err(0, format!("empty file{inside}"));
    }
    if head.len() < 4 {
        return err(0, format!("file too short for a capture header{inside}"));
    }
    let magic = [head[0], head[1], head[2], head[3]];
    if compression.is_none() {
        let rest = Cursor::new(head).chain(input);
        if magic[..2] == GZIP {
            return open_inner(
                Box::new(flate2::read::MultiGzDecoder::new(rest)),
                Some("gzip"),
            );
        }
        if magic == ZSTD {
            let mut d = zstd::stream::read::Decoder::new(rest).map_err(|e| CaptureError {
                offset: 0,
                reason: read_failure(Some("zstd"), &e),
            })?;
            d.window_log_max(ZSTD_WINDOW_LOG_MAX)
                .map_err(|e| CaptureError {
                    offset: 0,
                    reason: read_failure(Some("zstd"), &e),
                })?;
            return open_inner(Box::new(d), Some("zstd"));
        }
        input = Box::new(rest);
        head = Vec::new();
        read_to(&mut *input, &mut head, 4, None)?;
    }
    let format = if magic == PCAPNG {
        read_to(&mut *input, &mut head, 12, compression)?;
        let Some(m) = head.get(8..12) else {
            return err(0, "pcapng section header cut short");
        };
        let m = [m[0], m[1], m[2], m[3]];
        let big = if u32::from_le_bytes(m) == BYTE_ORDER_MAGIC {
            false
        } else if u32::from_be_bytes(m) == BYTE_ORDER_MAGIC {
            true
        } else {
            return err(0, "pcapng section header without a byte-order magic");
        };
        let len = Endian { big }.u32(&head, 4).unwrap_or(0) as usize;
        if len < 28 || !len.is_multiple_of(4) || len > MAX_RECORD {
            return err(
                0,
                format!("pcapng section header with an impossible length of {len} bytes"),
            );
        }
        read_to(&mut *input, &mut head, len, compression)?;
        if head.len() < len {
            return err(0, "pcapng section header cut short");
        }
        Format::Pcapng
    } else if [PCAP_MICRO, PCAP_NANO].contains(&u32::from_le_bytes(magic))
        || [PCAP_MICRO, PCAP_NANO].contains(&u32::from_be_bytes(magic))
    {
        read_to(&mut *input, &mut head, 24, compression)?;
        if head.len() < 24 {
            return err(0, "pcap file header cut short");
        }
        Format::Pcap
    } else {
        return err(
            0,
            format!(
                "magic {:02x}{:02x}{:02x}{:02x}{inside} is neither pcap nor pcapng",
                magic[0], magic[1], magic[2], magic[3]
            ),
        );
    };
    let head_len = head.len();
    Ok(Opened {
        format,
        source: Input {
            head: Cursor::new(head),
            rest: input,
            compression,
            status: Rc::default(),
            head_len,
        },
    })
}
