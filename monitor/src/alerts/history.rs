//! What the engine remembers of one flow between ticks beyond its counters' rate window:
//! how long each side advertised a zero window, the retransmissions since data was last
//! acknowledged further (a blackhole), when the ClientHello came, and Zeek's history
//! letters (README.md, "The TUI").

use crate::model::FlowStats;
use monitor_common::flow::{C2S, S2C};

use super::window::{Rate, RateWindow};

/// What the engine remembers of one flow between ticks.
#[derive(Clone, Debug, Default)]
pub struct FlowHistory {
    /// Cumulative samples spanning the retransmission window (and one before it).
    pub window: RateWindow,
    /// Zero windows, once a side advertised one (boxed: most flows never do).
    pub zero: Option<Box<ZeroWindows>>,
    /// Retransmission count when each direction's data was last acknowledged further, and
    /// that time: retransmissions piling up without progress are a blackhole.
    pub retx_at_progress: [u32; 2],
    pub progress_mark_ns: [u64; 2],
    /// When the ClientHello was first known (event time, else first tick that saw it);
    /// never 0, so in 8 bytes.
    pub client_hello_ns: Option<std::num::NonZeroU64>,
}

/// How long each side advertised a zero window.
#[derive(Clone, Debug, Default)]
pub struct ZeroWindows {
    /// Since when each direction has been seen advertising a zero window.
    pub since_ns: [Option<u64>; 2],
    /// Total time each direction's window was seen at zero.
    pub total_ns: [u64; 2],
}

const ZEEK_LETTERS: usize = 16;

/// Zeek's history letters (uppercase: the client, the originator; lowercase: the server)
/// with the count behind each. T, W and G repeat at 1, 10, 100, ... as in Zeek.
fn zeek_counts(st: &FlowStats) -> [(char, u64, bool); ZEEK_LETTERS] {
    let (c, s) = (&st.dir[C2S], &st.dir[S2C]);
    let (ca, sa) = (st.anomalies(C2S), st.anomalies(S2C));
    let bare = |d: &crate::model::DirCounts| {
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
        ('T', ca.retransmits as u64, true),
        ('t', sa.retransmits as u64, true),
        ('G', ca.lost_segments as u64, true),
        ('g', sa.lost_segments as u64, true),
        ('W', ca.zero_windows as u64, true),
        ('w', sa.zero_windows as u64, true),
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

/// Appends to `zeek` (Zeek's conn.log history string, letters in the order ticks first
/// saw them: the flow's health holds it) the letters this tick's record makes due; resets
/// come last in a tick, as they end a connection.
pub fn update_zeek(zeek: &mut compact_str::CompactString, st: &FlowStats) {
    // What each letter was written so far: counted in the string itself, which is
    // all a flow keeps of them.
    let letters = zeek_counts(st);
    let mut emitted = [0u8; ZEEK_LETTERS];
    for b in zeek.bytes() {
        if let Some(i) = letters.iter().position(|l| l.0 as u32 == b as u32) {
            emitted[i] += 1;
        }
    }
    for (i, (ch, count, rep)) in letters.into_iter().enumerate() {
        for _ in emitted[i]..due(count, rep) {
            zeek.push(ch);
        }
    }
    let rsts = [st.dir[C2S].rsts, st.dir[S2C].rsts];
    for (d, ch) in [(C2S, 'R'), (S2C, 'r')] {
        if rsts[d] > 0 && !zeek.contains(ch) {
            zeek.push(ch);
        }
    }
}

impl FlowHistory {
    /// Heap bytes of its buffers, as the allocator hands them out.
    pub fn heap_bytes(&self) -> u64 {
        let zero = self.zero.as_ref().map_or(0, |_| {
            crate::footprint::block(std::mem::size_of::<ZeroWindows>())
        });
        self.window.heap_bytes() + zero
    }

    /// Since when direction `d` has been seen advertising a zero window.
    pub fn zero_since_ns(&self, d: usize) -> Option<u64> {
        self.zero.as_ref().and_then(|z| z.since_ns[d])
    }

    /// Total time each direction's window was seen at zero.
    pub fn zero_total_ns(&self) -> [u64; 2] {
        self.zero.as_ref().map_or([0; 2], |z| z.total_ns)
    }

    /// The retransmission rate over (up to) the window.
    pub fn window_rate(&self, dir: usize, min_segments: u64) -> Option<Rate> {
        self.window.rates(min_segments)[dir]
    }

    /// Retransmissions counted within the rate window.
    pub fn window_retransmits(&self, dir: usize) -> u64 {
        self.window.retransmits(dir)
    }

    /// Throughput over the latest tick and the retransmitted share over the window (`None`:
    /// fewer than `min_segments`). A paused window's are what taking this tick's sample
    /// would have made them: its last two samples have the same counters (no throughput)
    /// and its ends the counters they would have.
    pub fn rates(&self, min_segments: u64) -> ([f64; 2], [Option<f64>; 2]) {
        let ratios = self.window.rates(min_segments).map(|r| r.map(|r| r.ratio));
        (self.window.current_throughput(), ratios)
    }

    /// Updates the history with this tick's record (its sample already in the window):
    /// `prev_ts` is the time of the window's newest sample before it, `None` for a new flow.
    pub fn observe(
        &mut self,
        st: &FlowStats,
        now: u64,
        prev_ts: Option<u64>,
        hello_ns: Option<u64>,
    ) {
        for d in [C2S, S2C] {
            // The side's receive window is closed (a reset's or FIN's window 0 is not):
            // keep the time it was first seen so.
            let zero = st.zero_window[d];
            if zero || self.zero.is_some() {
                let z = self.zero.get_or_insert_with(Box::default);
                match (zero, z.since_ns[d]) {
                    (true, None) => z.since_ns[d] = Some(now),
                    (false, Some(_)) => z.since_ns[d] = None,
                    _ => {}
                }
                if zero {
                    if let Some(p) = prev_ts {
                        z.total_ns[d] += now.saturating_sub(p);
                    }
                }
            }
            if prev_ts.is_none() || st.acked_ns[d] != self.progress_mark_ns[d] {
                self.progress_mark_ns[d] = st.acked_ns[d];
                self.retx_at_progress[d] = st.anomalies(d).retransmits;
            }
        }
        if self.client_hello_ns.is_none() && st.seen & monitor_common::flow::seen::CLIENT_HELLO != 0
        {
            // A time of 0 (none the clock gives) is kept as 1 ns.
            let t = hello_ns.unwrap_or(now);
            self.client_hello_ns =
                Some(std::num::NonZeroU64::new(t).unwrap_or(std::num::NonZeroU64::MIN));
        }
    }
}
