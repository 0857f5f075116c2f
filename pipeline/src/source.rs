//! A built-in packet source, like VPP's packet generator: packet templates built from a
//! [`SourceSpec`] (K flows, frame size, UDP/TCP, IPv4/IPv6) or read from a classic pcap file,
//! replayed at full speed through a graph with no I/O.
//!
//! Buffers are recycled: packets the graph transmits go back to the source's pool and are
//! refilled from the templates, so a steady-state replay allocates nothing (packets the graph
//! drops are freed and replaced by new buffers).

pub mod pcap;
mod template;

pub use template::{build_frame, IpVersion, L4Proto, SourceSpec};

use crate::graph::{Graph, TxVectors};
use crate::TestBuf;
use arrayvec::ArrayVec;
use std::path::Path;
use std::time::{Duration, Instant};

/// One packet template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    /// Frame bytes (from the Ethernet header, without FCS).
    pub data: Vec<u8>,
    /// The port the packet appears to arrive on.
    pub port: u16,
}

/// Errors building a source.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The spec cannot be turned into frames.
    #[error("invalid source spec: {0}")]
    Spec(String),
    /// The pcap file could not be read.
    #[error(transparent)]
    Pcap(#[from] pcap::PcapError),
    /// No templates (an empty pcap file, or zero flows).
    #[error("the source has no packets")]
    Empty,
}

/// What a replay did.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ReplayReport {
    /// Bursts run.
    pub bursts: u64,
    /// Packets generated.
    pub packets: u64,
    /// Packets the graph transmitted.
    pub tx: u64,
    /// Packets the graph dropped.
    pub dropped: u64,
    /// Wall time, including filling and recycling buffers.
    pub elapsed: Duration,
}

impl ReplayReport {
    /// Million packets per second over the whole replay.
    pub fn mpps(&self) -> f64 {
        let s = self.elapsed.as_secs_f64();
        if s == 0.0 {
            0.0
        } else {
            self.packets as f64 / s / 1e6
        }
    }
}

/// Templates replayed round-robin into recycled [`TestBuf`]s.
#[derive(Debug)]
pub struct PacketSource {
    templates: Vec<Template>,
    cursor: usize,
    pool: Vec<TestBuf>,
    buf_capacity: usize,
    allocated: u64,
}

impl PacketSource {
    /// A source replaying `templates` in order.
    pub fn new(templates: Vec<Template>) -> Result<Self, SourceError> {
        if templates.is_empty() {
            return Err(SourceError::Empty);
        }
        let buf_capacity = templates.iter().map(|t| t.data.len()).max().unwrap_or(0);
        Ok(Self {
            templates,
            cursor: 0,
            pool: Vec::new(),
            buf_capacity,
            allocated: 0,
        })
    }

    /// A source of generated flows.
    pub fn from_spec(spec: &SourceSpec) -> Result<Self, SourceError> {
        Self::new(spec.templates().map_err(SourceError::Spec)?)
    }

    /// A source replaying the packets of a classic pcap file, all arriving on `port`.
    pub fn from_pcap_file(path: impl AsRef<Path>, port: u16) -> Result<Self, SourceError> {
        let pkts = pcap::read_pcap_file(path)?;
        Self::new(
            pkts.into_iter()
                .map(|p| Template { data: p.data, port })
                .collect(),
        )
    }

    /// A source replaying the packets of classic pcap bytes, all arriving on `port`.
    pub fn from_pcap_bytes(bytes: &[u8], port: u16) -> Result<Self, SourceError> {
        let pkts = pcap::parse_pcap(bytes)?;
        Self::new(
            pkts.into_iter()
                .map(|p| Template { data: p.data, port })
                .collect(),
        )
    }

    /// The templates.
    pub fn templates(&self) -> &[Template] {
        &self.templates
    }

    /// Buffers allocated so far (constant once the pool has warmed up).
    pub fn buffers_allocated(&self) -> u64 {
        self.allocated
    }

    /// Appends up to `n` packets (bounded by the room left in `v`) copied from the next
    /// templates into recycled buffers. Returns how many were added.
    pub fn fill<const N: usize>(&mut self, v: &mut ArrayVec<TestBuf, N>, n: usize) -> usize {
        let n = n.min(v.remaining_capacity());
        for _ in 0..n {
            let t = &self.templates[self.cursor];
            self.cursor += 1;
            if self.cursor == self.templates.len() {
                self.cursor = 0;
            }
            let mut b = match self.pool.pop() {
                Some(b) => b,
                None => {
                    self.allocated += 1;
                    self.pool.reserve(1);
                    TestBuf {
                        bytes: Vec::with_capacity(self.buf_capacity),
                        port: 0,
                    }
                }
            };
            b.bytes.clear();
            b.bytes.extend_from_slice(&t.data);
            b.port = t.port;
            v.push(b);
        }
        n
    }

    /// Takes back a buffer for reuse.
    pub fn recycle_buf(&mut self, b: TestBuf) {
        self.pool.push(b);
    }

    /// Takes back every packet queued in `tx`. Returns how many.
    pub fn recycle(&mut self, tx: &mut TxVectors<TestBuf>) -> usize {
        let mut n = 0;
        for (_, pkts) in tx.iter_mut() {
            n += pkts.len();
            self.pool.extend(pkts.drain(..));
        }
        n
    }

    /// Runs `bursts` bursts of `burst_size` packets through `graph`, recycling what it
    /// transmits.
    pub fn replay(
        &mut self,
        graph: &mut Graph<TestBuf>,
        tx: &mut TxVectors<TestBuf>,
        bursts: u64,
        burst_size: usize,
    ) -> ReplayReport {
        let mut r = ReplayReport {
            bursts,
            ..Default::default()
        };
        let start = Instant::now();
        for _ in 0..bursts {
            r.packets += self.fill(graph.rx_vector(), burst_size) as u64;
            let b = graph.run(tx);
            r.tx += b.tx as u64;
            r.dropped += b.dropped as u64;
            self.recycle(tx);
        }
        r.elapsed = start.elapsed();
        r
    }
}
