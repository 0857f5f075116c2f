//! Huge pages: hugetlbfs mounts (`/proc/mounts`, page size from the `pagesize=` option or
//! `/proc/meminfo`'s `Hugepagesize`), free pages per size
//! (`/sys/kernel/mm/hugepages/hugepages-<n>kB/free_hugepages`), capped by the mount's
//! `size=` option and the pod's hugetlb cgroup limit when those say less.
//!
//! Mounts of the same page size share one pool: do not add their `free_bytes` up.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::Environment;

/// A usable hugetlbfs mount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HugepageMount {
    /// Mount point (for EAL's `--huge-dir`).
    pub path: PathBuf,
    /// Page size in bytes.
    pub page_size: u64,
    /// Free pages of that size on the host (shared by all mounts of that size).
    pub free_pages: u64,
    /// What this process can use: free pages x page size, capped by `size_limit` and the
    /// cgroup limit.
    pub free_bytes: u64,
    /// The mount's `size=` option, in bytes, when given as an absolute size.
    pub size_limit: Option<u64>,
}

/// Why no usable huge pages were found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HugepageError {
    /// No hugetlbfs in the mount table.
    #[error("hugepages: no hugetlbfs mount in {mounts_file}: mount one (e.g. /dev/hugepages) or give the pod a HugePages emptyDir")]
    NoMount {
        /// The mount table read.
        mounts_file: String,
    },
    /// A mount's page size could not be determined.
    #[error("hugepages: hugetlbfs at {path}: {reason}")]
    BadMount {
        /// The mount point.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// Mounts exist but no page is free.
    #[error("hugepages: no free huge pages ({detail}): reserve some (vm.nr_hugepages / hugepages= on the kernel command line)")]
    NoFreePages {
        /// Per mount: path, page size, free pages.
        detail: String,
    },
}

/// Parse a size like `2M`, `2048k`, `1G`, `1GB`, `2Mi` or plain bytes.
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let digits = s.bytes().take_while(u8::is_ascii_digit).count();
    let (num, unit) = s.split_at(digits);
    let n: u64 = num.parse().ok()?;
    let unit = unit.trim().to_ascii_lowercase();
    let unit = unit.trim_end_matches('b').trim_end_matches('i');
    let mult: u64 = match unit {
        "" => 1,
        "k" => 1 << 10,
        "m" => 1 << 20,
        "g" => 1 << 30,
        "t" => 1 << 40,
        _ => return None,
    };
    n.checked_mul(mult)
}

/// `Hugepagesize:       2048 kB` from `/proc/meminfo`, in bytes.
pub fn meminfo_hugepagesize(meminfo: &str) -> Option<u64> {
    meminfo
        .lines()
        .find_map(|l| l.strip_prefix("Hugepagesize:"))
        .and_then(parse_size)
}

/// Undo the octal escapes of `/proc/mounts` fields (`\040` is a space).
pub fn unescape_mount_field(s: &str) -> String {
    let mut rest = s.as_bytes();
    let mut out = Vec::with_capacity(rest.len());
    while let Some((&c, tail)) = rest.split_first() {
        if c == b'\\' {
            if let Some(oct @ [a, b, d]) = tail.get(..3) {
                if oct.iter().all(|c| (b'0'..=b'7').contains(c)) {
                    let v = (u32::from(a - b'0') << 6)
                        | (u32::from(b - b'0') << 3)
                        | u32::from(d - b'0');
                    if let Ok(v) = u8::try_from(v) {
                        out.push(v);
                        rest = tail.get(3..).unwrap_or_default();
                        continue;
                    }
                }
            }
        }
        out.push(c);
        rest = tail;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The hugetlbfs mounts in a `/proc/mounts` text: (mount point, page size, `size=` limit).
/// `default_page_size` (from meminfo) applies to mounts without `pagesize=`.
pub fn parse_hugetlbfs_mounts(
    mounts: &str,
    default_page_size: Option<u64>,
) -> Result<Vec<(PathBuf, u64, Option<u64>)>, HugepageError> {
    let mut out = Vec::new();
    for line in mounts.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        let [_, dst, fstype, opts, ..] = f.as_slice() else {
            continue;
        };
        if *fstype != "hugetlbfs" {
            continue;
        }
        let path = unescape_mount_field(dst);
        let mut page = None;
        let mut limit = None;
        for o in opts.split(',') {
            if let Some(v) = o.strip_prefix("pagesize=") {
                page = Some(parse_size(v).ok_or_else(|| HugepageError::BadMount {
                    path: path.clone(),
                    reason: format!("cannot parse option {o}"),
                })?);
            } else if let Some(v) = o.strip_prefix("size=") {
                limit = parse_size(v); // `size=50%` is relative to the pool: no cap
            }
        }
        let page = page
            .or(default_page_size)
            .ok_or_else(|| HugepageError::BadMount {
                path: path.clone(),
                reason: "no pagesize= option and no Hugepagesize in /proc/meminfo".into(),
            })?;
        if page == 0 {
            return Err(HugepageError::BadMount {
                path,
                reason: "page size 0".into(),
            });
        }
        out.push((PathBuf::from(path), page, limit));
    }
    Ok(out)
}

/// `/sys/kernel/mm/hugepages/hugepages-<kB>kB/free_hugepages` for a page size in bytes.
pub fn free_hugepages_path(page_size: u64) -> PathBuf {
    PathBuf::from(format!(
        "/sys/kernel/mm/hugepages/hugepages-{}kB/free_hugepages",
        page_size / 1024
    ))
}

/// The cgroup's name for a page size: `2MB`, `1GB`, `64KB`.
pub fn cgroup_size_name(page_size: u64) -> String {
    if page_size >= 1 << 30 {
        format!("{}GB", page_size >> 30)
    } else if page_size >= 1 << 20 {
        format!("{}MB", page_size >> 20)
    } else {
        format!("{}KB", page_size >> 10)
    }
}

/// Pure core of [`hugepage_mounts`]. `free_pages`: free pages per page size (bytes);
/// `cgroup_remaining`: bytes the cgroup still allows per page size (absent: no limit).
pub fn hugepages_from(
    mounts: &str,
    meminfo: Option<&str>,
    free_pages: &BTreeMap<u64, u64>,
    cgroup_remaining: &BTreeMap<u64, u64>,
) -> Result<Vec<HugepageMount>, HugepageError> {
    let parsed = parse_hugetlbfs_mounts(mounts, meminfo.and_then(meminfo_hugepagesize))?;
    if parsed.is_empty() {
        return Err(HugepageError::NoMount {
            mounts_file: "/proc/mounts".into(),
        });
    }
    let out: Vec<HugepageMount> = parsed
        .into_iter()
        .map(|(path, page_size, size_limit)| {
            let free = free_pages.get(&page_size).copied().unwrap_or(0);
            let mut bytes = free.saturating_mul(page_size);
            if let Some(l) = size_limit {
                bytes = bytes.min(l);
            }
            if let Some(c) = cgroup_remaining.get(&page_size) {
                bytes = bytes.min(*c);
            }
            HugepageMount {
                path,
                page_size,
                free_pages: free,
                free_bytes: bytes,
                size_limit,
            }
        })
        .collect();
    if out.iter().all(|m| m.free_bytes == 0) {
        let detail = out
            .iter()
            .map(|m| {
                format!(
                    "{}: {} pages of {} kB free",
                    m.path.display(),
                    m.free_pages,
                    m.page_size / 1024
                )
            })
            .collect::<Vec<_>>()
            .join("; ");
        return Err(HugepageError::NoFreePages { detail });
    }
    Ok(out)
}

fn read_u64(env: &dyn Environment, path: &Path) -> Option<u64> {
    env.read_to_string(path).ok()?.trim().parse().ok()
}

/// Read the machine (through `env`): `/proc/mounts`, `/proc/meminfo`, free pages from
/// sysfs, and the cgroup v2 (`hugetlb.<size>.max`/`.current`) or v1
/// (`limit_in_bytes`/`usage_in_bytes`) hugetlb limit of the cgroup root as mounted.
pub fn hugepage_mounts(env: &dyn Environment) -> Result<Vec<HugepageMount>, HugepageError> {
    let mounts = env
        .read_to_string(Path::new("/proc/mounts"))
        .unwrap_or_default();
    let meminfo = env.read_to_string(Path::new("/proc/meminfo")).ok();
    let parsed =
        parse_hugetlbfs_mounts(&mounts, meminfo.as_deref().and_then(meminfo_hugepagesize))?;
    let mut free = BTreeMap::new();
    let mut cgroup = BTreeMap::new();
    for (_, size, _) in &parsed {
        if let Some(n) = read_u64(env, &free_hugepages_path(*size)) {
            free.insert(*size, n);
        }
        let name = cgroup_size_name(*size);
        let v2 = PathBuf::from(format!("/sys/fs/cgroup/hugetlb.{name}.max"));
        let v1 = PathBuf::from(format!(
            "/sys/fs/cgroup/hugetlb/hugetlb.{name}.limit_in_bytes"
        ));
        if let Some(max) = read_u64(env, &v2) {
            let cur = read_u64(
                env,
                Path::new(&format!("/sys/fs/cgroup/hugetlb.{name}.current")),
            )
            .unwrap_or(0);
            cgroup.insert(*size, max.saturating_sub(cur));
        } else if let Some(max) = read_u64(env, &v1) {
            let cur = read_u64(
                env,
                Path::new(&format!(
                    "/sys/fs/cgroup/hugetlb/hugetlb.{name}.usage_in_bytes"
                )),
            )
            .unwrap_or(0);
            cgroup.insert(*size, max.saturating_sub(cur));
        }
    }
    hugepages_from(&mounts, meminfo.as_deref(), &free, &cgroup)
}

/// How many mbufs of `mbuf_size` bytes each (the whole per-object footprint: mempool
/// header + `rte_mbuf` + headroom + data room) fit in `bytes_available`, leaving 25%
/// headroom for the rest of EAL's allocations. 0 if `mbuf_size` is 0.
pub fn mempool_mbufs_for(bytes_available: u64, mbuf_size: u32) -> u32 {
    if mbuf_size == 0 {
        return 0;
    }
    let usable = u128::from(bytes_available) * 3 / 4;
    u32::try_from(usable / u128::from(mbuf_size)).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::super::tests::fixture;
    use super::super::FakeEnvironment;
    use super::*;

    const MB2: u64 = 2 << 20;
    const GB1: u64 = 1 << 30;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("2M"), Some(MB2));
        assert_eq!(parse_size("2048k"), Some(MB2));
        assert_eq!(parse_size("2048 kB"), Some(MB2));
        assert_eq!(parse_size("1G"), Some(GB1));
        assert_eq!(parse_size("1024M"), Some(GB1));
        assert_eq!(parse_size("2Mi"), Some(MB2));
        assert_eq!(parse_size("4096"), Some(4096));
        assert_eq!(parse_size("50%"), None);
        assert_eq!(parse_size(""), None);
        assert_eq!(parse_size("99999999999999999999G"), None);
        assert_eq!(parse_size("18446744073709551615T"), None);
    }

    #[test]
    fn mounts_from_fixture() {
        let free = BTreeMap::from([(MB2, 512), (GB1, 2)]);
        let m = hugepages_from(
            &fixture("proc-mounts"),
            Some(&fixture("proc-meminfo")),
            &free,
            &BTreeMap::new(),
        )
        .expect("mounts");
        assert_eq!(
            m,
            vec![
                HugepageMount {
                    path: "/dev/hugepages".into(),
                    page_size: MB2,
                    free_pages: 512,
                    free_bytes: 512 * MB2,
                    size_limit: None
                },
                HugepageMount {
                    path: "/dev/hugepages1G".into(),
                    page_size: GB1,
                    free_pages: 2,
                    free_bytes: 2 * GB1,
                    size_limit: None
                },
                HugepageMount {
                    path: "/hugepages-2Mi".into(),
                    page_size: MB2,
                    free_pages: 512,
                    free_bytes: 256 << 20,
                    size_limit: Some(256 << 20)
                },
                HugepageMount {
                    path: "/mnt/huge pages".into(),
                    page_size: MB2,
                    free_pages: 512,
                    free_bytes: 512 * MB2,
                    size_limit: None
                },
            ]
        );
    }

    #[test]
    fn cgroup_limit_caps() {
        let free = BTreeMap::from([(MB2, 512)]);
        let cg = BTreeMap::from([(MB2, 64 * MB2)]);
        let m = hugepages_from("none /hp hugetlbfs rw,pagesize=2M 0 0\n", None, &free, &cg)
            .expect("mounts");
        assert_eq!(m[0].free_bytes, 64 * MB2);
    }

    #[test]
    fn errors() {
        let none = BTreeMap::new();
        let e = hugepages_from("proc /proc proc rw 0 0\n", None, &none, &none).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("hugepages: no hugetlbfs mount in /proc/mounts"),
            "{e}"
        );
        let e = hugepages_from("none /hp hugetlbfs rw 0 0\n", None, &none, &none).unwrap_err();
        assert_eq!(
            e.to_string(),
            "hugepages: hugetlbfs at /hp: no pagesize= option and no Hugepagesize in /proc/meminfo"
        );
        let e = hugepages_from(
            "none /hp hugetlbfs rw,pagesize=huge 0 0\n",
            None,
            &none,
            &none,
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "hugepages: hugetlbfs at /hp: cannot parse option pagesize=huge"
        );
        let e = hugepages_from(
            "none /hp hugetlbfs rw 0 0\n",
            Some("Hugepagesize:    2048 kB\n"),
            &none,
            &none,
        )
        .unwrap_err();
        assert!(
            e.to_string()
                .starts_with("hugepages: no free huge pages (/hp: 0 pages of 2048 kB free)"),
            "{e}"
        );
    }

    #[test]
    fn from_environment() {
        let env = FakeEnvironment::new()
            .with_file(
                "/proc/mounts",
                "hugetlbfs /dev/hugepages hugetlbfs rw,relatime,pagesize=2M 0 0\n",
            )
            .with_file("/proc/meminfo", &fixture("proc-meminfo"))
            .with_file(
                "/sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages",
                "100\n",
            )
            .with_file("/sys/fs/cgroup/hugetlb.2MB.max", "104857600\n")
            .with_file("/sys/fs/cgroup/hugetlb.2MB.current", "4194304\n");
        let m = hugepage_mounts(&env).expect("mounts");
        assert_eq!(m.len(), 1);
        assert_eq!(m[0].free_pages, 100);
        assert_eq!(
            m[0].free_bytes,
            (100 - 4) << 20,
            "the cgroup allows 100 MiB, 4 MiB are in use"
        );
        assert!(hugepage_mounts(&FakeEnvironment::new()).is_err());
    }

    #[test]
    fn names_and_paths() {
        assert_eq!(cgroup_size_name(MB2), "2MB");
        assert_eq!(cgroup_size_name(GB1), "1GB");
        assert_eq!(cgroup_size_name(64 << 10), "64KB");
        assert_eq!(
            free_hugepages_path(GB1),
            PathBuf::from("/sys/kernel/mm/hugepages/hugepages-1048576kB/free_hugepages")
        );
        assert_eq!(unescape_mount_field("a\\040b\\134c\\9"), "a b\\c\\9");
        assert_eq!(unescape_mount_field("x\\04"), "x\\04");
    }

    #[test]
    fn mbuf_sizing() {
        assert_eq!(mempool_mbufs_for(512 * MB2, 2432), 331_129);
        assert_eq!(mempool_mbufs_for(1000, 0), 0);
        assert_eq!(mempool_mbufs_for(0, 2432), 0);
        assert_eq!(mempool_mbufs_for(u64::MAX, 1), u32::MAX);
        assert_eq!(mempool_mbufs_for(4000, 1000), 3);
    }

    #[test]
    fn real_machine_does_not_panic() {
        let _ = hugepage_mounts(&super::super::SystemEnvironment);
    }
}
