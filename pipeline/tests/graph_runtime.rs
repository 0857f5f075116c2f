//! Running graphs on `TestBuf`s: cross-connect counts, drops per reason, branching, tx
//! back-pressure, tracing and the runtime table.

use arrayvec::ArrayVec;
use pipeline::graph::{Decision, KindInfo, Node};
use pipeline::nodes::NodeImpl;
use pipeline::source::{build_frame, IpVersion, L4Proto, SourceSpec};
use pipeline::stats::aggregate;
use pipeline::trace::TraceFilter;
use pipeline::{
    render_runtime_table, render_trace, Frame, Graph, GraphSpec, PortInfo, Registry, TestBuf,
    TraceHandle, TxVectors, Verdict, VECTOR_SIZE,
};
use serde::Deserialize;

fn ports() -> Vec<PortInfo> {
    vec![
        PortInfo::new(0, "fh0", "fronthaul"),
        PortInfo::new(1, "mh0", "midhaul"),
    ]
}

const XC: &str = r#"
[[nodes]]
name = "parse"
kind = "parse"
[[nodes]]
name = "xc"
kind = "forward"
params = { mode = "cross-connect", pairs = [["fh0", "mh0"]] }
[[edges]]
from = "parse"
to = "xc"
"#;

fn graph(text: &str, reg: &Registry<TestBuf>) -> Graph<TestBuf> {
    Graph::build(&GraphSpec::from_toml(text).unwrap(), reg, &ports()).unwrap()
}

fn udp(flow: u32, port: u16) -> TestBuf {
    TestBuf::new(build_frame(&SourceSpec::default(), flow), port)
}

fn tcp6(flow: u32, port: u16) -> TestBuf {
    TestBuf::new(
        build_frame(&SourceSpec::simple(1, L4Proto::Tcp, IpVersion::V6), flow),
        port,
    )
}

fn drain(out: &mut TxVectors<TestBuf>) -> Vec<Vec<TestBuf>> {
    out.iter_mut().map(|(_, v)| v.drain(..).collect()).collect()
}

#[test]
fn cross_connect_moves_every_packet_to_the_peer_port() {
    let mut g = graph(XC, &Registry::with_builtins());
    let mut out = g.new_tx_vectors();
    let (mut a_to_b, mut b_to_a) = (0usize, 0usize);
    let (mut got_on_b, mut got_on_a) = (0usize, 0usize);
    // Bursts of varying sizes and mixes, including one larger than a vector.
    for (burst, size) in [1usize, 7, 256, 200, 0, 33, 255].into_iter().enumerate() {
        let mut input: ArrayVec<TestBuf, 256> = ArrayVec::new();
        for i in 0..size {
            let port = ((i + burst) % 3 == 0) as u16;
            if port == 0 {
                a_to_b += 1;
            } else {
                b_to_a += 1;
            }
            input.push(if i % 2 == 0 {
                udp(i as u32, port)
            } else {
                tcp6(i as u32, port)
            });
        }
        let s = g.process(&mut input, &mut out);
        assert!(input.is_empty());
        assert_eq!((s.rx, s.tx, s.dropped), (size, size, 0));
        let v = drain(&mut out);
        assert!(
            v[0].iter().all(|p| p.port == 1),
            "port 0 only transmits what arrived on port 1"
        );
        assert!(v[1].iter().all(|p| p.port == 0));
        got_on_a += v[0].len();
        got_on_b += v[1].len();
    }
    assert_eq!((got_on_b, got_on_a), (a_to_b, b_to_a));
    let snap = g.snapshot();
    assert_eq!(snap.rx_packets as usize, a_to_b + b_to_a);
    assert_eq!(snap.tx_packets, snap.rx_packets);
    assert_eq!(snap.dropped, 0);
    let parse = snap.node("parse").unwrap();
    assert_eq!(parse.packets, snap.rx_packets);
    assert_eq!(
        (parse.calls, parse.vectors),
        (6, 6),
        "one call per non-empty burst"
    );
}

#[test]
fn packets_keep_their_bytes_and_order() {
    let mut g = graph(XC, &Registry::with_builtins());
    let mut out = g.new_tx_vectors();
    let mut input: ArrayVec<TestBuf, 64> = (0..64).map(|i| udp(i, 0)).collect();
    let expect: Vec<Vec<u8>> = input.iter().map(|p| p.bytes.clone()).collect();
    g.process(&mut input, &mut out);
    let got: Vec<Vec<u8>> = out.pkts_mut(1).iter().map(|p| p.bytes.clone()).collect();
    assert_eq!(got, expect);
}

#[test]
fn drops_are_counted_per_reason() {
    let mut g = graph(XC, &Registry::with_builtins());
    let mut out = g.new_tx_vectors();
    let good = udp(1, 0).bytes;
    let mut bad_ihl = good.clone();
    bad_ihl[14] = 0x43;
    let mut bad_len = good.clone();
    bad_len[16..18].copy_from_slice(&1500u16.to_be_bytes());
    let mut lldp = good.clone();
    lldp[12..14].copy_from_slice(&0x88ccu16.to_be_bytes());
    let cases: Vec<(Vec<u8>, Option<&str>)> = vec![
        (good.clone(), None),
        (good[..10].to_vec(), Some("truncated-ethernet")),
        (good[..30].to_vec(), Some("truncated-ipv4")),
        (bad_ihl, Some("bad-ihl")),
        (bad_len, Some("bad-ipv4-total-length")),
        (lldp, Some("unknown-ethertype")),
    ];
    let mut input: ArrayVec<TestBuf, 256> = ArrayVec::new();
    for round in 0..40 {
        for (i, (bytes, _)) in cases.iter().enumerate() {
            if (round + i) % 2 == 0 {
                input.push(TestBuf::new(bytes.clone(), 0));
            }
        }
    }
    let n = input.len();
    let s = g.process(&mut input, &mut out);
    assert_eq!(s.rx, n);
    let snap = g.snapshot();
    let parse = snap.node("parse").unwrap();
    let per_case = 20; // every case appears in 20 of the 40 rounds
    for (_, reason) in &cases {
        if let Some(r) = reason {
            assert_eq!(parse.drops_for(r), per_case, "{r}");
        }
    }
    assert_eq!(parse.total_drops(), 5 * per_case);
    assert_eq!(out.pkts_mut(1).len() as u64, per_case);
    assert_eq!(snap.dropped + snap.tx_packets, n as u64);
    let table = render_runtime_table(&[snap]);
    assert!(table.contains("drop: bad-ihl"), "{table}");
}

/// A classifier with two outputs: IPv4 to `v4`, everything else to `other`; it also sets
/// `out_port` from a parameter so `forward` can run in by-metadata mode.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SplitParams {
    v4_port: u16,
    other_port: u16,
}

struct Split(SplitParams);

impl Node<TestBuf> for Split {
    fn process(&mut self, f: Frame<'_, TestBuf>) -> Verdict {
        for (m, d) in f.meta.iter_mut().zip(f.decisions.iter_mut()) {
            if m.is_ipv4() {
                m.out_port = self.0.v4_port;
                *d = Decision::Next(0);
            } else {
                m.out_port = self.0.other_port;
                *d = Decision::Next(1);
            }
        }
        Verdict::PerPacket
    }
}

/// Returns a bogus output slot, to check the graph's guard.
struct Bogus;

impl Node<TestBuf> for Bogus {
    fn process(&mut self, f: Frame<'_, TestBuf>) -> Verdict {
        for (i, d) in f.decisions.iter_mut().enumerate() {
            *d = if i % 2 == 0 {
                Decision::Next(9)
            } else {
                Decision::Drop(200)
            };
        }
        Verdict::PerPacket
    }
}

fn registry() -> Registry<TestBuf> {
    let mut r = Registry::with_builtins();
    let info = KindInfo {
        outputs: &["v4", "other"],
        drop_reasons: &[],
        counters: &[],
        transmits: false,
        fills_meta: false,
        description: "split by IP version",
    };
    r.register::<SplitParams, _>("split", info, |p, _| {
        Ok(NodeImpl::Custom(Box::new(Split(p))))
    })
    .unwrap();
    let info = KindInfo {
        outputs: &["next"],
        drop_reasons: &[],
        counters: &[],
        transmits: false,
        fills_meta: false,
        description: "bogus",
    };
    r.register::<pipeline::nodes::NoParams, _>("bogus", info, |_, _| {
        Ok(NodeImpl::Custom(Box::new(Bogus)))
    })
    .unwrap();
    r
}

const SPLIT: &str = r#"
[[nodes]]
name = "parse"
kind = "parse"
[[nodes]]
name = "split"
kind = "split"
params = { v4_port = 1, other_port = 7 }
[[nodes]]
name = "swap"
kind = "macswap"
[[nodes]]
name = "count"
kind = "tap"
[[nodes]]
name = "out"
kind = "forward"
params = { mode = "by-metadata" }
[[edges]]
from = "parse"
to = "split"
[[edges]]
from = "split"
output = "v4"
to = "swap"
[[edges]]
from = "split"
output = "other"
to = "count"
[[edges]]
from = "swap"
to = "count"
[[edges]]
from = "count"
to = "out"
"#;

#[test]
fn branches_join_and_forward_by_metadata() {
    let mut g = graph(SPLIT, &registry());
    assert_eq!(g.node_names().next(), Some("parse"));
    let mut out = g.new_tx_vectors();
    let mut input: ArrayVec<TestBuf, 256> = ArrayVec::new();
    for i in 0..100 {
        input.push(if i % 4 == 0 { tcp6(i, 0) } else { udp(i, 0) });
    }
    let macs_before = input[1].bytes[..12].to_vec();
    g.process(&mut input, &mut out);
    let v = drain(&mut out);
    assert_eq!(v[1].len(), 75, "IPv4 goes to port 1");
    assert_eq!(v[0].len(), 0);
    assert_eq!(
        &v[1][0].bytes[..6],
        &macs_before[6..12],
        "macswap ran on the IPv4 branch"
    );
    let snap = g.snapshot();
    assert_eq!(
        snap.node("out").unwrap().drops_for("unknown-out-port"),
        25,
        "port 7 does not exist"
    );
    let tap = snap.node("count").unwrap();
    assert_eq!(tap.packets, 100, "the join node sees both branches");
    assert_eq!(tap.calls, 1, "and runs once per burst");
    let counters: Vec<(String, u64)> = tap
        .counters
        .iter()
        .map(|c| (c.name.clone(), c.count))
        .collect();
    assert_eq!(counters[1], ("ipv4".to_string(), 75));
    assert_eq!(counters[2], ("ipv6".to_string(), 25));
    assert!(counters[0].1 > 0, "bytes");
}

#[test]
fn agreeing_per_packet_decisions_follow_the_common_output() {
    // All of a burst decided alike (the graph then moves the vector whole): every packet
    // still takes the output its decision names, in order.
    let mut g = graph(SPLIT, &registry());
    let mut out = g.new_tx_vectors();
    let mut input: ArrayVec<TestBuf, 256> = (0..100).map(|i| udp(i, 0)).collect();
    let sent: Vec<Vec<u8>> = input.iter().map(|p| p.bytes[12..].to_vec()).collect();
    g.process(&mut input, &mut out);
    let v = drain(&mut out);
    assert_eq!(v[1].len(), 100, "all IPv4: all to port 1");
    let got: Vec<Vec<u8>> = v[1].iter().map(|p| p.bytes[12..].to_vec()).collect();
    assert_eq!(got, sent, "in order, bytes past the swapped MACs unchanged");
    let mut input: ArrayVec<TestBuf, 256> = (0..60).map(|i| tcp6(i, 0)).collect();
    g.process(&mut input, &mut out);
    let snap = g.snapshot();
    assert_eq!(
        snap.node("swap").unwrap().packets,
        100,
        "IPv6 skipped the v4 branch"
    );
    assert_eq!(
        snap.node("out").unwrap().drops_for("unknown-out-port"),
        60,
        "all IPv6: all to the other output (port 7, which does not exist)"
    );
}

#[test]
fn invalid_decisions_are_dropped_and_counted() {
    let text = XC.replace("kind = \"parse\"", "kind = \"bogus\"");
    let mut g = graph(&text, &registry());
    let mut out = g.new_tx_vectors();
    let mut input: ArrayVec<TestBuf, 10> = (0..10).map(|i| udp(i, 0)).collect();
    let s = g.process(&mut input, &mut out);
    assert_eq!((s.dropped, s.tx), (10, 0));
    assert_eq!(
        g.snapshot()
            .node("parse")
            .unwrap()
            .drops_for("invalid-decision"),
        10
    );
}

#[test]
fn a_full_tx_vector_drops_and_counts() {
    let mut g = graph(XC, &Registry::with_builtins());
    let mut out = g.new_tx_vectors();
    for _ in 0..2 {
        let mut input: ArrayVec<TestBuf, 200> = (0..200).map(|i| udp(i, 0)).collect();
        g.process(&mut input, &mut out);
    }
    // The worker never drained: 256 fit, 144 were dropped.
    assert_eq!(out.pkts_mut(1).len(), VECTOR_SIZE);
    let snap = g.snapshot();
    assert_eq!(snap.node("xc").unwrap().drops_for("vector-full"), 144);
    assert_eq!(snap.tx_packets, 256);
}

#[test]
fn drop_node_drops_everything() {
    let text = r#"
        [[nodes]]
        name = "parse"
        kind = "parse"
        [[nodes]]
        name = "split"
        kind = "split"
        params = { v4_port = 1, other_port = 0 }
        [[nodes]]
        name = "sink"
        kind = "drop"
        [[nodes]]
        name = "xc"
        kind = "forward"
        params = { mode = "by-metadata" }
        [[edges]]
        from = "parse"
        to = "split"
        [[edges]]
        from = "split"
        output = "v4"
        to = "sink"
        [[edges]]
        from = "split"
        output = "other"
        to = "xc"
    "#;
    let mut g = graph(text, &registry());
    let mut out = g.new_tx_vectors();
    let mut input: ArrayVec<TestBuf, 8> = (0..8)
        .map(|i| if i < 5 { udp(i, 1) } else { tcp6(i, 1) })
        .collect();
    let s = g.process(&mut input, &mut out);
    assert_eq!((s.dropped, s.tx), (5, 3));
    assert_eq!(g.snapshot().node("sink").unwrap().drops_for("dropped"), 5);
}

#[test]
fn trace_records_the_first_packets_path() {
    let mut g = graph(XC, &Registry::with_builtins());
    let mut out = g.new_tx_vectors();
    let trace = g.tracer();
    let mut input: ArrayVec<TestBuf, 8> = (0..8).map(|i| udp(i, 0)).collect();
    g.process(&mut input, &mut out);
    assert!(trace.traces().is_empty(), "nothing traced while disarmed");
    trace.arm(3);
    let mut bad = udp(9, 1);
    bad.bytes[14] = 0x43;
    let mut input: ArrayVec<TestBuf, 8> = ArrayVec::new();
    input.push(udp(0, 0));
    input.push(bad);
    input.push(tcp6(2, 1));
    input.push(udp(3, 0));
    g.process(&mut input, &mut out);
    assert_eq!(trace.pending(), 0);
    let t = trace.take();
    assert_eq!(t.len(), 3);
    assert_eq!(t[0].steps.len(), 2);
    assert_eq!(t[0].steps[0].node, "parse");
    assert_eq!(
        t[0].steps[0].summary,
        "IPv4 10.0.0.1:1024 -> 10.1.0.1:80 UDP len 60"
    );
    assert_eq!(t[0].steps[0].outcome, "next xc");
    assert_eq!(t[0].steps[1].outcome, "tx port 1 (mh0)");
    assert_eq!(t[1].steps.len(), 1);
    assert_eq!(t[1].steps[0].outcome, "drop: bad-ihl");
    assert_eq!(t[2].in_port, 1);
    assert!(
        t[2].steps[0]
            .summary
            .starts_with("IPv6 [2001:db8::3]:1026 -> [2001:db8:1::1]:80 TCP [P.] len 74"),
        "{}",
        t[2].steps[0].summary
    );
    assert_eq!(t[2].steps[1].outcome, "tx port 0 (fh0)");
    let text = render_trace(&t);
    assert!(
        text.contains("Packet 1 (in port 0)") && text.contains("-> drop: bad-ihl"),
        "{text}"
    );
    // Disarmed again: the next burst is not traced.
    let mut input: ArrayVec<TestBuf, 8> = (0..8).map(|i| udp(i, 0)).collect();
    g.process(&mut input, &mut out);
    assert!(trace.take().is_empty());
}

#[test]
fn a_shared_filtered_trace_takes_exactly_n_matching_packets_across_graphs() {
    let mut g1 = graph(XC, &Registry::with_builtins());
    let mut g2 = graph(XC, &Registry::with_builtins());
    let shared = TraceHandle::default();
    g1.share_tracer(shared.clone(), "lcore 1");
    g2.share_tracer(shared.clone(), "lcore 2");
    // TCP over IPv6 from port 1 only: two such packets per burst, among UDP from port 0.
    let filter = TraceFilter {
        in_port: Some(1),
        protocol: Some(6),
        dst_port: Some(80),
        ..TraceFilter::default()
    };
    shared.arm_filtered(3, filter);
    for which in [1, 2, 1] {
        let g = if which == 1 { &mut g1 } else { &mut g2 };
        let mut out = g.new_tx_vectors();
        let mut input: ArrayVec<TestBuf, 8> = (0..8)
            .map(|i| if i % 4 == 3 { tcp6(i, 1) } else { udp(i, 0) })
            .collect();
        g.process(&mut input, &mut out);
    }
    assert_eq!(shared.pending(), 0);
    let t = shared.take();
    assert_eq!(t.len(), 3, "exactly the armed count, over both graphs");
    for p in &t {
        assert_eq!(p.in_port, 1);
        assert!(p.steps[0].summary.contains("TCP"), "{}", p.steps[0].summary);
    }
    let workers: Vec<&str> = t.iter().map(|p| p.worker.as_str()).collect();
    assert_eq!(workers, ["lcore 1", "lcore 1", "lcore 2"]);
    let seqs: Vec<u64> = t.iter().map(|p| p.seq).collect();
    assert_eq!(seqs, [1, 2, 3], "one sequence over the shared handle");
    assert!(render_trace(&t).contains("Packet 3 (in port 1, lcore 2)"));
    // A filter nothing matches traces nothing and keeps its budget.
    shared.arm_filtered(
        2,
        TraceFilter {
            src: Some("192.0.2.0/24".parse().unwrap()),
            ..TraceFilter::default()
        },
    );
    let mut out = g1.new_tx_vectors();
    let mut input: ArrayVec<TestBuf, 8> = (0..8).map(|i| udp(i, 0)).collect();
    g1.process(&mut input, &mut out);
    assert!(shared.take().is_empty());
    assert_eq!(shared.pending(), 2);
}

#[test]
fn trace_follows_packets_when_parse_is_not_the_input() {
    let text = r#"
        [[nodes]]
        name = "count"
        kind = "tap"
        [[nodes]]
        name = "parse"
        kind = "parse"
        [[nodes]]
        name = "xc"
        kind = "forward"
        params = { mode = "cross-connect", pairs = [["fh0", "mh0"]] }
        [[edges]]
        from = "count"
        to = "parse"
        [[edges]]
        from = "parse"
        to = "xc"
    "#;
    let mut g = graph(text, &Registry::with_builtins());
    let mut out = g.new_tx_vectors();
    g.tracer().arm(2);
    let mut input: ArrayVec<TestBuf, 4> = (0..4).map(|i| udp(i, 0)).collect();
    g.process(&mut input, &mut out);
    let t = g.tracer().take();
    assert_eq!(t.len(), 2);
    let nodes: Vec<&str> = t[1].steps.iter().map(|s| s.node.as_str()).collect();
    assert_eq!(nodes, ["count", "parse", "xc"]);
}

#[test]
fn runtime_table_and_aggregation() {
    let mut g1 = graph(XC, &Registry::with_builtins());
    let mut g2 = graph(XC, &Registry::with_builtins());
    for (g, n) in [(&mut g1, 10u32), (&mut g2, 30)] {
        let mut out = g.new_tx_vectors();
        let mut input: ArrayVec<TestBuf, 64> = (0..n).map(|i| udp(i, 0)).collect();
        g.process(&mut input, &mut out);
    }
    let s1 = g1.stats().snapshot_as("worker 0");
    let s2 = g2.stats().snapshot_as("worker 1");
    let total = aggregate(&[s1.clone(), s2.clone()]);
    assert_eq!(total.node("parse").unwrap().packets, 40);
    assert_eq!(total.node("parse").unwrap().calls, 2);
    assert_eq!(total.node("parse").unwrap().packets_per_vector(), 20.0);
    let table = render_runtime_table(&[s1.clone(), s2]);
    for col in [
        "Name",
        "Calls",
        "Vectors",
        "Packets",
        "Drops",
        "Clocks/pkt",
        "Vectors/Call",
        "parse",
        "xc",
        "worker 1",
    ] {
        assert!(table.contains(col), "missing {col}:\n{table}");
    }
    let json = serde_json_like(&s1);
    assert!(json.contains("\"parse\""));
    assert_eq!(s1.delta(&s1).node("parse").unwrap().packets, 0);
}

/// Serialises with the TOML serializer (serde_json is not a dependency of the crate).
fn serde_json_like(s: &pipeline::RuntimeSnapshot) -> String {
    toml::to_string(s).unwrap()
}

#[test]
fn stats_are_readable_from_another_thread() {
    let mut g = graph(XC, &Registry::with_builtins());
    let handle = g.stats();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut last = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let p = handle.snapshot().rx_packets;
                assert!(p >= last, "counters only grow");
                last = p;
                std::thread::yield_now();
            }
            handle.snapshot().rx_packets
        })
    };
    let mut out = g.new_tx_vectors();
    for _ in 0..200 {
        let mut input: ArrayVec<TestBuf, 32> = (0..32).map(|i| udp(i, 0)).collect();
        g.process(&mut input, &mut out);
        out.clear();
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    assert_eq!(reader.join().unwrap(), 200 * 32);
}

#[test]
fn graph_is_send() {
    fn send<T: Send>() {}
    send::<Graph<TestBuf>>();
    send::<pipeline::StatsHandle>();
    send::<pipeline::TraceHandle>();
}
