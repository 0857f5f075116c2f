//! The `[ovn]` configuration table and each port's `lsp` / `lsp_mac`, validated into an
//! [`OvnPlan`]: where the NB is, which acl/lb nodes receive the policy, which LSP each port
//! is.
//!
//! ```toml
//! [ovn]
//! remotes = "ssl:10.0.0.5:6641,ssl:10.0.0.6:6641"   # or a list
//! private_key = "/etc/dataplane/ovn/key.pem"         # ssl: remotes need all three
//! certificate = "/etc/dataplane/ovn/cert.pem"
//! ca_cert = "/etc/dataplane/ovn/ca.pem"
//! probe_interval_ms = 5000                           # 0: no probes
//! fail_open_unsupported = false                      # true: skip what we cannot compile
//! from_lport_node = "acl_in"                         # the acl node before the lb node
//! after_lb_node = "acl_after"                        # the acl node after the lb node for
//!                                                    # from-lport ACLs with apply-after-lb
//! to_lport_node = "acl_out"                          # the acl node after it
//! # acl_node = "acl"                                 # or one node for both directions
//! lb_node = "lb"                                     # the lb node given the NB's LBs
//! check_wait_s = 5                                   # `dataplane check`: bound on the connect
//! # translation_pacing = 9                           # opt-in: under sustained churn, a whole
//!                                                    # translation that took T waits 9 T for
//!                                                    # the next (at most 1/10 of a CPU)
//!
//! [ports.vf0]
//! lsp = "9e6d1a52-3f0c-4a8b-b7e1-2c4d6f8a0b1c"       # or lsp_mac = "fa:16:3e:11:11:11";
//!                                                    # neither: the port's own MAC
//! ```

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::client::OvnConfig;
use super::remote::Remote;
use super::stream::TlsFiles;
use super::translate::addresses::{format_mac, parse_mac, Mac};
use super::translate::{LocalPort, LspSelector, TranslateOptions};

/// `remotes`: a comma-separated string or a list of strings.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Remotes {
    /// `"unix:/run/ovn/ovnnb_db.sock"` or `"ssl:a:6641,ssl:b:6641"`.
    Text(String),
    /// `["ssl:a:6641", "ssl:b:6641"]`.
    List(Vec<String>),
}

/// The `[ovn]` table as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OvnSection {
    /// The NB remotes, tried in turn.
    pub remotes: Remotes,
    /// Client private key (PEM), for `ssl:` remotes.
    pub private_key: Option<PathBuf>,
    /// Client certificate (PEM), for `ssl:` remotes.
    pub certificate: Option<PathBuf>,
    /// CA certificate (PEM), for `ssl:` remotes.
    pub ca_cert: Option<PathBuf>,
    /// Inactivity probe in ms (0: none; default 5000, as OVS).
    pub probe_interval_ms: Option<u64>,
    /// Skip (log, count) ACLs we cannot compile instead of failing closed.
    #[serde(default)]
    pub fail_open_unsupported: bool,
    /// The `acl` node given the from-lport ACLs.
    pub from_lport_node: Option<String>,
    /// The `acl` node given the to-lport ACLs.
    pub to_lport_node: Option<String>,
    /// The `acl` node after the `lb` node given the from-lport ACLs with
    /// `options:apply-after-lb=true` (without it they fail closed).
    pub after_lb_node: Option<String>,
    /// One `acl` node given both directions (one priority space: an approximation).
    pub acl_node: Option<String>,
    /// The `lb` node given the NB's load balancers.
    pub lb_node: Option<String>,
    /// `dataplane check`: how long to wait for the NB, seconds (default 5).
    pub check_wait_s: Option<f64>,
    /// Under sustained churn, a whole translation (and the classifier builds it publishes)
    /// that took T is followed by at least `translation_pacing` x T before the next one
    /// (default [`DEFAULT_TRANSLATION_PACING`]; 0: none).
    pub translation_pacing: Option<f64>,
}

/// The default `translation_pacing`: none, so a change is translated as soon as the one
/// before is done. Pacing is for a node whose control plane shares a core with forwarding
/// (9 keeps whole translations to a tenth of a CPU under sustained churn, at the cost of
/// latency: with 10k ACLs, an ACL change following another by less than 9 s waited for the
/// pacing, 8.4 s at the median in `ovn-bench`).
pub const DEFAULT_TRANSLATION_PACING: f64 = 0.0;

/// The largest `translation_pacing` taken (beyond it a change could wait minutes).
pub const MAX_TRANSLATION_PACING: f64 = 100.0;

/// Where each stage's policy goes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct OvnTargets {
    /// The acl node of the from-lport ACLs.
    pub from_lport: Option<String>,
    /// The acl node of the to-lport ACLs.
    pub to_lport: Option<String>,
    /// The acl node of both (merged).
    pub both: Option<String>,
    /// The lb node of the services.
    pub lb: Option<String>,
    /// The acl node of the from-lport ACLs applied after the load balancer.
    pub after_lb: Option<String>,
}

/// How a port's LSP is found, as planned (the MAC of `PortMac` is read when the port starts).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum PlannedSelector {
    /// By LSP name.
    Name(String),
    /// By a configured MAC.
    Mac(String),
    /// By the port's own MAC, read at start.
    PortMac,
}

/// The validated `[ovn]` table.
#[derive(Debug, Clone, Serialize)]
pub struct OvnPlan {
    /// Remotes, as written back.
    pub remotes: Vec<String>,
    /// TLS files (all three, or none).
    pub private_key: Option<PathBuf>,
    /// Client certificate.
    pub certificate: Option<PathBuf>,
    /// CA certificate.
    pub ca_cert: Option<PathBuf>,
    /// Probe interval in ms (0: none).
    pub probe_interval_ms: u64,
    /// Translation options.
    pub fail_open_unsupported: bool,
    /// Target nodes.
    pub targets: OvnTargets,
    /// Each port and how its LSP is found.
    pub ports: Vec<(String, PlannedSelector)>,
    /// `check`'s bound on the connect.
    pub check_wait_s: f64,
    /// Pacing of whole translations under churn (0: none).
    pub translation_pacing: f64,
}

impl OvnSection {
    /// Validates; errors are (key under `ovn.`, reason).
    pub fn validate(&self) -> Result<OvnPlan, (String, String)> {
        let err = |k: &str, r: String| (format!("ovn.{k}"), r);
        let text = match &self.remotes {
            Remotes::Text(t) => t.clone(),
            Remotes::List(l) => l.join(","),
        };
        let remotes = Remote::parse_list(&text).map_err(|e| err("remotes", e))?;
        let tls = [
            ("private_key", &self.private_key),
            ("certificate", &self.certificate),
            ("ca_cert", &self.ca_cert),
        ];
        if remotes.iter().any(Remote::is_ssl) {
            for (k, v) in tls {
                match v {
                    None => return Err(err(k, "required by the ssl: remotes".into())),
                    Some(p) if std::fs::metadata(p).is_err() => {
                        return Err(err(k, format!("{}: cannot be read", p.display())))
                    }
                    _ => {}
                }
            }
        }
        let probe = self.probe_interval_ms.unwrap_or(5000);
        if probe != 0 && probe < 100 {
            return Err(err("probe_interval_ms", "0 (off) or at least 100".into()));
        }
        if self.acl_node.is_some()
            && (self.from_lport_node.is_some()
                || self.to_lport_node.is_some()
                || self.after_lb_node.is_some())
        {
            return Err(err(
                "acl_node",
                "give acl_node (one node for both directions) or from_lport_node/after_lb_node/to_lport_node, not both".into(),
            ));
        }
        let stage_nodes = [
            ("from_lport_node", &self.from_lport_node),
            ("after_lb_node", &self.after_lb_node),
            ("to_lport_node", &self.to_lport_node),
        ];
        for (i, (key, node)) in stage_nodes.iter().enumerate() {
            let Some(n) = node else { continue };
            if let Some((other, _)) = stage_nodes[..i]
                .iter()
                .find(|(_, o)| o.as_deref() == Some(n.as_str()))
            {
                return Err(err(
                    key,
                    format!("node {n:?} is already {other}: each stage needs its own acl node (own priority space)"),
                ));
            }
        }
        let wait = self.check_wait_s.unwrap_or(5.0);
        if !(wait.is_finite() && wait > 0.0 && wait <= 600.0) {
            return Err(err("check_wait_s", "must be in (0, 600]".into()));
        }
        let pacing = self
            .translation_pacing
            .unwrap_or(DEFAULT_TRANSLATION_PACING);
        if !(pacing.is_finite() && (0.0..=MAX_TRANSLATION_PACING).contains(&pacing)) {
            return Err(err(
                "translation_pacing",
                format!("must be in [0, {MAX_TRANSLATION_PACING}] (0: no pacing)"),
            ));
        }
        Ok(OvnPlan {
            remotes: remotes.iter().map(|r| r.to_string()).collect(),
            private_key: self.private_key.clone(),
            certificate: self.certificate.clone(),
            ca_cert: self.ca_cert.clone(),
            probe_interval_ms: probe,
            fail_open_unsupported: self.fail_open_unsupported,
            targets: OvnTargets {
                from_lport: self.from_lport_node.clone(),
                to_lport: self.to_lport_node.clone(),
                both: self.acl_node.clone(),
                lb: self.lb_node.clone(),
                after_lb: self.after_lb_node.clone(),
            },
            ports: Vec::new(),
            check_wait_s: wait,
            translation_pacing: pacing,
        })
    }
}

/// A port's `lsp` / `lsp_mac` keys, validated (key under the port, reason).
pub fn port_selector(
    lsp: Option<&str>,
    lsp_mac: Option<&str>,
) -> Result<PlannedSelector, (&'static str, String)> {
    match (lsp, lsp_mac) {
        (Some(_), Some(_)) => Err(("lsp", "give lsp or lsp_mac, not both".into())),
        (Some(""), None) => Err(("lsp", "must not be empty".into())),
        (Some(n), None) => Ok(PlannedSelector::Name(n.to_string())),
        (None, Some(m)) => parse_mac(m)
            .map(|m| PlannedSelector::Mac(format_mac(&m)))
            .ok_or((
                "lsp_mac",
                format!("{m:?} is not a MAC like fa:16:3e:00:00:01"),
            )),
        (None, None) => Ok(PlannedSelector::PortMac),
    }
}

impl OvnPlan {
    /// The client's configuration.
    pub fn client_config(&self) -> OvnConfig {
        let remotes = self
            .remotes
            .iter()
            .map(|r| Remote::parse(r).expect("validated"))
            .collect();
        let mut cfg = OvnConfig::new(remotes);
        cfg.probe_interval =
            (self.probe_interval_ms > 0).then(|| Duration::from_millis(self.probe_interval_ms));
        if let Some(ca) = &self.ca_cert {
            cfg.tls = Some(TlsFiles {
                private_key: self.private_key.clone(),
                certificate: self.certificate.clone(),
                ca_cert: ca.clone(),
            });
        }
        cfg
    }

    /// Translation options.
    pub fn options(&self) -> TranslateOptions {
        TranslateOptions {
            fail_open_unsupported: self.fail_open_unsupported,
            // One node for all stages takes them merged, the after-lb ACLs included.
            after_lb_stage: self.targets.after_lb.is_some() || self.targets.both.is_some(),
        }
    }

    /// The ports to bind, with `mac_of` giving a port's own MAC where needed (a port whose
    /// MAC is unknown is looked for by a MAC no LSP has, so it stays unbound).
    pub fn local_ports(&self, mac_of: impl Fn(&str) -> Option<Mac>) -> Vec<LocalPort> {
        self.ports
            .iter()
            .map(|(port, sel)| LocalPort {
                port: port.clone(),
                selector: match sel {
                    PlannedSelector::Name(n) => LspSelector::Name(n.clone()),
                    PlannedSelector::Mac(m) => LspSelector::Mac(parse_mac(m).expect("validated")),
                    PlannedSelector::PortMac => LspSelector::Mac(mac_of(port).unwrap_or([0; 6])),
                },
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section(text: &str) -> Result<OvnPlan, (String, String)> {
        let s: OvnSection = toml::from_str(text).map_err(|e| ("-".to_string(), e.to_string()))?;
        s.validate()
    }

    #[test]
    fn validation() {
        let p = section("remotes = \"unix:/run/nb.sock, tcp:127.0.0.1:6641\"").unwrap();
        assert_eq!(p.remotes, ["unix:/run/nb.sock", "tcp:127.0.0.1:6641"]);
        assert_eq!(p.probe_interval_ms, 5000);
        let p = section("remotes = [\"unix:/a\", \"unix:/b\"]\nprobe_interval_ms = 0").unwrap();
        assert_eq!(p.remotes.len(), 2);
        assert!(p.client_config().probe_interval.is_none());
        assert_eq!(
            section("remotes = \"ssl:127.0.0.1:6641\"").unwrap_err(),
            (
                "ovn.private_key".into(),
                "required by the ssl: remotes".into()
            )
        );
        assert_eq!(
            section("remotes = \"http://x\"").unwrap_err().0,
            "ovn.remotes"
        );
        assert!(section("remotes = \"unix:/a\"\nremote = 1")
            .unwrap_err()
            .1
            .contains("unknown field"));
        assert_eq!(
            section("remotes = \"unix:/a\"\nacl_node = \"a\"\nto_lport_node = \"b\"")
                .unwrap_err()
                .0,
            "ovn.acl_node"
        );
        assert_eq!(
            section("remotes = \"unix:/a\"\nacl_node = \"a\"\nafter_lb_node = \"b\"")
                .unwrap_err()
                .0,
            "ovn.acl_node"
        );
        let (key, reason) = section(
            "remotes = \"unix:/a\"\nfrom_lport_node = \"a\"\nafter_lb_node = \"b\"\nto_lport_node = \"b\"",
        )
        .unwrap_err();
        assert_eq!(key, "ovn.to_lport_node");
        assert!(reason.contains("already after_lb_node"), "{reason}");
        let staged = section(
            "remotes = \"unix:/a\"\nfrom_lport_node = \"a\"\nafter_lb_node = \"b\"\nto_lport_node = \"c\"",
        )
        .unwrap();
        assert_eq!(staged.targets.after_lb.as_deref(), Some("b"));
        assert!(staged.options().after_lb_stage);
        assert!(!p.options().after_lb_stage, "no stage after the lb named");
        assert_eq!(
            section("remotes = \"unix:/a\"\nprobe_interval_ms = 5")
                .unwrap_err()
                .0,
            "ovn.probe_interval_ms"
        );
        assert_eq!(p.translation_pacing, DEFAULT_TRANSLATION_PACING);
        assert_eq!(
            section("remotes = \"unix:/a\"\ntranslation_pacing = 0")
                .unwrap()
                .translation_pacing,
            0.0
        );
        for bad in ["-1", "101", "nan"] {
            assert_eq!(
                section(&format!(
                    "remotes = \"unix:/a\"\ntranslation_pacing = {bad}"
                ))
                .unwrap_err()
                .0,
                "ovn.translation_pacing",
                "{bad}"
            );
        }
        assert_eq!(port_selector(None, None), Ok(PlannedSelector::PortMac));
        assert_eq!(
            port_selector(None, Some("FA:16:3E:00:00:01")),
            Ok(PlannedSelector::Mac("fa:16:3e:00:00:01".into()))
        );
        assert_eq!(port_selector(Some("a"), Some("b")).unwrap_err().0, "lsp");
        assert_eq!(port_selector(None, Some("nope")).unwrap_err().0, "lsp_mac");
    }
}
