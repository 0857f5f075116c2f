//! `tap`: counts packets and bytes (by IP version, from the metadata `parse` filled) and
//! passes them through, for debugging.

use crate::graph::{Decision, Frame, KindInfo, Node, Verdict};
use crate::PacketBuf;

/// The `tap` node.
#[derive(Debug, Clone, Copy, Default)]
pub struct TapNode;

impl TapNode {
    /// Shape of the kind.
    pub const INFO: KindInfo = KindInfo {
        outputs: &["next"],
        drop_reasons: &[],
        counters: &["bytes", "ipv4", "ipv6", "non-ip"],
        transmits: false,
        fills_meta: false,
        description: "counts packets and bytes and passes them through",
    };
}

impl<P: PacketBuf> Node<P> for TapNode {
    fn process(&mut self, frame: Frame<'_, P>) -> Verdict {
        let (mut bytes, mut v4, mut v6, mut other) = (0u64, 0u64, 0u64, 0u64);
        for (p, m) in frame.pkts.iter().zip(frame.meta.iter()) {
            bytes += p.data().len() as u64;
            match m.ip_version {
                4 => v4 += 1,
                6 => v6 += 1,
                _ => other += 1,
            }
        }
        let c = frame.counters;
        c.add_extra(0, bytes);
        c.add_extra(1, v4);
        c.add_extra(2, v6);
        c.add_extra(3, other);
        Verdict::All(Decision::Next(0))
    }
}
