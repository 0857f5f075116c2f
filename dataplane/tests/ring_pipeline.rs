//! The `parse -> forward` pipeline on real DPDK ring ports and real mbufs: every good packet
//! crosses, in order; malformed ones are dropped and counted by reason in the node stats.

mod common;

use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use arrayvec::ArrayVec;
use common::*;
use dataplane::config::ConfigFile;
use dataplane::dpdk::{Mbuf, Mempool};
use dataplane::plan;
use dataplane::runtime::{run_with_eal, RunOptions};

const PIPELINE: &str = r#"
[eal]
lcores = [0, 1]
no_huge = true
[ports.r0]
role = "fronthaul"
kind = "ring"
[ports.r1]
role = "midhaul"
kind = "ring"
[pipeline]
input = "parse"
[[pipeline.nodes]]
name = "parse"
kind = "parse"
[[pipeline.nodes]]
name = "forward"
kind = "forward"
params = { mode = "cross-connect", pairs = [["r0", "r1"]] }
[[pipeline.edges]]
from = "parse"
to = "forward"
"#;

#[test]
fn parse_forward_crosses_good_packets_and_counts_bad_ones() {
    let eal = eal("ring-pipe");
    let cfg = ConfigFile::parse(PIPELINE, Path::new("pipe.toml")).unwrap();
    let plan = plan::build(
        &cfg,
        Path::new("pipe.toml"),
        &plan::Host::with_cpus(&[0, 1]),
    )
    .unwrap();
    let wires = Arc::new(ring_ports(&eal, 32768));
    let pool = Arc::new(Mempool::create(&eal, "test_pool", 32767, 0, 2176, 0).unwrap());
    let stop = Arc::new(AtomicBool::new(false));
    const N: u32 = 10_000;
    const M: u32 = 3_000;

    let traffic = {
        let (w, pool, stop) = (wires.clone(), pool.clone(), stop.clone());
        std::thread::spawn(move || {
            stop_after(stop, || {
                // Malformed first: a truncated IPv4 header, a bad IHL, an unknown ethertype.
                let mut bad: ArrayVec<Mbuf, 32> = ArrayVec::new();
                let good = frame(0, 0);
                for (i, f) in [
                    good[..20].to_vec(),
                    {
                        let mut f = good.clone();
                        f[14] = 0x44;
                        f
                    },
                    {
                        let mut f = good.clone();
                        f[12] = 0x12;
                        f[13] = 0x34;
                        f
                    },
                ]
                .into_iter()
                .enumerate()
                {
                    for _ in 0..=i {
                        let mut m = pool.alloc().unwrap();
                        assert!(m.append(&f));
                        bad.push(m);
                    }
                }
                while !bad.is_empty() {
                    w.in0.enqueue(&mut bad);
                }
                inject(&pool, &w.in0, N, 0);
                inject(&pool, &w.in1, M, 1);
                let a_to_b = collect(&w.out1, N as usize, Duration::from_secs(20));
                let b_to_a = collect(&w.out0, M as usize, Duration::from_secs(20));
                std::thread::sleep(Duration::from_millis(50));
                (a_to_b, b_to_a, w.out0.count() + w.out1.count())
            })
        })
    };
    let opts = RunOptions {
        no_hugepage_setup: true,
        stop: Some(stop),
        duration: Some(60.0),
        trace: 2,
        ..Default::default()
    };
    let report = run_with_eal(&eal, &plan, &opts).expect("run");
    let (a_to_b, b_to_a, extra) = traffic.join().expect("traffic thread");

    assert_in_order(&a_to_b, N, "r0 -> r1 through parse -> forward");
    assert_in_order(&b_to_a, M, "r1 -> r0 through parse -> forward");
    assert_eq!(extra, 0);
    assert_eq!(
        report.ports[0].rx,
        N as u64 + 6,
        "the 6 malformed packets were received too"
    );
    assert_eq!(report.ports[1].tx, N as u64);
    let rt = &report.pipeline[0];
    let parse = rt.node("parse").expect("parse node stats");
    assert_eq!(parse.packets, (N + M + 6) as u64);
    assert_eq!(parse.total_drops(), 6, "{parse:?}");
    assert_eq!(parse.drops_for("truncated-ipv4"), 1, "{parse:?}");
    assert_eq!(parse.drops_for("bad-ihl"), 2, "{parse:?}");
    assert_eq!(parse.drops_for("unknown-ethertype"), 3, "{parse:?}");
    assert_eq!(rt.node("forward").unwrap().packets, (N + M) as u64);
    assert!(parse.clocks_per_packet() > 0.0);
    assert!(report.mempools.iter().all(|m| m.in_use_after_stop == 0));
    assert_eq!(pool.in_use(), 0, "dropped packets went back to their pool");
}
