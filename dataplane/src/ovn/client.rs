//! The OVSDB client thread: connects to one of the remotes, checks the server, monitors the
//! NB tables, keeps the [`Replica`] current and hands every applied update to the consumer
//! as an [`Update`] carrying its [`ChangeSet`]. It never writes to the database.
//!
//! [`OvnClient::start`] spawns the thread; the handle gives the updates (a channel), the
//! counters and the state (`show ovn`), a copy of the replica, and stops the thread on drop.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use rustls::ClientConfig;
use serde_json::{json, Value};

use super::jsonrpc::{Conn, ConnError, Incoming, DEFAULT_MAX_MESSAGE};
use super::remote::Remote;
use super::replica::{parse_schema, ChangeSet, Replica, Schema, Table, ZERO_UUID};
use super::stream::{tls_config, Stream, TlsFiles};

/// The NB tables the policy needs (those the server's schema lacks are left out).
pub const NB_TABLES: &[&str] = &[
    "ACL",
    "Port_Group",
    "Address_Set",
    "Load_Balancer",
    "Load_Balancer_Group",
    "Logical_Switch",
    "Logical_Switch_Port",
    "Meter",
    "Meter_Band",
    "NB_Global",
];

/// The monitor id of the database's monitor.
const DB_MONITOR: &str = "db";
/// The monitor id of the `_Server` monitor.
const SERVER_MONITOR: &str = "server";

/// What the client connects to and how.
#[derive(Debug, Clone)]
pub struct OvnConfig {
    /// Remotes tried in turn.
    pub remotes: Vec<Remote>,
    /// PEM files for `ssl:` remotes.
    pub tls: Option<TlsFiles>,
    /// The database (`OVN_Northbound`).
    pub database: String,
    /// The tables to monitor.
    pub tables: Vec<String>,
    /// Inactivity probe: send an echo after this long without a message, drop the connection
    /// after as long again (`None`: never). OVS's default is 5 s.
    pub probe_interval: Option<Duration>,
    /// First wait after a round of failed connects (doubles up to `backoff_max`).
    pub backoff_min: Duration,
    /// Longest wait between rounds.
    pub backoff_max: Duration,
    /// TCP connect and TLS handshake bound.
    pub connect_timeout: Duration,
    /// Refuse a clustered server that is not the leader (ovn-controller does not).
    pub leader_only: bool,
    /// Largest message accepted.
    pub max_message: usize,
}

impl OvnConfig {
    /// The defaults of OVS's reconnect FSM for the NB tables of [`NB_TABLES`].
    pub fn new(remotes: Vec<Remote>) -> OvnConfig {
        OvnConfig {
            remotes,
            tls: None,
            database: "OVN_Northbound".into(),
            tables: NB_TABLES.iter().map(|s| s.to_string()).collect(),
            probe_interval: Some(Duration::from_secs(5)),
            backoff_min: Duration::from_secs(1),
            backoff_max: Duration::from_secs(8),
            connect_timeout: Duration::from_secs(5),
            leader_only: false,
            max_message: DEFAULT_MAX_MESSAGE,
        }
    }
}

/// Why an update was delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpdateKind {
    /// The server sent its full contents (first connect, or a reconnect it could not serve
    /// from its history): the change set is the difference from what we had.
    FullResync,
    /// The server sent only what changed since our last transaction id.
    IncrementalResync,
    /// A live transaction (`update2`/`update3`).
    Transaction,
}

/// One applied update. An empty change set means nothing changed: nothing to rebuild.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Update {
    /// How it came.
    pub kind: UpdateKind,
    /// The transaction id after it, when the server gives ids.
    pub txn_id: Option<String>,
    /// Rows inserted, deleted and modified.
    pub changes: ChangeSet,
}

/// Counters, summed over the client's life.
#[derive(Debug, Default)]
pub struct Counters {
    /// Connection attempts.
    pub connect_attempts: AtomicU64,
    /// Attempts that failed before monitoring (refused, TLS, server check, protocol).
    pub connect_failures: AtomicU64,
    /// Sessions that reached monitoring.
    pub connects: AtomicU64,
    /// Monitoring sessions lost.
    pub disconnections: AtomicU64,
    /// Resyncs where the server sent everything.
    pub resyncs_full: AtomicU64,
    /// Resyncs from our last transaction id.
    pub resyncs_incremental: AtomicU64,
    /// Live transactions applied.
    pub transactions: AtomicU64,
    /// Connections dropped because echo went unanswered.
    pub echo_timeouts: AtomicU64,
    /// Malformed messages and rows (logged, skipped).
    pub malformed: AtomicU64,
    /// Servers refused by the `_Server` check (clustered and not connected, stale index...).
    pub servers_refused: AtomicU64,
}

/// A copy of the counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
#[allow(missing_docs)]
pub struct CounterValues {
    pub connect_attempts: u64,
    pub connect_failures: u64,
    pub connects: u64,
    pub disconnections: u64,
    pub resyncs_full: u64,
    pub resyncs_incremental: u64,
    pub transactions: u64,
    pub echo_timeouts: u64,
    pub malformed: u64,
    pub servers_refused: u64,
}

impl Counters {
    /// Reads every counter.
    pub fn values(&self) -> CounterValues {
        let r = |a: &AtomicU64| a.load(Ordering::Relaxed);
        CounterValues {
            connect_attempts: r(&self.connect_attempts),
            connect_failures: r(&self.connect_failures),
            connects: r(&self.connects),
            disconnections: r(&self.disconnections),
            resyncs_full: r(&self.resyncs_full),
            resyncs_incremental: r(&self.resyncs_incremental),
            transactions: r(&self.transactions),
            echo_timeouts: r(&self.echo_timeouts),
            malformed: r(&self.malformed),
            servers_refused: r(&self.servers_refused),
        }
    }
}

fn bump(a: &AtomicU64) {
    a.fetch_add(1, Ordering::Relaxed);
}

/// What `show ovn` prints.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OvnState {
    /// The remotes configured.
    pub remotes: Vec<String>,
    /// The remote of the current (or last) session.
    pub remote: Option<String>,
    /// Monitoring now.
    pub connected: bool,
    /// The last transaction id the server gave.
    pub last_txn_id: Option<String>,
    /// Rows per monitored table.
    pub rows: BTreeMap<String, usize>,
    /// The last connection error.
    pub last_error: Option<String>,
}

struct Shared {
    stop: AtomicBool,
    counters: Counters,
    state: Mutex<OvnState>,
    replica: Mutex<Replica>,
}

/// The running client.
pub struct OvnClient {
    shared: Arc<Shared>,
    updates: Receiver<Update>,
    thread: Option<JoinHandle<()>>,
}

impl OvnClient {
    /// Loads the TLS files (errors name the file) and starts the client thread.
    pub fn start(cfg: OvnConfig) -> Result<OvnClient, String> {
        if cfg.remotes.is_empty() {
            return Err("ovn: no remote".into());
        }
        let tls = match &cfg.tls {
            Some(files) => Some(tls_config(files)?),
            None if cfg.remotes.iter().any(Remote::is_ssl) => {
                return Err("ovn: an ssl: remote needs private_key, certificate and ca_cert".into())
            }
            None => None,
        };
        let shared = Arc::new(Shared {
            stop: AtomicBool::new(false),
            counters: Counters::default(),
            state: Mutex::new(OvnState {
                remotes: cfg.remotes.iter().map(|r| r.to_string()).collect(),
                ..OvnState::default()
            }),
            replica: Mutex::new(Replica::default()),
        });
        let (tx, rx) = mpsc::channel();
        let mut worker = Worker {
            cfg,
            tls,
            shared: shared.clone(),
            tx,
            last_txn: None,
            min_index: 0,
        };
        let thread = thread::Builder::new()
            .name("ovn-client".into())
            .spawn(move || worker.run())
            .map_err(|e| format!("ovn: cannot start the client thread: {e}"))?;
        Ok(OvnClient {
            shared,
            updates: rx,
            thread: Some(thread),
        })
    }

    /// The updates, in order.
    pub fn updates(&self) -> &Receiver<Update> {
        &self.updates
    }

    /// The counters now.
    pub fn counters(&self) -> CounterValues {
        self.shared.counters.values()
    }

    /// Connection state, last transaction id and rows per table.
    pub fn state(&self) -> OvnState {
        self.shared.state.lock().expect("state lock").clone()
    }

    /// Runs `f` on the replica's rows without copying them (the client thread waits to
    /// apply the next update meanwhile: keep `f` short of blocking).
    pub fn with_tables<R>(&self, f: impl FnOnce(&BTreeMap<String, Table>) -> R) -> R {
        f(self.shared.replica.lock().expect("replica lock").tables())
    }

    /// A copy of the replica's rows.
    pub fn tables(&self) -> BTreeMap<String, Table> {
        self.shared
            .replica
            .lock()
            .expect("replica lock")
            .tables()
            .clone()
    }

    /// Stops the thread and waits for it.
    pub fn stop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for OvnClient {
    fn drop(&mut self) {
        self.stop();
    }
}

/// How a session ended.
enum End {
    /// Stop was asked.
    Stopped,
    /// Lost before monitoring: try the next remote.
    Failed(String),
    /// Lost after monitoring.
    Lost(String),
}

/// How long one poll blocks (how quickly stop is seen).
const TICK: Duration = Duration::from_millis(100);

struct Worker {
    cfg: OvnConfig,
    tls: Option<Arc<ClientConfig>>,
    shared: Arc<Shared>,
    tx: Sender<Update>,
    last_txn: Option<String>,
    /// Highest raft index seen (never go back to a server behind it).
    min_index: i64,
}

/// A session's connection plus notifications that arrived while waiting for a reply.
struct Session {
    conn: Conn,
    pending: VecDeque<(String, Value)>,
}

impl Worker {
    fn stopping(&self) -> bool {
        self.shared.stop.load(Ordering::Relaxed)
    }

    fn log(&self, line: &str) {
        eprintln!("ovn: {line}");
    }

    fn run(&mut self) {
        let n = self.cfg.remotes.len();
        let mut next = 0;
        let mut backoff = self.cfg.backoff_min;
        while !self.stopping() {
            let mut monitored = false;
            for k in 0..n {
                let idx = (next + k) % n;
                let remote = self.cfg.remotes[idx].clone();
                bump(&self.shared.counters.connect_attempts);
                match self.session(&remote) {
                    End::Stopped => return,
                    End::Failed(e) => {
                        bump(&self.shared.counters.connect_failures);
                        self.log(&format!("{remote}: connection failed: {e}"));
                        let mut st = self.shared.state.lock().expect("state");
                        st.connected = false;
                        st.last_error = Some(e);
                    }
                    End::Lost(e) => {
                        bump(&self.shared.counters.disconnections);
                        self.log(&format!("{remote}: disconnected: {e} (replica kept)"));
                        let mut st = self.shared.state.lock().expect("state");
                        st.connected = false;
                        st.last_error = Some(e);
                        drop(st);
                        // Every remote gets a free try again, the one just lost last.
                        next = idx + 1;
                        monitored = true;
                        break;
                    }
                }
                if self.stopping() {
                    return;
                }
            }
            if monitored {
                backoff = self.cfg.backoff_min;
                continue;
            }
            self.log(&format!("no remote reachable, next round in {backoff:?}"));
            let until = Instant::now() + backoff;
            while Instant::now() < until {
                if self.stopping() {
                    return;
                }
                thread::sleep(Duration::from_millis(20));
            }
            backoff = (backoff * 2).min(self.cfg.backoff_max);
        }
    }

    fn session(&mut self, remote: &Remote) -> End {
        let stream = match Stream::connect(remote, self.tls.as_ref(), self.cfg.connect_timeout) {
            Ok(s) => s,
            Err(e) => return End::Failed(e.to_string()),
        };
        let conn = match Conn::new(stream, self.cfg.probe_interval, TICK, self.cfg.max_message) {
            Ok(c) => c,
            Err(e) => return End::Failed(e.to_string()),
        };
        let mut s = Session {
            conn,
            pending: VecDeque::new(),
        };
        let r = self.setup(&mut s, remote);
        let end = match r {
            Err(e) => e,
            Ok(server_db) => self.monitoring(&mut s, server_db),
        };
        s.conn.close();
        end
    }

    /// Waits for the reply to `id`, keeping notifications for later.
    fn wait_reply(&self, s: &mut Session, id: u64) -> Result<Result<Value, Value>, End> {
        loop {
            if self.stopping() {
                return Err(End::Stopped);
            }
            match s.conn.poll() {
                Ok(None) => {}
                Ok(Some(Incoming::Response { id: rid, result })) if rid == id => return Ok(result),
                Ok(Some(Incoming::Response { .. })) => {}
                Ok(Some(Incoming::Notification { method, params })) => {
                    s.pending.push_back((method, params))
                }
                Err(e) => return Err(End::Failed(self.conn_error(e))),
            }
        }
    }

    fn call(&self, s: &mut Session, method: &str, params: Value) -> Result<Value, End> {
        let id = s
            .conn
            .request(method, params)
            .map_err(|e| End::Failed(self.conn_error(e)))?;
        self.wait_reply(s, id)?
            .map_err(|e| End::Failed(format!("{method} refused: {e}")))
    }

    fn conn_error(&self, e: ConnError) -> String {
        match e {
            ConnError::EchoTimeout => bump(&self.shared.counters.echo_timeouts),
            ConnError::Malformed(_) | ConnError::TooLarge(_) => {
                bump(&self.shared.counters.malformed)
            }
            _ => {}
        }
        e.to_string()
    }

    /// `_Server` check, schema, monitor, change awareness. Returns the `_Server` replica
    /// (if the server has `_Server`) to keep checking it.
    fn setup(&mut self, s: &mut Session, remote: &Remote) -> Result<Option<Replica>, End> {
        let server_db = self.check_server(s)?;
        let schema = self.call(s, "get_schema", json!([self.cfg.database]))?;
        let (all, skipped) = parse_schema(&schema).map_err(End::Failed)?;
        if !skipped.is_empty() {
            self.log(&format!(
                "{remote}: columns of unknown type left out: {skipped:?}"
            ));
        }
        let monitored: Schema = all
            .into_iter()
            .filter(|(t, _)| self.cfg.tables.contains(t))
            .collect();
        let requests: serde_json::Map<String, Value> = monitored
            .iter()
            .map(|(t, cols)| {
                let cols: Vec<&String> = cols.keys().filter(|c| !c.starts_with('_')).collect();
                (t.clone(), json!([{ "columns": cols }]))
            })
            .collect();
        self.shared
            .replica
            .lock()
            .expect("replica")
            .set_schema(monitored);

        let since = self
            .last_txn
            .clone()
            .unwrap_or_else(|| ZERO_UUID.to_string());
        let id = s
            .conn
            .request(
                "monitor_cond_since",
                json!([self.cfg.database, DB_MONITOR, requests, since]),
            )
            .map_err(|e| End::Failed(self.conn_error(e)))?;
        let (found, txn, updates) = match self.wait_reply(s, id)? {
            Ok(Value::Array(mut r)) if r.len() == 3 => {
                let updates = r.pop().expect("3");
                let txn = r.pop().expect("3");
                let found = r.pop().expect("3").as_bool().unwrap_or(false);
                (found, txn.as_str().map(str::to_string), updates)
            }
            Ok(other) => {
                bump(&self.shared.counters.malformed);
                return Err(End::Failed(format!("monitor_cond_since reply {other}")));
            }
            Err(e) => {
                self.log(&format!(
                    "{remote}: monitor_cond_since refused ({e}), using monitor_cond"
                ));
                let r = self.call(
                    s,
                    "monitor_cond",
                    json!([self.cfg.database, DB_MONITOR, requests]),
                )?;
                (false, None, r)
            }
        };
        // Monitoring from here on: a loss is a disconnection, the replica stays.
        bump(&self.shared.counters.connects);
        self.log(&format!(
            "{remote}: connected, monitoring {}",
            self.cfg.database
        ));
        {
            let mut st = self.shared.state.lock().expect("state");
            st.connected = true;
            st.remote = Some(remote.to_string());
            st.last_error = None;
        }
        self.resync(found, txn, &updates);
        // Ask to be told (monitor_canceled) rather than dropped on a schema change.
        match self.call(s, "set_db_change_aware", json!([true])) {
            Err(End::Failed(e)) => Err(End::Lost(e)),
            Err(e) => Err(e),
            Ok(_) => Ok(server_db),
        }
    }

    /// Monitors `_Server.Database` and refuses a clustered server that is not connected to
    /// its cluster, is behind what we saw, or (with leader_only) is not the leader.
    fn check_server(&mut self, s: &mut Session) -> Result<Option<Replica>, End> {
        let id = s
            .conn
            .request("get_schema", json!(["_Server"]))
            .map_err(|e| End::Failed(self.conn_error(e)))?;
        let schema = match self.wait_reply(s, id)? {
            Ok(v) => v,
            Err(_) => return Ok(None), // a server older than _Server (OVS 2.9)
        };
        let (all, _) = parse_schema(&schema).map_err(End::Failed)?;
        let Some(cols) = all.get("Database") else {
            return Ok(None);
        };
        let mut srv = Replica::new([("Database".to_string(), cols.clone())].into());
        let r = self.call(
            s,
            "monitor_cond",
            json!(["_Server", SERVER_MONITOR, {"Database": [{}]}]),
        )?;
        let (_, errors) = srv.replace(&r);
        self.malformed_rows(&errors);
        self.server_ok(&srv)?;
        Ok(Some(srv))
    }

    fn server_ok(&mut self, srv: &Replica) -> Result<(), End> {
        let db = &self.cfg.database;
        let row = srv.table("Database").and_then(|t| {
            t.values().find(|r| {
                r.get("name")
                    .and_then(|d| d.single())
                    .and_then(|a| a.as_str())
                    == Some(db)
            })
        });
        let Some(row) = row else {
            bump(&self.shared.counters.servers_refused);
            return Err(End::Failed(format!("the server has no database {db}")));
        };
        let text = |c: &str| {
            row.get(c)
                .and_then(|d| d.single())
                .and_then(|a| a.as_str().map(str::to_string))
        };
        let flag = |c: &str| {
            row.get(c)
                .and_then(|d| d.single())
                .map(|a| *a == super::replica::Atom::Boolean(true))
        };
        if text("model").as_deref() != Some("clustered") {
            return Ok(());
        }
        let index = row
            .get("index")
            .and_then(|d| d.single())
            .and_then(|a| a.as_integer());
        let why = if text("schema").unwrap_or_default().is_empty() {
            Some("has not joined its cluster yet".to_string())
        } else if flag("connected") != Some(true) {
            Some("is not connected to its cluster".to_string())
        } else if self.cfg.leader_only && flag("leader") != Some(true) {
            Some("is not the leader".to_string())
        } else if index.is_some_and(|i| i < self.min_index) {
            Some(format!(
                "is behind (raft index {index:?} < {})",
                self.min_index
            ))
        } else {
            None
        };
        if let Some(why) = why {
            bump(&self.shared.counters.servers_refused);
            return Err(End::Failed(format!("clustered server {why}")));
        }
        if let Some(i) = index {
            self.min_index = self.min_index.max(i);
        }
        Ok(())
    }

    fn malformed_rows(&self, errors: &[String]) {
        for e in errors {
            bump(&self.shared.counters.malformed);
            self.log(&format!("malformed row update skipped: {e}"));
        }
    }

    fn resync(&mut self, found: bool, txn: Option<String>, updates: &Value) {
        let mut replica = self.shared.replica.lock().expect("replica");
        let (changes, errors, kind) = if found {
            bump(&self.shared.counters.resyncs_incremental);
            let (c, e) = replica.apply(updates);
            (c, e, UpdateKind::IncrementalResync)
        } else {
            bump(&self.shared.counters.resyncs_full);
            let (c, e) = replica.replace(updates);
            (c, e, UpdateKind::FullResync)
        };
        let rows = replica.counts();
        drop(replica);
        self.malformed_rows(&errors);
        self.log(&format!(
            "{} resync: {} rows changed, last txn {}",
            if found { "incremental" } else { "full" },
            changes.rows(),
            txn.as_deref().unwrap_or("-"),
        ));
        self.publish(kind, txn, changes, rows);
    }

    fn publish(
        &mut self,
        kind: UpdateKind,
        txn: Option<String>,
        changes: ChangeSet,
        rows: BTreeMap<String, usize>,
    ) {
        if txn.is_some() {
            self.last_txn = txn.clone();
        }
        {
            let mut st = self.shared.state.lock().expect("state");
            st.rows = rows;
            if txn.is_some() {
                st.last_txn_id = txn.clone();
            }
        }
        let _ = self.tx.send(Update {
            kind,
            txn_id: txn,
            changes,
        });
    }

    fn monitoring(&mut self, s: &mut Session, mut server_db: Option<Replica>) -> End {
        loop {
            let (method, params) = match s.pending.pop_front() {
                Some(n) => n,
                None => {
                    if self.stopping() {
                        return End::Stopped;
                    }
                    match s.conn.poll() {
                        Ok(None) | Ok(Some(Incoming::Response { .. })) => continue,
                        Ok(Some(Incoming::Notification { method, params })) => (method, params),
                        Err(e) => return End::Lost(self.conn_error(e)),
                    }
                }
            };
            let p = params.as_array().map(Vec::as_slice).unwrap_or(&[]);
            match (method.as_str(), p) {
                ("update3", [mid, txn, updates]) if mid == DB_MONITOR => {
                    self.transaction(txn.as_str().map(str::to_string), updates)
                }
                ("update2", [mid, updates]) if mid == DB_MONITOR => self.transaction(None, updates),
                ("update2", [mid, updates]) if mid == SERVER_MONITOR => {
                    if let Some(srv) = server_db.as_mut() {
                        let (_, errors) = srv.apply(updates);
                        self.malformed_rows(&errors);
                        let srv = srv.clone();
                        if let Err(End::Failed(e)) = self.server_ok(&srv) {
                            return End::Lost(e);
                        }
                    }
                }
                ("monitor_canceled", _) => {
                    return End::Lost("the server canceled the monitor (schema change?)".into())
                }
                _ => {
                    bump(&self.shared.counters.malformed);
                    self.log(&format!("unexpected notification {method} ignored"));
                }
            }
        }
    }

    fn transaction(&mut self, txn: Option<String>, updates: &Value) {
        let mut replica = self.shared.replica.lock().expect("replica");
        let (changes, errors) = replica.apply(updates);
        let rows = replica.counts();
        drop(replica);
        self.malformed_rows(&errors);
        bump(&self.shared.counters.transactions);
        let summary: Vec<String> = changes
            .tables
            .iter()
            .map(|(t, c)| {
                format!(
                    "{t} +{} -{} ~{}",
                    c.inserted.len(),
                    c.deleted.len(),
                    c.modified.len()
                )
            })
            .collect();
        self.log(&format!(
            "txn {}: {}",
            txn.as_deref().unwrap_or("-"),
            summary.join(", ")
        ));
        self.publish(UpdateKind::Transaction, txn, changes, rows);
    }
}
