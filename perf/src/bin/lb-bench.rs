//! `lb-bench`: the `lb` node's cycles per packet on the built-in packet source (64-byte
//! TCP/IPv4 to one VIP with 4 backends, `parse -> lb -> forward`, no I/O, one core) with
//! 1k, 100k and 1M tracked flows; new connections per second per core; Maglev table build
//! time for 10, 100 and 1000 backends.
//!
//! ```text
//! cargo run --release -p perf --bin lb-bench -- [--json FILE] [--rounds N] [--quick] [--flows N]
//! ```
//!
//! - Established flows: each flow count gets a fresh node whose connection table is sized
//!   for it (`capacity` = flows, so the table runs at load 0.5, 64-byte entries: 128 MiB
//!   at 1M); one warm-up pass inserts every flow, then `--rounds` rounds replay all flows
//!   (in source order; the table is hashed, so lookups are random), the counts interleaved
//!   (1k, 100k, 1M, 1k, ...: a slow phase of the shared machine hits every count alike),
//!   and the `lb` node's TSC clocks per packet are taken from the graph's per-node counters
//!   (they include handing the vector on). Best and median over rounds are printed; the JSON
//!   has the median, and the growth from 1k to 1M is the median of the per-round ratios.
//! - New connections: a fresh node per round replays 1M distinct flows once (every packet a
//!   miss, a Maglev pick, an insert and a DNAT); connections/s = TSC Hz / clocks per packet.
//! - Maglev: wall-clock build time of a 65537-slot table, median of 9 builds.
//!
//! Connection tables are advised onto transparent huge pages as in the dataplane
//! (`--small-pages`: not, for comparison).
//!
//! `--quick`: 1k and 100k flows only (the 1M keys of the JSON are then null); `--flows N`:
//! established flows at that one count only, nothing else and no JSON (for profiling);
//! `--capacity N` with it: a connection table for N flows instead (the dataplane's
//! configured `capacity` is usually well above the flows it holds: a sparser table).
//!
//! The machine may be shared: medians of several rounds; compare runs, not single figures.

use std::process::ExitCode;
use std::time::Instant;

use pipeline::cycles;
use pipeline::lb::{self, Backend, Maglev, DEFAULT_TABLE_SIZE};
use pipeline::source::{IpVersion, L4Proto, PacketSource, SourceSpec};
use pipeline::{Graph, GraphSpec, PortInfo, Registry, TestBuf, VECTOR_SIZE};
use serde_json::{json, Value};

struct Args {
    json: Option<String>,
    rounds: usize,
    quick: bool,
    flows: Option<u32>,
    capacity: Option<usize>,
    small_pages: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        json: None,
        rounds: 7,
        quick: false,
        flows: None,
        capacity: None,
        small_pages: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--json" => a.json = Some(it.next().ok_or("--json needs a value")?),
            "--rounds" => a.rounds = count(&mut it, "--rounds")?,
            "--quick" => a.quick = true,
            "--small-pages" => a.small_pages = true,
            "--flows" => a.flows = Some(count(&mut it, "--flows")?),
            "--capacity" => a.capacity = Some(count(&mut it, "--capacity")?),
            "-h" | "--help" => {
                println!("usage: lb-bench [--json FILE] [--rounds N] [--quick] [--flows N [--capacity N]] [--small-pages]");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(a)
}

/// The positive count after option `name` (0 is taken as 1).
fn count<T: std::str::FromStr<Err = std::num::ParseIntError> + Ord + From<u8>>(
    it: &mut impl Iterator<Item = String>,
    name: &str,
) -> Result<T, String> {
    let v: T = it
        .next()
        .ok_or(format!("{name} needs a value"))?
        .parse()
        .map_err(|e| format!("{name}: {e}"))?;
    Ok(v.max(T::from(1)))
}

fn spec(capacity: usize) -> String {
    format!(
        r#"
        [[nodes]]
        name = "parse"
        kind = "parse"
        [[nodes]]
        name = "lb"
        kind = "lb"
        [nodes.params]
        conntrack = {{ capacity = {capacity} }}
        [[nodes.params.services]]
        name = "bench"
        vip = "10.1.0.1"
        protocol = "tcp"
        port = 80
        backends = [
          {{ address = "10.2.0.1", port = 8080 }},
          {{ address = "10.2.0.2", port = 8080 }},
          {{ address = "10.2.0.3", port = 8080 }},
          {{ address = "10.2.0.4", port = 8080 }},
        ]
        [[nodes]]
        name = "forward"
        kind = "forward"
        params = {{ mode = "cross-connect", pairs = [["p0", "p1"]] }}
        [[nodes]]
        name = "rst"
        kind = "drop"
        [[edges]]
        from = "parse"
        to = "lb"
        [[edges]]
        from = "lb"
        to = "forward"
        [[edges]]
        from = "lb"
        output = "reset"
        to = "rst"
        "#
    )
}

fn graph(capacity: usize) -> Result<Graph<TestBuf>, String> {
    let mut r = Registry::with_builtins();
    lb::register(&mut r).map_err(|e| e.to_string())?;
    let ports = [
        PortInfo::new(0, "p0", "fronthaul"),
        PortInfo::new(1, "p1", "midhaul"),
    ];
    let spec = GraphSpec::from_toml(&spec(capacity)).map_err(|e| e.to_string())?;
    Graph::build(&spec, &r, &ports).map_err(|e| e.to_string())
}

fn source(flows: u32) -> Result<PacketSource, String> {
    // Flow i: 10.0.0.1 + i, port 1024 + i % 4096 -> 10.1.0.1:80 (the VIP).
    let s = SourceSpec::simple(flows, L4Proto::Tcp, IpVersion::V4);
    PacketSource::from_spec(&s).map_err(|e| e.to_string())
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    s[s.len() / 2]
}

fn min(v: &[f64]) -> f64 {
    v.iter().copied().fold(f64::INFINITY, f64::min)
}

/// The lb node's clocks/packet over one replay of `bursts` vectors.
fn lb_cpp(
    g: &mut Graph<TestBuf>,
    src: &mut PacketSource,
    bursts: u64,
) -> Result<(f64, u64), String> {
    let mut tx = g.new_tx_vectors();
    let before = g.snapshot();
    let r = src.replay(g, &mut tx, bursts, VECTOR_SIZE);
    let d = g.snapshot().delta(&before);
    if r.tx != r.packets {
        return Err(format!("sent {} of {} packets", r.tx, r.packets));
    }
    let n = d.node("lb").ok_or("no lb node")?;
    let new = n
        .counters
        .iter()
        .find(|c| c.name == "new-connections")
        .map_or(0, |c| c.count);
    Ok((n.clocks_per_packet(), new))
}

/// One flow count's established-flow measurement: its own node and table, warmed up.
struct Established {
    flows: u32,
    graph: Graph<TestBuf>,
    src: PacketSource,
    per_round: u64,
    warm: f64,
    rounds: Vec<f64>,
}

impl Established {
    /// A fresh node whose table is sized for `flows` (or `--capacity`); one pass inserts
    /// every flow.
    fn new(flows: u32, args: &Args) -> Result<Self, String> {
        let mut graph = graph(args.capacity.unwrap_or(flows as usize).max(flows as usize))?;
        let mut src = source(flows)?;
        let bursts = (flows as u64).div_ceil(VECTOR_SIZE as u64);
        let (warm, new) = lb_cpp(&mut graph, &mut src, bursts)?;
        if new != flows as u64 {
            return Err(format!("warm-up inserted {new} of {flows} flows"));
        }
        Ok(Established {
            flows,
            graph,
            src,
            // At least ~1M packets per round so small tables are measured as long as big ones.
            per_round: bursts.max((1 << 20) / VECTOR_SIZE as u64),
            warm,
            rounds: Vec::new(),
        })
    }

    /// One round: every flow replayed (at least ~1M packets), all of them hits.
    fn round(&mut self) -> Result<(), String> {
        let (cpp, new) = lb_cpp(&mut self.graph, &mut self.src, self.per_round)?;
        if new != 0 {
            return Err(format!("{new} flows were not tracked"));
        }
        self.rounds.push(cpp);
        Ok(())
    }

    fn report(&self) -> Value {
        let v = &self.rounds;
        println!(
            "lb, {:>8} tracked flows: {:6.1} cycles/pkt median, {:6.1} best (first pass, all new: {:.1})",
            self.flows,
            median(v),
            min(v),
            self.warm
        );
        json!({"flows": self.flows, "cycles_per_packet_median": median(v), "cycles_per_packet_best": min(v), "rounds": v})
    }
}

/// The established-flow figures for every count, measured in interleaved rounds (1k, 100k,
/// 1M, 1k, ...: the machine's slow phases hit every count alike), and the per-round growth
/// from the first count to the last.
fn established(counts: &[u32], args: &Args) -> Result<(Vec<Value>, Vec<f64>), String> {
    let mut all = counts
        .iter()
        .map(|&f| Established::new(f, args).map_err(|e| format!("{f} flows: {e}")))
        .collect::<Result<Vec<_>, _>>()?;
    for _ in 0..args.rounds {
        for e in all.iter_mut() {
            e.round().map_err(|x| format!("{} flows: {x}", e.flows))?;
        }
    }
    let growth = match (all.first(), all.last()) {
        (Some(a), Some(b)) => b.rounds.iter().zip(&a.rounds).map(|(y, x)| y / x).collect(),
        _ => Vec::new(),
    };
    Ok((all.iter().map(Established::report).collect(), growth))
}

fn new_connections(args: &Args, tsc_hz: u64) -> Result<Value, String> {
    let flows = if args.quick { 100_000 } else { 1_000_000 };
    let mut src = source(flows)?;
    let bursts = (flows as u64).div_ceil(VECTOR_SIZE as u64);
    let mut v = Vec::new();
    for _ in 0..args.rounds.min(5) {
        let mut g = graph(flows as usize)?;
        let (cpp, new) = lb_cpp(&mut g, &mut src, bursts)?;
        if new != flows as u64 {
            return Err(format!("inserted {new} of {flows}"));
        }
        v.push(cpp);
    }
    let cps = tsc_hz as f64 / median(&v);
    println!(
        "new connections: {:.1} cycles/pkt median ({:.1} best) = {:.2} M connections/s per core (into an empty {flows}-entry table)",
        median(&v),
        min(&v),
        cps / 1e6
    );
    Ok(
        json!({"flows": flows, "cycles_per_packet_median": median(&v), "rounds": v, "connections_per_second": cps}),
    )
}

fn maglev_build_ms(n: usize) -> f64 {
    let bs: Vec<Backend> = (0..n)
        .map(|i| Backend::new(format!("10.{}.{}.1:80", i / 256, i % 256)))
        .collect();
    let mut t: Vec<f64> = (0..9)
        .map(|_| {
            let s = Instant::now();
            let m = Maglev::build(&bs, DEFAULT_TABLE_SIZE).expect("builds");
            let e = s.elapsed().as_secs_f64() * 1e3;
            assert!(!m.is_empty());
            e
        })
        .collect();
    t.sort_by(f64::total_cmp);
    t[t.len() / 2]
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("lb-bench: {e}");
            return ExitCode::from(2);
        }
    };
    // Connection tables on transparent huge pages, as in the dataplane (its node registry
    // installs the same advice); --small-pages leaves them on 4 KiB pages for comparison.
    if !args.small_pages {
        pipeline::conntrack::set_table_advice(dataplane::dpdk::advise_huge_pages);
    }
    let tsc_hz = cycles::estimate_hz(200);
    println!(
        "TSC {:.3} GHz; 64-byte TCP/IPv4 to one VIP, 4 backends; parse -> lb -> forward; {} rounds\n",
        tsc_hz as f64 / 1e9,
        args.rounds
    );
    let only = args.flows.map(|f| [f]);
    let counts: &[u32] = if let Some(f) = &only {
        f
    } else if args.quick {
        &[1_000, 100_000]
    } else {
        &[1_000, 100_000, 1_000_000]
    };
    let (est, growth_rounds) = match established(counts, &args) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("lb-bench: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Some(f) = args.flows {
        // Profiling one count: nothing else runs (and no JSON: its headline keys need all).
        let v = est[0]["cycles_per_packet_median"].as_f64().unwrap_or(0.0);
        println!("\nlb at {f} flows: {v:.1} cycles/pkt");
        return ExitCode::SUCCESS;
    }
    let newc = match new_connections(&args, tsc_hz) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("lb-bench: new connections: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut maglev = serde_json::Map::new();
    for n in [10usize, 100, 1000] {
        let ms = maglev_build_ms(n);
        println!(
            "maglev build, {n:>4} backends, M = {DEFAULT_TABLE_SIZE}: {ms:.2} ms (median of 9)"
        );
        maglev.insert(n.to_string(), json!(ms));
    }
    let cpp = |i: usize| est[i]["cycles_per_packet_median"].as_f64().unwrap_or(0.0);
    let last = est.len() - 1;
    // Median of the per-round ratios (each round ran every count back to back).
    let growth = median(&growth_rounds);
    let cps = newc["connections_per_second"].as_f64().unwrap_or(0.0);
    let m1000 = maglev["1000"].as_f64().unwrap_or(0.0);
    println!(
        "\nlb at {} flows: {:.1} cycles/pkt (target <= 60); growth from 1k: {growth:.2}x (target <= 1.5); \
         new connections {:.2} M/s/core (target >= 3); maglev 1000 backends {m1000:.2} ms (target < 10)",
        counts[last],
        cpp(last),
        cps / 1e6
    );
    if let Some(path) = &args.json {
        let doc = json!({
            "lb_cycles_per_packet_1m": if args.quick { Value::Null } else { json!(cpp(last)) },
            "lb_cycles_growth_1k_to_1m": if args.quick { Value::Null } else { json!(growth) },
            "new_connections_per_second": cps,
            "maglev_build_ms_1000": m1000,
            "maglev_build_ms": maglev,
            "established": est,
            "new_connections": newc,
            "tsc_hz": tsc_hz,
            "rounds": args.rounds,
            "statistic": "median over interleaved rounds; growth: median of per-round ratios",
            "growth_per_round": growth_rounds,
        });
        let text = serde_json::to_string_pretty(&doc).expect("json");
        if let Err(e) = std::fs::write(path, text + "\n") {
            eprintln!("lb-bench: writing {path}: {e}");
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}
