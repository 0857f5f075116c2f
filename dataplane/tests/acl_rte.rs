//! rte_acl against the reference evaluator: random rule sets (overlapping prefixes, port
//! ranges, equal priorities, port groups, address sets, IPv4 and IPv6, ICMP, SCTP) and random
//! packets; every available classify method must give the reference's verdict for every
//! packet, and so must the ACL node's verdict cache in front of rte_acl (each chunk twice:
//! filling the cache, then answered from it). One #[test]: EAL starts once per process.

mod common;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use dataplane::dpdk::acl::{ClassifyAlg, RteAcl};
use pipeline::acl::expand::ExpandLimits;
use pipeline::acl::key::{compile_with, AclKey, ClassLayout, Classify, KEY_LEN};
use pipeline::acl::verdict_cache::{CachePlans, VerdictCache};
use pipeline::acl::{
    evaluate, AclConfig, AclFile, AclTable, IpVersion, PacketSummary, PortId, RuleSet,
};
use pipeline::{PacketMeta, PortInfo};

/// xorshift64*: deterministic, seedable.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[self.below(xs.len())]
    }
}

const NETS4: [&str; 8] = [
    "10.0.0.0/8",
    "10.0.0.0/16",
    "10.0.1.0/24",
    "10.0.1.128/25",
    "10.0.1.7",
    "10.1.0.0/16",
    "10.0.2.0/23",
    "0.0.0.0/0",
];
const NETS6: [&str; 5] = [
    "2001:db8::/32",
    "2001:db8:0:1::/64",
    "2001:db8::1",
    "2001:db8:0:1::/120",
    "::/0",
];
const PORTS: [&str; 4] = ["p0", "p1", "p2", "p3"];

/// An IPv4 source or destination (in)equality with one of [`NETS4`].
fn ip4_atom(r: &mut Rng) -> String {
    format!(
        "ip4.{} {} {}",
        r.pick(&["src", "dst"]),
        r.pick(&["==", "!="]),
        r.pick(&NETS4)
    )
}

/// An IPv6 source or destination in one of [`NETS6`].
fn ip6_atom(r: &mut Rng) -> String {
    format!("ip6.{} == {}", r.pick(&["src", "dst"]), r.pick(&NETS6))
}

/// A TCP or UDP source or destination port range.
fn port_range_atom(r: &mut Rng) -> String {
    let lo = *r.pick(&[0u16, 80, 1000, 1024]);
    format!(
        "{p}.{s} >= {lo} && {p}.{s} <= {}",
        lo + *r.pick(&[0u16, 1, 1000, 20000]),
        p = r.pick(&["tcp", "udp"]),
        s = r.pick(&["src", "dst"])
    )
}

fn atom(r: &mut Rng) -> String {
    let cmp = ["==", "!="];
    match r.below(14) {
        0 => format!("inport {} @g{}", r.pick(&cmp), r.below(3)),
        1 => format!("outport {} @g{}", r.pick(&cmp), r.below(3)),
        2 => format!("inport == \"{}\"", r.pick(&PORTS)),
        3 => format!("outport != \"{}\"", r.pick(&PORTS)),
        4 => r
            .pick(&[
                "ip4", "ip6", "tcp", "udp", "sctp", "icmp4", "icmp6", "ip", "!tcp",
            ])
            .to_string(),
        5 | 6 => ip4_atom(r),
        7 => ip6_atom(r),
        8 => format!("ip4.src == ${}", r.pick(&["s0", "s1"])),
        9 => format!(
            "{}.dst == {{80, 443, 8080}}",
            r.pick(&["tcp", "udp", "sctp"])
        ),
        10 => port_range_atom(r),
        11 => format!(
            "{}.src {} {}",
            r.pick(&["tcp", "udp", "sctp"]),
            r.pick(&["<", ">", "!="]),
            r.pick(&[22u16, 1024, 53])
        ),
        12 => format!("icmp4.type == {}", r.pick(&[0u8, 8, 3])),
        _ => format!("icmp6.type == {}", r.pick(&[128u8, 129])),
    }
}

/// An atom for the packed layout's rule sets: at most 3 port references (`@g0`, `@g1`,
/// port `p2`) and 3 protocols (TCP, UDP, ICMPv4).
fn packable_atom(r: &mut Rng) -> String {
    let cmp = ["==", "!="];
    match r.below(9) {
        0 => format!("inport {} @g{}", r.pick(&cmp), r.below(2)),
        1 => format!("outport {} @g{}", r.pick(&cmp), r.below(2)),
        2 => "inport == \"p2\"".to_string(),
        3 => r
            .pick(&["ip4", "ip6", "tcp", "udp", "icmp4", "ip"])
            .to_string(),
        4 | 5 => ip4_atom(r),
        6 => ip6_atom(r),
        7 => port_range_atom(r),
        _ => format!("icmp4.type == {}", r.pick(&[0u8, 8, 3])),
    }
}

fn ruleset(r: &mut Rng, packable: bool) -> AclConfig {
    let atom = if packable { packable_atom } else { atom };
    let n = 1 + r.below(24);
    let mut text = format!(
        "[acl]\ndefault = \"{}\"\n[acl.port_groups]\ng0 = [\"p0\", \"p1\"]\ng1 = [\"role:edge\", \"p2\"]\ng2 = [\"p3\"]\n[acl.address_sets]\ns0 = [\"10.0.1.0/24\", \"10.0.2.5\", \"2001:db8:0:1::/64\"]\ns1 = [\"10.0.0.0/16\", \"10.1.2.0/24\"]\n",
        r.pick(&["drop", "allow", "reject"])
    );
    for i in 0..n {
        let conj = |r: &mut Rng| {
            (0..1 + r.below(3))
                .map(|_| atom(r))
                .collect::<Vec<_>>()
                .join(" && ")
        };
        let mut m = conj(r);
        if r.below(4) == 0 {
            m = format!("({m}) || ({})", conj(r));
        }
        let dir = if m.contains("outport") {
            "to-lport"
        } else {
            *r.pick(&["from-lport", "to-lport"])
        };
        text.push_str(&format!(
            "[[acl.rules]]\nname = \"r{i}\"\ndirection = \"{dir}\"\npriority = {}\nmatch = '{m}'\naction = \"{}\"\n",
            r.pick(&[0u16, 1, 5, 5, 100, 100, 1000]),
            r.pick(&["allow", "allow-related", "drop", "reject"])
        ));
    }
    toml::from_str::<AclFile>(&text)
        .unwrap_or_else(|e| panic!("{e}\n{text}"))
        .acl
}

fn addr(r: &mut Rng, v6: bool) -> IpAddr {
    if v6 {
        let x = r.next() as u16;
        let tail = *r.pick(&[0u16, 1, 0xff, 0x100, x]);
        let base = *r.pick(&[
            [0x2001u16, 0xdb8, 0, 0],
            [0x2001, 0xdb8, 0, 1],
            [0x2001, 0xdb8, 1, 0],
            [0xfe80, 0, 0, 0],
        ]);
        IpAddr::V6(Ipv6Addr::new(
            base[0], base[1], base[2], base[3], 0, 0, 0, tail,
        ))
    } else {
        let x = r.next() as u8;
        let last = *r.pick(&[0u8, 1, 5, 7, 127, 128, 255, x]);
        let net = *r.pick(&[
            [10u8, 0, 1],
            [10, 0, 2],
            [10, 0, 0],
            [10, 1, 2],
            [10, 0, 3],
            [192, 168, 0],
        ]);
        IpAddr::V4(Ipv4Addr::new(net[0], net[1], net[2], last))
    }
}

#[test]
fn rte_acl_agrees_with_the_reference() {
    let _eal = common::eal("acl-rte");
    let ports: Vec<PortInfo> = PORTS
        .iter()
        .enumerate()
        .map(|(i, p)| PortInfo::new(i as u16, *p, if i == 0 { "edge" } else { "x" }))
        .collect();
    let port_id = |i: usize| {
        if i < PORTS.len() {
            PortId::with_role(PORTS[i], &ports[i].role)
        } else {
            PortId::named("")
        }
    };
    let mut r = Rng(0x9e37_79b9_7f4a_7c15);
    const RULESETS: usize = 100;
    const PACKETS: usize = 10_240;
    let mut algs_used = std::collections::BTreeSet::new();
    let mut layouts_used = std::collections::BTreeSet::new();
    let mut elided = 0usize;
    let mut checked = 0usize;
    let mut matched = 0usize;
    let mut ties = 0usize;
    let (mut cache_hits, mut cache_checked) = (0usize, 0usize);
    for set in 0..RULESETS {
        // All four key layouts: packed (classes and a protocol code in byte 0), compact
        // (classes beside word B), narrow (classes in one group) and wide.
        let layout = [
            ClassLayout::Compact,
            ClassLayout::Narrow,
            ClassLayout::Wide,
            ClassLayout::Packed,
        ][set % 4];
        let cfg = ruleset(&mut r, layout == ClassLayout::Packed);
        let rs = RuleSet::from_config(&cfg).unwrap();
        let table = AclTable::new(rs, ExpandLimits::default()).unwrap();
        let acl = compile_with(&table, &ports, Some(layout))
            .unwrap_or_else(|e| panic!("{layout:?}: {e}\n{cfg:?}"));
        assert_eq!(acl.layout, layout);
        layouts_used.insert(format!("{layout:?}"));
        for v in [IpVersion::V4, IpVersion::V6] {
            elided += usize::from(acl.fields(v).len() < layout.fields(v).len());
        }
        let mut prios: Vec<u16> = table.rules().acls().iter().map(|a| a.priority).collect();
        prios.sort();
        ties += prios.windows(2).filter(|w| w[0] == w[1]).count();
        // The best method, plus scalar, SSE and AVX2 for every third rule set.
        let mut classifiers = vec![(RteAcl::build_with(&acl, None).unwrap(), "best")];
        if set % 3 == 0 {
            for a in [ClassifyAlg::Scalar, ClassifyAlg::Sse, ClassifyAlg::Avx2] {
                classifiers.push((RteAcl::build_with(&acl, Some(a)).unwrap(), a.name()));
            }
            // "best" is AVX512x32 where the CPU has AVX-512 (the EAL allows 512 bits here);
            // its 256-bit sibling too, where the CPU has it.
            if let Ok(c) = RteAcl::build_with(&acl, Some(ClassifyAlg::Avx512x16)) {
                classifiers.push((c, ClassifyAlg::Avx512x16.name()));
            }
        }
        for (c, _) in &classifiers {
            if let Some(a) = c.alg() {
                algs_used.insert(a.name());
            }
        }
        let mut cache = VerdictCache::new(4096, CachePlans::of(&acl));
        for chunk in 0..PACKETS / 256 {
            // Key bytes the node leaves alone (addresses past an IPv4 address, class groups
            // of the compact layout) hold junk, as they may in a reused key buffer: no
            // layout may read them.
            let mut keys = [[AclKey([0xa5; KEY_LEN]); 256]; 2];
            let mut want: [Vec<u32>; 2] = [Vec::new(), Vec::new()];
            let mut summaries: [Vec<String>; 2] = [Vec::new(), Vec::new()];
            for _ in 0..256 {
                let v6 = r.below(4) == 0;
                let (src, dst) = (addr(&mut r, v6), addr(&mut r, v6));
                let proto = *r.pick(&[6u8, 6, 17, 17, 132, 1, 58, 0, 47]);
                let x = r.next();
                let sport = *r.pick(&[
                    0u16, 22, 53, 80, 443, 1023, 1024, 1025, 2000, 2001, 21000, 65535, x as u16,
                ]);
                let dport = *r.pick(&[
                    0u16,
                    22,
                    53,
                    80,
                    443,
                    1000,
                    1999,
                    2000,
                    8080,
                    65535,
                    (x >> 16) as u16,
                ]);
                let itype = *r.pick(&[0u8, 3, 8, 128, 129, (x >> 32) as u8]);
                let icode = r.below(3) as u8;
                let (inp, outp) = (r.below(4), r.below(5));
                let pkt = PacketSummary {
                    inport: port_id(inp),
                    outport: port_id(outp),
                    src,
                    dst,
                    proto,
                    src_port: sport,
                    dst_port: dport,
                    icmp_type: itype,
                    icmp_code: icode,
                };
                let fam = usize::from(v6);
                let v = evaluate(table.rules(), &pkt);
                want[fam].push(v.acl.map_or(0, |i| i as u32 + 1));
                summaries[fam].push(format!("{pkt:?}"));
                let bytes = |a: IpAddr| match a {
                    IpAddr::V4(a) => PacketMeta::v4_bytes(a.octets()),
                    IpAddr::V6(a) => a.octets(),
                };
                let m = PacketMeta {
                    ip_version: if v6 { 6 } else { 4 },
                    src_addr: bytes(src),
                    dst_addr: bytes(dst),
                    protocol: proto,
                    src_port: sport,
                    dst_port: dport,
                    icmp_type: itype,
                    icmp_code: icode,
                    ..PacketMeta::default()
                };
                let out_bits = if outp < PORTS.len() {
                    acl.bits(outp as u16)
                } else {
                    0
                };
                keys[fam][want[fam].len() - 1].set_from_meta(
                    &m,
                    acl.layout.words(acl.bits(inp as u16), out_bits),
                    &acl.protos,
                );
            }
            for (fam, v) in [(0, IpVersion::V4), (1, IpVersion::V6)] {
                let n = want[fam].len();
                for (c, name) in &classifiers {
                    let mut got = vec![u32::MAX; n];
                    c.classify(v, &keys[fam][..n], &mut got);
                    for i in 0..n {
                        assert_eq!(
                            got[i],
                            want[fam][i],
                            "rule set {set} ({name}), chunk {chunk}: packet {}\nrules: {:#?}",
                            summaries[fam][i],
                            table
                                .rules()
                                .acls()
                                .iter()
                                .map(|a| (&a.name, a.priority, &a.match_text, a.action))
                                .collect::<Vec<_>>()
                        );
                    }
                }
                for pass in ["filling", "cached"] {
                    let mut got = vec![u32::MAX; n];
                    let o = cache.classify(&classifiers[0].0, v, &keys[fam][..n], &mut got);
                    if cache.caches(v) {
                        cache_hits += o.hits as usize;
                        cache_checked += n;
                    }
                    for i in 0..n {
                        assert_eq!(
                            got[i], want[fam][i],
                            "rule set {set} (verdict cache, {pass}), chunk {chunk}: packet {}",
                            summaries[fam][i]
                        );
                    }
                }
                matched += want[fam].iter().filter(|&&w| w != 0).count();
                checked += n;
            }
        }
    }
    println!("{checked} packets over {RULESETS} rule sets: zero mismatches ({matched} matched an ACL, {ties} equal-priority pairs); methods {algs_used:?}");
    assert!(checked >= 1_000_000);
    assert!(
        matched > checked / 10 && matched < checked * 9 / 10,
        "the rule sets discriminate: {matched}/{checked}"
    );
    assert!(algs_used.contains("scalar") && algs_used.contains("sse"));
    assert_eq!(layouts_used.len(), 4, "layouts {layouts_used:?}");
    // The compact layout never constrains its second word B: that group is elided
    // whenever no rule of the family tests word A (source port / ICMP type).
    assert!(elided > 0, "no rule set had an elided group");
    println!("layouts {layouts_used:?}; {elided} family layouts with elided groups");
    // Each rule set's cache starts with a window of 4096 lookups with the cache in use
    // (then it keeps whichever mode it measures cheaper), half of them second passes of a
    // chunk: answered from the cache but for a few bucket collisions.
    println!("verdict cache: {cache_hits} hits of {cache_checked} cacheable lookups");
    assert!(
        cache_hits >= RULESETS * 1500,
        "{cache_hits} of {cache_checked}"
    );
}
