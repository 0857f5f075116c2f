//! An `acl` node that consults the `lb` node's connection table (`lb_conntrack`): packets of
//! connections the load balancer tracks pass without classification in both directions,
//! with one table lookup per packet for both nodes; new connections are judged by the rules,
//! and a denied one never gets an entry. Misconfigurations are refused with the key.

mod lb_common;

use std::net::IpAddr;

use arrayvec::ArrayVec;
use lb_common::*;
use pipeline::acl::{HubRegistry, LinearClassifier};
use pipeline::graph::{Frame, KindInfo, Node};
use pipeline::lb::LbFlows;
use pipeline::nodes::NodeImpl;
use pipeline::{Decision, Graph, GraphSpec, PortInfo, Registry, TestBuf, Verdict};

static HUBS: HubRegistry<LinearClassifier> = HubRegistry::new();

const VIP: &str = "10.0.9.100";
const BACKENDS: [&str; 3] = ["10.0.3.31", "10.0.3.32", "10.0.3.33"];

/// The ACL: clients in 10.0.2.0/24 may reach the database VIP on TCP 5432; nothing else
/// (no rule allows the backends' replies: only the connection table lets them through).
const ACL: &str = r#"
[nodes.params.acl]
default = "drop"
[[nodes.params.acl.rules]]
direction = "from-lport"
priority = 100
match = "ip4 && ip4.src == 10.0.2.0/24 && ip4.dst == 10.0.9.100 && tcp.dst == 5432"
action = "allow"
"#;

/// The ACL of an `acl_after` node, after the lb node, where requests carry the chosen
/// backend: clients in 10.0.2.0/24 may reach TCP 5432, connections committed.
const ACL_AFTER_LB: &str = r#"
[nodes.params.acl]
default = "drop"
[[nodes.params.acl.rules]]
direction = "from-lport"
priority = 100
match = "ip4 && ip4.src == 10.0.2.0/24 && tcp.dst == 5432"
action = "allow-related"
"#;

const LB: &str = r#"
[nodes.params]
control = "CONTROL"
[[nodes.params.services]]
name = "db"
vip = "10.0.9.100"
protocol = "tcp"
port = 5432
backends = [
  { address = "10.0.3.31", port = 5432 },
  { address = "10.0.3.32", port = 5432 },
  { address = "10.0.3.33", port = 5432 },
]
"#;

/// `nodes` in order, then edges along that order, the last node a cross-connect; the `lb`
/// node follows the control named `control`; `acl_params` go to the `acl` node (rules
/// [`ACL`]) or the `acl_after` node (rules [`ACL_AFTER_LB`]).
fn spec_with(acl_params: &str, order: &[&str], control: &str) -> GraphSpec {
    GraphSpec::from_toml(&spec_text(acl_params, order, control)).expect("spec parses")
}

/// The TOML of [`spec_with`].
fn spec_text(acl_params: &str, order: &[&str], control: &str) -> String {
    let mut t = String::new();
    for n in order {
        match *n {
            "parse" => t += "[[nodes]]\nname = \"parse\"\nkind = \"parse\"\n",
            "acl" | "acl_after" => {
                t += &format!(
                    "[[nodes]]\nname = \"{n}\"\nkind = \"acl\"\n[nodes.params]\n{acl_params}\n"
                );
                t += if *n == "acl" { ACL } else { ACL_AFTER_LB };
            }
            "scramble" => {
                t += "[[nodes]]\nname = \"scramble\"\nkind = \"scramble\"\n";
            }
            "lb" => {
                t += "[[nodes]]\nname = \"lb\"\nkind = \"lb\"\n";
                t += &LB.replace("CONTROL", control);
                t += "[[nodes]]\nname = \"rst\"\nkind = \"forward\"\nparams = { mode = \"by-metadata\" }\n[[edges]]\nfrom = \"lb\"\noutput = \"reset\"\nto = \"rst\"\n";
            }
            _ => unreachable!(),
        }
    }
    t += "[[nodes]]\nname = \"fwd\"\nkind = \"forward\"\nparams = { mode = \"cross-connect\", pairs = [[\"p0\", \"p1\"]] }\n";
    let mut chain: Vec<&str> = order.to_vec();
    chain.push("fwd");
    for w in chain.windows(2) {
        t += &format!("[[edges]]\nfrom = \"{}\"\nto = \"{}\"\n", w[0], w[1]);
    }
    t
}

/// The graph of `spec_with(acl_params, order, control)`; panics if it is refused.
fn graph(acl_params: &str, order: &[&str], control: &str) -> Graph<TestBuf> {
    Graph::build(
        &spec_with(acl_params, order, control),
        &registry(),
        &ports(),
    )
    .unwrap_or_else(|e| panic!("{e:?}"))
}

/// `parse -> acl -> lb` with the ACL consulting the `lb` node's table (`lb_conntrack`).
fn shared_graph(control: &str) -> Graph<TestBuf> {
    graph("lb_conntrack = \"lb\"", &["parse", "acl", "lb"], control)
}

fn registry() -> Registry<TestBuf> {
    let mut r = Registry::with_builtins();
    pipeline::lb::register(&mut r).unwrap();
    pipeline::acl::node::register(&mut r, &HUBS, || 1_000_000_000).unwrap();
    let info = KindInfo {
        outputs: &["next"],
        drop_reasons: &[],
        counters: &[],
        transmits: false,
        fills_meta: false,
        description: "points every packet's `next` at its neighbour's",
    };
    r.register::<Empty, _>("scramble", info, |_, _| {
        Ok(NodeImpl::Custom(Box::new(Scramble)))
    })
    .unwrap();
    r
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Empty {}

/// A node that gives each packet the `next` of the packet after it (the last one the
/// first one's), as a node between `acl` and `lb` using `next` for its own ends would.
struct Scramble;

impl Node<TestBuf> for Scramble {
    fn process(&mut self, f: Frame<'_, TestBuf>) -> Verdict {
        let first = f.meta.first().map_or(0, |m| m.next);
        let n = f.meta.len();
        for i in 0..n {
            f.meta[i].next = if i + 1 < n { f.meta[i + 1].next } else { first };
        }
        Verdict::All(Decision::Next(0))
    }
}

fn ports() -> [PortInfo; 2] {
    [PortInfo::new(0, "p0", "a"), PortInfo::new(1, "p1", "b")]
}

/// One burst in on `port`; what left by port 1 and by port 0.
fn run(g: &mut Graph<TestBuf>, port: u16, frames: &[Vec<u8>]) -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
    let mut tx = g.new_tx_vectors();
    let mut rx: ArrayVec<TestBuf, 64> = ArrayVec::new();
    for f in frames {
        rx.push(TestBuf::new(f.clone(), port));
    }
    g.process(&mut rx, &mut tx);
    let p1 = tx.pkts_mut(1).drain(..).map(|b| b.bytes).collect();
    let p0 = tx.pkts_mut(0).drain(..).map(|b| b.bytes).collect();
    (p1, p0)
}

fn counter(g: &Graph<TestBuf>, node: &str, name: &str) -> u64 {
    g.snapshot().node(node).unwrap().counter(name)
}

fn drops(g: &Graph<TestBuf>, node: &str, reason: &str) -> u64 {
    g.snapshot().node(node).unwrap().drops_for(reason)
}

fn lb_lookups(g: &Graph<TestBuf>) -> (u64, u64) {
    let sh = g.shared();
    let fl = sh.get::<LbFlows>(sh.find("lb").unwrap()).unwrap();
    let st = fl.conntrack().stats();
    (st.hits, st.misses)
}

fn client(i: u16) -> String {
    format!("10.0.2.{}", 10 + i)
}

/// Replies translated back: the `i`th is valid, comes from VIP:5432 and goes to `client(i)`.
fn assert_from_the_vip_to_each_client(back: &[Vec<u8>]) {
    for (i, f) in back.iter().enumerate() {
        let p = parse(f);
        assert!(p.valid());
        assert_eq!((p.src.to_string().as_str(), p.sport), (VIP, 5432));
        assert_eq!(p.dst.to_string(), client(i as u16));
    }
}

#[test]
fn tracked_connections_skip_the_rules_with_one_lookup() {
    let mut g = shared_graph("acl-lb-shared-tracked");
    const N: u16 = 10;
    let pkt = |i: u16, flags: u8| build(&Spec::tcp(&client(i), 40000 + i, VIP, 5432, flags));

    // New connections: judged by the rules, then balanced and DNATed.
    let (out, back) = run(&mut g, 0, &(0..N).map(|i| pkt(i, SYN)).collect::<Vec<_>>());
    assert_eq!((out.len(), back.len()), (N as usize, 0));
    let chosen: Vec<IpAddr> = out.iter().map(|f| parse(f).dst).collect();
    for f in &out {
        let p = parse(f);
        assert!(p.valid());
        assert!(BACKENDS.contains(&p.dst.to_string().as_str()), "{}", p.dst);
    }
    assert_eq!(counter(&g, "acl", "classified"), u64::from(N));
    assert_eq!(counter(&g, "acl", "ct-hits"), 0);
    assert_eq!(counter(&g, "lb", "new-connections"), u64::from(N));
    // The acl node's lookup missed once per packet; the lb node looked new connections up
    // again (it takes over hits only) and inserted them.
    assert_eq!(lb_lookups(&g), (0, 2 * u64::from(N)));

    // The same connections again: tracked, so not classified; one lookup each, and the
    // lb node follows the entries (same backends).
    let (out, _) = run(&mut g, 0, &(0..N).map(|i| pkt(i, ACK)).collect::<Vec<_>>());
    assert_eq!(out.iter().map(|f| parse(f).dst).collect::<Vec<_>>(), chosen);
    assert_eq!(counter(&g, "acl", "classified"), u64::from(N));
    assert_eq!(counter(&g, "acl", "ct-hits"), u64::from(N));
    assert_eq!(lb_lookups(&g), (u64::from(N), 2 * u64::from(N)));

    // Replies from the chosen backends: no rule allows them, the connection table does;
    // the lb node translates the source back to the VIP.
    let replies: Vec<Vec<u8>> = (0..N)
        .map(|i| {
            let be = chosen[usize::from(i)].to_string();
            build(&Spec::tcp(&be, 5432, &client(i), 40000 + i, ACK))
        })
        .collect();
    let (_, back) = run(&mut g, 1, &replies);
    assert_eq!(back.len(), N as usize);
    assert_from_the_vip_to_each_client(&back);
    assert_eq!(counter(&g, "acl", "classified"), u64::from(N));
    assert_eq!(counter(&g, "acl", "ct-hits"), 2 * u64::from(N));
    assert_eq!(lb_lookups(&g), (2 * u64::from(N), 2 * u64::from(N)));

    // A "reply" from a backend to a client it has no connection with is classified, and
    // the rules drop it; so is a connection the rules deny, which gets no entry, however
    // often it is retried.
    let stray = build(&Spec::tcp(BACKENDS[0], 5432, "10.0.2.200", 41000, ACK));
    let denied = build(&Spec::tcp("10.0.1.5", 42000, VIP, 5432, SYN));
    for round in 1..=2u64 {
        let (out, back) = run(&mut g, 0, &[stray.clone(), denied.clone()]);
        assert!(out.is_empty() && back.is_empty());
        assert_eq!(drops(&g, "acl", "default-deny"), 2 * round);
    }
    assert_eq!(counter(&g, "lb", "new-connections"), u64::from(N));
    assert_eq!(counter(&g, "acl", "classified"), u64::from(N) + 4);

    // Mixed burst: tracked, new allowed and denied packets together keep their order.
    let fresh = build(&Spec::tcp(&client(50), 43000, VIP, 5432, SYN));
    let (out, _) = run(
        &mut g,
        0,
        &[pkt(3, ACK), denied.clone(), fresh, pkt(4, ACK)],
    );
    assert_eq!(out.len(), 3);
    assert_eq!(parse(&out[0]).dst, chosen[3]);
    assert_eq!(parse(&out[0]).sport, 40003);
    assert_eq!(parse(&out[1]).sport, 43000);
    assert_eq!(parse(&out[2]).dst, chosen[4]);
    assert_eq!(counter(&g, "lb", "new-connections"), u64::from(N) + 1);

    // A new table (a backend drained) is adopted by whichever node runs first (the acl
    // node's lookup), and the lb node still counts the swap; tracked flows stay put.
    let ctl = pipeline::lb::LbControl::named("acl-lb-shared-tracked").unwrap();
    ctl.set_backend_state(
        "db",
        &format!("{}:5432", chosen[5]),
        pipeline::lb::BackendState::Draining,
    )
    .unwrap();
    let (out, _) = run(&mut g, 0, &[pkt(5, ACK)]);
    assert_eq!(
        parse(&out[0]).dst,
        chosen[5],
        "a draining backend keeps its flows"
    );
    assert_eq!(counter(&g, "lb", "table-swaps"), 1);
    assert_eq!(counter(&g, "acl", "ct-hits"), 2 * u64::from(N) + 3);
}

/// `parse -> lb -> acl_after -> fwd`: a stateful acl node after the load balancer (OVN's
/// ACL stages after its load balancer), allowing the clients' requests as they leave the
/// lb node, to the backends; nothing else.
fn after_lb_graph(stateful: usize) -> Graph<TestBuf> {
    graph(
        &format!("stateful = {stateful}"),
        &["parse", "lb", "acl_after"],
        &format!("acl-after-lb-{stateful}"),
    )
}

/// The stateful acl node after the lb node commits each balanced request keyed by its
/// backend; the reply comes back from the lb node carrying the VIP, which its own table
/// cannot match. The lb node marks the replies of the connections it tracks and the acl
/// node passes them, as OVN passes established replies in its stages after the load
/// balancer. A backend's packet to a client it has no connection with is translated
/// untracked, not marked, and the rules drop it; a stateless acl node judges every reply.
#[test]
fn an_acl_after_the_lb_passes_the_replies_of_balanced_connections() {
    let mut g = after_lb_graph(1024);
    const N: u16 = 8;
    let syns: Vec<Vec<u8>> = (0..N)
        .map(|i| build(&Spec::tcp(&client(i), 40000 + i, VIP, 5432, SYN)))
        .collect();
    let (out, _) = run(&mut g, 0, &syns);
    assert_eq!(out.len(), N as usize, "requests allowed after DNAT");
    let chosen: Vec<String> = out.iter().map(|f| parse(f).dst.to_string()).collect();
    assert_eq!(counter(&g, "acl_after", "ct-new"), u64::from(N));
    let replies: Vec<Vec<u8>> = (0..N)
        .map(|i| {
            build(&Spec::tcp(
                &chosen[usize::from(i)],
                5432,
                &client(i),
                40000 + i,
                ACK,
            ))
        })
        .collect();
    let (_, back) = run(&mut g, 1, &replies);
    assert_eq!(back.len(), N as usize, "every reply passed");
    assert_from_the_vip_to_each_client(&back);
    assert_eq!(counter(&g, "acl_after", "ct-hits"), u64::from(N));
    assert_eq!(drops(&g, "acl_after", "default-deny"), 0);
    // No connection: translated (one service owns the backend) but judged, and dropped.
    let stray = build(&Spec::tcp(BACKENDS[0], 5432, "10.0.2.200", 41000, ACK));
    let (_, back) = run(&mut g, 1, std::slice::from_ref(&stray));
    assert!(back.is_empty());
    assert_eq!(counter(&g, "lb", "reply-untracked"), 1);
    assert_eq!(drops(&g, "acl_after", "default-deny"), 1);
    assert_eq!(counter(&g, "acl_after", "ct-hits"), u64::from(N));

    // Stateless, the node judges every packet: the replies meet the rules and are dropped.
    let mut stateless = after_lb_graph(0);
    let (out, _) = run(&mut stateless, 0, &syns[..1]);
    let be = parse(&out[0]).dst.to_string();
    let reply = build(&Spec::tcp(&be, 5432, &client(0), 40000, ACK));
    assert!(run(&mut stateless, 1, &[reply]).1.is_empty());
    assert_eq!(drops(&stateless, "acl_after", "default-deny"), 1);
}

#[test]
fn without_the_shared_table_replies_need_a_rule() {
    // The same graph without `lb_conntrack`: every packet is classified, replies dropped.
    let mut g = shared_graph("acl-lb-shared");
    let mut plain = graph("", &["parse", "acl", "lb"], "acl-lb-shared");
    let syn = build(&Spec::tcp(&client(1), 40001, VIP, 5432, SYN));
    let (o1, _) = run(&mut g, 0, std::slice::from_ref(&syn));
    let (o2, _) = run(&mut plain, 0, &[syn]);
    let be = parse(&o1[0]).dst.to_string();
    assert_eq!(parse(&o2[0]).dst.to_string(), be, "same Maglev choice");
    let reply = build(&Spec::tcp(&be, 5432, &client(1), 40001, ACK));
    assert_eq!(run(&mut g, 1, std::slice::from_ref(&reply)).1.len(), 1);
    assert_eq!(run(&mut plain, 1, &[reply]).1.len(), 0);
    assert_eq!(drops(&plain, "acl", "default-deny"), 1);
}

#[test]
fn lb_conntrack_must_name_a_later_lb_node() {
    let cases = [
        (
            "lb_conntrack = \"nope\"",
            vec!["parse", "acl", "lb"],
            "no node named `nope`",
        ),
        (
            "lb_conntrack = \"parse\"",
            vec!["parse", "acl", "lb"],
            "no node named `parse`",
        ),
        (
            "lb_conntrack = \"lb\"",
            vec!["parse", "lb", "acl"],
            "must come after",
        ),
        (
            "lb_conntrack = \"lb\"",
            vec!["parse", "acl"],
            "no node named `lb`",
        ),
    ];
    for (p, order, why) in cases {
        let e = Graph::build(
            &spec_with(p, &order, "acl-lb-shared"),
            &registry(),
            &ports(),
        )
        .err()
        .unwrap_or_else(|| panic!("{p} {order:?} accepted"));
        assert_eq!(e.key, "nodes.acl.params.lb_conntrack", "{e:?}");
        assert!(format!("{e}").contains(why), "{p} {order:?}: {e}");
    }
}

#[test]
fn a_foreign_next_between_the_nodes_costs_lookups_not_correctness() {
    // A node between acl and lb points every packet at its neighbour's hand-over: the lb
    // node's checks refuse each (another flow's slot, another backend), looks the packets
    // up itself, and balances, pins and un-NATs exactly as the graph without that node.
    let shared = "lb_conntrack = \"lb\"";
    let mut plain = graph(shared, &["parse", "acl", "lb"], "acl-lb-shared-plain");
    let mut odd = graph(
        shared,
        &["parse", "acl", "scramble", "lb"],
        "acl-lb-shared-odd",
    );
    const N: u16 = 40;
    let pkt = |i: u16, flags: u8| build(&Spec::tcp(&client(i), 40000 + i, VIP, 5432, flags));
    let syns: Vec<Vec<u8>> = (0..N).map(|i| pkt(i, SYN)).collect();
    let acks: Vec<Vec<u8>> = (0..N).map(|i| pkt(i, ACK)).collect();
    let (a, _) = run(&mut plain, 0, &syns);
    let (b, _) = run(&mut odd, 0, &syns);
    assert_eq!(a, b, "same Maglev choices");
    let chosen: Vec<IpAddr> = a.iter().map(|f| parse(f).dst).collect();
    for _ in 0..3 {
        let (a, _) = run(&mut plain, 0, &acks);
        let (b, _) = run(&mut odd, 0, &acks);
        assert_eq!(a, b);
        assert_eq!(b.iter().map(|f| parse(f).dst).collect::<Vec<_>>(), chosen);
    }
    let replies: Vec<Vec<u8>> = (0..N)
        .map(|i| {
            build(&Spec::tcp(
                &chosen[usize::from(i)].to_string(),
                5432,
                &client(i),
                40000 + i,
                ACK,
            ))
        })
        .collect();
    let (_, a) = run(&mut plain, 1, &replies);
    let (_, b) = run(&mut odd, 1, &replies);
    assert_eq!(a, b);
    assert_eq!(b.len(), usize::from(N));
    assert_from_the_vip_to_each_client(&b);
    assert_eq!(counter(&odd, "lb", "new-connections"), u64::from(N));
    assert_eq!(counter(&odd, "lb", "reply-untracked"), 0);
    // The plain graph's lb node took every hit over (one lookup per packet); the other
    // looked each packet up a second time.
    let (hits_plain, _) = lb_lookups(&plain);
    let (hits_odd, _) = lb_lookups(&odd);
    assert_eq!(hits_plain, 4 * u64::from(N));
    assert_eq!(hits_odd, 2 * hits_plain);
}

/// ACL rules allowing the clients in `src` to reach the VIP, nothing else.
fn acl_allowing(src: &str) -> pipeline::acl::AclConfig {
    let text = format!(
        "[acl]\ndefault = \"drop\"\n[[acl.rules]]\ndirection = \"from-lport\"\npriority = 100\nmatch = \"ip4 && ip4.src == {src} && ip4.dst == {VIP} && tcp.dst == 5432\"\naction = \"allow\"\n"
    );
    toml::from_str::<pipeline::acl::AclFile>(&text)
        .expect("rules parse")
        .acl
}

#[test]
fn changed_rules_block_and_unblock_tracked_connections() {
    // As OVN's ct_mark.blocked: after a rule change, each tracked connection's next request
    // is judged again. Denied, the connection is blocked (its replies are judged too, and
    // dropped); allowed again later, it resumes on the backend it had.
    let acl = "acl-recheck";
    let text = spec_text(
        "lb_conntrack = \"lb\"",
        &["parse", "acl", "lb"],
        "acl-lb-shared-recheck",
    )
    .replace("name = \"acl\"", &format!("name = \"{acl}\""))
    .replace("from = \"acl\"", &format!("from = \"{acl}\""))
    .replace("to = \"acl\"", &format!("to = \"{acl}\""));
    let spec = GraphSpec::from_toml(&text).expect("spec parses");
    let mut g = Graph::build(&spec, &registry(), &ports()).unwrap_or_else(|e| panic!("{e:?}"));
    let hub = HUBS.get(acl).expect("the node's hub");
    let publish = |src: &str| {
        hub.publish_config(&acl_allowing(src), std::time::Duration::ZERO)
            .expect("rules publish");
    };
    const N: u16 = 4;
    let reqs = |flags: u8| -> Vec<Vec<u8>> {
        (0..N)
            .map(|i| build(&Spec::tcp(&client(i), 40000 + i, VIP, 5432, flags)))
            .collect()
    };
    let (out, _) = run(&mut g, 0, &reqs(SYN));
    assert_eq!(out.len(), usize::from(N));
    let chosen: Vec<IpAddr> = out.iter().map(|f| parse(f).dst).collect();
    let replies: Vec<Vec<u8>> = (0..N)
        .map(|i| {
            let be = chosen[usize::from(i)].to_string();
            build(&Spec::tcp(&be, 5432, &client(i), 40000 + i, ACK))
        })
        .collect();
    // Requests out to their backends, replies back from them (as the VIP), by client.
    let requests_out = |g: &mut Graph<TestBuf>| -> Vec<u16> {
        let (out, _) = run(g, 0, &reqs(ACK));
        out.iter()
            .map(|f| {
                let p = parse(f);
                let i = p.sport - 40000;
                assert_eq!(p.dst, chosen[usize::from(i)], "client {i} moved");
                i
            })
            .collect()
    };
    let replies_back = |g: &mut Graph<TestBuf>| -> Vec<u16> {
        let (_, back) = run(g, 1, &replies);
        back.iter()
            .map(|f| {
                let p = parse(f);
                assert_eq!((p.src.to_string().as_str(), p.sport), (VIP, 5432));
                p.dport - 40000
            })
            .collect()
    };
    let c = |g: &Graph<TestBuf>, name: &str| counter(g, acl, name);
    assert_eq!(requests_out(&mut g), vec![0, 1, 2, 3]);
    assert_eq!(replies_back(&mut g), vec![0, 1, 2, 3]);
    assert_eq!(c(&g, "ct-hits"), 2 * u64::from(N));

    // Clients .10 and .11 lose their rule. Replies pass until a request is judged.
    publish("10.0.2.12/31");
    assert_eq!(replies_back(&mut g), vec![0, 1, 2, 3]);
    assert_eq!(requests_out(&mut g), vec![2, 3]);
    assert_eq!((c(&g, "ct-rechecked"), c(&g, "ct-revoked")), (4, 2));
    assert_eq!(drops(&g, acl, "default-deny"), 2);
    // Blocked: their replies are judged as new packets and dropped; their requests are
    // judged again each time (and not counted as revoked twice). The others are tracked.
    assert_eq!(replies_back(&mut g), vec![2, 3]);
    assert_eq!(requests_out(&mut g), vec![2, 3]);
    assert_eq!((c(&g, "ct-rechecked"), c(&g, "ct-revoked")), (6, 2));
    assert_eq!(drops(&g, acl, "default-deny"), 6);

    // The rule comes back: the blocked connections resume on their backends; nothing new
    // was created in the load balancer at any point.
    publish("10.0.2.0/24");
    assert_eq!(requests_out(&mut g), vec![0, 1, 2, 3]);
    assert_eq!(replies_back(&mut g), vec![0, 1, 2, 3]);
    assert_eq!(requests_out(&mut g), vec![0, 1, 2, 3]);
    assert_eq!((c(&g, "ct-rechecked"), c(&g, "ct-revoked")), (10, 2));
    assert_eq!(counter(&g, "lb", "new-connections"), u64::from(N));
}

#[test]
fn icmp_errors_about_lb_connections_pass_the_acl_translated() {
    // No rule allows ICMP. An error about a tracked connection is tracked as well: the ACL
    // passes it and the lb node translates it; an error about nothing tracked is judged,
    // and dropped.
    let mut g = shared_graph("acl-lb-shared-icmp");
    let syn = build(&Spec::tcp(&client(1), 40001, VIP, 5432, SYN));
    let (out, _) = run(&mut g, 0, &[syn]);
    let sent = out[0].clone();
    let backend = parse(&sent).dst.to_string();
    let hits = counter(&g, "acl", "ct-hits");
    let stray = build(&Spec::tcp(&client(1), 40002, &backend, 5432, ACK));
    let (_, back) = run(
        &mut g,
        1,
        &[icmp_error(&sent, &backend), icmp_error(&stray, &backend)],
    );
    assert_eq!(back.len(), 1, "the unrelated error was dropped");
    let e = check(&back[0]);
    assert_eq!(e.src.to_string(), VIP);
    assert_eq!(e.dst.to_string(), client(1));
    assert!(e.quoted.valid());
    assert_eq!(
        (e.quoted.dst.to_string().as_str(), e.quoted.dport),
        (VIP, 5432)
    );
    assert_eq!(counter(&g, "acl", "ct-hits"), hits + 1);
    assert_eq!(drops(&g, "acl", "default-deny"), 1);
    assert_eq!(counter(&g, "lb", "icmp-errors"), 1);
}

/// Cycles per packet of the `acl` and `lb` nodes sharing one lookup, as in the benchmark's
/// `dataplane-full` (UDP to a VIP, 100k client flows in a 200k-entry table, replies from the
/// backends in alternate vectors of 256), on test buffers, one core. Prints the best and the
/// median of the rounds per node (TSC clocks from the graph's counters): a figure to compare
/// builds with, not an assertion. Run:
/// `cargo test --release -p pipeline --test acl_lb_shared -- --ignored --nocapture handover_cycles`
#[test]
#[ignore = "benchmark: prints cycles per packet; run in release with --ignored --nocapture"]
fn handover_cycles() {
    const FLOWS: u32 = 100_000;
    const ROUNDS: usize = 9;
    const VEC: usize = 256;
    let text = spec_text(
        "lb_conntrack = \"lb\"",
        &["parse", "acl", "lb"],
        "acl-lb-shared-bench",
    )
    .replace("tcp.dst == 5432", "udp.dst == 5432")
    .replace("protocol = \"tcp\"", "protocol = \"udp\"")
    .replacen(
        "[[nodes.params.services]]",
        "conntrack = { capacity = 200000 }\n[[nodes.params.services]]",
        1,
    );
    let mut g = Graph::build(
        &GraphSpec::from_toml(&text).expect("spec parses"),
        &registry(),
        &ports(),
    )
    .unwrap_or_else(|e| panic!("{e:?}"));
    let client = |i: u32| format!("10.0.2.{}", 1 + i % 250);
    let cport = |i: u32| 1024 + (i / 250) as u16;
    let requests: Vec<Vec<u8>> = (0..FLOWS)
        .map(|i| build(&Spec::udp(&client(i), cport(i), VIP, 5432)))
        .collect();
    // Warm-up: every flow once (new connections), which gives each reply's backend.
    let mut tx = g.new_tx_vectors();
    let mut replies = Vec::with_capacity(FLOWS as usize);
    for c in requests.chunks(VEC) {
        let mut rx: ArrayVec<TestBuf, VEC> = c.iter().map(|f| TestBuf::new(f.clone(), 0)).collect();
        g.process(&mut rx, &mut tx);
        for out in tx.pkts_mut(1).drain(..) {
            let p = parse(&out.bytes);
            replies.push(build(&Spec::udp(
                &p.dst.to_string(),
                p.dport,
                &p.src.to_string(),
                p.sport,
            )));
        }
    }
    assert_eq!(replies.len(), FLOWS as usize, "every flow balanced");
    let mut per_node: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
    for _ in 0..ROUNDS {
        let before = g.snapshot();
        for (rq, rp) in requests.chunks(VEC).zip(replies.chunks(VEC)) {
            for (frames, port) in [(rq, 0u16), (rp, 1)] {
                let mut rx: ArrayVec<TestBuf, VEC> = frames
                    .iter()
                    .map(|f| TestBuf::new(f.clone(), port))
                    .collect();
                g.process(&mut rx, &mut tx);
                tx.pkts_mut(0).clear();
                tx.pkts_mut(1).clear();
            }
        }
        let d = g.snapshot().delta(&before);
        for (k, node) in ["acl", "lb"].iter().enumerate() {
            let n = d.node(node).unwrap();
            assert_eq!(n.packets, 2 * u64::from(FLOWS), "{node} saw every packet");
            per_node[k].push(n.clocks_per_packet());
        }
    }
    assert_eq!(
        counter(&g, "acl", "ct-hits"),
        2 * u64::from(FLOWS) * ROUNDS as u64
    );
    for (k, node) in ["acl", "lb"].iter().enumerate() {
        let v = &mut per_node[k];
        v.sort_by(f64::total_cmp);
        println!(
            "handover_cycles {node}: best {:.1} median {:.1} cycles/packet ({ROUNDS} rounds)",
            v[0],
            v[ROUNDS / 2]
        );
    }
}
