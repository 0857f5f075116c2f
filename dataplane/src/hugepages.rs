//! Huge-page set-up: reserve pages and mount hugetlbfs when missing.

use std::path::Path;

/// Huge pages as the kernel reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HugeInfo {
    /// Default huge-page size in KiB.
    pub page_kib: u64,
    /// Pages reserved.
    pub total: u64,
    /// Pages free.
    pub free: u64,
}

/// Parses `/proc/meminfo` text.
pub fn parse_meminfo(text: &str) -> Option<HugeInfo> {
    let field = |name: &str| {
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l[name.len()..].split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
    };
    Some(HugeInfo {
        page_kib: field("Hugepagesize:")?,
        total: field("HugePages_Total:")?,
        free: field("HugePages_Free:")?,
    })
}

/// Whether a hugetlbfs is mounted at `dir` according to `/proc/mounts` text.
pub fn is_hugetlbfs_mounted(mounts: &str, dir: &Path) -> bool {
    mounts.lines().any(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        f.len() >= 3 && f[2] == "hugetlbfs" && Path::new(f[1]) == dir
    })
}

/// Makes sure `need_mb` MiB of default-size huge pages are free and a hugetlbfs is mounted at
/// `dir`, reserving and mounting what is missing (needs root). Returns what it did.
pub fn ensure(need_mb: u64, dir: &Path) -> Result<Vec<String>, String> {
    let mut done = Vec::new();
    let meminfo =
        std::fs::read_to_string("/proc/meminfo").map_err(|e| format!("/proc/meminfo: {e}"))?;
    let info = parse_meminfo(&meminfo)
        .ok_or("/proc/meminfo has no huge-page fields (kernel without hugetlbfs?)")?;
    let need_pages = (need_mb * 1024).div_ceil(info.page_kib);
    if info.free < need_pages {
        let want = info.total + (need_pages - info.free);
        std::fs::write("/proc/sys/vm/nr_hugepages", want.to_string())
            .map_err(|e| format!("need {need_pages} free huge pages of {} KiB, {} free; reserving {want} failed: {e} (run as root, or: echo {want} > /proc/sys/vm/nr_hugepages)", info.page_kib, info.free))?;
        let after = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|t| parse_meminfo(&t))
            .unwrap_or(info);
        if after.free < need_pages {
            return Err(format!("asked the kernel for {want} huge pages, got {} ({} free; {need_pages} needed): memory too fragmented?", after.total, after.free));
        }
        done.push(format!(
            "reserved huge pages: {} -> {} of {} KiB",
            info.total, after.total, info.page_kib
        ));
    }
    let mounts =
        std::fs::read_to_string("/proc/mounts").map_err(|e| format!("/proc/mounts: {e}"))?;
    if !is_hugetlbfs_mounted(&mounts, dir) {
        std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        let st = std::process::Command::new("mount")
            .args(["-t", "hugetlbfs", "nodev"])
            .arg(dir)
            .status()
            .map_err(|e| format!("running mount: {e}"))?;
        if !st.success() {
            return Err(format!(
                "mount -t hugetlbfs nodev {} failed ({st})",
                dir.display()
            ));
        }
        done.push(format!("mounted hugetlbfs at {}", dir.display()));
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meminfo_fields() {
        let t = "MemTotal: 100 kB\nHugePages_Total:    1024\nHugePages_Free:     1000\nHugepagesize:       2048 kB\n";
        assert_eq!(
            parse_meminfo(t),
            Some(HugeInfo {
                page_kib: 2048,
                total: 1024,
                free: 1000
            })
        );
        assert_eq!(parse_meminfo("MemTotal: 1 kB\n"), None);
    }

    #[test]
    fn mounts() {
        let m = "proc /proc proc rw 0 0\nhugetlbfs /dev/hugepages hugetlbfs rw,relatime,pagesize=2M 0 0\n";
        assert!(is_hugetlbfs_mounted(m, Path::new("/dev/hugepages")));
        assert!(!is_hugetlbfs_mounted(m, Path::new("/mnt/huge")));
        assert!(!is_hugetlbfs_mounted(
            "tmpfs /dev/hugepages tmpfs rw 0 0\n",
            Path::new("/dev/hugepages")
        ));
    }
}
