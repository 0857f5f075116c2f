//! Per-node runtime counters (single writer, lock-free readers), their serialisable
//! snapshots, and a VPP `show runtime`-style table.

pub(crate) mod counters;
mod snapshot;
mod table;

pub use counters::{Counter, GraphCounters, GraphStats, NodeCounters, StatsHandle};
pub use snapshot::{aggregate, NamedCount, NodeSnapshot, RuntimeSnapshot};
pub use table::{render_drops_table, render_runtime_table};
