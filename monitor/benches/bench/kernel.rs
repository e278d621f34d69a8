//! Group 1, kernel cost per packet, by class, with BPF_PROG_TEST_RUN on the tc ingress program.
//!
//! A class whose packet can repeat (the same frame is the same class every time) runs with a
//! large `repeat`: the kernel times the loop and divides. A class that needs a different
//! frame each time (new data, a new flow's SYN, an eviction) runs each frame once; those
//! timings include the test harness's per-call overhead, measured as "not IP" run once minus
//! "not IP" repeated, and subtracted.

use std::net::IpAddr;

use aya::{
    programs::{SchedClassifier, TestRunOptions},
    Ebpf, TestRun,
};
use monitor::kernel::load::load_with_ring;
use monitor_common::{
    config::PortSet,
    craft::{ethernet_raw, TcpFrame},
    parse::{ACK, ETH_P_IP, SYN},
};
use serde_json::{json, Value};

use crate::stats::Figure;

pub struct Plan {
    pub runs: usize,
    pub repeat: u32,
    pub distinct: usize,
}

fn program(max_flows: u32) -> Ebpf {
    program_with(max_flows, 0)
}

/// The program with the evidence ring on at `snaplen` bytes (0: off, as by default); its
/// ring holds a run of distinct frames, drained after each run ([`drain`]).
fn program_with(max_flows: u32, snaplen: u32) -> Ebpf {
    let cfg = crate::DEFAULT_PORTS
        .parse::<PortSet>()
        .expect("ports")
        .to_config(0)
        .with_snaplen(snaplen);
    let mut e = load_with_ring(&cfg, max_flows, 64 << 20).expect("load the eBPF object (as root)");
    for name in ["tc_eth_in", "tc_calibrate", "tc_reference"] {
        let p: &mut SchedClassifier = e.program_mut(name).expect(name).try_into().expect("tc");
        p.load().expect("verifier");
    }
    e
}

/// Nanoseconds per run of `frame` through program `name`, averaged by the kernel over
/// `repeat` runs.
fn run_prog(e: &mut Ebpf, name: &str, frame: &[u8], repeat: u32) -> f64 {
    let p: &mut SchedClassifier = e.program_mut(name).expect(name).try_into().expect("tc");
    let mut o = TestRunOptions::new();
    o.data_in = Some(frame);
    o.repeat = repeat;
    p.test_run(o)
        .expect("BPF_PROG_TEST_RUN")
        .duration
        .as_nanos() as f64
}

/// The monitor's tc ingress program.
pub fn run(e: &mut Ebpf, frame: &[u8], repeat: u32) -> f64 {
    run_prog(e, "tc_eth_in", frame, repeat)
}

/// The harness's own cost per run: the do-nothing program on the same frame.
fn floor(e: &mut Ebpf, frame: &[u8], repeat: u32) -> f64 {
    run_prog(e, "tc_calibrate", frame, repeat)
}

fn ip(a: [u8; 4]) -> IpAddr {
    IpAddr::from(a)
}

fn client(n: u32) -> (IpAddr, u16) {
    (
        ip([10, (n >> 16) as u8, (n >> 8) as u8, n as u8]),
        40000 + (n % 20000) as u16,
    )
}

const SERVER: [u8; 4] = [10, 255, 0, 1];

/// A segment of synthetic flow `n` (client 10.x.y.z, server 10.255.0.1:50001).
pub fn seg(n: u32, c2s: bool, seq: u32, ack: u32, flags: u8, payload: usize) -> Vec<u8> {
    let (c, cp) = client(n);
    let (src, sp, dst, dp) = if c2s {
        (c, cp, ip(SERVER), 50001)
    } else {
        (ip(SERVER), 50001, c, cp)
    };
    let mut f = TcpFrame::new(src, sp, dst, dp)
        .flags(flags)
        .payload(&vec![0x17; payload]);
    f.seq = seq;
    f.ack = ack;
    f.ethernet()
}

/// A tracked flow: handshake done, sequence numbers where the next data goes.
fn establish(e: &mut Ebpf, n: u32) {
    run(e, &seg(n, true, 1000, 0, SYN, 0), 1);
    run(e, &seg(n, false, 5000, 1001, SYN | ACK, 0), 1);
    run(e, &seg(n, true, 1001, 5001, ACK, 0), 1);
}

pub fn bench(plan: &Plan) -> Value {
    let mut classes: Vec<(&str, Figure)> = Vec::new();
    let mut rows = |name: &'static str, f: &mut dyn FnMut() -> f64| {
        let runs = (0..plan.runs).map(|_| f()).collect();
        classes.push((name, Figure::of(runs)));
    };
    let arp = ethernet_raw(0x0806, &[0; 28]);
    let mut udp = vec![
        0x45, 0, 0, 28, 0, 1, 0, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
    ];
    udp.extend_from_slice(&[0x30, 0x39, 0xc3, 0x51, 0, 8, 0, 0]);
    let udp = ethernet_raw(ETH_P_IP, &udp);
    let unwatched = TcpFrame::new(ip([10, 0, 0, 1]), 40000, ip([10, 0, 0, 2]), 80)
        .payload(&[0; 100])
        .ethernet();

    // Per-call overhead of running a frame once, for the classes that must.
    let mut e = program(1 << 20);
    let harness: Vec<f64> = (0..plan.runs)
        .map(|_| floor(&mut e, &arp, plan.repeat))
        .collect();
    let overhead: Vec<f64> = (0..plan.runs)
        .map(|_| {
            let once: f64 = (0..plan.distinct)
                .map(|_| run(&mut e, &arp, 1))
                .sum::<f64>()
                / plan.distinct as f64;
            (once - run(&mut e, &arp, plan.repeat)).max(0.0)
        })
        .collect();
    let mut run_no = 0usize;
    let mut next = || {
        run_no += 1;
        overhead[(run_no - 1) % overhead.len()]
    };

    rows("not IP (ARP)", &mut || run(&mut e, &arp, plan.repeat));
    rows("not TCP (UDP)", &mut || run(&mut e, &udp, plan.repeat));
    rows("TCP on an unwatched port", &mut || {
        run(&mut e, &unwatched, plan.repeat)
    });
    // Data segments of one tracked flow, each advancing the sequence.
    establish(&mut e, 1);
    let mut seq = 1001u32;
    let data: Vec<Vec<u8>> = (0..plan.distinct)
        .map(|_| {
            let f = seg(1, true, seq, 5001, ACK, 100);
            seq = seq.wrapping_add(100);
            f
        })
        .collect();
    let mut di = 0usize;
    rows("data segment of a tracked flow", &mut || {
        let o = next();
        let t: f64 = data
            .iter()
            .map(|f| {
                di += 1;
                // After the first pass the same frames are old data: re-establish a fresh
                // flow per run so every frame is new again.
                run(&mut e, f, 1)
            })
            .sum::<f64>();
        establish_fresh(&mut e, di as u32);
        (t / data.len() as f64 - o).max(0.0)
    });
    // The reference per-flow counter on a packet of a flow it knows (its map insert
    // before the runs).
    let tracked = seg(1, true, 1001, 5001, ACK, 100);
    run_prog(&mut e, "tc_reference", &tracked, 1);
    rows(
        "reference: a packet of a known flow (per-flow counter)",
        &mut || run_prog(&mut e, "tc_reference", &tracked, plan.repeat),
    );
    // The same pure ACK again: a duplicate ACK every time after the first.
    establish(&mut e, 2);
    let dup = seg(2, false, 5001, 1001, ACK, 0);
    run(&mut e, &dup, 1);
    rows("duplicate ACK", &mut || run(&mut e, &dup, plan.repeat));
    // The same data segment again: a retransmission every time after the first.
    establish(&mut e, 3);
    let retx = seg(3, true, 1001, 5001, ACK, 100);
    run(&mut e, &retx, 1);
    rows("retransmission", &mut || run(&mut e, &retx, plan.repeat));
    // SYNs of new flows: a map insert each.
    let mut base = 1000u32;
    rows("SYN of a new flow (map insert)", &mut || {
        let o = next();
        let t: f64 = (0..plan.distinct as u32)
            .map(|i| run(&mut e, &seg(base + i, true, 1000, 0, SYN, 0), 1))
            .sum();
        base += plan.distinct as u32;
        (t / plan.distinct as f64 - o).max(0.0)
    });
    drop(e);
    // The same data segments with the evidence ring on (`--evidence`, 256 bytes of each).
    let mut ev = program_with(1 << 20, 256);
    let mut ring =
        aya::maps::RingBuf::try_from(ev.take_map("EVIDENCE").expect("EVIDENCE")).expect("ring");
    establish(&mut ev, 1);
    let mut di = 0usize;
    rows("data segment of a tracked flow, --evidence on", &mut || {
        let o = next();
        let t: f64 = data
            .iter()
            .map(|f| {
                di += 1;
                run(&mut ev, f, 1)
            })
            .sum::<f64>();
        // Read away, so that the next run's entries find room as they would live.
        while ring.next().is_some() {}
        establish_fresh(&mut ev, di as u32);
        while ring.next().is_some() {}
        (t / data.len() as f64 - o).max(0.0)
    });
    drop(ring);
    drop(ev);
    // A full map: every new flow evicts the least recently used.
    let cap = 1024u32;
    let mut full = program(cap);
    for i in 0..cap * 2 {
        run(&mut full, &seg(i, true, 1000, 0, SYN, 0), 1);
    }
    let mut base = cap * 4;
    rows("new flow into a full map (eviction)", &mut || {
        let o = next();
        let t: f64 = (0..plan.distinct as u32)
            .map(|i| run(&mut full, &seg(base + i, true, 1000, 0, SYN, 0), 1))
            .sum();
        base += plan.distinct as u32;
        (t / plan.distinct as f64 - o).max(0.0)
    });
    json!({
        "budget_ns_10gbe_64b": 67.2,
        "overhead_ns": Figure::of(overhead).json(),
        "harness_floor_ns": Figure::of(harness).json(),
        "repeat": plan.repeat,
        "distinct_frames": plan.distinct,
        "classes": classes.iter().map(|(n, f)| json!({ "class": n, "ns_per_packet": f.json() })).collect::<Vec<_>>(),
    })
}

/// A new flow with the same client address space as `n`, so data frames built for flow 1
/// are new data for it: flow 1 is reset by a SYN with a new ISN (port reuse).
fn establish_fresh(e: &mut Ebpf, salt: u32) {
    run(
        e,
        &seg(
            1,
            true,
            1000u32.wrapping_add(salt.wrapping_mul(7919)),
            0,
            SYN,
            0,
        ),
        1,
    );
    run(e, &seg(1, true, 1000, 0, SYN, 0), 1);
    establish(e, 1);
}
