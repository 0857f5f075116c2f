//! Policy from a real OVN NB enforced on real DPDK ring ports, runtime in-process:
//! `parse -> acl_in -> acl_out -> forward`, `[ovn]` sending the from-lport ACLs to `acl_in`
//! and the to-lport ACLs to `acl_out`; each port names its LSP. UDP from the client port to
//! the server port streams the whole time while `ovn-nbctl` changes the NB: the client
//! removed from the port group whose `$pg_cli_ip4` the allow names flips the probe flow to
//! the drop ACL (its established connection included), the client put back flips it back,
//! the allow's priority lowered under the drop flips it again. Every verdict is read from
//! the per-rule counters of the running classifier, named by the NB ACL's UUID; at the end
//! in = out + counted denials, exactly.

mod common;

#[path = "support/ovsdb.rs"]
mod ovsdb;

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use dataplane::dpdk::acl::acl_hub;
use dataplane::dpdk::ring::Ring;
use dataplane::dpdk::Mempool;
use dataplane::runtime::{run_with_eal, RunOptions};
use ovsdb::NbServer;
use pipeline::acl::RuleCountersSnapshot;

fn config(remote: &str) -> String {
    format!(
        r#"
[eal]
lcores = [0, 1]
no_huge = true
[ports.r0]
role = "clients"
kind = "ring"
lsp = "clients"
[ports.r1]
role = "servers"
kind = "ring"
lsp = "servers"
[ovn]
remotes = "{remote}"
from_lport_node = "acl_in"
to_lport_node = "acl_out"
[pipeline]
input = "parse"
[[pipeline.nodes]]
name = "parse"
kind = "parse"
[[pipeline.nodes]]
name = "acl_in"
kind = "acl"
params = {{ acl = {{ default = "drop" }}, stateful = 4096 }}
[[pipeline.nodes]]
name = "acl_out"
kind = "acl"
params = {{ acl = {{ default = "drop" }}, stateful = 4096, outport = "cross-connect", pairs = [["r0", "r1"]] }}
[[pipeline.nodes]]
name = "forward"
kind = "forward"
params = {{ mode = "cross-connect", pairs = [["r0", "r1"]] }}
[[pipeline.edges]]
from = "parse"
to = "acl_in"
[[pipeline.edges]]
from = "acl_in"
to = "acl_out"
[[pipeline.edges]]
from = "acl_out"
to = "forward"
"#
    )
}

/// Streams the probe flows (UDP 10.1.0.1:1024..3023 -> 10.2.0.1:5001) into `input`, drains
/// `output`, until told to stop; then drains until quiet.
fn pump(pool: &Mempool, input: &Ring, output: &Ring, c: &PumpCounts) {
    let mut seq = 0u32;
    let next = || {
        // 2,000 flows (source ports), so that each generation classifies new ones.
        let burst = (0..16)
            .map(|k| {
                let mut f = frame(seq + k, 0);
                f[34..36].copy_from_slice(&(1024 + ((seq + k) % 2000) as u16).to_be_bytes());
                f
            })
            .collect();
        seq += 16;
        burst
    };
    common::pump(
        pool,
        input,
        output,
        c,
        Duration::from_micros(500),
        next,
        |_| {},
    );
}

fn rule(c: &RuleCountersSnapshot, name: &str) -> u64 {
    c.acls
        .iter()
        .find(|a| a.name == name)
        .map_or(0, |a| a.packets)
}

#[test]
fn nb_changes_flip_a_probe_flow_under_traffic() {
    let nb = NbServer::start("e2e");
    nb.nbctl(&["ls-add", "ls0"]);
    nb.nbctl(&["lsp-add", "ls0", "clients"]);
    nb.nbctl(&["lsp-set-addresses", "clients", "02:00:00:00:00:01 10.1.0.1"]);
    nb.nbctl(&["lsp-add", "ls0", "servers"]);
    nb.nbctl(&["lsp-set-addresses", "servers", "02:00:00:00:01:01 10.2.0.1"]);
    nb.nbctl(&["pg-add", "pg_cli", "clients"]);
    nb.nbctl(&["pg-add", "pg_srv", "servers"]);
    let acl = |pg: &str, name: &str, dir: &str, prio: &str, m: &str, action: &str| {
        nb.nbctl(&[
            "--type=port-group",
            &format!("--name={name}"),
            "acl-add",
            pg,
            dir,
            prio,
            m,
            action,
        ]);
        nb.nbctl(&[
            "--bare",
            "--columns=_uuid",
            "find",
            "ACL",
            &format!("name={name}"),
        ])
    };
    let egress = acl(
        "pg_cli",
        "cli-out",
        "from-lport",
        "1000",
        "inport == @pg_cli && ip4",
        "allow-related",
    );
    let allow = acl(
        "pg_srv",
        "cli-to-srv",
        "to-lport",
        "1000",
        "outport == @pg_srv && ip4 && ip4.src == $pg_cli_ip4 && udp.dst==5001",
        "allow-related",
    );
    let deny = acl(
        "pg_srv",
        "srv-drop",
        "to-lport",
        "900",
        "outport == @pg_srv && ip",
        "drop",
    );

    let eal = eal("ovn-e2e");
    let dir = scratch_dir("ovn-e2e");
    let (_file, plan) = plan_file(&dir, &config(&nb.remote()));
    let w = ring_ports(&eal, 32768);
    let pool = Arc::new(Mempool::create(&eal, "ovn_e2e_pool", 16383, 0, 2176, 0).unwrap());
    let stop = Arc::new(AtomicBool::new(false));
    let sh = Arc::new(PumpCounts::default());
    let (in0, out1) = (Arc::new(w.in0), Arc::new(w.out1));
    let pumper = {
        let (pool, sh, in0, out1) = (pool.clone(), sh.clone(), in0.clone(), out1.clone());
        std::thread::spawn(move || pump(&pool, &in0, &out1, &sh))
    };
    let driver = {
        let (sh, stop) = (sh.clone(), stop.clone());
        let nb_remote = nb.remote();
        let nbctl = move |args: &[&str]| {
            let out = std::process::Command::new("ovn-nbctl")
                .arg(format!("--db={nb_remote}"))
                .args(args)
                .env_remove("OVN_NB_DAEMON")
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        std::thread::spawn(move || {
            stop_after(stop, || {
                let mut hubs = None;
                wait_for("the acl nodes", 20, || {
                    hubs = acl_hub("acl_in").zip(acl_hub("acl_out"));
                    hubs.is_some()
                });
                let (hub_in, hub_out) = hubs.unwrap();
                // The NB's policy arrives and is enforced: the probe flow is allowed by the
                // NB ACLs (from-lport egress, to-lport remote-group rule).
                wait_for("the NB's allow to carry the probe", 20, || {
                    rule(&hub_out.counters(), &allow) >= 200
                });
                assert!(rule(&hub_in.counters(), &egress) > 0);
                let status = dataplane::ovn::follow::current().expect("a follower runs");
                let text = status.render();
                assert!(text.contains("state: monitoring"), "{text}");
                assert!(text.contains("port r0 -> clients"), "{text}");
                assert!(text.contains("taken: 1 switches, 3 ACLs"), "{text}");

                // The client leaves pg_cli: $pg_cli_ip4 is empty, the drop decides.
                let g = hub_out.generation();
                let t0 = Instant::now();
                nbctl(&["clear", "Port_Group", "pg_cli", "ports"]);
                let committed = t0.elapsed();
                wait_for("the new generation", 20, || hub_out.generation() > g);
                let switched = t0.elapsed();
                wait_for("the drop to take the probe", 20, || {
                    rule(&hub_out.counters(), &deny) >= 1
                });
                // A figure, not an assertion: from ovn-nbctl's start to the first probe
                // packet the new policy dropped.
                println!(
                    "member removed: nbctl returned after {:.1} ms, workers switched after {:.1} ms, first probe dropped after {:.1} ms",
                    committed.as_secs_f64() * 1e3,
                    switched.as_secs_f64() * 1e3,
                    t0.elapsed().as_secs_f64() * 1e3
                );
                wait_for("the drop to take the probe", 20, || {
                    rule(&hub_out.counters(), &deny) >= 200
                });
                assert_eq!(rule(&hub_out.counters(), &allow), 0, "not a mix");
                // Back in the group: allowed again.
                let g = hub_out.generation();
                nbctl(&["pg-set-ports", "pg_cli", "clients"]);
                wait_for("the allow to take the probe again", 20, || {
                    hub_out.generation() > g && rule(&hub_out.counters(), &allow) >= 200
                });
                assert_eq!(rule(&hub_out.counters(), &deny), 0, "not a mix");
                // The allow's priority lowered under the drop: dropped.
                let g = hub_out.generation();
                nbctl(&["set", "ACL", &allow, "priority=800"]);
                wait_for("the drop to win", 20, || {
                    hub_out.generation() > g && rule(&hub_out.counters(), &deny) >= 200
                });
                sh.stop.store(true, Ordering::SeqCst);
                wait_for("the pump to drain", 20, || sh.done.load(Ordering::SeqCst));
            })
        })
    };
    let opts = RunOptions {
        no_hugepage_setup: true,
        stop: Some(stop),
        duration: Some(120.0),
        ..Default::default()
    };
    let report = run_with_eal(&eal, &plan, &opts).expect("run");
    let driver_result = driver.join();
    sh.stop.store(true, Ordering::SeqCst);
    pumper.join().expect("pump");
    driver_result.expect("driver");

    let snap = &report.pipeline[0];
    // Before the NB's policy arrives the nodes run their TOML default (drop): counted as
    // default-deny; afterwards as the NB ACLs' acl-deny.
    let denied: u64 = ["acl_in", "acl_out"]
        .iter()
        .map(|n| {
            let n = snap.node(n).unwrap();
            n.drops_for("acl-deny") + n.drops_for("default-deny")
        })
        .sum();
    let all_drops: u64 = snap
        .nodes
        .iter()
        .flat_map(|n| n.drops.iter().map(|d| d.count))
        .sum();
    let injected = sh.injected.load(Ordering::SeqCst);
    let collected = sh.collected.load(Ordering::SeqCst);
    let (r0, r1) = (&report.ports[0], &report.ports[1]);
    println!("injected {injected}, collected {collected}, acl-deny {denied}");
    assert!(denied >= 400);
    let reasons: Vec<(String, String, u64)> = snap
        .nodes
        .iter()
        .flat_map(|n| {
            n.drops
                .iter()
                .map(|d| (n.name.clone(), d.name.clone(), d.count))
        })
        .filter(|d| d.2 > 0)
        .collect();
    assert_eq!(all_drops, denied, "no drop but the ACLs': {reasons:?}");
    assert_eq!(r0.rx, injected, "every injected packet was received");
    assert_eq!(r1.tx, collected, "every packet sent came out");
    assert_eq!(r0.rx, r1.tx + denied, "in = out + counted denials");
    drop((in0, out1, w.out0, w.in1));
    assert_eq!(pool.in_use(), 0, "every test mbuf went back to its pool");
    let _ = std::fs::remove_dir_all(Path::new(&dir));
}
