//! One-line human-readable packet summaries for traces, e.g.
//! `IPv4 10.0.0.1:1234 -> 10.0.0.2:80 UDP len 64`. Never panics on malformed input.

use super::ethernet::{ethertype, EthernetFrame, HEADER_LEN as ETH_LEN};
use super::ip_protocol::{self, ICMP, ICMPV6, SCTP, TCP, UDP};
use super::{
    tcp, vlan, walk_ipv6_ext, ArpPacket, Icmpv4Packet, Icmpv6Packet, Ipv4Packet, Ipv6Packet,
    TcpPacket, UdpPacket,
};
use std::fmt::Write;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Summarises a frame starting at its Ethernet header. `len` is the frame length in bytes.
pub fn summarize(frame: &[u8]) -> String {
    let mut s = String::new();
    summarize_into(frame, &mut s);
    s
}

/// Like [`summarize`], appending to `out`.
pub fn summarize_into(frame: &[u8], out: &mut String) {
    let len = frame.len();
    let Ok(eth) = EthernetFrame::new_checked(frame) else {
        let _ = write!(out, "truncated Ethernet len {len}");
        return;
    };
    let mut etype = eth.ethertype();
    let mut off = ETH_LEN;
    let mut vids = Vec::new();
    while vlan::is_vlan_tpid(etype) {
        let Ok(tag) = vlan::VlanTag::new_checked(&frame[off..]) else {
            let _ = write!(out, "truncated VLAN len {len}");
            return;
        };
        vids.push(tag.vid());
        etype = tag.ethertype();
        off += vlan::HEADER_LEN;
        if vids.len() > 4 {
            break;
        }
    }
    if !vids.is_empty() {
        let v: Vec<String> = vids.iter().map(|v| v.to_string()).collect();
        let _ = write!(out, "vlan {} ", v.join("."));
    }
    let l3 = &frame[off..];
    match etype {
        ethertype::IPV4 => summarize_ipv4(l3, out),
        ethertype::IPV6 => summarize_ipv6(l3, out),
        ethertype::ARP => summarize_arp(l3, out),
        other => {
            let _ = write!(out, "ethertype 0x{other:04x}");
        }
    }
    let _ = write!(out, " len {len}");
}

fn summarize_arp(l3: &[u8], out: &mut String) {
    let Ok(arp) = ArpPacket::new_checked(l3) else {
        out.push_str("ARP (truncated)");
        return;
    };
    let ip = |b: &[u8]| match <[u8; 4]>::try_from(b) {
        Ok(a) => Ipv4Addr::from(a).to_string(),
        Err(_) => "?".to_string(),
    };
    match arp.operation() {
        1 => {
            let _ = write!(
                out,
                "ARP who-has {} tell {}",
                ip(arp.target_protocol_addr()),
                ip(arp.sender_protocol_addr())
            );
        }
        2 => {
            let _ = write!(
                out,
                "ARP reply {} is-at {:02x?}",
                ip(arp.sender_protocol_addr()),
                arp.sender_hardware_addr()
            );
        }
        op => {
            let _ = write!(out, "ARP op {op}");
        }
    }
}

/// `addr:port` (`[addr]:port` for IPv6), or the address alone without a port.
pub fn endpoint(addr: IpAddr, port: Option<u16>) -> String {
    match (addr, port) {
        (IpAddr::V4(a), Some(p)) => format!("{a}:{p}"),
        (IpAddr::V6(a), Some(p)) => format!("[{a}]:{p}"),
        (a, None) => a.to_string(),
    }
}

fn summarize_l4(
    version: &str,
    src: IpAddr,
    dst: IpAddr,
    proto: u8,
    l4: Option<&[u8]>,
    note: &str,
    out: &mut String,
) {
    let (mut sp, mut dp, mut detail) = (None, None, String::new());
    match (proto, l4) {
        (TCP, Some(b)) => match TcpPacket::new_checked(b) {
            Ok(t) => {
                sp = Some(t.src_port());
                dp = Some(t.dst_port());
                detail = format!(" {}", tcp::flags_string(t.flags()));
            }
            Err(_) => detail = " (truncated)".into(),
        },
        (UDP, Some(b)) => match UdpPacket::new_checked(b) {
            Ok(u) => {
                sp = Some(u.src_port());
                dp = Some(u.dst_port());
            }
            Err(_) => detail = " (bad length)".into(),
        },
        (SCTP, Some(b)) if b.len() >= 16 => {
            sp = Some(u16::from_be_bytes([b[0], b[1]]));
            dp = Some(u16::from_be_bytes([b[2], b[3]]));
            detail = format!(" chunk {}", b[12]);
        }
        (SCTP, Some(b)) if b.len() >= 12 => {
            sp = Some(u16::from_be_bytes([b[0], b[1]]));
            dp = Some(u16::from_be_bytes([b[2], b[3]]));
        }
        (SCTP, Some(_)) => detail = " (truncated)".into(),
        (ICMP, Some(b)) => match Icmpv4Packet::new_checked(b) {
            Ok(i) => detail = format!(" type {} code {}", i.msg_type(), i.msg_code()),
            Err(_) => detail = " (truncated)".into(),
        },
        (ICMPV6, Some(b)) => match Icmpv6Packet::new_checked(b) {
            Ok(i) => detail = format!(" type {} code {}", i.msg_type(), i.msg_code()),
            Err(_) => detail = " (truncated)".into(),
        },
        _ => {}
    }
    let pname = match ip_protocol::name(proto) {
        "proto" => format!("proto {proto}"),
        n => n.to_string(),
    };
    let _ = write!(
        out,
        "{version} {} -> {} {pname}{detail}{note}",
        endpoint(src, sp),
        endpoint(dst, dp)
    );
}

fn summarize_ipv4(l3: &[u8], out: &mut String) {
    let ip = match Ipv4Packet::new_checked(l3) {
        Ok(ip) => ip,
        Err(e) => {
            let _ = write!(out, "IPv4 malformed ({e})");
            return;
        }
    };
    let frag = ip.is_fragment();
    let l4 = if ip.frag_offset() == 0 {
        Some(ip.payload())
    } else {
        None
    };
    let note = if frag { " frag" } else { "" };
    summarize_l4(
        "IPv4",
        ip.src_addr().into(),
        ip.dst_addr().into(),
        ip.protocol(),
        l4,
        note,
        out,
    );
}

fn summarize_ipv6(l3: &[u8], out: &mut String) {
    let ip = match Ipv6Packet::new_checked(l3) {
        Ok(ip) => ip,
        Err(e) => {
            let _ = write!(out, "IPv6 malformed ({e})");
            return;
        }
    };
    let (src, dst): (Ipv6Addr, Ipv6Addr) = (ip.src_addr(), ip.dst_addr());
    let payload = ip.payload();
    match walk_ipv6_ext(ip.next_header(), payload) {
        Ok(up) => {
            let l4 = if up.later_fragment {
                None
            } else {
                payload.get(up.offset..)
            };
            let note = if up.fragment { " frag" } else { "" };
            summarize_l4("IPv6", src.into(), dst.into(), up.protocol, l4, note, out);
        }
        Err(e) => {
            let _ = write!(out, "IPv6 {src} -> {dst} malformed extension headers ({e})");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::summarize;

    /// Ethernet + IPv4 (no options, checksum 0) + `l4`.
    fn v4(proto: u8, l4: &[u8]) -> Vec<u8> {
        let mut f = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00, 0x45, 0];
        f.extend_from_slice(&((20 + l4.len()) as u16).to_be_bytes());
        f.extend_from_slice(&[0, 1, 0x40, 0, 64, proto, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2]);
        f.extend_from_slice(l4);
        f
    }

    #[test]
    fn sctp_shows_its_ports_and_first_chunk() {
        let init = [0x9c, 0x40, 0x96, 0x0c, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 20];
        assert!(summarize(&v4(132, &init))
            .starts_with("IPv4 10.0.0.1:40000 -> 10.0.0.2:38412 SCTP chunk 1"));
        assert!(summarize(&v4(132, &init[..12]))
            .starts_with("IPv4 10.0.0.1:40000 -> 10.0.0.2:38412 SCTP"));
        assert!(summarize(&v4(132, &init[..6])).contains("SCTP (truncated)"));
    }
}
