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
//! Per-rule counters restart with each published program (indices may change); the
//! connection table is kept, so established `allow-related` sessions survive updates.
//!
//! # Membership updates ([`AclHub::update_members`])
//! A batch of changes to the members of set classes (large address sets, see
//! [`super::expand::SetClasses`]) and port groups is a publication too, of a new
//! [`MemberTable`] instead of a new program: the same slots, the same generation counter
//! (so connections are judged again under the new membership, as after a rule change),
//! the same quiescent point, and the per-rule counters carry on. The table is not copied:
//! the hub keeps a left-right [`MemberPair`], so the work is proportional to the batch.
//! A batch that touches an expanded (small) set is applied by a rebuild instead, as
//! [`AclHub::update_address_set`] always did. Each publication reports its size and time
//! ([`MemberReport`]).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use serde::Serialize;

use super::counters::{DenialCounters, PacketBytes, RuleCounters, RuleCountersSnapshot};
use super::expand::{AclTable, ExpandLimits};
use super::key::{compile, AclKey, BurstClassifier, Classify, CompileError, CompiledAcl};
use super::layered::{self, Overlay};
use super::log::LogRing;
use super::members::{MemberOp, MemberPair, MemberTable};
use super::model::{AclConfig, AclError, Action, IpNet, IpVersion, PortId, RuleSet};
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
    /// The built classifier (of `acl`, or with `overlay`, of the program it layers on:
    /// shared with it).
    pub classifier: Arc<C>,
    /// ACLs added since `classifier` was built, until the whole one is rebuilt
    /// ([`super::layered`]).
    pub overlay: Option<Overlay<C>>,
    /// Actions, port-class bitmasks, rule set (shared by a layered program and the whole
    /// one that replaces it).
    pub acl: Arc<CompiledAcl>,
    /// What the workers' verdict caches read of each key under this program.
    pub cache_plans: CachePlans,
}

impl<C: Classify> AclProgram<C> {
    /// Builds the classifier for `acl`.
    pub fn build(acl: impl Into<Arc<CompiledAcl>>, generation: u64) -> Result<Self, CompileError> {
        let acl = acl.into();
        Ok(AclProgram {
            generation,
            classifier: Arc::new(C::build(&acl)?),
            overlay: None,
            cache_plans: CachePlans::of(&acl),
            acl,
        })
    }

    /// `acl` judged by `base`'s classifier plus an overlay of the ACLs `acl` adds to
    /// `base`'s, when it only adds ACLs ([`super::layered::plan`]); `None` otherwise.
    pub fn layered(
        base: &AclProgram<C>,
        acl: &Arc<CompiledAcl>,
        generation: u64,
    ) -> Result<Option<Self>, CompileError> {
        if base.overlay.is_some() {
            return Ok(None);
        }
        let Some(plan) = layered::plan(&base.acl, acl) else {
            return Ok(None);
        };
        Ok(Some(AclProgram {
            generation,
            classifier: Arc::clone(&base.classifier),
            overlay: Some(Overlay::build(plan)?),
            cache_plans: CachePlans::of(acl),
            acl: Arc::clone(acl),
        }))
    }

    /// The same rules in one classifier: what replaces a layered program (its cache plans
    /// carry over, they depend on the rules only).
    pub fn whole(&self, generation: u64) -> Result<Self, CompileError> {
        Ok(AclProgram {
            generation,
            classifier: Arc::new(C::build(&self.acl)?),
            overlay: None,
            cache_plans: self.cache_plans,
            acl: Arc::clone(&self.acl),
        })
    }

    /// What judges its packets, for reports (`rte_acl avx2`, `+ overlay of N rules`).
    pub fn describe(&self) -> String {
        match &self.overlay {
            Some(o) => format!("{} + {}", self.classifier.describe(), o.describe()),
            None => self.classifier.describe(),
        }
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

    /// The action for classifier result `userdata`, and whether the packets it decides are
    /// logged (never for the default).
    #[inline(always)]
    pub fn verdict(&self, userdata: u32) -> (Action, bool) {
        let logs = userdata
            .checked_sub(1)
            .is_some_and(|i| self.acl.logs.get(i as usize).copied().unwrap_or(false));
        (self.action(userdata), logs)
    }

    /// Whether the replies of connections admitted by classifier result `userdata` are
    /// logged (never for the default).
    #[inline(always)]
    pub fn logs_related(&self, userdata: u32) -> bool {
        userdata.checked_sub(1).is_some_and(|i| {
            self.acl
                .logs_related
                .get(i as usize)
                .copied()
                .unwrap_or(false)
        })
    }
}

impl<C: Classify> BurstClassifier for AclProgram<C> {
    #[inline(always)]
    fn classify_burst(&self, family: IpVersion, keys: &[AclKey], results: &mut [u32]) {
        self.classifier.classify(family, keys, results);
        if let Some(o) = &self.overlay {
            o.merge(family, keys, results);
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
    /// The generation of the latest posting.
    epoch: u64,
    next: Option<Installed<C>>,
    retired: Option<Installed<C>>,
    next_members: Option<Arc<MemberTable>>,
    retired_members: Option<Arc<MemberTable>>,
}

/// What a worker took from its mailbox ([`WorkerSlot::adopt`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Adopted {
    /// A new program (the verdict cache must start over).
    pub program: bool,
    /// The generation the worker runs now.
    pub generation: u64,
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

    /// Takes the pending program and membership table, if any, in place of `program` and
    /// `members` (retiring those into the mailbox); records the worker's quiescent state.
    /// Never blocks: `None` if the mailbox is busy or nothing is pending.
    pub fn adopt(
        &self,
        program: &mut Installed<C>,
        members: &mut Arc<MemberTable>,
    ) -> Option<Adopted> {
        let Ok(mut m) = self.mailbox.try_lock() else {
            return None;
        };
        let new_program = m.next.take();
        let new_members = m.next_members.take();
        if new_program.is_none() && new_members.is_none() {
            return None;
        }
        // A previous retiree the control thread has not collected yet is dropped here
        // (rare: two publications within one burst of this worker).
        let program_changed = new_program.is_some();
        if let Some(new) = new_program {
            m.retired = Some(std::mem::replace(program, new));
        }
        if let Some(new) = new_members {
            m.retired_members = Some(std::mem::replace(members, new));
        }
        let generation = m.epoch;
        self.acked.store(generation, Ordering::Release);
        Some(Adopted {
            program: program_changed,
            generation,
        })
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
    /// When the change only added ACLs: the layered publication that enforced them first
    /// (the current classifier plus an overlay of the added ACLs, [`super::layered`]); this
    /// report is then the whole classifier's rebuild that replaced it, and `build_seconds`
    /// its build alone.
    pub layered: Option<Box<PublishReport>>,
}

/// One change of membership (see [`AclHub::update_members`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MemberChange {
    /// An address or prefix joins an address set.
    SetAdd {
        /// The set.
        set: String,
        /// The entry.
        net: IpNet,
    },
    /// An address or prefix leaves an address set.
    SetDel {
        /// The set.
        set: String,
        /// The entry.
        net: IpNet,
    },
    /// A port (a name, or `role:<role>`) joins a port group.
    GroupAdd {
        /// The group.
        group: String,
        /// The member.
        port: String,
    },
    /// A port leaves a port group.
    GroupDel {
        /// The group.
        group: String,
        /// The member.
        port: String,
    },
}

/// How [`AclHub::apply_config`] applied a configuration.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub enum Applied {
    /// Only members changed: a membership update (which may itself have rebuilt, when an
    /// expanded set changed: see [`MemberReport::rebuild`]).
    Members(MemberReport),
    /// The rules changed: rebuilt and published.
    Rebuilt(PublishReport),
}

/// The outcome of a membership publication.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct MemberReport {
    /// The generation published (the current one if nothing needed publishing).
    pub generation: u64,
    /// Changes in the batch.
    pub changes: usize,
    /// Membership-table operations published (changes of set classes).
    pub set_ops: usize,
    /// The port-class bitmasks changed (a port group with a bit gained or lost a port).
    pub port_bits_changed: bool,
    /// Operations applied to the published copy (the batch, plus the previous batch when
    /// that copy had not received it yet).
    pub applied: usize,
    /// Whole-table copies made (a worker still held the copy to update; 0 normally).
    pub copies: usize,
    /// Workers it was published to.
    pub workers: usize,
    /// Workers that switched before the wait ended.
    pub switched: usize,
    /// Seconds spent applying the batch before publishing.
    pub apply_seconds: f64,
    /// Seconds spent waiting for the workers.
    pub wait_seconds: f64,
    /// Seconds from the call until the workers switched (or the wait ended).
    pub seconds: f64,
    /// Set when the batch touched an expanded address set: the rebuild that applied it.
    pub rebuild: Option<PublishReport>,
}

struct HubState<C> {
    generation: u64,
    current: Arc<AclProgram<C>>,
    table: AclTable,
    ports: Vec<PortInfo>,
    slots: Vec<Weak<WorkerSlot<C>>>,
    members: MemberPair,
    /// The entries of set classes in `table`'s rule set lag the membership table.
    model_stale: bool,
    /// The workers' log rings (see [`super::log`]), drained by the control side.
    log_rings: Vec<Weak<LogRing>>,
}

impl<C> HubState<C> {
    /// Brings the entries of the set classes in the rule set up to the membership table.
    fn sync_model(&mut self) {
        if !self.model_stale {
            return;
        }
        let classes = self.table.set_classes().clone();
        let live = Arc::clone(self.members.live());
        for name in classes.names() {
            if let Some(bit) = classes.bit(name) {
                let _ = self
                    .table
                    .rules_mut()
                    .replace_address_set(name, live.entries_of(bit));
            }
        }
        self.model_stale = false;
    }
}

/// The port-class bitmask of every port under `rules` (index = port id).
fn port_bits_of(acl: &CompiledAcl, rules: &RuleSet, ports: &[PortInfo]) -> Vec<u64> {
    let mut bits = vec![0u64; acl.port_bits.len()];
    for p in ports {
        let id = if p.role.is_empty() {
            PortId::named(&p.name)
        } else {
            PortId::with_role(&p.name, &p.role)
        };
        if let Some(b) = bits.get_mut(usize::from(p.index)) {
            *b = acl.classes.bits_of(rules, id);
        }
    }
    bits
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

/// Expands and validates a configuration (default limits: large sets are set classes).
pub fn expand_config(cfg: &AclConfig) -> Result<AclTable, StageError> {
    expand_config_with(cfg, ExpandLimits::default())
}

/// [`expand_config`] with explicit limits.
pub fn expand_config_with(cfg: &AclConfig, limits: ExpandLimits) -> Result<AclTable, StageError> {
    let rs = RuleSet::from_config(cfg)?;
    Ok(AclTable::new(rs, limits)?)
}

impl<C: Classify> AclHub<C> {
    /// A hub with generation 1 built from `table` for the graph's `ports`.
    pub fn new(table: AclTable, ports: &[PortInfo]) -> Result<Self, StageError> {
        let acl = compile(&table, ports)?;
        let members = MemberTable::build(table.rules(), table.set_classes(), &acl.port_bits);
        let current = Arc::new(AclProgram::build(acl, 1)?);
        Ok(AclHub {
            state: Mutex::new(HubState {
                generation: 1,
                current,
                table,
                ports: ports.to_vec(),
                slots: Vec::new(),
                members: MemberPair::new(members),
                model_stale: false,
                log_rings: Vec::new(),
            }),
        })
    }

    /// Registers a worker's log ring (the hub keeps a weak reference).
    pub fn add_log_ring(&self, ring: &Arc<LogRing>) {
        let mut st = self.lock();
        st.log_rings.retain(|r| r.strong_count() > 0);
        st.log_rings.push(Arc::downgrade(ring));
    }

    /// The live workers' log rings.
    pub fn log_rings(&self) -> Vec<Arc<LogRing>> {
        self.lock()
            .log_rings
            .iter()
            .filter_map(Weak::upgrade)
            .collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HubState<C>> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers a worker: its slot, the current program with fresh counters, and the
    /// current membership table.
    pub fn join(&self) -> (Arc<WorkerSlot<C>>, Installed<C>, Arc<MemberTable>) {
        let mut st = self.lock();
        let prog = Arc::clone(&st.current);
        let counters = Arc::new(AclCounterBlock::new(prog.acl.actions.len()));
        let slot = Arc::new(WorkerSlot {
            published: AtomicU64::new(st.generation),
            acked: AtomicU64::new(st.generation),
            mailbox: Mutex::new(Mailbox {
                epoch: st.generation,
                next: None,
                retired: None,
                next_members: None,
                retired_members: None,
            }),
            counters: Mutex::new(Arc::clone(&counters)),
        });
        st.slots.retain(|s| s.strong_count() > 0);
        st.slots.push(Arc::downgrade(&slot));
        let members = Arc::clone(st.members.live());
        (slot, (prog, counters), members)
    }

    /// The current generation.
    pub fn generation(&self) -> u64 {
        self.lock().generation
    }

    /// The current program.
    pub fn current(&self) -> Arc<AclProgram<C>> {
        Arc::clone(&self.lock().current)
    }

    /// The current rule set, with the current members of its sets and groups.
    pub fn rules(&self) -> Arc<RuleSet> {
        let mut st = self.lock();
        st.sync_model();
        if *st.table.rules() == *st.current.acl.rules {
            return Arc::clone(&st.current.acl.rules);
        }
        Arc::new(st.table.rules().clone())
    }

    /// The current expanded table (flat rules, set classes), with current members.
    pub fn table(&self) -> AclTable {
        let mut st = self.lock();
        st.sync_model();
        st.table.clone()
    }

    /// The current membership table (what workers adopting now read).
    pub fn members(&self) -> Arc<MemberTable> {
        Arc::clone(self.lock().members.live())
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
        let limits = self.lock().table.limits();
        let table = expand_config_with(cfg, limits)?;
        self.publish_table(table, t0, wait)
    }

    /// Replaces the whole rule set with `cfg`: when only the members of its address sets and
    /// port groups differ from the current ones, as a membership update
    /// ([`AclHub::update_members`] of the differences), otherwise by
    /// [`AclHub::publish_config`].
    ///
    /// What the current rule set parsed and expanded already is taken from it
    /// ([`RuleSet::from_config_reusing`], [`AclTable::new_reusing`]): an ACL added to 10k
    /// costs the parse and expansion of that one (under the hub's lock, which the workers
    /// never take).
    pub fn apply_config(&self, cfg: &AclConfig, wait: Duration) -> Result<Applied, StageError> {
        let t0 = Instant::now();
        let changes = {
            let mut st = self.lock();
            st.sync_model();
            let new = RuleSet::from_config_reusing(cfg, Some(st.table.rules()))?;
            let cur = st.table.rules();
            if !cur.same_but_members(&new) {
                let table = AclTable::new_reusing(new, st.table.limits(), &st.table)?;
                drop(st);
                return self.publish_table(table, t0, wait).map(Applied::Rebuilt);
            }
            let mut changes = Vec::new();
            for (old, set) in cur.address_sets().iter().zip(new.address_sets()) {
                changes.extend(set_diff(&set.name, &old.entries, &set.entries));
            }
            for (old, g) in cur.port_groups().iter().zip(new.port_groups()) {
                let (o, n): (std::collections::BTreeSet<_>, std::collections::BTreeSet<_>) =
                    (old.members.iter().collect(), g.members.iter().collect());
                changes.extend(o.difference(&n).map(|p| MemberChange::GroupDel {
                    group: g.name.clone(),
                    port: (*p).clone(),
                }));
                changes.extend(n.difference(&o).map(|p| MemberChange::GroupAdd {
                    group: g.name.clone(),
                    port: (*p).clone(),
                }));
            }
            changes
        };
        self.update_members(&changes, wait).map(Applied::Members)
    }

    /// Replaces one address set's entries. A set class becomes a membership update of the
    /// difference ([`AclHub::update_members`]); an expanded set re-expands the ACLs using
    /// it, and the rules are rebuilt and published (the report's `rebuild`). All or nothing.
    pub fn update_address_set(
        &self,
        name: &str,
        entries: Vec<IpNet>,
        wait: Duration,
    ) -> Result<MemberReport, StageError> {
        let t0 = Instant::now();
        let changes = {
            let mut st = self.lock();
            if !st.table.set_classes().contains(name) {
                // The rebuild starts from the rule set with the current class members.
                st.sync_model();
                let mut table = st.table.clone();
                drop(st);
                table.update_address_set(name, entries)?;
                let r = self.publish_table(table, t0, wait)?;
                return Ok(MemberReport {
                    generation: r.generation,
                    changes: 1,
                    workers: r.workers,
                    switched: r.switched,
                    wait_seconds: r.wait_seconds,
                    seconds: t0.elapsed().as_secs_f64(),
                    rebuild: Some(r),
                    ..Default::default()
                });
            }
            st.sync_model();
            let old = st
                .table
                .rules()
                .address_set(name)
                .map(|s| s.entries.clone())
                .unwrap_or_default();
            set_diff(name, &old, &entries)
        };
        self.update_members(&changes, wait)
    }

    /// True if the rules have an address set `name`.
    pub fn has_address_set(&self, name: &str) -> bool {
        self.lock().table.rules().address_set(name).is_some()
    }

    /// Applies a batch of membership changes as one publication. Changes of set classes and
    /// port groups update the membership table the workers read (left-right, in place:
    /// work proportional to the batch, no classifier rebuild); if any change touches an
    /// expanded address set, the whole batch is applied by a rebuild instead. Adding a
    /// present member or removing an absent one changes nothing. Unknown sets or groups
    /// refuse the whole batch. Returns once every worker runs the new membership (or after
    /// `wait`: an idle worker adopts at its next burst).
    pub fn update_members(
        &self,
        batch: &[MemberChange],
        wait: Duration,
    ) -> Result<MemberReport, StageError> {
        let t0 = Instant::now();
        let mut st = self.lock();
        // Validate everything first: all or nothing.
        let mut rebuild = false;
        for c in batch {
            match c {
                MemberChange::SetAdd { set, .. } | MemberChange::SetDel { set, .. } => {
                    if st.table.rules().address_set(set).is_none() {
                        return Err(AclError::UnknownAddressSet(set.clone()).into());
                    }
                    rebuild |= !st.table.set_classes().contains(set);
                }
                MemberChange::GroupAdd { group, .. } | MemberChange::GroupDel { group, .. } => {
                    if st.table.rules().port_group(group).is_none() {
                        return Err(AclError::UnknownPortGroup(group.clone()).into());
                    }
                }
            }
        }
        if rebuild {
            st.sync_model();
            let mut table = st.table.clone();
            drop(st);
            apply_to_model(&mut table, batch)?;
            let r = self.publish_table(table, t0, wait)?;
            return Ok(MemberReport {
                generation: r.generation,
                changes: batch.len(),
                workers: r.workers,
                switched: r.switched,
                wait_seconds: r.wait_seconds,
                seconds: t0.elapsed().as_secs_f64(),
                rebuild: Some(r),
                ..Default::default()
            });
        }
        let mut ops = Vec::new();
        let mut groups_changed = false;
        // Membership as the batch leaves it so far, for the entries it touched: changes
        // that change nothing are left out.
        let mut touched: std::collections::BTreeMap<(IpNet, u32), bool> = Default::default();
        for c in batch {
            match c {
                MemberChange::SetAdd { set, net } | MemberChange::SetDel { set, net } => {
                    let bits = st.table.set_classes().bit(set).unwrap_or(0);
                    let add = matches!(c, MemberChange::SetAdd { .. });
                    let live = st.members.live();
                    let now = *touched
                        .entry((*net, bits))
                        .or_insert_with(|| live.has_entry(net, bits));
                    if now != add {
                        touched.insert((*net, bits), add);
                        ops.push(MemberOp::Net {
                            net: *net,
                            bits,
                            add,
                        });
                    }
                }
                MemberChange::GroupAdd { group, port } | MemberChange::GroupDel { group, port } => {
                    let add = matches!(c, MemberChange::GroupAdd { .. });
                    let rules = st.table.rules_mut();
                    let mut members = rules.port_group(group).map(|g| g.members.clone());
                    if let Some(m) = &mut members {
                        let before = m.len();
                        if add && !m.contains(port) {
                            m.push(port.clone());
                        } else if !add {
                            m.retain(|x| x != port);
                        }
                        groups_changed |= m.len() != before;
                    }
                    if let Some(m) = members {
                        let _ = rules.replace_port_group(group, m);
                    }
                }
            }
        }
        let set_ops = ops.len();
        let mut port_bits_changed = false;
        if groups_changed {
            let bits = port_bits_of(&st.current.acl, st.table.rules(), &st.ports);
            if bits.as_slice() != st.members.live().port_bits() {
                ops.push(MemberOp::PortBits(bits.into()));
                port_bits_changed = true;
            }
        }
        if ops.is_empty() {
            return Ok(MemberReport {
                generation: st.generation,
                changes: batch.len(),
                seconds: t0.elapsed().as_secs_f64(),
                ..Default::default()
            });
        }
        st.model_stale |= set_ops != 0;
        // Copies the workers left since the last update: dropping them here lets the update
        // reuse the copy instead of cloning it.
        st.slots.retain(|s| s.strong_count() > 0);
        for s in st.slots.iter().filter_map(Weak::upgrade) {
            let old = s
                .mailbox
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .retired_members
                .take();
            drop(old);
        }
        let (live, pair) = st.members.update(&ops);
        let apply_seconds = t0.elapsed().as_secs_f64();
        st.generation += 1;
        let generation = st.generation;
        st.slots.retain(|s| s.strong_count() > 0);
        let slots: Vec<Arc<WorkerSlot<C>>> = st.slots.iter().filter_map(Weak::upgrade).collect();
        for s in &slots {
            let mut m = s.mailbox.lock().unwrap_or_else(|e| e.into_inner());
            m.next_members = Some(Arc::clone(&live));
            m.epoch = generation;
            drop(m);
            s.published.store(generation, Ordering::Release);
        }
        drop(live);
        drop(st);
        let t1 = Instant::now();
        let switched = wait_for(&slots, generation, t1 + wait, false);
        let wait_seconds = t1.elapsed().as_secs_f64();
        let seconds = t0.elapsed().as_secs_f64();
        for s in &slots {
            let old = s
                .mailbox
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .retired_members
                .take();
            drop(old);
        }
        self.lock().members.catch_up();
        Ok(MemberReport {
            generation,
            changes: batch.len(),
            set_ops,
            port_bits_changed,
            applied: pair.applied,
            copies: pair.copies,
            workers: slots.len(),
            switched,
            apply_seconds,
            wait_seconds,
            seconds,
            rebuild: None,
        })
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
        let members = MemberTable::build(table.rules(), table.set_classes(), &acl.port_bits);
        let acl = Arc::new(acl);
        // Only ACLs added: enforced at once by an overlay beside the current classifier,
        // then the whole classifier is rebuilt and replaces it (the same answers).
        let layered = {
            let current = self.current();
            AclProgram::<C>::layered(&current, &acl, generation)?
        };
        if let Some(prog) = layered {
            let build_seconds = t0.elapsed().as_secs_f64();
            let prog = Arc::new(prog);
            let first = self.install(
                Arc::clone(&prog),
                Some((members, table)),
                flat_rules,
                build_seconds,
                wait,
            );
            let t1 = Instant::now();
            let whole = Arc::new(prog.whole(first.generation + 1)?);
            drop(prog);
            let rebuild_seconds = t1.elapsed().as_secs_f64();
            let mut report = match self.replace_layered(first.generation, whole, wait) {
                Some(mut r) => {
                    r.build_seconds = rebuild_seconds;
                    r.layered = Some(Box::new(first));
                    r
                }
                // Something newer was published meanwhile: it replaced the layered program.
                None => first,
            };
            report.flat_rules = flat_rules;
            return Ok(report);
        }
        let prog = Arc::new(AclProgram::<C>::build(acl, generation)?);
        let build_seconds = t0.elapsed().as_secs_f64();
        Ok(self.install(
            prog,
            Some((members, table)),
            flat_rules,
            build_seconds,
            wait,
        ))
    }

    /// Replaces the layered program of generation `layered` (if it is still the current
    /// one) by `whole`, the same rules in one classifier: the rule set, the membership
    /// table and the per-rule counters carry on.
    fn replace_layered(
        &self,
        layered: u64,
        whole: Arc<AclProgram<C>>,
        wait: Duration,
    ) -> Option<PublishReport> {
        if self.lock().current.generation != layered {
            return None;
        }
        Some(self.install(whole, None, 0, 0.0, wait))
    }

    /// Publishes `prog` to every worker and waits for them. `update`: the membership table
    /// and rule set it was built from (fresh per-rule counters); `None`: the same rules as
    /// the current program (the counters and membership carry on).
    fn install(
        &self,
        prog: Arc<AclProgram<C>>,
        update: Option<(MemberTable, AclTable)>,
        flat_rules: usize,
        build_seconds: f64,
        wait: Duration,
    ) -> PublishReport {
        let classifier = prog.describe();
        let fresh_counters = update.is_some();
        let (generation, slots) = {
            let mut st = self.lock();
            st.generation = st.generation.max(prog.generation);
            let generation = st.generation;
            st.current = Arc::clone(&prog);
            if let Some((members, table)) = update {
                st.table = table;
                st.members = MemberPair::new(members);
                st.model_stale = false;
            }
            let live = Arc::clone(st.members.live());
            st.slots.retain(|s| s.strong_count() > 0);
            let slots: Vec<Arc<WorkerSlot<C>>> =
                st.slots.iter().filter_map(Weak::upgrade).collect();
            for s in &slots {
                let mut held = s.counters.lock().unwrap_or_else(|e| e.into_inner());
                if fresh_counters {
                    *held = Arc::new(AclCounterBlock::new(prog.acl.actions.len()));
                }
                let counters = Arc::clone(&held);
                drop(held);
                let mut m = s.mailbox.lock().unwrap_or_else(|e| e.into_inner());
                m.next = Some((Arc::clone(&prog), counters));
                m.next_members = Some(Arc::clone(&live));
                m.epoch = generation;
                drop(m);
                s.published.store(generation, Ordering::Release);
            }
            (generation, slots)
        };
        drop(prog);
        let t1 = Instant::now();
        let switched = wait_for(&slots, generation, t1 + wait, true);
        let wait_seconds = t1.elapsed().as_secs_f64();
        let mut retired_freed = 0;
        for s in &slots {
            let (old, old_members) = {
                let mut m = s.mailbox.lock().unwrap_or_else(|e| e.into_inner());
                (m.retired.take(), m.retired_members.take())
            };
            if old.is_some() {
                retired_freed += 1;
            }
            // Freed here, on the control thread, outside the mailbox lock.
            drop((old, old_members));
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
            layered: None,
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

/// How long a membership update spins before it sleeps between looks: a busy worker adopts
/// within one burst (tens of microseconds), so most updates end while spinning; after that
/// the control thread sleeps [`MEMBER_NAP`] per look. Measured (acl-bench, worker on CPU 1,
/// control on CPU 0, two hyperthreads of one core): spinning through the whole wait halved
/// the worker's rate during sustained churn (13.8 -> 5.9 Mpps), the spinning sibling
/// taking the core's execution units; and yielding from the first look cost a scheduler
/// time slice (4 ms) whenever another process wanted the CPU.
const MEMBER_SPIN: Duration = Duration::from_micros(20);

/// The sleep between looks after [`MEMBER_SPIN`].
const MEMBER_NAP: Duration = Duration::from_micros(50);

/// Waits until every slot acked `generation` or `deadline` passed; returns how many did.
/// Sleeps 100 us between looks (`sleep`, for rebuilds) or spins for [`MEMBER_SPIN`] then
/// naps [`MEMBER_NAP`] (membership updates, whose latency is one burst of every worker).
fn wait_for<C>(
    slots: &[Arc<WorkerSlot<C>>],
    generation: u64,
    deadline: Instant,
    sleep: bool,
) -> usize {
    let start = Instant::now();
    loop {
        let pending = slots.iter().filter(|s| s.acked() < generation).count();
        let now = Instant::now();
        if pending == 0 || now >= deadline {
            break;
        }
        if sleep {
            std::thread::sleep(Duration::from_micros(100));
        } else if now - start < MEMBER_SPIN {
            std::hint::spin_loop();
        } else {
            std::thread::sleep(MEMBER_NAP);
        }
    }
    slots.iter().filter(|s| s.acked() >= generation).count()
}

/// The changes turning set `name`'s entries `old` into `new`.
pub fn set_diff(name: &str, old: &[IpNet], new: &[IpNet]) -> Vec<MemberChange> {
    let (o, n): (std::collections::BTreeSet<_>, std::collections::BTreeSet<_>) =
        (old.iter().collect(), new.iter().collect());
    let del = o.difference(&n).map(|net| MemberChange::SetDel {
        set: name.to_string(),
        net: **net,
    });
    let add = n.difference(&o).map(|net| MemberChange::SetAdd {
        set: name.to_string(),
        net: **net,
    });
    del.chain(add).collect()
}

/// Applies a batch to the rule set of `table` (set entries as sets: no duplicates), then
/// re-expands the ACLs using each changed set.
fn apply_to_model(table: &mut AclTable, batch: &[MemberChange]) -> Result<(), AclError> {
    let mut sets: std::collections::BTreeMap<String, Vec<IpNet>> = Default::default();
    for c in batch {
        match c {
            MemberChange::SetAdd { set, net } | MemberChange::SetDel { set, net } => {
                let entries = match sets.entry(set.clone()) {
                    std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
                    std::collections::btree_map::Entry::Vacant(v) => v.insert(
                        table
                            .rules()
                            .address_set(set)
                            .ok_or_else(|| AclError::UnknownAddressSet(set.clone()))?
                            .entries
                            .clone(),
                    ),
                };
                if matches!(c, MemberChange::SetAdd { .. }) {
                    if !entries.contains(net) {
                        entries.push(*net);
                    }
                } else {
                    entries.retain(|e| e != net);
                }
            }
            MemberChange::GroupAdd { group, port } | MemberChange::GroupDel { group, port } => {
                let mut m = table
                    .rules()
                    .port_group(group)
                    .ok_or_else(|| AclError::UnknownPortGroup(group.clone()))?
                    .members
                    .clone();
                if matches!(c, MemberChange::GroupAdd { .. }) {
                    if !m.contains(port) {
                        m.push(port.clone());
                    }
                } else {
                    m.retain(|x| x != port);
                }
                table.update_port_group(group, m)?;
            }
        }
    }
    for (name, entries) in sets {
        table.update_address_set(&name, entries)?;
    }
    Ok(())
}
