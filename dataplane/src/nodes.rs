//! The node kinds the dataplane's pipelines can use: the pipeline crate's built-ins (parse,
//! forward, macswap, drop, tap, null). Stages such as ACL and load balancing register here.

use pipeline::{PacketBuf, Registry};

/// The registry every worker's graph is built from.
pub fn registry<P: PacketBuf + 'static>() -> Registry<P> {
    Registry::with_builtins()
}
