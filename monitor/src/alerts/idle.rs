//! Idle flows stop taking samples. Most flows of a big table are idle: their counters
//! stand, and each tick's sample differs from the last only in time, which is the tick's.
//! Pushing it into every such flow's window would touch a few heap blocks of every flow, a
//! cache miss each, every tick. So the engine keeps once the sample times a flow idle all
//! along would hold ([`IdleTimes`]); an idle flow's window pauses, and catches up from
//! those times when its flow changes, is looked at, or its window's oldest counters leave
//! the window (its retransmission rate then changes). A flow idle for longer than its
//! window keeps no samples at all: its times are the idle times and its counters its
//! record's ([`RateWindow::kept`] is `None`).

use std::collections::VecDeque;

use super::window::{Kept, RateWindow, Sample, SampleCounters, Samples, MIN_GAP_NS};

/// The sample times every idle flow shares: those a flow idle all along would hold (the
/// same replacing of close samples, the same window), each with the tick that added it.
#[derive(Clone, Debug, Default)]
pub struct IdleTimes {
    /// Ticks so far.
    pub(super) tick: u64,
    pub(super) times: VecDeque<(u64, u64)>,
}

impl IdleTimes {
    /// The tick at `now` ends: what [`RateWindow::push`] does to the samples of an idle
    /// flow with two or more.
    pub fn advance(&mut self, now: u64, window_ns: u64) {
        self.tick += 1;
        let t = &mut self.times;
        if t.len() >= 2
            && t.back()
                .is_some_and(|&(_, b)| now > b && now - b < MIN_GAP_NS)
        {
            t.pop_back();
            t.push_back((self.tick, now));
        } else if t.back().is_none_or(|&(_, b)| now > b) {
            t.push_back((self.tick, now));
        }
        while t.len() >= 2 && t[1].1 + window_ns <= now {
            t.pop_front();
        }
    }

    /// The times of the newest two samples an idle flow holds (its last step).
    pub fn last_step(&self) -> Option<(u64, u64)> {
        let n = self.times.len();
        Some((self.times.get(n.checked_sub(2)?)?.1, self.times.back()?.1))
    }
}

/// Where a paused window stopped: the tick then, and when its oldest counters leave it (it
/// must catch up then).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Paused {
    pub(super) tick: u64,
    /// `u64::MAX`: never (one run: nothing leaves the window).
    pub(super) wake_ns: u64,
}

impl RateWindow {
    pub fn is_paused(&self) -> bool {
        self.kept().is_none_or(|k| k.paused.is_some())
    }

    /// Stops taking samples if this tick's `s` would change nothing but the time: its
    /// counters are the last sample's, and the window ends where the idle times do. Paused,
    /// the window's figures are what taking `s` would have made them until its oldest
    /// counters leave it (see [`RateWindow::must_catch_up`]): a flow that moved and fell
    /// idle pauses at once, not a window later. `idle` is as the last tick left it; the
    /// samples after are its (see [`RateWindow::catch_up`]). Returns whether the window
    /// paused: the caller then does not push `s`.
    pub fn pause(&mut self, s: &Sample, idle: &IdleTimes, window_ns: u64) -> bool {
        let Some(k) = self.kept.as_deref_mut() else {
            return true;
        };
        let runs = &k.samples.runs;
        // Several runs: the newest of two or more samples, so that a close tick replacing
        // the last sample leaves a zero step, as it does for the idle times.
        let last_repeats = runs.len() == 1 || runs.back().is_some_and(|(_, n)| *n >= 2);
        // The oldest run leaves the window when the sample after it does.
        let wake_ns = match runs.front() {
            Some((_, n)) if runs.len() > 1 => k
                .samples
                .ts
                .get(*n as usize)
                .map(|t| t.saturating_add(window_ns)),
            _ => None,
        };
        let pauses = k.samples.len() >= 2
            && last_repeats
            && wake_ns.is_none_or(|w| s.ts_ns < w)
            && k.samples.back().is_some_and(|b| {
                Samples::same_counters(&b, s)
                    && idle.times.len() >= 2
                    && idle.times.back() == Some(&(idle.tick, b.ts_ns))
            });
        if !pauses {
            return false;
        }
        // A flow older than its window holds the idle times exactly, and its one run of
        // counters is its record's: it need keep none of them (most of a big table).
        if runs.len() == 1 && k.samples.ts.iter().eq(idle.times.iter().map(|(_, t)| t)) {
            self.kept = None;
        } else {
            k.paused = Some(Paused {
                tick: idle.tick,
                wake_ns: wake_ns.unwrap_or(u64::MAX),
            });
        }
        true
    }

    /// Whether a paused window must catch up to take this tick's sample: its oldest
    /// counters leave the window at `now`.
    pub fn must_catch_up(&self, now: u64) -> bool {
        self.wake_ns().is_some_and(|w| now >= w)
    }

    /// When the paused window must catch up, if it holds more than one run.
    pub fn wake_ns(&self) -> Option<u64> {
        self.kept()
            .and_then(|k| k.paused)
            .and_then(|p| (p.wake_ns != u64::MAX).then_some(p.wake_ns))
    }

    /// Takes the samples the window skipped while paused, as pushing each tick's would
    /// have: the times added since, the replacing of a close sample, the window; returns
    /// the window, to take this tick's sample. `idle` is as the last tick left it; `held`:
    /// the counters of the flow's record as that tick read it (an idle window's own).
    pub(super) fn catch_up(
        &mut self,
        idle: &IdleTimes,
        window_ns: u64,
        held: &SampleCounters,
    ) -> &mut Kept {
        let k = self.kept.get_or_insert_with(|| {
            // It held the idle times when it paused, and they moved on from there by the
            // rules the flow's own samples follow.
            let mut k = Kept::default();
            k.samples.ts.reserve_exact(idle.times.len() + 1);
            for &(_, t) in &idle.times {
                k.samples.push_back(held.at(t));
            }
            Box::new(k)
        });
        let Some(p) = k.paused.take() else { return k };
        let Some(&(last, _)) = k.samples.runs.back() else {
            return k;
        };
        // A tick since the pause came too soon after the last sample and replaced it. (Or
        // the idle times' window moved past the pause: then every sample the flow had
        // leaves the window below anyway, and the idle times are all that remain.)
        if !idle.times.iter().any(|&(tick, _)| tick == p.tick) {
            k.samples.pop_back();
        }
        for &(_, t) in idle.times.iter().filter(|&&(tick, _)| tick > p.tick) {
            k.samples.push_back(last.at(t));
        }
        k.samples.trim(window_ns);
        k
    }
}
