//! The live control interface (`dataplane ctl`, like `vppctl` and `ovs-appctl`): a unix
//! socket served by the main lcore's control loop, a command registry, and the commands.
//!
//! # Protocol
//! One request per line, one response per line, both JSON (UTF-8, `\n`-terminated):
//! - request: `{"argv": ["show", "runtime"]}`;
//! - response: `{"ok": true, "text": "<human table>", "data": <JSON>}` or
//!   `{"ok": false, "error": "<one-line reason>"}`.
//!
//! A client may send several requests on one connection, one after the other. Requests are
//! bounded ([`protocol::MAX_REQUEST`] bytes; a longer line is answered with an error and the
//! connection closed) and so is the time a client may take to send one
//! ([`server::REQUEST_TIMEOUT`]); at most [`server::MAX_CLIENTS`] are connected at once.
//!
//! # Who runs what
//! The server never blocks: the control loop calls [`ControlServer::serve`] on every pass
//! (every 10 ms), which accepts, reads and writes whatever the sockets allow without waiting,
//! and runs complete requests through the [`Registry`]. Commands run on the main lcore and
//! read what the workers publish (their counters, the graphs' stats and trace handles, the
//! ACL hubs and LB controls); they change the running policy only through the same hitless
//! paths as a reload (built here, adopted by each worker between bursts).
//!
//! Commands are registered by area (`runtime`, `ports`, `trace`, `acl`, `lb`, `reload`): each
//! area's module lists its own commands, and the server knows none of them.

pub mod client;
pub mod commands;
pub mod context;
pub mod protocol;
pub mod registry;
pub mod server;
pub mod telemetry;

pub use context::{ControlState, Ctx};
pub use protocol::{Request, Response};
pub use registry::{Command, Registry, Reply};
pub use server::ControlServer;

/// Folder of the default control sockets.
pub const SOCKET_DIR: &str = "/var/run/dataplane";

/// The default socket path of a dataplane started with EAL file prefix `prefix`.
pub fn default_socket_path(prefix: &str) -> std::path::PathBuf {
    std::path::Path::new(SOCKET_DIR).join(format!("{prefix}.sock"))
}
