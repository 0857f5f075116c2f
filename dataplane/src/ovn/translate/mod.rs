//! From the NB replica to enforced policy: the rows that concern our ports, translated into
//! our ACL model (an [`AclConfig`]: port groups, address sets, rules) and our load-balancer
//! services. Pure: no DPDK, no I/O; the caller logs [`Translation::refused`] and publishes
//! [`Translation::policy`] when it differs from the last one ([`PolicyTracker`]).
//!
//! What is taken (OVN's semantics, `shared/OVN.md`):
//! - our LSPs ([`binding`]), the logical switches holding them, every port group with a
//!   member on those switches (OVN installs a group's ACLs on every switch hosting a
//!   member; the match's `inport/outport == @pg` limits it), their ACLs and the switches'
//!   ACLs;
//! - the port groups and address sets the taken matches reference: a group's members are
//!   our dataplane ports whose LSP is in it; `$<pg>_ip4`/`$<pg>_ip6` are derived from every
//!   member LSP ([`addresses`]); NB address sets by name (an NB set wins a name clash);
//! - the load balancers of those switches and of their load-balancer groups ([`lbs`]).
//!
//! Rules are named by the NB ACL's UUID ([`Translation::acl_origins`] keeps its name,
//! owner, label, log settings and `external_ids` for attribution). Order: priority, then
//! drops before allows at equal priority (OVN leaves equal-priority overlap undefined), then
//! UUID. Default: `allow` unless `NB_Global options:default_acl_drop=true`. `allow`, and the
//! default allow, commit to conntrack (`allow-related`) when a taken switch is stateful (an
//! `allow-related` ACL or a load balancer), as OVN does (its default's priority-1 flow
//! commits too: so the replies of a connection no ACL decided pass a stage whose rules would
//! drop them, e.g. a pod's egress default-deny); `allow-stateless` is our stateless `allow`. When the
//! schema has ACL tiers and several are used, (tier, priority) pairs are ranked into one
//! priority space (tier 0 first); `pass` is not compiled. A `from-lport` ACL with
//! `options:apply-after-lb=true` (ovn-kubernetes's egress NetworkPolicies) goes to a third
//! stage after the load balancer ([`Policy::after_lb`]), as ovn-northd's
//! `ls_in_acl_after_lb`; OVN ignores the option on `to-lport` ACLs, and so do we.

pub mod acls;
pub mod addresses;
pub mod binding;
pub mod lbs;
pub mod match_cache;
pub mod meters;
pub mod rows;
pub mod sets;

use std::collections::{BTreeMap, BTreeSet};

use pipeline::acl::log::{LogSpec, Severity};
use pipeline::acl::model::{AclRuleConfig, MAX_PRIORITY};
use pipeline::acl::{AclConfig, Action, Direction, RuleSet};
use pipeline::lb::service::ServiceConfig;

use crate::ovn::replica::Table;
use acls::{Failure, OvnNames};
pub use binding::{bind, Binding, BoundLsp, LocalPort, LspSelector};
pub use lbs::LbOrigin;
pub use match_cache::MatchCache;

/// Translation choices.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TranslateOptions {
    /// Skip (log and count) ACLs we cannot compile, as OVN skips matches it cannot parse,
    /// instead of failing closed.
    pub fail_open_unsupported: bool,
    /// A stage after the load balancer takes the `apply-after-lb` ACLs ([`Policy::after_lb`]);
    /// without one they cannot be applied where OVN applies them and fail closed.
    pub after_lb_stage: bool,
}

/// The policy to publish: compare two with `==` to know whether anything changed.
///
/// OVN judges a packet by the `from-lport` ACLs (before the load balancer, seeing the VIP),
/// then by the `from-lport` ACLs marked `apply-after-lb` (after it, seeing the backend), then
/// by the `to-lport` ACLs (after it too); each stage has its own priority space and every
/// one must allow. So the ACLs come as three rule sets, one per stage, for an `acl` node
/// before the `lb` node and two after it; each holds only the groups and sets its rules
/// reference. [`Policy::single_stage`] merges them for a pipeline with one `acl` node (an
/// approximation: one priority space for all).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Policy {
    /// The `from-lport` ACLs applied before the load balancer.
    pub from_lport: AclConfig,
    /// The `from-lport` ACLs with `options:apply-after-lb=true`. Its default allows
    /// whatever `default_acl_drop` says (ovn-northd's priority-0 flow of
    /// `ls_in_acl_after_lb` advances).
    pub after_lb: AclConfig,
    /// The `to-lport` ACLs.
    pub to_lport: AclConfig,
    /// Load-balancer services, sorted by name.
    pub services: Vec<ServiceConfig>,
}

impl Policy {
    /// All stages in one rule set (from-lport rules first at equal priority, then the
    /// after-lb ones).
    pub fn single_stage(&self) -> AclConfig {
        let mut out = self.from_lport.clone();
        out.address_sets = self.address_sets();
        for stage in [&self.after_lb, &self.to_lport] {
            for (k, v) in &stage.port_groups {
                out.port_groups.insert(k.clone(), v.clone());
            }
            for (k, v) in &stage.meters {
                out.meters.insert(k.clone(), *v);
            }
            out.rules.extend(stage.rules.iter().cloned());
        }
        out.rules.sort_by_key(|r| std::cmp::Reverse(r.priority));
        out
    }

    /// The address sets of all stages in one map, as [`Policy::single_stage`] holds them
    /// (without copying any rule).
    pub fn address_sets(&self) -> BTreeMap<String, Vec<pipeline::acl::IpNet>> {
        let mut out = BTreeMap::new();
        for (_, stage) in self.acl_stages() {
            for (k, v) in &stage.address_sets {
                out.insert(k.clone(), v.clone());
            }
        }
        out
    }

    /// The three ACL stages with their names, in the order a packet meets them.
    pub fn acl_stages(&self) -> [(&'static str, &AclConfig); 3] {
        [
            ("from-lport", &self.from_lport),
            ("from-lport after-lb", &self.after_lb),
            ("to-lport", &self.to_lport),
        ]
    }
}

/// The three stages (from-lport, from-lport after-lb, to-lport) of `all`, each with only the
/// groups, sets and meters its rules reference (the rules are moved, not copied). `after_lb`
/// names the rules of the after-lb stage, whose default is `after_default`.
fn stages(
    all: AclConfig,
    refs: &BTreeMap<String, BTreeSet<String>>,
    after_lb: &BTreeSet<String>,
    after_default: Action,
) -> [AclConfig; 3] {
    let AclConfig {
        default,
        port_groups,
        address_sets,
        rules,
        meters,
    } = all;
    let (ingress, egress): (Vec<AclRuleConfig>, Vec<AclRuleConfig>) = rules
        .into_iter()
        .partition(|r| r.direction == Direction::Ingress);
    let (after, before): (Vec<AclRuleConfig>, Vec<AclRuleConfig>) = ingress
        .into_iter()
        .partition(|r| after_lb.contains(r.name.as_deref().unwrap_or("")));
    let stage = |rules: Vec<AclRuleConfig>, default: Action| {
        let names: BTreeSet<&String> = rules
            .iter()
            .filter_map(|r| refs.get(r.name.as_deref().unwrap_or("")))
            .flatten()
            .collect();
        let used_meters: BTreeSet<&String> = rules
            .iter()
            .filter_map(|r| r.log.as_ref()?.meter.as_ref())
            .collect();
        AclConfig {
            default,
            port_groups: port_groups
                .iter()
                .filter(|(k, _)| names.contains(k))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            address_sets: address_sets
                .iter()
                .filter(|(k, _)| names.contains(k))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            meters: meters
                .iter()
                .filter(|(k, _)| used_meters.contains(k))
                .map(|(k, v)| (k.clone(), *v))
                .collect(),
            rules,
        }
    };
    [
        stage(before, default),
        stage(after, after_default),
        stage(egress, default),
    ]
}

/// Where a rule came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AclOrigin {
    /// NB ACL UUID (also the rule's name).
    pub uuid: String,
    /// `Port_Group <name>` or `Logical_Switch <name>`.
    pub owner: String,
    /// The ACL's `name` column (empty if unset).
    pub name: String,
    /// NB action as written.
    pub action: String,
    /// `label`.
    pub label: i64,
    /// `log`.
    pub log: bool,
    /// `options:log-related=true` with a non-zero `label`: the replies of the connections
    /// the ACL admits are logged too (OVN needs the label to tell whose replies they are).
    pub log_related: bool,
    /// `severity` (empty: info).
    pub severity: String,
    /// `meter`.
    pub meter: String,
    /// `tier` (0 when the schema has none).
    pub tier: i64,
    /// `external_ids` (`neutron:security_group_rule_id`, `k8s.ovn.org/name`, ...).
    pub external_ids: BTreeMap<String, String>,
    /// Set when the rule stands in for an ACL we could not compile (fail-closed drop).
    pub fail_closed: Option<String>,
}

impl AclOrigin {
    /// One line in the platform's words: `ACL <uuid> of Port_Group pg_x ("name"),
    /// neutron:security_group_rule_id=...`; a fail-closed stand-in says so.
    pub fn describe(&self) -> String {
        let mut s = format!("NB ACL {} of {}", self.uuid, self.owner);
        if !self.name.is_empty() {
            s += &format!(" ({:?})", self.name);
        }
        if self.label != 0 {
            s += &format!(", label {}", self.label);
        }
        for (k, v) in &self.external_ids {
            s += &format!(", {k}={v}");
        }
        if let Some(r) = &self.fail_closed {
            s += &format!(" [fail-closed stand-in: {r}]");
        }
        s
    }
}

/// What happened to a row that was not taken as written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Outcome {
    /// Left out: OVN would not enforce it either, or fail-open was chosen.
    Skipped,
    /// An allow left out (fail closed: it lets nothing through).
    AllowOmitted,
    /// Replaced by a drop of everything in its direction at its priority.
    DropInstead,
    /// Taken in part (e.g. an address set without its unparsable entries).
    Partial,
}

/// A row not taken as written.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Refusal {
    /// NB table.
    pub table: &'static str,
    /// Row UUID.
    pub uuid: String,
    /// What happened.
    pub outcome: Outcome,
    /// Why.
    pub reason: String,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let what = match self.outcome {
            Outcome::Skipped => "skipped",
            Outcome::AllowOmitted => "not allowed (fail-closed)",
            Outcome::DropInstead => "dropping its direction at its priority (fail-closed)",
            Outcome::Partial => "taken in part",
        };
        write!(f, "{} {}: {what}: {}", self.table, self.uuid, self.reason)
    }
}

/// How many rows of each kind were taken.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Taken {
    /// Logical switches holding our LSPs.
    pub switches: usize,
    /// ACLs compiled as written.
    pub acls: usize,
    /// Port groups in the model.
    pub port_groups: usize,
    /// NB address sets in the model.
    pub address_sets: usize,
    /// Derived `$<pg>_ip4/6` sets in the model.
    pub derived_sets: usize,
    /// Load balancers taken.
    pub load_balancers: usize,
    /// Services they gave.
    pub services: usize,
}

/// The result of one translation.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Translation {
    /// Each dataplane port's LSP.
    pub bindings: Vec<Binding>,
    /// The policy.
    pub policy: Policy,
    /// Rule name (ACL UUID) to its origin.
    pub acl_origins: BTreeMap<String, AclOrigin>,
    /// Service name to its origin.
    pub lb_origins: BTreeMap<String, LbOrigin>,
    /// Counts.
    pub taken: Taken,
    /// Rows not taken as written, sorted.
    pub refused: Vec<Refusal>,
}

impl Translation {
    /// Builds each stage's rule set, as its publication will: each rule was checked alone,
    /// so a stage that does not build is a bug in this module, and it fails closed to a
    /// stage that drops everything (a refusal says so). [`translate`] and `dataplane check`
    /// verify; the follower leaves it to the publication.
    pub fn verify(&mut self) {
        for stage in [
            &mut self.policy.from_lport,
            &mut self.policy.after_lb,
            &mut self.policy.to_lport,
        ] {
            if let Err(e) = RuleSet::from_config(stage) {
                self.refused.push(Refusal {
                    table: "ACL",
                    uuid: "-".into(),
                    outcome: Outcome::DropInstead,
                    reason: format!("the translated rule set does not build ({e}): dropping all"),
                });
                *stage = AclConfig {
                    default: Action::Drop,
                    ..AclConfig::default()
                };
            }
        }
        self.refused.sort();
    }

    /// A multi-line account for `dataplane check` and `show ovn`.
    pub fn report(&self) -> String {
        let mut out = String::new();
        for b in &self.bindings {
            out.push_str(&format!("  port {}\n", b.describe()));
        }
        let t = &self.taken;
        out.push_str(&format!(
            "  took: {} switches, {} ACLs ({} from-lport + {} from-lport after-lb + {} to-lport rules), {} port groups, {} address sets + {} derived, {} load balancers ({} services); default {:?}\n",
            t.switches,
            t.acls,
            self.policy.from_lport.rules.len(),
            self.policy.after_lb.rules.len(),
            self.policy.to_lport.rules.len(),
            t.port_groups,
            t.address_sets,
            t.derived_sets,
            t.load_balancers,
            t.services,
            self.policy.from_lport.default
        ));
        out.push_str(&format!("  refused: {}\n", self.refused.len()));
        for r in &self.refused {
            out.push_str(&format!("    {r}\n"));
        }
        out
    }
}

/// How an ACL logs: its `name`, `severity` and `meter` when `log` is true (OVN writes no
/// line for an ACL with `log=false`, whatever its other columns say). A name OVN's schema
/// would refuse (over 63 characters) or that would break the line (a `"`) is cut at the
/// limit and has its quotes replaced.
fn log_spec(origin: &AclOrigin) -> Option<LogSpec> {
    if !origin.log {
        return None;
    }
    let name: String = origin
        .name
        .chars()
        .filter(|c| !c.is_control())
        .map(|c| if c == '"' { '\'' } else { c })
        .take(pipeline::acl::log::MAX_NAME_LEN)
        .collect();
    Some(LogSpec {
        name,
        severity: Severity::from_nb(&origin.severity),
        meter: (!origin.meter.is_empty()).then(|| origin.meter.clone()),
        related: origin.log_related,
    })
}

fn ordering_rank(a: Action) -> u8 {
    match a {
        Action::Drop | Action::Reject => 0,
        _ => 1,
    }
}

/// Translates the replica for these ports.
pub fn translate(
    tables: &BTreeMap<String, Table>,
    ports: &[LocalPort],
    opts: TranslateOptions,
) -> Translation {
    let mut t = translate_with(tables, ports, opts, &mut MatchCache::default());
    t.verify();
    t
}

/// [`translate`] without [`Translation::verify`], with the matches the previous
/// translations compiled kept in `cache`: the follower's, where an NB change then compiles
/// only the matches it touched, and each stage's rule set is built by its publication
/// anyway (a set that does not build is refused there: the stage keeps its last policy, the
/// failure is logged and counted, and the next change retries it).
pub fn translate_with(
    tables: &BTreeMap<String, Table>,
    ports: &[LocalPort],
    opts: TranslateOptions,
    cache: &mut MatchCache,
) -> Translation {
    let lsps = rows::table(tables, "Logical_Switch_Port");
    let bindings = bind(lsps, ports);
    // LSP uuid -> dataplane port; LSP name -> dataplane port.
    let ours: BTreeMap<&str, &str> = bindings
        .iter()
        .filter_map(|b| Some((b.lsp.as_ref().ok()?.uuid.as_str(), b.port.as_str())))
        .collect();
    let local_names: BTreeMap<String, String> = bindings
        .iter()
        .filter_map(|b| Some((b.lsp.as_ref().ok()?.name.clone(), b.port.clone())))
        .collect();
    let mut refused = Vec::new();
    let mut taken = Taken::default();

    // Our switches and every LSP they host.
    let switches: Vec<(&String, &crate::ovn::replica::Row)> = rows::table(tables, "Logical_Switch")
        .iter()
        .filter(|(_, ls)| {
            rows::uuids(ls, "ports")
                .iter()
                .any(|p| ours.contains_key(p))
        })
        .collect();
    taken.switches = switches.len();
    let hosted: BTreeSet<&str> = switches
        .iter()
        .flat_map(|(_, ls)| rows::uuids(ls, "ports"))
        .collect();

    // ACL uuid -> owner, from the groups with a member on our switches and the switches.
    let port_groups = rows::table(tables, "Port_Group");
    let mut owners: BTreeMap<&str, String> = BTreeMap::new();
    for pg in port_groups.values() {
        if rows::uuids(pg, "ports").iter().any(|p| hosted.contains(p)) {
            for a in rows::uuids(pg, "acls") {
                owners
                    .entry(a)
                    .or_insert_with(|| format!("Port_Group {}", rows::text(pg, "name")));
            }
        }
    }
    for (_, ls) in &switches {
        for a in rows::uuids(ls, "acls") {
            owners
                .entry(a)
                .or_insert_with(|| format!("Logical_Switch {}", rows::text(ls, "name")));
        }
    }

    // Load balancers of our switches and their groups.
    let lb_table = rows::table(tables, "Load_Balancer");
    let lb_uuids = taken_lb_uuids(tables, &ours.keys().copied().collect());

    let acl_table = rows::table(tables, "ACL");
    let stateful = !lb_uuids.is_empty()
        || owners.keys().any(|u| {
            acl_table
                .get(*u)
                .is_some_and(|a| rows::text(a, "action") == "allow-related")
        });

    // Tiers: rank (tier, priority) into one space when several tiers are used.
    let tiers: BTreeSet<i64> = owners
        .keys()
        .filter_map(|u| acl_table.get(*u))
        .map(|a| rows::int(a, "tier").unwrap_or(0))
        .collect();
    let rank: Option<BTreeMap<(i64, i64), u16>> = (tiers.len() > 1).then(|| {
        let mut pairs: Vec<(i64, i64)> = owners
            .keys()
            .filter_map(|u| acl_table.get(*u))
            .map(|a| {
                (
                    rows::int(a, "tier").unwrap_or(0),
                    rows::int(a, "priority").unwrap_or(0),
                )
            })
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        // Lowest effective priority first: the last tier's lowest priority.
        pairs.sort_by_key(|&(t, p)| (std::cmp::Reverse(t), p));
        pairs
            .into_iter()
            .enumerate()
            .map(|(i, k)| (k, i.min(MAX_PRIORITY as usize) as u16))
            .collect()
    });

    let nb_groups: BTreeSet<String> = port_groups
        .values()
        .map(|pg| rows::text(pg, "name").to_string())
        .collect();
    let address_set_table = rows::table(tables, "Address_Set");
    let nb_sets: BTreeSet<String> = address_set_table
        .values()
        .map(|s| rows::text(s, "name").to_string())
        .collect();
    let names = OvnNames {
        groups: &nb_groups,
        sets: &nb_sets,
    };

    let (meter_limits, meter_refusals) = meters::meters(
        rows::table(tables, "Meter"),
        rows::table(tables, "Meter_Band"),
    );
    refused.extend(meter_refusals);
    cache.begin(&names, &local_names);
    let mut rules: Vec<(u16, u8, String, AclRuleConfig)> = Vec::new();
    let mut acl_origins = BTreeMap::new();
    let mut used_groups = BTreeSet::new();
    let mut used_sets = BTreeSet::new();
    // Rule name -> the groups and sets it references (both share one namespace per stage).
    let mut refs: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    // The rules of the after-lb stage.
    let mut after_lb: BTreeSet<String> = BTreeSet::new();
    for (uuid, owner) in &owners {
        let Some(row) = acl_table.get(*uuid) else {
            continue;
        };
        let nb_action = rows::text(row, "action");
        let tier = rows::int(row, "tier").unwrap_or(0);
        let raw_priority = rows::int(row, "priority").unwrap_or(-1);
        let mut origin = AclOrigin {
            uuid: uuid.to_string(),
            owner: owner.clone(),
            name: rows::text(row, "name").to_string(),
            action: nb_action.to_string(),
            label: rows::int(row, "label").unwrap_or(0),
            log: rows::boolean(row, "log").unwrap_or(false),
            log_related: false,
            severity: rows::text(row, "severity").to_string(),
            meter: rows::text(row, "meter").to_string(),
            tier,
            external_ids: rows::map(row, "external_ids"),
            fail_closed: None,
        };
        let options = rows::map(row, "options");
        origin.log_related =
            options.get("log-related").map(String::as_str) == Some("true") && origin.label != 0;
        let after_lb_option = options.get("apply-after-lb").map(String::as_str) == Some("true");
        let compiled = (|| {
            // An unknown direction is skipped whatever the placeholder says.
            let dir = acls::direction(rows::text(row, "direction"))
                .map_err(|f| (Direction::Ingress, f))?;
            if !(0..=MAX_PRIORITY as i64).contains(&raw_priority) {
                return Err((
                    dir,
                    Failure::InvalidInOvn(format!("priority {raw_priority} out of 0..=32767")),
                ));
            }
            let action = acls::action(nb_action, stateful).map_err(|f| (dir, f))?;
            if after_lb_option && dir == Direction::Ingress && !opts.after_lb_stage {
                return Err((
                    dir,
                    Failure::Unsupported(
                        "options:apply-after-lb, and [ovn] names no after_lb_node to apply it after the load balancer".into(),
                    ),
                ));
            }
            let (text, g, s) = cache
                .compile(rows::text(row, "match"), dir)
                .map_err(|f| (dir, f))?;
            Ok((dir, action, text, g, s))
        })();
        let priority = match &rank {
            Some(r) => r.get(&(tier, raw_priority)).copied().unwrap_or(0),
            None => raw_priority.clamp(0, MAX_PRIORITY as i64) as u16,
        };
        let log = log_spec(&origin);
        if let Some(m) = log.as_ref().and_then(|l| l.meter.as_ref()) {
            if !meter_limits.contains_key(m) {
                refused.push(Refusal {
                    table: "ACL",
                    uuid: uuid.to_string(),
                    outcome: Outcome::Partial,
                    reason: format!(
                        "meter '{m}' does not exist (or was refused): logs with the default limit"
                    ),
                });
            }
        }
        let rule = |direction: Direction, text: String, action: Action| AclRuleConfig {
            name: Some(uuid.to_string()),
            direction,
            priority,
            match_expr: Some(text),
            fields: None,
            action,
            log: log.clone(),
        };
        // OVN applies the option to from-lport ACLs only; a fail-closed stand-in goes where
        // the ACL would have gone when a stage is there to take it.
        let after_lb_rule =
            |dir: Direction| after_lb_option && dir == Direction::Ingress && opts.after_lb_stage;
        match compiled {
            Ok((dir, action, text, g, s)) => {
                if after_lb_rule(dir) {
                    after_lb.insert(uuid.to_string());
                }
                refs.insert(uuid.to_string(), g.iter().chain(&s).cloned().collect());
                used_groups.extend(g);
                used_sets.extend(s);
                taken.acls += 1;
                rules.push((
                    priority,
                    ordering_rank(action),
                    uuid.to_string(),
                    rule(dir, text, action),
                ));
                acl_origins.insert(uuid.to_string(), origin);
            }
            Err((dir, failure)) => {
                let (reason, outcome) = match failure {
                    Failure::InvalidInOvn(r) => (r, Outcome::Skipped),
                    Failure::Unsupported(r) if opts.fail_open_unsupported => (r, Outcome::Skipped),
                    Failure::Unsupported(r) if matches!(nb_action, "drop" | "reject") => {
                        (r, Outcome::DropInstead)
                    }
                    Failure::Unsupported(r) => (r, Outcome::AllowOmitted),
                };
                if outcome == Outcome::DropInstead {
                    if after_lb_rule(dir) {
                        after_lb.insert(uuid.to_string());
                    }
                    origin.fail_closed = Some(reason.clone());
                    rules.push((
                        priority,
                        0,
                        uuid.to_string(),
                        rule(dir, "1".into(), Action::Drop),
                    ));
                    acl_origins.insert(uuid.to_string(), origin);
                }
                refused.push(Refusal {
                    table: "ACL",
                    uuid: uuid.to_string(),
                    outcome,
                    reason: format!(
                        "{reason} [{} {:?}]",
                        rows::text(row, "direction"),
                        rows::text(row, "match")
                    ),
                });
            }
        }
    }
    cache.end();
    rules.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));

    // Port groups: our ports among the members.
    let mut acl = AclConfig {
        default: Action::Allow,
        meters: meter_limits,
        ..AclConfig::default()
    };
    let groups_by_name: BTreeMap<&str, &crate::ovn::replica::Row> = port_groups
        .values()
        .map(|pg| (rows::text(pg, "name"), pg))
        .collect();
    for g in &used_groups {
        let members: Vec<String> = groups_by_name
            .get(g.as_str())
            .map(|pg| {
                let mut m: Vec<String> = rows::uuids(pg, "ports")
                    .iter()
                    .filter_map(|u| ours.get(u).map(|p| p.to_string()))
                    .collect();
                m.sort();
                m
            })
            .unwrap_or_default();
        acl.port_groups.insert(g.clone(), members);
    }
    taken.port_groups = acl.port_groups.len();

    // Address sets: NB rows first, then the derived ones.
    let sets_by_name: BTreeMap<&str, (&String, &crate::ovn::replica::Row)> = address_set_table
        .iter()
        .map(|(u, s)| (rows::text(s, "name"), (u, s)))
        .collect();
    for s in &used_sets {
        let nb = sets_by_name
            .get(s.as_str())
            .map(|(u, row)| (u.as_str(), *row));
        let Some(set) = sets::resolve(s, nb, |pg| groups_by_name.get(pg).copied(), lsps) else {
            continue; // unreachable: the resolver knew the name
        };
        match &set.nb_uuid {
            Some(uuid) => {
                if !set.bad.is_empty() {
                    refused.push(Refusal {
                        table: "Address_Set",
                        uuid: uuid.clone(),
                        outcome: Outcome::Partial,
                        reason: format!(
                            "{s}: entries not compiled (not IP prefixes): {}",
                            set.bad.join(" ")
                        ),
                    });
                }
                taken.address_sets += 1;
            }
            None => taken.derived_sets += 1,
        }
        acl.address_sets.insert(s.clone(), set.entries);
    }

    let default_drop = rows::table(tables, "NB_Global").values().any(|g| {
        rows::map(g, "options")
            .get("default_acl_drop")
            .map(String::as_str)
            == Some("true")
    });
    let default_allow = if stateful {
        Action::AllowRelated
    } else {
        Action::Allow
    };
    acl.default = if default_drop && !rules.is_empty() {
        Action::Drop
    } else {
        default_allow
    };
    acl.rules = rules.into_iter().map(|(.., r)| r).collect();

    // Load balancers.
    let lbs = load_balancers(&lb_uuids, lb_table);
    refused.extend(lbs.refused);
    taken.load_balancers = lbs.taken;
    let (services, lb_origins) = (lbs.services, lbs.origins);
    taken.services = services.len();

    refused.sort();
    let [from_lport, after_lb, to_lport] = stages(acl, &refs, &after_lb, default_allow);
    Translation {
        bindings,
        policy: Policy {
            from_lport,
            after_lb,
            to_lport,
            services,
        },
        acl_origins,
        lb_origins,
        taken,
        refused,
    }
}

/// The services of the taken load balancers, with where each came from.
pub struct LoadBalancers {
    /// One per `vips` entry, sorted by name.
    pub services: Vec<ServiceConfig>,
    /// Service name -> its NB row.
    pub origins: BTreeMap<String, LbOrigin>,
    /// Rows or VIPs not taken.
    pub refused: Vec<Refusal>,
    /// Load balancers taken (at least one VIP).
    pub taken: usize,
}

/// Translates the load balancers `lb_uuids` (those of our switches and their groups).
pub fn load_balancers(lb_uuids: &BTreeSet<&str>, lb_table: &Table) -> LoadBalancers {
    let mut services: Vec<ServiceConfig> = Vec::new();
    let mut origins = BTreeMap::new();
    let mut endpoints = BTreeMap::new();
    let mut refused = Vec::new();
    let mut taken = 0;
    for uuid in lb_uuids {
        let Some(row) = lb_table.get(*uuid) else {
            continue;
        };
        match lbs::services(uuid, row) {
            Ok(list) => {
                taken += 1;
                for (vip, svc) in list {
                    let key = (svc.vip, svc.protocol, svc.port);
                    if let Some(prev) = endpoints.insert(key, uuid.to_string()) {
                        refused.push(Refusal {
                            table: "Load_Balancer",
                            uuid: uuid.to_string(),
                            outcome: Outcome::Partial,
                            reason: format!("vips[{vip}]: the same VIP, protocol and port as Load_Balancer {prev}"),
                        });
                        endpoints.insert(key, prev);
                        continue;
                    }
                    origins.insert(
                        svc.name.clone(),
                        LbOrigin {
                            uuid: uuid.to_string(),
                            name: rows::text(row, "name").to_string(),
                            vip,
                            options: rows::map(row, "options"),
                            external_ids: rows::map(row, "external_ids"),
                        },
                    );
                    services.push(svc);
                }
            }
            Err(reason) => refused.push(Refusal {
                table: "Load_Balancer",
                uuid: uuid.to_string(),
                outcome: Outcome::Skipped,
                reason,
            }),
        }
    }
    services.sort_by(|a, b| a.name.cmp(&b.name));
    LoadBalancers {
        services,
        origins,
        refused,
        taken,
    }
}

/// The load-balancer part of [`translate`] alone (what a change to `Load_Balancer` rows
/// can change when no row was added or removed).
pub fn services_only(tables: &BTreeMap<String, Table>, ports: &[LocalPort]) -> LoadBalancers {
    let bindings = bind(rows::table(tables, "Logical_Switch_Port"), ports);
    let ours: BTreeSet<&str> = bindings
        .iter()
        .filter_map(|b| Some(b.lsp.as_ref().ok()?.uuid.as_str()))
        .collect();
    load_balancers(
        &taken_lb_uuids(tables, &ours),
        rows::table(tables, "Load_Balancer"),
    )
}

/// Our switches (those holding a bound LSP) and the load balancers they take, directly or
/// through a `Load_Balancer_Group`.
pub fn taken_lb_uuids<'a>(
    tables: &'a BTreeMap<String, Table>,
    ours: &BTreeSet<&str>,
) -> BTreeSet<&'a str> {
    let lb_groups = rows::table(tables, "Load_Balancer_Group");
    let mut lb_uuids: BTreeSet<&str> = BTreeSet::new();
    for ls in rows::table(tables, "Logical_Switch").values() {
        if !rows::uuids(ls, "ports").iter().any(|p| ours.contains(p)) {
            continue;
        }
        lb_uuids.extend(rows::uuids(ls, "load_balancer"));
        for g in rows::uuids(ls, "load_balancer_group") {
            if let Some(g) = lb_groups.get(g) {
                lb_uuids.extend(rows::uuids(g, "load_balancer"));
            }
        }
    }
    lb_uuids
}

/// Remembers the last published policy: a translation equal to it publishes nothing.
#[derive(Debug, Default)]
pub struct PolicyTracker {
    last: Option<Policy>,
}

impl PolicyTracker {
    /// True (and remembered) when `policy` differs from the last one offered.
    pub fn offer(&mut self, policy: &Policy) -> bool {
        if self.last.as_ref() == Some(policy) {
            return false;
        }
        self.last = Some(policy.clone());
        true
    }

    /// The last policy offered.
    pub fn last(&self) -> Option<&Policy> {
        self.last.as_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ovn::replica::{Atom, Datum, Row};
    use std::collections::BTreeSet;

    fn s(v: &str) -> Datum {
        Datum::Scalar(Atom::String(v.into()))
    }
    fn i(v: i64) -> Datum {
        Datum::Scalar(Atom::Integer(v))
    }
    fn refs(v: &[&str]) -> Datum {
        Datum::Set(v.iter().map(|u| Atom::Uuid(u.to_string())).collect())
    }
    fn strs(v: &[&str]) -> Datum {
        Datum::Set(
            v.iter()
                .map(|u| Atom::String(u.to_string()))
                .collect::<BTreeSet<_>>(),
        )
    }
    fn map(v: &[(&str, &str)]) -> Datum {
        Datum::Map(
            v.iter()
                .map(|(k, x)| (Atom::String(k.to_string()), Atom::String(x.to_string())))
                .collect(),
        )
    }
    fn row(cols: Vec<(&str, Datum)>) -> Row {
        cols.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
    }
    fn acl(
        dir: &str,
        prio: i64,
        m: &str,
        action: &str,
        tier: i64,
        options: &[(&str, &str)],
    ) -> Row {
        row(vec![
            ("direction", s(dir)),
            ("priority", i(prio)),
            ("match", s(m)),
            ("action", s(action)),
            ("tier", i(tier)),
            ("options", map(options)),
        ])
    }

    /// A switch with our port p0 (LSP `lsp0`) and its own ACLs, as a 23.06+ schema writes
    /// them (tiers, options).
    fn tables(acls: Vec<(&str, Row)>, nb_options: &[(&str, &str)]) -> BTreeMap<String, Table> {
        let mut t = BTreeMap::new();
        let uuids: Vec<&str> = acls.iter().map(|(u, _)| *u).collect();
        t.insert(
            "Logical_Switch".to_string(),
            Table::from([(
                "ls".to_string(),
                row(vec![
                    ("name", s("ls0")),
                    ("ports", refs(&["l0"])),
                    ("acls", refs(&uuids)),
                ]),
            )]),
        );
        t.insert(
            "Logical_Switch_Port".to_string(),
            Table::from([(
                "l0".to_string(),
                row(vec![
                    ("name", s("lsp0")),
                    ("addresses", strs(&["02:00:00:00:00:01 10.0.0.1"])),
                ]),
            )]),
        );
        t.insert(
            "ACL".to_string(),
            acls.into_iter().map(|(u, r)| (u.to_string(), r)).collect(),
        );
        t.insert(
            "NB_Global".to_string(),
            Table::from([("g".to_string(), row(vec![("options", map(nb_options))]))]),
        );
        t
    }

    fn ports() -> Vec<LocalPort> {
        vec![LocalPort {
            port: "p0".into(),
            selector: LspSelector::Name("lsp0".into()),
        }]
    }

    #[test]
    fn tiers_rank_into_one_priority_space() {
        let t = translate(
            &tables(
                vec![
                    ("a-t0-low", acl("to-lport", 10, "ip4", "drop", 0, &[])),
                    (
                        "b-t1-high",
                        acl("to-lport", 30000, "tcp", "allow-related", 1, &[]),
                    ),
                    (
                        "c-t0-high",
                        acl("to-lport", 20, "udp", "allow-related", 0, &[]),
                    ),
                ],
                &[],
            ),
            &ports(),
            TranslateOptions::default(),
        );
        let order: Vec<(&str, u16)> = t
            .policy
            .to_lport
            .rules
            .iter()
            .map(|r| (r.name.as_deref().unwrap(), r.priority))
            .collect();
        // Tier 0 before tier 1 whatever the priorities; within a tier, priority order.
        assert_eq!(order, [("c-t0-high", 2), ("a-t0-low", 1), ("b-t1-high", 0)]);
        assert_eq!(t.acl_origins["b-t1-high"].tier, 1);
        assert_eq!(t.acl_origins["a-t0-low"].owner, "Logical_Switch ls0");
    }

    #[test]
    fn stateful_allow_default_drop_and_fail_closed_options() {
        let rows = vec![
            ("a", acl("from-lport", 100, "ip4", "allow", 0, &[])),
            ("b", acl("from-lport", 200, "tcp", "allow-related", 0, &[])),
            (
                "c",
                acl(
                    "from-lport",
                    300,
                    "udp",
                    "drop",
                    0,
                    &[("apply-after-lb", "true")],
                ),
            ),
            ("d", acl("from-lport", 99999, "udp", "drop", 0, &[])),
            ("e", acl("sideways", 1, "udp", "drop", 0, &[])),
        ];
        let t = translate(
            &tables(rows, &[("default_acl_drop", "true")]),
            &ports(),
            TranslateOptions::default(),
        );
        let rules = &t.policy.from_lport.rules;
        let by = |n: &str| rules.iter().find(|r| r.name.as_deref() == Some(n));
        assert_eq!(
            by("a").unwrap().action,
            Action::AllowRelated,
            "a stateful switch"
        );
        // apply-after-lb is not compiled: the drop fails closed over its whole direction.
        let c = by("c").unwrap();
        assert_eq!(
            (c.match_expr.as_deref(), c.action),
            (Some("1"), Action::Drop)
        );
        assert!(t.acl_origins["c"].fail_closed.is_some());
        assert!(
            by("d").is_none() && by("e").is_none(),
            "invalid rows skipped"
        );
        let outcomes: Vec<(&str, Outcome)> = t
            .refused
            .iter()
            .map(|r| (r.uuid.as_str(), r.outcome))
            .collect();
        assert_eq!(
            outcomes,
            [
                ("c", Outcome::DropInstead),
                ("d", Outcome::Skipped),
                ("e", Outcome::Skipped)
            ]
        );
        assert_eq!(t.policy.from_lport.default, Action::Drop);
        // The whole rule set builds.
        RuleSet::from_config(&t.policy.from_lport).unwrap();

        // Without the allow-related and the option: a stateless allow, the default allow.
        let t = translate(
            &tables(
                vec![("a", acl("from-lport", 100, "ip4", "allow", 0, &[]))],
                &[],
            ),
            &ports(),
            TranslateOptions::default(),
        );
        assert_eq!(t.policy.from_lport.rules[0].action, Action::Allow);
        assert_eq!(t.policy.from_lport.default, Action::Allow);
        assert_eq!(t.policy.after_lb.default, Action::Allow);
    }

    #[test]
    fn apply_after_lb_goes_to_its_own_stage_when_there_is_one() {
        let rows = vec![
            (
                "a",
                acl(
                    "from-lport",
                    1000,
                    "ip4",
                    "drop",
                    0,
                    &[("apply-after-lb", "true")],
                ),
            ),
            ("b", acl("from-lport", 10, "udp", "allow", 0, &[])),
            (
                "c",
                acl(
                    "to-lport",
                    5,
                    "tcp",
                    "drop",
                    0,
                    &[("apply-after-lb", "true")],
                ),
            ),
            (
                "d",
                acl(
                    "from-lport",
                    7,
                    "eth.src == 00:00:00:00:00:01",
                    "drop",
                    0,
                    &[("apply-after-lb", "true")],
                ),
            ),
        ];
        let opts = TranslateOptions {
            after_lb_stage: true,
            ..TranslateOptions::default()
        };
        let t = translate(
            &tables(rows, &[("default_acl_drop", "true")]),
            &ports(),
            opts,
        );
        let names = |c: &AclConfig| -> Vec<String> {
            c.rules.iter().filter_map(|r| r.name.clone()).collect()
        };
        // The fail-closed stand-in of an after-lb ACL stands where the ACL would have.
        assert_eq!(names(&t.policy.after_lb), ["a", "d"]);
        assert_eq!(names(&t.policy.from_lport), ["b"]);
        assert_eq!(
            names(&t.policy.to_lport),
            ["c"],
            "OVN ignores the option on to-lport"
        );
        // default_acl_drop drops in the stages before and after, not in the after-lb one.
        assert_eq!(t.policy.from_lport.default, Action::Drop);
        assert_eq!(t.policy.to_lport.default, Action::Drop);
        assert_eq!(t.policy.after_lb.default, Action::Allow);
        assert_eq!(t.refused.len(), 1);
        assert_eq!(t.refused[0].outcome, Outcome::DropInstead);
        let single = t.policy.single_stage();
        assert_eq!(single.rules.len(), 4, "one node takes all three stages");
        RuleSet::from_config(&t.policy.after_lb).unwrap();
    }

    fn logged(mut r: Row, log: bool, name: &str, severity: &str, meter: &str) -> Row {
        r.insert("log".into(), Datum::Scalar(Atom::Boolean(log)));
        for (col, v) in [("name", name), ("severity", severity), ("meter", meter)] {
            if !v.is_empty() {
                r.insert(col.into(), s(v));
            }
        }
        r
    }

    fn meter(name: &str, unit: &str, bands: &[&str]) -> Row {
        row(vec![
            ("name", s(name)),
            ("unit", s(unit)),
            ("bands", refs(bands)),
        ])
    }

    fn band(rate: i64, burst: Option<i64>) -> Row {
        let mut r = row(vec![("action", s("drop")), ("rate", i(rate))]);
        if let Some(b) = burst {
            r.insert("burst_size".into(), i(b));
        }
        r
    }

    #[test]
    fn log_columns_and_meters_become_the_rules_log_specs() {
        let rows = vec![
            (
                "web",
                logged(
                    acl("to-lport", 100, "tcp", "allow-related", 0, &[]),
                    true,
                    "web-in",
                    "warning",
                    "m1",
                ),
            ),
            (
                "deny",
                logged(acl("to-lport", 50, "ip4", "drop", 0, &[]), true, "", "", ""),
            ),
            ("rel", {
                let mut r = logged(
                    acl(
                        "to-lport",
                        110,
                        "udp",
                        "allow-related",
                        0,
                        &[("log-related", "true")],
                    ),
                    true,
                    "rel",
                    "",
                    "",
                );
                r.insert("label".into(), i(7));
                r
            }),
            (
                "rel-unlabelled",
                logged(
                    acl(
                        "to-lport",
                        120,
                        "sctp",
                        "allow-related",
                        0,
                        &[("log-related", "true")],
                    ),
                    true,
                    "rel0",
                    "",
                    "",
                ),
            ),
            (
                "quiet",
                logged(
                    acl("from-lport", 50, "ip4", "allow", 0, &[]),
                    false,
                    "named-but-off",
                    "alert",
                    "m1",
                ),
            ),
            (
                "ghost",
                logged(
                    acl("from-lport", 60, "udp", "drop", 0, &[]),
                    true,
                    "g",
                    "debug",
                    "nope",
                ),
            ),
            (
                "bytes",
                logged(
                    acl("from-lport", 70, "icmp4", "drop", 0, &[]),
                    true,
                    "b",
                    "notice",
                    "mk",
                ),
            ),
        ];
        let mut t = tables(rows, &[]);
        t.insert(
            "Meter".into(),
            Table::from([
                ("M1".to_string(), meter("m1", "pktps", &["B1"])),
                ("MK".to_string(), meter("mk", "kbps", &["B2"])),
                ("MU".to_string(), meter("m-unused", "pktps", &["B3"])),
            ]),
        );
        t.insert(
            "Meter_Band".into(),
            Table::from([
                ("B1".to_string(), band(10, Some(5))),
                ("B2".to_string(), band(1000, None)),
                ("B3".to_string(), band(7, None)),
            ]),
        );
        let tr = translate(&t, &ports(), TranslateOptions::default());
        let find = |cfg: &AclConfig, n: &str| {
            cfg.rules
                .iter()
                .find(|r| r.name.as_deref() == Some(n))
                .unwrap()
                .log
                .clone()
        };
        let to = &tr.policy.to_lport;
        let from = &tr.policy.from_lport;
        assert_eq!(
            find(to, "web"),
            Some(LogSpec {
                name: "web-in".into(),
                severity: Severity::Warning,
                meter: Some("m1".into()),
                related: false,
            })
        );
        // log-related: with a label (OVN needs it to find the ACL of a reply), not without.
        assert!(find(to, "rel").unwrap().related);
        assert!(!find(to, "rel-unlabelled").unwrap().related);
        assert!(tr.acl_origins["rel"].log_related);
        assert_eq!(find(to, "deny"), Some(LogSpec::default()), "unnamed, info");
        assert_eq!(find(from, "quiet"), None, "log=false: no spec");
        assert_eq!(find(from, "ghost").unwrap().meter.as_deref(), Some("nope"));
        assert_eq!(find(from, "bytes").unwrap().severity, Severity::Notice);
        // Each stage holds the meters its rules name; a pktps band without burst bursts 1.
        use pipeline::acl::log::RateLimit;
        assert_eq!(
            to.meters,
            BTreeMap::from([("m1".to_string(), RateLimit { rate: 10, burst: 5 })])
        );
        assert!(
            from.meters.is_empty(),
            "m1 only named by a rule that does not log"
        );
        let (all, _) = meters::meters(&t["Meter"], &t["Meter_Band"]);
        assert_eq!(all["m-unused"], RateLimit { rate: 7, burst: 1 });
        // kbps refused; the ACL naming an absent meter reported (both log by default).
        let refused: Vec<(&str, &str, Outcome)> = tr
            .refused
            .iter()
            .map(|r| (r.table, r.uuid.as_str(), r.outcome))
            .collect();
        assert_eq!(
            refused,
            [
                ("ACL", "bytes", Outcome::Partial),
                ("ACL", "ghost", Outcome::Partial),
                ("Meter", "MK", Outcome::Skipped)
            ]
        );
        assert!(tr.refused[2].reason.contains("kbps"));
        // The stages build, and a change of only the log columns is a rule change.
        let built = RuleSet::from_config(to).unwrap();
        let mut t2 = t.clone();
        t2.get_mut("ACL")
            .unwrap()
            .get_mut("web")
            .unwrap()
            .insert("severity".into(), s("alert"));
        let tr2 = translate(&t2, &ports(), TranslateOptions::default());
        assert_ne!(tr2.policy, tr.policy);
        let rebuilt = RuleSet::from_config(&tr2.policy.to_lport).unwrap();
        assert!(
            !built.same_but_members(&rebuilt),
            "published as a rule change"
        );
        let mut t3 = t.clone();
        t3.get_mut("Meter_Band")
            .unwrap()
            .insert("B1".into(), band(20, Some(5)));
        let tr3 = translate(&t3, &ports(), TranslateOptions::default());
        let remetered = RuleSet::from_config(&tr3.policy.to_lport).unwrap();
        assert!(!built.same_but_members(&remetered), "a meter change too");
    }

    /// Neutron-shaped NB tables: our LSP `l0` in `groups` port groups of `per_group` ACLs
    /// each (`outport == @pg_sgN && ip4 && ip4.src == ... && tcp.dst == ...`, external_ids),
    /// UUID-like keys.
    fn neutron_tables(groups: usize, per_group: usize) -> BTreeMap<String, Table> {
        let mut t = tables(vec![], &[]);
        let uuid = |kind: u32, n: usize| format!("{kind:08x}-0000-4000-8000-{n:012x}");
        let mut pgs = Table::new();
        let acls = t.get_mut("ACL").unwrap();
        for g in 0..groups {
            let mut members = Vec::new();
            for k in 0..per_group {
                let n = g * per_group + k;
                let u = uuid(0xac1, n);
                let m = format!(
                    "outport == @pg_sg{g} && ip4 && ip4.src == 10.{}.{}.0/24 && tcp.dst == {}",
                    n / 250 % 250,
                    n % 250,
                    1000 + n % 30000
                );
                let mut r = acl("to-lport", 1002, &m, "allow-related", 0, &[]);
                r.insert(
                    "external_ids".into(),
                    map(&[
                        ("neutron:security_group_rule_id", &uuid(0x5e, n)),
                        ("neutron:revision_number", "1"),
                    ]),
                );
                acls.insert(u.clone(), r);
                members.push(u);
            }
            let refs_: Vec<&str> = members.iter().map(String::as_str).collect();
            pgs.insert(
                uuid(0x96, g),
                row(vec![
                    ("name", s(&format!("pg_sg{g}"))),
                    ("ports", refs(&["l0"])),
                    ("acls", refs(&refs_)),
                ]),
            );
        }
        t.insert("Port_Group".into(), pgs);
        t
    }

    /// Not a test: what a whole translation costs at 10k ACLs with its match cache warm
    /// (`cargo test --release -p dataplane --lib -- --ignored --nocapture
    /// whole_translation_cost`; the median of 15).
    #[test]
    #[ignore = "benchmark: prints translation and rule-set build times; run in release with --ignored --nocapture"]
    fn whole_translation_cost() {
        let t = neutron_tables(20, 500);
        let mut cache = MatchCache::default();
        let first = translate_with(&t, &ports(), TranslateOptions::default(), &mut cache);
        assert_eq!(first.taken.acls, 10_000);
        let mut ms: Vec<f64> = (0..15)
            .map(|_| {
                let t0 = std::time::Instant::now();
                let tr = translate_with(&t, &ports(), TranslateOptions::default(), &mut cache);
                let took = t0.elapsed().as_secs_f64() * 1e3;
                assert_eq!(tr.policy, first.policy);
                took
            })
            .collect();
        ms.sort_by(f64::total_cmp);
        println!(
            "whole translation, 10k ACLs, cache warm: median {:.1} ms (min {:.1}, max {:.1})",
            ms[7], ms[0], ms[14]
        );
        // What the acl node's hub then does before its overlay is built.
        let cfg = &first.policy.to_lport;
        let time = |f: &mut dyn FnMut()| {
            let mut v: Vec<f64> = (0..9)
                .map(|_| {
                    let t0 = std::time::Instant::now();
                    f();
                    t0.elapsed().as_secs_f64() * 1e3
                })
                .collect();
            v.sort_by(f64::total_cmp);
            v[4]
        };
        let parse = time(&mut || {
            RuleSet::from_config(cfg).unwrap();
        });
        let rs = RuleSet::from_config(cfg).unwrap();
        let expand = time(&mut || {
            pipeline::acl::AclTable::new(rs.clone(), Default::default()).unwrap();
        });
        let table = pipeline::acl::AclTable::new(rs.clone(), Default::default()).unwrap();
        let ports = [pipeline::graph::PortInfo::new(0, "p0", "access")];
        let compile = time(&mut || {
            pipeline::acl::key::compile(&table, &ports).unwrap();
        });
        // The same with one ACL added, taking what the current rule set parsed and expanded.
        let mut added = cfg.clone();
        let mut rule = added.rules[0].clone();
        rule.name = Some("added".into());
        rule.match_expr = Some("outport == @pg_sg0 && ip4 && tcp.dst == 9".into());
        added.rules.insert(1, rule);
        let parse_reusing = time(&mut || {
            RuleSet::from_config_reusing(&added, Some(&rs)).unwrap();
        });
        let rs_added = RuleSet::from_config(&added).unwrap();
        let expand_reusing = time(&mut || {
            pipeline::acl::AclTable::new_reusing(rs_added.clone(), Default::default(), &table)
                .unwrap();
        });
        println!(
            "then RuleSet::from_config {parse:.1} ms, AclTable::new {expand:.1} ms, key::compile {compile:.1} ms; \
             one ACL added, reusing the current set: from_config_reusing {parse_reusing:.1} ms, \
             AclTable::new_reusing {expand_reusing:.1} ms"
        );
    }
}
