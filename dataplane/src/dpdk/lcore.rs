//! Launching work on EAL worker lcores.

use std::os::raw::{c_int, c_void};

use super::{DpdkError, Eal};

type Job = Box<dyn FnOnce() -> i32 + Send + 'static>;

unsafe extern "C" fn trampoline(arg: *mut c_void) -> c_int {
    // SAFETY: `arg` is the Box<Job> leaked by `launch` for exactly this call; we take it back once.
    let job: Box<Job> = unsafe { Box::from_raw(arg as *mut Job) };
    job()
}

/// Runs `f` on worker lcore `lcore` (which must be idle). The result is collected by [`wait`].
pub fn launch<F>(_eal: &Eal, lcore: u32, f: F) -> Result<(), DpdkError>
where
    F: FnOnce() -> i32 + Send + 'static,
{
    let job: Box<Job> = Box::new(Box::new(f));
    let arg = Box::into_raw(job) as *mut c_void;
    // SAFETY: trampoline matches lcore_function_t and takes ownership of `arg` once.
    let rc = unsafe { dpdk_sys::rte_eal_remote_launch(Some(trampoline), arg, lcore) };
    if rc < 0 {
        // SAFETY: the launch failed, so the trampoline will never run: reclaim the box here.
        drop(unsafe { Box::from_raw(arg as *mut Job) });
        return Err(DpdkError::new(format!("launch on lcore {lcore}"), rc));
    }
    Ok(())
}

/// Waits for the job on `lcore` to finish and returns its result.
pub fn wait(_eal: &Eal, lcore: u32) -> i32 {
    // SAFETY: valid after EAL init; blocks until the lcore is idle.
    unsafe { dpdk_sys::rte_eal_wait_lcore(lcore) }
}

/// The lcore id of the calling thread (`u32::MAX` on a non-EAL thread).
pub fn current() -> u32 {
    // SAFETY: reads a thread-local; no preconditions.
    unsafe { dpdk_sys::rte_lcore_id() }
}
