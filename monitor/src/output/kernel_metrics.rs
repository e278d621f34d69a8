//! `--self-stats` as metrics: the monitor's programs' run time and runs, as counters (a
//! rate of one over the other is the time per packet, as bpftop shows it). Registered only
//! when the run has the statistics on, so a scrape never shows a cost of zero that was not
//! measured.

use prometheus_client::{metrics::counter::Counter, registry::Registry};

use crate::model::KernelCost;

pub(super) struct KernelMetrics {
    run_seconds: Counter<f64>,
    runs: Counter,
    /// What the counters were at the last tick.
    seen: KernelCost,
}

impl KernelMetrics {
    pub(super) fn register(r: &mut Registry) -> Self {
        let run_seconds = Counter::<f64>::default();
        let runs = Counter::default();
        r.register(
            "monitor_kernel_run_seconds",
            "Time the kernel spent in the monitor's programs (--self-stats: BPF run-time statistics)",
            run_seconds.clone(),
        );
        r.register(
            "monitor_kernel_runs",
            "Runs of the monitor's programs: one per packet and hook (--self-stats)",
            runs.clone(),
        );
        Self {
            run_seconds,
            runs,
            seen: KernelCost::default(),
        }
    }

    pub(super) fn observe(&mut self, c: &KernelCost) {
        let dn = c.run_ns.saturating_sub(self.seen.run_ns);
        self.run_seconds.inc_by(dn as f64 / 1e9);
        self.runs.inc_by(c.runs.saturating_sub(self.seen.runs));
        self.seen = *c;
    }
}
