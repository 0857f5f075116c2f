//! Ethernet ports (`rte_ethdev`): configuration, start/stop, link, MAC, hardware stats, and
//! rx/tx queue handles each owned by one worker.

use std::ffi::CString;
use std::marker::PhantomData;
use std::sync::Arc;

use arrayvec::ArrayVec;

use super::vhost::{self, VhostGate};
use super::{check, DpdkError, Eal, Mbuf, Mempool};

// RSS hash types and tx offloads (rte_ethdev.h); bindgen cannot evaluate RTE_BIT64 macros.
const RSS_IP: u64 = (1 << 2) | (1 << 3) | (1 << 7) | (1 << 8) | (1 << 9) | (1 << 13) | (1 << 15);
const RSS_UDP: u64 = (1 << 5) | (1 << 11);
const RSS_TCP: u64 = (1 << 4) | (1 << 10);
const TX_OFFLOAD_IPV4_CKSUM: u64 = 1 << 1;
const TX_OFFLOAD_UDP_CKSUM: u64 = 1 << 2;
const TX_OFFLOAD_TCP_CKSUM: u64 = 1 << 3;
const TX_OFFLOAD_MBUF_FAST_FREE: u64 = 1 << 16;

/// How a port is set up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortConfig {
    /// Receive queues.
    pub rx_queues: u16,
    /// Transmit queues (one per worker that sends on this port).
    pub tx_queues: u16,
    /// Receive descriptors per queue.
    pub rxd: u16,
    /// Transmit descriptors per queue.
    pub txd: u16,
    /// MTU to set, if any.
    pub mtu: Option<u16>,
    /// Enable promiscuous mode.
    pub promiscuous: bool,
    /// Ask the device for IPv4/TCP/UDP checksum offload on transmit (when it has it). Off
    /// unless a stage rewrites headers: some drivers (vhost) then look at every mbuf's flags.
    pub tx_checksum: bool,
}

/// What a port can offload, found at configure time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct PortOffloads {
    /// IPv4 header checksum on transmit.
    pub tx_ipv4_csum: bool,
    /// TCP and UDP checksums on transmit (both).
    pub tx_l4_csum: bool,
    /// RSS hash types in use (0 when a single rx queue or no RSS).
    pub rss_hf: u64,
}

/// An Ethernet device found by name after EAL probed it.
#[derive(Debug)]
pub struct Port {
    id: u16,
    name: String,
    started: bool,
    offloads: PortOffloads,
    /// The direct librte_vhost path of a `net_vhost` port (see [`super::vhost`]).
    vhost: Option<Arc<VhostGate>>,
}

/// Hardware (driver) counters of a port.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct PortStats {
    /// Packets received.
    pub ipackets: u64,
    /// Packets sent.
    pub opackets: u64,
    /// Bytes received.
    pub ibytes: u64,
    /// Bytes sent.
    pub obytes: u64,
    /// Packets dropped by the device because rx queues were full.
    pub imissed: u64,
    /// Receive errors.
    pub ierrors: u64,
    /// Transmit errors.
    pub oerrors: u64,
    /// Receive failures for lack of mbufs.
    pub rx_nombuf: u64,
}

/// Link state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct LinkState {
    /// Whether the link is up.
    pub up: bool,
    /// Speed in Mbit/s (0 when unknown).
    pub speed_mbps: u32,
}

impl Port {
    /// Finds the port EAL created for `ethdev_name` (a PCI address or a vdev name).
    pub fn by_name(_eal: &Eal, ethdev_name: &str) -> Result<Port, DpdkError> {
        let c = CString::new(ethdev_name)
            .map_err(|_| DpdkError::new("port name contains NUL", libc::EINVAL))?;
        let mut id = 0u16;
        // SAFETY: EAL is initialised; c is a valid C string; id is a valid out pointer.
        let rc = unsafe { dpdk_sys::rte_eth_dev_get_port_by_name(c.as_ptr(), &mut id) };
        check(rc, || {
            format!(
                "no ethdev named {ethdev_name} (did EAL probe it? is its PMD plugin installed?)"
            )
        })?;
        Ok(Port {
            id,
            name: ethdev_name.to_owned(),
            started: false,
            offloads: PortOffloads::default(),
            vhost: None,
        })
    }

    /// DPDK's port id.
    pub fn id(&self) -> u16 {
        self.id
    }

    /// The ethdev name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Offloads enabled at configure time.
    pub fn offloads(&self) -> PortOffloads {
        self.offloads
    }

    /// The NUMA socket the device is attached to (`-1`/`0` for virtual devices).
    pub fn socket(&self) -> i32 {
        // SAFETY: the port id is valid.
        unsafe { dpdk_sys::rte_eth_dev_socket_id(self.id) }
    }

    fn info(&self) -> Result<dpdk_sys::rte_eth_dev_info, DpdkError> {
        let mut info = dpdk_sys::rte_eth_dev_info::default();
        // SAFETY: valid port id and out pointer.
        let rc = unsafe { dpdk_sys::rte_eth_dev_info_get(self.id, &mut info) };
        check(rc, || format!("port {}: device info", self.name))?;
        Ok(info)
    }

    /// The driver's name (e.g. `net_vhost`).
    pub fn driver(&self) -> String {
        match self.info() {
            // SAFETY: driver_name is a static NUL-terminated string owned by the driver.
            Ok(i) if !i.driver_name.is_null() => unsafe { std::ffi::CStr::from_ptr(i.driver_name) }
                .to_string_lossy()
                .into_owned(),
            _ => String::from("?"),
        }
    }

    /// Configures queues (RSS across rx queues when there are several), descriptors, MTU and
    /// offloads, with rx buffers from `pool`.
    pub fn configure(&mut self, cfg: &PortConfig, pool: &Mempool) -> Result<(), DpdkError> {
        let info = self.info()?;
        let mut conf = dpdk_sys::rte_eth_conf::default();
        if cfg.rx_queues > 1 {
            let hf = (RSS_IP | RSS_UDP | RSS_TCP) & info.flow_type_rss_offloads;
            if hf != 0 {
                conf.rxmode.mq_mode = dpdk_sys::RTE_ETH_MQ_RX_RSS;
                conf.rx_adv_conf.rss_conf.rss_hf = hf;
                self.offloads.rss_hf = hf;
            }
        }
        let mut want_tx = TX_OFFLOAD_MBUF_FAST_FREE;
        if cfg.tx_checksum {
            want_tx |= TX_OFFLOAD_IPV4_CKSUM | TX_OFFLOAD_UDP_CKSUM | TX_OFFLOAD_TCP_CKSUM;
        }
        conf.txmode.offloads = want_tx & info.tx_offload_capa;
        self.offloads.tx_ipv4_csum = conf.txmode.offloads & TX_OFFLOAD_IPV4_CKSUM != 0;
        let l4 = TX_OFFLOAD_UDP_CKSUM | TX_OFFLOAD_TCP_CKSUM;
        self.offloads.tx_l4_csum = conf.txmode.offloads & l4 == l4;
        // SAFETY: valid port id; conf outlives the call (DPDK copies it).
        let rc = unsafe {
            dpdk_sys::rte_eth_dev_configure(self.id, cfg.rx_queues, cfg.tx_queues, &conf)
        };
        check(rc, || {
            format!(
                "port {}: configure {} rx / {} tx queues",
                self.name, cfg.rx_queues, cfg.tx_queues
            )
        })?;

        let (mut rxd, mut txd) = (cfg.rxd, cfg.txd);
        // SAFETY: valid port id and in/out pointers.
        let rc = unsafe { dpdk_sys::rte_eth_dev_adjust_nb_rx_tx_desc(self.id, &mut rxd, &mut txd) };
        check(rc, || format!("port {}: adjust descriptors", self.name))?;
        let socket = self.socket().max(0) as u32;
        for q in 0..cfg.rx_queues {
            // SAFETY: valid port and queue ids; a NULL rxconf selects the driver default; the pool
            // outlives the port's started life (the runtime stops ports before freeing pools).
            let rc = unsafe {
                dpdk_sys::rte_eth_rx_queue_setup(
                    self.id,
                    q,
                    rxd,
                    socket,
                    std::ptr::null(),
                    pool.as_ptr(),
                )
            };
            check(rc, || {
                format!("port {}: rx queue {q} with {rxd} descriptors", self.name)
            })?;
        }
        let mut txconf = info.default_txconf;
        txconf.offloads = conf.txmode.offloads;
        for q in 0..cfg.tx_queues {
            // SAFETY: valid port and queue ids; txconf lives across the call.
            let rc = unsafe { dpdk_sys::rte_eth_tx_queue_setup(self.id, q, txd, socket, &txconf) };
            check(rc, || {
                format!("port {}: tx queue {q} with {txd} descriptors", self.name)
            })?;
        }
        if let Some(mtu) = cfg.mtu {
            // SAFETY: valid port id.
            let rc = unsafe { dpdk_sys::rte_eth_dev_set_mtu(self.id, mtu) };
            check(rc, || format!("port {}: MTU {mtu}", self.name))?;
        }
        // A vhost port's workers call librte_vhost directly, unless the PMD has transmit
        // checksums to do.
        self.vhost = (self.driver() == "net_vhost"
            && !self.offloads.tx_ipv4_csum
            && !self.offloads.tx_l4_csum)
            .then(|| VhostGate::new(self.id, cfg.rx_queues.max(cfg.tx_queues), pool.as_ptr()));
        if cfg.promiscuous {
            // SAFETY: valid port id. Some virtual devices do not support it; that is not an error.
            let _ = unsafe { dpdk_sys::rte_eth_promiscuous_enable(self.id) };
        }
        Ok(())
    }

    /// Starts the device.
    pub fn start(&mut self) -> Result<(), DpdkError> {
        // SAFETY: valid, configured port id.
        let rc = unsafe { dpdk_sys::rte_eth_dev_start(self.id) };
        check(rc, || format!("port {}: start", self.name))?;
        self.started = true;
        if let Some(g) = &self.vhost {
            g.register()?;
        }
        Ok(())
    }

    /// Stops the device (queues keep their mbufs until close).
    pub fn stop(&mut self) -> Result<(), DpdkError> {
        if !self.started {
            return Ok(());
        }
        if let Some(g) = &self.vhost {
            g.unregister();
        }
        // SAFETY: valid port id; callers stop workers before stopping ports.
        let rc = unsafe { dpdk_sys::rte_eth_dev_stop(self.id) };
        self.started = false;
        check(rc, || format!("port {}: stop", self.name)).map(|_| ())
    }

    /// Stops and closes the device, returning the mbufs its queues held to their pool.
    pub fn close(mut self) -> Result<(), DpdkError> {
        self.stop()?;
        // SAFETY: the port is stopped and no queue handle outlives the workers that were joined.
        let rc = unsafe { dpdk_sys::rte_eth_dev_close(self.id) };
        check(rc, || format!("port {}: close", self.name)).map(|_| ())
    }

    /// Link state without waiting.
    pub fn link(&self) -> LinkState {
        let mut l = dpdk_sys::rte_eth_link::default();
        // SAFETY: valid port id and out pointer.
        let rc = unsafe { dpdk_sys::rte_eth_link_get_nowait(self.id, &mut l) };
        if rc < 0 {
            return LinkState {
                up: false,
                speed_mbps: 0,
            };
        }
        LinkState {
            up: l.link_status() as u32 == dpdk_sys::RTE_ETH_LINK_UP,
            speed_mbps: l.link_speed,
        }
    }

    /// The port's MAC address.
    pub fn mac(&self) -> [u8; 6] {
        let mut a = dpdk_sys::rte_ether_addr::default();
        // SAFETY: valid port id and out pointer.
        let _ = unsafe { dpdk_sys::rte_eth_macaddr_get(self.id, &mut a) };
        a.addr_bytes
    }

    /// Driver counters (of a `net_vhost` port, with what its direct path moved added).
    pub fn stats(&self) -> PortStats {
        let mut s = dpdk_sys::rte_eth_stats::default();
        // SAFETY: valid port id and out pointer.
        let _ = unsafe { dpdk_sys::rte_eth_stats_get(self.id, &mut s) };
        // Plus what the direct vhost path moved past the PMD.
        let d = self.vhost_direct_counts().unwrap_or_default();
        PortStats {
            ipackets: s.ipackets + d.rx_packets,
            opackets: s.opackets + d.tx_packets,
            ibytes: s.ibytes + d.rx_bytes,
            obytes: s.obytes + d.tx_bytes,
            imissed: s.imissed,
            ierrors: s.ierrors,
            oerrors: s.oerrors,
            rx_nombuf: s.rx_nombuf,
        }
    }

    /// What the direct vhost path moved, for a port that has one.
    pub fn vhost_direct_counts(&self) -> Option<vhost::GateCounts> {
        self.vhost.as_ref().map(|g| g.counts())
    }

    /// The receive handle of queue `q`. The runtime hands each (port, queue) to exactly one
    /// worker; the handle is `Send` but not `Clone`.
    pub fn rx_queue(&self, q: u16) -> RxQueue {
        RxQueue {
            port: self.id,
            queue: q,
            vhost: self.vhost.clone(),
            _not_sync: PhantomData,
        }
    }

    /// The transmit handle of queue `q`, for exactly one worker.
    pub fn tx_queue(&self, q: u16) -> TxQueue {
        TxQueue {
            port: self.id,
            queue: q,
            vhost: self.vhost.clone(),
            _not_sync: PhantomData,
        }
    }
}

/// The receive side of one (port, queue), owned by one worker.
#[derive(Debug)]
pub struct RxQueue {
    port: u16,
    queue: u16,
    vhost: Option<Arc<VhostGate>>,
    _not_sync: PhantomData<std::cell::Cell<()>>,
}

/// The transmit side of one (port, queue), owned by one worker.
#[derive(Debug)]
pub struct TxQueue {
    port: u16,
    queue: u16,
    vhost: Option<Arc<VhostGate>>,
    _not_sync: PhantomData<std::cell::Cell<()>>,
}

impl RxQueue {
    /// DPDK port id.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Queue id.
    pub fn queue(&self) -> u16 {
        self.queue
    }

    /// Receives up to `max` packets (and at most the array's free capacity) into `out`;
    /// returns how many arrived.
    #[inline]
    pub fn rx_burst<const N: usize>(&mut self, out: &mut ArrayVec<Mbuf, N>, max: usize) -> usize {
        let room = out.remaining_capacity().min(max);
        if room == 0 {
            return 0;
        }
        if let Some(g) = &self.vhost {
            if !vhost::has_callbacks(self.port, self.queue, true) {
                return g.rx(vhost::rx_virtqueue(self.queue), out, room);
            }
            g.count_pmd_burst(vhost::rx_virtqueue(self.queue));
        }
        let len = out.len();
        // SAFETY: the queue is owned by this worker alone (not Sync, handed out once). The
        // packets land straight in the free tail of `out` (no staging array to clear):
        // `Mbuf` is `repr(transparent)` over a non-null `rte_mbuf` pointer, the tail has room
        // for `room` of them, rx_burst writes n <= room valid mbuf pointers that are now ours,
        // and the new length covers exactly those.
        unsafe {
            let tail = out.as_mut_ptr().add(len).cast::<*mut dpdk_sys::rte_mbuf>();
            let n = dpdk_sys::rte_eth_rx_burst(self.port, self.queue, tail, room as u16) as usize;
            out.set_len(len + n);
            n
        }
    }
}

impl TxQueue {
    /// DPDK port id.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Queue id.
    pub fn queue(&self) -> u16 {
        self.queue
    }

    /// Sends as many of `pkts` as the queue takes, from the front. What was sent leaves the
    /// vector; what was not stays in it, in order, for the caller to retry or drop.
    #[inline]
    pub fn tx_burst<const N: usize>(&mut self, pkts: &mut ArrayVec<Mbuf, N>) -> usize {
        if pkts.is_empty() {
            return 0;
        }
        if let Some(g) = &self.vhost {
            if !vhost::has_callbacks(self.port, self.queue, false) {
                return g.tx(vhost::tx_virtqueue(self.queue), pkts);
            }
            g.count_pmd_burst(vhost::tx_virtqueue(self.queue));
        }
        // Mbuf is repr(transparent) over NonNull<rte_mbuf>, so the vector is an array of
        // `struct rte_mbuf *`.
        let ptr = pkts.as_mut_ptr() as *mut *mut dpdk_sys::rte_mbuf;
        // SAFETY: the queue is owned by this worker alone; ptr points at len valid mbuf pointers.
        let sent =
            unsafe { dpdk_sys::rte_eth_tx_burst(self.port, self.queue, ptr, pkts.len() as u16) }
                as usize;
        // The driver owns the sent mbufs now: remove them without freeing.
        for m in pkts.drain(..sent) {
            let _ = m.into_raw();
        }
        sent
    }

    /// Sends `pkts`, retrying at most `retries` times while the queue is full, then frees what
    /// is left. Returns (sent, dropped).
    #[inline]
    pub fn tx_all<const N: usize>(
        &mut self,
        pkts: &mut ArrayVec<Mbuf, N>,
        retries: u32,
    ) -> (usize, usize) {
        let mut sent = self.tx_burst(pkts);
        let mut tries = 0;
        while !pkts.is_empty() && tries < retries {
            sent += self.tx_burst(pkts);
            tries += 1;
        }
        let dropped = pkts.len();
        if dropped != 0 {
            free_bulk(pkts);
        }
        (sent, dropped)
    }
}

/// Frees every mbuf in `pkts` with one bulk call (`rte_pktmbuf_free_bulk`). A fast path
/// that checks each mbuf's first cache line only and returns plain ones with one
/// `rte_mempool_put_bulk` (skipping the read of `next` in the second line) was measured in
/// the vhost benchmark's ACL pipeline: 213-215 -> 212 cycles/packet, not kept.
#[inline]
pub fn free_bulk<const N: usize>(pkts: &mut ArrayVec<Mbuf, N>) {
    let n = pkts.len();
    if n == 0 {
        return;
    }
    let ptr = pkts.as_mut_ptr() as *mut *mut dpdk_sys::rte_mbuf;
    // SAFETY: ptr points at n mbufs that we own; after the call they belong to their pools, so
    // the vector forgets them without running their destructors.
    unsafe {
        dpdk_sys::rte_pktmbuf_free_bulk(ptr, n as u32);
        pkts.set_len(0);
    }
}

impl Drop for Port {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}
