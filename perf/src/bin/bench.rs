//! `bench`: testpmd-style benchmarks of the dataplane against dpdk-testpmd on the same
//! vhost-user topology, cores and generator, run interleaved (A B A B ...) so the machine's
//! swings hit every DUT alike. Prints a table of medians (min-max) and ratios, writes JSON.
//!
//! ```text
//! bench --rounds 5 --seconds 8 --json perf/results/quick.json
//! ```

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use perf::procs::{ensure_hugepages, wait_for_paths, Proc};
use perf::topology::{testpmd_rx_pps_samples, VhostTopology};
use serde_json::{json, Value};

#[derive(Parser, Debug)]
#[command(about = "Interleaved vhost-user benchmarks: dataplane vs dpdk-testpmd")]
struct Args {
    /// Interleaved rounds (each runs every DUT once).
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Seconds of traffic per run.
    #[arg(long, default_value_t = 8.0)]
    seconds: f64,
    /// Seconds at the start of each run left out of the rate (warm-up).
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    /// DUTs to run, comma-separated: dataplane-xconnect, dataplane-pipeline (parse -> forward),
    /// testpmd-io, testpmd-macswap, null-sink (the generator's capacity).
    #[arg(long, default_value = "dataplane-xconnect,dataplane-pipeline,testpmd-io,null-sink")]
    duts: String,
    /// Write results (every sample, medians, ratios) here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Merge the headline figures into this JSON object file (created if missing).
    #[arg(long)]
    headline: Option<PathBuf>,
}

/// One run's outcome: forwarded Mpps per direction as the generator received it.
#[derive(Debug, Clone)]
struct Sample {
    /// Mpps received by the generator, port 0 and port 1 (= forwarded by the DUT).
    rx_mpps: [f64; 2],
    /// Mpps the generator sent (for the null sink: its capacity).
    tx_mpps: [f64; 2],
    /// The DUT's own loss accounting, if it reports one.
    dut: Value,
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
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

fn tx_pps_samples(out: &str) -> Vec<Vec<u64>> {
    // Same layout as Rx-pps; reuse the parser on the Tx lines.
    testpmd_rx_pps_samples(&out.replace("Rx-pps:", "Rx-ignored:").replace("Tx-pps:", "Rx-pps:"))
}

fn mean_after_warmup(samples: &[u64], warmup: usize) -> f64 {
    let s: Vec<u64> = samples.iter().skip(warmup).copied().collect();
    if s.is_empty() {
        return 0.0;
    }
    s.iter().sum::<u64>() as f64 / s.len() as f64 / 1e6
}

fn run_once(dut: &str, a: &Args) -> Result<Sample, String> {
    let t = VhostTopology::new(&format!("bench-{dut}"));
    let stats = t.scratch.path("dut.json");
    let mut d: Proc = match dut {
        "dataplane-xconnect" => {
            let cfg = t.dataplane_config("", "");
            t.start_dataplane(&cfg, &stats, 0.0)
        }
        "dataplane-pipeline" => {
            let cfg = t.dataplane_config("", perf::topology::PARSE_FORWARD);
            t.start_dataplane(&cfg, &stats, 0.0)
        }
        "testpmd-io" => t.start_testpmd_dut("io"),
        "testpmd-macswap" => t.start_testpmd_dut("macswap"),
        "null-sink" => t.start_testpmd_dut("rxonly"),
        other => return Err(format!("unknown DUT {other}")),
    };
    if !wait_for_paths(&[&t.sock0, &t.sock1], Duration::from_secs(30)) {
        return Err(format!("{dut}: sockets never appeared:\n{}", d.output()));
    }
    let mut gen = t.start_flowgen();
    std::thread::sleep(Duration::from_secs_f64(a.seconds));
    gen.interrupt();
    if gen.wait(Duration::from_secs(30)) != Some(0) {
        return Err(format!("generator failed:\n{}", gen.output()));
    }
    d.interrupt();
    if d.wait(Duration::from_secs(30)).is_none() {
        return Err(format!("{dut} did not stop:\n{}", d.output()));
    }
    let out = gen.output();
    let rx = testpmd_rx_pps_samples(&out);
    let tx = tx_pps_samples(&out);
    if rx.len() < 2 || tx.len() < 2 {
        return Err(format!("no rate samples from the generator:\n{out}"));
    }
    let w = a.warmup.round() as usize;
    let dut_report = if dut.starts_with("dataplane") {
        serde_json::from_str(&std::fs::read_to_string(&stats).map_err(|e| format!("{dut} stats: {e}"))?).map_err(|e| e.to_string())?
    } else {
        Value::Null
    };
    Ok(Sample {
        rx_mpps: [mean_after_warmup(&rx[0], w), mean_after_warmup(&rx[1], w)],
        tx_mpps: [mean_after_warmup(&tx[0], w), mean_after_warmup(&tx[1], w)],
        dut: dut_report,
    })
}

fn main() {
    let a = Args::parse();
    ensure_hugepages(1536);
    let duts: Vec<String> = a.duts.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect();
    let mut samples: BTreeMap<String, Vec<Sample>> = BTreeMap::new();
    for round in 0..a.rounds {
        for dut in &duts {
            match run_once(dut, &a) {
                Ok(s) => {
                    let dp_loss = loss_note(&s.dut);
                    eprintln!(
                        "round {} {:<20} fwd {:6.3} + {:6.3} Mpps (gen tx {:6.3} + {:6.3}){}",
                        round + 1,
                        dut,
                        s.rx_mpps[0],
                        s.rx_mpps[1],
                        s.tx_mpps[0],
                        s.tx_mpps[1],
                        dp_loss
                    );
                    samples.entry(dut.clone()).or_default().push(s);
                }
                Err(e) => {
                    eprintln!("round {} {dut}: FAILED: {e}", round + 1);
                    std::process::exit(1);
                }
            }
        }
    }

    // Table: per DUT, median (min-max) of total forwarded Mpps (both directions).
    let total = |s: &Sample| s.rx_mpps[0] + s.rx_mpps[1];
    let mut med: BTreeMap<String, f64> = BTreeMap::new();
    println!("\n64-byte frames, vhost-user, DUT on 1 core, generator dpdk-testpmd flowgen on the other; {} rounds x {} s", a.rounds, a.seconds);
    println!("{:<22} {:>22} {:>14}", "DUT", "forwarded Mpps (both)", "per direction");
    for (dut, ss) in &samples {
        let mut v: Vec<f64> = if dut == "null-sink" { ss.iter().map(|s| s.tx_mpps[0] + s.tx_mpps[1]).collect() } else { ss.iter().map(total).collect() };
        let (lo, hi) = (v.iter().cloned().fold(f64::INFINITY, f64::min), v.iter().cloned().fold(0.0, f64::max));
        let m = median(&mut v);
        med.insert(dut.clone(), m);
        let label = if dut == "null-sink" { "generator capacity (sent into a null sink)".to_string() } else { dut.clone() };
        println!("{label:<22} {m:>10.3} ({lo:.3}-{hi:.3}) {:>10.3}", m / 2.0);
    }
    let mut headline = serde_json::Map::new();
    if let (Some(d), Some(t)) = (med.get("dataplane-xconnect"), med.get("testpmd-io")) {
        // Per-round ratios, then their median: interleaved pairs share the machine's state.
        let (dv, tv) = (&samples["dataplane-xconnect"], &samples["testpmd-io"]);
        let mut ratios: Vec<f64> = dv.iter().zip(tv).map(|(x, y)| total(x) / total(y)).collect();
        let r = median(&mut ratios);
        println!("dataplane cross-connect / testpmd io: {r:.3} (median of per-round ratios; ratio of medians {:.3})", d / t);
        headline.insert("xconnect_vs_testpmd".into(), json!(r));
    }
    if let (Some(_), Some(_)) = (med.get("dataplane-pipeline"), med.get("testpmd-io")) {
        let (dv, tv) = (&samples["dataplane-pipeline"], &samples["testpmd-io"]);
        let mut ratios: Vec<f64> = dv.iter().zip(tv).map(|(x, y)| total(x) / total(y)).collect();
        let r = median(&mut ratios);
        println!("dataplane parse -> forward / testpmd io: {r:.3} (median of per-round ratios)");
        headline.insert("pipeline_vs_testpmd".into(), json!(r));
    }
    if let Some(g) = med.get("null-sink") {
        headline.insert("generator_capacity_mpps".into(), json!(g));
        for (dut, m) in &med {
            if dut != "null-sink" {
                let limit = if *m > 0.9 * g { "generator (DUT forwards > 90% of what the generator can send)" } else { "DUT" };
                println!("{dut}: limit = {limit}");
            }
        }
    }
    let doc = json!({
        "topology": "vhost-user, 64B, flowgen 1024 flows",
        "rounds": a.rounds,
        "seconds": a.seconds,
        "machine": machine(),
        "medians_mpps": med,
        "samples": samples.iter().map(|(k, v)| (k.clone(), v.iter().map(|s| json!({"rx_mpps": s.rx_mpps, "tx_mpps": s.tx_mpps, "dut": s.dut})).collect::<Vec<_>>())).collect::<BTreeMap<_, _>>(),
        "headline": headline.clone(),
    });
    if let Some(p) = &a.json {
        std::fs::write(p, serde_json::to_string_pretty(&doc).unwrap() + "\n").expect("writing json");
        eprintln!("wrote {}", p.display());
    }
    if let Some(p) = &a.headline {
        let mut obj: serde_json::Map<String, Value> =
            std::fs::read_to_string(p).ok().and_then(|t| serde_json::from_str(&t).ok()).unwrap_or_default();
        for (k, v) in headline {
            obj.insert(k, v);
        }
        std::fs::write(p, serde_json::to_string_pretty(&Value::Object(obj)).unwrap() + "\n").expect("writing headline");
    }
}

fn loss_note(dut: &Value) -> String {
    let Some(ports) = dut["ports"].as_array() else { return String::new() };
    let rx: u64 = ports.iter().map(|p| p["rx"].as_u64().unwrap_or(0)).sum();
    let tx: u64 = ports.iter().map(|p| p["tx"].as_u64().unwrap_or(0)).sum();
    let dropped: u64 = ports.iter().map(|p| p["tx_dropped"].as_u64().unwrap_or(0)).sum();
    let leaked: u64 = dut["mempools"].as_array().map(|m| m.iter().map(|x| x["in_use_after_stop"].as_u64().unwrap_or(0)).sum()).unwrap_or(0);
    let balance = if rx == tx + dropped { "in = out + drops" } else { "IN != OUT + DROPS" };
    format!("  [dataplane rx {rx} tx {tx} dropped {dropped}: {balance}; leaked mbufs {leaked}]")
}

fn machine() -> Value {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| t.lines().find(|l| l.starts_with("model name")).map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string()))
        .unwrap_or_default();
    json!({ "cpu": cpu, "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0), "dpdk": dataplane::dpdk::version() })
}
