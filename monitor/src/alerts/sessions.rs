//! Flows grouped into sessions by remote host: a client opens several candidate
//! connections at once (and some failing is normal), so an alert is judged per session.

use std::net::IpAddr;

use foldhash::HashMap;

use crate::model::SessionId;

/// The hosts by address, IPv4 ones by a 4-byte key: an entry of 24 bytes, where an
/// `IpAddr` key (17 bytes, padded) makes every entry 40 (a scan meets a million hosts).
#[derive(Debug, Default)]
struct Hosts {
    v4: HashMap<u32, Host>,
    v6: HashMap<u128, Host>,
}

impl Hosts {
    fn entry(&mut self, ip: IpAddr) -> &mut Host {
        match ip {
            IpAddr::V4(a) => self.v4.entry(a.to_bits()).or_default(),
            IpAddr::V6(a) => self.v6.entry(a.to_bits()).or_default(),
        }
    }

    fn get_mut(&mut self, ip: IpAddr) -> Option<&mut Host> {
        match ip {
            IpAddr::V4(a) => self.v4.get_mut(&a.to_bits()),
            IpAddr::V6(a) => self.v6.get_mut(&a.to_bits()),
        }
    }
}

#[derive(Debug, Default)]
struct Host {
    /// Number of the host's current session, and its latest activity.
    n: u32,
    /// Flows of the current session in the table.
    flows: u32,
    last_ns: u64,
}

/// The hosts' current sessions, and how many sessions have a flow in the table. Which
/// session a flow joined is kept with the flow (the engine's per-flow state); the hosts
/// count their current session's flows, and only the sessions before a host's current
/// one that still have flows (few: a long flow across a gap) are counted by session.
#[derive(Debug, Default)]
pub struct Sessions {
    hosts: Hosts,
    /// Flows of sessions that are not their host's current one, where there are any.
    older: HashMap<SessionId, u32>,
    /// Sessions with at least one flow.
    active: usize,
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
        let h = self.hosts.entry(remote);
        if h.n == 0 || first_seen_ns > h.last_ns.saturating_add(window_ns) {
            if h.flows > 0 {
                self.older.insert(SessionId { remote, n: h.n }, h.flows);
            }
            h.n += 1;
            h.flows = 0;
        }
        h.last_ns = h.last_ns.max(last_seen_ns);
        h.flows += 1;
        if h.flows == 1 {
            self.active += 1;
        }
        SessionId { remote, n: h.n }
    }

    /// A flow of session `s` left the table.
    pub fn leave(&mut self, s: SessionId) {
        let left = match self.hosts.get_mut(s.remote) {
            Some(h) if h.n == s.n && h.flows > 0 => {
                h.flows -= 1;
                h.flows == 0
            }
            _ => match self.older.get_mut(&s) {
                Some(n) => {
                    *n -= 1;
                    let last = *n == 0;
                    if last {
                        self.older.remove(&s);
                    }
                    last
                }
                None => false,
            },
        };
        if left {
            self.active -= 1;
        }
    }

    /// Bytes its maps hold (the benchmark's account of resident memory): one entry a
    /// remote host.
    pub fn bytes(&self) -> u64 {
        // hashbrown's buckets: a power of two, at most 7/8 of them used (all of a small one).
        fn table<K, V>(m: &HashMap<K, V>) -> u64 {
            let cap = m.capacity();
            let buckets = match cap {
                0 => 0,
                1..8 => (cap + 1).next_power_of_two(),
                _ => (cap * 8 / 7).next_power_of_two(),
            } as u64;
            buckets * (std::mem::size_of::<(K, V)>() as u64 + 1)
        }
        table(&self.hosts.v4) + table(&self.hosts.v6) + table(&self.older)
    }

    /// Sessions with at least one flow in the table.
    pub fn active(&self) -> usize {
        self.active
    }

    /// A known flow moved: its host is active until `last_seen_ns`. Hosts stay (their count
    /// keeps session numbers unique for the run; one entry per remote host is small).
    pub fn touch(&mut self, remote: IpAddr, last_seen_ns: u64) {
        let h = self.hosts.entry(remote);
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

    #[test]
    fn active_sessions_are_those_with_a_flow_older_sessions_included() {
        let mut s = Sessions::default();
        let host: IpAddr = "10.0.0.1".parse().expect("ip");
        let w = 1_000;
        let a = s.join(0, host, 10, w);
        let b = s.join(5, host, 10, w);
        assert_eq!(s.active(), 1, "two flows, one session");
        // A flow long after: the host's next session, the first still holding two flows.
        let c = s.join(100_000, host, 100_000, w);
        assert_eq!((a.n, c.n, s.active()), (1, 2, 2));
        s.leave(a);
        assert_eq!(s.active(), 2, "session 1 still has a flow");
        s.leave(b);
        assert_eq!(s.active(), 1);
        s.leave(c);
        assert_eq!(s.active(), 0);
        assert!(s.older.is_empty());
    }
}
