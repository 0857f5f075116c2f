//! `show conntrack` sampling ([`pipeline::ct_sample`]) through built graphs: `parse -> lb ->
//! forward` and `parse -> acl (stateful) -> forward` fed with known flows. A sample returns
//! exactly those connections with their 5-tuples, states, ages, idle times, packet counts,
//! services, backends and rule generations; filters select exactly the matching ones;
//! `limit` truncates and says so; a graph that runs no vectors answers through its idle
//! hook; a request while vectors flow is answered within a bounded number of vectors and
//! changes no packet's fate.

mod lb_common;

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use arrayvec::ArrayVec;
use lb_common::*;
use pipeline::acl::{HubRegistry, LinearClassifier};
use pipeline::ct_sample::SAMPLE_SLOTS_PER_VECTOR;
use pipeline::lb::{self, LbClock};
use pipeline::{
    render_conntrack, CtEntryView, CtQuery, CtSample, CtSampler, Graph, GraphSpec, PortInfo,
    Registry, TestBuf,
};

static HUBS: HubRegistry<LinearClassifier> = HubRegistry::new();

/// Connection-table capacity of the `lb` node: 131,072 slots, swept in 32 steps.
const CAPACITY: usize = 65_536;
const STEPS: usize = 2 * CAPACITY / SAMPLE_SLOTS_PER_VECTOR;

/// Ticks per second of the manual clock.
const HZ: u64 = 1000;

const LB_SPEC: &str = r#"
[[nodes]]
name = "parse"
kind = "parse"
[[nodes]]
name = "lb"
kind = "lb"
[nodes.params]
conntrack = { capacity = 65536 }
[[nodes.params.services]]
name = "web"
vip = "192.0.2.10"
protocol = "tcp"
port = 80
backends = [{ address = "10.0.0.1", port = 8080 }, { address = "10.0.0.2", port = 8080 }]
[[nodes.params.services]]
name = "dns"
vip = "192.0.2.53"
protocol = "udp"
port = 53
backends = [{ address = "10.0.1.1", port = 5353 }]
[[nodes]]
name = "fwd"
kind = "forward"
params = { mode = "cross-connect", pairs = [["p0", "p1"]] }
[[nodes]]
name = "rst"
kind = "forward"
params = { mode = "by-metadata" }
[[edges]]
from = "parse"
to = "lb"
[[edges]]
from = "lb"
to = "fwd"
[[edges]]
from = "lb"
output = "reset"
to = "rst"
"#;

fn ports() -> [PortInfo; 2] {
    [PortInfo::new(0, "p0", "a"), PortInfo::new(1, "p1", "b")]
}

/// The `lb` graph on a manual clock of [`HZ`], and the clock's handle.
fn lb_graph() -> (Graph<TestBuf>, Arc<AtomicU64>) {
    let (clock, now) = LbClock::manual(HZ);
    let mut r = Registry::with_builtins();
    lb::register_with(&mut r, "lb", clock).unwrap();
    let spec = GraphSpec::from_toml(LB_SPEC).expect("spec parses");
    (Graph::build(&spec, &r, &ports()).unwrap(), now)
}

/// One burst of `frames` in on `port`; every packet that left, in order, with its port.
fn run(g: &mut Graph<TestBuf>, port: u16, frames: &[Vec<u8>]) -> Vec<(u16, Vec<u8>)> {
    let mut tx = g.new_tx_vectors();
    let mut rx: ArrayVec<TestBuf, 64> = ArrayVec::new();
    for f in frames {
        rx.push(TestBuf::new(f.clone(), port));
    }
    g.process(&mut rx, &mut tx);
    let mut out: Vec<(u16, Vec<u8>)> = tx.pkts_mut(0).drain(..).map(|b| (0, b.bytes)).collect();
    out.extend(tx.pkts_mut(1).drain(..).map(|b| (1, b.bytes)));
    out
}

/// The graph's only sampler.
fn sampler(g: &Graph<TestBuf>, node: &str) -> CtSampler {
    let all = g.ct_samplers();
    let names: Vec<&str> = all.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, [node]);
    all[0].1.clone()
}

/// Asks for `q` and runs the idle hook until the sample comes: the sample and the idle
/// calls it took.
fn sample_idle(g: &mut Graph<TestBuf>, s: &CtSampler, q: CtQuery) -> (CtSample, usize) {
    s.request(q);
    for calls in 1..=10 * STEPS {
        g.idle();
        if let Some(sample) = s.poll() {
            return (sample, calls);
        }
    }
    panic!("no sample after {} idle calls", 10 * STEPS);
}

fn query(words: &[&str]) -> CtQuery {
    CtQuery::parse(words).unwrap()
}

const CLIENT: &str = "198.51.100";

fn client(i: u16) -> String {
    format!("{CLIENT}.{i}")
}

/// The known connections: TCP clients 1..=6 to the web VIP (1..=3 answered by their
/// backend at 2 s, so established; 4..=6 only SYN at 0 s), UDP clients 1..=2 to the DNS
/// VIP at 0 s. Returns the graph at 5 s and each connection's backend, from the packets
/// the node sent (keyed by client address and port).
fn lb_with_flows() -> (Graph<TestBuf>, BTreeMap<(IpAddr, u16), SocketAddr>) {
    let (mut g, now) = lb_graph();
    let mut first = Vec::new();
    for i in 1..=6 {
        first.push(build(&Spec::tcp(
            &client(i),
            40_000 + i,
            "192.0.2.10",
            80,
            SYN,
        )));
    }
    for i in 1..=2 {
        first.push(build(&Spec::udp(&client(i), 5000 + i, "192.0.2.53", 53)));
    }
    let out = run(&mut g, 0, &first);
    assert_eq!(out.len(), 8);
    let mut backends = BTreeMap::new();
    for (_, f) in &out {
        let p = parse(f);
        backends.insert((p.src, p.sport), SocketAddr::new(p.dst, p.dport));
    }
    now.store(2 * HZ, Ordering::Relaxed);
    let replies: Vec<Vec<u8>> = (1..=3)
        .map(|i| {
            let b = backends[&(client(i).parse().unwrap(), 40_000 + i)];
            build(&Spec::tcp(
                &b.ip().to_string(),
                b.port(),
                &client(i),
                40_000 + i,
                SYN | ACK,
            ))
        })
        .collect();
    let out = run(&mut g, 1, &replies);
    assert!(out
        .iter()
        .all(|(_, f)| parse(f).src.to_string() == "192.0.2.10"));
    now.store(5 * HZ, Ordering::Relaxed);
    (g, backends)
}

/// The entries keyed by their originator's address and port.
fn by_client(s: &CtSample) -> BTreeMap<(IpAddr, u16), CtEntryView> {
    let m: BTreeMap<_, _> = s
        .entries
        .iter()
        .map(|e| ((e.src, e.src_port), e.clone()))
        .collect();
    assert_eq!(m.len(), s.entries.len(), "no connection twice");
    m
}

#[test]
fn an_idle_lb_graph_answers_with_exactly_its_connections() {
    let (mut g, backends) = lb_with_flows();
    let s = sampler(&g, "lb");
    let before = g.snapshot();
    // Nothing asked: the idle hook does nothing.
    g.idle();
    assert!(s.poll().is_none());
    let (sample, calls) = sample_idle(&mut g, &s, CtQuery::default());
    assert_eq!(
        calls, STEPS,
        "one idle call per {SAMPLE_SLOTS_PER_VECTOR} slots"
    );
    let after = g.snapshot();
    assert_eq!(
        (after.bursts, after.rx_packets, after.nodes[1].calls),
        (before.bursts, before.rx_packets, before.nodes[1].calls),
        "the idle hook runs no packets"
    );
    assert_eq!(
        (
            sample.node.as_str(),
            sample.total,
            sample.scanned,
            sample.truncated
        ),
        ("lb", 8, 2 * CAPACITY, false)
    );
    let got = by_client(&sample);
    assert_eq!(got.len(), 8);
    for i in 1..=6u16 {
        let c: IpAddr = client(i).parse().unwrap();
        let e = &got[&(c, 40_000 + i)];
        let (state, idle, left) = if i <= 3 {
            ("established", 3, 86_400 - 3)
        } else {
            ("syn-seen", 5, 120 - 5)
        };
        assert_eq!(
            (e.protocol.as_str(), e.dst, e.dst_port),
            ("tcp", "192.0.2.10".parse().unwrap(), 80)
        );
        assert_eq!(
            (e.state.as_str(), e.idle_secs, e.expires_in_secs),
            (state, idle, left)
        );
        // Created at 0 s by the SYN; clients 1..=3 got their SYN-ACK through the node.
        let packets = if i <= 3 { 2 } else { 1 };
        assert_eq!((e.age_secs, e.packets), (5, packets));
        assert_eq!(e.service.as_deref(), Some("web"));
        assert_eq!(e.backend, Some(backends[&(c, 40_000 + i)]));
        assert_eq!(e.acl_generation, None);
    }
    for i in 1..=2u16 {
        let c: IpAddr = client(i).parse().unwrap();
        let e = &got[&(c, 5000 + i)];
        assert_eq!(
            (
                e.protocol.as_str(),
                e.dst.to_string(),
                e.dst_port,
                e.state.as_str()
            ),
            ("udp", "192.0.2.53".to_string(), 53, "udp")
        );
        assert_eq!((e.idle_secs, e.expires_in_secs), (5, 595));
        assert_eq!((e.age_secs, e.packets), (5, 1));
        assert_eq!(e.service.as_deref(), Some("dns"));
        assert_eq!(e.backend, Some("10.0.1.1:5353".parse().unwrap()));
    }
    // The table as `show conntrack` prints it: a header, the column names, one line each.
    let text = render_conntrack(&[sample]);
    assert_eq!(text.lines().count(), 2 + 8, "{text}");
    let b1 = backends[&(client(1).parse().unwrap(), 40_001)];
    let line = text
        .lines()
        .find(|l| l.contains(&format!("{}:40001 ", client(1))))
        .unwrap();
    let cols: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(
        cols,
        [
            "tcp",
            "198.51.100.1:40001",
            "192.0.2.10:80",
            "established",
            "5",
            "3",
            "86397",
            "2",
            "web",
            &b1.to_string()
        ]
    );
    // Asked again, answered again (a sample is taken once).
    assert!(s.poll().is_none());
    let (again, _) = sample_idle(&mut g, &s, CtQuery::default());
    assert_eq!(by_client(&again), got);
}

#[test]
fn filters_select_exactly_the_matching_connections() {
    let (mut g, backends) = lb_with_flows();
    let s = sampler(&g, "lb");
    let on_b1: Vec<u16> = (1..=6)
        .filter(|&i| {
            backends[&(client(i).parse().unwrap(), 40_000 + i)]
                .ip()
                .to_string()
                == "10.0.0.1"
        })
        .map(|i| 40_000 + i)
        .collect();
    let b1 = ["dst", "10.0.0.1"];
    let b1_src = ["src", "10.0.0.1", "sport", "8080"];
    let cases: Vec<(Vec<&str>, Vec<u16>)> = vec![
        (
            vec![],
            vec![40001, 40002, 40003, 40004, 40005, 40006, 5001, 5002],
        ),
        // Clients .0 to .3: TCP 1-3 and both UDP flows.
        (
            vec!["src", "198.51.100.0/30"],
            vec![40001, 40002, 40003, 5001, 5002],
        ),
        (vec!["proto", "udp"], vec![5001, 5002]),
        (vec!["proto", "17", "sport", "5002"], vec![5002]),
        // The VIP's port matches as destination, and as source (the reply direction).
        (
            vec!["dport", "80"],
            vec![40001, 40002, 40003, 40004, 40005, 40006],
        ),
        (
            vec!["sport", "80", "proto", "tcp"],
            vec![40001, 40002, 40003, 40004, 40005, 40006],
        ),
        (vec!["dst", "192.0.2.53", "dport", "53"], vec![5001, 5002]),
        (vec!["src", "198.51.100.4", "sport", "40004"], vec![40004]),
        // Every field of one direction must match.
        (vec!["src", "198.51.100.4", "sport", "40005"], vec![]),
        (vec!["dst", "198.51.100.4", "dport", "40004"], vec![40004]),
        // The translated tuple: to the backend, and its replies from it.
        (b1.to_vec(), on_b1.clone()),
        (b1_src.to_vec(), on_b1.clone()),
        (vec!["dst", "10.0.1.1", "dport", "5353"], vec![5001, 5002]),
        (vec!["dst", "2001:db8::/32"], vec![]),
    ];
    assert!(!on_b1.is_empty() && on_b1.len() < 6, "both backends in use");
    for (words, want) in cases {
        let (sample, _) = sample_idle(&mut g, &s, query(&words));
        let mut got: Vec<u16> = sample.entries.iter().map(|e| e.src_port).collect();
        got.sort_unstable();
        let mut want = want;
        want.sort_unstable();
        assert_eq!(got, want, "filter {words:?}");
        assert!(!sample.truncated);
        assert_eq!(sample.total, 8);
    }
}

#[test]
fn limit_truncates_and_says_so() {
    let (mut g, _) = lb_with_flows();
    let s = sampler(&g, "lb");
    for (limit, shown, truncated) in [
        (3, 3, true),
        (7, 7, true),
        (8, 8, false),
        (100, 8, false),
        (0, 0, true),
    ] {
        let (sample, calls) = sample_idle(&mut g, &s, query(&["--limit", &limit.to_string()]));
        assert_eq!(
            (sample.entries.len(), sample.truncated),
            (shown, truncated),
            "limit {limit}"
        );
        assert!(calls <= STEPS);
        assert_eq!(sample.total, 8);
    }
    let (sample, _) = sample_idle(&mut g, &s, query(&["--limit", "1", "proto", "udp"]));
    assert_eq!((sample.entries.len(), sample.truncated), (1, true));
    assert_eq!(sample.entries[0].protocol, "udp");
}

/// Frames of the known flows' further packets, in bursts: client ACKs, backend replies and
/// new clients' SYNs (port 0 for the client side, 1 for the backends).
fn traffic(
    backends: &BTreeMap<(IpAddr, u16), SocketAddr>,
    burst: usize,
) -> Vec<(u16, Vec<Vec<u8>>)> {
    let mut out = Vec::new();
    for b in 0..burst {
        let mut to_vip = Vec::new();
        for k in 0..24u16 {
            let i = 1 + (k % 6);
            to_vip.push(build(&Spec::tcp(
                &client(i),
                40_000 + i,
                "192.0.2.10",
                80,
                ACK,
            )));
        }
        // Eight new connections per burst.
        for k in 0..8u16 {
            let n = (b as u16) * 8 + k;
            to_vip.push(build(&Spec::tcp(
                &format!("203.0.113.{}", n % 250 + 1),
                10_000 + n,
                "192.0.2.10",
                80,
                SYN,
            )));
        }
        out.push((0, to_vip));
        let from_backends = backends
            .iter()
            .filter(|((_, p), _)| *p > 40_000)
            .map(|((c, p), be)| {
                build(&Spec::tcp(
                    &be.ip().to_string(),
                    be.port(),
                    &c.to_string(),
                    *p,
                    ACK,
                ))
            })
            .collect();
        out.push((1, from_backends));
    }
    out
}

#[test]
fn a_request_under_traffic_is_answered_within_bounded_vectors_and_changes_no_verdict() {
    // Two identical graphs get the same packets; only the first is asked for a sample.
    let (mut a, backends) = lb_with_flows();
    let (mut b, backends_b) = lb_with_flows();
    assert_eq!(backends, backends_b, "Maglev is deterministic");
    let s = sampler(&a, "lb");
    s.request(CtQuery::default());
    let mut answered = None;
    // The graph serves the sample one step per burst.
    for (vectors, (port, frames)) in (1..).zip(traffic(&backends, 40)) {
        let out_a = run(&mut a, port, &frames);
        let out_b = run(&mut b, port, &frames);
        assert_eq!(out_a, out_b, "every packet's fate and bytes unchanged");
        if answered.is_none() {
            answered = s.poll().map(|x| (x, vectors));
        }
    }
    let (sample, at) = answered.expect("answered while traffic flows");
    assert!(at <= STEPS, "answered after {at} vectors");
    let counts = |g: &Graph<TestBuf>| {
        let s = g.snapshot();
        let n: Vec<_> = s
            .nodes
            .into_iter()
            .map(|n| (n.name, n.packets, n.drops, n.counters))
            .collect();
        (s.rx_packets, s.tx_packets, s.dropped, n)
    };
    assert_eq!(counts(&a), counts(&b), "same counters");
    // The connections that existed before the request are all there (nothing was deleted
    // during the sweep, so none moved); the others are connections the traffic created.
    let got = by_client(&sample);
    for (c, p) in backends.keys() {
        assert!(got.contains_key(&(*c, *p)), "{c}:{p} missing");
    }
    for ((c, _), e) in &got {
        assert!(c.to_string().starts_with(CLIENT) || c.to_string().starts_with("203.0.113."));
        assert_eq!(
            e.state == "established",
            c.to_string().starts_with(CLIENT) && e.protocol == "tcp" && e.src_port <= 40_003
        );
    }
    assert!(sample.total >= 8 && sample.total <= 8 + 40 * 8);
    // No request: nothing more is published.
    assert!(s.poll().is_none());
}

const ACL_SPEC: &str = r#"
[[nodes]]
name = "parse"
kind = "parse"
[[nodes]]
name = "acl-ct"
kind = "acl"
[nodes.params]
stateful = 1024
[nodes.params.acl]
default = "drop"
[[nodes.params.acl.rules]]
direction = "from-lport"
priority = 100
match = "ip4 && ip4.src == 10.0.2.0/24 && tcp.dst == 5432"
action = "allow-related"
[[nodes]]
name = "fwd"
kind = "forward"
params = { mode = "cross-connect", pairs = [["p0", "p1"]] }
[[edges]]
from = "parse"
to = "acl-ct"
[[edges]]
from = "acl-ct"
to = "fwd"
"#;

/// The rate of the clock the `acl` node reads ([`pipeline::cycles::now`]), measured once.
fn ticks_per_sec() -> u64 {
    static HZ: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *HZ.get_or_init(|| pipeline::cycles::estimate_hz(50))
}

#[test]
fn a_stateful_acl_answers_with_its_connections_and_their_rule_generation() {
    let mut r = Registry::with_builtins();
    pipeline::acl::node::register(&mut r, &HUBS, ticks_per_sec).unwrap();
    let spec = GraphSpec::from_toml(ACL_SPEC).expect("spec parses");
    let mut g = Graph::build(&spec, &r, &ports()).unwrap();
    let s = sampler(&g, "acl-ct");
    let frames: Vec<Vec<u8>> = (1..=3)
        .map(|i| {
            build(&Spec::tcp(
                &format!("10.0.2.{i}"),
                30_000 + i,
                "10.0.3.31",
                5432,
                SYN,
            ))
        })
        .chain([
            // Denied: no entry.
            build(&Spec::tcp("10.0.5.1", 30_009, "10.0.3.31", 5432, SYN)),
            build(&Spec::udp("10.0.2.1", 30_001, "10.0.3.31", 5432)),
        ])
        .collect();
    let out = run(&mut g, 0, &frames);
    assert_eq!(out.len(), 3);
    let reply = build(&Spec::tcp("10.0.3.31", 5432, "10.0.2.2", 30_002, SYN | ACK));
    assert_eq!(run(&mut g, 1, &[reply]).len(), 1, "the reply is related");
    let generation = HUBS.get("acl-ct").unwrap().generation();
    let (sample, calls) = sample_idle(&mut g, &s, CtQuery::default());
    // 2048 slots: one step.
    assert_eq!((calls, sample.scanned, sample.total), (1, 2048, 3));
    let got = by_client(&sample);
    assert_eq!(got.len(), 3);
    for i in 1..=3u16 {
        let e = &got[&(format!("10.0.2.{i}").parse().unwrap(), 30_000 + i)];
        assert_eq!(
            (e.protocol.as_str(), e.dst.to_string(), e.dst_port),
            ("tcp", "10.0.3.31".to_string(), 5432)
        );
        let want = if i == 2 { "established" } else { "syn-seen" };
        assert_eq!(e.state, want);
        assert_eq!((e.service.as_ref(), e.backend), (None, None));
        assert_eq!(e.acl_generation, Some(generation));
        assert!(e.idle_secs <= 1 && e.expires_in_secs <= if i == 2 { 86_400 } else { 120 });
        // The SYN, and for client 2 the SYN-ACK as well (a related reply).
        assert_eq!(e.packets, if i == 2 { 2 } else { 1 });
        assert!(e.age_secs >= e.idle_secs && e.age_secs <= 1);
        assert!(e.expires_in_secs + 1 >= if i == 2 { 86_400 } else { 120 });
    }
    let (sample, _) = sample_idle(&mut g, &s, query(&["src", "10.0.3.31", "dport", "30002"]));
    assert_eq!(sample.entries.len(), 1, "the reply direction matches");
    let text = render_conntrack(&[sample]);
    assert!(text.lines().nth(1).unwrap().ends_with("acl-gen"), "{text}");
    let cols: Vec<String> = text
        .lines()
        .nth(2)
        .unwrap()
        .split_whitespace()
        .map(String::from)
        .collect();
    assert_eq!(cols[8..], ["-", "-", &generation.to_string()], "{text}");
}

#[test]
fn a_request_from_another_thread_is_answered_by_the_idle_worker() {
    // The control thread asks (three times, each waiting for its answer) while the worker
    // thread only runs its idle hook; the doorbell makes every request seen.
    let (mut g, _) = lb_with_flows();
    let s = sampler(&g, "lb");
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let worker = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                g.idle();
                std::thread::yield_now();
            }
            g
        })
    };
    for limit in [8, 2, 5] {
        s.request(query(&["--limit", &limit.to_string()]));
        let sample = loop {
            if let Some(x) = s.poll() {
                break x;
            }
            std::thread::yield_now();
        };
        assert_eq!((sample.entries.len(), sample.truncated), (limit, limit < 8));
    }
    stop.store(true, Ordering::Relaxed);
    let g = worker.join().unwrap();
    // Samplers taken again name the same node and share the same state.
    assert_eq!(g.ct_samplers()[0].1.node(), "lb");
}

#[test]
fn graphs_without_connection_tables_have_no_samplers() {
    let spec = GraphSpec::from_toml(
        r#"
        [[nodes]]
        name = "parse"
        kind = "parse"
        [[nodes]]
        name = "fwd"
        kind = "forward"
        params = { mode = "cross-connect", pairs = [["p0", "p1"]] }
        [[edges]]
        from = "parse"
        to = "fwd"
        "#,
    )
    .unwrap();
    let mut g = Graph::build(&spec, &Registry::with_builtins(), &ports()).unwrap();
    assert!(g.ct_samplers().is_empty());
    g.idle();
    let out = run(
        &mut g,
        0,
        &[build(&Spec::udp("10.0.0.1", 1, "10.0.0.2", 2))],
    );
    assert_eq!(out.len(), 1);
    assert_eq!(render_conntrack(&[]), "No connection tables\n");
}
