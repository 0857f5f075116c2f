//! Following the NB live: on its own thread, the client's updates are coalesced (a burst
//! becomes one translation), translated off the workers, and each stage whose policy changed
//! is published through a [`PolicySink`] (in the dataplane: the acl nodes' hubs and the lb
//! node's control, the hitless paths the reload uses). A translation equal to the last
//! published one publishes nothing; while the NB is away nothing is published, so the last
//! good policy stays. Newly refused rows are logged once each; everything is counted
//! ([`FollowerStatus`], `show ovn`).

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::RecvTimeoutError;
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use pipeline::acl::AclConfig;
use pipeline::lb::service::ServiceConfig;

use super::client::{CounterValues, OvnClient, OvnConfig, OvnState};
use super::settings::OvnTargets;
use super::translate::{translate, LocalPort, Policy, Taken, TranslateOptions};

/// Where the policy goes.
pub trait PolicySink: Send {
    /// Publishes one acl node's rules; the answer is a line for the log.
    fn publish_acl(&mut self, node: &str, cfg: &AclConfig) -> Result<String, String>;
    /// Replaces one lb node's services; the answer is a line for the log.
    fn publish_services(
        &mut self,
        node: &str,
        services: &[ServiceConfig],
    ) -> Result<String, String>;
}

/// Counters and the last translation's account, for `show ovn` and the tests.
#[derive(Debug, Default)]
pub struct FollowerStatus {
    /// Updates received from the client (empty ones included).
    pub updates: AtomicU64,
    /// Updates with an empty change set (nothing to do).
    pub empty_updates: AtomicU64,
    /// Translations run (one per burst).
    pub translations: AtomicU64,
    /// Translations that changed nothing (nothing published).
    pub unchanged: AtomicU64,
    /// Stage publications that succeeded.
    pub publishes: AtomicU64,
    /// Stage publications that failed (retried on the next update).
    pub publish_failures: AtomicU64,
    /// The rest, under a lock (read by the control thread).
    pub last: Mutex<LastAccount>,
}

/// What the last translation took and refused, and the client's state.
#[derive(Debug, Clone, Default)]
pub struct LastAccount {
    /// The client's state (remotes, connected, last txn id, rows).
    pub client: OvnState,
    /// The client's counters (connects, disconnections, resyncs full and incremental...).
    pub counters: CounterValues,
    /// Port -> LSP lines.
    pub bindings: Vec<String>,
    /// Counts taken.
    pub taken: Taken,
    /// Refused rows (one line each).
    pub refused: Vec<String>,
    /// The last publication's log lines.
    pub published: Vec<String>,
}

/// The follower thread's handle; stops the thread (and the client) on drop.
pub struct Follower {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    status: Arc<FollowerStatus>,
}

/// How the follower runs.
pub struct FollowerConfig {
    /// The client's configuration.
    pub client: OvnConfig,
    /// Our ports and how their LSPs are found.
    pub ports: Vec<LocalPort>,
    /// Translation options.
    pub options: TranslateOptions,
    /// Where each stage goes.
    pub targets: OvnTargets,
    /// Quiet time that ends a burst of updates.
    pub coalesce: Duration,
}

impl Follower {
    /// Starts the client and the follower thread.
    pub fn start(cfg: FollowerConfig, sink: Box<dyn PolicySink>) -> Result<Follower, String> {
        let client = OvnClient::start(cfg.client.clone())?;
        let stop = Arc::new(AtomicBool::new(false));
        let status = Arc::new(FollowerStatus::default());
        let (s, st) = (Arc::clone(&stop), Arc::clone(&status));
        let thread = thread::Builder::new()
            .name("ovn-follow".into())
            .spawn(move || follow(client, cfg, sink, &s, &st))
            .map_err(|e| format!("ovn: cannot start the follower thread: {e}"))?;
        Ok(Follower {
            stop,
            thread: Some(thread),
            status,
        })
    }

    /// The counters and last account.
    pub fn status(&self) -> &Arc<FollowerStatus> {
        &self.status
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn follow(
    client: OvnClient,
    cfg: FollowerConfig,
    mut sink: Box<dyn PolicySink>,
    stop: &AtomicBool,
    status: &FollowerStatus,
) {
    let mut published = Policy::default();
    let mut published_once = [false; 4];
    let mut logged_refusals: BTreeSet<String> = BTreeSet::new();
    let mut pending = false;
    let mut burst_start: Option<Instant> = None;
    while !stop.load(Ordering::Relaxed) {
        let wait = if pending {
            cfg.coalesce
        } else {
            Duration::from_millis(200)
        };
        match client.updates().recv_timeout(wait) {
            Ok(u) => {
                status.updates.fetch_add(1, Ordering::Relaxed);
                if u.changes.is_empty() {
                    status.empty_updates.fetch_add(1, Ordering::Relaxed);
                } else {
                    pending = true;
                    burst_start.get_or_insert_with(Instant::now);
                }
                // Keep draining until quiet (bounded: publish at least every second).
                if burst_start.is_none_or(|t| t.elapsed() <= Duration::from_secs(1)) {
                    continue;
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
        {
            let mut last = status.last.lock().expect("status lock");
            last.client = client.state();
            last.counters = client.counters();
        }
        if !pending {
            continue;
        }
        pending = false;
        burst_start = None;
        let t = translate(&client.tables(), &cfg.ports, cfg.options);
        status.translations.fetch_add(1, Ordering::Relaxed);
        for r in &t.refused {
            let line = r.to_string();
            if logged_refusals.insert(line.clone()) {
                eprintln!("ovn: {line}");
            }
        }
        logged_refusals.retain(|l| t.refused.iter().any(|r| &r.to_string() == l));
        let mut lines = Vec::new();
        let mut changed = false;
        let targets = &cfg.targets;
        let acl_jobs: [(usize, &Option<String>, AclConfig, AclConfig); 3] = [
            (
                0,
                &targets.from_lport,
                t.policy.from_lport.clone(),
                published.from_lport.clone(),
            ),
            (
                1,
                &targets.to_lport,
                t.policy.to_lport.clone(),
                published.to_lport.clone(),
            ),
            (
                2,
                &targets.both,
                t.policy.single_stage(),
                published.single_stage(),
            ),
        ];
        let mut ok = [true; 4];
        for (i, node, new, old) in acl_jobs {
            let Some(node) = node else { continue };
            if published_once[i] && new == old {
                continue;
            }
            changed = true;
            match sink.publish_acl(node, &new) {
                Ok(l) => {
                    status.publishes.fetch_add(1, Ordering::Relaxed);
                    published_once[i] = true;
                    lines.push(l);
                }
                Err(e) => {
                    status.publish_failures.fetch_add(1, Ordering::Relaxed);
                    ok[i] = false;
                    eprintln!("ovn: acl node `{node}`: publish failed: {e}");
                }
            }
        }
        if let Some(node) = &targets.lb {
            if !published_once[3] || t.policy.services != published.services {
                changed = true;
                match sink.publish_services(node, &t.policy.services) {
                    Ok(l) => {
                        status.publishes.fetch_add(1, Ordering::Relaxed);
                        published_once[3] = true;
                        lines.push(l);
                    }
                    Err(e) => {
                        status.publish_failures.fetch_add(1, Ordering::Relaxed);
                        ok[3] = false;
                        eprintln!("ovn: lb node `{node}`: publish failed: {e}");
                    }
                }
            }
        }
        if !changed {
            status.unchanged.fetch_add(1, Ordering::Relaxed);
        }
        for l in &lines {
            eprintln!("ovn: {l}");
        }
        // What failed stays as it was, so the next update retries it.
        let mut next = t.policy.clone();
        if !ok[0] {
            next.from_lport = published.from_lport.clone();
        }
        if !ok[1] {
            next.to_lport = published.to_lport.clone();
        }
        if !ok[3] {
            next.services = published.services.clone();
        }
        published = next;
        let mut last = status.last.lock().expect("status lock");
        last.bindings = t.bindings.iter().map(|b| b.describe()).collect();
        last.taken = t.taken;
        last.refused = t.refused.iter().map(|r| r.to_string()).collect();
        if !lines.is_empty() {
            last.published = lines;
        }
    }
}

static CURRENT: Mutex<Option<Arc<FollowerStatus>>> = Mutex::new(None);

/// Makes `status` the one `show ovn` reports (`None`: no follower).
pub fn set_current(status: Option<Arc<FollowerStatus>>) {
    *CURRENT.lock().expect("current lock") = status;
}

/// The running follower's status, if any.
pub fn current() -> Option<Arc<FollowerStatus>> {
    CURRENT.lock().expect("current lock").clone()
}

impl FollowerStatus {
    /// The `show ovn` text.
    pub fn render(&self) -> String {
        let last = self.last.lock().expect("status lock").clone();
        let c = &last.client;
        let r = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let mut out = format!(
            "ovn: remotes {}\n  state: {} {}\n  last txn id: {}\n  rows: {}\n",
            c.remotes.join(","),
            if c.connected {
                "monitoring"
            } else {
                "disconnected (last policy kept)"
            },
            c.remote.clone().unwrap_or_default(),
            c.last_txn_id.clone().unwrap_or_else(|| "-".into()),
            c.rows
                .iter()
                .map(|(t, n)| format!("{t} {n}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        if let Some(e) = &c.last_error {
            out.push_str(&format!("  last error: {e}\n"));
        }
        out.push_str(&format!(
            "  updates {} (empty {}), translations {}, unchanged {}, publishes {}, publish failures {}\n",
            r(&self.updates),
            r(&self.empty_updates),
            r(&self.translations),
            r(&self.unchanged),
            r(&self.publishes),
            r(&self.publish_failures)
        ));
        let k = &last.counters;
        out.push_str(&format!(
            "  client: connects {}, disconnections {}, resyncs {} full + {} incremental, transactions {}, servers refused {}\n",
            k.connects,
            k.disconnections,
            k.resyncs_full,
            k.resyncs_incremental,
            k.transactions,
            k.servers_refused
        ));
        for b in &last.bindings {
            out.push_str(&format!("  port {b}\n"));
        }
        let t = &last.taken;
        out.push_str(&format!(
            "  taken: {} switches, {} ACLs, {} port groups, {} address sets + {} derived, {} load balancers ({} services)\n  refused: {}\n",
            t.switches, t.acls, t.port_groups, t.address_sets, t.derived_sets, t.load_balancers, t.services, last.refused.len()
        ));
        for l in &last.refused {
            out.push_str(&format!("    {l}\n"));
        }
        for l in &last.published {
            out.push_str(&format!("  last publish: {l}\n"));
        }
        out
    }
}
