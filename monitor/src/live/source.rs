//! The kernel collector as a pipeline source: a tick every `--interval`, and a word on
//! stderr when a watched interface goes away. Once every one has gone, nothing more can be
//! seen and the source ends.

use std::time::{Duration, Instant};

use anyhow::Result;
use monitor_common::event::{Event, EventKind};

use crate::{collector::Collector, kernel::self_stats::SelfStats, output, pipeline};

pub struct LiveSource {
    collector: Collector,
    interval: tokio::time::Interval,
    /// Interfaces already said to be gone.
    said_gone: Vec<String>,
    all_gone: bool,
    /// `--self-stats`: read into each tick's snapshot.
    self_stats: Option<SelfStats>,
}

impl LiveSource {
    /// The first tick comes one interval from now: a report of an empty first instant
    /// would say nothing.
    pub async fn new(collector: Collector, interval_s: f64) -> Self {
        let mut interval = tokio::time::interval(Duration::from_secs_f64(interval_s));
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        interval.tick().await;
        Self {
            collector,
            interval,
            said_gone: Vec::new(),
            all_gone: false,
            self_stats: None,
        }
    }

    /// Each tick also says what the monitor's programs cost the kernel.
    pub fn with_self_stats(mut self, stats: SelfStats) -> Self {
        self.self_stats = Some(stats);
        self
    }

    /// The interfaces found gone, when every watched one is.
    pub fn all_gone(&self) -> Option<String> {
        self.all_gone.then(|| self.said_gone.join(", "))
    }

    fn read(&mut self) -> Result<pipeline::Tick> {
        let started = Instant::now();
        let events = self.collector.drain_events();
        log_events(&events);
        let samples = self.collector.drain_samples();
        let evidence = self.collector.drain_evidence();
        let mut snap = self.collector.collect()?;
        snap.kernel_cost = self.self_stats.as_mut().map(SelfStats::read);
        for i in snap.interfaces.iter().filter(|i| i.gone) {
            if !self.said_gone.contains(&i.name) {
                output::status(&format!(
                    "monitor: interface {} is gone; nothing more is seen on it",
                    i.name
                ));
                self.said_gone.push(i.name.clone());
            }
        }
        self.all_gone = !snap.interfaces.is_empty() && snap.interfaces.iter().all(|i| i.gone);
        Ok(pipeline::Tick::new(snap, events, started)
            .with_samples(samples)
            .with_evidence(evidence))
    }
}

impl pipeline::Source for LiveSource {
    async fn next(&mut self) -> Result<Option<pipeline::Tick>> {
        if self.all_gone {
            return Ok(None);
        }
        self.interval.tick().await;
        self.read().map(Some)
    }

    fn last(&mut self) -> Result<Option<pipeline::Tick>> {
        self.read().map(Some)
    }
}

/// The kernel's events, at `RUST_LOG=info`.
fn log_events(events: &[Event]) {
    for ev in events {
        let kind = ev.kind().map_or("unknown", EventKind::name);
        log::info!("{kind}: {:?} dir {} ttl {}", ev.key, ev.dir, ev.ttl);
    }
}
