//! Per-worker connection tracking, shared by the stateful ACL ("allow related") and the L4
//! load balancer.
//!
//! # Design
//! * **One table per worker**: every method takes `&mut self`; no locks, no atomics.
//! * **Fixed memory**: [`ConnTrack::with_capacity`] allocates `2 * capacity` rounded up to
//!   a power of two slots of 64 bytes (one cache line each, `#[repr(align(64))]`) and
//!   nothing is allocated afterwards. At most `capacity` entries are stored, so the load
//!   factor stays at or below 0.5 (or lower with [`ConnTrack::with_capacity_and_slots`]).
//!   For large tables, back the allocation with huge pages (e.g. run with
//!   `GLIBC_TUNABLES=glibc.malloc.hugetlb=1`, or system-wide transparent huge pages).
//! * **Open addressing with linear probing**, bounded to [`MAX_PROBE`] slots from the home
//!   slot, and backward-shift deletion (no tombstones, so probe lengths never degrade).
//! * **Tags**: beside the slots, one byte per slot ([`tag_of`] the hash's top byte, never
//!   0; 0 = empty slot) in a dense array, 1/64 of the slot memory (256 KiB for 100k
//!   connections: it stays in the core's L2 while the 16 MiB of slots do not). A probe
//!   compares the first 8 tags from the home slot at once and reads a slot's cache line
//!   only where the tag matches, so a hit reads the one slot that holds its flow (plus,
//!   for about 1 probe in 170 at load 0.5, a slot whose tag collides) instead of every
//!   slot before it on the probe path (1.45 slot lines per hit at load 0.5, the extra
//!   ones read only after the first arrived). Measured with `lb-bench` (the `lb` node,
//!   interleaved runs, table at load 0.38-0.48): 100k flows 153 -> 126-133 cycles/packet,
//!   1M 170 -> 145; 1k 79 -> 85 (the extra passes cost where every line is cached anyway).
//!   Sparse tables are looked up without the tags (see `SPARSE_LOAD_DIV`).
//! * **Bidirectional**: the entry stores the originator's [`FlowKey`]; the slot is chosen
//!   by [`FlowKey::symmetric_hash`], so a lookup with the reply key (addresses and ports
//!   swapped) lands in the same probe sequence and matches the stored key reversed. The
//!   lookup reports which [`Direction`] the packet travels. (A NAT that rewrites the
//!   reply's addresses needs a second entry keyed by the translated tuple.)
//! * **Payload**: a small `T: Copy + Default` per entry (backend id, NAT info, ACL rule id).
//!   With `T` up to 12 bytes (8 for an 8-byte aligned `T`) an entry is exactly 64 bytes:
//!   expiry, creation and packet count 4 bytes each, key 38, state and distance 1 each;
//!   larger `T` spills to 128.
//! * **Time** is a caller-supplied monotonic tick count (TSC, milliseconds, ...), and
//!   [`Timeouts`] are in the same ticks. The table keeps time in coarser *units*, a power
//!   of two of ticks ([`ConnTrack::unit_ticks`]: at most 1/256 of the shortest timeout, and
//!   coarse enough that the longest stays below 2^28 units; 2^28 TSC ticks, 0.1 s, for the
//!   defaults at 2.6 GHz; one tick for the tests' small timeouts, where everything is
//!   exact), stored in `u32`s that wrap: an entry is live while its expiry is less than
//!   2^31 units ahead of the clock (a wrapping compare). A timeout is rounded up to units,
//!   plus one, so an entry never expires early and at most two units (1/128 of its
//!   timeout) late. So that an expired entry never reads as live again once the clock is
//!   2^31 units past it, the table *settles* its expiries whenever the clock has moved 2^30
//!   units since the last time (checked by [`ConnTrack::lookup_batch`] and aging, which the
//!   nodes call every vector; other calls compare against the last settle and stay right
//!   for 2^31 - 2^28 units after it): every entry expired by then is marked expired at that
//!   unit (and stays, with its payload, for aging to reclaim and report). That is a pass
//!   over the table once every 2^30 units (3.5 years with the defaults at 2.6 GHz), or at
//!   the first lookup after a long pause. Each entry stores its expiry unit; every lookup hit
//!   and TCP update refreshes it from the timeout of the entry's protocol and state
//!   (VPP-like defaults: UDP 600 s, TCP established 86 400 s, TCP transient 120 s,
//!   other protocols 30 s; SCTP associations take UDP's, see [`ConnState::Sctp`]). An expired entry is treated as absent by lookups and is
//!   reclaimed by [`ConnTrack::age`] (a cursor-based scan of a bounded number of slots per
//!   call, meant to be called once per poll loop; [`ConnTrack::age_paced_with`] scans only
//!   as many as sweep the table within an eighth of the shortest timeout), by a new insert
//!   of the same flow, or by an insert into a full table that finds it on its probe path.
//!   The refresh is an unconditional store: skipping it while the stored expiry is within
//!   1/256 of the timeout (so that a hit leaves its line clean) was slower (`lb-bench`,
//!   interleaved: 1k flows 84-85 -> 108-113 cycles/packet, 1M 127-132 -> 157-167).
//! * **Full table**: an insert beyond `capacity` (or, very rarely, one whose probe window
//!   holds no free or expired slot) fails with [`InsertError::Full`] and counts
//!   [`CtStats::full_drops`]; live entries are never evicted.
//!
//! # Age and packets
//! Each entry also records the unit it was created in ([`EntryTimes::age`], modulo 2^32
//! units: 14 years at 0.1 s) and counts its packets ([`ConnTrack::packets`]): 1 at
//! creation, plus one for every lookup that finds it live (in the line the hit just read
//! and stores its expiry into anyway) and every insert that finds it live (a packet its
//! lookup missed, e.g. a new flow's second packet in the same vector). Each packet of a
//! connection is counted once as long as its node looks it up once (the `lb` node takes
//! over the sharing `acl` node's lookup instead of looking up again). The count saturates
//! at `u32::MAX` (about 5 minutes of one flow at 14.88 Mpps; wrapping would show small
//! counts for the busiest flows). The bytes came from the expiry (8 -> 4 bytes as a unit
//! count) and from the `lb` node's payload (16 -> 12 bytes: the service id in 16 bits, the
//! ACL's `blocked` flag folded into the stored generation's top bit).
//!
//! Measured with `lb-bench --rounds 5` (1k, 100k, 1M flows), interleaved runs in rotated
//! order against the build before the change, median over runs of the per-run medians
//! (cycles/packet of the `lb` node) and of the per-round ratios, on the shared 2-core
//! machine (load 4-6, run-to-run spread about +-15%):
//! - first version, with the settle check inlined wherever expiries are compared (lookups,
//!   inserts, removals, aging): 6 rounds, 1k 136 -> 166 (x1.20), 100k 189 -> 227 (x1.20),
//!   1M 224 -> 281 (x1.14). The same without the packet count was as slow (x1.27, x1.16,
//!   x1.13 in 9 rounds), and the build with only the narrower `NatEntry` (u64 expiry, no
//!   new fields) as fast as before (x0.94-1.08): the cost was the check's cold call
//!   inlined into the `lb` node's vector function (19.1 KB instead of 18.2 KB of code;
//!   registers saved around it in its hot loops), not the stores.
//! - the check in inserts and removals dropped: x1.10, x1.11, x1.03 (5 rounds);
//! - the check only in [`ConnTrack::lookup_batch`] and (never inlined) aging, as kept: 6
//!   rounds, 1k 131 -> 132 (x0.99), 100k 189 -> 182 (x0.84), 1M 232 -> 224 (x0.92); again
//!   over 9 rounds, 1k 128.8 -> 126.7 (x0.99), 100k 186.8 -> 188.7 (x1.07), 1M 229.9 ->
//!   224.1 (x1.02), new connections 457 -> 472 (x0.97); and on a quieter machine (load 3,
//!   11 rounds, the final build): 1k 85.4 -> 84.2 (x0.99), 100k 121.9 -> 122.1 (x1.00), 1M
//!   151.1 -> 146.0 (x0.99), new connections 245 -> 260 (x1.03, rounds spread 200-370):
//!   no growth beyond the noise. The
//!   vhost benchmark (`bench --dpgen --rounds 5 --seconds 2 --warmup 1 --duts
//!   dataplane-full,testpmd-io@vip`, runs alternated, generator-bound at 0.5-0.7 Mpps on the
//!   loaded machine, so small vectors): the `lb` node's median 365, 410, 374 cycles/packet
//!   before, 369, 344 after.
//!
//! # Handles
//! A [`Handle`] names a slot. It stays valid until the next call that removes entries
//! ([`ConnTrack::remove`], [`ConnTrack::age`], [`ConnTrack::clear`]): backward-shift
//! deletion moves entries. Lookups, inserts and TCP updates never move entries. A stale
//! handle is memory-safe but may name another entry or an empty slot (then accessors
//! return `None`).
//!
//! # Batching
//! [`ConnTrack::lookup_batch`] works in three passes over a chunk of keys, each a loop of
//! independent loads so that the cache misses of the chunk overlap instead of following one
//! another: hash every key and touch its home tag; walk each key's tags to its candidate
//! slot and touch that slot's line; then compare keys (a tag collision falls back to the
//! plain probe from the next slot). Touches are skipped where the lines are taken to be
//! cached anyway (small tag arrays or tables), and a sparse table (load at most 1/4) skips
//! the tags altogether: it touches the home slots and probes the slots. A touch is a plain
//! load whose value feeds `std::hint::black_box`. `_mm_prefetch` is not used: on rustc 1.95
//! it is a safe function only inside `#[target_feature(enable = "sse")]` code, and calling
//! such code from normal code still needs `unsafe`, which this crate avoids; and, tried in
//! place of the three touch loops, it was slower (`lb-bench`, interleaved: 100k flows
//! 119-128 -> 143-150 cycles/packet, 1M 137-157 -> 155-169, 1k unchanged). Prefetching
//! (`prefetcht0`) each key's first line as soon as the `lb` node has built the key, while
//! it classifies the rest of the chunk, and keeping the touch loops, was slower as well
//! (vhost benchmark's full pipeline, 100k flows, interleaved: `lb` node 84-85 -> 101-107).
//! So was software pipelining across the node's chunks: classifying the next chunk and
//! prefetching its home slots (and tags) before looking up and deciding the current one
//! (`lb-bench` 1M flows 78-81 -> 84-85 with `prefetcht0`, 155 with touch loads; the vhost
//! benchmark's full pipeline, `lb` node 74-77 -> 79-80).

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::flow_key::{FlowKey, PROTO_SCTP, PROTO_TCP, PROTO_UDP};

/// Longest probe sequence (in slots, from the home slot) an entry may sit at.
pub const MAX_PROBE: usize = 128;

/// Keys whose home tags [`ConnTrack::lookup_batch`] touches ahead of probing.
pub const BATCH_TAGS: usize = 256;

/// Keys whose candidate slots [`ConnTrack::lookup_batch`] touches ahead of comparing keys.
pub const BATCH_CHUNK: usize = 64;

/// Largest accepted capacity (slot indexes fit a `u32` handle).
pub const MAX_CAPACITY: usize = 1 << 30;

// State byte: low 3 bits are the state code (0 = empty slot), high 4 bits record which
// TCP SYN/FIN flags were seen per direction.
const ST_EMPTY: u8 = 0;
const ST_UDP: u8 = 1;
const ST_OTHER: u8 = 2;
const ST_SYN: u8 = 3;
const ST_EST: u8 = 4;
const ST_FIN: u8 = 5;
const ST_CLOSED: u8 = 6;
const ST_SCTP: u8 = 7;
const ST_MASK: u8 = 0x07;
const SEEN_SYN_O: u8 = 0x10;
const SEEN_SYN_R: u8 = 0x20;
const SEEN_FIN_O: u8 = 0x40;
const SEEN_FIN_R: u8 = 0x80;

/// Idle timeouts in seconds, as written in configuration. Defaults follow VPP's ACL plugin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TimeoutSecs {
    /// UDP flows and SCTP associations (default 600 s).
    pub udp: u64,
    /// TCP after the handshake (default 86 400 s = 24 h).
    pub tcp_established: u64,
    /// TCP during the handshake, after a FIN, or after RST (default 120 s).
    pub tcp_transient: u64,
    /// Any other protocol, e.g. ICMP (default 30 s).
    pub other: u64,
}

impl Default for TimeoutSecs {
    fn default() -> Self {
        Self {
            udp: 600,
            tcp_established: 86_400,
            tcp_transient: 120,
            other: 30,
        }
    }
}

impl TimeoutSecs {
    /// These timeouts in ticks of a clock running at `ticks_per_sec` (saturating).
    pub fn to_ticks(&self, ticks_per_sec: u64) -> Timeouts {
        Timeouts {
            udp: self.udp.saturating_mul(ticks_per_sec),
            tcp_established: self.tcp_established.saturating_mul(ticks_per_sec),
            tcp_transient: self.tcp_transient.saturating_mul(ticks_per_sec),
            other: self.other.saturating_mul(ticks_per_sec),
        }
    }
}

/// Idle timeouts in caller ticks (the unit of the `now` arguments).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// UDP flows.
    pub udp: u64,
    /// TCP established.
    pub tcp_established: u64,
    /// TCP handshake, FIN seen, closed/RST.
    pub tcp_transient: u64,
    /// Other protocols.
    pub other: u64,
}

impl Timeouts {
    /// The VPP-like defaults ([`TimeoutSecs::default`]) for a clock of `ticks_per_sec`.
    pub fn vpp_defaults(ticks_per_sec: u64) -> Self {
        TimeoutSecs::default().to_ticks(ticks_per_sec)
    }

    fn by_state(&self) -> [u64; 8] {
        let mut t = [0u64; 8];
        t[ST_UDP as usize] = self.udp;
        t[ST_OTHER as usize] = self.other;
        t[ST_SYN as usize] = self.tcp_transient;
        t[ST_EST as usize] = self.tcp_established;
        t[ST_FIN as usize] = self.tcp_transient;
        t[ST_CLOSED as usize] = self.tcp_transient;
        t[ST_SCTP as usize] = self.udp;
        t
    }
}

/// Which way a packet travels relative to the connection's originator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Same direction as the packet that created the entry.
    Original,
    /// The reverse direction (source and destination swapped).
    Reply,
}

/// Tracking state of a connection; it selects the idle timeout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConnState {
    /// A UDP flow.
    Udp,
    /// A flow of a protocol other than TCP, UDP and SCTP.
    Other,
    /// An SCTP association (the UDP timeout: an idle association still sends a HEARTBEAT
    /// every 30 s by default, RFC 9260 8.3, which `other`'s 30 s would not cover).
    Sctp,
    /// TCP, handshake in progress (transient timeout).
    TcpSynSeen,
    /// TCP, SYN seen both ways or picked up mid-stream (established timeout).
    TcpEstablished,
    /// TCP, FIN seen in one direction (transient timeout).
    TcpFinSeen,
    /// TCP, FIN seen both ways or RST (transient timeout; a new SYN reopens it).
    TcpClosed,
}

impl ConnState {
    fn from_code(c: u8) -> Self {
        match c & ST_MASK {
            ST_UDP => Self::Udp,
            ST_SYN => Self::TcpSynSeen,
            ST_EST => Self::TcpEstablished,
            ST_FIN => Self::TcpFinSeen,
            ST_CLOSED => Self::TcpClosed,
            ST_SCTP => Self::Sctp,
            _ => Self::Other,
        }
    }
}

/// TCP header flags, as in the wire byte (byte 13 of the TCP header).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct TcpFlags(pub u8);

impl TcpFlags {
    /// FIN.
    pub const FIN: u8 = 0x01;
    /// SYN.
    pub const SYN: u8 = 0x02;
    /// RST.
    pub const RST: u8 = 0x04;
    /// PSH.
    pub const PSH: u8 = 0x08;
    /// ACK.
    pub const ACK: u8 = 0x10;

    /// Whether every bit of `bits` is set.
    #[inline]
    pub fn contains(self, bits: u8) -> bool {
        self.0 & bits == bits
    }
}

/// One occupied slot as [`ConnTrack::scan`] shows it.
#[derive(Debug, Clone, Copy)]
pub struct ScanEntry<'a, T> {
    /// The originator's key.
    pub key: &'a FlowKey,
    /// The tracking state.
    pub state: ConnState,
    /// Its times at the scan's `now` (`times.left == 0`: expired, not yet reclaimed).
    pub times: EntryTimes,
    /// Packets of the connection (saturating at `u32::MAX`).
    pub packets: u32,
    /// The payload.
    pub payload: &'a T,
}

/// A slot of the table holding a connection; see the module docs for its lifetime.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Handle(u32);

impl Handle {
    /// The slot index (for diagnostics).
    pub fn index(self) -> usize {
        self.0 as usize
    }

    /// The handle of slot `index` (results carried between nodes; see
    /// [`ConnTrack::confirm`]). Indexes beyond the table name no entry.
    pub(crate) fn from_index(index: usize) -> Handle {
        Handle(u32::try_from(index).unwrap_or(u32::MAX))
    }
}

/// Why an insert failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum InsertError {
    /// No room: the table holds `capacity` entries (or the probe window is full). Counted
    /// in [`CtStats::full_drops`].
    #[error("connection table full")]
    Full,
    /// A live entry for this flow (either direction) exists already.
    #[error("connection already tracked")]
    Exists(Handle),
}

/// Event counters of one table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct CtStats {
    /// Entries created (including ones that reused an expired slot).
    pub inserted: u64,
    /// Expired entries reclaimed, by [`ConnTrack::age`], reuse on insert, or removal.
    pub expired: u64,
    /// Live entries removed by [`ConnTrack::remove`].
    pub removed: u64,
    /// Lookups that found a live entry.
    pub hits: u64,
    /// Lookups that found nothing (or only an expired entry).
    pub misses: u64,
    /// Inserts refused because the table was full.
    pub full_drops: u64,
}

#[derive(Clone, Copy)]
#[repr(align(64))]
struct Slot<T> {
    /// The unit (see [`ConnTrack::units`]) from which the entry is expired, wrapping:
    /// compared with [`live`].
    expires: u32,
    /// The unit in which the entry was created, wrapping.
    created: u32,
    /// Packets of the connection (saturating; see the module doc).
    packets: u32,
    key: FlowKey,
    /// State code | seen flags; 0 = empty.
    state: u8,
    /// Distance from the home slot (< MAX_PROBE).
    dist: u8,
    payload: T,
}

impl<T: Default> Slot<T> {
    fn empty() -> Self {
        Self {
            expires: 0,
            created: 0,
            packets: 0,
            key: FlowKey::default(),
            state: ST_EMPTY,
            dist: 0,
            payload: T::default(),
        }
    }
}

/// Whether an entry expiring at unit `expires` is live at unit `now`: `expires` is less
/// than half the `u32` range ahead (wrap-safe; see the module doc, "Time").
#[inline(always)]
fn live(expires: u32, now: u32) -> bool {
    (expires.wrapping_sub(now) as i32) > 0
}

/// A unit of a table's clock is at most its shortest idle timeout divided by this (and a
/// power of two of ticks): an entry expires at most two units, 1/128 of its timeout, late.
pub const UNITS_PER_SHORTEST_TIMEOUT: u64 = 256;

/// The longest idle timeout stays below `2^LONGEST_TIMEOUT_BITS` units (the unit is made
/// coarser if needed), 1/8 of the `2^31` units within which expiries are compared.
pub const LONGEST_TIMEOUT_BITS: u32 = 28;

/// A table whose clock moved this many units (`2^30`, a quarter of the `u32` range) since
/// its expiries were last settled settles them again (see the module doc, "Time").
const SETTLE_BITS: u32 = 30;

/// The unit of a table's clock for timeouts `t`, as a shift of ticks: the coarsest power of
/// two of ticks at most `shortest / UNITS_PER_SHORTEST_TIMEOUT` (at least one tick), made
/// coarser until the longest timeout is below `2^LONGEST_TIMEOUT_BITS` units.
fn unit_shift(t: &Timeouts) -> u32 {
    let all = [t.udp, t.other, t.tcp_transient, t.tcp_established];
    let shortest = all.into_iter().min().unwrap_or(0);
    let longest = all.into_iter().max().unwrap_or(0);
    let mut k = (shortest / UNITS_PER_SHORTEST_TIMEOUT)
        .checked_ilog2()
        .unwrap_or(0);
    while longest >> k >= 1 << LONGEST_TIMEOUT_BITS {
        k += 1;
    }
    k
}

/// A timeout of `ticks` in units of `1 << shift` ticks: exact for one-tick units; otherwise
/// rounded up, plus one (an entry refreshed late in a unit still lives its full timeout).
fn timeout_units(ticks: u64, shift: u32) -> u32 {
    if shift == 0 {
        return ticks as u32;
    }
    (ticks.div_ceil(1 << shift) + 1) as u32
}

/// An entry's times at a given clock reading, in ticks (within one unit of the table's
/// clock: see [`ConnTrack::unit_ticks`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntryTimes {
    /// Until the entry expires unless a packet refreshes it (0: expired). Exact: the entry
    /// expires at the start of a unit.
    pub left: u64,
    /// Since the last packet (or state change) refreshed the entry: up to one unit more
    /// than the exact time.
    pub idle: u64,
    /// Since the entry was created: up to one unit more than the exact time, modulo
    /// `2^32` units (see the module doc).
    pub age: u64,
}

/// What the embedding program wants done with a new table's slot memory (address, bytes)
/// before it is first written: the dataplane asks the kernel for transparent huge pages
/// there. The pipeline itself never touches the memory's backing.
pub type TableAdvice = fn(addr: usize, len: usize);

static TABLE_ADVICE: std::sync::OnceLock<TableAdvice> = std::sync::OnceLock::new();

/// Installs the [`TableAdvice`] for every connection table made from now on (the first call
/// wins; later calls are ignored).
pub fn set_table_advice(f: TableAdvice) {
    let _ = TABLE_ADVICE.set(f);
}

/// The tag of a slot holding an entry whose [`ConnTrack::hash`] is `hash`: its top byte,
/// 1 where that is 0 (0 marks an empty slot). Slot indexes use the low bits.
#[inline(always)]
pub fn tag_of(hash: u64) -> u8 {
    ((hash >> 56) as u8).max(1)
}

/// Tag of an empty slot.
const TAG_EMPTY: u8 = 0;

/// Tables of at most this many slots (1 MiB) are taken to stay in the core's caches:
/// [`ConnTrack::lookup_batch`] does not touch their lines ahead.
const CACHED_SLOTS: usize = 1 << 14;

/// Tag arrays of at most this many bytes are taken to stay in the core's L2 cache:
/// [`ConnTrack::lookup_batch`] does not touch their lines ahead.
const CACHED_TAGS: usize = 1 << 18;

/// A table at most `1 / SPARSE_LOAD_DIV` full is looked up without its tags: about 7
/// entries in 8 sit in their home slot (the next slot's line, when needed, often arrives
/// with the home slot's: the L2 prefetches adjacent lines), and the tag lines would only add
/// to the working set. Measured (interleaved runs): the stateful `acl` node, 10k flows in a
/// 65,536-entry table (load 0.08), 60 cycles/packet with tags, 48 without; the `lb` node in
/// the vhost benchmark's DUT (100k flows, 200k-entry table, load 0.19, vhost I/O between
/// bursts), 146-151 with tags, 136-143 without (in-process, where the tags stay in L2,
/// 115-128 with, 128-131 without). Above 1/4 the tags pay: `lb-bench` at load 0.38-0.48,
/// 100k flows 153 -> 126, 1M 170 -> 145. Measured again with today's node (`lb-bench`, 3
/// interleaved rounds, every table looked up without tags against this rule): 1M flows 126-127
/// without, 82 with; 1k flows (every line cached) 50-51 without, 54 with.
const SPARSE_LOAD_DIV: usize = 4;

/// Tags `candidate` compares at once (one little-endian `u64`).
const TAG_WINDOW: usize = 8;

/// Alignment of large tag arrays (a huge page).
const TAG_ALIGN: usize = 2 << 20;

/// Distance reported by `candidate` when no slot's tag matches.
const NO_CANDIDATE: usize = usize::MAX;

/// [`ConnTrack::age_paced_with`] sweeps the whole table within the shortest idle timeout
/// divided by this: an expired entry is reclaimed (and counted as closed) at most that long
/// after it expired, as long as the calls come often enough for their `max_scan` to cover
/// their share of the sweep (a table of 2M slots with a 30 s shortest timeout needs about
/// 560k slots a second: 64 per call at 8,750 calls a second).
pub const SWEEPS_PER_TIMEOUT: u64 = 8;

/// The fewest slots [`ConnTrack::age_paced_with`] examines per call (so that a sweep goes
/// on when the clock stands still, as a test's manual clock may).
pub const MIN_PACED_SCAN: usize = 8;

/// The most slots the nodes let [`ConnTrack::age_paced_with`] examine per vector (its
/// `max_scan`): what one vector spends on aging when the sweep falls behind.
pub const MAX_PACED_SCAN: usize = 64;

/// Ticks in which paced aging sweeps a table once: the shortest idle timeout divided by
/// [`SWEEPS_PER_TIMEOUT`] (at least 1).
fn sweep_ticks(t: &Timeouts) -> u64 {
    let shortest = t
        .udp
        .min(t.other)
        .min(t.tcp_transient)
        .min(t.tcp_established);
    (shortest / SWEEPS_PER_TIMEOUT).max(1)
}

/// The slots paced aging examines in a call `elapsed` ticks after the previous one, for a
/// table of `slots` swept once every `sweep` ticks: its share of the sweep, rounded up,
/// within `[MIN_PACED_SCAN, max_scan]` (`max_scan` wins when smaller).
fn paced_scan(slots: usize, elapsed: u64, sweep: u64, max_scan: usize) -> usize {
    let share = if elapsed >= sweep {
        slots as u128
    } else {
        (slots as u128 * u128::from(elapsed)).div_ceil(u128::from(sweep))
    };
    (share.min(max_scan as u128) as usize).max(MIN_PACED_SCAN.min(max_scan))
}

/// A per-worker bidirectional connection table with per-entry payload `T`.
pub struct ConnTrack<T> {
    slots: Box<[Slot<T>]>,
    /// One per slot from `tag_off` on: [`tag_of`] the entry's hash, or [`TAG_EMPTY`].
    /// (A `Vec`: shrinking it to a boxed slice could move it off the alignment.)
    tags: Vec<u8>,
    /// Where slot 0's tag is in `tags` (large tag arrays start on a huge-page boundary).
    tag_off: usize,
    mask: usize,
    max_probe: usize,
    capacity: usize,
    len: usize,
    cursor: usize,
    timeouts: Timeouts,
    /// Timeouts by state code, in units.
    tmo: [u32; 8],
    /// A unit is `1 << shift` ticks.
    shift: u32,
    /// The tick at which expiries were last settled (see [`ConnTrack::settle`]).
    settled_at: u64,
    /// Ticks after `settled_at` from which the next call settles them again.
    settle_every: u64,
    /// Ticks in which [`ConnTrack::age_paced_with`] sweeps the table once.
    sweep_ticks: u64,
    /// `now` of the previous paced aging call.
    aged_at: u64,
    stats: CtStats,
}

impl<T> fmt::Debug for ConnTrack<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnTrack")
            .field("capacity", &self.capacity)
            .field("slots", &self.slots.len())
            .field("len", &self.len)
            .field("timeouts", &self.timeouts)
            .field("stats", &self.stats)
            .finish()
    }
}

#[inline(always)]
fn matches(e: &FlowKey, k: &FlowKey) -> Option<Direction> {
    if e.proto != k.proto || e.family != k.family {
        return None;
    }
    if e.src_port == k.src_port && e.dst_port == k.dst_port && e.src == k.src && e.dst == k.dst {
        return Some(Direction::Original);
    }
    if e.src_port == k.dst_port && e.dst_port == k.src_port && e.src == k.dst && e.dst == k.src {
        return Some(Direction::Reply);
    }
    None
}

fn initial_state(proto: u8) -> u8 {
    match proto {
        PROTO_TCP => ST_SYN,
        PROTO_UDP => ST_UDP,
        PROTO_SCTP => ST_SCTP,
        _ => ST_OTHER,
    }
}

/// The TCP transition function: state code and seen-flags in, new state code out.
fn tcp_next(st: u8, seen: &mut u8, f: TcpFlags, dir: Direction) -> u8 {
    let (syn_bit, fin_bit) = match dir {
        Direction::Original => (SEEN_SYN_O, SEEN_FIN_O),
        Direction::Reply => (SEEN_SYN_R, SEEN_FIN_R),
    };
    if f.contains(TcpFlags::RST) {
        return ST_CLOSED;
    }
    if st == ST_CLOSED {
        // A fresh SYN on a closed tuple (port reuse) starts a new handshake.
        if f.contains(TcpFlags::SYN) && !f.contains(TcpFlags::ACK) {
            *seen = syn_bit;
            return ST_SYN;
        }
        return ST_CLOSED;
    }
    if f.contains(TcpFlags::SYN) {
        *seen |= syn_bit;
    }
    if f.contains(TcpFlags::FIN) {
        *seen |= fin_bit;
    }
    if *seen & (SEEN_FIN_O | SEEN_FIN_R) == SEEN_FIN_O | SEEN_FIN_R {
        return ST_CLOSED;
    }
    if *seen & (SEEN_FIN_O | SEEN_FIN_R) != 0 {
        return ST_FIN;
    }
    if st == ST_SYN {
        let syns = *seen & (SEEN_SYN_O | SEEN_SYN_R);
        if syns == SEEN_SYN_O | SEEN_SYN_R || (syns == 0 && f.contains(TcpFlags::ACK)) {
            // Handshake seen both ways, or a mid-stream pickup (e.g. after an ECMP change
            // moved the flow to this node).
            return ST_EST;
        }
    }
    st
}

impl<T: Copy + Default> ConnTrack<T> {
    /// A table for at most `capacity` connections (at least 1, at most [`MAX_CAPACITY`])
    /// with the given idle timeouts: `next_pow2(2 * capacity)` slots of 64 bytes (for `T`
    /// up to 16 bytes), allocated once.
    pub fn with_capacity(capacity: usize, timeouts: Timeouts) -> Self {
        Self::with_capacity_and_slots(capacity, 0, timeouts)
    }

    /// As [`ConnTrack::with_capacity`] but with at least `min_slots` slots (rounded up to a
    /// power of two; never fewer than `2 * capacity`). A sparser table trades memory for
    /// shorter probes (fewer tags walked and fewer entries shifted on removal).
    pub fn with_capacity_and_slots(capacity: usize, min_slots: usize, timeouts: Timeouts) -> Self {
        assert!(
            capacity <= MAX_CAPACITY,
            "conntrack capacity {capacity} exceeds {MAX_CAPACITY}"
        );
        assert!(
            min_slots <= 2 * MAX_CAPACITY,
            "conntrack slot count {min_slots} exceeds {}",
            2 * MAX_CAPACITY
        );
        let capacity = capacity.max(1);
        let nslots = (capacity * 2).max(min_slots).next_power_of_two();
        // Allocated untouched, advised, then filled: huge pages must be asked for before the
        // first write faults the memory in.
        let mut slots: Vec<Slot<T>> = Vec::with_capacity(nslots);
        if let Some(advise) = TABLE_ADVICE.get() {
            advise(
                slots.as_ptr() as usize,
                nslots * std::mem::size_of::<Slot<T>>(),
            );
        }
        slots.resize(nslots, Slot::empty());
        // A tag array of 1 MiB or more starts on a 2 MiB boundary, so that huge pages can
        // back all of it (the kernel maps them only at aligned addresses).
        let align = if nslots >= TAG_ALIGN / 2 {
            TAG_ALIGN
        } else {
            1
        };
        // TAG_WINDOW - 1 tags past the end repeat the first ones (see `candidate`).
        let mut tags: Vec<u8> = Vec::with_capacity(nslots + TAG_WINDOW + align - 1);
        let base = tags.as_ptr() as usize;
        let tag_off = base.next_multiple_of(align) - base;
        if let Some(advise) = TABLE_ADVICE.get() {
            advise(base + tag_off, nslots);
        }
        tags.resize(tag_off + nslots + TAG_WINDOW, TAG_EMPTY);
        let shift = unit_shift(&timeouts);
        Self {
            slots: slots.into_boxed_slice(),
            tags,
            tag_off,
            mask: nslots - 1,
            max_probe: MAX_PROBE.min(nslots),
            capacity,
            len: 0,
            cursor: 0,
            timeouts,
            tmo: timeouts.by_state().map(|t| timeout_units(t, shift)),
            shift,
            settled_at: 0,
            settle_every: 1u64.checked_shl(SETTLE_BITS + shift).unwrap_or(u64::MAX),
            sweep_ticks: sweep_ticks(&timeouts),
            aged_at: 0,
            stats: CtStats::default(),
        }
    }

    /// The maximum number of entries.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Number of slots (a power of two, at least twice the capacity).
    pub fn slot_count(&self) -> usize {
        self.slots.len()
    }

    /// Bytes of slot and tag memory.
    pub fn memory_bytes(&self) -> usize {
        self.slots.len() * std::mem::size_of::<Slot<T>>() + self.tags.len()
    }

    /// Number of occupied slots: live entries plus expired ones not yet reclaimed.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no slot is occupied.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The event counters.
    pub fn stats(&self) -> &CtStats {
        &self.stats
    }

    /// The idle timeouts in use.
    pub fn timeouts(&self) -> &Timeouts {
        &self.timeouts
    }

    /// Ticks per unit of the table's clock (a power of two; see the module doc, "Time").
    pub fn unit_ticks(&self) -> u64 {
        1 << self.shift
    }

    /// The unit of tick `now`, as stored in the slots (wrapping).
    #[inline(always)]
    fn units(&self, now: u64) -> u32 {
        (now >> self.shift) as u32
    }

    /// [`ConnTrack::units`], settling the expiries first when due (one compare of two
    /// fields). Only in calls made once per batch or vector, never inlined into a node's
    /// vector function: [`ConnTrack::lookup_batch`] and [`ConnTrack::age_with`].
    #[inline(always)]
    fn clock(&mut self, now: u64) -> u32 {
        if now.saturating_sub(self.settled_at) >= self.settle_every {
            self.settle(now);
        }
        self.units(now)
    }

    /// Keeps every stored expiry within the range [`live`] compares in: marks each entry
    /// expired by `now` as expiring exactly at `now`'s unit (it stays expired, with its
    /// payload, for aging to reclaim and report), once the clock has moved `2^SETTLE_BITS`
    /// units since the last time. Every expiry stored since then lies between the unit of
    /// `settled_at` (a mark) and fewer than `2^SETTLE_BITS + 2^LONGEST_TIMEOUT_BITS` units
    /// later (the last call before this one, plus a timeout), so its offset from that unit
    /// is exact in a `u32`, however long the table sat unused. A full pass over the tags,
    /// and the lines of occupied slots: at most once every 2^30 units (about 3.5 years with
    /// the default timeouts and a 2.6 GHz clock), or at the first call after a long pause.
    #[cold]
    #[inline(never)]
    fn settle(&mut self, now: u64) {
        if self.len == 0 {
            self.settled_at = now;
            return;
        }
        let base = self.settled_at >> self.shift;
        let now_u = now >> self.shift;
        for i in 0..self.slots.len() {
            if self.tag(i) == TAG_EMPTY {
                continue;
            }
            let s = &mut self.slots[i];
            let expires = base + u64::from(s.expires.wrapping_sub(base as u32));
            if expires <= now_u {
                s.expires = now_u as u32;
            }
        }
        self.settled_at = now;
    }

    /// The times of slot `s` at tick `now` (unit `now_u`).
    fn times_of(&self, s: &Slot<T>, now: u64) -> EntryTimes {
        let now_u = self.units(now);
        let abs = |u: u64| u << self.shift;
        let unit0 = now >> self.shift;
        let ahead = s.expires.wrapping_sub(now_u) as i32;
        let expires = unit0.wrapping_add_signed(i64::from(ahead));
        let refreshed = expires.wrapping_sub(u64::from(self.tmo[(s.state & ST_MASK) as usize]));
        let created = unit0.wrapping_sub(u64::from(now_u.wrapping_sub(s.created)));
        EntryTimes {
            left: if ahead > 0 { abs(expires) - now } else { 0 },
            idle: now.saturating_sub(abs(refreshed)),
            age: now.saturating_sub(abs(created)),
        }
    }

    /// The hash that places `key` (and its reverse) in this table:
    /// [`FlowKey::symmetric_hash`]. Compute it once and pass it to the `_hashed` variants.
    #[inline]
    pub fn hash(key: &FlowKey) -> u64 {
        key.symmetric_hash()
    }

    /// The tag of slot `i`.
    #[inline(always)]
    fn tag(&self, i: usize) -> u8 {
        self.tags[self.tag_off + i]
    }

    /// Sets the tag of slot `i` (and its copies past the end: position `slot_count() + m`
    /// holds the tag of slot `m & mask` for `m < TAG_WINDOW`).
    #[inline(always)]
    fn set_tag(&mut self, i: usize, t: u8) {
        self.tags[self.tag_off + i] = t;
        if i < TAG_WINDOW {
            let end = self.tag_off + self.slots.len();
            for m in (i..TAG_WINDOW).step_by(self.slots.len()) {
                self.tags[end + m] = t;
            }
        }
    }

    /// The tags of slots `i .. i + TAG_WINDOW` (wrapping), slot `i`'s in the low byte.
    #[inline(always)]
    fn tag_window(&self, i: usize) -> u64 {
        let at = self.tag_off + i;
        let w: [u8; TAG_WINDOW] = self.tags[at..at + TAG_WINDOW]
            .try_into()
            .expect("TAG_WINDOW tags");
        u64::from_le_bytes(w)
    }

    /// Finds the slot of `key` in either direction, live or expired.
    #[inline(always)]
    fn probe(&self, key: &FlowKey, hash: u64) -> Option<(usize, Direction)> {
        self.probe_from(key, tag_of(hash), hash as usize & self.mask, 0)
    }

    /// [`ConnTrack::probe`] from slot `i`, `steps` slots past the home slot.
    #[inline(always)]
    fn probe_from(
        &self,
        key: &FlowKey,
        tag: u8,
        mut i: usize,
        steps: usize,
    ) -> Option<(usize, Direction)> {
        for _ in steps..self.max_probe {
            let t = self.tag(i);
            if t == TAG_EMPTY {
                return None;
            }
            if t == tag {
                if let Some(d) = matches(&self.slots[i].key, key) {
                    return Some((i, d));
                }
            }
            i = (i + 1) & self.mask;
        }
        None
    }

    /// Walks the tags from `home` to the first slot whose tag is `tag` (a candidate: its
    /// index, its distance from home) or to the first empty slot (where an insert of the
    /// missing flow would go: its index, [`NO_CANDIDATE`]). `(home, NO_CANDIDATE)` if the
    /// probe bound comes first.
    ///
    /// The first [`TAG_WINDOW`] tags are searched at once (one 8-byte load, byte-wise
    /// compares in a word); only a longer walk goes on one tag at a time.
    #[inline(always)]
    fn candidate(&self, tag: u8, home: usize) -> (usize, usize) {
        const LOW: u64 = 0x0101_0101_0101_0101;
        const HIGH: u64 = 0x8080_8080_8080_8080;
        let w = self.tag_window(home);
        // The lowest zero byte of x is exactly the lowest byte flagged (bytes above it may
        // be flagged falsely, which never matters: only the lowest is used).
        let zero = |x: u64| x.wrapping_sub(LOW) & !x & HIGH;
        let hit = zero(w ^ (LOW * u64::from(tag)));
        let empty = zero(w);
        // Distance to the first match and to the first empty slot (8: none in the window).
        let (dh, de) = (hit.trailing_zeros() / 8, empty.trailing_zeros() / 8);
        if dh < de {
            let d = dh as usize;
            return ((home + d) & self.mask, d);
        }
        if de < TAG_WINDOW as u32 {
            return ((home + de as usize) & self.mask, NO_CANDIDATE);
        }
        self.candidate_from(tag, home, TAG_WINDOW)
    }

    /// `candidate`'s walk one tag at a time from `steps` slots past `home`.
    #[cold]
    fn candidate_from(&self, tag: u8, home: usize, steps: usize) -> (usize, usize) {
        let mut i = (home + steps) & self.mask;
        for d in steps..self.max_probe {
            let t = self.tag(i);
            if t == tag {
                return (i, d);
            }
            if t == TAG_EMPTY {
                return (i, NO_CANDIDATE);
            }
            i = (i + 1) & self.mask;
        }
        (home, NO_CANDIDATE)
    }

    /// A live `found` entry gets its idle timer refreshed and its packet counted (both in
    /// the line the lookup just read), and is returned; an expired one (or none) is a miss.
    /// `now` is in units ([`ConnTrack::clock`]). Counts no hit or miss: see
    /// [`ConnTrack::hit`].
    #[inline(always)]
    fn refresh(
        &mut self,
        found: Option<(usize, Direction)>,
        now: u32,
    ) -> Option<(usize, Direction)> {
        let (i, d) = found?;
        let s = &mut self.slots[i];
        if !live(s.expires, now) {
            return None;
        }
        s.expires = now.wrapping_add(self.tmo[(s.state & ST_MASK) as usize]);
        s.packets = s.packets.saturating_add(1);
        Some((i, d))
    }

    /// Counts a batch's `hits` and the misses among its `looked_up` keys (once per batch:
    /// a per-key count would be a chain of stores to one counter).
    #[inline(always)]
    fn count_batch(&mut self, looked_up: usize, hits: usize) {
        self.stats.hits += hits as u64;
        self.stats.misses += (looked_up - hits) as u64;
    }

    /// [`ConnTrack::refresh`], counting the hit or miss.
    #[inline(always)]
    fn hit(&mut self, found: Option<(usize, Direction)>, now: u32) -> Option<(usize, Direction)> {
        let r = self.refresh(found, now);
        match r {
            Some(_) => self.stats.hits += 1,
            None => self.stats.misses += 1,
        }
        r
    }

    /// Looks up a packet's flow (either direction) at time `now`. A hit refreshes the
    /// entry's idle timer and returns its handle, the packet's direction and the payload.
    /// Expired entries are misses.
    #[inline]
    pub fn lookup(&mut self, key: &FlowKey, now: u64) -> Option<(Handle, Direction, &mut T)> {
        self.lookup_hashed(key, key.symmetric_hash(), now)
    }

    /// [`ConnTrack::lookup`] with a precomputed [`ConnTrack::hash`].
    #[inline]
    pub fn lookup_hashed(
        &mut self,
        key: &FlowKey,
        hash: u64,
        now: u64,
    ) -> Option<(Handle, Direction, &mut T)> {
        let now = self.units(now);
        let found = self.probe(key, hash);
        let (i, d) = self.hit(found, now)?;
        Some((Handle(i as u32), d, &mut self.slots[i].payload))
    }

    /// Looks up `keys[i]` into `out[i]` (as [`ConnTrack::lookup`], payloads via
    /// [`ConnTrack::payload_mut`]); returns the number of hits. Hashes up to
    /// [`BATCH_TAGS`] keys and touches their home tags, then works in chunks of
    /// [`BATCH_CHUNK`]: walks each key's tags to its candidate slot, touches the candidate
    /// slots' lines, then compares keys. Every touch is a tight loop of independent loads,
    /// so the cache misses overlap instead of following one another (and the tags of later
    /// chunks arrive while earlier chunks are probed; one level of 64-key chunks for
    /// everything measured 5-10% slower in `lb-bench` at every flow count). A table at most
    /// 1/4 full is looked up without its tags (`lookup_batch_sparse`). Panics if `out` is
    /// shorter than `keys`.
    pub fn lookup_batch(
        &mut self,
        keys: &[FlowKey],
        now: u64,
        out: &mut [Option<(Handle, Direction)>],
    ) -> usize {
        assert!(
            out.len() >= keys.len(),
            "lookup_batch: output shorter than input"
        );
        let now = self.clock(now);
        if self.len * SPARSE_LOAD_DIV <= self.slots.len() {
            // Nearly every entry in its home slot.
            return self.lookup_batch_sparse(keys, now, out);
        }
        let mut hits = 0;
        let mut hashes = [0u64; BATCH_TAGS];
        // Candidate slot and its distance from home (or the slot a miss would be inserted
        // in, and NO_CANDIDATE).
        let mut cand = [(0usize, 0usize); BATCH_CHUNK];
        for (kt, ot) in keys.chunks(BATCH_TAGS).zip(out.chunks_mut(BATCH_TAGS)) {
            let ht = &mut hashes[..kt.len()];
            for (h, k) in ht.iter_mut().zip(kt) {
                *h = k.symmetric_hash();
            }
            // Kept apart from the hashing: fused, the loop holds half as many misses in
            // the reorder window.
            let mut touch = 0u8;
            if self.slots.len() > CACHED_TAGS {
                for &h in ht.iter() {
                    touch ^= self.tag(h as usize & self.mask);
                }
            }
            for ((kc, hc), oc) in kt
                .chunks(BATCH_CHUNK)
                .zip(ht.chunks(BATCH_CHUNK))
                .zip(ot.chunks_mut(BATCH_CHUNK))
            {
                let cc = &mut cand[..kc.len()];
                for (c, &h) in cc.iter_mut().zip(hc) {
                    *c = self.candidate(tag_of(h), h as usize & self.mask);
                }
                // A miss touches its free slot too: the insert that usually follows then
                // stores into a cached line (a store miss holds up every later store). The
                // loop is kept apart from the tag walk so that it is a few instructions per
                // slot.
                let mut line = 0u64;
                if self.slots.len() > CACHED_SLOTS {
                    for c in cc.iter() {
                        line ^= u64::from(self.slots[c.0].expires);
                    }
                }
                std::hint::black_box(line);
                for (((k, &h), &(i, d)), o) in kc.iter().zip(hc).zip(cc.iter()).zip(oc.iter_mut()) {
                    let found = if d == NO_CANDIDATE {
                        None
                    } else {
                        match matches(&self.slots[i].key, k) {
                            Some(dir) => Some((i, dir)),
                            // A tag collision: go on past it.
                            None => self.probe_from(k, tag_of(h), (i + 1) & self.mask, d + 1),
                        }
                    };
                    *o = self.refresh(found, now).map(|(i, d)| (Handle(i as u32), d));
                    hits += o.is_some() as usize;
                }
            }
            std::hint::black_box(touch);
        }
        self.count_batch(keys.len(), hits);
        hits
    }

    /// [`ConnTrack::lookup_batch`] for a sparse table, where nearly every entry sits in its
    /// home slot: touches the home slots' lines (no tags: they would only add lines to the
    /// working set), then probes the slots themselves. Never inlined: inlined, it changed
    /// the code generated for the dense path (measured 85 -> 97-108 cycles/packet in the
    /// `lb` node at 1k flows).
    #[inline(never)]
    fn lookup_batch_sparse(
        &mut self,
        keys: &[FlowKey],
        now: u32,
        out: &mut [Option<(Handle, Direction)>],
    ) -> usize {
        let mut hits = 0;
        let mut hashes = [0u64; BATCH_CHUNK];
        for (kc, oc) in keys.chunks(BATCH_CHUNK).zip(out.chunks_mut(BATCH_CHUNK)) {
            let hc = &mut hashes[..kc.len()];
            for (h, k) in hc.iter_mut().zip(kc) {
                *h = k.symmetric_hash();
            }
            let mut line = 0u64;
            for &h in hc.iter() {
                line ^= u64::from(self.slots[h as usize & self.mask].expires);
            }
            std::hint::black_box(line);
            for ((k, &h), o) in kc.iter().zip(hc.iter()).zip(oc.iter_mut()) {
                let found = self.probe_slots(k, h);
                *o = self.refresh(found, now).map(|(i, d)| (Handle(i as u32), d));
                hits += o.is_some() as usize;
            }
        }
        self.count_batch(keys.len(), hits);
        hits
    }

    /// [`ConnTrack::probe`] reading the slots' own state bytes instead of the tags.
    #[inline(always)]
    fn probe_slots(&self, key: &FlowKey, hash: u64) -> Option<(usize, Direction)> {
        let mut i = hash as usize & self.mask;
        for _ in 0..self.max_probe {
            let s = &self.slots[i];
            if s.state == ST_EMPTY {
                return None;
            }
            if let Some(d) = matches(&s.key, key) {
                return Some((i, d));
            }
            i = (i + 1) & self.mask;
        }
        None
    }

    /// Finds a live entry without refreshing it or counting a lookup (for diagnostics and
    /// control-plane queries).
    pub fn peek(&self, key: &FlowKey, now: u64) -> Option<(Handle, Direction, &T)> {
        let (i, d) = self.probe(key, key.symmetric_hash())?;
        let s = &self.slots[i];
        live(s.expires, self.units(now)).then_some((Handle(i as u32), d, &s.payload))
    }

    /// Starts tracking the flow whose first packet has `key` (that packet's direction
    /// becomes [`Direction::Original`]). TCP entries start in [`ConnState::TcpSynSeen`]; call
    /// [`ConnTrack::update_tcp`] with the packet's flags. An expired entry for the same flow
    /// is reused in place; when the table is full, the first expired entry on the probe path
    /// is taken over (counted as expired) before giving up with [`InsertError::Full`].
    #[inline]
    pub fn insert(&mut self, key: &FlowKey, now: u64, payload: T) -> Result<Handle, InsertError> {
        self.insert_hashed(key, key.symmetric_hash(), now, payload)
    }

    /// [`ConnTrack::insert`] with a precomputed [`ConnTrack::hash`].
    pub fn insert_hashed(
        &mut self,
        key: &FlowKey,
        hash: u64,
        now: u64,
        payload: T,
    ) -> Result<Handle, InsertError> {
        self.insert_reclaiming(key, hash, now, payload)
            .map(|(h, _)| h)
    }

    /// [`ConnTrack::insert_hashed`] that also returns the payload of the expired entry it
    /// overwrote, if any (the same flow's expired entry, or, in a full table, an expired
    /// entry on the probe path), so that callers keeping per-payload counts (e.g. active
    /// connections per backend) see every entry that goes away.
    pub fn insert_reclaiming(
        &mut self,
        key: &FlowKey,
        hash: u64,
        now: u64,
        payload: T,
    ) -> Result<(Handle, Option<T>), InsertError> {
        let now = self.units(now);
        let home = hash as usize & self.mask;
        let tag = tag_of(hash);
        let mut i = home;
        let mut empty = None;
        for d in 0..self.max_probe {
            let t = self.tag(i);
            if t == TAG_EMPTY {
                empty = Some((i, d));
                break;
            }
            let s = &mut self.slots[i];
            if t == tag && matches(&s.key, key).is_some() {
                if live(s.expires, now) {
                    // The insert is for a packet of the flow (one its lookup missed, e.g.
                    // a second new flow's packet in one vector): counted.
                    s.packets = s.packets.saturating_add(1);
                    return Err(InsertError::Exists(Handle(i as u32)));
                }
                // The same flow, expired: start it afresh in place.
                self.stats.expired += 1;
                let d = s.dist as usize;
                let old = s.payload;
                return Ok((self.write(i, d, key, tag, now, payload), Some(old)));
            }
            i = (i + 1) & self.mask;
        }
        if let Some((i, d)) = empty.filter(|_| self.len < self.capacity) {
            self.len += 1;
            return Ok((self.write(i, d, key, tag, now, payload), None));
        }
        // Full (or no free slot in the probe window): take over the first expired entry on
        // the probe path, if any. Live entries are never evicted.
        let mut i = home;
        for d in 0..self.max_probe {
            if self.tag(i) == TAG_EMPTY {
                break;
            }
            let s = &self.slots[i];
            if !live(s.expires, now) {
                self.stats.expired += 1;
                let old = s.payload;
                return Ok((self.write(i, d, key, tag, now, payload), Some(old)));
            }
            i = (i + 1) & self.mask;
        }
        self.stats.full_drops += 1;
        Err(InsertError::Full)
    }

    #[inline(always)]
    fn write(
        &mut self,
        i: usize,
        dist: usize,
        key: &FlowKey,
        tag: u8,
        now: u32,
        payload: T,
    ) -> Handle {
        let st = initial_state(key.proto);
        self.set_tag(i, tag);
        self.slots[i] = Slot {
            expires: now.wrapping_add(self.tmo[st as usize]),
            created: now,
            packets: 1,
            key: *key,
            state: st,
            dist: dist as u8,
            payload,
        };
        self.stats.inserted += 1;
        Handle(i as u32)
    }

    /// Advances the TCP state machine of the entry `h` for a packet with `flags` travelling
    /// in `dir`, and refreshes its idle timer from the new state. Non-TCP entries are only
    /// refreshed. Returns the new state, or `None` for a handle of an empty slot.
    ///
    /// A segment of an established connection without SYN, FIN or RST (nearly every
    /// segment) only refreshes the timer.
    ///
    /// Transitions: RST -> closed; FIN in one direction -> FIN seen, in both -> closed;
    /// SYN in both directions (SYN, SYN-ACK) -> established; an ACK without any SYN seen
    /// (mid-stream pickup) -> established; a SYN without ACK on a closed entry -> SYN seen.
    pub fn update_tcp(
        &mut self,
        h: Handle,
        flags: TcpFlags,
        dir: Direction,
        now: u64,
    ) -> Option<ConnState> {
        let now = self.units(now);
        let s = self.slots.get_mut(h.0 as usize)?;
        if s.state == ST_EMPTY {
            return None;
        }
        let st = s.state & ST_MASK;
        if st == ST_EST && flags.0 & (TcpFlags::SYN | TcpFlags::FIN | TcpFlags::RST) == 0 {
            // The common case, a segment of an established connection: no transition.
            s.expires = now.wrapping_add(self.tmo[ST_EST as usize]);
            return Some(ConnState::TcpEstablished);
        }
        let mut seen = s.state & !ST_MASK;
        let new = if (ST_SYN..=ST_CLOSED).contains(&st) {
            tcp_next(st, &mut seen, flags, dir)
        } else {
            st
        };
        s.state = new | seen;
        s.expires = now.wrapping_add(self.tmo[new as usize]);
        Some(ConnState::from_code(new))
    }

    /// The payload of entry `h`, `None` for an empty slot.
    #[inline]
    pub fn payload(&self, h: Handle) -> Option<&T> {
        let s = self.slots.get(h.0 as usize)?;
        (s.state != ST_EMPTY).then_some(&s.payload)
    }

    /// Which way `key` travels on entry `h`, if `h` names a live entry of `key`'s flow
    /// (checks a lookup result another node made, e.g. carried in packet metadata).
    #[inline]
    pub fn confirm(&self, h: Handle, key: &FlowKey, now: u64) -> Option<Direction> {
        let s = self.slots.get(h.0 as usize)?;
        if s.state == ST_EMPTY || !live(s.expires, self.units(now)) {
            return None;
        }
        matches(&s.key, key)
    }

    /// The payload of entry `h`, writable; `None` for an empty slot.
    #[inline]
    pub fn payload_mut(&mut self, h: Handle) -> Option<&mut T> {
        let s = self.slots.get_mut(h.0 as usize)?;
        (s.state != ST_EMPTY).then_some(&mut s.payload)
    }

    /// The tracking state of entry `h`.
    pub fn state(&self, h: Handle) -> Option<ConnState> {
        let s = self.slots.get(h.0 as usize)?;
        (s.state != ST_EMPTY).then(|| ConnState::from_code(s.state))
    }

    /// The originator's key of entry `h`.
    pub fn key(&self, h: Handle) -> Option<&FlowKey> {
        let s = self.slots.get(h.0 as usize)?;
        (s.state != ST_EMPTY).then_some(&s.key)
    }

    /// The times of entry `h` at tick `now` (live or expired).
    pub fn times(&self, h: Handle, now: u64) -> Option<EntryTimes> {
        let s = self.slots.get(h.0 as usize)?;
        (s.state != ST_EMPTY).then(|| self.times_of(s, now))
    }

    /// The packets entry `h` counted: its creating packet, each lookup that found it live,
    /// and each insert that found it live (saturating at `u32::MAX`).
    pub fn packets(&self, h: Handle) -> Option<u32> {
        let s = self.slots.get(h.0 as usize)?;
        (s.state != ST_EMPTY).then_some(s.packets)
    }

    /// Stops tracking `key`'s flow (either direction). Returns the payload if the entry was
    /// live at `now`; an expired entry is reclaimed too but returns `None`.
    pub fn remove(&mut self, key: &FlowKey, now: u64) -> Option<T> {
        self.remove_entry(key, now)
            .and_then(|(p, live)| live.then_some(p))
    }

    /// Stops tracking `key`'s flow (either direction), live or expired: returns the payload
    /// and whether the entry was live at `now`.
    pub fn remove_entry(&mut self, key: &FlowKey, now: u64) -> Option<(T, bool)> {
        let now = self.units(now);
        let (i, _) = self.probe(key, key.symmetric_hash())?;
        let s = self.slots[i];
        self.delete_at(i);
        if live(s.expires, now) {
            self.stats.removed += 1;
            Some((s.payload, true))
        } else {
            self.stats.expired += 1;
            Some((s.payload, false))
        }
    }

    /// Reclaims expired entries, examining at most `max_scan` slots from where the previous
    /// call stopped (wrapping around). Returns how many entries it freed. After freeing an
    /// entry the same slot is examined again (backward shift may have moved another entry
    /// into it), so a full sweep takes `slot_count()` plus the number freed examinations;
    /// calling it with `max_scan = slot_count() / k` every poll sweeps the table in about
    /// `k` polls.
    pub fn age(&mut self, now: u64, max_scan: usize) -> usize {
        self.age_with(now, max_scan, |_, _| {})
    }

    /// [`ConnTrack::age`] calling `reclaimed(key, payload)` for every entry it frees.
    /// Never inlined: the nodes call it once per vector, and its settle check (see the
    /// module doc, "Time") would otherwise sit in their vector functions.
    #[inline(never)]
    pub fn age_with(
        &mut self,
        now: u64,
        max_scan: usize,
        mut reclaimed: impl FnMut(&FlowKey, &T),
    ) -> usize {
        let mut freed = 0;
        // Before the early return: an empty table settles too (at no cost), so that entries
        // inserted after a long pause are settled against a recent unit.
        let now = self.clock(now);
        if self.len == 0 {
            return 0;
        }
        for _ in 0..max_scan {
            let i = self.cursor;
            if self.tag(i) == TAG_EMPTY {
                self.cursor = (i + 1) & self.mask;
                continue;
            }
            let s = &self.slots[i];
            if !live(s.expires, now) {
                reclaimed(&s.key, &s.payload);
                // The backward shift may pull a later entry into slot i: look at it again.
                self.delete_at(i);
                freed += 1;
            } else {
                self.cursor = (i + 1) & self.mask;
            }
        }
        self.stats.expired += freed as u64;
        freed
    }

    /// [`ConnTrack::age_with`], examining only as many slots as keep one sweep of the table
    /// within the shortest idle timeout / [`SWEEPS_PER_TIMEOUT`] at the rate this is called
    /// (from the ticks since the previous call): at least [`MIN_PACED_SCAN`], at most
    /// `max_scan`. Meant for every poll or vector: a busy worker then spends a few slots per
    /// call on aging instead of `max_scan` (measured in the vhost benchmark's full pipeline,
    /// 100k flows in a 524,288-slot table, where it examines 8 slots per vector instead of
    /// 64; 4 interleaved runs each: the `lb` node's median 93.3 -> 86.5 cycles/packet).
    #[inline]
    pub fn age_paced_with(
        &mut self,
        now: u64,
        max_scan: usize,
        reclaimed: impl FnMut(&FlowKey, &T),
    ) -> usize {
        let elapsed = now.saturating_sub(self.aged_at);
        self.aged_at = now;
        let scan = paced_scan(self.slots.len(), elapsed, self.sweep_ticks, max_scan);
        self.age_with(now, scan, reclaimed)
    }

    /// Calls `f` for every occupied slot among `from .. from + max_slots` (clipped to
    /// [`ConnTrack::slot_count`]), live or expired (`times.left == 0`), with its times at
    /// tick `now`; empty slots cost a read of their tag only. Returns the next slot to scan
    /// ([`ConnTrack::slot_count`] once the sweep is done). Read-only, counts nothing (for
    /// control-plane sampling, see [`crate::ct_sample`]). A sweep spread over several calls
    /// while the table changes may miss or repeat an entry that a deletion's backward shift
    /// moved across the cursor, and sees entries inserted behind it only in the next sweep.
    pub fn scan(
        &self,
        from: usize,
        max_slots: usize,
        now: u64,
        mut f: impl FnMut(ScanEntry<'_, T>),
    ) -> usize {
        let end = from.saturating_add(max_slots).min(self.slots.len());
        for i in from..end {
            if self.tag(i) == TAG_EMPTY {
                continue;
            }
            let s = &self.slots[i];
            f(ScanEntry {
                key: &s.key,
                state: ConnState::from_code(s.state),
                times: self.times_of(s, now),
                packets: s.packets,
                payload: &s.payload,
            });
        }
        end.max(from.min(self.slots.len()))
    }

    /// Removes every entry (keeps the counters).
    pub fn clear(&mut self) {
        self.slots.fill(Slot::empty());
        self.tags.fill(TAG_EMPTY);
        self.len = 0;
        self.cursor = 0;
    }

    /// Backward-shift deletion (Knuth's algorithm R) of the entry in `hole`.
    fn delete_at(&mut self, mut hole: usize) {
        let mask = self.mask;
        let mut j = hole;
        loop {
            j = (j + 1) & mask;
            if self.tag(j) == TAG_EMPTY {
                break;
            }
            let s = &self.slots[j];
            let gap = j.wrapping_sub(hole) & mask;
            let d = s.dist as usize;
            if d >= gap {
                let mut e = *s;
                e.dist = (d - gap) as u8;
                self.slots[hole] = e;
                self.set_tag(hole, self.tag(j));
                hole = j;
            }
        }
        self.slots[hole] = Slot::empty();
        self.set_tag(hole, TAG_EMPTY);
        self.len -= 1;
    }

    #[cfg(test)]
    fn check_invariants(&self) {
        let mut n = 0;
        for m in 0..TAG_WINDOW {
            assert_eq!(
                self.tags[self.tag_off + self.slots.len() + m],
                self.tag(m & self.mask),
                "tag copy {m} past the end"
            );
        }
        for (i, s) in self.slots.iter().enumerate() {
            assert_eq!(
                self.tag(i) == TAG_EMPTY,
                s.state == ST_EMPTY,
                "slot {i}: tag and state disagree on emptiness"
            );
            if s.state == ST_EMPTY {
                continue;
            }
            n += 1;
            assert_eq!(
                self.tag(i),
                tag_of(s.key.symmetric_hash()),
                "slot {i}: wrong tag"
            );
            let home = s.key.symmetric_hash() as usize & self.mask;
            assert_eq!(
                (i.wrapping_sub(home)) & self.mask,
                s.dist as usize,
                "slot {i}: wrong dist"
            );
            assert!((s.dist as usize) < self.max_probe);
            for k in 0..s.dist as usize {
                assert_ne!(
                    self.slots[(home + k) & self.mask].state,
                    ST_EMPTY,
                    "hole in probe path of slot {i}"
                );
            }
        }
        assert_eq!(n, self.len);
        assert!(self.len <= self.capacity);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow_key::{PROTO_ICMP, PROTO_UDP};
    use proptest::prelude::*;
    use std::collections::HashMap;

    const TMO: Timeouts = Timeouts {
        udp: 50,
        tcp_established: 300,
        tcp_transient: 20,
        other: 10,
    };

    fn tcp(i: u32) -> FlowKey {
        FlowKey::v4(
            [10, 0, (i >> 8) as u8, i as u8],
            [10, 9, 9, 9],
            1000 + (i % 50000) as u16,
            80,
            PROTO_TCP,
        )
    }

    fn udp6(i: u32) -> FlowKey {
        let mut s = [0u8; 16];
        s[0] = 0x20;
        s[12..].copy_from_slice(&i.to_be_bytes());
        FlowKey::v6(s, [0xfd; 16], 5000, 53, PROTO_UDP)
    }

    #[test]
    fn slot_is_one_cache_line() {
        assert_eq!(std::mem::size_of::<Slot<u32>>(), 64);
        assert_eq!(std::mem::size_of::<Slot<u64>>(), 64);
        assert_eq!(std::mem::size_of::<Slot<[u32; 3]>>(), 64);
        assert_eq!(std::mem::size_of::<Slot<[u8; 12]>>(), 64);
        assert_eq!(
            std::mem::size_of::<Slot<crate::lb::NatEntry>>(),
            64,
            "the lb's entries"
        );
        assert_eq!(std::mem::align_of::<Slot<u8>>(), 64);
        assert_eq!(std::mem::size_of::<Slot<[u8; 13]>>(), 128);
        assert_eq!(std::mem::size_of::<Slot<[u64; 3]>>(), 128);
    }

    /// The tick at which `h` expires unless refreshed (a live entry, at tick `now`).
    fn expiry(ct: &ConnTrack<impl Copy + Default>, h: Handle, now: u64) -> u64 {
        now + ct.times(h, now).unwrap().left
    }

    #[test]
    fn scan_sees_every_occupied_slot_once_in_bounded_steps() {
        let mut ct = ConnTrack::<u32>::with_capacity(100, TMO);
        for i in 0..60 {
            ct.insert(&tcp(i), 0, i).unwrap();
        }
        for i in 0..20 {
            ct.insert(&udp6(i), 5, 1000 + i).unwrap();
        }
        let h = ct.lookup(&tcp(7).reversed(), 1).unwrap().0;
        ct.update_tcp(h, TcpFlags(TcpFlags::SYN), Direction::Original, 1);
        ct.update_tcp(
            h,
            TcpFlags(TcpFlags::SYN | TcpFlags::ACK),
            Direction::Reply,
            1,
        );
        // In steps of 37 slots: each call returns where it stopped, the last the slot count.
        let (mut at, mut calls, mut seen) = (0, 0, Vec::new());
        while at < ct.slot_count() {
            let next = ct.scan(at, 37, 12, |e| {
                seen.push((*e.key, *e.payload, e.state, e.times, e.packets))
            });
            assert_eq!(next, (at + 37).min(ct.slot_count()));
            at = next;
            calls += 1;
        }
        assert_eq!(calls, ct.slot_count().div_ceil(37));
        assert_eq!(
            ct.scan(at, 37, 12, |_| panic!("past the end")),
            ct.slot_count()
        );
        assert_eq!(seen.len(), 80);
        seen.sort_by_key(|e| e.1);
        for (i, (k, p, st, times, packets)) in seen.iter().enumerate() {
            let i = i as u32;
            assert_eq!(*p, if i < 60 { i } else { 1000 + i - 60 });
            let want = if i < 60 { tcp(i) } else { udp6(i - 60) };
            assert_eq!(
                *k, want,
                "the originator's key, also for an entry hit in reply"
            );
            // At tick 12: (state, left, idle, age, packets).
            let t = |left, idle, age| EntryTimes { left, idle, age };
            let want = match i {
                // Created at 0, hit at 1 (a packet), established at 1.
                7 => (ConnState::TcpEstablished, t(1 + 300 - 12, 11, 12), 2),
                0..=59 => (ConnState::TcpSynSeen, t(20 - 12, 12, 12), 1),
                _ => (ConnState::Udp, t(5 + 50 - 12, 7, 7), 1),
            };
            assert_eq!((*st, *times, *packets), want, "entry {i}");
        }
        // Expired entries are shown too, with nothing left.
        let mut expired = Vec::new();
        ct.scan(0, ct.slot_count(), 30, |e| {
            if e.times.left == 0 {
                expired.push((*e.payload, e.times.idle, e.times.age))
            }
        });
        expired.sort();
        assert_eq!(expired.len(), 59);
        assert_eq!(expired[0], (0, 30, 30));
        // Read-only: nothing counted, nothing refreshed.
        assert_eq!((ct.stats().hits, ct.stats().misses), (1, 0));
    }

    #[test]
    fn packets_count_each_packet_once_and_saturate() {
        let mut ct = ConnTrack::<u32>::with_capacity(64, TMO);
        let k = tcp(1);
        let h = ct.insert(&k, 0, 7).unwrap();
        assert_eq!(ct.packets(h), Some(1), "the creating packet");
        for t in 1..=3 {
            assert!(ct.lookup(&k, t).is_some());
        }
        let mut out = [None; 2];
        assert_eq!(ct.lookup_batch(&[k.reversed(), tcp(2)], 4, &mut out), 1);
        assert_eq!(
            ct.packets(h),
            Some(5),
            "hits both ways; a miss counts nowhere"
        );
        // A TCP update refreshes but is not a packet of its own; peeks count nothing.
        ct.update_tcp(h, TcpFlags(TcpFlags::SYN), Direction::Original, 5);
        assert!(ct.peek(&k, 5).is_some());
        assert_eq!(ct.packets(h), Some(5));
        // An insert that finds the live entry is a packet its lookup missed.
        assert_eq!(ct.insert(&k, 6, 9), Err(InsertError::Exists(h)));
        assert_eq!(ct.packets(h), Some(6));
        // An expired entry's lookup is a miss; a new insert starts the count again.
        assert!(ct.lookup(&k, 6 + TMO.tcp_transient).is_none());
        assert_eq!(ct.packets(h), Some(6));
        let h2 = ct.insert(&k, 100, 8).unwrap();
        assert_eq!((h2, ct.packets(h2)), (h, Some(1)));
        assert_eq!(ct.times(h2, 110).map(|t| t.age), Some(10));
        // Saturates instead of wrapping.
        ct.slots[h2.index()].packets = u32::MAX - 1;
        for t in 111..114 {
            assert!(ct.lookup(&k, t).is_some());
        }
        assert_eq!(ct.packets(h2), Some(u32::MAX));
    }

    #[test]
    fn times_follow_the_entry_through_refreshes_and_state_changes() {
        let mut ct = ConnTrack::<u32>::with_capacity(64, TMO);
        let k = tcp(3);
        let h = ct.insert(&k, 10, 1).unwrap();
        let t = |left, idle, age| Some(EntryTimes { left, idle, age });
        assert_eq!(ct.times(h, 10), t(20, 0, 0));
        assert_eq!(ct.times(h, 15), t(15, 5, 5));
        ct.lookup(&k, 16);
        ct.update_tcp(h, TcpFlags(TcpFlags::SYN), Direction::Original, 16);
        ct.update_tcp(
            h,
            TcpFlags(TcpFlags::SYN | TcpFlags::ACK),
            Direction::Reply,
            18,
        );
        // Established at 18: the long timeout, idle from there, age from 10.
        assert_eq!(ct.times(h, 25), t(300 - 7, 7, 15));
        // Expired: nothing left, idle and age go on.
        assert_eq!(ct.times(h, 18 + 300 + 5), t(0, 305, 313));
        assert_eq!(ct.times(Handle::from_index(9999), 0), None);
    }

    #[test]
    fn coarse_units_never_expire_early_and_at_most_two_units_late() {
        // Milliseconds with the default timeouts: the shortest (30 s) / 256 is 117 ms, so
        // the unit is 64 ms; the longest (24 h) is 1.35M units.
        let tmo = Timeouts::vpp_defaults(1000);
        let mut ct = ConnTrack::<u32>::with_capacity(64, tmo);
        assert_eq!(ct.unit_ticks(), 64);
        let unit = ct.unit_ticks();
        // Every phase of the unit, including its first and last tick.
        for (i, t0) in [0u64, 1, 31, 62, 63, 64, 1_000_000_007]
            .into_iter()
            .enumerate()
        {
            let k = udp6(i as u32);
            let h = ct.insert(&k, t0, 0).unwrap();
            let end = t0 + tmo.udp;
            assert!(ct.peek(&k, end - 1).is_some(), "t0 {t0}: expired early");
            assert!(ct.peek(&k, end + 2 * unit).is_none(), "t0 {t0}: too late");
            let left = ct.times(h, t0).unwrap().left;
            assert!(
                (tmo.udp..=tmo.udp + 2 * unit).contains(&left),
                "t0 {t0}: {left}"
            );
            // Idle and age: never less than the exact time, at most a unit more.
            let x = ct.times(h, t0 + 5_000).unwrap();
            assert!((5_000..5_000 + unit).contains(&x.age), "t0 {t0}: {x:?}");
            assert!(x.idle <= x.age);
            ct.remove(&k, t0);
        }
    }

    #[test]
    fn expiry_compares_across_the_u32_wrap_of_units() {
        let mut ct = ConnTrack::<u32>::with_capacity(64, TMO);
        assert_eq!(ct.unit_ticks(), 1);
        let t0 = (1u64 << 32) - 5;
        let k = udp6(1);
        let h = ct.insert(&k, t0, 1).unwrap();
        // Expires at t0 + 50, past the wrap of the stored u32.
        assert!(ct.lookup(&k, t0 + 49).is_some());
        assert_eq!(
            ct.times(h, t0 + 60),
            Some(EntryTimes {
                left: 39,
                idle: 11,
                age: 60
            })
        );
        assert!(ct.lookup(&k, t0 + 49 + 50).is_none());
        assert_eq!(ct.age(t0 + 100, ct.slot_count()), 1);
    }

    #[test]
    fn a_long_pause_settles_expired_entries_before_the_compare_could_wrap() {
        // One-tick units, a 2^27-tick established timeout: settled every 2^30 ticks.
        let tmo = Timeouts {
            tcp_established: 1 << 27,
            ..TMO
        };
        let mut ct = ConnTrack::<u32>::with_capacity(64, tmo);
        assert_eq!(ct.unit_ticks(), 1);
        let (u, t) = (udp6(1), tcp(1));
        ct.insert(&u, 0, 1).unwrap();
        let h = ct.insert(&t, 0, 2).unwrap();
        ct.update_tcp(h, TcpFlags(TcpFlags::ACK), Direction::Original, 0);
        assert_eq!(ct.state(h), Some(ConnState::TcpEstablished));
        // Refreshed every 2^26 ticks, below the 2^30 of a settle.
        for i in 1..16 {
            assert!(ct.lookup(&t, i << 26).is_some());
        }
        let t1 = (1 << 30) - 100;
        assert!(ct.lookup(&t, t1).is_some());
        // Settled by the batched lookup at t2: the UDP entry, long expired, is marked
        // expired; the TCP one lives.
        let t2 = (1 << 30) + 5;
        let mut out = [None; 2];
        assert_eq!(ct.lookup_batch(&[u, t], t2, &mut out), 1);
        assert_eq!(out[0], None);
        assert_eq!(ct.len(), 2, "marked, not reclaimed");
        // 2^32 + 1000 ticks later (no call between): the stored u32s alone would read the
        // TCP entry as live again (as a single lookup, which does not settle, does);
        // settling first finds both expired, and aging reports both payloads.
        let t3 = t2 + (1 << 32) + 1000;
        assert!(
            ct.peek(&t, t3).is_some(),
            "(a read-only peek cannot settle)"
        );
        assert_eq!(ct.lookup_batch(&[t], t3, &mut out), 0);
        let mut gone = Vec::new();
        assert_eq!(
            ct.age_with(t3, ct.slot_count() * 2, |_, p| gone.push(*p)),
            2
        );
        gone.sort();
        assert_eq!(gone, [1, 2]);
        ct.check_invariants();
    }

    #[test]
    fn an_empty_table_settles_when_aged_so_later_entries_are_judged_right() {
        let tmo = Timeouts {
            tcp_established: 1 << 27,
            ..TMO
        };
        let mut ct = ConnTrack::<u32>::with_capacity(64, tmo);
        // Long after the table was made (and last settled, at 0): aging the empty table
        // settles it; an entry inserted then stays live across the next settle.
        let t0 = 5u64 << 32;
        assert_eq!(ct.age(t0, 8), 0);
        let k = tcp(9);
        let h = ct.insert(&k, t0, 1).unwrap();
        ct.update_tcp(h, TcpFlags(TcpFlags::ACK), Direction::Original, t0);
        let mut out = [None];
        for i in 1..=17u64 {
            assert_eq!(ct.lookup_batch(&[k], t0 + (i << 26), &mut out), 1, "{i}");
        }
    }

    #[test]
    fn unit_is_a_fraction_of_the_shortest_timeout_and_fits_the_longest() {
        let t = |short: u64, long: u64| Timeouts {
            udp: short,
            other: short,
            tcp_transient: short,
            tcp_established: long,
        };
        assert_eq!(unit_shift(&TMO), 0);
        assert_eq!(unit_shift(&t(255, 1000)), 0);
        assert_eq!(unit_shift(&t(512, 1000)), 1);
        // A 2.6 GHz clock, the defaults: 2^28 ticks (0.1 s).
        let hz = 2_600_000_000;
        assert_eq!(unit_shift(&Timeouts::vpp_defaults(hz)), 28);
        // A longest timeout far beyond the shortest makes the unit coarser.
        assert_eq!(unit_shift(&t(1, 1 << 40)), 40 - LONGEST_TIMEOUT_BITS + 1);
        assert_eq!(unit_shift(&t(0, 0)), 0);
        assert_eq!(timeout_units(100, 0), 100);
        assert_eq!(timeout_units(128, 6), 3);
        assert_eq!(timeout_units(129, 6), 4);
    }

    #[test]
    fn geometry() {
        let ct = ConnTrack::<u32>::with_capacity(1000, TMO);
        assert_eq!(
            (ct.capacity(), ct.slot_count(), ct.memory_bytes()),
            (1000, 2048, 2048 * 65 + 8)
        );
        let ct = ConnTrack::<u32>::with_capacity(0, TMO);
        assert_eq!((ct.capacity(), ct.slot_count()), (1, 2));
        assert_eq!(
            Timeouts::vpp_defaults(1000),
            Timeouts {
                udp: 600_000,
                tcp_established: 86_400_000,
                tcp_transient: 120_000,
                other: 30_000
            }
        );
    }

    #[test]
    fn bidirectional_lookup() {
        let mut ct = ConnTrack::<u32>::with_capacity(64, TMO);
        let k = tcp(1);
        let h = ct.insert(&k, 0, 7).unwrap();
        let (h1, d1, p) = ct.lookup(&k, 1).unwrap();
        assert_eq!((h1, d1, *p), (h, Direction::Original, 7));
        *p = 8;
        let (h2, d2, p) = ct.lookup(&k.reversed(), 2).unwrap();
        assert_eq!((h2, d2, *p), (h, Direction::Reply, 8));
        assert_eq!(ct.key(h), Some(&k));
        assert!(ct.lookup(&tcp(2), 2).is_none());
        // Same ports/addresses, other protocol: a different flow.
        let mut u = k;
        u.proto = PROTO_UDP;
        assert!(ct.lookup(&u, 2).is_none());
        // Insert from the reply side finds the live entry.
        assert_eq!(ct.insert(&k.reversed(), 3, 9), Err(InsertError::Exists(h)));
        let v6 = udp6(5);
        let h6 = ct.insert(&v6.reversed(), 3, 1).unwrap();
        assert_eq!(
            ct.lookup(&v6, 4).map(|(h, d, _)| (h, d)),
            Some((h6, Direction::Reply))
        );
        assert_eq!(ct.stats().hits, 3);
        assert_eq!(ct.stats().misses, 2);
        assert_eq!(ct.remove(&k.reversed(), 5), Some(8));
        assert!(ct.lookup(&k, 5).is_none());
        assert_eq!(ct.len(), 1);
        ct.check_invariants();
    }

    #[test]
    fn udp_and_other_timeouts_and_refresh() {
        let mut ct = ConnTrack::<u8>::with_capacity(16, TMO);
        let u = udp6(1);
        let i = FlowKey::v4([1, 1, 1, 1], [2, 2, 2, 2], 77, 0, PROTO_ICMP);
        let hu = ct.insert(&u, 100, 1).unwrap();
        let hi = ct.insert(&i, 100, 2).unwrap();
        assert_eq!(
            (ct.state(hu), ct.state(hi)),
            (Some(ConnState::Udp), Some(ConnState::Other))
        );
        assert_eq!((expiry(&ct, hu, 100), expiry(&ct, hi, 100)), (150, 110));
        assert!(ct.lookup(&i, 109).is_some()); // refresh: now expires at 119
        assert!(ct.lookup(&i, 118).is_some());
        assert!(ct.lookup(&i, 128).is_none()); // idle > 10
        assert!(ct.peek(&u, 149).is_some());
        assert!(ct.lookup(&u, 150).is_none());
        assert_eq!(ct.len(), 2); // expired but not reclaimed yet
                                 // Expired twin is reused in place by a new insert.
        let hu2 = ct.insert(&u, 151, 3).unwrap();
        assert_eq!(hu2, hu);
        assert_eq!(ct.len(), 2);
        assert_eq!(ct.stats().expired, 1);
        assert_eq!(ct.age(1000, ct.slot_count()), 2);
        assert!(ct.is_empty());
        ct.check_invariants();
    }

    #[test]
    fn tcp_state_machine_and_timeouts() {
        use Direction::*;
        const S: u8 = TcpFlags::SYN;
        const A: u8 = TcpFlags::ACK;
        const F: u8 = TcpFlags::FIN;
        const R: u8 = TcpFlags::RST;
        let mut ct = ConnTrack::<()>::with_capacity(16, TMO);
        let k = tcp(3);
        let h = ct.insert(&k, 0, ()).unwrap();
        let mut step =
            |f: u8, d: Direction, now: u64| ct.update_tcp(h, TcpFlags(f), d, now).unwrap();
        assert_eq!(step(S, Original, 0), ConnState::TcpSynSeen);
        assert_eq!(step(S | A, Reply, 1), ConnState::TcpEstablished);
        assert_eq!(step(A, Original, 2), ConnState::TcpEstablished);
        assert_eq!(expiry(&ct, h, 2), 2 + 300);
        assert!(ct.lookup(&k, 301).is_some()); // established: long timeout, refreshed
        assert_eq!(
            ct.update_tcp(h, TcpFlags(F | A), Reply, 310),
            Some(ConnState::TcpFinSeen)
        );
        assert_eq!(expiry(&ct, h, 310), 330);
        assert_eq!(
            ct.update_tcp(h, TcpFlags(A), Original, 311),
            Some(ConnState::TcpFinSeen)
        );
        assert_eq!(
            ct.update_tcp(h, TcpFlags(F | A), Original, 312),
            Some(ConnState::TcpClosed)
        );
        assert_eq!(
            ct.update_tcp(h, TcpFlags(A), Reply, 313),
            Some(ConnState::TcpClosed)
        );
        assert!(ct.lookup(&k, 332).is_some());
        assert!(ct.lookup(&k, 353).is_none()); // closed: transient timeout
                                               // Port reuse: a new SYN on a closed entry restarts the handshake.
        let k2 = tcp(4);
        let h2 = ct.insert(&k2, 400, ()).unwrap();
        assert_eq!(
            ct.update_tcp(h2, TcpFlags(R), Reply, 400),
            Some(ConnState::TcpClosed)
        );
        assert_eq!(
            ct.update_tcp(h2, TcpFlags(S), Original, 401),
            Some(ConnState::TcpSynSeen)
        );
        assert_eq!(expiry(&ct, h2, 401), 421);
        assert!(ct.lookup(&k2, 421).is_none()); // handshake never completed
                                                // Mid-stream pickup: first packet is a plain ACK.
        let k3 = tcp(5);
        let h3 = ct.insert(&k3, 500, ()).unwrap();
        assert_eq!(
            ct.update_tcp(h3, TcpFlags(A | TcpFlags::PSH), Reply, 500),
            Some(ConnState::TcpEstablished)
        );
        // SYN only from one side stays transient; RST from established closes.
        let k4 = tcp(6);
        let h4 = ct.insert(&k4, 600, ()).unwrap();
        assert_eq!(
            ct.update_tcp(h4, TcpFlags(S), Original, 600),
            Some(ConnState::TcpSynSeen)
        );
        assert_eq!(
            ct.update_tcp(h4, TcpFlags(A), Original, 601),
            Some(ConnState::TcpSynSeen)
        );
        assert_eq!(
            ct.update_tcp(h4, TcpFlags(S | A), Reply, 602),
            Some(ConnState::TcpEstablished)
        );
        assert_eq!(
            ct.update_tcp(h4, TcpFlags(R | A), Original, 603),
            Some(ConnState::TcpClosed)
        );
        // UDP entries ignore TCP flags.
        let hu = ct.insert(&udp6(1), 700, ()).unwrap();
        assert_eq!(
            ct.update_tcp(hu, TcpFlags(R), Original, 700),
            Some(ConnState::Udp)
        );
        ct.check_invariants();
    }

    #[test]
    fn full_table_refuses_and_counts() {
        let mut ct = ConnTrack::<u32>::with_capacity(4, TMO);
        for i in 0..4 {
            ct.insert(&tcp(i), 0, i).unwrap();
        }
        assert_eq!(ct.insert(&tcp(10), 0, 10), Err(InsertError::Full));
        assert_eq!(ct.insert(&tcp(11), 1, 11), Err(InsertError::Full));
        assert_eq!(ct.stats().full_drops, 2);
        for i in 0..4 {
            assert_eq!(
                ct.lookup(&tcp(i), 1).map(|x| *x.2),
                Some(i),
                "live entry evicted"
            );
        }
        // Once entries expire (transient timeout 20) the same flow can come back in place,
        // and after aging new flows fit again.
        ct.lookup(&tcp(0), 15);
        assert_eq!(
            ct.insert(&tcp(1), 25, 100).map(|h| *ct.payload(h).unwrap()),
            Ok(100)
        );
        assert_eq!(ct.len(), 4);
        assert_eq!(ct.age(25, 2 * ct.slot_count()), 2);
        assert!(ct.insert(&tcp(12), 25, 12).is_ok());
        assert!(ct.insert(&tcp(13), 25, 13).is_ok());
        assert_eq!(ct.insert(&tcp(14), 25, 14), Err(InsertError::Full));
        assert!(ct.lookup(&tcp(0), 25).is_some(), "refreshed entry kept");
        ct.check_invariants();
        assert_eq!(ct.stats().full_drops, 3);
    }

    #[test]
    fn aging_is_bounded_and_complete() {
        let n = 10_000u32;
        let mut ct = ConnTrack::<u32>::with_capacity(n as usize, TMO);
        for i in 0..n {
            // Even: UDP (timeout 50); odd: TCP established (timeout 300).
            if i % 2 == 0 {
                ct.insert(&udp6(i), 0, i).unwrap();
            } else {
                let h = ct.insert(&tcp(i), 0, i).unwrap();
                ct.update_tcp(h, TcpFlags(TcpFlags::ACK), Direction::Original, 0);
            }
        }
        assert_eq!(ct.age(10, ct.slot_count()), 0);
        let per_call = 1000;
        let mut total = 0;
        let mut calls = 0;
        while total < (n / 2) as usize {
            let f = ct.age(100, per_call);
            assert!(f <= per_call);
            total += f;
            calls += 1;
            // One sweep: every slot once plus one re-examination per freed entry.
            assert!(
                calls <= (ct.slot_count() + (n / 2) as usize) / per_call + 1,
                "aging did not finish in one sweep"
            );
        }
        assert_eq!(total, (n / 2) as usize);
        assert_eq!(ct.len(), (n / 2) as usize);
        ct.check_invariants();
        for i in (1..n).step_by(2) {
            assert!(ct.peek(&tcp(i), 100).is_some());
        }
        total = 0;
        for _ in 0..=(ct.slot_count() + (n / 2) as usize) / per_call {
            total += ct.age(1000, per_call);
        }
        assert_eq!(total, (n / 2) as usize);
        assert!(ct.is_empty());
        assert_eq!(ct.stats().expired, n as u64);
    }

    #[test]
    fn paced_scan_share_bounds() {
        // A call 1/8 of a sweep after the previous one examines 1/8 of the slots.
        assert_eq!(paced_scan(1 << 20, 125, 1000, usize::MAX), 1 << 17);
        // Rounded up; never fewer than MIN_PACED_SCAN, never more than max_scan.
        assert_eq!(paced_scan(1000, 1, 3, 1000), 334);
        assert_eq!(paced_scan(1 << 20, 0, 1000, 64), MIN_PACED_SCAN);
        assert_eq!(paced_scan(1 << 20, 1, 1 << 40, 64), MIN_PACED_SCAN);
        assert_eq!(paced_scan(1 << 20, 999, 1000, 64), 64);
        assert_eq!(paced_scan(1 << 20, u64::MAX, 1000, 64), 64);
        assert_eq!(paced_scan(1 << 20, 0, 1000, 3), 3);
        // Shortest timeout 10 ticks: a sweep per tick (never 0).
        assert_eq!(sweep_ticks(&TMO), 1);
    }

    #[test]
    fn paced_aging_sweeps_within_an_eighth_of_the_shortest_timeout() {
        // Shortest timeout 8000 ticks: one sweep per 1000 ticks.
        let tmo = Timeouts {
            udp: 8000,
            tcp_established: 80_000,
            tcp_transient: 9000,
            other: 8000,
        };
        let n = 4_000u32;
        let mut ct = ConnTrack::<u32>::with_capacity(n as usize, tmo);
        let sweep = sweep_ticks(&tmo);
        assert_eq!(sweep, 1000);
        let slots = ct.slot_count();
        for i in 0..n {
            ct.insert(&udp6(i), 0, i).unwrap();
        }
        // Called every 10 ticks from the expiry on: each call examines 1/100 of the slots
        // (so frees at most that many), and the table is empty within about one sweep
        // (plus the re-examinations of freed slots).
        let step = 10;
        let per_call = slots * step as usize / sweep as usize;
        let mut now = tmo.udp;
        ct.age_paced_with(now - step, 0, |_, _| {});
        let mut freed = 0;
        while freed < n as usize {
            let f = ct.age_paced_with(now, usize::MAX, |_, _| {});
            assert!(f <= per_call, "freed {f} in one call of {per_call} slots");
            freed += f;
            now += step;
            assert!(
                now <= tmo.udp + 2 * sweep,
                "not swept in time: {freed} of {n}"
            );
        }
        assert!(ct.is_empty());
        assert_eq!(ct.stats().expired, n as u64);
        // A clock that stands still still makes progress, MIN_PACED_SCAN slots per call.
        for i in 0..n {
            ct.insert(&udp6(i), now, i).unwrap();
        }
        // (Expired once two units of the table's clock past the timeout: 16 ticks each here.)
        assert_eq!(ct.unit_ticks(), 16);
        let later = now + tmo.udp + 2 * ct.unit_ticks();
        ct.age_paced_with(later, 0, |_, _| {});
        let mut calls = 0;
        while !ct.is_empty() {
            let f = ct.age_paced_with(later, 64, |_, _| {});
            assert!(f <= MIN_PACED_SCAN, "freed {f}");
            calls += 1;
            assert!(calls <= (slots + n as usize) / MIN_PACED_SCAN + 1);
        }
    }

    /// Keys sharing one home slot and one tag in a 128-slot table (the tag alone cannot
    /// tell them apart: every lookup must compare keys past the colliding slot).
    fn colliding_keys(n: usize) -> Vec<FlowKey> {
        let mut by_class: HashMap<(usize, u8), Vec<FlowKey>> = HashMap::new();
        for i in 0.. {
            let k = tcp(i);
            let h = k.symmetric_hash();
            let v = by_class.entry((h as usize & 127, tag_of(h))).or_default();
            v.push(k);
            if v.len() == n {
                return v.clone();
            }
        }
        unreachable!()
    }

    #[test]
    fn tag_collisions_compare_keys() {
        let mut ct = ConnTrack::<u32>::with_capacity(64, TMO);
        assert_eq!(ct.slot_count(), 128);
        let keys = colliding_keys(3);
        // Only the last two are stored: the first collides with both on the probe path.
        ct.insert(&keys[1], 0, 1).unwrap();
        ct.insert(&keys[2], 0, 2).unwrap();
        // Enough other flows for the batched lookup to walk the tags (load above 1/4).
        for i in 0..40 {
            let _ = ct.insert(&udp6(i), 0, 100);
        }
        assert!(ct.len() * SPARSE_LOAD_DIV > ct.slot_count());
        ct.check_invariants();
        let queries = [keys[0], keys[2], keys[1].reversed(), keys[2].reversed()];
        let mut out = [None; 4];
        assert_eq!(ct.lookup_batch(&queries, 1, &mut out), 3);
        assert_eq!(out[0], None);
        let payloads: Vec<u32> = out[1..]
            .iter()
            .map(|o| *ct.payload(o.unwrap().0).unwrap())
            .collect();
        assert_eq!(payloads, [2, 1, 2]);
        assert_eq!(out[2].unwrap().1, Direction::Reply);
        assert!(matches!(
            ct.insert(&keys[2], 1, 9),
            Err(InsertError::Exists(_))
        ));
        // Removing the first of the pair shifts the second into its slot, tag and all.
        assert_eq!(ct.remove(&keys[1], 1), Some(1));
        ct.check_invariants();
        assert_eq!(ct.lookup(&keys[2], 1).map(|x| *x.2), Some(2));
        assert!(ct.lookup(&keys[1], 1).is_none());
        ct.insert(&keys[0], 1, 0).unwrap();
        ct.check_invariants();
        let mut out = [None; 2];
        assert_eq!(ct.lookup_batch(&keys[..2], 1, &mut out), 1);
        assert_eq!(*ct.payload(out[0].unwrap().0).unwrap(), 0);
    }

    #[test]
    fn batch_matches_single_lookups() {
        // 225 entries: at load 0.11 (sparse: no tags) and at 0.44 (tags).
        for capacity in [1000, 256] {
            batch_matches_single_lookups_at(capacity);
        }
    }

    fn batch_matches_single_lookups_at(capacity: usize) {
        let mut ct = ConnTrack::<u32>::with_capacity(capacity, TMO);
        let keys: Vec<FlowKey> = (0..300)
            .map(|i| if i % 3 == 0 { udp6(i) } else { tcp(i) })
            .collect();
        for (i, k) in keys.iter().enumerate().filter(|(i, _)| i % 4 != 0) {
            ct.insert(k, 0, i as u32).unwrap();
        }
        let queries: Vec<FlowKey> = keys
            .iter()
            .enumerate()
            .map(|(i, k)| if i % 2 == 0 { k.reversed() } else { *k })
            .collect();
        let mut out = vec![None; queries.len()];
        let hits = ct.lookup_batch(&queries, 1, &mut out);
        assert_eq!(hits, 225);
        for (i, (q, o)) in queries.iter().zip(&out).enumerate() {
            let single = ct.peek(q, 1).map(|(h, d, _)| (h, d));
            assert_eq!(*o, single, "query {i}");
            if let Some((h, d)) = o {
                assert_eq!(*ct.payload(*h).unwrap(), i as u32);
                assert_eq!(
                    *d,
                    if i % 2 == 0 {
                        Direction::Reply
                    } else {
                        Direction::Original
                    }
                );
            }
        }
        assert_eq!((ct.stats().hits, ct.stats().misses), (225, 75));
    }

    #[test]
    fn churn_keeps_invariants() {
        // Heavy insert/remove churn on a small, crowded table exercises backward shift
        // across the wrap-around point.
        let mut ct = ConnTrack::<u32>::with_capacity(32, TMO);
        let mut live = std::collections::HashSet::new();
        let mut x = 12345u64;
        for step in 0..20_000u64 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let k = (x % 48) as u32;
            if live.contains(&k) {
                assert_eq!(ct.remove(&tcp(k), 0), Some(k));
                live.remove(&k);
            } else {
                match ct.insert(&tcp(k), 0, k) {
                    Ok(_) => {
                        live.insert(k);
                    }
                    Err(e) => {
                        assert_eq!(e, InsertError::Full);
                        assert_eq!(live.len(), 32);
                    }
                }
            }
            if step % 1000 == 0 {
                ct.check_invariants();
            }
            assert_eq!(ct.len(), live.len());
        }
        for k in 0..48 {
            assert_eq!(ct.peek(&tcp(k), 0).is_some(), live.contains(&k));
        }
    }

    /// Key pool for the model test: TCP and UDP, v4 and v6, some sharing addresses.
    fn pool() -> Vec<FlowKey> {
        let mut v: Vec<FlowKey> = (0..8).map(tcp).collect();
        v.extend((0..6).map(udp6));
        v.push(FlowKey::v4([1, 1, 1, 1], [2, 2, 2, 2], 9, 0, PROTO_ICMP));
        v.push(FlowKey::v4(
            [10, 9, 9, 9],
            [10, 0, 0, 0],
            80,
            1000,
            PROTO_UDP,
        )); // reverse-ish of tcp(0), other proto
        v
    }

    #[derive(Debug, Clone)]
    enum Op {
        Insert(usize, bool, u32),
        Lookup(usize, bool),
        Remove(usize, bool),
        Tcp(usize, bool, u8),
        Advance(u64),
        Age(usize),
    }

    fn op() -> impl Strategy<Value = Op> {
        let n = pool().len();
        prop_oneof![
            3 => (0..n, any::<bool>(), any::<u32>()).prop_map(|(k, f, p)| Op::Insert(k, f, p)),
            4 => (0..n, any::<bool>()).prop_map(|(k, f)| Op::Lookup(k, f)),
            1 => (0..n, any::<bool>()).prop_map(|(k, f)| Op::Remove(k, f)),
            3 => (0..n, any::<bool>(), prop::sample::select(vec![0x02u8, 0x12, 0x10, 0x11, 0x01, 0x04, 0x14, 0x18])).prop_map(|(k, f, fl)| Op::Tcp(k, f, fl)),
            2 => (0u64..40).prop_map(Op::Advance),
            1 => (0usize..80).prop_map(Op::Age),
        ]
    }

    #[derive(Debug, Clone, Copy)]
    struct Model {
        flipped: bool,
        payload: u32,
        expires: u64,
        state: u8,
        seen: u8,
        created: u64,
        packets: u32,
    }

    fn run_model(ops: Vec<Op>, capacity: usize) -> Result<(), TestCaseError> {
        let keys = pool();
        let tmo = TMO.by_state();
        let mut ct = ConnTrack::<u32>::with_capacity(capacity, TMO);
        let mut model: HashMap<usize, Model> = HashMap::new();
        let (mut now, mut hits, mut misses) = (0u64, 0u64, 0u64);
        let key = |k: usize, f: bool| if f { keys[k].reversed() } else { keys[k] };
        let dir = |m: &Model, f: bool| {
            if m.flipped == f {
                Direction::Original
            } else {
                Direction::Reply
            }
        };
        for op in ops {
            match op {
                Op::Insert(k, f, p) => {
                    let live = model.get(&k).filter(|m| now < m.expires).copied();
                    let r = ct.insert(&key(k, f), now, p);
                    match (live, r) {
                        (Some(_), Err(InsertError::Exists(h))) => {
                            prop_assert_eq!(
                                ct.key(h).copied().map(|x| x.proto),
                                Some(keys[k].proto)
                            );
                            // The insert's packet is counted.
                            model.get_mut(&k).unwrap().packets += 1;
                        }
                        (None, Ok(h)) => {
                            let st = initial_state(keys[k].proto);
                            model.insert(
                                k,
                                Model {
                                    flipped: f,
                                    payload: p,
                                    expires: now + tmo[st as usize],
                                    state: st,
                                    seen: 0,
                                    created: now,
                                    packets: 1,
                                },
                            );
                            prop_assert_eq!(ct.payload(h), Some(&p));
                        }
                        (None, Err(InsertError::Full)) => {
                            prop_assert!(capacity < keys.len());
                            prop_assert_eq!(ct.len(), capacity);
                        }
                        (l, r) => prop_assert!(false, "insert {}: model {:?} real {:?}", k, l, r),
                    }
                }
                Op::Lookup(k, f) => {
                    let got = ct.lookup(&key(k, f), now).map(|(_, d, p)| (d, *p));
                    let want = match model.get_mut(&k) {
                        Some(m) if now < m.expires => {
                            m.expires = now + tmo[m.state as usize];
                            m.packets += 1;
                            hits += 1;
                            Some((dir(m, f), m.payload))
                        }
                        _ => {
                            misses += 1;
                            None
                        }
                    };
                    prop_assert_eq!(got, want);
                }
                Op::Remove(k, f) => {
                    let want = model
                        .remove(&k)
                        .filter(|m| now < m.expires)
                        .map(|m| m.payload);
                    prop_assert_eq!(ct.remove(&key(k, f), now), want);
                }
                Op::Tcp(k, f, fl) => {
                    let got = ct.lookup(&key(k, f), now).map(|(h, d, _)| (h, d));
                    let got = got.map(|(h, d)| ct.update_tcp(h, TcpFlags(fl), d, now).unwrap());
                    let want = match model.get_mut(&k) {
                        Some(m) if now < m.expires => {
                            hits += 1;
                            // The lookup counts the packet; the TCP update does not.
                            m.packets += 1;
                            let d = dir(m, f);
                            if (ST_SYN..=ST_CLOSED).contains(&m.state) {
                                m.state = tcp_next(m.state, &mut m.seen, TcpFlags(fl), d);
                            }
                            m.expires = now + tmo[m.state as usize];
                            Some(ConnState::from_code(m.state))
                        }
                        _ => {
                            misses += 1;
                            None
                        }
                    };
                    prop_assert_eq!(got, want);
                }
                Op::Advance(dt) => now += dt,
                Op::Age(max) => {
                    let before = ct.len();
                    let freed = ct.age(now, max);
                    prop_assert!(freed <= max);
                    prop_assert_eq!(ct.len(), before - freed);
                    // A whole sweep needs slot_count() + freed examinations (a slot is looked
                    // at again after a deletion), and freed <= capacity <= slot_count() / 2.
                    if max >= ct.slot_count() * 3 / 2 {
                        prop_assert_eq!(
                            ct.len(),
                            model.values().filter(|m| now < m.expires).count()
                        );
                    }
                }
            }
            // Every live model entry is present (never evicted), with the right payload.
            for (&k, m) in &model {
                if now < m.expires {
                    let got = ct.peek(&keys[k], now).map(|(h, d, p)| (h, d, *p));
                    prop_assert_eq!(
                        got.map(|(_, d, p)| (d, p)),
                        Some((dir(m, false), m.payload)),
                        "key {}",
                        k
                    );
                    // Packets, age, idle and time left, exact with one-tick units.
                    let h = got.unwrap().0;
                    prop_assert_eq!(ct.packets(h), Some(m.packets));
                    let tmo_now = tmo[m.state as usize];
                    prop_assert_eq!(
                        ct.times(h, now),
                        Some(EntryTimes {
                            left: m.expires - now,
                            idle: now - (m.expires - tmo_now),
                            age: now - m.created,
                        })
                    );
                } else {
                    prop_assert!(ct.peek(&keys[k], now).is_none());
                }
            }
            let live = model.values().filter(|m| now < m.expires).count();
            prop_assert!(ct.len() >= live && ct.len() <= capacity);
            prop_assert_eq!((ct.stats().hits, ct.stats().misses), (hits, misses));
            ct.check_invariants();
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        #[test]
        fn prop_matches_reference_model(ops in proptest::collection::vec(op(), 1..200)) {
            run_model(ops, 16)?;
        }

        #[test]
        fn prop_small_table_never_evicts_live(ops in proptest::collection::vec(op(), 1..200)) {
            run_model(ops, 5)?;
        }
    }

    #[test]
    fn tcp_next_is_total_and_closed_absorbs_non_syn() {
        for st in ST_SYN..=ST_CLOSED {
            for seen in (0..16u8).map(|s| s << 4) {
                for f in 0..=0x3fu8 {
                    for d in [Direction::Original, Direction::Reply] {
                        let mut s2 = seen;
                        let n = tcp_next(st, &mut s2, TcpFlags(f), d);
                        assert!((ST_SYN..=ST_CLOSED).contains(&n));
                        if f & TcpFlags::RST != 0 {
                            assert_eq!(n, ST_CLOSED);
                        }
                        if st == ST_CLOSED && f & TcpFlags::SYN == 0 {
                            assert_eq!(n, ST_CLOSED);
                        }
                        if st == ST_EST
                            && f & (TcpFlags::RST | TcpFlags::FIN) == 0
                            && seen & (SEEN_FIN_O | SEEN_FIN_R) == 0
                        {
                            assert_eq!(n, ST_EST);
                        }
                    }
                }
            }
        }
    }
}
