//! IEEE 802.1Q / 802.1ad VLAN tag view.
//!
//! The view starts *after* the TPID (which is the ethertype field of the enclosing header):
//! it covers the tag control information and the encapsulated ethertype. A QinQ frame has
//! two such tags: `dst src 88a8 [TCI 8100] [TCI 0800] IPv4...`.

use super::bytes::{read_u16, write_u16};
use super::ethernet::ethertype;
use super::{Field, WireError};

/// Field offsets of the VLAN tag (after the TPID).
pub mod field {
    use super::Field;
    /// Tag control information: PCP (3 bits), DEI (1 bit), VID (12 bits).
    pub const TCI: Field = 0..2;
    /// Encapsulated ethertype (or the TPID of the next tag).
    pub const ETHERTYPE: Field = 2..4;
}

/// Length of the tag after the TPID.
pub const HEADER_LEN: usize = 4;

/// Whether `tpid` announces a VLAN tag (802.1Q, 802.1ad or the legacy 0x9100).
#[inline]
pub fn is_vlan_tpid(tpid: u16) -> bool {
    matches!(
        tpid,
        ethertype::VLAN | ethertype::QINQ | ethertype::QINQ_LEGACY
    )
}

/// A view of one VLAN tag.
#[derive(Debug, Clone)]
pub struct VlanTag<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> VlanTag<T> {
    /// Wraps `buffer` without checking its length.
    pub const fn new_unchecked(buffer: T) -> Self {
        Self { buffer }
    }

    /// Wraps `buffer` after [`check_len`](Self::check_len).
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let v = Self::new_unchecked(buffer);
        v.check_len()?;
        Ok(v)
    }

    /// Checks that the buffer holds the 4 tag bytes.
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

    /// The whole tag control information.
    pub fn tci(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::TCI.start)
    }

    /// Priority code point (3 bits).
    pub fn pcp(&self) -> u8 {
        (self.tci() >> 13) as u8
    }

    /// Drop eligible indicator.
    pub fn dei(&self) -> bool {
        self.tci() & 0x1000 != 0
    }

    /// VLAN identifier (12 bits).
    pub fn vid(&self) -> u16 {
        self.tci() & 0x0fff
    }

    /// The encapsulated ethertype.
    pub fn ethertype(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::ETHERTYPE.start)
    }

    /// The bytes after the tag.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> VlanTag<T> {
    /// Sets the tag control information.
    pub fn set_tci(&mut self, tci: u16) {
        write_u16(self.buffer.as_mut(), field::TCI.start, tci);
    }

    /// Sets the VLAN identifier, keeping PCP and DEI.
    pub fn set_vid(&mut self, vid: u16) {
        let tci = (self.tci() & 0xf000) | (vid & 0x0fff);
        self.set_tci(tci);
    }

    /// Sets the encapsulated ethertype.
    pub fn set_ethertype(&mut self, value: u16) {
        write_u16(self.buffer.as_mut(), field::ETHERTYPE.start, value);
    }
}
