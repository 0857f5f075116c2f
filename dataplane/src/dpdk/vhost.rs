//! The direct vhost-user data path of `net_vhost` ports.
//!
//! The vhost PMD wraps librte_vhost's `rte_vhost_dequeue_burst` / `rte_vhost_enqueue_burst`
//! with per-packet work of its own: size-bin and multicast counters on both sides (reading
//! every packet's length and destination MAC), and a `rte_pktmbuf_free` per sent mbuf.
//! Measured in the vhost benchmark's DUT (parse -> acl -> forward, 1k rules, near-full
//! 256-packet bursts, interleaved runs): the worker spends 240-252 cycles per packet through
//! the PMD, 215-225 calling librte_vhost itself. Like OVS-DPDK's netdev-dpdk, the workers of
//! a `net_vhost` port therefore call librte_vhost directly, in chunks of 32 (the library's
//! largest burst), free sent mbufs in one bulk call, and count packets and bytes per
//! virtqueue (added to the port's driver counters, so stats, metrics and the periodic line
//! stay whole). The PMD still owns the socket, feature negotiation and the link.
//!
//! # The device's lifetime
//! A vhost device id (`vid`) is valid from the library's `new_device` to its
//! `destroy_device` callback; after the latter returns the library frees the device. The PMD
//! fires an ethdev link-state event (`RTE_ETH_EVENT_INTR_LSC`) at the end of both,
//! synchronously, from the vhost events thread. A [`VhostGate`] per port follows those
//! events: on link up it takes the new `vid`; on link down it withdraws it and waits until no
//! worker is inside a library call with the old one (each virtqueue has a busy flag that its
//! one worker raises around the call: a Dekker handshake, sequentially consistent on both
//! sides), so the library frees nothing in use. The start-up refresh and the events are
//! serialised (a mutex of the control path), so a stale id never overwrites a withdrawal;
//! the callback is unregistered (retried while ethdev says it is running) before the gate
//! can be dropped.
//!
//! # When the PMD path is kept
//! A port with checksum offload on transmit (the PMD may compute checksums in software for
//! a guest that did not negotiate them) uses the PMD throughout. A queue with ethdev rx/tx
//! callbacks registered (e.g. `dpdk-dumpcap`'s capture through pdump) goes through the PMD
//! while they are: the callbacks run in `rte_eth_rx_burst` / `rte_eth_tx_burst`. Those
//! bursts are counted (`pmd_rx_bursts`, `pmd_tx_bursts`), whatever they moved: a tx
//! callback sees every packet handed to the PMD, also those a full guest ring refused, so a
//! capture may hold packets the port never sent (and the same packets again when a worker
//! retries them).

use std::sync::atomic::{AtomicBool, AtomicI32, AtomicPtr, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use arrayvec::ArrayVec;

use super::Mbuf;
use crate::counters::bump;

/// The largest burst librte_vhost moves per call (`MAX_PKT_BURST` in lib/vhost).
const LIB_BURST: usize = 32;

/// Virtqueue index of the guest's transmit ring of queue pair `q` (our receive side).
pub fn rx_virtqueue(q: u16) -> u16 {
    q * 2 + 1
}

/// Virtqueue index of the guest's receive ring of queue pair `q` (our transmit side).
pub fn tx_virtqueue(q: u16) -> u16 {
    q * 2
}

/// Counters of one virtqueue, written by the worker that owns it.
#[derive(Debug, Default)]
#[repr(align(64))]
struct VqSlot {
    /// Raised by the owning worker around each library call.
    busy: AtomicBool,
    packets: AtomicU64,
    bytes: AtomicU64,
    /// Bursts handed to the PMD instead because ethdev callbacks were on.
    pmd_bursts: AtomicU64,
}

/// The direct data path's shared state of one `net_vhost` port.
#[derive(Debug)]
pub struct VhostGate {
    port: u16,
    /// The attached device's id, or -1.
    vid: AtomicI32,
    /// Receive buffers (the pool of the port's rx queues).
    pool: AtomicPtr<dpdk_sys::rte_mempool>,
    vqs: Box<[VqSlot]>,
    /// Serialises [`VhostGate::refresh`] (the start-up call and the link events; never
    /// taken by workers): each reads the link and swaps the id as one step.
    refreshing: Mutex<()>,
}

/// Packets and bytes moved by a port's direct data path.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct GateCounts {
    /// Received packets.
    pub rx_packets: u64,
    /// Received bytes.
    pub rx_bytes: u64,
    /// Sent packets.
    pub tx_packets: u64,
    /// Sent bytes.
    pub tx_bytes: u64,
    /// Receive bursts made through the PMD (`rte_eth_rx_burst`) because ethdev rx
    /// callbacks were on (a capture), whether or not they received anything.
    pub pmd_rx_bursts: u64,
    /// Transmit bursts handed to the PMD because tx callbacks were on (a capture sees
    /// their packets even when the guest's ring takes none of them).
    pub pmd_tx_bursts: u64,
}

impl VhostGate {
    /// A gate for `port` with `queue_pairs` queue pairs, receiving into `pool`; no device
    /// attached yet.
    pub fn new(port: u16, queue_pairs: u16, pool: *mut dpdk_sys::rte_mempool) -> Arc<Self> {
        Arc::new(Self {
            port,
            vid: AtomicI32::new(-1),
            pool: AtomicPtr::new(pool),
            vqs: (0..usize::from(queue_pairs) * 2)
                .map(|_| VqSlot::default())
                .collect(),
            refreshing: Mutex::new(()),
        })
    }

    /// Follows the port's link: up takes the device id the PMD holds, down withdraws it and
    /// returns once no worker uses the old one. Called from the link-state event (and once
    /// at start).
    pub fn refresh(&self) {
        let _one_at_a_time = self.refreshing.lock().unwrap_or_else(|e| e.into_inner());
        let mut link = dpdk_sys::rte_eth_link::default();
        // SAFETY: valid port id (the gate lives no longer than its port) and out pointer.
        let rc = unsafe { dpdk_sys::rte_eth_link_get_nowait(self.port, &mut link) };
        let up = rc == 0 && link.link_status() != 0;
        // SAFETY: a plain query of the PMD's list (takes its own lock).
        let vid = if up {
            unsafe { dpdk_sys::rte_eth_vhost_get_vid_from_port_id(self.port) }
        } else {
            -1
        };
        let old = self.vid.swap(vid, Ordering::SeqCst);
        if vid < 0 && old >= 0 {
            self.quiesce();
        }
    }

    /// Waits until no worker is inside a library call (a call that began before the device
    /// id was withdrawn finishes within one burst).
    fn quiesce(&self) {
        for vq in self.vqs.iter() {
            while vq.busy.load(Ordering::SeqCst) {
                std::hint::spin_loop();
            }
        }
    }

    /// What the direct path moved so far.
    pub fn counts(&self) -> GateCounts {
        let mut c = GateCounts::default();
        for (i, vq) in self.vqs.iter().enumerate() {
            let (p, b, pmd) = (
                vq.packets.load(Ordering::Relaxed),
                vq.bytes.load(Ordering::Relaxed),
                vq.pmd_bursts.load(Ordering::Relaxed),
            );
            if i % 2 == 1 {
                c.rx_packets += p;
                c.rx_bytes += b;
                c.pmd_rx_bursts += pmd;
            } else {
                c.tx_packets += p;
                c.tx_bytes += b;
                c.pmd_tx_bursts += pmd;
            }
        }
        c
    }

    /// Registers [`VhostGate::refresh`] on the port's link-state events and takes the
    /// current state. The gate must stay alive until [`VhostGate::unregister`].
    pub fn register(self: &Arc<Self>) -> Result<(), super::DpdkError> {
        // The callback gets a pointer to this gate, which the port keeps alive (an Arc)
        // until it unregisters the callback.
        let rc = self.link_callback(dpdk_sys::rte_eth_dev_callback_register);
        super::check(rc, || {
            format!("port {}: link-state callback of the vhost path", self.port)
        })?;
        self.refresh();
        Ok(())
    }

    /// Stops following link events (before the gate may be dropped). ethdev refuses
    /// (`-EAGAIN`) while the callback runs, so this retries for up to 5 s; should it still
    /// be running then, the gate is leaked rather than freed under it.
    pub fn unregister(self: &Arc<Self>) {
        for _ in 0..5000 {
            let rc = self.link_callback(dpdk_sys::rte_eth_dev_callback_unregister);
            if rc != -libc::EAGAIN {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        eprintln!(
            "port {}: vhost link-state callback still running after 5 s; its state is leaked",
            self.port
        );
        std::mem::forget(Arc::clone(self));
    }

    /// Calls ethdev's `rte_eth_dev_callback_register` or `_unregister` (`f`) for this
    /// port's link-state event with [`on_link_event`] and this gate.
    fn link_callback(
        &self,
        f: unsafe extern "C" fn(
            u16,
            dpdk_sys::rte_eth_event_type,
            dpdk_sys::rte_eth_dev_cb_fn,
            *mut std::ffi::c_void,
        ) -> i32,
    ) -> i32 {
        // SAFETY: a valid port id and event; the argument is this gate, which outlives the
        // registration (see `register` / `unregister`).
        unsafe {
            f(
                self.port,
                dpdk_sys::RTE_ETH_EVENT_INTR_LSC,
                Some(on_link_event),
                self as *const Self as *mut std::ffi::c_void,
            )
        }
    }

    /// Runs `call(vid, done, want)` (one library call moving `want` packets from position
    /// `done`, returning how many it moved) in chunks of [`LIB_BURST`] until `total` moved
    /// or a call moved fewer than asked, inside virtqueue `vq`'s busy window; returns how
    /// many moved (0 when no device is attached).
    #[inline(always)]
    fn in_chunks(
        &self,
        vq: u16,
        total: usize,
        mut call: impl FnMut(i32, usize, u16) -> u16,
    ) -> usize {
        let slot = &self.vqs[usize::from(vq)];
        slot.busy.store(true, Ordering::SeqCst);
        let vid = self.vid.load(Ordering::SeqCst);
        let mut done = 0;
        if vid >= 0 {
            while done < total {
                let want = (total - done).min(LIB_BURST);
                let got = usize::from(call(vid, done, want as u16));
                done += got;
                if got < want {
                    break;
                }
            }
        }
        slot.busy.store(false, Ordering::Release);
        done
    }

    /// Receives up to `room` packets from virtqueue `vq` into the free tail of `out`
    /// (stamped with the port id); 0 when no device is attached.
    #[inline]
    pub fn rx<const N: usize>(&self, vq: u16, out: &mut ArrayVec<Mbuf, N>, room: usize) -> usize {
        let pool = self.pool.load(Ordering::Relaxed);
        let room = room.min(out.remaining_capacity());
        let len = out.len();
        // SAFETY: `len` is within the vector's buffer (at most its capacity).
        let tail = unsafe { out.as_mut_ptr().add(len) };
        let n = self.in_chunks(vq, room, |vid, done, want| {
            // SAFETY: `vid` is attached (withdrawn only after the busy window); `vq` is this
            // worker's own virtqueue; `tail + done` has room for `want` more `Mbuf`s
            // (repr(transparent) over `rte_mbuf *`) in `out`'s spare capacity.
            unsafe { dpdk_sys::rte_vhost_dequeue_burst(vid, vq, pool, tail.add(done).cast(), want) }
        });
        // SAFETY: the library wrote `n` valid mbuf pointers, now ours, right after the
        // vector's `len` elements.
        unsafe { out.set_len(len + n) };
        let mut bytes = 0u64;
        for m in &mut out[len..] {
            m.set_port(self.port);
            bytes += u64::from(m.pkt_len());
        }
        self.vqs[usize::from(vq)].count(n, bytes);
        n
    }

    /// Counts a burst of virtqueue `vq` made through the PMD instead (callbacks on; called
    /// by the virtqueue's one worker).
    #[cold]
    pub fn count_pmd_burst(&self, vq: u16) {
        if let Some(slot) = self.vqs.get(usize::from(vq)) {
            bump(&slot.pmd_bursts, 1);
        }
    }

    /// Sends as many of `pkts` as virtqueue `vq` takes, from the front, and frees them;
    /// what was not sent stays in the vector. 0 when no device is attached.
    #[inline]
    pub fn tx<const N: usize>(&self, vq: u16, pkts: &mut ArrayVec<Mbuf, N>) -> usize {
        let total = pkts.len();
        let ptr = pkts.as_mut_ptr().cast::<*mut dpdk_sys::rte_mbuf>();
        let sent = self.in_chunks(vq, total, |vid, done, want| {
            // SAFETY: as in `rx`; `ptr + done` points at `want` valid mbuf pointers we own.
            // The library copies the packets into the guest's buffers, the mbufs stay ours.
            unsafe { dpdk_sys::rte_vhost_enqueue_burst(vid, vq, ptr.add(done), want) }
        });
        let bytes: u64 = pkts[..sent].iter().map(|m| u64::from(m.pkt_len())).sum();
        self.vqs[usize::from(vq)].count(sent, bytes);
        if sent != 0 {
            // SAFETY: the first `sent` mbufs were copied out and are still ours: freed in one
            // call, the rest moved to the front, and the vector forgets the freed ones
            // without running their destructors.
            unsafe {
                dpdk_sys::rte_pktmbuf_free_bulk(ptr, sent as u32);
                let rest = total - sent;
                std::ptr::copy(ptr.add(sent), ptr, rest);
                pkts.set_len(rest);
            }
        }
        sent
    }
}

impl VqSlot {
    /// Adds a burst's packets and bytes (only the owning worker writes: no locked
    /// instruction).
    #[inline(always)]
    fn count(&self, packets: usize, bytes: u64) {
        bump(&self.packets, packets as u64);
        bump(&self.bytes, bytes);
    }
}

/// The ethdev link-state callback: `arg` is the port's gate.
unsafe extern "C" fn on_link_event(
    _port: u16,
    _event: dpdk_sys::rte_eth_event_type,
    arg: *mut std::ffi::c_void,
    _ret: *mut std::ffi::c_void,
) -> i32 {
    // SAFETY: registered with a pointer to a live gate, unregistered before it is dropped.
    let gate = unsafe { &*(arg as *const VhostGate) };
    gate.refresh();
    0
}

/// Whether ethdev has rx (`rx` true) or tx callbacks on (`port`, `queue`), e.g. a pdump
/// capture: then the queue must go through `rte_eth_rx_burst` / `rte_eth_tx_burst`.
#[inline(always)]
pub fn has_callbacks(port: u16, queue: u16, rx: bool) -> bool {
    // SAFETY: `rte_eth_fp_ops` is ethdev's exported fast-path table (what the inline
    // `rte_eth_rx_burst` reads); the port id is valid (< RTE_MAX_ETHPORTS) and `clbk` has an
    // entry per configured queue; the entry is read as the inline function reads it.
    unsafe {
        let ops = std::ptr::addr_of!(dpdk_sys::rte_eth_fp_ops[usize::from(port)]);
        let q = if rx { (*ops).rxq } else { (*ops).txq };
        !q.clbk.is_null() && !std::ptr::read_volatile(q.clbk.add(usize::from(queue))).is_null()
    }
}
