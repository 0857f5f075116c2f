//! What the `lb` node decided for the traced packets of its last vector, kept for the
//! tracer's note ([`crate::graph::Node::trace_note`]): which service, which backend, and
//! how the backend was found (a new connection's Maglev pick, the connection table, a
//! reply's backend endpoint).
//!
//! The node records a packet only when its metadata marks it traced (one test of a byte
//! already in L1 per decided packet); the text is written by the tracer's call, off the
//! packet path.

use std::sync::Arc;

use super::service::ServiceTable;
use crate::meta::PacketMeta;
use crate::trace::TraceNote;
use crate::wire::summary::endpoint;

/// Most traced packets of one vector the node keeps a decision for (the rest get no note).
pub const MAX_TRACED: usize = 32;

/// How the node decided a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum How {
    /// To a VIP, no connection yet: the backend is the service's Maglev pick, tracked from
    /// now on.
    New,
    /// To a VIP, of a tracked connection: its backend.
    Established,
    /// To a VIP, no connection and the table full: the Maglev pick, untracked.
    Untracked,
    /// To a VIP, but the connection table holds the flow as another service's reply.
    OtherSide,
    /// To a VIP with no backend that may take new connections.
    NoBackend,
    /// Of a connection whose backend is down or no longer configured.
    BackendDown,
    /// From a backend endpoint, of a tracked connection: source back to the VIP.
    Reply,
    /// From a backend endpoint of one service, no connection tracked: source back to
    /// the VIP all the same.
    ReplyUntracked,
    /// From a backend endpoint of several services, no connection tracked: unchanged.
    ReplyAmbiguous,
    /// An ICMP error quoting a tracked connection, translated like its packets.
    IcmpRelated,
    /// Of a service's connection, but too short to rewrite (dropped as `bad-packet`).
    Unrewritable,
}

/// One traced packet's decision.
#[derive(Debug, Clone, Copy)]
struct Decided {
    index: u16,
    how: How,
    service: u32,
    backend: u32,
}

/// The decisions of the traced packets of the node's last vector.
#[derive(Debug)]
pub struct Traced {
    recs: [Decided; MAX_TRACED],
    len: usize,
    /// More traced packets than [`MAX_TRACED`] in the vector: the others get no note.
    overflow: bool,
    /// The service table the vector was decided under (kept only when something was
    /// traced), for names.
    table: Option<Arc<ServiceTable>>,
}

impl Default for Traced {
    fn default() -> Self {
        Self {
            recs: [Decided {
                index: 0,
                how: How::New,
                service: 0,
                backend: 0,
            }; MAX_TRACED],
            len: 0,
            overflow: false,
            table: None,
        }
    }
}

impl Traced {
    /// Forgets the last vector's decisions (once per vector).
    #[inline(always)]
    pub fn clear(&mut self) {
        if self.len != 0 || self.overflow {
            self.len = 0;
            self.overflow = false;
        }
    }

    /// Records the decision on packet `index` if `m` marks it traced.
    #[inline(always)]
    pub fn note(&mut self, m: &PacketMeta, index: usize, how: How, service: u32, backend: u32) {
        if m.trace != 0 {
            self.push(index, how, service, backend);
        }
    }

    #[cold]
    #[inline(never)]
    fn push(&mut self, index: usize, how: How, service: u32, backend: u32) {
        match self.recs.get_mut(self.len) {
            Some(r) => {
                *r = Decided {
                    index: index as u16,
                    how,
                    service,
                    backend,
                };
                self.len += 1;
            }
            None => self.overflow = true,
        }
    }

    /// Keeps `table` for the notes when the vector recorded anything (once per vector).
    #[inline(always)]
    pub fn keep_table(&mut self, table: &Arc<ServiceTable>) {
        if self.len != 0 {
            self.keep(table);
        }
    }

    #[cold]
    fn keep(&mut self, table: &Arc<ServiceTable>) {
        if !self.table.as_ref().is_some_and(|t| Arc::ptr_eq(t, table)) {
            self.table = Some(Arc::clone(table));
        }
    }

    /// The note on packet `index` of the last vector: the recorded decision, or, when
    /// none was recorded, that the packet was neither to a VIP nor from a backend.
    pub fn note_on(&self, index: usize) -> Option<TraceNote> {
        let Some(d) = self.recs[..self.len]
            .iter()
            .find(|d| usize::from(d.index) == index)
        else {
            return (!self.overflow).then(|| TraceNote {
                text: "not to a service VIP nor from a backend (unchanged)".into(),
                ..TraceNote::default()
            });
        };
        let table = self.table.as_deref()?;
        Some(describe(table, d))
    }
}

/// The note's text for `d` under `t`.
fn describe(t: &ServiceTable, d: &Decided) -> TraceNote {
    let svc = t.services.get(d.service as usize);
    let service = svc.map(|s| s.name.clone()).filter(|n| !n.is_empty());
    let sname = service.as_deref().unwrap_or("(removed)");
    let vip = svc.map_or_else(String::new, |s| endpoint(s.vip(), s.port));
    let backend = t.backends.get(d.backend as usize).map_or_else(
        || "(unknown)".to_string(),
        |b| {
            let addr = endpoint(b.address(), b.port);
            if b.name.is_empty() || b.name == addr {
                addr
            } else {
                format!("{} ({addr})", b.name)
            }
        },
    );
    let text = match d.how {
        How::New => format!(
            "new connection to service {sname} (VIP {vip}): backend {backend}, the Maglev pick"
        ),
        How::Established => format!(
            "established connection (conntrack) of service {sname} (VIP {vip}): backend {backend}"
        ),
        How::Untracked => format!(
            "connection table full: backend {backend} of service {sname} (VIP {vip}), the Maglev pick, untracked"
        ),
        How::OtherSide => format!(
            "to the VIP of service {sname}, but tracked as the reply side of another connection (unchanged)"
        ),
        How::NoBackend => {
            format!("service {sname} (VIP {vip}) has no backend taking new connections")
        }
        How::BackendDown => format!(
            "the connection's backend {backend} of service {sname} (VIP {vip}) is down or removed"
        ),
        How::Reply => format!(
            "reply of a tracked connection from backend {backend} of service {sname}: source back to VIP {vip}"
        ),
        How::ReplyUntracked => format!(
            "reply from backend {backend} of service {sname}, no connection tracked: source back to VIP {vip}"
        ),
        How::ReplyAmbiguous => {
            "reply from a backend of several services, no connection tracked (unchanged)".into()
        }
        How::IcmpRelated => format!(
            "an ICMP error about a tracked connection of service {sname}, translated like its packets"
        ),
        How::Unrewritable => format!(
            "of service {sname} (backend {backend}), but its headers are too short to rewrite"
        ),
    };
    let service = match d.how {
        How::ReplyAmbiguous => None,
        _ => service,
    };
    TraceNote {
        text,
        rule: None,
        service,
    }
}
