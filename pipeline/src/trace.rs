//! Packet tracing (VPP `trace add` / `show trace`): the path of the next N packets through
//! the graph, with each node's decision and a one-line header summary.
//!
//! A control thread arms the tracer through a [`TraceHandle`]; the worker checks one atomic
//! per burst and, only while traced packets are in flight, one flag per node vector.

use crate::graph::{Decision, PortInfo, Verdict};
use crate::meta::PacketMeta;
use crate::wire::summary;
use crate::PacketBuf;
use serde::{Deserialize, Serialize};
use std::fmt::Write;
use std::sync::atomic::{AtomicU32, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

/// Most packets one `arm` call may ask for.
pub const MAX_TRACE: u32 = 10_000;

/// One node's view of a traced packet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TraceStep {
    /// The node.
    pub node: String,
    /// The packet's headers when the node decided (e.g. `IPv4 10.0.0.1:1234 -> 10.0.0.2:80 UDP len 64`).
    pub summary: String,
    /// The decision: `next <node>`, `tx port <id> (<name>)` or `drop: <reason>`.
    pub outcome: String,
}

/// The path of one traced packet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PacketTrace {
    /// Sequence number of the traced packet on this graph (from 1).
    pub seq: u64,
    /// The port it was received on.
    pub in_port: u16,
    /// The nodes it went through, in order.
    pub steps: Vec<TraceStep>,
}

#[derive(Debug, Default)]
struct Shared {
    armed: AtomicU32,
    done: Mutex<Vec<PacketTrace>>,
}

/// A cloneable, `Send + Sync` handle to a graph's tracer.
#[derive(Debug, Clone, Default)]
pub struct TraceHandle(Arc<Shared>);

impl TraceHandle {
    /// Traces the next `n` packets (at most [`MAX_TRACE`]); replaces any pending request.
    pub fn arm(&self, n: u32) {
        self.0.armed.store(n.min(MAX_TRACE), Relaxed);
    }

    /// Cancels a pending request.
    pub fn disarm(&self) {
        self.0.armed.store(0, Relaxed);
    }

    /// Packets still to be traced.
    pub fn pending(&self) -> u32 {
        self.0.armed.load(Relaxed)
    }

    /// Removes and returns the finished traces.
    pub fn take(&self) -> Vec<PacketTrace> {
        std::mem::take(&mut *self.0.done.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// A copy of the finished traces.
    pub fn traces(&self) -> Vec<PacketTrace> {
        self.0
            .done
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Renders the finished traces (keeping them), like VPP's `show trace`.
    pub fn render(&self) -> String {
        render_trace(&self.traces())
    }
}

/// Renders traces like VPP's `show trace`.
pub fn render_trace(traces: &[PacketTrace]) -> String {
    let mut out = String::new();
    if traces.is_empty() {
        out.push_str("No packets in trace buffer\n");
    }
    for t in traces {
        let _ = writeln!(out, "Packet {} (in port {})", t.seq, t.in_port);
        for (i, s) in t.steps.iter().enumerate() {
            let _ = writeln!(out, "  {i:02} {}: {}", s.node, s.summary);
            let _ = writeln!(out, "     -> {}", s.outcome);
        }
        out.push('\n');
    }
    out
}

/// What the tracer needs to name a node's decisions.
pub(crate) struct TraceNames<'a> {
    pub node: &'a str,
    pub next: &'a [String],
    pub drop_reasons: &'a [&'static str],
    pub ports: &'a [PortInfo],
}

/// The worker side of tracing.
#[derive(Debug, Default)]
pub(crate) struct Tracer {
    shared: TraceHandle,
    active: Vec<PacketTrace>,
    seq: u64,
}

impl Tracer {
    pub fn handle(&self) -> TraceHandle {
        self.shared.clone()
    }

    /// How many of this burst's `n` packets to trace (0 unless armed).
    #[inline(always)]
    pub fn begin_burst(&mut self, n: usize) -> usize {
        if self.shared.0.armed.load(Relaxed) == 0 {
            return 0;
        }
        self.claim(n)
    }

    #[cold]
    fn claim(&mut self, n: usize) -> usize {
        let mut k = 0;
        let _ = self.shared.0.armed.fetch_update(Relaxed, Relaxed, |a| {
            k = (a as usize).min(n);
            Some(a - k as u32)
        });
        k
    }

    /// Marks the first `k` packets of the input vector as traced.
    #[cold]
    pub fn mark_input<P: PacketBuf>(&mut self, pkts: &[P], meta: &mut [PacketMeta], k: usize) {
        self.active.clear();
        for (j, (p, m)) in pkts.iter().zip(meta.iter_mut()).enumerate() {
            if j < k {
                self.seq += 1;
                self.active.push(PacketTrace {
                    seq: self.seq,
                    in_port: p.in_port(),
                    steps: Vec::new(),
                });
                m.trace = (j + 1) as u16;
            } else {
                m.trace = 0;
            }
        }
    }

    /// Records the decision of a node for every traced packet of its vector.
    #[cold]
    pub fn record<P: PacketBuf>(
        &mut self,
        names: &TraceNames<'_>,
        pkts: &[P],
        meta: &[PacketMeta],
        verdict: Verdict,
        decisions: &[Decision],
    ) {
        for (j, (p, m)) in pkts.iter().zip(meta).enumerate() {
            if m.trace == 0 {
                continue;
            }
            let Some(t) = self.active.get_mut(usize::from(m.trace) - 1) else {
                continue;
            };
            let d = match verdict {
                Verdict::All(d) => d,
                Verdict::PerPacket => decisions[j],
            };
            let outcome = match d {
                Decision::Next(s) => match names.next.get(usize::from(s)) {
                    Some(n) => format!("next {n}"),
                    None => format!("next <invalid output {s}>"),
                },
                Decision::Tx(s) => match names.ports.get(usize::from(s)) {
                    Some(p) => format!("tx port {} ({})", p.index, p.name),
                    None => format!("tx <invalid slot {s}>"),
                },
                Decision::Drop(c) => format!(
                    "drop: {}",
                    names
                        .drop_reasons
                        .get(usize::from(c))
                        .copied()
                        .unwrap_or("invalid-decision")
                ),
            };
            t.steps.push(TraceStep {
                node: names.node.to_string(),
                summary: summary::summarize(p.data()),
                outcome,
            });
        }
    }

    /// Publishes the burst's traces.
    #[cold]
    pub fn end_burst(&mut self) {
        if self.active.is_empty() {
            return;
        }
        let mut done = self.shared.0.done.lock().unwrap_or_else(|e| e.into_inner());
        done.append(&mut self.active);
    }
}
