//! The thin safe layer over DPDK: EAL, mempools, mbufs, ports and their queues, lcores.
//!
//! Every `unsafe` block of the dataplane lives in this module, each with a `// SAFETY:` line.

pub mod acl;
pub mod capture;
pub mod eal;
pub mod lcore;
pub mod mbuf;
pub mod mempool;
pub mod port;
pub mod ring;
pub mod telemetry;
pub mod vhost;

use std::ffi::CStr;

pub use eal::Eal;
pub use mbuf::Mbuf;
pub use mempool::Mempool;
pub use port::{Port, PortConfig, PortStats, RxQueue, TxQueue};

/// An error from a DPDK call: what was being done and DPDK's reason.
#[derive(Debug, thiserror::Error)]
#[error("{what}: {reason} (errno {errno})")]
pub struct DpdkError {
    /// The operation that failed.
    pub what: String,
    /// DPDK's text for the error number.
    pub reason: String,
    /// The (positive) error number.
    pub errno: i32,
}

impl DpdkError {
    /// An error for `what` with error number `errno` (sign ignored).
    pub fn new(what: impl Into<String>, errno: i32) -> Self {
        let errno = errno.abs();
        Self {
            what: what.into(),
            reason: strerror(errno),
            errno,
        }
    }

    /// An error for `what` with the calling thread's current `rte_errno`.
    pub fn last(what: impl Into<String>) -> Self {
        // SAFETY: reads a thread-local integer; no preconditions.
        let errno = unsafe { dpdk_sys::rte_errno_value() };
        Self::new(what, errno)
    }
}

/// Turns a DPDK return code (negative errno on failure) into a result.
pub(crate) fn check(rc: i32, what: impl FnOnce() -> String) -> Result<i32, DpdkError> {
    if rc < 0 {
        Err(DpdkError::new(what(), rc))
    } else {
        Ok(rc)
    }
}

/// DPDK's description of an error number.
pub fn strerror(errno: i32) -> String {
    // SAFETY: rte_strerror returns a pointer to a static or thread-local NUL-terminated string.
    unsafe { CStr::from_ptr(dpdk_sys::rte_strerror(errno)) }
        .to_string_lossy()
        .into_owned()
}

/// The DPDK version string, e.g. `DPDK 22.11.11` (valid before EAL init).
pub fn version() -> String {
    // SAFETY: rte_version returns a pointer to a static NUL-terminated string.
    unsafe { CStr::from_ptr(dpdk_sys::rte_version()) }
        .to_string_lossy()
        .into_owned()
}

/// Reads the CPU's time-stamp counter (the counter DPDK's `rte_rdtsc` reads, inlined here:
/// the binding's `rte_rdtsc` is an out-of-line wrapper, a call per read).
#[inline(always)]
pub fn rdtsc() -> u64 {
    pipeline::cycles::now()
}

/// TSC ticks per second, as EAL measured them (valid after EAL init).
pub fn tsc_hz() -> u64 {
    // SAFETY: returns a value EAL computed at init; no preconditions beyond a call after init,
    // before which it returns 0.
    unsafe { dpdk_sys::rte_get_tsc_hz() }
}

/// Asks the kernel to back the `len` bytes at `addr` (memory this process allocated and has
/// not written yet) with transparent huge pages (`madvise(MADV_HUGEPAGE)`). Connection tables
/// are large and read at random: with 2 MiB pages nearly every lookup saves a TLB miss. Only
/// whole 4 KiB pages inside the range are advised; a kernel without THP just says no, which is
/// ignored (the table works the same on small pages).
pub fn advise_huge_pages(addr: usize, len: usize) {
    const PAGE: usize = 4096;
    let start = addr.next_multiple_of(PAGE);
    let end = addr.saturating_add(len) & !(PAGE - 1);
    if end <= start {
        return;
    }
    // SAFETY: madvise only tells the kernel how to back the range; it neither reads nor
    // writes it, and the range lies inside one live allocation of this process.
    let _ = unsafe { libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_HUGEPAGE) };
}
