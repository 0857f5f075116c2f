//! `show acl [NODE]`, `acl set-add`, `acl set-del`: the ACL stages' rules with their
//! per-rule counters, the NB row behind each rule from OVN (owner, `external_ids`), and the
//! generation each worker runs, and address-set membership changes
//! published as one batch ([`pipeline::acl::AclHub::update_members`]: a membership update for
//! a large set, a rebuild for an expanded one; adopted by each worker between bursts).

use std::fmt::Write;
use std::time::Duration;

use pipeline::acl::net::IpNet;
use pipeline::acl::MemberChange;
use serde_json::json;

use super::json;
use crate::control::registry::{Command, Reply};
use crate::control::Ctx;
use crate::dpdk::acl::acl_hub;

/// How long a membership change waits for the workers to switch before it answers.
const PUBLISH_WAIT: Duration = Duration::from_millis(250);

/// This area's commands.
pub fn commands<'a>() -> Vec<Command<Ctx<'a>>> {
    vec![
        Command {
            path: "show acl",
            usage: "[NODE]",
            help: "ACL rules with per-rule packets and bytes, denials, the generation per worker",
            run: show_acl,
        },
        Command {
            path: "show acl-log",
            usage: "[LINES]",
            help: "ACL log lines per acl node: logged, rate-limited, ring-dropped; the last LINES lines (default 10)",
            run: show_acl_log,
        },
        Command {
            path: "acl set-add",
            usage: "SET ADDR[/LEN]...",
            help: "add addresses to an address set (every acl node that has it)",
            run: set_add,
        },
        Command {
            path: "acl set-del",
            usage: "SET ADDR[/LEN]...",
            help: "remove addresses from an address set (every acl node that has it)",
            run: set_del,
        },
    ]
}

fn show_acl(cx: &mut Ctx<'_>, args: &[String]) -> Result<Reply, String> {
    let all = cx.nodes_of_kind("acl");
    let names: Vec<&str> = match args {
        [] => all,
        [one] if all.contains(&one.as_str()) => vec![one.as_str()],
        [one] => {
            return Err(format!(
                "no acl node `{one}` (acl nodes: {})",
                all.join(", ")
            ))
        }
        [_, extra, ..] => return Err(format!("unexpected argument `{extra}`")),
    };
    if names.is_empty() {
        return Ok(Reply::new("no acl nodes\n", json!({ "nodes": [] })));
    }
    // The NB rows behind rules from OVN (none without `[ovn]`).
    let origins = crate::ovn::follow::current_origins();
    let mut text = String::new();
    let mut nodes = Vec::new();
    for name in names {
        let hub = acl_hub(name).ok_or_else(|| format!("acl node `{name}` is not running"))?;
        let counters = hub.counters();
        let current = hub.current();
        let workers = hub.worker_generations();
        let _ = writeln!(
            text,
            "acl node {name}: generation {}, workers at {:?}, classifier {}, default {}",
            hub.generation(),
            workers,
            current.describe(),
            counters.default_action.as_str()
        );
        let _ = writeln!(
            text,
            "  {:>8} {:<10} {:<15} {:>14} {:>16}  {:<24} match",
            "priority", "direction", "action", "packets", "bytes", "name"
        );
        let rules = hub.rules();
        let mut nb = serde_json::Map::new();
        for (c, acl) in counters.acls.iter().zip(rules.acls()) {
            let _ = writeln!(
                text,
                "  {:>8} {:<10} {:<15} {:>14} {:>16}  {:<24} {}",
                c.priority,
                json(&acl.direction).as_str().unwrap_or("?"),
                c.action.as_str(),
                c.packets,
                c.bytes,
                c.name,
                acl.match_text
            );
            if let Some(o) = origins.acls.get(&c.name) {
                let _ = writeln!(text, "           from {}", o.describe());
                nb.insert(
                    c.name.clone(),
                    json!({
                        "owner": o.owner, "name": o.name, "label": o.label,
                        "external_ids": o.external_ids, "fail_closed": o.fail_closed,
                    }),
                );
            }
        }
        let d = &counters.denials;
        let _ = writeln!(
            text,
            "  no rule matched: {} packets ({} bytes); denied {}: default {}, drop rules {}, reject rules {}, conntrack full {}",
            counters.default_rule.packets,
            counters.default_rule.bytes,
            counters.denied_total,
            d.default_deny,
            d.rule_drop,
            d.rule_reject,
            d.conntrack_full
        );
        let sets: Vec<serde_json::Value> = rules
            .address_sets()
            .iter()
            .map(|s| json!({ "name": s.name, "entries": s.entries.len() }))
            .collect();
        nodes.push(json!({
            "node": name, "generation": hub.generation(), "worker_generations": workers,
            "classifier": current.describe(), "counters": json(&counters),
            "address_sets": sets, "nb": nb,
        }));
    }
    Ok(Reply::new(text, json!({ "nodes": nodes })))
}

/// Adds (`add`) or removes the addresses in `args[1..]` to or from set `args[0]`.
fn change_set(cx: &mut Ctx<'_>, args: &[String], add: bool) -> Result<Reply, String> {
    let (set, addrs) = match args {
        [set, addrs @ ..] if !addrs.is_empty() => (set, addrs),
        _ => return Err("a set name and at least one address".into()),
    };
    let addrs: Vec<IpNet> = addrs
        .iter()
        .map(|a| a.parse().map_err(|e| format!("`{a}`: {e}")))
        .collect::<Result<_, String>>()?;
    let mut text = String::new();
    let mut reports = Vec::new();
    let batch: Vec<MemberChange> = addrs
        .iter()
        .map(|&net| match add {
            true => MemberChange::SetAdd {
                set: set.clone(),
                net,
            },
            false => MemberChange::SetDel {
                set: set.clone(),
                net,
            },
        })
        .collect();
    for node in cx.nodes_of_kind("acl") {
        let Some(hub) = acl_hub(node) else { continue };
        if !hub.has_address_set(set) {
            continue;
        }
        // One batch, one publication: a membership update of a large set (no rebuild), a
        // rebuild for an expanded one.
        let r = hub
            .update_members(&batch, PUBLISH_WAIT)
            .map_err(|e| format!("acl node {node}: set {set}: {e}"))?;
        if r.rebuild.is_none() && r.set_ops == 0 {
            let _ = writeln!(text, "acl node {node}: set {set} unchanged");
            reports.push(json!({ "node": node, "changed": false }));
            continue;
        }
        match &r.rebuild {
            Some(b) => {
                let _ = writeln!(
                    text,
                    "acl node {node}: set {set} (expanded): generation {} ({} flat rules, rebuilt in {:.1} ms, {}/{} workers switched)",
                    r.generation,
                    b.flat_rules,
                    b.build_seconds * 1e3,
                    r.switched,
                    r.workers
                );
            }
            None => {
                let _ = writeln!(
                    text,
                    "acl node {node}: set {set} (membership): generation {} ({} changes, applied in {:.3} ms, {}/{} workers switched in {:.3} ms)",
                    r.generation,
                    r.set_ops,
                    r.apply_seconds * 1e3,
                    r.switched,
                    r.workers,
                    r.seconds * 1e3
                );
            }
        }
        let entries = hub.rules().address_set(set).map_or(0, |s| s.entries.len());
        reports.push(json!({
            "node": node, "changed": true, "generation": r.generation, "entries": entries,
            "rebuilt": r.rebuild.is_some(),
            "flat_rules": r.rebuild.as_ref().map(|b| b.flat_rules),
            "build_seconds": r.rebuild.as_ref().map(|b| b.build_seconds),
            "set_ops": r.set_ops, "apply_seconds": r.apply_seconds,
            "wait_seconds": r.wait_seconds, "seconds": r.seconds,
            "workers": r.workers, "switched": r.switched,
        }));
    }
    if reports.is_empty() {
        return Err(format!("no acl node has an address set `{set}`"));
    }
    Ok(Reply::new(text, json!({ "set": set, "nodes": reports })))
}

fn set_add(cx: &mut Ctx<'_>, args: &[String]) -> Result<Reply, String> {
    change_set(cx, args, true)
}

fn set_del(cx: &mut Ctx<'_>, args: &[String]) -> Result<Reply, String> {
    change_set(cx, args, false)
}

fn show_acl_log(_cx: &mut Ctx<'_>, args: &[String]) -> Result<Reply, String> {
    let n: usize = match args {
        [] => 10,
        [n] => super::number("LINES", n)?,
        [_, extra, ..] => return Err(format!("unexpected argument `{extra}`")),
    };
    let counts = crate::acl_log::counts();
    let writes = crate::acl_log::write_counts();
    let lines = crate::acl_log::recent_lines();
    let last = &lines[lines.len().saturating_sub(n)..];
    let mut text = format!(
        "{:<16} {:>12} {:>12} {:>12} {:>8} {:>11} {:>13}\n",
        "node", "logged", "rate-limited", "ring-dropped", "stale", "below-level", "syslog-failed"
    );
    for (node, c) in &counts {
        let w = writes.get(node).copied().unwrap_or_default();
        let _ = writeln!(
            text,
            "{node:<16} {:>12} {:>12} {:>12} {:>8} {:>11} {:>13}",
            c.logged, c.rate_limited, c.ring_dropped, c.stale, w.below_level, w.syslog_failed
        );
    }
    for l in last {
        let _ = writeln!(text, "acl_log: {l}");
    }
    Ok(Reply::new(
        text,
        json!({
            "nodes": counts.iter().map(|(n, c)| json!({
                "node": n,
                "counts": c,
                "writes": writes.get(n).copied().unwrap_or_default(),
            })).collect::<Vec<_>>(),
            "lines": last,
        }),
    ))
}
