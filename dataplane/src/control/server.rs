//! The control socket's server side: a non-blocking unix listener and its clients, served a
//! step at a time from the main lcore's control loop (never blocking it: a client that is
//! slow to send, slow to read or dead costs one failed non-blocking call per pass).

use std::io::{self, ErrorKind, Read, Write};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::Serialize;

use super::protocol::{parse_request, Request, Response, MAX_REQUEST};

/// Most clients connected at once; one more is told so and closed.
pub const MAX_CLIENTS: usize = 128;

/// How long a connected client may stay silent (no complete request, nothing read from its
/// answer) before it is closed.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Counters of the control socket.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ServerStats {
    /// Connections accepted.
    pub accepted: u64,
    /// Connections refused because [`MAX_CLIENTS`] were connected.
    pub refused_busy: u64,
    /// Requests answered (well-formed or not).
    pub requests: u64,
    /// Requests refused (malformed, unknown command, bad arguments, failed).
    pub errors: u64,
    /// Requests longer than [`MAX_REQUEST`].
    pub oversize: u64,
    /// Clients closed for silence ([`REQUEST_TIMEOUT`]).
    pub timeouts: u64,
}

struct Client {
    stream: UnixStream,
    input: Vec<u8>,
    output: Vec<u8>,
    written: usize,
    last_activity: Instant,
    /// Close once the output is written (EOF seen, or an oversize request refused).
    closing: bool,
    dead: bool,
}

impl Client {
    fn flush(&mut self) {
        while self.written < self.output.len() {
            match self.stream.write(&self.output[self.written..]) {
                Ok(0) => {
                    self.dead = true;
                    return;
                }
                Ok(n) => {
                    self.written += n;
                    self.last_activity = Instant::now();
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => {
                    self.dead = true;
                    return;
                }
            }
        }
        self.output.clear();
        self.written = 0;
    }

    /// Reads what is there, up to one byte past the request limit.
    fn fill(&mut self) {
        let mut buf = [0u8; 4096];
        while self.input.len() <= MAX_REQUEST {
            match self.stream.read(&mut buf) {
                Ok(0) => {
                    self.closing = true;
                    return;
                }
                Ok(n) => {
                    self.input.extend_from_slice(&buf[..n]);
                    self.last_activity = Instant::now();
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => {
                    self.dead = true;
                    return;
                }
            }
        }
    }

    fn pending_output(&self) -> bool {
        self.written < self.output.len()
    }
}

/// A listening control socket and its clients.
pub struct ControlServer {
    listener: UnixListener,
    path: PathBuf,
    clients: Vec<Client>,
    stats: ServerStats,
}

impl std::fmt::Debug for ControlServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlServer")
            .field("path", &self.path)
            .field("clients", &self.clients.len())
            .finish()
    }
}

impl ControlServer {
    /// Listens on `path` (mode 0600: only its owner, root, may connect). Creates the folder;
    /// replaces a stale socket file nobody answers on; refuses a path another process serves.
    pub fn bind(path: &Path) -> io::Result<ControlServer> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        if let Ok(m) = std::fs::symlink_metadata(path) {
            if !m.file_type().is_socket() {
                return Err(io::Error::new(
                    ErrorKind::AlreadyExists,
                    format!("{} exists and is not a socket", path.display()),
                ));
            }
            if UnixStream::connect(path).is_ok() {
                return Err(io::Error::new(
                    ErrorKind::AddrInUse,
                    format!("{} is served by another process", path.display()),
                ));
            }
            std::fs::remove_file(path)?;
        }
        let listener = UnixListener::bind(path)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
        listener.set_nonblocking(true)?;
        Ok(ControlServer {
            listener,
            path: path.to_owned(),
            clients: Vec::new(),
            stats: ServerStats::default(),
        })
    }

    /// The socket's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Clients connected now.
    pub fn clients(&self) -> usize {
        self.clients.len()
    }

    /// The counters.
    pub fn stats(&self) -> ServerStats {
        self.stats
    }

    /// One step: accepts new clients, reads what they sent, answers complete requests
    /// through `handle` (one request per client per step), writes what the sockets take,
    /// and closes clients that are done, dead or silent too long. Never blocks.
    pub fn serve(&mut self, mut handle: impl FnMut(Request) -> Response) {
        self.accept();
        let now = Instant::now();
        for c in &mut self.clients {
            if now.duration_since(c.last_activity) > REQUEST_TIMEOUT {
                self.stats.timeouts += 1;
                c.dead = true;
                continue;
            }
            if c.pending_output() {
                c.flush();
            }
            if c.pending_output() || c.dead {
                continue;
            }
            if !c.closing {
                c.fill();
            }
            if let Some(end) = c.input.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = c.input.drain(..=end).collect();
                let response = if line.len() > MAX_REQUEST {
                    self.stats.oversize += 1;
                    c.closing = true;
                    c.input.clear();
                    Response::error(format!("request longer than {MAX_REQUEST} bytes"))
                } else {
                    match parse_request(&line[..line.len() - 1]) {
                        Ok(req) => handle(req),
                        Err(reason) => Response::error(reason),
                    }
                };
                self.stats.requests += 1;
                if !response.ok {
                    self.stats.errors += 1;
                }
                c.output = response.to_line();
                c.written = 0;
                c.flush();
            } else if c.input.len() > MAX_REQUEST {
                self.stats.requests += 1;
                self.stats.errors += 1;
                self.stats.oversize += 1;
                c.input.clear();
                c.closing = true;
                c.output =
                    Response::error(format!("request longer than {MAX_REQUEST} bytes")).to_line();
                c.written = 0;
                c.flush();
            } else if c.closing && !c.input.is_empty() {
                // EOF in the middle of a request: nothing to answer.
                c.input.clear();
            }
        }
        // Keep a client unless it is dead, or closing with nothing left to answer or write.
        self.clients.retain(|c| {
            let done = c.closing && !c.pending_output() && !c.input.contains(&b'\n');
            !c.dead && !done
        });
    }

    fn accept(&mut self) {
        loop {
            match self.listener.accept() {
                Ok((stream, _)) => {
                    self.stats.accepted += 1;
                    if self.clients.len() >= MAX_CLIENTS || stream.set_nonblocking(true).is_err() {
                        self.stats.refused_busy += 1;
                        let _ = stream.set_nonblocking(true);
                        let line = Response::error(format!(
                            "busy: {MAX_CLIENTS} clients connected, try again"
                        ))
                        .to_line();
                        let _ = (&stream).write(&line);
                        continue;
                    }
                    self.clients.push(Client {
                        stream,
                        input: Vec::new(),
                        output: Vec::new(),
                        written: 0,
                        last_activity: Instant::now(),
                        closing: false,
                        dead: false,
                    });
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => return,
            }
        }
    }
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader};

    fn server(tag: &str) -> ControlServer {
        let dir = std::env::temp_dir().join(format!("ctl-test-{tag}-{}", std::process::id()));
        ControlServer::bind(&dir.join("s.sock")).expect("binds")
    }

    fn echo(req: Request) -> Response {
        if req.argv[0] == "fail" {
            return Response::error("failed as asked");
        }
        Response {
            ok: true,
            text: req.argv.join(" "),
            data: serde_json::Value::Null,
            error: String::new(),
        }
    }

    /// Serves until `done` says so (bounded).
    fn serve_until(s: &mut ControlServer, mut done: impl FnMut(&ControlServer) -> bool) {
        for _ in 0..2000 {
            s.serve(echo);
            if done(s) {
                return;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        panic!("server never got there");
    }

    fn ask(s: &mut ControlServer, conn: &mut UnixStream, line: &[u8]) -> Response {
        conn.write_all(line).unwrap();
        conn.set_nonblocking(true).unwrap();
        let mut got = Vec::new();
        for _ in 0..2000 {
            s.serve(echo);
            let mut buf = [0u8; 65536];
            match conn.read(&mut buf) {
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(e) => panic!("{e}"),
            }
            if got.ends_with(b"\n") {
                conn.set_nonblocking(false).unwrap();
                return serde_json::from_slice(&got).unwrap();
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        panic!("no answer");
    }

    #[test]
    fn answers_requests_in_order_on_one_connection_and_several() {
        let mut s = server("order");
        let mut a = UnixStream::connect(s.path()).unwrap();
        let mut b = UnixStream::connect(s.path()).unwrap();
        let r = ask(&mut s, &mut a, b"{\"argv\":[\"show\",\"runtime\"]}\n");
        assert_eq!((r.ok, r.text.as_str()), (true, "show runtime"));
        let r = ask(&mut s, &mut b, b"{\"argv\":[\"fail\"]}\n");
        assert_eq!((r.ok, r.error.as_str()), (false, "failed as asked"));
        let r = ask(&mut s, &mut a, b"not json\n");
        assert!(!r.ok && r.error.contains("argv"), "{}", r.error);
        let r = ask(&mut s, &mut a, b"{\"argv\":[\"again\"]}\n");
        assert_eq!(r.text, "again");
        let st = s.stats();
        assert_eq!((st.accepted, st.requests, st.errors), (2, 4, 2));
    }

    #[test]
    fn an_oversize_request_is_refused_and_its_client_closed() {
        let mut s = server("oversize");
        let mut c = UnixStream::connect(s.path()).unwrap();
        let big = vec![b'x'; MAX_REQUEST + 10];
        let writer = {
            let mut c2 = c.try_clone().unwrap();
            std::thread::spawn(move || {
                let _ = c2.write_all(&big);
            })
        };
        serve_until(&mut s, |s| s.stats().oversize == 1);
        let mut line = String::new();
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        BufReader::new(&mut c).read_line(&mut line).unwrap();
        let r: Response = serde_json::from_str(&line).unwrap();
        assert!(!r.ok && r.error.contains("longer than"), "{}", r.error);
        serve_until(&mut s, |s| s.clients() == 0);
        let _ = writer.join();
    }

    #[test]
    fn a_client_that_closes_mid_request_is_dropped_without_an_answer() {
        let mut s = server("eof");
        let mut c = UnixStream::connect(s.path()).unwrap();
        c.write_all(b"{\"argv\":[\"x\"").unwrap();
        drop(c);
        serve_until(&mut s, |s| s.stats().accepted == 1 && s.clients() == 0);
        assert_eq!(s.stats().requests, 0);
    }

    #[test]
    fn a_second_server_on_a_live_path_is_refused_and_a_stale_file_replaced() {
        let s = server("twice");
        let e = ControlServer::bind(s.path()).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::AddrInUse);
        let path = s.path().to_owned();
        // A stale socket file (its listener gone without removing it) is replaced.
        let stale = UnixListener::bind(path.with_extension("stale")).unwrap();
        drop(stale);
        let again = ControlServer::bind(&path.with_extension("stale")).expect("replaces");
        drop(again);
        drop(s);
        assert!(!path.exists(), "the socket file is removed on drop");
    }

    #[test]
    fn the_socket_is_owner_only() {
        let s = server("mode");
        let mode = std::fs::metadata(s.path()).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
}
