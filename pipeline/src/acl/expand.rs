//! Expansion of ACL matches into *flat rules*, the conjunctive form rte_acl needs, with a
//! per-ACL cache so that changing one address set re-expands only the ACLs using it.
//!
//! A flat rule is one address family and, for each field, one prefix or range:
//! input/output port constraints, source and destination prefix, protocol (value/mask),
//! source and destination port range, ICMP type and code range. `||` distributes over
//! `&&`; per conjunction each field's constraints are intersected as integer interval
//! sets (so `tcp.dst >= 1000 && tcp.dst <= 2000` is one range, `{80, 81, 82}` merges to
//! `80-82`, and `!=` becomes the complementary ranges/prefixes), then the product of the
//! fields' prefix/range decompositions gives the flat rules.
//!
//! Ports are matched through group membership, not expanded per member: a flat rule's
//! [`PortMatch`] lists groups (by [`GroupId`]) and named ports the packet's port must be
//! in (`require`) and must not be in (`exclude`). For rte_acl give each port a bitmask of
//! its groups ([`RuleSet::groups_of`]) and match it with a BITMASK field
//! (`value = mask = required bits`; excluded bits in the mask with value 0). Changing a
//! port group's members therefore never re-expands anything.
//!
//! **Set classes**: address sets work the same way once they are large. When the table is
//! built, every address set referenced by an ACL with at least
//! [`ExpandLimits::set_class_min_entries`] entries becomes a *set class* (the largest
//! [`MAX_SET_CLASSES`] of them, by entry count; the others expand as before, and the
//! choice is reported by [`AclTable::set_classes`]). A flat rule does not expand a class's
//! entries: its [`SetMatch`] names the sets the packet's address must be in (`require`) or
//! must not be in (`exclude`), and the classifier tests one bit of a per-packet bitmask
//! that [`super::members`] fills from the current membership. A class's entries can then
//! change without re-expanding or recompiling anything, and 1,000 ACLs naming a
//! 10,000-entry set stay 1,000 flat rules. `ip4.src == {$big, 10.0.0.1}` becomes two
//! alternatives (the class bit, the prefix); `ip4.src != {$big, 10.0.0.1}` one rule (the
//! complement of the prefix, the class bit excluded).

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Serialize;

use super::expr::{icmp_proto, AddrItem, Atom, Cmp, IcmpField, MatchExpr, PortName, Side};
use super::model::{Acl, AclError, Action, Direction, GroupId, IpNet, IpVersion, PortId, RuleSet};
use super::net::{prefix_mask, Intervals};
use super::reference::PacketSummary;

/// Default limit on the total number of flat rules.
pub const DEFAULT_MAX_FLAT_RULES: usize = 1_000_000;

/// Default entry count from which an address set becomes a set class (see the module docs).
/// Measured (`acl-bench --realistic`, the vhost benchmark's security-group set, whose
/// largest set has 200 entries): matching its sets of 16 entries or more by membership
/// cost 20-45 cycles per packet more than expanding them (the set-class group adds 4 bytes
/// to rte_acl's walk, and each address costs a hash probe per prefix length present,
/// before the verdict cache can answer), while their expansion is only 546 flat rules. So
/// sets expand until they are large enough for their expansion (and its rebuild on every
/// change) to hurt; a node can lower it (`set_class_min_entries`) where membership churns.
pub const DEFAULT_SET_CLASS_MIN_ENTRIES: usize = 1024;

/// Most set classes (bits of the key's source and destination set-class fields).
pub const MAX_SET_CLASSES: usize = 16;

/// Limits applied by the expansion.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExpandLimits {
    /// Maximum number of flat rules over all ACLs (also caps the number of `||`
    /// alternatives of one ACL).
    pub max_flat_rules: usize,
    /// Entry count from which a referenced address set is matched by membership (a set
    /// class) instead of being expanded; `usize::MAX` expands every set.
    pub set_class_min_entries: usize,
}

impl Default for ExpandLimits {
    fn default() -> Self {
        ExpandLimits {
            max_flat_rules: DEFAULT_MAX_FLAT_RULES,
            set_class_min_entries: DEFAULT_SET_CLASS_MIN_ENTRIES,
        }
    }
}

impl ExpandLimits {
    /// The default limits with every address set expanded (no set classes).
    pub fn expand_all() -> Self {
        ExpandLimits {
            set_class_min_entries: usize::MAX,
            ..Default::default()
        }
    }
}

/// The expansion went over [`ExpandLimits::max_flat_rules`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ExpandError {
    /// Too many flat rules.
    #[error("acl '{acl}' expands to {rules} flat rules; with the {others} flat rules of the other ACLs that exceeds the limit of {limit} (reduce the address sets or raise the flat-rule limit)")]
    TooManyRules {
        /// ACL name.
        acl: String,
        /// Flat rules this ACL alone would need.
        rules: u128,
        /// Flat rules of the other ACLs.
        others: usize,
        /// The limit.
        limit: usize,
    },
    /// Distributing `||` over `&&` gave too many alternatives.
    #[error("acl '{acl}': more than {limit} alternatives after distributing '||' over '&&'")]
    TooManyAlternatives {
        /// ACL name.
        acl: String,
        /// The limit.
        limit: usize,
    },
}

/// A port or group in a [`PortMatch`].
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PortRef {
    /// Membership of a port group.
    Group(GroupId),
    /// A port by name.
    Port(String),
}

impl PortRef {
    /// True if `port` is (a member of) this reference.
    pub fn matches(&self, rules: &RuleSet, port: PortId<'_>) -> bool {
        match self {
            PortRef::Group(id) => rules.group(*id).is_some_and(|g| g.contains(port)),
            PortRef::Port(name) => name == port.name,
        }
    }
}

/// Port constraint of a flat rule: in all of `require`, in none of `exclude`
/// (both empty: any port). Sorted and deduplicated.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct PortMatch {
    /// The port must be (a member of) each of these.
    pub require: Vec<PortRef>,
    /// The port must be (a member of) none of these.
    pub exclude: Vec<PortRef>,
}

impl PortMatch {
    /// True if any port matches.
    pub fn is_any(&self) -> bool {
        self.require.is_empty() && self.exclude.is_empty()
    }

    /// True if `port` satisfies the constraint.
    pub fn matches(&self, rules: &RuleSet, port: PortId<'_>) -> bool {
        self.require.iter().all(|r| r.matches(rules, port))
            && !self.exclude.iter().any(|r| r.matches(rules, port))
    }

    fn merge(&self, other: &PortMatch) -> PortMatch {
        let join = |a: &[PortRef], b: &[PortRef]| {
            let mut v: Vec<PortRef> = a.iter().chain(b).cloned().collect();
            v.sort();
            v.dedup();
            v
        };
        PortMatch {
            require: join(&self.require, &other.require),
            exclude: join(&self.exclude, &other.exclude),
        }
    }

    /// False if no port can satisfy it (whatever the group memberships).
    fn satisfiable(&self) -> bool {
        let named = self
            .require
            .iter()
            .filter(|r| matches!(r, PortRef::Port(_)))
            .count();
        named <= 1 && !self.require.iter().any(|r| self.exclude.contains(r))
    }
}

/// Address-set constraint of a flat rule on one address (source or destination): the
/// address is in every set of `require` and in none of `exclude` (both empty: any
/// address). Only set classes appear here (see [`SetClasses`]). Sorted and deduplicated.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct SetMatch {
    /// The address must be in each of these sets.
    pub require: Vec<String>,
    /// The address must be in none of these sets.
    pub exclude: Vec<String>,
}

impl SetMatch {
    /// True if any address matches.
    pub fn is_any(&self) -> bool {
        self.require.is_empty() && self.exclude.is_empty()
    }

    /// True if `addr` satisfies the constraint under the sets' current entries.
    pub fn matches(&self, rules: &RuleSet, addr: &std::net::IpAddr) -> bool {
        let inside = |n: &String| rules.address_set(n).is_some_and(|s| s.contains(addr));
        self.require.iter().all(inside) && !self.exclude.iter().any(inside)
    }

    fn merge(&self, other: &SetMatch) -> SetMatch {
        let join = |a: &[String], b: &[String]| {
            let mut v: Vec<String> = a.iter().chain(b).cloned().collect();
            v.sort();
            v.dedup();
            v
        };
        SetMatch {
            require: join(&self.require, &other.require),
            exclude: join(&self.exclude, &other.exclude),
        }
    }

    /// False if no address can satisfy it, whatever the sets hold.
    fn satisfiable(&self) -> bool {
        !self.require.iter().any(|r| self.exclude.contains(r))
    }
}

/// The address sets matched by membership (set classes), in bit order: bit `i` of the
/// key's set-class fields is set `i`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct SetClasses {
    names: Vec<String>,
}

impl SetClasses {
    /// The sets of `rules` referenced by its ACLs with at least `min_entries` entries, the
    /// largest [`MAX_SET_CLASSES`] of them (ties by name).
    pub fn choose(rules: &RuleSet, min_entries: usize) -> SetClasses {
        let mut used: Vec<(usize, &str)> = Vec::new();
        for a in rules.acls() {
            for name in a.expr.address_sets() {
                if let Some(s) = rules.address_set(name) {
                    if s.entries.len() >= min_entries && !used.iter().any(|u| u.1 == name) {
                        used.push((s.entries.len(), name));
                    }
                }
            }
        }
        used.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(b.1)));
        used.truncate(MAX_SET_CLASSES);
        let mut names: Vec<String> = used.into_iter().map(|u| u.1.to_string()).collect();
        names.sort();
        SetClasses { names }
    }

    /// Set classes with these names (bit = position; at most [`MAX_SET_CLASSES`]).
    pub fn from_names(names: Vec<String>) -> SetClasses {
        assert!(names.len() <= MAX_SET_CLASSES, "too many set classes");
        SetClasses { names }
    }

    /// The bit of set `name`, if it is a class.
    pub fn bit(&self, name: &str) -> Option<u32> {
        self.names.iter().position(|n| n == name).map(|i| 1u32 << i)
    }

    /// True if set `name` is a class.
    pub fn contains(&self, name: &str) -> bool {
        self.names.iter().any(|n| n == name)
    }

    /// The class names in bit order.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// Number of classes.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// True if every set expands.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// The value and mask of a set-class field for `m` (required bits, required | excluded).
    pub fn field(&self, m: &SetMatch) -> (u32, u32) {
        let bits = |v: &[String]| v.iter().filter_map(|n| self.bit(n)).fold(0, |a, b| a | b);
        let value = bits(&m.require);
        (value, value | bits(&m.exclude))
    }
}

/// IP protocol match: `(proto & mask) == value`; mask 0 is any protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct ProtoMatch {
    /// Value (bits outside `mask` are zero).
    pub value: u8,
    /// Mask: `0xff` for one protocol, `0` for any.
    pub mask: u8,
}

impl ProtoMatch {
    /// Any protocol.
    pub const ANY: ProtoMatch = ProtoMatch { value: 0, mask: 0 };

    /// True if `proto` matches.
    pub fn matches(&self, proto: u8) -> bool {
        proto & self.mask == self.value
    }
}

/// An inclusive range of a port or ICMP field.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct Range<T> {
    /// Lowest value.
    pub lo: T,
    /// Highest value.
    pub hi: T,
}

impl<T: Copy + Ord> Range<T> {
    /// True if `v` is in the range.
    pub fn contains(&self, v: T) -> bool {
        self.lo <= v && v <= self.hi
    }
}

/// One conjunctive rule, directly expressible in rte_acl (one family per rule).
///
/// Port ranges are full (`0-65535`) unless `proto` is exactly TCP or UDP, and ICMP ranges
/// are full unless `proto` is exactly ICMP of the rule's family.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct FlatRule {
    /// Index of the ACL in [`RuleSet::acls`] (file order; lower wins priority ties).
    pub acl: usize,
    /// The ACL's priority.
    pub priority: u16,
    /// The ACL's action.
    pub action: Action,
    /// The ACL's direction.
    pub direction: Direction,
    /// Address family.
    pub version: IpVersion,
    /// `inport` constraint.
    pub inport: Arc<PortMatch>,
    /// `outport` constraint.
    pub outport: Arc<PortMatch>,
    /// Source prefix (`/0` for any).
    pub src: IpNet,
    /// Destination prefix (`/0` for any).
    pub dst: IpNet,
    /// Set classes the source address must (not) be in.
    pub src_sets: Arc<SetMatch>,
    /// Set classes the destination address must (not) be in.
    pub dst_sets: Arc<SetMatch>,
    /// IP protocol.
    pub proto: ProtoMatch,
    /// TCP/UDP source port range.
    pub src_port: Range<u16>,
    /// TCP/UDP destination port range.
    pub dst_port: Range<u16>,
    /// ICMP type range.
    pub icmp_type: Range<u8>,
    /// ICMP code range.
    pub icmp_code: Range<u8>,
}

impl FlatRule {
    /// True if the packet matches every field (what rte_acl computes for this rule).
    pub fn matches(&self, rules: &RuleSet, pkt: &PacketSummary<'_>) -> bool {
        pkt.is_consistent()
            && pkt.version() == self.version
            && self.src.contains(&pkt.src)
            && self.dst.contains(&pkt.dst)
            && self.src_sets.matches(rules, &pkt.src)
            && self.dst_sets.matches(rules, &pkt.dst)
            && self.proto.matches(pkt.proto)
            && self.src_port.contains(pkt.src_port)
            && self.dst_port.contains(pkt.dst_port)
            && self.icmp_type.contains(pkt.icmp_type)
            && self.icmp_code.contains(pkt.icmp_code)
            && self.inport.matches(rules, pkt.inport)
            && self.outport.matches(rules, pkt.outport)
    }
}

// ---------------------------------------------------------------------------------------
// Conjunctions: per-field interval sets

fn vbit(v: IpVersion) -> u8 {
    match v {
        IpVersion::V4 => 1,
        IpVersion::V6 => 2,
    }
}

fn vidx(v: IpVersion) -> usize {
    match v {
        IpVersion::V4 => 0,
        IpVersion::V6 => 1,
    }
}

const PORT_MAX: u128 = 65535;
const BYTE_MAX: u128 = 255;

#[derive(Clone, Debug)]
struct Conj {
    versions: u8,
    proto: Intervals,
    src: [Intervals; 2],
    dst: [Intervals; 2],
    sport: Intervals,
    dport: Intervals,
    itype: Intervals,
    icode: Intervals,
    inport: PortMatch,
    outport: PortMatch,
    src_sets: SetMatch,
    dst_sets: SetMatch,
}

fn cmp_intervals<T: Copy + Into<u128>>(cmp: &Cmp<T>, max: u128) -> Intervals {
    let point = |x: &T| {
        let v: u128 = (*x).into();
        (v, v)
    };
    match cmp {
        Cmp::In(xs) => Intervals::from_ranges(max, xs.iter().map(point)),
        Cmp::NotIn(xs) => Intervals::from_ranges(max, xs.iter().map(point)).complement(),
        Cmp::Lt(x) => match (*x).into().checked_sub(1) {
            Some(hi) => Intervals::from_ranges(max, [(0, hi)]),
            None => Intervals::empty(max),
        },
        Cmp::Le(x) => Intervals::from_ranges(max, [(0, (*x).into())]),
        Cmp::Gt(x) => Intervals::from_ranges(max, [((*x).into() + 1, max)]),
        Cmp::Ge(x) => Intervals::from_ranges(max, [((*x).into(), max)]),
    }
}

impl Conj {
    fn full() -> Conj {
        Conj {
            versions: 3,
            proto: Intervals::full(BYTE_MAX),
            src: [
                Intervals::full(IpVersion::V4.max_value()),
                Intervals::full(IpVersion::V6.max_value()),
            ],
            dst: [
                Intervals::full(IpVersion::V4.max_value()),
                Intervals::full(IpVersion::V6.max_value()),
            ],
            sport: Intervals::full(PORT_MAX),
            dport: Intervals::full(PORT_MAX),
            itype: Intervals::full(BYTE_MAX),
            icode: Intervals::full(BYTE_MAX),
            inport: PortMatch::default(),
            outport: PortMatch::default(),
            src_sets: SetMatch::default(),
            dst_sets: SetMatch::default(),
        }
    }

    /// Drops families whose address constraints are empty; `None` if nothing can match.
    fn normalize(mut self) -> Option<Conj> {
        for v in IpVersion::ALL {
            let i = vidx(v);
            if self.src[i].is_empty() || self.dst[i].is_empty() {
                self.versions &= !vbit(v);
            }
        }
        let empty = self.versions == 0
            || self.proto.is_empty()
            || self.sport.is_empty()
            || self.dport.is_empty()
            || self.itype.is_empty()
            || self.icode.is_empty()
            || !self.inport.satisfiable()
            || !self.outport.satisfiable()
            || !self.src_sets.satisfiable()
            || !self.dst_sets.satisfiable();
        (!empty).then_some(self)
    }

    fn intersect(&self, o: &Conj) -> Option<Conj> {
        Conj {
            versions: self.versions & o.versions,
            proto: self.proto.intersect(&o.proto),
            src: [
                self.src[0].intersect(&o.src[0]),
                self.src[1].intersect(&o.src[1]),
            ],
            dst: [
                self.dst[0].intersect(&o.dst[0]),
                self.dst[1].intersect(&o.dst[1]),
            ],
            sport: self.sport.intersect(&o.sport),
            dport: self.dport.intersect(&o.dport),
            itype: self.itype.intersect(&o.itype),
            icode: self.icode.intersect(&o.icode),
            inport: self.inport.merge(&o.inport),
            outport: self.outport.merge(&o.outport),
            src_sets: self.src_sets.merge(&o.src_sets),
            dst_sets: self.dst_sets.merge(&o.dst_sets),
        }
        .normalize()
    }

    /// The alternatives of an atom: one conjunction, except for an address atom naming set
    /// classes without negation (one alternative per class, one for the other items).
    fn from_atom(atom: &Atom, cx: &Cx<'_>) -> Vec<Conj> {
        if let Atom::Addr {
            version,
            side,
            negated,
            items,
        } = atom
        {
            let (classes, nets): (Vec<&AddrItem>, Vec<&AddrItem>) = items
                .iter()
                .partition(|i| matches!(i, AddrItem::Set(n) if cx.classes.contains(n)));
            if !classes.is_empty() {
                let names = classes.iter().filter_map(|i| match i {
                    AddrItem::Set(n) => Some(n.clone()),
                    AddrItem::Net(_) => None,
                });
                let rest = Atom::Addr {
                    version: *version,
                    side: *side,
                    negated: *negated,
                    items: nets.into_iter().cloned().collect(),
                };
                let with_sets = |c: &mut Conj, m: SetMatch| match side {
                    Side::Src => c.src_sets = m,
                    Side::Dst => c.dst_sets = m,
                };
                if *negated {
                    // In none of the items: the prefixes' complement, no class bit.
                    let mut c = Conj::from_plain_atom(&rest, cx.rules);
                    if let Some(c) = &mut c {
                        let mut exclude: Vec<String> = names.collect();
                        exclude.sort();
                        exclude.dedup();
                        with_sets(
                            c,
                            SetMatch {
                                require: Vec::new(),
                                exclude,
                            },
                        );
                    }
                    return c.into_iter().collect();
                }
                let mut out = Vec::new();
                for name in names {
                    let mut c = Conj::full();
                    c.versions = vbit(*version);
                    with_sets(
                        &mut c,
                        SetMatch {
                            require: vec![name],
                            exclude: Vec::new(),
                        },
                    );
                    out.push(c);
                }
                if let Atom::Addr { items, .. } = &rest {
                    if !items.is_empty() {
                        out.extend(Conj::from_plain_atom(&rest, cx.rules));
                    }
                }
                return out;
            }
        }
        Conj::from_plain_atom(atom, cx.rules).into_iter().collect()
    }

    /// An atom as one conjunction, every address set expanded.
    fn from_plain_atom(atom: &Atom, rules: &RuleSet) -> Option<Conj> {
        let mut c = Conj::full();
        match atom {
            Atom::Version(v) => c.versions = vbit(*v),
            Atom::Proto(cmp) => c.proto = cmp_intervals(cmp, BYTE_MAX),
            Atom::Addr {
                version,
                side,
                negated,
                items,
            } => {
                c.versions = vbit(*version);
                let mut ranges = Vec::new();
                for item in items {
                    match item {
                        AddrItem::Net(n) => ranges.push(n.range()),
                        AddrItem::Set(name) => {
                            if let Some(set) = rules.address_set(name) {
                                ranges.extend(
                                    set.entries
                                        .iter()
                                        .filter(|e| e.version() == *version)
                                        .map(IpNet::range),
                                );
                            }
                        }
                    }
                }
                let mut set = Intervals::from_ranges(version.max_value(), ranges);
                if *negated {
                    set = set.complement();
                }
                match side {
                    Side::Src => c.src[vidx(*version)] = set,
                    Side::Dst => c.dst[vidx(*version)] = set,
                }
            }
            Atom::L4Port { proto, side, cmp } => {
                let p = u128::from(proto.number());
                c.proto = Intervals::from_ranges(BYTE_MAX, [(p, p)]);
                let set = cmp_intervals(cmp, PORT_MAX);
                match side {
                    Side::Src => c.sport = set,
                    Side::Dst => c.dport = set,
                }
            }
            Atom::Icmp {
                version,
                field,
                cmp,
            } => {
                c.versions = vbit(*version);
                let p = u128::from(icmp_proto(*version));
                c.proto = Intervals::from_ranges(BYTE_MAX, [(p, p)]);
                let set = cmp_intervals(cmp, BYTE_MAX);
                match field {
                    IcmpField::Type => c.itype = set,
                    IcmpField::Code => c.icode = set,
                }
            }
            Atom::Port {
                field,
                negated,
                port,
            } => {
                let r = match port {
                    PortName::Group(g) => match rules.group_id(g) {
                        Some(id) => PortRef::Group(id),
                        // Unknown group (cannot happen in a validated rule set): no member.
                        None if *negated => return Some(c),
                        None => return None,
                    },
                    PortName::Named(n) => PortRef::Port(n.clone()),
                };
                let pm = match field {
                    super::expr::PortField::In => &mut c.inport,
                    super::expr::PortField::Out => &mut c.outport,
                };
                if *negated {
                    pm.exclude.push(r);
                } else {
                    pm.require.push(r);
                }
            }
        }
        c.normalize()
    }

    /// Number of flat rules this conjunction expands to.
    fn rule_count(&self) -> u128 {
        let mut total = 0u128;
        for v in IpVersion::ALL {
            if self.versions & vbit(v) == 0 {
                continue;
            }
            let i = vidx(v);
            let n = [
                self.src[i].prefix_count(v.bits()),
                self.dst[i].prefix_count(v.bits()),
                self.proto.prefix_count(8),
                self.sport.ranges().len() as u128,
                self.dport.ranges().len() as u128,
                self.itype.ranges().len() as u128,
                self.icode.ranges().len() as u128,
            ]
            .into_iter()
            .fold(1u128, u128::saturating_mul);
            total = total.saturating_add(n);
        }
        total
    }

    fn emit(&self, acl: usize, rules: &RuleSet, out: &mut Vec<FlatRule>) {
        let a = &rules.acls()[acl];
        let inport = Arc::new(self.inport.clone());
        let outport = Arc::new(self.outport.clone());
        let src_sets = Arc::new(self.src_sets.clone());
        let dst_sets = Arc::new(self.dst_sets.clone());
        let protos: Vec<ProtoMatch> = self
            .proto
            .to_prefixes(8)
            .into_iter()
            .map(|(v, l)| ProtoMatch {
                value: v as u8,
                mask: prefix_mask(u32::from(l), 8) as u8,
            })
            .collect();
        let ranges16 = |s: &Intervals| -> Vec<Range<u16>> {
            s.ranges()
                .iter()
                .map(|&(lo, hi)| Range {
                    lo: lo as u16,
                    hi: hi as u16,
                })
                .collect()
        };
        let ranges8 = |s: &Intervals| -> Vec<Range<u8>> {
            s.ranges()
                .iter()
                .map(|&(lo, hi)| Range {
                    lo: lo as u8,
                    hi: hi as u8,
                })
                .collect()
        };
        let (sports, dports) = (ranges16(&self.sport), ranges16(&self.dport));
        let (itypes, icodes) = (ranges8(&self.itype), ranges8(&self.icode));
        for v in IpVersion::ALL {
            if self.versions & vbit(v) == 0 {
                continue;
            }
            let nets = |s: &Intervals| -> Vec<IpNet> {
                s.to_prefixes(v.bits())
                    .into_iter()
                    .filter_map(|(val, l)| IpNet::from_bits(v, val, l).ok())
                    .collect()
            };
            let (srcs, dsts) = (nets(&self.src[vidx(v)]), nets(&self.dst[vidx(v)]));
            for &src in &srcs {
                for &dst in &dsts {
                    for &proto in &protos {
                        for &src_port in &sports {
                            for &dst_port in &dports {
                                for &icmp_type in &itypes {
                                    for &icmp_code in &icodes {
                                        out.push(FlatRule {
                                            acl,
                                            priority: a.priority,
                                            action: a.action,
                                            direction: a.direction,
                                            version: v,
                                            inport: Arc::clone(&inport),
                                            outport: Arc::clone(&outport),
                                            src,
                                            dst,
                                            src_sets: Arc::clone(&src_sets),
                                            dst_sets: Arc::clone(&dst_sets),
                                            proto,
                                            src_port,
                                            dst_port,
                                            icmp_type,
                                            icmp_code,
                                        });
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// What an expansion reads: the rule set and which of its sets are classes.
struct Cx<'a> {
    rules: &'a RuleSet,
    classes: &'a SetClasses,
}

/// Disjunctive normal form as a list of satisfiable conjunctions.
fn dnf(e: &MatchExpr, cx: &Cx<'_>, limit: usize) -> Result<Vec<Conj>, ()> {
    match e {
        MatchExpr::Const(true) => Ok(vec![Conj::full()]),
        MatchExpr::Const(false) => Ok(Vec::new()),
        MatchExpr::Atom(a) => Ok(Conj::from_atom(a, cx)),
        MatchExpr::Or(items) => {
            let mut out = Vec::new();
            for item in items {
                out.extend(dnf(item, cx, limit)?);
                if out.len() > limit {
                    return Err(());
                }
            }
            Ok(out)
        }
        MatchExpr::And(items) => {
            // Atoms first: they narrow without multiplying.
            let mut ordered: Vec<&MatchExpr> = items
                .iter()
                .filter(|i| matches!(i, MatchExpr::Atom(_)))
                .collect();
            ordered.extend(items.iter().filter(|i| !matches!(i, MatchExpr::Atom(_))));
            let mut acc = vec![Conj::full()];
            for item in ordered {
                let terms = dnf(item, cx, limit)?;
                let mut next = Vec::new();
                for a in &acc {
                    for b in &terms {
                        if let Some(c) = a.intersect(b) {
                            next.push(c);
                            if next.len() > limit {
                                return Err(());
                            }
                        }
                    }
                }
                acc = next;
                if acc.is_empty() {
                    break;
                }
            }
            Ok(acc)
        }
    }
}

fn expand_within(
    rules: &RuleSet,
    classes: &SetClasses,
    acl: usize,
    others: usize,
    limit: usize,
) -> Result<Vec<FlatRule>, ExpandError> {
    let a = &rules.acls()[acl];
    let cx = Cx { rules, classes };
    let conjs = dnf(&a.expr, &cx, limit).map_err(|()| ExpandError::TooManyAlternatives {
        acl: a.name.clone(),
        limit,
    })?;
    let count = conjs
        .iter()
        .map(Conj::rule_count)
        .fold(0u128, u128::saturating_add);
    if count.saturating_add(others as u128) > limit as u128 {
        return Err(ExpandError::TooManyRules {
            acl: a.name.clone(),
            rules: count,
            others,
            limit,
        });
    }
    let mut out = Vec::with_capacity(count as usize);
    for c in &conjs {
        c.emit(acl, rules, &mut out);
    }
    Ok(out)
}

/// Expands one ACL (by index in [`RuleSet::acls`]) into flat rules, refusing more than
/// `limits.max_flat_rules`; every address set is expanded (no set classes).
pub fn expand_acl(
    rules: &RuleSet,
    acl: usize,
    limits: ExpandLimits,
) -> Result<Vec<FlatRule>, ExpandError> {
    expand_within(rules, &SetClasses::default(), acl, 0, limits.max_flat_rules)
}

/// What [`AclTable::update_address_set`] did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SetUpdate {
    /// The set is a set class: nothing was re-expanded, only its membership changed.
    pub class: bool,
    /// ACLs that reference the set and were re-expanded (no other ACL was touched).
    pub reexpanded: Vec<usize>,
    /// Of those, the ACLs whose flat rules actually changed (empty: nothing to recompile).
    pub changed: Vec<usize>,
    /// Total flat rules before the update.
    pub flat_rules_before: usize,
    /// Total flat rules after the update.
    pub flat_rules_after: usize,
}

/// Expansion figures of one ACL.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AclExpansionStats {
    /// ACL name.
    pub name: String,
    /// Flat rules it currently expands to.
    pub flat_rules: usize,
    /// How many times it has been expanded (1 + re-expansions).
    pub expansions: u64,
}

/// Expansion figures of a table.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ExpansionStats {
    /// Number of ACLs.
    pub acls: usize,
    /// Total flat rules.
    pub flat_rules: usize,
    /// The configured limit.
    pub limit: usize,
    /// Per ACL, in file order.
    pub per_acl: Vec<AclExpansionStats>,
}

/// A rule set with its per-ACL expansions cached and indexed by address-set name.
#[derive(Clone, Debug)]
pub struct AclTable {
    rules: RuleSet,
    limits: ExpandLimits,
    per_acl: Vec<Vec<FlatRule>>,
    by_set: BTreeMap<String, Vec<usize>>,
    expansions: Vec<u64>,
    total: usize,
    classes: SetClasses,
}

impl AclTable {
    /// Expands every ACL; fails if the total goes over `limits.max_flat_rules`. The large
    /// sets become set classes ([`SetClasses::choose`]).
    pub fn new(rules: RuleSet, limits: ExpandLimits) -> Result<AclTable, ExpandError> {
        AclTable::build(rules, limits, None)
    }

    /// [`AclTable::new`], taking from `prev` the flat rules of every ACL it expanded the
    /// same way: when both have the same groups, sets (entries included) and set classes,
    /// an ACL equal to one of `prev`'s of the same name (direction, priority, match,
    /// action, log) expands to that one's flat rules, renumbered. The result is the same
    /// as [`AclTable::new`]'s (`tests::reusing_expands_as_new`); a follower publishing a
    /// rule set with one ACL added expands that one instead of all of them.
    pub fn new_reusing(
        rules: RuleSet,
        limits: ExpandLimits,
        prev: &AclTable,
    ) -> Result<AclTable, ExpandError> {
        AclTable::build(rules, limits, Some(prev))
    }

    fn build(
        rules: RuleSet,
        limits: ExpandLimits,
        prev: Option<&AclTable>,
    ) -> Result<AclTable, ExpandError> {
        let classes = SetClasses::choose(&rules, limits.set_class_min_entries);
        let prev = prev.filter(|p| {
            classes == p.classes
                && rules.port_groups() == p.rules.port_groups()
                && rules.address_sets() == p.rules.address_sets()
        });
        // Name -> (ACL, its flat rules) in `prev`.
        let before: std::collections::HashMap<&str, (&Acl, &Vec<FlatRule>)> = prev
            .map(|p| {
                p.rules
                    .acls()
                    .iter()
                    .zip(&p.per_acl)
                    .map(|(a, f)| (a.name.as_str(), (a, f)))
                    .collect()
            })
            .unwrap_or_default();
        let mut per_acl = Vec::with_capacity(rules.acls().len());
        let mut total = 0usize;
        let mut by_set: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        for (i, a) in rules.acls().iter().enumerate() {
            let same = before
                .get(a.name.as_str())
                .filter(|(old, f)| *old == a && total + f.len() <= limits.max_flat_rules);
            let flat = match same {
                Some((_, f)) => f
                    .iter()
                    .map(|r| FlatRule {
                        acl: i,
                        ..r.clone()
                    })
                    .collect(),
                None => expand_within(&rules, &classes, i, total, limits.max_flat_rules)?,
            };
            total += flat.len();
            per_acl.push(flat);
            for s in a.expr.address_sets() {
                by_set.entry(s.to_string()).or_default().push(i);
            }
        }
        let expansions = vec![1; per_acl.len()];
        Ok(AclTable {
            rules,
            limits,
            per_acl,
            by_set,
            expansions,
            total,
            classes,
        })
    }

    /// The address sets matched by membership (bit order).
    pub fn set_classes(&self) -> &SetClasses {
        &self.classes
    }

    /// The limits the table was built with.
    pub fn limits(&self) -> ExpandLimits {
        self.limits
    }

    /// The rule set.
    pub fn rules(&self) -> &RuleSet {
        &self.rules
    }

    /// All flat rules, grouped by ACL in file order.
    pub fn flat_rules(&self) -> impl Iterator<Item = &FlatRule> + '_ {
        self.per_acl.iter().flatten()
    }

    /// The flat rules of one ACL.
    pub fn acl_rules(&self, acl: usize) -> &[FlatRule] {
        self.per_acl.get(acl).map_or(&[], Vec::as_slice)
    }

    /// Total number of flat rules.
    pub fn flat_rule_count(&self) -> usize {
        self.total
    }

    /// The ACLs (indices) that reference an address set.
    pub fn acls_using_address_set(&self, name: &str) -> &[usize] {
        self.by_set.get(name).map_or(&[], Vec::as_slice)
    }

    /// How many times ACL `acl` has been expanded (1 after [`AclTable::new`]).
    pub fn expansions_of(&self, acl: usize) -> u64 {
        self.expansions.get(acl).copied().unwrap_or(0)
    }

    /// Expansion figures.
    pub fn stats(&self) -> ExpansionStats {
        ExpansionStats {
            acls: self.per_acl.len(),
            flat_rules: self.total,
            limit: self.limits.max_flat_rules,
            per_acl: self
                .rules
                .acls()
                .iter()
                .zip(&self.per_acl)
                .zip(&self.expansions)
                .map(|((a, f), &n)| AclExpansionStats {
                    name: a.name.clone(),
                    flat_rules: f.len(),
                    expansions: n,
                })
                .collect(),
        }
    }

    /// Replaces an address set's entries and re-expands only the ACLs that reference it.
    /// All or nothing: if the new expansion goes over the limit, the set keeps its old
    /// entries and the error is returned.
    pub fn update_address_set(
        &mut self,
        name: &str,
        entries: Vec<IpNet>,
    ) -> Result<SetUpdate, AclError> {
        if self.classes.contains(name) {
            // Matched by membership: the flat rules do not depend on the entries.
            self.rules.replace_address_set(name, entries)?;
            return Ok(SetUpdate {
                class: true,
                reexpanded: Vec::new(),
                changed: Vec::new(),
                flat_rules_before: self.total,
                flat_rules_after: self.total,
            });
        }
        let affected = self.acls_using_address_set(name).to_vec();
        let old = self.rules.replace_address_set(name, entries)?;
        let before = self.total;
        let mut others = self.total
            - affected
                .iter()
                .map(|&i| self.per_acl[i].len())
                .sum::<usize>();
        let mut fresh = Vec::with_capacity(affected.len());
        for &i in &affected {
            match expand_within(
                &self.rules,
                &self.classes,
                i,
                others,
                self.limits.max_flat_rules,
            ) {
                Ok(flat) => {
                    others += flat.len();
                    fresh.push(flat);
                }
                Err(e) => {
                    // Restore the old entries; the set name exists, so this cannot fail.
                    let _ = self.rules.replace_address_set(name, old);
                    return Err(e.into());
                }
            }
        }
        let mut changed = Vec::new();
        for (&i, flat) in affected.iter().zip(fresh) {
            if self.per_acl[i] != flat {
                changed.push(i);
            }
            self.per_acl[i] = flat;
            self.expansions[i] += 1;
        }
        self.total = others;
        Ok(SetUpdate {
            class: false,
            reexpanded: affected,
            changed,
            flat_rules_before: before,
            flat_rules_after: self.total,
        })
    }

    /// The rule set, mutably, for membership updates that re-expand nothing (set-class
    /// entries, port-group members): the caller keeps the flat rules valid.
    pub(crate) fn rules_mut(&mut self) -> &mut RuleSet {
        &mut self.rules
    }

    /// Replaces a port group's members. Nothing is re-expanded (flat rules refer to the
    /// group by id); the dataplane must refresh the group bitmask of the affected ports.
    pub fn update_port_group(&mut self, name: &str, members: Vec<String>) -> Result<(), AclError> {
        self.rules.replace_port_group(name, members).map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::acl::model::{AclSpec, AddressSet, PortGroup};

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    /// `pg_a` = {a0}, `pg_b` = {b0}.
    fn two_groups() -> Vec<PortGroup> {
        ["a", "b"]
            .map(|g| PortGroup {
                name: format!("pg_{g}"),
                members: vec![format!("{g}0")],
            })
            .to_vec()
    }

    fn ruleset(sets: &[(&str, Vec<IpNet>)], matches: &[&str]) -> RuleSet {
        let groups = two_groups();
        let sets = sets
            .iter()
            .map(|(n, e)| AddressSet {
                name: n.to_string(),
                entries: e.clone(),
            })
            .collect();
        let acls = matches
            .iter()
            .enumerate()
            .map(|(i, m)| AclSpec {
                name: format!("r{i}"),
                direction: Direction::Egress,
                priority: 100,
                match_text: m.to_string(),
                action: Action::Allow,
                log: None,
            })
            .collect();
        RuleSet::new(Action::Drop, groups, sets, acls).unwrap()
    }

    fn count(m: &str) -> usize {
        let rs = ruleset(
            &[("a", nets(&["10.0.0.0/24", "10.0.1.1", "2001:db8::/32"]))],
            &[m],
        );
        expand_acl(&rs, 0, ExpandLimits::default()).unwrap().len()
    }

    #[test]
    fn expansion_counts() {
        assert_eq!(
            count("outport == @pg_a && ip4 && ip4.src == $a && tcp.dst == 5432"),
            2
        );
        assert_eq!(
            count("ip4.src == $a && ip4.dst == {10.9.0.0/16, 10.8.0.1, 10.8.0.2}"),
            2 * 3
        );
        assert_eq!(count("tcp.dst == {80, 443} || udp.dst == 53"), 2 * 2 + 2);
        assert_eq!(
            count("ip4 && tcp.dst == {80, 81, 82}"),
            1,
            "adjacent ports merge into one range"
        );
        assert_eq!(count("ip4 && tcp.dst >= 1000 && tcp.dst <= 2000"), 1);
        assert_eq!(count("ip4.src != 10.0.0.1"), 32);
        assert_eq!(
            count("ip4.src != $a"),
            count("ip4.src != {10.0.0.0/24, 10.0.1.1}")
        );
        assert_eq!(count("ip6.src == $a"), 1, "only the set's IPv6 entries");
        assert_eq!(count("tcp && udp"), 0);
        assert_eq!(
            count("ip4.src == 10.0.0.0/8 && ip4.src == 192.168.0.0/16"),
            0
        );
        assert_eq!(count("inport == \"a0\" && inport == \"b0\""), 0);
        assert_eq!(count("inport == @pg_a && inport != @pg_a"), 0);
        assert_eq!(count("1"), 2, "one rule per family");
        assert_eq!(count("0"), 0);
        assert_eq!(count("!tcp && ip4"), 8, "proto != 6 as value/mask pairs");
        assert_eq!(count("icmp"), 2);
        assert_eq!(count("icmp4.type == 8 && icmp6.type == 128"), 0);
    }

    #[test]
    fn flat_rule_fields() {
        let rs = ruleset(
            &[("a", nets(&["10.0.2.0/24"]))],
            &["outport == @pg_b && ip4.src == $a && 1000 <= tcp.dst <= 2000"],
        );
        let flat = expand_acl(&rs, 0, ExpandLimits::default()).unwrap();
        assert_eq!(flat.len(), 1);
        let r = &flat[0];
        assert_eq!(r.version, IpVersion::V4);
        assert_eq!(r.src.to_string(), "10.0.2.0/24");
        assert!(r.dst.is_any());
        assert_eq!(
            r.proto,
            ProtoMatch {
                value: 6,
                mask: 0xff
            }
        );
        assert_eq!(r.dst_port, Range { lo: 1000, hi: 2000 });
        assert_eq!(r.src_port, Range { lo: 0, hi: 65535 });
        assert_eq!(r.outport.require, vec![PortRef::Group(GroupId(1))]);
        assert!(r.inport.is_any());
    }

    #[test]
    fn limit_is_enforced() {
        let big: Vec<IpNet> = (0..20u32)
            .map(|i| IpNet::host(std::net::Ipv4Addr::from(0x0a00_0000 + i * 2).into()))
            .collect();
        let rs = ruleset(
            &[("a", big.clone()), ("b", big[..10].to_vec())],
            &["ip4.src == $a && ip4.dst == $b"],
        );
        let e = AclTable::new(
            rs.clone(),
            ExpandLimits {
                max_flat_rules: 199,
                ..ExpandLimits::expand_all()
            },
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "acl 'r0' expands to 200 flat rules; with the 0 flat rules of the other ACLs that exceeds the limit of 199 (reduce the address sets or raise the flat-rule limit)"
        );
        let mut t = AclTable::new(
            rs,
            ExpandLimits {
                max_flat_rules: 200,
                ..ExpandLimits::expand_all()
            },
        )
        .unwrap();
        assert_eq!(t.flat_rule_count(), 200);
        // Growing a set over the limit is refused and leaves everything as it was.
        let mut bigger = big.clone();
        bigger.push("10.1.0.1".parse().unwrap());
        assert!(matches!(
            t.update_address_set("b", bigger).unwrap_err(),
            AclError::Expand(_)
        ));
        assert_eq!(
            t.rules().address_set("b").unwrap().entries,
            big[..10].to_vec()
        );
        assert_eq!(t.flat_rule_count(), 200);
        assert_eq!(t.expansions_of(0), 1);
        assert!(matches!(
            t.update_address_set("zz", vec![]),
            Err(AclError::UnknownAddressSet(_))
        ));
        // Distribution blow-up is refused too.
        let ors = (0..4)
            .map(|i| format!("(ip4.src != 10.0.0.{i} || tcp.dst != {i})"))
            .collect::<Vec<_>>()
            .join(" && ");
        let rs = ruleset(&[], &[&ors]);
        assert!(matches!(
            AclTable::new(
                rs,
                ExpandLimits {
                    max_flat_rules: 8,
                    ..ExpandLimits::expand_all()
                }
            ),
            Err(ExpandError::TooManyAlternatives { .. })
        ));
    }

    /// Limits making every set of 16 entries or more a set class.
    fn small_classes() -> ExpandLimits {
        ExpandLimits {
            set_class_min_entries: 16,
            ..Default::default()
        }
    }

    /// `n` non-adjacent IPv4 hosts (each its own /32).
    fn hosts(n: u32, base: u32) -> Vec<IpNet> {
        (0..n)
            .map(|i| IpNet::host(std::net::Ipv4Addr::from(base + i * 2).into()))
            .collect()
    }

    #[test]
    fn thousand_entry_set_times_ten_acls() {
        let matches: Vec<String> = (0..10)
            .map(|p| {
                format!(
                    "outport == @pg_a && ip4.src == $big && tcp.dst == {}",
                    8000 + p
                )
            })
            .collect();
        let matches: Vec<&str> = matches.iter().map(String::as_str).collect();
        let mut m = matches.clone();
        m.push("outport == @pg_b && icmp4");
        let rs = ruleset(&[("big", hosts(1000, 0x0a00_0000)), ("other", vec![])], &m);
        let mut t = AclTable::new(rs.clone(), ExpandLimits::expand_all()).unwrap();
        assert_eq!(t.flat_rule_count(), 10 * 1000 + 1);
        let up = t
            .update_address_set("big", hosts(1001, 0x0a00_0000))
            .unwrap();
        assert_eq!(up.reexpanded, (0..10).collect::<Vec<_>>());
        assert_eq!(up.flat_rules_after, 10 * 1001 + 1);
        assert_eq!(t.expansions_of(10), 1, "the ICMP ACL was not re-expanded");

        // The same set as a set class: one flat rule per ACL, and a new entry re-expands
        // nothing.
        let mut t = AclTable::new(rs, small_classes()).unwrap();
        assert_eq!(t.set_classes().names(), &["big".to_string()]);
        assert_eq!(t.flat_rule_count(), 10 + 1);
        let up = t
            .update_address_set("big", hosts(1001, 0x0a00_0000))
            .unwrap();
        assert!(up.class && up.reexpanded.is_empty());
        assert_eq!(t.flat_rule_count(), 10 + 1);
        assert_eq!(t.rules().address_set("big").unwrap().entries.len(), 1001);
        assert_eq!(t.expansions_of(0), 1);
    }

    #[test]
    fn set_classes_in_flat_rules() {
        let big = hosts(20, 0x0a00_0000);
        let rs = ruleset(
            &[("big", big.clone()), ("small", nets(&["10.9.0.0/16"]))],
            &[
                "ip4.src == {$big, $small, 10.8.0.1} && tcp.dst == 80",
                "ip4.src != {$big, 10.8.0.0/24}",
                "ip4.src == $big && ip4.src != $big",
                "ip6.dst == $big",
            ],
        );
        let t = AclTable::new(rs, small_classes()).unwrap();
        assert_eq!(t.set_classes().names(), &["big".to_string()]);
        assert_eq!(t.set_classes().bit("big"), Some(1));
        // Rule 0: the class alternative, then {small, 10.8.0.1} expanded (2 prefixes).
        let r0 = t.acl_rules(0);
        assert_eq!(r0.len(), 3);
        assert_eq!(r0[0].src_sets.require, vec!["big".to_string()]);
        assert!(r0[0].src.is_any());
        assert!(r0[1..]
            .iter()
            .all(|r| r.src_sets.is_any() && !r.src.is_any()));
        // Rule 1: the complement of one /24 (24 prefixes), each excluding the class.
        let r1 = t.acl_rules(1);
        assert_eq!(r1.len(), 24);
        assert!(r1
            .iter()
            .all(|r| r.src_sets.exclude == vec!["big".to_string()]));
        assert_eq!(t.set_classes().field(&r1[0].src_sets), (0, 1));
        // Rule 2 cannot match; rule 3 requires the class on IPv6 destinations.
        assert!(t.acl_rules(2).is_empty());
        assert_eq!(t.acl_rules(3).len(), 1);
        assert_eq!(t.acl_rules(3)[0].version, IpVersion::V6);
        assert_eq!(t.acl_rules(3)[0].dst_sets.require, vec!["big".to_string()]);
        // The flat rules judge like the model.
        let rules = t.rules();
        let pk = |s: &str, d: &str| {
            PacketSummary::tcp(
                PortId::named("a0"),
                PortId::named("b0"),
                s.parse().unwrap(),
                d.parse().unwrap(),
                1,
                80,
            )
        };
        for p in [
            pk("10.0.0.2", "1.1.1.1"),
            pk("10.0.0.3", "1.1.1.1"),
            pk("10.8.0.1", "1.1.1.1"),
            pk("10.8.0.2", "1.1.1.1"),
            pk("10.9.3.3", "1.1.1.1"),
            pk("::1", "::2"),
        ] {
            assert_eq!(
                crate::acl::reference::evaluate_flat(rules, t.flat_rules(), &p),
                crate::acl::reference::evaluate(rules, &p),
                "{p:?}"
            );
        }
    }

    /// Expansion figures for the report: `cargo test --release -- --ignored --nocapture figures`.
    #[test]
    #[ignore = "slow: prints expansion figures up to 1M flat rules"]
    fn figures() {
        for (n_src, n_dst, acls) in [(1000, 0, 1), (1000, 0, 100), (1000, 100, 1), (1000, 999, 1)] {
            let mut sets = vec![("src", hosts(n_src, 0x0a00_0000))];
            let mut m = String::from("outport == @pg_a && ip4.src == $src && tcp.dst == 5432");
            if n_dst > 0 {
                sets.push(("dst", hosts(n_dst, 0x0b00_0000)));
                m.push_str(" && ip4.dst == $dst");
            }
            let matches = vec![m.as_str(); acls];
            let mut names = matches.clone();
            names.push("outport == @pg_b && icmp4");
            let rs = ruleset(&sets, &names);
            let start = std::time::Instant::now();
            let mut t = AclTable::new(rs, ExpandLimits::expand_all()).unwrap();
            let built = start.elapsed();
            let before = t.flat_rule_count();
            let start = std::time::Instant::now();
            let up = t
                .update_address_set("src", hosts(n_src + 1, 0x0a00_0000))
                .unwrap();
            let updated = start.elapsed();
            println!(
                "src set {n_src} x dst set {n_dst} x {acls} ACLs (+1 unrelated): {before} flat rules in {built:?}; \
                 +1 src entry re-expanded {} ACLs -> {} flat rules in {updated:?}",
                up.reexpanded.len(),
                up.flat_rules_after,
            );
        }
        println!(
            "size_of::<FlatRule>() = {} bytes",
            std::mem::size_of::<FlatRule>()
        );
        let rs = ruleset(
            &[
                ("src", hosts(1001, 0x0a00_0000)),
                ("dst", hosts(1000, 0x0b00_0000)),
            ],
            &["ip4.src == $src && ip4.dst == $dst"],
        );
        println!(
            "{}",
            AclTable::new(rs, ExpandLimits::expand_all()).unwrap_err()
        );
    }

    #[test]
    fn update_reexpands_only_users_of_the_set() {
        let rs = ruleset(
            &[("a", nets(&["10.0.1.0/24"])), ("b", nets(&["10.0.2.0/24"]))],
            &[
                "outport == @pg_a && ip4.src == $a && tcp.dst == 80",
                "outport == @pg_b && ip4.src == {$b, 10.0.5.0/24} && tcp.dst == 443",
                "outport == @pg_b && icmp4",
                "ip4.dst == $a || ip4.src == $b",
            ],
        );
        let mut t = AclTable::new(rs, ExpandLimits::default()).unwrap();
        assert_eq!(t.acls_using_address_set("a"), &[0, 3]);
        assert_eq!(t.acls_using_address_set("b"), &[1, 3]);
        assert_eq!(t.flat_rule_count(), 1 + 2 + 1 + 2);

        let up = t
            .update_address_set("a", nets(&["10.0.1.0/24", "10.0.7.7", "10.0.8.8"]))
            .unwrap();
        assert_eq!(up.reexpanded, vec![0, 3]);
        assert_eq!(up.changed, vec![0, 3]);
        assert_eq!((up.flat_rules_before, up.flat_rules_after), (6, 10));
        assert_eq!(
            (0..4).map(|i| t.expansions_of(i)).collect::<Vec<_>>(),
            vec![2, 1, 1, 2]
        );

        // Same entries again: re-expanded, but nothing changed, nothing to recompile.
        let up = t.update_address_set("b", nets(&["10.0.2.0/24"])).unwrap();
        assert_eq!(up.reexpanded, vec![1, 3]);
        assert!(up.changed.is_empty());
        assert_eq!(
            (0..4).map(|i| t.expansions_of(i)).collect::<Vec<_>>(),
            vec![2, 2, 1, 3]
        );

        // The cache equals a fresh expansion of the updated rule set.
        let fresh = AclTable::new(t.rules().clone(), ExpandLimits::default()).unwrap();
        assert!(fresh.flat_rules().eq(t.flat_rules()));
        let stats = t.stats();
        assert_eq!(stats.flat_rules, 10);
        assert_eq!(stats.per_acl[2].expansions, 1);

        // Port-group membership changes re-expand nothing.
        t.update_port_group("pg_b", vec!["b0".into(), "b1".into()])
            .unwrap();
        assert_eq!(t.expansions_of(1), 2);
    }

    /// Match texts the reuse property draws from: plain, expanded sets, a set class, groups.
    const REUSE_MATCHES: [&str; 8] = [
        "outport == @pg_a && ip4.src == $small && tcp.dst == 80",
        "outport == @pg_b && ip4.src == $big",
        "ip4.dst == $small || ip6",
        "udp.dst == {53, 123} && ip4.src == 10.0.0.0/8",
        "outport == @pg_a && icmp4",
        "ip4.src == $big && ip4.dst == $small",
        "tcp && !(tcp.dst == 22)",
        "outport == {@pg_a, @pg_b} && ip4.src != $small",
    ];

    fn named_ruleset(small: u32, big: u32, acls: &[(String, usize, u16)]) -> RuleSet {
        let groups = two_groups();
        let sets = vec![
            AddressSet {
                name: "small".into(),
                entries: hosts(small, 0x0a01_0000),
            },
            AddressSet {
                name: "big".into(),
                entries: hosts(big, 0x0a02_0000),
            },
        ];
        let specs = acls
            .iter()
            .map(|(name, m, priority)| AclSpec {
                name: name.clone(),
                direction: Direction::Egress,
                priority: *priority,
                match_text: REUSE_MATCHES[*m].to_string(),
                action: Action::Allow,
                log: None,
            })
            .collect();
        RuleSet::new(Action::Drop, groups, sets, specs).unwrap()
    }

    proptest::proptest! {
        /// Whatever the two rule sets (ACLs kept, inserted, removed, edited, reordered; sets
        /// grown across the set-class threshold), expanding with the first's table reused
        /// gives what expanding from nothing gives, and so does parsing with it reused.
        #[test]
        fn reusing_expands_as_new(
            before in proptest::collection::vec((0usize..12, 0usize..8, 0u16..3), 0..10),
            edits in proptest::collection::vec((0u8..4, 0usize..10, 12usize..16, 0usize..8), 0..4),
            small in (1u32..4, 1u32..4),
            big in (4u32..12, 4u32..12),
            sets_change in proptest::bool::weighted(0.3),
        ) {
            let limits = ExpandLimits {
                set_class_min_entries: 8,
                ..ExpandLimits::default()
            };
            let dedup = |v: &[(usize, usize, u16)]| {
                let mut seen = std::collections::BTreeSet::new();
                v.iter()
                    .filter(|(n, ..)| seen.insert(*n))
                    .map(|&(n, m, p)| (format!("acl{n}"), m, p))
                    .collect::<Vec<_>>()
            };
            // The second rule set is the first edited: ACLs inserted, removed, their match
            // or priority changed.
            let first = dedup(&before);
            let mut second = first.clone();
            for &(op, at, name, m) in &edits {
                let at = at.min(second.len());
                match op {
                    0 => second.insert(at, (format!("acl{name}"), m, 1)),
                    _ if at == second.len() => {}
                    1 => {
                        second.remove(at);
                    }
                    2 => second[at].1 = m,
                    _ => second[at].2 += 1,
                }
            }
            let mut names = std::collections::BTreeSet::new();
            second.retain(|a| names.insert(a.0.clone()));
            let (small1, big1) = if sets_change { (small.1, big.1) } else { (small.0, big.0) };
            let old = AclTable::new(named_ruleset(small.0, big.0, &first), limits).unwrap();
            let fresh = named_ruleset(small1, big1, &second);
            let whole = AclTable::new(fresh.clone(), limits).unwrap();
            let reused = AclTable::new_reusing(fresh.clone(), limits, &old).unwrap();
            proptest::prop_assert_eq!(reused.set_classes(), whole.set_classes());
            proptest::prop_assert_eq!(&reused.per_acl, &whole.per_acl);
            proptest::prop_assert_eq!(&reused.by_set, &whole.by_set);
            proptest::prop_assert_eq!(reused.flat_rule_count(), whole.flat_rule_count());
            let reparsed = RuleSet::new_reusing(
                Action::Drop,
                fresh.port_groups().to_vec(),
                fresh.address_sets().to_vec(),
                fresh
                    .acls()
                    .iter()
                    .map(|a| AclSpec {
                        name: a.name.clone(),
                        direction: a.direction,
                        priority: a.priority,
                        match_text: a.match_text.clone(),
                        action: a.action,
                        log: None,
                    })
                    .collect(),
                Some(old.rules()),
            )
            .unwrap();
            proptest::prop_assert_eq!(reparsed.acls(), fresh.acls());
        }
    }

    /// An ACL added to a table of many is expanded alone; the others' flat rules are the
    /// ones the old table holds, renumbered past the insertion.
    #[test]
    fn reusing_takes_the_kept_acls_flat_rules() {
        let limits = ExpandLimits::default();
        let acls: Vec<(String, usize, u16)> =
            (0..6).map(|i| (format!("acl{i}"), i % 8, 1)).collect();
        let old = AclTable::new(named_ruleset(2, 5, &acls), limits).unwrap();
        let mut added = acls.clone();
        added.insert(2, ("new".into(), 7, 1));
        let t = AclTable::new_reusing(named_ruleset(2, 5, &added), limits, &old).unwrap();
        assert_eq!(t.acl_rules(2).iter().map(|r| r.acl).max(), Some(2));
        for (i, j) in [(0, 0), (1, 1), (3, 2), (4, 3), (5, 4), (6, 5)] {
            let want: Vec<FlatRule> = old
                .acl_rules(j)
                .iter()
                .map(|r| FlatRule {
                    acl: i,
                    ..r.clone()
                })
                .collect();
            assert_eq!(t.acl_rules(i), want.as_slice(), "acl {i}");
        }
        // A set's entries changed: nothing is taken (the expansions may differ).
        let t = AclTable::new_reusing(named_ruleset(3, 5, &added), limits, &old).unwrap();
        assert_eq!(
            t.flat_rule_count(),
            AclTable::new(named_ruleset(3, 5, &added), limits)
                .unwrap()
                .flat_rule_count()
        );
    }
}
