//! Ports the graph can transmit on, and the per-port tx vectors the worker drains.

use super::vector::{PacketVector, VECTOR_SIZE};
use arrayvec::ArrayVec;
use serde::{Deserialize, Serialize};

/// A port known to the graph.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortInfo {
    /// The port id, as in [`crate::PacketBuf::in_port`] (the DPDK port id).
    pub index: u16,
    /// The port's name, referenced by node parameters (e.g. `pairs = [["fh0", "mh0"]]`).
    pub name: String,
    /// The port's role (e.g. `fronthaul`); parameters may reference a port by role when
    /// exactly one port has it.
    pub role: String,
    /// The port computes IPv4 header checksums on transmit (offload set up).
    pub tx_ipv4_csum: bool,
    /// The port computes TCP and UDP checksums on transmit (offload set up).
    pub tx_l4_csum: bool,
}

impl PortInfo {
    /// A port description.
    pub fn new(index: u16, name: impl Into<String>, role: impl Into<String>) -> Self {
        Self {
            index,
            name: name.into(),
            role: role.into(),
            tx_ipv4_csum: false,
            tx_l4_csum: false,
        }
    }

    /// The same port, with the checksums it computes on transmit.
    pub fn with_tx_csum(mut self, ipv4: bool, l4: bool) -> Self {
        self.tx_ipv4_csum = ipv4;
        self.tx_l4_csum = l4;
        self
    }
}

/// One tx vector per port, in the order of the `ports` the graph was built with
/// (that order's index is the "tx slot"). The graph appends; the worker drains with its
/// tx burst (and keeps or drops what the port did not take).
pub struct TxVectors<P> {
    ids: Vec<u16>,
    pub(crate) vecs: Vec<Box<PacketVector<P>>>,
}

impl<P> TxVectors<P> {
    /// Empty tx vectors for `ports`.
    pub fn new(ports: &[super::PortInfo]) -> Self {
        Self {
            ids: ports.iter().map(|p| p.index).collect(),
            vecs: ports.iter().map(|_| PacketVector::boxed()).collect(),
        }
    }

    /// Number of tx slots (ports).
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether there are no ports.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// The port id of a tx slot.
    pub fn port_id(&self, slot: usize) -> u16 {
        self.ids[slot]
    }

    /// The tx slot of a port id.
    pub fn slot_of(&self, port_id: u16) -> Option<usize> {
        self.ids.iter().position(|&i| i == port_id)
    }

    /// The packets queued on a tx slot.
    pub fn pkts_mut(&mut self, slot: usize) -> &mut ArrayVec<P, VECTOR_SIZE> {
        self.vecs[slot].pkts_mut()
    }

    /// The whole vector (packets and metadata) of a tx slot.
    pub fn vector_mut(&mut self, slot: usize) -> &mut PacketVector<P> {
        &mut self.vecs[slot]
    }

    /// Iterates over `(port id, packets)` for every slot.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = (u16, &mut ArrayVec<P, VECTOR_SIZE>)> {
        self.ids
            .iter()
            .copied()
            .zip(self.vecs.iter_mut().map(|v| v.pkts_mut()))
    }

    /// Total packets queued on all ports.
    pub fn total_len(&self) -> usize {
        self.vecs.iter().map(|v| v.len()).sum()
    }

    /// Drops every queued packet.
    pub fn clear(&mut self) {
        for v in &mut self.vecs {
            v.clear();
        }
    }
}
