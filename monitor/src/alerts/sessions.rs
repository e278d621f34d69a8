//! Flows grouped into sessions by remote host: a client opens several candidate
//! connections at once (and some failing is normal), so an alert is judged per session.

use std::{
    fmt,
    net::{IpAddr, SocketAddr},
};

use foldhash::HashMap;

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
/// server (a roll-up, see `rollup.rs`), named `rollup:ADDR:PORT`.
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

#[derive(Debug, Default)]
struct Host {
    /// Number of the host's current session, and its latest activity.
    n: u32,
    last_ns: u64,
}

/// The hosts' current sessions. Which session a flow joined is kept with the flow (the
/// engine's per-flow state), so nothing here grows with the number of flows.
#[derive(Debug, Default)]
pub struct Sessions {
    hosts: HashMap<IpAddr, Host>,
}

impl Sessions {
    /// The session a new flow joins: its host's current one, or the host's next one if the
    /// flow started more than `window_ns` after the host's latest activity.
    pub fn join(
        &mut self,
        first_seen_ns: u64,
        remote: IpAddr,
        last_seen_ns: u64,
        window_ns: u64,
    ) -> SessionId {
        let h = self.hosts.entry(remote).or_default();
        if h.n == 0 || first_seen_ns > h.last_ns.saturating_add(window_ns) {
            h.n += 1;
        }
        h.last_ns = h.last_ns.max(last_seen_ns);
        SessionId { remote, n: h.n }
    }

    /// A known flow moved: its host is active until `last_seen_ns`. Hosts stay (their count
    /// keeps session numbers unique for the run; one entry per remote host is small).
    pub fn touch(&mut self, remote: IpAddr, last_seen_ns: u64) {
        let h = self.hosts.entry(remote).or_default();
        h.last_ns = h.last_ns.max(last_seen_ns);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flows_close_in_time_share_a_session_and_a_later_one_starts_the_next() {
        let mut s = Sessions::default();
        let host: IpAddr = "10.0.0.1".parse().expect("ip");
        let other: IpAddr = "10.0.0.2".parse().expect("ip");
        let w = 30_000_000_000;
        let a = s.join(0, host, 5_000_000_000, w);
        let b = s.join(1_000_000_000, host, 20_000_000_000, w);
        let c = s.join(2_000_000_000, other, 2_000_000_000, w);
        assert_eq!(a, b, "candidate connections of one host at once");
        assert_ne!(a, c, "another host");
        // 20 s of activity + 30 s window: a flow at 60 s is a new session.
        let d = s.join(60_000_000_000, host, 61_000_000_000, w);
        assert_eq!((a.n, d.n), (1, 2));
        // Activity of a known flow keeps the host's session going.
        s.touch(host, 99_000_000_000);
        assert_eq!(s.join(100_000_000_000, host, 100_000_000_000, w).n, 2);
        assert_eq!(s.join(200_000_000_000, host, 200_000_000_000, w).n, 3);
        assert_eq!(d.to_string(), "10.0.0.1#2");
    }
}
