//! `trace add N [filter]`, `show trace`, `clear trace`: the path of the next N packets (that
//! match a filter) through every worker's pipeline, like VPP's `trace add` / `show trace`.

use serde_json::json;

use pipeline::filter_words::{FilterWord, WORDS};
use pipeline::trace::{render_trace, TraceFilter, MAX_TRACE};

use super::{json, number};
use crate::control::registry::{no_args, Command, Reply};
use crate::control::Ctx;

/// This area's commands.
pub fn commands<'a>() -> Vec<Command<Ctx<'a>>> {
    vec![
        Command {
            path: "trace add",
            usage: "N [port NAME] [src ADDR[/LEN]] [dst ADDR[/LEN]] [proto tcp|udp|icmp|icmp6|NUM] [sport N] [dport N]",
            help: "trace the next N packets (matching the filter) across all workers",
            run: trace_add,
        },
        Command {
            path: "show trace",
            usage: "",
            help: "the traced packets: each node, its header summary and decision",
            run: show_trace,
        },
        Command {
            path: "clear trace",
            usage: "",
            help: "forget traced packets and cancel a pending `trace add`",
            run: clear_trace,
        },
    ]
}

/// Parses `trace add`'s filter words against the running ports: `port NAME`, and the
/// 5-tuple words `show conntrack` takes as well ([`pipeline::filter_words`]).
fn filter(cx: &Ctx<'_>, words: &[String]) -> Result<TraceFilter, String> {
    let mut f = TraceFilter::default();
    let mut it = words.iter();
    while let Some(key) = it.next() {
        let value = it.next().ok_or_else(|| format!("`{key}` needs a value"))?;
        match FilterWord::parse(key, value)? {
            Some(w) => f.set(w),
            None if key == "port" => {
                let i = cx
                    .port_index(value)
                    .ok_or_else(|| format!("no port `{value}`"))?;
                f.in_port = Some(cx.ports[i].id());
            }
            None => return Err(format!("unknown filter `{key}` (port, {WORDS})")),
        }
    }
    Ok(f)
}

fn trace_add(cx: &mut Ctx<'_>, args: &[String]) -> Result<Reply, String> {
    let tracer = cx
        .tracer
        .ok_or("no pipeline: only a pipeline's packets can be traced")?;
    let n: u32 = number("N", args.first().ok_or("how many packets?")?)?;
    if n == 0 || n > MAX_TRACE {
        return Err(format!("N must be 1 to {MAX_TRACE}"));
    }
    let f = filter(cx, &args[1..])?;
    tracer.arm_filtered(n, f.clone());
    Ok(Reply::new(
        format!(
            "tracing the next {n} packets{}\n",
            if f.is_empty() { "" } else { " that match" }
        ),
        json!({ "armed": n, "filter": json(&f) }),
    ))
}

fn show_trace(cx: &mut Ctx<'_>, args: &[String]) -> Result<Reply, String> {
    no_args(args)?;
    let Some(tracer) = cx.tracer else {
        return Ok(Reply::new(
            "no pipeline: nothing is traced\n",
            json!({ "packets": [] }),
        ));
    };
    let mut traces = tracer.traces();
    // Rules and services from OVN: the NB row behind what decided (an ACL's owner and
    // external_ids, a service's Load_Balancer).
    let origins = crate::ovn::follow::current_origins();
    for s in traces.iter_mut().flat_map(|t| t.steps.iter_mut()) {
        s.origin = match (&s.rule, &s.service) {
            (Some(rule), _) => origins.acls.get(rule).map(|o| o.describe()),
            (None, Some(service)) => origins.lbs.get(service).map(|o| o.describe()),
            (None, None) => None,
        };
    }
    let pending = tracer.pending();
    let mut text = render_trace(&traces);
    if pending > 0 {
        text.push_str(&format!("({pending} more packets to trace)\n"));
    }
    Ok(Reply::new(
        text,
        json!({ "packets": json(&traces), "pending": pending }),
    ))
}

fn clear_trace(cx: &mut Ctx<'_>, args: &[String]) -> Result<Reply, String> {
    no_args(args)?;
    let dropped = cx.tracer.map_or(0, |t| {
        t.disarm();
        t.take().len()
    });
    Ok(Reply::new(
        format!("trace cleared ({dropped} packets)\n"),
        json!({ "cleared": dropped }),
    ))
}
