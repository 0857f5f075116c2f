//! A per-worker cache of classifier results in front of rte_acl, keyed by exactly the key
//! bytes the classifier reads ([`VerdictCache`]).
//!
//! rte_acl walks its trie one key byte at a time, so its cost is fixed per byte walked
//! (see [`super::key`]): about 31-34 cycles for the 9 bytes of a compact security-group
//! rule set, 42 for 13, whatever the rule count. A packet of a flow already seen under the
//! same program gets the same result, so the node looks it up here first: one hash and one
//! 64-byte bucket (two entries) per packet, and rte_acl only for the misses, in one batch.
//! This is the megaflow idea of OVS's datapath (a cache of classification results keyed by
//! the fields the rules look at), kept exact: a packet hits only an entry whose bytes equal
//! every byte the classifier would read.
//!
//! # Exactness
//! * **Key**: the bytes of every field of the family's rte_acl layout
//!   ([`CompiledAcl::fields`]) that at least one rule constrains, as the 4-byte words that
//!   hold them, masked to those bytes. A field every rule leaves wildcard (e.g. the TCP
//!   source port of a security-group rule set) cannot change a result, bytes outside every
//!   field are never read by rte_acl (the node does not write them all, see `key`), and
//!   groups the layout elides are not read either: flows that differ only there share an
//!   entry, so one entry serves every connection from a client to a service port. Fields
//!   spread over more than [`MAX_WORDS`] words (IPv6 with addresses, the wide class layout)
//!   are not cached: those keys go straight to the classifier.
//! * **Families**: IPv4 and IPv6 keys read different words; an entry is stamped with its
//!   family and matches keys of that family only.
//! * **Program changes**: every entry carries the epoch it was written in; [`VerdictCache::
//!   install`] (called when the node adopts a new program, at a burst boundary) starts a new
//!   epoch, so no result of the old rules is ever returned for the new ones, and nothing is
//!   cleared on the worker (a wrap of the 31-bit epoch clears the table, once per 2^31
//!   updates).
//!
//! # Used only while it pays
//! A hit saves the classifier's walk; a miss costs the hash, the bucket read and the insert
//! on top of it, and a table larger than the L2 cache makes hits slower too. Which wins
//! depends on the traffic (on this machine, at 1k rules, the cache always on: 10k flows 34
//! against 47 cycles/packet, 30k flows 51 against 47), so the cache measures itself: time runs in
//! windows of as many lookups as the table has entries (at least [`MIN_WINDOW`]), and a
//! period of [`PERIOD`] windows ends with three: one timed in the period's mode, one with
//! the cache on (untimed: it refills the table after a period without it), one timed in the
//! other mode (cache on: look up, classify the misses, insert; off: classify all, touch
//! nothing). The next period uses the cache only if its timed window cost less per key than
//! the uncached one. A timed window with the cache always follows one with it, so a table
//! that is only cold (a worker's start, flows that changed while it was off) is not taken
//! for a useless one. The first period is its last four windows (the cache on, then the
//! three), so a worker picks its mode at once. While the cache is in use, periods are
//! [`PERIOD`] windows, so traffic it stops paying for is noticed soon; each period that
//! confirms going without it doubles the next one, up to [`MAX_PERIOD`] windows (the
//! trials with a cold cache are what cost there). So the wrong mode costs at most two
//! windows of a period, a window is long enough for a cycle of flows that fits the table
//! to fill it and hit, and the timing is two TSC reads per burst in two windows of a
//! period.
//!
//! Measured and not kept: a hit-rate threshold instead of timing (step aside when fewer
//! than a quarter of a window's lookups hit): hits from a table larger than the L2 cache
//! are not cheap, so 30k flows cost 52-59 cycles/packet at 54-57% hits against 47.4-48.5
//! without the cache, and with a window shorter than the flow cycle a cold table never
//! warmed up. FIFO replacement in a bucket (random is kept: a cycle of three flows over
//! two ways then keeps some of them).
//!
//! # Hot path
//! No allocation (the table and the scratch are allocated once), no lock (per worker):
//! pass 1 gathers and hashes each key, pass 2 compares it with its bucket's two entries
//! (independent loads, so the bucket misses of a burst overlap), the misses go to the
//! classifier in one call, pass 3 inserts them.

use super::key::{is_wildcard, AclKey, BurstClassifier, CompiledAcl};
use super::model::IpVersion;
use crate::flow_key::hash5;
use crate::graph::VECTOR_SIZE;

/// Most 4-byte groups a family's layout may read for its keys to be cached.
pub const MAX_WORDS: usize = 6;

/// Default number of entries per worker (two per 64-byte bucket: 2 MiB).
pub const DEFAULT_ENTRIES: usize = 1 << 16;

/// Most entries per worker.
pub const MAX_ENTRIES: usize = 1 << 26;

/// Fewest lookups per window.
pub const MIN_WINDOW: u32 = 2048;

/// Windows per period while the cache is in use (and after a change of mode); the last
/// three are the timed window of the period's mode, a window with the cache, the timed
/// window of the other mode.
pub const PERIOD: u32 = 32;

/// Most windows per period (reached by periods that confirm going without the cache).
pub const MAX_PERIOD: u32 = 512;

/// The words of one family's keys that the classifier reads: offsets and byte masks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Plan {
    offsets: [u8; MAX_WORDS],
    masks: [u32; MAX_WORDS],
}

impl Plan {
    /// The plan for `acl`'s layout of family `v`: the fields some rule constrains (a field
    /// every rule leaves wildcard cannot change a result). `None` when they lie in more
    /// than [`MAX_WORDS`] groups or one does not sit inside an aligned 4-byte word.
    fn of(acl: &CompiledAcl, v: IpVersion) -> Option<Plan> {
        let mut plan = Plan::default();
        let mut n = 0usize;
        let rules = acl.rules_of(v);
        for (i, f) in acl.fields(v).iter().enumerate() {
            if rules.iter().all(|r| is_wildcard(f, &r.fields[i])) {
                continue;
            }
            let off = f.offset as usize;
            let start = off & !3;
            let size = usize::from(f.size);
            if size == 0 || off + size > start + 4 || start + 4 > super::key::KEY_LEN {
                return None;
            }
            let w = match plan.offsets[..n]
                .iter()
                .position(|&o| usize::from(o) == start)
            {
                Some(w) => w,
                None if n < MAX_WORDS => {
                    plan.offsets[n] = start as u8;
                    n += 1;
                    n - 1
                }
                None => return None,
            };
            let mut bytes = plan.masks[w].to_ne_bytes();
            bytes[off - start..off - start + size].fill(0xff);
            plan.masks[w] = u32::from_ne_bytes(bytes);
        }
        // Unused words keep mask 0 (offset 0): they read as zero.
        Some(plan)
    }

    /// The cache key of `key`: the words the classifier reads, masked.
    #[inline(always)]
    fn gather(&self, key: &AclKey) -> [u32; MAX_WORDS] {
        let mut w = [0u32; MAX_WORDS];
        for ((w, &o), &m) in w.iter_mut().zip(&self.offsets).zip(&self.masks) {
            let b = &key.0[usize::from(o)..usize::from(o) + 4];
            *w = u32::from_ne_bytes([b[0], b[1], b[2], b[3]]) & m;
        }
        w
    }
}

/// The cache plans of one compiled rule set, per family (`None`: that family's keys are not
/// cached). Computed when the program is built, on the control thread
/// ([`super::publish::AclProgram::build`]): it scans every rule's fields, which a worker
/// must not do when it adopts a program between two bursts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CachePlans([Option<Plan>; 2]);

impl CachePlans {
    /// The plans for `acl`.
    pub fn of(acl: &CompiledAcl) -> Self {
        CachePlans([Plan::of(acl, IpVersion::V4), Plan::of(acl, IpVersion::V6)])
    }
}

/// One cached result: the key's words, its stamp (the epoch it was written in, shifted
/// left by one, or'ed with its family; 0: empty), the
/// classifier's result.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
struct Entry {
    words: [u32; MAX_WORDS],
    stamp: u32,
    result: u32,
}

/// Two entries in one cache line; an insert takes an empty or stale way, else evicts one
/// chosen by a hash bit (random replacement: a cyclic scan over more flows than fit keeps
/// a share of them, where LRU or FIFO would keep none).
#[derive(Clone, Copy, Debug, Default)]
#[repr(C, align(64))]
struct Bucket {
    ways: [Entry; 2],
}

/// Counts of one [`VerdictCache::classify`] call.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheOutcome {
    /// Keys answered from the cache.
    pub hits: u32,
    /// Keys sent to the classifier (misses, uncacheable families, windows without the
    /// cache).
    pub classified: u32,
}

impl std::ops::AddAssign for CacheOutcome {
    fn add_assign(&mut self, o: CacheOutcome) {
        self.hits += o.hits;
        self.classified += o.classified;
    }
}

/// Classifies `keys` without the cache.
#[inline(always)]
fn uncached<C: BurstClassifier>(
    classifier: &C,
    v: IpVersion,
    keys: &[AclKey],
    results: &mut [u32],
) -> CacheOutcome {
    classifier.classify_burst(v, keys, results);
    CacheOutcome {
        hits: 0,
        classified: keys.len() as u32,
    }
}

/// Per-burst scratch, allocated once.
struct Scratch {
    words: [[u32; MAX_WORDS]; VECTOR_SIZE],
    hash: [u32; VECTOR_SIZE],
    miss_keys: [AclKey; VECTOR_SIZE],
    miss_idx: [u16; VECTOR_SIZE],
    miss_res: [u32; VECTOR_SIZE],
}

/// The verdict cache of one worker's ACL node (see the module docs).
pub struct VerdictCache {
    buckets: Box<[Bucket]>,
    mask: usize,
    epoch: u32,
    plans: CachePlans,
    /// Whether this period uses the cache (outside its last window).
    use_cache: bool,
    /// Lookups per window.
    window: u32,
    /// Windows in this period.
    period: u32,
    /// Window number in the period, `0..period`.
    window_no: u32,
    /// Keys so far in this window.
    window_keys: u32,
    /// Cycles of this window's calls, when it is timed.
    window_cycles: u64,
    /// Cycles per 16 keys of the period's timed window in the current mode.
    cost_current: u64,
    clock: fn() -> u64,
    scratch: Box<Scratch>,
}

impl std::fmt::Debug for VerdictCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerdictCache")
            .field("entries", &self.entries())
            .field("epoch", &self.epoch)
            .field("cached_families", &self.plans.0.map(|p| p.is_some()))
            .field("in_use", &self.in_use())
            .finish()
    }
}

impl VerdictCache {
    /// A cache of at least `entries` entries (rounded up to a power of two, at least 2),
    /// for a program with cache plans `plans`; its first two windows time it with and without
    /// the cache.
    pub fn new(entries: usize, plans: CachePlans) -> Self {
        Self::with_clock(entries, plans, crate::cycles::now)
    }

    /// As [`VerdictCache::new`], timing itself with `clock` (tests drive time).
    pub fn with_clock(entries: usize, plans: CachePlans, clock: fn() -> u64) -> Self {
        let buckets = (entries.clamp(2, MAX_ENTRIES) / 2).next_power_of_two();
        // On 4 KiB pages. (A 2 MiB-aligned table on a transparent huge page, as the
        // connection table gets, measured the same: acl-bench 1k rules, 10k flows 35.8-36.3
        // against 36.0-36.6 cycles/packet, 1k flows 30.3-31.2 against 30.1-30.3.)
        let mut c = VerdictCache {
            buckets: vec![Bucket::default(); buckets].into_boxed_slice(),
            mask: buckets - 1,
            epoch: 0,
            plans,
            use_cache: true,
            window: ((buckets * 2) as u32).max(MIN_WINDOW),
            // The first period is its last four windows: the mode is chosen at once.
            period: PERIOD,
            window_no: PERIOD - 4,
            window_keys: 0,
            window_cycles: 0,
            cost_current: 0,
            clock,
            scratch: Box::new(Scratch {
                words: [[0; MAX_WORDS]; VECTOR_SIZE],
                hash: [0; VECTOR_SIZE],
                miss_keys: [AclKey::default(); VECTOR_SIZE],
                miss_idx: [0; VECTOR_SIZE],
                miss_res: [0; VECTOR_SIZE],
            }),
        };
        c.install(plans);
        c
    }

    /// Entries the table holds.
    pub fn entries(&self) -> usize {
        self.buckets.len() * 2
    }

    /// Lookups per window.
    pub fn window(&self) -> u32 {
        self.window
    }

    /// Whether cacheable keys are looked up now (see "Used only while it pays").
    pub fn in_use(&self) -> bool {
        match self.period - self.window_no {
            1 => !self.use_cache,
            2 => true,
            _ => self.use_cache,
        }
    }

    /// Whether keys of family `v` are cached under the current program.
    pub fn caches(&self, v: IpVersion) -> bool {
        self.plans.0[family(v)].is_some()
    }

    /// Starts a new epoch for a program with cache plans `plans`: no entry written before is
    /// returned again.
    pub fn install(&mut self, plans: CachePlans) {
        self.epoch += 1;
        if self.epoch == 1 << 31 {
            self.buckets.fill(Bucket::default());
            self.epoch = 1;
        }
        self.plans = plans;
    }

    /// Classifies `keys` of family `v` with `classifier` (the program installed last),
    /// answering what it can from the cache: `results[i]` for `keys[i]`, exactly what
    /// `classifier.classify` would give (`results` is at least as long as `keys`). The node
    /// passes one burst, at most [`VECTOR_SIZE`] keys; longer slices go by chunks of that.
    #[inline]
    pub fn classify<C: BurstClassifier>(
        &mut self,
        classifier: &C,
        v: IpVersion,
        keys: &[AclKey],
        results: &mut [u32],
    ) -> CacheOutcome {
        let mut total = CacheOutcome::default();
        for (keys, results) in keys
            .chunks(VECTOR_SIZE)
            .zip(results.chunks_mut(VECTOR_SIZE))
        {
            let Some(plan) = self.plans.0[family(v)] else {
                total += uncached(classifier, v, keys, results);
                continue;
            };
            let timed = matches!(self.period - self.window_no, 1 | 3);
            let t0 = if timed { (self.clock)() } else { 0 };
            total += if self.in_use() {
                self.lookup(plan, classifier, v, keys, results)
            } else {
                uncached(classifier, v, keys, results)
            };
            if timed {
                self.window_cycles += (self.clock)().wrapping_sub(t0);
            }
            self.window_keys += keys.len() as u32;
            if self.window_keys >= self.window {
                self.end_window();
            }
        }
        total
    }

    /// Closes a window: records the cost of a timed one, decides the mode at the end of a
    /// period.
    fn end_window(&mut self) {
        let cost = self.window_cycles * 16 / u64::from(self.window_keys.max(1));
        let left = self.period - self.window_no;
        self.window_no += 1;
        if left == 3 {
            self.cost_current = cost;
        } else if left == 1 {
            // The other mode's cost: the cache is used while it is strictly cheaper.
            let (on, off) = if self.use_cache {
                (self.cost_current, cost)
            } else {
                (cost, self.cost_current)
            };
            let was = self.use_cache;
            self.use_cache = on < off;
            self.period = if !was && !self.use_cache {
                (self.period * 2).min(MAX_PERIOD)
            } else {
                PERIOD
            };
            self.window_no = 0;
        }
        self.window_keys = 0;
        self.window_cycles = 0;
    }

    /// The cached path: lookups, one classify call for the misses, inserts.
    #[inline(always)]
    fn lookup<C: BurstClassifier>(
        &mut self,
        plan: Plan,
        classifier: &C,
        v: IpVersion,
        keys: &[AclKey],
        results: &mut [u32],
    ) -> CacheOutcome {
        let k = keys.len();
        let (epoch, mask) = (self.epoch, self.mask);
        let stamp = epoch << 1 | family(v) as u32;
        let s = &mut *self.scratch;
        let buckets = &mut *self.buckets;
        // Pass 1: gather and hash. (Touching each bucket here, as the connection table does,
        // was slower: acl-bench 1k rules, 10k flows 34.4-35.0 -> 40.5-40.6 cycles/packet.)
        for (t, key) in keys.iter().enumerate() {
            let w = plan.gather(key);
            let h = hash5(
                u64::from(w[0]) | u64::from(w[1]) << 32,
                u64::from(w[2]) | u64::from(w[3]) << 32,
                u64::from(w[4]) | u64::from(w[5]) << 32,
                0,
                0,
            );
            s.words[t] = w;
            // The bucket is the low bits (at most 25), the way to evict bit 31.
            s.hash[t] = (h >> 32) as u32;
        }
        // Pass 2: compare; misses are copied out for one classify call.
        let mut m = 0usize;
        for t in 0..k {
            let bk = &buckets[s.hash[t] as usize & mask];
            let w = &s.words[t];
            let [a, b] = &bk.ways;
            if a.words == *w && a.stamp == stamp {
                results[t] = a.result;
            } else if b.words == *w && b.stamp == stamp {
                results[t] = b.result;
            } else {
                s.miss_keys[m] = keys[t];
                s.miss_idx[m] = t as u16;
                m += 1;
            }
        }
        // Pass 3: classify the misses, insert them.
        if m != 0 {
            classifier.classify_burst(v, &s.miss_keys[..m], &mut s.miss_res[..m]);
            for j in 0..m {
                let t = usize::from(s.miss_idx[j]);
                let r = s.miss_res[j];
                results[t] = r;
                let bk = &mut buckets[s.hash[t] as usize & mask];
                let fresh = Entry {
                    words: s.words[t],
                    stamp,
                    result: r,
                };
                // A flow seen twice in one burst misses twice but is stored once.
                if bk.ways.contains(&fresh) {
                    continue;
                }
                let way = if bk.ways[0].stamp >> 1 != epoch {
                    0
                } else if bk.ways[1].stamp >> 1 != epoch {
                    1
                } else {
                    (s.hash[t] >> 31) as usize
                };
                bk.ways[way] = fresh;
            }
        }
        CacheOutcome {
            hits: (k - m) as u32,
            classified: m as u32,
        }
    }
}

#[inline(always)]
fn family(v: IpVersion) -> usize {
    match v {
        IpVersion::V4 => 0,
        IpVersion::V6 => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::acl::expand::{AclTable, ExpandLimits};
    use crate::acl::key::{compile, Classify, LinearClassifier};
    use crate::acl::model::{AclConfig, RuleSet};
    use crate::graph::PortInfo;
    use crate::meta::PacketMeta;
    use proptest::prelude::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Counts the keys it is asked to classify.
    struct Counting(LinearClassifier, AtomicUsize);

    impl Counting {
        fn asked(&self) -> usize {
            self.1.load(Ordering::Relaxed)
        }
    }

    impl Classify for Counting {
        fn build(acl: &CompiledAcl) -> Result<Self, crate::acl::CompileError> {
            Ok(Counting(LinearClassifier::build(acl)?, AtomicUsize::new(0)))
        }
        fn classify(&self, family: IpVersion, keys: &[AclKey], results: &mut [u32]) {
            self.1.fetch_add(keys.len(), Ordering::Relaxed);
            NOW.with(|n| n.set(n.get() + 10 * keys.len() as u64));
            self.0.classify(family, keys, results)
        }
        fn describe(&self) -> String {
            "counting".into()
        }
    }

    fn ports() -> Vec<PortInfo> {
        ["a", "b", "c"]
            .iter()
            .enumerate()
            .map(|(i, n)| PortInfo::new(i as u16, *n, "x"))
            .collect()
    }

    fn compiled(text: &str) -> CompiledAcl {
        let cfg: AclConfig = toml::from_str(text).unwrap();
        let table =
            AclTable::new(RuleSet::from_config(&cfg).unwrap(), ExpandLimits::default()).unwrap();
        compile(&table, &ports()).unwrap()
    }

    const RULES: &str = r#"
        default = "drop"
        [address_sets]
        clients = ["10.0.0.0/24", "10.0.2.0/24"]
        [port_groups]
        front = ["a"]
        [[rules]]
        name = "web"
        direction = "from-lport"
        priority = 100
        match = "inport == @front && ip4 && ip4.src == $clients && tcp.dst == 80"
        action = "allow"
        [[rules]]
        name = "ssh"
        direction = "from-lport"
        priority = 90
        match = "ip4 && tcp.dst == 22"
        action = "reject"
    "#;

    /// A TCP/IPv4 key from port `inp`; `junk` fills the bytes no field covers.
    fn key(acl: &CompiledAcl, inp: u16, src: [u8; 4], sport: u16, dport: u16, junk: u8) -> AclKey {
        let m = PacketMeta {
            ip_version: 4,
            protocol: 6,
            src_addr: PacketMeta::v4_bytes(src),
            dst_addr: PacketMeta::v4_bytes([10, 9, 9, 9]),
            src_port: sport,
            dst_port: dport,
            ..PacketMeta::default()
        };
        let mut k = AclKey([junk; crate::acl::key::KEY_LEN]);
        k.set_from_meta(&m, acl.class_words(inp, u16::MAX), &acl.protos);
        k
    }

    #[test]
    fn hits_give_the_classifiers_result_and_ignore_bytes_no_rule_reads() {
        let acl = compiled(RULES);
        let c = Counting::build(&acl).unwrap();
        let mut cache = VerdictCache::new(1024, CachePlans::of(&acl));
        assert!(cache.caches(IpVersion::V4));
        // 200 packets of 24 flows: (input port, source address, destination port) cycle
        // with periods 2, 8 and 3; `sport` gives each packet's source port.
        let flows = |sport: &dyn Fn(u16) -> u16, junk: u8| -> Vec<AclKey> {
            (0..200u16)
                .map(|i| {
                    let dport = [80, 22, 443][usize::from(i % 3)];
                    let src = [10, 0, (i % 4) as u8, (i % 8) as u8];
                    key(&acl, i % 2, src, sport(i), dport, junk)
                })
                .collect()
        };
        let keys = flows(&|i| 1000 + i, 0xa5);
        let mut want = vec![0; keys.len()];
        c.0.classify(IpVersion::V4, &keys, &mut want);
        assert!(
            want.contains(&1) && want.contains(&2) && want.contains(&0),
            "{want:?}"
        );
        let mut got = vec![u32::MAX; keys.len()];
        let first = cache.classify(&c, IpVersion::V4, &keys, &mut got);
        assert_eq!(got, want);
        assert_eq!(first.hits + first.classified, 200);
        // A burst is looked up before any of its misses is inserted: all 200 classified.
        assert_eq!(
            first,
            CacheOutcome {
                hits: 0,
                classified: 200
            }
        );
        assert_eq!(c.asked(), 200);
        // 24 distinct (port, address, destination port) triples; the source port (1000 + i,
        // all different) is constrained by no rule, so keys that differ only
        // there share an entry.
        let stored = cache
            .buckets
            .iter()
            .flat_map(|b| &b.ways)
            .filter(|e| e.stamp >> 1 == cache.epoch);
        assert_eq!(stored.count(), 24);
        // The same flows again, other junk in the unread bytes and other source ports:
        // all hits, same results, the classifier not called.
        let again = flows(&|_| 7, 0x5a);
        let mut got2 = vec![u32::MAX; keys.len()];
        let before = c.asked();
        let second = cache.classify(&c, IpVersion::V4, &again, &mut got2);
        assert_eq!(got2, want);
        assert_eq!(
            second,
            CacheOutcome {
                hits: 200,
                classified: 0
            }
        );
        assert_eq!(c.asked(), before);
    }

    #[test]
    fn more_keys_than_a_burst_go_by_bursts() {
        let acl = compiled(RULES);
        let c = Counting::build(&acl).unwrap();
        let mut cache = VerdictCache::new(4096, CachePlans::of(&acl));
        let keys: Vec<AclKey> = (0..3 * VECTOR_SIZE as u32 + 7)
            .map(|i| {
                key(
                    &acl,
                    0,
                    [10, 0, (i % 3) as u8, i as u8],
                    1000,
                    [80, 22][i as usize % 2],
                    0,
                )
            })
            .collect();
        let mut want = vec![0; keys.len()];
        c.0.classify(IpVersion::V4, &keys, &mut want);
        let mut got = vec![u32::MAX; keys.len()];
        let o = cache.classify(&c, IpVersion::V4, &keys, &mut got);
        assert_eq!(got, want);
        assert_eq!(o.hits + o.classified, keys.len() as u32);
        assert!(o.hits > 0, "{o:?}");
    }

    #[test]
    fn a_new_program_never_gets_the_old_programs_results() {
        let acl = compiled(RULES);
        let c = Counting::build(&acl).unwrap();
        let mut cache = VerdictCache::new(64, CachePlans::of(&acl));
        let k = [key(&acl, 0, [10, 0, 0, 1], 1000, 80, 0)];
        let mut r = [u32::MAX];
        cache.classify(&c, IpVersion::V4, &k, &mut r);
        assert_eq!(r, [1]);
        // The web rule now drops (and comes second): the same key must get the new result.
        let acl2 = compiled(&RULES.replace("action = \"allow\"", "action = \"drop\""));
        let c2 = Counting::build(&acl2).unwrap();
        cache.install(CachePlans::of(&acl2));
        let mut r2 = [u32::MAX];
        let o = cache.classify(&c2, IpVersion::V4, &k, &mut r2);
        assert_eq!(o.hits, 0);
        let mut want = [0];
        c2.0.classify(IpVersion::V4, &k, &mut want);
        assert_eq!(r2, want);
        assert_eq!(c2.asked(), 1);
    }

    #[test]
    fn families_never_share_entries() {
        // Both families read the same words (protocol, destination port): equal words,
        // different results.
        let acl = compiled(
            r#"
            default = "drop"
            [[rules]]
            name = "v4"
            direction = "from-lport"
            priority = 10
            match = "ip4 && tcp.dst == 80"
            action = "allow"
            [[rules]]
            name = "v6"
            direction = "from-lport"
            priority = 10
            match = "ip6 && tcp.dst == 80"
            action = "drop"
        "#,
        );
        let c = Counting::build(&acl).unwrap();
        let mut cache = VerdictCache::new(64, CachePlans::of(&acl));
        let k4 = key(&acl, 0, [10, 0, 0, 1], 1000, 80, 0);
        let m = PacketMeta {
            ip_version: 6,
            protocol: 6,
            src_port: 1000,
            dst_port: 80,
            ..PacketMeta::default()
        };
        let mut k6 = AclKey::default();
        k6.set_from_meta(&m, acl.class_words(0, u16::MAX), &acl.protos);
        let (p4, p6) = (Plan::of(&acl, IpVersion::V4), Plan::of(&acl, IpVersion::V6));
        assert_eq!(p4.unwrap().gather(&k4), p6.unwrap().gather(&k6));
        for _ in 0..2 {
            let (mut r4, mut r6) = ([0], [0]);
            cache.classify(&c, IpVersion::V4, &[k4], &mut r4);
            cache.classify(&c, IpVersion::V6, &[k6], &mut r6);
            assert_eq!((r4, r6), ([1], [2]));
        }
    }

    #[test]
    fn epoch_wrap_clears_the_table() {
        let acl = compiled(RULES);
        let c = Counting::build(&acl).unwrap();
        let mut cache = VerdictCache::new(64, CachePlans::of(&acl));
        let k = [key(&acl, 0, [10, 0, 0, 1], 1000, 80, 0)];
        let mut r = [0];
        cache.classify(&c, IpVersion::V4, &k, &mut r);
        cache.epoch = (1 << 31) - 1;
        cache.install(CachePlans::of(&acl));
        assert_eq!(cache.epoch, 1);
        assert!(cache
            .buckets
            .iter()
            .all(|b| b.ways.iter().all(|e| e.stamp == 0)));
        let o = cache.classify(&c, IpVersion::V4, &k, &mut r);
        assert_eq!((o.hits, r), (0, [1]));
    }

    thread_local! {
        /// The fake clock of this test thread: [`Counting`] advances it by 10 per key
        /// classified, so in these tests only the classifier costs time.
        static NOW: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
    }

    fn fake_now() -> u64 {
        NOW.with(|n| n.get())
    }

    #[test]
    fn the_cache_is_used_only_while_it_measures_cheaper() {
        let acl = compiled(RULES);
        let c = Counting::build(&acl).unwrap();
        let mut cache = VerdictCache::with_clock(4096, CachePlans::of(&acl), fake_now);
        assert_eq!(cache.window(), 4096);
        let bursts_per_period = (cache.window() * PERIOD) as usize / VECTOR_SIZE;
        let mut i = 0u32;
        // Every key new (distinct source addresses, which the rules read).
        let mut scan = || -> Vec<AclKey> {
            (0..VECTOR_SIZE)
                .map(|_| {
                    i += 1;
                    key(
                        &acl,
                        0,
                        [10, (i >> 16) as u8, (i >> 8) as u8, i as u8],
                        1,
                        80,
                        0,
                    )
                })
                .collect()
        };
        let same = scan();
        let mut want = [0u32; VECTOR_SIZE];
        c.0.classify(IpVersion::V4, &same, &mut want);
        let mut r = [0u32; VECTOR_SIZE];
        // The first period is its last four windows: cache on (untimed), on (timed), on
        // (untimed), off (timed). A scan: the cached window costs what the uncached one does
        // (every key classified), not less: the next period goes without the cache.
        assert!(cache.in_use());
        for _ in 0..4 * 16 {
            let o = cache.classify(&c, IpVersion::V4, &scan(), &mut r);
            assert_eq!(o.hits, 0);
        }
        assert!(!cache.in_use());
        // Without the cache even repeated keys are all classified (nothing is inserted),
        // through the period's timed window without it...
        let before = c.asked();
        let uncached = bursts_per_period - 2 * 16;
        for _ in 0..uncached {
            let o = cache.classify(&c, IpVersion::V4, &same, &mut r);
            assert_eq!(o.hits, 0);
            assert_eq!(r, want);
        }
        assert_eq!(c.asked() - before, uncached * VECTOR_SIZE);
        // ... then a window with the cache fills it, and the timed one with it hits: the
        // cache is used again.
        for b in 0..32 {
            assert!(cache.in_use(), "burst {b}");
            let o = cache.classify(&c, IpVersion::V4, &same, &mut r);
            assert_eq!(r, want);
            if b > 0 {
                // (A few of the 256 keys may share a bucket with two others.)
                assert!(o.hits >= VECTOR_SIZE as u32 * 9 / 10, "{o:?}");
            }
        }
        assert!(cache.in_use());
        // While it hits, the uncached trial costs more: it stays in use.
        for _ in 0..bursts_per_period {
            cache.classify(&c, IpVersion::V4, &same, &mut r);
        }
        assert!(cache.in_use());
        assert_eq!(r, want);
        assert_eq!(cache.period, PERIOD);
        // A scan again: one period to turn the cache off; then every period that confirms
        // it doubles the next, up to MAX_PERIOD.
        let mut scan_windows = |cache: &mut VerdictCache, windows: u32| {
            for _ in 0..windows * 16 {
                cache.classify(&c, IpVersion::V4, &scan(), &mut r);
            }
        };
        scan_windows(&mut cache, PERIOD);
        assert_eq!((cache.in_use(), cache.period), (false, PERIOD));
        let mut period = PERIOD;
        while period < MAX_PERIOD {
            scan_windows(&mut cache, period);
            period *= 2;
            assert_eq!((cache.in_use(), cache.period), (false, period));
        }
        scan_windows(&mut cache, MAX_PERIOD);
        assert_eq!((cache.in_use(), cache.period), (false, MAX_PERIOD));
    }

    #[test]
    fn plans_cover_every_constrained_field_byte_and_refuse_wide_keys() {
        let acl = compiled(RULES);
        let plan = Plan::of(&acl, IpVersion::V4).unwrap();
        let covered = |byte: usize| {
            plan.offsets
                .iter()
                .zip(&plan.masks)
                .any(|(&o, m)| usize::from(o) == byte & !3 && m.to_ne_bytes()[byte & 3] == 0xff)
        };
        let rules = acl.rules_of(IpVersion::V4);
        for (i, f) in acl.fields(IpVersion::V4).iter().enumerate() {
            let constrained = rules.iter().any(|r| !is_wildcard(f, &r.fields[i]));
            for byte in f.offset as usize..f.offset as usize + usize::from(f.size) {
                assert_eq!(covered(byte), constrained, "byte {byte} of {f:?}");
            }
        }
        // The TCP source port (bytes 20..22) is read by rte_acl but by no rule.
        assert!(!covered(20) && !covered(21) && covered(24) && covered(0));
        // No IPv6 rule: every IPv6 key has the same result, one entry.
        assert_eq!(Plan::of(&acl, IpVersion::V6).unwrap().masks, [0; MAX_WORDS]);
        // Whole IPv6 source and destination addresses: 8 words, not cached.
        let v6 = compiled(&RULES.replace(
            "ip4 && tcp.dst == 22",
            "ip6.src == fd00::1 && ip6.dst == fd01::2 && tcp.dst == 22",
        ));
        assert!(Plan::of(&v6, IpVersion::V6).is_none());
        assert!(Plan::of(&v6, IpVersion::V4).is_some());
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

        /// Random traffic over few flows, a small table (evictions), and program changes at
        /// random points: every result equals the classifier's own.
        #[test]
        fn cached_results_equal_the_classifiers(
            flows in prop::collection::vec((0u16..3, 0u8..4, any::<u8>(), prop::sample::select(vec![22u16, 80, 443, 8080])), 1..64),
            picks in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..600),
            swaps in prop::collection::vec(0usize..600, 0..3),
            entries in 2usize..64,
        ) {
            let programs = [compiled(RULES), compiled(&RULES.replace("tcp.dst == 80", "tcp.dst == 443"))];
            let classifiers = [Counting::build(&programs[0]).unwrap(), Counting::build(&programs[1]).unwrap()];
            let mut cur = 0;
            let mut cache = VerdictCache::new(entries, CachePlans::of(&programs[0]));
            for (n, chunk) in picks.chunks(37).enumerate() {
                if swaps.iter().any(|&s| s / 37 == n) {
                    cur ^= 1;
                    cache.install(CachePlans::of(&programs[cur]));
                }
                let keys: Vec<AclKey> = chunk.iter().map(|(ix, junk)| {
                    let (inp, net, host, dport) = *ix.get(&flows);
                    key(&programs[cur], inp, [10, 0, net, host], 5000, dport, *junk)
                }).collect();
                let mut want = vec![0; keys.len()];
                classifiers[cur].0.classify(IpVersion::V4, &keys, &mut want);
                let mut got = vec![u32::MAX; keys.len()];
                cache.classify(&classifiers[cur], IpVersion::V4, &keys, &mut got);
                prop_assert_eq!(got, want);
            }
        }
    }
}
