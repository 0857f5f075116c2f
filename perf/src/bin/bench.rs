//! `bench`: testpmd-style benchmarks of the dataplane against dpdk-testpmd and OVS-DPDK on
//! the same vhost-user topology, cores and generator, run interleaved (A B A B ...) so the
//! machine's swings hit every DUT alike. Prints a table of medians (min-max) per frame size
//! and flow count, ratios from per-round pairs, an RFC 2544-style zero-loss search and
//! latency; writes everything (every sample, every counter) as JSON.
//!
//! Cycles per packet from the same runs: testpmd io's own (`--record-core-cycles`), headline
//! `io_cycles_per_packet`; the dataplane's worker busy cycles and each pipeline node's, the
//! full pipeline's sum headline `full_node_cycles_per_packet` (target <= 60); and beside each
//! ratio against testpmd io the ceiling its node cycles imply on this I/O,
//! `io / (io + node cycles)` (`<ratio>_ceiling`): those ratios mostly measure the vhost-user
//! I/O, so they carry no target.
//!
//! ```text
//! bench --rounds 5 --seconds 8 --sizes 64,1518 --json perf/results/standard.json
//! bench --duts dataplane-xconnect,testpmd-io --zero-loss dataplane-xconnect,testpmd-io
//! ```
//!
//! DUTs: dataplane-xconnect, dataplane-pipeline (parse -> forward), dataplane-acl-1k
//! (parse -> acl -> forward, 1,000 flat stateless rules, traffic allowed by the lowest
//! rules), dataplane-full (parse -> acl -> lb -> forward: the same rules, then a UDP VIP over
//! 4 backends with a connection table, which the ACL consults first: packets of tracked
//! connections skip the rules), dataplane-full-separate (the same without that: the ACL
//! classifies every packet, the LB looks each up itself), dataplane-full-ctl (dataplane-full
//! with a client polling `show runtime` and `show conntrack` on its control socket ten times
//! a second: `ctl_poll_forwarding_ratio`), testpmd-io, testpmd-macswap, null-sink (testpmd
//! rxonly), ovs-forward, ovs-acl-1k, ovs-conntrack, ovs-ct-lb (1,000 ACL-like flows, then a
//! conntrack firewall and a `select` group of `ct(commit,nat(dst=backend))` buckets).
//! The generator is dpdk-testpmd flowgen, or dpgen for IMIX (flowgen has no IMIX) and for
//! the stateful traffic profiles.
//!
//! A DUT may name its traffic profile as `DUT@PROFILE`; each DUT has a default:
//! - `plain` (default): both ports send `--flows` flows to each other (flowgen or dpgen);
//! - `mirror` (ovs-conntrack's): dpgen, port 1 sends the replies of port 0's flows, which
//!   flowgen never does, so conntrack sees established connections;
//! - `vip` (dataplane-full's and ovs-ct-lb's): dpgen, port 0 sends `--vip-flows` UDP
//!   5-tuples towards the VIP (`--deny-percent` of them to a port the ACL drops), port 1
//!   plays the backends and answers every packet it receives, so a load balancer tracks
//!   `--vip-flows` connections and un-NATs their replies. `testpmd-io@vip` gives the
//!   generator's capacity and the denominator of `full_vs_testpmd` under this traffic.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use perf::ovs::{Ovs, OvsPipeline};
use perf::procs::{
    ensure_hugepages, parse_testpmd_cycles_per_packet, parse_testpmd_totals, wait_for_paths, Proc,
};
use perf::topology::{testpmd_rx_pps_samples, DpgenOpts, Lookups, Traffic, VhostTopology};
use serde_json::{json, Value};

#[derive(Parser, Debug, Clone)]
#[command(about = "Interleaved vhost-user benchmarks: dataplane vs dpdk-testpmd vs OVS-DPDK")]
struct Args {
    /// Interleaved rounds (each runs every DUT once per size and flow count).
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Seconds of traffic per run (after the DUT's links are up).
    #[arg(long, default_value_t = 8.0)]
    seconds: f64,
    /// Seconds at the start of each run left out of the rate (warm-up).
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    /// DUTs, comma-separated (see the program's documentation).
    #[arg(
        long,
        default_value = "dataplane-xconnect,dataplane-pipeline,testpmd-io,ovs-forward"
    )]
    duts: String,
    /// Frame sizes (bytes without FCS) and/or `imix`, comma-separated.
    #[arg(long, default_value = "64")]
    sizes: String,
    /// DUTs that run at every size (comma-separated; empty: all DUTs); the others run at
    /// the first size only, so a size sweep stays short.
    #[arg(long, default_value = "")]
    sweep_duts: String,
    /// Flow counts per port, comma-separated.
    #[arg(long, default_value = "1024")]
    flows: String,
    /// Always use dpgen (full speed) as generator instead of testpmd flowgen.
    #[arg(long)]
    dpgen: bool,
    /// DUTs to run the zero-loss search and latency measurement on (64-byte, first flow count).
    #[arg(long, default_value = "")]
    zero_loss: String,
    /// Seconds per zero-loss trial.
    #[arg(long, default_value_t = 3.0)]
    zl_seconds: f64,
    /// Binary-search steps per zero-loss search.
    #[arg(long, default_value_t = 6)]
    zl_steps: usize,
    /// Upper bound of the zero-loss search, Mpps per port.
    #[arg(long, default_value_t = 6.0)]
    zl_max_mpps: f64,
    /// Seconds of the latency run (at 50% of the zero-loss rate).
    #[arg(long, default_value_t = 5.0)]
    latency_seconds: f64,
    /// Name of this set of results (quick, standard, ...), recorded in the JSON.
    #[arg(long, default_value = "adhoc")]
    set: String,
    /// Write results (every sample, medians, ratios, headline numbers at the top level) here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Flat ACL rules of dataplane-acl-1k and dataplane-full (and ACL-like flows of ovs-ct-lb).
    #[arg(long, default_value_t = 1000)]
    acl_rules: usize,
    /// Flows (5-tuples) towards the VIP in the `vip` traffic profile.
    #[arg(long, default_value_t = 100_000)]
    vip_flows: u32,
    /// Percentage of the `vip` profile's flows sent to a port the ACL denies.
    #[arg(long, default_value_t = 0)]
    deny_percent: u8,
}

/// What the generator sends for a DUT (see the program's documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Profile {
    Plain,
    Mirror,
    Vip,
}

impl Profile {
    fn name(self) -> &'static str {
        match self {
            Profile::Plain => "plain",
            Profile::Mirror => "mirror",
            Profile::Vip => "vip",
        }
    }
    fn default_for(dut: &str) -> Profile {
        match dut {
            "ovs-conntrack" => Profile::Mirror,
            "dataplane-full" | "dataplane-full-ctl" | "dataplane-full-separate" | "ovs-ct-lb" => {
                Profile::Vip
            }
            _ => Profile::Plain,
        }
    }
}

/// A DUT and the traffic it gets; `label` is `name`, or `name@profile` for a non-default one.
#[derive(Debug, Clone)]
struct DutSpec {
    label: String,
    name: String,
    profile: Profile,
}

fn parse_dut(s: &str) -> Result<DutSpec, String> {
    let (name, profile) = match s.split_once('@') {
        None => (s, Profile::default_for(s)),
        Some((n, p)) => (
            n,
            match p {
                "plain" => Profile::Plain,
                "mirror" => Profile::Mirror,
                "vip" => Profile::Vip,
                _ => {
                    return Err(format!(
                        "{s}: unknown traffic profile {p:?} (plain, mirror, vip)"
                    ))
                }
            },
        ),
    };
    let label = if profile == Profile::default_for(name) {
        name.to_string()
    } else {
        format!("{name}@{}", profile.name())
    };
    Ok(DutSpec {
        label,
        name: name.to_string(),
        profile,
    })
}

/// One run's outcome.
#[derive(Debug, Clone)]
struct Sample {
    /// Mpps the generator received per port (= forwarded by the DUT), after warm-up.
    rx_mpps: [f64; 2],
    /// Mpps the generator sent per port, after warm-up.
    tx_mpps: [f64; 2],
    /// "flowgen" or "dpgen".
    generator: &'static str,
    /// Generator totals over the whole run: sent and received per port.
    gen_tx: [u64; 2],
    gen_rx: [u64; 2],
    /// The DUT's in/out/drops accounting.
    accounting: Value,
    /// The DUT's own report (dataplane stats JSON, testpmd totals, OVS port stats).
    dut: Value,
    /// Packets of flows meant to be denied that the generator sent (not a loss if dropped).
    gen_deny: u64,
    /// dpgen's per-port counts of watched addresses in what it received.
    watch: Value,
}

impl Sample {
    fn fwd(&self) -> f64 {
        self.rx_mpps[0] + self.rx_mpps[1]
    }
    fn sent(&self) -> f64 {
        self.tx_mpps[0] + self.tx_mpps[1]
    }
    /// Sent minus received minus the deny flows' packets.
    fn lost(&self) -> u64 {
        (self.gen_tx[0] + self.gen_tx[1])
            .saturating_sub(self.gen_rx[0] + self.gen_rx[1])
            .saturating_sub(self.gen_deny)
    }
    fn json(&self) -> Value {
        json!({
            "forwarded_mpps": self.rx_mpps, "sent_mpps": self.tx_mpps, "generator": self.generator,
            "generator_sent": self.gen_tx, "generator_received": self.gen_rx,
            "generator_sent_deny_flows": self.gen_deny,
            "generator_lost": self.lost(),
            "generator_watch": self.watch,
            "accounting": self.accounting, "dut": self.dut,
        })
    }
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() {
        return f64::NAN;
    }
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn min_max(v: &[f64]) -> (f64, f64) {
    (
        v.iter().cloned().fold(f64::INFINITY, f64::min),
        v.iter().cloned().fold(0.0, f64::max),
    )
}

/// The ratio of the numerator DUT's fastest round to the denominator's (`None` without a
/// round or with a denominator that forwarded nothing). A slow phase of the shared machine
/// only ever lowers a rate, so a DUT's fastest round is the nearest to its capacity: a
/// cross-check of the full-speed median, which may rest on a single round.
fn fastest_rounds_ratio(x: &[f64], y: &[f64]) -> Option<f64> {
    let (bx, by) = (min_max(x).1, min_max(y).1);
    (!x.is_empty() && by > 0.0).then(|| bx / by)
}

/// testpmd's forwarding cycles per received packet in a run (`--record-core-cycles`: the
/// cycles of bursts that received packets), `None` for other DUTs.
fn testpmd_cycles(s: &Sample) -> Option<f64> {
    s.dut["cycles_per_packet"].as_f64()
}

/// The dataplane workers' busy cycles (polls that received packets) per received packet in
/// a run, `None` for other DUTs or without packets.
fn worker_cycles(s: &Sample) -> Option<f64> {
    let w = s.dut["workers"].as_array()?;
    let busy: u64 = w.iter().filter_map(|x| x["busy_cycles"].as_u64()).sum();
    let rx: u64 = w
        .iter()
        .flat_map(|x| x["ports"].as_array().into_iter().flatten())
        .filter_map(|p| p["rx"].as_u64())
        .sum();
    (rx > 0).then(|| busy as f64 / rx as f64)
}

/// Each pipeline node's cycles per packet it processed in a dataplane run (all workers
/// summed), in graph order; nodes that saw no packet are left out. Empty for a
/// cross-connect or another DUT.
fn node_cycles(s: &Sample) -> Vec<(String, f64)> {
    let mut sums: Vec<(String, u64, u64)> = Vec::new();
    for w in s.dut["pipeline"].as_array().into_iter().flatten() {
        for n in w["nodes"].as_array().into_iter().flatten() {
            let name = n["name"].as_str().unwrap_or("?");
            let (c, p) = (
                n["cycles"].as_u64().unwrap_or(0),
                n["packets"].as_u64().unwrap_or(0),
            );
            match sums.iter_mut().find(|x| x.0 == name) {
                Some(x) => {
                    x.1 += c;
                    x.2 += p;
                }
                None => sums.push((name.to_string(), c, p)),
            }
        }
    }
    sums.into_iter()
        .filter(|x| x.2 > 0)
        .map(|(n, c, p)| (n, c as f64 / p as f64))
        .collect()
}

/// Medians over a DUT's rounds of its cycles per packet: testpmd's own, the dataplane
/// worker's busy cycles, the sum of its pipeline nodes' (the median of per-round sums) and
/// each node's.
#[derive(Debug, Clone, Default)]
struct DutCycles {
    testpmd: Option<f64>,
    worker: Option<f64>,
    nodes: Option<f64>,
    by_node: Vec<(String, f64)>,
}

impl DutCycles {
    fn of(ss: &[Sample]) -> DutCycles {
        let med = |v: Vec<f64>| (!v.is_empty()).then(|| median(&v));
        let per_round: Vec<Vec<(String, f64)>> = ss.iter().map(node_cycles).collect();
        let names: Vec<String> =
            per_round
                .iter()
                .flatten()
                .fold(Vec::new(), |mut v: Vec<String>, (n, _)| {
                    if !v.contains(n) {
                        v.push(n.clone());
                    }
                    v
                });
        let by_node = names
            .into_iter()
            .filter_map(|n| {
                let v: Vec<f64> = per_round
                    .iter()
                    .filter_map(|r| r.iter().find(|x| x.0 == n).map(|x| x.1))
                    .collect();
                med(v).map(|m| (n, m))
            })
            .collect();
        DutCycles {
            testpmd: med(ss.iter().filter_map(testpmd_cycles).collect()),
            worker: med(ss.iter().filter_map(worker_cycles).collect()),
            nodes: med(per_round
                .iter()
                .filter(|r| !r.is_empty())
                .map(|r| r.iter().map(|x| x.1).sum())
                .collect()),
            by_node,
        }
    }

    fn json(&self) -> Value {
        json!({
            "testpmd_cycles_per_packet": self.testpmd,
            "worker_cycles_per_packet": self.worker,
            "node_cycles_per_packet": self.nodes,
            "node_cycles_per_packet_by_node": self.by_node.iter().cloned().collect::<BTreeMap<_, _>>(),
        })
    }
}

/// The I/O cost of a testpmd DUT, and where it comes from: its own `--record-core-cycles`
/// figure, else (a testpmd without it) the dataplane cross-connect worker's busy cycles.
fn io_cycles(cyc: &BTreeMap<&str, DutCycles>, testpmd_dut: &str) -> Option<(f64, &'static str)> {
    cyc.get(testpmd_dut)
        .and_then(|c| c.testpmd)
        .map(|v| (v, "testpmd io --record-core-cycles"))
        .or_else(|| {
            cyc.get("dataplane-xconnect")
                .and_then(|c| c.worker)
                .map(|v| (v, "dataplane-xconnect worker busy cycles"))
        })
}

/// The ratio against testpmd io that a DUT spending `nodes` cycles per packet on top of
/// testpmd's `io` can reach when both are CPU-bound: `io / (io + nodes)`.
fn ceiling(io: f64, nodes: f64) -> f64 {
    io / (io + nodes)
}

/// The target of `full_node_cycles_per_packet`: the parse, acl, lb and forward nodes of
/// `dataplane-full` together, cycles per packet.
const FULL_NODE_CYCLES_TARGET: f64 = 60.0;

/// The headline cycle figures of the first size and flow count, printed and put in `doc`:
/// `io_cycles_per_packet` (and `_vip`), `full_node_cycles_per_packet` (and by node) and,
/// in `cycles_detail`, each with its source, the rounds it is the median of, its target and
/// which side limited the DUT's rate in those rounds.
fn cycles_headline(
    doc: &mut serde_json::Map<String, Value>,
    cyc: &BTreeMap<&str, DutCycles>,
    limits: &BTreeMap<&str, &str>,
) {
    let limit = |d: &str| format!("{d}: {}", limits.get(d).copied().unwrap_or("?"));
    let mut detail = serde_json::Map::new();
    for (key, dut) in [
        ("io_cycles_per_packet", "testpmd-io"),
        ("io_cycles_per_packet_vip", "testpmd-io@vip"),
    ] {
        if let Some((io, src)) = io_cycles(cyc, dut) {
            let from = if src.starts_with("testpmd") {
                dut
            } else {
                "dataplane-xconnect"
            };
            println!(
                "{key} = {io:.1} ({src}, median of the rounds; limit: {})",
                limit(from)
            );
            doc.insert(key.into(), json!(io));
            detail.insert(
                key.into(),
                json!({"value": io, "source": src, "dut": from, "target": null, "limit": limit(from)}),
            );
        }
    }
    if let Some(w) = cyc.get("dataplane-xconnect").and_then(|c| c.worker) {
        println!(
            "xconnect_worker_cycles_per_packet = {w:.1} (dataplane-xconnect worker busy cycles; limit: {})",
            limit("dataplane-xconnect")
        );
        doc.insert("xconnect_worker_cycles_per_packet".into(), json!(w));
        detail.insert(
            "xconnect_worker_cycles_per_packet".into(),
            json!({"value": w, "source": "dataplane-xconnect worker busy cycles", "dut": "dataplane-xconnect", "target": null, "limit": limit("dataplane-xconnect")}),
        );
    }
    for (key, dut, target) in [
        (
            "full_node_cycles_per_packet",
            "dataplane-full",
            Some(FULL_NODE_CYCLES_TARGET),
        ),
        ("acl_node_cycles_per_packet", "dataplane-acl-1k", None),
        (
            "pipeline_node_cycles_per_packet",
            "dataplane-pipeline",
            None,
        ),
    ] {
        let Some(c) = cyc.get(dut) else { continue };
        let Some(n) = c.nodes else { continue };
        let nodes = c
            .by_node
            .iter()
            .map(|(k, v)| format!("{k} {v:.1}"))
            .collect::<Vec<_>>()
            .join(", ");
        println!(
            "{key} = {n:.1} ({dut}: {nodes}; median of the rounds){}; limit: {}",
            target.map_or(String::new(), |t| format!(
                ", target <= {t}, {}",
                if n <= t { "met" } else { "not met" }
            )),
            limit(dut)
        );
        doc.insert(key.into(), json!(n));
        doc.insert(
            format!("{key}_by_node"),
            json!(c.by_node.iter().cloned().collect::<BTreeMap<_, _>>()),
        );
        detail.insert(
            key.into(),
            json!({"value": n, "source": format!("{dut}: pipeline nodes' own cycles per packet, summed (median of per-round sums)"),
                   "by_node": c.by_node.iter().cloned().collect::<BTreeMap<_, _>>(), "dut": dut,
                   "target": target, "target_op": "<=", "limit": limit(dut)}),
        );
    }
    doc.insert("cycles_detail".into(), Value::Object(detail));
}

fn tx_pps_samples(out: &str) -> Vec<Vec<u64>> {
    // Same layout as Rx-pps; reuse the parser on the Tx lines.
    testpmd_rx_pps_samples(
        &out.replace("Rx-pps:", "Rx-ignored:")
            .replace("Tx-pps:", "Rx-pps:"),
    )
}

/// dpgen's per-period lines `[  1.0s] port P NAME tx X Mpps  rx Y Mpps` as (tx, rx) per port.
fn dpgen_rate_samples(out: &str) -> Vec<Vec<(f64, f64)>> {
    let mut per: Vec<Vec<(f64, f64)>> = Vec::new();
    for line in out.lines().filter(|l| l.starts_with('[')) {
        let t: Vec<&str> = line.split_whitespace().collect();
        let Some(i) = t.iter().position(|w| *w == "port") else {
            continue;
        };
        let (Some(p), Some(txi), Some(rxi)) = (
            t.get(i + 1).and_then(|s| s.parse::<usize>().ok()),
            t.iter().position(|w| *w == "tx"),
            t.iter().position(|w| *w == "rx"),
        ) else {
            continue;
        };
        let (Some(tx), Some(rx)) = (
            t.get(txi + 1).and_then(|s| s.parse().ok()),
            t.get(rxi + 1).and_then(|s| s.parse().ok()),
        ) else {
            continue;
        };
        if per.len() <= p {
            per.resize(p + 1, Vec::new());
        }
        per[p].push((tx, rx));
    }
    per
}

fn mean(v: &[f64]) -> f64 {
    if v.is_empty() {
        0.0
    } else {
        v.iter().sum::<f64>() / v.len() as f64
    }
}

fn ovs_pipeline(dut: &str) -> Option<OvsPipeline> {
    match dut {
        "ovs-forward" => Some(OvsPipeline::Forward),
        "ovs-acl-1k" => Some(OvsPipeline::Acl(1000)),
        "ovs-conntrack" => Some(OvsPipeline::Conntrack),
        "ovs-ct-lb" => Some(OvsPipeline::CtLb { acl: 1000 }),
        _ => None,
    }
}

/// DUTs whose rules drop the `vip` profile's deny flows.
fn filters_deny_flows(dut: &str) -> bool {
    matches!(
        dut,
        "dataplane-acl-1k"
            | "dataplane-full"
            | "dataplane-full-ctl"
            | "dataplane-full-separate"
            | "ovs-ct-lb"
    )
}

/// The DUT, however it runs.
enum Dut {
    Proc(Proc),
    Ovs(Ovs),
}

fn start_dut(dut: &str, t: &VhostTopology, stats: &PathBuf, a: &Args) -> Result<Dut, String> {
    // The ACL rules file of the ACL DUTs, generated into the run's scratch folder.
    let rules = || -> Result<PathBuf, String> {
        let p = t.scratch.path("acl-rules.toml");
        std::fs::write(&p, perf::topology::acl_rules_toml(a.acl_rules))
            .map_err(|e| format!("{}: {e}", p.display()))?;
        Ok(p)
    };
    let ct_capacity = (a.vip_flows as usize * 2).max(65_536);
    Ok(Dut::Proc(match dut {
        "dataplane-acl-1k" => t.start_dataplane(
            &t.dataplane_config("", &perf::topology::acl_forward_pipeline(&rules()?)),
            stats,
            0.0,
        ),
        "dataplane-full" | "dataplane-full-ctl" | "dataplane-full-separate" => {
            let lookups = if dut != "dataplane-full-separate" {
                Lookups::Shared
            } else {
                Lookups::Separate
            };
            t.start_dataplane(
                &t.dataplane_config(
                    "",
                    &perf::topology::full_pipeline(&rules()?, ct_capacity, lookups),
                ),
                stats,
                0.0,
            )
        }
        "dataplane-xconnect" => t.start_dataplane(&t.dataplane_config("", ""), stats, 0.0),
        "dataplane-pipeline" => t.start_dataplane(
            &t.dataplane_config("", perf::topology::PARSE_FORWARD),
            stats,
            0.0,
        ),
        "testpmd-io" => t.start_testpmd_dut("io"),
        "testpmd-macswap" => t.start_testpmd_dut("macswap"),
        "null-sink" => t.start_testpmd_dut("rxonly"),
        other => match ovs_pipeline(other) {
            Some(OvsPipeline::CtLb { .. }) => {
                return Ovs::start(
                    &t.scratch,
                    &t.sock0,
                    &t.sock1,
                    OvsPipeline::CtLb { acl: a.acl_rules },
                )
                .map(Dut::Ovs)
            }
            Some(p) => return Ovs::start(&t.scratch, &t.sock0, &t.sock1, p).map(Dut::Ovs),
            None => return Err(format!("unknown DUT {other}")),
        },
    }))
}

/// Stops the DUT and returns (its report, its in/out/drops accounting).
fn stop_dut(dut_name: &str, d: Dut, stats: &PathBuf) -> Result<(Value, Value), String> {
    match d {
        Dut::Ovs(o) => {
            let r = o.report();
            o.stop();
            let ports = r["ports"].as_array().cloned().unwrap_or_default();
            let sum = |k: &str| {
                ports
                    .iter()
                    .map(|p| p[k].as_u64().unwrap_or(0))
                    .sum::<u64>()
            };
            let dp = r["datapath_drops"].as_u64().unwrap_or(0);
            let of = r["openflow_drops"].as_u64().unwrap_or(0);
            let (i, out, drops) = (
                sum("rx"),
                sum("tx"),
                sum("tx_dropped") + sum("rx_dropped") + dp.max(of),
            );
            let unaccounted = i as i64 - out as i64 - drops as i64;
            let mut acc = json!({"in": i, "out": out, "counted_drops": drops, "datapath_drops": dp, "openflow_drops": of,
                "drops_by_reason": {"port/tx-dropped": sum("tx_dropped"), "port/rx-dropped": sum("rx_dropped"), "openflow-drop-rules": r["openflow_drops_by_rule"].clone()},
                "unaccounted": unaccounted,
                "note": "OVS interface counters (ofctl dump-ports) + packets dropped by pipeline rules: the larger of the OpenFlow drop rules' packet counts (after revalidator/wait; these include slow-path drops) and the datapath drop coverage counters"});
            let commit = r["ct_commit_rule_packets"].as_u64().unwrap_or(0);
            if unaccounted != 0 && unaccounted == commit as i64 {
                // Measured, not assumed: the shortfall is exactly the committing rule's count.
                acc["unaccounted_equals"] = json!(format!(
                    "the packets of the ct(commit) rules ({commit}, first packets of new connections): OVS counted none of them on a port, sent or dropped"
                ));
            }
            Ok((r, acc))
        }
        Dut::Proc(mut p) => {
            p.interrupt();
            if p.wait(Duration::from_secs(30)).is_none() {
                return Err(format!("{dut_name} did not stop:\n{}", p.output()));
            }
            if dut_name.starts_with("dataplane") {
                let r: Value = serde_json::from_str(
                    &std::fs::read_to_string(stats)
                        .map_err(|e| format!("{dut_name} stats: {e}"))?,
                )
                .map_err(|e| e.to_string())?;
                let ports = r["ports"].as_array().cloned().unwrap_or_default();
                let sum = |k: &str| {
                    ports
                        .iter()
                        .map(|p| p[k].as_u64().unwrap_or(0))
                        .sum::<u64>()
                };
                let pipe: u64 = r["pipeline"]
                    .as_array()
                    .map(|w| w.iter().map(|x| x["dropped"].as_u64().unwrap_or(0)).sum())
                    .unwrap_or(0);
                let leaked: u64 = r["mempools"]
                    .as_array()
                    .map(|m| {
                        m.iter()
                            .map(|x| x["in_use_after_stop"].as_u64().unwrap_or(0))
                            .sum()
                    })
                    .unwrap_or(0);
                let (i, out, drops) = (
                    sum("rx"),
                    sum("tx"),
                    sum("tx_dropped") + sum("rx_no_route") + pipe,
                );
                // Pipeline drops by node and reason (ACL denials, LB drops, ...), all workers.
                let mut by_reason: BTreeMap<String, u64> = BTreeMap::new();
                for w in r["pipeline"].as_array().into_iter().flatten() {
                    for n in w["nodes"].as_array().into_iter().flatten() {
                        for d in n["drops"].as_array().into_iter().flatten() {
                            let c = d["count"].as_u64().unwrap_or(0);
                            if c != 0 {
                                *by_reason
                                    .entry(format!(
                                        "{}/{}",
                                        n["name"].as_str().unwrap_or("?"),
                                        d["name"].as_str().unwrap_or("?")
                                    ))
                                    .or_default() += c;
                            }
                        }
                    }
                }
                by_reason.insert("port/tx-dropped".into(), sum("tx_dropped"));
                by_reason.insert("port/rx-no-route".into(), sum("rx_no_route"));
                by_reason.retain(|_, v| *v != 0);
                let reasons_sum: u64 = by_reason.values().sum();
                let acc = json!({"in": i, "out": out, "counted_drops": drops, "unaccounted": i as i64 - out as i64 - drops as i64, "leaked_mbufs": leaked,
                    "drops_by_reason": by_reason, "drops_by_reason_match_total": reasons_sum == drops});
                Ok((r, acc))
            } else {
                let tot = parse_testpmd_totals(&p.output());
                let (i, out): (u64, u64) = (
                    tot.iter().map(|t| t.rx).sum(),
                    tot.iter().map(|t| t.tx).sum(),
                );
                let drops: u64 = if dut_name == "null-sink" {
                    i
                } else {
                    tot.iter().map(|t| t.tx_dropped).sum()
                };
                let r = json!(tot.iter().map(|t| json!({"rx": t.rx, "rx_dropped": t.rx_dropped, "tx": t.tx, "tx_dropped": t.tx_dropped})).collect::<Vec<_>>());
                let mut acc = json!({"in": i, "out": out, "counted_drops": drops, "unaccounted": i as i64 - out as i64 - drops as i64});
                if dut_name == "null-sink" {
                    acc["note"] = json!("rxonly: every packet received is consumed by design");
                }
                // Its forwarding lcore's busy cycles per received packet (--record-core-cycles).
                let cycles = parse_testpmd_cycles_per_packet(&p.output());
                Ok((
                    json!({"testpmd_totals": r, "cycles_per_packet": cycles}),
                    acc,
                ))
            }
        }
    }
}

fn run_once(spec: &DutSpec, traffic: &Traffic, a: &Args) -> Result<Sample, String> {
    let dut = spec.name.as_str();
    let ovs = ovs_pipeline(dut).is_some();
    let use_dpgen = a.dpgen
        || traffic.size.contains(',')
        || traffic.size.eq_ignore_ascii_case("imix")
        || spec.profile != Profile::Plain;
    let t = if ovs {
        VhostTopology::new_server(&format!("bench-{dut}"))
    } else {
        VhostTopology::new(&format!("bench-{dut}"))
    };
    let stats = t.scratch.path("dut.json");
    let gen_json = t.scratch.path("gen.json");
    let vip = spec.profile == Profile::Vip;
    let opts = DpgenOpts {
        traffic: traffic.clone(),
        mirror: spec.profile == Profile::Mirror,
        latency: false,
        stats_period: 1.0,
        linger: 3.0,
        linger_until: Some(gen_json.with_extension("read")),
        specs: if vip {
            perf::topology::vip_specs(a.vip_flows, a.deny_percent)
        } else {
            Vec::new()
        },
        // The NAT check: which addresses come back (VIP and backends).
        watch: if vip {
            std::iter::once(perf::topology::VIP)
                .chain(perf::topology::BACKENDS)
                .collect()
        } else {
            Vec::new()
        },
        ..DpgenOpts::default()
    };
    // dpgen waits for the links, then sends for warm-up + measured seconds.
    let dpgen_secs = a.warmup + a.seconds;
    let start_gen = |t: &VhostTopology| {
        if use_dpgen {
            t.start_dpgen_with(0.0, dpgen_secs, &gen_json, &opts, "dpgen.log")
        } else {
            t.start_flowgen_with(traffic)
        }
    };
    let (d, mut gen) = if ovs {
        // The generator owns the sockets; OVS connects as vhost-user client.
        let gen = start_gen(&t);
        // virtio-user in server mode waits for its client at init, port by port: only the
        // first socket exists before OVS connects (OVS client ports retry until it does).
        if !wait_for_paths(&[&t.sock0], Duration::from_secs(30)) {
            return Err(format!(
                "generator sockets never appeared:\n{}",
                gen.output()
            ));
        }
        let d = start_dut(dut, &t, &stats, a)?;
        if let Dut::Ovs(o) = &d {
            o.wait_links_up(Duration::from_secs(60))?;
        }
        (d, gen)
    } else {
        let d = start_dut(dut, &t, &stats, a)?;
        if !wait_for_paths(&[&t.sock0, &t.sock1], Duration::from_secs(30)) {
            let out = if let Dut::Proc(p) = &d {
                p.output()
            } else {
                String::new()
            };
            return Err(format!("{dut}: sockets never appeared:\n{out}"));
        }
        (d, start_gen(&t))
    };
    // dataplane-full-ctl: a monitoring client polls the control socket meanwhile.
    let poller = (dut == "dataplane-full-ctl").then(|| {
        let words = |s: &str| s.split_whitespace().map(str::to_string).collect::<Vec<_>>();
        perf::ctl::CtlPoller::start(
            dataplane::control::default_socket_path(&t.dut_prefix()),
            Duration::from_millis(100),
            vec![words("show runtime"), words("show conntrack --limit 100")],
        )
    });
    let polls;
    // Rate samples printed before the links came up (OVS started after flowgen) are skipped.
    let skip = if use_dpgen {
        0
    } else {
        testpmd_rx_pps_samples(&gen.output())
            .first()
            .map_or(0, Vec::len)
    };
    let w = a.warmup.round() as usize;
    let (rx_mpps, tx_mpps, gen_tx, gen_rx);
    let (mut gen_deny, mut watch) = (0u64, Value::Null);
    let (dut_report, accounting);
    if use_dpgen {
        // dpgen writes its JSON, then lingers with the ports connected: read the DUT then.
        let deadline = std::time::Instant::now() + Duration::from_secs_f64(dpgen_secs + 60.0);
        while !gen_json.exists() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        std::thread::sleep(Duration::from_millis(200));
        polls = poller.map(perf::ctl::CtlPoller::stop);
        (dut_report, accounting) = stop_dut(dut, d, &stats)?;
        // The DUT's counters are read: dpgen may close its ports now.
        let _ = std::fs::write(gen_json.with_extension("read"), b"");
        if gen.wait(Duration::from_secs_f64(dpgen_secs + 60.0)) != Some(0) {
            return Err(format!("dpgen failed:\n{}", gen.output()));
        }
        let s = dpgen_rate_samples(&gen.output());
        if s.len() < 2 || s[0].len() <= w {
            return Err(format!("no rate samples from dpgen:\n{}", gen.output()));
        }
        let per = |p: usize, rx: bool| {
            mean(
                &s[p]
                    .iter()
                    .skip(w)
                    .map(|x| if rx { x.1 } else { x.0 })
                    .collect::<Vec<_>>(),
            )
        };
        rx_mpps = [per(0, true), per(1, true)];
        tx_mpps = [per(0, false), per(1, false)];
        let g: Value = serde_json::from_str(
            &std::fs::read_to_string(&gen_json).map_err(|e| format!("dpgen json: {e}"))?,
        )
        .map_err(|e| e.to_string())?;
        let n = |p: usize, k: &str| g["ports"][p][k].as_u64().unwrap_or(0);
        gen_tx = [n(0, "tx"), n(1, "tx")];
        gen_rx = [n(0, "rx"), n(1, "rx")];
        // Deny flows are an expected drop only for DUTs with the ACL (io forwards them).
        if filters_deny_flows(dut) {
            gen_deny = n(0, "tx_deny") + n(1, "tx_deny");
        }
        if vip {
            watch = json!([g["ports"][0]["watch"], g["ports"][1]["watch"]]);
        }
    } else {
        std::thread::sleep(Duration::from_secs_f64(a.warmup + a.seconds));
        polls = poller.map(perf::ctl::CtlPoller::stop);
        // OVS forgets a vhost port's counters when its peer goes away, and flowgen cannot
        // linger: read OVS while traffic still flows (in-flight packets show as unaccounted).
        let mut early = None;
        let mut d = Some(d);
        if ovs {
            let (r, mut acc) = stop_dut(dut, d.take().ok_or("no DUT")?, &stats)?;
            acc["note"] = json!("read while flowgen was still sending: in-flight packets count as unaccounted; use --dpgen for exact OVS accounting");
            early = Some((r, acc));
        }
        gen.interrupt();
        if gen.wait(Duration::from_secs(30)) != Some(0) {
            return Err(format!("generator failed:\n{}", gen.output()));
        }
        let out = gen.output();
        let (rx, tx) = (testpmd_rx_pps_samples(&out), tx_pps_samples(&out));
        if rx.len() < 2 || tx.len() < 2 || rx[0].len() <= skip + w {
            return Err(format!("no rate samples from the generator:\n{out}"));
        }
        let per = |v: &Vec<u64>| {
            mean(
                &v.iter()
                    .skip(skip + w)
                    .map(|&x| x as f64 / 1e6)
                    .collect::<Vec<_>>(),
            )
        };
        rx_mpps = [per(&rx[0]), per(&rx[1])];
        tx_mpps = [per(&tx[0]), per(&tx[1])];
        let tot = parse_testpmd_totals(&out);
        gen_tx = [
            tot.first().map_or(0, |x| x.tx),
            tot.get(1).map_or(0, |x| x.tx),
        ];
        gen_rx = [
            tot.first().map_or(0, |x| x.rx),
            tot.get(1).map_or(0, |x| x.rx),
        ];
        std::thread::sleep(Duration::from_millis(300));
        (dut_report, accounting) = match early {
            Some(x) => x,
            None => stop_dut(dut, d.take().ok_or("no DUT")?, &stats)?,
        };
    }
    let mut accounting = accounting;
    if let Some(p) = polls {
        // A poller whose requests went unanswered measured nothing.
        if p.answered == 0 || p.failed != 0 {
            return Err(format!(
                "{dut}: the control socket answered {} requests and failed {}",
                p.answered, p.failed
            ));
        }
        accounting["ctl_requests_answered"] = json!(p.answered);
    }
    Ok(Sample {
        rx_mpps,
        tx_mpps,
        generator: if use_dpgen {
            "dpgen"
        } else {
            "testpmd-flowgen"
        },
        gen_tx,
        gen_rx,
        accounting,
        dut: dut_report,
        gen_deny,
        watch,
    })
}

/// RFC 2544-style binary search with dpgen for the highest rate per port the DUT forwards
/// with zero loss, then latency at 50% of it. The DUT runs for the whole search.
fn zero_loss(dut: &str, a: &Args) -> Result<Value, String> {
    if ovs_pipeline(dut).is_some() {
        return Err("zero-loss search runs on dataplane and testpmd DUTs only".into());
    }
    let t = VhostTopology::new(&format!("zl-{dut}"));
    let stats = t.scratch.path("dut.json");
    let d = start_dut(dut, &t, &stats, a)?;
    if !wait_for_paths(&[&t.sock0, &t.sock1], Duration::from_secs(30)) {
        return Err(format!("{dut}: sockets never appeared"));
    }
    let trial = |rate: f64, secs: f64, latency: bool, n: usize| -> Result<Value, String> {
        let json = t.scratch.path(&format!("zl-{n}.json"));
        let opts = DpgenOpts {
            traffic: Traffic::default(),
            latency,
            ..DpgenOpts::default()
        };
        let mut g = t.start_dpgen_with(rate, secs, &json, &opts, &format!("zl-{n}.log"));
        if g.wait(Duration::from_secs_f64(secs + 60.0)) != Some(0) {
            return Err(format!("dpgen failed:\n{}", g.output()));
        }
        serde_json::from_str(&std::fs::read_to_string(&json).map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())
    };
    let (mut lo, mut hi) = (0.0f64, a.zl_max_mpps);
    let mut trials = Vec::new();
    for step in 0..a.zl_steps {
        let rate = (lo + hi) / 2.0;
        let g = trial(rate, a.zl_seconds, false, step)?;
        let ports = g["ports"].as_array().cloned().unwrap_or_default();
        let sent: u64 = ports.iter().map(|p| p["tx"].as_u64().unwrap_or(0)).sum();
        let got: u64 = ports.iter().map(|p| p["rx"].as_u64().unwrap_or(0)).sum();
        let achieved: f64 = ports
            .iter()
            .map(|p| p["tx_mpps"].as_f64().unwrap_or(0.0))
            .sum::<f64>()
            / ports.len().max(1) as f64;
        // A trial counts only if the generator reached the rate; otherwise it is the limit.
        let reached = achieved >= 0.97 * rate;
        let ok = sent == got && reached;
        eprintln!(
            "zero-loss {dut}: {rate:.3} Mpps/port offered, {achieved:.3} sent, lost {} -> {}",
            sent.saturating_sub(got),
            if ok {
                "pass"
            } else if !reached {
                "generator short"
            } else {
                "loss"
            }
        );
        trials.push(json!({"offered_mpps_per_port": rate, "sent_mpps_per_port": achieved, "sent": sent, "received": got, "lost": sent.saturating_sub(got), "pass": ok, "generator_reached_rate": reached}));
        if ok {
            lo = rate;
        } else {
            hi = rate;
        }
    }
    let lowest = trials
        .iter()
        .filter_map(|t| t["offered_mpps_per_port"].as_f64())
        .fold(f64::INFINITY, f64::min);
    let mut res = json!({"dut": dut, "frame_size": 64, "trial_seconds": a.zl_seconds, "zero_loss_mpps_per_port": lo, "zero_loss_mpps_total": 2.0 * lo, "search_upper_bound": a.zl_max_mpps, "trials": trials});
    // Latency at half the zero-loss rate; without one, at half the lowest rate tried, and
    // labelled so.
    let (lat_rate, basis) = if lo > 0.0 {
        (lo / 2.0, "50% of the zero-loss rate")
    } else {
        (
            lowest / 2.0,
            "no zero-loss rate found: 50% of the lowest rate tried",
        )
    };
    if lat_rate.is_finite() && lat_rate > 0.0 {
        let g = trial(lat_rate, a.latency_seconds, true, 99)?;
        let lat: Vec<Value> = g["ports"]
            .as_array()
            .map(|p| p.iter().map(|x| x["latency"].clone()).collect())
            .unwrap_or_default();
        let ports = g["ports"].as_array().cloned().unwrap_or_default();
        let lost: u64 = ports
            .iter()
            .map(|p| p["tx"].as_u64().unwrap_or(0))
            .sum::<u64>()
            .saturating_sub(ports.iter().map(|p| p["rx"].as_u64().unwrap_or(0)).sum());
        res["latency_at_half_rate"] = json!({"rate_mpps_per_port": lat_rate, "basis": basis, "seconds": a.latency_seconds, "lost": lost, "per_receiving_port": lat});
    }
    let (_, acc) = stop_dut(dut, d, &stats)?;
    res["dut_accounting_whole_search"] = acc;
    Ok(res)
}

fn main() {
    let a = Args::parse();
    ensure_hugepages(1536);
    let list = |s: &str| {
        s.split(',')
            .map(|x| x.trim().to_string())
            .filter(|x| !x.is_empty())
            .collect::<Vec<String>>()
    };
    let duts: Vec<DutSpec> = match list(&a.duts).iter().map(|d| parse_dut(d)).collect() {
        Ok(d) => d,
        Err(e) => {
            eprintln!("bench: --duts: {e}");
            std::process::exit(2);
        }
    };
    let sizes = list(&a.sizes);
    let sweep = list(&a.sweep_duts);
    let flows: Vec<u32> = list(&a.flows)
        .iter()
        .map(|f| {
            f.parse()
                .unwrap_or_else(|_| panic!("--flows: {f} is not a number"))
        })
        .collect();
    if duts.iter().any(|d| ovs_pipeline(&d.name).is_some()) && !perf::ovs::available() {
        eprintln!(
            "bench: OVS-DPDK is not installed ({}): run scripts/setup --bench",
            perf::ovs::VSWITCHD_DPDK
        );
        std::process::exit(2);
    }
    let started = std::time::Instant::now();
    // (size, flows) -> dut -> samples, in round order.
    let mut samples: BTreeMap<(String, u32), BTreeMap<String, Vec<Sample>>> = BTreeMap::new();
    for size in &sizes {
        for &nf in &flows {
            let traffic = Traffic {
                size: size.clone(),
                flows: nf,
            };
            for round in 0..a.rounds {
                for spec in &duts {
                    let dut = &spec.label;
                    if size != &sizes[0] && !sweep.is_empty() && !sweep.contains(dut) {
                        continue;
                    }
                    match run_once(spec, &traffic, &a) {
                        Ok(s) => {
                            eprintln!(
                                "{size:>4}B {nf:>5} flows round {} {:<20} fwd {:6.3} + {:6.3} Mpps (gen {} sent {:6.3} + {:6.3}) DUT in {} out {} drops {} unaccounted {}{}",
                                round + 1,
                                dut,
                                s.rx_mpps[0],
                                s.rx_mpps[1],
                                s.generator,
                                s.tx_mpps[0],
                                s.tx_mpps[1],
                                s.accounting["in"],
                                s.accounting["out"],
                                s.accounting["counted_drops"],
                                s.accounting["unaccounted"],
                                if s.watch.is_null() { String::new() } else { format!(" watch {}", s.watch) }
                            );
                            samples
                                .entry((size.clone(), nf))
                                .or_default()
                                .entry(dut.clone())
                                .or_default()
                                .push(s);
                        }
                        Err(e) => {
                            eprintln!(
                                "round {} {dut} ({size}B, {nf} flows): FAILED: {e}",
                                round + 1
                            );
                            std::process::exit(1);
                        }
                    }
                }
            }
        }
    }

    let mut rows = Vec::new();
    let mut doc = serde_json::Map::new();
    let mut ratios_by_size = serde_json::Map::new();
    println!("\nvhost-user, DUT on CPU 1, generator on CPU 0; {} interleaved rounds x {} s (+{} s warm-up); medians (min-max)", a.rounds, a.seconds, a.warmup);
    println!(
        "{:>5} {:>6} {:<20} {:<16} {:>24} {:>10} {:>9} {:>14}  limit",
        "size",
        "flows",
        "DUT",
        "generator",
        "forwarded Mpps (both)",
        "Gbit/s",
        "gen sent",
        "lost (gen)"
    );
    let profile_of = |label: &str| {
        duts.iter()
            .find(|d| d.label == label)
            .map_or(Profile::Plain, |d| d.profile)
    };
    for ((size, nf), per_dut) in &samples {
        // The generator's capacity per traffic profile: the highest median send rate of any
        // DUT with that profile at this size.
        let cap_of = |p: Profile| {
            per_dut
                .iter()
                .filter(|(d, _)| profile_of(d) == p)
                .map(|(_, ss)| median(&ss.iter().map(Sample::sent).collect::<Vec<_>>()))
                .fold(0.0, f64::max)
        };
        let cap = cap_of(Profile::Plain);
        // The fastest single sample the generator sent with a traffic profile (the machine's
        // speed swings between rounds; this is its best round).
        let best_of = |p: Profile| {
            per_dut
                .iter()
                .filter(|(d, _)| profile_of(d) == p)
                .flat_map(|(_, ss)| ss.iter().map(Sample::sent))
                .fold(0.0, f64::max)
        };
        let mut limits: BTreeMap<&str, &str> = BTreeMap::new();
        let mut cyc: BTreeMap<&str, DutCycles> = BTreeMap::new();
        let mean_bytes = perf::traffic::size_pattern(size)
            .map(|p| perf::traffic::mean_size(&p))
            .unwrap_or(64.0);
        for (dut, ss) in per_dut {
            let fwd: Vec<f64> = ss.iter().map(Sample::fwd).collect();
            let sent: Vec<f64> = ss.iter().map(Sample::sent).collect();
            let (lo, hi) = min_max(&fwd);
            let (m, ms) = (median(&fwd), median(&sent));
            let gen_sent: u64 = ss.iter().map(|s| s.gen_tx[0] + s.gen_tx[1]).sum();
            let gen_lost: u64 = ss.iter().map(Sample::lost).sum();
            let gen_deny: u64 = ss.iter().map(|s| s.gen_deny).sum();
            let profile = profile_of(dut);
            let cap = cap_of(profile);
            let loss_frac = gen_lost as f64 / gen_sent.max(1) as f64;
            let unacc: i64 = ss
                .iter()
                .map(|s| s.accounting["unaccounted"].as_i64().unwrap_or(0))
                .sum();
            // Every sample's shortfall equals its ct(commit) rules' packet count (OVS).
            let unacc_commit = unacc != 0
                && ss.iter().all(|s| {
                    s.accounting["unaccounted"].as_i64().unwrap_or(0) == 0
                        || s.accounting.get("unaccounted_equals").is_some()
                });
            // Generator-limited: the DUT forwarded (nearly) all it was sent, and the generator
            // sent about as fast as it ever does at this size. Otherwise the DUT held it back
            // (lost packets, or back-pressure through the vhost rings slowed the sender).
            let limit = if dut == "null-sink" {
                "sink"
            } else if loss_frac >= 0.01 || ms < 0.9 * cap {
                "DUT"
            } else if per_dut.keys().any(|d| {
                profile_of(d) == profile && (d.starts_with("testpmd") || d.starts_with("null-sink"))
            }) {
                "generator"
            } else {
                // No light DUT ran this traffic: the capacity seen may be this DUT's own rate.
                "unknown"
            };
            limits.insert(dut.as_str(), limit);
            let gbps = m * 1e6 * (mean_bytes + 20.0) * 8.0 / 1e9;
            let cycles = DutCycles::of(ss);
            println!(
                "{size:>5} {:>6} {dut:<20} {:<16} {m:>9.3} ({lo:.3}-{hi:.3}) {gbps:>10.2} {ms:>9.3} {:>8} {:>4.1}%  {limit}{}",
                if profile == Profile::Vip { a.vip_flows } else { *nf },
                ss[0].generator,
                gen_lost,
                loss_frac * 100.0,
                if dut.starts_with("ovs") || unacc == 0 { String::new() } else { format!(" (DUT in != out + drops by {unacc})") }
            );
            rows.push(json!({
                "size": size, "mean_frame_bytes": mean_bytes, "flows": nf, "dut": dut, "generator": ss[0].generator,
                "forwarded_mpps_median": m, "forwarded_mpps_min": lo, "forwarded_mpps_max": hi,
                "forwarded_gbps_median": gbps, "sent_mpps_median": ms, "generator_capacity_mpps": cap,
                "generator_lost": gen_lost, "generator_sent": gen_sent, "loss_fraction": loss_frac,
                "dut_unaccounted": unacc, "dut_unaccounted_is_ct_commit_packets": unacc_commit, "limit": limit,
                "traffic_profile": profile.name(), "dut_flows": if profile == Profile::Vip { a.vip_flows } else { *nf },
                "generator_sent_deny_flows": gen_deny,
                "samples_forwarded_mpps": fwd,
                "cycles": cycles.json(),
            }));
            cyc.insert(dut.as_str(), cycles);
        }
        // Per-round ratios (the pairs ran back to back), then their median; each with the
        // generator's capacity under the numerator's traffic and what limited either side.
        let mut r = serde_json::Map::new();
        // (key, numerator, denominators in order of preference, target)
        let full_tp = if per_dut.contains_key("testpmd-io@vip") {
            "testpmd-io@vip"
        } else {
            "testpmd-io"
        };
        for (key, x, y, target) in [
            (
                "xconnect_vs_testpmd",
                "dataplane-xconnect",
                "testpmd-io",
                Some(0.95),
            ),
            (
                "pipeline_vs_testpmd",
                "dataplane-pipeline",
                "testpmd-io",
                None,
            ),
            ("pipeline_vs_ovs", "dataplane-pipeline", "ovs-forward", None),
            ("xconnect_vs_ovs", "dataplane-xconnect", "ovs-forward", None),
            // Against testpmd io these ratios mostly measure the vhost-user I/O: no target,
            // reported beside the ceiling the node cycles imply (`<ratio>_ceiling`).
            ("acl_vs_testpmd", "dataplane-acl-1k", "testpmd-io", None),
            ("full_vs_testpmd", "dataplane-full", full_tp, None),
            ("full_vs_ovs", "dataplane-full", "ovs-ct-lb", Some(8.0)),
            // The full pipeline with a client polling `show runtime` and `show conntrack`
            // ten times a second, over the same without it.
            (
                "ctl_poll_forwarding_ratio",
                "dataplane-full-ctl",
                "dataplane-full",
                Some(0.98),
            ),
        ] {
            if let (Some(xs), Some(ys)) = (per_dut.get(x), per_dut.get(y)) {
                let per: Vec<f64> = xs.iter().zip(ys).map(|(p, q)| p.fwd() / q.fwd()).collect();
                let (lo, hi) = min_max(&per);
                // Rounds in which the denominator's generator ran at full speed (at least
                // 90% of its best round with that traffic): there the ratio compares the
                // DUTs, not the machine's slow phases.
                let fast_at = 0.9 * best_of(profile_of(y));
                let fast: Vec<f64> = xs
                    .iter()
                    .zip(ys)
                    .filter(|(_, q)| q.sent() >= fast_at)
                    .map(|(p, q)| p.fwd() / q.fwd())
                    .collect();
                let fast_median = (!fast.is_empty()).then(|| median(&fast));
                let rates = |v: &[Sample]| v.iter().map(Sample::fwd).collect::<Vec<f64>>();
                let best = fastest_rounds_ratio(&rates(xs), &rates(ys));
                let gcap = cap_of(profile_of(x));
                let (lx, ly) = (
                    limits.get(x).copied().unwrap_or("?"),
                    limits.get(y).copied().unwrap_or("?"),
                );
                // Against testpmd io: the ratio the numerator's node cycles allow on top of
                // the I/O measured in the same rounds (a cross-connect has no nodes).
                let ceil = y
                    .starts_with("testpmd-io")
                    .then(|| {
                        let (io, src) = io_cycles(&cyc, y)?;
                        let c = cyc.get(x)?;
                        let nodes = c.nodes.or(c.worker.map(|_| 0.0))?;
                        Some((ceiling(io, nodes), io, src, nodes))
                    })
                    .flatten();
                println!(
                    "{size:>5}B {nf:>5} flows: {key} = {x} / {y} = {:.3} (per-round {lo:.3}-{hi:.3}){}{}; {}; fastest rounds {}; generator capacity {gcap:.3} Mpps ({} traffic); limit: {x} {lx}, {y} {ly}",
                    median(&per),
                    target.map_or(String::new(), |t| format!(", target >= {t}")),
                    ceil.map_or(String::new(), |(c, io, src, n)| format!(
                        ", ceiling {c:.3} = io {io:.1} / (io + nodes {n:.1}) cycles/packet (io: {src})"
                    )),
                    fast_median.map_or("no full-speed round".to_string(), |m| format!(
                        "{m:.3} over the {} full-speed rounds",
                        fast.len()
                    )),
                    best.map_or("-".to_string(), |b| format!("{b:.3}")),
                    profile_of(x).name(),
                );
                r.insert(
                    key.into(),
                    json!({"median": median(&per), "min": lo, "max": hi, "per_round": per,
                           "numerator": x, "denominator": y, "target": target,
                           "generator_capacity_mpps": gcap, "traffic_profile": profile_of(x).name(),
                           "numerator_limit": lx, "denominator_limit": ly,
                           "full_speed_median": fast_median, "full_speed_per_round": fast,
                           "full_speed_threshold_mpps": fast_at, "fastest_rounds_ratio": best,
                           "ceiling": ceil.map(|(c, io, src, n)| json!({"value": c, "io_cycles_per_packet": io, "io_source": src,
                               "node_cycles_per_packet": n, "formula": "io / (io + node cycles)"}))}),
                );
            }
        }
        ratios_by_size.insert(format!("{size}B/{nf}"), Value::Object(r.clone()));
        if size == &sizes[0] && *nf == flows[0] {
            doc.insert("headline_detail".into(), Value::Object(r.clone()));
            for (k, v) in r {
                if v["full_speed_median"].is_number() {
                    doc.insert(format!("{k}_full_speed"), v["full_speed_median"].clone());
                }
                if v["fastest_rounds_ratio"].is_number() {
                    doc.insert(
                        format!("{k}_fastest_rounds"),
                        v["fastest_rounds_ratio"].clone(),
                    );
                }
                if v["ceiling"]["value"].is_number() {
                    doc.insert(format!("{k}_ceiling"), v["ceiling"]["value"].clone());
                }
                doc.insert(k, v["median"].clone());
            }
            cycles_headline(&mut doc, &cyc, &limits);
            doc.insert("generator_capacity_mpps".into(), json!(cap));
            if duts.iter().any(|d| d.profile == Profile::Vip) {
                doc.insert(
                    "generator_capacity_vip_mpps".into(),
                    json!(cap_of(Profile::Vip)),
                );
            }
        }
    }
    let mut zl = Vec::new();
    for dut in list(&a.zero_loss) {
        match zero_loss(&dut, &a) {
            Ok(r) => {
                println!(
                    "zero loss {dut}: {:.3} Mpps per port; latency at half rate: {}",
                    r["zero_loss_mpps_per_port"], r["latency_at_half_rate"]["per_receiving_port"]
                );
                zl.push(r);
            }
            Err(e) => {
                eprintln!("zero-loss {dut}: FAILED: {e}");
                std::process::exit(1);
            }
        }
    }
    doc.insert("set".into(), json!(a.set));
    doc.insert("when".into(), json!(now_utc()));
    doc.insert("elapsed_s".into(), json!(started.elapsed().as_secs_f64()));
    doc.insert("machine".into(), machine());
    doc.insert("topology".into(), json!("two vhost-user ports; DUT on CPU 1 (dataplane worker, testpmd forwarding lcore, OVS PMD), generator on CPU 0 (testpmd flowgen or dpgen via virtio-user). OVS DUTs: generator is the vhost-user server, OVS dpdkvhostuserclient ports."));
    doc.insert("method".into(), json!({"rounds": a.rounds, "seconds": a.seconds, "warmup": a.warmup, "interleaved": true, "duts": duts.iter().map(|d| d.label.clone()).collect::<Vec<_>>(), "sizes": sizes, "flows": flows,
        "forwarded": "Mpps the generator received back (both directions), mean of 1-second samples after warm-up",
        "limit": "DUT if the generator lost >= 1% or sent < 90% of the highest send rate seen at that size with the same traffic profile; else generator, or unknown when no testpmd DUT ran that traffic profile",
        "traffic_profiles": {"plain": "both ports send --flows flows to each other", "mirror": "dpgen: port 1 sends the replies of port 0's flows",
            "vip": format!("dpgen: port 0 sends {} UDP 5-tuples (10.1.0.0/18, ports from 1024) to {}:{} ({}% to port {}, denied by the ACL); port 1 answers every packet it receives (plays the 4 backends)", a.vip_flows, perf::topology::VIP, perf::topology::VIP_PORT, a.deny_percent, perf::topology::DENY_PORT)},
        "acl_rules": a.acl_rules,
        "lost": "generator sent - generator received - packets of deny flows sent",
        "cycles": "medians over the rounds: testpmd's CPU cycles/packet (--record-core-cycles: cycles of bursts that received packets over packets received), the dataplane worker's busy cycles over packets received, each pipeline node's cycles over the packets it processed, and their sum per round; ceiling of a ratio against testpmd io = io / (io + the numerator's node cycles)",
        "full_speed": "a ratio's full-speed rounds are those in which the denominator's generator sent at least 90% of the fastest single sample seen with that traffic profile; their median (key <ratio>_full_speed) compares the DUTs rather than the machine's slow phases. Fastest rounds: each DUT's fastest round over the other's (key <ratio>_fastest_rounds); a slow phase only ever lowers a rate, so this compares capacities even when few rounds ran at full speed",
        "note": "shared 2-core machine, other jobs running: only interleaved ratios are meaningful"}));
    doc.insert("results".into(), json!(rows));
    doc.insert("ratios".into(), Value::Object(ratios_by_size));
    doc.insert("zero_loss".into(), json!(zl));
    doc.insert(
        "samples".into(),
        json!(samples
            .iter()
            .map(|((s, f), m)| (
                format!("{s}B/{f}"),
                m.iter()
                    .map(|(d, v)| (d.clone(), v.iter().map(Sample::json).collect::<Vec<_>>()))
                    .collect::<BTreeMap<_, _>>()
            ))
            .collect::<BTreeMap<_, _>>()),
    );
    if let Some(p) = &a.json {
        std::fs::write(
            p,
            serde_json::to_string_pretty(&Value::Object(doc)).unwrap() + "\n",
        )
        .expect("writing json");
        eprintln!("wrote {}", p.display());
    }
}

fn now_utc() -> String {
    std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%dT%H:%M:%SZ"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

fn cmd_first_line(cmd: &str, args: &[&str]) -> String {
    std::process::Command::new(cmd)
        .args(args)
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .unwrap_or("")
                .trim()
                .to_string()
        })
        .unwrap_or_default()
}

fn machine() -> Value {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_default();
    json!({
        "cpu": cpu,
        "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "cores": {"generator": 0, "dut": 1},
        "kernel": cmd_first_line("uname", &["-r"]),
        "dpdk": dataplane::dpdk::version(),
        "ovs": cmd_first_line(perf::ovs::VSWITCHD_DPDK, &["--version"]),
        "rustc": cmd_first_line("rustc", &["--version"]),
        "dataplane_git": cmd_first_line("git", &["rev-parse", "--short", "HEAD"]),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fastest_rounds_ratio_compares_each_side_at_its_best() {
        // Slow phases hit different rounds of each DUT: per-round ratios scatter (0.4 to
        // 2.0) while the fastest rounds give the capacities' ratio.
        let x = [4.0, 12.0, 6.0];
        let y = [8.0, 6.0, 15.0];
        assert_eq!(fastest_rounds_ratio(&x, &y), Some(0.8));
        assert_eq!(fastest_rounds_ratio(&[], &y), None);
        assert_eq!(fastest_rounds_ratio(&x, &[0.0, 0.0]), None);
    }

    fn run_with(dut: Value) -> Sample {
        Sample {
            rx_mpps: [0.0; 2],
            tx_mpps: [0.0; 2],
            generator: "dpgen",
            gen_tx: [0; 2],
            gen_rx: [0; 2],
            accounting: Value::Null,
            dut,
            gen_deny: 0,
            watch: Value::Null,
        }
    }

    /// A dataplane stats report: one worker with `busy` cycles over `rx` packets per port,
    /// and nodes of (name, cycles, packets).
    fn dataplane_run(busy: u64, rx: [u64; 2], nodes: &[(&str, u64, u64)]) -> Sample {
        run_with(json!({
            "workers": [{"busy_cycles": busy, "ports": [{"rx": rx[0]}, {"rx": rx[1]}]}],
            "pipeline": [{"nodes": nodes.iter().map(|(n, c, p)| json!({"name": n, "cycles": c, "packets": p})).collect::<Vec<_>>()}],
        }))
    }

    #[test]
    fn node_cycles_are_per_node_packet_and_skip_idle_nodes() {
        let s = dataplane_run(
            20_000,
            [50, 50],
            &[
                ("parse", 1_000, 100),
                ("acl", 3_000, 100),
                ("reset", 0, 0),
                ("lb", 2_000, 80),
            ],
        );
        assert_eq!(
            node_cycles(&s),
            vec![
                ("parse".to_string(), 10.0),
                ("acl".to_string(), 30.0),
                ("lb".to_string(), 25.0)
            ]
        );
        assert_eq!(worker_cycles(&s), Some(200.0));
        assert_eq!(testpmd_cycles(&s), None);
        let tp = run_with(json!({"testpmd_totals": [], "cycles_per_packet": 101.5}));
        assert_eq!(testpmd_cycles(&tp), Some(101.5));
        assert!(node_cycles(&tp).is_empty());
        assert_eq!(worker_cycles(&tp), None);
    }

    #[test]
    fn dut_cycles_take_the_median_of_per_round_sums() {
        let rounds = [
            dataplane_run(100, [1, 0], &[("parse", 10, 1), ("lb", 50, 1)]),
            dataplane_run(300, [1, 0], &[("parse", 20, 1), ("lb", 90, 1)]),
            dataplane_run(200, [1, 0], &[("parse", 30, 1), ("lb", 40, 1)]),
        ];
        let c = DutCycles::of(&rounds);
        // Sums 60, 110, 70: median 70 (not 20 + 50, the per-node medians' sum).
        assert_eq!(c.nodes, Some(70.0));
        assert_eq!(
            c.by_node,
            vec![("parse".to_string(), 20.0), ("lb".to_string(), 50.0)]
        );
        assert_eq!(c.worker, Some(200.0));
        assert_eq!(c.testpmd, None);
    }

    #[test]
    fn io_cost_prefers_testpmd_and_falls_back_to_the_cross_connect() {
        let mut cyc: BTreeMap<&str, DutCycles> = BTreeMap::new();
        cyc.insert(
            "dataplane-xconnect",
            DutCycles {
                worker: Some(96.0),
                ..DutCycles::default()
            },
        );
        assert_eq!(
            io_cycles(&cyc, "testpmd-io"),
            Some((96.0, "dataplane-xconnect worker busy cycles"))
        );
        cyc.insert(
            "testpmd-io",
            DutCycles {
                testpmd: Some(100.0),
                ..DutCycles::default()
            },
        );
        assert_eq!(
            io_cycles(&cyc, "testpmd-io"),
            Some((100.0, "testpmd io --record-core-cycles"))
        );
        // 100 cycles of I/O and 60 of nodes: at best 100 / 160 of testpmd's rate.
        assert_eq!(ceiling(100.0, 60.0), 0.625);
        assert_eq!(ceiling(100.0, 0.0), 1.0);
    }

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), 2.5);
        assert!(median(&[]).is_nan());
    }
}
