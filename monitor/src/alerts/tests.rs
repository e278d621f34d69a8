//! Each rule, hysteresis and clearing over synthetic counter series: flow records built by
//! hand and advanced tick by tick, as the collector would read them from the kernel.

use monitor_common::{
    event::{Event, EventKind},
    flow::{seen, FlowKey, C2S, S2C},
};

use super::*;

use crate::{
    model::{Counters, FlowHealth, FlowRecord, FlowStats, InFlight, Kind, Level, Ratio},
    snapshot::Snapshot,
    table::SharedTable,
};

pub(super) const S: u64 = 1_000_000_000;

pub(super) fn record(client: [u8; 4], cport: u16, sport: u16, t0: u64) -> FlowRecord {
    let mut key = FlowKey {
        port_a: cport,
        port_b: sport,
        family: 4,
        ..FlowKey::default()
    };
    key.addr_a[..4].copy_from_slice(&client);
    key.addr_b[..4].copy_from_slice(&[10, 0, 0, 100]);
    let mut st = FlowStats {
        first_seen_ns: t0,
        last_seen_ns: t0,
        client_is_a: 1,
        ..FlowStats::default()
    };
    st.seen = seen::SYN;
    st.dir[C2S].syns = 1;
    st.dir[C2S].packets = 1;
    FlowRecord { key, state: st }
}

pub(super) fn establish(f: &mut FlowRecord) {
    f.state.seen |= seen::SYNACK | seen::ESTABLISHED;
    f.state.dir[S2C].synacks = 1;
}

/// A clock, some flows, and the engine judging them every second.
pub(super) struct Sim {
    pub(super) engine: AlertEngine,
    pub(super) flows: Vec<FlowRecord>,
    pub(super) now: u64,
    pub(super) log: Vec<Transition>,
    pub(super) last: Snapshot,
    /// The flow table the ticks write, as the collector's.
    pub(super) table: SharedTable,
    /// Each flow's health after the last tick, in the order of `flows`.
    pub(super) health: Vec<FlowHealth>,
}

impl Sim {
    pub(super) fn new(cfg: AlertConfig) -> Self {
        Self {
            engine: AlertEngine::new(cfg),
            flows: Vec::new(),
            now: 1_700_000_000 * S,
            log: Vec::new(),
            last: Snapshot::default(),
            table: SharedTable::default(),
            health: Vec::new(),
        }
    }

    /// Advances one second: `f` changes the flows as the kernel would have, then a tick.
    pub(super) fn step(&mut self, f: impl FnOnce(&mut Vec<FlowRecord>, u64)) -> Vec<Transition> {
        self.now += S;
        f(&mut self.flows, self.now);
        self.tick(&[])
    }

    /// A tick that reads every flow of `flows`, as the collector's whole read does: those
    /// no longer there are gone.
    pub(super) fn tick(&mut self, events: &[Event]) -> Vec<Transition> {
        self.table.write().read_whole(self.flows.iter().cloned());
        let mut snap = Snapshot::of(self.table.clone(), Counters::default(), self.now);
        let t = self.engine.tick(&mut snap, events);
        self.log.extend(t.iter().cloned());
        let table = self.table.read();
        self.health = self
            .flows
            .iter()
            .map(|f| {
                let row = table.find(&FlowId::of(f)).and_then(|i| table.row(i));
                row.map(|r| r.health.clone()).unwrap_or_default()
            })
            .collect();
        drop(table);
        self.last = snap;
        t
    }

    pub(super) fn changes(&self, kind: Kind) -> Vec<(Change, Level)> {
        self.log
            .iter()
            .filter(|t| t.alert.kind == kind)
            .map(|t| (t.change, t.alert.severity))
            .collect()
    }

    pub(super) fn kinds(&self) -> Vec<Kind> {
        let mut k: Vec<Kind> = self.log.iter().map(|t| t.alert.kind).collect();
        k.dedup();
        k
    }
}

/// One second of data: `segs` data segments from `d`, `retx` of them retransmitted, all
/// acknowledged.
pub(super) fn data(f: &mut FlowRecord, d: usize, segs: u64, retx: u32, now: u64) {
    let st = &mut f.state;
    st.dir[d].data_segments += segs;
    st.dir[d].packets += segs;
    st.dir[d].bytes += segs * 1000;
    st.dir[d].payload_bytes += segs * 960;
    st.anomalies.get_mut(d).retransmits += retx;
    st.acked_ns[d] = now;
    st.progress_ns[d] = now;
    st.last_seen_ns = now;
}

/// `n` established flows from 10.0.0.0, 10.0.0.1, ... started at `t0`.
fn established(n: u8, t0: u64) -> Vec<FlowRecord> {
    (0..n)
        .map(|i| {
            let mut f = record([10, 0, 0, i], 40000, 50000, t0);
            establish(&mut f);
            f
        })
        .collect()
}

pub(super) fn healthy_flow(sim: &mut Sim, client: [u8; 4], port: u16) {
    let mut f = record(client, port, 50000, sim.now);
    establish(&mut f);
    sim.flows.push(f);
}

#[test]
fn retransmit_rate_raises_escalates_and_clears_with_hysteresis() {
    let mut sim = Sim::new(AlertConfig::default());
    healthy_flow(&mut sim, [10, 0, 0, 1], 40000);
    // 10 s clean, then 5 % loss toward the client: warning within the window.
    for _ in 0..10 {
        sim.step(|fl, t| data(&mut fl[0], S2C, 100, 0, t));
    }
    assert!(sim.log.is_empty(), "clean traffic raises nothing");
    let mut raised_after = None;
    for i in 1..=10 {
        let t = sim.step(|fl, t| data(&mut fl[0], S2C, 100, 5, t));
        if raised_after.is_none() && !t.is_empty() {
            raised_after = Some(i);
        }
    }
    // The window still holds clean seconds: 4 s of 5 % make 20 of its 1000 segments.
    assert_eq!(raised_after, Some(4));
    assert_eq!(
        sim.changes(Kind::RetransmitRate),
        vec![(Change::Raised, Level::Warning)]
    );
    let a = &sim.log[0].alert;
    assert_eq!(a.direction, Some("s2c"));
    assert_eq!(a.evidence["data_segments"], 1000);
    assert_eq!(a.evidence["retransmits"], 20);
    // Then 20 %: escalated.
    for _ in 0..10 {
        sim.step(|fl, t| data(&mut fl[0], S2C, 100, 20, t));
    }
    assert_eq!(
        sim.changes(Kind::RetransmitRate),
        vec![
            (Change::Raised, Level::Warning),
            (Change::Escalated, Level::Critical)
        ]
    );
    // 1.5 %: below the threshold, above half of it: held, not cleared (no flapping).
    for _ in 0..30 {
        sim.step(|fl, t| data(&mut fl[0], S2C, 200, 3, t));
    }
    assert_eq!(sim.changes(Kind::RetransmitRate).len(), 2, "{:?}", sim.log);
    // Clean: the window empties (10 s), then clear_after (10 s).
    let mut cleared_at = None;
    for i in 1..=30 {
        let t = sim.step(|fl, t| data(&mut fl[0], S2C, 200, 0, t));
        if cleared_at.is_none() && t.iter().any(|t| t.change == Change::Cleared) {
            cleared_at = Some(i);
        }
    }
    let c = cleared_at.expect("cleared");
    // The window's rate falls under half the threshold (1 %) after 4 clean seconds, then
    // clear_after (10 s) must pass.
    assert!(
        (13..=15).contains(&c),
        "cleared after hysteresis + clear_after, at {c} s"
    );
    assert!(sim.last.alerts[0].cleared_ns.is_some());
}

#[test]
fn a_quiet_flow_losing_one_packet_is_not_an_alarm() {
    let mut sim = Sim::new(AlertConfig::default());
    healthy_flow(&mut sim, [10, 0, 0, 1], 40000);
    for i in 0..30 {
        sim.step(|fl, t| data(&mut fl[0], C2S, 1, (i == 5) as u32, t));
    }
    assert!(sim.log.is_empty(), "{:?}", sim.log);
    assert_eq!(
        sim.health[0].retx_rate.map(Ratio::get),
        [None, None],
        "too few segments for a rate"
    );
}

#[test]
fn handshake_retransmitted_then_timed_out_then_cleared_when_the_client_gives_up() {
    let mut sim = Sim::new(AlertConfig::default());
    sim.flows.push(record([10, 0, 0, 3], 40000, 50001, sim.now));
    sim.step(|fl, t| {
        fl[0].state.dir[C2S].syns = 2;
        fl[0].state.last_seen_ns = t;
    });
    assert_eq!(
        sim.changes(Kind::HandshakeFailure),
        vec![(Change::Raised, Level::Warning)]
    );
    for _ in 0..3 {
        sim.step(|fl, t| {
            fl[0].state.dir[C2S].syns += 1;
            fl[0].state.last_seen_ns = t;
        });
    }
    assert_eq!(
        sim.changes(Kind::HandshakeFailure),
        vec![
            (Change::Raised, Level::Warning),
            (Change::Escalated, Level::Critical)
        ]
    );
    assert_eq!(sim.health[0].level, Some(Level::Critical));
    assert!(!sim.last.alerts[0].session_has_healthy_flow);
    // Silent from now: held for hold_s after the last SYN, then cleared after clear_after.
    for _ in 0..45 {
        sim.step(|_, _| {});
    }
    assert_eq!(
        sim.changes(Kind::HandshakeFailure).last().map(|c| c.0),
        Some(Change::Cleared)
    );
    assert_eq!(sim.kinds(), vec![Kind::HandshakeFailure]);
}

#[test]
fn refused_is_critical_and_a_clean_handshake_raises_nothing() {
    let mut sim = Sim::new(AlertConfig::default());
    sim.flows.push(record([10, 0, 0, 4], 40000, 50001, sim.now));
    healthy_flow(&mut sim, [10, 0, 0, 5], 40001);
    sim.step(|fl, t| {
        fl[0].state.seen |= seen::REFUSED;
        fl[0].state.dir[S2C].rsts = 1;
        fl[0].state.last_seen_ns = t;
    });
    assert_eq!(
        sim.changes(Kind::HandshakeFailure),
        vec![(Change::Raised, Level::Critical)]
    );
    assert_eq!(sim.log[0].alert.evidence["what"], "refused");
    assert_eq!(sim.log[0].alert.session.to_string(), "10.0.0.4#1");
    assert_eq!(
        sim.health[1].level, None,
        "the other host's flow is healthy"
    );
}

#[test]
fn tls_stall_by_silence_and_by_reset_after_the_hello() {
    let mut sim = Sim::new(AlertConfig::default());
    healthy_flow(&mut sim, [10, 0, 0, 6], 40000);
    healthy_flow(&mut sim, [10, 0, 0, 7], 40001);
    sim.step(|fl, t| {
        for f in fl.iter_mut() {
            f.state.seen |= seen::CLIENT_HELLO;
            data(f, C2S, 1, 0, t);
        }
    });
    // The second flow's hello is answered by a reset with another TTL.
    sim.step(|fl, t| {
        let st = &mut fl[1].state;
        st.seen |= seen::RESET_AFTER_HELLO;
        st.dir[S2C].rsts = 1;
        st.anomalies.get_mut(S2C).suspect_injected_rsts = 1;
        st.anomalies.get_mut(S2C).last_rst_ns = t;
        st.dir[S2C].ttl_base = 63;
    });
    let t = sim.log.last().expect("reset after hello raised at once");
    assert_eq!(
        (t.alert.kind, t.alert.severity),
        (Kind::TlsStall, Level::Critical)
    );
    assert_eq!(t.alert.evidence["suspect_injected"], true);
    assert!(
        t.alert.summary.contains("suspect injected"),
        "{}",
        t.alert.summary
    );
    // The first: no reply for more than 3 s.
    for _ in 0..3 {
        sim.step(|_, _| {});
    }
    let tls: Vec<&Transition> = sim
        .log
        .iter()
        .filter(|t| t.alert.kind == Kind::TlsStall)
        .collect();
    assert_eq!(tls.len(), 2, "{:?}", sim.log);
    assert_eq!(tls[1].alert.evidence["what"], "no_server_reply");
    assert!(
        !sim.log.iter().any(|t| t.alert.kind == Kind::Reset),
        "a reset after the hello is the TLS stall's evidence, not a second alert"
    );
}

#[test]
fn a_reset_in_an_established_session_marks_suspects_and_clears_after_hold() {
    let mut sim = Sim::new(AlertConfig::default());
    healthy_flow(&mut sim, [10, 0, 0, 8], 40000);
    healthy_flow(&mut sim, [10, 0, 0, 9], 40001);
    sim.step(|fl, t| {
        for (i, f) in fl.iter_mut().enumerate() {
            data(f, C2S, 10, 0, t);
            f.state.dir[C2S].rsts = 1;
            f.state.anomalies.get_mut(C2S).last_rst_ns = t;
            f.state.anomalies.get_mut(C2S).suspect_injected_rsts = i as u32;
        }
    });
    assert_eq!(
        sim.changes(Kind::Reset),
        vec![
            (Change::Raised, Level::Warning),
            (Change::Raised, Level::Critical)
        ]
    );
    let mut cleared = 0;
    for i in 1..=45 {
        let t = sim.step(|_, _| {});
        if t.iter().any(|t| t.change == Change::Cleared) {
            cleared = i;
        }
    }
    assert!(
        (38..=42).contains(&cleared),
        "hold 30 s + clear after 10 s: {cleared}"
    );
}

#[test]
fn stall_by_silence_and_by_blackhole() {
    let mut sim = Sim::new(AlertConfig::default());
    healthy_flow(&mut sim, [10, 0, 1, 1], 40000);
    healthy_flow(&mut sim, [10, 0, 1, 2], 40001);
    // Both ends' sequence numbers known, nothing outstanding.
    for fl in sim.flows.iter_mut() {
        fl.state.in_flight[C2S] = InFlight::new(Some(0));
    }
    for _ in 0..3 {
        sim.step(|fl, t| {
            for f in fl.iter_mut() {
                data(f, C2S, 10, 0, t);
                // The server's ACKs, for all of it: the other direction is seen.
                f.state.dir[S2C].packets += 10;
            }
        });
    }
    assert!(sim.log.is_empty());
    // Flow 0: 4000 bytes outstanding, no ACK moves, no resend yet. Flow 1: three resends
    // within one second, no ACK.
    sim.step(|fl, t| {
        fl[0].state.in_flight[C2S] = InFlight::new(Some(4000));
        fl[0].state.last_seen_ns = t;
        fl[1].state.anomalies.get_mut(C2S).retransmits += 3;
        fl[1].state.last_seen_ns = t;
    });
    let stalls: Vec<&Transition> = sim
        .log
        .iter()
        .filter(|t| t.alert.kind == Kind::Stall)
        .collect();
    assert_eq!(stalls.len(), 1, "the blackhole at once: {:?}", sim.log);
    assert!(stalls[0].alert.summary.contains("blackhole"));
    sim.step(|_, _| {});
    let stalls: Vec<&Transition> = sim
        .log
        .iter()
        .filter(|t| t.alert.kind == Kind::Stall)
        .collect();
    assert_eq!(stalls.len(), 2, "2 s without ACK progress: {:?}", sim.log);
    assert_eq!(stalls[1].alert.evidence["bytes_in_flight"], 4000);
    // The ACK moves again: cleared after clear_after.
    for _ in 0..12 {
        sim.step(|fl, t| {
            for f in fl.iter_mut() {
                f.state.in_flight[C2S] = InFlight::new(Some(0));
                data(f, C2S, 10, 0, t);
            }
        });
    }
    assert_eq!(
        sim.log
            .iter()
            .filter(|t| t.change == Change::Cleared)
            .count(),
        2,
        "{:?}",
        sim.log
    );
}

#[test]
fn no_stall_is_judged_without_the_other_direction() {
    // A one-sided view (asymmetric routing, a one-way capture): ACK progress is unknown.
    let mut sim = Sim::new(AlertConfig::default());
    healthy_flow(&mut sim, [10, 0, 1, 3], 40000);
    for _ in 0..5 {
        sim.step(|fl, t| {
            data(&mut fl[0], C2S, 10, 4, t);
            fl[0].state.acked_ns[C2S] = 0;
            fl[0].state.seen |= seen::STALLED_C2S;
        });
    }
    assert!(!sim.kinds().contains(&Kind::Stall), "{:?}", sim.log);
}

#[test]
fn zero_window_held_over_a_second() {
    let mut sim = Sim::new(AlertConfig::default());
    healthy_flow(&mut sim, [10, 0, 2, 1], 40000);
    sim.step(|fl, t| {
        data(&mut fl[0], S2C, 10, 0, t);
        fl[0].state.zero_window[C2S] = true;
    });
    assert!(sim.log.is_empty(), "seen once: not yet held for 1 s");
    sim.step(|_, _| {});
    assert_eq!(
        sim.changes(Kind::ZeroWindow),
        vec![(Change::Raised, Level::Warning)]
    );
    assert_eq!(
        sim.log[0].alert.direction,
        Some("c2s"),
        "the side advertising it"
    );
    assert_eq!(sim.health[0].zero_window_ns[C2S], S);
    sim.step(|fl, _| fl[0].state.zero_window[C2S] = false);
    for _ in 0..11 {
        sim.step(|_, _| {});
    }
    assert_eq!(
        sim.changes(Kind::ZeroWindow).last().map(|c| c.0),
        Some(Change::Cleared)
    );
}

#[test]
fn an_alert_says_whether_its_session_still_has_a_healthy_flow() {
    let mut sim = Sim::new(AlertConfig::default());
    // One host tries two candidate connections: one works, one is refused.
    healthy_flow(&mut sim, [10, 0, 3, 1], 40000);
    sim.flows.push(record([10, 0, 3, 1], 40001, 50001, sim.now));
    sim.step(|fl, t| {
        data(&mut fl[0], C2S, 10, 0, t);
        fl[1].state.seen |= seen::REFUSED;
        fl[1].state.last_seen_ns = t;
    });
    let a = &sim.log[0].alert;
    assert_eq!(a.kind, Kind::HandshakeFailure);
    assert!(a.session_has_healthy_flow, "the other candidate works");
    assert_eq!(
        sim.health[0].session(&sim.flows[0]),
        sim.health[1].session(&sim.flows[1])
    );
    assert_eq!(sim.health[1].alerts, vec![a.id]);
    assert!(sim.health[0].alerts.is_empty());
}

#[test]
fn the_client_hello_event_time_starts_the_tls_clock() {
    let mut sim = Sim::new(AlertConfig::default());
    healthy_flow(&mut sim, [10, 0, 4, 1], 40000);
    sim.now += 10 * S;
    sim.flows[0].state.seen |= seen::CLIENT_HELLO;
    let key = sim.flows[0].key;
    // The hello happened 5 s before this tick: the stall is due at once.
    let ev = Event {
        ts_ns: sim.now - 5 * S,
        key,
        kind: EventKind::ClientHello as u8,
        dir: 0,
        tcp_flags: 0,
        ttl: 64,
        _pad: [0; 4],
    };
    sim.tick(&[ev]);
    assert_eq!(sim.kinds(), vec![Kind::TlsStall]);
}

#[test]
fn the_handshake_outcome_everywhere_uses_the_configured_timeout() {
    // A SYN with no answer, 5 s old: a timeout by default, pending with a 10 s timeout.
    for (timeout_s, expected) in [(3.0, Some("timeout")), (10.0, None)] {
        let mut sim = Sim::new(AlertConfig {
            handshake_timeout_s: timeout_s,
            ..AlertConfig::default()
        });
        let t0 = sim.now;
        sim.flows.push(record([10, 0, 0, 1], 40000, 50000, t0));
        for _ in 0..5 {
            sim.step(|_, _| {});
        }
        let st = &sim.flows[0].state;
        assert_eq!(sim.last.outcome(st), expected, "timeout {timeout_s} s");
    }
}

/// Wake times that have come are let go: a flow that keeps moving and falling idle does not grow them.
#[test]
fn wake_times_do_not_pile_up_when_every_flow_is_judged() {
    let mut sim = Sim::new(AlertConfig::default());
    let t0 = sim.now;
    sim.flows = established(1, t0);
    for tick in 0..120u64 {
        sim.step(|fl, now| {
            if tick % 4 == 0 {
                data(&mut fl[0], S2C, 10, 0, now);
            }
        });
    }
    let wakes = sim.engine.schedule.wakes.len();
    assert!((1..=4).contains(&wakes), "{wakes} wake times kept");
}

/// A flow gone from the table leaves its row to the next new flow: that flow starts from
/// nothing (no rate, no level, no alert of the flow before), and the gone flow's alert
/// clears as any other.
#[test]
fn a_row_given_to_a_new_flow_carries_nothing_of_the_flow_before() {
    let mut sim = Sim::new(AlertConfig::default());
    let t0 = sim.now;
    sim.flows = established(2, t0);
    for _ in 0..8 {
        sim.step(|fl, now| {
            data(&mut fl[0], S2C, 200, 40, now);
            data(&mut fl[1], S2C, 200, 0, now);
        });
    }
    assert_eq!(sim.kinds(), vec![Kind::RetransmitRate]);
    let lossy = FlowId::of(&sim.flows[0]);
    let row = sim
        .table
        .read()
        .find(&lossy)
        .expect("the lossy flow has a row");
    let lossy_session = sim.health[0].session(&sim.flows[0]);
    // The lossy flow goes (evicted); a new flow from another host comes the tick after.
    sim.flows.remove(0);
    sim.step(|_, _| {});
    let mut new = record([10, 0, 9, 9], 40000, 50000, sim.now);
    establish(&mut new);
    sim.flows.push(new.clone());
    sim.step(|fl, now| data(&mut fl[1], S2C, 200, 0, now));
    let at = sim.table.read().find(&FlowId::of(&new));
    assert_eq!(
        at,
        Some(row),
        "the new flow took the row the lossy one left"
    );
    let h = &sim.health[1];
    assert_eq!(h.level, None, "{h:?}");
    assert!(h.alerts.is_empty(), "{h:?}");
    assert!(h.retx_rate[S2C].get().is_none_or(|r| r == 0.0), "{h:?}");
    assert_ne!(
        h.session(&sim.flows[1]),
        lossy_session,
        "the new flow's host has a session of its own"
    );
    let t1 = sim.now;
    while !sim.log.iter().any(|t| t.change == Change::Cleared) {
        sim.step(|fl, now| data(&mut fl[1], S2C, 200, 0, now));
        assert!(sim.now - t1 < 120 * S, "the gone flow's alert clears");
    }
    assert!(sim.health[1].alerts.is_empty());
}
