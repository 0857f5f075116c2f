//! The Kubernetes manifests in config/kubernetes/ are valid and agree with each other and
//! with the dataplane:
//! - core kinds (Pod, DaemonSet, ConfigMap) pass PyPI `kubernetes-validate --strict` (offline:
//!   it ships the schemas); the CRD NetworkAttachmentDefinition gets a structural check here;
//! - the pods' Multus networks exist, their SR-IOV resources are offered by the device
//!   plugin ConfigMap and requested per role, QoS is Guaranteed with integer CPUs, huge pages
//!   come with a HugePages emptyDir, the Downward API annotations are at /etc/podnetinfo;
//! - the dataplane ConfigMap is config/pod-sriov.toml verbatim, and it plans on a pod like
//!   the manifest describes (device plugin env, the emptyDir's hugetlbfs, the pod's CPUs).
//!
//! Needs `python3 -m pip install kubernetes-validate` (scripts/setup does it): without it this
//! test fails and says so.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use dataplane::config::ConfigFile;
use dataplane::discovery::{self, FakeEnvironment};
use dataplane::plan::{self, Host};
use serde_json::Value;

/// The Kubernetes version the schemas are taken from.
const K8S_VERSION: &str = "1.30.0";
const INSTALL: &str = "python3 -m pip install kubernetes-validate   (scripts/setup installs it)";

fn manifests_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/kubernetes")
}

fn manifest_files() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(manifests_dir())
        .expect("config/kubernetes exists")
        .map(|e| e.unwrap().path())
        .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")))
        .collect();
    v.sort();
    v
}

fn require_validator() {
    let ok = Command::new("python3")
        .args(["-c", "import kubernetes_validate, yaml"])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(ok, "the Kubernetes schema validator is missing: {INSTALL}");
}

/// Runs kubernetes-validate over `files`: (exit code, output lines).
fn validate(files: &[PathBuf]) -> (i32, Vec<String>) {
    let out = Command::new("python3")
        .args(["-m", "kubernetes_validate", "--strict", "-k", K8S_VERSION])
        .args(files)
        .output()
        .expect("runs python3");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (
        out.status.code().unwrap_or(-1),
        text.lines().map(str::to_owned).collect(),
    )
}

/// The YAML documents of a file, as JSON values (PyYAML, which the validator brings).
fn documents(file: &Path) -> Vec<Value> {
    let out = Command::new("python3")
        .args(["-c", "import json, sys, yaml; json.dump([d for d in yaml.safe_load_all(open(sys.argv[1])) if d is not None], sys.stdout)"])
        .arg(file)
        .output()
        .expect("runs python3");
    assert!(
        out.status.success(),
        "{}: {}",
        file.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice::<Vec<Value>>(&out.stdout).expect("json")
}

fn is_dns1123_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// Structural check of a NetworkAttachmentDefinition (the CRD's schema: apiVersion, kind,
/// metadata, spec.config a string) and of its CNI config. Returns its problems.
fn nad_problems(d: &Value) -> Vec<String> {
    let mut p = Vec::new();
    let name = d["metadata"]["name"].as_str().unwrap_or("");
    if d["apiVersion"] != "k8s.cni.cncf.io/v1" {
        p.push(format!(
            "apiVersion {} (want k8s.cni.cncf.io/v1)",
            d["apiVersion"]
        ));
    }
    if !is_dns1123_label(name) {
        p.push(format!("metadata.name {name:?} is not a DNS-1123 label"));
    }
    for k in d
        .as_object()
        .map(|o| o.keys().cloned().collect::<Vec<_>>())
        .unwrap_or_default()
    {
        if !["apiVersion", "kind", "metadata", "spec"].contains(&k.as_str()) {
            p.push(format!("unknown field {k}"));
        }
    }
    let spec = d["spec"].as_object().cloned().unwrap_or_default();
    if spec.keys().any(|k| k != "config") {
        p.push(format!(
            "spec has fields besides config: {:?}",
            spec.keys().collect::<Vec<_>>()
        ));
    }
    let Some(config) = d["spec"]["config"].as_str() else {
        p.push("spec.config must be a string (the CNI config JSON)".into());
        return p;
    };
    let cni: Value = match serde_json::from_str(config) {
        Ok(v) => v,
        Err(e) => {
            p.push(format!("spec.config is not JSON: {e}"));
            return p;
        }
    };
    if !cni["cniVersion"].is_string() {
        p.push("CNI config has no cniVersion".into());
    }
    if cni["name"] != name {
        p.push(format!(
            "CNI config name {} differs from metadata.name {name}",
            cni["name"]
        ));
    }
    match cni["type"].as_str() {
        Some("sriov") => {
            if !d["metadata"]["annotations"]["k8s.v1.cni.cncf.io/resourceName"]
                .as_str()
                .is_some_and(|r| r.contains('/'))
            {
                p.push("sriov network without a k8s.v1.cni.cncf.io/resourceName annotation (prefix/name)".into());
            }
        }
        Some("userspace") => {
            for side in ["host", "container"] {
                if cni[side]["iftype"] != "vhostuser" && cni[side]["iftype"] != "memif" {
                    p.push(format!(
                        "userspace {side}.iftype must be vhostuser or memif"
                    ));
                }
            }
            let modes = (
                cni["host"]["vhost"]["mode"].as_str(),
                cni["container"]["vhost"]["mode"].as_str(),
            );
            if cni["container"]["iftype"] == "vhostuser"
                && !matches!(
                    modes,
                    (Some("client"), Some("server")) | (Some("server"), Some("client"))
                )
            {
                p.push(format!("vhost-user modes host/container must be client/server or server/client, not {modes:?}"));
            }
        }
        other => p.push(format!("CNI type {other:?}: expected sriov or userspace")),
    }
    p
}

/// Every manifest document, by file.
fn all_documents() -> Vec<(PathBuf, Value)> {
    manifest_files()
        .into_iter()
        .flat_map(|f| documents(&f).into_iter().map(move |d| (f.clone(), d)))
        .collect()
}

fn pod_specs(docs: &[(PathBuf, Value)]) -> Vec<(String, Value, Value)> {
    // (what, pod metadata, pod spec) for Pods and workload templates.
    docs.iter()
        .filter_map(|(f, d)| {
            let what = format!(
                "{}: {}/{}",
                f.file_name().unwrap().to_string_lossy(),
                d["kind"].as_str()?,
                d["metadata"]["name"].as_str()?
            );
            match d["kind"].as_str()? {
                "Pod" => Some((what, d["metadata"].clone(), d["spec"].clone())),
                "DaemonSet" | "Deployment" | "StatefulSet" => Some((
                    what,
                    d["spec"]["template"]["metadata"].clone(),
                    d["spec"]["template"]["spec"].clone(),
                )),
                _ => None,
            }
        })
        .collect()
}

/// Kubernetes quantity as an exact integer number of units (`4`, `1Gi`, `512Mi`); `None` for
/// fractions (`500m`, `1.5`).
fn quantity_int(q: &Value) -> Option<u128> {
    let s = match q {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => return None,
    };
    let digits = s.bytes().take_while(u8::is_ascii_digit).count();
    let (n, unit) = s.split_at(digits);
    let n: u128 = n.parse().ok()?;
    let mult: u128 = match unit {
        "" => 1,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        "k" => 1000,
        "M" => 1_000_000,
        "G" => 1_000_000_000,
        _ => return None,
    };
    Some(n * mult)
}

#[test]
fn core_kinds_pass_the_kubernetes_schemas_and_crds_the_structural_check() {
    require_validator();
    let files = manifest_files();
    assert!(files.len() >= 5, "manifests: {files:?}");
    let (code, lines) = validate(&files);
    let errors: Vec<&String> = lines.iter().filter(|l| l.starts_with("ERROR")).collect();
    assert!(
        errors.is_empty() && code == 0,
        "kubernetes-validate (exit {code}):\n{}",
        lines.join("\n")
    );
    let passed = lines
        .iter()
        .filter(|l| l.starts_with("INFO") && l.contains(" passed for resource "))
        .count();
    let docs = all_documents();
    let core = docs
        .iter()
        .filter(|(_, d)| d["kind"] != "NetworkAttachmentDefinition")
        .count();
    assert_eq!(
        passed,
        core,
        "every core-kind document must be validated against a schema:\n{}",
        lines.join("\n")
    );
    // The only kind without a schema is the CRD, checked structurally.
    for l in lines.iter().filter(|l| l.starts_with("WARN")) {
        assert!(l.contains("Couldn't find schema for kind NetworkAttachmentDefinition with api version k8s.cni.cncf.io/v1"), "{l}");
    }
    let nads: Vec<&Value> = docs
        .iter()
        .map(|(_, d)| d)
        .filter(|d| d["kind"] == "NetworkAttachmentDefinition")
        .collect();
    let names: BTreeSet<&str> = nads
        .iter()
        .filter_map(|d| d["metadata"]["name"].as_str())
        .collect();
    assert_eq!(
        names,
        BTreeSet::from(["fronthaul-net", "midhaul-net", "vhostuser-net"])
    );
    for d in &nads {
        let p = nad_problems(d);
        assert!(p.is_empty(), "{}: {p:?}", d["metadata"]["name"]);
    }
    let kinds: BTreeSet<&str> = docs
        .iter()
        .filter_map(|(_, d)| d["kind"].as_str())
        .collect();
    assert_eq!(
        kinds,
        BTreeSet::from([
            "ConfigMap",
            "DaemonSet",
            "NetworkAttachmentDefinition",
            "Pod"
        ])
    );
}

#[test]
fn the_checks_catch_broken_manifests() {
    require_validator();
    let dir = std::env::temp_dir().join(format!("manifests-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let pod = std::fs::read_to_string(manifests_dir().join("pod-vfio.yaml")).unwrap();
    // An unknown field, and a misspelt kind the schemas do not know.
    let broken = dir.join("broken.yaml");
    std::fs::write(
        &broken,
        pod.replace(
            "imagePullPolicy: IfNotPresent",
            "imagePullPolicy: IfNotPresent\n      hugepages: true",
        ),
    )
    .unwrap();
    let (code, lines) = validate(std::slice::from_ref(&broken));
    assert_ne!(code, 0);
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("ERROR") && l.contains("'hugepages' was unexpected")),
        "{lines:?}"
    );
    std::fs::write(
        &broken,
        pod.replace(
            "terminationGracePeriodSeconds: 10",
            "terminationGracePeriodSeconds: ten",
        ),
    )
    .unwrap();
    let (code, lines) = validate(std::slice::from_ref(&broken));
    assert_ne!(code, 0);
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("ERROR") && l.contains("'ten' is not of type 'integer'")),
        "{lines:?}"
    );
    std::fs::write(&broken, pod.replace("kind: Pod", "kind: Podd")).unwrap();
    let (_, lines) = validate(std::slice::from_ref(&broken));
    assert!(
        !lines.iter().any(|l| l.contains(" passed for resource ")),
        "an unknown kind is not validated: {lines:?}"
    );
    std::fs::remove_dir_all(&dir).ok();

    let docs = all_documents();
    let nad = docs
        .iter()
        .map(|(_, d)| d)
        .find(|d| d["metadata"]["name"] == "fronthaul-net")
        .unwrap()
        .clone();
    let mut bad = nad.clone();
    bad["spec"]["config"] = Value::String("{\"cniVersion\": \"0.3.1\", \"type\": \"sriov\"".into());
    assert!(nad_problems(&bad)[0].starts_with("spec.config is not JSON"));
    let mut bad = nad.clone();
    bad["metadata"]["annotations"] = serde_json::json!({});
    assert_eq!(
        nad_problems(&bad),
        vec!["sriov network without a k8s.v1.cni.cncf.io/resourceName annotation (prefix/name)"]
    );
    let mut bad = nad.clone();
    bad["metadata"]["name"] = Value::String("Fronthaul_Net".into());
    assert_eq!(
        nad_problems(&bad).len(),
        2,
        "bad name, and the CNI name differs"
    );
    assert_eq!(quantity_int(&Value::String("500m".into())), None);
    assert_eq!(quantity_int(&Value::String("1Gi".into())), Some(1 << 30));
}

#[test]
fn pods_are_guaranteed_and_get_their_networks_resources_and_hugepages() {
    require_validator();
    let docs = all_documents();
    let nads: BTreeMap<String, Value> = docs
        .iter()
        .filter(|(_, d)| d["kind"] == "NetworkAttachmentDefinition")
        .map(|(_, d)| {
            (
                d["metadata"]["name"].as_str().unwrap().to_owned(),
                d.clone(),
            )
        })
        .collect();
    // What the SR-IOV device plugin offers.
    let dp = docs
        .iter()
        .map(|(_, d)| d)
        .find(|d| d["kind"] == "ConfigMap" && d["metadata"]["name"] == "sriovdp-config")
        .expect("device plugin ConfigMap");
    assert_eq!(dp["metadata"]["namespace"], "kube-system");
    let dp_cfg: Value = serde_json::from_str(dp["data"]["config.json"].as_str().unwrap())
        .expect("config.json is JSON");
    let offered: BTreeSet<String> = dp_cfg["resourceList"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            format!(
                "{}/{}",
                r["resourcePrefix"].as_str().unwrap_or("intel.com"),
                r["resourceName"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        offered,
        BTreeSet::from([
            "intel.com/fronthaul".to_string(),
            "intel.com/midhaul".to_string()
        ])
    );
    for r in dp_cfg["resourceList"].as_array().unwrap() {
        assert_eq!(
            r["selectors"]["drivers"],
            serde_json::json!(["vfio-pci"]),
            "DPDK drives the VFs: vfio-pci"
        );
    }
    let config_maps: BTreeMap<String, Value> = docs
        .iter()
        .filter(|(_, d)| d["kind"] == "ConfigMap")
        .map(|(_, d)| {
            (
                d["metadata"]["name"].as_str().unwrap().to_owned(),
                d.clone(),
            )
        })
        .collect();

    let pods = pod_specs(&docs);
    assert_eq!(pods.len(), 3, "privileged pod, vfio pod, DaemonSet");
    let mut unprivileged = 0;
    for (what, meta, spec) in &pods {
        // Multus networks: JSON list of existing NADs.
        let nets: Value = serde_json::from_str(
            meta["annotations"]["k8s.v1.cni.cncf.io/networks"]
                .as_str()
                .unwrap_or_else(|| panic!("{what}: no networks annotation")),
        )
        .unwrap_or_else(|e| panic!("{what}: networks annotation: {e}"));
        let net_names: Vec<&str> = nets
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["name"].as_str().unwrap())
            .collect();
        assert_eq!(net_names, ["fronthaul-net", "midhaul-net"], "{what}");
        let c = &spec["containers"][0];
        let req = &c["resources"]["requests"];
        let lim = &c["resources"]["limits"];
        // One VF of each role's resource, as the NAD's resourceName says, offered by the plugin.
        for n in &net_names {
            let nad = nads.get(*n).unwrap_or_else(|| {
                panic!("{what}: network {n} has no NetworkAttachmentDefinition")
            });
            let res = nad["metadata"]["annotations"]["k8s.v1.cni.cncf.io/resourceName"]
                .as_str()
                .unwrap();
            assert!(
                offered.contains(res),
                "{what}: {res} not offered by the device plugin"
            );
            assert_eq!(req[res], "1", "{what}: requests {res}");
        }
        // Guaranteed QoS: every container's requests == limits, integer CPUs, memory set.
        for c in spec["containers"].as_array().unwrap() {
            assert_eq!(
                c["resources"]["requests"], c["resources"]["limits"],
                "{what}: requests must equal limits"
            );
        }
        let cpus = quantity_int(&req["cpu"]).unwrap_or_else(|| {
            panic!(
                "{what}: cpu {} is not an integer (exclusive cores)",
                req["cpu"]
            )
        });
        assert!(cpus >= 2, "{what}: a main and at least one worker core");
        assert!(quantity_int(&req["memory"]).is_some(), "{what}: memory");
        // Huge pages: a hugepages-<size> resource and a HugePages emptyDir mounted.
        let huge: Vec<(&String, &Value)> = lim
            .as_object()
            .unwrap()
            .iter()
            .filter(|(k, _)| k.starts_with("hugepages-"))
            .collect();
        assert_eq!(huge.len(), 1, "{what}: one huge page size");
        let vols = spec["volumes"].as_array().unwrap();
        let vol = |pred: &dyn Fn(&Value) -> bool| {
            vols.iter()
                .find(|v| pred(v))
                .map(|v| v["name"].as_str().unwrap().to_owned())
        };
        let mount_of = |name: &str| {
            c["volumeMounts"]
                .as_array()
                .unwrap()
                .iter()
                .find(|m| m["name"] == name)
                .map(|m| m["mountPath"].as_str().unwrap().to_owned())
        };
        let hp = vol(&|v| {
            v["emptyDir"]["medium"]
                .as_str()
                .is_some_and(|m| m.starts_with("HugePages"))
        })
        .unwrap_or_else(|| panic!("{what}: no HugePages emptyDir"));
        let hp_path =
            mount_of(&hp).unwrap_or_else(|| panic!("{what}: HugePages emptyDir not mounted"));
        // Downward API annotations where discovery looks by default.
        let dw = vol(&|v| {
            v["downwardAPI"]["items"].as_array().is_some_and(|i| {
                i.iter().any(|i| {
                    i["path"] == "annotations"
                        && i["fieldRef"]["fieldPath"] == "metadata.annotations"
                })
            })
        })
        .unwrap_or_else(|| panic!("{what}: no Downward API annotations volume"));
        assert_eq!(
            format!("{}/annotations", mount_of(&dw).unwrap()),
            discovery::DEFAULT_ANNOTATIONS,
            "{what}"
        );
        // The dataplane config from the ConfigMap, named by DATAPLANE_CONFIG.
        let cfg_vol = vols
            .iter()
            .find(|v| v["configMap"]["name"].is_string())
            .unwrap_or_else(|| panic!("{what}: no config volume"));
        let cm = &config_maps[cfg_vol["configMap"]["name"].as_str().unwrap()];
        let env_cfg = c["env"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == "DATAPLANE_CONFIG")
            .unwrap()["value"]
            .as_str()
            .unwrap()
            .to_owned();
        let key = env_cfg
            .strip_prefix(&format!(
                "{}/",
                mount_of(cfg_vol["name"].as_str().unwrap()).unwrap()
            ))
            .unwrap_or_else(|| panic!("{what}: {env_cfg} is not in the config volume"));
        let toml = cm["data"][key]
            .as_str()
            .unwrap_or_else(|| panic!("{what}: ConfigMap has no key {key}"));

        // That config plans on a pod like this one: the device plugin's env for the requested
        // VFs, the emptyDir's hugetlbfs with the pod's hugetlb limit, the pod's CPUs.
        let (size_name, limit) = (
            huge[0].0.trim_start_matches("hugepages-"),
            quantity_int(huge[0].1).unwrap() as u64,
        );
        let page: u64 = match size_name {
            "2Mi" => 2 << 20,
            "1Gi" => 1 << 30,
            s => panic!("{what}: huge page size {s}"),
        };
        let cg_name = if page == 1 << 30 { "1GB" } else { "2MB" };
        let env = FakeEnvironment::new()
            .with_var("PCIDEVICE_INTEL_COM_FRONTHAUL", "0000:3b:02.1")
            .with_var("PCIDEVICE_INTEL_COM_MIDHAUL", "0000:3b:0a.2")
            .with_file("/proc/mounts", &format!("overlay / overlay rw 0 0\nnodev {hp_path} hugetlbfs rw,relatime,pagesize={}M 0 0\n", page >> 20))
            .with_file(format!("/sys/kernel/mm/hugepages/hugepages-{}kB/free_hugepages", page >> 10), "4096\n")
            .with_file(format!("/sys/fs/cgroup/hugetlb.{cg_name}.max"), &format!("{limit}\n"))
            .with_file(format!("/sys/fs/cgroup/hugetlb.{cg_name}.current"), "0\n");
        let file = Path::new("pod.toml");
        let cfg = ConfigFile::parse(toml, file).unwrap_or_else(|e| panic!("{what}: {e}"));
        let found = discovery::discover(cfg.discovery.as_ref().expect("[discovery]"), &env)
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        let cpus: Vec<u32> = (2..2 + cpus as u32).collect();
        let host = Host {
            discovered: found.ports,
            hugepages: Some(dataplane::hugepage_plan::probe(&env)),
            ..Host::with_cpus(&cpus)
        };
        let p = plan::build(&cfg, file, &host).unwrap_or_else(|e| panic!("{what}: {e}"));
        let names: Vec<&str> = p.ports.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["fronthaul0", "midhaul0"], "{what}");
        let text = p.eal_args.join(" ");
        assert!(
            text.contains("-a 0000:3b:02.1") && text.contains("-a 0000:3b:0a.2"),
            "{what}: {text}"
        );
        assert!(
            text.contains(&format!("--huge-dir {hp_path}")),
            "{what}: {text}"
        );
        let h = p.hugepages.as_ref().unwrap();
        assert!(h.pod_budget && h.free_bytes == limit, "{what}: {h:?}");
        // Lcores run on the pod's CPUs only (`--lcores L@CPU,...`), one worker per CPU but the main's.
        let map = p
            .eal_args
            .iter()
            .position(|a| a == "--lcores")
            .map(|i| p.eal_args[i + 1].clone())
            .expect("--lcores");
        let on: Vec<u32> = map
            .split(',')
            .map(|m| m.rsplit('@').next().unwrap().parse().unwrap())
            .collect();
        assert!(
            on.iter().all(|c| cpus.contains(c)),
            "{what}: {map} outside {cpus:?}"
        );
        assert_eq!(
            p.workers.len(),
            cpus.len() - 1,
            "{what}: {map}: request the main lcore plus one CPU per port queue, no idle core"
        );

        let sc = &c["securityContext"];
        if sc["privileged"] != true {
            unprivileged += 1;
            let mut add: Vec<&str> = sc["capabilities"]["add"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap())
                .collect();
            add.sort_unstable();
            assert_eq!(add, ["IPC_LOCK", "NET_RAW", "SYS_RESOURCE"], "{what}");
            assert_eq!(
                sc["capabilities"]["drop"],
                serde_json::json!(["ALL"]),
                "{what}"
            );
            if sc["readOnlyRootFilesystem"] == true {
                assert!(
                    c["volumeMounts"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .any(|m| m["mountPath"] == "/var/run/dpdk"),
                    "{what}: EAL needs a writable /var/run/dpdk"
                );
            }
        }
    }
    assert_eq!(
        unprivileged, 2,
        "the vfio pod and the DaemonSet run without privilege"
    );
}

#[test]
fn the_dataplane_configmap_is_config_pod_sriov_toml() {
    require_validator();
    let docs = documents(&manifests_dir().join("dataplane-configmap.yaml"));
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/pod-sriov.toml");
    let want = std::fs::read_to_string(&file).unwrap();
    assert_eq!(
        docs[0]["data"]["pod-sriov.toml"].as_str(),
        Some(want.as_str()),
        "config/kubernetes/dataplane-configmap.yaml is out of date with config/pod-sriov.toml"
    );
}
