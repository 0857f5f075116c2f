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

/// The testpmd binary.
pub const TESTPMD: &str = "dpdk-testpmd";

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
        let xc = if extra.contains("[pipeline]") {
            ""
        } else {
            "cross_connect = [[\"fh0\", \"mh0\"]]"
        };
        let text = format!(
            r#"[eal]
lcores = [0, 1]
main_lcore = 0
file_prefix = "dut-{tag}"
log_level = "notice"

[ports.fh0]
role = "fronthaul"
kind = "vhost-user"
path = "{s0}"

[ports.mh0]
role = "midhaul"
kind = "vhost-user"
path = "{s1}"

[forwarding]
{xc}
{forwarding}

{extra}
"#,
            tag = self.scratch.tag,
            s0 = self.sock0.display(),
            s1 = self.sock1.display()
        );
        let p = self.scratch.path("dut.toml");
        std::fs::write(&p, text).expect("writing config");
        p
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
        vec![
            "--lcores".into(),
            "0@0,1@0".into(),
            "--main-lcore".into(),
            "0".into(),
            "--no-pci".into(),
            "--single-file-segments".into(),
            "-m".into(),
            "256".into(),
            "--log-level".into(),
            "notice".into(),
            "--file-prefix".into(),
            format!("{prefix}-{}", self.scratch.tag),
            "--vdev".into(),
            format!(
                "net_virtio_user0,path={}{}",
                self.sock0.display(),
                self.server_opt()
            ),
            "--vdev".into(),
            format!(
                "net_virtio_user1,path={}{}",
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
        c.arg("--").args(self.generator_eal("dpgen"));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rx_pps_samples_per_port() {
        let out = "  ######################## NIC statistics for port 0  ########################\n  RX-packets: 1\n  Throughput (since last show)\n  Rx-pps:      2512345          Rx-bps:   1286320640\n  Tx-pps:            7          Tx-bps:            0\n  ###\n  ######################## NIC statistics for port 1  ########################\n  Rx-pps:      11          Rx-bps:   1\n ######################## NIC statistics for port 0  ########################\n  Rx-pps:      3          Rx-bps:   1\n";
        assert_eq!(
            testpmd_rx_pps_samples(out),
            vec![vec![2512345, 3], vec![11]]
        );
    }
}
