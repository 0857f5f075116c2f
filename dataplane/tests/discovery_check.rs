//! `dataplane check` resolves ports from what the platform hands the pod or VM, using the
//! example configs in config/ and the reference inputs; or refuses clearly (exit 2).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo(p: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(p)
}

fn fixture(p: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/discovery")
        .join(p)
}

fn check(config: &Path, env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_dataplane"));
    c.args(["check", "--config"]).arg(config);
    c.env_remove("PCIDEVICE_INTEL_COM_FRONTHAUL")
        .env_remove("PCIDEVICE_INTEL_COM_MIDHAUL");
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().unwrap()
}

/// The variables of an env file (KEY=VALUE lines, # comments).
fn env_file(p: &Path) -> Vec<(String, String)> {
    std::fs::read_to_string(p)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with('#') && l.contains('='))
        .map(|l| {
            let (k, v) = l.split_once('=').unwrap();
            (k.to_string(), v.to_string())
        })
        .collect()
}

#[test]
fn sriov_variables_become_ports_of_their_roles() {
    let vars = env_file(&fixture("sriov-device-plugin.env"));
    let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let out = check(&repo("config/pod-sriov.toml"), &vars);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("-a 0000:3b:02.1"), "{text}");
    assert!(
        text.contains("-a 0000:3b:0a.2") && text.contains("-a 0000:3b:0a.5"),
        "{text}"
    );
    let line = |name: &str| {
        text.lines()
            .find(|l| l.contains(&format!("] {name} ")))
            .unwrap_or_else(|| panic!("{name} in {text}"))
            .to_string()
    };
    assert!(
        line("fronthaul0").contains("pci 0000:3b:02.1")
            && line("fronthaul0").contains("PCIDEVICE_INTEL_COM_FRONTHAUL")
    );
    assert!(line("midhaul1").contains("pci 0000:3b:0a.5"));
    assert!(
        !text.contains("--no-pci"),
        "PCI ports need the PCI bus scanned: {text}"
    );
    assert!(
        text.contains("midhaul1 is in no cross-connect pair"),
        "{text}"
    );
}

#[test]
fn a_missing_sriov_variable_is_refused_with_its_name() {
    let out = check(
        &repo("config/pod-sriov.toml"),
        &[("PCIDEVICE_INTEL_COM_FRONTHAUL", "0000:3b:02.1")],
    );
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("pod-sriov.toml: discovery:") && err.contains("PCIDEVICE_INTEL_COM_MIDHAUL"),
        "{err}"
    );
}

#[test]
fn a_malformed_pci_list_is_refused() {
    let out = check(
        &repo("config/pod-sriov.toml"),
        &[
            ("PCIDEVICE_INTEL_COM_FRONTHAUL", "0000:3b:02.1"),
            ("PCIDEVICE_INTEL_COM_MIDHAUL", "3b:0a.2,zz"),
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("3b:0a.2"));
}

fn with_config_dir(name: &str, text: &str) -> (PathBuf, PathBuf) {
    let dir = std::env::temp_dir().join(format!("dp-disc-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("dp.toml");
    std::fs::write(&cfg, text).unwrap();
    (dir, cfg)
}

#[test]
fn config_drive_devices_must_exist_on_this_machine() {
    // The reference drive describes a VM's NICs; on this host none of its PCI addresses or
    // MACs exist, so discovery refuses with the device, the MAC and the hint it tried
    // (the positive path runs in the discovery module's tests on a simulated sysfs, and in
    // the VM test).
    let drive = fixture("");
    let text = std::fs::read_to_string(repo("config/vm-openstack.toml")).unwrap();
    let text = text
        .replace(
            "tag = \"FRONTHAUL\"",
            &format!(
                "tag = \"FRONTHAUL\"\nconfig_drive = \"{}\"",
                drive.display()
            ),
        )
        .replace(
            "tag = \"MIDHAUL\"",
            &format!("tag = \"MIDHAUL\"\nconfig_drive = \"{}\"", drive.display()),
        );
    let (dir, cfg) = with_config_dir("os", &text);
    let out = check(&cfg, &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("(openstack): config drive meta_data.json devices["),
        "{err}"
    );
    assert!(
        err.contains("no netdev has this MAC") && err.contains("is not in /sys/bus/pci/devices"),
        "{err}"
    );
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn multus_network_status_yields_pci_and_vhost_user_ports() {
    let ann = fixture("podnetinfo-annotations");
    let text = std::fs::read_to_string(repo("config/pod-multus.toml"))
        .unwrap()
        .replace("/etc/podnetinfo/annotations", &ann.display().to_string())
        .replace("wait_seconds = 30", "wait_seconds = 0");
    let (dir, cfg) = with_config_dir("multus", &text);
    let out = check(&cfg, &[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("-a 0000:3b:02.1"), "{stdout}");
    assert!(stdout.contains("multus"), "{stdout}");
    std::fs::remove_dir_all(dir).ok();

    let bad = fixture("podnetinfo-annotations-malformed");
    let (dir, cfg) = with_config_dir(
        "multus-bad",
        &text.replace(&ann.display().to_string(), &bad.display().to_string()),
    );
    let out = check(&cfg, &[]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("podnetinfo-annotations-malformed"));
    std::fs::remove_dir_all(dir).ok();
}
