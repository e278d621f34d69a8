use serde_json::{json, Value};

use super::*;

fn all_text(x: &Explanation) -> String {
    let mut s = format!("{}\n{}\n{}\n", x.observed, x.healthy, x.meaning);
    for (k, v) in &x.values {
        s.push_str(&format!("{k}: {v}\n"));
    }
    s
}

fn value<'a>(x: &'a Explanation, name: &str) -> &'a str {
    x.values
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .unwrap_or_else(|| panic!("no value {name:?} in {:?}", x.values))
}

/// Every sentence is there, none is JSON, and no long float leaks through.
fn readable(x: &Explanation) {
    assert!(!x.observed.is_empty() && !x.healthy.is_empty() && !x.meaning.is_empty());
    for s in [&x.observed, &x.healthy, &x.meaning] {
        assert!(s.ends_with('.'), "a sentence: {s}");
    }
    let t = all_text(x);
    assert!(!t.contains('{') && !t.contains('"'), "no JSON: {t}");
    let long_fraction = t
        .split(|c: char| !(c.is_ascii_digit() || c == '.'))
        .any(|w| w.split_once('.').is_some_and(|(_, f)| f.len() > 2));
    assert!(!long_fraction, "unrounded number in: {t}");
}

#[test]
fn retransmit_rate_names_the_share_with_one_decimal() {
    let e = json!({"retransmits": 6, "data_segments": 181, "rate": 0.03314917127071823,
                   "window_s": 10.0, "threshold": 0.02});
    let x = explain("retransmit_rate", Some("s2c"), &e);
    readable(&x);
    assert_eq!(
        x.observed,
        "6 of 181 data segments sent from the server to the client were retransmissions \
         (3.3 %) over the last 10.0 s; the alert is raised from 2.0 %."
    );
    assert!(x.healthy.contains("well under 2.0 %"), "{}", x.healthy);
    assert!(x.meaning.contains("lost"), "{}", x.meaning);
    assert_eq!(value(&x, "retransmission rate"), "3.3 %");
    assert_eq!(value(&x, "alert threshold"), "2.0 %");
    assert_eq!(value(&x, "over the last"), "10.0 s");
}

#[test]
fn handshake_failure_says_each_way_it_fails() {
    let refused = explain(
        "handshake_failure",
        None,
        &json!({"what": "refused", "syns": 1, "synacks": 0, "elapsed_s": 0.000161}),
    );
    readable(&refused);
    assert_eq!(
        refused.observed,
        "The client's SYN was answered by a reset (1 SYN sent, 161 µs after the first)."
    );
    assert!(
        refused.meaning.contains("refuses them"),
        "{}",
        refused.meaning
    );
    assert_eq!(value(&refused, "case"), "refused");
    assert_eq!(value(&refused, "time from the first packet"), "161 µs");

    let silent = explain(
        "handshake_failure",
        None,
        &json!({"what": "timeout", "syns": 4, "synacks": 0, "elapsed_s": 21.000372}),
    );
    readable(&silent);
    assert_eq!(
        silent.observed,
        "4 SYNs went unanswered for 21.0 s: no SYN/ACK came back."
    );
    assert!(silent.meaning.contains("silently drops"));
    let half = explain(
        "handshake_failure",
        None,
        &json!({"what": "timeout", "syns": 2, "synacks": 3, "elapsed_s": 12.5}),
    );
    assert!(
        half.observed.contains("3 SYN/ACKs received"),
        "{}",
        half.observed
    );
    assert!(half.meaning.contains("one direction"));
    let retried = explain(
        "handshake_failure",
        None,
        &json!({"what": "syn_retransmitted", "syns": 2, "synacks": 0, "elapsed_s": 0.004996}),
    );
    readable(&retried);
    assert!(retried.observed.contains("2 SYNs"), "{}", retried.observed);
    assert!(retried.observed.contains("5.0 ms"), "{}", retried.observed);
}

#[test]
fn tls_stall_tells_an_injected_reset_from_a_silent_server() {
    let injected = explain(
        "tls_stall",
        Some("s2c"),
        &json!({"what": "reset_after_client_hello", "rsts": 1, "suspect_injected": true,
                "ttl_baseline": 63}),
    );
    readable(&injected);
    assert_eq!(
        injected.observed,
        "The connection was reset (1 reset, travelling from the server to the client) right \
         after the client's TLS ClientHello; it looks injected: its TTL, IP ID or timing \
         differ from the sender's other packets (the sender's packets came with TTL 63)."
    );
    assert!(injected.meaning.contains("forging a reset"));
    assert_eq!(value(&injected, "suspect injected"), "yes");
    assert_eq!(value(&injected, "sender's usual TTL"), "63");

    let silent = explain(
        "tls_stall",
        Some("s2c"),
        &json!({"what": "no_server_reply", "waited_s": 5.033148}),
    );
    readable(&silent);
    assert_eq!(
        silent.observed,
        "The client sent its TLS ClientHello and the server sent no data back for 5.0 s."
    );
    assert_eq!(value(&silent, "waited"), "5.0 s");
}

#[test]
fn reset_counts_the_suspect_ones() {
    let x = explain(
        "reset",
        Some("s2c"),
        &json!({"rsts": 3, "suspect_injected": 2, "ttl_baseline": 57}),
    );
    readable(&x);
    assert_eq!(
        x.observed,
        "3 resets travelling from the server to the client ended an established session; 2 \
         of them look injected: their TTL, IP ID or timing differ from the sender's other \
         packets (which came with TTL 57)."
    );
    assert!(x.healthy.contains("FIN"));
    assert!(x.meaning.contains("forging"));
    assert_eq!(value(&x, "suspect injected"), "2");
    let plain = explain(
        "reset",
        Some("c2s"),
        &json!({"rsts": 1, "suspect_injected": 0, "ttl_baseline": 64}),
    );
    assert_eq!(
        plain.observed,
        "1 reset travelling from the client to the server ended an established session."
    );
    assert!(plain.meaning.contains("An endpoint aborted"));
}

#[test]
fn stall_and_zero_window_name_bytes_seconds_and_sides() {
    let stall = explain(
        "stall",
        Some("c2s"),
        &json!({"bytes_in_flight": 1092, "no_ack_progress_s": 5.433938,
                "retransmits_without_progress": 4}),
    );
    readable(&stall);
    assert_eq!(
        stall.observed,
        "1,092 bytes sent from the client to the server stayed unacknowledged: no \
         acknowledgment moved forward for 5.4 s, while 4 retransmissions were sent."
    );
    assert!(stall.meaning.contains("blackhole"));
    assert_eq!(value(&stall, "bytes in flight"), "1,092 bytes");
    let big = explain(
        "stall",
        Some("s2c"),
        &json!({"bytes_in_flight": 2_500_000, "no_ack_progress_s": 300.0,
                "retransmits_without_progress": 0}),
    );
    assert!(
        big.observed.contains("2.5M bytes (2,500,000)"),
        "{}",
        big.observed
    );
    assert!(big.observed.contains("for 5m00s."), "{}", big.observed);

    let zw = explain(
        "zero_window",
        Some("c2s"),
        &json!({"held_s": 12.25, "zero_window_advertisements": 1, "probes": 3}),
    );
    readable(&zw);
    assert_eq!(
        zw.observed,
        "The client advertised a zero receive window for 12.2 s (1 zero-window \
         advertisement, 3 window probes from the server), so the server could not send."
    );
    assert!(zw.meaning.contains("not at fault"));
}

#[test]
fn media_intercepted_names_the_reply_and_its_ttl() {
    let e = json!({
        "verdict": "intercepted", "cause": "answered",
        "expected": "ServerHello + ServerHelloDone in one 83-byte record, cipher 0x0018, 32-byte session id",
        "got": "1402 bytes in TLS records [type 22 length 1397]",
        "expected_length": 83, "expected_cipher": "0x0018", "reply_bytes": 1402,
        "record_types": [22, 22], "record_lengths": [89, 1303], "handshake_types": [2, 11, 14],
        "cipher": "0xc02f", "alert_level": null, "alert_description": null,
        "mismatch_field": "record length", "mismatch_got": "89", "mismatch_expected": "78",
        "reply_after_s": 0.0123456, "reset_from": null, "reply_ttl": 64,
        "server_ttl_baseline": 63, "ttl_differs": true, "reply_head": "160303",
        "meaning": "a device in the path answered the media's pseudo-TLS hello in the server's name: TLS inspection or decryption is applied to this traffic"
    });
    let x = explain("media_intercepted", Some("s2c"), &e);
    readable(&x);
    assert_eq!(
        x.observed,
        "The client sent the media's pseudo-TLS hello and got a 1,402-byte reply in 2 TLS \
         records carrying ServerHello, Certificate, ServerHelloDone 12 ms later, which the \
         genuine server never sends; the first difference from the genuine reply is its \
         record length: 89 instead of 78. The reply came with TTL 64, the server's packets \
         with 63: it was sent from another distance than the server."
    );
    assert!(
        x.healthy.contains("fixed 83-byte ServerHello"),
        "{}",
        x.healthy
    );
    assert!(x.meaning.starts_with("A device in the path answered"));
    assert_eq!(value(&x, "reply's TLS records"), "handshake, handshake");
    assert_eq!(value(&x, "their lengths"), "89 bytes, 1,303 bytes");
    assert_eq!(value(&x, "reply after"), "12 ms");
    assert!(
        !x.values.iter().any(|(k, _)| k.contains("alert")),
        "nulls left out"
    );

    let refused = explain(
        "media_intercepted",
        None,
        &json!({"cause": "tls_alert", "alert_level": 2, "alert_description": 40,
                "reply_after_s": 0.25}),
    );
    assert!(
        refused.observed.contains("(fatal: handshake failure)"),
        "{}",
        refused.observed
    );
    assert_eq!(value(&refused, "TLS alert"), "handshake failure (40)");
}

#[test]
fn ice_check_failure_counts_the_checks() {
    let e = json!({"requests": 12, "responses": 0, "errors": 0, "unanswered": 12,
                   "pending": 0, "timeout_s": 5.0, "last_answered_ns": null,
                   "since_last_answer_s": null,
                   "meaning": "no STUN connectivity check on this flow was answered"});
    let x = explain("ice_check_failure", None, &e);
    readable(&x);
    assert_eq!(
        x.observed,
        "12 of 12 STUN connectivity checks went unanswered within 5.0 s (0 answered, 0 error \
         responses, 0 still waiting); none was ever answered."
    );
    assert_eq!(
        x.meaning,
        "No STUN connectivity check on this flow was answered."
    );
    assert_eq!(value(&x, "answer timeout"), "5.0 s");
    let answered = explain(
        "ice_check_failure",
        None,
        &json!({"requests": 10, "responses": 7, "unanswered": 3, "since_last_answer_s": 8.04,
                "last_answered_ns": 1_700_000_000_123_456_789u64}),
    );
    assert!(answered
        .observed
        .ends_with("the last answer came 8.0 s before."));
    assert!(!all_text(&answered).contains("1700000000"), "no raw clock");
}

#[test]
fn unknown_kinds_and_fields_still_read() {
    let x = explain(
        "new_kind",
        None,
        &json!({"loss_ratio": 0.123456, "gap_s": 0.5, "big": 1234567, "list": [1, 2]}),
    );
    assert!(x.observed.contains("new_kind"));
    assert_eq!(value(&x, "loss ratio"), "12.3 %");
    assert_eq!(value(&x, "gap s"), "500 ms");
    assert_eq!(value(&x, "big"), "1,234,567");
    assert_eq!(value(&x, "list"), "1, 2");
    assert_eq!(rounded(0.03314917127071823), "0.0331");
    // No evidence at all, or not an object: sentences all the same.
    let none = explain("stall", Some("c2s"), &Value::Null);
    assert!(none.values.is_empty());
    assert!(
        none.observed.contains("an unknown time"),
        "{}",
        none.observed
    );
}
