//! The membership part of `acl-bench` (issue 25): at 10k ACLs naming 16 address sets of
//! 6,250 addresses each (100k addresses, every set a set class), with a worker thread
//! running `parse -> acl -> forward` on the built-in TCP traffic the whole time:
//! * the time from `AclHub::update_members` (one change) until the worker runs the new
//!   membership (p50, p99 over many updates);
//! * sustained membership publications per second on the control thread (one change each,
//!   each waited until the worker adopted it), and changes per second in batches of 32;
//! * the worker's packet rate during that churn over its rate without churn, in alternating
//!   windows of the same run (median of each);
//! * today's full-rebuild path in the same run: `update_address_set` of the 1k-entry set of
//!   the 10k-rule bench set with every set expanded (re-expand, compile, rte_acl build);
//! * flat rules for 1,000 ACLs naming a 10,000-member set, and naming a 1-member set.
//!
//! The control thread runs on CPU 0 (EAL's main lcore), the worker on CPU 1. On a shared
//! machine both CPUs also run other work: the figures are what this run got.

use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dataplane::dpdk::acl::acl_hub;
use pipeline::acl::{
    AclConfig, AclFile, AclTable, Classify, ExpandLimits, IpNet, MemberChange, RuleSet,
};
use pipeline::source::{IpVersion, L4Proto, PacketSource, SourceSpec};
use pipeline::{Graph, GraphSpec, PortInfo, TestBuf, VECTOR_SIZE};
use serde_json::{json, Map, Value};

/// Sets of the churn rule set.
const SETS: u32 = 16;
/// Addresses per set (16 x 6,250 = 100k).
const PER_SET: u32 = 6_250;

/// Address `k` of set `s` (scattered: no two merge into a shorter prefix).
fn member(s: u32, k: u32) -> Ipv4Addr {
    Ipv4Addr::from(0x0b00_0000 + (s << 18) + 2 * k)
}

/// 10k ACLs over 16 sets of 6,250 addresses, and a last rule allowing the bench traffic.
fn churn_config(acls: u32) -> AclConfig {
    let mut t = String::from("[acl]\ndefault = \"drop\"\n[acl.port_groups]\npg_in = [\"p0\"]\npg_out = [\"p1\"]\n[acl.address_sets]\n");
    for s in 0..SETS {
        let list: Vec<String> = (0..PER_SET)
            .map(|k| format!("\"{}\"", member(s, k)))
            .collect();
        t.push_str(&format!("s{s} = [{}]\n", list.join(", ")));
    }
    for i in 0..acls {
        t.push_str(&format!(
            "[[acl.rules]]\nname = \"r{i}\"\ndirection = \"from-lport\"\npriority = {}\nmatch = \"inport == @pg_in && ip4.src == $s{} && tcp.dst == {}\"\naction = \"{}\"\n",
            100 + i % 1000,
            i % SETS,
            1000 + i % 4000,
            if i % 2 == 0 { "drop" } else { "allow" }
        ));
    }
    t.push_str("[[acl.rules]]\nname = \"web\"\ndirection = \"to-lport\"\npriority = 1\nmatch = \"outport == @pg_out && ip4 && tcp.dst == 80\"\naction = \"allow\"\n");
    toml::from_str::<AclFile>(&t)
        .expect("generated rules parse")
        .acl
}

fn percentile(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[((v.len() - 1) as f64 * p).round() as usize]
}

/// The worker: builds the graph for `cfg` (node `node`) and replays the bench traffic until
/// `stop`, adding its packets to `packets`.
fn worker(
    node: String,
    cfg: AclConfig,
    ready: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    packets: Arc<AtomicU64>,
    rt: bool,
) -> Result<(), String> {
    // EAL pins the control (main) thread to CPU 0, and a thread it spawns inherits that: the
    // worker gets CPU 1, as the vhost benchmark's DUT worker (on one CPU the two would take
    // turns by scheduler time slices, and the latency would be a slice, about 4 ms).
    // (`available_parallelism` would say 1 here: it reads this thread's inherited mask.)
    let cpus = std::fs::read_to_string("/sys/devices/system/cpu/online").unwrap_or_default();
    if cpus.trim() != "0" {
        perf::vm::pin_thread(perf::sched::thread_id()?, 1)?;
    }
    if rt {
        perf::sched::realtime()?;
    }
    let ports = [PortInfo::new(0, "p0", "in"), PortInfo::new(1, "p1", "out")];
    let mut params = toml::Table::new();
    params.insert(
        "acl".into(),
        toml::Value::try_from(cfg).map_err(|e| e.to_string())?,
    );
    params.insert("outport".into(), "cross-connect".into());
    params.insert(
        "pairs".into(),
        toml::Value::try_from(vec![["p0", "p1"]]).unwrap(),
    );
    let spec = format!(
        "[[nodes]]\nname = \"parse\"\nkind = \"parse\"\n[[nodes]]\nname = \"{node}\"\nkind = \"acl\"\nparams = {}\n[[nodes]]\nname = \"fwd\"\nkind = \"forward\"\nparams = {{ mode = \"cross-connect\", pairs = [[\"p0\", \"p1\"]] }}\n[[edges]]\nfrom = \"parse\"\nto = \"{node}\"\n[[edges]]\nfrom = \"{node}\"\nto = \"fwd\"\n",
        toml::Value::Table(params)
    );
    let spec = GraphSpec::from_toml(&spec).map_err(|e| e.to_string())?;
    let mut graph = Graph::<TestBuf>::build(&spec, &dataplane::nodes::registry(), &ports)
        .map_err(|e| format!("{}: {}", e.key, e.reason))?;
    let mut tx = graph.new_tx_vectors();
    let mut src = PacketSource::from_spec(&SourceSpec::simple(10_000, L4Proto::Tcp, IpVersion::V4))
        .map_err(|e| e.to_string())?;
    src.replay(&mut graph, &mut tx, 200, VECTOR_SIZE);
    ready.store(true, Ordering::Release);
    while !stop.load(Ordering::Relaxed) {
        let r = src.replay(&mut graph, &mut tx, 8, VECTOR_SIZE);
        packets.fetch_add(r.tx, Ordering::Relaxed);
    }
    Ok(())
}

/// One change of set `s`: its address `PER_SET + n/2` joins (even `n`) or leaves (odd).
fn change(n: u64) -> MemberChange {
    let s = (n / 2 % u64::from(SETS)) as u32;
    let net = IpNet::host(member(s, PER_SET + (n / 2 % 1000) as u32).into());
    if n.is_multiple_of(2) {
        MemberChange::SetAdd {
            set: format!("s{s}"),
            net,
        }
    } else {
        MemberChange::SetDel {
            set: format!("s{s}"),
            net,
        }
    }
}

/// Runs the membership benchmark: `updates` single-change updates for the latency,
/// `seconds` of sustained churn per figure, `windows` quiet/churn window pairs.
/// With `rt`, the worker and the control thread run at SCHED_FIFO during the churn part
/// (the dedicated cores a dataplane has; on this shared machine they otherwise wait for
/// time slices).
pub fn run(
    updates: u64,
    seconds: f64,
    windows: usize,
    rebuild_cfg: &AclConfig,
    rt: bool,
) -> Result<Map<String, Value>, String> {
    let mut out = Map::new();
    // Flat rules: 1,000 ACLs naming a 10,000-member set.
    let flat = |members: u32| -> Result<usize, String> {
        let mut cfg = AclConfig::default();
        cfg.port_groups.insert("pg".into(), vec!["p0".into()]);
        cfg.address_sets.insert(
            "big".into(),
            (0..members)
                .map(|k| IpNet::host(member(0, k).into()))
                .collect(),
        );
        let text: String = (0..1000)
            .map(|i| format!("[[rules]]\ndirection = \"to-lport\"\npriority = {}\nmatch = \"outport == @pg && ip4.src == $big && tcp.dst == {}\"\naction = \"allow\"\n", 1 + i % 100, 1000 + i))
            .collect();
        cfg.rules = toml::from_str::<AclConfig>(&text)
            .map_err(|e| e.to_string())?
            .rules;
        let rs = RuleSet::from_config(&cfg).map_err(|e| e.to_string())?;
        Ok(AclTable::new(rs, ExpandLimits::default())
            .map_err(|e| e.to_string())?
            .flat_rule_count())
    };
    let (with, one) = (flat(10_000)?, flat(1)?);
    println!(
        "flat rules, 1,000 ACLs naming a 10,000-member set: {with} (naming a 1-member set: {one})"
    );
    out.insert("acl_member_flat_rules_1000x10000".into(), json!(with));
    out.insert("acl_member_flat_rules_1000x1".into(), json!(one));

    // Today's full-rebuild path in the same run: one entry more in the 1k-entry set of the
    // 10k-rule bench set, every set expanded (no worker: build time only, a lower bound).
    let ports = [PortInfo::new(0, "p0", "in"), PortInfo::new(1, "p1", "out")];
    let spec = GraphSpec::from_toml("[[nodes]]\nname = \"member-rebuild\"\nkind = \"acl\"\nparams = { acl = { default = \"drop\" }, set_class_min_entries = 1000000000 }\n[[nodes]]\nname = \"fwd\"\nkind = \"forward\"\nparams = { mode = \"by-metadata\" }\n[[edges]]\nfrom = \"member-rebuild\"\nto = \"fwd\"\n").unwrap();
    let g = Graph::<TestBuf>::build(&spec, &dataplane::nodes::registry(), &ports)
        .map_err(|e| format!("{}: {}", e.key, e.reason))?;
    let rhub = acl_hub("member-rebuild").ok_or("no hub")?;
    rhub.publish_config(rebuild_cfg, Duration::ZERO)
        .map_err(|e| e.to_string())?;
    let mut entries = rhub
        .rules()
        .address_set("big")
        .ok_or("no big set")?
        .entries
        .clone();
    let mut rebuild_ms = Vec::new();
    for k in 0..3u32 {
        entries.push(IpNet::host(Ipv4Addr::from(0x0a09_0000 + 2 * k).into()));
        let r = rhub
            .update_address_set("big", entries.clone(), Duration::ZERO)
            .map_err(|e| e.to_string())?;
        rebuild_ms.push(r.seconds * 1e3);
    }
    drop(g);
    let rebuild = percentile(&mut rebuild_ms, 0.5);
    println!("today's path: one entry more in an expanded 1k-entry set of the 10k-rule set: {rebuild:.1} ms (re-expand, compile, rte_acl build; median of 3, no worker)");
    out.insert("acl_rebuild_update_ms_10k".into(), json!(rebuild));

    // The churn rule set, with a worker forwarding.
    let node = "member-churn".to_string();
    let cfg = churn_config(10_000);
    let (ready, stop, packets) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicU64::new(0)),
    );
    let w = {
        let (r, s, p, n) = (ready.clone(), stop.clone(), packets.clone(), node.clone());
        std::thread::spawn(move || worker(n, cfg, r, s, p, rt))
    };
    let t0 = Instant::now();
    while !ready.load(Ordering::Acquire) {
        if w.is_finished() || t0.elapsed() > Duration::from_secs(120) {
            stop.store(true, Ordering::Relaxed);
            return Err(w.join().map_or("worker panicked".into(), |r| {
                r.err().unwrap_or_else(|| "worker not ready".into())
            }));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    if rt {
        if let Err(e) = perf::sched::realtime() {
            stop.store(true, Ordering::Relaxed);
            let _ = w.join();
            return Err(e);
        }
    }
    let result = (|| -> Result<(), String> {
        let hub = acl_hub(&node).ok_or("no hub")?;
        let t = hub.table();
        println!(
            "churn rule set: {} ACLs, {} flat rules, {} set classes, {} member entries; {}",
            t.rules().acls().len(),
            t.flat_rule_count(),
            t.set_classes().len(),
            hub.members().len(),
            hub.current().classifier.describe()
        );
        out.insert(
            "acl_member_churn_flat_rules".into(),
            json!(t.flat_rule_count()),
        );
        let wait = Duration::from_secs(1);
        let mut n = 0u64;
        // Latency: call until the worker runs it.
        let mut lat = Vec::with_capacity(updates as usize);
        let mut apply = Vec::with_capacity(updates as usize);
        let mut late = 0;
        for _ in 0..updates {
            let r = hub
                .update_members(&[change(n)], wait)
                .map_err(|e| e.to_string())?;
            n += 1;
            if r.switched < r.workers || r.copies != 0 || r.rebuild.is_some() {
                late += 1;
            }
            lat.push(r.seconds * 1e3);
            apply.push(r.apply_seconds * 1e6);
        }
        let apply_p50 = percentile(&mut apply, 0.5);
        let (p50, p99) = (percentile(&mut lat, 0.5), percentile(&mut lat, 0.99));
        println!("membership update (1 change, call until the worker runs it), {updates} updates: p50 {p50:.3} ms, p99 {p99:.3} ms ({late} late or copied; applying the change: p50 {apply_p50:.1} us)");
        out.insert("acl_member_apply_p50_us_10k".into(), json!(apply_p50));
        out.insert("acl_member_update_p50_ms_10k".into(), json!(p50));
        out.insert("acl_member_update_p99_ms_10k".into(), json!(p99));
        // Sustained: publications of one change, then batches of 32.
        let mut sustained = |batch: u64| -> Result<f64, String> {
            let t = Instant::now();
            let mut changes = 0u64;
            while t.elapsed().as_secs_f64() < seconds {
                let b: Vec<MemberChange> = (0..batch).map(|i| change(n + i)).collect();
                n += batch;
                hub.update_members(&b, wait).map_err(|e| e.to_string())?;
                changes += batch;
            }
            Ok(changes as f64 / t.elapsed().as_secs_f64())
        };
        let single = sustained(1)?;
        let batched = sustained(32)?;
        println!("sustained while the worker forwards: {single:.0} publications/s of 1 change; {batched:.0} changes/s in batches of 32");
        out.insert("acl_member_publications_per_second".into(), json!(single));
        out.insert("acl_member_updates_per_second".into(), json!(batched));
        // Forwarding during churn over without, alternating windows.
        let (mut quiet, mut churn) = (Vec::new(), Vec::new());
        for _ in 0..windows {
            for churning in [false, true] {
                let (p0, t) = (packets.load(Ordering::Relaxed), Instant::now());
                while t.elapsed().as_secs_f64() < seconds {
                    if churning {
                        hub.update_members(&[change(n)], wait)
                            .map_err(|e| e.to_string())?;
                        n += 1;
                    } else {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                }
                let rate =
                    (packets.load(Ordering::Relaxed) - p0) as f64 / t.elapsed().as_secs_f64();
                if churning {
                    churn.push(rate)
                } else {
                    quiet.push(rate)
                }
            }
        }
        let (q, c) = (percentile(&mut quiet, 0.5), percentile(&mut churn, 0.5));
        println!("worker rate: {:.2} Mpps quiet, {:.2} Mpps during churn (medians of {windows} windows each): ratio {:.3}", q / 1e6, c / 1e6, c / q);
        out.insert("acl_member_churn_forwarding_ratio".into(), json!(c / q));
        out.insert("acl_member_worker_mpps_quiet".into(), json!(q / 1e6));
        Ok(())
    })();
    stop.store(true, Ordering::Relaxed);
    if rt {
        perf::sched::normal();
    }
    out.insert("acl_member_realtime".into(), json!(rt));
    let worker = w.join().map_err(|_| "worker panicked".to_string())?;
    result?;
    worker?;
    Ok(out)
}
