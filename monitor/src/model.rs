//! The types every layer shares: a flow's identity and record, the engine's verdicts on it
//! (health, levels, alert kinds, the alerts a snapshot carries), the names of handshake
//! outcomes and what a run watches. It imports no other module of the crate, so the
//! collector, the alert engine and the outputs all depend on it and not on each other
//! (tests/layers.rs holds this).

use std::{
    fmt,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    num::NonZeroU32,
    sync::Arc,
};

use monitor_common::{
    flow::{seen, FlowKey, FlowState},
    stats,
};
use serde::{Serialize, Serializer};
use serde_json::{Map, Value};

mod flow_stats;

pub use flow_stats::{Anomalies, AnomalyCounts, DirCounts, FlowStats, InFlight};

/// One flow: its key and what the monitor keeps of the kernel's record, timestamps already
/// in Unix-epoch ns.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FlowRecord {
    pub key: FlowKey,
    pub state: FlowStats,
}

fn addr(family: u8, bytes: &[u8; 16]) -> IpAddr {
    if family == 4 {
        IpAddr::V4(Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3]))
    } else {
        IpAddr::V6(Ipv6Addr::from(*bytes))
    }
}

impl FlowRecord {
    /// The kernel's record `st`, as the monitor keeps it.
    pub fn of(st: &FlowState) -> Self {
        Self {
            key: st.key,
            state: st.into(),
        }
    }

    fn a(&self) -> SocketAddr {
        SocketAddr::new(addr(self.key.family, &self.key.addr_a), self.key.port_a)
    }

    fn b(&self) -> SocketAddr {
        SocketAddr::new(addr(self.key.family, &self.key.addr_b), self.key.port_b)
    }

    pub fn client(&self) -> SocketAddr {
        if self.state.client_is_a != 0 {
            self.a()
        } else {
            self.b()
        }
    }

    pub fn server(&self) -> SocketAddr {
        if self.state.client_is_a != 0 {
            self.b()
        } else {
            self.a()
        }
    }
}

/// Global counters, summed over CPUs, indexed by `monitor_common::stats`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counters(pub [u64; stats::COUNT as usize]);

impl Counters {
    pub fn get(&self, idx: u32) -> u64 {
        self.0[idx as usize]
    }
}

/// What one watched interface carried, every port included.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IfaceTraffic {
    pub name: String,
    pub rx: stats::IfCounters,
    pub tx: stats::IfCounters,
    /// The interface no longer exists (deleted, or its namespace went): nothing more will
    /// be seen on it.
    pub gone: bool,
}

/// A connection record across ticks: a reused 4-tuple is another record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FlowId {
    pub key: FlowKey,
    pub first_seen_ns: u64,
}

impl FlowId {
    pub fn of(f: &FlowRecord) -> Self {
        Self {
            key: f.key,
            first_seen_ns: f.state.first_seen_ns,
        }
    }
}

/// One alert of one session (or of the sessions rolled up toward one server), with the
/// evidence of its worst flow.
#[derive(Clone, Debug, Serialize)]
pub struct Alert {
    pub id: u64,
    pub kind: Kind,
    pub severity: Level,
    pub direction: Option<&'static str>,
    /// `10.0.0.1#1`, or `rollup:10.0.0.100:50000` for a roll-up.
    pub session: Scope,
    /// The flow whose finding is the evidence (the worst one of the session).
    pub client: String,
    pub server: String,
    /// How many of the session's flows show the condition.
    pub flows: usize,
    pub since_ns: u64,
    pub changed_ns: u64,
    pub cleared_ns: Option<u64>,
    pub summary: String,
    pub evidence: Map<String, Value>,
    /// Whether the session still has a flow that works: a client that tried several
    /// candidate connections may not be affected at all (a roll-up: one of its sessions).
    pub session_has_healthy_flow: bool,
    /// The flows showing it: shared, since every tick's snapshot clones the active alerts
    /// and a storm's roll-up holds every flow of the storm.
    #[serde(skip)]
    pub flow_ids: Arc<[FlowId]>,
    /// The flow whose finding is the evidence (`client`, `server`): the one the engine
    /// keeps a sparkline of, so a storm's roll-up keeps one, not one per flow.
    #[serde(skip)]
    pub worst: Option<FlowId>,
    #[serde(skip)]
    pub(crate) last_true_ns: u64,
}

/// What the monitor's programs cost the kernel (`--self-stats`): their run time and runs
/// so far, and the time per run (one packet through one hook) over the latest tick.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct KernelCost {
    pub run_ns: u64,
    pub runs: u64,
    pub ns_per_run: Option<f64>,
}

/// What the engine concluded about one flow at this tick (aligned with `Snapshot::flows`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FlowHealth {
    /// The number of the session the flow joined, its client's `n`th: the session is that
    /// with the client's address, which the row already holds ([`FlowHealth::session`]).
    pub session_n: Option<NonZeroU32>,
    /// The worst active finding (`None`: healthy).
    pub level: Option<Level>,
    /// Bytes per second over the latest tick.
    pub throughput: [f64; 2],
    /// Retransmitted share of data segments over the alert window (unknown: too few).
    pub retx_rate: [Ratio; 2],
    /// Time each side's receive window has been seen at zero, in total.
    pub zero_window_ns: [u64; 2],
    /// Ids of the active alerts this flow is part of. A thin vector (8 bytes, not 24):
    /// most rows of a big table are part of none.
    pub alerts: thin_vec::ThinVec<u64>,
    /// Zeek's conn.log history letters, inline (no heap block to touch per row a tick).
    pub history: compact_str::CompactString,
}

impl FlowHealth {
    /// The session of `flow`, the flow this health is of.
    pub fn session(&self, flow: &FlowRecord) -> Option<SessionId> {
        self.session_n.map(|n| SessionId {
            remote: flow.client().ip(),
            n: n.get(),
        })
    }
}

/// A ratio that may be unknown, in the 8 bytes of an `f64` (NaN: unknown) where an
/// `Option<f64>` takes 16: every row of the flow table keeps two. Equal as the options are
/// (two unknown ratios are equal).
#[derive(Clone, Copy, Debug)]
pub struct Ratio(f64);

impl PartialEq for Ratio {
    fn eq(&self, other: &Self) -> bool {
        self.get() == other.get()
    }
}

impl Ratio {
    pub const UNKNOWN: Ratio = Ratio(f64::NAN);

    pub fn new(v: Option<f64>) -> Self {
        v.filter(|v| !v.is_nan()).map_or(Self::UNKNOWN, Ratio)
    }

    pub fn get(self) -> Option<f64> {
        (!self.0.is_nan()).then_some(self.0)
    }
}

impl Default for Ratio {
    fn default() -> Self {
        Self::UNKNOWN
    }
}

impl Serialize for Ratio {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.get().serialize(s)
    }
}

/// The alert kinds, named as in the JSON contract.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    HandshakeFailure,
    TlsStall,
    Reset,
    RetransmitRate,
    Stall,
    ZeroWindow,
    /// A device in the path answered (or refused) the media's pseudo-TLS hello in the
    /// server's name.
    MediaIntercepted,
    /// STUN connectivity checks on the flow went unanswered.
    IceCheckFailure,
}

impl Kind {
    pub const ALL: [Kind; 8] = [
        Kind::HandshakeFailure,
        Kind::TlsStall,
        Kind::Reset,
        Kind::RetransmitRate,
        Kind::Stall,
        Kind::ZeroWindow,
        Kind::MediaIntercepted,
        Kind::IceCheckFailure,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Kind::HandshakeFailure => "handshake_failure",
            Kind::TlsStall => "tls_stall",
            Kind::Reset => "reset",
            Kind::RetransmitRate => "retransmit_rate",
            Kind::Stall => "stall",
            Kind::ZeroWindow => "zero_window",
            Kind::MediaIntercepted => "media_intercepted",
            Kind::IceCheckFailure => "ice_check_failure",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How bad a finding is. `Sustain` is the hysteresis band: not enough to raise an alert,
/// enough to keep a raised one from clearing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    Sustain,
    Warning,
    Critical,
}

impl Level {
    pub fn name(self) -> &'static str {
        match self {
            Level::Sustain => "sustain",
            Level::Warning => "warning",
            Level::Critical => "critical",
        }
    }
}

/// The `n`th session of a remote host since the monitor started.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SessionId {
    pub remote: IpAddr,
    pub n: u32,
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}#{}", self.remote, self.n)
    }
}

/// What an alert is about: one session, or every session failing the same way toward one
/// server (a roll-up, see `alerts/rollup.rs`), named `rollup:ADDR:PORT`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scope {
    Session(SessionId),
    Server(SocketAddr),
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scope::Session(s) => s.fmt(f),
            Scope::Server(a) => write!(f, "rollup:{a}"),
        }
    }
}

impl Serialize for Scope {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

// Kinds, levels and sessions are written by name in the JSON contract.
impl Serialize for Kind {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl Serialize for Level {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl Serialize for SessionId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// One point of a sparkline: per-tick throughput and retransmission share per direction.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Point {
    pub bytes_per_s: [f32; 2],
    /// Retransmissions per data segment in that tick (0 when no data moved).
    pub retx_ratio: [f32; 2],
}

/// The default handshake timeout: also what a snapshot no alert engine judged uses.
pub const HANDSHAKE_TIMEOUT_S: f64 = 3.0;

/// The handshake's outcome, or `None` while it is still pending: a handshake still open
/// `timeout_ns` after the first SYN is a timeout.
pub fn outcome(s: &FlowStats, now_ns: u64, timeout_ns: u64) -> Option<&'static str> {
    let has = |b: u16| s.seen & b != 0;
    if has(seen::MIDSTREAM) {
        Some("midstream")
    } else if has(seen::REFUSED) {
        Some("refused")
    } else if has(seen::RESET_IN_HANDSHAKE) {
        Some("reset")
    } else if has(seen::ESTABLISHED) {
        Some("ok")
    } else if now_ns.saturating_sub(s.first_seen_ns) > timeout_ns {
        Some("timeout")
    } else {
        None
    }
}

/// What the header of every output says about this run.
#[derive(Clone, Debug, Default)]
pub struct RunInfo {
    pub interfaces: Vec<String>,
    /// The interfaces attached to: name and ifindex (duplicates removed).
    pub targets: Vec<(String, u32)>,
    /// How the programs are attached, as the start-up lines said it.
    pub attach: String,
    pub ports: String,
}

/// Client, then server, then first seen, as bytes that compare as `SocketAddr`s do
/// (family, address, port, all big-endian), packed into big-endian words: comparing words
/// is a few integer compares where comparing the bytes was a `memcmp` call, and a tick
/// compares keys tens of millions of times at a million flows (sorting, pairing).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct OrderKey([u64; 6]);

impl OrderKey {
    /// Straight from the key's bytes (an IPv4 address is its first four, the rest zero),
    /// which is what `SocketAddr`s would compare, without building them.
    pub fn of(f: &FlowRecord) -> Self {
        Self::parts(&f.key, f.state.client_is_a != 0, f.state.first_seen_ns)
    }

    /// The order key a record of `key` with these roles and start would have.
    pub fn parts(k: &FlowKey, client_is_a: bool, first_seen_ns: u64) -> Self {
        let ((ca, cp), (sa, sp)) = if client_is_a {
            ((&k.addr_a, k.port_a), (&k.addr_b, k.port_b))
        } else {
            ((&k.addr_b, k.port_b), (&k.addr_a, k.port_a))
        };
        let v6 = u8::from(k.family != 4);
        let mut b = [0u8; 48];
        for (at, a, p) in [(0, ca, cp), (19, sa, sp)] {
            b[at] = v6;
            b[at + 1..at + 17].copy_from_slice(a);
            b[at + 17..at + 19].copy_from_slice(&p.to_be_bytes());
        }
        b[38..46].copy_from_slice(&first_seen_ns.to_be_bytes());
        let mut w = [0u64; 6];
        for (w, c) in w.iter_mut().zip(b.chunks_exact(8)) {
            *w = u64::from_be_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
        }
        Self(w)
    }
}
