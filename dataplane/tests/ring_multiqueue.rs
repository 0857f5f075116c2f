//! Two rx queues per port and two workers (lcores 1 and 2, both on CPU 1 here): automatic
//! assignment gives each worker one queue of each port and its own tx queue on every port;
//! every packet crosses exactly once and each worker's counters show its share.

mod common;

use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use dataplane::config::ConfigFile;
use dataplane::dpdk::ring::{ring_port_multi, Ring};
use dataplane::dpdk::{Eal, Mempool};
use dataplane::plan;
use dataplane::runtime::{run_with_eal, RunOptions};

const CFG: &str = r#"
[eal]
lcore_map = "0@0,1@1,2@1"
main_lcore = 0
no_huge = true
[ports.r0]
role = "fronthaul"
kind = "ring"
queues = 2
[ports.r1]
role = "midhaul"
kind = "ring"
queues = 2
[forwarding]
cross_connect = [["r0", "r1"]]
"#;

#[test]
fn two_queues_two_workers_each_packet_once() {
    let prefix = format!("ring-mq-{}", std::process::id());
    let eal = Eal::init(&[
        "--lcores",
        "0@0,1@1,2@1",
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
    .expect("EAL");
    let cfg = ConfigFile::parse(CFG, Path::new("mq.toml")).unwrap();
    let plan = plan::build(&cfg, Path::new("mq.toml"), &plan::Host::with_cpus(&[0, 1])).unwrap();
    assert_eq!(plan.workers.len(), 2);
    assert_eq!(plan.workers[0].rx, vec![(0, 0), (1, 0)]);
    assert_eq!(plan.workers[1].rx, vec![(0, 1), (1, 1)]);
    assert!(
        plan.ports.iter().all(|p| p.tx_queues == 2),
        "a tx queue per worker on every port"
    );

    let mk = |n: &str| Ring::create(&eal, n, 32768).unwrap();
    let (in0a, in0b, out0a, out0b) = (mk("i0a"), mk("i0b"), mk("o0a"), mk("o0b"));
    let (in1a, in1b, out1a, out1b) = (mk("i1a"), mk("i1b"), mk("o1a"), mk("o1b"));
    ring_port_multi(&eal, "0", &[&in0a, &in0b], &[&out0a, &out0b]).unwrap();
    ring_port_multi(&eal, "1", &[&in1a, &in1b], &[&out1a, &out1b]).unwrap();
    let rings = Arc::new([in0a, in0b, out1a, out1b, out0a, out0b, in1a, in1b]);
    let pool = Arc::new(Mempool::create(&eal, "test_pool", 32767, 0, 2176, 0).unwrap());
    let stop = Arc::new(AtomicBool::new(false));
    const A: u32 = 3000; // into r0 queue 0 (worker 1)
    const B: u32 = 5000; // into r0 queue 1 (worker 2)

    let traffic = {
        let (r, pool, stop) = (rings.clone(), pool.clone(), stop.clone());
        std::thread::spawn(move || {
            stop_after(stop, || {
                inject(&pool, &r[0], A, 0);
                inject(&pool, &r[1], B, 0);
                // Worker 1 sends on tx queue 0 of r1, worker 2 on tx queue 1.
                let q0 = collect(&r[2], A as usize, Duration::from_secs(20));
                let q1 = collect(&r[3], B as usize, Duration::from_secs(20));
                std::thread::sleep(Duration::from_millis(50));
                (q0, q1, r[4].count() + r[5].count())
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
    let (q0, q1, back) = traffic.join().unwrap();
    assert_in_order(&q0, A, "queue 0 via worker 1 to r1 tx queue 0");
    assert_in_order(&q1, B, "queue 1 via worker 2 to r1 tx queue 1");
    assert_eq!(back, 0, "nothing went back to r0");
    let w: Vec<(u32, u64)> = report
        .workers
        .iter()
        .map(|w| (w.lcore, w.counters.ports[0].rx))
        .collect();
    assert_eq!(
        w,
        vec![(1, A as u64), (2, B as u64)],
        "each worker polled its own queue"
    );
    assert_eq!(report.ports[1].tx, (A + B) as u64);
    assert_eq!(pool.in_use(), 0);
}
