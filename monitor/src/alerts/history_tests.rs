//! A flow's history over synthetic counter series: the rate window, its run-length
//! samples, pausing while idle, sparklines, Zeek's letters.

use crate::model::FlowStats;
use monitor_common::flow::C2S;

use super::{
    history::{update_zeek, FlowHistory},
    spark::{Spark, SPARK_POINTS},
    window::{point, retransmit_rate, throughput, Kept, RateWindow, Sample},
};
use crate::model::Point;

/// The samples of a window that holds its own (not idle).
fn kept(w: &RateWindow) -> &Kept {
    w.kept().expect("a window that holds its samples")
}

fn sample(t_s: u64, segs: u64, retx: u64) -> Sample {
    Sample {
        ts_ns: t_s * 1_000_000_000,
        data_segments: [segs, 0],
        retransmits: [retx, 0],
        bytes: [segs * 100, 0],
    }
}

#[test]
fn the_rate_covers_the_window_only() {
    let mut h = FlowHistory::default();
    // 10 s of 5 % loss, then 10 s clean: the window forgets the loss.
    for t in 0..=10 {
        h.window.push(sample(t, t * 100, t * 5), 10_000_000_000);
    }
    let r = h.window_rate(C2S, 20).expect("enough segments");
    assert_eq!((r.retransmits, r.segments), (50, 1000));
    assert!((r.ratio - 0.05).abs() < 1e-9);
    for t in 11..=20 {
        h.window.push(sample(t, t * 100, 50), 10_000_000_000);
    }
    let r = h.window_rate(C2S, 20).expect("enough segments");
    assert_eq!(
        (r.retransmits, r.segments, r.span_ns),
        (0, 1000, 10_000_000_000)
    );
}

#[test]
fn too_few_segments_give_no_rate() {
    let mut h = FlowHistory::default();
    h.window.push(sample(0, 0, 0), 10_000_000_000);
    h.window.push(sample(1, 10, 1), 10_000_000_000);
    assert_eq!(h.window_rate(C2S, 20), None, "1 of 10 is not a 10 % rate");
    assert!(h.window_rate(C2S, 10).is_some());
}

#[test]
fn the_window_gives_a_point_per_tick() {
    let mut w = RateWindow::default();
    for t in 0..30 {
        w.push(sample(t, t * 10, t), 10_000_000_000);
    }
    let points = kept(&w).points();
    assert_eq!(points.len(), 10, "the window's 11 samples");
    let p = points.last().expect("points");
    assert_eq!(p.bytes_per_s[C2S], 1000.0);
    assert!((p.retx_ratio[C2S] - 0.1).abs() < 1e-6);
    assert_eq!(w.current_throughput()[C2S], 1000.0);
    assert_eq!(*p, point(&sample(28, 280, 28), &sample(29, 290, 29)));
}

#[test]
fn equal_points_share_a_run_and_expand_in_order() {
    let mut s = Spark::default();
    let busy = Point {
        bytes_per_s: [5.0, 1.0],
        retx_ratio: [0.0, 0.5],
    };
    let mut expect = Vec::new();
    for i in 0..(SPARK_POINTS + 300) {
        let p = if i % 97 == 0 { busy } else { Point::default() };
        s.push(p);
        expect.push(p);
    }
    let expect = &expect[expect.len() - SPARK_POINTS..];
    assert_eq!(s.len(), SPARK_POINTS);
    assert_eq!(s.iter().collect::<Vec<_>>(), expect);
    assert!(s.points.len() <= 6, "{} runs", s.points.len());
    s.pop_back();
    assert_eq!(s.iter().collect::<Vec<_>>(), expect[..SPARK_POINTS - 1]);
}

#[test]
fn zeek_history_in_order_of_first_sight_with_log_repeats() {
    let mut st = FlowStats::default();
    let mut h = compact_str::CompactString::default();
    st.dir[C2S].syns = 1;
    st.dir[C2S].segments = 1;
    update_zeek(&mut h, &st);
    st.dir[1].synacks = 1;
    st.dir[1].segments = 1;
    st.dir[C2S].segments = 2;
    update_zeek(&mut h, &st);
    st.dir[C2S].segments = 20;
    st.dir[C2S].data_segments = 18;
    st.dir[1].segments = 30;
    st.dir[1].data_segments = 20;
    st.anomalies.get_mut(1).retransmits = 12;
    update_zeek(&mut h, &st);
    st.dir[C2S].rsts = 1;
    st.dir[C2S].segments = 21;
    update_zeek(&mut h, &st);
    assert_eq!(h, "ShAaDdttR");
}

#[test]
fn counters_that_go_back_do_not_underflow() {
    let a = sample(1, 100, 10);
    let b = sample(2, 50, 5);
    assert_eq!(throughput(&a, &b, C2S), 0.0);
    assert_eq!(retransmit_rate(&a, &b, C2S, 0), None);
}

mod samples {
    use super::super::window::{RateWindow, Sample, Samples};
    use proptest::prelude::*;
    use std::collections::VecDeque;

    #[derive(Clone, Debug)]
    enum Op {
        Push { retx: u64, bytes: u64 },
        PopFront,
        PopBack,
    }

    fn op() -> impl Strategy<Value = Op> {
        // Few distinct counter values, so runs of equal ones form and break.
        prop_oneof![
            4 => (0u64..3, 0u64..2).prop_map(|(retx, bytes)| Op::Push { retx, bytes }),
            1 => Just(Op::PopFront),
            1 => Just(Op::PopBack),
        ]
    }

    proptest! {
        /// The run-length store answers exactly as a plain deque of samples would.
        #[test]
        fn runs_of_equal_counters_answer_as_a_plain_deque(ops in prop::collection::vec(op(), 0..200)) {
            let (mut runs, mut plain) = (Samples::default(), VecDeque::<Sample>::new());
            for (t, o) in ops.into_iter().enumerate() {
                match o {
                    Op::Push { retx, bytes } => {
                        let s = Sample {
                            ts_ns: t as u64,
                            data_segments: [7, 1],
                            retransmits: [retx, 0],
                            bytes: [bytes, 3],
                        };
                        runs.push_back(s);
                        plain.push_back(s);
                    }
                    Op::PopFront => {
                        runs.pop_front();
                        plain.pop_front();
                    }
                    Op::PopBack => {
                        runs.pop_back();
                        plain.pop_back();
                    }
                }
                prop_assert_eq!(runs.len(), plain.len());
                prop_assert_eq!(runs.front(), plain.front().copied());
                for k in 0..=plain.len() {
                    let want = plain.len().checked_sub(k + 1).map(|i| plain[i]);
                    prop_assert_eq!(runs.nth_back(k), want);
                }
                prop_assert_eq!(runs.iter().collect::<Vec<_>>(), plain.iter().copied().collect::<Vec<_>>());
                let counted: u32 = runs.runs.iter().map(|(_, n)| n).sum();
                prop_assert_eq!(counted as usize, plain.len());
            }
        }
    }

    #[test]
    fn an_idle_flow_keeps_one_run() {
        let mut w = RateWindow::default();
        for t in 0..60 {
            w.push(super::sample(t, 100, 5), 10_000_000_000);
        }
        let k = super::kept(&w);
        assert_eq!(k.samples.len(), 11, "the window and one before it");
        assert_eq!(k.samples.runs.len(), 1);
        assert_eq!(k.samples.runs.heap_capacity(), 0, "the one run inline");
        assert_eq!(k.latest().map(|s| s.ts_ns), Some(59_000_000_000));
        // Busy for a while, then idle past the window: back to one run's room.
        for t in 60..120 {
            let segs = 100 + t.min(80) * 10;
            w.push(super::sample(t, segs, 5), 10_000_000_000);
        }
        let k = super::kept(&w);
        assert_eq!(
            (k.samples.runs.len(), k.samples.runs.heap_capacity()),
            (1, 0)
        );
    }
}

mod idle {
    use super::super::{
        idle::IdleTimes,
        window::{RateWindow, Sample, SampleCounters, MIN_GAP_NS},
    };
    use super::kept;
    use proptest::prelude::*;

    /// The time between two ticks: none, too close (replaced), a tick, a long pause.
    fn gap() -> impl Strategy<Value = u64> {
        prop_oneof![
            1 => Just(0u64),
            2 => 1..MIN_GAP_NS,
            6 => Just(1_000_000_000u64),
            2 => (2u64..40).prop_map(|s| s * 1_000_000_000),
        ]
    }

    fn same(a: &RateWindow, b: &RateWindow) -> Result<(), TestCaseError> {
        let (a, b) = (kept(a), kept(b));
        prop_assert_eq!(a.samples.len(), b.samples.len());
        for k in 0..a.samples.len() {
            prop_assert_eq!(a.samples.nth_back(k), b.samples.nth_back(k), "sample {}", k);
        }
        prop_assert_eq!(a.points(), b.points());
        Ok(())
    }

    proptest! {
        /// A window that paused while its flow was idle and caught up when it moved (or
        /// was looked at) is the window that took every tick's sample.
        #[test]
        fn a_paused_window_catches_up_into_the_one_that_took_every_sample(
            ticks in prop::collection::vec((gap(), prop::bool::weighted(0.15), any::<bool>()), 1..150),
            window_s in 1u64..12,
            start in 0usize..30,
            min in 1u64..20,
        ) {
            let w = window_s * 1_000_000_000;
            let mut idle = IdleTimes::default();
            let (mut eager, mut lazy) = (RateWindow::default(), RateWindow::default());
            let (mut now, mut segs) = (1_000_000_000_000u64, 0u64);
            // The counters of the record as the last tick read it: an idle window's own.
            let mut held = SampleCounters::default();
            // The flow appears at tick `start`; the idle times count from the first.
            for (n, (gap, busy, look)) in ticks.into_iter().enumerate() {
                now += gap;
                if n < start {
                    idle.advance(now, w);
                    continue;
                }
                segs += u64::from(busy) * 7;
                let s = Sample {
                    ts_ns: now,
                    data_segments: [segs, 1],
                    retransmits: [segs / 3, 0],
                    bytes: [segs * 100, 5],
                };
                eager.push(s, w);
                // A tick whose sample moved catches up first; pausing is only ever tried,
                // and must refuse when the sample moved.
                if busy || lazy.must_catch_up(now) {
                    lazy.catch_up(&idle, w, &held);
                }
                if !lazy.is_paused() && !lazy.pause(&s, &idle, w) {
                    lazy.push(s, w);
                }
                held = SampleCounters::of(&s);
                // Paused or not, its figures are those of the one that took the sample.
                let figures = |w: &RateWindow| {
                    (w.current_throughput(), w.rates(min).map(|r| r.map(|r| r.ratio)))
                };
                prop_assert_eq!(figures(&lazy), figures(&eager), "tick {}", n);
                idle.advance(now, w);
                if look {
                    let mut seen = lazy.clone();
                    seen.catch_up(&idle, w, &held);
                    same(&seen, &eager)?;
                }
            }
            lazy.catch_up(&idle, w, &held);
            same(&lazy, &eager)?;
        }
    }

    #[test]
    fn an_idle_flow_pauses_and_its_window_still_slides() {
        let w = 10_000_000_000;
        let mut idle = IdleTimes::default();
        let mut h = RateWindow::default();
        let mut now = 1_000_000_000_000u64;
        let mut held = SampleCounters::default();
        for t in 0..40u64 {
            now += 1_000_000_000;
            let segs = 10 * t.min(5);
            let s = Sample {
                ts_ns: now,
                data_segments: [segs, 0],
                retransmits: [t.min(5), 0],
                bytes: [segs * 100, 0],
            };
            if h.must_catch_up(now) {
                h.catch_up(&idle, w, &held);
            }
            if !(h.is_paused() || h.pause(&s, &idle, w)) {
                h.push(s, w);
            }
            held = SampleCounters::of(&s);
            idle.advance(now, w);
        }
        // Its times were the idle times when it paused, its counters its record's: it
        // keeps nothing.
        assert!(h.kept().is_none(), "idle 35 ticks, 10 s window");
        assert_eq!(h.heap_bytes(), 0);
        assert_eq!(h.rates(1)[0], None, "no segments within the window");
        let k = h.catch_up(&idle, w, &held);
        assert_eq!(
            (k.samples.len(), k.latest().map(|s| s.ts_ns)),
            (11, Some(now))
        );
        assert_eq!(
            k.latest().map(|s| s.data_segments[0]),
            Some(50),
            "the counters it held"
        );
        // A flow younger than the window paused with times of its own, kept.
        let mut young = RateWindow::default();
        for _ in 0..3 {
            now += 1_000_000_000;
            let s = Sample {
                ts_ns: now,
                ..Sample::default()
            };
            if !(young.is_paused() || young.pause(&s, &idle, w)) {
                young.push(s, w);
            }
            idle.advance(now, w);
        }
        let k = kept(&young);
        assert!(k.paused.is_some(), "paused, with times of its own");
        assert_eq!(k.samples.len(), 2);
        let k = young.catch_up(&idle, w, &SampleCounters::default());
        assert_eq!(k.samples.len(), 3);
    }
}

#[test]
fn an_idle_flows_state_stays_small() {
    // One per flow: at a million flows each byte here is a megabyte resident.
    let entry = std::mem::size_of::<Option<super::flow::FlowEntry>>();
    assert!(
        entry <= 104,
        "the engine's state of a flow grew to {entry} bytes"
    );
    assert_eq!(
        std::mem::size_of::<RateWindow>(),
        8,
        "an idle window keeps nothing"
    );
}
