//! Which CPUs the dataplane may use and how to split them into EAL's main lcore and workers.
//!
//! Allowed CPUs come from `sched_getaffinity(0)` (what Kubernetes' static CPU manager
//! grants through the cpuset), else from the cgroup's cpuset (v2
//! `cpuset.cpus.effective`, v1 `cpuset.effective_cpus`/`cpuset.cpus`). Isolated CPUs are
//! `/sys/devices/system/cpu/isolated` plus `nohz_full`. Parsing and planning are pure
//! functions over strings and slices.

use std::collections::BTreeSet;
use std::io;
use std::path::{Path, PathBuf};

use super::{Environment, SystemEnvironment};

/// CPU numbers above this are rejected (the kernel's NR_CPUS maximum is 8192).
pub const MAX_CPU: u32 = 65_535;

/// Why a CPU set could not be read or a plan made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CoreError {
    /// A CPU list (`0-3,8`) that does not parse.
    #[error("cores: cannot parse CPU list `{text}` from {origin}: {reason}")]
    BadCpuList {
        /// Where the text came from (file, config key).
        origin: String,
        /// The text.
        text: String,
        /// What is wrong.
        reason: String,
    },
    /// No allowed CPU could be determined.
    #[error("cores: no allowed CPUs: {detail}")]
    NoAllowedCpus {
        /// What was tried.
        detail: String,
    },
    /// Requested lcores outside the allowed set.
    #[error("cores: lcores {cpus} are not in the allowed CPU set {allowed} (sched_getaffinity / cpuset): pick from the allowed set")]
    OutsideAllowed {
        /// The offending CPUs, as a CPU list.
        cpus: String,
        /// The allowed set, as a CPU list.
        allowed: String,
    },
    /// A requested lcore list that makes no sense.
    #[error("cores: requested lcores: {reason}")]
    BadRequest {
        /// What is wrong.
        reason: String,
    },
}

fn parse_cpu(s: &str) -> Result<u32, String> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("`{s}` is not a CPU number"));
    }
    match s.parse::<u32>() {
        Ok(n) if n <= MAX_CPU => Ok(n),
        _ => Err(format!("CPU {s} is above {MAX_CPU}")),
    }
}

fn parse_cpu_list_inner(text: &str) -> Result<Vec<u32>, String> {
    let t = text.trim();
    if t.is_empty() || t == "(null)" {
        return Ok(Vec::new());
    }
    let mut set = BTreeSet::new();
    for item in t.split(',') {
        let item = item.trim();
        if item.is_empty() {
            return Err("empty item (stray `,`)".into());
        }
        let (range, stride) = match item.split_once(':') {
            Some((r, s)) => (r, Some(s)),
            None => (item, None),
        };
        let (lo, hi) = match range.split_once('-') {
            Some((a, b)) => (parse_cpu(a)?, parse_cpu(b)?),
            None => {
                if stride.is_some() {
                    return Err(format!("`{item}`: a stride needs a range"));
                }
                let n = parse_cpu(range)?;
                (n, n)
            }
        };
        if lo > hi {
            return Err(format!("`{item}`: range goes down"));
        }
        let (used, group) = match stride {
            None => (1, 1),
            Some(s) => {
                let (u, g) = s
                    .split_once('/')
                    .ok_or_else(|| format!("`{item}`: stride must be used/group"))?;
                let (u, g) = (parse_cpu(u)?, parse_cpu(g)?);
                if u == 0 || g == 0 || u > g {
                    return Err(format!("`{item}`: stride needs 0 < used <= group"));
                }
                (u, g)
            }
        };
        let mut base = lo;
        while base <= hi {
            for c in base..base.saturating_add(used).min(hi.saturating_add(1)) {
                set.insert(c);
            }
            match base.checked_add(group) {
                Some(b) => base = b,
                None => break,
            }
        }
    }
    Ok(set.into_iter().collect())
}

/// Parse the kernel's CPU list syntax (`0-3,8,10-11`, also `0-15:2/4` strides; empty,
/// whitespace and `(null)` mean none) into sorted, distinct CPU numbers. `origin` names the
/// source in errors.
pub fn parse_cpu_list(text: &str, origin: &str) -> Result<Vec<u32>, CoreError> {
    parse_cpu_list_inner(text).map_err(|reason| CoreError::BadCpuList {
        origin: origin.to_string(),
        text: text.trim().chars().take(200).collect(),
        reason,
    })
}

/// Format CPUs as a list with ranges: `[0,1,2,3,8]` -> `0-3,8`.
pub fn format_cpu_list(cpus: &[u32]) -> String {
    let set: BTreeSet<u32> = cpus.iter().copied().collect();
    let mut parts: Vec<String> = Vec::new();
    let mut it = set.into_iter().peekable();
    while let Some(start) = it.next() {
        let mut end = start;
        while let Some(next) = it.next_if(|n| Some(*n) == end.checked_add(1)) {
            end = next;
        }
        parts.push(if start == end {
            start.to_string()
        } else {
            format!("{start}-{end}")
        });
    }
    parts.join(",")
}

/// The calling thread's CPU affinity (`sched_getaffinity(0)`), for up to 8192 CPUs.
pub fn sched_affinity() -> io::Result<Vec<u32>> {
    let mut mask = [0u64; 128];
    // SAFETY: `mask` is a live, writable buffer of exactly `size_of_val(&mask)` bytes (a
    // multiple of the word size, as the kernel requires); cpu_set_t is a plain bitmask so any
    // bytes written are valid, and pid 0 names the calling thread.
    let rc = unsafe {
        libc::sched_getaffinity(
            0,
            std::mem::size_of_val(&mask),
            mask.as_mut_ptr().cast::<libc::cpu_set_t>(),
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    let mut cpus = Vec::new();
    for (w, word) in mask.iter().enumerate() {
        for bit in 0..64u32 {
            if word & (1u64 << bit) != 0 {
                cpus.push(u32::try_from(w).unwrap_or(0) * 64 + bit);
            }
        }
    }
    Ok(cpus)
}

/// The cpuset files to try, most specific first, given `/proc/self/cgroup`.
pub fn cgroup_cpuset_files(proc_self_cgroup: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for line in proc_self_cgroup.lines() {
        let mut f = line.splitn(3, ':');
        let (Some(_), Some(ctrl), Some(path)) = (f.next(), f.next(), f.next()) else {
            continue;
        };
        let path = path.trim().trim_end_matches('/');
        if ctrl.is_empty() {
            out.push(PathBuf::from(format!(
                "/sys/fs/cgroup{path}/cpuset.cpus.effective"
            )));
        } else if ctrl.split(',').any(|c| c == "cpuset") {
            out.push(PathBuf::from(format!(
                "/sys/fs/cgroup/cpuset{path}/cpuset.effective_cpus"
            )));
            out.push(PathBuf::from(format!(
                "/sys/fs/cgroup/cpuset{path}/cpuset.cpus"
            )));
        }
    }
    for p in [
        "/sys/fs/cgroup/cpuset.cpus.effective",
        "/sys/fs/cgroup/cpuset/cpuset.effective_cpus",
        "/sys/fs/cgroup/cpuset/cpuset.cpus",
    ] {
        let p = PathBuf::from(p);
        if !out.contains(&p) {
            out.push(p);
        }
    }
    out
}

/// Allowed CPUs from `affinity` when it worked and is not empty, else from the cgroup
/// cpuset files read through `env`.
pub fn allowed_cpus_with(
    env: &dyn Environment,
    affinity: io::Result<Vec<u32>>,
) -> Result<Vec<u32>, CoreError> {
    let mut tried = Vec::new();
    match affinity {
        Ok(a) if !a.is_empty() => return Ok(a),
        Ok(_) => tried.push("sched_getaffinity: empty mask".to_string()),
        Err(e) => tried.push(format!("sched_getaffinity: {e}")),
    }
    let cg = env
        .read_to_string(Path::new("/proc/self/cgroup"))
        .unwrap_or_default();
    for file in cgroup_cpuset_files(&cg) {
        match env.read_to_string(&file) {
            Ok(text) => {
                let cpus = parse_cpu_list(&text, &file.display().to_string())?;
                if !cpus.is_empty() {
                    return Ok(cpus);
                }
                tried.push(format!("{}: empty", file.display()));
            }
            Err(e) => tried.push(format!("{}: {e}", file.display())),
        }
    }
    Err(CoreError::NoAllowedCpus {
        detail: tried.join("; "),
    })
}

/// The CPUs this process may run on (affinity, else cgroup cpuset).
pub fn allowed_cpus() -> Result<Vec<u32>, CoreError> {
    allowed_cpus_with(&SystemEnvironment, sched_affinity())
}

/// Isolated CPUs: the union of the `isolated` and `nohz_full` files' lists (either may be
/// absent; `(null)` means none).
pub fn isolated_from(
    isolated: Option<&str>,
    nohz_full: Option<&str>,
) -> Result<Vec<u32>, CoreError> {
    let mut set = BTreeSet::new();
    if let Some(t) = isolated {
        set.extend(parse_cpu_list(t, "/sys/devices/system/cpu/isolated")?);
    }
    if let Some(t) = nohz_full {
        set.extend(parse_cpu_list(t, "/sys/devices/system/cpu/nohz_full")?);
    }
    Ok(set.into_iter().collect())
}

/// [`isolated_from`] over the files read through `env`.
pub fn isolated_cpus_with(env: &dyn Environment) -> Result<Vec<u32>, CoreError> {
    let iso = env
        .read_to_string(Path::new("/sys/devices/system/cpu/isolated"))
        .ok();
    let nohz = env
        .read_to_string(Path::new("/sys/devices/system/cpu/nohz_full"))
        .ok();
    isolated_from(iso.as_deref(), nohz.as_deref())
}

/// Isolated CPUs of this machine.
pub fn isolated_cpus() -> Result<Vec<u32>, CoreError> {
    isolated_cpus_with(&SystemEnvironment)
}

/// Which CPU runs EAL's main lcore and which run the workers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LcorePlan {
    /// CPU of the main lcore (control plane).
    pub main: u32,
    /// CPUs of the worker lcores, one poller each. May contain `main` when only one CPU
    /// is available.
    pub workers: Vec<u32>,
    /// Things that work but cost performance.
    pub warnings: Vec<String>,
}

impl LcorePlan {
    /// EAL's `--lcores` value: lcore 0 is the main lcore, workers are lcores 1.. in order,
    /// each pinned to its CPU (`0@2,1@3,2@4`; `0@5,1@5` when they share a CPU).
    pub fn eal_lcores(&self) -> String {
        std::iter::once(self.main)
            .chain(self.workers.iter().copied())
            .enumerate()
            .map(|(l, c)| format!("{l}@{c}"))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// `["--lcores", <eal_lcores>, "--main-lcore", "0"]`.
    pub fn eal_args(&self) -> Vec<String> {
        vec![
            "--lcores".into(),
            self.eal_lcores(),
            "--main-lcore".into(),
            "0".into(),
        ]
    }
}

/// Plan lcores. `requested`: CPUs from the config, the first for the main lcore, the rest
/// for workers; every one must be in `allowed`. Without it: main = first allowed CPU,
/// workers = the rest. With a single CPU, main and one worker share it (warning). Workers
/// on CPUs not in `isolated` get a warning.
pub fn plan_lcores(
    requested: Option<&[u32]>,
    allowed: &[u32],
    isolated: &[u32],
) -> Result<LcorePlan, CoreError> {
    let allowed_set: BTreeSet<u32> = allowed.iter().copied().collect();
    if allowed_set.is_empty() {
        return Err(CoreError::NoAllowedCpus {
            detail: "the allowed CPU set is empty".into(),
        });
    }
    let cpus: Vec<u32> = match requested {
        Some(r) => {
            if r.is_empty() {
                return Err(CoreError::BadRequest {
                    reason: "the list is empty".into(),
                });
            }
            let mut seen = BTreeSet::new();
            let dups: Vec<u32> = r.iter().copied().filter(|c| !seen.insert(*c)).collect();
            if !dups.is_empty() {
                return Err(CoreError::BadRequest {
                    reason: format!("CPUs {} are listed twice", format_cpu_list(&dups)),
                });
            }
            let outside: Vec<u32> = r
                .iter()
                .copied()
                .filter(|c| !allowed_set.contains(c))
                .collect();
            if !outside.is_empty() {
                return Err(CoreError::OutsideAllowed {
                    cpus: format_cpu_list(&outside),
                    allowed: format_cpu_list(allowed),
                });
            }
            r.to_vec()
        }
        None => allowed_set.iter().copied().collect(),
    };
    let (main, rest) = match cpus.split_first() {
        Some((m, rest)) => (*m, rest.to_vec()),
        None => {
            return Err(CoreError::BadRequest {
                reason: "the list is empty".into(),
            })
        }
    };
    let mut warnings = Vec::new();
    let workers = if rest.is_empty() {
        warnings.push(format!(
            "only CPU {main} is available: the main lcore and the worker share it, so control-plane work takes cycles from packet polling"
        ));
        vec![main]
    } else {
        rest
    };
    let iso: BTreeSet<u32> = isolated.iter().copied().collect();
    let not_isolated: Vec<u32> = workers
        .iter()
        .copied()
        .filter(|c| !iso.contains(c))
        .collect();
    if !not_isolated.is_empty() {
        warnings.push(format!(
            "worker CPUs {} are not isolated (isolcpus/nohz_full): the kernel may schedule other work there and cause latency spikes",
            format_cpu_list(&not_isolated)
        ));
    }
    Ok(LcorePlan {
        main,
        workers,
        warnings,
    })
}

#[cfg(test)]
mod tests {
    use super::super::FakeEnvironment;
    use super::*;
    use proptest::prelude::*;

    fn list(s: &str) -> Result<Vec<u32>, String> {
        parse_cpu_list(s, "test").map_err(|e| e.to_string())
    }

    #[test]
    fn cpu_lists() {
        assert_eq!(list("0-3,8,10-11"), Ok(vec![0, 1, 2, 3, 8, 10, 11]));
        assert_eq!(list("0-3,8,10-11\n"), Ok(vec![0, 1, 2, 3, 8, 10, 11]));
        assert_eq!(list(""), Ok(vec![]));
        assert_eq!(list("\n"), Ok(vec![]));
        assert_eq!(list("(null)\n"), Ok(vec![]));
        assert_eq!(list("5"), Ok(vec![5]));
        assert_eq!(list("3-3"), Ok(vec![3]));
        assert_eq!(list("2,1,2,0-1"), Ok(vec![0, 1, 2]));
        assert_eq!(list(" 1 , 2 "), Ok(vec![1, 2]));
        assert_eq!(list("0-15:2/4"), Ok(vec![0, 1, 4, 5, 8, 9, 12, 13]));
        assert_eq!(list("65535"), Ok(vec![65535]));
    }

    #[test]
    fn cpu_list_errors() {
        for (s, key) in [
            ("3-1", "range goes down"),
            ("1,,2", "empty item"),
            ("1,", "empty item"),
            ("a", "`a` is not a CPU number"),
            ("-1", "`` is not a CPU number"),
            ("0-", "`` is not a CPU number"),
            ("1-2-3", "`2-3` is not a CPU number"),
            ("4294967296", "above 65535"),
            ("0-100000", "above 65535"),
            ("+1", "not a CPU number"),
            ("0-7:0/2", "0 < used <= group"),
            ("0-7:3/2", "0 < used <= group"),
            ("0-7:2", "used/group"),
            ("3:1/2", "a stride needs a range"),
        ] {
            let e = list(s).unwrap_err();
            assert!(
                e.starts_with(&format!(
                    "cores: cannot parse CPU list `{}` from test: ",
                    s.trim()
                )),
                "{e}"
            );
            assert!(e.contains(key), "{s}: {e}");
        }
    }

    #[test]
    fn formatting() {
        assert_eq!(format_cpu_list(&[0, 1, 2, 3, 8, 10, 11]), "0-3,8,10-11");
        assert_eq!(format_cpu_list(&[]), "");
        assert_eq!(format_cpu_list(&[7, 5, 6, 5]), "5-7");
        assert_eq!(
            format_cpu_list(&[u32::MAX - 1, u32::MAX]),
            format!("{}-{}", u32::MAX - 1, u32::MAX)
        );
    }

    #[test]
    fn plan_default() {
        let p = plan_lcores(None, &[2, 3, 4], &[3, 4]).expect("plan");
        assert_eq!(
            p,
            LcorePlan {
                main: 2,
                workers: vec![3, 4],
                warnings: vec![]
            }
        );
        assert_eq!(p.eal_lcores(), "0@2,1@3,2@4");
        assert_eq!(
            p.eal_args(),
            vec!["--lcores", "0@2,1@3,2@4", "--main-lcore", "0"]
        );
    }

    #[test]
    fn plan_single_cpu_shares_with_warning() {
        let p = plan_lcores(None, &[5], &[]).expect("plan");
        assert_eq!((p.main, p.workers.clone()), (5, vec![5]));
        assert_eq!(p.eal_lcores(), "0@5,1@5");
        assert_eq!(p.warnings.len(), 2);
        assert!(p.warnings[0].starts_with("only CPU 5 is available"));
        assert!(p.warnings[1].starts_with("worker CPUs 5 are not isolated"));
    }

    #[test]
    fn plan_requested() {
        let p = plan_lcores(Some(&[4, 2]), &[0, 1, 2, 3, 4], &[1, 2, 3]).expect("plan");
        assert_eq!(
            p,
            LcorePlan {
                main: 4,
                workers: vec![2],
                warnings: vec![]
            }
        );
        let p = plan_lcores(Some(&[0, 1, 2, 3]), &[0, 1, 2, 3], &[2]).expect("plan");
        assert_eq!(p.workers, vec![1, 2, 3]);
        assert_eq!(p.warnings.len(), 1);
        assert!(
            p.warnings[0].starts_with("worker CPUs 1,3 are not isolated"),
            "{:?}",
            p.warnings
        );
    }

    #[test]
    fn plan_refuses_outside_allowed() {
        let e = plan_lcores(Some(&[1, 6, 7, 9]), &[0, 1, 2, 3], &[]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "cores: lcores 6-7,9 are not in the allowed CPU set 0-3 (sched_getaffinity / cpuset): pick from the allowed set"
        );
        assert_eq!(
            plan_lcores(Some(&[]), &[0], &[]).unwrap_err().to_string(),
            "cores: requested lcores: the list is empty"
        );
        assert_eq!(
            plan_lcores(Some(&[1, 2, 1]), &[0, 1, 2], &[])
                .unwrap_err()
                .to_string(),
            "cores: requested lcores: CPUs 1 are listed twice"
        );
        assert!(plan_lcores(None, &[], &[])
            .unwrap_err()
            .to_string()
            .starts_with("cores: no allowed CPUs"));
    }

    #[test]
    fn cgroup_paths() {
        let v2 = cgroup_cpuset_files("0::/kubepods.slice/pod1/cri-abc.scope\n");
        assert_eq!(
            v2[0],
            PathBuf::from("/sys/fs/cgroup/kubepods.slice/pod1/cri-abc.scope/cpuset.cpus.effective")
        );
        let v1 = cgroup_cpuset_files("12:cpu,cpuacct:/x\n3:cpuset:/kubepods/pod1/abc\n");
        assert_eq!(
            v1[0],
            PathBuf::from("/sys/fs/cgroup/cpuset/kubepods/pod1/abc/cpuset.effective_cpus")
        );
        assert_eq!(
            v1[1],
            PathBuf::from("/sys/fs/cgroup/cpuset/kubepods/pod1/abc/cpuset.cpus")
        );
        let ns = cgroup_cpuset_files("0::/\n");
        assert_eq!(
            ns,
            vec![
                PathBuf::from("/sys/fs/cgroup/cpuset.cpus.effective"),
                PathBuf::from("/sys/fs/cgroup/cpuset/cpuset.effective_cpus"),
                PathBuf::from("/sys/fs/cgroup/cpuset/cpuset.cpus"),
            ]
        );
    }

    #[test]
    fn allowed_falls_back_to_cgroup() {
        let env = FakeEnvironment::new()
            .with_file("/proc/self/cgroup", "0::/pod\n")
            .with_file("/sys/fs/cgroup/pod/cpuset.cpus.effective", "2-3\n");
        let err = || Err(io::Error::other("EPERM"));
        assert_eq!(allowed_cpus_with(&env, Ok(vec![7])), Ok(vec![7]));
        assert_eq!(allowed_cpus_with(&env, err()), Ok(vec![2, 3]));
        let env = FakeEnvironment::new().with_file("/sys/fs/cgroup/cpuset/cpuset.cpus", "0-1,4\n");
        assert_eq!(allowed_cpus_with(&env, Ok(vec![])), Ok(vec![0, 1, 4]));
        let e = allowed_cpus_with(&FakeEnvironment::new(), err())
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("cores: no allowed CPUs: sched_getaffinity: EPERM; /sys/fs/cgroup/cpuset.cpus.effective: "),
            "{e}"
        );
        let env = FakeEnvironment::new().with_file("/sys/fs/cgroup/cpuset.cpus.effective", "0-x\n");
        let e = allowed_cpus_with(&env, err()).unwrap_err().to_string();
        assert_eq!(
            e,
            "cores: cannot parse CPU list `0-x` from /sys/fs/cgroup/cpuset.cpus.effective: `x` is not a CPU number"
        );
    }

    #[test]
    fn isolated() {
        assert_eq!(
            isolated_from(Some("2-3\n"), Some("(null)\n")),
            Ok(vec![2, 3])
        );
        assert_eq!(isolated_from(Some("\n"), Some("3-5\n")), Ok(vec![3, 4, 5]));
        assert_eq!(isolated_from(None, None), Ok(vec![]));
        assert!(isolated_from(Some("x"), None)
            .unwrap_err()
            .to_string()
            .contains("/sys/devices/system/cpu/isolated"));
        let env = FakeEnvironment::new()
            .with_file("/sys/devices/system/cpu/isolated", "1\n")
            .with_file("/sys/devices/system/cpu/nohz_full", "1-2\n");
        assert_eq!(isolated_cpus_with(&env), Ok(vec![1, 2]));
    }

    #[test]
    fn this_machine() {
        let allowed = allowed_cpus().expect("this process has CPUs");
        assert!(!allowed.is_empty());
        assert_eq!(sched_affinity().ok().map(|a| a == allowed), Some(true));
        let iso = isolated_cpus().unwrap_or_default();
        let plan = plan_lcores(None, &allowed, &iso).expect("plan");
        assert_eq!(plan.main, allowed[0]);
    }

    proptest! {
        #[test]
        fn cpu_list_parser_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = parse_cpu_list(&String::from_utf8_lossy(&bytes), "fuzz");
        }

        #[test]
        fn cpu_list_parser_near_misses(s in "[0-9,:/ ()a-]{0,40}") {
            if let Ok(v) = parse_cpu_list(&s, "fuzz") {
                prop_assert!(v.windows(2).all(|w| w[0] < w[1]));
                prop_assert!(v.iter().all(|c| *c <= MAX_CPU));
            }
        }

        #[test]
        fn format_then_parse(cpus in proptest::collection::btree_set(0u32..300, 0..40)) {
            let v: Vec<u32> = cpus.into_iter().collect();
            prop_assert_eq!(parse_cpu_list(&format_cpu_list(&v), "roundtrip"), Ok(v));
        }

        #[test]
        fn plan_never_panics(req in proptest::option::of(proptest::collection::vec(0u32..16, 0..6)),
                             allowed in proptest::collection::vec(0u32..16, 0..6),
                             isolated in proptest::collection::vec(0u32..16, 0..6)) {
            if let Ok(p) = plan_lcores(req.as_deref(), &allowed, &isolated) {
                prop_assert!(allowed.contains(&p.main));
                prop_assert!(!p.workers.is_empty());
                prop_assert!(p.workers.iter().all(|w| allowed.contains(w)));
            }
        }
    }
}
