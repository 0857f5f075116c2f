//! `forward`: the terminal node that places packets on output ports.
//!
//! - `mode = "cross-connect"`, `pairs = [["fh0", "mh0"], ...]`: a packet received on one port
//!   of a pair leaves on the other (both directions). A pair of one port twice hairpins.
//! - `mode = "by-metadata"`: a packet leaves on the port whose id is in `meta.out_port`.
//!
//! Ports are named by [`crate::graph::PortInfo`] name (or a role only one port has).

use crate::graph::{BuildContext, Decision, Frame, KindInfo, Node, ParamError, Verdict};
use crate::meta::PacketMeta;
use crate::PacketBuf;
use serde::Deserialize;

/// How `forward` picks the output port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ForwardMode {
    /// By the input port, through the `pairs` map.
    CrossConnect,
    /// By `meta.out_port`.
    ByMetadata,
}

/// Parameters of `forward`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForwardParams {
    /// The mode.
    pub mode: ForwardMode,
    /// Port pairs for `cross-connect`.
    #[serde(default)]
    pub pairs: Vec<[String; 2]>,
}

const NO_SLOT: u16 = u16::MAX;
const DROP_NO_PAIR: u8 = 0;
const DROP_UNKNOWN_PORT: u8 = 1;

/// The `forward` node.
#[derive(Debug, Clone)]
pub struct ForwardNode {
    mode: ForwardMode,
    /// Port id (input port for cross-connect, `out_port` for by-metadata) -> tx slot.
    table: Box<[u16]>,
}

impl ForwardNode {
    /// Shape of the kind.
    pub const INFO: KindInfo = KindInfo {
        outputs: &[],
        drop_reasons: &["no-cross-connect", "unknown-out-port"],
        counters: &[],
        transmits: true,
        fills_meta: false,
        description: "places packets on output ports (cross-connect pairs or meta.out_port)",
    };

    /// Builds the node, resolving port names against the graph's ports.
    pub fn new(p: &ForwardParams, ctx: &BuildContext<'_>) -> Result<Self, ParamError> {
        let size = ctx
            .ports
            .iter()
            .map(|p| usize::from(p.index) + 1)
            .max()
            .unwrap_or(0);
        let mut table = vec![NO_SLOT; size].into_boxed_slice();
        match p.mode {
            ForwardMode::ByMetadata => {
                if !p.pairs.is_empty() {
                    return Err(ParamError::new(
                        "pairs",
                        "`pairs` is only used with mode = \"cross-connect\"",
                    ));
                }
                for (slot, port) in ctx.ports.iter().enumerate() {
                    table[usize::from(port.index)] = slot as u16;
                }
            }
            ForwardMode::CrossConnect => {
                if p.pairs.is_empty() {
                    return Err(ParamError::new(
                        "pairs",
                        "cross-connect needs at least one pair, e.g. pairs = [[\"fh0\", \"mh0\"]]",
                    ));
                }
                let resolve = |name: &str| {
                    ctx.port_slot(name)
                        .ok_or_else(|| ParamError::new("pairs", format!("unknown port `{name}`")))
                };
                for [a, b] in &p.pairs {
                    let (sa, sb) = (resolve(a)?, resolve(b)?);
                    let (ia, ib) = (
                        usize::from(ctx.ports[sa].index),
                        usize::from(ctx.ports[sb].index),
                    );
                    if table[ia] != NO_SLOT || (ia != ib && table[ib] != NO_SLOT) {
                        return Err(ParamError::new(
                            "pairs",
                            format!("port in more than one pair: [\"{a}\", \"{b}\"]"),
                        ));
                    }
                    table[ia] = sb as u16;
                    table[ib] = sa as u16;
                }
            }
        }
        Ok(Self {
            mode: p.mode,
            table,
        })
    }

    #[inline(always)]
    fn decide(&self, port: u16, missing: u8) -> Decision {
        match self.table.get(usize::from(port)) {
            Some(&slot) if slot != NO_SLOT => Decision::Tx(slot),
            _ => Decision::Drop(missing),
        }
    }

    #[inline(always)]
    fn decide_all<P: PacketBuf>(
        &self,
        frame: Frame<'_, P>,
        key: impl Fn(&P, &PacketMeta) -> u16,
        missing: u8,
    ) -> Verdict {
        let first = self.decide(key(&frame.pkts[0], &frame.meta[0]), missing);
        let mut uniform = true;
        for ((p, m), d) in frame
            .pkts
            .iter()
            .zip(frame.meta.iter())
            .zip(frame.decisions.iter_mut())
        {
            *d = self.decide(key(p, m), missing);
            uniform &= *d == first;
        }
        if uniform {
            Verdict::All(first)
        } else {
            Verdict::PerPacket
        }
    }
}

impl<P: PacketBuf> Node<P> for ForwardNode {
    fn process(&mut self, frame: Frame<'_, P>) -> Verdict {
        if frame.is_empty() {
            return Verdict::PerPacket;
        }
        match self.mode {
            ForwardMode::CrossConnect => self.decide_all(frame, |p, _| p.in_port(), DROP_NO_PAIR),
            ForwardMode::ByMetadata => self.decide_all(frame, |_, m| m.out_port, DROP_UNKNOWN_PORT),
        }
    }
}
