//! Cross-connect on real DPDK ring ports, in-process: every packet in comes out of the other
//! port, in order, and the counters agree.

mod common;

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use dataplane::dpdk::Mempool;
use dataplane::runtime::{run_with_eal, RunOptions};

#[test]
fn ring_cross_connect_moves_every_packet_both_ways() {
    let eal = eal("ring-xc");
    let plan = ring_plan("");
    let wires = Arc::new(ring_ports(&eal, 32768));
    let pool = Arc::new(Mempool::create(&eal, "test_pool", 32767, 0, 2176, 0).unwrap());
    let stop = Arc::new(AtomicBool::new(false));
    const N: u32 = 20_000;
    const M: u32 = 7_000;

    let traffic = {
        let (w, pool, stop) = (wires.clone(), pool.clone(), stop.clone());
        std::thread::spawn(move || {
            stop_after(stop, || {
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
        ..Default::default()
    };
    let report = run_with_eal(&eal, &plan, &opts).expect("run");
    let (a_to_b, b_to_a, extra) = traffic.join().expect("traffic thread");

    assert_in_order(&a_to_b, N, "r0 -> r1");
    assert_in_order(&b_to_a, M, "r1 -> r0");
    assert_eq!(extra, 0, "nothing else came out");
    let (r0, r1) = (&report.ports[0], &report.ports[1]);
    assert_eq!((r0.rx, r1.tx, r1.tx_dropped), (N as u64, N as u64, 0));
    assert_eq!((r1.rx, r0.tx, r0.tx_dropped), (M as u64, M as u64, 0));
    assert_eq!(r0.hw.ipackets, N as u64);
    assert_eq!(r1.hw.opackets, N as u64);
    assert_eq!(report.workers.len(), 1);
    assert!(
        report.mempools.iter().all(|m| m.in_use_after_stop == 0),
        "{:?}",
        report.mempools
    );
    assert_eq!(pool.in_use(), 0, "every test mbuf went back to its pool");
}
