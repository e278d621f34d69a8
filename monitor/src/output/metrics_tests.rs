use super::*;
use crate::{
    model::{Counters, FlowRecord, IfaceTraffic},
    table::SharedTable,
};
use monitor_common::flow::{C2S, S2C};

use monitor_common::flow::{seen, FlowKey};

/// The one flow's record at `now_s`, written into `table` as a tick would.
fn snap(table: &SharedTable, retx: u32, now_s: u64, keep: bool) -> Snapshot {
    let mut st = FlowStats {
        first_seen_ns: 1,
        client_is_a: 1,
        seen: seen::SYN | seen::SYNACK | seen::ESTABLISHED,
        ..FlowStats::default()
    };
    st.rtt_ns = 2_000_000;
    st.dir[S2C].packets = 100;
    st.dir[S2C].data_segments = 100;
    st.anomalies.get_mut(S2C).retransmits = retx;
    st.anomalies.get_mut(S2C).fast_retransmits = retx / 2;
    st.dir[C2S].rsts = 1;
    st.anomalies.get_mut(C2S).suspect_injected_rsts = 1;
    let flows = if keep {
        vec![FlowRecord {
            key: FlowKey::default(),
            state: st,
        }]
    } else {
        Vec::new()
    };
    table.write().read_whole(flows);
    let mut s = Snapshot::of(table.clone(), Counters::default(), now_s * 1_000_000_000);
    s.interfaces = vec![IfaceTraffic {
        name: "edge0".into(),
        rx: stats::IfCounters {
            packets: now_s * 10,
            bytes: now_s * 1000,
        },
        tx: stats::IfCounters::default(),
        gone: false,
    }];
    s
}

fn value(text: &str, series: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(series))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{series} missing from:\n{text}"))
}

/// Every changed flow of a tick adds its growth, both directions, as the table's change
/// set says it; a flow that did not change adds nothing.
#[test]
fn a_tick_adds_what_every_changed_flow_grew() {
    let flows = |t: u64| -> Vec<FlowRecord> {
        (0..5u64)
            .map(|i| {
                let mut key = FlowKey {
                    port_a: 40_000 + i as u16,
                    port_b: 50_000,
                    family: 4,
                    ..FlowKey::default()
                };
                key.addr_a[..4].copy_from_slice(&[10, 0, 0, 1]);
                let mut st = FlowStats {
                    first_seen_ns: 1,
                    client_is_a: 1,
                    ..FlowStats::default()
                };
                // Flow i has sent (i + 1) * t packets each way, flow 0 none after t 1.
                let grown = if i == 0 { t.min(1) } else { t };
                st.dir[C2S].packets = (i + 1) * grown;
                st.dir[S2C].packets = 2 * (i + 1) * grown;
                FlowRecord { key, state: st }
            })
            .collect()
    };
    {
        let mut m = Metrics::new(0);
        let table = SharedTable::default();
        for t in 1..=3 {
            table.write().read_whole(flows(t));
            m.observe(&Snapshot::of(
                table.clone(),
                Counters::default(),
                t * 1_000_000_000,
            ));
        }
        let text = m.prometheus_text();
        let total = |d: &str| {
            value(
                &text,
                &format!("monitor_flow_packets_total{{direction=\"{d}\"}}"),
            )
        };
        // 1 + (2 + 3 + 4 + 5) * 3 packets client to server, twice that back.
        assert_eq!((total("c2s"), total("s2c")), (43.0, 86.0));
    }
}

#[test]
fn frames_not_analysed_are_counted_by_reason_from_the_start() {
    let mut m = Metrics::new(0);
    let series = |r: &str| format!("monitor_skipped_packets_total{{reason=\"{r}\"}}");
    assert_eq!(value(&m.prometheus_text(), &series("malformed")), 0.0);
    for (t, malformed) in [(1, 2), (2, 5)] {
        let mut c = Counters::default();
        c.0[stats::MALFORMED as usize] = malformed;
        c.0[stats::TOO_MANY_HEADERS as usize] = 1;
        m.observe(&Snapshot::new(Vec::new(), &[], c, t * 1_000_000_000));
    }
    let t = m.prometheus_text();
    assert_eq!(value(&t, &series("malformed")), 5.0, "{t}");
    assert_eq!(value(&t, &series("too_many_headers")), 1.0, "{t}");
    assert_eq!(value(&t, &series("fragments")), 0.0, "{t}");
}

#[test]
fn counters_grow_by_deltas_and_survive_flows_leaving() {
    let mut m = Metrics::new(0);
    let table = SharedTable::default();
    m.observe(&snap(&table, 4, 1, true));
    m.observe(&snap(&table, 10, 2, true));
    // The flow leaves the table: its counts stay in the totals.
    m.observe(&snap(&table, 0, 3, false));
    let t = m.prometheus_text();
    let r = |k: &str| {
        value(
            &t,
            &format!("monitor_tcp_retransmissions_total{{direction=\"s2c\",kind=\"{k}\"}}"),
        )
    };
    assert_eq!((r("fast"), r("other"), r("spurious")), (5.0, 5.0, 0.0));
    assert_eq!(
        value(
            &t,
            "monitor_tcp_resets_total{direction=\"c2s\",suspect_injected=\"true\"}"
        ),
        1.0
    );
    assert_eq!(
        value(&t, "monitor_handshakes_total{outcome=\"ok\"}"),
        1.0,
        "counted once"
    );
    assert_eq!(value(&t, "monitor_handshake_rtt_seconds_count"), 1.0);
    assert_eq!(
        value(
            &t,
            "monitor_interface_packets_total{interface=\"edge0\",direction=\"rx\"}"
        ),
        30.0
    );
    assert_eq!(value(&t, "monitor_active_flows"), 0.0);
    assert_eq!(
        value(
            &t,
            "monitor_active_alerts{kind=\"stall\",severity=\"critical\"}"
        ),
        0.0
    );
    assert!(
        t.contains("# TYPE monitor_tcp_retransmissions_total counter"),
        "{t}"
    );
    assert!(t.contains("monitor_build_info{version="), "{t}");
    assert!(!t.contains("# EOF") && !t.contains("# UNIT"));
    let om = m.openmetrics();
    assert!(om.ends_with("# EOF\n"));
    assert!(om.contains("# TYPE monitor_tcp_retransmissions counter"));
}

#[test]
fn per_flow_series_only_when_asked_and_only_the_worst() {
    // Two flows, 10 % and 30 % of their data segments retransmitted over 2 s.
    let table = SharedTable::default();
    let two = |t: u64| {
        let mut flows = Vec::new();
        for (port, retx) in [(1u16, 10u32), (2, 30)] {
            let mut f = snap(&SharedTable::default(), 0, t, true).records()[0].clone();
            f.key.port_a = port;
            f.state.dir[S2C].data_segments = 100 * t;
            f.state.anomalies.get_mut(S2C).retransmits = retx * t as u32;
            f.state.anomalies.get_mut(S2C).fast_retransmits = 0;
            flows.push(f);
        }
        table.write().read_whole(flows);
        Snapshot::of(table.clone(), Counters::default(), t * 1_000_000_000)
    };
    let mut engine = crate::alerts::AlertEngine::new(crate::alerts::AlertConfig::default());
    // Each tick judged before the next is written: a snapshot shows the table as it is.
    let mut s1 = two(1);
    engine.tick(&mut s1, &[]);
    let mut s2 = two(2);
    engine.tick(&mut s2, &[]);
    let mut m = Metrics::new(0);
    m.observe(&s2);
    assert!(!m
        .prometheus_text()
        .contains("monitor_flow_retransmit_ratio"));
    let mut m = Metrics::new(1);
    m.observe(&s2);
    let t = m.prometheus_text();
    let series: Vec<&str> = t
        .lines()
        .filter(|l| l.starts_with("monitor_flow_retransmit_ratio{"))
        .collect();
    assert_eq!(series.len(), 1, "{t}");
    assert!(
        series[0].contains("client=\"[::]:2\"") && series[0].ends_with(" 0.3"),
        "the worse flow: {}",
        series[0]
    );
}

/// Records lost with a full ring are counted as lost flows, not as evictions (both were
/// evictions before); a gone interface is kept for `/healthz`.
#[test]
fn lost_flows_are_not_evictions() {
    let mut c = Counters::default();
    c.0[stats::FLOWS_CREATED as usize] = 10;
    c.0[stats::CLOSED_LOST as usize] = 4;
    let mut s = Snapshot::new(
        snap(&SharedTable::default(), 0, 1, true).records(),
        &[],
        c,
        1_000_000_000,
    );
    s.interfaces = vec![IfaceTraffic {
        name: "edge0".into(),
        gone: true,
        ..Default::default()
    }];
    // 10 created: 1 live, 4 lost with the ring, so 5 evicted by the map.
    assert_eq!((s.evicted_flows, s.lost_flows), (5, 4));
    let mut m = Metrics::new(0);
    m.observe(&s);
    let t = m.prometheus_text();
    assert_eq!(value(&t, "monitor_lost_flows_total"), 4.0);
    assert_eq!(value(&t, "monitor_evicted_flows_total"), 5.0);
    assert_eq!(m.gone(), ["edge0".to_string()]);
}

/// A flow's media verdict is counted once, the tick it becomes final, with its STUN
/// transactions by how they ended; every series is there from the start.
#[test]
fn media_verdicts_count_once_when_final() {
    use crate::media::{
        stun::Counts,
        verdict::{ClientSent, Media, Verdict},
    };
    let mut m = Metrics::new(0);
    let text = m.prometheus_text();
    assert_eq!(
        value(
            &text,
            "monitor_media_verdicts_total{verdict=\"intercepted\"}"
        ),
        0.0
    );
    let table = SharedTable::default();
    let s = snap(&table, 0, 1, true);
    let media = |verdict| Media {
        client_sent: Some(ClientSent::PseudoTls),
        verdict: Some(verdict),
        stun: Some(Counts {
            requests: 4,
            responses: 1,
            errors: 1,
            unanswered: 2,
            ..Counts::default()
        }),
        ..Media::default()
    };
    let id = FlowId::of(&s.records()[0]);
    let at = table.read().find(&id).expect("the row");
    // Not final yet: not counted.
    table.write().set_media(at, &id, media(Verdict::Ok), false);
    m.observe(&s);
    // Final: counted once, and not again on later ticks.
    let s = snap(&table, 0, 2, true);
    table
        .write()
        .set_media(at, &id, media(Verdict::Intercepted), true);
    m.observe(&s);
    m.observe(&snap(&table, 0, 3, true));
    let t = m.prometheus_text();
    assert_eq!(
        value(&t, "monitor_media_verdicts_total{verdict=\"intercepted\"}"),
        1.0,
        "{t}"
    );
    assert_eq!(
        value(&t, "monitor_media_verdicts_total{verdict=\"ok\"}"),
        0.0,
        "{t}"
    );
    assert_eq!(
        value(&t, "monitor_stun_transactions_total{result=\"unanswered\"}"),
        2.0,
        "{t}"
    );
    assert_eq!(
        value(&t, "monitor_stun_transactions_total{result=\"response\"}"),
        1.0,
        "{t}"
    );
}
