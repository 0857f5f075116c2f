//! `null` (alias `empty`): passes every packet to its output untouched. Its clocks per packet
//! measure the graph's own per-vector overhead.

use crate::graph::{Decision, Frame, KindInfo, Node, Verdict};
use crate::PacketBuf;

/// The `null` node.
#[derive(Debug, Clone, Copy, Default)]
pub struct NullNode;

impl NullNode {
    /// Shape of the kind.
    pub const INFO: KindInfo = KindInfo {
        outputs: &["next"],
        drop_reasons: &[],
        counters: &[],
        transmits: false,
        fills_meta: false,
        description: "passes packets through unchanged (measures graph overhead)",
    };
}

impl<P: PacketBuf> Node<P> for NullNode {
    #[inline(always)]
    fn process(&mut self, _frame: Frame<'_, P>) -> Verdict {
        Verdict::All(Decision::Next(0))
    }
}
