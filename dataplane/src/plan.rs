//! The resolved plan: what `run` will do and `check` prints, derived from the config without
//! starting DPDK.

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::config::{ConfigError, ConfigFile};
use crate::device::{Device, EalDevice};
use crate::discovery::{cores, DiscoveredPort};

/// What the plan needs to know about the machine and platform: CPUs, and ports found by
/// discovery. Gathered by [`crate::config::load_plan`]; tests make their own.
#[derive(Debug, Clone, Default)]
pub struct Host {
    /// CPUs this process may run on (empty: unknown, anything goes).
    pub allowed_cpus: Vec<u32>,
    /// CPUs isolated from the kernel scheduler.
    pub isolated_cpus: Vec<u32>,
    /// Ports found by the `[discovery]` sources.
    pub discovered: Vec<DiscoveredPort>,
    /// Notes from discovery, shown as warnings.
    pub notes: Vec<String>,
    /// hugetlbfs mounts found (or why none), when the config names no `huge_dir` and wants
    /// huge pages; `None`: not looked at (the config's `huge_dir`, if any, is used as is).
    pub hugepages: Option<Result<Vec<crate::discovery::hugepages::HugepageMount>, String>>,
}

impl Host {
    /// A host with these allowed CPUs, all isolated, and nothing discovered.
    pub fn with_cpus(cpus: &[u32]) -> Host {
        Host {
            allowed_cpus: cpus.to_vec(),
            isolated_cpus: cpus.to_vec(),
            ..Default::default()
        }
    }
}

/// Most packets one rx burst may return (the worker's vector size).
pub const MAX_BURST: usize = 256;

/// A port as it will be set up.
#[derive(Debug, Clone, Serialize)]
pub struct PortPlan {
    /// Our name for it.
    pub name: String,
    /// Its role.
    pub role: String,
    /// What backs it.
    #[serde(serialize_with = "ser_display")]
    pub device: Device,
    /// Where it came from (config, or a discovery source).
    pub source: String,
    /// How EAL gets it.
    #[serde(skip)]
    pub eal: EalDevice,
    /// Receive queues.
    pub rx_queues: u16,
    /// Transmit queues (one per worker).
    pub tx_queues: u16,
    /// Receive descriptors per queue.
    pub rxd: u16,
    /// Transmit descriptors per queue.
    pub txd: u16,
    /// MTU, if set.
    pub mtu: Option<u16>,
    /// Promiscuous mode.
    pub promiscuous: bool,
    /// Ask for IPv4/TCP/UDP checksum offload on transmit.
    pub tx_checksum_offload: bool,
}

fn ser_display<S: serde::Serializer, T: fmt::Display>(v: &T, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(v)
}

/// A worker: the lcore it runs on and the (port index, queue) pairs it polls.
#[derive(Debug, Clone, Serialize)]
pub struct WorkerPlan {
    /// EAL lcore id.
    pub lcore: u32,
    /// (port index, rx queue) pairs, polled in this order.
    pub rx: Vec<(usize, u16)>,
}

/// Mempool sizing (one pool per NUMA socket that has ports).
#[derive(Debug, Clone, Serialize)]
pub struct MempoolPlan {
    /// Mbufs per pool.
    pub mbufs: u32,
    /// Per-lcore cache.
    pub cache: u32,
    /// Data room per mbuf, headroom included.
    pub data_room: u16,
    /// Whether `mbufs` was computed (not given).
    pub computed: bool,
}

/// Everything `run` needs, resolved and checked.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    /// The configuration file.
    pub file: PathBuf,
    /// EAL arguments, in order.
    pub eal_args: Vec<String>,
    /// The main (control) lcore.
    pub main_lcore: u32,
    /// Whether EAL runs without huge pages.
    pub no_huge: bool,
    /// Memory EAL may reserve, MiB (for huge-page set-up).
    pub memory_mb: u32,
    /// hugetlbfs mount, if given or found.
    pub huge_dir: Option<PathBuf>,
    /// The mount found by discovery and the pool size it allows (when not given).
    pub hugepages: Option<crate::hugepage_plan::HugepagePlan>,
    /// Ports, by index.
    pub ports: Vec<PortPlan>,
    /// Workers.
    pub workers: Vec<WorkerPlan>,
    /// For each port index, the port its packets cross-connect to.
    pub peer: Vec<Option<usize>>,
    /// Mempool sizing.
    pub mempool: MempoolPlan,
    /// The node graph the workers run, if any (validated against the ports).
    pub pipeline: Option<pipeline::GraphSpec>,
    /// Packets per rx burst.
    pub burst: u16,
    /// Tx retries before dropping.
    pub tx_retries: u32,
    /// Seconds between stats lines (0: none).
    pub stats_period: f64,
    /// Final stats JSON path.
    pub stats_json: Option<PathBuf>,
    /// Prometheus endpoint, if any.
    pub prometheus: Option<std::net::SocketAddr>,
    /// The control socket `dataplane ctl` talks to, if any.
    pub control_socket: Option<PathBuf>,
    /// Where ACL log lines go.
    pub acl_log: crate::acl_log::AclLogSettings,
    /// Policy from the OVN NB, when `[ovn]` is given.
    pub ovn: Option<crate::ovn::settings::OvnPlan>,
    /// Things worth a look that are not errors.
    pub warnings: Vec<String>,
}

struct Ctx<'a> {
    file: &'a Path,
}

impl Ctx<'_> {
    fn err(&self, key: impl Into<String>, reason: impl Into<String>) -> ConfigError {
        ConfigError {
            file: self.file.to_owned(),
            key: key.into(),
            reason: reason.into(),
        }
    }
}

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 32
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Parses a `--lcores` mapping like `0@0,1@1,2` into lcore ids (groups `(a,b)@c` included).
fn lcores_of_map(map: &str) -> Option<Vec<u32>> {
    let mut out = Vec::new();
    for part in split_top(map) {
        let lc = part.split('@').next()?;
        let lc = lc.trim_start_matches('(').trim_end_matches(')');
        for x in lc.split(',') {
            if let Some((a, b)) = x.split_once('-') {
                let (a, b): (u32, u32) = (a.parse().ok()?, b.parse().ok()?);
                if a > b {
                    return None;
                }
                out.extend(a..=b);
            } else {
                out.push(x.parse().ok()?);
            }
        }
    }
    Some(out)
}

/// Splits on commas that are not inside parentheses.
fn split_top(s: &str) -> Vec<&str> {
    let (mut depth, mut start, mut out) = (0i32, 0usize, Vec::new());
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out
}

/// Validates `cfg` and resolves it into a plan. `host.allowed_cpus` are used when no lcores
/// are given, and to refuse lcores outside them; `host.discovered` ports join the explicit
/// ones (explicit ports win, by name or role).
pub fn build(cfg: &ConfigFile, file: &Path, host: &Host) -> Result<Plan, ConfigError> {
    let cx = Ctx { file };
    let mut warnings = host.notes.clone();
    let allowed_cpus = host.allowed_cpus.as_slice();

    // Ports.
    if cfg.ports.is_empty() && host.discovered.is_empty() {
        return Err(cx.err("ports", "no ports configured (and none discovered)"));
    }
    let mut ports: Vec<PortPlan> = Vec::new();
    for (name, p) in &cfg.ports {
        let key = |k: &str| format!("ports.{name}.{k}");
        if !valid_name(name) {
            return Err(cx.err(
                format!("ports.{name}"),
                "port names are 1-32 letters, digits, '_' or '-'",
            ));
        }
        if !valid_name(&p.role) {
            return Err(cx.err(
                key("role"),
                "roles are 1-32 letters, digits, '_' or '-' (e.g. fronthaul)",
            ));
        }
        let device = p.device().map_err(|(k, r)| cx.err(key(k), r))?;
        if p.queues == 0 || p.queues > 16 {
            return Err(cx.err(
                key("queues"),
                format!("{} queues: must be 1 to 16", p.queues),
            ));
        }
        for (k, d) in [("rxd", p.rxd), ("txd", p.txd)] {
            if !(64..=16384).contains(&d) {
                return Err(cx.err(key(k), format!("{d} descriptors: must be 64 to 16384")));
            }
        }
        if let Some(m) = p.mtu {
            if !(68..=9600).contains(&m) {
                return Err(cx.err(key("mtu"), format!("MTU {m}: must be 68 to 9600")));
            }
        }
        ports.push(PortPlan {
            name: name.clone(),
            role: p.role.clone(),
            device,
            source: "config".into(),
            eal: EalDevice::Allow(String::new()),
            rx_queues: p.queues,
            tx_queues: 0,
            rxd: p.rxd,
            txd: p.txd,
            mtu: p.mtu,
            promiscuous: p.promiscuous,
            tx_checksum_offload: p.tx_checksum_offload,
        });
    }
    let explicit: Vec<String> = cfg
        .ports
        .iter()
        .flat_map(|(n, p)| [n.clone(), p.role.clone()])
        .collect();
    let (kept, notes) = crate::discovery::merge_ports(&explicit, host.discovered.clone());
    warnings.extend(notes);
    for d in kept {
        ports.push(PortPlan {
            name: d.name,
            role: d.role,
            device: d.device,
            source: d.source,
            eal: EalDevice::Allow(String::new()),
            rx_queues: 1,
            tx_queues: 0,
            rxd: 1024,
            txd: 1024,
            mtu: None,
            promiscuous: true,
            tx_checksum_offload: false,
        });
    }
    let mut seen_paths = BTreeSet::new();
    for p in &ports {
        let path = match &p.device {
            Device::VhostUser { path, .. } | Device::VirtioUser { path, .. } => Some(path.clone()),
            Device::Pci { address } => Some(PathBuf::from(address)),
            _ => None,
        };
        if let Some(path) = path {
            if !seen_paths.insert(path.clone()) {
                return Err(cx.err(
                    format!("ports.{}", p.name),
                    format!("{} is used by another port too", path.display()),
                ));
            }
        }
    }
    let names: Vec<String> = ports.iter().map(|p| p.name.clone()).collect();
    let port_index = |name: &str| names.iter().position(|n| n == name);

    // Lcores.
    let (lcores, lcore_arg) = match (&cfg.eal.lcore_map, &cfg.eal.lcores) {
        (Some(map), _) => {
            let l = lcores_of_map(map).ok_or_else(|| {
                cx.err(
                    "eal.lcore_map",
                    format!("{map:?} is not an lcore map like \"0@0,1@1\""),
                )
            })?;
            (l, vec!["--lcores".to_string(), map.clone()])
        }
        (None, Some(l)) => {
            if l.is_empty() {
                return Err(cx.err("eal.lcores", "empty list"));
            }
            for c in l {
                if !allowed_cpus.is_empty() && !allowed_cpus.contains(c) {
                    return Err(cx.err(
                        "eal.lcores",
                        format!("CPU {c} is not in this process's allowed CPUs {allowed_cpus:?}"),
                    ));
                }
            }
            let s = l.iter().map(u32::to_string).collect::<Vec<_>>().join(",");
            let main = cfg.eal.main_lcore.unwrap_or(l[0]);
            let not_isolated: Vec<u32> = l
                .iter()
                .copied()
                .filter(|c| *c != main && !host.isolated_cpus.contains(c))
                .collect();
            if !not_isolated.is_empty() {
                warnings.push(format!("worker CPUs {not_isolated:?} are not isolated (isolcpus/nohz_full): expect latency spikes from other work"));
            }
            (l.clone(), vec!["-l".to_string(), s])
        }
        (None, None) => {
            let lp = cores::plan_lcores(None, allowed_cpus, &host.isolated_cpus)
                .map_err(|e| cx.err("eal.lcores", e.to_string()))?;
            warnings.extend(lp.warnings.iter().cloned());
            let ids: Vec<u32> = (0..=lp.workers.len() as u32).collect();
            (ids, vec!["--lcores".to_string(), lp.eal_lcores()])
        }
    };
    let mut uniq = BTreeSet::new();
    for l in &lcores {
        if !uniq.insert(*l) {
            return Err(cx.err("eal.lcores", format!("lcore {l} listed twice")));
        }
    }
    let main_lcore = cfg.eal.main_lcore.unwrap_or(lcores[0]);
    if !lcores.contains(&main_lcore) {
        return Err(cx.err(
            "eal.main_lcore",
            format!("lcore {main_lcore} is not among the lcores {lcores:?}"),
        ));
    }
    let worker_lcores: Vec<u32> = lcores
        .iter()
        .copied()
        .filter(|&l| l != main_lcore)
        .collect();
    if worker_lcores.is_empty() {
        return Err(cx.err(
            "eal.lcores",
            "no lcore left for a worker besides the main lcore",
        ));
    }

    // Workers.
    let mut workers: Vec<WorkerPlan> = Vec::new();
    let mut polled = BTreeSet::new();
    if cfg.workers.is_empty() {
        let pairs: Vec<(usize, u16)> = ports
            .iter()
            .enumerate()
            .flat_map(|(i, p)| (0..p.rx_queues).map(move |q| (i, q)))
            .collect();
        let n = worker_lcores.len().min(pairs.len());
        workers = worker_lcores[..n]
            .iter()
            .map(|&l| WorkerPlan {
                lcore: l,
                rx: Vec::new(),
            })
            .collect();
        for (k, pq) in pairs.into_iter().enumerate() {
            workers[k % n].rx.push(pq);
            polled.insert(pq);
        }
    } else {
        for (wi, w) in cfg.workers.iter().enumerate() {
            let key = |k: &str| format!("workers[{wi}].{k}");
            if !worker_lcores.contains(&w.lcore) {
                return Err(cx.err(key("lcore"), format!("lcore {} is not a worker lcore (workers: {worker_lcores:?}; main: {main_lcore})", w.lcore)));
            }
            if workers.iter().any(|x| x.lcore == w.lcore) {
                return Err(cx.err(key("lcore"), format!("lcore {} has two workers", w.lcore)));
            }
            let mut rx = Vec::new();
            for spec in &w.rx {
                let (pname, q) = match spec.split_once(':') {
                    Some((p, q)) => (
                        p,
                        q.parse::<u16>().map_err(|_| {
                            cx.err(key("rx"), format!("{spec:?}: queue is not a number"))
                        })?,
                    ),
                    None => (spec.as_str(), 0),
                };
                let pi = port_index(pname).ok_or_else(|| {
                    cx.err(key("rx"), format!("{spec:?}: no port named {pname:?}"))
                })?;
                if q >= ports[pi].rx_queues {
                    return Err(cx.err(
                        key("rx"),
                        format!("{spec:?}: port {pname} has {} queues", ports[pi].rx_queues),
                    ));
                }
                if !polled.insert((pi, q)) {
                    return Err(cx.err(
                        key("rx"),
                        format!("{spec:?}: this queue is polled by another worker too"),
                    ));
                }
                rx.push((pi, q));
            }
            if rx.is_empty() {
                return Err(cx.err(key("rx"), "a worker must poll at least one (port, queue)"));
            }
            workers.push(WorkerPlan { lcore: w.lcore, rx });
        }
        for (i, p) in ports.iter().enumerate() {
            for q in 0..p.rx_queues {
                if !polled.contains(&(i, q)) {
                    return Err(cx.err(
                        "workers",
                        format!("queue {q} of port {} is polled by no worker", p.name),
                    ));
                }
            }
        }
    }
    let nworkers = workers.len() as u16;
    for p in &mut ports {
        p.tx_queues = nworkers;
    }
    for (i, p) in ports.iter_mut().enumerate() {
        p.eal = p.device.eal_device(i, p.rx_queues.max(p.tx_queues));
    }

    // Cross-connect.
    let mut peer: Vec<Option<usize>> = vec![None; ports.len()];
    for (k, [a, b]) in cfg.forwarding.cross_connect.iter().enumerate() {
        let key = format!("forwarding.cross_connect[{k}]");
        let ia = port_index(a).ok_or_else(|| cx.err(&key, format!("no port named {a:?}")))?;
        let ib = port_index(b).ok_or_else(|| cx.err(&key, format!("no port named {b:?}")))?;
        if ia == ib {
            return Err(cx.err(
                &key,
                format!("port {a} cannot be cross-connected to itself"),
            ));
        }
        for (i, n) in [(ia, a), (ib, b)] {
            if peer[i].is_some() {
                return Err(cx.err(&key, format!("port {n} is already in another pair")));
            }
        }
        peer[ia] = Some(ib);
        peer[ib] = Some(ia);
    }
    if let Some(spec) = &cfg.pipeline {
        if !cfg.forwarding.cross_connect.is_empty() {
            return Err(cx.err(
                "forwarding.cross_connect",
                "a [pipeline] decides where packets go: use its forward node's pairs instead",
            ));
        }
        let infos: Vec<pipeline::PortInfo> = ports
            .iter()
            .enumerate()
            .map(|(i, p)| pipeline::PortInfo::new(i as u16, p.name.clone(), p.role.clone()))
            .collect();
        pipeline::Graph::<pipeline::TestBuf>::build(spec, &crate::nodes::registry(), &infos)
            .map_err(|e| cx.err(format!("pipeline.{}", e.key), e.reason.to_string()))?;
    } else if peer.iter().all(Option::is_none) {
        return Err(cx.err(
            "forwarding.cross_connect",
            "no port pair: packets would have nowhere to go",
        ));
    } else {
        for (i, p) in ports.iter().enumerate() {
            if peer[i].is_none() {
                warnings.push(format!("port {} is in no cross-connect pair: what it receives is dropped (counted as no-route)", p.name));
            }
        }
    }
    let burst = cfg.forwarding.burst;
    if burst == 0 || burst as usize > MAX_BURST {
        return Err(cx.err(
            "forwarding.burst",
            format!("{burst}: must be 1 to {MAX_BURST}"),
        ));
    }
    if cfg.forwarding.tx_retries > 1000 {
        return Err(cx.err(
            "forwarding.tx_retries",
            "at most 1000 (retries are bounded)",
        ));
    }

    // Mempool.
    let m = &cfg.mempool;
    if !(1024..=65535).contains(&m.data_room) {
        return Err(cx.err(
            "mempool.data_room",
            format!("{}: must be 1024 to 65535 bytes", m.data_room),
        ));
    }
    if m.cache > 512 {
        return Err(cx.err(
            "mempool.cache",
            format!("{}: DPDK allows at most 512", m.cache),
        ));
    }
    let need: u64 = ports
        .iter()
        .map(|p| p.rxd as u64 * p.rx_queues as u64 + p.txd as u64 * p.tx_queues as u64)
        .sum::<u64>()
        + nworkers as u64 * (m.cache as u64 * 3 / 2 + MAX_BURST as u64 * (ports.len() as u64 + 1))
        + (m.cache as u64 * 3 / 2)
        + 1024;
    let (mbufs, computed) = match m.mbufs {
        Some(n) => {
            if (n as u64) < need {
                return Err(cx.err(
                    "mempool.mbufs",
                    format!(
                        "{n} mbufs cannot fill every descriptor and cache: need at least {need}"
                    ),
                ));
            }
            (n, false)
        }
        None => (((need + 1).next_power_of_two() - 1).max(4095) as u32, true),
    };
    let hugepages = match &host.hugepages {
        Some(found) => Some(
            crate::hugepage_plan::resolve(
                found,
                mbufs,
                computed,
                need.min(u32::MAX as u64) as u32,
                m.data_room,
            )
            .map_err(|r| cx.err(crate::hugepage_plan::KEY, r))?,
        ),
        None => None,
    };
    let mbufs = hugepages.as_ref().map_or(mbufs, |h| h.mbufs);
    let mempool = MempoolPlan {
        mbufs,
        cache: m.cache,
        data_room: m.data_room,
        computed,
    };

    // EAL arguments.
    let mut eal_args = lcore_arg;
    eal_args.extend(["--main-lcore".into(), main_lcore.to_string()]);
    eal_args.extend([
        "--file-prefix".into(),
        cfg.eal
            .file_prefix
            .clone()
            .unwrap_or_else(|| "dataplane".into()),
    ]);
    let pool_mb = (mbufs as u64 * (m.data_room as u64 + 256 + 128)).div_ceil(1 << 20) as u32;
    let memory_mb = cfg.eal.memory_mb.unwrap_or((pool_mb + 128).max(256));
    if cfg.eal.no_huge {
        warnings.push("no_huge: running WITHOUT huge pages: slow, for development only; virtio-user ports do not work".into());
        eal_args.extend(["--no-huge".into(), "-m".into(), memory_mb.to_string()]);
        if ports
            .iter()
            .any(|p| matches!(p.device, Device::VirtioUser { .. }))
        {
            return Err(cx.err(
                "eal.no_huge",
                "virtio-user ports need huge pages (shared memory with the backend)",
            ));
        }
    } else if let Some(mb) = cfg.eal.memory_mb {
        eal_args.extend(["-m".into(), mb.to_string()]);
    }
    let huge_dir = cfg
        .eal
        .huge_dir
        .clone()
        .or_else(|| hugepages.as_ref().map(|h| h.dir.clone()));
    if let Some(d) = &huge_dir {
        eal_args.extend(["--huge-dir".into(), d.display().to_string()]);
    }
    if cfg.eal.in_memory {
        eal_args.push("--in-memory".into());
    }
    if cfg.eal.single_file_segments {
        eal_args.push("--single-file-segments".into());
    }
    let has_pci = ports.iter().any(|p| matches!(p.device, Device::Pci { .. }));
    if cfg.eal.no_pci.unwrap_or(!has_pci) {
        if has_pci {
            return Err(cx.err("eal.no_pci", "PCI ports are configured but no_pci = true"));
        }
        eal_args.push("--no-pci".into());
    }
    if let Some(l) = &cfg.eal.log_level {
        eal_args.extend(["--log-level".into(), l.clone()]);
    }
    if let Some(bits) = cfg.eal.max_simd_bitwidth {
        if ![64, 128, 256, 512].contains(&bits) {
            return Err(cx.err("eal.max_simd_bitwidth", "must be 64, 128, 256 or 512"));
        }
        eal_args.push(format!("--force-max-simd-bitwidth={bits}"));
    }
    for p in &ports {
        eal_args.extend(p.eal.eal_args());
    }
    eal_args.extend(cfg.eal.extra_args.iter().cloned());

    let stats_period = cfg.stats.period.unwrap_or(0.0);
    if !(0.0..=3600.0).contains(&stats_period) {
        return Err(cx.err("stats.period", "must be 0 to 3600 seconds"));
    }

    let prometheus = match cfg.stats.prometheus.as_deref() {
        Some("off") => None,
        Some(a) => Some(a.parse().map_err(|_| {
            cx.err(
                "stats.prometheus",
                format!("{a:?} is not an address like 127.0.0.1:9464 (or \"off\")"),
            )
        })?),
        None => Some(
            crate::metrics_export::DEFAULT_ADDR
                .parse()
                .expect("valid default"),
        ),
    };

    let file_prefix = cfg.eal.file_prefix.as_deref().unwrap_or("dataplane");
    let control_socket = match cfg.control.socket.as_deref() {
        Some("off") => None,
        Some("") => return Err(cx.err("control.socket", "empty (a path, or \"off\")")),
        Some(p) if !p.starts_with('/') => {
            return Err(cx.err(
                "control.socket",
                format!("{p:?} is not an absolute path (or \"off\")"),
            ))
        }
        Some(p) => Some(PathBuf::from(p)),
        None => Some(crate::control::default_socket_path(file_prefix)),
    };

    let ovn = ovn_plan(cfg, &cx, &ports)?;
    let acl_log = crate::acl_log::AclLogSettings {
        min_severity: cfg.acl_log.min_severity.unwrap_or_default(),
        syslog: match &cfg.acl_log.syslog {
            Some(p) if !p.is_absolute() => {
                return Err(cx.err(
                    "acl_log.syslog",
                    format!("{} is not an absolute path", p.display()),
                ))
            }
            p => p.clone(),
        },
    };

    Ok(Plan {
        ovn,
        control_socket,
        acl_log,
        prometheus,
        file: file.to_owned(),
        eal_args,
        main_lcore,
        no_huge: cfg.eal.no_huge,
        memory_mb,
        huge_dir,
        hugepages,
        ports,
        workers,
        peer,
        mempool,
        pipeline: cfg.pipeline.clone(),
        burst,
        tx_retries: cfg.forwarding.tx_retries,
        stats_period,
        stats_json: cfg.stats.json.clone(),
        warnings,
    })
}

/// Validates `[ovn]` and the ports' `lsp`/`lsp_mac` against the ports and the pipeline.
fn ovn_plan(
    cfg: &ConfigFile,
    cx: &Ctx<'_>,
    ports: &[PortPlan],
) -> Result<Option<crate::ovn::settings::OvnPlan>, ConfigError> {
    use crate::ovn::settings::{port_selector, PlannedSelector};
    let Some(section) = &cfg.ovn else {
        for (name, p) in &cfg.ports {
            if p.lsp.is_some() || p.lsp_mac.is_some() {
                let k = if p.lsp.is_some() { "lsp" } else { "lsp_mac" };
                return Err(cx.err(format!("ports.{name}.{k}"), "needs an [ovn] table"));
            }
        }
        return Ok(None);
    };
    let mut plan = section.validate().map_err(|(k, r)| cx.err(k, r))?;
    for p in ports {
        let sel = match cfg.ports.get(&p.name) {
            Some(ps) => port_selector(ps.lsp.as_deref(), ps.lsp_mac.as_deref())
                .map_err(|(k, r)| cx.err(format!("ports.{}.{k}", p.name), r))?,
            None => PlannedSelector::PortMac,
        };
        plan.ports.push((p.name.clone(), sel));
    }
    let t = &plan.targets;
    let kind_of = |name: &str| {
        cfg.pipeline
            .as_ref()
            .and_then(|g| g.nodes.iter().find(|n| n.name == name))
            .map(|n| n.kind.as_str())
    };
    for (key, node, kind) in [
        ("ovn.from_lport_node", &t.from_lport, "acl"),
        ("ovn.to_lport_node", &t.to_lport, "acl"),
        ("ovn.after_lb_node", &t.after_lb, "acl"),
        ("ovn.acl_node", &t.both, "acl"),
        ("ovn.lb_node", &t.lb, "lb"),
    ] {
        if let Some(n) = node {
            match kind_of(n) {
                Some(k) if k == kind => {}
                Some(k) => {
                    return Err(cx.err(key, format!("node {n:?} is of kind {k}, not {kind}")))
                }
                None => return Err(cx.err(key, format!("no [[pipeline.nodes]] named {n:?}"))),
            }
        }
    }
    Ok(Some(plan))
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "config: {}", self.file.display())?;
        writeln!(f, "EAL arguments:")?;
        writeln!(f, "  {}", self.eal_args.join(" "))?;
        writeln!(f, "ports:")?;
        for (i, p) in self.ports.iter().enumerate() {
            writeln!(
                f,
                "  [{i}] {:<10} role {:<10} {:<40} rxq {} txq {} rxd {} txd {}{} (from {})",
                p.name,
                p.role,
                p.device.to_string(),
                p.rx_queues,
                p.tx_queues,
                p.rxd,
                p.txd,
                p.mtu.map(|m| format!(" mtu {m}")).unwrap_or_default(),
                p.source
            )?;
            writeln!(
                f,
                "      ethdev {}  ->  {}",
                p.eal.ethdev_name(),
                self.peer[i]
                    .map(|j| self.ports[j].name.as_str())
                    .unwrap_or("-")
            )?;
        }
        writeln!(f, "lcores: main {} (control only)", self.main_lcore)?;
        for w in &self.workers {
            let rx: Vec<String> =
                w.rx.iter()
                    .map(|(p, q)| format!("{}:{q}", self.ports[*p].name))
                    .collect();
            writeln!(
                f,
                "  worker lcore {}: rx {}  tx queue {} on every port",
                w.lcore,
                rx.join(" "),
                self.workers
                    .iter()
                    .position(|x| x.lcore == w.lcore)
                    .unwrap_or(0)
            )?;
        }
        writeln!(
            f,
            "mempool: {} mbufs x {} bytes per NUMA socket, cache {}{}",
            self.mempool.mbufs,
            self.mempool.data_room,
            self.mempool.cache,
            if self.mempool.computed {
                " (computed)"
            } else {
                ""
            }
        )?;
        writeln!(
            f,
            "metrics: {}",
            self.prometheus
                .map(|a| format!("http://{a}/metrics"))
                .unwrap_or_else(|| "off".into())
        )?;
        writeln!(
            f,
            "control: {}",
            self.control_socket
                .as_ref()
                .map(|p| format!("{} (dataplane ctl)", p.display()))
                .unwrap_or_else(|| "off".into())
        )?;
        writeln!(
            f,
            "memory: {} MiB {}",
            self.memory_mb,
            if self.no_huge {
                "WITHOUT huge pages"
            } else {
                "in huge pages"
            }
        )?;
        match (&self.hugepages, &self.huge_dir) {
            (Some(h), _) => writeln!(f, "hugepages: {} (found)", h.describe())?,
            (None, Some(d)) => writeln!(f, "hugepages: {} (eal.huge_dir)", d.display())?,
            (None, None) => {}
        }
        match &self.pipeline {
            Some(g) => {
                let nodes: Vec<String> = g
                    .nodes
                    .iter()
                    .map(|n| format!("{}({})", n.name, n.kind))
                    .collect();
                let edges: Vec<String> = g
                    .edges
                    .iter()
                    .map(|e| {
                        format!(
                            "{}{} -> {}",
                            e.from,
                            e.output
                                .as_deref()
                                .map(|o| format!(".{o}"))
                                .unwrap_or_default(),
                            e.to
                        )
                    })
                    .collect();
                writeln!(
                    f,
                    "pipeline: nodes {}; edges {}",
                    nodes.join(" "),
                    edges.join(", ")
                )?;
                writeln!(
                    f,
                    "forwarding: through the pipeline, burst {}, tx retries {}",
                    self.burst, self.tx_retries
                )?;
            }
            None => writeln!(
                f,
                "forwarding: cross-connect, burst {}, tx retries {}",
                self.burst, self.tx_retries
            )?,
        }
        if let Some(o) = &self.ovn {
            let t = &o.targets;
            let node = |n: &Option<String>| n.clone().unwrap_or_else(|| "-".into());
            writeln!(
                f,
                "ovn: remotes {}; from-lport -> {}, from-lport after-lb -> {}, to-lport -> {}, both -> {}, lb -> {}; unsupported ACLs {}",
                o.remotes.join(","),
                node(&t.from_lport),
                node(&t.after_lb),
                node(&t.to_lport),
                node(&t.both),
                node(&t.lb),
                if o.fail_open_unsupported { "skipped (fail open)" } else { "fail closed" }
            )?;
        }
        if self.acl_log != crate::acl_log::AclLogSettings::default() {
            writeln!(
                f,
                "acl log: lines from severity {} to stderr{}",
                self.acl_log.min_severity.as_str(),
                self.acl_log
                    .syslog
                    .as_ref()
                    .map(|p| format!(" and syslog {}", p.display()))
                    .unwrap_or_default()
            )?;
        }
        for w in &self.warnings {
            writeln!(f, "warning: {w}")?;
        }
        Ok(())
    }
}
