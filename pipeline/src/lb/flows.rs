//! The load balancer's per-worker flow state ([`LbFlows`]: connection table, service table in
//! use, clock) and the first steps of the `lb` node over it: classifying packets and looking
//! their connections up. An `acl` node placed before the `lb` node can run the lookup itself
//! ([`LbFlows::look_up_tracked`], with `lb_conntrack = "<lb node>"`): packets of tracked
//! connections then skip the ACL's classifier, and the `lb` node takes the lookup's result
//! from here instead of looking up again. So a packet of an established connection costs
//! one table lookup for both stages, as with one conntrack zone in OVS/OVN (a stateful ACL
//! and a load balancer that share `ct()`).
//!
//! The hand-over: the earlier node's lookup results and classes stay in [`LbFlows`] (one
//! per position of its vector, [`flow_ref`] encoding) and each looked-up packet's
//! [`PacketMeta::next`] names its position plus one. The `lb` node takes over hits only, and
//! checks each ([`take_over`]): the slot must hold the packet's own flow
//! ([`ConnTrack::confirm`]), a request's service comes from the entry, a reply's source must
//! be the backend's endpoint, and the table must be the one the results were made with. So
//! a stale or foreign `next` costs a lookup, never a wrong backend; a miss (a new connection)
//! is looked up again, as without the earlier node.
//!
//! Rule changes: each entry keeps the (low 31 bits of the) generation of the ACL rules that
//! last let the connection through, stamped by the `lb` node from [`LbFlows::acl_gen`] when it
//! creates the entry. A request whose entry carries an older generation is not reported as
//! tracked but as a recheck: the ACL judges it, then settles the entry
//! ([`LbFlows::settle_rechecks`]): allowed, it takes the new generation; denied, the entry is
//! blocked, so that its replies are judged as new packets as well, until a request is
//! allowed again (OVN's `ct_mark.blocked`). The `lb` node itself never reads either field.

use std::sync::Arc;

use super::control::LbControl;
use super::flow::{FlowKey, IpFamily, PROTO_SCTP, PROTO_TCP, PROTO_UDP};
use super::node::{LbClock, NatEntry};
use super::service::{ServiceRt, ServiceTable};
use crate::conntrack::{ConnTrack, Direction, Handle};
use crate::graph::VECTOR_SIZE;
use crate::meta::PacketMeta;

/// Packets classified, looked up and rewritten together (one batched lookup each).
pub const CHUNK: usize = 64;

/// What the `lb` node makes of a packet (step 1, no connection table).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) enum What {
    /// Not for a VIP and not from a backend: passes unchanged.
    #[default]
    Pass,
    /// To a VIP: the service id.
    Vip(u32),
    /// From a backend endpoint: its reply candidates (service, backend) in the table.
    Reply {
        /// First candidate.
        start: u32,
        /// Number of candidates.
        count: u32,
    },
}

/// The result of classifying one packet.
pub(crate) enum Class {
    /// Passes unchanged.
    Pass,
    /// An IP fragment to a VIP (dropped: ports unknown).
    VipFragment,
    /// Looked up under the key written.
    Flow(What),
}

/// The last endpoint looked up in a burst and its answer: packets of a burst mostly go to
/// the same VIP (or come from the same backend), so a 16-byte compare replaces the map's
/// hash and probe for them. Lives for one burst (the table may change between bursts).
pub(crate) struct Memo<V> {
    addr: [u8; 16],
    proto: u8,
    port: u16,
    family: u8,
    value: Option<V>,
}

impl<V: Copy> Memo<V> {
    /// Empty: family 0 never matches a packet's (4 or 6).
    pub(crate) fn new() -> Self {
        Memo {
            addr: [0; 16],
            proto: 0,
            port: 0,
            family: 0,
            value: None,
        }
    }

    /// The memoised answer for this endpoint, or `lookup`'s (then remembered).
    #[inline(always)]
    fn get(
        &mut self,
        addr: &[u8; 16],
        proto: u8,
        port: u16,
        family: u8,
        lookup: impl FnOnce() -> Option<V>,
    ) -> Option<V> {
        if self.family != family || self.port != port || self.proto != proto || self.addr != *addr {
            self.value = lookup();
            (self.addr, self.proto, self.port, self.family) = (*addr, proto, port, family);
        }
        self.value
    }
}

/// Both memos of a burst.
pub(crate) struct Memos {
    vip: Memo<u32>,
    reply: Memo<super::service::CandRange>,
}

impl Memos {
    /// Empty memos (one pair per burst).
    pub(crate) fn new() -> Self {
        Memos {
            vip: Memo::new(),
            reply: Memo::new(),
        }
    }
}

/// The lookup key of a reply from a backend of `svc`: the reverse of its connection's
/// original key, the source mapped back to the service's VIP and port.
#[inline(always)]
fn reply_key(svc: &ServiceRt, m: &PacketMeta) -> FlowKey {
    FlowKey {
        src: svc.vip,
        dst: m.dst_addr,
        src_port: svc.port.unwrap_or(m.src_port),
        dst_port: m.dst_port,
        proto: m.protocol,
        family: IpFamily::of_meta(m),
    }
}

/// Step 1 of the `lb` node for one packet: a TCP/UDP/SCTP packet whose destination is a service
/// endpoint is for a VIP (key: its own 5-tuple); one whose source is a backend endpoint is a
/// reply (key: the reverse of its connection's original key, the source mapped back to the
/// first candidate service's VIP and port); anything else passes. The key is written to
/// `key` in place (a returned key would be one more 40-byte copy per packet).
#[inline(always)]
pub(crate) fn classify(
    t: &ServiceTable,
    m: &PacketMeta,
    memo: &mut Memos,
    key: &mut FlowKey,
) -> Class {
    if m.l4_offset == 0
        || (m.protocol != PROTO_TCP && m.protocol != PROTO_UDP && m.protocol != PROTO_SCTP)
    {
        return Class::Pass;
    }
    let (proto, ipv) = (m.protocol, m.ip_version);
    if let Some(sid) = memo.vip.get(&m.dst_addr, proto, m.dst_port, ipv, || {
        t.vip_lookup(&m.dst_addr, proto, m.dst_port, ipv)
    }) {
        if m.is_fragment() {
            return Class::VipFragment;
        }
        *key = FlowKey::from_meta(m);
        return Class::Flow(What::Vip(sid));
    }
    let Some(r) = memo.reply.get(&m.src_addr, proto, m.src_port, ipv, || {
        t.reply_range(&m.src_addr, proto, m.src_port, ipv)
    }) else {
        return Class::Pass;
    };
    if m.is_fragment() || r.count == 0 {
        return Class::Pass;
    }
    let sid = t.cands[r.start as usize].0;
    let svc = &t.services[sid as usize];
    *key = reply_key(svc, m);
    Class::Flow(What::Reply {
        start: r.start,
        count: r.count,
    })
}

/// The hit an earlier node's lookup found for packet `m` (see the module doc), if it made
/// one and it still holds: `pre`/`pre_what` are that node's results by position (for the
/// table `t`, checked by the caller). Writes the packet's key to `key` from `m` and the
/// recorded class, without the endpoint lookups of [`classify`], and checks everything the
/// `lb` node will rely on: the hit must still name the packet's own flow
/// ([`ConnTrack::confirm`]); a request's service is taken from the entry, a reply's source
/// must be its backend's endpoint. `None` (also for a recorded miss, which is looked up
/// again): classify and look the packet up as usual.
#[inline(always)]
pub(crate) fn take_over(
    pre: &[u32; VECTOR_SIZE],
    pre_what: &[What; VECTOR_SIZE],
    t: &ServiceTable,
    ct: &ConnTrack<NatEntry>,
    m: &PacketMeta,
    now: u64,
    key: &mut FlowKey,
) -> Option<(What, (Handle, Direction), NatEntry)> {
    let p = usize::from(m.next).checked_sub(1)?;
    let h = flow_ref::decode(*pre.get(p)?)?;
    match pre_what[p] {
        What::Pass => None,
        What::Vip(_) => {
            *key = FlowKey::from_meta(m);
            let d = ct.confirm(h, key, now)?;
            let e = *ct.payload(h)?;
            Some((What::Vip(u32::from(e.service)), (h, d), e))
        }
        what @ What::Reply { start, .. } => {
            let &(sid, bid) = t.cands.get(start as usize)?;
            let be = t.backends.get(bid as usize)?;
            if be.addr != m.src_addr || be.port.is_some_and(|p| p != m.src_port) {
                return None;
            }
            let svc = t.services.get(sid as usize)?;
            *key = reply_key(svc, m);
            let d = ct.confirm(h, key, now)?;
            Some((what, (h, d), *ct.payload(h)?))
        }
    }
}

/// A connection-table lookup result handed from the node that made it to the `lb` node
/// (see the module doc): 0 = no hit (not looked up, or not found: the `lb` node looks the
/// packet up either way), otherwise the slot plus 1 (slots are below 2^31:
/// [`crate::conntrack::MAX_CAPACITY`] is 2^30 connections in at most 2^31 slots). The
/// direction is not kept: the `lb` node's check finds it again.
pub mod flow_ref {
    use crate::conntrack::{Direction, Handle};

    /// No hit.
    pub const NONE: u32 = 0;

    /// Encodes a lookup result.
    #[inline(always)]
    pub fn encode(r: Option<(Handle, Direction)>) -> u32 {
        r.map_or(NONE, |(h, _)| h.index() as u32 + 1)
    }

    /// The slot of a hit ([`NONE`]: `None`).
    #[inline(always)]
    pub fn decode(v: u32) -> Option<Handle> {
        v.checked_sub(1).map(|i| Handle::from_index(i as usize))
    }
}

/// Per-vector scratch space, allocated once.
pub(crate) struct Scratch {
    pub(crate) keys: [FlowKey; VECTOR_SIZE],
    pub(crate) out: [Option<(Handle, Direction)>; VECTOR_SIZE],
    /// The entry of `out`'s hit where [`take_over`] read it already, else `None`.
    pub(crate) entry: [Option<NatEntry>; VECTOR_SIZE],
    pub(crate) idx: [u16; VECTOR_SIZE],
    pub(crate) what: [What; VECTOR_SIZE],
    /// Positions (in `keys`) of the keys the node looks up itself.
    pub(crate) todo: [u16; VECTOR_SIZE],
    pub(crate) todo_keys: [FlowKey; VECTOR_SIZE],
    pub(crate) todo_out: [Option<(Handle, Direction)>; VECTOR_SIZE],
    pub(crate) remove: arrayvec::ArrayVec<FlowKey, VECTOR_SIZE>,
    /// Positions of the ICMP errors among the packets that pass step 1 (translated, if
    /// about a tracked connection, after the vector's other packets).
    pub(crate) icmp: arrayvec::ArrayVec<u16, VECTOR_SIZE>,
    /// The earlier node's lookup results by its vector position ([`flow_ref`] values).
    pub(crate) pre: [u32; VECTOR_SIZE],
    /// What the earlier node's classification made of each packet (valid with `pre`, for
    /// the table of epoch [`LbFlows::pre_epoch`]).
    pub(crate) pre_what: [What; VECTOR_SIZE],
    /// Positions of the requests the earlier node must judge again (their entries carry
    /// older ACL rules, or are blocked).
    pub(crate) recheck: arrayvec::ArrayVec<u16, VECTOR_SIZE>,
}

impl Scratch {
    fn new() -> Box<Self> {
        Box::new(Scratch {
            keys: [FlowKey::default(); VECTOR_SIZE],
            out: [None; VECTOR_SIZE],
            entry: [None; VECTOR_SIZE],
            idx: [0; VECTOR_SIZE],
            what: [What::Pass; VECTOR_SIZE],
            todo: [0; VECTOR_SIZE],
            todo_keys: [FlowKey::default(); VECTOR_SIZE],
            todo_out: [None; VECTOR_SIZE],
            remove: arrayvec::ArrayVec::new(),
            icmp: arrayvec::ArrayVec::new(),
            pre: [flow_ref::NONE; VECTOR_SIZE],
            pre_what: [What::Pass; VECTOR_SIZE],
            recheck: arrayvec::ArrayVec::new(),
        })
    }
}

/// One worker's load-balancer state: the connection table, the service table in use (and
/// the control's epoch it came with), the clock, and scratch space.
pub struct LbFlows {
    pub(crate) control: Arc<LbControl>,
    pub(crate) table: Arc<ServiceTable>,
    pub(crate) epoch: u64,
    pub(crate) ct: ConnTrack<NatEntry>,
    pub(crate) clock: LbClock,
    pub(crate) scratch: Box<Scratch>,
    /// Tables adopted since the `lb` node last counted them (whichever node noticed).
    pub(crate) swaps: u64,
    /// The table epoch `Scratch::pre_what` refers to.
    pub(crate) pre_epoch: u64,
    /// The generation (low 31 bits) of the ACL rules that judged this vector's new
    /// connections: the `lb` node stamps it on the entries it creates (0 without an ACL).
    pub(crate) acl_gen: u32,
}

impl std::fmt::Debug for LbFlows {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LbFlows")
            .field("generation", &self.table.generation)
            .field("conntrack", &self.ct)
            .finish()
    }
}

impl LbFlows {
    /// State following `control`'s tables, with a connection table sized by the control's
    /// settings, reading `clock`.
    pub fn new(control: Arc<LbControl>, clock: LbClock) -> Self {
        let ctc = control.conntrack();
        let ct = ConnTrack::with_capacity(ctc.capacity, ctc.timeouts.to_ticks(clock.hz()));
        let (table, epoch) = control.subscribe();
        LbFlows {
            control,
            table,
            epoch,
            ct,
            clock,
            scratch: Scratch::new(),
            swaps: 0,
            pre_epoch: 0,
            acl_gen: 0,
        }
    }

    /// The connection table (diagnostics).
    pub fn conntrack(&self) -> &ConnTrack<NatEntry> {
        &self.ct
    }

    /// The service table in use.
    pub fn table(&self) -> &Arc<ServiceTable> {
        &self.table
    }

    /// Adopts the control's newest table if it changed (counted in `swaps`).
    #[inline(always)]
    pub(crate) fn refresh(&mut self) {
        let epoch = self.control.epoch();
        if epoch != self.epoch {
            self.pick_up_table(epoch);
        }
    }

    #[cold]
    #[inline(never)]
    fn pick_up_table(&mut self, epoch: u64) {
        self.table = self.control.table();
        self.epoch = epoch;
        self.swaps += 1;
    }

    /// For a node that runs before the `lb` node (a stateful `acl`): classifies `meta`'s
    /// packets as the `lb` node will, looks the VIP flows and replies up in one batch per
    /// chunk, hands each result to the `lb` node (kept here by position, the position plus
    /// one in the packet's [`PacketMeta::next`]; the `lb` node then does not look them up
    /// again) and sets `tracked[i]` for the packets
    /// of connections the `lb` node tracks: a request whose entry it created, or a reply
    /// whose entry names the reply's backend. Returns how many are tracked.
    ///
    /// `acl_gen` is the generation of the caller's rules. A request whose entry was last
    /// allowed under other rules, or is blocked, is not tracked but recorded as a recheck:
    /// the caller judges it and then calls [`LbFlows::settle_rechecks`] (see the module
    /// doc). Replies of blocked entries are not tracked either.
    ///
    /// A lookup hit refreshes the entry's idle timer, exactly once per packet (the `lb` node
    /// skips its own lookup for these packets); TCP state is left to the `lb` node.
    pub fn look_up_tracked<P: crate::PacketBuf>(
        &mut self,
        pkts: &[P],
        meta: &mut [PacketMeta],
        tracked: &mut [bool],
        acl_gen: u64,
    ) -> usize {
        self.refresh();
        self.pre_epoch = self.epoch;
        // Low 31 bits: a stale stamp passes for current only after 2^31 rule changes.
        let gen = acl_gen as u32 & NatEntry::GEN_MASK;
        self.acl_gen = gen;
        let now = self.clock.now();
        let LbFlows {
            table, ct, scratch, ..
        } = self;
        let t: &ServiceTable = table;
        let s = &mut **scratch;
        s.recheck.clear();
        let mut memo = Memos::new();
        let mut n_tracked = 0;
        let n = meta.len().min(tracked.len()).min(VECTOR_SIZE);
        for base in (0..n).step_by(CHUNK) {
            let end = (base + CHUNK).min(n);
            let mut k = 0;
            for (i, m) in meta.iter_mut().enumerate().take(end).skip(base) {
                tracked[i] = false;
                m.next = 0;
                match classify(t, &*m, &mut memo, &mut s.keys[k]) {
                    Class::Flow(what) => {
                        s.what[k] = what;
                        s.idx[k] = i as u16;
                        k += 1;
                    }
                    // An ICMP error about a tracked connection is tracked too (the `lb`
                    // node translates it).
                    Class::Pass if crate::icmp_error::is_icmp_error(m) => {
                        let related = pkts.get(i).is_some_and(|p| {
                            super::icmp::related(t, ct, p.data(), m, now).is_some()
                        });
                        tracked[i] = related;
                        n_tracked += usize::from(related);
                    }
                    _ => {}
                }
            }
            if k == 0 {
                continue;
            }
            ct.lookup_batch(&s.keys[..k], now, &mut s.out[..k]);
            for j in 0..k {
                let i = usize::from(s.idx[j]);
                let r = s.out[j];
                s.pre[i] = flow_ref::encode(r);
                s.pre_what[i] = s.what[j];
                meta[i].next = i as u16 + 1;
                let is = match (s.what[j], r) {
                    (What::Vip(_), Some((h, Direction::Original))) => {
                        let current = ct.payload(h).is_some_and(|e| e.allowed_by(gen));
                        if !current {
                            let _ = s.recheck.try_push(i as u16);
                        }
                        current
                    }
                    (What::Reply { start, .. }, Some((h, Direction::Reply))) => ct
                        .payload(h)
                        .is_some_and(|e| e.backend == t.cands[start as usize].1 && !e.blocked()),
                    _ => false,
                };
                tracked[i] = is;
                n_tracked += usize::from(is);
            }
        }
        n_tracked
    }

    /// Requests the last [`LbFlows::look_up_tracked`] left to be judged again.
    pub fn rechecks(&self) -> usize {
        self.scratch.recheck.len()
    }

    /// Settles the rechecks of the last [`LbFlows::look_up_tracked`] by the caller's
    /// `decisions` (by position): a request passed (`Next`) stamps its entry with the
    /// caller's generation and unblocks it; one dropped blocks it. Returns the connections
    /// newly blocked. Call before any other node touches the table (the recorded slots are
    /// valid until entries are removed).
    pub fn settle_rechecks(&mut self, decisions: &[crate::graph::Decision]) -> u64 {
        let gen = self.acl_gen;
        let s = &mut *self.scratch;
        let mut blocked = 0;
        for &i in &s.recheck {
            let i = usize::from(i);
            let (Some(h), Some(d)) = (flow_ref::decode(s.pre[i]), decisions.get(i)) else {
                continue;
            };
            let Some(e) = self.ct.payload_mut(h) else {
                continue;
            };
            if matches!(d, crate::graph::Decision::Next(_)) {
                e.allow(gen);
            } else if !e.blocked() {
                e.block();
                blocked += 1;
            }
        }
        s.recheck.clear();
        blocked
    }
}

#[cfg(test)]
mod tests {
    use super::flow_ref;
    use crate::conntrack::{Direction, Handle};

    #[test]
    fn flow_ref_round_trips() {
        assert_eq!(flow_ref::encode(None), flow_ref::NONE);
        assert_eq!(flow_ref::decode(flow_ref::NONE), None);
        for idx in [0usize, 1, 12345, (1 << 31) - 1] {
            for d in [Direction::Original, Direction::Reply] {
                let v = flow_ref::encode(Some((Handle::from_index(idx), d)));
                assert!(v > flow_ref::NONE);
                assert_eq!(flow_ref::decode(v), Some(Handle::from_index(idx)));
            }
        }
    }
}
