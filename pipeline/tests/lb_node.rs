//! The `lb` node on `TestBuf`s: NAT bytes and checksums (verified by an independent parser),
//! reply un-NAT, pinned connections across backend changes, down/draining backends,
//! timeouts with a driven clock, the full-table fallback, and `reject` services without a
//! backend.

mod lb_common;

use std::net::IpAddr;

use lb_common::*;
use pipeline::lb::node::{
    C_CLOSED, C_FULL_FALLBACK, C_NEW, C_REJECTS, C_REPLY_AMBIGUOUS, C_REPLY_UNTRACKED, C_RESETS,
    C_TABLE_SWAPS, DROP_BACKEND_DOWN, DROP_NO_BACKEND, DROP_VIP_FRAGMENT,
};
use pipeline::lb::{BackendConfig, BackendState};

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// Every byte except the rewritten address, port and checksum fields is unchanged.
fn same_except_nat(before: &[u8], after: &[u8], dst_side: bool) {
    assert_eq!(before.len(), after.len());
    let v6 = before[12] == 0x86;
    let tcp = if v6 { before[20] == 6 } else { before[23] == 6 };
    let (addr, l4) = match (v6, dst_side) {
        (false, true) => (30..34, 34),
        (false, false) => (26..30, 34),
        (true, true) => (38..54, 54),
        (true, false) => (22..38, 54),
    };
    let port = if dst_side { l4 + 2..l4 + 4 } else { l4..l4 + 2 };
    let csum = if tcp {
        l4 + 16..l4 + 18
    } else {
        l4 + 6..l4 + 8
    };
    for i in 0..before.len() {
        let allowed = addr.contains(&i)
            || port.contains(&i)
            || csum.contains(&i)
            || (!v6 && (24..26).contains(&i));
        if !allowed {
            assert_eq!(before[i], after[i], "byte {i} changed");
        }
    }
}

#[test]
fn dnat_and_reply_unnat_tcp_udp_v4_v6() {
    let mut h = Harness::new(FOUR);
    let cases = [
        Spec::tcp("198.51.100.7", 40000, "192.0.2.10", 80, SYN),
        Spec::udp("198.51.100.7", 40001, "192.0.2.53", 53),
        Spec::udp("2001:db8:ffff::7", 40002, "2001:db8::10", 9999),
        Spec::tcp("2001:db8:ffff::7", 40003, "2001:db8::11", 443, SYN),
    ];
    for (n, s) in cases.iter().enumerate() {
        let before = build(s);
        assert!(parse(&before).valid());
        let out = h.run(vec![before.clone()]).pop().unwrap();
        let after = out.next().to_vec();
        let p = parse(&after);
        assert!(p.valid(), "case {n}: checksums after DNAT: {p:?}");
        same_except_nat(&before, &after, true);
        assert_eq!(
            (p.src, p.sport),
            (s.src, s.sport),
            "case {n}: source untouched"
        );
        assert_eq!(p.payload, s.payload);
        let backends: Vec<(IpAddr, u16)> = match n {
            0 => (1..=4)
                .map(|i| (ip(&format!("10.0.0.{i}")), 8080))
                .collect(),
            1 => vec![(ip("10.0.1.1"), 5353), (ip("10.0.1.2"), 5353)],
            2 => vec![(ip("2001:db8:1::1"), 9999), (ip("2001:db8:1::2"), 9999)],
            _ => vec![(ip("2001:db8:2::1"), 8443), (ip("2001:db8:2::2"), 8443)],
        };
        assert!(
            backends.contains(&(p.dst, p.dport)),
            "case {n}: {:?}",
            (p.dst, p.dport)
        );
        // The backend's reply comes back from the VIP and service port.
        let mut r = s.clone();
        r.src = p.dst;
        r.sport = p.dport;
        r.dst = s.src;
        r.dport = s.sport;
        r.flags = SYN | ACK;
        r.payload = b"reply".to_vec();
        let rb = build(&r);
        let out = h.run(vec![rb.clone()]).pop().unwrap();
        let ra = out.next().to_vec();
        let q = parse(&ra);
        assert!(q.valid(), "case {n}: checksums after un-NAT");
        same_except_nat(&rb, &ra, false);
        assert_eq!(
            (q.src, q.sport, q.dst, q.dport),
            (s.dst, s.dport, s.src, s.sport),
            "case {n}"
        );
    }
    assert_eq!(h.extra(C_NEW), 4);
    assert_eq!(
        h.extra(C_REPLY_UNTRACKED),
        0,
        "every reply matched its entry"
    );
    // The TCP handshake seen both ways established the entries.
    let st = h.control().stats();
    let web = st.service("web").unwrap();
    assert_eq!(
        (
            web.stats.packets,
            web.stats.reply_packets,
            web.stats.new_connections,
            web.stats.active_connections
        ),
        (1, 1, 1, 1)
    );
    let b: u64 = web.backends.iter().map(|b| b.stats.packets).sum();
    assert_eq!(b, 1);
}

#[test]
fn udp_zero_checksum_stays_zero_and_others_pass_unchanged() {
    let mut h = Harness::new(FOUR);
    let mut f = build(&Spec::udp("198.51.100.7", 1234, "192.0.2.53", 53));
    f[40] = 0;
    f[41] = 0;
    let out = h.run(vec![f]).pop().unwrap();
    let a = out.next();
    assert_eq!(&a[40..42], &[0, 0], "no-checksum UDP stays without one");
    assert!(ones_ok_ip(a));
    // Not for a VIP, not a reply: unchanged, no lookups, whole vector handed on.
    let others = vec![
        build(&Spec::tcp("198.51.100.7", 1, "192.0.2.10", 81, SYN)), // VIP, other port
        build(&Spec::udp("198.51.100.7", 1, "192.0.2.10", 80)),      // VIP, other protocol
        build(&Spec::tcp("10.0.0.1", 8081, "198.51.100.7", 5, ACK)), // backend, other port
        build(&Spec::tcp("203.0.113.1", 8080, "198.51.100.7", 5, ACK)),
    ];
    let out = h.run(others.clone());
    for (o, f) in out.iter().zip(&others) {
        assert_eq!(o.next(), &f[..]);
    }
    assert_eq!(h.extra(C_NEW), 1);
}

fn ones_ok_ip(f: &[u8]) -> bool {
    parse(f).ip_csum_ok
}

#[test]
fn established_flows_never_move_on_backend_changes() {
    let mut h = Harness::new(FOUR);
    let flows: Vec<Spec> = (0..4000u32)
        .map(|i| {
            Spec::tcp(
                &format!("198.51.{}.{}", i / 250, i % 250),
                10000 + (i % 50000) as u16,
                "192.0.2.10",
                80,
                SYN,
            )
        })
        .collect();
    let first: Vec<IpAddr> = h
        .run(flows.iter().map(build).collect())
        .iter()
        .map(|o| parse(o.next()).dst)
        .collect();
    let ctl = h.control();
    // Remove one backend, add two, reweight and drain others: every update is a new table.
    ctl.add_backend("web", BackendConfig::new(ip("10.0.0.5"), Some(8080)))
        .unwrap();
    ctl.modify(|c| c.services[0].backends[1].weight = 7)
        .unwrap();
    ctl.set_backend_state("web", "10.0.0.3:8080", BackendState::Draining)
        .unwrap();
    ctl.add_backend("web", BackendConfig::new(ip("10.0.0.6"), Some(8080)))
        .unwrap();
    let mut acks = flows.clone();
    for a in &mut acks {
        a.flags = ACK | PSH;
    }
    let second: Vec<IpAddr> = h
        .run(acks.iter().map(build).collect())
        .iter()
        .map(|o| parse(o.next()).dst)
        .collect();
    assert_eq!(first, second, "a tracked flow changed backend");
    assert_eq!(
        h.extra(C_TABLE_SWAPS),
        1,
        "four updates between two vectors: one swap"
    );
    // New flows avoid the draining backend and reach the new ones.
    let fresh: Vec<Vec<u8>> = (0..4000u32)
        .map(|i| {
            build(&Spec::tcp(
                &format!("203.0.{}.{}", i / 250, i % 250),
                20000,
                "192.0.2.10",
                80,
                SYN,
            ))
        })
        .collect();
    let got: Vec<IpAddr> = h.run(fresh).iter().map(|o| parse(o.next()).dst).collect();
    assert!(
        !got.contains(&ip("10.0.0.3")),
        "draining backend got a new flow"
    );
    assert!(got.contains(&ip("10.0.0.5")) && got.contains(&ip("10.0.0.6")));
    // Draining backend's established flows continue.
    let on3: Vec<usize> = (0..first.len())
        .filter(|&i| first[i] == ip("10.0.0.3"))
        .collect();
    assert!(!on3.is_empty());
    let again = h.run(on3.iter().map(|&i| build(&acks[i])).collect());
    assert!(again.iter().all(|o| parse(o.next()).dst == ip("10.0.0.3")));
}

#[test]
fn down_backend_drop_policy() {
    let mut h = Harness::new(FOUR);
    let s = Spec::tcp("198.51.100.9", 5555, "192.0.2.10", 80, SYN);
    let be = parse(h.one(&s).next()).dst;
    let name = format!("{be}:8080");
    h.control()
        .set_backend_state("web", &name, BackendState::Down)
        .unwrap();
    let mut a = s.clone();
    a.flags = ACK;
    assert_eq!(h.one(&a), Out::Drop(DROP_BACKEND_DOWN));
    assert_eq!(
        h.one(&a),
        Out::Drop(DROP_BACKEND_DOWN),
        "entry kept under `drop`"
    );
    assert_eq!(h.drops(DROP_BACKEND_DOWN), 2);
    // Removing the backend altogether behaves the same.
    h.control().remove_backend("web", &name).unwrap();
    assert_eq!(h.one(&a), Out::Drop(DROP_BACKEND_DOWN));
    // No backend at all: new flows are dropped as no-backend.
    h.control()
        .modify(|c| c.services[0].backends.clear())
        .unwrap();
    assert_eq!(
        h.one(&Spec::tcp("198.51.100.10", 1, "192.0.2.10", 80, SYN)),
        Out::Drop(DROP_NO_BACKEND)
    );
}

#[test]
fn down_backend_keep_policy_keeps_established_flows_both_ways() {
    let cfg = format!("down_backend = \"keep\"\n{FOUR}");
    let mut h = Harness::new(&cfg);
    let s = Spec::tcp("198.51.100.9", 5555, "192.0.2.10", 80, SYN);
    let be = parse(h.one(&s).next()).dst;
    let name = format!("{be}:8080");
    let reply = |flags| {
        let mut r = Spec::tcp(&be.to_string(), 8080, "198.51.100.9", 5555, flags);
        r.payload = b"pong".to_vec();
        r
    };
    assert_eq!(parse(h.one(&reply(SYN | ACK)).next()).src, ip("192.0.2.10"));
    // Removed from the service (as a backend leaves an OVN load balancer's vips): the
    // connection goes on, requests DNATed to it and its replies translated back.
    h.control().remove_backend("web", &name).unwrap();
    let mut a = s.clone();
    a.flags = ACK | PSH;
    a.payload = b"ping".to_vec();
    for _ in 0..3 {
        let p = parse(h.one(&a).next());
        assert!(p.valid(), "{p:?}");
        assert_eq!((p.dst, p.dport), (be, 8080), "the kept flow's backend");
        let q = parse(h.one(&reply(ACK)).next());
        assert!(q.valid(), "{q:?}");
        assert_eq!(
            (q.src, q.sport),
            (ip("192.0.2.10"), 80),
            "reply from the VIP"
        );
    }
    assert_eq!(h.drops(DROP_BACKEND_DOWN), 0);
    assert_eq!(h.extra(C_REPLY_UNTRACKED), 0);
    // A packet from the removed backend that belongs to no kept flow is not translated.
    let stray = build(&Spec::tcp(&be.to_string(), 8080, "198.51.100.9", 6666, ACK));
    assert_eq!(h.run(vec![stray.clone()]).pop().unwrap(), Out::Next(stray));
    // New flows avoid it.
    let fresh: Vec<Vec<u8>> = (0..2000u32)
        .map(|i| {
            let src = format!("203.0.{}.{}", i / 250, i % 250);
            build(&Spec::tcp(&src, 20000, "192.0.2.10", 80, SYN))
        })
        .collect();
    let got: Vec<IpAddr> = h.run(fresh).iter().map(|o| parse(o.next()).dst).collect();
    assert!(!got.contains(&be), "a removed backend got a new flow");
    // A backend marked down keeps its established flows too.
    let other = got[0];
    h.control()
        .set_backend_state("web", &format!("{other}:8080"), BackendState::Down)
        .unwrap();
    let mut b = Spec::tcp("203.0.0.0", 20000, "192.0.2.10", 80, ACK);
    b.payload = b"more".to_vec();
    assert_eq!(parse(h.one(&b).next()).dst, other);
    assert_eq!(h.drops(DROP_BACKEND_DOWN), 0);
}

#[test]
fn reject_service_without_backend_answers_tcp_with_rst_and_udp_with_port_unreachable() {
    let cfg = r#"
        [[services]]
        name = "empty-tcp"
        vip = "192.0.2.20"
        protocol = "tcp"
        port = 80
        reject = true
        [[services]]
        name = "empty-udp"
        vip = "192.0.2.21"
        protocol = "udp"
        port = 53
        reject = true
        [[services]]
        name = "empty-quiet"
        vip = "192.0.2.22"
        protocol = "udp"
        port = 53
    "#;
    let mut h = Harness::new(cfg);
    let mut syn = Spec::tcp("198.51.100.9", 5555, "192.0.2.20", 80, SYN);
    syn.seq = 1000;
    match h.one(&syn) {
        Out::Reset(bytes, port) => {
            let p = parse(&bytes);
            assert!(p.valid(), "{p:?}");
            assert_eq!(port, 0, "back out of the input port");
            assert_eq!(
                (p.src, p.sport, p.dst, p.dport),
                (syn.dst, syn.dport, syn.src, syn.sport)
            );
            // seq + its length + 1 for the SYN (RFC 9293 3.10.7.1).
            let acked = 1000 + syn.payload.len() as u32 + 1;
            assert_eq!(
                (p.flags, p.ack),
                (RST | ACK, acked),
                "RST|ACK acking the SYN"
            );
        }
        o => panic!("expected a RST, got {o:?}"),
    }
    let udp = Spec::udp("198.51.100.9", 5353, "192.0.2.21", 53);
    let sent = build(&udp);
    match h.one(&udp) {
        Out::Reset(f, port) => {
            assert_eq!(port, 0);
            assert_eq!(
                (f[12], f[13], f[14], f[23]),
                (0x08, 0x00, 0x45, 1),
                "IPv4 ICMP"
            );
            assert_eq!(&f[26..30], &[192, 0, 2, 21], "from the VIP");
            assert_eq!(&f[30..34], &[198, 51, 100, 9], "to the client");
            assert_eq!(
                (f[34], f[35]),
                (3, 3),
                "port unreachable, as OVN answers UDP"
            );
            assert_eq!(ones_sum(0, &f[14..34]), 0xffff, "IP checksum");
            assert_eq!(ones_sum(0, &f[34..]), 0xffff, "ICMP checksum");
            assert_eq!(&f[42..62], &sent[14..34], "quotes the request's IP header");
        }
        o => panic!("expected an ICMP port unreachable, got {o:?}"),
    }
    assert_eq!(h.extra(C_REJECTS), 2);
    assert_eq!(h.drops(DROP_NO_BACKEND), 0);
    // Without `reject`: dropped as before.
    assert_eq!(
        h.one(&Spec::udp("198.51.100.9", 5353, "192.0.2.22", 53)),
        Out::Drop(DROP_NO_BACKEND)
    );
    // A backend added: the service balances again, nothing answered.
    h.control()
        .modify(|c| {
            c.services[1]
                .backends
                .push(BackendConfig::new(ip("10.0.5.1"), Some(53)))
        })
        .unwrap();
    assert_eq!(parse(h.one(&udp).next()).dst, ip("10.0.5.1"));
    assert_eq!(h.extra(C_REJECTS), 2);
}

#[test]
fn down_backend_reset_policy_sends_rst_and_rebalances() {
    let cfg = format!("down_backend = \"reset\"\n{FOUR}");
    let mut h = Harness::new(&cfg);
    let s = Spec::tcp("198.51.100.9", 5555, "192.0.2.10", 80, SYN);
    let be = parse(h.one(&s).next()).dst;
    h.control()
        .set_backend_state("web", &format!("{be}:8080"), BackendState::Down)
        .unwrap();
    let mut a = s.clone();
    a.flags = ACK | PSH;
    a.ack = 777;
    match h.one(&a) {
        Out::Reset(bytes, port) => {
            let p = parse(&bytes);
            assert!(p.valid(), "{p:?}");
            assert_eq!(port, 0, "back out of the input port");
            assert_eq!(
                (p.src, p.sport, p.dst, p.dport),
                (s.dst, s.dport, s.src, s.sport)
            );
            assert_eq!((p.flags, p.seq), (RST, 777));
            assert!(
                p.payload.is_empty(),
                "no payload in the RST (IP length = headers)"
            );
            assert_eq!(p.dst_mac, [2, 0, 0, 0, 0, 1], "MACs swapped");
        }
        o => panic!("expected a RST, got {o:?}"),
    }
    assert_eq!(h.extra(C_RESETS), 1);
    assert_eq!(h.extra(C_CLOSED), 1, "the flow was forgotten");
    // The client's next SYN on the same tuple gets a live backend.
    let again = parse(h.one(&s).next());
    assert_ne!(again.dst, be);
    // UDP flows of a down backend: dropped and forgotten, the next packet is rebalanced.
    let u = Spec::udp("198.51.100.9", 5353, "192.0.2.53", 53);
    let ube = parse(h.one(&u).next()).dst;
    h.control()
        .set_backend_state("dns", &format!("{ube}:5353"), BackendState::Down)
        .unwrap();
    assert_eq!(h.one(&u), Out::Drop(DROP_BACKEND_DOWN));
    assert_ne!(parse(h.one(&u).next()).dst, ube);
}

#[test]
fn timeouts_follow_the_driven_clock() {
    // UDP 2 s, TCP transient 1 s, established 10 s (clock: milliseconds).
    let cfg = FOUR.replace(
        "capacity = 65536",
        "capacity = 65536\ntimeouts = { udp = 2, tcp_transient = 1, tcp_established = 10, other = 1 }",
    );
    let mut h = Harness::new(&cfg);
    let u = Spec::udp("198.51.100.1", 1000, "192.0.2.53", 53);
    h.set_time_ms(0);
    let be = parse(h.one(&u).next()).dst;
    h.set_time_ms(1999);
    h.one(&u); // refreshes: idle timer restarts
    h.set_time_ms(3998);
    h.one(&u);
    assert_eq!(
        h.extra(C_NEW),
        1,
        "refreshed within the timeout (never early)"
    );
    // Idle past the timeout: the next packet is a new connection (and may go elsewhere
    // after a backend change; here the old backend is draining).
    h.control()
        .set_backend_state("dns", &format!("{be}:5353"), BackendState::Draining)
        .unwrap();
    // (The table keeps time in units of 2 ms here, 1/256 of the shortest timeout rounded
    // down to a power of two: an entry expires at most two units after its timeout.)
    h.set_time_ms(3998 + 2000 + 4);
    let b2 = parse(h.one(&u).next()).dst;
    assert_eq!(h.extra(C_NEW), 2);
    assert_ne!(
        b2, be,
        "expired flow re-balanced away from the draining backend"
    );
    assert_eq!(
        h.extra(C_CLOSED),
        1,
        "the expired entry was reclaimed and counted"
    );
    // TCP: handshake only one way stays transient (1 s); a full handshake is established.
    let t1 = Spec::tcp("198.51.100.2", 1, "192.0.2.10", 80, SYN);
    let t2 = Spec::tcp("198.51.100.3", 1, "192.0.2.10", 80, SYN);
    h.set_time_ms(10_000);
    let b1 = parse(h.one(&t1).next());
    h.one(&t2);
    let mut synack = Spec::tcp(&b1.dst.to_string(), 8080, "198.51.100.2", 1, SYN | ACK);
    synack.payload.clear();
    assert!(parse(h.one(&synack).next()).valid());
    h.set_time_ms(10_000 + 5000);
    let mut a1 = t1.clone();
    a1.flags = ACK;
    let mut a2 = t2.clone();
    a2.flags = ACK;
    h.one(&a1);
    h.one(&a2);
    // The established flow continued; the half-open one expired (transient timeout), so
    // its ACK started a new connection, reusing (and counting as closed) the old entry.
    assert_eq!(h.extra(C_NEW), 5);
    assert_eq!(h.extra(C_CLOSED), 2);
    let st = h.control().stats();
    assert_eq!(st.service("web").unwrap().stats.active_connections, 2);
}

#[test]
fn full_table_falls_back_to_stateless_maglev() {
    let cfg = FOUR.replace("capacity = 65536", "capacity = 4");
    let mut h = Harness::new(&cfg);
    let flows: Vec<Spec> = (0..20u16)
        .map(|i| Spec::tcp("198.51.100.1", 1000 + i, "192.0.2.10", 80, SYN))
        .collect();
    let out = h.run(flows.iter().map(build).collect());
    assert_eq!(h.extra(C_NEW), 4);
    assert_eq!(h.extra(C_FULL_FALLBACK), 16);
    let table = h.control().table();
    let sid = table.service_id("web").unwrap();
    for (s, o) in flows.iter().zip(&out) {
        let p = parse(o.next());
        assert!(p.valid());
        // Tracked or not, the backend is the Maglev pick.
        let key = pipeline::lb::FlowKey::from_addrs(s.src, s.dst, s.sport, s.dport, 6).unwrap();
        let want = &table.backends[table.pick(sid, &key).unwrap() as usize];
        assert_eq!(p.dst, want.address());
    }
    // Replies of untracked flows are still translated (backend endpoint -> one service).
    let p = parse(out[19].next());
    let r = h.one(&Spec::tcp(
        &p.dst.to_string(),
        8080,
        "198.51.100.1",
        1019,
        SYN | ACK,
    ));
    let q = parse(r.next());
    assert_eq!((q.src, q.sport), (ip("192.0.2.10"), 80));
    assert!(q.valid());
    assert_eq!(h.extra(C_REPLY_UNTRACKED), 1);
}

#[test]
fn shared_backend_endpoint_uses_the_connection_table() {
    // One backend endpoint behind two VIPs: replies are ambiguous without an entry.
    let cfg = r#"
        [[services]]
        name = "a"
        vip = "192.0.2.1"
        protocol = "tcp"
        port = 80
        backends = [{ address = "10.9.9.9", port = 8080 }]
        [[services]]
        name = "b"
        vip = "192.0.2.2"
        protocol = "tcp"
        port = 80
        backends = [{ address = "10.9.9.9", port = 8080 }]
    "#;
    let mut h = Harness::new(cfg);
    h.one(&Spec::tcp("198.51.100.1", 1111, "192.0.2.1", 80, SYN));
    h.one(&Spec::tcp("198.51.100.1", 2222, "192.0.2.2", 80, SYN));
    for (port, vip) in [(1111, "192.0.2.1"), (2222, "192.0.2.2")] {
        let q = parse(
            h.one(&Spec::tcp(
                "10.9.9.9",
                8080,
                "198.51.100.1",
                port,
                SYN | ACK,
            ))
            .next(),
        );
        assert_eq!(q.src, ip(vip));
        assert!(q.valid());
    }
    let unknown = build(&Spec::tcp("10.9.9.9", 8080, "198.51.100.1", 3333, ACK));
    assert_eq!(
        h.run(vec![unknown.clone()]).pop().unwrap(),
        Out::Next(unknown)
    );
    assert_eq!(h.extra(C_REPLY_AMBIGUOUS), 1);
}

#[test]
fn fragments_to_a_vip_are_dropped() {
    let mut h = Harness::new(FOUR);
    let mut f = build(&Spec::udp("198.51.100.1", 1, "192.0.2.53", 53));
    f[20] = 0x20; // MF
    let c = {
        f[24] = 0;
        f[25] = 0;
        let mut acc = 0u32;
        for w in f[14..34].chunks(2) {
            acc += (w[0] as u32) << 8 | w[1] as u32;
        }
        while acc > 0xffff {
            acc = (acc & 0xffff) + (acc >> 16);
        }
        !(acc as u16)
    };
    f[24..26].copy_from_slice(&c.to_be_bytes());
    assert_eq!(h.run(vec![f]).pop().unwrap(), Out::Drop(DROP_VIP_FRAGMENT));
}

const DSR: &str = r#"
[[services]]
name = "dsr"
vip = "192.0.2.80"
protocol = "tcp"
port = 80
forwarding = "dsr"
backends = [
  { address = "10.0.3.1", mac = "02:00:00:00:03:01" },
  { address = "10.0.3.2", mac = "02:00:00:00:03:02" },
  { address = "10.0.3.3", port = 80, mac = "02:00:00:00:03:03" },
]
"#;

#[test]
fn direct_server_return_rewrites_only_the_destination_mac() {
    let mut h = Harness::new(DSR);
    let macs: Vec<[u8; 6]> = (1..=3).map(|i| [2, 0, 0, 0, 3, i]).collect();
    let mut seen = [0u32; 3];
    let mut first_mac = Vec::new();
    for round in 0..2 {
        for n in 0..300u16 {
            let s = Spec::tcp("198.51.100.9", 20000 + n, "192.0.2.80", 80, ACK);
            let before = build(&s);
            let after = h.one(&s).next().to_vec();
            // Everything but the destination MAC is byte for byte the same: addresses,
            // ports, checksums (still valid), payload.
            assert_eq!(before[6..], after[6..], "flow {n}: only the MAC may change");
            assert!(parse(&after).valid());
            let mac: [u8; 6] = after[..6].try_into().unwrap();
            let k = macs
                .iter()
                .position(|m| *m == mac)
                .expect("a backend's MAC");
            if round == 0 {
                seen[k] += 1;
                first_mac.push(mac);
            } else {
                assert_eq!(mac, first_mac[n as usize], "flow {n} moved between rounds");
            }
        }
    }
    assert!(
        seen.iter().all(|&c| c > 50),
        "spread over the backends: {seen:?}"
    );
    assert_eq!(h.extra(C_NEW), 300, "one connection per flow, pinned");
    // A packet from a DSR backend is not a reply of ours: it passes unchanged.
    let back = Spec::tcp("10.0.3.1", 80, "198.51.100.9", 20000, ACK);
    let before = build(&back);
    assert_eq!(h.one(&back).next(), &before[..]);
}

#[test]
fn direct_server_return_config_errors_name_the_key() {
    let bad = [
        (
            DSR.replace(", mac = \"02:00:00:00:03:02\"", ""),
            "services[0].backends[1].mac",
        ),
        (
            DSR.replace("02:00:00:00:03:01", "02:00:00:00:03"),
            "services[0].backends[0].mac",
        ),
        (
            DSR.replace("port = 80, mac", "port = 8080, mac"),
            "services[0].backends[2].port",
        ),
        (
            DSR.replace("forwarding = \"dsr\"", ""),
            "services[0].backends[0].mac",
        ),
    ];
    for (cfg, key) in bad {
        let e = match pipeline::lb::LbConfig::from_toml_str(&cfg) {
            Err(e) => e.to_string(),
            Ok(c) => match c.validate() {
                Err(e) => e.to_string(),
                Ok(()) => panic!("accepted:\n{cfg}"),
            },
        };
        assert!(e.contains(key), "{key}: {e}");
    }
}
