//! ACL log lines, as ovn-controller writes them for an NB ACL with `log=true`: one line per
//! logged verdict, `name="...", verdict=..., severity=..., direction=...: <packet fields>`,
//! rate-limited by the NB `Meter` the ACL's `meter` names (its first band's rate and burst),
//! or by a default limit when it names none.
//!
//! The parts, so that a worker never allocates, locks or makes a syscall for a log line:
//! - [`LogRecord`]: what a worker keeps of a logged packet (fixed size, `Copy`);
//! - [`LogRing`]: a preallocated single-producer single-consumer ring per worker, in safe
//!   Rust (each slot is eight atomic words; the head is published with release ordering,
//!   so the consumer sees whole records). A full ring refuses the record and the worker
//!   counts it (`ring-dropped`);
//! - [`TokenBucket`]: the rate limit of one meter (or the default), in integer nanoseconds;
//! - [`format_line`]: the line, from a record and the rule's [`LogSpec`];
//! - [`LogDrain`]: on a control thread, drains the rings, applies the buckets and hands the
//!   lines to a writer, counting logged, rate-limited and ring-dropped lines ([`LogCounts`]).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

use super::model::{Action, Direction};
use crate::meta::PacketMeta;

/// `severity` of an NB ACL (empty in the NB: `info`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// `alert`.
    Alert,
    /// `warning`.
    Warning,
    /// `notice`.
    Notice,
    /// `info` (the default).
    #[default]
    Info,
    /// `debug`.
    Debug,
}

impl Severity {
    /// The NB value (empty or unknown: `info`).
    pub fn from_nb(s: &str) -> Severity {
        match s {
            "alert" => Severity::Alert,
            "warning" => Severity::Warning,
            "notice" => Severity::Notice,
            "debug" => Severity::Debug,
            _ => Severity::Info,
        }
    }

    /// The word in the line.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Alert => "alert",
            Severity::Warning => "warning",
            Severity::Notice => "notice",
            Severity::Info => "info",
            Severity::Debug => "debug",
        }
    }
}

/// How one rule logs: the NB ACL's `name`, `severity` and `meter`, and whether the replies
/// of the connections it admits are logged too (`related`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSpec {
    /// `name` (empty: `<unnamed>` in the line, as OVN writes it).
    #[serde(default)]
    pub name: String,
    /// `severity`.
    #[serde(default)]
    pub severity: Severity,
    /// The meter's name (`None`: the default limit).
    #[serde(default)]
    pub meter: Option<String>,
    /// Also log the replies and related ICMP errors of the connections this rule admits
    /// (OVN's `options:log-related`), with `verdict=allow`. Only an `allow-related` rule of a
    /// stateful node admits connections; on any other rule it does nothing.
    #[serde(default, skip_serializing_if = "is_false")]
    pub related: bool,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// Longest `name` OVN accepts (the NB schema's `maxLength`).
pub const MAX_NAME_LEN: usize = 63;

impl LogSpec {
    /// Refuses what OVN's schema refuses: a `name` over 63 characters, an empty meter
    /// name; and a name with a `"` or a control character (it would break the line).
    pub fn check(&self) -> Result<(), String> {
        if self.name.chars().count() > MAX_NAME_LEN {
            return Err(format!(
                "name is {} characters, at most {MAX_NAME_LEN}",
                self.name.chars().count()
            ));
        }
        if self.name.chars().any(|c| c == '"' || c.is_control()) {
            return Err("name has a '\"' or a control character".into());
        }
        if self.meter.as_deref() == Some("") {
            return Err("meter is empty (leave it out for the default limit)".into());
        }
        Ok(())
    }
}

/// A rate limit: `rate` lines per second, bursts of up to `burst` lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    /// Lines per second (0: none pass).
    pub rate: u64,
    /// Bucket depth in lines (at least 1 when `rate` > 0).
    pub burst: u64,
}

/// The limit of lines without a meter (ovn-controller's packet-in path has its own
/// controller meter; this is ours).
pub const DEFAULT_LIMIT: RateLimit = RateLimit {
    rate: 100,
    burst: 100,
};

/// A token bucket in integer nanoseconds (no floating point drift): full at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenBucket {
    limit: RateLimit,
    /// Tokens in units of 1e-9 line (so one line = 1e9 units).
    units: u128,
    last_ns: u64,
}

const UNIT: u128 = 1_000_000_000;

impl TokenBucket {
    /// A full bucket at time `now_ns`.
    pub fn new(limit: RateLimit, now_ns: u64) -> TokenBucket {
        let burst = limit.burst.max(u64::from(limit.rate > 0));
        TokenBucket {
            limit: RateLimit { burst, ..limit },
            units: u128::from(burst) * UNIT,
            last_ns: now_ns,
        }
    }

    /// The limit.
    pub fn limit(&self) -> RateLimit {
        self.limit
    }

    /// Takes one line's token at `now_ns` if there is one.
    pub fn take(&mut self, now_ns: u64) -> bool {
        let dt = u128::from(now_ns.saturating_sub(self.last_ns));
        self.last_ns = self.last_ns.max(now_ns);
        let cap = u128::from(self.limit.burst) * UNIT;
        self.units = (self.units + dt * u128::from(self.limit.rate)).min(cap);
        if self.units >= UNIT {
            self.units -= UNIT;
            true
        } else {
            false
        }
    }
}

/// What a worker keeps of one logged packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogRecord {
    /// The program generation whose rule decided (to find the rule's [`LogSpec`]).
    pub epoch: u64,
    /// The rule's index in that program's rule set.
    pub rule: u32,
    /// The verdict.
    pub action: Action,
    /// The rule's direction.
    pub direction: Direction,
    /// Input port id.
    pub in_port: u16,
    /// Addresses (IPv4 in bytes 0..4).
    pub src: [u8; 16],
    /// Destination address.
    pub dst: [u8; 16],
    /// 4 or 6.
    pub ip_version: u8,
    /// IP protocol.
    pub protocol: u8,
    /// L4 ports (or ICMP echo id).
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// TTL / hop limit.
    pub ttl: u8,
    /// TCP flags.
    pub tcp_flags: u8,
    /// ICMP type.
    pub icmp_type: u8,
    /// ICMP code.
    pub icmp_code: u8,
}

impl LogRecord {
    /// The record of a packet judged by rule `rule` of program `epoch`.
    #[inline]
    pub fn of(
        epoch: u64,
        rule: u32,
        action: Action,
        direction: Direction,
        in_port: u16,
        m: &PacketMeta,
    ) -> LogRecord {
        LogRecord {
            epoch,
            rule,
            action,
            direction,
            in_port,
            src: m.src_addr,
            dst: m.dst_addr,
            ip_version: m.ip_version,
            protocol: m.protocol,
            src_port: m.src_port,
            dst_port: m.dst_port,
            ttl: m.ttl,
            tcp_flags: m.tcp_flags,
            icmp_type: m.icmp_type,
            icmp_code: m.icmp_code,
        }
    }

    fn words(&self) -> [u64; WORDS] {
        let w = |b: &[u8]| u64::from_le_bytes(b.try_into().expect("8 bytes"));
        [
            self.epoch,
            u64::from(self.rule)
                | u64::from(action_code(self.action)) << 32
                | u64::from(self.direction == Direction::Egress) << 40
                | u64::from(self.in_port) << 48,
            w(&self.src[..8]),
            w(&self.src[8..]),
            w(&self.dst[..8]),
            w(&self.dst[8..]),
            u64::from(self.ip_version)
                | u64::from(self.protocol) << 8
                | u64::from(self.src_port) << 16
                | u64::from(self.dst_port) << 32
                | u64::from(self.ttl) << 48
                | u64::from(self.tcp_flags) << 56,
            u64::from(self.icmp_type) | u64::from(self.icmp_code) << 8,
        ]
    }

    fn from_words(w: &[u64; WORDS]) -> LogRecord {
        let mut src = [0u8; 16];
        src[..8].copy_from_slice(&w[2].to_le_bytes());
        src[8..].copy_from_slice(&w[3].to_le_bytes());
        let mut dst = [0u8; 16];
        dst[..8].copy_from_slice(&w[4].to_le_bytes());
        dst[8..].copy_from_slice(&w[5].to_le_bytes());
        LogRecord {
            epoch: w[0],
            rule: w[1] as u32,
            action: action_of(((w[1] >> 32) & 0xff) as u8),
            direction: if (w[1] >> 40) & 1 == 1 {
                Direction::Egress
            } else {
                Direction::Ingress
            },
            in_port: (w[1] >> 48) as u16,
            src,
            dst,
            ip_version: w[6] as u8,
            protocol: (w[6] >> 8) as u8,
            src_port: (w[6] >> 16) as u16,
            dst_port: (w[6] >> 32) as u16,
            ttl: (w[6] >> 48) as u8,
            tcp_flags: (w[6] >> 56) as u8,
            icmp_type: w[7] as u8,
            icmp_code: (w[7] >> 8) as u8,
        }
    }
}

fn action_code(a: Action) -> u8 {
    match a {
        Action::Allow => 0,
        Action::AllowRelated => 1,
        Action::Drop => 2,
        Action::Reject => 3,
    }
}

fn action_of(c: u8) -> Action {
    match c {
        0 => Action::Allow,
        1 => Action::AllowRelated,
        3 => Action::Reject,
        _ => Action::Drop,
    }
}

const WORDS: usize = 8;

/// A preallocated single-producer (one worker) single-consumer (the drain) ring of
/// [`LogRecord`]s. Safe Rust: a slot is eight atomic words written with relaxed stores and
/// made visible by the release store of `head`; the consumer reads them after an acquire
/// load of `head` and frees the slot by a release store of `tail`.
#[derive(Debug)]
pub struct LogRing {
    slots: Box<[[AtomicU64; WORDS]]>,
    mask: u64,
    head: AtomicU64,
    tail: AtomicU64,
    /// Records refused because the ring was full.
    dropped: AtomicU64,
}

impl LogRing {
    /// A ring of `capacity` records (rounded up to a power of two, at least 2).
    pub fn new(capacity: usize) -> LogRing {
        let n = capacity.max(2).next_power_of_two();
        LogRing {
            slots: (0..n).map(|_| Default::default()).collect(),
            mask: n as u64 - 1,
            head: AtomicU64::new(0),
            tail: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
        }
    }

    /// Capacity in records.
    pub fn capacity(&self) -> usize {
        self.slots.len()
    }

    /// Producer: appends `r`; false (and counted) when the ring is full.
    #[inline]
    pub fn push(&self, r: &LogRecord) -> bool {
        let head = self.head.load(Ordering::Relaxed);
        if head.wrapping_sub(self.tail.load(Ordering::Acquire)) > self.mask {
            // Single writer of this counter too: a plain load + store.
            let d = self.dropped.load(Ordering::Relaxed);
            self.dropped.store(d + 1, Ordering::Relaxed);
            return false;
        }
        let slot = &self.slots[(head & self.mask) as usize];
        for (s, w) in slot.iter().zip(r.words()) {
            s.store(w, Ordering::Relaxed);
        }
        self.head.store(head.wrapping_add(1), Ordering::Release);
        true
    }

    /// Consumer: the oldest record, if any.
    pub fn pop(&self) -> Option<LogRecord> {
        let tail = self.tail.load(Ordering::Relaxed);
        if tail == self.head.load(Ordering::Acquire) {
            return None;
        }
        let slot = &self.slots[(tail & self.mask) as usize];
        let mut w = [0u64; WORDS];
        for (d, s) in w.iter_mut().zip(slot.iter()) {
            *d = s.load(Ordering::Relaxed);
        }
        self.tail.store(tail.wrapping_add(1), Ordering::Release);
        Some(LogRecord::from_words(&w))
    }

    /// Records refused so far because the ring was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// The line for `r`, judged by a rule that logs as `spec`; `acl` names the rule (the NB
/// ACL's UUID for rules from OVN). The packet part uses OVS's flow field names, as
/// ovn-controller's lines do.
pub fn format_line(spec: &LogSpec, acl: &str, r: &LogRecord) -> String {
    let mut s = String::with_capacity(160);
    if spec.name.is_empty() {
        s.push_str("name=<unnamed>");
    } else {
        let _ = write!(s, "name=\"{}\"", spec.name);
    }
    let verdict = match r.action {
        Action::Allow | Action::AllowRelated => "allow",
        Action::Drop => "drop",
        Action::Reject => "reject",
    };
    let direction = match r.direction {
        Direction::Ingress => "from-lport",
        Direction::Egress => "to-lport",
    };
    let _ = write!(
        s,
        ", verdict={verdict}, severity={}, direction={direction}, acl={acl}: ",
        spec.severity.as_str()
    );
    let proto = match (r.ip_version, r.protocol) {
        (4, 6) => "tcp",
        (4, 17) => "udp",
        (4, 1) => "icmp",
        (4, 132) => "sctp",
        (4, _) => "ip",
        (6, 6) => "tcp6",
        (6, 17) => "udp6",
        (6, 58) => "icmp6",
        (6, 132) => "sctp6",
        _ => "ipv6",
    };
    s.push_str(proto);
    if r.ip_version == 4 {
        let a = |b: &[u8; 16]| Ipv4Addr::new(b[0], b[1], b[2], b[3]);
        let _ = write!(
            s,
            ",nw_src={},nw_dst={},nw_ttl={}",
            a(&r.src),
            a(&r.dst),
            r.ttl
        );
    } else {
        let _ = write!(
            s,
            ",ipv6_src={},ipv6_dst={},nw_ttl={}",
            Ipv6Addr::from(r.src),
            Ipv6Addr::from(r.dst),
            r.ttl
        );
    }
    match r.protocol {
        6 | 17 | 132 => {
            let _ = write!(s, ",tp_src={},tp_dst={}", r.src_port, r.dst_port);
            if r.protocol == 6 {
                let _ = write!(s, ",tcp_flags=0x{:02x}", r.tcp_flags);
            }
        }
        1 | 58 => {
            let _ = write!(s, ",icmp_type={},icmp_code={}", r.icmp_type, r.icmp_code);
        }
        _ => {}
    }
    s
}

/// The drain's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct LogCounts {
    /// Lines the meters let through (handed to the writer, which may still keep those below
    /// its level from being written: the dataplane's `[acl_log] min_severity`).
    pub logged: u64,
    /// Records the meter (or the default limit) held back.
    pub rate_limited: u64,
    /// Records the workers could not queue (ring full), summed over rings.
    pub ring_dropped: u64,
    /// Records whose rule could not be found any more (its program was replaced).
    pub stale: u64,
}

/// The drain of every `acl` node's workers, for a control thread: one [`LogDrain`] per
/// node (hub), fed with the meters of the node's current program, resolving each record
/// against the program that wrote it (the current one or the one before).
#[derive(Debug, Default)]
pub struct HubLogs {
    nodes: BTreeMap<String, NodeLog>,
    default: Option<RateLimit>,
}

#[derive(Debug)]
struct NodeLog {
    drain: LogDrain,
    /// Generation of the program whose meters the drain has.
    generation: u64,
    /// (ACL, meter) pairs already reported as naming an absent meter.
    reported: std::collections::BTreeSet<(String, String)>,
}

impl HubLogs {
    /// Drains with `default` for rules without (or with an absent) meter.
    pub fn new(default: RateLimit) -> HubLogs {
        HubLogs {
            nodes: BTreeMap::new(),
            default: Some(default),
        }
    }

    /// One pass over `hubs` at `now_ns`: each line goes to `write(node, severity, line)`;
    /// an ACL naming a meter its program does not have goes once to `refuse(line)`.
    pub fn poll<C: super::Classify>(
        &mut self,
        hubs: &[(String, std::sync::Arc<super::AclHub<C>>)],
        now_ns: u64,
        mut write: impl FnMut(&str, Severity, &str),
        mut refuse: impl FnMut(&str),
    ) {
        let default = self.default.unwrap_or(DEFAULT_LIMIT);
        for (name, hub) in hubs {
            let prog = hub.current();
            let node = self.nodes.entry(name.clone()).or_insert_with(|| NodeLog {
                drain: LogDrain::new(default),
                generation: 0,
                reported: Default::default(),
            });
            let rules = &prog.acl.rules;
            if node.generation != prog.generation {
                node.generation = prog.generation;
                node.drain.set_meters(rules.meters().clone());
                for acl in rules.acls() {
                    let Some(m) = acl.log.as_ref().and_then(|l| l.meter.as_ref()) else {
                        continue;
                    };
                    if !rules.meters().contains_key(m)
                        && node.reported.insert((acl.name.clone(), m.clone()))
                    {
                        refuse(&format!(
                            "acl_log: {name}: acl {}: meter '{m}' does not exist: logging with the default limit ({} lines/s, burst {})",
                            acl.name, default.rate, default.burst
                        ));
                    }
                }
            }
            let rings = hub.log_rings();
            let refs: Vec<&LogRing> = rings.iter().map(|r| &**r).collect();
            let gen = prog.generation;
            node.drain.drain(
                &refs,
                now_ns,
                |epoch, rule| {
                    if epoch != gen {
                        return None;
                    }
                    let acl = rules.acls().get(rule as usize)?;
                    Some((acl.log.as_ref()?, acl.name.as_str()))
                },
                |sev, line| write(name, sev, line),
            );
        }
    }

    /// The counters of each node drained so far.
    pub fn counts(&self) -> Vec<(String, LogCounts)> {
        self.nodes
            .iter()
            .map(|(n, l)| (n.clone(), l.drain.counts()))
            .collect()
    }
}

/// The control side: a token bucket per meter (and one default), counters.
#[derive(Debug)]
pub struct LogDrain {
    meters: BTreeMap<String, RateLimit>,
    buckets: BTreeMap<Option<String>, TokenBucket>,
    default: RateLimit,
    counts: LogCounts,
}

impl LogDrain {
    /// A drain with the default limit for rules without (or with an unknown) meter.
    pub fn new(default: RateLimit) -> LogDrain {
        LogDrain {
            meters: BTreeMap::new(),
            buckets: BTreeMap::new(),
            default,
            counts: LogCounts::default(),
        }
    }

    /// Sets the meters (NB `Meter` name -> its band's limit); buckets of changed meters
    /// start full again.
    pub fn set_meters(&mut self, meters: BTreeMap<String, RateLimit>) {
        self.buckets.retain(|k, b| match k {
            None => true,
            Some(m) => meters.get(m) == Some(&b.limit()),
        });
        self.meters = meters;
    }

    /// Drains every record of `rings`; for each, `resolve(epoch, rule)` gives the rule's
    /// spec and name (None: stale); passes the meter's bucket (or the default's) at
    /// `now_ns`, then `write(severity, line)`.
    pub fn drain<'a, R, W>(&mut self, rings: &[&LogRing], now_ns: u64, resolve: R, mut write: W)
    where
        R: Fn(u64, u32) -> Option<(&'a LogSpec, &'a str)>,
        W: FnMut(Severity, &str),
    {
        let mut dropped = 0;
        for ring in rings {
            dropped += ring.dropped();
            while let Some(r) = ring.pop() {
                let Some((spec, acl)) = resolve(r.epoch, r.rule) else {
                    self.counts.stale += 1;
                    continue;
                };
                let limit = spec
                    .meter
                    .as_ref()
                    .and_then(|m| self.meters.get(m))
                    .copied();
                let key = limit.and(spec.meter.clone());
                let bucket = self
                    .buckets
                    .entry(key)
                    .or_insert_with(|| TokenBucket::new(limit.unwrap_or(self.default), now_ns));
                if bucket.take(now_ns) {
                    self.counts.logged += 1;
                    write(spec.severity, &format_line(spec, acl, &r));
                } else {
                    self.counts.rate_limited += 1;
                }
            }
        }
        self.counts.ring_dropped = dropped;
    }

    /// The counters.
    pub fn counts(&self) -> LogCounts {
        self.counts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn udp_record() -> LogRecord {
        let mut m = PacketMeta::default();
        m.src_addr[..4].copy_from_slice(&[10, 1, 0, 5]);
        m.dst_addr[..4].copy_from_slice(&[10, 2, 0, 1]);
        m.ip_version = 4;
        m.protocol = 17;
        m.src_port = 1024;
        m.dst_port = 5001;
        m.ttl = 64;
        LogRecord::of(7, 3, Action::Drop, Direction::Egress, 1, &m)
    }

    #[test]
    fn lines_read_like_ovn_controller_s() {
        let spec = LogSpec {
            name: "deny-web".into(),
            severity: Severity::Warning,
            meter: None,
            related: false,
        };
        assert_eq!(
            format_line(&spec, "0b9c", &udp_record()),
            "name=\"deny-web\", verdict=drop, severity=warning, direction=to-lport, acl=0b9c: udp,nw_src=10.1.0.5,nw_dst=10.2.0.1,nw_ttl=64,tp_src=1024,tp_dst=5001"
        );
        let mut r = udp_record();
        r.action = Action::AllowRelated;
        r.direction = Direction::Ingress;
        r.protocol = 6;
        r.tcp_flags = 0x02;
        assert_eq!(
            format_line(&LogSpec::default(), "u", &r),
            "name=<unnamed>, verdict=allow, severity=info, direction=from-lport, acl=u: tcp,nw_src=10.1.0.5,nw_dst=10.2.0.1,nw_ttl=64,tp_src=1024,tp_dst=5001,tcp_flags=0x02"
        );
        let mut r = udp_record();
        r.ip_version = 6;
        r.protocol = 58;
        r.src = "fd00::1".parse::<Ipv6Addr>().unwrap().octets();
        r.dst = "fd00::2".parse::<Ipv6Addr>().unwrap().octets();
        r.icmp_type = 128;
        r.action = Action::Reject;
        assert_eq!(
            format_line(&LogSpec::default(), "u", &r),
            "name=<unnamed>, verdict=reject, severity=info, direction=to-lport, acl=u: icmp6,ipv6_src=fd00::1,ipv6_dst=fd00::2,nw_ttl=64,icmp_type=128,icmp_code=0"
        );
        assert_eq!(Severity::from_nb(""), Severity::Info);
        assert_eq!(Severity::from_nb("alert"), Severity::Alert);
    }

    #[test]
    fn token_bucket_passes_the_burst_then_the_rate() {
        let s = 1_000_000_000u64;
        let mut b = TokenBucket::new(RateLimit { rate: 10, burst: 5 }, 0);
        // Full at start: the burst passes, the next does not.
        assert_eq!((0..8).filter(|_| b.take(0)).count(), 5);
        // 10 per second: 100 ms gives one line, 50 ms none.
        assert!(b.take(s / 10));
        assert!(!b.take(s / 10 + s / 20));
        assert!(b.take(2 * s / 10));
        // A long pause refills to the burst only.
        assert_eq!((0..20).filter(|_| b.take(100 * s)).count(), 5);
        // Over 10 s of steady offers (1,000 per second): 10 per second pass.
        let passed = (1..=10_000u64)
            .filter(|k| b.take(100 * s + k * s / 1000))
            .count();
        assert_eq!(passed, 100);
        // Rate 0: nothing passes.
        let mut z = TokenBucket::new(RateLimit { rate: 0, burst: 0 }, 0);
        assert!(!z.take(0) && !z.take(10 * s));
        // Burst 0 with a rate: one at a time.
        let mut one = TokenBucket::new(RateLimit { rate: 1, burst: 0 }, 0);
        assert!(one.take(0) && !one.take(s / 2) && one.take(s));
    }

    #[test]
    fn the_ring_keeps_order_refuses_when_full_and_counts() {
        let ring = LogRing::new(3);
        assert_eq!(ring.capacity(), 4);
        let mut r = udp_record();
        for k in 0..6 {
            r.rule = k;
            assert_eq!(ring.push(&r), k < 4, "push {k}");
        }
        assert_eq!(ring.dropped(), 2);
        let got: Vec<u32> = std::iter::from_fn(|| ring.pop()).map(|x| x.rule).collect();
        assert_eq!(got, vec![0, 1, 2, 3]);
        // Round trip of every field.
        let mut v6 = udp_record();
        v6.ip_version = 6;
        v6.src = [0xfd; 16];
        v6.in_port = 513;
        v6.epoch = u64::MAX - 1;
        v6.action = Action::Reject;
        v6.direction = Direction::Ingress;
        v6.tcp_flags = 0x12;
        v6.icmp_code = 9;
        assert!(ring.push(&v6));
        assert_eq!(ring.pop(), Some(v6));
        assert_eq!(ring.pop(), None);
    }

    #[test]
    fn the_ring_hands_over_whole_records_across_threads() {
        let ring = std::sync::Arc::new(LogRing::new(64));
        let n = 200_000u32;
        let producer = {
            let ring = ring.clone();
            std::thread::spawn(move || {
                let mut r = udp_record();
                let mut k = 0;
                while k < n {
                    r.rule = k;
                    r.src_port = k as u16;
                    r.epoch = u64::from(k) * 3;
                    if ring.push(&r) {
                        k += 1;
                    } else {
                        std::thread::yield_now();
                    }
                }
            })
        };
        let mut next = 0u32;
        while next < n {
            match ring.pop() {
                Some(r) => {
                    assert_eq!(
                        (r.rule, r.src_port, r.epoch),
                        (next, next as u16, u64::from(next) * 3)
                    );
                    next += 1;
                }
                None => std::thread::yield_now(),
            }
        }
        producer.join().unwrap();
    }

    #[test]
    fn the_drain_meters_lines_per_meter_and_counts() {
        let ring = LogRing::new(1024);
        let metered = LogSpec {
            name: "m".into(),
            severity: Severity::Info,
            meter: Some("acl-meter".into()),
            related: false,
        };
        let plain = LogSpec::default();
        let mut r = udp_record();
        for k in 0..100 {
            r.rule = k % 2; // rule 0 metered, rule 1 not
            assert!(ring.push(&r));
        }
        r.rule = 9; // unknown: stale
        assert!(ring.push(&r));
        let mut d = LogDrain::new(RateLimit { rate: 0, burst: 20 });
        d.set_meters(BTreeMap::from([(
            "acl-meter".to_string(),
            RateLimit { rate: 0, burst: 10 },
        )]));
        let mut lines = Vec::new();
        d.drain(
            &[&ring],
            0,
            |epoch, rule| {
                assert_eq!(epoch, 7);
                match rule {
                    0 => Some((&metered, "uuid-m")),
                    1 => Some((&plain, "uuid-p")),
                    _ => None,
                }
            },
            |_, l| lines.push(l.to_string()),
        );
        assert_eq!(
            lines.iter().filter(|l| l.contains("acl=uuid-m")).count(),
            10
        );
        assert_eq!(
            lines.iter().filter(|l| l.contains("acl=uuid-p")).count(),
            20
        );
        assert_eq!(
            d.counts(),
            LogCounts {
                logged: 30,
                rate_limited: 70,
                ring_dropped: 0,
                stale: 1
            }
        );
    }
}
