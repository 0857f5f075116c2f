//! Per-worker counters: written by one worker (no locks, no read-modify-write atomics),
//! read by the main lcore.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use serde::Serialize;

/// Adds `n` to a counter that only the calling worker writes: a plain load and store.
#[inline(always)]
pub fn bump(c: &AtomicU64, n: u64) {
    c.store(c.load(Relaxed).wrapping_add(n), Relaxed);
}

/// One worker's counters for one port, on a cache line of their own.
#[repr(align(64))]
#[derive(Debug, Default)]
pub struct PortCounters {
    /// Packets received from this port by the worker.
    pub rx: AtomicU64,
    /// Packets sent on this port by the worker.
    pub tx: AtomicU64,
    /// Packets the worker dropped because this port's tx queue stayed full.
    pub tx_dropped: AtomicU64,
    /// Packets received on this port and dropped because they had nowhere to go.
    pub rx_no_route: AtomicU64,
}

/// One worker's counters.
#[repr(align(64))]
#[derive(Debug, Default)]
pub struct WorkerCounters {
    /// Poll loop iterations.
    pub polls: AtomicU64,
    /// Iterations that received at least one packet.
    pub busy_polls: AtomicU64,
    /// TSC cycles spent on busy iterations (rx to tx).
    pub busy_cycles: AtomicU64,
    /// Per port, by port index.
    pub ports: Box<[PortCounters]>,
}

impl WorkerCounters {
    /// Counters for a worker that sees `nports` ports.
    pub fn new(nports: usize) -> Self {
        Self {
            ports: (0..nports).map(|_| PortCounters::default()).collect(),
            ..Default::default()
        }
    }

    /// A consistent-enough copy for reporting.
    pub fn snapshot(&self) -> WorkerSnapshot {
        let ports: Vec<PortSnapshot> = self
            .ports
            .iter()
            .map(|p| PortSnapshot {
                rx: p.rx.load(Relaxed),
                tx: p.tx.load(Relaxed),
                tx_dropped: p.tx_dropped.load(Relaxed),
                rx_no_route: p.rx_no_route.load(Relaxed),
            })
            .collect();
        let rx: u64 = ports.iter().map(|p| p.rx).sum();
        let busy_cycles = self.busy_cycles.load(Relaxed);
        WorkerSnapshot {
            polls: self.polls.load(Relaxed),
            busy_polls: self.busy_polls.load(Relaxed),
            busy_cycles,
            cycles_per_packet: if rx == 0 {
                0.0
            } else {
                busy_cycles as f64 / rx as f64
            },
            ports,
        }
    }
}

/// A copy of one worker's counters for one port.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct PortSnapshot {
    /// Packets received.
    pub rx: u64,
    /// Packets sent.
    pub tx: u64,
    /// Packets dropped on a full tx queue.
    pub tx_dropped: u64,
    /// Packets received and dropped for want of a route.
    pub rx_no_route: u64,
}

/// A copy of one worker's counters.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct WorkerSnapshot {
    /// Poll loop iterations.
    pub polls: u64,
    /// Iterations with packets.
    pub busy_polls: u64,
    /// Cycles on busy iterations.
    pub busy_cycles: u64,
    /// Busy cycles per received packet.
    pub cycles_per_packet: f64,
    /// Per port, by port index.
    pub ports: Vec<PortSnapshot>,
}
