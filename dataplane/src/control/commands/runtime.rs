//! `show runtime`, `clear runtime`, `show errors`, `clear errors`: the pipeline's per-node
//! counters (VPP's tables) and every drop by reason, live.

use std::fmt::Write;
use std::time::Instant;

use pipeline::render_runtime_table;
use pipeline::stats::render_drops_table;
use serde_json::json;

use super::json;
use crate::control::context::since;
use crate::control::registry::{no_args, Command, Reply};
use crate::control::Ctx;

/// This area's commands.
pub fn commands<'a>() -> Vec<Command<Ctx<'a>>> {
    vec![
        Command {
            path: "show runtime",
            usage: "",
            help: "per-node calls, vectors, packets, drops, clocks/packet (since start or `clear runtime`)",
            run: show_runtime,
        },
        Command {
            path: "clear runtime",
            usage: "",
            help: "restart the counts `show runtime` shows",
            run: clear_runtime,
        },
        Command {
            path: "show errors",
            usage: "",
            help: "every drop and node counter by reason, and the ports' drops (since start or `clear errors`)",
            run: show_errors,
        },
        Command {
            path: "clear errors",
            usage: "",
            help: "restart the counts `show errors` shows",
            run: clear_errors,
        },
    ]
}

fn show_runtime(cx: &mut Ctx<'_>, args: &[String]) -> Result<Reply, String> {
    no_args(args)?;
    if cx.graphs.is_empty() {
        return Ok(Reply::new(
            "no pipeline: the workers cross-connect (see `show workers`)\n",
            json!({ "workers": [] }),
        ));
    }
    let delta = since(&cx.runtime_now(), &cx.state.runtime_base);
    let secs = cx
        .state
        .runtime_cleared
        .unwrap_or(cx.started)
        .elapsed()
        .as_secs_f64();
    let text = format!(
        "Time {secs:.1} s since {}\n{}",
        if cx.state.runtime_cleared.is_some() {
            "clear runtime"
        } else {
            "start"
        },
        render_runtime_table(&delta)
    );
    Ok(Reply::new(
        text,
        json!({ "seconds": secs, "workers": json(&delta) }),
    ))
}

fn clear_runtime(cx: &mut Ctx<'_>, args: &[String]) -> Result<Reply, String> {
    no_args(args)?;
    cx.state.runtime_base = cx.runtime_now();
    cx.state.runtime_cleared = Some(Instant::now());
    Ok(Reply::new(
        "runtime counters cleared\n",
        json!({ "cleared": true }),
    ))
}

fn show_errors(cx: &mut Ctx<'_>, args: &[String]) -> Result<Reply, String> {
    no_args(args)?;
    let delta = since(&cx.runtime_now(), &cx.state.errors_base);
    let mut rows: Vec<serde_json::Value> = Vec::new();
    for n in &pipeline::stats::aggregate(&delta).nodes {
        for d in n.drops.iter().filter(|d| d.count > 0) {
            rows.push(json!({ "node": n.name, "reason": d.name, "count": d.count, "drop": true }));
        }
        for c in n.counters.iter().filter(|c| c.count > 0) {
            rows.push(json!({ "node": n.name, "reason": c.name, "count": c.count, "drop": false }));
        }
    }
    let mut text = render_drops_table(&delta);
    // The ports' drops: the workers' (tx queue full, no route) since the base, and the
    // devices' own (missed, errors, no mbuf) since start.
    let now = cx.workers_now();
    let base = &cx.state.errors_workers_base;
    let mut port_rows = String::new();
    for (i, (pp, port)) in cx.plan.ports.iter().zip(cx.ports).enumerate() {
        let sum = |f: fn(&crate::counters::PortSnapshot) -> u64| -> u64 {
            let n: u64 = now.iter().map(|w| f(&w.ports[i])).sum();
            let b: u64 = base.iter().map(|w| f(&w.ports[i])).sum();
            n.saturating_sub(b)
        };
        let hw = port.stats();
        for (reason, count) in [
            ("tx-dropped (tx queue full)", sum(|p| p.tx_dropped)),
            ("rx-no-route", sum(|p| p.rx_no_route)),
            ("rx-missed (device, since start)", hw.imissed),
            ("rx-errors (device, since start)", hw.ierrors),
            ("tx-errors (device, since start)", hw.oerrors),
            ("rx-nombuf (device, since start)", hw.rx_nombuf),
        ] {
            if count > 0 {
                let _ = writeln!(port_rows, "{count:>14}  {:<24} {reason}", pp.name);
                rows.push(
                    json!({ "port": pp.name, "reason": reason, "count": count, "drop": true }),
                );
            }
        }
    }
    if !port_rows.is_empty() {
        if text.is_empty() {
            let _ = writeln!(text, "{:>14}  {:<24} Reason", "Count", "Node");
        }
        text.push_str(&port_rows);
    }
    if text.is_empty() {
        text = "no errors\n".into();
    }
    Ok(Reply::new(text, json!({ "errors": rows })))
}

fn clear_errors(cx: &mut Ctx<'_>, args: &[String]) -> Result<Reply, String> {
    no_args(args)?;
    cx.state.errors_base = cx.runtime_now();
    cx.state.errors_workers_base = cx.workers_now();
    Ok(Reply::new(
        "error counters cleared\n",
        json!({ "cleared": true }),
    ))
}
