//! Multus `k8s.v1.cni.cncf.io/network-status`: a JSON array of attachments, each with an
//! optional `device-info` (type `pci`, `vhost-user` or `memif`), read from the Downward API
//! annotations file.

use std::collections::BTreeMap;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::addr::{normalize_mac, normalize_pci_address};
use super::annotations::{parse_annotations, NETWORKS_STATUS_KEY_OLD, NETWORK_STATUS_KEY};
use super::{json_error, Ctx, DiscoveryError, Environment, Found};
use crate::device::Device;

const ORIGIN: &str = "multus";

/// One entry of the network-status array (the fields discovery uses).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct NetworkStatus {
    /// `namespace/network`.
    #[serde(default)]
    pub name: Option<String>,
    /// Interface name in the pod (`net1`).
    #[serde(default)]
    pub interface: Option<String>,
    /// MAC address, when the CNI reported one.
    #[serde(default)]
    pub mac: Option<String>,
    /// The device behind the attachment.
    #[serde(default, rename = "device-info")]
    pub device_info: Option<DeviceInfo>,
}

/// The Network Plumbing WG device-info object.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct DeviceInfo {
    /// `pci`, `vhost-user`, `memif`, `vdpa`, ...
    #[serde(rename = "type")]
    pub kind: String,
    /// For `pci`.
    #[serde(default)]
    pub pci: Option<PciInfo>,
    /// For `vhost-user`.
    #[serde(default, rename = "vhost-user")]
    pub vhost_user: Option<SocketInfo>,
    /// For `memif`.
    #[serde(default)]
    pub memif: Option<MemifInfo>,
}

/// device-info `pci`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct PciInfo {
    /// The VF's address.
    #[serde(default, rename = "pci-address")]
    pub pci_address: Option<String>,
}

/// device-info `vhost-user`: `mode` is the pod's side (`client` | `server`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct SocketInfo {
    /// `client` or `server`, as seen from the pod.
    #[serde(default)]
    pub mode: Option<String>,
    /// Socket path inside the pod.
    #[serde(default)]
    pub path: Option<String>,
}

/// device-info `memif`: `role` is the pod's side (`master`/`server` or `slave`/`client`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct MemifInfo {
    /// The pod's role.
    #[serde(default)]
    pub role: Option<String>,
    /// `ethernet`, `ip`, `inject-punt`.
    #[serde(default)]
    pub mode: Option<String>,
    /// Control socket path inside the pod.
    #[serde(default)]
    pub path: Option<String>,
}

/// Whether the configured `wanted` network names the entry `name`: equal, or `wanted` has
/// no namespace and matches the part after `/`.
pub fn network_matches(wanted: &str, name: &str) -> bool {
    wanted == name
        || (!wanted.contains('/') && name.rsplit_once('/').is_some_and(|(_, n)| n == wanted))
}

/// Read and parse the annotations file: `Ok(None)` if it does not exist (yet).
pub(crate) fn read_annotations(
    env: &dyn Environment,
    role: &str,
    origin: &str,
    path: &Path,
) -> Result<Option<BTreeMap<String, String>>, DiscoveryError> {
    let text = match env.read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(DiscoveryError::Read {
                role: role.to_string(),
                origin: origin.to_string(),
                path: path.display().to_string(),
                reason: e.to_string(),
            })
        }
    };
    parse_annotations(&text)
        .map(Some)
        .map_err(|e| DiscoveryError::Invalid {
            role: role.to_string(),
            origin: origin.to_string(),
            location: format!("annotations file {}", path.display()),
            reason: e.to_string(),
        })
}

/// `master`/`server` -> true, `slave`/`client` -> false.
pub(crate) fn memif_is_server(role: &str) -> Option<bool> {
    match role.to_ascii_lowercase().as_str() {
        "master" | "server" => Some(true),
        "slave" | "client" => Some(false),
        _ => None,
    }
}

/// `server` -> true, `client` -> false.
pub(crate) fn vhost_is_server(mode: &str) -> Option<bool> {
    match mode.to_ascii_lowercase().as_str() {
        "server" => Some(true),
        "client" => Some(false),
        _ => None,
    }
}

fn entry_device(
    ctx: &mut Ctx<'_>,
    role: &str,
    status: &NetworkStatus,
    where_: &str,
) -> Result<Device, DiscoveryError> {
    let invalid = |reason: String| DiscoveryError::Invalid {
        role: role.to_string(),
        origin: ORIGIN.into(),
        location: where_.to_string(),
        reason,
    };
    let Some(info) = &status.device_info else {
        return Err(invalid(
            "no device-info: a kernel interface, not a DPDK device (use source sriov with the network's resource, or a CNI that reports device-info)".into(),
        ));
    };
    match info.kind.as_str() {
        "pci" => {
            let a = info
                .pci
                .as_ref()
                .and_then(|p| p.pci_address.as_deref())
                .ok_or_else(|| invalid("device-info pci without pci-address".into()))?;
            let address = normalize_pci_address(a)
                .map_err(|e| invalid(format!("device-info pci-address: {e}")))?;
            Ok(Device::Pci { address })
        }
        "vhost-user" => {
            let v = info.vhost_user.as_ref().ok_or_else(|| {
                invalid("device-info vhost-user without its vhost-user object".into())
            })?;
            let path = v
                .path
                .as_deref()
                .filter(|p| !p.is_empty())
                .ok_or_else(|| invalid("device-info vhost-user without path".into()))?;
            let mode = v.mode.as_deref().unwrap_or("");
            let server = vhost_is_server(mode).ok_or_else(|| {
                invalid(format!(
                    "device-info vhost-user mode `{mode}` is neither client nor server"
                ))
            })?;
            let path = PathBuf::from(path);
            let what = format!("{where_} vhost-user ({mode})");
            if server {
                ctx.server_socket(role, ORIGIN, &path, &what)?;
            } else {
                ctx.client_socket(role, ORIGIN, &path, &what)?;
            }
            Ok(Device::VirtioUser { path, server })
        }
        "memif" => {
            let m = info
                .memif
                .as_ref()
                .ok_or_else(|| invalid("device-info memif without its memif object".into()))?;
            let path = m
                .path
                .as_deref()
                .filter(|p| !p.is_empty())
                .ok_or_else(|| invalid("device-info memif without path".into()))?;
            let r = m.role.as_deref().unwrap_or("");
            let server = memif_is_server(r).ok_or_else(|| {
                invalid(format!(
                    "device-info memif role `{r}` is none of master, slave, server, client"
                ))
            })?;
            if let Some(mode) = m
                .mode
                .as_deref()
                .filter(|m| !m.eq_ignore_ascii_case("ethernet"))
            {
                return Err(invalid(format!(
                    "memif mode `{mode}`: DPDK's memif supports only ethernet"
                )));
            }
            let socket = PathBuf::from(path);
            let what = format!("{where_} memif ({r})");
            if server {
                ctx.server_socket(role, ORIGIN, &socket, &what)?;
            } else {
                ctx.client_socket(role, ORIGIN, &socket, &what)?;
            }
            Ok(Device::Memif {
                socket,
                server,
                id: 0,
            })
        }
        other => Err(invalid(format!(
            "device-info type `{other}` is not supported (pci, vhost-user, memif are)"
        ))),
    }
}

pub(crate) fn resolve(
    ctx: &mut Ctx<'_>,
    role: &str,
    network: &str,
    path: &Path,
) -> Result<Vec<Found>, DiscoveryError> {
    let mut missing = String::new();
    let entries = ctx.waiter.wait_for(ctx.env, |env| {
        let Some(map) = read_annotations(env, role, ORIGIN, path)? else {
            missing = format!("annotations file {} does not exist", path.display());
            return Ok(None);
        };
        let Some((key, json)) = [NETWORK_STATUS_KEY, NETWORKS_STATUS_KEY_OLD]
            .iter()
            .find_map(|k| map.get(*k).map(|v| (*k, v)))
        else {
            missing = format!("no {NETWORK_STATUS_KEY} annotation in {}", path.display());
            return Ok(None);
        };
        let statuses: Vec<NetworkStatus> = serde_json::from_str(json).map_err(|e| {
            json_error(
                role,
                ORIGIN,
                format!("annotation {key} of {}", path.display()),
                &e,
            )
        })?;
        let matched: Vec<NetworkStatus> = statuses
            .iter()
            .filter(|s| {
                s.name
                    .as_deref()
                    .is_some_and(|n| network_matches(network, n))
            })
            .cloned()
            .collect();
        if matched.is_empty() {
            let names: Vec<&str> = statuses.iter().filter_map(|s| s.name.as_deref()).collect();
            missing = format!(
                "network {network} is not in {key} of {} (present: {})",
                path.display(),
                names.join(", ")
            );
            return Ok(None);
        }
        Ok(Some(matched))
    })?;
    let Some(entries) = entries else {
        return Err(ctx.waiter.timeout(role, ORIGIN, missing));
    };
    let mut out = Vec::new();
    for status in entries {
        let name = status.name.clone().unwrap_or_default();
        let source = match &status.interface {
            Some(i) => format!("multus network-status {name} ({i})"),
            None => format!("multus network-status {name}"),
        };
        let device = entry_device(ctx, role, &status, &source)?;
        let mac = match status.mac.as_deref().filter(|m| !m.is_empty()) {
            None => None,
            Some(m) => match normalize_mac(m) {
                Ok(m) => Some(m),
                Err(e) => {
                    ctx.warnings.push(format!(
                        "role `{role}` (multus): {source}: ignoring mac: {e}"
                    ));
                    None
                }
            },
        };
        out.push(Found {
            device,
            source,
            mac,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::super::annotations::quote_go;
    use super::super::tests::{cfg, fixture, pci, summary};
    use super::super::*;
    use super::*;
    use std::time::Duration;

    const ANN: &str = "/etc/podnetinfo/annotations";

    fn multus_cfg(wait: u64, roles: &[(&str, &str)]) -> DiscoveryConfig {
        let mut t = format!("[discovery]\nwait_seconds = {wait}\n");
        for (role, net) in roles {
            t.push_str(&format!(
                "[discovery.roles.{role}]\nsource = \"multus\"\nnetwork = \"{net}\"\n"
            ));
        }
        cfg(&t)
    }

    fn status_file(json: &str) -> String {
        format!(
            "kubernetes.io/config.source=\"api\"\n{NETWORK_STATUS_KEY}={}\n",
            quote_go(json)
        )
    }

    #[test]
    fn network_name_matching() {
        assert!(network_matches("default/fronthaul", "default/fronthaul"));
        assert!(network_matches("fronthaul", "default/fronthaul"));
        assert!(network_matches("fronthaul", "fronthaul"));
        assert!(!network_matches("other/fronthaul", "default/fronthaul"));
        assert!(!network_matches("fronthaul", "default/fronthaul-net"));
    }

    #[test]
    fn reference_annotations() {
        let env = FakeEnvironment::new()
            .with_file(ANN, &fixture("podnetinfo-annotations"))
            .with_dir("/var/run/net3");
        let c = multus_cfg(
            0,
            &[
                ("fronthaul", "default/fronthaul-net"),
                ("midhaul", "midhaul-net"),
                ("user", "userspace-net"),
            ],
        );
        let d = discover(&c, &env).expect("discovers");
        assert_eq!(
            summary(&d),
            vec![
                ("fronthaul0".into(), "fronthaul".into(), pci("0000:3b:02.1")),
                ("midhaul0".into(), "midhaul".into(), pci("0000:3b:0a.2")),
                (
                    "user0".into(),
                    "user".into(),
                    Device::VirtioUser {
                        path: "/var/run/net3/vhost.sock".into(),
                        server: true
                    }
                ),
            ]
        );
        assert_eq!(
            d.ports[0].source,
            "multus network-status default/fronthaul-net (net1)"
        );
        assert_eq!(d.ports[2].mac.as_deref(), Some("64:1f:74:32:2e:6d"));
        assert!(d.warnings.is_empty(), "{:?}", d.warnings);
        assert_eq!(env.slept(), Duration::ZERO);
    }

    #[test]
    fn stale_file_at_server_socket_path_is_a_warning() {
        let env = FakeEnvironment::new()
            .with_file(ANN, &fixture("podnetinfo-annotations"))
            .with_file("/var/run/net3/vhost.sock", "");
        let d = discover(&multus_cfg(0, &[("user", "userspace-net")]), &env).expect("discovers");
        assert_eq!(d.ports.len(), 1);
        assert_eq!(d.warnings.len(), 1);
        assert!(
            d.warnings[0].contains("/var/run/net3/vhost.sock already exists"),
            "{:?}",
            d.warnings
        );
    }

    #[test]
    fn server_socket_directory_must_exist() {
        let env = FakeEnvironment::new().with_file(ANN, &fixture("podnetinfo-annotations"));
        let e = discover(&multus_cfg(0, &[("user", "userspace-net")]), &env)
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "role `user` (multus): still missing after waiting 0 ms (wait_seconds = 0): multus network-status \
             default/userspace-net (net3) vhost-user (server): directory /var/run/net3 for the server socket does not exist"
        );
    }

    #[test]
    fn memif_and_client_sockets() {
        let env = FakeEnvironment::new()
            .with_file(ANN, &fixture("podnetinfo-annotations-memif"))
            .with_socket("/run/memif/sw.sock")
            .with_socket("/run/vhost/ovs-net4.sock")
            .with_dir("/run/memif-srv");
        let c = multus_cfg(
            0,
            &[
                ("mem", "memif-net"),
                ("memsrv", "memif-srv-net"),
                ("vh", "default/vhost-client-net"),
            ],
        );
        let d = discover(&c, &env).expect("discovers");
        assert_eq!(
            summary(&d),
            vec![
                (
                    "mem0".into(),
                    "mem".into(),
                    Device::Memif {
                        socket: "/run/memif/sw.sock".into(),
                        server: false,
                        id: 0
                    }
                ),
                (
                    "memsrv0".into(),
                    "memsrv".into(),
                    Device::Memif {
                        socket: "/run/memif-srv/m.sock".into(),
                        server: true,
                        id: 0
                    }
                ),
                (
                    "vh0".into(),
                    "vh".into(),
                    Device::VirtioUser {
                        path: "/run/vhost/ovs-net4.sock".into(),
                        server: false
                    }
                ),
            ]
        );
        assert_eq!(d.ports[2].mac.as_deref(), Some("02:00:00:aa:bb:cc"));
    }

    #[test]
    fn stale_client_socket_after_the_wait() {
        // The vhost-user client socket never appears: error after the (0 s) wait.
        let env = FakeEnvironment::new()
            .with_file(ANN, &fixture("podnetinfo-annotations-memif"))
            .with_socket("/run/memif/sw.sock");
        let e = discover(&multus_cfg(0, &[("vh", "vhost-client-net")]), &env)
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "role `vh` (multus): still missing after waiting 0 ms (wait_seconds = 0): multus network-status \
             default/vhost-client-net (net4) vhost-user (client): socket /run/vhost/ovs-net4.sock does not exist (is the peer running?)"
        );
        // A regular file where the socket should be.
        let env = FakeEnvironment::new()
            .with_file(ANN, &fixture("podnetinfo-annotations-memif"))
            .with_file("/run/vhost/ovs-net4.sock", "");
        let e = discover(&multus_cfg(0, &[("vh", "vhost-client-net")]), &env)
            .unwrap_err()
            .to_string();
        assert!(
            e.ends_with("/run/vhost/ovs-net4.sock exists but is not a socket (stale file?)"),
            "{e}"
        );
    }

    #[test]
    fn late_annotations_and_socket_are_waited_for() {
        let env = FakeEnvironment::new()
            .with_file_after(
                Duration::from_millis(1000),
                ANN,
                &fixture("podnetinfo-annotations-memif"),
            )
            .with_socket_after(Duration::from_millis(1600), "/run/vhost/ovs-net4.sock");
        let d = discover(&multus_cfg(5, &[("vh", "vhost-client-net")]), &env).expect("discovers");
        assert_eq!(
            summary(&d),
            vec![(
                "vh0".into(),
                "vh".into(),
                Device::VirtioUser {
                    path: "/run/vhost/ovs-net4.sock".into(),
                    server: false
                }
            )]
        );
        assert_eq!(env.slept(), Duration::from_millis(1750));
    }

    #[test]
    fn network_added_to_status_later() {
        let env = FakeEnvironment::new()
            .with_file(ANN, &status_file(r#"[{"name":"default/calico","interface":"eth0"}]"#))
            .with_file_after(
                Duration::from_secs(1),
                ANN,
                &status_file(r#"[{"name":"default/calico"},{"name":"default/fh","interface":"net1","device-info":{"type":"pci","pci":{"pci-address":"0000:3B:02.1"}}}]"#),
            );
        let d = discover(&multus_cfg(3, &[("fh", "fh")]), &env).expect("discovers");
        assert_eq!(
            summary(&d),
            vec![("fh0".into(), "fh".into(), pci("0000:3b:02.1"))]
        );
        let env = FakeEnvironment::new().with_file(
            ANN,
            &status_file(r#"[{"name":"default/calico","interface":"eth0"}]"#),
        );
        let e = discover(&multus_cfg(1, &[("fh", "fh")]), &env)
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "role `fh` (multus): still missing after waiting 1000 ms (wait_seconds = 1): network fh is not in \
             k8s.v1.cni.cncf.io/network-status of /etc/podnetinfo/annotations (present: default/calico)"
        );
    }

    #[test]
    fn same_network_twice_gives_two_ports() {
        let json = r#"[{"name":"default/fh","interface":"net1","device-info":{"type":"pci","pci":{"pci-address":"0000:3b:02.1"}}},
                       {"name":"default/fh","interface":"net2","device-info":{"type":"pci","pci":{"pci-address":"0000:3b:02.2"}}}]"#;
        let env = FakeEnvironment::new().with_file(ANN, &status_file(json));
        let d = discover(&multus_cfg(0, &[("fh", "default/fh")]), &env).expect("discovers");
        assert_eq!(
            summary(&d),
            vec![
                ("fh0".into(), "fh".into(), pci("0000:3b:02.1")),
                ("fh1".into(), "fh".into(), pci("0000:3b:02.2"))
            ]
        );
    }

    #[test]
    fn malformed_json_names_file_and_position() {
        let env =
            FakeEnvironment::new().with_file(ANN, &fixture("podnetinfo-annotations-malformed"));
        let e = discover(&multus_cfg(5, &[("fh", "fronthaul-net")]), &env)
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with(
                "role `fh` (multus): malformed JSON in annotation k8s.v1.cni.cncf.io/network-status of \
                 /etc/podnetinfo/annotations at line 22 column 5: "
            ),
            "{e}"
        );
        assert_eq!(
            env.slept(),
            Duration::ZERO,
            "malformed JSON is not waited on"
        );
    }

    #[test]
    fn malformed_annotation_line() {
        let env = FakeEnvironment::new().with_file(
            ANN,
            "a=\"1\"\nk8s.v1.cni.cncf.io/network-status=\"[\\q]\"\n",
        );
        let e = discover(&multus_cfg(0, &[("fh", "x")]), &env)
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "role `fh` (multus): annotations file /etc/podnetinfo/annotations: line 2: value of \
             k8s.v1.cni.cncf.io/network-status: unknown escape \\q"
        );
    }

    #[test]
    fn missing_file_and_missing_annotation() {
        let e = discover(&multus_cfg(0, &[("fh", "x")]), &FakeEnvironment::new())
            .unwrap_err()
            .to_string();
        assert!(
            e.ends_with("annotations file /etc/podnetinfo/annotations does not exist"),
            "{e}"
        );
        let env = FakeEnvironment::new().with_file(ANN, "kubernetes.io/config.source=\"api\"\n");
        let e = discover(&multus_cfg(0, &[("fh", "x")]), &env)
            .unwrap_err()
            .to_string();
        assert!(
            e.ends_with(
                "no k8s.v1.cni.cncf.io/network-status annotation in /etc/podnetinfo/annotations"
            ),
            "{e}"
        );
    }

    #[test]
    fn unusable_entries() {
        for (json, key) in [
            (
                r#"[{"name":"default/x","interface":"net1"}]"#,
                "no device-info: a kernel interface",
            ),
            (
                r#"[{"name":"default/x","device-info":{"type":"vdpa"}}]"#,
                "device-info type `vdpa` is not supported",
            ),
            (
                r#"[{"name":"default/x","device-info":{"type":"pci","pci":{}}}]"#,
                "pci without pci-address",
            ),
            (
                r#"[{"name":"default/x","device-info":{"type":"pci","pci":{"pci-address":"3b:02.1"}}}]"#,
                "is not a PCI address",
            ),
            (
                r#"[{"name":"default/x","device-info":{"type":"vhost-user","vhost-user":{"mode":"both","path":"/a"}}}]"#,
                "mode `both`",
            ),
            (
                r#"[{"name":"default/x","device-info":{"type":"memif","memif":{"role":"master","mode":"ip","path":"/a"}}}]"#,
                "memif mode `ip`",
            ),
            (
                r#"[{"name":"default/x","device-info":{"type":"memif","memif":{"role":"boss","path":"/a"}}}]"#,
                "memif role `boss`",
            ),
            (r#"{"name":"default/x"}"#, "malformed JSON in annotation"),
        ] {
            let env = FakeEnvironment::new().with_file(ANN, &status_file(json));
            let e = discover(&multus_cfg(0, &[("x", "x")]), &env)
                .unwrap_err()
                .to_string();
            assert!(e.starts_with("role `x` (multus): "), "{e}");
            assert!(e.contains(key), "{json}: {e}");
        }
    }
}
