//! CRC32c (Castagnoli, reflected polynomial 0x82F63B78), the checksum of SCTP packets
//! (RFC 9260 appendix A, as RFC 3309): computed over the whole SCTP packet with its
//! checksum field zero, and sent least significant byte first ([`sctp_checksum_bytes`]).
//! One table lookup per byte: the only SCTP packets written here whole are short (the
//! reject path's ABORT), so a wider slicing or the SSE4.2 instruction would not pay.
//!
//! A rewrite of a few bytes (the load balancer's NAT of SCTP ports) updates the checksum
//! instead of reading the packet again ([`sctp_checksum_fixup`]): a CRC is affine, so
//! `crc(A) ^ crc(B)` is the CRC without initial value and final complement of `A ^ B`,
//! which is zero but for the changed bytes; the bytes after them are zeros, whose effect on
//! the register is a fixed linear map for each length, applied as the product of
//! compile-time maps for the length's powers of two (at most 16 of them, each a 32x32 bit
//! matrix). As OVS's own SCTP port rewrite, a checksum that was wrong stays exactly as
//! wrong, so a receiver still drops a damaged packet.

/// The reflected Castagnoli polynomial.
const POLY: u32 = 0x82F6_3B78;

/// The byte-at-a-time table, built at compile time.
const TABLE: [u32; 256] = {
    let mut t = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 { (c >> 1) ^ POLY } else { c >> 1 };
            k += 1;
        }
        t[i] = c;
        i += 1;
    }
    t
};

/// The CRC32c of `data` (initial value all ones, final complement: the usual CRC32c, e.g.
/// 0xE3069283 for `b"123456789"`).
pub fn crc32c(data: &[u8]) -> u32 {
    let mut c = !0u32;
    for &b in data {
        c = TABLE[((c ^ u32::from(b)) & 0xff) as usize] ^ (c >> 8);
    }
    !c
}

/// The four bytes to store in an SCTP common header's checksum field for the SCTP packet
/// `sctp` (its checksum field must be zero while this runs).
pub fn sctp_checksum_bytes(sctp: &[u8]) -> [u8; 4] {
    crc32c(sctp).to_le_bytes()
}

/// The register after one zero byte from register `c` (no initial value, no complement).
const fn zero_byte(c: u32) -> u32 {
    TABLE[(c & 0xff) as usize] ^ (c >> 8)
}

/// A linear map of the 32-bit register as its 32 columns: column `i` is the image of bit
/// `i`.
type Map = [u32; 32];

/// The image of `v` under `m` (the columns of `v`'s set bits, XORed).
const fn apply(m: &Map, mut v: u32) -> u32 {
    let mut r = 0;
    while v != 0 {
        r ^= m[v.trailing_zeros() as usize];
        v &= v - 1;
    }
    r
}

/// Most zero bytes a fixup extends over: 2^16 - 1 (an IP packet's length field).
const ZERO_MAPS: usize = 16;

/// `ZEROS[k]`: the register after 2^k zero bytes, as a map of the register before.
const ZEROS: [Map; ZERO_MAPS] = {
    let mut maps = [[0u32; 32]; ZERO_MAPS];
    let mut i = 0;
    while i < 32 {
        maps[0][i] = zero_byte(1 << i);
        i += 1;
    }
    let mut k = 1;
    while k < ZERO_MAPS {
        let mut i = 0;
        while i < 32 {
            maps[k][i] = apply(&maps[k - 1], maps[k - 1][i]);
            i += 1;
        }
        k += 1;
    }
    maps
};

/// The register `c` after `n` zero bytes (`n` below 2^16).
fn over_zeros(mut c: u32, n: usize) -> u32 {
    debug_assert!(n < 1 << ZERO_MAPS);
    let mut n = n & ((1 << ZERO_MAPS) - 1);
    while n != 0 {
        c = apply(&ZEROS[n.trailing_zeros() as usize], c);
        n &= n - 1;
    }
    c
}

/// The checksum field of an SCTP packet of `len` bytes whose first four bytes (the ports)
/// change from `old` to `new`, given the field `field` as it was (bytes as sent). The rest
/// of the packet is unchanged. A correct checksum stays correct and a wrong one stays
/// exactly as wrong. `len` below 4 (no such SCTP packet) returns `field`.
pub fn sctp_checksum_fixup(field: [u8; 4], old: [u8; 4], new: [u8; 4], len: usize) -> [u8; 4] {
    if len < 4 {
        return field;
    }
    let mut c = 0u32;
    for i in 0..4 {
        c = zero_byte(c ^ u32::from(old[i] ^ new[i]));
    }
    let d = over_zeros(c, len - 4).to_le_bytes();
    [
        field[0] ^ d[0],
        field[1] ^ d[1],
        field[2] ^ d[2],
        field[3] ^ d[3],
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Bit at a time, straight from the definition: the reference the table is checked
    /// against.
    fn bitwise(data: &[u8]) -> u32 {
        let mut c = !0u32;
        for &b in data {
            c ^= u32::from(b);
            for _ in 0..8 {
                c = if c & 1 != 0 { (c >> 1) ^ POLY } else { c >> 1 };
            }
        }
        !c
    }

    #[test]
    fn check_value_and_rfc_3720_vectors() {
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
        // RFC 3720 B.4, the bytes as sent (the same order SCTP uses).
        let zeros = [0u8; 32];
        let ones = [0xffu8; 32];
        let up: Vec<u8> = (0..32).collect();
        let down: Vec<u8> = (0..32).rev().collect();
        assert_eq!(sctp_checksum_bytes(&zeros), [0xaa, 0x36, 0x91, 0x8a]);
        assert_eq!(sctp_checksum_bytes(&ones), [0x43, 0xab, 0xa8, 0x62]);
        assert_eq!(sctp_checksum_bytes(&up), [0x4e, 0x79, 0xdd, 0x46]);
        assert_eq!(sctp_checksum_bytes(&down), [0x5c, 0xdb, 0x3f, 0x11]);
        assert_eq!(crc32c(&[]), 0);
    }

    /// `p` with its checksum field (bytes 8..12) zeroed and then set to its CRC32c.
    fn with_checksum(mut p: Vec<u8>) -> Vec<u8> {
        p[8..12].fill(0);
        let c = sctp_checksum_bytes(&p);
        p[8..12].copy_from_slice(&c);
        p
    }

    #[test]
    fn fixup_of_a_short_packet_and_a_long_one() {
        for len in [12usize, 16, 48, 1480, 9000, 65_000] {
            let p: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
            let before = with_checksum(p);
            let mut after = before.clone();
            after[..4].copy_from_slice(&[0x9c, 0x4c, 0x96, 0x0c]);
            let want = with_checksum(after.clone());
            let got = sctp_checksum_fixup(
                before[8..12].try_into().unwrap(),
                before[..4].try_into().unwrap(),
                after[..4].try_into().unwrap(),
                len,
            );
            assert_eq!(got, want[8..12], "len {len}");
        }
    }

    proptest! {
        /// Against the definition: the fixed-up field equals the CRC32c of the rewritten
        /// packet read whole, and a wrong field stays wrong by the same bits.
        #[test]
        fn fixup_equals_a_recomputed_checksum(
            body in proptest::collection::vec(any::<u8>(), 12..2000),
            new in any::<[u8; 4]>(),
            damage in any::<u32>(),
        ) {
            let before = with_checksum(body);
            let mut after = before.clone();
            after[..4].copy_from_slice(&new);
            let want = with_checksum(after.clone());
            let field: [u8; 4] = before[8..12].try_into().unwrap();
            let old: [u8; 4] = before[..4].try_into().unwrap();
            let len = before.len();
            prop_assert_eq!(&sctp_checksum_fixup(field, old, new, len)[..], &want[8..12]);
            let bad = (u32::from_le_bytes(field) ^ damage).to_le_bytes();
            let fixed = u32::from_le_bytes(sctp_checksum_fixup(bad, old, new, len));
            prop_assert_eq!(fixed ^ u32::from_le_bytes(want[8..12].try_into().unwrap()), damage);
        }

        #[test]
        fn table_matches_the_bitwise_definition(data in proptest::collection::vec(any::<u8>(), 0..300)) {
            prop_assert_eq!(crc32c(&data), bitwise(&data));
        }
    }
}
