//! The error a view's validating constructor returns.

/// Why a buffer does not hold a valid header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// The buffer ends before the header (or the part of it a length field announces) does.
    #[error("buffer too short for the header")]
    Truncated,
    /// The version field holds the wrong IP version.
    #[error("wrong IP version")]
    BadVersion,
    /// A header-length field is below the header's minimum (IPv4 IHL < 5, TCP data offset < 5).
    #[error("header length field below the minimum")]
    BadHeaderLength,
    /// A total-length field disagrees with the header length or the buffer
    /// (IPv4 total length, IPv6 payload length, UDP length).
    #[error("length field inconsistent with the header or the buffer")]
    BadTotalLength,
    /// An IPv6 extension-header chain is longer than the walker accepts.
    #[error("too many IPv6 extension headers")]
    TooManyExtHeaders,
}
