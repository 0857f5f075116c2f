//! Header rewrites of the load balancer: destination NAT toward a backend and source NAT of
//! replies back to the VIP, with the IPv4 header and TCP/UDP/SCTP checksums kept valid. (The
//! RST or ABORT a `down_backend = "reset"` flow gets is written by [`crate::reject`], as an
//! ACL's.)
//!
//! SCTP's checksum is a CRC32c over the SCTP packet alone (no pseudo-header): an address
//! rewrite leaves it alone, a port rewrite updates it
//! ([`crate::wire::crc32c::sctp_checksum_fixup`]), always in software (DPDK's SCTP checksum
//! offload is not asked for; only the IPv4 header checksum may be left to the port).
//!
//! Address and port rewrites update the checksums incrementally (RFC 1624 eqn. 3, one fold
//! for address and port together), in software, so the result is correct on any port; or,
//! with [`rewrite_offloaded`], leave the IPv4 header and/or L4 checksum to a port that
//! computes them on transmit (the fields prepared as DPDK's offload flags require: IPv4
//! checksum 0, L4 checksum the pseudo-header sum), returning the request to attach to the
//! packet ([`finish_checksums`] completes them in software when the buffer cannot carry
//! it). A UDP checksum of 0 ("none", IPv4) stays 0 and is never offloaded; a UDP result of
//! 0 is sent as 0xffff. Every function checks the offsets it uses against the buffer and
//! returns false or `None` (touching nothing) when they do not fit, so a packet that does
//! not match its metadata cannot cause a panic.

use crate::buf::{CsumOffload, L4Csum};
use crate::meta::PacketMeta;
use crate::wire::checksum::{fold, pseudo_header_v4, pseudo_header_v6};
use crate::wire::crc32c::sctp_checksum_fixup;
use crate::wire::ip_protocol::{SCTP, TCP, UDP};

/// Which end of the packet a rewrite changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// Source address and port (reply un-NAT).
    Src,
    /// Destination address and port (DNAT).
    Dst,
}

/// Folds `~hc + sum(~old words) + sum(new words)` into the updated checksum.
#[inline(always)]
fn csum_fixup(hc: u16, acc: u64) -> u16 {
    !fold(u64::from(!hc) + acc)
}

/// Sum of `~old + new` over the 16-bit words of two byte arrays of even length `B`.
/// (Fixed-size arrays and an index loop: the slice-and-`zip` form it replaced compiled to an
/// out-of-line call with two divisions once the `lb` node's code grew past the inliner's
/// budget, 18 cycles/packet in the benchmark's full pipeline.)
#[inline(always)]
fn delta<const B: usize>(old: &[u8; B], new: &[u8; B]) -> u64 {
    let mut acc = 0u64;
    let mut i = 0;
    while i + 1 < B {
        acc += u64::from(!u16::from_be_bytes([old[i], old[i + 1]]));
        acc += u64::from(u16::from_be_bytes([new[i], new[i + 1]]));
        i += 2;
    }
    acc
}

/// Which checksums a rewrite leaves to the port ([`rewrite_offloaded`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Offload {
    /// The IPv4 header checksum.
    pub ip: bool,
    /// The TCP/UDP checksum.
    pub l4: bool,
}

/// The outcome of a rewrite that fit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rewritten {
    /// Every checksum is already right.
    Complete,
    /// Checksums left to the port: attach this request to the packet.
    NeedsPort(CsumOffload),
}

/// Rewrites the source or destination address (first 4 bytes of `addr` for IPv4, all 16
/// for IPv6) and L4 port of a TCP/UDP/SCTP packet described by `m`, fixing the IPv4 header
/// checksum and the TCP/UDP/SCTP checksum incrementally, and updates `m` to the new tuple.
/// Returns false, leaving the packet alone, when it is not TCP/UDP/SCTP over IP or too
/// short.
#[inline]
pub fn rewrite(d: &mut [u8], m: &mut PacketMeta, end: End, addr: &[u8; 16], port: u16) -> bool {
    rewrite_offloaded(d, m, end, addr, port, Offload::default()).is_some()
}

/// [`rewrite`], leaving the checksums `off` names to the port: the IPv4 header checksum
/// field is set to 0, the L4 checksum field to the pseudo-header sum of the new addresses
/// (a UDP/IPv4 checksum of 0 stays 0 and stays with the packet). `None` when the packet
/// does not fit (untouched).
#[inline]
pub fn rewrite_offloaded(
    d: &mut [u8],
    m: &mut PacketMeta,
    end: End,
    addr: &[u8; 16],
    port: u16,
    off: Offload,
) -> Option<Rewritten> {
    match m.ip_version {
        4 => rewrite_family::<4>(d, m, end, addr, port, off),
        6 => rewrite_family::<16>(d, m, end, addr, port, off),
        _ => None,
    }
}

/// The L4 length (header and payload) of an IP packet whose IP header (`ip_len` bytes,
/// extension headers included) starts `ip`, taken from the header's length field, if it is
/// sane: at most `avail`, the bytes present after the IP header.
#[inline(always)]
fn l4_len(ip: &[u8], ip_len: usize, avail: usize, v4: bool) -> Option<usize> {
    let n = if v4 {
        usize::from(u16::from_be_bytes([ip[2], ip[3]])).checked_sub(ip_len)?
    } else {
        usize::from(u16::from_be_bytes([ip[4], ip[5]])).checked_sub(ip_len - 40)?
    };
    (n <= avail).then_some(n)
}

/// The pseudo-header sum (unfolded) of the current addresses of the IP header that starts
/// `ip` (at least 20 bytes for IPv4, 40 for IPv6).
#[inline(always)]
fn pseudo_acc(ip: &[u8], v4: bool, proto: u8, len: usize) -> u64 {
    if v4 {
        let a = |o: usize| [ip[o], ip[o + 1], ip[o + 2], ip[o + 3]];
        pseudo_header_v4(a(12), a(16), proto, len as u16)
    } else {
        let a = |o: usize| -> [u8; 16] { ip[o..o + 16].try_into().expect("16 bytes") };
        pseudo_header_v6(&a(8), &a(24), proto, len as u32)
    }
}

/// Computes in software the checksums `req` left to the port (for a buffer that cannot
/// carry the request). Returns false, touching nothing, when the packet does not fit.
pub fn finish_checksums(d: &mut [u8], req: &CsumOffload) -> bool {
    let l3 = usize::from(req.l2_len);
    let l4 = l3 + usize::from(req.l3_len);
    let hdr = if req.ipv4 { 20 } else { 40 };
    if l3 + hdr > l4 || l4 > d.len() {
        return false;
    }
    let (at, proto) = match req.l4 {
        L4Csum::Tcp => (16, TCP),
        L4Csum::Udp => (6, UDP),
        L4Csum::None => (0, 0),
    };
    let len = match req.l4 {
        L4Csum::None => 0,
        _ => match l4_len(&d[l3..], l4 - l3, d.len() - l4, req.ipv4) {
            Some(n) if n >= at + 2 => n,
            _ => return false,
        },
    };
    if req.ip && req.ipv4 {
        let ihl = usize::from(d[l3] & 0x0f) * 4;
        if ihl < 20 || l3 + ihl > d.len() {
            return false;
        }
        let c = crate::wire::checksum::ipv4_header_checksum(&d[l3..l3 + ihl]);
        d[l3 + 10..l3 + 12].copy_from_slice(&c.to_be_bytes());
    }
    if req.l4 != L4Csum::None {
        let pseudo = pseudo_acc(&d[l3..], req.ipv4, proto, len);
        let c = match crate::wire::checksum::l4_checksum(pseudo, &d[l4..l4 + len], at) {
            0 if proto == UDP => 0xffff,
            x => x,
        };
        d[l4 + at..l4 + at + 2].copy_from_slice(&c.to_be_bytes());
    }
    true
}

/// [`rewrite`] for one family, `N` = address bytes (4 or 16): with the address length a
/// constant, the checksum deltas and copies compile to a few fixed-size loads and stores.
/// The IP header and the L4 header up to its checksum are bounds-checked once, as two
/// slices; every field is then read and written at a constant offset within them.
#[inline(always)]
fn rewrite_family<const N: usize>(
    d: &mut [u8],
    m: &mut PacketMeta,
    end: End,
    addr: &[u8; 16],
    port: u16,
    off: Offload,
) -> Option<Rewritten> {
    let (csum_at, tcp) = match m.protocol {
        TCP => (16, true),
        UDP => (6, false),
        SCTP => return rewrite_sctp::<N>(d, m, end, addr, port, off.ip),
        _ => return None,
    };
    let (ip, rest) = headers::<N>(d, m)?;
    let avail = rest.len();
    let l4h = rest.get_mut(..csum_at + 2)?;
    let (aoff, poff) = field_offsets::<N>(end);
    let new_addr: &[u8; N] = addr[..N].try_into().expect("N <= 16");
    let new_port = port.to_be_bytes();
    let hc = u16::from_be_bytes([l4h[csum_at], l4h[csum_at + 1]]);
    // Left to the port: not a UDP/IPv4 "no checksum" (0), and the L4 length must be sane.
    let l4_port = if off.l4 && !(N == 4 && !tcp && hc == 0) {
        l4_len(ip, ip.len(), avail, N == 4).filter(|&n| n >= csum_at + 2)
    } else {
        None
    };
    let ip_port = N == 4 && off.ip;
    let addr_delta = swap_addr::<N>(ip, aoff, new_addr, ip_port);
    let old_port = [l4h[poff], l4h[poff + 1]];
    let l4_delta = addr_delta + delta(&old_port, &new_port);
    l4h[poff..poff + 2].copy_from_slice(&new_port);
    let new = match l4_port {
        Some(len) => fold(pseudo_acc(ip, N == 4, m.protocol, len)),
        None if !tcp => match hc {
            0 => 0,
            _ => match csum_fixup(hc, l4_delta) {
                0 => 0xffff,
                x => x,
            },
        },
        None => csum_fixup(hc, l4_delta),
    };
    l4h[csum_at..csum_at + 2].copy_from_slice(&new.to_be_bytes());
    set_meta::<N>(m, end, new_addr, port);
    if !ip_port && l4_port.is_none() {
        return Some(Rewritten::Complete);
    }
    Some(Rewritten::NeedsPort(CsumOffload {
        l2_len: m.l3_offset,
        l3_len: m.l4_offset - m.l3_offset,
        ipv4: N == 4,
        ip: ip_port,
        l4: match (l4_port, tcp) {
            (None, _) => L4Csum::None,
            (Some(_), true) => L4Csum::Tcp,
            (Some(_), false) => L4Csum::Udp,
        },
    }))
}

/// The IP header (from `m.l3_offset`, extension headers included) and the rest of the
/// packet (from `m.l4_offset`) of a packet of family `N` (4 or 16 address bytes), both
/// bounds-checked; `None` when the offsets do not leave room for the fixed IP header.
#[inline(always)]
fn headers<'a, const N: usize>(
    d: &'a mut [u8],
    m: &PacketMeta,
) -> Option<(&'a mut [u8], &'a mut [u8])> {
    let l3 = usize::from(m.l3_offset);
    let l4 = usize::from(m.l4_offset);
    let hdr = if N == 4 { 20 } else { 40 };
    if l4 == 0 || l3 + hdr > l4 {
        return None;
    }
    let (head, rest) = d.split_at_mut_checked(l4)?;
    Some((head.get_mut(l3..)?, rest))
}

/// Writes `new` over the address at `aoff` of the IP header `ip` (family `N`) and, for
/// IPv4, updates the header checksum (or sets it to 0 when `ip_port` leaves it to the
/// port); returns the change's checksum delta (the L4 pseudo-header changes by as much).
#[inline(always)]
fn swap_addr<const N: usize>(ip: &mut [u8], aoff: usize, new: &[u8; N], ip_port: bool) -> u64 {
    let old: [u8; N] = ip[aoff..aoff + N].try_into().expect("in the header");
    let addr_delta = delta(&old, new);
    ip[aoff..aoff + N].copy_from_slice(new);
    if N == 4 {
        let new_hc = if ip_port {
            0
        } else {
            csum_fixup(u16::from_be_bytes([ip[10], ip[11]]), addr_delta)
        };
        ip[10..12].copy_from_slice(&new_hc.to_be_bytes());
    }
    addr_delta
}

/// Brings `m`'s tuple in line with a rewrite of `end` to `addr` (family `N`) and `port`.
#[inline(always)]
fn set_meta<const N: usize>(m: &mut PacketMeta, end: End, addr: &[u8; N], port: u16) {
    match end {
        End::Src => {
            m.src_addr[..N].copy_from_slice(addr);
            m.src_port = port;
        }
        End::Dst => {
            m.dst_addr[..N].copy_from_slice(addr);
            m.dst_port = port;
        }
    }
}

/// The offsets of the address `end` names in an IP header of family `N` (4 or 16 address
/// bytes) and of its port in a TCP/UDP/SCTP header.
#[inline(always)]
fn field_offsets<const N: usize>(end: End) -> (usize, usize) {
    match (N, end) {
        (4, End::Src) => (12, 0),
        (4, End::Dst) => (16, 2),
        (_, End::Src) => (8, 0),
        (_, End::Dst) => (24, 2),
    }
}

/// [`rewrite_family`] for SCTP (out of line: the TCP/UDP path stays as it was): the
/// address and the IPv4 header checksum as there (the latter left to the port when
/// `off_ip`), the port, and the CRC32c updated for the port alone (the address is not
/// under it). The SCTP packet's length comes from the IP header and must cover its
/// 12-byte common header.
#[inline(never)]
fn rewrite_sctp<const N: usize>(
    d: &mut [u8],
    m: &mut PacketMeta,
    end: End,
    addr: &[u8; 16],
    port: u16,
    off_ip: bool,
) -> Option<Rewritten> {
    let (ip, rest) = headers::<N>(d, m)?;
    let len = l4_len(ip, ip.len(), rest.len(), N == 4).filter(|&n| n >= 12)?;
    let sctp = rest.get_mut(..12)?;
    let (aoff, poff) = field_offsets::<N>(end);
    let new_addr: &[u8; N] = addr[..N].try_into().expect("N <= 16");
    let ip_port = N == 4 && off_ip;
    swap_addr::<N>(ip, aoff, new_addr, ip_port);
    let old_ports: [u8; 4] = sctp[..4].try_into().expect("12 bytes");
    sctp[poff..poff + 2].copy_from_slice(&port.to_be_bytes());
    let new_ports: [u8; 4] = sctp[..4].try_into().expect("12 bytes");
    let field: [u8; 4] = sctp[8..12].try_into().expect("12 bytes");
    sctp[8..12].copy_from_slice(&sctp_checksum_fixup(field, old_ports, new_ports, len));
    set_meta::<N>(m, end, new_addr, port);
    Some(if ip_port {
        Rewritten::NeedsPort(CsumOffload {
            l2_len: m.l3_offset,
            l3_len: m.l4_offset - m.l3_offset,
            ipv4: true,
            ip: true,
            l4: L4Csum::None,
        })
    } else {
        Rewritten::Complete
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nodes::parse::{parse_packet, ParseConfig};
    use crate::source::{build_frame, IpVersion, L4Proto, SourceSpec};
    use crate::wire::checksum::sum_bytes;
    use crate::wire::{Ipv4Packet, TcpPacket, UdpPacket};
    use proptest::prelude::*;

    fn meta(f: &[u8]) -> PacketMeta {
        let mut m = PacketMeta::default();
        parse_packet(f, &ParseConfig::default(), &mut m).unwrap();
        m
    }

    fn valid(f: &[u8]) -> bool {
        let m = meta(f);
        let l4 = usize::from(m.l4_offset);
        let l3 = usize::from(m.l3_offset);
        let end = l3 + usize::from(m.l3_len);
        let seg = &f[l4..end];
        let ok_ip = m.ip_version != 4
            || Ipv4Packet::new_checked(&f[l3..end])
                .unwrap()
                .verify_checksum();
        let ok_l4 = match (m.ip_version, m.protocol) {
            (4, TCP) => TcpPacket::new_checked(seg)
                .unwrap()
                .verify_checksum_v4(m.src_v4(), m.dst_v4()),
            (6, TCP) => TcpPacket::new_checked(seg)
                .unwrap()
                .verify_checksum_v6(&m.src_addr, &m.dst_addr),
            (4, UDP) => UdpPacket::new_checked(seg)
                .unwrap()
                .verify_checksum_v4(m.src_v4(), m.dst_v4()),
            (6, UDP) => UdpPacket::new_checked(seg)
                .unwrap()
                .verify_checksum_v6(&m.src_addr, &m.dst_addr),
            _ => false,
        };
        ok_ip && ok_l4 && etherparse_agrees(f)
    }

    /// An independent reading (etherparse): the IPv4 header checksum and the TCP/UDP
    /// checksum recomputed from the parsed headers and payload equal the ones in the frame
    /// (a UDP checksum of 0 over IPv4 means none).
    fn etherparse_agrees(f: &[u8]) -> bool {
        use etherparse::{NetHeaders, PacketHeaders, TransportHeader};
        let h = PacketHeaders::from_ethernet_slice(f).expect("etherparse reads the frame");
        let p = h.payload.slice();
        match (h.net.as_ref(), h.transport.as_ref()) {
            (Some(NetHeaders::Ipv4(ip, _)), Some(t)) => {
                ip.header_checksum == ip.calc_header_checksum()
                    && match t {
                        TransportHeader::Tcp(t) => {
                            t.checksum == t.calc_checksum_ipv4(ip, p).unwrap()
                        }
                        TransportHeader::Udp(u) => {
                            u.checksum == 0 || u.checksum == u.calc_checksum_ipv4(ip, p).unwrap()
                        }
                        _ => false,
                    }
            }
            (Some(NetHeaders::Ipv6(ip, _)), Some(t)) => match t {
                TransportHeader::Tcp(t) => t.checksum == t.calc_checksum_ipv6(ip, p).unwrap(),
                TransportHeader::Udp(u) => u.checksum == u.calc_checksum_ipv6(ip, p).unwrap(),
                _ => false,
            },
            _ => false,
        }
    }

    /// A TCP or UDP frame over IPv4 (addresses from the low 32 bits) or IPv6 between
    /// `src` and `dst` (address, port), `extra` bytes longer than the smallest.
    fn frame(v6: bool, tcp: bool, src: (u128, u16), dst: (u128, u16), extra: u16) -> Vec<u8> {
        let mut spec = SourceSpec::simple(
            1,
            if tcp { L4Proto::Tcp } else { L4Proto::Udp },
            if v6 { IpVersion::V6 } else { IpVersion::V4 },
        );
        spec.frame_size += extra;
        if v6 {
            spec.src_ip = std::net::Ipv6Addr::from(src.0).into();
            spec.dst_ip = std::net::Ipv6Addr::from(dst.0).into();
        } else {
            spec.src_ip = std::net::Ipv4Addr::from(src.0 as u32).into();
            spec.dst_ip = std::net::Ipv4Addr::from(dst.0 as u32).into();
        }
        (spec.src_port, spec.dst_port) = (src.1, dst.1);
        build_frame(&spec, 0)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        /// Random addresses/ports/payload sizes: after a rewrite of either end the packet
        /// verifies (the pipeline's own full recomputation and etherparse's), and the
        /// metadata equals a fresh parse.
        #[test]
        fn rewrite_keeps_checksums(v6 in any::<bool>(), tcp in any::<bool>(), src in any::<u128>(),
                                   dst in any::<u128>(), sp in 1u16.., dp in 1u16.., size in 0u16..200,
                                   na in any::<u128>(), np in any::<u16>(), to_src in any::<bool>()) {
            let mut f = frame(v6, tcp, (src, sp), (dst, dp), size);
            prop_assert!(valid(&f));
            let mut m = meta(&f);
            let mut a = na.to_be_bytes();
            if !v6 { a[4..].fill(0); }
            let end = if to_src { End::Src } else { End::Dst };
            prop_assert!(rewrite(&mut f, &mut m, end, &a, np));
            prop_assert!(valid(&f));
            prop_assert_eq!(m, meta(&f));
        }

        /// The same rewrites leaving checksums to the port: the fields hold what DPDK's
        /// offload flags require (IPv4 checksum 0, L4 checksum the pseudo-header sum), a
        /// NIC model completing them (and, for buffers that cannot offload,
        /// `finish_checksums`) gives exactly the bytes of the software rewrite; a UDP/IPv4
        /// "no checksum" is never offloaded.
        #[test]
        fn offloaded_rewrite_completes_to_the_same_bytes(v6 in any::<bool>(), tcp in any::<bool>(),
                                   src in any::<u128>(), dst in any::<u128>(), sp in 1u16.., dp in 1u16..,
                                   size in 0u16..200, na in any::<u128>(), np in any::<u16>(),
                                   to_src in any::<bool>(), ip in any::<bool>(), l4 in any::<bool>(),
                                   no_udp_csum in any::<bool>()) {
            let mut f = frame(v6, tcp, (src, sp), (dst, dp), size);
            let m0 = meta(&f);
            let (l3, l4o) = (usize::from(m0.l3_offset), usize::from(m0.l4_offset));
            let zero_udp = !v6 && !tcp && no_udp_csum;
            if zero_udp {
                f[l4o + 6..l4o + 8].copy_from_slice(&[0, 0]);
            }
            let mut a = na.to_be_bytes();
            if !v6 { a[4..].fill(0); }
            let end = if to_src { End::Src } else { End::Dst };
            let (mut soft, mut ms) = (f.clone(), m0);
            prop_assert!(rewrite(&mut soft, &mut ms, end, &a, np));
            let (mut hw, mut mh) = (f.clone(), m0);
            let r = rewrite_offloaded(&mut hw, &mut mh, end, &a, np, Offload { ip, l4 });
            prop_assert_eq!(mh, ms);
            // What may be left to the port: the IPv4 header checksum, an L4 checksum present.
            let (want_ip, want_l4) = (ip && !v6, l4 && !zero_udp);
            let req = match r {
                Some(Rewritten::Complete) => {
                    prop_assert!(!want_ip && !want_l4);
                    prop_assert_eq!(&hw, &soft);
                    return Ok(());
                }
                Some(Rewritten::NeedsPort(req)) => req,
                None => return Err(TestCaseError::fail("rewrite did not fit")),
            };
            prop_assert_eq!((req.l2_len, req.l3_len, req.ipv4), (m0.l3_offset, m0.l4_offset - m0.l3_offset, !v6));
            prop_assert_eq!(req.ip, want_ip);
            let want_l4 = match (want_l4, tcp) {
                (false, _) => L4Csum::None,
                (true, true) => L4Csum::Tcp,
                (true, false) => L4Csum::Udp,
            };
            prop_assert_eq!(req.l4, want_l4);
            let mut fin = hw.clone();
            // The NIC: the IPv4 checksum over the header (field 0); the L4 checksum over the
            // segment with the pseudo-header sum in the field; UDP's 0 sent as 0xffff.
            if req.ip {
                prop_assert_eq!(&hw[l3 + 10..l3 + 12], &[0u8, 0][..]);
                let c = crate::wire::checksum::internet_checksum(&hw[l3..l4o]);
                hw[l3 + 10..l3 + 12].copy_from_slice(&c.to_be_bytes());
            }
            if req.l4 != L4Csum::None {
                let at = l4o + if tcp { 16 } else { 6 };
                let end_of_l4 = usize::from(m0.l3_offset) + usize::from(m0.l3_len);
                let c = match !fold(sum_bytes(0, &hw[l4o..end_of_l4])) {
                    0 if !tcp => 0xffff,
                    x => x,
                };
                hw[at..at + 2].copy_from_slice(&c.to_be_bytes());
            }
            prop_assert_eq!(&hw, &soft);
            prop_assert!(finish_checksums(&mut fin, &req));
            prop_assert_eq!(&fin, &soft);
        }
    }

    /// [`frame`]'s UDP frame turned into an SCTP one (IP protocol 132, the UDP header
    /// replaced by an SCTP common header with a verification tag and a correct CRC32c).
    fn sctp_frame(v6: bool, src: (u128, u16), dst: (u128, u16), extra: u16) -> Vec<u8> {
        let mut f = frame(v6, false, src, dst, extra);
        let m = meta(&f);
        let (l3, l4) = (usize::from(m.l3_offset), usize::from(m.l4_offset));
        if v6 {
            f[l3 + 6] = SCTP;
        } else {
            f[l3 + 9] = SCTP;
            f[l3 + 10..l3 + 12].fill(0);
            let c = crate::wire::checksum::ipv4_header_checksum(&f[l3..l4]);
            f[l3 + 10..l3 + 12].copy_from_slice(&c.to_be_bytes());
        }
        f[l4 + 4..l4 + 8].copy_from_slice(&0x5eed_1234u32.to_be_bytes());
        f[l4 + 8..l4 + 12].fill(0);
        let c = crate::wire::crc32c::sctp_checksum_bytes(&f[l4..]);
        f[l4 + 8..l4 + 12].copy_from_slice(&c);
        f
    }

    /// The SCTP packet of `f` carries a correct CRC32c and, over IPv4, a correct header
    /// checksum.
    fn sctp_valid(f: &[u8]) -> bool {
        let m = meta(f);
        let (l3, l4) = (usize::from(m.l3_offset), usize::from(m.l4_offset));
        let mut p = f[l4..].to_vec();
        let field = [p[8], p[9], p[10], p[11]];
        p[8..12].fill(0);
        let ip_ok =
            m.ip_version != 4 || Ipv4Packet::new_checked(&f[l3..]).unwrap().verify_checksum();
        ip_ok && crate::wire::crc32c::sctp_checksum_bytes(&p) == field
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]
        /// SCTP: after a rewrite of either end the CRC32c and the IPv4 header checksum
        /// verify and the metadata equals a fresh parse; with the IPv4 checksum left to the
        /// port, the field is 0 and the CRC32c is still written in software.
        #[test]
        fn sctp_rewrite_keeps_the_crc(v6 in any::<bool>(), src in any::<u128>(), dst in any::<u128>(),
                                      sp in 1u16.., dp in 1u16.., size in 0u16..1500,
                                      na in any::<u128>(), np in any::<u16>(), to_src in any::<bool>(),
                                      ip in any::<bool>()) {
            let f = sctp_frame(v6, (src, sp), (dst, dp), size);
            prop_assert!(sctp_valid(&f));
            let m0 = meta(&f);
            prop_assert_eq!((m0.protocol, m0.src_port, m0.dst_port), (SCTP, sp, dp));
            let mut a = na.to_be_bytes();
            if !v6 { a[4..].fill(0); }
            let end = if to_src { End::Src } else { End::Dst };
            let (mut soft, mut ms) = (f.clone(), m0);
            prop_assert!(rewrite(&mut soft, &mut ms, end, &a, np));
            prop_assert!(sctp_valid(&soft));
            prop_assert_eq!(ms, meta(&soft));
            let (mut hw, mut mh) = (f.clone(), m0);
            let r = rewrite_offloaded(&mut hw, &mut mh, end, &a, np, Offload { ip, l4: true });
            prop_assert_eq!(mh, ms);
            let l3 = usize::from(m0.l3_offset);
            match r {
                Some(Rewritten::NeedsPort(req)) => {
                    prop_assert!(ip && !v6);
                    prop_assert_eq!((req.ip, req.l4), (true, L4Csum::None));
                    prop_assert_eq!(&hw[l3 + 10..l3 + 12], &[0u8, 0][..]);
                    prop_assert!(finish_checksums(&mut hw, &req));
                }
                Some(Rewritten::Complete) => prop_assert!(!ip || v6),
                None => return Err(TestCaseError::fail("rewrite did not fit")),
            }
            prop_assert_eq!(&hw, &soft);
        }
    }

    #[test]
    fn sctp_shorter_than_its_common_header_is_left_alone() {
        let f = sctp_frame(false, (1, 1000), (2, 38412), 0);
        let mut m = meta(&f);
        let l3 = usize::from(m.l3_offset);
        // The IP length says 8 bytes of SCTP: too short to carry the checksum.
        let mut g = f.clone();
        g[l3 + 2..l3 + 4].copy_from_slice(&28u16.to_be_bytes());
        let before = g.clone();
        assert!(!rewrite(&mut g, &mut m, End::Dst, &[9; 16], 7));
        assert_eq!(g, before);
    }

    #[test]
    fn short_or_foreign_packets_are_left_alone() {
        let spec = SourceSpec::simple(1, L4Proto::Udp, IpVersion::V4);
        let f = build_frame(&spec, 0);
        let mut m = meta(&f);
        let mut short = f[..30].to_vec();
        assert!(!rewrite(&mut short, &mut m, End::Dst, &[1; 16], 1));
        assert_eq!(short, f[..30].to_vec());
        let mut m2 = m;
        m2.protocol = 1;
        let mut g = f.clone();
        assert!(!rewrite(&mut g, &mut m2, End::Dst, &[1; 16], 1));
        assert_eq!(g, f);
    }
}
