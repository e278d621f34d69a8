//! One flow judged: what the engine keeps of it between ticks ([`FlowEntry`]), and one
//! tick's judging of the flows the schedule hands it ([`Judge`]), with what they add up to.

use foldhash::HashMap;
use monitor_common::flow::{seen, FlowKey};
use std::num::NonZeroU32;

use super::{
    config::AlertConfig,
    history::{update_zeek, FlowHistory},
    idle::IdleTimes,
    lifecycle::{collect, Findings},
    ns, rules, sessions,
    window::{Sample, SampleCounters},
};
use crate::{
    media::verdict::Media,
    model::{FlowHealth, FlowId, FlowRecord, Kind, Level, Ratio, SessionId},
};

/// What the engine keeps of one flow between ticks.
pub(super) struct FlowEntry {
    /// The flow's id, hashed ([`id_hash`]): which flow of its row the state is of, in 8
    /// bytes where the id takes 48 (the table's key is the row's).
    pub(super) id_hash: u64,
    pub(super) hist: FlowHistory,
    /// The session the flow joined when first seen.
    pub(super) session: SessionId,
    /// The rules found nothing when last judged and time alone cannot change that before
    /// this time (0: not settled; `u64::MAX`: never, [`rules::quiet_until`]): while the
    /// record stays as it was, judging it again before then would find nothing. Most flows
    /// of a big table are in this state, and skipping them is what keeps a tick short.
    settled_until: u64,
    /// Settled with one finding, the handshake's ([`rules::handshake_stands_until`]): until
    /// `settled_until` it is made again each tick from the record, not judged.
    standing: bool,
}

/// A flow id hashed: two flows of one row telling apart (a 64-bit hash: two ids of one
/// row hashing alike are not a case to handle).
pub(super) fn id_hash(id: &FlowId) -> u64 {
    use std::hash::BuildHasher;
    foldhash::fast::FixedState::with_seed(0x6d6f_6e69).hash_one(id)
}

/// What this tick changed of a flow: its record (since it was last judged: a record that
/// changes is judged in the tick it changes, so the table's change set says it), and its
/// media verdict, as it is now.
#[derive(Clone, Copy, Default)]
pub(super) struct RowChange<'a> {
    pub(super) record: bool,
    /// The flow joined its session this tick, with this record.
    pub(super) joined: bool,
    pub(super) media: Option<&'a Media>,
    pub(super) media_changed: bool,
}

/// Whether a flow counts as a working flow of its session, kept per row: a walk of these
/// is sequential, where reading each flow's state was a cache miss per flow (its session
/// is read from its state only for the flows that work).
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct WorkingState {
    last_seen_ns: u64,
    /// Established, not closed, nothing wrong found: it works while its packets are recent.
    may_work: bool,
}

impl WorkingState {
    pub(super) fn works(&self, now: u64, window_ns: u64) -> bool {
        self.may_work && now.saturating_sub(self.last_seen_ns) < window_ns
    }
}

impl FlowEntry {
    /// The state of a flow first seen now, in the session it joined.
    pub(super) fn new(session: SessionId, f: &FlowRecord) -> Self {
        Self {
            id_hash: id_hash(&FlowId::of(f)),
            hist: FlowHistory::default(),
            session,
            settled_until: 0,
            standing: false,
        }
    }

    /// This tick's findings for the flow, into `found`. `wake` gets when it must be judged again, if its
    /// window paused now with more than one run of counters in it.
    #[allow(clippy::too_many_arguments)]
    fn judge(
        &mut self,
        cfg: &AlertConfig,
        f: &FlowRecord,
        now: u64,
        hello: Option<u64>,
        change: RowChange,
        sessions: &mut sessions::Sessions,
        idle: &IdleTimes,
        wake: &mut Option<u64>,
        found: &mut Vec<rules::Finding>,
        zeek: &mut compact_str::CompactString,
    ) {
        let st = &f.state;
        let window = ns(cfg.retransmit_window_s);
        // The counters an idle window held are the record's as the last tick read it: this
        // one's, unless it changed, and then the schedule caught the window up from the
        // record before already.
        let held = SampleCounters::of_stats(st);
        let w = &mut self.hist.window;
        let settled = self.settled_until > now;
        if settled && hello.is_none() && !change.media_changed && !change.record {
            // Same counters as before: the sample only moves the rate window on, and the
            // idle times take the samples for it until its oldest counters leave.
            if w.must_catch_up(now) {
                w.catch_up(idle, window, &held);
            }
            if !w.is_paused() {
                let s = Sample::of(st, now);
                if w.pause(&s, idle, window) {
                    // Woken when the window's oldest counters leave it, or when time may
                    // find something, whichever comes first.
                    let until = Some(self.settled_until).filter(|&t| t != u64::MAX);
                    *wake = w.wake_ns().into_iter().chain(until).min();
                } else {
                    w.catch_up(idle, window, &held).push(s, window);
                }
            }
            found.clear();
            if self.standing {
                rules::handshake(cfg, st, now, found);
            }
            return;
        }
        let k = w.catch_up(idle, window, &held);
        // The host was last told of this record (or joined with it): telling it again
        // changes nothing, and a scan's unanswered SYNs are judged tick after tick.
        if change.record && !change.joined {
            sessions.touch(f.client().ip(), st.last_seen_ns);
        }
        let prev_ts = k.latest().map(|s| s.ts_ns);
        k.push(Sample::of(st, now), window);
        self.hist.observe(st, now, prev_ts, hello);
        update_zeek(zeek, st);
        rules::evaluate(cfg, st, &self.hist, change.media, now, found);
        // Only the handshake's finding, which time alone changes at a known time: it stands.
        let standing = !found.is_empty()
            && change.media.is_none()
            && found.iter().all(|f| f.kind == Kind::HandshakeFailure);
        self.settled_until = match rules::quiet_until(cfg, st, &self.hist) {
            Some(t) if found.is_empty() => t,
            Some(_) if standing => rules::handshake_stands_until(cfg, st, now),
            _ => 0,
        };
        self.standing = standing && self.settled_until != 0;
    }

    /// Whether the flow need not be judged while its record stays as it is (and no
    /// ClientHello event comes for it) until a wake: it is settled, its window paused (a
    /// standing flow's finding is still made each tick: [`Judge::stand`]).
    pub(super) fn idle(&self) -> bool {
        self.settled_until != 0 && self.hist.window.is_paused()
    }

    /// The flow's health with nothing found: an idle flow's (rates as its paused window
    /// gives them), and what [`FlowEntry::health`] adds the level to; `history`: its Zeek
    /// history letters.
    pub(super) fn idle_health(
        &self,
        cfg: &AlertConfig,
        history: compact_str::CompactString,
    ) -> FlowHealth {
        let (throughput, retx_rate) = self.hist.rates(cfg.retransmit_min_segments);
        FlowHealth {
            session_n: NonZeroU32::new(self.session.n),
            level: None,
            throughput,
            retx_rate: retx_rate.map(Ratio::new),
            zero_window_ns: self.hist.zero_total_ns(),
            alerts: thin_vec::ThinVec::new(),
            history,
        }
    }

    /// The flow's health for the snapshot, and whether it counts as working.
    fn health(
        &self,
        cfg: &AlertConfig,
        f: &FlowRecord,
        found: &[rules::Finding],
        history: compact_str::CompactString,
    ) -> (FlowHealth, WorkingState) {
        let st = &f.state;
        let level = found
            .iter()
            .map(|x| x.level)
            .filter(|l| *l >= Level::Warning)
            .max();
        let closed = st.dir.iter().any(|d| d.fins > 0 || d.rsts > 0);
        let working = WorkingState {
            last_seen_ns: st.last_seen_ns,
            may_work: st.seen & (seen::ESTABLISHED | seen::MIDSTREAM) != 0
                && !closed
                && level.is_none(),
        };
        let health = FlowHealth {
            level,
            ..self.idle_health(cfg, history)
        };
        (health, working)
    }
}

/// One tick's judging, row by row: the same steps for every flow judged, however the
/// schedule found the rows, and what they add up to.
pub(super) struct Judge<'a> {
    pub(super) cfg: &'a AlertConfig,
    /// The engine's, as the last tick left them.
    pub(super) idle: &'a IdleTimes,
    pub(super) hellos: &'a HashMap<FlowKey, u64>,
    pub(super) now: u64,
    pub(super) skip_settled: bool,
    pub(super) findings: Findings,
    /// One flow's findings, the list reused from flow to flow.
    found: Vec<rules::Finding>,
    /// Rows whose flow paused with a time to wake, and that time.
    wakes: Vec<(u64, u32)>,
    /// Rows whose flow is not idle after judging.
    busy: Vec<u32>,
    /// Rows whose flow is idle and standing after judging.
    standing: Vec<u32>,
}

impl<'a> Judge<'a> {
    pub(super) fn new(
        cfg: &'a AlertConfig,
        idle: &'a IdleTimes,
        hellos: &'a HashMap<FlowKey, u64>,
        now: u64,
        skip_settled: bool,
    ) -> Self {
        Self {
            cfg,
            idle,
            hellos,
            now,
            skip_settled,
            findings: Findings::new(),
            found: Vec::new(),
            wakes: Vec::new(),
            busy: Vec::new(),
            standing: Vec::new(),
        }
    }

    /// Judges flow `t`, row `i` with record `f`: its health, and whether it counts as
    /// working for its session.
    pub(super) fn row(
        &mut self,
        t: &mut FlowEntry,
        i: usize,
        f: &FlowRecord,
        change: RowChange,
        sessions: &mut sessions::Sessions,
        mut history: compact_str::CompactString,
    ) -> (FlowHealth, WorkingState) {
        if !self.skip_settled {
            t.settled_until = 0;
        }
        let hello = (!self.hellos.is_empty())
            .then(|| self.hellos.get(&f.key).copied())
            .flatten();
        let mut wake = None;
        let found = &mut self.found;
        t.judge(
            self.cfg,
            f,
            self.now,
            hello,
            change,
            sessions,
            self.idle,
            &mut wake,
            found,
            &mut history,
        );
        self.wakes.extend(wake.map(|w| (w, i as u32)));
        let judged = t.health(self.cfg, f, found, history);
        collect(&mut self.findings, t.session, i, found);
        if !t.idle() {
            self.busy.push(i as u32);
        } else if t.standing {
            self.standing.push(i as u32);
        }
        judged
    }

    /// Files the finding of standing flow `t`, row `i` with record `f`, not judged this
    /// tick: its health and window are as the last judging left them, and its finding is
    /// the handshake rule's on the same record.
    pub(super) fn stand(&mut self, t: &FlowEntry, i: usize, f: &FlowRecord) {
        if !t.standing || t.settled_until <= self.now {
            return;
        }
        let found = &mut self.found;
        found.clear();
        rules::handshake(self.cfg, &f.state, self.now, found);
        collect(&mut self.findings, t.session, i, found);
        self.standing.push(i as u32);
    }

    /// The rows not idle, ascending, the rows that paused with their wake times, and the
    /// standing rows.
    pub(super) fn finish(&mut self) -> (Vec<u32>, Vec<(u64, u32)>, Vec<u32>) {
        let mut busy = std::mem::take(&mut self.busy);
        busy.sort_unstable();
        (
            busy,
            std::mem::take(&mut self.wakes),
            std::mem::take(&mut self.standing),
        )
    }
}
