//! The node kinds the dataplane's pipelines can use: the pipeline crate's built-ins (parse,
//! forward, macswap, drop, tap, null). Stages such as ACL and load balancing register here.

use pipeline::{PacketBuf, Registry};

/// The registry every worker's graph is built from. Also asks for transparent huge pages
/// under every connection table the graph's nodes create ([`crate::dpdk::advise_huge_pages`]).
pub fn registry<P: PacketBuf + 'static>() -> Registry<P> {
    pipeline::conntrack::set_table_advice(crate::dpdk::advise_huge_pages);
    let mut r = Registry::with_builtins();
    // `acl`: OVN-style ACLs on rte_acl (see pipeline::acl::node and dpdk::acl).
    crate::dpdk::acl::register(&mut r);
    // `lb`: L4 load balancer, Maglev + per-worker conntrack + NAT (see pipeline::lb::node).
    pipeline::lb::register(&mut r).expect("the lb kind registers once");
    r
}
