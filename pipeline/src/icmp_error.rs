//! ICMP errors and the packet they quote. A destination unreachable, packet too big, time
//! exceeded or parameter problem message quotes the start of the packet that caused it
//! (RFC 792, RFC 4443). Two stages act on errors about their connections (conntrack's
//! "related", OVN's `ct.rel`): the stateful `acl` node passes them without classification,
//! and the `lb` node translates them like the connection's packets
//! ([`crate::lb::icmp`]), so that path MTU discovery and traceroute work through both.
//!
//! Only errors addressed to the quoted packet's source are related (an error goes back to
//! the sender of the packet it reports), and only quotes of TCP and UDP packets whose ports
//! are present (a first fragment or an unfragmented packet).

use crate::lb::flow::{FlowKey, IpFamily, PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP, PROTO_UDP};
use crate::meta::PacketMeta;

/// ICMPv4 error types that quote the offending packet: destination unreachable, time
/// exceeded, parameter problem.
fn icmp4_quotes(t: u8) -> bool {
    matches!(t, 3 | 11 | 12)
}

/// ICMPv6 error types: destination unreachable, packet too big, time exceeded, parameter
/// problem.
fn icmp6_quotes(t: u8) -> bool {
    matches!(t, 1..=4)
}

/// Bytes of an ICMP error header before the quoted packet.
const ICMP_ERROR_HEADER: usize = 8;

/// Whether `m` is an ICMP or ICMPv6 error message (a quick test on the parsed metadata,
/// before [`quoted_flow`] reads the packet).
#[inline(always)]
pub fn is_icmp_error(m: &PacketMeta) -> bool {
    match (m.ip_version, m.protocol) {
        (4, PROTO_ICMP) => icmp4_quotes(m.icmp_type),
        (6, PROTO_ICMPV6) => icmp6_quotes(m.icmp_type),
        _ => false,
    }
}

/// Where the quoted packet's headers are in an ICMP error's frame (offsets from the frame's
/// start).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quote {
    /// The quoted IP header.
    pub ip: usize,
    /// The quoted transport header (its ports are within the frame).
    pub l4: usize,
    /// IPv4 (else IPv6).
    pub v4: bool,
}

impl Quote {
    /// Offset of the quoted source address (the destination's follows it).
    pub fn src_addr(&self) -> usize {
        self.ip + if self.v4 { 12 } else { 8 }
    }

    /// Offset of the quoted destination address.
    pub fn dst_addr(&self) -> usize {
        self.ip + if self.v4 { 16 } else { 24 }
    }

    /// Address length in bytes.
    pub fn addr_len(&self) -> usize {
        if self.v4 {
            4
        } else {
            16
        }
    }
}

/// The quoted TCP or UDP packet of the ICMP error `frame` (parsed into `m`): its 5-tuple as
/// that packet travelled, and where its headers are; `None` when `m` is no such error, the
/// quote is cut short or is not TCP/UDP with ports, or the error is not addressed to the
/// quoted packet's source.
pub fn quoted(frame: &[u8], m: &PacketMeta) -> Option<(FlowKey, Quote)> {
    if !is_icmp_error(m) || m.l4_offset == 0 {
        return None;
    }
    let at = usize::from(m.l4_offset) + ICMP_ERROR_HEADER;
    let q = frame.get(at..)?;
    // The quoted header's length and transport protocol.
    let (hdr, v4, proto) = match m.ip_version {
        4 => {
            let b0 = *q.first()?;
            let ihl = usize::from(b0 & 0x0f) * 4;
            if b0 >> 4 != 4 || ihl < 20 {
                return None;
            }
            // A later fragment carries no ports.
            if u16::from_be_bytes([*q.get(6)?, *q.get(7)?]) & 0x1fff != 0 {
                return None;
            }
            (ihl, true, *q.get(9)?)
        }
        // The quoted header's next header must be the transport (no extension headers).
        _ if *q.first()? >> 4 == 6 => (40, false, *q.get(6)?),
        _ => return None,
    };
    let quote = Quote {
        ip: at,
        l4: at + hdr,
        v4,
    };
    let ports = q.get(hdr..hdr + 4)?;
    let (src, dst, n) = (
        quote.src_addr() - at,
        quote.dst_addr() - at,
        quote.addr_len(),
    );
    let mut key = FlowKey {
        src: [0; 16],
        dst: [0; 16],
        src_port: u16::from_be_bytes([ports[0], ports[1]]),
        dst_port: u16::from_be_bytes([ports[2], ports[3]]),
        proto,
        family: if v4 { IpFamily::V4 } else { IpFamily::V6 },
    };
    key.src[..n].copy_from_slice(&q[src..src + n]);
    key.dst[..n].copy_from_slice(&q[dst..dst + n]);
    if key.proto != PROTO_TCP && key.proto != PROTO_UDP {
        return None;
    }
    // An error goes back to the sender of the packet it reports.
    (key.src == m.dst_addr).then_some((key, quote))
}

/// The 5-tuple of [`quoted`].
pub fn quoted_flow(frame: &[u8], m: &PacketMeta) -> Option<FlowKey> {
    quoted(frame, m).map(|(k, _)| k)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::acl::reject::{reply_len, write_reject};
    use crate::nodes::{parse_packet, ParseConfig};
    use crate::source::{build_frame, L4Proto, SourceSpec};
    use std::net::IpAddr;

    fn udp(src: &str, dst: &str, sport: u16, dport: u16) -> Vec<u8> {
        let src_ip = src.parse::<IpAddr>().unwrap();
        let spec = SourceSpec {
            protocol: L4Proto::Udp,
            frame_size: if src_ip.is_ipv6() { 78 } else { 64 },
            src_ip,
            dst_ip: dst.parse::<IpAddr>().unwrap(),
            src_port: sport,
            dst_port: dport,
            ..SourceSpec::default()
        };
        build_frame(&spec, 0)
    }

    fn meta(frame: &[u8]) -> PacketMeta {
        let mut m = PacketMeta::default();
        parse_packet(frame, &ParseConfig::default(), &mut m).unwrap();
        m
    }

    /// The ICMP "administratively prohibited" error a rejecting ACL sends for `frame`.
    fn error_for(frame: &[u8]) -> Vec<u8> {
        let m = meta(frame);
        let mut buf = frame.to_vec();
        buf.resize(reply_len(frame, &m).unwrap().max(frame.len()), 0);
        let n = write_reject(&mut buf, frame.len(), &m).unwrap();
        buf.truncate(n);
        buf
    }

    #[test]
    fn errors_yield_the_quoted_flow_as_it_travelled() {
        for (src, dst) in [
            ("10.0.1.10", "10.0.2.53"),
            ("2001:db8::10", "2001:db8:2::53"),
        ] {
            let req = udp(src, dst, 5000, 53);
            let err = error_for(&req);
            let m = meta(&err);
            assert!(is_icmp_error(&m), "{src}");
            let want = FlowKey::from_meta(&meta(&req));
            assert_eq!(quoted_flow(&err, &m), Some(want), "{src}");
            // Not for the packet itself, nor for an error cut inside the quote.
            assert_eq!(quoted_flow(&req, &meta(&req)), None);
            let cut = &err[..usize::from(m.l4_offset) + 8 + 10];
            assert_eq!(quoted_flow(cut, &m), None, "{src}");
        }
    }

    #[test]
    fn errors_to_anyone_but_the_quoted_sender_are_not_related() {
        let err = error_for(&udp("10.0.1.10", "10.0.2.53", 5000, 53));
        let mut m = meta(&err);
        m.dst_addr[3] ^= 1;
        assert_eq!(quoted_flow(&err, &m), None);
    }

    #[test]
    fn quotes_of_later_fragments_and_other_protocols_are_not_related() {
        let err = error_for(&udp("10.0.1.10", "10.0.2.53", 5000, 53));
        let m = meta(&err);
        let q = usize::from(m.l4_offset) + 8;
        let mut frag = err.clone();
        frag[q + 7] = 1; // fragment offset 8 bytes
        assert_eq!(quoted_flow(&frag, &m), None);
        let mut other = err.clone();
        other[q + 9] = 47; // GRE
        assert_eq!(quoted_flow(&other, &m), None);
        let mut tcp = err;
        tcp[q + 9] = PROTO_TCP;
        assert_eq!(quoted_flow(&tcp, &m).map(|k| k.proto), Some(PROTO_TCP));
    }
}
