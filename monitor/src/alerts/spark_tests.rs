//! Sparklines are kept for the flow a person looks at and for the worst flow of each active
//! alert, and for no other flow.

use monitor_common::flow::S2C;

use super::tests::{data, healthy_flow, Sim};
use super::*;
use crate::model::FlowId;

const S: u64 = 1_000_000_000;

#[test]
fn the_looked_at_flows_sparkline_follows_its_throughput() {
    {
        let mut sim = Sim::new(AlertConfig::default());
        healthy_flow(&mut sim, [10, 0, 0, 1], 40000);
        healthy_flow(&mut sim, [10, 0, 0, 2], 40000);
        let (busy, quiet) = (FlowId::of(&sim.flows[0]), FlowId::of(&sim.flows[1]));
        sim.engine.look_at(Some(busy));
        let ticks = SPARK_POINTS as u64 + 20;
        for t in 0..ticks {
            let segs = (t % 7 + 1) * 10;
            sim.step(|fl, now| data(&mut fl[0], S2C, segs, 0, now));
            let points = sim.engine.spark(&busy, &sim.table.read());
            assert_eq!(points.len() as u64, t.min(SPARK_POINTS as u64), "tick {t}");
            if t > 0 {
                let last = points.last().expect("a point a tick");
                assert_eq!(last.bytes_per_s[S2C], (segs * 1000) as f32, "tick {t}");
            }
        }
        // The quiet flow was not looked at: only its window's points, none kept.
        assert_eq!(sim.engine.sparklines(), 1);
        assert_eq!(
            sim.engine.spark(&quiet, &sim.table.read()).len(),
            10,
            "the window's points"
        );
        // Looked at from now (idle, its window paused): its line starts with the window's
        // points and grows a zero a tick.
        assert!(sim
            .engine
            .schedule
            .entry(&sim.table.read(), &quiet)
            .is_some_and(|(e, _)| e.hist.window.is_paused()));
        sim.engine.look_at(Some(quiet));
        for t in 0..30 {
            sim.step(|_, _| {});
            let points = sim.engine.spark(&quiet, &sim.table.read());
            assert_eq!(points.len(), 10 + t, "tick {t}");
            assert!(points.iter().all(|p| *p == Point::default()));
        }
        assert_eq!(sim.engine.sparklines(), 1, "the busy flow's line went");
    }
}

#[test]
fn a_flow_neither_looked_at_nor_alerting_holds_no_sparkline() {
    let mut sim = Sim::new(AlertConfig::default());
    for i in 0..20 {
        healthy_flow(&mut sim, [10, 0, 1, i], 40000);
    }
    let step = |sim: &mut Sim, lossy: bool| {
        sim.step(|fl, now| {
            for (k, f) in fl.iter_mut().enumerate() {
                let retx = if lossy && k == 3 { 30 } else { 0 };
                data(f, S2C, 100, retx, now);
            }
        })
    };
    let sparklines = |sim: &Sim| {
        let bytes = sim
            .engine
            .footprint()
            .into_iter()
            .find(|(w, _)| *w == "sparklines");
        (sim.engine.sparklines(), bytes.map(|(_, b)| b > 0))
    };
    for _ in 0..15 {
        step(&mut sim, false);
    }
    assert_eq!(
        sparklines(&sim),
        (0, Some(false)),
        "nobody looks, nothing alerts"
    );
    let looked = FlowId::of(&sim.flows[7]);
    sim.engine.look_at(Some(looked));
    step(&mut sim, false);
    assert_eq!(sparklines(&sim), (1, Some(true)));
    // Flow 3 loses a third of its segments: its alert's flow keeps a line too.
    while sim.log.is_empty() {
        step(&mut sim, true);
    }
    assert_eq!(sim.engine.sparklines(), 2, "{:?}", sim.log);
    let lossy = FlowId::of(&sim.flows[3]);
    assert!(sim
        .engine
        .spark(&lossy, &sim.table.read())
        .iter()
        .any(|p| p.retx_ratio[S2C] > 0.2));
    sim.engine.look_at(None);
    step(&mut sim, true);
    assert_eq!(sim.engine.sparklines(), 1, "the alerting flow only");
    // Clean again: the alert clears after its hysteresis, and its flow's line goes.
    let t0 = sim.now;
    while !sim.log.iter().any(|t| t.change == Change::Cleared) {
        step(&mut sim, false);
        assert!(sim.now - t0 < 60 * S, "the alert clears");
    }
    assert_eq!(sparklines(&sim), (0, Some(false)));
}
