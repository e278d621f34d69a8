//! Per-flow counter history: the kernel keeps cumulative counters, alerts and the UI want
//! rates over a window. The arithmetic is pure (no I/O), as bpftop keeps it, so synthetic
//! counter series test it.

use std::collections::VecDeque;

use monitor_common::flow::{FlowState, C2S, S2C};

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
    pub fn of(st: &FlowState, ts_ns: u64) -> Self {
        let d = &st.dir;
        Self {
            ts_ns,
            data_segments: [d[C2S].data_segments, d[S2C].data_segments],
            retransmits: [d[C2S].retransmits as u64, d[S2C].retransmits as u64],
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

/// A retransmission rate and what it was computed from (the alert's evidence).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rate {
    pub retransmits: u64,
    pub segments: u64,
    pub ratio: f64,
    pub span_ns: u64,
}

/// Samples closer than this to the previous one replace it.
const MIN_GAP_NS: u64 = 100_000_000;

/// Sparkline points kept per flow: a few minutes at the default 1 s tick.
pub const SPARK_POINTS: usize = 180;

/// A flow's sparkline points, oldest first, at most [`SPARK_POINTS`], kept as runs of equal
/// points: a flow that sits idle (most of a big table) pushes the same zero point every
/// tick, and costs one run instead of a few kilobytes. Counts sit in their own deque so a
/// busy flow's points stay 16 bytes plus one.
#[derive(Clone, Debug, Default)]
pub struct Spark {
    points: VecDeque<Point>,
    counts: VecDeque<u8>,
    len: usize,
}

impl Spark {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn push(&mut self, p: Point) {
        if self.len == SPARK_POINTS {
            self.pop_front();
        }
        match (self.points.back(), self.counts.back_mut()) {
            (Some(q), Some(n)) if *q == p && *n < u8::MAX => *n += 1,
            _ => {
                self.points.push_back(p);
                self.counts.push_back(1);
            }
        }
        self.len += 1;
    }

    fn pop_front(&mut self) {
        if let Some(n) = self.counts.front_mut() {
            *n -= 1;
            if *n == 0 {
                self.counts.pop_front();
                self.points.pop_front();
            }
            self.len -= 1;
        }
    }

    pub fn pop_back(&mut self) {
        if let Some(n) = self.counts.back_mut() {
            *n -= 1;
            if *n == 0 {
                self.counts.pop_back();
                self.points.pop_back();
            }
            self.len -= 1;
        }
    }

    pub fn back(&self) -> Option<&Point> {
        self.points.back()
    }

    /// `n` pushes of the zero point (an idle flow's), a run at a time.
    fn push_zeros(&mut self, n: u64) {
        // Only the last SPARK_POINTS of them can show; the oldest points make room first
        // (each push drops one when full, and `n` never reaches past the old points).
        let mut n = n.min(SPARK_POINTS as u64) as usize;
        let mut drop = (self.len + n).saturating_sub(SPARK_POINTS);
        while drop > 0 {
            let Some(c) = self.counts.front_mut() else {
                break;
            };
            let k = drop.min(*c as usize);
            *c -= k as u8;
            if *c == 0 {
                self.counts.pop_front();
                self.points.pop_front();
            }
            self.len -= k;
            drop -= k;
        }
        let zero = Point::default();
        while n > 0 {
            match (self.points.back(), self.counts.back_mut()) {
                (Some(q), Some(c)) if *q == zero && *c < u8::MAX => {
                    let k = n.min((u8::MAX - *c) as usize);
                    *c += k as u8;
                    self.len += k;
                    n -= k;
                }
                _ => {
                    self.points.push_back(zero);
                    self.counts.push_back(0);
                }
            }
        }
    }

    /// Every point, oldest first.
    pub fn iter(&self) -> impl Iterator<Item = Point> + '_ {
        self.points
            .iter()
            .zip(&self.counts)
            .flat_map(|(p, n)| std::iter::repeat_n(*p, *n as usize))
    }
}

/// Cumulative samples, oldest first: their times, and their counters as runs of equal
/// values. An idle flow's samples differ only in time, so a big table of mostly idle flows
/// keeps eight bytes per sample instead of a whole [`Sample`]; every sample stays exact.
#[derive(Clone, Debug, Default)]
struct Samples {
    ts: VecDeque<u64>,
    /// Counters (the sample's `ts_ns` unused) and how many consecutive samples have them.
    runs: VecDeque<(Sample, u32)>,
}

impl Samples {
    fn len(&self) -> usize {
        self.ts.len()
    }

    fn same_counters(a: &Sample, b: &Sample) -> bool {
        (a.data_segments, a.retransmits, a.bytes) == (b.data_segments, b.retransmits, b.bytes)
    }

    fn push_back(&mut self, s: Sample) {
        self.ts.push_back(s.ts_ns);
        match self.runs.back_mut() {
            Some((c, n)) if Self::same_counters(c, &s) => *n += 1,
            _ => {
                // Room for one run only at first (a deque would take four): most flows of a
                // big table never change run.
                if self.runs.is_empty() {
                    self.runs.reserve_exact(1);
                }
                self.runs.push_back((Sample { ts_ns: 0, ..s }, 1));
            }
        }
    }

    fn pop_front(&mut self) {
        if self.ts.pop_front().is_some() {
            if let Some((_, n)) = self.runs.front_mut() {
                *n -= 1;
                if *n == 0 {
                    self.runs.pop_front();
                    // A flow gone idle is down to one run for good, most likely: give
                    // back the room its busy spell took (a deque never shrinks itself).
                    if self.runs.len() == 1 {
                        self.runs.shrink_to_fit();
                    }
                }
            }
        }
    }

    fn pop_back(&mut self) {
        if self.ts.pop_back().is_some() {
            if let Some((_, n)) = self.runs.back_mut() {
                *n -= 1;
                if *n == 0 {
                    self.runs.pop_back();
                }
            }
        }
    }

    fn front(&self) -> Option<Sample> {
        let (c, _) = self.runs.front()?;
        Some(Sample {
            ts_ns: *self.ts.front()?,
            ..*c
        })
    }

    fn back(&self) -> Option<Sample> {
        self.nth_back(0)
    }

    /// The sample `k` places before the newest.
    fn nth_back(&self, k: usize) -> Option<Sample> {
        let ts = *self.ts.get(self.ts.len().checked_sub(k + 1)?)?;
        let mut skip = k;
        for (c, n) in self.runs.iter().rev() {
            if skip < *n as usize {
                return Some(Sample { ts_ns: ts, ..*c });
            }
            skip -= *n as usize;
        }
        None
    }
}

/// What the engine remembers of one flow between ticks.
#[derive(Clone, Debug, Default)]
pub struct FlowHistory {
    /// Cumulative samples spanning the retransmission window (and one before it).
    samples: Samples,
    pub spark: Spark,
    /// Since when each direction has been seen advertising a zero window.
    pub zero_since_ns: [Option<u64>; 2],
    /// Total time each direction's window was seen at zero.
    pub zero_total_ns: [u64; 2],
    /// Retransmission count when each direction's data was last acknowledged further, and
    /// that time: retransmissions piling up without progress are a blackhole.
    pub retx_at_progress: [u64; 2],
    pub progress_mark_ns: [u64; 2],
    /// When the ClientHello was first known (event time, else first tick that saw it).
    pub client_hello_ns: Option<u64>,
    /// Zeek's conn.log history string, letters in the order ticks first saw them; inline
    /// up to 24 letters, so a health row's copy touches no heap block.
    pub zeek: compact_str::CompactString,
    zeek_emitted: [u8; ZEEK_LETTERS],
    /// Set while the flow is idle: its samples stop at the tick before it froze, the ones
    /// from there are the engine's [`IdleClock`]'s (see [`FlowHistory::freeze`]).
    frozen: Option<Frozen>,
}

/// Where an idle flow's history stopped: the clock's tick and sparkline count then,
/// whether its sample times were the clock's (then not kept), and when its window's
/// oldest counters leave it (then its retransmission ratio changes: it must thaw).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Frozen {
    tick: u64,
    points: u64,
    shared: bool,
    wake_ns: Option<u64>,
}

/// The samples an idle flow takes, kept once for every idle flow.
///
/// Most flows of a big table are idle: their counters stand, and each tick's sample differs
/// from the last only in time, which is the tick's. Pushing it into every such flow's
/// history would touch a few heap blocks of every flow, a cache miss each, every tick. The
/// clock follows the sample times a flow idle all along would hold (the same
/// replacing of close samples and the same window), and how many sparkline points it would
/// have pushed; a frozen flow catches up from it when it changes or is looked at.
#[derive(Clone, Debug, Default)]
pub struct IdleClock {
    /// Ticks so far.
    tick: u64,
    /// The sample times an idle flow would hold, each with the tick that added it.
    times: VecDeque<(u64, u64)>,
    /// Sparkline points an idle flow would have pushed so far.
    points: u64,
}

impl IdleClock {
    /// The tick at `now` ends: what [`FlowHistory::push`] does to the samples of an idle
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
            if !t.is_empty() {
                self.points += 1;
            }
            t.push_back((self.tick, now));
        }
        while t.len() >= 2 && t[1].1 + window_ns <= now {
            t.pop_front();
        }
    }
}

const ZEEK_LETTERS: usize = 16;

/// Zeek's history letters (uppercase: the client, the originator; lowercase: the server)
/// with the count behind each. T, W and G repeat at 1, 10, 100, ... as in Zeek.
fn zeek_counts(st: &FlowState) -> [(char, u64, bool); ZEEK_LETTERS] {
    let (c, s) = (&st.dir[C2S], &st.dir[S2C]);
    let bare = |d: &monitor_common::flow::DirStats| {
        d.segments
            .saturating_sub(d.data_segments)
            .saturating_sub((d.syns + d.synacks + d.fins + d.rsts) as u64)
    };
    [
        ('S', c.syns as u64, false),
        ('s', s.syns as u64, false),
        ('H', c.synacks as u64, false),
        ('h', s.synacks as u64, false),
        ('A', bare(c), false),
        ('a', bare(s), false),
        ('D', c.data_segments, false),
        ('d', s.data_segments, false),
        ('T', c.retransmits as u64, true),
        ('t', s.retransmits as u64, true),
        ('G', c.lost_segments as u64, true),
        ('g', s.lost_segments as u64, true),
        ('W', c.zero_windows as u64, true),
        ('w', s.zero_windows as u64, true),
        ('F', c.fins as u64, false),
        ('f', s.fins as u64, false),
    ]
}

/// How many times a letter is due: once, or 1 + log10(count) for the repeating ones.
fn due(count: u64, repeats: bool) -> u8 {
    match (count, repeats) {
        (0, _) => 0,
        (_, false) => 1,
        (n, true) => 1 + n.ilog10() as u8,
    }
}

impl FlowHistory {
    /// Appends the letters this tick's record makes due; resets come last in a tick, as
    /// they end a connection.
    pub fn update_zeek(&mut self, st: &FlowState) {
        let mut add = |i: usize, ch: char, n: u8| {
            while self.zeek_emitted[i] < n {
                self.zeek.push(ch);
                self.zeek_emitted[i] += 1;
            }
        };
        for (i, (ch, count, rep)) in zeek_counts(st).into_iter().enumerate() {
            add(i, ch, due(count, rep));
        }
        let rsts = [st.dir[C2S].rsts, st.dir[S2C].rsts];
        for (d, ch) in [(C2S, 'R'), (S2C, 'r')] {
            if rsts[d] > 0 && !self.zeek.contains(ch) {
                self.zeek.push(ch);
            }
        }
    }
}

/// Asks the CPU to bring `x` into cache (a hint: never faults, does nothing elsewhere).
#[inline(always)]
pub(crate) fn prefetch<T>(x: *const T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch reads nothing architecturally and cannot fault; SSE is baseline.
    unsafe {
        core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(x as *const i8)
    };
    #[cfg(not(target_arch = "x86_64"))]
    let _ = x;
}

/// The same for every cache line of `x`.
#[inline(always)]
pub(crate) fn prefetch_block<T>(x: &T) {
    let p = x as *const T as *const u8;
    for off in (0..std::mem::size_of::<T>()).step_by(64) {
        prefetch(p.wrapping_add(off));
    }
}

impl FlowHistory {
    /// Brings into cache what a tick reads and writes of the history's buffers: both ends
    /// of the sample times, the counter runs, the sparkline's newest points.
    pub fn prefetch(&self) {
        let s = &self.samples;
        for p in [s.ts.front(), s.ts.back()].into_iter().flatten() {
            prefetch(p);
        }
        for p in [s.runs.front(), s.runs.back()].into_iter().flatten() {
            prefetch(p);
        }
        if let Some(p) = self.spark.points.back() {
            prefetch(p);
        }
        if let Some(p) = self.spark.counts.back() {
            prefetch(p);
        }
    }

    /// Heap bytes of its buffers, as the allocator hands them out.
    pub fn heap_bytes(&self) -> u64 {
        use crate::footprint::{block, buffer};
        let s = &self.samples;
        buffer::<u64>(s.ts.capacity())
            + buffer::<(Sample, u32)>(s.runs.capacity())
            + buffer::<Point>(self.spark.points.capacity())
            + buffer::<u8>(self.spark.counts.capacity())
            + if self.zeek.is_heap_allocated() {
                block(self.zeek.capacity())
            } else {
                0
            }
    }

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
            self.spark.pop_back();
        }
        if let Some(prev) = &self.samples.back() {
            if s.ts_ns <= prev.ts_ns {
                return;
            }
            let mut p = Point::default();
            for d in [C2S, S2C] {
                p.bytes_per_s[d] = throughput(prev, &s, d) as f32;
                p.retx_ratio[d] = retransmit_rate(prev, &s, d, 1).map_or(0.0, |r| r.ratio) as f32;
            }
            self.spark.push(p);
        }
        self.samples.push_back(s);
        // Keep exactly one sample at or before the window's start.
        while self.samples.len() >= 2 && self.samples.ts[1] + window_ns <= s.ts_ns {
            self.samples.pop_front();
        }
    }

    pub fn latest(&self) -> Option<Sample> {
        self.samples.back()
    }

    pub fn is_frozen(&self) -> bool {
        self.frozen.is_some()
    }

    /// Stops taking samples if this tick's `s` would change nothing but the time: its
    /// counters are the last sample's, and the history ends where the clock's does.
    /// Frozen, the history's figures are what taking `s` would have made them (see
    /// [`FlowHistory::rates`]) until its window's oldest counters leave the window (see
    /// [`FlowHistory::wakes_by`]): a flow that moved and fell idle freezes at once, not a
    /// window later. `clock` is as the last tick left it; the samples after are its own
    /// (see [`FlowHistory::thaw`]). Returns whether the history froze: the caller then
    /// does not push `s`.
    pub fn freeze(&mut self, s: &Sample, clock: &IdleClock, window_ns: u64) -> bool {
        let runs = &self.samples.runs;
        // Several runs: the newest of two or more samples, so that a close tick replacing
        // the last sample leaves a zero sparkline point, as it does for the clock.
        let last_repeats = runs.len() == 1 || runs.back().is_some_and(|(_, n)| *n >= 2);
        // The oldest run leaves the window when the sample after it does.
        let wake_ns = match runs.front() {
            Some((_, n)) if runs.len() > 1 => self
                .samples
                .ts
                .get(*n as usize)
                .map(|t| t.saturating_add(window_ns)),
            _ => None,
        };
        let idle = self.samples.len() >= 2
            && last_repeats
            && wake_ns.is_none_or(|w| s.ts_ns < w)
            && self.samples.back().is_some_and(|b| {
                Samples::same_counters(&b, s)
                    && clock.times.len() >= 2
                    && clock.times.back() == Some(&(clock.tick, b.ts_ns))
            });
        if idle {
            // A flow older than its window holds the clock's times exactly: those it need
            // not keep (most of a big table; ~140 bytes a flow).
            let shared = runs.len() == 1
                && self
                    .samples
                    .ts
                    .iter()
                    .eq(clock.times.iter().map(|(_, t)| t));
            if shared {
                self.samples.ts = VecDeque::new();
            }
            self.frozen = Some(Frozen {
                tick: clock.tick,
                points: clock.points,
                shared,
                wake_ns,
            });
        }
        idle
    }

    /// Whether a frozen history must thaw to take this tick's sample: its window's oldest
    /// counters leave the window at `now`.
    pub fn wakes_by(&self, now: u64) -> bool {
        self.frozen
            .is_some_and(|f| f.wake_ns.is_some_and(|w| now >= w))
    }

    /// When the frozen history must thaw, if its window holds more than one run.
    pub fn wake_ns(&self) -> Option<u64> {
        self.frozen.and_then(|f| f.wake_ns)
    }

    /// Throughput over the latest tick and the retransmitted share over the window (`None`:
    /// fewer than `min_segments`). A frozen history's are what taking this tick's sample
    /// would have made them: its last two samples have the same counters (no throughput)
    /// and its window's ends the counters they would have.
    pub fn rates(&self, min_segments: u64) -> ([f64; 2], [Option<f64>; 2]) {
        let ratios = self.window_rates(min_segments).map(|r| r.map(|r| r.ratio));
        (self.current_throughput(), ratios)
    }

    /// Takes the samples the history skipped while frozen, as pushing each tick's would
    /// have: the times the clock added since, the replacing of a close sample, the window,
    /// the sparkline's zero points. `clock` is as the last tick left it.
    pub fn thaw(&mut self, clock: &IdleClock, window_ns: u64) {
        let Some(f) = self.frozen.take() else { return };
        let Some(&(last, _)) = self.samples.runs.back() else {
            return;
        };
        let at = |ts_ns| Sample { ts_ns, ..last };
        self.spark.push_zeros(clock.points - f.points);
        if f.shared {
            // It held the clock's times at the freeze, and the clock moved on from there
            // by the rules the flow's own samples follow.
            self.samples = Samples::default();
            self.samples.ts.reserve_exact(clock.times.len() + 1);
            for &(_, t) in &clock.times {
                self.samples.push_back(at(t));
            }
            return;
        }
        // A tick since the freeze came too soon after the last sample and replaced it. (Or
        // the clock's window moved past the freeze: then every sample the flow had leaves
        // the window below anyway, and the clock's are all that remain.)
        if !clock.times.iter().any(|&(tick, _)| tick == f.tick) {
            self.samples.pop_back();
        }
        for &(_, t) in clock.times.iter().filter(|&&(tick, _)| tick > f.tick) {
            self.samples.push_back(at(t));
        }
        if let Some(now) = self.samples.back().map(|b| b.ts_ns) {
            while self.samples.len() >= 2 && self.samples.ts[1] + window_ns <= now {
                self.samples.pop_front();
            }
        }
    }

    /// The retransmission rate over (up to) the window.
    pub fn window_rate(&self, dir: usize, min_segments: u64) -> Option<Rate> {
        self.window_rates(min_segments)[dir]
    }

    /// The same for both directions, reading the window's ends once (every flow's health
    /// wants both, every tick).
    pub fn window_rates(&self, min_segments: u64) -> [Option<Rate>; 2] {
        match (self.samples.front(), self.samples.back()) {
            (Some(old), Some(new)) => {
                [C2S, S2C].map(|d| retransmit_rate(&old, &new, d, min_segments))
            }
            _ => [None; 2],
        }
    }

    /// Retransmissions counted within the rate window.
    pub fn window_retransmits(&self, dir: usize) -> u64 {
        match (self.samples.front(), self.samples.back()) {
            (Some(old), Some(new)) => new.retransmits[dir].saturating_sub(old.retransmits[dir]),
            _ => 0,
        }
    }

    /// Throughput over the latest tick, each direction.
    pub fn current_throughput(&self) -> [f64; 2] {
        match (self.samples.nth_back(1), self.samples.back()) {
            (Some(old), Some(new)) => [C2S, S2C].map(|d| throughput(&old, &new, d)),
            _ => [0.0; 2],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(t_s: u64, segs: u64, retx: u64) -> Sample {
        Sample {
            ts_ns: t_s * 1_000_000_000,
            data_segments: [segs, 0],
            retransmits: [retx, 0],
            bytes: [segs * 100, 0],
        }
    }

    #[test]
    fn the_rate_covers_the_window_only() {
        let mut h = FlowHistory::default();
        // 10 s of 5 % loss, then 10 s clean: the window forgets the loss.
        for t in 0..=10 {
            h.push(sample(t, t * 100, t * 5), 10_000_000_000);
        }
        let r = h.window_rate(C2S, 20).expect("enough segments");
        assert_eq!((r.retransmits, r.segments), (50, 1000));
        assert!((r.ratio - 0.05).abs() < 1e-9);
        for t in 11..=20 {
            h.push(sample(t, t * 100, 50), 10_000_000_000);
        }
        let r = h.window_rate(C2S, 20).expect("enough segments");
        assert_eq!(
            (r.retransmits, r.segments, r.span_ns),
            (0, 1000, 10_000_000_000)
        );
    }

    #[test]
    fn too_few_segments_give_no_rate() {
        let mut h = FlowHistory::default();
        h.push(sample(0, 0, 0), 10_000_000_000);
        h.push(sample(1, 10, 1), 10_000_000_000);
        assert_eq!(h.window_rate(C2S, 20), None, "1 of 10 is not a 10 % rate");
        assert!(h.window_rate(C2S, 10).is_some());
    }

    #[test]
    fn sparkline_points_are_per_tick_and_bounded() {
        let mut h = FlowHistory::default();
        for t in 0..(SPARK_POINTS as u64 + 10) {
            h.push(sample(t, t * 10, t), 10_000_000_000);
        }
        assert_eq!(h.spark.len(), SPARK_POINTS);
        let p = h.spark.back().expect("points");
        assert_eq!(p.bytes_per_s[C2S], 1000.0);
        assert!((p.retx_ratio[C2S] - 0.1).abs() < 1e-6);
        assert_eq!(h.current_throughput()[C2S], 1000.0);
    }

    #[test]
    fn equal_points_share_a_run_and_expand_in_order() {
        let mut s = Spark::default();
        let busy = Point {
            bytes_per_s: [5.0, 1.0],
            retx_ratio: [0.0, 0.5],
        };
        let mut expect = Vec::new();
        for i in 0..(SPARK_POINTS + 300) {
            let p = if i % 97 == 0 { busy } else { Point::default() };
            s.push(p);
            expect.push(p);
        }
        let expect = &expect[expect.len() - SPARK_POINTS..];
        assert_eq!(s.len(), SPARK_POINTS);
        assert_eq!(s.iter().collect::<Vec<_>>(), expect);
        assert!(s.points.len() <= 6, "{} runs", s.points.len());
        s.pop_back();
        assert_eq!(s.iter().collect::<Vec<_>>(), expect[..SPARK_POINTS - 1]);
    }

    #[test]
    fn zeek_history_in_order_of_first_sight_with_log_repeats() {
        let mut st = FlowState::default();
        let mut h = FlowHistory::default();
        st.dir[C2S].syns = 1;
        st.dir[C2S].segments = 1;
        h.update_zeek(&st);
        st.dir[S2C].synacks = 1;
        st.dir[S2C].segments = 1;
        st.dir[C2S].segments = 2;
        h.update_zeek(&st);
        st.dir[C2S].segments = 20;
        st.dir[C2S].data_segments = 18;
        st.dir[S2C].segments = 30;
        st.dir[S2C].data_segments = 20;
        st.dir[S2C].retransmits = 12;
        h.update_zeek(&st);
        st.dir[C2S].rsts = 1;
        st.dir[C2S].segments = 21;
        h.update_zeek(&st);
        assert_eq!(h.zeek, "ShAaDdttR");
    }

    mod samples {
        use super::super::{Sample, Samples};
        use proptest::prelude::*;
        use std::collections::VecDeque;

        #[derive(Clone, Debug)]
        enum Op {
            Push { retx: u64, bytes: u64 },
            PopFront,
            PopBack,
        }

        fn op() -> impl Strategy<Value = Op> {
            // Few distinct counter values, so runs of equal ones form and break.
            prop_oneof![
                4 => (0u64..3, 0u64..2).prop_map(|(retx, bytes)| Op::Push { retx, bytes }),
                1 => Just(Op::PopFront),
                1 => Just(Op::PopBack),
            ]
        }

        proptest! {
            /// The run-length store answers exactly as a plain deque of samples would.
            #[test]
            fn runs_of_equal_counters_answer_as_a_plain_deque(ops in prop::collection::vec(op(), 0..200)) {
                let (mut runs, mut plain) = (Samples::default(), VecDeque::<Sample>::new());
                for (t, o) in ops.into_iter().enumerate() {
                    match o {
                        Op::Push { retx, bytes } => {
                            let s = Sample {
                                ts_ns: t as u64,
                                data_segments: [7, 1],
                                retransmits: [retx, 0],
                                bytes: [bytes, 3],
                            };
                            runs.push_back(s);
                            plain.push_back(s);
                        }
                        Op::PopFront => {
                            runs.pop_front();
                            plain.pop_front();
                        }
                        Op::PopBack => {
                            runs.pop_back();
                            plain.pop_back();
                        }
                    }
                    prop_assert_eq!(runs.len(), plain.len());
                    prop_assert_eq!(runs.front(), plain.front().copied());
                    for k in 0..=plain.len() {
                        let want = plain.len().checked_sub(k + 1).map(|i| plain[i]);
                        prop_assert_eq!(runs.nth_back(k), want);
                    }
                    let counted: u32 = runs.runs.iter().map(|(_, n)| n).sum();
                    prop_assert_eq!(counted as usize, plain.len());
                }
            }
        }

        #[test]
        fn an_idle_flow_keeps_one_run() {
            let mut h = super::FlowHistory::default();
            for t in 0..60 {
                h.push(super::sample(t, 100, 5), 10_000_000_000);
            }
            assert_eq!(h.samples.len(), 11, "the window and one before it");
            assert_eq!(h.samples.runs.len(), 1);
            assert_eq!(h.samples.runs.capacity(), 1);
            assert_eq!(h.latest().map(|s| s.ts_ns), Some(59_000_000_000));
            // Busy for a while, then idle past the window: back to one run's room.
            for t in 60..120 {
                let segs = 100 + t.min(80) * 10;
                h.push(super::sample(t, segs, 5), 10_000_000_000);
            }
            assert_eq!((h.samples.runs.len(), h.samples.runs.capacity()), (1, 1));
        }
    }

    mod spark {
        use super::super::{Point, Spark, SPARK_POINTS};
        use proptest::prelude::*;

        proptest! {
            /// Zeros pushed as a run are the zeros pushed one by one, however full the
            /// sparkline and however long its runs.
            #[test]
            fn zeros_pushed_at_once_are_zeros_pushed_one_by_one(
                before in prop::collection::vec((0u8..3, 1usize..300), 0..6),
                n in 0u64..600,
            ) {
                let mut bulk = Spark::default();
                for (v, k) in before {
                    let p = Point { bytes_per_s: [v as f32, 0.0], ..Point::default() };
                    for _ in 0..k {
                        bulk.push(p);
                    }
                }
                let mut one = bulk.clone();
                bulk.push_zeros(n);
                for _ in 0..n {
                    one.push(Point::default());
                }
                prop_assert_eq!(bulk.len(), one.len());
                prop_assert!(bulk.len() <= SPARK_POINTS);
                prop_assert_eq!(bulk.iter().collect::<Vec<_>>(), one.iter().collect::<Vec<_>>());
            }
        }
    }

    mod idle {
        use super::super::{FlowHistory, IdleClock, Sample, MIN_GAP_NS};
        use proptest::prelude::*;

        /// The time between two ticks: none, too close (replaced), a tick, a long pause.
        fn gap() -> impl Strategy<Value = u64> {
            prop_oneof![
                1 => Just(0u64),
                2 => 1..MIN_GAP_NS,
                6 => Just(1_000_000_000u64),
                2 => (2u64..40).prop_map(|s| s * 1_000_000_000),
            ]
        }

        fn same(a: &FlowHistory, b: &FlowHistory) -> Result<(), TestCaseError> {
            prop_assert_eq!(a.samples.len(), b.samples.len());
            for k in 0..a.samples.len() {
                prop_assert_eq!(a.samples.nth_back(k), b.samples.nth_back(k), "sample {}", k);
            }
            prop_assert_eq!(
                a.spark.iter().collect::<Vec<_>>(),
                b.spark.iter().collect::<Vec<_>>()
            );
            Ok(())
        }

        proptest! {
            /// A history that froze while its flow was idle and thawed when it moved (or was
            /// looked at) is the history that took every tick's sample.
            #[test]
            fn a_frozen_history_thaws_into_the_one_that_took_every_sample(
                ticks in prop::collection::vec((gap(), prop::bool::weighted(0.15), any::<bool>()), 1..150),
                window_s in 1u64..12,
                start in 0usize..30,
                min in 1u64..20,
            ) {
                let w = window_s * 1_000_000_000;
                let mut clock = IdleClock::default();
                let (mut eager, mut lazy) = (FlowHistory::default(), FlowHistory::default());
                let (mut now, mut segs) = (1_000_000_000_000u64, 0u64);
                // The flow appears at tick `start`; the clock counts from the first.
                for (n, (gap, busy, look)) in ticks.into_iter().enumerate() {
                    now += gap;
                    if n < start {
                        clock.advance(now, w);
                        continue;
                    }
                    segs += u64::from(busy) * 7;
                    let s = Sample {
                        ts_ns: now,
                        data_segments: [segs, 1],
                        retransmits: [segs / 3, 0],
                        bytes: [segs * 100, 5],
                    };
                    eager.push(s, w);
                    // A tick whose sample moved thaws first; freezing is only ever tried,
                    // and must refuse when the sample moved.
                    if busy || lazy.wakes_by(now) {
                        lazy.thaw(&clock, w);
                    }
                    if !lazy.is_frozen() && !lazy.freeze(&s, &clock, w) {
                        lazy.push(s, w);
                    }
                    // Frozen or not, its figures are those of the one that took the sample.
                    prop_assert_eq!(lazy.rates(min), eager.rates(min), "tick {}", n);
                    clock.advance(now, w);
                    if look {
                        let mut seen = lazy.clone();
                        seen.thaw(&clock, w);
                        same(&seen, &eager)?;
                    }
                }
                lazy.thaw(&clock, w);
                same(&lazy, &eager)?;
            }
        }

        #[test]
        fn an_idle_flow_freezes_and_its_window_still_slides() {
            let w = 10_000_000_000;
            let mut clock = IdleClock::default();
            let mut h = FlowHistory::default();
            let mut now = 1_000_000_000_000u64;
            for t in 0..40u64 {
                now += 1_000_000_000;
                let segs = 10 * t.min(5);
                let s = Sample {
                    ts_ns: now,
                    data_segments: [segs, 0],
                    retransmits: [t.min(5), 0],
                    bytes: [segs * 100, 0],
                };
                if h.wakes_by(now) {
                    h.thaw(&clock, w);
                }
                if !(h.is_frozen() || h.freeze(&s, &clock, w)) {
                    h.push(s, w);
                }
                clock.advance(now, w);
            }
            // Its times were the clock's when it froze: not kept.
            assert!(
                h.frozen.is_some_and(|f| f.shared),
                "idle 35 ticks, 10 s window"
            );
            assert_eq!(h.samples.ts.capacity(), 0);
            h.thaw(&clock, w);
            assert_eq!(
                (h.samples.len(), h.latest().map(|s| s.ts_ns)),
                (11, Some(now))
            );
            assert_eq!(h.spark.len(), 39);
            assert_eq!(h.window_rate(0, 1), None, "no segments within the window");
            // A flow younger than the window froze with times of its own, kept.
            let mut young = FlowHistory::default();
            for _ in 0..3 {
                now += 1_000_000_000;
                let s = Sample {
                    ts_ns: now,
                    ..Sample::default()
                };
                if !(young.is_frozen() || young.freeze(&s, &clock, w)) {
                    young.push(s, w);
                }
                clock.advance(now, w);
            }
            assert!(young.frozen.is_some_and(|f| !f.shared));
            assert_eq!(young.samples.len(), 2);
            young.thaw(&clock, w);
            assert_eq!(young.samples.len(), 3);
        }
    }

    #[test]
    fn counters_that_go_back_do_not_underflow() {
        let a = sample(1, 100, 10);
        let b = sample(2, 50, 5);
        assert_eq!(throughput(&a, &b, C2S), 0.0);
        assert_eq!(retransmit_rate(&a, &b, C2S, 0), None);
    }
}
