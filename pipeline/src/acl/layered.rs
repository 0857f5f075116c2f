//! ACLs added without rebuilding the classifier first: the new rules are built alone into
//! a small overlay classifier consulted beside the current (base) one, so an added ACL is
//! enforced in the time a few-rule build takes instead of a whole rebuild (about 0.7 s at
//! 10,000 rules); the whole classifier is then rebuilt off the critical path and replaces
//! the layered program (see [`super::publish::AclHub::publish_config`]).
//!
//! # When it applies ([`plan`])
//! The new rule set must be the current one with ACLs inserted and nothing else changed:
//! every current ACL is in the new list, unchanged and in the same relative order (a
//! subsequence), and the compiled form agrees on everything a key depends on (class
//! layout, protocol codes, field layouts, port classes and bitmasks, set classes, which
//! set fields are read), and every kept ACL compiles to the same flat rules as before.
//! Anything else (an ACL removed or changed, a new port group or set class, a set's
//! entries changed) is a whole rebuild, as before.
//!
//! # Why the answer is the whole classifier's
//! Ranks ([`super::reference::dense_priorities`]) order ACLs by priority, then file order.
//! Inserting ACLs keeps the relative order of the others, so the base classifier's winner
//! is still the best of the kept ACLs; the overlay's is the best of the inserted ones; the
//! higher rank of the two (in the new numbering) is the best of all. The base answers in
//! its own numbering (`acl index + 1` of the old rule set) and is mapped to the new one.
//! `tests::layered_answers_as_the_whole_classifier` checks this against a classifier of
//! the whole new rule set on random rule sets and keys.

use super::key::{AclKey, Classify, CompileError, CompiledAcl, CompiledRule};
use super::model::IpVersion;

/// The most keys classified per overlay call (the node passes one burst at a time).
const CHUNK: usize = 64;

/// How a layered program answers: the overlay classifier, the base's answers mapped to
/// the new numbering, and the rank of every answer.
#[derive(Debug)]
pub struct Overlay<C> {
    /// The inserted ACLs' rules only, built alone.
    classifier: C,
    /// Base answer (old `acl index + 1`, 0: none) -> new answer.
    remap: Vec<u32>,
    /// Rank per new answer (0: no match, below every rule).
    rank: Vec<u32>,
    /// Flat rules in the overlay.
    rules: usize,
}

/// What [`plan`] found: the inserted ACLs' compiled rules and the mapping.
#[derive(Debug)]
pub struct OverlayPlan {
    /// `new` with only the inserted ACLs' rules (what the overlay classifier is built from).
    pub overlay: CompiledAcl,
    remap: Vec<u32>,
    rank: Vec<u32>,
}

impl OverlayPlan {
    /// Flat rules the overlay classifier holds.
    pub fn rules(&self) -> usize {
        self.overlay.v4.len() + self.overlay.v6.len()
    }
}

/// The rules of each ACL (by `acl index`), in compiled order.
fn by_acl(rules: &[CompiledRule], acls: usize) -> Vec<Vec<&CompiledRule>> {
    let mut out = vec![Vec::new(); acls];
    for r in rules {
        if let Some(v) = (r.userdata as usize)
            .checked_sub(1)
            .and_then(|i| out.get_mut(i))
        {
            v.push(r);
        }
    }
    out
}

/// Whether `new` is `old` with ACLs inserted, compiled alike; if so, the overlay's rules
/// and the mapping (see the module doc). `None`: rebuild the whole classifier.
pub fn plan(old: &CompiledAcl, new: &CompiledAcl) -> Option<OverlayPlan> {
    if old.layout != new.layout
        || old.protos != new.protos
        || old.v4_fields != new.v4_fields
        || old.v6_fields != new.v6_fields
        || old.classes != new.classes
        || old.port_bits != new.port_bits
        || old.set_classes != new.set_classes
        || old.reads_sets != new.reads_sets
        || old.rules.default_action() != new.rules.default_action()
    {
        return None;
    }
    let (oa, na) = (old.rules.acls(), new.rules.acls());
    if na.len() <= oa.len() {
        return None;
    }
    // Old ACL i is new ACL map[i]: the greedy subsequence match (finds one if any exists).
    let mut map = Vec::with_capacity(oa.len());
    let mut j = 0;
    for a in oa {
        while j < na.len() && na[j] != *a {
            j += 1;
        }
        if j == na.len() {
            return None;
        }
        map.push(j);
        j += 1;
    }
    let mut inserted = vec![true; na.len()];
    for &j in &map {
        inserted[j] = false;
    }
    // Every kept ACL compiles to the same flat rules (same fields, same order).
    for (o, n) in [(&old.v4, &new.v4), (&old.v6, &new.v6)] {
        let (ob, nb) = (by_acl(o, oa.len()), by_acl(n, na.len()));
        for (i, &j) in map.iter().enumerate() {
            if ob[i].len() != nb[j].len()
                || ob[i].iter().zip(&nb[j]).any(|(a, b)| a.fields != b.fields)
            {
                return None;
            }
        }
    }
    let mut remap = Vec::with_capacity(oa.len() + 1);
    remap.push(0);
    remap.extend(map.iter().map(|&j| j as u32 + 1));
    // Rank per answer, from the compiled rules (unique per ACL).
    let mut rank = vec![0u32; na.len() + 1];
    for r in new.v4.iter().chain(&new.v6) {
        if let Some(x) = rank.get_mut(r.userdata as usize) {
            *x = r.priority;
        }
    }
    let keep = |rules: &[CompiledRule]| -> Vec<CompiledRule> {
        rules
            .iter()
            .filter(|r| {
                (r.userdata as usize)
                    .checked_sub(1)
                    .is_some_and(|i| inserted.get(i).copied().unwrap_or(false))
            })
            .cloned()
            .collect()
    };
    let mut overlay = new.clone();
    overlay.v4 = keep(&new.v4);
    overlay.v6 = keep(&new.v6);
    Some(OverlayPlan {
        overlay,
        remap,
        rank,
    })
}

impl<C: Classify> Overlay<C> {
    /// Builds the overlay classifier of `plan`.
    pub fn build(plan: OverlayPlan) -> Result<Self, CompileError> {
        Ok(Overlay {
            rules: plan.rules(),
            classifier: C::build(&plan.overlay)?,
            remap: plan.remap,
            rank: plan.rank,
        })
    }

    /// Flat rules in the overlay.
    pub fn rules(&self) -> usize {
        self.rules
    }

    /// What it is, for reports.
    pub fn describe(&self) -> String {
        format!("overlay of {} rules", self.rules)
    }

    /// Turns the base classifier's answers for `keys` (in `results`, old numbering) into
    /// the layered program's: the overlay classifies the same keys and the higher rank
    /// wins.
    #[inline]
    pub fn merge(&self, family: IpVersion, keys: &[AclKey], results: &mut [u32]) {
        let mut mine = [0u32; CHUNK];
        for (keys, results) in keys.chunks(CHUNK).zip(results.chunks_mut(CHUNK)) {
            let mine = &mut mine[..keys.len()];
            self.classifier.classify(family, keys, mine);
            for (r, &m) in results.iter_mut().zip(mine.iter()) {
                let base = self.remap.get(*r as usize).copied().unwrap_or(0);
                let rank = |x: u32| self.rank.get(x as usize).copied().unwrap_or(0);
                *r = if rank(m) > rank(base) { m } else { base };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::acl::key::{compile, BurstClassifier, LinearClassifier};
    use crate::acl::model::{AclConfig, PortId};
    use crate::acl::publish::expand_config;
    use crate::acl::publish::AclProgram;
    use crate::acl::reference::PacketSummary;
    use crate::graph::PortInfo;
    use proptest::prelude::*;
    use std::net::IpAddr;
    use std::sync::Arc;

    fn ports() -> Vec<PortInfo> {
        vec![
            PortInfo::new(0, "web0", "fronthaul"),
            PortInfo::new(1, "app0", "midhaul"),
        ]
    }

    /// One ACL: a priority, a source prefix, a TCP destination port and an action.
    fn acl_text(name: &str, prio: u16, src: u8, port: u16, allow: bool) -> String {
        format!(
            "[[acl.rules]]\nname = \"{name}\"\ndirection = \"from-lport\"\npriority = {prio}\nmatch = \"inport == @web && ip4.src == 10.{src}.0.0/16 && tcp.dst == {port}\"\naction = \"{}\"\n",
            if allow { "allow" } else { "drop" }
        )
    }

    fn config(acls: &[(String, u16, u8, u16, bool)]) -> AclConfig {
        let mut t =
            String::from("[acl]\ndefault = \"drop\"\n[acl.port_groups]\nweb = [\"web0\"]\n");
        for (n, p, s, d, a) in acls {
            t.push_str(&acl_text(n, *p, *s, *d, *a));
        }
        toml::from_str::<crate::acl::model::AclFile>(&t)
            .expect("parses")
            .acl
    }

    fn compiled(acls: &[(String, u16, u8, u16, bool)]) -> CompiledAcl {
        compile(&expand_config(&config(acls)).expect("expands"), &ports()).expect("compiles")
    }

    fn key(acl: &CompiledAcl, src: [u8; 4], dport: u16) -> AclKey {
        let p = PacketSummary::tcp(
            PortId::named("web0"),
            PortId::named("app0"),
            IpAddr::from(src),
            IpAddr::from([10, 99, 0, 1]),
            40000,
            dport,
        );
        crate::acl::key::tests::key_of(acl, &p, &ports())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn layered_answers_as_the_whole_classifier(
            base in proptest::collection::vec((1u16..20, 0u8..4, 80u16..84, any::<bool>()), 1..12),
            added in proptest::collection::vec((0usize..12, 1u16..20, 0u8..4, 80u16..84, any::<bool>()), 1..4),
            probes in proptest::collection::vec((0u8..5, 0u8..3, 79u16..85), 1..40),
        ) {
            let old: Vec<_> = base
                .iter()
                .enumerate()
                .map(|(i, &(p, s, d, a))| (format!("b{i}"), p, s, d, a))
                .collect();
            let mut new = old.clone();
            for (k, &(at, p, s, d, a)) in added.iter().enumerate() {
                new.insert(at.min(new.len()), (format!("n{k}"), p, s, d, a));
            }
            let (o, n) = (compiled(&old), compiled(&new));
            let n = Arc::new(n);
            let base = AclProgram::<LinearClassifier>::build(o, 1).expect("base");
            let layered = AclProgram::layered(&base, &n, 2)
                .expect("builds")
                .expect("pure insertions layer");
            let overlay = layered.overlay.as_ref().expect("an overlay");
            prop_assert_eq!(overlay.rules(), added.len());
            prop_assert!(Arc::ptr_eq(&layered.classifier, &base.classifier), "base shared");
            // A layered program does not layer again: the whole one is built first.
            prop_assert!(AclProgram::layered(&layered, &n, 3).expect("no error").is_none());
            let whole = LinearClassifier::build(&n).expect("whole");
            let keys: Vec<AclKey> =
                probes.iter().map(|&(a, b, port)| key(&n, [10, a, b, 7], port)).collect();
            let (mut got, mut want) = (vec![0u32; keys.len()], vec![0u32; keys.len()]);
            layered.classify_burst(IpVersion::V4, &keys, &mut got);
            whole.classify(IpVersion::V4, &keys, &mut want);
            prop_assert_eq!(got, want);
        }
    }

    #[test]
    fn anything_but_insertions_is_a_rebuild() {
        let a = |n: &str, p: u16| (n.to_string(), p, 1u8, 80u16, true);
        let old = compiled(&[a("x", 10), a("y", 20)]);
        assert!(plan(&old, &compiled(&[a("x", 10), a("z", 5), a("y", 20)])).is_some());
        // Removed, changed, reordered, or nothing added.
        assert!(plan(&old, &compiled(&[a("x", 10), a("z", 5)])).is_none());
        assert!(plan(&old, &compiled(&[a("x", 11), a("y", 20), a("z", 5)])).is_none());
        assert!(plan(&old, &compiled(&[a("y", 20), a("x", 10), a("z", 5)])).is_none());
        assert!(plan(&old, &compiled(&[a("x", 10), a("y", 20)])).is_none());
    }
}
