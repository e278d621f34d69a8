//! The verdicts on hand-built exchanges, one test per verdict and the contract names.

use super::{stream::PayloadSample, stun::Side, tls, verdict::*};
use crate::media::{
    pseudo_tls::tests as ptls,
    stun::tests::{ms_turn, rfc5389, SOFTWARE},
    tls::tests::{certificate, client_hello_record, handshake, record, server_hello},
    turn::tests::{ms_frame, rfc4571},
};

const MS: u64 = 1_000_000;
const TIMEOUT: u64 = 5_000 * MS;

/// Whole segments, one after another from sequence 1000, at the given times.
pub(super) fn segments(parts: &[(u64, Vec<u8>)]) -> Vec<PayloadSample> {
    let mut seq = 1000u32;
    parts
        .iter()
        .map(|(t, b)| {
            let s = PayloadSample {
                seq,
                payload_len: b.len() as u32,
                time_ns: *t,
                bytes: b.clone(),
            };
            seq += b.len() as u32;
            s
        })
        .collect()
}

fn judge_at(
    client: &[PayloadSample],
    server: &[PayloadSample],
    reset: Option<Reset>,
    now: u64,
) -> Media {
    judge(&Exchange {
        client,
        server,
        reset,
        now_ns: now,
        reply_timeout_ns: TIMEOUT,
        stun_timeout_ns: TIMEOUT,
    })
}

fn names(m: &Media) -> (Option<&str>, Option<&str>, Option<&str>) {
    (
        m.client_sent.map(ClientSent::name),
        m.server_replied.map(ServerReplied::name),
        m.verdict.map(Verdict::name),
    )
}

fn hello() -> Vec<PayloadSample> {
    segments(&[(MS, ptls::client_hello())])
}

#[test]
fn the_genuine_pseudo_tls_answer_is_ok() {
    let server = segments(&[(2 * MS, ptls::server_hello())]);
    let m = judge_at(&hello(), &server, None, 3 * MS);
    assert_eq!(
        names(&m),
        (Some("pseudo_tls"), Some("pseudo_tls"), Some("ok"))
    );
    let e = m.evidence.expect("evidence");
    assert_eq!((e.mismatch, e.reply_after_ns), (None, Some(MS)));
    assert_eq!(e.got.handshakes, [2, 14]);
    assert_eq!(e.got.cipher, Some(0x0018));
    // Split over two segments, it still reads as one answer.
    let b = ptls::server_hello();
    let split = segments(&[(2 * MS, b[..40].to_vec()), (3 * MS, b[40..].to_vec())]);
    let m = judge_at(&hello(), &split, None, 4 * MS);
    assert_eq!(m.verdict, Some(Verdict::Ok));
    // Its first part alone, within the timeout: not judged yet.
    let m = judge_at(&hello(), &split[..1], None, 4 * MS);
    assert_eq!(m.verdict, None);
    let m = judge_at(&hello(), &split[..1], None, TIMEOUT + 2 * MS);
    assert_eq!(m.verdict, Some(Verdict::Intercepted));
}

#[test]
fn a_real_handshake_in_answer_to_the_pseudo_tls_hello_is_interception() {
    let flight = [server_hello(0xc02f), certificate(600)].concat();
    let reply = record(tls::HANDSHAKE, 0x0303, &flight);
    let server = segments(&[(2 * MS, reply[..256].to_vec())]);
    let reset = Some(Reset {
        from: Side::Server,
        time_ns: 3 * MS,
    });
    let m = judge_at(&hello(), &server, reset, 4 * MS);
    assert_eq!(
        names(&m),
        (Some("pseudo_tls"), Some("tls"), Some("intercepted"))
    );
    let e = m.evidence.expect("evidence");
    assert_eq!(e.expected, GENUINE);
    assert_eq!(e.got.records, [(tls::HANDSHAKE, reply.len() as u16 - 5)]);
    assert_eq!(
        (e.got.handshakes.as_slice(), e.got.cipher),
        (&[2, 11][..], Some(0xc02f))
    );
    let mm = e.mismatch.as_ref().expect("mismatch");
    assert_eq!((mm.field, mm.got.as_str()), ("record header", "160303"));
    let text = e.describe();
    assert!(text.contains("handshake types [2, 11]"), "{text}");
    assert!(text.contains("cipher 0xc02f"), "{text}");
    assert!(text.contains("reset from the server side"), "{text}");
}

#[test]
fn the_genuine_shape_with_another_cipher_is_interception() {
    let mut b = ptls::server_hello();
    b[77] = 0x2f;
    let m = judge_at(&hello(), &segments(&[(2 * MS, b)]), None, 3 * MS);
    assert_eq!(m.verdict, Some(Verdict::Intercepted));
    let e = m.evidence.expect("evidence");
    let mm = e.mismatch.expect("mismatch");
    assert_eq!((mm.field, mm.got.as_str()), ("cipher", "0x002f"));
    // Not TLS at all, too.
    let m = judge_at(
        &hello(),
        &segments(&[(2 * MS, b"HTTP/1.1 403".to_vec())]),
        None,
        3 * MS,
    );
    assert_eq!(
        names(&m),
        (Some("pseudo_tls"), Some("other"), Some("intercepted"))
    );
}

#[test]
fn an_alert_or_a_reset_is_rejection() {
    let alert = segments(&[(2 * MS, record(tls::ALERT, 0x0301, &[2, 40]))]);
    let m = judge_at(&hello(), &alert, None, 3 * MS);
    assert_eq!(
        names(&m),
        (Some("pseudo_tls"), Some("tls_alert"), Some("rejected"))
    );
    assert_eq!(m.evidence.unwrap().got.alert, Some((Some(2), Some(40))));
    let reset = Reset {
        from: Side::Server,
        time_ns: 2 * MS,
    };
    let m = judge_at(&hello(), &[], Some(reset), 3 * MS);
    assert_eq!(names(&m), (Some("pseudo_tls"), None, Some("rejected")));
    assert_eq!(m.evidence.unwrap().reset, Some(reset));
}

#[test]
fn silence_past_the_timeout_is_no_reply() {
    let m = judge_at(&hello(), &[], None, MS + TIMEOUT - 1);
    assert_eq!(names(&m), (Some("pseudo_tls"), None, None));
    let m = judge_at(&hello(), &[], None, MS + TIMEOUT);
    assert_eq!(names(&m), (Some("pseudo_tls"), None, Some("no_reply")));
    // The client giving up is not a rejection by the server side.
    let reset = Reset {
        from: Side::Client,
        time_ns: 2 * MS,
    };
    let m = judge_at(&hello(), &[], Some(reset), 3 * MS);
    assert_eq!(m.verdict, Some(Verdict::NoReply));
}

#[test]
fn real_tls_answered_by_a_real_handshake_is_ok() {
    let client = segments(&[(MS, client_hello_record("edge.example.com", &[0xc02f]))]);
    let flight = [server_hello(0xc02f), certificate(100), handshake(14, &[])].concat();
    let server = segments(&[(2 * MS, record(tls::HANDSHAKE, 0x0303, &flight))]);
    let m = judge_at(&client, &server, None, 3 * MS);
    assert_eq!(names(&m), (Some("tls"), Some("tls"), Some("ok")));
    assert_eq!(m.sni.as_deref(), Some("edge.example.com"));
    assert_eq!(m.stun, None);
}

#[test]
fn stun_checks_over_rfc4571_are_counted() {
    let req = |id: u8| rfc4571(&rfc5389(0x0001, [id; 12], &SOFTWARE));
    let ok = |id: u8| rfc4571(&rfc5389(0x0101, [id; 12], &[]));
    let client = segments(&[(MS, req(1)), (2 * MS, req(2)), (3 * MS, req(3))]);
    let server = segments(&[(MS + 10, ok(1))]);
    let m = judge_at(&client, &server, None, 3 * MS + TIMEOUT);
    assert_eq!(names(&m), (Some("stun"), Some("stun"), Some("ok")));
    let c = m.stun.expect("counts");
    assert_eq!(
        (c.requests, c.responses, c.errors, c.unanswered, c.pending),
        (3, 1, 0, 2, 0)
    );
    assert_eq!(c.last_answered_ns, Some(MS + 10));
}

#[test]
fn ms_turn_after_the_pseudo_tls_exchange_is_counted() {
    let alloc = ms_frame(0x02, &ms_turn(0x0003, [4; 16], &SOFTWARE));
    let client = segments(&[(MS, ptls::client_hello()), (3 * MS, alloc)]);
    let m = judge_at(
        &client,
        &segments(&[(2 * MS, ptls::server_hello())]),
        None,
        4 * MS,
    );
    assert_eq!(m.verdict, Some(Verdict::Ok));
    assert_eq!(m.stun.map(|c| (c.requests, c.pending)), Some((1, 1)));
    let server = segments(&[
        (2 * MS, ptls::server_hello()),
        (4 * MS, ms_frame(0x02, &ms_turn(0x0113, [4; 16], &[]))),
    ]);
    let c = judge_at(&client, &server, None, 5 * MS)
        .stun
        .expect("counts");
    assert_eq!((c.requests, c.errors, c.unanswered), (1, 1, 0));
    // A client that starts with MS-TURN framing.
    let first = segments(&[(MS, ms_frame(0x02, &ms_turn(0x0003, [4; 16], &[])))]);
    assert_eq!(
        judge_at(&first, &[], None, MS).client_sent,
        Some(ClientSent::MsTurn)
    );
}

#[test]
fn other_protocols_and_silent_flows_get_no_verdict() {
    let client = segments(&[(MS, b"GET / HTTP/1.1\r\n".to_vec())]);
    let m = judge_at(&client, &[], None, MS + TIMEOUT);
    assert_eq!(names(&m), (Some("other"), None, None));
    assert_eq!(judge_at(&[], &[], None, TIMEOUT), Media::default());
}

#[test]
fn names_are_the_contract() {
    use ClientSent as C;
    use ServerReplied as S;
    let c: Vec<_> = [C::PseudoTls, C::Tls, C::Stun, C::MsTurn, C::Other]
        .map(C::name)
        .to_vec();
    assert_eq!(c, ["pseudo_tls", "tls", "stun", "ms_turn", "other"]);
    let s: Vec<_> = [
        S::PseudoTls,
        S::Tls,
        S::TlsAlert,
        S::Stun,
        S::MsTurn,
        S::Other,
    ]
    .map(S::name)
    .to_vec();
    assert_eq!(
        s,
        ["pseudo_tls", "tls", "tls_alert", "stun", "ms_turn", "other"]
    );
    let v: Vec<_> = [
        Verdict::Ok,
        Verdict::Intercepted,
        Verdict::Rejected,
        Verdict::NoReply,
    ]
    .map(Verdict::name)
    .to_vec();
    assert_eq!(v, ["ok", "intercepted", "rejected", "no_reply"]);
}
