//! EAL initialisation, once per process.

use std::ffi::CString;
use std::os::raw::c_char;
use std::sync::atomic::{AtomicBool, Ordering};

use super::DpdkError;

static INITIALISED: AtomicBool = AtomicBool::new(false);

/// Proof that the EAL has been initialised in this process. Not `Clone`: the one holder
/// (the main thread) decides when to clean up.
#[derive(Debug)]
pub struct Eal {
    _private: (),
}

impl Eal {
    /// Initialises the EAL with `args` (without the program name). Fails if it was already
    /// initialised in this process (DPDK allows only one init).
    pub fn init<S: AsRef<str>>(args: &[S]) -> Result<Eal, DpdkError> {
        if INITIALISED.swap(true, Ordering::SeqCst) {
            return Err(DpdkError::new(
                "EAL init: already initialised in this process",
                libc::EALREADY,
            ));
        }
        let mut owned: Vec<CString> = Vec::with_capacity(args.len() + 1);
        owned.push(CString::new("dataplane").expect("no NUL"));
        for a in args {
            match CString::new(a.as_ref()) {
                Ok(c) => owned.push(c),
                Err(_) => {
                    return Err(DpdkError::new(
                        format!("EAL argument {:?} contains NUL", a.as_ref()),
                        libc::EINVAL,
                    ))
                }
            }
        }
        // EAL may permute argv; hand it pointers it can reorder, and keep the strings alive.
        let mut argv: Vec<*mut c_char> = owned.iter().map(|c| c.as_ptr() as *mut c_char).collect();
        argv.push(std::ptr::null_mut());
        // SAFETY: argv holds argc valid NUL-terminated strings plus a NULL, all living until the
        // end of this function; EAL only reorders the pointer array, and copies what it keeps.
        let rc = unsafe { dpdk_sys::rte_eal_init(owned.len() as i32, argv.as_mut_ptr()) };
        if rc < 0 {
            INITIALISED.store(false, Ordering::SeqCst);
            return Err(DpdkError::last(format!(
                "EAL init with {:?}",
                args.iter().map(|a| a.as_ref()).collect::<Vec<_>>()
            )));
        }
        Ok(Eal { _private: () })
    }

    /// The main lcore's id.
    pub fn main_lcore(&self) -> u32 {
        // SAFETY: valid after EAL init, which `self` proves.
        unsafe { dpdk_sys::rte_get_main_lcore() }
    }

    /// Ids of the worker lcores (all enabled lcores but the main one), in order.
    pub fn worker_lcores(&self) -> Vec<u32> {
        let main = self.main_lcore();
        (0..dpdk_sys::RTE_MAX_LCORE)
            // SAFETY: valid after EAL init; any lcore id below RTE_MAX_LCORE may be asked.
            .filter(|&l| l != main && unsafe { dpdk_sys::rte_lcore_is_enabled(l) } != 0)
            .collect()
    }

    /// The NUMA socket of an lcore.
    pub fn lcore_socket(&self, lcore: u32) -> u32 {
        // SAFETY: valid after EAL init; out-of-range ids return an error value, not UB.
        unsafe { dpdk_sys::rte_lcore_to_socket_id(lcore) }
    }

    /// Whether the EAL runs with huge pages.
    pub fn has_hugepages(&self) -> bool {
        // SAFETY: valid after EAL init.
        unsafe { dpdk_sys::rte_eal_has_hugepages() != 0 }
    }

    /// Initialises DPDK's packet-capture framework so that `dpdk-dumpcap` (a secondary
    /// process with the same `--file-prefix`) can capture on our ports while we run.
    pub fn enable_pdump(&self) -> Result<(), DpdkError> {
        // SAFETY: valid after EAL init (proved by self); called once from the main lcore.
        let rc = unsafe { dpdk_sys::rte_pdump_init() };
        super::check(rc, || "pdump init".to_string()).map(|_| ())
    }

    /// Releases EAL resources (huge-page files, vdevs). Call last, once every port is closed
    /// and every mempool freed.
    pub fn cleanup(self) {
        // SAFETY: uninit of pdump is harmless when it was never initialised.
        unsafe { dpdk_sys::rte_pdump_uninit() };
        // SAFETY: called once (self is consumed) on the main thread after workers stopped.
        unsafe { dpdk_sys::rte_eal_cleanup() };
    }
}
