//! OpenStack config drive: `openstack/latest/meta_data.json` `devices[]` (type `nic`) carry
//! the MAC, a PCI address *hint* and `tags` naming the network (the role);
//! `network_data.json` `links[]` are joined on MAC for extra facts. Inside the guest the
//! NIC's real PCI address is taken from sysfs: the netdev with that MAC and its `device`
//! link; a NIC bound to vfio/uio has no netdev, then the hint is checked against
//! `/sys/bus/pci/devices` and used.

use std::collections::BTreeMap;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::addr::{is_pci_address, normalize_mac, normalize_pci_address};
use super::{json_error, Ctx, DiscoveryError, Environment, Found};
use crate::device::Device;

const ORIGIN: &str = "openstack";
/// Where udev links the config drive's filesystem by label.
pub const CONFIG_DRIVE_LABELS: [&str; 2] =
    ["/dev/disk/by-label/config-2", "/dev/disk/by-label/CONFIG-2"];
/// Drivers under which a NIC is usable by DPDK without unbinding.
const DPDK_DRIVERS: [&str; 5] = [
    "vfio-pci",
    "uio_pci_generic",
    "igb_uio",
    "mlx5_core",
    "mlx4_core",
];

/// `meta_data.json`, the parts discovery uses.
#[derive(Debug, Clone, Deserialize)]
pub struct MetaData {
    /// Tagged devices.
    #[serde(default)]
    pub devices: Vec<MetaDevice>,
}

/// One `devices[]` entry.
#[derive(Debug, Clone, Deserialize)]
pub struct MetaDevice {
    /// `nic`, `disk`, ...
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    /// `pci`, `usb`, ...
    #[serde(default)]
    pub bus: Option<String>,
    /// The PCI address as the host configured it (a hint inside the guest).
    #[serde(default)]
    pub address: Option<String>,
    /// MAC address.
    #[serde(default)]
    pub mac: Option<String>,
    /// Tags given when the port was attached.
    #[serde(default)]
    pub tags: Option<Vec<String>>,
    /// VLAN (facts only).
    #[serde(default)]
    pub vlan: Option<serde_json::Value>,
}

/// `network_data.json`, the parts discovery uses.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct NetworkData {
    /// Layer-2 links.
    #[serde(default)]
    pub links: Vec<Link>,
}

/// One `links[]` entry.
#[derive(Debug, Clone, Deserialize)]
pub struct Link {
    /// Link id (`tap...`).
    #[serde(default)]
    pub id: Option<String>,
    /// `ovs`, `hw_veb`, `vhostuser`, ...
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    /// MAC address.
    #[serde(default)]
    pub ethernet_mac_address: Option<String>,
    /// MTU (facts only).
    #[serde(default)]
    pub mtu: Option<serde_json::Value>,
}

/// A netdev seen in `/sys/class/net`.
#[derive(Debug, Clone)]
struct Netdev {
    name: String,
    mac: String,
    pci: Option<String>,
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// The PCI function a sysfs device path belongs to: the last component that is a PCI
/// address (`.../0000:00:05.0` for a VF, `.../0000:00:03.0/virtio0` for virtio-net).
fn pci_of_device_path(p: &Path) -> Option<String> {
    p.components()
        .rev()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .find(|c| is_pci_address(c))
}

fn scan_netdevs(env: &dyn Environment) -> Option<Vec<Netdev>> {
    let mut entries = env.read_dir(Path::new("/sys/class/net")).ok()?;
    entries.sort();
    Some(
        entries
            .into_iter()
            .filter_map(|dir| {
                let mac = env
                    .read_to_string(&dir.join("address"))
                    .ok()?
                    .trim()
                    .to_ascii_lowercase();
                let pci = env
                    .canonicalize(&dir.join("device"))
                    .ok()
                    .and_then(|d| pci_of_device_path(&d));
                Some(Netdev {
                    name: file_name(&dir),
                    mac,
                    pci,
                })
            })
            .collect(),
    )
}

fn driver_of(env: &dyn Environment, pci: &str) -> Option<String> {
    env.canonicalize(&Path::new("/sys/bus/pci/devices").join(pci).join("driver"))
        .ok()
        .map(|d| file_name(&d))
}

/// Find the guest's PCI address for `mac`. Returns (address, how it was found, warnings).
fn guest_pci(
    env: &dyn Environment,
    netdevs: Option<&[Netdev]>,
    mac: &str,
    hint: Option<&str>,
) -> Result<(String, String, Vec<String>), String> {
    let mut warnings = Vec::new();
    if let Some(nd) = netdevs.and_then(|n| n.iter().find(|n| n.mac == mac && n.pci.is_some())) {
        let pci = nd.pci.clone().unwrap_or_default();
        let driver = driver_of(env, &pci);
        let drv = driver.clone().unwrap_or_else(|| "no driver".into());
        if !driver.as_deref().is_some_and(|d| DPDK_DRIVERS.contains(&d)) {
            warnings.push(format!(
                "{pci} (netdev {}, mac {mac}) is bound to kernel driver {drv}: bind it to vfio-pci before DPDK starts",
                nd.name
            ));
        }
        let how = match hint {
            Some(h) if !h.eq_ignore_ascii_case(&pci) => {
                format!("from netdev {} ({drv}); metadata hint was {h}", nd.name)
            }
            _ => format!("from netdev {} ({drv})", nd.name),
        };
        return Ok((pci, how, warnings));
    }
    let Some(hint) = hint else {
        return Err("no netdev has this MAC and the metadata gives no PCI address".into());
    };
    let hint = normalize_pci_address(hint)
        .map_err(|e| format!("no netdev has this MAC and the metadata address is bad: {e}"))?;
    if let Some(other) =
        netdevs.and_then(|n| n.iter().find(|n| n.pci.as_deref() == Some(hint.as_str())))
    {
        return Err(format!(
            "no netdev has this MAC, and the metadata hint {hint} is netdev {} with MAC {}: the hint is stale",
            other.name, other.mac
        ));
    }
    match env.read_dir(Path::new("/sys/bus/pci/devices")) {
        Ok(devs) => {
            if !devs.iter().any(|d| file_name(d) == hint) {
                return Err(format!(
                    "no netdev has this MAC and the metadata hint {hint} is not in /sys/bus/pci/devices"
                ));
            }
            let drv = driver_of(env, &hint).unwrap_or_else(|| "no driver".into());
            Ok((
                hint,
                format!("from the metadata hint (no netdev has this MAC; device bound to {drv})"),
                warnings,
            ))
        }
        Err(e) => {
            warnings.push(format!(
                "cannot list /sys/bus/pci/devices ({e}): using metadata hint {hint} unchecked"
            ));
            Ok((
                hint,
                "from the metadata hint (unchecked: no sysfs)".into(),
                warnings,
            ))
        }
    }
}

/// Find the config drive directory: the configured one, or the `config-2` filesystem
/// (already mounted, or mounted read-only now). Returns (root, mounted by us).
fn locate(
    ctx: &mut Ctx<'_>,
    first_role: &str,
    drive: Option<&Path>,
) -> Result<(PathBuf, bool), DiscoveryError> {
    let not_found = |reason: String| DiscoveryError::NotFound {
        role: first_role.to_string(),
        origin: ORIGIN.into(),
        reason,
    };
    if let Some(dir) = drive {
        if !ctx.env.exists(dir) {
            return Err(not_found(format!(
                "config drive directory {} does not exist",
                dir.display()
            )));
        }
        return Ok((dir.to_path_buf(), false));
    }
    let Some(label) = CONFIG_DRIVE_LABELS
        .iter()
        .map(Path::new)
        .find(|p| ctx.env.exists(p))
    else {
        return Err(not_found(format!(
            "no config drive: {} does not exist and no config_drive directory is configured",
            CONFIG_DRIVE_LABELS[0]
        )));
    };
    let device = ctx
        .env
        .canonicalize(label)
        .unwrap_or_else(|_| label.to_path_buf());
    if let Ok(mounts) = ctx.env.read_to_string(Path::new("/proc/mounts")) {
        for line in mounts.lines() {
            let mut f = line.split_whitespace();
            let (Some(src), Some(dst)) = (f.next(), f.next()) else {
                continue;
            };
            let src = PathBuf::from(super::hugepages::unescape_mount_field(src));
            if src == device || src == label {
                return Ok((
                    PathBuf::from(super::hugepages::unescape_mount_field(dst)),
                    false,
                ));
            }
        }
    }
    let dir = ctx.env.mount_readonly(&device).map_err(|e| {
        not_found(format!(
            "config drive {} ({}) could not be mounted: {e}",
            label.display(),
            device.display()
        ))
    })?;
    Ok((dir, true))
}

fn read_json<T: serde::de::DeserializeOwned>(
    env: &dyn Environment,
    role: &str,
    path: &Path,
) -> Result<Option<T>, DiscoveryError> {
    let text = match env.read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(DiscoveryError::Read {
                role: role.to_string(),
                origin: ORIGIN.into(),
                path: path.display().to_string(),
                reason: e.to_string(),
            })
        }
    };
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| json_error(role, ORIGIN, format!("file {}", path.display()), &e))
}

/// Resolve all openstack roles that share one config drive. `roles`: (role, tag).
pub(crate) fn resolve(
    ctx: &mut Ctx<'_>,
    drive: Option<&Path>,
    roles: &[(String, String)],
) -> Result<BTreeMap<String, Vec<Found>>, DiscoveryError> {
    let first_role = roles.first().map(|(r, _)| r.as_str()).unwrap_or("?");
    let (root, mounted) = locate(ctx, first_role, drive)?;
    let result = resolve_in(ctx, &root, roles);
    if mounted {
        if let Err(e) = ctx.env.unmount(&root) {
            ctx.warnings.push(format!(
                "openstack: could not unmount the config drive at {}: {e}",
                root.display()
            ));
        }
    }
    result
}

fn resolve_in(
    ctx: &mut Ctx<'_>,
    root: &Path,
    roles: &[(String, String)],
) -> Result<BTreeMap<String, Vec<Found>>, DiscoveryError> {
    let first_role = roles.first().map(|(r, _)| r.as_str()).unwrap_or("?");
    let latest = root.join("openstack/latest");
    let meta_path = latest.join("meta_data.json");
    let Some(meta) = read_json::<MetaData>(ctx.env, first_role, &meta_path)? else {
        return Err(DiscoveryError::Read {
            role: first_role.to_string(),
            origin: ORIGIN.into(),
            path: meta_path.display().to_string(),
            reason: "no such file (is this a config drive?)".into(),
        });
    };
    let net_path = latest.join("network_data.json");
    let net = match read_json::<NetworkData>(ctx.env, first_role, &net_path)? {
        Some(n) => n,
        None => {
            ctx.warnings.push(format!(
                "openstack: {} is missing: no link facts",
                net_path.display()
            ));
            NetworkData::default()
        }
    };
    let netdevs = scan_netdevs(ctx.env);
    let mut out: BTreeMap<String, Vec<Found>> =
        roles.iter().map(|(r, _)| (r.clone(), Vec::new())).collect();
    let mut tags_seen: Vec<String> = Vec::new();
    for (i, dev) in meta.devices.iter().enumerate() {
        if dev.kind.as_deref() != Some("nic") {
            continue;
        }
        let what = format!(
            "config drive meta_data.json devices[{i}] (mac {})",
            dev.mac.as_deref().unwrap_or("none")
        );
        let tags = dev.tags.clone().unwrap_or_default();
        if tags.is_empty() {
            ctx.warnings
                .push(format!("openstack: {what} has no tags: ignored"));
            continue;
        }
        tags_seen.extend(tags.iter().cloned());
        let hits: Vec<&(String, String)> = roles
            .iter()
            .filter(|(_, tag)| tags.iter().any(|t| t.eq_ignore_ascii_case(tag)))
            .collect();
        let (role, tag) = match hits.as_slice() {
            [] => {
                ctx.warnings.push(format!(
                    "openstack: {what} tagged {} matches no configured role: ignored",
                    tags.join(",")
                ));
                continue;
            }
            [one] => {
                let t = tags
                    .iter()
                    .find(|t| t.eq_ignore_ascii_case(&one.1))
                    .map_or(one.1.as_str(), String::as_str);
                (one.0.as_str(), t)
            }
            [a, b, ..] => {
                return Err(DiscoveryError::Invalid {
                    role: a.0.clone(),
                    origin: ORIGIN.into(),
                    location: what,
                    reason: format!(
                        "tagged {} it matches roles `{}` and `{}`",
                        tags.join(","),
                        a.0,
                        b.0
                    ),
                })
            }
        };
        let invalid = |reason: String| DiscoveryError::Invalid {
            role: role.to_string(),
            origin: ORIGIN.into(),
            location: what.clone(),
            reason,
        };
        if let Some(bus) = dev.bus.as_deref().filter(|b| *b != "pci") {
            return Err(invalid(format!(
                "bus `{bus}`: only PCI NICs can be DPDK ports"
            )));
        }
        let mac = normalize_mac(dev.mac.as_deref().unwrap_or("")).map_err(invalid)?;
        let mut facts = vec![format!("mac {mac}"), format!("tag {tag}")];
        match net.links.iter().find(|l| {
            l.ethernet_mac_address
                .as_deref()
                .is_some_and(|m| m.eq_ignore_ascii_case(&mac))
        }) {
            Some(l) => facts.push(format!(
                "link {} {}",
                l.id.as_deref().unwrap_or("?"),
                l.kind.as_deref().unwrap_or("?")
            )),
            None => {
                if !net.links.is_empty() {
                    ctx.warnings.push(format!(
                        "openstack: {what}: no link in network_data.json has this MAC"
                    ));
                }
            }
        }
        if let Some(v) = &dev.vlan {
            facts.push(format!("vlan {v}"));
        }
        let (address, how, warnings) =
            guest_pci(ctx.env, netdevs.as_deref(), &mac, dev.address.as_deref())
                .map_err(invalid)?;
        ctx.warnings.extend(
            warnings
                .into_iter()
                .map(|w| format!("role `{role}` (openstack): {w}")),
        );
        out.entry(role.to_string()).or_default().push(Found {
            device: Device::Pci {
                address: address.clone(),
            },
            source: format!(
                "config drive meta_data.json devices[{i}] ({}): PCI {address} {how}",
                facts.join(", ")
            ),
            mac: Some(mac),
        });
    }
    for (role, tag) in roles {
        if out.get(role).is_none_or(Vec::is_empty) {
            tags_seen.dedup();
            return Err(DiscoveryError::NotFound {
                role: role.clone(),
                origin: ORIGIN.into(),
                reason: format!(
                    "no NIC in {} is tagged {tag} (tags present: {})",
                    meta_path.display(),
                    if tags_seen.is_empty() {
                        "none".to_string()
                    } else {
                        tags_seen.join(", ")
                    }
                ),
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::super::tests::{cfg, fixture, pci, summary};
    use super::super::*;

    const DRIVE: &str = "/mnt/config";

    fn with_drive(env: FakeEnvironment, meta: &str, net: &str) -> FakeEnvironment {
        env.with_file(format!("{DRIVE}/openstack/latest/meta_data.json"), meta)
            .with_file(format!("{DRIVE}/openstack/latest/network_data.json"), net)
    }

    /// A guest where the FRONTHAUL VF is a netdev (iavf) at a different address than the
    /// hint, the mgmt NIC is virtio-net (eth0), and the MIDHAUL NICs are bound to vfio-pci.
    fn guest() -> FakeEnvironment {
        FakeEnvironment::new()
            .with_file("/sys/class/net/lo/address", "00:00:00:00:00:00\n")
            .with_file("/sys/class/net/eth0/address", "fa:16:3e:11:22:01\n")
            .with_link(
                "/sys/class/net/eth0/device",
                "/sys/devices/pci0000:00/0000:00:03.0/virtio0",
            )
            .with_link(
                "/sys/bus/pci/devices/0000:00:03.0/driver",
                "/sys/bus/pci/drivers/virtio-pci",
            )
            .with_file("/sys/class/net/eth1/address", "FA:16:3E:11:22:02\n")
            .with_link(
                "/sys/class/net/eth1/device",
                "/sys/devices/pci0000:00/0000:00:04.0",
            )
            .with_link(
                "/sys/bus/pci/devices/0000:00:04.0/driver",
                "/sys/bus/pci/drivers/iavf",
            )
            .with_dir("/sys/bus/pci/devices/0000:00:06.0")
            .with_link(
                "/sys/bus/pci/devices/0000:00:06.0/driver",
                "/sys/bus/pci/drivers/vfio-pci",
            )
            .with_dir("/sys/bus/pci/devices/0000:00:07.0")
            .with_link(
                "/sys/bus/pci/devices/0000:00:07.0/driver",
                "/sys/bus/pci/drivers/vfio-pci",
            )
    }

    fn os_cfg(roles: &[&str], drive: bool) -> DiscoveryConfig {
        let mut t = String::from("[discovery]\nwait_seconds = 0\n");
        for r in roles {
            t.push_str(&format!("[discovery.roles.{r}]\nsource = \"openstack\"\n"));
            if drive {
                t.push_str(&format!("config_drive = \"{DRIVE}\"\n"));
            }
        }
        cfg(&t)
    }

    #[test]
    fn reference_config_drive() {
        let env = with_drive(
            guest(),
            &fixture("openstack/latest/meta_data.json"),
            &fixture("openstack/latest/network_data.json"),
        );
        let d = discover(&os_cfg(&["fronthaul", "midhaul"], true), &env).expect("discovers");
        assert_eq!(
            summary(&d),
            vec![
                ("fronthaul0".into(), "fronthaul".into(), pci("0000:00:04.0")),
                ("midhaul0".into(), "midhaul".into(), pci("0000:00:06.0")),
                ("midhaul1".into(), "midhaul".into(), pci("0000:00:07.0")),
            ]
        );
        assert_eq!(
            d.ports[0].source,
            "config drive meta_data.json devices[1] (mac fa:16:3e:11:22:02, tag FRONTHAUL, link tap5a0c1e2d-02 hw_veb, vlan 101): \
             PCI 0000:00:04.0 from netdev eth1 (iavf); metadata hint was 0000:00:05.0"
        );
        assert_eq!(
            d.ports[2].source,
            "config drive meta_data.json devices[3] (mac fa:16:3e:11:22:04, tag MIDHAUL, link tap5a0c1e2d-04 vhostuser, vlan 102): \
             PCI 0000:00:07.0 from the metadata hint (no netdev has this MAC; device bound to vfio-pci)"
        );
        let macs: Vec<_> = d
            .ports
            .iter()
            .map(|p| p.mac.clone().unwrap_or_default())
            .collect();
        assert_eq!(
            macs,
            vec![
                "fa:16:3e:11:22:02",
                "fa:16:3e:11:22:03",
                "fa:16:3e:11:22:04"
            ]
        );
        assert_eq!(
            d.warnings,
            vec![
                "openstack: config drive meta_data.json devices[0] (mac fa:16:3e:11:22:01) tagged mgmt matches no configured role: ignored".to_string(),
                "role `fronthaul` (openstack): 0000:00:04.0 (netdev eth1, mac fa:16:3e:11:22:02) is bound to kernel driver iavf: bind it to vfio-pci before DPDK starts".to_string(),
            ]
        );
    }

    #[test]
    fn uppercase_macs_and_no_sysfs() {
        // meta_data MACs in upper case, network_data in lower case; no sysfs at all.
        let env = with_drive(
            FakeEnvironment::new(),
            &fixture("openstack-variants/meta_data_upper_mac.json"),
            &fixture("openstack/latest/network_data.json"),
        );
        let d = discover(&os_cfg(&["fronthaul"], true), &env).expect("discovers");
        assert_eq!(
            summary(&d),
            vec![("fronthaul0".into(), "fronthaul".into(), pci("0000:00:05.0"))]
        );
        assert_eq!(d.ports[0].mac.as_deref(), Some("fa:16:3e:11:22:02"));
        assert!(
            d.ports[0].source.contains("link tap5a0c1e2d-02 hw_veb"),
            "{}",
            d.ports[0].source
        );
        assert!(d.ports[0]
            .source
            .ends_with("PCI 0000:00:05.0 from the metadata hint (unchecked: no sysfs)"));
        assert!(
            d.warnings
                .iter()
                .any(|w| w.contains("using metadata hint 0000:00:05.0 unchecked")),
            "{:?}",
            d.warnings
        );
    }

    #[test]
    fn untagged_and_surplus_devices_are_warnings() {
        let env = with_drive(
            guest(),
            &fixture("openstack-variants/meta_data_untagged.json"),
            &fixture("openstack/latest/network_data.json"),
        );
        let d = discover(&os_cfg(&["midhaul"], true), &env).expect("discovers");
        assert_eq!(
            summary(&d),
            vec![
                ("midhaul0".into(), "midhaul".into(), pci("0000:00:06.0")),
                ("midhaul1".into(), "midhaul".into(), pci("0000:00:07.0")),
            ]
        );
        assert_eq!(
            d.warnings,
            vec![
                "openstack: config drive meta_data.json devices[0] (mac fa:16:3e:11:22:01) has no tags: ignored".to_string(),
                "openstack: config drive meta_data.json devices[1] (mac fa:16:3e:11:22:02) tagged FRONTHAUL matches no configured role: ignored".to_string(),
            ]
        );
    }

    #[test]
    fn role_without_tag_match() {
        let env = with_drive(
            guest(),
            &fixture("openstack-variants/meta_data_untagged.json"),
            &fixture("openstack/latest/network_data.json"),
        );
        let e = discover(&os_cfg(&["backhaul", "midhaul"], true), &env)
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "role `backhaul` (openstack): no NIC in /mnt/config/openstack/latest/meta_data.json is tagged backhaul (tags present: FRONTHAUL, MIDHAUL)"
        );
    }

    #[test]
    fn explicit_tag_is_case_insensitive() {
        let env = with_drive(
            guest(),
            &fixture("openstack/latest/meta_data.json"),
            &fixture("openstack/latest/network_data.json"),
        );
        let c = cfg(&format!(
            "[discovery.roles.fh]\nsource = \"openstack\"\ntag = \"Fronthaul\"\nconfig_drive = \"{DRIVE}\"\n"
        ));
        let d = discover(&c, &env).expect("discovers");
        assert_eq!(
            summary(&d),
            vec![("fh0".into(), "fh".into(), pci("0000:00:04.0"))]
        );
    }

    #[test]
    fn stale_hint_and_absent_hint() {
        // MIDHAUL's hint 0000:00:03.0 is the mgmt netdev: refuse rather than take the wrong NIC.
        let meta = r#"{"devices": [{"type": "nic", "bus": "pci", "address": "0000:00:03.0", "mac": "fa:16:3e:11:22:03", "tags": ["MIDHAUL"]}]}"#;
        let env = with_drive(
            guest(),
            meta,
            &fixture("openstack/latest/network_data.json"),
        );
        let e = discover(&os_cfg(&["midhaul"], true), &env)
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "role `midhaul` (openstack): config drive meta_data.json devices[0] (mac fa:16:3e:11:22:03): no netdev has this MAC, \
             and the metadata hint 0000:00:03.0 is netdev eth0 with MAC fa:16:3e:11:22:01: the hint is stale"
        );
        let meta = r#"{"devices": [{"type": "nic", "bus": "pci", "address": "0000:00:09.0", "mac": "fa:16:3e:11:22:03", "tags": ["MIDHAUL"]}]}"#;
        let env = with_drive(
            guest(),
            meta,
            &fixture("openstack/latest/network_data.json"),
        );
        let e = discover(&os_cfg(&["midhaul"], true), &env)
            .unwrap_err()
            .to_string();
        assert!(
            e.ends_with("no netdev has this MAC and the metadata hint 0000:00:09.0 is not in /sys/bus/pci/devices"),
            "{e}"
        );
    }

    #[test]
    fn malformed_and_missing_files() {
        let env = with_drive(
            guest(),
            "{\"devices\": [\n  {\"type\": \"nic\",,}\n]}",
            "{}",
        );
        let e = discover(&os_cfg(&["midhaul"], true), &env)
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("role `midhaul` (openstack): malformed JSON in file /mnt/config/openstack/latest/meta_data.json at line 2 column 18: "),
            "{e}"
        );
        let env = guest().with_dir(DRIVE);
        let e = discover(&os_cfg(&["midhaul"], true), &env)
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "role `midhaul` (openstack): cannot read /mnt/config/openstack/latest/meta_data.json: no such file (is this a config drive?)"
        );
        let e = discover(&os_cfg(&["midhaul"], true), &guest())
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "role `midhaul` (openstack): config drive directory /mnt/config does not exist"
        );
        // network_data.json missing: a warning, the join is skipped.
        let env = guest().with_file(
            format!("{DRIVE}/openstack/latest/meta_data.json"),
            &fixture("openstack/latest/meta_data.json"),
        );
        let d = discover(&os_cfg(&["midhaul"], true), &env).expect("discovers");
        assert_eq!(d.ports.len(), 2);
        assert!(
            d.warnings
                .iter()
                .any(|w| w.contains("network_data.json is missing")),
            "{:?}",
            d.warnings
        );
    }

    #[test]
    fn auto_detected_drive_is_mounted_and_unmounted() {
        let env = with_drive(
            guest()
                .with_link("/dev/disk/by-label/config-2", "/dev/sr0")
                .with_file("/proc/mounts", "proc /proc proc rw 0 0\n")
                .with_mountable("/dev/sr0", DRIVE),
            &fixture("openstack/latest/meta_data.json"),
            &fixture("openstack/latest/network_data.json"),
        );
        let d = discover(&os_cfg(&["fronthaul", "midhaul"], false), &env).expect("discovers");
        assert_eq!(d.ports.len(), 3);
        assert_eq!(
            env.mounted(),
            vec![std::path::PathBuf::from("/dev/sr0")],
            "mounted once for both roles"
        );
        assert_eq!(env.unmounted(), vec![std::path::PathBuf::from(DRIVE)]);
    }

    #[test]
    fn auto_detected_drive_already_mounted() {
        let env = FakeEnvironment::new()
            .with_link("/dev/disk/by-label/config-2", "/dev/sr0")
            .with_file(
                "/proc/mounts",
                "/dev/sr0 /media/config\\0402 iso9660 ro 0 0\n",
            )
            .with_file(
                "/media/config 2/openstack/latest/meta_data.json",
                &fixture("openstack/latest/meta_data.json"),
            )
            .with_file(
                "/media/config 2/openstack/latest/network_data.json",
                &fixture("openstack/latest/network_data.json"),
            );
        let d = discover(&os_cfg(&["fronthaul"], false), &env).expect("discovers");
        assert_eq!(
            summary(&d),
            vec![("fronthaul0".into(), "fronthaul".into(), pci("0000:00:05.0"))]
        );
        assert!(env.mounted().is_empty());
    }

    #[test]
    fn no_config_drive_or_mount_failure() {
        let e = discover(&os_cfg(&["fronthaul"], false), &FakeEnvironment::new())
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "role `fronthaul` (openstack): no config drive: /dev/disk/by-label/config-2 does not exist and no config_drive directory is configured"
        );
        let env = FakeEnvironment::new().with_link("/dev/disk/by-label/config-2", "/dev/sr0");
        let e = discover(&os_cfg(&["fronthaul"], false), &env)
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "role `fronthaul` (openstack): config drive /dev/disk/by-label/config-2 (/dev/sr0) could not be mounted: mount -o ro /dev/sr0: fake mount refused"
        );
    }

    #[test]
    fn device_matching_two_roles_is_an_error() {
        let meta = r#"{"devices": [{"type": "nic", "bus": "pci", "address": "0000:00:06.0", "mac": "fa:16:3e:11:22:03", "tags": ["A", "B"]}]}"#;
        let env = with_drive(guest(), meta, "{}");
        let e = discover(&os_cfg(&["a", "b"], true), &env)
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "role `a` (openstack): config drive meta_data.json devices[0] (mac fa:16:3e:11:22:03): tagged A,B it matches roles `a` and `b`"
        );
    }
}
