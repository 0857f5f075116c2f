//! Serialisable copies of the counters, with the derived per-packet figures.

use serde::{Deserialize, Serialize};

/// A named count (a drop reason or a kind-specific counter).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamedCount {
    /// The name.
    pub name: String,
    /// The count.
    pub count: u64,
}

/// One node's counters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeSnapshot {
    /// Node name.
    pub name: String,
    /// Node kind.
    pub kind: String,
    /// Times the node ran.
    pub calls: u64,
    /// Vectors processed.
    pub vectors: u64,
    /// Packets processed.
    pub packets: u64,
    /// TSC cycles spent.
    pub cycles: u64,
    /// Drops per reason.
    pub drops: Vec<NamedCount>,
    /// Kind-specific counters.
    pub counters: Vec<NamedCount>,
}

impl NodeSnapshot {
    /// All drops of the node.
    pub fn total_drops(&self) -> u64 {
        self.drops.iter().map(|d| d.count).sum()
    }

    /// Drops under one reason (0 if the node has no such reason).
    pub fn drops_for(&self, reason: &str) -> u64 {
        self.drops
            .iter()
            .find(|d| d.name == reason)
            .map_or(0, |d| d.count)
    }

    /// A kind-specific counter by name (0 if the node has no such counter).
    pub fn counter(&self, name: &str) -> u64 {
        self.counters
            .iter()
            .find(|c| c.name == name)
            .map_or(0, |c| c.count)
    }

    /// Cycles per packet.
    pub fn clocks_per_packet(&self) -> f64 {
        ratio(self.cycles, self.packets)
    }

    /// Packets per vector (VPP's "Vectors/Call").
    pub fn packets_per_vector(&self) -> f64 {
        ratio(self.packets, self.vectors)
    }

    fn add(&mut self, o: &NodeSnapshot) {
        self.calls += o.calls;
        self.vectors += o.vectors;
        self.packets += o.packets;
        self.cycles += o.cycles;
        add_named(&mut self.drops, &o.drops);
        add_named(&mut self.counters, &o.counters);
    }

    fn sub(&mut self, o: &NodeSnapshot) {
        self.calls = self.calls.saturating_sub(o.calls);
        self.vectors = self.vectors.saturating_sub(o.vectors);
        self.packets = self.packets.saturating_sub(o.packets);
        self.cycles = self.cycles.saturating_sub(o.cycles);
        for list in [
            (&mut self.drops, &o.drops),
            (&mut self.counters, &o.counters),
        ] {
            for d in list.0.iter_mut() {
                if let Some(e) = list.1.iter().find(|e| e.name == d.name) {
                    d.count = d.count.saturating_sub(e.count);
                }
            }
        }
    }
}

fn add_named(into: &mut Vec<NamedCount>, from: &[NamedCount]) {
    for f in from {
        match into.iter_mut().find(|d| d.name == f.name) {
            Some(d) => d.count += f.count,
            None => into.push(f.clone()),
        }
    }
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}

/// All counters of one graph (one worker), or the sum over workers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuntimeSnapshot {
    /// Worker label ("" unless set by the caller; "total" for an aggregate).
    pub worker: String,
    /// Bursts run.
    pub bursts: u64,
    /// Packets that entered the graph.
    pub rx_packets: u64,
    /// Packets placed in tx vectors.
    pub tx_packets: u64,
    /// Packets dropped.
    pub dropped: u64,
    /// Per-node counters, in run order.
    pub nodes: Vec<NodeSnapshot>,
}

impl RuntimeSnapshot {
    /// The node named `name`.
    pub fn node(&self, name: &str) -> Option<&NodeSnapshot> {
        self.nodes.iter().find(|n| n.name == name)
    }

    /// The counts accumulated since `earlier` (a snapshot of the same graph).
    pub fn delta(&self, earlier: &RuntimeSnapshot) -> RuntimeSnapshot {
        let mut d = self.clone();
        d.bursts = d.bursts.saturating_sub(earlier.bursts);
        d.rx_packets = d.rx_packets.saturating_sub(earlier.rx_packets);
        d.tx_packets = d.tx_packets.saturating_sub(earlier.tx_packets);
        d.dropped = d.dropped.saturating_sub(earlier.dropped);
        for n in &mut d.nodes {
            if let Some(e) = earlier.node(&n.name) {
                n.sub(e);
            }
        }
        d
    }
}

/// Sums snapshots of several workers node by node (matched by name, in order of first
/// appearance). The result's `worker` is `"total"`.
pub fn aggregate(workers: &[RuntimeSnapshot]) -> RuntimeSnapshot {
    let mut total = RuntimeSnapshot {
        worker: "total".into(),
        ..Default::default()
    };
    for w in workers {
        total.bursts += w.bursts;
        total.rx_packets += w.rx_packets;
        total.tx_packets += w.tx_packets;
        total.dropped += w.dropped;
        for n in &w.nodes {
            match total.nodes.iter_mut().find(|t| t.name == n.name) {
                Some(t) => t.add(n),
                None => total.nodes.push(n.clone()),
            }
        }
    }
    total
}
