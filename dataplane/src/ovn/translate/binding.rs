//! Which `Logical_Switch_Port` each dataplane port is: named in the configuration, or found
//! by the port's MAC among the LSPs' `addresses` (on OpenStack a VF's MAC is its Neutron
//! port's MAC).

use super::addresses::{format_mac, lsp_entries, Mac};
use super::rows;
use crate::ovn::replica::Table;

/// How a dataplane port names its LSP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LspSelector {
    /// The LSP's `name` (`lsp = "..."`; Neutron: the port's UUID).
    Name(String),
    /// The LSP whose `addresses` (or `dynamic_addresses`) hold this MAC.
    Mac(Mac),
}

/// A dataplane port and how to find its LSP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalPort {
    /// The dataplane port's name (what the ACL model calls the port).
    pub port: String,
    /// How its LSP is found.
    pub selector: LspSelector,
}

/// The LSP a dataplane port was bound to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BoundLsp {
    /// Row UUID.
    pub uuid: String,
    /// LSP name.
    pub name: String,
}

/// The outcome of binding one dataplane port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    /// The dataplane port.
    pub port: String,
    /// How it was looked for.
    pub selector: LspSelector,
    /// Its LSP, or why there is none.
    pub lsp: Result<BoundLsp, String>,
}

impl Binding {
    /// `fh0 -> lsp-name (uuid)` or `fh0 -> (unbound: reason)`.
    pub fn describe(&self) -> String {
        let how = match &self.selector {
            LspSelector::Name(n) => format!("lsp name \"{n}\""),
            LspSelector::Mac(m) => format!("mac {}", format_mac(m)),
        };
        match &self.lsp {
            Ok(l) => format!("{} -> {} ({}) by {how}", self.port, l.name, l.uuid),
            Err(e) => format!("{} -> unbound by {how}: {e}", self.port),
        }
    }
}

/// Binds every port; two LSPs fitting one port leave it unbound (named in the reason).
pub fn bind(lsps: &Table, ports: &[LocalPort]) -> Vec<Binding> {
    ports
        .iter()
        .map(|p| {
            let found: Vec<BoundLsp> = lsps
                .iter()
                .filter(|(_, row)| match &p.selector {
                    LspSelector::Name(n) => rows::text(row, "name") == n,
                    LspSelector::Mac(m) => lsp_entries(row).iter().any(|e| &e.mac == m),
                })
                .map(|(uuid, row)| BoundLsp {
                    uuid: uuid.clone(),
                    name: rows::text(row, "name").to_string(),
                })
                .collect();
            let lsp = match found.len() {
                0 => Err("no Logical_Switch_Port fits".to_string()),
                1 => Ok(found.into_iter().next().expect("one")),
                _ => Err(format!(
                    "{} Logical_Switch_Ports fit ({}): name one with `lsp`",
                    found.len(),
                    found
                        .iter()
                        .map(|l| l.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )),
            };
            Binding {
                port: p.port.clone(),
                selector: p.selector.clone(),
                lsp,
            }
        })
        .collect()
}
