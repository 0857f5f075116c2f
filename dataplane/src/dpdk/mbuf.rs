//! An owned DPDK packet buffer.

use pipeline::{CsumOffload, L4Csum};
use std::ptr::NonNull;

/// One DPDK packet buffer, owned. Freed back to its pool on drop.
///
/// `repr(transparent)` over the mbuf pointer, so a slice of `Mbuf` is an array of
/// `struct rte_mbuf *` that rx/tx bursts use directly. `Send` (it can move between lcores),
/// not `Sync`, not `Clone` (two owners would free it twice).
#[repr(transparent)]
#[derive(Debug)]
pub struct Mbuf(NonNull<dpdk_sys::rte_mbuf>);

// SAFETY: an mbuf owned by exactly one Mbuf may be used and freed from any thread.
unsafe impl Send for Mbuf {}

impl Mbuf {
    /// Wraps a raw mbuf.
    ///
    /// # Safety
    /// `ptr` must be a valid, single-segment mbuf that nobody else owns or will free.
    #[inline(always)]
    pub(crate) unsafe fn from_raw(ptr: NonNull<dpdk_sys::rte_mbuf>) -> Self {
        Mbuf(ptr)
    }

    /// Gives up ownership without freeing (after a tx burst took it).
    #[inline(always)]
    pub(crate) fn into_raw(self) -> *mut dpdk_sys::rte_mbuf {
        let p = self.0.as_ptr();
        std::mem::forget(self);
        p
    }

    #[inline(always)]
    fn raw(&self) -> &dpdk_sys::rte_mbuf {
        // SAFETY: we own a valid mbuf for as long as self lives.
        unsafe { self.0.as_ref() }
    }

    /// Length of the data in this (single) segment.
    #[inline(always)]
    pub fn len(&self) -> usize {
        self.raw().data_len as usize
    }

    /// Length of the whole packet (every segment).
    #[inline(always)]
    pub fn pkt_len(&self) -> u32 {
        self.raw().pkt_len
    }

    /// Whether the segment holds no data.
    #[inline(always)]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The port the mbuf was received on.
    #[inline(always)]
    pub fn port(&self) -> u16 {
        self.raw().port
    }

    /// Records the port the mbuf arrived on (some PMDs, e.g. net_ring, leave it unset).
    #[inline(always)]
    pub fn set_port(&mut self, port: u16) {
        // SAFETY: writes a plain field of the mbuf we exclusively own.
        unsafe { self.0.as_mut() }.port = port;
    }

    /// The packet bytes of the first segment.
    #[inline(always)]
    pub fn data(&self) -> &[u8] {
        let m = self.raw();
        // SAFETY: buf_addr + data_off points at data_len initialised bytes inside the mbuf's
        // buffer, which we own for the lifetime of &self.
        unsafe {
            std::slice::from_raw_parts(
                (m.buf_addr as *const u8).add(m.data_off as usize),
                m.data_len as usize,
            )
        }
    }

    /// The packet bytes of the first segment, writable.
    #[inline(always)]
    pub fn data_mut(&mut self) -> &mut [u8] {
        let m = self.raw();
        let (addr, off, len) = (
            m.buf_addr as *mut u8,
            m.data_off as usize,
            m.data_len as usize,
        );
        // SAFETY: as in `data`, and &mut self guarantees exclusive access to the buffer.
        unsafe { std::slice::from_raw_parts_mut(addr.add(off), len) }
    }

    /// Appends `bytes` to an empty or partly filled mbuf; false if it does not fit.
    pub fn append(&mut self, bytes: &[u8]) -> bool {
        // SAFETY: rte_pktmbuf_append checks tailroom and returns NULL when it does not fit.
        let dst = unsafe { dpdk_sys::rte_pktmbuf_append(self.0.as_ptr(), bytes.len() as u16) };
        if dst.is_null() || bytes.len() > u16::MAX as usize {
            return false;
        }
        // SAFETY: dst points at bytes.len() writable bytes just appended to our own mbuf.
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), dst as *mut u8, bytes.len()) };
        true
    }

    /// Sets the tx offload flags and header lengths of a checksum-offload request.
    pub fn set_tx_csum_offload(&mut self, req: CsumOffload) {
        let mut flags = if req.ipv4 { TX_IPV4 } else { TX_IPV6 };
        if req.ip && req.ipv4 {
            flags |= TX_IP_CKSUM;
        }
        flags |= match req.l4 {
            L4Csum::Tcp => TX_TCP_CKSUM,
            L4Csum::Udp => TX_UDP_CKSUM,
            L4Csum::None => 0,
        };
        // SAFETY: writes plain fields of the mbuf we exclusively own.
        let m = unsafe { self.0.as_mut() };
        m.ol_flags |= flags;
        // tx_offload bitfield: l2_len (7 bits) | l3_len (9 bits) << 7.
        m.__bindgen_anon_3.tx_offload = u64::from(req.l2_len) | (u64::from(req.l3_len) << 7);
    }
}

use dpdk_sys::{
    RTE_MBUF_F_TX_IPV4 as TX_IPV4, RTE_MBUF_F_TX_IPV6 as TX_IPV6,
    RTE_MBUF_F_TX_IP_CKSUM as TX_IP_CKSUM, RTE_MBUF_F_TX_TCP_CKSUM as TX_TCP_CKSUM,
    RTE_MBUF_F_TX_UDP_CKSUM as TX_UDP_CKSUM,
};

impl Drop for Mbuf {
    #[inline]
    fn drop(&mut self) {
        // SAFETY: we own the mbuf and nobody uses it after this.
        unsafe { dpdk_sys::rte_pktmbuf_free(self.0.as_ptr()) }
    }
}

impl pipeline::PacketBuf for Mbuf {
    #[inline(always)]
    fn data(&self) -> &[u8] {
        Mbuf::data(self)
    }
    #[inline(always)]
    fn data_mut(&mut self) -> &mut [u8] {
        Mbuf::data_mut(self)
    }
    #[inline(always)]
    fn in_port(&self) -> u16 {
        self.port()
    }
    #[inline(always)]
    fn prefetch(&self) {
        let m = self.raw();
        #[cfg(target_arch = "x86_64")]
        // SAFETY: prefetch is a hint and never faults, whatever the address; the address is the
        // start of this mbuf's packet data.
        unsafe {
            core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(
                (m.buf_addr as *const i8).add(m.data_off as usize),
            )
        };
    }
    fn request_csum_offload(&mut self, req: CsumOffload) -> bool {
        self.set_tx_csum_offload(req);
        true
    }
    fn set_len(&mut self, len: usize) -> bool {
        let cur = usize::from(self.raw().data_len);
        let Ok(delta) = u16::try_from(len.abs_diff(cur)) else {
            return false;
        };
        if len >= cur {
            // SAFETY: we own this valid single-segment mbuf; rte_pktmbuf_append only moves
            // data_len/pkt_len within the buffer's tailroom and returns NULL (changing
            // nothing) when there is not enough.
            !unsafe { dpdk_sys::rte_pktmbuf_append(self.0.as_ptr(), delta) }.is_null()
        } else {
            // SAFETY: as above; rte_pktmbuf_trim shortens the last (only) segment and
            // refuses (returns -1, changing nothing) to trim more than it holds.
            unsafe { dpdk_sys::rte_pktmbuf_trim(self.0.as_ptr(), delta) == 0 }
        }
    }
}
