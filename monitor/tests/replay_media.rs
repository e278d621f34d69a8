//! One capture per media verdict (built by tests/data/media/make_captures.py), read through
//! the host analysis and judged by `media::verdict::judge`: the verdict, what each side
//! sent first, the server name and the STUN counts per capture; and what tshark decodes of
//! the same captures (TLS handshake types, STUN message types) against our decoders.
//! tshark missing is a failure, never a skip: `cargo xtask setup` installs it.

mod common;

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::Command,
};

use common::media::{judge_capture, table, Judged};
use monitor::media::{
    stun::{self, Class},
    tls, turn,
};

fn capture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/media")
        .join(name)
}

/// The capture's one flow, judged.
fn one(name: &str) -> Judged {
    let mut judged = judge_capture(&capture(name));
    assert_eq!(judged.len(), 1, "{name}:\n{}", table(&judged));
    judged.remove(0)
}

type Names = (
    Option<&'static str>,
    Option<&'static str>,
    Option<&'static str>,
);

fn names(j: &Judged) -> Names {
    let m = &j.media;
    (
        m.verdict.map(|v| v.name()),
        m.client_sent.map(|c| c.name()),
        m.server_replied.map(|s| s.name()),
    )
}

/// (requests, responses, errors, unanswered)
type StunCounts = (u64, u64, u64, u64);

fn stun_counts(j: &Judged) -> Option<StunCounts> {
    j.media
        .stun
        .map(|c| (c.requests, c.responses, c.errors, c.unanswered))
}

#[test]
fn each_capture_gets_its_verdict() {
    let cases: [(&str, Names, Option<StunCounts>); 7] = [
        (
            "pseudo_tls_ok.pcap",
            (Some("ok"), Some("pseudo_tls"), Some("pseudo_tls")),
            Some((1, 1, 0, 0)),
        ),
        (
            "intercepted.pcap",
            (Some("intercepted"), Some("pseudo_tls"), Some("tls")),
            None,
        ),
        (
            "rejected_alert.pcap",
            (Some("rejected"), Some("pseudo_tls"), Some("tls_alert")),
            None,
        ),
        (
            "rejected_reset.pcap",
            (Some("rejected"), Some("pseudo_tls"), None),
            None,
        ),
        (
            "no_reply.pcap",
            (Some("no_reply"), Some("pseudo_tls"), None),
            None,
        ),
        ("tls_ok.pcap", (Some("ok"), Some("tls"), Some("tls")), None),
        (
            "stun_tcp.pcap",
            (Some("ok"), Some("stun"), Some("stun")),
            Some((4, 1, 1, 2)),
        ),
    ];
    let mut wrong = Vec::new();
    for (name, want, stun) in cases {
        let j = one(name);
        if names(&j) != want || stun_counts(&j) != stun {
            wrong.push(format!(
                "{name}: want {want:?} stun {stun:?}, got {}",
                table(&[j])
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn the_evidence_says_what_came_back() {
    let e = one("intercepted.pcap").media.evidence.expect("evidence");
    assert_eq!(e.got.cipher, Some(0x002f));
    assert_eq!(
        &e.got.handshakes[..2],
        &[tls::SERVER_HELLO, tls::CERTIFICATE]
    );
    assert_eq!(e.mismatch.map(|m| m.field), Some("record length"));
    let e = one("rejected_alert.pcap").media.evidence.expect("evidence");
    assert_eq!(e.got.alert, Some((Some(2), Some(40))));
    let tls = one("tls_ok.pcap").media;
    assert_eq!(tls.sni.as_deref(), Some("edge.example.com"));
    // The 5 s of silence is past the reply timeout; the same hello judged 1 s after it
    // would not be judged yet (verdict_tests.rs holds that rule).
    let e = one("no_reply.pcap").media.evidence.expect("evidence");
    assert_eq!((e.got.bytes, e.reply_after_ns), (0, None));
}

/// Per frame with a payload: tshark's TLS handshake types and STUN message types.
fn tshark(path: &Path) -> Vec<(String, String, String)> {
    let out = Command::new("tshark")
        .arg("-r")
        .arg(path)
        .args([
            "-n",
            "-Y",
            "tcp.len > 0",
            "-T",
            "fields",
            "-E",
            "occurrence=a",
        ])
        .args(["-E", "aggregator=,", "-E", "separator=\t"])
        .args(["-d", "tcp.port==3478,stun"])
        .args([
            "-e",
            "tcp.payload",
            "-e",
            "tls.handshake.type",
            "-e",
            "stun.type",
        ])
        .output()
        .unwrap_or_else(|e| {
            panic!("tshark could not run ({e}): it is required for this test (cargo xtask setup)")
        });
    assert!(
        out.status.success(),
        "tshark failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            let mut f = l.split('\t').map(String::from);
            let mut next = || f.next().unwrap_or_default();
            (next(), next(), next())
        })
        .collect()
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len() / 2)
        .filter_map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok())
        .collect()
}

/// What our decoders say of one segment's payload, in tshark's formats.
fn ours(payload: &[u8]) -> (String, String) {
    let join = |v: Vec<String>| v.join(",");
    let hs = tls::decode(payload)
        .into_iter()
        .flatten()
        .flat_map(|r| r.messages)
        .filter_map(|m| m.handshake_type())
        .map(|t| t.to_string())
        .collect();
    let stun = match turn::detect(payload) {
        Some(turn::Framing::Rfc4571) => turn::frames(payload, turn::Framing::Rfc4571)
            .into_iter()
            .filter_map(|f| f.stun)
            .map(|m| format!("0x{:04x}", m.kind))
            .collect(),
        _ => Vec::new(),
    };
    (join(hs), join(stun))
}

#[test]
fn tshark_decodes_the_captures_as_our_decoders_do() {
    let mut diffs = Vec::new();
    let mut seen: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    for name in [
        "pseudo_tls_ok.pcap",
        "intercepted.pcap",
        "rejected_alert.pcap",
        "rejected_reset.pcap",
        "no_reply.pcap",
        "tls_ok.pcap",
        "stun_tcp.pcap",
    ] {
        for (i, (payload, hs, st)) in tshark(&capture(name)).into_iter().enumerate() {
            let payload = unhex(&payload);
            // MS-TURN frames after the pseudo-TLS exchange are not TLS to tshark either.
            let (our_hs, our_st) = ours(&payload);
            if (hs.as_str(), st.as_str()) != (our_hs.as_str(), our_st.as_str()) {
                diffs.push(format!(
                    "{name} payload {}: tshark ({hs:?}, {st:?}), ours ({our_hs:?}, {our_st:?})",
                    i + 1
                ));
            }
            let e = seen.entry(name).or_default();
            e.0 += usize::from(!hs.is_empty());
            e.1 += usize::from(!st.is_empty());
        }
    }
    assert!(diffs.is_empty(), "{}", diffs.join("\n"));
    // The comparison compared something: TLS in every capture but the STUN one, STUN there.
    for (name, (hs, st)) in &seen {
        let stun = *name == "stun_tcp.pcap";
        assert!(
            (*hs > 0) != stun && (*st > 0) == stun,
            "{name}: {hs} TLS, {st} STUN"
        );
    }
    // And tshark's STUN classes are the matcher's: 4 requests, 1 success, 1 error.
    let classes: Vec<Class> = tshark(&capture("stun_tcp.pcap"))
        .iter()
        .filter_map(|(p, _, _)| stun::decode(unhex(p).get(2..)?))
        .map(|m| m.class)
        .collect();
    assert_eq!(
        classes,
        [
            Class::Request,
            Class::SuccessResponse,
            Class::Request,
            Class::ErrorResponse,
            Class::Request,
            Class::Request
        ]
    );
}

/// `monitor replay --json` on each capture: the flow's `media` object as the contract
/// writes it, and the alerts it raises: an interception or a refusal of the pseudo-TLS
/// hello is `media_intercepted` (one alert, no `tls_stall` beside it), silence is the
/// `tls_stall` it always was, unanswered STUN checks are `ice_check_failure`, and a genuine
/// exchange or real TLS raise nothing.
#[test]
fn the_replay_json_names_each_verdict_and_its_alert() {
    use serde_json::{json, Value};
    // Capture, its flow's `media` object, its alerts (kind, severity).
    type Case = (&'static str, Value, &'static [(&'static str, &'static str)]);
    let cases: [Case; 7] = [
        (
            "pseudo_tls_ok.pcap",
            json!({"client_sent": "pseudo_tls", "server_replied": "pseudo_tls", "verdict": "ok",
                   "sni": null, "stun": {"requests": 1, "responses": 1, "errors": 0, "unanswered": 0}}),
            &[],
        ),
        (
            "intercepted.pcap",
            json!({"client_sent": "pseudo_tls", "server_replied": "tls", "verdict": "intercepted",
                   "sni": null, "stun": null}),
            &[("media_intercepted", "critical"), ("reset", "critical")],
        ),
        (
            "rejected_alert.pcap",
            json!({"client_sent": "pseudo_tls", "server_replied": "tls_alert", "verdict": "rejected",
                   "sni": null, "stun": null}),
            &[("media_intercepted", "critical")],
        ),
        (
            "rejected_reset.pcap",
            json!({"client_sent": "pseudo_tls", "server_replied": null, "verdict": "rejected",
                   "sni": null, "stun": null}),
            &[("media_intercepted", "critical")],
        ),
        (
            "no_reply.pcap",
            json!({"client_sent": "pseudo_tls", "server_replied": null, "verdict": "no_reply",
                   "sni": null, "stun": null}),
            &[("tls_stall", "critical")],
        ),
        (
            "tls_ok.pcap",
            json!({"client_sent": "tls", "server_replied": "tls", "verdict": "ok",
                   "sni": "edge.example.com", "stun": null}),
            &[],
        ),
        (
            "stun_tcp.pcap",
            json!({"client_sent": "stun", "server_replied": "stun", "verdict": "ok",
                   "sni": null, "stun": {"requests": 4, "responses": 1, "errors": 1, "unanswered": 2}}),
            &[("ice_check_failure", "warning")],
        ),
    ];
    for (name, media, alerts) in cases {
        let out = Command::new(env!("CARGO_BIN_EXE_monitor"))
            .args(["replay", "--json"])
            .arg(capture(name))
            .output()
            .expect("run monitor replay");
        assert!(out.status.success(), "{name}: {out:?}");
        let v: Value = serde_json::from_slice(&out.stdout).expect("one JSON summary");
        assert_eq!(v["flows"][0]["media"], media, "{name}");
        let mut got: Vec<(String, String)> = v["alerts"]
            .as_array()
            .expect("alerts")
            .iter()
            .map(|a| {
                (
                    a["kind"].as_str().unwrap_or("").into(),
                    a["severity"].as_str().unwrap_or("").into(),
                )
            })
            .collect();
        got.sort();
        let mut want: Vec<(String, String)> = alerts
            .iter()
            .map(|(k, s)| (k.to_string(), s.to_string()))
            .collect();
        want.sort();
        assert_eq!(got, want, "{name}: alerts");
        // Each alert in plain sentences, the report's own words.
        for a in v["alerts"].as_array().into_iter().flatten() {
            let x = &a["explanation"];
            for part in ["observed", "healthy", "meaning"] {
                assert!(
                    x[part]
                        .as_str()
                        .is_some_and(|s| s.ends_with('.') && s.len() > 20),
                    "{name}: explanation.{part} of {a}"
                );
            }
            if a["kind"] == "media_intercepted" {
                let said = x["observed"].as_str().unwrap_or_default();
                assert!(said.contains("pseudo-TLS hello"), "{name}: {said}");
            }
        }
        if let Some(a) = v["alerts"]
            .as_array()
            .and_then(|a| a.iter().find(|a| a["kind"] == "media_intercepted"))
        {
            // The evidence says what was expected and what came, and what it means.
            let e = &a["evidence"];
            assert!(
                e["expected"].is_string() && e["meaning"].is_string(),
                "{name}: {e}"
            );
            if name == "intercepted.pcap" {
                // The forged reply came from three hops nearer than the server's SYN/ACK.
                assert_eq!(
                    (
                        &e["reply_ttl"],
                        &e["server_ttl_baseline"],
                        &e["ttl_differs"]
                    ),
                    (&json!(61), &json!(64), &json!(true)),
                    "{e}"
                );
            }
        }
    }
}
