//! A built graph for one worker: nodes in run order, their pre-allocated input vectors, and
//! the per-burst dispatch loop.

use super::decision::{Decision, Verdict};
use super::node::Frame;
use super::port::{PortInfo, TxVectors};
use super::registry::{BuildContext, ParamError, Registry};
use super::shared::SharedState;
use super::spec::{GraphSpec, SpecError, SpecErrorReason};
use super::validate::param_error;
use super::vector::{PacketVector, VECTOR_SIZE};
use crate::ct_sample::CtSampler;
use crate::cycles;
use crate::nodes::NodeImpl;
use crate::stats::counters::NodeStats;
use crate::stats::{GraphStats, NodeCounters, RuntimeSnapshot, StatsHandle};
use crate::trace::{TraceHandle, TraceNames, Tracer};
use crate::PacketBuf;
use arrayvec::ArrayVec;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Drop reasons the graph itself counts on every node, after the node kind's own reasons:
/// a destination vector was full (a tx vector the worker did not drain), and a node returned
/// an output slot or drop code its kind does not have.
pub const GRAPH_DROP_REASONS: [&str; 2] = ["vector-full", "invalid-decision"];

/// Packet counts of one [`Graph::run`] / [`Graph::process`] call.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BurstStats {
    /// Packets that entered the graph.
    pub rx: usize,
    /// Packets placed in tx vectors.
    pub tx: usize,
    /// Packets dropped.
    pub dropped: usize,
}

impl std::ops::AddAssign for BurstStats {
    fn add_assign(&mut self, o: Self) {
        self.rx += o.rx;
        self.tx += o.tx;
        self.dropped += o.dropped;
    }
}

struct GraphNode<P: PacketBuf> {
    name: String,
    imp: NodeImpl<P>,
    /// Run-order index of the destination of each output slot.
    next: Box<[u16]>,
    next_names: Vec<String>,
    drop_reasons: Vec<&'static str>,
    own_reasons: usize,
}

/// A graph built for one worker. Owns every vector it needs; processing a burst does not
/// allocate (except while tracing).
pub struct Graph<P: PacketBuf> {
    nodes: Vec<GraphNode<P>>,
    inputs: Vec<Box<PacketVector<P>>>,
    spare: Box<PacketVector<P>>,
    decisions: Box<[Decision; VECTOR_SIZE]>,
    stats: Arc<GraphStats>,
    tracer: Tracer,
    ports: Vec<PortInfo>,
    reset_meta: bool,
    shared: SharedState,
    /// Rung by [`CtSampler::request`] on any of this graph's samplers (a count).
    ct_bell: Arc<AtomicU64>,
    /// The bell's count the nodes were last asked about.
    ct_seen: u64,
    /// Some node has a sample under way.
    ct_serving: bool,
}

impl<P: PacketBuf + 'static> Graph<P> {
    /// Validates `spec` against `registry` and builds the graph; `ports` are the ports it may
    /// transmit on (their order defines the tx slots of [`TxVectors`]).
    pub fn build(
        spec: &GraphSpec,
        registry: &Registry<P>,
        ports: &[PortInfo],
    ) -> Result<Self, SpecError> {
        check_ports(ports)?;
        let plan = spec.plan(registry)?;
        let mut pos = vec![0usize; spec.nodes.len()];
        for (k, &i) in plan.order.iter().enumerate() {
            pos[i] = k;
        }
        let mut nodes = Vec::with_capacity(plan.order.len());
        let mut stats = Vec::with_capacity(plan.order.len());
        let mut reset_meta = true;
        let shared = std::cell::RefCell::new(SharedState::new());
        for (k, &i) in plan.order.iter().enumerate() {
            let ns = &spec.nodes[i];
            let kind = registry.get(&ns.kind).expect("validated kind");
            let imp = kind
                .build(
                    &ns.params,
                    &BuildContext {
                        node: &ns.name,
                        ports,
                        at: k,
                        shared: &shared,
                    },
                )
                .map_err(|e| param_error(&ns.name, e))?;
            if k == 0 {
                reset_meta = !kind.info.fills_meta;
            }
            let mut drop_reasons = kind.info.drop_reasons.to_vec();
            drop_reasons.extend(GRAPH_DROP_REASONS);
            stats.push(NodeStats {
                name: ns.name.clone(),
                kind: ns.kind.clone(),
                drop_reasons: drop_reasons.clone(),
                counter_names: kind.info.counters.to_vec(),
                counters: NodeCounters::new(drop_reasons.len(), kind.info.counters.len()),
            });
            nodes.push(GraphNode {
                name: ns.name.clone(),
                imp,
                next: plan.next[i].iter().map(|&j| pos[j] as u16).collect(),
                next_names: plan.next[i]
                    .iter()
                    .map(|&j| spec.nodes[j].name.clone())
                    .collect(),
                drop_reasons,
                own_reasons: kind.info.drop_reasons.len(),
            });
        }
        let shared = shared.into_inner();
        shared
            .check()
            .map_err(|e| param_error(&e.node, ParamError::new(e.param, e.reason)))?;
        Ok(Self {
            shared,
            inputs: nodes.iter().map(|_| PacketVector::boxed()).collect(),
            nodes,
            spare: PacketVector::boxed(),
            decisions: Box::new([Decision::default(); VECTOR_SIZE]),
            stats: Arc::new(GraphStats::new(stats)),
            tracer: Tracer::default(),
            ports: ports.to_vec(),
            reset_meta,
            ct_bell: Arc::new(AtomicU64::new(0)),
            ct_seen: 0,
            ct_serving: false,
        })
    }
}

fn check_ports(ports: &[PortInfo]) -> Result<(), SpecError> {
    for (i, p) in ports.iter().enumerate() {
        if ports[..i]
            .iter()
            .any(|q| q.index == p.index || q.name == p.name)
        {
            return Err(SpecError::new(
                format!("ports[{i}]"),
                SpecErrorReason::BadParam(format!(
                    "duplicate port id {} or name `{}`",
                    p.index, p.name
                )),
            ));
        }
    }
    Ok(())
}

impl<P: PacketBuf> Graph<P> {
    /// Empty tx vectors matching this graph's ports.
    pub fn new_tx_vectors(&self) -> TxVectors<P> {
        TxVectors::new(&self.ports)
    }

    /// The ports the graph was built with (index = tx slot).
    pub fn ports(&self) -> &[PortInfo] {
        &self.ports
    }

    /// Node names in run order (the input node first).
    pub fn node_names(&self) -> impl Iterator<Item = &str> {
        self.nodes.iter().map(|n| n.name.as_str())
    }

    /// The graph's shared state (diagnostics: e.g. an `lb` node's flows).
    pub fn shared(&self) -> &SharedState {
        &self.shared
    }

    /// A handle to the counters, for other threads.
    pub fn stats(&self) -> StatsHandle {
        StatsHandle(self.stats.clone())
    }

    /// A snapshot of the counters.
    pub fn snapshot(&self) -> RuntimeSnapshot {
        self.stats.snapshot()
    }

    /// A handle to the tracer, for other threads.
    pub fn tracer(&self) -> TraceHandle {
        self.tracer.handle()
    }

    /// Makes this graph trace for `handle`, which other graphs may serve too: they then
    /// share one budget of packets (see [`crate::trace`]); this graph's traces carry `worker`.
    pub fn share_tracer(&mut self, handle: TraceHandle, worker: impl Into<String>) {
        self.tracer.share(handle, worker.into());
    }

    /// Handles to sample the connection tables of this graph's stateful nodes (`lb`,
    /// stateful `acl`), by node name in run order, for other threads (`show conntrack`;
    /// see [`crate::ct_sample`]). Take them once after the build.
    pub fn ct_samplers(&self) -> Vec<(String, CtSampler)> {
        self.nodes
            .iter()
            .filter_map(|n| {
                let s = n.imp.ct_sampler()?;
                s.attach(&n.name, &self.ct_bell);
                Some((n.name.clone(), s))
            })
            .collect()
    }

    /// To be called by the worker when a poll found no packets: nodes serve what the control
    /// side asked for that would otherwise wait for traffic (a pending connection sample,
    /// one bounded step per call). Runs no packets and counts nothing. One atomic load when
    /// nothing was asked.
    pub fn idle(&mut self) {
        self.poll_ct();
    }

    /// After each burst (and when idle): one atomic load; only while a connection sample
    /// was requested from one of the graph's nodes, or is under way, one step of each
    /// node's [`Node::serve_ct`](super::Node::serve_ct). So the nodes' own vector functions
    /// carry no sampling code at all.
    #[inline(always)]
    fn poll_ct(&mut self) {
        let bell = self.ct_bell.load(Ordering::Acquire);
        if bell != self.ct_seen || self.ct_serving {
            self.serve_ct(bell);
        }
    }

    /// One step of every node's pending connection sample, for bell count `bell` (loaded
    /// with acquire: the requests it counts are visible to the nodes).
    #[cold]
    #[inline(never)]
    fn serve_ct(&mut self, bell: u64) {
        let mut busy = false;
        for n in self.nodes.iter_mut() {
            busy |= n.imp.serve_ct(&mut self.shared);
        }
        self.ct_seen = bell;
        self.ct_serving = busy;
    }

    /// The input node's vector: a worker may rx straight into it, then call [`run`](Self::run).
    pub fn rx_vector(&mut self) -> &mut ArrayVec<P, VECTOR_SIZE> {
        self.inputs[0].pkts_mut()
    }

    /// Runs the packets of `input` (one rx burst, at most [`VECTOR_SIZE`]: checked at compile
    /// time) through the graph, leaving them in `out` per output port. `input` is left empty.
    /// The caller drains `out` (tx burst) before the next call: a full tx vector drops.
    pub fn process<const N: usize>(
        &mut self,
        input: &mut ArrayVec<P, N>,
        out: &mut TxVectors<P>,
    ) -> BurstStats {
        const {
            assert!(
                N <= VECTOR_SIZE,
                "a burst holds at most VECTOR_SIZE packets"
            )
        };
        let v = self.inputs[0].pkts_mut();
        let take = (VECTOR_SIZE - v.len()).min(input.len());
        v.extend(input.drain(..take));
        self.run(out)
    }

    /// Runs the packets in [`rx_vector`](Self::rx_vector) through every node, leaving them in
    /// `out` per output port (or dropped and counted).
    ///
    /// Panics if `out` was not made for this graph's ports.
    pub fn run(&mut self, out: &mut TxVectors<P>) -> BurstStats {
        let n_in = self.inputs[0].len();
        if n_in == 0 {
            return BurstStats::default();
        }
        assert_eq!(
            out.len(),
            self.ports.len(),
            "TxVectors made for other ports"
        );
        // The input node's cycles include resetting the metadata it does not fill itself.
        let mut t0 = cycles::now();
        if self.reset_meta {
            self.inputs[0].reset_meta();
        }
        let trace_k = self.tracer.begin_burst(n_in);
        let mut burst = BurstStats {
            rx: n_in,
            ..Default::default()
        };
        let Self {
            nodes,
            inputs,
            spare,
            decisions,
            stats,
            tracer,
            ports,
            shared,
            ..
        } = self;
        for (i, node) in nodes.iter_mut().enumerate() {
            let n = inputs[i].len();
            if n == 0 {
                continue;
            }
            std::mem::swap(&mut inputs[i], spare);
            let counters = stats.node(i);
            let decisions = &mut decisions[..n];
            let (pkts, meta) = spare.split_mut();
            let verdict = node.imp.process(Frame {
                pkts,
                meta,
                decisions,
                counters,
                shared,
            });
            if trace_k != 0 {
                let (pkts, meta) = spare.split_mut();
                if i == 0 {
                    tracer.mark_input(pkts, meta, trace_k);
                }
                let names = TraceNames {
                    node: &node.name,
                    next: &node.next_names,
                    drop_reasons: &node.drop_reasons,
                    ports,
                };
                let imp = &node.imp;
                tracer.record(&names, pkts, meta, verdict, decisions, |j, m| {
                    imp.trace_note(j, m)
                });
            }
            let moved = dispatch(verdict, spare, decisions, node, inputs, out, counters);
            burst.tx += moved.tx;
            burst.dropped += moved.dropped;
            let t1 = cycles::now();
            counters.record_call(n, t1.wrapping_sub(t0));
            t0 = t1;
        }
        if trace_k != 0 {
            tracer.end_burst();
        }
        let g = stats.graph();
        g.bursts.add(1);
        g.rx_packets.add(burst.rx as u64);
        g.tx_packets.add(burst.tx as u64);
        g.dropped.add(burst.dropped as u64);
        self.poll_ct();
        burst
    }
}

/// Where one node's packets went.
#[derive(Default)]
struct Moved {
    tx: usize,
    dropped: usize,
}

const VECTOR_FULL: usize = 0;
const INVALID: usize = 1;

/// Moves the packets of `cur` (the node's vector) as the node decided. Leaves `cur` empty.
#[inline(always)]
fn dispatch<P: PacketBuf>(
    verdict: Verdict,
    cur: &mut Box<PacketVector<P>>,
    decisions: &[Decision],
    node: &GraphNode<P>,
    inputs: &mut [Box<PacketVector<P>>],
    out: &mut TxVectors<P>,
    counters: &NodeCounters,
) -> Moved {
    let own = node.own_reasons;
    let n = cur.len();
    let mut m = Moved::default();
    // Per-packet decisions that all agree move the vector whole (an O(1) swap instead of
    // copying every packet and its metadata): a node need not check that itself.
    let verdict = match verdict {
        Verdict::PerPacket if n > 0 && decisions[1..n].iter().all(|d| *d == decisions[0]) => {
            Verdict::All(decisions[0])
        }
        v => v,
    };
    match verdict {
        Verdict::All(Decision::Next(s)) => match node.next.get(usize::from(s)) {
            Some(&t) => m.dropped = hand_off(cur, &mut inputs[usize::from(t)], counters, own),
            None => m.dropped = drop_all(cur, counters, own + INVALID),
        },
        Verdict::All(Decision::Tx(s)) => match out.vecs.get_mut(usize::from(s)) {
            Some(dst) => {
                m.dropped = hand_off(cur, dst, counters, own);
                m.tx = n - m.dropped;
            }
            None => m.dropped = drop_all(cur, counters, own + INVALID),
        },
        Verdict::All(Decision::Drop(c)) => {
            let code = if usize::from(c) < own {
                usize::from(c)
            } else {
                own + INVALID
            };
            m.dropped = drop_all(cur, counters, code);
        }
        Verdict::PerPacket => {
            for ((pkt, meta), &d) in cur.drain_with_meta().zip(decisions) {
                let code = match d {
                    Decision::Next(s) => match node.next.get(usize::from(s)) {
                        Some(&t) => match inputs[usize::from(t)].push(pkt, meta) {
                            Ok(()) => continue,
                            Err(_) => own + VECTOR_FULL,
                        },
                        None => own + INVALID,
                    },
                    Decision::Tx(s) => match out.vecs.get_mut(usize::from(s)) {
                        Some(dst) => match dst.push(pkt, meta) {
                            Ok(()) => {
                                m.tx += 1;
                                continue;
                            }
                            Err(_) => own + VECTOR_FULL,
                        },
                        None => own + INVALID,
                    },
                    Decision::Drop(c) if usize::from(c) < own => usize::from(c),
                    Decision::Drop(_) => own + INVALID,
                };
                counters.add_drops(code, 1);
                m.dropped += 1;
            }
        }
    }
    m
}

/// Moves all of `cur` to `dst`: an O(1) swap when `dst` is empty. Returns packets dropped
/// because `dst` filled up.
#[inline(always)]
fn hand_off<P>(
    cur: &mut Box<PacketVector<P>>,
    dst: &mut Box<PacketVector<P>>,
    counters: &NodeCounters,
    own: usize,
) -> usize {
    if dst.is_empty() {
        std::mem::swap(cur, dst);
        return 0;
    }
    let lost = cur.append_to(dst);
    if lost != 0 {
        counters.add_drops(own + VECTOR_FULL, lost as u64);
    }
    lost
}

fn drop_all<P>(cur: &mut PacketVector<P>, counters: &NodeCounters, code: usize) -> usize {
    let n = cur.len();
    counters.add_drops(code, n as u64);
    cur.clear();
    n
}
