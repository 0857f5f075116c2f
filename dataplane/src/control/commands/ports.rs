//! `show ports`, `show workers`, `show memory`: the devices, the lcores and the mempools.

use std::fmt::Write;

use serde_json::json;

use super::json;
use crate::control::registry::{no_args, Command, Reply};
use crate::control::Ctx;

/// This area's commands.
pub fn commands<'a>() -> Vec<Command<Ctx<'a>>> {
    vec![
        Command {
            path: "show ports",
            usage: "",
            help:
                "per port: device, driver, link, queues, device counters and the workers' counters",
            run: show_ports,
        },
        Command {
            path: "show workers",
            usage: "",
            help: "per worker: lcore, rx queues, polls, busy share, cycles per packet",
            run: show_workers,
        },
        Command {
            path: "show memory",
            usage: "",
            help: "mempools (size, in use, socket) and huge pages",
            run: show_memory,
        },
    ]
}

fn mac(m: [u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

fn show_ports(cx: &mut Ctx<'_>, args: &[String]) -> Result<Reply, String> {
    no_args(args)?;
    let workers = cx.workers_now();
    let mut text = String::new();
    let mut rows = Vec::new();
    for (i, (pp, port)) in cx.plan.ports.iter().zip(cx.ports).enumerate() {
        let hw = port.stats();
        let link = port.link();
        let sum = |f: fn(&crate::counters::PortSnapshot) -> u64| -> u64 {
            workers.iter().map(|w| f(&w.ports[i])).sum()
        };
        let (rx, tx, tx_dropped, no_route) = (
            sum(|p| p.rx),
            sum(|p| p.tx),
            sum(|p| p.tx_dropped),
            sum(|p| p.rx_no_route),
        );
        let _ = writeln!(
            text,
            "{} ({}) port {} {} driver {} mac {} link {}{} rxq {} txq {} rxd {} txd {}",
            pp.name,
            pp.role,
            port.id(),
            pp.device,
            port.driver(),
            mac(port.mac()),
            if link.up { "up" } else { "down" },
            if link.speed_mbps > 0 {
                format!(" {} Mbit/s", link.speed_mbps)
            } else {
                String::new()
            },
            pp.rx_queues,
            pp.tx_queues,
            pp.rxd,
            pp.txd
        );
        let _ = writeln!(
            text,
            "  device  rx {:>14} pkts {:>16} bytes  missed {} errors {} nombuf {}\n          tx {:>14} pkts {:>16} bytes  errors {}",
            hw.ipackets, hw.ibytes, hw.imissed, hw.ierrors, hw.rx_nombuf, hw.opackets, hw.obytes, hw.oerrors
        );
        let _ = writeln!(
            text,
            "  workers rx {rx:>14} tx {tx:>14} tx-dropped {tx_dropped} rx-no-route {no_route}"
        );
        rows.push(json!({
            "name": pp.name, "role": pp.role, "device": pp.device.to_string(),
            "port_id": port.id(), "ethdev": port.name(), "driver": port.driver(),
            "mac": mac(port.mac()), "link": json(&link),
            "rx_queues": pp.rx_queues, "tx_queues": pp.tx_queues,
            "hw": json(&hw),
            "workers": { "rx": rx, "tx": tx, "tx_dropped": tx_dropped, "rx_no_route": no_route },
            "vhost_direct": json(&port.vhost_direct_counts()),
        }));
    }
    Ok(Reply::new(text, json!({ "ports": rows })))
}

fn show_workers(cx: &mut Ctx<'_>, args: &[String]) -> Result<Reply, String> {
    no_args(args)?;
    let secs = cx.started.elapsed().as_secs_f64().max(1e-9);
    let hz = crate::dpdk::tsc_hz().max(1) as f64;
    let mut text = format!(
        "{:<7} {:<28} {:>14} {:>12} {:>8} {:>14} {:>11}\n",
        "lcore", "rx queues", "polls", "busy polls", "busy %", "rx packets", "cycles/pkt"
    );
    let mut rows = Vec::new();
    for ((lcore, c), wp) in cx.counters.iter().zip(&cx.plan.workers) {
        let s = c.snapshot();
        let queues: Vec<String> = wp
            .rx
            .iter()
            .map(|&(p, q)| format!("{}:{q}", cx.plan.ports[p].name))
            .collect();
        let rx: u64 = s.ports.iter().map(|p| p.rx).sum();
        let busy = 100.0 * s.busy_cycles as f64 / (hz * secs);
        let _ = writeln!(
            text,
            "{lcore:<7} {:<28} {:>14} {:>12} {busy:>7.1}% {rx:>14} {:>11.1}",
            queues.join(" "),
            s.polls,
            s.busy_polls,
            s.cycles_per_packet
        );
        rows.push(json!({
            "lcore": lcore, "rx_queues": queues, "busy_percent": busy,
            "rx_packets": rx, "counters": json(&s),
        }));
    }
    Ok(Reply::new(
        text,
        json!({ "seconds": secs, "workers": rows }),
    ))
}

/// Huge-page figures from /proc/meminfo (name, value).
fn hugepage_info() -> Vec<(String, u64)> {
    let text = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    text.lines()
        .filter(|l| l.starts_with("HugePages_") || l.starts_with("Hugepagesize"))
        .filter_map(|l| {
            let (k, v) = l.split_once(':')?;
            let n = v.split_whitespace().next()?.parse().ok()?;
            Some((k.trim().to_string(), n))
        })
        .collect()
}

fn show_memory(cx: &mut Ctx<'_>, args: &[String]) -> Result<Reply, String> {
    no_args(args)?;
    let mut text = format!(
        "{:<16} {:>7} {:>10} {:>10} {:>10} {:>10}\n",
        "mempool", "socket", "mbufs", "in use", "free", "data room"
    );
    let mut pools = Vec::new();
    for (socket, p) in cx.pools {
        let _ = writeln!(
            text,
            "{:<16} {socket:>7} {:>10} {:>10} {:>10} {:>10}",
            p.name(),
            p.size(),
            p.in_use(),
            p.available(),
            cx.plan.mempool.data_room
        );
        pools.push(json!({
            "name": p.name(), "socket": socket, "size": p.size(),
            "in_use": p.in_use(), "available": p.available(),
        }));
    }
    let huge = hugepage_info();
    if cx.plan.no_huge {
        text.push_str("huge pages: NOT USED (no_huge: development mode)\n");
    } else {
        let dir = cx
            .plan
            .huge_dir
            .as_ref()
            .map_or("/dev/hugepages".into(), |d| d.display().to_string());
        let _ = writeln!(
            text,
            "huge pages ({dir}, EAL memory {} MiB):",
            cx.plan.memory_mb
        );
    }
    for (k, v) in &huge {
        let _ = writeln!(text, "  {k:<18} {v}");
    }
    let huge_map: serde_json::Map<String, serde_json::Value> =
        huge.into_iter().map(|(k, v)| (k, json!(v))).collect();
    Ok(Reply::new(
        text,
        json!({ "mempools": pools, "no_huge": cx.plan.no_huge, "hugepages": huge_map }),
    ))
}
