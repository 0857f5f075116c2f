//! IPv4 packet view (with options).

use super::bytes::{read_array, read_u16, write_u16};
use super::checksum;
use super::{Field, WireError};
use std::net::Ipv4Addr;

/// Field offsets of the IPv4 header.
pub mod field {
    use super::Field;
    /// Version (high nibble) and IHL (low nibble, in 32-bit words).
    pub const VER_IHL: usize = 0;
    /// DSCP (6 bits) and ECN (2 bits).
    pub const DSCP_ECN: usize = 1;
    /// Total length of header and payload.
    pub const TOTAL_LEN: Field = 2..4;
    /// Identification.
    pub const IDENT: Field = 4..6;
    /// Flags (3 bits) and fragment offset (13 bits, in 8-byte units).
    pub const FLAGS_FRAG: Field = 6..8;
    /// Time to live.
    pub const TTL: usize = 8;
    /// Upper-layer protocol.
    pub const PROTOCOL: usize = 9;
    /// Header checksum.
    pub const CHECKSUM: Field = 10..12;
    /// Source address.
    pub const SRC: Field = 12..16;
    /// Destination address.
    pub const DST: Field = 16..20;
    /// Start of the options.
    pub const OPTIONS: usize = 20;
}

/// Length of the header without options.
pub const MIN_HEADER_LEN: usize = 20;
/// "Don't fragment" flag within the flags/fragment field.
pub const FLAG_DF: u16 = 0x4000;
/// "More fragments" flag within the flags/fragment field.
pub const FLAG_MF: u16 = 0x2000;
/// Fragment offset mask within the flags/fragment field.
pub const FRAG_OFFSET_MASK: u16 = 0x1fff;

/// A view of an IPv4 packet.
#[derive(Debug, Clone)]
pub struct Ipv4Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Ipv4Packet<T> {
    /// Wraps `buffer` without checking it.
    pub const fn new_unchecked(buffer: T) -> Self {
        Self { buffer }
    }

    /// Wraps `buffer` after [`check_len`](Self::check_len).
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let p = Self::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

    /// Validates, in this order: the buffer holds 20 bytes ([`WireError::Truncated`]),
    /// version is 4 ([`WireError::BadVersion`]), IHL >= 5 ([`WireError::BadHeaderLength`]),
    /// the buffer holds the header with its options ([`WireError::Truncated`]), and
    /// header length <= total length <= buffer length ([`WireError::BadTotalLength`]).
    pub fn check_len(&self) -> Result<(), WireError> {
        let d = self.buffer.as_ref();
        if d.len() < MIN_HEADER_LEN {
            return Err(WireError::Truncated);
        }
        if d[field::VER_IHL] >> 4 != 4 {
            return Err(WireError::BadVersion);
        }
        let hl = self.header_len();
        if hl < MIN_HEADER_LEN {
            return Err(WireError::BadHeaderLength);
        }
        if d.len() < hl {
            return Err(WireError::Truncated);
        }
        let total = self.total_len() as usize;
        if total < hl || total > d.len() {
            return Err(WireError::BadTotalLength);
        }
        Ok(())
    }

    /// Returns the wrapped buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// IP version (4 for a valid packet).
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VER_IHL] >> 4
    }

    /// Header length in bytes (IHL * 4).
    pub fn header_len(&self) -> usize {
        ((self.buffer.as_ref()[field::VER_IHL] & 0x0f) as usize) * 4
    }

    /// Differentiated services code point.
    pub fn dscp(&self) -> u8 {
        self.buffer.as_ref()[field::DSCP_ECN] >> 2
    }

    /// Explicit congestion notification bits.
    pub fn ecn(&self) -> u8 {
        self.buffer.as_ref()[field::DSCP_ECN] & 0x03
    }

    /// Total length (header and payload).
    pub fn total_len(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::TOTAL_LEN.start)
    }

    /// Identification.
    pub fn ident(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::IDENT.start)
    }

    /// The raw flags and fragment offset field.
    pub fn flags_frag(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::FLAGS_FRAG.start)
    }

    /// "Don't fragment" flag.
    pub fn dont_frag(&self) -> bool {
        self.flags_frag() & FLAG_DF != 0
    }

    /// "More fragments" flag.
    pub fn more_frags(&self) -> bool {
        self.flags_frag() & FLAG_MF != 0
    }

    /// Fragment offset in bytes.
    pub fn frag_offset(&self) -> u16 {
        (self.flags_frag() & FRAG_OFFSET_MASK) << 3
    }

    /// Whether the packet is a fragment (MF set or non-zero offset).
    pub fn is_fragment(&self) -> bool {
        self.flags_frag() & (FLAG_MF | FRAG_OFFSET_MASK) != 0
    }

    /// Time to live.
    pub fn ttl(&self) -> u8 {
        self.buffer.as_ref()[field::TTL]
    }

    /// Upper-layer protocol number.
    pub fn protocol(&self) -> u8 {
        self.buffer.as_ref()[field::PROTOCOL]
    }

    /// Header checksum as stored.
    pub fn checksum(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::CHECKSUM.start)
    }

    /// Source address.
    pub fn src_addr(&self) -> Ipv4Addr {
        Ipv4Addr::from(read_array::<4>(self.buffer.as_ref(), field::SRC.start))
    }

    /// Destination address.
    pub fn dst_addr(&self) -> Ipv4Addr {
        Ipv4Addr::from(read_array::<4>(self.buffer.as_ref(), field::DST.start))
    }

    /// The options bytes (empty when IHL is 5).
    pub fn options(&self) -> &[u8] {
        &self.buffer.as_ref()[field::OPTIONS..self.header_len()]
    }

    /// The payload: from the end of the header to the total length (padding excluded).
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_len()..self.total_len() as usize]
    }

    /// Whether the header checksum is correct.
    pub fn verify_checksum(&self) -> bool {
        checksum::verify(0, &self.buffer.as_ref()[..self.header_len()])
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv4Packet<T> {
    /// Sets version and header length (in bytes, a multiple of 4).
    pub fn set_version_and_header_len(&mut self, version: u8, header_len: usize) {
        self.buffer.as_mut()[field::VER_IHL] = (version << 4) | ((header_len / 4) as u8 & 0x0f);
    }

    /// Sets DSCP and ECN.
    pub fn set_dscp_ecn(&mut self, dscp: u8, ecn: u8) {
        self.buffer.as_mut()[field::DSCP_ECN] = (dscp << 2) | (ecn & 3);
    }

    /// Sets the total length.
    pub fn set_total_len(&mut self, len: u16) {
        write_u16(self.buffer.as_mut(), field::TOTAL_LEN.start, len);
    }

    /// Sets the identification.
    pub fn set_ident(&mut self, ident: u16) {
        write_u16(self.buffer.as_mut(), field::IDENT.start, ident);
    }

    /// Sets the raw flags and fragment offset field.
    pub fn set_flags_frag(&mut self, value: u16) {
        write_u16(self.buffer.as_mut(), field::FLAGS_FRAG.start, value);
    }

    /// Sets the time to live (the checksum is not updated).
    pub fn set_ttl(&mut self, ttl: u8) {
        self.buffer.as_mut()[field::TTL] = ttl;
    }

    /// Sets the protocol (the checksum is not updated).
    pub fn set_protocol(&mut self, protocol: u8) {
        self.buffer.as_mut()[field::PROTOCOL] = protocol;
    }

    /// Sets the stored checksum.
    pub fn set_checksum(&mut self, value: u16) {
        write_u16(self.buffer.as_mut(), field::CHECKSUM.start, value);
    }

    /// Sets the source address (the checksum is not updated).
    pub fn set_src_addr(&mut self, addr: Ipv4Addr) {
        self.buffer.as_mut()[field::SRC].copy_from_slice(&addr.octets());
    }

    /// Sets the destination address (the checksum is not updated).
    pub fn set_dst_addr(&mut self, addr: Ipv4Addr) {
        self.buffer.as_mut()[field::DST].copy_from_slice(&addr.octets());
    }

    /// Sets the source address and updates the header checksum incrementally.
    pub fn set_src_addr_update_checksum(&mut self, addr: Ipv4Addr) {
        let old = u32::from(self.src_addr());
        self.set_src_addr(addr);
        let c = checksum::update32(self.checksum(), old, u32::from(addr));
        self.set_checksum(c);
    }

    /// Sets the destination address and updates the header checksum incrementally.
    pub fn set_dst_addr_update_checksum(&mut self, addr: Ipv4Addr) {
        let old = u32::from(self.dst_addr());
        self.set_dst_addr(addr);
        let c = checksum::update32(self.checksum(), old, u32::from(addr));
        self.set_checksum(c);
    }

    /// Decrements TTL (saturating at 0) and updates the checksum incrementally.
    /// Returns the new TTL.
    pub fn decrement_ttl(&mut self) -> u8 {
        let d = self.buffer.as_ref();
        let old = read_u16(d, field::TTL);
        let ttl = self.ttl().saturating_sub(1);
        self.set_ttl(ttl);
        let new = read_u16(self.buffer.as_ref(), field::TTL);
        let c = checksum::update16(self.checksum(), old, new);
        self.set_checksum(c);
        ttl
    }

    /// Recomputes and stores the header checksum.
    pub fn fill_checksum(&mut self) {
        let hl = self.header_len();
        let c = checksum::ipv4_header_checksum(&self.buffer.as_ref()[..hl]);
        self.set_checksum(c);
    }

    /// The payload (up to the total length), writable.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let (hl, tl) = (self.header_len(), self.total_len() as usize);
        &mut self.buffer.as_mut()[hl..tl]
    }
}
