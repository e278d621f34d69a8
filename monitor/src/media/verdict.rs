//! The per-flow media verdict: what the client sent first, what the server side sent back,
//! and what that means. The pseudo-TLS hello of MS-TURN has one genuine answer
//! (`pseudo_tls`), so any other answer was made by a device in the path (`intercepted`),
//! a TLS alert or a reset refuses it (`rejected`), and silence past the reply timeout is
//! `no_reply`. A real TLS hello answered by a real handshake is `ok`: that is TLS, not
//! interception. The evidence keeps what was expected and what came, for an alert to show.

use super::{
    pseudo_tls::{self, Mismatch},
    stream::{PayloadSample, SampleStream},
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
pub struct Exchange<'a> {
    /// The first payload samples of each direction, in the order seen.
    pub client: &'a [PayloadSample],
    pub server: &'a [PayloadSample],
    pub reset: Option<Reset>,
    pub now_ns: u64,
    /// How long a hello may wait for its answer.
    pub reply_timeout_ns: u64,
    /// How long a STUN request may wait for its response before it counts as unanswered.
    pub stun_timeout_ns: u64,
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

/// What the genuine server answers to the pseudo-TLS hello, as the evidence says it.
pub const GENUINE: &str = "ServerHello + ServerHelloDone in one 83-byte record, \
                       cipher 0x0018, 32-byte session id";

pub fn judge(input: &Exchange) -> Media {
    judge_timed(input).media
}

/// A verdict, and when time alone would change it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Judged {
    pub media: Media,
    /// The earliest later `now_ns` at which [`judge`] of the same samples and reset gives
    /// another `Media` (the hello's wait running out, a STUN request turning unanswered);
    /// `None` when no later time changes it. A caller holding many flows re-judges a flow
    /// with no new sample only then.
    pub changes_at_ns: Option<u64>,
}

/// [`judge`], with the time its answer holds until.
pub fn judge_timed(input: &Exchange) -> Judged {
    let client = SampleStream::new(input.client);
    let server = SampleStream::new(input.server);
    let mut media = Media::default();
    let Some(hello_ns) = client.first_time() else {
        media.server_replied = server_replied(&server.bytes);
        return Judged {
            media,
            changes_at_ns: None,
        };
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
                tls::RecordMessage::ClientHello(h) => h.sni,
                _ => None,
            });
    }
    let (stun, stun_changes_at) = match stun_counts(sent, &client, &server, input) {
        Some((counts, at)) => (Some(counts), at),
        None => (None, None),
    };
    media.stun = stun;
    let reply_after_ns = server.first_time().map(|t| t.saturating_sub(hello_ns));
    let reset = input.reset;
    let mismatch = (sent == ClientSent::PseudoTls && !server.bytes.is_empty())
        .then(|| pseudo_tls::check_server_hello(&server.bytes).err())
        .flatten();
    let waited = input.now_ns.saturating_sub(hello_ns) >= input.reply_timeout_ns;
    let server_reset = reset.is_some_and(|r| r.from == Side::Server);
    let replied = media.server_replied;
    let decide = |waited: bool| match (sent, replied) {
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
    media.verdict = decide(waited);
    // The hello's wait running out changes the verdict only if judging it as run out does.
    let hello_changes_at = (!waited && decide(true) != media.verdict)
        .then(|| hello_ns.saturating_add(input.reply_timeout_ns));
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
    let changes_at_ns = match (hello_changes_at, stun_changes_at) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    Judged {
        media,
        changes_at_ns,
    }
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
                tls::RecordMessage::ServerHello(h) if s.cipher.is_none() => s.cipher = h.cipher,
                tls::RecordMessage::Alert { level, description } if s.alert.is_none() => {
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
    client: &SampleStream,
    server: &SampleStream,
    input: &Exchange,
) -> Option<(Counts, Option<u64>)> {
    let skip = |s: &SampleStream| match sent {
        ClientSent::PseudoTls => after_handshake(&s.bytes),
        ClientSent::Stun | ClientSent::MsTurn => 0,
        _ => s.bytes.len(),
    };
    let mut messages: Vec<(u64, Side, stun::StunMessage)> = Vec::new();
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
    let (now, timeout) = (input.now_ns, input.stun_timeout_ns);
    Some((
        matcher.counts(now, timeout),
        matcher.next_expiry(now, timeout),
    ))
}
