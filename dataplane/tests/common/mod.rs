//! Shared set-up for tests that run real DPDK in-process: EAL without huge pages, ring ports.
#![allow(dead_code)]

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrayvec::ArrayVec;
use dataplane::config::ConfigFile;
use dataplane::dpdk::ring::{ring_port, Ring};
use dataplane::dpdk::{Eal, Mbuf, Mempool};
use dataplane::plan::{self, Plan};

/// A two-port cross-connect plan over ring ports (ethdevs net_ring_0 and net_ring_1).
pub fn ring_plan(extra: &str) -> Plan {
    let text = format!(
        r#"
[eal]
lcores = [0, 1]
no_huge = true
[ports.r0]
role = "fronthaul"
kind = "ring"
[ports.r1]
role = "midhaul"
kind = "ring"
[forwarding]
cross_connect = [["r0", "r1"]]
{extra}
"#
    );
    let cfg = ConfigFile::parse(&text, Path::new("test.toml")).expect("parses");
    plan::build(
        &cfg,
        Path::new("test.toml"),
        &plan::Host::with_cpus(&[0, 1]),
    )
    .expect("valid plan")
}

/// A fresh scratch directory for one test run: `<tmp>/dp-<tag>-<pid>`.
pub fn scratch_dir(tag: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("dp-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Writes `text` as `dir/dataplane.toml` (the file SIGHUP reloads), loads it and plans it
/// for CPUs 0 and 1; returns the file and the plan.
pub fn plan_file(dir: &Path, text: &str) -> (std::path::PathBuf, Plan) {
    let file = dir.join("dataplane.toml");
    std::fs::write(&file, text).unwrap();
    let cfg = ConfigFile::load(&file).expect("parses");
    let plan = plan::build(&cfg, &file, &plan::Host::with_cpus(&[0, 1])).expect("valid plan");
    (file, plan)
}

/// Initialises EAL in this process (once) without huge pages or PCI, with DPDK's SIMD limit
/// at 512 bits as the benchmarks set it (so rte_acl may pick its AVX-512 methods where the
/// CPU has them).
pub fn eal(prefix: &str) -> Eal {
    let prefix = format!("{prefix}-{}", std::process::id());
    Eal::init(&[
        "--force-max-simd-bitwidth=512",
        "-l",
        "0,1",
        "--main-lcore",
        "0",
        "--no-huge",
        "-m",
        "512",
        "--no-pci",
        "--no-shconf",
        "--file-prefix",
        &prefix,
        "--log-level",
        "warning",
    ])
    .expect("EAL init")
}

/// The wires of a two-port ring topology: what the test puts in front of each port and
/// what comes out of it.
pub struct Wires {
    /// Into port 0 (its rx).
    pub in0: Ring,
    /// Out of port 0 (its tx).
    pub out0: Ring,
    /// Into port 1.
    pub in1: Ring,
    /// Out of port 1.
    pub out1: Ring,
}

/// Creates net_ring_0 and net_ring_1 over four rings; port 1's tx ring has `out1_size` slots.
pub fn ring_ports(eal: &Eal, out1_size: u32) -> Wires {
    let w = Wires {
        in0: Ring::create(eal, "in0", 32768).unwrap(),
        out0: Ring::create(eal, "out0", 32768).unwrap(),
        in1: Ring::create(eal, "in1", 32768).unwrap(),
        out1: Ring::create(eal, "out1", out1_size).unwrap(),
    };
    ring_port(eal, "0", &w.in0, &w.out0).unwrap();
    ring_port(eal, "1", &w.in1, &w.out1).unwrap();
    w
}

/// A 64-byte UDP frame carrying `seq` in its payload (bytes 42..46).
pub fn frame(seq: u32, net: u8) -> Vec<u8> {
    let mut f = perf_frame(net);
    f[42..46].copy_from_slice(&seq.to_be_bytes());
    f
}

fn perf_frame(net: u8) -> Vec<u8> {
    let mut f = vec![0u8; 64];
    f[0..6].copy_from_slice(&[2, 0, 0, 0, 1 - net, 1]);
    f[6..12].copy_from_slice(&[2, 0, 0, 0, net, 1]);
    f[12] = 0x08;
    f[14] = 0x45;
    f[16..18].copy_from_slice(&50u16.to_be_bytes());
    f[22] = 64;
    f[23] = 17;
    f[26..30].copy_from_slice(&[10, net + 1, 0, 1]);
    f[30..34].copy_from_slice(&[10, 2 - net, 0, 1]);
    f[34..36].copy_from_slice(&1024u16.to_be_bytes());
    f[36..38].copy_from_slice(&5001u16.to_be_bytes());
    f[38..40].copy_from_slice(&30u16.to_be_bytes()); // UDP length: 64 - 14 - 20
    f
}

/// Puts `n` frames numbered from 0 on `ring` (waiting while it is full, at most 10 s).
pub fn inject(pool: &Mempool, ring: &Ring, n: u32, net: u8) {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut v: ArrayVec<Mbuf, 32> = ArrayVec::new();
    let mut seq = 0;
    while seq < n {
        while !v.is_full() && seq < n {
            let mut m = pool.alloc().expect("test pool has room");
            assert!(m.append(&frame(seq, net)));
            v.push(m);
            seq += 1;
        }
        while !v.is_empty() {
            ring.enqueue(&mut v);
            assert!(Instant::now() < deadline, "ring stayed full");
        }
    }
}

/// Checks that `seqs` is exactly 0..n in order, without printing thousands of numbers.
pub fn assert_in_order(seqs: &[u32], n: u32, what: &str) {
    assert_eq!(seqs.len(), n as usize, "{what}: packet count");
    if let Some(i) = seqs.iter().enumerate().position(|(i, &s)| s != i as u32) {
        panic!(
            "{what}: packet {i} carries sequence number {} (reordered or lost)",
            seqs[i]
        );
    }
}

/// Takes frames off `ring` until `n` arrived or `timeout` passed; returns their sequence numbers.
pub fn collect(ring: &Ring, n: usize, timeout: Duration) -> Vec<u32> {
    let deadline = Instant::now() + timeout;
    let mut seqs = Vec::with_capacity(n);
    let mut v: ArrayVec<Mbuf, 32> = ArrayVec::new();
    while seqs.len() < n && Instant::now() < deadline {
        if ring.dequeue(&mut v) == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
        for m in v.drain(..) {
            let d = m.data();
            seqs.push(u32::from_be_bytes([d[42], d[43], d[44], d[45]]));
        }
    }
    seqs
}

/// Sets `flag` after `f` returns (also when it panics, so the runtime never hangs).
pub fn stop_after<T>(flag: Arc<AtomicBool>, f: impl FnOnce() -> T) -> T {
    struct Guard(Arc<AtomicBool>);
    impl Drop for Guard {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }
    let _g = Guard(flag);
    f()
}

/// Counters a traffic [`pump`] shares with the test driving it.
#[derive(Default)]
pub struct PumpCounts {
    /// Set by the driver: stop sending, drain, then set `done`.
    pub stop: AtomicBool,
    /// Set by the pump once it stopped and nothing came out for 300 ms.
    pub done: AtomicBool,
    /// Frames put into the input ring.
    pub injected: AtomicU64,
    /// Frames taken out of the output ring.
    pub collected: AtomicU64,
}

/// Streams the bursts `next` yields into `input`, pausing `pause` after each, and hands
/// every frame coming out of `output` to `seen`, until `c.stop`; then drains until nothing
/// comes for 300 ms and sets `c.done`. Every frame is counted on its way in and out.
pub fn pump(
    pool: &Mempool,
    input: &Ring,
    output: &Ring,
    c: &PumpCounts,
    pause: Duration,
    mut next: impl FnMut() -> Vec<Vec<u8>>,
    mut seen: impl FnMut(&Mbuf),
) {
    let mut v: ArrayVec<Mbuf, 32> = ArrayVec::new();
    let mut out: ArrayVec<Mbuf, 32> = ArrayVec::new();
    let mut drain = |out: &mut ArrayVec<Mbuf, 32>| -> usize {
        let n = output.dequeue(out);
        for m in out.drain(..) {
            seen(&m);
        }
        c.collected.fetch_add(n as u64, Ordering::SeqCst);
        n
    };
    while !c.stop.load(Ordering::SeqCst) {
        for f in next() {
            let mut m = pool.alloc().expect("pool has room");
            assert!(m.append(&f));
            v.push(m);
        }
        c.injected.fetch_add(v.len() as u64, Ordering::SeqCst);
        while !v.is_empty() {
            input.enqueue(&mut v);
            drain(&mut out);
        }
        drain(&mut out);
        std::thread::sleep(pause);
    }
    let mut quiet = Instant::now();
    while quiet.elapsed() < Duration::from_millis(300) {
        if drain(&mut out) > 0 {
            quiet = Instant::now();
        } else {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    c.done.store(true, Ordering::SeqCst);
}

/// Polls `f` every 2 ms until it holds; fails naming `what` after `secs` seconds.
pub fn wait_for(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

pub fn put(pool: &Mempool, ring: &Ring, frames: &[Vec<u8>]) {
    let deadline = Instant::now() + Duration::from_secs(10);
    for chunk in frames.chunks(32) {
        let mut v: ArrayVec<Mbuf, 32> = ArrayVec::new();
        for f in chunk {
            let mut m = pool.alloc().expect("pool has room");
            assert!(m.append(f));
            v.push(m);
        }
        while !v.is_empty() {
            ring.enqueue(&mut v);
            assert!(Instant::now() < deadline, "ring stayed full");
        }
    }
}

/// One's-complement sum of big-endian 16-bit words (independent of the pipeline's code).
pub fn csum(mut acc: u32, b: &[u8]) -> u32 {
    for c in b.chunks(2) {
        acc += u32::from(c[0]) << 8 | u32::from(*c.get(1).unwrap_or(&0));
    }
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc
}

/// TCP segments that came out of `ring`: (src, dst, src port, dst port, flags, IPv4 and
/// TCP checksums valid).
#[allow(clippy::type_complexity)]
pub fn take_tcp(
    ring: &Ring,
    n: usize,
    wait: Duration,
) -> Vec<([u8; 4], [u8; 4], u16, u16, u8, bool)> {
    let deadline = Instant::now() + wait;
    let mut out = Vec::new();
    let mut v: ArrayVec<Mbuf, 32> = ArrayVec::new();
    while out.len() < n && Instant::now() < deadline {
        if ring.dequeue(&mut v) == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
        for m in v.drain(..) {
            let d = m.data();
            let ip = |o: usize| [d[o], d[o + 1], d[o + 2], d[o + 3]];
            let port = |o: usize| u16::from_be_bytes([d[o], d[o + 1]]);
            let ihl = usize::from(d[14] & 0x0f) * 4;
            let total = usize::from(port(16));
            let l4 = &d[14 + ihl..14 + total];
            let mut pseudo = d[26..34].to_vec();
            pseudo.extend_from_slice(&[0, 6, 0, l4.len() as u8]);
            let ok = csum(0, &d[14..14 + ihl]) == 0xffff
                && csum(csum(0, &pseudo), l4) == 0xffff
                && d[23] == 6;
            out.push((ip(26), ip(30), port(34), port(36), d[47], ok));
        }
    }
    out
}

/// An Ethernet/IPv4/TCP frame (the built-in source's template) from `src:sport` to
/// `dst:dport`.
pub fn tcp_frame(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16) -> Vec<u8> {
    let spec = pipeline::source::SourceSpec {
        protocol: pipeline::source::L4Proto::Tcp,
        src_ip: std::net::IpAddr::V4(std::net::Ipv4Addr::from(src)),
        dst_ip: std::net::IpAddr::V4(std::net::Ipv4Addr::from(dst)),
        src_port: sport,
        dst_port: dport,
        ..pipeline::source::SourceSpec::default()
    };
    pipeline::source::build_frame(&spec, 0)
}

/// In and out rings for every port of `plan`, made ring ethdevs in the plan's port order
/// (`net_ring_<index>`), by port name.
pub fn ring_ports_for_plan(
    eal: &Eal,
    plan: &Plan,
) -> std::collections::BTreeMap<String, (Ring, Ring)> {
    let mut rings = std::collections::BTreeMap::new();
    for (i, p) in plan.ports.iter().enumerate() {
        let rx = Ring::create(eal, &format!("{}_in", p.name), 4096).unwrap();
        let tx = Ring::create(eal, &format!("{}_out", p.name), 4096).unwrap();
        ring_port(eal, &i.to_string(), &rx, &tx).unwrap();
        rings.insert(p.name.clone(), (rx, tx));
    }
    rings
}
