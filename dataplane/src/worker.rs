//! The poll-mode worker: one per lcore, owning its rx queues and one tx queue per port;
//! run to completion, never blocking, never allocating per packet.

use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;

use arrayvec::ArrayVec;

use crate::counters::{bump, WorkerCounters};
use crate::dpdk::port::free_bulk;
use crate::dpdk::{rdtsc, Mbuf, RxQueue, TxQueue};
use crate::plan::MAX_BURST;

/// One rx queue and where its packets go.
#[derive(Debug)]
pub struct RxBinding {
    /// The queue.
    pub queue: RxQueue,
    /// Our index of its port.
    pub port: usize,
    /// Our index of the port its packets are sent to (`None`: dropped as no-route).
    pub out: Option<usize>,
}

/// Everything a worker owns.
#[derive(Debug)]
pub struct Worker {
    /// Its rx queues, polled round-robin.
    pub rx: Vec<RxBinding>,
    /// Its tx queue on every port, by port index.
    pub tx: Vec<TxQueue>,
    /// Its counters (read by the main lcore).
    pub counters: Arc<WorkerCounters>,
    /// Set by the main lcore to stop.
    pub stop: Arc<AtomicBool>,
    /// Packets per rx burst.
    pub burst: usize,
    /// Tx retries before dropping.
    pub tx_retries: u32,
}

impl Worker {
    /// Polls until `stop` is set. Returns 0.
    pub fn run(mut self) -> i32 {
        let mut pkts: ArrayVec<Mbuf, MAX_BURST> = ArrayVec::new();
        let burst = self.burst.min(MAX_BURST);
        let c = Arc::clone(&self.counters);
        let mut polls = 0u64;
        while !self.stop.load(Relaxed) {
            polls += 1;
            for b in self.rx.iter_mut() {
                let t0 = rdtsc();
                let n = b.queue.rx_burst(&mut pkts, burst);
                if n == 0 {
                    continue;
                }
                bump(&c.ports[b.port].rx, n as u64);
                match b.out {
                    Some(out) => {
                        let (sent, dropped) = self.tx[out].tx_all(&mut pkts, self.tx_retries);
                        let pc = &c.ports[out];
                        bump(&pc.tx, sent as u64);
                        if dropped != 0 {
                            bump(&pc.tx_dropped, dropped as u64);
                        }
                    }
                    None => {
                        free_bulk(&mut pkts);
                        bump(&c.ports[b.port].rx_no_route, n as u64);
                    }
                }
                bump(&c.busy_polls, 1);
                bump(&c.busy_cycles, rdtsc().wrapping_sub(t0));
            }
            if polls & 1023 == 0 {
                c.polls.store(polls, Relaxed);
            }
        }
        c.polls.store(polls, Relaxed);
        0
    }
}
