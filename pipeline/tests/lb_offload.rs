//! The `lb` node leaving checksums to the port: on buffers that carry DPDK-style offload
//! requests, a NIC model completing them at "transmit" must give packets whose every
//! checksum verifies (checked by the independent parser of `lb_common`); the requests name
//! exactly the checksums left (IPv4 header for IPv4, TCP/UDP except a UDP/IPv4 "no
//! checksum"); buffers that refuse get complete checksums in software; without offload no
//! request is made.

mod lb_common;

use lb_common::*;
use pipeline::graph::{Decision, Frame, Node, Verdict};
use pipeline::lb::node::C_CSUM_OFFLOADS;
use pipeline::lb::{LbClock, LbConfig, LbControl, LbNode};
use pipeline::nodes::{parse_packet, ParseConfig};
use pipeline::stats::NodeCounters;
use pipeline::{CsumOffload, L4Csum, PacketBuf, PacketMeta};

/// A buffer like an mbuf on a port with checksum offload: it keeps the request.
struct NicBuf {
    bytes: Vec<u8>,
    accepts: bool,
    req: Option<CsumOffload>,
}

impl PacketBuf for NicBuf {
    fn data(&self) -> &[u8] {
        &self.bytes
    }
    fn data_mut(&mut self) -> &mut [u8] {
        &mut self.bytes
    }
    fn in_port(&self) -> u16 {
        0
    }
    fn request_csum_offload(&mut self, req: CsumOffload) -> bool {
        if self.accepts {
            self.req = Some(req);
        }
        self.accepts
    }
}

/// What a NIC does at transmit: the IPv4 header checksum over the header (its field must
/// be 0), the L4 checksum over the segment whose checksum field holds the pseudo-header
/// sum; a UDP result of 0 goes out as 0xffff.
fn transmit(b: &NicBuf) -> Vec<u8> {
    let mut f = b.bytes.clone();
    let Some(r) = b.req else { return f };
    let l3 = usize::from(r.l2_len);
    let l4 = l3 + usize::from(r.l3_len);
    if r.ip {
        assert_eq!(
            &f[l3 + 10..l3 + 12],
            &[0, 0],
            "IPv4 checksum field 0 for the NIC"
        );
        let c = !(ones_sum(0, &f[l3..l4]) as u16);
        f[l3 + 10..l3 + 12].copy_from_slice(&c.to_be_bytes());
    }
    let end = if r.ipv4 {
        l3 + usize::from(u16::from_be_bytes([f[l3 + 2], f[l3 + 3]]))
    } else {
        l3 + 40 + usize::from(u16::from_be_bytes([f[l3 + 4], f[l3 + 5]]))
    };
    let at = match r.l4 {
        L4Csum::None => return f,
        L4Csum::Tcp => l4 + 16,
        L4Csum::Udp => l4 + 6,
    };
    let c = match !(ones_sum(0, &f[l4..end]) as u16) {
        0 if r.l4 == L4Csum::Udp => 0xffff,
        x => x,
    };
    f[at..at + 2].copy_from_slice(&c.to_be_bytes());
    f
}

fn node(offload: bool) -> (LbNode, NodeCounters) {
    let cfg = LbConfig::from_toml_str(FOUR).expect("valid lb config");
    let (clock, _now) = LbClock::manual(1000);
    let n =
        LbNode::new(LbControl::new(&cfg).unwrap(), clock).with_checksum_offload(offload, offload);
    let c = NodeCounters::new(LbNode::INFO.drop_reasons.len(), LbNode::INFO.counters.len());
    (n, c)
}

/// Every checksum verifies; the UDP/IPv4 packet sent without a checksum (index 2 of
/// [`requests`]) still has none (the parser of `lb_common` wants one).
fn valid(i: usize, f: &[u8]) -> bool {
    let p = parse(f);
    if i == 2 {
        p.ip_csum_ok && f[40..42] == [0, 0]
    } else {
        p.valid()
    }
}

/// Runs `frames` through the node on `NicBuf`s; all must continue.
fn run(node: &mut LbNode, c: &NodeCounters, frames: &[Vec<u8>], accepts: bool) -> Vec<NicBuf> {
    let mut pkts: Vec<NicBuf> = frames
        .iter()
        .map(|f| NicBuf {
            bytes: f.clone(),
            accepts,
            req: None,
        })
        .collect();
    let mut meta = vec![PacketMeta::default(); pkts.len()];
    for (p, m) in pkts.iter().zip(meta.iter_mut()) {
        parse_packet(&p.bytes, &ParseConfig::default(), m).expect("test frames parse");
    }
    let mut decisions = vec![Decision::Next(0); pkts.len()];
    let v = node.process(Frame {
        pkts: &mut pkts,
        meta: &mut meta,
        decisions: &mut decisions,
        counters: c,
        shared: &mut pipeline::graph::SharedState::new(),
    });
    for (i, d) in decisions.iter().enumerate() {
        let d = match v {
            Verdict::All(d) => d,
            Verdict::PerPacket => *d,
        };
        assert_eq!(d, Decision::Next(0), "packet {i} continues");
    }
    pkts
}

/// Client packets to each kind of VIP, one UDP/IPv4 without checksum, and the expected
/// request of each (IPv4 header checksum left to the port, L4 checksum left).
fn requests() -> Vec<(Vec<u8>, bool, L4Csum)> {
    let mut no_csum = build(&Spec::udp("198.51.100.7", 40005, "192.0.2.53", 53));
    no_csum[40..42].copy_from_slice(&[0, 0]);
    vec![
        (
            build(&Spec::tcp("198.51.100.7", 40000, "192.0.2.10", 80, SYN)),
            true,
            L4Csum::Tcp,
        ),
        (
            build(&Spec::udp("198.51.100.7", 40001, "192.0.2.53", 53)),
            true,
            L4Csum::Udp,
        ),
        (no_csum, true, L4Csum::None),
        (
            build(&Spec::udp("2001:db8:ffff::7", 40002, "2001:db8::10", 9999)),
            false,
            L4Csum::Udp,
        ),
        (
            build(&Spec::tcp(
                "2001:db8:ffff::7",
                40003,
                "2001:db8::11",
                443,
                SYN,
            )),
            false,
            L4Csum::Tcp,
        ),
    ]
}

#[test]
fn offloaded_checksums_complete_at_transmit() {
    let (mut n, c) = node(true);
    let cases = requests();
    let frames: Vec<Vec<u8>> = cases.iter().map(|c| c.0.clone()).collect();
    let out = run(&mut n, &c, &frames, true);
    for (i, (b, (_, ip, l4))) in out.iter().zip(&cases).enumerate() {
        let r = b
            .req
            .unwrap_or_else(|| panic!("packet {i}: no offload request"));
        assert_eq!(
            (r.ip, r.l4),
            (*ip, *l4),
            "packet {i}: what is left to the port"
        );
        assert_eq!(r.l2_len, 14, "packet {i}");
        assert_eq!(r.l3_len, if r.ipv4 { 20 } else { 40 }, "packet {i}");
        let f = transmit(b);
        assert!(
            valid(i, &f),
            "packet {i} after the port's checksums: {:?}",
            parse(&f)
        );
        assert_ne!(
            parse(&f).dst,
            parse(&frames[i]).dst,
            "packet {i} was DNATed"
        );
    }
    assert_eq!(c.extra()[C_CSUM_OFFLOADS].get(), 5);
    // A backend's reply to the TCP client: un-NATed to the VIP, checksums left to the port.
    let dnat = parse(&transmit(&out[0]));
    let mut reply = Spec::tcp(
        &dnat.dst.to_string(),
        dnat.dport,
        "198.51.100.7",
        40000,
        SYN | ACK,
    );
    reply.ack = 1;
    let back = run(&mut n, &c, &[build(&reply)], true).pop().unwrap();
    assert!(back.req.is_some());
    let p = parse(&transmit(&back));
    assert!(p.valid(), "reply after the port's checksums: {p:?}");
    assert_eq!((p.src.to_string().as_str(), p.sport), ("192.0.2.10", 80));
    assert_eq!(c.extra()[C_CSUM_OFFLOADS].get(), 6);
}

#[test]
fn a_buffer_that_cannot_offload_gets_software_checksums() {
    let (mut n, c) = node(true);
    let frames: Vec<Vec<u8>> = requests().into_iter().map(|c| c.0).collect();
    for (i, b) in run(&mut n, &c, &frames, false).iter().enumerate() {
        assert!(b.req.is_none());
        assert!(valid(i, &b.bytes), "packet {i} as it is");
    }
    assert_eq!(c.extra()[C_CSUM_OFFLOADS].get(), 0);
}

#[test]
fn without_offload_nothing_is_requested() {
    let (mut n, c) = node(false);
    let frames: Vec<Vec<u8>> = requests().into_iter().map(|c| c.0).collect();
    for (i, b) in run(&mut n, &c, &frames, true).iter().enumerate() {
        assert!(b.req.is_none(), "packet {i}");
        assert!(valid(i, &b.bytes), "packet {i} as it is");
    }
    assert_eq!(c.extra()[C_CSUM_OFFLOADS].get(), 0);
}
