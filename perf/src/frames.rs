//! Test frames for the traffic tools: Ethernet/IPv4/UDP with correct checksums.

/// An Ethernet/IPv4/UDP frame of `size` bytes (without FCS) from network `src_net` to
/// `dst_net`, flow number `flow`: source 10.(src_net+1).0.1 port 1024+(flow % 50000),
/// destination 10.(dst_net+1).(flow/256 % 256).(flow % 256) port 5001.
pub fn udp_frame(size: usize, src_net: u8, dst_net: u8, flow: u32) -> Vec<u8> {
    let size = size.max(60);
    let mut f = vec![0u8; size];
    f[0..6].copy_from_slice(&[0x02, 0, 0, 0, dst_net, 1]);
    f[6..12].copy_from_slice(&[0x02, 0, 0, 0, src_net, 1]);
    f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    let ip_len = (size - 14) as u16;
    let ip = &mut f[14..34];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&ip_len.to_be_bytes());
    ip[8] = 64;
    ip[9] = 17;
    ip[12..16].copy_from_slice(&[10, src_net.wrapping_add(1), 0, 1]);
    ip[16..20].copy_from_slice(&[10, dst_net.wrapping_add(1), (flow >> 8) as u8, flow as u8]);
    let csum = internet_checksum(&f[14..34]);
    f[24..26].copy_from_slice(&csum.to_be_bytes());
    let udp_len = ip_len - 20;
    let sport = 1024 + (flow % 50000) as u16;
    f[34..36].copy_from_slice(&sport.to_be_bytes());
    f[36..38].copy_from_slice(&5001u16.to_be_bytes());
    f[38..40].copy_from_slice(&udp_len.to_be_bytes());
    // UDP checksum 0 (allowed for IPv4) keeps templates cheap; the payload is zeroes.
    f
}

/// The Internet checksum (RFC 1071): the pipeline's, so frames and parser agree by construction.
pub use pipeline::wire::checksum::internet_checksum;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_header_checksum_verifies() {
        let f = udp_frame(64, 0, 1, 300);
        assert_eq!(f.len(), 64);
        assert_eq!(
            internet_checksum(&f[14..34]),
            0,
            "a valid header sums to zero"
        );
        assert_eq!(&f[26..30], &[10, 1, 0, 1]);
        assert_eq!(&f[30..34], &[10, 2, 1, 44]);
        assert_eq!(u16::from_be_bytes([f[16], f[17]]), 50);
    }
}
