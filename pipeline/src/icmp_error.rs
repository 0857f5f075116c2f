//! ICMP errors and the packet they quote. A destination unreachable, packet too big, time
//! exceeded or parameter problem message quotes the start of the packet that caused it
//! (RFC 792, RFC 4443). Two stages act on errors about their connections (conntrack's
//! "related", OVN's `ct.rel`): the stateful `acl` node passes them without classification,
//! and the `lb` node translates them like the connection's packets
//! ([`crate::lb::icmp`]), so that path MTU discovery and traceroute work through both.
//!
//! Only errors addressed to the quoted packet's source are related (an error goes back to
//! the sender of the packet it reports), and only quotes whose flow is known: TCP and UDP
//! packets whose ports are present (a first fragment or an unfragmented packet), and ICMP
//! or ICMPv6 echo requests and replies (a `ping` or `traceroute -I` through a stateful ACL),
//! whose flow is keyed by the echo identifier as the parse node keys it (both ports).

use crate::flow_key::{
    FlowKey, IpFamily, PROTO_ICMP, PROTO_ICMPV6, PROTO_SCTP, PROTO_TCP, PROTO_UDP,
};
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
    /// The quoted transport header (its ports, or an echo's identifier, are within the
    /// frame).
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

/// The quoted TCP, UDP, SCTP or ICMP echo packet of the ICMP error `frame` (parsed into
/// `m`): its 5-tuple as that packet travelled (an echo's identifier in both ports), and
/// where its headers are; `None` when `m` is no such error, the quote is cut short or is
/// not TCP/UDP/SCTP with ports or an echo message, or the error is not addressed to the quoted packet's
/// source.
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
    let word = |o: usize| Some(u16::from_be_bytes([*q.get(hdr + o)?, *q.get(hdr + o + 1)?]));
    let (src_port, dst_port) = match proto {
        PROTO_TCP | PROTO_UDP | PROTO_SCTP => (word(0)?, word(2)?),
        // An echo request or reply of the quote's own family: its identifier, in both ports.
        PROTO_ICMP | PROTO_ICMPV6 => {
            let echo = match (v4, proto, *q.get(hdr)?) {
                (true, PROTO_ICMP, t) => matches!(t, 0 | 8),
                (false, PROTO_ICMPV6, t) => matches!(t, 128 | 129),
                _ => false,
            };
            if !echo {
                return None;
            }
            let id = word(4)?;
            (id, id)
        }
        _ => return None,
    };
    let (src, dst, n) = (
        quote.src_addr() - at,
        quote.dst_addr() - at,
        quote.addr_len(),
    );
    let mut key = FlowKey {
        src: [0; 16],
        dst: [0; 16],
        src_port,
        dst_port,
        proto,
        family: if v4 { IpFamily::V4 } else { IpFamily::V6 },
    };
    key.src[..n].copy_from_slice(&q[src..src + n]);
    key.dst[..n].copy_from_slice(&q[dst..dst + n]);
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
    use crate::nodes::{parse_packet, ParseConfig};
    use crate::reject::{reply_len, write_reject};
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

    /// The ICMP destination unreachable a rejecting ACL sends for `frame`.
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

    #[test]
    fn echo_quotes_yield_the_identifier_in_both_ports() {
        for (src, dst) in [
            ("10.0.1.10", "10.0.2.53"),
            ("2001:db8::10", "2001:db8:2::53"),
        ] {
            let err = error_for(&udp(src, dst, 5000, 53));
            let m = meta(&err);
            let want = FlowKey::from_meta(&meta(&udp(src, dst, 5000, 53)));
            let q = usize::from(m.l4_offset) + 8;
            // (next-protocol byte, quoted ICMP header, this family's ICMP, its echo types,
            // the other family's ICMP and echo request)
            let (at, l4, icmp, echoes, other) = if m.ip_version == 4 {
                (q + 9, q + 20, PROTO_ICMP, [8, 0], (PROTO_ICMPV6, 128))
            } else {
                (q + 6, q + 40, PROTO_ICMPV6, [128, 129], (PROTO_ICMP, 8))
            };
            let with = |proto: u8, t: u8| {
                let mut e = err.clone();
                e[at] = proto;
                e[l4] = t;
                e[l4 + 1] = 0;
                e[l4 + 4..l4 + 6].copy_from_slice(&0x1234u16.to_be_bytes());
                e
            };
            for t in echoes {
                let e = with(icmp, t);
                let k = quoted_flow(&e, &m).unwrap_or_else(|| panic!("{src}: echo type {t}"));
                assert_eq!((k.proto, k.src_port, k.dst_port), (icmp, 0x1234, 0x1234));
                assert_eq!((k.src, k.dst, k.family), (want.src, want.dst, want.family));
                // Cut inside the identifier: not related.
                assert_eq!(quoted_flow(&e[..l4 + 5], &m), None, "{src}: type {t}");
            }
            // Any other ICMP message, or the other family's ICMP, is no known flow.
            let not_echo = if m.ip_version == 4 { 3 } else { 1 };
            assert_eq!(quoted_flow(&with(icmp, not_echo), &m), None, "{src}");
            assert_eq!(quoted_flow(&with(other.0, other.1), &m), None, "{src}");
        }
    }
}
