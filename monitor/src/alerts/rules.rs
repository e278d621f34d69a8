//! The alert rules (README.md, "Alerts"), one flow at a time: pure functions from a flow's
//! record, its history and the time to what is wrong with it. The engine (`mod.rs`) turns
//! these findings into alerts with a lifecycle.

use monitor_common::flow::{seen, FlowState, C2S, S2C};
use serde_json::{json, Map, Value};

use super::{config::AlertConfig, history::FlowHistory};
use crate::model::{Kind, Level};

/// Something wrong with one flow now, and why the rule thinks so.
#[derive(Clone, Debug, PartialEq)]
pub struct Finding {
    pub kind: Kind,
    /// The direction concerned (`C2S`/`S2C`), when the rule is about one.
    pub dir: Option<usize>,
    pub level: Level,
    /// One line for a person.
    pub summary: String,
    pub evidence: Map<String, Value>,
}

pub fn dir_name(d: usize) -> &'static str {
    if d == C2S {
        "c2s"
    } else {
        "s2c"
    }
}

fn secs(ns: u64) -> f64 {
    ns as f64 / 1e9
}

fn ns(s: f64) -> u64 {
    (s * 1e9) as u64
}

fn evidence(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

/// Whether the connection has ended (a FIN or RST either way): a closed flow cannot stall.
fn closed(st: &FlowState) -> bool {
    st.dir.iter().any(|d| d.fins > 0 || d.rsts > 0)
}

/// Bytes sent in direction `d` and not yet acknowledged, when both ends are known.
pub fn in_flight(st: &FlowState, d: usize) -> Option<u32> {
    let (tx, rx) = (&st.tcp.dir[d], &st.tcp.dir[d ^ 1]);
    if tx.base_set == 0 || tx.nextseq == 0 || rx.ack_seen == 0 || rx.lastack == 0 {
        return None;
    }
    let n = tx.nextseq.wrapping_sub(rx.lastack) as i32;
    Some(n.max(0) as u32)
}

/// Every finding for one flow at `now` (epoch ns).
pub fn evaluate(cfg: &AlertConfig, st: &FlowState, h: &FlowHistory, now: u64) -> Vec<Finding> {
    let mut out = Vec::new();
    handshake(cfg, st, now, &mut out);
    tls(cfg, st, h, now, &mut out);
    resets(cfg, st, now, &mut out);
    for d in [C2S, S2C] {
        retransmit_rate(cfg, h, d, &mut out);
        stall(cfg, st, h, d, now, &mut out);
        zero_window(cfg, st, h, d, now, &mut out);
    }
    out
}

/// Whether time alone, the record unchanged, could make [`evaluate`] find something it
/// finds nothing of now: a handshake or a ClientHello still unanswered (timeouts), data in
/// flight (a stall), a zero window (held too long), retransmissions in the rate window (a
/// rate over a shrinking window). Everything else only expires with time.
pub fn time_may_raise(st: &FlowState, h: &FlowHistory) -> bool {
    let has = |b: u16| st.seen & b != 0;
    let ended_handshake =
        seen::ESTABLISHED | seen::MIDSTREAM | seen::REFUSED | seen::RESET_IN_HANDSHAKE;
    let handshake_open = has(seen::SYN) && !has(ended_handshake);
    let hello_unanswered = h.client_hello_ns.is_some()
        && has(seen::CLIENT_HELLO)
        && st.dir[S2C].payload_bytes == 0
        && !closed(st);
    let flight = [C2S, S2C]
        .iter()
        .any(|&d| in_flight(st, d).unwrap_or(0) > 0);
    let zero = h.zero_since_ns.iter().any(Option::is_some);
    let retx = [C2S, S2C].iter().any(|&d| h.window_retransmits(d) > 0);
    handshake_open || hello_unanswered || flight || zero || retx
}

fn handshake(cfg: &AlertConfig, st: &FlowState, now: u64, out: &mut Vec<Finding>) {
    let has = |b: u16| st.seen & b != 0;
    if has(seen::MIDSTREAM) || !has(seen::SYN) {
        return;
    }
    let syns = st.dir[C2S].syns;
    let recent = now.saturating_sub(st.last_seen_ns) < ns(cfg.hold_s);
    let ev = |what: &str| {
        evidence(json!({
            "what": what,
            "syns": syns,
            "synacks": st.dir[S2C].synacks,
            "elapsed_s": secs(st.last_seen_ns.saturating_sub(st.first_seen_ns)),
        }))
    };
    let mut push = |level, summary: String, what| {
        out.push(Finding {
            kind: Kind::HandshakeFailure,
            dir: None,
            level,
            summary,
            evidence: ev(what),
        })
    };
    if has(seen::REFUSED) {
        if recent {
            push(
                Level::Critical,
                "refused: the SYN was answered by a reset".into(),
                "refused",
            );
        }
    } else if has(seen::RESET_IN_HANDSHAKE) {
        if recent {
            push(
                Level::Critical,
                "reset during the handshake".into(),
                "reset",
            );
        }
    } else if !has(seen::ESTABLISHED) {
        let waited = now.saturating_sub(st.first_seen_ns);
        if waited > ns(cfg.handshake_timeout_s) {
            if recent {
                let what = if has(seen::SYNACK) {
                    "SYN/ACK sent but the handshake never completed"
                } else {
                    "no SYN/ACK"
                };
                push(
                    Level::Critical,
                    format!("{what} after {:.1} s ({syns} SYNs)", secs(waited)),
                    "timeout",
                );
            }
        } else if syns > 1 {
            push(
                Level::Warning,
                format!("SYN retransmitted ({syns} SYNs), handshake pending"),
                "syn_retransmitted",
            );
        }
    } else if syns > 1 && now.saturating_sub(st.first_seen_ns) < ns(cfg.hold_s) {
        push(
            Level::Warning,
            format!("handshake needed {syns} SYNs"),
            "syn_retransmitted",
        );
    }
}

fn tls(cfg: &AlertConfig, st: &FlowState, h: &FlowHistory, now: u64, out: &mut Vec<Finding>) {
    let has = |b: u16| st.seen & b != 0;
    if has(seen::RESET_AFTER_HELLO) {
        // The reset came from whichever side sent one last.
        let d = if st.dir[C2S].last_rst_ns >= st.dir[S2C].last_rst_ns {
            C2S
        } else {
            S2C
        };
        let r = &st.dir[d];
        if now.saturating_sub(r.last_rst_ns) < ns(cfg.hold_s) {
            let suspect = st.dir.iter().any(|x| x.suspect_injected_rsts > 0);
            out.push(Finding {
                kind: Kind::TlsStall,
                dir: Some(d),
                level: Level::Critical,
                summary: format!(
                    "reset ({}) right after the ClientHello{}",
                    dir_name(d),
                    if suspect { ", suspect injected" } else { "" }
                ),
                evidence: evidence(json!({
                    "what": "reset_after_client_hello",
                    "rsts": r.rsts,
                    "suspect_injected": suspect,
                    "ttl_baseline": r.ttl_base,
                })),
            });
        }
        return;
    }
    let Some(hello) = h.client_hello_ns else {
        return;
    };
    let waited = now.saturating_sub(hello);
    if has(seen::CLIENT_HELLO)
        && st.dir[S2C].payload_bytes == 0
        && !closed(st)
        && waited > ns(cfg.tls_reply_timeout_s)
    {
        out.push(Finding {
            kind: Kind::TlsStall,
            dir: Some(S2C),
            level: Level::Critical,
            summary: format!(
                "no server reply {:.1} s after the ClientHello",
                secs(waited)
            ),
            evidence: evidence(json!({ "what": "no_server_reply", "waited_s": secs(waited) })),
        });
    }
}

fn resets(cfg: &AlertConfig, st: &FlowState, now: u64, out: &mut Vec<Finding>) {
    let has = |b: u16| st.seen & b != 0;
    // Resets before the handshake completed are handshake failures; one right after the
    // ClientHello is a TLS stall (its alert carries the suspect mark).
    if !(has(seen::ESTABLISHED) || has(seen::MIDSTREAM)) || has(seen::RESET_AFTER_HELLO) {
        return;
    }
    for d in [C2S, S2C] {
        let r = &st.dir[d];
        if r.rsts == 0 || now.saturating_sub(r.last_rst_ns) >= ns(cfg.hold_s) {
            continue;
        }
        let suspect = r.suspect_injected_rsts > 0;
        out.push(Finding {
            kind: Kind::Reset,
            dir: Some(d),
            level: if suspect {
                Level::Critical
            } else {
                Level::Warning
            },
            summary: format!(
                "{} reset{} ({}) in an established session{}",
                r.rsts,
                if r.rsts == 1 { "" } else { "s" },
                dir_name(d),
                if suspect {
                    ", suspect injected (TTL, IP-ID or burst off the peer's)"
                } else {
                    ""
                }
            ),
            evidence: evidence(json!({
                "rsts": r.rsts,
                "suspect_injected": r.suspect_injected_rsts,
                "ttl_baseline": r.ttl_base,
            })),
        });
    }
}

fn retransmit_rate(cfg: &AlertConfig, h: &FlowHistory, d: usize, out: &mut Vec<Finding>) {
    let Some(r) = h.window_rate(d, cfg.retransmit_min_segments) else {
        return;
    };
    let level = if r.ratio >= cfg.retransmit_critical {
        Level::Critical
    } else if r.ratio >= cfg.retransmit_warning {
        Level::Warning
    } else if r.ratio >= cfg.retransmit_warning * cfg.clear_ratio && r.retransmits > 0 {
        Level::Sustain
    } else {
        return;
    };
    out.push(Finding {
        kind: Kind::RetransmitRate,
        dir: Some(d),
        level,
        summary: format!(
            "{:.1} % of {} data segments retransmitted ({}) in {:.0} s",
            r.ratio * 100.0,
            r.segments,
            dir_name(d),
            secs(r.span_ns)
        ),
        evidence: evidence(json!({
            "retransmits": r.retransmits,
            "data_segments": r.segments,
            "rate": r.ratio,
            "window_s": secs(r.span_ns),
            "threshold": if level == Level::Critical { cfg.retransmit_critical } else { cfg.retransmit_warning },
        })),
    });
}

fn stall(
    cfg: &AlertConfig,
    st: &FlowState,
    h: &FlowHistory,
    d: usize,
    now: u64,
    out: &mut Vec<Finding>,
) {
    // ACK progress is only known when the other direction is seen (not on a one-sided
    // capture or an asymmetric path).
    if st.seen & (seen::ESTABLISHED | seen::MIDSTREAM) == 0
        || closed(st)
        || st.dir[d ^ 1].packets == 0
    {
        return;
    }
    // A receiver that closed its window holds the sender back on purpose: that is the
    // zero-window rule's case.
    if st.tcp.dir[d ^ 1].zero_window != 0 {
        return;
    }
    let retx = st.dir[d].retransmits as u64;
    let unacked_resends = retx.saturating_sub(h.retx_at_progress[d]);
    let since = st.acked_ns[d].max(st.first_seen_ns);
    let quiet = now.saturating_sub(since);
    let flight = in_flight(st, d).unwrap_or(0);
    let kernel_said = st.seen
        & if d == C2S {
            seen::STALLED_C2S
        } else {
            seen::STALLED_S2C
        }
        != 0;
    let blackhole = unacked_resends >= cfg.stall_retransmits;
    let silent = flight > 0 && quiet >= ns(cfg.stall_no_progress_s);
    if !(blackhole || silent || kernel_said) {
        return;
    }
    let summary = if blackhole {
        format!(
            "{unacked_resends} retransmissions ({}) without an ACK moving: blackhole",
            dir_name(d)
        )
    } else if !silent {
        format!(
            "data ({}) resent {:.1} s after the ACK last moved",
            dir_name(d),
            secs(quiet)
        )
    } else {
        format!(
            "{flight} bytes ({}) unacknowledged for {:.1} s",
            dir_name(d),
            secs(quiet)
        )
    };
    out.push(Finding {
        kind: Kind::Stall,
        dir: Some(d),
        level: Level::Critical,
        summary,
        evidence: evidence(json!({
            "bytes_in_flight": flight,
            "no_ack_progress_s": secs(quiet),
            "retransmits_without_progress": unacked_resends,
        })),
    });
}

/// `d` is the side advertising the zero window; the data it blocks flows the other way.
fn zero_window(
    cfg: &AlertConfig,
    st: &FlowState,
    h: &FlowHistory,
    d: usize,
    now: u64,
    out: &mut Vec<Finding>,
) {
    let Some(since) = h.zero_since_ns[d] else {
        return;
    };
    let held = now.saturating_sub(since);
    if closed(st) || held < ns(cfg.zero_window_s) {
        return;
    }
    out.push(Finding {
        kind: Kind::ZeroWindow,
        dir: Some(d),
        level: Level::Warning,
        summary: format!(
            "{} receiver's window at zero for {:.1} s ({} blocked)",
            if d == C2S { "client" } else { "server" },
            secs(held),
            dir_name(d ^ 1)
        ),
        evidence: evidence(json!({
            "held_s": secs(held),
            "zero_window_advertisements": st.dir[d].zero_windows,
            "probes": st.dir[d ^ 1].zero_window_probes,
        })),
    });
}
