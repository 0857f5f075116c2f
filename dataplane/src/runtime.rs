//! `dataplane run`: brings up EAL, mempools and ports from a plan, launches the workers,
//! reports stats from the main lcore, and tears everything down in order.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::control::context::runtime_snapshots;
use crate::control::{self, ControlServer, ControlState, Ctx};
use crate::counters::{WorkerCounters, WorkerSnapshot};
use crate::device::Device;
use crate::dpdk::{self, lcore, Eal, Mempool, Port, PortConfig, PortStats};
use crate::hugepages;
use crate::plan::Plan;
use crate::worker::{Forwarding, RxBinding, Worker};
use pipeline::{
    render_runtime_table, CtSampler, Graph, PortInfo, RuntimeSnapshot, StatsHandle, TraceHandle,
};

/// How often the control loop runs (stats, signals, reloads, the control socket).
const CONTROL_PASS: Duration = Duration::from_millis(10);

/// Options of one run that are not in the config file.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Stop by itself after this many seconds.
    pub duration: Option<f64>,
    /// Seconds between stats lines (0: none).
    pub stats_period: f64,
    /// Where to write final counters as JSON.
    pub stats_json: Option<PathBuf>,
    /// More EAL arguments (after the config's).
    pub extra_eal_args: Vec<String>,
    /// Do not reserve or mount huge pages.
    pub no_hugepage_setup: bool,
    /// Stop when this is set (besides signals and the duration); for embedding and tests.
    pub stop: Option<Arc<AtomicBool>>,
    /// Record the path of the first this-many packets (over all workers) through the pipeline.
    pub trace: u32,
    /// Serve Prometheus metrics on this address from the control loop.
    pub prometheus: Option<std::net::SocketAddr>,
    /// The control socket's path instead of the plan's (`dataplane ctl`); `Some(None)`: none.
    pub control_socket: Option<Option<PathBuf>>,
}

/// Final counters of one port.
#[derive(Debug, Clone, Serialize)]
pub struct PortReport {
    /// Our name.
    pub name: String,
    /// Role.
    pub role: String,
    /// Device.
    pub device: String,
    /// DPDK port id.
    pub port_id: u16,
    /// Driver name.
    pub driver: String,
    /// MAC address.
    pub mac: String,
    /// Hardware (driver) counters.
    pub hw: PortStats,
    /// Packets the workers received from it.
    pub rx: u64,
    /// Packets the workers sent on it.
    pub tx: u64,
    /// Packets dropped on its full tx queues.
    pub tx_dropped: u64,
    /// Packets it received that had nowhere to go.
    pub rx_no_route: u64,
    /// What the direct librte_vhost path moved (a `net_vhost` port without transmit
    /// checksum offload; included in `hw`), absent for other ports.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vhost_direct: Option<crate::dpdk::vhost::GateCounts>,
}

/// Final counters of one worker.
#[derive(Debug, Clone, Serialize)]
pub struct WorkerReport {
    /// Its lcore.
    pub lcore: u32,
    /// Its counters.
    #[serde(flatten)]
    pub counters: WorkerSnapshot,
}

/// A mempool's state after the ports were closed.
#[derive(Debug, Clone, Serialize)]
pub struct MempoolReport {
    /// Pool name.
    pub name: String,
    /// Mbufs in all.
    pub size: u32,
    /// Mbufs still out after every port was closed (0 = none leaked).
    pub in_use_after_stop: u32,
}

/// What a run did, written as `--stats-json`.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    /// DPDK version.
    pub dpdk_version: String,
    /// Config file.
    pub config: PathBuf,
    /// Seconds the workers ran.
    pub duration_s: f64,
    /// TSC frequency.
    pub tsc_hz: u64,
    /// Per port.
    pub ports: Vec<PortReport>,
    /// Per worker.
    pub workers: Vec<WorkerReport>,
    /// Per mempool.
    pub mempools: Vec<MempoolReport>,
    /// Per worker, the pipeline's per-node counters (empty without a pipeline).
    pub pipeline: Vec<RuntimeSnapshot>,
    /// Why it stopped.
    pub stopped_by: String,
    /// Config reloads (SIGHUP) applied, refused and without change.
    pub reloads: crate::reload::ReloadCounts,
}

/// A failed run.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// Huge pages could not be set up.
    #[error("huge pages: {0}")]
    Hugepages(String),
    /// A DPDK call failed.
    #[error(transparent)]
    Dpdk(#[from] dpdk::DpdkError),
    /// The pipeline could not be built for the ports EAL created.
    #[error("{0}")]
    Pipeline(String),
    /// Writing the stats file failed.
    #[error("writing {0}: {1}")]
    Io(PathBuf, std::io::Error),
}

fn fmt_mac(m: [u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Runs the plan until the duration expires or SIGINT/SIGTERM arrives.
pub fn run(plan: &Plan, opts: &RunOptions) -> Result<RunReport, RunError> {
    for w in &plan.warnings {
        eprintln!("warning: {w}");
    }
    if plan.no_huge {
        eprintln!("WARNING: ============================================================");
        eprintln!("WARNING: running WITHOUT huge pages (no_huge): development mode only,");
        eprintln!("WARNING: slower, and not what production deployments measure.");
        eprintln!("WARNING: ============================================================");
    } else if !opts.no_hugepage_setup {
        let dir = plan
            .huge_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from("/dev/hugepages"));
        for done in hugepages::ensure(plan.memory_mb as u64, &dir).map_err(RunError::Hugepages)? {
            eprintln!("setup: {done}");
        }
    }

    prepare_sockets(plan)?;
    let mut args = plan.eal_args.clone();
    args.extend(opts.extra_eal_args.iter().cloned());
    eprintln!("EAL: {}", args.join(" "));
    let eal = Eal::init(&args)?;
    if let Err(e) = eal.enable_pdump() {
        eprintln!("warning: packet capture (dpdk-dumpcap) unavailable: {e}");
    }
    let result = run_with_eal(&eal, plan, opts);
    eal.cleanup();
    result
}

/// Creates the folders of the sockets we serve, and removes stale socket files left there by
/// an earlier run (a listening socket cannot bind over them).
fn prepare_sockets(plan: &Plan) -> Result<(), RunError> {
    use std::os::unix::fs::FileTypeExt;
    for p in &plan.ports {
        let path = match &p.device {
            Device::VhostUser {
                path,
                client: false,
            }
            | Device::VirtioUser { path, server: true }
            | Device::Memif {
                socket: path,
                server: true,
                ..
            } => path,
            _ => continue,
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| RunError::Io(dir.to_owned(), e))?;
        }
        if std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket()) {
            std::fs::remove_file(path).map_err(|e| RunError::Io(path.to_owned(), e))?;
        }
    }
    Ok(())
}

/// Starts the NB follower (errors are logged: the dataplane runs on without it).
fn start_ovn(
    plan: &Plan,
    ovn: &crate::ovn::settings::OvnPlan,
    ports: &[Port],
) -> Option<crate::ovn::follow::Follower> {
    use crate::ovn::follow::{Follower, FollowerConfig};
    let macs: Vec<(String, [u8; 6])> = plan
        .ports
        .iter()
        .zip(ports)
        .map(|(pp, p)| (pp.name.clone(), p.mac()))
        .collect();
    let local = ovn.local_ports(|name| macs.iter().find(|(n, _)| n == name).map(|(_, m)| *m));
    let lb_controls = plan
        .pipeline
        .iter()
        .flat_map(|g| &g.nodes)
        .filter(|n| n.kind == "lb")
        .filter_map(|n| {
            let c = n.params.get("control")?.as_str()?;
            Some((n.name.clone(), c.to_string()))
        })
        .collect();
    let cfg = FollowerConfig {
        client: ovn.client_config(),
        ports: local,
        options: ovn.options(),
        targets: ovn.targets.clone(),
        coalesce: std::time::Duration::from_millis(10),
        pacing: ovn.translation_pacing,
    };
    match Follower::start(
        cfg,
        Box::new(crate::ovn::sink::DataplaneSink { lb_controls }),
    ) {
        Ok(f) => {
            eprintln!("ovn: following {}", ovn.remotes.join(","));
            crate::ovn::follow::set_current(Some(std::sync::Arc::clone(f.status())));
            Some(f)
        }
        Err(e) => {
            eprintln!("warning: ovn: {e}");
            None
        }
    }
}

/// Runs the plan on an EAL that is already up, whose ports (named as the plan's ethdevs)
/// exist. Stops on SIGINT/SIGTERM, `opts.duration` or `opts.stop`.
pub fn run_with_eal(eal: &Eal, plan: &Plan, opts: &RunOptions) -> Result<RunReport, RunError> {
    let stop = Arc::new(AtomicBool::new(false));
    let signalled = opts
        .stop
        .clone()
        .unwrap_or_else(|| Arc::new(AtomicBool::new(false)));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        let _ = signal_hook::flag::register(sig, Arc::clone(&signalled));
    }
    let (stop, signalled) = (&stop, &signalled);
    let mut ports: Vec<Port> = Vec::with_capacity(plan.ports.len());
    for p in &plan.ports {
        ports.push(Port::by_name(eal, p.eal.ethdev_name())?);
    }
    let mut pools: BTreeMap<i32, Mempool> = BTreeMap::new();
    for port in &ports {
        let s = port.socket().max(0);
        if let std::collections::btree_map::Entry::Vacant(e) = pools.entry(s) {
            let m = &plan.mempool;
            e.insert(Mempool::create(
                eal,
                &format!("mbufs_s{s}"),
                m.mbufs,
                m.cache,
                m.data_room,
                s,
            )?);
        }
    }
    let outcome = run_ports(eal, plan, opts, &mut ports, &pools, stop, signalled);
    // Close every port so its queues give their mbufs back, then check the pools.
    for port in ports {
        let name = port.name().to_owned();
        if let Err(e) = port.close() {
            eprintln!("warning: closing {name}: {e}");
        }
    }
    let mempools: Vec<MempoolReport> = pools
        .values()
        .map(|p| MempoolReport {
            name: p.name().to_owned(),
            size: p.size(),
            in_use_after_stop: p.in_use(),
        })
        .collect();
    for (_, pool) in pools {
        if let Err((pool, out)) = pool.free() {
            eprintln!(
                "error: mempool {} has {out} mbufs still out after every port closed (leak)",
                pool.name()
            );
        }
    }
    let mut report = outcome?;
    report.mempools = mempools;
    if let Some(path) = opts.stats_json.as_ref().or(plan.stats_json.as_ref()) {
        write_json(path, &report)?;
    }
    Ok(report)
}

fn write_json(path: &Path, report: &RunReport) -> Result<(), RunError> {
    let text = serde_json::to_string_pretty(report).expect("report serialises");
    std::fs::write(path, text + "\n").map_err(|e| RunError::Io(path.to_owned(), e))
}

fn run_ports(
    eal: &Eal,
    plan: &Plan,
    opts: &RunOptions,
    ports: &mut [Port],
    pools: &BTreeMap<i32, Mempool>,
    stop: &Arc<AtomicBool>,
    signalled: &Arc<AtomicBool>,
) -> Result<RunReport, RunError> {
    for (port, pp) in ports.iter_mut().zip(&plan.ports) {
        let cfg = PortConfig {
            rx_queues: pp.rx_queues,
            tx_queues: pp.tx_queues,
            rxd: pp.rxd,
            txd: pp.txd,
            mtu: pp.mtu,
            promiscuous: pp.promiscuous,
            tx_checksum: pp.tx_checksum_offload,
        };
        port.configure(&cfg, &pools[&port.socket().max(0)])?;
        port.start()?;
        let o = port.offloads();
        let yn = |b: bool| if b { "yes" } else { "no" };
        eprintln!(
            "port {} ({}, {}) id {} mac {} driver {}: started, {} rxq / {} txq{}{}",
            pp.name,
            pp.role,
            pp.device,
            port.id(),
            fmt_mac(port.mac()),
            port.driver(),
            pp.rx_queues,
            pp.tx_queues,
            if pp.tx_checksum_offload {
                format!(
                    ", tx checksum offload: ipv4 {}, tcp+udp {}",
                    yn(o.tx_ipv4_csum),
                    yn(o.tx_l4_csum)
                )
            } else {
                String::new()
            },
            if port.vhost_direct_counts().is_some() {
                ", direct librte_vhost data path"
            } else {
                ""
            }
        );
    }

    // SIGHUP reloads the config from here on (handled by the control loop).
    let mut reloader = crate::reload::Reloader::new(plan);
    // Build every worker (and its graph) before launching any, so a failure leaves none running.
    let mut workers = Vec::new();
    let mut graphs: Vec<(u32, StatsHandle)> = Vec::new();
    let mut samplers: Vec<(u32, CtSampler)> = Vec::new();
    // One tracer for every worker's graph: `trace add N` traces N packets in all.
    let tracer = TraceHandle::default();
    if opts.trace > 0 {
        tracer.arm(opts.trace);
    }
    for (wi, wp) in plan.workers.iter().enumerate() {
        let c = Arc::new(WorkerCounters::new(ports.len()));
        let forwarding = match &plan.pipeline {
            None => Forwarding::CrossConnect,
            Some(spec) => {
                let infos: Vec<PortInfo> = ports
                    .iter()
                    .zip(&plan.ports)
                    .map(|(p, pp)| {
                        let o = p.offloads();
                        PortInfo::new(p.id(), pp.name.clone(), pp.role.clone())
                            .with_tx_csum(o.tx_ipv4_csum, o.tx_l4_csum)
                    })
                    .collect();
                let mut g = Graph::build(spec, &crate::nodes::registry(), &infos)
                    .map_err(|e| RunError::Pipeline(format!("pipeline.{}: {}", e.key, e.reason)))?;
                g.share_tracer(tracer.clone(), format!("lcore {}", wp.lcore));
                graphs.push((wp.lcore, g.stats()));
                samplers.extend(g.ct_samplers().into_iter().map(|(_, s)| (wp.lcore, s)));
                let txv = g.new_tx_vectors();
                Forwarding::Graph(Box::new(g), txv)
            }
        };
        let worker = Worker {
            forwarding,
            rx: wp
                .rx
                .iter()
                .map(|&(p, q)| RxBinding {
                    queue: ports[p].rx_queue(q),
                    port: p,
                    out: plan.peer[p],
                    stamp_port: ports[p].driver() == "net_ring",
                })
                .collect(),
            tx: ports.iter().map(|p| p.tx_queue(wi as u16)).collect(),
            counters: Arc::clone(&c),
            stop: Arc::clone(stop),
            burst: plan.burst as usize,
            tx_retries: plan.tx_retries,
        };
        workers.push((wp.lcore, c, worker));
    }
    let mut counters = Vec::new();
    let mut launched = Vec::new();
    let mut launch_err = None;
    for (lcore_id, c, worker) in workers {
        match lcore::launch(eal, lcore_id, move || worker.run()) {
            Ok(()) => {
                launched.push(lcore_id);
                counters.push((lcore_id, c));
            }
            Err(e) => {
                launch_err = Some(e);
                break;
            }
        }
    }
    if launch_err.is_none() {
        if let Err(e) = control::telemetry::install(plan, &graphs) {
            eprintln!("warning: no DPDK telemetry commands: {e}");
        }
    }
    // Policy from the OVN NB: followed on its own thread, published through the hubs.
    let follower = match (&plan.ovn, &launch_err) {
        (Some(ovn), None) => start_ovn(plan, ovn, ports),
        _ => None,
    };
    // ACL log lines: drained off the workers by one control thread.
    let acl_log = match launch_err {
        None => crate::acl_log::start(plan.acl_log.clone())
            .map_err(|e| eprintln!("warning: no ACL log thread: {e}"))
            .ok(),
        Some(_) => None,
    };
    let started = Instant::now();
    let period = if opts.stats_period > 0.0 {
        opts.stats_period
    } else {
        plan.stats_period
    };
    let mut stopped_by = "launch failure".to_string();
    if launch_err.is_none() {
        eprintln!(
            "running: {} worker(s) on lcores {:?}",
            launched.len(),
            launched
        );
        let running = Running {
            ports,
            counters: &counters,
            graphs: &graphs,
            tracer: (!graphs.is_empty()).then_some(&tracer),
            samplers: &samplers,
            pools,
        };
        stopped_by = control_loop(
            plan,
            opts,
            &running,
            signalled,
            started,
            period,
            &mut reloader,
        );
    }
    control::telemetry::uninstall();
    crate::ovn::follow::set_current(None);
    drop(follower);
    stop.store(true, Ordering::SeqCst);
    for l in &launched {
        lcore::wait(eal, *l);
    }
    // The workers are stopped: the last records are drained.
    drop(acl_log);
    let duration_s = started.elapsed().as_secs_f64();
    if let Some(e) = launch_err {
        return Err(e.into());
    }

    let runtime = runtime_snapshots(&graphs);
    if !runtime.is_empty() {
        println!("---- pipeline runtime (like VPP's show runtime) ----");
        print!("{}", render_runtime_table(&runtime));
    }
    if opts.trace > 0 && !graphs.is_empty() {
        println!("---- trace ----");
        print!("{}", tracer.render());
    }
    let snaps: Vec<(u32, WorkerSnapshot)> =
        counters.iter().map(|(l, c)| (*l, c.snapshot())).collect();
    let port_reports = ports
        .iter()
        .zip(&plan.ports)
        .enumerate()
        .map(|(i, (port, pp))| PortReport {
            name: pp.name.clone(),
            role: pp.role.clone(),
            device: pp.device.to_string(),
            port_id: port.id(),
            driver: port.driver(),
            mac: fmt_mac(port.mac()),
            hw: port.stats(),
            rx: snaps.iter().map(|(_, s)| s.ports[i].rx).sum(),
            tx: snaps.iter().map(|(_, s)| s.ports[i].tx).sum(),
            tx_dropped: snaps.iter().map(|(_, s)| s.ports[i].tx_dropped).sum(),
            rx_no_route: snaps.iter().map(|(_, s)| s.ports[i].rx_no_route).sum(),
            vhost_direct: port.vhost_direct_counts(),
        })
        .collect::<Vec<_>>();
    print_summary(&port_reports, &snaps, duration_s);
    Ok(RunReport {
        dpdk_version: dpdk::version(),
        config: plan.file.clone(),
        duration_s,
        tsc_hz: dpdk::tsc_hz(),
        ports: port_reports,
        workers: snaps
            .into_iter()
            .map(|(lcore, counters)| WorkerReport { lcore, counters })
            .collect(),
        mempools: Vec::new(),
        pipeline: runtime,
        stopped_by,
        reloads: reloader.counts(),
    })
}

/// What the control loop reads while the workers run: the ports, each worker's counters and
/// pipeline stats (by lcore), the tracer their graphs share, and the mempools.
struct Running<'a> {
    ports: &'a [Port],
    counters: &'a [(u32, Arc<WorkerCounters>)],
    graphs: &'a [(u32, StatsHandle)],
    tracer: Option<&'a TraceHandle>,
    samplers: &'a [(u32, CtSampler)],
    pools: &'a BTreeMap<i32, Mempool>,
}

/// Binds the control socket the options or the plan name (none if neither does, or if it
/// cannot be bound: the dataplane runs on without it, and says so).
fn bind_control(plan: &Plan, opts: &RunOptions) -> Option<ControlServer> {
    let path = match &opts.control_socket {
        Some(p) => p.clone(),
        None => plan.control_socket.clone(),
    }?;
    match ControlServer::bind(&path) {
        Ok(s) => {
            eprintln!(
                "control: listening on {} (dataplane ctl --socket {} help)",
                path.display(),
                path.display()
            );
            Some(s)
        }
        Err(e) => {
            eprintln!("warning: no control socket at {}: {e}", path.display());
            None
        }
    }
}

/// Waits on the main lcore, printing a stats line per port each period. Returns why it ended.
fn control_loop(
    plan: &Plan,
    opts: &RunOptions,
    running: &Running<'_>,
    signalled: &AtomicBool,
    started: Instant,
    period: f64,
    reloader: &mut crate::reload::Reloader,
) -> String {
    let Running {
        ports,
        counters,
        graphs,
        tracer,
        samplers,
        pools,
    } = *running;
    let mut control = bind_control(plan, opts);
    let mut control_state = ControlState::default();
    let mut last_runtime = runtime_snapshots(graphs);
    let mut exporter =
        opts.prometheus
            .and_then(|a| match crate::metrics_export::Exporter::start(a) {
                Ok(e) => {
                    eprintln!(
                        "metrics: Prometheus endpoint http://{}/metrics",
                        e.local_addr().unwrap_or(a)
                    );
                    Some(e)
                }
                Err(e) => {
                    eprintln!("warning: no Prometheus endpoint: {e}");
                    None
                }
            });
    let port_names: Vec<String> = plan.ports.iter().map(|p| p.name.clone()).collect();
    let mut last_publish = Instant::now() - Duration::from_secs(10);
    let mut last: Vec<PortStats> = ports.iter().map(Port::stats).collect();
    let mut last_drops: Vec<u64> = vec![0; ports.len()];
    let mut last_t = Instant::now();
    let deadline = opts.duration.map(|d| started + Duration::from_secs_f64(d));
    let why = loop {
        std::thread::sleep(CONTROL_PASS);
        control_state.poll_capture();
        if let Some(server) = control.as_mut() {
            server.serve(|req| {
                let mut cx = Ctx {
                    plan,
                    ports,
                    counters,
                    graphs,
                    tracer,
                    samplers,
                    pools,
                    reloader: &mut *reloader,
                    state: &mut control_state,
                    started,
                };
                control::commands::registry().run(&mut cx, &req.argv)
            });
        }
        if let Some(e) = &mut exporter {
            if last_publish.elapsed() >= Duration::from_millis(500) {
                last_publish = Instant::now();
                for (port, pp) in ports.iter().zip(&plan.ports) {
                    crate::metrics_export::publish_port(
                        &pp.name,
                        &pp.role,
                        &port.stats(),
                        port.link().up,
                    );
                }
                for (l, c) in counters {
                    crate::metrics_export::publish_worker(*l, &c.snapshot(), &port_names);
                }
                for (l, h) in graphs {
                    crate::metrics_export::publish_pipeline(*l, &h.snapshot());
                }
            }
            e.serve_pending();
        }
        if signalled.load(Ordering::Relaxed) {
            break "signal".to_string();
        }
        reloader.poll();
        if deadline.is_some_and(|d| Instant::now() >= d) {
            break "duration".to_string();
        }
        if period > 0.0 && last_t.elapsed().as_secs_f64() >= period {
            let dt = last_t.elapsed().as_secs_f64();
            last_t = Instant::now();
            let t = started.elapsed().as_secs_f64();
            for (i, (port, pp)) in ports.iter().zip(&plan.ports).enumerate() {
                let s = port.stats();
                let drops: u64 = counters
                    .iter()
                    .map(|(_, c)| c.ports[i].tx_dropped.load(Ordering::Relaxed))
                    .sum();
                let l = last[i];
                let rate = |a: u64, b: u64| (a.saturating_sub(b)) as f64 / dt;
                println!(
                    "[{t:7.1}s] {:<10} rx {:8.3} Mpps {:9.1} Mbit/s | tx {:8.3} Mpps {:9.1} Mbit/s | missed {} tx-drop {} | link {}",
                    pp.name,
                    rate(s.ipackets, l.ipackets) / 1e6,
                    rate(s.ibytes, l.ibytes) * 8.0 / 1e6,
                    rate(s.opackets, l.opackets) / 1e6,
                    rate(s.obytes, l.obytes) * 8.0 / 1e6,
                    s.imissed.saturating_sub(l.imissed),
                    drops.saturating_sub(last_drops[i]),
                    if port.link().up { "up" } else { "down" }
                );
                last[i] = s;
                last_drops[i] = drops;
            }
            if !graphs.is_empty() {
                let now = runtime_snapshots(graphs);
                let delta: Vec<RuntimeSnapshot> = now
                    .iter()
                    .zip(&last_runtime)
                    .map(|(a, b)| a.delta(b))
                    .collect();
                print!("{}", render_runtime_table(&delta));
                last_runtime = now;
            }
        }
    };
    control_state.stop_capture();
    why
}

fn print_summary(ports: &[PortReport], workers: &[(u32, WorkerSnapshot)], secs: f64) {
    println!("---- summary after {secs:.1} s ----");
    for p in ports {
        println!(
            "{:<10} rx {:>12} tx {:>12} tx-dropped {:>8} | hw rx {:>12} tx {:>12} missed {} errors {}/{}",
            p.name, p.rx, p.tx, p.tx_dropped, p.hw.ipackets, p.hw.opackets, p.hw.imissed, p.hw.ierrors, p.hw.oerrors
        );
    }
    for (l, w) in workers {
        println!(
            "worker lcore {l}: polls {} busy {} cycles/packet {:.1}",
            w.polls, w.busy_polls, w.cycles_per_packet
        );
    }
}
