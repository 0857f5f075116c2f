//! ARP packet view (any hardware/protocol address length; Ethernet/IPv4 is 6/4).

use super::bytes::{read_u16, write_u16};
use super::{Field, WireError};

/// Field offsets of the fixed part of the ARP header.
pub mod field {
    use super::Field;
    /// Hardware type (1 = Ethernet).
    pub const HTYPE: Field = 0..2;
    /// Protocol type (0x0800 = IPv4).
    pub const PTYPE: Field = 2..4;
    /// Hardware address length.
    pub const HLEN: usize = 4;
    /// Protocol address length.
    pub const PLEN: usize = 5;
    /// Operation (1 = request, 2 = reply).
    pub const OPER: Field = 6..8;
    /// Start of the variable-length addresses (SHA, SPA, THA, TPA).
    pub const ADDRS: usize = 8;
}

/// Length of the fixed part of the header.
pub const FIXED_LEN: usize = 8;
/// ARP request operation.
pub const OP_REQUEST: u16 = 1;
/// ARP reply operation.
pub const OP_REPLY: u16 = 2;

/// A view of an ARP packet.
#[derive(Debug, Clone)]
pub struct ArpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> ArpPacket<T> {
    /// Wraps `buffer` without checking its length.
    pub const fn new_unchecked(buffer: T) -> Self {
        Self { buffer }
    }

    /// Wraps `buffer` after [`check_len`](Self::check_len).
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let p = Self::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

    /// Checks that the buffer holds the fixed header and the four addresses it announces.
    pub fn check_len(&self) -> Result<(), WireError> {
        let d = self.buffer.as_ref();
        if d.len() < FIXED_LEN {
            return Err(WireError::Truncated);
        }
        if d.len() < self.header_len() {
            return Err(WireError::Truncated);
        }
        Ok(())
    }

    /// Total header length: the fixed part and two hardware and two protocol addresses.
    pub fn header_len(&self) -> usize {
        let d = self.buffer.as_ref();
        FIXED_LEN + 2 * (d[field::HLEN] as usize + d[field::PLEN] as usize)
    }

    /// Returns the wrapped buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Hardware type.
    pub fn hardware_type(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::HTYPE.start)
    }

    /// Protocol type.
    pub fn protocol_type(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::PTYPE.start)
    }

    /// Hardware address length.
    pub fn hardware_len(&self) -> u8 {
        self.buffer.as_ref()[field::HLEN]
    }

    /// Protocol address length.
    pub fn protocol_len(&self) -> u8 {
        self.buffer.as_ref()[field::PLEN]
    }

    /// Operation.
    pub fn operation(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::OPER.start)
    }

    fn ranges(&self) -> [Field; 4] {
        let h = self.hardware_len() as usize;
        let p = self.protocol_len() as usize;
        let a = field::ADDRS;
        [
            a..a + h,
            a + h..a + h + p,
            a + h + p..a + 2 * h + p,
            a + 2 * h + p..a + 2 * h + 2 * p,
        ]
    }

    /// Sender hardware address.
    pub fn sender_hardware_addr(&self) -> &[u8] {
        &self.buffer.as_ref()[self.ranges()[0].clone()]
    }

    /// Sender protocol address.
    pub fn sender_protocol_addr(&self) -> &[u8] {
        &self.buffer.as_ref()[self.ranges()[1].clone()]
    }

    /// Target hardware address.
    pub fn target_hardware_addr(&self) -> &[u8] {
        &self.buffer.as_ref()[self.ranges()[2].clone()]
    }

    /// Target protocol address.
    pub fn target_protocol_addr(&self) -> &[u8] {
        &self.buffer.as_ref()[self.ranges()[3].clone()]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> ArpPacket<T> {
    /// Sets the operation.
    pub fn set_operation(&mut self, op: u16) {
        write_u16(self.buffer.as_mut(), field::OPER.start, op);
    }

    /// Sender hardware address, writable.
    pub fn sender_hardware_addr_mut(&mut self) -> &mut [u8] {
        let r = self.ranges()[0].clone();
        &mut self.buffer.as_mut()[r]
    }

    /// Sender protocol address, writable.
    pub fn sender_protocol_addr_mut(&mut self) -> &mut [u8] {
        let r = self.ranges()[1].clone();
        &mut self.buffer.as_mut()[r]
    }

    /// Target hardware address, writable.
    pub fn target_hardware_addr_mut(&mut self) -> &mut [u8] {
        let r = self.ranges()[2].clone();
        &mut self.buffer.as_mut()[r]
    }

    /// Target protocol address, writable.
    pub fn target_protocol_addr_mut(&mut self) -> &mut [u8] {
        let r = self.ranges()[3].clone();
        &mut self.buffer.as_mut()[r]
    }
}
