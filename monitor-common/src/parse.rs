//! Header parsing, shared by the kernel program and the capture reader.
//!
//! The parser reads the frame only through [`Frame::load`], fixed-size copies at an offset.
//! In the kernel that is a copy straight from the packet when the bytes are in its linear
//! part, else `bpf_skb_load_bytes`/`bpf_xdp_load_bytes` (the program's `read` says how
//! the verifier is kept to one path per header); on the host it is a slice copy. Both sides
//! thus run this exact code, and every loop has a constant bound.

pub const FIN: u8 = 0x01;
pub const SYN: u8 = 0x02;
pub const RST: u8 = 0x04;
pub const PSH: u8 = 0x08;
pub const ACK: u8 = 0x10;
pub const URG: u8 = 0x20;

pub const ETH_P_IP: u16 = 0x0800;
pub const ETH_P_IPV6: u16 = 0x86dd;
const ETH_P_8021Q: u16 = 0x8100;
const ETH_P_8021AD: u16 = 0x88a8;
const ETH_HLEN: usize = 14;
/// VLAN tags followed before giving up (QinQ).
pub const MAX_VLAN_TAGS: usize = 2;
/// IPv6 extension headers followed before giving up.
pub const MAX_IPV6_EXT: usize = 6;
/// Payload bytes kept for protocol sniffing (a TLS record header and handshake type).
pub const HEAD_LEN: usize = 6;
/// Bytes of TCP options at most (data offset 15 words, minus the fixed 20 bytes).
pub const TCP_MAX_OPTS: usize = 40;
/// Options walked at most. Real SYNs carry five or six (Linux: MSS, SACK-permitted,
/// timestamps, NOP, window scale); twelve leave room for NOP padding a middlebox wrote, and
/// keep the verifier's path count within its budget (each step multiplies the paths).
pub const MAX_OPT_STEPS: usize = 12;

/// Bytes of a packet, read by fixed-size copies.
pub trait Frame {
    /// The frame's length as it was on the wire (`skb->len` in the kernel, a capture
    /// record's original length). An IP header claiming more than this is a lie the
    /// parser refuses: only what the frame carries is counted.
    fn wire_len(&self) -> usize;

    /// `N` bytes at `off`, or `None` when they are not all present (beyond the frame, or
    /// beyond what a capture's snap length kept).
    fn load<const N: usize>(&self, off: usize) -> Option<[u8; N]>;
}

/// A whole frame: every byte it had on the wire is present.
impl Frame for [u8] {
    fn wire_len(&self) -> usize {
        <[u8]>::len(self)
    }

    fn load<const N: usize>(&self, off: usize) -> Option<[u8; N]> {
        let end = off.checked_add(N)?;
        let mut out = [0u8; N];
        out.copy_from_slice(self.get(off..end)?);
        Some(out)
    }
}

/// A captured frame: the bytes a capture kept (its snap length may have cut them) and the
/// length the frame had on the wire, which lengths in its headers are checked against.
#[derive(Clone, Copy, Debug)]
pub struct Captured<'a> {
    pub bytes: &'a [u8],
    pub wire_len: usize,
}

impl Frame for Captured<'_> {
    fn wire_len(&self) -> usize {
        // A record keeping more than the wire carried is damaged; trust the bytes then.
        self.wire_len.max(self.bytes.len())
    }

    fn load<const N: usize>(&self, off: usize) -> Option<[u8; N]> {
        self.bytes.load(off)
    }
}

/// Why a frame was not analysed. Each reason has its own counter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Skip {
    NotIp,
    NotTcp,
    /// A non-first fragment: no TCP header in it.
    Fragment,
    /// The headers end beyond the bytes present.
    Truncated,
    /// Headers that contradict themselves (IHL < 5, data offset < 5 or past the segment,
    /// an IP length past the end of the frame...).
    Malformed,
    /// More VLAN tags or IPv6 extension headers than the parser follows.
    TooManyHeaders,
}

impl Skip {
    /// The global counter (`stats`) this reason is counted in, on both sides.
    #[inline(always)]
    pub const fn counter(self) -> u32 {
        match self {
            Skip::NotIp => crate::stats::NOT_IP,
            Skip::NotTcp => crate::stats::NOT_TCP,
            Skip::Fragment => crate::stats::FRAGMENTS,
            Skip::Truncated => crate::stats::TRUNCATED,
            Skip::Malformed => crate::stats::MALFORMED,
            Skip::TooManyHeaders => crate::stats::TOO_MANY_HEADERS,
        }
    }
}

/// TCP options of interest (read on SYN segments only: that is where they are negotiated).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TcpOpts {
    /// 0 when absent.
    pub mss: u16,
    /// `NO_WSCALE` when absent.
    pub wscale: u8,
    pub sack_perm: bool,
    pub timestamps: bool,
    /// NOP options: more than the usual one to three is a sign of options a middlebox
    /// overwrote with NOPs.
    pub nops: u8,
}

pub const NO_WSCALE: u8 = 0xff;

impl TcpOpts {
    /// No options seen (window scale absent, not zero).
    pub const fn default_absent() -> Self {
        Self {
            mss: 0,
            wscale: NO_WSCALE,
            sack_perm: false,
            timestamps: false,
            nops: 0,
        }
    }
}

/// What the analysis needs of one TCP segment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Packet {
    /// 4 or 6.
    pub family: u8,
    pub src: [u8; 16],
    pub dst: [u8; 16],
    /// TTL or hop limit.
    pub ttl: u8,
    /// IPv4 identification; 0 for IPv6.
    pub ip_id: u16,
    /// IP header plus payload, from the IP header's own length fields.
    pub l3_len: u32,
    pub sport: u16,
    pub dport: u16,
    pub seq: u32,
    pub ack: u32,
    pub flags: u8,
    pub window: u16,
    pub tcp_hdr_len: u8,
    pub payload_len: u32,
    /// Where the payload starts in the frame: a payload sample is copied from here.
    pub payload_off: u32,
    pub opts: TcpOpts,
    /// First payload bytes, valid up to `head_len`.
    pub head: [u8; HEAD_LEN],
    pub head_len: u8,
}

/// An IPv4 address in the first four of sixteen bytes, the rest zero. Through an integer
/// because zeroing the tail of an array compiles to a call of the eBPF build's byte-loop
/// memset.
#[inline(always)]
fn in_sixteen(a: [u8; 4]) -> [u8; 16] {
    u128::from(u32::from_le_bytes(a)).to_le_bytes()
}

#[inline(always)]
fn be16(b: [u8; 2]) -> u16 {
    u16::from_be_bytes(b)
}

/// Parses a frame that starts with an Ethernet header into `pkt`, which the caller provides
/// (and may reuse) so the kernel keeps one copy of it on its 512-byte stack.
#[inline(always)]
pub fn parse_ethernet<F: Frame + ?Sized>(f: &F, pkt: &mut Packet) -> Result<(), Skip> {
    let eth: [u8; ETH_HLEN] = f.load(0).ok_or(Skip::Truncated)?;
    let mut proto = be16([eth[12], eth[13]]);
    let mut off = ETH_HLEN;
    for _ in 0..MAX_VLAN_TAGS {
        if proto != ETH_P_8021Q && proto != ETH_P_8021AD {
            break;
        }
        let tag: [u8; 4] = f.load(off).ok_or(Skip::Truncated)?;
        proto = be16([tag[2], tag[3]]);
        off += 4;
    }
    if proto == ETH_P_8021Q || proto == ETH_P_8021AD {
        return Err(Skip::TooManyHeaders);
    }
    parse_l3(f, off, proto, pkt)
}

/// Parses a frame whose network header starts at `off`, of type `proto` (an EtherType).
#[inline(always)]
pub fn parse_l3<F: Frame + ?Sized>(
    f: &F,
    off: usize,
    proto: u16,
    pkt: &mut Packet,
) -> Result<(), Skip> {
    // Only what a parse may leave stale; everything else is written on every success.
    // (No `*pkt = Packet::default()`: in the kernel that is a byte-by-byte memset.)
    pkt.ip_id = 0;
    pkt.head_len = 0;
    let (l4, l3_len) = match proto {
        ETH_P_IP => parse_ipv4(f, off, pkt)?,
        ETH_P_IPV6 => parse_ipv6(f, off, pkt)?,
        _ => return Err(Skip::NotIp),
    };
    pkt.l3_len = l3_len as u32;
    // Bytes of TCP header and payload, by the IP header's account.
    let seg_len = l3_len.checked_sub(l4 - off).ok_or(Skip::Malformed)?;
    parse_tcp(f, l4, seg_len, pkt)
}

/// Fills the IPv4 fields; returns (TCP offset, IP length).
#[inline(always)]
fn parse_ipv4<F: Frame + ?Sized>(
    f: &F,
    off: usize,
    pkt: &mut Packet,
) -> Result<(usize, usize), Skip> {
    let h: [u8; 20] = f.load(off).ok_or(Skip::Truncated)?;
    if h[0] >> 4 != 4 {
        return Err(Skip::Malformed);
    }
    let ihl = ((h[0] & 0x0f) as usize) * 4;
    if ihl < 20 {
        return Err(Skip::Malformed);
    }
    // A fragment offset, or "more fragments" on the first one: the TCP header may be here
    // but the segment is not whole, and its length would be the fragment's.
    if be16([h[6], h[7]]) & 0x3fff != 0 {
        return Err(Skip::Fragment);
    }
    if h[9] != 6 {
        return Err(Skip::NotTcp);
    }
    let on_wire = f.wire_len().saturating_sub(off);
    let mut tot = be16([h[2], h[3]]) as usize;
    if tot == 0 {
        // TSO/BIG TCP super-packets may leave the length to the skb.
        tot = on_wire;
    }
    // A length past the frame's end describes bytes that never existed (a forged or
    // damaged header the kernel's IP layer would drop after tc saw it).
    if tot < ihl || tot > on_wire {
        return Err(Skip::Malformed);
    }
    pkt.family = 4;
    pkt.ttl = h[8];
    pkt.ip_id = be16([h[4], h[5]]);
    pkt.src = in_sixteen([h[12], h[13], h[14], h[15]]);
    pkt.dst = in_sixteen([h[16], h[17], h[18], h[19]]);
    Ok((off + ihl, tot))
}

/// Fills the IPv6 fields, walking hop-by-hop, routing, destination-options, fragment and AH
/// headers; returns (TCP offset, IP length).
#[inline(always)]
fn parse_ipv6<F: Frame + ?Sized>(
    f: &F,
    off: usize,
    pkt: &mut Packet,
) -> Result<(usize, usize), Skip> {
    let h: [u8; 40] = f.load(off).ok_or(Skip::Truncated)?;
    if h[0] >> 4 != 6 {
        return Err(Skip::Malformed);
    }
    let on_wire = f.wire_len().saturating_sub(off + 40);
    let mut plen = be16([h[4], h[5]]) as usize;
    if plen == 0 {
        // Jumbograms and BIG TCP: the length is the skb's.
        plen = on_wire;
    }
    if plen > on_wire {
        // As for IPv4: a payload length past the frame's end.
        return Err(Skip::Malformed);
    }
    pkt.family = 6;
    pkt.ttl = h[7];
    pkt.src.copy_from_slice(&h[8..24]);
    pkt.dst.copy_from_slice(&h[24..40]);
    let mut next = h[6];
    let mut l4 = off + 40;
    let end = l4 + plen;
    for _ in 0..MAX_IPV6_EXT {
        let hlen = match next {
            6 => break,
            0 | 43 | 60 => {
                let e: [u8; 2] = f.load(l4).ok_or(Skip::Truncated)?;
                next = e[0];
                (e[1] as usize + 1) * 8
            }
            44 => {
                let e: [u8; 4] = f.load(l4).ok_or(Skip::Truncated)?;
                // Offset or the M flag: a piece of a segment (offset 0 without M is an
                // atomic fragment, a whole one).
                if be16([e[2], e[3]]) & 0xfff9 != 0 {
                    return Err(Skip::Fragment);
                }
                next = e[0];
                8
            }
            51 => {
                let e: [u8; 2] = f.load(l4).ok_or(Skip::Truncated)?;
                next = e[0];
                (e[1] as usize + 2) * 4
            }
            _ => return Err(Skip::NotTcp),
        };
        l4 += hlen;
        if l4 > end {
            return Err(Skip::Malformed);
        }
    }
    match next {
        6 => {}
        0 | 43 | 44 | 51 | 60 => return Err(Skip::TooManyHeaders),
        _ => return Err(Skip::NotTcp),
    }
    Ok((l4, 40 + plen))
}

#[inline(always)]
fn parse_tcp<F: Frame + ?Sized>(
    f: &F,
    off: usize,
    seg_len: usize,
    pkt: &mut Packet,
) -> Result<(), Skip> {
    let t: [u8; 20] = f.load(off).ok_or(Skip::Truncated)?;
    let doff = ((t[12] >> 4) as usize) * 4;
    if doff < 20 || doff > seg_len {
        return Err(Skip::Malformed);
    }
    pkt.sport = be16([t[0], t[1]]);
    pkt.dport = be16([t[2], t[3]]);
    pkt.seq = u32::from_be_bytes([t[4], t[5], t[6], t[7]]);
    pkt.ack = u32::from_be_bytes([t[8], t[9], t[10], t[11]]);
    pkt.flags = t[13];
    pkt.window = be16([t[14], t[15]]);
    pkt.tcp_hdr_len = doff as u8;
    pkt.payload_len = (seg_len - doff) as u32;
    pkt.payload_off = (off + doff) as u32;
    pkt.opts = TcpOpts::default_absent();
    let optlen = doff - 20;
    if pkt.flags & SYN != 0 && optlen > 0 {
        pkt.opts = parse_opts(f, off + 20, optlen);
    }
    if pkt.payload_len as usize >= HEAD_LEN {
        if let Some(head) = f.load::<HEAD_LEN>(off + doff) {
            pkt.head = head;
            pkt.head_len = HEAD_LEN as u8;
        }
    }
    Ok(())
}

/// Reads the `len` option bytes at `off`. Every read goes through [`Frame::load`] at a
/// computed offset (no indexing into a buffer: the verifier cannot bound that). Malformed
/// options end the walk quietly, as they do in stacks, and so do options a capture's snap
/// length cut off (tshark analyses such a segment too): what was read before stands.
#[inline(always)]
pub fn parse_opts<F: Frame + ?Sized>(f: &F, off: usize, len: usize) -> TcpOpts {
    let mut o = TcpOpts::default_absent();
    let mut i = 0usize;
    // A few branches per step and no early return, so the verifier can merge the paths.
    for _ in 0..MAX_OPT_STEPS {
        if i >= len {
            break;
        }
        let Some([kind]) = f.load::<1>(off + i) else {
            break;
        };
        if kind == 0 {
            break;
        }
        if kind == 1 {
            o.nops = o.nops.wrapping_add(1);
            i += 1;
            continue;
        }
        let Some([kind2, olen]) = f.load::<2>(off + i) else {
            break;
        };
        let olen = olen as usize;
        if olen < 2 || i + olen > len || kind2 != kind {
            break;
        }
        if kind == 2 && olen == 4 {
            if let Some(v) = f.load::<2>(off + i + 2) {
                o.mss = be16(v);
            }
        } else if kind == 3 && olen == 3 {
            if let Some([v]) = f.load::<1>(off + i + 2) {
                o.wscale = v;
            }
        } else if kind == 4 {
            o.sack_perm = true;
        } else if kind == 8 {
            o.timestamps = true;
        }
        i += olen;
    }
    o
}

#[cfg(all(test, feature = "user"))]
mod tests {
    use super::*;
    use crate::craft::{parser_cases, TcpFrame};
    use std::net::IpAddr;

    fn parse(frame: &[u8]) -> Result<Packet, Skip> {
        let mut p = Packet::default();
        parse_ethernet(frame, &mut p).map(|()| p)
    }

    #[test]
    fn every_case_parses_as_expected() {
        for c in parser_cases() {
            let got = parse(&c.frame).map(|p| (p.sport, p.dport, p.payload_len, p.l3_len));
            assert_eq!(got, c.expect, "case `{}`", c.name);
        }
    }

    #[test]
    fn fields_and_syn_options() {
        let mut f = TcpFrame::new(
            IpAddr::from([10, 0, 0, 1]),
            1234,
            IpAddr::from([10, 0, 0, 2]),
            443,
        )
        .flags(SYN);
        f.seq = 0xdead_beef;
        f.ack = 7;
        f.window = 29200;
        f.ttl = 61;
        f.ip_id = 0x4242;
        f.tcp_options = std::vec![2, 4, 5, 0xb4, 4, 2, 8, 10, 0, 0, 0, 1, 0, 0, 0, 0, 1, 3, 3, 7];
        let p = parse(&f.ethernet()).unwrap();
        assert_eq!(
            (p.seq, p.ack, p.window, p.ttl, p.ip_id),
            (0xdead_beef, 7, 29200, 61, 0x4242)
        );
        assert_eq!(p.flags, SYN);
        assert_eq!(p.family, 4);
        assert_eq!(&p.src[..4], &[10, 0, 0, 1]);
        assert_eq!(p.tcp_hdr_len, 40);
        assert_eq!(
            p.opts,
            TcpOpts {
                mss: 1460,
                wscale: 7,
                sack_perm: true,
                timestamps: true,
                nops: 1
            }
        );
    }

    #[test]
    fn options_are_read_on_syn_only_and_nops_counted() {
        let mut f = TcpFrame::new(
            IpAddr::from([10, 0, 0, 1]),
            1234,
            IpAddr::from([10, 0, 0, 2]),
            443,
        );
        f.tcp_options = std::vec![1, 1, 1, 1, 2, 4, 5, 0xb4];
        let p = parse(&f.ethernet()).unwrap();
        assert_eq!(p.opts, TcpOpts::default_absent());
        f.flags = SYN;
        let p = parse(&f.ethernet()).unwrap();
        assert_eq!((p.opts.mss, p.opts.nops), (1460, 4));
    }

    #[test]
    fn payload_head_is_kept() {
        let f = TcpFrame::new(
            IpAddr::from([10, 0, 0, 1]),
            1234,
            IpAddr::from([10, 0, 0, 2]),
            443,
        )
        .payload(&[0x16, 3, 1, 0, 0x30, 1, 0, 0]);
        let p = parse(&f.ethernet()).unwrap();
        assert_eq!((p.head, p.head_len), ([0x16, 3, 1, 0, 0x30, 1], 6));
        // Ethernet, IPv4 and TCP headers of 14, 20 and 20 bytes before it.
        assert_eq!(p.payload_off, 54);
    }

    #[test]
    fn a_capture_is_held_to_its_wire_length_not_its_snap_length() {
        let f = TcpFrame::new(
            IpAddr::from([10, 0, 0, 1]),
            1234,
            IpAddr::from([10, 0, 0, 2]),
            443,
        )
        .payload(&[9; 1000]);
        let whole = f.ethernet();
        let mut p = Packet::default();
        // Cut to 68 bytes by a snap length: the headers are there, the payload length is
        // the IP header's, as the wire carried it.
        let snapped = Captured {
            bytes: &whole[..68],
            wire_len: whole.len(),
        };
        assert_eq!(parse_ethernet(&snapped, &mut p), Ok(()));
        assert_eq!(p.payload_len, 1000);
        // The same header in a record that says the frame was shorter: a lie.
        let lying = Captured {
            bytes: &whole[..68],
            wire_len: whole.len() - 1,
        };
        assert_eq!(parse_ethernet(&lying, &mut p), Err(Skip::Malformed));
        // A snap length that cuts the TCP header: truncated, not a lie.
        let cut = Captured {
            bytes: &whole[..14 + 20 + 10],
            wire_len: whole.len(),
        };
        assert_eq!(parse_ethernet(&cut, &mut p), Err(Skip::Truncated));
        // A snap length that cuts a SYN's options: analysed, the options read so far kept.
        let mut syn = f.clone().flags(SYN);
        syn.payload.clear();
        syn.tcp_options = std::vec![2, 4, 5, 0xb4, 3, 3, 7, 0];
        let whole = syn.ethernet();
        let cut = Captured {
            bytes: &whole[..whole.len() - 4],
            wire_len: whole.len(),
        };
        assert_eq!(parse_ethernet(&cut, &mut p), Ok(()));
        assert_eq!((p.opts.mss, p.opts.wscale, p.l3_len), (1460, NO_WSCALE, 48));
    }

    #[test]
    fn malformed_options_stop_quietly() {
        let buf = [2u8, 4, 5, 0xb4, 3, 0]; // wscale with length 0
        let o = parse_opts(&buf[..], 0, 6);
        assert_eq!((o.mss, o.wscale), (1460, NO_WSCALE));
        let buf = [2u8, 40, 1, 0, 0, 0]; // length runs past the block
        assert_eq!(parse_opts(&buf[..], 0, 6).mss, 0);
        // Cut short by the capture: what was read stands.
        let buf = [2u8, 4, 5, 0xb4, 3, 3];
        let o = parse_opts(&buf[..], 0, 8);
        assert_eq!((o.mss, o.wscale), (1460, NO_WSCALE));
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..200)) {
            let mut p = Packet::default();
            let _ = parse_ethernet(&bytes[..], &mut p);
            let _ = parse_l3(&bytes[..], 0, ETH_P_IP, &mut p);
            let _ = parse_l3(&bytes[..], 0, ETH_P_IPV6, &mut p);
        }

        #[test]
        fn mutated_valid_frames_never_panic(pos in 0usize..80, val in proptest::num::u8::ANY) {
            for c in parser_cases() {
                let mut f = c.frame.clone();
                if pos < f.len() { f[pos] = val; }
                let _ = parse(&f);
            }
        }
    }
}
