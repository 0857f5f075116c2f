//! Balance and disruption of the `lb` node's backend choice.
//!
//! Evenness: 1,000,000 distinct random TCP flows (deterministic xorshift, so the test is
//! reproducible) through the node with 4 equal backends; asserted: every backend's count
//! of new connections is within 1% of every other's, `(max - min) / min <= 1%`. Why this
//! passes reliably: Maglev gives each backend 16384 or 16385 of the 65537 slots (a 0.006%
//! difference), so the counts are binomial with n = 1e6, p = 1/4, sigma = 433 (0.17% of
//! 250,000); 1% of 250,000 is 2,500 = 5.8 sigma for the largest pairwise difference, which
//! a good hash exceeds with probability below 1e-4 — and with a fixed seed the outcome is
//! the same on every run (it is printed).

mod lb_common;

use lb_common::*;
use pipeline::lb::node::C_NEW;
use pipeline::lb::{FlowKey, LbConfig, ServiceTable};
use std::collections::HashMap;
use std::net::IpAddr;

const N_FLOWS: usize = 1_000_000;

fn random_flows(n: usize, seed: u64) -> Vec<Spec> {
    let mut r = Rng(seed);
    let mut seen = std::collections::HashSet::new();
    let mut v = Vec::with_capacity(n);
    while v.len() < n {
        let x = r.next();
        let src = std::net::Ipv4Addr::from((x >> 16) as u32 | 0x0100_0000);
        let sport = (x as u16).max(1024);
        if seen.insert((src, sport)) {
            let mut s = Spec::tcp("0.0.0.0", sport, "192.0.2.10", 80, SYN);
            s.src = IpAddr::V4(src);
            s.payload.clear();
            v.push(s);
        }
    }
    v
}

#[test]
fn million_flows_spread_within_one_percent_over_four_backends() {
    let cfg = FOUR.replace("capacity = 65536", "capacity = 1048576");
    let mut h = Harness::new(&cfg);
    let flows = random_flows(N_FLOWS, 0x5eed);
    let mut counts: HashMap<IpAddr, u64> = HashMap::new();
    for chunk in flows.chunks(65536) {
        for o in h.run(chunk.iter().map(build).collect()) {
            let p = parse(o.next());
            *counts.entry(p.dst).or_default() += 1;
        }
    }
    assert_eq!(
        h.extra(C_NEW),
        N_FLOWS as u64,
        "every flow is a new tracked connection"
    );
    assert_eq!(counts.len(), 4);
    let stats = h.control().stats();
    let web = stats.service("web").unwrap();
    for b in &web.backends {
        assert_eq!(
            b.stats.new_connections,
            counts[&b.name.split(':').next().unwrap().parse::<IpAddr>().unwrap()]
        );
        assert_eq!(b.stats.active_connections, b.stats.new_connections);
    }
    let max = *counts.values().max().unwrap() as f64;
    let min = *counts.values().min().unwrap() as f64;
    eprintln!(
        "lb evenness: 4 backends, {N_FLOWS} flows: {counts:?}, (max-min)/min = {:.3}%",
        100.0 * (max - min) / min
    );
    assert!((max - min) / min <= 0.01, "{counts:?}");
}

fn table(backends: &[&str]) -> ServiceTable {
    let list: Vec<String> = backends
        .iter()
        .map(|b| format!("{{ address = \"{b}\", port = 8080 }}"))
        .collect();
    let cfg = format!(
        "[[services]]\nname = \"web\"\nvip = \"192.0.2.10\"\nprotocol = \"tcp\"\nport = 80\nbackends = [{}]",
        list.join(", ")
    );
    let cfg = LbConfig::from_toml_str(&cfg).unwrap();
    ServiceTable::build(&cfg, &mut Default::default(), 1).unwrap()
}

fn picks(t: &ServiceTable, keys: &[FlowKey]) -> Vec<IpAddr> {
    keys.iter()
        .map(|k| t.backends[t.pick(0, k).unwrap() as usize].address())
        .collect()
}

/// Maglev alone (what new flows get): removing one of N backends moves the flows that were
/// on it and at most a small fraction of the others (Maglev is not perfectly minimal:
/// bound 2%, measured and printed); adding one moves about 1/(N+1) of all flows. With the
/// connection table, tracked flows move not at all (tested in lb_node and the DPDK test).
#[test]
fn disruption_on_remove_and_add() {
    let keys: Vec<FlowKey> = random_flows(200_000, 99)
        .iter()
        .map(|s| FlowKey::from_addrs(s.src, s.dst, s.sport, s.dport, 6).unwrap())
        .collect();
    for n in [4usize, 10, 50] {
        let names: Vec<String> = (1..=n)
            .map(|i| format!("10.0.{}.{}", i / 200, i % 200 + 1))
            .collect();
        let all: Vec<&str> = names.iter().map(|s| s.as_str()).collect();
        let before = picks(&table(&all), &keys);
        let gone: IpAddr = all[n / 2].parse().unwrap();
        let fewer: Vec<&str> = all
            .iter()
            .copied()
            .filter(|b| b.parse::<IpAddr>().unwrap() != gone)
            .collect();
        let after = picks(&table(&fewer), &keys);
        let (mut moved, mut others) = (0usize, 0usize);
        for (b, a) in before.iter().zip(&after) {
            if *b == gone {
                assert_ne!(*a, gone);
            } else {
                others += 1;
                moved += (a != b) as usize;
            }
        }
        let frac = moved as f64 / others as f64;
        let mut more = all.clone();
        more.push("10.9.9.9");
        let added = picks(&table(&more), &keys);
        let moved_add =
            before.iter().zip(&added).filter(|(b, a)| b != a).count() as f64 / keys.len() as f64;
        let to_new = added
            .iter()
            .filter(|a| **a == "10.9.9.9".parse::<IpAddr>().unwrap())
            .count() as f64
            / keys.len() as f64;
        let ideal = 1.0 / (n as f64 + 1.0);
        eprintln!(
            "maglev N={n}: remove one -> {:.3}% of the other flows moved; add one -> {:.3}% moved ({:.3}% to the new one), ideal {:.3}%",
            100.0 * frac, 100.0 * moved_add, 100.0 * to_new, 100.0 * ideal
        );
        assert!(frac <= 0.02, "N={n}: {frac}");
        assert!(
            moved_add >= 0.95 * ideal && moved_add <= ideal + 0.02,
            "N={n}: {moved_add} vs {ideal}"
        );
        assert!(to_new >= 0.95 * ideal, "N={n}: new backend got {to_new}");
    }
}
