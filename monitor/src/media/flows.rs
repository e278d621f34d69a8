//! The media verdicts of many flows over ticks. Payload samples come a few per flow
//! direction, spread over ticks; a flow's samples are kept only while its `Media` can still
//! change, and are dropped once it is final: a reply judged, a reset, the flow gone, or
//! nothing more to come (every sample of both directions taken, or none for a timeout) with
//! no wait left running. The caller then keeps the small final `Media` in its own flow row,
//! so what this holds is bounded by the flows still pending, and those by a cap.
//!
//! Each tick re-judges only the flows that got a sample or a reset, or whose verdict's time
//! came ([`judge_timed`]); the result is the same as judging every flow's samples so far on
//! every tick (`flows_tests.rs` holds it to that).

use std::collections::{BTreeMap, HashSet};

use monitor_common::{
    flow::FlowKey,
    sample::{Sample, MAX_SAMPLES},
};

use super::{
    pseudo_tls::CLIENT_HELLO_LEN,
    stream::PayloadSample,
    stun::Side,
    turn,
    verdict::{judge_timed, ClientSent, Exchange, Media, Reset, Verdict},
};

/// One flow: its key and when it was first seen, so a key reused by a later connection is
/// another flow (as the flow table tells them apart). Ordered oldest first: the cap drops
/// from the front.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
struct Id {
    first_seen_ns: u64,
    key: FlowKey,
}

/// Flows pending with samples at most, unless the caller says otherwise: at 4 samples of at
/// most 256 bytes per direction, 4096 flows hold at most 8 MiB of samples.
pub const DEFAULT_MAX_PENDING: usize = 4096;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MediaFlowsConfig {
    /// Payload samples taken per flow direction (`--media-samples`): once both directions
    /// have this many, no more will come.
    pub samples: u32,
    /// Flows pending with samples at most; past it the oldest is dropped (and counted).
    pub max_pending: usize,
    /// How long a hello may wait for its answer (the TLS reply timeout).
    pub reply_timeout_ns: u64,
    /// How long a STUN request may wait for its response.
    pub stun_timeout_ns: u64,
}

/// What the caller's flow table knows of a pending flow at a tick.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowFacts {
    /// The flow's first reset, if it had one.
    pub reset: Option<Reset>,
    /// The flow is no longer in the table (closed and removed, or evicted), or its slot
    /// now holds another flow: its samples are final as they are.
    pub gone: bool,
}

/// A flow whose `Media` became known or changed this tick.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MediaUpdate {
    pub key: FlowKey,
    pub first_seen_ns: u64,
    /// The slot the caller gave with the flow's latest sample, to find its row without a
    /// lookup (check the row still holds this key and first-seen time).
    pub slot: u32,
    pub media: Media,
    /// Final: nothing is kept for the flow any more, and a later sample of it must not be
    /// added (it would start a stream in the middle).
    pub done: bool,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MediaFlowsStats {
    /// Flows pending with samples now.
    pub pending: usize,
    /// Flows dropped since the start because more than `max_pending` were pending.
    pub dropped: u64,
}

#[derive(Debug)]
struct Pending {
    slot: u32,
    client: Vec<PayloadSample>,
    server: Vec<PayloadSample>,
    last_sample_ns: u64,
    reset: Option<Reset>,
    /// What the caller was last given (the default until a first update).
    shown: Media,
    /// A sample or a reset came since the last judgement.
    dirty: bool,
    /// When the flow must be judged again without a new sample.
    recheck_at_ns: u64,
}

#[derive(Debug)]
pub struct MediaFlows {
    cfg: MediaFlowsConfig,
    flows: BTreeMap<Id, Pending>,
    /// Dropped by the cap since the last tick, reported (done) by the next one.
    evicted: Vec<MediaUpdate>,
    evicted_ids: HashSet<Id>,
    dropped: u64,
}

impl MediaFlows {
    pub fn new(cfg: MediaFlowsConfig) -> MediaFlows {
        MediaFlows {
            cfg: MediaFlowsConfig {
                samples: cfg.samples.min(MAX_SAMPLES),
                max_pending: cfg.max_pending.max(1),
                ..cfg
            },
            flows: BTreeMap::new(),
            evicted: Vec::new(),
            evicted_ids: HashSet::new(),
            dropped: 0,
        }
    }

    /// A sample as the kernel or the capture engine took it (direction from `dir`), of the
    /// flow the caller's table holds in `slot`.
    pub fn add(&mut self, key: FlowKey, first_seen_ns: u64, slot: u32, sample: &Sample) {
        let side = if sample.dir == 0 {
            Side::Client
        } else {
            Side::Server
        };
        self.add_payload(key, first_seen_ns, slot, side, PayloadSample::from(sample));
    }

    /// A sample of one direction; beyond `samples` per direction it is ignored.
    pub fn add_payload(
        &mut self,
        key: FlowKey,
        first_seen_ns: u64,
        slot: u32,
        side: Side,
        sample: PayloadSample,
    ) {
        let id = Id { first_seen_ns, key };
        if self.cfg.samples == 0 || self.evicted_ids.contains(&id) {
            return;
        }
        if !self.flows.contains_key(&id) && self.flows.len() >= self.cfg.max_pending {
            self.evict_oldest(id, slot);
            if self.evicted_ids.contains(&id) {
                return;
            }
        }
        let p = self.flows.entry(id).or_insert_with(|| Pending {
            slot,
            client: Vec::new(),
            server: Vec::new(),
            last_sample_ns: 0,
            reset: None,
            shown: Media::default(),
            dirty: false,
            recheck_at_ns: u64::MAX,
        });
        let samples = match side {
            Side::Client => &mut p.client,
            Side::Server => &mut p.server,
        };
        if samples.len() >= self.cfg.samples as usize {
            return;
        }
        p.slot = slot;
        p.last_sample_ns = p.last_sample_ns.max(sample.time_ns);
        samples.push(sample);
        p.dirty = true;
    }

    /// Makes room for `new`: drops the oldest pending flow, or `new` itself when it is
    /// older than all of them.
    fn evict_oldest(&mut self, new: Id, slot: u32) {
        let oldest = self.flows.first_key_value().map(|(id, _)| *id);
        self.dropped += 1;
        match oldest {
            Some(old) if old < new => {
                if let Some(p) = self.flows.remove(&old) {
                    self.evicted.push(MediaUpdate {
                        key: old.key,
                        first_seen_ns: old.first_seen_ns,
                        slot: p.slot,
                        media: p.shown,
                        done: true,
                    });
                }
                self.evicted_ids.insert(old);
            }
            _ => {
                self.evicted.push(MediaUpdate {
                    key: new.key,
                    first_seen_ns: new.first_seen_ns,
                    slot,
                    media: Media::default(),
                    done: true,
                });
                self.evicted_ids.insert(new);
            }
        }
    }

    /// Judges the flows that need it at `now_ns`; `facts` is asked about every pending flow
    /// (by key, first-seen time and the slot given with its latest sample). Returns the flows whose `Media`
    /// changed or became final, the ones the cap dropped since the last tick among them.
    pub fn tick(
        &mut self,
        now_ns: u64,
        mut facts: impl FnMut(&FlowKey, u64, u32) -> FlowFacts,
    ) -> Vec<MediaUpdate> {
        let mut out = std::mem::take(&mut self.evicted);
        self.evicted_ids.clear();
        let cfg = self.cfg;
        let mut finished = Vec::new();
        for (id, p) in self.flows.iter_mut() {
            let f = facts(&id.key, id.first_seen_ns, p.slot);
            if p.reset.is_none() && f.reset.is_some() {
                p.reset = f.reset;
                p.dirty = true;
            }
            if !(p.dirty || f.gone || now_ns >= p.recheck_at_ns) {
                continue;
            }
            let judged = judge_timed(&Exchange {
                client: &p.client,
                server: &p.server,
                reset: p.reset,
                now_ns,
                reply_timeout_ns: cfg.reply_timeout_ns,
                stun_timeout_ns: cfg.stun_timeout_ns,
            });
            let mut media = judged.media;
            let closed = f.gone || p.reset.is_some();
            if closed {
                close_stun(&mut media);
            }
            let more = more_samples_at(&cfg, p);
            let done = closed
                || (judged.changes_at_ns.is_none()
                    && (final_now(&media, &p.client) || more.is_none_or(|at| now_ns >= at)));
            if done || media != p.shown {
                out.push(MediaUpdate {
                    key: id.key,
                    first_seen_ns: id.first_seen_ns,
                    slot: p.slot,
                    media: media.clone(),
                    done,
                });
            }
            if done {
                finished.push(*id);
                continue;
            }
            p.shown = media;
            p.dirty = false;
            p.recheck_at_ns = match (judged.changes_at_ns, more) {
                (Some(a), Some(b)) => a.min(b),
                (a, b) => a.or(b).unwrap_or(u64::MAX),
            };
        }
        for id in finished {
            self.flows.remove(&id);
        }
        out
    }

    pub fn stats(&self) -> MediaFlowsStats {
        MediaFlowsStats {
            pending: self.flows.len(),
            dropped: self.dropped,
        }
    }
}

/// Until when more samples may still come: `None` once both directions have all theirs,
/// else a timeout after the latest one (the longer of the two waits).
fn more_samples_at(cfg: &MediaFlowsConfig, p: &Pending) -> Option<u64> {
    let all = cfg.samples as usize;
    if p.client.len() >= all && p.server.len() >= all {
        return None;
    }
    let wait = cfg.reply_timeout_ns.max(cfg.stun_timeout_ns);
    Some(p.last_sample_ns.saturating_add(wait))
}

/// Whether more bytes cannot change `media` (time, [`judge_timed`] says, no longer does):
/// an interception, a rejection or a reply timed out is final as the contract says, so is a
/// real TLS exchange judged (no STUN follows it); and a client stream that opens with 50
/// bytes of no media protocol stays `other` (its first bytes are what names it; only
/// MS-TURN data frames are named by how they tile the whole stream).
fn final_now(media: &Media, client: &[PayloadSample]) -> bool {
    match (media.client_sent, media.verdict) {
        (_, Some(Verdict::Intercepted | Verdict::Rejected | Verdict::NoReply)) => true,
        (Some(ClientSent::Tls), Some(_)) => true,
        (Some(ClientSent::Other), _) => client
            .iter()
            .find(|s| !s.bytes.is_empty())
            .is_some_and(|s| s.bytes.len() >= CLIENT_HELLO_LEN && s.bytes[0] != turn::DATA),
        _ => false,
    }
}

/// A closed flow's open STUN requests will never be answered.
fn close_stun(media: &mut Media) {
    if let Some(c) = &mut media.stun {
        c.unanswered += c.pending;
        c.pending = 0;
    }
}
