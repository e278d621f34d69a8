//! What a rule found wrong with one flow: the numbers it found, as plain values. A tick
//! finds something for every failing flow (a hundred thousand in a scan) but an alert shows
//! only its worst flow's, so the line for a person and the evidence are made from these
//! numbers when an alert asks for them ([`Finding::summary`], [`Finding::evidence`]), not
//! for every flow every tick.

use monitor_common::flow::C2S;
use serde_json::{Map, Value};

use super::window::Rate;
use crate::{
    media::{
        alert_config::MediaAlertConfig,
        alerting::{
            ice_evidence, ice_summary, intercepted_evidence, intercepted_summary, IceFailure,
            Interception, ReplyTtl,
        },
        verdict::Media,
    },
    model::{Kind, Level},
};

/// Something wrong with one flow now, and why the rule thinks so.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Finding {
    pub kind: Kind,
    /// The direction concerned (`C2S`/`S2C`), when the rule is about one.
    pub dir: Option<usize>,
    pub level: Level,
    pub found: Found,
}

/// The numbers a rule found, one variant per case it tells apart.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Found {
    /// A handshake that failed or needed more than one SYN.
    Handshake {
        end: HandshakeEnd,
        syns: u32,
        synacks: u32,
        /// From the flow's first packet to its last.
        elapsed_ns: u64,
    },
    /// A reset right after the ClientHello.
    HelloReset {
        rsts: u32,
        suspect: bool,
        ttl_base: u8,
    },
    /// No server reply since the ClientHello.
    NoServerReply { waited_ns: u64 },
    /// Resets in an established session.
    Reset {
        rsts: u32,
        suspect_injected: u32,
        ttl_base: u8,
    },
    /// Retransmitted share of the data segments over the rate window.
    RetransmitRate { rate: Rate, threshold: f64 },
    /// Data not acknowledged: resent without progress (`blackhole`), for too long
    /// (`silent`), or as the kernel said.
    Stall {
        blackhole: bool,
        silent: bool,
        in_flight: u32,
        quiet_ns: u64,
        unacked_resends: u64,
    },
    /// A receiver's window held at zero.
    ZeroWindow {
        held_ns: u64,
        advertisements: u32,
        probes: u32,
    },
    /// The pseudo-TLS hello answered or refused in the server's name (its numbers are the
    /// flow's media verdict: [`MediaContext`]).
    Intercepted { why: Interception },
    /// STUN checks unanswered (the counts are the flow's media verdict's).
    IceChecks { failure: IceFailure },
}

/// What a media finding's line and evidence are made from: the flow's media verdict, the
/// media alert settings, the server's TTL and the time.
#[derive(Clone, Copy)]
pub struct MediaContext<'a> {
    pub media: &'a Media,
    pub cfg: &'a MediaAlertConfig,
    pub ttl: ReplyTtl,
    pub now_ns: u64,
}

/// How a handshake failed, or that it needed retransmitted SYNs.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum HandshakeEnd {
    Refused,
    Reset,
    /// Not completed within the timeout, `synack` whether the server answered.
    Timeout {
        synack: bool,
        waited_ns: u64,
    },
    /// Still pending, with SYNs retransmitted.
    Pending,
    /// Completed after retransmitted SYNs.
    Completed,
}

pub fn dir_name(d: usize) -> &'static str {
    if d == C2S {
        "c2s"
    } else {
        "s2c"
    }
}

pub(super) fn secs(ns: u64) -> f64 {
    ns as f64 / 1e9
}

impl Finding {
    /// One line for a person; a media finding's from its flow's verdict (`media`).
    pub fn summary_with(&self, media: Option<MediaContext>) -> String {
        match (self.found, media) {
            (Found::Intercepted { why }, Some(m)) => intercepted_summary(why, m.media),
            (Found::IceChecks { .. }, Some(m)) => match &m.media.stun {
                Some(c) => ice_summary(m.cfg, c, m.now_ns),
                None => self.summary(),
            },
            _ => self.summary(),
        }
    }

    /// The numbers behind the summary; a media finding's from its flow's verdict.
    pub fn evidence_with(&self, media: Option<MediaContext>) -> Map<String, Value> {
        let value = match (self.found, media) {
            (Found::Intercepted { .. }, Some(m)) => intercepted_evidence(m.cfg, m.media, m.ttl)
                .and_then(|e| serde_json::to_value(e).ok()),
            (Found::IceChecks { .. }, Some(m)) => {
                ice_evidence(m.cfg, m.media, m.now_ns).and_then(|e| serde_json::to_value(e).ok())
            }
            _ => None,
        };
        match value {
            Some(Value::Object(map)) => map,
            _ => self.evidence(),
        }
    }

    /// One line for a person.
    pub fn summary(&self) -> String {
        let d = self.dir.unwrap_or(C2S);
        match self.found {
            Found::Handshake { end, syns, .. } => match end {
                HandshakeEnd::Refused => "refused: the SYN was answered by a reset".into(),
                HandshakeEnd::Reset => "reset during the handshake".into(),
                HandshakeEnd::Timeout { synack, waited_ns } => {
                    let what = if synack {
                        "SYN/ACK sent but the handshake never completed"
                    } else {
                        "no SYN/ACK"
                    };
                    format!("{what} after {:.1} s ({syns} SYNs)", secs(waited_ns))
                }
                HandshakeEnd::Pending => {
                    format!("SYN retransmitted ({syns} SYNs), handshake pending")
                }
                HandshakeEnd::Completed => format!("handshake needed {syns} SYNs"),
            },
            Found::HelloReset { suspect, .. } => format!(
                "reset ({}) right after the ClientHello{}",
                dir_name(d),
                if suspect { ", suspect injected" } else { "" }
            ),
            Found::NoServerReply { waited_ns } => format!(
                "no server reply {:.1} s after the ClientHello",
                secs(waited_ns)
            ),
            Found::Reset {
                rsts,
                suspect_injected,
                ..
            } => format!(
                "{} reset{} ({}) in an established session{}",
                rsts,
                if rsts == 1 { "" } else { "s" },
                dir_name(d),
                if suspect_injected > 0 {
                    ", suspect injected (TTL, IP-ID or burst off the peer's)"
                } else {
                    ""
                }
            ),
            Found::RetransmitRate { rate: r, .. } => format!(
                "{:.1} % of {} data segments retransmitted ({}) in {:.0} s",
                r.ratio * 100.0,
                r.segments,
                dir_name(d),
                secs(r.span_ns)
            ),
            Found::Stall {
                blackhole,
                silent,
                in_flight,
                quiet_ns,
                unacked_resends,
            } => {
                if blackhole {
                    format!(
                        "{unacked_resends} retransmissions ({}) without an ACK moving: blackhole",
                        dir_name(d)
                    )
                } else if !silent {
                    format!(
                        "data ({}) resent {:.1} s after the ACK last moved",
                        dir_name(d),
                        secs(quiet_ns)
                    )
                } else {
                    format!(
                        "{in_flight} bytes ({}) unacknowledged for {:.1} s",
                        dir_name(d),
                        secs(quiet_ns)
                    )
                }
            }
            Found::ZeroWindow { held_ns, .. } => format!(
                "{} receiver's window at zero for {:.1} s ({} blocked)",
                if d == C2S { "client" } else { "server" },
                secs(held_ns),
                dir_name(d ^ 1)
            ),
            Found::Intercepted { why } => format!("pseudo-TLS hello: {}", why.meaning()),
            Found::IceChecks { failure } => failure.meaning().to_string(),
        }
    }

    /// The numbers behind the summary, by name (README.md, "Alerts").
    pub fn evidence(&self) -> Map<String, Value> {
        let fields: Vec<(&str, Value)> = match self.found {
            Found::Handshake {
                end,
                syns,
                synacks,
                elapsed_ns,
            } => {
                let what = match end {
                    HandshakeEnd::Refused => "refused",
                    HandshakeEnd::Reset => "reset",
                    HandshakeEnd::Timeout { .. } => "timeout",
                    HandshakeEnd::Pending | HandshakeEnd::Completed => "syn_retransmitted",
                };
                vec![
                    ("what", what.into()),
                    ("syns", syns.into()),
                    ("synacks", synacks.into()),
                    ("elapsed_s", secs(elapsed_ns).into()),
                ]
            }
            Found::HelloReset {
                rsts,
                suspect,
                ttl_base,
            } => vec![
                ("what", "reset_after_client_hello".into()),
                ("rsts", rsts.into()),
                ("suspect_injected", suspect.into()),
                ("ttl_baseline", ttl_base.into()),
            ],
            Found::NoServerReply { waited_ns } => vec![
                ("what", "no_server_reply".into()),
                ("waited_s", secs(waited_ns).into()),
            ],
            Found::Reset {
                rsts,
                suspect_injected,
                ttl_base,
            } => vec![
                ("rsts", rsts.into()),
                ("suspect_injected", suspect_injected.into()),
                ("ttl_baseline", ttl_base.into()),
            ],
            Found::RetransmitRate { rate: r, threshold } => vec![
                ("retransmits", r.retransmits.into()),
                ("data_segments", r.segments.into()),
                ("rate", r.ratio.into()),
                ("window_s", secs(r.span_ns).into()),
                ("threshold", threshold.into()),
            ],
            Found::Stall {
                in_flight,
                quiet_ns,
                unacked_resends,
                ..
            } => vec![
                ("bytes_in_flight", in_flight.into()),
                ("no_ack_progress_s", secs(quiet_ns).into()),
                ("retransmits_without_progress", unacked_resends.into()),
            ],
            Found::ZeroWindow {
                held_ns,
                advertisements,
                probes,
            } => vec![
                ("held_s", secs(held_ns).into()),
                ("zero_window_advertisements", advertisements.into()),
                ("probes", probes.into()),
            ],
            Found::Intercepted { why } => vec![
                ("cause", why.name().into()),
                ("meaning", why.meaning().into()),
            ],
            Found::IceChecks { failure } => vec![("meaning", failure.meaning().into())],
        };
        fields
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect()
    }
}
