//! NB `Meter` rows (with their `Meter_Band`s) to the named rate limits of ACL log lines.
//!
//! As ovn-controller applies an ACL's meter to its log packets: a `pktps` meter's first
//! band gives the limit (`rate` lines per second, `burst_size` lines of burst; a band
//! without a burst size bursts one line). A `kbps` meter limits bytes of packets sent to the
//! controller, which has no exact meaning for log lines: it is refused (logged and counted),
//! and the ACLs naming it log with the default limit, as ACLs naming an absent meter do.

use std::collections::BTreeMap;

use pipeline::acl::log::RateLimit;

use super::rows;
use super::{Outcome, Refusal};
use crate::ovn::replica::Table;

/// The meters by name, and the rows refused (a `kbps` meter, a meter without a band, a
/// duplicate name).
pub fn meters(
    meter_table: &Table,
    band_table: &Table,
) -> (BTreeMap<String, RateLimit>, Vec<Refusal>) {
    let mut out = BTreeMap::new();
    let mut refused = Vec::new();
    let refuse = |refused: &mut Vec<Refusal>, uuid: &str, reason: String| {
        refused.push(Refusal {
            table: "Meter",
            uuid: uuid.to_string(),
            outcome: Outcome::Skipped,
            reason: format!("{reason}; ACLs naming it log with the default limit"),
        })
    };
    for (uuid, row) in meter_table {
        let name = rows::text(row, "name");
        let unit = rows::text(row, "unit");
        if name.is_empty() {
            refuse(&mut refused, uuid, "meter without a name".into());
            continue;
        }
        if unit != "pktps" {
            refuse(
                &mut refused,
                uuid,
                format!("meter '{name}': unit '{unit}' (only pktps limits log lines)"),
            );
            continue;
        }
        // The band with the lowest rate (ovn-controller installs all bands; for a log
        // meter with one band, as ovn-nbctl meter-add writes it, that is the band).
        let band = rows::uuids(row, "bands")
            .into_iter()
            .filter_map(|b| band_table.get(b))
            .filter_map(|b| {
                let rate = rows::int(b, "rate").filter(|r| *r > 0)?;
                let burst = rows::int(b, "burst_size").unwrap_or(0).max(0);
                Some(RateLimit {
                    rate: rate as u64,
                    burst: (burst as u64).max(1),
                })
            })
            .min_by_key(|l| (l.rate, l.burst));
        let Some(limit) = band else {
            refuse(
                &mut refused,
                uuid,
                format!("meter '{name}': no band with a positive rate"),
            );
            continue;
        };
        if out.insert(name.to_string(), limit).is_some() {
            refuse(
                &mut refused,
                uuid,
                format!("meter '{name}': duplicate name"),
            );
        }
    }
    (out, refused)
}
