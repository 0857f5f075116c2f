//! Text tables in the style of VPP's `show runtime` and `show errors`.

use super::snapshot::{aggregate, RuntimeSnapshot};
use std::fmt::Write;

/// Renders the runtime table summed over `workers` (VPP `show runtime`): per node Name,
/// Calls, Vectors, Packets, Drops, Clocks/pkt and Vectors/Call (packets per call, as in
/// VPP), followed by the non-zero drop reasons. With several workers, the total comes first
/// and each worker's own table follows.
pub fn render_runtime_table(workers: &[RuntimeSnapshot]) -> String {
    let mut out = String::new();
    let total = aggregate(workers);
    let label = if workers.len() == 1 && !workers[0].worker.is_empty() {
        workers[0].worker.clone()
    } else {
        format!("total ({} worker(s))", workers.len())
    };
    render_one(&total, &label, &mut out);
    if workers.len() > 1 {
        for (i, w) in workers.iter().enumerate() {
            let label = if w.worker.is_empty() {
                format!("worker {i}")
            } else {
                w.worker.clone()
            };
            out.push('\n');
            render_one(w, &label, &mut out);
        }
    }
    out
}

fn render_one(s: &RuntimeSnapshot, label: &str, out: &mut String) {
    let _ = writeln!(
        out,
        "Thread {label}: bursts {}, rx {}, tx {}, dropped {}",
        s.bursts, s.rx_packets, s.tx_packets, s.dropped
    );
    let _ = writeln!(
        out,
        "{:<24} {:>12} {:>12} {:>14} {:>12} {:>11} {:>13}",
        "Name", "Calls", "Vectors", "Packets", "Drops", "Clocks/pkt", "Vectors/Call"
    );
    for n in &s.nodes {
        let _ = writeln!(
            out,
            "{:<24} {:>12} {:>12} {:>14} {:>12} {:>11.2} {:>13.2}",
            n.name,
            n.calls,
            n.vectors,
            n.packets,
            n.total_drops(),
            n.clocks_per_packet(),
            n.packets_per_vector()
        );
    }
    let drops = render_drops_table(std::slice::from_ref(s));
    if !drops.is_empty() {
        out.push_str(&drops);
    }
}

/// Renders the non-zero drop and kind-specific counters summed over `workers`
/// (VPP `show errors`): Count, Node, Reason. Empty if all are zero.
pub fn render_drops_table(workers: &[RuntimeSnapshot]) -> String {
    let total = aggregate(workers);
    let mut rows = Vec::new();
    for n in &total.nodes {
        for d in n.drops.iter().filter(|d| d.count > 0) {
            rows.push((d.count, n.name.clone(), format!("drop: {}", d.name)));
        }
        for c in n.counters.iter().filter(|c| c.count > 0) {
            rows.push((c.count, n.name.clone(), c.name.clone()));
        }
    }
    if rows.is_empty() {
        return String::new();
    }
    let mut out = String::new();
    let _ = writeln!(out, "{:>14}  {:<24} Reason", "Count", "Node");
    for (count, node, reason) in rows {
        let _ = writeln!(out, "{count:>14}  {node:<24} {reason}");
    }
    out
}
