//! `macswap`: swaps source and destination MAC addresses (like testpmd's macswap mode).

use crate::graph::{Decision, Frame, KindInfo, Node, Verdict};
use crate::PacketBuf;

/// The `macswap` node.
#[derive(Debug, Clone, Copy, Default)]
pub struct MacSwapNode;

impl MacSwapNode {
    /// Shape of the kind.
    pub const INFO: KindInfo = KindInfo {
        outputs: &["next"],
        drop_reasons: &["truncated-ethernet"],
        counters: &[],
        transmits: false,
        fills_meta: false,
        description: "swaps source and destination MAC addresses",
    };
}

impl<P: PacketBuf> Node<P> for MacSwapNode {
    fn process(&mut self, frame: Frame<'_, P>) -> Verdict {
        let mut all_ok = true;
        for (p, d) in frame.pkts.iter_mut().zip(frame.decisions.iter_mut()) {
            match p.data_mut().first_chunk_mut::<12>() {
                Some(macs) => {
                    let (dst, src) = macs.split_at_mut(6);
                    dst.swap_with_slice(src);
                    *d = Decision::Next(0);
                }
                None => {
                    *d = Decision::Drop(0);
                    all_ok = false;
                }
            }
        }
        if all_ok {
            Verdict::All(Decision::Next(0))
        } else {
            Verdict::PerPacket
        }
    }
}
