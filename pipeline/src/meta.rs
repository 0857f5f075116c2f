//! Per-packet metadata filled by the `parse` node and read by later nodes.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Metadata of one packet in a vector: header offsets, the 5-tuple and a few fields later
/// nodes need. 64 bytes, `Copy`; kept in an array parallel to the packets of a vector.
///
/// Addresses are stored as 16 bytes: an IPv4 address occupies bytes 0..4 and the rest are
/// zero; [`ip_version`](Self::ip_version) says which family it is (0 = not IP).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
#[repr(C, align(64))]
pub struct PacketMeta {
    /// Source address (IPv4 in bytes 0..4).
    pub src_addr: [u8; 16],
    /// Destination address (IPv4 in bytes 0..4).
    pub dst_addr: [u8; 16],
    /// Offset of the Ethernet header (0 for frames from a port).
    pub l2_offset: u16,
    /// Offset of the L3 header (after any VLAN tags).
    pub l3_offset: u16,
    /// Offset of the L4 header (after IPv4 options / IPv6 extension headers);
    /// 0 when there is none (not IP, or a non-first fragment).
    pub l4_offset: u16,
    /// Innermost ethertype (after VLAN tags).
    pub ethertype: u16,
    /// VLAN id of the outer tag (0 if untagged).
    pub outer_vlan: u16,
    /// VLAN id of the inner tag of a QinQ frame (0 if none).
    pub inner_vlan: u16,
    /// L4 source port (TCP/UDP), or the echo identifier of an ICMP/ICMPv6 echo message.
    pub src_port: u16,
    /// L4 destination port (TCP/UDP), or the echo identifier of an ICMP/ICMPv6 echo message.
    pub dst_port: u16,
    /// L3 length: IPv4 total length, or 40 + IPv6 payload length.
    pub l3_len: u16,
    /// Output port id, set by a node (e.g. a router or load balancer) for `forward` in
    /// `by-metadata` mode.
    pub out_port: u16,
    /// A value a node leaves for a later node (e.g. a backend or rule index);
    /// the graph does not interpret it.
    pub next: u16,
    /// Trace slot of the packet (0 = not traced); managed by the graph.
    pub trace: u16,
    /// 4, 6, or 0 when the packet is not IP.
    pub ip_version: u8,
    /// IP protocol of the upper layer (after IPv6 extension headers).
    pub protocol: u8,
    /// TCP flags byte (0 if not TCP).
    pub tcp_flags: u8,
    /// ICMP/ICMPv6 type (0 if not ICMP).
    pub icmp_type: u8,
    /// ICMP/ICMPv6 code (0 if not ICMP).
    pub icmp_code: u8,
    /// IPv4 TTL / IPv6 hop limit.
    pub ttl: u8,
    /// Number of VLAN tags (0..=2).
    pub vlan_count: u8,
    /// Bit set of `FLAG_*` constants.
    pub flags: u8,
}

impl PacketMeta {
    /// The packet is an IP fragment (any fragment, first or later).
    pub const FLAG_FRAGMENT: u8 = 0x01;
    /// The packet is a non-first fragment: no L4 header, ports are 0.
    pub const FLAG_LATER_FRAGMENT: u8 = 0x02;
    /// The IPv4 header has options.
    pub const FLAG_IPV4_OPTIONS: u8 = 0x04;
    /// The IPv6 header is followed by extension headers.
    pub const FLAG_IPV6_EXT: u8 = 0x08;
    /// Set by the `lb` node on a reply it translated back to the VIP as the reply of a
    /// connection its table tracks (and no ACL blocked): a stateful `acl` node after the `lb`
    /// passes it as a tracked reply. Its own table cannot: it keyed the request by the
    /// backend, the reply now carries the VIP.
    pub const FLAG_LB_REPLY: u8 = 0x10;

    /// Whether the packet is IPv4.
    #[inline]
    pub fn is_ipv4(&self) -> bool {
        self.ip_version == 4
    }

    /// Whether the packet is IPv6.
    #[inline]
    pub fn is_ipv6(&self) -> bool {
        self.ip_version == 6
    }

    /// Whether the packet is an IP fragment.
    #[inline]
    pub fn is_fragment(&self) -> bool {
        self.flags & Self::FLAG_FRAGMENT != 0
    }

    /// Whether an L4 header was parsed (`l4_offset` is valid).
    #[inline]
    pub fn has_l4(&self) -> bool {
        self.l4_offset != 0
    }

    /// The source address, if the packet is IP.
    pub fn src_ip(&self) -> Option<IpAddr> {
        addr(self.ip_version, &self.src_addr)
    }

    /// The destination address, if the packet is IP.
    pub fn dst_ip(&self) -> Option<IpAddr> {
        addr(self.ip_version, &self.dst_addr)
    }

    /// The IPv4 source address bytes (meaningful when [`is_ipv4`](Self::is_ipv4)).
    #[inline]
    pub fn src_v4(&self) -> [u8; 4] {
        [
            self.src_addr[0],
            self.src_addr[1],
            self.src_addr[2],
            self.src_addr[3],
        ]
    }

    /// The IPv4 destination address bytes (meaningful when [`is_ipv4`](Self::is_ipv4)).
    #[inline]
    pub fn dst_v4(&self) -> [u8; 4] {
        [
            self.dst_addr[0],
            self.dst_addr[1],
            self.dst_addr[2],
            self.dst_addr[3],
        ]
    }

    /// Stores an IPv4 address in the 16-byte form.
    #[inline]
    pub fn v4_bytes(a: [u8; 4]) -> [u8; 16] {
        [a[0], a[1], a[2], a[3], 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]
    }
}

fn addr(version: u8, b: &[u8; 16]) -> Option<IpAddr> {
    match version {
        4 => Some(IpAddr::V4(Ipv4Addr::new(b[0], b[1], b[2], b[3]))),
        6 => Some(IpAddr::V6(Ipv6Addr::from(*b))),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meta_is_one_cache_line() {
        assert_eq!(std::mem::size_of::<PacketMeta>(), 64);
    }
}
