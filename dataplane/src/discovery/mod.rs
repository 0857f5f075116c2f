//! Where a CNF learns its ports, cores and huge pages.
//!
//! Ports come from what the platform hands the pod or VM, one *source* per *role*
//! (fronthaul, midhaul, ... any name):
//!
//! ```toml
//! [discovery]
//! wait_seconds = 30                 # bound for late annotations files and sockets
//!
//! [discovery.roles.fronthaul]
//! source = "sriov"                  # env PCIDEVICE_INTEL_COM_FRONTHAUL
//! resource = "intel.com/fronthaul"  # or: env = "PCIDEVICE_INTEL_COM_FRONTHAUL"
//!
//! [discovery.roles.midhaul]
//! source = "multus"                 # k8s.v1.cni.cncf.io/network-status device-info
//! network = "default/midhaul-net"   # or just "midhaul-net"
//! annotations = "/etc/podnetinfo/annotations"   # the default
//!
//! [discovery.roles.access]
//! source = "userspace-cni"          # userspace/configuration-data + userspace/mapped-dir
//! interface = "net1"                # optional filters: interface, network
//!
//! [discovery.roles.backhaul]
//! source = "openstack"              # nova config drive, devices[] tagged BACKHAUL
//! tag = "BACKHAUL"                  # default: the role name; case-insensitive
//! config_drive = "/mnt/config"      # default: mount /dev/disk/by-label/config-2 read-only
//! ```
//!
//! [`discover`] resolves every role to [`DiscoveredPort`]s named `<role><n>` (`fronthaul0`,
//! `fronthaul1`, ...), ordered by role name, then by position in the source. Ports given
//! explicitly in the dataplane's config win over discovered ones: see [`merge_ports`].
//! Cores: [`cores`]; huge pages: [`hugepages`].

pub mod addr;
pub mod annotations;
pub mod cores;
pub mod env;
pub mod hugepages;
pub mod multus;
pub mod openstack;
pub mod sriov;
pub mod userspace;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::device::Device;

pub use env::{Environment, FakeEnvironment, SystemEnvironment};

/// Where the Downward API annotations file is mounted by default.
pub const DEFAULT_ANNOTATIONS: &str = "/etc/podnetinfo/annotations";
/// How long discovery waits for late sources by default.
pub const DEFAULT_WAIT_SECONDS: u64 = 30;
/// How often a late source is looked at again while waiting.
pub const POLL_INTERVAL: Duration = Duration::from_millis(250);

fn default_wait_seconds() -> u64 {
    DEFAULT_WAIT_SECONDS
}

fn default_annotations() -> PathBuf {
    PathBuf::from(DEFAULT_ANNOTATIONS)
}

/// The `[discovery]` table of the dataplane's configuration.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiscoveryConfig {
    /// Upper bound, in seconds, on the total time spent waiting for late sources
    /// (annotations files, network-status entries, vhost-user/memif sockets). 0: look once.
    #[serde(default = "default_wait_seconds")]
    pub wait_seconds: u64,
    /// One source per role; the role name prefixes the port names.
    #[serde(default)]
    pub roles: BTreeMap<String, RoleSource>,
}

impl Default for DiscoveryConfig {
    fn default() -> Self {
        Self {
            wait_seconds: DEFAULT_WAIT_SECONDS,
            roles: BTreeMap::new(),
        }
    }
}

/// Where the ports of one role come from (`source = "..."` in TOML).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "source", rename_all = "kebab-case", deny_unknown_fields)]
pub enum RoleSource {
    /// The SR-IOV network device plugin's `PCIDEVICE_*` variable: PCI addresses joined by `,`.
    Sriov {
        /// Resource name, e.g. `intel.com/fronthaul` (-> `PCIDEVICE_INTEL_COM_FRONTHAUL`).
        #[serde(default)]
        resource: Option<String>,
        /// Or the variable's name itself.
        #[serde(default)]
        env: Option<String>,
    },
    /// Multus `k8s.v1.cni.cncf.io/network-status` entries' `device-info`.
    Multus {
        /// The entry's `name`: `namespace/network` or just `network` (any namespace).
        network: String,
        /// The Downward API annotations file.
        #[serde(default = "default_annotations")]
        annotations: PathBuf,
    },
    /// Userspace CNI's `userspace/configuration-data` and `userspace/mapped-dir`.
    UserspaceCni {
        /// The annotations file.
        #[serde(default = "default_annotations")]
        annotations: PathBuf,
        /// Only entries with this `name` (network), `namespace/` optional as for Multus.
        #[serde(default)]
        network: Option<String>,
        /// Only entries with this `ifName`.
        #[serde(default)]
        interface: Option<String>,
    },
    /// An OpenStack config drive: `devices[]` of `meta_data.json` whose tags name the role.
    Openstack {
        /// The tag to match (case-insensitive); default: the role name.
        #[serde(default)]
        tag: Option<String>,
        /// A directory holding `openstack/latest/`; default: find the filesystem labelled
        /// `config-2` and mount it read-only for the time of discovery.
        #[serde(default)]
        config_drive: Option<PathBuf>,
    },
}

impl RoleSource {
    /// The source's name as written in the config (`sriov`, `multus`, ...).
    pub fn kind(&self) -> &'static str {
        match self {
            RoleSource::Sriov { .. } => "sriov",
            RoleSource::Multus { .. } => "multus",
            RoleSource::UserspaceCni { .. } => "userspace-cni",
            RoleSource::Openstack { .. } => "openstack",
        }
    }
}

fn valid_role_name(role: &str) -> bool {
    !role.is_empty()
        && role
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

impl DiscoveryConfig {
    /// Check what serde cannot: role names, and that each source has what it needs.
    pub fn validate(&self) -> Result<(), DiscoveryError> {
        for (role, src) in &self.roles {
            let err = |reason: &str| {
                Err(DiscoveryError::Config {
                    role: role.clone(),
                    reason: reason.to_string(),
                })
            };
            if !valid_role_name(role) {
                return err("role names are non-empty and use only letters, digits, `_` and `-`");
            }
            match src {
                RoleSource::Sriov {
                    resource: None,
                    env: None,
                } => return err("sriov needs `resource` or `env`"),
                RoleSource::Sriov {
                    resource: Some(_),
                    env: Some(_),
                } => return err("sriov takes `resource` or `env`, not both"),
                RoleSource::Sriov {
                    resource: Some(r), ..
                } if r.trim().is_empty() => return err("empty `resource`"),
                RoleSource::Sriov { env: Some(v), .. }
                    if v.is_empty()
                        || !v
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') =>
                {
                    return err("`env` must be a variable name (letters, digits, `_`)")
                }
                RoleSource::Multus { network, .. } if network.trim().is_empty() => {
                    return err("empty `network`")
                }
                RoleSource::UserspaceCni {
                    network: Some(n), ..
                } if n.trim().is_empty() => return err("empty `network`"),
                RoleSource::UserspaceCni {
                    interface: Some(i), ..
                } if i.trim().is_empty() => return err("empty `interface`"),
                RoleSource::Openstack { tag: Some(t), .. } if t.trim().is_empty() => {
                    return err("empty `tag`")
                }
                _ => {}
            }
        }
        Ok(())
    }
}

/// A port found by discovery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiscoveredPort {
    /// The role from the config (`fronthaul`).
    pub role: String,
    /// `<role><n>`, n counting from 0 in the order of the source.
    pub name: String,
    /// What backs the port.
    pub device: Device,
    /// Where it was found, for humans: `env PCIDEVICE_INTEL_COM_FRONTHAUL`,
    /// `multus network-status default/sriov-fh (net1)`, `config drive meta_data.json
    /// devices[1] (mac fa:16:...)`, ...
    pub source: String,
    /// The MAC address the platform assigned, lower case, when the source says.
    pub mac: Option<String>,
}

/// What [`discover`] found.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Discovery {
    /// The ports, ordered by role name, then by position in the source.
    pub ports: Vec<DiscoveredPort>,
    /// Things ignored or worth a look (untagged devices, devices for no role, NICs still
    /// bound to a kernel driver, a stale file where a server socket will be created, ...).
    pub warnings: Vec<String>,
}

/// Why discovery failed. Every message names the role, the source, the file or variable,
/// and the reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DiscoveryError {
    /// The `[discovery]` configuration is wrong.
    #[error("discovery config, role `{role}`: {reason}")]
    Config {
        /// The role.
        role: String,
        /// What is wrong.
        reason: String,
    },
    /// The environment variable a source needs is not set.
    #[error("role `{role}` (sriov): environment variable {var} is not set{hint}")]
    MissingVariable {
        /// The role.
        role: String,
        /// The variable.
        var: String,
        /// What else is set, to help spot a typo.
        hint: String,
    },
    /// A value read from a source is not valid.
    #[error("role `{role}` ({origin}): {location}: {reason}")]
    Invalid {
        /// The role.
        role: String,
        /// The source kind.
        origin: String,
        /// Variable, file, annotation or entry that holds the value.
        location: String,
        /// What is wrong.
        reason: String,
    },
    /// A file could not be read.
    #[error("role `{role}` ({origin}): cannot read {path}: {reason}")]
    Read {
        /// The role.
        role: String,
        /// The source kind.
        origin: String,
        /// The file.
        path: String,
        /// The I/O error.
        reason: String,
    },
    /// JSON that does not parse.
    #[error("role `{role}` ({origin}): malformed JSON in {location} at line {line} column {column}: {reason}")]
    Json {
        /// The role.
        role: String,
        /// The source kind.
        origin: String,
        /// File, or annotation and file.
        location: String,
        /// serde_json's line (1-based).
        line: usize,
        /// serde_json's column (1-based).
        column: usize,
        /// serde_json's message.
        reason: String,
    },
    /// Something late never showed up within `wait_seconds`.
    #[error("role `{role}` ({origin}): still missing after waiting {waited_ms} ms (wait_seconds = {wait_seconds}): {missing}")]
    Timeout {
        /// The role.
        role: String,
        /// The source kind.
        origin: String,
        /// What is missing.
        missing: String,
        /// Total time waited by this discovery run.
        waited_ms: u64,
        /// The configured bound.
        wait_seconds: u64,
    },
    /// The source has nothing for the role.
    #[error("role `{role}` ({origin}): {reason}")]
    NotFound {
        /// The role.
        role: String,
        /// The source kind.
        origin: String,
        /// What was looked for and what was there.
        reason: String,
    },
    /// Two ports resolve to the same device.
    #[error("{what} is claimed twice: by {first} and by {second}")]
    Duplicate {
        /// The device (`PCI address 0000:3b:02.1`, `socket /run/x.sock`).
        what: String,
        /// The first claimant (port name and source).
        first: String,
        /// The second claimant.
        second: String,
    },
}

/// A port as a source module hands it back, before naming.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Found {
    pub device: Device,
    pub source: String,
    pub mac: Option<String>,
}

/// A shared budget for waiting: all waits of one [`discover`] run together stay within
/// `wait_seconds`.
#[derive(Debug)]
pub(crate) struct Waiter {
    remaining: Duration,
    waited: Duration,
    wait_seconds: u64,
}

impl Waiter {
    pub fn new(wait_seconds: u64) -> Self {
        Self {
            remaining: Duration::from_secs(wait_seconds),
            waited: Duration::ZERO,
            wait_seconds,
        }
    }

    /// Call `check` until it returns `Some`, sleeping [`POLL_INTERVAL`] in between, while the
    /// budget lasts. `Ok(None)`: still not there when the budget ran out.
    pub fn wait_for<T>(
        &mut self,
        env: &dyn Environment,
        mut check: impl FnMut(&dyn Environment) -> Result<Option<T>, DiscoveryError>,
    ) -> Result<Option<T>, DiscoveryError> {
        loop {
            if let Some(v) = check(env)? {
                return Ok(Some(v));
            }
            if self.remaining.is_zero() {
                return Ok(None);
            }
            let step = POLL_INTERVAL.min(self.remaining);
            env.sleep(step);
            self.remaining = self.remaining.saturating_sub(step);
            self.waited = self.waited.saturating_add(step);
        }
    }

    pub fn timeout(&self, role: &str, origin: &str, missing: String) -> DiscoveryError {
        DiscoveryError::Timeout {
            role: role.to_string(),
            origin: origin.to_string(),
            missing,
            waited_ms: u64::try_from(self.waited.as_millis()).unwrap_or(u64::MAX),
            wait_seconds: self.wait_seconds,
        }
    }
}

/// State of one [`discover`] run, passed to the source modules.
pub(crate) struct Ctx<'a> {
    pub env: &'a dyn Environment,
    pub waiter: Waiter,
    pub warnings: Vec<String>,
}

impl Ctx<'_> {
    /// Wait until `path` is a Unix socket (the peer creates it), within the budget.
    pub fn client_socket(
        &mut self,
        role: &str,
        origin: &str,
        path: &Path,
        what: &str,
    ) -> Result<(), DiscoveryError> {
        let mut missing = String::new();
        let ok = self.waiter.wait_for(self.env, |env| {
            if env.is_socket(path) {
                return Ok(Some(()));
            }
            missing = if env.exists(path) {
                format!(
                    "{what}: {} exists but is not a socket (stale file?)",
                    path.display()
                )
            } else {
                format!(
                    "{what}: socket {} does not exist (is the peer running?)",
                    path.display()
                )
            };
            Ok(None)
        })?;
        match ok {
            Some(()) => Ok(()),
            None => Err(self.waiter.timeout(role, origin, missing)),
        }
    }

    /// A socket we will create: its directory must exist (waited for within the budget);
    /// a file already at the path is reported as a warning (DPDK's bind would fail on it).
    pub fn server_socket(
        &mut self,
        role: &str,
        origin: &str,
        path: &Path,
        what: &str,
    ) -> Result<(), DiscoveryError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            let ok = self
                .waiter
                .wait_for(self.env, |env| Ok(env.exists(dir).then_some(())))?;
            if ok.is_none() {
                return Err(self.waiter.timeout(
                    role,
                    origin,
                    format!(
                        "{what}: directory {} for the server socket does not exist",
                        dir.display()
                    ),
                ));
            }
        }
        if self.env.exists(path) {
            self.warnings.push(format!(
                "role `{role}` ({origin}): {what}: {} already exists; this side creates that socket, so remove the stale file first or the bind fails",
                path.display()
            ));
        }
        Ok(())
    }
}

/// Turn a serde_json error into [`DiscoveryError::Json`].
pub(crate) fn json_error(
    role: &str,
    origin: &str,
    location: String,
    e: &serde_json::Error,
) -> DiscoveryError {
    DiscoveryError::Json {
        role: role.to_string(),
        origin: origin.to_string(),
        location,
        line: e.line(),
        column: e.column(),
        reason: e.to_string(),
    }
}

/// Resolve every role of `cfg` to ports. Sources that can appear late (annotations,
/// network-status entries, client-side sockets) are polled every [`POLL_INTERVAL`] until
/// present or `wait_seconds` (in total) have passed.
pub fn discover(cfg: &DiscoveryConfig, env: &dyn Environment) -> Result<Discovery, DiscoveryError> {
    cfg.validate()?;
    let mut ctx = Ctx {
        env,
        waiter: Waiter::new(cfg.wait_seconds),
        warnings: Vec::new(),
    };
    let mut found: BTreeMap<String, Vec<Found>> = BTreeMap::new();
    let mut drives: BTreeMap<Option<PathBuf>, Vec<(String, String)>> = BTreeMap::new();
    for (role, src) in &cfg.roles {
        let ports = match src {
            RoleSource::Sriov { resource, env: var } => {
                sriov::resolve(&mut ctx, role, resource.as_deref(), var.as_deref())?
            }
            RoleSource::Multus {
                network,
                annotations,
            } => multus::resolve(&mut ctx, role, network, annotations)?,
            RoleSource::UserspaceCni {
                annotations,
                network,
                interface,
            } => userspace::resolve(
                &mut ctx,
                role,
                annotations,
                network.as_deref(),
                interface.as_deref(),
            )?,
            RoleSource::Openstack { tag, config_drive } => {
                let tag = tag.clone().unwrap_or_else(|| role.clone());
                drives
                    .entry(config_drive.clone())
                    .or_default()
                    .push((role.clone(), tag));
                continue;
            }
        };
        found.insert(role.clone(), ports);
    }
    for (drive, roles) in &drives {
        found.extend(openstack::resolve(&mut ctx, drive.as_deref(), roles)?);
    }
    let mut ports = Vec::new();
    for (role, list) in found {
        for (i, f) in list.into_iter().enumerate() {
            ports.push(DiscoveredPort {
                name: format!("{role}{i}"),
                role: role.clone(),
                device: f.device,
                source: f.source,
                mac: f.mac,
            });
        }
    }
    check_duplicates(&ports)?;
    Ok(Discovery {
        ports,
        warnings: ctx.warnings,
    })
}

/// The device identity two ports must not share: a PCI address, a socket path (virtio-user,
/// vhost-user), or a memif (socket, id) pair.
fn device_key(d: &Device) -> Option<String> {
    match d {
        Device::Pci { address } => Some(format!("PCI address {}", address.to_ascii_lowercase())),
        Device::VirtioUser { path, .. } | Device::VhostUser { path, .. } => {
            Some(format!("socket {}", path.display()))
        }
        Device::Memif { socket, id, .. } => {
            Some(format!("memif id {id} on socket {}", socket.display()))
        }
        _ => None,
    }
}

/// Error if two ports resolve to the same device.
pub fn check_duplicates(ports: &[DiscoveredPort]) -> Result<(), DiscoveryError> {
    let mut seen: HashMap<String, &DiscoveredPort> = HashMap::new();
    for p in ports {
        let Some(key) = device_key(&p.device) else {
            continue;
        };
        if let Some(first) = seen.get(&key) {
            return Err(DiscoveryError::Duplicate {
                what: key,
                first: format!("{} ({})", first.name, first.source),
                second: format!("{} ({})", p.name, p.source),
            });
        }
        seen.insert(key, p);
    }
    Ok(())
}

/// Explicit ports win: drop every discovered port whose role or name is in `explicit`
/// (the roles/names of the ports the dataplane's config lists itself). Returns the ports
/// kept and one note per port dropped.
pub fn merge_ports(
    explicit: &[String],
    discovered: Vec<DiscoveredPort>,
) -> (Vec<DiscoveredPort>, Vec<String>) {
    let mut notes = Vec::new();
    let kept = discovered
        .into_iter()
        .filter(|p| {
            let hit = explicit.iter().find(|e| **e == p.role || **e == p.name);
            if let Some(e) = hit {
                notes.push(format!(
                    "explicit port `{e}` overrides discovered {} ({} from {})",
                    p.name, p.device, p.source
                ));
            }
            hit.is_none()
        })
        .collect();
    (kept, notes)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A fixture file's text.
    pub fn fixture(name: &str) -> String {
        let path = Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/discovery"
        ))
        .join(name);
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("fixture {}: {e}", path.display()))
    }

    pub fn pci(a: &str) -> Device {
        Device::Pci {
            address: a.to_string(),
        }
    }

    /// (name, role, device) of each port.
    pub fn summary(d: &Discovery) -> Vec<(String, String, Device)> {
        d.ports
            .iter()
            .map(|p| (p.name.clone(), p.role.clone(), p.device.clone()))
            .collect()
    }

    pub fn cfg(toml_text: &str) -> DiscoveryConfig {
        #[derive(Deserialize)]
        struct Top {
            discovery: DiscoveryConfig,
        }
        toml::from_str::<Top>(toml_text)
            .unwrap_or_else(|e| panic!("config does not parse: {e}"))
            .discovery
    }

    #[test]
    fn config_parses_every_source() {
        let c = cfg(r#"
            [discovery]
            wait_seconds = 5
            [discovery.roles.fronthaul]
            source = "sriov"
            resource = "intel.com/fronthaul"
            [discovery.roles.midhaul]
            source = "multus"
            network = "default/midhaul-net"
            [discovery.roles.access]
            source = "userspace-cni"
            interface = "net1"
            [discovery.roles.backhaul]
            source = "openstack"
            tag = "BACKHAUL"
            config_drive = "/mnt/config"
        "#);
        assert_eq!(c.wait_seconds, 5);
        assert_eq!(
            c.roles.get("fronthaul"),
            Some(&RoleSource::Sriov {
                resource: Some("intel.com/fronthaul".into()),
                env: None
            })
        );
        assert_eq!(
            c.roles.get("midhaul"),
            Some(&RoleSource::Multus {
                network: "default/midhaul-net".into(),
                annotations: DEFAULT_ANNOTATIONS.into()
            })
        );
        assert_eq!(
            c.roles.get("access"),
            Some(&RoleSource::UserspaceCni {
                annotations: DEFAULT_ANNOTATIONS.into(),
                network: None,
                interface: Some("net1".into())
            })
        );
        assert_eq!(
            c.roles.get("backhaul"),
            Some(&RoleSource::Openstack {
                tag: Some("BACKHAUL".into()),
                config_drive: Some("/mnt/config".into())
            })
        );
        assert_eq!(c.validate(), Ok(()));
        let d = cfg("[discovery]\n");
        assert_eq!(d, DiscoveryConfig::default());
    }

    #[test]
    fn config_rejects_unknown_fields_and_sources() {
        #[derive(Debug, Deserialize)]
        #[allow(dead_code)]
        struct Top {
            discovery: DiscoveryConfig,
        }
        for (text, key) in [
            ("[discovery]\nwait_secs = 3\n", "unknown field `wait_secs`"),
            (
                "[discovery.roles.x]\nsource = \"sriov\"\nresourse = \"a/b\"\n",
                "unknown field `resourse`",
            ),
            (
                "[discovery.roles.x]\nsource = \"dhcp\"\n",
                "unknown variant `dhcp`",
            ),
            (
                "[discovery.roles.x]\nsource = \"multus\"\n",
                "missing field `network`",
            ),
        ] {
            let e = toml::from_str::<Top>(text).unwrap_err().to_string();
            assert!(e.contains(key), "{text}: {e}");
        }
    }

    #[test]
    fn config_validation() {
        for (text, key) in [
            (
                "[discovery.roles.x]\nsource = \"sriov\"\n",
                "needs `resource` or `env`",
            ),
            (
                "[discovery.roles.x]\nsource = \"sriov\"\nresource = \"a/b\"\nenv = \"X\"\n",
                "not both",
            ),
            (
                "[discovery.roles.x]\nsource = \"sriov\"\nenv = \"A B\"\n",
                "variable name",
            ),
            (
                "[discovery.roles.\"a b\"]\nsource = \"sriov\"\nenv = \"X\"\n",
                "role names",
            ),
            (
                "[discovery.roles.x]\nsource = \"multus\"\nnetwork = \" \"\n",
                "empty `network`",
            ),
            (
                "[discovery.roles.x]\nsource = \"openstack\"\ntag = \"\"\n",
                "empty `tag`",
            ),
        ] {
            let e = discover(&cfg(text), &FakeEnvironment::new())
                .unwrap_err()
                .to_string();
            assert!(e.starts_with("discovery config, role `"), "{e}");
            assert!(e.contains(key), "{text}: {e}");
        }
    }

    #[test]
    fn empty_config_finds_nothing() {
        assert_eq!(
            discover(&DiscoveryConfig::default(), &FakeEnvironment::new()),
            Ok(Discovery::default())
        );
    }

    #[test]
    fn sriov_and_multus_claiming_one_vf_is_an_error() {
        let env = FakeEnvironment::new()
            .with_env_file(&fixture("sriov-device-plugin.env"))
            .with_file(DEFAULT_ANNOTATIONS, &fixture("podnetinfo-annotations"))
            .with_dir("/var/run/net3");
        let c = cfg(r#"
            [discovery]
            wait_seconds = 0
            [discovery.roles.fronthaul]
            source = "sriov"
            resource = "intel.com/fronthaul"
            [discovery.roles.fh]
            source = "multus"
            network = "fronthaul-net"
        "#);
        let e = discover(&c, &env).unwrap_err().to_string();
        assert_eq!(
            e,
            "PCI address 0000:3b:02.1 is claimed twice: by fh0 (multus network-status default/fronthaul-net (net1)) \
             and by fronthaul0 (env PCIDEVICE_INTEL_COM_FRONTHAUL (vfio /dev/vfio/112))"
        );
    }

    #[test]
    fn all_sources_together() {
        let env = FakeEnvironment::new()
            .with_env_file(&fixture("sriov-device-plugin.env"))
            .with_file(DEFAULT_ANNOTATIONS, &fixture("podnetinfo-annotations"))
            .with_dir("/var/run/net3");
        let c = cfg(r#"
            [discovery]
            wait_seconds = 0
            [discovery.roles.fronthaul]
            source = "sriov"
            resource = "intel.com/fronthaul"
            [discovery.roles.midhaul]
            source = "sriov"
            env = "PCIDEVICE_INTEL_COM_MIDHAUL"
            [discovery.roles.access]
            source = "multus"
            network = "default/userspace-net"
        "#);
        let d = discover(&c, &env).unwrap_or_default();
        assert_eq!(
            summary(&d),
            vec![
                (
                    "access0".into(),
                    "access".into(),
                    Device::VirtioUser {
                        path: "/var/run/net3/vhost.sock".into(),
                        server: true
                    }
                ),
                ("fronthaul0".into(), "fronthaul".into(), pci("0000:3b:02.1")),
                ("midhaul0".into(), "midhaul".into(), pci("0000:3b:0a.2")),
                ("midhaul1".into(), "midhaul".into(), pci("0000:3b:0a.5")),
            ]
        );
        assert_eq!(
            d.ports.first().and_then(|p| p.mac.clone()).as_deref(),
            Some("64:1f:74:32:2e:6d")
        );
        assert_eq!(d.warnings, Vec::<String>::new());

        let (kept, notes) = merge_ports(&["midhaul".to_string(), "access0".to_string()], d.ports);
        assert_eq!(
            kept.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(),
            vec!["fronthaul0"]
        );
        assert_eq!(notes.len(), 3);
        assert!(
            notes[0].starts_with(
                "explicit port `access0` overrides discovered access0 (virtio-user path=/var/run/net3/vhost.sock"
            ),
            "{}",
            notes[0]
        );
        assert!(notes[1].contains(
            "`midhaul` overrides discovered midhaul0 (pci 0000:3b:0a.2 from env PCIDEVICE_INTEL_COM_MIDHAUL"
        ));
    }

    #[test]
    fn waiting_is_bounded_in_total() {
        // Two roles each waiting for something that never comes: the total stays 2 s.
        let c = cfg(r#"
            [discovery]
            wait_seconds = 2
            [discovery.roles.a]
            source = "multus"
            network = "a"
            annotations = "/nope/a"
            [discovery.roles.b]
            source = "multus"
            network = "b"
            annotations = "/nope/b"
        "#);
        let env = FakeEnvironment::new();
        let e = discover(&c, &env).unwrap_err().to_string();
        assert_eq!(env.slept(), Duration::from_secs(2));
        assert_eq!(
            e,
            "role `a` (multus): still missing after waiting 2000 ms (wait_seconds = 2): annotations file /nope/a does not exist"
        );
    }
}
