//! Per-ACL packet/byte counters and denial counters, kept per worker as plain integers
//! (no atomics: each worker owns its `RuleCounters`; merge them for a snapshot).

use serde::Serialize;

use super::model::{Action, RuleSet};
use super::reference::Verdict;

/// Packets and bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct PacketBytes {
    /// Packets.
    pub packets: u64,
    /// Bytes (frame length as seen by the classifier).
    pub bytes: u64,
}

impl PacketBytes {
    /// Counts one packet of `bytes` bytes.
    pub fn add(&mut self, bytes: u64) {
        self.packets = self.packets.wrapping_add(1);
        self.bytes = self.bytes.wrapping_add(bytes);
    }

    /// Adds another counter to this one.
    pub fn merge(&mut self, other: &PacketBytes) {
        self.packets = self.packets.wrapping_add(other.packets);
        self.bytes = self.bytes.wrapping_add(other.bytes);
    }
}

/// Why a packet was denied.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DenialReason {
    /// No ACL matched and the default action denies.
    DefaultDeny,
    /// A `drop` ACL matched.
    RuleDrop,
    /// A `reject` ACL matched.
    RuleReject,
    /// An `allow-related` ACL matched but the connection table was full (new sessions
    /// are denied when full).
    ConntrackFull,
}

/// Denied packets by reason.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct DenialCounters {
    /// No ACL matched and the default denies.
    pub default_deny: u64,
    /// Dropped by a `drop` ACL.
    pub rule_drop: u64,
    /// Rejected by a `reject` ACL.
    pub rule_reject: u64,
    /// Refused because the connection table was full.
    pub conntrack_full: u64,
}

impl DenialCounters {
    /// Counts one denial.
    pub fn add(&mut self, reason: DenialReason) {
        let c = match reason {
            DenialReason::DefaultDeny => &mut self.default_deny,
            DenialReason::RuleDrop => &mut self.rule_drop,
            DenialReason::RuleReject => &mut self.rule_reject,
            DenialReason::ConntrackFull => &mut self.conntrack_full,
        };
        *c = c.wrapping_add(1);
    }

    /// Sum over all reasons.
    pub fn total(&self) -> u64 {
        self.default_deny
            .wrapping_add(self.rule_drop)
            .wrapping_add(self.rule_reject)
            .wrapping_add(self.conntrack_full)
    }

    /// Adds another set of counters.
    pub fn merge(&mut self, other: &DenialCounters) {
        self.default_deny = self.default_deny.wrapping_add(other.default_deny);
        self.rule_drop = self.rule_drop.wrapping_add(other.rule_drop);
        self.rule_reject = self.rule_reject.wrapping_add(other.rule_reject);
        self.conntrack_full = self.conntrack_full.wrapping_add(other.conntrack_full);
    }
}

/// Counters of one worker for one rule set: per ACL (by index), the default rule, and
/// denials by reason. Allocated once when the rule set is installed; bumping never
/// allocates.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RuleCounters {
    /// Per ACL, indexed like [`RuleSet::acls`].
    pub per_acl: Vec<PacketBytes>,
    /// Packets no ACL matched.
    pub default_rule: PacketBytes,
    /// Denials by reason.
    pub denials: DenialCounters,
}

impl RuleCounters {
    /// Zeroed counters for `acls` ACLs.
    pub fn new(acls: usize) -> RuleCounters {
        RuleCounters {
            per_acl: vec![PacketBytes::default(); acls],
            ..RuleCounters::default()
        }
    }

    /// Counts a classified packet: the winning ACL (or the default) and, if the verdict
    /// denies, the denial reason. An `acl` index out of range is ignored.
    pub fn record(&mut self, verdict: &Verdict, bytes: u64) {
        match verdict.acl {
            Some(i) => {
                if let Some(c) = self.per_acl.get_mut(i) {
                    c.add(bytes);
                }
                match verdict.action {
                    Action::Drop => self.denials.add(DenialReason::RuleDrop),
                    Action::Reject => self.denials.add(DenialReason::RuleReject),
                    Action::Allow | Action::AllowRelated => {}
                }
            }
            None => {
                self.default_rule.add(bytes);
                if !verdict.action.permits() {
                    self.denials.add(DenialReason::DefaultDeny);
                }
            }
        }
    }

    /// Counts a packet an `allow-related` ACL admitted but the conntrack refused.
    pub fn record_conntrack_full(&mut self) {
        self.denials.add(DenialReason::ConntrackFull);
    }

    /// Adds another worker's counters (per-ACL vectors of different lengths are merged
    /// up to the longer one).
    pub fn merge(&mut self, other: &RuleCounters) {
        if self.per_acl.len() < other.per_acl.len() {
            self.per_acl
                .resize(other.per_acl.len(), PacketBytes::default());
        }
        for (a, b) in self.per_acl.iter_mut().zip(&other.per_acl) {
            a.merge(b);
        }
        self.default_rule.merge(&other.default_rule);
        self.denials.merge(&other.denials);
    }

    /// A named, serializable snapshot.
    pub fn snapshot(&self, rules: &RuleSet) -> RuleCountersSnapshot {
        RuleCountersSnapshot {
            acls: rules
                .acls()
                .iter()
                .enumerate()
                .map(|(i, a)| {
                    let c = self.per_acl.get(i).copied().unwrap_or_default();
                    AclCounterSnapshot {
                        name: a.name.clone(),
                        priority: a.priority,
                        action: a.action,
                        packets: c.packets,
                        bytes: c.bytes,
                    }
                })
                .collect(),
            default_action: rules.default_action(),
            default_rule: self.default_rule,
            denials: self.denials,
            denied_total: self.denials.total(),
        }
    }
}

/// One ACL's counters in a snapshot.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AclCounterSnapshot {
    /// ACL name.
    pub name: String,
    /// ACL priority.
    pub priority: u16,
    /// ACL action.
    pub action: Action,
    /// Packets it was the verdict for.
    pub packets: u64,
    /// Their bytes.
    pub bytes: u64,
}

/// Serializable view of [`RuleCounters`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RuleCountersSnapshot {
    /// Per ACL, in file order.
    pub acls: Vec<AclCounterSnapshot>,
    /// The default action.
    pub default_action: Action,
    /// Packets no ACL matched.
    pub default_rule: PacketBytes,
    /// Denials by reason.
    pub denials: DenialCounters,
    /// Sum of the denials.
    pub denied_total: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::acl::model::{AclSpec, Direction};

    #[test]
    fn record_merge_snapshot() {
        let acls = ["allow", "drop", "reject"]
            .iter()
            .zip([Action::Allow, Action::Drop, Action::Reject])
            .map(|(n, a)| AclSpec {
                name: n.to_string(),
                direction: Direction::Egress,
                priority: 1,
                match_text: "1".into(),
                action: a,
                log: None,
            })
            .collect();
        let rs = RuleSet::new(Action::Drop, vec![], vec![], acls).unwrap();
        let mut w0 = RuleCounters::new(3);
        let mut w1 = RuleCounters::new(3);
        w0.record(
            &Verdict {
                acl: Some(0),
                action: Action::Allow,
            },
            100,
        );
        w0.record(
            &Verdict {
                acl: Some(1),
                action: Action::Drop,
            },
            60,
        );
        w1.record(
            &Verdict {
                acl: Some(2),
                action: Action::Reject,
            },
            70,
        );
        w1.record(
            &Verdict {
                acl: None,
                action: Action::Drop,
            },
            64,
        );
        w1.record(
            &Verdict {
                acl: Some(0),
                action: Action::Allow,
            },
            1500,
        );
        w1.record_conntrack_full();
        w0.merge(&w1);
        let snap = w0.snapshot(&rs);
        assert_eq!(snap.acls[0].packets, 2);
        assert_eq!(snap.acls[0].bytes, 1600);
        assert_eq!(
            snap.default_rule,
            PacketBytes {
                packets: 1,
                bytes: 64
            }
        );
        assert_eq!(
            snap.denials,
            DenialCounters {
                default_deny: 1,
                rule_drop: 1,
                rule_reject: 1,
                conntrack_full: 1
            }
        );
        assert_eq!(snap.denied_total, 4);
        let text = toml::to_string(&snap).unwrap();
        assert!(text.contains("default_action = \"drop\""), "{text}");
        assert!(text.contains("conntrack_full = 1"), "{text}");
    }
}
