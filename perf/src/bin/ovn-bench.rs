//! `ovn-bench`: NB-commit-to-enforcement latency, measured by traffic, for the dataplane
//! following an OVN Northbound database and for real OVN (ovn-northd + ovn-controller +
//! OVS-DPDK) as the peer, on the same vhost-user topology and the same NB rows.
//!
//! One NB (`perf::nb_server`, Debian's ovsdb-server) holds a logical switch with two LSPs
//! (`lsp_fh`, `lsp_mh`) bound to the device's two vhost-user ports, a Neutron-like security
//! group (`neutron_pg_drop` at 1001, `pg_sg` allow-related at 1002 both ways), background
//! port-group ACLs the traffic never hits (`pg_bgK`, 500 each, Neutron's shape and priority),
//! a drop ACL naming a 200-entry address set, and a UDP load balancer whose VIP has no
//! backend. dpgen (CPU 0) sends background traffic both ways and a probe flow from port 0
//! (`dpgen --probe`), and logs each change of the probe's verdict. Changes, timed from just
//! before `ovn-nbctl` runs to the first probe that saw the new verdict:
//! - `acl_add`: a to-lport drop ACL at 2000 matching the probe (then deleted);
//! - `member_add`: the probe's source /24 added to the address set the drop names (then
//!   removed);
//! - `lb_backend_add`: a backend added to the VIP the probe is sent to (fresh 5-tuples, so
//!   every probe is a new connection), the probe starts arriving DNATed to it (then removed).
//!
//! The dataplane runs `parse -> acl_in -> lb -> acl_out -> forward` with `[ovn]`, its acl
//! nodes matching address sets of 64 entries or more by membership
//! (`--set-class-min-entries`). Rounds alternate the dataplane and OVN (A B A B). OVN's own account of each change
//! (`ovn-nbctl --wait=hv --print-wait-time`) comes from separate repetitions run after the
//! timed ones, so the wait does not change what is timed. Each round starts with an untimed
//! repetition of each change (`--warmup-reps`), for both systems alike.
//!
//! ```text
//! cargo build --release --workspace --bins
//! target/release/ovn-bench --sizes 1000,10000 --reps 30 --rounds 2 --json out.json
//! ```

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use clap::Parser;
use perf::nb_server::NbServer;
use perf::ovs::Ovs;
use perf::probe::{read_events, realtime_ns, settled_change, Verdict};
use perf::procs::{ensure_hugepages, Proc};
use perf::topology::{DpgenOpts, VhostTopology};
use serde_json::{json, Value};

#[derive(Parser, Debug)]
#[command(about = "NB-commit-to-enforcement latency: the dataplane beside real OVN")]
struct Args {
    /// Background ACL counts (comma list).
    #[arg(long, default_value = "1000,10000", value_delimiter = ',')]
    sizes: Vec<usize>,
    /// Timed repetitions of each change per system and size (spread over the rounds).
    #[arg(long, default_value_t = 30)]
    reps: usize,
    /// Rounds per size, each running the dataplane then OVN.
    #[arg(long, default_value_t = 2)]
    rounds: usize,
    /// Repetitions of OVN's own account (`--wait=hv --print-wait-time`) per change and size.
    #[arg(long, default_value_t = 10)]
    account_reps: usize,
    /// Untimed repetitions of each change at the start of every round, for both systems:
    /// a system that has just read the NB may still be building what it read (the
    /// dataplane its second acl node's classifier, OVN its flows), and the first timed
    /// change of a round waited for that (it was the p99 of both).
    #[arg(long, default_value_t = 1)]
    warmup_reps: usize,
    /// Leave real OVN out (the dataplane only).
    #[arg(long)]
    no_peer: bool,
    /// The dataplane's acl nodes match address sets of at least this many entries by
    /// membership (`set_class_min_entries`: a member added changes no rule; the node's
    /// default, 1024, expands the bench's 200-entry set, so a member added rebuilds).
    #[arg(long, default_value_t = 64)]
    set_class_min_entries: usize,
    /// Run only real OVN (to look at the peer alone).
    #[arg(long)]
    peer_only: bool,
    /// Background rate per port, Mpps.
    #[arg(long, default_value_t = 0.2)]
    rate_mpps: f64,
    /// A verdict counts once it has held this long (ms).
    #[arg(long, default_value_t = 200)]
    hold_ms: u64,
    /// Longest wait for one verdict change (s).
    #[arg(long, default_value_t = 60)]
    timeout_s: u64,
    /// How the timed changes are committed: `transact` (one OVSDB transaction written
    /// straight to the NB socket, timed from just before it is sent: commit to enforcement)
    /// or `nbctl` (an `ovn-nbctl` run, timed from its start: its own process, schema fetch and
    /// table reads included). Undoing and OVN's `--wait=hv` account always use `ovn-nbctl`.
    #[arg(long, default_value = "transact")]
    commit: String,
    /// Write the results here.
    #[arg(long)]
    json: Option<PathBuf>,
}

/// The probe's usual destination (the server side's address).
const PROBE_DST: Ipv4Addr = Ipv4Addr::new(10, 2, 200, 1);
/// The load balancer's VIP (no backend until `lb_backend_add`).
const LB_VIP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 50);
/// The backend `lb_backend_add` adds.
const LB_BACKEND: Ipv4Addr = Ipv4Addr::new(10, 2, 200, 2);
/// The probe's UDP destination port (the VIP's too).
const PROBE_PORT: u16 = 7777;
/// Background ACLs per port group.
const PER_GROUP: usize = 500;

/// One kind of NB change (each an addition, undone after it is seen).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Acl,
    Member,
    LbBackend,
}

impl Kind {
    const ALL: [Kind; 3] = [Kind::Acl, Kind::Member, Kind::LbBackend];

    fn name(self) -> &'static str {
        match self {
            Kind::Acl => "acl_add",
            Kind::Member => "member_add",
            Kind::LbBackend => "lb_backend_add",
        }
    }

    /// The change as one OVSDB `transact` (the same rows `ovn-nbctl` writes).
    fn transaction(self) -> serde_json::Value {
        let m = format!("outport == @pg_sg && ip4.src == 10.1.200.0/24 && udp.dst == {PROBE_PORT}");
        let op = match self {
            Kind::Acl => {
                return json!(["OVN_Northbound",
                    {"op": "insert", "table": "ACL", "uuid-name": "probe_acl",
                     "row": {"priority": 2000, "direction": "to-lport", "match": m, "action": "drop"}},
                    {"op": "mutate", "table": "Port_Group", "where": [["name", "==", "pg_sg"]],
                     "mutations": [["acls", "insert", ["named-uuid", "probe_acl"]]]}])
            }
            Kind::Member => json!({"op": "mutate", "table": "Address_Set",
                "where": [["name", "==", "ab_blocked"]],
                "mutations": [["addresses", "insert", "10.1.200.0/24"]]}),
            Kind::LbBackend => {
                let key = format!("{LB_VIP}:{PROBE_PORT}");
                json!({"op": "mutate", "table": "Load_Balancer", "where": [["name", "==", "lb_probe"]],
                    "mutations": [["vips", "delete", ["set", [key.clone()]]],
                                  ["vips", "insert", ["map", [[key, format!("{LB_BACKEND}:{PROBE_PORT}")]]]]]})
            }
        };
        json!(["OVN_Northbound", op])
    }

    /// The `ovn-nbctl` arguments of the change and of its undoing.
    fn commands(self) -> (Vec<String>, Vec<String>) {
        let m = format!("outport == @pg_sg && ip4.src == 10.1.200.0/24 && udp.dst == {PROBE_PORT}");
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        match self {
            Kind::Acl => (
                s(&[
                    "--type=port-group",
                    "acl-add",
                    "pg_sg",
                    "to-lport",
                    "2000",
                    &m,
                    "drop",
                ]),
                s(&[
                    "--type=port-group",
                    "acl-del",
                    "pg_sg",
                    "to-lport",
                    "2000",
                    &m,
                ]),
            ),
            Kind::Member => (
                s(&[
                    "add",
                    "Address_Set",
                    "ab_blocked",
                    "addresses",
                    "\"10.1.200.0/24\"",
                ]),
                s(&[
                    "remove",
                    "Address_Set",
                    "ab_blocked",
                    "addresses",
                    "\"10.1.200.0/24\"",
                ]),
            ),
            Kind::LbBackend => (
                s(&[
                    "set",
                    "Load_Balancer",
                    "lb_probe",
                    &format!("vips:\"{LB_VIP}:{PROBE_PORT}\"=\"{LB_BACKEND}:{PROBE_PORT}\""),
                ]),
                s(&[
                    "set",
                    "Load_Balancer",
                    "lb_probe",
                    &format!("vips:\"{LB_VIP}:{PROBE_PORT}\"=\"\""),
                ]),
            ),
        }
    }

    /// The verdict the change brings.
    fn changed(self, v: Verdict) -> bool {
        match self {
            Kind::Acl | Kind::Member => v == Verdict::Lost,
            Kind::LbBackend => v == Verdict::Received(LB_BACKEND),
        }
    }

    /// The verdict before the change (and after it is undone).
    fn baseline(self, v: Verdict) -> bool {
        match self {
            Kind::Acl | Kind::Member => v == Verdict::Received(PROBE_DST),
            Kind::LbBackend => v != Verdict::Received(LB_BACKEND),
        }
    }

    /// dpgen's probe for this change: one 5-tuple every 10 µs towards the server side, or for
    /// the load balancer a new 5-tuple every 200 µs towards the VIP (a connection already
    /// pinned to no backend would never move).
    fn probe(self) -> String {
        match self {
            Kind::Acl | Kind::Member => format!(
                "0=src=10.1.200.1,sport=7000,dst={PROBE_DST},dport={PROBE_PORT},every_us=10,timeout_us=50000"
            ),
            Kind::LbBackend => format!(
                "0=src=10.1.200.0/24,sport=1024-65535,dst={LB_VIP},dport={PROBE_PORT},every_us=200,timeout_us=50000,fresh"
            ),
        }
    }
}

/// The two systems under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum System {
    Ours,
    Ovn,
}

impl System {
    fn name(self) -> &'static str {
        match self {
            System::Ours => "dataplane",
            System::Ovn => "ovn",
        }
    }
}

/// Runs `ovn-nbctl` in batches of commands (`-- cmd -- cmd ...`).
fn nbctl_batch(nb: &NbServer, cmds: &[Vec<String>]) {
    for chunk in cmds.chunks(500) {
        let mut args: Vec<&str> = Vec::new();
        for c in chunk {
            args.push("--");
            args.extend(c.iter().map(String::as_str));
        }
        nb.nbctl(&args);
    }
}

/// The NB rows: switch, ports, security group, `size` background ACLs, the address set with
/// its drop ACL, the load balancer.
fn populate(nb: &NbServer, size: usize) {
    nb.nbctl(&["ls-add", "ls0"]);
    nb.nbctl(&[
        "lsp-add",
        "ls0",
        "lsp_fh",
        "--",
        "lsp-set-addresses",
        "lsp_fh",
        "02:00:00:00:00:01 10.1.0.1",
    ]);
    nb.nbctl(&[
        "lsp-add",
        "ls0",
        "lsp_mh",
        "--",
        "lsp-set-addresses",
        "lsp_mh",
        "02:00:00:00:01:01 10.2.0.1",
    ]);
    nb.nbctl(&["pg-add", "neutron_pg_drop", "lsp_fh", "lsp_mh"]);
    nb.nbctl(&["pg-add", "pg_sg", "lsp_fh", "lsp_mh"]);
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    let mut cmds = vec![
        s(&[
            "--type=port-group",
            "acl-add",
            "neutron_pg_drop",
            "from-lport",
            "1001",
            "inport == @neutron_pg_drop && ip",
            "drop",
        ]),
        s(&[
            "--type=port-group",
            "acl-add",
            "neutron_pg_drop",
            "to-lport",
            "1001",
            "outport == @neutron_pg_drop && ip",
            "drop",
        ]),
        s(&[
            "--type=port-group",
            "acl-add",
            "pg_sg",
            "from-lport",
            "1002",
            "inport == @pg_sg && ip4",
            "allow-related",
        ]),
        s(&[
            "--type=port-group",
            "acl-add",
            "pg_sg",
            "to-lport",
            "1002",
            "outport == @pg_sg && ip4",
            "allow-related",
        ]),
    ];
    // 200 addresses no traffic uses, as a remote-group set; the drop names it.
    let members: Vec<String> = (0..200u32)
        .map(|k| format!("\"100.64.{}.{}\"", k / 100, 1 + k % 100))
        .collect();
    cmds.push(s(&[
        "create",
        "Address_Set",
        "name=ab_blocked",
        &format!("addresses=[{}]", members.join(",")),
    ]));
    cmds.push(s(&[
        "--type=port-group",
        "acl-add",
        "pg_sg",
        "to-lport",
        "1900",
        "outport == @pg_sg && ip4.src == $ab_blocked",
        "drop",
    ]));
    let groups = size.div_ceil(PER_GROUP);
    for g in 0..groups {
        cmds.push(s(&["pg-add", &format!("pg_bg{g}"), "lsp_fh", "lsp_mh"]));
    }
    for k in 0..size {
        let (g, a, b, port) = (
            k / PER_GROUP,
            16 + (k / 64516) % 16,
            (k / 254) % 254,
            1 + k % 254,
        );
        let tcp = 1 + (k * 7) % 60000;
        let pg = format!("pg_bg{g}");
        if k % 2 == 0 {
            cmds.push(s(&["--type=port-group", "acl-add", &pg, "to-lport", "1002",
                &format!("outport == @{pg} && ip4 && ip4.src == 172.{a}.{b}.{port}/32 && tcp && tcp.dst == {tcp}"), "allow-related"]));
        } else {
            cmds.push(s(&["--type=port-group", "acl-add", &pg, "from-lport", "1002",
                &format!("inport == @{pg} && ip4 && ip4.dst == 172.{a}.{b}.{port}/32 && tcp && tcp.dst == {tcp}"), "allow-related"]));
        }
    }
    nbctl_batch(nb, &cmds);
    let lb = nb.nbctl(&[
        "create",
        "Load_Balancer",
        "name=lb_probe",
        "protocol=udp",
        &format!("vips:\"{LB_VIP}:{PROBE_PORT}\"=\"\""),
    ]);
    assert!(!lb.is_empty());
    nb.nbctl(&["ls-lb-add", "ls0", "lb_probe"]);
}

/// The dataplane's config: two vhost-user ports naming their LSPs, `[ovn]` on the NB,
/// `parse -> acl_in -> lb -> acl_out -> forward`.
fn dataplane_config(t: &VhostTopology, remote: &str, set_class: usize) -> PathBuf {
    let acl = format!("stateful = 262144, set_class_min_entries = {set_class}");
    t.dataplane_config_lsps(
        &perf::topology::ovn_pipeline(remote, &acl, 262144),
        ["lsp_fh", "lsp_mh"],
    )
}

/// Real OVN for one round: SB ovsdb-server, ovn-northd, OVS-DPDK with br-int, ovn-controller.
struct OvnPeer {
    sb: Proc,
    northd: Proc,
    controller: Proc,
    ovs: Option<Ovs>,
    dir: PathBuf,
    /// Times ovn-controller died and was started again.
    restarts: usize,
}

/// Starts ovn-controller on the chassis' OVS database (`db_sock`, run directory `ovs_run`).
fn spawn_controller(db_sock: &Path, ovs_run: &Path, dir: &Path) -> Proc {
    // ovn-controller 23.03 can die of SIGSEGV (nothing logged) while compiling the 10k-ACL
    // policy; an unlimited stack did not prevent it. [`OvnPeer::keep_controller`] restarts it,
    // as a service manager would, and the restarts are reported.
    let mut c = Command::new("prlimit");
    c.args(["--stack=unlimited", "ovn-controller"])
        .arg(format!("unix:{}", db_sock.display()))
        .arg(format!(
            "--log-file={}",
            dir.join("controller.log").display()
        ))
        .arg("-vconsole:off")
        .env("OVS_RUNDIR", ovs_run)
        .env("OVN_RUNDIR", dir);
    Proc::spawn("ovn-controller", c, dir.join("controller.out"))
}

impl OvnPeer {
    fn start(t: &VhostTopology, nb_remote: &str) -> Result<OvnPeer, String> {
        let dir = t.scratch.path("ovn");
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let sb_db = dir.join("sb.db");
        let sb_sock = dir.join("sb.sock");
        perf::procs::run_checked(
            Command::new("ovsdb-tool")
                .arg("create")
                .arg(&sb_db)
                .arg("/usr/share/ovn/ovn-sb.ovsschema"),
            "ovsdb-tool create sb",
        )?;
        let mut c = Command::new("ovsdb-server");
        c.arg(&sb_db)
            .arg(format!("--remote=punix:{}", sb_sock.display()))
            .arg(format!("--unixctl={}", dir.join("sb.ctl").display()))
            .arg(format!("--log-file={}", dir.join("sb.log").display()))
            .arg("-vconsole:off")
            .env("OVS_RUNDIR", &dir)
            .env("OVS_DBDIR", &dir);
        let sb = Proc::spawn("ovsdb-server-sb", c, dir.join("sb.out"));
        if !perf::procs::wait_for_paths(&[&sb_sock], Duration::from_secs(10)) {
            return Err(format!("SB ovsdb-server did not start:\n{}", sb.output()));
        }
        let sb_remote = format!("unix:{}", sb_sock.display());
        let mut c = Command::new("ovn-northd");
        c.arg(format!("--ovnnb-db={nb_remote}"))
            .arg(format!("--ovnsb-db={sb_remote}"))
            .arg(format!("--unixctl={}", dir.join("northd.ctl").display()))
            .arg(format!("--log-file={}", dir.join("northd.log").display()))
            .arg("-vconsole:off")
            .env("OVS_RUNDIR", &dir)
            .env("OVN_RUNDIR", &dir);
        let northd = Proc::spawn("ovn-northd", c, dir.join("northd.out"));
        let ovs = Ovs::start_chassis(
            &t.scratch,
            &t.sock0,
            &t.sock1,
            ["lsp_fh", "lsp_mh"],
            &sb_remote,
        )?;
        let controller = spawn_controller(&ovs.db_sock, &ovs.rundir, &dir);
        Ok(OvnPeer {
            sb,
            northd,
            controller,
            ovs: Some(ovs),
            dir,
            restarts: 0,
        })
    }

    /// Starts ovn-controller again if it died.
    fn keep_controller(&mut self) {
        if let (Ok(Some(st)), Some(ovs)) = (self.controller.child.try_wait(), self.ovs.as_ref()) {
            eprintln!("ovn-bench: ovn-controller died ({st}); started again");
            self.restarts += 1;
            self.controller = spawn_controller(&ovs.db_sock, &ovs.rundir, &self.dir);
        }
    }

    fn stop(mut self) {
        let ctl = |name: &str| {
            let _ = Command::new("ovs-appctl")
                .arg("-t")
                .arg(self.dir.join(name))
                .arg("exit")
                .output();
        };
        // ovn-controller (23.03) has no --unixctl: SIGINT ends it.
        self.controller.interrupt();
        self.controller.wait(Duration::from_secs(10));
        if let Some(o) = self.ovs.take() {
            o.stop();
        }
        ctl("northd.ctl");
        self.northd.wait(Duration::from_secs(10));
        ctl("sb.ctl");
        self.sb.wait(Duration::from_secs(10));
    }
}

/// What one timed change gave.
#[derive(Debug, Default, Clone)]
struct Samples {
    /// Probe verdict change minus the time just before `ovn-nbctl` ran, ms.
    enforce_ms: Vec<f64>,
    /// `ovn-nbctl`'s own run time, ms.
    nbctl_ms: Vec<f64>,
    /// Changes never seen within the timeout.
    timeouts: usize,
    /// Changes first seen by a probe sent before the commit (queued on its way while the
    /// change took effect, on a loaded machine): left out of `enforce_ms`, which they
    /// would understate.
    queued: usize,
    /// OVN's account: ovn-northd completion, ovn-controller(s) completion (ms).
    northd_ms: Vec<f64>,
    controller_ms: Vec<f64>,
}

/// The number of events in the probe log now (those a change committed next comes after).
fn events_logged(log: &Path) -> usize {
    read_events(&std::fs::read_to_string(log).unwrap_or_default()).len()
}

/// Waits until the probe's verdict satisfies `want`, changed in an event logged from index
/// `since` on, held for `hold`; the change's date (see [`settled_change`]).
fn wait_verdict(
    log: &Path,
    since: usize,
    want: impl Fn(Verdict) -> bool,
    hold: Duration,
    timeout: Duration,
) -> Option<u64> {
    let end = Instant::now() + timeout;
    while Instant::now() < end {
        let evs = read_events(&std::fs::read_to_string(log).unwrap_or_default());
        if let Some(ns) = settled_change(&evs, since, &want, realtime_ns(), hold.as_nanos() as u64)
        {
            return Some(ns);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    None
}

/// Whether the probe's current verdict satisfies `want` (held for `hold`, whenever it began).
fn wait_state(
    log: &Path,
    want: impl Fn(Verdict) -> bool,
    hold: Duration,
    timeout: Duration,
) -> bool {
    wait_verdict(log, 0, want, hold, timeout).is_some()
}

/// `--wait=hv --print-wait-time` output: (northd completion, controller(s) completion) ms.
fn parse_wait_time(out: &str) -> Option<(f64, f64)> {
    let ms = |key: &str| -> Option<f64> {
        let l = out.lines().find(|l| l.contains(key))?;
        l.rsplit(|c: char| c.is_whitespace() || c == ':')
            .find(|w| !w.is_empty())?
            .trim_end_matches("ms")
            .parse()
            .ok()
    };
    Some((
        ms("ovn-northd completion")?,
        ms("ovn-controller(s) completion")?,
    ))
}

struct Ctx<'a> {
    a: &'a Args,
    nb: &'a NbServer,
}

/// One system, one round, at one size: starts it, runs `reps` timed repetitions of each
/// change (and for OVN `account` repetitions with `--wait=hv`), stops it.
fn round(
    cx: &Ctx,
    sys: System,
    reps: usize,
    account: usize,
    out: &mut [Samples; 3],
    restarts: &mut usize,
) -> Result<(), String> {
    let (a, nb) = (cx.a, cx.nb);
    let hold = Duration::from_millis(a.hold_ms);
    let timeout = Duration::from_secs(a.timeout_s);
    let t = match sys {
        System::Ours => VhostTopology::new("ovnlat-dp"),
        System::Ovn => VhostTopology::new_server("ovnlat-ovn"),
    };
    let mut dut = None;
    let mut peer = None;
    let mut writer = match a.commit.as_str() {
        "transact" => Some(perf::nb_writer::NbWriter::connect(&nb.remote())?),
        "nbctl" => None,
        other => return Err(format!("--commit: '{other}' is neither transact nor nbctl")),
    };
    if sys == System::Ours {
        let cfg = dataplane_config(&t, &nb.remote(), a.set_class_min_entries);
        // Not start_dataplane_ready: it panics, and with panic = "abort" the NB server and
        // the other children would outlive the bench.
        let d = t.start_dataplane(&cfg, &t.scratch.path("stats.json"), 0.0);
        if !perf::procs::wait_for_paths(&[&t.sock0, &t.sock1], Duration::from_secs(20)) {
            return Err(format!(
                "the dataplane's sockets never appeared:\n{}",
                d.output()
            ));
        }
        dut = Some(d);
    }
    // Phase per probe shape: the ACL and member changes share one dpgen run, the LB its own.
    let phases: [&[Kind]; 2] = [&[Kind::Acl, Kind::Member], &[Kind::LbBackend]];
    let mut result = Ok(());
    for (ph, kinds) in phases.iter().enumerate() {
        let log = t.scratch.path(&format!("probe{ph}.log"));
        let stop = t.scratch.path(&format!("stop{ph}"));
        let opts = DpgenOpts {
            stats_period: 0.0,
            probe: Some(kinds[0].probe()),
            probe_log: Some(log.clone()),
            stop_when: Some(stop.clone()),
            ..DpgenOpts::default()
        };
        let mut gen = t.start_dpgen_with(
            a.rate_mpps,
            36000.0,
            &t.scratch.path("gen.json"),
            &opts,
            &format!("dpgen{ph}.log"),
        );
        if sys == System::Ovn && peer.is_none() {
            // dpgen is the vhost-user server: its first socket (it creates the second once
            // the first has a client), then OVS connects to both.
            if !perf::procs::wait_for_paths(&[&t.sock0], Duration::from_secs(30)) {
                result = Err(format!("dpgen sockets never appeared:\n{}", gen.output()));
                break;
            }
            match OvnPeer::start(&t, &nb.remote()) {
                Ok(p) => peer = Some(p),
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
        }
        let t_ready = Instant::now();
        let ready = loop {
            if let Some(p) = peer.as_mut() {
                p.keep_controller();
            }
            if wait_state(&log, |v| kinds[0].baseline(v), hold, Duration::from_secs(5)) {
                break true;
            }
            if t_ready.elapsed() > Duration::from_secs(300) {
                break false;
            }
        };
        if !ready {
            result = Err(format!(
                "{}: the probe never reached its baseline verdict:\n{}",
                sys.name(),
                gen.output()
            ));
            let _ = std::fs::write(&stop, "");
            gen.wait(Duration::from_secs(10));
            break;
        }
        eprintln!(
            "ovn-bench: {} ready after {:.1} s (phase {ph})",
            sys.name(),
            t_ready.elapsed().as_secs_f64()
        );
        // (timed, with OVN's account) per repetition: warm-ups, timed ones, accounts.
        let plan: Vec<(bool, bool)> = (0..a.warmup_reps)
            .map(|_| (false, false))
            .chain((0..reps).map(|_| (true, false)))
            .chain((0..account).map(|_| (true, true)))
            .collect();
        for (timed, with_wait) in plan {
            for &k in kinds.iter() {
                if let Some(p) = peer.as_mut() {
                    p.keep_controller();
                }
                let ki = Kind::ALL.iter().position(|x| *x == k).unwrap_or(0);
                let (change, undo) = k.commands();
                let mut args: Vec<&str> = Vec::new();
                if with_wait {
                    args.extend(["--wait=hv", "--print-wait-time"]);
                }
                args.extend(change.iter().map(String::as_str));
                let since = events_logged(&log);
                let t0 = realtime_ns();
                let text = match writer.as_mut() {
                    Some(w) if !with_wait => {
                        if let Err(e) = w.transact(k.transaction(), Duration::from_secs(30)) {
                            eprintln!("ovn-bench: {} {}: transact: {e}", sys.name(), k.name());
                        }
                        String::new()
                    }
                    _ => nb.nbctl(&args),
                };
                let t1 = realtime_ns();
                let seen = wait_verdict(&log, since, |v| k.changed(v), hold, timeout);
                let s = &mut out[ki];
                if !timed {
                    // A warm-up: its time is not a sample.
                } else if with_wait {
                    if let Some((n, c)) = parse_wait_time(&text) {
                        s.northd_ms.push(n);
                        s.controller_ms.push(c);
                    }
                } else {
                    s.nbctl_ms.push((t1 - t0) as f64 / 1e6);
                    match seen {
                        Some(ns) if ns < t0 => s.queued += 1,
                        Some(ns) => s.enforce_ms.push((ns - t0) as f64 / 1e6),
                        None => s.timeouts += 1,
                    }
                }
                let mut uargs: Vec<&str> = Vec::new();
                if with_wait {
                    uargs.push("--wait=hv");
                }
                uargs.extend(undo.iter().map(String::as_str));
                let u0 = events_logged(&log);
                nb.nbctl(&uargs);
                if wait_verdict(&log, u0, |v| k.baseline(v), hold, timeout).is_none()
                    && !wait_state(&log, |v| k.baseline(v), hold, timeout)
                {
                    eprintln!(
                        "ovn-bench: {} {}: the probe did not return to its baseline",
                        sys.name(),
                        k.name()
                    );
                }
            }
        }
        let _ = std::fs::write(&stop, "");
        if gen.wait(Duration::from_secs(20)).is_none() {
            eprintln!("ovn-bench: dpgen did not stop; killed");
        }
    }
    if let Some(p) = peer {
        *restarts += p.restarts;
        p.stop();
    }
    if let Some(mut d) = dut {
        d.interrupt();
        d.wait(Duration::from_secs(30));
        // What the follower did (one line per publication), for the reader of the figures.
        if std::env::var_os("OVN_BENCH_SHOW_FOLLOWER").is_some() {
            for l in d.output().lines().filter(|l| l.starts_with("ovn: ")) {
                eprintln!("  dataplane {l}");
            }
        }
    }
    result
}

fn pct(v: &[f64], q: f64) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let i = ((q * s.len() as f64).ceil() as usize).clamp(1, s.len()) - 1;
    Some(s[i])
}

fn size_tag(n: usize) -> String {
    if n.is_multiple_of(1000) {
        format!("{}k", n / 1000)
    } else {
        n.to_string()
    }
}

fn main() {
    let a = Args::parse();
    if a.reps == 0 || a.rounds == 0 || a.sizes.is_empty() {
        eprintln!("error: --reps, --rounds and --sizes must be non-empty");
        std::process::exit(2);
    }
    let peer =
        !a.no_peer && perf::ovs::available() && Path::new("/usr/bin/ovn-controller").exists();
    if !a.no_peer && !peer {
        eprintln!("ovn-bench: OVS-DPDK or ovn-host missing (scripts/setup --bench): the OVN peer is left out");
    }
    ensure_hugepages(1536);
    let mut doc = serde_json::Map::new();
    let mut detail = Vec::new();
    for &size in &a.sizes {
        let nb = NbServer::start("ovnlat");
        let t = Instant::now();
        populate(&nb, size);
        eprintln!(
            "ovn-bench: NB with {size} background ACLs in {:.1} s",
            t.elapsed().as_secs_f64()
        );
        let cx = Ctx { a: &a, nb: &nb };
        let mut ours: [Samples; 3] = Default::default();
        let mut theirs: [Samples; 3] = Default::default();
        let mut restarts = 0usize;
        for r in 0..a.rounds {
            // Repetitions spread over the rounds (the first rounds take the remainder).
            let reps = a.reps / a.rounds + usize::from(r < a.reps % a.rounds);
            let account = a.account_reps / a.rounds + usize::from(r < a.account_reps % a.rounds);
            if a.peer_only {
            } else if let Err(e) = round(&cx, System::Ours, reps, 0, &mut ours, &mut restarts) {
                eprintln!("ovn-bench: dataplane round {r} at {size}: {e}");
            }
            if peer {
                if let Err(e) = round(&cx, System::Ovn, reps, account, &mut theirs, &mut restarts) {
                    eprintln!("ovn-bench: OVN round {r} at {size}: {e}");
                }
            }
        }
        let tag = size_tag(size);
        if restarts > 0 {
            println!("ovn-controller died and was restarted {restarts} times at {size} ACLs");
        }
        doc.insert(
            format!("ovn_peer_controller_restarts_{}", size_tag(size)),
            json!(restarts),
        );
        println!("NB-commit-to-enforcement latency, {size} background ACLs (ms; probe verdict seen by dpgen)");
        println!(
            "{:<16} {:>9} {:>9} {:>9} {:>9} {:>8} {:>10} {:>10}",
            "change",
            "ours p50",
            "ours p99",
            "OVN p50",
            "OVN p99",
            "p99 x",
            "OVN hv p50",
            if a.commit == "transact" {
                "commit p50"
            } else {
                "nbctl p50"
            }
        );
        for (i, k) in Kind::ALL.iter().enumerate() {
            let (o, p) = (&ours[i], &theirs[i]);
            let (o50, o99) = (pct(&o.enforce_ms, 0.5), pct(&o.enforce_ms, 0.99));
            let (p50, p99) = (pct(&p.enforce_ms, 0.5), pct(&p.enforce_ms, 0.99));
            let ratio = match (p99, o99) {
                (Some(p), Some(o)) if o > 0.0 => Some(p / o),
                _ => None,
            };
            let f = |v: Option<f64>| v.map_or("-".to_string(), |x| format!("{x:.2}"));
            println!(
                "{:<16} {:>9} {:>9} {:>9} {:>9} {:>8} {:>10} {:>10}",
                k.name(),
                f(o50),
                f(o99),
                f(p50),
                f(p99),
                f(ratio),
                f(pct(&p.controller_ms, 0.5)),
                f(pct(&o.nbctl_ms, 0.5))
            );
            if o.queued + o.timeouts + p.queued + p.timeouts > 0 {
                println!(
                    "  {}: left out: ours {} first seen by a probe sent before the commit, {} never seen; OVN {}, {}",
                    k.name(),
                    o.queued,
                    o.timeouts,
                    p.queued,
                    p.timeouts
                );
            }
            let n = k.name();
            let mut put = |key: String, v: Option<f64>| {
                if let Some(v) = v {
                    doc.insert(key, json!((v * 1000.0).round() / 1000.0));
                }
            };
            put(format!("ovn_{n}_p50_ms_{tag}"), o50);
            put(format!("ovn_{n}_p99_ms_{tag}"), o99);
            put(format!("ovn_peer_{n}_p50_ms_{tag}"), p50);
            put(format!("ovn_peer_{n}_p99_ms_{tag}"), p99);
            put(format!("ovn_{n}_p99_ratio_{tag}"), ratio);
            put(
                format!("ovn_peer_{n}_wait_hv_p50_ms_{tag}"),
                pct(&p.controller_ms, 0.5),
            );
            let sj = |s: &Samples| {
                json!({"enforce_ms": s.enforce_ms, "nbctl_ms": s.nbctl_ms, "timeouts": s.timeouts, "queued": s.queued,
                "wait_hv_northd_ms": s.northd_ms, "wait_hv_controller_ms": s.controller_ms})
            };
            detail.push(json!({"size": size, "change": n, "dataplane": sj(o), "ovn": sj(p)}));
        }
    }
    doc.insert("ovn_latency_samples".into(), Value::Array(detail));
    doc.insert(
        "ovn_latency_method".into(),
        json!({"reps": a.reps, "rounds": a.rounds, "account_reps": a.account_reps, "warmup_reps": a.warmup_reps, "hold_ms": a.hold_ms, "rate_mpps_per_port": a.rate_mpps,
               "peer": if peer { "ovn-northd + ovn-controller + OVS-DPDK (same NB, same topology)" } else { "none" },
               "wait_hv": "separate repetitions after the timed ones",
               "dataplane_set_class_min_entries": a.set_class_min_entries}),
    );
    if let Some(p) = &a.json {
        std::fs::write(
            p,
            serde_json::to_string_pretty(&Value::Object(doc)).expect("json") + "\n",
        )
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wait_time_output_is_parsed() {
        let out = "Time spent on processing nb_cfg 5:\n\tovn-northd delay before processing:\t1ms\n\tovn-northd completion:\t\t32ms\n\tovn-controller(s) completion:\t39ms\n";
        assert_eq!(parse_wait_time(out), Some((32.0, 39.0)));
        assert_eq!(parse_wait_time("nothing"), None);
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(pct(&v, 0.5), Some(50.0));
        assert_eq!(pct(&v, 0.99), Some(99.0));
        assert_eq!(pct(&[3.0], 0.99), Some(3.0));
        assert_eq!(pct(&[], 0.5), None);
    }
}
