//! In-process packet capture of one port, both directions, into a pcapng file (what
//! `dpdk-dumpcap` and pdump do, without a secondary process), written with DPDK's own
//! `rte_pcapng` library.
//!
//! # How
//! [`Capture::start`] opens the file (`rte_pcapng_fdopen` writes the Section Header Block and
//! an Interface Description Block per ethdev port), creates a capture mempool and a
//! multi-producer ring of its own, and installs an ethdev rx and tx callback on every queue of
//! the port. The callbacks run on the workers, inside `rte_eth_rx_burst` /
//! `rte_eth_tx_burst` (a `net_vhost` queue leaves its direct path for the PMD while a
//! callback is installed, see [`super::vhost`]): each packet is copied with `rte_pcapng_copy`
//! into the capture pool and the copies are enqueued on the ring; a copy that finds the pool
//! empty or the ring full is dropped and counted. Nothing blocks, nothing touches the heap.
//!
//! The control loop calls [`Capture::poll`] every pass: it drains the ring into the file
//! (`rte_pcapng_write_packets`) and finishes the capture once its packet limit is written.
//! [`Capture::stop`] (and drop) removes the callbacks, waits until no worker is inside one
//! (a grace period, then an in-flight counter the callbacks raise around their work), writes
//! what is left and an Interface Statistics Block, closes the file and frees the pool, the
//! ring and the callbacks' memory.
//!
//! Like pdump's, the tx callback sees every packet handed to `rte_eth_tx_burst`: one that a
//! full device queue refused and the worker retried is captured once per attempt.

use std::ffi::{c_void, CString};
use std::os::fd::IntoRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::ptr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::{DpdkError, Port};

/// Capture copies the pool holds (and the ring can hold, minus one): what a capture can have
/// in flight between two control passes.
const POOL_SIZE: u32 = 4095;
/// Ring slots (a power of two).
const RING_SIZE: u32 = 4096;
/// The largest frame copied into one capture mbuf (longer ones take chained mbufs).
const SNAP_DATA: u32 = 2048;
/// Copies handled at once by a callback (a stack array; bursts are cut into chunks of it).
const CHUNK: usize = 64;
/// `RING_F_SC_DEQ` (rte_ring.h): single consumer, the control loop.
const RING_F_SC_DEQ: u32 = 0x0002;
/// How long the workers get to leave a removed callback before its memory is freed.
const GRACE: Duration = Duration::from_millis(10);
/// How long to wait for the in-flight counter after the grace period; past it the capture's
/// memory is leaked rather than freed under a worker.
const QUIESCE_LIMIT: Duration = Duration::from_secs(2);

/// What the callbacks share with the control loop (boxed: its address is the callbacks'
/// `user_param` and must not move).
struct Shared {
    port: u16,
    ring: *mut dpdk_sys::rte_ring,
    pool: *mut dpdk_sys::rte_mempool,
    /// Stop copying once this many copies were enqueued (0: no limit).
    limit: u64,
    /// Copies enqueued.
    accepted: AtomicU64,
    /// Packets not captured: no free copy in the pool, or no room in the ring.
    dropped: AtomicU64,
    /// Callbacks running now (raised on entry, lowered on exit).
    in_flight: AtomicU32,
}

/// The state of a capture.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CaptureState {
    /// Callbacks installed, packets flowing into the file.
    Running,
    /// Stopped (by `stop`, its packet limit, or a write error); the file is closed.
    Finished,
}

impl CaptureState {
    /// `running` or `finished` (as in the JSON).
    pub fn as_str(self) -> &'static str {
        match self {
            CaptureState::Running => "running",
            CaptureState::Finished => "finished",
        }
    }
}

/// Counts of a capture.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CaptureStatus {
    /// Running or finished.
    pub state: CaptureState,
    /// The DPDK port id captured.
    pub port_id: u16,
    /// The file written.
    pub file: PathBuf,
    /// The packet limit (`None`: until stopped).
    pub limit: Option<u64>,
    /// Packets written to the file so far.
    pub written: u64,
    /// Packets the capture could not keep (capture pool or ring full).
    pub dropped: u64,
    /// Why it ended early, if a write failed.
    pub error: Option<String>,
}

/// A capture of one port (see the module doc). Finishes on drop.
pub struct Capture {
    shared: Box<Shared>,
    file: PathBuf,
    pcapng: *mut dpdk_sys::rte_pcapng_t,
    rx_cbs: Vec<(u16, *const dpdk_sys::rte_eth_rxtx_callback)>,
    tx_cbs: Vec<(u16, *const dpdk_sys::rte_eth_rxtx_callback)>,
    written: u64,
    state: CaptureState,
    error: Option<String>,
    started_ns: u64,
}

impl std::fmt::Debug for Capture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Capture")
            .field("status", &self.status())
            .finish()
    }
}

// SAFETY: the raw pointers are a pcapng handle, a ring, a mempool and callback records that
// this value alone frees; the ring and mempool are thread-safe, the pcapng handle is used only
// by the thread that owns the capture.
unsafe impl Send for Capture {}

/// Names the capture's ring and pool uniquely within the process.
static SEQUENCE: AtomicU32 = AtomicU32::new(0);

fn wall_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

impl Capture {
    /// Starts capturing `port` (both directions, every queue) into `file` (created or
    /// truncated, mode 0640), until [`Capture::stop`] or, with `limit`, that many packets.
    pub fn start(port: &Port, file: &Path, limit: Option<u64>) -> Result<Capture, DpdkError> {
        let err = |what: &str, e: std::io::Error| {
            DpdkError::new(
                format!("{what} {}", file.display()),
                e.raw_os_error().unwrap_or(libc::EIO),
            )
        };
        let mut info = dpdk_sys::rte_eth_dev_info::default();
        // SAFETY: the port id is a probed, configured ethdev (a `Port` exists); info is a
        // valid out pointer.
        let rc = unsafe { dpdk_sys::rte_eth_dev_info_get(port.id(), &mut info) };
        super::check(rc, || format!("port {} info", port.name()))?;
        let (rxq, txq) = (info.nb_rx_queues, info.nb_tx_queues);

        let seq = SEQUENCE.fetch_add(1, Ordering::Relaxed);
        let pool_name = CString::new(format!("capture-pool-{seq}")).unwrap_or_default();
        let ring_name = CString::new(format!("capture-ring-{seq}")).unwrap_or_default();
        // SAFETY: no preconditions (arithmetic on the length).
        let data_room = unsafe { dpdk_sys::rte_pcapng_mbuf_size(SNAP_DATA) };
        let data_room = u16::try_from(data_room).unwrap_or(u16::MAX);
        // SAFETY: EAL is initialised (a `Port` exists); the name is a valid C string that DPDK
        // copies.
        let pool = unsafe {
            dpdk_sys::rte_pktmbuf_pool_create(
                pool_name.as_ptr(),
                POOL_SIZE,
                0,
                0,
                data_room,
                port.socket(),
            )
        };
        if pool.is_null() {
            return Err(DpdkError::last(format!(
                "capture mempool of {POOL_SIZE} mbufs of {data_room} bytes"
            )));
        }
        // SAFETY: as above; flags: multi-producer, single consumer.
        let ring = unsafe {
            dpdk_sys::rte_ring_create(ring_name.as_ptr(), RING_SIZE, port.socket(), RING_F_SC_DEQ)
        };
        if ring.is_null() {
            let e = DpdkError::last(format!("capture ring of {RING_SIZE}"));
            // SAFETY: the pool was created above and nothing uses it.
            unsafe { dpdk_sys::rte_mempool_free(pool) };
            return Err(e);
        }
        let free_both = || {
            // SAFETY: created above, unused by anyone (no callback installed yet).
            unsafe {
                dpdk_sys::rte_ring_free(ring);
                dpdk_sys::rte_mempool_free(pool);
            }
        };

        let f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o640)
            .open(file)
            .map_err(|e| {
                free_both();
                err("creating", e)
            })?;
        let fd = f.into_raw_fd();
        let os = CString::new(std::env::consts::OS).unwrap_or_default();
        let app = CString::new(format!("dataplane ({})", super::version())).unwrap_or_default();
        let comment = CString::new(format!("capture of port {}", port.name())).unwrap_or_default();
        // SAFETY: fd is an open file we own (handed to the library: rte_pcapng_close closes
        // it); the strings are valid C strings, read during the call only.
        let pcapng = unsafe {
            dpdk_sys::rte_pcapng_fdopen(
                fd,
                os.as_ptr(),
                ptr::null(),
                app.as_ptr(),
                comment.as_ptr(),
            )
        };
        if pcapng.is_null() {
            let e = DpdkError::last(format!("writing the pcapng header to {}", file.display()));
            // SAFETY: the library did not take the fd.
            unsafe { libc::close(fd) };
            free_both();
            return Err(e);
        }

        let shared = Box::new(Shared {
            port: port.id(),
            ring,
            pool,
            limit: limit.unwrap_or(0),
            accepted: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            in_flight: AtomicU32::new(0),
        });
        let mut cap = Capture {
            shared,
            file: file.to_path_buf(),
            pcapng,
            rx_cbs: Vec::with_capacity(usize::from(rxq)),
            tx_cbs: Vec::with_capacity(usize::from(txq)),
            written: 0,
            state: CaptureState::Running,
            error: None,
            started_ns: wall_ns(),
        };
        let param = std::ptr::addr_of!(*cap.shared) as *mut c_void;
        for q in 0..rxq {
            // SAFETY: a configured queue of a live port; the callback and its parameter (the
            // boxed Shared, which outlives the callback: see finish) are valid until removed.
            let cb = unsafe { dpdk_sys::rte_eth_add_rx_callback(port.id(), q, Some(on_rx), param) };
            if cb.is_null() {
                let e = DpdkError::last(format!("rx callback on {} queue {q}", port.name()));
                cap.finish();
                return Err(e);
            }
            cap.rx_cbs.push((q, cb));
        }
        for q in 0..txq {
            // SAFETY: as for rx.
            let cb = unsafe { dpdk_sys::rte_eth_add_tx_callback(port.id(), q, Some(on_tx), param) };
            if cb.is_null() {
                let e = DpdkError::last(format!("tx callback on {} queue {q}", port.name()));
                cap.finish();
                return Err(e);
            }
            cap.tx_cbs.push((q, cb));
        }
        Ok(cap)
    }

    /// Where it stands.
    pub fn status(&self) -> CaptureStatus {
        CaptureStatus {
            state: self.state,
            port_id: self.shared.port,
            file: self.file.clone(),
            limit: (self.shared.limit != 0).then_some(self.shared.limit),
            written: self.written,
            dropped: self.shared.dropped.load(Ordering::Relaxed),
            error: self.error.clone(),
        }
    }

    /// Whether it still runs.
    pub fn is_running(&self) -> bool {
        self.state == CaptureState::Running
    }

    /// Writes what the workers copied since the last call; finishes the capture once its
    /// limit is written. Returns the packets written by this call.
    pub fn poll(&mut self) -> u64 {
        if !self.is_running() {
            return 0;
        }
        let n = self.drain();
        if self.error.is_some() || (self.shared.limit != 0 && self.written >= self.shared.limit) {
            self.finish();
        }
        n
    }

    /// Stops (if running) and answers the final counts.
    pub fn stop(&mut self) -> CaptureStatus {
        self.finish();
        self.status()
    }

    /// Dequeues the ring into the file (at most the limit; copies past it are freed).
    fn drain(&mut self) -> u64 {
        let mut buf: [*mut dpdk_sys::rte_mbuf; CHUNK] = [ptr::null_mut(); CHUNK];
        let mut total = 0;
        // Bounded: at most what the ring holds now (the workers may keep adding).
        for _ in 0..(RING_SIZE as usize).div_ceil(CHUNK) {
            // SAFETY: the ring is live and this is its only consumer; buf has room for CHUNK
            // pointers.
            let n = unsafe {
                dpdk_sys::rte_ring_dequeue_burst(
                    self.shared.ring,
                    buf.as_mut_ptr().cast::<*mut c_void>(),
                    CHUNK as u32,
                    ptr::null_mut(),
                )
            } as usize;
            if n == 0 {
                break;
            }
            let room = if self.shared.limit == 0 {
                n
            } else {
                (self.shared.limit.saturating_sub(self.written) as usize).min(n)
            };
            if room > 0 && self.error.is_none() && !self.pcapng.is_null() {
                // SAFETY: the handle is open; buf holds `room` copies made by rte_pcapng_copy
                // (the library does not free them).
                let rc = unsafe {
                    dpdk_sys::rte_pcapng_write_packets(self.pcapng, buf.as_mut_ptr(), room as u16)
                };
                if rc < 0 {
                    self.error = Some(format!(
                        "writing {}: {}",
                        self.file.display(),
                        std::io::Error::last_os_error()
                    ));
                } else {
                    self.written += room as u64;
                    total += room as u64;
                }
            }
            // SAFETY: the n dequeued copies are ours alone; written or not, they go back.
            unsafe { dpdk_sys::rte_pktmbuf_free_bulk(buf.as_mut_ptr(), n as u32) };
        }
        total
    }

    /// Removes the callbacks, waits for the workers to leave them, writes what is left and
    /// the statistics, closes the file, frees the pool and ring. Idempotent.
    fn finish(&mut self) {
        if self.state == CaptureState::Finished {
            return;
        }
        self.state = CaptureState::Finished;
        let port = self.shared.port;
        for &(q, cb) in &self.rx_cbs {
            // SAFETY: cb was returned by rte_eth_add_rx_callback for this port and queue.
            unsafe { dpdk_sys::rte_eth_remove_rx_callback(port, q, cb) };
        }
        for &(q, cb) in &self.tx_cbs {
            // SAFETY: as above, for tx.
            unsafe { dpdk_sys::rte_eth_remove_tx_callback(port, q, cb) };
        }
        // A worker that read a callback before its removal may still run it: give it the
        // grace period of a burst (and then some), then wait for the in-flight count.
        std::thread::sleep(GRACE);
        let deadline = Instant::now() + QUIESCE_LIMIT;
        let mut quiet = false;
        while Instant::now() < deadline {
            if self.shared.in_flight.load(Ordering::SeqCst) == 0 {
                quiet = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        if quiet {
            // No further copies: write what is in the ring.
            let _ = self.drain_rest();
        }
        if !self.pcapng.is_null() {
            let dropped = self.shared.dropped.load(Ordering::Relaxed);
            // SAFETY: the handle is open; comment is null (optional).
            unsafe {
                dpdk_sys::rte_pcapng_write_stats(
                    self.pcapng,
                    port,
                    ptr::null(),
                    self.started_ns,
                    wall_ns(),
                    self.written + dropped,
                    dropped,
                );
                // SAFETY: closes the file and frees the handle, used by nobody else.
                dpdk_sys::rte_pcapng_close(self.pcapng);
            }
            self.pcapng = ptr::null_mut();
        }
        if !quiet {
            eprintln!(
                "warning: capture of port {port}: a worker is still in its callback after {:?}; leaking its pool and ring",
                GRACE + QUIESCE_LIMIT
            );
            self.rx_cbs.clear();
            self.tx_cbs.clear();
            // Leaked on purpose: a worker may still use them.
            let keep = Box::new(Shared {
                port,
                ring: ptr::null_mut(),
                pool: ptr::null_mut(),
                limit: self.shared.limit,
                accepted: AtomicU64::new(0),
                dropped: AtomicU64::new(self.shared.dropped.load(Ordering::Relaxed)),
                in_flight: AtomicU32::new(0),
            });
            let leaked = std::mem::replace(&mut self.shared, keep);
            Box::leak(leaked);
            return;
        }
        for (_, cb) in self.rx_cbs.drain(..).chain(self.tx_cbs.drain(..)) {
            // SAFETY: removed above and no worker is inside it (quiet); ethdev leaves the
            // record to the application to free with rte_free.
            unsafe { dpdk_sys::rte_free(cb as *mut c_void) };
        }
        // SAFETY: the ring is empty (drained) and nobody enqueues any more.
        unsafe { dpdk_sys::rte_ring_free(self.shared.ring) };
        // SAFETY: every copy was written and freed or freed; nobody allocates any more.
        let out = unsafe { dpdk_sys::rte_mempool_in_use_count(self.shared.pool) };
        if out == 0 {
            // SAFETY: as above, every mbuf is back.
            unsafe { dpdk_sys::rte_mempool_free(self.shared.pool) };
        } else {
            eprintln!("warning: capture pool has {out} mbufs out: leaking it");
        }
        self.shared.ring = ptr::null_mut();
        self.shared.pool = ptr::null_mut();
    }

    /// Drains the ring until empty (after the callbacks are gone).
    fn drain_rest(&mut self) -> u64 {
        let mut total = 0;
        loop {
            let n = self.drain();
            total += n;
            // SAFETY: the ring is live.
            if unsafe { dpdk_sys::rte_ring_count(self.shared.ring) } == 0 {
                return total;
            }
        }
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        self.finish();
    }
}

/// Copies a burst into the capture ring (the callbacks' common body). Runs on a worker.
///
/// # Safety
/// `sh` is the live `Shared` of a running capture; `pkts` points at `n` valid mbufs.
#[inline]
unsafe fn copy_burst(
    sh: &Shared,
    queue: u16,
    pkts: *mut *mut dpdk_sys::rte_mbuf,
    n: u16,
    direction: dpdk_sys::rte_pcapng_direction,
) {
    sh.in_flight.fetch_add(1, Ordering::SeqCst);
    if sh.limit == 0 || sh.accepted.load(Ordering::Relaxed) < sh.limit {
        let now = super::rdtsc();
        let mut copies: [*mut dpdk_sys::rte_mbuf; CHUNK] = [ptr::null_mut(); CHUNK];
        let mut i = 0usize;
        let n = usize::from(n);
        while i < n {
            let end = (i + CHUNK).min(n);
            let mut k = 0usize;
            let mut lost = 0u64;
            for j in i..end {
                // SAFETY: pkts[j] is a valid mbuf of the burst (caller); the pool is live.
                let c = unsafe {
                    dpdk_sys::rte_pcapng_copy(
                        sh.port,
                        u32::from(queue),
                        *pkts.add(j),
                        sh.pool,
                        u32::MAX,
                        now,
                        direction,
                    )
                };
                if c.is_null() {
                    lost += 1;
                } else {
                    copies[k] = c;
                    k += 1;
                }
            }
            // SAFETY: the ring is live and multi-producer; copies holds k valid mbufs.
            let put = unsafe {
                dpdk_sys::rte_ring_enqueue_burst(
                    sh.ring,
                    copies.as_ptr().cast::<*mut c_void>(),
                    k as u32,
                    ptr::null_mut(),
                )
            } as usize;
            if put < k {
                // SAFETY: the copies the ring did not take are still ours.
                unsafe {
                    dpdk_sys::rte_pktmbuf_free_bulk(copies.as_mut_ptr().add(put), (k - put) as u32)
                };
                lost += (k - put) as u64;
            }
            if lost != 0 {
                sh.dropped.fetch_add(lost, Ordering::Relaxed);
            }
            sh.accepted.fetch_add(put as u64, Ordering::Relaxed);
            i = end;
        }
    }
    sh.in_flight.fetch_sub(1, Ordering::SeqCst);
}

/// The rx callback: copies what was received; passes the burst on unchanged.
unsafe extern "C" fn on_rx(
    _port: u16,
    queue: u16,
    pkts: *mut *mut dpdk_sys::rte_mbuf,
    nb_pkts: u16,
    _max: u16,
    param: *mut c_void,
) -> u16 {
    if nb_pkts != 0 {
        // SAFETY: param is the Shared this callback was installed with (alive until the
        // callback is removed and quiet); ethdev passes the burst's nb_pkts valid mbufs.
        unsafe {
            copy_burst(
                &*(param as *const Shared),
                queue,
                pkts,
                nb_pkts,
                dpdk_sys::RTE_PCAPNG_DIRECTION_IN,
            )
        };
    }
    nb_pkts
}

/// The tx callback: copies what is about to be sent; passes the burst on unchanged.
unsafe extern "C" fn on_tx(
    _port: u16,
    queue: u16,
    pkts: *mut *mut dpdk_sys::rte_mbuf,
    nb_pkts: u16,
    param: *mut c_void,
) -> u16 {
    if nb_pkts != 0 {
        // SAFETY: as in on_rx.
        unsafe {
            copy_burst(
                &*(param as *const Shared),
                queue,
                pkts,
                nb_pkts,
                dpdk_sys::RTE_PCAPNG_DIRECTION_OUT,
            )
        };
    }
    nb_pkts
}
