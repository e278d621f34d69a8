//! pcapng: blocks of (type, length, body, length). Section headers set the byte order;
//! interface descriptions set each interface's link type and timestamp resolution.

use pcap_parser::{Block, PcapBlockOwned, PcapNGOption};

use super::{
    err,
    input::{Format, Input},
    link,
    stream::{Fill, Stream},
    CaptureError, Endian, Frames, Record, MAX_RECORD,
};

const SHB: u32 = 0x0a0d_0d0a;
const OLD_PACKET: u32 = 2;
const BYTE_ORDER_MAGIC: u32 = 0x1a2b_3c4d;

struct Interface {
    linktype: u32,
    /// Timestamp units per second.
    units_per_sec: u64,
    /// Seconds added to every timestamp; signed, so it may move them back.
    offset_sec: i64,
}

impl Interface {
    fn ts_ns(&self, raw: u64) -> u64 {
        let units = self.units_per_sec;
        let (secs, rem) = (raw / units, raw % units);
        // The common resolutions without a 128-bit division.
        let sub = match units {
            1_000_000 => rem * 1_000,
            1_000_000_000 => rem,
            _ => (rem as u128 * 1_000_000_000 / units as u128) as u64,
        };
        let ns = (secs as i128 + self.offset_sec as i128) * 1_000_000_000 + sub as i128;
        // Before 1970 or past 2554: the nearest representable instant.
        ns.clamp(0, u64::MAX as i128) as u64
    }
}

/// An interface's if_tsresol (9; default 10^-6 s) and signed if_tsoffset (14), read in the
/// section's byte order (the crate reads the offset as little-endian whatever the order).
fn idb_options(e: Endian, opts: &[PcapNGOption<'_>]) -> (u8, i64) {
    let (mut tsresol, mut offset) = (6, 0);
    for o in opts {
        let Ok(v) = o.as_bytes() else { continue };
        match (o.code.0, v.len()) {
            (9, 1) => tsresol = v[0],
            (14, 8) => {
                let b: [u8; 8] = v.try_into().unwrap_or([0; 8]);
                offset = if e.big {
                    i64::from_be_bytes(b)
                } else {
                    i64::from_le_bytes(b)
                };
            }
            _ => {}
        }
    }
    (tsresol, offset)
}

/// Units per second of an if_tsresol: 10^n, or 2^n with the top bit set; `None` when a
/// `u64` count cannot hold them (the crate's own check refuses every power of two).
fn units_per_sec(tsresol: u8) -> Option<u64> {
    let exp = (tsresol & 0x7f) as u32;
    if tsresol & 0x80 != 0 {
        1u64.checked_shl(exp).filter(|_| exp < 64)
    } else {
        10u64.checked_pow(exp)
    }
}

/// The byte order a section header at the front of `data` declares.
fn section_order(data: &[u8]) -> Option<bool> {
    let m: [u8; 4] = data.get(8..12)?.try_into().ok()?;
    if u32::from_le_bytes(m) == BYTE_ORDER_MAGIC {
        Some(false)
    } else if u32::from_be_bytes(m) == BYTE_ORDER_MAGIC {
        Some(true)
    } else {
        None
    }
}

pub fn read(source: Input, mut f: impl FnMut(Record<'_>)) -> Result<Frames, CaptureError> {
    let mut s = Stream::new(source, Format::Pcapng)?;
    let mut e = Endian { big: false };
    let mut ifaces: Vec<Interface> = Vec::new();
    let mut n = 0;
    let cut = loop {
        let off = s.offset();
        match s.fill(8)? {
            Fill::Ready => {}
            Fill::End => break None,
            Fill::Cut => break Some((off, "pcapng block header cut short".to_string())),
        }
        // A section header decides the byte order of everything up to the next one.
        // The block type 0x0a0d0d0a reads the same in both byte orders.
        if e.u32(s.data(), 0) == Some(SHB) {
            if !matches!(s.fill(12)?, Fill::Ready) {
                break Some((off, "pcapng section header cut short".to_string()));
            }
            match section_order(s.data()) {
                Some(big) => e.big = big,
                None => return err(off, "pcapng section header without a byte-order magic"),
            }
            ifaces.clear();
        }
        let (Some(ty), Some(len)) = (e.u32(s.data(), 0), e.u32(s.data(), 4)) else {
            return err(off, "pcapng block header cut short");
        };
        let len = len as usize;
        if len < 12 || !len.is_multiple_of(4) || len > MAX_RECORD {
            return err(
                off,
                format!("pcapng block with an impossible length of {len} bytes"),
            );
        }
        if !matches!(s.fill(len)?, Fill::Ready) {
            break Some((
                off,
                format!("pcapng block of {len} bytes runs past the end of the file"),
            ));
        }
        if e.u32(s.data(), len - 4) != Some(len as u32) {
            return err(
                off,
                "pcapng block's trailing length does not match its leading length",
            );
        }
        let Some((used, PcapBlockOwned::NG(block))) = s.next() else {
            return err(off, format!("pcapng block of type {ty:#x} is damaged"));
        };
        match block {
            Block::InterfaceDescription(idb) => {
                let linktype = idb.linktype.0 as u32 & 0xffff;
                let (tsresol, offset_sec) = idb_options(e, &idb.options);
                let Some(units_per_sec) = units_per_sec(tsresol) else {
                    let (base, exp) = if tsresol & 0x80 != 0 {
                        (2, tsresol & 0x7f)
                    } else {
                        (10, tsresol)
                    };
                    return err(
                        off,
                        format!(
                            "pcapng interface {} has a timestamp resolution of {base}^-{exp} \
                             s, finer than a 64-bit count can hold (at most 10^-19 or 2^-63)",
                            ifaces.len()
                        ),
                    );
                };
                ifaces.push(Interface {
                    linktype,
                    units_per_sec,
                    offset_sec,
                });
            }
            Block::EnhancedPacket(b) => {
                let Some(iface) = ifaces.get(b.if_id as usize) else {
                    return err(
                        off,
                        format!(
                            "pcapng packet on interface {}, which no block declared",
                            b.if_id
                        ),
                    );
                };
                let cap = b.caplen as usize;
                let Some(data) = b.data.get(..cap) else {
                    return err(
                        off,
                        format!("pcapng packet of {cap} bytes runs past its block"),
                    );
                };
                if !link::supported(iface.linktype) {
                    return err(off, link::unsupported(iface.linktype));
                }
                f(Record {
                    ts_ns: iface.ts_ns(((b.ts_high as u64) << 32) | b.ts_low as u64),
                    linktype: iface.linktype,
                    link: link::decode(iface.linktype, data),
                    data,
                    orig_len: b.origlen,
                });
                n += 1;
            }
            Block::SimplePacket(b) => {
                let Some(iface) = ifaces.first() else {
                    return err(off, "pcapng simple packet before any interface");
                };
                if !link::supported(iface.linktype) {
                    return err(off, link::unsupported(iface.linktype));
                }
                let data = &b.data[..b.data.len().min(b.origlen as usize)];
                f(Record {
                    ts_ns: 0,
                    linktype: iface.linktype,
                    link: link::decode(iface.linktype, data),
                    data,
                    orig_len: b.origlen,
                });
                n += 1;
            }
            // The obsolete Packet Block: a 16-bit interface id and drop count, then as an
            // Enhanced Packet Block.
            Block::Unknown(u) if ty == OLD_PACKET => {
                let body = u.data;
                let (Some(id), Some(hi), Some(lo), Some(cap), Some(orig)) = (
                    e.u16(body, 0),
                    e.u32(body, 4),
                    e.u32(body, 8),
                    e.u32(body, 12),
                    e.u32(body, 16),
                ) else {
                    return err(off, "pcapng packet block cut short");
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
                if !link::supported(iface.linktype) {
                    return err(off, link::unsupported(iface.linktype));
                }
                f(Record {
                    ts_ns: iface.ts_ns(((hi as u64) << 32) | lo as u64),
                    linktype: iface.linktype,
                    link: link::decode(iface.linktype, data),
                    data,
                    orig_len: orig,
                });
                n += 1;
            }
            _ => {}
        }
        s.consume(used);
    };
    let cut = cut.map(|(offset, reason)| CaptureError { offset, reason });
    Ok(s.finish(n, cut))
}
