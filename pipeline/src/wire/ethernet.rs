//! Ethernet II frame view.

use super::bytes::{read_array, read_u16, write_u16};
use super::{Field, WireError};
use core::fmt;

/// Field offsets of the Ethernet II header.
pub mod field {
    use super::Field;
    /// Destination MAC address.
    pub const DST: Field = 0..6;
    /// Source MAC address.
    pub const SRC: Field = 6..12;
    /// Ethertype (or TPID of the first VLAN tag).
    pub const ETHERTYPE: Field = 12..14;
}

/// Length of the Ethernet II header.
pub const HEADER_LEN: usize = 14;

/// Ethertype values used by the pipeline.
pub mod ethertype {
    /// IPv4.
    pub const IPV4: u16 = 0x0800;
    /// ARP.
    pub const ARP: u16 = 0x0806;
    /// IEEE 802.1Q VLAN tag (C-tag).
    pub const VLAN: u16 = 0x8100;
    /// IEEE 802.1ad service tag (S-tag, QinQ outer tag).
    pub const QINQ: u16 = 0x88a8;
    /// Legacy QinQ outer tag used by some vendors.
    pub const QINQ_LEGACY: u16 = 0x9100;
    /// IPv6.
    pub const IPV6: u16 = 0x86dd;
}

/// A MAC address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    /// The broadcast address ff:ff:ff:ff:ff:ff.
    pub const BROADCAST: MacAddr = MacAddr([0xff; 6]);
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

/// A view of an Ethernet II frame.
#[derive(Debug, Clone)]
pub struct EthernetFrame<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> EthernetFrame<T> {
    /// Wraps `buffer` without checking its length.
    pub const fn new_unchecked(buffer: T) -> Self {
        Self { buffer }
    }

    /// Wraps `buffer` after [`check_len`](Self::check_len).
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let f = Self::new_unchecked(buffer);
        f.check_len()?;
        Ok(f)
    }

    /// Checks that the buffer holds the 14-byte header.
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

    /// Destination MAC address.
    pub fn dst_addr(&self) -> MacAddr {
        MacAddr(read_array(self.buffer.as_ref(), field::DST.start))
    }

    /// Source MAC address.
    pub fn src_addr(&self) -> MacAddr {
        MacAddr(read_array(self.buffer.as_ref(), field::SRC.start))
    }

    /// Ethertype (the TPID when the frame is VLAN-tagged).
    pub fn ethertype(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::ETHERTYPE.start)
    }

    /// The bytes after the Ethernet header.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> EthernetFrame<T> {
    /// Sets the destination MAC address.
    pub fn set_dst_addr(&mut self, addr: MacAddr) {
        self.buffer.as_mut()[field::DST].copy_from_slice(&addr.0);
    }

    /// Sets the source MAC address.
    pub fn set_src_addr(&mut self, addr: MacAddr) {
        self.buffer.as_mut()[field::SRC].copy_from_slice(&addr.0);
    }

    /// Sets the ethertype.
    pub fn set_ethertype(&mut self, value: u16) {
        write_u16(self.buffer.as_mut(), field::ETHERTYPE.start, value);
    }

    /// Swaps the source and destination MAC addresses.
    pub fn swap_addrs(&mut self) {
        let d = self.buffer.as_mut();
        let (dst, rest) = d.split_at_mut(6);
        dst.swap_with_slice(&mut rest[..6]);
    }

    /// The bytes after the Ethernet header, writable.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[HEADER_LEN..]
    }
}
