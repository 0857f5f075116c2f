//! Talking to a running dataplane's control socket from the harness and the tests: the
//! `dataplane ctl` command run as a process ([`run_ctl`], [`ctl_json`]), and a client that
//! polls at a fixed rate, as a monitoring agent would ([`CtlPoller`]: the benchmark's
//! `dataplane-full-ctl` DUT, `show runtime` and `show conntrack` ten times a second), to
//! measure what the control socket costs the workers.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Runs the workspace's `dataplane ctl --socket SOCKET [--json] ARGS`: (exit code, stdout,
/// stderr).
pub fn run_ctl<S: AsRef<OsStr>>(socket: &Path, json: bool, args: &[S]) -> (i32, String, String) {
    let mut c = Command::new(crate::procs::workspace_bin("dataplane"));
    c.arg("ctl").arg("--socket").arg(socket);
    if json {
        c.arg("--json");
    }
    c.args(args);
    let out = c.output().expect("dataplane ctl runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `dataplane ctl --json ARGS`, which must succeed: its answer (panics with the reason
/// otherwise; for tests).
pub fn ctl_json<S: AsRef<OsStr> + std::fmt::Debug>(socket: &Path, args: &[S]) -> serde_json::Value {
    let (rc, out, err) = run_ctl(socket, true, args);
    assert_eq!(rc, 0, "`{args:?}` failed: {err}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("`{args:?}`: {e}: {out}"))
}

/// What the poller did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PollCounts {
    /// Requests answered `ok`.
    pub answered: u64,
    /// Requests refused or not answered.
    pub failed: u64,
}

/// A polling thread.
#[derive(Debug)]
pub struct CtlPoller {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<PollCounts>,
}

impl CtlPoller {
    /// Sends each of `commands`, one after the other, every `period` to the control socket
    /// at `socket` (waiting up to 30 s for it to appear), until [`stop`](Self::stop).
    pub fn start(socket: PathBuf, period: Duration, commands: Vec<Vec<String>>) -> CtlPoller {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let mut counts = PollCounts::default();
            let appear = Instant::now() + Duration::from_secs(30);
            while !socket.exists() && Instant::now() < appear && !flag.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(20));
            }
            let mut next = Instant::now();
            while !flag.load(Ordering::Relaxed) {
                for argv in &commands {
                    match dataplane::control::client::request(&socket, argv) {
                        Ok(r) if r.ok => counts.answered += 1,
                        _ => counts.failed += 1,
                    }
                }
                next += period;
                let now = Instant::now();
                if next > now {
                    std::thread::sleep(next - now);
                } else {
                    next = now;
                }
            }
            counts
        });
        CtlPoller { stop, thread }
    }

    /// Stops polling and returns the counts.
    pub fn stop(self) -> PollCounts {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap_or_default()
    }
}
