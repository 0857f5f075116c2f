//! The `lb` node end to end on real DPDK ring ports and mbufs: many TCP flows to a VIP with
//! 4 backends; one backend is removed mid-run through the named control. Asserted: flows on
//! the remaining backends never move; the removed backend's flows are dropped (and counted
//! as `backend-down`); new flows spread over the remaining backends within a 5-sigma
//! binomial bound of their Maglev share; replies from the backends come back un-NATed, and
//! so do ICMP "fragmentation needed" errors the backends send about requests (from the VIP,
//! quoting the request as the client sent it); every packet that leaves has valid IPv4 and
//! TCP (or ICMP) checksums (checked from scratch here). An SCTP service beside it (5G's N2
//! port, backends on another port): associations are balanced with the ports NATed both
//! ways and every SCTP packet that leaves carries a valid CRC32c (recomputed here over the
//! whole packet: the node updated it for the changed port alone).

mod common;

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrayvec::ArrayVec;
use common::*;
use dataplane::config::ConfigFile;
use dataplane::dpdk::ring::Ring;
use dataplane::dpdk::{Mbuf, Mempool};
use dataplane::plan;
use dataplane::runtime::{run_with_eal, RunOptions};
use pipeline::lb::LbControl;
use pipeline::wire::crc32c::sctp_checksum_bytes;

const CONTROL: &str = "lb-ring-e2e";

fn config() -> String {
    format!(
        r#"
[eal]
lcores = [0, 1]
no_huge = true
[ports.r0]
role = "clients"
kind = "ring"
[ports.r1]
role = "backends"
kind = "ring"
[pipeline]
input = "parse"
[[pipeline.nodes]]
name = "parse"
kind = "parse"
[[pipeline.nodes]]
name = "lb"
kind = "lb"
[pipeline.nodes.params]
control = "{CONTROL}"
conntrack = {{ capacity = 65536 }}
[[pipeline.nodes.params.services]]
name = "web"
vip = "192.0.2.10"
protocol = "tcp"
port = 80
backends = [
  {{ address = "10.0.0.1", port = 8080 }},
  {{ address = "10.0.0.2", port = 8080 }},
  {{ address = "10.0.0.3", port = 8080 }},
  {{ address = "10.0.0.4", port = 8080 }},
]
[[pipeline.nodes.params.services]]
name = "n2"
vip = "192.0.2.10"
protocol = "sctp"
port = 38412
backends = [
  {{ address = "10.0.0.5", port = 38413 }},
  {{ address = "10.0.0.6", port = 38413 }},
]
[[pipeline.nodes]]
name = "forward"
kind = "forward"
params = {{ mode = "cross-connect", pairs = [["r0", "r1"]] }}
[[pipeline.nodes]]
name = "reset"
kind = "forward"
params = {{ mode = "by-metadata" }}
[[pipeline.edges]]
from = "parse"
to = "lb"
[[pipeline.edges]]
from = "lb"
to = "forward"
[[pipeline.edges]]
from = "lb"
output = "reset"
to = "reset"
"#
    )
}

const VIP: [u8; 4] = [192, 0, 2, 10];

fn sum16(mut acc: u32, d: &[u8]) -> u32 {
    for w in d.chunks(2) {
        acc += (w[0] as u32) << 8 | *w.get(1).unwrap_or(&0) as u32;
    }
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc
}

/// Ethernet and an IPv4 header (`total` bytes, protocol `proto`, correct checksum), then the
/// ports: the first 38 bytes of a TCP, UDP or SCTP frame.
fn ipv4_ports(src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16, proto: u8, total: u8) -> Vec<u8> {
    let mut f = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00];
    f.extend_from_slice(&[0x45, 0, 0, total, 0, 1, 0x40, 0, 64, proto, 0, 0]);
    f.extend_from_slice(&src);
    f.extend_from_slice(&dst);
    let c = !(sum16(0, &f[14..34]) as u16);
    f[24..26].copy_from_slice(&c.to_be_bytes());
    f.extend_from_slice(&sport.to_be_bytes());
    f.extend_from_slice(&dport.to_be_bytes());
    f
}

/// Ethernet / IPv4 / TCP (20-byte header, 6 bytes payload), correct checksums.
fn tcp_frame(src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16, flags: u8) -> Vec<u8> {
    let mut f = ipv4_ports(src, sport, dst, dport, 6, 46);
    f.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
    f.extend_from_slice(b"lbtest");
    let c = !(sum16(pseudo(&f), &f[34..]) as u16);
    f[50..52].copy_from_slice(&c.to_be_bytes());
    f
}

fn pseudo(f: &[u8]) -> u32 {
    let len = u16::from_be_bytes([f[16], f[17]]) as u32 - 20;
    sum16(sum16(0, &f[26..34]), &[0, 6, (len >> 8) as u8, len as u8])
}

/// (src, sport, dst, dport) of a frame whose IPv4 and TCP checksums verify; panics otherwise.
fn check(f: &[u8]) -> ([u8; 4], u16, [u8; 4], u16) {
    assert_eq!(
        (f[12], f[13], f[14], f[23]),
        (0x08, 0x00, 0x45, 6),
        "IPv4/TCP"
    );
    assert_eq!(sum16(0, &f[14..34]), 0xffff, "IPv4 header checksum");
    let end = 14 + u16::from_be_bytes([f[16], f[17]]) as usize;
    assert_eq!(sum16(pseudo(f), &f[34..end]), 0xffff, "TCP checksum");
    assert_eq!(&f[54..60], b"lbtest", "payload untouched");
    let a = |i: usize| [f[i], f[i + 1], f[i + 2], f[i + 3]];
    let p = |i: usize| u16::from_be_bytes([f[i], f[i + 1]]);
    (a(26), p(34), a(30), p(36))
}

/// Ethernet / IPv4 / SCTP: the common header (verification tag `vtag`, correct CRC32c) and
/// one DATA chunk carrying `lbtest` (NGAP's payload protocol id, 60).
fn sctp_frame(src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16, vtag: u32) -> Vec<u8> {
    let mut f = ipv4_ports(src, sport, dst, dport, 132, 56);
    f.extend_from_slice(&vtag.to_be_bytes());
    f.extend_from_slice(&[0; 4]);
    f.extend_from_slice(&[0, 3, 0, 22, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 60]);
    f.extend_from_slice(b"lbtest\0\0");
    let c = sctp_checksum_bytes(&f[34..]);
    f[42..46].copy_from_slice(&c);
    f
}

/// (src, sport, dst, dport) of an SCTP frame whose IPv4 header checksum and CRC32c verify;
/// panics otherwise.
fn check_sctp(f: &[u8]) -> ([u8; 4], u16, [u8; 4], u16) {
    assert_eq!((f[14], f[23], f.len()), (0x45, 132, 70), "IPv4/SCTP");
    assert_eq!(sum16(0, &f[14..34]), 0xffff, "IPv4 header checksum");
    let mut p = f[34..].to_vec();
    p[8..12].fill(0);
    assert_eq!(sctp_checksum_bytes(&p), f[42..46], "SCTP CRC32c");
    assert_eq!(&f[62..68], b"lbtest", "payload untouched");
    let a = |i: usize| [f[i], f[i + 1], f[i + 2], f[i + 3]];
    let p = |i: usize| u16::from_be_bytes([f[i], f[i + 1]]);
    (a(26), p(34), a(30), p(36))
}

/// An ICMPv4 "fragmentation needed" error from `from` to the source of the IPv4 frame
/// `quoted`, quoting its IP header and the 8 bytes after it.
fn frag_needed(quoted: &[u8], from: [u8; 4]) -> Vec<u8> {
    let mut icmp = vec![3, 4, 0, 0, 0, 0, 0x05, 0x78];
    icmp.extend_from_slice(&quoted[14..14 + 28]);
    let c = !(sum16(0, &icmp) as u16);
    icmp[2..4].copy_from_slice(&c.to_be_bytes());
    let mut f = quoted[..14].to_vec();
    f.extend_from_slice(&[0x45, 0, 0, 56, 0, 0, 0, 0, 64, 1, 0, 0]);
    f.extend_from_slice(&from);
    f.extend_from_slice(&quoted[26..30]);
    let c = !(sum16(0, &f[14..34]) as u16);
    f[24..26].copy_from_slice(&c.to_be_bytes());
    f.extend_from_slice(&icmp);
    f
}

/// (source, destination, quoted destination, quoted destination port) of an ICMP error whose
/// IPv4 header, ICMP and quoted IPv4 header checksums verify; panics otherwise.
fn check_icmp(f: &[u8]) -> ([u8; 4], [u8; 4], [u8; 4], u16) {
    assert_eq!((f[14], f[23], f[34]), (0x45, 1, 3), "IPv4/ICMP unreachable");
    assert_eq!(sum16(0, &f[14..34]), 0xffff, "IPv4 header checksum");
    assert_eq!(sum16(0, &f[34..]), 0xffff, "ICMP checksum");
    assert_eq!(sum16(0, &f[42..62]), 0xffff, "quoted IPv4 header checksum");
    let a = |i: usize| [f[i], f[i + 1], f[i + 2], f[i + 3]];
    (a(26), a(30), a(58), u16::from_be_bytes([f[64], f[65]]))
}

fn client(i: u32) -> ([u8; 4], u16) {
    (
        (u32::from(Ipv4Addr::new(198, 18, 0, 0)) + i).to_be_bytes(),
        1024 + (i % 60000) as u16,
    )
}

fn send(pool: &Mempool, ring: &Ring, frames: &[Vec<u8>]) {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut v: ArrayVec<Mbuf, 32> = ArrayVec::new();
    for chunk in frames.chunks(32) {
        for f in chunk {
            let mut m = pool.alloc().expect("test pool has room");
            assert!(m.append(f));
            v.push(m);
        }
        while !v.is_empty() {
            ring.enqueue(&mut v);
            assert!(Instant::now() < deadline, "ring stayed full");
        }
    }
}

fn receive(ring: &Ring, n: usize, timeout: Duration) -> Vec<Vec<u8>> {
    let deadline = Instant::now() + timeout;
    let mut out = Vec::with_capacity(n);
    let mut v: ArrayVec<Mbuf, 32> = ArrayVec::new();
    while out.len() < n && Instant::now() < deadline {
        if ring.dequeue(&mut v) == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
        out.extend(v.drain(..).map(|m| m.data().to_vec()));
    }
    out
}

const F: u32 = 12_000; // flows before the removal
const S: u32 = 2_000; // SCTP associations to the N2 service
const G: u32 = 12_000; // new flows after it

#[test]
fn flows_stay_put_when_a_backend_is_removed_mid_run() {
    let eal = eal("lb-ring");
    let text = config();
    let cfg = ConfigFile::parse(&text, Path::new("lb.toml")).unwrap();
    let plan = plan::build(&cfg, Path::new("lb.toml"), &plan::Host::with_cpus(&[0, 1]))
        .expect("valid plan");
    let wires = Arc::new(ring_ports(&eal, 32768));
    let pool = Arc::new(Mempool::create(&eal, "lb_pool", 32767, 0, 2176, 0).unwrap());
    let stop = Arc::new(AtomicBool::new(false));

    let traffic = {
        let (w, pool, stop) = (wires.clone(), pool.clone(), stop.clone());
        std::thread::spawn(move || {
            stop_after(stop, || {
                let syns: Vec<Vec<u8>> = (0..F)
                    .map(|i| {
                        let (s, p) = client(i);
                        tcp_frame(s, p, VIP, 80, 0x02)
                    })
                    .collect();
                send(&pool, &w.in0, &syns);
                let first = receive(&w.out1, F as usize, Duration::from_secs(30));
                // Mid-run: the control plane removes a backend while the worker polls.
                let ctl = LbControl::named(CONTROL).expect("the lb node registered its control");
                ctl.remove_backend("web", "10.0.0.2:8080").unwrap();
                let mut again: Vec<Vec<u8>> = (0..F)
                    .map(|i| {
                        let (s, p) = client(i);
                        tcp_frame(s, p, VIP, 80, 0x10)
                    })
                    .collect();
                again.extend((F..F + G).map(|i| {
                    let (s, p) = client(i);
                    tcp_frame(s, p, VIP, 80, 0x02)
                }));
                send(&pool, &w.in0, &again);
                let first_on_removed = first.iter().filter(|f| check(f).2 == [10, 0, 0, 2]).count();
                let second = receive(
                    &w.out1,
                    again.len() - first_on_removed,
                    Duration::from_secs(30),
                );
                // Replies from the backends for the first 1000 flows.
                let replies: Vec<Vec<u8>> = first[..1000]
                    .iter()
                    .filter(|f| check(f).2 != [10, 0, 0, 2])
                    .map(|f| {
                        let (s, sp, d, dp) = check(f);
                        tcp_frame(d, dp, s, sp, 0x12)
                    })
                    .collect();
                send(&pool, &w.in1, &replies);
                let back = receive(&w.out0, replies.len(), Duration::from_secs(30));
                // The backends report the first 100 requests as too big for their path.
                let errors: Vec<Vec<u8>> = first[..100]
                    .iter()
                    .filter(|f| check(f).2 != [10, 0, 0, 2])
                    .map(|f| frag_needed(f, check(f).2))
                    .collect();
                send(&pool, &w.in1, &errors);
                let errors_back = receive(&w.out0, errors.len(), Duration::from_secs(30));
                // SCTP associations to the N2 VIP, then each backend's answer.
                let n2: Vec<Vec<u8>> = (0..S)
                    .map(|i| {
                        let (s, p) = client(i);
                        sctp_frame(s, p, VIP, 38412, 0x1000 + i)
                    })
                    .collect();
                send(&pool, &w.in0, &n2);
                let n2_out = receive(&w.out1, n2.len(), Duration::from_secs(30));
                let n2_replies: Vec<Vec<u8>> = n2_out
                    .iter()
                    .map(|f| {
                        let (s, sp, d, dp) = check_sctp(f);
                        sctp_frame(d, dp, s, sp, 0x2000)
                    })
                    .collect();
                send(&pool, &w.in1, &n2_replies);
                let n2_back = receive(&w.out0, n2_replies.len(), Duration::from_secs(30));
                std::thread::sleep(Duration::from_millis(50));
                let extra = w.out0.count() + w.out1.count();
                (
                    first,
                    second,
                    replies,
                    back,
                    (errors, errors_back),
                    (n2_out, n2_back),
                    first_on_removed,
                    extra,
                    ctl.stats(),
                )
            })
        })
    };
    let opts = RunOptions {
        no_hugepage_setup: true,
        stop: Some(stop),
        duration: Some(120.0),
        ..Default::default()
    };
    let report = run_with_eal(&eal, &plan, &opts).expect("run");
    let (
        first,
        second,
        replies,
        back,
        (errors, errors_back),
        (n2_out, n2_back),
        on_removed,
        extra,
        stats,
    ) = traffic.join().expect("traffic thread");

    // Phase 1: every SYN was balanced; record each flow's backend.
    assert_eq!(first.len(), F as usize);
    let mut backend_of: HashMap<([u8; 4], u16), [u8; 4]> = HashMap::new();
    for f in &first {
        let (s, sp, d, dp) = check(f);
        assert_eq!(dp, 8080);
        backend_of.insert((s, sp), d);
    }
    assert_eq!(backend_of.len(), F as usize);
    let mut load: HashMap<[u8; 4], usize> = HashMap::new();
    for d in backend_of.values() {
        *load.entry(*d).or_default() += 1;
    }
    evenness(&load, F as usize, 4, "before the removal");
    // Phase 2: tracked flows on remaining backends never moved; new flows avoid the removed one.
    assert_eq!(
        second.len(),
        (F + G) as usize - on_removed,
        "all but the removed backend's flows came out"
    );
    let mut new_load: HashMap<[u8; 4], usize> = HashMap::new();
    let mut seen_old = 0;
    for f in &second {
        let (s, sp, d, _) = check(f);
        assert_ne!(d, [10, 0, 0, 2], "the removed backend got a packet");
        match backend_of.get(&(s, sp)) {
            Some(b) => {
                assert_eq!(*b, d, "flow {s:?}:{sp} moved");
                seen_old += 1;
            }
            None => *new_load.entry(d).or_default() += 1,
        }
    }
    assert_eq!(seen_old, F as usize - on_removed);
    evenness(&new_load, G as usize, 3, "new flows after the removal");
    // Replies un-NATed to the VIP.
    assert_eq!(back.len(), replies.len());
    for (f, r) in back.iter().zip(&replies) {
        let (s, sp, d, dp) = check(f);
        let (_, _, rd, rdp) = check(r);
        assert_eq!((s, sp, d, dp), (VIP, 80, rd, rdp));
    }
    assert_eq!(extra, 0);
    // Counters: the node's drops and the control's per-backend numbers agree.
    let lb = report.pipeline[0].node("lb").expect("lb node stats");
    // ICMP errors from the backends: from the VIP to the client, quoting the request as the
    // client sent it (to the VIP).
    assert!(errors.len() > 50, "{}", errors.len());
    assert_eq!(errors_back.len(), errors.len());
    for (f, e) in errors_back.iter().zip(&errors) {
        let client = [e[30], e[31], e[32], e[33]];
        assert_eq!(check_icmp(f), (VIP, client, VIP, 80));
    }
    assert_eq!(lb.counter("icmp-errors"), errors.len() as u64);
    // SCTP: every association balanced to a backend's port 38413 with a valid CRC32c, both
    // backends used, and each answer back from the VIP's N2 port to its client.
    assert_eq!(n2_out.len(), S as usize);
    let mut n2_load: HashMap<[u8; 4], usize> = HashMap::new();
    for (i, f) in n2_out.iter().enumerate() {
        let (s, sp, d, dp) = check_sctp(f);
        assert_eq!((s, sp), client(i as u32), "association {i}: source kept");
        assert_eq!(dp, 38413);
        assert_eq!(
            u32::from_be_bytes([f[38], f[39], f[40], f[41]]),
            0x1000 + i as u32
        );
        *n2_load.entry(d).or_default() += 1;
    }
    evenness(&n2_load, S as usize, 2, "SCTP associations");
    assert!(n2_load
        .keys()
        .all(|d| [[10, 0, 0, 5], [10, 0, 0, 6]].contains(d)));
    assert_eq!(n2_back.len(), S as usize);
    for (f, out) in n2_back.iter().zip(&n2_out) {
        let (s, sp, d, dp) = check_sctp(f);
        let (cs, csp, _, _) = check_sctp(out);
        assert_eq!((s, sp, d, dp), (VIP, 38412, cs, csp));
    }
    let n2 = stats.service("n2").unwrap();
    assert_eq!(n2.stats.new_connections, S as u64);
    assert_eq!(n2.stats.reply_packets, S as u64);
    assert_eq!(lb.drops_for("backend-down"), on_removed as u64, "{lb:?}");
    let web = stats.service("web").unwrap();
    assert_eq!(web.stats.new_connections, (F + G) as u64);
    assert_eq!(web.stats.reply_packets, replies.len() as u64);
    let removed = web
        .backends
        .iter()
        .find(|b| b.name == "10.0.0.2:8080")
        .expect("removed backend still listed: it has connections");
    assert_eq!(removed.stats.new_connections, on_removed as u64);
    assert!(report.mempools.iter().all(|m| m.in_use_after_stop == 0));
    assert_eq!(pool.in_use(), 0, "dropped packets went back to their pool");
    eprintln!("lb ring: {F} flows then {G} new; {on_removed} on the removed backend; loads {load:?} then {new_load:?}");
}

/// Each backend's count is within 5 binomial sigmas of an equal share (Maglev's shares
/// differ by at most 1 slot in 65537 for equal weights, negligible here).
fn evenness(load: &HashMap<[u8; 4], usize>, n: usize, backends: usize, what: &str) {
    assert_eq!(load.len(), backends, "{what}: {load:?}");
    let p = 1.0 / backends as f64;
    let mean = n as f64 * p;
    let sigma = (n as f64 * p * (1.0 - p)).sqrt();
    for (b, &c) in load {
        assert!(
            (c as f64 - mean).abs() <= 5.0 * sigma,
            "{what}: backend {b:?} has {c}, mean {mean:.0}, sigma {sigma:.0}"
        );
    }
}
