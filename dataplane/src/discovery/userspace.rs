//! Userspace CNI: the `userspace/configuration-data` annotation (a JSON array, one entry per
//! interface, describing the *pod's* side: vhost `mode` / memif `role`) and
//! `userspace/mapped-dir` (where the socket files are inside the pod).

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::annotations::{USERSPACE_CONFIG_KEY, USERSPACE_MAPPED_DIR_KEY};
use super::multus::{memif_is_server, network_matches, read_annotations, vhost_is_server};
use super::{json_error, Ctx, DiscoveryError, Found};
use crate::device::Device;

const ORIGIN: &str = "userspace-cni";

/// One entry of `userspace/configuration-data` (the fields discovery uses).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ConfigurationData {
    /// Network name.
    #[serde(default)]
    pub name: Option<String>,
    /// Interface name in the pod.
    #[serde(default, rename = "ifName")]
    pub if_name: Option<String>,
    /// The pod side's configuration.
    #[serde(default)]
    pub config: UserspaceConf,
}

/// `config` of a configuration-data entry.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
pub struct UserspaceConf {
    /// `vhostuser` or `memif`.
    #[serde(default)]
    pub iftype: Option<String>,
    /// For `vhostuser`.
    #[serde(default)]
    pub vhost: Option<VhostConf>,
    /// For `memif`.
    #[serde(default)]
    pub memif: Option<MemifConf>,
}

/// `config.vhost`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
pub struct VhostConf {
    /// The pod's mode: `client` or `server`.
    #[serde(default)]
    pub mode: Option<String>,
    /// Socket file name inside the mapped directory.
    #[serde(default)]
    pub socketfile: Option<String>,
}

/// `config.memif`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
pub struct MemifConf {
    /// The pod's role: `master` or `slave`.
    #[serde(default)]
    pub role: Option<String>,
    /// `ethernet`, `ip`, `inject-punt`.
    #[serde(default)]
    pub mode: Option<String>,
    /// Socket file name inside the mapped directory.
    #[serde(default)]
    pub socketfile: Option<String>,
}

fn selected(entry: &ConfigurationData, network: Option<&str>, interface: Option<&str>) -> bool {
    network.is_none_or(|n| {
        entry
            .name
            .as_deref()
            .is_some_and(|name| network_matches(n, name))
    }) && interface.is_none_or(|i| entry.if_name.as_deref() == Some(i))
}

pub(crate) fn resolve(
    ctx: &mut Ctx<'_>,
    role: &str,
    path: &Path,
    network: Option<&str>,
    interface: Option<&str>,
) -> Result<Vec<Found>, DiscoveryError> {
    let mut missing = String::new();
    let got = ctx.waiter.wait_for(ctx.env, |env| {
        let Some(map) = read_annotations(env, role, ORIGIN, path)? else {
            missing = format!("annotations file {} does not exist", path.display());
            return Ok(None);
        };
        let (Some(json), Some(dir)) = (map.get(USERSPACE_CONFIG_KEY), map.get(USERSPACE_MAPPED_DIR_KEY)) else {
            missing = format!(
                "{USERSPACE_CONFIG_KEY} and {USERSPACE_MAPPED_DIR_KEY} annotations are not both in {}",
                path.display()
            );
            return Ok(None);
        };
        let entries: Vec<ConfigurationData> = serde_json::from_str(json).map_err(|e| {
            json_error(role, ORIGIN, format!("annotation {USERSPACE_CONFIG_KEY} of {}", path.display()), &e)
        })?;
        let chosen: Vec<(usize, ConfigurationData)> =
            entries.iter().cloned().enumerate().filter(|(_, e)| selected(e, network, interface)).collect();
        if chosen.is_empty() {
            let present: Vec<String> = entries
                .iter()
                .map(|e| format!("{} ({})", e.name.as_deref().unwrap_or("?"), e.if_name.as_deref().unwrap_or("?")))
                .collect();
            missing = format!(
                "no entry of {USERSPACE_CONFIG_KEY} in {} matches{}{} (present: {})",
                path.display(),
                network.map(|n| format!(" network {n}")).unwrap_or_default(),
                interface.map(|i| format!(" interface {i}")).unwrap_or_default(),
                present.join(", ")
            );
            return Ok(None);
        }
        Ok(Some((chosen, dir.clone())))
    })?;
    let Some((chosen, dir)) = got else {
        return Err(ctx.waiter.timeout(role, ORIGIN, missing));
    };
    let invalid = |location: &str, reason: String| DiscoveryError::Invalid {
        role: role.to_string(),
        origin: ORIGIN.into(),
        location: location.to_string(),
        reason,
    };
    if dir.trim().is_empty() {
        return Err(invalid(
            &format!(
                "annotation {USERSPACE_MAPPED_DIR_KEY} of {}",
                path.display()
            ),
            "empty directory".into(),
        ));
    }
    let dir = PathBuf::from(dir);
    let mut out = Vec::new();
    for (i, entry) in chosen {
        let source = format!(
            "userspace-cni configuration-data[{i}] {} ({}), mapped-dir {}",
            entry.name.as_deref().unwrap_or("?"),
            entry.if_name.as_deref().unwrap_or("?"),
            dir.display()
        );
        let file = |f: Option<&str>| -> Result<PathBuf, DiscoveryError> {
            match f.filter(|f| !f.is_empty()) {
                Some(f) => Ok(dir.join(f)),
                None => Err(invalid(&source, "no socketfile".into())),
            }
        };
        let device = match entry.config.iftype.as_deref().unwrap_or("") {
            "vhostuser" => {
                let v = entry.config.vhost.clone().unwrap_or_default();
                let mode = v.mode.as_deref().unwrap_or("");
                let server = vhost_is_server(mode).ok_or_else(|| {
                    invalid(
                        &source,
                        format!("vhost mode `{mode}` is neither client nor server"),
                    )
                })?;
                let path = file(v.socketfile.as_deref())?;
                let what = format!("{source} vhost-user ({mode})");
                if server {
                    ctx.server_socket(role, ORIGIN, &path, &what)?;
                } else {
                    ctx.client_socket(role, ORIGIN, &path, &what)?;
                }
                Device::VirtioUser { path, server }
            }
            "memif" => {
                let m = entry.config.memif.clone().unwrap_or_default();
                let r = m.role.as_deref().unwrap_or("");
                let server = memif_is_server(r).ok_or_else(|| {
                    invalid(
                        &source,
                        format!("memif role `{r}` is none of master, slave, server, client"),
                    )
                })?;
                if let Some(mode) = m
                    .mode
                    .as_deref()
                    .filter(|m| !m.is_empty() && !m.eq_ignore_ascii_case("ethernet"))
                {
                    return Err(invalid(
                        &source,
                        format!("memif mode `{mode}`: DPDK's memif supports only ethernet"),
                    ));
                }
                let socket = file(m.socketfile.as_deref())?;
                let what = format!("{source} memif ({r})");
                if server {
                    ctx.server_socket(role, ORIGIN, &socket, &what)?;
                } else {
                    ctx.client_socket(role, ORIGIN, &socket, &what)?;
                }
                Device::Memif {
                    socket,
                    server,
                    id: 0,
                }
            }
            other => {
                return Err(invalid(
                    &source,
                    format!("iftype `{other}` is not supported (vhostuser, memif are)"),
                ))
            }
        };
        out.push(Found {
            device,
            source,
            mac: None,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::super::tests::{cfg, fixture, summary};
    use super::super::*;
    use std::time::Duration;

    const ANN: &str = "/etc/podnetinfo/annotations";

    fn us_cfg(wait: u64, filters: &str) -> DiscoveryConfig {
        cfg(&format!(
            "[discovery]\nwait_seconds = {wait}\n[discovery.roles.access]\nsource = \"userspace-cni\"\n{filters}"
        ))
    }

    #[test]
    fn reference_configuration_data() {
        let env = FakeEnvironment::new()
            .with_file(ANN, &fixture("podnetinfo-annotations-userspace"))
            .with_dir("/var/lib/cni/usrspcni");
        let d = discover(&us_cfg(0, ""), &env).expect("discovers");
        assert_eq!(
            summary(&d),
            vec![(
                "access0".into(),
                "access".into(),
                Device::VirtioUser {
                    path: "/var/lib/cni/usrspcni/037ecb6703b0-net1".into(),
                    server: true
                }
            )]
        );
        assert_eq!(
            d.ports[0].source,
            "userspace-cni configuration-data[0] userspace-ovs-net-1 (net1), mapped-dir /var/lib/cni/usrspcni/"
        );
    }

    #[test]
    fn filters_and_client_side_sockets() {
        let env = FakeEnvironment::new()
            .with_file(ANN, &fixture("podnetinfo-annotations-userspace-multi"))
            .with_socket("/var/lib/cni/usrspcni/037ecb6703b0-net2")
            .with_socket("/var/lib/cni/usrspcni/memif-net3.sock");
        let d = discover(&us_cfg(0, "interface = \"net2\"\n"), &env).expect("discovers");
        assert_eq!(
            summary(&d),
            vec![(
                "access0".into(),
                "access".into(),
                Device::VirtioUser {
                    path: "/var/lib/cni/usrspcni/037ecb6703b0-net2".into(),
                    server: false
                }
            )]
        );
        let d =
            discover(&us_cfg(0, "network = \"userspace-vpp-memif\"\n"), &env).expect("discovers");
        assert_eq!(
            summary(&d),
            vec![(
                "access0".into(),
                "access".into(),
                Device::Memif {
                    socket: "/var/lib/cni/usrspcni/memif-net3.sock".into(),
                    server: false,
                    id: 0
                }
            )]
        );
        let e = discover(&us_cfg(0, "interface = \"net9\"\n"), &env)
            .unwrap_err()
            .to_string();
        assert!(
            e.ends_with(
                "no entry of userspace/configuration-data in /etc/podnetinfo/annotations matches interface net9 \
                 (present: userspace-ovs-net-1 (net1), userspace-ovs-net-2 (net2), default/userspace-vpp-memif (net3))"
            ),
            "{e}"
        );
    }

    #[test]
    fn stale_socket_after_wait() {
        let env = FakeEnvironment::new()
            .with_file(ANN, &fixture("podnetinfo-annotations-userspace-multi"));
        let e = discover(&us_cfg(0, "interface = \"net2\"\n"), &env)
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "role `access` (userspace-cni): still missing after waiting 0 ms (wait_seconds = 0): userspace-cni \
             configuration-data[1] userspace-ovs-net-2 (net2), mapped-dir /var/lib/cni/usrspcni vhost-user (client): \
             socket /var/lib/cni/usrspcni/037ecb6703b0-net2 does not exist (is the peer running?)"
        );
    }

    #[test]
    fn mapped_dir_arriving_late() {
        let config = fixture("podnetinfo-annotations-userspace");
        let only_config: String = config
            .lines()
            .filter(|l| !l.starts_with("userspace/mapped-dir"))
            .map(|l| format!("{l}\n"))
            .collect();
        let env = FakeEnvironment::new()
            .with_file(ANN, &only_config)
            .with_file_after(Duration::from_millis(500), ANN, &config)
            .with_dir("/var/lib/cni/usrspcni");
        let d = discover(&us_cfg(2, ""), &env).expect("discovers");
        assert_eq!(d.ports.len(), 1);
        assert_eq!(env.slept(), Duration::from_millis(500));
        let env = FakeEnvironment::new().with_file(ANN, &only_config);
        let e = discover(&us_cfg(0, ""), &env).unwrap_err().to_string();
        assert!(e.ends_with("userspace/configuration-data and userspace/mapped-dir annotations are not both in /etc/podnetinfo/annotations"), "{e}");
    }

    #[test]
    fn malformed_configuration_data() {
        let env = FakeEnvironment::new().with_file(
            ANN,
            "userspace/configuration-data=\"[{\\\"name\\\": \\\"x\\\",}]\"\nuserspace/mapped-dir=\"/d\"\n",
        );
        let e = discover(&us_cfg(3, ""), &env).unwrap_err().to_string();
        assert!(
            e.starts_with(
                "role `access` (userspace-cni): malformed JSON in annotation userspace/configuration-data of \
                 /etc/podnetinfo/annotations at line 1 column 15: "
            ),
            "{e}"
        );
    }

    #[test]
    fn unsupported_iftype() {
        let env = FakeEnvironment::new().with_file(
            ANN,
            "userspace/configuration-data=\"[{\\\"name\\\": \\\"x\\\", \\\"ifName\\\": \\\"net1\\\", \\\"config\\\": {\\\"iftype\\\": \\\"tap\\\"}}]\"\nuserspace/mapped-dir=\"/d\"\n",
        );
        let e = discover(&us_cfg(0, ""), &env).unwrap_err().to_string();
        assert_eq!(
            e,
            "role `access` (userspace-cni): userspace-cni configuration-data[0] x (net1), mapped-dir /d: iftype `tap` is not supported (vhostuser, memif are)"
        );
    }
}
