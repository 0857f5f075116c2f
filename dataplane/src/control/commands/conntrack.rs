//! `show conntrack [filter] [--limit N]`: connections sampled from the workers' own tables
//! (the `lb` nodes' and the stateful `acl` nodes'), like `ovs-appctl dpctl/dump-conntrack`
//! and `vppctl show acl-plugin sessions`. Each worker copies the matching entries between two
//! vectors, or while idle, into memory reserved here (see `pipeline::ct_sample`): no lock on
//! the packet path.

use std::time::{Duration, Instant};

use pipeline::{render_conntrack, CtQuery, CtSample};
use serde_json::json;

use super::json;
use crate::control::registry::{Command, Reply};
use crate::control::Ctx;

/// How long the command waits for every worker's sample.
const SAMPLE_WAIT: Duration = Duration::from_millis(500);

/// This area's commands.
pub fn commands<'a>() -> Vec<Command<Ctx<'a>>> {
    vec![Command {
        path: "show conntrack",
        usage:
            "[src A[/L]] [dst A[/L]] [proto tcp|udp|icmp|icmpv6|N] [sport N] [dport N] [--limit N]",
        help:
            "connections in the workers' tables: 5-tuple, state, age, idle, expiry, packets, service and backend",
        run: show_conntrack,
    }]
}

fn show_conntrack(cx: &mut Ctx<'_>, args: &[String]) -> Result<Reply, String> {
    let q = CtQuery::parse(args)?;
    if cx.samplers.is_empty() {
        return Ok(Reply::new(
            "no connection tables (no lb node, no stateful acl node)\n",
            json!({ "tables": [] }),
        ));
    }
    for (_, s) in cx.samplers {
        s.request(q.clone());
    }
    let deadline = Instant::now() + SAMPLE_WAIT;
    let mut got: Vec<Option<CtSample>> = vec![None; cx.samplers.len()];
    while got.iter().any(Option::is_none) && Instant::now() < deadline {
        for (slot, (_, s)) in got.iter_mut().zip(cx.samplers) {
            if slot.is_none() {
                *slot = s.poll();
            }
        }
        if got.iter().any(Option::is_none) {
            std::thread::sleep(Duration::from_micros(200));
        }
    }
    let mut samples = Vec::new();
    let mut tables = Vec::new();
    let mut missing = Vec::new();
    for (g, (lcore, s)) in got.into_iter().zip(cx.samplers) {
        match g {
            Some(mut sample) => {
                sample.node = format!("{} (lcore {lcore})", sample.node);
                tables.push(json!({ "lcore": lcore, "sample": json(&sample) }));
                samples.push(sample);
            }
            None => missing.push(format!("{} (lcore {lcore})", s.node())),
        }
    }
    let mut text = render_conntrack(&samples);
    if !missing.is_empty() {
        text.push_str(&format!(
            "no answer within {} ms from: {}\n",
            SAMPLE_WAIT.as_millis(),
            missing.join(", ")
        ));
    }
    Ok(Reply::new(
        text,
        json!({ "tables": tables, "no_answer": missing }),
    ))
}
