//! `parse`: fills [`PacketMeta`] (L2/L3/L4 offsets, VLANs, the 5-tuple, TCP flags, ICMP
//! type/code, fragment flags) and drops malformed packets, each under its own reason.
//!
//! Ethernet II / IPv4 without options / UDP or TCP, untagged and unfragmented, takes a
//! straight-line fast path over a fixed-size prefix; everything else (VLAN/QinQ, ARP, IPv4
//! options, IPv6 and its extension headers, ICMP, fragments, errors) takes the general path
//! built on the [`crate::wire`] views. Both give the same result for every input.

use crate::graph::{Decision, Frame, KindInfo, Node, Verdict};
use crate::meta::PacketMeta;
use crate::wire::ethernet::{ethertype, HEADER_LEN as ETH_LEN};
use crate::wire::ip_protocol::{ICMP, ICMPV6, SCTP, TCP, UDP};
use crate::wire::{
    vlan, walk_ipv6_ext, ArpPacket, Icmpv4Packet, Icmpv6Packet, Ipv4Packet, Ipv6Packet, TcpPacket,
    UdpPacket, VlanTag, WireError,
};
use crate::PacketBuf;
use serde::Deserialize;

/// Why `parse` dropped a packet. The discriminant is the drop code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum ParseDrop {
    /// Shorter than an Ethernet header.
    TruncatedEthernet = 0,
    /// Ends inside a VLAN tag.
    TruncatedVlan,
    /// More than two VLAN tags.
    TooManyVlans,
    /// Neither IPv4, IPv6 nor ARP.
    UnknownEthertype,
    /// ARP shorter than its addresses.
    TruncatedArp,
    /// Ends inside the IPv4 header (or its options).
    TruncatedIpv4,
    /// IP version field does not match the ethertype.
    BadIpVersion,
    /// IPv4 IHL < 5.
    BadIhl,
    /// IPv4 total length below the header length or beyond the buffer.
    BadIpv4TotalLength,
    /// IPv4 header checksum wrong (only with `verify_ipv4_checksum = true`).
    BadIpv4Checksum,
    /// Ends inside the IPv6 fixed header.
    TruncatedIpv6,
    /// IPv6 payload length beyond the buffer.
    BadIpv6PayloadLength,
    /// Ends inside an IPv6 extension header.
    TruncatedIpv6Ext,
    /// More IPv6 extension headers than the walker follows.
    TooManyIpv6Ext,
    /// An IP fragment, with `fragments = "drop"`.
    Fragment,
    /// Ends inside the TCP header.
    TruncatedTcp,
    /// TCP data offset < 5.
    BadTcpDataOffset,
    /// Ends inside the UDP header.
    TruncatedUdp,
    /// UDP length below 8 or beyond the IP payload.
    BadUdpLength,
    /// Ends inside the ICMP / ICMPv6 header.
    TruncatedIcmp,
    /// Ends inside the SCTP common header (12 bytes).
    TruncatedSctp,
}

impl ParseDrop {
    /// Every reason, in code order.
    pub const ALL: [ParseDrop; 21] = [
        ParseDrop::TruncatedEthernet,
        ParseDrop::TruncatedVlan,
        ParseDrop::TooManyVlans,
        ParseDrop::UnknownEthertype,
        ParseDrop::TruncatedArp,
        ParseDrop::TruncatedIpv4,
        ParseDrop::BadIpVersion,
        ParseDrop::BadIhl,
        ParseDrop::BadIpv4TotalLength,
        ParseDrop::BadIpv4Checksum,
        ParseDrop::TruncatedIpv6,
        ParseDrop::BadIpv6PayloadLength,
        ParseDrop::TruncatedIpv6Ext,
        ParseDrop::TooManyIpv6Ext,
        ParseDrop::Fragment,
        ParseDrop::TruncatedTcp,
        ParseDrop::BadTcpDataOffset,
        ParseDrop::TruncatedUdp,
        ParseDrop::BadUdpLength,
        ParseDrop::TruncatedIcmp,
        ParseDrop::TruncatedSctp,
    ];

    /// Reason names, in code order (the names counters and traces show).
    pub const NAMES: [&'static str; 21] = [
        "truncated-ethernet",
        "truncated-vlan",
        "too-many-vlans",
        "unknown-ethertype",
        "truncated-arp",
        "truncated-ipv4",
        "bad-ip-version",
        "bad-ihl",
        "bad-ipv4-total-length",
        "bad-ipv4-checksum",
        "truncated-ipv6",
        "bad-ipv6-payload-length",
        "truncated-ipv6-ext",
        "too-many-ipv6-ext",
        "fragment",
        "truncated-tcp",
        "bad-tcp-data-offset",
        "truncated-udp",
        "bad-udp-length",
        "truncated-icmp",
        "truncated-sctp",
    ];

    /// The reason's name.
    pub fn name(self) -> &'static str {
        Self::NAMES[self as usize]
    }
}

/// What to do with IP fragments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FragmentPolicy {
    /// Pass them on (later fragments carry no ports: `src_port`/`dst_port` are 0).
    #[default]
    Pass,
    /// Drop them (reason `fragment`).
    Drop,
}

/// Parameters of `parse` (as written in the graph spec).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParseParams {
    /// `fragments = "pass" | "drop"` (default `pass`).
    #[serde(default)]
    pub fragments: FragmentPolicy,
    /// `verify_ipv4_checksum = true` drops IPv4 packets with a wrong header checksum.
    #[serde(default)]
    pub verify_ipv4_checksum: bool,
}

/// Parse options.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ParseConfig {
    /// Fragment policy.
    pub fragments: FragmentPolicy,
    /// Whether to verify the IPv4 header checksum.
    pub verify_ipv4_checksum: bool,
}

impl From<ParseParams> for ParseConfig {
    fn from(p: ParseParams) -> Self {
        Self {
            fragments: p.fragments,
            verify_ipv4_checksum: p.verify_ipv4_checksum,
        }
    }
}

/// Parses one frame into `meta`. On error, `meta` is reset (keeping its `trace` slot).
#[inline(always)]
pub fn parse_packet(
    data: &[u8],
    cfg: &ParseConfig,
    meta: &mut PacketMeta,
) -> Result<(), ParseDrop> {
    if !cfg.verify_ipv4_checksum && parse_fast(data, meta) {
        return Ok(());
    }
    parse_general(data, cfg, meta)
}

/// The fast path: untagged Ethernet, IPv4 with IHL 5, not a fragment, UDP or TCP, all
/// lengths consistent. Returns false (leaving `meta` alone) for anything else.
#[inline(always)]
pub fn parse_fast(d: &[u8], meta: &mut PacketMeta) -> bool {
    let Some(h) = d.first_chunk::<42>() else {
        return false;
    };
    if h[12] != 0x08 || h[13] != 0x00 || h[14] != 0x45 {
        return false;
    }
    let total = u16::from_be_bytes([h[16], h[17]]);
    if usize::from(total) > d.len() - ETH_LEN {
        return false;
    }
    // MF flag or any fragment offset bit.
    if (h[20] & 0x3f) | h[21] != 0 {
        return false;
    }
    let protocol = h[23];
    let mut tcp_flags = 0;
    if protocol == UDP {
        let ulen = u16::from_be_bytes([h[38], h[39]]);
        if total < 28 || ulen < 8 || ulen > total - 20 {
            return false;
        }
    } else if protocol == TCP {
        if total < 40 {
            return false;
        }
        // total >= 40 and total <= len - 14, so 54 bytes are there.
        let Some(t) = d.first_chunk::<54>() else {
            return false;
        };
        let doff = u16::from(t[46] >> 4) * 4;
        if doff < 20 || total - 20 < doff {
            return false;
        }
        tcp_flags = t[47];
    } else {
        return false;
    }
    *meta = PacketMeta {
        src_addr: [
            h[26], h[27], h[28], h[29], 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        ],
        dst_addr: [
            h[30], h[31], h[32], h[33], 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        ],
        l2_offset: 0,
        l3_offset: ETH_LEN as u16,
        l4_offset: (ETH_LEN + 20) as u16,
        ethertype: ethertype::IPV4,
        outer_vlan: 0,
        inner_vlan: 0,
        src_port: u16::from_be_bytes([h[34], h[35]]),
        dst_port: u16::from_be_bytes([h[36], h[37]]),
        l3_len: total,
        out_port: 0,
        next: 0,
        trace: meta.trace,
        ip_version: 4,
        protocol,
        tcp_flags,
        icmp_type: 0,
        icmp_code: 0,
        ttl: h[22],
        vlan_count: 0,
        flags: 0,
    };
    true
}

/// The general path: every supported encapsulation and every drop reason.
#[inline(never)]
pub fn parse_general(d: &[u8], cfg: &ParseConfig, meta: &mut PacketMeta) -> Result<(), ParseDrop> {
    let mut m = PacketMeta {
        trace: meta.trace,
        ..PacketMeta::default()
    };
    let r = parse_into(d, cfg, &mut m);
    if r.is_err() {
        m = PacketMeta {
            trace: meta.trace,
            ..PacketMeta::default()
        };
    }
    *meta = m;
    r
}

fn parse_into(d: &[u8], cfg: &ParseConfig, m: &mut PacketMeta) -> Result<(), ParseDrop> {
    if d.len() < ETH_LEN {
        return Err(ParseDrop::TruncatedEthernet);
    }
    let mut etype = u16::from_be_bytes([d[12], d[13]]);
    let mut off = ETH_LEN;
    let mut vids = [0u16; 2];
    let mut count = 0usize;
    while vlan::is_vlan_tpid(etype) {
        if count == vids.len() {
            return Err(ParseDrop::TooManyVlans);
        }
        let tag = VlanTag::new_checked(&d[off..]).map_err(|_| ParseDrop::TruncatedVlan)?;
        vids[count] = tag.vid();
        count += 1;
        etype = tag.ethertype();
        off += vlan::HEADER_LEN;
    }
    m.l3_offset = off as u16;
    m.ethertype = etype;
    m.outer_vlan = vids[0];
    m.inner_vlan = vids[1];
    m.vlan_count = count as u8;
    let l3 = &d[off..];
    match etype {
        ethertype::IPV4 => parse_ipv4(l3, off, cfg, m),
        ethertype::IPV6 => parse_ipv6(l3, off, cfg, m),
        ethertype::ARP => ArpPacket::new_checked(l3)
            .map(|_| ())
            .map_err(|_| ParseDrop::TruncatedArp),
        _ => Err(ParseDrop::UnknownEthertype),
    }
}

fn parse_ipv4(
    l3: &[u8],
    off: usize,
    cfg: &ParseConfig,
    m: &mut PacketMeta,
) -> Result<(), ParseDrop> {
    let ip = Ipv4Packet::new_checked(l3).map_err(|e| match e {
        WireError::BadVersion => ParseDrop::BadIpVersion,
        WireError::BadHeaderLength => ParseDrop::BadIhl,
        WireError::BadTotalLength => ParseDrop::BadIpv4TotalLength,
        _ => ParseDrop::TruncatedIpv4,
    })?;
    if cfg.verify_ipv4_checksum && !ip.verify_checksum() {
        return Err(ParseDrop::BadIpv4Checksum);
    }
    let hl = ip.header_len();
    m.ip_version = 4;
    m.src_addr = PacketMeta::v4_bytes(ip.src_addr().octets());
    m.dst_addr = PacketMeta::v4_bytes(ip.dst_addr().octets());
    m.protocol = ip.protocol();
    m.ttl = ip.ttl();
    m.l3_len = ip.total_len();
    if hl > 20 {
        m.flags |= PacketMeta::FLAG_IPV4_OPTIONS;
    }
    let fragment = ip.is_fragment();
    if fragment {
        m.flags |= PacketMeta::FLAG_FRAGMENT;
        if cfg.fragments == FragmentPolicy::Drop {
            return Err(ParseDrop::Fragment);
        }
        if ip.frag_offset() != 0 {
            m.flags |= PacketMeta::FLAG_LATER_FRAGMENT;
            return Ok(());
        }
    }
    parse_l4(4, ip.payload(), off + hl, fragment, m)
}

fn parse_ipv6(
    l3: &[u8],
    off: usize,
    cfg: &ParseConfig,
    m: &mut PacketMeta,
) -> Result<(), ParseDrop> {
    let ip = Ipv6Packet::new_checked(l3).map_err(|e| match e {
        WireError::BadVersion => ParseDrop::BadIpVersion,
        WireError::BadTotalLength => ParseDrop::BadIpv6PayloadLength,
        _ => ParseDrop::TruncatedIpv6,
    })?;
    m.ip_version = 6;
    m.src_addr = ip.src_bytes();
    m.dst_addr = ip.dst_bytes();
    m.ttl = ip.hop_limit();
    m.l3_len = (40 + u32::from(ip.payload_len())).min(u32::from(u16::MAX)) as u16;
    let payload = ip.payload();
    let up = walk_ipv6_ext(ip.next_header(), payload).map_err(|e| match e {
        WireError::TooManyExtHeaders => ParseDrop::TooManyIpv6Ext,
        _ => ParseDrop::TruncatedIpv6Ext,
    })?;
    m.protocol = up.protocol;
    if up.ext_count > 0 {
        m.flags |= PacketMeta::FLAG_IPV6_EXT;
    }
    if up.fragment {
        m.flags |= PacketMeta::FLAG_FRAGMENT;
        if cfg.fragments == FragmentPolicy::Drop {
            return Err(ParseDrop::Fragment);
        }
        if up.later_fragment {
            m.flags |= PacketMeta::FLAG_LATER_FRAGMENT;
            return Ok(());
        }
    }
    parse_l4(
        6,
        &payload[up.offset..],
        off + 40 + up.offset,
        up.fragment,
        m,
    )
}

/// Parses the upper-layer header `seg` (bounded by the IP length) at frame offset `off`.
/// In a first fragment the UDP length covers the reassembled datagram, so it is not checked.
fn parse_l4(
    version: u8,
    seg: &[u8],
    off: usize,
    fragment: bool,
    m: &mut PacketMeta,
) -> Result<(), ParseDrop> {
    m.l4_offset = off.min(usize::from(u16::MAX)) as u16;
    match (version, m.protocol) {
        (_, TCP) => {
            let t = TcpPacket::new_checked(seg).map_err(|e| match e {
                WireError::BadHeaderLength => ParseDrop::BadTcpDataOffset,
                _ => ParseDrop::TruncatedTcp,
            })?;
            m.src_port = t.src_port();
            m.dst_port = t.dst_port();
            m.tcp_flags = t.flags();
        }
        (_, UDP) => {
            let u = if fragment {
                if seg.len() < crate::wire::udp::HEADER_LEN {
                    return Err(ParseDrop::TruncatedUdp);
                }
                UdpPacket::new_unchecked(seg)
            } else {
                UdpPacket::new_checked(seg).map_err(|e| match e {
                    WireError::BadTotalLength => ParseDrop::BadUdpLength,
                    _ => ParseDrop::TruncatedUdp,
                })?
            };
            m.src_port = u.src_port();
            m.dst_port = u.dst_port();
        }
        (4, ICMP) => {
            let i = Icmpv4Packet::new_checked(seg).map_err(|_| ParseDrop::TruncatedIcmp)?;
            m.icmp_type = i.msg_type();
            m.icmp_code = i.msg_code();
            if i.is_echo() {
                m.src_port = i.echo_ident();
                m.dst_port = m.src_port;
            }
        }
        (_, SCTP) => {
            // The common header: source port, destination port, verification tag,
            // checksum (not verified here).
            if seg.len() < 12 {
                return Err(ParseDrop::TruncatedSctp);
            }
            m.src_port = u16::from_be_bytes([seg[0], seg[1]]);
            m.dst_port = u16::from_be_bytes([seg[2], seg[3]]);
        }
        (6, ICMPV6) => {
            let i = Icmpv6Packet::new_checked(seg).map_err(|_| ParseDrop::TruncatedIcmp)?;
            m.icmp_type = i.msg_type();
            m.icmp_code = i.msg_code();
            if let Some(id) = i.echo_ident() {
                m.src_port = id;
                m.dst_port = id;
            }
        }
        _ => {}
    }
    Ok(())
}

/// How many packets ahead of the one being parsed [`PacketBuf::prefetch`] is called.
pub const PREFETCH_AHEAD: usize = 4;

/// The `parse` node.
#[derive(Debug, Clone, Copy, Default)]
pub struct ParseNode {
    cfg: ParseConfig,
}

impl ParseNode {
    /// Shape of the kind.
    pub const INFO: KindInfo = KindInfo {
        outputs: &["next"],
        drop_reasons: &ParseDrop::NAMES,
        counters: &[],
        transmits: false,
        fills_meta: true,
        description: "parses L2/L3/L4 headers into the packet metadata, dropping malformed packets",
    };

    /// A parse node with these options.
    pub fn new(cfg: ParseConfig) -> Self {
        Self { cfg }
    }
}

impl<P: PacketBuf> Node<P> for ParseNode {
    #[inline(always)]
    fn process(&mut self, frame: Frame<'_, P>) -> Verdict {
        let cfg = self.cfg;
        let mut all_ok = true;
        for p in frame.pkts.iter().take(PREFETCH_AHEAD) {
            p.prefetch();
        }
        let ahead = frame.pkts.get(PREFETCH_AHEAD..).unwrap_or(&[]);
        let mut ahead = ahead.iter();
        for ((p, m), d) in frame
            .pkts
            .iter()
            .zip(frame.meta.iter_mut())
            .zip(frame.decisions.iter_mut())
        {
            if let Some(next) = ahead.next() {
                next.prefetch();
            }
            *d = match parse_packet(p.data(), &cfg, m) {
                Ok(()) => Decision::Next(0),
                Err(r) => {
                    all_ok = false;
                    Decision::Drop(r as u8)
                }
            };
        }
        if all_ok {
            Verdict::All(Decision::Next(0))
        } else {
            Verdict::PerPacket
        }
    }
}
