//! A small reader and writer for classic pcap files (not pcapng): microsecond or nanosecond
//! timestamps, either byte order, Ethernet link type only.

use std::path::Path;

/// One captured packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PcapPacket {
    /// Timestamp seconds.
    pub ts_sec: u32,
    /// Timestamp fraction (micro- or nanoseconds, per the file's magic).
    pub ts_frac: u32,
    /// Length on the wire (may exceed the captured bytes).
    pub orig_len: u32,
    /// Captured bytes.
    pub data: Vec<u8>,
}

/// Errors reading a pcap file.
#[derive(Debug, thiserror::Error)]
pub enum PcapError {
    /// The file could not be read.
    #[error("reading pcap file: {0}")]
    Io(#[from] std::io::Error),
    /// Not a classic pcap file.
    #[error("not a classic pcap file (magic {0:#010x})")]
    BadMagic(u32),
    /// Only Ethernet (link type 1) is supported.
    #[error("unsupported pcap link type {0} (only Ethernet, 1)")]
    UnsupportedLinkType(u32),
    /// The file ends inside a header or a packet.
    #[error("pcap file truncated at byte {0}")]
    Truncated(usize),
    /// A record claims an implausible length.
    #[error("pcap record at byte {offset} claims {len} bytes")]
    RecordTooLarge {
        /// Offset of the record header.
        offset: usize,
        /// The claimed captured length.
        len: u32,
    },
}

/// Length of the global header.
pub const GLOBAL_HEADER_LEN: usize = 24;
/// Length of a record header.
pub const RECORD_HEADER_LEN: usize = 16;
/// Largest captured length accepted per record.
pub const MAX_RECORD_LEN: u32 = 256 * 1024;
/// Ethernet link type.
pub const LINKTYPE_ETHERNET: u32 = 1;

const MAGIC_US: u32 = 0xa1b2_c3d4;
const MAGIC_NS: u32 = 0xa1b2_3c4d;

/// Reads a pcap file.
pub fn read_pcap_file(path: impl AsRef<Path>) -> Result<Vec<PcapPacket>, PcapError> {
    parse_pcap(&std::fs::read(path)?)
}

/// Parses pcap file contents.
pub fn parse_pcap(bytes: &[u8]) -> Result<Vec<PcapPacket>, PcapError> {
    let header = bytes
        .get(..GLOBAL_HEADER_LEN)
        .ok_or(PcapError::Truncated(bytes.len()))?;
    let magic_le = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
    let big_endian = match magic_le {
        MAGIC_US | MAGIC_NS => false,
        m if m.swap_bytes() == MAGIC_US || m.swap_bytes() == MAGIC_NS => true,
        m => return Err(PcapError::BadMagic(m)),
    };
    let u32_at = |b: &[u8], off: usize| {
        let a = [b[off], b[off + 1], b[off + 2], b[off + 3]];
        if big_endian {
            u32::from_be_bytes(a)
        } else {
            u32::from_le_bytes(a)
        }
    };
    let linktype = u32_at(header, 20);
    if linktype != LINKTYPE_ETHERNET {
        return Err(PcapError::UnsupportedLinkType(linktype));
    }
    let mut out = Vec::new();
    let mut off = GLOBAL_HEADER_LEN;
    while off < bytes.len() {
        let rec = bytes
            .get(off..off + RECORD_HEADER_LEN)
            .ok_or(PcapError::Truncated(bytes.len()))?;
        let incl = u32_at(rec, 8);
        if incl > MAX_RECORD_LEN {
            return Err(PcapError::RecordTooLarge {
                offset: off,
                len: incl,
            });
        }
        let start = off + RECORD_HEADER_LEN;
        let data = bytes
            .get(start..start + incl as usize)
            .ok_or(PcapError::Truncated(bytes.len()))?;
        out.push(PcapPacket {
            ts_sec: u32_at(rec, 0),
            ts_frac: u32_at(rec, 4),
            orig_len: u32_at(rec, 12),
            data: data.to_vec(),
        });
        off = start + incl as usize;
    }
    Ok(out)
}

/// Writes frames as a little-endian, microsecond classic pcap file (timestamps 0.i).
pub fn write_pcap(frames: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::with_capacity(
        GLOBAL_HEADER_LEN
            + frames
                .iter()
                .map(|f| f.len() + RECORD_HEADER_LEN)
                .sum::<usize>(),
    );
    out.extend_from_slice(&MAGIC_US.to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&4u16.to_le_bytes());
    out.extend_from_slice(&0i32.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&65535u32.to_le_bytes());
    out.extend_from_slice(&LINKTYPE_ETHERNET.to_le_bytes());
    for (i, f) in frames.iter().enumerate() {
        out.extend_from_slice(&0u32.to_le_bytes());
        out.extend_from_slice(&(i as u32).to_le_bytes());
        out.extend_from_slice(&(f.len() as u32).to_le_bytes());
        out.extend_from_slice(&(f.len() as u32).to_le_bytes());
        out.extend_from_slice(f);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_errors() {
        let frames: [&[u8]; 2] = [&[1, 2, 3], &[4; 60]];
        let bytes = write_pcap(&frames);
        let pkts = parse_pcap(&bytes).unwrap();
        assert_eq!(pkts.len(), 2);
        assert_eq!(pkts[1].data, vec![4; 60]);
        assert!(matches!(
            parse_pcap(&bytes[..bytes.len() - 1]),
            Err(PcapError::Truncated(_))
        ));
        assert!(matches!(
            parse_pcap(&[0u8; 24]),
            Err(PcapError::BadMagic(0))
        ));
        // Big-endian header with the same content.
        let mut be = bytes.clone();
        for w in [0usize, 8, 12, 16, 20] {
            be[w..w + 4].reverse();
        }
        be[4..6].reverse();
        be[6..8].reverse();
        let mut off = GLOBAL_HEADER_LEN;
        while off < be.len() {
            for w in 0..4 {
                be[off + 4 * w..off + 4 * w + 4].reverse();
            }
            let len = u32::from_be_bytes(be[off + 8..off + 12].try_into().unwrap()) as usize;
            off += RECORD_HEADER_LEN + len;
        }
        assert_eq!(parse_pcap(&be).unwrap(), pkts);
    }
}
