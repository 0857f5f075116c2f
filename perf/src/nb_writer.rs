//! An OVN Northbound writer fast enough for 1,000 transactions per second: OVSDB `transact`
//! requests written straight onto the NB's socket (the dataplane's own framing and keepalive,
//! [`dataplane::ovn::jsonrpc::Conn`]), where `ovn-nbctl` would spawn a process per change.
//!
//! [`ChurnPlan`] says what each transaction changes, as a platform churns ("pod churn"):
//!
//! - `as`: an address added to or removed from an `Address_Set` that ACLs name;
//! - `lsp`: a `Logical_Switch_Port`'s `addresses` changed (a pod replaced), so the derived
//!   `$<pg>_ip4` of its port group changes;
//! - `acl`: an ACL added to or removed from a port group;
//! - `lb`: a backend added to or removed from one VIP of a `Load_Balancer`.
//!
//! Additions and removals keep a sliding window (the oldest item goes once the window is
//! full), so the database does not grow. Every address the churn uses lies in
//! [`CHURN_ADDRESS_BLOCK`] and every ACL it adds matches only that block, so none of it
//! changes the verdict of traffic outside it.
//!
//! [`NbWriter::run`] paces on a fixed schedule (transaction `i` is due at `start + i/rate`,
//! so a late send does not shift later ones), keeps up to `max_in_flight` requests
//! outstanding (it does not wait for a reply before the next send), and counts replies,
//! errors and how late sends were.

use std::collections::{HashMap, VecDeque};
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use dataplane::ovn::jsonrpc::{Conn, Incoming, DEFAULT_MAX_MESSAGE};
use dataplane::ovn::stream::Stream;
use dataplane::ovn::Remote;
use serde::Serialize;
use serde_json::{json, Value};

/// The NB database name.
pub const NB_DB: &str = "OVN_Northbound";

/// The block every churned address and churned ACL lies in (10.248.0.0/13: benchmark
/// traffic never uses it).
pub const CHURN_ADDRESS_BLOCK: &str = "10.248.0.0/13";

/// The NB rows the churn changes (created beforehand, e.g. by the benchmark's seed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChurnTargets {
    /// An `Address_Set` that ACLs name (`$name`).
    pub address_set: String,
    /// A `Logical_Switch_Port` that is a member of a port group whose `$<pg>_ip4` ACLs name.
    pub lsp: String,
    /// The port group that churned ACLs are added to and removed from.
    pub port_group: String,
    /// The `Load_Balancer` whose `churn_vip` entry's backends change.
    pub load_balancer: String,
    /// The churned `vips` key (`IP:port`).
    pub churn_vip: String,
}

/// One kind of change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum ChurnKind {
    /// Address-set member added or removed.
    AddressSet,
    /// LSP addresses changed (derived port-group set).
    PortAddresses,
    /// ACL added or removed.
    Acl,
    /// LB backend added or removed.
    LbBackend,
}

impl ChurnKind {
    /// All kinds, in the order of [`ChurnMix`].
    pub const ALL: [ChurnKind; 4] = [
        ChurnKind::AddressSet,
        ChurnKind::PortAddresses,
        ChurnKind::Acl,
        ChurnKind::LbBackend,
    ];

    /// The short name used in mix specs and reports (`as`, `lsp`, `acl`, `lb`).
    pub fn name(self) -> &'static str {
        match self {
            ChurnKind::AddressSet => "as",
            ChurnKind::PortAddresses => "lsp",
            ChurnKind::Acl => "acl",
            ChurnKind::LbBackend => "lb",
        }
    }
}

/// Relative weights of the kinds of change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChurnMix {
    /// Weight per kind, in the order of [`ChurnKind::ALL`].
    pub weights: [u32; 4],
}

impl Default for ChurnMix {
    /// Pod churn dominated: `as=4,lsp=2,acl=2,lb=1`.
    fn default() -> Self {
        ChurnMix {
            weights: [4, 2, 2, 1],
        }
    }
}

impl ChurnMix {
    /// Parses `as=4,lsp=2,acl=2,lb=1` (kinds left out weigh 0; at least one weight > 0).
    pub fn parse(text: &str) -> Result<ChurnMix, String> {
        let mut weights = [0u32; 4];
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (k, w) = part
                .split_once('=')
                .ok_or_else(|| format!("{part:?}: expected KIND=WEIGHT"))?;
            let i = ChurnKind::ALL
                .iter()
                .position(|c| c.name() == k.trim())
                .ok_or_else(|| format!("{k:?}: kinds are as, lsp, acl, lb"))?;
            weights[i] = w
                .trim()
                .parse()
                .map_err(|_| format!("{part:?}: the weight is not a whole number"))?;
        }
        if weights.iter().all(|&w| w == 0) {
            return Err(format!("{text:?}: every weight is 0"));
        }
        Ok(ChurnMix { weights })
    }

    /// One cycle of kinds, interleaved (each kind as often as its weight).
    pub fn cycle(&self) -> Vec<ChurnKind> {
        let max = self.weights.iter().copied().max().unwrap_or(0);
        let mut out = Vec::new();
        for round in 0..max {
            for (k, &w) in ChurnKind::ALL.iter().zip(&self.weights) {
                if round < w {
                    out.push(*k);
                }
            }
        }
        out
    }
}

/// A sliding window of items: additions until it holds `size`, then removal of the oldest
/// and addition of a new one in turn.
#[derive(Debug, Clone)]
struct Window {
    live: VecDeque<u32>,
    next: u32,
    size: usize,
}

/// One step of a [`Window`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Add(u32),
    Remove(u32),
}

impl Window {
    fn new(size: usize) -> Window {
        Window {
            live: VecDeque::new(),
            next: 0,
            size: size.max(1),
        }
    }

    fn step(&mut self) -> Step {
        if self.live.len() < self.size {
            let n = self.next;
            self.next = self.next.wrapping_add(1);
            self.live.push_back(n);
            Step::Add(n)
        } else {
            Step::Remove(self.live.pop_front().expect("a full window is not empty"))
        }
    }
}

/// The `n`th churn address of a family of churned items (`base` picks a /16 inside
/// [`CHURN_ADDRESS_BLOCK`]).
fn churn_addr(base: u8, n: u32) -> Ipv4Addr {
    Ipv4Addr::new(10, 248 + (base & 7), (n >> 8) as u8, n as u8)
}

/// A stable UUID for the `n`th churned ACL (an `insert` with an explicit `uuid`, OVS 2.13+),
/// so that its removal needs no answer from the server. `salt` keeps runs apart.
pub fn churn_acl_uuid(salt: u32, n: u32) -> String {
    format!(
        "c4a1c4a1-{:04x}-4{:03x}-8000-{:012x}",
        salt >> 16,
        salt & 0xfff,
        n
    )
}

/// What each transaction changes: a deterministic sequence of NB operations.
#[derive(Debug, Clone)]
pub struct ChurnPlan {
    targets: ChurnTargets,
    cycle: Vec<ChurnKind>,
    i: usize,
    salt: u32,
    set_members: Window,
    acls: Window,
    backends: Window,
    lsp_changes: u32,
}

/// The transaction ACLs are added at this priority and above (under 32767).
pub const CHURN_ACL_PRIORITY: u32 = 2000;

impl ChurnPlan {
    /// A plan over `targets` with `mix`; `window` items per churned set (address-set members,
    /// churned ACLs; the churned VIP has `max(window/4, 2)` backends or one fewer); `salt` makes the ACL UUIDs of this run unique.
    pub fn new(targets: ChurnTargets, mix: ChurnMix, window: usize, salt: u32) -> ChurnPlan {
        ChurnPlan {
            targets,
            cycle: mix.cycle(),
            i: 0,
            salt,
            set_members: Window::new(window),
            acls: Window::new(window),
            backends: Window::new((window / 4).max(2)),
            lsp_changes: 0,
        }
    }

    /// The next transaction: its kind and the `transact` params (`[db, op, ...]`).
    pub fn next_txn(&mut self) -> (ChurnKind, Value) {
        let kind = self.cycle[self.i % self.cycle.len()];
        self.i += 1;
        let t = &self.targets;
        let ops = match kind {
            ChurnKind::AddressSet => {
                let (mutator, n) = match self.set_members.step() {
                    Step::Add(n) => ("insert", n),
                    Step::Remove(n) => ("delete", n),
                };
                vec![json!({
                    "op": "mutate", "table": "Address_Set",
                    "where": [["name", "==", t.address_set]],
                    "mutations": [["addresses", mutator, ["set", [churn_addr(0, n).to_string()]]]],
                })]
            }
            ChurnKind::PortAddresses => {
                let n = self.lsp_changes;
                self.lsp_changes = self.lsp_changes.wrapping_add(1);
                let addresses = format!(
                    "0a:58:{:02x}:{:02x}:{:02x}:{:02x} {}",
                    (n >> 24) as u8,
                    (n >> 16) as u8,
                    (n >> 8) as u8,
                    n as u8,
                    churn_addr(1, n % 65536)
                );
                vec![json!({
                    "op": "update", "table": "Logical_Switch_Port",
                    "where": [["name", "==", t.lsp]],
                    "row": {"addresses": addresses},
                })]
            }
            ChurnKind::Acl => match self.acls.step() {
                Step::Add(n) => {
                    let uuid = churn_acl_uuid(self.salt, n);
                    let a = churn_addr(2, n % 65536);
                    vec![
                        json!({
                            "op": "insert", "table": "ACL", "uuid": uuid,
                            "row": {
                                "priority": CHURN_ACL_PRIORITY + n % 1000,
                                "direction": "from-lport",
                                "match": format!("inport == @{} && ip4.src == {a} && udp.dst == 7", t.port_group),
                                "action": "drop",
                                "name": format!("churn-{n}"),
                                "external_ids": ["map", [["churn", "true"]]],
                            },
                        }),
                        json!({
                            "op": "mutate", "table": "Port_Group",
                            "where": [["name", "==", t.port_group]],
                            "mutations": [["acls", "insert", ["set", [["uuid", uuid]]]]],
                        }),
                    ]
                }
                Step::Remove(n) => vec![json!({
                    "op": "mutate", "table": "Port_Group",
                    "where": [["name", "==", t.port_group]],
                    "mutations": [["acls", "delete", ["set", [["uuid", churn_acl_uuid(self.salt, n)]]]]],
                })],
            },
            ChurnKind::LbBackend => {
                self.backends.step();
                let port = t.churn_vip.rsplit_once(':').map_or("", |(_, p)| p);
                let backends = self
                    .backends
                    .live
                    .iter()
                    .map(|&n| format!("{}:{port}", churn_addr(3, n % 65536)))
                    .collect::<Vec<_>>()
                    .join(",");
                vec![json!({
                    "op": "mutate", "table": "Load_Balancer",
                    "where": [["name", "==", t.load_balancer]],
                    "mutations": [
                        ["vips", "delete", ["set", [t.churn_vip]]],
                        ["vips", "insert", ["map", [[t.churn_vip, backends]]]],
                    ],
                })]
            }
        };
        let mut params = vec![json!(NB_DB)];
        params.extend(ops);
        (kind, Value::Array(params))
    }
}

/// The first error in a `transact` result (an operation's `{"error": ..}`), if any.
pub fn transact_error(result: &Value) -> Option<String> {
    let Some(ops) = result.as_array() else {
        return Some(format!("not a transact result: {result}"));
    };
    ops.iter()
        .find(|o| o.get("error").is_some())
        .map(|o| o.to_string())
}

/// What one [`NbWriter::run`] did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct WriterReport {
    /// The rate asked for, transactions per second.
    pub target_per_s: f64,
    /// Transactions sent.
    pub sent: u64,
    /// Transactions the server committed.
    pub committed: u64,
    /// Transactions refused (an operation error or an RPC error).
    pub errors: u64,
    /// Sent but never answered before the drain deadline (or the connection failed).
    pub unanswered: u64,
    /// The first error seen.
    pub first_error: Option<String>,
    /// Seconds from the first send until the schedule's end (or the last send, if later).
    pub send_seconds: f64,
    /// Committed transactions per second of the schedule.
    pub achieved_per_s: f64,
    /// The largest delay of a send behind its scheduled time, ms.
    pub max_late_ms: f64,
    /// Request-to-reply time, median, ms.
    pub reply_p50_ms: f64,
    /// Request-to-reply time, 99th percentile, ms.
    pub reply_p99_ms: f64,
    /// Committed transactions per kind (`as`, `lsp`, `acl`, `lb`).
    pub by_kind: HashMap<&'static str, u64>,
}

/// A connection to the NB that writes transactions.
pub struct NbWriter {
    conn: Conn,
}

/// How long one poll of the socket blocks: the pacing's resolution.
const TICK: Duration = Duration::from_micros(200);

impl NbWriter {
    /// Connects to `remote` (`unix:` or `tcp:`; no TLS files are given here).
    pub fn connect(remote: &str) -> Result<NbWriter, String> {
        let r = Remote::parse(remote)?;
        let stream = Stream::connect(&r, None, Duration::from_secs(5))
            .map_err(|e| format!("{remote}: {e}"))?;
        let conn = Conn::new(stream, None, TICK, DEFAULT_MAX_MESSAGE)
            .map_err(|e| format!("{remote}: {e}"))?;
        Ok(NbWriter { conn })
    }

    /// Sends one `transact` (`params` = `[db, op, ...]`) and waits up to `timeout` for its
    /// result; an operation's error is an `Err`.
    pub fn transact(&mut self, params: Value, timeout: Duration) -> Result<Value, String> {
        let id = self
            .conn
            .request("transact", params)
            .map_err(|e| e.to_string())?;
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            match self.conn.poll().map_err(|e| e.to_string())? {
                Some(Incoming::Response { id: got, result }) if got == id => {
                    let v = result.map_err(|e| e.to_string())?;
                    return match transact_error(&v) {
                        Some(e) => Err(e),
                        None => Ok(v),
                    };
                }
                _ => {}
            }
        }
        Err(format!("no answer to transact within {timeout:?}"))
    }

    /// Writes `total` transactions of `plan` at `rate` per second on a fixed schedule, at
    /// most `max_in_flight` unanswered at a time, then waits up to `drain` for the last
    /// replies.
    pub fn run(
        &mut self,
        plan: &mut ChurnPlan,
        rate: f64,
        total: u64,
        max_in_flight: usize,
        drain: Duration,
    ) -> WriterReport {
        let mut rep = WriterReport {
            target_per_s: rate,
            ..WriterReport::default()
        };
        let mut in_flight: HashMap<u64, (Instant, ChurnKind)> = HashMap::new();
        let mut reply_ms: Vec<f64> = Vec::with_capacity(total as usize);
        let start = Instant::now();
        let due = |i: u64| start + Duration::from_secs_f64(i as f64 / rate);
        let mut last_send = start;
        let mut drain_until: Option<Instant> = None;
        loop {
            let now = Instant::now();
            while rep.sent < total && in_flight.len() < max_in_flight && due(rep.sent) <= now {
                let late = now.duration_since(due(rep.sent)).as_secs_f64() * 1e3;
                rep.max_late_ms = rep.max_late_ms.max(late);
                let (kind, params) = plan.next_txn();
                match self.conn.request("transact", params) {
                    Ok(id) => {
                        in_flight.insert(id, (Instant::now(), kind));
                        rep.sent += 1;
                        last_send = Instant::now();
                    }
                    Err(e) => {
                        rep.first_error.get_or_insert(format!("send: {e}"));
                        rep.unanswered += in_flight.len() as u64;
                        return finish(rep, reply_ms, start, last_send, total, rate);
                    }
                }
            }
            if rep.sent == total {
                if in_flight.is_empty() {
                    break;
                }
                let d = *drain_until.get_or_insert(now + drain);
                if now >= d {
                    break;
                }
            }
            match self.conn.poll() {
                Ok(Some(Incoming::Response { id, result })) => {
                    let Some((t0, kind)) = in_flight.remove(&id) else {
                        continue;
                    };
                    reply_ms.push(t0.elapsed().as_secs_f64() * 1e3);
                    let err = match result {
                        Ok(v) => transact_error(&v),
                        Err(e) => Some(e.to_string()),
                    };
                    match err {
                        Some(e) => {
                            rep.errors += 1;
                            rep.first_error.get_or_insert(e);
                        }
                        None => {
                            rep.committed += 1;
                            *rep.by_kind.entry(kind.name()).or_default() += 1;
                        }
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    rep.first_error.get_or_insert(format!("connection: {e}"));
                    break;
                }
            }
        }
        rep.unanswered += in_flight.len() as u64;
        finish(rep, reply_ms, start, last_send, total, rate)
    }
}

fn finish(
    mut rep: WriterReport,
    mut reply_ms: Vec<f64>,
    start: Instant,
    last_send: Instant,
    total: u64,
    rate: f64,
) -> WriterReport {
    let schedule = total as f64 / rate;
    rep.send_seconds = schedule.max(last_send.duration_since(start).as_secs_f64());
    rep.achieved_per_s = if rep.send_seconds > 0.0 {
        rep.committed as f64 / rep.send_seconds
    } else {
        0.0
    };
    reply_ms.sort_by(|a, b| a.total_cmp(b));
    let q = |p: f64| {
        if reply_ms.is_empty() {
            0.0
        } else {
            reply_ms[((reply_ms.len() - 1) as f64 * p).round() as usize]
        }
    };
    rep.reply_p50_ms = q(0.5);
    rep.reply_p99_ms = q(0.99);
    rep
}

#[cfg(test)]
mod tests {
    use super::*;

    fn targets() -> ChurnTargets {
        ChurnTargets {
            address_set: "churn_as".into(),
            lsp: "churn-pod".into(),
            port_group: "pg_churn".into(),
            load_balancer: "churn-lb".into(),
            churn_vip: "192.0.2.20:7000".into(),
        }
    }

    #[test]
    fn mix_parses_and_interleaves_by_weight() {
        let m = ChurnMix::parse("as=3, acl=1,lb=0").unwrap();
        assert_eq!(m.weights, [3, 0, 1, 0]);
        use ChurnKind::*;
        assert_eq!(m.cycle(), vec![AddressSet, Acl, AddressSet, AddressSet]);
        assert!(ChurnMix::parse("as=0").is_err());
        assert!(ChurnMix::parse("pods=1").is_err());
        assert!(ChurnMix::parse("as").is_err());
        assert_eq!(ChurnMix::default().cycle().len(), 9);
    }

    #[test]
    fn address_set_members_fill_a_window_then_turn_over() {
        let mix = ChurnMix::parse("as=1").unwrap();
        let mut p = ChurnPlan::new(targets(), mix, 2, 7);
        let steps: Vec<Value> = (0..5).map(|_| p.next_txn().1).collect();
        assert_eq!(
            steps[0],
            json!(["OVN_Northbound", {"op": "mutate", "table": "Address_Set",
                "where": [["name", "==", "churn_as"]],
                "mutations": [["addresses", "insert", ["set", ["10.248.0.0"]]]]}])
        );
        let m = |v: &Value| v[1]["mutations"][0].clone();
        assert_eq!(
            m(&steps[1]),
            json!(["addresses", "insert", ["set", ["10.248.0.1"]]])
        );
        assert_eq!(
            m(&steps[2]),
            json!(["addresses", "delete", ["set", ["10.248.0.0"]]])
        );
        assert_eq!(
            m(&steps[3]),
            json!(["addresses", "insert", ["set", ["10.248.0.2"]]])
        );
        assert_eq!(
            m(&steps[4]),
            json!(["addresses", "delete", ["set", ["10.248.0.1"]]])
        );
    }

    #[test]
    fn acls_are_inserted_with_their_uuid_and_removed_from_the_port_group_by_it() {
        let mut p = ChurnPlan::new(targets(), ChurnMix::parse("acl=1").unwrap(), 1, 0x10002);
        let (k, add) = p.next_txn();
        assert_eq!(k, ChurnKind::Acl);
        let uuid = churn_acl_uuid(0x10002, 0);
        assert_eq!(uuid, "c4a1c4a1-0001-4002-8000-000000000000");
        assert_eq!(add[1]["op"], "insert");
        assert_eq!(add[1]["uuid"], json!(uuid));
        assert_eq!(add[1]["row"]["priority"], 2000);
        assert_eq!(add[1]["row"]["direction"], "from-lport");
        assert_eq!(
            add[1]["row"]["match"],
            "inport == @pg_churn && ip4.src == 10.250.0.0 && udp.dst == 7"
        );
        assert_eq!(
            add[2],
            json!({"op": "mutate", "table": "Port_Group", "where": [["name", "==", "pg_churn"]],
                "mutations": [["acls", "insert", ["set", [["uuid", uuid]]]]]})
        );
        let (_, del) = p.next_txn();
        assert_eq!(del.as_array().unwrap().len(), 2);
        assert_eq!(
            del[1]["mutations"],
            json!([["acls", "delete", ["set", [["uuid", uuid]]]]])
        );
    }

    #[test]
    fn lsp_addresses_and_lb_backends_are_replaced_whole() {
        let mut p = ChurnPlan::new(targets(), ChurnMix::parse("lsp=1,lb=1").unwrap(), 8, 1);
        let (k, lsp) = p.next_txn();
        assert_eq!(k, ChurnKind::PortAddresses);
        assert_eq!(
            lsp[1],
            json!({"op": "update", "table": "Logical_Switch_Port",
                "where": [["name", "==", "churn-pod"]],
                "row": {"addresses": "0a:58:00:00:00:00 10.249.0.0"}})
        );
        let (mut vips, mut lsp_n) = (Vec::new(), 1);
        for _ in 0..4 {
            let (k, lb) = p.next_txn();
            if k == ChurnKind::LbBackend {
                assert_eq!(
                    lb[1]["mutations"][0],
                    json!(["vips", "delete", ["set", ["192.0.2.20:7000"]]])
                );
                vips.push(lb[1]["mutations"][1][2][1][0][1].clone());
            } else {
                let want = format!("0a:58:00:00:00:{lsp_n:02x} 10.249.0.{lsp_n}");
                assert_eq!(lb[1]["row"]["addresses"], json!(want));
                lsp_n += 1;
            }
        }
        // A window of 2 backends: one, two, then the oldest goes.
        assert_eq!(
            vips,
            vec![
                json!("10.251.0.0:7000"),
                json!("10.251.0.0:7000,10.251.0.1:7000")
            ]
        );
        let (_, lb) = p.next_txn();
        assert_eq!(lb[1]["mutations"][1][2][1][0][1], json!("10.251.0.1:7000"));
    }

    #[test]
    fn operation_errors_are_found_in_a_transact_result() {
        assert_eq!(transact_error(&json!([{"count": 1}, {}])), None);
        assert!(
            transact_error(&json!([{"count": 1}, {"error": "constraint violation"}]))
                .unwrap()
                .contains("constraint violation")
        );
        assert!(transact_error(&json!({"x": 1})).is_some());
    }
}
