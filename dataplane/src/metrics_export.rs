//! Prometheus export: the main lcore publishes the counters it already reads (ports, workers,
//! pipeline nodes) through the `metrics` crate, and serves them as text on a TCP address
//! (localhost by default) from its own control loop. Workers never touch this.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use metrics::{counter, gauge};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use pipeline::RuntimeSnapshot;

use crate::counters::WorkerSnapshot;
use crate::dpdk::PortStats;

/// The default listen address.
pub const DEFAULT_ADDR: &str = "127.0.0.1:9464";

/// How long a client may take to send its request (a slow or starved one is read over
/// several control passes, never waited for).
const REQUEST_DEADLINE: Duration = Duration::from_secs(5);

/// Most connections read at once (the oldest is dropped beyond).
const MAX_CONNECTIONS: usize = 16;

/// The largest request read (a scraper's is a few hundred bytes).
const MAX_REQUEST: usize = 8192;

/// A Prometheus endpoint served from the control loop.
pub struct Exporter {
    handle: PrometheusHandle,
    listener: TcpListener,
    /// Accepted connections whose request has not fully arrived yet.
    reading: Vec<Conn>,
}

/// One accepted connection and what it sent so far.
struct Conn {
    stream: TcpStream,
    since: Instant,
    request: Vec<u8>,
}

/// What one read pass did with a connection.
enum Step {
    /// The request is whole (its headers ended, or it filled the buffer).
    Complete,
    /// More may come.
    Waiting,
    /// Closed, failed or too late: dropped without an answer.
    Gone,
}

impl Exporter {
    /// Installs the global `metrics` recorder and binds `addr` (non-blocking).
    pub fn start(addr: SocketAddr) -> Result<Exporter, String> {
        let handle = PrometheusBuilder::new()
            .install_recorder()
            .map_err(|e| format!("metrics recorder: {e}"))?;
        Self::serving(addr, handle)
    }

    /// Binds `addr` (non-blocking) to serve what `handle` renders.
    fn serving(addr: SocketAddr, handle: PrometheusHandle) -> Result<Exporter, String> {
        let listener = TcpListener::bind(addr).map_err(|e| format!("binding {addr}: {e}"))?;
        listener
            .set_nonblocking(true)
            .map_err(|e| format!("{addr}: {e}"))?;
        Ok(Exporter {
            handle,
            listener,
            reading: Vec::new(),
        })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.listener.local_addr().ok()
    }

    /// Takes new connections and answers those whose request has arrived whole, without
    /// waiting for any: a request still on its way (a client the scheduler has not run since
    /// it connected) is read again at the next pass, until [`REQUEST_DEADLINE`]. A
    /// connection is closed only once its request was read, so the client never gets a
    /// reset instead of its answer.
    pub fn serve_pending(&mut self) {
        for _ in 0..4 {
            let Ok((stream, _)) = self.listener.accept() else {
                break;
            };
            if stream.set_nonblocking(true).is_err() {
                continue;
            }
            if self.reading.len() >= MAX_CONNECTIONS {
                self.reading.remove(0);
            }
            self.reading.push(Conn {
                stream,
                since: Instant::now(),
                request: Vec::new(),
            });
        }
        let mut i = 0;
        while i < self.reading.len() {
            match self.reading[i].read_more() {
                Step::Waiting => i += 1,
                Step::Gone => {
                    self.reading.swap_remove(i);
                }
                Step::Complete => {
                    let c = self.reading.swap_remove(i);
                    self.answer(c);
                }
            }
        }
    }

    /// Writes the answer to a whole request and closes the connection.
    fn answer(&self, mut c: Conn) {
        let req = String::from_utf8_lossy(&c.request);
        let (status, body) = if req.starts_with("GET /metrics") || req.starts_with("GET / ") {
            ("200 OK", self.handle.render())
        } else {
            ("404 Not Found", "try /metrics\n".to_string())
        };
        let _ = c.stream.set_nonblocking(false);
        let _ = c.stream.set_write_timeout(Some(Duration::from_millis(500)));
        let _ = write!(
            c.stream,
            "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        let _ = c.stream.shutdown(std::net::Shutdown::Write);
    }
}

impl Conn {
    /// Reads what arrived (non-blocking).
    fn read_more(&mut self) -> Step {
        let mut buf = [0u8; 1024];
        loop {
            match self.stream.read(&mut buf) {
                Ok(0) => return Step::Gone,
                Ok(n) => {
                    let room = MAX_REQUEST - self.request.len();
                    self.request.extend_from_slice(&buf[..n.min(room)]);
                    if self.request.len() >= MAX_REQUEST {
                        return Step::Complete;
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => return Step::Gone,
            }
        }
        let r = &self.request;
        if r.windows(4).any(|w| w == b"\r\n\r\n") || r.windows(2).any(|w| w == b"\n\n") {
            Step::Complete
        } else if self.since.elapsed() > REQUEST_DEADLINE {
            Step::Gone
        } else {
            Step::Waiting
        }
    }
}

/// Publishes a port's hardware counters and link state.
pub fn publish_port(name: &str, role: &str, hw: &PortStats, link_up: bool) {
    let l = [("port", name.to_string()), ("role", role.to_string())];
    counter!("dataplane_port_rx_packets_total", &l).absolute(hw.ipackets);
    counter!("dataplane_port_tx_packets_total", &l).absolute(hw.opackets);
    counter!("dataplane_port_rx_bytes_total", &l).absolute(hw.ibytes);
    counter!("dataplane_port_tx_bytes_total", &l).absolute(hw.obytes);
    counter!("dataplane_port_rx_missed_total", &l).absolute(hw.imissed);
    counter!("dataplane_port_rx_errors_total", &l).absolute(hw.ierrors);
    counter!("dataplane_port_tx_errors_total", &l).absolute(hw.oerrors);
    gauge!("dataplane_port_link_up", &l).set(if link_up { 1.0 } else { 0.0 });
}

/// Publishes one worker's counters (per port: what it received, sent and dropped).
pub fn publish_worker(lcore: u32, w: &WorkerSnapshot, port_names: &[String]) {
    let lc = lcore.to_string();
    counter!("dataplane_worker_polls_total", "lcore" => lc.clone()).absolute(w.polls);
    counter!("dataplane_worker_busy_polls_total", "lcore" => lc.clone()).absolute(w.busy_polls);
    counter!("dataplane_worker_busy_cycles_total", "lcore" => lc.clone()).absolute(w.busy_cycles);
    for (p, name) in w.ports.iter().zip(port_names) {
        let l = [("lcore", lc.clone()), ("port", name.clone())];
        counter!("dataplane_worker_rx_packets_total", &l).absolute(p.rx);
        counter!("dataplane_worker_tx_packets_total", &l).absolute(p.tx);
        counter!("dataplane_worker_tx_dropped_total", &l).absolute(p.tx_dropped);
        counter!("dataplane_worker_rx_no_route_total", &l).absolute(p.rx_no_route);
    }
}

/// Publishes a worker's pipeline node counters (calls, vectors, packets, cycles, drops by reason).
pub fn publish_pipeline(lcore: u32, rt: &RuntimeSnapshot) {
    let lc = lcore.to_string();
    for n in &rt.nodes {
        let l = [("lcore", lc.clone()), ("node", n.name.clone())];
        counter!("dataplane_node_calls_total", &l).absolute(n.calls);
        counter!("dataplane_node_vectors_total", &l).absolute(n.vectors);
        counter!("dataplane_node_packets_total", &l).absolute(n.packets);
        counter!("dataplane_node_cycles_total", &l).absolute(n.cycles);
        for d in &n.drops {
            let l = [
                ("lcore", lc.clone()),
                ("node", n.name.clone()),
                ("reason", d.name.clone()),
            ];
            counter!("dataplane_node_drops_total", &l).absolute(d.count);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exporter() -> Exporter {
        let handle = PrometheusBuilder::new().build_recorder().handle();
        Exporter::serving("127.0.0.1:0".parse().unwrap(), handle).unwrap()
    }

    fn response(mut s: TcpStream) -> String {
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).expect("an answer, not a reset");
        out
    }

    /// A client that sends its request in pieces, over several control passes, gets its
    /// answer (it used to get a 404 and a reset when its request came late), and a client
    /// that says nothing holds up no one.
    #[test]
    fn slow_clients_are_answered_and_silent_ones_wait_alone() {
        let mut e = exporter();
        let addr = e.local_addr().unwrap();
        let silent = TcpStream::connect(addr).unwrap();
        let mut slow = TcpStream::connect(addr).unwrap();
        slow.write_all(b"GET /metr").unwrap();
        for _ in 0..5 {
            e.serve_pending();
            std::thread::sleep(Duration::from_millis(60));
        }
        assert_eq!(e.reading.len(), 2, "both wait for their requests");
        slow.write_all(b"ics HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let mut quick = TcpStream::connect(addr).unwrap();
        quick.write_all(b"GET /nothing HTTP/1.1\r\n\r\n").unwrap();
        for _ in 0..20 {
            e.serve_pending();
            if e.reading.len() == 1 {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(e.reading.len(), 1, "only the silent client is left");
        assert!(response(slow).starts_with("HTTP/1.1 200 OK\r\n"));
        assert!(response(quick).starts_with("HTTP/1.1 404 Not Found\r\n"));
        // The silent one goes when it closes.
        drop(silent);
        for _ in 0..20 {
            e.serve_pending();
            if e.reading.is_empty() {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(e.reading.is_empty());
    }
}
