//! Running the DPDK processes of a topology (the dataplane, dpgen, dpdk-testpmd) as child
//! processes, for tests and benchmarks: unique prefixes and sockets, waiting, stopping,
//! and reading their counters.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A scratch folder for one topology: sockets, configs, logs. Removed on drop.
#[derive(Debug)]
pub struct Scratch {
    /// The folder.
    pub dir: PathBuf,
    /// A unique tag for file prefixes.
    pub tag: String,
}

impl Scratch {
    /// Creates `/tmp/dp-<what>-<pid>-<n>`.
    pub fn new(what: &str) -> Scratch {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tag = format!("{what}-{}-{n}", std::process::id());
        let dir = std::env::temp_dir().join(format!("dp-{tag}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("scratch dir");
        Scratch { dir, tag }
    }

    /// A path inside the folder.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if std::env::var_os("DP_KEEP_SCRATCH").is_none() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// The directory holding this build's binaries (`target/<profile>`), found from the running
/// executable (a test in `target/<profile>/deps`, or a binary in `target/<profile>`).
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let dir = exe.parent().expect("exe dir");
    if dir.ends_with("deps") {
        dir.parent().expect("profile dir").to_owned()
    } else {
        dir.to_owned()
    }
}

/// A built binary of this workspace (`dataplane`, `dpgen`), or a clear panic.
pub fn workspace_bin(name: &str) -> PathBuf {
    let p = bin_dir().join(name);
    assert!(
        p.exists(),
        "{} is not built: run `cargo build --workspace` (same profile) first",
        p.display()
    );
    p
}

/// A child process that is killed (SIGKILL) if still running when dropped.
#[derive(Debug)]
pub struct Proc {
    /// What it is, for messages.
    pub name: String,
    /// The child.
    pub child: Child,
    /// Its stdout+stderr log file.
    pub log: PathBuf,
}

impl Proc {
    /// Starts `cmd` with stdout and stderr into `log`.
    pub fn spawn(name: &str, mut cmd: Command, log: PathBuf) -> Proc {
        let f = std::fs::File::create(&log).expect("log file");
        let f2 = f.try_clone().expect("log clone");
        cmd.stdin(Stdio::null()).stdout(f).stderr(f2);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("starting {name}: {e}"));
        Proc {
            name: name.into(),
            child,
            log,
        }
    }

    /// Sends SIGINT (a clean stop for the dataplane and testpmd).
    pub fn interrupt(&self) {
        self.signal("-INT");
    }

    /// Sends SIGHUP (the dataplane reloads its config file).
    pub fn hangup(&self) {
        self.signal("-HUP");
    }

    fn signal(&self, sig: &str) {
        let _ = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status();
    }

    /// Waits up to `timeout` for the process to exit; returns its exit code, or kills it and
    /// returns None.
    pub fn wait(&mut self, timeout: Duration) -> Option<i32> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(st)) = self.child.try_wait() {
                return Some(st.code().unwrap_or(-1));
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The log so far.
    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Runs `cmd` to completion: its stdout, or an error naming `what` with its stdout and stderr
/// when it cannot start or exits unsuccessfully.
pub fn run_checked(cmd: &mut Command, what: &str) -> Result<String, String> {
    let out = cmd.output().map_err(|e| format!("{what}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{what}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Waits until every path exists (e.g. vhost-user sockets), at most `timeout`.
pub fn wait_for_paths(paths: &[&Path], timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if paths.iter().all(|p| p.exists()) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// Reserves and mounts huge pages for a topology of several DPDK processes.
pub fn ensure_hugepages(mb: u64) {
    if let Err(e) = dataplane::hugepages::ensure(mb, Path::new("/dev/hugepages")) {
        panic!("huge pages: {e}");
    }
}

/// Fetches `http://<addr>/metrics` (Prometheus text) with a plain HTTP/1.1 GET.
pub fn http_get_metrics(addr: &str) -> std::io::Result<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out)
}

/// The address the dataplane said it serves metrics on (from its log).
pub fn metrics_addr(log: &str) -> Option<String> {
    let i = log.find("Prometheus endpoint http://")? + "Prometheus endpoint http://".len();
    Some(log[i..].split('/').next()?.to_string())
}

/// The value of a Prometheus sample line starting with `series` (name and labels).
pub fn metric_value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(series))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// Per-port totals from the "Forward statistics for port N" blocks testpmd prints at exit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TestpmdPortStats {
    /// RX-packets.
    pub rx: u64,
    /// RX-dropped.
    pub rx_dropped: u64,
    /// TX-packets.
    pub tx: u64,
    /// TX-dropped.
    pub tx_dropped: u64,
}

/// Parses testpmd's final per-port forward statistics.
pub fn parse_testpmd_totals(out: &str) -> Vec<TestpmdPortStats> {
    let mut ports = Vec::new();
    let mut cur: Option<TestpmdPortStats> = None;
    let num = |line: &str, key: &str| -> Option<u64> {
        let i = line.find(key)? + key.len();
        line[i..].split_whitespace().next()?.parse().ok()
    };
    for line in out.lines() {
        if line.contains("Forward statistics for port") {
            if let Some(c) = cur.take() {
                ports.push(c);
            }
            cur = Some(TestpmdPortStats::default());
        } else if let Some(c) = cur.as_mut() {
            if line.contains("RX-packets:") {
                c.rx = num(line, "RX-packets:").unwrap_or(0);
                c.rx_dropped = num(line, "RX-dropped:").unwrap_or(0);
            } else if line.contains("TX-packets:") {
                c.tx = num(line, "TX-packets:").unwrap_or(0);
                c.tx_dropped = num(line, "TX-dropped:").unwrap_or(0);
            } else if line.contains("Accumulated forward statistics") {
                ports.push(cur.take().unwrap());
            }
        }
    }
    if let Some(c) = cur {
        ports.push(c);
    }
    ports
}

/// The "CPU cycles/packet" figure testpmd prints at exit when started with
/// `--record-core-cycles`: its forwarding lcore's cycles spent in bursts that received
/// packets, over the packets received (`None` without that line or with no finite figure).
pub fn parse_testpmd_cycles_per_packet(out: &str) -> Option<f64> {
    let key = "CPU cycles/packet=";
    out.lines().rev().find_map(|l| {
        let i = l.find(key)? + key.len();
        l[i..]
            .split_whitespace()
            .next()?
            .parse::<f64>()
            .ok()
            .filter(|v| v.is_finite())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn testpmd_totals_are_parsed_per_port() {
        let out = "\n  ---------------------- Forward statistics for port 0  ----------------------\n  RX-packets: 17904352       RX-dropped: 0             RX-total: 17904352\n  TX-packets: 17917920       TX-dropped: 66933216      TX-total: 84851136\n  ----\n\n  ---------------------- Forward statistics for port 1  ----------------------\n  RX-packets: 5       RX-dropped: 1             RX-total: 6\n  TX-packets: 7       TX-dropped: 8      TX-total: 15\n  ---\n  +++++++++++++++ Accumulated forward statistics for all ports+++++++++++++++\n  RX-packets: 35808704       RX-dropped: 0             RX-total: 35808704\n";
        let p = parse_testpmd_totals(out);
        assert_eq!(p.len(), 2);
        assert_eq!(
            p[0],
            TestpmdPortStats {
                rx: 17904352,
                rx_dropped: 0,
                tx: 17917920,
                tx_dropped: 66933216
            }
        );
        assert_eq!(
            p[1],
            TestpmdPortStats {
                rx: 5,
                rx_dropped: 1,
                tx: 7,
                tx_dropped: 8
            }
        );
    }

    #[test]
    fn testpmd_cycles_per_packet_is_read_from_the_exit_report() {
        let out = "  +++++++++++++++ Accumulated forward statistics for all ports+++++++++++++++\n  RX-packets: 35808704       RX-dropped: 0             RX-total: 35808704\n\n  CPU cycles/packet=101.37 (total cycles=3629933291 / total io packets=35808704) at 2600 MHz Clock\n";
        assert_eq!(parse_testpmd_cycles_per_packet(out), Some(101.37));
        assert_eq!(parse_testpmd_cycles_per_packet("RX-packets: 5\n"), None);
        assert_eq!(
            parse_testpmd_cycles_per_packet("CPU cycles/packet=nan (total cycles=0)"),
            None
        );
    }
}
