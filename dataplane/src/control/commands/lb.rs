//! `show lb [NODE]` and `lb backend ...`: the load balancers' services and backends with
//! their state, weight and counters, and backend changes (state, add, delete) published
//! through the LB's hitless table swap (each worker adopts the new table at its next
//! vector; established connections keep their backend).
//!
//! Only `lb` nodes with a `control` name can be reached (the name the control plane uses for
//! them; see the README's load-balancer stage). A later reload of the config file replaces
//! what these commands changed, as it replaces the running services.

use std::fmt::Write;
use std::net::SocketAddr;
use std::sync::Arc;

use pipeline::lb::{BackendConfig, BackendState, LbConfig, LbControl};
use serde_json::json;

use super::{json, number};
use crate::control::registry::{Command, Reply};
use crate::control::Ctx;
use crate::plan::Plan;

/// This area's commands.
pub fn commands<'a>() -> Vec<Command<Ctx<'a>>> {
    vec![
        Command {
            path: "show lb",
            usage: "[NODE]",
            help:
                "services and backends: state, weight, packets, bytes, new and active connections",
            run: show_lb,
        },
        Command {
            path: "lb backend",
            usage: "SERVICE BACKEND active|draining|down",
            help: "set a backend's state (draining: keeps its connections, gets no new ones)",
            run: backend_state,
        },
        Command {
            path: "lb backend add",
            usage: "SERVICE ADDR:PORT [weight N]",
            help: "add a backend to a service",
            run: backend_add,
        },
        Command {
            path: "lb backend del",
            usage: "SERVICE BACKEND",
            help: "remove a backend (its connections are then treated as a down backend's)",
            run: backend_del,
        },
    ]
}

/// The running load balancers of `plan`'s pipeline: (node, control name, control).
fn named_controls(plan: &Plan) -> Vec<(String, String, Arc<LbControl>)> {
    let Some(spec) = &plan.pipeline else {
        return Vec::new();
    };
    spec.nodes
        .iter()
        .filter(|n| n.kind == "lb")
        .filter_map(|n| {
            let cfg: LbConfig = toml::Value::Table(n.params.clone()).try_into().ok()?;
            let name = cfg.resolve().ok()?.control?;
            let control = LbControl::named(&name)?;
            Some((n.name.clone(), name, control))
        })
        .collect()
}

/// The running load balancers of `plan`'s pipeline by node name (those with a `control`
/// name; the others cannot be reached from outside their workers).
pub fn lb_controls(plan: &Plan) -> Vec<(String, Arc<LbControl>)> {
    named_controls(plan)
        .into_iter()
        .map(|(node, _, c)| (node, c))
        .collect()
}

fn controls(cx: &Ctx<'_>) -> Vec<(String, String, Arc<LbControl>)> {
    named_controls(cx.plan)
}

/// The control whose config has service `service` (the first, if several).
fn control_with(cx: &Ctx<'_>, service: &str) -> Result<(String, Arc<LbControl>), String> {
    let all = controls(cx);
    if all.is_empty() {
        return Err("no lb node with a `control` name is running".into());
    }
    all.into_iter()
        .find(|(_, _, c)| c.config().services.iter().any(|s| s.name == service))
        .map(|(node, _, c)| (node, c))
        .ok_or_else(|| format!("no service `{service}`"))
}

fn show_lb(cx: &mut Ctx<'_>, args: &[String]) -> Result<Reply, String> {
    let mut all = controls(cx);
    match args {
        [] => {}
        [one] => {
            all.retain(|(node, name, _)| node == one || name == one);
            if all.is_empty() {
                return Err(format!("no running lb node or control `{one}`"));
            }
        }
        [_, extra, ..] => return Err(format!("unexpected argument `{extra}`")),
    }
    if all.is_empty() {
        return Ok(Reply::new(
            "no lb node with a `control` name is running\n",
            json!({ "nodes": [] }),
        ));
    }
    // The NB rows behind services from OVN (none without `[ovn]`).
    let origins = crate::ovn::follow::current_origins();
    let mut text = String::new();
    let mut nodes = Vec::new();
    for (node, name, control) in all {
        let mut nb = serde_json::Map::new();
        let stats = control.stats();
        let cfg = control.config();
        let _ = writeln!(
            text,
            "lb node {node} (control {name}): table generation {}",
            stats.generation
        );
        for s in &stats.services {
            let sc = cfg.services.iter().find(|c| c.name == s.name);
            let vip = sc.map_or(String::new(), |c| match c.port {
                Some(p) => format!(
                    "{} {}:{p}",
                    json(&c.protocol).as_str().unwrap_or("?"),
                    c.vip
                ),
                None => format!(
                    "{} {} (all ports)",
                    json(&c.protocol).as_str().unwrap_or("?"),
                    c.vip
                ),
            });
            let _ = writeln!(
                text,
                "  service {} {vip}: packets {} bytes {} replies {} new connections {} active {}",
                s.name,
                s.stats.packets,
                s.stats.bytes,
                s.stats.reply_packets,
                s.stats.new_connections,
                s.stats.active_connections
            );
            if let Some(o) = origins.lbs.get(&s.name) {
                let _ = writeln!(text, "    from {}", o.describe());
                nb.insert(
                    s.name.clone(),
                    json!({
                        "uuid": o.uuid, "name": o.name, "vip": o.vip,
                        "external_ids": o.external_ids,
                    }),
                );
            }
            let _ = writeln!(
                text,
                "    {:<24} {:<9} {:>6} {:>14} {:>16} {:>12} {:>10}",
                "backend", "state", "weight", "packets", "bytes", "new conns", "active"
            );
            for b in &s.backends {
                let weight = sc
                    .and_then(|c| c.backends.iter().find(|x| x.display_name() == b.name))
                    .map_or("-".to_string(), |x| x.weight.to_string());
                let _ = writeln!(
                    text,
                    "    {:<24} {:<9} {:>6} {:>14} {:>16} {:>12} {:>10}",
                    b.name,
                    json(&b.status).as_str().unwrap_or("?"),
                    weight,
                    b.stats.packets,
                    b.stats.bytes,
                    b.stats.new_connections,
                    b.stats.active_connections
                );
            }
        }
        nodes.push(json!({
            "node": node, "control": name, "stats": json(&stats), "config": json(&cfg),
            "nb": nb,
        }));
    }
    Ok(Reply::new(text, json!({ "nodes": nodes })))
}

fn backend_state(cx: &mut Ctx<'_>, args: &[String]) -> Result<Reply, String> {
    let [service, backend, state] = args else {
        return Err("a service, a backend and a state".into());
    };
    let state = match state.as_str() {
        "active" => BackendState::Active,
        "draining" => BackendState::Draining,
        "down" => BackendState::Down,
        s => return Err(format!("state `{s}`: one of active, draining, down")),
    };
    let (node, control) = control_with(cx, service)?;
    let generation = control
        .set_backend_state(service, backend, state)
        .map_err(|e| e.to_string())?;
    Ok(Reply::new(
        format!(
            "lb node {node}: service {service} backend {backend} {}, table generation {generation}\n",
            json(&state).as_str().unwrap_or("?")
        ),
        json!({ "node": node, "service": service, "backend": backend, "state": json(&state), "generation": generation }),
    ))
}

fn backend_add(cx: &mut Ctx<'_>, args: &[String]) -> Result<Reply, String> {
    let (service, addr, weight) = match args {
        [s, a] => (s, a, 1),
        [s, a, w, n] if w == "weight" => (s, a, number("weight", n)?),
        _ => return Err("a service and ADDR:PORT, optionally `weight N`".into()),
    };
    let sa: SocketAddr = addr
        .parse()
        .map_err(|_| format!("`{addr}` is not ADDR:PORT (IPv6: [ADDR]:PORT)"))?;
    let (node, control) = control_with(cx, service)?;
    let backend = BackendConfig {
        address: sa.ip(),
        port: Some(sa.port()),
        weight,
        state: BackendState::Active,
        name: None,
        mac: None,
    };
    let name = backend.display_name();
    if control
        .config()
        .services
        .iter()
        .filter(|s| &s.name == service)
        .flat_map(|s| &s.backends)
        .any(|b| b.display_name() == name)
    {
        return Err(format!("service {service} already has backend {name}"));
    }
    let generation = control
        .add_backend(service, backend)
        .map_err(|e| e.to_string())?;
    Ok(Reply::new(
        format!("lb node {node}: service {service} backend {name} added, table generation {generation}\n"),
        json!({ "node": node, "service": service, "backend": name, "generation": generation }),
    ))
}

fn backend_del(cx: &mut Ctx<'_>, args: &[String]) -> Result<Reply, String> {
    let [service, backend] = args else {
        return Err("a service and a backend".into());
    };
    let (node, control) = control_with(cx, service)?;
    let generation = control
        .remove_backend(service, backend)
        .map_err(|e| e.to_string())?;
    Ok(Reply::new(
        format!("lb node {node}: service {service} backend {backend} removed, table generation {generation}\n"),
        json!({ "node": node, "service": service, "backend": backend, "generation": generation }),
    ))
}
