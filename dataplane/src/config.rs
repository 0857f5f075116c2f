//! The TOML configuration file: what it may say, and its validation into a [`Plan`].
//!
//! Every refusal names the file, the key and the reason ([`ConfigError`]); `dataplane` exits
//! with code 2 on one.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::device::Device;
use crate::plan::{self, Plan};

/// A refused configuration: the file, the key and the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The configuration file.
    pub file: PathBuf,
    /// The dotted key (e.g. `ports.fh0.kind`), or `-` for the whole file.
    pub key: String,
    /// What is wrong.
    pub reason: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}: {}", self.file.display(), self.key, self.reason)
    }
}

impl std::error::Error for ConfigError {}

/// The `[eal]` table.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EalSection {
    /// Lcore ids (= CPU ids) EAL runs on; the first is the main lcore unless `main_lcore` says.
    /// Absent: taken from the process's allowed CPUs.
    pub lcores: Option<Vec<u32>>,
    /// An explicit `--lcores` mapping such as `0@0,1@1` (lcore@cpu); overrides `lcores`.
    pub lcore_map: Option<String>,
    /// The main (control) lcore.
    pub main_lcore: Option<u32>,
    /// Run without huge pages (development only: slow, and virtio-user does not work).
    #[serde(default)]
    pub no_huge: bool,
    /// Memory to reserve in MiB (`-m`); absent: what EAL takes on demand.
    pub memory_mb: Option<u32>,
    /// hugetlbfs mount to use (`--huge-dir`).
    pub huge_dir: Option<PathBuf>,
    /// Prefix of the huge-page files and runtime directory (`--file-prefix`); must be unique
    /// per DPDK process on the machine.
    pub file_prefix: Option<String>,
    /// Keep no files in the runtime directory (`--in-memory`).
    #[serde(default)]
    pub in_memory: bool,
    /// One file per memory segment list (`--single-file-segments`).
    #[serde(default)]
    pub single_file_segments: bool,
    /// Do not scan the PCI bus (`--no-pci`); implied when no port is a PCI device.
    pub no_pci: Option<bool>,
    /// EAL log level (`--log-level`), e.g. `notice`.
    pub log_level: Option<String>,
    /// The widest SIMD DPDK may use, in bits (`--force-max-simd-bitwidth`: 64, 128, 256 or
    /// 512); absent: DPDK's default, 256 on x86. 512 lets rte_acl classify 32 packets at a
    /// time with AVX-512 (where the CPU has it): worth it on CPUs that keep their clock
    /// under AVX-512 (AMD Zen 4, Intel Ice Lake and later).
    pub max_simd_bitwidth: Option<u16>,
    /// More EAL arguments, passed as they are.
    #[serde(default)]
    pub extra_args: Vec<String>,
}

/// The `[mempool]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MempoolSection {
    /// Mbufs per NUMA socket; absent: computed from descriptors, queues and workers.
    pub mbufs: Option<u32>,
    /// Per-lcore cache size.
    #[serde(default = "default_cache")]
    pub cache: u32,
    /// Data room per mbuf in bytes, headroom included.
    #[serde(default = "default_data_room")]
    pub data_room: u16,
}

fn default_cache() -> u32 {
    256
}
fn default_data_room() -> u16 {
    2176
}

impl Default for MempoolSection {
    fn default() -> Self {
        Self {
            mbufs: None,
            cache: default_cache(),
            data_room: default_data_room(),
        }
    }
}

/// One `[ports.NAME]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortSection {
    /// The port's role (fronthaul, midhaul, ...).
    pub role: String,
    /// `pci`, `vhost-user`, `virtio-user`, `memif`, `ring`, `pcap`, `tap`, `null`, `af_packet`.
    pub kind: String,
    /// PCI address (kind `pci`).
    pub pci: Option<String>,
    /// Socket path (vhost-user, virtio-user, memif).
    pub path: Option<PathBuf>,
    /// vhost-user: connect to an existing socket (default: create it).
    pub client: Option<bool>,
    /// virtio-user / memif: create the socket and wait (default: connect).
    pub server: Option<bool>,
    /// memif interface id.
    pub id: Option<u32>,
    /// Kernel interface (tap, af_packet, pcap live).
    pub iface: Option<String>,
    /// pcap: file to read.
    pub rx_pcap: Option<PathBuf>,
    /// pcap: file to write.
    pub tx_pcap: Option<PathBuf>,
    /// Receive queues (RSS spreads flows across them).
    #[serde(default = "one")]
    pub queues: u16,
    /// Receive descriptors per queue.
    #[serde(default = "default_desc")]
    pub rxd: u16,
    /// Transmit descriptors per queue.
    #[serde(default = "default_desc")]
    pub txd: u16,
    /// MTU.
    pub mtu: Option<u16>,
    /// Promiscuous mode.
    #[serde(default = "yes")]
    pub promiscuous: bool,
    /// Ask the device to compute IPv4, TCP and UDP checksums on transmit (when it can; the
    /// start-up line says what it took). Header-rewriting stages (the load balancer's NAT)
    /// then leave those checksums to the ports, when every port of the pipeline has them.
    #[serde(default)]
    pub tx_checksum_offload: bool,
    /// With `[ovn]`: the name of this port's `Logical_Switch_Port`.
    pub lsp: Option<String>,
    /// With `[ovn]`: the MAC its LSP is found by (default: the port's own MAC).
    pub lsp_mac: Option<String>,
}

fn one() -> u16 {
    1
}
fn yes() -> bool {
    true
}
fn default_desc() -> u16 {
    1024
}

/// One `[[workers]]` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkerSection {
    /// The lcore it runs on.
    pub lcore: u32,
    /// The (port, queue) pairs it polls, as `port` or `port:queue`.
    #[serde(default)]
    pub rx: Vec<String>,
}

/// The `[forwarding]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForwardingSection {
    /// Pairs of ports whose traffic is exchanged both ways: `[["fh0", "mh0"]]`.
    #[serde(default)]
    pub cross_connect: Vec<[String; 2]>,
    /// Transmit retries while a tx queue is full, before the rest is dropped and counted.
    #[serde(default = "default_tx_retries")]
    pub tx_retries: u32,
    /// Most packets per rx burst, and so per graph vector (at most 256; default 256, like a
    /// VPP frame: a burst is only as large as what is waiting, so this costs no latency at
    /// low load, and under load the per-vector costs are shared by more packets). Measured
    /// in the vhost benchmark's ACL pipeline at full speed: 128 gives the same cycles per
    /// packet as 256 (218 and 217).
    #[serde(default = "default_burst")]
    pub burst: u16,
}

impl Default for ForwardingSection {
    fn default() -> Self {
        Self {
            cross_connect: Vec::new(),
            tx_retries: default_tx_retries(),
            burst: default_burst(),
        }
    }
}

fn default_tx_retries() -> u32 {
    8
}
fn default_burst() -> u16 {
    256
}

/// The `[stats]` table.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatsSection {
    /// Seconds between stats lines (0: none).
    pub period: Option<f64>,
    /// Where to write the final counters as JSON.
    pub json: Option<PathBuf>,
    /// Prometheus endpoint address (`127.0.0.1:9464` by default), or `"off"`.
    pub prometheus: Option<String>,
}

/// The `[control]` table: the live control socket (`dataplane ctl`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControlSection {
    /// The socket's path, or `"off"`; absent: `/var/run/dataplane/<file_prefix>.sock`.
    pub socket: Option<String>,
}

/// The `[acl_log]` table: where ACL log lines go and from which severity.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AclLogSection {
    /// Lines of a lower severity are not written, but counted (`below-level`); default
    /// `info`, as ovn-controller's `acl_log` module logs (so `debug` ACLs write nothing until
    /// asked, like `ovn-appctl vlog/set acl_log:file:dbg`).
    pub min_severity: Option<pipeline::acl::log::Severity>,
    /// Also send each line to this syslog socket (a unix datagram socket, e.g. `/dev/log`),
    /// facility `daemon`, priority from the ACL's severity.
    pub syslog: Option<PathBuf>,
}

/// The whole file, as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// EAL settings.
    #[serde(default)]
    pub eal: EalSection,
    /// Mempool sizing.
    #[serde(default)]
    pub mempool: MempoolSection,
    /// Ports by name.
    #[serde(default)]
    pub ports: BTreeMap<String, PortSection>,
    /// Workers; absent: one per worker lcore, (port, queue) pairs assigned round-robin.
    #[serde(default)]
    pub workers: Vec<WorkerSection>,
    /// How packets are forwarded.
    #[serde(default)]
    pub forwarding: ForwardingSection,
    /// Stats output.
    #[serde(default)]
    pub stats: StatsSection,
    /// The live control socket.
    #[serde(default)]
    pub control: ControlSection,
    /// ACL log lines.
    #[serde(default)]
    pub acl_log: AclLogSection,
    /// Ports found from what the platform hands the pod or VM.
    pub discovery: Option<crate::discovery::DiscoveryConfig>,
    /// A node graph every worker runs its rx bursts through (instead of the plain
    /// cross-connect): `input`, `[[pipeline.nodes]]` (name, kind, params), `[[pipeline.edges]]`.
    pub pipeline: Option<pipeline::GraphSpec>,
    /// Policy from the OVN Northbound database.
    pub ovn: Option<crate::ovn::settings::OvnSection>,
}

impl ConfigFile {
    /// Parses TOML text; `file` is only used in error messages.
    pub fn parse(text: &str, file: &Path) -> Result<ConfigFile, ConfigError> {
        let de = toml::Deserializer::new(text);
        serde_path_to_error::deserialize(de).map_err(|e| {
            let key = e.path().to_string();
            let inner = e.into_inner();
            let mut reason = inner.message().to_string();
            if let Some(span) = inner.span() {
                let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
                reason = format!("{reason} (line {line})");
            }
            ConfigError {
                file: file.to_owned(),
                key: if key == "." { "-".into() } else { key },
                reason,
            }
        })
    }

    /// Reads and parses a file.
    pub fn load(file: &Path) -> Result<ConfigFile, ConfigError> {
        let text = std::fs::read_to_string(file).map_err(|e| ConfigError {
            file: file.to_owned(),
            key: "-".into(),
            reason: format!("cannot read: {e}"),
        })?;
        Self::parse(&text, file)
    }
}

/// The embedded default configuration (`config/default.toml`): two vhost-user ports
/// cross-connected, no NIC needed.
pub const EMBEDDED_DEFAULT: &str = include_str!("../../config/default.toml");

/// The name errors give the embedded default.
pub const EMBEDDED_NAME: &str = "<embedded config/default.toml>";

/// Loads, parses and validates a configuration file (or, with `None`, the embedded default)
/// into a plan, reading this machine's CPUs and running the config's port discovery.
pub fn load_plan(file: Option<&Path>) -> Result<Plan, ConfigError> {
    let (cfg, name) = match file {
        Some(file) => (ConfigFile::load(file)?, file.to_owned()),
        None => {
            let name = PathBuf::from(EMBEDDED_NAME);
            (ConfigFile::parse(EMBEDDED_DEFAULT, &name)?, name)
        }
    };
    let host = gather_host(&cfg, &name)?;
    plan::build(&cfg, &name, &host)
}

/// Reads the allowed and isolated CPUs and runs port discovery, as the config asks.
pub fn gather_host(cfg: &ConfigFile, file: &Path) -> Result<plan::Host, ConfigError> {
    use crate::discovery::{self, cores, SystemEnvironment};
    let err = |key: &str, reason: String| ConfigError {
        file: file.to_owned(),
        key: key.into(),
        reason,
    };
    let allowed_cpus = cores::allowed_cpus().map_err(|e| err("eal.lcores", e.to_string()))?;
    let isolated_cpus = cores::isolated_cpus().unwrap_or_default();
    let mut host = plan::Host {
        allowed_cpus,
        isolated_cpus,
        ..Default::default()
    };
    if let Some(d) = &cfg.discovery {
        let found = discovery::discover(d, &SystemEnvironment)
            .map_err(|e| err("discovery", e.to_string()))?;
        host.discovered = found.ports;
        host.notes = found.warnings;
    }
    if !cfg.eal.no_huge && cfg.eal.huge_dir.is_none() {
        host.hugepages = Some(crate::hugepage_plan::probe(&SystemEnvironment));
    }
    Ok(host)
}

impl PortSection {
    /// The device this table describes, or the key and reason it is refused.
    pub fn device(&self) -> Result<Device, (&'static str, String)> {
        let need_path = |k: &str| {
            self.path
                .clone()
                .ok_or(("path", format!("required for kind {k}")))
        };
        let dev = match self.kind.as_str() {
            "pci" => {
                let a = self.pci.clone().ok_or(("pci", "required for kind pci (e.g. \"0000:3b:02.0\")".to_string()))?;
                if !is_pci_address(&a) {
                    return Err(("pci", format!("{a:?} is not a PCI address of the form DDDD:BB:DD.F")));
                }
                Device::Pci { address: a }
            }
            "vhost-user" => Device::VhostUser { path: need_path("vhost-user")?, client: self.client.unwrap_or(false) },
            "virtio-user" => Device::VirtioUser { path: need_path("virtio-user")?, server: self.server.unwrap_or(false) },
            "memif" => Device::Memif { socket: need_path("memif")?, server: self.server.unwrap_or(false), id: self.id.unwrap_or(0) },
            "ring" => Device::Ring,
            "null" => Device::Null,
            "tap" => Device::Tap { iface: self.iface.clone().ok_or(("iface", "required for kind tap".to_string()))? },
            "af_packet" => Device::AfPacket { iface: self.iface.clone().ok_or(("iface", "required for kind af_packet".to_string()))? },
            "pcap" => {
                if self.iface.is_none() && self.rx_pcap.is_none() && self.tx_pcap.is_none() {
                    return Err(("kind", "pcap needs iface, rx_pcap or tx_pcap".into()));
                }
                Device::Pcap { rx_pcap: self.rx_pcap.clone(), tx_pcap: self.tx_pcap.clone(), iface: self.iface.clone() }
            }
            other => {
                return Err((
                    "kind",
                    format!("unknown port kind {other:?}; expected one of pci, vhost-user, virtio-user, memif, ring, pcap, tap, null, af_packet"),
                ))
            }
        };
        Ok(dev)
    }
}

/// Whether `s` has the form `DDDD:BB:DD.F` (hex digits; function 0-7).
pub fn is_pci_address(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 12
        && b[4] == b':'
        && b[7] == b':'
        && b[10] == b'.'
        && [0, 1, 2, 3, 5, 6, 8, 9]
            .iter()
            .all(|&i| b[i].is_ascii_hexdigit())
        && (b'0'..=b'7').contains(&b[11])
}
