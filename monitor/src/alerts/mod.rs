//! The alert engine. On every tick the schedule picks the flows to judge (`schedule.rs`);
//! each is judged (`flow.rs`): its counters become rates over the rate window
//! (`window.rs`, idle flows pausing theirs: `idle.rs`), the rules find what is wrong with it
//! (`rules.rs`; what they found is put in words for an alert's worst flow only:
//! `finding.rs`), and it belongs to a session of its remote host (`sessions.rs`). The
//! findings become alerts with a lifecycle (`lifecycle.rs`, README.md "Alerts"), storms
//! rolling up into one alert per server (`rollup.rs`). Sparklines are kept for the flow
//! looked at and the flows of active alerts only (`spark.rs`).

pub mod config;
mod finding;
mod flow;
pub mod history;
mod idle;
mod lifecycle;
mod rollup;
pub mod rules;
mod schedule;
pub mod sessions;
mod spark;
pub mod window;

use foldhash::HashMap;
use monitor_common::{
    event::{Event, EventKind},
    flow::FlowKey,
};

pub use config::AlertConfig;
pub use lifecycle::{Change, Transition};
pub use spark::SPARK_POINTS;

use crate::{
    footprint::Footprint,
    model::{Alert, FlowId, Point},
    snapshot::Snapshot,
    table::FlowTable,
};
use flow::Judge;
use idle::IdleTimes;
use lifecycle::Lifecycle;
use schedule::Schedule;
use spark::Sparklines;
use window::SampleCounters;

fn ns(s: f64) -> u64 {
    (s * 1e9) as u64
}

pub struct AlertEngine {
    cfg: AlertConfig,
    /// The flows of the last snapshot, row by row, and which are due at the next tick.
    schedule: Schedule,
    sessions: sessions::Sessions,
    /// The sample times idle flows share while their windows are paused.
    idle: IdleTimes,
    /// Settled flows whose record did not change are not judged again (off only in the
    /// test that holds the shortcut to judging everything).
    skip_settled: bool,
    lifecycle: Lifecycle,
    sparks: Sparklines,
}

impl AlertEngine {
    pub fn new(cfg: AlertConfig) -> Self {
        Self {
            cfg,
            schedule: Schedule::default(),
            sessions: sessions::Sessions::default(),
            idle: IdleTimes::default(),
            skip_settled: true,
            lifecycle: Lifecycle::new(),
            sparks: Sparklines::default(),
        }
    }

    pub fn config(&self) -> &AlertConfig {
        &self.cfg
    }

    /// What the engine holds for its flows, by holder (the benchmark's account of
    /// resident memory).
    pub fn footprint(&self) -> Footprint {
        let [state, histories, lists] = self.schedule.footprint();
        vec![
            ("flow state", state),
            ("flow histories' buffers", histories),
            ("engine's per-row lists", lists),
            ("sparklines", self.sparks.bytes()),
            ("hosts' sessions", self.sessions.bytes()),
        ]
    }

    /// Says which flow a person looks at (the UI's detail view), before the tick: from
    /// then on the engine keeps its sparkline, until another (or none) is looked at.
    pub fn look_at(&mut self, id: Option<FlowId>) {
        self.sparks.look_at(id);
    }

    /// How many flows hold a sparkline (the flow looked at, the flows of active alerts).
    pub fn sparklines(&self) -> usize {
        self.sparks.count()
    }

    /// The sparkline points of one flow, oldest first (the one the UI shows in detail):
    /// those kept for a followed flow, else those its rate window still gives.
    pub fn spark(&self, id: &FlowId, table: &FlowTable) -> Vec<Point> {
        if let Some(points) = self.sparks.get(id) {
            return points;
        }
        let window = ns(self.cfg.retransmit_window_s);
        self.schedule
            .entry(table, id)
            .map(|(e, st)| {
                let held = SampleCounters::of_stats(st);
                spark::from_window(&e.hist.window, &held, &self.idle, window)
                    .0
                    .iter()
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Judges one snapshot: fills its `health` and `alerts`, returns the transitions.
    /// `events` are those drained since the previous tick.
    pub fn tick(&mut self, snap: &mut Snapshot, events: &[Event]) -> Vec<Transition> {
        let now = snap.now_ns;
        let cfg = &self.cfg;
        let mut hellos: HashMap<FlowKey, u64> = HashMap::default();
        for ev in events
            .iter()
            .filter(|e| e.kind() == Some(EventKind::ClientHello))
        {
            hellos.entry(ev.key).or_insert(ev.ts_ns);
        }
        let mut judge = Judge::new(cfg, &self.idle, &hellos, now, self.skip_settled);
        let shared = snap.flows.clone();
        let mut table = shared.write();
        self.schedule
            .judge(&mut table, &mut judge, &mut self.sessions);
        let findings = judge.findings;
        // Whether a session still has a working flow matters only where something is wrong.
        let mut working = self.lifecycle.sessions_in_question(&findings);
        if !working.is_empty() {
            let window = ns(cfg.session_window_s);
            for s in self.schedule.working_sessions(now, window) {
                if let Some(v) = working.get_mut(&s) {
                    *v = true;
                }
            }
        }
        let out = self.lifecycle.update(findings, &working, &table, cfg, now);
        let part_of = self.lifecycle.part_of(&table);
        self.schedule.write_alerts(&mut table, &part_of);
        let window = ns(cfg.retransmit_window_s);
        self.idle.advance(now, window);
        // Sparklines: of the flow looked at, and of each active alert's worst flow (one a
        // roll-up, however many flows it covers).
        let looked_at = self.sparks.looked_at();
        let worst = self.lifecycle.active.values().filter_map(|a| a.worst);
        let schedule = &self.schedule;
        let followed: Vec<(FlowId, &window::RateWindow, SampleCounters)> = looked_at
            .into_iter()
            .chain(worst)
            .filter_map(|id| {
                let (e, st) = schedule.entry(&table, &id)?;
                Some((id, &e.hist.window, SampleCounters::of_stats(st)))
            })
            .collect();
        self.sparks.update(followed.into_iter(), &self.idle, window);
        drop(table);
        snap.sessions = self.sessions.active();
        snap.alerts = self.alerts();
        snap.judged = true;
        snap.handshake_timeout_ns = ns(self.cfg.handshake_timeout_s);
        out
    }

    /// Active alerts (worst first), then the recently cleared (newest first).
    pub fn alerts(&self) -> Vec<Alert> {
        self.lifecycle.alerts()
    }
}

#[cfg(test)]
mod finding_tests;
#[cfg(test)]
mod history_tests;
#[cfg(test)]
mod rollup_tests;
#[cfg(test)]
mod shortcut_tests;
#[cfg(test)]
mod spark_tests;
#[cfg(test)]
mod tests;
