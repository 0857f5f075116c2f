//! Config reload on SIGHUP, end to end on real DPDK ring ports with the runtime in-process
//! (`parse -> acl -> lb -> forward`, one worker lcore). UDP traffic streams into r0 the whole
//! time while the test rewrites the ACL rules file and the config and raises SIGHUP:
//! - a `block-5001` rule is toggled four times: each new generation judges every packet by
//!   the new rules (per-rule counters of the generation: only the expected rule matched), and
//!   the packets that did not come out are exactly the ones counted as `acl-deny`, in two
//!   contiguous runs (the two block phases);
//! - an invalid rules file and a port change are refused (generation unchanged, the old
//!   rules keep matching);
//! - a backend added to the LB service moves no established flow, new flows reach it; an
//!   invalid backend is refused and changes nothing;
//! - the ACL shares the LB's connections (`lb_conntrack`): a rule that then denies the VIP
//!   ends established connections too (their next packets are judged by it, and dropped);
//! - in = out + counted denials, exactly; the stats JSON counts the reloads.

mod common;

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use dataplane::dpdk::acl::acl_hub;
use dataplane::dpdk::ring::Ring;
use dataplane::dpdk::{Mbuf, Mempool};
use dataplane::reload;
use dataplane::runtime::{run_with_eal, RunOptions};
use pipeline::acl::RuleCountersSnapshot;
use pipeline::lb::LbControl;
use pipeline::source::{build_frame, L4Proto, SourceSpec};

const CONTROL: &str = "reload-e2e";
/// Packets of established connections sent after the rule denying them.
const BLOCKED_TCP: u16 = 50;
const VIP: [u8; 4] = [192, 0, 2, 10];

fn config(rules: &Path, backends: &[u8], rxd: u32) -> String {
    let backends: Vec<String> = backends
        .iter()
        .map(|b| {
            if *b == 0 {
                r#"{ address = "2001:db8::9", port = 8080 }"#.to_string()
            } else {
                format!(r#"{{ address = "10.0.0.{b}", port = 8080 }}"#)
            }
        })
        .collect();
    format!(
        r#"
[eal]
lcores = [0, 1]
no_huge = true
[ports.r0]
role = "clients"
kind = "ring"
rxd = {rxd}
[ports.r1]
role = "servers"
kind = "ring"
[pipeline]
input = "parse"
[[pipeline.nodes]]
name = "parse"
kind = "parse"
[[pipeline.nodes]]
name = "acl"
kind = "acl"
params = {{ rules = "{rules}", lb_conntrack = "lb" }}
[[pipeline.nodes]]
name = "lb"
kind = "lb"
[pipeline.nodes.params]
control = "{CONTROL}"
conntrack = {{ capacity = 4096 }}
[[pipeline.nodes.params.services]]
name = "web"
vip = "192.0.2.10"
protocol = "tcp"
port = 80
backends = [{backends}]
[[pipeline.nodes]]
name = "forward"
kind = "forward"
params = {{ mode = "cross-connect", pairs = [["r0", "r1"]] }}
[[pipeline.nodes]]
name = "reset"
kind = "forward"
params = {{ mode = "by-metadata" }}
[[pipeline.edges]]
from = "parse"
to = "acl"
[[pipeline.edges]]
from = "acl"
to = "lb"
[[pipeline.edges]]
from = "lb"
to = "forward"
[[pipeline.edges]]
from = "lb"
output = "reset"
to = "reset"
"#,
        rules = rules.display(),
        backends = backends.join(", ")
    )
}

fn rules(block: bool) -> String {
    let mut s = String::from(
        r#"[acl]
default = "drop"
[[acl.rules]]
name = "allow-all"
direction = "from-lport"
priority = 1
match = "ip4"
action = "allow"
"#,
    );
    if block {
        s += r#"[[acl.rules]]
name = "block-5001"
direction = "from-lport"
priority = 100
match = "udp.dst == 5001"
action = "drop"
"#;
    }
    s
}

/// A rule denying the clients' TCP to the VIP (appended to [`rules`]).
const BLOCK_VIP: &str = r#"[[acl.rules]]
name = "block-vip"
direction = "from-lport"
priority = 200
match = "ip4.src == 10.9.0.1 && tcp.dst == 80"
action = "drop"
"#;

fn tcp_to_vip(sport: u16) -> Vec<u8> {
    let spec = SourceSpec {
        protocol: L4Proto::Tcp,
        src_ip: IpAddr::V4(Ipv4Addr::new(10, 9, 0, 1)),
        dst_ip: IpAddr::V4(Ipv4Addr::from(VIP)),
        src_port: sport,
        dst_port: 80,
        ..SourceSpec::default()
    };
    build_frame(&spec, 0)
}

/// What the traffic pump shares with the test driver.
#[derive(Default)]
struct Shared {
    counts: PumpCounts,
    /// Sequence numbers of the UDP frames that came out, in order.
    udp: Mutex<Vec<u32>>,
    /// (source port, destination address) of the TCP frames that came out.
    tcp: Mutex<Vec<(u16, [u8; 4])>>,
    /// TCP frames to send next.
    tcp_queue: Mutex<Vec<Vec<u8>>>,
}

/// Streams UDP frames (numbered) into `input`, plus queued TCP frames, and drains `output`
/// until told to stop; then drains until nothing comes for 300 ms.
fn pump(pool: &Mempool, input: &Ring, output: &Ring, sh: &Shared) {
    let mut seq = 0u32;
    let next = || {
        let tcp: Vec<Vec<u8>> = {
            let mut q = sh.tcp_queue.lock().unwrap();
            let n = q.len().min(32);
            q.drain(..n).collect()
        };
        if !tcp.is_empty() {
            return tcp;
        }
        let udp: Vec<Vec<u8>> = (0..16).map(|k| frame(seq + k, 0)).collect();
        seq += 16;
        udp
    };
    let seen = |m: &Mbuf| {
        let d = m.data();
        if d[23] == 17 {
            let s = u32::from_be_bytes([d[42], d[43], d[44], d[45]]);
            sh.udp.lock().unwrap().push(s);
        } else {
            let sport = u16::from_be_bytes([d[34], d[35]]);
            sh.tcp
                .lock()
                .unwrap()
                .push((sport, [d[30], d[31], d[32], d[33]]));
        }
    };
    common::pump(
        pool,
        input,
        output,
        &sh.counts,
        Duration::from_micros(200),
        next,
        seen,
    );
}

fn rule(c: &RuleCountersSnapshot, name: &str) -> Option<u64> {
    c.acls.iter().find(|a| a.name == name).map(|a| a.packets)
}

fn sighup() {
    signal_hook::low_level::raise(signal_hook::consts::SIGHUP).expect("raise SIGHUP");
}

/// Raises SIGHUP and waits until the reload was handled (applied, refused or unchanged).
fn reload_and_wait() -> reload::ReloadCounts {
    let before = reload::totals();
    let n = |c: &reload::ReloadCounts| c.applied + c.refused + c.unchanged;
    sighup();
    wait_for("the reload to be handled", 20, || {
        n(&reload::totals()) > n(&before)
    });
    let after = reload::totals();
    assert_eq!(n(&after), n(&before) + 1);
    after
}

/// Sends `sports` as one TCP packet each to the VIP; returns where each came out.
fn flows(sh: &Shared, sports: impl Iterator<Item = u16>) -> BTreeMap<u16, [u8; 4]> {
    let frames: Vec<Vec<u8>> = sports.map(tcp_to_vip).collect();
    let n = frames.len();
    sh.tcp.lock().unwrap().clear();
    sh.tcp_queue.lock().unwrap().extend(frames);
    wait_for("the TCP flows to come out", 20, || {
        sh.tcp.lock().unwrap().len() >= n
    });
    let got = sh.tcp.lock().unwrap().clone();
    assert_eq!(got.len(), n, "each TCP packet came out once");
    got.into_iter().collect()
}

#[test]
fn sighup_reloads_acl_rules_and_lb_services_under_traffic() {
    let eal = eal("reload");
    let dir = scratch_dir("reload-e2e");
    let rules_file = dir.join("rules.toml");
    let json = dir.join("stats.json");
    std::fs::write(&rules_file, rules(false)).unwrap();
    let (file, plan) = plan_file(&dir, &config(&rules_file, &[1, 2], 1024));
    let w = ring_ports(&eal, 32768);
    let pool = Arc::new(Mempool::create(&eal, "reload_pool", 16383, 0, 2176, 0).unwrap());
    let stop = Arc::new(AtomicBool::new(false));
    let sh = Arc::new(Shared::default());
    let (in0, out1) = (Arc::new(w.in0), Arc::new(w.out1));

    let pumper = {
        let (pool, sh, in0, out1) = (pool.clone(), sh.clone(), in0.clone(), out1.clone());
        std::thread::spawn(move || pump(&pool, &in0, &out1, &sh))
    };
    let driver = {
        let (sh, stop, file, rules_file) =
            (sh.clone(), stop.clone(), file.clone(), rules_file.clone());
        std::thread::spawn(move || {
            stop_after(stop, || {
                let mut hub = None;
                wait_for("the acl node", 20, || {
                    hub = acl_hub("acl");
                    hub.is_some()
                });
                let hub = hub.unwrap();
                let control = LbControl::named(CONTROL).expect("the lb control");
                assert_eq!(hub.generation(), 1);
                wait_for("traffic through generation 1", 20, || {
                    rule(&hub.counters(), "allow-all") >= Some(300)
                });

                // Toggle the block rule four times (via the rules file only).
                for phase in 1..=4u64 {
                    let block = phase % 2 == 1;
                    std::fs::write(&rules_file, rules(block)).unwrap();
                    let t = reload_and_wait();
                    assert!(t.last.as_deref().unwrap().starts_with("applied"), "{t:?}");
                    assert_eq!(hub.generation(), 1 + phase);
                    let target = if block { "block-5001" } else { "allow-all" };
                    wait_for("traffic judged by the new generation", 20, || {
                        rule(&hub.counters(), target) >= Some(300)
                    });
                    let c = hub.counters();
                    if block {
                        // Every UDP packet of this generation matched the block rule.
                        assert_eq!(rule(&c, "allow-all"), Some(0), "{c:?}");
                        assert_eq!(c.denials.rule_drop, rule(&c, "block-5001").unwrap());
                    } else {
                        assert_eq!(rule(&c, "block-5001"), None, "{c:?}");
                        assert_eq!(c.denials.rule_drop, 0);
                    }

                    if phase == 3 {
                        // An invalid rules file is refused; the block rule keeps matching.
                        std::fs::write(&rules_file, rules(true).replace("5001", "70000")).unwrap();
                        let t = reload_and_wait();
                        let last = t.last.unwrap();
                        assert!(last.starts_with("refused"), "{last}");
                        assert!(last.contains("pipeline.nodes.acl.params.rules"), "{last}");
                        assert!(last.contains(&file.display().to_string()), "{last}");
                        assert_eq!(hub.generation(), 4);
                        let before = rule(&hub.counters(), "block-5001").unwrap();
                        wait_for("the old rules to keep working", 20, || {
                            rule(&hub.counters(), "block-5001").unwrap() >= before + 300
                        });
                        assert_eq!(rule(&hub.counters(), "allow-all"), Some(0));

                        // A port change cannot be applied live: refused, naming the key.
                        std::fs::write(&file, config(&rules_file, &[1, 2], 512)).unwrap();
                        let t = reload_and_wait();
                        let last = t.last.unwrap();
                        assert!(
                            last.starts_with("refused") && last.contains("ports.r0.rxd"),
                            "{last}"
                        );
                        assert_eq!(hub.generation(), 4);
                        std::fs::write(&file, config(&rules_file, &[1, 2], 1024)).unwrap();
                    }
                }

                // LB: established flows stay, new ones reach the added backend.
                let a1 = flows(&sh, 20000..20200);
                let b = |x: u8| [10, 0, 0, x];
                assert!(a1.values().all(|d| *d == b(1) || *d == b(2)), "{a1:?}");
                assert!(a1.values().any(|d| *d == b(1)) && a1.values().any(|d| *d == b(2)));
                std::fs::write(&file, config(&rules_file, &[1, 2, 3], 1024)).unwrap();
                let t = reload_and_wait();
                assert!(t.last.as_deref().unwrap().contains("lb node `lb`"), "{t:?}");
                assert_eq!(control.stats().generation, 2);
                assert_eq!(hub.generation(), 5, "the ACL rules did not change");
                let a2 = flows(&sh, 20000..20200);
                assert_eq!(a1, a2, "established flows moved");
                let new = flows(&sh, 30000..30300);
                assert!(new.values().all(|d| [b(1), b(2), b(3)].contains(d)));
                let on3 = new.values().filter(|d| **d == b(3)).count();
                assert!(on3 > 0, "no new flow reached the added backend");

                // An invalid backend (IPv6 for an IPv4 VIP): refused, nothing changes.
                std::fs::write(&file, config(&rules_file, &[1, 2, 3, 0], 1024)).unwrap();
                let t = reload_and_wait();
                let last = t.last.unwrap();
                assert!(
                    last.starts_with("refused")
                        && last.contains("pipeline.nodes.lb.params.services[0].backends[3]"),
                    "{last}"
                );
                assert_eq!(control.stats().generation, 2);
                assert_eq!(flows(&sh, 20000..20200), a1, "established flows moved");
                assert_eq!(flows(&sh, 30000..30300), new, "tracked new flows moved");
                let more = flows(&sh, 40000..40100);
                assert!(more.values().all(|d| [b(1), b(2), b(3)].contains(d)));

                // A rule denying the VIP: the established connections' next packets are
                // judged by it (not passed as tracked) and dropped.
                std::fs::write(&file, config(&rules_file, &[1, 2, 3], 1024)).unwrap();
                std::fs::write(&rules_file, rules(false) + BLOCK_VIP).unwrap();
                let t = reload_and_wait();
                assert!(t.last.as_deref().unwrap().starts_with("applied"), "{t:?}");
                assert_eq!(hub.generation(), 6);
                sh.tcp.lock().unwrap().clear();
                sh.tcp_queue
                    .lock()
                    .unwrap()
                    .extend((20000..20000 + BLOCKED_TCP).map(tcp_to_vip));
                wait_for("the established flows to meet the new rule", 20, || {
                    rule(&hub.counters(), "block-vip") >= Some(BLOCKED_TCP.into())
                });
                std::thread::sleep(Duration::from_millis(200));
                assert_eq!(rule(&hub.counters(), "block-vip"), Some(BLOCKED_TCP.into()));
                assert!(sh.tcp.lock().unwrap().is_empty(), "a denied flow came out");
                // Stop the traffic and let everything drain before the runtime stops.
                sh.counts.stop.store(true, Ordering::SeqCst);
                wait_for("the pump to drain", 20, || {
                    sh.counts.done.load(Ordering::SeqCst)
                });
                on3
            })
        })
    };
    let opts = RunOptions {
        no_hugepage_setup: true,
        stop: Some(stop),
        duration: Some(120.0),
        stats_json: Some(json.clone()),
        ..Default::default()
    };
    let report = run_with_eal(&eal, &plan, &opts).expect("run");
    let driver_result = driver.join();
    sh.counts.stop.store(true, Ordering::SeqCst);
    pumper.join().expect("pump");
    let on3 = driver_result.expect("driver");
    println!("new flows on the added backend: {on3} of 300");

    // Exact accounting: every packet injected was received, and came out or was denied.
    let snap = &report.pipeline[0];
    let acl = snap.node("acl").unwrap();
    let denied = acl.drops_for("acl-deny");
    let all_drops: u64 = snap
        .nodes
        .iter()
        .flat_map(|n| n.drops.iter().map(|d| d.count))
        .sum();
    let injected = sh.counts.injected.load(Ordering::SeqCst);
    let collected = sh.counts.collected.load(Ordering::SeqCst);
    let (r0, r1) = (&report.ports[0], &report.ports[1]);
    println!(
        "injected {injected}, r0 rx {}, r1 tx {}, collected {collected}, acl-deny {denied}",
        r0.rx, r1.tx
    );
    assert!(denied > 0);
    assert_eq!(all_drops, denied, "no drop but the ACL's");
    assert_eq!(r0.rx, injected, "every injected packet was received");
    assert_eq!(r1.tx, collected, "every packet sent came out");
    assert_eq!(r0.rx, r1.tx + denied, "in = out + counted denials");
    assert_eq!(r1.tx_dropped + r0.tx_dropped + r0.rx_no_route, 0);

    // The UDP packets that did not come out are exactly the denied ones, in two runs.
    let udp = sh.udp.lock().unwrap().clone();
    assert!(udp.windows(2).all(|p| p[0] < p[1]), "UDP came out in order");
    let sent_udp = udp.last().copied().unwrap() as u64 + 1;
    assert_eq!(
        sent_udp - udp.len() as u64 + u64::from(BLOCKED_TCP),
        denied,
        "missing = denied"
    );
    let gaps = udp.windows(2).filter(|p| p[1] != p[0] + 1).count() + usize::from(udp[0] != 0);
    assert_eq!(gaps, 2, "denials in two contiguous runs (the block phases)");

    // Reloads counted in the report and the stats JSON.
    assert_eq!(
        (
            report.reloads.applied,
            report.reloads.refused,
            report.reloads.unchanged
        ),
        (6, 3, 0),
        "{:?}",
        report.reloads
    );
    let j: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(j["reloads"]["applied"], 6);
    assert_eq!(j["reloads"]["refused"], 3);

    drop((in0, out1, w.out0, w.in1));
    assert_eq!(pool.in_use(), 0, "every test mbuf went back to its pool");
    let _ = std::fs::remove_dir_all(PathBuf::from(&dir));
}
