//! ICMP (IPv4) message view.

use super::bytes::{read_u16, write_u16};
use super::checksum;
use super::{Field, WireError};

/// Field offsets of the ICMP header.
pub mod field {
    use super::Field;
    /// Message type.
    pub const TYPE: usize = 0;
    /// Message code.
    pub const CODE: usize = 1;
    /// Checksum over the whole message.
    pub const CHECKSUM: Field = 2..4;
    /// Echo identifier (echo request/reply).
    pub const ECHO_IDENT: Field = 4..6;
    /// Echo sequence number (echo request/reply).
    pub const ECHO_SEQ: Field = 6..8;
}

/// Length of the ICMP header (type, code, checksum and the 4-byte rest of header).
pub const HEADER_LEN: usize = 8;
/// Echo reply type.
pub const ECHO_REPLY: u8 = 0;
/// Destination unreachable type.
pub const DEST_UNREACHABLE: u8 = 3;
/// Echo request type.
pub const ECHO_REQUEST: u8 = 8;
/// Time exceeded type.
pub const TIME_EXCEEDED: u8 = 11;

/// A view of an ICMP message.
#[derive(Debug, Clone)]
pub struct Icmpv4Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Icmpv4Packet<T> {
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

    /// Checks that the buffer holds the 8-byte header.
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

    /// Echo identifier (meaningful for echo request/reply).
    pub fn echo_ident(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::ECHO_IDENT.start)
    }

    /// Echo sequence number (meaningful for echo request/reply).
    pub fn echo_seq(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::ECHO_SEQ.start)
    }

    /// Whether this is an echo request or reply.
    pub fn is_echo(&self) -> bool {
        matches!(self.msg_type(), ECHO_REQUEST | ECHO_REPLY)
    }

    /// The data after the 8-byte header.
    pub fn data(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..]
    }

    /// Whether the checksum over the whole buffer is correct.
    pub fn verify_checksum(&self) -> bool {
        checksum::verify(0, self.buffer.as_ref())
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Icmpv4Packet<T> {
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

    /// Sets the echo identifier and updates the checksum incrementally.
    pub fn set_echo_ident_update_checksum(&mut self, ident: u16) {
        let c = checksum::update16(self.checksum(), self.echo_ident(), ident);
        write_u16(self.buffer.as_mut(), field::ECHO_IDENT.start, ident);
        self.set_checksum(c);
    }

    /// Sets the echo identifier (the checksum is not updated).
    pub fn set_echo_ident(&mut self, ident: u16) {
        write_u16(self.buffer.as_mut(), field::ECHO_IDENT.start, ident);
    }

    /// Sets the echo sequence number (the checksum is not updated).
    pub fn set_echo_seq(&mut self, seq: u16) {
        write_u16(self.buffer.as_mut(), field::ECHO_SEQ.start, seq);
    }

    /// Recomputes and stores the checksum over the whole buffer.
    pub fn fill_checksum(&mut self) {
        let c = checksum::l4_checksum(0, self.buffer.as_ref(), field::CHECKSUM.start);
        self.set_checksum(c);
    }
}
