//! Shared helpers of the `lb_*` tests: an independent frame builder and parser (own
//! checksum code, nothing from `pipeline::wire`), and a harness that runs the `lb` node on
//! parsed `TestBuf`s with a manual clock.
#![allow(dead_code)]

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use pipeline::graph::{Decision, Frame, Node, Verdict};
use pipeline::lb::{LbClock, LbConfig, LbControl, LbNode};
use pipeline::nodes::{parse_packet, ParseConfig};
use pipeline::stats::NodeCounters;
use pipeline::{PacketMeta, TestBuf};

pub const SYN: u8 = 0x02;
pub const ACK: u8 = 0x10;
pub const RST: u8 = 0x04;
pub const FIN: u8 = 0x01;
pub const PSH: u8 = 0x08;

/// One's-complement sum of big-endian 16-bit words, written from scratch for the tests.
pub fn ones_sum(mut acc: u32, data: &[u8]) -> u32 {
    let mut i = 0;
    while i + 1 < data.len() {
        acc += (data[i] as u32) << 8 | data[i + 1] as u32;
        i += 2;
    }
    if i < data.len() {
        acc += (data[i] as u32) << 8;
    }
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc
}

fn ip_bytes(a: IpAddr) -> Vec<u8> {
    match a {
        IpAddr::V4(v) => v.octets().to_vec(),
        IpAddr::V6(v) => v.octets().to_vec(),
    }
}

fn pseudo(src: IpAddr, dst: IpAddr, proto: u8, len: usize) -> u32 {
    let mut acc = ones_sum(0, &ip_bytes(src));
    acc = ones_sum(acc, &ip_bytes(dst));
    ones_sum(acc, &[0, proto, (len >> 8) as u8, len as u8])
}

/// A TCP or UDP packet to build.
#[derive(Debug, Clone)]
pub struct Spec {
    pub tcp: bool,
    pub src: IpAddr,
    pub dst: IpAddr,
    pub sport: u16,
    pub dport: u16,
    pub flags: u8,
    pub seq: u32,
    pub ack: u32,
    pub payload: Vec<u8>,
}

impl Spec {
    pub fn tcp(src: &str, sport: u16, dst: &str, dport: u16, flags: u8) -> Self {
        Self {
            tcp: true,
            src: src.parse().unwrap(),
            dst: dst.parse().unwrap(),
            sport,
            dport,
            flags,
            seq: 1000,
            ack: if flags & ACK != 0 { 5000 } else { 0 },
            payload: b"hello, backend".to_vec(),
        }
    }
    pub fn udp(src: &str, sport: u16, dst: &str, dport: u16) -> Self {
        Self {
            tcp: false,
            ..Self::tcp(src, sport, dst, dport, 0)
        }
    }
}

/// Ethernet / IPv4 or IPv6 / TCP or UDP with correct checksums.
pub fn build(s: &Spec) -> Vec<u8> {
    let v6 = s.src.is_ipv6();
    let proto = if s.tcp { 6u8 } else { 17 };
    let mut l4 = Vec::new();
    l4.extend_from_slice(&s.sport.to_be_bytes());
    l4.extend_from_slice(&s.dport.to_be_bytes());
    if s.tcp {
        l4.extend_from_slice(&s.seq.to_be_bytes());
        l4.extend_from_slice(&s.ack.to_be_bytes());
        l4.push(5 << 4);
        l4.push(s.flags);
        l4.extend_from_slice(&[0xff, 0xff, 0, 0, 0, 0]);
    } else {
        l4.extend_from_slice(&((8 + s.payload.len()) as u16).to_be_bytes());
        l4.extend_from_slice(&[0, 0]);
    }
    l4.extend_from_slice(&s.payload);
    let c = !(ones_sum(pseudo(s.src, s.dst, proto, l4.len()), &l4) as u16);
    let at = if s.tcp { 16 } else { 6 };
    let c = if !s.tcp && c == 0 { 0xffff } else { c };
    l4[at..at + 2].copy_from_slice(&c.to_be_bytes());
    let mut f = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1];
    if v6 {
        f.extend_from_slice(&[0x86, 0xdd, 0x60, 0, 0, 0]);
        f.extend_from_slice(&(l4.len() as u16).to_be_bytes());
        f.extend_from_slice(&[proto, 64]);
    } else {
        f.extend_from_slice(&[0x08, 0x00, 0x45, 0]);
        f.extend_from_slice(&((20 + l4.len()) as u16).to_be_bytes());
        f.extend_from_slice(&[0x12, 0x34, 0x40, 0, 64, proto, 0, 0]);
    }
    f.extend_from_slice(&ip_bytes(s.src));
    f.extend_from_slice(&ip_bytes(s.dst));
    if !v6 {
        let c = !(ones_sum(0, &f[14..34]) as u16);
        f[24..26].copy_from_slice(&c.to_be_bytes());
    }
    f.extend_from_slice(&l4);
    f
}

/// What the independent parser found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub sport: u16,
    pub dport: u16,
    pub tcp: bool,
    pub flags: u8,
    pub seq: u32,
    pub ack: u32,
    pub payload: Vec<u8>,
    pub ip_csum_ok: bool,
    pub l4_csum_ok: bool,
    pub src_mac: [u8; 6],
    pub dst_mac: [u8; 6],
}

impl Parsed {
    pub fn valid(&self) -> bool {
        self.ip_csum_ok && self.l4_csum_ok
    }
}

/// Parses a frame built like [`build`] (no VLAN, no options) and verifies every checksum
/// from scratch. Panics on anything else.
pub fn parse(f: &[u8]) -> Parsed {
    let v6 = f[12] == 0x86 && f[13] == 0xdd;
    let (src, dst, proto, l4_start, l4_end, ip_ok) = if v6 {
        let plen = u16::from_be_bytes([f[18], f[19]]) as usize;
        let s: [u8; 16] = f[22..38].try_into().unwrap();
        let d: [u8; 16] = f[38..54].try_into().unwrap();
        (IpAddr::from(s), IpAddr::from(d), f[20], 54, 54 + plen, true)
    } else {
        assert_eq!(
            (f[12], f[13], f[14]),
            (0x08, 0x00, 0x45),
            "IPv4 without options"
        );
        let total = u16::from_be_bytes([f[16], f[17]]) as usize;
        let s: [u8; 4] = f[26..30].try_into().unwrap();
        let d: [u8; 4] = f[30..34].try_into().unwrap();
        let ok = ones_sum(0, &f[14..34]) == 0xffff;
        (IpAddr::from(s), IpAddr::from(d), f[23], 34, 14 + total, ok)
    };
    let l4 = &f[l4_start..l4_end];
    let tcp = proto == 6;
    let sum = ones_sum(pseudo(src, dst, proto, l4.len()), l4);
    let l4_ok = sum == 0xffff && (tcp || u16::from_be_bytes([l4[6], l4[7]]) != 0);
    let hl = if tcp { (l4[12] >> 4) as usize * 4 } else { 8 };
    Parsed {
        src,
        dst,
        sport: u16::from_be_bytes([l4[0], l4[1]]),
        dport: u16::from_be_bytes([l4[2], l4[3]]),
        tcp,
        flags: if tcp { l4[13] } else { 0 },
        seq: if tcp {
            u32::from_be_bytes(l4[4..8].try_into().unwrap())
        } else {
            0
        },
        ack: if tcp {
            u32::from_be_bytes(l4[8..12].try_into().unwrap())
        } else {
            0
        },
        payload: l4[hl..].to_vec(),
        ip_csum_ok: ip_ok,
        l4_csum_ok: l4_ok,
        src_mac: f[6..12].try_into().unwrap(),
        dst_mac: f[0..6].try_into().unwrap(),
    }
}

/// What the node decided for one packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Out {
    /// To the `next` output, with its bytes.
    Next(Vec<u8>),
    /// To the `reset` output, with its bytes and `meta.out_port`.
    Reset(Vec<u8>, u16),
    /// Dropped with this code.
    Drop(u8),
}

impl Out {
    pub fn next(&self) -> &[u8] {
        match self {
            Out::Next(b) => b,
            o => panic!("expected a packet on `next`, got {o:?}"),
        }
    }
}

/// The `lb` node with a manual clock (milliseconds), fed with parsed packets.
pub struct Harness {
    pub node: LbNode,
    pub clock: Arc<AtomicU64>,
    pub counters: NodeCounters,
    /// Drops seen by the harness, by code (the graph counts them in real use).
    pub dropped: [u64; 8],
}

impl Harness {
    pub fn new(cfg: &str) -> Self {
        let cfg = LbConfig::from_toml_str(cfg).expect("valid lb config");
        Self::with_control(LbControl::new(&cfg).unwrap())
    }

    pub fn with_control(control: Arc<LbControl>) -> Self {
        let (clock, now) = LbClock::manual(1000);
        Self {
            node: LbNode::new(control, clock),
            clock: now,
            counters: NodeCounters::new(
                LbNode::INFO.drop_reasons.len(),
                LbNode::INFO.counters.len(),
            ),
            dropped: [0; 8],
        }
    }

    pub fn control(&self) -> Arc<LbControl> {
        self.node.control().clone()
    }

    pub fn set_time_ms(&self, ms: u64) {
        self.clock.store(ms, Ordering::Relaxed);
    }

    pub fn extra(&self, i: usize) -> u64 {
        self.counters.extra()[i].get()
    }

    pub fn drops(&self, code: u8) -> u64 {
        self.dropped[code as usize]
    }

    /// Runs frames through `parse` then the node, in vectors of up to 256.
    pub fn run(&mut self, frames: Vec<Vec<u8>>) -> Vec<Out> {
        let mut out = Vec::with_capacity(frames.len());
        for chunk in frames.chunks(256) {
            let mut pkts: Vec<TestBuf> = chunk.iter().map(|f| TestBuf::new(f.clone(), 0)).collect();
            let mut meta = vec![PacketMeta::default(); pkts.len()];
            for (p, m) in pkts.iter().zip(meta.iter_mut()) {
                parse_packet(&p.bytes, &ParseConfig::default(), m).expect("test frames parse");
            }
            let mut decisions = vec![Decision::Next(0); pkts.len()];
            let v = self.node.process(Frame {
                pkts: &mut pkts,
                meta: &mut meta,
                decisions: &mut decisions,
                counters: &self.counters,
                shared: &mut pipeline::graph::SharedState::new(),
            });
            for (i, p) in pkts.into_iter().enumerate() {
                let d = match v {
                    Verdict::All(d) => d,
                    Verdict::PerPacket => decisions[i],
                };
                out.push(match d {
                    Decision::Next(0) => Out::Next(p.bytes),
                    Decision::Next(1) => Out::Reset(p.bytes, meta[i].out_port),
                    Decision::Drop(c) => {
                        self.dropped[c as usize] += 1;
                        Out::Drop(c)
                    }
                    d => panic!("unexpected decision {d:?}"),
                });
            }
        }
        out
    }

    pub fn one(&mut self, s: &Spec) -> Out {
        self.run(vec![build(s)]).pop().unwrap()
    }
}

/// Deterministic xorshift64.
pub struct Rng(pub u64);
impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Four TCP backends behind 192.0.2.10:80, and a UDP all-ports IPv6 service.
pub const FOUR: &str = r#"
[conntrack]
capacity = 65536
[[services]]
name = "web"
vip = "192.0.2.10"
protocol = "tcp"
port = 80
backends = [
  { address = "10.0.0.1", port = 8080 },
  { address = "10.0.0.2", port = 8080 },
  { address = "10.0.0.3", port = 8080 },
  { address = "10.0.0.4", port = 8080 },
]
[[services]]
name = "dns"
vip = "192.0.2.53"
protocol = "udp"
port = 53
backends = [{ address = "10.0.1.1", port = 5353 }, { address = "10.0.1.2", port = 5353 }]
[[services]]
name = "v6"
vip = "2001:db8::10"
protocol = "udp"
backends = [{ address = "2001:db8:1::1" }, { address = "2001:db8:1::2" }]
[[services]]
name = "v6tcp"
vip = "2001:db8::11"
protocol = "tcp"
port = 443
backends = [{ address = "2001:db8:2::1", port = 8443 }, { address = "2001:db8:2::2", port = 8443 }]
"#;

/// An ICMP error from `from` to the source of the frame `quoted` (built by [`build`]),
/// quoting its whole IP packet: IPv4 "fragmentation needed" (type 3 code 4, MTU 1400) or
/// ICMPv6 "packet too big" (type 2, MTU 1280).
pub fn icmp_error(quoted: &[u8], from: &str) -> Vec<u8> {
    let from: IpAddr = from.parse().unwrap();
    let v6 = quoted[12] == 0x86;
    let ip = &quoted[14..];
    let mut f = quoted[..12].to_vec();
    if v6 {
        let to: [u8; 16] = ip[8..24].try_into().unwrap();
        let mut icmp = vec![2, 0, 0, 0, 0, 0, 0x05, 0x00];
        icmp.extend_from_slice(ip);
        let IpAddr::V6(src) = from else {
            panic!("family")
        };
        let mut acc = ones_sum(0, &src.octets());
        acc = ones_sum(acc, &to);
        acc = ones_sum(acc, &(icmp.len() as u32).to_be_bytes());
        acc = ones_sum(acc, &[0, 0, 0, 58]);
        let c = !(ones_sum(acc, &icmp) as u16);
        icmp[2..4].copy_from_slice(&c.to_be_bytes());
        f.extend_from_slice(&[0x86, 0xdd, 0x60, 0, 0, 0]);
        f.extend_from_slice(&(icmp.len() as u16).to_be_bytes());
        f.extend_from_slice(&[58, 64]);
        f.extend_from_slice(&src.octets());
        f.extend_from_slice(&to);
        f.extend_from_slice(&icmp);
    } else {
        let mut icmp = vec![3, 4, 0, 0, 0, 0, 0x05, 0x78];
        icmp.extend_from_slice(ip);
        let c = !(ones_sum(0, &icmp) as u16);
        icmp[2..4].copy_from_slice(&c.to_be_bytes());
        let IpAddr::V4(src) = from else {
            panic!("family")
        };
        f.extend_from_slice(&[0x08, 0x00, 0x45, 0]);
        f.extend_from_slice(&((20 + icmp.len()) as u16).to_be_bytes());
        f.extend_from_slice(&[0, 0, 0, 0, 64, 1, 0, 0]);
        f.extend_from_slice(&src.octets());
        f.extend_from_slice(&ip[12..16]);
        let c = !(ones_sum(0, &f[14..34]) as u16);
        f[24..26].copy_from_slice(&c.to_be_bytes());
        f.extend_from_slice(&icmp);
    }
    f
}

/// An ICMP error checked from scratch: outer source and destination, and the quoted packet
/// (parsed, its checksums verified, by [`parse`]).
pub struct Error {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub quoted: Parsed,
}

pub fn check(f: &[u8]) -> Error {
    let v6 = f[12] == 0x86;
    let (src, dst, icmp) = if v6 {
        let plen = u16::from_be_bytes([f[18], f[19]]) as usize;
        let s: [u8; 16] = f[22..38].try_into().unwrap();
        let d: [u8; 16] = f[38..54].try_into().unwrap();
        let icmp = &f[54..54 + plen];
        let mut acc = ones_sum(0, &s);
        acc = ones_sum(acc, &d);
        acc = ones_sum(acc, &(plen as u32).to_be_bytes());
        acc = ones_sum(acc, &[0, 0, 0, 58]);
        assert_eq!(ones_sum(acc, icmp), 0xffff, "ICMPv6 checksum");
        (IpAddr::from(s), IpAddr::from(d), icmp)
    } else {
        assert_eq!(
            ones_sum(0, &f[14..34]),
            0xffff,
            "outer IPv4 header checksum"
        );
        let total = u16::from_be_bytes([f[16], f[17]]) as usize;
        let icmp = &f[34..14 + total];
        assert_eq!(ones_sum(0, icmp), 0xffff, "ICMP checksum");
        let s: [u8; 4] = f[26..30].try_into().unwrap();
        let d: [u8; 4] = f[30..34].try_into().unwrap();
        (IpAddr::from(s), IpAddr::from(d), icmp)
    };
    let mut inner = f[..12].to_vec();
    inner.extend_from_slice(if v6 { &[0x86, 0xdd] } else { &[0x08, 0x00] });
    inner.extend_from_slice(&icmp[8..]);
    Error {
        src,
        dst,
        quoted: parse(&inner),
    }
}
