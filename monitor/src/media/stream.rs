//! The leading bytes of one direction, put back together from its payload samples: each
//! sample holds the first bytes of one segment, so the stream runs on while segments follow
//! each other in sequence and are sampled whole, and stops at a gap or at the first cut
//! sample. A record or frame split across two segments then reads as one.

/// The first bytes of one segment's payload.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PayloadSample {
    /// The segment's sequence number.
    pub seq: u32,
    /// The segment's whole payload length (`bytes` may hold fewer).
    pub payload_len: u32,
    pub time_ns: u64,
    pub bytes: Vec<u8>,
}

/// A sample as the kernel (or the capture engine) took it.
impl From<&monitor_common::sample::Sample> for PayloadSample {
    fn from(s: &monitor_common::sample::Sample) -> Self {
        PayloadSample {
            seq: s.seq,
            payload_len: s.payload_len,
            time_ns: s.ts_ns,
            bytes: s.captured().to_vec(),
        }
    }
}

impl PayloadSample {
    fn whole(&self) -> bool {
        self.bytes.len() as u64 >= u64::from(self.payload_len)
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SampleStream {
    pub bytes: Vec<u8>,
    /// (offset in `bytes`, time) where each sample's new bytes begin.
    starts: Vec<(usize, u64)>,
}

impl SampleStream {
    /// The stream from `samples` in the order they were seen.
    pub fn new(samples: &[PayloadSample]) -> SampleStream {
        let mut out = SampleStream::default();
        let mut next: Option<u32> = None;
        for s in samples.iter().filter(|s| !s.bytes.is_empty()) {
            let skip = match next {
                None => 0,
                Some(n) => {
                    let ahead = s.seq.wrapping_sub(n) as i32;
                    if ahead > 0 {
                        break; // a gap: what follows is not contiguous
                    }
                    let end = s.seq.wrapping_add(s.payload_len);
                    if end.wrapping_sub(n) as i32 <= 0 {
                        continue; // a retransmission of bytes already in the stream
                    }
                    n.wrapping_sub(s.seq) as usize
                }
            };
            let Some(new) = s.bytes.get(skip..).filter(|b| !b.is_empty()) else {
                break; // the new bytes were not sampled
            };
            out.starts.push((out.bytes.len(), s.time_ns));
            out.bytes.extend_from_slice(new);
            if !s.whole() {
                break;
            }
            next = Some(s.seq.wrapping_add(s.payload_len));
        }
        out
    }

    /// When the byte at `offset` arrived.
    pub fn time_at(&self, offset: usize) -> Option<u64> {
        let i = self.starts.partition_point(|&(o, _)| o <= offset);
        i.checked_sub(1).map(|i| self.starts[i].1)
    }

    /// When the first byte arrived.
    pub fn first_time(&self) -> Option<u64> {
        self.starts.first().map(|&(_, t)| t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(seq: u32, payload_len: u32, time_ns: u64, bytes: &[u8]) -> PayloadSample {
        PayloadSample {
            seq,
            payload_len,
            time_ns,
            bytes: bytes.to_vec(),
        }
    }

    #[test]
    fn a_wire_sample_converts_with_only_its_captured_bytes() {
        let mut w = monitor_common::sample::Sample {
            ts_ns: 9,
            key: Default::default(),
            seq: 100,
            payload_len: 3,
            len: 3,
            dir: 1,
            ttl: 64,
            _pad2: 0,
            bytes: [0; monitor_common::sample::SAMPLE_BYTES],
        };
        w.bytes[..4].copy_from_slice(b"abcX");
        let next = monitor_common::sample::Sample {
            seq: 103,
            payload_len: 1000,
            len: 256,
            ts_ns: 10,
            bytes: [b'd'; monitor_common::sample::SAMPLE_BYTES],
            ..w
        };
        let p = PayloadSample::from(&w);
        assert_eq!(p, sample(100, 3, 9, b"abc"));
        let s = SampleStream::new(&[p, PayloadSample::from(&next)]);
        assert_eq!(&s.bytes[..4], b"abcd");
        assert_eq!((s.bytes.len(), s.time_at(3)), (3 + 256, Some(10)));
    }

    #[test]
    fn contiguous_whole_segments_join() {
        let s = SampleStream::new(&[sample(100, 3, 1, b"abc"), sample(103, 2, 2, b"de")]);
        assert_eq!(s.bytes, b"abcde");
        assert_eq!(
            (s.time_at(0), s.time_at(2), s.time_at(3), s.time_at(9)),
            (Some(1), Some(1), Some(2), Some(2))
        );
        assert_eq!(s.first_time(), Some(1));
    }

    #[test]
    fn a_retransmission_is_skipped_and_an_overlap_adds_only_new_bytes() {
        let s = SampleStream::new(&[
            sample(u32::MAX - 1, 3, 1, b"abc"),
            sample(u32::MAX - 1, 3, 2, b"abc"),
            sample(0, 3, 3, b"cde"),
        ]);
        assert_eq!(s.bytes, b"abcde");
        assert_eq!(s.time_at(3), Some(3));
    }

    #[test]
    fn a_gap_or_a_cut_sample_ends_the_stream() {
        let gap = SampleStream::new(&[sample(0, 2, 1, b"ab"), sample(5, 2, 2, b"xy")]);
        assert_eq!(gap.bytes, b"ab");
        let cut = SampleStream::new(&[sample(0, 300, 1, &[7; 256]), sample(300, 2, 2, b"xy")]);
        assert_eq!(cut.bytes.len(), 256);
        let empty = SampleStream::new(&[]);
        assert!(empty.bytes.is_empty() && empty.first_time().is_none());
    }
}
