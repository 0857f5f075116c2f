//! CRC32c (Castagnoli, reflected polynomial 0x82F63B78), the checksum of SCTP packets
//! (RFC 9260 appendix A, as RFC 3309): computed over the whole SCTP packet with its
//! checksum field zero, and sent least significant byte first ([`sctp_checksum_bytes`]).
//! One table lookup per byte: the only SCTP packets written here are short (the reject
//! path's ABORT), so a wider slicing or the SSE4.2 instruction would not pay.

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

    proptest! {
        #[test]
        fn table_matches_the_bitwise_definition(data in proptest::collection::vec(any::<u8>(), 0..300)) {
            prop_assert_eq!(crc32c(&data), bitwise(&data));
        }
    }
}
