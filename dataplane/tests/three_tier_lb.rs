//! The three-tier example with the database behind a virtual IP (config/three-tier-lb.toml)
//! on real DPDK ring ports, in-process: parse -> acl -> lb -> forward. The business tier's
//! connections to the DB VIP are spread over the three database backends (DNAT, checksums
//! valid), the web tier cannot reach the VIP, and the backends' replies come back to the
//! business tier from the VIP.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use dataplane::config::ConfigFile;
use dataplane::dpdk::acl::acl_hub;
use dataplane::dpdk::Mempool;
use dataplane::plan;
use dataplane::runtime::{run_with_eal, RunOptions};

const N: u16 = 300;

#[test]
fn business_tier_reaches_the_database_vip_web_tier_does_not() {
    let eal = eal("three-tier-lb");
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/three-tier-lb.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let cfg = ConfigFile::parse(&text, &path).expect("parses");
    let plan = plan::build(&cfg, &path, &plan::Host::with_cpus(&[0, 1])).expect("valid plan");
    let rings = ring_ports_for_plan(&eal, &plan);
    let rings = Arc::new(rings);
    let pool = Arc::new(Mempool::create(&eal, "tlb_pool", 8191, 0, 2176, 0).unwrap());
    let stop = Arc::new(AtomicBool::new(false));
    let (web, ba, vip) = ([10, 0, 1, 10], [10, 0, 2, 20], [10, 0, 3, 100]);
    let backends = [[10, 0, 3, 31], [10, 0, 3, 32], [10, 0, 3, 33]];

    let traffic = {
        let (rings, pool, stop) = (rings.clone(), pool.clone(), stop.clone());
        std::thread::spawn(move || {
            stop_after(stop, || {
                let deadline = std::time::Instant::now() + Duration::from_secs(20);
                while acl_hub("acl").is_none() {
                    assert!(std::time::Instant::now() < deadline, "acl node never built");
                    std::thread::sleep(Duration::from_millis(5));
                }
                let i = |n: &str| &rings[n].0;
                let o = |n: &str| &rings[n].1;
                // BA -> DB VIP, N connections; web -> DB VIP, N attempts.
                let reqs: Vec<Vec<u8>> = (0..N)
                    .map(|k| tcp_frame(ba, vip, 30000 + k, 5432))
                    .collect();
                put(&pool, i("ba0"), &reqs);
                let at_db = take_tcp(o("db0"), N as usize, Duration::from_secs(10));
                let web_reqs: Vec<Vec<u8>> = (0..N)
                    .map(|k| tcp_frame(web, vip, 31000 + k, 5432))
                    .collect();
                put(&pool, i("web0"), &web_reqs);
                // Replies from whichever backend each connection went to.
                let replies: Vec<Vec<u8>> = at_db
                    .iter()
                    .map(|&(_, d, sp, dp, _, _)| tcp_frame(d, ba, dp, sp))
                    .collect();
                put(&pool, i("db0"), &replies);
                let at_ba = take_tcp(o("ba0"), N as usize, Duration::from_secs(10));
                // The same connections again: they stay on their backends.
                put(&pool, i("ba0"), &reqs);
                let again = take_tcp(o("db0"), N as usize, Duration::from_secs(10));
                std::thread::sleep(Duration::from_millis(100));
                let extra: u32 = rings.values().map(|(_, o)| o.count()).sum();
                (at_db, at_ba, again, extra)
            })
        })
    };
    let opts = RunOptions {
        no_hugepage_setup: true,
        stop: Some(stop),
        duration: Some(60.0),
        ..Default::default()
    };
    let report = run_with_eal(&eal, &plan, &opts).expect("run");
    let (at_db, at_ba, again, extra) = traffic.join().expect("traffic thread");

    // Every BA connection reached a database backend on 5432, DNATed, checksums valid.
    assert_eq!(at_db.len(), N as usize);
    let mut per_backend: BTreeMap<[u8; 4], u32> = BTreeMap::new();
    let mut chosen: BTreeMap<u16, [u8; 4]> = BTreeMap::new();
    for &(s, d, sp, dp, _, ok) in &at_db {
        assert!(ok, "checksums after DNAT");
        assert_eq!((s, dp), (ba, 5432));
        assert!(backends.contains(&d), "{d:?} is not a backend");
        *per_backend.entry(d).or_default() += 1;
        chosen.insert(sp, d);
    }
    assert_eq!(chosen.len(), N as usize, "every connection once");
    assert_eq!(
        per_backend.len(),
        3,
        "all three backends used: {per_backend:?}"
    );
    assert!(
        per_backend.values().all(|&c| c >= N as u32 / 6),
        "{per_backend:?}"
    );
    // Replies: from the VIP again (un-NAT), to the right client port.
    assert_eq!(at_ba.len(), N as usize);
    let ports: BTreeSet<u16> = at_ba.iter().map(|r| r.3).collect();
    assert_eq!(ports, chosen.keys().copied().collect());
    assert!(at_ba
        .iter()
        .all(|&(s, d, sp, _, _, ok)| s == vip && d == ba && sp == 5432 && ok));
    // Pinned: the second pass of each connection went to the same backend.
    assert_eq!(again.len(), N as usize);
    for &(_, d, sp, _, _, _) in &again {
        assert_eq!(chosen[&sp], d, "connection {sp} moved");
    }
    // The web tier's attempts never came out anywhere.
    assert_eq!(extra, 0);

    let snap = &report.pipeline[0];
    let acl = snap.node("acl").unwrap();
    assert_eq!(acl.drops_for("acl-deny"), N as u64, "web -> DB VIP denied");
    let lb = snap.node("lb").unwrap();
    let count = |n: &str| lb.counters.iter().find(|c| c.name == n).unwrap().count;
    assert_eq!(count("new-connections"), N as u64);
    let rx: u64 = report.ports.iter().map(|p| p.rx).sum();
    let tx: u64 = report.ports.iter().map(|p| p.tx).sum();
    assert_eq!((rx, tx), (4 * N as u64, 3 * N as u64));
    drop(rings);
    assert_eq!(pool.in_use(), 0, "every test mbuf went back to its pool");
}
