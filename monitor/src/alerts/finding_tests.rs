//! The line and the evidence each finding renders, pinned: README.md ("Alerts") and
//! docs/contract.md name these texts and fields, and the alert log and JSON carry them.

use monitor_common::flow::{C2S, S2C};
use serde_json::{json, Value};

use super::{
    finding::{Finding, Found, HandshakeEnd},
    window::Rate,
};
use crate::model::{Kind, Level};

const S: u64 = 1_000_000_000;

fn finding(kind: Kind, dir: Option<usize>, found: Found) -> Finding {
    Finding {
        kind,
        dir,
        level: Level::Critical,
        found,
    }
}

fn rendered(f: Finding) -> (String, Value) {
    (f.summary(), Value::Object(f.evidence()))
}

fn handshake(end: HandshakeEnd) -> Finding {
    let found = Found::Handshake {
        end,
        syns: 3,
        synacks: 1,
        elapsed_ns: 2 * S + S / 2,
    };
    finding(Kind::HandshakeFailure, None, found)
}

#[test]
fn handshake_findings_render_their_line_and_evidence() {
    let evidence = |what: &str| json!({ "what": what, "syns": 3, "synacks": 1, "elapsed_s": 2.5 });
    let cases = [
        (
            HandshakeEnd::Refused,
            "refused: the SYN was answered by a reset",
            "refused",
        ),
        (HandshakeEnd::Reset, "reset during the handshake", "reset"),
        (
            HandshakeEnd::Timeout {
                synack: false,
                waited_ns: 3 * S + 300_000_000,
            },
            "no SYN/ACK after 3.3 s (3 SYNs)",
            "timeout",
        ),
        (
            HandshakeEnd::Timeout {
                synack: true,
                waited_ns: 4 * S,
            },
            "SYN/ACK sent but the handshake never completed after 4.0 s (3 SYNs)",
            "timeout",
        ),
        (
            HandshakeEnd::Pending,
            "SYN retransmitted (3 SYNs), handshake pending",
            "syn_retransmitted",
        ),
        (
            HandshakeEnd::Completed,
            "handshake needed 3 SYNs",
            "syn_retransmitted",
        ),
    ];
    for (end, line, what) in cases {
        assert_eq!(rendered(handshake(end)), (line.to_string(), evidence(what)));
    }
}

#[test]
fn tls_and_reset_findings_render_their_line_and_evidence() {
    let hello_reset = |suspect| Found::HelloReset {
        rsts: 1,
        suspect,
        ttl_base: 64,
    };
    assert_eq!(
        rendered(finding(Kind::TlsStall, Some(S2C), hello_reset(true))),
        (
            "reset (s2c) right after the ClientHello, suspect injected".to_string(),
            json!({ "what": "reset_after_client_hello", "rsts": 1, "suspect_injected": true, "ttl_baseline": 64 })
        )
    );
    assert_eq!(
        finding(Kind::TlsStall, Some(C2S), hello_reset(false)).summary(),
        "reset (c2s) right after the ClientHello"
    );
    let no_reply = Found::NoServerReply {
        waited_ns: 5 * S + S / 2,
    };
    assert_eq!(
        rendered(finding(Kind::TlsStall, Some(S2C), no_reply)),
        (
            "no server reply 5.5 s after the ClientHello".to_string(),
            json!({ "what": "no_server_reply", "waited_s": 5.5 })
        )
    );
    let reset = |rsts, suspect_injected| Found::Reset {
        rsts,
        suspect_injected,
        ttl_base: 57,
    };
    assert_eq!(
        rendered(finding(Kind::Reset, Some(C2S), reset(1, 0))),
        (
            "1 reset (c2s) in an established session".to_string(),
            json!({ "rsts": 1, "suspect_injected": 0, "ttl_baseline": 57 })
        )
    );
    assert_eq!(
        finding(Kind::Reset, Some(S2C), reset(2, 1)).summary(),
        "2 resets (s2c) in an established session, suspect injected (TTL, IP-ID or burst off \
         the peer's)"
    );
}

#[test]
fn rate_stall_and_window_findings_render_their_line_and_evidence() {
    let rate = Rate {
        retransmits: 20,
        segments: 1000,
        ratio: 0.02,
        span_ns: 10 * S,
    };
    let found = Found::RetransmitRate {
        rate,
        threshold: 0.01,
    };
    assert_eq!(
        rendered(finding(Kind::RetransmitRate, Some(S2C), found)),
        (
            "2.0 % of 1000 data segments retransmitted (s2c) in 10 s".to_string(),
            json!({ "retransmits": 20, "data_segments": 1000, "rate": 0.02, "window_s": 10.0, "threshold": 0.01 })
        )
    );
    let stall = |blackhole, silent| Found::Stall {
        blackhole,
        silent,
        in_flight: 4000,
        quiet_ns: 6 * S,
        unacked_resends: 5,
    };
    let evidence = json!({ "bytes_in_flight": 4000, "no_ack_progress_s": 6.0, "retransmits_without_progress": 5 });
    let lines = [
        (
            true,
            true,
            "5 retransmissions (c2s) without an ACK moving: blackhole",
        ),
        (
            false,
            false,
            "data (c2s) resent 6.0 s after the ACK last moved",
        ),
        (false, true, "4000 bytes (c2s) unacknowledged for 6.0 s"),
    ];
    for (blackhole, silent, line) in lines {
        let f = finding(Kind::Stall, Some(C2S), stall(blackhole, silent));
        assert_eq!(rendered(f), (line.to_string(), evidence.clone()));
    }
    let zero = Found::ZeroWindow {
        held_ns: 12 * S,
        advertisements: 7,
        probes: 3,
    };
    assert_eq!(
        rendered(finding(Kind::ZeroWindow, Some(S2C), zero)),
        (
            "server receiver's window at zero for 12.0 s (c2s blocked)".to_string(),
            json!({ "held_s": 12.0, "zero_window_advertisements": 7, "probes": 3 })
        )
    );
    assert_eq!(
        finding(Kind::ZeroWindow, Some(C2S), zero).summary(),
        "client receiver's window at zero for 12.0 s (s2c blocked)"
    );
}
