use std::path::PathBuf;

use super::*;

/// A classic pcap file: (seconds, fraction, data) records.
pub(super) fn pcap(big: bool, nano: bool, linktype: u32, recs: &[(u32, u32, &[u8])]) -> Vec<u8> {
    let w32 = |v: u32| {
        if big {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        }
    };
    let w16 = |v: u16| {
        if big {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        }
    };
    let mut b = Vec::new();
    b.extend_from_slice(&w32(if nano { 0xa1b2_3c4d } else { 0xa1b2_c3d4 }));
    b.extend_from_slice(&w16(2));
    b.extend_from_slice(&w16(4));
    b.extend_from_slice(&[0; 8]);
    b.extend_from_slice(&w32(65535));
    b.extend_from_slice(&w32(linktype));
    for (s, frac, d) in recs {
        b.extend_from_slice(&w32(*s));
        b.extend_from_slice(&w32(*frac));
        b.extend_from_slice(&w32(d.len() as u32));
        b.extend_from_slice(&w32(d.len() as u32));
        b.extend_from_slice(d);
    }
    b
}

fn block(big: bool, ty: u32, body: &[u8]) -> Vec<u8> {
    let w32 = |v: u32| {
        if big {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        }
    };
    let mut body = body.to_vec();
    while !body.len().is_multiple_of(4) {
        body.push(0);
    }
    let len = 12 + body.len() as u32;
    let mut b = Vec::new();
    b.extend_from_slice(&w32(ty));
    b.extend_from_slice(&w32(len));
    b.extend_from_slice(&body);
    b.extend_from_slice(&w32(len));
    b
}

/// A pcapng file with one interface (`tsresol` option if given) and EPBs of (ts, data).
fn pcapng(big: bool, linktype: u16, tsresol: Option<u8>, recs: &[(u64, &[u8])]) -> Vec<u8> {
    let opts: Vec<(u16, Vec<u8>)> = tsresol.map(|r| (9, vec![r])).into_iter().collect();
    pcapng_with(big, linktype, &opts, recs)
}

/// A pcapng file with one interface carrying `opts` (code, value) and EPBs of (ts, data).
fn pcapng_with(
    big: bool,
    linktype: u16,
    opts: &[(u16, Vec<u8>)],
    recs: &[(u64, &[u8])],
) -> Vec<u8> {
    let w32 = |v: u32| {
        if big {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        }
    };
    let w16 = |v: u16| {
        if big {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        }
    };
    let mut shb = Vec::new();
    shb.extend_from_slice(&w32(0x1a2b_3c4d));
    shb.extend_from_slice(&w16(1));
    shb.extend_from_slice(&w16(0));
    shb.extend_from_slice(&[0xff; 8]);
    let mut b = block(big, 0x0a0d_0d0a, &shb);
    let mut idb = Vec::new();
    idb.extend_from_slice(&w16(linktype));
    idb.extend_from_slice(&w16(0));
    idb.extend_from_slice(&w32(0));
    for (code, val) in opts {
        idb.extend_from_slice(&w16(*code));
        idb.extend_from_slice(&w16(val.len() as u16));
        idb.extend_from_slice(val);
        while !idb.len().is_multiple_of(4) {
            idb.push(0);
        }
    }
    if !opts.is_empty() {
        idb.extend_from_slice(&[0; 4]);
    }
    b.extend(block(big, 1, &idb));
    for (ts, d) in recs {
        let mut epb = Vec::new();
        epb.extend_from_slice(&w32(0));
        epb.extend_from_slice(&w32((ts >> 32) as u32));
        epb.extend_from_slice(&w32(*ts as u32));
        epb.extend_from_slice(&w32(d.len() as u32));
        epb.extend_from_slice(&w32(d.len() as u32));
        epb.extend_from_slice(d);
        b.extend(block(big, 6, &epb));
    }
    b
}

pub(super) type Frame = (u64, Link, Vec<u8>);

/// The frames and the cut, if any.
pub(super) fn read_all(bytes: Vec<u8>) -> Result<(Vec<Frame>, Option<CaptureError>), CaptureError> {
    let r = Reader::from_bytes(bytes)?;
    let mut v = Vec::new();
    let frames = r.for_each(|p| v.push((p.ts_ns, p.link, p.data.to_vec())))?;
    assert_eq!(frames.count, v.len() as u64);
    Ok((v, frames.cut))
}

/// The frames of a capture that must be read whole.
pub(super) fn collect(bytes: Vec<u8>) -> Result<Vec<Frame>, CaptureError> {
    let (v, cut) = read_all(bytes)?;
    assert_eq!(cut, None);
    Ok(v)
}

const IP4: &[u8] = &[
    0x45, 0, 0, 20, 0, 0, 0, 0, 64, 6, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8,
];

#[test]
fn pcap_both_orders_and_resolutions() {
    for big in [false, true] {
        let v = collect(pcap(big, false, 1, &[(10, 5, b"abc"), (11, 0, b"")])).unwrap();
        assert_eq!(v[0], (10_000_005_000, Link::Ethernet, b"abc".to_vec()));
        assert_eq!(v[1].0, 11_000_000_000);
        let v = collect(pcap(big, true, 1, &[(10, 5, b"x")])).unwrap();
        assert_eq!(v[0].0, 10_000_000_005);
    }
}

#[test]
fn pcapng_both_orders_and_resolutions() {
    for big in [false, true] {
        let v = collect(pcapng(big, 1, None, &[(1_500_000, b"abcd")])).unwrap();
        assert_eq!(v[0], (1_500_000_000, Link::Ethernet, b"abcd".to_vec()));
        let v = collect(pcapng(big, 1, Some(9), &[(1_500_000_123, b"a")])).unwrap();
        assert_eq!(v[0].0, 1_500_000_123);
        // Power-of-two resolution: 2^-10 s units.
        let v = collect(pcapng(big, 1, Some(0x80 | 10), &[(1024 * 3 + 512, b"a")])).unwrap();
        assert_eq!(v[0].0, 3_500_000_000);
    }
}

#[test]
fn link_types() {
    let mut sll = vec![0u8; 16];
    sll[14..16].copy_from_slice(&[0x08, 0x00]);
    sll.extend_from_slice(IP4);
    let mut sll2 = vec![0x86, 0xdd];
    sll2.extend_from_slice(&[0; 18]);
    let mut null_le = 2u32.to_le_bytes().to_vec();
    null_le.extend_from_slice(IP4);
    let mut null_be = 24u32.to_be_bytes().to_vec();
    null_be.extend_from_slice(&[0x60; 40]);
    for (lt, data, want) in [
        (
            101u32,
            IP4.to_vec(),
            Link::L3 {
                offset: 0,
                ethertype: 0x0800,
            },
        ),
        (
            229,
            vec![0x60; 40],
            Link::L3 {
                offset: 0,
                ethertype: 0x86dd,
            },
        ),
        (
            113,
            sll,
            Link::L3 {
                offset: 16,
                ethertype: 0x0800,
            },
        ),
        (
            276,
            sll2,
            Link::L3 {
                offset: 20,
                ethertype: 0x86dd,
            },
        ),
        (
            0,
            null_le,
            Link::L3 {
                offset: 4,
                ethertype: 0x0800,
            },
        ),
        (
            0,
            null_be,
            Link::L3 {
                offset: 4,
                ethertype: 0x86dd,
            },
        ),
        (
            113,
            vec![0; 3],
            Link::L3 {
                offset: 16,
                ethertype: 0,
            },
        ),
    ] {
        let v = collect(pcap(false, false, lt, &[(1, 0, &data)])).unwrap();
        assert_eq!(v[0].1, want, "linktype {lt}");
    }
}

#[test]
fn damaged_files_name_the_offset() {
    let good = pcap(false, false, 1, &[(1, 0, b"abcdef"), (2, 0, b"xyz")]);
    let cases: Vec<(Vec<u8>, u64, &str)> = vec![
        (Vec::new(), 0, "empty"),
        (b"GIF89a...".to_vec(), 0, "neither pcap nor pcapng"),
        (good[..20].to_vec(), 0, "header cut short"),
        (
            {
                let mut b = good.clone();
                b[24 + 8..24 + 12].copy_from_slice(&0x7fff_ffffu32.to_le_bytes());
                b
            },
            24,
            "absurd",
        ),
    ];
    for (bytes, offset, word) in cases {
        let e = collect(bytes).unwrap_err();
        assert_eq!(e.offset, offset, "{e}");
        assert!(e.reason.contains(word), "{e}");
    }
    let ng = pcapng(false, 1, None, &[(1, b"abcd")]);
    let epb_at = ng.len() - 36;
    let mut bad_len = ng.clone();
    bad_len[epb_at + 4..epb_at + 8].copy_from_slice(&13u32.to_le_bytes());
    let mut bad_trailer = ng.clone();
    let last = bad_trailer.len() - 4;
    bad_trailer[last..].copy_from_slice(&40u32.to_le_bytes());
    let mut bad_iface = ng.clone();
    bad_iface[epb_at + 8..epb_at + 12].copy_from_slice(&3u32.to_le_bytes());
    for (bytes, offset, word) in [
        (bad_len, epb_at as u64, "impossible length"),
        (bad_trailer, epb_at as u64, "trailing length"),
        (bad_iface, epb_at as u64, "interface 3"),
    ] {
        let e = collect(bytes).unwrap_err();
        assert_eq!(e.offset, offset, "{e}");
        assert!(e.reason.contains(word), "{e}");
    }
}

pub(super) fn testdata() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../testdata/pcaps"))
}

/// Frame counts as `tshark -r FILE | wc -l` (tshark 4.0.17) gives them.
const TSHARK_FRAMES: &[(&str, u64)] = &[
    ("ws-dns-ooo.pcap", 4),
    ("ws-http-ooo.pcap", 16),
    ("ws-tcp-badsegments.pcap", 25),
    ("zeek-fin_retransmission.pcap", 5),
    ("zeek-handshake-reorder.pcap", 14),
    ("zeek-miss_end_data.pcap", 9),
    ("zeek-missing-syn.pcap", 21),
    ("zeek-one-sided-2745.pcap", 6),
    ("zeek-option-sack.pcap", 4),
    ("zeek-payload-syn.pcap", 6),
    ("zeek-retransmit-fast009.pcap", 39),
    ("zeek-single-rst.pcap", 1),
    ("zeek-syn-then-ack-then-rst.pcap", 3),
    ("zeek-syn-then-rst.pcap", 2),
    ("zeek-syn-then-stuff-then-rst.pcap", 4),
    ("zeek-tcp-fast-open.pcap", 16),
    ("zeek-truncated-header.pcap", 24),
    ("zeek-window-scale-range.pcap", 5),
    ("cs-inconsistent_printer.pcapng", 122),
    ("cs-nowebaccess2.pcapng", 8),
    ("cs-nowebaccess3.pcapng", 5),
    ("cs-tcp_dupack.pcapng", 9),
    ("cs-tcp_handshake.pcapng", 3),
    ("cs-tcp_refuseconnection.pcapng", 2),
    ("cs-tcp_retransmissions.pcapng", 6),
    ("cs-tcp_teardown.pcapng", 4),
    ("cs-tcp_zerowindowdead.pcapng", 8),
    ("cs-tcp_zerowindowrecovery.pcapng", 7),
    ("zeek-retransmit-timeout.pcapng", 3),
];

#[test]
fn every_test_capture_reads_with_tsharks_frame_count() {
    for (name, frames) in TSHARK_FRAMES {
        let r = Reader::open(&testdata().join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        let mut first = Vec::new();
        let read = r
            .for_each(|p| {
                if first.len() < 2 {
                    first.push(p.ts_ns)
                }
            })
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(read.count, *frames, "{name}");
        assert_eq!(read.cut, None, "{name}");
        // frame.time_epoch of the first two frames, from tshark.
        let want: &[u64] = match *name {
            "ws-http-ooo.pcap" => &[0, 1_000],
            "cs-tcp_handshake.pcapng" => &[1_262_893_114_341_715_000, 1_262_893_114_474_342_000],
            "zeek-retransmit-timeout.pcapng" => &[629_503_200_000_030_000, 629_503_200_000_040_000],
            "ws-dns-ooo.pcap" => &[1_535_375_848_429_467_000, 1_535_375_848_431_468_000],
            _ => continue,
        };
        assert_eq!(first, want, "{name}");
    }
}

#[test]
fn every_truncation_of_a_real_capture_is_an_error_or_fewer_frames() {
    for name in ["cs-tcp_handshake.pcapng", "zeek-syn-then-rst.pcap"] {
        let bytes = std::fs::read(testdata().join(name)).unwrap();
        for cut in 0..bytes.len() {
            if let Ok(r) = Reader::from_bytes(bytes[..cut].to_vec()) {
                let _ = r.for_each(|_| {});
            }
        }
    }
}

proptest::proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(mut bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..400), kind in 0u8..3) {
        // Give the fuzzer a head start past the magic half the time.
        match kind {
            0 if bytes.len() >= 4 => bytes[..4].copy_from_slice(&[0xd4, 0xc3, 0xb2, 0xa1]),
            1 if bytes.len() >= 4 => bytes[..4].copy_from_slice(&[0x0a, 0x0d, 0x0d, 0x0a]),
            _ => {}
        }
        if let Ok(r) = Reader::from_bytes(bytes) {
            let _ = r.for_each(|_| {});
        }
    }
}

#[test]
fn a_capture_cut_mid_record_yields_its_complete_records_and_the_cut() {
    let full = pcap(
        false,
        false,
        1,
        &[(1, 0, b"abcdef"), (2, 0, b"xyz"), (3, 0, b"0123456789")],
    );
    let last = 24 + (16 + 6) + (16 + 3);
    let whole = collect(full.clone()).unwrap();
    for cut in last + 1..full.len() {
        let (v, c) = read_all(full[..cut].to_vec()).unwrap();
        assert_eq!(v, whole[..2], "cut at {cut}");
        let c = c.expect("the cut is reported");
        assert_eq!(c.offset, last as u64, "{c}");
    }
    // Cut at a record boundary: nothing is missing.
    assert_eq!(
        read_all(full[..last].to_vec()).unwrap(),
        (whole[..2].to_vec(), None)
    );
    let ng = pcapng(false, 1, None, &[(1, b"abcd"), (2, b"efgh")]);
    let last = ng.len() - 36;
    let whole = collect(ng.clone()).unwrap();
    for cut in last + 1..ng.len() {
        let (v, c) = read_all(ng[..cut].to_vec()).unwrap();
        assert_eq!(v, whole[..1], "cut at {cut}");
        assert_eq!(c.expect("the cut is reported").offset, last as u64);
    }
}

#[test]
fn a_damaged_record_before_the_end_is_still_an_error() {
    let mut b = pcap(
        false,
        false,
        1,
        &[(1, 0, b"abcdef"), (2, 0, b"xyz"), (3, 0, b"z")],
    );
    let second = 24 + 16 + 6;
    b[second + 8..second + 12].copy_from_slice(&0x7fff_ffffu32.to_le_bytes());
    let e = collect(b).unwrap_err();
    assert_eq!(e.offset, second as u64, "{e}");
    assert!(e.reason.contains("absurd"), "{e}");
}

#[test]
fn a_link_type_the_monitor_cannot_read_is_an_error_naming_it() {
    for recs in [&[][..], &[(1, 0, &b"ab"[..])][..]] {
        let e = collect(pcap(false, false, 147, recs)).unwrap_err();
        assert_eq!(e.offset, 20, "{e}");
        assert!(e.reason.contains("link type 147"), "{e}");
    }
    let ng = pcapng(false, 147, None, &[(1, b"abcd")]);
    let e = collect(ng.clone()).unwrap_err();
    assert_eq!(e.offset, (ng.len() - 36) as u64, "{e}");
    assert!(e.reason.contains("link type 147"), "{e}");
}

#[test]
fn a_negative_if_tsoffset_moves_timestamps_back() {
    for big in [false, true] {
        let off = |s: i64| {
            (
                14u16,
                if big {
                    s.to_be_bytes()
                } else {
                    s.to_le_bytes()
                }
                .to_vec(),
            )
        };
        // 20 s in the default microsecond units.
        let at = |s: i64| collect(pcapng_with(big, 1, &[off(s)], &[(20_000_000, b"a")]));
        assert_eq!(at(-10).unwrap()[0].0, 10_000_000_000);
        assert_eq!(at(5).unwrap()[0].0, 25_000_000_000);
        // Before 1970: the earliest instant there is, not the latest.
        assert_eq!(at(-30).unwrap()[0].0, 0);
    }
}

#[test]
fn a_timestamp_resolution_finer_than_a_u64_can_count_is_an_error() {
    // 10^-19 s still fits: 3 * 10^18 units are 0.3 s.
    let v = collect(pcapng(false, 1, Some(19), &[(3 * 10u64.pow(18), b"a")])).unwrap();
    assert_eq!(v[0].0, 300_000_000);
    let shb_len = 28;
    for (r, says) in [(20u8, "10^-20"), (127, "10^-127"), (0x80 | 64, "2^-64")] {
        let e = collect(pcapng(false, 1, Some(r), &[(1, b"a")])).unwrap_err();
        assert_eq!(e.offset, shb_len, "{e}");
        assert!(e.reason.contains(says), "{e}");
    }
}
