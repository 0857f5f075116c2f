//! The read-only views the control socket shows, also as DPDK telemetry commands:
//! `/dataplane/runtime` (per node: calls, vectors, packets, drops, cycles, summed over the
//! workers), `/dataplane/errors` (per node: every non-zero drop and counter by reason),
//! `/dataplane/lb` (per service and per backend: state and counters), `/dataplane/acl` (per
//! acl node: generation, per-rule packets). Sources read handles that are safe from DPDK's
//! telemetry thread: the graphs' atomic counters, the LB controls and the ACL hubs.

use std::sync::Arc;

use pipeline::stats::aggregate;
use pipeline::StatsHandle;

use crate::dpdk::telemetry::{self, TelDict, TelValue};
use crate::plan::Plan;

/// The commands, with their help.
pub const COMMANDS: [(&str, &str); 4] = [
    (
        "/dataplane/runtime",
        "Per-node calls, vectors, packets, drops and cycles, summed over workers",
    ),
    (
        "/dataplane/errors",
        "Per-node drops and counters by reason (non-zero ones)",
    ),
    (
        "/dataplane/lb",
        "Load balancers: per service and backend, state and counters",
    ),
    (
        "/dataplane/acl",
        "ACL stages: generation and per-rule packets",
    ),
];

fn u(v: u64) -> TelValue {
    TelValue::U64(v)
}

fn runtime(graphs: &[(u32, StatsHandle)]) -> TelDict {
    let snaps: Vec<_> = graphs.iter().map(|(_, h)| h.snapshot()).collect();
    let total = aggregate(&snaps);
    let mut out: TelDict = vec![("workers".into(), u(graphs.len() as u64))];
    for n in &total.nodes {
        out.push((
            n.name.clone(),
            TelValue::Dict(vec![
                ("calls".into(), u(n.calls)),
                ("vectors".into(), u(n.vectors)),
                ("packets".into(), u(n.packets)),
                ("drops".into(), u(n.total_drops())),
                ("cycles".into(), u(n.cycles)),
            ]),
        ));
    }
    out
}

fn errors(graphs: &[(u32, StatsHandle)]) -> TelDict {
    let snaps: Vec<_> = graphs.iter().map(|(_, h)| h.snapshot()).collect();
    aggregate(&snaps)
        .nodes
        .iter()
        .map(|n| {
            let reasons = n
                .drops
                .iter()
                .chain(&n.counters)
                .filter(|c| c.count > 0)
                .map(|c| (c.name.clone(), u(c.count)))
                .collect();
            (n.name.clone(), TelValue::Dict(reasons))
        })
        .collect()
}

fn lb(controls: &[(String, Arc<pipeline::lb::LbControl>)]) -> TelDict {
    let mut out = TelDict::new();
    for (node, c) in controls {
        let stats = c.stats();
        for s in &stats.services {
            out.push((
                format!("{node}/{}", s.name),
                TelValue::Dict(vec![
                    ("generation".into(), u(stats.generation)),
                    ("packets".into(), u(s.stats.packets)),
                    ("bytes".into(), u(s.stats.bytes)),
                    ("reply_packets".into(), u(s.stats.reply_packets)),
                    ("new_connections".into(), u(s.stats.new_connections)),
                    ("active_connections".into(), u(s.stats.active_connections)),
                ]),
            ));
            for b in &s.backends {
                let state = serde_json::to_value(b.status)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default();
                out.push((
                    format!("{node}/{}/{}", s.name, b.name),
                    TelValue::Dict(vec![
                        ("state".into(), TelValue::Str(state)),
                        ("packets".into(), u(b.stats.packets)),
                        ("bytes".into(), u(b.stats.bytes)),
                        ("new_connections".into(), u(b.stats.new_connections)),
                        ("active_connections".into(), u(b.stats.active_connections)),
                    ]),
                ));
            }
        }
    }
    out
}

fn acl(nodes: &[String]) -> TelDict {
    nodes
        .iter()
        .filter_map(|name| {
            let hub = crate::dpdk::acl::acl_hub(name)?;
            let c = hub.counters();
            let mut d = vec![
                ("generation".into(), u(hub.generation())),
                ("denied".into(), u(c.denied_total)),
                ("default_rule".into(), u(c.default_rule.packets)),
            ];
            d.extend(c.acls.iter().map(|r| (r.name.clone(), u(r.packets))));
            Some((name.clone(), TelValue::Dict(d)))
        })
        .collect()
}

/// Registers the commands with DPDK (once per process) and points them at this run's
/// graphs, load balancers and ACL stages. A failure is reported, not fatal.
pub fn install(plan: &Plan, graphs: &[(u32, StatsHandle)]) -> Result<(), String> {
    for (path, help) in COMMANDS {
        telemetry::register(path, help).map_err(|e| e.to_string())?;
    }
    let g: Arc<Vec<(u32, StatsHandle)>> = Arc::new(graphs.to_vec());
    let g2 = Arc::clone(&g);
    telemetry::set_source(COMMANDS[0].0, Arc::new(move |_| runtime(&g)));
    telemetry::set_source(COMMANDS[1].0, Arc::new(move |_| errors(&g2)));
    let controls = Arc::new(super::commands::lb::lb_controls(plan));
    telemetry::set_source(COMMANDS[2].0, Arc::new(move |_| lb(&controls)));
    let acl_nodes: Vec<String> = plan
        .pipeline
        .iter()
        .flat_map(|s| &s.nodes)
        .filter(|n| n.kind == "acl")
        .map(|n| n.name.clone())
        .collect();
    telemetry::set_source(COMMANDS[3].0, Arc::new(move |_| acl(&acl_nodes)));
    Ok(())
}

/// Stops answering for a run that ended.
pub fn uninstall() {
    telemetry::clear_sources();
}
