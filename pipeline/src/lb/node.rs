//! `lb`: the L4 load-balancer node (NAT mode).
//!
//! Per vector:
//! 1. **Classify** (no connection table): a TCP/UDP/SCTP packet whose destination is a service
//!    endpoint (VIP, protocol, port) is *for a VIP*; one whose source is a backend
//!    endpoint is a *reply*; anything else passes unchanged to `next`.
//! 2. **One batched connection-table lookup** for all of them
//!    ([`ConnTrack::lookup_batch`]), except the packets an `acl` node before this one looked
//!    up already (`lb_conntrack`; [`super::flows`]): their results are taken over once
//!    [`ConnTrack::confirm`] finds the packet's flow in the slot.
//! 3. For a packet to a VIP: a hit follows its entry's backend (a table swap never moves
//!    it); a miss picks a backend with the service's Maglev table (active backends only)
//!    and inserts the flow (none eligible: dropped as `no-backend`, or, for a `reject`
//!    service, answered with a TCP RST, an SCTP ABORT or an ICMP unreachable ([`crate::reject`]) on the
//!    `reset` output and counted `no-backend-rejects`). The packet is then DNATed (destination address and port to the
//!    backend's) with incremental checksum updates. If the entry's backend is down or no
//!    longer configured, the packet is dropped (`backend-down`) or, with
//!    `down_backend = "reset"`, a TCP packet is turned into a RST (SCTP: an ABORT) to the client
//!    ([`crate::reject`]) and sent on
//!    the `reset` output (with `meta.out_port` = its input port) and the flow is forgotten;
//!    with `down_backend = "keep"` (OVN's behaviour) it continues to that backend.
//!    When the table is full, new flows still get their Maglev backend without an entry
//!    (stateless fallback, counted as `ct-full-fallback`).
//! 4. For a reply: its source is translated back to the VIP and service port. A reply of a
//!    tracked connection (not one translated untracked, nor one an ACL blocked) is marked
//!    [`PacketMeta::FLAG_LB_REPLY`], so that stateful `acl` nodes after this one pass it as
//!    the reply of a connection, as OVN's ACL stages after its load balancer do.
//!
//! # One entry per connection
//! The connection table matches a packet against an entry's key or its reverse. A DNATed
//! connection's reply `backend:bport -> client:cport` is not the reverse of the original
//! key `client:cport -> vip:vport`, so instead of a second (reverse-NAT) entry the node
//! maps the reply's source endpoint back to the service endpoint *before* the lookup:
//! backend endpoints are known from the service table, so `backend:bport -> client:cport`
//! becomes the lookup key `vip:vport -> client:cport`, which is exactly the reverse of the
//! stored key. The entry's backend id must then equal the reply's backend (otherwise the
//! packet is not a reply of that connection and passes unchanged). This keeps one entry, one
//! idle timer and one TCP state machine (fed by both directions) per connection, and half
//! the memory of the two-entry scheme. A backend endpoint serving several services has
//! several candidates; the first is looked up in the batch, the others one by one. A reply
//! that matches no entry (a flow of the stateless fallback, or one whose entry idled out) is
//! translated anyway when its backend endpoint belongs to exactly one service (counted as
//! `reply-untracked`), and passed unchanged otherwise (`reply-ambiguous`).
//!
//! # Hot path
//! No allocation, lock or syscall per packet: the table is swapped at most once per vector
//! (see [`crate::lb::control`]), counters are this worker's own, the connection table is
//! this worker's own; aging scans a bounded number of slots per vector, paced to sweep the
//! table within an eighth of the shortest idle timeout.
//!
//! # Cycles in the full pipeline
//! The benchmark's `dataplane-full` (1k ACL rules, 100k flows, the `acl` node looking the
//! flows up for this node) spends about 107 cycles per packet in its nodes against a budget
//! of 60 (`full_node_cycles_per_packet`; `scripts/bench standard` of 2026-12-05: parse 10.7,
//! acl 51.4, lb 41.8, forward 3.6). The `acl` and `lb` nodes hold the rest. A `perf record`
//! of the DUT worker (`-F 4999 -t <worker tid>`, 3 s, software clock: this VM has no PMU
//! counters) put about 12% of its samples in node code (the rest polled the vhost rings at
//! the low rate the loaded machine allowed), of which: `ConnTrack::lookup_batch_sparse` 4.2%,
//! four fifths on the two loads of each packet's slot line (the touch and the probe's first
//! read: a random line of a 32 MiB table, the benchmark's capacity of 200k flows being 2^19
//! slots, as large as the L3); the `acl` node's own part of
//! [`super::LbFlows::look_up_tracked`] 3.5%, mostly the burst memos of [`super::flows`]'s
//! classification; this node 3.5%, spread over `confirm`, the NAT rewrite, checksums and
//! counters. So the table line is the largest single cost and belongs to the `acl` node's
//! share; a smaller table per flow (capacity nearer the flows, or 32-byte entries) is where
//! the next cycles are.
//!
//! Tried and not kept: the per-service packet and byte counters added once per run of
//! packets for the same service (once per vector here) instead of per packet. It could not
//! be measured on the machine of the session (load average 9 on 2 CPUs, others compiling):
//! `lb-bench --flows 100000 --capacity 200000`, interleaved A B x3, medians 275/280/282 (A)
//! against 309/294/293 (B) cycles per packet, best rounds 223/185/253 against 230/310/134; the
//! full pipeline's `lb` node A/B x4 in the vhost benchmark 440-839 against 576-772, about 5x
//! its cost on a quiet machine. No gain shown, so the code stays as it was.
//!
//! Issue #27's pass (2026-12-07, the machine at load 7-13 from others' builds, so the DUT's
//! node figures ran at 10x their quiet values, 1,000-1,450 cycles per packet for the four
//! nodes in 5 interleaved single-round runs each way, and could not tell builds apart). A
//! fresh `perf record` of the DUT worker (as above, `-g`): `lookup_batch_sparse` 6.0% of the
//! samples, 43% of them on the touch loop's load and 26% on the probe's first read of the
//! slot (the line arriving); this node 6.6%, of which about a fifth on its two re-reads of
//! each taken-over packet's slot line (`confirm`'s state byte, then the payload's). Measured
//! instead in process with `handover_cycles` (`pipeline/tests/acl_lb_shared.rs`, ignored:
//! `parse -> acl (lb_conntrack) -> lb`, 100k UDP flows to a VIP in a 200k-entry table,
//! requests and replies in alternate vectors of 256, test buffers, 4 KiB pages; the best of
//! 9 rounds per run), the builds alternated run by run:
//! - kept: [`super::flows`]'s take-over hands the entry it read with its check to the
//!   decide step, which used to read it from the slot again: this node's best 81.3 / 81.7
//!   -> 76.8 / 76.1 cycles per packet (two series of 15 runs each way, the second in the
//!   other order; median over runs 91.5 / 84.3 -> 80.1 / 78.9, median per-run ratio 0.95);
//!   the `acl` node unchanged (best 98.4 / 91.2 against 98.5 / 96.5).
//! - not kept: no re-read of the slot at all for a taken-over packet: the `acl` node's
//!   lookup copied each hit's key, direction and entry beside its result by position (the
//!   slot line still in L1), and this node compared the packet's key with that copy instead
//!   of `confirm` (a counter of the table's deletions guarding the handles). 15 runs each
//!   way: this node best 81.9 -> 78.4 (median 84.9 -> 85.1), but the `acl` node 98.9 -> 120.1
//!   (median 135.5 -> 175.4): the 51 bytes stored per packet in the `acl` node cost more
//!   than the re-read they saved here.
//!
//! The DUT at the end of that pass (`bench --set quick --dpgen --rounds 5 --seconds 2
//! --warmup 1 --sizes 64 --flows 1024 --duts dataplane-full,ovs-ct-lb`, the builds one after
//! the other, 02:38-02:41 UTC, while another engineer's generator and OVS-DPDK polled the
//! same two CPUs): with the kept change 869.8 cycles per packet in the nodes (parse 85.3,
//! acl 404.0, lb 377.4, forward 37.7), `full_vs_ovs` 2.87 (fastest rounds 3.75); before it
//! 657.5 (32.8, 304.6, 238.4, 9.0), 3.84 (4.23); the DUT forwarded 0.04-1.3 Mpps per round
//! and later runs lost rounds to "no rate samples from dpgen". Those figures are the
//! machine's starvation, not the pipeline's cost; `scripts/bench standard` on a quiet
//! machine is still to run.
//!
//! Checked and found done already: the table lines of a burst are loaded ahead of their
//! probes (the sparse table's lookup touches the home slot of each of up to 64 keys, then
//! probes them: a distance of the chunk; `prefetcht0` instead, or across chunks, was slower,
//! see [`crate::conntrack`]); in this DUT the `acl` node classifies nothing once the
//! connections are tracked (one verdict for an all-tracked vector), and its verdict cache
//! switches itself off (100k keys each way); node counters are added per vector. What stays
//! per packet: the table line (the `acl` node's share, bound by how many misses the core
//! keeps in flight), the flow key built from the metadata in both nodes (38 bytes each),
//! the NAT rewrite with its checksum updates and four per-service/backend counters here.
//!
//! # Checksums
//! Updated incrementally in software, unless every port of the graph computes checksums on
//! transmit (the output port is decided after this node, so all must): then the IPv4 header
//! and/or TCP/UDP checksum of a rewritten packet are left to the port (DPDK's offload flags
//! on the mbuf, fields prepared as they require; counted as `checksum-offloads`), and a
//! buffer that cannot carry the request gets them computed in software.
//!
//! # Direct server return
//! A service with `forwarding = "dsr"` keeps the IP packet as it is (destination still the
//! VIP) and only rewrites the destination MAC to the chosen backend's (`mac` of each
//! backend): the backend owns the VIP on a loopback interface and answers the client
//! directly, so replies never come back through this node. Flows are tracked and pinned
//! exactly as in NAT mode.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use super::control::{LbControl, LbCounters};
use super::flow::{PROTO_TCP, PROTO_UDP};
use super::flows::{classify, take_over, Class, LbFlows, Memos, Scratch, What};
use super::icmp;
use super::nat::{self, End};
use super::service::{DownPolicy, LbConfig, ServiceTable};
use super::traced::{How, Traced};
use crate::conntrack::{ConnTrack, Direction, InsertError, TcpFlags, MAX_PACED_SCAN};
use crate::ct_sample::{serve_lb, CtSampler, CtServer};
use crate::graph::{
    BuildContext, Decision, Frame, KindInfo, Node, ParamError, Registry, RegistryError,
    SharedState, Verdict,
};
use crate::meta::PacketMeta;
use crate::PacketBuf;

/// What a connection-table entry of the load balancer holds (12 bytes, so that an entry
/// with its creation unit and packet count stays one 64-byte cache line: see
/// [`crate::conntrack`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NatEntry {
    /// Backend id (stable across table swaps).
    pub backend: u32,
    /// Low 31 bits of the generation of the ACL rules that last allowed the connection
    /// (0 without an ACL sharing the table), and [`NatEntry::BLOCKED`].
    acl: u32,
    /// Service id (below 2^16: `max_services` is at most 65,536).
    pub service: u16,
    /// The backend port the flow is translated to.
    pub port: u16,
}

impl NatEntry {
    /// The bits of an ACL generation an entry keeps.
    pub const GEN_MASK: u32 = 0x7fff_ffff;
    /// Set by an `acl` node sharing the table (`lb_conntrack`) when changed rules deny the
    /// connection's requests: its packets are judged as new ones (see [`LbFlows`]).
    pub const BLOCKED: u32 = 1 << 31;

    /// An entry to `backend`'s `port` for `service`, allowed by ACL generation `acl_gen`
    /// (its low 31 bits are kept), not blocked.
    pub fn new(backend: u32, service: u16, port: u16, acl_gen: u32) -> Self {
        Self {
            backend,
            acl: acl_gen & Self::GEN_MASK,
            service,
            port,
        }
    }

    /// The low 31 bits of the ACL generation that last allowed the connection.
    #[inline(always)]
    pub fn acl_gen(&self) -> u32 {
        self.acl & Self::GEN_MASK
    }

    /// Whether a sharing ACL's changed rules deny the connection's requests.
    #[inline(always)]
    pub fn blocked(&self) -> bool {
        self.acl & Self::BLOCKED != 0
    }

    /// Whether the connection was last allowed by generation `gen` (its low 31 bits) and is
    /// not blocked: one compare.
    #[inline(always)]
    pub fn allowed_by(&self, gen: u32) -> bool {
        self.acl == gen & Self::GEN_MASK
    }

    /// Allowed by generation `gen` (low 31 bits), unblocked.
    #[inline(always)]
    pub fn allow(&mut self, gen: u32) {
        self.acl = gen & Self::GEN_MASK;
    }

    /// Blocks the connection (keeps its generation).
    #[inline(always)]
    pub fn block(&mut self) {
        self.acl |= Self::BLOCKED;
    }
}

/// Output slot `next`: everything that continues (translated or passed unchanged).
pub const OUT_NEXT: u8 = 0;
/// Output slot `reset`: RSTs answering clients of down backends, and the answers to new
/// flows of a `reject` service without a backend.
pub const OUT_RESET: u8 = 1;

/// Drop code: the service has no active backend.
pub const DROP_NO_BACKEND: u8 = 0;
/// Drop code: the flow's backend is down or removed.
pub const DROP_BACKEND_DOWN: u8 = 1;
/// Drop code: an IP fragment to a VIP (ports unknown; not reassembled).
pub const DROP_VIP_FRAGMENT: u8 = 2;
/// Drop code: a packet too short for the rewrite its metadata calls for.
pub const DROP_BAD_PACKET: u8 = 3;

/// Extra counter: connections created.
pub const C_NEW: usize = 0;
/// Extra counter: new flows balanced without an entry because the table was full.
pub const C_FULL_FALLBACK: usize = 1;
/// Extra counter: replies translated without a matching entry.
pub const C_REPLY_UNTRACKED: usize = 2;
/// Extra counter: replies from a backend endpoint passed unchanged (no unique service).
pub const C_REPLY_AMBIGUOUS: usize = 3;
/// Extra counter: RSTs sent for flows of down backends.
pub const C_RESETS: usize = 4;
/// Extra counter: table swaps picked up.
pub const C_TABLE_SWAPS: usize = 5;
/// Extra counter: connections that ended (expired or removed).
pub const C_CLOSED: usize = 6;
/// Extra counter: rewritten packets whose checksums were left to the output port.
pub const C_CSUM_OFFLOADS: usize = 7;
/// Extra counter: ICMP errors about tracked connections, translated (see [`super::icmp`]).
pub const C_ICMP_ERRORS: usize = 8;
/// Extra counter: new flows of a `reject` service without a backend, answered (TCP RST,
/// ICMP unreachable) on the `reset` output instead of dropped.
pub const C_REJECTS: usize = 9;

pub use super::flows::CHUNK;

/// The clock the node reads once per vector (timeouts are converted to its ticks).
#[derive(Debug, Clone)]
pub enum LbClock {
    /// The CPU time-stamp counter (its rate estimated once per process).
    Tsc,
    /// A clock the caller advances (tests drive time explicitly).
    Manual {
        /// Current tick.
        now: Arc<AtomicU64>,
        /// Ticks per second.
        hz: u64,
    },
}

impl LbClock {
    /// A manual clock at tick 0 running at `hz` ticks per second, and its handle.
    pub fn manual(hz: u64) -> (Self, Arc<AtomicU64>) {
        let now = Arc::new(AtomicU64::new(0));
        (
            LbClock::Manual {
                now: now.clone(),
                hz,
            },
            now,
        )
    }

    /// Ticks per second.
    pub fn hz(&self) -> u64 {
        match self {
            LbClock::Tsc => {
                static HZ: OnceLock<u64> = OnceLock::new();
                *HZ.get_or_init(|| crate::cycles::estimate_hz(20).max(1))
            }
            LbClock::Manual { hz, .. } => *hz,
        }
    }

    /// The current tick.
    #[inline(always)]
    pub fn now(&self) -> u64 {
        match self {
            LbClock::Tsc => crate::cycles::now(),
            LbClock::Manual { now, .. } => now.load(Ordering::Relaxed),
        }
    }
}

/// Where the node's flow state lives: its own, or the graph's shared state (so that an
/// `acl` node before it can look flows up; see [`super::flows`]).
enum FlowsAt {
    Own(Box<LbFlows>),
    Shared(usize),
}

/// The `lb` node of one worker.
pub struct LbNode {
    control: Arc<LbControl>,
    flows: FlowsAt,
    counters: Arc<LbCounters>,
    /// Checksums left to the ports (set when every port of the graph computes them).
    offload: nat::Offload,
    /// `show conntrack` sampling of the connection table.
    sample: CtServer,
    /// The last vector's decisions on traced packets.
    traced: Box<Traced>,
}

impl std::fmt::Debug for LbNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut d = f.debug_struct("LbNode");
        match &self.flows {
            FlowsAt::Own(fl) => d.field("flows", fl),
            FlowsAt::Shared(i) => d.field("shared_slot", i),
        };
        d.finish()
    }
}

impl LbNode {
    /// Shape of the kind.
    pub const INFO: KindInfo = KindInfo {
        outputs: &["next", "reset"],
        drop_reasons: &["no-backend", "backend-down", "vip-fragment", "bad-packet"],
        counters: &[
            "new-connections",
            "ct-full-fallback",
            "reply-untracked",
            "reply-ambiguous",
            "resets",
            "table-swaps",
            "closed-connections",
            "checksum-offloads",
            "icmp-errors",
            "no-backend-rejects",
        ],
        transmits: false,
        fills_meta: false,
        description:
            "L4 load balancer: Maglev backend choice, connection tracking, DNAT and reply un-NAT",
    };

    /// A node following `control`'s tables, with its own connection table (sized by the
    /// control's settings) and counters, reading `clock`.
    pub fn new(control: Arc<LbControl>, clock: LbClock) -> Self {
        let counters = control.register_worker();
        Self {
            flows: FlowsAt::Own(Box::new(LbFlows::new(Arc::clone(&control), clock))),
            control,
            counters,
            offload: nat::Offload::default(),
            sample: CtServer::new(),
            traced: Box::default(),
        }
    }

    /// The same node, leaving the IPv4 header checksum (`ip`) and/or the TCP/UDP checksum
    /// (`l4`) of the packets it rewrites to the output port: for graphs whose every port
    /// computes them on transmit (the node does not know which port a packet leaves by).
    pub fn with_checksum_offload(mut self, ip: bool, l4: bool) -> Self {
        self.offload = nat::Offload { ip, l4 };
        self
    }

    /// The same node with its flow state moved into the graph's shared state (through
    /// `ctx`, under the node's name), where an earlier `acl` node can look flows up.
    pub fn sharing_flows(mut self, ctx: &BuildContext<'_>) -> Self {
        if let FlowsAt::Own(fl) = std::mem::replace(&mut self.flows, FlowsAt::Shared(0)) {
            self.flows = FlowsAt::Shared(ctx.provide_shared(fl));
        }
        self
    }

    /// A node from parameters: with `control = NAME`, attached to (or creating) the named
    /// control; otherwise with a private one.
    pub fn from_config(cfg: &LbConfig, clock: LbClock) -> Result<Self, ParamError> {
        let to_param = |e: super::service::ConfigError| {
            if e.key.is_empty() {
                ParamError::general(e.reason)
            } else {
                ParamError::new(e.key, e.reason)
            }
        };
        let cfg = cfg.resolve().map_err(to_param)?;
        let control = match &cfg.control {
            Some(name) => LbControl::attach_named(name, &cfg),
            None => LbControl::new(&cfg),
        }
        .map_err(to_param)?;
        Ok(Self::new(control, clock))
    }

    /// The control this node follows.
    pub fn control(&self) -> &Arc<LbControl> {
        &self.control
    }

    /// This worker's flow state, when the node keeps it itself (diagnostics).
    pub fn flows(&self) -> Option<&LbFlows> {
        match &self.flows {
            FlowsAt::Own(fl) => Some(fl),
            FlowsAt::Shared(_) => None,
        }
    }
}

#[inline(always)]
fn closed(c: &LbCounters, e: &NatEntry) {
    if let Some(b) = c.backends.get(e.backend as usize) {
        b.closed_connections.add(1);
    }
    if let Some(s) = c.services.get(e.service as usize) {
        s.closed_connections.add(1);
    }
}

impl<P: PacketBuf> Node<P> for LbNode {
    fn process(&mut self, f: Frame<'_, P>) -> Verdict {
        let Frame {
            pkts,
            meta,
            decisions,
            counters: fc,
            shared,
        } = f;
        // Only shared flows can come with lookups an earlier node made.
        let handed_over = matches!(self.flows, FlowsAt::Shared(_));
        let fl: &mut LbFlows = match &mut self.flows {
            FlowsAt::Own(fl) => fl,
            FlowsAt::Shared(i) => match shared.get_mut::<LbFlows>(*i) {
                Some(fl) => fl,
                // Not reachable (the slot is filled when the node is built): pass all.
                None => {
                    decisions.fill(Decision::Next(OUT_NEXT));
                    return Verdict::PerPacket;
                }
            },
        };
        fl.refresh();
        let swaps = std::mem::take(&mut fl.swaps);
        // An earlier node's results are used only under the table they were made with.
        let use_pre = handed_over && fl.pre_epoch == fl.epoch;
        let now = fl.clock.now();
        let acl_gen = fl.acl_gen;
        let LbFlows {
            table,
            ct,
            scratch: s,
            ..
        } = fl;
        let c: &LbCounters = &self.counters;
        let traced: &mut Traced = &mut self.traced;
        traced.clear();
        let t: &ServiceTable = table;
        let s: &mut Scratch = s;
        let n = pkts.len();

        let (mut new_conns, mut fallback, mut untracked, mut ambiguous, mut resets, mut n_closed) =
            (0u64, 0u64, 0u64, 0u64, 0u64, 0u64);
        let mut rejects = 0u64;
        let off = self.offload;
        let mut offloaded = 0u64;
        s.remove.clear();
        s.icmp.clear();
        let mut memo = Memos::new();
        // In chunks, so that a chunk's metadata, keys, slots and headers are still in L1
        // when it is decided and rewritten.
        for base in (0..n).step_by(CHUNK) {
            let end = (base + CHUNK).min(n);
            // 1. Classify; take over the hits of an earlier node's lookup where it made one.
            // (Two loops, so that the usual one stays as tight as without hand-overs.)
            let mut k = 0usize;
            let mut todo = 0usize;
            if use_pre {
                for i in base..end {
                    decisions[i] = Decision::Next(OUT_NEXT);
                    let m = &meta[i];
                    if let Some((what, r, e)) =
                        take_over(&s.pre, &s.pre_what, t, ct, m, now, &mut s.keys[k])
                    {
                        s.what[k] = what;
                        s.out[k] = Some(r);
                        s.entry[k] = Some(e);
                        s.idx[k] = i as u16;
                        k += 1;
                    } else if classify_into(t, m, &mut memo, s, k, i, decisions) {
                        s.entry[k] = None;
                        s.todo[todo] = k as u16;
                        todo += 1;
                        k += 1;
                    }
                }
            } else {
                for i in base..end {
                    decisions[i] = Decision::Next(OUT_NEXT);
                    if classify_into(t, &meta[i], &mut memo, s, k, i, decisions) {
                        s.entry[k] = None;
                        k += 1;
                    }
                }
                todo = k;
            }

            // 2. One batched lookup for the rest.
            let gathered = todo != k;
            let (keys, out) = if gathered {
                for q in 0..todo {
                    s.todo_keys[q] = s.keys[usize::from(s.todo[q])];
                }
                (&s.todo_keys[..todo], &mut s.todo_out[..todo])
            } else {
                (&s.keys[..k], &mut s.out[..k])
            };
            if !keys.is_empty() {
                ct.lookup_batch(keys, now, out);
            }
            if gathered {
                for q in 0..todo {
                    s.out[usize::from(s.todo[q])] = s.todo_out[q];
                }
            }

            // 3. Decide and rewrite.
            for j in 0..k {
                let i = usize::from(s.idx[j]);
                let key = s.keys[j];
                let m = &mut meta[i];
                let pkt = &mut pkts[i];
                let is_tcp = key.proto == PROTO_TCP;
                match s.what[j] {
                    What::Pass => {}
                    What::Vip(sid) => {
                        let (entry, h) = match s.out[j] {
                            // Taken over: its entry was read with the check.
                            Some((h, Direction::Original)) => match s.entry[j] {
                                Some(e) => (e, Some(h)),
                                None => match ct.payload(h) {
                                    Some(e) => (*e, Some(h)),
                                    None => continue,
                                },
                            },
                            // Stored from the other side: not a connection this node created.
                            Some((_, Direction::Reply)) => {
                                traced.note(m, i, How::OtherSide, sid, 0);
                                continue;
                            }
                            None => {
                                let Some(bid) = t.pick(sid, &key) else {
                                    traced.note(m, i, How::NoBackend, sid, 0);
                                    decisions[i] = Decision::Drop(DROP_NO_BACKEND);
                                    if t.services[sid as usize].reject
                                        && crate::reject::answer(pkt, m)
                                    {
                                        m.out_port = pkt.in_port();
                                        decisions[i] = Decision::Next(OUT_RESET);
                                        rejects += 1;
                                    }
                                    continue;
                                };
                                let be = &t.backends[bid as usize];
                                // Service ids fit (below MAX_SERVICE_IDS).
                                let entry = NatEntry::new(
                                    bid,
                                    sid as u16,
                                    be.port.unwrap_or(key.dst_port),
                                    acl_gen,
                                );
                                match ct.insert_reclaiming(
                                    &key,
                                    ConnTrack::<NatEntry>::hash(&key),
                                    now,
                                    entry,
                                ) {
                                    Ok((h, old)) => {
                                        if let Some(o) = old {
                                            closed(c, &o);
                                            n_closed += 1;
                                        }
                                        new_conns += 1;
                                        c.backends[bid as usize].new_connections.add(1);
                                        c.services[sid as usize].new_connections.add(1);
                                        (entry, Some(h))
                                    }
                                    // The same new flow twice in one vector.
                                    Err(InsertError::Exists(h)) => match ct.payload(h) {
                                        Some(e) => (*e, Some(h)),
                                        None => continue,
                                    },
                                    Err(InsertError::Full) => {
                                        fallback += 1;
                                        (entry, None)
                                    }
                                }
                            }
                        };
                        let be = &t.backends[entry.backend as usize];
                        if !be.status.serves_established() && t.down_policy != DownPolicy::Keep {
                            traced.note(m, i, How::BackendDown, sid, entry.backend);
                            decisions[i] = Decision::Drop(DROP_BACKEND_DOWN);
                            if t.down_policy == DownPolicy::Reset {
                                let _ = s.remove.try_push(key);
                                if key.proto != PROTO_UDP && crate::reject::answer(pkt, m) {
                                    m.out_port = pkt.in_port();
                                    decisions[i] = Decision::Next(OUT_RESET);
                                    resets += 1;
                                }
                            }
                            continue;
                        }
                        if let (true, Some(h)) = (is_tcp, h) {
                            ct.update_tcp(h, TcpFlags(m.tcp_flags), Direction::Original, now);
                        }
                        let len = pkt.data().len() as u64;
                        if let Some(mac) = be.dsr_mac {
                            // L2 direct server return: only the destination MAC changes.
                            match pkt.data_mut().get_mut(..6) {
                                Some(d) => d.copy_from_slice(&mac),
                                None => {
                                    traced.note(m, i, How::Unrewritable, sid, entry.backend);
                                    decisions[i] = Decision::Drop(DROP_BAD_PACKET);
                                    continue;
                                }
                            }
                        } else if !rewrite(
                            pkt,
                            m,
                            End::Dst,
                            &be.addr,
                            entry.port,
                            off,
                            &mut offloaded,
                        ) {
                            traced.note(m, i, How::Unrewritable, sid, entry.backend);
                            decisions[i] = Decision::Drop(DROP_BAD_PACKET);
                            continue;
                        }
                        let (sc, bc) = (
                            &c.services[sid as usize],
                            &c.backends[entry.backend as usize],
                        );
                        sc.packets.add(1);
                        sc.bytes.add(len);
                        bc.packets.add(1);
                        bc.bytes.add(len);
                        let how = match (s.out[j], h) {
                            (Some(_), _) => How::Established,
                            (None, Some(_)) => How::New,
                            (None, None) => How::Untracked,
                        };
                        traced.note(m, i, how, sid, entry.backend);
                    }
                    What::Reply { start, count } => {
                        let cands = &t.cands[start as usize..(start + count) as usize];
                        // (handle, candidate, blocked) of the connection this reply
                        // belongs to.
                        let mut hit = None;
                        let mut mismatch = false;
                        if let Some((h, Direction::Reply)) = s.out[j] {
                            match s.entry[j].or_else(|| ct.payload(h).copied()) {
                                Some(e) if e.backend == cands[0].1 => {
                                    hit = Some((h, cands[0], e.blocked()))
                                }
                                _ => mismatch = true,
                            }
                        }
                        if hit.is_none() {
                            for &cand in &cands[1..] {
                                let svc = &t.services[cand.0 as usize];
                                let mut k2 = key;
                                k2.src = svc.vip;
                                k2.src_port = svc.port.unwrap_or(m.src_port);
                                if let Some((h, Direction::Reply, e)) = ct.lookup(&k2, now) {
                                    if e.backend == cand.1 {
                                        hit = Some((h, cand, e.blocked()));
                                        break;
                                    }
                                    mismatch = true;
                                }
                            }
                        }
                        let tracked = hit.is_some();
                        let (sid, bid) = match hit {
                            Some((h, cand, blocked)) => {
                                if is_tcp {
                                    ct.update_tcp(h, TcpFlags(m.tcp_flags), Direction::Reply, now);
                                }
                                if !blocked {
                                    m.flags |= PacketMeta::FLAG_LB_REPLY;
                                }
                                cand
                            }
                            None => match t.untracked_owner(cands) {
                                Some(cand) if !mismatch => {
                                    untracked += 1;
                                    cand
                                }
                                _ => {
                                    traced.note(m, i, How::ReplyAmbiguous, 0, 0);
                                    ambiguous += 1;
                                    continue;
                                }
                            },
                        };
                        let svc = &t.services[sid as usize];
                        let vport = svc.port.unwrap_or(m.src_port);
                        let len = pkt.data().len() as u64;
                        if !rewrite(pkt, m, End::Src, &svc.vip, vport, off, &mut offloaded) {
                            traced.note(m, i, How::Unrewritable, sid, bid);
                            decisions[i] = Decision::Drop(DROP_BAD_PACKET);
                            continue;
                        }
                        let (sc, bc) = (&c.services[sid as usize], &c.backends[bid as usize]);
                        sc.reply_packets.add(1);
                        sc.reply_bytes.add(len);
                        bc.reply_packets.add(1);
                        bc.reply_bytes.add(len);
                        let how = if tracked {
                            How::Reply
                        } else {
                            How::ReplyUntracked
                        };
                        traced.note(m, i, how, sid, bid);
                    }
                }
            }
        }
        // ICMP errors about tracked connections (rare), translated like their packets.
        let mut icmp_errors = 0u64;
        for &i in &s.icmp {
            let i = usize::from(i);
            let (pkt, m) = (&mut pkts[i], &mut meta[i]);
            let Some(nat) = icmp::related(t, ct, pkt.data(), m, now) else {
                continue;
            };
            if icmp::translate(pkt.data_mut(), m, &nat) {
                icmp_errors += 1;
                traced.note(m, i, How::IcmpRelated, nat.service_id, nat.backend_id);
            }
        }
        for key in &s.remove {
            if let Some((e, _)) = ct.remove_entry(key, now) {
                closed(c, &e);
                n_closed += 1;
            }
        }
        n_closed += ct.age_paced_with(now, MAX_PACED_SCAN, |_, e| closed(c, e)) as u64;
        traced.keep_table(table);

        for (idx, v) in [
            (C_NEW, new_conns),
            (C_FULL_FALLBACK, fallback),
            (C_REPLY_UNTRACKED, untracked),
            (C_REPLY_AMBIGUOUS, ambiguous),
            (C_RESETS, resets),
            (C_TABLE_SWAPS, swaps),
            (C_CLOSED, n_closed),
            (C_CSUM_OFFLOADS, offloaded),
            (C_ICMP_ERRORS, icmp_errors),
            (C_REJECTS, rejects),
        ] {
            if v != 0 {
                fc.add_extra(idx, v);
            }
        }
        // Every packet has its decision (`next` unless changed): the graph moves the vector
        // whole when they all agree.
        Verdict::PerPacket
    }

    fn serve_ct(&mut self, shared: &mut SharedState) -> bool {
        if !self.sample.wants() {
            return false;
        }
        let fl: &LbFlows = match &self.flows {
            FlowsAt::Own(fl) => fl,
            FlowsAt::Shared(i) => match shared.get_mut::<LbFlows>(*i) {
                Some(fl) => fl,
                None => return false,
            },
        };
        serve_lb(
            &mut self.sample,
            &fl.ct,
            &fl.table,
            fl.clock.now(),
            &fl.clock,
        );
        self.sample.wants()
    }

    fn trace_note(&self, index: usize, _meta: &PacketMeta) -> Option<crate::trace::TraceNote> {
        self.traced.note_on(index)
    }

    fn ct_sampler(&self) -> Option<CtSampler> {
        Some(self.sample.handle())
    }
}

/// Step 1 for packet `i` (metadata `m`) in the usual way ([`classify`]): a packet to look
/// up gets its key, class and index at position `k` of the scratch (true); a fragment to a
/// VIP gets its drop decision.
#[inline(always)]
fn classify_into(
    t: &ServiceTable,
    m: &PacketMeta,
    memo: &mut Memos,
    s: &mut Scratch,
    k: usize,
    i: usize,
    decisions: &mut [Decision],
) -> bool {
    s.what[k] = match classify(t, m, memo, &mut s.keys[k]) {
        Class::Pass => {
            if crate::icmp_error::is_icmp_error(m) {
                let _ = s.icmp.try_push(i as u16);
            }
            return false;
        }
        Class::VipFragment => {
            decisions[i] = Decision::Drop(DROP_VIP_FRAGMENT);
            return false;
        }
        Class::Flow(what) => what,
    };
    s.idx[k] = i as u16;
    true
}

/// Rewrites one end of `pkt` ([`nat::rewrite_offloaded`] with `off`) and attaches the
/// checksum-offload request, counting it in `offloaded`, or, when the buffer cannot carry
/// it, computes those checksums in software. False when the packet does not fit.
#[inline(always)]
fn rewrite<P: PacketBuf>(
    pkt: &mut P,
    m: &mut PacketMeta,
    end: End,
    addr: &[u8; 16],
    port: u16,
    off: nat::Offload,
    offloaded: &mut u64,
) -> bool {
    match nat::rewrite_offloaded(pkt.data_mut(), m, end, addr, port, off) {
        None => false,
        Some(nat::Rewritten::Complete) => true,
        Some(nat::Rewritten::NeedsPort(req)) => {
            if pkt.request_csum_offload(req) {
                *offloaded += 1;
                true
            } else {
                nat::finish_checksums(pkt.data_mut(), &req)
            }
        }
    }
}

/// Registers kind `name` (normally `lb`) whose nodes read `clock`.
pub fn register_with<P: PacketBuf + 'static>(
    r: &mut Registry<P>,
    name: &str,
    clock: LbClock,
) -> Result<(), RegistryError> {
    r.register::<LbConfig, _>(name, LbNode::INFO, move |p, ctx| {
        // Offload only what every port of the graph computes on transmit.
        let all = |f: fn(&crate::graph::PortInfo) -> bool| {
            !ctx.ports.is_empty() && ctx.ports.iter().all(f)
        };
        let node = LbNode::from_config(&p, clock.clone())?
            .with_checksum_offload(all(|p| p.tx_ipv4_csum), all(|p| p.tx_l4_csum));
        // Nodes are built in run order: a node before this one that wants its flows
        // (`acl` with `lb_conntrack`) has asked already.
        let node = if ctx.is_requested() {
            node.sharing_flows(ctx)
        } else {
            ctx.decline_shared();
            node
        };
        Ok(crate::nodes::NodeImpl::Custom(Box::new(node)))
    })
}

/// Registers the `lb` kind (TSC clock).
pub fn register<P: PacketBuf + 'static>(r: &mut Registry<P>) -> Result<(), RegistryError> {
    register_with(r, "lb", LbClock::Tsc)
}
