//! Scale-out behind ECMP: two dataplane replicas with the same load-balancer config (here two
//! independently built `lb` nodes, the second from a config that lists the backends in another
//! order) choose the same backend for the same new flow, so a router may spread flows over
//! replicas and move them between replicas without breaking connections. Maglev's hashes are
//! seedless and pinned by golden values in `lb::maglev`, so this holds across processes too.

mod lb_common;

use lb_common::*;
use std::net::IpAddr;

#[test]
fn two_replicas_pick_the_same_backend_for_every_new_flow() {
    let reordered = FOUR.replace(
        "  { address = \"10.0.0.1\", port = 8080 },\n  { address = \"10.0.0.2\", port = 8080 },\n  { address = \"10.0.0.3\", port = 8080 },\n  { address = \"10.0.0.4\", port = 8080 },",
        "  { address = \"10.0.0.3\", port = 8080 },\n  { address = \"10.0.0.1\", port = 8080 },\n  { address = \"10.0.0.4\", port = 8080 },\n  { address = \"10.0.0.2\", port = 8080 },",
    );
    assert_ne!(
        reordered, FOUR,
        "the second replica's config lists the backends in another order"
    );
    let (mut a, mut b) = (Harness::new(FOUR), Harness::new(&reordered));
    let mut rng = Rng(0xecb);
    let flows: Vec<Spec> = (0..20_000u32)
        .map(|i| {
            let x = rng.next();
            let mut s = Spec::tcp("0.0.0.0", 1024 + (i % 60000) as u16, "192.0.2.10", 80, SYN);
            s.src = IpAddr::V4(std::net::Ipv4Addr::from((x as u32) | 0x0100_0000));
            s
        })
        .collect();
    let frames: Vec<Vec<u8>> = flows.iter().map(build).collect();
    let (oa, ob) = (a.run(frames.clone()), b.run(frames));
    assert_eq!(oa.len(), flows.len());
    assert_eq!(ob.len(), flows.len());
    let mut per_backend = std::collections::BTreeMap::new();
    for (x, y) in oa.iter().zip(&ob) {
        let (px, py) = (parse(x.next()), parse(y.next()));
        assert!(px.valid() && py.valid());
        assert_eq!(
            px.dst, py.dst,
            "both replicas send the flow to the same backend"
        );
        *per_backend.entry(px.dst).or_insert(0u32) += 1;
    }
    assert_eq!(
        per_backend.len(),
        4,
        "all four backends get flows: {per_backend:?}"
    );
}
