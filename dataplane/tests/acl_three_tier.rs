//! The three-tier example (config/three-tier.toml) on real DPDK ring ports, in-process:
//! parse -> acl (rte_acl, stateful) -> forward. web -> BA and BA -> DB sessions are allowed,
//! web -> DB and unrelated inbound traffic are denied, and replies pass by state.

mod common;

use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::tcp_frame as tcp;
use common::*;
use dataplane::config::ConfigFile;
use dataplane::dpdk::acl::acl_hub;
use dataplane::dpdk::ring::Ring;
use dataplane::dpdk::Mempool;
use dataplane::plan;
use dataplane::runtime::{run_with_eal, RunOptions};
use pipeline::acl::Classify;

const N: u32 = 200;

/// (src, dst, src port, dst port) of the TCP segments that came out of `ring`, waiting
/// until `n` arrived or `wait` passed.
fn take(ring: &Ring, n: usize, wait: Duration) -> Vec<([u8; 4], [u8; 4], u16, u16)> {
    take_tcp(ring, n, wait)
        .into_iter()
        .map(|(s, d, sp, dp, _, _)| (s, d, sp, dp))
        .collect()
}

#[test]
fn three_tier_through_rte_acl_on_ring_ports() {
    let eal = eal("acl-3t");
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/three-tier.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let cfg = ConfigFile::parse(&text, &path).expect("parses");
    let plan = plan::build(&cfg, &path, &plan::Host::with_cpus(&[0, 1])).expect("valid plan");
    let rings = ring_ports_for_plan(&eal, &plan);
    let rings = Arc::new(rings);
    let pool = Arc::new(Mempool::create(&eal, "acl3t_pool", 8191, 0, 2176, 0).unwrap());
    let stop = Arc::new(AtomicBool::new(false));
    let (web, ba, db) = ([10, 0, 1, 10], [10, 0, 2, 20], [10, 0, 3, 30]);

    let traffic = {
        let (rings, pool, stop) = (rings.clone(), pool.clone(), stop.clone());
        std::thread::spawn(move || {
            stop_after(stop, || {
                let deadline = Instant::now() + Duration::from_secs(20);
                let hub = loop {
                    if let Some(h) = acl_hub("acl") {
                        break h;
                    }
                    assert!(Instant::now() < deadline, "the acl node was never built");
                    std::thread::sleep(Duration::from_millis(5));
                };
                let i = |n: &str| &rings[n].0;
                let o = |n: &str| &rings[n].1;
                let ports = |base: u16| (0..N as u16).map(move |k| base + k);
                // New sessions and attempts.
                put(
                    &pool,
                    i("web0"),
                    &ports(40000)
                        .map(|s| tcp(web, ba, s, 8080))
                        .collect::<Vec<_>>(),
                );
                put(
                    &pool,
                    i("ba0"),
                    &ports(41000)
                        .map(|s| tcp(ba, db, s, 5432))
                        .collect::<Vec<_>>(),
                );
                put(
                    &pool,
                    i("web0"),
                    &ports(42000)
                        .map(|s| tcp(web, db, s, 5432))
                        .collect::<Vec<_>>(),
                );
                put(
                    &pool,
                    i("db0"),
                    &ports(43000)
                        .map(|s| tcp(db, ba, 5432, s))
                        .collect::<Vec<_>>(),
                );
                let at_ba = take(o("ba0"), N as usize, Duration::from_secs(10));
                let at_db = take(o("db0"), N as usize, Duration::from_secs(10));
                // Replies of the allowed sessions.
                put(
                    &pool,
                    i("ba0"),
                    &ports(40000)
                        .map(|d| tcp(ba, web, 8080, d))
                        .collect::<Vec<_>>(),
                );
                put(
                    &pool,
                    i("db0"),
                    &ports(41000)
                        .map(|d| tcp(db, ba, 5432, d))
                        .collect::<Vec<_>>(),
                );
                let at_web = take(o("web0"), N as usize, Duration::from_secs(10));
                let at_ba2 = take(o("ba0"), N as usize, Duration::from_secs(10));
                std::thread::sleep(Duration::from_millis(100));
                let extra: u32 = rings.values().map(|(_, o)| o.count()).sum();
                // Telnet web -> BA: rejected, each answered by a TCP RST back to web0.
                put(
                    &pool,
                    i("web0"),
                    &ports(44000)
                        .map(|s| tcp(web, ba, s, 23))
                        .collect::<Vec<_>>(),
                );
                let rsts = take_tcp(o("web0"), N as usize, Duration::from_secs(10));
                let counters = hub.counters();
                let classifier = hub.current().classifier.describe();
                (
                    at_ba, at_db, at_web, at_ba2, extra, rsts, counters, classifier,
                )
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
    let (at_ba, at_db, at_web, at_ba2, extra, rsts, counters, classifier) =
        traffic.join().expect("traffic thread");

    // web -> BA allowed (all N, nothing else reached BA), BA -> DB allowed.
    assert_eq!(at_ba.len(), N as usize);
    assert!(
        at_ba
            .iter()
            .all(|&(s, d, _, dp)| s == web && d == ba && dp == 8080),
        "{at_ba:?}"
    );
    assert_eq!(at_db.len(), N as usize);
    assert!(at_db
        .iter()
        .all(|&(s, d, _, dp)| s == ba && d == db && dp == 5432));
    // Replies by state: BA -> web and DB -> BA, no rule allows them.
    assert_eq!(at_web.len(), N as usize);
    assert!(at_web
        .iter()
        .all(|&(s, d, sp, _)| s == ba && d == web && sp == 8080));
    assert_eq!(at_ba2.len(), N as usize);
    assert!(at_ba2
        .iter()
        .all(|&(s, d, sp, _)| s == db && d == ba && sp == 5432));
    // web -> DB and the unrelated DB -> BA attempts never came out.
    assert_eq!(extra, 0);
    // Every telnet attempt came back to web0 as a RST from BA's port 23 to the client's
    // port, with valid checksums (the reject reply, grown or trimmed in the mbuf).
    assert_eq!(rsts.len(), N as usize);
    let mut want: Vec<u16> = (44000..44000 + N as u16).collect();
    let mut got: Vec<u16> = rsts.iter().map(|r| r.3).collect();
    got.sort();
    want.sort();
    assert_eq!(got, want);
    assert!(
        rsts.iter().all(|&(s, d, sp, _, flags, ok)| s == ba
            && d == web
            && sp == 23
            && flags & 0x04 != 0
            && ok),
        "{rsts:?}"
    );

    let by = |name: &str| {
        counters
            .acls
            .iter()
            .find(|a| a.name == name)
            .unwrap()
            .packets
    };
    assert_eq!(by("web-to-ba"), N as u64);
    assert_eq!(by("ba-to-db"), N as u64);
    assert_eq!(
        by("tiers-default-drop"),
        2 * N as u64,
        "web -> DB and unrelated DB -> BA"
    );
    assert_eq!(counters.denials.rule_drop, 2 * N as u64);
    assert_eq!(by("web-telnet-reject"), N as u64);
    assert_eq!(counters.denials.rule_reject, N as u64);
    assert!(classifier.starts_with("rte_acl "), "{classifier}");
    // Three port groups, one protocol (TCP): byte 0 holds its code and the class bitmasks.
    assert!(classifier.contains("packed key layout"), "{classifier}");

    let snap = &report.pipeline[0];
    let acl = snap.node("acl").unwrap();
    assert_eq!(acl.drops_for("acl-deny"), 2 * N as u64);
    let count = |n: &str| acl.counters.iter().find(|c| c.name == n).unwrap().count;
    assert_eq!(count("ct-hits"), 2 * N as u64);
    assert_eq!(count("ct-new"), 2 * N as u64);
    assert_eq!(count("classified"), 5 * N as u64);
    assert_eq!(count("reject-replies"), N as u64);
    let rx: u64 = report.ports.iter().map(|p| p.rx).sum();
    let tx: u64 = report.ports.iter().map(|p| p.tx).sum();
    assert_eq!((rx, tx), (7 * N as u64, 5 * N as u64));
    println!("three-tier on {classifier}: {counters:?}");
    drop(rings);
    assert_eq!(pool.in_use(), 0, "every test mbuf went back to its pool");
}
