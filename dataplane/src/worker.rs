//! The poll-mode worker: one per lcore, owning its rx queues and one tx queue per port;
//! run to completion, never blocking, never allocating per packet.

use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;

use arrayvec::ArrayVec;

use crate::counters::{bump, PortCounters, WorkerCounters};
use crate::dpdk::port::free_bulk;
use crate::dpdk::{rdtsc, Mbuf, RxQueue, TxQueue};
use crate::plan::MAX_BURST;
use pipeline::{Graph, TxVectors};

/// One rx queue and where its packets go.
#[derive(Debug)]
pub struct RxBinding {
    /// The queue.
    pub queue: RxQueue,
    /// Our index of its port.
    pub port: usize,
    /// Our index of the port its packets are sent to (`None`: dropped as no-route).
    pub out: Option<usize>,
    /// Write the port id into each received mbuf (for PMDs that leave it unset, e.g. net_ring).
    pub stamp_port: bool,
}

/// How a worker turns a received burst into transmissions.
pub enum Forwarding {
    /// Each rx queue's burst goes to its binding's `out` port as it is.
    CrossConnect,
    /// Bursts run through this worker's own node graph, which fills per-port tx vectors.
    Graph(Box<Graph<Mbuf>>, TxVectors<Mbuf>),
}

impl std::fmt::Debug for Forwarding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Forwarding::CrossConnect => "CrossConnect",
            Forwarding::Graph(..) => "Graph",
        })
    }
}

/// Everything a worker owns.
#[derive(Debug)]
pub struct Worker {
    /// Cross-connect or a node graph.
    pub forwarding: Forwarding,
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
        let mut forwarding = std::mem::replace(&mut self.forwarding, Forwarding::CrossConnect);
        let mut pkts: ArrayVec<Mbuf, MAX_BURST> = ArrayVec::new();
        let burst = self.burst.min(MAX_BURST);
        let retries = self.tx_retries;
        let c = Arc::clone(&self.counters);
        let mut polls = 0u64;
        while !self.stop.load(Relaxed) {
            polls += 1;
            let mut idle = true;
            for b in self.rx.iter_mut() {
                let t0 = rdtsc();
                let n = b.queue.rx_burst(&mut pkts, burst);
                if n == 0 {
                    continue;
                }
                idle = false;
                bump(&c.ports[b.port].rx, n as u64);
                // One branch per burst, never per packet.
                match &mut forwarding {
                    Forwarding::CrossConnect => {
                        cross_connect(b, &mut pkts, &mut self.tx, &c, retries)
                    }
                    Forwarding::Graph(graph, txv) => {
                        through_graph(b, &mut pkts, graph, txv, &mut self.tx, &c, retries)
                    }
                }
                bump(&c.busy_polls, 1);
                bump(&c.busy_cycles, rdtsc().wrapping_sub(t0));
            }
            if idle {
                // Nothing arrived: the graph's nodes may serve a control request that
                // would otherwise wait for traffic (a connection-table sample).
                if let Forwarding::Graph(graph, _) = &mut forwarding {
                    graph.idle();
                }
            }
            if polls & 1023 == 0 {
                c.polls.store(polls, Relaxed);
            }
        }
        c.polls.store(polls, Relaxed);
        0
    }
}

/// Sends `pkts` on `tx` (bounded retries), counting what went and what was dropped.
#[inline(always)]
fn send<const N: usize>(
    tx: &mut TxQueue,
    pkts: &mut ArrayVec<Mbuf, N>,
    pc: &PortCounters,
    retries: u32,
) {
    let (sent, dropped) = tx.tx_all(pkts, retries);
    bump(&pc.tx, sent as u64);
    if dropped != 0 {
        bump(&pc.tx_dropped, dropped as u64);
    }
}

/// A burst goes to the binding's peer port as it is (or is dropped as no-route).
#[inline(always)]
fn cross_connect(
    b: &RxBinding,
    pkts: &mut ArrayVec<Mbuf, MAX_BURST>,
    tx: &mut [TxQueue],
    c: &WorkerCounters,
    retries: u32,
) {
    match b.out {
        Some(out) => send(&mut tx[out], pkts, &c.ports[out], retries),
        None => {
            bump(&c.ports[b.port].rx_no_route, pkts.len() as u64);
            free_bulk(pkts);
        }
    }
}

/// A burst runs through the worker's graph; each port's tx vector is then drained.
#[inline(always)]
fn through_graph(
    b: &RxBinding,
    pkts: &mut ArrayVec<Mbuf, MAX_BURST>,
    graph: &mut Graph<Mbuf>,
    txv: &mut TxVectors<Mbuf>,
    tx: &mut [TxQueue],
    c: &WorkerCounters,
    retries: u32,
) {
    if b.stamp_port {
        let id = b.queue.port();
        for m in pkts.iter_mut() {
            m.set_port(id);
        }
    }
    graph.process(pkts, txv);
    for (slot, q) in tx.iter_mut().enumerate() {
        let v = txv.pkts_mut(slot);
        if !v.is_empty() {
            send(q, v, &c.ports[slot], retries);
        }
    }
}
