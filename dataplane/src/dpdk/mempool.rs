//! Packet-buffer pools (`rte_pktmbuf_pool_create`), one per NUMA socket.

use std::ffi::CString;
use std::ptr::NonNull;

use super::{DpdkError, Eal, Mbuf};

/// A pool of packet buffers in huge-page memory on one NUMA socket.
///
/// It knows how many of its mbufs are out, and refuses to be freed while any are: dropping a
/// pool with mbufs still out leaks it (with a warning) rather than freeing memory in use.
#[derive(Debug)]
pub struct Mempool {
    ptr: NonNull<dpdk_sys::rte_mempool>,
    name: String,
    size: u32,
}

// SAFETY: a DPDK mempool is designed for concurrent use from many lcores (per-lcore caches plus a
// lock-free ring); the handle is a pointer to shared, internally synchronised state.
unsafe impl Send for Mempool {}
// SAFETY: as above; every method takes &self and calls thread-safe DPDK functions.
unsafe impl Sync for Mempool {}

impl Mempool {
    /// Creates a pool of `size` mbufs with `data_room` bytes each (headroom included), a
    /// per-lcore cache of `cache` mbufs, on NUMA `socket`.
    pub fn create(
        _eal: &Eal,
        name: &str,
        size: u32,
        cache: u32,
        data_room: u16,
        socket: i32,
    ) -> Result<Self, DpdkError> {
        let cname = CString::new(name)
            .map_err(|_| DpdkError::new("mempool name contains NUL", libc::EINVAL))?;
        // SAFETY: EAL is initialised (proved by `_eal`); cname is a valid C string; DPDK copies it.
        let raw = unsafe {
            dpdk_sys::rte_pktmbuf_pool_create(cname.as_ptr(), size, cache, 0, data_room, socket)
        };
        match NonNull::new(raw) {
            Some(ptr) => Ok(Self {
                ptr,
                name: name.to_owned(),
                size,
            }),
            None => Err(DpdkError::last(format!(
                "mempool {name}: {size} mbufs of {data_room} bytes on socket {socket}"
            ))),
        }
    }

    /// The pool's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// How many mbufs the pool holds in all.
    pub fn size(&self) -> u32 {
        self.size
    }

    /// Mbufs currently out of the pool (in queues, in workers, in flight).
    pub fn in_use(&self) -> u32 {
        // SAFETY: the pointer is a live mempool for as long as self exists.
        unsafe { dpdk_sys::rte_mempool_in_use_count(self.ptr.as_ptr()) }
    }

    /// Mbufs available in the pool (including per-lcore caches).
    pub fn available(&self) -> u32 {
        // SAFETY: the pointer is a live mempool for as long as self exists.
        unsafe { dpdk_sys::rte_mempool_avail_count(self.ptr.as_ptr()) }
    }

    /// Takes one mbuf from the pool (reset, empty), or `None` when the pool is exhausted.
    pub fn alloc(&self) -> Option<Mbuf> {
        // SAFETY: the pointer is a live mempool; the returned mbuf (if any) is ours alone.
        let m = unsafe { dpdk_sys::rte_pktmbuf_alloc(self.ptr.as_ptr()) };
        // SAFETY: a non-null pointer from rte_pktmbuf_alloc is a fresh mbuf that nobody else owns.
        NonNull::new(m).map(|p| unsafe { Mbuf::from_raw(p) })
    }

    /// Takes `n` mbufs at once into `out` (all or none); false when the pool cannot supply them
    /// or `out` has no room.
    #[inline]
    pub fn alloc_bulk<const N: usize>(
        &self,
        out: &mut arrayvec::ArrayVec<Mbuf, N>,
        n: usize,
    ) -> bool {
        if n == 0 || n > out.remaining_capacity() {
            return n == 0;
        }
        let len = out.len();
        // SAFETY: the pool is live. The mbufs land straight in the free tail of `out`: `Mbuf`
        // is `repr(transparent)` over a non-null mbuf pointer and the tail has room for n
        // (checked above); alloc_bulk either fails writing nothing we use, or writes n fresh
        // mbufs that are now ours, and only then does the length grow to cover them.
        unsafe {
            let tail = out.as_mut_ptr().add(len).cast::<*mut dpdk_sys::rte_mbuf>();
            if dpdk_sys::rte_pktmbuf_alloc_bulk(self.ptr.as_ptr(), tail, n as u32) != 0 {
                return false;
            }
            out.set_len(len + n);
        }
        true
    }

    /// The raw pool, for port queue set-up.
    pub(crate) fn as_ptr(&self) -> *mut dpdk_sys::rte_mempool {
        self.ptr.as_ptr()
    }

    /// Frees the pool if every mbuf is back; otherwise hands it back with the count still out.
    pub fn free(self) -> Result<(), (Self, u32)> {
        let out = self.in_use();
        if out != 0 {
            return Err((self, out));
        }
        let ptr = self.ptr;
        std::mem::forget(self);
        // SAFETY: no mbuf of this pool is out (checked above), and self was consumed, so nothing
        // refers to the pool any more.
        unsafe { dpdk_sys::rte_mempool_free(ptr.as_ptr()) };
        Ok(())
    }
}

impl Drop for Mempool {
    fn drop(&mut self) {
        let out = self.in_use();
        if out == 0 {
            // SAFETY: every mbuf is back and this is the pool's only handle.
            unsafe { dpdk_sys::rte_mempool_free(self.ptr.as_ptr()) };
        } else {
            eprintln!("warning: mempool {} dropped with {out} mbufs still out: leaking it instead of freeing", self.name);
        }
    }
}
