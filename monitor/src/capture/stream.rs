//! The read buffer under both formats: `pcap-parser`'s reader, filled only as far as the
//! record at hand needs. A record's length is checked against `MAX_RECORD` before it is
//! waited for, so the buffer never grows past that.

use std::{cell::RefCell, rc::Rc};

use pcap_parser::{traits::PcapReaderIterator, LegacyPcapReader, PcapBlockOwned, PcapNGReader};

use super::{
    err,
    input::{read_failure, Format, Input, Status},
    CaptureError, Frames, MAX_RECORD,
};

/// The buffer's starting size: a few thousand small records per read.
pub const BUFFER: usize = 256 * 1024;

pub(crate) enum Fill {
    /// The bytes asked for are at the front of the buffer.
    Ready,
    /// The stream ended at a record boundary.
    End,
    /// The stream ended inside the record.
    Cut,
}

pub(crate) struct Stream {
    rd: Box<dyn PcapReaderIterator>,
    capacity: usize,
    peak: usize,
    status: Rc<RefCell<Status>>,
    compression: Option<&'static str>,
}

impl Stream {
    pub fn new(source: Input, format: Format) -> Result<Stream, CaptureError> {
        // Room for the whole file header in the first read, which the parser insists on.
        let capacity = BUFFER.max(source.head_len);
        let status = source.status.clone();
        let compression = source.compression;
        let rd: Result<Box<dyn PcapReaderIterator>, _> = match format {
            Format::Pcap => LegacyPcapReader::new(capacity, source).map(|r| Box::new(r) as _),
            Format::Pcapng => PcapNGReader::new(capacity, source).map(|r| Box::new(r) as _),
        };
        let rd = rd.map_err(|e| CaptureError {
            offset: 0,
            reason: format!("file header is damaged ({e})"),
        })?;
        Ok(Stream {
            rd,
            capacity,
            peak: capacity,
            status,
            compression,
        })
    }

    /// Byte offset of the front of the buffer in the (uncompressed) capture.
    pub fn offset(&self) -> u64 {
        self.rd.consumed() as u64
    }

    pub fn data(&self) -> &[u8] {
        self.rd.data()
    }

    /// Makes `need` bytes available at the front of the buffer, reading as little as it
    /// can. Callers bound `need` by `MAX_RECORD` plus a header.
    pub fn fill(&mut self, need: usize) -> Result<Fill, CaptureError> {
        loop {
            let have = self.rd.data().len();
            if have >= need {
                return Ok(Fill::Ready);
            }
            if self.rd.reader_exhausted() {
                return Ok(if have == 0 { Fill::End } else { Fill::Cut });
            }
            if need > self.capacity {
                // Doubling keeps a run of growing records cheap; never past the largest
                // record and its header.
                self.capacity = need
                    .max(self.capacity.saturating_mul(2))
                    .min(MAX_RECORD + 64)
                    .max(need);
                self.rd.grow(self.capacity);
                self.peak = self.peak.max(self.capacity);
            }
            if self.rd.refill().is_err() {
                let e = self.status.borrow_mut().error.take();
                let reason = match e {
                    Some(e) => read_failure(self.compression, &e),
                    None => "read failed".to_string(),
                };
                return err(self.offset() + have as u64, reason);
            }
        }
    }

    /// Parses the record at the front of the buffer (already filled and checked).
    pub fn next(&mut self) -> Option<(usize, PcapBlockOwned<'_>)> {
        self.rd.next().ok()
    }

    pub fn consume(&mut self, n: usize) {
        self.rd.consume(n);
    }

    /// The result of a read to the end, or to a cut at `cut`.
    pub fn finish(self, count: u64, cut: Option<CaptureError>) -> Frames {
        let cut = cut.or_else(|| {
            self.status.borrow().cut.then(|| CaptureError {
                offset: self.offset(),
                reason: format!(
                    "the {} stream ends before its end marker",
                    self.compression.unwrap_or("compressed")
                ),
            })
        });
        Frames {
            count,
            cut,
            peak_buffer: self.peak,
        }
    }
}
