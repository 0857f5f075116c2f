//! Built-in node kinds and the enum the graph dispatches through (one `match` per vector).

pub mod drop;
pub mod forward;
pub mod macswap;
pub mod null;
pub mod parse;
pub mod tap;

use crate::graph::{Frame, Node, Registry, Verdict};
use crate::PacketBuf;
use serde::Deserialize;

pub use drop::DropNode;
pub use forward::{ForwardMode, ForwardNode, ForwardParams};
pub use macswap::MacSwapNode;
pub use null::NullNode;
pub use parse::{parse_packet, FragmentPolicy, ParseConfig, ParseDrop, ParseNode};
pub use tap::TapNode;

/// Parameters of kinds that take none.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoParams {}

/// A node of any kind. Built-in kinds are variants (statically dispatched and inlinable);
/// other kinds can be boxed in [`NodeImpl::Custom`] (one indirect call per vector).
pub enum NodeImpl<P: PacketBuf> {
    /// `parse`.
    Parse(ParseNode),
    /// `forward`.
    Forward(ForwardNode),
    /// `macswap`.
    MacSwap(MacSwapNode),
    /// `drop`.
    Drop(DropNode),
    /// `tap`.
    Tap(TapNode),
    /// `null` / `empty`.
    Null(NullNode),
    /// Any other kind.
    Custom(Box<dyn Node<P>>),
}

impl<P: PacketBuf> NodeImpl<P> {
    /// Processes one vector with the node's kind.
    #[inline(always)]
    pub fn process(&mut self, frame: Frame<'_, P>) -> Verdict {
        match self {
            NodeImpl::Parse(n) => n.process(frame),
            NodeImpl::Forward(n) => n.process(frame),
            NodeImpl::MacSwap(n) => n.process(frame),
            NodeImpl::Drop(n) => n.process(frame),
            NodeImpl::Tap(n) => n.process(frame),
            NodeImpl::Null(n) => n.process(frame),
            NodeImpl::Custom(n) => n.process(frame),
        }
    }

    /// [`Node::serve_ct`] of the node's kind (built-in kinds keep no state: nothing to do).
    pub fn serve_ct(&mut self, shared: &mut crate::graph::SharedState) -> bool {
        match self {
            NodeImpl::Custom(n) => n.serve_ct(shared),
            _ => false,
        }
    }

    /// [`Node::ct_sampler`] of the node's kind (built-in kinds have no connection table).
    pub fn ct_sampler(&self) -> Option<crate::ct_sample::CtSampler> {
        match self {
            NodeImpl::Custom(n) => n.ct_sampler(),
            _ => None,
        }
    }

    /// [`Node::trace_note`] of the node's kind (built-in kinds add nothing).
    pub fn trace_note(
        &self,
        index: usize,
        meta: &crate::meta::PacketMeta,
    ) -> Option<crate::trace::TraceNote> {
        match self {
            NodeImpl::Custom(n) => n.trace_note(index, meta),
            _ => None,
        }
    }
}

/// Registers the built-in kinds: `parse`, `forward`, `macswap`, `drop`, `tap`, `null`
/// and its alias `empty`.
pub fn register_builtins<P: PacketBuf + 'static>(r: &mut Registry<P>) {
    let results = [
        r.register::<parse::ParseParams, _>("parse", ParseNode::INFO, |p, _| {
            Ok(NodeImpl::Parse(ParseNode::new(p.into())))
        }),
        r.register::<ForwardParams, _>("forward", ForwardNode::INFO, |p, ctx| {
            Ok(NodeImpl::Forward(ForwardNode::new(&p, ctx)?))
        }),
        r.register::<NoParams, _>("macswap", MacSwapNode::INFO, |_, _| {
            Ok(NodeImpl::MacSwap(MacSwapNode))
        }),
        r.register::<NoParams, _>("drop", DropNode::INFO, |_, _| Ok(NodeImpl::Drop(DropNode))),
        r.register::<NoParams, _>("tap", TapNode::INFO, |_, _| Ok(NodeImpl::Tap(TapNode))),
        r.register::<NoParams, _>("null", NullNode::INFO, |_, _| Ok(NodeImpl::Null(NullNode))),
        r.register::<NoParams, _>("empty", NullNode::INFO, |_, _| Ok(NodeImpl::Null(NullNode))),
    ];
    for res in results {
        res.expect("built-in kinds register once");
    }
}
