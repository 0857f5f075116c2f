//! Huge pages for the plan when the config names none: pick a hugetlbfs mount found by
//! [`crate::discovery::hugepages`], pass it to EAL as `--huge-dir`, and size the mempool to
//! what is free there.
//!
//! Which mount: among those with room for the mempool, the pod's own (a HugePages emptyDir,
//! mounted wherever the pod spec says) before the host's conventional ones (`/dev/hugepages*`,
//! `/mnt/huge*`), then the most free bytes, then the larger page size.
//!
//! How many mbufs, when the config gives no `mempool.mbufs`: when the mount's free memory is a
//! budget of this pod (capped by the hugetlb cgroup limit or the mount's `size=`), the pool
//! takes what fits in it ([`mempool_mbufs_for`]: 75%, the rest left to EAL), rounded down to
//! 2^n - 1 (DPDK's best ring size); on a host's shared pool it keeps the count the ports
//! need, so other DPDK processes keep theirs; when that does not fit but the ports' minimum
//! does, the pool shrinks to what fits. Less than the minimum (or the config's explicit
//! count) is refused with the mount, what is free and what is needed.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::discovery::hugepages::{hugepage_mounts, mempool_mbufs_for, HugepageMount};
use crate::discovery::Environment;

/// Bytes one mbuf takes in huge pages besides its data room: `rte_mbuf` (128), mempool
/// object header and trailer, private area and alignment (the plan's figure: 384 in all).
pub const MBUF_OVERHEAD: u64 = 384;

/// The config key huge-page refusals name (set it to choose the mount by hand).
pub const KEY: &str = "eal.huge_dir";

/// What the plan uses: the mount and the mempool size it allows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HugepagePlan {
    /// The hugetlbfs mount (EAL `--huge-dir`).
    pub dir: PathBuf,
    /// Its page size in bytes.
    pub page_size: u64,
    /// Bytes this process can use there.
    pub free_bytes: u64,
    /// Whether `free_bytes` is this pod's budget (cgroup limit or mount `size=`) rather than
    /// the host's shared pool.
    pub pod_budget: bool,
    /// Mbufs per pool the plan uses.
    pub mbufs: u32,
    /// Whether `mbufs` was sized to the free memory (not the ports' need or the config).
    pub sized_to_free: bool,
}

impl HugepagePlan {
    /// One line for `dataplane check`.
    pub fn describe(&self) -> String {
        format!(
            "{} ({} pages, {} MiB free{}); mempool {} mbufs{}",
            self.dir.display(),
            page_size_name(self.page_size),
            self.free_bytes >> 20,
            if self.pod_budget {
                ", pod budget"
            } else {
                ", host pool"
            },
            self.mbufs,
            if self.sized_to_free {
                " sized to fit"
            } else {
                ""
            }
        )
    }
}

/// `2 MiB`, `1 GiB`, `64 KiB`.
pub fn page_size_name(bytes: u64) -> String {
    if bytes >= 1 << 30 && bytes & ((1 << 30) - 1) == 0 {
        format!("{} GiB", bytes >> 30)
    } else if bytes >= 1 << 20 && bytes & ((1 << 20) - 1) == 0 {
        format!("{} MiB", bytes >> 20)
    } else {
        format!("{} KiB", bytes >> 10)
    }
}

/// Huge-page bytes one mbuf of `data_room` takes.
pub fn mbuf_footprint(data_room: u16) -> u64 {
    u64::from(data_room) + MBUF_OVERHEAD
}

/// Whether `path` is one of the host's conventional hugetlbfs mounts (not a pod's emptyDir).
pub fn is_host_mount(path: &Path) -> bool {
    let s = path.to_string_lossy();
    s.starts_with("/dev/hugepages") || s.starts_with("/mnt/huge") || s.starts_with("/run/hugepages")
}

/// Whether the mount's free bytes are capped by a limit of this pod (cgroup or `size=`).
pub fn is_pod_budget(m: &HugepageMount) -> bool {
    m.free_bytes < m.free_pages.saturating_mul(m.page_size)
}

/// The mount to use for a pool of at least `need_bytes`: the pod's before the host's, then
/// the most free bytes, then the larger page; mounts without room for it never win over
/// one with room. `None` when `mounts` is empty.
pub fn choose_mount(mounts: &[HugepageMount], need_bytes: u64) -> Option<&HugepageMount> {
    mounts.iter().max_by_key(|m| {
        (
            m.free_bytes >= need_bytes,
            !is_host_mount(&m.path),
            m.free_bytes,
            m.page_size,
        )
    })
}

/// Largest 2^n - 1 not above `n` (0 for 0).
pub fn round_down_pow2_minus1(n: u32) -> u32 {
    if n == u32::MAX {
        return n;
    }
    let p = (u64::from(n) + 1).next_power_of_two();
    let p = if p > u64::from(n) + 1 { p / 2 } else { p };
    (p - 1) as u32
}

/// Resolves the huge pages of a plan. `found`: what discovery found (or why nothing);
/// `mbufs`: the pool size so far (the config's, or the ports' need); `computed`: whether
/// the config left it to us; `need`: fewest mbufs the ports can run with. Errors are reasons
/// for [`KEY`].
pub fn resolve(
    found: &Result<Vec<HugepageMount>, String>,
    mbufs: u32,
    computed: bool,
    need: u32,
    data_room: u16,
) -> Result<HugepagePlan, String> {
    let hint = "set eal.huge_dir to a hugetlbfs mount with free pages (in Kubernetes: a HugePages emptyDir and a hugepages-2Mi/1Gi resource), or eal.no_huge = true for development";
    let mounts = found.as_ref().map_err(|e| format!("{e}; {hint}"))?;
    let per = mbuf_footprint(data_room);
    // Fewest mbufs the plan can live with: the config's count, or what the ports need.
    let least = if computed { need.min(mbufs) } else { mbufs };
    let bytes_for = |n: u32| (u64::from(n) * per).div_ceil(3) * 4;
    let m = choose_mount(mounts, bytes_for(least))
        .ok_or_else(|| format!("no hugetlbfs mount found; {hint}"))?;
    let fit = mempool_mbufs_for(m.free_bytes, u32::try_from(per).unwrap_or(u32::MAX));
    let pod_budget = is_pod_budget(m);
    if fit < least {
        return Err(format!(
            "too few free huge pages: {} has {} MiB free ({} pages of {}), a pool of {least} mbufs x {per} bytes needs {} MiB with 25% left for EAL{}; {hint}",
            m.path.display(),
            m.free_bytes >> 20,
            m.free_pages,
            page_size_name(m.page_size),
            bytes_for(least).div_ceil(1 << 20),
            if computed { "" } else { " (mempool.mbufs)" },
        ));
    }
    let rounded = round_down_pow2_minus1(fit);
    let (mbufs, sized) = if !computed {
        (mbufs, false)
    } else if pod_budget && rounded >= mbufs {
        (rounded, true) // fill the pod's budget
    } else if fit >= mbufs {
        (mbufs, false)
    } else {
        (if rounded >= least { rounded } else { fit }, true) // shrink to what is free
    };
    Ok(HugepagePlan {
        dir: m.path.clone(),
        page_size: m.page_size,
        free_bytes: m.free_bytes,
        pod_budget,
        mbufs,
        sized_to_free: sized,
    })
}

/// Reads this machine's hugetlbfs mounts through `env`; the error is a readable reason.
pub fn probe(env: &dyn Environment) -> Result<Vec<HugepageMount>, String> {
    hugepage_mounts(env).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MB2: u64 = 2 << 20;

    fn mount(path: &str, free_pages: u64, free_bytes: u64) -> HugepageMount {
        HugepageMount {
            path: path.into(),
            page_size: MB2,
            free_pages,
            free_bytes,
            size_limit: None,
        }
    }

    #[test]
    fn rounding() {
        assert_eq!(round_down_pow2_minus1(0), 0);
        assert_eq!(round_down_pow2_minus1(1), 1);
        assert_eq!(round_down_pow2_minus1(2), 1);
        assert_eq!(round_down_pow2_minus1(4095), 4095);
        assert_eq!(round_down_pow2_minus1(4096), 4095);
        assert_eq!(round_down_pow2_minus1(8190), 4095);
        assert_eq!(round_down_pow2_minus1(u32::MAX - 1), (1 << 31) - 1);
        assert_eq!(round_down_pow2_minus1(u32::MAX), u32::MAX);
    }

    #[test]
    fn prefers_the_pod_mount_with_room() {
        let ms = vec![
            mount("/dev/hugepages", 512, 512 * MB2),
            mount("/hugepages", 512, 64 * MB2),
        ];
        assert_eq!(
            choose_mount(&ms, MB2).unwrap().path,
            PathBuf::from("/hugepages")
        );
        // The pod's mount has no room for 100 MiB: the host's has.
        assert_eq!(
            choose_mount(&ms, 100 * MB2).unwrap().path,
            PathBuf::from("/dev/hugepages")
        );
        assert!(choose_mount(&[], 1).is_none());
    }

    #[test]
    fn pod_budget_fills_host_pool_keeps_need() {
        let per = mbuf_footprint(2176);
        let pod = Ok(vec![mount("/hugepages", 512, 256 << 20)]);
        let p = resolve(&pod, 4095, true, 3000, 2176).unwrap();
        assert!(p.pod_budget && p.sized_to_free);
        assert_eq!(
            p.mbufs,
            round_down_pow2_minus1(((256u64 << 20) * 3 / 4 / per) as u32)
        );
        assert_eq!(p.mbufs, 65535);
        let host = Ok(vec![mount("/dev/hugepages", 512, 512 * MB2)]);
        let p = resolve(&host, 4095, true, 3000, 2176).unwrap();
        assert_eq!(
            (p.mbufs, p.pod_budget, p.sized_to_free),
            (4095, false, false)
        );
        // Given by the config: kept even with a pod budget.
        let p = resolve(&pod, 5000, false, 3000, 2176).unwrap();
        assert_eq!((p.mbufs, p.sized_to_free), (5000, false));
    }

    #[test]
    fn refusals() {
        let e = resolve(
            &Err("hugepages: no hugetlbfs mount in /proc/mounts".into()),
            4095,
            true,
            3000,
            2176,
        )
        .unwrap_err();
        assert!(
            e.starts_with("hugepages: no hugetlbfs mount in /proc/mounts; set eal.huge_dir"),
            "{e}"
        );
        let e = resolve(&Ok(vec![]), 4095, true, 3000, 2176).unwrap_err();
        assert!(e.starts_with("no hugetlbfs mount found"), "{e}");
        let small = Ok(vec![mount("/hugepages", 4, 4 * MB2)]);
        let e = resolve(&small, 4095, true, 3000, 2176).unwrap_err();
        assert!(e.starts_with("too few free huge pages: /hugepages has 8 MiB free (4 pages of 2 MiB), a pool of 3000 mbufs x 2560 bytes needs 10 MiB with 25% left for EAL; set eal.huge_dir"), "{e}");
        let e = resolve(&small, 5000, false, 3000, 2176).unwrap_err();
        assert!(e.contains("a pool of 5000 mbufs x 2560 bytes needs 17 MiB with 25% left for EAL (mempool.mbufs)"), "{e}");
        // Less than the rounded count but more than the need: shrink to fit.
        let some = Ok(vec![mount("/dev/hugepages", 6, 6 * MB2)]);
        let p = resolve(&some, 4095, true, 3000, 2176).unwrap();
        assert_eq!((p.mbufs, p.sized_to_free), (3686, true));
    }
}
