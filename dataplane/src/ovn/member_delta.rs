//! The membership-only path (and its sibling for load-balancer rows): most NB churn is a
//! pod's address joining or leaving an
//! `Address_Set`, or an LSP's `addresses` changing (so the `$<pg>_ip4` / `$<pg>_ip6` sets
//! ovn-northd derives change). Such an update cannot change which ACLs we take, their
//! matches or priorities, only the members of sets the published policy already names, so it
//! needs no translation of the ACLs (200 ms at 10k ACLs): [`Burst`] recognises it from the
//! client's change sets, [`set_updates`] computes the new entries of the touched sets only
//! (by the same [`sets::resolve`] the translation uses), and the follower publishes them as
//! one membership batch per acl node ([`stage_changes`]). Anything else, or anything this
//! path is unsure of, goes through the whole translation; the follower also re-translates
//! once the NB goes quiet and counts any difference (it should find none). A modified
//! `Load_Balancer` row (a backend added or drained) only changes services: they are
//! recomputed alone ([`crate::ovn::translate::services_only`]).

use std::collections::{BTreeMap, BTreeSet};

use pipeline::acl::publish::set_diff;
use pipeline::acl::{AclConfig, IpNet, MemberChange};

use super::replica::{ChangeSet, Row, Table};
use super::translate::addresses::{lsp_entries, Mac};
use super::translate::{rows, sets, Policy};

/// What a burst of NB updates touched, as far as the membership-only path cares.
#[derive(Debug, Clone)]
pub struct Burst {
    /// Our ports' MACs (ports bound by MAC): an LSP whose addresses carry one may change a
    /// binding, which only the whole translation handles.
    our_macs: Vec<Mac>,
    /// False once an update touched anything but members or load-balancer rows.
    member_only: bool,
    /// A `Load_Balancer` row was modified (its services are recomputed alone).
    lbs: bool,
    /// NB `Address_Set` names whose `addresses` changed.
    sets: BTreeSet<String>,
    /// LSP UUIDs whose `addresses` or `dynamic_addresses` changed.
    lsps: BTreeSet<String>,
}

/// The NB_Global columns the translation ignores (ovn-nbctl's `--wait` bumps `nb_cfg`).
const NB_GLOBAL_IGNORED: &[&str] = &[
    "nb_cfg",
    "nb_cfg_timestamp",
    "sb_cfg",
    "sb_cfg_timestamp",
    "hv_cfg",
    "hv_cfg_timestamp",
    "external_ids",
];

impl Burst {
    /// An empty burst; `our_macs` are the MACs our ports are bound by.
    pub fn new(our_macs: Vec<Mac>) -> Burst {
        Burst {
            our_macs,
            member_only: true,
            lbs: false,
            sets: BTreeSet::new(),
            lsps: BTreeSet::new(),
        }
    }

    /// Forgets what was added (after it was handled).
    pub fn clear(&mut self) {
        self.member_only = true;
        self.lbs = false;
        self.sets.clear();
        self.lsps.clear();
    }

    /// True while every update added since [`Burst::clear`] changed only members of sets
    /// and `Load_Balancer` rows (not which load balancers are taken).
    pub fn member_only(&self) -> bool {
        self.member_only
    }

    /// A `Load_Balancer` row was modified: recompute the services
    /// ([`crate::ovn::translate::services_only`]).
    pub fn touches_lbs(&self) -> bool {
        self.lbs
    }

    /// Takes in one update's changes.
    pub fn add(&mut self, changes: &ChangeSet) {
        for (table, tc) in &changes.tables {
            if tc.is_empty() {
                continue;
            }
            if !tc.inserted.is_empty() || !tc.deleted.is_empty() {
                self.member_only = false;
                continue;
            }
            for (uuid, m) in &tc.modified {
                let changed = m.changed_columns();
                // A column that went away reads as changed too.
                let removed = m.old.keys().filter(|c| !m.new.contains_key(*c));
                let cols: BTreeSet<&str> = changed
                    .into_iter()
                    .chain(removed.map(String::as_str))
                    .collect();
                match table.as_str() {
                    "Address_Set" => {
                        if cols.contains("name") {
                            self.member_only = false;
                        } else if cols.contains("addresses") {
                            self.sets.insert(rows::text(&m.new, "name").to_string());
                        }
                    }
                    "Logical_Switch_Port" => {
                        if cols.contains("name") {
                            self.member_only = false;
                        } else if cols.contains("addresses") || cols.contains("dynamic_addresses") {
                            if self.binds_ours(&m.old) || self.binds_ours(&m.new) {
                                self.member_only = false;
                            } else {
                                self.lsps.insert(uuid.clone());
                            }
                        }
                    }
                    "Load_Balancer" => self.lbs = true,
                    "NB_Global" => {
                        if cols.iter().any(|c| !NB_GLOBAL_IGNORED.contains(c)) {
                            self.member_only = false;
                        }
                    }
                    _ => self.member_only = false,
                }
            }
        }
    }

    fn binds_ours(&self, lsp: &Row) -> bool {
        !self.our_macs.is_empty()
            && lsp_entries(lsp)
                .iter()
                .any(|e| self.our_macs.contains(&e.mac))
    }
}

/// The new entries of every set the burst touched that `published` names (in either
/// stage), where they differ from the published ones; `None` when this path cannot say
/// (the burst changed more than members, a set is gone, or an NB set has entries the
/// translation would report as refused).
pub fn set_updates(
    burst: &Burst,
    tables: &BTreeMap<String, Table>,
    published: &Policy,
) -> Option<BTreeMap<String, Vec<IpNet>>> {
    if !burst.member_only {
        return None;
    }
    let groups = rows::table(tables, "Port_Group");
    let mut names: BTreeSet<String> = burst.sets.clone();
    if !burst.lsps.is_empty() {
        for pg in groups.values() {
            if rows::uuids(pg, "ports")
                .iter()
                .any(|p| burst.lsps.contains(*p))
            {
                let n = rows::text(pg, "name");
                names.insert(format!("{n}_ip4"));
                names.insert(format!("{n}_ip6"));
            }
        }
    }
    let address_sets = rows::table(tables, "Address_Set");
    let lsps = rows::table(tables, "Logical_Switch_Port");
    let mut out = BTreeMap::new();
    for name in names {
        let old = published
            .acl_stages()
            .into_iter()
            .find_map(|(_, stage)| stage.address_sets.get(&name));
        let Some(old) = old else {
            continue; // not named by any taken ACL
        };
        let nb = address_sets
            .iter()
            .find(|(_, s)| rows::text(s, "name") == name)
            .map(|(u, s)| (u.as_str(), s));
        let group = |pg: &str| groups.values().find(|g| rows::text(g, "name") == pg);
        let set = sets::resolve(&name, nb, group, lsps)?;
        if !set.bad.is_empty() {
            return None;
        }
        if &set.entries != old {
            out.insert(name, set.entries);
        }
    }
    Some(out)
}

/// The membership batch that brings `cfg` to `updates` (sets it does not name are left
/// out), and `cfg` updated in place.
pub fn stage_changes(
    cfg: &mut AclConfig,
    updates: &BTreeMap<String, Vec<IpNet>>,
) -> Vec<MemberChange> {
    let mut out = Vec::new();
    for (name, new) in updates {
        if let Some(old) = cfg.address_sets.get_mut(name) {
            out.extend(set_diff(name, old, new));
            *old = new.clone();
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ovn::replica::{Atom, Datum, RowChange, TableChanges};

    fn row(cols: &[(&str, Datum)]) -> Row {
        cols.iter()
            .map(|(c, d)| (c.to_string(), d.clone()))
            .collect()
    }
    fn s(v: &str) -> Datum {
        Datum::Scalar(Atom::String(v.into()))
    }
    fn strs(v: &[&str]) -> Datum {
        Datum::Set(v.iter().map(|x| Atom::String(x.to_string())).collect())
    }
    fn uuids(v: &[&str]) -> Datum {
        Datum::Set(v.iter().map(|x| Atom::Uuid(x.to_string())).collect())
    }
    fn modified(table: &str, uuid: &str, old: Row, new: Row) -> ChangeSet {
        let mut tc = TableChanges::default();
        tc.modified.insert(uuid.into(), RowChange { old, new });
        ChangeSet {
            tables: [(table.to_string(), tc)].into_iter().collect(),
        }
    }
    fn net(v: &str) -> IpNet {
        v.parse().unwrap()
    }

    /// Replica: set `as1` {10.9.0.1}, group `pg_a` with lsp-1 (10.1.0.1) and lsp-2.
    fn tables(as1: &[&str], lsp2: &str) -> BTreeMap<String, Table> {
        let mut t: BTreeMap<String, Table> = BTreeMap::new();
        t.entry("Address_Set".into()).or_default().insert(
            "set-1".into(),
            row(&[("name", s("as1")), ("addresses", strs(as1))]),
        );
        t.entry("Port_Group".into()).or_default().insert(
            "pg-1".into(),
            row(&[("name", s("pg_a")), ("ports", uuids(&["lsp-1", "lsp-2"]))]),
        );
        let lsps = t.entry("Logical_Switch_Port".into()).or_default();
        lsps.insert(
            "lsp-1".into(),
            row(&[
                ("name", s("p1")),
                ("addresses", strs(&["02:00:00:00:00:01 10.1.0.1"])),
            ]),
        );
        lsps.insert(
            "lsp-2".into(),
            row(&[("name", s("p2")), ("addresses", strs(&[lsp2]))]),
        );
        t
    }

    fn published() -> Policy {
        let mut p = Policy::default();
        p.to_lport
            .address_sets
            .insert("as1".into(), vec![net("10.9.0.1")]);
        p.from_lport
            .address_sets
            .insert("pg_a_ip4".into(), vec![net("10.1.0.1"), net("10.1.0.2")]);
        p
    }

    #[test]
    fn an_address_set_member_is_a_membership_update() {
        let before = tables(&["10.9.0.1"], "02:00:00:00:00:02 10.1.0.2");
        let after = tables(&["10.9.0.1", "10.9.0.2"], "02:00:00:00:00:02 10.1.0.2");
        let mut b = Burst::new(vec![]);
        b.add(&modified(
            "Address_Set",
            "set-1",
            before["Address_Set"]["set-1"].clone(),
            after["Address_Set"]["set-1"].clone(),
        ));
        assert!(b.member_only());
        let mut p = published();
        let u = set_updates(&b, &after, &p).expect("membership only");
        assert_eq!(u["as1"], vec![net("10.9.0.1"), net("10.9.0.2")]);
        assert_eq!(u.len(), 1);
        let changes = stage_changes(&mut p.to_lport, &u);
        assert_eq!(
            changes,
            vec![MemberChange::SetAdd {
                set: "as1".into(),
                net: net("10.9.0.2")
            }]
        );
        assert_eq!(p.to_lport.address_sets["as1"].len(), 2);
        // The other stage does not name it: nothing for it.
        assert!(stage_changes(&mut p.from_lport, &u).is_empty());
    }

    #[test]
    fn an_lsp_address_changes_the_derived_set() {
        let before = tables(&["10.9.0.1"], "02:00:00:00:00:02 10.1.0.2");
        let after = tables(&["10.9.0.1"], "02:00:00:00:00:02 10.1.0.3");
        let mut b = Burst::new(vec![[2, 0, 0, 0, 0, 0x99]]);
        b.add(&modified(
            "Logical_Switch_Port",
            "lsp-2",
            before["Logical_Switch_Port"]["lsp-2"].clone(),
            after["Logical_Switch_Port"]["lsp-2"].clone(),
        ));
        assert!(b.member_only());
        let u = set_updates(&b, &after, &published()).expect("membership only");
        assert_eq!(u["pg_a_ip4"], vec![net("10.1.0.1"), net("10.1.0.3")]);
        // pg_a_ip6 is not named by the policy: left out.
        assert_eq!(u.len(), 1);
    }

    #[test]
    fn anything_else_takes_the_whole_translation() {
        let t = tables(&["10.9.0.1"], "02:00:00:00:00:02 10.1.0.2");
        let lsp2 = t["Logical_Switch_Port"]["lsp-2"].clone();
        // An LSP carrying one of our MACs may change a binding.
        let mut b = Burst::new(vec![[2, 0, 0, 0, 0, 2]]);
        let mut moved = lsp2.clone();
        moved.insert("addresses".into(), strs(&["02:00:00:00:00:02 10.1.0.7"]));
        b.add(&modified(
            "Logical_Switch_Port",
            "lsp-2",
            lsp2.clone(),
            moved,
        ));
        assert!(!b.member_only());
        assert!(set_updates(&b, &t, &published()).is_none());
        // A renamed set, an ACL, a port group's ports, NB_Global options.
        let set1 = t["Address_Set"]["set-1"].clone();
        let mut renamed = set1.clone();
        renamed.insert("name".into(), s("as2"));
        let pg = t["Port_Group"]["pg-1"].clone();
        let mut pg2 = pg.clone();
        pg2.insert("ports".into(), uuids(&["lsp-1"]));
        let g = row(&[("nb_cfg", Datum::Scalar(Atom::Integer(1)))]);
        let mut g_opts = g.clone();
        g_opts.insert("options".into(), Datum::Map(BTreeMap::new()));
        for cs in [
            modified("Address_Set", "set-1", set1, renamed),
            modified("ACL", "acl-1", row(&[]), row(&[("priority", s("1"))])),
            modified("Port_Group", "pg-1", pg, pg2),
            modified("NB_Global", "g", g.clone(), g_opts),
        ] {
            let mut b = Burst::new(vec![]);
            b.add(&cs);
            assert!(!b.member_only(), "{cs:?}");
            b.clear();
            assert!(b.member_only());
        }
        // --wait's nb_cfg bump alone is nothing.
        let mut g2 = g.clone();
        g2.insert("nb_cfg".into(), Datum::Scalar(Atom::Integer(2)));
        let mut b = Burst::new(vec![]);
        b.add(&modified("NB_Global", "g", g, g2));
        assert!(b.member_only());
        assert_eq!(set_updates(&b, &t, &published()), Some(BTreeMap::new()));
        // An inserted row (a new address set) changes names.
        let mut tc = TableChanges::default();
        tc.inserted
            .insert("set-2".into(), row(&[("name", s("as9"))]));
        let mut b = Burst::new(vec![]);
        b.add(&ChangeSet {
            tables: [("Address_Set".to_string(), tc)].into_iter().collect(),
        });
        assert!(!b.member_only());
        // A set entry the translation would refuse.
        let bad = tables(&["10.9.0.1", "not-an-ip"], "02:00:00:00:00:02 10.1.0.2");
        let mut b = Burst::new(vec![]);
        b.add(&modified(
            "Address_Set",
            "set-1",
            t["Address_Set"]["set-1"].clone(),
            bad["Address_Set"]["set-1"].clone(),
        ));
        assert!(set_updates(&b, &bad, &published()).is_none());
    }
}
