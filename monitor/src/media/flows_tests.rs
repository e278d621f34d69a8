//! `MediaFlows` against hand-built exchanges over ticks, its bounds, and a property: what it
//! hands a flow table equals judging every flow's samples so far on every tick, however the
//! samples of the two directions interleave and fall into ticks.

use std::collections::BTreeMap;

use monitor_common::flow::FlowKey;
use proptest::prelude::*;

use super::{
    flows::*,
    pseudo_tls::tests as ptls,
    stream::PayloadSample,
    stun::{
        tests::{ms_turn, rfc5389, SOFTWARE},
        Side,
    },
    tls::{
        self,
        tests::{certificate, client_hello_record, record, server_hello},
    },
    turn::tests::{ms_frame, rfc4571},
    verdict::{judge, ClientSent, Exchange, Media, Reset, Verdict},
};

const MS: u64 = 1_000_000;
const TIMEOUT: u64 = 3_000 * MS;
const STUN_TIMEOUT: u64 = 5_000 * MS;

fn cfg(samples: u32, max_pending: usize) -> MediaFlowsConfig {
    MediaFlowsConfig {
        samples,
        max_pending,
        reply_timeout_ns: TIMEOUT,
        stun_timeout_ns: STUN_TIMEOUT,
    }
}

/// A flow as the caller's table names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct FlowRef {
    first_seen_ns: u64,
    key: FlowKey,
}

fn of(u: &MediaUpdate) -> FlowRef {
    FlowRef {
        first_seen_ns: u.first_seen_ns,
        key: u.key,
    }
}

/// `add_payload` with the flow as one value.
trait Put {
    fn put(&mut self, f: FlowRef, slot: u32, side: Side, s: PayloadSample);
}

impl Put for MediaFlows {
    fn put(&mut self, f: FlowRef, slot: u32, side: Side, s: PayloadSample) {
        self.add_payload(f.key, f.first_seen_ns, slot, side, s);
    }
}

fn of_parts(key: &FlowKey, first_seen_ns: u64) -> FlowRef {
    FlowRef {
        first_seen_ns,
        key: *key,
    }
}

fn flow(n: u16) -> FlowRef {
    FlowRef {
        first_seen_ns: u64::from(n),
        key: FlowKey {
            port_a: n,
            ..FlowKey::default()
        },
    }
}

fn seg(seq: u32, time_ns: u64, bytes: &[u8]) -> PayloadSample {
    PayloadSample {
        seq,
        payload_len: bytes.len() as u32,
        time_ns,
        bytes: bytes.to_vec(),
    }
}

fn open(_: &FlowKey, _: u64, _: u32) -> FlowFacts {
    FlowFacts::default()
}

fn verdict_of(u: &[MediaUpdate]) -> Vec<(FlowRef, Option<Verdict>, bool)> {
    u.iter().map(|u| (of(u), u.media.verdict, u.done)).collect()
}

fn intercepting_reply() -> Vec<u8> {
    let flight = [server_hello(0xc02f), certificate(100)].concat();
    record(tls::HANDSHAKE, 0x0303, &flight)
}

#[test]
fn a_genuine_exchange_over_ticks_is_shown_then_final_when_nothing_more_comes() {
    let mut t = MediaFlows::new(cfg(2, 16));
    let f = flow(1);
    t.put(f, 7, Side::Client, seg(100, MS, &ptls::client_hello()));
    let u = t.tick(2 * MS, open);
    assert_eq!(u.len(), 1);
    assert_eq!((u[0].slot, u[0].done), (7, false));
    assert_eq!(u[0].media.client_sent, Some(ClientSent::PseudoTls));
    assert_eq!(u[0].media.verdict, None);
    // Nothing new: nothing to apply.
    assert!(t.tick(3 * MS, open).is_empty());
    t.put(f, 7, Side::Server, seg(900, 4 * MS, &ptls::server_hello()));
    let u = t.tick(5 * MS, open);
    assert_eq!(verdict_of(&u), [(f, Some(Verdict::Ok), false)]);
    // MS-TURN may follow the handshake: the flow is kept until a timeout after its latest
    // sample, then final with nothing changed, and its samples dropped.
    assert!(t.tick(4 * MS + STUN_TIMEOUT - 1, open).is_empty());
    assert_eq!(t.stats().pending, 1);
    let u = t.tick(4 * MS + STUN_TIMEOUT, open);
    assert_eq!(verdict_of(&u), [(f, Some(Verdict::Ok), true)]);
    assert_eq!(t.stats().pending, 0);
}

#[test]
fn a_wire_sample_goes_to_the_direction_it_names() {
    use monitor_common::sample::{Sample, SAMPLE_BYTES};
    let wire = |dir: u8, seq: u32, b: &[u8]| {
        let mut s = Sample {
            ts_ns: MS,
            key: FlowKey::default(),
            seq,
            payload_len: b.len() as u32,
            len: b.len() as u16,
            dir,
            ttl: 64,
            _pad2: 0,
            bytes: [0; SAMPLE_BYTES],
        };
        s.bytes[..b.len()].copy_from_slice(b);
        s
    };
    let mut t = MediaFlows::new(cfg(1, 16));
    let f = flow(1);
    t.add(
        f.key,
        f.first_seen_ns,
        0,
        &wire(0, 1, &ptls::client_hello()),
    );
    t.add(
        f.key,
        f.first_seen_ns,
        0,
        &wire(1, 9, &ptls::server_hello()),
    );
    let u = t.tick(2 * MS, open);
    assert_eq!(verdict_of(&u), [(f, Some(Verdict::Ok), true)]);
    assert_eq!(
        u[0].media.server_replied.map(|s| s.name()),
        Some("pseudo_tls")
    );
}

#[test]
fn a_flow_with_all_its_samples_is_final_at_once() {
    let mut t = MediaFlows::new(cfg(1, 16));
    let f = flow(1);
    t.put(f, 0, Side::Client, seg(100, MS, &ptls::client_hello()));
    t.put(f, 0, Side::Server, seg(900, 2 * MS, &ptls::server_hello()));
    // Beyond the samples per direction: ignored.
    t.put(
        f,
        0,
        Side::Server,
        seg(983, 2 * MS, b"\x15\x03\x01\x00\x02\x02\x28"),
    );
    let u = t.tick(3 * MS, open);
    assert_eq!(verdict_of(&u), [(f, Some(Verdict::Ok), true)]);
    assert_eq!(t.stats(), MediaFlowsStats::default());
}

#[test]
fn interception_and_real_tls_are_final_at_their_first_verdict() {
    let mut t = MediaFlows::new(cfg(4, 16));
    let (a, b) = (flow(1), flow(2));
    t.put(a, 1, Side::Client, seg(100, MS, &ptls::client_hello()));
    t.put(a, 1, Side::Server, seg(900, 2 * MS, &intercepting_reply()));
    let hello = client_hello_record("edge.example.com", &[0xc02f]);
    t.put(b, 2, Side::Client, seg(100, MS, &hello));
    let reply = record(tls::HANDSHAKE, 0x0303, &server_hello(0xc02f));
    t.put(b, 2, Side::Server, seg(900, 2 * MS, &reply));
    let u = t.tick(3 * MS, open);
    assert_eq!(
        verdict_of(&u),
        [
            (a, Some(Verdict::Intercepted), true),
            (b, Some(Verdict::Ok), true)
        ]
    );
    assert_eq!(u[1].media.sni.as_deref(), Some("edge.example.com"));
    assert_eq!(t.stats().pending, 0);
}

#[test]
fn a_reset_the_table_reports_rejects_the_hello() {
    let mut t = MediaFlows::new(cfg(4, 16));
    let f = flow(1);
    t.put(f, 3, Side::Client, seg(100, MS, &ptls::client_hello()));
    assert_eq!(verdict_of(&t.tick(2 * MS, open)), [(f, None, false)]);
    let reset = Reset {
        from: Side::Server,
        time_ns: 2 * MS,
    };
    let mut asked = Vec::new();
    let u = t.tick(3 * MS, |key, first_seen_ns, slot| {
        asked.push((of_parts(key, first_seen_ns), slot));
        FlowFacts {
            reset: Some(reset),
            gone: false,
        }
    });
    assert_eq!(asked, [(f, 3)]);
    assert_eq!(verdict_of(&u), [(f, Some(Verdict::Rejected), true)]);
    assert_eq!(
        u[0].media.evidence.as_ref().and_then(|e| e.reset),
        Some(reset)
    );
}

#[test]
fn silence_is_no_reply_at_the_timeout_and_final() {
    let mut t = MediaFlows::new(cfg(4, 16));
    let f = flow(1);
    t.put(f, 0, Side::Client, seg(100, MS, &ptls::client_hello()));
    assert_eq!(t.tick(2 * MS, open).len(), 1);
    assert!(t.tick(MS + TIMEOUT - 1, open).is_empty());
    let u = t.tick(MS + TIMEOUT, open);
    assert_eq!(verdict_of(&u), [(f, Some(Verdict::NoReply), true)]);
}

#[test]
fn stun_requests_turn_unanswered_at_their_timeout_and_open_ones_when_the_flow_goes() {
    let req = |id: u8| rfc4571(&rfc5389(0x0001, [id; 12], &SOFTWARE));
    let ok = |id: u8| rfc4571(&rfc5389(0x0101, [id; 12], &[]));
    let mut t = MediaFlows::new(cfg(4, 16));
    let f = flow(1);
    let (r1, r2) = (req(1), req(2));
    t.put(f, 0, Side::Client, seg(100, MS, &r1));
    t.put(f, 0, Side::Server, seg(900, 2 * MS, &ok(1)));
    let u = t.tick(3 * MS, open);
    assert_eq!(verdict_of(&u), [(f, Some(Verdict::Ok), false)]);
    let len1 = r1.len() as u32;
    t.put(f, 0, Side::Client, seg(100 + len1, 4 * MS, &r2));
    t.put(f, 0, Side::Client, seg(100 + 2 * len1, 5 * MS, &req(3)));
    let c = t.tick(6 * MS, open)[0].media.stun.expect("counts");
    assert_eq!(
        (c.requests, c.responses, c.unanswered, c.pending),
        (3, 1, 0, 2)
    );
    let c = t.tick(4 * MS + STUN_TIMEOUT, open)[0]
        .media
        .stun
        .expect("counts");
    assert_eq!((c.unanswered, c.pending), (1, 1));
    let u = t.tick(4 * MS + STUN_TIMEOUT + 1, |_, _, _| FlowFacts {
        reset: None,
        gone: true,
    });
    assert!(u[0].done);
    let c = u[0].media.stun.expect("counts");
    assert_eq!((c.unanswered, c.pending), (2, 0));
    assert_eq!(c.last_answered_ns, Some(2 * MS));
}

#[test]
fn a_client_that_opens_with_no_media_protocol_is_final_at_once() {
    let mut t = MediaFlows::new(cfg(4, 16));
    let (http, short) = (flow(1), flow(2));
    t.put(http, 0, Side::Client, seg(1, MS, &[b'G'; 60]));
    t.put(short, 0, Side::Client, seg(1, MS, b"GET"));
    let u = t.tick(2 * MS, open);
    assert_eq!(
        u.iter()
            .map(|u| (of(u), u.media.client_sent, u.done))
            .collect::<Vec<_>>(),
        [
            (http, Some(ClientSent::Other), true),
            (short, Some(ClientSent::Other), false)
        ]
    );
}

#[test]
fn past_the_cap_the_oldest_pending_flow_is_dropped_and_counted() {
    let mut t = MediaFlows::new(cfg(4, 2));
    let hello = ptls::client_hello();
    for n in [1, 2] {
        t.put(flow(n), u32::from(n), Side::Client, seg(1, MS, &hello));
    }
    assert_eq!(t.tick(2 * MS, open).len(), 2);
    t.put(flow(3), 3, Side::Client, seg(1, 3 * MS, &hello));
    assert_eq!(
        t.stats(),
        MediaFlowsStats {
            pending: 2,
            dropped: 1
        }
    );
    // A later sample of the dropped flow in the same tick is not a new flow.
    t.put(
        flow(1),
        1,
        Side::Server,
        seg(1, 3 * MS, &ptls::server_hello()),
    );
    // A flow older than every pending one is the one dropped.
    t.put(flow(0), 9, Side::Client, seg(1, 3 * MS, &hello));
    let u = t.tick(4 * MS, open);
    let got: Vec<_> = u.iter().map(|u| (of(u), u.slot, u.done)).collect();
    assert_eq!(
        got,
        [(flow(1), 1, true), (flow(0), 9, true), (flow(3), 3, false)]
    );
    // The dropped flow keeps what it was last shown.
    assert_eq!(u[0].media.client_sent, Some(ClientSent::PseudoTls));
    assert_eq!(u[1].media, Media::default());
    assert_eq!(
        t.stats(),
        MediaFlowsStats {
            pending: 2,
            dropped: 2
        }
    );
    // Sampling off: nothing is kept.
    let mut off = MediaFlows::new(cfg(0, 16));
    off.put(flow(1), 0, Side::Client, seg(1, MS, &hello));
    assert_eq!(off.stats().pending, 0);
    // A zero cap still keeps one flow.
    let mut one = MediaFlows::new(cfg(4, 0));
    one.put(flow(1), 0, Side::Client, seg(1, MS, &hello));
    assert_eq!(one.stats().pending, 1);
}

// ---- The property: incremental equals judging everything every tick. ----

/// One flow of the property: the bytes each direction sends, cut into segments.
#[derive(Clone, Debug)]
struct Scenario {
    client: Vec<Vec<u8>>,
    server: Vec<Vec<u8>>,
    reset_at_tick: Option<(usize, bool)>,
    gone_at_tick: Option<usize>,
}

fn stun_pair(id: u8, answered: bool, error: bool) -> (Vec<u8>, Option<Vec<u8>>) {
    let req = rfc4571(&rfc5389(0x0001, [id; 12], &SOFTWARE));
    let kind = if error { 0x0111 } else { 0x0101 };
    let resp = answered.then(|| rfc4571(&rfc5389(kind, [id; 12], &[])));
    (req, resp)
}

/// The streams of both directions, whole.
fn streams() -> impl Strategy<Value = (Vec<u8>, Vec<u8>)> {
    let turn = ms_frame(0x02, &ms_turn(0x0003, [4; 16], &SOFTWARE));
    let turn_ok = ms_frame(0x02, &ms_turn(0x0103, [4; 16], &[]));
    let hello = ptls::client_hello();
    let replies = [
        ptls::server_hello(),
        [ptls::server_hello(), turn_ok.clone()].concat(),
        intercepting_reply(),
        record(tls::ALERT, 0x0301, &[2, 40]),
        b"HTTP/1.1 403 Forbidden\r\n".to_vec(),
        Vec::new(),
    ];
    let n = replies.len();
    prop_oneof![
        (0..n, any::<bool>()).prop_map(move |(i, more)| {
            let client = if more {
                [hello.clone(), turn.clone()].concat()
            } else {
                hello.clone()
            };
            (client, replies[i].clone())
        }),
        proptest::collection::vec((any::<bool>(), any::<bool>()), 1..5).prop_map(|v| {
            let (mut c, mut s) = (Vec::new(), Vec::new());
            for (i, (answered, error)) in v.into_iter().enumerate() {
                let (req, resp) = stun_pair(i as u8 + 1, answered, error);
                c.extend(req);
                s.extend(resp.into_iter().flatten());
            }
            (c, s)
        }),
        Just((
            client_hello_record("edge.example.com", &[0xc02f]),
            record(tls::HANDSHAKE, 0x0303, &server_hello(0xc02f)),
        )),
        (
            proptest::collection::vec(any::<u8>(), 0..80),
            proptest::collection::vec(any::<u8>(), 0..80)
        ),
    ]
}

/// `bytes` cut into up to 5 segments at the given points.
fn cut(bytes: &[u8], at: &[prop::sample::Index]) -> Vec<Vec<u8>> {
    let mut points: Vec<usize> = at.iter().map(|i| i.index(bytes.len() + 1)).collect();
    points.extend([0, bytes.len()]);
    points.sort();
    points.dedup();
    points
        .windows(2)
        .map(|w| bytes[w[0]..w[1]].to_vec())
        .collect()
}

fn scenario() -> impl Strategy<Value = Scenario> {
    (
        streams(),
        proptest::collection::vec(any::<prop::sample::Index>(), 0..4),
        proptest::collection::vec(any::<prop::sample::Index>(), 0..4),
        proptest::option::of((0usize..8, any::<bool>())),
        proptest::option::weighted(0.3, 0usize..10),
    )
        .prop_map(|((c, s), cc, sc, reset_at_tick, gone_at_tick)| Scenario {
            client: cut(&c, &cc),
            server: cut(&s, &sc),
            reset_at_tick,
            gone_at_tick,
        })
}

/// Judging every flow's samples so far at every tick, restating when a flow is final: it
/// is closed (reset or gone, open STUN requests then unanswered), or no later time changes
/// its `Media` and either its verdict is final as such or no more samples will come.
#[derive(Default)]
struct Naive {
    samples: BTreeMap<FlowRef, (Vec<PayloadSample>, Vec<PayloadSample>)>,
    table: BTreeMap<FlowRef, (Media, bool)>,
}

impl Naive {
    fn add(&mut self, id: FlowRef, side: Side, s: PayloadSample, per_dir: usize) {
        if self.table.get(&id).is_some_and(|(_, done)| *done) {
            return;
        }
        let (c, sv) = self.samples.entry(id).or_default();
        let v = if side == Side::Client { c } else { sv };
        if v.len() < per_dir {
            v.push(s);
        }
    }

    fn tick(&mut self, now: u64, cfg: &MediaFlowsConfig, facts: impl Fn(&FlowRef) -> FlowFacts) {
        for (id, (c, s)) in &self.samples {
            if self.table.get(id).is_some_and(|(_, done)| *done) {
                continue;
            }
            let f = facts(id);
            let at = |now_ns| {
                judge(&Exchange {
                    client: c,
                    server: s,
                    reset: f.reset,
                    now_ns,
                    reply_timeout_ns: cfg.reply_timeout_ns,
                    stun_timeout_ns: cfg.stun_timeout_ns,
                })
            };
            let mut media = at(now);
            let time_done = at(u64::MAX) == media;
            let closed = f.gone || f.reset.is_some();
            if closed {
                if let Some(st) = &mut media.stun {
                    st.unanswered += st.pending;
                    st.pending = 0;
                }
            }
            let first = c.iter().find(|x| !x.bytes.is_empty());
            let final_as_such = matches!(
                media.verdict,
                Some(Verdict::Intercepted | Verdict::Rejected | Verdict::NoReply)
            ) || (media.client_sent == Some(ClientSent::Tls)
                && media.verdict.is_some())
                || (media.client_sent == Some(ClientSent::Other)
                    && first.is_some_and(|x| x.bytes.len() >= 50 && x.bytes[0] != 0x03));
            let n = cfg.samples as usize;
            let last = c.iter().chain(s).map(|x| x.time_ns).max().unwrap_or(0);
            let wait = cfg.reply_timeout_ns.max(cfg.stun_timeout_ns);
            let no_more = (c.len() >= n && s.len() >= n) || now >= last.saturating_add(wait);
            let done = closed || (time_done && (final_as_such || no_more));
            self.table.insert(*id, (media, done));
        }
    }
}

/// The table as a caller keeps it: what it was given, a flow shown nothing yet absent.
fn shown(t: &BTreeMap<FlowRef, (Media, bool)>) -> BTreeMap<FlowRef, (Media, bool)> {
    t.iter()
        .filter(|(_, (m, done))| *done || *m != Media::default())
        .map(|(k, v)| (*k, v.clone()))
        .collect()
}

/// A direction's segments (sequence, bytes) still to be sampled, the next one last.
type Queue = (FlowRef, Side, Vec<(u32, Vec<u8>)>);

proptest! {
    #![proptest_config(ProptestConfig::with_cases(600))]

    #[test]
    fn the_tracker_equals_judging_everything_every_tick(
        flows in proptest::collection::vec(scenario(), 1..4),
        picks in proptest::collection::vec((any::<prop::sample::Index>(), any::<bool>()), 0..40),
        steps in proptest::collection::vec(0u64..4_000, 12),
        samples in 1u32..5,
    ) {
        let cfg = cfg(samples, 64);
        let mut tracker = MediaFlows::new(cfg);
        let mut naive = Naive::default();
        let mut table: BTreeMap<FlowRef, (Media, bool)> = BTreeMap::new();
        // Each direction's segments, in order, with sequence numbers.
        let mut queues: Vec<Queue> = Vec::new();
        for (i, f) in flows.iter().enumerate() {
            for (side, segs) in [(Side::Client, &f.client), (Side::Server, &f.server)] {
                let mut seq = 1000u32;
                let q = segs
                    .iter()
                    .map(|b| {
                        let s = (seq, b.clone());
                        seq += b.len() as u32;
                        s
                    })
                    .rev()
                    .collect();
                queues.push((flow(i as u16 + 1), side, q));
            }
        }
        let (mut now, mut tick) = (0u64, 0usize);
        let mut picks = picks.into_iter();
        let facts = |tick: usize, id: &FlowRef| {
            let f = &flows[usize::from(id.key.port_a) - 1];
            FlowFacts {
                reset: f.reset_at_tick.filter(|(t, _)| *t <= tick).map(|(t, server)| Reset {
                    from: if server { Side::Server } else { Side::Client },
                    time_ns: t as u64,
                }),
                gone: f.gone_at_tick.is_some_and(|t| t <= tick),
            }
        };
        while tick < steps.len() {
            // Samples of this tick, the directions interleaved as the picks say.
            for (pick, end_tick) in picks.by_ref() {
                let open: Vec<usize> =
                    (0..queues.len()).filter(|&i| !queues[i].2.is_empty()).collect();
                if open.is_empty() {
                    break;
                }
                let q = &mut queues[open[pick.index(open.len())]];
                let (seq, bytes) = q.2.pop().expect("non-empty");
                let s = PayloadSample {
                    seq,
                    payload_len: bytes.len() as u32,
                    time_ns: now,
                    bytes,
                };
                if !table.get(&q.0).is_some_and(|(_, done)| *done) {
                    tracker.put(q.0, u32::from(q.0.key.port_a), q.1, s.clone());
                }
                naive.add(q.0, q.1, s, samples as usize);
                if end_tick {
                    break;
                }
            }
            now += steps[tick] * MS;
            for u in tracker.tick(now, |key, first_seen_ns, slot| {
                assert_eq!(slot, u32::from(key.port_a));
                facts(tick, &of_parts(key, first_seen_ns))
            }) {
                prop_assert!(
                    !table.get(&of(&u)).is_some_and(|(_, done)| *done),
                    "an update after final: {:?}", u
                );
                table.insert(of(&u), (u.media, u.done));
            }
            naive.tick(now, &cfg, |id| facts(tick, id));
            prop_assert_eq!(&table, &shown(&naive.table), "tick {} at {}", tick, now);
            tick += 1;
        }
        // Samples are kept of the flows not final, and of no other.
        let pending = naive.table.values().filter(|(_, done)| !*done).count();
        prop_assert_eq!(tracker.stats().pending, pending);
    }
}
