//! The eBPF program's payload samples and evidence ring, run by the kernel on hand-built
//! frames (BPF_PROG_TEST_RUN) at tc and XDP: which segments are sampled, with what, which
//! packets the evidence ring gets, and a full ring counted.

mod common;

use std::net::IpAddr;

use aya::{
    programs::{SchedClassifier, TestRun, TestRunOptions, Xdp},
    Ebpf,
};
use monitor::{
    collector::{Clock, Collector},
    kernel::load::{load, load_with_ring},
};
use monitor_common::{
    config::{PortSet, FLAG_SKB_TSTAMP},
    craft::TcpFrame,
    evidence::{EVIDENCE_BYTES, LINK_ETHERNET},
    flow::{FlowKey, C2S, S2C},
    parse::{ACK, PSH, SYN},
    sample::{Sample, SAMPLE_BYTES},
    stats,
};

fn ebpf(samples: u32, max_flows: u32) -> Ebpf {
    let cfg = "50001"
        .parse::<PortSet>()
        .expect("ports")
        .to_config(FLAG_SKB_TSTAMP)
        .with_samples(samples);
    let mut e = load(&cfg, max_flows).expect("load the eBPF object");
    common::verify(&mut e, "tc_eth_in");
    common::verify(&mut e, "xdp_eth");
    e
}

/// Runs one frame through `prog`, at `ts` (tc: as `skb->tstamp`; XDP has no such field and
/// reads the kernel clock).
fn run(e: &mut Ebpf, prog: &str, frame: &[u8], ts: u64) {
    // __sk_buff is 192 bytes; tstamp sits at offset 152 (UAPI layout).
    let mut ctx = [0u8; 192];
    ctx[152..160].copy_from_slice(&ts.to_ne_bytes());
    let mut opts = TestRunOptions::new();
    opts.data_in = Some(frame);
    let r = if prog == "xdp_eth" {
        let p: &mut Xdp = e.program_mut(prog).unwrap().try_into().unwrap();
        p.test_run(opts)
    } else {
        opts.ctx_in = Some(&ctx);
        let p: &mut SchedClassifier = e.program_mut(prog).unwrap().try_into().unwrap();
        p.test_run(opts)
    };
    r.unwrap_or_else(|err| panic!("BPF_PROG_TEST_RUN {prog}: {err:?}"));
}

fn v4(last: u8) -> IpAddr {
    IpAddr::from([10, 0, 0, last])
}

/// A segment of 10.0.0.1:`port` -> 10.0.0.2:50001, client to server when `fwd`.
fn seg(port: u16, seq: u32, flags: u8, payload: &[u8], fwd: bool) -> Vec<u8> {
    let mut f = if fwd {
        TcpFrame::new(v4(1), port, v4(2), 50001)
    } else {
        TcpFrame::new(v4(2), 50001, v4(1), port)
    }
    .flags(flags)
    .payload(payload);
    f.seq = seq;
    f.ack = 1;
    f.ethernet()
}

/// `len` bytes that differ from one position to the next, from `start`.
fn pattern(start: u8, len: usize) -> Vec<u8> {
    (0..len).map(|i| start.wrapping_add(i as u8)).collect()
}

/// What a sample should say: direction, sequence number, whole payload length, the bytes.
type Expected = (u8, u32, u32, Vec<u8>);

fn seen(samples: &[Sample]) -> Vec<Expected> {
    samples
        .iter()
        .map(|s| (s.dir, s.seq, s.payload_len, s.captured().to_vec()))
        .collect()
}

#[test]
fn the_first_payload_segments_of_each_direction_are_sampled() {
    if !common::privileged() {
        return;
    }
    let short = pattern(1, 50);
    let long = pattern(7, 1000);
    let reply = pattern(100, 83);
    for prog in ["tc_eth_in", "xdp_eth"] {
        for n in [0u32, 1, 4] {
            let mut e = ebpf(n, 1024);
            let mut c = Collector::new(&mut e, Clock::identity(), Vec::new()).unwrap();
            // (frame, time); sequence numbers are those of the segments' first bytes.
            let frames = [
                seg(40000, 100, SYN, b"", true),
                seg(40000, 500, SYN | ACK, b"", false),
                seg(40000, 101, ACK, b"", true),
                seg(40000, 101, ACK | PSH, &short, true),
                seg(40000, 501, ACK, b"", false),
                seg(40000, 501, ACK | PSH, &reply, false),
                seg(40000, 151, ACK | PSH, &long, true),
                seg(40000, 1151, ACK | PSH, b"abc", true),
                seg(40000, 1154, ACK | PSH, b"defg", true),
                // The fifth payload segment from the client: past any count tried here.
                seg(40000, 1158, ACK | PSH, b"hij", true),
            ];
            for (i, f) in frames.iter().enumerate() {
                run(&mut e, prog, f, 1_000 + i as u64);
            }
            let all: Vec<Expected> = vec![
                (C2S as u8, 101, 50, short.clone()),
                (S2C as u8, 501, 83, reply.clone()),
                (C2S as u8, 151, 1000, long[..SAMPLE_BYTES].to_vec()),
                (C2S as u8, 1151, 3, b"abc".to_vec()),
                (C2S as u8, 1154, 4, b"defg".to_vec()),
            ];
            // The first `n` of each direction, in the order the segments came.
            let (mut per_dir, mut want) = ([0u32; 2], Vec::new());
            for x in &all {
                if per_dir[x.0 as usize] < n {
                    per_dir[x.0 as usize] += 1;
                    want.push(x.clone());
                }
            }
            let what = format!("{prog}, --media-samples {n}");
            let samples = c.drain_samples();
            assert_eq!(seen(&samples), want, "{what}");
            let snap = c.collect().unwrap();
            assert_eq!(snap.records().len(), 1, "{what}");
            let f = snap.records()[0].clone();
            assert_eq!(
                [f.state.dir[C2S].sampled, f.state.dir[S2C].sampled],
                [per_dir[0] as u8, per_dir[1] as u8],
                "{what}"
            );
            for s in &samples {
                assert_eq!(s.key, f.key, "{what}: the flow's key");
                assert!(
                    s.bytes[s.len as usize..].iter().all(|&b| b == 0),
                    "{what}: nothing past the payload"
                );
            }
            if prog == "tc_eth_in" {
                // The capture times handed in: frames 3, 5, 6, 7 and 8 carried payload.
                let times: Vec<u64> = samples.iter().map(|s| s.ts_ns).collect();
                assert_eq!(times, [1_003, 1_005, 1_006, 1_007, 1_008][..want.len()]);
            } else {
                assert!(samples.windows(2).all(|w| w[0].ts_ns <= w[1].ts_ns));
            }
            assert_eq!(snap.counters.get(stats::SAMPLES_LOST), 0, "{what}");
        }
    }
}

/// More samples than the ring holds between two reads: every one taken is either handed
/// over or counted lost, and the count is not zero.
#[test]
fn samples_a_full_ring_cannot_take_are_counted() {
    if !common::privileged() {
        return;
    }
    let per = 16u32;
    let mut e = ebpf(per, 4096);
    let mut c = Collector::new(&mut e, Clock::identity(), Vec::new()).unwrap();
    // The ring is 4 MiB; an entry is the sample and its 8-byte header.
    let room = (4 << 20) / (std::mem::size_of::<Sample>() + 8) as u32;
    let flows = room / per + 50;
    let payload = pattern(0, 100);
    for port in 0..flows as u16 {
        for k in 0..per {
            let f = seg(20000 + port, 1 + k * 100, ACK | PSH, &payload, true);
            run(&mut e, "tc_eth_in", &f, 1);
        }
    }
    let kept = c.drain_samples();
    let snap = c.collect().unwrap();
    let lost = snap.counters.get(stats::SAMPLES_LOST);
    let taken: u64 = snap
        .records()
        .iter()
        .map(|f| f.state.dir[C2S].sampled as u64)
        .sum();
    assert_eq!(
        taken,
        (flows * per) as u64,
        "every segment counted as sampled"
    );
    assert!(lost > 0, "the ring never filled ({} kept)", kept.len());
    assert_eq!(kept.len() as u64 + lost, taken, "kept or counted lost");
    assert_eq!(
        snap.counters.get(stats::EVENTS_LOST),
        0,
        "other rings unaffected"
    );
    // Once read, the ring takes samples again.
    let mut f = TcpFrame::new(v4(9), 30000, v4(2), 50001)
        .flags(ACK)
        .payload(b"again");
    f.seq = 7;
    run(&mut e, "tc_eth_in", &f.ethernet(), 2);
    let again = c.drain_samples();
    assert_eq!(seen(&again), vec![(C2S as u8, 7, 5, b"again".to_vec())]);
    assert_ne!(again[0].key, FlowKey::default());
}

/// With `--evidence`, every watched packet (and no other) reaches the evidence ring with its
/// first `snaplen` bytes, its length on the wire, its flow and its verdict; without it the
/// ring stays empty; a full ring counts what it could not take.
#[test]
fn the_evidence_ring_holds_each_watched_packet_as_asked() {
    if !common::privileged() {
        return;
    }
    let body = pattern(3, 600);
    let frames = [
        seg(40000, 100, SYN, b"", true),
        seg(40000, 500, SYN | ACK, b"", false),
        seg(40000, 101, ACK | PSH, &body, true),
        // The same segment again: a retransmission.
        seg(40000, 101, ACK | PSH, &body, true),
    ];
    let unwatched = TcpFrame::new(v4(1), 40001, v4(2), 40002).ethernet();
    for prog in ["tc_eth_in", "xdp_eth"] {
        for snaplen in [0u32, 64, 1000] {
            let cfg = "50001"
                .parse::<PortSet>()
                .expect("ports")
                .to_config(FLAG_SKB_TSTAMP)
                .with_snaplen(snaplen);
            let mut e = load_with_ring(&cfg, 1024, 1 << 20).expect("load");
            common::verify(&mut e, prog);
            let mut c = Collector::new(&mut e, Clock::identity(), Vec::new()).unwrap();
            for (i, f) in frames.iter().enumerate() {
                run(&mut e, prog, f, 1_000 + i as u64);
            }
            run(&mut e, prog, &unwatched, 2_000);
            let got = c.drain_evidence();
            let what = format!("{prog}, snaplen {snaplen}");
            if snaplen == 0 {
                assert!(got.is_empty(), "{what}: evidence off, nothing handed over");
                continue;
            }
            let kept = (snaplen as usize).min(EVIDENCE_BYTES);
            assert_eq!(got.len(), frames.len(), "{what}: the watched packets only");
            for (g, f) in got.iter().zip(&frames) {
                assert_eq!(g.captured(), &f[..kept.min(f.len())], "{what}");
                assert_eq!(g.orig_len as usize, f.len(), "{what}");
                assert_eq!(g.link, LINK_ETHERNET, "{what}");
                assert_ne!(g.first_seen_ns, 0, "{what}");
            }
            let retx = monitor_common::analysis::flag::RETRANSMISSION;
            assert_eq!(got[2].outcome.flags & retx, 0, "{what}");
            assert_ne!(
                got[3].outcome.flags & retx,
                0,
                "{what}: the retransmission said"
            );
            if prog == "tc_eth_in" {
                assert_eq!(got[1].ts_ns, 1_001, "{what}: the packet's time");
            }
        }
    }
    // A ring of one page: the rest is counted lost, the flows counted as ever.
    let cfg = "50001"
        .parse::<PortSet>()
        .expect("ports")
        .to_config(FLAG_SKB_TSTAMP)
        .with_snaplen(256);
    let mut e = load_with_ring(&cfg, 1024, 4096).expect("load");
    common::verify(&mut e, "tc_eth_in");
    let mut c = Collector::new(&mut e, Clock::identity(), Vec::new()).unwrap();
    let n = 40u32;
    for k in 0..n {
        let f = seg(40000, 101 + k * 600, ACK | PSH, &body, true);
        run(&mut e, "tc_eth_in", &f, 1_000 + k as u64);
    }
    let kept = c.drain_evidence().len() as u64;
    let snap = c.collect().unwrap();
    let lost = snap.counters.get(stats::EVIDENCE_LOST);
    assert!(kept > 0 && lost > 0, "{kept} kept, {lost} lost");
    assert_eq!(kept + lost, n as u64, "kept or counted lost");
    assert_eq!(snap.records()[0].state.dir[C2S].packets, n as u64);
}
