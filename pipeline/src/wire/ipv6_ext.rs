//! IPv6 extension headers: generic (hop-by-hop, routing, destination options), AH, and
//! fragment views, and a walker that stops at the upper-layer header.

use super::bytes::{read_u16, read_u32};
use super::ip_protocol::{AH, HOPOPT, IPV6_FRAG, IPV6_OPTS, IPV6_ROUTE};
use super::WireError;

/// Field offsets shared by all extension headers.
pub mod field {
    /// Next header.
    pub const NEXT_HEADER: usize = 0;
    /// Header extension length (units depend on the header type).
    pub const LEN: usize = 1;
    /// Fragment header: offset (13 bits, 8-byte units), 2 reserved bits, M flag.
    pub const FRAG_OFF_M: core::ops::Range<usize> = 2..4;
    /// Fragment header: identification.
    pub const FRAG_IDENT: core::ops::Range<usize> = 4..8;
}

/// Length of the fragment header.
pub const FRAG_HEADER_LEN: usize = 8;
/// Most extension headers [`walk_ipv6_ext`] follows before giving up.
pub const MAX_EXT_HEADERS: usize = 8;

/// Whether `next_header` is an extension header the walker follows.
pub fn is_ext_header(next_header: u8) -> bool {
    matches!(
        next_header,
        HOPOPT | IPV6_ROUTE | IPV6_FRAG | IPV6_OPTS | AH
    )
}

/// A view of a hop-by-hop, routing, destination-options or AH header.
#[derive(Debug, Clone)]
pub struct Ipv6ExtHeader<T: AsRef<[u8]>> {
    buffer: T,
    kind: u8,
}

impl<T: AsRef<[u8]>> Ipv6ExtHeader<T> {
    /// Wraps `buffer`, holding a header of type `kind` (its protocol number), unchecked.
    pub const fn new_unchecked(buffer: T, kind: u8) -> Self {
        Self { buffer, kind }
    }

    /// Wraps `buffer` after [`check_len`](Self::check_len).
    pub fn new_checked(buffer: T, kind: u8) -> Result<Self, WireError> {
        let h = Self::new_unchecked(buffer, kind);
        h.check_len()?;
        Ok(h)
    }

    /// Checks that the buffer holds the 2 fixed bytes and the whole header they announce.
    pub fn check_len(&self) -> Result<(), WireError> {
        let d = self.buffer.as_ref();
        if d.len() < 2 || d.len() < self.header_len() {
            return Err(WireError::Truncated);
        }
        Ok(())
    }

    /// Next header.
    pub fn next_header(&self) -> u8 {
        self.buffer.as_ref()[field::NEXT_HEADER]
    }

    /// Header length in bytes: `(len + 2) * 4` for AH, `(len + 1) * 8` otherwise,
    /// and 8 for the fragment header.
    pub fn header_len(&self) -> usize {
        if self.kind == IPV6_FRAG {
            return FRAG_HEADER_LEN;
        }
        let len = self.buffer.as_ref()[field::LEN] as usize;
        if self.kind == AH {
            (len + 2) * 4
        } else {
            (len + 1) * 8
        }
    }

    /// The header's data after the two fixed bytes (options, routing data, AH fields).
    pub fn data(&self) -> &[u8] {
        &self.buffer.as_ref()[2..self.header_len()]
    }
}

/// A view of the IPv6 fragment header.
#[derive(Debug, Clone)]
pub struct Ipv6FragHeader<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Ipv6FragHeader<T> {
    /// Wraps `buffer` unchecked.
    pub const fn new_unchecked(buffer: T) -> Self {
        Self { buffer }
    }

    /// Wraps `buffer` after [`check_len`](Self::check_len).
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let h = Self::new_unchecked(buffer);
        h.check_len()?;
        Ok(h)
    }

    /// Checks that the buffer holds 8 bytes.
    pub fn check_len(&self) -> Result<(), WireError> {
        if self.buffer.as_ref().len() < FRAG_HEADER_LEN {
            Err(WireError::Truncated)
        } else {
            Ok(())
        }
    }

    /// Next header.
    pub fn next_header(&self) -> u8 {
        self.buffer.as_ref()[field::NEXT_HEADER]
    }

    /// Fragment offset in bytes.
    pub fn frag_offset(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::FRAG_OFF_M.start) & 0xfff8
    }

    /// "More fragments" flag.
    pub fn more_frags(&self) -> bool {
        read_u16(self.buffer.as_ref(), field::FRAG_OFF_M.start) & 1 != 0
    }

    /// Identification.
    pub fn ident(&self) -> u32 {
        read_u32(self.buffer.as_ref(), field::FRAG_IDENT.start)
    }
}

/// Where the upper-layer header starts, as found by [`walk_ipv6_ext`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv6Upper {
    /// Upper-layer protocol (or, for a non-first fragment, the fragment's next header).
    pub protocol: u8,
    /// Offset of the upper-layer header from the start of the IPv6 payload.
    pub offset: usize,
    /// Number of extension headers walked.
    pub ext_count: u8,
    /// Whether a fragment header was seen.
    pub fragment: bool,
    /// Whether this is a non-first fragment (no upper-layer header in this packet).
    pub later_fragment: bool,
}

/// Walks the extension headers of an IPv6 payload, starting from the fixed header's
/// `next_header`, until a header that is not hop-by-hop, routing, fragment, destination
/// options or AH. Stops at a fragment header with a non-zero offset (later fragments carry
/// no upper-layer header). `payload` is the IPv6 payload (after the 40-byte header).
pub fn walk_ipv6_ext(first_next_header: u8, payload: &[u8]) -> Result<Ipv6Upper, WireError> {
    let mut next = first_next_header;
    let mut offset = 0usize;
    let mut up = Ipv6Upper {
        protocol: next,
        offset: 0,
        ext_count: 0,
        fragment: false,
        later_fragment: false,
    };
    while is_ext_header(next) {
        if up.ext_count as usize == MAX_EXT_HEADERS {
            return Err(WireError::TooManyExtHeaders);
        }
        let rest = payload.get(offset..).unwrap_or(&[]);
        if next == IPV6_FRAG {
            let f = Ipv6FragHeader::new_checked(rest)?;
            up.fragment = true;
            offset += FRAG_HEADER_LEN;
            up.ext_count += 1;
            next = f.next_header();
            if f.frag_offset() != 0 {
                up.later_fragment = true;
                break;
            }
        } else {
            let h = Ipv6ExtHeader::new_checked(rest, next)?;
            offset += h.header_len();
            up.ext_count += 1;
            next = h.next_header();
        }
    }
    up.protocol = next;
    up.offset = offset;
    Ok(up)
}
