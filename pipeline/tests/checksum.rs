//! Checksum helpers against full recomputation, including after random incremental changes.

mod common;

use common::{be16, ref_checksum};
use pipeline::wire::checksum::*;
use proptest::prelude::*;

fn set16(b: &mut [u8], off: usize, v: u16) {
    b[off..off + 2].copy_from_slice(&v.to_be_bytes());
}

fn be32(b: &[u8], off: usize) -> u32 {
    u32::from_be_bytes(b[off..off + 4].try_into().unwrap())
}

#[derive(Debug, Clone)]
enum Change {
    Word { idx: usize, value: u16 },
    Addr { dst: bool, value: u32 },
}

fn arb_change() -> impl Strategy<Value = Change> {
    prop_oneof![
        (0usize..9, any::<u16>()).prop_map(|(idx, value)| Change::Word { idx, value }),
        (any::<bool>(), any::<u32>()).prop_map(|(dst, value)| Change::Addr { dst, value }),
    ]
}

proptest! {
    #[test]
    fn internet_checksum_matches_reference(data in prop::collection::vec(any::<u8>(), 0..200)) {
        prop_assert_eq!(internet_checksum(&data), ref_checksum(&data));
        let mut with = data.clone();
        if with.len() % 2 == 1 {
            with.push(0);
        }
        let c = internet_checksum(&with);
        with.extend_from_slice(&c.to_be_bytes());
        prop_assert!(verify(0, &with));
    }

    #[test]
    fn ipv4_header_incremental_equals_recompute(mut h in prop::collection::vec(any::<u8>(), 20), changes in prop::collection::vec(arb_change(), 1..20)) {
        h[0] = 0x45;
        let c = ipv4_header_checksum(&h);
        set16(&mut h, 10, c);
        prop_assert_eq!(ref_checksum(&h), 0);
        for ch in changes {
            let hc = be16(&h, 10);
            match ch {
                Change::Word { idx, value } => {
                    // Any 16-bit word but the checksum itself (word 5).
                    let off = if idx >= 5 { 2 * (idx + 1) } else { 2 * idx };
                    let old = be16(&h, off);
                    set16(&mut h, off, value);
                    set16(&mut h, 10, update16(hc, old, value));
                }
                Change::Addr { dst, value } => {
                    let off = if dst { 16 } else { 12 };
                    let old = be32(&h, off);
                    h[off..off + 4].copy_from_slice(&value.to_be_bytes());
                    set16(&mut h, 10, update32(hc, old, value));
                }
            }
            prop_assert_eq!(be16(&h, 10), ipv4_header_checksum(&h), "incremental == recomputed");
            prop_assert_eq!(ref_checksum(&h), 0);
        }
    }

    #[test]
    fn l4_pseudo_header_v4_incremental(seg in prop::collection::vec(any::<u8>(), 8..60), src in any::<[u8; 4]>(), dst in any::<[u8; 4]>(),
                                       new_src in any::<[u8; 4]>(), new_port in any::<u16>()) {
        // A TCP-like segment: checksum at offset 16 needs >= 18 bytes; use UDP's offset 6.
        let mut seg = seg;
        let c = l4_checksum_v4(src, dst, 17, &seg, 6);
        set16(&mut seg, 6, c);
        prop_assert!(verify(pseudo_header_v4(src, dst, 17, seg.len() as u16), &seg));
        // NAT: new source address (pseudo header) and new source port, incrementally.
        let mut hc = be16(&seg, 6);
        hc = update32(hc, u32::from_be_bytes(src), u32::from_be_bytes(new_src));
        let old_port = be16(&seg, 0);
        set16(&mut seg, 0, new_port);
        hc = update16(hc, old_port, new_port);
        set16(&mut seg, 6, hc);
        prop_assert_eq!(hc, l4_checksum_v4(new_src, dst, 17, &seg, 6));
    }

    #[test]
    fn l4_pseudo_header_v6_incremental(seg in prop::collection::vec(any::<u8>(), 20..60), src in any::<[u8; 16]>(), dst in any::<[u8; 16]>(), new_dst in any::<[u8; 16]>()) {
        let mut seg = seg;
        let c = l4_checksum_v6(&src, &dst, 6, &seg, 16);
        set16(&mut seg, 16, c);
        prop_assert!(verify(pseudo_header_v6(&src, &dst, 6, seg.len() as u32), &seg));
        let hc = update_bytes(be16(&seg, 16), &dst, &new_dst);
        prop_assert_eq!(hc, l4_checksum_v6(&src, &new_dst, 6, &seg, 16));
    }

    #[test]
    fn udp_update_keeps_zero_and_never_produces_zero(hc in any::<u16>(), old in any::<u16>(), new in any::<u16>()) {
        prop_assert_eq!(update16_udp(0, old, new), 0);
        if hc != 0 {
            prop_assert_ne!(update16_udp(hc, old, new), 0);
        }
    }

    #[test]
    fn partial_sums_add(a in prop::collection::vec(any::<u8>(), 0..50), b in prop::collection::vec(any::<u8>(), 0..50)) {
        // Sums of even-length pieces can be added.
        let mut a = a;
        if a.len() % 2 == 1 {
            a.pop();
        }
        let whole: Vec<u8> = a.iter().chain(b.iter()).copied().collect();
        prop_assert_eq!(fold(sum_bytes(sum_bytes(0, &a), &b)), fold(sum_bytes(0, &whole)));
    }
}
