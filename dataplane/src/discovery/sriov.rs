//! SR-IOV network device plugin: `PCIDEVICE_<PREFIX>_<RESOURCE>` = PCI addresses joined by
//! `,`. The `..._INFO` variable (JSON keyed by PCI address) only adds facts to `source`.

use super::addr::normalize_pci_address;
use super::{Ctx, DiscoveryError, Found};
use crate::device::Device;

const ORIGIN: &str = "sriov";

/// The variable the device plugin sets for a resource: `intel.com/fronthaul` ->
/// `PCIDEVICE_INTEL_COM_FRONTHAUL` (`.` and `/` become `_`, upper case).
pub fn resource_env_var(resource: &str) -> String {
    let mut s = String::from("PCIDEVICE_");
    s.extend(resource.trim().chars().map(|c| match c {
        '.' | '/' => '_',
        c => c.to_ascii_uppercase(),
    }));
    s
}

/// Parse the value of a `PCIDEVICE_*` variable: PCI addresses joined by `,` (spaces
/// around them allowed), each in `DDDD:BB:DD.F` form, none twice. Returns them lower case.
pub fn parse_pci_list(value: &str) -> Result<Vec<String>, String> {
    if value.trim().is_empty() {
        return Err("the variable is empty".into());
    }
    let mut out: Vec<String> = Vec::new();
    for (i, item) in value.split(',').enumerate() {
        let item = item.trim();
        if item.is_empty() {
            return Err(format!("entry {i} is empty (stray `,`)"));
        }
        let a = normalize_pci_address(item).map_err(|e| format!("entry {i}: {e}"))?;
        if out.contains(&a) {
            return Err(format!("PCI address {a} is listed twice"));
        }
        out.push(a);
    }
    Ok(out)
}

/// Facts about `address` from a `PCIDEVICE_*_INFO` value, e.g. `vfio /dev/vfio/112`.
fn info_facts(info: &serde_json::Value, address: &str) -> Option<String> {
    let entry = info
        .as_object()?
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(address))?
        .1;
    let mut facts = Vec::new();
    if let Some(m) = entry.pointer("/vfio/dev-mount").and_then(|v| v.as_str()) {
        facts.push(format!("vfio {m}"));
    }
    if let Some(d) = entry.pointer("/vdpa/path").and_then(|v| v.as_str()) {
        facts.push(format!("vdpa {d}"));
    }
    (!facts.is_empty()).then(|| facts.join(", "))
}

pub(crate) fn resolve(
    ctx: &mut Ctx<'_>,
    role: &str,
    resource: Option<&str>,
    var: Option<&str>,
) -> Result<Vec<Found>, DiscoveryError> {
    let candidates: Vec<String> = match (var, resource) {
        (Some(v), _) => vec![v.to_string()],
        (None, Some(r)) => {
            let primary = resource_env_var(r);
            let alt = primary.replace('-', "_");
            if alt == primary {
                vec![primary]
            } else {
                vec![primary, alt]
            }
        }
        (None, None) => Vec::new(),
    };
    let Some((name, value)) = candidates
        .iter()
        .find_map(|n| ctx.env.var(n).map(|v| (n.clone(), v)))
    else {
        let var = candidates.first().cloned().unwrap_or_default();
        let mut present: Vec<String> = ctx
            .env
            .var_names()
            .into_iter()
            .filter(|n| n.starts_with("PCIDEVICE_") && !n.ends_with("_INFO"))
            .collect();
        present.sort();
        let from = resource
            .map(|r| format!(" (resource {r})"))
            .unwrap_or_default();
        let hint = if present.is_empty() {
            format!("{from}; no PCIDEVICE_* variables are set: does the pod request the resource?")
        } else {
            format!("{from}; set: {}", present.join(", "))
        };
        return Err(DiscoveryError::MissingVariable {
            role: role.to_string(),
            var,
            hint,
        });
    };
    let addresses = parse_pci_list(&value).map_err(|reason| DiscoveryError::Invalid {
        role: role.to_string(),
        origin: ORIGIN.into(),
        location: format!("env {name}=`{value}`"),
        reason,
    })?;
    let info_var = format!("{name}_INFO");
    let info = match ctx.env.var(&info_var) {
        None => None,
        Some(text) => match serde_json::from_str::<serde_json::Value>(&text) {
            Ok(v) => Some(v),
            Err(e) => {
                ctx.warnings.push(format!(
                    "role `{role}` (sriov): ignoring env {info_var}: not JSON ({e})"
                ));
                None
            }
        },
    };
    Ok(addresses
        .into_iter()
        .map(|address| {
            let facts = info.as_ref().and_then(|i| info_facts(i, &address));
            Found {
                source: match facts {
                    Some(f) => format!("env {name} ({f})"),
                    None => format!("env {name}"),
                },
                device: Device::Pci { address },
                mac: None,
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::super::tests::{cfg, fixture, pci, summary};
    use super::super::*;
    use super::*;

    fn roles_cfg() -> DiscoveryConfig {
        cfg(r#"
            [discovery]
            wait_seconds = 0
            [discovery.roles.fronthaul]
            source = "sriov"
            resource = "intel.com/fronthaul"
            [discovery.roles.midhaul]
            source = "sriov"
            resource = "intel.com/midhaul"
        "#)
    }

    #[test]
    fn env_var_names() {
        assert_eq!(
            resource_env_var("intel.com/fronthaul"),
            "PCIDEVICE_INTEL_COM_FRONTHAUL"
        );
        assert_eq!(
            resource_env_var("openshift.io/mlx_fh"),
            "PCIDEVICE_OPENSHIFT_IO_MLX_FH"
        );
    }

    #[test]
    fn reference_env_gives_three_ports() {
        let env = FakeEnvironment::new().with_env_file(&fixture("sriov-device-plugin.env"));
        let d = discover(&roles_cfg(), &env).expect("discovers");
        assert_eq!(
            summary(&d),
            vec![
                ("fronthaul0".into(), "fronthaul".into(), pci("0000:3b:02.1")),
                ("midhaul0".into(), "midhaul".into(), pci("0000:3b:0a.2")),
                ("midhaul1".into(), "midhaul".into(), pci("0000:3b:0a.5")),
            ]
        );
        let sources: Vec<&str> = d.ports.iter().map(|p| p.source.as_str()).collect();
        assert_eq!(
            sources,
            vec![
                "env PCIDEVICE_INTEL_COM_FRONTHAUL (vfio /dev/vfio/112)",
                "env PCIDEVICE_INTEL_COM_MIDHAUL (vfio /dev/vfio/121)",
                "env PCIDEVICE_INTEL_COM_MIDHAUL (vfio /dev/vfio/124)",
            ]
        );
        assert!(d.ports.iter().all(|p| p.mac.is_none()));
        assert!(d.warnings.is_empty());
    }

    #[test]
    fn several_addresses_spaces_and_case() {
        let env = FakeEnvironment::new().with_env_file(&fixture("sriov-several.env"));
        let c =
            cfg("[discovery.roles.fh]\nsource = \"sriov\"\nresource = \"intel.com/fronthaul\"\n");
        let d = discover(&c, &env).expect("discovers");
        assert_eq!(
            summary(&d),
            vec![
                ("fh0".into(), "fh".into(), pci("0000:3b:02.1")),
                ("fh1".into(), "fh".into(), pci("0000:3b:02.2")),
                ("fh2".into(), "fh".into(), pci("0000:af:1f.7")),
                ("fh3".into(), "fh".into(), pci("0001:00:00.0")),
            ]
        );
        // The _INFO variable there is not JSON: a warning, not an error.
        assert_eq!(d.warnings.len(), 1);
        assert!(d.warnings[0].starts_with(
            "role `fh` (sriov): ignoring env PCIDEVICE_INTEL_COM_FRONTHAUL_INFO: not JSON"
        ));
    }

    #[test]
    fn missing_variable_names_it_and_lists_what_is_set() {
        let env = FakeEnvironment::new().with_var("PCIDEVICE_INTEL_COM_MIDHAUL", "0000:3b:0a.2");
        let e = discover(&roles_cfg(), &env).unwrap_err().to_string();
        assert_eq!(
            e,
            "role `fronthaul` (sriov): environment variable PCIDEVICE_INTEL_COM_FRONTHAUL is not set \
             (resource intel.com/fronthaul); set: PCIDEVICE_INTEL_COM_MIDHAUL"
        );
        let e = discover(&roles_cfg(), &FakeEnvironment::new())
            .unwrap_err()
            .to_string();
        assert!(
            e.ends_with("no PCIDEVICE_* variables are set: does the pod request the resource?"),
            "{e}"
        );
    }

    #[test]
    fn explicit_variable_and_hyphenated_resource() {
        let env = FakeEnvironment::new()
            .with_var("MY_VFS", "0000:3b:02.3")
            .with_var("PCIDEVICE_EXAMPLE_COM_FRONT_HAUL", "0000:3b:02.4");
        let c = cfg(r#"
            [discovery.roles.a]
            source = "sriov"
            env = "MY_VFS"
            [discovery.roles.b]
            source = "sriov"
            resource = "example.com/front-haul"
        "#);
        let d = discover(&c, &env).expect("discovers");
        assert_eq!(
            summary(&d),
            vec![
                ("a0".into(), "a".into(), pci("0000:3b:02.3")),
                ("b0".into(), "b".into(), pci("0000:3b:02.4"))
            ]
        );
        assert_eq!(d.ports[1].source, "env PCIDEVICE_EXAMPLE_COM_FRONT_HAUL");
    }

    #[test]
    fn bad_values() {
        for (value, key) in [
            ("", "the variable is empty"),
            ("0000:3b:02.1,", "entry 1 is empty"),
            ("3b:02.1", "entry 0: `3b:02.1` is not a PCI address"),
            (
                "0000:3b:02.1,0000:3B:02.1",
                "PCI address 0000:3b:02.1 is listed twice",
            ),
            ("0000:3b:02.9", "function must be one digit 0-7"),
        ] {
            let env = FakeEnvironment::new().with_var("PCIDEVICE_INTEL_COM_FRONTHAUL", value);
            let c = cfg("[discovery.roles.fronthaul]\nsource = \"sriov\"\nresource = \"intel.com/fronthaul\"\n");
            let e = discover(&c, &env).unwrap_err().to_string();
            assert!(
                e.starts_with(&format!(
                    "role `fronthaul` (sriov): env PCIDEVICE_INTEL_COM_FRONTHAUL=`{value}`: "
                )),
                "{e}"
            );
            assert!(e.contains(key), "{value}: {e}");
        }
    }
}
