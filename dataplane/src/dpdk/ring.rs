//! DPDK rings (`rte_ring`) and ring-backed ports (`rte_eth_from_rings`): in-process wires for
//! tests and labs.

use std::ffi::CString;
use std::ptr::NonNull;

use arrayvec::ArrayVec;

use super::{DpdkError, Eal, Mbuf};

/// A multi-producer, multi-consumer ring of mbuf pointers. Freed on drop (drain it first:
/// mbufs left inside are freed with it).
#[derive(Debug)]
pub struct Ring {
    ptr: NonNull<dpdk_sys::rte_ring>,
}

// SAFETY: an MP/MC rte_ring is safe to use from several threads at once.
unsafe impl Send for Ring {}
// SAFETY: as above; enqueue/dequeue take &self and are thread-safe for MP/MC rings.
unsafe impl Sync for Ring {}

impl Ring {
    /// Creates a ring of `size` slots (a power of two; holds size-1) named `name`.
    pub fn create(_eal: &Eal, name: &str, size: u32) -> Result<Ring, DpdkError> {
        let c = CString::new(name)
            .map_err(|_| DpdkError::new("ring name contains NUL", libc::EINVAL))?;
        // SAFETY: EAL is initialised; c is a valid C string; flags 0 = MP/MC.
        let p = unsafe { dpdk_sys::rte_ring_create(c.as_ptr(), size, 0, 0) };
        NonNull::new(p)
            .map(|ptr| Ring { ptr })
            .ok_or_else(|| DpdkError::last(format!("ring {name} of {size}")))
    }

    /// Enqueues as many of `pkts` as fit, from the front; they leave the vector.
    pub fn enqueue<const N: usize>(&self, pkts: &mut ArrayVec<Mbuf, N>) -> usize {
        let ptr = pkts.as_mut_ptr() as *const *mut std::os::raw::c_void;
        // SAFETY: ptr points at len valid mbuf pointers (Mbuf is repr(transparent)); the ring is
        // live and MP-safe.
        let n = unsafe {
            dpdk_sys::rte_ring_enqueue_burst(
                self.ptr.as_ptr(),
                ptr,
                pkts.len() as u32,
                std::ptr::null_mut(),
            )
        } as usize;
        for m in pkts.drain(..n) {
            let _ = m.into_raw();
        }
        n
    }

    /// Dequeues up to the vector's free room.
    pub fn dequeue<const N: usize>(&self, out: &mut ArrayVec<Mbuf, N>) -> usize {
        let room = out.remaining_capacity();
        let len = out.len();
        // SAFETY: the ring is live and MC-safe. Entries land straight in the free tail of
        // `out`: `Mbuf` is `repr(transparent)` over a non-null mbuf pointer, the tail has room
        // for `room` of them, only mbufs are ever enqueued on rings this type owns, each of
        // the n <= room dequeued pointers is now ours alone, and the new length covers them.
        unsafe {
            let tail = out
                .as_mut_ptr()
                .add(len)
                .cast::<*mut std::os::raw::c_void>();
            let n = dpdk_sys::rte_ring_dequeue_burst(
                self.ptr.as_ptr(),
                tail,
                room as u32,
                std::ptr::null_mut(),
            ) as usize;
            out.set_len(len + n);
            n
        }
    }

    /// Entries in the ring.
    pub fn count(&self) -> u32 {
        // SAFETY: the ring is live.
        unsafe { dpdk_sys::rte_ring_count(self.ptr.as_ptr()) }
    }
}

impl Drop for Ring {
    fn drop(&mut self) {
        let mut v: ArrayVec<Mbuf, 64> = ArrayVec::new();
        while self.dequeue(&mut v) != 0 {
            v.clear();
        }
        // SAFETY: the ring is ours, drained, and no port uses it any more (ports are closed
        // before their rings are dropped by the code that created both).
        unsafe { dpdk_sys::rte_ring_free(self.ptr.as_ptr()) }
    }
}

/// Creates an ethdev named `net_ring_<name>` (the name a `ring` port at index `name` has in a
/// plan) that receives from `rx` and transmits into `tx`. The rings must outlive the port.
pub fn ring_port(eal: &Eal, name: &str, rx: &Ring, tx: &Ring) -> Result<u16, DpdkError> {
    ring_port_multi(eal, name, &[rx], &[tx])
}

/// Like [`ring_port`], with one ring per rx queue and one per tx queue.
pub fn ring_port_multi(
    _eal: &Eal,
    name: &str,
    rx: &[&Ring],
    tx: &[&Ring],
) -> Result<u16, DpdkError> {
    let c =
        CString::new(name).map_err(|_| DpdkError::new("port name contains NUL", libc::EINVAL))?;
    let rxs: Vec<*mut dpdk_sys::rte_ring> = rx.iter().map(|r| r.ptr.as_ptr()).collect();
    let txs: Vec<*mut dpdk_sys::rte_ring> = tx.iter().map(|r| r.ptr.as_ptr()).collect();
    // SAFETY: valid C string and arrays of live rings with their true lengths; DPDK copies the
    // arrays.
    let rc = unsafe {
        dpdk_sys::rte_eth_from_rings(
            c.as_ptr(),
            rxs.as_ptr(),
            rxs.len() as u32,
            txs.as_ptr(),
            txs.len() as u32,
            0,
        )
    };
    if rc < 0 {
        return Err(DpdkError::last(format!("ring port {name}")));
    }
    Ok(rc as u16)
}
