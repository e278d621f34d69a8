//! Skipping settled flows must not change anything the engine says: two engines, one
//! judging every flow every tick, see the same random histories and must agree on
//! every transition, every flow's health and every alert.

use monitor_common::{
    event::{Event, EventKind},
    flow::{seen, C2S, S2C},
};
use proptest::prelude::*;

use super::tests::{data, establish, record, Sim, S};
use super::*;
use crate::model::{FlowId, FlowRecord, FlowStats, InFlight, Kind, Point};

#[derive(Clone, Debug)]
enum Act {
    Silent,
    Data {
        d: usize,
        segs: u64,
        retx: u32,
        acked: bool,
    },
    ZeroWindow {
        d: usize,
        zero: bool,
    },
    Reset {
        d: usize,
        suspect: bool,
    },
    Fin {
        d: usize,
    },
    Hello,
    /// The kernel's ClientHello event, its record's change not read yet.
    HelloEvent,
    ServerReply,
    SynAgain,
    Established,
}

fn act() -> impl Strategy<Value = Act> {
    let d = 0usize..2;
    prop_oneof![
        4 => Just(Act::Silent),
        // Mostly clean data, sometimes a few retransmissions among many segments: a
        // rate that rises only as the window slides past the clean seconds.
        6 => (d.clone(), 1u64..2000, prop_oneof![3 => Just(0u32), 1 => 0u32..30], any::<bool>())
            .prop_map(|(d, segs, retx, acked)| Act::Data { d, segs, retx, acked }),
        1 => (d.clone(), any::<bool>()).prop_map(|(d, zero)| Act::ZeroWindow { d, zero }),
        1 => (d.clone(), any::<bool>()).prop_map(|(d, suspect)| Act::Reset { d, suspect }),
        1 => d.prop_map(|d| Act::Fin { d }),
        1 => Just(Act::Hello),
        1 => Just(Act::HelloEvent),
        1 => Just(Act::ServerReply),
        1 => Just(Act::SynAgain),
        2 => Just(Act::Established),
    ]
}

/// Applies one second's packets to a record, as the kernel would count them.
fn apply(f: &mut FlowRecord, a: &Act, now: u64) {
    let st = &mut f.state;
    let touch = |st: &mut FlowStats, d: usize| {
        st.dir[d].packets += 1;
        st.last_seen_ns = now;
    };
    match *a {
        Act::Silent | Act::HelloEvent => {}
        Act::Data {
            d,
            segs,
            retx,
            acked,
        } => {
            let acked_before = f.state.acked_ns[d];
            data(f, d, segs, retx, now);
            let st = &mut f.state;
            if !acked {
                st.acked_ns[d] = acked_before;
            }
            // What the sequence analysis says is outstanding.
            let sent = st.in_flight[d].get().unwrap_or(0) + segs as u32 * 960;
            if acked {
                st.in_flight[d] = InFlight::new(Some(0));
                touch(st, d ^ 1);
            } else {
                st.in_flight[d] = InFlight::new(Some(sent));
            }
        }
        Act::ZeroWindow { d, zero } => {
            touch(st, d);
            st.zero_window[d] = zero;
            st.anomalies.get_mut(d).zero_windows += zero as u32;
        }
        Act::Reset { d, suspect } => {
            touch(st, d);
            st.dir[d].rsts += 1;
            st.anomalies.get_mut(d).suspect_injected_rsts += suspect as u32;
            st.anomalies.get_mut(d).last_rst_ns = now;
            if st.seen & seen::CLIENT_HELLO != 0 && st.dir[S2C].payload_bytes == 0 {
                st.seen |= seen::RESET_AFTER_HELLO;
            } else if st.seen & seen::ESTABLISHED == 0 {
                st.seen |= seen::RESET_IN_HANDSHAKE;
            }
        }
        Act::Fin { d } => {
            touch(st, d);
            st.dir[d].fins += 1;
        }
        Act::Hello => {
            touch(st, C2S);
            st.seen |= seen::CLIENT_HELLO;
        }
        Act::ServerReply => {
            touch(st, S2C);
            st.dir[S2C].payload_bytes += 100;
        }
        Act::SynAgain => {
            touch(st, C2S);
            st.dir[C2S].syns += 1;
        }
        Act::Established => {
            touch(st, S2C);
            st.seen |= seen::SYNACK | seen::ESTABLISHED;
            st.dir[S2C].synacks = 1;
        }
    }
}

/// Runs both engines over the same flows and acts; the first disagreement, if any.
/// Each flow starts at the tick `starts` gives it (established or not, its host): a
/// flow of a lower host joins in front of the others, every row after it moving.
fn compare(
    starts: &[(bool, u8, usize)],
    ticks: &[(Vec<Act>, u64)],
) -> Result<Vec<Transition>, String> {
    // Told which rows changed, as by the collector: idle flows are not read at all.
    let mut fast = Sim::new(AlertConfig::default());
    let mut full = Sim::new(AlertConfig::default());
    full.engine.skip_settled = false;
    let mut now = fast.now;
    // Each flow with the act it takes each tick (its place in `starts`).
    let mut flows: Vec<(usize, FlowRecord)> = Vec::new();
    for (n, (acts, gap)) in ticks.iter().enumerate() {
        now += gap;
        for (i, &(established, host, from)) in starts.iter().enumerate() {
            if from == n {
                let mut f = record([10, 0, 0, host], 40000 + i as u16, 50000, now);
                if established {
                    establish(&mut f);
                }
                flows.push((i, f));
            }
        }
        for (i, f) in flows.iter_mut() {
            if let Some(a) = acts.get(*i) {
                apply(f, a, now);
            }
        }
        let acts: Vec<&Act> = flows.iter().filter_map(|(i, _)| acts.get(*i)).collect();
        let flows: Vec<FlowRecord> = flows.iter().map(|(_, f)| f.clone()).collect();
        // A person looks at one flow, another one each tick (and at times at none):
        // its sparkline starts from its window, paused or not.
        let looked_at = flows.get(n % (flows.len() + 1)).map(FlowId::of);
        for sim in [&mut fast, &mut full] {
            sim.now = now;
            sim.flows = flows.clone();
            sim.engine.look_at(looked_at);
        }
        let events: Vec<Event> = flows
            .iter()
            .zip(acts)
            .filter(|(_, a)| matches!(a, Act::HelloEvent))
            .map(|(f, _)| Event {
                ts_ns: now,
                key: f.key,
                kind: EventKind::ClientHello as u8,
                dir: 0,
                tcp_flags: 0,
                ttl: 64,
                _pad: [0; 4],
            })
            .collect();
        let (a, b) = (fast.tick(&events), full.tick(&events));
        let said = |sim: &Sim, t: &[Transition]| serde_json::json!({ "transitions": t, "alerts": sim.last.alerts });
        // Every flow's sparkline: kept for the flow looked at and alerting ones, the
        // window's points for the others (an idle flow's from the idle times).
        let sparks = |sim: &Sim| -> Vec<Vec<Point>> {
            let table = sim.table.read();
            sim.flows
                .iter()
                .map(|f| sim.engine.spark(&FlowId::of(f), &table))
                .collect()
        };
        if sparks(&fast) != sparks(&full) {
            return Err(format!(
                "tick {n}: sparklines differ\n{:?}\n{:?}",
                sparks(&fast),
                sparks(&full)
            ));
        }
        // The engine's count of sessions is what the flows' health says.
        for sim in [&fast, &full] {
            let named: std::collections::BTreeSet<_> = sim
                .health
                .iter()
                .zip(&sim.flows)
                .filter_map(|(h, f)| h.session(f))
                .collect();
            if sim.last.sessions != named.len() {
                return Err(format!(
                    "tick {n}: {} sessions counted, {} named",
                    sim.last.sessions,
                    named.len()
                ));
            }
        }
        if said(&fast, &a) != said(&full, &b) || fast.health != full.health {
            return Err(format!(
                "tick {n}: skipping says {} / {:?}\njudging all says {} / {:?}",
                said(&fast, &a),
                fast.health,
                said(&full, &b),
                full.health
            ));
        }
    }
    Ok(full.log)
}

#[test]
fn a_rate_that_rises_as_the_window_slides_is_still_seen() {
    // 10 s of 1000 clean segments, then 5 of 100 resent (0.05 % of the window: nothing),
    // then silence: as the clean seconds leave the window the rate is 5 %.
    let data = |segs, retx| Act::Data {
        d: S2C,
        segs,
        retx,
        acked: true,
    };
    let mut ticks: Vec<(Vec<Act>, u64)> = (0..10).map(|_| (vec![data(1000, 0)], S)).collect();
    ticks.push((vec![data(100, 5)], S));
    ticks.extend((0..15).map(|_| (vec![Act::Silent], S)));
    let log = compare(&[(true, 1, 0)], &ticks).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        log.iter().any(|t| t.alert.kind == Kind::RetransmitRate),
        "the scenario raises a rate alert: {log:?}"
    );
}

/// Unanswered SYNs sleep until their handshake timeout, not judged in between, and then
/// their failure stands, made again each tick but not judged (a scan's flows): each
/// must still time out at the tick the full judging finds it, whatever the tick
/// spacing, one answered in time never does, one whose SYN came twice (a warning
/// first) becomes critical in its health at that same tick, and each failure ends
/// when the hold after its last packet does.
#[test]
fn an_unanswered_syn_times_out_when_judging_everything_says() {
    for gap in [S, S / 3, 2 * S + 1] {
        let mut ticks: Vec<(Vec<Act>, u64)> =
            (0..12).map(|_| (vec![Act::Silent; 4], gap)).collect();
        ticks[1].0[2] = Act::Established;
        ticks[0].0[3] = Act::SynAgain;
        // And on past the hold, where the failures end and their alert clears.
        ticks.extend((0..5).map(|_| (vec![Act::Silent; 4], 10 * S)));
        let starts = [(false, 1, 0), (false, 2, 2), (false, 3, 0), (false, 4, 0)];
        let log = compare(&starts, &ticks).unwrap_or_else(|e| panic!("{e}"));
        assert!(
            log.iter()
                .any(|t| t.alert.kind == Kind::HandshakeFailure && t.change == Change::Raised),
            "the scenario raises a handshake failure: {log:?}"
        );
    }
}

/// A suspect reset holds its alert for 30 s after the flow fell silent and idle: the
/// alert's id sits on an idle row, flows joining in front move that row, and the row
/// loses the id when the alert clears.
#[test]
fn an_alert_on_an_idle_flow_follows_its_row_and_leaves_it() {
    let reset = Act::Reset {
        d: C2S,
        suspect: true,
    };
    let mut ticks: Vec<(Vec<Act>, u64)> = vec![(vec![Act::Silent], S), (vec![reset], S)];
    ticks.extend((0..50).map(|_| (vec![Act::Silent; 4], S)));
    // The alerted flow is 10.0.0.5; others join in front (lower hosts) while it is
    // idle, one a tick around the time the alert clears, and one behind.
    let mut starts = vec![(true, 5, 0), (true, 1, 20), (true, 9, 45)];
    starts.extend((36..48).map(|tick| (true, 2, tick)));
    let log = compare(&starts, &ticks).unwrap_or_else(|e| panic!("{e}"));
    let changes: Vec<Change> = log.iter().map(|t| t.change).collect();
    assert_eq!(changes, vec![Change::Raised, Change::Cleared], "{log:?}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn skipping_settled_flows_changes_nothing(
        // Most flows there from the start, some joining later (in front or behind).
        starts in prop::collection::vec(
            (any::<bool>(), 0u8..3, prop_oneof![3 => Just(0usize), 1 => 1usize..30]),
            1..5,
        ),
        ticks in prop::collection::vec(
            (
                prop::collection::vec(act(), 4),
                // Mostly a second; sometimes a pause, or a tick too close to the last
                // (a replay's partial tick), which replaces the last sample.
                prop_oneof![
                    8 => Just(S),
                    1 => (2u64..40).prop_map(|g| g * S),
                    1 => 1u64..S / 10,
                ],
            ),
            1..60,
        ),
    ) {
        if let Err(e) = compare(&starts, &ticks) {
            prop_assert!(false, "{}", e);
        }
    }
}
