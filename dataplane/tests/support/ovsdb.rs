//! A real `ovsdb-server` (Debian's ovn-central) serving a fresh OVN Northbound database for
//! one test: its own directory, database file, unix sockets, unixctl socket and log; killed
//! and its directory removed on drop.
//!
//! The server listens on two unix sockets: `admin` (for `ovn-nbctl`, always open) and
//! `client` (for the client under test), so a test can restart the server with the client's
//! socket closed, change rows, and only then let the client back in.
#![allow(dead_code)]

use std::net::{TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

const NB_SCHEMA: &str = "/usr/share/ovn/ovn-nb.ovsschema";

static SEQ: AtomicU32 = AtomicU32::new(0);

/// The `_uuid` of the `table` row whose `name` is `name`, through `nbctl` (an `ovn-nbctl`
/// runner: [`NbServer::nbctl`], or a test's own on another remote).
pub fn uuid_named(nbctl: &dyn Fn(&[&str]) -> String, table: &str, name: &str) -> String {
    nbctl(&[
        "--bare",
        "--columns=_uuid",
        "find",
        table,
        &format!("name={name}"),
    ])
}

/// A CA, a server and a client certificate made with the `openssl` CLI (EC P-256, no
/// subjectAltName, as ovs-pki makes them).
pub struct Pki {
    /// CA certificate.
    pub ca: PathBuf,
    /// Server key and certificate.
    pub server_key: PathBuf,
    /// Server certificate.
    pub server_cert: PathBuf,
    /// Client key.
    pub client_key: PathBuf,
    /// Client certificate.
    pub client_cert: PathBuf,
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

impl Pki {
    /// Makes the certificates in `dir`.
    pub fn make(dir: &Path) -> Pki {
        let p = |n: &str| dir.join(n);
        let ext = p("leaf.ext");
        std::fs::write(
            &ext,
            "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth,clientAuth\n",
        )
        .unwrap();
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        run(Command::new("openssl")
            .args(["req", "-x509"])
            .args(ec)
            .arg("-keyout")
            .arg(p("ca.key"))
            .arg("-out")
            .arg(p("ca.pem"))
            .args(["-days", "2", "-subj", "/CN=test ovsdb CA"])
            .args(["-addext", "basicConstraints=critical,CA:TRUE"])
            .args(["-addext", "keyUsage=critical,keyCertSign,cRLSign"]));
        for who in ["server", "client"] {
            run(Command::new("openssl")
                .arg("req")
                .args(ec)
                .arg("-keyout")
                .arg(p(&format!("{who}.key")))
                .arg("-out")
                .arg(p(&format!("{who}.csr")))
                .args(["-subj", &format!("/CN=ovsdb {who}")]));
            run(Command::new("openssl")
                .args(["x509", "-req", "-days", "2", "-CAcreateserial"])
                .arg("-in")
                .arg(p(&format!("{who}.csr")))
                .arg("-CA")
                .arg(p("ca.pem"))
                .arg("-CAkey")
                .arg(p("ca.key"))
                .arg("-extfile")
                .arg(&ext)
                .arg("-out")
                .arg(p(&format!("{who}.pem"))));
        }
        Pki {
            ca: p("ca.pem"),
            server_key: p("server.key"),
            server_cert: p("server.pem"),
            client_key: p("client.key"),
            client_cert: p("client.pem"),
        }
    }
}

/// A free TCP port on 127.0.0.1 (bound and released: the server binds it right after).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One ovsdb-server with its own NB database.
pub struct NbServer {
    /// The test's directory (database, sockets, log, certificates).
    pub dir: PathBuf,
    db: PathBuf,
    admin: PathBuf,
    client: PathBuf,
    ctl: PathBuf,
    child: Option<Child>,
    /// `pssl:` port and certificates, when started with TLS.
    pub tls: Option<(u16, Pki)>,
}

impl NbServer {
    /// A fresh database, server started (unix sockets only).
    pub fn start(tag: &str) -> NbServer {
        Self::create(tag, false)
    }

    /// A fresh database, server started with a `pssl:` listener on 127.0.0.1 too.
    pub fn start_tls(tag: &str) -> NbServer {
        Self::create(tag, true)
    }

    fn create(tag: &str, tls: bool) -> NbServer {
        let dir = std::env::temp_dir().join(format!(
            "ovn-{tag}-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let db = dir.join("nb.db");
        run(Command::new("ovsdb-tool")
            .arg("create")
            .arg(&db)
            .arg(NB_SCHEMA));
        let tls = tls.then(|| (free_port(), Pki::make(&dir)));
        let mut s = NbServer {
            admin: dir.join("admin.sock"),
            client: dir.join("nb.sock"),
            ctl: dir.join("ovsdb-server.ctl"),
            db,
            dir,
            child: None,
            tls,
        };
        s.launch(true);
        s.nbctl(&["init"]);
        s
    }

    fn launch(&mut self, client_socket: bool) {
        for f in [&self.admin, &self.client, &self.ctl] {
            let _ = std::fs::remove_file(f);
        }
        let mut cmd = Command::new("ovsdb-server");
        cmd.arg(&self.db)
            .arg(format!("--remote=punix:{}", self.admin.display()))
            // Listeners of NB_Global.connections too (`ovn-nbctl set-connection`).
            .arg("--remote=db:OVN_Northbound,NB_Global,connections")
            .arg(format!("--unixctl={}", self.ctl.display()))
            .arg(format!(
                "--log-file={}",
                self.dir.join("ovsdb-server.log").display()
            ))
            .arg("-vconsole:off")
            .env("OVS_RUNDIR", &self.dir)
            .env("OVS_DBDIR", &self.dir)
            .env("OVS_LOGDIR", &self.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if client_socket {
            cmd.arg(format!("--remote=punix:{}", self.client.display()));
        }
        if let Some((port, pki)) = &self.tls {
            cmd.arg(format!("--remote=pssl:{port}:127.0.0.1"))
                .arg(format!("--private-key={}", pki.server_key.display()))
                .arg(format!("--certificate={}", pki.server_cert.display()))
                .arg(format!("--ca-cert={}", pki.ca.display()));
        }
        self.child = Some(cmd.spawn().expect("ovsdb-server starts"));
        let deadline = Instant::now() + Duration::from_secs(10);
        while UnixStream::connect(&self.admin).is_err()
            || (client_socket && UnixStream::connect(&self.client).is_err())
            || self
                .tls
                .as_ref()
                .is_some_and(|(p, _)| TcpStream::connect(("127.0.0.1", *p)).is_err())
        {
            assert!(
                Instant::now() < deadline,
                "ovsdb-server did not come up: see {}",
                self.dir.display()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The server's process id, while it runs (benchmarks read its CPU time).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// The remote the client under test uses.
    pub fn remote(&self) -> String {
        format!("unix:{}", self.client.display())
    }

    /// The `ssl:` remote.
    pub fn ssl_remote(&self) -> String {
        format!(
            "ssl:127.0.0.1:{}",
            self.tls.as_ref().expect("started with TLS").0
        )
    }

    /// Runs `ovn-nbctl` on the admin socket; returns its output (trimmed).
    pub fn nbctl(&self, args: &[&str]) -> String {
        run(Command::new("ovn-nbctl")
            .arg(format!("--db=unix:{}", self.admin.display()))
            .args(args)
            .env_remove("OVN_NB_DAEMON"))
        .trim()
        .to_string()
    }

    /// The `_uuid` of the `table` row named `name` ([`uuid_named`]).
    pub fn uuid_named(&self, table: &str, name: &str) -> String {
        uuid_named(&|a| self.nbctl(a), table, name)
    }

    /// Kills the server (SIGKILL: no goodbye to clients).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts the server again on the same database file, the client's socket open.
    pub fn restart(&mut self) {
        self.kill();
        self.launch(true);
    }

    /// Starts the server again with only the admin socket (the client cannot come back yet).
    pub fn restart_hidden(&mut self) {
        self.kill();
        self.launch(false);
    }

    /// Opens the client's socket on a running server.
    pub fn expose(&self) {
        run(Command::new("ovs-appctl")
            .arg("-t")
            .arg(&self.ctl)
            .arg("ovsdb-server/add-remote")
            .arg(format!("punix:{}", self.client.display())));
    }
}

impl Drop for NbServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// One member of a clustered NB.
struct Member {
    db: PathBuf,
    sock: PathBuf,
    ctl: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

/// A three-server clustered NB on 127.0.0.1 (raft over TCP, clients on unix sockets).
pub struct NbCluster {
    dir: PathBuf,
    members: Vec<Member>,
}

impl NbCluster {
    /// Creates the cluster (`create-cluster` then two `join-cluster`) and starts its servers.
    pub fn start(tag: &str) -> NbCluster {
        let dir = std::env::temp_dir().join(format!(
            "ovn-{tag}-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
        let raft = |i: usize| format!("tcp:127.0.0.1:{}", ports[i]);
        let mut members = Vec::new();
        for i in 0..3 {
            let db = dir.join(format!("s{i}.db"));
            if i == 0 {
                run(Command::new("ovsdb-tool")
                    .arg("create-cluster")
                    .arg(&db)
                    .arg(NB_SCHEMA)
                    .arg(raft(0)));
            } else {
                run(Command::new("ovsdb-tool")
                    .arg("join-cluster")
                    .arg(&db)
                    .arg("OVN_Northbound")
                    .arg(raft(i))
                    .arg(raft(0)));
            }
            members.push(Member {
                db,
                sock: dir.join(format!("s{i}.sock")),
                ctl: dir.join(format!("s{i}.ctl")),
                log: dir.join(format!("s{i}.log")),
                child: None,
            });
        }
        let mut c = NbCluster { dir, members };
        for i in 0..3 {
            c.launch(i);
        }
        c.nbctl(&["init"]);
        c
    }

    fn launch(&mut self, i: usize) {
        let m = &mut self.members[i];
        let _ = std::fs::remove_file(&m.sock);
        let _ = std::fs::remove_file(&m.ctl);
        let child = Command::new("ovsdb-server")
            .arg(&m.db)
            .arg(format!("--remote=punix:{}", m.sock.display()))
            .arg(format!("--unixctl={}", m.ctl.display()))
            .arg(format!("--log-file={}", m.log.display()))
            .arg("-vconsole:off")
            .env("OVS_RUNDIR", &self.dir)
            .env("OVS_DBDIR", &self.dir)
            .env("OVS_LOGDIR", &self.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("ovsdb-server starts");
        m.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while UnixStream::connect(&m.sock).is_err() {
            assert!(
                Instant::now() < deadline,
                "ovsdb-server {i} did not come up"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The client's remotes, every member.
    pub fn remotes(&self) -> String {
        let r: Vec<String> = self
            .members
            .iter()
            .map(|m| format!("unix:{}", m.sock.display()))
            .collect();
        r.join(",")
    }

    /// The index of the member a remote string names.
    pub fn index_of(&self, remote: &str) -> usize {
        self.members
            .iter()
            .position(|m| format!("unix:{}", m.sock.display()) == remote)
            .unwrap_or_else(|| panic!("{remote} is no member"))
    }

    /// Runs `ovn-nbctl` against the live members, again until it works while the cluster
    /// elects a leader (ovn-nbctl gives up at once when none answers as leader).
    pub fn nbctl(&self, args: &[&str]) -> String {
        let live: Vec<String> = self
            .members
            .iter()
            .filter(|m| m.child.is_some())
            .map(|m| format!("unix:{}", m.sock.display()))
            .collect();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let out = Command::new("ovn-nbctl")
                .arg(format!("--db={}", live.join(",")))
                .arg("--timeout=30")
                .args(args)
                .env_remove("OVN_NB_DAEMON")
                .output()
                .expect("ovn-nbctl runs");
            if out.status.success() {
                return String::from_utf8_lossy(&out.stdout).trim().to_string();
            }
            assert!(
                Instant::now() < deadline,
                "ovn-nbctl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Kills one member.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.members[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for NbCluster {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.kill(i);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
