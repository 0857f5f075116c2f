//! The dataplane in a QEMU guest (PVP: generator on the host, dataplane in the VM), and the
//! same pipeline on the host, on the same kind of vhost-user sockets:
//!
//! ```text
//!   dpgen (CPU 0), vhost-user SERVER                QEMU guest (client), or host dataplane
//!   net_vhost0 ── fh.sock ── virtio-net-pci 00:04.0 (FRONTHAUL) | virtio-user fronthaul0
//!   net_vhost1 ── mh.sock ── virtio-net-pci 00:05.0 (MIDHAUL)   | virtio-user midhaul0
//! ```
//!
//! The guest image (Debian kernel + busybox initramfs with this build's `dataplane`) comes
//! from `scripts/vm/build-image`; the guest finds its ports in a nova config drive (ISO 9660,
//! label `config-2`) made here with `genisoimage`. The guest prints its stats JSON on the serial
//! console between `DP-STATS-BEGIN` and `DP-STATS-END` and powers off after a `stop` line.
//!
//! The accelerator is detected: KVM only if a guest really boots under `-accel kvm`, else
//! TCG (software emulation), whose results are functional only: [`summarize`] gives no
//! `vm_vs_host` ratio unless the VM ran under KVM with pinned vCPUs.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::procs::{workspace_bin, Proc, Scratch};

/// Where the guest image builder lives, relative to the workspace root.
pub const BUILD_IMAGE: &str = "scripts/vm/build-image";
/// The guest's dataplane config (no port named: discovery from the config drive).
pub const GUEST_CONFIG: &str = "config/vm-guest.toml";
/// The QEMU binary.
pub const QEMU: &str = "qemu-system-x86_64";
/// Guest RAM (MiB), backed by shared host huge pages (vhost-user needs it shared).
pub const GUEST_MEM_MB: u32 = 512;
/// 2 MiB huge pages the guest reserves on its kernel command line.
pub const GUEST_HUGEPAGES: u32 = 160;

/// The workspace root (from this crate's manifest directory).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// A built guest image.
#[derive(Debug, Clone)]
pub struct GuestImage {
    /// Its cache directory.
    pub dir: PathBuf,
    /// The kernel.
    pub vmlinuz: PathBuf,
    /// The initramfs.
    pub initrd: PathBuf,
}

/// Builds (or finds cached) the guest image for this build's `dataplane` binary.
pub fn build_image() -> Result<GuestImage, String> {
    let root = workspace_root();
    let out = Command::new(root.join(BUILD_IMAGE))
        .arg(workspace_bin("dataplane"))
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("running {BUILD_IMAGE}: {e}"))?;
    if !out.status.success() {
        return Err(format!("{BUILD_IMAGE} failed ({})", out.status));
    }
    let dir = PathBuf::from(
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .last()
            .unwrap_or("")
            .trim(),
    );
    let img = GuestImage {
        vmlinuz: dir.join("vmlinuz"),
        initrd: dir.join("initrd.img"),
        dir,
    };
    if !img.vmlinuz.exists() || !img.initrd.exists() {
        return Err(format!(
            "{BUILD_IMAGE} printed {}, which holds no vmlinuz/initrd.img",
            img.dir.display()
        ));
    }
    Ok(img)
}

/// What `missing_tools` looks for before a VM run.
pub const TOOLS: [&str; 4] = [QEMU, "genisoimage", "cpio", "busybox"];

/// The tools a VM run needs that are not on `PATH` (install them with `scripts/setup`).
pub fn missing_tools() -> Vec<&'static str> {
    TOOLS
        .into_iter()
        .filter(|t| {
            !std::env::var_os("PATH")
                .map(|p| std::env::split_paths(&p).any(|d| d.join(t).is_file()))
                .unwrap_or(false)
        })
        .collect()
}

/// One virtio-net NIC of the guest, as nova would describe it.
#[derive(Debug, Clone, PartialEq)]
pub struct GuestNic {
    /// The config-drive tag (the Neutron network's role), e.g. `FRONTHAUL`.
    pub tag: String,
    /// PCI slot on bus 0 (QEMU `addr=`), giving `0000:00:<slot>.0`.
    pub slot: u8,
    /// MAC address.
    pub mac: String,
    /// The vhost-user socket (the generator is the server).
    pub socket: PathBuf,
}

impl GuestNic {
    /// The guest PCI address QEMU gives it.
    pub fn pci(&self) -> String {
        format!("0000:00:{:02x}.0", self.slot)
    }
}

/// The two NICs of the PVP topology: FRONTHAUL at 00:04.0, MIDHAUL at 00:05.0.
pub fn pvp_nics(sock0: &Path, sock1: &Path) -> Vec<GuestNic> {
    vec![
        GuestNic {
            tag: "FRONTHAUL".into(),
            slot: 4,
            mac: "fa:16:3e:00:00:01".into(),
            socket: sock0.to_path_buf(),
        },
        GuestNic {
            tag: "MIDHAUL".into(),
            slot: 5,
            mac: "fa:16:3e:00:00:02".into(),
            socket: sock1.to_path_buf(),
        },
    ]
}

/// `openstack/latest/meta_data.json` as nova writes it for tagged NICs.
pub fn meta_data_json(nics: &[GuestNic]) -> Value {
    json!({
        "uuid": "0d1f6c58-5a8e-4a57-9c4e-5e0f0d000001",
        "name": "dataplane-guest",
        "hostname": "dataplane-guest",
        "availability_zone": "nova",
        "launch_index": 0,
        "project_id": "bench",
        "devices": nics.iter().map(|n| json!({
            "type": "nic", "bus": "pci", "address": n.pci(), "mac": n.mac,
            "tags": [n.tag], "vf_trusted": false,
        })).collect::<Vec<_>>(),
    })
}

/// `openstack/latest/network_data.json`: one `vhostuser` link per NIC.
pub fn network_data_json(nics: &[GuestNic]) -> Value {
    json!({
        "links": nics.iter().enumerate().map(|(i, n)| json!({
            "id": format!("tap{i:02}-{}", n.tag.to_ascii_lowercase()), "type": "vhostuser",
            "vif_id": format!("vif-{i}"), "ethernet_mac_address": n.mac, "mtu": 1500,
        })).collect::<Vec<_>>(),
        "networks": [],
        "services": [],
    })
}

/// Writes the config drive (ISO 9660, volume label `config-2`, as nova's default) into
/// `dir` and returns the image path.
pub fn write_config_drive(dir: &Path, nics: &[GuestNic]) -> Result<PathBuf, String> {
    let tree = dir.join("config-drive");
    let latest = tree.join("openstack/latest");
    std::fs::create_dir_all(&latest).map_err(|e| format!("{}: {e}", latest.display()))?;
    for (name, doc) in [
        ("meta_data.json", meta_data_json(nics)),
        ("network_data.json", network_data_json(nics)),
    ] {
        std::fs::write(latest.join(name), doc.to_string() + "\n")
            .map_err(|e| format!("writing {name}: {e}"))?;
    }
    let iso = dir.join("config-2.iso");
    let out = Command::new("genisoimage")
        .args(["-quiet", "-r", "-J", "-V", "config-2", "-o"])
        .arg(&iso)
        .arg(&tree)
        .output()
        .map_err(|e| format!("running genisoimage: {e} (scripts/setup installs it)"))?;
    if !out.status.success() {
        return Err(format!(
            "genisoimage failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(iso)
}

/// The accelerator QEMU runs the guest with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accel {
    /// Hardware virtualisation (`-accel kvm -cpu host`): performance figures mean something.
    Kvm,
    /// Software emulation (`-accel tcg,thread=multi -cpu max`): functional only.
    Tcg,
}

impl Accel {
    /// `kvm` or `tcg`.
    pub fn name(self) -> &'static str {
        match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
        }
    }

    /// QEMU arguments.
    pub fn qemu_args(self) -> [&'static str; 4] {
        match self {
            Accel::Kvm => ["-accel", "kvm", "-cpu", "host"],
            Accel::Tcg => ["-accel", "tcg,thread=multi", "-cpu", "max"],
        }
    }
}

/// The detected accelerator and why.
#[derive(Debug, Clone)]
pub struct AccelChoice {
    /// Which one.
    pub accel: Accel,
    /// Why (what was probed).
    pub reason: String,
}

/// The virtualisation flags the CPU reports (for the accelerator probe's reason).
fn virt_flags() -> String {
    let flags = crate::cpu_flags();
    let mut have: Vec<&str> = ["vmx", "svm", "hypervisor"]
        .into_iter()
        .filter(|f| flags.iter().any(|w| w == f))
        .collect();
    if have.is_empty() {
        have.push("none of vmx/svm/hypervisor");
    }
    have.join(",")
}

/// KVM if `/dev/kvm` opens and the guest really boots under `-accel kvm -cpu host` (a
/// paravirtual nested `/dev/kvm` that only boots special kernels does not count); else TCG.
pub fn detect_accel(img: &GuestImage, scratch: &Scratch) -> AccelChoice {
    let flags = virt_flags();
    let tcg = |why: String| AccelChoice {
        accel: Accel::Tcg,
        reason: why,
    };
    if let Err(e) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
    {
        return tcg(format!(
            "/dev/kvm cannot be opened ({e}); CPU flags: {flags}"
        ));
    }
    let serial = scratch.path("kvm-probe-serial.log");
    let err = scratch.path("kvm-probe-qemu.log");
    let spawn = Command::new(QEMU)
        .args(Accel::Kvm.qemu_args())
        .args(["-smp", "1", "-m", "256M", "-kernel"])
        .arg(&img.vmlinuz)
        .arg("-initrd")
        .arg(&img.initrd)
        .args(["-append", "console=ttyS0 quiet dp.mode=probe"])
        .args(["-display", "none", "-serial", "stdio", "-monitor", "none"])
        .args(["-no-reboot", "-nodefaults"])
        .stdin(Stdio::null())
        .stdout(
            std::fs::File::create(&serial)
                .map(Stdio::from)
                .unwrap_or(Stdio::null()),
        )
        .stderr(
            std::fs::File::create(&err)
                .map(Stdio::from)
                .unwrap_or(Stdio::null()),
        )
        .spawn();
    let mut child = match spawn {
        Ok(c) => c,
        Err(e) => return tcg(format!("cannot start {QEMU}: {e}")),
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    let booted = loop {
        if std::fs::read_to_string(&serial)
            .unwrap_or_default()
            .contains("DP-GUEST: probe ok")
        {
            break true;
        }
        if let Ok(Some(_)) = child.try_wait() {
            break std::fs::read_to_string(&serial)
                .unwrap_or_default()
                .contains("DP-GUEST: probe ok");
        }
        if Instant::now() > deadline {
            break false;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let _ = child.kill();
    let _ = child.wait();
    if booted {
        AccelChoice {
            accel: Accel::Kvm,
            reason: format!("a guest booted under -accel kvm -cpu host; CPU flags: {flags}"),
        }
    } else {
        let e = std::fs::read_to_string(&err).unwrap_or_default();
        let last = e
            .lines()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("no output");
        tcg(format!(
            "/dev/kvm is there but a stock kernel does not boot under -accel kvm ({last}); CPU flags: {flags}"
        ))
    }
}

/// How to boot a guest.
#[derive(Debug, Clone)]
pub struct GuestOpts {
    /// Accelerator.
    pub accel: Accel,
    /// vCPUs (vCPU 0: the dataplane's control lcore, vCPU 1: its worker).
    pub vcpus: u32,
    /// Pin vCPU i to host CPU `pin[i]` (through QMP's thread ids) once booted.
    pub pin: Option<Vec<usize>>,
    /// Seconds the guest's dataplane runs at most without a stop command.
    pub timeout_s: u32,
    /// Extra `dataplane run` options inside the guest.
    pub dataplane_args: String,
}

impl Default for GuestOpts {
    fn default() -> Self {
        GuestOpts {
            accel: Accel::Tcg,
            vcpus: 2,
            pin: None,
            timeout_s: 300,
            dataplane_args: String::new(),
        }
    }
}

/// A running guest: QEMU with its serial console in a file and its input on a pipe.
#[derive(Debug)]
pub struct Guest {
    child: Child,
    stdin: Option<ChildStdin>,
    /// The serial console (guest output).
    pub serial: PathBuf,
    /// QEMU's own messages.
    pub qemu_log: PathBuf,
    /// QMP socket.
    pub qmp: PathBuf,
    /// When QEMU started.
    pub started: Instant,
}

impl Guest {
    /// Boots the image with the config drive and the NICs (their vhost-user sockets must
    /// exist: the generator is the server).
    pub fn boot(
        img: &GuestImage,
        drive: &Path,
        nics: &[GuestNic],
        o: &GuestOpts,
        scratch: &Scratch,
    ) -> Result<Guest, String> {
        let serial = scratch.path("guest-serial.log");
        let qemu_log = scratch.path("qemu.log");
        let qmp = scratch.path("qmp.sock");
        let mut c = Command::new(QEMU);
        c.args(o.accel.qemu_args());
        c.args([
            "-smp",
            &o.vcpus.to_string(),
            "-m",
            &format!("{GUEST_MEM_MB}M"),
        ]);
        c.arg("-object").arg(format!(
            "memory-backend-file,id=mem,size={GUEST_MEM_MB}M,mem-path=/dev/hugepages,share=on"
        ));
        c.args(["-numa", "node,memdev=mem"]);
        c.arg("-kernel").arg(&img.vmlinuz);
        c.arg("-initrd").arg(&img.initrd);
        let mut append = format!(
            "console=ttyS0 quiet hugepages={GUEST_HUGEPAGES} dp.timeout={}",
            o.timeout_s
        );
        if !o.dataplane_args.is_empty() {
            append.push_str(&format!(" dp.args=\"{}\"", o.dataplane_args));
        }
        c.args(["-append", &append]);
        c.arg("-drive").arg(format!(
            "file={},media=cdrom,if=ide,readonly=on",
            drive.display()
        ));
        for (i, n) in nics.iter().enumerate() {
            c.arg("-chardev")
                .arg(format!("socket,id=vu{i},path={}", n.socket.display()));
            c.arg("-netdev")
                .arg(format!("vhost-user,id=net{i},chardev=vu{i}"));
            c.arg("-device").arg(format!(
                "virtio-net-pci,netdev=net{i},addr=0x{:x},mac={},mrg_rxbuf=off,rx_queue_size=1024,tx_queue_size=1024",
                n.slot, n.mac
            ));
        }
        c.arg("-qmp")
            .arg(format!("unix:{},server=on,wait=off", qmp.display()));
        c.args(["-display", "none", "-serial", "stdio", "-monitor", "none"]);
        c.args(["-no-reboot", "-nodefaults"]);
        let out = std::fs::File::create(&serial).map_err(|e| format!("serial log: {e}"))?;
        let err = std::fs::File::create(&qemu_log).map_err(|e| format!("qemu log: {e}"))?;
        c.stdin(Stdio::piped()).stdout(out).stderr(err);
        let mut child = c.spawn().map_err(|e| format!("starting {QEMU}: {e}"))?;
        let stdin = child.stdin.take();
        let g = Guest {
            child,
            stdin,
            serial,
            qemu_log,
            qmp,
            started: Instant::now(),
        };
        Ok(g)
    }

    /// The guest's console output so far.
    pub fn console(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(&self.serial).unwrap_or_default()).into_owned()
    }

    /// QEMU's own messages so far.
    pub fn qemu_messages(&self) -> String {
        std::fs::read_to_string(&self.qemu_log).unwrap_or_default()
    }

    /// Waits until the console shows `text`; false on timeout or if QEMU exited.
    pub fn wait_console(&mut self, text: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.console().contains(text) {
                return true;
            }
            if let Ok(Some(_)) = self.child.try_wait() {
                return self.console().contains(text);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        false
    }

    /// The host thread id of each vCPU (QMP `query-cpus-fast`).
    pub fn vcpu_threads(&self) -> Result<Vec<(usize, i32)>, String> {
        let mut s = std::os::unix::net::UnixStream::connect(&self.qmp)
            .map_err(|e| format!("QMP {}: {e}", self.qmp.display()))?;
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .map_err(|e| e.to_string())?;
        s.write_all(b"{\"execute\":\"qmp_capabilities\"}\n{\"execute\":\"query-cpus-fast\"}\n")
            .map_err(|e| format!("QMP write: {e}"))?;
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let text = String::from_utf8_lossy(&buf).into_owned();
            for line in text.lines() {
                if let Ok(v) = serde_json::from_str::<Value>(line) {
                    if let Some(cpus) = v["return"].as_array().filter(|a| !a.is_empty()) {
                        return Ok(cpus
                            .iter()
                            .filter_map(|c| {
                                Some((
                                    c["cpu-index"].as_u64()? as usize,
                                    c["thread-id"].as_i64()? as i32,
                                ))
                            })
                            .collect());
                    }
                }
            }
            if Instant::now() > deadline {
                return Err(format!("QMP: no query-cpus-fast answer: {text}"));
            }
            match s.read(&mut chunk) {
                Ok(0) => return Err(format!("QMP closed: {text}")),
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                Err(e) => return Err(format!("QMP read: {e}")),
            }
        }
    }

    /// Pins vCPU i to host CPU `cpus[i]`; returns what was pinned as (vcpu, thread, cpu).
    pub fn pin_vcpus(&self, cpus: &[usize]) -> Result<Vec<(usize, i32, usize)>, String> {
        let deadline = Instant::now() + Duration::from_secs(10);
        let threads = loop {
            match self.vcpu_threads() {
                Ok(t) => break t,
                Err(e) if Instant::now() > deadline => return Err(e),
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        };
        let mut done = Vec::new();
        for (vcpu, tid) in threads {
            let Some(&cpu) = cpus.get(vcpu) else { continue };
            pin_thread(tid, cpu)?;
            done.push((vcpu, tid, cpu));
        }
        Ok(done)
    }

    /// Tells the guest to stop its dataplane (a `stop` line on the console).
    pub fn stop(&mut self) -> Result<(), String> {
        let w = self.stdin.as_mut().ok_or("guest console input is closed")?;
        w.write_all(b"stop\n")
            .and_then(|_| w.flush())
            .map_err(|e| format!("writing to the guest console: {e}"))
    }

    /// Waits for QEMU to exit (the guest powers itself off); kills it after `timeout` and
    /// returns None.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(st)) = self.child.try_wait() {
                return Some(st.code().unwrap_or(-1));
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Guest {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The guest dataplane's final stats JSON, printed between the markers.
pub fn stats_from_console(console: &str) -> Option<Value> {
    let b = console.find("DP-STATS-BEGIN")? + "DP-STATS-BEGIN".len();
    let e = b + console[b..].find("DP-STATS-END")?;
    serde_json::from_str(console[b..e].trim()).ok()
}

/// The ports `dataplane check` listed in the guest: (name, role, device) from lines like
/// `[0] fronthaul0 role fronthaul  pci 0000:00:04.0 ... (from config drive ...)`, with
/// the source in parentheses.
pub fn discovered_ports(console: &str) -> Vec<(String, String, String, String)> {
    console
        .lines()
        .filter_map(|l| {
            let t = l.trim_start();
            if !t.starts_with('[') {
                return None;
            }
            let w: Vec<&str> = t.split_whitespace().collect();
            if w.len() < 6 || w[2] != "role" || w[4] != "pci" {
                return None;
            }
            let source = t
                .find("(from ")
                .map(|i| t[i + 6..].trim_end_matches(')').to_string())
                .unwrap_or_default();
            Some((w[1].into(), w[3].into(), w[5].into(), source))
        })
        .collect()
}

/// EAL arguments of the host generator: two `net_vhost` ports as vhost-user servers on the
/// sockets, CPU 0, `--in-memory` (nothing left in /dev/hugepages if it is killed).
pub fn generator_eal(prefix: &str, sock0: &Path, sock1: &Path) -> Vec<String> {
    let mut v: Vec<String> = [
        "--lcores",
        "0@0,1@0",
        "--main-lcore",
        "0",
        "--no-pci",
        "--in-memory",
        "-m",
        "256",
        "--log-level",
        "notice",
        "--file-prefix",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    v.push(prefix.into());
    for (i, s) in [sock0, sock1].iter().enumerate() {
        v.push("--vdev".into());
        v.push(format!("net_vhost{i},iface={},queues=1", s.display()));
    }
    v
}

/// What the generator sends.
#[derive(Debug, Clone)]
pub struct GenOpts {
    /// Mpps per port (0: as fast as the ports take).
    pub rate_mpps: f64,
    /// Seconds of sending, after both links are up.
    pub seconds: f64,
    /// Flows per port.
    pub flows: u32,
    /// Seconds to wait for the links (the guest boots meanwhile).
    pub link_timeout: f64,
    /// Seconds the ports stay connected after the JSON is written.
    pub linger: f64,
}

/// Seconds the generator waits after the links are up before it sends.
const SETTLE_S: f64 = 3.0;

/// Starts dpgen as vhost-user server on the two sockets.
pub fn start_generator(
    scratch: &Scratch,
    sock0: &Path,
    sock1: &Path,
    g: &GenOpts,
    json_out: &Path,
) -> Proc {
    let mut c = Command::new(workspace_bin("dpgen"));
    c.args(["--port", "net_vhost0", "--port", "net_vhost1"]);
    c.args(["--rate-mpps", &g.rate_mpps.to_string()]);
    c.args(["--duration", &g.seconds.to_string()]);
    c.args(["--flows", &g.flows.to_string()]);
    c.args(["--link-timeout", &g.link_timeout.to_string()]);
    c.args(["--linger", &g.linger.to_string(), "--stats-period", "1"]);
    // An emulated (TCG) guest may take well over the default 0.3 s to forward the last
    // bursts: keep receiving for a while before the counters are taken.
    c.args(["--drain", "3"]);
    // The guest's virtio PMD reports link up before its queues are started: wait, so that
    // "nothing lost once forwarding is up" is what is measured.
    c.args(["--settle", &SETTLE_S.to_string()]);
    c.arg("--json").arg(json_out);
    c.arg("--").args(generator_eal(
        &format!("vmgen-{}", scratch.tag),
        sock0,
        sock1,
    ));
    Proc::spawn("dpgen", c, scratch.path("dpgen.log"))
}

/// The host twin of the guest config: the same file (pipeline, forwarding, mempool, stats)
/// with the discovered ports replaced by virtio-user ports of the same names on the
/// generator's sockets, worker on CPU 1, control on CPU 0.
pub fn host_config(
    guest_toml: &str,
    sock0: &Path,
    sock1: &Path,
    prefix: &str,
) -> Result<String, String> {
    let mut doc: toml::Table = guest_toml
        .parse()
        .map_err(|e| format!("{GUEST_CONFIG}: {e}"))?;
    let roles: Vec<String> = doc
        .get("discovery")
        .and_then(|d| d.get("roles"))
        .and_then(|r| r.as_table())
        .map(|r| r.keys().cloned().collect())
        .unwrap_or_default();
    if roles.len() != 2 {
        return Err(format!(
            "{GUEST_CONFIG}: expected two discovery roles, found {roles:?}"
        ));
    }
    doc.remove("discovery");
    let eal = doc
        .entry("eal")
        .or_insert_with(|| toml::Value::Table(toml::Table::new()))
        .as_table_mut()
        .ok_or("eal is not a table")?;
    eal.insert("file_prefix".into(), prefix.into());
    eal.insert(
        "lcores".into(),
        toml::Value::Array(vec![0.into(), 1.into()]),
    );
    eal.insert("main_lcore".into(), 0.into());
    eal.insert("single_file_segments".into(), true.into());
    eal.insert("huge_dir".into(), "/dev/hugepages".into());
    // Discovered ports are `<role>0`; the guest's roles map to the sockets in the order
    // FRONTHAUL, MIDHAUL (pvp_nics).
    let mut ports = toml::Table::new();
    for (role, sock) in [("fronthaul", sock0), ("midhaul", sock1)] {
        if !roles.iter().any(|r| r == role) {
            return Err(format!("{GUEST_CONFIG}: no discovery role {role}"));
        }
        let mut p = toml::Table::new();
        p.insert("role".into(), role.into());
        p.insert("kind".into(), "virtio-user".into());
        p.insert("path".into(), sock.display().to_string().into());
        ports.insert(format!("{role}0"), toml::Value::Table(p));
    }
    doc.insert("ports".into(), toml::Value::Table(ports));
    toml::to_string(&doc).map_err(|e| e.to_string())
}

/// One measured run (VM or host).
#[derive(Debug, Clone)]
pub struct Run {
    /// `vm` or `host`.
    pub kind: &'static str,
    /// Mpps the generator got back per port (forwarded by the DUT), mean of 1-s samples.
    pub rx_mpps: [f64; 2],
    /// Mpps the generator sent per port.
    pub tx_mpps: [f64; 2],
    /// Generator totals: sent and received per port.
    pub gen_tx: [u64; 2],
    /// Generator totals: received per port.
    pub gen_rx: [u64; 2],
    /// The DUT's (guest or host dataplane) per-port rx and tx, fronthaul0 then midhaul0.
    pub dut_rx: [u64; 2],
    /// See `dut_rx`.
    pub dut_tx: [u64; 2],
    /// Seconds from start (QEMU or host dataplane) until the generator saw both links up.
    pub links_up_s: f64,
    /// The DUT's stats JSON.
    pub dut: Value,
}

impl Run {
    /// Both directions, Mpps.
    pub fn forwarded(&self) -> f64 {
        self.rx_mpps[0] + self.rx_mpps[1]
    }

    /// As JSON.
    pub fn json(&self) -> Value {
        json!({"kind": self.kind, "forwarded_mpps": self.rx_mpps, "sent_mpps": self.tx_mpps,
            "forwarded_mpps_total": self.forwarded(),
            "generator_sent": self.gen_tx, "generator_received": self.gen_rx,
            "dut_rx": self.dut_rx, "dut_tx": self.dut_tx, "links_up_s": self.links_up_s,
            "dut": self.dut})
    }
}

/// Per-port (rx, tx) of `fronthaul0` and `midhaul0` from a dataplane stats JSON.
pub fn dut_port_counts(stats: &Value) -> Result<([u64; 2], [u64; 2]), String> {
    let ports = stats["ports"]
        .as_array()
        .ok_or_else(|| format!("no ports in the stats: {stats}"))?;
    let get = |name: &str| {
        ports
            .iter()
            .find(|p| p["name"] == name)
            .map(|p| (p["rx"].as_u64().unwrap_or(0), p["tx"].as_u64().unwrap_or(0)))
            .ok_or_else(|| format!("no port {name} in the stats"))
    };
    let (f, m) = (get("fronthaul0")?, get("midhaul0")?);
    Ok(([f.0, m.0], [f.1, m.1]))
}

fn gen_rates(log: &str, warmup: usize) -> ([f64; 2], [f64; 2]) {
    let mut per: [Vec<(f64, f64)>; 2] = [Vec::new(), Vec::new()];
    for line in log.lines().filter(|l| l.starts_with('[')) {
        let w: Vec<&str> = line.split_whitespace().collect();
        let Some(i) = w.iter().position(|x| *x == "port") else {
            continue;
        };
        let p: usize = match w.get(i + 1).and_then(|s| s.parse().ok()) {
            Some(p) if p < 2 => p,
            _ => continue,
        };
        let num = |k: &str| {
            w.iter()
                .position(|x| *x == k)
                .and_then(|j| w.get(j + 1))
                .and_then(|s| s.parse::<f64>().ok())
        };
        if let (Some(tx), Some(rx)) = (num("tx"), num("rx")) {
            per[p].push((tx, rx));
        }
    }
    let mean = |v: &[(f64, f64)], rx: bool| {
        let s: Vec<f64> = v
            .iter()
            .skip(warmup.min(v.len().saturating_sub(1)))
            .map(|x| if rx { x.1 } else { x.0 })
            .collect();
        if s.is_empty() {
            0.0
        } else {
            s.iter().sum::<f64>() / s.len() as f64
        }
    };
    (
        [mean(&per[0], true), mean(&per[1], true)],
        [mean(&per[0], false), mean(&per[1], false)],
    )
}

fn gen_totals(json_path: &Path) -> Result<([u64; 2], [u64; 2]), String> {
    let g: Value = serde_json::from_str(
        &std::fs::read_to_string(json_path).map_err(|e| format!("dpgen json: {e}"))?,
    )
    .map_err(|e| format!("dpgen json: {e}"))?;
    let n = |p: usize, k: &str| g["ports"][p][k].as_u64().unwrap_or(0);
    Ok(([n(0, "tx"), n(1, "tx")], [n(0, "rx"), n(1, "rx")]))
}

fn wait_file(p: &Path, gen: &mut Proc, timeout: Duration) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    while !p.exists() {
        if let Ok(Some(st)) = gen.child.try_wait() {
            if !p.exists() {
                return Err(format!(
                    "dpgen exited ({st}) without results:\n{}",
                    gen.output()
                ));
            }
        }
        if Instant::now() > deadline {
            return Err(format!("dpgen wrote no results in time:\n{}", gen.output()));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(100));
    Ok(())
}

/// Pins host thread `tid` to CPU `cpu` (`taskset -p -c`).
pub fn pin_thread(tid: i32, cpu: usize) -> Result<(), String> {
    let out = Command::new("taskset")
        .args(["-p", "-c", &cpu.to_string(), &tid.to_string()])
        .output()
        .map_err(|e| format!("running taskset: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "pinning thread {tid} to CPU {cpu}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(())
}

/// The outcome of [`run_vm`], with the guest's console for checks.
#[derive(Debug)]
pub struct VmOutcome {
    /// The measured run.
    pub run: Run,
    /// The guest's serial console (all of it).
    pub console: String,
    /// QEMU's exit code (None: killed after the timeout).
    pub qemu_exit: Option<i32>,
    /// vCPU pinning done: (vcpu, host thread, host CPU).
    pub pinned: Vec<(usize, i32, usize)>,
}

/// One PVP run through the guest: generator (server) first, QEMU connects, the guest's
/// dataplane discovers its ports from the config drive and forwards; once the generator has
/// written its totals the guest is told to stop, prints its stats and powers off.
pub fn run_vm(
    img: &GuestImage,
    g: &GenOpts,
    o: &GuestOpts,
    warmup: usize,
) -> Result<VmOutcome, String> {
    let scratch = Scratch::new("vm");
    let (sock0, sock1) = (scratch.path("fh.sock"), scratch.path("mh.sock"));
    let nics = pvp_nics(&sock0, &sock1);
    let drive = write_config_drive(&scratch.dir, &nics)?;
    let gen_json = scratch.path("gen.json");
    let mut gen = start_generator(&scratch, &sock0, &sock1, g, &gen_json);
    if !crate::procs::wait_for_paths(&[&sock0, &sock1], Duration::from_secs(30)) {
        return Err(format!(
            "generator sockets never appeared:\n{}",
            gen.output()
        ));
    }
    let mut guest = Guest::boot(img, &drive, &nics, o, &scratch)?;
    let started = guest.started;
    let mut pinned = Vec::new();
    if let Some(cpus) = &o.pin {
        pinned = guest.pin_vcpus(cpus)?;
    }
    let fail = |what: String, guest: &Guest, gen: &Proc| {
        format!(
            "{what}\n--- guest console ---\n{}\n--- qemu ---\n{}\n--- dpgen ---\n{}",
            guest.console(),
            guest.qemu_messages(),
            gen.output()
        )
    };
    let first_rate = Duration::from_secs_f64(g.link_timeout + 5.0);
    let t0 = Instant::now();
    while !gen.output().lines().any(|l| l.starts_with('[')) {
        if t0.elapsed() > first_rate || matches!(gen.child.try_wait(), Ok(Some(_))) {
            return Err(fail(
                "the generator never saw both links up".into(),
                &guest,
                &gen,
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    // The first rate line comes one second after sending started, SETTLE_S after the links
    // came up.
    let links_up_s = started.elapsed().as_secs_f64() - 1.0 - SETTLE_S;
    if let Err(e) = wait_file(
        &gen_json,
        &mut gen,
        Duration::from_secs_f64(g.seconds + 30.0),
    ) {
        return Err(fail(e, &guest, &gen));
    }
    guest.stop().map_err(|e| fail(e, &guest, &gen))?;
    let qemu_exit = guest.wait_exit(Duration::from_secs(60));
    let console = guest.console();
    let stats = stats_from_console(&console)
        .ok_or_else(|| fail("no stats JSON on the guest console".into(), &guest, &gen))?;
    let (dut_rx, dut_tx) = dut_port_counts(&stats)?;
    let (gen_tx, gen_rx) = gen_totals(&gen_json)?;
    let (rx_mpps, tx_mpps) = gen_rates(&gen.output(), warmup);
    Ok(VmOutcome {
        run: Run {
            kind: "vm",
            rx_mpps,
            tx_mpps,
            gen_tx,
            gen_rx,
            dut_rx,
            dut_tx,
            links_up_s,
            dut: stats,
        },
        console,
        qemu_exit,
        pinned,
    })
}

/// The same pipeline on the host: the guest config with virtio-user ports on the same kind
/// of sockets (the generator is the vhost-user server in both).
pub fn run_host(g: &GenOpts, warmup: usize) -> Result<Run, String> {
    let scratch = Scratch::new("vmhost");
    let (sock0, sock1) = (scratch.path("fh.sock"), scratch.path("mh.sock"));
    let guest_toml = std::fs::read_to_string(workspace_root().join(GUEST_CONFIG))
        .map_err(|e| format!("{GUEST_CONFIG}: {e}"))?;
    let cfg = scratch.path("host.toml");
    std::fs::write(
        &cfg,
        host_config(
            &guest_toml,
            &sock0,
            &sock1,
            &format!("vmhost-{}", scratch.tag),
        )?,
    )
    .map_err(|e| e.to_string())?;
    let gen_json = scratch.path("gen.json");
    let mut gen = start_generator(&scratch, &sock0, &sock1, g, &gen_json);
    if !crate::procs::wait_for_paths(&[&sock0, &sock1], Duration::from_secs(30)) {
        return Err(format!(
            "generator sockets never appeared:\n{}",
            gen.output()
        ));
    }
    let stats = scratch.path("dut.json");
    let started = Instant::now();
    let mut c = Command::new(workspace_bin("dataplane"));
    c.args(["run", "--config"])
        .arg(&cfg)
        .arg("--stats-json")
        .arg(&stats);
    c.args(["--no-hugepage-setup"]);
    let mut dut = Proc::spawn("dataplane", c, scratch.path("dataplane.log"));
    let t0 = Instant::now();
    while !gen.output().lines().any(|l| l.starts_with('[')) {
        if t0.elapsed().as_secs_f64() > g.link_timeout + 5.0
            || matches!(gen.child.try_wait(), Ok(Some(_)))
        {
            return Err(format!(
                "the generator never saw both links up:\n{}\n--- dataplane ---\n{}",
                gen.output(),
                dut.output()
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let links_up_s = started.elapsed().as_secs_f64() - 1.0 - SETTLE_S;
    wait_file(
        &gen_json,
        &mut gen,
        Duration::from_secs_f64(g.seconds + 30.0),
    )?;
    dut.interrupt();
    if dut.wait(Duration::from_secs(30)).is_none() {
        return Err(format!("host dataplane did not stop:\n{}", dut.output()));
    }
    let st: Value = serde_json::from_str(
        &std::fs::read_to_string(&stats)
            .map_err(|e| format!("host dataplane stats: {e}\n{}", dut.output()))?,
    )
    .map_err(|e| e.to_string())?;
    let (dut_rx, dut_tx) = dut_port_counts(&st)?;
    let (gen_tx, gen_rx) = gen_totals(&gen_json)?;
    let (rx_mpps, tx_mpps) = gen_rates(&gen.output(), warmup);
    Ok(Run {
        kind: "host",
        rx_mpps,
        tx_mpps,
        gen_tx,
        gen_rx,
        dut_rx,
        dut_tx,
        links_up_s,
        dut: st,
    })
}

fn median(v: &[f64]) -> f64 {
    let mut v: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
    v.sort_by(|a, b| a.total_cmp(b));
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// The results document: medians per side and, only for a VM under KVM with pinned
/// vCPUs, `vm_vs_host` (median of per-round ratios of interleaved runs). Under TCG the
/// run is labelled `functional` and carries no ratio: emulation speed says nothing about
/// the cost of virtualisation.
pub fn summarize(accel: Accel, pinned: bool, vm: &[Run], host: &[Run]) -> Value {
    let side = |runs: &[Run]| {
        let f: Vec<f64> = runs.iter().map(Run::forwarded).collect();
        json!({"runs": runs.len(), "forwarded_mpps_median": median(&f),
            "forwarded_mpps_min": f.iter().copied().fold(f64::INFINITY, f64::min),
            "forwarded_mpps_max": f.iter().copied().fold(0.0, f64::max),
            "samples_forwarded_mpps": f})
    };
    let perf_ok = accel == Accel::Kvm && pinned && !vm.is_empty() && !host.is_empty();
    let mut doc = json!({
        "accel": accel.name(),
        "vcpus_pinned": pinned,
        "label": if perf_ok { "performance" } else if vm.is_empty() { "host-only" } else { "functional" },
        "vm": side(vm),
        "host": side(host),
    });
    if perf_ok {
        let per: Vec<f64> = vm
            .iter()
            .zip(host)
            .map(|(v, h)| v.forwarded() / h.forwarded())
            .collect();
        doc["vm_vs_host"] = json!(median(&per));
        doc["vm_vs_host_per_round"] = json!(per);
    } else if !vm.is_empty() {
        doc["vm_vs_host"] = Value::Null;
        doc["why_no_ratio"] = json!(match (accel, pinned) {
            (Accel::Tcg, _) => "TCG: the guest runs under software emulation; its rate measures the emulator, not virtualisation overhead",
            (Accel::Kvm, false) => "KVM without pinned vCPUs: not comparable to the pinned host run",
            _ => "no paired runs",
        });
    }
    doc
}

/// The human summary line: a ratio only when [`summarize`] gave one.
pub fn summary_line(doc: &Value) -> String {
    let m = |k: &str| doc[k]["forwarded_mpps_median"].as_f64().unwrap_or(f64::NAN);
    match doc["vm_vs_host"].as_f64() {
        Some(r) => format!(
            "vm {:.3} Mpps, host {:.3} Mpps (medians, both directions): vm_vs_host = {r:.3} ({}, vCPUs pinned)",
            m("vm"),
            m("host"),
            doc["accel"].as_str().unwrap_or("?")
        ),
        None if doc["vm"]["runs"].as_u64().unwrap_or(0) == 0 => {
            format!("host {:.3} Mpps (median, both directions)", m("host"))
        }
        None => format!(
            "FUNCTIONAL run ({}): vm {:.3} Mpps, host {:.3} Mpps; no vm_vs_host ratio: {}",
            doc["accel"].as_str().unwrap_or("?"),
            m("vm"),
            m("host"),
            doc["why_no_ratio"].as_str().unwrap_or("")
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(kind: &'static str, mpps: f64) -> Run {
        Run {
            kind,
            rx_mpps: [mpps / 2.0, mpps / 2.0],
            tx_mpps: [mpps / 2.0, mpps / 2.0],
            gen_tx: [1, 1],
            gen_rx: [1, 1],
            dut_rx: [1, 1],
            dut_tx: [1, 1],
            links_up_s: 1.0,
            dut: Value::Null,
        }
    }

    #[test]
    fn no_ratio_under_tcg_or_unpinned_kvm() {
        let vm = [run("vm", 0.25), run("vm", 0.3)];
        let host = [run("host", 3.0), run("host", 3.2)];
        for (accel, pinned) in [(Accel::Tcg, true), (Accel::Tcg, false), (Accel::Kvm, false)] {
            let d = summarize(accel, pinned, &vm, &host);
            assert!(d["vm_vs_host"].is_null(), "{d}");
            assert!(d.get("vm_vs_host_per_round").is_none());
            assert_eq!(d["label"], "functional");
            let line = summary_line(&d);
            assert!(line.starts_with("FUNCTIONAL"), "{line}");
            assert!(!line.contains("vm_vs_host ="), "{line}");
        }
        let d = summarize(Accel::Kvm, true, &vm, &host);
        assert_eq!(d["label"], "performance");
        let r = d["vm_vs_host"].as_f64().unwrap();
        // Per-round ratios 0.25/3.0 and 0.3/3.2, median of two = their mean.
        assert!((r - (0.25 / 3.0 + 0.3 / 3.2) / 2.0).abs() < 1e-12, "{r}");
        assert!(summary_line(&d).contains("vm_vs_host = 0.089"));
        let d = summarize(Accel::Tcg, false, &[], &host);
        assert_eq!(d["label"], "host-only");
        assert!(d.get("vm_vs_host").is_none());
    }

    #[test]
    fn config_drive_describes_the_nics_as_nova_does() {
        let nics = pvp_nics(Path::new("/s0"), Path::new("/s1"));
        let m = meta_data_json(&nics);
        assert_eq!(m["devices"][0]["address"], "0000:00:04.0");
        assert_eq!(m["devices"][0]["tags"][0], "FRONTHAUL");
        assert_eq!(m["devices"][1]["address"], "0000:00:05.0");
        assert_eq!(m["devices"][1]["mac"], "fa:16:3e:00:00:02");
        let n = network_data_json(&nics);
        assert_eq!(n["links"][1]["ethernet_mac_address"], "fa:16:3e:00:00:02");
        assert_eq!(n["links"][1]["type"], "vhostuser");
    }

    #[test]
    fn host_config_is_the_guest_config_with_virtio_user_ports() {
        let guest = std::fs::read_to_string(workspace_root().join(GUEST_CONFIG)).unwrap();
        let h = host_config(
            &guest,
            Path::new("/a/fh.sock"),
            Path::new("/a/mh.sock"),
            "p1",
        )
        .unwrap();
        let t: toml::Table = h.parse().unwrap();
        let g: toml::Table = guest.parse().unwrap();
        assert_eq!(t["pipeline"], g["pipeline"], "same pipeline");
        assert!(t.get("discovery").is_none());
        assert_eq!(
            t["ports"]["fronthaul0"]["kind"].as_str(),
            Some("virtio-user")
        );
        assert_eq!(t["ports"]["midhaul0"]["path"].as_str(), Some("/a/mh.sock"));
        assert_eq!(t["eal"]["file_prefix"].as_str(), Some("p1"));
    }

    #[test]
    fn console_parsing() {
        let c = "DP-GUEST: x\n  [0] fronthaul0 role fronthaul  pci 0000:00:04.0     rxq 1 (from config drive meta_data.json devices[0] (mac m, tag FRONTHAUL): PCI 0000:00:04.0 from the metadata hint)\n[    1.0] kernel\nDP-STATS-BEGIN\n{\"ports\": [{\"name\": \"fronthaul0\", \"rx\": 5, \"tx\": 6}, {\"name\": \"midhaul0\", \"rx\": 7, \"tx\": 8}]}\nDP-STATS-END\n";
        let p = discovered_ports(c);
        assert_eq!(p.len(), 1);
        assert_eq!(
            (p[0].0.as_str(), p[0].1.as_str(), p[0].2.as_str()),
            ("fronthaul0", "fronthaul", "0000:00:04.0")
        );
        assert!(p[0].3.starts_with("config drive meta_data.json devices[0]"));
        let s = stats_from_console(c).unwrap();
        assert_eq!(dut_port_counts(&s).unwrap(), ([5, 7], [6, 8]));
        assert!(stats_from_console("DP-STATS-BEGIN\n{bad\nDP-STATS-END").is_none());
    }
}
