//! Each alert kind in plain sentences, written once: what was observed, what a healthy flow
//! does instead, and what it means; and the alert's evidence values named and rounded as
//! people read them. A pure function of the alert's kind, direction and evidence as recorded
//! (the `evidence` object of its transition line), so the terminal UI, the JSON summary, the
//! HTML and the Markdown report say the same thing, and a recording from an older or newer
//! monitor still reads.

use serde_json::{Map, Value};

mod values;

#[cfg(test)]
use values::rounded;
use values::{
    alert_description, byte_count, count, handshake_names, percent, seconds, values, words,
};

/// What a person reads about one alert.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Explanation {
    pub observed: String,
    pub healthy: String,
    pub meaning: String,
    /// The evidence as (name, value) pairs, in the order a person reads them.
    pub values: Vec<(String, String)>,
}

/// Explains an alert of `kind` (`handshake_failure`, `reset`, ...); `direction` is the
/// transition's `c2s`/`s2c`, when the alert is about one.
pub fn explain(kind: &str, direction: Option<&str>, evidence: &Value) -> Explanation {
    let empty = Map::new();
    let e = evidence.as_object().unwrap_or(&empty);
    let ev = Ev(e);
    let (observed, healthy, meaning) = match kind {
        "handshake_failure" => handshake(&ev),
        "tls_stall" => tls_stall(&ev, direction),
        "reset" => reset(&ev, direction),
        "retransmit_rate" => retransmit_rate(&ev, direction),
        "stall" => stall(&ev, direction),
        "zero_window" => zero_window(&ev, direction),
        "media_intercepted" => media_intercepted(&ev),
        "ice_check_failure" => ice_check_failure(&ev),
        other => (
            format!("The monitor raised a `{other}` alert (a kind this report does not know)."),
            String::new(),
            "See its summary and evidence values.".into(),
        ),
    };
    Explanation {
        observed,
        healthy,
        meaning,
        values: values(e),
    }
}

/// Read access to the evidence map with the field missing treated as absent.
struct Ev<'a>(&'a Map<String, Value>);

impl Ev<'_> {
    fn n(&self, k: &str) -> Option<f64> {
        self.0.get(k).and_then(Value::as_f64)
    }
    fn u(&self, k: &str) -> u64 {
        self.0.get(k).and_then(Value::as_u64).unwrap_or(0)
    }
    fn s(&self, k: &str) -> &str {
        self.0.get(k).and_then(Value::as_str).unwrap_or_default()
    }
    fn b(&self, k: &str) -> bool {
        self.0.get(k).and_then(Value::as_bool).unwrap_or(false)
    }
    fn secs(&self, k: &str) -> String {
        self.n(k).map_or("an unknown time".into(), seconds)
    }
}

type Sentences = (String, String, String);

fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{} {}", count(n), if n == 1 { one } else { many })
}

/// `c2s` as words: which way the packets travelled.
fn way(direction: Option<&str>) -> &'static str {
    match direction {
        Some("c2s") => "from the client to the server",
        Some("s2c") => "from the server to the client",
        _ => "on this flow",
    }
}

fn handshake(e: &Ev) -> Sentences {
    let syns = plural(e.u("syns"), "SYN", "SYNs");
    let synacks = plural(e.u("synacks"), "SYN/ACK", "SYN/ACKs");
    let healthy = "A healthy connection gets a SYN/ACK to its first SYN and completes the \
                   three-way handshake within one round trip."
        .to_string();
    let (observed, meaning) = match e.s("what") {
        "refused" => (
            format!(
                "The client's SYN was answered by a reset ({syns} sent, {} after the first).",
                e.secs("elapsed_s")
            ),
            "Nothing accepts connections on this port at the server, or a firewall in the \
             path refuses them in the server's name.",
        ),
        "reset" => (
            format!(
                "The connection was reset before its handshake completed ({syns} sent, \
                 {synacks} received, {} after the first packet).",
                e.secs("elapsed_s")
            ),
            "The server or a device in the path aborted the connection while it was being \
             set up.",
        ),
        "timeout" if e.u("synacks") > 0 => (
            format!(
                "The server answered ({synacks} received) but the handshake never completed: \
                 {syns} sent, {} since the first.",
                e.secs("elapsed_s")
            ),
            "The client's final ACK, or the SYN/ACK on its way back, is lost: the path \
             drops packets in one direction.",
        ),
        "timeout" => (
            format!(
                "{} went unanswered for {}: no SYN/ACK came back.",
                capital(&syns),
                e.secs("elapsed_s")
            ),
            "The server is down or unreachable, or a firewall in the path silently drops \
             the connection attempts or their answers.",
        ),
        "syn_retransmitted" => (
            format!(
                "The client had to send {syns} to open the connection ({synacks} received, \
                 {} from the first).",
                e.secs("elapsed_s")
            ),
            "SYNs or SYN/ACKs are lost on the path: each loss delays the connection by a \
             retransmission timeout of a second or more.",
        ),
        other => (
            format!(
                "The handshake failed ({}; {syns}, {synacks}).",
                words(other)
            ),
            "The connection could not be set up.",
        ),
    };
    (observed, healthy, meaning.into())
}

/// The injected-reset clause shared by `tls_stall` and `reset`.
fn suspect_clause(e: &Ev, suspect: bool) -> String {
    if !suspect {
        return String::new();
    }
    let ttl = match e.u("ttl_baseline") {
        0 => String::new(),
        t => format!(" (the sender's packets came with TTL {t})"),
    };
    format!(
        "; it looks injected: its TTL, IP ID or timing differ from the sender's other \
         packets{ttl}"
    )
}

fn tls_stall(e: &Ev, direction: Option<&str>) -> Sentences {
    let healthy = "A TLS server answers the ClientHello with its ServerHello within a round \
                   trip or two, and the handshake goes on."
        .to_string();
    match e.s("what") {
        "no_server_reply" => (
            format!(
                "The client sent its TLS ClientHello and the server sent no data back for {}.",
                e.secs("waited_s")
            ),
            healthy,
            "The hello or its answer is dropped in the path (a filter holding TLS hellos it \
             does not like), or the server application hangs."
                .into(),
        ),
        _ => {
            let suspect = e.b("suspect_injected");
            (
                format!(
                    "The connection was reset ({}, travelling {}) right after the client's \
                     TLS ClientHello{}.",
                    plural(e.u("rsts"), "reset", "resets"),
                    way(direction),
                    suspect_clause(e, suspect)
                ),
                healthy,
                if suspect {
                    "A device in the path (a firewall or filter reading the hello, e.g. its \
                     server name) cut the connection by forging a reset."
                } else {
                    "The server, or a device in the path, refused the TLS session as soon as \
                     it saw the hello (a filter on the server name, or a server rejecting \
                     this client)."
                }
                .into(),
            )
        }
    }
}

fn reset(e: &Ev, direction: Option<&str>) -> Sentences {
    let rsts = e.u("rsts");
    let suspect = e.u("suspect_injected");
    let clause = match suspect {
        0 => String::new(),
        n if rsts > 1 => format!(
            "; {} of them look injected: their TTL, IP ID or timing differ from the sender's \
             other packets{}",
            count(n),
            match e.u("ttl_baseline") {
                0 => String::new(),
                t => format!(" (which came with TTL {t})"),
            }
        ),
        _ => suspect_clause(e, true),
    };
    (
        format!(
            "{} travelling {} ended an established session{clause}.",
            capital(&plural(rsts, "reset", "resets")),
            way(direction)
        ),
        "A healthy session ends with a FIN from each side; a reset, when one comes, is sent \
         by an endpoint and carries the same TTL as its other packets."
            .into(),
        if suspect > 0 {
            "A device in the path (a firewall, IPS or other middlebox) cut the session by \
             forging a reset in an endpoint's name."
        } else {
            "An endpoint aborted the connection (an application closing on an error, a \
             server restarting), or a device in the path reset it with a matching TTL."
        }
        .into(),
    )
}

fn retransmit_rate(e: &Ev, direction: Option<&str>) -> Sentences {
    let threshold = e.n("threshold").map(percent);
    (
        format!(
            "{} of {} data segments sent {} were retransmissions ({}) over the last {}{}.",
            count(e.u("retransmits")),
            count(e.u("data_segments")),
            way(direction),
            e.n("rate").map_or("an unknown share".into(), percent),
            e.secs("window_s"),
            threshold
                .as_ref()
                .map(|t| format!("; the alert is raised from {t}"))
                .unwrap_or_default()
        ),
        format!(
            "A healthy path retransmits well under {} of the data segments.",
            threshold.unwrap_or_else(|| "1 %".into())
        ),
        "Packets are lost between the client and the server (congestion, a faulty link, a \
         policer dropping traffic): each loss delays the data, which media shows as \
         stutter or frozen frames."
            .into(),
    )
}

fn stall(e: &Ev, direction: Option<&str>) -> Sentences {
    let resends = e.u("retransmits_without_progress");
    let flight = e.u("bytes_in_flight");
    let what = if flight > 0 {
        format!("{} sent {} stayed", byte_count(flight), way(direction))
    } else {
        format!("Data sent {} stayed", way(direction))
    };
    (
        format!(
            "{what} unacknowledged: no acknowledgment moved forward for {}{}.",
            e.secs("no_ack_progress_s"),
            match resends {
                0 => String::new(),
                1 => ", while 1 retransmission was sent".into(),
                n => format!(", while {} retransmissions were sent", count(n)),
            }
        ),
        "The receiver acknowledges data within a round trip; a lost segment is repaired by \
         one retransmission."
            .into(),
        if resends > 0 {
            "The data and its retransmissions do not get through: the path drops this flow's \
             packets (a blackhole, e.g. an MTU problem or a firewall that lost the flow's \
             state) while the connection still stands."
        } else {
            "Neither new data nor acknowledgments get through: the peer or the path stopped \
             answering without closing the connection."
        }
        .into(),
    )
}

fn zero_window(e: &Ev, direction: Option<&str>) -> Sentences {
    // The direction is the side advertising the zero window; the data it holds back flows
    // the other way (alerts/finding.rs).
    let (receiver, sender) = match direction {
        Some("s2c") => ("server", "client"),
        _ => ("client", "server"),
    };
    (
        format!(
            "The {receiver} advertised a zero receive window for {} ({}, {} from the \
             {sender}), so the {sender} could not send.",
            e.secs("held_s"),
            plural(
                e.u("zero_window_advertisements"),
                "zero-window advertisement",
                "zero-window advertisements"
            ),
            plural(e.u("probes"), "window probe", "window probes")
        ),
        "A receiver whose application reads its data keeps the window open; a zero window \
         lasts a moment at most."
            .into(),
        format!(
            "The application on the {receiver} does not read its data (overloaded or hung): \
             the network is not at fault, the {sender} waits for it."
        ),
    )
}

fn media_intercepted(e: &Ev) -> Sentences {
    let after = e
        .n("reply_after_s")
        .map(|s| format!(" {} later", seconds(s)))
        .unwrap_or_default();
    let mut observed = match e.s("cause") {
        "tls_alert" => format!(
            "The client sent the media's pseudo-TLS hello and was answered{after} by a TLS \
             alert ({}).",
            tls_alert(e)
        ),
        "reset" => format!(
            "The client sent the media's pseudo-TLS hello and the connection was reset{after} \
             from the {} side instead of the server's reply.",
            match e.s("reset_from") {
                "" => "other",
                side => side,
            }
        ),
        _ => {
            let mismatch = match (e.s("mismatch_field"), e.s("mismatch_got")) {
                ("", _) => String::new(),
                (field, got) => format!(
                    "; the first difference from the genuine reply is its {field}: {got} \
                     instead of {}",
                    e.s("mismatch_expected")
                ),
            };
            format!(
                "The client sent the media's pseudo-TLS hello and got {}{after}, which the \
                 genuine server never sends{mismatch}.",
                reply_shape(e)
            )
        }
    };
    match (e.n("reply_ttl"), e.n("server_ttl_baseline")) {
        (Some(r), Some(b)) if e.b("ttl_differs") => observed.push_str(&format!(
            " The reply came with TTL {r}, the server's packets with {b}: it was sent from \
             another distance than the server."
        )),
        (Some(r), Some(_)) => {
            observed.push_str(&format!(" The reply's TTL ({r}) is the server's."))
        }
        _ => {}
    }
    let healthy = format!(
        "The genuine media server answers the pseudo-TLS hello with its fixed {}-byte \
         ServerHello and ServerHelloDone (cipher {}), and the media follows.",
        match e.u("expected_length") {
            0 => "83".to_string(),
            n => n.to_string(),
        },
        match e.s("expected_cipher") {
            "" => "0x0018",
            c => c,
        }
    );
    let meaning = match e.s("meaning") {
        "" => "A device in the path took the media for TLS and inspected or blocked it.".into(),
        m => sentence(m),
    };
    (observed, healthy, meaning)
}

fn ice_check_failure(e: &Ev) -> Sentences {
    let last = match e.n("since_last_answer_s") {
        Some(s) => format!("the last answer came {} before", seconds(s)),
        None => "none was ever answered".into(),
    };
    let observed = format!(
        "{} of {} STUN connectivity checks went unanswered within {} ({} answered, {}, {} \
         still waiting); {last}.",
        count(e.u("unanswered")),
        count(e.u("requests")),
        e.secs("timeout_s"),
        count(e.u("responses")),
        plural(e.u("errors"), "error response", "error responses"),
        count(e.u("pending"))
    );
    let meaning = match e.s("meaning") {
        "" => "Something in the path drops the checks or their answers.".into(),
        m => sentence(m),
    };
    (
        observed,
        "ICE connectivity checks (STUN binding requests) are answered within a round trip, \
         and the media uses the path that answers."
            .into(),
        meaning,
    )
}

/// A TLS alert as `fatal: handshake failure`.
fn tls_alert(e: &Ev) -> String {
    let level = match e.n("alert_level") {
        Some(1.0) => "warning",
        Some(2.0) => "fatal",
        Some(_) => "level unknown",
        None => "encrypted",
    };
    match e.n("alert_description") {
        Some(d) => format!("{level}: {}", alert_description(d as u8)),
        None => level.into(),
    }
}

/// The reply as "a 1,234-byte reply in 3 TLS records carrying ServerHello, Certificate".
fn reply_shape(e: &Ev) -> String {
    let bytes = e.u("reply_bytes");
    let records = e.0.get("record_types").and_then(Value::as_array);
    let hs = handshake_names(e.0.get("handshake_types"));
    match records.map_or(0, Vec::len) {
        0 if bytes == 0 => "no reply".into(),
        0 => format!("a {}-byte reply that is not TLS", count(bytes)),
        n => format!(
            "a {}-byte reply in {}{}",
            count(bytes),
            plural(n as u64, "TLS record", "TLS records"),
            if hs.is_empty() {
                String::new()
            } else {
                format!(" carrying {hs}")
            }
        ),
    }
}

fn capital(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

/// A clause from the evidence (`meaning`) as a sentence: capital first, full stop last.
fn sentence(s: &str) -> String {
    let s = capital(s.trim());
    if s.ends_with('.') {
        s
    } else {
        s + "."
    }
}

#[cfg(test)]
mod tests;
