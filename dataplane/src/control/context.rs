//! What a control command sees: the running dataplane's parts, borrowed from the control
//! loop for the time of one request, and the control socket's own state.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use pipeline::{CtSampler, RuntimeSnapshot, StatsHandle, TraceHandle};

use crate::counters::{WorkerCounters, WorkerSnapshot};
use crate::dpdk::capture::Capture;
use crate::dpdk::{Mempool, Port};
use crate::plan::Plan;
use crate::reload::Reloader;

/// State the commands keep between requests (owned by the control loop).
#[derive(Debug, Default)]
pub struct ControlState {
    /// `show runtime` counts from these (set by `clear runtime`; empty: since start).
    pub runtime_base: Vec<RuntimeSnapshot>,
    /// When `clear runtime` last ran.
    pub runtime_cleared: Option<Instant>,
    /// `show errors` counts from these (set by `clear errors`; empty: since start).
    pub errors_base: Vec<RuntimeSnapshot>,
    /// Worker counters at the last `clear errors` (its port drops), by worker.
    pub errors_workers_base: Vec<WorkerSnapshot>,
    /// The capture of `capture start` (running, or the last one, finished).
    pub capture: Option<PortCapture>,
}

/// A capture started by `capture start`, with the port name it was given.
#[derive(Debug)]
pub struct PortCapture {
    /// The port's name (as in the config).
    pub port: String,
    /// The capture.
    pub capture: Capture,
}

impl ControlState {
    /// Writes what a running capture copied since the last call (the control loop calls
    /// this every pass); a capture that reaches its packet count finishes here.
    pub fn poll_capture(&mut self) {
        if let Some(c) = self.capture.as_mut() {
            c.capture.poll();
        }
    }

    /// Stops a running capture (at exit: the file is complete and the workers are left
    /// without callbacks before they stop).
    pub fn stop_capture(&mut self) {
        if let Some(c) = self.capture.as_mut() {
            c.capture.stop();
        }
    }
}

/// A running dataplane, as one command sees it.
pub struct Ctx<'a> {
    /// The plan it runs.
    pub plan: &'a Plan,
    /// Its ports, by index (as in the plan).
    pub ports: &'a [Port],
    /// Each worker's lcore and counters.
    pub counters: &'a [(u32, Arc<WorkerCounters>)],
    /// Each worker's lcore and pipeline stats (empty without a pipeline).
    pub graphs: &'a [(u32, StatsHandle)],
    /// The tracer every worker's graph serves (none without a pipeline).
    pub tracer: Option<&'a TraceHandle>,
    /// Each worker's lcore and the samplers of its stateful nodes' connection tables.
    pub samplers: &'a [(u32, CtSampler)],
    /// The mempools, by NUMA socket.
    pub pools: &'a BTreeMap<i32, Mempool>,
    /// The reload machinery (SIGHUP's, also `reload`).
    pub reloader: &'a mut Reloader,
    /// The commands' own state.
    pub state: &'a mut ControlState,
    /// When the workers started.
    pub started: Instant,
}

impl Ctx<'_> {
    /// Each worker's pipeline counters now, labelled `lcore N`.
    pub fn runtime_now(&self) -> Vec<RuntimeSnapshot> {
        runtime_snapshots(self.graphs)
    }

    /// Each worker's counters now.
    pub fn workers_now(&self) -> Vec<WorkerSnapshot> {
        self.counters.iter().map(|(_, c)| c.snapshot()).collect()
    }

    /// The port index named `name` (our name or the ethdev name).
    pub fn port_index(&self, name: &str) -> Option<usize> {
        self.plan
            .ports
            .iter()
            .zip(self.ports)
            .position(|(pp, p)| pp.name == name || p.name() == name)
    }

    /// The names of the pipeline's nodes of `kind`, in the config's order.
    pub fn nodes_of_kind(&self, kind: &str) -> Vec<&str> {
        self.plan
            .pipeline
            .iter()
            .flat_map(|s| &s.nodes)
            .filter(|n| n.kind == kind)
            .map(|n| n.name.as_str())
            .collect()
    }
}

/// Each worker's pipeline counters now, labelled `lcore N` (the stats lines, the final
/// summary and the control commands all read them so).
pub fn runtime_snapshots(graphs: &[(u32, StatsHandle)]) -> Vec<RuntimeSnapshot> {
    graphs
        .iter()
        .map(|(l, h)| h.snapshot_as(format!("lcore {l}")))
        .collect()
}

/// `later - earlier` for every worker (an empty `earlier`: `later` itself).
pub fn since(later: &[RuntimeSnapshot], earlier: &[RuntimeSnapshot]) -> Vec<RuntimeSnapshot> {
    later
        .iter()
        .enumerate()
        .map(|(i, s)| match earlier.get(i) {
            Some(e) => s.delta(e),
            None => s.clone(),
        })
        .collect()
}
