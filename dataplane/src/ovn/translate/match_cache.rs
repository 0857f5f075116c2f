//! What a whole translation keeps for the next one: each ACL match already compiled.
//!
//! Parsing an OVN match, renaming its ports and writing it back costs several microseconds;
//! at 10k ACLs that was most of a whole translation (85 ms of the 140 ms an ACL added
//! took before the policy was handed on, measured with `ovn-bench --no-peer --sizes 10000`),
//! while an NB change touches one or a few matches. [`MatchCache`] keeps
//! [`super::acls::compile_match`]'s successful results by (match text, direction). They are
//! only valid for the names the matches were checked against (the NB's port group and
//! address set names, our LSP names), so the cache empties itself when those change; and it
//! drops, after each translation, the matches that translation did not ask for (deleted or
//! edited ACLs), so it never holds more than the NB.
//!
//! Tried and not kept: keeping each ACL's whole translation (its rule and attribution) by
//! UUID with the row, owner and priority it came from, so that an unchanged row is not read
//! again. `whole_translation_cost` (10k ACLs, an ignored test in [`super`]), the two
//! builds alternated, medians without / with: 65.9 / 89.3, 93.4 / 90.6, 93.2 / 80.0 ms. The
//! row comparison and the copies out of the cache cost what reading the row did.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use pipeline::acl::Direction;

use super::acls::{compile_match, Compiled, Failure, OvnNames};

/// Compiled matches kept from one whole translation to the next (see the module doc).
#[derive(Debug, Default)]
pub struct MatchCache {
    /// The names the kept results were checked against.
    groups: BTreeSet<String>,
    sets: BTreeSet<String>,
    local: BTreeMap<String, String>,
    /// match -> per direction (from-lport, to-lport): the result and the translation that
    /// last asked for it.
    kept: HashMap<String, [Option<(Compiled, u64)>; 2]>,
    /// Translations begun.
    round: u64,
    /// Matches answered from the cache / compiled, over the cache's life.
    hits: u64,
    misses: u64,
}

impl MatchCache {
    /// Starts a translation against these names: results checked against others are dropped.
    pub fn begin(&mut self, names: &OvnNames<'_>, local: &BTreeMap<String, String>) {
        self.round += 1;
        if *names.groups != self.groups || *names.sets != self.sets || *local != self.local {
            self.kept.clear();
            self.groups = names.groups.clone();
            self.sets = names.sets.clone();
            self.local = local.clone();
        }
    }

    /// [`compile_match`] against the names given to [`Self::begin`], answered from the
    /// cache when those names already compiled `text` for `dir` (failures are not kept:
    /// they are rare and carry the reason the names gave).
    pub fn compile(&mut self, text: &str, dir: Direction) -> Result<Compiled, Failure> {
        let (round, d) = (self.round, slot(dir));
        if let Some(Some((c, used))) = self.kept.get_mut(text).map(|s| &mut s[d]) {
            *used = round;
            self.hits += 1;
            return Ok(c.clone());
        }
        self.misses += 1;
        let names = OvnNames {
            groups: &self.groups,
            sets: &self.sets,
        };
        let c = compile_match(text, dir, &names, &self.local)?;
        self.kept.entry(text.to_string()).or_default()[d] = Some((c.clone(), round));
        Ok(c)
    }

    /// Ends a translation: forgets the matches it did not ask for.
    pub fn end(&mut self) {
        let round = self.round;
        self.kept.retain(|_, slots| {
            for s in slots.iter_mut() {
                if s.as_ref().is_some_and(|(_, used)| *used != round) {
                    *s = None;
                }
            }
            slots.iter().any(Option::is_some)
        });
    }

    /// Matches kept now (a text kept for both directions counts twice).
    pub fn len(&self) -> usize {
        self.kept.values().flatten().filter(|s| s.is_some()).count()
    }

    /// Whether nothing is kept.
    pub fn is_empty(&self) -> bool {
        self.kept.is_empty()
    }

    /// (answered from the cache, compiled) over the cache's life.
    pub fn counts(&self) -> (u64, u64) {
        (self.hits, self.misses)
    }
}

fn slot(dir: Direction) -> usize {
    match dir {
        Direction::Ingress => 0,
        Direction::Egress => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names<'a>(g: &'a BTreeSet<String>, s: &'a BTreeSet<String>) -> OvnNames<'a> {
        OvnNames { groups: g, sets: s }
    }

    #[test]
    fn kept_while_the_names_hold_and_forgotten_when_unused_or_invalid() {
        let g: BTreeSet<String> = ["pg_web".to_string()].into();
        let s: BTreeSet<String> = BTreeSet::new();
        let local = BTreeMap::new();
        let mut c = MatchCache::default();
        let m = "outport == @pg_web && ip4.src == $pg_web_ip4 && tcp.dst==80";
        c.begin(&names(&g, &s), &local);
        let a = c.compile(m, Direction::Egress).unwrap();
        let b = c.compile(m, Direction::Egress).unwrap();
        assert_eq!(a, b);
        assert_eq!(
            a,
            compile_match(m, Direction::Egress, &names(&g, &s), &local).unwrap()
        );
        assert_eq!(c.counts(), (1, 1));
        // The same text in the other direction is another entry (outport is refused there).
        assert!(c.compile(m, Direction::Ingress).is_err());
        c.end();
        assert_eq!(c.len(), 1);
        // A translation that does not ask for it drops it.
        c.begin(&names(&g, &s), &local);
        c.end();
        assert!(c.is_empty());
        // A name gone: the kept result would be wrong, so the cache starts over.
        c.begin(&names(&g, &s), &local);
        c.compile(m, Direction::Egress).unwrap();
        c.end();
        let none = BTreeSet::new();
        c.begin(&names(&none, &s), &local);
        assert!(c.is_empty());
        assert!(c.compile(m, Direction::Egress).is_err());
    }
}
