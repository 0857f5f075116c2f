//! ICMPv6 message view.

use super::bytes::{read_u16, write_u16};
use super::checksum;
use super::ip_protocol::ICMPV6;
use super::{Field, WireError};

/// Field offsets of the ICMPv6 header.
pub mod field {
    use super::Field;
    /// Message type.
    pub const TYPE: usize = 0;
    /// Message code.
    pub const CODE: usize = 1;
    /// Checksum (over the IPv6 pseudo header and the message).
    pub const CHECKSUM: Field = 2..4;
    /// Echo identifier (echo request/reply).
    pub const ECHO_IDENT: Field = 4..6;
    /// Echo sequence number (echo request/reply).
    pub const ECHO_SEQ: Field = 6..8;
}

/// Length of the ICMPv6 header (type, code, checksum).
pub const HEADER_LEN: usize = 4;
/// Echo request type.
pub const ECHO_REQUEST: u8 = 128;
/// Echo reply type.
pub const ECHO_REPLY: u8 = 129;
/// Neighbour solicitation type.
pub const NEIGHBOR_SOLICIT: u8 = 135;
/// Neighbour advertisement type.
pub const NEIGHBOR_ADVERT: u8 = 136;

/// A view of an ICMPv6 message.
#[derive(Debug, Clone)]
pub struct Icmpv6Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Icmpv6Packet<T> {
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

    /// Checks that the buffer holds the 4-byte header.
    pub fn check_len(&self) -> Result<(), WireError> {
        if self.buffer.as_ref().len() < HEADER_LEN {
            Err(WireError::Truncated)
        } else {
            Ok(())
        }
    }

    /// Returns the wrapped buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Message type.
    pub fn msg_type(&self) -> u8 {
        self.buffer.as_ref()[field::TYPE]
    }

    /// Message code.
    pub fn msg_code(&self) -> u8 {
        self.buffer.as_ref()[field::CODE]
    }

    /// Checksum as stored.
    pub fn checksum(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::CHECKSUM.start)
    }

    /// Whether this is an echo request or reply.
    pub fn is_echo(&self) -> bool {
        matches!(self.msg_type(), ECHO_REQUEST | ECHO_REPLY)
    }

    /// Echo identifier, for an echo message at least 8 bytes long.
    pub fn echo_ident(&self) -> Option<u16> {
        let d = self.buffer.as_ref();
        (self.is_echo() && d.len() >= 8).then(|| read_u16(d, field::ECHO_IDENT.start))
    }

    /// Echo sequence number, for an echo message at least 8 bytes long.
    pub fn echo_seq(&self) -> Option<u16> {
        let d = self.buffer.as_ref();
        (self.is_echo() && d.len() >= 8).then(|| read_u16(d, field::ECHO_SEQ.start))
    }

    /// The message body after the 4-byte header.
    pub fn body(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..]
    }

    /// Whether the checksum is correct (the buffer is the whole message).
    pub fn verify_checksum(&self, src: &[u8; 16], dst: &[u8; 16]) -> bool {
        let d = self.buffer.as_ref();
        checksum::verify(
            checksum::pseudo_header_v6(src, dst, ICMPV6, d.len() as u32),
            d,
        )
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Icmpv6Packet<T> {
    /// Sets the message type.
    pub fn set_msg_type(&mut self, v: u8) {
        self.buffer.as_mut()[field::TYPE] = v;
    }

    /// Sets the message code.
    pub fn set_msg_code(&mut self, v: u8) {
        self.buffer.as_mut()[field::CODE] = v;
    }

    /// Sets the stored checksum.
    pub fn set_checksum(&mut self, v: u16) {
        write_u16(self.buffer.as_mut(), field::CHECKSUM.start, v);
    }

    /// Computes and stores the checksum (the buffer is the whole message).
    pub fn fill_checksum(&mut self, src: &[u8; 16], dst: &[u8; 16]) {
        let c = checksum::l4_checksum_v6(
            src,
            dst,
            ICMPV6,
            self.buffer.as_ref(),
            field::CHECKSUM.start,
        );
        self.set_checksum(c);
    }
}
