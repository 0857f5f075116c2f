//! Hitless rule updates: the control thread builds a new classifier and hands it to every
//! worker's ACL node; each worker switches between two bursts, so every packet is judged
//! entirely by the old or entirely by the new rules.
//!
//! # Scheme (quiescent-state based, no locks on the hot path)
//! * An [`AclHub`] is shared by the ACL nodes of one graph node name across workers. Each
//!   node owns a [`WorkerSlot`]: an atomic `published` generation, a mailbox, and an
//!   atomic `acked` generation (the worker's quiescent-state report).
//! * [`AclHub::publish`] puts `(program, fresh counters)` in every live slot's mailbox,
//!   then raises `published` (release).
//! * A worker, at the start of each burst, does one relaxed atomic load of `published`;
//!   only when it differs from the generation it runs does it `try_lock` the mailbox
//!   (never blocks: if the control thread holds it, the worker tries again next burst),
//!   swaps its `Arc<AclProgram>`, puts the old one in the mailbox's retired slot and
//!   stores `acked` (release). Between two bursts the worker holds no reference into the
//!   program, which is the quiescent point.
//! * The control thread waits until every worker acked (or a timeout: an idle worker acks
//!   at its next burst), then takes the retired programs and drops them itself, so
//!   `rte_acl_free` runs on the control thread. Safety does not depend on the wait: a
//!   program is reference counted and freed only when the last worker let go of it.
//!
//! Per-rule counters restart with each published generation (indices may change); the
//! connection table is kept, so established `allow-related` sessions survive updates.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use serde::Serialize;

use super::counters::{DenialCounters, PacketBytes, RuleCounters, RuleCountersSnapshot};
use super::expand::{AclTable, ExpandLimits};
use super::key::{compile, Classify, CompileError, CompiledAcl};
use super::model::{AclConfig, AclError, Action, IpNet, RuleSet};
use super::verdict_cache::CachePlans;
use crate::graph::PortInfo;
use crate::stats::Counter;

/// Errors building or publishing a rule set.
#[derive(Debug, thiserror::Error)]
pub enum StageError {
    /// The rules are invalid.
    #[error(transparent)]
    Acl(#[from] AclError),
    /// The rules expand to too many flat rules.
    #[error(transparent)]
    Expand(#[from] super::expand::ExpandError),
    /// The rules cannot be compiled or the classifier built.
    #[error(transparent)]
    Compile(#[from] CompileError),
}

/// What a worker runs: a built classifier with the compiled rules it was built from.
#[derive(Debug)]
pub struct AclProgram<C> {
    /// Generation (1 for the first program of a hub).
    pub generation: u64,
    /// The built classifier.
    pub classifier: C,
    /// Actions, port-class bitmasks, rule set.
    pub acl: CompiledAcl,
    /// What the workers' verdict caches read of each key under this program.
    pub cache_plans: CachePlans,
}

impl<C: Classify> AclProgram<C> {
    /// Builds the classifier for `acl`.
    pub fn build(acl: CompiledAcl, generation: u64) -> Result<Self, CompileError> {
        Ok(AclProgram {
            generation,
            classifier: C::build(&acl)?,
            cache_plans: CachePlans::of(&acl),
            acl,
        })
    }

    /// The action for classifier result `userdata` (0: the default).
    #[inline(always)]
    pub fn action(&self, userdata: u32) -> Action {
        match userdata.checked_sub(1) {
            Some(i) => self
                .acl
                .actions
                .get(i as usize)
                .copied()
                .unwrap_or(Action::Drop),
            None => self.acl.rules.default_action(),
        }
    }
}

/// Packet and byte counters written by one worker.
#[derive(Debug, Default)]
pub struct PbCounter {
    /// Packets.
    pub packets: Counter,
    /// Bytes.
    pub bytes: Counter,
}

impl PbCounter {
    fn get(&self) -> PacketBytes {
        PacketBytes {
            packets: self.packets.get(),
            bytes: self.bytes.get(),
        }
    }
}

/// One worker's per-rule counters for one generation (single writer, readable by the
/// control thread without locks).
#[derive(Debug)]
pub struct AclCounterBlock {
    per_acl: Box<[PbCounter]>,
    default_rule: PbCounter,
    denials: [Counter; 4],
}

impl AclCounterBlock {
    /// Zeroed counters for `acls` ACLs.
    pub fn new(acls: usize) -> Self {
        AclCounterBlock {
            per_acl: (0..acls).map(|_| PbCounter::default()).collect(),
            default_rule: PbCounter::default(),
            denials: Default::default(),
        }
    }

    /// Counts `packets` packets of `bytes` bytes in total judged by the same ACL (or the
    /// default) with `action`: one counter update for a run of equal verdicts.
    #[inline(always)]
    pub fn record_run(&self, acl: Option<usize>, action: Action, packets: u64, bytes: u64) {
        let c = match acl {
            Some(i) => match self.per_acl.get(i) {
                Some(c) => c,
                None => return,
            },
            None => &self.default_rule,
        };
        c.packets.add(packets);
        c.bytes.add(bytes);
        match (acl, action) {
            (Some(_), Action::Drop) => self.denials[1].add(packets),
            (Some(_), Action::Reject) => self.denials[2].add(packets),
            (None, a) if !a.permits() => self.denials[0].add(packets),
            _ => {}
        }
    }

    /// Counts a new session refused because the connection table is full.
    #[inline(always)]
    pub fn record_conntrack_full(&self) {
        self.denials[3].add(1);
    }

    /// A plain copy.
    pub fn read(&self) -> RuleCounters {
        RuleCounters {
            per_acl: self.per_acl.iter().map(PbCounter::get).collect(),
            default_rule: self.default_rule.get(),
            denials: DenialCounters {
                default_deny: self.denials[0].get(),
                rule_drop: self.denials[1].get(),
                rule_reject: self.denials[2].get(),
                conntrack_full: self.denials[3].get(),
            },
        }
    }
}

/// A program with the counters a worker writes while running it.
pub type Installed<C> = (Arc<AclProgram<C>>, Arc<AclCounterBlock>);

#[derive(Debug)]
struct Mailbox<C> {
    next: Option<Installed<C>>,
    retired: Option<Installed<C>>,
}

/// One worker's connection to the hub.
#[derive(Debug)]
pub struct WorkerSlot<C> {
    published: AtomicU64,
    acked: AtomicU64,
    mailbox: Mutex<Mailbox<C>>,
    counters: Mutex<Arc<AclCounterBlock>>,
}

impl<C> WorkerSlot<C> {
    /// The generation most recently published to this worker (relaxed; the mailbox
    /// lock orders the payload).
    #[inline(always)]
    pub fn published(&self) -> u64 {
        self.published.load(Ordering::Relaxed)
    }

    /// Takes the pending program, if any, retiring `current` into the mailbox; records
    /// the worker's quiescent state. Never blocks: `None` if the mailbox is busy.
    pub fn adopt(&self, current: Installed<C>) -> Result<Installed<C>, Installed<C>> {
        let Ok(mut m) = self.mailbox.try_lock() else {
            return Err(current);
        };
        match m.next.take() {
            Some(new) => {
                let gen = new.0.generation;
                // A previous retiree the control thread has not collected yet is dropped
                // here (rare: two publications within one burst of this worker).
                m.retired = Some(current);
                self.acked.store(gen, Ordering::Release);
                Ok(new)
            }
            None => Err(current),
        }
    }

    /// The generation this worker last switched to.
    pub fn acked(&self) -> u64 {
        self.acked.load(Ordering::Acquire)
    }
}

/// The outcome of a publication.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PublishReport {
    /// The new generation.
    pub generation: u64,
    /// Workers it was published to.
    pub workers: usize,
    /// Workers that switched before the wait ended (the others switch at their next burst).
    pub switched: usize,
    /// Old programs freed by the control thread after the switch.
    pub retired_freed: usize,
    /// Flat rules of the new program.
    pub flat_rules: usize,
    /// Seconds spent expanding, compiling and building the classifier.
    pub build_seconds: f64,
    /// Seconds spent waiting for the workers.
    pub wait_seconds: f64,
    /// The classifier (e.g. `rte_acl avx2`).
    pub classifier: String,
}

struct HubState<C> {
    generation: u64,
    current: Arc<AclProgram<C>>,
    table: AclTable,
    ports: Vec<PortInfo>,
    slots: Vec<Weak<WorkerSlot<C>>>,
}

/// The control point of one ACL stage (one node name) across all workers.
pub struct AclHub<C> {
    state: Mutex<HubState<C>>,
}

impl<C> std::fmt::Debug for AclHub<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AclHub")
    }
}

/// Expands and validates a configuration.
pub fn expand_config(cfg: &AclConfig) -> Result<AclTable, StageError> {
    let rs = RuleSet::from_config(cfg)?;
    Ok(AclTable::new(rs, ExpandLimits::default())?)
}

impl<C: Classify> AclHub<C> {
    /// A hub with generation 1 built from `table` for the graph's `ports`.
    pub fn new(table: AclTable, ports: &[PortInfo]) -> Result<Self, StageError> {
        let acl = compile(&table, ports)?;
        let current = Arc::new(AclProgram::build(acl, 1)?);
        Ok(AclHub {
            state: Mutex::new(HubState {
                generation: 1,
                current,
                table,
                ports: ports.to_vec(),
                slots: Vec::new(),
            }),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HubState<C>> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers a worker: its slot and the current program with fresh counters.
    pub fn join(&self) -> (Arc<WorkerSlot<C>>, Installed<C>) {
        let mut st = self.lock();
        let prog = Arc::clone(&st.current);
        let counters = Arc::new(AclCounterBlock::new(prog.acl.actions.len()));
        let slot = Arc::new(WorkerSlot {
            published: AtomicU64::new(st.generation),
            acked: AtomicU64::new(st.generation),
            mailbox: Mutex::new(Mailbox {
                next: None,
                retired: None,
            }),
            counters: Mutex::new(Arc::clone(&counters)),
        });
        st.slots.retain(|s| s.strong_count() > 0);
        st.slots.push(Arc::downgrade(&slot));
        (slot, (prog, counters))
    }

    /// The current generation.
    pub fn generation(&self) -> u64 {
        self.lock().generation
    }

    /// The current program.
    pub fn current(&self) -> Arc<AclProgram<C>> {
        Arc::clone(&self.lock().current)
    }

    /// The rule set of the current program.
    pub fn rules(&self) -> Arc<RuleSet> {
        Arc::clone(&self.lock().current.acl.rules)
    }

    /// The generation each live worker runs now (the one it last switched to).
    pub fn worker_generations(&self) -> Vec<u64> {
        self.lock()
            .slots
            .iter()
            .filter_map(Weak::upgrade)
            .map(|s| s.acked())
            .collect()
    }

    /// Live workers.
    pub fn workers(&self) -> usize {
        self.lock()
            .slots
            .iter()
            .filter(|s| s.strong_count() > 0)
            .count()
    }

    /// Replaces the whole rule set (expand, compile, build, publish).
    pub fn publish_config(
        &self,
        cfg: &AclConfig,
        wait: Duration,
    ) -> Result<PublishReport, StageError> {
        let t0 = Instant::now();
        let table = expand_config(cfg)?;
        self.publish_table(table, t0, wait)
    }

    /// Replaces one address set's entries (re-expanding only the ACLs using it), rebuilds
    /// and publishes. All or nothing.
    pub fn update_address_set(
        &self,
        name: &str,
        entries: Vec<IpNet>,
        wait: Duration,
    ) -> Result<PublishReport, StageError> {
        let t0 = Instant::now();
        let mut table = self.lock().table.clone();
        table.update_address_set(name, entries)?;
        self.publish_table(table, t0, wait)
    }

    fn publish_table(
        &self,
        table: AclTable,
        t0: Instant,
        wait: Duration,
    ) -> Result<PublishReport, StageError> {
        let ports = self.lock().ports.clone();
        let acl = compile(&table, &ports)?;
        let flat_rules = table.flat_rule_count();
        let generation = {
            // Generation numbers are taken under the lock so concurrent publishers order.
            let st = self.lock();
            st.generation + 1
        };
        let prog = Arc::new(AclProgram::<C>::build(acl, generation)?);
        let build_seconds = t0.elapsed().as_secs_f64();
        Ok(self.install(prog, table, flat_rules, build_seconds, wait))
    }

    fn install(
        &self,
        prog: Arc<AclProgram<C>>,
        table: AclTable,
        flat_rules: usize,
        build_seconds: f64,
        wait: Duration,
    ) -> PublishReport {
        let classifier = prog.classifier.describe();
        let (generation, slots) = {
            let mut st = self.lock();
            st.generation = st.generation.max(prog.generation);
            let generation = st.generation;
            st.current = Arc::clone(&prog);
            st.table = table;
            st.slots.retain(|s| s.strong_count() > 0);
            let slots: Vec<Arc<WorkerSlot<C>>> =
                st.slots.iter().filter_map(Weak::upgrade).collect();
            for s in &slots {
                let counters = Arc::new(AclCounterBlock::new(prog.acl.actions.len()));
                *s.counters.lock().unwrap_or_else(|e| e.into_inner()) = Arc::clone(&counters);
                let mut m = s.mailbox.lock().unwrap_or_else(|e| e.into_inner());
                m.next = Some((Arc::clone(&prog), counters));
                drop(m);
                s.published.store(generation, Ordering::Release);
            }
            (generation, slots)
        };
        drop(prog);
        let t1 = Instant::now();
        let deadline = t1 + wait;
        loop {
            let pending = slots.iter().filter(|s| s.acked() < generation).count();
            if pending == 0 || Instant::now() >= deadline {
                break;
            }
            std::thread::sleep(Duration::from_micros(100));
        }
        let wait_seconds = t1.elapsed().as_secs_f64();
        let switched = slots.iter().filter(|s| s.acked() >= generation).count();
        let mut retired_freed = 0;
        for s in &slots {
            let old = s
                .mailbox
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .retired
                .take();
            if old.is_some() {
                retired_freed += 1;
            }
            drop(old); // freed here, on the control thread, outside the mailbox lock
        }
        PublishReport {
            generation,
            workers: slots.len(),
            switched,
            retired_freed,
            flat_rules,
            build_seconds,
            wait_seconds,
            classifier,
        }
    }

    /// Per-rule counters of the current generation, summed over the workers.
    pub fn counters(&self) -> RuleCountersSnapshot {
        let st = self.lock();
        let mut total = RuleCounters::new(st.current.acl.actions.len());
        for s in st.slots.iter().filter_map(Weak::upgrade) {
            let block = Arc::clone(&s.counters.lock().unwrap_or_else(|e| e.into_inner()));
            total.merge(&block.read());
        }
        total.snapshot(&st.current.acl.rules)
    }
}
