//! Logical switch port addresses: the MACs a dataplane port is matched by, and the IPs of
//! the `$<pg>_ip4` / `$<pg>_ip6` sets ovn-northd derives for every port group.
//!
//! ovn-northd writes those sets to the Southbound only, from each member port's `addresses`
//! (entries other than `dynamic`, `router` and `unknown`) plus its `dynamic_addresses`;
//! `port_security` is not read. An entry is `MAC [IP ...]`, IPs optionally with a prefix
//! length, of which only the address is taken.

use std::net::IpAddr;

use pipeline::acl::{IpNet, IpVersion};

use super::rows;
use crate::ovn::replica::Row;

/// A MAC address.
pub type Mac = [u8; 6];

/// Parses `aa:bb:cc:dd:ee:ff` (case-insensitive).
pub fn parse_mac(text: &str) -> Option<Mac> {
    let mut out = [0u8; 6];
    let mut parts = text.split(':');
    for b in out.iter_mut() {
        let p = parts.next()?;
        if p.len() != 2 {
            return None;
        }
        *b = u8::from_str_radix(p, 16).ok()?;
    }
    parts.next().is_none().then_some(out)
}

/// Formats a MAC as `aa:bb:cc:dd:ee:ff`.
pub fn format_mac(m: &Mac) -> String {
    format!(
        "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        m[0], m[1], m[2], m[3], m[4], m[5]
    )
}

/// One parsed `MAC IP...` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddressEntry {
    /// The entry's MAC.
    pub mac: Mac,
    /// Its IP addresses (prefix lengths dropped).
    pub ips: Vec<IpAddr>,
}

/// Parses one entry of `addresses` or `dynamic_addresses`; `None` for the keywords
/// (`router`, `unknown`, `dynamic`, `MAC dynamic`) and for anything that does not start with
/// a MAC. Unparsable IP words are left out.
pub fn parse_entry(entry: &str) -> Option<AddressEntry> {
    let mut words = entry.split_whitespace();
    let mac = parse_mac(words.next()?)?;
    let mut ips = Vec::new();
    for w in words {
        if w == "dynamic" {
            return None;
        }
        let addr = w.split_once('/').map_or(w, |(a, _)| a);
        if let Ok(ip) = addr.parse::<IpAddr>() {
            ips.push(ip);
        }
    }
    Some(AddressEntry { mac, ips })
}

/// The parsed entries of an LSP: its static `addresses` and its `dynamic_addresses`.
pub fn lsp_entries(lsp: &Row) -> Vec<AddressEntry> {
    let mut out: Vec<AddressEntry> = rows::strings(lsp, "addresses")
        .into_iter()
        .filter_map(parse_entry)
        .collect();
    let dynamic = rows::text(lsp, "dynamic_addresses");
    if !dynamic.is_empty() {
        out.extend(parse_entry(dynamic));
    }
    out
}

/// The addresses of family `version` of these LSPs, sorted and without duplicates: the
/// contents of `$<pg>_ip4` (`V4`) or `$<pg>_ip6` (`V6`) for a group with these members.
pub fn derived_set<'a>(
    members: impl IntoIterator<Item = &'a Row>,
    version: IpVersion,
) -> Vec<IpNet> {
    let mut out: Vec<IpNet> = members
        .into_iter()
        .flat_map(lsp_entries)
        .flat_map(|e| e.ips)
        .filter(|ip| match version {
            IpVersion::V4 => ip.is_ipv4(),
            IpVersion::V6 => ip.is_ipv6(),
        })
        .map(IpNet::host)
        .collect();
    out.sort();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ovn::replica::{Atom, Datum};
    use std::collections::BTreeSet;

    fn lsp(addresses: &[&str], dynamic: &str) -> Row {
        let mut r = Row::new();
        r.insert(
            "addresses".into(),
            Datum::Set(
                addresses
                    .iter()
                    .map(|a| Atom::String(a.to_string()))
                    .collect::<BTreeSet<_>>(),
            ),
        );
        let d: BTreeSet<Atom> = if dynamic.is_empty() {
            BTreeSet::new()
        } else {
            BTreeSet::from([Atom::String(dynamic.into())])
        };
        r.insert("dynamic_addresses".into(), Datum::Set(d));
        r
    }

    #[test]
    fn entries_as_northd_reads_them() {
        assert_eq!(
            parse_mac("FA:16:3E:00:00:01"),
            Some([0xfa, 0x16, 0x3e, 0, 0, 1])
        );
        assert_eq!(parse_mac("fa:16:3e:00:00"), None);
        assert_eq!(parse_mac("fa:16:3e:00:00:01:02"), None);
        assert_eq!(parse_entry("router"), None);
        assert_eq!(parse_entry("unknown"), None);
        assert_eq!(parse_entry("dynamic"), None);
        assert_eq!(parse_entry("fa:16:3e:00:00:01 dynamic"), None);
        let e = parse_entry("fa:16:3e:00:00:01 10.0.0.5/24 fd00::5").unwrap();
        assert_eq!(
            e.ips,
            [
                "10.0.0.5".parse::<IpAddr>().unwrap(),
                "fd00::5".parse().unwrap()
            ]
        );
    }

    #[test]
    fn derived_sets_take_static_and_dynamic_addresses() {
        let a = lsp(&["fa:16:3e:00:00:01 10.0.2.20 fd00::20", "unknown"], "");
        let b = lsp(&["dynamic"], "0a:00:00:00:00:02 10.0.2.21");
        let c = lsp(&["router"], "");
        let v4: Vec<String> = derived_set([&a, &b, &c], IpVersion::V4)
            .iter()
            .map(|n| n.to_string())
            .collect();
        assert_eq!(v4, ["10.0.2.20", "10.0.2.21"]);
        let v6: Vec<String> = derived_set([&a, &b, &c], IpVersion::V6)
            .iter()
            .map(|n| n.to_string())
            .collect();
        assert_eq!(v6, ["fd00::20"]);
    }
}
