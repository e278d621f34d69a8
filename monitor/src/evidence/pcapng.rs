//! The three pcapng blocks an evidence capture is made of: a section header (the alert's
//! summary as its comment; host, system and monitor version), one interface per link type
//! (snap length, nanosecond timestamps) and an enhanced packet per frame with the
//! monitor's verdict as its comment. `pcap-parser` (already the capture reader) serialises
//! them with its `serialize` feature; this file only fills in the fields.

use std::borrow::Cow;

use pcap_parser::{
    pcapng::{EnhancedPacketBlock, InterfaceDescriptionBlock, SectionHeaderBlock},
    Linktype, OptionCode, PcapNGOption, ToVec,
};

/// opt_comment, and the section header's shb_hardware, shb_os, shb_userappl (pcapng
/// specification, section 4.1).
const COMMENT: u16 = 1;
const SHB_HARDWARE: u16 = 2;
const SHB_OS: u16 = 3;
const SHB_USERAPPL: u16 = 4;
/// if_name (section 4.2).
const IF_NAME: u16 = 2;
/// Nanoseconds: 10^-9 (if_tsresol).
const TSRESOL_NS: u8 = 9;

/// An option holds at most 65535 bytes: a longer text is cut at a character boundary.
fn text(code: u16, s: &str) -> PcapNGOption<'static> {
    let mut end = s.len().min(u16::MAX as usize);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    let value = s.as_bytes()[..end].to_vec();
    PcapNGOption {
        code: OptionCode(code),
        len: end as u16,
        value: Cow::Owned(value),
    }
}

/// Serialisation into a `Vec` cannot run out of room; any error would be a bug, and then
/// the block is left out rather than written half.
fn bytes<E>(r: Result<Vec<u8>, E>) -> Vec<u8> {
    r.unwrap_or_default()
}

/// What the section header says about where the capture was made.
pub struct Origin<'a> {
    pub host: &'a str,
    pub os: &'a str,
    pub application: &'a str,
}

/// The section header: `comment` is the alert's summary.
pub fn section_header(comment: &str, origin: &Origin<'_>) -> Vec<u8> {
    let mut shb = SectionHeaderBlock {
        block_type: 0,
        block_len1: 0,
        bom: 0,
        major_version: 1,
        minor_version: 0,
        // Unknown: the section's length is not said (readers walk the blocks).
        section_len: -1,
        options: vec![
            text(COMMENT, comment),
            text(SHB_HARDWARE, origin.host),
            text(SHB_OS, origin.os),
            text(SHB_USERAPPL, origin.application),
        ],
        block_len2: 0,
    };
    bytes(shb.to_vec())
}

/// An interface of link type `linktype` (the input's LINKTYPE_* number), frames cut at
/// `snaplen`, timestamps in nanoseconds; `name` is the interface (or the capture file).
pub fn interface(linktype: u32, snaplen: u32, name: &str) -> Vec<u8> {
    let mut idb = InterfaceDescriptionBlock {
        block_type: 0,
        block_len1: 0,
        linktype: Linktype(linktype as i32),
        reserved: 0,
        snaplen,
        options: vec![text(IF_NAME, name)],
        block_len2: 0,
        if_tsresol: TSRESOL_NS,
        if_tsoffset: 0,
    };
    bytes(idb.to_vec())
}

/// One frame on interface `if_id` at Unix-epoch `ts_ns`: `data` are the bytes kept (at
/// most the snap length), `orig_len` the frame's length on the wire.
pub fn packet(
    if_id: u32,
    ts_ns: u64,
    data: &[u8],
    orig_len: u32,
    comment: Option<&str>,
) -> Vec<u8> {
    let mut epb = EnhancedPacketBlock {
        block_type: 0,
        block_len1: 0,
        if_id,
        ts_high: (ts_ns >> 32) as u32,
        ts_low: ts_ns as u32,
        caplen: data.len() as u32,
        origlen: orig_len.max(data.len() as u32),
        data,
        options: comment.map(|c| text(COMMENT, c)).into_iter().collect(),
        block_len2: 0,
    };
    bytes(epb.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use pcap_parser::pcapng::parse_block_le;

    /// What pcap-parser reads back: the blocks as written, comments and lengths included.
    #[test]
    fn the_blocks_read_back_as_written() {
        let origin = Origin {
            host: "edge-1",
            os: "Linux",
            application: "monitor 0.1.0",
        };
        let mut file = section_header("alert 1: reset", &origin);
        file.extend(interface(1, 256, "x.pcap"));
        let frame = [7u8; 61];
        file.extend(packet(
            0,
            1_700_000_000_123_456_789,
            &frame,
            1514,
            Some("duplicate ACK"),
        ));
        file.extend(packet(0, 1_700_000_001_000_000_000, &frame[..60], 60, None));
        let mut seen = Vec::new();
        let mut rest = &file[..];
        while !rest.is_empty() {
            let (r, block) = parse_block_le(rest).expect("a whole block");
            seen.push(format!("{block:?}"));
            rest = r;
        }
        assert_eq!(seen.len(), 4, "{seen:#?}");
        assert!(seen[0].contains("SectionHeader"), "{}", seen[0]);
        assert!(seen[1].contains("linktype: Linktype(1)") && seen[1].contains("snaplen: 256"));
        assert!(seen[2].contains("caplen: 61") && seen[2].contains("origlen: 1514"));
        assert!(seen[3].contains("caplen: 60"), "{}", seen[3]);
    }
}
