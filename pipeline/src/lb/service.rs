//! The load balancer's configuration model (virtual services, backends, conntrack
//! settings; TOML with unknown keys refused) and the immutable runtime [`ServiceTable`] the
//! workers read.
//!
//! ```toml
//! down_backend = "reset"              # drop | reset | keep: established flows of a down backend
//! [conntrack]
//! capacity = 262144                   # tracked connections per worker
//! timeouts = { udp = 600, tcp_established = 86400, tcp_transient = 120, other = 30 }
//! [[services]]
//! name = "web"
//! vip = "192.0.2.10"                  # IPv4 or IPv6
//! protocol = "tcp"                    # tcp | udp | sctp
//! port = 80                           # absent: every port (backends then keep the port)
//! hash = "five_tuple"                 # five_tuple | src_ip_port | src_ip
//! table_size = 65537                  # prime, Maglev slots
//! backends = [
//!   { address = "10.0.0.1", port = 8080, weight = 1, state = "active" },  # active | draining | down
//!   { address = "10.0.0.2", port = 8080 },
//! ]
//! ```
//!
//! # Identity and ids
//! A service is identified by `(vip, protocol, port)`, a backend by its service and
//! `(address, port)`. [`IdSpace`] gives each identity a stable numeric id the first time it
//! is seen and never reuses it, so a connection-table entry that names backend id 7 keeps
//! meaning the same backend across any number of table rebuilds (a backend that left the
//! configuration is `Removed` in later tables and its flows are treated like a down
//! backend's). Names are for people and for Maglev's permutations only.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::flow::{fmix64, FlowKey, HashMode, PROTO_SCTP, PROTO_TCP, PROTO_UDP};
use super::maglev::{self, BackendState, Maglev, DEFAULT_TABLE_SIZE};
use crate::conntrack::{TimeoutSecs, MAX_CAPACITY};

/// Default tracked connections per worker.
pub const DEFAULT_CT_CAPACITY: usize = 262_144;
/// Default limit on service ids (ever allocated, per control).
pub const DEFAULT_MAX_SERVICES: u32 = 256;
/// Default limit on backend ids (ever allocated, per control).
pub const DEFAULT_MAX_BACKENDS: u32 = 4096;
/// Largest accepted `max_backends`.
pub const MAX_IDS: u32 = 1 << 20;
/// Largest accepted `max_services`: service ids fit the 16 bits a connection-table entry
/// keeps ([`super::NatEntry`]).
pub const MAX_SERVICE_IDS: u32 = 1 << 16;

/// A configuration problem: the key (e.g. `services[1].backends[0].address`) and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {reason}")]
pub struct ConfigError {
    /// Dotted path of the offending key ("" for the document as a whole).
    pub key: String,
    /// What is wrong.
    pub reason: String,
}

impl ConfigError {
    /// An error about `key`.
    pub fn new(key: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            reason: reason.into(),
        }
    }
}

/// What happens to established flows whose backend is down (or removed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DownPolicy {
    /// Drop their packets (counted as `backend-down`); the entry stays until it idles out.
    #[default]
    Drop,
    /// TCP: answer the client with a RST (SCTP: an ABORT; sent on the node's `reset` output)
    /// and forget the flow, so the client's next connection gets a live backend. UDP: drop the packet and
    /// forget the flow, so the next packet is balanced again.
    Reset,
    /// Established flows continue to their backend, down or removed, both ways (the
    /// backend's replies are still translated back), until they end or idle out; only new
    /// flows avoid it. This is OVN's behaviour: OVS's conntrack keeps the NAT of a
    /// connection whose backend left a `Load_Balancer`'s `vips`, so it is what a node whose
    /// services come from the OVN Northbound does unless its config says otherwise.
    Keep,
}

/// Transport protocol of a service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum L4Protocol {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
    /// SCTP (ports NATed with the CRC32c updated, [`crate::lb::nat`]; associations tracked
    /// with UDP's idle timeout, [`crate::conntrack::ConnState::Sctp`]).
    Sctp,
}

impl L4Protocol {
    /// The IP protocol number.
    pub fn number(self) -> u8 {
        match self {
            L4Protocol::Tcp => PROTO_TCP,
            L4Protocol::Udp => PROTO_UDP,
            L4Protocol::Sctp => PROTO_SCTP,
        }
    }
}

/// Connection-table settings (per worker; fixed when the node is built).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConntrackConfig {
    /// Most connections tracked per worker. Memory: 64 bytes x next_pow2(2 x capacity).
    pub capacity: usize,
    /// Idle timeouts in seconds.
    pub timeouts: TimeoutSecs,
}

impl Default for ConntrackConfig {
    fn default() -> Self {
        Self {
            capacity: DEFAULT_CT_CAPACITY,
            timeouts: TimeoutSecs::default(),
        }
    }
}

/// One backend of a service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackendConfig {
    /// Address (same family as the service's VIP).
    pub address: IpAddr,
    /// Port; absent: the service's port (for an all-ports service, the packet's port).
    #[serde(default)]
    pub port: Option<u16>,
    /// Relative weight (0: no new flows).
    #[serde(default = "one")]
    pub weight: u32,
    /// `active`, `draining` (keeps its flows, gets no new ones) or `down`.
    #[serde(default)]
    pub state: BackendState,
    /// Name for counters and for Maglev (default `address:port`); keep it stable.
    #[serde(default)]
    pub name: Option<String>,
    /// The backend's MAC address (`aa:bb:cc:dd:ee:ff`); required by, and only used with,
    /// `forwarding = "dsr"`.
    #[serde(default)]
    pub mac: Option<MacString>,
}

/// A MAC address written `aa:bb:cc:dd:ee:ff` in configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MacString(pub [u8; 6]);

impl std::str::FromStr for MacString {
    type Err = String;
    fn from_str(t: &str) -> Result<Self, String> {
        let parts: Vec<&str> = t.split(':').collect();
        let bad = || format!("`{t}` is not a MAC address like 02:00:00:00:00:01");
        if parts.len() != 6 {
            return Err(bad());
        }
        let mut m = [0u8; 6];
        for (b, p) in m.iter_mut().zip(&parts) {
            if p.len() != 2 {
                return Err(bad());
            }
            *b = u8::from_str_radix(p, 16).map_err(|_| bad())?;
        }
        Ok(MacString(m))
    }
}

impl Serialize for MacString {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let m = self.0;
        s.serialize_str(&format!(
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        ))
    }
}

impl<'de> Deserialize<'de> for MacString {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let t = String::deserialize(d)?;
        t.parse().map_err(serde::de::Error::custom)
    }
}

/// How packets to a VIP reach the chosen backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ForwardingMode {
    /// Destination NAT: address and port rewritten to the backend's, replies translated back.
    #[default]
    Nat,
    /// L2 direct server return: only the destination MAC is rewritten to the backend's (the
    /// backend holds the VIP on a loopback and answers the client directly); the IP packet
    /// is untouched, so no checksum changes.
    Dsr,
}

fn one() -> u32 {
    1
}

fn default_table_size() -> u32 {
    DEFAULT_TABLE_SIZE
}

impl BackendConfig {
    /// An active backend of weight 1.
    pub fn new(address: IpAddr, port: Option<u16>) -> Self {
        Self {
            address,
            port,
            weight: 1,
            state: BackendState::Active,
            name: None,
            mac: None,
        }
    }

    /// The backend's name: the configured one, else `address:port` (`[v6]:port`), or the
    /// bare address without a port.
    pub fn display_name(&self) -> String {
        if let Some(n) = &self.name {
            return n.clone();
        }
        crate::wire::summary::endpoint(self.address, self.port)
    }
}

/// A virtual service: a VIP, a protocol, one port or all, and its backends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceConfig {
    /// Unique name.
    pub name: String,
    /// Virtual IP (IPv4 or IPv6).
    pub vip: IpAddr,
    /// `tcp`, `udp` or `sctp`.
    pub protocol: L4Protocol,
    /// The service port; absent: every port of the VIP for this protocol.
    #[serde(default)]
    pub port: Option<u16>,
    /// Fields that select the backend (default `five_tuple`).
    #[serde(default)]
    pub hash: HashMode,
    /// Maglev table size (prime; default 65537).
    #[serde(default = "default_table_size")]
    pub table_size: u32,
    /// `nat` (default) or `dsr` (L2 direct server return).
    #[serde(default)]
    pub forwarding: ForwardingMode,
    /// A new flow finding no eligible backend is answered, not only dropped: a TCP RST,
    /// an SCTP ABORT, ICMP port unreachable for UDP ([`crate::reject`]), sent on the node's `reset` output
    /// and counted `no-backend-rejects` (OVN's `options:reject=true`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub reject: bool,
    /// The backends.
    #[serde(default)]
    pub backends: Vec<BackendConfig>,
}

/// The `lb` node's parameters / the load-balancer configuration file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LbConfig {
    /// Read the configuration from this TOML file instead (then no other key may be set).
    #[serde(default)]
    pub file: Option<PathBuf>,
    /// Name of a shared control (see [`crate::lb::LbControl::attach_named`]): every node with
    /// the same name (one per worker) follows the same tables, and the control plane
    /// updates them by that name. Absent: the node's tables never change.
    #[serde(default)]
    pub control: Option<String>,
    /// Established flows of a down or removed backend: `drop`, `reset` or `keep`. Absent:
    /// `drop`, or `keep` on a node whose services the OVN Northbound feeds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub down_backend: Option<DownPolicy>,
    /// Connection table settings.
    #[serde(default)]
    pub conntrack: ConntrackConfig,
    /// Limit on service ids ever allocated (counters are sized by it).
    #[serde(default = "default_max_services")]
    pub max_services: u32,
    /// Limit on backend ids ever allocated (ids are never reused; counters are sized by it).
    #[serde(default = "default_max_backends")]
    pub max_backends: u32,
    /// The virtual services.
    #[serde(default)]
    pub services: Vec<ServiceConfig>,
}

fn default_max_services() -> u32 {
    DEFAULT_MAX_SERVICES
}

fn default_max_backends() -> u32 {
    DEFAULT_MAX_BACKENDS
}

impl Default for LbConfig {
    fn default() -> Self {
        Self {
            file: None,
            control: None,
            down_backend: None,
            conntrack: ConntrackConfig::default(),
            max_services: DEFAULT_MAX_SERVICES,
            max_backends: DEFAULT_MAX_BACKENDS,
            services: Vec::new(),
        }
    }
}

impl LbConfig {
    /// Parses TOML text (unknown keys refused) and validates it.
    pub fn from_toml_str(text: &str) -> Result<Self, ConfigError> {
        let de = toml::Deserializer::new(text);
        let cfg: LbConfig = serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            let key = if path == "." { String::new() } else { path };
            ConfigError::new(key, e.inner().message().trim().to_string())
        })?;
        if cfg.file.is_some() {
            return Err(ConfigError::new(
                "file",
                "a load-balancer file may not name another file",
            ));
        }
        cfg.validate()?;
        Ok(cfg)
    }

    /// When `file` is set, the configuration read from it (with `control` taken from
    /// here if the file has none); otherwise a validated copy of `self`.
    pub fn resolve(&self) -> Result<Self, ConfigError> {
        let Some(path) = &self.file else {
            self.validate()?;
            return Ok(self.clone());
        };
        let bare = LbConfig {
            file: None,
            control: None,
            ..Default::default()
        };
        if (LbConfig {
            file: None,
            control: None,
            ..self.clone()
        }) != bare
        {
            return Err(ConfigError::new(
                "file",
                "with `file`, only `control` may be set beside it",
            ));
        }
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigError::new("file", format!("cannot read {}: {e}", path.display()))
        })?;
        let mut cfg = Self::from_toml_str(&text).map_err(|e| {
            ConfigError::new(
                format!("file({})", path.display()),
                format!(
                    "{}{}{}",
                    e.key,
                    if e.key.is_empty() { "" } else { ": " },
                    e.reason
                ),
            )
        })?;
        if cfg.control.is_none() {
            cfg.control = self.control.clone();
        }
        Ok(cfg)
    }

    /// Checks everything a table build would refuse, naming the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.conntrack.capacity == 0 || self.conntrack.capacity > MAX_CAPACITY {
            return Err(ConfigError::new(
                "conntrack.capacity",
                format!("must be 1..={MAX_CAPACITY}"),
            ));
        }
        for (k, v, max) in [
            ("max_services", self.max_services, MAX_SERVICE_IDS),
            ("max_backends", self.max_backends, MAX_IDS),
        ] {
            if v == 0 || v > max {
                return Err(ConfigError::new(k, format!("must be 1..={max}")));
            }
        }
        if let Some(c) = &self.control {
            if c.is_empty() {
                return Err(ConfigError::new("control", "must not be empty"));
            }
        }
        let mut names = BTreeMap::new();
        let mut endpoints = BTreeMap::new();
        for (si, s) in self.services.iter().enumerate() {
            let key = |k: &str| format!("services[{si}].{k}");
            if s.name.is_empty() {
                return Err(ConfigError::new(key("name"), "must not be empty"));
            }
            if let Some(prev) = names.insert(s.name.as_str(), si) {
                return Err(ConfigError::new(
                    key("name"),
                    format!("`{}` is also services[{prev}]", s.name),
                ));
            }
            if s.vip.is_unspecified() || s.vip.is_multicast() {
                return Err(ConfigError::new(key("vip"), "must be a unicast address"));
            }
            if s.port == Some(0) {
                return Err(ConfigError::new(
                    key("port"),
                    "must be 1..=65535 (omit it for all ports)",
                ));
            }
            if let Some(prev) = endpoints.insert((s.vip, s.protocol, s.port), si) {
                return Err(ConfigError::new(
                    key("vip"),
                    format!("same VIP, protocol and port as services[{prev}]"),
                ));
            }
            if !maglev::is_prime(s.table_size) || s.table_size > maglev::MAX_TABLE_SIZE {
                return Err(ConfigError::new(
                    key("table_size"),
                    format!(
                        "{} is not a prime up to {} (e.g. 65537, 655373)",
                        s.table_size,
                        maglev::MAX_TABLE_SIZE
                    ),
                ));
            }
            if s.backends.len() >= s.table_size as usize || s.backends.len() > maglev::MAX_BACKENDS
            {
                return Err(ConfigError::new(
                    key("backends"),
                    format!(
                        "{} backends need a table_size above their count (and at most {})",
                        s.backends.len(),
                        maglev::MAX_BACKENDS
                    ),
                ));
            }
            let mut bnames = BTreeMap::new();
            let mut bends = BTreeMap::new();
            for (bi, b) in s.backends.iter().enumerate() {
                let bkey = |k: &str| format!("services[{si}].backends[{bi}].{k}");
                if b.address.is_ipv4() != s.vip.is_ipv4() {
                    return Err(ConfigError::new(
                        bkey("address"),
                        "must be of the VIP's address family",
                    ));
                }
                if b.address.is_unspecified() || b.address.is_multicast() {
                    return Err(ConfigError::new(
                        bkey("address"),
                        "must be a unicast address",
                    ));
                }
                if b.port == Some(0) {
                    return Err(ConfigError::new(bkey("port"), "must be 1..=65535"));
                }
                if s.port.is_none() && b.port.is_some() {
                    return Err(ConfigError::new(
                        bkey("port"),
                        "an all-ports service keeps the packet's port: omit the backend port",
                    ));
                }
                if b.name.as_deref() == Some("") {
                    return Err(ConfigError::new(bkey("name"), "must not be empty"));
                }
                if let Some(prev) = bnames.insert(b.display_name(), bi) {
                    return Err(ConfigError::new(
                        bkey("name"),
                        format!("`{}` is also backends[{prev}]", b.display_name()),
                    ));
                }
                match (s.forwarding, b.mac) {
                    (ForwardingMode::Dsr, None) => {
                        return Err(ConfigError::new(
                            bkey("mac"),
                            "required with forwarding = \"dsr\" (the frame is sent to it)",
                        ))
                    }
                    (ForwardingMode::Nat, Some(_)) => {
                        return Err(ConfigError::new(
                            bkey("mac"),
                            "only used with forwarding = \"dsr\"",
                        ))
                    }
                    _ => {}
                }
                if s.forwarding == ForwardingMode::Dsr && b.port.is_some() && b.port != s.port {
                    return Err(ConfigError::new(
                        bkey("port"),
                        "direct server return does not translate ports: omit it or use the service port",
                    ));
                }
                if let Some(prev) = bends.insert((b.address, b.port.or(s.port)), bi) {
                    return Err(ConfigError::new(
                        bkey("address"),
                        format!("same address and port as backends[{prev}]"),
                    ));
                }
            }
        }
        // A backend endpoint may not be a VIP endpoint (packets would loop through the NAT).
        for (si, s) in self.services.iter().enumerate() {
            for (bi, b) in s.backends.iter().enumerate() {
                let port = b.port.or(s.port);
                let hit = self.services.iter().position(|v| {
                    v.vip == b.address
                        && v.protocol == s.protocol
                        && (v.port.is_none() || port.is_none() || v.port == port)
                });
                if let Some(v) = hit {
                    return Err(ConfigError::new(
                        format!("services[{si}].backends[{bi}].address"),
                        format!(
                            "is the endpoint of services[{v}] (`{}`)",
                            self.services[v].name
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    /// The service named `name`.
    pub fn service_mut(&mut self, name: &str) -> Option<&mut ServiceConfig> {
        self.services.iter_mut().find(|s| s.name == name)
    }
}

/// Addresses as the 16-byte form used by [`FlowKey`] (IPv4 in bytes 0..4).
pub fn addr16(a: IpAddr) -> [u8; 16] {
    match a {
        IpAddr::V4(v) => {
            let mut b = [0u8; 16];
            b[..4].copy_from_slice(&v.octets());
            b
        }
        IpAddr::V6(v) => v.octets(),
    }
}

fn family_of(a: IpAddr) -> u8 {
    if a.is_ipv4() {
        4
    } else {
        6
    }
}

/// Identity of a service: VIP, protocol, port (`None` = all ports).
pub type ServiceKey = (IpAddr, L4Protocol, Option<u16>);

/// Stable ids for services and backends (never reused); see the module docs.
#[derive(Debug, Clone, Default)]
pub struct IdSpace {
    services: BTreeMap<ServiceKey, u32>,
    backends: BTreeMap<(u32, IpAddr, Option<u16>), u32>,
    service_keys: Vec<ServiceKey>,
    backend_keys: Vec<(u32, IpAddr, Option<u16>)>,
    /// Last configured name of each backend id (removed backends keep it in counters).
    backend_names: Vec<String>,
}

impl IdSpace {
    /// Number of service ids allocated.
    pub fn service_count(&self) -> usize {
        self.service_keys.len()
    }

    /// Number of backend ids allocated.
    pub fn backend_count(&self) -> usize {
        self.backend_keys.len()
    }
}

/// Runtime state of a backend id in one table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BackendStatus {
    /// Takes new flows.
    Active,
    /// Keeps its flows; no new ones.
    Draining,
    /// Down: its flows are dropped, reset or kept ([`DownPolicy`]).
    Down,
    /// No longer configured: treated like `Down`.
    Removed,
}

impl BackendStatus {
    /// Whether established flows on this backend continue.
    #[inline]
    pub fn serves_established(self) -> bool {
        matches!(self, BackendStatus::Active | BackendStatus::Draining)
    }
}

/// A service in a [`ServiceTable`].
#[derive(Debug, Clone)]
pub struct ServiceRt {
    /// Name ("" for a service id no longer configured).
    pub name: String,
    /// Whether the service is in this table's configuration.
    pub present: bool,
    pub(crate) vip: [u8; 16],
    pub(crate) v6: bool,
    /// Protocol number.
    pub proto: u8,
    /// Port (`None`: all ports).
    pub port: Option<u16>,
    /// Hash mode.
    pub hash: HashMode,
    /// The Maglev table (slot -> index into `members`).
    pub maglev: Maglev,
    /// Maglev backend index -> backend id.
    pub members: Vec<u32>,
    /// New flows without an eligible backend are answered ([`ServiceConfig::reject`]).
    pub reject: bool,
}

impl ServiceRt {
    /// The VIP.
    pub fn vip(&self) -> IpAddr {
        addr_from16(self.vip, self.v6)
    }
}

/// A backend id in a [`ServiceTable`].
#[derive(Debug, Clone)]
pub struct BackendRt {
    pub(crate) addr: [u8; 16],
    /// Port (`None`: the packet's port).
    pub port: Option<u16>,
    /// Status in this table.
    pub status: BackendStatus,
    /// The service id it belongs to.
    pub service: u32,
    /// Weight.
    pub weight: u32,
    pub(crate) v6: bool,
    /// Name (for a removed backend: its last configured name).
    pub name: String,
    /// Direct server return: the backend's MAC (the frame's new destination); `None`: NAT.
    pub dsr_mac: Option<[u8; 6]>,
}

impl BackendRt {
    /// The backend's address.
    pub fn address(&self) -> IpAddr {
        addr_from16(self.addr, self.v6)
    }
}

fn addr_from16(a: [u8; 16], v6: bool) -> IpAddr {
    if v6 {
        IpAddr::from(a)
    } else {
        IpAddr::from([a[0], a[1], a[2], a[3]])
    }
}

/// An (address, protocol, port) endpoint key; `family` 0 marks an empty slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct EpKey {
    addr: [u8; 16],
    port: u16,
    proto: u8,
    family: u8,
}

/// A small open-addressing map from an endpoint (address, protocol, port; port 0 = any)
/// to a value: exact port first, then the any-port entry. Built off the packet path.
#[derive(Debug, Clone)]
pub struct EndpointMap<V> {
    keys: Box<[EpKey]>,
    vals: Box<[V]>,
    mask: usize,
    len: usize,
    has_any_port: bool,
    /// One bit per [`addr_bit`] of the addresses in the map: a clear bit answers "not in
    /// the map" for an address without hashing the endpoint or probing (the common case
    /// for the clients' addresses of reply traffic, which differ packet by packet).
    addrs: [u64; 4],
}

/// The bit of `addr` in [`EndpointMap`]'s address filter (0..256): one multiply of the
/// address's two halves folded together.
#[inline(always)]
fn addr_bit(addr: &[u8; 16]) -> usize {
    let v = u128::from_le_bytes(*addr);
    let x = (v as u64) ^ ((v >> 64) as u64).rotate_left(17);
    (x.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 56) as usize
}

#[inline(always)]
fn ep_hash(addr: &[u8; 16], proto: u8, port: u16, family: u8) -> u64 {
    let v = u128::from_le_bytes(*addr);
    let m = u64::from(port) | u64::from(proto) << 16 | u64::from(family) << 24;
    fmix64((v as u64) ^ ((v >> 64) as u64).rotate_left(29) ^ (m << 32))
}

impl<V: Copy + Default> EndpointMap<V> {
    /// A map of `entries`; a duplicate key keeps the first value.
    pub fn build(entries: &[(IpAddr, u8, u16, V)]) -> Self {
        let n = (entries.len() * 2).max(2).next_power_of_two();
        let mut m = Self {
            keys: vec![EpKey::default(); n].into_boxed_slice(),
            vals: vec![V::default(); n].into_boxed_slice(),
            mask: n - 1,
            len: 0,
            has_any_port: false,
            addrs: [0; 4],
        };
        for &(a, proto, port, v) in entries {
            let k = EpKey {
                addr: addr16(a),
                port,
                proto,
                family: family_of(a),
            };
            let mut i = ep_hash(&k.addr, proto, port, k.family) as usize & m.mask;
            loop {
                if m.keys[i].family == 0 {
                    m.keys[i] = k;
                    m.vals[i] = v;
                    m.len += 1;
                    m.has_any_port |= port == 0;
                    let b = addr_bit(&k.addr);
                    m.addrs[b / 64] |= 1 << (b % 64);
                    break;
                }
                if m.keys[i] == k {
                    break;
                }
                i = (i + 1) & m.mask;
            }
        }
        m
    }

    #[inline(always)]
    fn probe(&self, addr: &[u8; 16], proto: u8, port: u16, family: u8) -> Option<V> {
        let mut i = ep_hash(addr, proto, port, family) as usize & self.mask;
        loop {
            let k = &self.keys[i];
            if k.family == 0 {
                return None;
            }
            if k.port == port && k.proto == proto && k.family == family && k.addr == *addr {
                return Some(self.vals[i]);
            }
            i = (i + 1) & self.mask;
        }
    }

    /// The value for an endpoint: the exact port's entry, else the any-port entry.
    /// `family` is 4 or 6.
    #[inline(always)]
    pub fn get(&self, addr: &[u8; 16], proto: u8, port: u16, family: u8) -> Option<V> {
        let b = addr_bit(addr);
        if self.addrs[b / 64] & (1 << (b % 64)) == 0 {
            return None;
        }
        if let Some(v) = self.probe(addr, proto, port, family) {
            return Some(v);
        }
        if self.has_any_port && port != 0 {
            return self.probe(addr, proto, 0, family);
        }
        None
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the map is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// Reply candidates of a backend endpoint: `cands[start..start + count]`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CandRange {
    /// First index in the candidate list.
    pub start: u32,
    /// Number of candidates.
    pub count: u32,
}

/// One immutable generation of the load balancer's services, built off the packet path
/// and shared by every worker through an `Arc`.
#[derive(Debug)]
pub struct ServiceTable {
    /// Increases with every published table of one control.
    pub generation: u64,
    /// Services by id (ids of removed services stay, with `present = false`).
    pub services: Vec<ServiceRt>,
    /// Backends by id (removed ones have status `Removed`).
    pub backends: Vec<BackendRt>,
    /// (VIP, protocol, port | 0 for all ports) -> service id.
    pub(crate) vips: EndpointMap<u32>,
    /// (backend address, protocol, port | 0) -> reply candidates.
    pub(crate) replies: EndpointMap<CandRange>,
    /// (service id, backend id) pairs a reply from a backend endpoint may belong to.
    pub(crate) cands: Vec<(u32, u32)>,
    /// What happens to flows of down backends.
    pub down_policy: DownPolicy,
}

impl ServiceTable {
    /// Builds a table for `cfg` (validated here), allocating ids in `ids` for services and
    /// backends seen for the first time; refuses when `max_services` / `max_backends` ids
    /// would be exceeded (the id space is then left unchanged).
    pub fn build(cfg: &LbConfig, ids: &mut IdSpace, generation: u64) -> Result<Self, ConfigError> {
        cfg.validate()?;
        let mut next = ids.clone();
        let mut svc_ids = Vec::with_capacity(cfg.services.len());
        let mut be_ids: Vec<Vec<u32>> = Vec::with_capacity(cfg.services.len());
        for (si, s) in cfg.services.iter().enumerate() {
            let key = (s.vip, s.protocol, s.port);
            let sid = match next.services.get(&key) {
                Some(&id) => id,
                None => {
                    let id = next.service_keys.len() as u32;
                    if id >= cfg.max_services {
                        return Err(ConfigError::new(
                            format!("services[{si}]"),
                            format!(
                                "more than max_services = {} service ids ever allocated",
                                cfg.max_services
                            ),
                        ));
                    }
                    next.services.insert(key, id);
                    next.service_keys.push(key);
                    id
                }
            };
            svc_ids.push(sid);
            let mut bids = Vec::with_capacity(s.backends.len());
            for (bi, b) in s.backends.iter().enumerate() {
                let bkey = (sid, b.address, b.port.or(s.port));
                let bid = match next.backends.get(&bkey) {
                    Some(&id) => id,
                    None => {
                        let id = next.backend_keys.len() as u32;
                        if id >= cfg.max_backends {
                            return Err(ConfigError::new(
                                format!("services[{si}].backends[{bi}]"),
                                format!("more than max_backends = {} backend ids ever allocated (ids are never reused)", cfg.max_backends),
                            ));
                        }
                        next.backends.insert(bkey, id);
                        next.backend_keys.push(bkey);
                        next.backend_names.push(String::new());
                        id
                    }
                };
                next.backend_names[bid as usize] = b.display_name();
                bids.push(bid);
            }
            be_ids.push(bids);
        }
        // Every id ever allocated, as removed; configured ones are filled in below.
        let mut services: Vec<ServiceRt> = next
            .service_keys
            .iter()
            .map(|&(vip, proto, port)| ServiceRt {
                name: String::new(),
                present: false,
                vip: addr16(vip),
                v6: vip.is_ipv6(),
                proto: proto.number(),
                port,
                hash: HashMode::FiveTuple,
                maglev: Maglev::build(&[], 2).expect("empty table"),
                members: Vec::new(),
                reject: false,
            })
            .collect();
        let mut backends: Vec<BackendRt> = next
            .backend_keys
            .iter()
            .zip(&next.backend_names)
            .map(|(&(service, addr, port), name)| BackendRt {
                addr: addr16(addr),
                port,
                status: BackendStatus::Removed,
                service,
                weight: 0,
                v6: addr.is_ipv6(),
                name: name.clone(),
                dsr_mac: None,
            })
            .collect();
        let mut vip_entries = Vec::new();
        let mut rev: BTreeMap<(IpAddr, u8, u16), Vec<(u32, u32)>> = BTreeMap::new();
        let down_policy = cfg.down_backend.unwrap_or_default();
        // By service id: its replies come back through us (not direct server return).
        let mut nat_service = vec![false; services.len()];
        for (si, s) in cfg.services.iter().enumerate() {
            let sid = svc_ids[si];
            let mb: Vec<maglev::Backend> = s
                .backends
                .iter()
                .map(|b| maglev::Backend {
                    name: b.display_name(),
                    weight: b.weight,
                    state: b.state,
                })
                .collect();
            let table = Maglev::build(&mb, s.table_size)
                .map_err(|e| ConfigError::new(format!("services[{si}]"), e.to_string()))?;
            let rt = &mut services[sid as usize];
            rt.name = s.name.clone();
            rt.present = true;
            rt.hash = s.hash;
            rt.maglev = table;
            rt.members = be_ids[si].clone();
            rt.reject = s.reject;
            vip_entries.push((s.vip, s.protocol.number(), s.port.unwrap_or(0), sid));
            nat_service[sid as usize] = s.forwarding == ForwardingMode::Nat;
            for (bi, b) in s.backends.iter().enumerate() {
                let bid = be_ids[si][bi];
                let be = &mut backends[bid as usize];
                be.status = match b.state {
                    BackendState::Active => BackendStatus::Active,
                    BackendState::Draining => BackendStatus::Draining,
                    BackendState::Down => BackendStatus::Down,
                };
                be.weight = b.weight;
                be.name = b.display_name();
                be.dsr_mac = match s.forwarding {
                    ForwardingMode::Dsr => b.mac.map(|m| m.0),
                    ForwardingMode::Nat => None,
                };
                if s.forwarding == ForwardingMode::Dsr {
                    // Replies go from the backend straight to the client, not through us.
                    continue;
                }
                let port = b.port.or(s.port).unwrap_or(0);
                rev.entry((b.address, s.protocol.number(), port))
                    .or_default()
                    .push((sid, bid));
            }
        }
        if down_policy == DownPolicy::Keep {
            // Kept flows of removed backends still get their replies translated: their
            // endpoints stay reply candidates, after the configured ones of the same
            // endpoint (an untracked reply is never attributed to a removed backend).
            for (bid, &(sid, addr, port)) in next.backend_keys.iter().enumerate() {
                if backends[bid].status == BackendStatus::Removed && nat_service[sid as usize] {
                    let proto = services[sid as usize].proto;
                    rev.entry((addr, proto, port.unwrap_or(0)))
                        .or_default()
                        .push((sid, bid as u32));
                }
            }
        }
        let mut cands = Vec::new();
        let mut rev_entries = Vec::new();
        for ((a, proto, port), list) in rev {
            rev_entries.push((
                a,
                proto,
                port,
                CandRange {
                    start: cands.len() as u32,
                    count: list.len() as u32,
                },
            ));
            cands.extend(list);
        }
        *ids = next;
        Ok(Self {
            generation,
            services,
            backends,
            vips: EndpointMap::build(&vip_entries),
            replies: EndpointMap::build(&rev_entries),
            cands,
            down_policy,
        })
    }

    /// The id of the configured service named `name`.
    pub fn service_id(&self, name: &str) -> Option<u32> {
        self.services
            .iter()
            .position(|s| s.present && s.name == name)
            .map(|i| i as u32)
    }

    /// The id of backend `backend` (by name) of service `service`, if configured.
    pub fn backend_id(&self, service: &str, backend: &str) -> Option<u32> {
        let sid = self.service_id(service)?;
        self.backends
            .iter()
            .position(|b| {
                b.service == sid && b.status != BackendStatus::Removed && b.name == backend
            })
            .map(|i| i as u32)
    }

    /// The backend id Maglev picks for a new flow `key` of service `sid` (`None`: no
    /// eligible backend). This is what the node does on a connection-table miss.
    #[inline]
    pub fn pick(&self, sid: u32, key: &FlowKey) -> Option<u32> {
        let s = &self.services[sid as usize];
        s.maglev
            .lookup(key.hash(s.hash))
            .map(|b| s.members[b.0 as usize])
    }

    /// The one (service, backend) a reply from an endpoint with candidates `cands` may be
    /// attributed to without a connection entry: the endpoint's only configured candidate.
    /// Removed backends kept for their flows (`down_backend = "keep"`) come after the
    /// configured ones and answer tracked replies only.
    #[inline]
    pub(crate) fn untracked_owner(&self, cands: &[(u32, u32)]) -> Option<(u32, u32)> {
        let removed = |c: &(u32, u32)| self.backends[c.1 as usize].status == BackendStatus::Removed;
        match cands {
            [first, rest @ ..] if !removed(first) && rest.first().is_none_or(removed) => {
                Some(*first)
            }
            _ => None,
        }
    }

    /// The service id a packet to `dst:port` (protocol `proto`) is for, if any.
    #[inline(always)]
    pub fn vip_lookup(&self, dst: &[u8; 16], proto: u8, port: u16, family: u8) -> Option<u32> {
        self.vips.get(dst, proto, port, family)
    }

    /// Where the reply candidates of a packet from `src:port` are in the candidate list.
    #[inline(always)]
    pub(crate) fn reply_range(
        &self,
        src: &[u8; 16],
        proto: u8,
        port: u16,
        family: u8,
    ) -> Option<CandRange> {
        self.replies.get(src, proto, port, family)
    }

    /// Reply candidates (service id, backend id) for a packet from `src:port`.
    #[inline(always)]
    pub fn reply_candidates(
        &self,
        src: &[u8; 16],
        proto: u8,
        port: u16,
        family: u8,
    ) -> &[(u32, u32)] {
        match self.replies.get(src, proto, port, family) {
            Some(r) => &self.cands[r.start as usize..(r.start + r.count) as usize],
            None => &[],
        }
    }
}

impl fmt::Display for ServiceTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (sid, s) in self.services.iter().enumerate().filter(|(_, s)| s.present) {
            let port = s.port.map_or("*".to_string(), |p| p.to_string());
            writeln!(
                f,
                "service {sid} {}: {} proto {} port {port}, {:?}, M={}",
                s.name,
                s.vip(),
                s.proto,
                s.hash,
                s.maglev.size()
            )?;
            let counts = s.maglev.slot_counts();
            for (i, &bid) in s.members.iter().enumerate() {
                let b = &self.backends[bid as usize];
                writeln!(
                    f,
                    "  backend {bid} {}: {:?} weight {} slots {}",
                    b.name, b.status, b.weight, counts[i]
                )?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(text: &str) -> Result<LbConfig, ConfigError> {
        LbConfig::from_toml_str(text)
    }

    const BASE: &str = r#"
        [[services]]
        name = "web"
        vip = "192.0.2.10"
        protocol = "tcp"
        port = 80
        backends = [{ address = "10.0.0.1", port = 8080 }, { address = "10.0.0.2", port = 8080, weight = 2, state = "draining" }]
        [[services]]
        name = "dns6"
        vip = "2001:db8::53"
        protocol = "udp"
        backends = [{ address = "2001:db8:1::1" }]
    "#;

    #[test]
    fn service_ids_fit_the_connection_entry() {
        let with = |k: &str, v: u32| cfg(&format!("{k} = {v}\n{BASE}"));
        assert!(with("max_services", MAX_SERVICE_IDS).is_ok());
        let e = with("max_services", MAX_SERVICE_IDS + 1).unwrap_err();
        assert_eq!(e.to_string(), "max_services: must be 1..=65536");
        assert!(with("max_backends", MAX_IDS).is_ok());
        assert!(with("max_backends", MAX_IDS + 1).is_err());
        // The largest service id an entry keeps.
        assert_eq!(u32::from(u16::MAX) + 1, MAX_SERVICE_IDS);
    }

    #[test]
    fn parses_and_builds() {
        let c = cfg(BASE).unwrap();
        assert_eq!(c.services.len(), 2);
        assert_eq!(c.services[0].table_size, 65537);
        assert_eq!(c.services[0].backends[1].state, BackendState::Draining);
        assert_eq!(c.services[1].port, None);
        let mut ids = IdSpace::default();
        let t = ServiceTable::build(&c, &mut ids, 1).unwrap();
        assert_eq!(t.service_id("web"), Some(0));
        assert_eq!(t.backend_id("web", "10.0.0.2:8080"), Some(1));
        assert_eq!(t.backend_id("dns6", "2001:db8:1::1"), Some(2));
        assert_eq!(t.backends[1].status, BackendStatus::Draining);
        // Draining backend holds no slots.
        assert_eq!(t.services[0].maglev.slot_counts(), vec![65537, 0]);
        let vip = addr16("192.0.2.10".parse().unwrap());
        assert_eq!(t.vip_lookup(&vip, 6, 80, 4), Some(0));
        assert_eq!(t.vip_lookup(&vip, 6, 81, 4), None);
        assert_eq!(t.vip_lookup(&vip, 17, 80, 4), None);
        let vip6 = addr16("2001:db8::53".parse().unwrap());
        assert_eq!(
            t.vip_lookup(&vip6, 17, 5353, 6),
            Some(1),
            "all-ports service"
        );
        let b = addr16("10.0.0.1".parse().unwrap());
        assert_eq!(t.reply_candidates(&b, 6, 8080, 4), &[(0, 0)]);
        assert!(t.reply_candidates(&b, 6, 80, 4).is_empty());
        let b6 = addr16("2001:db8:1::1".parse().unwrap());
        assert_eq!(t.reply_candidates(&b6, 17, 9999, 6), &[(1, 2)]);
    }

    #[test]
    fn ids_are_stable_and_never_reused() {
        let mut c = cfg(BASE).unwrap();
        let mut ids = IdSpace::default();
        let t1 = ServiceTable::build(&c, &mut ids, 1).unwrap();
        // Remove backend 10.0.0.1, add 10.0.0.3: the old id is Removed, the new gets id 3.
        c.services[0].backends.remove(0);
        c.services[0]
            .backends
            .push(BackendConfig::new("10.0.0.3".parse().unwrap(), Some(8080)));
        let t2 = ServiceTable::build(&c, &mut ids, 2).unwrap();
        assert_eq!(t1.backends.len(), 3);
        assert_eq!(t2.backends.len(), 4);
        assert_eq!(t2.backends[0].status, BackendStatus::Removed);
        assert_eq!(
            t2.backends[0].address(),
            "10.0.0.1".parse::<IpAddr>().unwrap()
        );
        assert_eq!(t2.backend_id("web", "10.0.0.2:8080"), Some(1));
        assert_eq!(t2.backend_id("web", "10.0.0.3:8080"), Some(3));
        // Bringing the first one back reuses its id.
        c.services[0]
            .backends
            .push(BackendConfig::new("10.0.0.1".parse().unwrap(), Some(8080)));
        let t3 = ServiceTable::build(&c, &mut ids, 3).unwrap();
        assert_eq!(t3.backend_id("web", "10.0.0.1:8080"), Some(0));
        // Limits: a new id beyond max_backends is refused and the id space is unchanged.
        c.max_backends = 4;
        c.services[0]
            .backends
            .push(BackendConfig::new("10.0.0.9".parse().unwrap(), Some(8080)));
        let e = ServiceTable::build(&c, &mut ids, 4).unwrap_err();
        assert_eq!(e.key, "services[0].backends[3]");
        assert_eq!(ids.backend_count(), 4);
    }

    #[test]
    fn refusals_name_the_key() {
        let cases: &[(&str, &str)] = &[
            ("bogus = 1", "bogus"),
            (
                "[[services]]\nname = \"a\"\nvip = \"1.2.3.4\"\nprotocol = \"dccp\"",
                "services[0].protocol",
            ),
            (
                "[[services]]\nname = \"a\"\nvip = \"1.2.3.4\"\nprotocol = \"tcp\"\ntable_size = 65536",
                "services[0].table_size",
            ),
            (
                "[[services]]\nname = \"a\"\nvip = \"1.2.3.4\"\nprotocol = \"tcp\"\nport = 0",
                "services[0].port",
            ),
            (
                "[[services]]\nname = \"a\"\nvip = \"1.2.3.4\"\nprotocol = \"tcp\"\nbackends = [{ address = \"::1\" }]",
                "services[0].backends[0].address",
            ),
            (
                "[[services]]\nname = \"a\"\nvip = \"1.2.3.4\"\nprotocol = \"tcp\"\nbackends = [{ address = \"10.0.0.1\", port = 80 }]",
                "services[0].backends[0].port",
            ),
            (
                "[[services]]\nname = \"a\"\nvip = \"1.2.3.4\"\nprotocol = \"tcp\"\nport = 80\nbackends = [{ address = \"10.0.0.1\" }, { address = \"10.0.0.1\", port = 80 }]",
                "services[0].backends[1].address",
            ),
            (
                "[[services]]\nname = \"a\"\nvip = \"1.2.3.4\"\nprotocol = \"tcp\"\nport = 80\nbackends = [{ address = \"10.0.0.1\", name = \"x\" }, { address = \"10.0.0.2\", name = \"x\" }]",
                "services[0].backends[1].name",
            ),
            (
                "[[services]]\nname = \"a\"\nvip = \"1.2.3.4\"\nprotocol = \"tcp\"\nport = 80\n[[services]]\nname = \"a\"\nvip = \"1.2.3.5\"\nprotocol = \"tcp\"",
                "services[1].name",
            ),
            (
                "[[services]]\nname = \"a\"\nvip = \"1.2.3.4\"\nprotocol = \"tcp\"\nport = 80\n[[services]]\nname = \"b\"\nvip = \"1.2.3.4\"\nprotocol = \"tcp\"\nport = 80",
                "services[1].vip",
            ),
            (
                "[[services]]\nname = \"a\"\nvip = \"1.2.3.4\"\nprotocol = \"tcp\"\nport = 80\nbackends = [{ address = \"1.2.3.4\" }]",
                "services[0].backends[0].address",
            ),
            ("[conntrack]\ncapacity = 0", "conntrack.capacity"),
            ("[conntrack]\ntimeouts = { udp = 1, tcp = 2 }", "conntrack.timeouts.tcp"),
            ("down_backend = \"explode\"", "down_backend"),
            ("file = \"x.toml\"", "file"),
        ];
        for (text, key) in cases {
            let e = cfg(text).expect_err(text);
            assert_eq!(&e.key, key, "{text}: {e}");
            assert!(!e.reason.is_empty());
        }
    }

    #[test]
    fn file_indirection() {
        let dir = std::env::temp_dir().join(format!("lb-svc-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("lb.toml");
        std::fs::write(&p, BASE).unwrap();
        let c = LbConfig {
            file: Some(p.clone()),
            control: Some("x".into()),
            ..Default::default()
        };
        let r = c.resolve().unwrap();
        assert_eq!(r.services.len(), 2);
        assert_eq!(r.control.as_deref(), Some("x"));
        let bad = LbConfig {
            file: Some(p.clone()),
            down_backend: Some(DownPolicy::Reset),
            ..Default::default()
        };
        assert_eq!(bad.resolve().unwrap_err().key, "file");
        std::fs::write(&p, "[[services]]\nname = 3").unwrap();
        let e = c.resolve().unwrap_err();
        assert!(e.key.starts_with("file("), "{e}");
        let missing = LbConfig {
            file: Some(dir.join("nope.toml")),
            ..Default::default()
        };
        assert_eq!(missing.resolve().unwrap_err().key, "file");
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn endpoint_map_exact_then_any_port() {
        let a: IpAddr = "10.1.1.1".parse().unwrap();
        let b: IpAddr = "fd00::1".parse().unwrap();
        let m = EndpointMap::build(&[(a, 6, 80, 1u32), (a, 6, 0, 2), (b, 17, 53, 3)]);
        let ka = addr16(a);
        let kb = addr16(b);
        assert_eq!(m.get(&ka, 6, 80, 4), Some(1));
        assert_eq!(m.get(&ka, 6, 81, 4), Some(2));
        assert_eq!(m.get(&ka, 17, 80, 4), None);
        assert_eq!(m.get(&kb, 17, 53, 6), Some(3));
        assert_eq!(m.get(&kb, 17, 54, 6), None);
        assert_eq!(m.get(&kb, 17, 53, 4), None, "family is part of the key");
        let e = EndpointMap::<u32>::build(&[]);
        assert_eq!(e.get(&ka, 6, 80, 4), None);
    }

    /// Endpoints from a small space (so that queries hit entries, share address-filter
    /// bits and collide in the table): an IPv4 or IPv6 address, a protocol, a port (0 =
    /// any).
    fn endpoint() -> impl proptest::strategy::Strategy<Value = (IpAddr, u8, u16)> {
        use proptest::prelude::*;
        (
            any::<bool>(),
            0u8..40,
            prop::sample::select(vec![6u8, 17]),
            0u16..4,
        )
            .prop_map(|(v6, host, proto, port)| {
                let a: IpAddr = if v6 {
                    std::net::Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, u16::from(host)).into()
                } else {
                    std::net::Ipv4Addr::new(10, 0, host / 8, host).into()
                };
                (a, proto, port)
            })
    }

    proptest::proptest! {
        /// `get` answers as a plain list would: the first entry for the exact endpoint,
        /// else the first any-port entry for the address and protocol, else nothing.
        #[test]
        fn endpoint_map_matches_a_list(
            entries in proptest::collection::vec(endpoint(), 0..24),
            queries in proptest::collection::vec(endpoint(), 1..64),
        ) {
            let list: Vec<(IpAddr, u8, u16, u32)> = entries
                .iter()
                .enumerate()
                .map(|(i, &(a, proto, port))| (a, proto, port, i as u32))
                .collect();
            let m = EndpointMap::build(&list);
            let find = |a: IpAddr, proto: u8, port: u16| {
                list.iter()
                    .find(|e| e.0 == a && e.1 == proto && e.2 == port)
                    .map(|e| e.3)
            };
            for (a, proto, port) in queries {
                let want = find(a, proto, port).or_else(|| {
                    if port != 0 { find(a, proto, 0) } else { None }
                });
                proptest::prop_assert_eq!(
                    m.get(&addr16(a), proto, port, family_of(a)),
                    want,
                    "{} {} {}", a, proto, port
                );
            }
        }
    }
}
