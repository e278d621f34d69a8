//! pcapng: blocks of (type, length, body, length). Section headers set the byte order;
//! interface descriptions set each interface's link type and timestamp resolution.

use super::{err, link, CaptureError, Endian, Packet, MAX_RECORD};

const SHB: u32 = 0x0a0d_0d0a;
const IDB: u32 = 1;
const OLD_PACKET: u32 = 2;
const SPB: u32 = 3;
const EPB: u32 = 6;
const BYTE_ORDER_MAGIC: u32 = 0x1a2b_3c4d;

struct Interface {
    linktype: u32,
    /// Timestamp units per second.
    units_per_sec: u64,
    offset_sec: u64,
}

impl Interface {
    fn ts_ns(&self, raw: u64) -> u64 {
        let secs = raw / self.units_per_sec;
        let rem = raw % self.units_per_sec;
        let sub = (rem as u128 * 1_000_000_000 / self.units_per_sec as u128) as u64;
        secs.saturating_add(self.offset_sec)
            .saturating_mul(1_000_000_000)
            .saturating_add(sub)
    }
}

/// Options of an IDB: if_tsresol (9) and if_tsoffset (14).
fn idb_options(e: Endian, opts: &[u8]) -> (u64, u64) {
    let (mut units, mut offset) = (1_000_000u64, 0u64);
    let mut i = 0;
    while let (Some(code), Some(len)) = (e.u16(opts, i), e.u16(opts, i + 2)) {
        let len = len as usize;
        let Some(val) = opts.get(i + 4..i + 4 + len) else {
            break;
        };
        match (code, len) {
            (0, _) => break,
            (9, 1) => {
                let r = val[0];
                let exp = (r & 0x7f) as u32;
                units = if r & 0x80 != 0 {
                    2u64.checked_pow(exp)
                } else {
                    10u64.checked_pow(exp)
                }
                .filter(|&u| u > 0)
                .unwrap_or(1_000_000);
            }
            (14, 8) => {
                offset = e.u32(val, 0).map_or(0, |lo| lo as u64)
                    | (e.u32(val, 4).map_or(0, |hi| hi as u64) << 32)
            }
            _ => {}
        }
        i += 4 + len.div_ceil(4) * 4;
    }
    (units, offset)
}

pub fn read(b: &[u8], mut f: impl FnMut(Packet<'_>)) -> Result<u64, CaptureError> {
    let mut e = Endian { big: false };
    let mut ifaces: Vec<Interface> = Vec::new();
    let mut off = 0;
    let mut n = 0;
    while off < b.len() {
        // A section header decides the byte order of everything up to the next one.
        // The block type 0x0a0d0d0a reads the same in both byte orders.
        if e.u32(b, off) == Some(SHB) {
            match b.get(off + 8..off + 12) {
                Some(m) if u32::from_le_bytes([m[0], m[1], m[2], m[3]]) == BYTE_ORDER_MAGIC => {
                    e.big = false
                }
                Some(m) if u32::from_be_bytes([m[0], m[1], m[2], m[3]]) == BYTE_ORDER_MAGIC => {
                    e.big = true
                }
                _ => return err(off, "pcapng section header without a byte-order magic"),
            }
            ifaces.clear();
        }
        let (Some(ty), Some(len)) = (e.u32(b, off), e.u32(b, off + 4)) else {
            return err(off, "pcapng block header cut short");
        };
        let len = len as usize;
        if len < 12 || !len.is_multiple_of(4) || len > MAX_RECORD {
            return err(
                off,
                format!("pcapng block with an impossible length of {len} bytes"),
            );
        }
        let Some(block) = off.checked_add(len).and_then(|end| b.get(off..end)) else {
            return err(
                off,
                format!("pcapng block of {len} bytes runs past the end of the file"),
            );
        };
        if e.u32(block, len - 4) != Some(len as u32) {
            return err(
                off,
                "pcapng block's trailing length does not match its leading length",
            );
        }
        let body = &block[8..len - 4];
        match ty {
            IDB => {
                let linktype = e.u16(body, 0).map_or(0, |l| l as u32);
                let (units_per_sec, offset_sec) = idb_options(e, body.get(8..).unwrap_or(&[]));
                ifaces.push(Interface {
                    linktype,
                    units_per_sec,
                    offset_sec,
                });
            }
            EPB | OLD_PACKET => {
                let (Some(id), Some(hi), Some(lo), Some(cap), Some(orig)) = (
                    e.u32(body, 0),
                    e.u32(body, 4),
                    e.u32(body, 8),
                    e.u32(body, 12),
                    e.u32(body, 16),
                ) else {
                    return err(off, "pcapng packet block cut short");
                };
                // The obsolete Packet Block has a 16-bit interface id and drop count.
                let id = if ty == OLD_PACKET {
                    e.u16(body, 0).unwrap_or(0) as u32
                } else {
                    id
                };
                let Some(iface) = ifaces.get(id as usize) else {
                    return err(
                        off,
                        format!("pcapng packet on interface {id}, which no block declared"),
                    );
                };
                let cap = cap as usize;
                let Some(data) = body.get(20..).and_then(|d| d.get(..cap)) else {
                    return err(
                        off,
                        format!("pcapng packet of {cap} bytes runs past its block"),
                    );
                };
                f(Packet {
                    ts_ns: iface.ts_ns(((hi as u64) << 32) | lo as u64),
                    link: link::decode(iface.linktype, data),
                    data,
                    orig_len: orig,
                });
                n += 1;
            }
            SPB => {
                let Some(iface) = ifaces.first() else {
                    return err(off, "pcapng simple packet before any interface");
                };
                let orig = e.u32(body, 0).unwrap_or(0);
                let data = body.get(4..).unwrap_or(&[]);
                let data = &data[..data.len().min(orig as usize)];
                f(Packet {
                    ts_ns: 0,
                    link: link::decode(iface.linktype, data),
                    data,
                    orig_len: orig,
                });
                n += 1;
            }
            _ => {}
        }
        off += len;
    }
    Ok(n)
}
