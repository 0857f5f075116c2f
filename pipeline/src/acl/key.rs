//! The classifier's view of a packet ([`AclKey`], one 64-byte buffer per packet), the
//! rte_acl field layout over it ([`V4_FIELDS`], [`V6_FIELDS`]), the compilation of flat
//! rules into per-field values ([`compile`]) and a software model of rte_acl that scans
//! the compiled rules ([`LinearClassifier`]). The [`Classify`] trait is what the ACL node
//! calls once per family per burst; the dataplane implements it over rte_acl.
//!
//! # Key layout (64 bytes, one cache line, multi-byte fields big-endian)
//!
//! | offset | size | field | rte_acl type | walked (wide layout) |
//! |---|---|---|---|---|
//! | 0 | 1 | IP protocol | BITMASK | first |
//! | 1 | 3 | zero padding | - | - |
//! | 4 | 4 | input-port classes, bits 0..32 | BITMASK | after the addresses |
//! | 8 | 4 | input-port classes, bits 32..64 | BITMASK | " |
//! | 12 | 4 | output-port classes, bits 0..32 | BITMASK | " |
//! | 16 | 4 | output-port classes, bits 32..64 | BITMASK | " |
//! | 20 | 2 | L4 word A: TCP/UDP source port, or ICMP type | RANGE | last |
//! | 22 | 2 | L4 word B: TCP/UDP destination port, or ICMP code | RANGE | last |
//! | 24 | 16 | source address (IPv4: bytes 24..28) | MASK (1 or 4 x 32 bits) | second |
//! | 40 | 16 | destination address (IPv4: bytes 40..44) | MASK | third |
//! | 56 | 1 | input-port classes, bits 0..8 (compact layout) | BITMASK | - |
//! | 57 | 1 | output-port classes, bits 0..8 (compact layout) | BITMASK | - |
//! | 58 | 2 | L4 word B again (compact layout) | RANGE | - |
//! | 60 | 2 | source set classes, bits 0..16 | BITMASK | last |
//! | 62 | 2 | destination set classes, bits 0..16 | BITMASK | last |
//!
//! Every layout walks the protocol, the addresses, then the port groups: prefixes above
//! port ranges keep the trie small (see `layout`).
//!
//! **Narrow layout**: when the rules use at most 16 port references, the port classes fit one
//! 4-byte group: bytes 4..6 input-port classes, 6..8 output-port classes (two 2-byte
//! BITMASK fields), then the L4 group; bytes 8..20 are not read. Every byte of a group is
//! one trie transition in rte_acl, so the narrow IPv4 layout walks 17 bytes instead of 29.
//!
//! **Compact layout**: when the rules use at most 8 port references, both class bytes and
//! L4 word B (the destination port, or ICMP code) share the 4-byte group at 56, and the
//! group at 20 keeps word A only (its word B field is always a wildcard there), so a
//! security group rule on a port group, a destination port and one address walks 9 bytes.
//!
//! **Packed layout**: when the rules use at most 3 port references and at most 3 distinct
//! protocols (every protocol match exact or absent), byte 0 carries both: bits 0..2 a
//! protocol code (the rules' protocols numbered 1..=3 in [`ProtoMap`], every other protocol
//! 0), bits 2..5 the input-port classes, bits 5..8 the output-port classes (one BITMASK
//! field). Both L4 words then sit in the group at 20, so a rule set matching source and
//! destination addresses, both L4 ports and port groups walks 13 bytes instead of 17.
//!
//! **Elided groups**: a 4-byte group that no rule of a family constrains (every rule has
//! the full range, prefix length 0 or bitmask 0 in all of its fields) is left out of that
//! family's rte_acl layout ([`CompiledAcl::fields`]), so the trie never walks it; the key
//! keeps its offsets and the bytes are simply not read. rte_acl's walk costs about the same
//! per byte of every group in the trie (measured on AVX512: about 8 + 2.6 cycles per byte
//! walked), so a compact security-group rule set (port group, destination port, source
//! address set) walks 9 bytes instead of 17.
//!
//! rte_acl reads its input 4 bytes at a time at each input index's offset (after the
//! first byte); every group above is a full 4-byte word inside the 64-byte key (the last
//! one, the compact group, ends at byte 60), so no read ever leaves the key.
//!
//! **Port classes**: every port reference used by any flat rule (a port group, or a port
//! by name) gets a bit; a port's bitmask has the bits of the references it satisfies. A
//! rule's `require` refs become `value = mask = bit`, its `exclude` refs `mask = bit,
//! value = 0`. At most 64 distinct references.
//!
//! **Set classes**: a large address set matched by membership ([`super::expand::SetClasses`])
//! has a bit in the group at 60: the source address's set-class bitmask in bytes 60..62, the
//! destination's in 62..64, filled per burst by [`super::members::MemberTable::fill_keys`]
//! after the rest of the keys. The group is the last of every layout and elided when no
//! rule names a set class, so rule sets without large sets walk and write nothing more.
//! The group is a 4-byte step more in the walk (the realistic bench set: 13 -> 17 bytes),
//! and the node's lookups come before the verdict cache (its key holds the bits): measured
//! 20-45 cycles per packet more than the expanded set on this machine (`acl-bench
//! --realistic`, `_classes` against `_expanded`), which is why sets expand below
//! [`super::expand::DEFAULT_SET_CLASS_MIN_ENTRIES`] entries. A class replaces the set's
//! expansion (one flat rule instead of one per entry) and its rebuild on every change.
//!
//! **L4 words**: a flat rule constrains TCP/UDP ports only when its protocol is exactly
//! TCP or UDP, and ICMP type/code only when it is exactly ICMP of its family, so one pair
//! of 16-bit ranges carries either (the packet's protocol selects what goes in the key).

use std::sync::Arc;

use super::expand::{AclTable, FlatRule, PortRef, SetClasses};
use super::model::{Action, IpNet, IpVersion, PortId, RuleSet};
use super::reference::dense_priorities;
use crate::graph::PortInfo;
use crate::meta::PacketMeta;

/// Bytes of an [`AclKey`].
pub const KEY_LEN: usize = 64;
/// Offset of the protocol byte.
pub const OFF_PROTO: usize = 0;
/// Offset of the input-port class words.
pub const OFF_IN: usize = 4;
/// Offset of the output-port class words.
pub const OFF_OUT: usize = 12;
/// Offset of the two L4 words.
pub const OFF_L4: usize = 20;
/// Offset of the source address.
pub const OFF_SRC: usize = 24;
/// Offset of the destination address.
pub const OFF_DST: usize = 40;
/// Most port references (groups or named ports) the rules may use.
pub const MAX_PORT_CLASSES: usize = 64;
/// Most port references for the narrow layout (16 bits per direction in one group).
pub const NARROW_PORT_CLASSES: usize = 16;
/// Most port references for the compact layout (8 bits per direction beside word B).
pub const COMPACT_PORT_CLASSES: usize = 8;
/// Most port references for the packed layout (3 bits per direction in byte 0).
pub const PACKED_PORT_CLASSES: usize = 3;
/// Most distinct protocols the rules of the packed layout may match (codes 1..=3).
pub const PACKED_PROTOCOLS: usize = 3;
/// Offset of the compact group (input classes, output classes, L4 word B).
pub const OFF_COMPACT: usize = 56;
/// Offset of the set-class group (source classes, destination classes; 16 bits each).
pub const OFF_SETS: usize = 60;

/// How the port-class bitmasks sit in the key (see the module docs).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ClassLayout {
    /// Up to 3 classes and 3 protocols: classes and a protocol code share byte 0.
    Packed,
    /// Up to 8 classes: input and output classes share one 4-byte group with L4 word B.
    #[default]
    Compact,
    /// Up to 16 classes: input and output classes share one 4-byte group.
    Narrow,
    /// Up to 64 classes: four 4-byte groups.
    Wide,
}

impl ClassLayout {
    /// The layout for `classes` port references.
    pub fn for_classes(classes: usize) -> ClassLayout {
        if classes <= COMPACT_PORT_CLASSES {
            ClassLayout::Compact
        } else if classes <= NARROW_PORT_CLASSES {
            ClassLayout::Narrow
        } else {
            ClassLayout::Wide
        }
    }

    /// The most port references this layout holds.
    pub fn max_classes(self) -> usize {
        match self {
            ClassLayout::Packed => PACKED_PORT_CLASSES,
            ClassLayout::Compact => COMPACT_PORT_CLASSES,
            ClassLayout::Narrow => NARROW_PORT_CLASSES,
            ClassLayout::Wide => MAX_PORT_CLASSES,
        }
    }

    /// The key's class bytes for these class bitmasks.
    #[inline(always)]
    pub fn words(self, in_bits: u64, out_bits: u64) -> ClassWords {
        match self {
            ClassLayout::Packed => ClassWords {
                groups: [0; 4],
                compact: 0,
                compact_only: true,
                byte0: packed_classes(in_bits, out_bits),
            },
            ClassLayout::Compact => ClassWords {
                groups: [0; 4],
                compact: (in_bits as u32 & 0xff) << 24 | (out_bits as u32 & 0xff) << 16,
                compact_only: true,
                byte0: 0,
            },
            ClassLayout::Narrow => ClassWords {
                groups: [
                    ((in_bits as u32) << 16 | (out_bits as u32 & 0xffff)).to_be(),
                    0,
                    0,
                    0,
                ],
                compact: 0,
                compact_only: false,
                byte0: 0,
            },
            ClassLayout::Wide => ClassWords {
                groups: [
                    (in_bits as u32).to_be(),
                    ((in_bits >> 32) as u32).to_be(),
                    (out_bits as u32).to_be(),
                    ((out_bits >> 32) as u32).to_be(),
                ],
                compact: 0,
                compact_only: false,
                byte0: 0,
            },
        }
    }

    /// The rte_acl field layout of a family.
    pub fn fields(self, v: IpVersion) -> &'static [FieldDef] {
        match (self, v) {
            (ClassLayout::Packed, IpVersion::V4) => &V4_PACKED_FIELDS,
            (ClassLayout::Packed, IpVersion::V6) => &V6_PACKED_FIELDS,
            (ClassLayout::Compact, IpVersion::V4) => &V4_COMPACT_FIELDS,
            (ClassLayout::Compact, IpVersion::V6) => &V6_COMPACT_FIELDS,
            (ClassLayout::Narrow, IpVersion::V4) => &V4_NARROW_FIELDS,
            (ClassLayout::Narrow, IpVersion::V6) => &V6_NARROW_FIELDS,
            (ClassLayout::Wide, IpVersion::V4) => &V4_FIELDS,
            (ClassLayout::Wide, IpVersion::V6) => &V6_FIELDS,
        }
    }
}

/// Byte 0's class bits in the packed layout: input classes in bits 2..5, output classes in
/// bits 5..8 (for a packet's port bitmasks, and for a rule's values and masks alike).
#[inline(always)]
fn packed_classes(in_bits: u64, out_bits: u64) -> u8 {
    ((in_bits as u8 & 7) << 2) | ((out_bits as u8 & 7) << 5)
}

/// A packet's port-class bytes for the key (from [`ClassLayout::words`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClassWords {
    /// Key bytes 4..20 as stored (already in network byte order).
    pub groups: [u32; 4],
    /// The compact group's class bytes in host order (input byte in bits 24..32, output
    /// byte in bits 16..24); word B fills the low 16 bits.
    pub compact: u32,
    /// The layout reads the compact group only: key bytes 4..20 need not be written (no
    /// field of the layout reads them, so whatever they hold is never classified).
    pub compact_only: bool,
    /// Class bits of byte 0 (packed layout; 0 otherwise), ORed with the protocol's byte.
    pub byte0: u8,
}

/// What byte 0 of the key holds for each IP protocol: the protocol itself, or in the packed
/// layout its code (1..=3 for the rules' protocols, 0 for any other).
#[derive(Clone, PartialEq, Eq)]
pub struct ProtoMap(pub [u8; 256]);

impl ProtoMap {
    /// Every protocol as itself.
    pub fn identity() -> Self {
        let mut m = [0u8; 256];
        for (i, b) in m.iter_mut().enumerate() {
            *b = i as u8;
        }
        ProtoMap(m)
    }

    /// `protos` numbered 1.. in order, every other protocol 0.
    pub fn codes(protos: &[u8]) -> Self {
        let mut m = [0u8; 256];
        for (i, p) in protos.iter().enumerate() {
            m[usize::from(*p)] = i as u8 + 1;
        }
        ProtoMap(m)
    }

    /// Byte 0's value for protocol `p`.
    #[inline(always)]
    pub fn get(&self, p: u8) -> u8 {
        self.0[usize::from(p)]
    }
}

impl std::fmt::Debug for ProtoMap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let coded: Vec<(usize, u8)> = self
            .0
            .iter()
            .enumerate()
            .filter(|&(i, &c)| c != i as u8)
            .map(|(i, &c)| (i, c))
            .collect();
        write!(f, "ProtoMap(differs from identity at {coded:?})")
    }
}

/// The classifier input for one packet (see the module docs for the layout).
#[derive(Clone, Copy, PartialEq, Eq)]
#[repr(C, align(64))]
pub struct AclKey(pub [u8; KEY_LEN]);

impl Default for AclKey {
    fn default() -> Self {
        AclKey([0; KEY_LEN])
    }
}

impl std::fmt::Debug for AclKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AclKey(")?;
        for b in &self.0[..56] {
            write!(f, "{b:02x}")?;
        }
        write!(f, ")")
    }
}

impl AclKey {
    /// Fills the key from parsed metadata (an IP packet), the port-class words and the
    /// rules' [`ProtoMap`]. An IPv4 key is written without the address bytes past the first
    /// four: they are never read by the IPv4 layouts, and a key buffer holds one family's
    /// keys only (so they stay as they were, zero).
    #[inline(always)]
    pub fn set_from_meta(&mut self, m: &PacketMeta, classes: ClassWords, protos: &ProtoMap) {
        let (proto, l4) = (protos.get(m.protocol) | classes.byte0, l4_words(m));
        if m.ip_version == 4 {
            self.fill(proto, classes, l4, &m.src_addr, &m.dst_addr, 4);
        } else {
            self.fill(proto, classes, l4, &m.src_addr, &m.dst_addr, 16);
        }
    }

    /// Fills the key. `proto` is byte 0 (see [`ProtoMap`]); `classes` comes from
    /// [`ClassLayout::words`]; `src`/`dst` hold an IPv4 address in bytes 0..4 or an IPv6
    /// address, of which the first `addr_len` bytes are written (a constant at every call,
    /// so each caller gets its own straight-line stores); `l4` is (source port, destination
    /// port) or (ICMP type, code).
    #[inline(always)]
    fn fill(
        &mut self,
        proto: u8,
        classes: ClassWords,
        l4: (u16, u16),
        src: &[u8; 16],
        dst: &[u8; 16],
        addr_len: usize,
    ) {
        let k = &mut self.0;
        // Bytes 0..4: protocol (or its code and the packed classes) and padding, in one store.
        k[OFF_PROTO..OFF_PROTO + 4].copy_from_slice(&u32::from(proto).to_le_bytes());
        if !classes.compact_only {
            for (i, w) in classes.groups.iter().enumerate() {
                k[OFF_IN + 4 * i..OFF_IN + 4 * i + 4].copy_from_slice(&w.to_ne_bytes());
            }
        }
        let l4w = (u32::from(l4.0) << 16 | u32::from(l4.1)).to_be_bytes();
        k[OFF_L4..OFF_L4 + 4].copy_from_slice(&l4w);
        k[OFF_SRC..OFF_SRC + addr_len].copy_from_slice(&src[..addr_len]);
        k[OFF_DST..OFF_DST + addr_len].copy_from_slice(&dst[..addr_len]);
        let compact = (classes.compact | u32::from(l4.1)).to_be_bytes();
        k[OFF_COMPACT..OFF_COMPACT + 4].copy_from_slice(&compact);
    }
}

/// The L4 words of a packet: TCP/UDP/SCTP ports, ICMP type/code for ICMP of the packet's
/// family, else zeros.
#[inline(always)]
pub fn l4_words(m: &PacketMeta) -> (u16, u16) {
    match (m.ip_version, m.protocol) {
        (_, 6 | 17 | 132) => (m.src_port, m.dst_port),
        (4, 1) | (6, 58) => (u16::from(m.icmp_type), u16::from(m.icmp_code)),
        _ => (0, 0),
    }
}

/// rte_acl field types (`RTE_ACL_FIELD_TYPE_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldKind {
    /// Prefix: `value`, `mask_range` = prefix length in bits.
    Mask = 0,
    /// Inclusive range: `value` = low, `mask_range` = high.
    Range = 1,
    /// `(input & mask_range) == value`.
    Bitmask = 2,
}

/// One field of the layout (an `rte_acl_field_def`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FieldDef {
    /// Type.
    pub kind: FieldKind,
    /// Size in bytes (1, 2 or 4).
    pub size: u8,
    /// 4-byte input group.
    pub input_index: u8,
    /// Offset in the key.
    pub offset: u32,
}

const fn fd(kind: FieldKind, size: u8, input_index: u8, offset: usize) -> FieldDef {
    FieldDef {
        kind,
        size,
        input_index,
        offset: offset as u32,
    }
}

/// The protocol byte: always field 0, input index 0 (rte_acl's first field is one byte).
const PROTO: FieldDef = fd(FieldKind::Bitmask, 1, 0, OFF_PROTO);

/// An address word (input index `i`) at `offset`.
const fn addr(i: u8, offset: usize) -> FieldDef {
    fd(FieldKind::Mask, 4, i, offset)
}

/// Port field `f` of a layout moved after the address groups (`by` = 1 + their count).
const fn after(f: FieldDef, by: u8) -> FieldDef {
    fd(f.kind, f.size, f.input_index + by, f.offset as usize)
}

/// Wide port fields (input indexes relative to the first port group): four class words,
/// then the L4 words.
const WIDE_PORTS: [FieldDef; 6] = [
    fd(FieldKind::Bitmask, 4, 0, OFF_IN),
    fd(FieldKind::Bitmask, 4, 1, OFF_IN + 4),
    fd(FieldKind::Bitmask, 4, 2, OFF_OUT),
    fd(FieldKind::Bitmask, 4, 3, OFF_OUT + 4),
    fd(FieldKind::Range, 2, 4, OFF_L4),
    fd(FieldKind::Range, 2, 4, OFF_L4 + 2),
];

/// Narrow port fields: both 16-bit class masks in one group, then the L4 words.
const NARROW_PORTS: [FieldDef; 4] = [
    fd(FieldKind::Bitmask, 2, 0, OFF_IN),
    fd(FieldKind::Bitmask, 2, 0, OFF_IN + 2),
    fd(FieldKind::Range, 2, 1, OFF_L4),
    fd(FieldKind::Range, 2, 1, OFF_L4 + 2),
];

/// Compact port fields: both 8-bit class masks and word B in one group, then word A (the
/// group's word B at 22 is always a wildcard: word B is matched in the compact group).
const COMPACT_PORTS: [FieldDef; 5] = [
    fd(FieldKind::Bitmask, 1, 0, OFF_COMPACT),
    fd(FieldKind::Bitmask, 1, 0, OFF_COMPACT + 1),
    fd(FieldKind::Range, 2, 0, OFF_COMPACT + 2),
    fd(FieldKind::Range, 2, 1, OFF_L4),
    fd(FieldKind::Range, 2, 1, OFF_L4 + 2),
];

/// Packed port fields: the classes are in byte 0 (with the protocol code); both L4 words in
/// one group.
const PACKED_PORTS: [FieldDef; 2] = [
    fd(FieldKind::Range, 2, 0, OFF_L4),
    fd(FieldKind::Range, 2, 0, OFF_L4 + 2),
];

/// Number of fields of the IPv4 layout.
pub const V4_NUM_FIELDS: usize = 9;
/// Number of fields of the IPv6 layout.
pub const V6_NUM_FIELDS: usize = 15;
/// Number of fields of the narrow IPv4 layout.
pub const V4_NARROW_NUM_FIELDS: usize = 7;
/// Number of fields of the narrow IPv6 layout.
pub const V6_NARROW_NUM_FIELDS: usize = 13;
/// Number of fields of the compact IPv4 layout.
pub const V4_COMPACT_NUM_FIELDS: usize = 8;
/// Number of fields of the compact IPv6 layout.
pub const V6_COMPACT_NUM_FIELDS: usize = 14;
/// Number of fields of the packed IPv4 layout.
pub const V4_PACKED_NUM_FIELDS: usize = 5;
/// Number of fields of the packed IPv6 layout.
pub const V6_PACKED_NUM_FIELDS: usize = 11;

/// A family's layout: the protocol, then `words` 32-bit words of each address (source,
/// then destination), then the class layout's `ports` fields (their groups after the
/// addresses'). Every layout walks the addresses before the port classes and L4 words: with
/// the prefixes above the port ranges, ranges branch deep in the trie rather than at its
/// top, so 1k security-group rules mixing port ranges and address sets fit one rte_acl trie
/// instead of two (each trie is a walk of its own per packet; measured 103 -> 71 cycles per
/// packet).
const fn layout<const N: usize>(ports: &[FieldDef], words: usize) -> [FieldDef; N] {
    assert!(N == 1 + 2 * words + ports.len(), "layout length");
    let mut out = [PROTO; N];
    let mut i = 0;
    while i < words {
        out[1 + i] = addr(1 + i as u8, OFF_SRC + 4 * i);
        out[1 + words + i] = addr(1 + (words + i) as u8, OFF_DST + 4 * i);
        i += 1;
    }
    let mut j = 0;
    while j < ports.len() {
        out[1 + 2 * words + j] = after(ports[j], 1 + 2 * words as u8);
        j += 1;
    }
    out
}

/// The wide IPv4 layout (field index = position; built by `layout`: protocol, addresses, then port classes and L4 words).
pub const V4_FIELDS: [FieldDef; V4_NUM_FIELDS] = layout(&WIDE_PORTS, 1);
/// The wide IPv6 layout.
pub const V6_FIELDS: [FieldDef; V6_NUM_FIELDS] = layout(&WIDE_PORTS, 4);
/// The narrow IPv4 layout.
pub const V4_NARROW_FIELDS: [FieldDef; V4_NARROW_NUM_FIELDS] = layout(&NARROW_PORTS, 1);
/// The narrow IPv6 layout.
pub const V6_NARROW_FIELDS: [FieldDef; V6_NARROW_NUM_FIELDS] = layout(&NARROW_PORTS, 4);
/// The compact IPv4 layout.
pub const V4_COMPACT_FIELDS: [FieldDef; V4_COMPACT_NUM_FIELDS] = layout(&COMPACT_PORTS, 1);
/// The compact IPv6 layout.
pub const V6_COMPACT_FIELDS: [FieldDef; V6_COMPACT_NUM_FIELDS] = layout(&COMPACT_PORTS, 4);
/// The packed IPv4 layout (byte 0: protocol code and classes).
pub const V4_PACKED_FIELDS: [FieldDef; V4_PACKED_NUM_FIELDS] = layout(&PACKED_PORTS, 1);
/// The packed IPv6 layout.
pub const V6_PACKED_FIELDS: [FieldDef; V6_PACKED_NUM_FIELDS] = layout(&PACKED_PORTS, 4);

/// A field's value in a compiled rule (host byte order, as rte_acl wants rules).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FieldValue {
    /// Value (prefix address, range low, or bitmask value).
    pub value: u32,
    /// Prefix length, range high, or bitmask mask.
    pub mask_range: u32,
}

/// One rule ready for rte_acl: unique priority, user data (`acl index + 1`) and a value
/// per field of its family's layout.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompiledRule {
    /// Unique per ACL (rank from [`dense_priorities`]); higher wins.
    pub priority: u32,
    /// `acl index + 1` (0 is "no match").
    pub userdata: u32,
    /// One per field of the family's layout ([`CompiledAcl::fields`]).
    pub fields: Vec<FieldValue>,
}

/// Errors compiling flat rules for the classifier.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CompileError {
    /// The rules use more distinct port groups / named ports than the key has bits.
    #[error("the ACLs use {0} distinct port groups and named ports; at most {MAX_PORT_CLASSES} fit the classifier key")]
    TooManyPortClasses(usize),
    /// A flat rule constrains both TCP/UDP ports and ICMP fields (cannot happen for rules
    /// from the expansion).
    #[error("acl #{0}: a flat rule constrains both L4 ports and ICMP fields")]
    L4Overlay(usize),
    /// The packed layout was asked for, but the rules match more than
    /// [`PACKED_PROTOCOLS`] protocols (or protocol bits).
    #[error("the ACLs match more than {PACKED_PROTOCOLS} protocols: they do not fit the packed key layout")]
    TooManyProtocols,
    /// The classifier could not be built.
    #[error("building the classifier: {0}")]
    Build(String),
}

/// The port references used by the rules, each with a bit.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PortClasses {
    refs: Vec<PortRef>,
}

impl PortClasses {
    /// The references used by `flat`'s port matches (sorted, at most 64).
    pub fn of<'r>(flat: impl IntoIterator<Item = &'r FlatRule>) -> Result<Self, CompileError> {
        let mut refs: Vec<PortRef> = Vec::new();
        for r in flat {
            for pm in [&r.inport, &r.outport] {
                refs.extend(pm.require.iter().chain(&pm.exclude).cloned());
            }
        }
        refs.sort();
        refs.dedup();
        if refs.len() > MAX_PORT_CLASSES {
            return Err(CompileError::TooManyPortClasses(refs.len()));
        }
        Ok(PortClasses { refs })
    }

    /// Number of classes in use.
    pub fn len(&self) -> usize {
        self.refs.len()
    }

    /// True if no rule tests a port.
    pub fn is_empty(&self) -> bool {
        self.refs.is_empty()
    }

    fn bit(&self, r: &PortRef) -> u64 {
        match self.refs.binary_search(r) {
            Ok(i) => 1u64 << i,
            Err(_) => 0,
        }
    }

    /// The bitmask of a port: the bits of the references it satisfies.
    pub fn bits_of(&self, rules: &RuleSet, port: PortId<'_>) -> u64 {
        self.refs
            .iter()
            .enumerate()
            .filter(|(_, r)| r.matches(rules, port))
            .fold(0, |acc, (i, _)| acc | 1u64 << i)
    }

    fn port_field(&self, require: &[PortRef], exclude: &[PortRef]) -> (u64, u64) {
        let value = require.iter().fold(0, |a, r| a | self.bit(r));
        let mask = exclude.iter().fold(value, |a, r| a | self.bit(r));
        (value, mask)
    }
}

fn addr_words(net: &IpNet) -> [FieldValue; 4] {
    let bytes = match net.addr() {
        std::net::IpAddr::V4(a) => {
            let mut b = [0u8; 16];
            b[..4].copy_from_slice(&a.octets());
            b
        }
        std::net::IpAddr::V6(a) => a.octets(),
    };
    let len = u32::from(net.prefix_len());
    let mut out = [FieldValue::default(); 4];
    for (i, w) in out.iter_mut().enumerate() {
        let l = len.saturating_sub(32 * i as u32).min(32);
        let v = u32::from_be_bytes([
            bytes[4 * i],
            bytes[4 * i + 1],
            bytes[4 * i + 2],
            bytes[4 * i + 3],
        ]);
        // Host bits beyond the prefix are zero in a canonical IpNet; mask anyway.
        let m = if l == 0 { 0 } else { u32::MAX << (32 - l) };
        *w = FieldValue {
            value: v & m,
            mask_range: l,
        };
    }
    out
}

fn compile_rule(
    r: &FlatRule,
    sets: &SetClasses,
    classes: &PortClasses,
    layout: ClassLayout,
    protos: &ProtoMap,
    priority: u32,
) -> Result<CompiledRule, CompileError> {
    let ports_full = r.src_port.lo == 0
        && r.src_port.hi == u16::MAX
        && r.dst_port.lo == 0
        && r.dst_port.hi == u16::MAX;
    let icmp_full = r.icmp_type.lo == 0
        && r.icmp_type.hi == u8::MAX
        && r.icmp_code.lo == 0
        && r.icmp_code.hi == u8::MAX;
    if !ports_full && !icmp_full {
        return Err(CompileError::L4Overlay(r.acl));
    }
    let (a, b) = if icmp_full {
        (
            (r.src_port.lo, r.src_port.hi),
            (r.dst_port.lo, r.dst_port.hi),
        )
    } else {
        (
            (u16::from(r.icmp_type.lo), u16::from(r.icmp_type.hi)),
            (u16::from(r.icmp_code.lo), u16::from(r.icmp_code.hi)),
        )
    };
    let (iv, im) = classes.port_field(&r.inport.require, &r.inport.exclude);
    let (ov, om) = classes.port_field(&r.outport.require, &r.outport.exclude);
    let bm = |value: u64, mask: u64| FieldValue {
        value: value as u32,
        mask_range: mask as u32,
    };
    let mut fields = vec![if layout == ClassLayout::Packed {
        // Protocol code (exact or absent: checked by `packable`) and the class bits.
        let (pv, pm) = if r.proto.mask == 0 {
            (0u8, 0u8)
        } else {
            (protos.get(r.proto.value), 0b11u8)
        };
        FieldValue {
            value: u32::from(pv | packed_classes(iv, ov)),
            mask_range: u32::from(pm | packed_classes(im, om)),
        }
    } else {
        FieldValue {
            value: u32::from(r.proto.value),
            mask_range: u32::from(r.proto.mask),
        }
    }];
    let range = |(lo, hi): (u16, u16)| FieldValue {
        value: u32::from(lo),
        mask_range: u32::from(hi),
    };
    match layout {
        ClassLayout::Packed => fields.extend([range(a), range(b)]),
        ClassLayout::Compact => fields.extend([
            bm(iv & 0xff, im & 0xff),
            bm(ov & 0xff, om & 0xff),
            range(b),
            range(a),
            range((0, u16::MAX)),
        ]),
        ClassLayout::Narrow => fields.extend([
            bm(iv & 0xffff, im & 0xffff),
            bm(ov & 0xffff, om & 0xffff),
            range(a),
            range(b),
        ]),
        ClassLayout::Wide => fields.extend([
            bm(iv, im),
            bm(iv >> 32, im >> 32),
            bm(ov, om),
            bm(ov >> 32, om >> 32),
            range(a),
            range(b),
        ]),
    }
    let (src, dst) = (addr_words(&r.src), addr_words(&r.dst));
    let words = match r.version {
        IpVersion::V4 => 1,
        IpVersion::V6 => 4,
    };
    let addrs = src[..words].iter().chain(&dst[..words]).copied();
    // Every layout walks the addresses right after the protocol (see `layout`).
    fields.splice(1..1, addrs);
    // The set-class group is the last of every layout.
    let (sv, sm) = sets.field(&r.src_sets);
    let (dv, dm) = sets.field(&r.dst_sets);
    fields.extend([
        bm(u64::from(sv), u64::from(sm)),
        bm(u64::from(dv), u64::from(dm)),
    ]);
    Ok(CompiledRule {
        priority,
        userdata: r.acl as u32 + 1,
        fields,
    })
}

/// Flat rules compiled for the classifier, per family, with everything the ACL node
/// needs to judge a packet from the classifier's answer.
#[derive(Clone, Debug)]
pub struct CompiledAcl {
    /// The rule set (names and actions of the ACLs, port groups).
    pub rules: Arc<RuleSet>,
    /// IPv4 rules.
    pub v4: Vec<CompiledRule>,
    /// IPv6 rules.
    pub v6: Vec<CompiledRule>,
    /// Action per ACL index.
    pub actions: Vec<Action>,
    /// Per ACL index: whether the packets it decides are logged (the ACL has a log spec).
    pub logs: Vec<bool>,
    /// Per ACL index: whether the replies of the connections it admits are logged (an
    /// `allow-related` ACL whose log spec says `related`).
    pub logs_related: Vec<bool>,
    /// Whether any ACL's `logs_related` is set (the stateful node tests this once a burst).
    pub any_log_related: bool,
    /// The port references and their bits.
    pub classes: PortClasses,
    /// Port-class bitmask per port id (index = [`PortInfo::index`]; absent ports: 0).
    pub port_bits: Vec<u64>,
    /// Where the class bitmasks sit in the key (narrow when the classes fit 16 bits).
    pub layout: ClassLayout,
    /// Byte 0 per protocol (codes in the packed layout, else the protocol itself).
    pub protos: ProtoMap,
    /// The IPv4 rte_acl layout: the class layout's fields without elided groups.
    pub v4_fields: Vec<FieldDef>,
    /// The IPv6 rte_acl layout, likewise.
    pub v6_fields: Vec<FieldDef>,
    /// The address sets matched by membership, in bit order.
    pub set_classes: SetClasses,
    /// Per family (IPv4, IPv6): which set-class fields (source, destination) some rule
    /// constrains, so the node must fill them ([`super::members::MemberTable::fill_keys`]).
    pub reads_sets: [(bool, bool); 2],
}

/// Compiles an expanded rule set for the graph's `ports`: unique priorities by
/// [`dense_priorities`] (so the classifier agrees with [`super::evaluate`] on ties), port
/// classes, and per-port bitmasks.
pub fn compile(table: &AclTable, ports: &[PortInfo]) -> Result<CompiledAcl, CompileError> {
    compile_with(table, ports, None)
}

/// The protocols `flat` matches exactly, sorted, if the packed layout can hold them: at most
/// [`PACKED_PROTOCOLS`], and no rule matching some protocol bits only.
fn packable<'r>(flat: impl IntoIterator<Item = &'r FlatRule>) -> Option<Vec<u8>> {
    let mut protos = Vec::new();
    for r in flat {
        match r.proto.mask {
            0 => {}
            0xff => protos.push(r.proto.value),
            _ => return None,
        }
    }
    protos.sort_unstable();
    protos.dedup();
    (protos.len() <= PACKED_PROTOCOLS).then_some(protos)
}

/// [`compile`] with the class layout forced (`None`: the smallest that fits: packed,
/// compact, narrow, then wide).
pub fn compile_with(
    table: &AclTable,
    ports: &[PortInfo],
    layout: Option<ClassLayout>,
) -> Result<CompiledAcl, CompileError> {
    let rules = table.rules();
    let classes = PortClasses::of(table.flat_rules())?;
    let packed = packable(table.flat_rules());
    let layout = match layout {
        Some(l) if classes.len() > l.max_classes() => {
            return Err(CompileError::TooManyPortClasses(classes.len()))
        }
        Some(ClassLayout::Packed) if packed.is_none() => {
            return Err(CompileError::TooManyProtocols)
        }
        Some(l) => l,
        None if packed.is_some() && classes.len() <= PACKED_PORT_CLASSES => ClassLayout::Packed,
        None => ClassLayout::for_classes(classes.len()),
    };
    let protos = match (&packed, layout) {
        (Some(p), ClassLayout::Packed) => ProtoMap::codes(p),
        _ => ProtoMap::identity(),
    };
    let prio = dense_priorities(rules.acls());
    let (mut v4, mut v6) = (Vec::new(), Vec::new());
    for r in table.flat_rules() {
        let c = compile_rule(
            r,
            table.set_classes(),
            &classes,
            layout,
            &protos,
            prio[r.acl],
        )?;
        match r.version {
            IpVersion::V4 => v4.push(c),
            IpVersion::V6 => v6.push(c),
        }
    }
    let v4_fields = elide_groups(&with_sets(layout.fields(IpVersion::V4)), &mut v4);
    let v6_fields = elide_groups(&with_sets(layout.fields(IpVersion::V6)), &mut v6);
    let reads = |f: &[FieldDef], rules: &[CompiledRule], off: usize| {
        f.iter().enumerate().any(|(i, d)| {
            d.offset as usize == off && rules.iter().any(|r| !is_wildcard(d, &r.fields[i]))
        })
    };
    let reads_sets = [
        (
            reads(&v4_fields, &v4, OFF_SETS),
            reads(&v4_fields, &v4, OFF_SETS + 2),
        ),
        (
            reads(&v6_fields, &v6, OFF_SETS),
            reads(&v6_fields, &v6, OFF_SETS + 2),
        ),
    ];
    let size = ports
        .iter()
        .map(|p| usize::from(p.index) + 1)
        .max()
        .unwrap_or(0);
    let mut port_bits = vec![0u64; size];
    for p in ports {
        let id = if p.role.is_empty() {
            PortId::named(&p.name)
        } else {
            PortId::with_role(&p.name, &p.role)
        };
        port_bits[usize::from(p.index)] = classes.bits_of(rules, id);
    }
    let logs_related: Vec<bool> = rules
        .acls()
        .iter()
        .map(|a| a.action == Action::AllowRelated && a.log.as_ref().is_some_and(|l| l.related))
        .collect();
    Ok(CompiledAcl {
        rules: Arc::new(rules.clone()),
        v4,
        v6,
        actions: rules.acls().iter().map(|a| a.action).collect(),
        logs: rules.acls().iter().map(|a| a.log.is_some()).collect(),
        logs_related: logs_related.clone(),
        any_log_related: logs_related.contains(&true),
        classes,
        port_bits,
        layout,
        protos,
        v4_fields,
        v6_fields,
        set_classes: table.set_classes().clone(),
        reads_sets,
    })
}

/// A class layout's fields with the set-class group appended (its own input group, after
/// every other).
fn with_sets(fields: &[FieldDef]) -> Vec<FieldDef> {
    let next = fields
        .iter()
        .map(|f| f.input_index)
        .max()
        .map_or(0, |g| g + 1);
    let mut all = fields.to_vec();
    all.extend([
        fd(FieldKind::Bitmask, 2, next, OFF_SETS),
        fd(FieldKind::Bitmask, 2, next, OFF_SETS + 2),
    ]);
    all
}

/// True if `v` lets every input through `def` (full range, prefix 0, empty bitmask).
pub(crate) fn is_wildcard(def: &FieldDef, v: &FieldValue) -> bool {
    let max = match def.size {
        1 => 0xff,
        2 => 0xffff,
        _ => u32::MAX,
    };
    match def.kind {
        FieldKind::Bitmask => v.mask_range == 0,
        FieldKind::Range => v.value == 0 && v.mask_range == max,
        FieldKind::Mask => v.mask_range == 0,
    }
}

/// Drops from `all` (and from every rule's fields) the 4-byte groups that no rule
/// constrains, renumbering the remaining input indexes; the protocol byte (group 0) always
/// stays, as rte_acl's first field must be one byte. Returns the layout left.
fn elide_groups(all: &[FieldDef], rules: &mut [CompiledRule]) -> Vec<FieldDef> {
    let groups = all
        .iter()
        .map(|f| usize::from(f.input_index))
        .max()
        .map_or(0, |g| g + 1);
    let mut used = vec![false; groups];
    used[0] = true;
    for r in rules.iter() {
        for (d, v) in all.iter().zip(&r.fields) {
            if !is_wildcard(d, v) {
                used[usize::from(d.input_index)] = true;
            }
        }
    }
    let mut renumber = vec![0u8; groups];
    let mut next = 0u8;
    for (g, u) in used.iter().enumerate() {
        if *u {
            renumber[g] = next;
            next += 1;
        }
    }
    let keep: Vec<bool> = all
        .iter()
        .map(|f| used[usize::from(f.input_index)])
        .collect();
    for r in rules.iter_mut() {
        let mut k = keep.iter();
        r.fields.retain(|_| *k.next().expect("one value per field"));
    }
    all.iter()
        .filter(|f| used[usize::from(f.input_index)])
        .map(|f| FieldDef {
            input_index: renumber[usize::from(f.input_index)],
            ..*f
        })
        .collect()
}

impl CompiledAcl {
    /// The rules of a family.
    pub fn rules_of(&self, v: IpVersion) -> &[CompiledRule] {
        match v {
            IpVersion::V4 => &self.v4,
            IpVersion::V6 => &self.v6,
        }
    }

    /// Which set-class fields (source, destination) the family's rules read.
    #[inline(always)]
    pub fn reads_sets(&self, v: IpVersion) -> (bool, bool) {
        self.reads_sets[usize::from(v == IpVersion::V6)]
    }

    /// The port-class bitmask of port id `port` (0 for unknown ports).
    #[inline(always)]
    pub fn bits(&self, port: u16) -> u64 {
        self.port_bits.get(usize::from(port)).copied().unwrap_or(0)
    }

    /// The key's class words for a packet from port id `inp` to `outp` (unknown or no
    /// port: no class).
    #[inline(always)]
    pub fn class_words(&self, inp: u16, outp: u16) -> ClassWords {
        self.layout.words(self.bits(inp), self.bits(outp))
    }

    /// The rte_acl field layout of a family for these rules (the class layout's fields
    /// without the groups no rule of the family constrains).
    pub fn fields(&self, v: IpVersion) -> &[FieldDef] {
        match v {
            IpVersion::V4 => &self.v4_fields,
            IpVersion::V6 => &self.v6_fields,
        }
    }
}

/// A built classifier: for each key of one family, the user data of the
/// highest-priority matching rule (`acl index + 1`), or 0.
pub trait Classify: Send + Sync + Sized + 'static {
    /// Builds a classifier from compiled rules (called on the control thread).
    fn build(acl: &CompiledAcl) -> Result<Self, CompileError>;
    /// Classifies a whole burst of one family at once: `results[i]` for `keys[i]`.
    /// `results` is at least as long as `keys`.
    fn classify(&self, family: IpVersion, keys: &[AclKey], results: &mut [u32]);
    /// What it is (e.g. `rte_acl avx2`), for logs and reports.
    fn describe(&self) -> String;
}

/// Classifies a burst of one family: what the node and the verdict cache call. A built
/// [`Classify`] is one; so is a program whose added ACLs sit in an overlay
/// ([`super::publish::AclProgram`], [`super::layered`]).
pub trait BurstClassifier {
    /// `results[i]` for `keys[i]` (`results` at least as long as `keys`), as
    /// [`Classify::classify`].
    fn classify_burst(&self, family: IpVersion, keys: &[AclKey], results: &mut [u32]);
}

impl<C: Classify> BurstClassifier for C {
    #[inline(always)]
    fn classify_burst(&self, family: IpVersion, keys: &[AclKey], results: &mut [u32]) {
        self.classify(family, keys, results)
    }
}

#[inline(always)]
fn word(key: &AclKey, f: &FieldDef) -> u32 {
    let o = f.offset as usize;
    let k = &key.0;
    match f.size {
        1 => u32::from(k[o]),
        2 => u32::from(u16::from_be_bytes([k[o], k[o + 1]])),
        _ => u32::from_be_bytes([k[o], k[o + 1], k[o + 2], k[o + 3]]),
    }
}

/// True if `key` satisfies every field of `rule` (in `fields`, its family's layout from
/// [`CompiledAcl::fields`]) under rte_acl's semantics.
pub fn key_matches(fields: &[FieldDef], rule: &CompiledRule, key: &AclKey) -> bool {
    fields.iter().zip(&rule.fields).all(|(f, v)| {
        let x = word(key, f);
        match f.kind {
            FieldKind::Bitmask => x & v.mask_range == v.value,
            FieldKind::Range => v.value <= x && x <= v.mask_range,
            FieldKind::Mask => {
                let bits = u32::from(f.size) * 8;
                let m = if v.mask_range == 0 {
                    0
                } else {
                    u32::MAX << (bits - v.mask_range.min(bits))
                };
                x & m == v.value & m
            }
        }
    })
}

/// A software model of rte_acl: scans the compiled rules of the key's family and keeps
/// the highest-priority match. Used where DPDK is not available (tests, `check`).
#[derive(Clone, Debug)]
pub struct LinearClassifier {
    v4: Vec<CompiledRule>,
    v6: Vec<CompiledRule>,
    v4_fields: Vec<FieldDef>,
    v6_fields: Vec<FieldDef>,
}

impl Classify for LinearClassifier {
    fn build(acl: &CompiledAcl) -> Result<Self, CompileError> {
        Ok(LinearClassifier {
            v4: acl.v4.clone(),
            v6: acl.v6.clone(),
            v4_fields: acl.v4_fields.clone(),
            v6_fields: acl.v6_fields.clone(),
        })
    }

    fn classify(&self, family: IpVersion, keys: &[AclKey], results: &mut [u32]) {
        let (rules, fields) = match family {
            IpVersion::V4 => (&self.v4, &self.v4_fields),
            IpVersion::V6 => (&self.v6, &self.v6_fields),
        };
        for (k, out) in keys.iter().zip(results.iter_mut()) {
            let mut best: Option<&CompiledRule> = None;
            for r in rules {
                if best.is_none_or(|b| r.priority > b.priority) && key_matches(fields, r, k) {
                    best = Some(r);
                }
            }
            *out = best.map_or(0, |r| r.userdata);
        }
    }

    fn describe(&self) -> String {
        format!("linear scan ({} + {} rules)", self.v4.len(), self.v6.len())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::acl::expand::ExpandLimits;
    use crate::acl::model::AclFile;
    use crate::acl::reference::{evaluate, PacketSummary};
    use std::net::IpAddr;

    const THREE_TIER: &str = include_str!("../../../config/acl-three-tier.toml");

    /// The key a packet summary gives, through PacketMeta like the node does.
    pub(crate) fn key_of(acl: &CompiledAcl, p: &PacketSummary<'_>, ports: &[PortInfo]) -> AclKey {
        let id = |name: &str| ports.iter().find(|x| x.name == name).map(|x| x.index);
        let mut m = PacketMeta::default();
        let (v, s, d) = match (p.src, p.dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => (
                4,
                PacketMeta::v4_bytes(s.octets()),
                PacketMeta::v4_bytes(d.octets()),
            ),
            (IpAddr::V6(s), IpAddr::V6(d)) => (6, s.octets(), d.octets()),
            _ => unreachable!(),
        };
        m.ip_version = v;
        m.src_addr = s;
        m.dst_addr = d;
        m.protocol = p.proto;
        m.src_port = p.src_port;
        m.dst_port = p.dst_port;
        m.icmp_type = p.icmp_type;
        m.icmp_code = p.icmp_code;
        let mut k = AclKey::default();
        let bits = |n: &str| id(n).map_or(0, |i| acl.bits(i));
        k.set_from_meta(
            &m,
            acl.layout.words(bits(p.inport.name), bits(p.outport.name)),
            &acl.protos,
        );
        k
    }

    #[test]
    fn three_tier_compiles_and_agrees() {
        let file: AclFile = toml::from_str(THREE_TIER).unwrap();
        let rs = RuleSet::from_config(&file.acl).unwrap();
        let table = AclTable::new(rs, ExpandLimits::default()).unwrap();
        let ports = [
            PortInfo::new(0, "web0", ""),
            PortInfo::new(1, "ba0", ""),
            PortInfo::new(2, "db0", ""),
        ];
        let acl = compile(&table, &ports).unwrap();
        // Two allows (one /24 each), the tier drop (3 groups) per family, the IPv4 reject.
        assert_eq!((acl.v4.len(), acl.v6.len()), (6, 3));
        assert_eq!(acl.classes.len(), 3);
        assert_eq!(acl.port_bits.len(), 3);
        assert!(acl.port_bits.iter().all(|b| b.count_ones() == 1));
        let c = LinearClassifier::build(&acl).unwrap();
        let ip = |s: &str| -> IpAddr { s.parse().unwrap() };
        let pk = |i: &'static str, o: &'static str, s, d, dp| {
            PacketSummary::tcp(PortId::named(i), PortId::named(o), ip(s), ip(d), 40000, dp)
        };
        let cases = [
            pk("web0", "ba0", "10.0.1.10", "10.0.2.20", 8080),
            pk("ba0", "db0", "10.0.2.20", "10.0.3.30", 5432),
            pk("web0", "db0", "10.0.1.10", "10.0.3.30", 5432),
            pk("db0", "ba0", "10.0.3.30", "10.0.2.20", 5432),
            pk("web0", "ba0", "10.0.1.10", "10.0.2.20", 8081),
        ];
        let keys: Vec<AclKey> = cases.iter().map(|p| key_of(&acl, p, &ports)).collect();
        let mut res = vec![9u32; keys.len()];
        c.classify(IpVersion::V4, &keys, &mut res);
        for (p, r) in cases.iter().zip(&res) {
            let want = evaluate(table.rules(), p).acl.map_or(0, |i| i as u32 + 1);
            assert_eq!(*r, want, "{p:?}");
        }
        assert_eq!(res, vec![1, 2, 3, 3, 3]);
    }

    #[test]
    fn address_words() {
        let w = addr_words(&"2001:db8::/40".parse().unwrap());
        assert_eq!(
            w[0],
            FieldValue {
                value: 0x2001_0db8,
                mask_range: 32
            }
        );
        assert_eq!(w[1].mask_range, 8);
        assert_eq!((w[2].mask_range, w[3].mask_range), (0, 0));
        let w = addr_words(&"10.1.2.3".parse().unwrap());
        assert_eq!(
            w[0],
            FieldValue {
                value: 0x0a01_0203,
                mask_range: 32
            }
        );
    }
}
