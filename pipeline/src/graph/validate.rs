//! Checking a [`GraphSpec`] against a [`Registry`] and planning the node order.

use super::registry::{KindEntry, Registry};
use super::spec::{GraphSpec, SpecError, SpecErrorReason as R};
use crate::PacketBuf;

/// A valid spec's structure: indices are positions in `spec.nodes`.
pub(crate) struct Plan {
    /// Node indices in topological order; the input node first.
    pub order: Vec<usize>,
    /// For each node, for each output slot, the destination node.
    pub next: Vec<Vec<usize>>,
}

impl GraphSpec {
    /// Checks the spec: node names, kinds and parameters (against `registry`), edges
    /// (dangling, unknown or duplicate outputs), unused outputs, cycles, unreachable nodes,
    /// and that some transmitting node is reachable. Port names in parameters are checked
    /// by [`super::Graph::build`], which knows the ports.
    pub fn validate<P: PacketBuf + 'static>(
        &self,
        registry: &Registry<P>,
    ) -> Result<(), SpecError> {
        self.plan(registry).map(|_| ())
    }

    pub(crate) fn plan<P: PacketBuf + 'static>(
        &self,
        registry: &Registry<P>,
    ) -> Result<Plan, SpecError> {
        if self.nodes.is_empty() {
            return Err(SpecError::new("nodes", R::NoNodes));
        }
        let kinds = self.check_nodes(registry)?;
        let index = |name: &str| self.nodes.iter().position(|n| n.name == name);
        let input = match &self.input {
            Some(name) => {
                index(name).ok_or_else(|| SpecError::new("input", R::UnknownInput(name.clone())))?
            }
            None => 0,
        };
        let next = self.check_edges(&kinds, index)?;
        self.check_cycles(&next)?;
        let order = self.check_reachability(&kinds, &next, input)?;
        Ok(Plan { order, next })
    }

    fn check_nodes<'r, P: PacketBuf + 'static>(
        &self,
        registry: &'r Registry<P>,
    ) -> Result<Vec<&'r KindEntry<P>>, SpecError> {
        let mut kinds = Vec::with_capacity(self.nodes.len());
        for (i, n) in self.nodes.iter().enumerate() {
            if n.name.is_empty() {
                return Err(SpecError::new(format!("nodes[{i}].name"), R::EmptyName));
            }
            if self.nodes[..i].iter().any(|m| m.name == n.name) {
                return Err(SpecError::new(
                    format!("nodes.{}", n.name),
                    R::DuplicateNode(n.name.clone()),
                ));
            }
            let Some(kind) = registry.get(&n.kind) else {
                return Err(SpecError::new(
                    format!("nodes.{}.kind", n.name),
                    R::UnknownKind {
                        kind: n.kind.clone(),
                        known: registry.kind_names(),
                    },
                ));
            };
            if let Some(param) = n
                .params
                .keys()
                .find(|k| !kind.params().contains(&k.as_str()))
            {
                return Err(SpecError::new(
                    format!("nodes.{}.params.{param}", n.name),
                    R::UnknownParam {
                        param: param.clone(),
                        kind: n.kind.clone(),
                        accepted: if kind.params().is_empty() {
                            "none".into()
                        } else {
                            kind.params().join(", ")
                        },
                    },
                ));
            }
            kind.check(&n.params).map_err(|e| param_error(&n.name, e))?;
            kinds.push(kind);
        }
        Ok(kinds)
    }

    fn check_edges<P: PacketBuf>(
        &self,
        kinds: &[&KindEntry<P>],
        index: impl Fn(&str) -> Option<usize>,
    ) -> Result<Vec<Vec<usize>>, SpecError> {
        let mut next: Vec<Vec<Option<usize>>> = kinds
            .iter()
            .map(|k| vec![None; k.info.outputs.len()])
            .collect();
        for (e_i, e) in self.edges.iter().enumerate() {
            let from = index(&e.from).ok_or_else(|| {
                SpecError::new(
                    format!("edges[{e_i}].from"),
                    R::DanglingEdge(e.from.clone()),
                )
            })?;
            let to = index(&e.to).ok_or_else(|| {
                SpecError::new(format!("edges[{e_i}].to"), R::DanglingEdge(e.to.clone()))
            })?;
            let outputs = kinds[from].info.outputs;
            let slot = match &e.output {
                Some(o) => outputs.iter().position(|x| x == o),
                None => (!outputs.is_empty()).then_some(0),
            };
            let Some(slot) = slot else {
                let key = if e.output.is_some() {
                    format!("edges[{e_i}].output")
                } else {
                    format!("edges[{e_i}].from")
                };
                return Err(SpecError::new(
                    key,
                    R::UnknownOutput {
                        node: e.from.clone(),
                        output: e.output.clone().unwrap_or_else(|| "(default)".into()),
                        outputs: if outputs.is_empty() {
                            "none".into()
                        } else {
                            outputs.join(", ")
                        },
                    },
                ));
            };
            if next[from][slot].is_some() {
                return Err(SpecError::new(
                    format!("edges[{e_i}]"),
                    R::DuplicateEdge(format!("{}.{}", e.from, outputs[slot])),
                ));
            }
            next[from][slot] = Some(to);
        }
        let mut out = Vec::with_capacity(next.len());
        for (i, slots) in next.into_iter().enumerate() {
            let mut v = Vec::with_capacity(slots.len());
            for (s, dst) in slots.into_iter().enumerate() {
                let output = kinds[i].info.outputs[s];
                let dst = dst.ok_or_else(|| {
                    SpecError::new(
                        format!("nodes.{}.outputs.{output}", self.nodes[i].name),
                        R::UnusedOutput(output.to_string()),
                    )
                })?;
                v.push(dst);
            }
            out.push(v);
        }
        Ok(out)
    }

    fn check_cycles(&self, next: &[Vec<usize>]) -> Result<(), SpecError> {
        // 0 = unvisited, 1 = on the DFS stack, 2 = done.
        let mut state = vec![0u8; next.len()];
        let mut path = Vec::new();
        for start in 0..next.len() {
            if state[start] == 0 {
                if let Some(cycle) = dfs_cycle(start, next, &mut state, &mut path) {
                    let names: Vec<&str> =
                        cycle.iter().map(|&i| self.nodes[i].name.as_str()).collect();
                    return Err(SpecError::new(
                        format!("nodes.{}", names[0]),
                        R::Cycle(names.join(" -> ")),
                    ));
                }
            }
        }
        Ok(())
    }

    fn check_reachability<P: PacketBuf>(
        &self,
        kinds: &[&KindEntry<P>],
        next: &[Vec<usize>],
        input: usize,
    ) -> Result<Vec<usize>, SpecError> {
        // Reverse post-order of a DFS from the input is a topological order (the graph is acyclic).
        let mut seen = vec![false; next.len()];
        let mut post = Vec::with_capacity(next.len());
        dfs_post(input, next, &mut seen, &mut post);
        if let Some(i) = seen.iter().position(|s| !s) {
            return Err(SpecError::new(
                format!("nodes.{}", self.nodes[i].name),
                R::Unreachable(self.nodes[input].name.clone()),
            ));
        }
        if !post.iter().any(|&i| kinds[i].info.transmits) {
            return Err(SpecError::new(
                "nodes",
                R::NoOutputPath(self.nodes[input].name.clone()),
            ));
        }
        post.reverse();
        Ok(post)
    }
}

pub(crate) fn param_error(node: &str, e: super::ParamError) -> SpecError {
    match e.param {
        Some(p) => SpecError::new(format!("nodes.{node}.params.{p}"), R::BadParam(e.reason)),
        None => SpecError::new(format!("nodes.{node}.params"), R::BadParam(e.reason)),
    }
}

fn dfs_cycle(
    n: usize,
    next: &[Vec<usize>],
    state: &mut [u8],
    path: &mut Vec<usize>,
) -> Option<Vec<usize>> {
    state[n] = 1;
    path.push(n);
    for &m in &next[n] {
        if state[m] == 1 {
            let start = path.iter().position(|&x| x == m).unwrap_or(0);
            let mut cycle = path[start..].to_vec();
            cycle.push(m);
            return Some(cycle);
        }
        if state[m] == 0 {
            if let Some(c) = dfs_cycle(m, next, state, path) {
                return Some(c);
            }
        }
    }
    path.pop();
    state[n] = 2;
    None
}

fn dfs_post(n: usize, next: &[Vec<usize>], seen: &mut [bool], post: &mut Vec<usize>) {
    seen[n] = true;
    for &m in &next[n] {
        if !seen[m] {
            dfs_post(m, next, seen, post);
        }
    }
    post.push(n);
}
