use monitor_common::flow::{FlowKey, FlowState};
use pcap_parser::{
    pcapng::{parse_block_le, Block},
    OptionCode,
};

use super::*;
use crate::{capture::Link, evidence::EvidenceSettings, model::FlowRecord};

fn comment_of(options: &[pcap_parser::PcapNGOption<'_>]) -> Option<String> {
    options
        .iter()
        .find(|o| o.code == OptionCode::Comment)
        .map(|o| String::from_utf8_lossy(&o.value[..o.len as usize]).into_owned())
}

/// A flow of five frames in a file limited to three: the file holds the first three, its
/// header comment says so, and so does the count of frames left out.
#[test]
fn a_file_holds_at_most_its_limit_of_frames_and_says_so() {
    let dir = tempfile::tempdir().expect("tempdir");
    let flow = FlowId {
        key: FlowKey::default(),
        first_seen_ns: 1_000,
    };
    let path = dir.path().join("1-reset-a_1-b_2.pcapng");
    let planned = PlannedCapture {
        id: 1,
        kind: "reset",
        severity: "critical",
        flow,
        client: "10.0.0.1:1".into(),
        server: "10.0.0.2:2".into(),
        path: path.clone(),
        summary: "a reset".into(),
        media: Some("media rejected: reset".into()),
        raised_ns: 2_000,
        cleared_ns: None,
        written: false,
    };
    let mut state = FlowState {
        first_seen_ns: 1_000,
        ..FlowState::default()
    };
    (state.dir[0].packets, state.dir[1].packets) = (3, 2);
    state.key = flow.key;
    let snap = Snapshot::new(vec![FlowRecord::of(&state)], &[], Default::default(), 9_000);
    let settings = EvidenceSettings {
        dir: dir.path().to_path_buf(),
        max_bytes: None,
        snaplen: 64,
        max_file_packets: 3,
    };
    let mut files =
        CaptureFiles::create(settings, vec![planned], Some(&snap), "x.pcap").expect("create");
    let frame = [0u8; 100];
    for i in 0..5u64 {
        let rec = Record {
            ts_ns: 1_000 + i,
            linktype: 1,
            link: Link::Ethernet,
            data: &frame,
            orig_len: 1500,
        };
        files.frame(&flow, &rec, (i == 0).then_some("SYN"), i == 1);
    }
    assert_eq!(files.targets[0].cut, 2);
    assert_eq!(files.finish(&[]), Ok(vec![1]));
    let bytes = std::fs::read(&path).expect("written");
    let mut rest = &bytes[..];
    let (mut header, mut packets) = (None, Vec::new());
    while !rest.is_empty() {
        let (r, block) = parse_block_le(rest).expect("a whole block");
        match block {
            Block::SectionHeader(b) => header = comment_of(&b.options),
            Block::EnhancedPacket(b) => packets.push((b.caplen, b.origlen, comment_of(&b.options))),
            _ => {}
        }
        rest = r;
    }
    let header = header.expect("a header comment");
    assert!(
        header.contains("the first 3 of the flow's 5 packets (the per-file limit)"),
        "{header}"
    );
    assert!(
        header.contains("a reset") && header.contains("x.pcap"),
        "{header}"
    );
    assert_eq!(
        packets,
        vec![
            (64, 1500, Some("SYN".to_string())),
            (64, 1500, Some("media rejected: reset".to_string())),
            (64, 1500, None)
        ]
    );
    // Nothing else in the directory: no temporary file left.
    assert_eq!(std::fs::read_dir(dir.path()).expect("dir").count(), 1);
}
