//! Huge pages found by discovery become the plan's `--huge-dir` and mempool size: the pod's
//! HugePages emptyDir is preferred to the host's mount, a pod budget (hugetlb cgroup limit)
//! sizes the pool, and no mount or too few free pages are refused under `eal.huge_dir`.

use std::path::{Path, PathBuf};

use dataplane::config::{gather_host, ConfigFile};
use dataplane::discovery::FakeEnvironment;
use dataplane::hugepage_plan::{self, mbuf_footprint, round_down_pow2_minus1};
use dataplane::plan::{self, Host};

/// `/proc/mounts` of a Kubernetes pod with `emptyDir: {medium: HugePages}` at /hugepages and
/// (privileged, hostPath) the host's /dev/hugepages.
const POD_MOUNTS: &str = "\
overlay / overlay rw,relatime,lowerdir=/var/lib/containerd/l/A:/var/lib/containerd/l/B,upperdir=/var/lib/containerd/u,workdir=/var/lib/containerd/w 0 0
proc /proc proc rw,nosuid,nodev,noexec,relatime 0 0
tmpfs /dev tmpfs rw,nosuid,size=65536k,mode=755,inode64 0 0
nodev /dev/hugepages hugetlbfs rw,relatime,pagesize=2M 0 0
nodev /hugepages hugetlbfs rw,relatime,pagesize=2M 0 0
/dev/vda1 /etc/podnetinfo ext4 ro,relatime 0 0
cgroup /sys/fs/cgroup cgroup2 ro,nosuid,nodev,noexec,relatime 0 0
";

const MEMINFO: &str = "MemTotal:       32827412 kB\nHugePages_Total:    1024\nHugePages_Free:     1024\nHugepagesize:       2048 kB\n";

const CONFIG: &str = r#"
[eal]
lcores = [0, 1]
[ports.fh0]
role = "fronthaul"
kind = "vhost-user"
path = "/tmp/x/fh0.sock"
[ports.mh0]
role = "midhaul"
kind = "vhost-user"
path = "/tmp/x/mh0.sock"
[forwarding]
cross_connect = [["fh0", "mh0"]]
"#;

/// A pod: 1024 free 2 MiB pages on the node, the pod's hugetlb cgroup allows `limit` bytes.
fn pod_env(limit: u64, used: u64) -> FakeEnvironment {
    FakeEnvironment::new()
        .with_file("/proc/mounts", POD_MOUNTS)
        .with_file("/proc/meminfo", MEMINFO)
        .with_file(
            "/sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages",
            "1024\n",
        )
        .with_file("/sys/fs/cgroup/hugetlb.2MB.max", &format!("{limit}\n"))
        .with_file("/sys/fs/cgroup/hugetlb.2MB.current", &format!("{used}\n"))
}

fn build(
    config: &str,
    hugepages: Result<Vec<dataplane::discovery::hugepages::HugepageMount>, String>,
) -> Result<plan::Plan, dataplane::config::ConfigError> {
    let file = Path::new("pod.toml");
    let cfg = ConfigFile::parse(config, file).expect("parses");
    let host = Host {
        hugepages: Some(hugepages),
        ..Host::with_cpus(&[0, 1])
    };
    plan::build(&cfg, file, &host)
}

fn huge_dir_arg(p: &plan::Plan) -> Option<&str> {
    let i = p.eal_args.iter().position(|a| a == "--huge-dir")?;
    p.eal_args.get(i + 1).map(String::as_str)
}

#[test]
fn pod_emptydir_with_a_budget_sizes_the_pool() {
    // 1 GiB hugepages-2Mi limit: the node has 2 GiB free, the pod may use 1 GiB.
    let mounts = hugepage_plan::probe(&pod_env(1 << 30, 0)).expect("mounts");
    assert_eq!(mounts.len(), 2);
    let p = build(CONFIG, Ok(mounts)).expect("plan");
    assert_eq!(
        huge_dir_arg(&p),
        Some("/hugepages"),
        "the pod's emptyDir, not the host's /dev/hugepages"
    );
    assert_eq!(p.huge_dir.as_deref(), Some(Path::new("/hugepages")));
    let h = p.hugepages.as_ref().expect("hugepage plan");
    assert!(h.pod_budget && h.sized_to_free);
    let fit = ((1u64 << 30) * 3 / 4 / mbuf_footprint(2176)) as u32; // 314572
    assert_eq!(p.mempool.mbufs, round_down_pow2_minus1(fit));
    assert_eq!(p.mempool.mbufs, 262_143);
    assert!(p.mempool.computed);
    let text = p.to_string();
    assert!(
        text.contains("hugepages: /hugepages (2 MiB pages, 1024 MiB free, pod budget); mempool 262143 mbufs sized to fit (found)"),
        "{text}"
    );
    assert!(text.contains("mempool: 262143 mbufs"), "{text}");
    // The JSON plan carries it too.
    let json = serde_json::to_value(&p).unwrap();
    assert_eq!(json["hugepages"]["dir"], "/hugepages");
    assert_eq!(json["hugepages"]["page_size"], 2 << 20);
}

#[test]
fn host_pool_keeps_the_ports_need() {
    // No cgroup limit (bare host): /dev/hugepages only.
    let env = FakeEnvironment::new()
        .with_file(
            "/proc/mounts",
            "hugetlbfs /dev/hugepages hugetlbfs rw,relatime,pagesize=2M 0 0\n",
        )
        .with_file("/proc/meminfo", MEMINFO)
        .with_file(
            "/sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages",
            "1024\n",
        );
    let p = build(CONFIG, hugepage_plan::probe(&env)).expect("plan");
    assert_eq!(huge_dir_arg(&p), Some("/dev/hugepages"));
    let h = p.hugepages.as_ref().unwrap();
    assert!(!h.pod_budget && !h.sized_to_free);
    assert_eq!(
        p.mempool.mbufs, 8191,
        "what two ports of 1024+1024 descriptors and one worker need, rounded"
    );
}

#[test]
fn explicit_mbufs_are_kept_and_checked() {
    let cfg = format!("{CONFIG}\n[mempool]\nmbufs = 20000\n");
    let p = build(&cfg, hugepage_plan::probe(&pod_env(1 << 30, 0))).expect("plan");
    assert_eq!(p.mempool.mbufs, 20000);
    assert!(!p.mempool.computed);
    // 16 MiB budget left (64 MiB limit, 48 MiB in use): 20000 x 2560 bytes does not fit.
    let e = build(&cfg, hugepage_plan::probe(&pod_env(64 << 20, 48 << 20))).unwrap_err();
    assert_eq!(e.key, "eal.huge_dir");
    assert!(e.reason.starts_with("too few free huge pages: /hugepages has 16 MiB free (1024 pages of 2 MiB), a pool of 20000 mbufs x 2560 bytes needs 66 MiB with 25% left for EAL (mempool.mbufs)"), "{}", e.reason);
}

#[test]
fn small_budget_shrinks_or_refuses() {
    // 24 MiB: the rounded 8191 mbufs (28 MiB with EAL's 25%) do not fit; 7372 do, and that
    // is more than the ports need: the pool shrinks to fit. 8 MiB is below the need.
    let p = build(CONFIG, hugepage_plan::probe(&pod_env(24 << 20, 0))).expect("plan");
    let fit = ((24u64 << 20) * 3 / 4 / 2560) as u32; // 7372 >= the ports' need
    assert_eq!(p.mempool.mbufs, fit);
    assert!(p.hugepages.as_ref().unwrap().sized_to_free);
    let e = build(CONFIG, hugepage_plan::probe(&pod_env(8 << 20, 0))).unwrap_err();
    assert_eq!(e.key, "eal.huge_dir");
    assert!(
        e.reason
            .starts_with("too few free huge pages: /hugepages has 8 MiB free"),
        "{}",
        e.reason
    );
    assert!(e
        .to_string()
        .starts_with("pod.toml: eal.huge_dir: too few free huge pages"));
}

#[test]
fn no_mount_is_refused() {
    let env = FakeEnvironment::new()
        .with_file("/proc/mounts", "proc /proc proc rw 0 0\n")
        .with_file("/proc/meminfo", MEMINFO);
    let e = build(CONFIG, hugepage_plan::probe(&env)).unwrap_err();
    assert_eq!(e.key, "eal.huge_dir");
    assert!(
        e.reason
            .starts_with("hugepages: no hugetlbfs mount in /proc/mounts"),
        "{}",
        e.reason
    );
    assert!(e.reason.contains("HugePages emptyDir"), "{}", e.reason);
    // Mounted but nothing free.
    let env = FakeEnvironment::new()
        .with_file("/proc/mounts", POD_MOUNTS)
        .with_file("/proc/meminfo", MEMINFO)
        .with_file(
            "/sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages",
            "0\n",
        );
    let e = build(CONFIG, hugepage_plan::probe(&env)).unwrap_err();
    assert!(
        e.reason.starts_with("hugepages: no free huge pages"),
        "{}",
        e.reason
    );
}

#[test]
fn given_huge_dir_or_no_huge_is_not_probed() {
    let file = Path::new("x.toml");
    let with_dir = CONFIG.replace("[eal]", "[eal]\nhuge_dir = \"/mnt/huge1G\"");
    let cfg = ConfigFile::parse(&with_dir, file).unwrap();
    assert!(gather_host(&cfg, file).unwrap().hugepages.is_none());
    let p = plan::build(&cfg, file, &Host::with_cpus(&[0, 1])).unwrap();
    assert_eq!(huge_dir_arg(&p), Some("/mnt/huge1G"));
    assert!(p
        .to_string()
        .contains("hugepages: /mnt/huge1G (eal.huge_dir)"));
    let no_huge = CONFIG
        .replace("[eal]", "[eal]\nno_huge = true")
        .replace("vhost-user", "ring")
        .replace("path = ", "# path = ");
    let cfg = ConfigFile::parse(&no_huge, file).unwrap();
    assert!(gather_host(&cfg, file).unwrap().hugepages.is_none());
    // Neither: this machine is looked at.
    let cfg = ConfigFile::parse(CONFIG, file).unwrap();
    assert!(gather_host(&cfg, file).unwrap().hugepages.is_some());
}

#[test]
fn check_prints_the_hugepage_dir_and_size() {
    // scripts/setup mounts /dev/hugepages and reserves pages: `check` on the default config
    // must name the mount it found and its page size.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_dataplane"))
        .arg("check")
        .output()
        .expect("runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "stdout: {text}\nstderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = text
        .lines()
        .find(|l| l.starts_with("hugepages: "))
        .unwrap_or_else(|| panic!("no hugepages line in:\n{text}"));
    let dir = line["hugepages: ".len()..].split(' ').next().unwrap();
    assert!(PathBuf::from(dir).is_absolute(), "{line}");
    assert!(
        line.contains(" pages, ") && line.contains(" MiB free"),
        "{line}"
    );
    assert!(text.contains(&format!("--huge-dir {dir}")), "{text}");
}
