//! `ovn-churn`: the dataplane's forwarding while the OVN Northbound takes 0, 100 and 1,000
//! transactions per second (issue 24, item 6).
//!
//! ```text
//! cargo build --release --workspace --bins
//! target/release/ovn-churn [--rounds 5] [--seconds 3] [--rates 0,100,1000] [--acls 1000]
//!     [--mix as=4,lsp=2,acl=2,lb=1] [--window 64] [--json FILE]
//! ```
//!
//! A real `ovsdb-server` (`perf::nb_server`) is seeded in one transaction with the scenario
//! of [`perf::ovn_churn`] (Neutron-style port groups, `--acls` background ACLs, the
//! benchmark's UDP VIP and a churned one). The dataplane runs on the vhost-user topology
//! (worker on CPU 1) with `[ovn]` following that NB: `parse -> acl_in (from-lport) -> lb ->
//! acl_out (to-lport) -> forward`, each port naming its LSP. dpgen (CPU 0) sends the VIP
//! traffic (port 0: `--flows` UDP flows to the VIP; port 1 plays the backends and answers
//! each packet). The NB writer ([`perf::nb_writer`]: OVSDB `transact` on the NB socket, a
//! fixed schedule) churns address-set members, a pod's addresses (a derived `$pg_ip4`),
//! ACLs and a second VIP's backends, none of which can change the verdict of the traffic.
//!
//! First calibration trials at full speed without churn give the capacity (their best); then
//! `--rounds` rounds, each with every churn rate at a fixed offered rate (`--fixed-fraction`
//! of the capacity) and at full speed, the rates' order rotated per round. Per trial: the
//! forwarded Mpps (dpgen's received packets over its sending time), sent, received and lost
//! packets, the DUT's in/out/drops by node and reason (Prometheus deltas), misjudged packets
//! (dropped by an ACL node: all of this traffic must pass), the transactions committed and
//! the follower's publishes. Medians per mode and rate, and the ratio of each churn rate's
//! median to the no-churn median. Each trial starts once the follower is quiet (the previous
//! trial's churn published), and reports the classifier builds its publications cost (from
//! the DUT's log lines: full builds, rebuilds of expanded sets, membership updates, build ms).
//!
//! This process, the NB server and the writer run on `--helpers-cpu` (default 0, beside the
//! generator), off the DUT's worker core. The fixed-rate ratio and loss are the headline
//! (`ovn_churn_forwarding_ratio_1000`, `ovn_churn_lost`): a load below capacity, that a
//! generator preempted by the churn on CPU 0 makes up for (10 ms of credit). The full-speed
//! trials overload the DUT with or without churn and leave the generator the CPU the churn
//! does not take; their ratio and loss are reported (`*_max`), not judged.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser;
use perf::cpu_time::{
    process_ticks, share, shares, this_thread_ticks, thread_cpus, thread_ticks_by_name,
};
use perf::ctl::ctl_json;
use perf::nb_server::NbServer;
use perf::nb_writer::{ChurnMix, ChurnPlan, NbWriter, WriterReport};
use perf::procs::{http_get_metrics, metrics_addr, wait_for_paths, Proc};
use perf::topology::{DpgenOpts, Traffic, VhostTopology};
use serde_json::{json, Value};

#[derive(Parser, Debug)]
#[command(about = "Forwarding while the OVN NB churns")]
struct Args {
    /// Interleaved rounds.
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Seconds dpgen sends per trial.
    #[arg(long, default_value_t = 3.0)]
    seconds: f64,
    /// NB transactions per second to compare (0 = no churn, needed as the reference).
    #[arg(long, default_value = "0,100,1000")]
    rates: String,
    /// Background ACLs in the NB (besides the 9 of the scenario).
    #[arg(long, default_value_t = 1000)]
    acls: usize,
    /// The churn mix (`as`, `lsp`, `acl`, `lb` weights).
    #[arg(long, default_value = "as=4,lsp=2,acl=2,lb=1")]
    mix: String,
    /// Items per churned window (address-set members, ACLs; backends = window / 4).
    #[arg(long, default_value_t = 64)]
    window: usize,
    /// UDP flows to the VIP.
    #[arg(long, default_value_t = 1024)]
    flows: u32,
    /// The fixed offered rate as a fraction of the calibrated capacity: a load the generator
    /// sustains with headroom, so that what is lost at this rate is the DUT's doing.
    #[arg(long, default_value_t = 0.5)]
    fixed_fraction: f64,
    /// At the fixed rate, dpgen runs `--realtime --idle-sleep-us 20` (SCHED_FIFO on CPU 0,
    /// asleep between bursts). Measured: the generator then offers its rate under churn,
    /// but the NB writer beside it fell up to a second behind its schedule at 1,000 txn/s
    /// (15 ms without), so the churn reaching the DUT is not the one asked for: off by
    /// default.
    #[arg(long)]
    fixed_realtime: bool,
    /// The generator's receive ring per port (virtio-user queue size and descriptors): what
    /// the DUT's transmit finds room in while the generator is off CPU 0. With 1,024 (the
    /// other benchmarks' size, 0.6 ms at the fixed rate) the generator, preempted by the NB
    /// server and the writer beside it, lost 39-52k packets per run at the DUT's transmit
    /// (`port/tx-dropped`); 8,192 (about 5 ms) holds them. 16,384 fails virtio-user's probe.
    #[arg(long, default_value_t = 8192)]
    gen_rx_ring: u32,
    /// Full-speed trials without churn whose best sets the capacity.
    #[arg(long, default_value_t = 3)]
    calib_trials: usize,
    /// The capacity (Mpps, both directions) instead of calibrating.
    #[arg(long)]
    capacity_mpps: Option<f64>,
    /// Only the fixed-rate trials (no full-speed ones).
    #[arg(long)]
    fixed_only: bool,
    /// Unanswered transactions the writer allows.
    #[arg(long, default_value_t = 256)]
    max_in_flight: usize,
    /// The acl nodes' `set_class_min_entries` (1: every address set, derived ones too, is
    /// matched by membership, so member changes need no rebuild; default: the node's).
    #[arg(long)]
    set_class_min_entries: Option<usize>,
    /// The DUT's `[ovn] translation_pacing` (0: whole translations unpaced; default: the
    /// dataplane's).
    #[arg(long)]
    translation_pacing: Option<f64>,
    /// CPU of this process, the NB server and the writer.
    #[arg(long, default_value_t = 0)]
    helpers_cpu: usize,
    /// Write the results here.
    #[arg(long)]
    json: Option<PathBuf>,
}

/// The DUT's counters at one moment (Prometheus).
#[derive(Debug, Clone, Default)]
struct DutCounters {
    rx: u64,
    tx: u64,
    /// The workers' busy TSC cycles (polls that received packets).
    busy_cycles: u64,
    /// `node/reason` (and `port/...`, `worker/...`) -> count.
    drops: BTreeMap<String, u64>,
}

fn label<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let i = line.find(&format!("{key}=\""))? + key.len() + 2;
    line[i..].split('"').next()
}

fn value(line: &str) -> u64 {
    line.rsplit(' ')
        .next()
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0) as u64
}

fn scrape(addr: &str) -> Result<DutCounters, String> {
    let text = http_get_metrics(addr).map_err(|e| format!("metrics {addr}: {e}"))?;
    let mut c = DutCounters::default();
    for l in text.lines().filter(|l| !l.starts_with('#')) {
        if l.starts_with("dataplane_port_rx_packets_total") {
            c.rx += value(l);
        } else if l.starts_with("dataplane_port_tx_packets_total") {
            c.tx += value(l);
        } else if l.starts_with("dataplane_worker_busy_cycles_total") {
            c.busy_cycles += value(l);
        } else if l.starts_with("dataplane_port_rx_missed_total") {
            *c.drops.entry("port/rx-missed".into()).or_default() += value(l);
        } else if l.starts_with("dataplane_worker_tx_dropped_total") {
            *c.drops.entry("port/tx-dropped".into()).or_default() += value(l);
        } else if l.starts_with("dataplane_worker_rx_no_route_total") {
            *c.drops.entry("port/rx-no-route".into()).or_default() += value(l);
        } else if l.starts_with("dataplane_node_drops_total") {
            let k = format!(
                "{}/{}",
                label(l, "node").unwrap_or("?"),
                label(l, "reason").unwrap_or("?")
            );
            *c.drops.entry(k).or_default() += value(l);
        }
    }
    Ok(c)
}

/// Scrapes until two scrapes agree (the DUT publishes its counters every 500 ms).
fn settled(addr: &str) -> Result<DutCounters, String> {
    let mut last = scrape(addr)?;
    for _ in 0..20 {
        std::thread::sleep(Duration::from_millis(600));
        let c = scrape(addr)?;
        if c.rx == last.rx && c.tx == last.tx && c.drops == last.drops {
            return Ok(c);
        }
        last = c;
    }
    Ok(last)
}

fn show_ovn(socket: &Path) -> Value {
    ctl_json(socket, &["show", "ovn"])
}

fn num(v: &Value, k: &str) -> u64 {
    v[k].as_u64().unwrap_or(0)
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// Everything one trial needs.
struct Rig {
    t: VhostTopology,
    socket: PathBuf,
    metrics: String,
    nb_remote: String,
    plan: ChurnPlan,
    args: Args,
    n: usize,
    /// The DUT's log and how far the last trial read it.
    dut_log: PathBuf,
    log_pos: usize,
    /// The DUT's and the NB server's process ids (their CPU time per trial).
    dut_pid: u32,
    nb_pid: u32,
}

/// CPU ticks of the parties at one moment: the DUT's threads by name, the NB server, the
/// writer (this thread), and the time.
struct CpuMark {
    dut: BTreeMap<String, u64>,
    nb: u64,
    writer: u64,
    at: Instant,
}

impl CpuMark {
    fn now(dut_pid: u32, nb_pid: u32) -> CpuMark {
        CpuMark {
            dut: thread_ticks_by_name(dut_pid),
            nb: process_ticks(nb_pid),
            writer: this_thread_ticks(),
            at: Instant::now(),
        }
    }

    /// Each party's share of one CPU from `self` to `later`: the follower thread
    /// (`ovn-follow`), the DUT's other control threads (all but its lcore workers), the NB
    /// server and the writer (the DUT's workers, `rte-worker-N`, excluded).
    fn shares(&self, later: &CpuMark) -> Value {
        let secs = later.at.duration_since(self.at).as_secs_f64();
        let dut = shares(&self.dut, &later.dut, secs);
        let follower = dut.get(FOLLOWER_THREAD).copied().unwrap_or(0.0);
        let control: f64 = dut
            .iter()
            .filter(|(k, _)| *k != FOLLOWER_THREAD && !k.starts_with("rte-worker"))
            .map(|(_, v)| v)
            .sum();
        json!({
            "window_s": secs,
            "follower": follower,
            "dut_other_control_threads": control,
            "nb_server": share(later.nb.saturating_sub(self.nb), secs),
            "writer": share(later.writer.saturating_sub(self.writer), secs),
            "dut_threads": dut,
        })
    }
}

/// The DUT's OVN follower thread's name.
const FOLLOWER_THREAD: &str = "ovn-follow";

/// How long dpgen sleeps at a fixed rate when a pass found nothing to do: well below the
/// 160 us that fill a 256-descriptor virtio-user ring at 1.6 Mpps.
const IDLE_SLEEP_US: u64 = 20;

/// What the follower's publications of one trial did, from the DUT's log lines.
fn publications(log: &str) -> Value {
    let ms = |l: &str, after: &str| {
        l.split(after)
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    let (mut builds, mut set_rebuilds, mut members, mut lb, mut not_switched) = (0, 0, 0, 0, 0);
    let mut layered = 0;
    let mut build_ms = 0.0;
    for l in log.lines().filter(|l| l.starts_with("ovn: ")) {
        if l.starts_with("ovn: lb node") {
            lb += 1;
        } else if l.starts_with("ovn: acl node") {
            if l.contains("membership update") {
                members += 1;
            } else if l.contains("members of expanded sets changed: rebuilt") {
                set_rebuilds += 1;
                build_ms += ms(l, ") in ");
            } else if l.contains("built in ") {
                layered += u32::from(l.contains("added ACLs layered in "));
                builds += 1;
                build_ms += ms(l, "built in ");
            }
            if l.contains(" 0/1 workers switched") {
                not_switched += 1;
            }
        }
    }
    json!({"acl_full_builds": builds, "acl_set_rebuilds": set_rebuilds,
           "acl_membership_updates": members, "lb_updates": lb,
           "acl_layered_first": layered,
           "acl_build_ms_total": build_ms,
           "acl_publishes_not_switched_in_250ms": not_switched})
}

impl Rig {
    /// One trial: dpgen at `mpps` per port (0: full speed) for `--seconds`, the NB churned
    /// at `txn_rate` meanwhile.
    fn trial(&mut self, mode: &str, mpps: f64, txn_rate: f64) -> Result<Value, String> {
        self.n += 1;
        let n = self.n;
        let gen_json = self.t.scratch.path(&format!("gen-{n}.json"));
        let read_flag = gen_json.with_extension("read");
        let opts = DpgenOpts {
            traffic: Traffic {
                size: "64".into(),
                flows: self.args.flows,
            },
            stats_period: 0.0,
            linger: 30.0,
            linger_until: Some(read_flag.clone()),
            specs: perf::topology::vip_specs(self.args.flows, 0),
            // With --fixed-realtime, at a fixed rate the generator has priority on the CPU it
            // shares with the NB server, the writer and the DUT's control threads, and sleeps
            // between bursts.
            realtime: mpps > 0.0 && self.args.fixed_realtime,
            idle_sleep_us: if mpps > 0.0 && self.args.fixed_realtime {
                IDLE_SLEEP_US
            } else {
                0
            },
            rx_ring: self.args.gen_rx_ring,
            ..DpgenOpts::default()
        };
        // The previous trial's churn fully published first (the follower coalesces for up to
        // a second after the last transaction), so no trial sees another's publications.
        // Quiet: translations, publishes and the DUT's log unchanged for two checks 1.5 s
        // apart (a classifier build on a busy control core can take seconds).
        let mark = |r: &Rig| {
            let o = show_ovn(&r.socket);
            (
                num(&o, "translations"),
                num(&o, "publishes"),
                std::fs::metadata(&r.dut_log).map_or(0, |m| m.len()),
                // A whole translation waiting for the pacing is not quiet.
                o["pacing_holds"].as_bool().unwrap_or(false),
            )
        };
        let (mut last, mut still) = (mark(self), 0);
        let quiet_deadline = Instant::now() + Duration::from_secs(60);
        while still < 2 && Instant::now() < quiet_deadline {
            std::thread::sleep(Duration::from_millis(1500));
            let now = mark(self);
            still = if now == last && !now.3 { still + 1 } else { 0 };
            last = now;
        }
        let before = settled(&self.metrics)?;
        self.log_pos = std::fs::metadata(&self.dut_log).map_or(0, |m| m.len() as usize);
        let ovn_before = show_ovn(&self.socket);
        let secs = self.args.seconds;
        let cpu_before = CpuMark::now(self.dut_pid, self.nb_pid);
        let mut gen =
            self.t
                .start_dpgen_with(mpps, secs, &gen_json, &opts, &format!("dpgen-{n}.log"));
        // The writer covers dpgen's start-up (about a second) and sending time.
        let churn_secs = secs + 1.5;
        let started = Instant::now();
        let writer: Option<WriterReport> = if txn_rate > 0.0 {
            let mut w = NbWriter::connect(&self.nb_remote)?;
            let total = (txn_rate * churn_secs).round() as u64;
            Some(w.run(
                &mut self.plan,
                txn_rate,
                total,
                self.args.max_in_flight,
                Duration::from_secs(5),
            ))
        } else {
            None
        };
        let deadline = started + Duration::from_secs_f64(secs + 60.0);
        while !gen_json.exists() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        if !gen_json.exists() {
            return Err(format!("dpgen wrote no JSON:\n{}", gen.output()));
        }
        let cpu = cpu_before.shares(&CpuMark::now(self.dut_pid, self.nb_pid));
        let after = settled(&self.metrics)?;
        let log = std::fs::read(&self.dut_log).unwrap_or_default();
        let pubs = publications(&String::from_utf8_lossy(
            log.get(self.log_pos..).unwrap_or_default(),
        ));
        let ovn_after = show_ovn(&self.socket);
        let _ = std::fs::write(&read_flag, b"");
        if gen.wait(Duration::from_secs(60)) != Some(0) {
            return Err(format!("dpgen failed:\n{}", gen.output()));
        }
        let g: Value = serde_json::from_str(
            &std::fs::read_to_string(&gen_json).map_err(|e| format!("dpgen json: {e}"))?,
        )
        .map_err(|e| e.to_string())?;
        let ports = g["ports"].as_array().cloned().unwrap_or_default();
        let sum_u = |k: &str| ports.iter().map(|p| num(p, k)).sum::<u64>();
        let sum_f = |k: &str| {
            ports
                .iter()
                .map(|p| p[k].as_f64().unwrap_or(0.0))
                .sum::<f64>()
        };
        let (sent, received) = (sum_u("tx"), sum_u("rx"));
        let lost = sent.saturating_sub(received);
        let fwd = sum_f("rx_mpps");
        let mut drops: BTreeMap<String, u64> = BTreeMap::new();
        for (k, v) in &after.drops {
            let d = v.saturating_sub(before.drops.get(k).copied().unwrap_or(0));
            if d != 0 {
                drops.insert(k.clone(), d);
            }
        }
        let counted: u64 = drops.values().sum();
        let misjudged: u64 = drops
            .iter()
            .filter(|(k, _)| k.starts_with("acl_in/") || k.starts_with("acl_out/"))
            .map(|(_, v)| v)
            .sum();
        let (din, dout) = (after.rx - before.rx, after.tx - before.tx);
        // The worker's own cost per packet: what churn costs the DUT, whatever the
        // generator (which shares its CPU with the NB, the writer and the follower) offers.
        let cycles = (after.busy_cycles - before.busy_cycles) as f64 / din.max(1) as f64;
        let d = |k: &str| num(&ovn_after, k).saturating_sub(num(&ovn_before, k));
        let publishes = d("publishes");
        let w = writer.as_ref();
        let t = json!({
            "mode": mode, "offered_mpps_per_port": mpps, "txn_rate": txn_rate,
            "forwarded_mpps": fwd, "sent_mpps": sum_f("tx_mpps"),
            "generator_sent": sent, "generator_received": received, "lost": lost,
            "tx_full": sum_u("tx_full"),
            "dut": {"in": din, "out": dout, "counted_drops": counted,
                    "unaccounted": din as i64 - dout as i64 - counted as i64,
                    "drops_by_reason": drops},
            "misjudged": misjudged,
            "dut_busy_cycles_per_packet": cycles,
            "cpu_share": cpu,
            "nb": {
                "committed": w.map_or(0, |w| w.committed), "errors": w.map_or(0, |w| w.errors),
                "achieved_per_s": w.map_or(0.0, |w| w.achieved_per_s),
                "writer": w.map(|w| serde_json::to_value(w).unwrap_or(Value::Null)),
                "follower_updates": d("updates"), "translations": d("translations"),
                "unchanged": d("unchanged"), "publishes": publishes,
                "publish_failures": d("publish_failures"),
                "translation_ms": d("translation_ms"), "paced": d("paced"),
                "paced_wait_max_ms_so_far": num(&ovn_after, "paced_wait_max_ms"),
                "publishes_per_s": publishes as f64 / churn_secs,
                "publications": pubs,
            },
        });
        println!(
            "{mode:>5} {:>5.3} Mpps/port offered, {txn_rate:>5} txn/s: forwarded {fwd:.3} Mpps ({cycles:.0} cycles/pkt), lost {lost}, misjudged {misjudged}, DUT drops {counted}, txn {} ({:.0}/s, {} errors, late max {:.1} ms), CPU follower {:.2} NB server {:.2} writer {:.2}, publishes {publishes}: {pubs}",
            mpps,
            w.map_or(0, |w| w.committed),
            w.map_or(0.0, |w| w.achieved_per_s),
            w.map_or(0, |w| w.errors),
            w.map_or(0.0, |w| w.max_late_ms),
            t["cpu_share"]["follower"].as_f64().unwrap_or(0.0),
            t["cpu_share"]["nb_server"].as_f64().unwrap_or(0.0),
            t["cpu_share"]["writer"].as_f64().unwrap_or(0.0),
        );
        Ok(t)
    }
}

/// Sets this (main) thread's CPUs (`taskset -p -c LIST`); children inherit them.
fn set_cpus(list: &str) -> Result<(), String> {
    let out = std::process::Command::new("taskset")
        .args(["-p", "-c", list, &std::process::id().to_string()])
        .output()
        .map_err(|e| format!("taskset: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "taskset -c {list}: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(())
}

/// The CPUs this process may use (`Cpus_allowed_list` of /proc/self/status).
fn allowed_cpus() -> String {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| perf::cpu_time::cpus_allowed(&s))
        .unwrap_or_else(|| "0-1".into())
}

fn run(a: Args) -> Result<Value, String> {
    // The NB server (started now) and the writer (this thread) on the helpers' CPU; the
    // DUT is started with every CPU allowed (it pins its own lcores).
    let all_cpus = allowed_cpus();
    let helpers = a.helpers_cpu.to_string();
    set_cpus(&helpers)?;
    let rates: Vec<f64> = a
        .rates
        .split(',')
        .map(|r| {
            r.trim()
                .parse::<f64>()
                .map_err(|_| format!("--rates: {r:?}"))
        })
        .collect::<Result<_, _>>()?;
    if !rates.contains(&0.0) {
        return Err("--rates must include 0 (the reference)".into());
    }
    let mix = ChurnMix::parse(&a.mix)?;
    let nb = NbServer::start("ovn-churn");
    let nb_pid = nb.pid().ok_or("the NB server is not running")?;
    let mut w = NbWriter::connect(&nb.remote())?;
    w.transact(
        perf::ovn_churn::seed_params(a.acls),
        Duration::from_secs(30),
    )
    .map_err(|e| format!("seeding the NB: {e}"))?;
    drop(w);

    let t = VhostTopology::new("ovn-churn");
    let socket = t.scratch.path("ctl.sock");
    let stats = t.scratch.path("dut.json");
    let ct = (a.flows as usize * 4).max(65_536);
    let cfg = t.dataplane_config_lsps(
        &perf::ovn_churn::dut_tables(
            &nb.remote(),
            &socket.display().to_string(),
            ct,
            a.set_class_min_entries,
            a.translation_pacing,
        ),
        ["fh0", "mh0"],
    );
    set_cpus(&all_cpus)?;
    let mut dut: Proc = t.start_dataplane(&cfg, &stats, 0.0);
    set_cpus(&helpers)?;
    if !wait_for_paths(&[&t.sock0, &t.sock1, &socket], Duration::from_secs(30)) {
        return Err(format!("DUT did not come up:\n{}", dut.output()));
    }
    // The follower's first publish: every ACL taken, nothing refused.
    let deadline = Instant::now() + Duration::from_secs(30);
    let first = loop {
        let s = show_ovn(&socket);
        if num(&s, "publishes") >= 2 {
            break s;
        }
        if Instant::now() > deadline {
            return Err(format!(
                "the DUT never published the NB policy: {s}\n{}",
                dut.output()
            ));
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let refused = first["refused"].as_array().map_or(0, Vec::len);
    println!(
        "ovn-churn: NB seeded with {} ACLs; the DUT took {}, refused {refused}, publishes {}",
        a.acls + 9,
        first["acls_taken"],
        first["publishes"]
    );
    let metrics = metrics_addr(&dut.output()).ok_or("no Prometheus endpoint in the DUT log")?;
    let mut rig = Rig {
        t,
        socket,
        metrics,
        nb_remote: nb.remote(),
        plan: ChurnPlan::new(
            perf::ovn_churn::targets(),
            mix,
            a.window,
            std::process::id(),
        ),
        args: a,
        n: 0,
        dut_log: dut.log.clone(),
        log_pos: 0,
        dut_pid: dut.child.id(),
        nb_pid,
    };
    // Capacity: the best of `--calib-trials` full-speed trials without churn (the machine
    // may be shared: one slow trial must not set the fixed rate), unless given.
    let mut cals = Vec::new();
    for _ in 0..rig.args.calib_trials.max(1) {
        cals.push(rig.trial("calib", 0.0, 0.0)?);
    }
    let best = cals
        .iter()
        .map(|c| c["forwarded_mpps"].as_f64().unwrap_or(0.0))
        .fold(0.0, f64::max);
    let capacity = rig.args.capacity_mpps.unwrap_or(best);
    let cal = json!({"mode": "calib", "forwarded_mpps": capacity, "trials": cals});
    if capacity <= 0.0 {
        return Err(format!("calibration forwarded nothing: {cal}"));
    }
    // Port 0 sends, port 1 answers each packet: the offered rate per port is half the total.
    let fixed = rig.args.fixed_fraction * capacity / 2.0;
    println!("ovn-churn: capacity {capacity:.3} Mpps (both directions), fixed rate {fixed:.3} Mpps per port ({} of capacity)", rig.args.fixed_fraction);
    let follower_cpus = thread_cpus(rig.dut_pid, FOLLOWER_THREAD).unwrap_or_else(|| "?".into());
    let worker_cpus = thread_cpus(rig.dut_pid, "rte-worker-1").unwrap_or_else(|| "?".into());
    println!(
        "ovn-churn: CPUs: generator (dpgen) 0, DUT worker {worker_cpus}, DUT OVN follower {follower_cpus}, this process + NB server + writer {}",
        rig.args.helpers_cpu
    );
    let modes: Vec<(&str, f64)> = if rig.args.fixed_only {
        vec![("fixed", fixed)]
    } else {
        vec![("fixed", fixed), ("max", 0.0)]
    };
    let mut trials: Vec<Value> = cal["trials"].as_array().cloned().unwrap_or_default();
    for r in 0..rig.args.rounds {
        for &(mode, mpps) in &modes {
            for k in 0..rates.len() {
                let rate = rates[(k + r) % rates.len()];
                trials.push(rig.trial(mode, mpps, rate)?);
            }
        }
    }
    let s = show_ovn(&rig.socket);
    dut.interrupt();
    let clean = dut.wait(Duration::from_secs(30)) == Some(0);
    let stats: Value = std::fs::read_to_string(&stats)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or(Value::Null);
    let leaked: u64 = stats["mempools"]
        .as_array()
        .map(|m| m.iter().map(|x| num(x, "in_use_after_stop")).sum())
        .unwrap_or(0);

    // Medians per mode and rate.
    let measured: Vec<&Value> = trials.iter().filter(|t| t["mode"] != "calib").collect();
    let mut summary = serde_json::Map::new();
    for &(mode, _) in &modes {
        let of = |rate: f64| {
            measured
                .iter()
                .filter(|t| t["mode"] == mode && t["txn_rate"].as_f64() == Some(rate))
                .copied()
                .collect::<Vec<_>>()
        };
        let base = median(
            &of(0.0)
                .iter()
                .map(|t| t["forwarded_mpps"].as_f64().unwrap_or(0.0))
                .collect::<Vec<_>>(),
        );
        let mut per = serde_json::Map::new();
        for &rate in &rates {
            let ts = of(rate);
            let f =
                |k: &dyn Fn(&Value) -> f64| median(&ts.iter().map(|t| k(t)).collect::<Vec<_>>());
            let fwd = f(&|t| t["forwarded_mpps"].as_f64().unwrap_or(0.0));
            per.insert(
                format!("{rate}"),
                json!({
                    "forwarded_mpps_median": fwd,
                    "forwarded_mpps_rounds": ts.iter().map(|t| t["forwarded_mpps"].clone()).collect::<Vec<_>>(),
                    "ratio_to_no_churn": fwd / base,
                    "lost": ts.iter().map(|t| num(t, "lost")).sum::<u64>(),
                    "misjudged": ts.iter().map(|t| num(t, "misjudged")).sum::<u64>(),
                    "dut_counted_drops": ts.iter().map(|t| num(&t["dut"], "counted_drops")).sum::<u64>(),
                    "txn_per_s_median": f(&|t| t["nb"]["achieved_per_s"].as_f64().unwrap_or(0.0)),
                    "txn_errors": ts.iter().map(|t| num(&t["nb"], "errors")).sum::<u64>(),
                    "publishes_per_s_median": f(&|t| t["nb"]["publishes_per_s"].as_f64().unwrap_or(0.0)),
                    "acl_build_ms_per_s_median": f(&|t| t["nb"]["publications"]["acl_build_ms_total"].as_f64().unwrap_or(0.0) / (rig.args.seconds + 1.5)),
                    "dut_busy_cycles_per_packet_median": f(&|t| t["dut_busy_cycles_per_packet"].as_f64().unwrap_or(0.0)),
                    "follower_cpu_share_median": f(&|t| t["cpu_share"]["follower"].as_f64().unwrap_or(0.0)),
                    "dut_other_control_cpu_share_median": f(&|t| t["cpu_share"]["dut_other_control_threads"].as_f64().unwrap_or(0.0)),
                    "nb_server_cpu_share_median": f(&|t| t["cpu_share"]["nb_server"].as_f64().unwrap_or(0.0)),
                    "writer_cpu_share_median": f(&|t| t["cpu_share"]["writer"].as_f64().unwrap_or(0.0)),
                    "publications": {
                        "acl_full_builds": ts.iter().map(|t| num(&t["nb"]["publications"], "acl_full_builds")).sum::<u64>(),
                        "acl_set_rebuilds": ts.iter().map(|t| num(&t["nb"]["publications"], "acl_set_rebuilds")).sum::<u64>(),
                        "acl_membership_updates": ts.iter().map(|t| num(&t["nb"]["publications"], "acl_membership_updates")).sum::<u64>(),
                        "lb_updates": ts.iter().map(|t| num(&t["nb"]["publications"], "lb_updates")).sum::<u64>(),
                        "translations": ts.iter().map(|t| num(&t["nb"], "translations")).sum::<u64>(),
                    },
                }),
            );
        }
        summary.insert(mode.to_string(), Value::Object(per));
    }
    let all = |k: &str| measured.iter().map(|t| num(t, k)).sum::<u64>();
    // Packets lost in the trials of `mode` with churn (`churn`) or without.
    let lost = |mode: &str, churn: bool| -> u64 {
        measured
            .iter()
            .filter(|t| t["mode"] == mode && (t["txn_rate"].as_f64().unwrap_or(0.0) > 0.0) == churn)
            .map(|t| num(t, "lost"))
            .sum()
    };
    // Lost at the fixed (sustainable) rate while the NB churns: the DUT's loss.
    let lost_fixed = lost("fixed", true);
    let pick = |mode: &str, rate: &str, k: &str| summary.get(mode).map(|m| m[rate][k].clone());
    // The headline is the fixed rate: a load below capacity. At full speed the generator and
    // the control plane share CPU 0 and every trial, with or without churn, overloads the
    // DUT (it loses packets without churn too): those figures are reported, not judged.
    let headline_mode = "fixed";
    let mut doc = json!({
        "ovn_churn_forwarding_ratio_1000": pick(headline_mode, "1000", "ratio_to_no_churn"),
        "ovn_churn_forwarding_ratio_100": pick(headline_mode, "100", "ratio_to_no_churn"),
        "ovn_churn_forwarding_ratio_1000_fixed": pick("fixed", "1000", "ratio_to_no_churn"),
        "ovn_churn_forwarding_ratio_1000_max": pick("max", "1000", "ratio_to_no_churn"),
        "ovn_churn_forwarding_ratio_100_max": pick("max", "100", "ratio_to_no_churn"),
        "ovn_churn_lost": lost_fixed,
        "ovn_churn_lost_max": lost("max", true),
        "ovn_churn_lost_max_no_churn": lost("max", false),
        "ovn_churn_misjudged": all("misjudged"),
        "ovn_churn_mpps_no_churn": pick(headline_mode, "0", "forwarded_mpps_median"),
        "ovn_churn_mpps_1000": pick(headline_mode, "1000", "forwarded_mpps_median"),
        "ovn_churn_txn_per_s_1000": pick(headline_mode, "1000", "txn_per_s_median"),
        "ovn_churn_txn_per_s_100": pick(headline_mode, "100", "txn_per_s_median"),
        "ovn_churn_publishes_per_s_1000": pick(headline_mode, "1000", "publishes_per_s_median"),
        "ovn_churn_lost_fixed": lost_fixed,
        "ovn_churn_follower_cpu_share_1000": pick(headline_mode, "1000", "follower_cpu_share_median"),
        "ovn_churn_nb_server_cpu_share_1000": pick(headline_mode, "1000", "nb_server_cpu_share_median"),
        "ovn_churn_writer_cpu_share_1000": pick(headline_mode, "1000", "writer_cpu_share_median"),
        "cpus": {"generator": "0", "dut_worker": worker_cpus, "helpers": rig.args.helpers_cpu,
                 "dut_ovn_follower": follower_cpus},
        "headline_mode": headline_mode, "fixed_realtime": rig.args.fixed_realtime, "gen_rx_ring": rig.args.gen_rx_ring,
        "capacity_mpps": capacity, "fixed_mpps_per_port": fixed,
        "rounds": rig.args.rounds, "seconds": rig.args.seconds, "rates": rates,
        "acls": rig.args.acls + 9, "set_class_min_entries": rig.args.set_class_min_entries,
        "translation_pacing": rig.args.translation_pacing, "mix": rig.args.mix, "window": rig.args.window,
        "flows": rig.args.flows, "acls_taken": first["acls_taken"], "refused": refused,
        "summary": summary,
        "dut_stopped_cleanly": clean, "dut_leaked_mbufs": leaked,
        "ovn_at_end": s,
        "trials": trials,
    });
    for &(mode, _) in &modes {
        for &rate in &rates {
            let m = &doc["summary"][mode][format!("{rate}")];
            let p = &m["publications"];
            println!(
                "{mode:>5} {rate:>5} txn/s: forwarded median {:.3} Mpps (x{:.3} of no churn), DUT {:.0} cycles/pkt, lost {}, misjudged {}, txn/s {:.0}, publishes/s {:.2}; CPU share follower {:.2}, NB server {:.2}, writer {:.2}, DUT other control {:.2}; translations {}, ACL builds {} + set rebuilds {}, membership batches {}, LB updates {}",
                m["forwarded_mpps_median"].as_f64().unwrap_or(0.0),
                m["ratio_to_no_churn"].as_f64().unwrap_or(0.0),
                m["dut_busy_cycles_per_packet_median"].as_f64().unwrap_or(0.0),
                m["lost"], m["misjudged"],
                m["txn_per_s_median"].as_f64().unwrap_or(0.0),
                m["publishes_per_s_median"].as_f64().unwrap_or(0.0),
                m["follower_cpu_share_median"].as_f64().unwrap_or(0.0),
                m["nb_server_cpu_share_median"].as_f64().unwrap_or(0.0),
                m["writer_cpu_share_median"].as_f64().unwrap_or(0.0),
                m["dut_other_control_cpu_share_median"].as_f64().unwrap_or(0.0),
                p["translations"], p["acl_full_builds"], p["acl_set_rebuilds"],
                p["acl_membership_updates"], p["lb_updates"],
            );
        }
    }
    if !clean {
        doc["dut_log_tail"] = json!(dut.output().lines().rev().take(20).collect::<Vec<_>>());
    }
    Ok(doc)
}

fn main() -> ExitCode {
    let a = Args::parse();
    let json_path = a.json.clone();
    match run(a) {
        Ok(doc) => {
            println!(
                "ovn-churn: ratio at 1000 txn/s {} ({}), {} at full speed; lost under churn {} (at full speed {}, and {} there without churn), misjudged {}; CPU share at 1000 txn/s: follower {}, NB server {}",
                doc["ovn_churn_forwarding_ratio_1000"],
                doc["headline_mode"],
                doc["ovn_churn_forwarding_ratio_1000_max"],
                doc["ovn_churn_lost"],
                doc["ovn_churn_lost_max"],
                doc["ovn_churn_lost_max_no_churn"],
                doc["ovn_churn_misjudged"],
                doc["ovn_churn_follower_cpu_share_1000"],
                doc["ovn_churn_nb_server_cpu_share_1000"],
            );
            if let Some(p) = json_path {
                let text = serde_json::to_string_pretty(&doc).expect("serialises") + "\n";
                if let Err(e) = std::fs::write(&p, text) {
                    eprintln!("ovn-churn: {}: {e}", p.display());
                    return ExitCode::FAILURE;
                }
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("ovn-churn: {e}");
            ExitCode::FAILURE
        }
    }
}
