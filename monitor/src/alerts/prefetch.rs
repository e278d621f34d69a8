//! Cache hints for the schedule's scattered reads: a tick that judges rows spread over a
//! big table asks for each flow's state a few rows ahead, so it is in cache when judged.

/// Asks the CPU to bring `x` into cache (a hint: never faults, does nothing elsewhere).
#[inline(always)]
pub(super) fn prefetch<T>(x: *const T) {
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
pub(super) fn prefetch_block<T>(x: &T) {
    let p = x as *const T as *const u8;
    for off in (0..std::mem::size_of::<T>()).step_by(64) {
        prefetch(p.wrapping_add(off));
    }
}
