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

    pub fn to_epoch(&self, kernel_ns: u64) -> u64 {
        if kernel_ns == 0 {
            return 0;
        }
        (kernel_ns as i128 + self.offset_ns).clamp(0, u64::MAX as i128) as u64
    }
}
