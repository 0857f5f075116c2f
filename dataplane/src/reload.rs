//! Configuration reload on SIGHUP: `dataplane run` re-reads its config file and applies what
//! can change under load (the rules of `acl` nodes, the services of `lb` nodes) through their
//! hitless update paths; everything else is refused, naming the key.
//!
//! # What happens on SIGHUP
//! The signal handler only sets a flag. The main lcore's control loop calls
//! [`Reloader::poll`] every pass (workers never see the signal); it then:
//! 1. re-reads and parses the same file ([`ConfigFile::parse`]: a syntax error or an unknown
//!    key is refused as `FILE: KEY: REASON`);
//! 2. compares every top-level table except `[pipeline]` with the config the run started from
//!    (ports, EAL, lcores, workers, mempool, forwarding, stats, discovery): any difference is
//!    refused with the first differing key (e.g. `ports.fh0.rxd`);
//! 3. compares the pipeline with the running one: `input`, `edges`, node names and kinds
//!    must be equal; only the parameters of `acl` nodes (`rules`, `acl`, `default`; a `rules`
//!    file is read again) and of `lb` nodes with a `control` name may differ;
//! 4. validates every changed node completely (ACL rules expanded, LB tables built as a dry
//!    run) before applying any: one bad node refuses the whole reload, and the running rules
//!    and services stay;
//! 5. publishes: ACL rules through the node's hub ([`crate::dpdk::acl::acl_hub`],
//!    [`pipeline::acl::AclHub::apply_config`]: a membership update when only the members of
//!    address sets and port groups changed, else built on this thread, swapped by each worker
//!    between two bursts), LB services through [`LbControl::update`].
//!
//! Every outcome is logged (`reload: ...`) and counted ([`ReloadCounts`], in the stats JSON
//! as `reloads`). The embedded default configuration has no file and cannot be reloaded.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pipeline::acl::node::AclParams;
use pipeline::acl::publish::expand_config;
use pipeline::acl::{AclConfig, Applied};
use pipeline::graph::ParamError;
use pipeline::lb::service::IdSpace;
use pipeline::lb::{LbConfig, LbControl, ServiceTable};
use pipeline::GraphSpec;
use serde::Serialize;

use crate::config::{ConfigError, ConfigFile, EMBEDDED_NAME};
use crate::plan::Plan;

/// How long a publication waits for the workers to switch before it returns (they switch at
/// their next burst anyway; the old rules are freed once all have).
const PUBLISH_WAIT: Duration = Duration::from_millis(250);

/// ACL parameters a reload may change; the others are fixed when the nodes are built.
const ACL_LIVE_PARAMS: [&str; 3] = ["rules", "acl", "default"];

/// Reload outcomes of one run (in the stats JSON as `reloads`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ReloadCounts {
    /// Reloads that changed something and were applied.
    pub applied: u64,
    /// Reloads refused (invalid config, or a change that cannot be applied live).
    pub refused: u64,
    /// Reloads of a config equal to the running one.
    pub unchanged: u64,
    /// What the last reload did (the log line), if any.
    pub last: Option<String>,
}

/// What one reload did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Changes applied: one line per node.
    Applied(Vec<String>),
    /// Nothing changed.
    Unchanged,
    /// Refused: one line per problem (`FILE: KEY: REASON`); nothing was applied.
    Refused(Vec<String>),
    /// Some nodes were updated, then one failed (rare: a build failure after validation).
    Partial {
        /// Nodes updated.
        applied: Vec<String>,
        /// The failure.
        error: String,
    },
}

static TOTAL_APPLIED: AtomicU64 = AtomicU64::new(0);
static TOTAL_REFUSED: AtomicU64 = AtomicU64::new(0);
static TOTAL_UNCHANGED: AtomicU64 = AtomicU64::new(0);
static TOTAL_LAST: Mutex<Option<String>> = Mutex::new(None);

/// Reload outcomes since the process started, over all runs (for tests and embedding).
pub fn totals() -> ReloadCounts {
    ReloadCounts {
        applied: TOTAL_APPLIED.load(Ordering::Acquire),
        refused: TOTAL_REFUSED.load(Ordering::Acquire),
        unchanged: TOTAL_UNCHANGED.load(Ordering::Acquire),
        last: TOTAL_LAST.lock().unwrap_or_else(|e| e.into_inner()).clone(),
    }
}

/// A change validated and ready to publish.
enum Change {
    Acl {
        node: String,
        cfg: AclConfig,
    },
    Lb {
        node: String,
        control: Arc<LbControl>,
        name: String,
        cfg: LbConfig,
    },
}

/// The reload state of one run, owned by the main lcore's control loop.
pub struct Reloader {
    file: PathBuf,
    sighup: Arc<AtomicBool>,
    sig_id: Option<signal_hook::SigId>,
    /// The file's top-level tables as the run started (the pipeline is kept apart).
    baseline: Option<toml::Table>,
    /// Why the baseline could not be read (then every reload is refused).
    baseline_error: Option<String>,
    /// The running pipeline, with the parameters last applied.
    running: Option<GraphSpec>,
    /// The rules each `acl` node runs (to tell whether a `rules` file changed).
    acl: BTreeMap<String, AclConfig>,
    counts: ReloadCounts,
}

impl std::fmt::Debug for Reloader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reloader")
            .field("file", &self.file)
            .field("counts", &self.counts)
            .finish()
    }
}

fn key_path(prefix: &str, k: &str) -> String {
    if prefix.is_empty() {
        k.to_string()
    } else {
        format!("{prefix}.{k}")
    }
}

/// The first key at which `a` and `b` differ (`prefix` itself when they differ as a whole),
/// or `None` when they are equal.
pub fn first_difference(
    prefix: &str,
    a: Option<&toml::Value>,
    b: Option<&toml::Value>,
) -> Option<String> {
    use toml::Value;
    match (a, b) {
        (Some(Value::Table(x)), Some(Value::Table(y))) => {
            let keys: BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            keys.into_iter()
                .find_map(|k| first_difference(&key_path(prefix, k), x.get(k), y.get(k)))
        }
        (Some(Value::Array(x)), Some(Value::Array(y))) if x.len() == y.len() => {
            x.iter().zip(y).enumerate().find_map(|(i, (p, q))| {
                first_difference(&format!("{prefix}[{i}]"), Some(p), Some(q))
            })
        }
        (a, b) if a == b => None,
        _ => Some(prefix.to_string()),
    }
}

fn table_diff(prefix: &str, a: &toml::Table, b: &toml::Table, skip: &[&str]) -> Option<String> {
    let keys: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    keys.into_iter()
        .filter(|k| !skip.contains(&k.as_str()))
        .find_map(|k| first_difference(&key_path(prefix, k), a.get(k), b.get(k)))
}

fn param_error(node: &str, e: ParamError) -> String {
    match e.param {
        Some(p) => format!("pipeline.nodes.{node}.params.{p}: {}", e.reason),
        None => format!("pipeline.nodes.{node}.params: {}", e.reason),
    }
}

/// Deserialises a node's parameter table, naming the offending key on error.
fn params_as<T: serde::de::DeserializeOwned>(node: &str, p: &toml::Table) -> Result<T, String> {
    serde_path_to_error::deserialize(toml::Value::Table(p.clone())).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let key = if path == "." || path.is_empty() {
            format!("pipeline.nodes.{node}.params")
        } else {
            format!("pipeline.nodes.{node}.params.{path}")
        };
        format!("{key}: {}", inner.message().trim())
    })
}

/// The rules an `acl` node's parameters give (the `rules` file read now), validated.
fn acl_rules(node: &str, p: &toml::Table) -> Result<AclConfig, String> {
    let params: AclParams = params_as(node, p)?;
    let cfg = params.load().map_err(|e| param_error(node, e))?;
    expand_config(&cfg).map_err(|e| {
        let k = if params.rules.is_some() {
            "rules"
        } else {
            "acl"
        };
        format!("pipeline.nodes.{node}.params.{k}: {e}")
    })?;
    Ok(cfg)
}

impl Reloader {
    /// Starts watching for SIGHUP for the run of `plan`: remembers the config as it is now
    /// (the file's tables, the plan's pipeline, the rules of its `acl` nodes).
    pub fn new(plan: &Plan) -> Reloader {
        let sighup = Arc::new(AtomicBool::new(false));
        let sig_id = signal_hook::flag::register(signal_hook::consts::SIGHUP, Arc::clone(&sighup))
            .map_err(|e| eprintln!("warning: no config reload on SIGHUP: {e}"))
            .ok();
        let (baseline, baseline_error) = if plan.file == Path::new(EMBEDDED_NAME) {
            (
                None,
                Some("the embedded default configuration has no file to read again (start with --config FILE)".to_string()),
            )
        } else {
            match std::fs::read_to_string(&plan.file)
                .map_err(|e| format!("cannot read: {e}"))
                .and_then(|t| toml::from_str::<toml::Table>(&t).map_err(|e| e.to_string()))
            {
                Ok(t) => (Some(t), None),
                Err(e) => (None, Some(e)),
            }
        };
        let mut acl = BTreeMap::new();
        if let Some(spec) = &plan.pipeline {
            for n in spec.nodes.iter().filter(|n| n.kind == "acl") {
                if let Ok(cfg) = acl_rules(&n.name, &n.params) {
                    acl.insert(n.name.clone(), cfg);
                }
            }
        }
        Reloader {
            file: plan.file.clone(),
            sighup,
            sig_id,
            baseline,
            baseline_error,
            running: plan.pipeline.clone(),
            acl,
            counts: ReloadCounts::default(),
        }
    }

    /// Reloads if SIGHUP arrived since the last call (call it from the control loop).
    pub fn poll(&mut self) -> Option<Outcome> {
        if !self.sighup.swap(false, Ordering::AcqRel) {
            return None;
        }
        eprintln!("reload: SIGHUP: reading {}", self.file.display());
        Some(self.reload())
    }

    /// Reload outcomes of this run so far.
    pub fn counts(&self) -> ReloadCounts {
        self.counts.clone()
    }

    fn err(&self, key: &str, reason: impl Into<String>) -> String {
        ConfigError {
            file: self.file.clone(),
            key: key.to_string(),
            reason: reason.into(),
        }
        .to_string()
    }

    /// Reads the file again and applies what changed (see the module docs); logs and counts
    /// the outcome.
    pub fn reload(&mut self) -> Outcome {
        let outcome = self.reload_inner();
        let (line, total) = match &outcome {
            Outcome::Applied(lines) => {
                self.counts.applied += 1;
                (format!("applied: {}", lines.join("; ")), &TOTAL_APPLIED)
            }
            Outcome::Unchanged => {
                self.counts.unchanged += 1;
                ("no change".to_string(), &TOTAL_UNCHANGED)
            }
            Outcome::Refused(problems) => {
                self.counts.refused += 1;
                (
                    format!(
                        "refused, the running configuration stays: {}",
                        problems.join("; ")
                    ),
                    &TOTAL_REFUSED,
                )
            }
            Outcome::Partial { applied, error } => {
                self.counts.refused += 1;
                (
                    format!(
                        "failed part-way: applied {}; then {error}",
                        if applied.is_empty() {
                            "nothing".to_string()
                        } else {
                            applied.join("; ")
                        }
                    ),
                    &TOTAL_REFUSED,
                )
            }
        };
        // One log line per reload (multi-line parser messages folded).
        let line = line.replace('\n', " | ");
        eprintln!("reload: {line}");
        self.counts.last = Some(line.clone());
        *TOTAL_LAST.lock().unwrap_or_else(|e| e.into_inner()) = Some(line);
        total.fetch_add(1, Ordering::AcqRel);
        outcome
    }

    fn reload_inner(&mut self) -> Outcome {
        let refuse = |v: String| Outcome::Refused(vec![v]);
        if let Some(e) = &self.baseline_error {
            return refuse(self.err("-", e.clone()));
        }
        let text = match std::fs::read_to_string(&self.file) {
            Ok(t) => t,
            Err(e) => return refuse(self.err("-", format!("cannot read: {e}"))),
        };
        let cfg = match ConfigFile::parse(&text, &self.file) {
            Ok(c) => c,
            Err(e) => return refuse(e.to_string()),
        };
        let raw: toml::Table = match toml::from_str(&text) {
            Ok(t) => t,
            Err(e) => return refuse(self.err("-", e.to_string())),
        };
        let baseline = self.baseline.as_ref().expect("checked above");
        if let Some(key) = table_diff("", baseline, &raw, &["pipeline"]) {
            return refuse(self.err(
                &key,
                "cannot change while running (ports, EAL, lcores, workers, mempool, forwarding, stats and discovery are fixed at start): restart to apply",
            ));
        }
        let changes = match self.validate_pipeline(cfg.pipeline.as_ref()) {
            Ok(c) => c,
            Err(problems) => return Outcome::Refused(problems),
        };
        if changes.is_empty() {
            self.running = cfg.pipeline;
            return Outcome::Unchanged;
        }
        let mut applied = Vec::new();
        for ch in changes {
            match ch {
                Change::Acl { node, cfg } => {
                    let Some(hub) = crate::dpdk::acl::acl_hub(&node) else {
                        return Outcome::Partial {
                            applied,
                            error: format!("acl node `{node}`: no running hub"),
                        };
                    };
                    // Only set or group members changed: a membership update (no rebuild
                    // of the classifier for large sets); otherwise the whole rule set.
                    match hub.apply_config(&cfg, PUBLISH_WAIT) {
                        Ok(a) => {
                            applied.push(describe_applied(&node, &a, cfg.rules.len()));
                            self.acl.insert(node, cfg);
                        }
                        Err(e) => {
                            return Outcome::Partial {
                                applied,
                                error: format!("acl node `{node}`: {e}"),
                            }
                        }
                    }
                }
                Change::Lb {
                    node,
                    control,
                    name,
                    cfg,
                } => {
                    let t0 = Instant::now();
                    let backends: usize = cfg.services.iter().map(|s| s.backends.len()).sum();
                    match control.update(&cfg) {
                        Ok(generation) => applied.push(format!(
                            "lb node `{node}` (control `{name}`): generation {generation}, {} services, {backends} backends, built in {:.1} ms",
                            cfg.services.len(),
                            t0.elapsed().as_secs_f64() * 1e3
                        )),
                        Err(e) => {
                            return Outcome::Partial {
                                applied,
                                error: format!("lb node `{node}`: {e}"),
                            }
                        }
                    }
                }
            }
        }
        self.running = cfg.pipeline;
        Outcome::Applied(applied)
    }

    /// Checks the new pipeline against the running one and validates every changed node.
    fn validate_pipeline(&self, new: Option<&GraphSpec>) -> Result<Vec<Change>, Vec<String>> {
        let (old, new) = match (self.running.as_ref(), new) {
            (None, None) => return Ok(Vec::new()),
            (Some(o), Some(n)) => (o, n),
            _ => {
                return Err(vec![self.err(
                    "pipeline",
                    "adding or removing the pipeline cannot be done live: restart to apply",
                )])
            }
        };
        let shape = "the graph's shape is fixed at start: restart to apply";
        if old.input != new.input {
            return Err(vec![self.err("pipeline.input", shape)]);
        }
        if old.edges != new.edges {
            let i = old
                .edges
                .iter()
                .zip(&new.edges)
                .position(|(a, b)| a != b)
                .unwrap_or(old.edges.len().min(new.edges.len()));
            return Err(vec![self.err(&format!("pipeline.edges[{i}]"), shape)]);
        }
        let names = |s: &GraphSpec| s.nodes.iter().map(|n| n.name.clone()).collect::<Vec<_>>();
        if names(old) != names(new) {
            let (o, n) = (names(old), names(new));
            let which = n
                .iter()
                .find(|x| !o.contains(x))
                .map(|x| format!("node `{x}` added"))
                .or_else(|| {
                    o.iter()
                        .find(|x| !n.contains(x))
                        .map(|x| format!("node `{x}` removed"))
                })
                .unwrap_or_else(|| "nodes reordered".to_string());
            return Err(vec![self.err("pipeline.nodes", format!("{which}: {shape}"))]);
        }
        let mut problems = Vec::new();
        let mut changes = Vec::new();
        for (o, n) in old.nodes.iter().zip(&new.nodes) {
            let node = &n.name;
            if o.kind != n.kind {
                problems.push(self.err(
                    &format!("pipeline.nodes.{node}.kind"),
                    format!(
                        "`{}` -> `{}`: a node's kind cannot change live",
                        o.kind, n.kind
                    ),
                ));
                continue;
            }
            match n.kind.as_str() {
                "acl" => {
                    let prefix = format!("pipeline.nodes.{node}.params");
                    if let Some(k) = table_diff(&prefix, &o.params, &n.params, &ACL_LIVE_PARAMS) {
                        problems.push(self.err(
                            &k,
                            format!(
                                "fixed when the nodes were built (live: {})",
                                ACL_LIVE_PARAMS.join(", ")
                            ),
                        ));
                        continue;
                    }
                    match acl_rules(node, &n.params) {
                        Ok(cfg) if self.acl.get(node) == Some(&cfg) => {}
                        Ok(cfg) => changes.push(Change::Acl {
                            node: node.clone(),
                            cfg,
                        }),
                        Err(e) => problems.push(self.err_line(e)),
                    }
                }
                "lb" => match self.validate_lb(node, &o.params, &n.params) {
                    Ok(Some(c)) => changes.push(c),
                    Ok(None) => {}
                    Err(e) => problems.push(self.err_line(e)),
                },
                kind => {
                    if let Some(k) = table_diff(
                        &format!("pipeline.nodes.{node}.params"),
                        &o.params,
                        &n.params,
                        &[],
                    ) {
                        problems.push(self.err(
                            &k,
                            format!("a `{kind}` node's parameters cannot change live (only `acl` rules and `lb` services can)"),
                        ));
                    }
                }
            }
        }
        if problems.is_empty() {
            Ok(changes)
        } else {
            Err(problems)
        }
    }

    /// `KEY: REASON` -> `FILE: KEY: REASON`.
    fn err_line(&self, key_reason: String) -> String {
        match key_reason.split_once(": ") {
            Some((k, r)) => self.err(k, r),
            None => self.err("-", key_reason),
        }
    }

    fn validate_lb(
        &self,
        node: &str,
        old: &toml::Table,
        new: &toml::Table,
    ) -> Result<Option<Change>, String> {
        let prefix = format!("pipeline.nodes.{node}.params");
        let lb_err = |e: pipeline::lb::ConfigError| {
            if e.key.is_empty() {
                format!("{prefix}: {}", e.reason)
            } else {
                format!("{prefix}.{}: {}", e.key, e.reason)
            }
        };
        let old_cfg: LbConfig = params_as(node, old)?;
        let new_cfg: LbConfig = params_as(node, new)?;
        if old == new && old_cfg.file.is_none() {
            return Ok(None);
        }
        let old_name = old_cfg.resolve().ok().and_then(|c| c.control);
        let cfg = new_cfg.resolve().map_err(lb_err)?;
        let Some(name) = old_name else {
            return Err(format!(
                "{prefix}: this lb node was started without a `control` name, so its services cannot change live (restart to apply)"
            ));
        };
        if cfg.control.as_deref() != Some(name.as_str()) {
            return Err(format!(
                "{prefix}.control: `{name}` -> {:?}: fixed when the nodes were built",
                cfg.control
            ));
        }
        let control = LbControl::named(&name)
            .ok_or_else(|| format!("{prefix}.control: no running load balancer `{name}`"))?;
        let running = control.config();
        if running == cfg {
            return Ok(None);
        }
        for (k, same) in [
            ("conntrack", cfg.conntrack == running.conntrack),
            ("max_services", cfg.max_services == running.max_services),
            ("max_backends", cfg.max_backends == running.max_backends),
        ] {
            if !same {
                return Err(format!("{prefix}.{k}: fixed when the nodes were built"));
            }
        }
        // Dry run: everything a table build refuses (the real build reuses the live ids).
        ServiceTable::build(&cfg, &mut IdSpace::default(), 0).map_err(lb_err)?;
        Ok(Some(Change::Lb {
            node: node.to_string(),
            control,
            name,
            cfg,
        }))
    }
}

impl Drop for Reloader {
    fn drop(&mut self) {
        if let Some(id) = self.sig_id.take() {
            signal_hook::low_level::unregister(id);
        }
    }
}

/// One log line for an ACL publication through [`pipeline::acl::AclHub::apply_config`]:
/// a rebuild (`rules` rules) or a membership update. Shared by reloads and the OVN follower.
pub fn describe_applied(node: &str, applied: &Applied, rules: usize) -> String {
    match applied {
        Applied::Rebuilt(r) => {
            // "<how> in X ms (classifier), n/m workers switched in Y ms"
            let built = |b: &pipeline::acl::PublishReport, how: &str| {
                format!(
                    "{how} in {:.1} ms ({}), {}/{} workers switched in {:.1} ms",
                    b.build_seconds * 1e3,
                    b.classifier,
                    b.switched,
                    b.workers,
                    b.wait_seconds * 1e3,
                )
            };
            match r.layered.as_deref() {
                Some(first) => format!(
                    "acl node `{node}`: generation {}, {rules} rules ({} flat), {}; generation {}: {}",
                    first.generation,
                    r.flat_rules,
                    built(first, "added ACLs layered"),
                    r.generation,
                    built(r, "whole classifier built"),
                ),
                None => format!(
                    "acl node `{node}`: generation {}, {rules} rules ({} flat), {}",
                    r.generation,
                    r.flat_rules,
                    built(r, "built"),
                ),
            }
        }
        Applied::Members(r) => match &r.rebuild {
            Some(b) => format!(
                "acl node `{node}`: generation {}, members of expanded sets changed: rebuilt ({} flat rules) in {:.1} ms, {}/{} workers switched",
                r.generation,
                b.flat_rules,
                b.build_seconds * 1e3,
                r.switched,
                r.workers,
            ),
            None => format!(
                "acl node `{node}`: generation {}, membership update of {} changes ({} set entries{}), {}/{} workers switched in {:.3} ms",
                r.generation,
                r.changes,
                r.set_ops,
                if r.port_bits_changed { ", port groups" } else { "" },
                r.switched,
                r.workers,
                r.seconds * 1e3,
            ),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{self, Host};
    use pipeline::{Graph, PortInfo, TestBuf};

    fn write(path: &Path, text: &str) {
        std::fs::write(path, text).unwrap();
    }

    /// A config over two ring ports with `parse -> acl -> lb -> forward`; `acl_name` and
    /// `control` keep tests apart (hubs and controls are per process).
    fn config(tag: &str, rules: &Path, acl_extra: &str, backends: &str, rxd: u32) -> String {
        format!(
            r#"
[eal]
lcores = [0, 1]
no_huge = true
[ports.r0]
role = "a"
kind = "ring"
rxd = {rxd}
[ports.r1]
role = "b"
kind = "ring"
[pipeline]
input = "parse"
[[pipeline.nodes]]
name = "parse"
kind = "parse"
[[pipeline.nodes]]
name = "acl_{tag}"
kind = "acl"
params = {{ rules = "{rules}" {acl_extra} }}
[[pipeline.nodes]]
name = "lb_{tag}"
kind = "lb"
[pipeline.nodes.params]
control = "ctl_{tag}"
conntrack = {{ capacity = 1024 }}
[[pipeline.nodes.params.services]]
name = "web"
vip = "192.0.2.10"
protocol = "tcp"
port = 80
backends = [{backends}]
[[pipeline.nodes]]
name = "forward"
kind = "forward"
params = {{ mode = "cross-connect", pairs = [["r0", "r1"]] }}
[[pipeline.edges]]
from = "parse"
to = "acl_{tag}"
[[pipeline.edges]]
from = "acl_{tag}"
to = "lb_{tag}"
[[pipeline.edges]]
from = "lb_{tag}"
to = "forward"
[[pipeline.nodes]]
name = "reset"
kind = "forward"
params = {{ mode = "by-metadata" }}
[[pipeline.edges]]
from = "lb_{tag}"
output = "reset"
to = "reset"
"#,
            rules = rules.display()
        )
    }

    fn rules(block: bool) -> String {
        let mut s = String::from(
            "[acl]\ndefault = \"drop\"\n[[acl.rules]]\nname = \"allow-all\"\ndirection = \"from-lport\"\npriority = 1\nmatch = \"ip4\"\naction = \"allow\"\n",
        );
        if block {
            s += "[[acl.rules]]\nname = \"block-5001\"\ndirection = \"from-lport\"\npriority = 100\nmatch = \"udp.dst == 5001\"\naction = \"drop\"\n";
        }
        s
    }

    const B2: &str =
        r#"{ address = "10.0.0.1", port = 8080 }, { address = "10.0.0.2", port = 8080 }"#;
    const B3: &str = r#"{ address = "10.0.0.1", port = 8080 }, { address = "10.0.0.2", port = 8080 }, { address = "10.0.0.3", port = 8080 }"#;

    struct Setup {
        dir: PathBuf,
        file: PathBuf,
        rules: PathBuf,
        _graph: Graph<TestBuf>,
        reloader: Reloader,
    }

    fn setup(tag: &str) -> Setup {
        setup_with(tag, "")
    }

    /// [`setup`] with `acl_extra` appended to the `acl` node's parameters.
    fn setup_with(tag: &str, acl_extra: &str) -> Setup {
        let dir = std::env::temp_dir().join(format!("dp-reload-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("dp.toml");
        let rules_path = dir.join("rules.toml");
        write(&rules_path, &rules(false));
        write(&file, &config(tag, &rules_path, acl_extra, B2, 1024));
        let cfg = ConfigFile::load(&file).unwrap();
        let plan = plan::build(&cfg, &file, &Host::with_cpus(&[0, 1])).unwrap();
        let infos: Vec<PortInfo> = plan
            .ports
            .iter()
            .enumerate()
            .map(|(i, p)| PortInfo::new(i as u16, p.name.clone(), p.role.clone()))
            .collect();
        // The "running" graph: creates the ACL hub and the LB control the reload updates.
        let graph = Graph::build(
            plan.pipeline.as_ref().unwrap(),
            &crate::nodes::registry(),
            &infos,
        )
        .unwrap();
        let reloader = Reloader::new(&plan);
        Setup {
            dir,
            file,
            rules: rules_path,
            _graph: graph,
            reloader,
        }
    }

    fn refused(o: &Outcome) -> String {
        match o {
            Outcome::Refused(p) => p.join("; "),
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    /// Rules blocking a 20-host address set (a set class), of which `hosts` are listed.
    fn set_rules(hosts: std::ops::Range<u32>) -> String {
        let list: Vec<String> = hosts.map(|i| format!("\"10.9.0.{i}\"")).collect();
        format!(
            "{}[acl.address_sets]\nblocked = [{}]\n[[acl.rules]]\nname = \"block-set\"\ndirection = \"from-lport\"\npriority = 100\nmatch = \"ip4.src == $blocked\"\naction = \"drop\"\n",
            rules(false),
            list.join(", ")
        )
    }

    #[test]
    fn a_changed_large_set_reloads_as_a_membership_update() {
        let tag = "u3";
        // Sets of 16 entries or more are set classes (the default threshold is larger).
        let mut s = setup_with(tag, ", set_class_min_entries = 16");
        let hub = crate::dpdk::acl::acl_hub(&format!("acl_{tag}")).unwrap();
        write(&s.rules, &set_rules(0..20));
        let o = s.reloader.reload();
        assert!(
            matches!(&o, Outcome::Applied(l) if l[0].contains("flat")),
            "a new rule: rebuilt: {o:?}"
        );
        let program = hub.current();
        assert_eq!(hub.table().set_classes().len(), 1);
        // Two hosts out, three in: one membership update of 5 changes, the program stays.
        write(&s.rules, &set_rules(2..23));
        let g = hub.generation();
        let o = s.reloader.reload();
        assert!(
            matches!(&o, Outcome::Applied(l) if l[0].contains("membership update of 5 changes (5 set entries)")),
            "{o:?}"
        );
        assert_eq!(hub.generation(), g + 1);
        assert!(Arc::ptr_eq(&program, &hub.current()), "no rebuild");
        let m = hub.members();
        let bits = |a: &str| m.bits_of(&a.parse().unwrap());
        assert_eq!(
            (bits("10.9.0.1"), bits("10.9.0.2"), bits("10.9.0.22")),
            (0, 1, 1)
        );
        assert_eq!(
            hub.rules().address_set("blocked").unwrap().entries.len(),
            21
        );
        assert_eq!(s.reloader.reload(), Outcome::Unchanged);
        let _ = std::fs::remove_dir_all(&s.dir);
    }

    #[test]
    fn rules_file_and_services_apply_and_structural_changes_are_refused() {
        let tag = "u1";
        let mut s = setup(tag);
        let hub = crate::dpdk::acl::acl_hub(&format!("acl_{tag}")).unwrap();
        let control = LbControl::named(&format!("ctl_{tag}")).unwrap();
        assert_eq!(s.reloader.reload(), Outcome::Unchanged);

        // The rules file changes, the config does not: published as generation 2.
        write(&s.rules, &rules(true));
        let o = s.reloader.reload();
        assert!(
            matches!(&o, Outcome::Applied(l) if l.len() == 1 && l[0].contains("generation 2")),
            "{o:?}"
        );
        assert_eq!(hub.generation(), 2);
        assert_eq!(hub.rules().acls().len(), 2);
        assert_eq!(s.reloader.reload(), Outcome::Unchanged);

        // A bad rule: refused with file, key and reason; generation stays.
        write(
            &s.rules,
            &rules(true).replace("udp.dst == 5001", "udp.dst == 99999"),
        );
        let why = refused(&s.reloader.reload());
        assert!(
            why.contains(&format!("pipeline.nodes.acl_{tag}.params.rules")),
            "{why}"
        );
        assert!(why.starts_with(&s.file.display().to_string()), "{why}");
        assert_eq!(hub.generation(), 2);
        write(&s.rules, &rules(true));

        // A backend added: the control publishes generation 2.
        write(&s.file, &config(tag, &s.rules, "", B3, 1024));
        let o = s.reloader.reload();
        assert!(
            matches!(&o, Outcome::Applied(l) if l.len() == 1 && l[0].contains("3 backends")),
            "{o:?}"
        );
        assert_eq!(control.stats().generation, 2);
        assert_eq!(control.config().services[0].backends.len(), 3);

        // Refusals naming the key; nothing applied.
        let cases = [
            (
                config(tag, &s.rules, "", B3, 512),
                "ports.r0.rxd".to_string(),
            ),
            (
                config(tag, &s.rules, ", stateful = 1024", B3, 1024),
                format!("pipeline.nodes.acl_{tag}.params.stateful"),
            ),
            (
                config(tag, &s.rules, "", B3, 1024).replace("capacity = 1024", "capacity = 2048"),
                format!("pipeline.nodes.lb_{tag}.params.conntrack"),
            ),
            (
                config(tag, &s.rules, "", B3, 1024)
                    .replace("address = \"10.0.0.3\"", "address = \"2001:db8::3\""),
                format!("pipeline.nodes.lb_{tag}.params.services"),
            ),
            (
                config(tag, &s.rules, "", B3, 1024).replace("kind = \"parse\"", "kind = \"null\""),
                "pipeline.nodes.parse.kind".to_string(),
            ),
            (
                config(tag, &s.rules, "", B3, 1024)
                    .replace("[[\"r0\", \"r1\"]]", "[[\"r1\", \"r0\"]]"),
                "pipeline.nodes.forward.params.pairs".to_string(),
            ),
            (
                config(tag, &s.rules, "", B3, 1024).replace("to = \"forward\"", "to = \"parse\""),
                "pipeline.edges[2]".to_string(),
            ),
            (
                config(tag, &s.rules, "", B3, 1024)
                    .replace("no_huge = true", "no_huge = true\nbogus = 1"),
                "eal.bogus".to_string(),
            ),
            ("[eal\n".to_string(), "-".to_string()),
        ];
        for (text, key) in cases {
            write(&s.file, &text);
            let why = refused(&s.reloader.reload());
            assert!(why.contains(&key), "expected {key} in: {why}");
            assert_eq!(hub.generation(), 2, "{key}");
            assert_eq!(control.stats().generation, 2, "{key}");
        }
        // Back to the running config: nothing to do. The same rules inline instead of the
        // file: nothing to publish either. Then a new default: generation 3.
        write(&s.file, &config(tag, &s.rules, "", B3, 1024));
        assert_eq!(s.reloader.reload(), Outcome::Unchanged);
        let inline = r#"acl = { default = "drop", rules = [
  { name = "allow-all", direction = "from-lport", priority = 1, match = "ip4", action = "allow" },
  { name = "block-5001", direction = "from-lport", priority = 100, match = "udp.dst == 5001", action = "drop" } ] }"#;
        let text = config(tag, &s.rules, "", B3, 1024)
            .replace(&format!("rules = \"{}\"", s.rules.display()), inline);
        assert!(text.contains("block-5001"));
        write(&s.file, &text);
        assert_eq!(s.reloader.reload(), Outcome::Unchanged);
        write(
            &s.file,
            &config(tag, &s.rules, ", default = \"allow\"", B3, 1024),
        );
        assert!(matches!(s.reloader.reload(), Outcome::Applied(_)));
        assert_eq!(hub.generation(), 3);
        let c = s.reloader.counts();
        assert_eq!((c.applied, c.refused, c.unchanged), (3, 10, 4), "{c:?}");
        let _ = std::fs::remove_dir_all(&s.dir);
    }

    #[test]
    fn first_difference_names_the_key() {
        let a: toml::Table = toml::from_str("x = 1\n[p.q]\nr = [1, 2]\n").unwrap();
        let b: toml::Table = toml::from_str("x = 1\n[p.q]\nr = [1, 3]\n").unwrap();
        assert_eq!(table_diff("", &a, &b, &[]), Some("p.q.r[1]".into()));
        assert_eq!(table_diff("", &a, &a, &[]), None);
        assert_eq!(table_diff("", &a, &b, &["p"]), None);
        let c: toml::Table = toml::from_str("x = 1\ny = 2\n").unwrap();
        assert_eq!(table_diff("", &a, &c, &["p"]), Some("y".into()));
    }
}
