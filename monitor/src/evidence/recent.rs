//! The packets the evidence ring handed over, kept per flow until an alert needs them: the
//! flow's first packets (its handshake and first exchange) and its latest ones (what came
//! just before the alert), within `--evidence-ring-mb`. Past that, the flows whose latest
//! packet is the oldest go first, and their packets are counted as lost (the packets
//! between a flow's first and its latest are let go as a matter of course, not lost).

use std::collections::{HashMap, VecDeque};

use monitor_common::evidence::EvidencePacket;

use crate::model::FlowId;

/// Packets kept of each flow's start: SYN, SYN/ACK, ACK, the hello and its reply, and the
/// first messages after them.
pub const HEAD: usize = 8;
/// Packets kept of each flow's latest stretch.
pub const TAIL: usize = 64;

#[derive(Default)]
struct Kept {
    head: Vec<EvidencePacket>,
    tail: VecDeque<EvidencePacket>,
    /// Packets let go between the head and the tail.
    skipped: u64,
    latest_ns: u64,
}

/// What is kept of a flow: its packets oldest first, and how many were let go before the
/// packet at `gap.0` (`None`: none, the flow is whole).
pub struct KeptPackets {
    pub packets: Vec<EvidencePacket>,
    pub gap: Option<(usize, u64)>,
}

impl Kept {
    fn len(&self) -> usize {
        self.head.len() + self.tail.len()
    }
}

/// Recent packets by flow, at most `max` in all.
pub struct RecentPackets {
    flows: HashMap<FlowId, Kept>,
    held: usize,
    max: usize,
    /// Packets dropped with their flow, to keep within `max`.
    pub lost: u64,
}

/// The flow a packet counted into.
pub fn flow_of(p: &EvidencePacket) -> FlowId {
    FlowId {
        key: p.key,
        first_seen_ns: p.first_seen_ns,
    }
}

impl RecentPackets {
    /// Room for `bytes` of packets (at least one flow's worth).
    pub fn new(bytes: usize) -> Self {
        let max = (bytes / std::mem::size_of::<EvidencePacket>()).max(HEAD + TAIL);
        Self {
            flows: HashMap::new(),
            held: 0,
            max,
            lost: 0,
        }
    }

    pub fn push(&mut self, p: EvidencePacket) {
        let k = self.flows.entry(flow_of(&p)).or_default();
        k.latest_ns = k.latest_ns.max(p.ts_ns);
        if k.head.len() < HEAD {
            k.head.push(p);
            self.held += 1;
        } else {
            if k.tail.len() == TAIL {
                k.tail.pop_front();
                k.skipped += 1;
                self.held -= 1;
            }
            k.tail.push_back(p);
            self.held += 1;
        }
        if self.held > self.max {
            self.shed();
        }
    }

    /// Drops the flows least recently seen until a quarter of the room is free: each
    /// round sorts the flows once, so a long run of pushes pays it rarely.
    fn shed(&mut self) {
        let mut by_age: Vec<(u64, FlowId)> =
            self.flows.iter().map(|(f, k)| (k.latest_ns, *f)).collect();
        by_age.sort_unstable_by_key(|(t, _)| *t);
        let goal = self.max - self.max / 4;
        for (_, f) in by_age {
            if self.held <= goal {
                break;
            }
            if let Some(k) = self.flows.remove(&f) {
                self.held -= k.len();
                self.lost += k.len() as u64;
            }
        }
    }

    /// Every packet kept of `flow`, oldest first (they stay kept: a second alert on the
    /// flow gets them too).
    pub fn kept(&self, flow: &FlowId) -> KeptPackets {
        let Some(k) = self.flows.get(flow) else {
            return KeptPackets {
                packets: Vec::new(),
                gap: None,
            };
        };
        KeptPackets {
            packets: k.head.iter().chain(&k.tail).copied().collect(),
            gap: (k.skipped > 0).then_some((k.head.len(), k.skipped)),
        }
    }

    /// Packets held now.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.held
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(flow: u16, ts: u64) -> EvidencePacket {
        // SAFETY: `EvidencePacket` is integers and byte arrays: all zeros is a value.
        let mut p: EvidencePacket = unsafe { std::mem::zeroed() };
        p.key.port_a = flow;
        p.ts_ns = ts;
        p.first_seen_ns = 1;
        p
    }

    fn id(flow: u16) -> FlowId {
        flow_of(&packet(flow, 0))
    }

    #[test]
    fn a_flow_keeps_its_first_and_its_latest_packets_in_order() {
        let mut r = RecentPackets::new(1 << 20);
        for ts in 0..200 {
            r.push(packet(1, ts));
        }
        let kept = r.kept(&id(1));
        let times: Vec<u64> = kept.packets.iter().map(|p| p.ts_ns).collect();
        let want: Vec<u64> = (0..HEAD as u64).chain(200 - TAIL as u64..200).collect();
        assert_eq!(times, want);
        assert_eq!(kept.gap, Some((HEAD, 200 - (HEAD + TAIL) as u64)));
        assert_eq!(
            (r.len(), r.lost),
            (HEAD + TAIL, 0),
            "the middle let go, not lost"
        );
        assert_eq!(r.kept(&id(1)).packets.len(), HEAD + TAIL, "still kept");
        assert!(r.kept(&id(2)).packets.is_empty());
        r.push(packet(3, 0));
        assert_eq!(r.kept(&id(3)).gap, None, "a whole flow has no gap");
    }

    #[test]
    fn past_its_room_the_flows_least_recently_seen_go_first() {
        let whole = HEAD + TAIL;
        let mut r = RecentPackets::new(3 * whole * std::mem::size_of::<EvidencePacket>());
        for (flow, ts) in [(1, 0), (2, 100), (3, 200)] {
            for i in 0..whole as u64 {
                r.push(packet(flow, ts + i));
            }
        }
        // Flow 1 seen again: now flow 2 is the one least recently seen.
        r.push(packet(1, 300));
        assert_eq!((r.len(), r.lost), (3 * whole, 0), "full, nothing shed yet");
        r.push(packet(4, 400));
        assert!(r.kept(&id(2)).packets.is_empty(), "flow 2 went");
        assert_eq!(r.lost, whole as u64);
        assert_eq!(r.kept(&id(1)).packets.len(), whole);
        assert_eq!(r.kept(&id(3)).packets.len(), whole);
        assert_eq!(r.kept(&id(4)).packets.len(), 1);
    }
}
