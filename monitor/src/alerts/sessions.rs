//! Flows grouped into sessions by remote host: a client opens several candidate
//! connections at once (and some failing is normal), so an alert is judged per session.

use std::{fmt, net::IpAddr};

use foldhash::{HashMap, HashSet};

use super::FlowId;

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

#[derive(Debug, Default)]
struct Host {
    /// Number of the host's current session, and its latest activity.
    n: u32,
    last_ns: u64,
}

#[derive(Debug, Default)]
pub struct Sessions {
    hosts: HashMap<IpAddr, Host>,
    of_flow: HashMap<FlowId, SessionId>,
}

impl Sessions {
    /// The session of a flow: the one it joined when first seen. A flow starting more than
    /// `window_ns` after its host's latest activity opens the host's next session.
    pub fn assign(
        &mut self,
        id: FlowId,
        remote: IpAddr,
        last_seen_ns: u64,
        window_ns: u64,
    ) -> SessionId {
        if let Some(s) = self.of_flow.get(&id) {
            let h = self.hosts.entry(remote).or_default();
            h.last_ns = h.last_ns.max(last_seen_ns);
            return *s;
        }
        let h = self.hosts.entry(remote).or_default();
        if h.n == 0 || id.first_seen_ns > h.last_ns.saturating_add(window_ns) {
            h.n += 1;
        }
        h.last_ns = h.last_ns.max(last_seen_ns);
        let s = SessionId { remote, n: h.n };
        self.of_flow.insert(id, s);
        s
    }

    /// Forgets flows no longer present. Hosts stay (their count keeps session numbers
    /// unique for the run; one entry per remote host is small).
    pub fn retain(&mut self, present: &HashSet<FlowId>) {
        self.of_flow.retain(|id, _| present.contains(id));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use monitor_common::flow::FlowKey;

    fn id(port: u16, first_s: u64) -> FlowId {
        FlowId {
            key: FlowKey {
                port_a: port,
                ..FlowKey::default()
            },
            first_seen_ns: first_s * 1_000_000_000,
        }
    }

    #[test]
    fn flows_close_in_time_share_a_session_and_a_later_one_starts_the_next() {
        let mut s = Sessions::default();
        let host: IpAddr = "10.0.0.1".parse().expect("ip");
        let other: IpAddr = "10.0.0.2".parse().expect("ip");
        let w = 30_000_000_000;
        let a = s.assign(id(1, 0), host, 5_000_000_000, w);
        let b = s.assign(id(2, 1), host, 20_000_000_000, w);
        let c = s.assign(id(3, 2), other, 2_000_000_000, w);
        assert_eq!(a, b, "candidate connections of one host at once");
        assert_ne!(a, c, "another host");
        // 20 s of activity + 30 s window: a flow at 60 s is a new session.
        let d = s.assign(id(4, 60), host, 61_000_000_000, w);
        assert_eq!((a.n, d.n), (1, 2));
        // A flow keeps its session however long it lives.
        assert_eq!(s.assign(id(1, 0), host, 99_000_000_000, w), a);
        assert_eq!(d.to_string(), "10.0.0.1#2");
    }
}
