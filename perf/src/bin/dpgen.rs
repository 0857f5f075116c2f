//! `dpgen`: a rate-limited DPDK traffic generator built on the dataplane's DPDK layer.
//!
//! Each port sends UDP/IPv4 frames over K flows at a fixed rate (or as fast as it can) and
//! counts what every port receives, so a zero-loss check compares sent and received per
//! direction. Ports are whatever EAL creates from the `--vdev`/`-a` arguments after `--`.
//!
//! `--size` takes one size, a list (round robin) or `imix`; `--mirror` makes port 1 send the
//! replies of port 0's flows (so a stateful DUT sees both directions of every connection);
//! `--latency` stamps the first packet of every burst with the TSC and reports the round
//! trip (min, mean, p50, p99, max) of the probes that come back on each port.
//!
//! ```text
//! dpgen --port net_virtio_user0 --port net_virtio_user1 --rate-mpps 0.5 --duration 10 \
//!       --json out.json -- --lcores 0@0,1@0 --no-pci --file-prefix gen --vdev ...
//! ```

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arrayvec::ArrayVec;
use clap::Parser;
use dataplane::counters::bump;
use dataplane::dpdk::{self, lcore, port::free_bulk, Eal, Mbuf, Mempool, Port, PortConfig};
use perf::frames::udp_frame;
use perf::traffic::{read_stamp, reply_frame, size_pattern, stamp, LatencyHistogram};

#[derive(Parser, Debug)]
#[command(about = "Rate-limited DPDK traffic generator")]
struct Args {
    /// Ethdev names of the ports to drive (e.g. net_virtio_user0), in order.
    #[arg(long = "port", required = true)]
    ports: Vec<String>,
    /// Rate per port in Mpps; 0 sends as fast as the ports take.
    #[arg(long, default_value_t = 0.0)]
    rate_mpps: f64,
    /// Seconds of transmission.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Frame size in bytes (without FCS, 60..1518), a comma list sent round robin, or `imix`.
    #[arg(long, default_value = "64")]
    size: String,
    /// Number of flows per port (destination IP and source port vary).
    #[arg(long, default_value_t = 1024)]
    flows: u32,
    /// Wait at most this many seconds for every port's link to come up.
    #[arg(long, default_value_t = 30.0)]
    link_timeout: f64,
    /// Only send on the first port (the others only receive).
    #[arg(long)]
    one_way: bool,
    /// Print rates every this many seconds (0: never).
    #[arg(long, default_value_t = 1.0)]
    stats_period: f64,
    /// Write the final counters here as JSON.
    #[arg(long)]
    json: Option<std::path::PathBuf>,
    /// Packets per burst.
    #[arg(long, default_value_t = 32)]
    burst: usize,
    /// Port 1 sends the replies of port 0's flows (needs exactly two ports).
    #[arg(long)]
    mirror: bool,
    /// Timestamp the first packet of every burst and report round-trip latency per port.
    #[arg(long)]
    latency: bool,
    /// Seconds to keep the ports open (connected, idle) after writing the JSON, so the DUT's
    /// counters can be read before the vhost-user connection goes away.
    #[arg(long, default_value_t = 0.0)]
    linger: f64,
    /// EAL arguments.
    #[arg(last = true)]
    eal: Vec<String>,
}

#[derive(Default)]
struct Counters {
    tx: AtomicU64,
    rx: AtomicU64,
    rx_bytes: AtomicU64,
    tx_full: AtomicU64,
    alloc_fail: AtomicU64,
}

const MAX_BURST: usize = 64;

fn main() {
    let a = Args::parse();
    if let Err(e) = size_pattern(&a.size) {
        eprintln!("error: --size: {e}");
        std::process::exit(2);
    }
    if a.burst == 0 || a.burst > MAX_BURST || a.flows == 0 || (a.mirror && a.ports.len() != 2) {
        eprintln!("error: burst must be 1..{MAX_BURST}, flows >= 1, --mirror needs two ports");
        std::process::exit(2);
    }
    let eal = match Eal::init(&a.eal) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    };
    let code = match run(&eal, &a) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("error: {e}");
            1
        }
    };
    eal.cleanup();
    std::process::exit(code);
}

fn run(eal: &Eal, a: &Args) -> Result<(), dpdk::DpdkError> {
    let worker = *eal
        .worker_lcores()
        .first()
        .ok_or_else(|| dpdk::DpdkError::new("dpgen needs a worker lcore", libc::EINVAL))?;
    let pool = Arc::new(Mempool::create(eal, "dpgen", 16383, 256, 2176, 0)?);
    let mut ports = Vec::new();
    for name in &a.ports {
        let mut p = Port::by_name(eal, name)?;
        p.configure(
            &PortConfig {
                rx_queues: 1,
                tx_queues: 1,
                rxd: 1024,
                txd: 1024,
                mtu: None,
                promiscuous: true,
                tx_checksum: false,
            },
            &pool,
        )?;
        p.start()?;
        ports.push(p);
    }
    let t0 = Instant::now();
    while !ports.iter().all(|p| p.link().up) {
        if t0.elapsed().as_secs_f64() > a.link_timeout {
            let down: Vec<&str> = ports
                .iter()
                .filter(|p| !p.link().up)
                .map(|p| p.name())
                .collect();
            return Err(dpdk::DpdkError::new(
                format!("links still down after {} s: {down:?}", a.link_timeout),
                libc::ETIMEDOUT,
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let n = ports.len();
    let pattern = size_pattern(&a.size).map_err(|e| dpdk::DpdkError::new(e, libc::EINVAL))?;
    let mut distinct = pattern.clone();
    distinct.sort_unstable();
    distinct.dedup();
    // Which template set each packet of the size pattern uses.
    let pattern_idx: Vec<usize> = pattern
        .iter()
        .map(|s| distinct.iter().position(|d| d == s).unwrap_or(0))
        .collect();
    // Templates [port][size][flow]: port p sends 10.(p+1).0.1 -> 10.(q+1).x.y (q = the next
    // port), flows vary; with --mirror port 1 sends the replies of port 0's flows.
    let templates: Vec<Vec<Vec<Vec<u8>>>> = (0..n)
        .map(|p| {
            distinct
                .iter()
                .map(|&size| {
                    (0..a.flows)
                        .map(|f| {
                            if a.mirror && p == 1 {
                                reply_frame(&udp_frame(size, 0, 1, f))
                            } else {
                                udp_frame(size, p as u8, ((p + 1) % n) as u8, f)
                            }
                        })
                        .collect()
                })
                .collect()
        })
        .collect();
    let latency_out: Arc<Mutex<Vec<LatencyHistogram>>> = Arc::new(Mutex::new(Vec::new()));
    let counters: Arc<Vec<Counters>> = Arc::new((0..n).map(|_| Counters::default()).collect());
    let sending = Arc::new(AtomicBool::new(true));
    let running = Arc::new(AtomicBool::new(true));
    let hz = dpdk::tsc_hz() as f64;
    let (rxqs, mut txqs): (Vec<_>, Vec<_>) =
        ports.iter().map(|p| (p.rx_queue(0), p.tx_queue(0))).unzip();
    if a.one_way {
        txqs.truncate(1);
    }
    let job = {
        let (counters, sending, running, pool) = (
            counters.clone(),
            sending.clone(),
            running.clone(),
            pool.clone(),
        );
        let (rate, burst, probes) = (a.rate_mpps * 1e6, a.burst, a.latency);
        let latency_out = latency_out.clone();
        let mut hist: Vec<LatencyHistogram> = (0..n).map(|_| LatencyHistogram::default()).collect();
        let ns_per_tick = 1e9 / hz;
        move || {
            let mut rxqs = rxqs;
            let mut txqs = txqs;
            let mut pkts: ArrayVec<Mbuf, MAX_BURST> = ArrayVec::new();
            let mut next_flow = vec![0usize; txqs.len()];
            let mut next_size = vec![0usize; txqs.len()];
            let mut tokens = vec![0f64; txqs.len()];
            let mut last = dpdk::rdtsc();
            while running.load(Relaxed) {
                let now = dpdk::rdtsc();
                let dt = now.wrapping_sub(last) as f64 / hz;
                last = now;
                if sending.load(Relaxed) {
                    for (p, txq) in txqs.iter_mut().enumerate() {
                        // Whole bursts only: small bursts cost the virtio ring as much as
                        // full ones, so a rate is met by spacing full bursts.
                        if rate > 0.0 {
                            // Up to 10 ms of credit: a generator preempted on a shared core
                            // catches up (in bursts) instead of silently sending less.
                            tokens[p] = (tokens[p] + dt * rate).min(burst as f64 * 4.0);
                            if tokens[p] < burst as f64 {
                                continue;
                            }
                        }
                        let want = burst;
                        let c = &counters[p];
                        if !pool.alloc_bulk(&mut pkts, want) {
                            bump(&c.alloc_fail, 1);
                            continue;
                        }
                        let tpl = &templates[p];
                        for m in pkts.iter_mut() {
                            let t = &tpl[pattern_idx[next_size[p]]][next_flow[p]];
                            next_size[p] = if next_size[p] + 1 == pattern_idx.len() {
                                0
                            } else {
                                next_size[p] + 1
                            };
                            next_flow[p] = if next_flow[p] + 1 == t_len(tpl) {
                                0
                            } else {
                                next_flow[p] + 1
                            };
                            m.append(t);
                        }
                        if probes {
                            if let Some(m) = pkts.first_mut() {
                                stamp(m.data_mut(), dpdk::rdtsc());
                            }
                        }
                        let sent = txq.tx_burst(&mut pkts);
                        tokens[p] -= sent as f64;
                        bump(&c.tx, sent as u64);
                        if !pkts.is_empty() {
                            bump(&c.tx_full, pkts.len() as u64);
                            free_bulk(&mut pkts);
                        }
                    }
                }
                for (p, rxq) in rxqs.iter_mut().enumerate() {
                    let got = rxq.rx_burst(&mut pkts, MAX_BURST);
                    if got != 0 {
                        if probes {
                            let now = dpdk::rdtsc();
                            for m in pkts.iter() {
                                if let Some(ts) = read_stamp(m.data()) {
                                    hist[p]
                                        .record((now.wrapping_sub(ts) as f64 * ns_per_tick) as u64);
                                }
                            }
                        }
                        let bytes: usize = pkts.iter().map(|m| m.len()).sum();
                        bump(&counters[p].rx, got as u64);
                        bump(&counters[p].rx_bytes, bytes as u64);
                        free_bulk(&mut pkts);
                    }
                }
            }
            *latency_out.lock().unwrap_or_else(|e| e.into_inner()) = std::mem::take(&mut hist);
            0
        }
    };
    lcore::launch(eal, worker, job)?;
    let start = Instant::now();
    let mut last_t = start;
    let mut last: Vec<(u64, u64)> = vec![(0, 0); n];
    while start.elapsed().as_secs_f64() < a.duration {
        std::thread::sleep(Duration::from_millis(20));
        if a.stats_period > 0.0 && last_t.elapsed().as_secs_f64() >= a.stats_period {
            let dt = last_t.elapsed().as_secs_f64();
            last_t = Instant::now();
            for (p, c) in counters.iter().enumerate() {
                let (tx, rx) = (c.tx.load(Relaxed), c.rx.load(Relaxed));
                println!(
                    "[{:6.1}s] port {p} {:<18} tx {:8.3} Mpps  rx {:8.3} Mpps",
                    start.elapsed().as_secs_f64(),
                    a.ports[p],
                    (tx - last[p].0) as f64 / dt / 1e6,
                    (rx - last[p].1) as f64 / dt / 1e6
                );
                last[p] = (tx, rx);
            }
        }
    }
    let tx_secs = start.elapsed().as_secs_f64();
    sending.store(false, Relaxed);
    // Drain what is still in flight.
    std::thread::sleep(Duration::from_millis(300));
    running.store(false, Relaxed);
    lcore::wait(eal, worker);
    let hists = std::mem::take(&mut *latency_out.lock().unwrap_or_else(|e| e.into_inner()));
    let report: Vec<serde_json::Value> = counters
        .iter()
        .enumerate()
        .map(|(p, c)| {
            let (tx, rx) = (c.tx.load(Relaxed), c.rx.load(Relaxed));
            let lat = hists
                .get(p)
                .filter(|_| a.latency)
                .map(|h| h.summary())
                .unwrap_or(serde_json::Value::Null);
            if !lat.is_null() {
                println!(
                    "port {p} {}: latency (round trip of probes received here) {lat}",
                    a.ports[p]
                );
            }
            println!(
                "port {p} {}: tx {tx} rx {rx} ({:.3} / {:.3} Mpps) tx-full {} alloc-fail {}",
                a.ports[p],
                tx as f64 / tx_secs / 1e6,
                rx as f64 / tx_secs / 1e6,
                c.tx_full.load(Relaxed),
                c.alloc_fail.load(Relaxed)
            );
            serde_json::json!({
                "port": a.ports[p],
                "tx": tx,
                "rx": rx,
                "rx_bytes": c.rx_bytes.load(Relaxed),
                "tx_full": c.tx_full.load(Relaxed),
                "alloc_fail": c.alloc_fail.load(Relaxed),
                "tx_mpps": tx as f64 / tx_secs / 1e6,
                "rx_mpps": rx as f64 / tx_secs / 1e6,
                "latency": lat,
            })
        })
        .collect();
    if let Some(path) = &a.json {
        let doc = serde_json::json!({ "duration_s": tx_secs, "rate_mpps_per_port": a.rate_mpps, "size": a.size, "mean_size": perf::traffic::mean_size(&pattern), "flows": a.flows, "mirror": a.mirror, "ports": report });
        std::fs::write(
            path,
            serde_json::to_string_pretty(&doc).expect("json") + "\n",
        )
        .map_err(|e| dpdk::DpdkError::new(format!("writing {}: {e}", path.display()), libc::EIO))?;
    }
    if a.linger > 0.0 {
        std::thread::sleep(Duration::from_secs_f64(a.linger));
    }
    for p in ports {
        let _ = p.close();
    }
    drop(pool);
    Ok(())
}

/// Flows per size template set (the same for every size).
fn t_len(tpl: &[Vec<Vec<u8>>]) -> usize {
    tpl.first().map_or(1, Vec::len)
}
