//! The load balancer's control plane: builds [`ServiceTable`]s off the workers, publishes
//! them, and sums the workers' counters.
//!
//! # Hitless swaps
//! [`LbControl::update`] builds the new table on the calling (control) thread, stores it as
//! the current `Arc<ServiceTable>` and then bumps an epoch counter (release). Each worker's
//! `lb` node reads the epoch once per burst (one relaxed-cost acquire load, no lock, no
//! read-modify-write); only when it changed does the node take the mutex to clone the new
//! `Arc` — once per update, not per burst — and from then on every packet of that worker
//! sees the new table. A burst is processed entirely with one table. Established flows are
//! pinned by the connection table (entries name stable backend ids, see
//! [`crate::lb::service`]), so a swap never moves them; only new flows use the new Maglev
//! tables. Old tables are kept in a retired list and freed by the control thread once no
//! worker holds them, so a worker never frees a table (no deallocation on the hot path).
//!
//! # Named controls
//! Nodes built from configuration find their control by name
//! ([`LbControl::attach_named`]): the first node built under a name creates it from its
//! parameters, later ones (the other workers) attach to it and follow its current table.
//! Control-plane code (and tests) get it with [`LbControl::named`].

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use serde::Serialize;

use super::maglev::BackendState;
use super::service::{
    BackendConfig, BackendStatus, ConfigError, ConntrackConfig, IdSpace, LbConfig, ServiceTable,
};
use crate::stats::Counter;

/// Counters of one service or one backend in one worker (single writer).
#[derive(Debug, Default)]
#[repr(align(64))]
pub struct EndpointCounters {
    /// Client-to-service packets.
    pub packets: Counter,
    /// Client-to-service bytes (frame bytes).
    pub bytes: Counter,
    /// Backend-to-client (reply) packets.
    pub reply_packets: Counter,
    /// Backend-to-client bytes.
    pub reply_bytes: Counter,
    /// Connections created (entries inserted).
    pub new_connections: Counter,
    /// Connections that ended (entries expired, reclaimed or removed).
    pub closed_connections: Counter,
}

/// One worker's load-balancer counters, by service id and by backend id.
#[derive(Debug)]
pub struct LbCounters {
    /// By service id.
    pub services: Box<[EndpointCounters]>,
    /// By backend id.
    pub backends: Box<[EndpointCounters]>,
}

impl LbCounters {
    fn new(services: u32, backends: u32) -> Self {
        Self {
            services: (0..services).map(|_| EndpointCounters::default()).collect(),
            backends: (0..backends).map(|_| EndpointCounters::default()).collect(),
        }
    }
}

/// Summed counters of a service or backend.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct EndpointStats {
    /// Client-to-service packets.
    pub packets: u64,
    /// Client-to-service bytes.
    pub bytes: u64,
    /// Reply packets.
    pub reply_packets: u64,
    /// Reply bytes.
    pub reply_bytes: u64,
    /// Connections created.
    pub new_connections: u64,
    /// Connections tracked now (created minus ended).
    pub active_connections: u64,
}

/// Counters of one backend.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BackendStats {
    /// Backend id.
    pub id: u32,
    /// Name.
    pub name: String,
    /// Status in the current table.
    pub status: BackendStatus,
    /// Counters.
    #[serde(flatten)]
    pub stats: EndpointStats,
}

/// Counters of one service and its backends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServiceStats {
    /// Service id.
    pub id: u32,
    /// Name.
    pub name: String,
    /// Counters.
    #[serde(flatten)]
    pub stats: EndpointStats,
    /// Its backends (configured ones and removed ones that still have connections).
    pub backends: Vec<BackendStats>,
}

/// Counters of all configured services, summed over workers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LbStats {
    /// Generation of the current table.
    pub generation: u64,
    /// Services.
    pub services: Vec<ServiceStats>,
}

impl LbStats {
    /// The service named `name`.
    pub fn service(&self, name: &str) -> Option<&ServiceStats> {
        self.services.iter().find(|s| s.name == name)
    }
}

impl ServiceStats {
    /// The backend named `name`.
    pub fn backend(&self, name: &str) -> Option<&BackendStats> {
        self.backends.iter().find(|b| b.name == name)
    }
}

struct Inner {
    config: LbConfig,
    ids: IdSpace,
    generation: u64,
    retired: Vec<Arc<ServiceTable>>,
}

/// The shared control of one load balancer (all workers' `lb` nodes of one name).
pub struct LbControl {
    epoch: AtomicU64,
    current: Mutex<Arc<ServiceTable>>,
    inner: Mutex<Inner>,
    workers: Mutex<Vec<Arc<LbCounters>>>,
    conntrack: ConntrackConfig,
    max_services: u32,
    max_backends: u32,
}

impl std::fmt::Debug for LbControl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LbControl")
            .field("epoch", &self.epoch())
            .field("generation", &lock(&self.inner).generation)
            .finish()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

static NAMED: Mutex<BTreeMap<String, Arc<LbControl>>> = Mutex::new(BTreeMap::new());

impl LbControl {
    /// A control with the table for `cfg` (its `file` is read, see [`LbConfig::resolve`]).
    /// The connection-table settings and id limits are fixed from here on.
    pub fn new(cfg: &LbConfig) -> Result<Arc<Self>, ConfigError> {
        let cfg = cfg.resolve()?;
        let mut ids = IdSpace::default();
        let table = ServiceTable::build(&cfg, &mut ids, 1)?;
        Ok(Arc::new(Self {
            epoch: AtomicU64::new(1),
            current: Mutex::new(Arc::new(table)),
            conntrack: cfg.conntrack,
            max_services: cfg.max_services,
            max_backends: cfg.max_backends,
            inner: Mutex::new(Inner {
                config: cfg,
                ids,
                generation: 1,
                retired: Vec::new(),
            }),
            workers: Mutex::new(Vec::new()),
        }))
    }

    /// The control registered under `name`, or a new one built from `cfg` and registered
    /// (when `cfg` is used, it must be valid; when the control exists, `cfg` is ignored).
    pub fn attach_named(name: &str, cfg: &LbConfig) -> Result<Arc<Self>, ConfigError> {
        let mut named = lock(&NAMED);
        if let Some(c) = named.get(name) {
            return Ok(c.clone());
        }
        let c = Self::new(cfg)?;
        named.insert(name.to_string(), c.clone());
        Ok(c)
    }

    /// The control registered under `name`.
    pub fn named(name: &str) -> Option<Arc<Self>> {
        lock(&NAMED).get(name).cloned()
    }

    /// Unregisters `name` (nodes attached to it keep working with it).
    pub fn forget_named(name: &str) -> bool {
        lock(&NAMED).remove(name).is_some()
    }

    /// Connection-table settings of the nodes of this control.
    pub fn conntrack(&self) -> ConntrackConfig {
        self.conntrack
    }

    /// The publication counter; it changes whenever a new table is published.
    #[inline(always)]
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// The current table.
    pub fn table(&self) -> Arc<ServiceTable> {
        lock(&self.current).clone()
    }

    /// The configuration of the current table.
    pub fn config(&self) -> LbConfig {
        lock(&self.inner).config.clone()
    }

    /// Builds a table for `cfg` on this thread and publishes it. Services and backends keep
    /// their ids; established flows stay on their backends. Returns the new generation.
    /// `conntrack`, `max_services` and `max_backends` cannot change (refused, naming the key).
    pub fn update(&self, cfg: &LbConfig) -> Result<u64, ConfigError> {
        let cfg = cfg.resolve()?;
        if cfg.conntrack != self.conntrack {
            return Err(ConfigError::new(
                "conntrack",
                "fixed when the nodes were built",
            ));
        }
        if cfg.max_services != self.max_services {
            return Err(ConfigError::new(
                "max_services",
                "fixed when the nodes were built",
            ));
        }
        if cfg.max_backends != self.max_backends {
            return Err(ConfigError::new(
                "max_backends",
                "fixed when the nodes were built",
            ));
        }
        let mut inner = lock(&self.inner);
        let mut ids = inner.ids.clone();
        let generation = inner.generation + 1;
        let table = Arc::new(ServiceTable::build(&cfg, &mut ids, generation)?);
        let old = std::mem::replace(&mut *lock(&self.current), table);
        self.epoch.fetch_add(1, Ordering::Release);
        inner.ids = ids;
        inner.generation = generation;
        inner.config = cfg;
        inner.retired.push(old);
        inner.retired.retain(|t| Arc::strong_count(t) > 1);
        Ok(generation)
    }

    /// Applies `f` to a copy of the current configuration and publishes the result.
    pub fn modify(&self, f: impl FnOnce(&mut LbConfig)) -> Result<u64, ConfigError> {
        let mut cfg = self.config();
        f(&mut cfg);
        self.update(&cfg)
    }

    fn modify_backend(
        &self,
        service: &str,
        backend: &str,
        f: impl FnOnce(&mut Vec<BackendConfig>, usize),
    ) -> Result<u64, ConfigError> {
        let mut cfg = self.config();
        let s = cfg
            .service_mut(service)
            .ok_or_else(|| ConfigError::new("services", format!("no service `{service}`")))?;
        let i = s
            .backends
            .iter()
            .position(|b| b.display_name() == backend)
            .ok_or_else(|| {
                ConfigError::new(
                    format!("services.{service}.backends"),
                    format!("no backend `{backend}`"),
                )
            })?;
        f(&mut s.backends, i);
        self.update(&cfg)
    }

    /// Sets a backend's state (e.g. `Down` after failed health checks, `Draining`).
    pub fn set_backend_state(
        &self,
        service: &str,
        backend: &str,
        state: BackendState,
    ) -> Result<u64, ConfigError> {
        self.modify_backend(service, backend, |b, i| b[i].state = state)
    }

    /// Removes a backend from a service (its established flows are then treated like a
    /// down backend's).
    pub fn remove_backend(&self, service: &str, backend: &str) -> Result<u64, ConfigError> {
        self.modify_backend(service, backend, |b, i| {
            b.remove(i);
        })
    }

    /// Adds a backend to a service.
    pub fn add_backend(&self, service: &str, backend: BackendConfig) -> Result<u64, ConfigError> {
        self.modify(|c| {
            if let Some(s) = c.service_mut(service) {
                s.backends.push(backend);
            }
        })
    }

    /// Frees retired tables no worker holds any more (also done on every update).
    pub fn reclaim(&self) -> usize {
        let mut inner = lock(&self.inner);
        let before = inner.retired.len();
        inner.retired.retain(|t| Arc::strong_count(t) > 1);
        before - inner.retired.len()
    }

    /// Registers a worker's counters (called when a node is built).
    pub(crate) fn register_worker(&self) -> Arc<LbCounters> {
        let c = Arc::new(LbCounters::new(self.max_services, self.max_backends));
        lock(&self.workers).push(c.clone());
        c
    }

    /// The current table and the epoch it belongs to (for a node starting up).
    pub(crate) fn subscribe(&self) -> (Arc<ServiceTable>, u64) {
        let e = self.epoch();
        (self.table(), e)
    }

    /// Counters of every configured service and backend (plus removed backends that still
    /// have connections), summed over all workers.
    pub fn stats(&self) -> LbStats {
        let table = self.table();
        let workers = lock(&self.workers).clone();
        let sum = |pick: &dyn Fn(&LbCounters) -> &EndpointCounters| {
            let mut s = EndpointStats::default();
            let mut closed = 0u64;
            for w in &workers {
                let c = pick(w);
                s.packets += c.packets.get();
                s.bytes += c.bytes.get();
                s.reply_packets += c.reply_packets.get();
                s.reply_bytes += c.reply_bytes.get();
                s.new_connections += c.new_connections.get();
                closed += c.closed_connections.get();
            }
            s.active_connections = s.new_connections.saturating_sub(closed);
            s
        };
        let services = table
            .services
            .iter()
            .enumerate()
            .filter(|(_, s)| s.present)
            .map(|(sid, s)| {
                let backends = table
                    .backends
                    .iter()
                    .enumerate()
                    .filter(|(_, b)| b.service == sid as u32)
                    .filter_map(|(bid, b)| {
                        let stats = sum(&|w: &LbCounters| &w.backends[bid]);
                        let keep =
                            b.status != BackendStatus::Removed || stats.active_connections > 0;
                        keep.then(|| BackendStats {
                            id: bid as u32,
                            name: b.name.clone(),
                            status: b.status,
                            stats,
                        })
                    })
                    .collect();
                ServiceStats {
                    id: sid as u32,
                    name: s.name.clone(),
                    stats: sum(&|w: &LbCounters| &w.services[sid]),
                    backends,
                }
            })
            .collect();
        LbStats {
            generation: table.generation,
            services,
        }
    }
}
