//! The Internet checksum (RFC 1071), pseudo-header sums for TCP/UDP over IPv4 and IPv6,
//! and incremental updates per RFC 1624 (eqn. 3: `HC' = ~(~HC + ~m + m')`).
//!
//! Partial sums are `u64` accumulators of big-endian 16-bit words that are folded to 16 bits
//! only at the end; they can be added together freely.

/// Adds `data` as big-endian 16-bit words (an odd last byte is padded with zero) to `acc`.
#[inline]
pub fn sum_bytes(mut acc: u64, data: &[u8]) -> u64 {
    let mut chunks = data.chunks_exact(8);
    for c in &mut chunks {
        let w = u64::from_be_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
        acc += (w >> 48) + ((w >> 32) & 0xffff) + ((w >> 16) & 0xffff) + (w & 0xffff);
    }
    let mut words = chunks.remainder().chunks_exact(2);
    for w in &mut words {
        acc += u64::from(u16::from_be_bytes([w[0], w[1]]));
    }
    if let [last] = words.remainder() {
        acc += u64::from(*last) << 8;
    }
    acc
}

/// Folds a partial sum to 16 bits with end-around carry.
#[inline]
pub fn fold(acc: u64) -> u16 {
    // Branch-free: a fixed number of steps folds any u64 (a loop until the carry is gone
    // costs a data-dependent branch on every rewritten packet).
    let acc = (acc & 0xffff_ffff) + (acc >> 32); // < 2^33
    let acc = (acc & 0xffff) + (acc >> 16); // < 2^18
    let acc = (acc & 0xffff) + (acc >> 16); // <= 0xffff + 3
    let acc = (acc & 0xffff) + (acc >> 16); // < 2^16
    acc as u16
}

/// The Internet checksum of `data`: the one's complement of the one's-complement sum.
pub fn internet_checksum(data: &[u8]) -> u16 {
    !fold(sum_bytes(0, data))
}

/// The checksum to store in an IPv4 header; the checksum field (bytes 10..12) is ignored.
/// `header` is the whole header including options (IHL * 4 bytes).
pub fn ipv4_header_checksum(header: &[u8]) -> u16 {
    let acc = sum_bytes(0, &header[..10]);
    let acc = sum_bytes(acc, &header[12..]);
    !fold(acc)
}

/// Partial sum of the IPv4 pseudo header (source, destination, protocol, L4 length).
pub fn pseudo_header_v4(src: [u8; 4], dst: [u8; 4], protocol: u8, l4_len: u16) -> u64 {
    let acc = sum_bytes(0, &src);
    let acc = sum_bytes(acc, &dst);
    acc + u64::from(protocol) + u64::from(l4_len)
}

/// Partial sum of the IPv6 pseudo header (source, destination, upper-layer length, next header).
pub fn pseudo_header_v6(src: &[u8; 16], dst: &[u8; 16], protocol: u8, l4_len: u32) -> u64 {
    let acc = sum_bytes(0, src);
    let acc = sum_bytes(acc, dst);
    acc + u64::from(l4_len >> 16) + u64::from(l4_len & 0xffff) + u64::from(protocol)
}

/// The TCP/UDP checksum over `segment` (header + payload) with the given pseudo-header sum,
/// treating the 2 bytes at `csum_offset` (16 for TCP, 6 for UDP) as zero.
/// For UDP the caller maps a result of 0 to 0xffff.
pub fn l4_checksum(pseudo: u64, segment: &[u8], csum_offset: usize) -> u16 {
    let acc = sum_bytes(pseudo, &segment[..csum_offset]);
    let acc = sum_bytes(acc, &segment[csum_offset + 2..]);
    !fold(acc)
}

/// TCP/UDP checksum over IPv4 (see [`l4_checksum`]).
pub fn l4_checksum_v4(
    src: [u8; 4],
    dst: [u8; 4],
    protocol: u8,
    segment: &[u8],
    csum_offset: usize,
) -> u16 {
    l4_checksum(
        pseudo_header_v4(src, dst, protocol, segment.len() as u16),
        segment,
        csum_offset,
    )
}

/// TCP/UDP/ICMPv6 checksum over IPv6 (see [`l4_checksum`]).
pub fn l4_checksum_v6(
    src: &[u8; 16],
    dst: &[u8; 16],
    protocol: u8,
    segment: &[u8],
    csum_offset: usize,
) -> u16 {
    l4_checksum(
        pseudo_header_v6(src, dst, protocol, segment.len() as u32),
        segment,
        csum_offset,
    )
}

/// Whether `data` (with its checksum field in place) plus `pseudo` sums to 0xffff.
pub fn verify(pseudo: u64, data: &[u8]) -> bool {
    fold(sum_bytes(pseudo, data)) == 0xffff
}

/// RFC 1624 incremental update of checksum `hc` when a 16-bit field changes from `old` to `new`.
#[inline]
pub fn update16(hc: u16, old: u16, new: u16) -> u16 {
    let acc = u64::from(!hc) + u64::from(!old) + u64::from(new);
    !fold(acc)
}

/// RFC 1624 incremental update when a 32-bit field (e.g. an IPv4 address) changes.
#[inline]
pub fn update32(hc: u16, old: u32, new: u32) -> u16 {
    let acc = u64::from(!hc)
        + u64::from(!(old >> 16) as u16)
        + u64::from(!(old as u16))
        + u64::from(new >> 16)
        + u64::from(new & 0xffff);
    !fold(acc)
}

/// RFC 1624 incremental update when an even-length run of bytes (e.g. an IPv6 address)
/// changes from `old` to `new`. Panics if the lengths differ or are odd.
pub fn update_bytes(hc: u16, old: &[u8], new: &[u8]) -> u16 {
    assert!(
        old.len() == new.len() && old.len().is_multiple_of(2),
        "update_bytes: equal even lengths"
    );
    let mut acc = u64::from(!hc);
    for (o, n) in old.chunks_exact(2).zip(new.chunks_exact(2)) {
        acc += u64::from(!u16::from_be_bytes([o[0], o[1]]));
        acc += u64::from(u16::from_be_bytes([n[0], n[1]]));
    }
    !fold(acc)
}

/// [`update16`] for a UDP checksum over IPv4: 0 ("no checksum") stays 0, and a computed 0
/// is sent as 0xffff.
#[inline]
pub fn update16_udp(hc: u16, old: u16, new: u16) -> u16 {
    if hc == 0 {
        return 0;
    }
    match update16(hc, old, new) {
        0 => 0xffff,
        c => c,
    }
}

/// [`update32`] for a UDP checksum over IPv4 (see [`update16_udp`]).
#[inline]
pub fn update32_udp(hc: u16, old: u32, new: u32) -> u16 {
    if hc == 0 {
        return 0;
    }
    match update32(hc, old, new) {
        0 => 0xffff,
        c => c,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The textbook fold: add the carries back in until there are none.
    fn fold_reference(mut acc: u64) -> u16 {
        while acc >> 16 != 0 {
            acc = (acc & 0xffff) + (acc >> 16);
        }
        acc as u16
    }

    #[test]
    fn fold_edges() {
        for acc in [
            0,
            0xffff,
            0x1_0000,
            0x1_fffe,
            0xffff_ffff,
            0x3_fffc,
            u64::MAX,
        ] {
            assert_eq!(fold(acc), fold_reference(acc), "{acc:#x}");
        }
    }

    proptest! {
        #[test]
        fn fold_matches_the_reference(acc: u64) {
            prop_assert_eq!(fold(acc), fold_reference(acc));
        }

        #[test]
        fn fold_matches_the_reference_on_sums_of_words(words in proptest::collection::vec(any::<u16>(), 0..4096)) {
            let acc = words.iter().map(|&w| u64::from(w)).sum::<u64>();
            prop_assert_eq!(fold(acc), fold_reference(acc));
        }
    }
}
