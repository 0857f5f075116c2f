//! The membership-churn differential harness, shared by the pipeline's test (the linear
//! classifier) and the dataplane's (rte_acl): random rule sets with address sets (large
//! ones matched by membership, small ones expanded, one emptied on the way) and port
//! groups, random batches of membership changes interleaved with bursts of packets through
//! a real `parse -> acl -> forward` graph. Every packet's fate (sent or dropped) must equal
//! the reference evaluator's verdict under the membership current when its burst ran, and
//! each ACL's packet counter must equal the number of packets the reference gave it.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use arrayvec::ArrayVec;
use pipeline::acl::model::{AclFile, AclRuleConfig};
use pipeline::acl::{
    evaluate, AclConfig, AclHub, Action, Classify, Direction, IpNet, MemberChange, PacketSummary,
    PortId, RuleSet,
};
use pipeline::source::{build_frame, L4Proto, SourceSpec};
use pipeline::{Graph, GraphSpec, PacketBuf, PortInfo, Registry, TestBuf};

/// SplitMix64: a small deterministic generator.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    pub fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
    pub fn pick<'a, T>(&mut self, v: &'a [T]) -> &'a T {
        &v[self.below(v.len())]
    }
}

/// Ports: name, role; pairs p0<->p1, p2<->p3.
pub const PORTS: [(&str, &str); 4] = [("p0", "r0"), ("p1", "r1"), ("p2", "r0"), ("p3", "")];
const PEER: [usize; 4] = [1, 0, 3, 2];
const GROUP_MEMBERS: [&str; 6] = ["p0", "p1", "p2", "p3", "role:r0", "role:r1"];
/// Sets: (name, initial entries); the first four start with >= 16 entries (set classes),
/// `s3` is emptied during the run, `s4` and `s5` are small (expanded; `s5` empty).
const SETS: [(&str, usize); 6] = [
    ("s0", 24),
    ("s1", 40),
    ("s2", 16),
    ("s3", 20),
    ("s4", 3),
    ("s5", 0),
];
const DST_PORTS: [u16; 4] = [80, 443, 53, 8080];

pub fn port_infos() -> Vec<PortInfo> {
    PORTS
        .iter()
        .enumerate()
        .map(|(i, (n, r))| PortInfo::new(i as u16, *n, *r))
        .collect()
}

/// An address of the pool packets use (some in no set).
fn addr(rng: &mut Rng, v6: bool) -> IpAddr {
    let x = rng.below(72) as u32;
    if v6 {
        IpAddr::V6(Ipv6Addr::from((0x2001_0db8u128 << 96) | u128::from(x)))
    } else if rng.chance(85) {
        IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + x))
    } else {
        IpAddr::V4(Ipv4Addr::from(0x0a00_0100 + x))
    }
}

/// A set entry: mostly hosts of the pool, some prefixes.
fn entry(rng: &mut Rng) -> IpNet {
    let v6 = rng.chance(25);
    let a = addr(rng, v6);
    let len = match (v6, rng.below(10)) {
        (false, 0) => 28,
        (false, 1) => 24,
        (false, 2) => 30,
        (true, 0) => 124,
        (true, 1) => 64,
        (false, _) => 32,
        (true, _) => 128,
    };
    IpNet::new(a, len).unwrap()
}

fn set_term(rng: &mut Rng, fam: &str, classes_only: bool) -> String {
    let side = if rng.chance(50) { "src" } else { "dst" };
    let big = rng.below(4);
    let small = 4 + rng.below(2);
    match rng.below(6) {
        0 => format!("{fam}.{side} != $s{big}"),
        1 => format!(
            "{fam}.{side} == {{$s{big}, {}}}",
            addr(rng, fam == "ip6") // a host literal beside the class
        ),
        2 if !classes_only => format!("{fam}.{side} == {{$s{big}, $s{small}}}"),
        3 if !classes_only => format!("{fam}.{side} == $s{small}"),
        4 => format!("{fam}.{side} == {{$s{big}, $s{}}}", rng.below(4)),
        _ => format!("{fam}.{side} == $s{big}"),
    }
}

fn term(rng: &mut Rng, fam: &str, egress: bool) -> String {
    match rng.below(10) {
        0..=4 => set_term(rng, fam, false),
        5 => format!("inport == @g{}", rng.below(4)),
        6 => format!("inport != @g{}", rng.below(4)),
        7 if egress => format!("outport == @g{}", rng.below(4)),
        7 => format!("inport == \"{}\"", rng.pick(&PORTS).0),
        8 => format!(
            "tcp.dst == {{{}, {}}}",
            rng.pick(&DST_PORTS),
            rng.pick(&DST_PORTS)
        ),
        _ => (if rng.chance(50) { "udp" } else { "tcp" }).to_string(),
    }
}

/// A random `[acl]` table.
pub fn rules(rng: &mut Rng, acls: usize) -> AclConfig {
    let mut cfg = AclConfig {
        default: if rng.chance(50) {
            Action::Drop
        } else {
            Action::Allow
        },
        ..Default::default()
    };
    for g in 0..4 {
        let m: Vec<String> = GROUP_MEMBERS
            .iter()
            .filter(|_| rng.chance(35))
            .map(|s| s.to_string())
            .collect();
        cfg.port_groups.insert(format!("g{g}"), m);
    }
    for (name, n) in SETS {
        let mut e: Vec<IpNet> = Vec::new();
        while e.len() < n {
            let x = entry(rng);
            if !e.contains(&x) {
                e.push(x);
            }
        }
        cfg.address_sets.insert(name.to_string(), e);
    }
    for i in 0..acls {
        let egress = rng.chance(50);
        let fam = if rng.chance(75) { "ip4" } else { "ip6" };
        let mut parts = vec![fam.to_string()];
        for _ in 0..1 + rng.below(3) {
            parts.push(term(rng, fam, egress));
        }
        if rng.chance(15) {
            let a = set_term(rng, fam, true);
            let b = term(rng, fam, egress);
            parts.push(format!("({a} || {b})"));
        }
        cfg.rules.push(AclRuleConfig {
            name: Some(format!("r{i}")),
            direction: if egress {
                Direction::Egress
            } else {
                Direction::Ingress
            },
            priority: *rng.pick(&[1u16, 2, 3, 5, 8]),
            match_expr: Some(parts.join(" && ")),
            fields: None,
            action: *rng.pick(&[
                Action::Allow,
                Action::AllowRelated,
                Action::Drop,
                Action::Reject,
            ]),
            log: None,
        });
    }
    cfg
}

/// A random batch of membership changes (set `s3` loses members more often than it gains,
/// so it empties); `expanded` in percent: the chance that a change names a small set.
fn batch(rng: &mut Rng, n: usize, expanded: u64) -> Vec<MemberChange> {
    (0..n)
        .map(|_| match rng.below(10) {
            0 | 1 => {
                let group = format!("g{}", rng.below(4));
                let port = rng.pick(&GROUP_MEMBERS).to_string();
                if rng.chance(50) {
                    MemberChange::GroupAdd { group, port }
                } else {
                    MemberChange::GroupDel { group, port }
                }
            }
            _ => {
                let set = if rng.chance(expanded) {
                    format!("s{}", 4 + rng.below(2))
                } else {
                    format!("s{}", rng.below(4))
                };
                let net = entry(rng);
                let add = if set == "s3" {
                    rng.chance(10)
                } else {
                    rng.chance(50)
                };
                if add {
                    MemberChange::SetAdd { set, net }
                } else {
                    MemberChange::SetDel { set, net }
                }
            }
        })
        .collect()
}

/// The reference model's copy of the rule set, changed like the hub's.
fn apply(model: &mut RuleSet, changes: &[MemberChange]) {
    for c in changes {
        match c {
            MemberChange::SetAdd { set, net } | MemberChange::SetDel { set, net } => {
                let mut e = model.address_set(set).unwrap().entries.clone();
                e.retain(|x| x != net);
                if matches!(c, MemberChange::SetAdd { .. }) {
                    e.push(*net);
                }
                model.replace_address_set(set, e).unwrap();
            }
            MemberChange::GroupAdd { group, port } | MemberChange::GroupDel { group, port } => {
                let mut m = model.port_group(group).unwrap().members.clone();
                m.retain(|x| x != port);
                if matches!(c, MemberChange::GroupAdd { .. }) {
                    m.push(port.clone());
                }
                model.replace_port_group(group, m).unwrap();
            }
        }
    }
}

/// The `parse -> acl -> forward` graph spec for rules file `rules` (node `node`).
pub fn spec(node: &str, rules: &std::path::Path) -> GraphSpec {
    let text = format!(
        r#"
[[nodes]]
name = "parse"
kind = "parse"
[[nodes]]
name = "{node}"
kind = "acl"
params = {{ rules = "{}", outport = "cross-connect", pairs = [["p0", "p1"], ["p2", "p3"]], reject_replies = false, set_class_min_entries = 16 }}
[[nodes]]
name = "fwd"
kind = "forward"
params = {{ mode = "cross-connect", pairs = [["p0", "p1"], ["p2", "p3"]] }}
[[edges]]
from = "parse"
to = "{node}"
[[edges]]
from = "{node}"
to = "fwd"
"#,
        rules.display()
    );
    GraphSpec::from_toml(&text).expect("spec")
}

/// Writes `cfg` as a rules file under the target directory.
pub fn write_rules(tag: &str, cfg: &AclConfig) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let path = dir.join(format!("acl-churn-{tag}-{}.toml", std::process::id()));
    let text = toml::to_string(&AclFile { acl: cfg.clone() }).expect("rules serialize");
    std::fs::write(&path, text).expect("rules written");
    path
}

/// What a run saw.
#[derive(Debug, Default)]
pub struct Churn {
    pub packets: u64,
    pub permitted: u64,
    pub mismatches: u64,
    pub counter_mismatches: u64,
    pub batches: u64,
    pub member_publications: u64,
    pub rebuilds: u64,
    pub copies: u64,
    pub set_classes: usize,
    pub flat_rules: usize,
    pub classifier: String,
    pub first_mismatch: String,
}

struct Pkt {
    inport: usize,
    src: IpAddr,
    dst: IpAddr,
    tcp: bool,
    dport: u16,
}

fn frame(p: &Pkt, tag: u16) -> TestBuf {
    let spec = SourceSpec {
        frame_size: 128,
        protocol: if p.tcp { L4Proto::Tcp } else { L4Proto::Udp },
        src_ip: p.src,
        dst_ip: p.dst,
        src_port: tag,
        dst_port: p.dport,
        ..SourceSpec::default()
    };
    TestBuf::new(build_frame(&spec, 0), p.inport as u16)
}

/// The source port (the packet's tag) of a frame built by [`frame`].
fn tag_of(data: &[u8]) -> u16 {
    let l4 = if data[12..14] == [0x86, 0xdd] {
        14 + 40
    } else {
        14 + 20
    };
    u16::from_be_bytes([data[l4], data[l4 + 1]])
}

/// Runs `packets` packets in bursts of 32 through a graph built by `registry` over the
/// hub named `node` (from `hub_of`), with a batch of 1-4 changes before every
/// `bursts_per_batch`-th burst (`expanded`: percent of changes naming a small set).
#[allow(clippy::too_many_arguments)]
pub fn run<C: Classify>(
    registry: &Registry<TestBuf>,
    hub_of: impl Fn(&str) -> Option<Arc<AclHub<C>>>,
    node: &str,
    seed: u64,
    acls: usize,
    packets: u64,
    bursts_per_batch: u64,
    expanded: u64,
) -> Churn {
    let mut rng = Rng::new(seed);
    let cfg = rules(&mut rng, acls);
    let path = write_rules(node, &cfg);
    let mut model = RuleSet::from_config(&cfg).expect("random rules are valid");
    let ports = port_infos();
    let mut g: Graph<TestBuf> =
        Graph::build(&spec(node, &path), registry, &ports).unwrap_or_else(|e| panic!("{e:?}"));
    let hub = hub_of(node).expect("hub");
    let mut out = Churn {
        set_classes: hub.table().set_classes().len(),
        flat_rules: hub.table().flat_rule_count(),
        classifier: hub.current().classifier.describe(),
        ..Default::default()
    };
    let mut tx = g.new_tx_vectors();
    // Reference packets per ACL since the program the workers run was published.
    let mut expect: BTreeMap<usize, u64> = BTreeMap::new();
    let check_counters = |hub: &AclHub<C>, expect: &BTreeMap<usize, u64>, out: &mut Churn| {
        let got = hub.counters();
        for (i, c) in got.acls.iter().enumerate() {
            if c.packets != expect.get(&i).copied().unwrap_or(0) {
                out.counter_mismatches += 1;
            }
        }
    };
    let mut burst = 0u64;
    while out.packets < packets {
        if burst % bursts_per_batch == bursts_per_batch - 1 {
            let n = 1 + rng.below(4);
            let changes = batch(&mut rng, n, expanded);
            let expanded_set = changes.iter().any(|c| {
                matches!(c, MemberChange::SetAdd { set, .. } | MemberChange::SetDel { set, .. }
                    if set == "s4" || set == "s5")
            });
            if expanded_set {
                // A rebuild restarts the per-ACL counters: compare the old program's first.
                check_counters(&hub, &expect, &mut out);
            }
            let before = hub.generation();
            let r = hub
                .update_members(&changes, Duration::ZERO)
                .expect("valid batch");
            assert_eq!(r.rebuild.is_some(), expanded_set, "{changes:?}");
            if r.rebuild.is_some() {
                out.rebuilds += 1;
                expect.clear();
            } else if r.generation != before {
                out.member_publications += 1;
            }
            out.copies += r.copies as u64;
            out.batches += 1;
            apply(&mut model, &changes);
        }
        if burst.is_multiple_of(512) && burst > 0 {
            check_counters(&hub, &expect, &mut out);
        }
        burst += 1;
        let mut rx: ArrayVec<TestBuf, 32> = ArrayVec::new();
        let mut sent: Vec<Pkt> = Vec::with_capacity(32);
        for j in 0..32u16 {
            let v6 = rng.chance(25);
            let p = Pkt {
                inport: rng.below(4),
                src: addr(&mut rng, v6),
                dst: addr(&mut rng, v6),
                tcp: rng.chance(60),
                dport: *rng.pick(&DST_PORTS),
            };
            rx.push(frame(&p, 1000 + j));
            sent.push(p);
        }
        g.process(&mut rx, &mut tx);
        let mut passed = [false; 32];
        for (_, v) in tx.iter_mut() {
            for p in v.drain(..) {
                passed[usize::from(tag_of(p.data()) - 1000)] = true;
            }
        }
        for (j, p) in sent.iter().enumerate() {
            let (inp, outp) = (PORTS[p.inport], PORTS[PEER[p.inport]]);
            let id = |(n, r): (&'static str, &'static str)| {
                if r.is_empty() {
                    PortId::named(n)
                } else {
                    PortId::with_role(n, r)
                }
            };
            let (sp, dp) = (1000 + j as u16, p.dport);
            let summary = if p.tcp {
                PacketSummary::tcp(id(inp), id(outp), p.src, p.dst, sp, dp)
            } else {
                PacketSummary::udp(id(inp), id(outp), p.src, p.dst, sp, dp)
            };
            let v = evaluate(&model, &summary);
            if let Some(a) = v.acl {
                *expect.entry(a).or_default() += 1;
            }
            out.packets += 1;
            out.permitted += u64::from(passed[j]);
            if v.action.permits() != passed[j] {
                if out.mismatches == 0 {
                    let mut s = String::new();
                    let _ = write!(s, "{summary:?}: reference {v:?}, node passed {}", passed[j]);
                    out.first_mismatch = s;
                }
                out.mismatches += 1;
            }
        }
    }
    check_counters(&hub, &expect, &mut out);
    let _ = std::fs::remove_file(&path);
    out
}
