//! The flow key: the 5-tuple (addresses, ports, protocol, family) of a packet in one
//! direction, and its direction-free hash, which the connection table
//! ([`crate::conntrack`]) places entries by. Both the `acl` and the `lb` stages read flows
//! through it, so it sits below both; the load balancer's backend-selection hash
//! ([`crate::lb::flow`]) is built on the same mixing step ([`hash5`]).
//!
//! Every hash here is a pure function of its input bytes with compile-time constants:
//! no per-process seed, no `RandomState`. The exact values are pinned by golden tests;
//! changing a constant or the mixing order is a behaviour change.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde::{Deserialize, Serialize};

/// IP protocol number of TCP.
pub const PROTO_TCP: u8 = 6;
/// IP protocol number of UDP.
pub const PROTO_UDP: u8 = 17;
/// IP protocol number of SCTP.
pub const PROTO_SCTP: u8 = 132;
/// IP protocol number of ICMP.
pub const PROTO_ICMP: u8 = 1;
/// IP protocol number of ICMPv6.
pub const PROTO_ICMPV6: u8 = 58;

/// Address family of a [`FlowKey`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[repr(u8)]
pub enum IpFamily {
    /// IPv4: the address occupies the first 4 bytes of the 16-byte field, the rest is zero.
    V4 = 4,
    /// IPv6: all 16 bytes are the address.
    V6 = 6,
}

impl IpFamily {
    /// The family of a parsed IP packet (IPv6 if `ip_version` is 6, else IPv4).
    #[inline(always)]
    pub fn of_meta(m: &crate::meta::PacketMeta) -> Self {
        if m.ip_version == 6 {
            IpFamily::V6
        } else {
            IpFamily::V4
        }
    }
}

/// The identity of a flow as seen in one direction: addresses, ports, protocol.
///
/// IPv4 addresses are stored in the first 4 bytes of the 16-byte fields (network byte
/// order) with the remaining 12 bytes zero; use [`FlowKey::v4`] / [`FlowKey::v6`] to build
/// keys so that this invariant holds. Ports are in host byte order. For protocols without
/// ports, set them to 0 (or, for ICMP echo, the identifier in `src_port` and 0 in `dst_port`).
///
/// 38 bytes, byte-aligned. `#[repr(align(8))]` (40 bytes, still one 64-byte connection-table
/// slot) was measured slower: the `lb` node at 1k flows 84-85 -> 105-111 cycles/packet, the
/// extra time on the store of each key into the node's scratch (`lb-bench`, interleaved).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FlowKey {
    /// Source address (see the type documentation for the IPv4 layout).
    pub src: [u8; 16],
    /// Destination address.
    pub dst: [u8; 16],
    /// Source port, host byte order.
    pub src_port: u16,
    /// Destination port, host byte order.
    pub dst_port: u16,
    /// IP protocol number (6 = TCP, 17 = UDP, ...).
    pub proto: u8,
    /// Address family.
    pub family: IpFamily,
}

impl Default for FlowKey {
    fn default() -> Self {
        Self {
            src: [0; 16],
            dst: [0; 16],
            src_port: 0,
            dst_port: 0,
            proto: 0,
            family: IpFamily::V4,
        }
    }
}

impl FlowKey {
    /// The 5-tuple of a parsed packet (IPv6 if `ip_version` is 6, else IPv4).
    #[inline(always)]
    pub fn from_meta(m: &crate::meta::PacketMeta) -> Self {
        Self {
            src: m.src_addr,
            dst: m.dst_addr,
            src_port: m.src_port,
            dst_port: m.dst_port,
            proto: m.protocol,
            family: IpFamily::of_meta(m),
        }
    }

    /// An IPv4 flow key from address octets (network order) and host-order ports.
    pub fn v4(src: [u8; 4], dst: [u8; 4], src_port: u16, dst_port: u16, proto: u8) -> Self {
        let mut s = [0u8; 16];
        let mut d = [0u8; 16];
        s[..4].copy_from_slice(&src);
        d[..4].copy_from_slice(&dst);
        Self {
            src: s,
            dst: d,
            src_port,
            dst_port,
            proto,
            family: IpFamily::V4,
        }
    }

    /// An IPv6 flow key from address octets (network order) and host-order ports.
    pub fn v6(src: [u8; 16], dst: [u8; 16], src_port: u16, dst_port: u16, proto: u8) -> Self {
        Self {
            src,
            dst,
            src_port,
            dst_port,
            proto,
            family: IpFamily::V6,
        }
    }

    /// A flow key from `std` addresses; `None` when the two families differ.
    pub fn from_addrs(
        src: IpAddr,
        dst: IpAddr,
        src_port: u16,
        dst_port: u16,
        proto: u8,
    ) -> Option<Self> {
        match (src, dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                Some(Self::v4(s.octets(), d.octets(), src_port, dst_port, proto))
            }
            (IpAddr::V6(s), IpAddr::V6(d)) => {
                Some(Self::v6(s.octets(), d.octets(), src_port, dst_port, proto))
            }
            _ => None,
        }
    }

    /// The source address as a `std` address.
    pub fn src_addr(&self) -> IpAddr {
        addr_of(self.family, &self.src)
    }

    /// The destination address as a `std` address.
    pub fn dst_addr(&self) -> IpAddr {
        addr_of(self.family, &self.dst)
    }

    /// The key of the reply direction: source and destination (addresses and ports) swapped.
    #[inline]
    pub fn reversed(&self) -> Self {
        Self {
            src: self.dst,
            dst: self.src,
            src_port: self.dst_port,
            dst_port: self.src_port,
            proto: self.proto,
            family: self.family,
        }
    }

    /// A stable hash of the full 5-tuple that is the same for both directions of a flow:
    /// `k.symmetric_hash() == k.reversed().symmetric_hash()`. Used by the connection table.
    ///
    /// Each endpoint (address, port) is hashed alone and the two are combined by a sum and
    /// an xor, which ignore their order. Ordering the endpoints first and hashing the
    /// ordered pair costs a compare whose outcome follows the packet's direction, a branch
    /// that mispredicts on mixed traffic; measured against it (interleaved runs, same
    /// machine): `lb-bench` at 1k flows 54-55 -> 52-53 cycles/packet (traffic of one
    /// direction, the branch predicted), the `lb` node in the vhost benchmark's full
    /// pipeline (both directions) 78-87 -> 67-76 together with the TCP fast path of
    /// [`crate::conntrack::ConnTrack::update_tcp`].
    #[inline]
    pub fn symmetric_hash(&self) -> u64 {
        // Each endpoint hashed alone, then combined by operations that ignore the order
        // (no compare: which way a packet travels is not predictable).
        let end = |addr: &[u8; 16], port: u16| {
            let (lo, hi) = split(addr);
            fold(lo ^ P0, hi ^ P1 ^ (u64::from(port) << 40))
        };
        let (ea, eb) = (end(&self.src, self.src_port), end(&self.dst, self.dst_port));
        fold(
            ea.wrapping_add(eb) ^ P2,
            (ea ^ eb) ^ P3 ^ ((self.proto as u64) << 32 | (self.family as u64) << 40),
        )
    }
}

fn addr_of(family: IpFamily, a: &[u8; 16]) -> IpAddr {
    match family {
        IpFamily::V4 => IpAddr::V4(Ipv4Addr::new(a[0], a[1], a[2], a[3])),
        IpFamily::V6 => IpAddr::V6(Ipv6Addr::from(*a)),
    }
}

/// The two little-endian 64-bit halves of a 16-byte address field.
#[inline(always)]
pub(crate) fn split(a: &[u8; 16]) -> (u64, u64) {
    let v = u128::from_le_bytes(*a);
    (v as u64, (v >> 64) as u64)
}

const P0: u64 = 0xa076_1d64_78bd_642f;
const P1: u64 = 0xe703_7ed1_a0b4_28db;
const P2: u64 = 0x8ebc_6af0_9c88_c6e3;
const P3: u64 = 0x5899_65cc_7537_4cc3;
const P4: u64 = 0x1d8e_4e27_c47d_124f;

/// 64x64 -> 128-bit multiply, folded by xoring the halves (the wyhash mixing step).
#[inline(always)]
fn fold(a: u64, b: u64) -> u64 {
    let r = (a as u128).wrapping_mul(b as u128);
    (r as u64) ^ ((r >> 64) as u64)
}

/// Stable hash of five 64-bit words (three folded multiplies).
#[inline(always)]
pub fn hash5(w0: u64, w1: u64, w2: u64, w3: u64, w4: u64) -> u64 {
    let a = fold(w0 ^ P0, w1 ^ P1);
    let b = fold(w2 ^ P2, w3 ^ P3);
    fold(a ^ w4 ^ P4, b ^ P0 ^ w4.rotate_left(32))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> FlowKey {
        FlowKey::v4([10, 0, 0, 1], [192, 168, 1, 2], 40000, 80, PROTO_TCP)
    }

    #[test]
    fn golden_symmetric_hashes() {
        // Pinned values: the connection table's slots and tags come from these.
        let k6 = FlowKey::v6(
            [0x20, 1, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
            [0xfd; 16],
            1234,
            443,
            PROTO_UDP,
        );
        let got = [
            sample().symmetric_hash(),
            k6.symmetric_hash(),
            hash5(0, 0, 0, 0, 0),
        ];
        let want: [u64; 3] = [
            0xba2b_c370_2981_f0c8,
            0x2659_4dfb_ce94_ba12,
            0xb441_ec8d_b2e6_7633,
        ];
        assert_eq!(got, want, "got {got:#018x?}");
    }

    #[test]
    fn symmetric_hash_is_symmetric() {
        let k = sample();
        assert_eq!(k.symmetric_hash(), k.reversed().symmetric_hash());
        assert_eq!(k.reversed().reversed(), k);
    }

    #[test]
    fn addr_round_trip() {
        let k = sample();
        let back = FlowKey::from_addrs(k.src_addr(), k.dst_addr(), k.src_port, k.dst_port, k.proto)
            .unwrap();
        assert_eq!(back, k);
        assert!(
            FlowKey::from_addrs(k.src_addr(), IpAddr::V6(Ipv6Addr::LOCALHOST), 1, 2, 6).is_none()
        );
    }

    proptest::proptest! {
        /// Any key and its reverse land in the same place, whatever the addresses, ports,
        /// protocol and family.
        #[test]
        fn symmetric_hash_ignores_direction(
            src in proptest::prelude::any::<[u8; 16]>(),
            dst in proptest::prelude::any::<[u8; 16]>(),
            src_port: u16,
            dst_port: u16,
            proto: u8,
            v6: bool,
        ) {
            let family = if v6 { IpFamily::V6 } else { IpFamily::V4 };
            let k = FlowKey { src, dst, src_port, dst_port, proto, family };
            proptest::prop_assert_eq!(k.symmetric_hash(), k.reversed().symmetric_hash());
        }
    }

    #[test]
    fn symmetric_hash_bits_are_unbiased() {
        // Single-bit changes of either address or either port flip each output bit about
        // half the time (the table's slot comes from the low bits, the tag from the top byte).
        let base = sample();
        let mut flips = [0u32; 64];
        let mut n = 0u32;
        let mut count = |a: &FlowKey, b: &FlowKey| {
            let x = a.symmetric_hash() ^ b.symmetric_hash();
            for (i, f) in flips.iter_mut().enumerate() {
                *f += ((x >> i) & 1) as u32;
            }
            n += 1;
        };
        for port in 0..64u16 {
            let mut a = base;
            a.dst_port = port;
            for bit in 0..32 {
                for end in 0..2 {
                    let mut b = a;
                    let addr = if end == 0 { &mut b.src } else { &mut b.dst };
                    addr[bit / 8] ^= 1 << (bit % 8);
                    count(&a, &b);
                }
            }
            for bit in 0..16 {
                let (mut b, mut c) = (a, a);
                b.src_port ^= 1 << bit;
                c.dst_port ^= 1 << bit;
                count(&a, &b);
                count(&a, &c);
            }
        }
        for (i, &f) in flips.iter().enumerate() {
            let p = f as f64 / n as f64;
            assert!((0.4..=0.6).contains(&p), "bit {i} flips with p={p}");
        }
    }
}
