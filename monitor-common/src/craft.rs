//! Hand-built frames, for tests and benchmarks: every header case the parser handles, and
//! the broken ones it must refuse. Checksums are left zero; nothing here verifies them.

use std::{net::IpAddr, vec::Vec};

/// An IPv6 extension header to insert: (next-header code of this header, body after the
/// first two bytes). Bodies are padded to the header's unit.
pub type Ext = (u8, Vec<u8>);

#[derive(Clone, Debug)]
pub struct TcpFrame {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub sport: u16,
    pub dport: u16,
    pub seq: u32,
    pub ack: u32,
    pub flags: u8,
    pub window: u16,
    pub ttl: u8,
    pub ip_id: u16,
    pub tcp_options: Vec<u8>,
    pub payload: Vec<u8>,
    pub vlans: Vec<u16>,
    pub ipv4_options: Vec<u8>,
    pub ipv6_ext: Vec<Ext>,
    /// Fragment offset in 8-byte units (IPv4 field, or an IPv6 fragment header if nonzero
    /// or `ipv6_frag` is set).
    pub frag_offset: u16,
    pub ipv6_frag: bool,
    /// Sets "more fragments" (IPv4 MF, or the M flag of an IPv6 fragment header).
    pub more_fragments: bool,
    /// Overrides the IPv4 total length or IPv6 payload length, to build headers that claim
    /// more bytes than the frame carries.
    pub ip_len: Option<u16>,
    /// Overrides the data offset nibble (words), to build malformed headers.
    pub data_offset: Option<u8>,
    /// Overrides the IPv4 IHL nibble (words).
    pub ihl: Option<u8>,
}

impl TcpFrame {
    pub fn new(src: IpAddr, sport: u16, dst: IpAddr, dport: u16) -> Self {
        Self {
            src,
            dst,
            sport,
            dport,
            seq: 1000,
            ack: 0,
            flags: crate::parse::ACK,
            window: 65535,
            ttl: 64,
            ip_id: 1,
            tcp_options: Vec::new(),
            payload: Vec::new(),
            vlans: Vec::new(),
            ipv4_options: Vec::new(),
            ipv6_ext: Vec::new(),
            frag_offset: 0,
            ipv6_frag: false,
            more_fragments: false,
            ip_len: None,
            data_offset: None,
            ihl: None,
        }
    }

    pub fn flags(mut self, flags: u8) -> Self {
        self.flags = flags;
        self
    }

    pub fn payload(mut self, payload: &[u8]) -> Self {
        self.payload = payload.to_vec();
        self
    }

    fn tcp(&self) -> Vec<u8> {
        let mut opts = self.tcp_options.clone();
        while !opts.len().is_multiple_of(4) {
            opts.push(0);
        }
        let doff = self.data_offset.unwrap_or((20 + opts.len()) as u8 / 4);
        let mut t = Vec::with_capacity(20 + opts.len() + self.payload.len());
        t.extend_from_slice(&self.sport.to_be_bytes());
        t.extend_from_slice(&self.dport.to_be_bytes());
        t.extend_from_slice(&self.seq.to_be_bytes());
        t.extend_from_slice(&self.ack.to_be_bytes());
        t.push(doff << 4);
        t.push(self.flags);
        t.extend_from_slice(&self.window.to_be_bytes());
        t.extend_from_slice(&[0, 0, 0, 0]);
        t.extend_from_slice(&opts);
        t.extend_from_slice(&self.payload);
        t
    }

    /// The IP packet (no link header) and its EtherType.
    pub fn ip(&self) -> (Vec<u8>, u16) {
        let tcp = self.tcp();
        match (self.src, self.dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                let mut o = self.ipv4_options.clone();
                while !o.len().is_multiple_of(4) {
                    o.push(0);
                }
                let ihl = self.ihl.unwrap_or((20 + o.len()) as u8 / 4);
                let tot = self.ip_len.unwrap_or((20 + o.len() + tcp.len()) as u16);
                let frag = (self.frag_offset & 0x1fff) | (self.more_fragments as u16) << 13;
                let mut h = Vec::new();
                h.push(0x40 | ihl);
                h.push(0);
                h.extend_from_slice(&tot.to_be_bytes());
                h.extend_from_slice(&self.ip_id.to_be_bytes());
                h.extend_from_slice(&frag.to_be_bytes());
                h.push(self.ttl);
                h.push(6);
                h.extend_from_slice(&[0, 0]);
                h.extend_from_slice(&s.octets());
                h.extend_from_slice(&d.octets());
                h.extend_from_slice(&o);
                h.extend_from_slice(&tcp);
                (h, crate::parse::ETH_P_IP)
            }
            (IpAddr::V6(s), IpAddr::V6(d)) => {
                // Chain: extension headers in order, then an optional fragment header, TCP.
                let mut chain: Vec<(u8, Vec<u8>)> = Vec::new();
                for (code, body) in &self.ipv6_ext {
                    let mut b = body.clone();
                    let unit = if *code == 51 { 4 } else { 8 };
                    while (b.len() + 2) % unit != 0 || b.len() + 2 < 8 {
                        b.push(0);
                    }
                    chain.push((*code, b));
                }
                if self.ipv6_frag || self.frag_offset != 0 || self.more_fragments {
                    let fo = (self.frag_offset << 3 | self.more_fragments as u16).to_be_bytes();
                    chain.push((44, std::vec![fo[0], fo[1], 0, 0, 0, 0]));
                }
                let mut ext = Vec::new();
                for (i, (code, body)) in chain.iter().enumerate() {
                    let next = chain.get(i + 1).map_or(6, |c| c.0);
                    ext.push(next);
                    let len = match code {
                        44 => 0,
                        51 => ((body.len() + 2) / 4 - 2) as u8,
                        _ => ((body.len() + 2) / 8 - 1) as u8,
                    };
                    ext.push(len);
                    ext.extend_from_slice(body);
                }
                let first = chain.first().map_or(6, |c| c.0);
                let plen = self.ip_len.unwrap_or((ext.len() + tcp.len()) as u16);
                let mut h = std::vec![0x60, 0, 0, 0];
                h.extend_from_slice(&plen.to_be_bytes());
                h.push(first);
                h.push(self.ttl);
                h.extend_from_slice(&s.octets());
                h.extend_from_slice(&d.octets());
                h.extend_from_slice(&ext);
                h.extend_from_slice(&tcp);
                (h, crate::parse::ETH_P_IPV6)
            }
            _ => panic!("craft: source and destination must be the same family"),
        }
    }

    /// The frame with an Ethernet header (and VLAN tags).
    pub fn ethernet(&self) -> Vec<u8> {
        let (ip, proto) = self.ip();
        let mut f = std::vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1];
        for (i, vid) in self.vlans.iter().enumerate() {
            let tpid: u16 = if i == 0 && self.vlans.len() > 1 {
                0x88a8
            } else {
                0x8100
            };
            f.extend_from_slice(&tpid.to_be_bytes());
            f.extend_from_slice(&vid.to_be_bytes());
        }
        f.extend_from_slice(&proto.to_be_bytes());
        f.extend_from_slice(&ip);
        f
    }
}

/// A non-TCP, non-IP or otherwise odd frame: Ethernet header with `ethertype`, then `body`.
pub fn ethernet_raw(ethertype: u16, body: &[u8]) -> Vec<u8> {
    let mut f = std::vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1];
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(body);
    f
}

/// One parser case: a frame and what the parser must make of it.
pub struct Case {
    pub name: &'static str,
    pub frame: Vec<u8>,
    /// `Ok((sport, dport, payload_len, l3_len))` or the reason it is skipped.
    pub expect: Result<(u16, u16, u32, u32), crate::parse::Skip>,
}

/// Every header case the parser distinguishes, well-formed and broken.
pub fn parser_cases() -> Vec<Case> {
    use crate::parse::{Skip, ETH_P_IP, ETH_P_IPV6, SYN};
    let v4 = |s: [u8; 4]| IpAddr::from(s);
    let v6 = |last: u16| IpAddr::from([0xfd00, 0, 0, 0, 0, 0, 0, last]);
    let base4 = TcpFrame::new(v4([10, 0, 0, 1]), 40000, v4([10, 0, 0, 2]), 50001);
    let base6 = TcpFrame::new(v6(1), 40000, v6(2), 50001);
    let mut cases = Vec::new();
    let mut add = |name, frame: Vec<u8>, expect| {
        cases.push(Case {
            name,
            frame,
            expect,
        })
    };

    add(
        "ipv4 plain",
        base4.clone().payload(b"hello").ethernet(),
        Ok((40000, 50001, 5, 45)),
    );
    let mut f = base4.clone().flags(SYN);
    f.tcp_options = std::vec![2, 4, 5, 0xb4, 1, 3, 3, 7, 4, 2, 8, 10, 0, 0, 0, 1, 0, 0, 0, 0];
    add(
        "ipv4 syn with options",
        f.ethernet(),
        Ok((40000, 50001, 0, 60)),
    );
    let mut f = base4.clone().payload(&[0x16, 3, 1, 0, 0x40, 1, 9, 9]);
    f.vlans = std::vec![100];
    add("one vlan tag", f.ethernet(), Ok((40000, 50001, 8, 48)));
    let mut f = base4.clone();
    f.vlans = std::vec![100, 200];
    add(
        "two vlan tags (QinQ)",
        f.ethernet(),
        Ok((40000, 50001, 0, 40)),
    );
    let mut f = base4.clone();
    f.vlans = std::vec![100, 200, 300];
    add("three vlan tags", f.ethernet(), Err(Skip::TooManyHeaders));
    let mut f = base4.clone().payload(b"xy");
    f.ipv4_options = std::vec![1, 1, 1, 1, 7, 7, 4, 0, 0, 0, 0];
    add("ipv4 with options", f.ethernet(), Ok((40000, 50001, 2, 54)));
    // Ethernet padding to 60 bytes must not count as payload.
    let mut padded = base4.clone().ethernet();
    padded.resize(60, 0);
    add("ethernet padding", padded, Ok((40000, 50001, 0, 40)));
    let mut f = base4.clone();
    f.frag_offset = 10;
    add("ipv4 non-first fragment", f.ethernet(), Err(Skip::Fragment));
    let mut f = base4.clone().payload(&[7; 24]);
    f.more_fragments = true;
    add(
        "ipv4 first fragment (more fragments)",
        f.ethernet(),
        Err(Skip::Fragment),
    );
    // A 94-byte frame claiming 65535 bytes: a forged header. Counting its length would
    // invent ~65 KB of payload and mark the flow's next segments as retransmissions.
    let mut f = base4.clone().payload(&[7; 40]);
    f.ip_len = Some(65535);
    add(
        "ipv4 total length past the frame",
        f.ethernet(),
        Err(Skip::Malformed),
    );
    let mut f = base4.clone().payload(&[7; 40]);
    f.ip_len = Some(20 + 20 + 41);
    add(
        "ipv4 total length one byte past the frame",
        f.ethernet(),
        Err(Skip::Malformed),
    );
    // Shorter than the frame is fine: what follows is link padding, not payload.
    let mut f = base4.clone().payload(&[7; 40]);
    f.ip_len = Some(20 + 20 + 10);
    add(
        "ipv4 total length short of the frame",
        f.ethernet(),
        Ok((40000, 50001, 10, 50)),
    );
    let mut f = base4.clone();
    f.ihl = Some(4);
    add("ipv4 ihl below 5", f.ethernet(), Err(Skip::Malformed));
    let short = base4.clone().ethernet();
    add(
        "ipv4 header cut short",
        short[..14 + 12].to_vec(),
        Err(Skip::Truncated),
    );
    // A whole frame that ends inside the TCP header its IP length promised: the length
    // lies. (A capture's snap length cutting the header is `Truncated`: parse.rs tests.)
    add(
        "tcp header cut short",
        short[..14 + 20 + 10].to_vec(),
        Err(Skip::Malformed),
    );
    let mut f = base4.clone();
    f.data_offset = Some(4);
    add(
        "tcp data offset below 5",
        f.ethernet(),
        Err(Skip::Malformed),
    );
    let mut f = base4.clone().payload(b"abcd");
    f.data_offset = Some(15);
    add(
        "tcp data offset past the segment",
        f.ethernet(),
        Err(Skip::Malformed),
    );
    let mut f = base4.clone().flags(SYN);
    f.tcp_options = std::vec![2, 4, 5, 0xb4];
    let syn = f.ethernet();
    // A whole frame ending inside the options its lengths promised. (Options cut by a
    // capture's snap length are still read as far as they go: parse.rs tests.)
    add(
        "syn options past the frame",
        syn[..syn.len() - 2].to_vec(),
        Err(Skip::Malformed),
    );
    let (mut udp, _) = base4.clone().ip();
    udp[9] = 17;
    add("ipv4 udp", ethernet_raw(ETH_P_IP, &udp), Err(Skip::NotTcp));
    add("arp", ethernet_raw(0x0806, &[0; 28]), Err(Skip::NotIp));
    add("runt frame", std::vec![0; 10], Err(Skip::Truncated));
    let (mut bad_ver, _) = base4.clone().ip();
    bad_ver[0] = 0x65;
    add(
        "ipv4 ethertype with version 6",
        ethernet_raw(ETH_P_IP, &bad_ver),
        Err(Skip::Malformed),
    );

    add(
        "ipv6 plain",
        base6.clone().payload(b"media").ethernet(),
        Ok((40000, 50001, 5, 65)),
    );
    let mut f = base6.clone().payload(b"m");
    f.ipv6_ext = std::vec![
        (0, std::vec![0; 6]),
        (43, std::vec![0; 14]),
        (60, std::vec![0; 6])
    ];
    add(
        "ipv6 hop-by-hop, routing, dest-opts",
        f.ethernet(),
        Ok((40000, 50001, 1, 40 + 8 + 16 + 8 + 21)),
    );
    let mut f = base6.clone();
    f.ipv6_frag = true;
    add(
        "ipv6 atomic fragment (offset 0, no more)",
        f.ethernet(),
        Ok((40000, 50001, 0, 40 + 8 + 20)),
    );
    let mut f = base6.clone().payload(&[7; 24]);
    f.more_fragments = true;
    add(
        "ipv6 first fragment (more fragments)",
        f.ethernet(),
        Err(Skip::Fragment),
    );
    let mut f = base6.clone().payload(&[7; 40]);
    f.ip_len = Some(65535);
    add(
        "ipv6 payload length past the frame",
        f.ethernet(),
        Err(Skip::Malformed),
    );
    let mut f = base6.clone();
    f.frag_offset = 3;
    add("ipv6 non-first fragment", f.ethernet(), Err(Skip::Fragment));
    let mut f = base6.clone();
    f.ipv6_ext = (0..7).map(|_| (60u8, std::vec![0u8; 6])).collect();
    add(
        "ipv6 too many extension headers",
        f.ethernet(),
        Err(Skip::TooManyHeaders),
    );
    let mut f = base6.clone();
    f.ipv6_ext = std::vec![(60, std::vec![0; 6])];
    let mut e = f.ethernet();
    e[14 + 40 + 1] = 200; // extension header claims 1608 bytes
    add(
        "ipv6 extension header past the packet",
        e,
        Err(Skip::Malformed),
    );
    let (mut udp6, _) = base6.clone().ip();
    udp6[6] = 17;
    add(
        "ipv6 udp",
        ethernet_raw(ETH_P_IPV6, &udp6),
        Err(Skip::NotTcp),
    );
    let mut f = base6.clone();
    f.vlans = std::vec![7, 8];
    add("ipv6 in QinQ", f.ethernet(), Ok((40000, 50001, 0, 60)));
    cases
}

/// A classic pcap file (nanosecond timestamps, Ethernet) of `(ts_ns, captured bytes,
/// original length)` records: what a capture of crafted frames looks like to `replay`.
pub fn pcap(records: &[(u64, &[u8], u32)]) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&0xa1b2_3c4du32.to_le_bytes());
    b.extend_from_slice(&2u16.to_le_bytes());
    b.extend_from_slice(&4u16.to_le_bytes());
    b.extend_from_slice(&[0; 8]);
    b.extend_from_slice(&262_144u32.to_le_bytes());
    b.extend_from_slice(&1u32.to_le_bytes());
    for (ts, data, orig_len) in records {
        b.extend_from_slice(&((ts / 1_000_000_000) as u32).to_le_bytes());
        b.extend_from_slice(&((ts % 1_000_000_000) as u32).to_le_bytes());
        b.extend_from_slice(&(data.len() as u32).to_le_bytes());
        b.extend_from_slice(&orig_len.to_le_bytes());
        b.extend_from_slice(data);
    }
    b
}
