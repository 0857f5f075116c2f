//! State that several nodes of one graph use (for example the load balancer's connection
//! table, which a stateful `acl` node before it consults), owned by the graph and lent to
//! each node in turn with its [`super::Frame`].
//!
//! A node that offers state *provides* it under its own name while the graph is built; a
//! node that uses another's state *requests* it by that node's name and gets an index. The
//! graph checks, once every node is built, that each request was provided, by a node that
//! runs later than the requester (the requester sees every packet first). While a burst
//! runs, a node reaches the state through [`SharedState::get_mut`]: one type check per
//! vector, no lock (the graph belongs to one worker and runs one node at a time).

use std::any::{Any, TypeId};

/// One slot: the providing node's name, the state once provided, and who asked for it.
struct Slot {
    name: String,
    value: Option<Box<dyn Any + Send>>,
    /// Run-order index of the providing node.
    provider: Option<usize>,
    /// (run-order index, node name, parameter, (expected type, what provides one)) of
    /// the first requester.
    requester: Option<(usize, String, String, (TypeId, String))>,
}

/// The graph's shared state, indexed by the slot numbers handed out while building.
#[derive(Default)]
pub struct SharedState {
    slots: Vec<Slot>,
}

impl std::fmt::Debug for SharedState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.slots.iter().map(|s| &s.name))
            .finish()
    }
}

/// Why a graph's shared state does not add up (reported against the requesting node).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedError {
    /// The node whose request failed.
    pub node: String,
    /// The parameter of that node that named the provider.
    pub param: String,
    /// What is wrong.
    pub reason: String,
}

impl SharedState {
    /// An empty store (for nodes run outside a graph, e.g. in unit tests).
    pub fn new() -> Self {
        Self::default()
    }

    fn slot(&mut self, name: &str) -> usize {
        match self.slots.iter().position(|s| s.name == name) {
            Some(i) => i,
            None => {
                self.slots.push(Slot {
                    name: name.to_string(),
                    value: None,
                    provider: None,
                    requester: None,
                });
                self.slots.len() - 1
            }
        }
    }

    /// Offers `value` under `name` (the providing node's name), from the node at run-order
    /// position `at`; returns its slot.
    pub(crate) fn provide(&mut self, name: &str, at: usize, value: Box<dyn Any + Send>) -> usize {
        let i = self.slot(name);
        self.slots[i].value = Some(value);
        self.slots[i].provider = Some(at);
        i
    }

    /// Records that the node `name` at run-order position `at` could offer state but keeps
    /// it (nobody before it asked), so that a later request is refused as coming too late
    /// rather than as naming no such node.
    pub(crate) fn declare(&mut self, name: &str, at: usize) {
        let i = self.slot(name);
        self.slots[i].provider = Some(at);
    }

    /// Asks for the state `name` provides, for parameter `param` of node `node` at
    /// run-order position `at`; returns the slot (filled once the provider is built).
    /// The state must be of the type `expect.0`; `expect.1` says what offers one.
    pub(crate) fn request(
        &mut self,
        name: &str,
        node: &str,
        param: &str,
        at: usize,
        expect: (TypeId, String),
    ) -> usize {
        let i = self.slot(name);
        if self.slots[i].requester.is_none() {
            self.slots[i].requester = Some((at, node.to_string(), param.to_string(), expect));
        }
        i
    }

    /// Whether some node asked for the state `name` provides.
    pub(crate) fn is_requested(&self, name: &str) -> bool {
        self.slots
            .iter()
            .any(|s| s.name == name && s.requester.is_some())
    }

    /// Checks that every request was provided by a node running after its requester.
    pub(crate) fn check(&self) -> Result<(), SharedError> {
        for s in &self.slots {
            let Some((at, node, param, (ty, what))) = &s.requester else {
                continue;
            };
            let err = |reason: String| SharedError {
                node: node.clone(),
                param: param.clone(),
                reason,
            };
            match s.provider {
                None => {
                    return Err(err(format!(
                        "no node named `{}` offers its state here (expected {what})",
                        s.name
                    )))
                }
                Some(p) if p <= *at => {
                    return Err(err(format!(
                        "`{}` must come after this node in the pipeline",
                        s.name
                    )))
                }
                Some(_) if s.value.as_ref().map(|v| (**v).type_id()) != Some(*ty) => {
                    return Err(err(format!("`{}` is not {what}", s.name)))
                }
                Some(_) => {}
            }
        }
        Ok(())
    }

    /// The state in `slot`, if it is of type `T`.
    #[inline]
    pub fn get_mut<T: Any>(&mut self, slot: usize) -> Option<&mut T> {
        self.slots
            .get_mut(slot)?
            .value
            .as_mut()?
            .downcast_mut::<T>()
    }

    /// The state in `slot`, read-only.
    pub fn get<T: Any>(&self, slot: usize) -> Option<&T> {
        self.slots.get(slot)?.value.as_ref()?.downcast_ref::<T>()
    }

    /// The slot of the state `name` provides, if any.
    pub fn find(&self, name: &str) -> Option<usize> {
        self.slots
            .iter()
            .position(|s| s.name == name && s.value.is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_resolve_to_later_providers_only() {
        let mut s = SharedState::new();
        let want = || (TypeId::of::<u32>(), "a counter".to_string());
        let r = s.request("lb", "acl", "lb_conntrack", 1, want());
        assert!(s.check().is_err(), "not provided yet");
        let p = s.provide("lb", 2, Box::new(7u32));
        assert_eq!(r, p);
        s.check().unwrap();
        assert_eq!(s.get_mut::<u32>(r).copied(), Some(7));
        assert!(s.get_mut::<u64>(r).is_none(), "wrong type");

        let mut s = SharedState::new();
        s.provide("lb", 0, Box::new(7u32));
        s.request("lb", "acl", "lb_conntrack", 1, want());
        let e = s.check().unwrap_err();
        assert_eq!((e.node.as_str(), e.param.as_str()), ("acl", "lb_conntrack"));
        assert!(e.reason.contains("must come after"), "{}", e.reason);

        let mut s = SharedState::new();
        s.request("lb", "acl", "lb_conntrack", 1, want());
        s.provide("lb", 2, Box::new(7u64));
        let e = s.check().unwrap_err();
        assert!(e.reason.contains("is not a counter"), "{}", e.reason);
    }
}
