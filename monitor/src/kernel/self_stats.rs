//! `--self-stats`: what the monitor's own programs cost the kernel, as bpftop shows it for
//! every program. The kernel keeps each program's run time and run count only while BPF
//! run-time statistics are on (two clock reads per run), so they are on only while the
//! monitor holds the descriptor that turned them on, and only when asked.

use std::os::fd::OwnedFd;

use anyhow::{Context, Result};
use aya::{
    programs::loaded_programs,
    sys::{enable_stats, Stats},
    Ebpf,
};

use crate::model::KernelCost;

/// The monitor's loaded programs, and the statistics held on for them.
pub struct SelfStats {
    ids: Vec<u32>,
    _on: OwnedFd,
    last: (u64, u64),
}

impl SelfStats {
    /// Turns run-time statistics on (until this is dropped) for `ebpf`'s loaded programs.
    pub fn enable(ebpf: &Ebpf) -> Result<Self> {
        let on = enable_stats(Stats::RunTime)
            .context("turning on BPF run-time statistics for --self-stats")?;
        let ids = ebpf
            .programs()
            .filter_map(|(_, p)| p.info().ok())
            .map(|i| i.id())
            .collect();
        Ok(Self {
            ids,
            _on: on,
            last: (0, 0),
        })
    }

    /// The programs' run time and runs so far, and the time per run since the last read.
    pub fn read(&mut self) -> KernelCost {
        let (mut run_ns, mut runs) = (0u64, 0u64);
        for info in loaded_programs().flatten() {
            if self.ids.contains(&info.id()) {
                run_ns += info.run_time().as_nanos() as u64;
                runs += info.run_count();
            }
        }
        let cost = cost(self.last, (run_ns, runs));
        self.last = (run_ns, runs);
        cost
    }
}

/// The cost so far, and per run between two reads (`None`: no run between them).
fn cost((ns0, runs0): (u64, u64), (run_ns, runs): (u64, u64)) -> KernelCost {
    let (dn, dr) = (run_ns.saturating_sub(ns0), runs.saturating_sub(runs0));
    KernelCost {
        run_ns,
        runs,
        ns_per_run: (dr > 0).then(|| dn as f64 / dr as f64),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_time_per_run_is_the_growth_between_two_reads() {
        let c = cost((1_000, 10), (5_000, 30));
        assert_eq!((c.run_ns, c.runs, c.ns_per_run), (5_000, 30, Some(200.0)));
        assert_eq!(cost((5_000, 30), (5_000, 30)).ns_per_run, None, "no run");
    }
}
