//! A cheap cycle counter for per-node timing: the TSC on x86_64, a nanosecond clock elsewhere.

/// Reads the time-stamp counter.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
#[allow(unsafe_code)]
pub fn now() -> u64 {
    // SAFETY: RDTSC has no memory effects and no preconditions; every x86_64 CPU has it.
    // The intrinsic is only `unsafe` because all `core::arch` intrinsics are.
    unsafe { core::arch::x86_64::_rdtsc() }
}

/// Reads a monotonic nanosecond clock (fallback where there is no TSC).
#[cfg(not(target_arch = "x86_64"))]
#[inline]
pub fn now() -> u64 {
    use std::sync::OnceLock;
    use std::time::Instant;
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

/// Estimates how many [`now`] ticks pass per second by timing a sleep of `ms` milliseconds.
pub fn estimate_hz(ms: u64) -> u64 {
    let t0 = std::time::Instant::now();
    let c0 = now();
    std::thread::sleep(std::time::Duration::from_millis(ms));
    let c1 = now();
    let secs = t0.elapsed().as_secs_f64();
    ((c1.wrapping_sub(c0)) as f64 / secs) as u64
}
