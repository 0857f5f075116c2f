//! `acl-bench`: cycles per packet of the `acl` node (rte_acl, in-process EAL without huge
//! pages) on the built-in packet source (64-byte TCP/IPv4, 10,000 flows), for 10, 100, 1k
//! and 10k flat rules (from 1k up, 1,000 of them come from one ACL over a 1k-entry address
//! set), stateless and stateful (conntrack; after warm-up every packet is a hit), and the
//! time to rebuild 10k rules (expand + compile + rte_acl build). `--realistic` measures
//! instead the vhost benchmark's security-group rule set (`perf::topology::acl_rules_toml`,
//! 1k flat rules: address sets, port ranges, both port groups, a source-port rule) on its
//! traffic (UDP 10.1/16 -> 10.2/16 port 5001 from the fronthaul port), stateless.
//!
//! The node's verdict cache (`pipeline::acl::verdict_cache`) is on at its default size
//! unless `--verdict-cache N` says otherwise (0: off, every packet walks rte_acl); the
//! share of packets it answered is printed beside each figure. `--flows N` changes the
//! number of flows of the traffic (more flows than cache entries: the cost of misses).
//!
//! Large address sets are matched by membership (set classes, issue 25); `--realistic`
//! also measures the same rule sets with every set expanded (key suffix `_expanded`, the
//! path before set classes) and prints the difference. The full run ends with the
//! membership benchmark ([`members`]: update latency and rate at 10k ACLs naming 100k
//! addresses while a worker forwards, the forwarding ratio during churn, today's rebuild
//! path beside it); `--members` runs only that.
//!
//! ```text
//! cargo run --release -p perf --bin acl-bench -- [--json FILE] [--bursts N] [--rounds N] [--rules N]
//!     [--mode stateless|stateful|both] [--realistic] [--flows N] [--verdict-cache N]
//!     [--members] [--member-updates N] [--member-seconds S] [--member-windows N]
//!     [--member-realtime]
//! ```
//! `--member-realtime` runs the membership benchmark's worker and control thread at
//! SCHED_FIFO (as on dedicated cores; on a shared machine they otherwise wait for time
//! slices, which is then what the latency measures).
//! Figures are the median over rounds (min alongside): the machine may be shared.

use std::net::Ipv4Addr;
use std::process::ExitCode;
use std::time::Duration;

use dataplane::dpdk::acl::acl_hub;
use dataplane::dpdk::Eal;
use pipeline::acl::{AclConfig, AclFile, Classify};
use pipeline::source::{IpVersion, L4Proto, PacketSource, SourceSpec};
use pipeline::{Graph, GraphSpec, PortInfo, TestBuf, VECTOR_SIZE};
use serde_json::json;

mod members;

/// An `[acl]` table of about `rules` flat rules; the bench traffic (src 10.0.x.y, dst
/// 10.1.0.1:80 over TCP) is allowed by the last, lowest-priority ACL.
fn rules_config(rules: usize) -> AclConfig {
    let mut t = String::from("[acl]\ndefault = \"drop\"\n[acl.port_groups]\npg_in = [\"p0\"]\npg_out = [\"p1\"]\n[acl.address_sets]\n");
    let mut remaining = rules.saturating_sub(1);
    if rules >= 1000 {
        let hosts: Vec<String> = (0..1000u32)
            .map(|k| format!("\"{}\"", Ipv4Addr::from(0x0a03_0000 + 2 * k)))
            .collect();
        t.push_str(&format!("big = [{}]\n", hosts.join(", ")));
        t.push_str("[[acl.rules]]\nname = \"big-set\"\ndirection = \"from-lport\"\npriority = 2000\nmatch = \"inport == @pg_in && ip4.src == $big && tcp.dst == 5432\"\naction = \"allow-related\"\n");
        remaining = remaining.saturating_sub(1000);
    }
    for k in 0..remaining as u32 {
        t.push_str(&format!(
            "[[acl.rules]]\nname = \"r{k}\"\ndirection = \"to-lport\"\npriority = {}\nmatch = \"outport == @pg_out && ip4.src == {}/{} && tcp.dst == {}\"\naction = \"{}\"\n",
            100 + k % 1000,
            Ipv4Addr::from(0x0a04_0000 + (k << 4)),
            28 + k % 5,
            1000 + k % 2000,
            if k % 2 == 0 { "drop" } else { "allow" },
        ));
    }
    t.push_str("[[acl.rules]]\nname = \"web\"\ndirection = \"to-lport\"\npriority = 1\nmatch = \"outport == @pg_out && ip4 && tcp.dst == 80\"\naction = \"allow-related\"\n");
    toml::from_str::<AclFile>(&t)
        .expect("generated rules parse")
        .acl
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// The vhost benchmark's rule set with about `rules` flat rules.
fn realistic_config(rules: usize) -> AclConfig {
    toml::from_str::<AclFile>(&perf::topology::acl_rules_toml(rules))
        .expect("generated rules parse")
        .acl
}

/// What one configuration measured.
struct Measured {
    /// Median cycles per packet over the rounds.
    median: f64,
    /// Fastest round.
    min: f64,
    /// Flat rules compiled.
    flat: usize,
    /// The classifier (method).
    desc: String,
    /// Share of the measured packets answered by the verdict cache.
    cache_share: f64,
}

/// How the traffic and the node are set up besides rules and mode.
#[derive(Clone, Copy)]
struct Setup {
    realistic: bool,
    flows: u32,
    /// Verdict-cache entries (`None`: the node's default).
    cache: Option<usize>,
    bursts: u64,
    rounds: u64,
    /// `set_class_min_entries` of the node (`None`: its default; huge: every set expanded,
    /// the path before issue 25).
    set_classes: Option<usize>,
}

fn run(rules: usize, stateful: bool, setup: Setup) -> Result<Measured, String> {
    let Setup {
        realistic,
        flows,
        cache,
        bursts,
        rounds,
        set_classes,
    } = setup;
    let node = format!("acl-{rules}-{stateful}-{realistic}-{set_classes:?}-{cache:?}");
    let (ports, cfg, (p0, p1)) = if realistic {
        (
            [
                PortInfo::new(0, "fh0", "fronthaul"),
                PortInfo::new(1, "mh0", "midhaul"),
            ],
            realistic_config(rules),
            ("fh0", "mh0"),
        )
    } else {
        (
            [PortInfo::new(0, "p0", "in"), PortInfo::new(1, "p1", "out")],
            rules_config(rules),
            ("p0", "p1"),
        )
    };
    let mut params = toml::Table::new();
    params.insert(
        "acl".into(),
        toml::Value::try_from(cfg).map_err(|e| e.to_string())?,
    );
    params.insert(
        "stateful".into(),
        toml::Value::Integer(if stateful { 65536 } else { 0 }),
    );
    params.insert("outport".into(), "cross-connect".into());
    if let Some(n) = cache {
        params.insert("verdict_cache".into(), toml::Value::Integer(n as i64));
    }
    if let Some(n) = set_classes {
        params.insert(
            "set_class_min_entries".into(),
            toml::Value::Integer(n as i64),
        );
    }
    params.insert(
        "pairs".into(),
        toml::Value::try_from(vec![[p0, p1]]).unwrap(),
    );
    let spec = format!(
        "[[nodes]]\nname = \"parse\"\nkind = \"parse\"\n[[nodes]]\nname = \"{node}\"\nkind = \"acl\"\nparams = {}\n[[nodes]]\nname = \"fwd\"\nkind = \"forward\"\nparams = {{ mode = \"cross-connect\", pairs = [[\"{p0}\", \"{p1}\"]] }}\n[[edges]]\nfrom = \"parse\"\nto = \"{node}\"\n[[edges]]\nfrom = \"{node}\"\nto = \"fwd\"\n",
        toml::Value::Table(params)
    );
    let spec = GraphSpec::from_toml(&spec).map_err(|e| e.to_string())?;
    let mut graph = Graph::<TestBuf>::build(&spec, &dataplane::nodes::registry(), &ports)
        .map_err(|e| format!("{}: {}", e.key, e.reason))?;
    let hub = acl_hub(&node).ok_or("no hub")?;
    let flat = hub.current().acl.v4.len() + hub.current().acl.v6.len();
    let desc = hub.current().classifier.describe();
    let mut tx = graph.new_tx_vectors();
    let spec = if realistic {
        // The benchmark's plain traffic: clients 10.1/16 to servers 10.2/16, UDP 5001.
        let mut s = SourceSpec::simple(flows, L4Proto::Udp, IpVersion::V4);
        s.src_ip = Ipv4Addr::new(10, 1, 0, 1).into();
        s.dst_ip = Ipv4Addr::new(10, 2, 0, 1).into();
        s.dst_port = perf::topology::VIP_PORT;
        s
    } else {
        SourceSpec::simple(flows, L4Proto::Tcp, IpVersion::V4)
    };
    let mut src = PacketSource::from_spec(&spec).map_err(|e| e.to_string())?;
    src.replay(&mut graph, &mut tx, (bursts / 10).max(100), VECTOR_SIZE);
    let mut cpp = Vec::new();
    let (mut hits, mut judged) = (0u64, 0u64);
    for _ in 0..rounds {
        let before = graph.snapshot();
        let r = src.replay(&mut graph, &mut tx, (bursts / rounds).max(1), VECTOR_SIZE);
        if r.tx != r.packets {
            return Err(format!("{node}: {} of {} packets passed", r.tx, r.packets));
        }
        let d = graph.snapshot().delta(&before);
        let n = d.node(&node).ok_or("no acl node")?;
        cpp.push(n.clocks_per_packet());
        hits += n.counter("verdict-cache-hits");
        judged += n.packets;
    }
    let min = cpp.iter().copied().fold(f64::MAX, f64::min);
    Ok(Measured {
        median: median(&mut cpp),
        min,
        flat,
        desc,
        cache_share: hits as f64 / judged.max(1) as f64,
    })
}

fn main() -> ExitCode {
    let mut json_out = None;
    let (mut bursts, mut rounds) = (20_000u64, 10u64);
    let mut only: Option<usize> = None;
    let mut modes = vec![false, true];
    let (mut flows, mut cache) = (10_000u32, None);
    let (mut member_updates, mut member_seconds, mut member_windows) = (2000u64, 0.5f64, 3usize);
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let realistic = args.iter().any(|a| a == "--realistic");
    let members_only = args.iter().any(|a| a == "--members");
    let member_rt = args.iter().any(|a| a == "--member-realtime");
    args.retain(|a| a != "--realistic" && a != "--members" && a != "--member-realtime");
    let mut it = args.into_iter();
    while let Some(a) = it.next() {
        match (a.as_str(), it.next()) {
            ("--json", Some(v)) => json_out = Some(v),
            ("--bursts", Some(v)) => bursts = v.parse().unwrap_or(bursts),
            ("--rounds", Some(v)) => rounds = v.parse::<u64>().unwrap_or(rounds).max(1),
            ("--rules", Some(v)) => only = v.parse().ok(),
            ("--flows", Some(v)) => flows = v.parse::<u32>().unwrap_or(flows).max(1),
            ("--verdict-cache", Some(v)) => cache = v.parse().ok(),
            ("--member-updates", Some(v)) => {
                member_updates = v.parse::<u64>().unwrap_or(member_updates).max(10)
            }
            ("--member-seconds", Some(v)) => member_seconds = v.parse().unwrap_or(member_seconds),
            ("--member-windows", Some(v)) => {
                member_windows = v.parse::<usize>().unwrap_or(member_windows).max(1)
            }
            ("--mode", Some(v)) => {
                modes = match v.as_str() {
                    "stateless" => vec![false],
                    "stateful" => vec![true],
                    _ => vec![false, true],
                }
            }
            _ => {
                eprintln!("usage: acl-bench [--json FILE] [--bursts N] [--rounds N] [--rules N] [--mode stateless|stateful|both] [--realistic] [--flows N] [--verdict-cache N] [--members] [--member-updates N] [--member-seconds S] [--member-windows N] [--member-realtime]");
                return ExitCode::from(2);
            }
        }
    }
    let prefix = format!("acl-bench-{}", std::process::id());
    // As the vhost benchmark's DUT: AVX-512 classify methods where the CPU has them.
    let simd = perf::acl_simd_bitwidth().map(|b| format!("--force-max-simd-bitwidth={b}"));
    let mut eal_args = vec![
        "-l",
        "0",
        "--no-huge",
        "-m",
        "1024",
        "--no-pci",
        "--no-shconf",
        "--file-prefix",
        &prefix,
        "--log-level",
        "warning",
    ];
    eal_args.extend(simd.as_deref());
    let _eal = match Eal::init(&eal_args) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("acl-bench: {e}");
            return ExitCode::FAILURE;
        }
    };
    let tsc = dataplane::dpdk::tsc_hz();
    let setup = Setup {
        realistic,
        flows,
        cache,
        bursts,
        rounds,
        set_classes: None,
    };
    let write_json = |path: &Option<String>,
                      results: &serde_json::Map<String, serde_json::Value>| {
        if let Some(path) = path {
            if let Err(e) = std::fs::write(path, serde_json::to_string_pretty(results).unwrap()) {
                eprintln!("acl-bench: {path}: {e}");
                return false;
            }
        }
        true
    };
    if members_only {
        return match members::run(
            member_updates,
            member_seconds,
            member_windows,
            &rules_config(10_000),
            member_rt,
        ) {
            Ok(m) => {
                if write_json(&json_out, &m) {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::FAILURE
                }
            }
            Err(e) => {
                eprintln!("acl-bench: members: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let cache_text = match cache {
        Some(0) => "verdict cache off".to_string(),
        Some(n) => format!("verdict cache {n} entries"),
        None => format!(
            "verdict cache {} entries (default)",
            pipeline::acl::verdict_cache::DEFAULT_ENTRIES
        ),
    };
    println!("acl node, 64-byte {}/IPv4, {flows} flows, burst {VECTOR_SIZE}, {cache_text}; TSC {:.2} GHz; median (min) of {rounds} rounds", if realistic { "UDP" } else { "TCP" }, tsc as f64 / 1e9);
    let mut results = serde_json::Map::new();
    for rules in [10usize, 100, 1000, 10_000] {
        if only.is_some_and(|o| o != rules) || (realistic && rules < 1000) {
            continue;
        }
        for &stateful in &modes {
            let key = format!(
                "acl_{}cycles_per_packet_{}{}",
                if realistic { "realistic_" } else { "" },
                if rules >= 1000 {
                    format!("{}k", rules / 1000)
                } else {
                    rules.to_string()
                },
                if stateful { "_stateful" } else { "" }
            );
            // Stateless from 1k rules up, with the cache at its default: the same without it
            // (key suffix `_uncached`), so every run shows what the cache adds.
            // Realistic: the same with every set expanded (`_expanded`: the path before set
            // classes), so each run shows what matching large sets by membership costs.
            // `_classes`: every set of 16 entries or more a set class (the smallest threshold).
            const ALL: Option<usize> = Some(1_000_000_000);
            const SMALL: Option<usize> = Some(16);
            let variants: &[(Option<usize>, Option<usize>, &str)] =
                if !stateful && rules >= 1000 && cache.is_none() && realistic {
                    &[
                        (None, None, ""),
                        (Some(0), None, "_uncached"),
                        (None, ALL, "_expanded"),
                        (Some(0), ALL, "_uncached_expanded"),
                        (None, SMALL, "_classes"),
                        (Some(0), SMALL, "_uncached_classes"),
                    ]
                } else if !stateful && rules >= 1000 && cache.is_none() {
                    &[(None, None, ""), (Some(0), None, "_uncached")]
                } else if realistic {
                    &[(None, None, ""), (None, ALL, "_expanded")]
                } else {
                    &[(None, None, "")]
                };
            for &(cache_override, set_classes, suffix) in variants {
                let expand_all = set_classes == ALL;
                let setup = Setup {
                    cache: cache_override.or(cache),
                    set_classes,
                    ..setup
                };
                let m = match run(rules, stateful, setup) {
                    Ok(m) => m,
                    Err(e) => {
                        eprintln!("acl-bench: {e}");
                        return ExitCode::FAILURE;
                    }
                };
                println!(
                    "{rules:>6} rules ({} flat{}) {:<9} {:7.1} ({:.1}) cycles/pkt  [{}; {:.1}% from the verdict cache{}]",
                    m.flat,
                    match (expand_all, set_classes) {
                        (true, _) => ", sets expanded".to_string(),
                        (false, Some(n)) => format!(", sets of {n}+ as classes"),
                        _ => String::new(),
                    },
                    if stateful { "stateful" } else { "stateless" },
                    m.median,
                    m.min,
                    m.desc,
                    100.0 * m.cache_share,
                    if setup.cache == Some(0) { ", off" } else { "" }
                );
                results.insert(format!("{key}{suffix}"), json!(m.median));
                if let Some(b) = suffix.strip_suffix("_classes") {
                    if let Some(exp) = results
                        .get(&format!("{key}{b}_expanded"))
                        .and_then(|v| v.as_f64())
                    {
                        let delta = m.median - exp;
                        println!(
                            "{:>31} classes (16+) minus expanded: {delta:+.1} cycles/pkt",
                            ""
                        );
                        results.insert(
                            format!(
                                "{}{b}",
                                key.replace("cycles_per_packet", "class_cycles_delta")
                            ),
                            json!(delta),
                        );
                    }
                }
                if let (Some(e), Some(base)) = (
                    suffix.strip_suffix("_expanded"),
                    suffix
                        .strip_suffix("_expanded")
                        .and_then(|b| results.get(&format!("{key}{b}")))
                        .and_then(|v| v.as_f64()),
                ) {
                    let delta = base - m.median;
                    println!(
                        "{:>31} membership minus expanded: {delta:+.1} cycles/pkt",
                        ""
                    );
                    results.insert(
                        format!(
                            "{}{e}",
                            key.replace("cycles_per_packet", "member_cycles_delta")
                        ),
                        json!(delta),
                    );
                }
                if suffix.is_empty() && !stateful {
                    results.insert(
                        key.replace("cycles_per_packet", "verdict_cache_share"),
                        json!(m.cache_share),
                    );
                }
            }
        }
    }
    if only.is_some() || realistic {
        if let Some(path) = json_out.filter(|_| realistic) {
            if let Err(e) = std::fs::write(&path, serde_json::to_string_pretty(&results).unwrap()) {
                eprintln!("acl-bench: {path}: {e}");
                return ExitCode::FAILURE;
            }
        }
        return ExitCode::SUCCESS;
    }
    // Rebuild of 10k rules through the control API (no running workers: no wait).
    let ports = [PortInfo::new(0, "p0", "in"), PortInfo::new(1, "p1", "out")];
    let spec = GraphSpec::from_toml("[[nodes]]\nname = \"rebuild\"\nkind = \"acl\"\nparams = { acl = { default = \"drop\" } }\n[[nodes]]\nname = \"fwd\"\nkind = \"forward\"\nparams = { mode = \"by-metadata\" }\n[[edges]]\nfrom = \"rebuild\"\nto = \"fwd\"\n").unwrap();
    let _g = Graph::<TestBuf>::build(&spec, &dataplane::nodes::registry(), &ports).unwrap();
    let hub = acl_hub("rebuild").unwrap();
    let cfg = rules_config(10_000);
    let mut secs = Vec::new();
    for _ in 0..3 {
        match hub.publish_config(&cfg, Duration::ZERO) {
            Ok(r) => secs.push(r.build_seconds),
            Err(e) => {
                eprintln!("acl-bench: rebuild: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    let rebuild = median(&mut secs);
    println!(
        "rebuild of 10k rules (expand + compile + rte_acl build): {rebuild:.3} s (median of 3)"
    );
    results.insert("acl_rebuild_seconds_10k".into(), json!(rebuild));
    match members::run(
        member_updates,
        member_seconds,
        member_windows,
        &rules_config(10_000),
        member_rt,
    ) {
        Ok(m) => results.extend(m),
        Err(e) => {
            eprintln!("acl-bench: members: {e}");
            return ExitCode::FAILURE;
        }
    }
    if !write_json(&json_out, &results) {
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
