//! A vector of up to [`VECTOR_SIZE`] packets with their metadata.

use crate::meta::PacketMeta;
use arrayvec::ArrayVec;

/// Most packets in one vector (and in one burst handed to the graph).
///
/// 256 like a VPP frame. Smaller vectors keep a vector's metadata and headers in L1 but
/// share the per-vector costs among fewer packets; measured at 64 (`acl-bench`, `lb-bench`,
/// interleaved): ACL at 1k rules 47.2-49.4 -> 48.6-50.9 cycles/packet, LB at 1k flows
/// 84-86 -> 104-110.
pub const VECTOR_SIZE: usize = 256;

/// Packets and, index for index, their metadata. Allocated once when a graph is built;
/// packets move between vectors without allocating.
///
/// Invariant: `meta[i]` belongs to `pkts[i]` for `i < pkts.len()`. Code that removes
/// packets through [`pkts_mut`](Self::pkts_mut) (e.g. a tx burst) keeps whatever metadata
/// is left, which is harmless: metadata is plain data.
pub struct PacketVector<P> {
    pkts: ArrayVec<P, VECTOR_SIZE>,
    meta: [PacketMeta; VECTOR_SIZE],
}

impl<P> Default for PacketVector<P> {
    fn default() -> Self {
        Self::new()
    }
}

impl<P> PacketVector<P> {
    /// An empty vector.
    pub fn new() -> Self {
        Self {
            pkts: ArrayVec::new(),
            meta: [PacketMeta::default(); VECTOR_SIZE],
        }
    }

    /// An empty vector on the heap (vectors are 16 KiB of metadata plus the packets).
    pub fn boxed() -> Box<Self> {
        Box::new(Self::new())
    }

    /// Number of packets.
    #[inline]
    pub fn len(&self) -> usize {
        self.pkts.len()
    }

    /// Whether there are no packets.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.pkts.is_empty()
    }

    /// Whether the vector holds [`VECTOR_SIZE`] packets.
    #[inline]
    pub fn is_full(&self) -> bool {
        self.pkts.is_full()
    }

    /// Appends a packet with its metadata; gives both back when the vector is full.
    #[inline]
    pub fn push(&mut self, pkt: P, meta: PacketMeta) -> Result<(), (P, PacketMeta)> {
        let i = self.pkts.len();
        match self.pkts.try_push(pkt) {
            Ok(()) => {
                self.meta[i] = meta;
                Ok(())
            }
            Err(e) => Err((e.element(), meta)),
        }
    }

    /// The packets.
    #[inline]
    pub fn pkts(&self) -> &[P] {
        &self.pkts
    }

    /// The packets as an `ArrayVec`, for rx into and tx out of the vector.
    #[inline]
    pub fn pkts_mut(&mut self) -> &mut ArrayVec<P, VECTOR_SIZE> {
        &mut self.pkts
    }

    /// The metadata of the packets.
    #[inline]
    pub fn meta(&self) -> &[PacketMeta] {
        &self.meta[..self.pkts.len()]
    }

    /// The metadata of the packets, writable.
    #[inline]
    pub fn meta_mut(&mut self) -> &mut [PacketMeta] {
        let n = self.pkts.len();
        &mut self.meta[..n]
    }

    /// Packets and metadata, both writable.
    #[inline]
    pub fn split_mut(&mut self) -> (&mut [P], &mut [PacketMeta]) {
        let n = self.pkts.len();
        (self.pkts.as_mut_slice(), &mut self.meta[..n])
    }

    /// Resets the metadata of the current packets to the default.
    #[inline]
    pub fn reset_meta(&mut self) {
        let n = self.pkts.len();
        self.meta[..n].fill(PacketMeta::default());
    }

    /// Drops all packets.
    #[inline]
    pub fn clear(&mut self) {
        self.pkts.clear();
    }

    /// Removes every packet, yielding each with its metadata, in order.
    #[inline]
    pub fn drain_with_meta(&mut self) -> impl Iterator<Item = (P, PacketMeta)> + '_ {
        self.pkts.drain(..).zip(self.meta.iter().copied())
    }

    /// Moves every packet (with its metadata) to the end of `dst`, in order, and returns
    /// how many did not fit (those are dropped).
    #[inline]
    pub fn append_to(&mut self, dst: &mut PacketVector<P>) -> usize {
        let room = VECTOR_SIZE - dst.pkts.len();
        let n = self.pkts.len();
        let moved = n.min(room);
        let base = dst.pkts.len();
        dst.meta[base..base + moved].copy_from_slice(&self.meta[..moved]);
        dst.pkts.extend(self.pkts.drain(..moved));
        let lost = self.pkts.len();
        self.pkts.clear();
        lost
    }
}

impl<P: std::fmt::Debug> std::fmt::Debug for PacketVector<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PacketVector")
            .field("pkts", &self.pkts)
            .field("meta", &self.meta())
            .finish()
    }
}
