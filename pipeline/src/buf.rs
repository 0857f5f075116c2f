//! The packet-buffer trait that the pipeline is generic over.

/// A single-segment packet buffer owned by the pipeline while it is processed.
///
/// Dropping the value releases the buffer (for an mbuf: back to its mempool), so a
/// node that drops a packet simply lets it go out of scope.
pub trait PacketBuf {
    /// The packet bytes, from the first byte of the Ethernet header.
    fn data(&self) -> &[u8];
    /// The packet bytes, writable (for header rewrites).
    fn data_mut(&mut self) -> &mut [u8];
    /// The port the packet arrived on.
    fn in_port(&self) -> u16;
    /// Marks the packet so that the port it leaves by computes the checksums `req` names on
    /// transmit (the port must have been set up with that offload). Returns false when the
    /// buffer cannot carry the request (the caller then computes the checksums itself).
    /// Default: cannot.
    fn request_csum_offload(&mut self, _req: CsumOffload) -> bool {
        false
    }
    /// Sets the packet length: shortens it, or lengthens it into the buffer's tailroom (the
    /// new bytes are unspecified). Returns false, leaving the packet unchanged, if the new
    /// length does not fit. Default: cannot.
    fn set_len(&mut self, _len: usize) -> bool {
        false
    }
    /// Hints that the packet's first bytes will be read soon (e.g. `rte_prefetch0` on the
    /// data). Nodes call it a few packets ahead of the one they process. Default: nothing.
    #[inline(always)]
    fn prefetch(&self) {}
}

/// Which L4 checksum a [`CsumOffload`] leaves to the port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum L4Csum {
    /// None: the L4 checksum is already right (or absent).
    None,
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
}

/// A transmit checksum-offload request, as DPDK's mbuf offload flags express it: the IPv4
/// header checksum field must hold 0 when `ip` is set, and the L4 checksum field the
/// pseudo-header sum (not complemented) when `l4` is set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CsumOffload {
    /// Bytes of L2 header (Ethernet and VLAN tags) before the IP header.
    pub l2_len: u16,
    /// Bytes of IP header (with IPv6 extension headers) before the L4 header.
    pub l3_len: u16,
    /// IPv4 (else IPv6).
    pub ipv4: bool,
    /// The port computes the IPv4 header checksum.
    pub ip: bool,
    /// The L4 checksum the port computes.
    pub l4: L4Csum,
}

/// A heap-backed packet buffer for tests and the built-in packet source.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TestBuf {
    /// Packet bytes.
    pub bytes: Vec<u8>,
    /// Input port.
    pub port: u16,
}

impl TestBuf {
    /// A buffer holding `bytes`, received on `port`.
    pub fn new(bytes: impl Into<Vec<u8>>, port: u16) -> Self {
        Self {
            bytes: bytes.into(),
            port,
        }
    }
}

impl PacketBuf for TestBuf {
    fn data(&self) -> &[u8] {
        &self.bytes
    }
    fn data_mut(&mut self) -> &mut [u8] {
        &mut self.bytes
    }
    fn in_port(&self) -> u16 {
        self.port
    }
    fn set_len(&mut self, len: usize) -> bool {
        self.bytes.resize(len, 0);
        true
    }
}
