//! Every wire view against the reference decoders of `common`: random headers are encoded,
//! then decoded by both; random byte strings must be accepted or rejected alike.

mod common;

use common::*;
use pipeline::wire::{
    checksum, walk_ipv6_ext, ArpPacket, EthernetFrame, Icmpv4Packet, Icmpv6Packet, Ipv4Packet,
    Ipv6Packet, MacAddr, TcpPacket, UdpPacket, VlanTag, WireError,
};
use proptest::prelude::*;
use std::net::{Ipv4Addr, Ipv6Addr};

fn bytes_upto(n: usize) -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..n)
}

/// Random bytes whose first byte is often a plausible version/IHL or data offset.
fn header_like(first: Vec<u8>, n: usize) -> impl Strategy<Value = Vec<u8>> {
    (prop::sample::select(first), bytes_upto(n)).prop_map(|(b0, mut v)| {
        if !v.is_empty() {
            v[0] = b0;
        }
        v
    })
}

fn err_name(e: WireError) -> &'static str {
    match e {
        WireError::Truncated => "truncated",
        WireError::BadVersion => "version",
        WireError::BadHeaderLength => "ihl",
        WireError::BadTotalLength => "total",
        WireError::TooManyExtHeaders => "too many",
    }
}

proptest! {
    #[test]
    fn ethernet(h in arb_eth(0x0800), payload in bytes_upto(40), new_src in any::<[u8; 6]>()) {
        let mut bytes = h.encode();
        bytes.extend_from_slice(&payload);
        let v = EthernetFrame::new_checked(&bytes[..]).unwrap();
        let r = ref_eth(&bytes).unwrap();
        prop_assert_eq!(v.dst_addr().0, r.dst);
        prop_assert_eq!(v.src_addr().0, r.src);
        prop_assert_eq!(v.ethertype(), r.ethertype);
        prop_assert_eq!(v.payload(), &payload[..]);
        let mut m = EthernetFrame::new_checked(&mut bytes[..]).unwrap();
        m.swap_addrs();
        m.set_src_addr(MacAddr(new_src));
        m.set_ethertype(0x86dd);
        let r2 = ref_eth(&bytes).unwrap();
        prop_assert_eq!((r2.dst, r2.src, r2.ethertype), (h.src, new_src, 0x86dd));
    }

    #[test]
    fn ethernet_short(bytes in bytes_upto(20)) {
        prop_assert_eq!(EthernetFrame::new_checked(&bytes[..]).is_ok(), ref_eth(&bytes).is_some());
    }

    #[test]
    fn vlan(tci in any::<u16>(), et in any::<u16>(), vid in any::<u16>(), len in 0usize..6) {
        let mut bytes = VlanHdr { tci, ethertype: et }.encode();
        bytes.resize(len.max(4), 0);
        bytes.truncate(len);
        prop_assert_eq!(VlanTag::new_checked(&bytes[..]).is_ok(), ref_vlan(&bytes).is_some());
        if let Ok(v) = VlanTag::new_checked(&bytes[..]) {
            prop_assert_eq!(v.tci(), tci);
            prop_assert_eq!(v.vid(), tci & 0xfff);
            prop_assert_eq!(v.pcp(), (tci >> 13) as u8);
            prop_assert_eq!(v.dei(), tci & 0x1000 != 0);
            prop_assert_eq!(v.ethertype(), et);
            let mut m = VlanTag::new_unchecked(&mut bytes[..]);
            m.set_vid(vid);
            prop_assert_eq!(ref_vlan(&bytes).unwrap().tci, (tci & 0xf000) | (vid & 0xfff));
        }
    }

    #[test]
    fn arp(h in arb_arp(), len in 0usize..40) {
        let mut bytes = h.encode();
        bytes.resize(len, 0);
        let view = ArpPacket::new_checked(&bytes[..]);
        prop_assert_eq!(view.is_ok(), ref_arp(&bytes).is_some());
        if let (Ok(v), Some(r)) = (view, ref_arp(&bytes)) {
            prop_assert_eq!(r.clone(), h.clone());
            prop_assert_eq!((v.hardware_type(), v.protocol_type(), v.operation()), (r.htype, r.ptype, r.oper));
            prop_assert_eq!((v.hardware_len(), v.protocol_len()), (6, 4));
            prop_assert_eq!(v.sender_hardware_addr(), &r.sha[..]);
            prop_assert_eq!(v.sender_protocol_addr(), &r.spa[..]);
            prop_assert_eq!(v.target_hardware_addr(), &r.tha[..]);
            prop_assert_eq!(v.target_protocol_addr(), &r.tpa[..]);
            let mut m = ArpPacket::new_checked(&mut bytes[..]).unwrap();
            m.set_operation(2);
            m.target_protocol_addr_mut().copy_from_slice(&[9, 9, 9, 9]);
            let r2 = ref_arp(&bytes).unwrap();
            prop_assert_eq!((r2.oper, r2.tpa), (2, [9, 9, 9, 9]));
        }
    }

    #[test]
    fn ipv4_valid(l3 in arb_l4(false).prop_flat_map(arb_ipv4), payload in bytes_upto(30)) {
        let L3Model::V4 { mut hdr, .. } = l3 else { unreachable!() };
        hdr.total_len = (usize::from(hdr.ihl) * 4 + payload.len()) as u16;
        let mut bytes = hdr.encode_with_checksum();
        bytes.extend_from_slice(&payload);
        let v = Ipv4Packet::new_checked(&bytes[..]).unwrap();
        let r = ref_ipv4(&bytes).unwrap();
        prop_assert_eq!(r.src, hdr.src);
        prop_assert_eq!(v.version(), 4);
        prop_assert_eq!(v.header_len(), usize::from(r.ihl) * 4);
        prop_assert_eq!((v.dscp() << 2) | v.ecn(), r.tos);
        prop_assert_eq!(v.total_len(), r.total_len);
        prop_assert_eq!(v.ident(), r.ident);
        prop_assert_eq!(v.flags_frag(), r.flags_frag);
        prop_assert_eq!(v.dont_frag(), r.flags_frag & 0x4000 != 0);
        prop_assert_eq!(v.more_frags(), r.flags_frag & 0x2000 != 0);
        prop_assert_eq!(v.frag_offset(), (r.flags_frag & 0x1fff) * 8);
        prop_assert_eq!(v.is_fragment(), r.flags_frag & 0x3fff != 0);
        prop_assert_eq!((v.ttl(), v.protocol(), v.checksum()), (r.ttl, r.protocol, r.checksum));
        prop_assert_eq!(v.src_addr().octets(), r.src);
        prop_assert_eq!(v.dst_addr().octets(), r.dst);
        prop_assert_eq!(v.options(), &r.options[..]);
        prop_assert_eq!(v.payload(), &payload[..]);
        prop_assert!(v.verify_checksum());
    }

    #[test]
    fn ipv4_any_bytes(bytes in header_like(vec![0x45, 0x46, 0x4f, 0x44, 0x40, 0x65, 0x75, 0x00], 90), total in prop::option::of(0u16..100)) {
        let mut bytes = bytes;
        if let (Some(t), true) = (total, bytes.len() >= 4) {
            bytes[2..4].copy_from_slice(&t.to_be_bytes());
        }
        let view = Ipv4Packet::new_checked(&bytes[..]);
        match (view, ref_ipv4(&bytes)) {
            (Ok(v), Ok(r)) => {
                prop_assert_eq!(v.total_len(), r.total_len);
                prop_assert_eq!(v.options(), &r.options[..]);
                prop_assert_eq!(v.payload().len(), usize::from(r.total_len) - usize::from(r.ihl) * 4);
            }
            (Err(e), Err(r)) => prop_assert_eq!(err_name(e), r),
            (v, r) => prop_assert!(false, "view {:?} vs reference {:?}", v.map(|_| ()), r.map(|_| ())),
        }
    }

    #[test]
    fn ipv4_setters(l3 in arb_l4(false).prop_flat_map(arb_ipv4), src in any::<[u8; 4]>(), dst in any::<[u8; 4]>(), ttl in any::<u8>()) {
        let L3Model::V4 { mut hdr, .. } = l3 else { unreachable!() };
        hdr.total_len = u16::from(hdr.ihl) * 4;
        let mut bytes = hdr.encode_with_checksum();
        let hl = bytes.len();
        let mut v = Ipv4Packet::new_checked(&mut bytes[..]).unwrap();
        v.set_src_addr_update_checksum(Ipv4Addr::from(src));
        v.set_dst_addr_update_checksum(Ipv4Addr::from(dst));
        v.decrement_ttl();
        let r = ref_ipv4(&bytes).unwrap();
        prop_assert_eq!((r.src, r.dst, r.ttl), (src, dst, hdr.ttl.saturating_sub(1)));
        prop_assert_eq!(ref_checksum(&bytes[..hl]), 0, "incremental updates keep the header checksum valid");
        let mut v = Ipv4Packet::new_checked(&mut bytes[..]).unwrap();
        v.set_ttl(ttl);
        v.fill_checksum();
        prop_assert_eq!(ref_checksum(&bytes[..hl]), 0);
        prop_assert_eq!(ref_ipv4(&bytes).unwrap().ttl, ttl);
    }

    #[test]
    fn ipv6_valid(l3 in arb_l4(true).prop_flat_map(arb_ipv6), payload in bytes_upto(30), src in any::<[u8; 16]>()) {
        let L3Model::V6 { mut hdr, .. } = l3 else { unreachable!() };
        hdr.payload_len = payload.len() as u16;
        let mut bytes = hdr.encode();
        bytes.extend_from_slice(&payload);
        let v = Ipv6Packet::new_checked(&bytes[..]).unwrap();
        let r = ref_ipv6(&bytes).unwrap();
        prop_assert_eq!(r.clone(), hdr.clone());
        prop_assert_eq!((v.version(), v.traffic_class(), v.flow_label()), (6, r.tc, r.flow));
        prop_assert_eq!((v.payload_len(), v.next_header(), v.hop_limit()), (r.payload_len, r.next, r.hop));
        prop_assert_eq!(v.src_bytes(), r.src);
        prop_assert_eq!(v.dst_addr().octets(), r.dst);
        prop_assert_eq!(v.payload(), &payload[..]);
        let mut m = Ipv6Packet::new_checked(&mut bytes[..]).unwrap();
        m.set_src_addr(Ipv6Addr::from(src));
        m.set_hop_limit(1);
        m.set_version_tc_flow(7, 0x12345);
        let r2 = ref_ipv6(&bytes).unwrap();
        prop_assert_eq!((r2.src, r2.hop, r2.tc, r2.flow), (src, 1, 7, 0x12345));
    }

    #[test]
    fn ipv6_any_bytes(bytes in header_like(vec![0x60, 0x61, 0x40, 0x70], 80), plen in prop::option::of(0u16..60)) {
        let mut bytes = bytes;
        if let (Some(p), true) = (plen, bytes.len() >= 6) {
            bytes[4..6].copy_from_slice(&p.to_be_bytes());
        }
        match (Ipv6Packet::new_checked(&bytes[..]), ref_ipv6(&bytes)) {
            (Ok(v), Ok(r)) => prop_assert_eq!(v.payload_len(), r.payload_len),
            (Err(WireError::Truncated), Err(r)) => prop_assert_eq!(r, "truncated"),
            (Err(WireError::BadVersion), Err(r)) => prop_assert_eq!(r, "version"),
            (Err(WireError::BadTotalLength), Err(r)) => prop_assert_eq!(r, "payload"),
            (v, r) => prop_assert!(false, "view {:?} vs reference {:?}", v.map(|_| ()), r.map(|_| ())),
        }
    }

    #[test]
    fn ipv6_extension_walk(model in arb_l4(true).prop_flat_map(arb_ipv6), cut in any::<prop::sample::Index>()) {
        // Encode through the packet model, then walk the payload both ways.
        let pm = PacketModel { dst: [0; 6], src: [0; 6], vlans: vec![], l3: model, payload: vec![], padding: 0 };
        let frame = pm.encode();
        let ip = Ipv6Packet::new_checked(&frame[14..]).unwrap();
        let payload = ip.payload();
        let e = pm.expected();
        let up = walk_ipv6_ext(ip.next_header(), payload).unwrap();
        prop_assert_eq!(up.protocol, e.protocol);
        prop_assert_eq!(up.fragment, e.fragment);
        prop_assert_eq!(up.later_fragment, e.later_fragment);
        if !e.later_fragment {
            prop_assert_eq!(14 + 40 + up.offset, usize::from(e.l4_offset));
        }
        // Any cut of the payload either walks to the same place or reports truncation.
        let cut = cut.index(payload.len() + 1);
        match walk_ipv6_ext(ip.next_header(), &payload[..cut]) {
            Ok(u) => prop_assert_eq!(u, up),
            Err(err) => prop_assert_eq!(err, WireError::Truncated),
        }
    }

    #[test]
    fn tcp(h in arb_tcp(), payload in bytes_upto(20), src in any::<[u8; 4]>(), dst in any::<[u8; 4]>(), port in any::<u16>()) {
        let mut bytes = h.encode();
        bytes.extend_from_slice(&payload);
        let v = TcpPacket::new_checked(&bytes[..]).unwrap();
        let r = ref_tcp(&bytes).unwrap();
        prop_assert_eq!(&r, &h);
        prop_assert_eq!((v.src_port(), v.dst_port(), v.seq_number(), v.ack_number()), (r.sport, r.dport, r.seq, r.ack));
        prop_assert_eq!((v.header_len(), v.flags(), v.window(), v.checksum(), v.urgent()), (usize::from(r.doff) * 4, r.flags, r.window, r.checksum, r.urgent));
        prop_assert_eq!(v.options(), &r.options[..]);
        prop_assert_eq!(v.payload(), &payload[..]);
        // Checksum: fill, verify against the reference pseudo-header sum, then update a port.
        let mut m = TcpPacket::new_checked(&mut bytes[..]).unwrap();
        m.fill_checksum_v4(src, dst);
        prop_assert!(ref_l4_ok_v4(src, dst, 6, &bytes));
        let mut m = TcpPacket::new_checked(&mut bytes[..]).unwrap();
        m.set_src_port_update_checksum(port);
        m.set_dst_port_update_checksum(port ^ 0x5555);
        prop_assert!(m.verify_checksum_v4(src, dst));
        prop_assert!(ref_l4_ok_v4(src, dst, 6, &bytes));
        prop_assert_eq!((ref_tcp(&bytes).unwrap().sport, ref_tcp(&bytes).unwrap().dport), (port, port ^ 0x5555));
    }

    #[test]
    fn tcp_any_bytes(bytes in header_like(vec![0; 1], 70), doff in 0u8..16) {
        let mut bytes = bytes;
        if bytes.len() > 12 {
            bytes[12] = doff << 4;
        }
        match (TcpPacket::new_checked(&bytes[..]), ref_tcp(&bytes)) {
            (Ok(v), Ok(r)) => prop_assert_eq!(v.header_len(), usize::from(r.doff) * 4),
            (Err(WireError::Truncated), Err(r)) => prop_assert_eq!(r, "truncated"),
            (Err(WireError::BadHeaderLength), Err(r)) => prop_assert_eq!(r, "doff"),
            (v, r) => prop_assert!(false, "view {:?} vs reference {:?}", v.map(|_| ()), r.map(|_| ())),
        }
    }

    #[test]
    fn udp(sport in any::<u16>(), dport in any::<u16>(), payload in bytes_upto(30), extra in 0usize..4, len_field in prop::option::of(0u16..50),
           src in any::<[u8; 16]>(), dst in any::<[u8; 16]>(), port in any::<u16>()) {
        let len = len_field.unwrap_or((8 + payload.len()) as u16);
        let mut bytes = UdpHdr { sport, dport, len, checksum: 0 }.encode();
        bytes.extend_from_slice(&payload);
        bytes.extend(std::iter::repeat_n(0, extra));
        match (UdpPacket::new_checked(&bytes[..]), ref_udp(&bytes)) {
            (Ok(v), Ok(r)) => {
                prop_assert_eq!((v.src_port(), v.dst_port(), v.len(), v.checksum()), (r.sport, r.dport, r.len, r.checksum));
                prop_assert_eq!(v.payload().len(), usize::from(r.len) - 8);
                let l = usize::from(r.len);
                let mut m = UdpPacket::new_checked(&mut bytes[..]).unwrap();
                m.fill_checksum_v6(&src, &dst);
                prop_assert!(ref_l4_ok_v6(&src, &dst, 17, &bytes[..l]));
                let mut m = UdpPacket::new_checked(&mut bytes[..]).unwrap();
                m.set_dst_port_update_checksum(port);
                prop_assert!(m.verify_checksum_v6(&src, &dst));
                prop_assert_ne!(m.checksum(), 0);
            }
            (Err(WireError::Truncated), Err(r)) => prop_assert_eq!(r, "truncated"),
            (Err(WireError::BadTotalLength), Err(r)) => prop_assert_eq!(r, "length"),
            (v, r) => prop_assert!(false, "view {:?} vs reference {:?}", v.map(|_| ()), r.map(|_| ())),
        }
    }

    #[test]
    fn udp_zero_checksum_stays_zero_on_v4(port in any::<u16>()) {
        let mut bytes = UdpHdr { sport: 1, dport: 2, len: 8, checksum: 0 }.encode();
        let mut m = UdpPacket::new_checked(&mut bytes[..]).unwrap();
        m.set_src_port_update_checksum(port);
        prop_assert_eq!(m.checksum(), 0);
        prop_assert!(m.verify_checksum_v4([1, 2, 3, 4], [5, 6, 7, 8]));
    }

    #[test]
    fn icmpv4(h in arb_icmp(false), len in 0usize..12, ident in any::<u16>()) {
        let mut bytes = h.encode();
        bytes.resize(len, 0);
        match (Icmpv4Packet::new_checked(&bytes[..]), ref_icmp(&bytes, 8)) {
            (Ok(v), Some(r)) => {
                prop_assert_eq!((v.msg_type(), v.msg_code(), v.checksum()), (r.ty, r.code, r.checksum));
                prop_assert_eq!((v.echo_ident(), v.echo_seq()), ((r.rest >> 16) as u16, r.rest as u16));
                let mut m = Icmpv4Packet::new_checked(&mut bytes[..]).unwrap();
                m.fill_checksum();
                prop_assert_eq!(ref_checksum(&bytes), 0);
                let mut m = Icmpv4Packet::new_checked(&mut bytes[..]).unwrap();
                m.set_echo_ident_update_checksum(ident);
                prop_assert!(m.verify_checksum());
                prop_assert_eq!(ref_checksum(&bytes), 0);
            }
            (Err(_), None) => {}
            (v, r) => prop_assert!(false, "view ok {} vs reference {:?}", v.is_ok(), r),
        }
    }

    #[test]
    fn icmpv6(h in arb_icmp(true), len in 0usize..12, src in any::<[u8; 16]>(), dst in any::<[u8; 16]>()) {
        let mut bytes = h.encode();
        bytes.resize(len, 0);
        match (Icmpv6Packet::new_checked(&bytes[..]), ref_icmp(&bytes, 4)) {
            (Ok(v), Some(r)) => {
                prop_assert_eq!((v.msg_type(), v.msg_code(), v.checksum()), (r.ty, r.code, r.checksum));
                let echo = matches!(r.ty, 128 | 129) && bytes.len() >= 8;
                prop_assert_eq!(v.echo_ident(), echo.then_some((r.rest >> 16) as u16));
                let mut m = Icmpv6Packet::new_checked(&mut bytes[..]).unwrap();
                m.fill_checksum(&src, &dst);
                prop_assert!(m.verify_checksum(&src, &dst));
                prop_assert!(ref_l4_ok_v6(&src, &dst, 58, &bytes));
            }
            (Err(_), None) => {}
            (v, r) => prop_assert!(false, "view ok {} vs reference {:?}", v.is_ok(), r),
        }
    }
}

/// Reference check of a TCP/UDP checksum over IPv4: pseudo header + segment sums to 0xffff.
fn ref_l4_ok_v4(src: [u8; 4], dst: [u8; 4], proto: u8, seg: &[u8]) -> bool {
    let mut buf = Vec::new();
    buf.extend_from_slice(&src);
    buf.extend_from_slice(&dst);
    buf.extend_from_slice(&[0, proto]);
    buf.extend_from_slice(&(seg.len() as u16).to_be_bytes());
    buf.extend_from_slice(seg);
    ref_checksum(&buf) == 0
}

/// Reference check over IPv6 (RFC 8200 pseudo header).
fn ref_l4_ok_v6(src: &[u8; 16], dst: &[u8; 16], proto: u8, seg: &[u8]) -> bool {
    let mut buf = Vec::new();
    buf.extend_from_slice(src);
    buf.extend_from_slice(dst);
    buf.extend_from_slice(&(seg.len() as u32).to_be_bytes());
    buf.extend_from_slice(&[0, 0, 0, proto]);
    buf.extend_from_slice(seg);
    ref_checksum(&buf) == 0
}

#[test]
fn checksum_of_known_header() {
    // The IPv4 header example from RFC 1071 discussions (checksum 0xb861).
    let h = [
        0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0xc0, 0xa8, 0x00,
        0x01, 0xc0, 0xa8, 0x00, 0xc7,
    ];
    assert_eq!(checksum::ipv4_header_checksum(&h), 0xb861);
}
