//! `capture start` / `capture stop` / `show capture` (`dataplane ctl`) against a running
//! dataplane on vhost-user ports under dpgen traffic (the two ports cross-connected):
//! - `capture start fh0 FILE count 50` writes a valid pcapng file (parsed here block by
//!   block: Section Header, Interface Descriptions, Enhanced Packets) with exactly 50
//!   packets, each one of the traffic's UDP frames, received ones from the generator's port
//!   0 flows and sent ones from its port 1 flows (the block's direction flag says which);
//! - a capture without count, stopped by `capture stop`, holds exactly the packets that
//!   `capture stop` reported written; a second capture is refused while one runs;
//! - bad arguments exit 2 with a one-line reason;
//! - forwarding is undisturbed: every packet sent arrived, in = out + counted drops, and the
//!   captured port's packets took the PMD (where the callbacks run) only while captured.

use std::path::Path;
use std::time::{Duration, Instant};

use perf::ctl::{ctl_json, run_ctl};
use perf::procs::{ensure_hugepages, wait_for_paths};
use perf::topology::VhostTopology;
use serde_json::Value;

fn ctl_raw(socket: &Path, json: bool, args: &[&str]) -> (i32, String, String) {
    run_ctl(socket, json, args)
}

fn ctl(socket: &Path, args: &[&str]) -> Value {
    ctl_json(socket, args)
}

/// `ctl ARGS`, which must be refused (exit 2, nothing on stdout); its error line.
fn refused(socket: &Path, args: &[&str]) -> String {
    let (rc, out, err) = ctl_raw(socket, false, args);
    assert_eq!((rc, out.as_str()), (2, ""), "`{args:?}`: {err}");
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    err
}

fn num(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a count: {v}"))
}

/// One Enhanced Packet Block.
#[derive(Debug)]
struct Packet {
    interface: u32,
    orig_len: u32,
    data: Vec<u8>,
    /// The `epb_flags` direction bits: 1 inbound, 2 outbound, 0 unknown/absent.
    direction: u32,
}

/// What a pcapng file holds.
#[derive(Debug, Default)]
struct Pcapng {
    /// Link types of the Interface Description Blocks, in order.
    interfaces: Vec<u16>,
    packets: Vec<Packet>,
    /// Interface Statistics Blocks.
    stats: usize,
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

/// Parses a little-endian pcapng file (one section), checking every block's framing; panics
/// on anything malformed.
fn parse_pcapng(b: &[u8]) -> Pcapng {
    assert!(b.len() >= 28, "too short for a section header: {}", b.len());
    assert_eq!(u32_at(b, 0), 0x0A0D_0D0A, "a Section Header Block first");
    assert_eq!(u32_at(b, 8), 0x1A2B_3C4D, "little-endian byte-order magic");
    assert_eq!(u16_at(b, 12), 1, "pcapng major version 1");
    let mut out = Pcapng::default();
    let mut at = 0;
    while at < b.len() {
        assert!(at + 12 <= b.len(), "truncated block at {at}");
        let kind = u32_at(b, at);
        let len = u32_at(b, at + 4) as usize;
        assert!(
            len >= 12 && len.is_multiple_of(4) && at + len <= b.len(),
            "block at {at}: bad length {len}"
        );
        assert_eq!(
            u32_at(b, at + len - 4) as usize,
            len,
            "trailing length at {at}"
        );
        let body = &b[at + 8..at + len - 4];
        match kind {
            0x0A0D_0D0A => assert_eq!(at, 0, "one section"),
            1 => {
                assert!(out.packets.is_empty(), "interfaces come before packets");
                out.interfaces.push(u16_at(body, 0));
            }
            6 => {
                let cap = u32_at(body, 12) as usize;
                let padded = cap.div_ceil(4) * 4;
                assert!(20 + padded <= body.len(), "packet data past its block");
                let mut direction = 0;
                let mut o = 20 + padded;
                while o + 4 <= body.len() {
                    let (code, olen) = (u16_at(body, o), u16_at(body, o + 2) as usize);
                    if code == 0 {
                        break;
                    }
                    if code == 2 && olen == 4 {
                        direction = u32_at(body, o + 4) & 3;
                    }
                    o += 4 + olen.div_ceil(4) * 4;
                }
                out.packets.push(Packet {
                    interface: u32_at(body, 0),
                    orig_len: u32_at(body, 16),
                    data: body[20..20 + cap].to_vec(),
                    direction,
                });
            }
            5 => out.stats += 1,
            other => panic!("unexpected block type {other:#x} at {at}"),
        }
        at += len;
    }
    out
}

/// Checks that every packet is one of the traffic's frames on fh0: 64-byte Ethernet/IPv4/UDP
/// to port 5001, received from the generator's port 0 flows (10.1.0.1 -> 10.2/16) or sent
/// from its port 1 flows (10.2.0.1 -> 10.1/16), the direction flag telling which.
fn assert_traffic_frames(cap: &Pcapng) -> (usize, usize) {
    let (mut inbound, mut outbound) = (0, 0);
    for (i, p) in cap.packets.iter().enumerate() {
        let f = &p.data;
        assert!(
            (p.interface as usize) < cap.interfaces.len(),
            "packet {i}: interface {} of {}",
            p.interface,
            cap.interfaces.len()
        );
        assert_eq!(cap.interfaces[p.interface as usize], 1, "Ethernet");
        assert_eq!(
            (p.orig_len, f.len()),
            (64, 64),
            "packet {i}: a whole 64-byte frame"
        );
        assert_eq!(&f[12..14], &[0x08, 0x00], "packet {i}: IPv4");
        assert_eq!(f[23], 17, "packet {i}: UDP");
        assert_eq!(
            &f[36..38],
            &5001u16.to_be_bytes(),
            "packet {i}: to port 5001"
        );
        let (src, dst) = (&f[26..30], &f[30..34]);
        match p.direction {
            1 => {
                inbound += 1;
                assert_eq!(src, &[10, 1, 0, 1], "packet {i} received: {f:?}");
                assert_eq!(&dst[..2], &[10, 2], "packet {i} received: {f:?}");
            }
            2 => {
                outbound += 1;
                assert_eq!(src, &[10, 2, 0, 1], "packet {i} sent: {f:?}");
                assert_eq!(&dst[..2], &[10, 1], "packet {i} sent: {f:?}");
            }
            d => panic!("packet {i}: direction {d}"),
        }
    }
    (inbound, outbound)
}

/// Polls `show capture` until the capture has finished (panics after 20 s).
fn wait_finished(socket: &Path) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let s = ctl(socket, &["show", "capture"]);
        if s["state"] == "finished" {
            return s;
        }
        assert!(Instant::now() < deadline, "capture never finished: {s}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn capture_writes_pcapng_of_a_port_under_traffic() {
    ensure_hugepages(1024);
    let t = VhostTopology::new("cap");
    let socket = t.scratch.path("ctl.sock");
    let cfg = t.dataplane_config(
        "",
        &format!("[control]\nsocket = \"{}\"\n", socket.display()),
    );
    let stats = t.scratch.path("dut.json");
    let mut dut = t.start_dataplane_ready(&cfg, &stats, 0.0);
    assert!(
        wait_for_paths(&[&socket], Duration::from_secs(20)),
        "no control socket:\n{}",
        dut.output()
    );
    let file1 = t.scratch.path("fifty.pcapng");
    let file2 = t.scratch.path("until-stop.pcapng");
    let f1 = file1.to_str().unwrap();
    let f2 = file2.to_str().unwrap();

    // Refusals, before anything runs.
    let e = refused(&socket, &["capture", "start", "fh0", "relative.pcapng"]);
    assert!(e.contains("is not an absolute path"), "{e}");
    let e = refused(&socket, &["capture", "start", "nope", f1]);
    assert!(e.contains("no port `nope`"), "{e}");
    let e = refused(&socket, &["capture", "start", "fh0"]);
    assert!(e.contains("needs a port and a file"), "{e}");
    let e = refused(&socket, &["capture", "start", "fh0", f1, "count", "0"]);
    assert!(e.contains("count must be at least 1"), "{e}");
    let e = refused(&socket, &["capture", "start", "fh0", f1, "count", "many"]);
    assert!(e.contains("`many` is not a valid number"), "{e}");
    let e = refused(&socket, &["capture", "start", "fh0", f1, "snaplen", "9"]);
    assert!(e.contains("unexpected argument `snaplen`"), "{e}");
    let e = refused(
        &socket,
        &["capture", "start", "fh0", "/nonexistent-dir/x.pcapng"],
    );
    assert!(e.contains("/nonexistent-dir/x.pcapng"), "{e}");
    let e = refused(&socket, &["capture", "stop"]);
    assert!(e.contains("no capture was started"), "{e}");
    assert_eq!(ctl(&socket, &["show", "capture"])["state"], "none");
    let (rc, help, _) = ctl_raw(&socket, false, &["help"]);
    assert_eq!(rc, 0);
    for c in ["capture start", "capture stop", "show capture"] {
        assert!(help.contains(c), "help lacks {c}: {help}");
    }

    let gen_json = t.scratch.path("gen.json");
    let mut gen = t.start_dpgen(0.05, 6.0, &gen_json);
    std::thread::sleep(Duration::from_millis(1000));

    // 50 packets, then the capture finishes by itself.
    let started = ctl(&socket, &["capture", "start", "fh0", f1, "count", "50"]);
    assert_eq!(started["port"], "fh0");
    assert_eq!(started["limit"], 50);
    let done = wait_finished(&socket);
    assert_eq!(num(&done["written"]), 50, "{done}");
    let cap = parse_pcapng(&std::fs::read(&file1).expect("capture file"));
    assert_eq!(cap.packets.len(), 50, "exactly 50 packets");
    assert!(!cap.interfaces.is_empty(), "interface descriptions");
    assert_eq!(cap.stats, 1, "one statistics block at the end");
    let (i1, o1) = assert_traffic_frames(&cap);
    eprintln!("count 50: {i1} received, {o1} sent");

    // Until stopped; a second capture is refused meanwhile.
    let started = ctl(&socket, &["capture", "start", "fh0", f2]);
    assert_eq!(started["state"], "running");
    assert!(started["limit"].is_null());
    let e = refused(&socket, &["capture", "start", "mh0", f1]);
    assert!(e.contains("a capture of fh0 into"), "{e}");
    assert!(e.contains("is running"), "{e}");
    std::thread::sleep(Duration::from_millis(1000));
    let running = ctl(&socket, &["show", "capture"]);
    assert_eq!(running["state"], "running", "{running}");
    assert!(num(&running["written"]) > 0, "{running}");
    let (rc, text, err) = ctl_raw(&socket, false, &["show", "capture"]);
    assert_eq!(rc, 0, "{err}");
    assert!(
        text.contains("capture of fh0 into") && text.contains("running"),
        "{text}"
    );
    let stopped = ctl(&socket, &["capture", "stop"]);
    assert_eq!(stopped["state"], "finished");
    let written = num(&stopped["written"]);
    let dropped = num(&stopped["dropped"]);
    // 0.05 Mpps each way for about a second: tens of thousands of packets.
    assert!(written > 20_000, "{stopped}");
    let cap = parse_pcapng(&std::fs::read(&file2).expect("capture file"));
    assert_eq!(cap.packets.len() as u64, written, "file vs `capture stop`");
    let (i2, o2) = assert_traffic_frames(&cap);
    assert!(i2 > 0 && o2 > 0, "both directions: {i2} in, {o2} out");
    eprintln!("until stop: {written} written ({i2} in, {o2} out), {dropped} dropped");
    // Stopped is stopped: a second stop answers the same counts.
    let again = ctl(&socket, &["capture", "stop"]);
    assert_eq!(num(&again["written"]), written);

    assert_eq!(
        gen.wait(Duration::from_secs(60)),
        Some(0),
        "dpgen failed:\n{}",
        gen.output()
    );
    let g: Value = serde_json::from_str(&std::fs::read_to_string(&gen_json).unwrap()).unwrap();

    // At full speed the capture cannot keep every packet: it drops and counts the rest, the
    // file still holds exactly what it reports written.
    let full_json = t.scratch.path("gen-full.json");
    let mut full = t.start_dpgen(0.0, 3.0, &full_json);
    std::thread::sleep(Duration::from_millis(1000));
    let file_full = t.scratch.path("full-speed.pcapng");
    ctl(
        &socket,
        &["capture", "start", "fh0", file_full.to_str().unwrap()],
    );
    std::thread::sleep(Duration::from_millis(1000));
    let stopped = ctl(&socket, &["capture", "stop"]);
    let (written_full, dropped_full) = (num(&stopped["written"]), num(&stopped["dropped"]));
    let cap = parse_pcapng(&std::fs::read(&file_full).expect("capture file"));
    assert_eq!(
        cap.packets.len() as u64,
        written_full,
        "file vs `capture stop`"
    );
    assert_traffic_frames(&cap);
    assert!(
        dropped_full > 0 && written_full > 0,
        "full speed: {written_full} written, {dropped_full} dropped"
    );
    eprintln!("full speed: {written_full} written, {dropped_full} dropped");
    // A capture still running when the dataplane stops is finished then (checked below).
    let file3 = t.scratch.path("at-exit.pcapng");
    ctl(
        &socket,
        &["capture", "start", "fh0", file3.to_str().unwrap()],
    );
    assert_eq!(
        full.wait(Duration::from_secs(60)),
        Some(0),
        "dpgen failed:\n{}",
        full.output()
    );
    let g2: Value = serde_json::from_str(&std::fs::read_to_string(&full_json).unwrap()).unwrap();

    let d = VhostTopology::stop_dataplane(&mut dut, &stats);
    let port = |i: usize, k: &str| num(&d["ports"][i][k]);
    for i in 0..2 {
        assert!(
            num(&g["ports"][i]["tx"]) > 100_000,
            "generator sent too little: {g}"
        );
        let sent = num(&g["ports"][i]["tx"]) + num(&g2["ports"][i]["tx"]);
        // Every packet sent arrived, but what the full-speed generator left in the virtio
        // ring (256 descriptors) when it tore its port down.
        assert!(
            port(i, "rx") <= sent && sent - port(i, "rx") <= 256,
            "port {i}: sent {sent}, received {}",
            port(i, "rx")
        );
        assert_eq!(
            port(1 - i, "tx") + port(1 - i, "tx_dropped"),
            port(i, "rx"),
            "direction {i}->{}: in = out + counted drops",
            1 - i
        );
    }
    // The captured port's packets went through the PMD (where ethdev runs the callbacks)
    // while captured, the direct vhost path otherwise; the other port's never left it.
    let direct = |i: usize, k: &str| num(&d["ports"][i]["vhost_direct"][k]);
    let via_pmd_rx = port(0, "rx") - direct(0, "rx_packets");
    assert!(
        via_pmd_rx >= i2 as u64 && direct(0, "rx_packets") > 0,
        "fh0: {via_pmd_rx} received through the PMD, {i2} captured received"
    );
    assert_eq!(
        direct(1, "rx_packets"),
        port(1, "rx"),
        "mh0 was not captured"
    );
    assert_eq!(
        direct(1, "tx_packets"),
        port(1, "tx"),
        "mh0 was not captured"
    );
    let cap = parse_pcapng(&std::fs::read(&file3).expect("capture file"));
    assert_eq!(cap.stats, 1, "closed with its statistics block at exit");
    let (i3, o3) = assert_traffic_frames(&cap);
    assert!(i3 + o3 > 0, "the capture left running saw traffic");
    for m in d["mempools"].as_array().expect("mempools") {
        assert_eq!(m["in_use_after_stop"], 0, "mbufs leaked: {m}");
    }
}
