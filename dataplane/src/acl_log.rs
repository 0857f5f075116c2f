//! ACL log lines of the process, written off the workers: one control thread drains every
//! `acl` node's per-worker log rings every few milliseconds ([`PERIOD`]), applies each
//! rule's meter (or the default limit) and writes the lines to stderr, prefixed `acl_log: `,
//! as ovn-controller writes its `acl_log` lines (`name="...", verdict=..., severity=...,
//! direction=...: <packet>`, with the NB ACL's UUID as `acl=` before the colon). It keeps
//! the counters per node (logged, rate-limited, ring-dropped, stale) for `show acl-log` and
//! the metrics, and the last [`RECENT`] lines.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use metrics::counter;
use pipeline::acl::log::{HubLogs, LogCounts, DEFAULT_LIMIT};

use crate::dpdk::acl::ACL_HUBS;

/// How often the rings are drained.
pub const PERIOD: Duration = Duration::from_millis(5);

/// Lines kept for `show acl-log` (the newest).
pub const RECENT: usize = 1024;

#[derive(Default)]
struct Shared {
    counts: Vec<(String, LogCounts)>,
    recent: VecDeque<String>,
}

static SHARED: Mutex<Shared> = Mutex::new(Shared {
    counts: Vec::new(),
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

/// The drain thread; stopping it (drop) drains once more.
pub struct AclLog {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

/// Starts the process's drain thread (cheap when no rule logs: one lock of the hub
/// registry and of each hub per period).
pub fn start() -> std::io::Result<AclLog> {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&stop);
    let handle = std::thread::Builder::new()
        .name("acl-log".into())
        .spawn(move || run(&flag))?;
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

fn run(stop: &AtomicBool) {
    let mut logs = HubLogs::new(DEFAULT_LIMIT);
    let t0 = Instant::now();
    loop {
        let last = stop.load(Ordering::Acquire);
        poll(&mut logs, t0);
        if last {
            return;
        }
        std::thread::sleep(PERIOD);
    }
}

fn poll(logs: &mut HubLogs, t0: Instant) {
    let hubs = ACL_HUBS.all();
    let now_ns = t0.elapsed().as_nanos() as u64;
    let mut lines = Vec::new();
    logs.poll(
        &hubs,
        now_ns,
        |_, _, line| lines.push(line.to_string()),
        |refusal| eprintln!("{refusal}"),
    );
    if !lines.is_empty() {
        use std::io::Write;
        let mut err = std::io::stderr().lock();
        for l in &lines {
            let _ = writeln!(err, "acl_log: {l}");
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
    for l in lines {
        if s.recent.len() == RECENT {
            s.recent.pop_front();
        }
        s.recent.push_back(l);
    }
}
