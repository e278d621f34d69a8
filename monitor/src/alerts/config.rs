//! The alert rules' thresholds (defaults as README.md, "Alerts", lists them), and their TOML
//! file (`--config`).
//!
//! Every key is optional; a file only says what it changes. Unknown keys, negative values,
//! ratios outside 0..1 and windows shorter than the collector's tick are refused with the
//! key and its line, so a typo never silently leaves a default in force.

use crate::media::alert_config::{IceSection, InterceptedSection, MediaAlertConfig};
use std::path::Path;

use serde::Deserialize;
use toml::Spanned;

use crate::{error::usage, model::HANDSHAKE_TIMEOUT_S};

/// Thresholds of every rule, in seconds and ratios as a person writes them.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct AlertConfig {
    /// Handshake failure: no completed handshake this long after the first SYN.
    pub handshake_timeout_s: f64,
    /// TLS stall: no server reply this long after the ClientHello.
    pub tls_reply_timeout_s: f64,
    /// Retransmission rate: the sliding window, and the share of data segments.
    pub retransmit_window_s: f64,
    pub retransmit_warning: f64,
    pub retransmit_critical: f64,
    /// Fewer data segments than this in the window give no rate at all: one lost packet on a
    /// quiet flow is not a 10 % loss.
    pub retransmit_min_segments: u64,
    /// Stall: data outstanding and no ACK progress this long.
    pub stall_no_progress_s: f64,
    /// Stall: this many retransmissions without ACK progress (a blackhole).
    pub stall_retransmits: u64,
    /// Zero window held this long.
    pub zero_window_s: f64,
    /// A one-off fact (a reset, a failed handshake) keeps its alert active this long.
    pub hold_s: f64,
    /// Hysteresis: a condition must be gone this long before its alert clears...
    pub clear_after_s: f64,
    /// ...and a rate must fall below this share of the warning threshold to count as gone.
    pub clear_ratio: f64,
    /// Flows from one remote host belong to one session while each starts within this long
    /// of the session's latest activity.
    pub session_window_s: f64,
    /// More sessions than this failing the same way toward one server become one alert
    /// about that server (see `rollup.rs`).
    pub rollup_above: u64,
    /// The media alerts (`media_intercepted`, `ice_check_failure`) and the STUN timeout.
    pub media: MediaAlertConfig,
}

impl Default for AlertConfig {
    fn default() -> Self {
        Self {
            handshake_timeout_s: HANDSHAKE_TIMEOUT_S,
            tls_reply_timeout_s: 3.0,
            retransmit_window_s: 10.0,
            retransmit_warning: 0.02,
            retransmit_critical: 0.10,
            retransmit_min_segments: 20,
            stall_no_progress_s: 2.0,
            stall_retransmits: 3,
            zero_window_s: 1.0,
            hold_s: 30.0,
            clear_after_s: 10.0,
            clear_ratio: 0.5,
            session_window_s: 30.0,
            rollup_above: 10,
            media: MediaAlertConfig::default(),
        }
    }
}

/// The file as written: sections per rule, every key optional.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    handshake: Handshake,
    #[serde(default)]
    tls: Tls,
    #[serde(default)]
    retransmit_rate: Retransmit,
    #[serde(default)]
    stall: Stall,
    #[serde(default)]
    zero_window: ZeroWindow,
    #[serde(default)]
    hysteresis: Hysteresis,
    #[serde(default)]
    sessions: Sessions,
    #[serde(default)]
    media_intercepted: InterceptedSection,
    #[serde(default)]
    ice_check_failure: IceSection,
}

type Num = Option<Spanned<f64>>;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Handshake {
    timeout_s: Num,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Tls {
    reply_timeout_s: Num,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Retransmit {
    window_s: Num,
    warning: Num,
    critical: Num,
    min_segments: Num,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Stall {
    no_progress_s: Num,
    retransmits: Num,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ZeroWindow {
    held_s: Num,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Hysteresis {
    hold_s: Num,
    clear_after_s: Num,
    clear_ratio: Num,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Sessions {
    window_s: Num,
    rollup_above: Num,
}

/// What a value must be.
#[derive(Clone, Copy)]
enum Rule {
    /// A duration at least one tick long.
    Window,
    /// A non-negative duration.
    Seconds,
    /// A share, 0 < x <= 1.
    Ratio,
    /// A whole number >= 1.
    Count,
}

/// The key a duplicate-key error's span covers, with the table it is in (`stall.held_s`);
/// a table header given twice is named as written (`stall`).
fn duplicate_key(text: &str, span: std::ops::Range<usize>) -> Option<String> {
    let raw = text.get(span.clone())?.trim();
    let key = raw.trim_start_matches('[').trim_end_matches(']').trim();
    if key.is_empty() {
        return None;
    }
    let line_start = text[..span.start].rfind('\n').map_or(0, |i| i + 1);
    if text[line_start..].trim_start().starts_with('[') {
        return Some(key.to_string());
    }
    // The nearest table header above the key, if any.
    let table = text[..line_start].lines().rev().find_map(|l| {
        let l = l.trim();
        l.starts_with('[')
            .then(|| l.trim_matches(|c| c == '[' || c == ']').trim())
    });
    Some(match table {
        Some(t) if !t.is_empty() => format!("{t}.{key}"),
        _ => key.to_string(),
    })
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

impl AlertConfig {
    /// Reads and validates `path`; `tick_s` is the collector's interval.
    pub fn load(path: &Path, tick_s: f64) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            usage(
                format!("cannot read config {}: {e}", path.display()),
                "give a TOML file; see README.md (\"Alerts\") for the keys",
            )
        })?;
        Self::parse(&text, tick_s).map_err(|reason| {
            usage(
                format!("config {}: {reason}", path.display()),
                "see README.md (\"Alerts\") for the keys, their units and defaults",
            )
        })
    }

    /// Validates a config text; the error names the key and its line.
    pub fn parse(text: &str, tick_s: f64) -> Result<Self, String> {
        let file: File = toml::from_str(text).map_err(|e| {
            let line = e.span().map(|s| line_of(text, s.start));
            let mut msg = e.message().trim().to_string();
            // toml says only "duplicate key": name it from the span it points at.
            if msg.starts_with("duplicate") {
                if let Some(key) = e.span().and_then(|s| duplicate_key(text, s)) {
                    msg = format!("{msg} `{key}`");
                }
            }
            match line {
                Some(l) => format!("line {l}: {msg}"),
                None => msg,
            }
        })?;
        let mut cfg = Self::default();
        let set = |name: &str, v: &Num, rule: Rule, out: &mut f64| -> Result<(), String> {
            let Some(v) = v else { return Ok(()) };
            let (x, line) = (*v.get_ref(), line_of(text, v.span().start));
            let bad = |why: String| Err(format!("line {line}: `{name}` {why}"));
            if !x.is_finite() {
                return bad("must be a finite number".into());
            }
            match rule {
                Rule::Window if x < tick_s => {
                    return bad(format!(
                        "= {x} s is shorter than the collector's tick ({tick_s} s)"
                    ))
                }
                Rule::Seconds | Rule::Window if x < 0.0 => {
                    return bad(format!("= {x} must not be negative"))
                }
                Rule::Ratio if !(x > 0.0 && x <= 1.0) => {
                    return bad(format!(
                        "= {x} must be a share between 0 and 1 (0.02 = 2 %)"
                    ))
                }
                Rule::Count if x < 1.0 || x.fract() != 0.0 => {
                    return bad(format!("= {x} must be a whole number of at least 1"))
                }
                _ => {}
            }
            *out = x;
            Ok(())
        };
        let f = &file;
        let mut min_segments = cfg.retransmit_min_segments as f64;
        let mut stall_retx = cfg.stall_retransmits as f64;
        let mut rollup_above = cfg.rollup_above as f64;
        set(
            "handshake.timeout_s",
            &f.handshake.timeout_s,
            Rule::Seconds,
            &mut cfg.handshake_timeout_s,
        )?;
        set(
            "tls.reply_timeout_s",
            &f.tls.reply_timeout_s,
            Rule::Seconds,
            &mut cfg.tls_reply_timeout_s,
        )?;
        set(
            "retransmit_rate.window_s",
            &f.retransmit_rate.window_s,
            Rule::Window,
            &mut cfg.retransmit_window_s,
        )?;
        set(
            "retransmit_rate.warning",
            &f.retransmit_rate.warning,
            Rule::Ratio,
            &mut cfg.retransmit_warning,
        )?;
        set(
            "retransmit_rate.critical",
            &f.retransmit_rate.critical,
            Rule::Ratio,
            &mut cfg.retransmit_critical,
        )?;
        set(
            "retransmit_rate.min_segments",
            &f.retransmit_rate.min_segments,
            Rule::Count,
            &mut min_segments,
        )?;
        set(
            "stall.no_progress_s",
            &f.stall.no_progress_s,
            Rule::Window,
            &mut cfg.stall_no_progress_s,
        )?;
        set(
            "stall.retransmits",
            &f.stall.retransmits,
            Rule::Count,
            &mut stall_retx,
        )?;
        set(
            "zero_window.held_s",
            &f.zero_window.held_s,
            Rule::Seconds,
            &mut cfg.zero_window_s,
        )?;
        set(
            "hysteresis.hold_s",
            &f.hysteresis.hold_s,
            Rule::Seconds,
            &mut cfg.hold_s,
        )?;
        set(
            "hysteresis.clear_after_s",
            &f.hysteresis.clear_after_s,
            Rule::Seconds,
            &mut cfg.clear_after_s,
        )?;
        set(
            "hysteresis.clear_ratio",
            &f.hysteresis.clear_ratio,
            Rule::Ratio,
            &mut cfg.clear_ratio,
        )?;
        set(
            "sessions.window_s",
            &f.sessions.window_s,
            Rule::Window,
            &mut cfg.session_window_s,
        )?;
        set(
            "sessions.rollup_above",
            &f.sessions.rollup_above,
            Rule::Count,
            &mut rollup_above,
        )?;
        cfg.media
            .apply(&f.media_intercepted, &f.ice_check_failure, text)?;
        cfg.retransmit_min_segments = min_segments as u64;
        cfg.rollup_above = rollup_above as u64;
        cfg.stall_retransmits = stall_retx as u64;
        if cfg.retransmit_critical < cfg.retransmit_warning {
            let line = f
                .retransmit_rate
                .critical
                .as_ref()
                .or(f.retransmit_rate.warning.as_ref())
                .map(|v| line_of(text, v.span().start))
                .unwrap_or(1);
            return Err(format!(
                "line {line}: `retransmit_rate.critical` ({}) is below `retransmit_rate.warning` ({})",
                cfg.retransmit_critical, cfg.retransmit_warning
            ));
        }
        Ok(cfg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_file_is_the_defaults() {
        assert_eq!(AlertConfig::parse("", 1.0), Ok(AlertConfig::default()));
    }

    #[test]
    fn keys_override_defaults() {
        let cfg = AlertConfig::parse(
            "[retransmit_rate]\nwarning = 0.05\nmin_segments = 50\n[stall]\nno_progress_s = 4\n",
            1.0,
        )
        .expect("valid");
        assert_eq!(cfg.retransmit_warning, 0.05);
        assert_eq!(cfg.retransmit_min_segments, 50);
        assert_eq!(cfg.stall_no_progress_s, 4.0);
        assert_eq!(cfg.retransmit_critical, 0.10);
        let cfg = AlertConfig::parse("[sessions]\nrollup_above = 50\n", 1.0).expect("valid");
        assert_eq!(cfg.rollup_above, 50);
    }

    #[test]
    fn bad_files_name_the_key_and_line() {
        for (text, needles) in [
            (
                "[stall]\nno_progres_s = 2\n",
                vec!["line 2", "no_progres_s"],
            ),
            (
                "[zero_window]\nheld_s = -1\n",
                vec!["line 2", "zero_window.held_s", "negative"],
            ),
            (
                "# tick 1 s\n[retransmit_rate]\n\nwindow_s = 0.5\n",
                vec![
                    "line 4",
                    "retransmit_rate.window_s",
                    "shorter than the collector's tick",
                ],
            ),
            ("[retransmit_rate]\nwarning = 2\n", vec!["line 2", "share"]),
            (
                "[retransmit_rate]\nmin_segments = 2.5\n",
                vec!["whole number"],
            ),
            ("[retransmit_rate]\nwarning = 0.2\n", vec!["below"]),
            (
                "[sessions]\nrollup_above = 0\n",
                vec!["line 2", "sessions.rollup_above", "whole number"],
            ),
            ("[nope]\n", vec!["line 1", "nope"]),
            (
                "[stall]\nno_progress_s = 2\n\nno_progress_s = 3\n",
                vec!["line 4", "duplicate key `stall.no_progress_s`"],
            ),
            (
                "[stall]\nno_progress_s = 2\n[zero_window]\nheld_s = 1\n[stall]\n",
                vec!["line 5", "duplicate key `stall`"],
            ),
            (
                "[zero_window]\nheld_s = 1 # one\n  held_s = 2\n",
                vec!["line 3", "`zero_window.held_s`"],
            ),
            ("[stall\n", vec!["line 1"]),
        ] {
            let err = AlertConfig::parse(text, 1.0).expect_err(text);
            for n in needles {
                assert!(err.contains(n), "`{n}` missing from `{err}` for {text:?}");
            }
            assert!(!err.contains('\n'), "one line: {err:?}");
        }
    }
}
