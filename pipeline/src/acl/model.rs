//! The ACL rule model: port groups, address sets, ACLs and the rule set, plus the TOML
//! (serde) configuration form.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use super::expand::ExpandError;
use super::expr::{self, MatchExpr, NameResolver, ParseError, PortField};
use super::log::{LogSpec, RateLimit};
pub use super::net::{IpNet, IpVersion, NetError};

/// Highest ACL priority (as in OVN: priorities are `0..=32767`).
pub const MAX_PRIORITY: u16 = 32767;

/// A logical port as seen by a packet: its name and, if the dataplane gave it one, its role.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PortId<'a> {
    /// Port name (e.g. `web0`).
    pub name: &'a str,
    /// Port role (e.g. `fronthaul`), matched by group members written `role:fronthaul`.
    pub role: Option<&'a str>,
}

impl<'a> PortId<'a> {
    /// A port with a name and no role.
    pub fn named(name: &'a str) -> PortId<'a> {
        PortId { name, role: None }
    }

    /// A port with a name and a role.
    pub fn with_role(name: &'a str, role: &'a str) -> PortId<'a> {
        PortId {
            name,
            role: Some(role),
        }
    }
}

/// Index of a port group in [`RuleSet::port_groups`]; used by flat rules.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct GroupId(pub u32);

/// A named set of ports (OVN `Port_Group`), referenced as `@name`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortGroup {
    /// Group name.
    pub name: String,
    /// Members: port names, or roles written `role:<role>`.
    pub members: Vec<String>,
}

impl PortGroup {
    /// True if the port is a member, by name or by `role:<role>`.
    pub fn contains(&self, port: PortId<'_>) -> bool {
        self.members.iter().any(|m| match m.strip_prefix("role:") {
            Some(role) => port.role == Some(role),
            None => m == port.name,
        })
    }
}

/// A named set of addresses and prefixes (OVN `Address_Set`), referenced as `$name`.
/// May mix IPv4 and IPv6; `ip4.*` comparisons use its IPv4 entries and `ip6.*` its IPv6 ones.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddressSet {
    /// Set name.
    pub name: String,
    /// Canonical prefixes.
    pub entries: Vec<IpNet>,
}

impl AddressSet {
    /// True if any entry contains `addr`.
    pub fn contains(&self, addr: &std::net::IpAddr) -> bool {
        self.entries.iter().any(|e| e.contains(addr))
    }
}

/// Which pipeline stage an ACL belongs to (OVN terms).
///
/// Note Neutron's inverted naming: a security-group *ingress* rule (traffic into the VM)
/// becomes a `to-lport` ACL (our `Egress`), and a security-group *egress* rule a
/// `from-lport` ACL (our `Ingress`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Direction {
    /// `from-lport`: traffic entering the switch from a port; matches on `inport` (the
    /// input port group). It may not test `outport`, which is not known yet at that stage.
    #[serde(rename = "from-lport")]
    Ingress,
    /// `to-lport`: traffic about to leave the switch by a port; matches on `outport` (the
    /// output port group), and may also test `inport`.
    #[serde(rename = "to-lport")]
    Egress,
}

/// What an ACL (or the default) does with a matching packet.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    /// Let the packet through (stateless).
    Allow,
    /// Let the packet through and create a connection-tracking entry so that the return
    /// traffic and related packets are allowed too (the conntrack does that part).
    AllowRelated,
    /// Silently discard.
    #[default]
    Drop,
    /// Discard and answer with a TCP RST / ICMP unreachable.
    Reject,
}

impl Action {
    /// True for `Allow` and `AllowRelated`.
    pub fn permits(self) -> bool {
        matches!(self, Action::Allow | Action::AllowRelated)
    }

    /// The action as the config writes it (`allow`, `allow-related`, `drop`, `reject`).
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Allow => "allow",
            Action::AllowRelated => "allow-related",
            Action::Drop => "drop",
            Action::Reject => "reject",
        }
    }
}

/// An ACL as given by the user, before validation (see [`RuleSet::new`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AclSpec {
    /// Unique name (used by counters and errors).
    pub name: String,
    /// Pipeline stage.
    pub direction: Direction,
    /// `0..=32767`; higher wins.
    pub priority: u16,
    /// OVN match expression.
    pub match_text: String,
    /// Verdict when the ACL is the best match.
    pub action: Action,
    /// How packets it decides are logged (`None`: not logged).
    pub log: Option<LogSpec>,
}

/// A validated ACL: its match is parsed and every name it references exists.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Acl {
    /// Unique name.
    pub name: String,
    /// Pipeline stage.
    pub direction: Direction,
    /// `0..=32767`; higher wins; ties go to the ACL earlier in file order.
    pub priority: u16,
    /// The match expression as written.
    pub match_text: String,
    /// The parsed match (negation normal form).
    pub expr: MatchExpr,
    /// Verdict when the ACL is the best match.
    pub action: Action,
    /// How packets it decides are logged (`None`: not logged).
    pub log: Option<LogSpec>,
}

/// Errors building or updating a rule set.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AclError {
    /// The match expression does not parse, or references an unknown group or set.
    #[error("acl '{acl}': invalid match: {error}\n    {text}")]
    Match {
        /// ACL name.
        acl: String,
        /// The expression text.
        text: String,
        /// What is wrong, and where.
        error: ParseError,
    },
    /// Priority above 32767.
    #[error("acl '{acl}': priority {priority} is above the maximum {MAX_PRIORITY}")]
    Priority {
        /// ACL name.
        acl: String,
        /// The priority given.
        priority: u16,
    },
    /// A `from-lport` ACL tests `outport`.
    #[error("acl '{acl}': a from-lport ACL cannot match on outport (the output port is not known at the ingress stage); use to-lport")]
    OutportInIngress {
        /// ACL name.
        acl: String,
    },
    /// Two port groups, address sets or ACLs share a name.
    #[error("duplicate {kind} name '{name}'")]
    Duplicate {
        /// `port group`, `address set` or `acl`.
        kind: &'static str,
        /// The name.
        name: String,
    },
    /// A name is empty or has characters other than letters, digits, `_`, `.`, `-`.
    #[error("invalid {kind} name '{name}': use letters, digits, '_', '.', '-'")]
    BadName {
        /// What was being named.
        kind: &'static str,
        /// The name.
        name: String,
    },
    /// An update named an address set that does not exist.
    #[error("unknown address set '{0}'")]
    UnknownAddressSet(String),
    /// An update named a port group that does not exist.
    #[error("unknown port group '{0}'")]
    UnknownPortGroup(String),
    /// A rule in the configuration has both or neither of `match` and `fields`, or its
    /// `fields` cannot be rendered.
    #[error("acl '{acl}': {reason}")]
    MatchSpec {
        /// ACL name.
        acl: String,
        /// What is wrong.
        reason: String,
    },
    /// A rule's `log` table is invalid.
    #[error("acl '{acl}': log: {reason}")]
    Log {
        /// ACL name.
        acl: String,
        /// What is wrong.
        reason: String,
    },
    /// A `[acl.meters]` entry is invalid.
    #[error("meter '{meter}': {reason}")]
    Meter {
        /// Meter name.
        meter: String,
        /// What is wrong.
        reason: String,
    },
    /// The expansion to flat rules went over the limit.
    #[error(transparent)]
    Expand(#[from] ExpandError),
}

/// A validated set of ACLs with the port groups and address sets they reference.
///
/// Evaluation order: the matching ACL with the highest priority wins; among equal
/// priorities the one earlier in file order (lower index) wins; no match gives the
/// default action.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuleSet {
    port_groups: Vec<PortGroup>,
    address_sets: Vec<AddressSet>,
    acls: Vec<Acl>,
    default_action: Action,
    group_index: BTreeMap<String, usize>,
    set_index: BTreeMap<String, usize>,
    /// Named rate limits of the log lines (NB `Meter`s).
    meters: BTreeMap<String, RateLimit>,
}

struct Names<'a> {
    groups: &'a BTreeMap<String, usize>,
    sets: &'a BTreeMap<String, usize>,
}

impl NameResolver for Names<'_> {
    fn has_port_group(&self, name: &str) -> bool {
        self.groups.contains_key(name)
    }
    fn has_address_set(&self, name: &str) -> bool {
        self.sets.contains_key(name)
    }
}

fn check_name(kind: &'static str, name: &str) -> Result<(), AclError> {
    let ok = !name.is_empty()
        && name
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'.' || c == b'-');
    if ok {
        Ok(())
    } else {
        Err(AclError::BadName {
            kind,
            name: name.to_string(),
        })
    }
}

impl RuleSet {
    /// Validates and builds a rule set: unique names, priorities `<= 32767`, every match
    /// parsed with every `@group`/`$set` known, and no `outport` in `from-lport` ACLs.
    pub fn new(
        default_action: Action,
        port_groups: Vec<PortGroup>,
        address_sets: Vec<AddressSet>,
        acls: Vec<AclSpec>,
    ) -> Result<RuleSet, AclError> {
        Self::new_reusing(default_action, port_groups, address_sets, acls, None)
    }

    /// [`RuleSet::new`], taking the parsed match of every ACL whose text `prev` already
    /// parsed against the same group and set names (a parsed match names groups and sets
    /// by index, so only then is it the same). A follower publishing a rule set with one
    /// ACL added parses that one match instead of all of them.
    pub fn new_reusing(
        default_action: Action,
        port_groups: Vec<PortGroup>,
        address_sets: Vec<AddressSet>,
        acls: Vec<AclSpec>,
        prev: Option<&RuleSet>,
    ) -> Result<RuleSet, AclError> {
        let mut group_index = BTreeMap::new();
        for (i, g) in port_groups.iter().enumerate() {
            check_name("port group", &g.name)?;
            if group_index.insert(g.name.clone(), i).is_some() {
                return Err(AclError::Duplicate {
                    kind: "port group",
                    name: g.name.clone(),
                });
            }
        }
        let mut set_index = BTreeMap::new();
        for (i, s) in address_sets.iter().enumerate() {
            check_name("address set", &s.name)?;
            if set_index.insert(s.name.clone(), i).is_some() {
                return Err(AclError::Duplicate {
                    kind: "address set",
                    name: s.name.clone(),
                });
            }
        }
        let names = Names {
            groups: &group_index,
            sets: &set_index,
        };
        let parsed_before: HashMap<&str, &MatchExpr> = prev
            .filter(|p| p.group_index == group_index && p.set_index == set_index)
            .map(|p| {
                p.acls
                    .iter()
                    .map(|a| (a.match_text.as_str(), &a.expr))
                    .collect()
            })
            .unwrap_or_default();
        let mut seen = BTreeMap::new();
        let mut parsed = Vec::with_capacity(acls.len());
        for spec in acls {
            if seen.insert(spec.name.clone(), ()).is_some() {
                return Err(AclError::Duplicate {
                    kind: "acl",
                    name: spec.name,
                });
            }
            if spec.priority > MAX_PRIORITY {
                return Err(AclError::Priority {
                    acl: spec.name,
                    priority: spec.priority,
                });
            }
            let expr = match parsed_before.get(spec.match_text.as_str()) {
                Some(e) => (*e).clone(),
                None => {
                    expr::parse_with(&spec.match_text, &names).map_err(|error| AclError::Match {
                        acl: spec.name.clone(),
                        text: spec.match_text.clone(),
                        error,
                    })?
                }
            };
            if spec.direction == Direction::Ingress && expr.uses_port_field(PortField::Out) {
                return Err(AclError::OutportInIngress { acl: spec.name });
            }
            parsed.push(Acl {
                name: spec.name,
                direction: spec.direction,
                priority: spec.priority,
                match_text: spec.match_text,
                expr,
                action: spec.action,
                log: spec.log,
            });
        }
        Ok(RuleSet {
            port_groups,
            address_sets,
            acls: parsed,
            default_action,
            group_index,
            set_index,
            meters: BTreeMap::new(),
        })
    }

    /// The same rule set with these log meters (name -> limit).
    pub fn with_meters(mut self, meters: BTreeMap<String, RateLimit>) -> RuleSet {
        self.meters = meters;
        self
    }

    /// The log meters by name.
    pub fn meters(&self) -> &BTreeMap<String, RateLimit> {
        &self.meters
    }

    /// Builds a rule set from its configuration form (the `[acl]` table).
    pub fn from_config(config: &AclConfig) -> Result<RuleSet, AclError> {
        Self::from_config_reusing(config, None)
    }

    /// [`RuleSet::from_config`], taking the matches `prev` parsed already
    /// ([`RuleSet::new_reusing`]).
    pub fn from_config_reusing(
        config: &AclConfig,
        prev: Option<&RuleSet>,
    ) -> Result<RuleSet, AclError> {
        let port_groups = config
            .port_groups
            .iter()
            .map(|(name, members)| PortGroup {
                name: name.clone(),
                members: members.clone(),
            })
            .collect();
        let address_sets = config
            .address_sets
            .iter()
            .map(|(name, entries)| AddressSet {
                name: name.clone(),
                entries: entries.clone(),
            })
            .collect();
        let mut acls = Vec::with_capacity(config.rules.len());
        for (i, rule) in config.rules.iter().enumerate() {
            let name = rule.name.clone().unwrap_or_else(|| format!("acl-{i}"));
            let match_text = match (&rule.match_expr, &rule.fields) {
                (Some(text), None) => text.clone(),
                (None, Some(fields)) => {
                    fields
                        .to_expression()
                        .map_err(|reason| AclError::MatchSpec {
                            acl: name.clone(),
                            reason,
                        })?
                }
                (Some(_), Some(_)) => {
                    return Err(AclError::MatchSpec {
                        acl: name,
                        reason: "give either 'match' or 'fields', not both".into(),
                    })
                }
                (None, None) => {
                    return Err(AclError::MatchSpec {
                        acl: name,
                        reason: "missing 'match' (or 'fields')".into(),
                    })
                }
            };
            if let Some(log) = &rule.log {
                log.check().map_err(|reason| AclError::Log {
                    acl: name.clone(),
                    reason,
                })?;
            }
            acls.push(AclSpec {
                name,
                direction: rule.direction,
                priority: rule.priority,
                match_text,
                action: rule.action,
                log: rule.log.clone(),
            });
        }
        for (name, limit) in &config.meters {
            if name.is_empty() {
                return Err(AclError::Meter {
                    meter: name.clone(),
                    reason: "empty name".into(),
                });
            }
            if limit.rate == 0 && limit.burst == 0 {
                return Err(AclError::Meter {
                    meter: name.clone(),
                    reason: "rate and burst are both 0 (no line would ever pass)".into(),
                });
            }
        }
        Ok(
            RuleSet::new_reusing(config.default, port_groups, address_sets, acls, prev)?
                .with_meters(config.meters.clone()),
        )
    }

    /// Port groups, in definition order ([`GroupId`] is the index).
    pub fn port_groups(&self) -> &[PortGroup] {
        &self.port_groups
    }

    /// Address sets, in definition order.
    pub fn address_sets(&self) -> &[AddressSet] {
        &self.address_sets
    }

    /// ACLs in file order (the index is the ACL id used by flat rules and counters).
    pub fn acls(&self) -> &[Acl] {
        &self.acls
    }

    /// Verdict for packets no ACL matches.
    pub fn default_action(&self) -> Action {
        self.default_action
    }

    /// The id of a port group.
    pub fn group_id(&self, name: &str) -> Option<GroupId> {
        self.group_index.get(name).map(|&i| GroupId(i as u32))
    }

    /// A port group by id.
    pub fn group(&self, id: GroupId) -> Option<&PortGroup> {
        self.port_groups.get(id.0 as usize)
    }

    /// A port group by name.
    pub fn port_group(&self, name: &str) -> Option<&PortGroup> {
        self.group_index.get(name).map(|&i| &self.port_groups[i])
    }

    /// An address set by name.
    pub fn address_set(&self, name: &str) -> Option<&AddressSet> {
        self.set_index.get(name).map(|&i| &self.address_sets[i])
    }

    /// The groups a port belongs to (by name or role): what the dataplane puts in a
    /// port's group bitmask for the classifier.
    pub fn groups_of(&self, port: PortId<'_>) -> Vec<GroupId> {
        (0..self.port_groups.len())
            .filter(|&i| self.port_groups[i].contains(port))
            .map(|i| GroupId(i as u32))
            .collect()
    }

    /// True if `other` has the same ACLs, default, address-set names and port-group names,
    /// so that it differs from this rule set at most in the members of its sets and groups.
    pub fn same_but_members(&self, other: &RuleSet) -> bool {
        self.acls == other.acls
            && self.meters == other.meters
            && self.default_action == other.default_action
            && self.set_index.keys().eq(other.set_index.keys())
            && self.group_index.keys().eq(other.group_index.keys())
    }

    /// Replaces an address set's entries, returning the old ones. Prefer
    /// [`AclTable::update_address_set`](super::expand::AclTable::update_address_set),
    /// which also re-expands the ACLs that use the set.
    pub fn replace_address_set(
        &mut self,
        name: &str,
        entries: Vec<IpNet>,
    ) -> Result<Vec<IpNet>, AclError> {
        let i = *self
            .set_index
            .get(name)
            .ok_or_else(|| AclError::UnknownAddressSet(name.to_string()))?;
        Ok(std::mem::replace(
            &mut self.address_sets[i].entries,
            entries,
        ))
    }

    /// Replaces a port group's members, returning the old ones. Flat rules refer to
    /// groups by id, so no re-expansion is needed; the dataplane recomputes the group
    /// bitmask of the ports concerned.
    pub fn replace_port_group(
        &mut self,
        name: &str,
        members: Vec<String>,
    ) -> Result<Vec<String>, AclError> {
        let i = *self
            .group_index
            .get(name)
            .ok_or_else(|| AclError::UnknownPortGroup(name.to_string()))?;
        Ok(std::mem::replace(&mut self.port_groups[i].members, members))
    }
}

// ---------------------------------------------------------------------------------------
// Configuration (TOML) form

/// A whole file holding only an `[acl]` table (e.g. `config/acl-three-tier.toml`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AclFile {
    /// The `[acl]` table.
    pub acl: AclConfig,
}

/// The `[acl]` table: embed it in the dataplane's configuration.
///
/// ```toml
/// [acl]
/// default = "drop"                      # allow | allow-related | drop | reject
/// [acl.port_groups]
/// pg_web = ["web0", "role:fronthaul"]
/// [acl.address_sets]
/// pg_BA_ip4 = ["10.0.2.0/24", "10.0.9.7"]
/// [[acl.rules]]
/// name = "ba-to-db"
/// direction = "to-lport"                # or from-lport
/// priority = 1000                       # 0..=32767, higher wins
/// match = "outport == @pg_DB && ip4 && ip4.src == $pg_BA_ip4 && tcp.dst == 5432"
/// action = "allow-related"
/// log = { name = "ba-to-db", severity = "info", meter = "acl-log" }   # optional
/// [acl.meters]
/// acl-log = { rate = 10, burst = 5 }    # log lines per second, bucket depth
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AclConfig {
    /// Verdict when no ACL matches (default: drop).
    #[serde(default)]
    pub default: Action,
    /// Port groups: name to members.
    #[serde(default)]
    pub port_groups: BTreeMap<String, Vec<String>>,
    /// Address sets: name to addresses and prefixes.
    #[serde(default)]
    pub address_sets: BTreeMap<String, Vec<IpNet>>,
    /// ACLs in priority-tie order.
    #[serde(default)]
    pub rules: Vec<AclRuleConfig>,
    /// Rate limits of the log lines by meter name (`[acl.meters] m1 = { rate = 10, burst =
    /// 5 }`: lines per second and bucket depth), named by a rule's `log.meter`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub meters: BTreeMap<String, RateLimit>,
}

/// One `[[acl.rules]]` entry: a `match` expression or a structured `fields` table.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AclRuleConfig {
    /// Unique name (default `acl-<index>`).
    #[serde(default)]
    pub name: Option<String>,
    /// `from-lport` or `to-lport`.
    pub direction: Direction,
    /// `0..=32767`.
    pub priority: u16,
    /// OVN match expression.
    #[serde(default, rename = "match")]
    pub match_expr: Option<String>,
    /// Structured alternative to `match`.
    #[serde(default)]
    pub fields: Option<MatchFields>,
    /// `allow`, `allow-related`, `drop` or `reject`.
    pub action: Action,
    /// Log the packets this rule decides: `log = { name = "web", severity = "warning",
    /// meter = "m1" }` (every key optional; `log = {}` logs as `<unnamed>`, `info`, with
    /// the default limit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log: Option<LogSpec>,
}

/// A port in a structured match: a number or a `"lo-hi"` range.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum PortSpec {
    /// One port.
    Port(u16),
    /// `"lo-hi"`, inclusive.
    Range(String),
}

/// Structured form of a match (all present fields must hold), rendered to an expression.
///
/// ```toml
/// [acl.rules.fields]
/// outport = "@pg_DB"          # "@group" or a port name
/// ip = "ip4"                  # ip4 | ip6; needed with src/dst unless proto implies it
/// proto = "tcp"               # tcp | udp | sctp | icmp4 | icmp6 | icmp | a number
/// src = ["$pg_BA_ip4", "10.0.9.7"]
/// dst_ports = [5432, "6000-6010"]
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MatchFields {
    /// `"@group"` or a port name.
    #[serde(default)]
    pub inport: Option<String>,
    /// `"@group"` or a port name.
    #[serde(default)]
    pub outport: Option<String>,
    /// Address family.
    #[serde(default)]
    pub ip: Option<IpVersion>,
    /// `tcp`, `udp`, `sctp`, `icmp4`, `icmp6`, `icmp`, or a protocol number.
    #[serde(default)]
    pub proto: Option<String>,
    /// Source addresses, prefixes and `$sets` (any of them).
    #[serde(default)]
    pub src: Vec<String>,
    /// Destination addresses, prefixes and `$sets` (any of them).
    #[serde(default)]
    pub dst: Vec<String>,
    /// Source ports (needs proto tcp, udp or sctp).
    #[serde(default)]
    pub src_ports: Vec<PortSpec>,
    /// Destination ports (needs proto tcp, udp or sctp).
    #[serde(default)]
    pub dst_ports: Vec<PortSpec>,
    /// ICMP type (needs proto icmp4 or icmp6).
    #[serde(default)]
    pub icmp_type: Option<u8>,
    /// ICMP code (needs proto icmp4 or icmp6).
    #[serde(default)]
    pub icmp_code: Option<u8>,
}

impl MatchFields {
    /// Renders the fields as an OVN expression (`1` if none is given).
    pub fn to_expression(&self) -> Result<String, String> {
        let mut parts: Vec<String> = Vec::new();
        for (field, value) in [("inport", &self.inport), ("outport", &self.outport)] {
            if let Some(v) = value {
                if v.starts_with('@') {
                    parts.push(format!("{field} == {v}"));
                } else {
                    parts.push(format!(
                        "{field} == \"{}\"",
                        v.replace('\\', "\\\\").replace('"', "\\\"")
                    ));
                }
            }
        }
        let proto = self.proto.as_deref();
        let version = match (self.ip, proto) {
            (Some(IpVersion::V4), Some("icmp6")) | (Some(IpVersion::V6), Some("icmp4")) => {
                return Err("'ip' contradicts 'proto'".into())
            }
            (Some(v), _) => Some(v),
            (None, Some("icmp4")) => Some(IpVersion::V4),
            (None, Some("icmp6")) => Some(IpVersion::V6),
            (None, _) => None,
        };
        if let Some(v) = self.ip {
            parts.push(v.ovn_name().to_string());
        }
        let l4 = match proto {
            None => None,
            Some(p @ ("tcp" | "udp" | "sctp" | "icmp4" | "icmp6" | "icmp")) => {
                parts.push(p.to_string());
                Some(p)
            }
            Some(n) => {
                let n: u8 = n.parse().map_err(|_| {
                    format!("unknown proto '{n}' (tcp, udp, sctp, icmp4, icmp6, icmp or 0..=255)")
                })?;
                parts.push(format!("ip.proto == {n}"));
                None
            }
        };
        for (side, list) in [("src", &self.src), ("dst", &self.dst)] {
            if list.is_empty() {
                continue;
            }
            let v = version.ok_or_else(|| format!("'{side}' needs ip = \"ip4\" or \"ip6\""))?;
            parts.push(format!(
                "{}.{side} == {{{}}}",
                v.ovn_name(),
                list.join(", ")
            ));
        }
        for (side, list) in [("src", &self.src_ports), ("dst", &self.dst_ports)] {
            if list.is_empty() {
                continue;
            }
            let p = match l4 {
                Some(p @ ("tcp" | "udp" | "sctp")) => p,
                _ => {
                    return Err(format!(
                        "'{side}_ports' needs proto = \"tcp\", \"udp\" or \"sctp\""
                    ))
                }
            };
            let mut singles = Vec::new();
            let mut alts = Vec::new();
            for spec in list {
                match spec {
                    PortSpec::Port(n) => singles.push(n.to_string()),
                    PortSpec::Range(r) => {
                        let parsed = r.split_once('-').and_then(|(lo, hi)| {
                            Some((
                                lo.trim().parse::<u16>().ok()?,
                                hi.trim().parse::<u16>().ok()?,
                            ))
                        });
                        match parsed {
                            Some((lo, hi)) if lo <= hi => {
                                alts.push(format!("({p}.{side} >= {lo} && {p}.{side} <= {hi})"))
                            }
                            _ => {
                                return Err(format!(
                                    "invalid port range '{r}' (expected \"lo-hi\")"
                                ))
                            }
                        }
                    }
                }
            }
            if !singles.is_empty() {
                alts.insert(0, format!("{p}.{side} == {{{}}}", singles.join(", ")));
            }
            parts.push(if alts.len() == 1 {
                alts.remove(0)
            } else {
                format!("({})", alts.join(" || "))
            });
        }
        for (name, value) in [("type", self.icmp_type), ("code", self.icmp_code)] {
            if let Some(n) = value {
                let p = match l4 {
                    Some(p @ ("icmp4" | "icmp6")) => p,
                    _ => {
                        return Err(format!(
                            "'icmp_{name}' needs proto = \"icmp4\" or \"icmp6\""
                        ))
                    }
                };
                parts.push(format!("{p}.{name} == {n}"));
            }
        }
        if parts.is_empty() {
            return Ok("1".into());
        }
        let mut out = String::new();
        for (i, part) in parts.iter().enumerate() {
            let _ = write!(out, "{}{part}", if i > 0 { " && " } else { "" });
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<RuleSet, AclError> {
        let file: AclFile = toml::from_str(text).map_err(|e| AclError::MatchSpec {
            acl: "<toml>".into(),
            reason: e.to_string(),
        })?;
        RuleSet::from_config(&file.acl)
    }

    const SAMPLE: &str = r#"
[acl]
default = "drop"
[acl.port_groups]
pg_web = ["web0"]
pg_DB = ["db0", "role:database"]
[acl.address_sets]
pg_BA_ip4 = ["10.0.2.0/24", "10.0.9.7", "10.0.4.9/24"]
[[acl.rules]]
name = "ba-to-db"
direction = "to-lport"
priority = 1000
match = "outport == @pg_DB && ip4 && ip4.src == $pg_BA_ip4 && tcp.dst == 5432"
action = "allow-related"
"#;

    #[test]
    fn action_names_are_the_config_words() {
        #[derive(Deserialize)]
        struct Word {
            a: Action,
        }
        for a in [
            Action::Allow,
            Action::AllowRelated,
            Action::Drop,
            Action::Reject,
        ] {
            let w: Word = toml::from_str(&format!("a = \"{}\"", a.as_str())).unwrap();
            assert_eq!(w.a, a);
        }
    }

    #[test]
    fn loads_toml() {
        let rs = load(SAMPLE).unwrap();
        assert_eq!(rs.default_action(), Action::Drop);
        assert_eq!(rs.acls().len(), 1);
        assert_eq!(rs.acls()[0].action, Action::AllowRelated);
        assert_eq!(rs.acls()[0].direction, Direction::Egress);
        let set = rs.address_set("pg_BA_ip4").unwrap();
        assert_eq!(
            set.entries[2].to_string(),
            "10.0.4.0/24",
            "host bits are cleared"
        );
        let db = rs.port_group("pg_DB").unwrap();
        assert!(db.contains(PortId::named("db0")));
        assert!(db.contains(PortId::with_role("db7", "database")));
        assert!(!db.contains(PortId::with_role("web0", "web")));
        assert_eq!(
            rs.groups_of(PortId::named("db0")),
            vec![rs.group_id("pg_DB").unwrap()]
        );
    }

    #[test]
    fn config_errors_are_clear() {
        let bad_key = SAMPLE.replace(
            "action = \"allow-related\"",
            "action = \"allow-related\"\nactoin = 1",
        );
        assert!(load(&bad_key)
            .unwrap_err()
            .to_string()
            .contains("unknown field `actoin`"));
        let bad_action = SAMPLE.replace("allow-related", "permit");
        assert!(load(&bad_action)
            .unwrap_err()
            .to_string()
            .contains("unknown variant `permit`"));
        let bad_addr = SAMPLE.replace("10.0.9.7", "10.0.9.300");
        assert!(load(&bad_addr)
            .unwrap_err()
            .to_string()
            .contains("10.0.9.300"));
        let unknown_set = SAMPLE.replace("$pg_BA_ip4", "$pg_XX_ip4");
        let e = load(&unknown_set).unwrap_err();
        assert_eq!(
            e.to_string(),
            "acl 'ba-to-db': invalid match: at 39: unknown address set '$pg_XX_ip4'\n    outport == @pg_DB && ip4 && ip4.src == $pg_XX_ip4 && tcp.dst == 5432"
        );
        let unknown_group = SAMPLE.replace("@pg_DB", "@pg_XX");
        assert!(load(&unknown_group)
            .unwrap_err()
            .to_string()
            .contains("unknown port group '@pg_XX'"));
        let prio = SAMPLE.replace("1000", "40000");
        assert_eq!(
            load(&prio).unwrap_err().to_string(),
            "acl 'ba-to-db': priority 40000 is above the maximum 32767"
        );
        let ingress = SAMPLE.replace("to-lport", "from-lport");
        assert!(matches!(
            load(&ingress).unwrap_err(),
            AclError::OutportInIngress { .. }
        ));
        let dup = format!(
            "{SAMPLE}\n{}",
            &SAMPLE[SAMPLE.find("[[acl.rules]]").unwrap()..]
        );
        assert!(matches!(
            load(&dup).unwrap_err(),
            AclError::Duplicate { kind: "acl", .. }
        ));
    }

    #[test]
    fn structured_fields() {
        let text = r#"
[acl]
[acl.port_groups]
pg_DB = ["db0"]
[acl.address_sets]
ba = ["10.0.2.0/24"]
[[acl.rules]]
name = "s"
direction = "to-lport"
priority = 10
action = "allow"
[acl.rules.fields]
outport = "@pg_DB"
ip = "ip4"
proto = "tcp"
src = ["$ba", "10.0.9.7"]
dst_ports = [5432, "6000-6010"]
"#;
        let rs = load(text).unwrap();
        assert_eq!(
            rs.acls()[0].match_text,
            "outport == @pg_DB && ip4 && tcp && ip4.src == {$ba, 10.0.9.7} && (tcp.dst == {5432} || (tcp.dst >= 6000 && tcp.dst <= 6010))"
        );
        let f = MatchFields {
            proto: Some("icmp6".into()),
            icmp_type: Some(128),
            dst: vec!["::1".into()],
            ..Default::default()
        };
        assert_eq!(
            f.to_expression().unwrap(),
            "icmp6 && ip6.dst == {::1} && icmp6.type == 128"
        );
        assert!(MatchFields {
            src: vec!["$x".into()],
            ..Default::default()
        }
        .to_expression()
        .is_err());
        assert!(MatchFields {
            dst_ports: vec![PortSpec::Port(1)],
            ..Default::default()
        }
        .to_expression()
        .is_err());
        assert_eq!(MatchFields::default().to_expression().unwrap(), "1");
        let both = text.replace("action = \"allow\"", "action = \"allow\"\nmatch = \"1\"");
        assert!(load(&both).unwrap_err().to_string().contains("not both"));
    }

    #[test]
    fn log_specs_and_meters_load_and_bad_ones_are_refused() {
        use super::super::log::Severity;
        let logged = format!(
            "{SAMPLE}log = {{ name = \"ba-db\", severity = \"warning\", meter = \"m1\" }}\n[acl.meters]\nm1 = {{ rate = 10, burst = 5 }}\n"
        );
        let rs = load(&logged).unwrap();
        let log = rs.acls()[0].log.as_ref().unwrap();
        assert_eq!(
            (log.name.as_str(), log.severity, log.meter.as_deref()),
            ("ba-db", Severity::Warning, Some("m1"))
        );
        assert_eq!(rs.meters()["m1"], RateLimit { rate: 10, burst: 5 });
        // Every key optional; no `log`: not logged.
        let bare = load(&format!("{SAMPLE}log = {{}}\n")).unwrap();
        assert_eq!(bare.acls()[0].log, Some(LogSpec::default()));
        assert_eq!(load(SAMPLE).unwrap().acls()[0].log, None);
        // A log change is a rule change (not a membership-only one), a meter change too.
        assert!(!rs.same_but_members(&load(SAMPLE).unwrap().with_meters(rs.meters().clone())));
        assert!(!rs.same_but_members(&rs.clone().with_meters(BTreeMap::new())));
        // Refusals, each naming what is wrong.
        let refused = |extra: &str| load(&format!("{SAMPLE}{extra}")).unwrap_err().to_string();
        assert!(refused("log = { severity = \"loud\" }\n").contains("unknown variant `loud`"));
        assert!(refused("log = { level = \"info\" }\n").contains("unknown field `level`"));
        let long = "x".repeat(64);
        assert!(refused(&format!("log = {{ name = \"{long}\" }}\n"))
            .contains("acl 'ba-to-db': log: name is 64 characters, at most 63"));
        assert!(refused("log = { meter = \"\" }\n").contains("meter is empty"));
        assert!(refused("[acl.meters]\nm = { rate = 0, burst = 0 }\n")
            .contains("meter 'm': rate and burst are both 0"));
        assert!(refused("[acl.meters]\nm = { rate = 1, depth = 2 }\n").contains("unknown field"));
    }
}
