//! IP protocol numbers (IPv4 `protocol`, IPv6 `next header`) and ethertypes used here.

/// IPv6 hop-by-hop options extension header.
pub const HOPOPT: u8 = 0;
/// ICMP for IPv4.
pub const ICMP: u8 = 1;
/// TCP.
pub const TCP: u8 = 6;
/// UDP.
pub const UDP: u8 = 17;
/// SCTP.
pub const SCTP: u8 = 132;
/// IPv6 routing extension header.
pub const IPV6_ROUTE: u8 = 43;
/// IPv6 fragment extension header.
pub const IPV6_FRAG: u8 = 44;
/// Encapsulating security payload (not walked: its contents are encrypted).
pub const ESP: u8 = 50;
/// Authentication header.
pub const AH: u8 = 51;
/// ICMP for IPv6.
pub const ICMPV6: u8 = 58;
/// IPv6 "no next header".
pub const IPV6_NONXT: u8 = 59;
/// IPv6 destination options extension header.
pub const IPV6_OPTS: u8 = 60;

/// A short name for a protocol number, for summaries and traces.
pub fn name(proto: u8) -> &'static str {
    match proto {
        ICMP => "ICMP",
        TCP => "TCP",
        UDP => "UDP",
        ICMPV6 => "ICMPv6",
        ESP => "ESP",
        AH => "AH",
        IPV6_NONXT => "NoNext",
        47 => "GRE",
        SCTP => "SCTP",
        _ => "proto",
    }
}
