//! Classic pcap: a 24-byte file header, then 16-byte record headers.

use pcap_parser::PcapBlockOwned;

use super::{
    err,
    input::{Format, Input},
    link,
    stream::{Fill, Stream},
    CaptureError, Endian, Frames, Record, MAX_RECORD,
};

const NANO: u32 = 0xa1b2_3c4d;
const MICRO: u32 = 0xa1b2_c3d4;
const RECORD_HEADER: usize = 16;

pub fn read(source: Input, mut f: impl FnMut(Record<'_>)) -> Result<Frames, CaptureError> {
    let mut s = Stream::new(source, Format::Pcap)?;
    let h = s.data();
    let Some(m) = h.get(..4).and_then(|m| <[u8; 4]>::try_from(m).ok()) else {
        return err(0, "pcap file header cut short");
    };
    let e = Endian {
        big: !matches!(u32::from_le_bytes(m), MICRO | NANO),
    };
    let nano = e.u32(h, 0) == Some(NANO);
    let linktype = e.u32(h, 20).unwrap_or(0) & 0x0fff_ffff;
    if !link::supported(linktype) {
        return err(20, link::unsupported(linktype));
    }
    // The parser hands the file header back first.
    match s.next() {
        Some((n, PcapBlockOwned::LegacyHeader(_))) => s.consume(n),
        _ => return err(0, "pcap file header is damaged"),
    }
    let mut n = 0;
    let cut = loop {
        let off = s.offset();
        match s.fill(RECORD_HEADER)? {
            Fill::Ready => {}
            Fill::End => break None,
            Fill::Cut => break Some((off, "pcap record header cut short".to_string())),
        }
        let incl = e.u32(s.data(), 8).unwrap_or(0) as usize;
        if incl > MAX_RECORD {
            return err(
                off,
                format!("pcap record claims an absurd length of {incl} bytes"),
            );
        }
        match s.fill(RECORD_HEADER + incl)? {
            Fill::Ready => {}
            Fill::End | Fill::Cut => {
                break Some((
                    off,
                    format!("pcap record of {incl} bytes runs past the end of the file"),
                ))
            }
        }
        let Some((len, PcapBlockOwned::Legacy(b))) = s.next() else {
            return err(off, "pcap record is damaged");
        };
        let sub = if nano {
            b.ts_usec as u64
        } else {
            b.ts_usec as u64 * 1000
        };
        let data = b.data;
        f(Record {
            ts_ns: (b.ts_sec as u64)
                .saturating_mul(1_000_000_000)
                .saturating_add(sub),
            linktype,
            link: link::decode(linktype, data),
            data,
            orig_len: b.origlen,
        });
        n += 1;
        s.consume(len);
    };
    let cut = cut.map(|(offset, reason)| CaptureError { offset, reason });
    Ok(s.finish(n, cut))
}
