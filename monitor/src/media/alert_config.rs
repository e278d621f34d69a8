//! The TOML keys of the two media alerts (`media_intercepted`, `ice_check_failure`), for
//! the alert rules' file (`monitor/src/alerts/config.rs` reads the file; these are two of
//! its sections):
//!
//! ```toml
//! [media_intercepted]
//! enabled = true
//! [ice_check_failure]
//! enabled = true
//! timeout_s = 5.0   # a STUN request unanswered this long counts as unanswered
//! ```
//!
//! Every key is optional; a bad value is refused naming the key and its line, as the other
//! rules' keys are.

use serde::{Deserialize, Serialize};
use toml::Spanned;

/// How long a STUN request may wait for its response unless the file says otherwise: far
/// above a round trip, so a late answer is not a failure, yet short enough that a dropped
/// check shows within a few ticks (RFC 5389's client gives up only after 39.5 s).
pub const STUN_TIMEOUT_S: f64 = 5.0;

/// The media alerts' settings, as a person writes them.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MediaAlertConfig {
    /// Raise `media_intercepted` for a pseudo-TLS hello answered by what the genuine
    /// server never sends, or refused.
    pub media_intercepted: bool,
    /// Raise `ice_check_failure` for STUN requests left unanswered.
    pub ice_check_failure: bool,
    pub stun_timeout_s: f64,
}

impl Default for MediaAlertConfig {
    fn default() -> Self {
        MediaAlertConfig {
            media_intercepted: true,
            ice_check_failure: true,
            stun_timeout_s: STUN_TIMEOUT_S,
        }
    }
}

/// `[media_intercepted]` as written.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InterceptedSection {
    pub enabled: Option<bool>,
}

/// `[ice_check_failure]` as written.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IceSection {
    pub enabled: Option<bool>,
    pub timeout_s: Option<Spanned<f64>>,
}

impl MediaAlertConfig {
    /// Sets what the two sections say; `text` is the file, for the line of a bad value.
    pub fn apply(
        &mut self,
        intercepted: &InterceptedSection,
        ice: &IceSection,
        text: &str,
    ) -> Result<(), String> {
        if let Some(on) = intercepted.enabled {
            self.media_intercepted = on;
        }
        if let Some(on) = ice.enabled {
            self.ice_check_failure = on;
        }
        if let Some(v) = &ice.timeout_s {
            let x = *v.get_ref();
            let start = v.span().start.min(text.len());
            let line = text[..start].matches('\n').count() + 1;
            if !(x.is_finite() && x > 0.0) {
                return Err(format!(
                    "line {line}: `ice_check_failure.timeout_s` = {x} must be a number of \
                     seconds above 0"
                ));
            }
            self.stun_timeout_s = x;
        }
        Ok(())
    }

    /// The STUN timeout for [`super::flows::MediaFlowsConfig`].
    pub fn stun_timeout_ns(&self) -> u64 {
        (self.stun_timeout_s * 1e9) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The two sections inside a file, as the alert rules' file holds them.
    #[derive(Deserialize, Default)]
    #[serde(deny_unknown_fields)]
    struct File {
        #[serde(default)]
        media_intercepted: InterceptedSection,
        #[serde(default)]
        ice_check_failure: IceSection,
    }

    fn parse(text: &str) -> Result<MediaAlertConfig, String> {
        let f: File = toml::from_str(text).map_err(|e| e.message().to_string())?;
        let mut cfg = MediaAlertConfig::default();
        cfg.apply(&f.media_intercepted, &f.ice_check_failure, text)?;
        Ok(cfg)
    }

    #[test]
    fn defaults_hold_for_an_empty_file_and_keys_change_them() {
        assert_eq!(parse(""), Ok(MediaAlertConfig::default()));
        assert_eq!(MediaAlertConfig::default().stun_timeout_ns(), 5_000_000_000);
        let cfg =
            parse("[media_intercepted]\nenabled = false\n[ice_check_failure]\ntimeout_s = 2.5\n")
                .expect("valid");
        assert_eq!(
            cfg,
            MediaAlertConfig {
                media_intercepted: false,
                ice_check_failure: true,
                stun_timeout_s: 2.5,
            }
        );
        assert_eq!(cfg.stun_timeout_ns(), 2_500_000_000);
        let off = parse("[ice_check_failure]\nenabled = false\n").expect("valid");
        assert!(!off.ice_check_failure && off.media_intercepted);
    }

    #[test]
    fn a_bad_timeout_or_an_unknown_key_is_refused_with_its_line() {
        let err = parse("[ice_check_failure]\n\ntimeout_s = -1.0\n").expect_err("negative");
        assert!(
            err.starts_with("line 3: `ice_check_failure.timeout_s` = -1"),
            "{err}"
        );
        assert!(parse("[ice_check_failure]\ntimeout_s = 0.0\n").is_err());
        let err = parse("[ice_check_failure]\ntimeout = 1.0\n").expect_err("unknown");
        assert!(err.contains("unknown field `timeout`"), "{err}");
        assert!(parse("[media_intercepted]\nenabled = 1\n").is_err());
    }
}
