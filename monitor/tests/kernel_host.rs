//! Kernel equals host: every capture's frames go through the loaded eBPF program with
//! BPF_PROG_TEST_RUN (each frame's capture time handed to the program as `skb->tstamp`) and
//! through the host engine `monitor replay` uses; the flow records must be identical, field
//! for field, analysis state included, and so must the payload samples each side took and,
//! with the evidence ring on, each packet's entry: its bytes, times and the verdict an
//! evidence capture would comment it with.

mod common;

use std::path::PathBuf;

use aya::programs::{SchedClassifier, TestRun, TestRunOptions};
use monitor::{
    capture::{Link, Reader, Record},
    collector::{Clock, Collector},
    evidence::verdict::{comment, PacketFacts},
    host::HostFlows,
    kernel::load::load,
};
use monitor_common::{
    config::{PortSet, FLAG_SKB_TSTAMP},
    evidence::{EvidencePacket, EVIDENCE_BYTES},
    flow::FlowKey,
    parse::{parse_ethernet, Packet},
    sample::MAX_SAMPLES,
};

/// What an evidence capture holds of one packet: time, bytes kept, length on the wire, the
/// flow's first time, and the verdict it is commented with.
type Entry = (u64, Vec<u8>, u32, u64, Option<String>);

fn kernel_entry(e: &EvidencePacket) -> Entry {
    let rec = Record {
        ts_ns: e.ts_ns,
        linktype: 1,
        link: Link::Ethernet,
        data: e.captured(),
        orig_len: e.orig_len,
    };
    let mut pkt = Packet::default();
    let said = match rec.parse(&mut pkt) {
        Ok(()) => comment(&PacketFacts::recorded(e, &pkt)),
        Err(_) => Some("unparsed".into()),
    };
    (
        e.ts_ns,
        e.captured().to_vec(),
        e.orig_len,
        e.first_seen_ns,
        said,
    )
}

fn pcaps() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../testdata/pcaps"))
}

/// The frame as the tc program sees it: with an Ethernet header. Captures of other link
/// types get a synthetic one carrying the same network-layer bytes.
fn as_ethernet(link: &Link, data: &[u8]) -> Option<Vec<u8>> {
    match *link {
        Link::Ethernet => Some(data.to_vec()),
        Link::L3 { offset, ethertype } => {
            let l3 = data.get(offset..)?;
            let mut f = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1];
            f.extend_from_slice(&ethertype.to_be_bytes());
            f.extend_from_slice(l3);
            Some(f)
        }
    }
}

/// The `name: value` pairs that differ between two Debug renderings of the same struct.
fn field_diff(a: &str, b: &str) -> String {
    let split = |s: &str| -> Vec<String> {
        s.split([',', '{', '}'])
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty())
            .collect()
    };
    split(a)
        .iter()
        .zip(split(b))
        .enumerate()
        .filter(|(_, (x, y))| *x != y)
        .map(|(i, (x, y))| format!("  #{i}: {x} | {y}"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn every_capture_gives_identical_records_in_kernel_and_host() {
    if !common::privileged() {
        return;
    }
    let mut names: Vec<_> = std::fs::read_dir(pcaps())
        .expect("testdata/pcaps")
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "pcap" || x == "pcapng"))
        .collect();
    names.sort();
    let all = PortSet::all();
    let mut compared = 0;
    let mut samples = 0;
    let (mut entries, mut said) = (0, 0);
    for path in &names {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        // The most samples a run may take, so that the most bytes are compared.
        let cfg = all
            .to_config(FLAG_SKB_TSTAMP)
            .with_samples(MAX_SAMPLES)
            .with_snaplen(EVIDENCE_BYTES as u32);
        let mut ebpf = load(&cfg, 65_536).expect("load");
        {
            let p: &mut SchedClassifier =
                ebpf.program_mut("tc_eth_in").unwrap().try_into().unwrap();
            p.load().expect("verifier accepts tc_eth");
        }
        let mut collector = Collector::new(&mut ebpf, Clock::identity(), Vec::new()).unwrap();
        let mut engine = HostFlows::new(&all).with_samples(MAX_SAMPLES);
        let mut pkt = Packet::default();
        let reader = Reader::open(path).unwrap_or_else(|e| panic!("{name}: {e}"));
        let mut ctx = [0u8; 192];
        let (mut kernel_entries, mut host_entries) = (Vec::new(), Vec::new());
        reader
            .for_each(|frame| {
                let Some(eth) = as_ethernet(&frame.link, frame.data) else {
                    return;
                };
                // Timestamps must be nonzero for the program to prefer them (0 = no stamp).
                let ts = frame.ts_ns.max(1);
                ctx[152..160].copy_from_slice(&ts.to_ne_bytes());
                let mut opts = TestRunOptions::new();
                opts.data_in = Some(&eth);
                opts.ctx_in = Some(&ctx);
                let prog: &mut SchedClassifier =
                    ebpf.program_mut("tc_eth_in").unwrap().try_into().unwrap();
                // The skb harness refuses some runt frames: the host skips them too.
                if prog.test_run(opts).is_err() {
                    return;
                }
                match parse_ethernet(&eth[..], &mut pkt) {
                    Ok(()) => {
                        engine.packet(&pkt, &eth, 1, ts);
                        let (key, _) = FlowKey::of(&pkt);
                        if let Some(st) = engine.flow(&key) {
                            let kept = eth.len().min(EVIDENCE_BYTES);
                            let said = comment(&PacketFacts::of(st, &pkt));
                            let first = st.first_seen_ns;
                            host_entries.push((
                                ts,
                                eth[..kept].to_vec(),
                                eth.len() as u32,
                                first,
                                said,
                            ));
                        }
                    }
                    Err(skip) => engine.skipped(skip),
                }
                // Drained as it fills: a ring holds some 47,000 entries.
                if host_entries.len() % 4096 == 0 {
                    kernel_entries.extend(collector.drain_evidence().iter().map(kernel_entry));
                }
            })
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        kernel_entries.extend(collector.drain_evidence().iter().map(kernel_entry));
        assert_eq!(
            kernel_entries.len(),
            host_entries.len(),
            "{name}: evidence ring entries"
        );
        for (i, (k, h)) in kernel_entries.iter().zip(&host_entries).enumerate() {
            assert_eq!(k, h, "{name}: evidence entry {i} (kernel | host)");
        }
        entries += host_entries.len();
        said += host_entries.iter().filter(|e| e.4.is_some()).count();
        let kernel_samples = collector.drain_samples();
        let host_samples = engine.take_samples();
        assert_eq!(
            kernel_samples.len(),
            host_samples.len(),
            "{name}: number of samples"
        );
        for (i, (k, h)) in kernel_samples.iter().zip(&host_samples).enumerate() {
            if k != h {
                panic!(
                    "{name}: sample {i} differs (kernel | host):\n{}",
                    field_diff(&format!("{k:?}"), &format!("{h:?}"))
                );
            }
        }
        samples += host_samples.len();
        // The full records of the live flows, sequence analysis included, field for field.
        let mut host_states = engine.states();
        host_states.sort_by_key(|s| s.key);
        let kernel_states = collector.states().unwrap();
        assert_eq!(
            kernel_states.len(),
            host_states.len(),
            "{name}: number of live flows"
        );
        for (k, h) in kernel_states.iter().zip(&host_states) {
            if k != h {
                panic!(
                    "{name}: full record of {:?} differs (kernel | host):\n{}",
                    h.key,
                    field_diff(&format!("{k:?}"), &format!("{h:?}"))
                );
            }
        }
        // And what the monitor keeps of every record, the closed ones included.
        let kernel = collector.collect().unwrap();
        let host = engine.snapshot();
        assert_eq!(
            kernel.records().len(),
            host.records().len(),
            "{name}: number of records"
        );
        for (k, h) in kernel.records().iter().zip(host.records().iter()) {
            assert_eq!(k.key, h.key, "{name}: record order");
            if k.state != h.state {
                panic!(
                    "{name}: record of {} -> {} differs (kernel | host):\n{}",
                    h.client(),
                    h.server(),
                    field_diff(&format!("{:?}", k.state), &format!("{:?}", h.state))
                );
            }
        }
        assert_eq!(kernel.counters, host.counters, "{name}: global counters");
        compared += 1;
    }
    assert!(compared >= 29, "only {compared} captures compared");
    // The captures carry payload: samples were compared, not two empty lists.
    assert!(samples >= 80, "only {samples} samples compared");
    // Evidence entries and verdicts were compared, not two empty lists.
    assert!(
        entries >= 300 && said >= 100,
        "{entries} entries, {said} with a verdict"
    );
}
