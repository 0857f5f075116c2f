//! TCP segment view.

use super::bytes::{read_u16, read_u32, write_u16, write_u32};
use super::checksum;
use super::ip_protocol::TCP;
use super::{Field, WireError};

/// Field offsets of the TCP header.
pub mod field {
    use super::Field;
    /// Source port.
    pub const SRC_PORT: Field = 0..2;
    /// Destination port.
    pub const DST_PORT: Field = 2..4;
    /// Sequence number.
    pub const SEQ: Field = 4..8;
    /// Acknowledgement number.
    pub const ACK: Field = 8..12;
    /// Data offset (high nibble, in 32-bit words) and the NS flag (low bit).
    pub const DATA_OFFSET: usize = 12;
    /// Flags CWR ECE URG ACK PSH RST SYN FIN.
    pub const FLAGS: usize = 13;
    /// Window.
    pub const WINDOW: Field = 14..16;
    /// Checksum.
    pub const CHECKSUM: Field = 16..18;
    /// Urgent pointer.
    pub const URGENT: Field = 18..20;
}

/// Length of the header without options.
pub const MIN_HEADER_LEN: usize = 20;

/// TCP flag bits (the `FLAGS` byte).
pub mod flags {
    /// FIN.
    pub const FIN: u8 = 0x01;
    /// SYN.
    pub const SYN: u8 = 0x02;
    /// RST.
    pub const RST: u8 = 0x04;
    /// PSH.
    pub const PSH: u8 = 0x08;
    /// ACK.
    pub const ACK: u8 = 0x10;
    /// URG.
    pub const URG: u8 = 0x20;
    /// ECE.
    pub const ECE: u8 = 0x40;
    /// CWR.
    pub const CWR: u8 = 0x80;
}

/// Renders TCP flags as `[SA]`-style letters (F S R P . U E C; `.` is ACK).
pub fn flags_string(f: u8) -> String {
    let mut s = String::with_capacity(10);
    s.push('[');
    for (bit, c) in [
        (flags::FIN, 'F'),
        (flags::SYN, 'S'),
        (flags::RST, 'R'),
        (flags::PSH, 'P'),
        (flags::ACK, '.'),
        (flags::URG, 'U'),
        (flags::ECE, 'E'),
        (flags::CWR, 'C'),
    ] {
        if f & bit != 0 {
            s.push(c);
        }
    }
    s.push(']');
    s
}

/// A view of a TCP segment.
#[derive(Debug, Clone)]
pub struct TcpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> TcpPacket<T> {
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

    /// Validates: 20 bytes present ([`WireError::Truncated`]), data offset >= 5
    /// ([`WireError::BadHeaderLength`]), the header with options present ([`WireError::Truncated`]).
    pub fn check_len(&self) -> Result<(), WireError> {
        let d = self.buffer.as_ref();
        if d.len() < MIN_HEADER_LEN {
            return Err(WireError::Truncated);
        }
        let hl = self.header_len();
        if hl < MIN_HEADER_LEN {
            return Err(WireError::BadHeaderLength);
        }
        if d.len() < hl {
            return Err(WireError::Truncated);
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

    /// Sequence number.
    pub fn seq_number(&self) -> u32 {
        read_u32(self.buffer.as_ref(), field::SEQ.start)
    }

    /// Acknowledgement number.
    pub fn ack_number(&self) -> u32 {
        read_u32(self.buffer.as_ref(), field::ACK.start)
    }

    /// Header length in bytes (data offset * 4).
    pub fn header_len(&self) -> usize {
        ((self.buffer.as_ref()[field::DATA_OFFSET] >> 4) as usize) * 4
    }

    /// The flags byte (see [`flags`]).
    pub fn flags(&self) -> u8 {
        self.buffer.as_ref()[field::FLAGS]
    }

    /// Window.
    pub fn window(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::WINDOW.start)
    }

    /// Checksum as stored.
    pub fn checksum(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::CHECKSUM.start)
    }

    /// Urgent pointer.
    pub fn urgent(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::URGENT.start)
    }

    /// The options bytes.
    pub fn options(&self) -> &[u8] {
        &self.buffer.as_ref()[MIN_HEADER_LEN..self.header_len()]
    }

    /// The payload (the buffer must end where the segment ends).
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_len()..]
    }

    /// Whether the checksum is correct over IPv4 (the buffer is the whole segment).
    pub fn verify_checksum_v4(&self, src: [u8; 4], dst: [u8; 4]) -> bool {
        let d = self.buffer.as_ref();
        checksum::verify(checksum::pseudo_header_v4(src, dst, TCP, d.len() as u16), d)
    }

    /// Whether the checksum is correct over IPv6 (the buffer is the whole segment).
    pub fn verify_checksum_v6(&self, src: &[u8; 16], dst: &[u8; 16]) -> bool {
        let d = self.buffer.as_ref();
        checksum::verify(checksum::pseudo_header_v6(src, dst, TCP, d.len() as u32), d)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> TcpPacket<T> {
    /// Sets the source port (the checksum is not updated).
    pub fn set_src_port(&mut self, port: u16) {
        write_u16(self.buffer.as_mut(), field::SRC_PORT.start, port);
    }

    /// Sets the destination port (the checksum is not updated).
    pub fn set_dst_port(&mut self, port: u16) {
        write_u16(self.buffer.as_mut(), field::DST_PORT.start, port);
    }

    /// Sets the source port and updates the checksum incrementally.
    pub fn set_src_port_update_checksum(&mut self, port: u16) {
        let c = checksum::update16(self.checksum(), self.src_port(), port);
        self.set_src_port(port);
        self.set_checksum(c);
    }

    /// Sets the destination port and updates the checksum incrementally.
    pub fn set_dst_port_update_checksum(&mut self, port: u16) {
        let c = checksum::update16(self.checksum(), self.dst_port(), port);
        self.set_dst_port(port);
        self.set_checksum(c);
    }

    /// Sets the sequence number.
    pub fn set_seq_number(&mut self, v: u32) {
        write_u32(self.buffer.as_mut(), field::SEQ.start, v);
    }

    /// Sets the acknowledgement number.
    pub fn set_ack_number(&mut self, v: u32) {
        write_u32(self.buffer.as_mut(), field::ACK.start, v);
    }

    /// Sets the header length in bytes (a multiple of 4), clearing the NS bit.
    pub fn set_header_len(&mut self, len: usize) {
        self.buffer.as_mut()[field::DATA_OFFSET] = ((len / 4) as u8) << 4;
    }

    /// Sets the flags byte.
    pub fn set_flags(&mut self, f: u8) {
        self.buffer.as_mut()[field::FLAGS] = f;
    }

    /// Sets the window.
    pub fn set_window(&mut self, v: u16) {
        write_u16(self.buffer.as_mut(), field::WINDOW.start, v);
    }

    /// Sets the stored checksum.
    pub fn set_checksum(&mut self, v: u16) {
        write_u16(self.buffer.as_mut(), field::CHECKSUM.start, v);
    }

    /// Computes and stores the checksum over IPv4 (the buffer is the whole segment).
    pub fn fill_checksum_v4(&mut self, src: [u8; 4], dst: [u8; 4]) {
        let c =
            checksum::l4_checksum_v4(src, dst, TCP, self.buffer.as_ref(), field::CHECKSUM.start);
        self.set_checksum(c);
    }

    /// Computes and stores the checksum over IPv6 (the buffer is the whole segment).
    pub fn fill_checksum_v6(&mut self, src: &[u8; 16], dst: &[u8; 16]) {
        let c =
            checksum::l4_checksum_v6(src, dst, TCP, self.buffer.as_ref(), field::CHECKSUM.start);
        self.set_checksum(c);
    }
}
