//! Zero-copy typed views over packet bytes, in the style of smoltcp's `wire` module.
//!
//! Every view wraps a buffer `T: AsRef<[u8]>` (a `&[u8]` or `&mut [u8]`). Construct one with
//! `new_checked`, which runs `check_len` (and, where the header has one, a version check)
//! before any field is read; accessors then index within the validated length and cannot
//! panic. `new_unchecked` skips the check for callers that have already validated.
//! Field offsets come from one `field` table per header. Setters (for the fields a NAT or a
//! MAC swap rewrites) exist when `T: AsMut<[u8]>`.

pub mod arp;
pub mod bytes;
pub mod checksum;
pub mod crc32c;
mod error;
pub mod ethernet;
pub mod icmpv4;
pub mod icmpv6;
pub mod ip_protocol;
pub mod ipv4;
pub mod ipv6;
pub mod ipv6_ext;
pub mod summary;
pub mod tcp;
pub mod udp;
pub mod vlan;

pub use arp::ArpPacket;
pub use error::WireError;
pub use ethernet::{EthernetFrame, MacAddr};
pub use icmpv4::Icmpv4Packet;
pub use icmpv6::Icmpv6Packet;
pub use ipv4::Ipv4Packet;
pub use ipv6::Ipv6Packet;
pub use ipv6_ext::{walk_ipv6_ext, Ipv6ExtHeader, Ipv6FragHeader, Ipv6Upper};
pub use tcp::TcpPacket;
pub use udp::UdpPacket;
pub use vlan::VlanTag;

/// A range of byte offsets of one header field.
pub type Field = core::ops::Range<usize>;
