//! The reply to a packet an ACL rejects (or a load balancer's VIP without a backend, with
//! `reject`): a TCP RST, an SCTP ABORT, or an ICMP/ICMPv6 destination unreachable with the
//! codes ovn-controller uses (`pinctrl_handle_reject`), written over the packet's own bytes
//! (no allocation). Shared by the `acl` and `lb` nodes.
//!
//! # Replies
//! * **TCP** (not a fragment): a RST from the packet's destination to its source (MACs, IP
//!   addresses and ports swapped; VLAN tags kept). Per RFC 9293 (3.10.7.1, as RFC 793): if
//!   the offending segment has ACK, `seq = its ack` and the flags are `RST`; otherwise
//!   `seq = 0`, `ack = its seq + segment length (+1 for SYN, +1 for FIN)` and the flags are
//!   `RST|ACK`. No payload, no TCP options, window 0; the IP header has no options (IPv4) or
//!   extension headers (IPv6), TTL / hop limit [`REPLY_TTL`].
//! * **SCTP**: an ABORT (RFC 9260 8.4, as ovn-controller's `pinctrl_handle_sctp_abort`): ports
//!   and addresses swapped, one ABORT chunk (type 6, length 4, no error causes). If the
//!   offending packet has verification tag 0 and begins with an INIT chunk, the ABORT carries
//!   the INIT's initiate tag and the T bit clear (8.4 item 3); otherwise it reflects the
//!   packet's own tag with the T bit set (item 8). The CRC32c checksum covers the SCTP
//!   packet ([`crate::wire::crc32c`]). A packet whose first chunk is an ABORT or a SHUTDOWN
//!   COMPLETE gets nothing (8.4 items 2 and 6; ovn-controller answers the second), nor does
//!   one too short for the common header and a chunk header (or, for an INIT with tag 0,
//!   the initiate tag).
//! * **UDP**: ICMPv4 type 3 code 3 (port unreachable) or ICMPv6 type 1 code 4 (port
//!   unreachable), as OVN sends.
//! * **Anything else** (ICMP informational messages, other protocols, and the first
//!   fragment of a TCP segment, whose full length is unknown):
//!   ICMPv4 type 3 code 1 (host unreachable) or ICMPv6 type 1 code 1 (communication
//!   administratively prohibited), OVN's codes for these.
//! * Every ICMPv4 reply quotes the original IP header (options included) and the first 8
//!   bytes of its payload (RFC 792); every ICMPv6 reply (RFC 4443) as much of the original
//!   packet as keeps the reply within 1280 bytes. The reply comes from the original
//!   destination address.
//!
//! # Never a reply to (RFC 1122 3.2.2, RFC 1812 4.3.2.7, RFC 4443 2.4(e), RFC 9293)
//! ICMP/ICMPv6 error messages (and ICMPv6 redirects), TCP RSTs, SCTP ABORTs and SHUTDOWN
//! COMPLETEs, non-first fragments, packets
//! to an Ethernet group address or to an IP broadcast/multicast address, packets from an IP
//! address that is not a unicast host (unspecified, multicast, IPv4 limited broadcast,
//! loopback), non-IP packets, and packets whose headers do not fit (see [`NoReply`]).
//!
//! # Use
//! [`reply_len`] says how long the reply will be (or why there is none); the caller makes
//! the buffer at least that long (the reply can be longer than the packet: ICMP adds up to
//! 28 (IPv4) or 48 (IPv6) bytes), then [`write_reject`] rewrites it in place and returns the
//! reply's length; the caller then sets the packet length to that and sends it out of the
//! port it came in on.

use crate::meta::PacketMeta;
use crate::wire::checksum::{fold, pseudo_header_v4, pseudo_header_v6, sum_bytes};
use crate::wire::crc32c::sctp_checksum_bytes;
use crate::PacketBuf;

/// Turns `pkt` into its reject reply in place ([`reply_len`], lengthening the packet into
/// its tailroom where the reply is longer, then [`write_reject`]). False, with the packet
/// unchanged, when there is no reply to send or it does not fit: the caller drops it.
pub fn answer<P: PacketBuf>(pkt: &mut P, m: &PacketMeta) -> bool {
    let len = pkt.data().len();
    let Ok(n) = reply_len(pkt.data(), m) else {
        return false;
    };
    if n > len && !pkt.set_len(n) {
        return false;
    }
    match write_reject(pkt.data_mut(), len, m) {
        Ok(r) if r == pkt.data().len() || pkt.set_len(r) => true,
        _ => {
            if n > len {
                pkt.set_len(len);
            }
            false
        }
    }
}

/// TTL / hop limit of a reply.
pub const REPLY_TTL: u8 = 64;
/// Largest IPv6 packet an ICMPv6 error may be (RFC 4443 2.4(c): the minimum MTU).
pub const IPV6_MIN_MTU: usize = 1280;

const PROTO_ICMP: u8 = 1;
const PROTO_TCP: u8 = 6;
const PROTO_ICMPV6: u8 = 58;
const PROTO_SCTP: u8 = 132;
/// SCTP chunk types the reply looks at.
const SCTP_INIT: u8 = 1;
const SCTP_ABORT: u8 = 6;
const SCTP_SHUTDOWN_COMPLETE: u8 = 14;
/// The ABORT chunk's T bit: the tag is the packet's own, reflected.
const SCTP_ABORT_T: u8 = 0x01;
/// Common header (12 bytes) and one chunk header (4).
const SCTP_ABORT_LEN: usize = 16;
const TCP_FIN: u8 = 0x01;
const TCP_SYN: u8 = 0x02;
const TCP_RST: u8 = 0x04;
const TCP_ACK: u8 = 0x10;

/// Why a packet gets no reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoReply {
    /// Not IPv4 or IPv6.
    NotIp,
    /// A non-first fragment.
    LaterFragment,
    /// An ICMP/ICMPv6 error message (or redirect).
    IcmpError,
    /// A TCP RST.
    TcpRst,
    /// An SCTP packet whose first chunk is an ABORT or a SHUTDOWN COMPLETE.
    SctpAbort,
    /// To an Ethernet group address or an IP broadcast/multicast address.
    NotUnicastDestination,
    /// From an address that is not a unicast host.
    NotUnicastSource,
    /// The headers the metadata points at are not in the frame, or are inconsistent.
    Malformed,
    /// The buffer is shorter than the reply.
    NoRoom,
}

/// What the reply is, with everything needed to write it (read before any byte moves).
#[derive(Debug, Clone, Copy)]
enum Plan {
    Rst {
        v6: bool,
        sport: u16,
        dport: u16,
        seq: u32,
        ack: u32,
        flags: u8,
    },
    SctpAbort {
        v6: bool,
        sport: u16,
        dport: u16,
        vtag: u32,
        chunk_flags: u8,
    },
    Icmp4 {
        quote: usize,
        code: u8,
    },
    Icmp6 {
        quote: usize,
        code: u8,
    },
}

const PROTO_UDP: u8 = 17;
/// ICMPv4 destination unreachable codes OVN answers with: UDP, anything else.
const ICMP4_PORT_UNREACHABLE: u8 = 3;
const ICMP4_HOST_UNREACHABLE: u8 = 1;
/// ICMPv6 destination unreachable codes OVN answers with: UDP, anything else.
const ICMP6_PORT_UNREACHABLE: u8 = 4;
const ICMP6_ADMIN_PROHIBITED: u8 = 1;

fn be16(d: &[u8], o: usize) -> u16 {
    u16::from_be_bytes([d[o], d[o + 1]])
}

fn be32(d: &[u8], o: usize) -> u32 {
    u32::from_be_bytes([d[o], d[o + 1], d[o + 2], d[o + 3]])
}

fn v4_unicast_host(a: [u8; 4]) -> bool {
    !(a == [0; 4] || a == [255; 4] || a[0] >= 224 || a[0] == 127)
}

fn v6_unicast_host(a: &[u8; 16]) -> bool {
    let unspecified = a.iter().all(|&b| b == 0);
    let loopback = a[..15].iter().all(|&b| b == 0) && a[15] == 1;
    !(unspecified || loopback || a[0] == 0xff)
}

/// ICMPv4 error types: destination unreachable, source quench, redirect, time exceeded,
/// parameter problem.
fn icmp4_is_error(t: u8) -> bool {
    matches!(t, 3 | 4 | 5 | 11 | 12)
}

/// ICMPv6 errors are types 0..=127; redirects (137) get no reply either.
fn icmp6_no_reply(t: u8) -> bool {
    t < 128 || t == 137
}

/// Decides the reply from the frame (`frame` = the packet's bytes, exactly its length).
fn plan(frame: &[u8], m: &PacketMeta) -> Result<(Plan, usize), NoReply> {
    let (l2, l3) = (usize::from(m.l2_offset), usize::from(m.l3_offset));
    if l2 + 14 > l3 || l3 > frame.len() {
        return Err(NoReply::Malformed);
    }
    let v6 = match m.ip_version {
        4 => false,
        6 => true,
        _ => return Err(NoReply::NotIp),
    };
    if m.flags & PacketMeta::FLAG_LATER_FRAGMENT != 0 {
        return Err(NoReply::LaterFragment);
    }
    if frame[l2] & 1 != 0 {
        return Err(NoReply::NotUnicastDestination);
    }
    // The IP packet as the header says, within the frame.
    let ip_len = if v6 {
        if l3 + 40 > frame.len() || frame[l3] >> 4 != 6 {
            return Err(NoReply::Malformed);
        }
        40 + usize::from(be16(frame, l3 + 4))
    } else {
        if l3 + 20 > frame.len() || frame[l3] >> 4 != 4 {
            return Err(NoReply::Malformed);
        }
        usize::from(be16(frame, l3 + 2))
    };
    let l3_end = l3 + ip_len;
    if l3_end > frame.len() {
        return Err(NoReply::Malformed);
    }
    if v6 {
        let src: [u8; 16] = frame[l3 + 8..l3 + 24].try_into().expect("16 bytes");
        let dst: [u8; 16] = frame[l3 + 24..l3 + 40].try_into().expect("16 bytes");
        if dst[0] == 0xff {
            return Err(NoReply::NotUnicastDestination);
        }
        if !v6_unicast_host(&src) {
            return Err(NoReply::NotUnicastSource);
        }
    } else {
        let ihl = usize::from(frame[l3] & 0x0f) * 4;
        if ihl < 20 || l3 + ihl > l3_end {
            return Err(NoReply::Malformed);
        }
        let src: [u8; 4] = frame[l3 + 12..l3 + 16].try_into().expect("4 bytes");
        let dst: [u8; 4] = frame[l3 + 16..l3 + 20].try_into().expect("4 bytes");
        if dst == [255; 4] || (224..240).contains(&dst[0]) {
            return Err(NoReply::NotUnicastDestination);
        }
        if !v4_unicast_host(src) {
            return Err(NoReply::NotUnicastSource);
        }
    }
    let l4 = usize::from(m.l4_offset);
    let has_l4 = l4 != 0 && l4 >= l3 + 20 && l4 <= l3_end;
    let fragment = m.flags & PacketMeta::FLAG_FRAGMENT != 0;
    match m.protocol {
        PROTO_ICMP | PROTO_ICMPV6 => {
            // The type byte must be there to know it is not an error.
            if !has_l4 || l4 >= l3_end {
                return Err(NoReply::Malformed);
            }
            let t = frame[l4];
            let err = if m.protocol == PROTO_ICMP {
                !v6 && icmp4_is_error(t)
            } else {
                v6 && icmp6_no_reply(t)
            };
            if err {
                return Err(NoReply::IcmpError);
            }
        }
        PROTO_TCP if has_l4 && l4 + 20 <= l3_end => {
            let flags = frame[l4 + 13];
            if flags & TCP_RST != 0 {
                return Err(NoReply::TcpRst);
            }
            if !fragment {
                let doff = usize::from(frame[l4 + 12] >> 4) * 4;
                if doff < 20 || l4 + doff > l3_end {
                    return Err(NoReply::Malformed);
                }
                let (seq, ack) = if flags & TCP_ACK != 0 {
                    (be32(frame, l4 + 8), 0)
                } else {
                    let seg = (l3_end - l4 - doff) as u32
                        + u32::from(flags & TCP_SYN != 0)
                        + u32::from(flags & TCP_FIN != 0);
                    (0, be32(frame, l4 + 4).wrapping_add(seg))
                };
                let plan = Plan::Rst {
                    v6,
                    sport: be16(frame, l4 + 2),
                    dport: be16(frame, l4),
                    seq,
                    ack,
                    flags: if flags & TCP_ACK != 0 {
                        TCP_RST
                    } else {
                        TCP_RST | TCP_ACK
                    },
                };
                return Ok((plan, l3 + if v6 { 40 } else { 20 } + 20));
            }
        }
        PROTO_TCP => return Err(NoReply::Malformed),
        PROTO_SCTP => {
            if !has_l4 || l4 + SCTP_ABORT_LEN > l3_end {
                return Err(NoReply::Malformed);
            }
            let chunk = frame[l4 + 12];
            if chunk == SCTP_ABORT || chunk == SCTP_SHUTDOWN_COMPLETE {
                return Err(NoReply::SctpAbort);
            }
            let tag = be32(frame, l4 + 4);
            let (vtag, chunk_flags) = if tag == 0 && chunk == SCTP_INIT {
                // The INIT's initiate tag follows its chunk header.
                if l4 + SCTP_ABORT_LEN + 4 > l3_end {
                    return Err(NoReply::Malformed);
                }
                (be32(frame, l4 + SCTP_ABORT_LEN), 0)
            } else {
                (tag, SCTP_ABORT_T)
            };
            let plan = Plan::SctpAbort {
                v6,
                sport: be16(frame, l4 + 2),
                dport: be16(frame, l4),
                vtag,
                chunk_flags,
            };
            return Ok((plan, l3 + if v6 { 40 } else { 20 } + SCTP_ABORT_LEN));
        }
        _ => {}
    }
    let udp = m.protocol == PROTO_UDP;
    if v6 {
        let quote = ip_len.min(IPV6_MIN_MTU - 48);
        let code = if udp {
            ICMP6_PORT_UNREACHABLE
        } else {
            ICMP6_ADMIN_PROHIBITED
        };
        Ok((Plan::Icmp6 { quote, code }, l3 + 48 + quote))
    } else {
        let ihl = usize::from(frame[l3] & 0x0f) * 4;
        let quote = ihl + (ip_len - ihl).min(8);
        let code = if udp {
            ICMP4_PORT_UNREACHABLE
        } else {
            ICMP4_HOST_UNREACHABLE
        };
        Ok((Plan::Icmp4 { quote, code }, l3 + 28 + quote))
    }
}

/// The length of the reply to the packet `frame` (exactly the packet's bytes, parsed into
/// `meta`), or why there is none.
pub fn reply_len(frame: &[u8], meta: &PacketMeta) -> Result<usize, NoReply> {
    plan(frame, meta).map(|(_, len)| len)
}

/// Rewrites the packet in `buf` into its reject reply, in place, and returns the reply's
/// length. The packet is `buf[..frame_len]` (parsed into `meta`); `buf` must be at least
/// [`reply_len`] long (bytes past `frame_len` are overwritten). On `Err`, `buf` is unchanged.
pub fn write_reject(buf: &mut [u8], frame_len: usize, meta: &PacketMeta) -> Result<usize, NoReply> {
    let frame_len = frame_len.min(buf.len());
    let (plan, len) = plan(&buf[..frame_len], meta)?;
    if len > buf.len() {
        return Err(NoReply::NoRoom);
    }
    let (l2, l3) = (usize::from(meta.l2_offset), usize::from(meta.l3_offset));
    // Ethernet: swap the MAC addresses (VLAN tags, if any, stay as they are).
    for i in 0..6 {
        buf.swap(l2 + i, l2 + 6 + i);
    }
    let v6 = match plan {
        Plan::Rst { v6, .. } | Plan::SctpAbort { v6, .. } => v6,
        Plan::Icmp4 { .. } => false,
        Plan::Icmp6 { .. } => true,
    };
    // Addresses, swapped (read before anything moves).
    let mut src = [0u8; 16];
    let mut dst = [0u8; 16];
    if v6 {
        src.copy_from_slice(&buf[l3 + 24..l3 + 40]);
        dst.copy_from_slice(&buf[l3 + 8..l3 + 24]);
    } else {
        src[..4].copy_from_slice(&buf[l3 + 16..l3 + 20]);
        dst[..4].copy_from_slice(&buf[l3 + 12..l3 + 16]);
    }
    let ip_hlen = if v6 { 40 } else { 20 };
    let (protocol, l4_len) = match plan {
        Plan::Rst { .. } => (PROTO_TCP, 20),
        Plan::SctpAbort { .. } => (PROTO_SCTP, SCTP_ABORT_LEN),
        Plan::Icmp4 { quote, .. } => {
            buf.copy_within(l3..l3 + quote, l3 + 28);
            (PROTO_ICMP, 8 + quote)
        }
        Plan::Icmp6 { quote, .. } => {
            buf.copy_within(l3..l3 + quote, l3 + 48);
            (PROTO_ICMPV6, 8 + quote)
        }
    };
    write_ip_header(&mut buf[l3..l3 + ip_hlen], v6, protocol, l4_len, &src, &dst);
    let l4 = l3 + ip_hlen;
    let seg = &mut buf[l4..l4 + l4_len];
    match plan {
        Plan::Rst {
            sport,
            dport,
            seq,
            ack,
            flags,
            ..
        } => {
            seg[0..2].copy_from_slice(&sport.to_be_bytes());
            seg[2..4].copy_from_slice(&dport.to_be_bytes());
            seg[4..8].copy_from_slice(&seq.to_be_bytes());
            seg[8..12].copy_from_slice(&ack.to_be_bytes());
            seg[12] = 5 << 4;
            seg[13] = flags;
            seg[14..20].fill(0); // window, checksum, urgent pointer
        }
        Plan::SctpAbort {
            sport,
            dport,
            vtag,
            chunk_flags,
            ..
        } => {
            seg[0..2].copy_from_slice(&sport.to_be_bytes());
            seg[2..4].copy_from_slice(&dport.to_be_bytes());
            seg[4..8].copy_from_slice(&vtag.to_be_bytes());
            seg[8..12].fill(0);
            seg[12..16].copy_from_slice(&[SCTP_ABORT, chunk_flags, 0, 4]);
            let crc = sctp_checksum_bytes(seg);
            seg[8..12].copy_from_slice(&crc);
            return Ok(len);
        }
        Plan::Icmp4 { code, .. } => {
            seg[..8].copy_from_slice(&[3, code, 0, 0, 0, 0, 0, 0]);
        }
        Plan::Icmp6 { code, .. } => {
            seg[..8].copy_from_slice(&[1, code, 0, 0, 0, 0, 0, 0]);
        }
    }
    let (pseudo, csum_at) = match protocol {
        PROTO_TCP if v6 => (pseudo_header_v6(&src, &dst, PROTO_TCP, 20), 16),
        PROTO_TCP => (
            pseudo_header_v4(
                src[..4].try_into().expect("4"),
                dst[..4].try_into().expect("4"),
                PROTO_TCP,
                20,
            ),
            16,
        ),
        PROTO_ICMPV6 => (pseudo_header_v6(&src, &dst, PROTO_ICMPV6, l4_len as u32), 2),
        _ => (0, 2), // ICMPv4: no pseudo header
    };
    let c = !fold(sum_bytes(pseudo, seg));
    seg[csum_at..csum_at + 2].copy_from_slice(&c.to_be_bytes());
    Ok(len)
}

/// Writes a fresh IPv4 (20 bytes, no options) or IPv6 (40 bytes) header into `h`.
fn write_ip_header(
    h: &mut [u8],
    v6: bool,
    protocol: u8,
    l4_len: usize,
    src: &[u8; 16],
    dst: &[u8; 16],
) {
    if v6 {
        h[0..4].copy_from_slice(&[0x60, 0, 0, 0]);
        h[4..6].copy_from_slice(&(l4_len as u16).to_be_bytes());
        h[6] = protocol;
        h[7] = REPLY_TTL;
        h[8..24].copy_from_slice(src);
        h[24..40].copy_from_slice(dst);
    } else {
        h[0] = 0x45;
        h[1] = 0;
        h[2..4].copy_from_slice(&((20 + l4_len) as u16).to_be_bytes());
        h[4..8].copy_from_slice(&[0, 0, 0x40, 0]); // id 0, DF
        h[8] = REPLY_TTL;
        h[9] = protocol;
        h[10..12].fill(0);
        h[12..16].copy_from_slice(&src[..4]);
        h[16..20].copy_from_slice(&dst[..4]);
        let c = !fold(sum_bytes(0, &h[..20]));
        h[10..12].copy_from_slice(&c.to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nodes::parse::{parse_packet, ParseConfig};
    use etherparse::{
        Icmpv4Header, Icmpv6Header, LinkHeader, NetHeaders, PacketHeaders, TransportHeader,
    };
    use proptest::prelude::*;

    /// A small deterministic generator (xorshift64*), so one `u64` describes a packet.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
        fn byte(&mut self) -> u8 {
            self.next() as u8
        }
        fn bytes(&mut self, n: usize) -> Vec<u8> {
            (0..n).map(|_| self.byte()).collect()
        }
        fn chance(&mut self, pct: u64) -> bool {
            self.below(100) < pct
        }
    }

    fn sum16(acc: u32, d: &[u8]) -> u32 {
        let mut acc = acc;
        for w in d.chunks(2) {
            acc += u32::from(w[0]) << 8 | u32::from(*w.get(1).unwrap_or(&0));
        }
        acc
    }

    fn csum(acc: u32, d: &[u8]) -> u16 {
        let mut s = sum16(acc, d);
        while s > 0xffff {
            s = (s & 0xffff) + (s >> 16);
        }
        !(s as u16)
    }

    /// What kind of packet the generator made.
    #[derive(Debug, Clone, Copy, PartialEq)]
    enum L4 {
        Tcp,
        Udp,
        Icmp,
        Other,
    }

    /// A random Ethernet frame: 0-2 VLAN tags, IPv4 (options, maybe a first fragment) or
    /// IPv6 (maybe a hop-by-hop header), TCP (options, any flags), UDP, ICMP or another
    /// protocol, random payload, maybe Ethernet padding. Mostly unicast; sometimes not.
    fn random_frame(seed: u64) -> (Vec<u8>, L4) {
        let mut r = Rng(seed | 1);
        let mut f = Vec::new();
        let mut dmac = r.bytes(6);
        if !r.chance(5) {
            dmac[0] &= 0xfe;
        }
        f.extend_from_slice(&dmac);
        f.extend(r.bytes(6));
        let v6 = r.chance(50);
        let ethertype: [u8; 2] = if v6 { [0x86, 0xdd] } else { [0x08, 0x00] };
        match r.below(3) {
            0 => {}
            1 => {
                f.extend_from_slice(&[0x81, 0x00, r.byte() & 0x0f, r.byte()]);
            }
            _ => {
                f.extend_from_slice(&[0x88, 0xa8, r.byte() & 0x0f, r.byte()]);
                f.extend_from_slice(&[0x81, 0x00, r.byte() & 0x0f, r.byte()]);
            }
        }
        f.extend_from_slice(&ethertype);
        let kind = match r.below(4) {
            0 => L4::Tcp,
            1 => L4::Udp,
            2 => L4::Icmp,
            _ => L4::Other,
        };
        let proto = match (kind, v6) {
            (L4::Tcp, _) => 6,
            (L4::Udp, _) => 17,
            (L4::Icmp, false) => 1,
            (L4::Icmp, true) => 58,
            (L4::Other, _) => 47,
        };
        // L4 segment.
        let plen = r.below(300) as usize;
        let payload = r.bytes(plen);
        let mut seg = match kind {
            L4::Tcp => {
                let opt = 4 * r.below(11) as usize;
                let mut t = r.bytes(20 + opt);
                t[12] = (((20 + opt) / 4) as u8) << 4;
                t[13] = r.byte() & if r.chance(10) { 0xff } else { !TCP_RST };
                t[16] = 0;
                t[17] = 0;
                t
            }
            L4::Udp => {
                let mut u = r.bytes(8);
                u[4..6].copy_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
                u[6] = 0;
                u[7] = 0;
                u
            }
            L4::Icmp => {
                let types: &[u8] = if v6 {
                    &[128, 129, 1, 2, 3, 4, 135, 136, 137]
                } else {
                    &[8, 0, 3, 4, 5, 11, 12, 42]
                };
                let mut i = r.bytes(8);
                i[0] = types[r.below(types.len() as u64) as usize];
                i[2] = 0;
                i[3] = 0;
                i
            }
            L4::Other => Vec::new(),
        };
        seg.extend_from_slice(&payload);
        let l3 = f.len();
        if v6 {
            let ext = r.chance(30);
            let mut src = r.bytes(16);
            let mut dst = r.bytes(16);
            src[0] = if r.chance(3) { 0xff } else { 0x20 };
            dst[0] = if r.chance(3) { 0xff } else { 0x20 };
            let plen = seg.len() + if ext { 8 } else { 0 };
            f.extend_from_slice(&[0x60, r.byte() & 0x0f, r.byte(), r.byte()]);
            f.extend_from_slice(&(plen as u16).to_be_bytes());
            f.push(if ext { 0 } else { proto });
            f.push(r.byte());
            f.extend_from_slice(&src);
            f.extend_from_slice(&dst);
            if ext {
                f.extend_from_slice(&[proto, 0, 1, 4, 0, 0, 0, 0]); // hop-by-hop, PadN
            }
            let l4 = f.len();
            f.extend_from_slice(&seg);
            let ck = match kind {
                L4::Tcp => Some(16),
                L4::Udp => Some(6),
                L4::Icmp => Some(2),
                L4::Other => None,
            };
            if let Some(at) = ck {
                let mut ps = sum16(0, &src);
                ps = sum16(ps, &dst);
                ps += seg.len() as u32 + u32::from(proto);
                let c = csum(ps, &f[l4..]);
                f[l4 + at..l4 + at + 2].copy_from_slice(&c.to_be_bytes());
            }
        } else {
            let opt = 4 * r.below(11) as usize;
            let ihl = 20 + opt;
            let first_fragment = r.chance(10);
            let mut src = [r.byte() % 223 + 1, r.byte(), r.byte(), r.byte()];
            let mut dst = [r.byte() % 223 + 1, r.byte(), r.byte(), r.byte()];
            if src[0] == 127 {
                src[0] = 10;
            }
            if dst[0] == 127 {
                dst[0] = 10;
            }
            if r.chance(3) {
                dst = [224 + r.byte() % 16, 0, 0, r.byte()];
            }
            if r.chance(2) {
                dst = [255; 4];
            }
            f.push(0x40 | (ihl / 4) as u8);
            f.push(r.byte());
            f.extend_from_slice(&((ihl + seg.len()) as u16).to_be_bytes());
            f.extend_from_slice(&[r.byte(), r.byte()]);
            f.extend_from_slice(if first_fragment {
                &[0x20, 0]
            } else {
                &[0x40, 0]
            });
            f.push(r.byte().max(1));
            f.push(proto);
            f.extend_from_slice(&[0, 0]);
            f.extend_from_slice(&src);
            f.extend_from_slice(&dst);
            f.resize(f.len() + opt, 1); // NOP options
            let c = csum(0, &f[l3..l3 + ihl]);
            f[l3 + 10..l3 + 12].copy_from_slice(&c.to_be_bytes());
            let l4 = f.len();
            f.extend_from_slice(&seg);
            let ck = match kind {
                L4::Tcp => Some(16),
                L4::Udp => Some(6),
                L4::Icmp => Some(2),
                L4::Other => None,
            };
            if let Some(at) = ck {
                let ps = if kind == L4::Icmp {
                    0
                } else {
                    sum16(sum16(0, &src), &dst) + u32::from(proto) + seg.len() as u32
                };
                let c = csum(ps, &f[l4..]);
                f[l4 + at..l4 + at + 2].copy_from_slice(&c.to_be_bytes());
            }
        }
        if r.chance(20) {
            let pad = 60usize.saturating_sub(f.len()).max(r.below(8) as usize);
            f.resize(f.len() + pad, 0);
        }
        (f, kind)
    }

    /// The verdict an independent reading of the original (etherparse) gives.
    #[derive(Debug, PartialEq)]
    enum Expect {
        Rst,
        Icmp,
        None,
    }

    fn expect(orig: &[u8]) -> Expect {
        let h = PacketHeaders::from_ethernet_slice(orig).expect("generated frames parse");
        let Some(LinkHeader::Ethernet2(eth)) = &h.link else {
            panic!("ethernet")
        };
        if eth.destination[0] & 1 != 0 {
            return Expect::None;
        }
        let (fragment, ip_proto) = match h.net.as_ref().expect("ip") {
            NetHeaders::Ipv4(ip, _) => {
                let d = ip.destination;
                let s = ip.source;
                if d == [255; 4] || (224..240).contains(&d[0]) || s[0] >= 224 {
                    return Expect::None;
                }
                (
                    ip.more_fragments || ip.fragment_offset.value() != 0,
                    ip.protocol.0,
                )
            }
            NetHeaders::Ipv6(ip, _) => {
                if ip.destination[0] == 0xff || ip.source[0] == 0xff {
                    return Expect::None;
                }
                (false, 0)
            }
        };
        match &h.transport {
            Some(TransportHeader::Tcp(t)) if t.rst => Expect::None,
            Some(TransportHeader::Tcp(_)) if !fragment => Expect::Rst,
            Some(TransportHeader::Icmpv4(i)) => {
                if [3, 4, 5, 11, 12].contains(&i.to_bytes()[0]) {
                    Expect::None
                } else {
                    Expect::Icmp
                }
            }
            Some(TransportHeader::Icmpv6(i)) => {
                let t = i.to_bytes()[0];
                if t < 128 || t == 137 {
                    Expect::None
                } else {
                    Expect::Icmp
                }
            }
            _ => {
                // etherparse leaves fragmented payloads unparsed: look at the raw bytes.
                if fragment && ip_proto == 6 {
                    // A first fragment's TCP header: a RST gets nothing, else ICMP.
                    let ipl = match h.net.as_ref().unwrap() {
                        NetHeaders::Ipv4(ip, _) => ip.header_len(),
                        NetHeaders::Ipv6(..) => unreachable!(),
                    };
                    let at = eth_len(&h) + ipl;
                    if orig[at + 13] & TCP_RST != 0 {
                        return Expect::None;
                    }
                }
                if fragment && ip_proto == 1 {
                    let ipl = match h.net.as_ref().unwrap() {
                        NetHeaders::Ipv4(ip, _) => ip.header_len(),
                        NetHeaders::Ipv6(..) => unreachable!(),
                    };
                    if [3, 4, 5, 11, 12].contains(&orig[eth_len(&h) + ipl]) {
                        return Expect::None;
                    }
                }
                Expect::Icmp
            }
        }
    }

    fn eth_len(h: &PacketHeaders<'_>) -> usize {
        14 + match &h.vlan {
            None => 0,
            Some(etherparse::VlanHeader::Single(_)) => 4,
            Some(etherparse::VlanHeader::Double(_)) => 8,
        }
    }

    /// Checks a reply with etherparse against the original; returns its kind.
    fn check_reply(orig: &[u8], reply: &[u8], m: &PacketMeta) -> Expect {
        let o = PacketHeaders::from_ethernet_slice(orig).unwrap();
        let h = PacketHeaders::from_ethernet_slice(reply).expect("the reply parses");
        let (Some(LinkHeader::Ethernet2(oe)), Some(LinkHeader::Ethernet2(re))) = (&o.link, &h.link)
        else {
            panic!("ethernet")
        };
        assert_eq!(
            (re.source, re.destination),
            (oe.destination, oe.source),
            "MACs swapped"
        );
        assert_eq!(h.vlan, o.vlan, "VLAN tags kept");
        let l3 = usize::from(m.l3_offset);
        let orig_ip_len = usize::from(m.l3_len);
        match (o.net.as_ref().unwrap(), h.net.as_ref().expect("IP")) {
            (NetHeaders::Ipv4(oi, _), NetHeaders::Ipv4(ri, rext)) => {
                assert_eq!((ri.source, ri.destination), (oi.destination, oi.source));
                assert_eq!(
                    ri.header_checksum,
                    ri.calc_header_checksum(),
                    "IPv4 checksum"
                );
                assert_eq!(ri.time_to_live, REPLY_TTL);
                assert!(ri.options.is_empty() && rext.is_empty());
                assert_eq!(
                    usize::from(ri.total_len),
                    reply.len() - l3,
                    "no trailing bytes"
                );
                match h.transport.as_ref().expect("L4") {
                    TransportHeader::Tcp(t) => {
                        let p = h.payload.slice();
                        assert!(p.is_empty(), "RST without payload");
                        assert_eq!(
                            t.checksum,
                            t.calc_checksum_ipv4(ri, p).unwrap(),
                            "TCP checksum"
                        );
                        check_rst(orig, m, t);
                        Expect::Rst
                    }
                    TransportHeader::Icmpv4(i) => {
                        let at = l3 + 20;
                        // OVN's codes: port unreachable for UDP, host unreachable else.
                        let code = if oi.protocol.0 == 17 { 3 } else { 1 };
                        assert_eq!(&reply[at..at + 2], &[3, code], "type 3, OVN's code");
                        let p = h.payload.slice();
                        let want = Icmpv4Header::with_checksum(i.icmp_type.clone(), p);
                        assert_eq!(i.checksum, want.checksum, "ICMP checksum");
                        let quote = oi.header_len() + (orig_ip_len - oi.header_len()).min(8);
                        assert_eq!(p, &orig[l3..l3 + quote], "original header + 8 bytes");
                        Expect::Icmp
                    }
                    other => panic!("unexpected {other:?}"),
                }
            }
            (NetHeaders::Ipv6(oi, _), NetHeaders::Ipv6(ri, rext)) => {
                assert_eq!((ri.source, ri.destination), (oi.destination, oi.source));
                assert_eq!(ri.hop_limit, REPLY_TTL);
                assert!(rext.is_empty());
                assert_eq!(usize::from(ri.payload_length) + 40, reply.len() - l3);
                assert!(reply.len() - l3 <= IPV6_MIN_MTU);
                match h.transport.as_ref().expect("L4") {
                    TransportHeader::Tcp(t) => {
                        let p = h.payload.slice();
                        assert!(p.is_empty());
                        assert_eq!(t.checksum, t.calc_checksum_ipv6(ri, p).unwrap());
                        check_rst(orig, m, t);
                        Expect::Rst
                    }
                    TransportHeader::Icmpv6(i) => {
                        let at = l3 + 40;
                        let udp = m.protocol == 17;
                        assert_eq!(
                            &reply[at..at + 2],
                            &[1, if udp { 4 } else { 1 }],
                            "type 1, OVN's code"
                        );
                        let p = h.payload.slice();
                        let want =
                            Icmpv6Header::with_checksum(i.icmp_type, ri.source, ri.destination, p)
                                .unwrap();
                        assert_eq!(i.checksum, want.checksum, "ICMPv6 checksum");
                        let quote = orig_ip_len.min(IPV6_MIN_MTU - 48);
                        assert_eq!(p, &orig[l3..l3 + quote], "as much of the original as fits");
                        Expect::Icmp
                    }
                    other => panic!("unexpected {other:?}"),
                }
            }
            _ => panic!("address family changed"),
        }
    }

    fn check_rst(orig: &[u8], m: &PacketMeta, t: &etherparse::TcpHeader) {
        let l4 = usize::from(m.l4_offset);
        let ot = etherparse::TcpHeader::from_slice(&orig[l4..]).unwrap().0;
        assert_eq!(
            (t.source_port, t.destination_port),
            (ot.destination_port, ot.source_port)
        );
        assert!(t.rst && !t.syn && !t.fin && !t.psh && !t.urg);
        assert!(t.options.is_empty());
        if ot.ack {
            assert!(!t.ack);
            assert_eq!(t.sequence_number, ot.acknowledgment_number);
        } else {
            let seg_len = usize::from(m.l3_offset) + usize::from(m.l3_len) - l4 - ot.header_len();
            let want = ot
                .sequence_number
                .wrapping_add(seg_len as u32 + u32::from(ot.syn) + u32::from(ot.fin));
            assert!(t.ack);
            assert_eq!((t.sequence_number, t.acknowledgment_number), (0, want));
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4000))]

        #[test]
        fn replies_parse_verify_and_quote_the_original(seed in any::<u64>()) {
            let (orig, _) = random_frame(seed);
            let mut m = PacketMeta::default();
            prop_assume!(parse_packet(&orig, &ParseConfig::default(), &mut m).is_ok());
            let want = expect(&orig);
            let got = reply_len(&orig, &m);
            let mut buf = orig.clone();
            buf.resize(orig.len() + 64, 0xee);
            match want {
                Expect::None => {
                    prop_assert!(got.is_err(), "{:?}", got);
                    prop_assert_eq!(write_reject(&mut buf, orig.len(), &m), got);
                    prop_assert_eq!(&buf[..orig.len()], &orig[..], "unchanged on no reply");
                }
                kind => {
                    let n = got.expect("a reply");
                    prop_assert!(n <= buf.len());
                    prop_assert_eq!(write_reject(&mut buf, orig.len(), &m), Ok(n));
                    prop_assert_eq!(check_reply(&orig, &buf[..n], &m), kind);
                }
            }
        }

        #[test]
        fn short_buffers_are_refused_untouched(seed in any::<u64>()) {
            let (orig, _) = random_frame(seed);
            let mut m = PacketMeta::default();
            prop_assume!(parse_packet(&orig, &ParseConfig::default(), &mut m).is_ok());
            if let Ok(n) = reply_len(&orig, &m) {
                if n > orig.len() {
                    let mut buf = orig.clone();
                    buf.resize(n - 1, 0);
                    let before = buf.clone();
                    prop_assert_eq!(write_reject(&mut buf, orig.len(), &m), Err(NoReply::NoRoom));
                    prop_assert_eq!(buf, before);
                }
            }
        }

        #[test]
        fn arbitrary_metadata_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200),
                                           l3 in 0u16..220, l4 in 0u16..240, ver in 0u8..8,
                                           proto in any::<u8>(), flags in any::<u8>()) {
            let m = PacketMeta { l3_offset: l3, l4_offset: l4, ip_version: ver, protocol: proto, flags, ..Default::default() };
            let mut buf = bytes.clone();
            buf.resize(bytes.len() + 100, 0);
            let _ = reply_len(&bytes, &m);
            let _ = write_reject(&mut buf, bytes.len(), &m);
        }
    }

    /// The same checks over 20,000 fixed seeds, counting what was covered, so the property
    /// test above cannot pass by generating only easy cases.
    #[test]
    fn generator_covers_every_case() {
        let mut seen = std::collections::BTreeMap::<String, u32>::new();
        for seed in 0..20_000u64 {
            let (orig, kind) = random_frame(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15));
            let mut m = PacketMeta::default();
            if parse_packet(&orig, &ParseConfig::default(), &mut m).is_err() {
                *seen.entry("parse-error".into()).or_default() += 1;
                continue;
            }
            let want = expect(&orig);
            let mut buf = orig.clone();
            buf.resize(orig.len() + 64, 0);
            let got = write_reject(&mut buf, orig.len(), &m);
            let what = match (&want, got) {
                (Expect::None, Err(why)) => format!("none {why:?}"),
                (Expect::None, Ok(_)) => panic!("seed {seed}: replied to {orig:02x?}"),
                (_, Err(why)) => panic!("seed {seed}: no reply ({why:?}) to {orig:02x?}"),
                (w, Ok(n)) => {
                    assert_eq!(&check_reply(&orig, &buf[..n], &m), w);
                    format!("{w:?}")
                }
            };
            *seen.entry(what.clone()).or_default() += 1;
            let shape = format!(
                "v{} vlans {} {:?}{}{}",
                m.ip_version,
                m.vlan_count,
                kind,
                if m.flags & PacketMeta::FLAG_IPV4_OPTIONS != 0 {
                    " options"
                } else {
                    ""
                },
                if m.flags & PacketMeta::FLAG_IPV6_EXT != 0 {
                    " ext"
                } else {
                    ""
                },
            );
            *seen.entry(format!("{what} / {shape}")).or_default() += 1;
        }
        let n = |k: &str| seen.get(k).copied().unwrap_or(0);
        for k in [
            "Rst",
            "Icmp",
            "none IcmpError",
            "none TcpRst",
            "none NotUnicastDestination",
            "none NotUnicastSource",
            "Rst / v4 vlans 2 Tcp options",
            "Rst / v6 vlans 1 Tcp ext",
            "Icmp / v4 vlans 1 Udp options",
            "Icmp / v6 vlans 2 Udp ext",
            "Icmp / v4 vlans 0 Icmp options",
            "Icmp / v6 vlans 0 Icmp",
            "Icmp / v4 vlans 0 Other",
            "Icmp / v4 vlans 0 Tcp options",
        ] {
            assert!(n(k) >= 20, "only {} cases of `{k}`: {seen:#?}", n(k));
        }
        assert_eq!(n("parse-error"), 0, "{seen:#?}");
    }

    fn meta_of(f: &[u8]) -> PacketMeta {
        let mut m = PacketMeta::default();
        parse_packet(f, &ParseConfig::default(), &mut m).unwrap();
        m
    }

    /// Ethernet + IPv4 (no options) + `l4`, checksums left as they are.
    fn v4(src: [u8; 4], dst: [u8; 4], proto: u8, frag: u16, l4: &[u8]) -> Vec<u8> {
        let mut f = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00];
        f.extend_from_slice(&[0x45, 0]);
        f.extend_from_slice(&((20 + l4.len()) as u16).to_be_bytes());
        f.extend_from_slice(&[0, 1]);
        f.extend_from_slice(&frag.to_be_bytes());
        f.extend_from_slice(&[64, proto, 0, 0]);
        f.extend_from_slice(&src);
        f.extend_from_slice(&dst);
        f.extend_from_slice(l4);
        f
    }

    #[test]
    fn never_a_reply() {
        let (a, b) = ([10, 0, 0, 1], [10, 0, 0, 2]);
        let udp = [0, 1, 0, 2, 0, 8, 0, 0];
        let mut tcp = [0u8; 20];
        tcp[12] = 0x50;
        let cases: Vec<(Vec<u8>, NoReply)> = vec![
            (
                v4(a, b, 1, 0, &[3, 1, 0, 0, 0, 0, 0, 0]),
                NoReply::IcmpError,
            ),
            (
                v4(a, b, 1, 0, &[11, 0, 0, 0, 0, 0, 0, 0]),
                NoReply::IcmpError,
            ),
            (v4(a, [255; 4], 17, 0, &udp), NoReply::NotUnicastDestination),
            (
                v4(a, [239, 1, 2, 3], 17, 0, &udp),
                NoReply::NotUnicastDestination,
            ),
            (v4([0; 4], b, 17, 0, &udp), NoReply::NotUnicastSource),
            (v4(a, b, 17, 0x0010, &udp), NoReply::LaterFragment),
            (
                {
                    let mut t = tcp;
                    t[13] = TCP_RST | TCP_ACK;
                    v4(a, b, 6, 0x4000, &t)
                },
                NoReply::TcpRst,
            ),
            (
                {
                    let mut f = v4(a, b, 17, 0, &udp);
                    f[0] = 0x01; // group MAC
                    f
                },
                NoReply::NotUnicastDestination,
            ),
        ];
        for (f, why) in cases {
            let m = meta_of(&f);
            assert_eq!(reply_len(&f, &m), Err(why), "{f:02x?}");
            let mut buf = f.clone();
            buf.resize(f.len() + 64, 0);
            assert_eq!(write_reject(&mut buf, f.len(), &m), Err(why));
            assert_eq!(&buf[..f.len()], &f[..]);
        }
        // Non-IP.
        let arp = {
            let mut f = vec![0xff; 6];
            f.extend_from_slice(&[2, 0, 0, 0, 0, 1, 0x08, 0x06]);
            f.extend_from_slice(&[0; 28]);
            f
        };
        let mut m = PacketMeta::default();
        let _ = parse_packet(&arp, &ParseConfig::default(), &mut m);
        assert!(reply_len(&arp, &m).is_err());
    }

    #[test]
    fn syn_gets_rst_ack_with_seq_plus_one() {
        let mut tcp = [0u8; 20];
        tcp[0..2].copy_from_slice(&40000u16.to_be_bytes());
        tcp[2..4].copy_from_slice(&5432u16.to_be_bytes());
        tcp[4..8].copy_from_slice(&0xffff_ffffu32.to_be_bytes());
        tcp[12] = 0x50;
        tcp[13] = TCP_SYN;
        let f = v4([10, 0, 1, 10], [10, 0, 3, 30], 6, 0x4000, &tcp);
        let m = meta_of(&f);
        let mut buf = f.clone();
        let n = write_reject(&mut buf, f.len(), &m).unwrap();
        assert_eq!(n, 54);
        let r = &buf[..n];
        assert_eq!(&r[26..30], &[10, 0, 3, 30]);
        assert_eq!(&r[30..34], &[10, 0, 1, 10]);
        assert_eq!(u16::from_be_bytes([r[34], r[35]]), 5432);
        assert_eq!(u16::from_be_bytes([r[36], r[37]]), 40000);
        assert_eq!(u32::from_be_bytes([r[38], r[39], r[40], r[41]]), 0);
        assert_eq!(u32::from_be_bytes([r[42], r[43], r[44], r[45]]), 0, "wraps");
        assert_eq!(r[47], TCP_RST | TCP_ACK);
    }

    /// An SCTP packet: common header (ports, tag, zero checksum) and `chunks`.
    fn sctp(sport: u16, dport: u16, tag: u32, chunks: &[u8]) -> Vec<u8> {
        let mut p = Vec::new();
        p.extend_from_slice(&sport.to_be_bytes());
        p.extend_from_slice(&dport.to_be_bytes());
        p.extend_from_slice(&tag.to_be_bytes());
        p.extend_from_slice(&[0; 4]);
        p.extend_from_slice(chunks);
        p
    }

    /// CRC32c bit at a time (independent of the table in `wire::crc32c`).
    fn crc32c_bitwise(data: &[u8]) -> u32 {
        let mut c = !0u32;
        for &b in data {
            c ^= u32::from(b);
            for _ in 0..8 {
                c = if c & 1 != 0 {
                    (c >> 1) ^ 0x82F6_3B78
                } else {
                    c >> 1
                };
            }
        }
        !c
    }

    /// Checks an ABORT reply's SCTP packet `a`: ports, tag, the one chunk, the checksum.
    fn check_abort(a: &[u8], sport: u16, dport: u16, vtag: u32, t_bit: bool) {
        assert_eq!(a.len(), 16);
        assert_eq!(u16::from_be_bytes([a[0], a[1]]), sport);
        assert_eq!(u16::from_be_bytes([a[2], a[3]]), dport);
        assert_eq!(u32::from_be_bytes([a[4], a[5], a[6], a[7]]), vtag);
        assert_eq!(&a[12..16], &[6, u8::from(t_bit), 0, 4], "one ABORT chunk");
        let mut zeroed = a.to_vec();
        zeroed[8..12].fill(0);
        assert_eq!(
            u32::from_le_bytes([a[8], a[9], a[10], a[11]]),
            crc32c_bitwise(&zeroed),
            "CRC32c, least significant byte first"
        );
    }

    #[test]
    fn sctp_init_gets_an_abort_with_its_initiate_tag() {
        // INIT: type 1, length 20, initiate tag, a_rwnd, streams, initial TSN.
        let mut init = vec![1, 0, 0, 20];
        init.extend_from_slice(&0xa1b2_c3d4u32.to_be_bytes());
        init.extend_from_slice(&[0, 1, 0, 0, 0, 10, 0, 10, 0, 0, 0, 1]);
        let f = v4(
            [10, 0, 1, 10],
            [10, 0, 3, 30],
            132,
            0x4000,
            &sctp(40000, 38412, 0, &init),
        );
        let m = meta_of(&f);
        assert_eq!(
            (m.src_port, m.dst_port),
            (40000, 38412),
            "parse reads SCTP ports"
        );
        assert_eq!(reply_len(&f, &m), Ok(14 + 20 + 16));
        let mut buf = f.clone();
        let n = write_reject(&mut buf, f.len(), &m).unwrap();
        let r = &buf[..n];
        assert_eq!(&r[0..6], &f[6..12], "MACs swapped");
        assert_eq!(&r[6..12], &f[0..6]);
        assert_eq!(u16::from_be_bytes([r[16], r[17]]), 36, "IPv4 total length");
        assert_eq!(r[23], 132);
        assert_eq!(&r[26..30], &[10, 0, 3, 30]);
        assert_eq!(&r[30..34], &[10, 0, 1, 10]);
        assert_eq!(
            fold(sum_bytes(0, &r[14..34])),
            0xffff,
            "IPv4 header checksum"
        );
        check_abort(&r[34..], 38412, 40000, 0xa1b2_c3d4, false);
    }

    #[test]
    fn sctp_data_gets_an_abort_reflecting_its_tag_v4_and_v6() {
        let data = [
            0, 3, 0, 17, 0, 0, 0, 9, 0, 1, 0, 0, 0, 0, 0, 60, 0xaa, 0, 0, 0,
        ];
        let seg = sctp(36412, 50000, 0x0102_0304, &data);
        let f = v4([10, 0, 1, 10], [10, 0, 3, 30], 132, 0x4000, &seg);
        let m = meta_of(&f);
        let mut buf = f.clone();
        let n = write_reject(&mut buf, f.len(), &m).unwrap();
        assert_eq!(n, 50, "shorter than the packet: trimmed");
        check_abort(&buf[34..n], 50000, 36412, 0x0102_0304, true);

        // IPv6: fixed header only.
        let (src, dst) = ([0x20, 1, 0xd, 0xb8], [0x20, 1, 0xd, 0xb9]);
        let mut f6 = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x86, 0xdd];
        f6.extend_from_slice(&[0x60, 0, 0, 0]);
        f6.extend_from_slice(&(seg.len() as u16).to_be_bytes());
        f6.extend_from_slice(&[132, 64]);
        for a in [src, dst] {
            f6.extend_from_slice(&a);
            f6.extend_from_slice(&[0; 11]);
            f6.push(1);
        }
        f6.extend_from_slice(&seg);
        let m6 = meta_of(&f6);
        let mut buf = f6.clone();
        buf.resize(f6.len().max(14 + 40 + 16), 0);
        let n = write_reject(&mut buf, f6.len(), &m6).unwrap();
        assert_eq!(n, 14 + 40 + 16);
        let r = &buf[..n];
        assert_eq!(
            u16::from_be_bytes([r[18], r[19]]),
            16,
            "IPv6 payload length"
        );
        assert_eq!(r[20], 132);
        assert_eq!(&r[22..38], &f6[38..54], "from the original destination");
        check_abort(&r[54..], 50000, 36412, 0x0102_0304, true);
    }

    #[test]
    fn sctp_aborts_and_short_packets_get_nothing() {
        let (a, b) = ([10, 0, 0, 1], [10, 0, 0, 2]);
        let cases = [
            (sctp(1, 2, 7, &[6, 0, 0, 4]), NoReply::SctpAbort),
            (sctp(1, 2, 7, &[6, 1, 0, 4]), NoReply::SctpAbort),
            (sctp(1, 2, 7, &[14, 0, 0, 4]), NoReply::SctpAbort),
            // No chunk header after the common header.
            (sctp(1, 2, 7, &[]), NoReply::Malformed),
            // An INIT with tag 0 cut before its initiate tag.
            (sctp(1, 2, 0, &[1, 0, 0, 20]), NoReply::Malformed),
        ];
        for (seg, why) in cases {
            let f = v4(a, b, 132, 0x4000, &seg);
            let m = meta_of(&f);
            assert_eq!(reply_len(&f, &m), Err(why), "{seg:02x?}");
            let mut buf = f.clone();
            buf.resize(f.len() + 64, 0);
            assert_eq!(write_reject(&mut buf, f.len(), &m), Err(why));
            assert_eq!(&buf[..f.len()], &f[..], "untouched");
        }
        // A tag of 0 on a chunk other than INIT is reflected as it is.
        let f = v4(a, b, 132, 0x4000, &sctp(1, 2, 0, &[10, 0, 0, 4]));
        let mut buf = f.clone();
        let n = write_reject(&mut buf, f.len(), &meta_of(&f)).unwrap();
        check_abort(&buf[34..n], 2, 1, 0, true);
    }
}
