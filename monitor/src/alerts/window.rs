//! The rate window: the kernel keeps cumulative counters, the rules and the UI want rates.
//! A flow's window holds the samples of its counters that span `retransmit_rate.window_s`
//! (and one before it), so a retransmission rate covers the window only (README.md,
//! "Alerts"). The arithmetic is pure (no I/O), so synthetic counter series test it.

use crate::model::FlowStats;
use std::collections::VecDeque;

use monitor_common::flow::{C2S, S2C};

use super::idle::Paused;
use crate::model::Point;

/// Cumulative counters of one flow at one tick.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Sample {
    pub ts_ns: u64,
    pub data_segments: [u64; 2],
    pub retransmits: [u64; 2],
    pub bytes: [u64; 2],
}

impl Sample {
    pub fn of(st: &FlowStats, ts_ns: u64) -> Self {
        let d = &st.dir;
        Self {
            ts_ns,
            data_segments: [d[C2S].data_segments, d[S2C].data_segments],
            retransmits: [C2S, S2C].map(|x| st.anomalies(x).retransmits as u64),
            bytes: [d[C2S].bytes, d[S2C].bytes],
        }
    }
}

/// Retransmissions over data segments between two samples, or `None` below `min_segments`
/// (too few to call a rate).
pub fn retransmit_rate(old: &Sample, new: &Sample, dir: usize, min_segments: u64) -> Option<Rate> {
    let segs = new.data_segments[dir].saturating_sub(old.data_segments[dir]);
    let retx = new.retransmits[dir].saturating_sub(old.retransmits[dir]);
    (segs >= min_segments && segs > 0).then(|| Rate {
        retransmits: retx,
        segments: segs,
        ratio: retx as f64 / segs as f64,
        span_ns: new.ts_ns.saturating_sub(old.ts_ns),
    })
}

/// Bytes per second between two samples.
pub fn throughput(old: &Sample, new: &Sample, dir: usize) -> f64 {
    let dt = new.ts_ns.saturating_sub(old.ts_ns);
    if dt == 0 {
        return 0.0;
    }
    new.bytes[dir].saturating_sub(old.bytes[dir]) as f64 * 1e9 / dt as f64
}

/// The sparkline point between two consecutive samples: throughput, and the share of the
/// data segments between them that were retransmitted.
pub fn point(old: &Sample, new: &Sample) -> Point {
    let mut p = Point::default();
    for d in [C2S, S2C] {
        p.bytes_per_s[d] = throughput(old, new, d) as f32;
        p.retx_ratio[d] = retransmit_rate(old, new, d, 1).map_or(0.0, |r| r.ratio) as f32;
    }
    p
}

/// A retransmission rate and what it was computed from (the alert's evidence).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rate {
    pub retransmits: u64,
    pub segments: u64,
    pub ratio: f64,
    pub span_ns: u64,
}

/// Samples closer than this to the previous one replace it.
pub(super) const MIN_GAP_NS: u64 = 100_000_000;

/// A sample's counters without its time, as a run of equal samples keeps them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct SampleCounters {
    data_segments: [u64; 2],
    retransmits: [u64; 2],
    bytes: [u64; 2],
}

impl SampleCounters {
    /// The counters of a flow's record, as its window's samples hold them.
    pub(super) fn of_stats(st: &FlowStats) -> Self {
        Self::of(&Sample::of(st, 0))
    }

    pub(super) fn of(s: &Sample) -> Self {
        Self {
            data_segments: s.data_segments,
            retransmits: s.retransmits,
            bytes: s.bytes,
        }
    }

    pub(super) fn at(&self, ts_ns: u64) -> Sample {
        Sample {
            ts_ns,
            data_segments: self.data_segments,
            retransmits: self.retransmits,
            bytes: self.bytes,
        }
    }
}

/// Runs of equal counters, oldest first, each with how many consecutive samples have
/// them. The oldest run sits inline: most flows of a big table hold one run for good, and
/// then no heap block (a block each is a million small blocks, and the holes their
/// neighbours' frees leave).
#[derive(Clone, Debug, Default)]
pub(super) struct Runs {
    /// The oldest run; a count of 0: none.
    first: (SampleCounters, u32),
    /// The others, boxed (8 bytes inline, not a deque's 32): only a flow whose counters
    /// moved within its window has any.
    #[allow(clippy::box_collection)] // On purpose: the size inline is what is saved.
    rest: Option<Box<VecDeque<(SampleCounters, u32)>>>,
}

impl Runs {
    pub(super) fn len(&self) -> usize {
        usize::from(self.first.1 > 0) + self.rest.as_deref().map_or(0, VecDeque::len)
    }

    pub(super) fn is_empty(&self) -> bool {
        self.first.1 == 0
    }

    pub(super) fn front(&self) -> Option<&(SampleCounters, u32)> {
        (self.first.1 > 0).then_some(&self.first)
    }

    pub(super) fn back(&self) -> Option<&(SampleCounters, u32)> {
        self.rest_iter().next_back().or(self.front())
    }

    /// The runs after the first, oldest first.
    fn rest_iter(&self) -> impl DoubleEndedIterator<Item = &(SampleCounters, u32)> {
        self.rest.as_deref().into_iter().flatten()
    }

    fn front_mut(&mut self) -> Option<&mut (SampleCounters, u32)> {
        (self.first.1 > 0).then_some(&mut self.first)
    }

    fn back_mut(&mut self) -> Option<&mut (SampleCounters, u32)> {
        if self.rest.as_deref().is_some_and(|d| !d.is_empty()) {
            self.rest.as_deref_mut().and_then(VecDeque::back_mut)
        } else {
            self.front_mut()
        }
    }

    fn push_back(&mut self, run: (SampleCounters, u32)) {
        if self.is_empty() {
            self.first = run;
        } else {
            self.rest.get_or_insert_with(Box::default).push_back(run);
        }
    }

    fn pop_front(&mut self) {
        self.first = self
            .rest
            .as_deref_mut()
            .and_then(VecDeque::pop_front)
            .unwrap_or_default();
        // A flow gone idle is down to one run for good, most likely: give back the room
        // its busy spell took (a deque never shrinks itself).
        if self.rest.as_deref().is_some_and(VecDeque::is_empty) {
            self.rest = None;
        }
    }

    fn pop_back(&mut self) {
        if self
            .rest
            .as_deref_mut()
            .and_then(VecDeque::pop_back)
            .is_none()
        {
            self.first = Default::default();
        }
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = &(SampleCounters, u32)> {
        self.front().into_iter().chain(self.rest_iter())
    }

    /// Newest first.
    pub(super) fn iter_rev(&self) -> impl Iterator<Item = &(SampleCounters, u32)> {
        self.rest_iter().rev().chain(self.front())
    }

    /// Runs the heap holds room for (the inline one not counted).
    #[cfg(test)]
    pub(super) fn heap_capacity(&self) -> usize {
        self.rest.as_deref().map_or(0, VecDeque::capacity)
    }

    /// The heap bytes of the other runs: their box and the deque's buffer.
    fn heap_bytes(&self) -> u64 {
        use crate::footprint::{block, buffer};
        self.rest.as_deref().map_or(0, |d| {
            block(std::mem::size_of::<VecDeque<(SampleCounters, u32)>>())
                + buffer::<(SampleCounters, u32)>(d.capacity())
        })
    }
}

/// Cumulative samples, oldest first: their times, and their counters as runs of equal
/// values. An idle flow's samples differ only in time, so a big table of mostly idle flows
/// keeps eight bytes per sample instead of a whole [`Sample`]; every sample stays exact.
#[derive(Clone, Debug, Default)]
pub(super) struct Samples {
    pub(super) ts: VecDeque<u64>,
    pub(super) runs: Runs,
}

impl Samples {
    pub(super) fn len(&self) -> usize {
        self.ts.len()
    }

    pub(super) fn same_counters(a: &Sample, b: &Sample) -> bool {
        (a.data_segments, a.retransmits, a.bytes) == (b.data_segments, b.retransmits, b.bytes)
    }

    pub(super) fn push_back(&mut self, s: Sample) {
        self.ts.push_back(s.ts_ns);
        let c = SampleCounters::of(&s);
        match self.runs.back_mut() {
            Some((r, n)) if *r == c => *n += 1,
            _ => self.runs.push_back((c, 1)),
        }
    }

    pub(super) fn pop_front(&mut self) {
        if self.ts.pop_front().is_some() {
            if let Some((_, n)) = self.runs.front_mut() {
                *n -= 1;
                if *n == 0 {
                    self.runs.pop_front();
                }
            }
        }
    }

    pub(super) fn pop_back(&mut self) {
        if self.ts.pop_back().is_some() {
            if let Some((_, n)) = self.runs.back_mut() {
                *n -= 1;
                if *n == 0 {
                    self.runs.pop_back();
                }
            }
        }
    }

    pub(super) fn front(&self) -> Option<Sample> {
        let (c, _) = self.runs.front()?;
        Some(c.at(*self.ts.front()?))
    }

    pub(super) fn back(&self) -> Option<Sample> {
        self.nth_back(0)
    }

    /// The sample `k` places before the newest.
    pub(super) fn nth_back(&self, k: usize) -> Option<Sample> {
        let ts = *self.ts.get(self.ts.len().checked_sub(k + 1)?)?;
        let mut skip = k;
        for (c, n) in self.runs.iter_rev() {
            if skip < *n as usize {
                return Some(c.at(ts));
            }
            skip -= *n as usize;
        }
        None
    }

    /// Every sample, oldest first.
    pub(super) fn iter(&self) -> impl Iterator<Item = Sample> + '_ {
        let counters = self
            .runs
            .iter()
            .flat_map(|(c, n)| std::iter::repeat_n(*c, *n as usize));
        self.ts.iter().zip(counters).map(|(&ts_ns, c)| c.at(ts_ns))
    }

    /// Drops the samples the window no longer needs: exactly one stays at or before its
    /// start.
    pub(super) fn trim(&mut self, window_ns: u64) {
        if let Some(now) = self.ts.back().copied() {
            while self.len() >= 2 && self.ts[1] + window_ns <= now {
                self.pop_front();
            }
        }
    }
}

/// One flow's rate window (see `idle.rs` for how it pauses while the flow is idle).
#[derive(Clone, Debug)]
pub struct RateWindow {
    /// Its own samples. `None`: idle, paused while older than its window and idle through
    /// it. Its sample times are then the idle times and its one run of counters is its
    /// record's, which has not changed since (a record that changes is judged, and the
    /// window catches up from the record before): most flows of a big table keep nothing,
    /// 8 bytes where a window holding its samples takes 120 and a heap block.
    pub(super) kept: Option<Box<Kept>>,
}

impl Default for RateWindow {
    fn default() -> Self {
        Self {
            kept: Some(Box::default()),
        }
    }
}

/// A rate window's own samples, and whether it stopped taking them while the flow is idle.
#[derive(Clone, Debug, Default)]
pub struct Kept {
    pub(super) samples: Samples,
    /// Set while the flow is idle: its samples stop at the tick before it paused, the ones
    /// from there are the engine's [`super::idle::IdleTimes`].
    pub(super) paused: Option<Paused>,
}

impl Kept {
    /// Adds this tick's sample and drops what the window no longer needs.
    pub fn push(&mut self, s: Sample, window_ns: u64) {
        // A sample right after the previous one (a replay's last, partial tick) replaces
        // it: a rate over a few milliseconds is noise.
        if self.samples.len() >= 2
            && self
                .samples
                .back()
                .is_some_and(|p| s.ts_ns > p.ts_ns && s.ts_ns - p.ts_ns < MIN_GAP_NS)
        {
            self.samples.pop_back();
        }
        if self.samples.back().is_some_and(|p| s.ts_ns <= p.ts_ns) {
            return;
        }
        self.samples.push_back(s);
        self.samples.trim(window_ns);
    }

    pub fn latest(&self) -> Option<Sample> {
        self.samples.back()
    }

    /// The newest two samples (the last tick's step), oldest first.
    pub fn last_step(&self) -> Option<(Sample, Sample)> {
        Some((self.samples.nth_back(1)?, self.samples.back()?))
    }

    /// The sparkline points the window's samples give, oldest first.
    pub fn points(&self) -> Vec<Point> {
        let s: Vec<Sample> = self.samples.iter().collect();
        s.windows(2).map(|w| point(&w[0], &w[1])).collect()
    }

    /// The window's two ends, if it holds a sample.
    fn ends(&self) -> Option<(Sample, Sample)> {
        Some((self.samples.front()?, self.samples.back()?))
    }
}

impl RateWindow {
    /// The window's own samples; `None`: idle, it keeps none.
    pub fn kept(&self) -> Option<&Kept> {
        self.kept.as_deref()
    }

    /// Adds this tick's sample (tests: the judge pushes onto the window [`RateWindow::catch_up`]
    /// hands it).
    #[cfg(test)]
    pub fn push(&mut self, s: Sample, window_ns: u64) {
        match self.kept.as_deref_mut() {
            Some(k) => k.push(s, window_ns),
            None => panic!("an idle window takes a sample only once it caught up"),
        }
    }

    /// The retransmission rate over (up to) the window, both directions, reading the
    /// window's ends once (every flow's health wants both, every tick). An idle window's
    /// counters did not move within it: no rate.
    pub fn rates(&self, min_segments: u64) -> [Option<Rate>; 2] {
        match self.kept().and_then(Kept::ends) {
            Some((old, new)) => [C2S, S2C].map(|d| retransmit_rate(&old, &new, d, min_segments)),
            None => [None; 2],
        }
    }

    /// Retransmissions counted within the window.
    pub fn retransmits(&self, dir: usize) -> u64 {
        self.kept().and_then(Kept::ends).map_or(0, |(old, new)| {
            new.retransmits[dir].saturating_sub(old.retransmits[dir])
        })
    }

    /// Throughput over the latest tick, each direction.
    pub fn current_throughput(&self) -> [f64; 2] {
        match self.kept().and_then(Kept::last_step) {
            Some((old, new)) => [C2S, S2C].map(|d| throughput(&old, &new, d)),
            None => [0.0; 2],
        }
    }

    /// Heap bytes of its buffers, as the allocator hands them out.
    pub fn heap_bytes(&self) -> u64 {
        use crate::footprint::{block, buffer};
        self.kept().map_or(0, |k| {
            block(std::mem::size_of::<Kept>())
                + buffer::<u64>(k.samples.ts.capacity())
                + k.samples.runs.heap_bytes()
        })
    }
}
