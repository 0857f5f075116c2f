//! Membership churn against the reference evaluator, with the linear classifier (the
//! software model of rte_acl; `dataplane/tests/acl_members_rte.rs` runs the same harness on
//! rte_acl), and the flat-rule count of ACLs naming a large set.

mod acl_churn;

use std::time::Duration;

use pipeline::acl::{
    AclConfig, AclHub, AclTable, ExpandLimits, HubRegistry, IpNet, LinearClassifier, MemberChange,
    RuleSet,
};
use pipeline::{PortInfo, Registry, TestBuf};

static HUBS: HubRegistry<LinearClassifier> = HubRegistry::new();

fn registry() -> Registry<TestBuf> {
    let mut r = Registry::with_builtins();
    pipeline::acl::node::register(&mut r, &HUBS, || 1_000_000_000).unwrap();
    r
}

/// At least 1M packets over several random rule sets, a batch of 1-4 changes every 4
/// bursts (5% of the changes name a small, expanded set: those batches rebuild): every
/// verdict and every per-ACL counter equals the reference's; membership batches copy no
/// table.
#[test]
fn membership_churn_matches_reference() {
    let r = registry();
    let mut total = 0;
    for seed in 1..=4u64 {
        let node = format!("churn{seed}");
        let c = acl_churn::run(&r, |n| HUBS.get(n), &node, seed, 40, 262_144, 4, 5);
        println!("seed {seed}: {c:?}");
        assert_eq!(c.mismatches, 0, "seed {seed}: {}", c.first_mismatch);
        assert_eq!(c.counter_mismatches, 0, "seed {seed}");
        assert!(c.set_classes >= 4, "the large sets are set classes: {c:?}");
        assert!(c.member_publications > 1000 && c.rebuilds > 10, "{c:?}");
        assert_eq!(c.copies, 0, "left-right: no table copied");
        assert!(
            c.permitted > c.packets / 100 && c.permitted < c.packets * 99 / 100,
            "{c:?}"
        );
        total += c.packets;
    }
    assert!(total >= 1_000_000);
}

fn hosts(n: u32, base: u32) -> Vec<IpNet> {
    (0..n)
        .map(|i| IpNet::host(std::net::Ipv4Addr::from(base + 2 * i).into()))
        .collect()
}

fn thousand_acls(members: u32, limits: ExpandLimits) -> AclTable {
    let mut cfg = AclConfig::default();
    cfg.port_groups.insert("pg".into(), vec!["p0".into()]);
    cfg.address_sets
        .insert("big".into(), hosts(members, 0x0a00_0000));
    let text: String = (0..1000)
        .map(|i| {
            format!(
                "[[rules]]\ndirection = \"to-lport\"\npriority = {}\nmatch = \"outport == @pg && ip4.src == $big && tcp.dst == {}\"\naction = \"allow\"\n",
                1 + i % 100,
                1000 + i
            )
        })
        .collect();
    let rules: AclConfig = toml::from_str(&text).unwrap();
    cfg.rules = rules.rules;
    AclTable::new(RuleSet::from_config(&cfg).unwrap(), limits).unwrap()
}

/// 1,000 ACLs naming a 10,000-member set: as many flat rules as ACLs (no product), the
/// same as with an empty set; expanded, the product.
#[test]
fn large_set_does_not_multiply_flat_rules() {
    let with = thousand_acls(10_000, ExpandLimits::default());
    let without = thousand_acls(0, ExpandLimits::default());
    assert_eq!(with.set_classes().names(), &["big".to_string()]);
    assert_eq!(with.flat_rule_count(), 1000);
    assert!(without.flat_rule_count() <= with.flat_rule_count());
    let expanded = thousand_acls(
        100,
        ExpandLimits {
            set_class_min_entries: usize::MAX,
            ..Default::default()
        },
    );
    assert_eq!(expanded.flat_rule_count(), 1000 * 100);
}

/// A membership update on a hub: the batch is applied in place, the generation advances by
/// one, no-op changes publish nothing, unknown names refuse the whole batch, and a port
/// group change republishes the port bits only.
#[test]
fn hub_membership_updates() {
    let mut cfg = AclConfig::default();
    cfg.port_groups
        .insert("pg".into(), vec!["p0".into(), "p1".into()]);
    cfg.address_sets
        .insert("big".into(), hosts(100, 0x0a00_0000));
    cfg.address_sets
        .insert("small".into(), hosts(2, 0x0b00_0000));
    let rules: AclConfig = toml::from_str(
        "[[rules]]\ndirection = \"to-lport\"\npriority = 1\nmatch = \"inport == @pg && ip4.src == {$big, $small}\"\naction = \"allow\"\n",
    )
    .unwrap();
    cfg.rules = rules.rules;
    let limits = ExpandLimits {
        set_class_min_entries: 16,
        ..Default::default()
    };
    let table = AclTable::new(RuleSet::from_config(&cfg).unwrap(), limits).unwrap();
    let ports = [
        PortInfo::new(0, "p0", ""),
        PortInfo::new(1, "p1", ""),
        PortInfo::new(2, "p2", ""),
    ];
    let hub: AclHub<LinearClassifier> = AclHub::new(table, &ports).unwrap();
    let (_slot, _prog, members) = hub.join();
    assert_eq!(members.len(), 100);
    assert_eq!(members.port_bits(), &[1, 1, 0]);
    let net: IpNet = "10.9.9.9".parse().unwrap();
    let add = MemberChange::SetAdd {
        set: "big".into(),
        net,
    };
    let g = hub.generation();
    let r = hub
        .update_members(std::slice::from_ref(&add), Duration::ZERO)
        .unwrap();
    assert_eq!((r.generation, r.set_ops, r.copies), (g + 1, 1, 0));
    assert!(r.rebuild.is_none());
    assert_eq!(hub.members().bits_of(&net.addr()), 1);
    assert!(hub
        .rules()
        .address_set("big")
        .unwrap()
        .entries
        .contains(&net));
    // Adding it again changes nothing: nothing published.
    let r = hub.update_members(&[add], Duration::ZERO).unwrap();
    assert_eq!((r.generation, r.set_ops), (g + 1, 0));
    // Unknown names refuse the batch whole.
    let bad = [
        MemberChange::SetDel {
            set: "big".into(),
            net,
        },
        MemberChange::SetAdd {
            set: "nope".into(),
            net,
        },
    ];
    assert!(hub.update_members(&bad, Duration::ZERO).is_err());
    assert_eq!(hub.members().bits_of(&net.addr()), 1);
    // A port joins the group: only the port bits change.
    let r = hub
        .update_members(
            &[MemberChange::GroupAdd {
                group: "pg".into(),
                port: "p2".into(),
            }],
            Duration::ZERO,
        )
        .unwrap();
    assert!(r.port_bits_changed && r.rebuild.is_none());
    assert_eq!(hub.members().port_bits(), &[1, 1, 1]);
    // The small set is expanded: its change rebuilds.
    let r = hub
        .update_members(
            &[MemberChange::SetAdd {
                set: "small".into(),
                net,
            }],
            Duration::ZERO,
        )
        .unwrap();
    assert!(r.rebuild.is_some());
    assert_eq!(
        hub.members().bits_of(&net.addr()),
        1,
        "membership survives the rebuild"
    );
    // A class change, then a rebuild through update_address_set of the expanded set: the
    // rebuild starts from the current class members.
    let other: IpNet = "10.9.9.10".parse().unwrap();
    hub.update_members(
        &[MemberChange::SetAdd {
            set: "big".into(),
            net: other,
        }],
        Duration::ZERO,
    )
    .unwrap();
    let r = hub
        .update_address_set("small", vec![net], Duration::ZERO)
        .unwrap();
    assert!(r.rebuild.is_some());
    assert_eq!(hub.members().bits_of(&other.addr()), 1);
    assert_eq!(hub.members().port_bits(), &[1, 1, 1]);
}
