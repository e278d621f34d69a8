//! Records port reuse closed are kept by the collector only up to a bound, and each is
//! still in the snapshot and the JSON summary of the tick it closed: the program, run by
//! the kernel on hand-built frames (BPF_PROG_TEST_RUN), over many ticks of port reuse.

mod common;

use std::{collections::BTreeSet, net::IpAddr};

use aya::{
    programs::{SchedClassifier, TestRun, TestRunOptions},
    Ebpf,
};
use monitor::{
    collector::{Clock, Collector},
    kernel::load::load,
    output::json,
    table::KEEP_CLOSED as KEEP,
};
use monitor_common::{
    config::{PortSet, FLAG_SKB_TSTAMP},
    craft::TcpFrame,
    parse::SYN,
    stats,
};

fn ebpf() -> Ebpf {
    let cfg = "50000-59999"
        .parse::<PortSet>()
        .expect("ports")
        .to_config(FLAG_SKB_TSTAMP);
    let mut e = load(&cfg, 8192).expect("load the eBPF object");
    common::verify(&mut e, "tc_eth_in");
    e
}

/// One SYN with sequence number `isn` at time `ts` (`skb->tstamp`, offset 152 of the
/// 192-byte `__sk_buff`) on the one 4-tuple: each closes the record before it.
fn syn(e: &mut Ebpf, isn: u32, ts: u64) {
    let mut f = TcpFrame::new(
        IpAddr::from([10, 0, 0, 1]),
        40000,
        IpAddr::from([10, 0, 0, 2]),
        50001,
    )
    .flags(SYN);
    f.seq = isn;
    let frame = f.ethernet();
    let mut ctx = [0u8; 192];
    ctx[152..160].copy_from_slice(&ts.to_ne_bytes());
    let mut opts = TestRunOptions::new();
    opts.data_in = Some(&frame);
    opts.ctx_in = Some(&ctx);
    let p: &mut SchedClassifier = e.program_mut("tc_eth_in").unwrap().try_into().unwrap();
    p.test_run(opts).expect("BPF_PROG_TEST_RUN");
}

#[test]
fn closed_records_stay_bounded_and_each_is_shown_in_the_tick_it_closed() {
    if !common::privileged() {
        return;
    }
    let mut e = ebpf();
    let mut c = Collector::new(&mut e, Clock::identity(), Vec::new()).unwrap();
    // Fewer a tick than the CLOSED ring (1 MiB) holds: none lost.
    let per_tick = 1500u32;
    let ticks = (3 * KEEP as u32) / per_tick;
    let ts = |isn: u32| isn as u64 * 1000;
    let mut isn = 1;
    syn(&mut e, isn, ts(isn));
    let mut most = 0;
    for _ in 0..ticks {
        // The records this tick closes: those its SYNs replace.
        let closing: BTreeSet<u64> = (isn..isn + per_tick).map(ts).collect();
        for _ in 0..per_tick {
            isn += 1;
            syn(&mut e, isn, ts(isn));
        }
        let s = c.collect().unwrap();
        let shown: BTreeSet<u64> = s.records().iter().map(|f| f.state.first_seen_ns).collect();
        assert!(
            closing.is_subset(&shown),
            "a record closed this tick is not shown"
        );
        let said: BTreeSet<u64> = json::summary(&s)
            .flows
            .iter()
            .map(|f| f.first_seen_ns)
            .collect();
        assert!(
            closing.is_subset(&said),
            "a record closed this tick is not in the JSON"
        );
        let kept = s.records().len() - 1;
        most = most.max(kept);
        assert!(kept <= KEEP, "{kept} closed records kept");
        assert_eq!(
            s.counters.get(stats::CLOSED_LOST),
            0,
            "the ring never filled"
        );
        assert_eq!(
            kept as u64 + c.closed_dropped(),
            (isn - 1) as u64,
            "every closed record kept or counted dropped"
        );
        assert_eq!(
            s.evicted_flows, 0,
            "records no longer shown are not evictions"
        );
    }
    assert!(
        c.closed_dropped() > 0,
        "never past the bound ({most} at most)"
    );
}
