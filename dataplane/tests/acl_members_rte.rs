//! Membership churn on rte_acl: the pipeline's churn harness
//! (`pipeline/tests/acl_churn/mod.rs`) with the dataplane's classifier (rte_acl once EAL
//! runs): random rule sets with large address sets matched by membership, port groups and
//! small expanded sets, random batches of membership changes between bursts of packets;
//! every verdict and every per-ACL counter equals the reference evaluator's under the
//! membership current at that burst. One #[test]: EAL starts once per process.

mod common;

#[path = "../../pipeline/tests/acl_churn/mod.rs"]
mod acl_churn;

use dataplane::dpdk::acl::acl_hub;
use pipeline::{Registry, TestBuf};

#[test]
fn membership_churn_on_rte_acl() {
    let _eal = common::eal("acl-members");
    let mut r = Registry::<TestBuf>::with_builtins();
    dataplane::dpdk::acl::register(&mut r);
    let mut total = 0;
    for seed in 11..=14u64 {
        let node = format!("rte_churn{seed}");
        let c = acl_churn::run(&r, acl_hub, &node, seed, 40, 262_144, 4, 5);
        println!("seed {seed}: {c:?}");
        assert!(c.classifier.starts_with("rte_acl"), "{}", c.classifier);
        assert_eq!(c.mismatches, 0, "seed {seed}: {}", c.first_mismatch);
        assert_eq!(c.counter_mismatches, 0, "seed {seed}");
        assert!(c.set_classes >= 4, "{c:?}");
        assert_eq!(c.copies, 0, "{c:?}");
        total += c.packets;
    }
    assert!(total >= 1_000_000);
}
