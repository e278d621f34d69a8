//! Both directions of many flows counted on two CPUs at once: one thread pinned to each CPU
//! runs one direction's segments through the same loaded program (BPF_PROG_TEST_RUN runs
//! on the calling CPU), so every flow's record is updated from two CPUs concurrently. The
//! counts must come out exact and each direction's analysis clean (in order, nothing
//! resent, no ACK of unseen data, no duplicate ACK): what the flow's lock (or whatever
//! replaces it) must guarantee. Each segment acknowledges the peer's data up to the round
//! before (a barrier between rounds), so an update reads the other direction's state
//! while the other CPU writes it.

mod common;

use std::net::IpAddr;

use aya::programs::{SchedClassifier, TestRun, TestRunOptions};
use monitor::{
    collector::{Clock, Collector},
    kernel::load::load,
};
use monitor_common::{
    config::PortSet,
    craft::TcpFrame,
    flow::{C2S, S2C},
    parse::{ACK, PSH, SYN},
};

const FLOWS: u16 = 64;
const ROUNDS: u32 = 1500;
const PAYLOAD: usize = 100;
const CISN: u32 = 1_000;
const SISN: u32 = 900_000;

fn v4(last: u8) -> IpAddr {
    IpAddr::from([10, 0, 0, last])
}

fn frame(port: u16, c2s: bool, seq: u32, ack: u32, flags: u8, payload: usize) -> Vec<u8> {
    let mut f = if c2s {
        TcpFrame::new(v4(1), port, v4(2), 50001)
    } else {
        TcpFrame::new(v4(2), 50001, v4(1), port)
    }
    .flags(flags)
    .payload(&vec![0x5a; payload]);
    f.seq = seq;
    f.ack = ack;
    f.ethernet()
}

fn run(p: &SchedClassifier, f: &[u8]) {
    let mut o = TestRunOptions::new();
    o.data_in = Some(f);
    p.test_run(o).expect("BPF_PROG_TEST_RUN");
}

/// Pins the calling thread to `cpu`.
fn pin(cpu: usize) {
    // SAFETY: a zeroed cpu_set_t is the empty set; CPU_SET and sched_setaffinity are given
    // a valid set of the size they expect, for the calling thread (pid 0).
    let ok = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) == 0
    };
    assert!(
        ok,
        "cannot pin a thread to CPU {cpu}: the test needs two CPUs"
    );
}

#[test]
fn both_directions_on_two_cpus_at_once_count_exactly() {
    if !common::privileged() {
        return;
    }
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    assert!(
        cpus >= 2,
        "this test needs two CPUs, the machine has {cpus}"
    );
    let cfg = "50001".parse::<PortSet>().expect("ports").to_config(0);
    let mut e = load(&cfg, 4096).expect("load the eBPF object");
    common::verify(&mut e, "tc_eth_in");
    let mut c = Collector::new(&mut e, Clock::identity(), Vec::new()).expect("collector");
    let p: &SchedClassifier = e
        .program("tc_eth_in")
        .expect("tc_eth_in")
        .try_into()
        .expect("tc");
    let ports: Vec<u16> = (0..FLOWS).map(|i| 40_000 + i).collect();
    for &port in &ports {
        run(p, &frame(port, true, CISN, 0, SYN, 0));
        run(p, &frame(port, false, SISN, CISN + 1, SYN | ACK, 0));
        run(p, &frame(port, true, CISN + 1, SISN + 1, ACK, 0));
    }
    // Each direction's data, new every round, acknowledging the peer's data of the rounds
    // before (the barrier: both sides finished round r - 1 before either sends round r).
    let barrier = std::sync::Barrier::new(2);
    let side = |c2s: bool| {
        let (ports, barrier) = (&ports, &barrier);
        move || {
            pin(if c2s { 0 } else { 1 });
            let (isn, peer) = if c2s { (CISN, SISN) } else { (SISN, CISN) };
            for r in 0..ROUNDS {
                let acked = peer + 1 + r * PAYLOAD as u32;
                for &port in ports {
                    let seq = isn + 1 + r * PAYLOAD as u32;
                    run(p, &frame(port, c2s, seq, acked, ACK | PSH, PAYLOAD));
                }
                barrier.wait();
            }
        }
    };
    std::thread::scope(|s| {
        s.spawn(side(true));
        s.spawn(side(false));
    });
    let states = c.states().expect("read the flow map");
    assert_eq!(states.len(), FLOWS as usize, "one record per flow");
    let data_len = frame(40_000, true, 0, 0, ACK | PSH, PAYLOAD).len() as u64 - 14;
    let bare_len = frame(40_000, true, 0, 0, ACK, 0).len() as u64 - 14;
    let rounds = u64::from(ROUNDS);
    for st in &states {
        let (cs, sc) = (&st.dir[C2S], &st.dir[S2C]);
        let who = format!("flow of port {}", st.key.port_a.min(st.key.port_b));
        // C2S: SYN, ACK, the rounds; S2C: SYN/ACK, the rounds.
        assert_eq!((cs.packets, sc.packets), (2 + rounds, 1 + rounds), "{who}");
        assert_eq!(
            cs.bytes,
            2 * bare_len + rounds * data_len,
            "{who}: c2s bytes"
        );
        assert_eq!(sc.bytes, bare_len + rounds * data_len, "{who}: s2c bytes");
        for (d, name) in [(cs, "c2s"), (sc, "s2c")] {
            assert_eq!(d.data_segments, rounds, "{who} {name}");
            assert_eq!(d.payload_bytes, rounds * PAYLOAD as u64, "{who} {name}");
            assert_eq!(
                (
                    d.anomalies.retransmits,
                    d.anomalies.out_of_order,
                    d.anomalies.lost_segments,
                    d.anomalies.dup_acks,
                    d.anomalies.acked_unseen
                ),
                (0, 0, 0, 0, 0),
                "{who} {name}: each side's data in order, nothing resent, every ACK of seen data"
            );
        }
        // Relative to each side's ISN, as Wireshark counts.
        let next = 1 + ROUNDS * PAYLOAD as u32;
        let (c_next, s_next) = (st.tcp.dir[C2S].nextseq, st.tcp.dir[S2C].nextseq);
        assert_eq!(
            (c_next, s_next),
            (next, next),
            "{who}: next sequence numbers"
        );
    }
}
