//! The entries of one address set as a match names it: the NB `Address_Set` of that name
//! (an NB set wins a name clash), else the `$<pg>_ip4` / `$<pg>_ip6` set ovn-northd derives
//! from the member LSPs of port group `<pg>`. Shared by the whole translation and by the
//! follower's membership-only path ([`crate::ovn::member_delta`]), so both compute a set the
//! same way.

use pipeline::acl::{IpNet, IpVersion};

use super::{addresses, rows};
use crate::ovn::replica::{Row, Table};

/// One resolved set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedSet {
    /// Its entries, sorted, without duplicates.
    pub entries: Vec<IpNet>,
    /// The NB `Address_Set` row's UUID; `None` for a derived set.
    pub nb_uuid: Option<String>,
    /// NB entries that are not IP prefixes (left out, reported as a partial refusal).
    pub bad: Vec<String>,
}

/// Resolves `name`: `nb` is the NB `Address_Set` of that name (UUID, row) if any, `group`
/// finds a port group by name, `lsps` is the `Logical_Switch_Port` table. `None` when the
/// name is neither an NB set nor of the derived `<pg>_ip4`/`<pg>_ip6` form.
pub fn resolve<'a>(
    name: &str,
    nb: Option<(&str, &Row)>,
    group: impl FnOnce(&str) -> Option<&'a Row>,
    lsps: &'a Table,
) -> Option<ResolvedSet> {
    if let Some((uuid, row)) = nb {
        let mut entries = Vec::new();
        let mut bad = Vec::new();
        for a in rows::strings(row, "addresses") {
            match a.parse::<IpNet>() {
                Ok(n) => entries.push(n),
                Err(_) => bad.push(a.to_string()),
            }
        }
        entries.sort();
        entries.dedup();
        return Some(ResolvedSet {
            entries,
            nb_uuid: Some(uuid.to_string()),
            bad,
        });
    }
    let (pg, version) = match (name.strip_suffix("_ip4"), name.strip_suffix("_ip6")) {
        (Some(pg), _) => (pg, IpVersion::V4),
        (_, Some(pg)) => (pg, IpVersion::V6),
        _ => return None,
    };
    let members: Vec<&Row> = group(pg)
        .map(|row| {
            rows::uuids(row, "ports")
                .into_iter()
                .filter_map(|u| lsps.get(u))
                .collect()
        })
        .unwrap_or_default();
    Some(ResolvedSet {
        entries: addresses::derived_set(members, version),
        nb_uuid: None,
        bad: Vec::new(),
    })
}
