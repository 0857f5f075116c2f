//! CPU time of processes and threads from `/proc` (`utime + stime` of `stat`), for
//! benchmarks that say where a machine's CPU went while they ran (e.g. `ovn-churn`: the
//! dataplane's OVN follower thread, the NB server, the NB writer).

use std::collections::BTreeMap;

/// The kernel's clock ticks per second (`getconf CLK_TCK`; 100 on Linux if that fails).
pub fn ticks_per_second() -> f64 {
    static HZ: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *HZ.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .trim()
                    .parse::<f64>()
                    .ok()
            })
            .filter(|t| *t > 0.0)
            .unwrap_or(100.0)
    })
}

/// The name (`comm`) and `utime + stime` ticks in one `/proc/.../stat` line, if it parses.
pub fn parse_stat(line: &str) -> Option<(String, u64)> {
    // `pid (comm) state ppid ...`: comm may hold spaces and parentheses, so the last `)`
    // ends it; utime and stime are fields 14 and 15 (11th and 12th after the `)`).
    let open = line.find('(')?;
    let close = line.rfind(')')?;
    let comm = line.get(open + 1..close)?.to_string();
    let mut rest = line.get(close + 1..)?.split_whitespace();
    let utime: u64 = rest.nth(11)?.parse().ok()?;
    let stime: u64 = rest.next()?.parse().ok()?;
    Some((comm, utime + stime))
}

/// The CPU ticks a process has used, all its threads together (0 if it is gone).
pub fn process_ticks(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| parse_stat(&s))
        .map_or(0, |(_, t)| t)
}

/// The CPU ticks of the calling thread.
pub fn this_thread_ticks() -> u64 {
    std::fs::read_to_string("/proc/thread-self/stat")
        .ok()
        .and_then(|s| parse_stat(&s))
        .map_or(0, |(_, t)| t)
}

/// A process's threads' CPU ticks, summed per thread name (empty if the process is gone).
pub fn thread_ticks_by_name(pid: u32) -> BTreeMap<String, u64> {
    let mut by = BTreeMap::new();
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return by;
    };
    for e in dir.flatten() {
        let stat = e.path().join("stat");
        if let Some((comm, t)) = std::fs::read_to_string(stat)
            .ok()
            .and_then(|s| parse_stat(&s))
        {
            *by.entry(comm).or_default() += t;
        }
    }
    by
}

/// The CPUs (`Cpus_allowed_list`) of a process's first thread named `name`, if any.
pub fn thread_cpus(pid: u32, name: &str) -> Option<String> {
    for e in std::fs::read_dir(format!("/proc/{pid}/task"))
        .ok()?
        .flatten()
    {
        let comm = std::fs::read_to_string(e.path().join("comm")).unwrap_or_default();
        if comm.trim_end() != name {
            continue;
        }
        let status = std::fs::read_to_string(e.path().join("status")).ok()?;
        return cpus_allowed(&status);
    }
    None
}

/// The `Cpus_allowed_list` of a `/proc/.../status` text, if it has one.
pub fn cpus_allowed(status: &str) -> Option<String> {
    status.lines().find_map(|l| {
        l.strip_prefix("Cpus_allowed_list:")
            .map(|v| v.trim().to_string())
    })
}

/// `after - before` per name, as a share of one CPU over `seconds` (names absent before
/// count from 0).
pub fn shares(
    before: &BTreeMap<String, u64>,
    after: &BTreeMap<String, u64>,
    seconds: f64,
) -> BTreeMap<String, f64> {
    after
        .iter()
        .map(|(k, a)| {
            let d = a.saturating_sub(before.get(k).copied().unwrap_or(0));
            (k.clone(), share(d, seconds))
        })
        .collect()
}

/// `ticks` as a share of one CPU over `seconds`.
pub fn share(ticks: u64, seconds: f64) -> f64 {
    if seconds <= 0.0 {
        return 0.0;
    }
    ticks as f64 / ticks_per_second() / seconds
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_thread_name_with_spaces_and_parentheses() {
        let line = "4242 (ovn (follow) x) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 37 0 0 20 0 9 0 100 0 0";
        assert_eq!(parse_stat(line), Some(("ovn (follow) x".to_string(), 287)));
        assert_eq!(parse_stat("4242 (short) S 1"), None);
    }

    #[test]
    fn this_process_has_a_named_main_thread_that_used_cpu() {
        let mut x = 0u64;
        for i in 0..20_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        assert_ne!(x, 1);
        let by = thread_ticks_by_name(std::process::id());
        assert!(!by.is_empty());
        assert!(process_ticks(std::process::id()) >= by.values().copied().max().unwrap_or(0));
    }

    #[test]
    fn finds_the_cpus_of_a_named_thread() {
        // The thread names itself as it starts: read /proc only once it runs its closure,
        // and let it end only after.
        let (started_tx, started) = std::sync::mpsc::channel();
        let (done, done_rx) = std::sync::mpsc::channel::<()>();
        let t = std::thread::Builder::new()
            .name("cpu-time-probe".into())
            .spawn(move || {
                started_tx.send(()).unwrap();
                let _ = done_rx.recv();
            })
            .unwrap();
        started.recv().unwrap();
        // Failed once in 2 full-suite runs (never in 45 runs of the binary alone): give /proc
        // a bounded number of tries while the thread is alive.
        let mut cpus = None;
        for _ in 0..200 {
            cpus = thread_cpus(std::process::id(), "cpu-time-probe");
            if cpus.is_some() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        done.send(()).unwrap();
        t.join().unwrap();
        assert!(cpus.is_some_and(|c| !c.is_empty()));
        assert_eq!(thread_cpus(std::process::id(), "no-such-thread"), None);
    }

    #[test]
    fn shares_are_deltas_per_second_of_one_cpu() {
        let hz = ticks_per_second() as u64;
        let before = BTreeMap::from([("a".to_string(), 10)]);
        let after = BTreeMap::from([("a".to_string(), 10 + hz), ("b".to_string(), hz / 2)]);
        let s = shares(&before, &after, 2.0);
        assert!((s["a"] - 0.5).abs() < 1e-9);
        assert!((s["b"] - 0.25).abs() < 1e-9);
    }
}
