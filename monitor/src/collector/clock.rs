//! The kernel stamps with CLOCK_MONOTONIC (`bpf_ktime_get_ns`); people and other hosts
//! want wall-clock time. The offset is taken once at start.

#[derive(Clone, Copy, Debug)]
pub struct Clock {
    offset_ns: i128,
}

fn now(clock: libc::clockid_t) -> i128 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec for the call to write; the clock ids are constants.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    ts.tv_sec as i128 * 1_000_000_000 + ts.tv_nsec as i128
}

impl Clock {
    /// Kernel timestamps are CLOCK_MONOTONIC.
    pub fn monotonic() -> Self {
        Self {
            offset_ns: now(libc::CLOCK_REALTIME) - now(libc::CLOCK_MONOTONIC),
        }
    }

    /// Kernel timestamps are already epoch-based (tests supply capture times).
    pub fn identity() -> Self {
        Self { offset_ns: 0 }
    }

    /// Now, in the clock the records were converted to.
    pub fn now_epoch(&self) -> u64 {
        if self.offset_ns == 0 {
            // Records carry their own (capture) time: "now" is not the wall clock.
            return 0;
        }
        now(libc::CLOCK_REALTIME).clamp(0, u64::MAX as i128) as u64
    }

    /// Every timestamp of the record in epoch ns (the alert rules compare them with now).
    pub fn state_to_epoch(
        &self,
        mut s: monitor_common::flow::FlowState,
    ) -> monitor_common::flow::FlowState {
        s.first_seen_ns = self.to_epoch(s.first_seen_ns);
        s.last_seen_ns = self.to_epoch(s.last_seen_ns);
        s.progress_ns = s.progress_ns.map(|t| self.to_epoch(t));
        s.acked_ns = s.acked_ns.map(|t| self.to_epoch(t));
        s.tcp.syn_time = self.to_epoch(s.tcp.syn_time);
        for d in 0..2 {
            s.dir[d].anomalies.last_rst_ns = self.to_epoch(s.dir[d].anomalies.last_rst_ns);
            s.tcp.dir[d].nextseq_time = self.to_epoch(s.tcp.dir[d].nextseq_time);
            s.tcp.dir[d].lastack_time = self.to_epoch(s.tcp.dir[d].lastack_time);
        }
        s
    }

    pub fn to_epoch(&self, kernel_ns: u64) -> u64 {
        if kernel_ns == 0 {
            return 0;
        }
        (kernel_ns as i128 + self.offset_ns).clamp(0, u64::MAX as i128) as u64
    }
}
