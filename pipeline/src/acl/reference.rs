//! Reference evaluators: a linear scan over the original rule model (obviously right)
//! and a linear scan over the flat expansion; the compiled classifier must agree with both.
//!
//! **Verdict rule**: the matching ACL with the highest priority wins; among matching ACLs
//! of equal priority the one earlier in file order (lower index) wins; if none matches,
//! the rule set's default action applies. ACLs of both directions are evaluated together
//! in one stage (not OVN's two-stage from-lport-then-to-lport pipeline). rte_acl resolves
//! ties by its own order, so the compiler must make priorities unique, e.g. with
//! [`effective_priority`] or [`dense_priorities`].
//!
//! Return traffic of `allow-related` connections is not this module's business: the
//! connection tracker allows it before the ACLs are consulted.

use std::net::IpAddr;

use serde::Serialize;

use super::expand::FlatRule;
use super::expr::{icmp_proto, AddrItem, Atom, IcmpField, MatchExpr, PortField, PortName, Side};
use super::model::{Acl, Action, IpVersion, PortId, RuleSet};

/// rte_acl's largest rule priority (`RTE_ACL_MAX_PRIORITY`).
pub const RTE_ACL_MAX_PRIORITY: u32 = 0x1FFF_FFFF;

/// What the classifier sees of a packet.
///
/// `src` and `dst` must be of the same family (a packet where they differ matches no
/// ACL and gets the default action). Ports are read only for TCP/UDP/SCTP and ICMP type/code
/// only for ICMP of the packet's family; other values are ignored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PacketSummary<'a> {
    /// Port the packet came in on.
    pub inport: PortId<'a>,
    /// Port the packet will leave by (for from-lport evaluation before the forwarding
    /// decision any value will do: from-lport ACLs cannot test it).
    pub outport: PortId<'a>,
    /// Source address.
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// IP protocol (IPv6: the upper-layer protocol after extension headers).
    pub proto: u8,
    /// TCP/UDP/SCTP source port.
    pub src_port: u16,
    /// TCP/UDP/SCTP destination port.
    pub dst_port: u16,
    /// ICMP type.
    pub icmp_type: u8,
    /// ICMP code.
    pub icmp_code: u8,
}

impl<'a> PacketSummary<'a> {
    /// A TCP packet.
    pub fn tcp(
        inport: PortId<'a>,
        outport: PortId<'a>,
        src: IpAddr,
        dst: IpAddr,
        src_port: u16,
        dst_port: u16,
    ) -> Self {
        PacketSummary {
            inport,
            outport,
            src,
            dst,
            proto: 6,
            src_port,
            dst_port,
            icmp_type: 0,
            icmp_code: 0,
        }
    }

    /// A UDP packet.
    pub fn udp(
        inport: PortId<'a>,
        outport: PortId<'a>,
        src: IpAddr,
        dst: IpAddr,
        src_port: u16,
        dst_port: u16,
    ) -> Self {
        PacketSummary {
            proto: 17,
            ..Self::tcp(inport, outport, src, dst, src_port, dst_port)
        }
    }

    /// An ICMP (IPv4) or ICMPv6 packet, by the family of `src`.
    pub fn icmp(
        inport: PortId<'a>,
        outport: PortId<'a>,
        src: IpAddr,
        dst: IpAddr,
        icmp_type: u8,
        icmp_code: u8,
    ) -> Self {
        let proto = icmp_proto(IpVersion::of(&src));
        PacketSummary {
            inport,
            outport,
            src,
            dst,
            proto,
            src_port: 0,
            dst_port: 0,
            icmp_type,
            icmp_code,
        }
    }

    /// The packet's family (that of `src`).
    pub fn version(&self) -> IpVersion {
        IpVersion::of(&self.src)
    }

    /// True if `src` and `dst` are of the same family.
    pub fn is_consistent(&self) -> bool {
        IpVersion::of(&self.src) == IpVersion::of(&self.dst)
    }
}

/// The outcome of classification.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct Verdict {
    /// The winning ACL (index in [`RuleSet::acls`]), `None` for the default.
    pub acl: Option<usize>,
    /// What to do with the packet.
    pub action: Action,
}

fn atom_matches(rules: &RuleSet, atom: &Atom, pkt: &PacketSummary<'_>) -> bool {
    let version = pkt.version();
    match atom {
        Atom::Version(v) => version == *v,
        Atom::Proto(cmp) => cmp.test(pkt.proto),
        Atom::Addr {
            version: v,
            side,
            negated,
            items,
        } => {
            if version != *v {
                return false; // prerequisite ip4/ip6, never negated
            }
            let addr = if *side == Side::Src {
                &pkt.src
            } else {
                &pkt.dst
            };
            let found = items.iter().any(|item| match item {
                AddrItem::Net(n) => n.contains(addr),
                AddrItem::Set(name) => rules.address_set(name).is_some_and(|s| s.contains(addr)),
            });
            found != *negated
        }
        Atom::L4Port { proto, side, cmp } => {
            pkt.proto == proto.number()
                && cmp.test(if *side == Side::Src {
                    pkt.src_port
                } else {
                    pkt.dst_port
                })
        }
        Atom::Icmp {
            version: v,
            field,
            cmp,
        } => {
            version == *v
                && pkt.proto == icmp_proto(*v)
                && cmp.test(if *field == IcmpField::Type {
                    pkt.icmp_type
                } else {
                    pkt.icmp_code
                })
        }
        Atom::Port {
            field,
            negated,
            port,
        } => {
            let p = if *field == PortField::In {
                pkt.inport
            } else {
                pkt.outport
            };
            let member = match port {
                PortName::Group(g) => rules.port_group(g).is_some_and(|g| g.contains(p)),
                PortName::Named(n) => n == p.name,
            };
            member != *negated
        }
    }
}

/// True if the packet satisfies the expression (evaluated directly on the tree).
pub fn expr_matches(rules: &RuleSet, expr: &MatchExpr, pkt: &PacketSummary<'_>) -> bool {
    match expr {
        MatchExpr::Const(b) => *b,
        MatchExpr::Atom(a) => atom_matches(rules, a, pkt),
        MatchExpr::And(items) => items.iter().all(|e| expr_matches(rules, e, pkt)),
        MatchExpr::Or(items) => items.iter().any(|e| expr_matches(rules, e, pkt)),
    }
}

/// Classifies a packet by scanning the ACLs of the rule model in file order.
pub fn evaluate(rules: &RuleSet, pkt: &PacketSummary<'_>) -> Verdict {
    let mut best: Option<(usize, u16)> = None;
    if pkt.is_consistent() {
        for (i, acl) in rules.acls().iter().enumerate() {
            // Strictly greater: an equal priority later in the file does not win.
            if best.is_none_or(|(_, p)| acl.priority > p) && expr_matches(rules, &acl.expr, pkt) {
                best = Some((i, acl.priority));
            }
        }
    }
    match best {
        Some((i, _)) => Verdict {
            acl: Some(i),
            action: rules.acls()[i].action,
        },
        None => Verdict {
            acl: None,
            action: rules.default_action(),
        },
    }
}

/// Classifies a packet by scanning flat rules (in any order) with the same verdict rule.
pub fn evaluate_flat<'r>(
    rules: &RuleSet,
    flat: impl IntoIterator<Item = &'r FlatRule>,
    pkt: &PacketSummary<'_>,
) -> Verdict {
    let mut best: Option<&FlatRule> = None;
    for r in flat {
        let better = best
            .is_none_or(|b| r.priority > b.priority || (r.priority == b.priority && r.acl < b.acl));
        if better && r.matches(rules, pkt) {
            best = Some(r);
        }
    }
    match best {
        Some(r) => Verdict {
            acl: Some(r.acl),
            action: r.action,
        },
        None => Verdict {
            acl: None,
            action: rules.default_action(),
        },
    }
}

/// A unique rte_acl priority for ACL `index` (of `n`) with OVN priority `priority`:
/// `priority * n + (n - index)`, so higher OVN priority wins and, within a priority,
/// the earlier ACL wins. `None` if `index >= n` or the result exceeds
/// [`RTE_ACL_MAX_PRIORITY`] (with priorities up to 32767 that needs `n <= 16383`;
/// use [`dense_priorities`] beyond that).
pub fn effective_priority(priority: u16, index: usize, n: usize) -> Option<u32> {
    if index >= n {
        return None;
    }
    let p = (priority as u64)
        .checked_mul(n as u64)?
        .checked_add((n - index) as u64)?;
    u32::try_from(p).ok().filter(|&p| p <= RTE_ACL_MAX_PRIORITY)
}

/// Unique rte_acl priorities `1..=n` by rank (same order as [`effective_priority`]):
/// works for any number of ACLs.
pub fn dense_priorities(acls: &[Acl]) -> Vec<u32> {
    let mut order: Vec<usize> = (0..acls.len()).collect();
    // Ascending by (priority, then later-in-file first) so rank n is the best ACL.
    order.sort_by(|&a, &b| acls[a].priority.cmp(&acls[b].priority).then(b.cmp(&a)));
    let mut out = vec![0; acls.len()];
    for (rank, &i) in order.iter().enumerate() {
        out[i] = rank as u32 + 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::acl::expand::{AclTable, ExpandLimits};
    use crate::acl::model::{AclSpec, AddressSet, Direction, IpNet, PortGroup};
    use proptest::prelude::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    #[test]
    fn priorities() {
        assert_eq!(effective_priority(1000, 0, 3), Some(3003));
        assert_eq!(effective_priority(1000, 2, 3), Some(3001));
        assert_eq!(effective_priority(999, 0, 3), Some(3000));
        assert_eq!(
            effective_priority(32767, 0, 16383),
            Some(32767 * 16383 + 16383)
        );
        assert_eq!(effective_priority(32767, 0, 16384), None);
        assert_eq!(effective_priority(1, 3, 3), None);
        let acl = |priority| Acl {
            name: String::new(),
            direction: Direction::Egress,
            priority,
            match_text: "1".into(),
            expr: MatchExpr::Const(true),
            action: Action::Allow,
            log: None,
        };
        let acls = [acl(5), acl(7), acl(5), acl(0)];
        assert_eq!(dense_priorities(&acls), vec![3, 4, 2, 1]);
        let eff: Vec<u32> = (0..4)
            .map(|i| effective_priority(acls[i].priority, i, 4).unwrap())
            .collect();
        for a in 0..4 {
            for b in 0..4 {
                assert_eq!(
                    eff[a].cmp(&eff[b]),
                    dense_priorities(&acls)[a].cmp(&dense_priorities(&acls)[b])
                );
            }
        }
    }

    fn v4(a: u8, b: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(10, 0, a, b))
    }

    #[test]
    fn ties_go_to_file_order_and_prerequisites_hold() {
        let specs = vec![
            ("first", 5, "ip4", Action::Drop),
            ("second", 5, "ip4", Action::Allow),
            ("not-tcp-80", 1, "!(tcp.dst == 80)", Action::Reject),
        ];
        let acls = specs
            .into_iter()
            .map(|(n, p, m, a)| AclSpec {
                name: n.into(),
                direction: Direction::Ingress,
                priority: p,
                match_text: m.into(),
                action: a,
                log: None,
            })
            .collect();
        let rs = RuleSet::new(Action::Allow, vec![], vec![], acls).unwrap();
        let port = PortId::named("x");
        let t = PacketSummary::tcp(port, port, v4(0, 1), v4(0, 2), 1, 80);
        assert_eq!(
            evaluate(&rs, &t),
            Verdict {
                acl: Some(0),
                action: Action::Drop
            }
        );
        let six = |p: u8| PacketSummary {
            src: "::1".parse().unwrap(),
            dst: "::2".parse().unwrap(),
            proto: p,
            ..t
        };
        // `!(tcp.dst == 80)` is `tcp && tcp.dst != 80`: a UDP packet does not match.
        assert_eq!(
            evaluate(
                &rs,
                &PacketSummary {
                    dst_port: 80,
                    ..six(17)
                }
            )
            .acl,
            None
        );
        assert_eq!(
            evaluate(
                &rs,
                &PacketSummary {
                    dst_port: 81,
                    ..six(6)
                }
            )
            .acl,
            Some(2)
        );
        assert_eq!(
            evaluate(
                &rs,
                &PacketSummary {
                    dst_port: 80,
                    ..six(6)
                }
            )
            .acl,
            None
        );
        // Mixed-family packets match nothing.
        assert_eq!(
            evaluate(
                &rs,
                &PacketSummary {
                    dst: "::2".parse().unwrap(),
                    ..t
                }
            )
            .acl,
            None
        );
        let table = AclTable::new(rs.clone(), ExpandLimits::default()).unwrap();
        assert_eq!(
            evaluate_flat(&rs, table.flat_rules(), &t),
            evaluate(&rs, &t)
        );
    }

    // ---- property test: reference over the model == linear scan over the flat rules ----

    const PORTS: [&str; 4] = ["p0", "p1", "p2", "p3"];

    fn port_id(i: usize) -> PortId<'static> {
        if i == 0 {
            PortId::with_role(PORTS[0], "fronthaul")
        } else {
            PortId::named(PORTS[i])
        }
    }

    fn arb_net() -> impl Strategy<Value = String> {
        prop_oneof![
            4 => (0u8..4, any::<u8>(), prop::sample::select(vec![16u8, 22, 24, 30, 32]))
                .prop_map(|(a, b, l)| IpNet::new(v4(a, b), l).unwrap().to_string()),
            1 => (0u16..4, prop::sample::select(vec![112u8, 126, 128]))
                .prop_map(|(x, l)| IpNet::new(IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, x)), l).unwrap().to_string()),
        ]
    }

    fn arb_num(max: u32) -> impl Strategy<Value = u32> {
        let mut pool = vec![0u32, 1, 3, 8, 22, 53, 80, 443, 1000, 2000];
        pool.retain(|&x| x <= max);
        pool.push(max);
        prop_oneof![3 => prop::sample::select(pool), 1 => 0..=max]
    }

    fn arb_leaf() -> impl Strategy<Value = String> {
        let addr_field = prop::sample::select(vec!["ip4.src", "ip4.dst", "ip6.src", "ip6.dst"]);
        let l4_field = prop::sample::select(vec!["tcp.src", "tcp.dst", "udp.src", "udp.dst"]);
        let icmp_field =
            prop::sample::select(vec!["icmp4.type", "icmp4.code", "icmp6.type", "icmp6.code"]);
        let rel = prop::sample::select(vec!["==", "!=", "<", "<=", ">", ">="]);
        let eqne = prop::sample::select(vec!["==", "!="]);
        prop_oneof![
            2 => prop::sample::select(vec!["ip", "ip4", "ip6", "tcp", "udp", "icmp", "icmp4", "icmp6", "1", "0", "!tcp", "!icmp4"]).prop_map(String::from),
            3 => (prop::sample::select(vec!["inport", "outport"]), eqne.clone(), prop::collection::vec(prop_oneof![
                    (0usize..3).prop_map(|g| format!("@g{g}")),
                    (0usize..4).prop_map(|p| format!("\"p{p}\"")),
                ], 1..3))
                .prop_map(|(f, op, items)| format!("{f} {op} {{{}}}", items.join(", "))),
            4 => (addr_field, eqne, prop::collection::vec(prop_oneof![
                    arb_net(),
                    (0usize..3).prop_map(|s| format!("$s{s}")),
                ], 1..3))
                .prop_map(|(f, op, items)| {
                    // Literal addresses must match the field's family; keep the sets.
                    let v6 = f.starts_with("ip6");
                    let items: Vec<String> = items.into_iter().filter(|i| i.starts_with('$') || i.contains(':') == v6).collect();
                    if items.is_empty() { format!("{f} {op} $s0") } else { format!("{f} {op} {{{}}}", items.join(", ")) }
                }),
            4 => (l4_field, rel.clone(), arb_num(65535)).prop_map(|(f, r, n)| format!("{f} {r} {n}")),
            1 => (arb_num(2000), arb_num(65535)).prop_map(|(a, b)| format!("{a} <= tcp.dst <= {b}")),
            2 => (icmp_field, rel.clone(), arb_num(255)).prop_map(|(f, r, n)| format!("{f} {r} {n}")),
            1 => (rel, prop::sample::select(vec![1u32, 6, 17, 58, 0, 255, 7])).prop_map(|(r, n)| format!("ip.proto {r} {n}")),
        ]
    }

    fn arb_expr() -> impl Strategy<Value = String> {
        arb_leaf().prop_recursive(3, 12, 3, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 2..4)
                    .prop_map(|v| format!("({})", v.join(") && ("))),
                prop::collection::vec(inner.clone(), 2..4)
                    .prop_map(|v| format!("({})", v.join(") || ("))),
                inner.prop_map(|e| format!("!({e})")),
            ]
        })
    }

    fn arb_action() -> impl Strategy<Value = Action> {
        prop::sample::select(vec![
            Action::Allow,
            Action::AllowRelated,
            Action::Drop,
            Action::Reject,
        ])
    }

    fn arb_ruleset() -> impl Strategy<Value = RuleSet> {
        let members =
            prop::sample::subsequence(vec!["p0", "p1", "p2", "p3", "role:fronthaul"], 0..4);
        let groups = prop::collection::vec(members, 3);
        let sets = prop::collection::vec(prop::collection::vec(arb_net(), 0..5), 3);
        let acls = prop::collection::vec((0u16..3, arb_expr(), arb_action(), any::<bool>()), 1..10);
        (groups, sets, acls, arb_action()).prop_map(|(groups, sets, acls, default)| {
            let groups = groups
                .into_iter()
                .enumerate()
                .map(|(i, m)| PortGroup {
                    name: format!("g{i}"),
                    members: m.into_iter().map(String::from).collect(),
                })
                .collect();
            let sets = sets
                .into_iter()
                .enumerate()
                .map(|(i, e)| AddressSet {
                    name: format!("s{i}"),
                    entries: e.iter().map(|s| s.parse().unwrap()).collect(),
                })
                .collect();
            let acls = acls
                .into_iter()
                .enumerate()
                .map(|(i, (priority, m, action, ingress))| AclSpec {
                    name: format!("acl{i}"),
                    direction: if ingress && !m.contains("outport") {
                        Direction::Ingress
                    } else {
                        Direction::Egress
                    },
                    priority,
                    match_text: m,
                    action,
                    log: None,
                })
                .collect();
            RuleSet::new(default, groups, sets, acls).unwrap_or_else(|e| panic!("{e}"))
        })
    }

    #[derive(Clone, Debug)]
    struct Pkt {
        inport: usize,
        outport: usize,
        v6: bool,
        src: (u8, u8),
        dst: (u8, u8),
        proto: u8,
        ports: (u16, u16),
        icmp: (u8, u8),
    }

    impl Pkt {
        fn summary(&self) -> PacketSummary<'static> {
            let addr = |(a, b): (u8, u8)| {
                if self.v6 {
                    IpAddr::V6(Ipv6Addr::new(
                        0x2001,
                        0xdb8,
                        0,
                        0,
                        0,
                        0,
                        0,
                        u16::from(a & 3) << 8 | u16::from(b),
                    ))
                } else {
                    v4(a, b)
                }
            };
            PacketSummary {
                inport: port_id(self.inport),
                outport: port_id(self.outport),
                src: addr(self.src),
                dst: addr(self.dst),
                proto: self.proto,
                src_port: self.ports.0,
                dst_port: self.ports.1,
                icmp_type: self.icmp.0,
                icmp_code: self.icmp.1,
            }
        }
    }

    fn arb_pkt() -> impl Strategy<Value = Pkt> {
        let addr = (
            0u8..5,
            prop_oneof![
                prop::sample::select(vec![0u8, 1, 2, 3, 4, 255]),
                any::<u8>()
            ],
        );
        let port = prop_oneof![
            prop::sample::select(vec![
                0u16, 1, 22, 53, 79, 80, 81, 443, 999, 1000, 1001, 1999, 2000, 2001, 65535
            ]),
            any::<u16>()
        ];
        let byte = prop_oneof![
            prop::sample::select(vec![0u8, 1, 3, 8, 128, 255]),
            any::<u8>()
        ];
        let proto = prop_oneof![
            prop::sample::select(vec![1u8, 6, 17, 58, 0, 7, 255]),
            any::<u8>()
        ];
        (
            0usize..4,
            0usize..4,
            prop::bool::weighted(0.3),
            addr.clone(),
            addr,
            proto,
            (port.clone(), port),
            (byte.clone(), byte),
        )
            .prop_map(|(inport, outport, v6, src, dst, proto, ports, icmp)| Pkt {
                inport,
                outport,
                v6,
                src,
                dst,
                proto,
                ports,
                icmp,
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 48, max_shrink_iters: 2000, ..ProptestConfig::default() })]

        /// 48 rule sets x 220 packets (half before, half after an address-set update)
        /// = 10,560 packets per run.
        #[test]
        fn reference_and_flat_expansion_agree(
            rs in arb_ruleset(),
            pkts in prop::collection::vec(arb_pkt(), 220),
            new_entries in prop::collection::vec(arb_net(), 0..5),
            which in 0usize..3,
        ) {
            let mut table = AclTable::new(rs, ExpandLimits::default()).unwrap();
            let (before, after) = pkts.split_at(110);
            for p in before {
                let s = p.summary();
                let want = evaluate(table.rules(), &s);
                let got = evaluate_flat(table.rules(), table.flat_rules(), &s);
                prop_assert_eq!(got, want, "packet {:?}\nacls {:#?}", s, table.rules().acls());
            }
            let entries = new_entries.iter().map(|s| s.parse().unwrap()).collect();
            table.update_address_set(&format!("s{which}"), entries).unwrap();
            for p in after {
                let s = p.summary();
                let want = evaluate(table.rules(), &s);
                let got = evaluate_flat(table.rules(), table.flat_rules(), &s);
                prop_assert_eq!(got, want, "after update: packet {:?}\nacls {:#?}", s, table.rules().acls());
            }
        }
    }
}
