//! Sparklines, only for the flows a person looks at (the flow the UI shows in detail,
//! [`super::AlertEngine::look_at`]) and the worst flow of each active alert (the one its
//! evidence comes from; a storm's roll-up keeps one line, not one per flow): a big table's
//! other flows keep none. A sparkline starts from the points its flow's rate window still gives,
//! takes one point a tick while followed, and goes when its flow is neither looked at nor
//! alerting.

use std::collections::{hash_map::Entry, VecDeque};

use foldhash::HashMap;

use super::{
    idle::IdleTimes,
    window::{point, Kept, RateWindow, SampleCounters},
};
use crate::model::{FlowId, Point};

/// Sparkline points kept per flow: a few minutes at the default 1 s tick.
pub const SPARK_POINTS: usize = 180;

/// A flow's sparkline points, oldest first, at most [`SPARK_POINTS`], kept as runs of equal
/// points: a flow that sits idle pushes the same zero point every tick, and costs one run
/// instead of a few kilobytes. Counts sit in their own deque so a busy flow's points stay
/// 16 bytes plus one.
#[derive(Clone, Debug, Default)]
pub struct Spark {
    pub(super) points: VecDeque<Point>,
    counts: VecDeque<u8>,
    len: usize,
}

impl Spark {
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.len
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

    /// Every point, oldest first.
    pub fn iter(&self) -> impl Iterator<Item = Point> + '_ {
        self.points
            .iter()
            .zip(&self.counts)
            .flat_map(|(p, n)| std::iter::repeat_n(*p, *n as usize))
    }

    fn heap_bytes(&self) -> u64 {
        use crate::footprint::buffer;
        buffer::<Point>(self.points.capacity()) + buffer::<u8>(self.counts.capacity())
    }
}

/// One followed flow's sparkline, and the time of the sample its newest point ends at.
#[derive(Clone, Debug)]
struct Line {
    spark: Spark,
    end_ns: u64,
    /// The last update that followed the flow: a line not followed by this one goes.
    update: u64,
}

/// The sparklines of the followed flows, by flow.
#[derive(Debug, Default)]
pub struct Sparklines {
    looked_at: Option<FlowId>,
    lines: HashMap<FlowId, Line>,
    /// Updates so far.
    updates: u64,
}

/// The points a flow's window gives now, with the time of its newest sample, as if it
/// were not paused; `held`: its record's counters.
pub(super) fn from_window(
    w: &RateWindow,
    held: &SampleCounters,
    idle: &IdleTimes,
    window_ns: u64,
) -> (Spark, u64) {
    let mut w = w.clone();
    let k = w.catch_up(idle, window_ns, held);
    let mut spark = Spark::default();
    for p in k.points() {
        spark.push(p);
    }
    (spark, k.latest().map_or(0, |s| s.ts_ns))
}

impl Sparklines {
    pub fn look_at(&mut self, id: Option<FlowId>) {
        self.looked_at = id;
    }

    pub fn looked_at(&self) -> Option<FlowId> {
        self.looked_at
    }

    /// The points of a followed flow, oldest first.
    pub fn get(&self, id: &FlowId) -> Option<Vec<Point>> {
        self.lines.get(id).map(|l| l.spark.iter().collect())
    }

    /// How many flows hold a sparkline.
    pub fn count(&self) -> usize {
        self.lines.len()
    }

    pub fn bytes(&self) -> u64 {
        use crate::footprint::buffer;
        buffer::<(FlowId, Line)>(self.lines.capacity())
            + self
                .lines
                .values()
                .map(|l| l.spark.heap_bytes())
                .sum::<u64>()
    }

    /// The tick ends: `followed` are the flows to follow now, with their windows and their
    /// records' counters. Each
    /// takes this tick's step (a paused window's is a zero point at the idle times' step);
    /// a flow followed from now starts with its window's points; the others' go.
    pub fn update<'a>(
        &mut self,
        followed: impl Iterator<Item = (FlowId, &'a RateWindow, SampleCounters)>,
        idle: &IdleTimes,
        window_ns: u64,
    ) {
        // Each line notes the update that followed it (no set of the followed flows: a
        // storm's roll-up follows every one of its flows).
        self.updates += 1;
        let update = self.updates;
        for (id, w, held) in followed {
            let line = match self.lines.entry(id) {
                Entry::Occupied(e) if e.get().update == update => continue,
                Entry::Occupied(e) => e.into_mut(),
                Entry::Vacant(e) => {
                    let (spark, end_ns) = from_window(w, &held, idle, window_ns);
                    e.insert(Line {
                        spark,
                        end_ns,
                        update,
                    });
                    continue;
                }
            };
            line.update = update;
            let step = if w.is_paused() {
                idle.last_step().map(|(a, b)| (a, b, Point::default()))
            } else {
                w.kept()
                    .and_then(Kept::last_step)
                    .map(|(a, b)| (a.ts_ns, b.ts_ns, point(&a, &b)))
            };
            let Some((start, end, p)) = step.filter(|&(_, end, _)| end > line.end_ns) else {
                continue;
            };
            // The sample the newest point ended at was replaced (a tick too close to it).
            if start < line.end_ns {
                line.spark.pop_back();
            }
            line.spark.push(p);
            line.end_ns = end;
        }
        self.lines.retain(|_, line| line.update == update);
        // A storm's flows left their alert: give their room back.
        if self.lines.len() * 4 < self.lines.capacity() {
            self.lines.shrink_to_fit();
        }
    }
}
