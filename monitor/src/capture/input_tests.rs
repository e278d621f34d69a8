//! The input side of the reader: compressed streams, short and failing reads, streams
//! without end, and the bound on what it holds.

use std::{
    cell::Cell,
    io::{self, Read, Write},
    rc::Rc,
};

use super::{
    tests::{collect, pcap, read_all, testdata},
    Reader, BUFFER, MAX_RECORD,
};

fn gzip(b: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(b).unwrap();
    e.finish().unwrap()
}

#[test]
fn gzip_and_zstd_captures_read_as_the_plain_ones() {
    for name in ["zeek-syn-then-rst.pcap", "cs-tcp_handshake.pcapng"] {
        let plain = std::fs::read(testdata().join(name)).unwrap();
        let want = collect(plain.clone()).unwrap();
        assert!(!want.is_empty());
        let gz = gzip(&plain);
        assert_eq!(collect(gz.clone()).unwrap(), want, "{name}.gz");
        let zst = zstd::encode_all(&plain[..], 3).unwrap();
        assert_eq!(collect(zst.clone()).unwrap(), want, "{name}.zst");
        // Two gzip members, two zstd frames (as concatenated files are): all the frames.
        // Cut inside the second: the complete frames, and the cut.
        let mid = plain.len() / 2;
        let gz = (gzip(&plain[..mid]), gzip(&plain[mid..]));
        let zst2 = (
            zstd::encode_all(&plain[..mid], 3).unwrap(),
            zstd::encode_all(&plain[mid..], 3).unwrap(),
        );
        for (first, second) in [gz, zst2] {
            let two = [&first[..], &second[..]].concat();
            assert_eq!(collect(two.clone()).unwrap(), want, "{name}");
            // Cut just past the second's header: the frames wholly in the first.
            let (v, c) = read_all(two[..first.len() + 6].to_vec()).unwrap();
            assert!(c.is_some(), "{name}: cut not reported");
            assert!(v.len() < want.len(), "{name}: {}", v.len());
            assert_eq!(v, want[..v.len()], "{name}");
        }
        let e = read_all(zst[..zst.len() - 3].to_vec()).unwrap_err();
        assert!(e.reason.contains("ends before its end marker"), "{e}");
    }
    let e = collect(gzip(b"GIF89a, not a capture")).unwrap_err();
    assert!(e.reason.contains("inside the gzip stream"), "{e}");
    // A damaged deflate stream after a valid gzip header.
    let mut bad = gzip(&std::fs::read(testdata().join("zeek-syn-then-rst.pcap")).unwrap());
    for b in &mut bad[10..30] {
        *b = 0xff;
    }
    let e = read_all(bad).unwrap_err();
    assert!(
        e.reason.contains("cannot decompress the gzip stream"),
        "{e}"
    );
}

/// A classic pcap of `records` frames of `size` bytes, made as it is read, counting the
/// bytes handed out.
struct Generated {
    left: u64,
    size: usize,
    pending: Vec<u8>,
    at: usize,
    made: Rc<Cell<u64>>,
}

impl Read for Generated {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.at == self.pending.len() {
            if self.left == 0 {
                return Ok(0);
            }
            self.left -= 1;
            self.pending = pcap(false, false, 1, &[(1, 0, &vec![0x17; self.size])])[24..].to_vec();
            self.at = 0;
        }
        let n = buf.len().min(self.pending.len() - self.at);
        buf[..n].copy_from_slice(&self.pending[self.at..self.at + n]);
        self.at += n;
        self.made.set(self.made.get() + n as u64);
        Ok(n)
    }
}

#[test]
fn a_capture_of_any_size_streams_through_a_bounded_buffer() {
    let (records, size) = (400_000u64, 200usize);
    let made = Rc::new(Cell::new(0u64));
    let input = Generated {
        left: records,
        size,
        pending: pcap(false, false, 1, &[])[..24].to_vec(),
        at: 0,
        made: made.clone(),
    };
    let r = Reader::new(input).unwrap();
    let (mut seen, mut ahead) = (0u64, 0u64);
    let frames = r
        .for_each(|p| {
            assert_eq!(p.data.len(), size);
            seen += 1;
            let consumed = 24 + seen * (16 + size as u64);
            ahead = ahead.max(made.get() - consumed);
        })
        .unwrap();
    assert_eq!((frames.count, seen), (records, records));
    assert!(made.get() > 80_000_000, "the capture is large");
    // Never more than one buffer read ahead of the frame being handed out.
    assert!(ahead <= BUFFER as u64, "read {ahead} bytes ahead");
    assert!(frames.peak_buffer <= BUFFER, "{}", frames.peak_buffer);
    // A record larger than the buffer grows it to that record, never past the largest
    // record accepted.
    let big = vec![0x17; 10 * 1024 * 1024];
    let r = Reader::from_bytes(pcap(false, false, 1, &[(1, 0, &big), (2, 0, b"a")])).unwrap();
    let frames = r.for_each(|_| {}).unwrap();
    assert_eq!(frames.count, 2);
    assert!(frames.peak_buffer >= big.len() && frames.peak_buffer <= MAX_RECORD + 64);
}

/// Zeros without end, as `/dev/zero` gives them.
struct Zeros;

impl Read for Zeros {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        buf.fill(0);
        Ok(buf.len())
    }
}

#[test]
fn an_endless_stream_that_is_not_a_capture_is_refused_at_its_magic() {
    let e = Reader::new(Zeros).err().expect("refused");
    assert_eq!(e.offset, 0);
    assert!(e.reason.contains("magic 00000000"), "{e}");
    let e = Reader::open(std::path::Path::new("/dev/zero"))
        .err()
        .expect("refused");
    assert!(e.reason.contains("neither pcap nor pcapng"), "{e}");
}

/// Reads of at most `step` bytes, each other one interrupted, as a pipe may give them;
/// then an I/O error after `fail_at` bytes, if set.
struct Pipe {
    data: Vec<u8>,
    at: usize,
    step: usize,
    interrupt: bool,
    fail_at: Option<usize>,
}

impl Read for Pipe {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.interrupt = !self.interrupt;
        if self.interrupt {
            return Err(io::ErrorKind::Interrupted.into());
        }
        if self.fail_at.is_some_and(|f| self.at >= f) {
            return Err(io::Error::other("device gone"));
        }
        let n = buf.len().min(self.step).min(self.data.len() - self.at);
        buf[..n].copy_from_slice(&self.data[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

#[test]
fn short_and_interrupted_reads_give_the_same_frames_and_read_errors_name_the_offset() {
    for name in ["zeek-syn-then-rst.pcap", "cs-tcp_handshake.pcapng"] {
        let plain = std::fs::read(testdata().join(name)).unwrap();
        let want = collect(plain.clone()).unwrap();
        for step in [1, 3, 7, 100] {
            let pipe = |data: Vec<u8>, fail_at| Pipe {
                data,
                at: 0,
                step,
                interrupt: false,
                fail_at,
            };
            let mut got = Vec::new();
            let r = Reader::new(pipe(plain.clone(), None)).unwrap();
            r.for_each(|p| got.push((p.ts_ns, p.link, p.data.to_vec())))
                .unwrap();
            assert_eq!(got, want, "{name} in reads of {step}");
            let gz = gzip(&plain);
            let r = Reader::new(pipe(gz, None)).unwrap();
            assert_eq!(r.for_each(|_| {}).unwrap().count, want.len() as u64);
            let fail = plain.len() / 2;
            let r = Reader::new(pipe(plain.clone(), Some(fail))).unwrap();
            let e = r.for_each(|_| {}).unwrap_err();
            assert!(e.reason.contains("device gone"), "{e}");
            assert!(e.offset <= (fail + step) as u64, "{e}");
        }
    }
}

#[test]
fn a_zstd_frame_needing_a_window_above_the_bound_is_refused() {
    let plain = std::fs::read(testdata().join("zeek-syn-then-rst.pcap")).unwrap();
    let frame = |log: u32| {
        // Written as a stream (no declared size), so the frame keeps the window asked for.
        let mut e = zstd::stream::write::Encoder::new(Vec::new(), 3).unwrap();
        e.window_log(log).unwrap();
        e.write_all(&plain).unwrap();
        e.finish().unwrap()
    };
    assert_eq!(collect(frame(25)).unwrap().len(), 2);
    let e = read_all(frame(27)).unwrap_err();
    assert!(
        e.reason.contains("cannot decompress the zstd stream"),
        "{e}"
    );
}
