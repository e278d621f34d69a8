//! Classic pcap: a 24-byte file header, then 16-byte record headers.

use super::{err, link, CaptureError, Endian, Packet, MAX_RECORD};

const MICRO: u32 = 0xa1b2_c3d4;
const NANO: u32 = 0xa1b2_3c4d;

pub fn is_magic(m: [u8; 4]) -> bool {
    let le = u32::from_le_bytes(m);
    let be = u32::from_be_bytes(m);
    [MICRO, NANO].contains(&le) || [MICRO, NANO].contains(&be)
}

pub fn read(b: &[u8], mut f: impl FnMut(Packet<'_>)) -> Result<u64, CaptureError> {
    let m = [b[0], b[1], b[2], b[3]];
    let big = !matches!(u32::from_le_bytes(m), MICRO | NANO);
    let e = Endian { big };
    let nano = e.u32(b, 0) == Some(NANO);
    if b.len() < 24 {
        return err(0, "pcap file header cut short");
    }
    let linktype = e.u32(b, 20).unwrap_or(0) & 0x0fff_ffff;
    let mut off = 24;
    let mut n = 0;
    while off < b.len() {
        let (Some(sec), Some(frac), Some(incl), Some(orig)) = (
            e.u32(b, off),
            e.u32(b, off + 4),
            e.u32(b, off + 8),
            e.u32(b, off + 12),
        ) else {
            return err(off, "pcap record header cut short");
        };
        let incl = incl as usize;
        if incl > MAX_RECORD {
            return err(
                off,
                format!("pcap record claims an absurd length of {incl} bytes"),
            );
        }
        let start = off + 16;
        let Some(data) = start.checked_add(incl).and_then(|end| b.get(start..end)) else {
            return err(
                off,
                format!("pcap record of {incl} bytes runs past the end of the file"),
            );
        };
        let sub = if nano {
            frac as u64
        } else {
            frac as u64 * 1000
        };
        f(Packet {
            ts_ns: (sec as u64)
                .saturating_mul(1_000_000_000)
                .saturating_add(sub),
            link: link::decode(linktype, data),
            data,
            orig_len: orig,
        });
        n += 1;
        off = start + incl;
    }
    Ok(n)
}
