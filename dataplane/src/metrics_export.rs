//! Prometheus export: the main lcore publishes the counters it already reads (ports, workers,
//! pipeline nodes) through the `metrics` crate, and serves them as text on a TCP address
//! (localhost by default) from its own control loop. Workers never touch this.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::time::Duration;

use metrics::{counter, gauge};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use pipeline::RuntimeSnapshot;

use crate::counters::WorkerSnapshot;
use crate::dpdk::PortStats;

/// The default listen address.
pub const DEFAULT_ADDR: &str = "127.0.0.1:9464";

/// A Prometheus endpoint served from the control loop.
pub struct Exporter {
    handle: PrometheusHandle,
    listener: TcpListener,
}

impl Exporter {
    /// Installs the global `metrics` recorder and binds `addr` (non-blocking).
    pub fn start(addr: SocketAddr) -> Result<Exporter, String> {
        let listener = TcpListener::bind(addr).map_err(|e| format!("binding {addr}: {e}"))?;
        listener
            .set_nonblocking(true)
            .map_err(|e| format!("{addr}: {e}"))?;
        let handle = PrometheusBuilder::new()
            .install_recorder()
            .map_err(|e| format!("metrics recorder: {e}"))?;
        Ok(Exporter { handle, listener })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.listener.local_addr().ok()
    }

    /// Answers the requests waiting (at most a few per call, each with a short timeout), so
    /// the control loop never blocks for long.
    pub fn serve_pending(&self) {
        for _ in 0..4 {
            let Ok((mut s, _)) = self.listener.accept() else {
                return;
            };
            let _ = s.set_nonblocking(false);
            let _ = s.set_read_timeout(Some(Duration::from_millis(200)));
            let _ = s.set_write_timeout(Some(Duration::from_millis(500)));
            let mut buf = [0u8; 1024];
            let n = s.read(&mut buf).unwrap_or(0);
            let req = String::from_utf8_lossy(&buf[..n]);
            let (status, body) = if req.starts_with("GET /metrics") || req.starts_with("GET / ") {
                ("200 OK", self.handle.render())
            } else {
                ("404 Not Found", "try /metrics\n".to_string())
            };
            let _ = write!(
                s,
                "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
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
