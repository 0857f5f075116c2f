//! Rough performance figures, printed by ignored tests. Run in release:
//! `cargo test --release -p pipeline -- --ignored --nocapture --test-threads=1 lb::bench`
//! (ns are medians over short wall-clock rounds; cycles are ns times the nominal clock read
//! from /proc/cpuinfo).

use std::time::Instant;

use crate::conntrack::{ConnTrack, Direction, Handle, Timeouts};
use crate::lb::flow::{FlowKey, HashMode};
use crate::lb::maglev::{Backend, BackendId, Maglev, DEFAULT_TABLE_SIZE};

fn anon_huge_kb() -> u64 {
    std::fs::read_to_string("/proc/self/smaps_rollup")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("AnonHugePages:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// Runs `f(round)` for `rounds` rounds of `items_per_round` items each, timing every round
/// with the wall clock, and returns the median ns per item. Rounds are short (well under a
/// scheduler time slice), so on a busy machine the median ignores rounds that were
/// preempted.
fn median_ns(rounds: usize, items_per_round: usize, mut f: impl FnMut(usize)) -> f64 {
    let mut t: Vec<f64> = (0..rounds)
        .map(|r| {
            let s = Instant::now();
            f(r);
            s.elapsed().as_secs_f64() * 1e9 / items_per_round as f64
        })
        .collect();
    t.sort_by(f64::total_cmp);
    t[t.len() / 2]
}

fn ghz() -> f64 {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("cpu MHz"))
                .and_then(|l| l.split(':').nth(1))
                .and_then(|v| v.trim().parse::<f64>().ok())
        })
        .map_or(2.6, |mhz| mhz / 1000.0)
}

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// The `i`-th distinct flow of a population, computed in registers (so that benchmark
/// queries come from cache like parsed packet headers, not from a large key array).
#[inline(always)]
fn flow(i: u64) -> FlowKey {
    let m = crate::lb::flow::fmix64(i ^ 0x5555_5555);
    FlowKey::v4(
        (i as u32).to_be_bytes(),
        ((m >> 32) as u32).to_be_bytes(),
        m as u16,
        (m >> 16) as u16,
        6,
    )
}

#[test]
#[ignore = "benchmark: run in release with --ignored --nocapture"]
fn maglev_build_time() {
    for n in [10usize, 100, 1000] {
        let bs: Vec<Backend> = (0..n)
            .map(|i| Backend::new(format!("10.{}.{}.1:80", i / 256, i % 256)))
            .collect();
        let build_ns = median_ns(9, 1, |_| {
            assert!(!Maglev::build(&bs, DEFAULT_TABLE_SIZE).unwrap().is_empty())
        });
        let m = Maglev::build(&bs, DEFAULT_TABLE_SIZE).unwrap();
        let mut rng = Rng(42);
        let mut sum = 0u64;
        let look_ns = median_ns(64, 1 << 16, |_| {
            for _ in 0..1 << 16 {
                sum += m.lookup(rng.next()).map_or(0, |b| b.0 as u64);
            }
        });
        std::hint::black_box(sum);
        eprintln!(
            "maglev: {n:5} backends, M={DEFAULT_TABLE_SIZE}: build {:.2} ms (median of 9), lookup {look_ns:.1} ns",
            build_ns / 1e6
        );
    }
}

#[test]
#[ignore = "benchmark: run in release with --ignored --nocapture"]
fn conntrack_lookup_and_insert() {
    const BATCH: usize = 256;
    const ROUND: usize = 64 * BATCH;
    let ghz = ghz();
    let tmo = Timeouts::vpp_defaults(1000);
    let maglev = Maglev::build(
        &(0..100)
            .map(|i| Backend::new(format!("b{i}")))
            .collect::<Vec<_>>(),
        DEFAULT_TABLE_SIZE,
    )
    .unwrap();
    eprintln!(
        "clock {ghz:.3} GHz; ns per packet/flow, median of short rounds, key generation subtracted"
    );
    for (n, min_slots) in [
        (1_000usize, 0usize),
        (100_000, 0),
        (1_000_000, 0),
        (1_000_000, 8 << 20),
    ] {
        let mut ct = ConnTrack::<BackendId>::with_capacity_and_slots(n, min_slots, tmo);
        // Inserts of distinct flows into an empty table, in rounds of 10k (payload: a Maglev
        // pick), then the load balancer's new-flow path: lookup miss, pick, insert.
        let chunk = if n % 10_000 == 0 { 10_000 } else { n };
        let rounds = n / chunk;
        let reps = (1 << 20) / n + 1;
        let mut ins = Vec::new();
        let mut newf = Vec::new();
        for _ in 0..reps {
            ct.clear();
            ins.push(median_ns(rounds, chunk, |r| {
                for i in (r * chunk) as u64..((r + 1) * chunk) as u64 {
                    let k = flow(i);
                    let b = maglev.lookup(k.hash(HashMode::FiveTuple)).unwrap();
                    let _ = ct.insert(&k, 0, b);
                }
            }));
            ct.clear();
            newf.push(median_ns(rounds, chunk, |r| {
                for i in (r * chunk) as u64..((r + 1) * chunk) as u64 {
                    let k = flow(i);
                    let h = ConnTrack::<BackendId>::hash(&k);
                    if ct.lookup_hashed(&k, h, 0).is_none() {
                        let b = maglev.lookup(k.hash(HashMode::FiveTuple)).unwrap();
                        let _ = ct.insert_hashed(&k, h, 0, b);
                    }
                }
            }));
        }
        ins.sort_by(f64::total_cmp);
        newf.sort_by(f64::total_cmp);
        let (ins_ns, new_ns) = (ins[ins.len() / 2], newf[newf.len() / 2]);
        assert_eq!(ct.len(), n);
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ n as u64);
        let mut batch = [FlowKey::default(); BATCH];
        let mut out: [Option<(Handle, Direction)>; BATCH] = [None; BATCH];
        let mut sum = 0u64;
        // Random existing flows, every other one seen from the reply side.
        let fill = |rng: &mut Rng, batch: &mut [FlowKey; BATCH]| {
            for (j, k) in batch.iter_mut().enumerate() {
                let f = flow(rng.next() % n as u64);
                *k = if j % 2 == 0 { f } else { f.reversed() };
            }
        };
        let gen_ns = median_ns(64, ROUND, |_| {
            for _ in 0..ROUND / BATCH {
                fill(&mut rng, &mut batch);
                sum += batch[7].src_port as u64;
            }
        });
        // LB per-packet work on an established flow: batch lookup + read the backend.
        let batch_ns = median_ns(256, ROUND, |r| {
            for _ in 0..ROUND / BATCH {
                fill(&mut rng, &mut batch);
                let hits = ct.lookup_batch(&batch, 1 + r as u64, &mut out);
                debug_assert_eq!(hits, BATCH);
                for o in &out {
                    let (h, _) = o.unwrap();
                    sum += ct.payload(h).unwrap().0 as u64;
                }
            }
        }) - gen_ns;
        let single_ns = median_ns(256, ROUND, |r| {
            for _ in 0..ROUND / BATCH {
                fill(&mut rng, &mut batch);
                for k in &batch {
                    sum += ct.lookup(k, 1 + r as u64).map_or(0, |x| x.2 .0 as u64);
                }
            }
        }) - gen_ns;
        std::hint::black_box(sum);
        eprintln!(
            "conntrack {n:7} entries, {:4} MiB: batch-{BATCH} hit {batch_ns:5.1} ns = {:3.0} cycles | single hit {single_ns:5.1} ns = {:3.0} cycles \
             | insert {:4.1} M/s | new flow (miss+maglev+insert) {new_ns:5.1} ns | AnonHugePages {} kB",
            ct.memory_bytes() >> 20,
            batch_ns * ghz,
            single_ns * ghz,
            1e3 / ins_ns,
            anon_huge_kb(),
        );
    }
}
