//! Where the network layer starts for each link type.

use monitor_common::parse::{ETH_P_IP, ETH_P_IPV6};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Link {
    /// The frame starts with an Ethernet header.
    Ethernet,
    /// The network header starts at `offset`; `ethertype` 0 when the link header did not
    /// say (the parser then reports the frame as not IP).
    L3 { offset: usize, ethertype: u16 },
}

/// Link types `decode` reads; a capture of any other is refused rather than read as
/// nothing but skipped frames.
const SUPPORTED: [u32; 10] = [1, 101, 12, 14, 228, 229, 113, 276, 0, 108];

pub fn supported(linktype: u32) -> bool {
    SUPPORTED.contains(&linktype)
}

pub fn unsupported(linktype: u32) -> String {
    format!(
        "link type {linktype} is not one the monitor reads (it reads Ethernet, Linux cooked \
         SLL/SLL2, raw IP and BSD loopback)"
    )
}

const AF_INET: u32 = 2;
/// AF_INET6 differs between systems (Linux 10, BSDs 24/28/30).
const AF_INET6: [u32; 4] = [10, 24, 28, 30];

fn from_version(data: &[u8], offset: usize) -> u16 {
    match data.get(offset).map(|b| b >> 4) {
        Some(4) => ETH_P_IP,
        Some(6) => ETH_P_IPV6,
        _ => 0,
    }
}

/// Decodes the link header of one frame of `linktype`, one that `supported` accepts.
pub fn decode(linktype: u32, data: &[u8]) -> Link {
    match linktype {
        // Raw IP (LINKTYPE_RAW, DLT_RAW on some systems, IPv4-only, IPv6-only).
        101 | 12 | 14 | 228 | 229 => Link::L3 {
            offset: 0,
            ethertype: from_version(data, 0),
        },
        // Linux cooked v1: protocol at bytes 14-15.
        113 => Link::L3 {
            offset: 16,
            ethertype: data
                .get(14..16)
                .map_or(0, |p| u16::from_be_bytes([p[0], p[1]])),
        },
        // Linux cooked v2: protocol at bytes 0-1.
        276 => Link::L3 {
            offset: 20,
            ethertype: data
                .get(0..2)
                .map_or(0, |p| u16::from_be_bytes([p[0], p[1]])),
        },
        // BSD loopback: a 4-byte address family, in the capturing host's byte order.
        0 | 108 => {
            let fam = data.get(0..4).map(|b| {
                let le = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
                let be = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
                if le < 256 {
                    le
                } else {
                    be
                }
            });
            let ethertype = match fam {
                Some(AF_INET) => ETH_P_IP,
                Some(f) if AF_INET6.contains(&f) => ETH_P_IPV6,
                _ => 0,
            };
            Link::L3 {
                offset: 4,
                ethertype,
            }
        }
        // Ethernet (1).
        _ => Link::Ethernet,
    }
}
