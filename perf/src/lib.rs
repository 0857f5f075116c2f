//! Benchmark harness and traffic tools.

pub mod cpu_time;
pub mod ctl;
pub mod frames;
/// A real `ovsdb-server` with a fresh OVN Northbound database (unix, TLS, cluster): the same
/// rig the dataplane's OVN tests use, shared with the benchmarks rather than copied.
#[path = "../../dataplane/tests/support/ovsdb.rs"]
pub mod nb_server;
pub mod nb_writer;
pub mod ovn_churn;
pub mod ovs;
pub mod probe;
pub mod procs;
pub mod report;
pub mod sched;
pub mod topology;
pub mod traffic;
pub mod vm;

/// The `max_simd_bitwidth` the benchmarks give DPDK: 512 where the CPU has AVX-512F and
/// AVX-512BW (what rte_acl's AVX-512 classify methods need), so that the ACL classifies 32
/// packets at a time; otherwise `None` (DPDK's default, 256).
pub fn acl_simd_bitwidth() -> Option<u16> {
    let flags = cpu_flags();
    let has = |f: &str| flags.iter().any(|x| x == f);
    (has("avx512f") && has("avx512bw")).then_some(512)
}

/// The CPU's feature flags, from the first `flags` line of `/proc/cpuinfo` (none if it
/// cannot be read).
pub fn cpu_flags() -> Vec<String> {
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    info.lines()
        .find(|l| l.starts_with("flags"))
        .and_then(|l| l.split_once(':'))
        .map_or_else(Vec::new, |(_, f)| {
            f.split_whitespace().map(str::to_string).collect()
        })
}
