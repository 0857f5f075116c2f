//! ICMP errors about load-balanced connections, translated like the connection's own
//! packets (as IPVS and conntrack's NAT do for "related" ICMP), so that path MTU discovery
//! works across the VIP:
//!
//! * **Toward the client**: an error about a request the node sent to a backend (quoting
//!   `client -> backend:port`), from the backend or a router on its way, addressed to the
//!   client. The quoted destination becomes the VIP and its port again, and an error from
//!   the backend itself comes from the VIP.
//! * **Toward the backend**: an error about a reply (quoting `VIP:port -> client`), from the
//!   client or a router on its way, addressed to the VIP. The quoted source becomes the
//!   backend and its port, and so does the error's destination.
//!
//! The connection must be tracked (and not blocked by a sharing ACL); anything else passes
//! unchanged, as before. The quoted transport checksum is updated incrementally where the
//! quote holds it; the quoted IPv4 header checksum, the outer IPv4 header checksum and the
//! ICMP/ICMPv6 checksum are computed again (errors are rare, and short).

use super::flow::FlowKey;
use super::node::NatEntry;
use super::service::ServiceTable;
use crate::conntrack::{ConnTrack, Direction};
use crate::icmp_error::{quoted, Quote};
use crate::lb::flow::{PROTO_ICMPV6, PROTO_TCP, PROTO_UDP};
use crate::meta::PacketMeta;
use crate::wire::checksum::{
    internet_checksum, ipv4_header_checksum, l4_checksum_v6, update_bytes,
};

/// Which end an ICMP error about a load-balanced connection travels to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Toward {
    /// The client: un-DNAT the quoted request.
    Client,
    /// The backend: DNAT the quoted reply and the error's destination.
    Backend,
}

/// How to translate one ICMP error (see the module doc).
#[derive(Debug, Clone, Copy)]
pub(crate) struct IcmpNat {
    pub(crate) toward: Toward,
    /// The quoted packet's headers.
    quote: Quote,
    /// What the quoted end (the destination toward the client, the source toward the
    /// backend) becomes.
    addr: [u8; 16],
    port: u16,
    /// Toward the client: the backend's address (an error it sent itself comes from the
    /// VIP after translation).
    backend: [u8; 16],
    /// The connection's service and backend ids (for a trace).
    pub(crate) service_id: u32,
    pub(crate) backend_id: u32,
}

/// The translation of the ICMP error `frame` (parsed into `m`) if it is about a connection
/// `ct` tracks under the service table `t`. Looks the connection up without refreshing it.
#[cold]
#[inline(never)]
pub(crate) fn related(
    t: &ServiceTable,
    ct: &ConnTrack<NatEntry>,
    frame: &[u8],
    m: &PacketMeta,
    now: u64,
) -> Option<IcmpNat> {
    // A quoted ICMP echo matches no VIP and no backend endpoint below (both are keyed by
    // TCP/UDP), so `translate` only ever sees TCP/UDP quotes.
    let (q, quote) = quoted(frame, m)?;
    let family = q.family as u8;
    // About a reply: the quote comes from a VIP.
    if let Some(sid) = t.vip_lookup(&q.src, q.proto, q.src_port, family) {
        let (_, d, e) = ct.peek(&q.reversed(), now)?;
        if d != Direction::Original || u32::from(e.service) != sid || e.blocked() {
            return None;
        }
        let be = t.backends.get(e.backend as usize)?;
        return Some(IcmpNat {
            toward: Toward::Backend,
            quote,
            addr: be.addr,
            port: e.port,
            backend: be.addr,
            service_id: sid,
            backend_id: e.backend,
        });
    }
    // About a request: the quote went to a backend endpoint.
    for &(sid, bid) in t.reply_candidates(&q.dst, q.proto, q.dst_port, family) {
        let svc = t.services.get(sid as usize)?;
        let vport = svc.port.unwrap_or(q.dst_port);
        let key = FlowKey {
            dst: svc.vip,
            dst_port: vport,
            ..q
        };
        if let Some((_, Direction::Original, e)) = ct.peek(&key, now) {
            if e.backend == bid && e.port == q.dst_port && !e.blocked() {
                let be = t.backends.get(bid as usize)?;
                return Some(IcmpNat {
                    toward: Toward::Client,
                    quote,
                    addr: svc.vip,
                    port: vport,
                    backend: be.addr,
                    service_id: sid,
                    backend_id: bid,
                });
            }
        }
    }
    None
}

/// Replaces `frame[at..at + new.len()]` with `new`, returning the old bytes (up to 16).
fn swap_bytes(frame: &mut [u8], at: usize, new: &[u8]) -> [u8; 16] {
    let mut old = [0u8; 16];
    old[..new.len()].copy_from_slice(&frame[at..at + new.len()]);
    frame[at..at + new.len()].copy_from_slice(new);
    old
}

/// Applies `nat` to the ICMP error `frame` (parsed into `m`; [`related`] found `nat` in the
/// same frame) and brings `m`'s addresses in line with the error's rewritten header (the
/// quote is not in the metadata). False when the frame's lengths do not hold together
/// (both left unchanged then).
#[cold]
#[inline(never)]
pub(crate) fn translate(frame: &mut [u8], m: &mut PacketMeta, nat: &IcmpNat) -> bool {
    let q = nat.quote;
    let alen = q.addr_len();
    let l3 = usize::from(m.l3_offset);
    let l4 = usize::from(m.l4_offset);
    // The error's own extent, from its IP header.
    let end = if q.v4 {
        l3 + usize::from(u16::from_be_bytes([frame[l3 + 2], frame[l3 + 3]]))
    } else {
        l3 + 40 + usize::from(u16::from_be_bytes([frame[l3 + 4], frame[l3 + 5]]))
    };
    if end > frame.len() || q.l4 + 4 > end {
        return false;
    }
    // 1. The quoted packet: one address and port.
    let (addr_at, port_at) = match nat.toward {
        Toward::Client => (q.dst_addr(), q.l4 + 2),
        Toward::Backend => (q.src_addr(), q.l4),
    };
    let old_addr = swap_bytes(frame, addr_at, &nat.addr[..alen]);
    let new_port = nat.port.to_be_bytes();
    let old_port = [frame[port_at], frame[port_at + 1]];
    frame[port_at..port_at + 2].copy_from_slice(&new_port);
    // Its transport checksum, where quoted (pseudo header and port changed).
    let proto = frame[if q.v4 { q.ip + 9 } else { q.ip + 6 }];
    let csum_at = match proto {
        PROTO_TCP => q.l4 + 16,
        PROTO_UDP => q.l4 + 6,
        _ => usize::MAX,
    };
    if csum_at != usize::MAX && csum_at + 2 <= end {
        let hc = u16::from_be_bytes([frame[csum_at], frame[csum_at + 1]]);
        // UDP over IPv4 without a checksum (0) stays without one.
        if !(proto == PROTO_UDP && q.v4 && hc == 0) {
            let hc = update_bytes(hc, &old_addr[..alen], &nat.addr[..alen]);
            let mut hc = update_bytes(hc, &old_port, &new_port);
            if proto == PROTO_UDP && hc == 0 {
                hc = 0xffff;
            }
            frame[csum_at..csum_at + 2].copy_from_slice(&hc.to_be_bytes());
        }
    }
    if q.v4 {
        let ihl = q.l4 - q.ip;
        let c = ipv4_header_checksum(&frame[q.ip..q.ip + ihl]);
        frame[q.ip + 10..q.ip + 12].copy_from_slice(&c.to_be_bytes());
    }
    // 2. The error itself: its source (from the backend) or its destination (to the VIP).
    let (src_at, dst_at) = if q.v4 {
        (l3 + 12, l3 + 16)
    } else {
        (l3 + 8, l3 + 24)
    };
    match nat.toward {
        Toward::Client => {
            if frame[src_at..src_at + alen] == nat.backend[..alen] {
                frame[src_at..src_at + alen].copy_from_slice(&nat.addr[..alen]);
            }
        }
        Toward::Backend => frame[dst_at..dst_at + alen].copy_from_slice(&nat.addr[..alen]),
    }
    m.src_addr[..alen].copy_from_slice(&frame[src_at..src_at + alen]);
    m.dst_addr[..alen].copy_from_slice(&frame[dst_at..dst_at + alen]);
    if q.v4 {
        let ihl = usize::from(frame[l3] & 0x0f) * 4;
        let c = ipv4_header_checksum(&frame[l3..l3 + ihl]);
        frame[l3 + 10..l3 + 12].copy_from_slice(&c.to_be_bytes());
    }
    // 3. The ICMP checksum over the whole message (and, for ICMPv6, the pseudo header).
    frame[l4 + 2] = 0;
    frame[l4 + 3] = 0;
    let c = if q.v4 {
        internet_checksum(&frame[l4..end])
    } else {
        let src: [u8; 16] = frame[src_at..src_at + 16].try_into().expect("16 bytes");
        let dst: [u8; 16] = frame[dst_at..dst_at + 16].try_into().expect("16 bytes");
        l4_checksum_v6(&src, &dst, PROTO_ICMPV6, &frame[l4..end], 2)
    };
    frame[l4 + 2..l4 + 4].copy_from_slice(&c.to_be_bytes());
    true
}
