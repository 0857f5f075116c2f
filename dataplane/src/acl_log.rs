//! ACL log lines of the process, written off the workers: one control thread drains every
//! `acl` node's per-worker log rings every few milliseconds ([`PERIOD`]), applies each
//! rule's meter (or the default limit) and writes the lines to stderr, prefixed `acl_log: `,
//! as ovn-controller writes its `acl_log` lines (`name="...", verdict=..., severity=...,
//! direction=...: <packet>`, with the NB ACL's UUID as `acl=` before the colon). It keeps
//! the counters per node (logged, rate-limited, ring-dropped, stale) for `show acl-log` and
//! the metrics, and the last [`RECENT`] lines.
//!
//! `[acl_log]` ([`AclLogSettings`]): lines of a severity below `min_severity` (default
//! `info`, ovn-controller's level for its `acl_log` module) are not written but counted
//! (`below_level`); with `syslog = "/dev/log"` each written line also goes to that syslog
//! socket ([`syslog_datagram`]: facility `daemon`, the ACL's severity as the priority, as
//! ovn-controller logs each line at its ACL's severity). A full socket queue (Linux keeps 10
//! datagrams by default, `net.unix.max_dgram_qlen`) is waited for at most
//! [`SYSLOG_WAIT`] once per drain: after that wait, and for a socket that is not there,
//! the lines of the drain are counted (`syslog_failed`) instead, and still go to stderr; a
//! lost connection is retried at most once a second. The workers never wait for any of it.

use std::collections::{BTreeMap, VecDeque};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use metrics::counter;
use pipeline::acl::log::{HubLogs, LogCounts, Severity, DEFAULT_LIMIT};

use crate::dpdk::acl::ACL_HUBS;

/// How often the rings are drained.
pub const PERIOD: Duration = Duration::from_millis(5);

/// The longest a drain waits for room in the syslog socket's queue (once per drain).
pub const SYSLOG_WAIT: Duration = Duration::from_millis(2);

/// Lines kept for `show acl-log` (the newest).
pub const RECENT: usize = 1024;

/// Where the lines go (`[acl_log]`).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct AclLogSettings {
    /// Lines of a lower severity are counted, not written.
    pub min_severity: Severity,
    /// A syslog socket that also gets every written line.
    pub syslog: Option<PathBuf>,
}

/// Lines kept from being written, per node: below the level, or not taken by syslog.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct WriteCounts {
    /// Lines of a severity below `min_severity` (not written).
    pub below_level: u64,
    /// Lines the syslog socket did not take (written to stderr only).
    pub syslog_failed: u64,
}

#[derive(Default)]
struct Shared {
    counts: Vec<(String, LogCounts)>,
    writes: BTreeMap<String, WriteCounts>,
    recent: VecDeque<String>,
}

static SHARED: Mutex<Shared> = Mutex::new(Shared {
    counts: Vec::new(),
    writes: BTreeMap::new(),
    recent: VecDeque::new(),
});

fn shared() -> std::sync::MutexGuard<'static, Shared> {
    SHARED.lock().unwrap_or_else(|e| e.into_inner())
}

/// The counters of each `acl` node drained so far (by node name).
pub fn counts() -> Vec<(String, LogCounts)> {
    shared().counts.clone()
}

/// The last lines written (oldest first), without the `acl_log: ` prefix.
pub fn recent_lines() -> Vec<String> {
    shared().recent.iter().cloned().collect()
}

/// Lines kept from being written (or from syslog) so far, by node name.
pub fn write_counts() -> BTreeMap<String, WriteCounts> {
    shared().writes.clone()
}

/// The syslog level of an ACL severity (RFC 5424: alert 1, warning 4, notice 5, info 6,
/// debug 7).
pub fn syslog_level(s: Severity) -> u8 {
    match s {
        Severity::Alert => 1,
        Severity::Warning => 4,
        Severity::Notice => 5,
        Severity::Info => 6,
        Severity::Debug => 7,
    }
}

/// Whether a line of severity `s` is written at level `min` (a lower syslog level is more
/// severe).
pub fn written_at(s: Severity, min: Severity) -> bool {
    syslog_level(s) <= syslog_level(min)
}

/// The syslog datagram of one line (RFC 3164 without a timestamp, which the syslog daemon
/// adds): `<PRI>dataplane[PID]: acl_log: LINE`, PRI = facility daemon (3) x 8 + the level.
pub fn syslog_datagram(s: Severity, pid: u32, line: &str) -> String {
    format!(
        "<{}>dataplane[{pid}]: acl_log: {line}",
        3 * 8 + syslog_level(s)
    )
}

/// The syslog socket, connected lazily and again (at most once a second) after a failure.
struct Syslog {
    path: PathBuf,
    sock: Option<UnixDatagram>,
    last_try: Option<Instant>,
    /// This drain already waited [`SYSLOG_WAIT`] in vain: no more tries until the next.
    stalled: bool,
}

impl Syslog {
    fn new(path: &Path) -> Syslog {
        Syslog {
            path: path.to_owned(),
            sock: None,
            last_try: None,
            stalled: false,
        }
    }

    /// A new drain: the socket may be waited for again.
    fn begin(&mut self) {
        self.stalled = false;
    }

    /// Sends one datagram, waiting at most [`SYSLOG_WAIT`] for room (once per drain); false
    /// if it was not taken.
    fn send(&mut self, datagram: &str) -> bool {
        if self.stalled {
            return false;
        }
        if self.sock.is_none() {
            if self
                .last_try
                .is_some_and(|t| t.elapsed() < Duration::from_secs(1))
            {
                return false;
            }
            self.last_try = Some(Instant::now());
            let s = UnixDatagram::unbound().and_then(|s| {
                s.connect(&self.path)?;
                s.set_write_timeout(Some(SYSLOG_WAIT))?;
                Ok(s)
            });
            match s {
                Ok(s) => self.sock = Some(s),
                Err(e) => {
                    eprintln!(
                        "acl_log: syslog {}: {e} (lines go to stderr only; retried)",
                        self.path.display()
                    );
                    return false;
                }
            }
        }
        let Some(sock) = &self.sock else {
            return false;
        };
        match sock.send(datagram.as_bytes()) {
            Ok(_) => true,
            // Still full after the wait: this drain's other lines are not tried, the
            // socket stays.
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                self.stalled = true;
                false
            }
            Err(_) => {
                self.sock = None;
                false
            }
        }
    }
}

/// The drain thread; stopping it (drop) drains once more.
pub struct AclLog {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

/// Starts the process's drain thread (cheap when no rule logs: one lock of the hub
/// registry and of each hub per period).
pub fn start(settings: AclLogSettings) -> std::io::Result<AclLog> {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&stop);
    let handle = std::thread::Builder::new()
        .name("acl-log".into())
        .spawn(move || run(&flag, &settings))?;
    Ok(AclLog {
        stop,
        handle: Some(handle),
    })
}

impl Drop for AclLog {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

fn run(stop: &AtomicBool, settings: &AclLogSettings) {
    let mut logs = HubLogs::new(DEFAULT_LIMIT);
    let mut syslog = settings.syslog.as_deref().map(Syslog::new);
    let t0 = Instant::now();
    loop {
        let last = stop.load(Ordering::Acquire);
        poll(&mut logs, t0, settings.min_severity, syslog.as_mut());
        if last {
            return;
        }
        std::thread::sleep(PERIOD);
    }
}

fn poll(logs: &mut HubLogs, t0: Instant, min: Severity, mut syslog: Option<&mut Syslog>) {
    let hubs = ACL_HUBS.all();
    let now_ns = t0.elapsed().as_nanos() as u64;
    let mut lines = Vec::new();
    let mut writes: BTreeMap<String, WriteCounts> = BTreeMap::new();
    logs.poll(
        &hubs,
        now_ns,
        |node, sev, line| {
            if written_at(sev, min) {
                lines.push((node.to_string(), sev, line.to_string()));
            } else {
                writes.entry(node.to_string()).or_default().below_level += 1;
            }
        },
        |refusal| eprintln!("{refusal}"),
    );
    if !lines.is_empty() {
        use std::io::Write;
        let pid = std::process::id();
        if let Some(s) = syslog.as_deref_mut() {
            s.begin();
        }
        let mut err = std::io::stderr().lock();
        for (node, sev, l) in &lines {
            let _ = writeln!(err, "acl_log: {l}");
            if let Some(s) = syslog.as_deref_mut() {
                if !s.send(&syslog_datagram(*sev, pid, l)) {
                    writes.entry(node.clone()).or_default().syslog_failed += 1;
                }
            }
        }
    }
    let counts = logs.counts();
    for (node, c) in &counts {
        let l = [("node", node.clone())];
        counter!("dataplane_acl_log_lines_total", &l).absolute(c.logged);
        counter!("dataplane_acl_log_rate_limited_total", &l).absolute(c.rate_limited);
        counter!("dataplane_acl_log_ring_dropped_total", &l).absolute(c.ring_dropped);
        counter!("dataplane_acl_log_stale_total", &l).absolute(c.stale);
    }
    let mut s = shared();
    s.counts = counts;
    for (node, w) in writes {
        let total = s.writes.entry(node.clone()).or_default();
        total.below_level += w.below_level;
        total.syslog_failed += w.syslog_failed;
        let l = [("node", node)];
        counter!("dataplane_acl_log_below_level_total", &l).absolute(total.below_level);
        counter!("dataplane_acl_log_syslog_failed_total", &l).absolute(total.syslog_failed);
    }
    for (_, _, l) in lines {
        if s.recent.len() == RECENT {
            s.recent.pop_front();
        }
        s.recent.push_back(l);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_and_datagrams_follow_syslog() {
        use Severity::*;
        // info (the default) writes alert..info, not debug.
        let at_info: Vec<bool> = [Alert, Warning, Notice, Info, Debug]
            .iter()
            .map(|&s| written_at(s, Info))
            .collect();
        assert_eq!(at_info, [true, true, true, true, false]);
        assert!(written_at(Debug, Debug));
        assert!(written_at(Alert, Alert) && !written_at(Warning, Alert));
        // daemon (3) x 8 + level.
        assert_eq!(
            syslog_datagram(Warning, 42, "name=\"x\", verdict=drop"),
            "<28>dataplane[42]: acl_log: name=\"x\", verdict=drop"
        );
        assert!(syslog_datagram(Info, 1, "l").starts_with("<30>"));
        assert!(syslog_datagram(Alert, 1, "l").starts_with("<25>"));
    }

    #[test]
    fn syslog_sends_without_blocking_and_retries_a_missing_socket() {
        let dir = std::env::temp_dir().join(format!("acl-syslog-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("log");
        let mut s = Syslog::new(&path);
        assert!(!s.send("<30>x"), "no socket yet");
        assert!(!s.send("<30>x"), "not retried within a second");
        let server = UnixDatagram::bind(&path).unwrap();
        s.last_try = Some(Instant::now() - Duration::from_secs(2));
        assert!(s.send("<30>dataplane[1]: acl_log: one"));
        let mut buf = [0u8; 256];
        let n = server.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"<30>dataplane[1]: acl_log: one");
        // A reader that never reads: once its queue is full, one bounded wait, then the
        // drain's other lines are refused at once; the next drain waits once more.
        let mut sent = 0;
        while s.send("<30>dataplane[1]: acl_log: flood") {
            sent += 1;
            assert!(sent < 100_000, "the queue never filled");
        }
        assert!(s.stalled);
        assert!(!s.send("<30>x"), "stalled for the rest of the drain");
        s.begin();
        assert!(!s.send("<30>x"), "still full");
        assert!(s.sock.is_some(), "a full socket is kept");
        let n = server.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"<30>dataplane[1]: acl_log: flood");
        s.begin();
        assert!(s.send("<30>dataplane[1]: acl_log: again"), "room again");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
