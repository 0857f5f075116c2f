//! The built-in packet source: generated templates, pcap replay, buffer recycling.

use pipeline::nodes::parse::{parse_packet, ParseConfig};
use pipeline::source::pcap::{parse_pcap, write_pcap};
use pipeline::source::{IpVersion, L4Proto, PacketSource, SourceSpec};
use pipeline::wire::{Ipv4Packet, Ipv6Packet, TcpPacket, UdpPacket};
use pipeline::{Graph, GraphSpec, PacketMeta, PortInfo, Registry, TestBuf};
use std::collections::HashSet;

fn xc_graph() -> Graph<TestBuf> {
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
    Graph::build(
        &spec,
        &Registry::with_builtins(),
        &[PortInfo::new(0, "a", ""), PortInfo::new(1, "b", "")],
    )
    .unwrap()
}

#[test]
fn generated_templates_are_valid_and_distinct() {
    for proto in [L4Proto::Udp, L4Proto::Tcp] {
        for version in [IpVersion::V4, IpVersion::V6] {
            let mut spec = SourceSpec::simple(100, proto, version);
            spec.frame_size = 128;
            spec.in_ports = vec![0, 1];
            let t = spec.templates().unwrap();
            assert_eq!(t.len(), 100);
            let mut flows = HashSet::new();
            for (i, tpl) in t.iter().enumerate() {
                assert_eq!(tpl.data.len(), 124);
                assert_eq!(tpl.port, (i % 2) as u16);
                let mut m = PacketMeta::default();
                parse_packet(
                    &tpl.data,
                    &ParseConfig {
                        verify_ipv4_checksum: true,
                        ..Default::default()
                    },
                    &mut m,
                )
                .unwrap();
                assert!(flows.insert((m.src_addr, m.src_port)), "flows differ");
                let l4 = &tpl.data[usize::from(m.l4_offset)..];
                let ok = match (version, proto) {
                    (IpVersion::V4, _) => {
                        let ip = Ipv4Packet::new_checked(&tpl.data[14..]).unwrap();
                        let (s, d) = (ip.src_addr().octets(), ip.dst_addr().octets());
                        assert!(ip.verify_checksum());
                        if proto == L4Proto::Udp {
                            UdpPacket::new_checked(l4).unwrap().verify_checksum_v4(s, d)
                        } else {
                            TcpPacket::new_checked(l4).unwrap().verify_checksum_v4(s, d)
                        }
                    }
                    (IpVersion::V6, _) => {
                        let ip = Ipv6Packet::new_checked(&tpl.data[14..]).unwrap();
                        let (s, d) = (ip.src_bytes(), ip.dst_bytes());
                        if proto == L4Proto::Udp {
                            UdpPacket::new_checked(l4)
                                .unwrap()
                                .verify_checksum_v6(&s, &d)
                        } else {
                            TcpPacket::new_checked(l4)
                                .unwrap()
                                .verify_checksum_v6(&s, &d)
                        }
                    }
                };
                assert!(ok, "L4 checksum of {proto:?}/{version:?}");
            }
        }
    }
}

#[test]
fn invalid_specs_are_rejected() {
    let mut s = SourceSpec {
        flows: 0,
        ..Default::default()
    };
    assert!(s.templates().is_err());
    s = SourceSpec {
        frame_size: 45,
        ..Default::default()
    };
    assert!(s.templates().is_err());
    s = SourceSpec {
        ip_version: IpVersion::V6,
        frame_size: 100,
        ..Default::default()
    };
    assert!(s.templates().is_err(), "IPv4 addresses with ip_version v6");
    s = SourceSpec {
        in_ports: vec![],
        ..Default::default()
    };
    assert!(PacketSource::from_spec(&s).is_err());
    // A spec reads from TOML.
    let s: SourceSpec = toml::from_str("flows = 3\nprotocol = \"tcp\"\nsrc_port = 5000").unwrap();
    assert_eq!(
        (s.flows, s.protocol, s.src_port, s.frame_size),
        (3, L4Proto::Tcp, 5000, 64)
    );
}

#[test]
fn pcap_replay_reproduces_the_capture() {
    let spec = SourceSpec::simple(5, L4Proto::Udp, IpVersion::V4);
    let frames: Vec<Vec<u8>> = spec
        .templates()
        .unwrap()
        .into_iter()
        .map(|t| t.data)
        .collect();
    let refs: Vec<&[u8]> = frames.iter().map(|f| f.as_slice()).collect();
    let bytes = write_pcap(&refs);
    assert_eq!(parse_pcap(&bytes).unwrap().len(), 5);
    let path =
        std::env::temp_dir().join(format!("pipeline-source-test-{}.pcap", std::process::id()));
    std::fs::write(&path, &bytes).unwrap();
    let src = PacketSource::from_pcap_file(&path, 1);
    std::fs::remove_file(&path).unwrap();
    let mut src = src.unwrap();
    assert_eq!(
        src.templates()
            .iter()
            .map(|t| t.data.clone())
            .collect::<Vec<_>>(),
        frames
    );
    let mut g = xc_graph();
    let mut tx = g.new_tx_vectors();
    let mut v: arrayvec::ArrayVec<TestBuf, 16> = arrayvec::ArrayVec::new();
    assert_eq!(src.fill(&mut v, 12), 12);
    assert_eq!(v[7].bytes, frames[2], "round robin over the capture");
    assert!(v.iter().all(|p| p.port == 1));
    let r = g.process(&mut v, &mut tx);
    assert_eq!(r.tx, 12);
    assert_eq!(tx.pkts_mut(0).len(), 12, "port 1 cross-connects to port 0");
    assert!(
        PacketSource::from_pcap_bytes(&write_pcap(&[]), 0).is_err(),
        "an empty capture is an error"
    );
}

#[test]
fn steady_state_replay_allocates_no_buffers() {
    let mut g = xc_graph();
    let mut tx = g.new_tx_vectors();
    let mut src =
        PacketSource::from_spec(&SourceSpec::simple(1000, L4Proto::Udp, IpVersion::V4)).unwrap();
    let warm = src.replay(&mut g, &mut tx, 10, 256);
    assert_eq!(warm.tx, 2560);
    let allocated = src.buffers_allocated();
    assert_eq!(allocated, 256);
    let r = src.replay(&mut g, &mut tx, 500, 256);
    assert_eq!((r.packets, r.tx, r.dropped), (128_000, 128_000, 0));
    assert_eq!(
        src.buffers_allocated(),
        allocated,
        "no buffer allocated in steady state"
    );
    assert!(r.mpps() > 0.0);
}
