//! Following the NB live: on its own thread, off the workers. An update after a quiet spell
//! is handled at once; updates arriving while one is handled, or within `coalesce` of it,
//! are handled together (a burst becomes few publications). An update that only moves
//! members of sets the policy names (a pod's address; [`super::member_delta`]) becomes one
//! membership batch per acl node without translating the ACLs, and a modified
//! `Load_Balancer` row (a backend added or drained) recomputes the services alone; anything
//! else is translated
//! whole, and each stage whose policy changed is published through a [`PolicySink`] (in the
//! dataplane: the acl nodes' hubs and the lb node's control, the hitless paths the reload
//! uses).
//!
//! Whole translations are paced under sustained churn: one that took T (translating and
//! publishing, classifier builds included) is followed by at least `pacing` x T before the
//! next, so they take at most 1 / (1 + `pacing`) of the time, and of a CPU, however fast the
//! NB changes. A change after a quiet spell (no whole translation in the last
//! `pacing` x T) is still handled at once, and so are membership-only and load-balancer
//! handlings while no whole translation waits; once one waits, every later update joins
//! it (NB transactions are applied in their order), so under sustained structural churn a
//! change can wait up to `pacing` x T (about 9 x 0.5 s with two classifier builds of 1k
//! ACLs on a busy core). When the NB has been quiet for 2 s after membership-only handlings, one whole
//! translation confirms them (a difference is published, logged and counted). A translation
//! equal to the last published one publishes nothing; while the NB is away nothing is
//! published, so the last good policy stays. Newly refused rows are logged once each; everything is
//! counted ([`FollowerStatus`], `show ovn`).

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::RecvTimeoutError;
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use std::collections::BTreeMap;

use pipeline::acl::publish::set_diff;
use pipeline::acl::{AclConfig, IpNet, MemberChange};
use pipeline::lb::service::ServiceConfig;

use super::client::{CounterValues, OvnClient, OvnConfig, OvnState, Update};
use super::member_delta::{set_updates, stage_changes, Burst};
use super::settings::OvnTargets;
use super::translate::{
    services_only, translate_with, AclOrigin, LbOrigin, LoadBalancers, LocalPort, LspSelector,
    MatchCache, Policy, Refusal, Taken, TranslateOptions,
};

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
    /// Applies one acl node's membership batch (address-set entries joining and leaving);
    /// the answer is a line for the log. A sink without this says so, and the follower
    /// publishes the whole stage instead.
    fn update_members(&mut self, node: &str, changes: &[MemberChange]) -> Result<String, String> {
        let _ = (node, changes);
        Err("membership batches not supported by this sink".into())
    }
}

/// Counters and the last translation's account, for `show ovn` and the tests.
#[derive(Debug, Default)]
pub struct FollowerStatus {
    /// Updates received from the client (empty ones included).
    pub updates: AtomicU64,
    /// Updates with an empty change set (nothing to do).
    pub empty_updates: AtomicU64,
    /// Whole translations run.
    pub translations: AtomicU64,
    /// Whole translations that waited for the pacing (NB churning faster than allowed).
    pub paced: AtomicU64,
    /// The longest a whole translation waited for the pacing, ms.
    pub paced_wait_max_ms: AtomicU64,
    /// A whole translation is waiting for the pacing now.
    pub pacing_holds: AtomicBool,
    /// Time spent in whole translations (publications included), ms.
    pub translation_ms: AtomicU64,
    /// Handlings of membership-only updates (no translation: only the touched sets).
    pub member_handlings: AtomicU64,
    /// Whole translations run to confirm membership-only handlings once the NB went quiet.
    pub confirmations: AtomicU64,
    /// Confirmations that found something to publish (the membership path missed it).
    pub confirm_mismatches: AtomicU64,
    /// Translations that changed nothing (nothing published).
    pub unchanged: AtomicU64,
    /// Stage publications that succeeded.
    pub publishes: AtomicU64,
    /// Stage publications that failed (retried on the next update).
    pub publish_failures: AtomicU64,
    /// The rest, under a lock (read by the control thread).
    pub last: Mutex<LastAccount>,
    /// Where the taken rules and services came from (swapped whole by each translation).
    pub origins: Mutex<Origins>,
}

/// The NB rows behind the published policy, for answers in the platform's words: an ACL
/// rule's owner and `external_ids` (`neutron:security_group_rule_id`, `k8s.ovn.org/name`),
/// a service's `Load_Balancer`. Each map is shared: a change to one moves no copy of the
/// other.
#[derive(Debug, Default, Clone)]
pub struct Origins {
    /// Rule name (the NB ACL's UUID) -> its row's account.
    pub acls: Arc<BTreeMap<String, AclOrigin>>,
    /// Service name -> its `Load_Balancer`.
    pub lbs: Arc<BTreeMap<String, LbOrigin>>,
}

impl FollowerStatus {
    /// The origins of the last translation.
    pub fn origins(&self) -> Origins {
        self.origins.lock().expect("origins lock").clone()
    }
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
    /// Least time between two handlings of updates: the first update after a quiet spell
    /// is handled at once, those arriving within this time after it are handled together.
    pub coalesce: Duration,
    /// A whole translation that took T is followed by at least `pacing` x T before the next
    /// (0: none; `[ovn] translation_pacing`).
    pub pacing: f64,
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

/// How long the NB must be quiet before a whole translation confirms membership-only
/// handlings: an update arriving during that translation waits for it (about 200 ms at 10k
/// ACLs), so it runs only once churn has stopped.
const CONFIRM_QUIET: Duration = Duration::from_secs(2);

fn follow(
    client: OvnClient,
    cfg: FollowerConfig,
    mut sink: Box<dyn PolicySink>,
    stop: &AtomicBool,
    status: &FollowerStatus,
) {
    let our_macs = cfg
        .ports
        .iter()
        .filter_map(|p| match p.selector {
            LspSelector::Mac(m) => Some(m),
            LspSelector::Name(_) => None,
        })
        .collect();
    let mut st = FollowState::default();
    let mut burst = Burst::new(our_macs);
    let mut pending = false;
    // The NB went quiet after membership-only updates: confirm them by a whole translation.
    let mut confirm = false;
    let mut last_handled: Option<Instant> = None;
    // No whole translation before this (the pacing), and since when one waits for it.
    let mut paced_until: Option<Instant> = None;
    let mut waiting_since: Option<Instant> = None;
    while !stop.load(Ordering::Relaxed) {
        // Leading edge, then at most one handling per `coalesce`: a lone change is handled
        // at once, a burst in as few handlings as its length allows. A whole translation
        // also waits for the pacing.
        let since = last_handled.map_or(cfg.coalesce, |t| t.elapsed());
        // The burst needs no whole translation: members of sets, load-balancer rows.
        let narrow_ok =
            |burst: &Burst, st: &FollowState| st.all_published(&cfg.targets) && burst.member_only();
        // How long the burst still waits for the pacing (only a whole translation does).
        let held = |burst: &Burst, st: &FollowState| {
            if narrow_ok(burst, st) {
                return Duration::ZERO;
            }
            paced_until.map_or(Duration::ZERO, |t| {
                t.saturating_duration_since(Instant::now())
            })
        };
        let wait = if pending {
            cfg.coalesce.saturating_sub(since).max(held(&burst, &st))
        } else {
            Duration::from_millis(200)
        };
        let mut take = |u: Update| {
            status.updates.fetch_add(1, Ordering::Relaxed);
            if u.changes.is_empty() {
                status.empty_updates.fetch_add(1, Ordering::Relaxed);
            } else {
                pending = true;
                burst.add(&u.changes);
            }
        };
        match client.updates().recv_timeout(wait) {
            Ok(u) => {
                take(u);
                // Whatever else is queued joins this handling.
                while let Ok(u) = client.updates().try_recv() {
                    take(u);
                }
                if last_handled.is_some_and(|t| t.elapsed() < cfg.coalesce) {
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
            if confirm && last_handled.is_some_and(|t| t.elapsed() >= CONFIRM_QUIET) {
                confirm = false;
                status.confirmations.fetch_add(1, Ordering::Relaxed);
                let (changed, until) =
                    paced_translation(&mut st, &client, &cfg, sink.as_mut(), status);
                paced_until = until;
                if changed {
                    status.confirm_mismatches.fetch_add(1, Ordering::Relaxed);
                    eprintln!(
                        "ovn: the membership path had missed a change; the whole translation corrected it"
                    );
                }
            }
            continue;
        }
        if !held(&burst, &st).is_zero() {
            waiting_since.get_or_insert_with(Instant::now);
            status.pacing_holds.store(true, Ordering::Relaxed);
            continue;
        }
        pending = false;
        last_handled = Some(Instant::now());
        let narrow = if narrow_ok(&burst, &st) {
            client.with_tables(|t| {
                let sets = set_updates(&burst, t, &st.published)?;
                let lbs = burst.touches_lbs().then(|| services_only(t, &cfg.ports));
                Some((sets, lbs))
            })
        } else {
            None
        };
        burst.clear();
        match narrow {
            Some((sets, lbs)) => {
                status.member_handlings.fetch_add(1, Ordering::Relaxed);
                st.publish_members(&sets, &cfg, sink.as_mut(), status);
                if let Some(lbs) = lbs {
                    st.account_lbs(&lbs, status);
                    st.publish_services(lbs.services, &cfg, sink.as_mut(), status);
                }
                confirm = true;
            }
            None => {
                status.pacing_holds.store(false, Ordering::Relaxed);
                if let Some(t) = waiting_since.take() {
                    status.paced.fetch_add(1, Ordering::Relaxed);
                    status
                        .paced_wait_max_ms
                        .fetch_max(t.elapsed().as_millis() as u64, Ordering::Relaxed);
                }
                paced_until = paced_translation(&mut st, &client, &cfg, sink.as_mut(), status).1;
                confirm = false;
            }
        }
    }
}

/// A whole translation and its publications, timed: whether anything was published, and
/// until when the next whole translation waits (`pacing` x the time this one took).
fn paced_translation(
    st: &mut FollowState,
    client: &OvnClient,
    cfg: &FollowerConfig,
    sink: &mut dyn PolicySink,
    status: &FollowerStatus,
) -> (bool, Option<Instant>) {
    let started = Instant::now();
    let changed = st.translate_and_publish(client, cfg, sink, status);
    let took = started.elapsed();
    status
        .translation_ms
        .fetch_add(took.as_millis() as u64, Ordering::Relaxed);
    let until = (cfg.pacing > 0.0).then(|| Instant::now() + took.mul_f64(cfg.pacing));
    (changed, until)
}

/// What the follower published, and what it logged.
#[derive(Default)]
struct FollowState {
    published: Policy,
    /// Per target (from-lport, to-lport, both, lb, after-lb): published at least once.
    published_once: [bool; 5],
    /// The last publication of the target failed (the next handling retries it whole).
    failed: [bool; 5],
    logged_refusals: BTreeSet<String>,
    /// The ACL matches compiled so far (a change recompiles only what it touched).
    matches: MatchCache,
}

/// The `Load_Balancer` refusals among `refused`, one line each.
fn lb_refusal_lines(refused: &[Refusal]) -> Vec<String> {
    refused
        .iter()
        .filter(|r| r.table == "Load_Balancer")
        .map(|r| r.to_string())
        .collect()
}

impl FollowState {
    /// Every configured target has its policy in place.
    fn all_published(&self, t: &OvnTargets) -> bool {
        [&t.from_lport, &t.to_lport, &t.both, &t.lb, &t.after_lb]
            .iter()
            .enumerate()
            .all(|(i, n)| n.is_none() || (self.published_once[i] && !self.failed[i]))
    }

    /// Publishes new set entries as one membership batch per acl node (the whole stage if
    /// the sink cannot take a batch).
    fn publish_members(
        &mut self,
        updates: &BTreeMap<String, Vec<IpNet>>,
        cfg: &FollowerConfig,
        sink: &mut dyn PolicySink,
        status: &FollowerStatus,
    ) {
        if updates.is_empty() {
            status.unchanged.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let before_both = cfg
            .targets
            .both
            .as_ref()
            .map(|_| self.published.address_sets());
        let from = stage_changes(&mut self.published.from_lport, updates);
        let to = stage_changes(&mut self.published.to_lport, updates);
        let after = stage_changes(&mut self.published.after_lb, updates);
        let both: Vec<MemberChange> = before_both
            .map(|sets| {
                updates
                    .iter()
                    .filter_map(|(n, new)| Some(set_diff(n, sets.get(n)?, new)))
                    .flatten()
                    .collect()
            })
            .unwrap_or_default();
        let mut lines = Vec::new();
        let t = &cfg.targets;
        for (i, node, changes) in [
            (0, &t.from_lport, from),
            (1, &t.to_lport, to),
            (2, &t.both, both),
            (4, &t.after_lb, after),
        ] {
            let Some(node) = node else { continue };
            if changes.is_empty() {
                continue;
            }
            let result = sink.update_members(node, &changes).or_else(|_| {
                let whole = match i {
                    0 => self.published.from_lport.clone(),
                    1 => self.published.to_lport.clone(),
                    4 => self.published.after_lb.clone(),
                    _ => self.published.single_stage(),
                };
                sink.publish_acl(node, &whole)
            });
            match result {
                Ok(l) => {
                    status.publishes.fetch_add(1, Ordering::Relaxed);
                    lines.push(l);
                }
                Err(e) => {
                    status.publish_failures.fetch_add(1, Ordering::Relaxed);
                    self.failed[i] = true;
                    eprintln!("ovn: acl node `{node}`: membership update failed: {e}");
                }
            }
        }
        for l in &lines {
            eprintln!("ovn: {l}");
        }
        if !lines.is_empty() {
            status.last.lock().expect("status lock").published = lines;
        }
    }

    /// Takes the load balancers recomputed alone into the account: their refusals (newly
    /// refused ones logged) and counts replace the last translation's.
    fn account_lbs(&mut self, lbs: &LoadBalancers, status: &FollowerStatus) {
        let lines = lb_refusal_lines(&lbs.refused);
        self.log_refusals(&lines, |l| l.starts_with("Load_Balancer "));
        let mut last = status.last.lock().expect("status lock");
        last.refused.retain(|l| !l.starts_with("Load_Balancer "));
        last.refused.extend(lines.iter().cloned());
        last.refused.sort();
        last.taken.load_balancers = lbs.taken;
        last.taken.services = lbs.services.len();
        drop(last);
        status.origins.lock().expect("origins lock").lbs = Arc::new(lbs.origins.clone());
    }

    /// Logs each refusal in `lines` not logged yet; of the logged ones `within` covers,
    /// those no longer in `lines` are forgotten (logged again if they come back).
    fn log_refusals(&mut self, lines: &[String], within: impl Fn(&str) -> bool) {
        for l in lines {
            if self.logged_refusals.insert(l.clone()) {
                eprintln!("ovn: {l}");
            }
        }
        self.logged_refusals
            .retain(|l| !within(l) || lines.contains(l));
    }

    /// Publishes the lb node's services recomputed alone, if they changed.
    fn publish_services(
        &mut self,
        services: Vec<ServiceConfig>,
        cfg: &FollowerConfig,
        sink: &mut dyn PolicySink,
        status: &FollowerStatus,
    ) {
        let Some(node) = &cfg.targets.lb else { return };
        if services == self.published.services {
            return;
        }
        match sink.publish_services(node, &services) {
            Ok(l) => {
                status.publishes.fetch_add(1, Ordering::Relaxed);
                eprintln!("ovn: {l}");
                self.published.services = services;
                status.last.lock().expect("status lock").published = vec![l];
            }
            Err(e) => {
                status.publish_failures.fetch_add(1, Ordering::Relaxed);
                self.failed[3] = true;
                eprintln!("ovn: lb node `{node}`: publish failed: {e}");
            }
        }
    }

    /// Translates the whole replica and publishes each stage that changed; true if anything
    /// was published.
    fn translate_and_publish(
        &mut self,
        client: &OvnClient,
        cfg: &FollowerConfig,
        sink: &mut dyn PolicySink,
        status: &FollowerStatus,
    ) -> bool {
        let matches = &mut self.matches;
        let t =
            client.with_tables(|tables| translate_with(tables, &cfg.ports, cfg.options, matches));
        status.translations.fetch_add(1, Ordering::Relaxed);
        let refused: Vec<String> = t.refused.iter().map(|r| r.to_string()).collect();
        self.log_refusals(&refused, |_| true);
        let mut lines = Vec::new();
        let mut changed = false;
        let targets = &cfg.targets;
        let published = &self.published;
        let acl_jobs: [(usize, &Option<String>, &AclConfig, &AclConfig); 3] = [
            (
                0,
                &targets.from_lport,
                &t.policy.from_lport,
                &published.from_lport,
            ),
            (
                1,
                &targets.to_lport,
                &t.policy.to_lport,
                &published.to_lport,
            ),
            (
                4,
                &targets.after_lb,
                &t.policy.after_lb,
                &published.after_lb,
            ),
        ];
        let mut ok = [true; 5];
        let mut publish = |i: usize, node: &str, new: &AclConfig| match sink.publish_acl(node, new)
        {
            Ok(l) => {
                status.publishes.fetch_add(1, Ordering::Relaxed);
                lines.push(l);
                true
            }
            Err(e) => {
                status.publish_failures.fetch_add(1, Ordering::Relaxed);
                eprintln!("ovn: acl node `{node}`: publish failed: {e}");
                ok[i] = false;
                false
            }
        };
        let mut done = self.published_once;
        for (i, node, new, old) in acl_jobs {
            let Some(node) = node else { continue };
            if self.published_once[i] && !self.failed[i] && new == old {
                continue;
            }
            changed = true;
            done[i] |= publish(i, node, new);
        }
        if let Some(node) = &targets.both {
            let (new, old) = (t.policy.single_stage(), published.single_stage());
            if !self.published_once[2] || self.failed[2] || new != old {
                changed = true;
                done[2] |= publish(2, node, &new);
            }
        }
        if let Some(node) = &targets.lb {
            if !self.published_once[3] || self.failed[3] || t.policy.services != published.services
            {
                changed = true;
                match sink.publish_services(node, &t.policy.services) {
                    Ok(l) => {
                        status.publishes.fetch_add(1, Ordering::Relaxed);
                        done[3] = true;
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
        self.published_once = done;
        if !changed {
            status.unchanged.fetch_add(1, Ordering::Relaxed);
        }
        for l in &lines {
            eprintln!("ovn: {l}");
        }
        // What failed stays as it was, and is retried whole by the next handling.
        // (Moved, not copied: at 10k ACLs a copy of the policy cost milliseconds.)
        let mut next = t.policy;
        let old = &mut self.published;
        if !ok[0] {
            next.from_lport = std::mem::take(&mut old.from_lport);
        }
        if !ok[1] {
            next.to_lport = std::mem::take(&mut old.to_lport);
        }
        if !ok[3] {
            next.services = std::mem::take(&mut old.services);
        }
        if !ok[4] {
            next.after_lb = std::mem::take(&mut old.after_lb);
        }
        self.failed = ok.map(|o| !o);
        self.published = next;
        *status.origins.lock().expect("origins lock") = Origins {
            acls: Arc::new(t.acl_origins),
            lbs: Arc::new(t.lb_origins),
        };
        let mut last = status.last.lock().expect("status lock");
        last.bindings = t.bindings.iter().map(|b| b.describe()).collect();
        last.taken = t.taken;
        last.refused = refused;
        if !lines.is_empty() {
            last.published = lines;
        }
        changed
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

/// The running follower's origins (empty without a follower).
pub fn current_origins() -> Origins {
    current().map(|f| f.origins()).unwrap_or_default()
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
        out.push_str(&format!(
            "  membership-only handlings {}, confirmed by {} translations, mismatches {}\n",
            r(&self.member_handlings),
            r(&self.confirmations),
            r(&self.confirm_mismatches)
        ));
        out.push_str(&format!(
            "  whole translations {} ms in all, paced {} (longest wait {} ms)\n",
            r(&self.translation_ms),
            r(&self.paced),
            r(&self.paced_wait_max_ms)
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
