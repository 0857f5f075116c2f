//! Policy from a real OVN NB enforced on real DPDK ring ports, runtime in-process:
//! `parse -> acl_in -> acl_out -> forward`, `[ovn]` sending the from-lport ACLs to `acl_in`
//! and the to-lport ACLs to `acl_out`; each port names its LSP. UDP from the client port to
//! the server port streams the whole time while `ovn-nbctl` changes the NB: the client
//! removed from the port group whose `$pg_cli_ip4` the allow names flips the probe flow to
//! the drop ACL (its established connection included), the client put back flips it back,
//! the allow's priority lowered under the drop flips it again. Every verdict is read from
//! the per-rule counters of the running classifier, named by the NB ACL's UUID; at the end
//! in = out + counted denials, exactly.
//!
//! Then ACL logging: a metered logged drop (`ovn-nbctl meter-add m1 drop 10 pktps 5`,
//! `acl-add --log --meter=m1`) takes a burst of 200 packets: the drain writes the bucket's
//! 5 lines plus what 10 lines per second allow over the elapsed time, counts the rest as
//! rate-limited; a logged allow writes one line for one packet. The first ACLs, added with
//! `--name` (which makes ovn-nbctl set `log=true`, so OVN logs them), log until their `log`
//! is set to false; then they write nothing while they judge the probe flow.

mod common;

#[path = "support/ovsdb.rs"]
mod ovsdb;

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use dataplane::dpdk::acl::acl_hub;
use dataplane::dpdk::ring::Ring;
use dataplane::dpdk::Mempool;
use dataplane::runtime::{run_with_eal, RunOptions};
use ovsdb::NbServer;
use pipeline::acl::RuleCountersSnapshot;

fn config(remote: &str, syslog: &Path) -> String {
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
[acl_log]
syslog = "{syslog}"
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
"#,
        syslog = syslog.display()
    )
}

/// Packets the pump is asked to send to one destination port instead of the probe flow.
#[derive(Default)]
struct Extra {
    /// How many are left to send (set by the driver, counted down by the pump).
    left: AtomicU32,
    /// Their UDP destination port.
    port: AtomicU32,
}

/// Streams the probe flows (UDP 10.1.0.1:1024..3023 -> 10.2.0.1:5001) into `input`, drains
/// `output`, until told to stop; then drains until quiet. While `extra.left` is not 0, the
/// bursts are instead UDP 10.1.0.1:7000.. -> 10.2.0.1:`extra.port`, exactly `left` packets.
fn pump(pool: &Mempool, input: &Ring, output: &Ring, c: &PumpCounts, extra: &Extra) {
    let mut seq = 0u32;
    let mut next = || {
        let left = extra.left.load(Ordering::SeqCst);
        if left > 0 {
            let port = extra.port.load(Ordering::SeqCst) as u16;
            let k = left.min(16);
            let burst = (0..k)
                .map(|j| {
                    let mut f = frame(j, 0);
                    f[34..36].copy_from_slice(&(7000 + (left - j) as u16).to_be_bytes());
                    f[36..38].copy_from_slice(&port.to_be_bytes());
                    f
                })
                .collect();
            extra.left.fetch_sub(k, Ordering::SeqCst);
            return burst;
        }
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
        &mut next,
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
        nb.uuid_named("ACL", name)
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
    // The syslog the ACL log lines also go to: a datagram socket the test reads.
    let syslog_path = dir.join("syslog.sock");
    let _ = std::fs::remove_file(&syslog_path);
    let syslog = SyslogReader::bind(&syslog_path);
    let (_file, plan) = plan_file(&dir, &config(&nb.remote(), &syslog_path));
    let w = ring_ports(&eal, 32768);
    let pool = Arc::new(Mempool::create(&eal, "ovn_e2e_pool", 16383, 0, 2176, 0).unwrap());
    let stop = Arc::new(AtomicBool::new(false));
    let sh = Arc::new(PumpCounts::default());
    let extra = Arc::new(Extra::default());
    let (in0, out1) = (Arc::new(w.in0), Arc::new(w.out1));
    let pumper = {
        let (pool, sh, in0, out1) = (pool.clone(), sh.clone(), in0.clone(), out1.clone());
        let extra = extra.clone();
        std::thread::spawn(move || pump(&pool, &in0, &out1, &sh, &extra))
    };
    let driver = {
        let (sh, stop, extra) = (sh.clone(), stop.clone(), extra.clone());
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
            String::from_utf8_lossy(&out.stdout).trim().to_string()
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

                // ACL logging.
                acl_logging(&nbctl, &hub_out, &extra, [&egress, &allow, &deny], &syslog);
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

/// The acl_out node's log counters.
fn log_counts() -> pipeline::acl::log::LogCounts {
    dataplane::acl_log::counts()
        .into_iter()
        .find(|(n, _)| n == "acl_out")
        .map(|(_, c)| c)
        .unwrap_or_default()
}

/// The log lines written so far that name ACL `uuid`.
fn lines_of(uuid: &str) -> Vec<String> {
    dataplane::acl_log::recent_lines()
        .into_iter()
        .filter(|l| l.contains(&format!("acl={uuid}:")))
        .collect()
}

/// A syslog daemon's socket: a thread receives every datagram as it comes.
struct SyslogReader {
    got: Arc<std::sync::Mutex<Vec<String>>>,
}

impl SyslogReader {
    fn bind(path: &Path) -> SyslogReader {
        let sock = std::os::unix::net::UnixDatagram::bind(path).unwrap();
        let got = Arc::new(std::sync::Mutex::new(Vec::new()));
        let into = Arc::clone(&got);
        // Detached: it ends with the test process.
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = sock.recv(&mut buf) {
                let d = String::from_utf8_lossy(&buf[..n]).into_owned();
                into.lock().unwrap().push(d);
            }
        });
        SyslogReader { got }
    }

    fn received(&self) -> Vec<String> {
        self.got.lock().unwrap().clone()
    }
}

/// A metered logged drop under a burst, a logged allow, the unlogged ACLs silent.
fn acl_logging(
    nbctl: &dyn Fn(&[&str]) -> String,
    hub_out: &pipeline::acl::AclHub<dataplane::dpdk::acl::DpClassifier>,
    extra: &Extra,
    unlogged: [&str; 3],
    syslog: &SyslogReader,
) {
    // The datagrams the syslog socket received so far that name ACL `uuid`.
    let syslog_of = |uuid: &str| -> Vec<String> {
        syslog
            .received()
            .into_iter()
            .filter(|d| d.contains(&format!("acl={uuid}:")))
            .collect()
    };
    const BURST: u32 = 200;
    const RATE: u64 = 10;
    const DEPTH: u64 = 5;
    // ovn-nbctl set log=true with --name: these ACLs logged so far (default limit).
    assert!(!lines_of(unlogged[0]).is_empty(), "--name implies --log");
    for uuid in unlogged {
        nbctl(&["set", "ACL", uuid, "log=false"]);
    }
    wait_for("log=false on the first ACLs", 20, || {
        hub_out.rules().acls().iter().all(|a| a.log.is_none())
    });
    // Whatever they queued before is drained now.
    std::thread::sleep(Duration::from_millis(100));
    let quiet: Vec<usize> = unlogged.iter().map(|u| lines_of(u).len()).collect();
    nbctl(&[
        "meter-add",
        "m1",
        "drop",
        &RATE.to_string(),
        "pktps",
        &DEPTH.to_string(),
    ]);
    let add =
        |name: &str, severity: &str, meter: Option<&str>, prio: &str, port: u16, action: &str| {
            let mut args = vec![
                "--type=port-group".to_string(),
                "--log".into(),
                format!("--name={name}"),
                format!("--severity={severity}"),
            ];
            if let Some(m) = meter {
                args.push(format!("--meter={m}"));
            }
            args.extend([
                "acl-add".into(),
                "pg_srv".into(),
                "to-lport".into(),
                prio.into(),
                format!("outport == @pg_srv && udp.dst == {port}"),
                action.into(),
            ]);
            nbctl(&args.iter().map(String::as_str).collect::<Vec<_>>());
            ovsdb::uuid_named(nbctl, "ACL", name)
        };
    let metered = add("deny6001", "warning", Some("m1"), "950", 6001, "drop");
    let logged_allow = add("allow6002", "info", None, "960", 6002, "allow-related");
    wait_for("the logged ACLs", 20, || {
        let rules = hub_out.rules();
        let names: Vec<&str> = rules.acls().iter().map(|a| a.name.as_str()).collect();
        names.contains(&metered.as_str()) && names.contains(&logged_allow.as_str())
    });
    let log = hub_out
        .rules()
        .acls()
        .iter()
        .find(|a| a.name == metered)
        .and_then(|a| a.log.clone())
        .expect("the metered ACL logs");
    assert_eq!(
        (
            log.name.as_str(),
            log.severity.as_str(),
            log.meter.as_deref()
        ),
        ("deny6001", "warning", Some("m1"))
    );
    assert_eq!(
        hub_out.rules().meters()["m1"],
        pipeline::acl::log::RateLimit {
            rate: RATE,
            burst: DEPTH
        }
    );
    let before = log_counts();
    // The burst; the elapsed time bounds what the rate may add to the bucket's depth.
    let t0 = Instant::now();
    extra.port.store(6001, Ordering::SeqCst);
    extra.left.store(BURST, Ordering::SeqCst);
    wait_for("the burst to be judged and drained", 20, || {
        let c = log_counts();
        (c.logged + c.rate_limited) - (before.logged + before.rate_limited) >= u64::from(BURST)
    });
    let elapsed = t0.elapsed().as_secs_f64();
    let after = log_counts();
    let lines = lines_of(&metered);
    let n = lines.len() as u64;
    let bound = DEPTH + (RATE as f64 * elapsed).ceil() as u64;
    println!(
        "acl log: {BURST} packets in {:.1} ms: {n} lines (bound {DEPTH}..={bound})",
        elapsed * 1e3
    );
    assert!(
        (DEPTH..=bound).contains(&n),
        "{n} lines, expected {DEPTH}..={bound}"
    );
    assert_eq!(after.logged - before.logged, n, "logged counts the lines");
    assert_eq!(
        after.rate_limited - before.rate_limited,
        u64::from(BURST) - n
    );
    // (Earlier, while every probe packet logged, the rings did overflow: counted.)
    assert_eq!(after.ring_dropped - before.ring_dropped, 0);
    assert_eq!(after.stale - before.stale, 0);
    assert_eq!(rule(&hub_out.counters(), &metered), u64::from(BURST));
    assert!(
        lines[0].starts_with(&format!(
            "name=\"deny6001\", verdict=drop, severity=warning, direction=to-lport, acl={metered}: udp,nw_src=10.1.0.1,nw_dst=10.2.0.1,nw_ttl=64,tp_src="
        )) && lines[0].ends_with(",tp_dst=6001"),
        "{}",
        lines[0]
    );
    // The same lines went to syslog, at the ACL's severity (daemon.warning: <28>).
    let pid = std::process::id();
    let datagrams = syslog_of(&metered);
    assert_eq!(datagrams.len() as u64, n, "one datagram per line written");
    assert_eq!(
        datagrams[0],
        format!("<28>dataplane[{pid}]: acl_log: {}", lines[0])
    );
    // One allowed packet, one line (the default limit).
    extra.port.store(6002, Ordering::SeqCst);
    extra.left.store(1, Ordering::SeqCst);
    wait_for("the allow's line", 20, || {
        lines_of(&logged_allow).len() == 1
    });
    assert_eq!(
        lines_of(&logged_allow),
        [format!(
            "name=\"allow6002\", verdict=allow, severity=info, direction=to-lport, acl={logged_allow}: udp,nw_src=10.1.0.1,nw_dst=10.2.0.1,nw_ttl=64,tp_src=7001,tp_dst=6002"
        )]
    );
    assert_eq!(log_counts().logged - after.logged, 1);
    assert_eq!(
        syslog_of(&logged_allow),
        [format!(
            "<30>dataplane[{pid}]: acl_log: {}",
            lines_of(&logged_allow)[0]
        )],
        "daemon.info"
    );
    // A debug ACL: below ovn-controller's default level (info), counted and not written.
    let below = |node: &str| {
        dataplane::acl_log::write_counts()
            .get(node)
            .map_or(0, |w| w.below_level)
    };
    let below0 = below("acl_out");
    let debug = add("allow6003", "debug", None, "970", 6003, "allow-related");
    wait_for("the debug ACL", 20, || {
        hub_out.rules().acls().iter().any(|a| a.name == debug)
    });
    extra.port.store(6003, Ordering::SeqCst);
    extra.left.store(1, Ordering::SeqCst);
    wait_for("the debug line counted below the level", 20, || {
        below("acl_out") == below0 + 1
    });
    assert!(lines_of(&debug).is_empty() && syslog_of(&debug).is_empty());
    assert_eq!(rule(&hub_out.counters(), &debug), 1, "judged all the same");
    // Every line written reached syslog or was counted as not taken (the early probe
    // lines came in bursts of up to 100, beyond the socket's queue of 10).
    // (`logged` counts the lines the meters let through, the debug one included, which
    // the level then kept from being written.)
    let failed = || -> u64 {
        dataplane::acl_log::write_counts()
            .values()
            .map(|w| w.syslog_failed)
            .sum()
    };
    let written = || -> u64 {
        let logged: u64 = dataplane::acl_log::counts()
            .iter()
            .map(|(_, c)| c.logged)
            .sum();
        let below: u64 = dataplane::acl_log::write_counts()
            .values()
            .map(|w| w.below_level)
            .sum();
        logged - below
    };
    wait_for("syslog's account to close", 20, || {
        syslog.received().len() as u64 + failed() == written()
    });
    println!(
        "acl log: {} lines written, {} received by syslog, {} not taken (counted)",
        written(),
        syslog.received().len(),
        failed()
    );
    // The ACLs with log=false judged the probe flow all along and wrote nothing more.
    let now: Vec<usize> = unlogged.iter().map(|u| lines_of(u).len()).collect();
    assert_eq!(now, quiet, "log=false: no line");
    assert!(
        rule(&hub_out.counters(), unlogged[2]) > 0,
        "the drop judged the probe"
    );
}
