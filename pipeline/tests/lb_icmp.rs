//! ICMP errors about load-balanced connections are translated like the connections'
//! packets: toward the client, the quoted request's destination becomes the VIP again (and
//! an error the backend sent itself comes from the VIP); toward the backend, the quoted
//! reply's source and the error's destination become the backend. Every checksum is
//! verified by the tests' own code, including the quoted packet's (the errors here quote
//! the whole packet). Errors about anything else pass unchanged.

mod lb_common;

use std::net::IpAddr;

use lb_common::*;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[test]
fn errors_about_requests_reach_the_client_as_if_from_the_vip() {
    for (tcp, client, vip, vport) in [
        (true, "198.51.100.7", "192.0.2.10", 80),
        (false, "198.51.100.7", "192.0.2.53", 53),
        (false, "2001:db8:9::7", "2001:db8::10", 7000),
        (true, "2001:db8:9::7", "2001:db8::11", 443),
    ] {
        let mut h = Harness::new(FOUR);
        let req = |flags| {
            let mut s = Spec::tcp(client, 40000, vip, vport, flags);
            s.tcp = tcp;
            s
        };
        let sent = h.one(&req(SYN)).next().to_vec();
        let to_be = parse(&sent);
        let backend = to_be.dst.to_string();
        // From the backend itself: it comes from the VIP, quoting the request the client
        // sent (to the VIP and its port), every checksum valid.
        let out = h.run(vec![icmp_error(&sent, &backend)]);
        let e = check(out[0].next());
        assert_eq!((e.src, e.dst), (ip(vip), ip(client)), "{vip}");
        assert!(e.quoted.valid(), "{vip}: quoted checksums");
        assert_eq!(
            (e.quoted.src, e.quoted.sport, e.quoted.dst, e.quoted.dport),
            (ip(client), 40000, ip(vip), vport)
        );
        // From a router between the node and the backend: its own address stays.
        let router = if client.contains(':') {
            "2001:db8:1::fe"
        } else {
            "10.0.0.254"
        };
        let out = h.run(vec![icmp_error(&sent, router)]);
        let e = check(out[0].next());
        assert_eq!((e.src, e.dst), (ip(router), ip(client)));
        assert_eq!((e.quoted.dst, e.quoted.dport), (ip(vip), vport));
        assert!(e.quoted.valid());
        assert_eq!(h.extra(pipeline::lb::node::C_ICMP_ERRORS), 2, "{vip}");
        // The connection goes on where it was.
        assert_eq!(parse(h.one(&req(ACK)).next()).dst, to_be.dst);
    }
}

#[test]
fn errors_about_replies_reach_the_backend() {
    let mut h = Harness::new(FOUR);
    let (client, vip) = ("198.51.100.7", "192.0.2.10");
    let to_be = parse(h.one(&Spec::tcp(client, 40000, vip, 80, SYN)).next());
    let backend = to_be.dst.to_string();
    let reply = h
        .one(&Spec::tcp(&backend, 8080, client, 40000, SYN | ACK))
        .next()
        .to_vec();
    assert_eq!(parse(&reply).src, ip(vip));
    // The client's side reports the reply (as the client saw it) to the VIP.
    let out = h.run(vec![icmp_error(&reply, "198.51.100.1")]);
    let e = check(out[0].next());
    assert_eq!((e.src, e.dst), (ip("198.51.100.1"), ip(&backend)));
    assert!(e.quoted.valid());
    assert_eq!(
        (e.quoted.src, e.quoted.sport, e.quoted.dst, e.quoted.dport),
        (ip(&backend), 8080, ip(client), 40000)
    );
    assert_eq!(h.extra(pipeline::lb::node::C_ICMP_ERRORS), 1);
}

#[test]
fn errors_about_other_packets_pass_unchanged() {
    let mut h = Harness::new(FOUR);
    let sent = h
        .one(&Spec::tcp("198.51.100.7", 40000, "192.0.2.10", 80, SYN))
        .next()
        .to_vec();
    let backend = parse(&sent).dst.to_string();
    let unrelated = [
        // Another client port: no such connection.
        icmp_error(
            &build(&Spec::tcp("198.51.100.7", 40001, &backend, 8080, ACK)),
            &backend,
        ),
        // About the request before the node translated it (a router on the client's side).
        icmp_error(
            &build(&Spec::tcp("198.51.100.7", 40000, "192.0.2.10", 80, SYN)),
            "198.51.100.1",
        ),
        // To someone other than the quoted packet's source.
        {
            let mut f = icmp_error(&sent, &backend);
            f[33] ^= 1;
            let c = !(ones_sum(0, &{
                let mut h = f[14..34].to_vec();
                h[10] = 0;
                h[11] = 0;
                h
            }) as u16);
            f[24..26].copy_from_slice(&c.to_be_bytes());
            f
        },
    ];
    let out = h.run(unrelated.to_vec());
    for (o, f) in out.iter().zip(&unrelated) {
        assert_eq!(o.next(), &f[..]);
    }
    assert_eq!(h.extra(pipeline::lb::node::C_ICMP_ERRORS), 0);
}
