//! An alert's evidence values named and rounded as people read them (percentages with one
//! decimal, seconds, byte counts, TLS names), never raw JSON: the values half of
//! [`super::explain`].

use serde_json::{Map, Value};

use crate::format;

pub(super) fn alert_description(d: u8) -> String {
    let name = tls_parser::TlsAlertDescription(d).to_string();
    if name.starts_with("TlsAlertDescription") {
        format!("description {d}")
    } else {
        camel_words(&name)
    }
}

pub(super) fn handshake_names(v: Option<&Value>) -> String {
    let names: Vec<String> = v
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_u64)
                .map(|t| {
                    let n = tls_parser::TlsHandshakeType(t as u8).to_string();
                    match n.as_str() {
                        // The RFC's name, as the media code (src/media/) says it.
                        "ServerDone" => "ServerHelloDone".into(),
                        _ if n.starts_with("TlsHandshakeType") => format!("type {t}"),
                        _ => n,
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    names.join(", ")
}

fn record_names(v: &Value) -> String {
    let names: Vec<String> = v
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(Value::as_u64)
                .map(|t| {
                    let n = tls_parser::TlsRecordType(t as u8).to_string();
                    if n.starts_with("TlsRecordType") {
                        format!("type {t}")
                    } else {
                        camel_words(&n)
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    names.join(", ")
}

/// How one evidence field is shown.
#[derive(Clone, Copy)]
enum Shown {
    Count,
    Seconds,
    Percent,
    Bytes,
    Ttl,
    YesNo,
    Words,
    Text,
    Records,
    Handshakes,
    ByteList,
    AlertLevel,
    AlertDescription,
    /// Said in the sentences, or unreadable as a value (an absolute clock).
    Hidden,
}

/// The evidence fields the monitor writes (alerts/finding.rs, media/alerting.rs), in the
/// order a person reads them, with their names for a person.
const FIELDS: &[(&str, &str, Shown)] = &[
    ("what", "case", Shown::Words),
    ("cause", "cause", Shown::Words),
    ("verdict", "verdict", Shown::Words),
    ("syns", "SYNs sent", Shown::Count),
    ("synacks", "SYN/ACKs received", Shown::Count),
    ("elapsed_s", "time from the first packet", Shown::Seconds),
    ("waited_s", "waited", Shown::Seconds),
    ("rsts", "resets", Shown::Count),
    ("suspect_injected", "suspect injected", Shown::YesNo),
    ("ttl_baseline", "sender's usual TTL", Shown::Ttl),
    ("retransmits", "retransmitted segments", Shown::Count),
    ("data_segments", "data segments", Shown::Count),
    ("rate", "retransmission rate", Shown::Percent),
    ("threshold", "alert threshold", Shown::Percent),
    ("window_s", "over the last", Shown::Seconds),
    ("bytes_in_flight", "bytes in flight", Shown::Bytes),
    (
        "no_ack_progress_s",
        "no acknowledgment progress for",
        Shown::Seconds,
    ),
    (
        "retransmits_without_progress",
        "retransmissions without progress",
        Shown::Count,
    ),
    ("held_s", "window held at zero for", Shown::Seconds),
    (
        "zero_window_advertisements",
        "zero-window advertisements",
        Shown::Count,
    ),
    ("probes", "window probes", Shown::Count),
    ("expected", "expected reply", Shown::Text),
    ("expected_length", "expected reply length", Shown::Bytes),
    ("expected_cipher", "expected cipher", Shown::Text),
    ("got", "reply received", Shown::Text),
    ("reply_bytes", "reply length", Shown::Bytes),
    ("record_types", "reply's TLS records", Shown::Records),
    ("record_lengths", "their lengths", Shown::ByteList),
    ("handshake_types", "handshake messages", Shown::Handshakes),
    ("cipher", "cipher chosen", Shown::Text),
    ("alert_level", "TLS alert level", Shown::AlertLevel),
    ("alert_description", "TLS alert", Shown::AlertDescription),
    ("mismatch_field", "first difference", Shown::Text),
    ("mismatch_got", "received there", Shown::Text),
    ("mismatch_expected", "expected there", Shown::Text),
    ("reply_after_s", "reply after", Shown::Seconds),
    ("reset_from", "reset from", Shown::Text),
    ("reply_ttl", "reply's TTL", Shown::Ttl),
    ("server_ttl_baseline", "server's usual TTL", Shown::Ttl),
    ("ttl_differs", "TTL differs from the server's", Shown::YesNo),
    ("reply_head", "reply's first bytes (hex)", Shown::Text),
    ("requests", "STUN requests", Shown::Count),
    ("responses", "answered", Shown::Count),
    ("errors", "error responses", Shown::Count),
    ("unanswered", "unanswered", Shown::Count),
    ("pending", "still waiting", Shown::Count),
    ("timeout_s", "answer timeout", Shown::Seconds),
    (
        "since_last_answer_s",
        "since the last answer",
        Shown::Seconds,
    ),
    ("last_answered_ns", "", Shown::Hidden),
    ("meaning", "", Shown::Hidden),
];

/// The evidence values named and rounded: the known fields in [`FIELDS`] order, then any
/// other field by its own name, guessed from its suffix. Absent (null) values are left out.
pub fn values(e: &Map<String, Value>) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (key, label, how) in FIELDS {
        if let Some(v) = e.get(*key).filter(|v| !v.is_null()) {
            if let Some(s) = show(v, *how) {
                out.push((label.to_string(), s));
            }
        }
    }
    for (key, v) in e {
        if v.is_null() || FIELDS.iter().any(|f| f.0 == key) {
            continue;
        }
        let how = if key.ends_with("_s") {
            Shown::Seconds
        } else if key.ends_with("_ns") {
            Shown::Hidden
        } else if key.contains("rate") || key.contains("ratio") {
            Shown::Percent
        } else if key.contains("bytes") {
            Shown::Bytes
        } else {
            Shown::Text
        };
        if let Some(s) = show(v, how) {
            out.push((words(key), s));
        }
    }
    out
}

fn show(v: &Value, how: Shown) -> Option<String> {
    let num = v.as_f64();
    Some(match how {
        Shown::Hidden => return None,
        Shown::Count => count(v.as_u64()?),
        Shown::Seconds => seconds(num?),
        Shown::Percent => percent(num?),
        Shown::Bytes => byte_count(v.as_u64()?),
        Shown::Ttl => v.as_u64()?.to_string(),
        // A count where a flag was expected (`suspect_injected` of a `reset`).
        Shown::YesNo => match v {
            Value::Bool(b) => if *b { "yes" } else { "no" }.into(),
            _ => plain(v),
        },
        Shown::Words => words(v.as_str()?),
        Shown::Records => record_names(v),
        Shown::Handshakes => handshake_names(Some(v)),
        Shown::ByteList => v
            .as_array()?
            .iter()
            .filter_map(Value::as_u64)
            .map(byte_count)
            .collect::<Vec<_>>()
            .join(", "),
        Shown::AlertLevel => match v.as_u64()? {
            1 => "warning (1)".into(),
            2 => "fatal (2)".into(),
            n => n.to_string(),
        },
        Shown::AlertDescription => {
            let d = v.as_u64()?;
            format!("{} ({d})", alert_description(d as u8))
        }
        Shown::Text => plain(v),
    })
}

/// Any JSON value as text a person reads: numbers rounded, lists joined, never JSON.
fn plain(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::Bool(b) => if *b { "yes" } else { "no" }.into(),
        Value::Number(n) => match (n.as_u64(), n.as_i64(), n.as_f64()) {
            (Some(u), _, _) => count(u),
            (_, Some(i), _) => i.to_string(),
            (_, _, Some(f)) => rounded(f),
            _ => n.to_string(),
        },
        Value::String(s) => s.clone(),
        Value::Array(a) => a.iter().map(plain).collect::<Vec<_>>().join(", "),
        Value::Object(o) => o
            .iter()
            .map(|(k, v)| format!("{}: {}", words(k), plain(v)))
            .collect::<Vec<_>>()
            .join("; "),
    }
}

/// A number to three significant digits at most: `0.0331`, `12.3`, `1234`.
pub(super) fn rounded(f: f64) -> String {
    if f == 0.0 || !f.is_finite() {
        return format!("{f}");
    }
    let digits = (2 - f.abs().log10().floor() as i32).clamp(0, 6) as usize;
    let s = format!("{f:.digits$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

/// A share (0.0331) as a percentage with one decimal: `3.3 %`.
pub fn percent(ratio: f64) -> String {
    format!("{:.1} %", ratio * 100.0)
}

/// Seconds as people read them: `160 µs`, `5.0 ms`, `420 ms`, `5.4 s`, `5m00s`.
pub fn seconds(s: f64) -> String {
    if !s.is_finite() || s < 0.0 {
        return "an unknown time".into();
    }
    if s == 0.0 {
        "0 s".into()
    } else if s < 0.001 {
        format!("{:.0} µs", s * 1e6)
    } else if s < 0.01 {
        format!("{:.1} ms", s * 1e3)
    } else if s < 1.0 {
        format!("{:.0} ms", s * 1e3)
    } else if s < 60.0 {
        format!("{s:.1} s")
    } else {
        format::duration((s * 1e9) as u64)
    }
}

/// A whole number with thousands separated: `12,345`.
pub fn count(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A byte count: `1,092 bytes`, `2.5M bytes (2,500,000)` past ten thousand.
pub fn byte_count(n: u64) -> String {
    if n < 10_000 {
        format!("{} {}", count(n), if n == 1 { "byte" } else { "bytes" })
    } else {
        format!("{} bytes ({})", format::bytes(n as f64), count(n))
    }
}

/// `reset_after_client_hello` as `reset after client hello`.
pub(super) fn words(s: &str) -> String {
    s.replace('_', " ")
}

/// `HandshakeFailure` as `handshake failure`.
fn camel_words(s: &str) -> String {
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if c.is_uppercase() && i > 0 {
            out.push(' ');
        }
        out.extend(c.to_lowercase());
    }
    out
}
