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
    /// Marks the packet so that the port computes IPv4/L4 checksums on transmit, when the
    /// port offers that offload. `l2_len`/`l3_len` are header lengths in bytes.
    /// Returns false when the buffer cannot offload (the caller then fixes checksums itself).
    fn request_csum_offload(
        &mut self,
        _l2_len: u16,
        _l3_len: u16,
        _ipv4: bool,
        _l4_tcp: bool,
    ) -> bool {
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
