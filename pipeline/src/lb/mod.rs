//! L4 load balancing: flow keys with stable hashing and Maglev consistent hashing.
//!
//! Per packet, the load balancer looks the flow up in the worker's
//! [`crate::conntrack::ConnTrack`]; on a miss it picks a backend with
//! [`Maglev::lookup`] on [`FlowKey::hash`] (for the configured [`HashMode`]) and inserts
//! the flow with that backend as payload. Both steps are allocation-free.

pub mod flow;
pub mod maglev;

#[cfg(test)]
mod bench;

pub use flow::{FlowKey, HashMode, IpFamily};
pub use maglev::{Backend, BackendId, BackendState, Maglev, MaglevError, DEFAULT_TABLE_SIZE};
