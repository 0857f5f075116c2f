//! When a tx queue stays full the worker retries a bounded number of times, then drops and
//! counts: packets in = packets out + counted drops, and no mbuf leaks.

mod common;

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use dataplane::dpdk::Mempool;
use dataplane::runtime::{run_with_eal, RunOptions};

#[test]
fn full_tx_queue_drops_are_bounded_and_counted() {
    let eal = eal("ring-drop");
    let plan = ring_plan("tx_retries = 2");
    // Port 1's tx ring holds only 63 packets and nobody drains it.
    let wires = Arc::new(ring_ports(&eal, 64));
    let pool = Arc::new(Mempool::create(&eal, "test_pool", 8191, 0, 2176, 0).unwrap());
    let stop = Arc::new(AtomicBool::new(false));
    const N: u32 = 1_000;

    let traffic = {
        let (w, pool, stop) = (wires.clone(), pool.clone(), stop.clone());
        std::thread::spawn(move || {
            stop_after(stop, || {
                inject(&pool, &w.in0, N, 0);
                // Wait until the worker has taken everything off the input ring.
                for _ in 0..2000 {
                    if w.in0.count() == 0 {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(1));
                }
                std::thread::sleep(Duration::from_millis(100));
                w.out1.count()
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
    let queued = traffic.join().expect("traffic thread");

    let (r0, r1) = (&report.ports[0], &report.ports[1]);
    assert_eq!(r0.rx, N as u64);
    assert_eq!(queued, 63, "the tx ring took what it holds");
    assert_eq!(r1.tx, 63);
    assert_eq!(
        r1.tx + r1.tx_dropped,
        N as u64,
        "every packet is either sent or counted as dropped"
    );
    drop(wires); // frees the 63 queued mbufs with the ring
    assert_eq!(pool.in_use(), 0);
}
