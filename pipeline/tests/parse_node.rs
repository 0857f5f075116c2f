//! The `parse` node against the packet model: every field of valid packets, every
//! truncation, every malformed field, and random bytes.

mod common;

use common::*;
use pipeline::nodes::parse::{
    parse_fast, parse_general, parse_packet, FragmentPolicy, ParseConfig, ParseDrop,
};
use pipeline::PacketMeta;
use proptest::prelude::*;

fn parse(bytes: &[u8], cfg: &ParseConfig) -> (Result<(), ParseDrop>, PacketMeta) {
    let mut m = PacketMeta::default();
    let r = parse_packet(bytes, cfg, &mut m);
    // The fast path, when it applies, must agree with the general path.
    let mut g = PacketMeta::default();
    let rg = parse_general(bytes, cfg, &mut g);
    assert_eq!(r, rg, "fast and general paths disagree on the result");
    assert_eq!(m, g, "fast and general paths disagree on the metadata");
    if r.is_err() {
        assert_eq!(m, PacketMeta::default(), "metadata is reset on error");
    }
    (r, m)
}

/// The reason parsing `model` cut to `len` bytes must give (frame lengths untouched).
fn truncation_reason(model: &PacketModel, frame: &[u8], len: usize) -> Option<ParseDrop> {
    if len < 14 {
        return Some(ParseDrop::TruncatedEthernet);
    }
    if len < model.l3_offset() {
        return Some(ParseDrop::TruncatedVlan);
    }
    let avail = len - model.l3_offset();
    let l3 = &frame[model.l3_offset()..];
    match &model.l3 {
        L3Model::Arp(_) => (avail < 28).then_some(ParseDrop::TruncatedArp),
        L3Model::V4 { hdr, .. } => {
            let total = usize::from(be16(l3, 2));
            if avail < usize::from(hdr.ihl) * 4 {
                Some(ParseDrop::TruncatedIpv4)
            } else if avail < total {
                Some(ParseDrop::BadIpv4TotalLength)
            } else {
                None
            }
        }
        L3Model::V6 { .. } => {
            if avail < 40 {
                Some(ParseDrop::TruncatedIpv6)
            } else if avail < 40 + usize::from(be16(l3, 4)) {
                Some(ParseDrop::BadIpv6PayloadLength)
            } else {
                None
            }
        }
    }
}

/// Cuts `frame` to `len` bytes and rewrites the IP length fields to match, so that the
/// upper layers are what is truncated.
fn cut_consistently(model: &PacketModel, frame: &[u8], len: usize) -> Vec<u8> {
    let mut f = frame[..len].to_vec();
    let l3 = model.l3_offset();
    match &model.l3 {
        L3Model::V4 { .. } => {
            let total = (len - l3) as u16;
            f[l3 + 2..l3 + 4].copy_from_slice(&total.to_be_bytes());
            let hl = usize::from(f[l3] & 0xf) * 4;
            f[l3 + 10] = 0;
            f[l3 + 11] = 0;
            let c = ref_checksum(&f[l3..l3 + hl]);
            f[l3 + 10..l3 + 12].copy_from_slice(&c.to_be_bytes());
        }
        L3Model::V6 { .. } => {
            let plen = (len - l3 - 40) as u16;
            f[l3 + 4..l3 + 6].copy_from_slice(&plen.to_be_bytes());
        }
        L3Model::Arp(_) => {}
    }
    f
}

fn l4_reason(l4: &L4Model, seg_len: usize, fragment: bool, v6: bool) -> Option<ParseDrop> {
    match l4 {
        L4Model::Tcp(t) => (seg_len < usize::from(t.doff) * 4).then_some(ParseDrop::TruncatedTcp),
        L4Model::Udp { .. } => {
            if seg_len < 8 {
                Some(ParseDrop::TruncatedUdp)
            } else if !fragment {
                Some(ParseDrop::BadUdpLength) // the UDP length field now exceeds the segment
            } else {
                None
            }
        }
        L4Model::Icmp(_) => (seg_len < if v6 { 4 } else { 8 }).then_some(ParseDrop::TruncatedIcmp),
        L4Model::Sctp { .. } => (seg_len < 12).then_some(ParseDrop::TruncatedSctp),
        L4Model::Other(_) => None,
    }
}

/// The reason for a consistent cut of the upper layers at `len` (< the IP packet's end).
fn upper_truncation_reason(model: &PacketModel, frame: &[u8], len: usize) -> Option<ParseDrop> {
    let l3 = model.l3_offset();
    match &model.l3 {
        L3Model::Arp(_) => None,
        L3Model::V4 { hdr, l4 } => {
            if hdr.flags_frag & 0x1fff != 0 {
                return None;
            }
            let seg = len - l3 - usize::from(hdr.ihl) * 4;
            l4_reason(l4, seg, hdr.flags_frag & 0x2000 != 0, false)
        }
        L3Model::V6 { exts, l4, .. } => {
            let mut off = l3 + 40;
            let mut fragment = false;
            for e in exts {
                let hl = match e {
                    ExtModel::Frag { .. } => 8,
                    _ => {
                        if len < off + 2 {
                            return Some(ParseDrop::TruncatedIpv6Ext);
                        }
                        match e {
                            ExtModel::Ah { .. } => (usize::from(frame[off + 1]) + 2) * 4,
                            _ => (usize::from(frame[off + 1]) + 1) * 8,
                        }
                    }
                };
                if len < off + hl {
                    return Some(ParseDrop::TruncatedIpv6Ext);
                }
                off += hl;
                if let ExtModel::Frag { offset, .. } = e {
                    fragment = true;
                    if *offset != 0 {
                        return None;
                    }
                }
            }
            l4_reason(l4, len - off, fragment, true)
        }
    }
}

fn ip_end(model: &PacketModel, frame: &[u8]) -> usize {
    let l3 = model.l3_offset();
    match &model.l3 {
        L3Model::Arp(_) => l3 + 28,
        L3Model::V4 { .. } => l3 + usize::from(be16(&frame[l3..], 2)),
        L3Model::V6 { .. } => l3 + 40 + usize::from(be16(&frame[l3..], 4)),
    }
}

fn min_l3_len(model: &PacketModel) -> usize {
    match &model.l3 {
        L3Model::Arp(_) => 28,
        L3Model::V4 { hdr, .. } => usize::from(hdr.ihl) * 4,
        L3Model::V6 { .. } => 40,
    }
}

proptest! {
    #[test]
    fn valid_packets_parse_to_the_model(model in arb_packet()) {
        let frame = model.encode();
        let (r, m) = parse(&frame, &ParseConfig::default());
        prop_assert_eq!(r, Ok(()));
        assert_meta(&m, &model.expected());
    }

    #[test]
    fn every_truncation_gives_its_reason(model in arb_packet()) {
        let frame = model.encode();
        for len in 0..frame.len() {
            let (r, _) = parse(&frame[..len], &ParseConfig::default());
            prop_assert_eq!(r.err(), truncation_reason(&model, &frame, len), "cut at {}", len);
        }
    }

    #[test]
    fn every_upper_layer_truncation_gives_its_reason(model in arb_packet()) {
        let frame = model.encode();
        let start = model.l3_offset() + min_l3_len(&model);
        for len in start..ip_end(&model, &frame) {
            let cut = cut_consistently(&model, &frame, len);
            let (r, _) = parse(&cut, &ParseConfig::default());
            prop_assert_eq!(r.err(), upper_truncation_reason(&model, &frame, len), "cut at {}", len);
        }
    }

    #[test]
    fn fragments_drop_when_asked(model in arb_packet()) {
        let frame = model.encode();
        let cfg = ParseConfig { fragments: FragmentPolicy::Drop, ..Default::default() };
        let (r, _) = parse(&frame, &cfg);
        if model.expected().fragment {
            prop_assert_eq!(r, Err(ParseDrop::Fragment));
        } else {
            prop_assert_eq!(r, Ok(()));
        }
    }

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        let (r, m) = parse(&bytes, &ParseConfig::default());
        if r.is_ok() {
            prop_assert!(usize::from(m.l4_offset) <= bytes.len());
            prop_assert!(usize::from(m.l3_offset) <= bytes.len());
        }
        let _ = parse(&bytes, &ParseConfig { fragments: FragmentPolicy::Drop, verify_ipv4_checksum: true });
    }

    #[test]
    fn mutated_packets_never_panic(model in arb_packet(), flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6)) {
        let mut frame = model.encode();
        for (i, v) in flips {
            let i = i.index(frame.len());
            frame[i] = v;
        }
        let (r, m) = parse(&frame, &ParseConfig::default());
        if r.is_ok() {
            prop_assert!(usize::from(m.l4_offset) <= frame.len());
        }
    }
}

/// A plain Ethernet/IPv4/UDP frame (IHL 5, 8 bytes of payload) to break field by field.
fn udp4() -> Vec<u8> {
    let model = PacketModel {
        dst: [2, 0, 0, 0, 0, 2],
        src: [2, 0, 0, 0, 0, 1],
        vlans: vec![],
        l3: L3Model::V4 {
            hdr: Ipv4Hdr {
                version: 4,
                ihl: 5,
                tos: 0,
                total_len: 0,
                ident: 1,
                flags_frag: 0,
                ttl: 64,
                protocol: 0,
                checksum: 0,
                src: [10, 0, 0, 1],
                dst: [10, 0, 0, 2],
                options: vec![],
            },
            l4: L4Model::Udp {
                sport: 1234,
                dport: 80,
                checksum: 0,
            },
        },
        payload: vec![0; 8],
        padding: 0,
    };
    model.encode()
}

fn tcp6() -> Vec<u8> {
    let model = PacketModel {
        dst: [2; 6],
        src: [4; 6],
        vlans: vec![],
        l3: L3Model::V6 {
            hdr: Ipv6Hdr {
                tc: 0,
                flow: 0,
                payload_len: 0,
                next: 0,
                hop: 64,
                src: [1; 16],
                dst: [2; 16],
            },
            exts: vec![],
            l4: L4Model::Tcp(TcpHdr {
                sport: 1,
                dport: 2,
                seq: 0,
                ack: 0,
                doff: 5,
                flags: 2,
                window: 0,
                checksum: 0,
                urgent: 0,
                options: vec![],
            }),
        },
        payload: vec![],
        padding: 0,
    };
    model.encode()
}

/// Malformed packets, each with the reason it must be dropped for.
pub fn malformed() -> Vec<(&'static str, Vec<u8>, ParseDrop)> {
    let mut cases = Vec::new();
    let mut f = udp4();
    f[14] = 0x44; // IHL 4
    cases.push(("ihl 4", f, ParseDrop::BadIhl));
    let mut f = udp4();
    f[14] = 0x40; // IHL 0
    cases.push(("ihl 0", f, ParseDrop::BadIhl));
    let mut f = udp4();
    f[14] = 0x75; // version 7
    cases.push(("version 7 in ipv4", f, ParseDrop::BadIpVersion));
    let mut f = tcp6();
    f[14] = 0x70;
    cases.push(("version 7 in ipv6", f, ParseDrop::BadIpVersion));
    let mut f = udp4();
    f[14] = 0x65;
    cases.push(("version 6 under 0x0800", f, ParseDrop::BadIpVersion));
    let mut f = udp4();
    let len = f.len() as u16 - 14 + 1;
    f[16..18].copy_from_slice(&len.to_be_bytes());
    cases.push(("total length > buffer", f, ParseDrop::BadIpv4TotalLength));
    let mut f = udp4();
    f[16..18].copy_from_slice(&19u16.to_be_bytes());
    cases.push(("total length < header", f, ParseDrop::BadIpv4TotalLength));
    let mut f = udp4();
    f[14] = 0x4f; // IHL 15: 60 bytes of header, more than the buffer holds
    cases.push(("ihl beyond buffer", f, ParseDrop::TruncatedIpv4));
    let mut f = tcp6();
    f[18..20].copy_from_slice(&1000u16.to_be_bytes());
    cases.push((
        "ipv6 payload length > buffer",
        f,
        ParseDrop::BadIpv6PayloadLength,
    ));
    let mut f = tcp6();
    f[14 + 40 + 12] = 0x40; // data offset 4
    cases.push(("tcp data offset 4", f, ParseDrop::BadTcpDataOffset));
    let mut f = udp4();
    f[38..40].copy_from_slice(&7u16.to_be_bytes());
    cases.push(("udp length 7", f, ParseDrop::BadUdpLength));
    let mut f = udp4();
    f[38..40].copy_from_slice(&17u16.to_be_bytes());
    cases.push(("udp length beyond ip", f, ParseDrop::BadUdpLength));
    let mut f = udp4();
    f[12..14].copy_from_slice(&0x88ccu16.to_be_bytes());
    cases.push(("lldp ethertype", f, ParseDrop::UnknownEthertype));
    let mut f = udp4()[..12].to_vec();
    for _ in 0..3 {
        f.extend_from_slice(&[0x81, 0x00, 0x00, 0x0a]);
    }
    f.extend_from_slice(&udp4()[12..]);
    cases.push(("three vlan tags", f, ParseDrop::TooManyVlans));
    let mut f = tcp6();
    let tcp = f.split_off(54);
    f[20] = 60; // destination options
    for i in 0..9 {
        f.extend_from_slice(&[if i < 8 { 60 } else { 6 }, 0, 1, 4, 0, 0, 0, 0]);
    }
    f.extend_from_slice(&tcp);
    let plen = (f.len() - 54) as u16;
    f[18..20].copy_from_slice(&plen.to_be_bytes());
    cases.push(("nine extension headers", f, ParseDrop::TooManyIpv6Ext));
    cases.push(("empty frame", vec![], ParseDrop::TruncatedEthernet));
    cases.push(("13 bytes", vec![0; 13], ParseDrop::TruncatedEthernet));
    cases.push((
        "vlan tag cut",
        [&udp4()[..12], &[0x81, 0x00, 0x00][..]].concat(),
        ParseDrop::TruncatedVlan,
    ));
    cases.push((
        "arp cut",
        [
            &udp4()[..12],
            &[0x08, 0x06, 0, 1, 8, 0, 6, 4, 0, 1][..],
            &[0; 12][..],
        ]
        .concat(),
        ParseDrop::TruncatedArp,
    ));
    cases
}

#[test]
fn malformed_fields_give_their_reasons() {
    for (name, frame, reason) in malformed() {
        let (r, _) = parse(&frame, &ParseConfig::default());
        assert_eq!(r, Err(reason), "{name}");
    }
}

#[test]
fn bad_ipv4_checksum_is_dropped_only_when_verified() {
    let mut f = udp4();
    f[24] ^= 0xff;
    assert_eq!(parse(&f, &ParseConfig::default()).0, Ok(()));
    let cfg = ParseConfig {
        verify_ipv4_checksum: true,
        ..Default::default()
    };
    assert_eq!(parse(&f, &cfg).0, Err(ParseDrop::BadIpv4Checksum));
    assert_eq!(parse(&udp4(), &cfg).0, Ok(()));
}

#[test]
fn fast_path_takes_plain_udp_and_tcp() {
    let mut m = PacketMeta::default();
    assert!(parse_fast(&udp4(), &mut m));
    assert_eq!(
        (m.src_port, m.dst_port, m.protocol, m.l4_offset),
        (1234, 80, 17, 34)
    );
    let mut f = udp4();
    f[14] = 0x46;
    assert!(
        !parse_fast(&f, &mut PacketMeta::default()),
        "options take the general path"
    );
}

#[test]
fn drop_reason_names_are_in_code_order() {
    for (i, r) in ParseDrop::ALL.iter().enumerate() {
        assert_eq!(*r as usize, i);
        assert_eq!(r.name(), ParseDrop::NAMES[i]);
    }
}

#[test]
fn drops_are_counted_under_their_reason_in_a_graph() {
    use arrayvec::ArrayVec;
    use pipeline::{Graph, GraphSpec, PortInfo, Registry, TestBuf};
    use std::collections::HashMap;

    let spec = GraphSpec::from_toml(
        r#"
        [[nodes]]
        name = "parse"
        kind = "parse"
        [[nodes]]
        name = "xc"
        kind = "forward"
        params = { mode = "cross-connect", pairs = [["a", "b"]] }
        [[edges]]
        from = "parse"
        to = "xc"
        "#,
    )
    .unwrap();
    let ports = [PortInfo::new(0, "a", ""), PortInfo::new(1, "b", "")];
    let mut g = Graph::<TestBuf>::build(&spec, &Registry::with_builtins(), &ports).unwrap();
    let mut out = g.new_tx_vectors();
    // Every malformed case, and every cut of two plain frames.
    let mut cases: Vec<(Vec<u8>, Option<ParseDrop>)> = malformed()
        .into_iter()
        .map(|(_, f, r)| (f, Some(r)))
        .collect();
    for frame in [udp4(), tcp6()] {
        for len in 0..=frame.len() {
            let r = parse(&frame[..len], &ParseConfig::default()).0.err();
            cases.push((frame[..len].to_vec(), r));
        }
    }
    let mut expected: HashMap<&str, u64> = HashMap::new();
    let mut passed = 0;
    for chunk in cases.chunks(256) {
        let mut input: ArrayVec<TestBuf, 256> = ArrayVec::new();
        for (bytes, reason) in chunk {
            input.push(TestBuf::new(bytes.clone(), 0));
            match reason {
                Some(r) => *expected.entry(r.name()).or_default() += 1,
                None => passed += 1,
            }
        }
        g.process(&mut input, &mut out);
        out.clear();
    }
    let snap = g.snapshot();
    let node = snap.node("parse").unwrap();
    for name in ParseDrop::NAMES {
        assert_eq!(
            node.drops_for(name),
            expected.get(name).copied().unwrap_or(0),
            "{name}"
        );
    }
    assert_eq!(snap.tx_packets, passed);
    assert!(
        expected.len() >= 12,
        "the cases cover most reasons: {expected:?}"
    );
}
