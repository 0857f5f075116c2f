//! The registry of node kinds: a kind name maps to its shape and a constructor from
//! parameters, so new kinds plug in by name.

use super::params::{struct_fields, Params};
use super::port::PortInfo;
use super::shared::SharedState;
use crate::nodes::NodeImpl;
use crate::PacketBuf;
use serde::de::DeserializeOwned;
use std::any::Any;
use std::cell::RefCell;

/// The static shape of a node kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KindInfo {
    /// Named output slots; each must be connected by exactly one edge.
    /// [`super::Decision::Next`] carries an index into this list.
    pub outputs: &'static [&'static str],
    /// Drop reasons; [`super::Decision::Drop`] carries an index into this list.
    pub drop_reasons: &'static [&'static str],
    /// Names of kind-specific counters (bumped with `NodeCounters::add_extra`).
    pub counters: &'static [&'static str],
    /// Whether the kind places packets on tx ports ([`super::Decision::Tx`]).
    pub transmits: bool,
    /// Whether the kind overwrites every packet's metadata (so the graph need not reset it
    /// when this kind is the input node).
    pub fills_meta: bool,
    /// One line describing the kind.
    pub description: &'static str,
}

/// What a constructor may consult besides the node's parameters.
#[derive(Debug, Clone, Copy)]
pub struct BuildContext<'a> {
    /// The node's name in the spec.
    pub node: &'a str,
    /// The graph's ports; a port's position here is its tx slot.
    pub ports: &'a [PortInfo],
    /// The node's position in run order.
    pub at: usize,
    /// The graph's shared state, being assembled (see [`SharedState`]).
    pub shared: &'a RefCell<SharedState>,
}

impl BuildContext<'_> {
    /// Whether a node built earlier (so running earlier) asked for this node's state.
    pub fn is_requested(&self) -> bool {
        self.shared.borrow().is_requested(self.node)
    }

    /// Declares that this node offers state but keeps it, as nobody asked (see
    /// [`Self::is_requested`]).
    pub fn decline_shared(&self) {
        self.shared.borrow_mut().declare(self.node, self.at)
    }

    /// Offers `value` to the graph's other nodes under this node's name; returns its slot.
    pub fn provide_shared(&self, value: Box<dyn Any + Send>) -> usize {
        self.shared.borrow_mut().provide(self.node, self.at, value)
    }

    /// The slot of the state node `name` offers, named by this node's parameter `param`
    /// (checked once the graph is built: `name` must exist, offer state, and run after this
    /// node).
    /// The state must be a `T`, `what` says what offers one (for the error message).
    pub fn request_shared<T: Any>(&self, param: &str, name: &str, what: &str) -> usize {
        self.shared.borrow_mut().request(
            name,
            self.node,
            param,
            self.at,
            (std::any::TypeId::of::<T>(), what.to_string()),
        )
    }

    /// The tx slot of the port with this name, or else of the only port with this role.
    pub fn port_slot(&self, name_or_role: &str) -> Option<usize> {
        if let Some(i) = self.ports.iter().position(|p| p.name == name_or_role) {
            return Some(i);
        }
        let mut by_role = self
            .ports
            .iter()
            .enumerate()
            .filter(|(_, p)| p.role == name_or_role);
        match (by_role.next(), by_role.next()) {
            (Some((i, _)), None) => Some(i),
            _ => None,
        }
    }
}

/// A parameter problem found while constructing a node.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct ParamError {
    /// The offending parameter, when one can be named.
    pub param: Option<String>,
    /// What is wrong.
    pub reason: String,
}

impl ParamError {
    /// An error about parameter `param`.
    pub fn new(param: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            param: Some(param.into()),
            reason: reason.into(),
        }
    }

    /// An error about the parameters as a whole.
    pub fn general(reason: impl Into<String>) -> Self {
        Self {
            param: None,
            reason: reason.into(),
        }
    }
}

/// Errors registering a kind.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistryError {
    /// The kind name is taken.
    #[error("node kind `{0}` is already registered")]
    Duplicate(String),
    /// A kind has more outputs or drop reasons than a decision can index.
    #[error("node kind `{0}` declares too many outputs or drop reasons")]
    TooMany(String),
}

type CheckFn = Box<dyn Fn(&Params) -> Result<(), ParamError> + Send + Sync>;
type BuildFn<P> =
    Box<dyn Fn(&Params, &BuildContext<'_>) -> Result<NodeImpl<P>, ParamError> + Send + Sync>;

/// One registered node kind.
pub struct KindEntry<P: PacketBuf> {
    pub(crate) name: String,
    pub(crate) info: KindInfo,
    pub(crate) params: &'static [&'static str],
    check: CheckFn,
    build: BuildFn<P>,
}

impl<P: PacketBuf> KindEntry<P> {
    /// The kind's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The kind's shape.
    pub fn info(&self) -> &KindInfo {
        &self.info
    }

    /// The parameter names the kind accepts.
    pub fn params(&self) -> &'static [&'static str] {
        self.params
    }

    /// Deserialises `params` without building (for validation).
    pub(crate) fn check(&self, params: &Params) -> Result<(), ParamError> {
        (self.check)(params)
    }

    /// Builds a node.
    pub(crate) fn build(
        &self,
        params: &Params,
        ctx: &BuildContext<'_>,
    ) -> Result<NodeImpl<P>, ParamError> {
        (self.build)(params, ctx)
    }
}

/// Node kinds by name.
pub struct Registry<P: PacketBuf> {
    kinds: Vec<KindEntry<P>>,
}

impl<P: PacketBuf + 'static> Default for Registry<P> {
    fn default() -> Self {
        Self::with_builtins()
    }
}

fn deserialize<T: DeserializeOwned>(params: &Params) -> Result<T, ParamError> {
    toml::Value::Table(params.clone())
        .try_into::<T>()
        .map_err(|e| ParamError::general(e.to_string().trim().to_string()))
}

impl<P: PacketBuf + 'static> Registry<P> {
    /// A registry with no kinds.
    pub fn empty() -> Self {
        Self { kinds: Vec::new() }
    }

    /// A registry with the built-in kinds (`parse`, `forward`, `macswap`, `drop`, `tap`,
    /// `null`/`empty`).
    pub fn with_builtins() -> Self {
        let mut r = Self::empty();
        crate::nodes::register_builtins(&mut r);
        r
    }

    /// Registers kind `name`, whose parameters deserialise into `T` (a struct deriving
    /// `Deserialize`; its field names are the accepted parameter names) and whose nodes
    /// `build` constructs.
    pub fn register<T, F>(
        &mut self,
        name: &str,
        info: KindInfo,
        build: F,
    ) -> Result<(), RegistryError>
    where
        T: DeserializeOwned + 'static,
        F: Fn(T, &BuildContext<'_>) -> Result<NodeImpl<P>, ParamError> + Send + Sync + 'static,
    {
        if self.get(name).is_some() {
            return Err(RegistryError::Duplicate(name.to_string()));
        }
        if info.outputs.len() > usize::from(u8::MAX)
            || info.drop_reasons.len() + super::GRAPH_DROP_REASONS.len() > usize::from(u8::MAX)
        {
            return Err(RegistryError::TooMany(name.to_string()));
        }
        self.kinds.push(KindEntry {
            name: name.to_string(),
            info,
            params: struct_fields::<T>(),
            check: Box::new(|p| deserialize::<T>(p).map(|_| ())),
            build: Box::new(move |p, ctx| build(deserialize::<T>(p)?, ctx)),
        });
        Ok(())
    }

    /// The kind named `name`.
    pub fn get(&self, name: &str) -> Option<&KindEntry<P>> {
        self.kinds.iter().find(|k| k.name == name)
    }

    /// All registered kinds.
    pub fn kinds(&self) -> impl Iterator<Item = &KindEntry<P>> {
        self.kinds.iter()
    }

    /// The registered kind names, comma-separated (for error messages).
    pub fn kind_names(&self) -> String {
        self.kinds
            .iter()
            .map(|k| k.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }
}
