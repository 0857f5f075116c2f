//! `drop`: drops every packet (counted under `dropped`).

use crate::graph::{Decision, Frame, KindInfo, Node, Verdict};
use crate::PacketBuf;

/// The `drop` node.
#[derive(Debug, Clone, Copy, Default)]
pub struct DropNode;

impl DropNode {
    /// Shape of the kind.
    pub const INFO: KindInfo = KindInfo {
        outputs: &[],
        drop_reasons: &["dropped"],
        counters: &[],
        transmits: false,
        fills_meta: false,
        description: "drops every packet",
    };
}

impl<P: PacketBuf> Node<P> for DropNode {
    #[inline(always)]
    fn process(&mut self, _frame: Frame<'_, P>) -> Verdict {
        Verdict::All(Decision::Drop(0))
    }
}
