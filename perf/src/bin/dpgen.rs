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
//! `--spec P=SPEC` gives port P its own flows (see `perf::traffic::PortSpec`): e.g. 100,000
//! 5-tuples from 10.1.0.0/18 towards a VIP, a percentage of them "deny" flows sent to another
//! destination port (counted as `tx_deny`, so a harness can tell expected denials from
//! loss), or `reflect`: the port returns every packet it receives as its reply (addresses
//! and ports swapped), like the backends behind a load balancer answering each request.
//! `--watch-addr A` counts, per port, received packets with source or destination A (to
//! check a DUT's NAT without a capture); with any `--watch-addr`, every received IPv4
//! packet's header and TCP/UDP checksums are also verified from scratch (`checksums` in the
//! JSON: checked, bad).
//!
//! `--probe P=SPEC` makes port P also send one probe flow every few microseconds (see
//! `perf::probe::ProbeSpec`) and `--probe-log FILE` receives a line each time the probe's
//! verdict changes (received or not, and with which destination), dated in CLOCK_REALTIME
//! ns by the send time of the first probe that saw the change: a harness changes policy and
//! reads the file while dpgen keeps running.
//!
//! With `--rate-mpps`, a generator preempted on a shared core catches up on up to 10 ms of
//! its rate; `--realtime` runs its lcore at SCHED_FIFO and `--idle-sleep-us N` sleeps when a
//! pass had no burst due and emptied its receive queues, so that on a machine too small for a separate
//! generator core the control threads beside it neither hold back its bursts and replies nor
//! go without CPU (what `ovn-churn` uses for its fixed-rate trials).
//!
//! ```text
//! dpgen --port net_virtio_user0 --port net_virtio_user1 --rate-mpps 0.5 --duration 10 \
//!       --json out.json -- --lcores 0@0,1@0 --no-pci --file-prefix gen --vdev ...
//! ```

use std::io::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arrayvec::ArrayVec;
use clap::Parser;
use dataplane::counters::bump;
use dataplane::dpdk::{self, lcore, port::free_bulk, Eal, Mbuf, Mempool, Port, PortConfig};
use perf::frames::udp_frame;
use perf::probe::{ProbeEvent, ProbeSpec, ProbeTracker};
use perf::traffic::{
    ipv4_addrs, read_stamp, reply_frame, reply_in_place, size_pattern, stamp, FlowFields,
    LatencyHistogram, PortSpec,
};

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
    /// Seconds to wait after every link is up before sending (a peer that brings its queues
    /// up after its link, e.g. a guest's driver still configuring, would lose the first
    /// packets).
    #[arg(long, default_value_t = 0.0)]
    settle: f64,
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
    /// With a rate: the sending lcore runs at SCHED_FIFO, so the control threads that share
    /// its CPU on a small machine (an NB server, a churn writer, the DUT's control plane)
    /// never hold back a due burst or a reply (a separate traffic generator's behaviour).
    #[arg(long)]
    realtime: bool,
    /// With a rate: when a pass of the loop sent nothing and emptied every receive queue
    /// (no full burst), sleep this many microseconds, leaving the CPU to others between
    /// bursts (0: poll without pause). The queues hold what arrives meanwhile.
    #[arg(long, default_value_t = 0)]
    idle_sleep_us: u64,
    /// Receive descriptors per port (at most the virtio-user `queue_size`): what a port holds
    /// while this process is off its CPU.
    #[arg(long, default_value_t = 1024)]
    rxd: u16,
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
    /// End the linger as soon as this file exists (the harness creates it once it has read
    /// the DUT's counters), instead of waiting out `--linger`.
    #[arg(long)]
    linger_until: Option<std::path::PathBuf>,
    /// Seconds to keep receiving after the last packet was sent, before the counters are
    /// taken (what is still in flight through the DUT; longer for slow, e.g. emulated, DUTs).
    #[arg(long, default_value_t = 0.3)]
    drain: f64,
    /// Per-port traffic `PORT=SPEC` (port index; SPEC as `perf::traffic::PortSpec`, e.g.
    /// `0=src=10.1.0.0/18,dst=192.0.2.10,dport=5001,flows=100000` or `1=reflect`). Ports
    /// without one send the default flows.
    #[arg(long = "spec")]
    specs: Vec<String>,
    /// Count received packets with this IPv4 address as source or destination, per port
    /// (repeatable, at most 16).
    #[arg(long = "watch-addr")]
    watch: Vec<std::net::Ipv4Addr>,
    /// A verdict probe `PORT=SPEC` (SPEC as `perf::probe::ProbeSpec`, e.g.
    /// `0=src=10.1.200.1,sport=7000,dst=10.2.0.1,dport=7777,every_us=10`).
    #[arg(long)]
    probe: Option<String>,
    /// Where the probe's verdict changes go, one line each (`perf::probe::ProbeEvent`);
    /// default: stdout.
    #[arg(long)]
    probe_log: Option<std::path::PathBuf>,
    /// Stop sending as soon as this file exists (before `--duration` is up).
    #[arg(long)]
    stop_when: Option<std::path::PathBuf>,
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
    /// Packets of deny flows sent.
    tx_deny: AtomicU64,
    /// Packets sent back by a reflecting port (included in `tx`).
    reflected: AtomicU64,
}

/// What a port sends.
enum Source {
    /// Prebuilt frames [size][flow] (the default flows).
    Templates(Vec<Vec<Vec<u8>>>),
    /// One frame per size, patched per packet with the flow's fields.
    Flows {
        base: Vec<Vec<u8>>,
        table: Vec<FlowFields>,
    },
    /// Nothing of its own: replies to what it receives.
    Reflect,
}

impl Source {
    fn flows(&self) -> usize {
        match self {
            Source::Templates(t) => t.first().map_or(1, Vec::len),
            Source::Flows { table, .. } => table.len(),
            Source::Reflect => 1,
        }
    }
}

/// Parses `--spec PORT=SPEC` arguments for `n` ports.
fn parse_specs(specs: &[String], n: usize) -> Result<Vec<Option<PortSpec>>, String> {
    let mut out: Vec<Option<PortSpec>> = vec![None; n];
    for s in specs {
        let (p, spec) = s
            .split_once('=')
            .ok_or_else(|| format!("--spec {s:?}: expected PORT=SPEC"))?;
        let p: usize = p
            .trim()
            .parse()
            .ok()
            .filter(|p| *p < n)
            .ok_or_else(|| format!("--spec {s:?}: port must be 0..{n}"))?;
        out[p] = Some(PortSpec::parse(spec).map_err(|e| format!("--spec {s:?}: {e}"))?);
    }
    Ok(out)
}

const MAX_BURST: usize = 64;

/// Parses `--probe PORT=SPEC` for `n` ports.
fn parse_probe(text: &str, n: usize) -> Result<(usize, ProbeSpec), String> {
    let (p, spec) = text
        .split_once('=')
        .ok_or_else(|| format!("--probe {text:?}: expected PORT=SPEC"))?;
    let p: usize = p
        .trim()
        .parse()
        .ok()
        .filter(|p| *p < n)
        .ok_or_else(|| format!("--probe {text:?}: port must be 0..{n}"))?;
    Ok((
        p,
        ProbeSpec::parse(spec).map_err(|e| format!("--probe {text:?}: {e}"))?,
    ))
}

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
    match parse_specs(&a.specs, a.ports.len()) {
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(2);
        }
        Ok(s) if a.mirror && s.iter().any(Option::is_some) => {
            eprintln!("error: --mirror and --spec do not go together (use --spec 1=reflect)");
            std::process::exit(2);
        }
        Ok(_)
            if a.probe
                .as_ref()
                .is_some_and(|p| parse_probe(p, a.ports.len()).is_err()) =>
        {
            eprintln!(
                "error: {}",
                parse_probe(a.probe.as_deref().unwrap_or(""), a.ports.len()).unwrap_err()
            );
            std::process::exit(2);
        }
        Ok(_) if a.watch.len() > 16 => {
            eprintln!("error: at most 16 --watch-addr");
            std::process::exit(2);
        }
        Ok(_) => {}
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
    // Every port's receive ring full, its transmit ring in flight, and the bursts in hand.
    let wanted = a.ports.len() * (usize::from(a.rxd) + 1024) + 8192;
    let mbufs = (wanted + 1).next_power_of_two().max(16384) - 1;
    let pool = Arc::new(Mempool::create(eal, "dpgen", mbufs as u32, 256, 2176, 0)?);
    let mut ports = Vec::new();
    for name in &a.ports {
        let mut p = Port::by_name(eal, name)?;
        p.configure(
            &PortConfig {
                rx_queues: 1,
                tx_queues: 1,
                rxd: a.rxd,
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
    if a.settle > 0.0 {
        std::thread::sleep(Duration::from_secs_f64(a.settle));
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
    // Default templates [port][size][flow]: port p sends 10.(p+1).0.1 -> 10.(q+1).x.y (q =
    // the next port), flows vary; with --mirror port 1 sends the replies of port 0's flows.
    // A port with a --spec sends its flows (patched into one frame per size) or reflects.
    let specs = parse_specs(&a.specs, n).map_err(|e| dpdk::DpdkError::new(e, libc::EINVAL))?;
    let sources: Vec<Source> = (0..n)
        .map(|p| match &specs[p] {
            Some(PortSpec::Reflect) => Source::Reflect,
            Some(PortSpec::Flows(fs)) => Source::Flows {
                base: distinct
                    .iter()
                    .map(|&size| udp_frame(size, p as u8, ((p + 1) % n) as u8, 0))
                    .collect(),
                table: fs.table(),
            },
            None => Source::Templates(
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
                    .collect(),
            ),
        })
        .collect();
    // The verdict probe: its port, spec and frame; changes go to `probe_events` (TSC-dated)
    // for the main thread to date in CLOCK_REALTIME and write out.
    let probe = match &a.probe {
        Some(t) => Some(parse_probe(t, n).map_err(|e| dpdk::DpdkError::new(e, libc::EINVAL))?),
        None => None,
    };
    let probe_events: Arc<Mutex<Vec<ProbeEvent>>> = Arc::new(Mutex::new(Vec::with_capacity(1024)));
    let watch: Vec<[u8; 4]> = a.watch.iter().map(|w| w.octets()).collect();
    let watch_out: Arc<Mutex<Vec<Vec<[u64; 2]>>>> = Arc::new(Mutex::new(Vec::new()));
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
        // Catch-up credit: 10 ms of the rate (at least four bursts).
        let max_credit = (rate * 0.010).max(burst as f64 * 4.0);
        let realtime = a.realtime && rate > 0.0;
        let idle_sleep =
            (rate > 0.0 && a.idle_sleep_us > 0).then(|| Duration::from_micros(a.idle_sleep_us));
        let latency_out = latency_out.clone();
        let watch_out = watch_out.clone();
        // Per port: one [as source, as destination] pair per watched address, then
        // [IPv4 packets checked, bad checksums] (see `ipv4_checksums_ok`).
        let mut seen: Vec<Vec<[u64; 2]>> = vec![vec![[0; 2]; watch.len() + 1]; n];
        let mut hist: Vec<LatencyHistogram> = (0..n).map(|_| LatencyHistogram::default()).collect();
        let ns_per_tick = 1e9 / hz;
        let probe_events = probe_events.clone();
        let probe = probe.map(|(p, spec)| {
            let base = udp_frame(60, p as u8, ((p + 1) % n) as u8, 0);
            let every = (hz * f64::from(spec.every_us) / 1e6) as u64;
            let tracker = ProbeTracker::new((hz * f64::from(spec.timeout_us) / 1e6) as u64);
            (p, spec, base, every.max(1), tracker)
        });
        move || {
            let mut probe = probe;
            let mut next_probe = dpdk::rdtsc();
            let mut one: ArrayVec<Mbuf, 1> = ArrayVec::new();
            let push = |e: ProbeEvent| {
                probe_events
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(e)
            };
            let mut rxqs = rxqs;
            let mut txqs = txqs;
            let mut pkts: ArrayVec<Mbuf, MAX_BURST> = ArrayVec::new();
            let mut next_flow = vec![0usize; txqs.len()];
            let mut next_size = vec![0usize; txqs.len()];
            let mut tokens = vec![0f64; txqs.len()];
            let mut last = dpdk::rdtsc();
            if realtime {
                if let Err(e) = perf::sched::realtime() {
                    eprintln!("dpgen: --realtime: {e} (the lcore keeps the normal policy)");
                }
            }
            while running.load(Relaxed) {
                let now = dpdk::rdtsc();
                let mut worked = false;
                let dt = now.wrapping_sub(last) as f64 / hz;
                last = now;
                if let Some((pp, spec, base, every, tracker)) = probe.as_mut() {
                    if let Some(e) = tracker.tick(now) {
                        push(e);
                    }
                    if sending.load(Relaxed) && now >= next_probe && *pp < txqs.len() {
                        next_probe = now + *every;
                        if pool.alloc_bulk(&mut one, 1) {
                            let seq = tracker.send(now);
                            if let Some(m) = one.first_mut() {
                                m.append(base);
                                let f = m.data_mut();
                                spec.flow.flow(spec.flow_of(seq)).write(f);
                                perf::probe::mark(f, seq);
                            }
                            if txqs[*pp].tx_burst(&mut one) == 0 {
                                tracker.unsend();
                                free_bulk(&mut one);
                            }
                        }
                    }
                }
                if sending.load(Relaxed) {
                    for (p, txq) in txqs.iter_mut().enumerate() {
                        let src = &sources[p];
                        if matches!(src, Source::Reflect) {
                            continue;
                        }
                        // Whole bursts only: small bursts cost the virtio ring as much as
                        // full ones, so a rate is met by spacing full bursts.
                        if rate > 0.0 {
                            // Up to 10 ms of credit: a generator preempted on a shared core
                            // catches up (in bursts) instead of silently sending less.
                            tokens[p] = (tokens[p] + dt * rate).min(max_credit);
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
                        let nflows = src.flows();
                        let mut deny = 0u64;
                        for m in pkts.iter_mut() {
                            let (si, fi) = (pattern_idx[next_size[p]], next_flow[p]);
                            next_size[p] = if next_size[p] + 1 == pattern_idx.len() {
                                0
                            } else {
                                next_size[p] + 1
                            };
                            next_flow[p] = if fi + 1 == nflows { 0 } else { fi + 1 };
                            match src {
                                Source::Templates(tpl) => {
                                    m.append(&tpl[si][fi]);
                                }
                                Source::Flows { base, table } => {
                                    m.append(&base[si]);
                                    let fl = &table[fi];
                                    fl.write(m.data_mut());
                                    deny += u64::from(fl.deny);
                                }
                                Source::Reflect => {}
                            }
                        }
                        if probes {
                            if let Some(m) = pkts.first_mut() {
                                stamp(m.data_mut(), dpdk::rdtsc());
                            }
                        }
                        let sent = txq.tx_burst(&mut pkts);
                        worked |= sent != 0;
                        tokens[p] -= sent as f64;
                        bump(&c.tx, sent as u64);
                        if deny != 0 {
                            // Deny flows are spread evenly: count them in proportion when a
                            // burst went out only in part.
                            bump(&c.tx_deny, deny * sent as u64 / want as u64);
                        }
                        if !pkts.is_empty() {
                            bump(&c.tx_full, pkts.len() as u64);
                            free_bulk(&mut pkts);
                        }
                    }
                }
                for (p, rxq) in rxqs.iter_mut().enumerate() {
                    let got = rxq.rx_burst(&mut pkts, MAX_BURST);
                    // A full burst may have left more behind: no pause before the next pass.
                    worked |= got == MAX_BURST;
                    if got != 0 {
                        if let Some((_, _, _, _, tracker)) = probe.as_mut() {
                            for m in pkts.iter() {
                                if let Some((seq, dst)) = perf::probe::read_mark(m.data()) {
                                    if let Some(e) = tracker.received(seq, dst, now) {
                                        push(e);
                                    }
                                }
                            }
                        }
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
                        if !watch.is_empty() {
                            for m in pkts.iter() {
                                if let Some((s, d)) = ipv4_addrs(m.data()) {
                                    for (k, w) in watch.iter().enumerate() {
                                        seen[p][k][0] += u64::from(s == *w);
                                        seen[p][k][1] += u64::from(d == *w);
                                    }
                                }
                                if let Some(ok) = perf::traffic::ipv4_checksums_ok(m.data()) {
                                    let c = &mut seen[p][watch.len()];
                                    c[0] += 1;
                                    c[1] += u64::from(!ok);
                                }
                            }
                        }
                        if matches!(sources[p], Source::Reflect) && p < txqs.len() {
                            for m in pkts.iter_mut() {
                                reply_in_place(m.data_mut());
                            }
                            let sent = txqs[p].tx_burst(&mut pkts);
                            bump(&counters[p].tx, sent as u64);
                            bump(&counters[p].reflected, sent as u64);
                            if !pkts.is_empty() {
                                bump(&counters[p].tx_full, pkts.len() as u64);
                            }
                        }
                        free_bulk(&mut pkts);
                    }
                }
                if let (false, Some(d)) = (worked, idle_sleep) {
                    std::thread::sleep(d);
                }
            }
            *latency_out.lock().unwrap_or_else(|e| e.into_inner()) = std::mem::take(&mut hist);
            *watch_out.lock().unwrap_or_else(|e| e.into_inner()) = std::mem::take(&mut seen);
            0
        }
    };
    lcore::launch(eal, worker, job)?;
    let start = Instant::now();
    let mut last_t = start;
    let mut last: Vec<(u64, u64)> = vec![(0, 0); n];
    // One rate line per port over the interval since the previous one.
    let sample = |last_t: &mut Instant, last: &mut [(u64, u64)]| {
        let dt = last_t.elapsed().as_secs_f64();
        *last_t = Instant::now();
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
    };
    let mut probe_out: Option<Box<dyn std::io::Write>> = match (&a.probe, &a.probe_log) {
        (None, _) => None,
        (Some(_), None) => Some(Box::new(std::io::stdout())),
        (Some(_), Some(p)) => {
            Some(Box::new(std::fs::File::create(p).map_err(|e| {
                dpdk::DpdkError::new(format!("{}: {e}", p.display()), libc::EIO)
            })?))
        }
    };
    // Dates the probe's changes (TSC -> CLOCK_REALTIME, anchored afresh each time) and
    // writes them out, one flushed line each.
    let mut write_probe_events = || {
        let Some(out) = probe_out.as_mut() else {
            return;
        };
        let evs = std::mem::take(&mut *probe_events.lock().unwrap_or_else(|e| e.into_inner()));
        if evs.is_empty() {
            return;
        }
        let (anchor_tsc, anchor_ns) = (dpdk::rdtsc(), perf::probe::realtime_ns());
        for mut e in evs {
            e.ns = perf::probe::tsc_to_realtime(e.ns, anchor_tsc, anchor_ns, hz as u64);
            let _ = writeln!(out, "{}", e.line());
        }
        let _ = out.flush();
    };
    let tick = Duration::from_millis(if a.probe.is_some() { 2 } else { 20 });
    while start.elapsed().as_secs_f64() < a.duration
        && !a.stop_when.as_ref().is_some_and(|p| p.exists())
    {
        std::thread::sleep(tick);
        write_probe_events();
        if a.stats_period > 0.0 && last_t.elapsed().as_secs_f64() >= a.stats_period {
            sample(&mut last_t, &mut last);
        }
    }
    // The last period may end a sleep tick after the duration: report it rather than lose
    // it (a 2-second run with 1-second samples must give two).
    if a.stats_period > 0.0 && last_t.elapsed().as_secs_f64() >= a.stats_period / 2.0 {
        sample(&mut last_t, &mut last);
    }
    let tx_secs = start.elapsed().as_secs_f64();
    sending.store(false, Relaxed);
    // Drain what is still in flight.
    std::thread::sleep(Duration::from_secs_f64(a.drain.max(0.0)));
    running.store(false, Relaxed);
    lcore::wait(eal, worker);
    write_probe_events();
    let hists = std::mem::take(&mut *latency_out.lock().unwrap_or_else(|e| e.into_inner()));
    let seen = std::mem::take(&mut *watch_out.lock().unwrap_or_else(|e| e.into_inner()));
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
            let watched: Vec<serde_json::Value> = a
                .watch
                .iter()
                .enumerate()
                .map(|(k, w)| {
                    let c = seen.get(p).and_then(|s| s.get(k)).copied().unwrap_or([0; 2]);
                    serde_json::json!({"addr": w.to_string(), "rx_src": c[0], "rx_dst": c[1]})
                })
                .collect();
            let sums = seen.get(p).and_then(|s| s.get(a.watch.len())).copied().unwrap_or([0; 2]);
            serde_json::json!({
                "port": a.ports[p],
                "checksums": if a.watch.is_empty() { serde_json::Value::Null } else { serde_json::json!({"checked": sums[0], "bad": sums[1]}) },
                "tx_deny": c.tx_deny.load(Relaxed),
                "reflected": c.reflected.load(Relaxed),
                "watch": watched,
                "spec": a.specs.iter().find(|s| s.split('=').next().and_then(|x| x.trim().parse::<usize>().ok()) == Some(p)),
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
        let end = std::time::Instant::now() + Duration::from_secs_f64(a.linger);
        while std::time::Instant::now() < end
            && !a.linger_until.as_ref().is_some_and(|p| p.exists())
        {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    for p in ports {
        let _ = p.close();
    }
    drop(pool);
    Ok(())
}
