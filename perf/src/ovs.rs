//! An isolated OVS-DPDK instance as a device under test: its own database file, run
//! directory and sockets under a scratch folder, `ovsdb-server` and `ovs-vswitchd` started
//! directly as child processes (no init scripts, no kernel module), one PMD thread on the
//! DUT's core, and a netdev bridge whose two `dpdkvhostuserclient` ports connect to the
//! generator's virtio-user sockets (the generator is the vhost-user server).
//!
//! ```text
//!   generator (CPU 0, virtio-user server=1)     ovs-vswitchd (PMD on CPU 1)
//!   sock0 <────────────── vh0 (ofport 1) ── br0 ── vh1 (ofport 2) ──────────────> sock1
//! ```

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::procs::{run_checked, Proc, Scratch};

/// The DPDK build of ovs-vswitchd shipped by Debian's `openvswitch-switch-dpdk`.
pub const VSWITCHD_DPDK: &str = "/usr/lib/openvswitch-switch-dpdk/ovs-vswitchd-dpdk";
/// The OVS database schema.
pub const SCHEMA: &str = "/usr/share/openvswitch/vswitch.ovsschema";

/// Whether OVS-DPDK is installed (`scripts/setup --bench` installs it).
pub fn available() -> bool {
    Path::new(VSWITCHD_DPDK).exists() && Path::new(SCHEMA).exists()
}

/// Which OpenFlow pipeline the bridge runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OvsPipeline {
    /// `in_port=1 -> 2` and back.
    Forward,
    /// `n` ACL-like 5-tuple rules at higher priority that never match the benchmark's
    /// traffic, above the forwarding rules (every packet is classified through them).
    Acl(usize),
    /// A stateful firewall: connections may only be opened from port 1 (`ct(commit)`);
    /// port 2 only passes packets of established connections.
    Conntrack,
    /// The OVS equivalent of the dataplane's `parse -> acl -> lb -> forward`: `acl` ACL-like
    /// drop flows (as [`OvsPipeline::Acl`]) and a drop for UDP to the deny port, then a
    /// conntrack firewall with a load balancer the way OVN programs one: every IP packet
    /// goes through `ct(nat)` (established connections are translated, DNAT one way and
    /// un-DNAT the other); a new connection to the VIP from port 1 picks a backend in a
    /// `select` group whose buckets `ct(commit,nat(dst=backend:port))`; other new
    /// connections from port 1 are committed unchanged; port 2 passes established
    /// connections only.
    CtLb {
        /// ACL-like flows in front.
        acl: usize,
    },
}

impl OvsPipeline {
    /// The OpenFlow rules, one per line (`ovs-ofctl add-flows` format).
    pub fn flows(&self) -> String {
        let fwd = "priority=1,in_port=1,actions=output:2\npriority=1,in_port=2,actions=output:1\n";
        match *self {
            OvsPipeline::Forward => fwd.to_string(),
            OvsPipeline::Acl(n) => {
                let mut s = String::with_capacity(n * 80 + fwd.len());
                for i in 0..n {
                    // Deny rules on networks the generator never uses (10.200+.x.y/32 and
                    // 172.16/12 sources), varying destination ports: all must be looked at.
                    let (a, b) = ((i / 256) % 50, i % 256);
                    s.push_str(&format!(
                        "priority={},udp,nw_src=172.{}.{}.0/24,nw_dst=10.{}.{}.{},tp_dst={},actions=drop\n",
                        100 + (i % 1000),
                        16 + (i % 16),
                        (i / 16) % 256,
                        200 + a,
                        b,
                        (i * 7) % 256,
                        1 + (i % 60000)
                    ));
                }
                s.push_str(fwd);
                s
            }
            OvsPipeline::CtLb { acl } => {
                let mut s = OvsPipeline::Acl(acl).flows();
                // Keep the ACL-like drops, replace the forwarding by the firewall + LB.
                s = s.replace(fwd, "");
                let (vip, port) = (crate::topology::VIP, crate::topology::VIP_PORT);
                s.push_str(&format!(
                    "table=0,priority=50,udp,tp_dst={deny},actions=drop\n\
                     table=0,priority=10,ip,actions=ct(table=1,zone=1,nat)\n\
                     table=0,priority=1,actions=drop\n\
                     table=1,priority=20,in_port=1,ct_state=+new+trk,udp,nw_dst={vip},tp_dst={port},actions=group:1\n\
                     table=1,priority=10,in_port=1,ct_state=+new+trk,ip,actions=ct(commit,zone=1),output:2\n\
                     table=1,priority=10,in_port=1,ct_state=+est+trk,ip,actions=output:2\n\
                     table=1,priority=10,in_port=2,ct_state=+est+trk,ip,actions=output:1\n\
                     table=1,priority=1,actions=drop\n\
                     table=2,priority=1,actions=output:2\n",
                    deny = crate::topology::DENY_PORT
                ));
                s
            }
            OvsPipeline::Conntrack => "table=0,priority=10,ip,ct_state=-trk,actions=ct(table=1)\n\
                 table=0,priority=1,actions=drop\n\
                 table=1,priority=10,in_port=1,ip,ct_state=+trk+new,actions=ct(commit),output:2\n\
                 table=1,priority=10,in_port=1,ip,ct_state=+trk+est,actions=output:2\n\
                 table=1,priority=10,in_port=2,ip,ct_state=+trk+est,actions=output:1\n\
                 table=1,priority=1,actions=drop\n"
                .to_string(),
        }
    }
}

impl OvsPipeline {
    /// The OpenFlow groups the flows use (`ovs-ofctl add-groups` format), one per line.
    pub fn groups(&self) -> String {
        match *self {
            OvsPipeline::CtLb { .. } => {
                let port = crate::topology::VIP_PORT;
                let buckets: Vec<String> = crate::topology::BACKENDS
                    .iter()
                    .map(|b| format!("bucket=weight:100,actions=ct(commit,table=2,zone=1,nat(dst={b}:{port}))"))
                    .collect();
                format!("group_id=1,type=select,{}\n", buckets.join(","))
            }
            _ => String::new(),
        }
    }
}

/// A running isolated OVS-DPDK (stopped and cleaned up on drop).
#[derive(Debug)]
pub struct Ovs {
    /// `ovsdb-server`.
    pub db: Proc,
    /// `ovs-vswitchd` (the DPDK build).
    pub vswitchd: Proc,
    /// Run directory (control sockets, bridge management socket).
    pub rundir: PathBuf,
    /// The database socket.
    pub db_sock: PathBuf,
}

impl Ovs {
    /// Starts OVS in `scratch`: database, vswitchd with DPDK (lcore mask `0x1`, one PMD on
    /// CPU 1, socket memory limited), bridge `br0` with ports `vh0`/`vh1` as vhost-user
    /// clients of `sock0`/`sock1`, and `pipeline`'s flows. Returns once both ports exist.
    pub fn start(
        scratch: &Scratch,
        sock0: &Path,
        sock1: &Path,
        pipeline: OvsPipeline,
    ) -> Result<Ovs, String> {
        let ovs = Ovs::start_daemons(scratch, &[])?;
        ovs.add_bridge(sock0, sock1, pipeline)?;
        Ok(ovs)
    }

    /// Starts OVS in `scratch` as an OVN chassis: database and vswitchd as for
    /// [`Ovs::start`] with `Open_vSwitch` `external_ids` (`system-id`, `ovn-remote`,
    /// `ovn-encap-type`, `ovn-encap-ip`, `ovn-bridge-datapath-type`), and bridge `br-int`
    /// (netdev) whose ports `vh0`/`vh1` are vhost-user clients of `sock0`/`sock1` with
    /// `external_ids:iface-id` set to the two logical switch ports. ovn-controller (started
    /// by the caller against [`Ovs::db_sock`]) programs the flows.
    pub fn start_chassis(
        scratch: &Scratch,
        sock0: &Path,
        sock1: &Path,
        iface_ids: [&str; 2],
        sb_remote: &str,
    ) -> Result<Ovs, String> {
        let ids = [
            "external_ids:system-id=bench-chassis".to_string(),
            format!("external_ids:ovn-remote=\"{sb_remote}\""),
            "external_ids:ovn-encap-type=geneve".to_string(),
            "external_ids:ovn-encap-ip=127.0.0.1".to_string(),
            "external_ids:ovn-bridge-datapath-type=netdev".to_string(),
        ];
        let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
        let ovs = Ovs::start_daemons(scratch, &ids)?;
        ovs.vsctl(&[
            "add-br",
            "br-int",
            "--",
            "set",
            "bridge",
            "br-int",
            "datapath_type=netdev",
            "fail-mode=secure",
            "other_config:disable-in-band=true",
        ])?;
        ovs.add_vhost_ports("br-int", sock0, sock1, Some(iface_ids))?;
        Ok(ovs)
    }

    /// Database and DPDK vswitchd, no bridge yet; `open_vswitch` are extra
    /// `column:key=value` settings of the `Open_vSwitch` row.
    fn start_daemons(scratch: &Scratch, open_vswitch: &[&str]) -> Result<Ovs, String> {
        let rundir = scratch.path("ovs");
        std::fs::create_dir_all(&rundir).map_err(|e| format!("{}: {e}", rundir.display()))?;
        let dbfile = rundir.join("conf.db");
        let db_sock = rundir.join("db.sock");
        run_checked(
            Command::new("ovsdb-tool")
                .arg("create")
                .arg(&dbfile)
                .arg(SCHEMA),
            "ovsdb-tool create",
        )?;
        let mut c = Command::new("ovsdb-server");
        c.arg(&dbfile)
            .arg(format!("--remote=punix:{}", db_sock.display()));
        c.arg(format!(
            "--unixctl={}",
            rundir.join("ovsdb-server.ctl").display()
        ));
        c.arg(format!(
            "--pidfile={}",
            rundir.join("ovsdb-server.pid").display()
        ));
        c.env("OVS_RUNDIR", &rundir).env("OVS_DBDIR", &rundir);
        let db = Proc::spawn("ovsdb-server", c, scratch.path("ovsdb-server.log"));
        if !crate::procs::wait_for_paths(&[&db_sock], Duration::from_secs(10)) {
            return Err(format!("ovsdb-server did not start:\n{}", db.output()));
        }
        let vsctl = |args: &[&str]| -> Result<String, String> {
            let mut c = Command::new("ovs-vsctl");
            c.arg(format!("--db=unix:{}", db_sock.display()))
                .arg("--timeout=30")
                .args(args);
            run_checked(&mut c, &format!("ovs-vsctl {}", args.join(" ")))
        };
        vsctl(&["--no-wait", "init"])?;
        let extra = format!(
            "--file-prefix=ovs-{} --no-pci --log-level=notice",
            scratch.tag
        );
        vsctl(&[
            "--no-wait",
            "set",
            "Open_vSwitch",
            ".",
            "other_config:dpdk-init=true",
            "other_config:dpdk-lcore-mask=0x1",
            "other_config:pmd-cpu-mask=0x2",
            "other_config:dpdk-socket-mem=512",
            "other_config:dpdk-socket-limit=1024",
            &format!("other_config:dpdk-extra=\"{extra}\""),
        ])?;
        if !open_vswitch.is_empty() {
            let mut args = vec!["--no-wait", "set", "Open_vSwitch", "."];
            args.extend_from_slice(open_vswitch);
            vsctl(&args)?;
        }
        let mut c = Command::new(VSWITCHD_DPDK);
        c.arg(format!("unix:{}", db_sock.display()));
        c.arg(format!(
            "--unixctl={}",
            rundir.join("ovs-vswitchd.ctl").display()
        ));
        c.arg(format!(
            "--pidfile={}",
            rundir.join("ovs-vswitchd.pid").display()
        ));
        c.arg("-vconsole:warn").arg(format!(
            "--log-file={}",
            scratch.path("ovs-vswitchd.log").display()
        ));
        c.env("OVS_RUNDIR", &rundir).env("OVS_DBDIR", &rundir);
        let vswitchd = Proc::spawn("ovs-vswitchd", c, scratch.path("ovs-vswitchd.out"));
        Ok(Ovs {
            db,
            vswitchd,
            rundir,
            db_sock,
        })
    }

    /// Bridge `br0` with `pipeline`'s flows and ports `vh0`/`vh1` (see [`Ovs::start`]).
    fn add_bridge(&self, sock0: &Path, sock1: &Path, pipeline: OvsPipeline) -> Result<(), String> {
        let ovs = self;
        // Flows go in before the ports exist, so no packet ever meets an empty table.
        ovs.vsctl(&[
            "add-br",
            "br0",
            "--",
            "set",
            "bridge",
            "br0",
            "datapath_type=netdev",
            "fail-mode=secure",
        ])?;
        let groups = pipeline.groups();
        if !groups.is_empty() {
            let gf = ovs.rundir.join("groups.txt");
            std::fs::write(&gf, groups).map_err(|e| e.to_string())?;
            let mut c = Command::new("ovs-ofctl");
            c.env("OVS_RUNDIR", &ovs.rundir)
                .args(["-O", "OpenFlow13", "add-groups", "br0"])
                .arg(&gf);
            run_checked(&mut c, "ovs-ofctl add-groups")?;
        }
        let flows = ovs.rundir.join("flows.txt");
        std::fs::write(&flows, pipeline.flows()).map_err(|e| e.to_string())?;
        ovs.ofctl(&["del-flows", "br0"])?;
        let mut c = Command::new("ovs-ofctl");
        c.env("OVS_RUNDIR", &ovs.rundir)
            .args(["-O", "OpenFlow13", "add-flows", "br0"])
            .arg(&flows);
        run_checked(&mut c, "ovs-ofctl add-flows")?;
        ovs.add_vhost_ports("br0", sock0, sock1, None)
    }

    /// Adds ports `vh0` (OpenFlow port 1) and `vh1` (2) to `bridge` as vhost-user clients of
    /// `sock0` / `sock1`, with `external_ids:iface-id` set to `iface_ids` when given.
    fn add_vhost_ports(
        &self,
        bridge: &str,
        sock0: &Path,
        sock1: &Path,
        iface_ids: Option<[&str; 2]>,
    ) -> Result<(), String> {
        for (k, (name, sock)) in [("vh0", sock0), ("vh1", sock1)].into_iter().enumerate() {
            let path = format!("options:vhost-server-path={}", sock.display());
            let ofport = format!("ofport_request={}", k + 1);
            let id = iface_ids.map(|ids| format!("external_ids:iface-id={}", ids[k]));
            let mut args = vec![
                "add-port",
                bridge,
                name,
                "--",
                "set",
                "Interface",
                name,
                "type=dpdkvhostuserclient",
                &path,
                &ofport,
            ];
            args.extend(id.as_deref());
            self.vsctl(&args)?;
        }
        Ok(())
    }

    /// Runs `ovs-vsctl` against this instance.
    pub fn vsctl(&self, args: &[&str]) -> Result<String, String> {
        let mut c = Command::new("ovs-vsctl");
        c.arg(format!("--db=unix:{}", self.db_sock.display()))
            .arg("--timeout=60")
            .args(args);
        run_checked(&mut c, &format!("ovs-vsctl {}", args.join(" ")))
            .map_err(|e| format!("{e}\nvswitchd:\n{}", self.log_tail()))
    }

    /// Runs `ovs-ofctl` against this instance's bridge.
    pub fn ofctl(&self, args: &[&str]) -> Result<String, String> {
        let mut c = Command::new("ovs-ofctl");
        c.env("OVS_RUNDIR", &self.rundir)
            .args(["-O", "OpenFlow13"])
            .args(args);
        run_checked(&mut c, &format!("ovs-ofctl {}", args.join(" ")))
    }

    /// Runs `ovs-appctl` against this instance's vswitchd.
    pub fn appctl(&self, args: &[&str]) -> Result<String, String> {
        let mut c = Command::new("ovs-appctl");
        c.arg("-t")
            .arg(self.rundir.join("ovs-vswitchd.ctl"))
            .args(args);
        run_checked(&mut c, &format!("ovs-appctl {}", args.join(" ")))
    }

    /// The last lines of vswitchd's log.
    pub fn log_tail(&self) -> String {
        let p = self.vswitchd.log.with_file_name("ovs-vswitchd.log");
        let t = std::fs::read_to_string(p).unwrap_or_default();
        let lines: Vec<&str> = t.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// Waits until both vhost-user ports report link up (the generator connected).
    pub fn wait_links_up(&self, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        loop {
            let up = ["vh0", "vh1"].iter().all(|p| {
                self.vsctl(&["get", "Interface", p, "link_state"])
                    .map(|s| s.trim() == "up")
                    .unwrap_or(false)
            });
            if up {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "OVS vhost ports not up after {timeout:?}:\n{}",
                    self.log_tail()
                ));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Live counters of `vh0` and `vh1` (ofports 1 and 2) from `ovs-ofctl dump-ports` (the
    /// database's `statistics` column lags by up to 5 s).
    pub fn port_stats(&self) -> Result<[PortStats; 2], String> {
        let out = self.ofctl(&["dump-ports", "br0"])?;
        let all = PortStats::parse_dump_ports(&out);
        let get = |n: &str| {
            all.iter()
                .find(|(k, _)| k == n)
                .map(|(_, v)| *v)
                .ok_or_else(|| format!("port {n} missing in dump-ports:\n{out}"))
        };
        Ok([get("1")?, get("2")?])
    }

    /// The DUT report: port stats, datapath flow count and PMD stats, as JSON.
    pub fn report(&self) -> Value {
        // Push the datapath's flow statistics up to the OpenFlow rules first.
        let _ = self.appctl(&["revalidator/wait"]);
        let stats = self.port_stats();
        let pmd = self
            .appctl(&["dpif-netdev/pmd-stats-show"])
            .unwrap_or_default();
        let ports = match &stats {
            Ok(s) => s.iter().zip(["vh0", "vh1"]).map(|(p, n)| json!({"name": n, "rx": p.rx, "tx": p.tx, "rx_dropped": p.rx_dropped, "tx_dropped": p.tx_dropped})).collect(),
            Err(_) => Vec::new(),
        };
        // Drop reasons: the datapath's drop coverage counters, and the database's detailed
        // interface counters (updated every few seconds, so they may lag).
        let coverage = self.appctl(&["coverage/show"]).unwrap_or_default();
        let drops: Vec<&str> = coverage
            .lines()
            .map(str::trim)
            .filter(|l| l.contains("drop") && !l.ends_with("total: 0"))
            .collect();
        let db: Vec<String> = ["vh0", "vh1"]
            .iter()
            .map(|p| {
                self.vsctl(&["get", "Interface", p, "statistics"])
                    .unwrap_or_default()
                    .trim()
                    .to_string()
            })
            .collect();
        let datapath_drops: u64 = drops
            .iter()
            .filter(|l| l.starts_with("datapath_drop") || l.starts_with("drop_action"))
            .filter_map(|l| l.rsplit("total:").next()?.trim().parse::<u64>().ok())
            .sum();
        // Packets dropped by OpenFlow rules with `actions=drop` (ACL-like flows, the
        // firewall's drops), per rule: these include the packets dropped in the slow path
        // (upcalls), which the datapath's drop counter does not see.
        let mut openflow_drops = 0u64;
        let mut by_rule = serde_json::Map::new();
        // Packets of the rules that commit connections (`ct(commit)`: the first packets of
        // new connections), reported beside the accounting.
        let mut commit_packets = 0u64;
        for l in self
            .ofctl(&["dump-flows", "br0"])
            .unwrap_or_default()
            .lines()
        {
            let l = l.trim();
            let n = l
                .split(", ")
                .find_map(|f| f.strip_prefix("n_packets="))
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0);
            if l.contains("actions=ct(commit") {
                commit_packets += n;
            }
            if !l.ends_with("actions=drop") {
                continue;
            }
            if n != 0 {
                openflow_drops += n;
                // "cookie=.., table=T, n_packets=N, ..., priority=P,MATCH actions=drop"
                let table = l
                    .split(", ")
                    .find(|f| f.starts_with("table="))
                    .unwrap_or("table=0");
                let rule = format!("{table},{}", l.rsplit(", ").next().unwrap_or(l));
                by_rule.insert(rule, json!(n));
            }
        }
        // Conntrack and groups (empty for pipelines without them): connections tracked, and
        // per-bucket packets of the select group (= new connections per backend).
        let nconns = self
            .appctl(&["dpctl/ct-get-nconns"])
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok());
        let groups = self.ofctl(&["dump-group-stats", "br0"]).unwrap_or_default();
        let ct_stats = self.appctl(&["dpctl/ct-stats-show"]).unwrap_or_default();
        json!({ "ports": ports, "datapath_drops": datapath_drops, "openflow_drops": openflow_drops, "openflow_drops_by_rule": by_rule, "conntrack_connections": nconns,
                "ct_commit_rule_packets": commit_packets,
                "conntrack_stats": ct_stats.lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>(),
                "group_stats": groups.lines().map(str::trim).filter(|l| l.contains("bucket") || l.contains("group_id")).collect::<Vec<_>>(), "pmd_stats": pmd.lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>(),
                "drop_coverage": drops, "interface_statistics_db": db, "error": stats.err() })
    }

    /// Stops vswitchd and the database (SIGTERM, then SIGKILL after 20 s).
    pub fn stop(mut self) {
        let _ = self.appctl(&["exit"]);
        if self.vswitchd.wait(Duration::from_secs(20)).is_none() {
            eprintln!("ovs-vswitchd did not exit; killed");
        }
        let _ = Command::new("ovs-appctl")
            .arg("-t")
            .arg(self.rundir.join("ovsdb-server.ctl"))
            .arg("exit")
            .output();
        self.db.wait(Duration::from_secs(10));
    }
}

/// Counters of one OVS interface.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PortStats {
    /// Packets OVS received from the peer.
    pub rx: u64,
    /// Packets OVS sent to the peer.
    pub tx: u64,
    /// Packets dropped on receive.
    pub rx_dropped: u64,
    /// Packets dropped on send (peer ring full).
    pub tx_dropped: u64,
}

impl PortStats {
    /// Parses `ovs-ofctl dump-ports` output into (port, counters) pairs; the port is the
    /// OpenFlow port number or name as printed (`"1"`, `"LOCAL"`).
    pub fn parse_dump_ports(s: &str) -> Vec<(String, PortStats)> {
        let num = |line: &str, key: &str| -> u64 {
            line.find(key)
                .and_then(|i| {
                    line[i + key.len()..]
                        .split(|c: char| c == ',' || c.is_whitespace())
                        .next()
                })
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        let mut v: Vec<(String, PortStats)> = Vec::new();
        for line in s.lines() {
            let l = line.trim();
            if let Some(rest) = l.strip_prefix("port") {
                let name = rest
                    .trim()
                    .split(':')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .trim_matches('"')
                    .to_string();
                let p = PortStats {
                    rx: num(l, "rx pkts="),
                    rx_dropped: num(l, "drop="),
                    ..PortStats::default()
                };
                v.push((name, p));
            } else if l.starts_with("tx pkts=") {
                if let Some((_, p)) = v.last_mut() {
                    p.tx = num(l, "tx pkts=");
                    p.tx_dropped = num(l, "drop=");
                }
            }
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dump_ports_are_parsed() {
        let s = "OFPST_PORT reply (OF1.3) (xid=0x2): 3 ports\n  port LOCAL: rx pkts=0, bytes=0, drop=0, errs=0, frame=0, over=0, crc=0\n           tx pkts=0, bytes=0, drop=0, errs=0, coll=0\n           duration=3.1s\n  port  1: rx pkts=10, bytes=640, drop=2, errs=0, frame=?, over=?, crc=?\n           tx pkts=20, bytes=1280, drop=7, errs=?, coll=?\n  port  \"vh1\": rx pkts=5, bytes=1, drop=0, errs=0, frame=?, over=?, crc=?\n           tx pkts=6, bytes=1, drop=1, errs=?, coll=?\n";
        let v = PortStats::parse_dump_ports(s);
        assert_eq!(v.len(), 3);
        assert_eq!(
            v[1],
            (
                "1".to_string(),
                PortStats {
                    rx: 10,
                    tx: 20,
                    rx_dropped: 2,
                    tx_dropped: 7
                }
            )
        );
        assert_eq!(
            v[2],
            (
                "vh1".to_string(),
                PortStats {
                    rx: 5,
                    tx: 6,
                    rx_dropped: 0,
                    tx_dropped: 1
                }
            )
        );
    }

    #[test]
    fn ct_lb_pipeline_balances_new_vip_connections_over_four_nat_buckets() {
        let p = OvsPipeline::CtLb { acl: 1000 };
        let f = p.flows();
        assert_eq!(
            f.lines()
                .filter(|l| l.ends_with("actions=drop") && l.contains("nw_src=172."))
                .count(),
            1000
        );
        assert!(
            !f.contains("in_port=1,actions=output:2"),
            "no plain forwarding left"
        );
        assert_eq!(
            f.lines().filter(|l| l.contains("actions=group:1")).count(),
            1
        );
        assert!(f
            .lines()
            .any(|l| l.contains("in_port=2") && l.contains("+est") && l.ends_with("output:1")));
        assert!(
            !f.lines()
                .any(|l| l.contains("in_port=2") && l.contains("+new")),
            "port 2 never opens connections"
        );
        let g = p.groups();
        assert_eq!(g.matches("bucket=").count(), 4);
        for b in crate::topology::BACKENDS {
            assert!(g.contains(&format!("nat(dst={b}:{})", crate::topology::VIP_PORT)));
        }
        assert!(OvsPipeline::Conntrack.groups().is_empty());
    }

    #[test]
    fn acl_pipeline_has_n_rules_plus_forwarding() {
        let f = OvsPipeline::Acl(1000).flows();
        assert_eq!(f.lines().count(), 1002);
        assert_eq!(
            f.lines().filter(|l| l.ends_with("actions=drop")).count(),
            1000
        );
        // No deny rule can match the generator's traffic (sources 10.x, destinations 10.1-10.3).
        assert!(f
            .lines()
            .filter(|l| l.contains("drop"))
            .all(|l| l.contains("nw_src=172.")));
        assert_eq!(OvsPipeline::Forward.flows().lines().count(), 2);
    }
}
