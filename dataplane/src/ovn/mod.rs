//! A read-only replica of the OVN Northbound database, followed live.
//!
//! Written on `serde_json` rather than on a crate: no Rust crate implements OVS's
//! `monitor_cond_since`/`update3`, TLS remotes or a reconnecting replica (the `ovsdb` and
//! `ovsdb-client` crates speak plain `monitor` over TCP/unix only), and the part we need is
//! small: framing, typed datums and the update2 diff rules, one session state machine.
//!
//! Protocol flow of one session ([`client`]), as OVS's ovsdb-cs does it:
//!
//! 1. connect to the next remote ([`remote`], [`stream`]: `unix:`, `tcp:`, `ssl:` with mutual
//!    TLS and no hostname check);
//! 2. `get_schema ["_Server"]` and `monitor_cond` on `_Server.Database`: a clustered server
//!    that has not joined, is cut off from its cluster, or shows a raft index lower than one
//!    already seen is refused (the next remote is tried);
//! 3. `get_schema [OVN_Northbound]`: only the wanted tables and the columns this server has are
//!    monitored (older and newer schemas both work);
//! 4. `monitor_cond_since [db, "db", {table: [{columns}]}, last-txn-id]` (the zero UUID the
//!    first time); a server that refuses it gets `monitor_cond`. The reply is
//!    `[found, last-txn-id, table-updates2]`: `found` = only what changed since our id;
//!    otherwise the full contents, which replace the [`replica`] and yield as change set only
//!    the difference from what we had (a resync that changed nothing yields nothing);
//! 5. `set_db_change_aware [true]`, then `update3 [id, txn-id, updates]` (or `update2`) per
//!    transaction, each applied and handed on as a [`replica::ChangeSet`];
//! 6. on any loss: the replica is kept, every remote gets one free try (the lost one last),
//!    then rounds wait 1 s, 2 s, 4 s, 8 s... ([`jsonrpc`] answers `echo` and probes an idle
//!    server: no message for two probe intervals drops the connection).
//!
//! The client never sends `transact`. It runs on its own thread, never on a DPDK worker.

pub mod check;
pub mod client;
pub mod follow;
pub mod jsonrpc;
pub mod member_delta;
pub mod remote;
pub mod replica;
pub mod settings;
pub mod sink;
pub mod stream;
pub mod translate;

pub use client::{OvnClient, OvnConfig, OvnState, Update, UpdateKind};
pub use remote::Remote;
pub use replica::ChangeSet;
pub use stream::TlsFiles;
