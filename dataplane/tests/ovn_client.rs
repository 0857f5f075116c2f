//! The OVSDB client against a real `ovsdb-server` serving the OVN Northbound schema: rows
//! written with `ovn-nbctl` arrive in the replica and as change sets; restarts resync to
//! exactly the difference; TLS with client certificates; probes and garbage are counted.

#[path = "support/ovsdb.rs"]
mod ovsdb;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::{Duration, Instant};

use dataplane::ovn::client::CounterValues;
use dataplane::ovn::replica::{Atom, Datum, Row, Table, TableChanges};
use dataplane::ovn::{OvnClient, OvnConfig, Remote, TlsFiles, Update, UpdateKind};
use ovsdb::NbServer;

/// Bound on any wait (a failure bound, never asserted as a duration).
const WAIT: Duration = Duration::from_secs(20);

fn config(remotes: &str) -> OvnConfig {
    let mut cfg = OvnConfig::new(Remote::parse_list(remotes).unwrap());
    cfg.backoff_max = Duration::from_secs(2);
    cfg
}

fn start(remotes: &str) -> OvnClient {
    OvnClient::start(config(remotes)).unwrap()
}

fn next_update(c: &OvnClient) -> Update {
    c.updates().recv_timeout(WAIT).expect("an update")
}

fn wait_for(c: &OvnClient, what: &str, pred: impl Fn(&CounterValues) -> bool) {
    let deadline = Instant::now() + WAIT;
    while !pred(&c.counters()) {
        assert!(
            Instant::now() < deadline,
            "waited for {what}: {:?}",
            c.counters()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn s(v: &str) -> Atom {
    Atom::String(v.to_string())
}

fn text(row: &Row, col: &str) -> String {
    row[col]
        .single()
        .and_then(Atom::as_str)
        .unwrap_or("")
        .to_string()
}

fn named<'a>(t: &'a Table, name: &str) -> (&'a String, &'a Row) {
    t.iter()
        .find(|(_, r)| text(r, "name") == name)
        .unwrap_or_else(|| panic!("no row {name}"))
}

fn uuids(d: &Datum) -> BTreeSet<String> {
    d.atoms()
        .iter()
        .map(|a| a.as_uuid().unwrap().to_string())
        .collect()
}

fn only(u: &Update, table: &str) -> TableChanges {
    assert_eq!(
        u.changes.tables.keys().collect::<Vec<_>>(),
        [table],
        "{:?}",
        u.changes
    );
    u.changes.tables[table].clone()
}

/// A small three-tier-like NB: a switch, two ports, a port group with an ACL, a load
/// balancer on the switch and an address set.
fn populate(nb: &NbServer) {
    nb.nbctl(&["ls-add", "sw0"]);
    nb.nbctl(&["lsp-add", "sw0", "web1"]);
    nb.nbctl(&["lsp-set-addresses", "web1", "02:00:00:00:00:01 10.0.0.1"]);
    nb.nbctl(&["lsp-add", "sw0", "db1"]);
    nb.nbctl(&["pg-add", "pg_web", "web1"]);
    nb.nbctl(&[
        "--type=port-group",
        "acl-add",
        "pg_web",
        "to-lport",
        "1002",
        "outport == @pg_web && ip4 && tcp.dst == 80",
        "allow-related",
    ]);
    nb.nbctl(&[
        "lb-add",
        "lb0",
        "10.0.0.100:80",
        "10.0.0.1:8080,10.0.0.2:8080",
        "tcp",
    ]);
    nb.nbctl(&["ls-lb-add", "sw0", "lb0"]);
    nb.nbctl(&[
        "create",
        "Address_Set",
        "name=as_web",
        r#"addresses="10.0.0.1","10.0.0.2""#,
    ]);
}

#[test]
fn initial_contents_equal_what_nbctl_wrote() {
    let nb = NbServer::start("initial");
    populate(&nb);
    let c = start(&nb.remote());
    let u = next_update(&c);
    assert_eq!(u.kind, UpdateKind::FullResync);
    let counts: BTreeMap<&str, usize> = u
        .changes
        .tables
        .iter()
        .map(|(t, ch)| (t.as_str(), ch.inserted.len()))
        .collect();
    assert_eq!(
        counts,
        BTreeMap::from([
            ("ACL", 1),
            ("Address_Set", 1),
            ("Load_Balancer", 1),
            ("Logical_Switch", 1),
            ("Logical_Switch_Port", 2),
            ("NB_Global", 1),
            ("Port_Group", 1),
        ])
    );
    let t = c.tables();
    assert_eq!(t["Load_Balancer_Group"].len(), 0);
    let (acl_uuid, acl) = t["ACL"].iter().next().unwrap();
    assert_eq!(acl["priority"], Datum::Scalar(Atom::Integer(1002)));
    assert_eq!(text(acl, "direction"), "to-lport");
    assert_eq!(text(acl, "action"), "allow-related");
    assert_eq!(
        text(acl, "match"),
        "outport == @pg_web && ip4 && tcp.dst == 80"
    );
    let (_, pg) = named(&t["Port_Group"], "pg_web");
    assert_eq!(uuids(&pg["acls"]), BTreeSet::from([acl_uuid.clone()]));
    let (web1, lsp) = named(&t["Logical_Switch_Port"], "web1");
    assert_eq!(uuids(&pg["ports"]), BTreeSet::from([web1.clone()]));
    assert_eq!(
        lsp["addresses"],
        Datum::Set([s("02:00:00:00:00:01 10.0.0.1")].into())
    );
    let (db1, _) = named(&t["Logical_Switch_Port"], "db1");
    let (lb_uuid, lb) = named(&t["Load_Balancer"], "lb0");
    assert_eq!(
        lb["vips"],
        Datum::Map([(s("10.0.0.100:80"), s("10.0.0.1:8080,10.0.0.2:8080"))].into())
    );
    assert_eq!(lb["protocol"], Datum::Set([s("tcp")].into()));
    let (_, sw) = named(&t["Logical_Switch"], "sw0");
    assert_eq!(
        uuids(&sw["ports"]),
        BTreeSet::from([web1.clone(), db1.clone()])
    );
    assert_eq!(
        uuids(&sw["load_balancer"]),
        BTreeSet::from([lb_uuid.clone()])
    );
    let (_, set) = named(&t["Address_Set"], "as_web");
    assert_eq!(
        set["addresses"],
        Datum::Set([s("10.0.0.1"), s("10.0.0.2")].into())
    );

    let st = c.state();
    assert!(st.connected);
    assert_eq!(st.remote.as_deref(), Some(nb.remote().as_str()));
    assert_eq!(st.rows["Logical_Switch_Port"], 2);
    let k = c.counters();
    assert_eq!(
        (k.connects, k.resyncs_full, k.transactions, k.malformed),
        (1, 1, 0, 0)
    );
}

#[test]
fn live_changes_arrive_as_change_sets_with_set_and_map_diffs() {
    let nb = NbServer::start("live");
    nb.nbctl(&["ls-add", "sw1"]);
    nb.nbctl(&[
        "create",
        "Address_Set",
        "name=as1",
        r#"addresses="10.0.0.1","10.0.0.2""#,
    ]);
    let c = start(&nb.remote());
    assert_eq!(next_update(&c).kind, UpdateKind::FullResync);

    // A port: one transaction inserts it and adds it to the switch's ports.
    nb.nbctl(&["lsp-add", "sw1", "q1"]);
    let u = next_update(&c);
    assert_eq!(u.kind, UpdateKind::Transaction);
    let lsp = &u.changes.tables["Logical_Switch_Port"];
    assert_eq!(lsp.inserted.len(), 1);
    let q1 = lsp.inserted.keys().next().unwrap().clone();
    let sw = &u.changes.tables["Logical_Switch"];
    assert_eq!(sw.modified.len(), 1);
    let m = sw.modified.values().next().unwrap();
    assert_eq!(m.changed_columns(), ["ports"]);
    assert!(uuids(&m.old["ports"]).is_empty());
    assert_eq!(uuids(&m.new["ports"]), BTreeSet::from([q1.clone()]));

    // Map: a key added, one removed, one changed, in one transaction.
    nb.nbctl(&[
        "set",
        "Logical_Switch",
        "sw1",
        "external_ids:a=1",
        "external_ids:b=2",
    ]);
    let u = next_update(&c);
    let m = only(&u, "Logical_Switch")
        .modified
        .into_values()
        .next()
        .unwrap();
    assert_eq!(
        m.new["external_ids"],
        Datum::Map([(s("a"), s("1")), (s("b"), s("2"))].into())
    );
    nb.nbctl(&[
        "remove",
        "Logical_Switch",
        "sw1",
        "external_ids",
        "a",
        "--",
        "set",
        "Logical_Switch",
        "sw1",
        "external_ids:b=3",
        "external_ids:c=4",
    ]);
    let u = next_update(&c);
    let m = only(&u, "Logical_Switch")
        .modified
        .into_values()
        .next()
        .unwrap();
    assert_eq!(m.changed_columns(), ["external_ids"]);
    assert_eq!(
        m.old["external_ids"],
        Datum::Map([(s("a"), s("1")), (s("b"), s("2"))].into())
    );
    assert_eq!(
        m.new["external_ids"],
        Datum::Map([(s("b"), s("3")), (s("c"), s("4"))].into())
    );

    // Set: one element removed and one added in one transaction.
    nb.nbctl(&[
        "remove",
        "Address_Set",
        "as1",
        "addresses",
        "10.0.0.1",
        "--",
        "add",
        "Address_Set",
        "as1",
        "addresses",
        "10.0.0.3",
    ]);
    let u = next_update(&c);
    let m = only(&u, "Address_Set")
        .modified
        .into_values()
        .next()
        .unwrap();
    assert_eq!(m.changed_columns(), ["addresses"]);
    assert_eq!(
        m.new["addresses"],
        Datum::Set([s("10.0.0.2"), s("10.0.0.3")].into())
    );

    // Optional scalar set then cleared.
    nb.nbctl(&["set", "Logical_Switch_Port", "q1", "enabled=false"]);
    let m = only(&next_update(&c), "Logical_Switch_Port")
        .modified
        .into_values()
        .next()
        .unwrap();
    assert_eq!(m.new["enabled"], Datum::Set([Atom::Boolean(false)].into()));
    nb.nbctl(&["clear", "Logical_Switch_Port", "q1", "enabled"]);
    let m = only(&next_update(&c), "Logical_Switch_Port")
        .modified
        .into_values()
        .next()
        .unwrap();
    assert_eq!(m.new["enabled"], Datum::Set(BTreeSet::new()));

    // Deleting the switch deletes its port too (strong reference).
    nb.nbctl(&["ls-del", "sw1"]);
    let u = next_update(&c);
    assert_eq!(u.changes.tables["Logical_Switch"].deleted.len(), 1);
    assert_eq!(
        u.changes.tables["Logical_Switch_Port"]
            .deleted
            .keys()
            .collect::<Vec<_>>(),
        [&q1]
    );
    assert_eq!(c.tables()["Logical_Switch_Port"].len(), 0);
    assert_eq!(c.counters().transactions, 7);
    assert_eq!(c.state().rows["Address_Set"], 1);
}

#[test]
fn killed_server_keeps_the_replica_then_catches_up_with_exactly_the_difference() {
    let mut nb = NbServer::start("restart");
    nb.nbctl(&["ls-add", "sw0"]);
    nb.nbctl(&["lsp-add", "sw0", "p1"]);
    nb.nbctl(&["lsp-add", "sw0", "p2"]);
    let c = start(&nb.remote());
    next_update(&c);
    let before = c.tables();

    nb.kill();
    wait_for(&c, "the disconnection", |k| k.disconnections == 1);
    assert!(!c.state().connected);
    assert_eq!(c.tables(), before, "the replica is kept while disconnected");

    // Another client changes the database while ours is away.
    nb.restart_hidden();
    nb.nbctl(&["lsp-del", "p1"]);
    nb.nbctl(&["lsp-add", "sw0", "p3"]);
    nb.nbctl(&["set", "Logical_Switch", "sw0", "external_ids:x=y"]);
    nb.nbctl(&["set", "Logical_Switch_Port", "p2", "addresses=router"]);
    nb.expose();

    let u = next_update(&c);
    assert_eq!(u.kind, UpdateKind::FullResync);
    assert_eq!(
        u.changes.tables.keys().collect::<Vec<_>>(),
        ["Logical_Switch", "Logical_Switch_Port"]
    );
    let lsp = &u.changes.tables["Logical_Switch_Port"];
    let name = |r: &Row| text(r, "name");
    assert_eq!(lsp.deleted.values().map(name).collect::<Vec<_>>(), ["p1"]);
    assert_eq!(lsp.inserted.values().map(name).collect::<Vec<_>>(), ["p3"]);
    assert_eq!(lsp.modified.len(), 1);
    let p2 = lsp.modified.values().next().unwrap();
    assert_eq!(
        (name(&p2.new), p2.changed_columns()),
        ("p2".into(), vec!["addresses"])
    );
    let sw = &u.changes.tables["Logical_Switch"];
    assert_eq!(
        sw.modified.values().next().unwrap().changed_columns(),
        ["external_ids", "ports"]
    );
    let k = c.counters();
    assert_eq!(
        (k.connects, k.disconnections, k.resyncs_full),
        (2, 1, 2),
        "{k:?}"
    );
    assert_eq!(c.tables()["Logical_Switch_Port"].len(), 2);
}

#[test]
fn a_restart_without_change_yields_an_empty_change_set() {
    let mut nb = NbServer::start("nochange");
    populate(&nb);
    let c = start(&nb.remote());
    let first = next_update(&c);
    assert!(!first.changes.is_empty());
    let before = c.tables();
    nb.kill();
    wait_for(&c, "the disconnection", |k| k.disconnections == 1);
    nb.restart();
    let u = next_update(&c);
    assert_eq!(u.kind, UpdateKind::FullResync);
    assert!(u.changes.is_empty(), "{:?}", u.changes);
    assert_eq!(c.tables(), before);
    assert_eq!(c.counters().resyncs_full, 2);
}

#[test]
fn tls_client_gets_the_same_replica_and_one_without_certificate_is_refused() {
    let nb = NbServer::start_tls("tls");
    populate(&nb);
    let (_, pki) = nb.tls.as_ref().unwrap();
    let plain = start(&nb.remote());
    next_update(&plain);

    let mut cfg = config(&nb.ssl_remote());
    cfg.tls = Some(TlsFiles {
        private_key: Some(pki.client_key.clone()),
        certificate: Some(pki.client_cert.clone()),
        ca_cert: pki.ca.clone(),
    });
    let tls = OvnClient::start(cfg.clone()).unwrap();
    let u = next_update(&tls);
    assert_eq!(u.changes.rows(), 8);
    assert_eq!(tls.tables(), plain.tables());
    nb.nbctl(&["lsp-add", "sw0", "web2"]);
    assert_eq!(
        next_update(&tls).changes.tables["Logical_Switch_Port"]
            .inserted
            .len(),
        1
    );
    assert_eq!(
        tls.state().remote.as_deref(),
        Some(nb.ssl_remote().as_str())
    );

    cfg.tls = Some(TlsFiles {
        private_key: None,
        certificate: None,
        ca_cert: pki.ca.clone(),
    });
    let anon = OvnClient::start(cfg.clone()).unwrap();
    wait_for(&anon, "two refused attempts", |k| k.connect_failures >= 2);
    assert_eq!(anon.counters().connects, 0);
    assert!(anon.updates().try_recv().is_err());
    assert!(anon.state().last_error.is_some());

    // A CA that did not sign the server's certificate: refused too.
    cfg.tls = Some(TlsFiles {
        private_key: Some(pki.client_key.clone()),
        certificate: Some(pki.client_cert.clone()),
        ca_cert: pki.client_cert.clone(),
    });
    let wrong_ca = OvnClient::start(cfg).unwrap();
    wait_for(&wrong_ca, "a refused attempt", |k| k.connect_failures >= 1);
    assert_eq!(wrong_ca.counters().connects, 0);
}

#[test]
fn silent_and_garbled_servers_are_dropped_and_counted() {
    // A server that accepts and never answers: our echo goes unanswered.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut cfg = config(&format!("tcp:{}", silent.local_addr().unwrap()));
    cfg.probe_interval = Some(Duration::from_millis(200));
    let c = OvnClient::start(cfg).unwrap();
    let (mut conn, _) = silent.accept().unwrap();
    wait_for(&c, "an echo timeout", |k| k.echo_timeouts >= 1);
    let mut got = Vec::new();
    conn.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut buf = [0u8; 4096];
    while let Ok(n) = conn.read(&mut buf) {
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&got);
    assert!(text.contains(r#""method":"get_schema""#), "{text}");
    assert!(text.contains(r#""method":"echo""#), "{text}");
    drop(c);

    // A server that answers garbage.
    let garbled = TcpListener::bind("127.0.0.1:0").unwrap();
    let c = start(&format!("tcp:{}", garbled.local_addr().unwrap()));
    let (mut conn, _) = garbled.accept().unwrap();
    conn.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n").unwrap();
    wait_for(&c, "a malformed message", |k| k.malformed >= 1);
    assert_eq!(c.counters().connects, 0);
}

#[test]
fn clustered_nb_member_killed_the_client_moves_on_and_resumes_from_its_txn_id() {
    let mut cl = ovsdb::NbCluster::start("cluster");
    cl.nbctl(&["ls-add", "sw0"]);
    let c = start(&cl.remotes());
    let first = next_update(&c);
    assert_eq!(first.kind, UpdateKind::FullResync);
    // The row may come in the first contents or just after (a member still catching up).
    while !c.tables()["Logical_Switch"]
        .values()
        .any(|r| text(r, "name") == "sw0")
    {
        next_update(&c);
    }
    let st = c.state();
    let txn = st
        .last_txn_id
        .clone()
        .expect("a clustered server gives transaction ids");
    assert_ne!(txn, dataplane::ovn::replica::ZERO_UUID);
    let was = cl.index_of(st.remote.as_deref().unwrap());

    cl.kill(was);
    wait_for(&c, "the disconnection", |k| k.disconnections == 1);
    cl.nbctl(&["ls-add", "sw1"]);
    let resumed = next_update(&c);
    assert_eq!(resumed.kind, UpdateKind::IncrementalResync, "{resumed:?}");
    assert_ne!(cl.index_of(c.state().remote.as_deref().unwrap()), was);
    // sw1 comes in the resync (written before we were back) or as a transaction after it.
    while !c.tables()["Logical_Switch"]
        .values()
        .any(|r| text(r, "name") == "sw1")
    {
        let u = next_update(&c);
        assert_eq!(u.kind, UpdateKind::Transaction, "{u:?}");
    }
    let k = c.counters();
    assert_eq!((k.resyncs_full, k.resyncs_incremental), (1, 1), "{k:?}");
    assert_eq!(c.tables()["Logical_Switch"].len(), 2);
}

#[test]
fn the_servers_echo_probes_are_answered() {
    let nb = NbServer::start("echo");
    nb.nbctl(&["ls-add", "sw0"]);
    // A TCP listener whose connections the server probes every second.
    let port = ovsdb::free_port();
    nb.nbctl(&[
        "--",
        "set-connection",
        &format!("ptcp:{port}:127.0.0.1"),
        "--",
        "set",
        "connection",
        ".",
        "inactivity_probe=1000",
    ]);
    let deadline = Instant::now() + WAIT;
    let mut raw = loop {
        match std::net::TcpStream::connect(("127.0.0.1", port)) {
            Ok(s) => break s,
            Err(e) => assert!(Instant::now() < deadline, "no ptcp listener: {e}"),
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    // A peer that never answers gets an echo request, then is dropped.
    let mut got = Vec::new();
    raw.set_read_timeout(Some(WAIT)).unwrap();
    let _ = raw.read_to_end(&mut got);
    let text = String::from_utf8_lossy(&got);
    assert!(text.contains(r#""method":"echo""#), "{text}");

    // Our client, its own probe off, answers them and stays connected.
    let mut cfg = config(&format!("tcp:127.0.0.1:{port}"));
    cfg.probe_interval = None;
    let c = OvnClient::start(cfg).unwrap();
    next_update(&c);
    std::thread::sleep(Duration::from_millis(3500)); // three probe intervals and more
    nb.nbctl(&["ls-add", "sw1"]);
    let u = next_update(&c);
    assert_eq!(u.kind, UpdateKind::Transaction);
    let k = c.counters();
    assert_eq!((k.connects, k.disconnections), (1, 0), "{k:?}");
}
