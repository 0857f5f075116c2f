//! Policy from a real OVN Northbound database enforced by the real `dataplane` binary on real
//! ports under traffic: two processes over vhost-user (dpgen on one side, the dataplane on
//! the other), `[ovn]` feeding `parse -> acl_in -> lb -> acl_after -> acl_out -> forward`
//! (the from-lport ACLs before the load balancer, seeing the VIP; the NB's load balancer; the
//! from-lport ACLs with `apply-after-lb` and the to-lport ACLs after it, seeing the
//! backend), rows written with `ovn-nbctl` into a real `ovsdb-server`
//! (`perf::nb_server`). dpgen sends UDP from one pod (10.1.0.5, new source ports per case)
//! to the VIP 192.0.2.10:5001 and plays the backends (answers every packet it receives).
//!
//! Each case changes the NB while traffic runs and is checked three ways: the per-rule
//! counters of the running classifier, named by the NB ACL's UUID (`show acl`, which also
//! names the NB row behind each rule: owner and `external_ids`), flip from
//! the old winner to the new one and the old one stops counting (no mixed verdict); dpgen's
//! counts (what the backends received, per backend address with `--watch-addr` for the
//! DNAT); and in = out + counted drops for the case's traffic, exactly.
//!
//! `nb_cases_under_traffic` (one dataplane, one standalone NB): a pod's address added to and
//! removed from an NB `Address_Set`; the pod's LSP joining a port group whose derived
//! `$pg_pods_ip4` an ACL names; a drop ACL's priority raised over the allow (then "which
//! security group rule dropped this?": `show acl` and a traced packet name the ACL and its
//! `neutron:security_group_rule_id`); that ACL
//! deleted; a `reject` ACL raised over the allow (each rejected request answered by an ICMP
//! unreachable out of the pod's port, none dropped); the NB server killed (policy kept: the same rule keeps counting, nothing
//! dropped, `show ovn` says disconnected), restarted hidden, changed by another client
//! (a new drop ACL), exposed: caught up (the new ACL takes the traffic); a load-balancer
//! backend added (new connections reach it) and drained (removed from `vips`: established
//! ones go on, no new connection reaches it); an egress ACL applied after the load balancer
//! (`--apply-after-lb`, as ovn-kubernetes writes egress NetworkPolicies) dropping one
//! backend: the connections balanced to it are dropped in `acl_after` and counted by that
//! rule, the others reach theirs, and an after-lb ACL naming the VIP never matches.
//!
//! `cluster_member_killed_under_traffic` (one dataplane, a three-server clustered NB): the
//! server the client reads from is killed under traffic: the verdict holds, the client moves
//! to another member and resumes from its last transaction id (`show ovn`: one more
//! incremental resync, no new full one), then follows a change made through the cluster.
//!
//! The acl nodes run stateless here so that every packet is classified and counted by rule
//! (a stateful node passes a connection's later packets without classifying them); OVN's
//! stateful semantics under NB changes are tested in-process by `dataplane/tests/ovn_e2e.rs`.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use perf::ctl::ctl_json;
use perf::nb_server::{uuid_named, NbCluster, NbServer};
use perf::procs::{ensure_hugepages, wait_for_paths, Proc};
use perf::topology::{DpgenOpts, VhostTopology};
use serde_json::Value;

/// The tests share two cores: one dataplane at a time.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

const VIP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 10);
const POD: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 5);
const B1: Ipv4Addr = Ipv4Addr::new(10, 2, 0, 1);
const B2: Ipv4Addr = Ipv4Addr::new(10, 2, 0, 2);
const B3: Ipv4Addr = Ipv4Addr::new(10, 2, 0, 3);
/// dpgen's request rate per case (Mpps).
const RATE: f64 = 0.02;

fn pipeline(socket: &Path, remotes: &str) -> String {
    format!(
        "\n[control]\nsocket = \"{}\"\n{}",
        socket.display(),
        perf::topology::ovn_pipeline_after_lb(remotes, "stateful = 0", 262144)
    )
}

/// The NB ACLs' UUIDs.
struct Acls {
    /// from-lport 1000: the pod side may send UDP (allow-related).
    f_allow: String,
    /// from-lport 900: drop to the VIP's port (loses to `f_allow` until raised).
    f_drop: String,
    /// to-lport 1000: sources in the NB address set `allowed_pods`.
    t_as: String,
    /// to-lport 1000: sources in `$pg_pods_ip4` (derived from pg_pods' LSPs).
    t_pg: String,
    /// to-lport 900: everything else to the backends' side is dropped.
    t_drop: String,
}

/// Writes the policy with `nbctl`: switch ls0 with our two LSPs (fh on port fh0, mh on
/// mh0) and the pod's LSP, port groups pg_fh, pg_mh and (empty) pg_pods, the empty address
/// set `allowed_pods`, five ACLs and a UDP load balancer 192.0.2.10:5001 over two backends.
fn populate(nbctl: &dyn Fn(&[&str]) -> String) -> Acls {
    nbctl(&["ls-add", "ls0"]);
    for (lsp, addr) in [
        ("fh", "02:00:00:00:00:01 10.1.0.1"),
        ("mh", "02:00:00:00:01:01 10.2.0.254"),
        ("pod5", "02:00:00:00:00:05 10.1.0.5"),
    ] {
        nbctl(&["lsp-add", "ls0", lsp]);
        nbctl(&["lsp-set-addresses", lsp, addr]);
    }
    nbctl(&["pg-add", "pg_fh", "fh"]);
    nbctl(&["pg-add", "pg_mh", "mh"]);
    nbctl(&["pg-add", "pg_pods"]);
    nbctl(&["create", "Address_Set", "name=allowed_pods"]);
    let acl = |pg: &str, name: &str, dir: &str, prio: &str, m: &str, action: &str| {
        nbctl(&[
            "--type=port-group",
            &format!("--name={name}"),
            "acl-add",
            pg,
            dir,
            prio,
            m,
            action,
        ]);
        uuid_named(nbctl, "ACL", name)
    };
    let acls = Acls {
        f_allow: acl(
            "pg_fh",
            "f-allow",
            "from-lport",
            "1000",
            "inport == @pg_fh && ip4 && udp",
            "allow-related",
        ),
        f_drop: acl(
            "pg_fh",
            "f-drop",
            "from-lport",
            "900",
            &format!("inport == @pg_fh && ip4.dst == {VIP} && udp.dst == 5001"),
            "drop",
        ),
        t_as: acl(
            "pg_mh",
            "t-as",
            "to-lport",
            "1000",
            "outport == @pg_mh && ip4.src == $allowed_pods && udp.dst == 5001",
            "allow-related",
        ),
        // ovn-kubernetes' style: no spaces.
        t_pg: acl(
            "pg_mh",
            "t-pg",
            "to-lport",
            "1000",
            "outport==@pg_mh&&ip4.src==$pg_pods_ip4&&udp.dst==5001",
            "allow-related",
        ),
        t_drop: acl(
            "pg_mh",
            "t-drop",
            "to-lport",
            "900",
            "outport == @pg_mh && ip4",
            "drop",
        ),
    };
    nbctl(&[
        "lb-add",
        "svc",
        &format!("{VIP}:5001"),
        &format!("{B1}:5001,{B2}:5001"),
        "udp",
    ]);
    nbctl(&["ls-lb-add", "ls0", "svc"]);
    acls
}

/// The running dataplane, its control socket and the case counter.
struct Live {
    t: VhostTopology,
    socket: PathBuf,
    dut: Proc,
    stats: PathBuf,
    case: usize,
    /// Next source port of the pod's flows (each case sends new connections).
    sport: u32,
    /// Requests sent and delivered to the backends, over all cases.
    sent: u64,
}

impl Live {
    /// Starts the dataplane reading the NB at `remotes`; waits until the NB's policy is in
    /// both acl nodes and the lb node.
    fn start(tag: &str, remotes: &str, acls: &Acls) -> Live {
        ensure_hugepages(1024);
        let t = VhostTopology::new(tag);
        let socket = t.scratch.path("ctl.sock");
        let cfg = t.dataplane_config("", &pipeline(&socket, remotes));
        // Each port names its LSP.
        let text = std::fs::read_to_string(&cfg)
            .unwrap()
            .replacen(
                "role = \"fronthaul\"",
                "role = \"fronthaul\"\nlsp = \"fh\"",
                1,
            )
            .replacen("role = \"midhaul\"", "role = \"midhaul\"\nlsp = \"mh\"", 1);
        std::fs::write(&cfg, text).unwrap();
        let stats = t.scratch.path("dut.json");
        let dut = t.start_dataplane_ready(&cfg, &stats, 0.0);
        assert!(
            wait_for_paths(&[&socket], Duration::from_secs(20)),
            "no control socket:\n{}",
            dut.output()
        );
        let live = Live {
            t,
            socket,
            dut,
            stats,
            case: 0,
            sport: 1024,
            sent: 0,
        };
        wait_for("the NB's policy in the dataplane", 30, || {
            live.rule("acl_in", &acls.f_allow).is_some()
                && live.rule("acl_out", &acls.t_drop).is_some()
                && live.backends().len() == 2
        });
        let ovn = live.ctl("show ovn");
        assert_eq!(ovn["connected"], true, "{ovn}");
        assert_eq!(ovn["acls_taken"], 5, "{ovn}");
        live
    }

    fn ctl(&self, args: &str) -> Value {
        ctl_json(&self.socket, &args.split_whitespace().collect::<Vec<_>>())
    }

    /// Packets rule `uuid` of acl node `node` counted in its current generation (None: no
    /// such rule).
    fn rule(&self, node: &str, uuid: &str) -> Option<u64> {
        let acl = self.ctl(&format!("show acl {node}"));
        acl["nodes"][0]["counters"]["acls"]
            .as_array()
            .expect("acls")
            .iter()
            .find(|r| r["name"] == uuid)
            .map(|r| num(&r["packets"]))
    }

    fn generation(&self, node: &str) -> u64 {
        num(&self.ctl(&format!("show acl {node}"))["nodes"][0]["generation"])
    }

    /// A non-drop counter (`reason`) of node `node` in `show errors`.
    fn counter(&self, node: &str, reason: &str) -> u64 {
        self.ctl("show errors")["errors"]
            .as_array()
            .expect("errors")
            .iter()
            .filter(|e| e["node"] == node && e["reason"] == reason && e["drop"] == false)
            .map(|e| num(&e["count"]))
            .sum()
    }

    /// Packets acl_in judged in its current generation (every request and reply).
    fn seen(&self) -> u64 {
        let c = &self.ctl("show acl acl_in")["nodes"][0]["counters"];
        let rules: u64 = c["acls"]
            .as_array()
            .expect("acls")
            .iter()
            .map(|r| num(&r["packets"]))
            .sum();
        rules + num(&c["default_rule"]["packets"])
    }

    /// Packets the acl nodes denied (their own counters, read with the rule counters).
    fn denied(&self) -> u64 {
        ["acl_in", "acl_after", "acl_out"]
            .iter()
            .map(|n| {
                num(&self.ctl(&format!("show acl {n}"))["nodes"][0]["counters"]["denied_total"])
            })
            .sum()
    }

    /// Every packet the pipeline dropped so far (all nodes, all reasons).
    fn drops(&self) -> u64 {
        self.ctl("show errors")["errors"]
            .as_array()
            .expect("errors")
            .iter()
            .filter(|e| e["drop"] == true)
            .map(|e| num(&e["count"]))
            .sum()
    }

    /// The lb node's active backends (address:port; removed ones with live connections are
    /// still listed, as `removed`).
    fn backends(&self) -> Vec<String> {
        let lb = self.ctl("show lb");
        lb["nodes"][0]["stats"]["services"]
            .as_array()
            .and_then(|s| s.first())
            .and_then(|s| s["backends"].as_array())
            .map(|b| {
                b.iter()
                    .filter(|x| x["status"] == "active")
                    .map(|x| x["name"].as_str().unwrap_or("").to_string())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// One case: dpgen sends `flows` new connections from the pod to the VIP for `secs`
    /// (the backends answer each packet); `during` runs once traffic flows. Afterwards, checks that
    /// every packet sent was received or dropped and counted: dpgen's ports' tx = their rx +
    /// the pipeline's drops during the case. Returns dpgen's report and the drops.
    fn case(&mut self, what: &str, secs: f64, flows: u32, during: impl FnOnce(&Live)) -> Case {
        self.case += 1;
        let n = self.case;
        println!("case {n}: {what}");
        let json = self.t.scratch.path(&format!("gen-{n}.json"));
        let lo = self.sport;
        self.sport += flows;
        assert!(self.sport <= 65_536, "out of source ports");
        let opts = DpgenOpts {
            specs: vec![
                format!("0=src={POD}/32,sport={lo}-65535,dst={VIP}/32,dport=5001,flows={flows}"),
                "1=reflect".into(),
            ],
            watch: vec![VIP, B1, B2, B3],
            ..DpgenOpts::default()
        };
        let drops0 = self.drops();
        let mut g = self
            .t
            .start_dpgen_with(RATE, secs, &json, &opts, &format!("gen-{n}.log"));
        // dpgen takes a while to start: the change comes once traffic flows.
        let seen0 = self.seen();
        wait_for("traffic", 20, || self.seen() > seen0 + 200);
        std::thread::sleep(Duration::from_millis(200));
        during(self);
        assert_eq!(
            g.wait(Duration::from_secs(60)),
            Some(0),
            "dpgen failed:\n{}",
            g.output()
        );
        let gen: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
        let p = |i: usize, k: &str| num(&gen["ports"][i][k]);
        assert!(p(0, "tx") > 500, "{what}: too little traffic: {gen}");
        // The workers publish their drop counters a burst or so late: wait for them to
        // settle (bounded), then compare exactly.
        let lost = p(0, "tx") + p(1, "tx") - p(0, "rx") - p(1, "rx");
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.drops() - drops0 < lost && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        let drops = self.drops() - drops0;
        assert_eq!(
            p(0, "tx") + p(1, "tx"),
            p(0, "rx") + p(1, "rx") + drops,
            "{what}: sent = received + counted drops ({gen})"
        );
        self.sent += p(0, "tx");
        Case { gen, drops }
    }

    /// Runs `change` and waits until acl node `node` judges the traffic by rule `new`:
    /// its generation moved and `new` counts more packets; then, over 300 ms, `new` keeps
    /// counting and `old` counts nothing more (no mix). Returns the time from the change to
    /// the first packet `new` counted (as seen by polling).
    fn flip(&self, node: &str, old: &str, new: &str, change: impl FnOnce()) -> Duration {
        let g0 = self.generation(node);
        let t0 = Instant::now();
        change();
        let committed = t0.elapsed();
        wait_for("a new generation", 20, || self.generation(node) > g0);
        let published = t0.elapsed();
        let base = self.rule(node, new).unwrap_or(0);
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.rule(node, new).unwrap_or(0) <= base {
            assert!(
                Instant::now() < deadline,
                "{node}: rule {new} never counted; show acl:\n{}",
                perf::ctl::run_ctl(&self.socket, false, &["show", "acl", node]).1
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let took = t0.elapsed();
        let s1 = (self.rule(node, old), self.rule(node, new));
        std::thread::sleep(Duration::from_millis(300));
        let s2 = (self.rule(node, old), self.rule(node, new));
        assert_eq!(s2.0, s1.0, "{node}: the old rule {old} still counts");
        assert!(s2.1 > s1.1, "{node}: the new rule {new} stopped counting");
        println!(
            "  {node}: {old} -> {new}: nbctl {:.1} ms, published after {:.1} ms, first packet counted by {:.1} ms",
            committed.as_secs_f64() * 1e3,
            published.as_secs_f64() * 1e3,
            took.as_secs_f64() * 1e3
        );
        took
    }

    /// "Which security group rule dropped this?", asked of the running dataplane while rule
    /// `uuid` of acl node `node` drops the traffic: `show acl` names the NB row behind the
    /// rule (owner, Neutron's rule id), and a traced packet's step in `node` names the rule
    /// that decided, its verdict and the same row.
    fn answers_which_rule(&self, node: &str, uuid: &str, sg_rule: &str) {
        let acl = self.ctl(&format!("show acl {node}"));
        let nb = &acl["nodes"][0]["nb"][uuid];
        assert_eq!(nb["owner"], "Port_Group pg_fh", "{acl}");
        assert_eq!(
            nb["external_ids"]["neutron:security_group_rule_id"], sg_rule,
            "{acl}"
        );
        let (trace, step) = self.traced_step("dport 5001", node);
        assert_eq!(step["rule"], uuid, "{trace}");
        assert_eq!(step["outcome"], "drop: acl-deny", "{trace}");
        assert!(
            step["decided_by"]
                .as_str()
                .is_some_and(|d| d.starts_with(&format!("rule {uuid} (priority 1100, drop)"))),
            "{trace}"
        );
        let origin = step["origin"].as_str().unwrap_or_default();
        assert!(
            origin.contains("Port_Group pg_fh")
                && origin.contains(&format!("neutron:security_group_rule_id={sg_rule}")),
            "{trace}"
        );
    }

    /// Traces the next packet that matches `filter` and returns `show trace`'s answer with
    /// that packet's step in `node`.
    fn traced_step(&self, filter: &str, node: &str) -> (Value, Value) {
        self.ctl("clear trace");
        self.ctl(&format!("trace add 1 {filter}"));
        wait_for("a traced packet", 10, || {
            self.ctl("show trace")["packets"]
                .as_array()
                .is_some_and(|p| !p.is_empty())
        });
        let trace = self.ctl("show trace");
        let step = trace["packets"][0]["steps"]
            .as_array()
            .and_then(|s| s.iter().find(|s| s["node"] == node))
            .cloned()
            .unwrap_or_else(|| panic!("no {node} step: {trace}"));
        (trace, step)
    }

    /// "Which load balancer sent this where?", asked under traffic to the VIP: a traced
    /// request's `lb` step names the service, the backend it went to and the NB
    /// `Load_Balancer` row `uuid` behind the service.
    fn answers_which_load_balancer(&self, uuid: &str) {
        let (trace, step) = self.traced_step(&format!("dst {VIP} dport 5001"), "lb");
        let service = step["service"].as_str().unwrap_or_default();
        assert!(!service.is_empty(), "{trace}");
        let by = step["decided_by"].as_str().unwrap_or_default();
        assert!(
            by.contains(&format!("service {service} (VIP {VIP}:5001)"))
                && [B1, B2]
                    .iter()
                    .any(|b| by.contains(&format!("backend {b}:5001"))),
            "{trace}"
        );
        let origin = step["origin"].as_str().unwrap_or_default();
        assert!(
            origin.starts_with(&format!("NB Load_Balancer {uuid} (\"svc\")")),
            "{trace}"
        );
        let text = perf::ctl::run_ctl(&self.socket, false, &["show", "trace"]).1;
        assert!(text.contains("        from NB Load_Balancer "), "{text}");
    }

    /// Over 300 ms: `rule` of `node` counts more, and nothing is dropped unless `drops`.
    fn keeps(&self, node: &str, rule: &str, drops: bool) {
        let (r1, d1) = (self.rule(node, rule).unwrap_or(0), self.denied());
        std::thread::sleep(Duration::from_millis(300));
        let (r2, d2) = (self.rule(node, rule).unwrap_or(0), self.denied());
        assert!(r2 > r1, "{node}: {rule} stopped counting");
        if drops {
            assert!(d2 > d1, "nothing dropped while {rule} drops");
        } else {
            assert_eq!(d2, d1, "dropped while the policy should hold");
        }
    }

    /// Stops the dataplane; checks its own counters: in = out + counted drops, no mbuf
    /// leaked, every request dpgen sent arrived.
    fn stop(mut self) {
        let d = VhostTopology::stop_dataplane(&mut self.dut, &self.stats);
        let port = |i: usize, k: &str| num(&d["ports"][i][k]);
        let drops: u64 = d["pipeline"]
            .as_array()
            .map(|ws| {
                ws.iter()
                    .flat_map(|w| w["nodes"].as_array().cloned().unwrap_or_default())
                    .flat_map(|n| n["drops"].as_array().cloned().unwrap_or_default())
                    .map(|x| num(&x["count"]))
                    .sum()
            })
            .unwrap_or_else(|| panic!("no pipeline in {d}"));
        assert_eq!(port(0, "rx"), self.sent, "every request arrived");
        assert_eq!(
            port(0, "rx") + port(1, "rx"),
            port(0, "tx") + port(1, "tx") + port(0, "tx_dropped") + port(1, "tx_dropped") + drops,
            "in = out + counted drops"
        );
        for m in d["mempools"].as_array().expect("mempools") {
            assert_eq!(m["in_use_after_stop"], 0, "mbufs leaked: {m}");
        }
    }
}

/// What one case saw.
struct Case {
    gen: Value,
    drops: u64,
}

impl Case {
    /// Requests the backends' side received.
    fn delivered(&self) -> u64 {
        num(&self.gen["ports"][1]["rx"])
    }

    /// Requests (packets at dpgen's backend port) addressed to backend `b`.
    fn to_backend(&self, b: Ipv4Addr) -> u64 {
        watched(&self.gen, 1, b, "rx_dst")
    }
}

fn num(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a count: {v}"))
}

fn watched(g: &Value, p: usize, addr: Ipv4Addr, dir: &str) -> u64 {
    let w = g["ports"][p]["watch"].as_array().expect("watch");
    num(&w
        .iter()
        .find(|x| x["addr"] == addr.to_string())
        .expect("watched address")[dir])
}

fn wait_for(what: &str, secs: u64, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Both verdicts within one case: some requests delivered, some dropped, all accounted.
/// The case both tests start with: the pod's address added to the NB address set
/// `allowed_pods`, so that `t-as` takes over from `t-drop` on acl_out.
fn pod_added(live: &mut Live, acls: &Acls, what: &str, nbctl: &dyn Fn(&[&str]) -> String) {
    let c = live.case(what, 4.0, 2000, |l| {
        l.flip("acl_out", &acls.t_drop, &acls.t_as, || {
            nbctl(&[
                "add",
                "Address_Set",
                "allowed_pods",
                "addresses",
                "10.1.0.5",
            ]);
        });
    });
    both_verdicts(&c, "address added");
}

fn both_verdicts(c: &Case, what: &str) {
    assert!(
        c.delivered() > 0 && c.drops > 0,
        "{what}: delivered {} dropped {}",
        c.delivered(),
        c.drops
    );
}

#[test]
fn nb_cases_under_traffic() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut nb = NbServer::start("vhost-ovn");
    let acls = populate(&|a| nb.nbctl(a));
    let mut live = Live::start("ovn-live", &nb.remote(), &acls);

    // Nothing allows the pod yet: the to-lport drop takes everything.
    let c = live.case("the pod allowed by nothing", 1.5, 2000, |l| {
        l.keeps("acl_out", &acls.t_drop, true)
    });
    assert_eq!(c.delivered(), 0);
    assert_eq!(c.drops, num(&c.gen["ports"][0]["tx"]));

    // 1. The pod's address added to the NB address set: t-as allows it.
    pod_added(&mut live, &acls, "pod added to an Address_Set", &|a| {
        nb.nbctl(a)
    });
    // 2. ... and removed: dropped again.
    let c = live.case("pod removed from the Address_Set", 4.0, 2000, |l| {
        l.flip("acl_out", &acls.t_as, &acls.t_drop, || {
            nb.nbctl(&[
                "remove",
                "Address_Set",
                "allowed_pods",
                "addresses",
                "10.1.0.5",
            ]);
        });
    });
    both_verdicts(&c, "address removed");
    // 3. The pod's LSP joins pg_pods: its address enters the derived $pg_pods_ip4.
    let c = live.case(
        "pod's LSP joins a port group ($pg_pods_ip4)",
        2.5,
        2000,
        |l| {
            l.flip("acl_out", &acls.t_drop, &acls.t_pg, || {
                nb.nbctl(&["pg-set-ports", "pg_pods", "pod5"]);
            });
        },
    );
    both_verdicts(&c, "LSP joined");
    // 4. The from-lport drop raised over the allow: it wins before the load balancer. It
    // carries Neutron's rule id, which the operator's answers then name.
    let sg_rule = "6a1e0c3b-5d7f-4e21-9a8b-0c1d2e3f4a5b";
    nb.nbctl(&[
        "set",
        "ACL",
        &acls.f_drop,
        &format!("external_ids:\"neutron:security_group_rule_id\"=\"{sg_rule}\""),
    ]);
    let c = live.case("a drop ACL's priority raised", 4.0, 2000, |l| {
        l.flip("acl_in", &acls.f_allow, &acls.f_drop, || {
            nb.nbctl(&["set", "ACL", &acls.f_drop, "priority=1100"]);
        });
        l.answers_which_rule("acl_in", &acls.f_drop, sg_rule);
    });
    both_verdicts(&c, "priority raised");
    // 5. That ACL deleted: allowed again.
    let c = live.case("the drop ACL deleted", 4.0, 2000, |l| {
        l.flip("acl_in", &acls.f_drop, &acls.f_allow, || {
            nb.nbctl(&["remove", "Port_Group", "pg_fh", "acls", &acls.f_drop]);
        });
        assert_eq!(
            l.rule("acl_in", &acls.f_drop),
            None,
            "deleted rule still there"
        );
    });
    both_verdicts(&c, "ACL deleted");

    // 6b. A reject ACL raised over the allow: UDP to the VIP is answered with an ICMP
    // unreachable out of the pod's port (the acl node's reject replies, for a rule from OVN).
    nb.nbctl(&[
        "--type=port-group",
        "--name=f-reject",
        "acl-add",
        "pg_fh",
        "from-lport",
        "100",
        "inport == @pg_fh && udp.dst == 5001",
        "reject",
    ]);
    let reject = nb.uuid_named("ACL", "f-reject");
    wait_for("the reject ACL", 20, || {
        live.rule("acl_in", &reject).is_some()
    });
    let replies0 = live.counter("acl_in", "reject-replies");
    let c = live.case("a reject ACL raised over the allow", 4.0, 2000, |l| {
        l.flip("acl_in", &acls.f_allow, &reject, || {
            nb.nbctl(&["set", "ACL", &reject, "priority=1150"]);
        });
    });
    let replies = live.counter("acl_in", "reject-replies") - replies0;
    assert!(replies > 0 && c.delivered() > 0, "{}", c.gen);
    assert_eq!(c.drops, 0, "rejected packets are answered, not dropped");
    assert_eq!(
        num(&c.gen["ports"][0]["rx"]) - num(&c.gen["ports"][1]["tx"]),
        replies,
        "the pod's port received one ICMP unreachable per rejected request"
    );
    nb.nbctl(&["remove", "Port_Group", "pg_fh", "acls", &reject]);
    wait_for("the reject ACL to go", 20, || {
        live.rule("acl_in", &reject).is_none()
    });

    // 6. The NB server killed under traffic: the policy holds. Restarted with the client's
    // socket closed, another client adds a drop ACL; once exposed, the client catches up.
    let mut late = String::new();
    let ovn0 = live.ctl("show ovn");
    let c = live.case("NB killed, changed while away, restarted", 9.0, 2000, |l| {
        nb.kill();
        wait_for("show ovn to say disconnected", 10, || {
            l.ctl("show ovn")["connected"] == false
        });
        let text = perf::ctl::run_ctl(&l.socket, false, &["show", "ovn"]).1;
        assert!(text.contains("disconnected (last policy kept)"), "{text}");
        l.keeps("acl_in", &acls.f_allow, false);
        l.keeps("acl_out", &acls.t_pg, false);
        nb.restart_hidden();
        nb.nbctl(&[
            "--type=port-group",
            "--name=late-drop",
            "acl-add",
            "pg_fh",
            "from-lport",
            "1200",
            "inport == @pg_fh && udp.dst == 5001",
            "drop",
        ]);
        late = nb.uuid_named("ACL", "late-drop");
        // Still the old policy: the server is back but the client cannot see it yet.
        l.keeps("acl_in", &acls.f_allow, false);
        let took = l.flip("acl_in", &acls.f_allow, &late, || nb.expose());
        println!(
            "  caught up {:.1} ms after the server was exposed",
            took.as_secs_f64() * 1e3
        );
    });
    both_verdicts(&c, "caught up after restart");
    let ovn1 = live.ctl("show ovn");
    assert_eq!(ovn1["connected"], true, "{ovn1}");
    let k = |v: &Value, n: &str| num(&v["counters"][n]);
    assert_eq!(k(&ovn1, "disconnections"), k(&ovn0, "disconnections") + 1);
    assert_eq!(k(&ovn1, "connects"), k(&ovn0, "connects") + 1);
    // A standalone server keeps no transaction history: the resync is a full one.
    assert_eq!(k(&ovn1, "resyncs_full"), k(&ovn0, "resyncs_full") + 1);
    nb.nbctl(&["remove", "Port_Group", "pg_fh", "acls", &late]);
    wait_for("the late drop to go", 20, || {
        live.rule("acl_in", &late).is_none()
    });

    // 7. A backend added: new connections reach it (DNAT seen by dpgen), none before.
    let lb = nb.uuid_named("Load_Balancer", "svc");
    let vips = |backends: &[Ipv4Addr]| {
        let list: Vec<String> = backends.iter().map(|b| format!("{b}:5001")).collect();
        format!("vips:\"{VIP}:5001\"=\"{}\"", list.join(","))
    };
    // `show lb` names the NB row behind the service.
    let shown = live.ctl("show lb");
    let nb_lbs = shown["nodes"][0]["nb"].as_object().expect("nb");
    assert!(
        nb_lbs
            .values()
            .any(|o| o["uuid"] == lb.as_str() && o["name"] == "svc"),
        "{shown}"
    );
    let c = live.case("an LB backend added", 3.0, 25_000, |l| {
        l.answers_which_load_balancer(&lb);
        assert!(!l.backends().contains(&format!("{B3}:5001")));
        nb.nbctl(&["set", "Load_Balancer", &lb, &vips(&[B1, B2, B3])]);
        wait_for("the new backend", 20, || {
            l.backends().contains(&format!("{B3}:5001"))
        });
    });
    assert_eq!(c.drops, 0, "nothing dropped while a backend was added");
    assert!(c.to_backend(B3) > 0, "the new backend got no connection");
    assert!(c.to_backend(B1) > 0 && c.to_backend(B2) > 0);
    assert_eq!(
        c.to_backend(B1) + c.to_backend(B2) + c.to_backend(B3),
        c.delivered(),
        "every request was DNATed to a backend"
    );
    assert_eq!(
        watched(&c.gen, 0, VIP, "rx_src"),
        num(&c.gen["ports"][0]["rx"]),
        "every reply comes from the VIP"
    );
    // 8. A backend drained (removed from vips): after that, no new connection reaches it.
    let c = live.case("an LB backend drained", 2.5, 18_000, |l| {
        nb.nbctl(&["set", "Load_Balancer", &lb, &vips(&[B2, B3])]);
        wait_for("the backend to go", 20, || {
            !l.backends().contains(&format!("{B1}:5001"))
        });
    });
    assert!(
        c.to_backend(B1) > 0,
        "B1 served nothing before it was drained"
    );
    // Its established flows go on to it, as OVS's conntrack keeps them (`down_backend` is
    // `keep` for services from the NB): nothing dropped as `backend-down`.
    assert_eq!(c.drops, 0, "a drained backend's established flows were cut");
    let c = live.case("new connections after the drain", 2.5, 2000, |_| {});
    assert_eq!(c.to_backend(B1), 0, "a drained backend got new connections");
    assert_eq!(c.drops, 0);
    assert_eq!(c.to_backend(B2) + c.to_backend(B3), c.delivered());
    assert!(c.to_backend(B2) > 0 && c.to_backend(B3) > 0);

    // 9. An egress ACL applied after the load balancer: it sees the chosen backend (B2),
    // not the VIP; one naming the VIP, after the LB, never matches.
    let after_acl = |name: &str, prio: &str, m: &str| {
        nb.nbctl(&[
            "--type=port-group",
            "--apply-after-lb",
            &format!("--name={name}"),
            "acl-add",
            "pg_fh",
            "from-lport",
            prio,
            m,
            "drop",
        ]);
        nb.uuid_named("ACL", name)
    };
    let drop_b2 = after_acl(
        "a-drop-b2",
        "1000",
        &format!("inport == @pg_fh && ip4.dst == {B2} && udp.dst == 5001"),
    );
    let drop_vip = after_acl(
        "a-drop-vip",
        "1100",
        &format!("inport == @pg_fh && ip4.dst == {VIP}"),
    );
    wait_for("the after-lb ACLs", 20, || {
        live.rule("acl_after", &drop_b2).is_some() && live.rule("acl_after", &drop_vip).is_some()
    });
    let in0 = live.rule("acl_in", &acls.f_allow).unwrap();
    let c = live.case("an egress ACL applied after the LB", 2.5, 2000, |_| {});
    assert_eq!(
        c.to_backend(B2),
        0,
        "a connection balanced to B2 got through"
    );
    assert!(c.to_backend(B3) > 0, "B3 got nothing");
    assert_eq!(c.to_backend(B3), c.delivered());
    assert!(c.drops > 0, "nothing balanced to B2");
    // Rule counters are published per vector, like the drops: bounded wait, then exact.
    wait_for("the after-lb ACL's count", 5, || {
        live.rule("acl_after", &drop_b2) >= Some(c.drops)
    });
    assert_eq!(
        live.rule("acl_after", &drop_b2),
        Some(c.drops),
        "every drop is the after-lb ACL's"
    );
    assert_eq!(
        live.rule("acl_after", &drop_vip),
        Some(0),
        "after the LB, no VIP"
    );
    assert!(
        live.rule("acl_in", &acls.f_allow).unwrap() > in0,
        "the stage before the LB judged the requests (to the VIP)"
    );
    let ovn = live.ctl("show ovn");
    assert_eq!(ovn["acls_taken"], 6, "{ovn}");
    live.stop();
}

#[test]
fn cluster_member_killed_under_traffic() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut nb = NbCluster::start("vhost-ovn-cluster");
    let acls = populate(&|a| nb.nbctl(a));
    let mut live = Live::start("ovn-cluster", &nb.remotes(), &acls);

    pod_added(
        &mut live,
        &acls,
        "pod added to an Address_Set (cluster)",
        &|a| nb.nbctl(a),
    );

    let ovn0 = live.ctl("show ovn");
    let k = |v: &Value, n: &str| num(&v["counters"][n]);
    assert_eq!(k(&ovn0, "resyncs_full"), 1, "{ovn0}");
    let first = ovn0["remote"].as_str().expect("a remote").to_string();
    let c = live.case("the member we read from killed", 6.0, 2000, |l| {
        nb.kill(nb.index_of(&first));
        wait_for("the client on another member", 20, || {
            let o = l.ctl("show ovn");
            o["connected"] == true && o["remote"] != first.as_str()
        });
        // Meanwhile and since: the same verdict, nothing dropped.
        l.keeps("acl_out", &acls.t_as, false);
        let o = l.ctl("show ovn");
        assert_eq!(
            k(&o, "disconnections"),
            k(&ovn0, "disconnections") + 1,
            "{o}"
        );
        assert_eq!(
            k(&o, "resyncs_incremental"),
            k(&ovn0, "resyncs_incremental") + 1,
            "not resumed from the last transaction id: {o}"
        );
        assert_eq!(k(&o, "resyncs_full"), 1, "a full resend: {o}");
        // And it follows the cluster from there.
        l.flip("acl_out", &acls.t_as, &acls.t_drop, || {
            nb.nbctl(&[
                "remove",
                "Address_Set",
                "allowed_pods",
                "addresses",
                "10.1.0.5",
            ]);
        });
    });
    both_verdicts(&c, "followed after the move");
    live.stop();
}
