//! `pipeline-bench`: cycles per packet of pipeline nodes on the built-in packet source
//! (64-byte UDP/IPv4, 1 and 10,000 flows), no I/O, one core.
//!
//! ```text
//! cargo run --release -p perf --bin pipeline-bench -- [--json FILE] [--bursts N] [--rounds N] [--burst-size N]
//! ```
//!
//! Pipelines: `parse -> forward` (parse cost), `empty -> forward` (graph overhead: the empty
//! input node's clocks/packet, which include resetting the metadata of the burst),
//! `parse -> empty -> forward` (an empty node mid-graph: the pure per-node hand-off) and
//! `parse -> macswap -> forward`.
//! Cycles are TSC ticks measured by the graph around each node's vector (including moving
//! the packets on); Mpps is wall-clock over the replay loop, including refilling buffers
//! from templates. Figures are the best of `--rounds` rounds (median alongside), since a
//! shared machine preempts the benchmark now and then.

use pipeline::cycles;
use pipeline::source::{IpVersion, L4Proto, PacketSource, SourceSpec};
use pipeline::{render_runtime_table, Graph, GraphSpec, PortInfo, Registry, TestBuf, VECTOR_SIZE};
use serde_json::{json, Value};
use std::process::ExitCode;

const PIPELINES: [(&str, &str); 4] = [
    (
        "parse -> forward",
        r#"
        [[nodes]]
        name = "parse"
        kind = "parse"
        [[nodes]]
        name = "forward"
        kind = "forward"
        params = { mode = "cross-connect", pairs = [["p0", "p1"]] }
        [[edges]]
        from = "parse"
        to = "forward"
        "#,
    ),
    (
        "empty -> forward",
        r#"
        [[nodes]]
        name = "empty"
        kind = "empty"
        [[nodes]]
        name = "forward"
        kind = "forward"
        params = { mode = "cross-connect", pairs = [["p0", "p1"]] }
        [[edges]]
        from = "empty"
        to = "forward"
        "#,
    ),
    (
        "parse -> empty -> forward",
        r#"
        [[nodes]]
        name = "parse"
        kind = "parse"
        [[nodes]]
        name = "empty"
        kind = "empty"
        [[nodes]]
        name = "forward"
        kind = "forward"
        params = { mode = "cross-connect", pairs = [["p0", "p1"]] }
        [[edges]]
        from = "parse"
        to = "empty"
        [[edges]]
        from = "empty"
        to = "forward"
        "#,
    ),
    (
        "parse -> macswap -> forward",
        r#"
        [[nodes]]
        name = "parse"
        kind = "parse"
        [[nodes]]
        name = "macswap"
        kind = "macswap"
        [[nodes]]
        name = "forward"
        kind = "forward"
        params = { mode = "cross-connect", pairs = [["p0", "p1"]] }
        [[edges]]
        from = "parse"
        to = "macswap"
        [[edges]]
        from = "macswap"
        to = "forward"
        "#,
    ),
];

struct Args {
    json: Option<String>,
    bursts: u64,
    rounds: u64,
    burst_size: usize,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        json: None,
        bursts: 40_000,
        rounds: 20,
        burst_size: VECTOR_SIZE,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut val = |name: &str| it.next().ok_or(format!("{name} needs a value"));
        match arg.as_str() {
            "--json" => a.json = Some(val("--json")?),
            "--bursts" => {
                a.bursts = val("--bursts")?
                    .parse()
                    .map_err(|e| format!("--bursts: {e}"))?
            }
            "--rounds" => {
                a.rounds = val("--rounds")?
                    .parse::<u64>()
                    .map_err(|e| format!("--rounds: {e}"))?
                    .max(1)
            }
            "--burst-size" => {
                a.burst_size = val("--burst-size")?
                    .parse()
                    .map_err(|e| format!("--burst-size: {e}"))?;
                if a.burst_size == 0 || a.burst_size > VECTOR_SIZE {
                    return Err(format!("--burst-size must be 1..={VECTOR_SIZE}"));
                }
            }
            "-h" | "--help" => {
                println!("usage: pipeline-bench [--json FILE] [--bursts N] [--rounds N] [--burst-size N]");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(a)
}

/// One pipeline at one flow count: per-node cycles/packet and throughput.
///
/// The machine may be shared, so the replay runs in `rounds` rounds and each figure is the
/// best (lowest cycles, highest rate) over rounds, with the median alongside.
fn run_one(
    name: &str,
    spec_toml: &str,
    flows: u32,
    args: &Args,
    tsc_hz: u64,
) -> Result<Value, String> {
    let ports = [
        PortInfo::new(0, "p0", "fronthaul"),
        PortInfo::new(1, "p1", "midhaul"),
    ];
    let spec = GraphSpec::from_toml(spec_toml).map_err(|e| e.to_string())?;
    let mut graph = Graph::<TestBuf>::build(&spec, &Registry::with_builtins(), &ports)
        .map_err(|e| e.to_string())?;
    let mut tx = graph.new_tx_vectors();
    let mut src = PacketSource::from_spec(&SourceSpec::simple(flows, L4Proto::Udp, IpVersion::V4))
        .map_err(|e| e.to_string())?;
    src.replay(
        &mut graph,
        &mut tx,
        (args.bursts / 10).max(100),
        args.burst_size,
    );
    let allocated = src.buffers_allocated();
    let per_round = (args.bursts / args.rounds).max(1);
    let mut node_cpp: Vec<Vec<f64>> = vec![Vec::new(); graph.node_names().count()];
    let mut graph_cpp = Vec::new();
    let mut mpps = Vec::new();
    let mut total = None;
    for _ in 0..args.rounds {
        let before = graph.snapshot();
        let report = src.replay(&mut graph, &mut tx, per_round, args.burst_size);
        let delta = graph.snapshot().delta(&before);
        if report.tx != report.packets {
            return Err(format!(
                "{name}: sent {} of {} packets",
                report.tx, report.packets
            ));
        }
        for (v, n) in node_cpp.iter_mut().zip(&delta.nodes) {
            v.push(n.clocks_per_packet());
        }
        let cycles: u64 = delta.nodes.iter().map(|n| n.cycles).sum();
        graph_cpp.push(cycles as f64 / delta.rx_packets.max(1) as f64);
        mpps.push(report.mpps());
        total = Some(match total {
            None => delta,
            Some(t) => pipeline::stats::aggregate(&[t, delta]),
        });
    }
    if src.buffers_allocated() != allocated {
        return Err("the source allocated buffers in steady state".into());
    }
    let mut total = total.ok_or("no rounds")?;
    total.worker = format!("{name}, {flows} flow(s), all rounds");
    println!("{}", render_runtime_table(std::slice::from_ref(&total)));
    let names: Vec<String> = graph.node_names().map(str::to_string).collect();
    let mut nodes = serde_json::Map::new();
    let mut nodes_median = serde_json::Map::new();
    for (n, v) in names.iter().zip(&node_cpp) {
        println!(
            "   {n:<10} best {:>6.2}  median {:>6.2} cycles/pkt",
            min(v),
            median(v)
        );
        nodes.insert(n.clone(), json!(min(v)));
        nodes_median.insert(n.clone(), json!(median(v)));
    }
    let best_graph = min(&graph_cpp);
    let graph_mpps = tsc_hz as f64 / best_graph / 1e6;
    println!(
        "=> {name}, {flows} flow(s): {:.2} Mpps end to end with buffer refill (median {:.2}); graph alone {:.1} cycles/pkt = {:.2} Mpps\n",
        max(&mpps),
        median(&mpps),
        best_graph,
        graph_mpps
    );
    Ok(json!({
        "pipeline": name,
        "flows": flows,
        "mpps": max(&mpps),
        "mpps_median": median(&mpps),
        "graph_mpps": graph_mpps,
        "graph_cycles_per_packet": best_graph,
        "node_cycles_per_packet": nodes,
        "node_cycles_per_packet_median": nodes_median,
    }))
}

fn min(v: &[f64]) -> f64 {
    v.iter().copied().fold(f64::INFINITY, f64::min)
}

fn max(v: &[f64]) -> f64 {
    v.iter().copied().fold(0.0, f64::max)
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    s.get(s.len() / 2).copied().unwrap_or(0.0)
}

/// The worst (over flow counts) best-of-rounds cycles/packet of `node` in `pipeline`.
fn node_cpp(results: &[Value], pipeline: &str, node: &str) -> f64 {
    results
        .iter()
        .filter(|r| r["pipeline"] == pipeline)
        .filter_map(|r| r["node_cycles_per_packet"][node].as_f64())
        .fold(0.0, f64::max)
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("pipeline-bench: {e}");
            return ExitCode::from(2);
        }
    };
    let tsc_hz = cycles::estimate_hz(200);
    println!(
        "TSC {:.3} GHz, {} bursts of {} packets per run, 64-byte UDP/IPv4\n",
        tsc_hz as f64 / 1e9,
        args.bursts,
        args.burst_size
    );
    let mut results = Vec::new();
    for flows in [1u32, 10_000] {
        for (name, spec) in PIPELINES {
            match run_one(name, spec, flows, &args, tsc_hz) {
                Ok(r) => results.push(r),
                Err(e) => {
                    eprintln!("pipeline-bench: {e}");
                    return ExitCode::FAILURE;
                }
            }
        }
    }
    let parse = node_cpp(&results, "parse -> forward", "parse");
    let overhead = node_cpp(&results, "empty -> forward", "empty");
    let mid = node_cpp(&results, "parse -> empty -> forward", "empty");
    println!("parse: {parse:.2} cycles/pkt (target <= 25); graph overhead (empty input node): {overhead:.2} cycles/pkt (target <= 5); empty node mid-graph: {mid:.2}");
    if let Some(path) = &args.json {
        let doc = json!({
            "parse_cycles_per_packet": parse,
            "graph_overhead_cycles_per_packet": overhead,
            "empty_mid_graph_cycles_per_packet": mid,
            "forward_cycles_per_packet": node_cpp(&results, "parse -> forward", "forward"),
            "macswap_cycles_per_packet": node_cpp(&results, "parse -> macswap -> forward", "macswap"),
            "tsc_hz": tsc_hz,
            "bursts": args.bursts,
            "burst_size": args.burst_size,
            "results": results,
        });
        let text = serde_json::to_string_pretty(&doc).expect("json");
        if let Err(e) = std::fs::write(path, text + "\n") {
            eprintln!("pipeline-bench: writing {path}: {e}");
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}
