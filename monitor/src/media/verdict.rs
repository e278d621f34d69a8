//! The per-flow media verdict: what the client sent first, what the server side sent back,
//! and what that means. The pseudo-TLS hello of MS-TURN has one genuine answer
//! (`pseudo_tls`), so any other answer was made by a device in the path (`intercepted`),
//! a TLS alert or a reset refuses it (`rejected`), and silence past the reply timeout is
//! `no_reply`. A real TLS hello answered by a real handshake is `ok`: that is TLS, not
//! interception. The evidence keeps what was expected and what came, for an alert to show.

use super::{
    pseudo_tls::{self, Mismatch},
    stream::{Sample, Stream},
    stun::{self, Counts, Matcher, Side},
    tls,
    turn::{self, Framing},
};

/// What the client sent first. `name()` is the JSON contract.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientSent {
    PseudoTls,
    Tls,
    Stun,
    MsTurn,
    Other,
}

impl ClientSent {
    pub fn name(self) -> &'static str {
        match self {
            ClientSent::PseudoTls => "pseudo_tls",
            ClientSent::Tls => "tls",
            ClientSent::Stun => "stun",
            ClientSent::MsTurn => "ms_turn",
            ClientSent::Other => "other",
        }
    }
}

/// What the server side sent first. `name()` is the JSON contract.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServerReplied {
    PseudoTls,
    Tls,
    TlsAlert,
    Stun,
    MsTurn,
    Other,
}

impl ServerReplied {
    pub fn name(self) -> &'static str {
        match self {
            ServerReplied::PseudoTls => "pseudo_tls",
            ServerReplied::Tls => "tls",
            ServerReplied::TlsAlert => "tls_alert",
            ServerReplied::Stun => "stun",
            ServerReplied::MsTurn => "ms_turn",
            ServerReplied::Other => "other",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Ok,
    Intercepted,
    Rejected,
    NoReply,
}

impl Verdict {
    pub fn name(self) -> &'static str {
        match self {
            Verdict::Ok => "ok",
            Verdict::Intercepted => "intercepted",
            Verdict::Rejected => "rejected",
            Verdict::NoReply => "no_reply",
        }
    }
}

/// A reset on the flow: which side sent it, and when.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reset {
    pub from: Side,
    pub time_ns: u64,
}

/// What the verdict is judged from.
#[derive(Clone, Copy, Debug)]
pub struct Input<'a> {
    /// The first payload samples of each direction, in the order seen.
    pub client: &'a [Sample],
    pub server: &'a [Sample],
    pub reset: Option<Reset>,
    pub now_ns: u64,
    /// How long a hello (or a STUN request) may wait for its answer.
    pub reply_timeout_ns: u64,
}

/// The shape of the server side's first bytes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Shape {
    /// Bytes of the reply seen (the leading stream of the server side).
    pub bytes: usize,
    /// (content type, declared length) of each TLS record.
    pub records: Vec<(u8, u16)>,
    /// Handshake types in order.
    pub handshakes: Vec<u8>,
    /// The cipher of the first ServerHello.
    pub cipher: Option<u16>,
    /// (level, description) of the first alert.
    pub alert: Option<(Option<u8>, Option<u8>)>,
    /// The first bytes, for showing in hex.
    pub head: Vec<u8>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Evidence {
    /// What the genuine server sends, in words.
    pub expected: &'static str,
    pub got: Shape,
    /// For a pseudo-TLS hello, the first field of the reply that differs.
    pub mismatch: Option<Mismatch>,
    /// Time from the hello to the first reply byte.
    pub reply_after_ns: Option<u64>,
    pub reset: Option<Reset>,
}

impl Evidence {
    /// One line: what was expected, what came back.
    pub fn describe(&self) -> String {
        let g = &self.got;
        let mut got = if g.bytes == 0 {
            "nothing".to_string()
        } else if g.records.is_empty() {
            format!("{} bytes, not TLS", g.bytes)
        } else {
            let recs: Vec<String> = g
                .records
                .iter()
                .map(|(t, l)| format!("type {t} length {l}"))
                .collect();
            format!("{} bytes in TLS records [{}]", g.bytes, recs.join(", "))
        };
        if !g.handshakes.is_empty() {
            let hs: Vec<String> = g.handshakes.iter().map(|h| h.to_string()).collect();
            got.push_str(&format!(", handshake types [{}]", hs.join(", ")));
        }
        if let Some(c) = g.cipher {
            got.push_str(&format!(", cipher 0x{c:04x}"));
        }
        if let Some((level, desc)) = g.alert {
            let n = |v: Option<u8>| v.map_or("encrypted".into(), |v| v.to_string());
            got.push_str(&format!(
                ", alert level {} description {}",
                n(level),
                n(desc)
            ));
        }
        if let Some(m) = &self.mismatch {
            got.push_str(&format!(
                "; {} is {}, expected {}",
                m.field, m.got, m.expected
            ));
        }
        if let Some(r) = self.reset {
            let side = match r.from {
                Side::Client => "client",
                Side::Server => "server",
            };
            got.push_str(&format!("; reset from the {side} side"));
        }
        format!("expected {}; got {got}", self.expected)
    }
}

/// The media verdict of one flow. Every field is `None` until it is known.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Media {
    pub client_sent: Option<ClientSent>,
    pub server_replied: Option<ServerReplied>,
    pub verdict: Option<Verdict>,
    /// The server name of a real TLS ClientHello.
    pub sni: Option<String>,
    /// STUN transactions, when the flow carries STUN.
    pub stun: Option<Counts>,
    pub evidence: Option<Evidence>,
}

const GENUINE: &str = "ServerHello + ServerHelloDone in one 83-byte record, \
                       cipher 0x0018, 32-byte session id";

pub fn judge(input: &Input) -> Media {
    let client = Stream::new(input.client);
    let server = Stream::new(input.server);
    let mut media = Media::default();
    let Some(hello_ns) = client.first_time() else {
        media.server_replied = server_replied(&server.bytes);
        return media;
    };
    let sent = client_sent(&client.bytes);
    media.client_sent = Some(sent);
    media.server_replied = server_replied(&server.bytes);
    if sent == ClientSent::Tls {
        media.sni = tls::decode(&client.bytes)
            .into_iter()
            .flatten()
            .flat_map(|r| r.messages)
            .find_map(|m| match m {
                tls::Message::ClientHello(h) => h.sni,
                _ => None,
            });
    }
    media.stun = stun_counts(sent, &client, &server, input);
    let reply_after_ns = server.first_time().map(|t| t.saturating_sub(hello_ns));
    let reset = input.reset;
    let mismatch = (sent == ClientSent::PseudoTls && !server.bytes.is_empty())
        .then(|| pseudo_tls::check_server_hello(&server.bytes).err())
        .flatten();
    let waited = input.now_ns.saturating_sub(hello_ns) >= input.reply_timeout_ns;
    let server_reset = reset.is_some_and(|r| r.from == Side::Server);
    media.verdict = match (sent, media.server_replied) {
        (ClientSent::Other, _) => None,
        (_, None) if server_reset => Some(Verdict::Rejected),
        (_, None) if waited || reset.is_some() => Some(Verdict::NoReply),
        (_, None) => None,
        (_, Some(ServerReplied::TlsAlert)) => Some(Verdict::Rejected),
        (ClientSent::PseudoTls, Some(_)) => match &mismatch {
            None => Some(Verdict::Ok),
            // The start of the genuine answer, the rest not yet seen.
            Some(m) if m.field == "reply length" && reset.is_none() && !waited => None,
            Some(m) if m.field == "reply length" && reset.is_some() => Some(Verdict::Rejected),
            Some(_) => Some(Verdict::Intercepted),
        },
        (ClientSent::Tls, Some(ServerReplied::Tls)) => Some(Verdict::Ok),
        (
            ClientSent::Stun | ClientSent::MsTurn,
            Some(ServerReplied::Stun | ServerReplied::MsTurn),
        ) => Some(Verdict::Ok),
        // A reply of another protocol to TLS or STUN: not judged.
        (_, Some(_)) => None,
    };
    media.evidence = media.verdict.map(|_| Evidence {
        expected: match sent {
            ClientSent::PseudoTls => GENUINE,
            ClientSent::Tls => "a TLS handshake (ServerHello)",
            ClientSent::Stun | ClientSent::MsTurn => "a STUN response",
            ClientSent::Other => "",
        },
        got: shape(&server.bytes),
        mismatch,
        reply_after_ns,
        reset,
    });
    media
}

fn client_sent(bytes: &[u8]) -> ClientSent {
    if pseudo_tls::is_client_hello(bytes) {
        ClientSent::PseudoTls
    } else if tls::decode(bytes).is_some() {
        ClientSent::Tls
    } else {
        match turn::detect(bytes) {
            Some(Framing::MsTurn) => ClientSent::MsTurn,
            Some(_) => ClientSent::Stun,
            None => ClientSent::Other,
        }
    }
}

fn server_replied(bytes: &[u8]) -> Option<ServerReplied> {
    if bytes.is_empty() {
        return None;
    }
    if pseudo_tls::check_server_hello(bytes).is_ok() {
        return Some(ServerReplied::PseudoTls);
    }
    if let Some(records) = tls::decode(bytes) {
        let alert = records[0].content_type == tls::ALERT;
        return Some(if alert {
            ServerReplied::TlsAlert
        } else {
            ServerReplied::Tls
        });
    }
    Some(match turn::detect(bytes) {
        Some(Framing::MsTurn) => ServerReplied::MsTurn,
        Some(_) => ServerReplied::Stun,
        None => ServerReplied::Other,
    })
}

fn shape(bytes: &[u8]) -> Shape {
    let mut s = Shape {
        bytes: bytes.len(),
        head: bytes[..bytes.len().min(32)].to_vec(),
        ..Shape::default()
    };
    for r in tls::decode(bytes).into_iter().flatten() {
        s.records.push((r.content_type, r.length));
        for m in &r.messages {
            s.handshakes.extend(m.handshake_type());
            match m {
                tls::Message::ServerHello(h) if s.cipher.is_none() => s.cipher = h.cipher,
                tls::Message::Alert { level, description } if s.alert.is_none() => {
                    s.alert = Some((*level, *description))
                }
                _ => {}
            }
        }
    }
    s
}

/// Where the framed messages begin: after the pseudo-TLS hello or its answer, which are
/// whole TLS handshake records.
fn after_handshake(bytes: &[u8]) -> usize {
    let mut at = 0;
    for r in tls::decode(bytes).into_iter().flatten() {
        if r.content_type != tls::HANDSHAKE || !r.complete() {
            break;
        }
        at += tls::RECORD_HEADER + usize::from(r.length);
    }
    at
}

fn stun_counts(
    sent: ClientSent,
    client: &Stream,
    server: &Stream,
    input: &Input,
) -> Option<Counts> {
    let skip = |s: &Stream| match sent {
        ClientSent::PseudoTls => after_handshake(&s.bytes),
        ClientSent::Stun | ClientSent::MsTurn => 0,
        _ => s.bytes.len(),
    };
    let mut messages: Vec<(u64, Side, stun::Message)> = Vec::new();
    for (side, s) in [(Side::Client, client), (Side::Server, server)] {
        let from = skip(s);
        let bytes = &s.bytes[from..];
        let Some(framing) = turn::detect(bytes) else {
            continue;
        };
        for f in turn::frames(bytes, framing) {
            if let (Some(m), Some(t)) = (f.stun, s.time_at(from + f.start)) {
                messages.push((t, side, m));
            }
        }
    }
    if messages.is_empty() {
        return None;
    }
    // In time order; a request before an answer seen at the same instant.
    messages.sort_by_key(|(t, _, m)| (*t, m.class != stun::Class::Request));
    let mut matcher = Matcher::default();
    for (t, side, m) in &messages {
        matcher.feed(*side, m, *t);
    }
    Some(matcher.counts(input.now_ns, input.reply_timeout_ns))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::{
        pseudo_tls::tests as ptls,
        stun::tests::{ms_turn, rfc5389, SOFTWARE},
        tls::tests::{certificate, client_hello_record, handshake, record, server_hello},
        turn::tests::{ms_frame, rfc4571},
    };

    const MS: u64 = 1_000_000;
    const TIMEOUT: u64 = 5_000 * MS;

    /// Whole segments, one after another from sequence 1000, at the given times.
    fn segments(parts: &[(u64, Vec<u8>)]) -> Vec<Sample> {
        let mut seq = 1000u32;
        parts
            .iter()
            .map(|(t, b)| {
                let s = Sample {
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

    fn judge_at(client: &[Sample], server: &[Sample], reset: Option<Reset>, now: u64) -> Media {
        judge(&Input {
            client,
            server,
            reset,
            now_ns: now,
            reply_timeout_ns: TIMEOUT,
        })
    }

    fn names(m: &Media) -> (Option<&str>, Option<&str>, Option<&str>) {
        (
            m.client_sent.map(ClientSent::name),
            m.server_replied.map(ServerReplied::name),
            m.verdict.map(Verdict::name),
        )
    }

    fn hello() -> Vec<Sample> {
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
}
