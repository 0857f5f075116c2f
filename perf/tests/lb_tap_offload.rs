//! Checksum offload on real ports, end to end through the kernel: the dataplane owns two
//! `net_tap` ports (their DPDK driver offers IPv4/TCP/UDP transmit checksums) with
//! `tx_checksum_offload = true`, and runs `parse -> lb -> forward`. The two kernel sides of
//! the taps are moved into two network namespaces of this test: a client namespace sends
//! UDP datagrams and opens a TCP connection to the VIPs, a server namespace owns the
//! backend address. The kernel drops any packet whose IPv4, UDP or TCP checksum is wrong,
//! so the server receiving every datagram and the TCP exchange completing (SYN, SYN-ACK,
//! data both ways, through DNAT and reply un-NAT) show that the checksums the port computed
//! from the node's offload requests are right; the `checksum-offloads` counter shows that
//! the port, not software, computed them. (The tap driver computes the pseudo-header sum
//! itself; that the node leaves the right one in the field, as NICs need, is checked by
//! the pipeline's `offloaded_rewrite_completes_to_the_same_bytes` with a NIC model.) Needs
//! root (namespaces, /dev/net/tun), `ip` and python3.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use perf::procs::{workspace_bin, Proc, Scratch};
use perf::report::{named_count, pipeline_node};

const PACKETS: usize = 200;

/// Runs `ip` with `args`, panicking with its output on failure.
fn ip(args: &[&str]) {
    let o = Command::new("ip").args(args).output().expect("running ip");
    assert!(
        o.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&o.stderr)
    );
}

/// Two namespaces, deleted (with the interfaces moved into them) when dropped.
struct Netns([String; 2]);

impl Drop for Netns {
    fn drop(&mut self) {
        for n in &self.0 {
            let _ = Command::new("ip").args(["netns", "del", n]).status();
        }
    }
}

const SERVER: &str = r#"
import socket, sys, threading
n_udp = int(sys.argv[1])
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(('198.18.2.1', 5353)); u.settimeout(10)
t = socket.socket(socket.AF_INET, socket.SOCK_STREAM); t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
t.bind(('198.18.2.1', 8080)); t.listen(1); t.settimeout(10)
res = {}
def tcp():
    try:
        c, a = t.accept(); c.settimeout(5)
        d = c.recv(100); c.sendall(d.upper()); res['tcp'] = d.decode(); c.close()
    except Exception as e:
        res['tcp'] = 'error ' + str(e)
th = threading.Thread(target=tcp); th.start()
print('ready', flush=True)
n = 0
try:
    while n < n_udp:
        u.recvfrom(2000); n += 1
except Exception:
    pass
th.join()
print('udp', n, 'tcp', res.get('tcp'), flush=True)
"#;

const CLIENT: &str = r#"
import socket, sys, time
n = int(sys.argv[1])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for i in range(n):
    s.sendto(b'offload-%d' % i, ('192.0.2.53', 53)); time.sleep(0.001)
c = socket.create_connection(('192.0.2.80', 80), timeout=5)
c.sendall(b'hello through the lb'); r = c.recv(100); c.close()
print('tcp reply', r.decode(), flush=True)
"#;

fn config(tag: &str, ifaces: &[String; 2]) -> String {
    format!(
        r#"
[eal]
lcores = [0, 1]
no_huge = true
file_prefix = "{tag}"
[ports.c0]
role = "clients"
kind = "tap"
iface = "{c}"
tx_checksum_offload = true
[ports.s0]
role = "servers"
kind = "tap"
iface = "{s}"
tx_checksum_offload = true
[pipeline]
input = "parse"
[[pipeline.nodes]]
name = "parse"
kind = "parse"
[[pipeline.nodes]]
name = "lb"
kind = "lb"
[pipeline.nodes.params]
conntrack = {{ capacity = 4096 }}
[[pipeline.nodes.params.services]]
name = "dns"
vip = "192.0.2.53"
protocol = "udp"
port = 53
backends = [{{ address = "198.18.2.1", port = 5353 }}]
[[pipeline.nodes.params.services]]
name = "web"
vip = "192.0.2.80"
protocol = "tcp"
port = 80
backends = [{{ address = "198.18.2.1", port = 8080 }}]
[[pipeline.nodes]]
name = "forward"
kind = "forward"
params = {{ mode = "cross-connect", pairs = [["c0", "s0"]] }}
[[pipeline.nodes]]
name = "rst"
kind = "drop"
[[pipeline.edges]]
from = "parse"
to = "lb"
[[pipeline.edges]]
from = "lb"
to = "forward"
[[pipeline.edges]]
from = "lb"
output = "reset"
to = "rst"
"#,
        c = ifaces[0],
        s = ifaces[1]
    )
}

#[test]
fn kernel_accepts_what_the_ports_checksummed_through_dnat_and_un_nat() {
    let s = Scratch::new("tapcsum");
    let id = std::process::id() % 100_000;
    let ifaces = [format!("dpo{id}c"), format!("dpo{id}s")];
    let cfg = s.path("dp.toml");
    std::fs::write(&cfg, config(&s.tag, &ifaces)).unwrap();
    std::fs::write(s.path("srv.py"), SERVER).unwrap();
    std::fs::write(s.path("cli.py"), CLIENT).unwrap();
    let stats = s.path("stats.json");
    let mut c = Command::new(workspace_bin("dataplane"));
    c.args(["run", "--config"])
        .arg(&cfg)
        .arg("--stats-json")
        .arg(&stats)
        .args([
            "--no-hugepage-setup",
            "--prometheus",
            "off",
            "--duration",
            "60",
        ]);
    let mut dp = Proc::spawn("dataplane", c, s.path("dataplane.log"));
    let sys = |i: &String| format!("/sys/class/net/{i}");
    let up = perf::procs::wait_for_paths(
        &[Path::new(&sys(&ifaces[0])), Path::new(&sys(&ifaces[1]))],
        Duration::from_secs(20),
    );
    assert!(up, "tap interfaces did not appear:\n{}", dp.output());
    // The interfaces exist before the ports start: wait for the worker to run.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !dp.output().contains("running:") && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let log = dp.output();
    assert!(
        log.contains("tx checksum offload: ipv4 yes, tcp+udp yes"),
        "the tap ports took the offload:\n{log}"
    );
    // The server's MAC is the destination the client's kernel puts on frames to the VIPs
    // (the load balancer rewrites addresses and ports only).
    let mac = std::fs::read_to_string(format!("{}/address", sys(&ifaces[1]))).unwrap();
    let ns = Netns([format!("dpo-cli-{id}"), format!("dpo-srv-{id}")]);
    let (cli, srv) = (ns.0[0].as_str(), ns.0[1].as_str());
    ip(&["netns", "add", cli]);
    ip(&["netns", "add", srv]);
    ip(&["link", "set", &ifaces[0], "netns", cli]);
    ip(&["link", "set", &ifaces[1], "netns", srv]);
    ip(&["-n", cli, "addr", "add", "198.18.1.2/24", "dev", &ifaces[0]]);
    ip(&["-n", cli, "link", "set", &ifaces[0], "up"]);
    ip(&["-n", cli, "route", "add", "192.0.2.0/24", "dev", &ifaces[0]]);
    for vip in ["192.0.2.53", "192.0.2.80"] {
        ip(&[
            "-n",
            cli,
            "neigh",
            "add",
            vip,
            "lladdr",
            mac.trim(),
            "dev",
            &ifaces[0],
        ]);
    }
    ip(&["-n", srv, "addr", "add", "198.18.2.1/24", "dev", &ifaces[1]]);
    ip(&["-n", srv, "link", "set", &ifaces[1], "up"]);
    ip(&[
        "-n",
        srv,
        "route",
        "add",
        "198.18.1.0/24",
        "dev",
        &ifaces[1],
    ]);

    let n = PACKETS.to_string();
    let mut server = Command::new("ip")
        .args(["netns", "exec", srv, "python3"])
        .arg(s.path("srv.py"))
        .arg(&n)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("server");
    // The client starts once the server's sockets are bound.
    let mut out = BufReader::new(server.stdout.take().expect("server stdout"));
    let mut line = String::new();
    out.read_line(&mut line).expect("server output");
    assert_eq!(line.trim(), "ready", "server start");
    let client = Command::new("ip")
        .args(["netns", "exec", cli, "python3"])
        .arg(s.path("cli.py"))
        .arg(&n)
        .output()
        .expect("client");
    let mut sout = String::new();
    out.read_to_string(&mut sout).expect("server output");
    let server = server.wait_with_output().expect("server");
    sout += &String::from_utf8_lossy(&server.stderr);
    let cout = String::from_utf8_lossy(&client.stdout).to_string()
        + &String::from_utf8_lossy(&client.stderr);
    dp.interrupt();
    assert_eq!(
        dp.wait(Duration::from_secs(20)),
        Some(0),
        "dataplane stops cleanly:\n{}",
        dp.output()
    );
    drop(ns);
    assert_eq!(
        sout.trim(),
        format!("udp {PACKETS} tcp hello through the lb"),
        "the server got every datagram and the TCP data (client said: {cout})"
    );
    assert!(
        cout.contains("tcp reply HELLO THROUGH THE LB"),
        "client: {cout}"
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&stats).expect("stats json")).unwrap();
    // Every datagram, and both directions of the TCP connection, left checksums to a port.
    let offloaded = named_count(
        &pipeline_node(&report, "lb")["counters"],
        "checksum-offloads",
    );
    assert!(
        offloaded >= PACKETS as u64 + 6,
        "checksum-offloads {offloaded}: the ports computed the checksums"
    );
    assert_eq!(
        named_count(&pipeline_node(&report, "lb")["counters"], "new-connections"),
        2
    );
}
