//! Alert storms roll up: many sessions failing the same way toward one server are one alert,
//! with the lifecycle of any alert; fewer sessions, another server or another kind keep
//! their own.

use monitor_common::flow::C2S;
use serde_json::Value;

use super::tests::{data, healthy_flow, record, Sim};
use super::*;
use crate::model::{Kind, Level, Scope};

/// The `i`th client of a storm: each its own host, so its own session.
fn client(i: usize) -> [u8; 4] {
    [10, 1, (i / 256) as u8, (i % 256) as u8]
}

/// `n` clients each sending one SYN toward 10.0.0.100:`port`, never answered.
fn syns(sim: &mut Sim, n: usize, port: u16) {
    for i in 0..n {
        let f = record(client(i), 40000, port, sim.now);
        sim.flows.push(f);
    }
}

fn active(sim: &Sim) -> Vec<&Alert> {
    sim.last
        .alerts
        .iter()
        .filter(|a| a.cleared_ns.is_none())
        .collect()
}

/// Steps until the handshake timeout has passed (3 s).
fn until_timed_out(sim: &mut Sim) {
    for _ in 0..5 {
        sim.step(|_, _| {});
    }
}

/// Steps until every alert cleared; the step it happened at.
fn until_cleared(sim: &mut Sim) -> usize {
    for i in 1..=60 {
        sim.step(|_, _| {});
        if active(sim).is_empty() {
            return i;
        }
    }
    panic!("not cleared: {:?}", active(sim));
}

#[test]
fn a_thousand_failed_handshakes_toward_one_server_are_one_alert() {
    let mut sim = Sim::new(AlertConfig::default());
    syns(&mut sim, 1000, 50001);
    until_timed_out(&mut sim);
    let live = active(&sim);
    assert_eq!(live.len(), 1, "{live:#?}");
    let a = live[0];
    assert_eq!(a.kind, Kind::HandshakeFailure);
    assert_eq!(a.severity, Level::Critical);
    assert_eq!(a.session.to_string(), "rollup:10.0.0.100:50001");
    assert_eq!(a.server, "10.0.0.100:50001");
    assert_eq!(a.flows, 1000);
    assert_eq!(a.evidence["sessions"], 1000);
    assert!(
        a.summary
            .starts_with("1000 sessions toward 10.0.0.100:50001: "),
        "{}",
        a.summary
    );
    // The worst flow is named, with its session.
    let worst = a.evidence["worst_session"].as_str().expect("worst session");
    assert_eq!(worst.split('#').next(), a.client.split(':').next());
    let json = serde_json::to_value(a).expect("json");
    assert_eq!(json["session"], "rollup:10.0.0.100:50001");
    // Every flow it covers points at it; one alert was raised, nothing else.
    assert!(sim.health.iter().all(|h| h.alerts == vec![a.id]));
    let raised: Vec<_> = sim
        .log
        .iter()
        .filter(|t| t.change == Change::Raised)
        .collect();
    assert_eq!(raised.len(), 1);
}

#[test]
fn a_storms_rollup_keeps_one_sparkline_not_one_per_flow() {
    let mut sim = Sim::new(AlertConfig::default());
    syns(&mut sim, 1000, 50001);
    until_timed_out(&mut sim);
    assert_eq!(active(&sim).len(), 1);
    assert_eq!(
        sim.engine.sparklines(),
        1,
        "the roll-up's worst flow only, not its 1000 flows"
    );
    let worst = active(&sim)[0]
        .worst
        .expect("the roll-up names its worst flow");
    assert_eq!(worst.key.port_b, 50001);
}

#[test]
fn as_many_sessions_as_the_threshold_keep_their_own_alerts() {
    for (n, above, alerts) in [(5, 10, 5), (10, 10, 10), (11, 10, 1), (3, 2, 1)] {
        let cfg = AlertConfig {
            rollup_above: above,
            ..AlertConfig::default()
        };
        let mut sim = Sim::new(cfg);
        syns(&mut sim, n, 50001);
        until_timed_out(&mut sim);
        let live = active(&sim);
        assert_eq!(live.len(), alerts, "{n} sessions, roll-up above {above}");
        if alerts > 1 {
            assert!(live.iter().all(|a| matches!(a.session, Scope::Session(_))));
        }
    }
}

#[test]
fn two_servers_are_two_rollups() {
    let mut sim = Sim::new(AlertConfig::default());
    syns(&mut sim, 30, 50001);
    // The same clients toward another server address.
    for i in 0..20 {
        let mut f = record(client(i), 40001, 50001, sim.now);
        f.key.addr_b[3] = 101;
        sim.flows.push(f);
    }
    until_timed_out(&mut sim);
    let mut live: Vec<(String, u64)> = active(&sim)
        .iter()
        .map(|a| {
            let n = a.evidence["sessions"].as_u64().unwrap_or(0);
            (a.session.to_string(), n)
        })
        .collect();
    live.sort();
    assert_eq!(
        live,
        vec![
            ("rollup:10.0.0.100:50001".to_string(), 30),
            ("rollup:10.0.0.101:50001".to_string(), 20)
        ]
    );
}

#[test]
fn another_kind_and_a_healthy_session_are_not_swallowed() {
    let mut sim = Sim::new(AlertConfig::default());
    syns(&mut sim, 50, 50001);
    // One storm client also has an established flow that gets reset; another host's
    // session toward the same server works.
    healthy_flow(&mut sim, client(7), 41000);
    sim.flows.last_mut().expect("flow").key.port_b = 50001;
    healthy_flow(&mut sim, [10, 2, 0, 1], 41001);
    let (reset, fine) = (sim.flows.len() - 2, sim.flows.len() - 1);
    for f in &mut sim.flows[reset..] {
        f.key.port_b = 50001;
    }
    sim.step(|fl, t| {
        data(&mut fl[reset], C2S, 10, 0, t);
        fl[reset].state.dir[C2S].rsts = 1;
        fl[reset].state.anomalies.get_mut(C2S).last_rst_ns = t;
        data(&mut fl[fine], C2S, 10, 0, t);
    });
    for _ in 0..4 {
        sim.step(|fl, t| data(&mut fl[fine], C2S, 10, 0, t));
    }
    let live = active(&sim);
    let mut kinds: Vec<(Kind, String)> = live
        .iter()
        .map(|a| (a.kind, a.session.to_string()))
        .collect();
    kinds.sort();
    assert_eq!(
        kinds,
        vec![
            (Kind::HandshakeFailure, "rollup:10.0.0.100:50001".into()),
            (Kind::Reset, "10.1.0.7#1".into()),
        ]
    );
    assert_eq!(sim.health[fine].level, None);
    assert!(sim.health[fine].alerts.is_empty());
    assert_eq!(sim.health[reset].alerts.len(), 1, "its own reset alert");
}

#[test]
fn a_growing_storm_takes_over_the_session_alerts_and_clears_as_one_alert_would() {
    let mut sim = Sim::new(AlertConfig::default());
    syns(&mut sim, 3, 50001);
    until_timed_out(&mut sim);
    assert_eq!(active(&sim).len(), 3, "below the threshold");
    let before = sim.flows.len();
    for i in 0..40 {
        sim.flows
            .push(record(client(100 + i), 40000, 50001, sim.now));
    }
    until_timed_out(&mut sim);
    let live = active(&sim);
    assert_eq!(live.len(), 1, "{live:#?}");
    assert_eq!(live[0].evidence["sessions"], before as u64 + 40);
    let into: Vec<_> = sim
        .log
        .iter()
        .filter(|t| t.change == Change::Cleared)
        .map(|t| t.alert.evidence["rolled_up_into"].clone())
        .collect();
    assert_eq!(into, vec![Value::from("rollup:10.0.0.100:50001"); 3]);

    // The storm stops: the roll-up clears when a lone session's alert would (hold, then
    // hysteresis), in one transition.
    let mut lone = Sim::new(AlertConfig::default());
    lone.now = sim.now;
    lone.flows.push(record(
        client(100),
        40000,
        50001,
        sim.now - 5 * 1_000_000_000,
    ));
    lone.tick(&[]);
    let (a, b) = (until_cleared(&mut sim), until_cleared(&mut lone));
    assert!(a > 30, "held while its flows' failures are recent: {a}");
    assert_eq!(a, b, "as a single session's alert");
    let cleared: Vec<_> = sim
        .log
        .iter()
        .filter(|t| t.change == Change::Cleared && matches!(t.alert.session, Scope::Server(_)))
        .collect();
    assert_eq!(cleared.len(), 1);
}
