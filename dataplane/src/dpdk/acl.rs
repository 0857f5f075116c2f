//! rte_acl behind a typestate: an [`AclBuilder`] takes rules, [`AclBuilder::build`] turns it
//! into an [`AclClassifier`] (`Send + Sync`, classify-only, freed on drop). Both use the
//! key layouts of [`pipeline::acl::key`] (64-byte [`AclKey`] buffers, IPv4 and IPv6
//! layouts), so a classify call never reads outside a key: the last 4-byte input group
//! ends at byte 44 (IPv4) or 56 (IPv6) of 64.
//!
//! The classify method is chosen at build from the CPU and EAL's max SIMD width: the
//! first of AVX512x32, AVX512x16, AVX2, SSE, scalar that `rte_acl_set_ctx_classify`
//! accepts (AVX512x32 needs EAL's SIMD limit at 512 bits, `[eal] max_simd_bitwidth = 512`;
//! AVX512x16 works within DPDK's default 256); [`AclClassifier::alg`]
//! reports it. rte_acl allocates from EAL memory: building needs an initialised EAL.
//!
//! [`DpClassifier`] is what the dataplane's `acl` node runs: rte_acl when EAL is up, the
//! pipeline's linear model otherwise (only `dataplane check`, which builds the graph to
//! validate it without starting DPDK). Both families are compiled: IPv4 and IPv6 each get
//! their own context (none if a family has no rules).

use std::ffi::CString;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use pipeline::acl::key::{
    AclKey, ClassLayout, Classify, CompileError, CompiledAcl, CompiledRule, FieldDef,
    LinearClassifier,
};
use pipeline::acl::{AclHub, HubRegistry, IpVersion};
use pipeline::{PacketBuf, Registry, VECTOR_SIZE};

use super::DpdkError;

/// An rte_acl classify implementation (`enum rte_acl_classify_alg`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClassifyAlg {
    /// Generic C.
    Scalar,
    /// SSE4.1, 8 flows at a time.
    Sse,
    /// AVX2, 16 flows.
    Avx2,
    /// AVX512, 16 flows.
    Avx512x16,
    /// AVX512, 32 flows.
    Avx512x32,
}

impl ClassifyAlg {
    /// Best first.
    pub const PREFERENCE: [ClassifyAlg; 5] = [
        ClassifyAlg::Avx512x32,
        ClassifyAlg::Avx512x16,
        ClassifyAlg::Avx2,
        ClassifyAlg::Sse,
        ClassifyAlg::Scalar,
    ];

    fn raw(self) -> dpdk_sys::rte_acl_classify_alg {
        match self {
            ClassifyAlg::Scalar => dpdk_sys::RTE_ACL_CLASSIFY_SCALAR,
            ClassifyAlg::Sse => dpdk_sys::RTE_ACL_CLASSIFY_SSE,
            ClassifyAlg::Avx2 => dpdk_sys::RTE_ACL_CLASSIFY_AVX2,
            ClassifyAlg::Avx512x16 => dpdk_sys::RTE_ACL_CLASSIFY_AVX512X16,
            ClassifyAlg::Avx512x32 => dpdk_sys::RTE_ACL_CLASSIFY_AVX512X32,
        }
    }

    /// Lower-case name (`avx2`, ...).
    pub fn name(self) -> &'static str {
        match self {
            ClassifyAlg::Scalar => "scalar",
            ClassifyAlg::Sse => "sse",
            ClassifyAlg::Avx2 => "avx2",
            ClassifyAlg::Avx512x16 => "avx512x16",
            ClassifyAlg::Avx512x32 => "avx512x32",
        }
    }

    /// Parses a [`ClassifyAlg::name`].
    pub fn from_name(s: &str) -> Option<ClassifyAlg> {
        Self::PREFERENCE.into_iter().find(|a| a.name() == s)
    }
}

/// True once EAL is initialised (rte_acl needs its memory): EAL sets the TSC rate at init.
fn eal_running() -> bool {
    super::tsc_hz() > 0
}

static NEXT_CTX: AtomicU64 = AtomicU64::new(0);

/// An rte_acl context being configured: rules can be added, nothing classified.
#[derive(Debug)]
pub struct AclBuilder {
    ctx: NonNull<dpdk_sys::rte_acl_ctx>,
    family: IpVersion,
    fields: Vec<FieldDef>,
    rules: usize,
    max_rules: usize,
}

// SAFETY: the context is owned by this value alone; rte_acl's configuration calls are not
// thread-safe but `&mut self` serialises them, and moving the owner between threads is fine.
unsafe impl Send for AclBuilder {}

/// A rule in rte_acl's layout (`RTE_ACL_RULE_DEF(.., N)`) for up to 15 fields.
#[repr(C)]
#[derive(Clone, Copy)]
struct RawRule {
    data: dpdk_sys::rte_acl_rule_data,
    field: [dpdk_sys::rte_acl_field; 15],
}

fn rule_size(fields: usize) -> usize {
    // data (12 bytes) padded to the field alignment (8), then the fields.
    std::mem::size_of::<dpdk_sys::rte_acl_rule_data>().next_multiple_of(8)
        + fields * std::mem::size_of::<dpdk_sys::rte_acl_field>()
}

fn field_value(def: &FieldDef, v: u32) -> dpdk_sys::rte_acl_field_types {
    let mut t = dpdk_sys::rte_acl_field_types::default();
    match def.size {
        1 => t.u8_ = v as u8,
        2 => t.u16_ = v as u16,
        _ => t.u32_ = v,
    }
    t
}

impl AclBuilder {
    /// A context for at most `max_rules` rules of `family` over the field layout `fields`
    /// (from [`pipeline::acl::CompiledAcl::fields`]). Needs EAL.
    pub fn new(
        family: IpVersion,
        fields: &[FieldDef],
        max_rules: usize,
    ) -> Result<AclBuilder, DpdkError> {
        if !eal_running() {
            return Err(DpdkError::new(
                "rte_acl context: EAL is not initialised",
                libc::EINVAL,
            ));
        }
        let n = fields.len();
        if n == 0 || n > 15 {
            return Err(DpdkError::new(
                format!("rte_acl context: {n} fields (1 to 15)"),
                libc::EINVAL,
            ));
        }
        let name = format!("dp_acl_{}", NEXT_CTX.fetch_add(1, Ordering::Relaxed));
        let cname = CString::new(name.clone()).expect("no NUL");
        let param = dpdk_sys::rte_acl_param {
            name: cname.as_ptr(),
            socket_id: -1, // SOCKET_ID_ANY
            rule_size: rule_size(n) as u32,
            max_rule_num: max_rules.max(1) as u32,
        };
        // SAFETY: EAL is initialised (checked above); `param` and the name it points to live
        // across the call; rte_acl copies the name. Names are unique in this process, so
        // rte_acl does not hand back an existing context.
        let p = unsafe { dpdk_sys::rte_acl_create(&param) };
        let ctx = NonNull::new(p).ok_or_else(|| {
            DpdkError::last(format!("rte_acl_create {name} for {max_rules} rules"))
        })?;
        Ok(AclBuilder {
            ctx,
            family,
            fields: fields.to_vec(),
            rules: 0,
            max_rules: max_rules.max(1),
        })
    }

    /// Adds rules (each with one value per field of the family's layout).
    pub fn add_rules(&mut self, rules: &[CompiledRule]) -> Result<(), DpdkError> {
        let defs = &self.fields;
        if self.rules + rules.len() > self.max_rules {
            return Err(DpdkError::new(
                format!("rte_acl: more than {} rules", self.max_rules),
                libc::ENOMEM,
            ));
        }
        for r in rules {
            if r.fields.len() != defs.len() {
                return Err(DpdkError::new(
                    format!(
                        "rte_acl: a rule has {} fields, the layout {}",
                        r.fields.len(),
                        defs.len()
                    ),
                    libc::EINVAL,
                ));
            }
            let mut raw = RawRule {
                data: dpdk_sys::rte_acl_rule_data {
                    category_mask: 1,
                    priority: r.priority as i32,
                    userdata: r.userdata,
                },
                field: [dpdk_sys::rte_acl_field::default(); 15],
            };
            for (i, (d, v)) in defs.iter().zip(&r.fields).enumerate() {
                raw.field[i] = dpdk_sys::rte_acl_field {
                    value: field_value(d, v.value),
                    mask_range: field_value(d, v.mask_range),
                };
            }
            // SAFETY: the context is live and configured only through `&mut self`; `raw` is a
            // rule of at least `rule_size` bytes (the context's rule size covers the family's
            // fields, a prefix of RawRule's 15); rte_acl copies it.
            let rc = unsafe {
                dpdk_sys::rte_acl_add_rules(
                    self.ctx.as_ptr(),
                    &raw as *const RawRule as *const dpdk_sys::rte_acl_rule,
                    1,
                )
            };
            super::check(rc, || {
                format!(
                    "rte_acl_add_rules (rule {} of {})",
                    self.rules + 1,
                    self.max_rules
                )
            })?;
            self.rules += 1;
        }
        Ok(())
    }

    /// Compiles the rules and picks the best classify method the CPU and EAL allow
    /// (or `alg` if given and available).
    pub fn build(self, alg: Option<ClassifyAlg>) -> Result<AclClassifier, DpdkError> {
        let defs = &self.fields;
        let mut cfg = dpdk_sys::rte_acl_config {
            num_categories: 1,
            num_fields: defs.len() as u32,
            ..Default::default()
        };
        for (i, d) in defs.iter().enumerate() {
            cfg.defs[i] = dpdk_sys::rte_acl_field_def {
                type_: d.kind as u8,
                size: d.size,
                field_index: i as u8,
                input_index: d.input_index,
                offset: d.offset,
            };
        }
        // SAFETY: the context is live and ours; cfg is a valid configuration for the rules'
        // layout and lives across the call.
        let rc = unsafe { dpdk_sys::rte_acl_build(self.ctx.as_ptr(), &cfg) };
        super::check(rc, || format!("rte_acl_build of {} rules", self.rules))?;
        let candidates: Vec<ClassifyAlg> = match alg {
            Some(a) => vec![a],
            None => ClassifyAlg::PREFERENCE.to_vec(),
        };
        let mut chosen = None;
        for a in candidates {
            // SAFETY: the context is live and ours; the call only checks CPU support and sets
            // the context's default method.
            let rc = unsafe { dpdk_sys::rte_acl_set_ctx_classify(self.ctx.as_ptr(), a.raw()) };
            if rc == 0 {
                chosen = Some(a);
                break;
            }
        }
        let Some(chosen) = chosen else {
            // `self` drops here and frees the context.
            return Err(DpdkError::new(
                format!(
                    "rte_acl: classify method {} not available on this CPU",
                    alg.map_or("any", ClassifyAlg::name)
                ),
                libc::ENOTSUP,
            ));
        };
        let groups = defs
            .iter()
            .map(|d| usize::from(d.input_index))
            .max()
            .unwrap_or(0);
        let classifier = AclClassifier {
            ctx: self.ctx,
            family: self.family,
            rules: self.rules,
            alg: chosen,
            key_bytes: 1 + 4 * groups,
        };
        // The context now belongs to `classifier` (freed by its drop, exactly once).
        std::mem::forget(self);
        Ok(classifier)
    }
}

impl Drop for AclBuilder {
    fn drop(&mut self) {
        // SAFETY: the context is ours and no classifier was made from it.
        unsafe { dpdk_sys::rte_acl_free(self.ctx.as_ptr()) }
    }
}

/// A built rte_acl context: classify only.
#[derive(Debug)]
pub struct AclClassifier {
    ctx: NonNull<dpdk_sys::rte_acl_ctx>,
    family: IpVersion,
    rules: usize,
    alg: ClassifyAlg,
    key_bytes: usize,
}

// SAFETY: a built context is only read by rte_acl_classify, which is safe to call from
// several threads at once; it is freed only by drop, when no reference remains.
unsafe impl Send for AclClassifier {}
// SAFETY: as above: `classify` takes `&self` and rte_acl_classify does not modify the context.
unsafe impl Sync for AclClassifier {}

impl AclClassifier {
    /// The classify method in use.
    pub fn alg(&self) -> ClassifyAlg {
        self.alg
    }

    /// Bytes of each key the trie walks (the protocol byte and 4 per input group).
    pub fn key_bytes(&self) -> usize {
        self.key_bytes
    }

    /// Rules compiled in.
    pub fn rules(&self) -> usize {
        self.rules
    }

    /// The key layout's family.
    pub fn family(&self) -> IpVersion {
        self.family
    }

    /// Classifies a burst: `results[i]` = user data of the best rule matching `keys[i]`, or 0.
    /// Panics if `results` is shorter than `keys`.
    #[inline]
    pub fn classify(&self, keys: &[AclKey], results: &mut [u32]) {
        assert!(
            results.len() >= keys.len(),
            "classify: results shorter than keys"
        );
        // Not cleared first (2 KiB per call otherwise): only the first kc.len() are passed.
        let mut ptrs = [std::mem::MaybeUninit::<*const u8>::uninit(); VECTOR_SIZE];
        for (kc, rc) in keys
            .chunks(VECTOR_SIZE)
            .zip(results.chunks_mut(VECTOR_SIZE))
        {
            for (p, k) in ptrs.iter_mut().zip(kc) {
                p.write(k.0.as_ptr());
            }
            // SAFETY: the context is built and live (self); ptrs[..kc.len()] were just written
            // (rte_acl reads no more than the count passed) and point at 64-byte keys that live
            // across the call, and the context's fields (this family's layout) read at most
            // bytes 0..64 of each (the set-class group ends at 64); rc has kc.len() slots for 1 category.
            let rc_code = unsafe {
                dpdk_sys::rte_acl_classify(
                    self.ctx.as_ptr(),
                    ptrs.as_mut_ptr().cast::<*const u8>(),
                    rc.as_mut_ptr(),
                    kc.len() as u32,
                    1,
                )
            };
            debug_assert_eq!(rc_code, 0);
        }
    }
}

impl Drop for AclClassifier {
    fn drop(&mut self) {
        // SAFETY: the context is ours; &mut self proves no classify call is running on it.
        unsafe { dpdk_sys::rte_acl_free(self.ctx.as_ptr()) }
    }
}

/// rte_acl contexts for both families.
#[derive(Debug)]
pub struct RteAcl {
    v4: Option<AclClassifier>,
    v6: Option<AclClassifier>,
    /// The key layout the rules were compiled for (reported by `describe`).
    layout: ClassLayout,
}

impl RteAcl {
    /// Builds a context per family that has rules, with `alg` or the best method.
    pub fn build_with(acl: &CompiledAcl, alg: Option<ClassifyAlg>) -> Result<RteAcl, DpdkError> {
        let one = |v: IpVersion| -> Result<Option<AclClassifier>, DpdkError> {
            let rules = acl.rules_of(v);
            if rules.is_empty() {
                return Ok(None);
            }
            let mut b = AclBuilder::new(v, acl.fields(v), rules.len())?;
            b.add_rules(rules)?;
            b.build(alg).map(Some)
        };
        Ok(RteAcl {
            v4: one(IpVersion::V4)?,
            v6: one(IpVersion::V6)?,
            layout: acl.layout,
        })
    }

    /// The classify method (of the IPv4 context, else the IPv6 one).
    pub fn alg(&self) -> Option<ClassifyAlg> {
        self.v4
            .as_ref()
            .or(self.v6.as_ref())
            .map(AclClassifier::alg)
    }
}

impl Classify for RteAcl {
    fn build(acl: &CompiledAcl) -> Result<Self, CompileError> {
        let alg = std::env::var("DATAPLANE_ACL_ALG")
            .ok()
            .and_then(|s| ClassifyAlg::from_name(&s));
        RteAcl::build_with(acl, alg).map_err(|e| CompileError::Build(e.to_string()))
    }

    #[inline]
    fn classify(&self, family: IpVersion, keys: &[AclKey], results: &mut [u32]) {
        let c = match family {
            IpVersion::V4 => &self.v4,
            IpVersion::V6 => &self.v6,
        };
        match c {
            Some(c) => c.classify(keys, results),
            None => results[..keys.len()].fill(0),
        }
    }

    fn describe(&self) -> String {
        let n = |c: &Option<AclClassifier>| c.as_ref().map_or(0, AclClassifier::rules);
        let bytes = |c: &Option<AclClassifier>| c.as_ref().map_or(0, AclClassifier::key_bytes);
        format!(
            "rte_acl {} ({} IPv4 + {} IPv6 rules, {} key layout, {}/{} key bytes walked)",
            self.alg().map_or("-", ClassifyAlg::name),
            n(&self.v4),
            n(&self.v6),
            format!("{:?}", self.layout).to_lowercase(),
            bytes(&self.v4),
            bytes(&self.v6)
        )
    }
}

/// The dataplane's classifier: rte_acl when EAL runs, the linear model otherwise (for
/// `check`, which validates the graph without DPDK).
#[derive(Debug)]
pub enum DpClassifier {
    /// rte_acl.
    Rte(RteAcl),
    /// The pipeline's software model.
    Linear(LinearClassifier),
}

impl Classify for DpClassifier {
    fn build(acl: &CompiledAcl) -> Result<Self, CompileError> {
        if eal_running() {
            RteAcl::build(acl).map(DpClassifier::Rte)
        } else {
            LinearClassifier::build(acl).map(DpClassifier::Linear)
        }
    }

    #[inline]
    fn classify(&self, family: IpVersion, keys: &[AclKey], results: &mut [u32]) {
        match self {
            DpClassifier::Rte(c) => c.classify(family, keys, results),
            DpClassifier::Linear(c) => c.classify(family, keys, results),
        }
    }

    fn describe(&self) -> String {
        match self {
            DpClassifier::Rte(c) => c.describe(),
            DpClassifier::Linear(c) => c.describe(),
        }
    }
}

/// The ACL stages of this process, by node name.
pub static ACL_HUBS: HubRegistry<DpClassifier> = HubRegistry::new();

/// The control handle of the `acl` node named `node` while a graph with it exists:
/// publish new rules ([`AclHub::publish_config`], [`AclHub::update_address_set`]) and read
/// the per-rule counters ([`AclHub::counters`]).
pub fn acl_hub(node: &str) -> Option<Arc<AclHub<DpClassifier>>> {
    ACL_HUBS.get(node)
}

fn ticks_per_sec() -> u64 {
    match super::tsc_hz() {
        0 => 1_000_000_000,
        hz => hz,
    }
}

/// Registers the `acl` node kind (rte_acl classifier) in `r`.
pub fn register<P: PacketBuf + 'static>(r: &mut Registry<P>) {
    pipeline::acl::node::register(r, &ACL_HUBS, ticks_per_sec)
        .expect("the acl kind registers once");
}
