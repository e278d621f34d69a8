//! The media alert conditions on verdicts judged from hand-built exchanges: one test per
//! case, and the evidence's named values.

use super::{
    alert_config::MediaAlertConfig,
    alerting::*,
    pseudo_tls::tests as ptls,
    stun::{tests::rfc5389, Counts, Side},
    tls::{
        self,
        tests::{certificate, client_hello_record, record, server_hello},
    },
    turn::tests::rfc4571,
    verdict::{judge, Exchange, Media, Reset, Verdict},
};

const MS: u64 = 1_000_000;
const TIMEOUT: u64 = 3_000 * MS;

use super::verdict_tests::segments;

fn judged(client: &[u8], server: Option<&[u8]>, reset: Option<Reset>, now: u64) -> Media {
    let client = segments(&[(MS, client.to_vec())]);
    let server = server.map_or(Vec::new(), |b| segments(&[(2 * MS, b.to_vec())]));
    judge(&Exchange {
        client: &client,
        server: &server,
        reset,
        now_ns: now,
        reply_timeout_ns: TIMEOUT,
        stun_timeout_ns: TIMEOUT,
    })
}

fn on() -> MediaAlertConfig {
    MediaAlertConfig::default()
}

#[test]
fn a_real_handshake_answering_the_pseudo_tls_hello_is_media_intercepted() {
    let flight = [server_hello(0xc02f), certificate(200)].concat();
    let reply = record(tls::HANDSHAKE, 0x0303, &flight);
    let m = judged(&ptls::client_hello(), Some(&reply), None, 3 * MS);
    assert_eq!(m.verdict, Some(Verdict::Intercepted));
    assert_eq!(media_intercepted(&on(), &m), Some(Interception::Answered));
    let ttl = ReplyTtl {
        reply: Some(62),
        server_baseline: Some(51),
    };
    let e = intercepted_evidence(&on(), &m, ttl).expect("evidence");
    assert_eq!((e.verdict, e.cause), ("intercepted", "answered"));
    assert_eq!(e.expected_length, 83);
    assert_eq!(e.expected_cipher, "0x0018");
    assert_eq!(e.cipher.as_deref(), Some("0xc02f"));
    assert_eq!(e.record_types, [tls::HANDSHAKE]);
    assert_eq!(e.record_lengths, [reply.len() as u16 - 5]);
    assert_eq!(e.handshake_types, [tls::SERVER_HELLO, tls::CERTIFICATE]);
    assert_eq!(e.reply_bytes, reply.len());
    assert_eq!(e.mismatch_field, Some("record header"));
    assert_eq!(e.reply_after_s, Some(0.001));
    assert_eq!(
        (e.reply_ttl, e.server_ttl_baseline, e.ttl_differs),
        (Some(62), Some(51), Some(true))
    );
    assert!(e.reply_head.starts_with("160303"), "{}", e.reply_head);
    assert!(e.meaning.contains("TLS inspection or decryption"));
    // The evidence is named values, as an alert's JSON holds them.
    let v = serde_json::to_value(&e).expect("serializes");
    assert_eq!(v["cipher"], "0xc02f");
    assert_eq!(v["handshake_types"], serde_json::json!([2, 11]));
    let line = intercepted_summary(Interception::Answered, &m);
    assert!(line.starts_with("pseudo-TLS hello answered in the server's name: expected "));
    assert!(line.contains("cipher 0xc02f"), "{line}");
    // Without TTLs the comparison is unknown, not false.
    let e = intercepted_evidence(&on(), &m, ReplyTtl::default()).expect("evidence");
    assert_eq!(e.ttl_differs, None);
}

#[test]
fn a_tls_alert_or_a_reset_answering_the_pseudo_tls_hello_is_media_intercepted() {
    let alert = record(tls::ALERT, 0x0301, &[2, 40]);
    let m = judged(&ptls::client_hello(), Some(&alert), None, 3 * MS);
    assert_eq!(m.verdict, Some(Verdict::Rejected));
    assert_eq!(media_intercepted(&on(), &m), Some(Interception::TlsAlert));
    let e = intercepted_evidence(&on(), &m, ReplyTtl::default()).expect("evidence");
    assert_eq!((e.verdict, e.cause), ("rejected", "tls_alert"));
    assert_eq!((e.alert_level, e.alert_description), (Some(2), Some(40)));
    let reset = Reset {
        from: Side::Server,
        time_ns: 2 * MS,
    };
    let m = judged(&ptls::client_hello(), None, Some(reset), 3 * MS);
    assert_eq!(m.verdict, Some(Verdict::Rejected));
    assert_eq!(media_intercepted(&on(), &m), Some(Interception::Reset));
    let e = intercepted_evidence(&on(), &m, ReplyTtl::default()).expect("evidence");
    assert_eq!(
        (e.cause, e.reset_from, e.reply_bytes),
        ("reset", Some("server"), 0)
    );
    assert!(intercepted_summary(Interception::Reset, &m).contains("reset from the server side"));
}

#[test]
fn no_reply_a_genuine_answer_and_real_tls_raise_no_media_intercepted() {
    let m = judged(&ptls::client_hello(), None, None, MS + TIMEOUT);
    assert_eq!(m.verdict, Some(Verdict::NoReply));
    assert_eq!(media_intercepted(&on(), &m), None);
    let m = judged(
        &ptls::client_hello(),
        Some(&ptls::server_hello()),
        None,
        3 * MS,
    );
    assert_eq!(m.verdict, Some(Verdict::Ok));
    assert_eq!(media_intercepted(&on(), &m), None);
    assert_eq!(intercepted_evidence(&on(), &m, ReplyTtl::default()), None);
    // Real TLS, answered by a real handshake with a Certificate, or even refused: TLS.
    let hello = client_hello_record("edge.example.com", &[0xc02f]);
    let flight = [server_hello(0xc02f), certificate(200)].concat();
    let m = judged(
        &hello,
        Some(&record(tls::HANDSHAKE, 0x0303, &flight)),
        None,
        3 * MS,
    );
    assert_eq!(m.verdict, Some(Verdict::Ok));
    assert_eq!(media_intercepted(&on(), &m), None);
    let m = judged(
        &hello,
        Some(&record(tls::ALERT, 0x0303, &[2, 40])),
        None,
        3 * MS,
    );
    assert_eq!(m.verdict, Some(Verdict::Rejected));
    assert_eq!(media_intercepted(&on(), &m), None);
}

#[test]
fn media_intercepted_can_be_turned_off() {
    let alert = record(tls::ALERT, 0x0301, &[2, 40]);
    let m = judged(&ptls::client_hello(), Some(&alert), None, 3 * MS);
    let off = MediaAlertConfig {
        media_intercepted: false,
        ..on()
    };
    assert_eq!(media_intercepted(&off, &m), None);
    assert_eq!(intercepted_evidence(&off, &m, ReplyTtl::default()), None);
}

/// Three STUN checks over RFC 4571, the first `answered` of them answered.
fn stun_flow(answered: u8, now: u64) -> Media {
    let req = |id: u8| rfc4571(&rfc5389(0x0001, [id; 12], &[]));
    let ok = |id: u8| rfc4571(&rfc5389(0x0101, [id; 12], &[]));
    let client = segments(&[(MS, req(1)), (2 * MS, req(2)), (3 * MS, req(3))]);
    let answers: Vec<_> = (1..=answered).map(|i| (4 * MS, ok(i))).collect();
    let server = segments(&answers);
    judge(&Exchange {
        client: &client,
        server: &server,
        reset: None,
        now_ns: now,
        reply_timeout_ns: TIMEOUT,
        stun_timeout_ns: TIMEOUT,
    })
}

#[test]
fn some_stun_checks_unanswered_is_an_ice_warning_with_counts_and_last_answer() {
    let now = 3 * MS + TIMEOUT;
    let m = stun_flow(1, now);
    assert_eq!(
        ice_check_failure(&on(), &m),
        Some(IceFailure::SomeUnanswered)
    );
    let cfg = MediaAlertConfig {
        stun_timeout_s: 3.0,
        ..on()
    };
    let e = ice_evidence(&cfg, &m, now).expect("evidence");
    assert_eq!(
        (e.requests, e.responses, e.errors, e.unanswered, e.pending),
        (3, 1, 0, 2, 0)
    );
    assert_eq!(e.last_answered_ns, Some(4 * MS));
    assert_eq!(e.since_last_answer_s, Some((now - 4 * MS) as f64 / 1e9));
    assert_eq!(e.timeout_s, 3.0);
    let v = serde_json::to_value(&e).expect("serializes");
    assert_eq!(v["unanswered"], 2);
    let line = ice_summary(&cfg, m.stun.as_ref().expect("counts"), now);
    assert_eq!(
        line,
        "2 of 3 STUN requests unanswered after 3 s (1 answered, 0 errors; last answer 3.0 s ago)"
    );
    // Before the timeout of any: nothing yet.
    assert_eq!(ice_check_failure(&on(), &stun_flow(1, 4 * MS)), None);
}

#[test]
fn every_stun_check_unanswered_is_critical_and_all_answered_is_nothing() {
    let m = stun_flow(0, 3 * MS + TIMEOUT);
    assert_eq!(ice_check_failure(&on(), &m), Some(IceFailure::AllFailed));
    let e = ice_evidence(&on(), &m, 3 * MS + TIMEOUT).expect("evidence");
    assert_eq!((e.last_answered_ns, e.since_last_answer_s), (None, None));
    assert!(e.meaning.starts_with("no STUN connectivity check"));
    // While one is still waiting it is not all failed yet.
    let m = stun_flow(0, MS + TIMEOUT);
    assert_eq!(
        ice_check_failure(&on(), &m),
        Some(IceFailure::SomeUnanswered)
    );
    let m = stun_flow(3, 3 * MS + TIMEOUT);
    assert_eq!(ice_check_failure(&on(), &m), None);
    assert_eq!(ice_evidence(&on(), &m, 3 * MS + TIMEOUT), None);
    // Errors are answers that failed: with the rest unanswered, every check failed.
    let errors = Media {
        stun: Some(Counts {
            requests: 3,
            errors: 1,
            unanswered: 2,
            ..Counts::default()
        }),
        ..Media::default()
    };
    assert_eq!(
        ice_check_failure(&on(), &errors),
        Some(IceFailure::AllFailed)
    );
    let off = MediaAlertConfig {
        ice_check_failure: false,
        ..on()
    };
    assert_eq!(
        ice_check_failure(&off, &stun_flow(0, 3 * MS + TIMEOUT)),
        None
    );
    assert_eq!(ice_check_failure(&on(), &Media::default()), None);
}
