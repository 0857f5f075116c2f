//! The vectorised node graph (VPP style).
//!
//! A [`GraphSpec`] (nodes with a kind and parameters, and edges) is validated against a
//! [`Registry`] of node kinds and built into a [`Graph`] for one worker. The worker hands
//! each rx burst to [`Graph::process`] (or fills [`Graph::rx_vector`] and calls
//! [`Graph::run`]); every node processes its whole vector at once and decides per packet
//! a next node, a drop reason or an output port; packets then move into the next nodes'
//! pre-allocated vectors, and finally into the caller's [`TxVectors`].
//!
//! ```
//! use arrayvec::ArrayVec;
//! use pipeline::graph::{Decision, Frame, KindInfo, Node, Verdict};
//! use pipeline::nodes::{NodeImpl, NoParams};
//! use pipeline::{Graph, GraphSpec, PortInfo, Registry, TestBuf};
//!
//! // A new kind plugs in by name: its parameters are a `Deserialize` struct.
//! struct DecTtl;
//! impl Node<TestBuf> for DecTtl {
//!     fn process(&mut self, f: Frame<'_, TestBuf>) -> Verdict {
//!         for m in f.meta.iter_mut() {
//!             m.ttl = m.ttl.saturating_sub(1);
//!         }
//!         Verdict::All(Decision::Next(0))
//!     }
//! }
//! let mut registry = Registry::<TestBuf>::with_builtins();
//! let info = KindInfo {
//!     outputs: &["next"],
//!     drop_reasons: &[],
//!     counters: &[],
//!     transmits: false,
//!     fills_meta: false,
//!     description: "decrements the TTL in the metadata",
//! };
//! registry
//!     .register::<NoParams, _>("dec-ttl", info, |_, _| Ok(NodeImpl::Custom(Box::new(DecTtl))))
//!     .unwrap();
//!
//! let spec = GraphSpec::from_toml(r#"
//!     [[nodes]]
//!     name = "parse"
//!     kind = "parse"
//!     [[nodes]]
//!     name = "ttl"
//!     kind = "dec-ttl"
//!     [[nodes]]
//!     name = "xc"
//!     kind = "forward"
//!     params = { mode = "cross-connect", pairs = [["fh0", "mh0"]] }
//!     [[edges]]
//!     from = "parse"
//!     to = "ttl"
//!     [[edges]]
//!     from = "ttl"
//!     to = "xc"
//! "#).unwrap();
//! let ports = [PortInfo::new(0, "fh0", "fronthaul"), PortInfo::new(1, "mh0", "midhaul")];
//! let mut graph = Graph::build(&spec, &registry, &ports).unwrap();
//! let mut tx = graph.new_tx_vectors();
//!
//! // One rx burst: a frame from the packet source arriving on port 0.
//! let frame = pipeline::source::build_frame(&Default::default(), 0);
//! let mut rx: ArrayVec<TestBuf, 32> = ArrayVec::new();
//! rx.push(TestBuf::new(frame, 0));
//! let burst = graph.process(&mut rx, &mut tx);
//! assert_eq!(burst.tx, 1);
//! for (port_id, pkts) in tx.iter_mut() {
//!     // The worker's tx burst goes here; unsent packets stay (or are dropped).
//!     assert_eq!(pkts.len(), usize::from(port_id == 1));
//!     pkts.clear();
//! }
//! println!("{}", pipeline::render_runtime_table(&[graph.snapshot()]));
//! ```

mod decision;
mod node;
mod params;
mod port;
mod registry;
mod runtime;
mod shared;
mod spec;
mod validate;
mod vector;

pub use decision::{Decision, Verdict};
pub use node::{Frame, Node};
pub use params::{struct_fields, Params};
pub use port::{PortInfo, TxVectors};
pub use registry::{BuildContext, KindInfo, ParamError, Registry, RegistryError};
pub use runtime::{BurstStats, Graph, GRAPH_DROP_REASONS};
pub use shared::{SharedError, SharedState};
pub use spec::{EdgeSpec, GraphSpec, NodeSpec, SpecError, SpecErrorReason};
pub use vector::{PacketVector, VECTOR_SIZE};
