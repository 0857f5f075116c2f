//! The L4 load balancer through the vhost-user topology (two processes, real PMDs): the
//! dataplane runs `parse -> acl -> lb -> forward` (the benchmark's 1k ACL rules, a UDP VIP
//! over 4 backends); dpgen sends 20,000 client flows to the VIP on port 0 and plays the
//! backends on port 1 (answers every packet). Phase 1 runs every flow; then the config loses
//! one backend and the dataplane reloads it (SIGHUP) while it keeps running; phase 2 sends
//! the same flows again. Checked:
//! - no flow moved: the LB created exactly one connection per flow over both phases (a moved
//!   flow is a new connection), each remaining backend's share of the packets is the same in
//!   both phases, the removed backend gets nothing in phase 2 and its flows' packets are the
//!   LB's `backend-down` drops, exactly;
//! - evenness: each backend's share in phase 1 is within 2 points of 25%;
//! - NAT: every reply comes back from the VIP; every packet dpgen received has a valid IPv4
//!   header checksum (verified from scratch by dpgen; its UDP checksums are 0, "none", which
//!   stays 0 through the NAT);
//! - accounting: DUT in = out + counted drops per direction, no mbuf leaked.

use std::time::{Duration, Instant};

use perf::procs::ensure_hugepages;
use perf::report::{named_count, pipeline_node};
use perf::topology::{
    acl_rules_toml, full_pipeline, vip_specs, DpgenOpts, Lookups, Traffic, VhostTopology, BACKENDS,
    VIP,
};
use serde_json::Value;

const FLOWS: u32 = 20_000;

fn phase(t: &VhostTopology, n: usize) -> Value {
    let json = t.scratch.path(&format!("gen-{n}.json"));
    let opts = DpgenOpts {
        traffic: Traffic {
            flows: FLOWS,
            ..Traffic::default()
        },
        specs: vip_specs(FLOWS, 0),
        watch: std::iter::once(VIP).chain(BACKENDS).collect(),
        ..DpgenOpts::default()
    };
    let mut g = t.start_dpgen_with(0.1, 2.0, &json, &opts, &format!("gen-{n}.log"));
    assert_eq!(
        g.wait(Duration::from_secs(60)),
        Some(0),
        "dpgen failed:\n{}",
        g.output()
    );
    serde_json::from_str(&std::fs::read_to_string(&json).expect("dpgen json")).unwrap()
}

fn num(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a count: {v}"))
}

/// Packets port `p` of dpgen received with watched address `addr` as source or destination.
fn watched(g: &Value, p: usize, addr: &str, dir: &str) -> u64 {
    let w = g["ports"][p]["watch"].as_array().expect("watch");
    num(&w
        .iter()
        .find(|x| x["addr"] == addr)
        .expect("watched address")[dir])
}

#[test]
fn flows_stay_put_when_a_backend_is_removed_through_vhost() {
    ensure_hugepages(1024);
    let t = VhostTopology::new("lb-remove");
    let rules = t.scratch.path("rules.toml");
    std::fs::write(&rules, acl_rules_toml(1000)).unwrap();
    let cfg = t.dataplane_config("", &full_pipeline(&rules, 65_536, Lookups::Shared));
    let stats = t.scratch.path("dut.json");
    let mut dut = t.start_dataplane_ready(&cfg, &stats, 0.0);

    let a = phase(&t, 1);

    // Remove the last backend from the running dataplane's config and reload it.
    let removed = BACKENDS[3].to_string();
    let text = std::fs::read_to_string(&cfg).unwrap();
    let entry = format!(
        ", {{ address = \"{removed}\", port = {} }}",
        perf::topology::VIP_PORT
    );
    assert!(text.contains(&entry), "backend entry in {text}");
    std::fs::write(&cfg, text.replace(&entry, "")).unwrap();
    dut.hangup();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !dut.output().contains("reload: applied") {
        assert!(
            Instant::now() < deadline,
            "no reload applied:\n{}",
            dut.output()
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    let b = phase(&t, 2);
    let d = VhostTopology::stop_dataplane(&mut dut, &stats);

    let sent = |g: &Value| num(&g["ports"][0]["tx"]);
    let share = |g: &Value, be: &str| watched(g, 1, be, "rx_dst") as f64 / sent(g) as f64;
    assert!(
        sent(&a) > 150_000 && sent(&b) > 150_000,
        "too little traffic"
    );
    for g in [&a, &b] {
        // Replies come back from the VIP (un-NATed): everything port 0 received.
        let replies = num(&g["ports"][0]["rx"]);
        assert!(replies > 100_000, "too few replies: {g}");
        assert_eq!(
            watched(g, 0, &VIP.to_string(), "rx_src"),
            replies,
            "every reply back from the VIP"
        );
        for p in 0..2 {
            let c = &g["ports"][p]["checksums"];
            assert!(num(&c["checked"]) > 0, "port {p}: nothing checked");
            assert_eq!(num(&c["bad"]), 0, "port {p}: bad checksums");
        }
    }
    // Phase 1: every backend serves about a quarter of the flows' packets.
    for be in BACKENDS {
        let s = share(&a, &be.to_string());
        assert!(
            (s - 0.25).abs() < 0.02,
            "backend {be}: share {s:.4} in phase 1"
        );
    }
    // Phase 2: the removed backend gets nothing; the others keep exactly their flows.
    assert_eq!(
        watched(&b, 1, &removed, "rx_dst"),
        0,
        "removed backend still served"
    );
    for be in &BACKENDS[..3] {
        let (sa, sb) = (share(&a, &be.to_string()), share(&b, &be.to_string()));
        assert!(
            (sa - sb).abs() < 0.003,
            "backend {be}: share {sa:.4} -> {sb:.4}: flows moved"
        );
    }
    let lb = pipeline_node(&d, "lb");
    assert_eq!(
        named_count(&lb["counters"], "new-connections"),
        u64::from(FLOWS),
        "one connection per flow over both phases: none re-balanced"
    );
    // The removed backend's flows are dropped (`backend-down`): about its phase-1 share of
    // phase 2's packets (every flow sends about as many packets).
    let dropped = named_count(&lb["drops"], "backend-down");
    let expected = share(&a, &removed) * sent(&b) as f64;
    assert!(
        (dropped as f64 - expected).abs() < 0.02 * expected,
        "backend-down drops {dropped}, expected about {expected:.0}"
    );
    eprintln!(
        "phase 1 shares {:?}, phase 2 shares {:?}; new connections {}; backend-down drops {dropped} (expected ~{expected:.0}); sent {} + {}",
        BACKENDS.map(|be| format!("{:.4}", share(&a, &be.to_string()))),
        BACKENDS.map(|be| format!("{:.4}", share(&b, &be.to_string()))),
        named_count(&lb["counters"], "new-connections"),
        sent(&a),
        sent(&b)
    );
    // The ACL consults the LB's connection table first: it classifies the first packet of
    // each connection (a few more where a connection's first packets share a burst), and
    // every other packet, either direction, passes as tracked.
    let acl = pipeline_node(&d, "acl");
    let classified = named_count(&acl["counters"], "classified");
    let tracked = named_count(&acl["counters"], "ct-hits");
    assert!(
        classified >= u64::from(FLOWS) && classified < u64::from(FLOWS) * 11 / 10,
        "acl classified {classified} packets for {FLOWS} connections"
    );
    assert_eq!(
        classified + tracked,
        acl["packets"].as_u64().expect("acl packets"),
        "every packet classified or tracked"
    );
    // Accounting per direction: in = out + drops (the LB's, and what a generator too busy
    // to drain its ring left the port to drop, counted as the port's tx_dropped).
    let port = |i: usize, k: &str| num(&d["ports"][i][k]);
    assert_eq!(port(0, "rx"), sent(&a) + sent(&b));
    assert_eq!(
        port(1, "tx") + port(1, "tx_dropped") + dropped,
        port(0, "rx")
    );
    assert_eq!(port(1, "rx"), port(0, "tx") + port(0, "tx_dropped"));
    for m in d["mempools"].as_array().expect("mempools") {
        assert_eq!(m["in_use_after_stop"], 0, "mbufs leaked: {m}");
    }
}
