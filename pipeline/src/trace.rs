//! Packet tracing (VPP `trace add` / `show trace`): the path of the next N packets through
//! the graph, with each node's decision and a one-line header summary.
//!
//! A control thread arms the tracer through a [`TraceHandle`]; the worker checks one atomic
//! per burst and, only while traced packets are in flight, one flag per node vector.
//!
//! One handle may serve several graphs ([`crate::Graph::share_tracer`]): the workers then
//! claim packets from one budget, so `arm(10)` traces exactly ten packets whichever workers
//! receive them, and each trace names its worker. A [`TraceFilter`] (input port, addresses or
//! prefixes, protocol, ports) selects which packets count: it is matched against the metadata
//! the graph's input node leaves (the `parse` node's 5-tuple), so address, protocol and port
//! filters need a `parse` input node; the input port filter works with any.

use crate::acl::net::IpNet;
use crate::filter_words::FilterWord;
use crate::graph::{Decision, PortInfo, Verdict};
use crate::meta::PacketMeta;
use crate::wire::summary;
use crate::PacketBuf;
use serde::{Deserialize, Serialize};
use std::fmt::Write;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::Relaxed};
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
    /// What the node based the decision on, when it says ([`TraceNote`]; the `acl` node:
    /// the rule that matched, the default, or the connection the packet belongs to).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided_by: Option<String>,
    /// The name of the rule that decided, when one did (the NB ACL's UUID for rules from
    /// OVN).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// The load-balancer service whose connection decided, when one did (the `lb` node).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// Where that rule or service came from, filled in by the control side that knows it
    /// (from OVN: the NB ACL's owner and `external_ids`, e.g.
    /// `neutron:security_group_rule_id`, or the NB `Load_Balancer`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
}

/// A node's own account of why it decided what it did for one traced packet
/// ([`crate::graph::Node::trace_note`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TraceNote {
    /// One line: e.g. `rule r1 (priority 1000, drop)`, `no rule matched: default drop`,
    /// `established connection (conntrack)`.
    pub text: String,
    /// The rule that decided, by name, when one did.
    pub rule: Option<String>,
    /// The load-balancer service, by name, when one decided.
    pub service: Option<String>,
}

/// The path of one traced packet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PacketTrace {
    /// Sequence number of the traced packet on this graph (from 1).
    pub seq: u64,
    /// The port it was received on.
    pub in_port: u16,
    /// The worker that received it (its graph's label, e.g. `lcore 1`; empty if unset).
    #[serde(default)]
    pub worker: String,
    /// The nodes it went through, in order.
    pub steps: Vec<TraceStep>,
}

/// Which packets a trace request counts (every field that is set must match).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TraceFilter {
    /// The port the packet arrived on (DPDK port id).
    pub in_port: Option<u16>,
    /// Source address or prefix.
    pub src: Option<IpNet>,
    /// Destination address or prefix.
    pub dst: Option<IpNet>,
    /// IP protocol number (6 TCP, 17 UDP, 1 ICMP, 58 ICMPv6).
    pub protocol: Option<u8>,
    /// L4 source port.
    pub src_port: Option<u16>,
    /// L4 destination port.
    pub dst_port: Option<u16>,
}

impl TraceFilter {
    /// Sets the field a 5-tuple filter word names (see [`crate::filter_words`]).
    pub fn set(&mut self, w: FilterWord) {
        match w {
            FilterWord::Src(n) => self.src = Some(n),
            FilterWord::Dst(n) => self.dst = Some(n),
            FilterWord::Proto(p) => self.protocol = Some(p),
            FilterWord::SrcPort(p) => self.src_port = Some(p),
            FilterWord::DstPort(p) => self.dst_port = Some(p),
        }
    }

    /// True when no field is set (every packet matches).
    pub fn is_empty(&self) -> bool {
        *self == TraceFilter::default()
    }

    /// Whether a packet received on `in_port` with metadata `m` matches.
    pub fn matches(&self, in_port: u16, m: &PacketMeta) -> bool {
        let net = |n: &Option<IpNet>, a: Option<IpAddr>| match (n, a) {
            (None, _) => true,
            (Some(n), Some(a)) => n.contains(&a),
            (Some(_), None) => false,
        };
        self.in_port.is_none_or(|p| p == in_port)
            && net(&self.src, m.src_ip())
            && net(&self.dst, m.dst_ip())
            && self
                .protocol
                .is_none_or(|p| m.ip_version != 0 && m.protocol == p)
            && self.src_port.is_none_or(|p| m.has_l4() && m.src_port == p)
            && self.dst_port.is_none_or(|p| m.has_l4() && m.dst_port == p)
    }
}

#[derive(Debug, Default)]
struct Shared {
    armed: AtomicU32,
    /// Whether `filter` is set (read per armed burst without the lock).
    filtered: AtomicBool,
    filter: Mutex<TraceFilter>,
    /// Sequence numbers, over every graph sharing the handle.
    seq: AtomicU64,
    done: Mutex<Vec<PacketTrace>>,
}

/// A cloneable, `Send + Sync` handle to a graph's tracer.
#[derive(Debug, Clone, Default)]
pub struct TraceHandle(Arc<Shared>);

impl TraceHandle {
    /// Traces the next `n` packets (at most [`MAX_TRACE`]); replaces any pending request
    /// and its filter.
    pub fn arm(&self, n: u32) {
        self.arm_filtered(n, TraceFilter::default());
    }

    /// Traces the next `n` packets that match `filter` (at most [`MAX_TRACE`]); replaces any
    /// pending request.
    pub fn arm_filtered(&self, n: u32, filter: TraceFilter) {
        self.0.armed.store(0, Relaxed);
        let filtered = !filter.is_empty();
        *self.0.filter.lock().unwrap_or_else(|e| e.into_inner()) = filter;
        self.0.filtered.store(filtered, Relaxed);
        self.0.armed.store(n.min(MAX_TRACE), Relaxed);
    }

    /// The filter of the current request (empty: every packet).
    pub fn filter(&self) -> TraceFilter {
        self.0
            .filter
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
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
        if t.worker.is_empty() {
            let _ = writeln!(out, "Packet {} (in port {})", t.seq, t.in_port);
        } else {
            let _ = writeln!(
                out,
                "Packet {} (in port {}, {})",
                t.seq, t.in_port, t.worker
            );
        }
        for (i, s) in t.steps.iter().enumerate() {
            let _ = writeln!(out, "  {i:02} {}: {}", s.node, s.summary);
            let _ = writeln!(out, "     -> {}", s.outcome);
            if let Some(d) = &s.decided_by {
                let _ = writeln!(out, "        by {d}");
            }
            if let Some(o) = &s.origin {
                let _ = writeln!(out, "        from {o}");
            }
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
    /// The label traces of this graph carry.
    worker: String,
    active: Vec<PacketTrace>,
}

impl Tracer {
    pub fn handle(&self) -> TraceHandle {
        self.shared.clone()
    }

    /// Serves `handle` (shared with other graphs) from now on; traces carry `worker`.
    pub fn share(&mut self, handle: TraceHandle, worker: String) {
        self.shared = handle;
        self.worker = worker;
    }

    /// How many of this burst's `n` packets may be traced (0 unless armed): the first ones,
    /// or, with a filter, any of the `n` (each claimed when it matches, in
    /// [`mark_input`](Self::mark_input)).
    #[inline(always)]
    pub fn begin_burst(&mut self, n: usize) -> usize {
        if self.shared.0.armed.load(Relaxed) == 0 {
            return 0;
        }
        self.claim(n)
    }

    #[cold]
    fn claim(&mut self, n: usize) -> usize {
        if self.shared.0.filtered.load(Relaxed) {
            return n;
        }
        self.take_budget(n)
    }

    /// Takes up to `n` packets from the shared budget; returns how many it got.
    fn take_budget(&self, n: usize) -> usize {
        let mut k = 0;
        let _ = self.shared.0.armed.fetch_update(Relaxed, Relaxed, |a| {
            k = (a as usize).min(n);
            Some(a - k as u32)
        });
        k
    }

    /// Marks the packets of the input vector to trace: the first `k`, or, when the request
    /// has a filter, those that match it while the budget lasts.
    #[cold]
    pub fn mark_input<P: PacketBuf>(&mut self, pkts: &[P], meta: &mut [PacketMeta], k: usize) {
        self.active.clear();
        let filter = if self.shared.0.filtered.load(Relaxed) {
            Some(self.shared.filter())
        } else {
            None
        };
        for (j, (p, m)) in pkts.iter().zip(meta.iter_mut()).enumerate() {
            m.trace = 0;
            let chosen = match &filter {
                None => j < k,
                Some(f) => f.matches(p.in_port(), m) && self.take_budget(1) == 1,
            };
            if chosen {
                self.active.push(PacketTrace {
                    seq: self.shared.0.seq.fetch_add(1, Relaxed) + 1,
                    in_port: p.in_port(),
                    worker: self.worker.clone(),
                    steps: Vec::new(),
                });
                m.trace = self.active.len() as u16;
            }
        }
    }

    /// Records the decision of a node for every traced packet of its vector, with the
    /// node's note on it (`note(index, meta)`, [`crate::graph::Node::trace_note`]).
    #[cold]
    pub fn record<P: PacketBuf>(
        &mut self,
        names: &TraceNames<'_>,
        pkts: &[P],
        meta: &[PacketMeta],
        verdict: Verdict,
        decisions: &[Decision],
        note: impl Fn(usize, &PacketMeta) -> Option<TraceNote>,
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
            let note = note(j, m);
            t.steps.push(TraceStep {
                node: names.node.to_string(),
                summary: summary::summarize(p.data()),
                outcome,
                rule: note.as_ref().and_then(|n| n.rule.clone()),
                service: note.as_ref().and_then(|n| n.service.clone()),
                decided_by: note.map(|n| n.text),
                origin: None,
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
