//! L4 load balancing: flow keys with stable hashing, Maglev consistent hashing, the
//! service model, and the `lb` node (NAT mode, per-worker connection tracking).
//!
//! Per packet, the load balancer looks the flow up in the worker's
//! [`crate::conntrack::ConnTrack`]; on a miss it picks a backend with
//! [`Maglev::lookup`] on [`FlowKey::hash`] (for the configured [`HashMode`]) and inserts
//! the flow with that backend as payload. Both steps are allocation-free.
//!
//! - [`service`]: configuration (services, backends, conntrack settings) and the immutable
//!   runtime [`ServiceTable`].
//! - [`control`]: [`LbControl`], which builds tables off the workers and publishes them
//!   (hitless backend changes), and the per-service / per-backend counters.
//! - [`flows`]: a worker's flow state ([`LbFlows`]: connection table, service table in
//!   use), which an `acl` node before the `lb` node may share.
//! - [`node`]: the `lb` node kind.
//! - [`nat`]: the header rewrites (DNAT, reply un-NAT, RST) with checksum updates.
//! - [`icmp`]: ICMP errors about tracked connections, translated like their packets.

pub mod control;
pub mod flow;
pub mod flows;
pub mod icmp;
pub mod maglev;
pub mod nat;
pub mod node;
pub mod service;
pub mod traced;

#[cfg(test)]
mod bench;

pub use control::{BackendStats, EndpointStats, LbControl, LbStats, ServiceStats};
pub use flow::{FlowKey, HashMode, IpFamily};
pub use flows::LbFlows;
pub use maglev::{Backend, BackendId, BackendState, Maglev, MaglevError, DEFAULT_TABLE_SIZE};
pub use node::{register, register_with, LbClock, LbNode, NatEntry};
pub use service::{
    BackendConfig, BackendStatus, ConfigError, ConntrackConfig, DownPolicy, ForwardingMode,
    L4Protocol, LbConfig, MacString, ServiceConfig, ServiceTable,
};
