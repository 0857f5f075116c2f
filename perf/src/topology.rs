//! The two-process vhost-user topology the tests and benchmarks use, on a 2-core machine:
//!
//! ```text
//!   generator (CPU 0)                          device under test (worker on CPU 1)
//!   net_virtio_user0 ── sock0 (vhost-user) ── net_vhost0 (fh0)
//!   net_virtio_user1 ── sock1 (vhost-user) ── net_vhost1 (mh0)
//! ```
//!
//! The DUT (dataplane or dpdk-testpmd) creates the sockets; the generator (dpgen or
//! dpdk-testpmd flowgen) connects with `--single-file-segments`. With
//! [`VhostTopology::new_server`] it is the other way round: the generator's virtio-user
//! ports create the sockets (`server=1`) and the DUT connects as vhost-user client (OVS-DPDK's
//! `dpdkvhostuserclient` ports).

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::Command;

use crate::procs::{workspace_bin, Proc, Scratch};

/// Sockets, prefixes and commands of one topology.
#[derive(Debug)]
pub struct VhostTopology {
    /// Scratch folder (sockets, configs, logs).
    pub scratch: Scratch,
    /// Socket of the fronthaul side.
    pub sock0: PathBuf,
    /// Socket of the midhaul side.
    pub sock1: PathBuf,
    /// The generator creates the sockets (virtio-user `server=1`); the DUT connects.
    pub gen_server: bool,
}

/// What the generator sends: frame size(s) and flows per port.
#[derive(Debug, Clone, PartialEq)]
pub struct Traffic {
    /// Frame size in bytes (without FCS), or `"imix"`, or a comma list (dpgen only).
    pub size: String,
    /// Flows per port.
    pub flows: u32,
}

impl Default for Traffic {
    fn default() -> Self {
        Traffic {
            size: "64".into(),
            flows: 1024,
        }
    }
}

/// dpgen options beyond rate and duration.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DpgenOpts {
    /// Sizes and flows.
    pub traffic: Traffic,
    /// Port 1 sends the replies of port 0's flows (for stateful DUTs).
    pub mirror: bool,
    /// Timestamp probes (one per burst) and report round-trip latency.
    pub latency: bool,
    /// Seconds between rate lines (0: none).
    pub stats_period: f64,
    /// Seconds dpgen keeps the ports open after writing its JSON (DUT counters can be read).
    pub linger: f64,
    /// A file whose appearance ends the linger early (`dpgen --linger-until`).
    pub linger_until: Option<std::path::PathBuf>,
    /// Per-port flow specs (`dpgen --spec`, e.g. from [`vip_specs`]); empty: default flows.
    pub specs: Vec<String>,
    /// Addresses dpgen counts in received packets (`--watch-addr`).
    pub watch: Vec<std::net::Ipv4Addr>,
    /// A verdict probe `PORT=SPEC` (`dpgen --probe`, see `perf::probe::ProbeSpec`).
    pub probe: Option<String>,
    /// Where dpgen writes the probe's verdict changes (`--probe-log`).
    pub probe_log: Option<std::path::PathBuf>,
    /// dpgen stops sending once this file exists (`--stop-when`).
    pub stop_when: Option<std::path::PathBuf>,
    /// At a fixed rate, dpgen's lcore runs at SCHED_FIFO (`--realtime`): control threads on
    /// its CPU do not hold back its bursts and replies.
    pub realtime: bool,
    /// At a fixed rate, dpgen sleeps this many microseconds when a pass found nothing to do
    /// (`--idle-sleep-us`), leaving its CPU to the others between bursts.
    pub idle_sleep_us: u64,
    /// Receive descriptors per port (`--rxd`) and the virtio-user ring size behind them (0:
    /// 1,024). A bigger ring holds what the DUT sends while the generator is off its CPU.
    pub rx_ring: u32,
}

/// The `parse -> forward` pipeline (cross-connect fh0 <-> mh0 by input port), as config text.
pub const PARSE_FORWARD: &str = r#"
[pipeline]
input = "parse"
[[pipeline.nodes]]
name = "parse"
kind = "parse"
[[pipeline.nodes]]
name = "forward"
kind = "forward"
params = { mode = "cross-connect", pairs = [["fh0", "mh0"]] }
[[pipeline.edges]]
from = "parse"
to = "forward"
"#;

/// The generator's virtio-user ring size and receive descriptors per port by default.
pub const GENERATOR_RING: u32 = 1024;

/// The testpmd binary.
pub const TESTPMD: &str = "dpdk-testpmd";

/// The benchmark's virtual IP (UDP service on [`VIP_PORT`]).
pub const VIP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 10);
/// The VIP's (and the backends') UDP port; also the port of the default dpgen flows.
pub const VIP_PORT: u16 = 5001;
/// The four backends behind the VIP (midhaul side).
pub const BACKENDS: [Ipv4Addr; 4] = [
    Ipv4Addr::new(10, 2, 0, 1),
    Ipv4Addr::new(10, 2, 0, 2),
    Ipv4Addr::new(10, 2, 0, 3),
    Ipv4Addr::new(10, 2, 0, 4),
];
/// Destination port of the "deny" flows of the VIP traffic (an ACL drops them).
pub const DENY_PORT: u16 = 9;

/// dpgen specs of the load-balancer traffic: port 0 (fronthaul) sends `flows` UDP 5-tuples
/// (sources 10.1.0.0/18 and ports from 1024) towards the VIP, `deny_percent` of them to
/// [`DENY_PORT`]; port 1 (midhaul) plays the backends and answers every packet it receives
/// (so a stateful DUT sees both directions of every connection, and a NATing DUT's replies
/// come from the backend it chose).
pub fn vip_specs(flows: u32, deny_percent: u8) -> Vec<String> {
    vec![
        format!(
            "0=src=10.1.0.0/18,sport=1024-65535,dst={VIP}/32,dport={VIP_PORT},flows={flows},deny={deny_percent},deny_dport={DENY_PORT}"
        ),
        "1=reflect".to_string(),
    ]
}

/// An `[acl]` table of exactly `flat` flat rules (at least [`ACL_FIXED_FLAT_RULES`]) shaped
/// like security groups: address sets (a 200-host block list, 100 partner /24s, 50
/// management hosts), port ranges, priorities 1..3000, port groups by role
/// (`role:fronthaul`, `role:midhaul`), stateless. Besides the benchmark's allow rules, no
/// rule matches the benchmark traffic, but many share its addresses, protocol or ports, so
/// the classifier really has to tell them apart. The traffic is allowed only by the rules at
/// priorities 1 and 2 (the lowest but the default): the default flows of dpgen in both
/// directions (10.1/16 <-> 10.2/16 to UDP 5001), clients to the VIP, the backends' replies;
/// UDP to [`DENY_PORT`] is dropped by `deny-discard`; the default is `drop`.
pub fn acl_rules_toml(flat: usize) -> String {
    use std::fmt::Write as _;
    let mut t = String::from(
        "# Generated by perf (topology::acl_rules_toml): security-group-like ACLs for the vhost-user benchmark.\n[acl]\ndefault = \"drop\"\n\n[acl.port_groups]\npg_fh = [\"role:fronthaul\"]\npg_mh = [\"role:midhaul\"]\n\n[acl.address_sets]\n",
    );
    let list = |v: Vec<String>| {
        v.iter()
            .map(|a| format!("\"{a}\""))
            .collect::<Vec<_>>()
            .join(", ")
    };
    // Scattered entries (no two merge into a shorter prefix), as real block lists are.
    let blocked = (0..200u32)
        .map(|k| Ipv4Addr::from(0xc633_6400 + 2 * k).to_string())
        .collect();
    let partners = (0..100u32)
        .map(|k| format!("100.64.{}.0/24", 2 * k))
        .collect();
    let mgmt = (0..50u32)
        .map(|k| format!("10.250.0.{}", 2 * k + 1))
        .collect();
    let _ = writeln!(t, "blocked = [{}]", list(blocked));
    let _ = writeln!(t, "partners = [{}]", list(partners));
    let _ = writeln!(t, "mgmt = [{}]", list(mgmt));
    let _ = writeln!(t, "clients = [\"10.1.0.0/16\"]");
    let _ = writeln!(t, "vips = [\"{VIP}\"]");
    let _ = writeln!(
        t,
        "backends = [{}]",
        list(BACKENDS.iter().map(|b| b.to_string()).collect())
    );
    let mut acl = |name: &str, dir: &str, prio: u32, m: &str, action: &str| {
        let _ = write!(t, "\n[[acl.rules]]\nname = \"{name}\"\ndirection = \"{dir}\"\npriority = {prio}\nmatch = \"{m}\"\naction = \"{action}\"\n");
    };
    acl(
        "block-list",
        "from-lport",
        3000,
        "inport == {@pg_fh, @pg_mh} && ip4.src == $blocked",
        "drop",
    );
    acl(
        "mgmt-ssh",
        "to-lport",
        2500,
        "outport == @pg_mh && ip4.src == $mgmt && tcp.dst == 22",
        "allow-related",
    );
    acl(
        "partners-https",
        "from-lport",
        2000,
        "inport == @pg_fh && ip4.src == $partners && tcp.dst == 443",
        "allow-related",
    );
    acl(
        "deny-discard",
        "from-lport",
        1500,
        &format!("inport == {{@pg_fh, @pg_mh}} && udp.dst == {DENY_PORT}"),
        "drop",
    );
    for k in 0..flat.saturating_sub(ACL_FIXED_FLAT_RULES) as u32 {
        let prio = 100 + (k * 7) % 1400;
        let action = if k % 2 == 0 { "drop" } else { "allow" };
        let lo = 6000 + (k * 37) % 50_000;
        let m = match k % 4 {
            // Same addresses and protocol as the traffic, other destination ports.
            0 => format!("outport == @pg_mh && ip4.src == 10.1.{}.0/22 && ip4.dst == 10.2.{}.0/24 && udp.dst >= {lo} && udp.dst <= {}", (k / 4 % 64) * 4, k % 256, lo + 99),
            // Same destination network, TCP port ranges (that include 5001 for some).
            1 => format!("outport == @pg_mh && ip4.dst == 10.2.0.0/16 && tcp.dst >= {} && tcp.dst <= {}", 1 + (k * 13) % 60_000, 1 + (k * 13) % 60_000 + 1000),
            // The reverse direction, TCP.
            2 => format!("outport == @pg_fh && ip4.src == 10.2.{}.0/24 && tcp.dst == {}", k % 256, 1000 + k),
            // Other networks, any UDP.
            _ => format!("inport == @pg_fh && ip4.src == 172.{}.{}.0/24 && udp", 16 + k % 16, (k / 16) % 256),
        };
        acl(
            &format!("tenant-{k}"),
            if k % 4 == 3 { "from-lport" } else { "to-lport" },
            prio,
            &m,
            action,
        );
    }
    acl("allow-clients-to-servers", "from-lport", 2, &format!("inport == @pg_fh && ip4.src == $clients && ip4.dst == 10.2.0.0/16 && udp.dst == {VIP_PORT}"), "allow");
    acl(
        "allow-clients-to-vip",
        "from-lport",
        2,
        &format!(
            "inport == @pg_fh && ip4.src == $clients && ip4.dst == $vips && udp.dst == {VIP_PORT}"
        ),
        "allow",
    );
    acl(
        "allow-backend-replies",
        "from-lport",
        1,
        &format!("inport == @pg_mh && ip4.src == $backends && udp.src == {VIP_PORT}"),
        "allow",
    );
    acl("allow-servers-to-clients", "from-lport", 1, &format!("inport == @pg_mh && ip4.src == 10.2.0.0/16 && ip4.dst == $clients && udp.dst == {VIP_PORT}"), "allow");
    t
}

/// Flat rules of [`acl_rules_toml`] besides the generated tenant rules (one each): the block
/// list on two port groups (400), management (50), partners (100), `deny-discard` on two
/// port groups (2) and the allow rules (7, the backends set has 4), plus one more from the
/// expansion (checked by a test against the real expansion).
pub const ACL_FIXED_FLAT_RULES: usize = 560;

/// `parse -> acl -> forward` (cross-connect fh0 <-> mh0), stateless ACL from `rules` (a file
/// holding an `[acl]` table), as config text.
pub fn acl_forward_pipeline(rules: &std::path::Path) -> String {
    format!(
        r#"
[pipeline]
input = "parse"
[[pipeline.nodes]]
name = "parse"
kind = "parse"
[[pipeline.nodes]]
name = "acl"
kind = "acl"
params = {{ rules = "{}", stateful = 0, outport = "cross-connect", pairs = [["fh0", "mh0"]] }}
[[pipeline.nodes]]
name = "forward"
kind = "forward"
params = {{ mode = "cross-connect", pairs = [["fh0", "mh0"]] }}
[[pipeline.edges]]
from = "parse"
to = "acl"
[[pipeline.edges]]
from = "acl"
to = "forward"
"#,
        rules.display()
    )
}

/// How the full pipeline's `acl` and `lb` nodes look connections up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookups {
    /// The `acl` node consults the `lb` node's connection table first (`lb_conntrack`):
    /// packets of tracked connections skip the rules, and the `lb` node reuses the lookup.
    Shared,
    /// The `acl` node classifies every packet and the `lb` node looks each up itself.
    Separate,
}

/// `parse -> acl -> lb -> forward`: the stateless ACL from `rules`, then a UDP service on
/// [`VIP`]:[`VIP_PORT`] over the four [`BACKENDS`] (Maglev on the 5-tuple, a connection
/// table for `ct_capacity` flows, services changeable live by config reload: control name
/// `bench-lb`), then cross-connect fh0 <-> mh0; as config text. With [`Lookups::Shared`]
/// the ACL lets the packets of connections the load balancer tracks through unclassified.
pub fn full_pipeline(rules: &std::path::Path, ct_capacity: usize, lookups: Lookups) -> String {
    let backends = BACKENDS
        .iter()
        .map(|b| format!("{{ address = \"{b}\", port = {VIP_PORT} }}"))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        r#"
[pipeline]
input = "parse"
[[pipeline.nodes]]
name = "parse"
kind = "parse"
[[pipeline.nodes]]
name = "acl"
kind = "acl"
params = {{ rules = "{rules}", stateful = 0, outport = "cross-connect", pairs = [["fh0", "mh0"]]{share} }}
[[pipeline.nodes]]
name = "lb"
kind = "lb"
[pipeline.nodes.params]
control = "bench-lb"
conntrack = {{ capacity = {ct_capacity} }}
[[pipeline.nodes.params.services]]
name = "bench-vip"
vip = "{VIP}"
protocol = "udp"
port = {VIP_PORT}
hash = "five_tuple"
backends = [{backends}]
[[pipeline.nodes]]
name = "forward"
kind = "forward"
params = {{ mode = "cross-connect", pairs = [["fh0", "mh0"]] }}
[[pipeline.edges]]
from = "parse"
to = "acl"
[[pipeline.edges]]
from = "acl"
to = "lb"
[[pipeline.nodes]]
name = "reset"
kind = "forward"
params = {{ mode = "by-metadata" }}
[[pipeline.edges]]
from = "lb"
to = "forward"
[[pipeline.edges]]
from = "lb"
output = "reset"
to = "reset"
"#,
        rules = rules.display(),
        share = match lookups {
            Lookups::Shared => ", lb_conntrack = \"lb\"",
            Lookups::Separate => "",
        }
    )
}

impl VhostTopology {
    /// A fresh topology with its own folder and sockets.
    pub fn new(what: &str) -> VhostTopology {
        let scratch = Scratch::new(what);
        let sock0 = scratch.path("fh0.sock");
        let sock1 = scratch.path("mh0.sock");
        VhostTopology {
            scratch,
            sock0,
            sock1,
            gen_server: false,
        }
    }

    /// A fresh topology where the generator is the vhost-user server (creates the sockets)
    /// and the DUT connects to them as client.
    pub fn new_server(what: &str) -> VhostTopology {
        VhostTopology {
            gen_server: true,
            ..VhostTopology::new(what)
        }
    }

    /// Writes a dataplane config for the DUT side: two vhost-user ports, worker on lcore 1,
    /// with `forwarding` as the `[forwarding]` table's body and `extra` appended. Without a
    /// `[pipeline]` in `extra`, the two ports are cross-connected.
    pub fn dataplane_config(&self, forwarding: &str, extra: &str) -> PathBuf {
        self.write_config(forwarding, extra, None)
    }

    /// [`VhostTopology::dataplane_config`] for a dataplane following an OVN NB: fh0 and mh0
    /// name their `Logical_Switch_Port`s `lsps[0]` and `lsps[1]` (`lsp = "..."`).
    pub fn dataplane_config_lsps(&self, extra: &str, lsps: [&str; 2]) -> PathBuf {
        self.write_config("", extra, Some(lsps))
    }

    fn write_config(&self, forwarding: &str, extra: &str, lsps: Option<[&str; 2]>) -> PathBuf {
        let lsp = |i: usize| lsps.map_or(String::new(), |l| format!("lsp = \"{}\"\n", l[i]));
        let xc = if extra.contains("[pipeline]") {
            ""
        } else {
            "cross_connect = [[\"fh0\", \"mh0\"]]"
        };
        let simd = crate::acl_simd_bitwidth()
            .map_or(String::new(), |b| format!("max_simd_bitwidth = {b}\n"));
        let text = format!(
            r#"[eal]
lcores = [0, 1]
main_lcore = 0
file_prefix = "dut-{tag}"
log_level = "notice"
{simd}
[ports.fh0]
role = "fronthaul"
kind = "vhost-user"
path = "{s0}"
{lsp0}
[ports.mh0]
role = "midhaul"
kind = "vhost-user"
path = "{s1}"
{lsp1}
[forwarding]
{xc}
{forwarding}

{extra}
"#,
            tag = self.scratch.tag,
            s0 = self.sock0.display(),
            s1 = self.sock1.display(),
            lsp0 = lsp(0),
            lsp1 = lsp(1)
        );
        let p = self.scratch.path("dut.toml");
        std::fs::write(&p, text).expect("writing config");
        p
    }

    /// [`VhostTopology::start_dataplane`], then waits until both vhost-user sockets exist
    /// (panics with the dataplane's output if they do not appear in 20 s). For tests.
    pub fn start_dataplane_ready(
        &self,
        config: &PathBuf,
        stats_json: &PathBuf,
        stats_period: f64,
    ) -> Proc {
        let dut = self.start_dataplane(config, stats_json, stats_period);
        assert!(
            crate::procs::wait_for_paths(
                &[&self.sock0, &self.sock1],
                std::time::Duration::from_secs(20)
            ),
            "sockets never appeared:\n{}",
            dut.output()
        );
        dut
    }

    /// Stops a dataplane started by [`VhostTopology::start_dataplane`] with SIGINT and returns
    /// its stats JSON (panics unless it exits cleanly within 30 s and wrote the JSON).
    pub fn stop_dataplane(dut: &mut Proc, stats_json: &PathBuf) -> serde_json::Value {
        dut.interrupt();
        assert_eq!(
            dut.wait(std::time::Duration::from_secs(30)),
            Some(0),
            "dataplane did not stop cleanly:\n{}",
            dut.output()
        );
        let text = std::fs::read_to_string(stats_json).expect("stats json written on SIGINT");
        serde_json::from_str(&text).expect("stats json parses")
    }

    /// The dataplane DUT's EAL file prefix (for secondary processes such as dpdk-dumpcap).
    pub fn dut_prefix(&self) -> String {
        format!("dut-{}", self.scratch.tag)
    }

    /// Starts the dataplane as DUT with `config`, writing its final counters to `stats_json`.
    pub fn start_dataplane(
        &self,
        config: &PathBuf,
        stats_json: &PathBuf,
        stats_period: f64,
    ) -> Proc {
        let mut c = Command::new(workspace_bin("dataplane"));
        c.args(["run", "--config"])
            .arg(config)
            .arg("--stats-json")
            .arg(stats_json);
        c.args([
            "--stats-period",
            &stats_period.to_string(),
            "--no-hugepage-setup",
            "--prometheus",
            "127.0.0.1:0",
        ]);
        Proc::spawn("dataplane", c, self.scratch.path("dataplane.log"))
    }

    /// Starts dpdk-testpmd as DUT (`mode` io or macswap) on the same cores and sockets.
    pub fn start_testpmd_dut(&self, mode: &str) -> Proc {
        let mut c = Command::new(TESTPMD);
        c.args([
            "--lcores",
            "0@0,1@1",
            "--main-lcore",
            "0",
            "--no-pci",
            "--log-level",
            "notice",
        ]);
        c.args(["--file-prefix", &format!("tpdut-{}", self.scratch.tag)]);
        c.arg("--vdev").arg(format!(
            "net_vhost0,iface={},queues=1",
            self.sock0.display()
        ));
        c.arg("--vdev").arg(format!(
            "net_vhost1,iface={},queues=1",
            self.sock1.display()
        ));
        c.args([
            "--",
            &format!("--forward-mode={mode}"),
            "--nb-cores=1",
            "--stats-period",
            "1",
            // Its forwarding cycles per packet at exit (`parse_testpmd_cycles_per_packet`):
            // the I/O cost the dataplane's node cycles are set against.
            "--record-core-cycles",
        ]);
        c.args([
            "--rxd",
            "1024",
            "--txd",
            "1024",
            "--burst",
            "32",
            "--total-num-mbufs",
            "16384",
        ]);
        Proc::spawn(
            &format!("testpmd-{mode}"),
            c,
            self.scratch.path(&format!("testpmd-{mode}.log")),
        )
    }

    /// EAL arguments of the generator side (virtio-user towards the DUT's sockets, CPU 0).
    pub fn generator_eal(&self, prefix: &str) -> Vec<String> {
        self.generator_eal_ring(prefix, GENERATOR_RING)
    }

    /// [`Self::generator_eal`] with virtio-user rings of `ring` entries.
    pub fn generator_eal_ring(&self, prefix: &str, ring: u32) -> Vec<String> {
        vec![
            "--lcores".into(),
            "0@0,1@0".into(),
            "--main-lcore".into(),
            "0".into(),
            "--no-pci".into(),
            "--single-file-segments".into(),
            "-m".into(),
            // The mbufs that fill two receive rings of `ring` entries, and headroom.
            (256 + 2 * ring as usize * 2432 / (1 << 20)).to_string(),
            "--log-level".into(),
            "notice".into(),
            "--file-prefix".into(),
            format!("{prefix}-{}", self.scratch.tag),
            "--vdev".into(),
            format!(
                "net_virtio_user0,path={},queue_size={ring}{}",
                self.sock0.display(),
                self.server_opt()
            ),
            "--vdev".into(),
            format!(
                "net_virtio_user1,path={},queue_size={ring}{}",
                self.sock1.display(),
                self.server_opt()
            ),
        ]
    }

    fn server_opt(&self) -> &'static str {
        if self.gen_server {
            ",server=1,queues=1"
        } else {
            ""
        }
    }

    /// Starts dpdk-testpmd flowgen as generator: both ports send at full speed and count
    /// what they receive. Stop it with SIGINT; its totals come from its log.
    pub fn start_flowgen(&self) -> Proc {
        self.start_flowgen_with(&Traffic::default())
    }

    /// [`Self::start_flowgen`] with a frame size (`--txpkts`, a single number: flowgen has
    /// no IMIX) and flow count (`--flowgen-flows`).
    pub fn start_flowgen_with(&self, t: &Traffic) -> Proc {
        let mut c = Command::new(TESTPMD);
        c.args(self.generator_eal("tpgen"));
        c.args([
            "--",
            "--forward-mode=flowgen",
            "--nb-cores=1",
            "--stats-period",
            "1",
        ]);
        c.args([
            "--rxd",
            "1024",
            "--txd",
            "1024",
            "--burst",
            "32",
            "--total-num-mbufs",
            "16384",
        ]);
        c.arg(format!("--txpkts={}", t.size))
            .arg(format!("--flowgen-flows={}", t.flows));
        Proc::spawn("testpmd-flowgen", c, self.scratch.path("flowgen.log"))
    }

    /// Starts dpgen: both ports send `rate_mpps` each (0: full speed) for `secs`.
    pub fn start_dpgen(&self, rate_mpps: f64, secs: f64, json: &PathBuf) -> Proc {
        let mut c = Command::new(workspace_bin("dpgen"));
        c.args(["--port", "net_virtio_user0", "--port", "net_virtio_user1"]);
        c.args([
            "--rate-mpps",
            &rate_mpps.to_string(),
            "--duration",
            &secs.to_string(),
            "--json",
        ])
        .arg(json);
        c.arg("--").args(self.generator_eal("dpgen"));
        Proc::spawn("dpgen", c, self.scratch.path("dpgen.log"))
    }

    /// Starts dpgen with sizes, flows, mirrored flows and latency probes; `log` names its log.
    pub fn start_dpgen_with(
        &self,
        rate_mpps: f64,
        secs: f64,
        json: &PathBuf,
        o: &DpgenOpts,
        log: &str,
    ) -> Proc {
        let mut c = Command::new(workspace_bin("dpgen"));
        c.args(["--port", "net_virtio_user0", "--port", "net_virtio_user1"]);
        c.args([
            "--rate-mpps",
            &rate_mpps.to_string(),
            "--duration",
            &secs.to_string(),
            "--json",
        ])
        .arg(json);
        c.args([
            "--size",
            &o.traffic.size,
            "--flows",
            &o.traffic.flows.to_string(),
            "--stats-period",
            &o.stats_period.to_string(),
        ]);
        if o.mirror {
            c.arg("--mirror");
        }
        if o.latency {
            c.arg("--latency");
        }
        c.args(["--linger", &o.linger.to_string()]);
        if let Some(p) = &o.linger_until {
            c.arg("--linger-until").arg(p);
        }
        for sp in &o.specs {
            c.arg("--spec").arg(sp);
        }
        for w in &o.watch {
            c.arg("--watch-addr").arg(w.to_string());
        }
        if let Some(p) = &o.probe {
            c.arg("--probe").arg(p);
        }
        if let Some(p) = &o.probe_log {
            c.arg("--probe-log").arg(p);
        }
        if let Some(p) = &o.stop_when {
            c.arg("--stop-when").arg(p);
        }
        if o.realtime {
            c.arg("--realtime");
        }
        if o.idle_sleep_us > 0 {
            c.args(["--idle-sleep-us", &o.idle_sleep_us.to_string()]);
        }
        let ring = if o.rx_ring > 0 {
            o.rx_ring
        } else {
            GENERATOR_RING
        };
        c.args(["--rxd", &ring.to_string()]);
        c.arg("--").args(self.generator_eal_ring("dpgen", ring));
        Proc::spawn("dpgen", c, self.scratch.path(log))
    }
}

/// The per-port `Rx-pps` samples testpmd printed with `--stats-period` (port order).
pub fn testpmd_rx_pps_samples(out: &str) -> Vec<Vec<u64>> {
    let mut per_port: Vec<Vec<u64>> = Vec::new();
    let mut port: Option<usize> = None;
    for line in out.lines() {
        if let Some(i) = line.find("NIC statistics for port") {
            port = line[i + "NIC statistics for port".len()..]
                .split_whitespace()
                .next()
                .and_then(|s| s.parse().ok());
        } else if let (Some(p), Some(i)) = (port, line.find("Rx-pps:")) {
            if let Some(v) = line[i + 7..]
                .split_whitespace()
                .next()
                .and_then(|s| s.parse().ok())
            {
                if per_port.len() <= p {
                    per_port.resize(p + 1, Vec::new());
                }
                per_port[p].push(v);
            }
        }
    }
    per_port
}

/// The `[ovn]` and `[pipeline]` sections of a dataplane following an OVN NB at `remotes` on
/// the two vhost-user ports fh0 and mh0: `parse -> acl_in (from-lport) -> lb -> acl_out
/// (to-lport) -> forward`, the lb's resets out by metadata. `acl_params` are the acl nodes'
/// own parameters (e.g. `stateful = 262144, set_class_min_entries = 64`); `ct_capacity` is
/// the lb's connection table. Shared by ovn-bench, ovn-churn and the vhost OVN test.
pub fn ovn_pipeline(remotes: &str, acl_params: &str, ct_capacity: usize) -> String {
    ovn_pipeline_text(remotes, acl_params, ct_capacity, false)
}

/// [`ovn_pipeline`] with a third acl node, `acl_after`, between the lb and `acl_out`: the
/// stage of the from-lport ACLs with `options:apply-after-lb=true` (`after_lb_node`), with
/// the same parameters as the other two.
pub fn ovn_pipeline_after_lb(remotes: &str, acl_params: &str, ct_capacity: usize) -> String {
    ovn_pipeline_text(remotes, acl_params, ct_capacity, true)
}

fn ovn_pipeline_text(
    remotes: &str,
    acl_params: &str,
    ct_capacity: usize,
    after_lb: bool,
) -> String {
    let (after_key, after_node, lb_next, after_edge) = if after_lb {
        (
            "after_lb_node = \"acl_after\"\n".to_string(),
            format!(
                "[[pipeline.nodes]]\nname = \"acl_after\"\nkind = \"acl\"\nparams = {{ acl = {{ default = \"drop\" }}, {acl_params} }}\n"
            ),
            "acl_after",
            "[[pipeline.edges]]\nfrom = \"acl_after\"\nto = \"acl_out\"\n",
        )
    } else {
        (String::new(), String::new(), "acl_out", "")
    };
    format!(
        r#"
[ovn]
remotes = "{remotes}"
from_lport_node = "acl_in"
{after_key}to_lport_node = "acl_out"
lb_node = "lb"

[pipeline]
input = "parse"
[[pipeline.nodes]]
name = "parse"
kind = "parse"
[[pipeline.nodes]]
name = "acl_in"
kind = "acl"
params = {{ acl = {{ default = "drop" }}, {acl_params} }}
[[pipeline.nodes]]
name = "lb"
kind = "lb"
params = {{ control = "ovn-lb", conntrack = {{ capacity = {ct_capacity} }} }}
{after_node}[[pipeline.nodes]]
name = "acl_out"
kind = "acl"
params = {{ acl = {{ default = "drop" }}, {acl_params}, outport = "cross-connect", pairs = [["fh0", "mh0"]] }}
[[pipeline.nodes]]
name = "forward"
kind = "forward"
params = {{ mode = "cross-connect", pairs = [["fh0", "mh0"]] }}
[[pipeline.nodes]]
name = "reset"
kind = "forward"
params = {{ mode = "by-metadata" }}
[[pipeline.edges]]
from = "parse"
to = "acl_in"
[[pipeline.edges]]
from = "acl_in"
to = "lb"
[[pipeline.edges]]
from = "lb"
to = "{lb_next}"
{after_edge}[[pipeline.edges]]
from = "lb"
output = "reset"
to = "reset"
[[pipeline.edges]]
from = "acl_out"
to = "forward"
"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ovn_configs_name_each_ports_lsp() {
        let t = VhostTopology::new("lsp-names");
        let text = std::fs::read_to_string(t.dataplane_config_lsps("", ["a", "b"])).unwrap();
        let fh = text.find("[ports.fh0]").unwrap();
        let mh = text.find("[ports.mh0]").unwrap();
        assert_eq!(
            text.find("lsp = \"a\"").map(|i| i > fh && i < mh),
            Some(true),
            "{text}"
        );
        assert!(text.find("lsp = \"b\"").is_some_and(|i| i > mh), "{text}");
        let plain = std::fs::read_to_string(t.dataplane_config("", "")).unwrap();
        assert!(!plain.contains("lsp ="), "{plain}");
    }

    #[test]
    fn the_after_lb_pipeline_puts_its_stage_between_the_lb_and_acl_out() {
        let text = ovn_pipeline_after_lb("unix:/nb.sock", "stateful = 0", 1024);
        let v: toml::Value = toml::from_str(&text).expect("TOML");
        assert_eq!(v["ovn"]["after_lb_node"].as_str(), Some("acl_after"));
        let edges: Vec<(String, String)> = v["pipeline"]["edges"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e.get("output").is_none())
            .map(|e| {
                let f = |k: &str| e[k].as_str().unwrap().to_string();
                (f("from"), f("to"))
            })
            .collect();
        let next = |n: &str| edges.iter().find(|(f, _)| f == n).map(|(_, t)| t.as_str());
        assert_eq!(next("lb"), Some("acl_after"));
        assert_eq!(next("acl_after"), Some("acl_out"));
        let plain: toml::Value =
            toml::from_str(&ovn_pipeline("unix:/nb.sock", "stateful = 0", 1024)).unwrap();
        assert!(plain["ovn"].get("after_lb_node").is_none());
        assert!(!plain.to_string().contains("acl_after"));
    }

    #[test]
    fn acl_ruleset_has_the_flat_rule_count_and_allows_only_by_the_lowest_rules() {
        use pipeline::acl::publish::expand_config_with;
        use pipeline::acl::{
            evaluate, AclFile, Action, ExpandLimits, PacketSummary, PortId, RuleSet,
        };
        use std::net::IpAddr;
        // Counted expanded (every set's entries in flat rules, as before set classes).
        let expand_config =
            |c: &pipeline::acl::AclConfig| expand_config_with(c, ExpandLimits::expand_all());
        let file: AclFile = toml::from_str(&acl_rules_toml(1000)).expect("generated rules parse");
        let table = expand_config(&file.acl).expect("rules expand");
        assert_eq!(
            table.flat_rule_count(),
            1000,
            "fixed part: {}",
            expand_config(&toml::from_str::<AclFile>(&acl_rules_toml(0)).unwrap().acl)
                .unwrap()
                .flat_rule_count()
        );
        let rs = RuleSet::from_config(&file.acl).unwrap();
        let (fh, mh) = (
            PortId::with_role("fh0", "fronthaul"),
            PortId::with_role("mh0", "midhaul"),
        );
        let judge = |inp, outp, src: IpAddr, dst: IpAddr, sp, dp| {
            let v = evaluate(&rs, &PacketSummary::udp(inp, outp, src, dst, sp, dp));
            (v.acl.map(|i| rs.acls()[i].name.clone()), v.action)
        };
        let allow = |n: &str| (Some(n.to_string()), Action::Allow);
        // dpgen's default flows, both directions.
        for f in [0u32, 1, 255, 1023, 40_000] {
            let c = crate::frames::udp_frame(64, 0, 1, f);
            let ip = |o: usize| IpAddr::from(<[u8; 4]>::try_from(&c[o..o + 4]).unwrap());
            let sp = u16::from_be_bytes([c[34], c[35]]);
            assert_eq!(
                judge(fh, mh, ip(26), ip(30), sp, VIP_PORT),
                allow("allow-clients-to-servers")
            );
            let r = crate::frames::udp_frame(64, 1, 0, f);
            let ip = |o: usize| IpAddr::from(<[u8; 4]>::try_from(&r[o..o + 4]).unwrap());
            assert_eq!(
                judge(mh, fh, ip(26), ip(30), sp, VIP_PORT),
                allow("allow-servers-to-clients")
            );
        }
        // VIP traffic, its replies from every backend, and the deny flows.
        let crate::traffic::PortSpec::Flows(spec) =
            crate::traffic::PortSpec::parse(vip_specs(100_000, 10)[0].split_once('=').unwrap().1)
                .unwrap()
        else {
            panic!()
        };
        for f in [0u32, 5, 17, 16_383, 16_384, 99_999] {
            let fl = spec.flow(f);
            let (src, dst) = (IpAddr::from(fl.src), IpAddr::from(fl.dst));
            if fl.deny {
                assert_eq!(
                    judge(fh, mh, src, dst, fl.sport, fl.dport),
                    (Some("deny-discard".into()), Action::Drop)
                );
                continue;
            }
            assert_eq!(
                judge(fh, mh, src, dst, fl.sport, fl.dport),
                allow("allow-clients-to-vip")
            );
            for b in BACKENDS {
                assert_eq!(
                    judge(mh, fh, IpAddr::from(b), src, VIP_PORT, fl.sport),
                    allow("allow-backend-replies")
                );
            }
        }
        // Anything else is dropped.
        assert_eq!(
            judge(
                fh,
                mh,
                "10.1.0.1".parse().unwrap(),
                "10.2.0.1".parse().unwrap(),
                1024,
                6000
            )
            .1,
            Action::Drop
        );
    }

    #[test]
    fn dut_pipelines_are_valid_dataplane_configs() {
        let t = VhostTopology::new("cfgcheck");
        let rules = t.scratch.path("acl.toml");
        std::fs::write(&rules, acl_rules_toml(1000)).unwrap();
        for extra in [
            acl_forward_pipeline(&rules),
            full_pipeline(&rules, 262_144, Lookups::Shared),
            full_pipeline(&rules, 262_144, Lookups::Separate),
        ] {
            let cfg = t.dataplane_config("", &extra);
            let out = Command::new(workspace_bin("dataplane"))
                .arg("check")
                .arg("--config")
                .arg(&cfg)
                .output()
                .expect("dataplane check runs");
            assert!(
                out.status.success(),
                "dataplane check failed:\n{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }

    #[test]
    fn rx_pps_samples_per_port() {
        let out = "  ######################## NIC statistics for port 0  ########################\n  RX-packets: 1\n  Throughput (since last show)\n  Rx-pps:      2512345          Rx-bps:   1286320640\n  Tx-pps:            7          Tx-bps:            0\n  ###\n  ######################## NIC statistics for port 1  ########################\n  Rx-pps:      11          Rx-bps:   1\n ######################## NIC statistics for port 0  ########################\n  Rx-pps:      3          Rx-bps:   1\n";
        assert_eq!(
            testpmd_rx_pps_samples(out),
            vec![vec![2512345, 3], vec![11]]
        );
    }
}
