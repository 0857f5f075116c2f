//! The churn benchmark's NB writer against a real `ovsdb-server` (`perf::nb_server`): the
//! scenario seeded in one transaction, then 200 paced, pipelined churn transactions of every
//! kind; the rows they leave are read back with `ovn-nbctl`.

use std::time::Duration;

use perf::nb_server::NbServer;
use perf::nb_writer::{ChurnMix, ChurnPlan, NbWriter};
use perf::ovn_churn;

fn lines(s: &str) -> usize {
    s.lines().filter(|l| !l.trim().is_empty()).count()
}

#[test]
fn churn_transactions_land_in_the_nb() {
    let nb = NbServer::start("nbwriter");
    let mut w = NbWriter::connect(&nb.remote()).expect("connects");
    w.transact(ovn_churn::seed_params(50), Duration::from_secs(10))
        .expect("seed committed");
    let acls = |extra: &[&str]| {
        let mut a = vec!["--bare", "--columns=_uuid", "find", "ACL"];
        a.extend_from_slice(extra);
        lines(&nb.nbctl(&a))
    };
    assert_eq!(acls(&[]), 9 + 50);
    assert_eq!(
        lines(&nb.nbctl(&["--bare", "--columns=name", "list", "Port_Group"])),
        3
    );
    assert_eq!(
        nb.nbctl(&["get", "Load_Balancer", "bench-lb", "protocol"]),
        "udp"
    );

    // Four kinds in turn, 50 each; windows of 8 set members / ACLs and 2 backends.
    let mut plan = ChurnPlan::new(
        ovn_churn::targets(),
        ChurnMix::parse("as=1,lsp=1,acl=1,lb=1").unwrap(),
        8,
        std::process::id(),
    );
    let rep = w.run(&mut plan, 1000.0, 200, 64, Duration::from_secs(10));
    assert_eq!(rep.sent, 200, "{rep:?}");
    assert_eq!(rep.committed, 200, "{rep:?}");
    assert_eq!((rep.errors, rep.unanswered), (0, 0), "{rep:?}");
    assert_eq!(rep.by_kind.values().sum::<u64>(), 200);
    assert_eq!(rep.by_kind["acl"], 50);

    // Address set: 29 added, 21 removed -> the last 8 (10.248.0.21 .. .28).
    let set = nb.nbctl(&["get", "Address_Set", "churn_as", "addresses"]);
    assert_eq!(set.matches("10.248.0.").count(), 8, "{set}");
    assert!(
        set.contains("\"10.248.255.255\""),
        "the seeded member stays: {set}"
    );
    assert!(
        set.contains("\"10.248.0.21\"") && set.contains("\"10.248.0.28\""),
        "{set}"
    );
    assert!(!set.contains("\"10.248.0.20\""), "{set}");
    // ACLs: the same window, removed from the port group and so garbage-collected.
    assert_eq!(acls(&["external_ids:churn=true"]), 8);
    assert_eq!(acls(&[]), 9 + 50 + 8);
    assert_eq!(
        nb.nbctl(&[
            "--bare",
            "--columns=priority",
            "find",
            "ACL",
            "name=churn-28"
        ]),
        "2028"
    );
    // The pod's address: the 50th change.
    assert_eq!(
        nb.nbctl(&["get", "Logical_Switch_Port", "churn-pod", "addresses"]),
        "[\"0a:58:00:00:00:31 10.249.0.49\"]"
    );
    // The churned VIP: 26 backends added, 24 removed -> the last two; the benchmark's VIP
    // untouched.
    let vips = nb.nbctl(&["get", "Load_Balancer", "churn-lb", "vips"]);
    assert_eq!(
        vips,
        "{\"192.0.2.20:7000\"=\"10.251.0.24:7000,10.251.0.25:7000\"}"
    );
    assert_eq!(
        nb.nbctl(&["get", "Load_Balancer", "bench-lb", "vips"]),
        "{\"192.0.2.10:5001\"=\"10.2.0.1:5001,10.2.0.2:5001,10.2.0.3:5001,10.2.0.4:5001\"}"
    );

    // A refused transaction is counted as an error, not as committed: an ACL insert with
    // the UUID of one that exists (churn-21, still in the window).
    let mut again = ChurnPlan::new(
        ovn_churn::targets(),
        ChurnMix::parse("acl=1").unwrap(),
        30,
        std::process::id(),
    );
    for _ in 0..21 {
        again.next_txn();
    }
    let rep = w.run(&mut again, 1000.0, 1, 4, Duration::from_secs(10));
    assert_eq!((rep.committed, rep.errors), (0, 1), "{rep:?}");
    assert!(rep.first_error.unwrap().contains("duplicate"));
    assert_eq!(acls(&["external_ids:churn=true"]), 8);
}
