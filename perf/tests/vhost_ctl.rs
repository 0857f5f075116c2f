//! The live control interface (`dataplane ctl`) against a running dataplane on real ports
//! under traffic: two processes over vhost-user, the benchmark's full pipeline
//! (`parse -> acl -> lb -> forward`, 1k ACL rules, a UDP VIP over four backends), dpgen
//! sending client flows to the VIP (10% of them to a port the ACL drops) and playing the
//! backends. Every command's answer is checked against the traffic sent and the dataplane's
//! own final counters:
//! - phase 1 (2,000 flows): while it runs, `trace add 10 dport 9` traces exactly ten denied
//!   packets, each dropped by the `acl` node; 100 clients at once, a client that never
//!   speaks, an oversize request and bad commands are answered or refused without
//!   disturbing anything; afterwards `show errors` and `show acl` count exactly the denied
//!   packets dpgen sent, `show conntrack` samples exactly one LB connection per allowed flow
//!   (each on the backend `show lb` counts it for, the connections' packets adding up to the
//!   backend's requests and replies, each as old as it is idle or older, and older and idler
//!   two seconds later with the same packets; filters and `--limit` select and cut), and
//!   `clear runtime` zeroes `show runtime`;
//! - then a backend is drained (`lb backend ... draining`) and a /24 of clients is added to
//!   the ACL's block list (`acl set-add`); phase 2 sends the same 2,000 flows and 2,000 new
//!   ones: the drained backend keeps its connections (its packets grow) and gets no new one,
//!   the block-list rule starts counting, `show runtime` counts exactly phase 2's packets;
//! - DPDK's own `dpdk-telemetry.py` reads `/dataplane/runtime` and `/dataplane/lb` with the
//!   same counts;
//! - a non-root user cannot connect; at the end, packets in = out + counted drops.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use perf::ctl::{ctl_json, run_ctl};
use perf::procs::{ensure_hugepages, wait_for_paths, workspace_bin};
use perf::report::{named_count, pipeline_node};
use perf::topology::{
    acl_rules_toml, full_pipeline, vip_specs, DpgenOpts, Lookups, Traffic, VhostTopology, BACKENDS,
    VIP, VIP_PORT,
};
use serde_json::Value;

const FLOWS: u32 = 2_000;
const DENY_PERCENT: u8 = 10;

/// `dataplane ctl --socket S [--json] ARGS` (words split at spaces): (exit code, stdout,
/// stderr).
fn ctl_raw(socket: &Path, json: bool, args: &str) -> (i32, String, String) {
    run_ctl(socket, json, &args.split_whitespace().collect::<Vec<_>>())
}

/// `ctl --json ARGS`, which must succeed.
fn ctl(socket: &Path, args: &str) -> Value {
    ctl_json(socket, &args.split_whitespace().collect::<Vec<_>>())
}

fn num(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a count: {v}"))
}

/// Sends one raw request line and reads the answer line.
fn raw_request(socket: &Path, line: &[u8]) -> Value {
    let mut s = UnixStream::connect(socket).expect("connects");
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(line).unwrap();
    let mut answer = String::new();
    BufReader::new(&s).read_line(&mut answer).unwrap();
    serde_json::from_str(&answer).unwrap_or_else(|e| panic!("{e}: {answer:?}"))
}

fn phase(t: &VhostTopology, n: usize, flows: u32, secs: f64) -> (perf::procs::Proc, PathBuf) {
    let json = t.scratch.path(&format!("gen-{n}.json"));
    let opts = DpgenOpts {
        traffic: Traffic {
            flows,
            ..Traffic::default()
        },
        specs: vip_specs(flows, DENY_PERCENT),
        ..DpgenOpts::default()
    };
    let g = t.start_dpgen_with(0.05, secs, &json, &opts, &format!("gen-{n}.log"));
    (g, json)
}

fn finish(mut g: perf::procs::Proc, json: &Path) -> Value {
    assert_eq!(
        g.wait(Duration::from_secs(60)),
        Some(0),
        "dpgen failed:\n{}",
        g.output()
    );
    serde_json::from_str(&std::fs::read_to_string(json).expect("dpgen json")).unwrap()
}

/// The backend named `name` in `show lb --json`.
fn backend<'a>(lb: &'a Value, name: &str) -> &'a Value {
    lb["nodes"][0]["stats"]["services"][0]["backends"]
        .as_array()
        .expect("backends")
        .iter()
        .find(|b| b["name"] == name)
        .unwrap_or_else(|| panic!("no backend {name} in {lb}"))
}

/// The per-rule counters of ACL `rule` in `show acl --json`.
fn acl_rule<'a>(acl: &'a Value, rule: &str) -> &'a Value {
    acl["nodes"][0]["counters"]["acls"]
        .as_array()
        .expect("acls")
        .iter()
        .find(|r| r["name"] == rule)
        .unwrap_or_else(|| panic!("no rule {rule}"))
}

/// Packets every pipeline node of `show runtime --json` counted, summed over workers.
fn runtime_packets(rt: &Value) -> Vec<(String, u64)> {
    let mut out: Vec<(String, u64)> = Vec::new();
    for w in rt["workers"].as_array().expect("workers") {
        for n in w["nodes"].as_array().expect("nodes") {
            let name = n["name"].as_str().unwrap().to_string();
            match out.iter_mut().find(|(k, _)| *k == name) {
                Some((_, c)) => *c += num(&n["packets"]),
                None => out.push((name, num(&n["packets"]))),
            }
        }
    }
    out
}

/// Asks the DUT's DPDK telemetry socket for `cmd` with Debian's `dpdk-telemetry.py`.
fn telemetry(prefix: &str, cmd: &str) -> Value {
    let mut child = Command::new("dpdk-telemetry.py")
        .args(["-f", prefix])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("dpdk-telemetry.py (Debian's dpdk package) runs");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{cmd}\n").as_bytes())
        .unwrap();
    let out = child.wait_with_output().expect("dpdk-telemetry.py answers");
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.starts_with(&format!("{{\"{cmd}\"")))
        .unwrap_or_else(|| panic!("no answer to {cmd}: {text}"));
    serde_json::from_str(line).expect("telemetry JSON")
}

#[test]
fn every_command_answers_from_the_running_dataplane_under_traffic() {
    ensure_hugepages(1024);
    let t = VhostTopology::new("ctl");
    let rules = t.scratch.path("rules.toml");
    std::fs::write(&rules, acl_rules_toml(1000)).unwrap();
    let socket = t.scratch.path("ctl.sock");
    let extra = format!(
        "[control]\nsocket = \"{}\"\n{}",
        socket.display(),
        // `blocked` (200 entries) as a set class: `acl set-add` below is a membership
        // update under traffic, not a rebuild.
        full_pipeline(&rules, 65_536, Lookups::Shared).replacen(
            "stateful = 0,",
            "stateful = 0, set_class_min_entries = 64,",
            1
        )
    );
    let cfg = t.dataplane_config("", &extra);
    let stats = t.scratch.path("dut.json");
    let mut dut = t.start_dataplane_ready(&cfg, &stats, 0.0);
    assert!(
        wait_for_paths(&[&socket], Duration::from_secs(20)),
        "no control socket:\n{}",
        dut.output()
    );
    // The dataplane ran itself again keeping freed memory (mimalloc never purges), and kept
    // its pid, so a supervisor's handle stays valid.
    let environ = std::fs::read(format!("/proc/{}/environ", dut.child.id())).expect("environ");
    assert!(
        environ
            .split(|&b| b == 0)
            .any(|v| v == b"MIMALLOC_PURGE_DELAY=-1"),
        "the running dataplane has MIMALLOC_PURGE_DELAY=-1"
    );

    // Refusals: exit 2 and one line naming the problem.
    let (rc, out, err) = ctl_raw(&socket, false, "show nonsense");
    assert_eq!((rc, out.as_str()), (2, ""), "{err}");
    assert_eq!(
        err.trim(),
        "error: unknown command `show nonsense` (try `help`)"
    );
    let (rc, _, err) = ctl_raw(&socket, false, "trace add 0");
    assert_eq!(rc, 2);
    assert!(err.contains("N must be 1 to"), "{err}");
    let (rc, _, err) = ctl_raw(&socket, false, "lb backend bench-vip 10.9.9.9:1 draining");
    assert_eq!(rc, 2);
    assert!(err.contains("no backend `10.9.9.9:1`"), "{err}");
    let (rc, out, _) = ctl_raw(&socket, false, "help");
    assert_eq!(rc, 0);
    for c in [
        "show runtime",
        "show errors",
        "trace add",
        "show lb",
        "acl set-add",
        "reload",
    ] {
        assert!(out.contains(c), "help lacks {c}: {out}");
    }

    // Phase 1, with the control socket busy meanwhile.
    let (g1, g1_json) = phase(&t, 1, FLOWS, 4.0);
    std::thread::sleep(Duration::from_millis(500));
    let armed = ctl(&socket, "trace add 10 dport 9");
    assert_eq!(armed["armed"], 10);
    // A client that connects and never speaks, and an oversize request.
    let mut silent = UnixStream::connect(&socket).expect("connects");
    let mut big = vec![b'x'; 70 * 1024];
    big.push(b'\n');
    let r = raw_request(&socket, &big);
    assert_eq!(r["ok"], false);
    assert!(
        r["error"].as_str().unwrap().contains("longer than 65536"),
        "{r}"
    );
    // 100 clients at once.
    let clients: Vec<_> = (0..100)
        .map(|_| {
            let s = socket.clone();
            std::thread::spawn(move || raw_request(&s, b"{\"argv\":[\"show\",\"runtime\"]}\n"))
        })
        .collect();
    for c in clients {
        let r = c.join().expect("client thread");
        assert_eq!(r["ok"], true, "{r}");
        assert!(r["text"].as_str().unwrap().contains("acl"), "{r}");
    }
    // The trace: exactly ten packets to the denied port, each dropped by the acl node.
    let deadline = Instant::now() + Duration::from_secs(10);
    let trace = loop {
        let tr = ctl(&socket, "show trace");
        if tr["packets"].as_array().unwrap().len() >= 10 || Instant::now() > deadline {
            break tr;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let pkts = trace["packets"].as_array().unwrap();
    assert_eq!(pkts.len(), 10, "{trace}");
    assert_eq!(trace["pending"], 0);
    for p in pkts {
        let steps = p["steps"].as_array().unwrap();
        let last = steps.last().unwrap();
        assert_eq!(last["node"], "acl", "{p}");
        assert_eq!(last["outcome"], "drop: acl-deny", "{p}");
        // ... by the rule that denies port 9, which the trace names.
        assert_eq!(last["rule"], "deny-discard", "{p}");
        assert_eq!(
            last["decided_by"], "rule deny-discard (priority 1500, drop)",
            "{p}"
        );
        let summary = steps[0]["summary"].as_str().unwrap();
        assert!(summary.contains(&format!("-> {VIP}:9 UDP")), "{summary}");
        assert_eq!(p["worker"], "lcore 1");
    }
    let (rc, text, _) = ctl_raw(&socket, false, "show trace");
    assert_eq!(rc, 0);
    assert_eq!(text.matches("drop: acl-deny").count(), 10, "{text}");
    assert_eq!(
        text.matches("by rule deny-discard (priority 1500, drop)")
            .count(),
        10,
        "{text}"
    );
    // The silent client was closed by the server (EOF), well within its request timeout.
    silent
        .set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    let mut buf = [0u8; 16];
    assert_eq!(silent.read(&mut buf).expect("closed, not timed out"), 0);
    let a = finish(g1, &g1_json);

    // Counts after phase 1 equal what was sent.
    let denied_sent = num(&a["ports"][0]["tx_deny"]);
    assert!(denied_sent > 1_000, "too few denied packets: {a}");
    let errors = ctl(&socket, "show errors");
    let acl_deny = errors["errors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["node"] == "acl" && e["reason"] == "acl-deny")
        .unwrap_or_else(|| panic!("no acl-deny row: {errors}"));
    assert_eq!(num(&acl_deny["count"]), denied_sent, "show errors vs sent");
    let acl = ctl(&socket, "show acl");
    assert_eq!(num(&acl_rule(&acl, "deny-discard")["packets"]), denied_sent);
    assert_eq!(num(&acl_rule(&acl, "block-list")["packets"]), 0);
    let gen = num(&acl["nodes"][0]["generation"]);
    assert_eq!(
        acl["nodes"][0]["worker_generations"],
        serde_json::json!([gen])
    );
    // The LB's connection table, sampled from the worker: one entry per allowed flow, each
    // to the VIP and on the backend show lb counts it for.
    let lb1 = ctl(&socket, "show lb");
    let ct = ctl(&socket, "show conntrack --limit 5000");
    let lb_table = ct["tables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["sample"]["node"].as_str().unwrap().starts_with("lb "))
        .unwrap_or_else(|| panic!("no lb table: {ct}"));
    let entries = lb_table["sample"]["entries"].as_array().unwrap();
    let allowed = u64::from(FLOWS) - u64::from(FLOWS) * u64::from(DENY_PERCENT) / 100;
    assert_eq!(
        entries.len() as u64,
        allowed,
        "one connection per allowed flow"
    );
    assert_eq!(lb_table["sample"]["truncated"], false);
    for b in BACKENDS {
        let name = format!("{b}:{VIP_PORT}");
        let on = entries.iter().filter(|e| e["backend"] == name).count() as u64;
        assert_eq!(
            on,
            num(&backend(&lb1, &name)["active_connections"]),
            "{name}"
        );
    }
    assert!(entries.iter().all(|e| e["dst"] == VIP.to_string()
        && e["service"] == "bench-vip"
        && e["protocol"] == "udp"));
    // Per connection, its packets both ways: on each backend they add up to exactly the
    // requests and replies show lb counts for it; every entry is at least as old as idle.
    for b in BACKENDS {
        let name = format!("{b}:{VIP_PORT}");
        let on: u64 = entries
            .iter()
            .filter(|e| e["backend"] == name)
            .map(|e| num(&e["packets"]))
            .sum();
        let be = backend(&lb1, &name);
        assert_eq!(
            on,
            num(&be["packets"]) + num(&be["reply_packets"]),
            "{name}: connections' packets vs show lb"
        );
    }
    assert!(entries
        .iter()
        .all(|e| num(&e["packets"]) >= 1 && num(&e["age_secs"]) >= num(&e["idle_secs"])));
    // Two seconds later, without traffic: every connection is older and idler by at least
    // a second, with the same packets.
    std::thread::sleep(Duration::from_secs(2));
    let later = ctl(&socket, "show conntrack --limit 5000");
    let by_client = |v: &Value| -> std::collections::BTreeMap<(String, u64), Value> {
        v["tables"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|t| t["sample"]["node"].as_str().unwrap().starts_with("lb "))
            .flat_map(|t| t["sample"]["entries"].as_array().unwrap().clone())
            .map(|e| ((e["src"].to_string(), num(&e["src_port"])), e))
            .collect()
    };
    let (before, after) = (by_client(&ct), by_client(&later));
    assert_eq!(before.len() as u64, allowed);
    assert_eq!(
        before.keys().collect::<Vec<_>>(),
        after.keys().collect::<Vec<_>>()
    );
    for (k, e) in &before {
        let l = &after[k];
        assert!(
            num(&l["age_secs"]) > num(&e["age_secs"])
                && num(&l["idle_secs"]) > num(&e["idle_secs"])
                && l["packets"] == e["packets"],
            "{k:?}: {e} -> {l}"
        );
    }
    // Filters and limits: flow 17 is allowed, flow 7 denied (never tracked).
    let one = ctl(&socket, "show conntrack src 10.1.0.17");
    let n = |v: &Value| -> usize {
        v["tables"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["sample"]["entries"].as_array().unwrap().len())
            .sum()
    };
    assert_eq!(n(&one), 1, "{one}");
    assert_eq!(n(&ctl(&socket, "show conntrack src 10.1.0.7")), 0);
    let ten = ctl(&socket, "show conntrack --limit 10");
    assert_eq!(n(&ten), 10);
    assert_eq!(ten["tables"][0]["sample"]["truncated"], true);
    let (rc, text, _) = ctl_raw(&socket, false, "show conntrack src 10.1.0.17");
    assert_eq!(rc, 0);
    assert!(
        text.contains("10.1.0.17:1024") && text.contains("bench-vip"),
        "{text}"
    );
    // clear runtime zeroes what show runtime shows (no traffic now).
    ctl(&socket, "clear runtime");
    let rt = ctl(&socket, "show runtime");
    let zero = runtime_packets(&rt);
    assert!(
        zero.len() >= 4 && zero.iter().all(|(_, c)| *c == 0),
        "{zero:?}"
    );

    // Drain a backend, block a /24 of clients.
    let drained = format!("{}:{VIP_PORT}", BACKENDS[0]);
    let before = ctl(&socket, "show lb");
    let b0 = backend(&before, &drained);
    assert_eq!(b0["status"], "active");
    assert!(num(&b0["new_connections"]) > 300, "{b0}");
    let (rc, text, err) = ctl_raw(
        &socket,
        false,
        &format!("lb backend bench-vip {drained} draining"),
    );
    assert_eq!(rc, 0, "{err}");
    assert!(text.contains("draining"), "{text}");
    assert_eq!(
        backend(&ctl(&socket, "show lb"), &drained)["status"],
        "draining"
    );
    let set = ctl(&socket, "acl set-add blocked 10.1.5.0/24");
    assert_eq!(set["nodes"][0]["changed"], true, "{set}");
    assert_eq!(set["nodes"][0]["entries"], 201);
    assert_eq!(
        set["nodes"][0]["rebuilt"], false,
        "not a membership update: {set}"
    );
    assert_eq!(num(&set["nodes"][0]["generation"]), gen + 1);

    // Phase 2: the same flows and as many new ones.
    let (g2, g2_json) = phase(&t, 2, 2 * FLOWS, 3.0);
    let b = finish(g2, &g2_json);
    let after = ctl(&socket, "show lb");
    let b1 = backend(&after, &drained);
    assert_eq!(
        num(&b1["new_connections"]),
        num(&b0["new_connections"]),
        "a draining backend got new connections"
    );
    assert!(
        num(&b1["packets"]) > num(&b0["packets"]) + 5 * num(&b0["new_connections"]),
        "the draining backend's connections were not kept: {b0} -> {b1}"
    );
    for other in &BACKENDS[1..] {
        let name = format!("{other}:{VIP_PORT}");
        assert!(
            num(&backend(&after, &name)["new_connections"])
                > num(&backend(&before, &name)["new_connections"]) + 300,
            "backend {name} got no share of the new flows"
        );
    }
    let acl = ctl(&socket, "show acl");
    assert!(
        num(&acl_rule(&acl, "block-list")["packets"]) > 0,
        "block list unused"
    );
    assert_eq!(
        acl["nodes"][0]["worker_generations"],
        serde_json::json!([gen + 1])
    );
    let rt = runtime_packets(&ctl(&socket, "show runtime"));
    let parse = rt.iter().find(|(n, _)| n == "parse").unwrap().1;
    let sent2 = num(&b["ports"][0]["tx"]) + num(&b["ports"][1]["tx"]);
    assert_eq!(
        parse, sent2,
        "show runtime after clear: phase 2's packets exactly"
    );
    // DPDK's own telemetry client sees the same counters (since start: both phases).
    let tel = telemetry(&t.dut_prefix(), "/dataplane/runtime");
    let sent_all = sent2 + num(&a["ports"][0]["tx"]) + num(&a["ports"][1]["tx"]);
    assert_eq!(
        num(&tel["/dataplane/runtime"]["parse"]["packets"]),
        sent_all,
        "{tel}"
    );
    let tel = telemetry(&t.dut_prefix(), "/dataplane/lb");
    let lb_tel =
        &tel["/dataplane/lb"][format!("lb/bench_vip/{}", drained.replace(['.', ':'], "_"))];
    assert_eq!(lb_tel["state"], "draining", "{tel}");
    assert_eq!(lb_tel["packets"], b1["packets"], "{tel}");
    let set = ctl(&socket, "acl set-del blocked 10.1.5.0/24");
    assert_eq!(set["nodes"][0]["entries"], 200);
    assert_eq!(set["nodes"][0]["rebuilt"], false, "{set}");

    // A non-root user cannot connect.
    let out = Command::new(workspace_bin("dataplane"))
        .args(["ctl", "--socket"])
        .arg(&socket)
        .args(["show", "runtime"])
        .uid(65534)
        .gid(65534)
        .output()
        .expect("runs as nobody");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Permission denied"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Accounting: nothing lost uncounted through all of it.
    let d = VhostTopology::stop_dataplane(&mut dut, &stats);
    let port = |i: usize, k: &str| num(&d["ports"][i][k]);
    let acl = pipeline_node(&d, "acl");
    let lb = pipeline_node(&d, "lb");
    let acl_drops: u64 = acl["drops"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| num(&x["count"]))
        .sum();
    let lb_drops: u64 = lb["drops"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| num(&x["count"]))
        .sum();
    // The acl node's rule drops: both phases' denied flows and the blocked clients.
    assert!(
        named_count(&acl["drops"], "acl-deny") > denied_sent + num(&b["ports"][0]["tx_deny"]),
        "acl-deny {} for {denied_sent} + {} denied and some blocked",
        named_count(&acl["drops"], "acl-deny"),
        num(&b["ports"][0]["tx_deny"])
    );
    let sent_fh = num(&a["ports"][0]["tx"]) + num(&b["ports"][0]["tx"]);
    assert_eq!(port(0, "rx"), sent_fh, "every packet sent arrived");
    assert_eq!(
        port(0, "rx") + port(1, "rx"),
        port(0, "tx")
            + port(1, "tx")
            + port(0, "tx_dropped")
            + port(1, "tx_dropped")
            + acl_drops
            + lb_drops,
        "in = out + counted drops"
    );
    for m in d["mempools"].as_array().expect("mempools") {
        assert_eq!(m["in_use_after_stop"], 0, "mbufs leaked: {m}");
    }
}
