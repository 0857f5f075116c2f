//! Counters written by one worker and read by any thread without locks.

use super::snapshot::{NamedCount, NodeSnapshot, RuntimeSnapshot};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

/// A 64-bit counter with a single writer. `add` is a relaxed load and store (no locked
/// read-modify-write); readers on other threads see a recent value.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Adds `n`. Only the owning worker may call this.
    #[inline(always)]
    pub fn add(&self, n: u64) {
        self.0.store(self.0.load(Relaxed).wrapping_add(n), Relaxed);
    }

    /// The current value.
    #[inline]
    pub fn get(&self) -> u64 {
        self.0.load(Relaxed)
    }
}

/// The counters of one node, on their own cache line(s).
#[derive(Debug)]
#[repr(align(64))]
pub struct NodeCounters {
    /// Times the node ran.
    pub calls: Counter,
    /// Vectors processed (one per call).
    pub vectors: Counter,
    /// Packets processed.
    pub packets: Counter,
    /// Cycles spent, from the end of the previous node to the end of this node's dispatch.
    pub cycles: Counter,
    drops: Box<[Counter]>,
    extra: Box<[Counter]>,
}

impl NodeCounters {
    /// Counters with `drop_reasons` drop slots and `extra` kind-specific counters.
    pub fn new(drop_reasons: usize, extra: usize) -> Self {
        Self {
            calls: Counter::default(),
            vectors: Counter::default(),
            packets: Counter::default(),
            cycles: Counter::default(),
            drops: (0..drop_reasons).map(|_| Counter::default()).collect(),
            extra: (0..extra).map(|_| Counter::default()).collect(),
        }
    }

    /// Records one call over `packets` packets taking `cycles`.
    #[inline(always)]
    pub fn record_call(&self, packets: usize, cycles: u64) {
        self.calls.add(1);
        self.vectors.add(1);
        self.packets.add(packets as u64);
        self.cycles.add(cycles);
    }

    /// Counts `n` drops under reason `code`; returns false if the code is out of range.
    #[inline(always)]
    pub fn add_drops(&self, code: usize, n: u64) -> bool {
        match self.drops.get(code) {
            Some(c) => {
                c.add(n);
                true
            }
            None => false,
        }
    }

    /// Adds `n` to kind-specific counter `idx` (ignored if out of range).
    #[inline(always)]
    pub fn add_extra(&self, idx: usize, n: u64) {
        if let Some(c) = self.extra.get(idx) {
            c.add(n);
        }
    }

    /// The drop counters, by reason code.
    pub fn drops(&self) -> &[Counter] {
        &self.drops
    }

    /// The kind-specific counters.
    pub fn extra(&self) -> &[Counter] {
        &self.extra
    }
}

/// Graph-wide counters.
#[derive(Debug, Default)]
#[repr(align(64))]
pub struct GraphCounters {
    /// Bursts run through the graph.
    pub bursts: Counter,
    /// Packets that entered the graph.
    pub rx_packets: Counter,
    /// Packets placed in tx vectors.
    pub tx_packets: Counter,
    /// Packets dropped by any node.
    pub dropped: Counter,
}

/// Names and counters of one node, for snapshots.
#[derive(Debug)]
pub(crate) struct NodeStats {
    pub name: String,
    pub kind: String,
    pub drop_reasons: Vec<&'static str>,
    pub counter_names: Vec<&'static str>,
    pub counters: NodeCounters,
}

/// All counters of one graph (one worker).
#[derive(Debug)]
pub struct GraphStats {
    pub(crate) nodes: Vec<NodeStats>,
    pub(crate) graph: GraphCounters,
}

impl GraphStats {
    pub(crate) fn new(nodes: Vec<NodeStats>) -> Self {
        Self {
            nodes,
            graph: GraphCounters::default(),
        }
    }

    /// The counters of the node at position `i` (in the graph's run order).
    #[inline(always)]
    pub fn node(&self, i: usize) -> &NodeCounters {
        &self.nodes[i].counters
    }

    /// The graph-wide counters.
    #[inline(always)]
    pub fn graph(&self) -> &GraphCounters {
        &self.graph
    }

    /// A consistent-enough copy of all counters.
    pub fn snapshot(&self) -> RuntimeSnapshot {
        let nodes = self
            .nodes
            .iter()
            .map(|n| NodeSnapshot {
                name: n.name.clone(),
                kind: n.kind.clone(),
                calls: n.counters.calls.get(),
                vectors: n.counters.vectors.get(),
                packets: n.counters.packets.get(),
                cycles: n.counters.cycles.get(),
                drops: named(&n.drop_reasons, n.counters.drops()),
                counters: named(&n.counter_names, n.counters.extra()),
            })
            .collect();
        RuntimeSnapshot {
            worker: String::new(),
            bursts: self.graph.bursts.get(),
            rx_packets: self.graph.rx_packets.get(),
            tx_packets: self.graph.tx_packets.get(),
            dropped: self.graph.dropped.get(),
            nodes,
        }
    }
}

fn named(names: &[&'static str], counters: &[Counter]) -> Vec<NamedCount> {
    names
        .iter()
        .zip(counters)
        .map(|(n, c)| NamedCount {
            name: n.to_string(),
            count: c.get(),
        })
        .collect()
}

/// A cloneable, `Send + Sync` handle to a graph's counters for other threads.
#[derive(Debug, Clone)]
pub struct StatsHandle(pub(crate) Arc<GraphStats>);

impl StatsHandle {
    /// A snapshot of the counters, with `worker` left empty for the caller to label.
    pub fn snapshot(&self) -> RuntimeSnapshot {
        self.0.snapshot()
    }

    /// A snapshot labelled with `worker`.
    pub fn snapshot_as(&self, worker: impl Into<String>) -> RuntimeSnapshot {
        let mut s = self.0.snapshot();
        s.worker = worker.into();
        s
    }
}
