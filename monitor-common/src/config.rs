//! Load-time configuration of the kernel program.

/// Words in the port bitmap: one bit per TCP port.
pub const PORT_WORDS: usize = 65536 / 64;

/// Timestamps come from `skb->tstamp` instead of the kernel clock. Tests set it so that
/// captures replayed with BPF_PROG_TEST_RUN carry their own time.
pub const FLAG_SKB_TSTAMP: u32 = 1;

/// Headers are always read with the copy helpers, never in place. Tests set it so the
/// fallback for headers outside the linear part of a packet (which BPF_PROG_TEST_RUN never
/// makes) runs the same cases as the direct path.
pub const FLAG_COPY_ONLY: u32 = 2;

/// Written into the program's `.rodata` before load, so the verifier sees constants and the
/// port test costs one load: a bitmap instead of a loop over ranges.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Config {
    pub ports: [u64; PORT_WORDS],
    pub flags: u32,
    /// Payload segments sampled per flow direction (`--media-samples`; 0: none). See
    /// `sample.rs`.
    pub samples: u32,
    /// Bytes of each watched packet handed over in the `EVIDENCE` ring (`--evidence-snaplen`
    /// with `--evidence`; 0: none, the default). See `evidence.rs`.
    pub snaplen: u32,
    pub _pad: u32,
}

impl Config {
    pub const fn empty() -> Self {
        Self {
            ports: [0; PORT_WORDS],
            flags: 0,
            samples: 0,
            snaplen: 0,
            _pad: 0,
        }
    }

    /// The same configuration, handing over the first `n` bytes of each watched packet
    /// (at most [`crate::evidence::EVIDENCE_BYTES`]; 0: none).
    pub const fn with_snaplen(mut self, n: u32) -> Self {
        self.snaplen = if n > crate::evidence::EVIDENCE_BYTES as u32 {
            crate::evidence::EVIDENCE_BYTES as u32
        } else {
            n
        };
        self
    }

    /// The same configuration, sampling the first `n` payload segments of each direction.
    /// At most [`crate::sample::MAX_SAMPLES`].
    pub const fn with_samples(mut self, n: u32) -> Self {
        self.samples = if n > crate::sample::MAX_SAMPLES {
            crate::sample::MAX_SAMPLES
        } else {
            n
        };
        self
    }

    #[inline(always)]
    pub fn watches(&self, port: u16) -> bool {
        (self.ports[(port >> 6) as usize] >> (port & 63)) & 1 == 1
    }
}

#[cfg(feature = "user")]
mod user {
    use super::{Config, PORT_WORDS};
    use core::{fmt, str::FromStr};
    use std::{string::String, vec::Vec};

    // SAFETY: `Config` is repr(C) of integers and arrays of them: every bit pattern is a
    // valid value.
    unsafe impl aya::Pod for Config {}

    /// A set of TCP ports, written `50000-59999,443`.
    #[derive(Clone, Debug, PartialEq, Eq)]
    pub struct PortSet {
        ranges: Vec<(u16, u16)>,
    }

    /// Why a port specification was refused; the message names the offending part.
    #[derive(Clone, Debug, PartialEq, Eq)]
    pub struct PortSpecError(pub String);

    impl fmt::Display for PortSpecError {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(&self.0)
        }
    }

    impl std::error::Error for PortSpecError {}

    fn port(s: &str, whole: &str) -> Result<u16, PortSpecError> {
        let s = s.trim();
        let n: u32 = s
            .parse()
            .map_err(|_| PortSpecError(std::format!("`{s}` in `{whole}` is not a port number")))?;
        if n == 0 || n > 65535 {
            return Err(PortSpecError(std::format!(
                "port {n} in `{whole}` is out of range 1-65535"
            )));
        }
        Ok(n as u16)
    }

    impl FromStr for PortSet {
        type Err = PortSpecError;

        fn from_str(spec: &str) -> Result<Self, Self::Err> {
            let mut ranges = Vec::new();
            for part in spec.split(',') {
                let part = part.trim();
                if part.is_empty() {
                    return Err(PortSpecError(std::format!(
                        "empty entry in port list `{spec}`"
                    )));
                }
                let (lo, hi) = match part.split_once('-') {
                    Some((lo, hi)) => (port(lo, spec)?, port(hi, spec)?),
                    None => {
                        let p = port(part, spec)?;
                        (p, p)
                    }
                };
                if lo > hi {
                    return Err(PortSpecError(std::format!(
                        "range `{part}` runs backwards (write it as {hi}-{lo})"
                    )));
                }
                ranges.push((lo, hi));
            }
            ranges.sort_unstable();
            Ok(Self { ranges })
        }
    }

    impl fmt::Display for PortSet {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            for (i, (lo, hi)) in self.ranges.iter().enumerate() {
                if i > 0 {
                    f.write_str(",")?;
                }
                if lo == hi {
                    write!(f, "{lo}")?;
                } else {
                    write!(f, "{lo}-{hi}")?;
                }
            }
            Ok(())
        }
    }

    impl PortSet {
        /// Every port: the default for captures, where the reader filters nothing.
        pub fn all() -> Self {
            Self {
                ranges: std::vec![(1, 65535)],
            }
        }

        pub fn contains(&self, port: u16) -> bool {
            self.ranges.iter().any(|&(lo, hi)| lo <= port && port <= hi)
        }

        /// The kernel's configuration for this set, sampling the default
        /// [`crate::sample::DEFAULT_SAMPLES`] segments per direction.
        pub fn to_config(&self, flags: u32) -> Config {
            let mut cfg = Config::empty().with_samples(crate::sample::DEFAULT_SAMPLES);
            cfg.flags = flags;
            for &(lo, hi) in &self.ranges {
                for p in lo..=hi {
                    cfg.ports[p as usize / 64] |= 1 << (p % 64);
                }
            }
            debug_assert_eq!(cfg.ports.len(), PORT_WORDS);
            cfg
        }
    }
}

#[cfg(feature = "user")]
pub use user::{PortSet, PortSpecError};

#[cfg(all(test, feature = "user"))]
mod tests {
    use super::*;
    use std::string::ToString;

    #[test]
    fn parses_ranges_and_single_ports() {
        let set: PortSet = "50000-59999, 443".parse().unwrap();
        assert_eq!(set.to_string(), "443,50000-59999");
        let cfg = set.to_config(0);
        for p in [443u16, 50000, 55555, 59999] {
            assert!(cfg.watches(p), "{p} should be watched");
            assert!(set.contains(p));
        }
        for p in [1u16, 442, 444, 49999, 60000, 65535] {
            assert!(!cfg.watches(p), "{p} should not be watched");
            assert!(!set.contains(p));
        }
    }

    #[test]
    fn refuses_bad_specs_with_a_reason() {
        for (spec, needle) in [
            ("60000-50000", "backwards"),
            ("70000", "out of range"),
            ("abc", "not a port"),
            ("0", "out of range"),
            ("443,,80", "empty entry"),
            ("", "empty entry"),
            ("1-2-3", "not a port"),
        ] {
            let err = spec.parse::<PortSet>().unwrap_err();
            assert!(err.0.contains(needle), "{spec}: {err}");
        }
    }

    #[test]
    fn bitmap_edges() {
        let cfg = PortSet::all().to_config(0);
        assert!(cfg.watches(1) && cfg.watches(65535) && !cfg.watches(0));
    }
}
