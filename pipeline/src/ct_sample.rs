//! `show conntrack`: connections sampled from the workers' own connection tables, without
//! locks on the packet path (like VPP's `show acl-plugin sessions` or `ovs-appctl
//! dpctl/dump-conntrack`).
//!
//! # How a sample is taken
//! Every stateful node instance (the `lb` node, a stateful `acl` node) of every worker owns a
//! [`CtServer`]; the control side holds its [`CtSampler`] (a cloneable `Send + Sync` handle,
//! from [`crate::Graph::ct_samplers`]).
//! 1. [`CtSampler::request`] stores the query, with a `Vec` of `limit` entries' capacity
//!    allocated by the requester, raises the node's flag and rings its graph's doorbell (a
//!    counter).
//! 2. The graph loads the doorbell once per burst (after its nodes ran: one atomic load, the
//!    same on x86 as a relaxed one) and in [`crate::Graph::idle`], which the worker calls when
//!    a poll found no packets. Only while a request is new or a sweep under way does it call
//!    the nodes' [`crate::graph::Node::serve_ct`]: the nodes' vector functions carry no
//!    sampling code at all. A node with a request takes the query (a `try_lock`, never a
//!    wait) and scans its table from a cursor, [`SAMPLE_SLOTS_PER_VECTOR`] slots per call
//!    ([`ConnTrack::scan`]), copying the live entries that match into the reserved `Vec`
//!    (plain data, never beyond its capacity: nothing is allocated on the worker), until
//!    `limit` entries plus one more match (then the sample is `truncated`) or the end of the
//!    table. It then publishes the sample (another `try_lock`, retried at the next call).
//! 3. [`CtSampler::poll`] returns it, turned into [`CtEntryView`]s on the calling thread
//!    (service names, addresses, seconds).
//!
//! A sample is a sweep over time, not a snapshot: an entry moved by a deletion's backward
//! shift across the cursor may be missed or seen twice, entries created behind the cursor
//! are missed. A table of `S` slots is swept within `S / SAMPLE_SLOTS_PER_VECTOR` bursts
//! (or idle polls).
//!
//! # Cost on the packet path
//! One atomic load per burst in [`crate::Graph::run`]; nothing in the nodes. Measured with
//! `target/release/lb-bench --quick` (`parse -> lb -> forward`), 12 interleaved pairs
//! against the build before this module (A B A B, on a 2-core machine shared with two
//! builds, load 7-8, so about 5% noise), median of the runs' medians in cycles/packet:
//! 1k flows 127.1 before, 131.9 after; 100k flows 197.6 before, 188.6 after (median of the
//! runs' best rounds: 109.2 / 105.1 and 160.4 / 160.6): no difference beyond the noise.
//! An earlier version, where the `lb` node checked its own flag at the end of each vector,
//! measured 1k 176.5 -> 193.5 and 100k 259.4 -> 271.7 over 26 pairs under heavier load:
//! within that noise too, but the check moved to the graph, which leaves the nodes' vector
//! functions unchanged.
//!
//! # Age and packets
//! Every entry records the unit of the table's clock it was created in and counts its
//! packets (see [`crate::conntrack`], "Age and packets": the 64-byte slot found the room by
//! keeping its expiry as a 32-bit unit count and narrowing the `lb` node's payload,
//! [`NatEntry`], to 12 bytes). A sample shows each connection's state, age, idle time (from
//! its expiry and the timeout of its state), time to expiry and packets.

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{
    AtomicBool, AtomicU64,
    Ordering::{Relaxed, Release},
};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use serde::{Deserialize, Serialize};

use crate::acl::net::IpNet;
use crate::conntrack::{ConnState, ConnTrack};
use crate::filter_words::{FilterWord, WORDS};
use crate::flow_key::{
    FlowKey, IpFamily, PROTO_ICMP, PROTO_ICMPV6, PROTO_SCTP, PROTO_TCP, PROTO_UDP,
};
use crate::lb::{LbClock, NatEntry, ServiceTable};

/// Slots a node examines per burst (or idle poll) while a sample is being taken (the tags
/// of 4 KiB, and the lines of the occupied slots among them, read in order).
pub const SAMPLE_SLOTS_PER_VECTOR: usize = 4096;

/// The most entries one sample may hold (a larger `limit` is cut to this).
pub const MAX_SAMPLE_LIMIT: usize = 100_000;

/// The entries a sample holds when the query names no limit.
pub const DEFAULT_SAMPLE_LIMIT: usize = 100;

/// Which connections a sample returns. Every field left `None` matches all; a connection
/// matches when one direction of it matches every field that is set: its originator's
/// tuple, the reverse of it, or, for a load-balanced connection, the tuple as translated to
/// its backend (client -> backend) or the reverse of that (the backend's replies).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CtFilter {
    /// Source address or prefix.
    pub src: Option<IpNet>,
    /// Destination address or prefix.
    pub dst: Option<IpNet>,
    /// IP protocol number.
    pub protocol: Option<u8>,
    /// Source port.
    pub src_port: Option<u16>,
    /// Destination port.
    pub dst_port: Option<u16>,
}

/// A sample request: which connections, and at most how many.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CtQuery {
    /// Which connections.
    pub filter: CtFilter,
    /// At most this many entries (cut to [`MAX_SAMPLE_LIMIT`]).
    pub limit: usize,
}

impl Default for CtQuery {
    fn default() -> Self {
        Self {
            filter: CtFilter::default(),
            limit: DEFAULT_SAMPLE_LIMIT,
        }
    }
}

impl CtQuery {
    /// Parses the words of `show conntrack [src A[/LEN]] [dst A[/LEN]] [proto NAME|N]
    /// [sport N] [dport N] [--limit N]` (after `show conntrack`; the 5-tuple words as
    /// [`crate::filter_words`] parses them for `trace add` too). The error is one line naming
    /// the offending word.
    pub fn parse<S: AsRef<str>>(words: &[S]) -> Result<Self, String> {
        let mut q = CtQuery::default();
        let mut it = words.iter().map(AsRef::as_ref);
        while let Some(w) = it.next() {
            let Some(v) = it.next() else {
                return Err(format!("`{w}` needs a value"));
            };
            match FilterWord::parse(w, v)? {
                Some(FilterWord::Src(n)) => q.filter.src = Some(n),
                Some(FilterWord::Dst(n)) => q.filter.dst = Some(n),
                Some(FilterWord::Proto(p)) => q.filter.protocol = Some(p),
                Some(FilterWord::SrcPort(p)) => q.filter.src_port = Some(p),
                Some(FilterWord::DstPort(p)) => q.filter.dst_port = Some(p),
                None if w == "--limit" || w == "limit" => {
                    q.limit = v
                        .parse::<usize>()
                        .ok()
                        .filter(|&n| n <= MAX_SAMPLE_LIMIT)
                        .ok_or_else(|| {
                            format!("--limit: `{v}` is not a number of 0 to {MAX_SAMPLE_LIMIT}")
                        })?
                }
                None => return Err(format!("unknown filter `{w}` ({WORDS}, --limit)")),
            }
        }
        Ok(q)
    }
}

fn addr_of(a: &[u8; 16], family: IpFamily) -> IpAddr {
    match family {
        IpFamily::V4 => IpAddr::V4(Ipv4Addr::new(a[0], a[1], a[2], a[3])),
        IpFamily::V6 => IpAddr::V6(Ipv6Addr::from(*a)),
    }
}

impl CtFilter {
    /// Whether one direction `src:sport -> dst:dport` matches every field that is set
    /// (the protocol is checked by the caller).
    fn matches_one(&self, src: IpAddr, sport: u16, dst: IpAddr, dport: u16) -> bool {
        self.src.is_none_or(|n| n.contains(&src))
            && self.dst.is_none_or(|n| n.contains(&dst))
            && self.src_port.is_none_or(|p| p == sport)
            && self.dst_port.is_none_or(|p| p == dport)
    }

    /// Whether the connection of originator key `k` (translated to `backend` when load
    /// balanced) matches: see the type's documentation.
    fn matches(&self, k: &FlowKey, backend: Option<(IpAddr, u16)>) -> bool {
        if self.protocol.is_some_and(|p| p != k.proto) {
            return false;
        }
        let (s, d) = (addr_of(&k.src, k.family), addr_of(&k.dst, k.family));
        if self.matches_one(s, k.src_port, d, k.dst_port)
            || self.matches_one(d, k.dst_port, s, k.src_port)
        {
            return true;
        }
        backend.is_some_and(|(b, bp)| {
            self.matches_one(s, k.src_port, b, bp) || self.matches_one(b, bp, s, k.src_port)
        })
    }
}

/// What a node knows about an entry besides the table's own fields (worker side, plain data).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Extra {
    /// A load-balanced connection: service and backend ids, the backend endpoint, and the
    /// ACL generation stamped by an `acl` node sharing the table (0: none).
    Lb {
        service: u32,
        backend: (IpAddr, u16),
        acl_gen: u32,
    },
    /// A stateful ACL's connection: the generation of the rules that allowed it.
    Acl { generation: u64 },
}

/// An entry as the worker copies it (no allocation: the `Vec` it goes in was reserved).
#[derive(Debug, Clone, Copy)]
struct RawEntry {
    key: FlowKey,
    state: ConnState,
    /// Ticks since the last refresh.
    idle: u64,
    /// Ticks until expiry.
    left: u64,
    /// Ticks since creation.
    age: u64,
    /// Packets counted by the table.
    packets: u32,
    extra: Extra,
}

/// One connection of a sample, as `show conntrack` prints it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CtEntryView {
    /// `tcp`, `udp`, `icmp`, `icmpv6`, or the protocol number.
    pub protocol: String,
    /// The originator's address.
    pub src: IpAddr,
    /// The originator's port (ICMP echo: the identifier).
    pub src_port: u16,
    /// The address the originator sent to (for `lb`, the VIP).
    pub dst: IpAddr,
    /// The port the originator sent to.
    pub dst_port: u16,
    /// `syn-seen`, `established`, `fin-seen`, `closed` (TCP), `udp` or `other`.
    pub state: String,
    /// Seconds since the connection's first packet (whole seconds, rounded down; never less
    /// than `idle_secs`).
    pub age_secs: u64,
    /// Seconds since the connection's last packet (whole seconds, rounded down).
    pub idle_secs: u64,
    /// Seconds until it expires unless a packet refreshes it (rounded down).
    pub expires_in_secs: u64,
    /// Packets of the connection in both directions, as the node counted them (each packet
    /// once, when it found or created the entry; saturates at 4,294,967,295).
    pub packets: u64,
    /// `lb`: the service's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// `lb`: the backend address and port the connection is on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend: Option<SocketAddr>,
    /// `acl`: the generation of the rules that allowed the connection; `lb` with an `acl`
    /// sharing its table: the low 31 bits of that generation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acl_generation: Option<u64>,
}

/// The connections one node instance of one worker returned for a query.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CtSample {
    /// The node's name.
    pub node: String,
    /// The matching connections, in table order.
    pub entries: Vec<CtEntryView>,
    /// Entries in the table when the sample was published (expired ones not yet reclaimed
    /// included: paced aging frees them within an eighth of the shortest timeout).
    pub total: usize,
    /// Slots examined.
    pub scanned: usize,
    /// More connections matched than `limit`.
    pub truncated: bool,
}

/// The name of a tracking state as [`CtEntryView::state`] spells it.
pub fn state_name(s: ConnState) -> &'static str {
    match s {
        ConnState::Udp => "udp",
        ConnState::Other => "other",
        ConnState::Sctp => "sctp",
        ConnState::TcpSynSeen => "syn-seen",
        ConnState::TcpEstablished => "established",
        ConnState::TcpFinSeen => "fin-seen",
        ConnState::TcpClosed => "closed",
    }
}

fn proto_name(p: u8) -> String {
    match p {
        PROTO_TCP => "tcp".into(),
        PROTO_UDP => "udp".into(),
        PROTO_SCTP => "sctp".into(),
        PROTO_ICMP => "icmp".into(),
        PROTO_ICMPV6 => "icmpv6".into(),
        n => n.to_string(),
    }
}

struct Request {
    seq: u64,
    query: CtQuery,
    entries: Vec<RawEntry>,
}

struct Published {
    seq: u64,
    entries: Vec<RawEntry>,
    total: usize,
    scanned: usize,
    truncated: bool,
    hz: u64,
    /// The `lb` node's service table, for the services' names.
    names: Option<Arc<ServiceTable>>,
}

#[derive(Default)]
struct Shared {
    node: OnceLock<String>,
    /// The graph's doorbell, rung after each request (see [`crate::Graph::ct_samplers`]).
    bell: OnceLock<Arc<AtomicU64>>,
    /// A request waits in `request` (set and cleared under its lock).
    pending: AtomicBool,
    /// Sequence number of the latest request.
    seq: AtomicU64,
    request: Mutex<Option<Request>>,
    done: Mutex<Option<Published>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The control side's handle to one node instance's connection sampling (cloneable,
/// `Send + Sync`).
#[derive(Clone, Default)]
pub struct CtSampler(Arc<Shared>);

impl std::fmt::Debug for CtSampler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CtSampler")
            .field("node", &self.node())
            .field("pending", &self.0.pending.load(Relaxed))
            .finish()
    }
}

impl CtSampler {
    /// The node's name ("" until the graph names it in [`crate::Graph::ct_samplers`]).
    pub fn node(&self) -> &str {
        self.0.node.get().map_or("", String::as_str)
    }

    /// Names the node and attaches the graph's doorbell (the first call wins).
    pub(crate) fn attach(&self, name: &str, bell: &Arc<AtomicU64>) {
        let _ = self.0.node.set(name.to_string());
        let _ = self.0.bell.set(Arc::clone(bell));
    }

    /// Asks the worker for the connections matching `q` (replacing any request not yet
    /// answered; a sample not yet polled is discarded). Reserves the entries' memory here.
    /// Only samplers taken from [`crate::Graph::ct_samplers`] ring their graph's doorbell;
    /// the graph does not look at the others' requests.
    pub fn request(&self, q: CtQuery) {
        let seq = self.0.seq.fetch_add(1, Relaxed) + 1;
        let entries = Vec::with_capacity(q.limit.min(MAX_SAMPLE_LIMIT));
        *lock(&self.0.done) = None;
        let mut r = lock(&self.0.request);
        *r = Some(Request {
            seq,
            query: q,
            entries,
        });
        // Under the lock: the worker clears the flag under it when it takes the request.
        self.0.pending.store(true, Relaxed);
        drop(r);
        // Released after the flag: a graph that sees the new count sees the flag.
        if let Some(b) = self.0.bell.get() {
            b.fetch_add(1, Release);
        }
    }

    /// The answer to the latest request, once the worker has published it (then `None`
    /// again until the next request).
    pub fn poll(&self) -> Option<CtSample> {
        let p = {
            let mut d = lock(&self.0.done);
            if d.as_ref()?.seq != self.0.seq.load(Relaxed) {
                return None;
            }
            d.take()?
        };
        let hz = p.hz.max(1);
        let entries = p
            .entries
            .iter()
            .map(|e| {
                let (service, backend, acl_generation) = match e.extra {
                    Extra::Lb {
                        service: sid,
                        backend: b,
                        acl_gen,
                    } => (
                        p.names
                            .as_ref()
                            .and_then(|t| t.services.get(sid as usize))
                            .map(|s| s.name.clone()),
                        Some(SocketAddr::new(b.0, b.1)),
                        (acl_gen != 0).then_some(u64::from(acl_gen)),
                    ),
                    Extra::Acl { generation } => (None, None, Some(generation)),
                };
                CtEntryView {
                    protocol: proto_name(e.key.proto),
                    src: addr_of(&e.key.src, e.key.family),
                    src_port: e.key.src_port,
                    dst: addr_of(&e.key.dst, e.key.family),
                    dst_port: e.key.dst_port,
                    state: state_name(e.state).to_string(),
                    age_secs: e.age / hz,
                    idle_secs: e.idle / hz,
                    expires_in_secs: e.left / hz,
                    packets: u64::from(e.packets),
                    service,
                    backend,
                    acl_generation,
                }
            })
            .collect();
        Some(CtSample {
            node: self.node().to_string(),
            entries,
            total: p.total,
            scanned: p.scanned,
            truncated: p.truncated,
        })
    }
}

/// A sweep in progress on the worker.
struct Job {
    seq: u64,
    filter: CtFilter,
    limit: usize,
    entries: Vec<RawEntry>,
    cursor: usize,
    truncated: bool,
    finished: bool,
}

/// The worker side of one node instance's sampling (owned by the node).
#[derive(Default)]
pub struct CtServer {
    handle: CtSampler,
    job: Option<Job>,
}

impl std::fmt::Debug for CtServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CtServer")
            .field("busy", &self.job.is_some())
            .finish()
    }
}

impl CtServer {
    /// A server with no request.
    pub fn new() -> Self {
        Self::default()
    }

    /// The control side's handle.
    pub fn handle(&self) -> CtSampler {
        self.handle.clone()
    }

    /// Whether a request waits or a sweep is under way (a relaxed atomic load while nothing
    /// is asked): the node checks it in [`crate::graph::Node::serve_ct`].
    #[inline(always)]
    pub fn wants(&self) -> bool {
        self.job.is_some() || self.handle.0.pending.load(Relaxed)
    }

    /// One step of the sweep over `ct` at tick `now` (a clock of `hz` ticks per second):
    /// takes a waiting request, scans [`SAMPLE_SLOTS_PER_VECTOR`] slots, publishes when
    /// done. `extra` describes a payload; `names` gives the `lb` service table at publishing.
    #[cold]
    #[inline(never)]
    fn serve<T: Copy + Default>(
        &mut self,
        ct: &ConnTrack<T>,
        now: u64,
        hz: u64,
        extra: impl Fn(&T) -> Extra,
        names: impl FnOnce() -> Option<Arc<ServiceTable>>,
    ) {
        let sh = &*self.handle.0;
        if sh.pending.load(Relaxed) {
            if let Ok(mut r) = sh.request.try_lock() {
                if let Some(req) = r.take() {
                    // A newer request replaces a sweep under way.
                    self.job = Some(Job {
                        seq: req.seq,
                        filter: req.query.filter,
                        limit: req.query.limit.min(req.entries.capacity()),
                        entries: req.entries,
                        cursor: 0,
                        truncated: false,
                        finished: false,
                    });
                }
                sh.pending.store(false, Relaxed);
            }
        }
        let Some(job) = self.job.as_mut() else {
            return;
        };
        if !job.finished {
            let from = job.cursor;
            let Job {
                filter,
                limit,
                entries,
                truncated,
                ..
            } = job;
            let next = ct.scan(from, SAMPLE_SLOTS_PER_VECTOR, now, |e| {
                if e.times.left == 0 || *truncated {
                    return;
                }
                let x = extra(e.payload);
                let backend = match x {
                    Extra::Lb { backend, .. } => Some(backend),
                    _ => None,
                };
                if !filter.matches(e.key, backend) {
                    return;
                }
                if entries.len() < *limit {
                    entries.push(RawEntry {
                        key: *e.key,
                        state: e.state,
                        idle: e.times.idle,
                        left: e.times.left,
                        age: e.times.age,
                        packets: e.packets,
                        extra: x,
                    });
                } else {
                    *truncated = true;
                }
            });
            job.cursor = next;
            job.finished = job.truncated || next >= ct.slot_count();
        }
        if job.finished {
            if let Ok(mut d) = sh.done.try_lock() {
                let job = self.job.take().expect("a job");
                *d = Some(Published {
                    seq: job.seq,
                    entries: job.entries,
                    total: ct.len(),
                    scanned: job.cursor,
                    truncated: job.truncated,
                    hz,
                    names: names(),
                });
            }
        }
    }
}

/// One step of the `lb` node's sampling (see [`CtServer::serve`]): entries name their
/// service and backend from `table`.
#[cold]
#[inline(never)]
pub(crate) fn serve_lb(
    server: &mut CtServer,
    ct: &ConnTrack<NatEntry>,
    table: &Arc<ServiceTable>,
    now: u64,
    clock: &LbClock,
) {
    let t: &ServiceTable = table;
    let extra = |e: &NatEntry| {
        let addr =
            t.backends
                .get(e.backend as usize)
                .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |b| {
                    let fam = if b.v6 { IpFamily::V6 } else { IpFamily::V4 };
                    addr_of(&b.addr, fam)
                });
        Extra::Lb {
            service: u32::from(e.service),
            backend: (addr, e.port),
            acl_gen: e.acl_gen(),
        }
    };
    server.serve(ct, now, clock.hz(), extra, || Some(Arc::clone(table)));
}

/// One step of a stateful `acl` node's sampling (see [`CtServer::serve`]): each entry's
/// payload holds the generation of the rules that allowed it ([`crate::acl::ct_entry`]).
#[cold]
#[inline(never)]
pub(crate) fn serve_acl(server: &mut CtServer, ct: &ConnTrack<u64>, now: u64, hz: u64) {
    server.serve(
        ct,
        now,
        hz,
        |&p| Extra::Acl {
            generation: crate::acl::ct_entry::generation(p),
        },
        || None,
    );
}

/// Renders samples as a table (one section per node instance), like `vppctl show acl-plugin
/// sessions` / `ovs-appctl dpctl/dump-conntrack`: protocol, originator -> destination,
/// state, age, idle and expiry seconds, packets, service and backend (`lb`), rule
/// generation (`acl`).
pub fn render_conntrack(samples: &[CtSample]) -> String {
    const COLUMNS: usize = 10;
    // Age, idle, expires, packets.
    const NUMERIC: [usize; 4] = [4, 5, 6, 7];
    let mut out = String::new();
    if samples.is_empty() {
        out.push_str("No connection tables\n");
    }
    for (i, s) in samples.iter().enumerate() {
        let _ = writeln!(
            out,
            "[{i}] node {}: {} shown, {} in table, {} slots scanned{}",
            s.node,
            s.entries.len(),
            s.total,
            s.scanned,
            if s.truncated {
                " (truncated: more match, raise --limit)"
            } else {
                ""
            }
        );
        if s.entries.is_empty() {
            continue;
        }
        let ep = |a: IpAddr, p: u16| SocketAddr::new(a, p).to_string();
        let mut rows: Vec<[String; COLUMNS]> = vec![[
            "proto",
            "source",
            "destination",
            "state",
            "age",
            "idle",
            "expires",
            "packets",
            "service",
            "backend",
        ]
        .map(String::from)];
        let gens = s.entries.iter().any(|e| e.acl_generation.is_some());
        for e in &s.entries {
            rows.push([
                e.protocol.clone(),
                ep(e.src, e.src_port),
                ep(e.dst, e.dst_port),
                e.state.clone(),
                e.age_secs.to_string(),
                e.idle_secs.to_string(),
                e.expires_in_secs.to_string(),
                e.packets.to_string(),
                e.service.clone().unwrap_or_else(|| "-".into()),
                e.backend.map_or_else(|| "-".into(), |b| b.to_string()),
            ]);
        }
        let mut width = [0usize; COLUMNS];
        for r in &rows {
            for (w, c) in width.iter_mut().zip(r) {
                *w = (*w).max(c.len());
            }
        }
        for (n, r) in rows.iter().enumerate() {
            let mut line = String::new();
            for (k, (c, w)) in r.iter().zip(width).enumerate() {
                // Numbers right-aligned, text left-aligned.
                if NUMERIC.contains(&k) {
                    let _ = write!(line, "{c:>w$}  ");
                } else {
                    let _ = write!(line, "{c:<w$}  ");
                }
            }
            if gens {
                let g = match n {
                    0 => "acl-gen".to_string(),
                    _ => s.entries[n - 1]
                        .acl_generation
                        .map_or_else(|| "-".into(), |g| g.to_string()),
                };
                line.push_str(&g);
            }
            let _ = writeln!(out, "{}", line.trim_end());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conntrack::{Direction, TcpFlags, Timeouts};

    const TMO: Timeouts = Timeouts {
        udp: 50,
        tcp_established: 300,
        tcp_transient: 20,
        other: 10,
    };

    fn tcp(i: u8) -> FlowKey {
        FlowKey::v4(
            [10, 0, 0, i],
            [10, 9, 9, 9],
            1000 + u16::from(i),
            80,
            PROTO_TCP,
        )
    }

    fn drive(server: &mut CtServer, ct: &ConnTrack<u64>, now: u64) -> (usize, CtSample) {
        for steps in 1..=100 {
            serve_acl(server, ct, now, 10);
            if let Some(s) = server.handle().poll() {
                return (steps, s);
            }
        }
        panic!("no sample in 100 steps");
    }

    #[test]
    fn query_words_parse_and_refuse_with_the_word() {
        let q = CtQuery::parse(&[
            "src",
            "10.0.0.0/8",
            "proto",
            "udp",
            "dport",
            "53",
            "--limit",
            "7",
        ])
        .unwrap();
        assert_eq!(q.limit, 7);
        assert_eq!(q.filter.protocol, Some(PROTO_UDP));
        assert_eq!(q.filter.dst_port, Some(53));
        assert_eq!(q.filter.src, Some("10.0.0.0/8".parse().unwrap()));
        assert_eq!(CtQuery::parse::<&str>(&[]).unwrap(), CtQuery::default());
        for (words, want) in [
            (&["sport", "70000"][..], "sport: `70000`"),
            (&["proto", "gre"][..], "proto: `gre`"),
            (&["dst"][..], "`dst` needs a value"),
            (&["via", "x"][..], "unknown filter `via`"),
            (&["--limit", "100001"][..], "--limit: `100001`"),
            (&["src", "10.0.0.300"][..], "src: `10.0.0.300`"),
        ] {
            let e = CtQuery::parse(words).unwrap_err();
            assert!(e.starts_with(want), "{e}");
        }
    }

    #[test]
    fn a_sweep_is_bounded_per_step_and_skips_expired_entries() {
        // 8192 slots: two steps of 4096.
        let mut ct = ConnTrack::<u64>::with_capacity(4096, TMO);
        assert_eq!(ct.slot_count(), 2 * SAMPLE_SLOTS_PER_VECTOR);
        for i in 0..40 {
            ct.insert(&tcp(i), 0, u64::from(i)).unwrap();
        }
        // Ten UDP flows at tick 100 (TCP handshakes expire at 20).
        for i in 0..10u8 {
            let k = FlowKey::v4([10, 1, 0, i], [10, 9, 9, 9], 5000, 53, PROTO_UDP);
            // Generation 7, allowed by the third ACL.
            ct.insert(&k, 100, crate::acl::ct_entry::pack(7, 3))
                .unwrap();
        }
        let h = ct.lookup(&tcp(3), 100);
        assert!(h.is_none(), "expired");
        let mut server = CtServer::new();
        let sampler = server.handle();
        assert!(!server.wants());
        assert!(sampler.poll().is_none());
        sampler.request(CtQuery::default());
        assert!(server.wants());
        let (steps, s) = drive(&mut server, &ct, 110);
        assert_eq!(steps, 2, "one step per 4096 slots");
        assert!(!server.wants());
        assert_eq!((s.entries.len(), s.total, s.scanned), (10, 50, 8192));
        assert!(!s.truncated);
        for e in &s.entries {
            assert_eq!((e.protocol.as_str(), e.state.as_str()), ("udp", "udp"));
            // Ten ticks of 10 Hz idle, 40 ticks left.
            assert_eq!((e.idle_secs, e.expires_in_secs), (1, 4));
            // Created at tick 100 by its one packet.
            assert_eq!((e.age_secs, e.packets), (1, 1));
            assert_eq!(e.acl_generation, Some(7));
        }
        assert!(sampler.poll().is_none(), "taken");
    }

    #[test]
    fn a_new_request_replaces_the_sweep_under_way() {
        let mut ct = ConnTrack::<u64>::with_capacity(4096, TMO);
        for i in 0..20 {
            ct.insert(&tcp(i), 0, 1).unwrap();
        }
        let h = ct.lookup(&tcp(5), 1).unwrap().0;
        ct.update_tcp(h, TcpFlags(TcpFlags::RST), Direction::Original, 1);
        let mut server = CtServer::new();
        let sampler = server.handle();
        sampler.request(CtQuery::default());
        serve_acl(&mut server, &ct, 2, 1);
        assert!(sampler.poll().is_none(), "half way");
        let mut q = CtQuery::default();
        q.filter.src = Some("10.0.0.5".parse().unwrap());
        sampler.request(q);
        let (_, s) = drive(&mut server, &ct, 2);
        assert_eq!(s.entries.len(), 1);
        assert_eq!(s.entries[0].state, "closed");
        assert_eq!(s.entries[0].src_port, 1005);
    }

    #[test]
    fn render_lists_every_entry_and_says_when_truncated() {
        let e = |i: u8, svc: Option<&str>| CtEntryView {
            protocol: "tcp".into(),
            src: IpAddr::V4(Ipv4Addr::new(198, 51, 100, i)),
            src_port: 1000 + u16::from(i),
            dst: "192.0.2.10".parse().unwrap(),
            dst_port: 80,
            state: "established".into(),
            age_secs: 100 + u64::from(i),
            idle_secs: u64::from(i),
            expires_in_secs: 86_400 - u64::from(i),
            packets: 1000 * u64::from(i),
            service: svc.map(String::from),
            backend: svc.map(|_| "10.0.0.1:8080".parse().unwrap()),
            acl_generation: None,
        };
        let s = CtSample {
            node: "lb".into(),
            entries: vec![e(1, Some("web")), e(2, None)],
            total: 5,
            scanned: 2048,
            truncated: true,
        };
        let text = render_conntrack(&[s]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4, "{text}");
        assert!(lines[0].contains("node lb: 2 shown, 5 in table, 2048 slots scanned (truncated"));
        let cols: Vec<&str> = lines[2].split_whitespace().collect();
        assert_eq!(
            cols,
            [
                "tcp",
                "198.51.100.1:1001",
                "192.0.2.10:80",
                "established",
                "101",
                "1",
                "86399",
                "1000",
                "web",
                "10.0.0.1:8080"
            ]
        );
        let cols: Vec<&str> = lines[3].split_whitespace().collect();
        assert_eq!(cols[4..], ["102", "2", "86398", "2000", "-", "-"]);
        // Numbers are right-aligned: the packets column ends at the same place.
        let end = lines[1].find("packets").unwrap() + "packets".len();
        assert_eq!(lines[2].find("1000").map(|at| at + 4), Some(end));
        // Columns line up: the state starts at the same place in every line.
        let at = lines[1].find("state").unwrap();
        assert_eq!(lines[2].find("established"), Some(at));
        assert_eq!(lines[3].find("established"), Some(at));
        assert_eq!(render_conntrack(&[]), "No connection tables\n");
    }
}
