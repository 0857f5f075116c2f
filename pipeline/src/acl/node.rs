//! The `acl` node kind: OVN-style ACLs on a compiled classifier, optionally stateful.
//!
//! # How a packet is judged (per burst)
//! 1. At the burst boundary the node adopts a newly published program, if any
//!    ([`super::publish`]); the whole burst is then judged by one program.
//! 2. Non-IP packets get the default action (or pass, with `allow_non_ip = true`).
//! 3. With `lb_conntrack = "<lb node>"`: the burst is first looked up in that `lb` node's
//!    connection table ([`crate::lb::LbFlows::look_up_tracked`]); packets of connections it
//!    tracks (requests it balanced, replies from their backends) pass without
//!    classification, and the `lb` node reuses the lookup. The rest go on as below.
//!
//!    Stateful (`stateful = N`): the flow keys of all IP packets are looked up in the
//!    worker's connection table in one batch; a packet of a tracked connection, in either
//!    direction, passes without classification (TCP state is advanced). So does a reply an
//!    `lb` node before this one translated back to its VIP as the reply of a connection it
//!    tracks ([`PacketMeta::FLAG_LB_REPLY`]; counted as a connection-table hit): this
//!    node's own entry has the backend where the reply now has the VIP, and OVN's ACL
//!    stages after its load balancer pass such replies as established.
//! 4. The others get a 64-byte key each ([`AclKey`]): protocol, input- and output-port
//!    class bitmasks, L4 ports or ICMP type/code, addresses; when the rules name set
//!    classes, a second pass over the family's keys looks up each address's set-class
//!    bitmask in the worker's membership table ([`super::members`]). The port-class
//!    bitmasks come from that table too. The keys are looked up in the
//!    worker's verdict cache ([`super::verdict_cache`], `verdict_cache = N` entries, 0:
//!    off); the misses of each family go to its own classifier context: one classify call
//!    per family present in the burst.
//! 5. The result is the winning ACL (highest priority, ties to the earlier ACL in the
//!    file) or the default action: `allow` -> next; `allow-related` -> next, and a
//!    connection entry is created (table full: drop `conntrack-full`); `drop` -> drop
//!    `acl-deny` (no ACL matched: `default-deny`); `reject` -> the packet is rewritten in
//!    place into a TCP RST (TCP) or an ICMP / ICMPv6 destination unreachable (OVN's
//!    codes: port unreachable for UDP, see [`crate::reject`]) quoting it, and sent straight back out of its input
//!    port (counted `reject-replies`, and as an `acl-reject` denial in the rule counters);
//!    packets that get no answer (ICMP errors, RSTs, later fragments, non-unicast) and
//!    everything with `reject_replies = false` are dropped `acl-reject`. A packet denied in a burst in which a connection
//!    was created is looked up again, so a reply in the same burst as its request passes.
//!
//! # Ports
//! `inport` is the packet's input port. `outport` is known before the forward node only
//! if the node is told how it will be decided: `outport = "cross-connect"` with the same
//! `pairs` as the `forward` node, or `outport = "by-metadata"` (`meta.out_port`, set by an
//! earlier node), or `outport = "by-route"` with `routes` (destination prefix -> port; the
//! node then also sets `meta.out_port` for `forward` in `by-metadata` mode). With `outport = "none"` (default) the output port is no port: ACLs that
//! require `outport == ...` never match and `outport != ...` always does.
//!
//! Non-first IP fragments carry no L4 header: they are classified with ports 0 (use the
//! parse node's `fragments = "drop"` where that matters).

use std::path::Path;
use std::sync::{Arc, Mutex, Weak};

use arrayvec::ArrayVec;

use serde::Deserialize;

use super::ct_entry;
use super::key::{
    AclKey, BurstClassifier, ClassLayout, ClassWords, Classify, CompiledAcl, ProtoMap,
};
use super::log::{LogRecord, LogRing};
use super::members::MemberTable;
use super::model::{AclConfig, AclFile, Action, IpNet, IpVersion};
use super::publish::{expand_config_with, AclCounterBlock, AclHub, Installed, WorkerSlot};
use super::verdict_cache::{self, VerdictCache};
use crate::conntrack::{ConnTrack, Direction, Handle, InsertError, TcpFlags, TimeoutSecs};
use crate::ct_sample::{serve_acl, CtSampler, CtServer};
use crate::flow_key::{FlowKey, PROTO_TCP};
use crate::graph::{
    BuildContext, Decision, Frame, KindInfo, Node, ParamError, Registry, SharedState, Verdict,
    VECTOR_SIZE,
};
use crate::meta::PacketMeta;
use crate::nodes::NodeImpl;
use crate::reject as reject_reply;
use crate::trace::TraceNote;
use crate::PacketBuf;

/// Drop code: an ACL with action `drop` matched.
pub const DROP_ACL_DENY: u8 = 0;
/// Drop code: no ACL matched and the default denies.
pub const DROP_DEFAULT_DENY: u8 = 1;
/// Drop code: an ACL with action `reject` matched.
pub const DROP_ACL_REJECT: u8 = 2;
/// Drop code: a new `allow-related` session found the connection table full.
pub const DROP_CONNTRACK_FULL: u8 = 3;

/// Extra counter: packets judged by the rules (by the classifier or from the verdict cache).
pub const CTR_CLASSIFIED: usize = 0;
/// Extra counter: packets passed by the connection table.
pub const CTR_CT_HITS: usize = 1;
/// Extra counter: connections created.
pub const CTR_CT_NEW: usize = 2;
/// Extra counter: non-IP packets.
pub const CTR_NON_IP: usize = 3;
/// Extra counter: rule updates adopted.
pub const CTR_UPDATES: usize = 4;
/// Extra counter: `reject` answers sent (TCP RST or ICMP unreachable).
pub const CTR_REJECT_REPLIES: usize = 5;
/// Extra counter: packets of `classified` whose result came from the verdict cache.
pub const CTR_CACHE_HITS: usize = 6;
/// Extra counter: packets of tracked connections judged again because the rules changed
/// since their connection was last judged (see [`AclNode`]).
pub const CTR_CT_RECHECKED: usize = 7;
/// Extra counter: connections the changed rules no longer allow (their entries are
/// removed, or, in the `lb` node's table, blocked).
pub const CTR_CT_REVOKED: usize = 8;
/// Extra counter: ICMP errors passed as related to a tracked connection (see
/// [`crate::icmp_error`]).
pub const CTR_CT_RELATED: usize = 9;

/// How the node learns the output port of a packet.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OutportMode {
    /// Not known: no port.
    #[default]
    None,
    /// The peer of the input port in `pairs` (as the `forward` node's cross-connect).
    CrossConnect,
    /// `meta.out_port`.
    ByMetadata,
    /// By destination address through `routes` (longest prefix first); the node also
    /// stores the result in `meta.out_port` for a `forward` node in `by-metadata` mode.
    /// A minimal static router for labs: the routes are scanned per packet.
    ByRoute,
}

/// Parameters of the `acl` kind.
///
/// ```toml
/// params = { rules = "config/acl-three-tier.toml", stateful = 65536,
///            outport = "cross-connect", pairs = [["web0", "ba0"], ["db0", "db0"]] }
/// ```
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AclParams {
    /// A TOML file holding an `[acl]` table (relative paths: from the working directory).
    #[serde(default)]
    pub rules: Option<String>,
    /// The `[acl]` table inline (instead of `rules`).
    #[serde(default)]
    pub acl: Option<AclConfig>,
    /// Overrides the rules' default action.
    #[serde(default)]
    pub default: Option<Action>,
    /// Connection-table capacity per worker; 0 (default): stateless, and
    /// `allow-related` acts as `allow`.
    #[serde(default)]
    pub stateful: usize,
    /// Connection idle timeouts in seconds (`udp`, `tcp_established`, `tcp_transient`,
    /// `other`).
    #[serde(default)]
    pub timeouts: TimeoutSecs,
    /// How the output port is known: `none` (default), `cross-connect`, `by-metadata`.
    #[serde(default)]
    pub outport: OutportMode,
    /// Port pairs for `outport = "cross-connect"`.
    #[serde(default)]
    pub pairs: Vec<[String; 2]>,
    /// Routes for `outport = "by-route"`: `[["10.0.1.0/24", "web0"], ...]`.
    #[serde(default)]
    pub routes: Vec<[String; 2]>,
    /// Pass non-IP packets (ARP, ...) instead of giving them the default action.
    #[serde(default)]
    pub allow_non_ip: bool,
    /// `reject` answers: a TCP RST or an ICMP/ICMPv6 unreachable sent back out of the input
    /// port (default true); false: rejected packets are only dropped.
    #[serde(default = "yes")]
    pub reject_replies: bool,
    /// Entries of the worker's verdict cache (see [`verdict_cache`]; default
    /// [`verdict_cache::DEFAULT_ENTRIES`], 32 bytes each); 0 turns it off.
    #[serde(default = "default_cache_entries")]
    pub verdict_cache: usize,
    /// The name of an `lb` node later in the pipeline whose connection table this node
    /// consults first: packets of connections that node tracks (requests to a VIP whose
    /// connection it created, and their replies) pass without classification, and the `lb`
    /// node reuses the lookup (see [`crate::lb::flows`]).
    #[serde(default)]
    pub lb_conntrack: Option<String>,
    /// Entry count from which an address set is matched by membership (a set class, see
    /// [`super::expand`]) instead of expanded into flat rules (default
    /// [`super::expand::DEFAULT_SET_CLASS_MIN_ENTRIES`]; a huge value expands every set,
    /// as before set classes existed).
    #[serde(default)]
    pub set_class_min_entries: Option<usize>,
}

fn default_cache_entries() -> usize {
    verdict_cache::DEFAULT_ENTRIES
}

fn yes() -> bool {
    true
}

impl AclParams {
    /// The `[acl]` table: read from `rules` or inline, with `default` applied.
    pub fn load(&self) -> Result<AclConfig, ParamError> {
        let mut cfg = match (&self.rules, &self.acl) {
            (Some(path), None) => load_rules_file(Path::new(path))?,
            (None, Some(cfg)) => cfg.clone(),
            _ => return Err(ParamError::general(
                "give the rules as `rules = \"FILE\"` or as an inline `acl` table (exactly one)",
            )),
        };
        if let Some(d) = self.default {
            cfg.default = d;
        }
        Ok(cfg)
    }
}

/// Reads a file holding an `[acl]` table.
pub fn load_rules_file(path: &Path) -> Result<AclConfig, ParamError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ParamError::new("rules", format!("{}: cannot read: {e}", path.display())))?;
    let file: AclFile = toml::from_str(&text).map_err(|e| {
        ParamError::new(
            "rules",
            format!("{}: {}", path.display(), e.to_string().trim()),
        )
    })?;
    Ok(file.acl)
}

const NO_PORT: u16 = u16::MAX;

struct Scratch {
    keys: [[AclKey; VECTOR_SIZE]; 2],
    res: [[u32; VECTOR_SIZE]; 2],
    /// Family slot -> IP index.
    fam_idx: [[u16; VECTOR_SIZE]; 2],
    /// IP index -> packet index.
    ip_idx: [u16; VECTOR_SIZE],
    /// Classified packets in packet order: IP index and classifier result.
    cls_idx: [u16; VECTOR_SIZE],
    cls_res: [u32; VECTOR_SIZE],
    flows: [FlowKey; VECTOR_SIZE],
    ct: [Option<(Handle, Direction)>; VECTOR_SIZE],
    /// Packets of connections the `lb` node tracks (with `lb_conntrack`).
    tracked: [bool; VECTOR_SIZE],
    /// Connections of the own table that the changed rules no longer allow (removed after
    /// the vector's verdicts, so that the vector's handles stay valid).
    revoke: ArrayVec<FlowKey, VECTOR_SIZE>,
    /// How the last vector was judged: what [`AclNode::note`] reads the arrays above by.
    last: LastVector,
}

/// How the `acl` node judged its last vector (one store per vector), so that a traced
/// packet's note can be read back from the scratch arrays the vector left.
#[derive(Debug, Clone, Copy, Default)]
enum LastVector {
    /// No vector yet.
    #[default]
    None,
    /// Every packet belonged to a connection the `lb` node tracks.
    AllTracked,
    /// Stateless: `nf` keys per family (`fam_idx` holds packet indices).
    Stateless { nf: [usize; 2], skip: bool },
    /// Stateful: `nip` IP packets (`ip_idx`), `ncls` of them classified (`cls_idx`).
    Stateful { nip: usize, ncls: usize, skip: bool },
}

impl Scratch {
    /// Appends the key of IP packet `m` to its family's list (`nf`: keys per family so
    /// far), remembering `idx` for the result.
    #[inline(always)]
    fn push_key(
        &mut self,
        nf: &mut [usize; 2],
        m: &PacketMeta,
        words: ClassWords,
        protos: &ProtoMap,
        idx: u16,
    ) {
        // Constant indices only, so both counts stay in registers (a `nf[fam]` store and
        // reload would chain every packet to the previous one through memory).
        let six = m.ip_version == 6;
        let fam = usize::from(six);
        let t = if six { nf[1] } else { nf[0] };
        self.keys[fam][t].set_from_meta(m, words, protos);
        self.fam_idx[fam][t] = idx;
        if six {
            nf[1] = t + 1;
        } else {
            nf[0] = t + 1;
        }
    }

    fn boxed() -> Box<Scratch> {
        Box::new(Scratch {
            keys: [[AclKey::default(); VECTOR_SIZE]; 2],
            res: [[0; VECTOR_SIZE]; 2],
            fam_idx: [[0; VECTOR_SIZE]; 2],
            ip_idx: [0; VECTOR_SIZE],
            cls_idx: [0; VECTOR_SIZE],
            cls_res: [0; VECTOR_SIZE],
            flows: [FlowKey::default(); VECTOR_SIZE],
            ct: [None; VECTOR_SIZE],
            tracked: [false; VECTOR_SIZE],
            revoke: ArrayVec::new(),
            last: LastVector::None,
        })
    }
}

/// The `acl` node of one worker.
///
/// **Rule changes and established connections** (as OVN's `ct_mark.blocked`, or VPP's ACL
/// plugin with session reclassification): a connection's entry remembers the generation of
/// the rules that last allowed it. A packet of the connection's original direction that
/// arrives under newer rules is judged again (`ct-rechecked`): if they still let it pass,
/// the entry takes the new generation and the connection goes on untouched; if not, the
/// packet gets the new verdict and the connection ends (`ct-revoked`; its replies are then
/// judged as new packets). Replies pass as long as the entry lives. Steady traffic pays one
/// compare per packet; a rule change costs each live connection one classification.
pub struct AclNode<C: Classify> {
    hub: Arc<AclHub<C>>,
    slot: Arc<WorkerSlot<C>>,
    installed: Installed<C>,
    /// Set-class and port-class membership, published with the program and on its own.
    members: Arc<MemberTable>,
    /// The generation this node runs (of its program or of its membership, the later).
    epoch: u64,
    outport: OutportMode,
    /// Input port id -> output port id (cross-connect).
    peer: Box<[u16]>,
    /// Destination prefixes -> output port id, longest prefix first (by-route).
    routes: Box<[(IpNet, u16)]>,
    /// The own connection table (stateful); each entry holds the generation of the rules
    /// that last allowed its connection.
    ct: Option<ConnTrack<u64>>,
    allow_non_ip: bool,
    /// Port id -> tx slot of that port (reject replies leave by their input port);
    /// empty when replies are off.
    reply_slot: Box<[u16]>,
    scratch: Box<Scratch>,
    cache: Option<VerdictCache>,
    /// Shared-state slot of the `lb` node named by `lb_conntrack`.
    lb_flows: Option<usize>,
    /// `show conntrack` sampling of `ct`, and the rate of its clock.
    sample: CtServer,
    ticks_per_sec: u64,
    /// Records of packets decided by ACLs that log, for the control side's drain
    /// (preallocated; a full ring counts the record as `ring-dropped`).
    log_ring: Arc<LogRing>,
}

/// Records a worker's log ring holds (64 bytes each): 20 ms of a 50k packets per second
/// logged flood at a 5 ms drain period, with margin.
pub const LOG_RING_RECORDS: usize = 1024;

impl<C: Classify> std::fmt::Debug for AclNode<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AclNode")
            .field("generation", &self.epoch)
            .field("stateful", &self.ct.is_some())
            .finish()
    }
}

/// The hubs of a process by node name: the ACL nodes of all workers with the same node
/// name share one hub. A hub lives while a node or a control handle holds it.
pub struct HubRegistry<C> {
    hubs: Mutex<Vec<(String, Weak<AclHub<C>>)>>,
}

impl<C: Classify> HubRegistry<C> {
    /// An empty registry (usable in a `static`).
    pub const fn new() -> Self {
        HubRegistry {
            hubs: Mutex::new(Vec::new()),
        }
    }

    /// Every live hub with its node name, in creation order.
    pub fn all(&self) -> Vec<(String, Arc<AclHub<C>>)> {
        let hubs = self.hubs.lock().unwrap_or_else(|e| e.into_inner());
        hubs.iter()
            .filter_map(|(n, w)| Some((n.clone(), w.upgrade()?)))
            .collect()
    }

    /// The live hub of node `name`.
    pub fn get(&self, name: &str) -> Option<Arc<AclHub<C>>> {
        let hubs = self.hubs.lock().unwrap_or_else(|e| e.into_inner());
        hubs.iter()
            .find(|(n, _)| n == name)
            .and_then(|(_, w)| w.upgrade())
    }

    fn get_or_create(
        &self,
        name: &str,
        create: impl FnOnce() -> Result<AclHub<C>, ParamError>,
    ) -> Result<Arc<AclHub<C>>, ParamError> {
        let mut hubs = self.hubs.lock().unwrap_or_else(|e| e.into_inner());
        hubs.retain(|(_, w)| w.strong_count() > 0);
        if let Some(h) = hubs
            .iter()
            .find(|(n, _)| n == name)
            .and_then(|(_, w)| w.upgrade())
        {
            return Ok(h);
        }
        let h = Arc::new(create()?);
        hubs.push((name.to_string(), Arc::downgrade(&h)));
        Ok(h)
    }
}

impl<C: Classify> Default for HubRegistry<C> {
    fn default() -> Self {
        Self::new()
    }
}

impl<C: Classify> AclNode<C> {
    /// Shape of the kind.
    pub const INFO: KindInfo = KindInfo {
        outputs: &["next"],
        drop_reasons: &["acl-deny", "default-deny", "acl-reject", "conntrack-full"],
        counters: &[
            "classified",
            "ct-hits",
            "ct-new",
            "non-ip",
            "updates",
            "reject-replies",
            "verdict-cache-hits",
            "ct-rechecked",
            "ct-revoked",
            "ct-related",
        ],
        // Reject answers leave by their input port.
        transmits: true,
        fills_meta: false,
        description: "OVN-style ACLs (port groups, address sets, allow-related via conntrack) on a compiled classifier",
    };

    /// Builds a worker's node: joins (or creates) the hub of this node name in `hubs`.
    /// `ticks_per_sec` is the rate of [`crate::cycles::now`] (for connection timeouts).
    pub fn new(
        p: &AclParams,
        ctx: &BuildContext<'_>,
        hubs: &HubRegistry<C>,
        ticks_per_sec: u64,
    ) -> Result<Self, ParamError> {
        let hub = hubs.get_or_create(ctx.node, || {
            let cfg = p.load()?;
            let limits = super::expand::ExpandLimits {
                set_class_min_entries: p
                    .set_class_min_entries
                    .unwrap_or(super::expand::DEFAULT_SET_CLASS_MIN_ENTRIES),
                ..Default::default()
            };
            let table = expand_config_with(&cfg, limits).map_err(|e| {
                ParamError::new(
                    if p.rules.is_some() { "rules" } else { "acl" },
                    e.to_string(),
                )
            })?;
            AclHub::new(table, ctx.ports).map_err(|e| ParamError::general(e.to_string()))
        })?;
        Self::with_hub(p, ctx, hub, ticks_per_sec)
    }

    /// Builds a worker's node on an existing hub.
    pub fn with_hub(
        p: &AclParams,
        ctx: &BuildContext<'_>,
        hub: Arc<AclHub<C>>,
        ticks_per_sec: u64,
    ) -> Result<Self, ParamError> {
        let size = ctx
            .ports
            .iter()
            .map(|p| usize::from(p.index) + 1)
            .max()
            .unwrap_or(0);
        let mut peer = vec![NO_PORT; size].into_boxed_slice();
        match p.outport {
            OutportMode::CrossConnect => {
                if p.pairs.is_empty() {
                    return Err(ParamError::new("pairs", "outport = \"cross-connect\" needs the forward node's pairs, e.g. pairs = [[\"web0\", \"ba0\"]]"));
                }
                for [a, b] in &p.pairs {
                    let id = |n: &str| {
                        ctx.port_slot(n)
                            .map(|s| ctx.ports[s].index)
                            .ok_or_else(|| ParamError::new("pairs", format!("unknown port `{n}`")))
                    };
                    let (ia, ib) = (id(a)?, id(b)?);
                    peer[usize::from(ia)] = ib;
                    peer[usize::from(ib)] = ia;
                }
            }
            _ if !p.pairs.is_empty() => {
                return Err(ParamError::new(
                    "pairs",
                    "`pairs` is only used with outport = \"cross-connect\"",
                ));
            }
            _ => {}
        }
        if (p.outport == OutportMode::ByRoute) == p.routes.is_empty() {
            return Err(ParamError::new(
                "routes",
                "`routes` is needed with, and only with, outport = \"by-route\"",
            ));
        }
        let mut routes = Vec::new();
        for [prefix, port] in &p.routes {
            let net: IpNet = prefix
                .parse()
                .map_err(|e| ParamError::new("routes", format!("{prefix}: {e}")))?;
            let id = ctx
                .port_slot(port)
                .map(|s| ctx.ports[s].index)
                .ok_or_else(|| ParamError::new("routes", format!("unknown port `{port}`")))?;
            routes.push((net, id));
        }
        routes.sort_by_key(|r| std::cmp::Reverse(r.0.prefix_len()));
        if p.stateful > crate::conntrack::MAX_CAPACITY {
            return Err(ParamError::new(
                "stateful",
                format!("at most {} connections", crate::conntrack::MAX_CAPACITY),
            ));
        }
        let ct = (p.stateful > 0).then(|| {
            ConnTrack::with_capacity(p.stateful, p.timeouts.to_ticks(ticks_per_sec.max(1)))
        });
        let mut reply_slot = vec![NO_PORT; if p.reject_replies { size } else { 0 }];
        if p.reject_replies {
            for (slot, port) in ctx.ports.iter().enumerate() {
                reply_slot[usize::from(port.index)] = slot as u16;
            }
        }
        if p.verdict_cache > verdict_cache::MAX_ENTRIES {
            return Err(ParamError::new(
                "verdict_cache",
                format!("at most {} entries", verdict_cache::MAX_ENTRIES),
            ));
        }
        let lb_flows = p.lb_conntrack.as_deref().map(|name| {
            ctx.request_shared::<crate::lb::LbFlows>("lb_conntrack", name, "an `lb` node")
        });
        let (slot, installed, members) = hub.join();
        let log_ring = Arc::new(LogRing::new(LOG_RING_RECORDS));
        hub.add_log_ring(&log_ring);
        let epoch = slot.published();
        let cache = (p.verdict_cache > 0)
            .then(|| VerdictCache::new(p.verdict_cache, installed.0.cache_plans));
        Ok(AclNode {
            hub,
            slot,
            installed,
            members,
            epoch,
            outport: p.outport,
            peer,
            routes: routes.into_boxed_slice(),
            ct,
            allow_non_ip: p.allow_non_ip,
            reply_slot: reply_slot.into_boxed_slice(),
            scratch: Scratch::boxed(),
            cache,
            lb_flows,
            sample: CtServer::new(),
            ticks_per_sec: ticks_per_sec.max(1),
            log_ring,
        })
    }

    /// This worker's log ring (its producer is the worker).
    pub fn log_ring(&self) -> &Arc<LogRing> {
        &self.log_ring
    }

    /// The hub this node belongs to (the control handle for updates and counters).
    pub fn hub(&self) -> &Arc<AclHub<C>> {
        &self.hub
    }

    /// The generation this node runs: of its program, or of a later membership update.
    pub fn generation(&self) -> u64 {
        self.epoch
    }

    /// The connection table, if stateful.
    /// Each entry's payload holds the generation of the rules that last allowed it and the
    /// ACL that did ([`super::ct_entry`]).
    pub fn conntrack(&self) -> Option<&ConnTrack<u64>> {
        self.ct.as_ref()
    }

    #[inline(always)]
    fn maybe_adopt(&mut self) -> bool {
        if self.slot.published() == self.epoch {
            return false;
        }
        match self.slot.adopt(&mut self.installed, &mut self.members) {
            Some(a) => {
                self.epoch = a.generation;
                // A membership update keeps the cache: its keys hold the set-class bits.
                if a.program {
                    if let Some(c) = &mut self.cache {
                        c.install(self.installed.0.cache_plans);
                    }
                }
                true
            }
            None => false,
        }
    }
}

const UNCLASSIFIED: u32 = u32::MAX;

#[inline]
fn route(routes: &[(IpNet, u16)], m: &PacketMeta) -> u16 {
    let Some(dst) = m.dst_ip() else {
        return NO_PORT;
    };
    routes
        .iter()
        .find(|(net, _)| net.contains(&dst))
        .map_or(NO_PORT, |r| r.1)
}

/// Per-rule counting of a burst: runs of packets judged by the same classifier result are
/// counted with one counter update (and, through [`RunCounter::judged`], judged once).
struct RunCounter {
    ud: u32,
    action: Action,
    /// Whether the ACL of `ud` logs the packets it decides.
    logs: bool,
    decision: Decision,
    packets: u64,
    bytes: u64,
}

impl RunCounter {
    #[inline(always)]
    fn new() -> Self {
        RunCounter {
            ud: UNCLASSIFIED,
            action: Action::Drop,
            logs: false,
            decision: Decision::Next(0),
            packets: 0,
            bytes: 0,
        }
    }

    /// Counts a packet of classifier result `ud` and returns its action and decision: looked
    /// up (`verdict_of`: the action and whether it logs, [`AclProgram::verdict`]) and judged
    /// only when the result differs from the previous packet's. `self.logs` then says
    /// whether the packet is to be logged.
    ///
    /// [`AclProgram::verdict`]: super::publish::AclProgram::verdict
    #[inline(always)]
    fn judged(
        &mut self,
        c: &AclCounterBlock,
        ud: u32,
        bytes: u64,
        verdict_of: impl FnOnce(u32) -> (Action, bool),
    ) -> (Action, Decision) {
        if ud != self.ud {
            self.flush(c);
            self.ud = ud;
            (self.action, self.logs) = verdict_of(ud);
            self.decision = judge(ud, self.action);
        }
        self.packets += 1;
        self.bytes += bytes;
        (self.action, self.decision)
    }

    /// Counts a packet of classifier result `ud` whose action the caller already knows, from
    /// a rule that does not log (the default).
    #[inline(always)]
    fn add(&mut self, c: &AclCounterBlock, ud: u32, action: Action, bytes: u64) {
        self.judged(c, ud, bytes, |_| (action, false));
    }
}

/// Queues the log record of a packet decided by ACL `ud - 1` of `prog` (which logs) for
/// the control side; a full ring counts it. Out of line: the packets of ACLs that do not
/// log pay one branch on [`RunCounter::logs`].
#[cold]
#[inline(never)]
fn log_packet<C>(
    ring: &LogRing,
    prog: &super::publish::AclProgram<C>,
    ud: u32,
    action: Action,
    in_port: u16,
    m: &PacketMeta,
) {
    let rule = ud.wrapping_sub(1);
    let direction = prog
        .acl
        .rules
        .acls()
        .get(rule as usize)
        .map_or(super::model::Direction::Egress, |a| a.direction);
    ring.push(&LogRecord::of(
        prog.generation,
        rule,
        action,
        direction,
        in_port,
        m,
    ));
}

/// Queues the log record of a reply (or related ICMP error) of the connection whose entry
/// holds `payload`, when the ACL that admitted it logs related traffic (OVN's
/// `options:log-related`) and the entry was written under the current generation `gen` (its
/// ACL index then names a rule of `prog`). Logged as allowed, in the ACL's direction. Out of
/// line: only nodes whose program has such an ACL call it.
#[cold]
#[inline(never)]
fn log_related_packet<C: Classify>(
    ring: &LogRing,
    prog: &super::publish::AclProgram<C>,
    payload: u64,
    gen: u64,
    in_port: u16,
    m: &PacketMeta,
) {
    let ud = ct_entry::rule_ud(payload);
    if ct_entry::is_of(payload, gen) && prog.logs_related(ud) {
        log_packet(ring, prog, ud, Action::Allow, in_port, m);
    }
}

impl RunCounter {
    #[inline(always)]
    fn flush(&mut self, c: &AclCounterBlock) {
        if self.packets != 0 {
            c.record_run(
                self.ud.checked_sub(1).map(|a| a as usize),
                self.action,
                self.packets,
                self.bytes,
            );
            self.packets = 0;
            self.bytes = 0;
        }
    }
}

#[inline(always)]
fn judge(ud: u32, action: Action) -> Decision {
    match action {
        Action::Allow | Action::AllowRelated => Decision::Next(0),
        Action::Drop | Action::Reject if ud == 0 => Decision::Drop(DROP_DEFAULT_DENY),
        Action::Drop => Decision::Drop(DROP_ACL_DENY),
        Action::Reject => Decision::Drop(DROP_ACL_REJECT),
    }
}

/// A rejected packet: rewritten in place into its TCP RST / ICMP unreachable and sent out of
/// its input port, or dropped with `drop` (`acl-reject`, or `default-deny` for the default)
/// when it gets no reply (an ICMP error, a RST, a later fragment, a broadcast, ...) or
/// replies are off.
#[inline(never)]
fn reject<P: PacketBuf>(
    pkt: &mut P,
    m: &PacketMeta,
    reply_slot: &[u16],
    replies: &mut u64,
    drop: Decision,
) -> Decision {
    let Some(&slot) = reply_slot.get(usize::from(pkt.in_port())) else {
        return drop;
    };
    if slot == NO_PORT || !reject_reply::answer(pkt, m) {
        return drop;
    }
    *replies += 1;
    Decision::Tx(slot)
}

/// A non-IP packet: passes with `allow_non_ip`, else gets the default action (counted).
#[inline(always)]
fn non_ip_decision<P: PacketBuf>(
    allow_non_ip: bool,
    default: Action,
    run: &mut RunCounter,
    counters: &AclCounterBlock,
    pkt: &P,
) -> Decision {
    if allow_non_ip {
        return Decision::Next(0);
    }
    run.add(counters, 0, default, pkt.data().len() as u64);
    judge(0, default)
}

/// The class words of the last (input, output) port pair of a burst: consecutive packets
/// of a burst mostly share their ports, so the two bitmask loads and the packing are
/// skipped for them. Lives for one burst (the program may change between bursts).
struct PairCache {
    pair: u32,
    words: ClassWords,
}

impl PairCache {
    /// Empty: the first lookup computes. The sentinel pair (no port, no port) has all-zero
    /// class words, which is what [`ClassWords::default`] holds.
    fn new() -> Self {
        PairCache {
            pair: u32::MAX,
            words: ClassWords::default(),
        }
    }

    /// The class words of a port pair under `layout` with the port bitmasks `bits`.
    #[inline(always)]
    fn words(&mut self, layout: ClassLayout, bits: &[u64], inp: u16, outp: u16) -> ClassWords {
        let pair = u32::from(inp) << 16 | u32::from(outp);
        if pair != self.pair {
            self.pair = pair;
            let of = |p: u16| bits.get(usize::from(p)).copied().unwrap_or(0);
            self.words = layout.words(of(inp), of(outp));
        }
        self.words
    }
}

/// Classifies one family's keys of a burst, through the verdict cache when there is one;
/// returns how many results came from the cache.
#[inline(always)]
fn classify<C: BurstClassifier>(
    cache: &mut Option<VerdictCache>,
    classifier: &C,
    v: IpVersion,
    keys: &[AclKey],
    results: &mut [u32],
) -> u64 {
    match cache {
        Some(c) => u64::from(c.classify(classifier, v, keys, results).hits),
        None => {
            classifier.classify_burst(v, keys, results);
            0
        }
    }
}

/// The membership pass of a burst: the set-class group of each family's keys whose layout
/// reads it (nothing when the rules name no set class).
#[inline(always)]
fn fill_set_classes(s: &mut Scratch, nf: [usize; 2], acl: &CompiledAcl, members: &MemberTable) {
    for (fam, v) in [(0, IpVersion::V4), (1, IpVersion::V6)] {
        let (src, dst) = acl.reads_sets(v);
        if nf[fam] != 0 && (src || dst) {
            members.fill_keys(v, &mut s.keys[fam][..nf[fam]], src, dst);
        }
    }
}

/// The output port id of a packet from `in_port` with metadata `m`.
#[inline(always)]
fn out_port_of(mode: OutportMode, peer: &[u16], in_port: u16, m: &PacketMeta) -> u16 {
    match mode {
        OutportMode::None => NO_PORT,
        OutportMode::CrossConnect => peer.get(usize::from(in_port)).copied().unwrap_or(NO_PORT),
        OutportMode::ByMetadata | OutportMode::ByRoute => m.out_port,
    }
}

/// The key-building pass of a stateless burst: each IP packet's key goes to its family's
/// list (returned: keys per family); a non-IP packet is decided by `on_non_ip`. `outp`
/// gives a packet's output port id from its input port id and metadata (one closure per
/// [`OutportMode`], so the mode is not tested per packet).
#[inline(always)]
fn stateless_keys<P: PacketBuf>(
    s: &mut Scratch,
    f: &mut Frame<'_, P>,
    n: usize,
    skip_tracked: bool,
    (acl, port_bits): (&CompiledAcl, &[u64]),
    on_non_ip: &mut impl FnMut(&P) -> Decision,
    outp: impl Fn(u16, &mut PacketMeta) -> u16,
) -> [usize; 2] {
    let mut nf = [0usize; 2];
    let mut pairs = PairCache::new();
    for i in 0..n {
        let m = &mut f.meta[i];
        let v = m.ip_version;
        if v == 4 || v == 6 {
            let inp = f.pkts[i].in_port();
            let out = outp(inp, m);
            if skip_tracked && s.tracked[i] {
                f.decisions[i] = Decision::Next(0);
                continue;
            }
            let words = pairs.words(acl.layout, port_bits, inp, out);
            s.push_key(&mut nf, m, words, &acl.protos, i as u16);
        } else {
            f.decisions[i] = on_non_ip(&f.pkts[i]);
        }
    }
    nf
}

impl<C: Classify> AclNode<C> {
    /// Stateless: one pass builds the keys (split by family), one classify call per
    /// family, one pass turns results into decisions.
    #[inline(always)]
    fn process_stateless<P: PacketBuf>(&mut self, f: &mut Frame<'_, P>, n: usize, skip: bool) {
        let AclNode {
            installed,
            members,
            outport,
            peer,
            routes,
            allow_non_ip,
            reply_slot,
            scratch,
            cache,
            log_ring,
            ..
        } = self;
        let mut replies = 0u64;
        let prog = &*installed.0;
        let counters = &*installed.1;
        let members = &**members;
        let bits = members.port_bits();
        let s = &mut **scratch;
        let default = prog.acl.rules.default_action();
        let mut non_ip = 0u64;
        let mut hits = 0u64;
        let mut run = RunCounter::new();
        let mut on_non_ip = |p: &P| {
            non_ip += 1;
            non_ip_decision(*allow_non_ip, default, &mut run, counters, p)
        };
        let acl = &prog.acl;
        // The output-port mode is matched once per burst, not per packet.
        let nf = match *outport {
            OutportMode::None => {
                stateless_keys(s, f, n, skip, (acl, bits), &mut on_non_ip, |_, _| NO_PORT)
            }
            OutportMode::CrossConnect => {
                stateless_keys(s, f, n, skip, (acl, bits), &mut on_non_ip, |inp, _| {
                    peer.get(usize::from(inp)).copied().unwrap_or(NO_PORT)
                })
            }
            OutportMode::ByMetadata => {
                stateless_keys(s, f, n, skip, (acl, bits), &mut on_non_ip, |_, m| {
                    m.out_port
                })
            }
            OutportMode::ByRoute => {
                stateless_keys(s, f, n, skip, (acl, bits), &mut on_non_ip, |_, m| {
                    m.out_port = route(routes, m);
                    m.out_port
                })
            }
        };
        fill_set_classes(s, nf, acl, members);
        if non_ip != 0 {
            f.counters.add_extra(CTR_NON_IP, non_ip);
        }
        for (fam, v) in [(0, IpVersion::V4), (1, IpVersion::V6)] {
            let k = nf[fam];
            if k == 0 {
                continue;
            }
            hits += classify(cache, prog, v, &s.keys[fam][..k], &mut s.res[fam][..k]);
            for t in 0..k {
                let i = usize::from(s.fam_idx[fam][t]);
                let ud = s.res[fam][t];
                let len = f.pkts[i].data().len() as u64;
                let (action, d) = run.judged(counters, ud, len, |u| prog.verdict(u));
                if run.logs {
                    log_packet(log_ring, prog, ud, action, f.pkts[i].in_port(), &f.meta[i]);
                }
                f.decisions[i] = if action == Action::Reject {
                    reject(&mut f.pkts[i], &f.meta[i], reply_slot, &mut replies, d)
                } else {
                    d
                };
            }
        }
        run.flush(counters);
        s.last = LastVector::Stateless { nf, skip };
        f.counters.add_extra(CTR_CLASSIFIED, (nf[0] + nf[1]) as u64);
        if hits != 0 {
            f.counters.add_extra(CTR_CACHE_HITS, hits);
        }
        if replies != 0 {
            f.counters.add_extra(CTR_REJECT_REPLIES, replies);
        }
    }

    /// Stateful: tracked connections pass without classification; `allow-related`
    /// verdicts create connections.
    #[inline(always)]
    fn process_stateful<P: PacketBuf>(&mut self, f: &mut Frame<'_, P>, n: usize, skip: bool) {
        let AclNode {
            installed,
            members,
            epoch,
            outport,
            peer,
            routes,
            ct,
            allow_non_ip,
            reply_slot,
            scratch,
            cache,
            log_ring,
            ..
        } = self;
        let Some(ct) = ct.as_mut() else {
            return;
        };
        let mut replies = 0u64;
        let prog = &*installed.0;
        let counters = &*installed.1;
        let members = &**members;
        let s = &mut **scratch;
        let default = prog.acl.rules.default_action();
        let log_related = prog.acl.any_log_related;
        let mut run = RunCounter::new();

        // 1. Split IP from non-IP packets; replies the lb node before this node translated
        //    back as its tracked connections' pass.
        let mut nip = 0;
        let mut non_ip = 0u64;
        let mut lb_replies = 0u64;
        for i in 0..n {
            let m = &mut f.meta[i];
            if m.ip_version == 4 || m.ip_version == 6 {
                if *outport == OutportMode::ByRoute {
                    m.out_port = route(routes, m);
                }
                if skip && s.tracked[i] {
                    f.decisions[i] = Decision::Next(0);
                    continue;
                }
                if m.flags & PacketMeta::FLAG_LB_REPLY != 0 {
                    f.decisions[i] = Decision::Next(0);
                    lb_replies += 1;
                    continue;
                }
                s.ip_idx[nip] = i as u16;
                s.flows[nip] = FlowKey::from_meta(m);
                nip += 1;
            } else {
                non_ip += 1;
                f.decisions[i] =
                    non_ip_decision(*allow_non_ip, default, &mut run, counters, &f.pkts[i]);
            }
        }
        if non_ip != 0 {
            f.counters.add_extra(CTR_NON_IP, non_ip);
        }

        // 2. Connection table: packets of tracked connections pass.
        let now = crate::cycles::now();
        let gen = *epoch;
        let (mut ct_hits, mut rechecked, mut n_related) = (lb_replies, 0u64, 0u64);
        ct.lookup_batch(&s.flows[..nip], now, &mut s.ct[..nip]);

        // 3. Keys for the rest, per family.
        let mut nf = [0usize; 2];
        let mut pairs = PairCache::new();
        for j in 0..nip {
            let i = usize::from(s.ip_idx[j]);
            let m = &f.meta[i];
            if let Some((h, dir)) = s.ct[j] {
                // Replies pass while the entry lives; requests while the rules that allowed
                // the connection are the current ones (otherwise they are judged again).
                let payload = ct.payload(h).copied().unwrap_or(0);
                if dir == Direction::Reply || ct_entry::is_of(payload, gen) {
                    if m.protocol == PROTO_TCP {
                        ct.update_tcp(h, TcpFlags(m.tcp_flags), dir, now);
                    }
                    if log_related && dir == Direction::Reply {
                        log_related_packet(log_ring, prog, payload, gen, f.pkts[i].in_port(), m);
                    }
                    f.decisions[i] = Decision::Next(0);
                    ct_hits += 1;
                    continue;
                }
                rechecked += 1;
            } else if crate::icmp_error::is_icmp_error(m) {
                // An ICMP error about a tracked connection's packet passes (rare: one
                // lookup of the quoted flow, which neither refreshes nor counts).
                let entry = crate::icmp_error::quoted_flow(f.pkts[i].data(), m)
                    .and_then(|k| ct.peek(&k, now).map(|(.., &p)| p));
                if let Some(payload) = entry {
                    if log_related {
                        log_related_packet(log_ring, prog, payload, gen, f.pkts[i].in_port(), m);
                    }
                    f.decisions[i] = Decision::Next(0);
                    n_related += 1;
                    continue;
                }
            }
            let inp = f.pkts[i].in_port();
            let words = pairs.words(
                prog.acl.layout,
                members.port_bits(),
                inp,
                out_port_of(*outport, peer, inp, m),
            );
            s.push_key(&mut nf, m, words, &prog.acl.protos, j as u16);
        }
        fill_set_classes(s, nf, &prog.acl, members);

        // 4. One classify call per family present; results back in IP order.
        let mut ncls = 0usize;
        let mut hits = 0u64;
        for (fam, v) in [(0, IpVersion::V4), (1, IpVersion::V6)] {
            let k = nf[fam];
            if k == 0 {
                continue;
            }
            hits += classify(cache, prog, v, &s.keys[fam][..k], &mut s.res[fam][..k]);
            for t in 0..k {
                s.cls_idx[ncls] = s.fam_idx[fam][t];
                s.cls_res[ncls] = s.res[fam][t];
                ncls += 1;
            }
        }
        if nf[0] != 0 && nf[1] != 0 {
            // Both families: restore packet order (insertion sort of a mostly sorted list),
            // so that a request creates its connection before its reply in the same burst
            // is judged.
            for a in 1..ncls {
                let (ki, kr) = (s.cls_idx[a], s.cls_res[a]);
                let mut b = a;
                while b > 0 && s.cls_idx[b - 1] > ki {
                    s.cls_idx[b] = s.cls_idx[b - 1];
                    s.cls_res[b] = s.cls_res[b - 1];
                    b -= 1;
                }
                s.cls_idx[b] = ki;
                s.cls_res[b] = kr;
            }
        }
        f.counters.add_extra(CTR_CLASSIFIED, ncls as u64);
        if hits != 0 {
            f.counters.add_extra(CTR_CACHE_HITS, hits);
        }

        // 5. Verdicts, in packet order.
        let mut created = 0u64;
        for c in 0..ncls {
            let j = usize::from(s.cls_idx[c]);
            let ud = s.cls_res[c];
            let i = usize::from(s.ip_idx[j]);
            let len = f.pkts[i].data().len() as u64;
            let (action, mut d) = run.judged(counters, ud, len, |u| prog.verdict(u));
            let m = &f.meta[i];
            if run.logs {
                log_packet(log_ring, prog, ud, action, f.pkts[i].in_port(), m);
            }
            if let Some((h, dir)) = s.ct[j] {
                // A tracked connection judged again under changed rules.
                if matches!(d, Decision::Next(_)) {
                    if let Some(g) = ct.payload_mut(h) {
                        *g = ct_entry::pack(gen, ud);
                    }
                    if m.protocol == PROTO_TCP {
                        ct.update_tcp(h, TcpFlags(m.tcp_flags), dir, now);
                    }
                } else {
                    // At most one per packet; a flow listed twice is removed (and counted)
                    // once.
                    let _ = s.revoke.try_push(s.flows[j]);
                }
            } else if action == Action::AllowRelated {
                match ct.insert(&s.flows[j], now, ct_entry::pack(gen, ud)) {
                    Ok(h) => {
                        created += 1;
                        if m.protocol == PROTO_TCP {
                            ct.update_tcp(h, TcpFlags(m.tcp_flags), Direction::Original, now);
                        }
                    }
                    Err(InsertError::Exists(h)) => {
                        if m.protocol == PROTO_TCP {
                            let dir = ct.key(h).map_or(Direction::Original, |k| {
                                if *k == s.flows[j] {
                                    Direction::Original
                                } else {
                                    Direction::Reply
                                }
                            });
                            ct.update_tcp(h, TcpFlags(m.tcp_flags), dir, now);
                        }
                    }
                    Err(InsertError::Full) => {
                        counters.record_conntrack_full();
                        d = Decision::Drop(DROP_CONNTRACK_FULL);
                    }
                }
            } else if created != 0 && matches!(d, Decision::Drop(_)) {
                // A reply to a connection created earlier in this burst.
                if let Some((h, dir, _)) = ct.lookup(&s.flows[j], now) {
                    if m.protocol == PROTO_TCP {
                        ct.update_tcp(h, TcpFlags(m.tcp_flags), dir, now);
                    }
                    d = Decision::Next(0);
                    ct_hits += 1;
                }
            }
            if action == Action::Reject && matches!(d, Decision::Drop(_)) {
                d = reject(&mut f.pkts[i], &f.meta[i], reply_slot, &mut replies, d);
            }
            f.decisions[i] = d;
        }
        run.flush(counters);
        s.last = LastVector::Stateful { nip, ncls, skip };
        if replies != 0 {
            f.counters.add_extra(CTR_REJECT_REPLIES, replies);
        }
        if rechecked != 0 {
            f.counters.add_extra(CTR_CT_RECHECKED, rechecked);
        }
        if n_related != 0 {
            f.counters.add_extra(CTR_CT_RELATED, n_related);
        }
        if !s.revoke.is_empty() {
            let mut revoked = 0u64;
            for key in s.revoke.drain(..) {
                revoked += u64::from(ct.remove(&key, now).is_some());
            }
            f.counters.add_extra(CTR_CT_REVOKED, revoked);
        }
        ct.age_paced_with(now, crate::conntrack::MAX_PACED_SCAN, |_, _| {});
        if ct_hits != 0 {
            f.counters.add_extra(CTR_CT_HITS, ct_hits);
        }
        if created != 0 {
            f.counters.add_extra(CTR_CT_NEW, created);
        }
    }
}

impl<C: Classify, P: PacketBuf> Node<P> for AclNode<C> {
    fn process(&mut self, mut f: Frame<'_, P>) -> Verdict {
        let n = f.len();
        if n == 0 {
            return Verdict::PerPacket;
        }
        if self.maybe_adopt() {
            f.counters.add_extra(CTR_UPDATES, 1);
        }
        // Packets of connections the `lb` node tracks pass without classification.
        let mut skip = false;
        let mut rechecks = 0;
        if let Some(slot) = self.lb_flows {
            if let Some(fl) = f.shared.get_mut::<crate::lb::LbFlows>(slot) {
                let gen = self.epoch;
                let tracked =
                    fl.look_up_tracked(f.pkts, f.meta, &mut self.scratch.tracked[..n], gen);
                if tracked != 0 {
                    f.counters.add_extra(CTR_CT_HITS, tracked as u64);
                    skip = true;
                }
                rechecks = fl.rechecks();
                // All tracked (the steady state of established traffic) and nothing else
                // to do per packet (no own table to age, no route to set): one verdict.
                if tracked == n && self.ct.is_none() && self.outport != OutportMode::ByRoute {
                    self.scratch.last = LastVector::AllTracked;
                    return Verdict::All(Decision::Next(0));
                }
            }
        }
        if self.ct.is_some() {
            self.process_stateful(&mut f, n, skip);
        } else {
            self.process_stateless(&mut f, n, skip);
        }
        // The `lb` node's connections judged again under changed rules keep or lose their
        // pass by the verdicts just made.
        if rechecks != 0 {
            if let Some(fl) = self
                .lb_flows
                .and_then(|slot| f.shared.get_mut::<crate::lb::LbFlows>(slot))
            {
                f.counters.add_extra(CTR_CT_RECHECKED, rechecks as u64);
                let revoked = fl.settle_rechecks(f.decisions);
                if revoked != 0 {
                    f.counters.add_extra(CTR_CT_REVOKED, revoked);
                }
            }
        }
        // The graph moves the vector whole when all decisions agree.
        Verdict::PerPacket
    }

    fn serve_ct(&mut self, _shared: &mut SharedState) -> bool {
        if let (true, Some(ct)) = (self.sample.wants(), &self.ct) {
            serve_acl(
                &mut self.sample,
                ct,
                crate::cycles::now(),
                self.ticks_per_sec,
            );
        }
        self.sample.wants()
    }

    fn ct_sampler(&self) -> Option<CtSampler> {
        self.ct.as_ref().map(|_| self.sample.handle())
    }

    fn trace_note(&self, index: usize, meta: &PacketMeta) -> Option<TraceNote> {
        Some(self.note(index, meta))
    }
}

/// The trace note of classifier result `ud` under `prog`: the rule it names, or the
/// default.
fn rule_note<C>(prog: &super::publish::AclProgram<C>, ud: u32, again: bool) -> TraceNote {
    let again = if again {
        " (a tracked connection judged again under changed rules)"
    } else {
        ""
    };
    let rules = &prog.acl.rules;
    match ud.checked_sub(1).and_then(|r| rules.acls().get(r as usize)) {
        Some(a) => TraceNote {
            text: format!(
                "rule {} (priority {}, {}){again}",
                a.name,
                a.priority,
                a.action.as_str()
            ),
            rule: Some(a.name.clone()),
            service: None,
        },
        None => TraceNote {
            text: format!(
                "no rule matched: default {}{again}",
                rules.default_action().as_str()
            ),
            ..TraceNote::default()
        },
    }
}

impl<C: Classify> AclNode<C> {
    /// What decided packet `i` (metadata `m`) of the last vector, read back from the
    /// scratch arrays it left (the tracer calls this for traced packets only).
    fn note(&self, i: usize, m: &PacketMeta) -> TraceNote {
        let s = &*self.scratch;
        let prog = &*self.installed.0;
        let plain = |text: &str| TraceNote {
            text: text.into(),
            ..TraceNote::default()
        };
        let lb_tracked = "a connection the lb node tracks (not classified)";
        if m.ip_version != 4 && m.ip_version != 6 {
            return plain("not IP (not classified)");
        }
        match s.last {
            LastVector::None => plain("not judged"),
            LastVector::AllTracked => plain(lb_tracked),
            LastVector::Stateless { nf, skip } => {
                if skip && s.tracked.get(i) == Some(&true) {
                    return plain(lb_tracked);
                }
                for (fam, &k) in nf.iter().enumerate() {
                    if let Some(t) = s.fam_idx[fam][..k]
                        .iter()
                        .position(|&x| usize::from(x) == i)
                    {
                        return rule_note(prog, s.res[fam][t], false);
                    }
                }
                plain("not classified")
            }
            LastVector::Stateful { nip, ncls, skip } => {
                if skip && s.tracked.get(i) == Some(&true) {
                    return plain(lb_tracked);
                }
                if m.flags & PacketMeta::FLAG_LB_REPLY != 0 {
                    return plain("a reply the lb node translated (its connection passes)");
                }
                let Some(j) = (0..nip).find(|&j| usize::from(s.ip_idx[j]) == i) else {
                    return plain("not classified");
                };
                if let Some(c) = (0..ncls).find(|&c| usize::from(s.cls_idx[c]) == j) {
                    return rule_note(prog, s.cls_res[c], s.ct[j].is_some());
                }
                match s.ct[j] {
                    Some((_, Direction::Reply)) => {
                        plain("a reply of an established connection (conntrack)")
                    }
                    Some(_) => plain("an established connection (conntrack)"),
                    None => plain("related to an established connection (an ICMP error about it)"),
                }
            }
        }
    }
}

/// Registers the `acl` kind with classifier `C`, its hubs in `hubs`, and the tick rate of
/// [`crate::cycles::now`] from `ticks_per_sec` (called at each build).
pub fn register<P, C>(
    r: &mut Registry<P>,
    hubs: &'static HubRegistry<C>,
    ticks_per_sec: fn() -> u64,
) -> Result<(), crate::graph::RegistryError>
where
    P: PacketBuf + 'static,
    C: Classify,
{
    r.register::<AclParams, _>("acl", AclNode::<C>::INFO, move |p, ctx| {
        Ok(NodeImpl::Custom(Box::new(AclNode::new(
            &p,
            ctx,
            hubs,
            ticks_per_sec(),
        )?)))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::acl::key::{CompileError, CompiledAcl, LinearClassifier};
    use crate::graph::{Graph, GraphSpec, PortInfo};
    use crate::nodes::{parse_packet, ParseConfig};
    use crate::source::{build_frame, L4Proto, SourceSpec};
    use crate::stats::NodeCounters;
    use crate::TestBuf;
    use arrayvec::ArrayVec;
    use std::net::IpAddr;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

    static HUBS: HubRegistry<LinearClassifier> = HubRegistry::new();

    fn ports3() -> Vec<PortInfo> {
        vec![
            PortInfo::new(0, "web0", "web"),
            PortInfo::new(1, "ba0", "ba"),
            PortInfo::new(2, "db0", "db"),
        ]
    }

    fn tcp(src: &str, dst: &str, sport: u16, dport: u16, port: u16) -> TestBuf {
        let spec = SourceSpec {
            protocol: L4Proto::Tcp,
            src_ip: src.parse::<IpAddr>().unwrap(),
            dst_ip: dst.parse::<IpAddr>().unwrap(),
            src_port: sport,
            dst_port: dport,
            ..SourceSpec::default()
        };
        TestBuf::new(build_frame(&spec, 0), port)
    }

    fn graph(node: &str, stateful: usize) -> Graph<TestBuf> {
        graph_with(node, stateful, "")
    }

    /// [`graph`] with `extra` appended to the node's params (e.g. `, verdict_cache = 0`).
    fn graph_with(node: &str, stateful: usize, extra: &str) -> Graph<TestBuf> {
        graph_of(
            node,
            &format!("rules = \"../config/acl-three-tier.toml\", stateful = {stateful}{extra}"),
        )
    }

    /// `parse -> acl -> forward` over [`ports3`], the `acl` node named `node` with `params`
    /// and routes to the three tiers' ports.
    fn graph_of(node: &str, params: &str) -> Graph<TestBuf> {
        let mut r = Registry::<TestBuf>::with_builtins();
        register(&mut r, &HUBS, || 1_000_000_000).unwrap();
        let spec = GraphSpec::from_toml(&format!(
            r#"
            [[nodes]]
            name = "parse"
            kind = "parse"
            [[nodes]]
            name = "{node}"
            kind = "acl"
            params = {{ {params}, outport = "by-route", routes = [["10.0.1.0/24", "web0"], ["10.0.2.0/24", "ba0"], ["10.0.3.0/24", "db0"]] }}
            [[nodes]]
            name = "fwd"
            kind = "forward"
            params = {{ mode = "by-metadata" }}
            [[edges]]
            from = "parse"
            to = "{node}"
            [[edges]]
            from = "{node}"
            to = "fwd"
            "#
        ))
        .unwrap();
        Graph::build(&spec, &r, &ports3()).unwrap_or_else(|e| panic!("{e:?}"))
    }

    /// Runs one burst; returns (port id each packet left by, or None if dropped).
    fn run(g: &mut Graph<TestBuf>, pkts: Vec<TestBuf>) -> Vec<Option<u16>> {
        let mut tx = g.new_tx_vectors();
        let mut rx: ArrayVec<TestBuf, 32> = ArrayVec::new();
        let tags: Vec<Vec<u8>> = pkts.iter().map(|p| p.data().to_vec()).collect();
        for p in pkts {
            rx.push(p);
        }
        g.process(&mut rx, &mut tx);
        let mut out = vec![None; tags.len()];
        for (port, v) in tx.iter_mut() {
            for p in v.drain(..) {
                let i = tags.iter().position(|t| t.as_slice() == p.data()).unwrap();
                out[i] = Some(port);
            }
        }
        out
    }

    /// The inline `acl` of the logging tests: a metered logged allow-related, an unnamed
    /// logged drop, a quiet allow; default drop.
    const LOGGED_ACL: &str = r#"acl = { default = "drop", meters = { m1 = { rate = 0, burst = 3 } }, rules = [ { name = "web-to-ba", direction = "to-lport", priority = 100, match = "ip4.src == 10.0.1.0/24 && tcp.dst == 8080", action = "allow-related", log = { name = "web", severity = "warning", meter = "m1" } }, { name = "to-db", direction = "to-lport", priority = 90, match = "tcp.dst == 5432", action = "drop", log = {} }, { name = "ssh", direction = "to-lport", priority = 80, match = "tcp.dst == 22", action = "allow" } ] }"#;

    fn drain_lines(name: &str, logs: &mut crate::acl::log::HubLogs) -> Vec<String> {
        let hub = HUBS.get(name).unwrap();
        let mut lines = Vec::new();
        logs.poll(
            &[(name.to_string(), hub)],
            0,
            |node, _, l| {
                assert_eq!(node, name);
                lines.push(l.to_string())
            },
            |r| panic!("no refusal expected: {r}"),
        );
        lines
    }

    #[test]
    fn logged_rules_queue_records_that_the_drain_meters_into_lines() {
        use crate::acl::log::{HubLogs, LogCounts, DEFAULT_LIMIT};
        let mut g = graph_of("acl-log", &format!("{LOGGED_ACL}, stateful = 1024"));
        let (web, ba, db) = ("10.0.1.10", "10.0.2.20", "10.0.3.30");
        let mut pkts: Vec<TestBuf> = (0..10).map(|k| tcp(web, ba, 40000 + k, 8080, 0)).collect();
        pkts.extend((0..4).map(|k| tcp(ba, db, 41000 + k, 5432, 1)));
        pkts.extend((0..5).map(|k| tcp(web, ba, 42000 + k, 22, 0)));
        let out = run(&mut g, pkts);
        assert_eq!(out.iter().filter(|o| o.is_some()).count(), 15);
        // Replies and the requests of established connections pass by the connection
        // table: not judged by an ACL flow, not logged.
        let mut again: Vec<TestBuf> = (0..10).map(|k| tcp(ba, web, 8080, 40000 + k, 1)).collect();
        again.extend((0..10).map(|k| tcp(web, ba, 40000 + k, 8080, 0)));
        assert!(run(&mut g, again).iter().all(Option::is_some));
        let mut logs = HubLogs::new(DEFAULT_LIMIT);
        let lines = drain_lines("acl-log", &mut logs);
        let named: Vec<&String> = lines
            .iter()
            .filter(|l| l.starts_with("name=\"web\""))
            .collect();
        assert_eq!(named.len(), 3, "meter m1: burst 3, rate 0: {lines:?}");
        assert_eq!(
            named[0],
            "name=\"web\", verdict=allow, severity=warning, direction=to-lport, acl=web-to-ba: tcp,nw_src=10.0.1.10,nw_dst=10.0.2.20,nw_ttl=64,tp_src=40000,tp_dst=8080,tcp_flags=0x18"
        );
        let unnamed: Vec<&String> = lines
            .iter()
            .filter(|l| l.starts_with("name=<unnamed>"))
            .collect();
        assert_eq!(unnamed.len(), 4, "the default limit lets all 4 pass");
        assert!(unnamed[3].starts_with("name=<unnamed>, verdict=drop, severity=info, direction=to-lport, acl=to-db: tcp,nw_src=10.0.2.20,nw_dst=10.0.3.30,"));
        assert!(unnamed[3].contains("tp_src=41003,tp_dst=5432"));
        assert!(
            !lines.iter().any(|l| l.contains("acl=ssh")),
            "a rule without log writes nothing"
        );
        assert_eq!(lines.len(), 7);
        assert_eq!(
            logs.counts(),
            vec![(
                "acl-log".to_string(),
                LogCounts {
                    logged: 7,
                    rate_limited: 7,
                    ring_dropped: 0,
                    stale: 0
                }
            )]
        );
        // Nothing new: nothing more.
        assert!(drain_lines("acl-log", &mut logs).is_empty());
    }

    #[test]
    fn log_related_logs_the_replies_of_the_connections_its_acl_admitted() {
        use crate::acl::log::{HubLogs, RateLimit};
        let acl = r#"acl = { default = "drop", rules = [ { name = "web-to-ba", direction = "to-lport", priority = 100, match = "tcp.dst == 8080", action = "allow-related", log = { name = "web", related = true } }, { name = "ssh", direction = "to-lport", priority = 90, match = "tcp.dst == 22", action = "allow-related", log = { name = "ssh" } } ] }"#;
        let mut g = graph_of("acl-log-related", &format!("{acl}, stateful = 1024"));
        let (web, ba) = ("10.0.1.10", "10.0.2.20");
        let mut first: Vec<TestBuf> = (0..3).map(|k| tcp(web, ba, 40000 + k, 8080, 0)).collect();
        first.extend((0..2).map(|k| tcp(web, ba, 41000 + k, 22, 0)));
        assert!(run(&mut g, first).iter().all(Option::is_some));
        // The replies of both, and the requests again (established: passed by the table).
        let mut second: Vec<TestBuf> = (0..3).map(|k| tcp(ba, web, 8080, 40000 + k, 1)).collect();
        second.extend((0..2).map(|k| tcp(ba, web, 22, 41000 + k, 1)));
        second.extend((0..3).map(|k| tcp(web, ba, 40000 + k, 8080, 0)));
        assert!(run(&mut g, second).iter().all(Option::is_some));
        let snap = g.snapshot();
        assert_eq!(snap.node("acl-log-related").unwrap().counter("ct-hits"), 8);
        let mut logs = HubLogs::new(RateLimit {
            rate: 0,
            burst: 1000,
        });
        let lines = drain_lines("acl-log-related", &mut logs);
        let of = |name: &str| -> Vec<&String> {
            lines
                .iter()
                .filter(|l| l.starts_with(&format!("name=\"{name}\"")))
                .collect()
        };
        assert_eq!(
            of("ssh").len(),
            2,
            "without related: the requests only: {lines:?}"
        );
        let web_lines = of("web");
        assert_eq!(web_lines.len(), 6, "3 requests, then 3 replies: {lines:?}");
        assert!(web_lines[3].starts_with(
            "name=\"web\", verdict=allow, severity=info, direction=to-lport, acl=web-to-ba: tcp,nw_src=10.0.2.20,nw_dst=10.0.1.10,nw_ttl=64,tp_src=8080,tp_dst=40000"
        ), "{}", web_lines[3]);
        assert_eq!(lines.len(), 8);
    }

    #[test]
    fn an_absent_meter_is_reported_once_and_logs_with_the_default_limit() {
        use crate::acl::log::{HubLogs, RateLimit};
        let acl = LOGGED_ACL.replace("meter = \"m1\"", "meter = \"nope\"");
        let mut g = graph_of("acl-log-nometer", &acl);
        let hub = HUBS.get("acl-log-nometer").unwrap();
        let mut logs = HubLogs::new(RateLimit { rate: 0, burst: 2 });
        let (mut lines, mut refusals) = (0, Vec::new());
        for _ in 0..2 {
            let pkts = (0..4)
                .map(|k| tcp("10.0.1.10", "10.0.2.20", 40000 + k, 8080, 0))
                .collect();
            assert!(run(&mut g, pkts).iter().all(Option::is_some));
            logs.poll(
                &[("acl-log-nometer".to_string(), hub.clone())],
                0,
                |_, _, _| lines += 1,
                |r| refusals.push(r.to_string()),
            );
        }
        assert_eq!(
            refusals,
            ["acl_log: acl-log-nometer: acl web-to-ba: meter 'nope' does not exist: logging with the default limit (0 lines/s, burst 2)"]
        );
        assert_eq!(lines, 2, "the default bucket: 2 of 8");
        assert_eq!(logs.counts()[0].1.rate_limited, 6);
    }

    #[test]
    fn packets_answered_by_the_verdict_cache_are_logged_too() {
        use crate::acl::log::{HubLogs, RateLimit};
        let mut g = graph_of("acl-log-cached", LOGGED_ACL);
        let db = "10.0.3.30";
        let burst = || {
            (0..4)
                .map(|k| tcp("10.0.2.20", db, 41000 + k, 5432, 1))
                .collect()
        };
        for _ in 0..3 {
            assert!(run(&mut g, burst()).iter().all(Option::is_none));
        }
        let snap = g.snapshot();
        assert!(
            snap.node("acl-log-cached")
                .unwrap()
                .counter("verdict-cache-hits")
                >= 8
        );
        let mut logs = HubLogs::new(RateLimit {
            rate: 0,
            burst: 1000,
        });
        assert_eq!(drain_lines("acl-log-cached", &mut logs).len(), 12);
    }

    #[test]
    fn three_tier_stateful() {
        let mut g = graph("acl-3t", 1024);
        let hub = HUBS.get("acl-3t").expect("hub lives while the graph does");
        let (web, ba, db) = ("10.0.1.10", "10.0.2.20", "10.0.3.30");
        // Requests.
        let out = run(
            &mut g,
            vec![
                tcp(web, ba, 40000, 8080, 0),      // allowed, out ba0
                tcp(ba, db, 40001, 5432, 1),       // allowed, out db0
                tcp(web, db, 40002, 5432, 0),      // denied (tiers-default-drop)
                tcp(db, ba, 5432, 40009, 2),       // unrelated inbound: denied
                tcp(web, "8.8.8.8", 40003, 53, 0), // no tier port: the default (drop)
            ],
        );
        assert_eq!(out, vec![Some(1), Some(2), None, None, None]);
        // Replies pass by state, not by rule (no ACL allows them).
        let out = run(
            &mut g,
            vec![
                tcp(ba, web, 8080, 40000, 1),
                tcp(db, ba, 5432, 40001, 2),
                tcp(db, web, 5432, 40002, 2),
            ],
        );
        assert_eq!(out, vec![Some(0), Some(1), None]);
        let snap = g.snapshot();
        let n = snap.node("acl-3t").unwrap();
        // web -> db, db -> ba (new), db -> web (no connection: a new one, dropped by rule).
        assert_eq!(n.drops_for("acl-deny"), 3);
        assert_eq!(n.drops_for("default-deny"), 1);
        let c = hub.counters();
        let by = |name: &str| c.acls.iter().find(|a| a.name == name).unwrap().packets;
        assert_eq!(
            (by("web-to-ba"), by("ba-to-db"), by("tiers-default-drop")),
            (1, 1, 3)
        );
        assert_eq!(c.default_rule.packets, 1);
        assert_eq!(c.denials.rule_drop, 3);
    }

    /// A trace names what decided each packet in the acl node: the rule that matched (by
    /// name, with its priority and action), the default, or the connection a reply belongs
    /// to (stateful), in both of the node's paths.
    #[test]
    fn trace_names_the_rule_that_decided() {
        for stateful in [0, 1024] {
            let node = format!("acl-trace-{stateful}");
            let mut g = graph(&node, stateful);
            let (web, ba, db) = ("10.0.1.10", "10.0.2.20", "10.0.3.30");
            let trace = g.tracer();
            trace.arm(3);
            run(
                &mut g,
                vec![
                    tcp(web, ba, 40000, 8080, 0),
                    tcp(web, db, 40002, 5432, 0),
                    tcp(web, "8.8.8.8", 40003, 53, 0),
                ],
            );
            let acl_step = |t: &crate::trace::PacketTrace| {
                t.steps.iter().find(|s| s.node == node).cloned().unwrap()
            };
            let t = trace.take();
            assert_eq!(t.len(), 3);
            let (allowed, denied, default) = (acl_step(&t[0]), acl_step(&t[1]), acl_step(&t[2]));
            assert_eq!(allowed.rule.as_deref(), Some("web-to-ba"));
            assert_eq!(
                allowed.decided_by.as_deref(),
                Some("rule web-to-ba (priority 1002, allow-related)"),
                "{stateful}"
            );
            assert_eq!(denied.rule.as_deref(), Some("tiers-default-drop"));
            assert_eq!(denied.outcome, "drop: acl-deny");
            assert_eq!(default.rule, None);
            assert_eq!(
                default.decided_by.as_deref(),
                Some("no rule matched: default drop")
            );
            let text = crate::trace::render_trace(&t);
            assert!(
                text.contains("        by rule web-to-ba (priority"),
                "{text}"
            );
            if stateful > 0 {
                // The reply passes by its connection, not by a rule.
                trace.arm(1);
                run(&mut g, vec![tcp(ba, web, 8080, 40000, 1)]);
                let r = acl_step(&trace.take()[0]);
                assert_eq!(r.rule, None);
                assert_eq!(
                    r.decided_by.as_deref(),
                    Some("a reply of an established connection (conntrack)")
                );
            }
        }
    }

    fn reject_graph(node: &str, replies: bool, stateful: usize) -> Graph<TestBuf> {
        let mut r = Registry::<TestBuf>::with_builtins();
        register(&mut r, &HUBS, || 1_000_000_000).unwrap();
        let spec = GraphSpec::from_toml(&format!(
            r#"
            [[nodes]]
            name = "parse"
            kind = "parse"
            [[nodes]]
            name = "{node}"
            kind = "acl"
            [nodes.params]
            stateful = {stateful}
            reject_replies = {replies}
            outport = "cross-connect"
            pairs = [["web0", "ba0"]]
            [nodes.params.acl]
            default = "allow"
            [[nodes.params.acl.rules]]
            name = "no-telnet"
            direction = "from-lport"
            priority = 10
            match = "inport == \"web0\" && (tcp.dst == 23 || udp.dst == 69 || sctp.dst == 38412)"
            action = "reject"
            [[nodes]]
            name = "fwd"
            kind = "forward"
            params = {{ mode = "cross-connect", pairs = [["web0", "ba0"]] }}
            [[edges]]
            from = "parse"
            to = "{node}"
            [[edges]]
            from = "{node}"
            to = "fwd"
            "#
        ))
        .unwrap();
        Graph::build(&spec, &r, &ports3()).unwrap_or_else(|e| panic!("{e:?}"))
    }

    /// Runs one burst; returns each packet that left, with its port.
    fn run_out(g: &mut Graph<TestBuf>, pkts: Vec<TestBuf>) -> Vec<(u16, Vec<u8>)> {
        let mut tx = g.new_tx_vectors();
        let mut rx: ArrayVec<TestBuf, 32> = ArrayVec::new();
        for p in pkts {
            rx.push(p);
        }
        g.process(&mut rx, &mut tx);
        let mut out = Vec::new();
        for (port, v) in tx.iter_mut() {
            for p in v.drain(..) {
                out.push((port, p.data().to_vec()));
            }
        }
        out
    }

    #[test]
    fn reject_answers_with_rst_or_icmp_out_of_the_input_port() {
        for stateful in [0, 64] {
            let mut g = reject_graph(&format!("acl-reject-{stateful}"), true, stateful);
            let (web, ba) = ("10.0.1.10", "10.0.2.20");
            let udp = {
                let spec = SourceSpec {
                    protocol: L4Proto::Udp,
                    src_ip: web.parse::<IpAddr>().unwrap(),
                    dst_ip: ba.parse::<IpAddr>().unwrap(),
                    src_port: 40001,
                    dst_port: 69,
                    ..SourceSpec::default()
                };
                TestBuf::new(build_frame(&spec, 0), 0)
            };
            // SCTP INITs (tag 0, initiate tag 0x5ca1ab1e) to N2's port and to another.
            let sctp_init = |dport: u16| {
                let mut f = tcp(web, ba, 40003, 1, 0).data()[..34].to_vec();
                f[23] = 132;
                let mut l4 = vec![0x9c, 0x43];
                l4.extend_from_slice(&dport.to_be_bytes());
                l4.extend_from_slice(&[0; 8]); // tag 0, checksum
                l4.extend_from_slice(&[1, 0, 0, 20, 0x5c, 0xa1, 0xab, 0x1e]);
                l4.extend_from_slice(&[0, 1, 0, 0, 0, 10, 0, 10, 0, 0, 0, 1]);
                f[16..18].copy_from_slice(&((20 + l4.len()) as u16).to_be_bytes());
                f[24..26].fill(0);
                let c =
                    !crate::wire::checksum::fold(crate::wire::checksum::sum_bytes(0, &f[14..34]));
                f[24..26].copy_from_slice(&c.to_be_bytes());
                f.extend_from_slice(&l4);
                TestBuf::new(f, 0)
            };
            let out = run_out(
                &mut g,
                vec![
                    tcp(web, ba, 40000, 23, 0),
                    udp,
                    tcp(web, ba, 40002, 80, 0),
                    sctp_init(38412),
                    sctp_init(38413),
                ],
            );
            assert_eq!(out.len(), 5, "three answers and two forwarded packets");
            let mut seen = Vec::new();
            for (port, bytes) in &out {
                let mut m = PacketMeta::default();
                parse_packet(bytes, &ParseConfig::default(), &mut m).unwrap();
                let (src, dst) = (
                    m.src_ip().unwrap().to_string(),
                    m.dst_ip().unwrap().to_string(),
                );
                match (m.protocol, m.dst_port) {
                    (6, 80) => {
                        assert_eq!((*port, src.as_str()), (1, web), "allowed: to ba0");
                        seen.push("fwd");
                    }
                    (6, _) => {
                        // A RST back to the client, from the server's address and port.
                        assert_eq!(*port, 0, "RST leaves by the input port");
                        assert_eq!((src.as_str(), dst.as_str()), (ba, web));
                        assert_eq!((m.src_port, m.dst_port), (23, 40000));
                        assert_eq!(m.tcp_flags & 0x04, 0x04, "RST");
                        seen.push("rst");
                    }
                    (1, _) => {
                        assert_eq!(*port, 0);
                        assert_eq!((src.as_str(), dst.as_str()), (ba, web));
                        // UDP: port unreachable, as ovn-controller answers.
                        assert_eq!((m.icmp_type, m.icmp_code), (3, 3));
                        seen.push("icmp");
                    }
                    (132, 38413) => {
                        assert_eq!(*port, 1, "another SCTP port: forwarded");
                        seen.push("sctp-fwd");
                    }
                    (132, _) => {
                        // An ABORT back, with the INIT's initiate tag and the T bit clear.
                        assert_eq!(*port, 0);
                        assert_eq!((src.as_str(), dst.as_str()), (ba, web));
                        assert_eq!((m.src_port, m.dst_port), (38412, 40003));
                        let l4 = usize::from(m.l4_offset);
                        assert_eq!(bytes.len(), l4 + 16);
                        assert_eq!(&bytes[l4 + 4..l4 + 8], &[0x5c, 0xa1, 0xab, 0x1e]);
                        assert_eq!(&bytes[l4 + 12..l4 + 16], &[6, 0, 0, 4]);
                        let mut zeroed = bytes[l4..].to_vec();
                        zeroed[8..12].fill(0);
                        assert_eq!(
                            &bytes[l4 + 8..l4 + 12],
                            &crate::wire::crc32c::sctp_checksum_bytes(&zeroed)
                        );
                        seen.push("sctp-abort");
                    }
                    other => panic!("unexpected packet {other:?}"),
                }
            }
            seen.sort();
            assert_eq!(seen, ["fwd", "icmp", "rst", "sctp-abort", "sctp-fwd"]);
            let n = g.snapshot();
            let n = n.node(&format!("acl-reject-{stateful}")).unwrap();
            assert_eq!(
                n.counters
                    .iter()
                    .find(|c| c.name == "reject-replies")
                    .unwrap()
                    .count,
                3
            );
            let hub = HUBS.get(&format!("acl-reject-{stateful}")).unwrap();
            assert_eq!(hub.counters().denials.rule_reject, 3);
        }
        // Replies off: rejected packets are dropped and counted.
        let mut g = reject_graph("acl-reject-off", false, 0);
        let out = run_out(&mut g, vec![tcp("10.0.1.10", "10.0.2.20", 40000, 23, 0)]);
        assert!(out.is_empty());
        assert_eq!(
            g.snapshot()
                .node("acl-reject-off")
                .unwrap()
                .drops_for("acl-reject"),
            1
        );
    }

    #[test]
    fn stateless_allow_related_is_allow_and_replies_are_judged() {
        let mut g = graph("acl-3t-stateless", 0);
        let out = run(
            &mut g,
            vec![
                tcp("10.0.1.10", "10.0.2.20", 40000, 8080, 0),
                tcp("10.0.2.20", "10.0.1.10", 8080, 40000, 1),
            ],
        );
        assert_eq!(out, vec![Some(1), None]);
    }

    #[test]
    fn verdict_cache_answers_new_connections_of_known_flows_alike() {
        let (web, ba, db) = ("10.0.1.10", "10.0.2.20", "10.0.3.30");
        // Allowed twice, denied by a rule, denied by default; `sport` varies per burst
        // (new connections): no rule of the three-tier set reads the source port.
        let burst = |sport: u16| {
            vec![
                tcp(web, ba, sport, 8080, 0),
                tcp(ba, db, sport, 5432, 1),
                tcp(web, db, sport, 5432, 0),
                tcp(web, "8.8.8.8", sport, 53, 0),
            ]
        };
        let want = vec![Some(1), Some(2), None, None];
        for (name, extra, hits) in [
            ("acl-3t-cached", "", 8),
            ("acl-3t-uncached", ", verdict_cache = 0", 0),
        ] {
            let mut g = graph_with(name, 0, extra);
            for sport in [40000, 40001, 40002] {
                assert_eq!(run(&mut g, burst(sport)), want, "{name}, sport {sport}");
            }
            let snap = g.snapshot();
            let n = snap.node(name).unwrap();
            assert_eq!(n.counter("classified"), 12, "{name}");
            // The first burst fills the cache; the other two are answered from it.
            assert_eq!(n.counter("verdict-cache-hits"), hits, "{name}");
            assert_eq!(n.drops_for("acl-deny"), 3, "{name}");
            assert_eq!(n.drops_for("default-deny"), 3, "{name}");
        }
    }

    /// The three-tier example's rules.
    fn three_tier() -> AclConfig {
        let text = std::fs::read_to_string("../config/acl-three-tier.toml").unwrap();
        toml::from_str::<AclFile>(&text).unwrap().acl
    }

    /// The three-tier rules without the ACL named `drop`.
    fn three_tier_without(drop: &str) -> AclConfig {
        let mut cfg = three_tier();
        let before = cfg.rules.len();
        cfg.rules.retain(|r| r.name.as_deref() != Some(drop));
        assert_eq!(cfg.rules.len(), before - 1, "no rule named {drop}");
        cfg
    }

    #[test]
    fn added_acls_are_layered_first_then_built_whole() {
        let node = "acl-3t-layered";
        let mut g = graph(node, 0);
        let hub = HUBS.get(node).unwrap();
        let (web, ba) = ("10.0.1.10", "10.0.2.20");
        let publish = |cfg: &AclConfig| hub.publish_config(cfg, std::time::Duration::ZERO).unwrap();
        let req = || vec![tcp(web, ba, 40000, 8080, 0)];
        let removed = publish(&three_tier_without("web-to-ba"));
        assert!(removed.layered.is_none(), "a removal rebuilds whole");
        assert_eq!(run(&mut g, req()), vec![None]);
        // The ACL back: enforced by an overlay of its one rule, then the whole classifier.
        let added = publish(&three_tier());
        let first = added
            .layered
            .as_deref()
            .expect("an added ACL is layered first");
        assert_eq!(first.generation + 1, added.generation);
        assert!(
            first.classifier.ends_with("+ overlay of 1 rules"),
            "{}",
            first.classifier
        );
        assert!(
            !added.classifier.contains("overlay"),
            "{}",
            added.classifier
        );
        assert!(hub.current().overlay.is_none());
        assert_eq!(hub.current().generation, added.generation);
        assert_eq!(run(&mut g, req()), vec![Some(1)]);
        let snap = hub.counters();
        let rule = snap
            .acls
            .iter()
            .find(|r| r.name == "web-to-ba")
            .expect("the rule's counters");
        assert_eq!(rule.packets, 1, "counted under the whole program");
    }

    #[test]
    fn changed_rules_recheck_established_connections() {
        let node = "acl-3t-recheck";
        let mut g = graph(node, 1024);
        let hub = HUBS.get(node).unwrap();
        let (web, ba, db) = ("10.0.1.10", "10.0.2.20", "10.0.3.30");
        let c = |g: &Graph<TestBuf>, name: &str| g.snapshot().node(node).unwrap().counter(name);
        let publish = |cfg: &AclConfig| {
            hub.publish_config(cfg, std::time::Duration::ZERO).unwrap();
        };
        // Two connections, both allowed; their replies pass by state.
        let req = || vec![tcp(web, ba, 40000, 8080, 0), tcp(ba, db, 40001, 5432, 1)];
        let rep = || vec![tcp(ba, web, 8080, 40000, 1), tcp(db, ba, 5432, 40001, 2)];
        assert_eq!(run(&mut g, req()), vec![Some(1), Some(2)]);
        assert_eq!(run(&mut g, rep()), vec![Some(0), Some(1)]);
        assert_eq!((c(&g, "ct-new"), c(&g, "ct-hits")), (2, 2));

        // web -> BA is no longer allowed. Replies still pass while the entries live; the
        // next request of each connection is judged again: web -> BA's is denied (its
        // connection ends, so its reply is now judged, and denied, as a new packet),
        // BA -> DB's passes and goes on untouched.
        publish(&three_tier_without("web-to-ba"));
        assert_eq!(run(&mut g, rep()), vec![Some(0), Some(1)]);
        assert_eq!((c(&g, "ct-rechecked"), c(&g, "ct-revoked")), (0, 0));
        assert_eq!(run(&mut g, req()), vec![None, Some(2)]);
        assert_eq!((c(&g, "ct-rechecked"), c(&g, "ct-revoked")), (2, 1));
        assert_eq!(run(&mut g, rep()), vec![None, Some(1)]);
        assert_eq!(run(&mut g, req()), vec![None, Some(2)]);
        // Only the denied packets were classified again; BA -> DB was rechecked once.
        assert_eq!((c(&g, "ct-rechecked"), c(&g, "ct-revoked")), (2, 1));
        assert_eq!(c(&g, "ct-hits"), 2 + 2 + 1 + 1);
        let snap = g.snapshot();
        let n = snap.node(node).unwrap();
        assert_eq!(n.drops_for("default-deny") + n.drops_for("acl-deny"), 3);

        // A change that still allows BA -> DB (web -> BA back): one recheck, no revocation,
        // and web -> BA is a new connection again.
        publish(&three_tier());
        assert_eq!(run(&mut g, req()), vec![Some(1), Some(2)]);
        assert_eq!((c(&g, "ct-rechecked"), c(&g, "ct-revoked")), (3, 1));
        assert_eq!(c(&g, "ct-new"), 3);
        assert_eq!(run(&mut g, rep()), vec![Some(0), Some(1)]);
        assert_eq!(run(&mut g, req()), vec![Some(1), Some(2)]);
        assert_eq!(c(&g, "ct-rechecked"), 3);
    }

    /// An IPv4 frame carrying the ICMP message `icmp` (its checksum field is filled in)
    /// from `src` to `dst`, with Ethernet header `eth`, arriving on `port`.
    fn icmp4(eth: &[u8], src: [u8; 4], dst: [u8; 4], mut icmp: Vec<u8>, port: u16) -> TestBuf {
        use crate::wire::checksum::{internet_checksum, ipv4_header_checksum};
        let mut ip = vec![0x45, 0, 0, 0, 0, 0, 0, 0, 64, 1, 0, 0];
        ip[2..4].copy_from_slice(&(20 + icmp.len() as u16).to_be_bytes());
        ip.extend_from_slice(&src);
        ip.extend_from_slice(&dst);
        let c = ipv4_header_checksum(&ip);
        ip[10..12].copy_from_slice(&c.to_be_bytes());
        let c = internet_checksum(&icmp);
        icmp[2..4].copy_from_slice(&c.to_be_bytes());
        let mut f = eth.to_vec();
        f.extend_from_slice(&ip);
        f.extend_from_slice(&icmp);
        TestBuf::new(f, port)
    }

    /// An ICMPv4 "fragmentation needed" (type 3 code 4, MTU 1400) from `from` to the source
    /// of the IPv4 `frame`, quoting its IP header and the first 8 bytes after it, arriving
    /// on `port`.
    fn frag_needed(frame: &[u8], from: [u8; 4], port: u16) -> TestBuf {
        let to: [u8; 4] = frame[26..30].try_into().unwrap(); // the quoted packet's source
        frag_needed_to(frame, from, to, port)
    }

    /// [`frag_needed`] addressed to `to` instead.
    fn frag_needed_to(frame: &[u8], from: [u8; 4], to: [u8; 4], port: u16) -> TestBuf {
        let mut icmp = vec![3, 4, 0, 0, 0, 0, 0x05, 0x78];
        icmp.extend_from_slice(&frame[14..14 + 28]);
        icmp4(&frame[..14], from, to, icmp, port)
    }

    #[test]
    fn icmp_errors_about_tracked_connections_pass_as_related() {
        let node = "acl-3t-related";
        let mut g = graph(node, 1024);
        let (web, ba) = ("10.0.1.10", "10.0.2.20");
        let c = |g: &Graph<TestBuf>, name: &str| g.snapshot().node(node).unwrap().counter(name);
        let req = tcp(web, ba, 40000, 8080, 0);
        let req_bytes = req.data().to_vec();
        assert_eq!(run(&mut g, vec![req]), vec![Some(1)]);
        // A router on the way to BA (10.0.2.1) and BA itself report the request back to
        // web: related, so they pass (out web0) though no rule allows ICMP.
        let out = run(
            &mut g,
            vec![
                frag_needed(&req_bytes, [10, 0, 2, 1], 1),
                frag_needed(&req_bytes, [10, 0, 2, 20], 1),
            ],
        );
        assert_eq!(out, vec![Some(0), Some(0)]);
        assert_eq!(c(&g, "ct-related"), 2);
        // About a connection nobody made (another source port): judged, and dropped.
        let stray = tcp(web, ba, 40001, 8080, 0);
        let out = run(&mut g, vec![frag_needed(stray.data(), [10, 0, 2, 1], 1)]);
        assert_eq!(out, vec![None]);
        // Addressed to someone other than the quoted packet's source: dropped.
        let odd = frag_needed_to(&req_bytes, [10, 0, 2, 1], [10, 0, 1, 11], 1);
        assert_eq!(run(&mut g, vec![odd]), vec![None]);
        assert_eq!(c(&g, "ct-related"), 2);
        assert_eq!(
            c(&g, "ct-hits"),
            0,
            "an error neither is nor refreshes the connection"
        );
    }

    /// An ICMPv4 echo message (`t` 8: request, 0: reply) with identifier `id` from `src` to
    /// `dst`, arriving on `port`.
    fn ping(src: [u8; 4], dst: [u8; 4], t: u8, id: u16, port: u16) -> TestBuf {
        let mut icmp = vec![t, 0, 0, 0];
        icmp.extend_from_slice(&id.to_be_bytes());
        icmp.extend_from_slice(&[0, 1]);
        icmp.extend_from_slice(&[0x5a; 20]);
        let eth = [2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00];
        icmp4(&eth, src, dst, icmp, port)
    }

    #[test]
    fn icmp_errors_about_tracked_pings_pass_as_related() {
        let node = "acl-ping-related";
        // Pings to the BA tier are allowed (and tracked); no rule allows ICMP errors.
        let mut g = graph_of(
            node,
            r#"stateful = 1024, acl = { default = "drop", rules = [{ name = "ping-ba", direction = "to-lport", priority = 10, match = "ip4.dst == 10.0.2.0/24 && icmp4 && icmp4.type == 8", action = "allow-related" }] }"#,
        );
        let c = |g: &Graph<TestBuf>, name: &str| g.snapshot().node(node).unwrap().counter(name);
        let (web, ba) = ([10, 0, 1, 10], [10, 0, 2, 20]);
        let req = ping(web, ba, 8, 0x1234, 0);
        let req_bytes = req.data().to_vec();
        assert_eq!(run(&mut g, vec![req]), vec![Some(1)]);
        // A router on the way (10.0.2.1) reports the request back to web (as to
        // `traceroute -I`, or a ping too big for the path): related, so it passes.
        let out = run(&mut g, vec![frag_needed(&req_bytes, [10, 0, 2, 1], 1)]);
        assert_eq!(out, vec![Some(0)]);
        assert_eq!(c(&g, "ct-related"), 1);
        // About a ping nobody sent (another identifier): judged, and dropped.
        let stray = ping(web, ba, 8, 0x1235, 0);
        let out = run(&mut g, vec![frag_needed(stray.data(), [10, 0, 2, 1], 1)]);
        assert_eq!(out, vec![None]);
        assert_eq!(c(&g, "ct-related"), 1);
        // The echo reply is the tracked flow's reply.
        assert_eq!(
            run(&mut g, vec![ping(ba, web, 0, 0x1234, 1)]),
            vec![Some(0)]
        );
        assert_eq!(c(&g, "ct-hits"), 1);
    }

    #[test]
    fn conntrack_full_is_counted() {
        let mut g = graph("acl-3t-full", 1);
        let out = run(
            &mut g,
            vec![
                tcp("10.0.1.10", "10.0.2.20", 40000, 8080, 0),
                tcp("10.0.1.11", "10.0.2.20", 40001, 8080, 0),
            ],
        );
        assert_eq!(out, vec![Some(1), None]);
        assert_eq!(
            g.snapshot()
                .node("acl-3t-full")
                .unwrap()
                .drops_for("conntrack-full"),
            1
        );
    }

    #[test]
    fn bad_params_are_refused() {
        let mut r = Registry::<TestBuf>::with_builtins();
        register(&mut r, &HUBS, || 1).unwrap();
        let build = |params: &str| {
            let spec = GraphSpec::from_toml(&format!(
                "[[nodes]]\nname = \"a\"\nkind = \"acl\"\nparams = {params}\n[[nodes]]\nname = \"f\"\nkind = \"forward\"\nparams = {{ mode = \"by-metadata\" }}\n[[edges]]\nfrom = \"a\"\nto = \"f\"\n"
            ))
            .unwrap();
            Graph::build(&spec, &r, &ports3())
                .err()
                .map(|e| e.reason.to_string())
        };
        assert!(build("{ rules = \"/nonexistent.toml\" }")
            .unwrap()
            .contains("cannot read"));
        assert!(build("{ }").unwrap().contains("exactly one"));
        assert!(build("{ acl = { rules = [{ direction = \"to-lport\", priority = 1, match = \"ip4.src == $nope\", action = \"allow\" }] } }")
            .unwrap()
            .contains("unknown address set"));
        assert!(build("{ acl = { }, outport = \"cross-connect\" }")
            .unwrap()
            .contains("pairs"));
        assert!(build(
            "{ acl = { }, outport = \"by-route\", routes = [[\"10.0.0.0/8\", \"nope\"]] }"
        )
        .unwrap()
        .contains("unknown port"));
        assert!(build("{ acl = { }, verdict_cache = 1000000000 }")
            .unwrap()
            .contains("at most"));
        assert_eq!(build("{ acl = { default = \"allow\" } }"), None);
    }

    #[test]
    fn three_tier_config_inlines_the_example_rules() {
        let cfg: toml::Value =
            toml::from_str(include_str!("../../../config/three-tier.toml")).unwrap();
        let nodes = cfg["pipeline"]["nodes"].as_array().unwrap();
        let acl = nodes
            .iter()
            .find(|n| n["kind"].as_str() == Some("acl"))
            .unwrap();
        let inline: AclConfig = acl["params"]["acl"].clone().try_into().unwrap();
        let file: AclFile =
            toml::from_str(include_str!("../../../config/acl-three-tier.toml")).unwrap();
        assert_eq!(inline, file.acl);
    }

    // ---- hitless updates under load ----

    static DROPPED_ON: Mutex<Vec<String>> = Mutex::new(Vec::new());

    /// The linear model, recording which thread frees it.
    struct Tracked(LinearClassifier);

    impl Drop for Tracked {
        fn drop(&mut self) {
            let name = std::thread::current().name().unwrap_or("?").to_string();
            DROPPED_ON.lock().unwrap().push(name);
        }
    }

    impl Classify for Tracked {
        fn build(acl: &CompiledAcl) -> Result<Self, CompileError> {
            LinearClassifier::build(acl).map(Tracked)
        }
        fn classify(&self, family: IpVersion, keys: &[crate::acl::AclKey], results: &mut [u32]) {
            self.0.classify(family, keys, results)
        }
        fn describe(&self) -> String {
            "tracked".into()
        }
    }

    static TRACKED_HUBS: HubRegistry<Tracked> = HubRegistry::new();

    fn only_port(p: u16) -> AclConfig {
        toml::from_str::<AclFile>(&format!(
            "[acl]\ndefault = \"drop\"\n[[acl.rules]]\ndirection = \"from-lport\"\npriority = 1\nmatch = \"tcp.dst == {p}\"\naction = \"allow\"\n"
        ))
        .unwrap()
        .acl
    }

    #[test]
    fn hitless_updates_under_load() {
        const WORKERS: usize = 2;
        const PUBLICATIONS: u64 = 40;
        let ports = [PortInfo::new(0, "p0", ""), PortInfo::new(1, "p1", "")];
        let params = AclParams {
            acl: Some(only_port(80)),
            ..AclParams::default()
        };
        let shared = std::cell::RefCell::new(crate::graph::SharedState::new());
        let ctx = BuildContext {
            node: "hitless",
            ports: &ports,
            at: 0,
            shared: &shared,
        };
        let mut nodes: Vec<AclNode<Tracked>> = (0..WORKERS)
            .map(|_| AclNode::new(&params, &ctx, &TRACKED_HUBS, 1).unwrap())
            .collect();
        let hub = Arc::clone(nodes[0].hub());
        assert_eq!(hub.workers(), WORKERS);
        let stop = Arc::new(AtomicBool::new(false));
        let total = Arc::new(AtomicU64::new(0));
        // A burst: 16 packets to port 80, 16 to port 81. Generation g (odd: port 80 rules,
        // even: port 81 rules) must pass exactly one half.
        let frames: Vec<Vec<u8>> = (0..32u16)
            .map(|i| {
                tcp("10.0.0.1", "10.0.0.2", 1000 + i, 80 + (i & 1), 0)
                    .data()
                    .to_vec()
            })
            .collect();
        let workers: Vec<_> = nodes
            .drain(..)
            .enumerate()
            .map(|(w, mut node)| {
                let (stop, total, frames) = (stop.clone(), total.clone(), frames.clone());
                std::thread::Builder::new()
                    .name(format!("worker{w}"))
                    .spawn(move || {
                        let counters = NodeCounters::new(4, 5);
                        let mut pkts: Vec<TestBuf> =
                            frames.iter().map(|f| TestBuf::new(f.clone(), 0)).collect();
                        let mut meta = vec![PacketMeta::default(); pkts.len()];
                        for (p, m) in pkts.iter().zip(meta.iter_mut()) {
                            parse_packet(p.data(), &ParseConfig::default(), m).unwrap();
                        }
                        let mut decisions = vec![Decision::Next(0); pkts.len()];
                        let mut seen = Vec::new();
                        let mut bursts = 0u64;
                        while !stop.load(Ordering::Relaxed) || bursts == 0 {
                            let v = node.process(Frame {
                                pkts: &mut pkts,
                                meta: &mut meta,
                                decisions: &mut decisions,
                                counters: &counters,
                                shared: &mut crate::graph::SharedState::new(),
                            });
                            let gen = node.generation();
                            let want_port = if gen % 2 == 1 { 80 } else { 81 };
                            assert!(matches!(v, Verdict::PerPacket));
                            for (m, d) in meta.iter().zip(&decisions) {
                                let pass = *d == Decision::Next(0);
                                assert_eq!(
                                    pass,
                                    m.dst_port == want_port,
                                    "generation {gen}: mixed verdicts"
                                );
                            }
                            if seen.last() != Some(&gen) {
                                assert!(
                                    seen.last().is_none_or(|&g| g < gen),
                                    "generations go forward"
                                );
                                seen.push(gen);
                            }
                            bursts += 1;
                            total.fetch_add(pkts.len() as u64, Ordering::Relaxed);
                        }
                        (seen, bursts, counters.extra()[CTR_UPDATES].get())
                    })
                    .unwrap()
            })
            .collect();
        let mut reports = Vec::new();
        std::thread::Builder::new()
            .name("control".into())
            .spawn({
                let hub = hub.clone();
                move || {
                    for g in 2..=PUBLICATIONS + 1 {
                        let cfg = only_port(if g % 2 == 1 { 80 } else { 81 });
                        let r = hub
                            .publish_config(&cfg, std::time::Duration::from_secs(5))
                            .unwrap();
                        assert_eq!(r.generation, g);
                        assert_eq!(r.switched, WORKERS, "every worker switched: {r:?}");
                        assert_eq!(r.retired_freed, WORKERS);
                        reports.push(r);
                    }
                    reports
                }
            })
            .unwrap()
            .join()
            .unwrap();
        stop.store(true, Ordering::Relaxed);
        for w in workers {
            let (seen, bursts, updates) = w.join().unwrap();
            assert!(bursts > PUBLICATIONS);
            assert_eq!(
                *seen.last().unwrap(),
                PUBLICATIONS + 1,
                "ended on the last generation"
            );
            assert!((1..=PUBLICATIONS).contains(&updates));
        }
        assert!(total.load(Ordering::Relaxed) > 0);
        // Every replaced classifier was freed by the control thread, none by a worker.
        let dropped = DROPPED_ON.lock().unwrap().clone();
        assert_eq!(dropped.len() as u64, PUBLICATIONS, "{dropped:?}");
        assert!(dropped.iter().all(|t| t == "control"), "{dropped:?}");
        assert_eq!(hub.generation(), PUBLICATIONS + 1);
    }
}
