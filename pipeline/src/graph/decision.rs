//! What a node decides for a packet, and for a whole vector.

/// The fate of one packet after a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Continue at the node connected to this output slot (index into the kind's outputs).
    Next(u8),
    /// Transmit on this tx slot (index into the graph's ports, see [`super::TxVectors`]).
    Tx(u16),
    /// Drop, counted under this reason (index into the kind's drop reasons).
    Drop(u8),
}

impl Default for Decision {
    fn default() -> Self {
        Decision::Next(0)
    }
}

/// A node's answer for the vector it processed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Every packet gets this decision; the per-packet decisions are not read.
    /// The graph then moves the whole vector at once (an O(1) hand-off when it can).
    All(Decision),
    /// Each packet's decision is in the frame's `decisions` slice.
    PerPacket,
}
