//! Generated packet templates: K flows of Ethernet / IPv4|IPv6 / UDP|TCP frames.

use super::Template;
use crate::wire::ethernet::{ethertype, EthernetFrame, MacAddr, HEADER_LEN as ETH_LEN};
use crate::wire::ip_protocol::{TCP, UDP};
use crate::wire::{tcp, Ipv4Packet, Ipv6Packet, TcpPacket, UdpPacket};
use serde::{Deserialize, Serialize};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Upper-layer protocol of generated packets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum L4Proto {
    /// UDP.
    #[default]
    Udp,
    /// TCP (PSH|ACK segments).
    Tcp,
}

/// IP version of generated packets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IpVersion {
    /// IPv4.
    #[default]
    V4,
    /// IPv6.
    V6,
}

/// What to generate. Flow `i` has source address `src_ip + i` and source port
/// `src_port + i % 4096`; everything else is shared.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SourceSpec {
    /// Number of flows (templates).
    pub flows: u32,
    /// Frame size on the wire including the 4-byte FCS (RFC 2544 style: 64 means 60 bytes
    /// of buffer). Must fit the headers.
    pub frame_size: u16,
    /// UDP or TCP.
    pub protocol: L4Proto,
    /// IPv4 or IPv6.
    pub ip_version: IpVersion,
    /// Input ports, assigned to flows round-robin.
    pub in_ports: Vec<u16>,
    /// Source MAC.
    pub src_mac: [u8; 6],
    /// Destination MAC.
    pub dst_mac: [u8; 6],
    /// First source address (must match `ip_version`).
    pub src_ip: IpAddr,
    /// Destination address (must match `ip_version`).
    pub dst_ip: IpAddr,
    /// First source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
}

impl Default for SourceSpec {
    fn default() -> Self {
        Self {
            flows: 1,
            frame_size: 64,
            protocol: L4Proto::Udp,
            ip_version: IpVersion::V4,
            in_ports: vec![0],
            src_mac: [0x02, 0, 0, 0, 0, 0x01],
            dst_mac: [0x02, 0, 0, 0, 0, 0x02],
            src_ip: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
            dst_ip: IpAddr::V4(Ipv4Addr::new(10, 1, 0, 1)),
            src_port: 1024,
            dst_port: 80,
        }
    }
}

impl SourceSpec {
    /// A spec of `flows` 64-byte flows of `protocol` over `ip_version` from port 0, with
    /// default addresses for that version.
    pub fn simple(flows: u32, protocol: L4Proto, ip_version: IpVersion) -> Self {
        let mut s = Self {
            flows,
            protocol,
            ip_version,
            ..Self::default()
        };
        if ip_version == IpVersion::V6 {
            s.src_ip = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1));
            s.dst_ip = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 1));
            s.frame_size = 78;
        }
        s
    }

    /// Smallest frame size (with FCS) that holds the headers.
    pub fn min_frame_size(&self) -> u16 {
        let l3 = if self.ip_version == IpVersion::V4 {
            20
        } else {
            40
        };
        let l4 = if self.protocol == L4Proto::Udp { 8 } else { 20 };
        (ETH_LEN + l3 + l4 + 4) as u16
    }

    /// Builds the templates.
    pub fn templates(&self) -> Result<Vec<Template>, String> {
        if self.flows == 0 {
            return Err("flows must be at least 1".into());
        }
        if self.frame_size < self.min_frame_size() || self.frame_size > 9022 {
            return Err(format!(
                "frame_size {} outside {}..=9022",
                self.frame_size,
                self.min_frame_size()
            ));
        }
        if self.in_ports.is_empty() {
            return Err("in_ports must name at least one port".into());
        }
        let v4 = self.ip_version == IpVersion::V4;
        if self.src_ip.is_ipv4() != v4 || self.dst_ip.is_ipv4() != v4 {
            return Err("src_ip/dst_ip must match ip_version".into());
        }
        Ok((0..self.flows)
            .map(|i| Template {
                data: build_frame(self, i),
                port: self.in_ports[i as usize % self.in_ports.len()],
            })
            .collect())
    }
}

fn add_to_ip(ip: IpAddr, i: u32) -> IpAddr {
    match ip {
        IpAddr::V4(a) => IpAddr::V4(Ipv4Addr::from(u32::from(a).wrapping_add(i))),
        IpAddr::V6(a) => IpAddr::V6(Ipv6Addr::from(u128::from(a).wrapping_add(u128::from(i)))),
    }
}

/// Builds the frame of flow `i` of `spec` (checksums filled). `spec` must be valid
/// (see [`SourceSpec::templates`]).
pub fn build_frame(spec: &SourceSpec, i: u32) -> Vec<u8> {
    let len = usize::from(spec.frame_size) - 4;
    let mut f = vec![0u8; len];
    let src_ip = add_to_ip(spec.src_ip, i);
    let src_port = spec.src_port.wrapping_add((i % 4096) as u16);
    let proto = if spec.protocol == L4Proto::Udp {
        UDP
    } else {
        TCP
    };
    let mut eth = EthernetFrame::new_unchecked(&mut f[..]);
    eth.set_src_addr(MacAddr(spec.src_mac));
    eth.set_dst_addr(MacAddr(spec.dst_mac));
    let l4_start = match (src_ip, spec.dst_ip) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            eth.set_ethertype(ethertype::IPV4);
            let mut ip = Ipv4Packet::new_unchecked(&mut f[ETH_LEN..]);
            ip.set_version_and_header_len(4, 20);
            ip.set_total_len((len - ETH_LEN) as u16);
            ip.set_ident(i as u16);
            ip.set_flags_frag(crate::wire::ipv4::FLAG_DF);
            ip.set_ttl(64);
            ip.set_protocol(proto);
            ip.set_src_addr(s);
            ip.set_dst_addr(d);
            ip.fill_checksum();
            ETH_LEN + 20
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            eth.set_ethertype(ethertype::IPV6);
            let mut ip = Ipv6Packet::new_unchecked(&mut f[ETH_LEN..]);
            ip.set_version_tc_flow(0, i & 0xfffff);
            ip.set_payload_len((len - ETH_LEN - 40) as u16);
            ip.set_next_header(proto);
            ip.set_hop_limit(64);
            ip.set_src_addr(s);
            ip.set_dst_addr(d);
            ETH_LEN + 40
        }
        _ => panic!("build_frame: address families differ"),
    };
    let seg_len = len - l4_start;
    match spec.protocol {
        L4Proto::Udp => {
            let mut u = UdpPacket::new_unchecked(&mut f[l4_start..]);
            u.set_src_port(src_port);
            u.set_dst_port(spec.dst_port);
            u.set_len(seg_len as u16);
        }
        L4Proto::Tcp => {
            let mut t = TcpPacket::new_unchecked(&mut f[l4_start..]);
            t.set_src_port(src_port);
            t.set_dst_port(spec.dst_port);
            t.set_seq_number(i);
            t.set_header_len(20);
            t.set_flags(tcp::flags::PSH | tcp::flags::ACK);
            t.set_window(65535);
        }
    }
    fill_l4_checksum(&mut f, l4_start, src_ip, spec.dst_ip, spec.protocol);
    f
}

fn fill_l4_checksum(f: &mut [u8], l4_start: usize, src: IpAddr, dst: IpAddr, proto: L4Proto) {
    let seg = &mut f[l4_start..];
    match (src, dst, proto) {
        (IpAddr::V4(s), IpAddr::V4(d), L4Proto::Udp) => {
            UdpPacket::new_unchecked(seg).fill_checksum_v4(s.octets(), d.octets())
        }
        (IpAddr::V4(s), IpAddr::V4(d), L4Proto::Tcp) => {
            TcpPacket::new_unchecked(seg).fill_checksum_v4(s.octets(), d.octets())
        }
        (IpAddr::V6(s), IpAddr::V6(d), L4Proto::Udp) => {
            UdpPacket::new_unchecked(seg).fill_checksum_v6(&s.octets(), &d.octets())
        }
        (IpAddr::V6(s), IpAddr::V6(d), L4Proto::Tcp) => {
            TcpPacket::new_unchecked(seg).fill_checksum_v6(&s.octets(), &d.octets())
        }
        _ => {}
    }
}
