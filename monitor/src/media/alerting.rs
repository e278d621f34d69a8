//! The two media alert conditions, decided from a flow's `Media` alone:
//! - `media_intercepted` (critical): the pseudo-TLS hello was answered by what the genuine
//!   server never sends, or refused by a TLS alert or a reset. Only for the pseudo-TLS hello:
//!   a real TLS hello answered by a real handshake is TLS, never interception.
//! - `ice_check_failure`: STUN requests unanswered past their timeout; a warning at the
//!   first, critical once every check of the flow has failed (none answered with success,
//!   none still waiting).
//!
//! Deciding is cheap and done for every flow; the evidence (named values, for the alert's
//! JSON) and the line for a person are built only for the flow an alert shows.

use serde::Serialize;

use super::{
    alert_config::MediaAlertConfig,
    pseudo_tls,
    stun::{Counts, Side},
    verdict::{ClientSent, Media, ServerReplied, Verdict},
};

/// Why `media_intercepted` holds for a flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Interception {
    /// Answered in the server's name by what the genuine server never sends (verdict
    /// `intercepted`).
    Answered,
    /// Refused by a TLS alert (verdict `rejected`).
    TlsAlert,
    /// Refused by a reset (verdict `rejected`).
    Reset,
}

impl Interception {
    pub fn name(self) -> &'static str {
        match self {
            Interception::Answered => "answered",
            Interception::TlsAlert => "tls_alert",
            Interception::Reset => "reset",
        }
    }

    /// What it means, in one sentence.
    pub fn meaning(self) -> &'static str {
        match self {
            Interception::Answered => {
                "a device in the path answered the media's pseudo-TLS hello in the server's \
                 name: TLS inspection or decryption is applied to this traffic"
            }
            Interception::TlsAlert => {
                "the media's pseudo-TLS hello was refused with a TLS alert, which the genuine \
                 server never sends: a device in the path took the media for TLS and blocked it"
            }
            Interception::Reset => {
                "the media's pseudo-TLS hello was answered by a reset instead of the \
                 server's fixed reply: a device in the path (or the server) refused the \
                 media it took for TLS"
            }
        }
    }
}

/// Whether `media_intercepted` holds for a flow, and why.
pub fn media_intercepted(cfg: &MediaAlertConfig, media: &Media) -> Option<Interception> {
    if !cfg.media_intercepted || media.client_sent != Some(ClientSent::PseudoTls) {
        return None;
    }
    match media.verdict? {
        Verdict::Intercepted => Some(Interception::Answered),
        Verdict::Rejected if media.server_replied == Some(ServerReplied::TlsAlert) => {
            Some(Interception::TlsAlert)
        }
        Verdict::Rejected => Some(Interception::Reset),
        Verdict::Ok | Verdict::NoReply => None,
    }
}

/// TTLs the flow table knows of the flow's server side: the reply's, and the baseline of the
/// server direction (its first packet). A reply from a device at another distance than the
/// server shows in them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReplyTtl {
    pub reply: Option<u8>,
    pub server_baseline: Option<u8>,
}

/// `media_intercepted`'s evidence.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct InterceptedEvidence {
    /// `intercepted` or `rejected`.
    pub verdict: &'static str,
    /// `answered`, `tls_alert` or `reset`.
    pub cause: &'static str,
    pub expected: &'static str,
    /// Expected and received, in words.
    pub got: String,
    pub expected_length: usize,
    pub expected_cipher: String,
    /// Bytes of the reply seen.
    pub reply_bytes: usize,
    /// Content type and declared length of each TLS record of the reply.
    pub record_types: Vec<u8>,
    pub record_lengths: Vec<u16>,
    pub handshake_types: Vec<u8>,
    /// The cipher the reply's ServerHello picked (`0x....`).
    pub cipher: Option<String>,
    pub alert_level: Option<u8>,
    pub alert_description: Option<u8>,
    /// The first field of the reply that differs from the genuine answer.
    pub mismatch_field: Option<&'static str>,
    pub mismatch_got: Option<String>,
    pub mismatch_expected: Option<String>,
    pub reply_after_s: Option<f64>,
    /// `client` or `server`.
    pub reset_from: Option<&'static str>,
    pub reply_ttl: Option<u8>,
    pub server_ttl_baseline: Option<u8>,
    /// Whether the reply's TTL differs from the server's baseline, when both are known.
    pub ttl_differs: Option<bool>,
    /// The reply's first bytes in hex.
    pub reply_head: String,
    pub meaning: &'static str,
}

/// The evidence of `media_intercepted` for a flow it holds for.
pub fn intercepted_evidence(
    cfg: &MediaAlertConfig,
    media: &Media,
    ttl: ReplyTtl,
) -> Option<InterceptedEvidence> {
    let why = media_intercepted(cfg, media)?;
    let e = media.evidence.as_ref()?;
    let g = &e.got;
    let ttl_differs = match (ttl.reply, ttl.server_baseline) {
        (Some(r), Some(b)) => Some(r != b),
        _ => None,
    };
    Some(InterceptedEvidence {
        verdict: media.verdict.map_or("", Verdict::name),
        cause: why.name(),
        expected: e.expected,
        got: e.describe(),
        expected_length: pseudo_tls::SERVER_HELLO_LEN,
        expected_cipher: format!("0x{:04x}", pseudo_tls::CIPHER),
        reply_bytes: g.bytes,
        record_types: g.records.iter().map(|r| r.0).collect(),
        record_lengths: g.records.iter().map(|r| r.1).collect(),
        handshake_types: g.handshakes.clone(),
        cipher: g.cipher.map(|c| format!("0x{c:04x}")),
        alert_level: g.alert.and_then(|a| a.0),
        alert_description: g.alert.and_then(|a| a.1),
        mismatch_field: e.mismatch.as_ref().map(|m| m.field),
        mismatch_got: e.mismatch.as_ref().map(|m| m.got.clone()),
        mismatch_expected: e.mismatch.as_ref().map(|m| m.expected.clone()),
        reply_after_s: e.reply_after_ns.map(|n| n as f64 / 1e9),
        reset_from: e.reset.map(|r| match r.from {
            Side::Client => "client",
            Side::Server => "server",
        }),
        reply_ttl: ttl.reply,
        server_ttl_baseline: ttl.server_baseline,
        ttl_differs,
        reply_head: g.head.iter().map(|b| format!("{b:02x}")).collect(),
        meaning: why.meaning(),
    })
}

/// The alert's line for a person.
pub fn intercepted_summary(why: Interception, media: &Media) -> String {
    let what = match why {
        Interception::Answered => "pseudo-TLS hello answered in the server's name",
        Interception::TlsAlert => "pseudo-TLS hello refused with a TLS alert",
        Interception::Reset => "pseudo-TLS hello answered by a reset",
    };
    match &media.evidence {
        Some(e) => format!("{what}: {}", e.describe()),
        None => what.to_string(),
    }
}

/// How bad `ice_check_failure` is for a flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IceFailure {
    /// Some requests unanswered, others answered or still waiting: a warning.
    SomeUnanswered,
    /// Every request failed, none answered with success and none waiting: critical.
    AllFailed,
}

impl IceFailure {
    pub fn meaning(self) -> &'static str {
        match self {
            IceFailure::SomeUnanswered => {
                "STUN connectivity checks on this flow went unanswered: something in the path \
                 drops checks or their answers, so the media may lose this path"
            }
            IceFailure::AllFailed => {
                "no STUN connectivity check on this flow was answered: the media cannot use \
                 this path, as something in it drops the checks or their answers"
            }
        }
    }
}

/// Whether `ice_check_failure` holds for a flow, and how bad it is.
pub fn ice_check_failure(cfg: &MediaAlertConfig, media: &Media) -> Option<IceFailure> {
    let c = media.stun.as_ref()?;
    if !cfg.ice_check_failure || c.unanswered == 0 {
        return None;
    }
    Some(if c.responses == 0 && c.pending == 0 {
        IceFailure::AllFailed
    } else {
        IceFailure::SomeUnanswered
    })
}

/// `ice_check_failure`'s evidence.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct IceEvidence {
    pub requests: u64,
    pub responses: u64,
    pub errors: u64,
    pub unanswered: u64,
    /// Requests still within the timeout.
    pub pending: u64,
    pub timeout_s: f64,
    /// When the last response came (none: never).
    pub last_answered_ns: Option<u64>,
    pub since_last_answer_s: Option<f64>,
    pub meaning: &'static str,
}

/// The evidence of `ice_check_failure` for a flow it holds for, at `now_ns`.
pub fn ice_evidence(cfg: &MediaAlertConfig, media: &Media, now_ns: u64) -> Option<IceEvidence> {
    let how = ice_check_failure(cfg, media)?;
    let c: &Counts = media.stun.as_ref()?;
    Some(IceEvidence {
        requests: c.requests,
        responses: c.responses,
        errors: c.errors,
        unanswered: c.unanswered,
        pending: c.pending,
        timeout_s: cfg.stun_timeout_s,
        last_answered_ns: c.last_answered_ns,
        since_last_answer_s: c
            .last_answered_ns
            .map(|t| now_ns.saturating_sub(t) as f64 / 1e9),
        meaning: how.meaning(),
    })
}

/// The alert's line for a person.
pub fn ice_summary(cfg: &MediaAlertConfig, c: &Counts, now_ns: u64) -> String {
    let last = match c.last_answered_ns {
        Some(t) => format!(
            "last answer {:.1} s ago",
            now_ns.saturating_sub(t) as f64 / 1e9
        ),
        None => "never answered".to_string(),
    };
    format!(
        "{} of {} STUN requests unanswered after {} s ({} answered, {} errors; {last})",
        c.unanswered, c.requests, cfg.stun_timeout_s, c.responses, c.errors
    )
}
