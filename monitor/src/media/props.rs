//! Properties of the media decoders on arbitrary bytes and on valid layouts with bytes
//! changed: nothing panics, and the first bytes of a message never decode to more than
//! the whole message does (a sample is a prefix, and must not claim what is not there).

use proptest::prelude::*;

use super::{
    pseudo_tls::{self, tests as ptls},
    stream::PayloadSample,
    stun::{
        self,
        tests::{ms_turn, rfc5389, SOFTWARE},
    },
    tls::{
        self,
        tests::{certificate, client_hello_record, handshake, record, server_hello},
        RecordMessage, TlsRecord,
    },
    turn::{
        self,
        tests::{ms_frame, rfc4571},
        Framing,
    },
    verdict::{judge, judge_timed, Exchange, Reset},
};

/// Valid layouts of every kind the decoders read.
fn layouts() -> Vec<Vec<u8>> {
    let flight = [server_hello(0xc02f), certificate(300), handshake(14, &[])].concat();
    let req = rfc5389(0x0001, [1; 12], &SOFTWARE);
    let ms = ms_turn(0x0003, [2; 16], &SOFTWARE);
    vec![
        client_hello_record("edge.example.com", &[0xc02f, 0x1301, 0x0018]),
        record(tls::HANDSHAKE, 0x0303, &flight),
        [
            record(tls::HANDSHAKE, 0x0303, &server_hello(0x0018)),
            record(tls::ALERT, 0x0303, &[2, 40]),
        ]
        .concat(),
        record(tls::ALERT, 0x0303, &[2; 26]),
        ptls::client_hello(),
        ptls::server_hello(),
        [ptls::server_hello(), ms_frame(turn::CONTROL, &ms)].concat(),
        [rfc4571(&req), rfc4571(&[0x80; 12]), rfc4571(&req)].concat(),
        [req.clone(), rfc5389(0x0111, [1; 12], &[])].concat(),
        [ms_frame(turn::CONTROL, &ms), ms_frame(turn::DATA, &[9; 20])].concat(),
    ]
}

/// A layout with a few bytes changed.
fn mutated() -> impl Strategy<Value = Vec<u8>> {
    let n = layouts().len();
    (
        0..n,
        proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
    )
        .prop_map(|(i, edits)| {
            let mut b = layouts()[i].clone();
            for (at, v) in edits {
                let at = at.index(b.len());
                b[at] = v;
            }
            b
        })
}

fn bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![proptest::collection::vec(any::<u8>(), 0..400), mutated()]
}

/// `part` (from a prefix) says nothing `whole` does not.
fn tls_not_more(part: &[TlsRecord], whole: &[TlsRecord]) -> Result<(), String> {
    if part.len() > whole.len() {
        return Err(format!(
            "{} records, the whole has {}",
            part.len(),
            whole.len()
        ));
    }
    for (p, w) in part.iter().zip(whole) {
        let same = (p.content_type, p.version, p.length) == (w.content_type, w.version, w.length);
        if !same || p.present > w.present || p.messages.len() > w.messages.len() {
            return Err(format!("record {p:?} vs {w:?}"));
        }
        for (pm, wm) in p.messages.iter().zip(&w.messages) {
            message_not_more(pm, wm)?;
        }
    }
    Ok(())
}

fn message_not_more(p: &RecordMessage, w: &RecordMessage) -> Result<(), String> {
    let fail = || Err(format!("{p:?} vs {w:?}"));
    let sub = |a: &[u16], b: &[u16]| a.is_empty() || a == b;
    let opt16 = |a: Option<u16>, b: Option<u16>| a.is_none() || a == b;
    let opt8 = |a: Option<u8>, b: Option<u8>| a.is_none() || a == b;
    match (p, w) {
        (RecordMessage::ClientHello(p), RecordMessage::ClientHello(w)) => {
            let ok = p.length == w.length
                && opt16(p.version, w.version)
                && opt8(p.session_id_len, w.session_id_len)
                && sub(&p.ciphers, &w.ciphers)
                && w.extensions.starts_with(&p.extensions)
                && (p.sni.is_none() || p.sni == w.sni)
                && (p.alpn.is_empty() || p.alpn == w.alpn)
                && (!p.complete || w.complete);
            if !ok {
                return fail();
            }
        }
        (RecordMessage::ServerHello(p), RecordMessage::ServerHello(w)) => {
            let ok = p.length == w.length
                && opt16(p.version, w.version)
                && opt8(p.session_id_len, w.session_id_len)
                && opt16(p.cipher, w.cipher)
                && opt8(p.compression, w.compression)
                && (!p.complete || w.complete);
            if !ok {
                return fail();
            }
        }
        (RecordMessage::Alert { level, .. }, RecordMessage::Alert { level: wl, .. }) => {
            if level.is_some() && level != wl {
                return fail();
            }
        }
        (p, w) => {
            if p.handshake_type() != w.handshake_type()
                || std::mem::discriminant(p) != std::mem::discriminant(w)
            {
                return fail();
            }
        }
    }
    Ok(())
}

fn stun_not_more(p: &Option<stun::StunMessage>, w: &Option<stun::StunMessage>) -> bool {
    match (p, w) {
        (None, _) => true,
        (Some(p), Some(w)) => {
            let same_but_complete = stun::StunMessage {
                complete: w.complete,
                ..p.clone()
            } == *w;
            same_but_complete && (!p.complete || w.complete)
        }
        (Some(_), None) => false,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn a_prefix_never_decodes_to_more(b in bytes(), cut in any::<prop::sample::Index>()) {
        let part = &b[..cut.index(b.len() + 1)];
        let (p, w) = (tls::decode(part), tls::decode(&b));
        match (&p, &w) {
            (Some(p), Some(w)) => tls_not_more(p, w).map_err(TestCaseError::fail)?,
            (Some(p), None) => prop_assert!(false, "prefix is TLS, whole is not: {p:?}"),
            _ => {}
        }
        prop_assert!(stun_not_more(&stun::decode(part), &stun::decode(&b)));
        for framing in [Framing::MsTurn, Framing::Rfc4571, Framing::Bare] {
            let (pf, wf) = (turn::frames(part, framing), turn::frames(&b, framing));
            prop_assert!(pf.len() <= wf.len(), "{framing:?}: {pf:?} vs {wf:?}");
            for (p, w) in pf.iter().zip(&wf) {
                prop_assert_eq!((p.start, p.kind, p.length), (w.start, w.kind, w.length));
                prop_assert!(stun_not_more(&p.stun, &w.stun), "{:?} vs {:?}", p, w);
            }
        }
        if pseudo_tls::is_client_hello(part) {
            prop_assert!(pseudo_tls::is_client_hello(&b));
        }
        if pseudo_tls::check_server_hello(part).is_ok() {
            prop_assert!(pseudo_tls::check_server_hello(&b).is_ok());
        }
    }

    #[test]
    fn the_verdict_never_panics(
        c in proptest::collection::vec((bytes(), any::<u32>(), any::<u32>(), any::<u64>()), 0..4),
        s in proptest::collection::vec((bytes(), any::<u32>(), any::<u32>(), any::<u64>()), 0..4),
        reset in any::<Option<(bool, u64)>>(),
        now in any::<u64>(),
        timeout in any::<u64>(),
    ) {
        let samples = |v: &[(Vec<u8>, u32, u32, u64)]| -> Vec<PayloadSample> {
            v.iter()
                .map(|(b, seq, len, t)| PayloadSample {
                    seq: *seq,
                    payload_len: *len,
                    time_ns: *t,
                    bytes: b.clone(),
                })
                .collect()
        };
        let (client, server) = (samples(&c), samples(&s));
        let reset = reset.map(|(server, time_ns)| Reset {
            from: if server { stun::Side::Server } else { stun::Side::Client },
            time_ns,
        });
        let m = judge(&Exchange {
            client: &client,
            server: &server,
            reset,
            now_ns: now,
            reply_timeout_ns: timeout,
            stun_timeout_ns: timeout,
        });
        if let Some(e) = &m.evidence {
            prop_assert!(!e.describe().is_empty());
        }
        for (b, ..) in c.iter().chain(&s) {
            let _ = turn::detect(b);
        }
    }

    #[test]
    fn the_verdict_holds_exactly_until_its_change_time(
        c in proptest::collection::vec((bytes(), 0u32..3, 0u64..20), 0..4),
        s in proptest::collection::vec((bytes(), 0u32..3, 0u64..20), 0..4),
        reset in any::<Option<(bool, u64)>>(),
        now in 0u64..40,
        timeouts in (1u64..15, 1u64..15),
        later in any::<u64>(),
    ) {
        // Whole segments in sequence (so the streams read on), at small times, so the
        // timeouts fall among them.
        let samples = |v: &[(Vec<u8>, u32, u64)]| -> Vec<PayloadSample> {
            let mut seq = 7u32;
            v.iter()
                .map(|(b, gap, t)| {
                    seq = seq.wrapping_add(*gap);
                    let p = PayloadSample {
                        seq,
                        payload_len: b.len() as u32,
                        time_ns: *t,
                        bytes: b.clone(),
                    };
                    seq = seq.wrapping_add(b.len() as u32);
                    p
                })
                .collect()
        };
        let (client, server) = (samples(&c), samples(&s));
        let reset = reset.map(|(server, time_ns)| Reset {
            from: if server { stun::Side::Server } else { stun::Side::Client },
            time_ns,
        });
        let at = |now_ns| Exchange {
            client: &client,
            server: &server,
            reset,
            now_ns,
            reply_timeout_ns: timeouts.0,
            stun_timeout_ns: timeouts.1,
        };
        let j = judge_timed(&at(now));
        prop_assert_eq!(&j.media, &judge(&at(now)));
        match j.changes_at_ns {
            None => {
                let t = now.saturating_add(later % 100);
                prop_assert_eq!(&judge(&at(t)), &j.media);
                prop_assert_eq!(&judge(&at(u64::MAX)), &j.media);
            }
            Some(c) => {
                prop_assert!(c > now, "changes at {} <= now {}", c, now);
                prop_assert_eq!(&judge(&at(c - 1)), &j.media);
                prop_assert_ne!(&judge(&at(c)), &j.media);
            }
        }
    }
}
