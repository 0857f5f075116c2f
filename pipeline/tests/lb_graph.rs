//! The `lb` kind through the registry and a built graph: parameters (inline and from a
//! file), refusals naming the key, the graph's drop accounting, and hitless table swaps
//! published by a control thread while the worker runs.

mod lb_common;

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use arrayvec::ArrayVec;
use lb_common::*;
use pipeline::lb::{self, BackendConfig, LbControl};
use pipeline::{Graph, GraphSpec, PortInfo, Registry, TestBuf};

fn spec(params: &str) -> GraphSpec {
    GraphSpec::from_toml(&format!(
        r#"
        [[nodes]]
        name = "parse"
        kind = "parse"
        [[nodes]]
        name = "lb"
        kind = "lb"
        {params}
        [[nodes]]
        name = "fwd"
        kind = "forward"
        params = {{ mode = "cross-connect", pairs = [["p0", "p1"]] }}
        [[nodes]]
        name = "rst"
        kind = "forward"
        params = {{ mode = "by-metadata" }}
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
        "#
    ))
    .expect("spec parses")
}

/// The lb node's parameters: control `control`, the `extra` lines, and one TCP service
/// `web` (192.0.2.10:80) with one backend, 10.0.0.1:8080.
fn web_params(control: &str, extra: &str) -> String {
    format!(
        r#"
        [nodes.params]
        control = "{control}"
        {extra}
        [[nodes.params.services]]
        name = "web"
        vip = "192.0.2.10"
        protocol = "tcp"
        port = 80
        backends = [{{ address = "10.0.0.1", port = 8080 }}]
        "#
    )
}

fn registry() -> Registry<TestBuf> {
    let mut r = Registry::with_builtins();
    lb::register(&mut r).unwrap();
    r
}

fn ports() -> [PortInfo; 2] {
    [PortInfo::new(0, "p0", "a"), PortInfo::new(1, "p1", "b")]
}

/// Runs frames through the graph; returns what left on port 1 and port 0.
fn run(g: &mut Graph<TestBuf>, frames: &[Vec<u8>]) -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
    let mut tx = g.new_tx_vectors();
    let (mut p1, mut p0) = (Vec::new(), Vec::new());
    for chunk in frames.chunks(32) {
        let mut rx: ArrayVec<TestBuf, 32> = ArrayVec::new();
        for f in chunk {
            rx.push(TestBuf::new(f.clone(), 0));
        }
        g.process(&mut rx, &mut tx);
        p0.extend(tx.pkts_mut(0).drain(..).map(|b| b.bytes));
        p1.extend(tx.pkts_mut(1).drain(..).map(|b| b.bytes));
    }
    (p1, p0)
}

#[test]
fn configured_through_the_registry_inline_and_from_a_file() {
    let inline = web_params("lb-graph-inline", "down_backend = \"reset\"");
    let mut g = Graph::build(&spec(&inline), &registry(), &ports()).unwrap();
    let syn = build(&Spec::tcp("198.51.100.1", 1000, "192.0.2.10", 80, SYN));
    let other = build(&Spec::udp("198.51.100.1", 1000, "192.0.2.99", 80));
    let (out, back) = run(&mut g, &[syn, other.clone()]);
    assert_eq!(out.len(), 2);
    assert!(back.is_empty());
    assert_eq!(parse(&out[0]).dst, "10.0.0.1".parse::<IpAddr>().unwrap());
    assert_eq!(out[1], other);
    // The named control is how the control plane reaches the running nodes.
    let ctl = LbControl::named("lb-graph-inline").unwrap();
    ctl.set_backend_state("web", "10.0.0.1:8080", lb::BackendState::Down)
        .unwrap();
    let ack = build(&Spec::tcp("198.51.100.1", 1000, "192.0.2.10", 80, ACK));
    let (out, back) = run(&mut g, &[ack]);
    assert!(out.is_empty());
    assert_eq!(back.len(), 1, "the RST leaves by the input port");
    assert_eq!(parse(&back[0]).flags, RST);
    let snap = g.snapshot();
    let lbn = snap.nodes.iter().find(|n| n.name == "lb").unwrap();
    let get = |name: &str| lbn.counters.iter().find(|c| c.name == name).unwrap().count;
    assert_eq!(
        (get("new-connections"), get("resets"), get("table-swaps")),
        (1, 1, 1)
    );

    // The example services file, by absolute path.
    let file = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/lb-services.toml");
    let from_file = format!("params = {{ file = {:?} }}", file.display().to_string());
    let mut g = Graph::build(&spec(&from_file), &registry(), &ports()).unwrap();
    let (out, _) = run(
        &mut g,
        &[build(&Spec::udp(
            "2001:db8:ffff::1",
            5000,
            "2001:db8::53",
            53,
        ))],
    );
    let p = parse(&out[0]);
    assert!(p.valid());
    assert!(["2001:db8:1::1", "2001:db8:1::2"].contains(&p.dst.to_string().as_str()));
}

/// A traced packet's `lb` step names the service, the backend and how the backend was
/// found: a new connection's Maglev pick, the connection table, a reply's backend
/// endpoint, a backend gone down; a packet for no service says so.
#[test]
fn trace_names_the_service_and_backend() {
    let params = web_params("lb-graph-trace", "");
    let mut g = Graph::build(&spec(&params), &registry(), &ports()).unwrap();
    let tracer = g.tracer();
    let lb_step = |t: &pipeline::trace::PacketTrace| {
        t.steps.iter().find(|s| s.node == "lb").cloned().unwrap()
    };
    let steps = |g: &mut Graph<TestBuf>, frames: &[Vec<u8>]| {
        tracer.arm(frames.len() as u32);
        run(g, frames);
        let t = tracer.take();
        assert_eq!(t.len(), frames.len());
        t.iter().map(lb_step).collect::<Vec<_>>()
    };
    let syn = build(&Spec::tcp("198.51.100.1", 1000, "192.0.2.10", 80, SYN));
    let ack = build(&Spec::tcp("198.51.100.1", 1000, "192.0.2.10", 80, ACK));
    let reply = build(&Spec::tcp(
        "10.0.0.1",
        8080,
        "198.51.100.1",
        1000,
        SYN | ACK,
    ));
    let other = build(&Spec::udp("198.51.100.1", 1000, "192.0.2.99", 80));
    // (The reply in a later vector: a vector's lookups are made before its inserts.)
    let first = steps(&mut g, &[syn, other]);
    let second = steps(&mut g, &[reply, ack.clone()]);
    let s = [&first[0], &second[0], &second[1], &first[1]];
    assert_eq!(
        s[0].decided_by.as_deref(),
        Some("new connection to service web (VIP 192.0.2.10:80): backend 10.0.0.1:8080, the Maglev pick")
    );
    assert_eq!(
        s[1].decided_by.as_deref(),
        Some("reply of a tracked connection from backend 10.0.0.1:8080 of service web: source back to VIP 192.0.2.10:80")
    );
    assert_eq!(
        s[2].decided_by.as_deref(),
        Some("established connection (conntrack) of service web (VIP 192.0.2.10:80): backend 10.0.0.1:8080")
    );
    for step in &s[..3] {
        assert_eq!(step.service.as_deref(), Some("web"), "{step:?}");
        assert_eq!(step.rule, None);
    }
    assert_eq!(s[3].service, None);
    assert_eq!(
        s[3].decided_by.as_deref(),
        Some("not to a service VIP nor from a backend (unchanged)")
    );
    // The backend goes down: the connection's next packet is dropped, and the trace says why.
    LbControl::named("lb-graph-trace")
        .unwrap()
        .set_backend_state("web", "10.0.0.1:8080", lb::BackendState::Down)
        .unwrap();
    let s = steps(&mut g, &[ack]);
    assert_eq!(s[0].outcome, "drop: backend-down");
    assert_eq!(
        s[0].decided_by.as_deref(),
        Some("the connection's backend 10.0.0.1:8080 of service web (VIP 192.0.2.10:80) is down or removed")
    );
    let text = pipeline::trace::render_trace(&tracer.take());
    assert!(text.is_empty() || text.contains("No packets"), "{text}");
}

#[test]
fn bad_parameters_are_refused_with_the_key() {
    let cases = [
        (
            "params = { services = [{ name = \"a\", vip = \"192.0.2.1\", protocol = \"tcp\", port = 80, table_size = 100 }] }",
            "nodes.lb.params.services[0].table_size",
        ),
        ("params = { bogus = 1 }", "nodes.lb.params.bogus"),
        ("params = { file = \"/nonexistent/lb.toml\" }", "nodes.lb.params.file"),
    ];
    for (p, key) in cases {
        let e = Graph::build(&spec(p), &registry(), &ports())
            .err()
            .expect(p);
        assert_eq!(e.key, key, "{p}: {e:?}");
    }
}

/// A control thread publishes 200 tables (removing and re-adding a backend, adding
/// others) while this thread keeps sending the same 2000 established flows: no flow ever
/// changes backend, except flows of the backend while it is removed (dropped, counted).
#[test]
fn swaps_while_running_never_move_tracked_flows() {
    let cfg = pipeline::lb::LbConfig::from_toml_str(FOUR).unwrap();
    let ctl = LbControl::new(&cfg).unwrap();
    let mut h = Harness::with_control(ctl.clone());
    let flows: Vec<Spec> = (0..2000u32)
        .map(|i| {
            Spec::tcp(
                &format!("198.51.{}.{}", i / 200, i % 200 + 1),
                30000 + i as u16,
                "192.0.2.10",
                80,
                SYN,
            )
        })
        .collect();
    let first: Vec<IpAddr> = h
        .run(flows.iter().map(build).collect())
        .iter()
        .map(|o| parse(o.next()).dst)
        .collect();
    let victim: IpAddr = "10.0.0.2".parse().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let control = {
        let (ctl, stop) = (ctl.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) && n < 200 {
                if n % 2 == 0 {
                    ctl.remove_backend("web", "10.0.0.2:8080").unwrap();
                } else {
                    ctl.add_backend(
                        "web",
                        BackendConfig::new("10.0.0.2".parse().unwrap(), Some(8080)),
                    )
                    .unwrap();
                }
                if n % 50 == 0 {
                    ctl.add_backend(
                        "web",
                        BackendConfig::new(
                            format!("10.0.5.{}", n / 50 + 1).parse().unwrap(),
                            Some(8080),
                        ),
                    )
                    .unwrap();
                }
                n += 1;
                std::thread::yield_now();
            }
            n
        })
    };
    let acks: Vec<Vec<u8>> = flows
        .iter()
        .map(|s| {
            build(&Spec {
                flags: ACK,
                ..s.clone()
            })
        })
        .collect();
    let mut rounds = 0;
    while !control.is_finished() || rounds < 3 {
        for (o, want) in h.run(acks.clone()).iter().zip(&first) {
            match o {
                Out::Next(b) => assert_eq!(parse(b).dst, *want, "a tracked flow moved"),
                Out::Drop(_) => assert_eq!(*want, victim, "only the removed backend's flows drop"),
                Out::Reset(..) => panic!("drop policy"),
            }
        }
        rounds += 1;
    }
    stop.store(true, Ordering::Relaxed);
    let updates = control.join().unwrap();
    assert_eq!(updates, 200);
    assert!(h.extra(pipeline::lb::node::C_TABLE_SWAPS) >= 1);
    eprintln!(
        "{rounds} rounds of 2000 packets during 200+ updates; swaps picked up: {}",
        h.extra(pipeline::lb::node::C_TABLE_SWAPS)
    );
    // Retired tables are freed by the control thread once the worker let go of them.
    ctl.reclaim();
}
