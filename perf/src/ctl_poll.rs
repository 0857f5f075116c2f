//! A `dataplane ctl` client that polls a running dataplane at a fixed rate, as a monitoring
//! agent would (the benchmark's `dataplane-full-ctl` DUT: `show runtime` and `show
//! conntrack` ten times a second), to measure what the control socket costs the workers.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

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
