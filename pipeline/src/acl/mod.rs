//! ACLs in the OVN security-group style: the rule model ([`model`]), the OVN
//! match-expression parser ([`expr`]), the expansion into flat rules for rte_acl
//! ([`expand`]), reference evaluators ([`mod@reference`]) and rule counters ([`counters`]).
//!
//! Flow: a TOML `[acl]` table ([`AclConfig`]) becomes a validated [`RuleSet`]; an
//! [`AclTable`] caches each ACL's flat rules and re-expands only the ACLs using an
//! address set when that set changes; [`evaluate`] classifies a packet against the rule
//! model and [`evaluate_flat`] against the flat rules, with the same verdict rule:
//! highest priority wins, ties go to the earlier ACL in file order, otherwise the default.
//!
//! The stage: [`key`] lays out the classifier input and compiles flat rules for it,
//! [`members`] answers which large address sets (set classes) hold an address and which
//! port classes a port has, updated in place without rebuilding the classifier,
//! [`layered`] enforces added ACLs through a small overlay classifier until the whole one is
//! rebuilt, [`node`] is the `acl` node kind (generic over a [`Classify`] implementation: rte_acl in
//! the dataplane, [`LinearClassifier`] here), [`publish`] swaps rule sets hitlessly.
//! Pure Rust; no DPDK.

pub mod counters;
pub mod ct_entry;
pub mod expand;
pub mod expr;
pub mod key;
pub mod layered;
pub mod log;
pub mod members;
pub mod model;
pub mod net;
pub mod node;
pub mod publish;
pub mod reference;
pub mod verdict_cache;

pub use counters::{DenialReason, RuleCounters, RuleCountersSnapshot};
pub use expand::{AclTable, ExpandError, ExpandLimits, FlatRule, SetClasses, SetMatch, SetUpdate};
pub use expr::{parse, MatchExpr, ParseError};
pub use key::{
    compile, AclKey, ClassLayout, ClassWords, Classify, CompileError, CompiledAcl, LinearClassifier,
};
pub use members::{MemberOp, MemberPair, MemberTable};
pub use model::{
    Acl, AclConfig, AclError, AclFile, AclSpec, Action, AddressSet, Direction, GroupId, IpNet,
    IpVersion, PortGroup, PortId, RuleSet,
};
pub use node::{AclNode, AclParams, HubRegistry, OutportMode};
pub use publish::{
    AclHub, AclProgram, Applied, MemberChange, MemberReport, PublishReport, StageError,
};
pub use reference::{effective_priority, evaluate, evaluate_flat, PacketSummary, Verdict};

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::IpAddr;

    const THREE_TIER: &str = include_str!("../../../config/acl-three-tier.toml");

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn three_tier_example() {
        let file: AclFile = toml::from_str(THREE_TIER).unwrap();
        let rules = RuleSet::from_config(&file.acl).unwrap();
        let table = AclTable::new(rules, ExpandLimits::default()).unwrap();
        let rules = table.rules();
        let (web, ba, db) = (
            PortId::named("web0"),
            PortId::named("ba0"),
            PortId::named("db0"),
        );
        let (web_ip, ba_ip, db_ip) = (ip("10.0.1.10"), ip("10.0.2.20"), ip("10.0.3.30"));
        let check = |pkt: PacketSummary<'_>| {
            let v = evaluate(rules, &pkt);
            assert_eq!(evaluate_flat(rules, table.flat_rules(), &pkt), v, "{pkt:?}");
            (v.acl.map(|i| rules.acls()[i].name.as_str()), v.action)
        };

        // web -> BA on 8080: allowed (allow-related).
        assert_eq!(
            check(PacketSummary::tcp(web, ba, web_ip, ba_ip, 40000, 8080)),
            (Some("web-to-ba"), Action::AllowRelated)
        );
        // BA -> DB on 5432: allowed.
        assert_eq!(
            check(PacketSummary::tcp(ba, db, ba_ip, db_ip, 40001, 5432)),
            (Some("ba-to-db"), Action::AllowRelated)
        );
        // web -> DB: denied, even on the database port.
        assert_eq!(
            check(PacketSummary::tcp(web, db, web_ip, db_ip, 40002, 5432)),
            (Some("tiers-default-drop"), Action::Drop)
        );
        // Wrong port, wrong protocol, spoofed source: denied.
        assert_eq!(
            check(PacketSummary::tcp(ba, db, ba_ip, db_ip, 40003, 22)).1,
            Action::Drop
        );
        assert_eq!(
            check(PacketSummary::udp(ba, db, ba_ip, db_ip, 40004, 5432)).1,
            Action::Drop
        );
        assert_eq!(
            check(PacketSummary::tcp(
                web,
                db,
                ip("10.0.4.1"),
                db_ip,
                40005,
                5432
            ))
            .1,
            Action::Drop
        );
        // DB -> BA as a new connection: denied (replies are the conntrack's job).
        assert_eq!(
            check(PacketSummary::tcp(db, ba, db_ip, ba_ip, 5432, 40001)).1,
            Action::Drop
        );
        // Traffic to a port in no tier: the default (drop).
        assert_eq!(
            check(PacketSummary::tcp(
                web,
                PortId::named("uplink"),
                web_ip,
                ip("8.8.8.8"),
                1,
                53
            )),
            (None, Action::Drop)
        );

        // web -> BA telnet: rejected (a RST is sent back).
        assert_eq!(
            check(PacketSummary::tcp(web, ba, web_ip, ba_ip, 40000, 23)),
            (Some("web-telnet-reject"), Action::Reject)
        );

        // One flat rule per allow (one /24 each), one per tier group for the drop, one for
        // the reject.
        assert_eq!(table.flat_rule_count(), 1 + 1 + 3 * 2 + 1);
        let mut counters = RuleCounters::new(rules.acls().len());
        counters.record(
            &evaluate(rules, &PacketSummary::tcp(web, db, web_ip, db_ip, 1, 5432)),
            74,
        );
        assert_eq!(counters.snapshot(rules).denials.rule_drop, 1);
    }
}
