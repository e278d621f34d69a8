//! The alert rules (README.md, "Alerts"), one flow at a time: pure functions from a flow's
//! record, its history and the time to what is wrong with it. The engine (`mod.rs`) turns
//! these findings into alerts with a lifecycle.

use crate::model::FlowStats;
use monitor_common::flow::{seen, C2S, S2C};

pub use super::finding::{dir_name, Finding, Found, HandshakeEnd};
use super::{config::AlertConfig, history::FlowHistory};
use crate::{
    media::{
        alerting::{ice_check_failure, media_intercepted, IceFailure},
        verdict::Media,
    },
    model::{Kind, Level},
};

fn ns(s: f64) -> u64 {
    (s * 1e9) as u64
}

/// Whether the connection has ended (a FIN or RST either way): a closed flow cannot stall.
fn closed(st: &FlowStats) -> bool {
    st.dir.iter().any(|d| d.fins > 0 || d.rsts > 0)
}

/// Every finding for one flow at `now` (epoch ns), into `out` (emptied first: the caller
/// reuses one list for every flow).
pub fn evaluate(
    cfg: &AlertConfig,
    st: &FlowStats,
    h: &FlowHistory,
    media: Option<&Media>,
    now: u64,
    out: &mut Vec<Finding>,
) {
    out.clear();
    handshake(cfg, st, now, out);
    tls(cfg, st, h, now, out);
    if let Some(m) = media {
        media_rules(cfg, st, m, now, out);
    }
    resets(cfg, st, now, out);
    for d in [C2S, S2C] {
        retransmit_rate(cfg, h, d, out);
        stall(cfg, st, h, d, now, out);
        zero_window(cfg, st, h, d, now, out);
    }
}

/// Until when time alone, the record unchanged, cannot make [`evaluate`] find something it
/// finds nothing of now: `Some(u64::MAX)` when it never can, `None` when it may at any
/// tick. It may at any tick with a ClientHello unanswered (its timeout), data in flight (a
/// stall), a zero window (held too long) or retransmissions in the rate window (a rate over
/// a shrinking window). A handshake still open can only time out, the first time
/// [`handshake`] sees more than the timeout waited: a scan's unanswered SYNs then sleep
/// until their timeout instead of being judged every tick. Everything else only expires.
pub fn quiet_until(cfg: &AlertConfig, st: &FlowStats, h: &FlowHistory) -> Option<u64> {
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
        .any(|&d| st.in_flight[d].get().unwrap_or(0) > 0);
    let zero = [C2S, S2C].iter().any(|&d| h.zero_since_ns(d).is_some());
    let retx = [C2S, S2C].iter().any(|&d| h.window_retransmits(d) > 0);
    if hello_unanswered || flight || zero || retx {
        None
    } else if handshake_open {
        // `handshake` finds a timeout once `now - first_seen > timeout`.
        Some(
            st.first_seen_ns
                .saturating_add(ns(cfg.handshake_timeout_s))
                .saturating_add(1),
        )
    } else {
        Some(u64::MAX)
    }
}

/// Until when (exclusive) what [`handshake`] finds at `now` on a record that stays as it is
/// stays the same finding, the same kind, level and end (a timeout's waited time is the
/// time's own): the timeout while the handshake is pending, then the hold after the last
/// packet (a failure) or after the first (a handshake that needed more than one SYN).
/// Flows whose only finding is this one (a scan's, a flood's) are not judged again till
/// then: their finding is made again each tick from the record alone.
pub fn handshake_stands_until(cfg: &AlertConfig, st: &FlowStats, now: u64) -> u64 {
    let has = |b: u16| st.seen & b != 0;
    let hold = ns(cfg.hold_s);
    let after = |t: u64| if now < t { t } else { u64::MAX };
    if has(seen::MIDSTREAM) || !has(seen::SYN) {
        u64::MAX
    } else if has(seen::REFUSED) || has(seen::RESET_IN_HANDSHAKE) {
        after(st.last_seen_ns.saturating_add(hold))
    } else if !has(seen::ESTABLISHED) {
        // `handshake` finds a timeout once `now - first_seen > timeout`, while recent.
        let deadline = st
            .first_seen_ns
            .saturating_add(ns(cfg.handshake_timeout_s))
            .saturating_add(1);
        if now < deadline {
            deadline
        } else {
            after(st.last_seen_ns.saturating_add(hold))
        }
    } else {
        after(st.first_seen_ns.saturating_add(hold))
    }
}

/// `media_intercepted` and `ice_check_failure` from the flow's media verdict, while the
/// flow is recent (a one-off fact holds for `hold_s`, as a reset does). An interception
/// explains the stall or reset after the hello: one alert for the flow, not a second
/// `tls_stall` beside it.
fn media_rules(cfg: &AlertConfig, st: &FlowStats, m: &Media, now: u64, out: &mut Vec<Finding>) {
    if now.saturating_sub(st.last_seen_ns) >= ns(cfg.hold_s) {
        return;
    }
    if let Some(why) = media_intercepted(&cfg.media, m) {
        out.retain(|f| f.kind != Kind::TlsStall);
        out.push(Finding {
            kind: Kind::MediaIntercepted,
            dir: Some(S2C),
            level: Level::Critical,
            found: Found::Intercepted { why },
        });
    }
    if let Some(failure) = ice_check_failure(&cfg.media, m) {
        let level = match failure {
            IceFailure::SomeUnanswered => Level::Warning,
            IceFailure::AllFailed => Level::Critical,
        };
        out.push(Finding {
            kind: Kind::IceCheckFailure,
            dir: Some(C2S),
            level,
            found: Found::IceChecks { failure },
        });
    }
}

pub(super) fn handshake(cfg: &AlertConfig, st: &FlowStats, now: u64, out: &mut Vec<Finding>) {
    let has = |b: u16| st.seen & b != 0;
    if has(seen::MIDSTREAM) || !has(seen::SYN) {
        return;
    }
    let syns = st.dir[C2S].syns;
    let recent = now.saturating_sub(st.last_seen_ns) < ns(cfg.hold_s);
    let mut push = |level, end| {
        out.push(Finding {
            kind: Kind::HandshakeFailure,
            dir: None,
            level,
            found: Found::Handshake {
                end,
                syns,
                synacks: st.dir[S2C].synacks,
                elapsed_ns: st.last_seen_ns.saturating_sub(st.first_seen_ns),
            },
        })
    };
    if has(seen::REFUSED) {
        if recent {
            push(Level::Critical, HandshakeEnd::Refused);
        }
    } else if has(seen::RESET_IN_HANDSHAKE) {
        if recent {
            push(Level::Critical, HandshakeEnd::Reset);
        }
    } else if !has(seen::ESTABLISHED) {
        let waited = now.saturating_sub(st.first_seen_ns);
        if waited > ns(cfg.handshake_timeout_s) {
            if recent {
                let end = HandshakeEnd::Timeout {
                    synack: has(seen::SYNACK),
                    waited_ns: waited,
                };
                push(Level::Critical, end);
            }
        } else if syns > 1 {
            push(Level::Warning, HandshakeEnd::Pending);
        }
    } else if syns > 1 && now.saturating_sub(st.first_seen_ns) < ns(cfg.hold_s) {
        push(Level::Warning, HandshakeEnd::Completed);
    }
}

fn tls(cfg: &AlertConfig, st: &FlowStats, h: &FlowHistory, now: u64, out: &mut Vec<Finding>) {
    let has = |b: u16| st.seen & b != 0;
    if has(seen::RESET_AFTER_HELLO) {
        // The reset came from whichever side sent one last.
        let d = if st.anomalies(C2S).last_rst_ns >= st.anomalies(S2C).last_rst_ns {
            C2S
        } else {
            S2C
        };
        let r = &st.dir[d];
        if now.saturating_sub(st.anomalies(d).last_rst_ns) < ns(cfg.hold_s) {
            out.push(Finding {
                kind: Kind::TlsStall,
                dir: Some(d),
                level: Level::Critical,
                found: Found::HelloReset {
                    rsts: r.rsts,
                    suspect: [C2S, S2C]
                        .iter()
                        .any(|&x| st.anomalies(x).suspect_injected_rsts > 0),
                    ttl_base: r.ttl_base,
                },
            });
        }
        return;
    }
    let Some(hello) = h.client_hello_ns.map(|t| t.get()) else {
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
            found: Found::NoServerReply { waited_ns: waited },
        });
    }
}

fn resets(cfg: &AlertConfig, st: &FlowStats, now: u64, out: &mut Vec<Finding>) {
    let has = |b: u16| st.seen & b != 0;
    // Resets before the handshake completed are handshake failures; one right after the
    // ClientHello is a TLS stall (its alert carries the suspect mark).
    if !(has(seen::ESTABLISHED) || has(seen::MIDSTREAM)) || has(seen::RESET_AFTER_HELLO) {
        return;
    }
    for d in [C2S, S2C] {
        let (r, a) = (&st.dir[d], st.anomalies(d));
        if r.rsts == 0 || now.saturating_sub(a.last_rst_ns) >= ns(cfg.hold_s) {
            continue;
        }
        out.push(Finding {
            kind: Kind::Reset,
            dir: Some(d),
            level: if a.suspect_injected_rsts > 0 {
                Level::Critical
            } else {
                Level::Warning
            },
            found: Found::Reset {
                rsts: r.rsts,
                suspect_injected: a.suspect_injected_rsts,
                ttl_base: r.ttl_base,
            },
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
    let threshold = if level == Level::Critical {
        cfg.retransmit_critical
    } else {
        cfg.retransmit_warning
    };
    out.push(Finding {
        kind: Kind::RetransmitRate,
        dir: Some(d),
        level,
        found: Found::RetransmitRate { rate: r, threshold },
    });
}

fn stall(
    cfg: &AlertConfig,
    st: &FlowStats,
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
    if st.zero_window[d ^ 1] {
        return;
    }
    let retx = st.anomalies(d).retransmits as u64;
    let unacked_resends = retx.saturating_sub(u64::from(h.retx_at_progress[d]));
    let since = st.acked_ns[d].max(st.first_seen_ns);
    let quiet = now.saturating_sub(since);
    let flight = st.in_flight[d].get().unwrap_or(0);
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
    out.push(Finding {
        kind: Kind::Stall,
        dir: Some(d),
        level: Level::Critical,
        found: Found::Stall {
            blackhole,
            silent,
            in_flight: flight,
            quiet_ns: quiet,
            unacked_resends,
        },
    });
}

/// `d` is the side advertising the zero window; the data it blocks flows the other way.
fn zero_window(
    cfg: &AlertConfig,
    st: &FlowStats,
    h: &FlowHistory,
    d: usize,
    now: u64,
    out: &mut Vec<Finding>,
) {
    let Some(since) = h.zero_since_ns(d) else {
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
        found: Found::ZeroWindow {
            held_ns: held,
            advertisements: st.anomalies(d).zero_windows,
            probes: st.anomalies(d ^ 1).zero_window_probes,
        },
    });
}
