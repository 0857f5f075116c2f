//! Scheduling of the calling thread: its id, and SCHED_FIFO for a benchmark thread that must
//! run whenever it has work (a worker or generator on a core it shares with control threads,
//! as a dedicated core or a separate traffic generator would be). Through `chrt`, no `unsafe`.

/// The calling thread's id (from `/proc/thread-self`).
pub fn thread_id() -> Result<i32, String> {
    std::fs::read_link("/proc/thread-self")
        .ok()
        .and_then(|p| p.file_name()?.to_str()?.parse::<i32>().ok())
        .ok_or_else(|| "no thread id".to_string())
}

/// Gives the calling thread SCHED_FIFO priority 10 (`chrt`): it then runs whenever it wants
/// (the kernel still leaves the others 5% of each second).
pub fn realtime() -> Result<(), String> {
    let tid = thread_id()?.to_string();
    let ok = std::process::Command::new("chrt")
        .args(["-f", "-p", "10", &tid])
        .status()
        .map_err(|e| format!("chrt: {e}"))?
        .success();
    ok.then_some(()).ok_or_else(|| "chrt refused".to_string())
}

/// The calling thread back to the normal policy.
pub fn normal() {
    if let Ok(tid) = thread_id() {
        let _ = std::process::Command::new("chrt")
            .args(["-o", "-p", "0", &tid.to_string()])
            .status();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thread_id_names_the_calling_thread() {
        let main = thread_id().expect("main thread id");
        let (other, comm) = std::thread::Builder::new()
            .name("sched-probe".into())
            .spawn(|| {
                let tid = thread_id().expect("spawned thread id");
                let comm = std::fs::read_to_string(format!("/proc/self/task/{tid}/comm"))
                    .expect("its task entry");
                (tid, comm)
            })
            .expect("spawn")
            .join()
            .expect("join");
        assert_ne!(main, other);
        assert_eq!(comm.trim(), "sched-probe");
    }
}
