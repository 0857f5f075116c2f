//! The declarative description of a graph, as read from TOML, and its errors.
//!
//! ```toml
//! input = "parse"            # optional: defaults to the first node
//! [[nodes]]
//! name = "parse"
//! kind = "parse"
//! params = { fragments = "drop" }
//! [[nodes]]
//! name = "xc"
//! kind = "forward"
//! params = { mode = "cross-connect", pairs = [["fh0", "mh0"]] }
//! [[edges]]
//! from = "parse"             # output defaults to the kind's first output ("next")
//! to = "xc"
//! ```

use super::params::Params;
use serde::{Deserialize, Serialize};

/// A graph: nodes, edges and the node that receives rx bursts.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GraphSpec {
    /// The node rx bursts enter (default: the first node).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<String>,
    /// The nodes.
    #[serde(default)]
    pub nodes: Vec<NodeSpec>,
    /// The edges from node outputs to nodes.
    #[serde(default)]
    pub edges: Vec<EdgeSpec>,
}

/// One node of a graph.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeSpec {
    /// Unique name of the node.
    pub name: String,
    /// Its kind, a name in the [`super::Registry`].
    pub kind: String,
    /// Its parameters.
    #[serde(default)]
    pub params: Params,
}

/// An edge from an output of one node to another node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EdgeSpec {
    /// The source node.
    pub from: String,
    /// The source node's output slot (default: its kind's first output).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
    /// The destination node.
    pub to: String,
}

impl GraphSpec {
    /// An empty spec (to fill with [`node`](Self::node) and [`edge`](Self::edge)).
    pub fn new() -> Self {
        Self::default()
    }

    /// Parses a spec from TOML text.
    pub fn from_toml(text: &str) -> Result<Self, toml::de::Error> {
        toml::from_str(text)
    }

    /// Adds a node.
    pub fn node(mut self, name: &str, kind: &str, params: Params) -> Self {
        self.nodes.push(NodeSpec {
            name: name.into(),
            kind: kind.into(),
            params,
        });
        self
    }

    /// Adds an edge from `from`'s default output to `to`.
    pub fn edge(mut self, from: &str, to: &str) -> Self {
        self.edges.push(EdgeSpec {
            from: from.into(),
            output: None,
            to: to.into(),
        });
        self
    }

    /// Adds an edge from output `output` of `from` to `to`.
    pub fn edge_from(mut self, from: &str, output: &str, to: &str) -> Self {
        self.edges.push(EdgeSpec {
            from: from.into(),
            output: Some(output.into()),
            to: to.into(),
        });
        self
    }

    /// A chain of nodes `(name, kind, params)`, each connected to the next by its default
    /// output.
    pub fn chain(nodes: Vec<(&str, &str, Params)>) -> Self {
        let mut spec = Self::new();
        let names: Vec<String> = nodes.iter().map(|(n, _, _)| n.to_string()).collect();
        for (name, kind, params) in nodes {
            spec = spec.node(name, kind, params);
        }
        for w in names.windows(2) {
            spec = spec.edge(&w[0], &w[1]);
        }
        spec
    }
}

/// A problem with a graph spec: the key it concerns (`nodes.<name>.kind`,
/// `nodes.<name>.params.<param>`, `edges[<i>].to`, ...) and the reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {reason}")]
pub struct SpecError {
    /// The key in the spec, e.g. `nodes.parse.params.fragments`.
    pub key: String,
    /// What is wrong there.
    pub reason: SpecErrorReason,
}

impl SpecError {
    pub(crate) fn new(key: impl Into<String>, reason: SpecErrorReason) -> Self {
        Self {
            key: key.into(),
            reason,
        }
    }
}

/// Why a spec is invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecErrorReason {
    /// The spec has no nodes.
    #[error("the graph has no nodes")]
    NoNodes,
    /// A node has an empty name.
    #[error("node name is empty")]
    EmptyName,
    /// Two nodes share a name.
    #[error("duplicate node name `{0}`")]
    DuplicateNode(String),
    /// A node's kind is not registered.
    #[error("unknown node kind `{kind}` (known kinds: {known})")]
    UnknownKind {
        /// The kind asked for.
        kind: String,
        /// The registered kinds.
        known: String,
    },
    /// A parameter the kind does not accept.
    #[error("unknown parameter `{param}` for node kind `{kind}` (accepted: {accepted})")]
    UnknownParam {
        /// The parameter.
        param: String,
        /// The node's kind.
        kind: String,
        /// The parameters the kind accepts.
        accepted: String,
    },
    /// A parameter has a bad value (or a required one is missing).
    #[error("invalid parameter: {0}")]
    BadParam(String),
    /// The `input` names no node.
    #[error("input node `{0}` does not exist")]
    UnknownInput(String),
    /// An edge names a node that does not exist.
    #[error("edge refers to missing node `{0}`")]
    DanglingEdge(String),
    /// An edge names an output the source kind does not have.
    #[error("node `{node}` has no output `{output}` (outputs: {outputs})")]
    UnknownOutput {
        /// The source node.
        node: String,
        /// The output asked for.
        output: String,
        /// The outputs its kind has.
        outputs: String,
    },
    /// Two edges leave the same output.
    #[error("output `{0}` already has an edge")]
    DuplicateEdge(String),
    /// A node output with no edge: packets sent there would have nowhere to go.
    #[error("output `{0}` is not connected to any node")]
    UnusedOutput(String),
    /// The edges form a cycle (listed).
    #[error("cycle: {0}")]
    Cycle(String),
    /// A node no packet from the input node can reach.
    #[error("node is unreachable from the input node `{0}`")]
    Unreachable(String),
    /// No node that transmits can be reached from the input node.
    #[error("no path from the input node `{0}` to a node that transmits (e.g. `forward`)")]
    NoOutputPath(String),
}
