//! Test support: packet models, an independent encoder, an obviously-right reference
//! decoder for each header, and proptest strategies. Nothing here uses `pipeline::wire`.
#![allow(dead_code)]

use proptest::prelude::*;

pub fn be16(b: &[u8], o: usize) -> u16 {
    (u16::from(b[o]) << 8) | u16::from(b[o + 1])
}

pub fn be32(b: &[u8], o: usize) -> u32 {
    (u32::from(be16(b, o)) << 16) | u32::from(be16(b, o + 2))
}

fn put16(v: &mut Vec<u8>, x: u16) {
    v.push((x >> 8) as u8);
    v.push(x as u8);
}

fn put32(v: &mut Vec<u8>, x: u32) {
    put16(v, (x >> 16) as u16);
    put16(v, x as u16);
}

/// Reference one's-complement checksum: sum 16-bit words, fold, invert.
pub fn ref_checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    let mut i = 0;
    while i + 1 < data.len() {
        sum += u32::from(be16(data, i));
        i += 2;
    }
    if i < data.len() {
        sum += u32::from(data[i]) << 8;
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

// ---------------------------------------------------------------- headers

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EthHdr {
    pub dst: [u8; 6],
    pub src: [u8; 6],
    pub ethertype: u16,
}

impl EthHdr {
    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&self.dst);
        v.extend_from_slice(&self.src);
        put16(&mut v, self.ethertype);
        v
    }
}

pub fn ref_eth(b: &[u8]) -> Option<EthHdr> {
    if b.len() < 14 {
        return None;
    }
    Some(EthHdr {
        dst: b[0..6].try_into().unwrap(),
        src: b[6..12].try_into().unwrap(),
        ethertype: be16(b, 12),
    })
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VlanHdr {
    pub tci: u16,
    pub ethertype: u16,
}

impl VlanHdr {
    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::new();
        put16(&mut v, self.tci);
        put16(&mut v, self.ethertype);
        v
    }
}

pub fn ref_vlan(b: &[u8]) -> Option<VlanHdr> {
    (b.len() >= 4).then(|| VlanHdr {
        tci: be16(b, 0),
        ethertype: be16(b, 2),
    })
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArpHdr {
    pub htype: u16,
    pub ptype: u16,
    pub oper: u16,
    pub sha: [u8; 6],
    pub spa: [u8; 4],
    pub tha: [u8; 6],
    pub tpa: [u8; 4],
}

impl ArpHdr {
    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::new();
        put16(&mut v, self.htype);
        put16(&mut v, self.ptype);
        v.push(6);
        v.push(4);
        put16(&mut v, self.oper);
        v.extend_from_slice(&self.sha);
        v.extend_from_slice(&self.spa);
        v.extend_from_slice(&self.tha);
        v.extend_from_slice(&self.tpa);
        v
    }
}

pub fn ref_arp(b: &[u8]) -> Option<ArpHdr> {
    if b.len() < 28 || b[4] != 6 || b[5] != 4 {
        return None;
    }
    Some(ArpHdr {
        htype: be16(b, 0),
        ptype: be16(b, 2),
        oper: be16(b, 6),
        sha: b[8..14].try_into().unwrap(),
        spa: b[14..18].try_into().unwrap(),
        tha: b[18..24].try_into().unwrap(),
        tpa: b[24..28].try_into().unwrap(),
    })
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ipv4Hdr {
    pub version: u8,
    pub ihl: u8,
    pub tos: u8,
    pub total_len: u16,
    pub ident: u16,
    pub flags_frag: u16,
    pub ttl: u8,
    pub protocol: u8,
    pub checksum: u16,
    pub src: [u8; 4],
    pub dst: [u8; 4],
    pub options: Vec<u8>,
}

impl Ipv4Hdr {
    pub fn encode(&self) -> Vec<u8> {
        let mut v = vec![(self.version << 4) | (self.ihl & 0xf), self.tos];
        put16(&mut v, self.total_len);
        put16(&mut v, self.ident);
        put16(&mut v, self.flags_frag);
        v.push(self.ttl);
        v.push(self.protocol);
        put16(&mut v, self.checksum);
        v.extend_from_slice(&self.src);
        v.extend_from_slice(&self.dst);
        v.extend_from_slice(&self.options);
        v
    }

    /// Encodes with the checksum computed by the reference.
    pub fn encode_with_checksum(&self) -> Vec<u8> {
        let mut v = self.encode();
        v[10] = 0;
        v[11] = 0;
        let c = ref_checksum(&v);
        v[10] = (c >> 8) as u8;
        v[11] = c as u8;
        v
    }
}

/// Reference IPv4 decoder. Err names the first rule broken, in the documented order.
pub fn ref_ipv4(b: &[u8]) -> Result<Ipv4Hdr, &'static str> {
    if b.len() < 20 {
        return Err("truncated");
    }
    if b[0] >> 4 != 4 {
        return Err("version");
    }
    let ihl = b[0] & 0xf;
    if ihl < 5 {
        return Err("ihl");
    }
    let hl = usize::from(ihl) * 4;
    if b.len() < hl {
        return Err("truncated");
    }
    let total = be16(b, 2);
    if usize::from(total) < hl || usize::from(total) > b.len() {
        return Err("total");
    }
    Ok(Ipv4Hdr {
        version: 4,
        ihl,
        tos: b[1],
        total_len: total,
        ident: be16(b, 4),
        flags_frag: be16(b, 6),
        ttl: b[8],
        protocol: b[9],
        checksum: be16(b, 10),
        src: b[12..16].try_into().unwrap(),
        dst: b[16..20].try_into().unwrap(),
        options: b[20..hl].to_vec(),
    })
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ipv6Hdr {
    pub tc: u8,
    pub flow: u32,
    pub payload_len: u16,
    pub next: u8,
    pub hop: u8,
    pub src: [u8; 16],
    pub dst: [u8; 16],
}

impl Ipv6Hdr {
    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::new();
        put32(
            &mut v,
            (6 << 28) | (u32::from(self.tc) << 20) | (self.flow & 0xfffff),
        );
        put16(&mut v, self.payload_len);
        v.push(self.next);
        v.push(self.hop);
        v.extend_from_slice(&self.src);
        v.extend_from_slice(&self.dst);
        v
    }
}

pub fn ref_ipv6(b: &[u8]) -> Result<Ipv6Hdr, &'static str> {
    if b.len() < 40 {
        return Err("truncated");
    }
    if b[0] >> 4 != 6 {
        return Err("version");
    }
    let w = be32(b, 0);
    let plen = be16(b, 4);
    if 40 + usize::from(plen) > b.len() {
        return Err("payload");
    }
    Ok(Ipv6Hdr {
        tc: (w >> 20) as u8,
        flow: w & 0xfffff,
        payload_len: plen,
        next: b[6],
        hop: b[7],
        src: b[8..24].try_into().unwrap(),
        dst: b[24..40].try_into().unwrap(),
    })
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcpHdr {
    pub sport: u16,
    pub dport: u16,
    pub seq: u32,
    pub ack: u32,
    pub doff: u8,
    pub flags: u8,
    pub window: u16,
    pub checksum: u16,
    pub urgent: u16,
    pub options: Vec<u8>,
}

impl TcpHdr {
    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::new();
        put16(&mut v, self.sport);
        put16(&mut v, self.dport);
        put32(&mut v, self.seq);
        put32(&mut v, self.ack);
        v.push(self.doff << 4);
        v.push(self.flags);
        put16(&mut v, self.window);
        put16(&mut v, self.checksum);
        put16(&mut v, self.urgent);
        v.extend_from_slice(&self.options);
        v
    }
}

pub fn ref_tcp(b: &[u8]) -> Result<TcpHdr, &'static str> {
    if b.len() < 20 {
        return Err("truncated");
    }
    let doff = b[12] >> 4;
    if doff < 5 {
        return Err("doff");
    }
    if b.len() < usize::from(doff) * 4 {
        return Err("truncated");
    }
    Ok(TcpHdr {
        sport: be16(b, 0),
        dport: be16(b, 2),
        seq: be32(b, 4),
        ack: be32(b, 8),
        doff,
        flags: b[13],
        window: be16(b, 14),
        checksum: be16(b, 16),
        urgent: be16(b, 18),
        options: b[20..usize::from(doff) * 4].to_vec(),
    })
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UdpHdr {
    pub sport: u16,
    pub dport: u16,
    pub len: u16,
    pub checksum: u16,
}

impl UdpHdr {
    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::new();
        put16(&mut v, self.sport);
        put16(&mut v, self.dport);
        put16(&mut v, self.len);
        put16(&mut v, self.checksum);
        v
    }
}

pub fn ref_udp(b: &[u8]) -> Result<UdpHdr, &'static str> {
    if b.len() < 8 {
        return Err("truncated");
    }
    let len = be16(b, 4);
    if len < 8 || usize::from(len) > b.len() {
        return Err("length");
    }
    Ok(UdpHdr {
        sport: be16(b, 0),
        dport: be16(b, 2),
        len,
        checksum: be16(b, 6),
    })
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IcmpHdr {
    pub ty: u8,
    pub code: u8,
    pub checksum: u16,
    pub rest: u32,
}

impl IcmpHdr {
    pub fn encode(&self) -> Vec<u8> {
        let mut v = vec![self.ty, self.code];
        put16(&mut v, self.checksum);
        put32(&mut v, self.rest);
        v
    }
}

pub fn ref_icmp(b: &[u8], min: usize) -> Option<IcmpHdr> {
    if b.len() < min {
        return None;
    }
    Some(IcmpHdr {
        ty: b[0],
        code: b[1],
        checksum: be16(b, 2),
        rest: if b.len() >= 8 { be32(b, 4) } else { 0 },
    })
}

// ---------------------------------------------------------------- strategies

pub fn arb_eth(ethertype: u16) -> impl Strategy<Value = EthHdr> {
    (any::<[u8; 6]>(), any::<[u8; 6]>()).prop_map(move |(dst, src)| EthHdr {
        dst,
        src,
        ethertype,
    })
}

pub fn arb_tcp() -> impl Strategy<Value = TcpHdr> {
    (
        any::<(u16, u16, u32, u32, u8, u16, u16, u16)>(),
        0usize..=10,
    )
        .prop_flat_map(|(f, words)| {
            prop::collection::vec(any::<u8>(), words * 4).prop_map(move |options| TcpHdr {
                sport: f.0,
                dport: f.1,
                seq: f.2,
                ack: f.3,
                doff: 5 + words as u8,
                flags: f.4,
                window: f.5,
                checksum: f.6,
                urgent: f.7,
                options,
            })
        })
}

pub fn arb_icmp(v6: bool) -> impl Strategy<Value = IcmpHdr> {
    let types: Vec<u8> = if v6 {
        vec![1, 3, 128, 129, 135, 136]
    } else {
        vec![0, 3, 8, 11, 13]
    };
    (prop::sample::select(types), any::<(u8, u16, u32)>()).prop_map(
        |(ty, (code, checksum, rest))| IcmpHdr {
            ty,
            code,
            checksum,
            rest,
        },
    )
}

pub fn arb_arp() -> impl Strategy<Value = ArpHdr> {
    any::<(u16, [u8; 6], [u8; 4], [u8; 6], [u8; 4])>().prop_map(|(oper, sha, spa, tha, tpa)| {
        ArpHdr {
            htype: 1,
            ptype: 0x0800,
            oper: oper % 3,
            sha,
            spa,
            tha,
            tpa,
        }
    })
}

// ---------------------------------------------------------------- whole packets

/// An upper-layer header.
#[derive(Debug, Clone)]
pub enum L4Model {
    Tcp(TcpHdr),
    Udp {
        sport: u16,
        dport: u16,
        checksum: u16,
    },
    Icmp(IcmpHdr),
    /// SCTP's common header (checksum 0).
    Sctp {
        sport: u16,
        dport: u16,
        vtag: u32,
    },
    /// Some other protocol number with opaque bytes.
    Other(u8),
}

/// An IPv6 extension header.
#[derive(Debug, Clone)]
pub enum ExtModel {
    /// Hop-by-hop (0), routing (43) or destination options (60), `units` 8-octet units after the first.
    Generic { kind: u8, units: u8 },
    /// AH with `len` (4-octet units minus 2).
    Ah { len: u8 },
    /// Fragment header.
    Frag { offset: u16, more: bool, ident: u32 },
}

#[derive(Debug, Clone)]
pub enum L3Model {
    V4 {
        hdr: Ipv4Hdr,
        l4: L4Model,
    },
    V6 {
        hdr: Ipv6Hdr,
        exts: Vec<ExtModel>,
        l4: L4Model,
    },
    Arp(ArpHdr),
}

/// A valid frame: Ethernet, up to two VLAN tags, then ARP, IPv4 or IPv6 with an upper layer.
#[derive(Debug, Clone)]
pub struct PacketModel {
    pub dst: [u8; 6],
    pub src: [u8; 6],
    pub vlans: Vec<(u16, u16)>,
    pub l3: L3Model,
    pub payload: Vec<u8>,
    /// Ethernet padding after the IP packet.
    pub padding: usize,
}

fn l4_proto(l4: &L4Model, v6: bool) -> u8 {
    match l4 {
        L4Model::Tcp(_) => 6,
        L4Model::Udp { .. } => 17,
        L4Model::Icmp(_) => {
            if v6 {
                58
            } else {
                1
            }
        }
        L4Model::Sctp { .. } => 132,
        L4Model::Other(p) => *p,
    }
}

fn encode_l4(l4: &L4Model, payload: &[u8]) -> Vec<u8> {
    let mut v = match l4 {
        L4Model::Tcp(t) => t.encode(),
        L4Model::Udp {
            sport,
            dport,
            checksum,
        } => UdpHdr {
            sport: *sport,
            dport: *dport,
            len: (8 + payload.len()) as u16,
            checksum: *checksum,
        }
        .encode(),
        L4Model::Icmp(i) => i.encode(),
        L4Model::Sctp { sport, dport, vtag } => {
            let mut h = Vec::with_capacity(12);
            h.extend_from_slice(&sport.to_be_bytes());
            h.extend_from_slice(&dport.to_be_bytes());
            h.extend_from_slice(&vtag.to_be_bytes());
            h.extend_from_slice(&[0; 4]); // checksum: not verified by parse
            h
        }
        L4Model::Other(_) => Vec::new(),
    };
    v.extend_from_slice(payload);
    v
}

fn ext_kind(e: &ExtModel) -> u8 {
    match e {
        ExtModel::Generic { kind, .. } => *kind,
        ExtModel::Ah { .. } => 51,
        ExtModel::Frag { .. } => 44,
    }
}

fn encode_ext(e: &ExtModel, next: u8) -> Vec<u8> {
    match e {
        ExtModel::Generic { units, .. } => {
            let mut v = vec![next, *units];
            v.resize(8 * (usize::from(*units) + 1), 0x01);
            v
        }
        ExtModel::Ah { len } => {
            let mut v = vec![next, *len];
            v.resize(4 * (usize::from(*len) + 2), 0xab);
            v
        }
        ExtModel::Frag {
            offset,
            more,
            ident,
        } => {
            let mut v = vec![next, 0];
            put16(&mut v, (offset << 3) | u16::from(*more));
            put32(&mut v, *ident);
            v
        }
    }
}

impl PacketModel {
    /// The frame bytes.
    pub fn encode(&self) -> Vec<u8> {
        let inner_type = match &self.l3 {
            L3Model::V4 { .. } => 0x0800,
            L3Model::V6 { .. } => 0x86dd,
            L3Model::Arp(_) => 0x0806,
        };
        let first_type = self.vlans.first().map_or(inner_type, |v| v.0);
        let mut f = EthHdr {
            dst: self.dst,
            src: self.src,
            ethertype: first_type,
        }
        .encode();
        for (i, (_, tci)) in self.vlans.iter().enumerate() {
            let next = self.vlans.get(i + 1).map_or(inner_type, |v| v.0);
            f.extend(
                VlanHdr {
                    tci: *tci,
                    ethertype: next,
                }
                .encode(),
            );
        }
        match &self.l3 {
            L3Model::Arp(a) => f.extend(a.encode()),
            L3Model::V4 { hdr, l4 } => {
                let seg = encode_l4(l4, &self.payload);
                let mut h = hdr.clone();
                h.protocol = l4_proto(l4, false);
                h.total_len = (usize::from(h.ihl) * 4 + seg.len()) as u16;
                f.extend(h.encode_with_checksum());
                f.extend(seg);
            }
            L3Model::V6 { hdr, exts, l4 } => {
                let seg = encode_l4(l4, &self.payload);
                let mut body = Vec::new();
                for (i, e) in exts.iter().enumerate() {
                    let next = exts.get(i + 1).map_or(l4_proto(l4, true), ext_kind);
                    body.extend(encode_ext(e, next));
                }
                body.extend(seg);
                let mut h = hdr.clone();
                h.next = exts.first().map_or(l4_proto(l4, true), ext_kind);
                h.payload_len = body.len() as u16;
                f.extend(h.encode());
                f.extend(body);
            }
        }
        f.extend(std::iter::repeat_n(0u8, self.padding));
        f
    }

    pub fn l3_offset(&self) -> usize {
        14 + 4 * self.vlans.len()
    }
}

/// What `parse` must report for a model, computed from the model (not from bytes).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Expected {
    pub l3_offset: u16,
    pub l4_offset: u16,
    pub ethertype: u16,
    pub outer_vlan: u16,
    pub inner_vlan: u16,
    pub vlan_count: u8,
    pub ip_version: u8,
    pub src: [u8; 16],
    pub dst: [u8; 16],
    pub protocol: u8,
    pub sport: u16,
    pub dport: u16,
    pub tcp_flags: u8,
    pub icmp_type: u8,
    pub icmp_code: u8,
    pub ttl: u8,
    pub l3_len: u16,
    pub fragment: bool,
    pub later_fragment: bool,
    pub ipv4_options: bool,
    pub ipv6_ext: bool,
}

fn expected_l4(e: &mut Expected, l4: &L4Model, off: usize) {
    e.l4_offset = off as u16;
    match l4 {
        L4Model::Tcp(t) => {
            e.sport = t.sport;
            e.dport = t.dport;
            e.tcp_flags = t.flags;
        }
        L4Model::Udp { sport, dport, .. } => {
            e.sport = *sport;
            e.dport = *dport;
        }
        L4Model::Icmp(i) => {
            e.icmp_type = i.ty;
            e.icmp_code = i.code;
            if matches!(i.ty, 0 | 8 | 128 | 129) {
                e.sport = (i.rest >> 16) as u16;
                e.dport = e.sport;
            }
        }
        L4Model::Sctp { sport, dport, .. } => {
            e.sport = *sport;
            e.dport = *dport;
        }
        L4Model::Other(_) => {}
    }
}

impl PacketModel {
    pub fn expected(&self) -> Expected {
        let mut e = Expected {
            l3_offset: self.l3_offset() as u16,
            outer_vlan: self.vlans.first().map_or(0, |v| v.1 & 0xfff),
            inner_vlan: self.vlans.get(1).map_or(0, |v| v.1 & 0xfff),
            vlan_count: self.vlans.len() as u8,
            ..Default::default()
        };
        let l3 = self.l3_offset();
        match &self.l3 {
            L3Model::Arp(_) => e.ethertype = 0x0806,
            L3Model::V4 { hdr, l4 } => {
                e.ethertype = 0x0800;
                e.ip_version = 4;
                e.src[..4].copy_from_slice(&hdr.src);
                e.dst[..4].copy_from_slice(&hdr.dst);
                e.protocol = l4_proto(l4, false);
                e.ttl = hdr.ttl;
                e.l3_len = (usize::from(hdr.ihl) * 4 + encode_l4(l4, &self.payload).len()) as u16;
                e.ipv4_options = hdr.ihl > 5;
                e.fragment = hdr.flags_frag & 0x3fff != 0;
                e.later_fragment = hdr.flags_frag & 0x1fff != 0;
                if !e.later_fragment {
                    expected_l4(&mut e, l4, l3 + usize::from(hdr.ihl) * 4);
                }
            }
            L3Model::V6 { hdr, exts, l4 } => {
                e.ethertype = 0x86dd;
                e.ip_version = 6;
                e.src = hdr.src;
                e.dst = hdr.dst;
                e.ttl = hdr.hop;
                e.ipv6_ext = !exts.is_empty();
                let mut off = l3 + 40;
                let body_len: usize = exts.iter().map(|x| encode_ext(x, 0).len()).sum();
                e.l3_len = (40 + body_len + encode_l4(l4, &self.payload).len()) as u16;
                e.protocol = l4_proto(l4, true);
                let mut walked_to_l4 = true;
                for (i, x) in exts.iter().enumerate() {
                    off += encode_ext(x, 0).len();
                    if let ExtModel::Frag { offset, .. } = x {
                        e.fragment = true;
                        if *offset != 0 {
                            e.later_fragment = true;
                            e.protocol = exts.get(i + 1).map_or(l4_proto(l4, true), ext_kind);
                            walked_to_l4 = false;
                            break;
                        }
                    }
                }
                if walked_to_l4 {
                    expected_l4(&mut e, l4, off);
                }
            }
        }
        e
    }
}

pub fn arb_l4(v6: bool) -> impl Strategy<Value = L4Model> {
    prop_oneof![
        3 => arb_tcp().prop_map(L4Model::Tcp),
        3 => any::<(u16, u16, u16)>().prop_map(|(sport, dport, checksum)| L4Model::Udp { sport, dport, checksum }),
        1 => arb_icmp(v6).prop_map(L4Model::Icmp),
        1 => any::<(u16, u16, u32)>().prop_map(|(sport, dport, vtag)| L4Model::Sctp { sport, dport, vtag }),
        1 => prop::sample::select(vec![47u8, 50, 89, 103]).prop_map(L4Model::Other),
    ]
}

pub fn arb_ipv4(l4: L4Model) -> impl Strategy<Value = L3Model> {
    let frag = prop_oneof![
        6 => Just(0x4000u16),
        1 => Just(0x2000u16),
        1 => (1u16..0x1fff, any::<bool>()).prop_map(|(o, mf)| o | if mf { 0x2000 } else { 0 }),
    ];
    (
        prop_oneof![3 => Just(0u8), 1 => 0u8..=10],
        any::<(u8, u16, u8, [u8; 4], [u8; 4])>(),
        frag,
    )
        .prop_flat_map(move |(opt_words, f, flags_frag)| {
            let l4 = l4.clone();
            prop::collection::vec(any::<u8>(), usize::from(opt_words) * 4).prop_map(
                move |options| L3Model::V4 {
                    hdr: Ipv4Hdr {
                        version: 4,
                        ihl: 5 + opt_words,
                        tos: f.0,
                        total_len: 0,
                        ident: f.1,
                        flags_frag,
                        ttl: f.2,
                        protocol: 0,
                        checksum: 0,
                        src: f.3,
                        dst: f.4,
                        options,
                    },
                    l4: l4.clone(),
                },
            )
        })
}

pub fn arb_ext() -> impl Strategy<Value = ExtModel> {
    prop_oneof![
        (prop::sample::select(vec![0u8, 43, 60]), 0u8..4)
            .prop_map(|(kind, units)| ExtModel::Generic { kind, units }),
        (1u8..6).prop_map(|len| ExtModel::Ah { len }),
        (
            prop_oneof![Just(0u16), 1u16..0x1fff],
            any::<bool>(),
            any::<u32>()
        )
            .prop_map(|(offset, more, ident)| ExtModel::Frag {
                offset,
                more,
                ident
            }),
    ]
}

pub fn arb_ipv6(l4: L4Model) -> impl Strategy<Value = L3Model> {
    (
        any::<(u8, u32, u8, [u8; 16], [u8; 16])>(),
        prop::collection::vec(arb_ext(), 0..4),
    )
        .prop_map(move |(f, exts)| L3Model::V6 {
            hdr: Ipv6Hdr {
                tc: f.0,
                flow: f.1 & 0xfffff,
                payload_len: 0,
                next: 0,
                hop: f.2,
                src: f.3,
                dst: f.4,
            },
            exts,
            l4: l4.clone(),
        })
}

pub fn arb_l3() -> impl Strategy<Value = L3Model> {
    prop_oneof![
        4 => arb_l4(false).prop_flat_map(arb_ipv4),
        3 => arb_l4(true).prop_flat_map(arb_ipv6),
        1 => arb_arp().prop_map(L3Model::Arp),
    ]
}

pub fn arb_vlans() -> impl Strategy<Value = Vec<(u16, u16)>> {
    prop_oneof![2 => Just(0usize), 1 => 1usize..=2].prop_flat_map(|n| {
        prop::collection::vec(
            (
                prop::sample::select(vec![0x8100u16, 0x88a8, 0x9100]),
                any::<u16>(),
            ),
            n,
        )
    })
}

pub fn arb_packet() -> impl Strategy<Value = PacketModel> {
    (
        any::<[u8; 6]>(),
        any::<[u8; 6]>(),
        arb_vlans(),
        arb_l3(),
        prop::collection::vec(any::<u8>(), 0..40),
        prop_oneof![4 => Just(0usize), 1 => 1usize..20],
    )
        .prop_map(|(dst, src, vlans, l3, payload, padding)| PacketModel {
            dst,
            src,
            vlans,
            l3,
            payload,
            padding,
        })
}

/// Checks every field of `m` against `e`.
pub fn assert_meta(m: &pipeline::PacketMeta, e: &Expected) {
    use pipeline::PacketMeta as M;
    assert_eq!(m.l2_offset, 0);
    assert_eq!(m.l3_offset, e.l3_offset, "l3_offset");
    assert_eq!(m.l4_offset, e.l4_offset, "l4_offset");
    assert_eq!(m.ethertype, e.ethertype, "ethertype");
    assert_eq!(m.outer_vlan, e.outer_vlan, "outer_vlan");
    assert_eq!(m.inner_vlan, e.inner_vlan, "inner_vlan");
    assert_eq!(m.vlan_count, e.vlan_count, "vlan_count");
    assert_eq!(m.ip_version, e.ip_version, "ip_version");
    assert_eq!(m.src_addr, e.src, "src");
    assert_eq!(m.dst_addr, e.dst, "dst");
    assert_eq!(m.protocol, e.protocol, "protocol");
    assert_eq!(m.src_port, e.sport, "src_port");
    assert_eq!(m.dst_port, e.dport, "dst_port");
    assert_eq!(m.tcp_flags, e.tcp_flags, "tcp_flags");
    assert_eq!(m.icmp_type, e.icmp_type, "icmp_type");
    assert_eq!(m.icmp_code, e.icmp_code, "icmp_code");
    assert_eq!(m.ttl, e.ttl, "ttl");
    assert_eq!(m.l3_len, e.l3_len, "l3_len");
    assert_eq!(m.flags & M::FLAG_FRAGMENT != 0, e.fragment, "fragment");
    assert_eq!(
        m.flags & M::FLAG_LATER_FRAGMENT != 0,
        e.later_fragment,
        "later fragment"
    );
    assert_eq!(
        m.flags & M::FLAG_IPV4_OPTIONS != 0,
        e.ipv4_options,
        "ipv4 options"
    );
    assert_eq!(m.flags & M::FLAG_IPV6_EXT != 0, e.ipv6_ext, "ipv6 ext");
    assert_eq!((m.out_port, m.next), (0, 0));
}
