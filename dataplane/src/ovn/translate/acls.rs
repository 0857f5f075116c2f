//! One NB `ACL` row to one rule of our model: its action, its match (port names turned
//! into dataplane port names) and, when it cannot be compiled, what happens instead.
//!
//! Two kinds of failure, as the issue asks:
//! - a match OVN itself refuses (a syntax error, an unknown `@group` or `$set`): skipped,
//!   as ovn-controller skips it ("error parsing match");
//! - a match OVN accepts but we do not compile (`ct.*`, `eth.*`, `igmp`, ...; an action or
//!   option we do not implement): fail closed by default. An allow is left out (it lets
//!   nothing through); a drop or reject becomes a drop of everything in its direction at its
//!   priority (over-approximated). With `fail_open_unsupported` both are skipped instead.

use std::collections::{BTreeMap, BTreeSet};

use pipeline::acl::expr::{self, Atom, MatchExpr, NameResolver, PortField, PortName};
use pipeline::acl::{Action, Direction};

/// The OVN symbols (first dotted segment) that are valid in an OVN match but that our
/// parser does not compile; an unknown field outside this list is an OVN parse error.
const OVN_SYMBOLS: &[&str] = &[
    "eth",
    "vlan",
    "ip",
    "ip4",
    "ip6",
    "arp",
    "rarp",
    "nd",
    "nd_ns",
    "nd_na",
    "nd_rs",
    "nd_ra",
    "sctp",
    "tcp",
    "udp",
    "icmp",
    "icmp4",
    "icmp6",
    "igmp",
    "mldv1",
    "mldv2",
    "ct",
    "ct_mark",
    "ct_label",
    "ct_state",
    "flags",
    "inport",
    "outport",
    "is_chassis_resident",
    "bfd",
    "dhcp",
    "lldp",
    "ip4.mcast",
    "ip6.mcast",
];

/// True when `name` (an unknown field or predicate) is an OVN symbol.
pub fn is_ovn_symbol(name: &str) -> bool {
    let head = name.split('.').next().unwrap_or(name);
    OVN_SYMBOLS.contains(&head)
        || ["reg", "xreg", "xxreg"].iter().any(|p| {
            head.strip_prefix(p)
                .is_some_and(|n| n.parse::<u8>().is_ok())
        })
}

/// The fields and predicates our parser compiles.
const COMPILED: &[&str] = &[
    "inport",
    "outport",
    "ip",
    "ip4",
    "ip6",
    "tcp",
    "udp",
    "icmp",
    "icmp4",
    "icmp6",
    "arp",
    "rarp",
    "nd",
    "nd_ns",
    "nd_na",
    "nd_rs",
    "nd_ra",
    "ip.proto",
    "ip4.src",
    "ip4.dst",
    "ip6.src",
    "ip6.dst",
    "tcp.src",
    "tcp.dst",
    "udp.src",
    "udp.dst",
    "icmp4.type",
    "icmp4.code",
    "icmp6.type",
    "icmp6.code",
];

/// The first word of a match that is an OVN symbol our parser does not compile (quoted
/// strings, `@group`s and `$set`s skipped).
pub fn unsupported_symbol(text: &str) -> Option<String> {
    let b = text.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c == b'"' {
            i += 1;
            while i < b.len() && b[i] != b'"' {
                i += if b[i] == b'\\' { 2 } else { 1 };
            }
            i += 1;
            continue;
        }
        let word_byte = |c: u8| c.is_ascii_alphanumeric() || c == b'_' || c == b'.' || c == b':';
        if word_byte(c) {
            let start = i;
            while i < b.len() && word_byte(b[i]) {
                i += 1;
            }
            let word = &text[start..i];
            let sigil = start > 0 && matches!(b[start - 1], b'@' | b'$');
            let ident = word.as_bytes()[0].is_ascii_alphabetic() || word.starts_with('_');
            if !sigil && ident && !COMPILED.contains(&word) && is_ovn_symbol(word) {
                return Some(word.to_string());
            }
            continue;
        }
        i += 1;
    }
    None
}

/// Why a row was not taken as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// OVN itself would not enforce it (ovn-controller skips the flow): skipped.
    InvalidInOvn(String),
    /// Valid in OVN, not compiled here.
    Unsupported(String),
}

/// The names a valid OVN match may reference: the NB port groups, the NB address sets and
/// the `$<pg>_ip4` / `$<pg>_ip6` sets derived from the groups.
pub struct OvnNames<'a> {
    /// NB `Port_Group` names.
    pub groups: &'a BTreeSet<String>,
    /// NB `Address_Set` names.
    pub sets: &'a BTreeSet<String>,
}

impl NameResolver for OvnNames<'_> {
    fn has_port_group(&self, name: &str) -> bool {
        self.groups.contains(name)
    }
    fn has_address_set(&self, name: &str) -> bool {
        self.sets.contains(name)
            || ["_ip4", "_ip6"].iter().any(|sfx| {
                name.strip_suffix(sfx)
                    .is_some_and(|pg| self.groups.contains(pg))
            })
    }
}

/// Maps an NB action; `stateful` says whether `allow` commits to conntrack (OVN does when
/// the switch has an `allow-related` ACL or a load balancer).
pub fn action(nb: &str, stateful: bool) -> Result<Action, Failure> {
    Ok(match nb {
        "allow" if stateful => Action::AllowRelated,
        "allow" | "allow-stateless" => Action::Allow,
        "allow-related" => Action::AllowRelated,
        "drop" => Action::Drop,
        "reject" => Action::Reject,
        "pass" => {
            return Err(Failure::Unsupported(
                "action pass (tiers with pass are not compiled)".into(),
            ))
        }
        other => return Err(Failure::InvalidInOvn(format!("unknown action '{other}'"))),
    })
}

/// Maps an NB direction.
pub fn direction(nb: &str) -> Result<Direction, Failure> {
    match nb {
        "from-lport" => Ok(Direction::Ingress),
        "to-lport" => Ok(Direction::Egress),
        other => Err(Failure::InvalidInOvn(format!(
            "unknown direction '{other}'"
        ))),
    }
}

/// A compiled match: its text for our model, the port groups and the address sets it names.
pub type Compiled = (String, BTreeSet<String>, BTreeSet<String>);

/// Parses a match as OVN would and turns LSP names into dataplane port names
/// (`local`: LSP name to port name; an LSP that is not ours gets a name no dataplane port
/// has). Returns the match text for our model and the groups and sets it references.
pub fn compile_match(
    text: &str,
    dir: Direction,
    names: &OvnNames<'_>,
    local: &BTreeMap<String, String>,
) -> Result<Compiled, Failure> {
    let parsed = expr::parse_with(text, names).map_err(|e| {
        let unknown_name =
            e.message.contains("unknown port group") || e.message.contains("unknown address set");
        match unsupported_symbol(text) {
            Some(name) if !unknown_name => {
                Failure::Unsupported(format!("'{name}' is not compiled here (at {})", e.pos))
            }
            _ => Failure::InvalidInOvn(format!("error parsing match: {e}")),
        }
    })?;
    if dir == Direction::Ingress && parsed.uses_port_field(PortField::Out) {
        return Err(Failure::Unsupported(
            "a from-lport match on outport (unknown at that stage)".into(),
        ));
    }
    let groups: BTreeSet<String> = parsed.port_groups().into_iter().map(String::from).collect();
    let sets: BTreeSet<String> = parsed
        .address_sets()
        .into_iter()
        .map(String::from)
        .collect();
    let mut named = false;
    parsed.for_each_atom(&mut |a| {
        named |= matches!(
            a,
            Atom::Port {
                port: PortName::Named(_),
                ..
            }
        )
    });
    let text = if named {
        rename_ports(parsed, local).to_string()
    } else {
        text.to_string()
    };
    Ok((text, groups, sets))
}

/// The prefix of the name given to an LSP that is not one of ours.
pub const REMOTE_LSP_PREFIX: &str = "ovn-remote:";

fn rename_ports(e: MatchExpr, local: &BTreeMap<String, String>) -> MatchExpr {
    match e {
        MatchExpr::And(v) => {
            MatchExpr::and(v.into_iter().map(|x| rename_ports(x, local)).collect())
        }
        MatchExpr::Or(v) => MatchExpr::or(v.into_iter().map(|x| rename_ports(x, local)).collect()),
        MatchExpr::Atom(Atom::Port {
            field,
            negated,
            port: PortName::Named(lsp),
        }) => MatchExpr::Atom(Atom::Port {
            field,
            negated,
            port: PortName::Named(
                local
                    .get(&lsp)
                    .cloned()
                    .unwrap_or_else(|| format!("{REMOTE_LSP_PREFIX}{lsp}")),
            ),
        }),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_are_told_apart() {
        let groups = BTreeSet::from(["pg_a".to_string()]);
        let sets = BTreeSet::from(["ag_x_ip4".to_string()]);
        let names = OvnNames {
            groups: &groups,
            sets: &sets,
        };
        let local = BTreeMap::from([("lsp-1".to_string(), "vf0".to_string())]);
        let ok = |t: &str, d| compile_match(t, d, &names, &local);
        let (text, g, s) = ok(
            "outport == @pg_a && ip4 && ip4.src == $pg_a_ip4 && ip4.dst == $ag_x_ip4",
            Direction::Egress,
        )
        .unwrap();
        assert_eq!(
            text,
            "outport == @pg_a && ip4 && ip4.src == $pg_a_ip4 && ip4.dst == $ag_x_ip4"
        );
        assert_eq!(g, BTreeSet::from(["pg_a".to_string()]));
        assert_eq!(
            s,
            BTreeSet::from(["pg_a_ip4".to_string(), "ag_x_ip4".to_string()])
        );
        let (text, ..) = ok(
            "inport == \"lsp-1\" || inport == \"lsp-2\"",
            Direction::Ingress,
        )
        .unwrap();
        assert_eq!(text, "inport == \"vf0\" || inport == \"ovn-remote:lsp-2\"");
        assert!(matches!(
            ok("inport == @pg_zz && ip", Direction::Ingress),
            Err(Failure::InvalidInOvn(m)) if m.contains("pg_zz")
        ));
        assert!(matches!(
            ok("ip4.src == $pg_zz_ip4", Direction::Ingress),
            Err(Failure::InvalidInOvn(_))
        ));
        assert!(matches!(
            ok("ip4 && &&", Direction::Ingress),
            Err(Failure::InvalidInOvn(_))
        ));
        assert!(matches!(
            ok("frobnicate == 1", Direction::Ingress),
            Err(Failure::InvalidInOvn(_))
        ));
        assert!(matches!(
            ok("ct.est && ip4", Direction::Ingress),
            Err(Failure::Unsupported(m)) if m.contains("ct.est")
        ));
        assert!(matches!(
            ok("eth.src == 00:00:00:00:00:01", Direction::Ingress),
            Err(Failure::Unsupported(_))
        ));
        assert!(matches!(
            ok("inport == @pg_a && ct.est && \"ct.x\" == 1", Direction::Ingress),
            Err(Failure::Unsupported(m)) if m.starts_with("'ct.est'")
        ));
        assert!(matches!(
            ok("ip6.src == fe80::1 && igmp", Direction::Ingress),
            Err(Failure::Unsupported(m)) if m.starts_with("'igmp'")
        ));
        // SCTP compiles (Neutron's SCTP rules, 5G's N2 on 38412).
        assert!(ok(
            "outport == @pg_a && ip4 && sctp && sctp.dst == 38412",
            Direction::Egress
        )
        .is_ok());
        assert!(matches!(
            ok("inport == @pg_zz && ct.est", Direction::Ingress),
            Err(Failure::InvalidInOvn(_))
        ));
        assert!(matches!(
            ok("reg0 == 1", Direction::Ingress),
            Err(Failure::Unsupported(_))
        ));
        assert!(matches!(
            ok("outport == @pg_a", Direction::Ingress),
            Err(Failure::Unsupported(_))
        ));
        assert_eq!(action("allow", true), Ok(Action::AllowRelated));
        assert_eq!(action("allow", false), Ok(Action::Allow));
        assert_eq!(action("allow-stateless", true), Ok(Action::Allow));
        assert!(matches!(action("pass", true), Err(Failure::Unsupported(_))));
        assert!(matches!(
            action("deny", true),
            Err(Failure::InvalidInOvn(_))
        ));
    }
}
