//! Packet-processing pipeline: zero-copy packet views, nodes and the node graph.
//!
//! Everything here is generic over [`PacketBuf`], so it runs and tests without DPDK.
//! The dataplane implements [`PacketBuf`] for the DPDK mbuf.
//!
//! - [`wire`]: typed views over packet bytes and checksum helpers.
//! - [`meta`]: per-packet metadata filled by the `parse` node.
//! - [`flow_key`]: a packet's 5-tuple and its direction-free hash, read by the `acl` and
//!   `lb` stages and the connection table ([`conntrack`]) they share.
//! - [`graph`]: graph specs, the node-kind registry, and the vectorised runtime.
//! - [`nodes`]: built-in node kinds.
//! - [`stats`]: per-node counters and the `show runtime` table.
//! - [`trace`]: per-packet path tracing (`show trace`).
//! - [`ct_sample`]: connections sampled from the workers' tables (`show conntrack`).
//! - [`source`]: a built-in packet generator / pcap replayer for tests and benchmarks.
#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod acl;
pub mod buf;
pub mod conntrack;
pub mod ct_sample;
pub mod cycles;
pub mod filter_words;
pub mod flow_key;
pub mod graph;
pub mod icmp_error;
pub mod lb;
pub mod meta;
pub mod nodes;
pub mod reject;
pub mod source;
pub mod stats;
pub mod trace;
pub mod wire;

pub use buf::{CsumOffload, L4Csum, PacketBuf, TestBuf};
pub use ct_sample::{render_conntrack, CtEntryView, CtFilter, CtQuery, CtSample, CtSampler};
pub use graph::{
    BurstStats, Decision, EdgeSpec, Frame, Graph, GraphSpec, KindInfo, Node, NodeSpec, Params,
    PortInfo, Registry, SpecError, SpecErrorReason, TxVectors, Verdict, VECTOR_SIZE,
};
pub use meta::PacketMeta;
pub use stats::{render_runtime_table, RuntimeSnapshot, StatsHandle};
pub use trace::{render_trace, TraceHandle};
