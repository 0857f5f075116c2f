//! The interface every node kind implements.

use super::{Decision, Verdict};
use crate::meta::PacketMeta;
use crate::stats::NodeCounters;
use crate::PacketBuf;

/// One vector handed to a node: the packets, their metadata and a decision slot for each,
/// all of the same length, plus the node's counters (for kind-specific counters).
pub struct Frame<'a, P> {
    /// The packets.
    pub pkts: &'a mut [P],
    /// Their metadata, index for index.
    pub meta: &'a mut [PacketMeta],
    /// Per-packet decisions, read by the graph when the node returns [`Verdict::PerPacket`].
    pub decisions: &'a mut [Decision],
    /// The node's counters; nodes bump their extra counters with
    /// [`NodeCounters::add_extra`].
    pub counters: &'a NodeCounters,
    /// The graph's shared state (see [`super::SharedState`]).
    pub shared: &'a mut super::SharedState,
}

impl<P> Frame<'_, P> {
    /// Number of packets in the vector (at least 1: nodes are not called with empty vectors).
    #[inline]
    pub fn len(&self) -> usize {
        self.pkts.len()
    }

    /// Whether the vector is empty (never true when the graph calls a node).
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.pkts.is_empty()
    }
}

/// A node kind's vector function. Built-in kinds are dispatched through an enum
/// ([`crate::nodes::NodeImpl`]); other kinds may be boxed (`NodeImpl::Custom`), which costs
/// one indirect call per vector, never per packet.
pub trait Node<P: PacketBuf>: Send {
    /// Processes one vector and returns the decisions.
    fn process(&mut self, frame: Frame<'_, P>) -> Verdict;

    /// One step of a pending `show conntrack` sample of the node's connection table
    /// ([`crate::ct_sample`]); returns whether the node has more to do. The graph calls it,
    /// after a burst or from [`super::Graph::idle`], only while a sample was requested from
    /// one of its nodes or is under way, never per packet (nodes without a table do nothing).
    fn serve_ct(&mut self, _shared: &mut super::SharedState) -> bool {
        false
    }

    /// The handle through which the control side samples this node's connection table
    /// (`None`: the node has none).
    fn ct_sampler(&self) -> Option<crate::ct_sample::CtSampler> {
        None
    }

    /// Why the node decided what it did for packet `index` (metadata `meta`) of the vector
    /// it just processed: called by the tracer for traced packets only, right after
    /// [`Node::process`], never otherwise (`None`: the node has nothing to add).
    fn trace_note(
        &self,
        _index: usize,
        _meta: &crate::meta::PacketMeta,
    ) -> Option<crate::trace::TraceNote> {
        None
    }
}
