//! What a port is backed by: a PCI device (an SR-IOV VF) or a DPDK virtual device,
//! and how that becomes an EAL argument.

use std::fmt;
use std::path::PathBuf;

/// The device behind a port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Device {
    /// A PCI function bound to vfio-pci or uio (an SR-IOV VF, or virtio-net inside a VM).
    Pci {
        /// Address in `DDDD:BB:DD.F` form.
        address: String,
    },
    /// DPDK's vhost-user backend (`net_vhost`): we own the virtqueues' backend side.
    /// `client = false` creates the socket (vhost-user server).
    VhostUser {
        /// Unix socket path.
        path: PathBuf,
        /// Connect to an existing socket instead of creating it.
        client: bool,
    },
    /// DPDK's virtio-user frontend (`net_virtio_user`), towards a vhost-user backend.
    /// `server = true` creates the socket and waits for the backend to connect.
    VirtioUser {
        /// Unix socket path.
        path: PathBuf,
        /// Create the socket and wait (a pod-side vhost-user server).
        server: bool,
    },
    /// A memif interface (`net_memif`).
    Memif {
        /// Control socket path.
        socket: PathBuf,
        /// Whether this side is the memif server (master).
        server: bool,
        /// Interface id on the socket.
        id: u32,
    },
    /// An in-memory ring pair (`net_ring`), for tests.
    Ring,
    /// A pcap file or interface (`net_pcap`).
    Pcap {
        /// Read packets from this file.
        rx_pcap: Option<PathBuf>,
        /// Write packets to this file.
        tx_pcap: Option<PathBuf>,
        /// Or: capture on and send to this kernel interface.
        iface: Option<String>,
    },
    /// A kernel TAP interface (`net_tap`).
    Tap {
        /// Interface name to create.
        iface: String,
    },
    /// A sink that drops everything and a source of empty packets (`net_null`).
    Null,
    /// AF_PACKET socket on a kernel interface (`net_af_packet`).
    AfPacket {
        /// Kernel interface name.
        iface: String,
    },
}

/// How a device is handed to EAL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EalDevice {
    /// `-a <pci>`; the ethdev is then named by its PCI address.
    Allow(String),
    /// `--vdev <name>,<args>`; the ethdev is named `<name>`.
    Vdev {
        /// Unique vdev name, e.g. `net_vhost0`.
        name: String,
        /// Comma-separated driver arguments (may be empty).
        args: String,
    },
}

impl EalDevice {
    /// The ethdev name EAL gives the port (for `rte_eth_dev_get_port_by_name`).
    pub fn ethdev_name(&self) -> &str {
        match self {
            EalDevice::Allow(a) => a,
            EalDevice::Vdev { name, .. } => name,
        }
    }

    /// The EAL arguments for this device.
    pub fn eal_args(&self) -> [String; 2] {
        match self {
            EalDevice::Allow(a) => ["-a".into(), a.clone()],
            EalDevice::Vdev { name, args } if args.is_empty() => ["--vdev".into(), name.clone()],
            EalDevice::Vdev { name, args } => ["--vdev".into(), format!("{name},{args}")],
        }
    }
}

impl Device {
    /// The short kind name used in config (`pci`, `vhost-user`, ...).
    pub fn kind(&self) -> &'static str {
        match self {
            Device::Pci { .. } => "pci",
            Device::VhostUser { .. } => "vhost-user",
            Device::VirtioUser { .. } => "virtio-user",
            Device::Memif { .. } => "memif",
            Device::Ring => "ring",
            Device::Pcap { .. } => "pcap",
            Device::Tap { .. } => "tap",
            Device::Null => "null",
            Device::AfPacket { .. } => "af_packet",
        }
    }

    /// The EAL device for this port. `index` makes vdev names unique (the port's position).
    /// `queues` is passed to drivers that take the queue count as a device argument.
    pub fn eal_device(&self, index: usize, queues: u16) -> EalDevice {
        let vdev = |driver: &str, args: String| EalDevice::Vdev {
            name: format!("{driver}{index}"),
            args,
        };
        match self {
            Device::Pci { address } => EalDevice::Allow(address.clone()),
            Device::VhostUser { path, client } => vdev(
                "net_vhost",
                format!(
                    "iface={},queues={queues}{}",
                    path.display(),
                    if *client { ",client=1" } else { "" }
                ),
            ),
            Device::VirtioUser { path, server } => vdev(
                "net_virtio_user",
                format!(
                    "path={},queues={queues}{}",
                    path.display(),
                    if *server { ",server=1" } else { "" }
                ),
            ),
            Device::Memif { socket, server, id } => vdev(
                "net_memif",
                format!(
                    "socket={},role={},id={id}",
                    socket.display(),
                    if *server { "server" } else { "client" }
                ),
            ),
            // `rte_eth_from_rings(name)` names its ethdev `net_ring_<name>`: use the same form.
            Device::Ring => vdev("net_ring_", String::new()),
            Device::Pcap {
                rx_pcap,
                tx_pcap,
                iface,
            } => {
                let mut args = Vec::new();
                if let Some(i) = iface {
                    args.push(format!("iface={i}"));
                }
                if let Some(p) = rx_pcap {
                    args.push(format!("rx_pcap={}", p.display()));
                }
                if let Some(p) = tx_pcap {
                    args.push(format!("tx_pcap={}", p.display()));
                }
                vdev("net_pcap", args.join(","))
            }
            Device::Tap { iface } => vdev("net_tap", format!("iface={iface}")),
            Device::Null => vdev("net_null", String::new()),
            Device::AfPacket { iface } => {
                vdev("net_af_packet", format!("iface={iface},qpairs={queues}"))
            }
        }
    }
}

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.eal_device(0, 1) {
            EalDevice::Allow(a) => write!(f, "pci {a}"),
            EalDevice::Vdev { args, .. } => write!(f, "{} {args}", self.kind()),
        }
    }
}
