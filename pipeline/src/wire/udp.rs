//! UDP datagram view.

use super::bytes::{read_u16, write_u16};
use super::checksum;
use super::ip_protocol::UDP;
use super::{Field, WireError};

/// Field offsets of the UDP header.
pub mod field {
    use super::Field;
    /// Source port.
    pub const SRC_PORT: Field = 0..2;
    /// Destination port.
    pub const DST_PORT: Field = 2..4;
    /// Length of header and payload.
    pub const LENGTH: Field = 4..6;
    /// Checksum (0 = none, IPv4 only).
    pub const CHECKSUM: Field = 6..8;
}

/// Length of the UDP header.
pub const HEADER_LEN: usize = 8;

/// A view of a UDP datagram.
#[derive(Debug, Clone)]
pub struct UdpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> UdpPacket<T> {
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

    /// Validates: 8 bytes present ([`WireError::Truncated`]) and 8 <= length <= buffer
    /// ([`WireError::BadTotalLength`]).
    pub fn check_len(&self) -> Result<(), WireError> {
        let d = self.buffer.as_ref();
        if d.len() < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        let len = self.len() as usize;
        if len < HEADER_LEN || len > d.len() {
            return Err(WireError::BadTotalLength);
        }
        Ok(())
    }

    /// Returns the wrapped buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Source port.
    pub fn src_port(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::SRC_PORT.start)
    }

    /// Destination port.
    pub fn dst_port(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::DST_PORT.start)
    }

    /// The length field (header and payload).
    #[allow(clippy::len_without_is_empty)]
    pub fn len(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::LENGTH.start)
    }

    /// Checksum as stored.
    pub fn checksum(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::CHECKSUM.start)
    }

    /// The payload, up to the length field.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..self.len() as usize]
    }

    /// Whether the checksum is correct over IPv4 (a zero checksum means "none": true).
    pub fn verify_checksum_v4(&self, src: [u8; 4], dst: [u8; 4]) -> bool {
        if self.checksum() == 0 {
            return true;
        }
        let d = &self.buffer.as_ref()[..self.len() as usize];
        checksum::verify(checksum::pseudo_header_v4(src, dst, UDP, d.len() as u16), d)
    }

    /// Whether the checksum is correct over IPv6.
    pub fn verify_checksum_v6(&self, src: &[u8; 16], dst: &[u8; 16]) -> bool {
        let d = &self.buffer.as_ref()[..self.len() as usize];
        checksum::verify(checksum::pseudo_header_v6(src, dst, UDP, d.len() as u32), d)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> UdpPacket<T> {
    /// Sets the source port (the checksum is not updated).
    pub fn set_src_port(&mut self, port: u16) {
        write_u16(self.buffer.as_mut(), field::SRC_PORT.start, port);
    }

    /// Sets the destination port (the checksum is not updated).
    pub fn set_dst_port(&mut self, port: u16) {
        write_u16(self.buffer.as_mut(), field::DST_PORT.start, port);
    }

    /// Sets the source port and updates the checksum incrementally (0 = none stays 0).
    pub fn set_src_port_update_checksum(&mut self, port: u16) {
        let c = checksum::update16_udp(self.checksum(), self.src_port(), port);
        self.set_src_port(port);
        self.set_checksum(c);
    }

    /// Sets the destination port and updates the checksum incrementally (0 = none stays 0).
    pub fn set_dst_port_update_checksum(&mut self, port: u16) {
        let c = checksum::update16_udp(self.checksum(), self.dst_port(), port);
        self.set_dst_port(port);
        self.set_checksum(c);
    }

    /// Sets the length field.
    pub fn set_len(&mut self, len: u16) {
        write_u16(self.buffer.as_mut(), field::LENGTH.start, len);
    }

    /// Sets the stored checksum.
    pub fn set_checksum(&mut self, v: u16) {
        write_u16(self.buffer.as_mut(), field::CHECKSUM.start, v);
    }

    /// Computes and stores the checksum over IPv4 (a computed 0 is stored as 0xffff).
    pub fn fill_checksum_v4(&mut self, src: [u8; 4], dst: [u8; 4]) {
        let len = self.len() as usize;
        let c = checksum::l4_checksum_v4(
            src,
            dst,
            UDP,
            &self.buffer.as_ref()[..len],
            field::CHECKSUM.start,
        );
        self.set_checksum(if c == 0 { 0xffff } else { c });
    }

    /// Computes and stores the checksum over IPv6 (a computed 0 is stored as 0xffff).
    pub fn fill_checksum_v6(&mut self, src: &[u8; 16], dst: &[u8; 16]) {
        let len = self.len() as usize;
        let c = checksum::l4_checksum_v6(
            src,
            dst,
            UDP,
            &self.buffer.as_ref()[..len],
            field::CHECKSUM.start,
        );
        self.set_checksum(if c == 0 { 0xffff } else { c });
    }
}
