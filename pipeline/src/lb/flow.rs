//! The load balancer's backend-selection hash over a [`FlowKey`] ([`FlowKey::hash`] for a
//! [`HashMode`]) and the stable name hashes of the Maglev permutations.
//!
//! Every hash here is a pure function of its input bytes with compile-time constants:
//! no per-process seed, no `RandomState`. Two dataplane replicas running the same
//! configuration therefore compute the same hash for the same flow, which is what makes
//! Maglev backend selection agree across replicas. The exact values are pinned by golden
//! tests; changing a constant or the mixing order is a behaviour change.
//!
//! The flow key itself sits below the `acl` and `lb` stages, in [`crate::flow_key`];
//! it is re-exported here for the load balancer's modules.

use serde::{Deserialize, Serialize};

use crate::flow_key::split;
pub use crate::flow_key::{
    hash5, FlowKey, IpFamily, PROTO_ICMP, PROTO_ICMPV6, PROTO_SCTP, PROTO_TCP, PROTO_UDP,
};

/// Which fields of a flow select the backend (the Maglev hash key).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HashMode {
    /// Source and destination address, source and destination port, protocol.
    #[default]
    FiveTuple,
    /// Source address and source port (plus family).
    SrcIpPort,
    /// Source address only (plus family): client affinity.
    SrcIp,
}

impl FlowKey {
    /// The stable hash of the fields selected by `mode`, for backend selection
    /// ([`crate::lb::maglev::Maglev::lookup`]). Direction-sensitive: a reply packet hashes
    /// differently (the load balancer only hashes client-to-service packets).
    #[inline]
    pub fn hash(&self, mode: HashMode) -> u64 {
        let (s0, s1) = split(&self.src);
        let fam = (self.family as u64) << 40;
        match mode {
            HashMode::FiveTuple => {
                let (d0, d1) = split(&self.dst);
                hash5(
                    s0,
                    s1,
                    d0,
                    d1,
                    self.src_port as u64
                        | (self.dst_port as u64) << 16
                        | (self.proto as u64) << 32
                        | fam,
                )
            }
            HashMode::SrcIpPort => hash5(s0, s1, 0, 0, self.src_port as u64 | fam | 1 << 48),
            HashMode::SrcIp => hash5(s0, s1, 0, 0, fam | 2 << 48),
        }
    }
}

/// 64-bit FNV-1a of `bytes` starting from `basis` (the standard offset basis is
/// [`FNV_OFFSET_BASIS`]).
pub fn fnv1a64_with_basis(bytes: &[u8], basis: u64) -> u64 {
    let mut h = basis;
    for &b in bytes {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// The standard 64-bit FNV offset basis.
pub const FNV_OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;

/// Standard 64-bit FNV-1a of `bytes`.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    fnv1a64_with_basis(bytes, FNV_OFFSET_BASIS)
}

/// The MurmurHash3 64-bit finaliser: a bijective avalanche mix.
#[inline]
pub fn fmix64(mut k: u64) -> u64 {
    k ^= k >> 33;
    k = k.wrapping_mul(0xff51_afd7_ed55_8ccd);
    k ^= k >> 33;
    k = k.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    k ^= k >> 33;
    k
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a_reference_vectors() {
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x8594_4171_f739_67e8);
    }

    fn sample() -> FlowKey {
        FlowKey::v4([10, 0, 0, 1], [192, 168, 1, 2], 40000, 80, PROTO_TCP)
    }

    #[test]
    fn golden_flow_hashes() {
        // Pinned values: a change of a `hash` value changes backend selection across a
        // rolling upgrade (`symmetric_hash`, pinned in `crate::flow_key`, only places
        // entries in a worker's own table).
        let k = sample();
        let k6 = FlowKey::v6(
            [0x20, 1, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
            [0xfd; 16],
            1234,
            443,
            PROTO_UDP,
        );
        let got = [
            k.hash(HashMode::FiveTuple),
            k.hash(HashMode::SrcIpPort),
            k.hash(HashMode::SrcIp),
            k6.hash(HashMode::FiveTuple),
            fmix64(1),
        ];
        let want: [u64; 5] = [
            0xed7b_ffa0_ddc5_1773,
            0xef1c_012c_481b_4ca5,
            0xdb2c_d083_44ef_8ccf,
            0xec79_e2eb_7817_a6ec,
            0xb456_bcfc_34c2_cb2c,
        ];
        assert_eq!(got, want, "got {got:#018x?}");
    }

    #[test]
    fn directional_hash_differs_by_direction() {
        let k = sample();
        assert_ne!(
            k.hash(HashMode::FiveTuple),
            k.reversed().hash(HashMode::FiveTuple)
        );
    }

    #[test]
    fn modes_select_fields() {
        let k = sample();
        let mut other_dst = k;
        other_dst.dst[3] = 99;
        other_dst.dst_port = 8080;
        assert_eq!(
            k.hash(HashMode::SrcIpPort),
            other_dst.hash(HashMode::SrcIpPort)
        );
        assert_eq!(k.hash(HashMode::SrcIp), other_dst.hash(HashMode::SrcIp));
        assert_ne!(
            k.hash(HashMode::FiveTuple),
            other_dst.hash(HashMode::FiveTuple)
        );
        let mut other_sport = k;
        other_sport.src_port = 1;
        assert_eq!(k.hash(HashMode::SrcIp), other_sport.hash(HashMode::SrcIp));
        assert_ne!(
            k.hash(HashMode::SrcIpPort),
            other_sport.hash(HashMode::SrcIpPort)
        );
        // Family is part of every key: 10.0.0.1 and the IPv6 address 0a00:0001:: differ.
        let mut as6 = k;
        as6.family = IpFamily::V6;
        assert_ne!(k.hash(HashMode::SrcIp), as6.hash(HashMode::SrcIp));
    }

    #[test]
    fn hash_bits_are_unbiased() {
        // Single-bit input changes flip each output bit about half the time.
        let base = sample();
        let mut flips = [0u32; 64];
        let mut n = 0u32;
        for byte in 0..4 {
            for bit in 0..8 {
                for port in 0..64u16 {
                    let mut a = base;
                    a.src_port = port;
                    let mut b = a;
                    b.src[byte] ^= 1 << bit;
                    let x = a.hash(HashMode::FiveTuple) ^ b.hash(HashMode::FiveTuple);
                    for (i, f) in flips.iter_mut().enumerate() {
                        *f += ((x >> i) & 1) as u32;
                    }
                    n += 1;
                }
            }
        }
        for (i, &f) in flips.iter().enumerate() {
            let p = f as f64 / n as f64;
            assert!((0.4..=0.6).contains(&p), "bit {i} flips with p={p}");
        }
    }
}
