//! Membership outside the classifier: which set classes an address belongs to, and which
//! port classes a port has, answered per packet by a table of its own ([`MemberTable`]),
//! so that a change of membership updates that table and nothing else.
//!
//! # The table
//! Per family, one exact-match hash table per distinct prefix length present in the set
//! classes (a /32 or /128 host the common case, so usually one), mapping a prefix to the
//! bitmask of the classes holding it. An address's bitmask is the union over the lengths
//! present: the address masked to each length, one probe each ([`MemberTable::bits_v4`]).
//! Open addressing with linear probing, at most half full, keys and bitmasks inline (8
//! bytes per IPv4 slot, 32 per IPv6), a multiplicative hash; an entry whose last bit is
//! cleared is removed by shifting its successors back, so lookups never meet tombstones.
//! Chosen over `rte_lpm`/`rte_hash` because it is plain Rust (no FFI per packet, testable
//! without DPDK), answers all classes in one probe per length, and updates in place. The
//! node fills the keys of a burst first and then looks up all their addresses in one pass
//! ([`MemberTable::fill_keys`]); with no set class in the rules the pass is skipped.
//!
//! # Publishing without copying: a left-right pair
//! [`MemberPair`] keeps two copies. Workers read the one last published (each holds an
//! `Arc` to it and swaps at a burst boundary, see [`super::publish`]). An update applies
//! its batch to the other copy, which no worker holds once every worker has moved on
//! (`Arc::get_mut` proves it: no lock, no `unsafe`), publishes that copy, and once every
//! worker adopted it applies the same batch to the copy they left (or, if a worker has not
//! let go of it yet, at the start of the next update). Work per update is proportional to
//! the batch, applied twice; every packet sees the membership before or after a whole batch.
//! A worker that holds an old copy for longer (an idle worker does not adopt) only costs a
//! copy of the table at the next update ([`PairStats::copies`]), never a wrong answer.

use std::net::IpAddr;
use std::sync::Arc;

use super::expand::SetClasses;
use super::key::{AclKey, OFF_DST, OFF_SETS, OFF_SRC};
use super::model::{IpNet, IpVersion, RuleSet};
use super::net::{addr_bits, prefix_mask};

/// A key type of [`ExactTable`]: an address (or prefix) as an integer.
trait TableKey: Copy + Eq + Default + std::fmt::Debug {
    fn hash(self) -> u64;
}

const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

impl TableKey for u32 {
    #[inline(always)]
    fn hash(self) -> u64 {
        u64::from(self).wrapping_mul(GOLDEN)
    }
}

impl TableKey for u128 {
    #[inline(always)]
    fn hash(self) -> u64 {
        let folded = (self as u64) ^ ((self >> 64) as u64).wrapping_mul(0xC2B2_AE3D_27D4_EB4F);
        folded.wrapping_mul(GOLDEN)
    }
}

/// An open-addressing table from keys to non-zero bitmasks (bitmask 0 marks a free slot).
#[derive(Clone, Debug)]
struct ExactTable<K> {
    slots: Box<[(K, u32)]>,
    /// `64 - log2(slots)`: the hash's top bits index the table.
    shift: u32,
    len: usize,
}

/// Smallest table (slots).
const MIN_SLOTS: usize = 16;

impl<K: TableKey> ExactTable<K> {
    fn with_capacity(entries: usize) -> Self {
        let slots = (entries * 2).next_power_of_two().max(MIN_SLOTS);
        ExactTable {
            slots: vec![(K::default(), 0); slots].into_boxed_slice(),
            shift: 64 - slots.trailing_zeros(),
            len: 0,
        }
    }

    #[inline(always)]
    fn mask(&self) -> usize {
        self.slots.len() - 1
    }

    #[inline(always)]
    fn home(&self, k: K) -> usize {
        (k.hash() >> self.shift) as usize
    }

    /// The slot holding `k`, or the free slot where it would go.
    #[inline(always)]
    fn find(&self, k: K) -> (usize, bool) {
        let mask = self.mask();
        let mut i = self.home(k);
        loop {
            let (key, bits) = self.slots[i];
            if bits == 0 {
                return (i, false);
            }
            if key == k {
                return (i, true);
            }
            i = (i + 1) & mask;
        }
    }

    /// The bitmask of `k` (0: absent).
    #[inline(always)]
    fn get(&self, k: K) -> u32 {
        let mask = self.mask();
        let mut i = self.home(k);
        loop {
            let (key, bits) = self.slots[i];
            if bits == 0 || key == k {
                return bits;
            }
            i = (i + 1) & mask;
        }
    }

    fn set_bits(&mut self, k: K, add: u32) {
        if add == 0 {
            return;
        }
        let (i, found) = self.find(k);
        if found {
            self.slots[i].1 |= add;
            return;
        }
        self.slots[i] = (k, add);
        self.len += 1;
        if self.len * 2 > self.slots.len() {
            self.grow();
        }
    }

    fn clear_bits(&mut self, k: K, clear: u32) {
        let (i, found) = self.find(k);
        if !found {
            return;
        }
        self.slots[i].1 &= !clear;
        if self.slots[i].1 == 0 {
            self.remove_at(i);
        }
    }

    /// Removes slot `i`, shifting back the entries after it that would no longer be found.
    fn remove_at(&mut self, i: usize) {
        let mask = self.mask();
        let mut hole = i;
        let mut j = (i + 1) & mask;
        loop {
            let (key, bits) = self.slots[j];
            if bits == 0 {
                break;
            }
            let home = self.home(key);
            // `key` may fill the hole if its home is not in (hole, j] (cyclically).
            if (j.wrapping_sub(home) & mask) >= (j.wrapping_sub(hole) & mask) {
                self.slots[hole] = self.slots[j];
                hole = j;
            }
            j = (j + 1) & mask;
        }
        self.slots[hole] = (K::default(), 0);
        self.len -= 1;
    }

    fn grow(&mut self) {
        let mut bigger = ExactTable::with_capacity(self.slots.len());
        for &(k, b) in self.slots.iter().filter(|s| s.1 != 0) {
            bigger.set_bits(k, b);
        }
        *self = bigger;
    }

    fn iter(&self) -> impl Iterator<Item = (K, u32)> + '_ {
        self.slots.iter().copied().filter(|s| s.1 != 0)
    }
}

/// The entries of one prefix length.
#[derive(Clone, Debug)]
struct LenTable<K> {
    len: u8,
    mask: K,
    table: ExactTable<K>,
}

/// One membership change, resolved against the set classes (see [`MemberTable::apply`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MemberOp {
    /// `net` joins (`add`) or leaves the classes of `bits`.
    Net {
        /// The prefix.
        net: IpNet,
        /// Class bits.
        bits: u32,
        /// Join or leave.
        add: bool,
    },
    /// The port-class bitmask per port id, replaced whole (a port-group change).
    PortBits(Arc<[u64]>),
}

/// Which set classes hold an address, and the port-class bitmask of each port: what the
/// ACL node reads per packet besides the classifier.
#[derive(Clone, Debug, Default)]
pub struct MemberTable {
    v4: Vec<LenTable<u32>>,
    v6: Vec<LenTable<u128>>,
    port_bits: Arc<[u64]>,
}

impl MemberTable {
    /// The table for `classes` of `rules` (their current entries) and the port bitmasks.
    pub fn build(rules: &RuleSet, classes: &SetClasses, port_bits: &[u64]) -> MemberTable {
        let mut t = MemberTable {
            port_bits: port_bits.into(),
            ..Default::default()
        };
        for name in classes.names() {
            let (Some(bit), Some(set)) = (classes.bit(name), rules.address_set(name)) else {
                continue;
            };
            for e in &set.entries {
                t.set(*e, bit, true);
            }
        }
        t
    }

    /// Applies a batch of changes in order.
    pub fn apply(&mut self, ops: &[MemberOp]) {
        for op in ops {
            match op {
                MemberOp::Net { net, bits, add } => self.set(*net, *bits, *add),
                MemberOp::PortBits(b) => self.port_bits = Arc::clone(b),
            }
        }
    }

    fn set(&mut self, net: IpNet, bits: u32, add: bool) {
        let value = addr_bits(&net.addr());
        match net.version() {
            IpVersion::V4 => edit(&mut self.v4, net.prefix_len(), value as u32, bits, add),
            IpVersion::V6 => edit(&mut self.v6, net.prefix_len(), value, bits, add),
        }
    }

    /// True if prefix `net` itself (not a shorter prefix holding it) has all of `bits`.
    pub fn has_entry(&self, net: &IpNet, bits: u32) -> bool {
        let value = addr_bits(&net.addr());
        let len = net.prefix_len();
        let got = match net.version() {
            IpVersion::V4 => self
                .v4
                .iter()
                .find(|t| t.len == len)
                .map_or(0, |t| t.table.get(value as u32)),
            IpVersion::V6 => self
                .v6
                .iter()
                .find(|t| t.len == len)
                .map_or(0, |t| t.table.get(value)),
        };
        got & bits == bits
    }

    /// The set-class bitmask of an IPv4 address (as a host-order integer).
    #[inline(always)]
    pub fn bits_v4(&self, a: u32) -> u32 {
        self.v4.iter().fold(0, |b, t| b | t.table.get(a & t.mask))
    }

    /// The set-class bitmask of an IPv6 address.
    #[inline(always)]
    pub fn bits_v6(&self, a: u128) -> u32 {
        self.v6.iter().fold(0, |b, t| b | t.table.get(a & t.mask))
    }

    /// The set-class bitmask of an address.
    pub fn bits_of(&self, a: &IpAddr) -> u32 {
        match a {
            IpAddr::V4(v) => self.bits_v4(u32::from(*v)),
            IpAddr::V6(v) => self.bits_v6(u128::from(*v)),
        }
    }

    /// The port-class bitmask per port id.
    #[inline(always)]
    pub fn port_bits(&self) -> &[u64] {
        &self.port_bits
    }

    /// True if no set class has an entry (then no key needs a lookup).
    pub fn has_no_entries(&self) -> bool {
        self.v4.is_empty() && self.v6.is_empty()
    }

    /// Entries (prefix, class bits) in the table.
    pub fn len(&self) -> usize {
        self.v4.iter().map(|t| t.table.len).sum::<usize>()
            + self.v6.iter().map(|t| t.table.len).sum::<usize>()
    }

    /// True if the table has no entry.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Distinct prefix lengths per family (IPv4, IPv6): the probes per address.
    pub fn lengths(&self) -> (usize, usize) {
        (self.v4.len(), self.v6.len())
    }

    /// The prefixes of the class with bit `bit`, sorted.
    pub fn entries_of(&self, bit: u32) -> Vec<IpNet> {
        let mut out = Vec::new();
        for t in &self.v4 {
            for (k, _) in t.table.iter().filter(|e| e.1 & bit != 0) {
                let a = IpAddr::V4(std::net::Ipv4Addr::from(k));
                out.extend(IpNet::new(a, t.len));
            }
        }
        for t in &self.v6 {
            for (k, _) in t.table.iter().filter(|e| e.1 & bit != 0) {
                let a = IpAddr::V6(std::net::Ipv6Addr::from(k));
                out.extend(IpNet::new(a, t.len));
            }
        }
        out.sort();
        out
    }

    /// Writes the set-class group of a burst's keys of family `v` (source classes in bytes
    /// 60..62, destination classes in 62..64), reading the addresses the keys already hold;
    /// only the sides the rules read (`src`, `dst`) are looked up, the other is 0.
    #[inline]
    pub fn fill_keys(&self, v: IpVersion, keys: &mut [AclKey], src: bool, dst: bool) {
        match (v, src, dst) {
            (IpVersion::V4, true, true) => self.fill_v4::<true, true>(keys),
            (IpVersion::V4, true, false) => self.fill_v4::<true, false>(keys),
            (IpVersion::V4, false, _) => self.fill_v4::<false, true>(keys),
            (IpVersion::V6, true, true) => self.fill_v6::<true, true>(keys),
            (IpVersion::V6, true, false) => self.fill_v6::<true, false>(keys),
            (IpVersion::V6, false, _) => self.fill_v6::<false, true>(keys),
        }
    }

    #[inline(always)]
    fn fill_v4<const SRC: bool, const DST: bool>(&self, keys: &mut [AclKey]) {
        let word =
            |b: &[u8; 64], o: usize| u32::from_be_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
        for k in keys {
            let s = if SRC {
                self.bits_v4(word(&k.0, OFF_SRC))
            } else {
                0
            };
            let d = if DST {
                self.bits_v4(word(&k.0, OFF_DST))
            } else {
                0
            };
            let w = (s & 0xffff) << 16 | (d & 0xffff);
            k.0[OFF_SETS..OFF_SETS + 4].copy_from_slice(&w.to_be_bytes());
        }
    }

    #[inline(always)]
    fn fill_v6<const SRC: bool, const DST: bool>(&self, keys: &mut [AclKey]) {
        let addr = |b: &[u8; 64], o: usize| {
            let mut a = [0u8; 16];
            a.copy_from_slice(&b[o..o + 16]);
            u128::from_be_bytes(a)
        };
        for k in keys {
            let s = if SRC {
                self.bits_v6(addr(&k.0, OFF_SRC))
            } else {
                0
            };
            let d = if DST {
                self.bits_v6(addr(&k.0, OFF_DST))
            } else {
                0
            };
            let w = (s & 0xffff) << 16 | (d & 0xffff);
            k.0[OFF_SETS..OFF_SETS + 4].copy_from_slice(&w.to_be_bytes());
        }
    }
}

/// Sets or clears `bits` of prefix `value/len` in the per-length tables of one family
/// (kept sorted by length, longest first; a length's table goes when it empties).
fn edit<K: TableKey + MaskOf>(
    tables: &mut Vec<LenTable<K>>,
    len: u8,
    value: K,
    bits: u32,
    add: bool,
) {
    let pos = tables.iter().position(|t| t.len == len);
    match (pos, add) {
        (Some(i), true) => tables[i].table.set_bits(value, bits),
        (Some(i), false) => {
            tables[i].table.clear_bits(value, bits);
            if tables[i].table.len == 0 {
                tables.remove(i);
            }
        }
        (None, true) => {
            let mut table = ExactTable::with_capacity(MIN_SLOTS);
            table.set_bits(value, bits);
            tables.push(LenTable {
                len,
                mask: K::mask_of(len),
                table,
            });
            tables.sort_by_key(|t| std::cmp::Reverse(t.len));
        }
        (None, false) => {}
    }
}

/// The mask of a prefix length for a key type.
trait MaskOf {
    fn mask_of(len: u8) -> Self;
}

impl MaskOf for u32 {
    fn mask_of(len: u8) -> u32 {
        prefix_mask(u32::from(len), 32) as u32
    }
}

impl MaskOf for u128 {
    fn mask_of(len: u8) -> u128 {
        prefix_mask(u32::from(len), 128)
    }
}

/// What [`MemberPair::update`] did to the copies.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PairStats {
    /// Changes applied to the copy published by this update (the batch, plus a previous
    /// batch the copy had not received yet).
    pub applied: usize,
    /// The copy to publish was still held by a worker: it was rebuilt by copying the live
    /// one (a whole-table copy; 0 or 1).
    pub copies: usize,
}

/// The two copies of a [`MemberTable`]: `live` is what the workers were last given, `other`
/// lags it by `lag` (the batch not applied to it yet).
#[derive(Debug)]
pub struct MemberPair {
    live: Arc<MemberTable>,
    other: Arc<MemberTable>,
    lag: Vec<MemberOp>,
}

impl MemberPair {
    /// Both copies of `table`.
    pub fn new(table: MemberTable) -> MemberPair {
        MemberPair {
            other: Arc::new(table.clone()),
            live: Arc::new(table),
            lag: Vec::new(),
        }
    }

    /// The copy the workers were last given.
    pub fn live(&self) -> &Arc<MemberTable> {
        &self.live
    }

    /// Makes a copy holding the live membership plus `ops` and makes it live; returns it
    /// (to publish) with what it cost. The previous live copy becomes `other`, behind by
    /// `ops`: call [`MemberPair::catch_up`] once the workers have moved on.
    pub fn update(&mut self, ops: &[MemberOp]) -> (Arc<MemberTable>, PairStats) {
        let mut stats = PairStats::default();
        match Arc::get_mut(&mut self.other) {
            Some(t) => {
                t.apply(&self.lag);
                stats.applied += self.lag.len();
            }
            None => {
                // A worker still reads it: leave it to that worker, start from the live one.
                self.other = Arc::new((*self.live).clone());
                stats.copies = 1;
            }
        }
        self.lag.clear();
        let t = Arc::get_mut(&mut self.other).expect("unshared: checked or new above");
        t.apply(ops);
        stats.applied += ops.len();
        std::mem::swap(&mut self.live, &mut self.other);
        self.lag.extend_from_slice(ops);
        (Arc::clone(&self.live), stats)
    }

    /// Applies the lagging batch to `other` if no worker holds it any more; true if
    /// `other` is now in step with `live`.
    pub fn catch_up(&mut self) -> bool {
        if self.lag.is_empty() {
            return true;
        }
        match Arc::get_mut(&mut self.other) {
            Some(t) => {
                t.apply(&self.lag);
                self.lag.clear();
                true
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn union_over_prefix_lengths() {
        let mut t = MemberTable::default();
        t.apply(&[
            MemberOp::Net {
                net: net("10.0.0.1"),
                bits: 1,
                add: true,
            },
            MemberOp::Net {
                net: net("10.0.0.0/24"),
                bits: 2,
                add: true,
            },
            MemberOp::Net {
                net: net("10.0.0.1"),
                bits: 4,
                add: true,
            },
            MemberOp::Net {
                net: net("2001:db8::/32"),
                bits: 1,
                add: true,
            },
            MemberOp::Net {
                net: net("0.0.0.0/0"),
                bits: 8,
                add: true,
            },
        ]);
        assert_eq!(t.bits_of(&ip("10.0.0.1")), 1 | 2 | 4 | 8);
        assert_eq!(t.bits_of(&ip("10.0.0.2")), 2 | 8);
        assert_eq!(t.bits_of(&ip("10.0.1.1")), 8);
        assert_eq!(t.bits_of(&ip("2001:db8::7")), 1);
        assert_eq!(t.bits_of(&ip("2001:db9::7")), 0);
        assert_eq!(t.lengths(), (3, 1));
        assert_eq!(t.entries_of(1), vec![net("10.0.0.1"), net("2001:db8::/32")]);
        t.apply(&[
            MemberOp::Net {
                net: net("10.0.0.1"),
                bits: 1,
                add: false,
            },
            MemberOp::Net {
                net: net("0.0.0.0/0"),
                bits: 8,
                add: false,
            },
        ]);
        assert_eq!(t.bits_of(&ip("10.0.0.1")), 2 | 4);
        assert_eq!(t.lengths(), (2, 1), "the /0 table is gone");
    }

    #[test]
    fn fills_the_set_group_of_keys() {
        let mut t = MemberTable::default();
        t.apply(&[
            MemberOp::Net {
                net: net("10.0.0.1"),
                bits: 1,
                add: true,
            },
            MemberOp::Net {
                net: net("10.0.0.2"),
                bits: 0x8002,
                add: true,
            },
        ]);
        let mut k = AclKey::default();
        k.0[OFF_SRC..OFF_SRC + 4].copy_from_slice(&[10, 0, 0, 1]);
        k.0[OFF_DST..OFF_DST + 4].copy_from_slice(&[10, 0, 0, 2]);
        let mut keys = [k];
        t.fill_keys(IpVersion::V4, &mut keys, true, true);
        assert_eq!(&keys[0].0[OFF_SETS..OFF_SETS + 4], &[0, 1, 0x80, 2]);
    }

    #[test]
    fn left_right_applies_each_batch_to_both_copies() {
        let mut pair = MemberPair::new(MemberTable::default());
        let op = |s: &str, add| MemberOp::Net {
            net: net(s),
            bits: 1,
            add,
        };
        // A worker holds the live copy.
        let worker = Arc::clone(pair.live());
        let (a, st) = pair.update(&[op("10.0.0.1", true)]);
        assert_eq!(
            st,
            PairStats {
                applied: 1,
                copies: 0
            }
        );
        assert_eq!(a.bits_of(&ip("10.0.0.1")), 1);
        assert_eq!(
            worker.bits_of(&ip("10.0.0.1")),
            0,
            "the worker's copy is untouched"
        );
        // The worker has not moved on: the old copy cannot catch up yet.
        assert!(!pair.catch_up());
        drop(worker);
        assert!(pair.catch_up());
        // A worker now holds `a` (the live copy); the next update goes to the other copy,
        // which caught up, without copying.
        let worker = a;
        let (b, st) = pair.update(&[op("10.0.0.2", true)]);
        assert_eq!(
            st,
            PairStats {
                applied: 1,
                copies: 0
            }
        );
        assert_eq!(
            b.bits_of(&ip("10.0.0.1")) | b.bits_of(&ip("10.0.0.2")) << 1,
            3
        );
        // The worker keeps `a` across the next update too: `other` is `a`, still held, so
        // the update copies the live table.
        let (c, st) = pair.update(&[op("10.0.0.1", false)]);
        assert_eq!(
            st,
            PairStats {
                applied: 1,
                copies: 1
            }
        );
        assert_eq!(c.bits_of(&ip("10.0.0.1")), 0);
        assert_eq!(c.bits_of(&ip("10.0.0.2")), 1);
        assert_eq!(worker.bits_of(&ip("10.0.0.2")), 0);
    }

    fn arb_net() -> impl Strategy<Value = IpNet> {
        prop_oneof![
            (
                0u32..64,
                prop_oneof![Just(32u8), Just(24u8), Just(30u8), Just(0u8)]
            )
                .prop_map(|(a, l)| IpNet::new(
                    IpAddr::V4((0x0a00_0000 + a * 3).into()),
                    l
                )
                .unwrap()),
            (0u128..64, prop_oneof![Just(128u8), Just(64u8), Just(126u8)]).prop_map(|(a, l)| {
                IpNet::new(IpAddr::V6(((0x2001_0db8_u128 << 96) | (a * 5)).into()), l).unwrap()
            }),
        ]
    }

    proptest! {
        /// Random batches through the left-right pair, with random readers holding copies:
        /// every published copy answers exactly as a model of the sets does.
        #[test]
        fn pair_matches_model(
            batches in proptest::collection::vec(
                proptest::collection::vec((arb_net(), 0u32..4, any::<bool>()), 0..20), 1..30),
            holds in proptest::collection::vec(any::<bool>(), 30),
        ) {
            let mut model: BTreeMap<IpNet, u32> = BTreeMap::new();
            let mut pair = MemberPair::new(MemberTable::default());
            let mut held: Option<Arc<MemberTable>> = None;
            for (i, batch) in batches.iter().enumerate() {
                let ops: Vec<MemberOp> = batch
                    .iter()
                    .map(|&(net, b, add)| MemberOp::Net { net, bits: 1 << b, add })
                    .collect();
                for &(net, b, add) in batch {
                    let e = model.entry(net).or_insert(0);
                    if add { *e |= 1 << b } else { *e &= !(1 << b) }
                }
                let (live, _) = pair.update(&ops);
                held = if holds[i] { Some(Arc::clone(&live)) } else { None };
                pair.catch_up();
                let probes = batch.iter().map(|b| b.0.addr()).chain(
                    ["10.0.0.0", "10.0.0.3", "2001:db8::5", "2001:db8::"].map(ip));
                for a in probes {
                    let want = model
                        .iter()
                        .filter(|(n, _)| n.contains(&a))
                        .fold(0, |acc, (_, b)| acc | b);
                    prop_assert_eq!(live.bits_of(&a), want, "{}", a);
                }
                let len = model.values().filter(|b| **b != 0).count();
                prop_assert_eq!(live.len(), len);
            }
            drop(held);
        }
    }

    #[test]
    fn deletion_keeps_probe_chains() {
        // Many keys in a small table: deleting every other one must keep the rest findable.
        let mut t: ExactTable<u32> = ExactTable::with_capacity(4);
        for k in 0..5000u32 {
            t.set_bits(k * 7, 1);
        }
        for k in (0..5000u32).step_by(2) {
            t.clear_bits(k * 7, 1);
        }
        for k in 0..5000u32 {
            assert_eq!(t.get(k * 7), k % 2, "{k}");
        }
        assert_eq!(t.len, 2500);
    }
}
