//! NB rows written with `ovn-nbctl` on a real `ovsdb-server`, read by the OVSDB client and
//! translated into our ACL model and load-balancer services: the three-tier example as port
//! groups, a Neutron-style security group, Octavia-style load balancers. Each policy is
//! checked by the reference evaluator's verdict on packets through both OVN stages
//! (from-lport, then to-lport) and by the NB row of the rule that decided.

#[path = "support/ovsdb.rs"]
mod ovsdb;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use dataplane::ovn::replica::Table;
use dataplane::ovn::translate::{
    translate, LocalPort, LspSelector, Outcome, Policy, PolicyTracker, TranslateOptions,
    Translation,
};
use dataplane::ovn::{OvnClient, OvnConfig, Remote};
use ovsdb::NbServer;
use pipeline::acl::{evaluate, Action, PacketSummary, PortId, RuleSet};
use pipeline::lb::service::{L4Protocol, LbConfig};
use pipeline::lb::HashMode;

/// Bound on any wait (a failure bound, never asserted as a duration).
const WAIT: Duration = Duration::from_secs(20);

static MARK: AtomicU64 = AtomicU64::new(1);

/// The client, started on the server.
fn client(nb: &NbServer) -> OvnClient {
    let mut cfg = OvnConfig::new(Remote::parse_list(&nb.remote()).unwrap());
    cfg.backoff_max = Duration::from_secs(1);
    OvnClient::start(cfg).unwrap()
}

/// The replica once it holds every write made before this call: a marker is written last
/// and awaited (updates arrive in commit order).
fn synced(nb: &NbServer, c: &OvnClient) -> BTreeMap<String, Table> {
    let mark = MARK.fetch_add(1, Ordering::Relaxed).to_string();
    nb.nbctl(&[
        "set",
        "NB_Global",
        ".",
        &format!("external_ids:test-mark={mark}"),
    ]);
    let deadline = Instant::now() + WAIT;
    loop {
        let tables = c.tables();
        let seen = tables.get("NB_Global").is_some_and(|t| {
            t.values().any(|r| {
                r.get("external_ids")
                    .and_then(|d| d.map_get("test-mark"))
                    .and_then(|a| a.as_str())
                    == Some(mark.as_str())
            })
        });
        if seen {
            return tables;
        }
        assert!(
            Instant::now() < deadline,
            "the replica never saw mark {mark}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn by_name(port: &str, lsp: &str) -> LocalPort {
    LocalPort {
        port: port.into(),
        selector: LspSelector::Name(lsp.into()),
    }
}

fn by_mac(port: &str, mac: &str) -> LocalPort {
    LocalPort {
        port: port.into(),
        selector: LspSelector::Mac(dataplane::ovn::translate::addresses::parse_mac(mac).unwrap()),
    }
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// Who decided: `default`, or the deciding rule's NB row in the platform's words: its
/// `name`, else ovn-kubernetes's `k8s.ovn.org/name`, else Neutron's rule id, else its owner.
fn decided_by(t: &Translation, rules: &RuleSet, acl: Option<usize>) -> String {
    let Some(i) = acl else {
        return "default".to_string();
    };
    let o = &t.acl_origins[&rules.acls()[i].name];
    let ids = &o.external_ids;
    if !o.name.is_empty() {
        o.name.clone()
    } else if let Some(n) = ids
        .get("k8s.ovn.org/name")
        .or_else(|| ids.get("neutron:security_group_rule_id"))
    {
        n.clone()
    } else {
        o.owner.clone()
    }
}

/// The verdict of both stages, as OVN applies them: the from-lport ACLs first; if they let
/// the packet through, the to-lport ACLs. Returns who decided ([`decided_by`]) and the
/// action.
fn judge(t: &Translation, pkt: PacketSummary<'_>) -> (String, Action) {
    let mut last = ("default".to_string(), Action::Allow);
    for cfg in [&t.policy.from_lport, &t.policy.to_lport] {
        let rules = RuleSet::from_config(cfg).expect("a translated stage builds");
        let v = evaluate(&rules, &pkt);
        last = (decided_by(t, &rules, v.acl), v.action);
        if !v.action.permits() {
            break;
        }
    }
    last
}

fn tcp<'a>(from: &'a str, to: &'a str, src: &str, dst: &str, dport: u16) -> PacketSummary<'a> {
    PacketSummary::tcp(
        PortId::named(from),
        PortId::named(to),
        ip(src),
        ip(dst),
        40000,
        dport,
    )
}

/// `lsp` added to switch `ls` with `addresses` (one `ovn-nbctl` transaction).
fn add_lsp(nb: &NbServer, ls: &str, lsp: &str, addresses: &str) {
    nb.nbctl(&[
        "lsp-add",
        ls,
        lsp,
        "--",
        "lsp-set-addresses",
        lsp,
        addresses,
    ]);
}

#[test]
fn three_tier_port_groups() {
    let nb = NbServer::start("tiers");
    nb.nbctl(&["ls-add", "ls_tiers"]);
    for (lsp, addr) in [
        ("web0", "0a:00:00:00:01:10 10.0.1.10"),
        ("ba0", "0a:00:00:00:02:20 10.0.2.20"),
        ("ba1", "0a:00:00:00:02:21 10.0.2.21"),
        ("db0", "0a:00:00:00:03:30 10.0.3.30"),
    ] {
        add_lsp(&nb, "ls_tiers", lsp, addr);
    }
    nb.nbctl(&["ls-add", "ls_other"]);
    nb.nbctl(&["lsp-add", "ls_other", "elsewhere"]);
    nb.nbctl(&["pg-add", "pg_web", "web0"]);
    nb.nbctl(&["pg-add", "pg_BA", "ba0", "ba1"]);
    nb.nbctl(&["pg-add", "pg_DB", "db0"]);
    let acl = |pg: &str, name: &str, prio: &str, m: &str, action: &str| {
        nb.nbctl(&[
            "--type=port-group",
            &format!("--name={name}"),
            "acl-add",
            pg,
            "to-lport",
            prio,
            m,
            action,
        ]);
    };
    acl(
        "pg_BA",
        "web-to-ba",
        "1000",
        "outport == @pg_BA && ip4 && ip4.src == $pg_web_ip4 && tcp.dst==8080",
        "allow-related",
    );
    acl(
        "pg_DB",
        "ba-to-db",
        "1000",
        "outport == @pg_DB && ip4 && ip4.src == $pg_BA_ip4 && tcp.dst == 5432",
        "allow-related",
    );
    acl(
        "pg_BA",
        "web-telnet-reject",
        "1100",
        "outport==@pg_BA&&tcp.dst==23",
        "reject",
    );
    for pg in ["pg_web", "pg_BA", "pg_DB"] {
        acl(
            pg,
            &format!("drop-{pg}"),
            "900",
            &format!("outport == @{pg} && ip"),
            "drop",
        );
    }

    let c = client(&nb);
    let ports = [
        by_name("web0", "web0"),
        by_mac("ba0", "0A:00:00:00:02:20"),
        by_name("db0", "db0"),
        by_name("up0", "no-such-lsp"),
    ];
    let tr =
        |tables: &BTreeMap<String, Table>| translate(tables, &ports, TranslateOptions::default());
    let t = tr(&synced(&nb, &c));
    assert!(t.refused.is_empty(), "{}", t.report());
    let bound: Vec<Option<&str>> = t
        .bindings
        .iter()
        .map(|b| b.lsp.as_ref().ok().map(|l| l.name.as_str()))
        .collect();
    assert_eq!(bound, [Some("web0"), Some("ba0"), Some("db0"), None]);
    assert_eq!(t.taken.switches, 1);
    assert_eq!(t.taken.acls, 6);
    assert_eq!(t.taken.derived_sets, 2);
    assert!(t.policy.from_lport.rules.is_empty());
    assert_eq!(
        t.policy.to_lport.port_groups["pg_BA"],
        ["ba0"],
        "only our port"
    );
    assert_eq!(
        t.policy.to_lport.address_sets["pg_BA_ip4"]
            .iter()
            .map(|n| n.to_string())
            .collect::<Vec<_>>(),
        ["10.0.2.20", "10.0.2.21"],
        "derived from every member, ours or not"
    );

    let check = |t: &Translation| {
        (
            judge(t, tcp("web0", "ba0", "10.0.1.10", "10.0.2.20", 8080)),
            judge(t, tcp("up0", "db0", "10.0.2.21", "10.0.3.30", 5432)),
            judge(t, tcp("web0", "db0", "10.0.1.10", "10.0.3.30", 5432)),
            judge(t, tcp("ba0", "db0", "10.0.2.20", "10.0.3.30", 22)),
            judge(t, tcp("web0", "ba0", "10.0.1.10", "10.0.2.20", 23)),
            judge(t, tcp("db0", "up0", "10.0.3.30", "8.8.8.8", 53)),
        )
    };
    let s = |x: &str, a| (x.to_string(), a);
    assert_eq!(
        check(&t),
        (
            s("web-to-ba", Action::AllowRelated),
            // ba1 is not ours, but its address is in $pg_BA_ip4.
            s("ba-to-db", Action::AllowRelated),
            s("drop-pg_DB", Action::Drop),
            s("drop-pg_DB", Action::Drop),
            s("web-telnet-reject", Action::Reject),
            // No ACL for the uplink: OVN's default is allow.
            s("default", Action::AllowRelated),
        )
    );
    let mut tracker = PolicyTracker::default();
    assert!(tracker.offer(&t.policy));

    // A change elsewhere (another switch) publishes nothing.
    nb.nbctl(&[
        "set",
        "Logical_Switch_Port",
        "elsewhere",
        "external_ids:x=1",
    ]);
    nb.nbctl(&[
        "lsp-set-addresses",
        "elsewhere",
        "0a:00:00:00:09:09 10.9.9.9",
    ]);
    assert!(!tracker.offer(&tr(&synced(&nb, &c)).policy));

    // A member added to pg_BA (its address, from dynamic_addresses) opens BA -> DB for it,
    // removing it closes it again.
    add_lsp(&nb, "ls_tiers", "ba2", "dynamic");
    nb.nbctl(&[
        "set",
        "Logical_Switch_Port",
        "ba2",
        "dynamic_addresses=\"0a:00:00:00:02:22 10.0.2.22\"",
    ]);
    let from_ba2 = |t: &Translation| judge(t, tcp("up0", "db0", "10.0.2.22", "10.0.3.30", 5432));
    let t = tr(&synced(&nb, &c));
    assert_eq!(
        from_ba2(&t),
        s("drop-pg_DB", Action::Drop),
        "not a member yet"
    );
    nb.nbctl(&["pg-set-ports", "pg_BA", "ba0", "ba1", "ba2"]);
    let t = tr(&synced(&nb, &c));
    assert!(tracker.offer(&t.policy));
    assert_eq!(from_ba2(&t), s("ba-to-db", Action::AllowRelated));
    nb.nbctl(&["pg-set-ports", "pg_BA", "ba0", "ba1"]);
    let t = tr(&synced(&nb, &c));
    assert!(tracker.offer(&t.policy));
    assert_eq!(from_ba2(&t), s("drop-pg_DB", Action::Drop));

    // The DB drop raised above the allow: BA -> DB is cut; the drop deleted: web -> DB falls
    // to the default (allow, committing the connection on this stateful switch, as OVN).
    let drop_db = nb.uuid_named("ACL", "drop-pg_DB");
    nb.nbctl(&["set", "ACL", &drop_db, "priority=1200"]);
    let t = tr(&synced(&nb, &c));
    assert_eq!(
        judge(&t, tcp("ba0", "db0", "10.0.2.20", "10.0.3.30", 5432)),
        s("drop-pg_DB", Action::Drop)
    );
    nb.nbctl(&["remove", "Port_Group", "pg_DB", "acls", &drop_db]);
    let t = tr(&synced(&nb, &c));
    assert_eq!(
        judge(&t, tcp("web0", "db0", "10.0.1.10", "10.0.3.30", 5432)),
        s("default", Action::AllowRelated)
    );
    assert_eq!(
        judge(&t, tcp("ba0", "db0", "10.0.2.20", "10.0.3.30", 5432)),
        s("ba-to-db", Action::AllowRelated)
    );
    // default_acl_drop turns the default into drop.
    nb.nbctl(&["set", "NB_Global", ".", "options:default_acl_drop=true"]);
    let t = tr(&synced(&nb, &c));
    assert_eq!(
        judge(&t, tcp("web0", "db0", "10.0.1.10", "10.0.3.30", 5432)),
        s("default", Action::Drop)
    );
}

/// A security group as Neutron's OVN driver writes it: `neutron_pg_drop` at 1001 in both
/// directions, the group `pg_<sg uuid>` with allow-related rules at 1002 whose
/// external_ids name the security-group rule, remote-group `$pg_<uuid>_ip4`.
#[test]
fn neutron_security_group() {
    let nb = NbServer::start("neutron");
    let net = "neutron-5a0e4c1e-0c4b-4e8a-9d3f-6f1b2a3c4d5e";
    let sg = "pg_0f1e2d3c_4b5a_6978_8a9b_0c1d2e3f4a5b";
    let (vm1, vm2) = (
        "9e6d1a52-3f0c-4a8b-b7e1-2c4d6f8a0b1c",
        "1b2c3d4e-5f60-4718-9a0b-c1d2e3f4a5b6",
    );
    nb.nbctl(&["ls-add", net]);
    for (lsp, addr) in [
        (vm1, "fa:16:3e:11:11:11 10.0.0.11"),
        (vm2, "fa:16:3e:22:22:22 10.0.0.12"),
    ] {
        add_lsp(&nb, net, lsp, addr);
        nb.nbctl(&["lsp-set-port-security", lsp, addr]);
    }
    nb.nbctl(&["pg-add", "neutron_pg_drop", vm1, vm2]);
    nb.nbctl(&["pg-add", sg, vm1, vm2]);
    nb.nbctl(&[
        "set",
        "Port_Group",
        sg,
        "external_ids:\"neutron:security_group_id\"=\"0f1e2d3c-4b5a-6978-8a9b-0c1d2e3f4a5b\"",
    ]);
    for (dir, m) in [
        ("to-lport", "outport == @neutron_pg_drop && ip"),
        ("from-lport", "inport == @neutron_pg_drop && ip"),
    ] {
        nb.nbctl(&[
            "--type=port-group",
            "acl-add",
            "neutron_pg_drop",
            dir,
            "1001",
            m,
            "drop",
        ]);
    }
    let rule = |id: &str, dir: &str, prio: &str, m: &str, action: &str| {
        nb.nbctl(&[
            "--id=@a",
            "create",
            "ACL",
            &format!("direction={dir}"),
            &format!("priority={prio}"),
            &format!("match=\"{m}\""),
            &format!("action={action}"),
            &format!("external_ids:\"neutron:security_group_rule_id\"=\"{id}\""),
            "--",
            "add",
            "Port_Group",
            sg,
            "acls",
            "@a",
        ]);
    };
    rule(
        "r-egress4",
        "from-lport",
        "1002",
        &format!("inport == @{sg} && ip4"),
        "allow-related",
    );
    rule(
        "r-ssh-remote-group",
        "to-lport",
        "1002",
        &format!("outport == @{sg} && ip4 && ip4.src == ${sg}_ip4 && tcp && tcp.dst == 22"),
        "allow-related",
    );
    rule(
        "r-web-cidr",
        "to-lport",
        "1002",
        &format!(
            "outport == @{sg} && ip4 && ip4.src == 192.168.0.0/24 && tcp && tcp.dst >= 8000 && tcp.dst <= 8080"
        ),
        "allow-related",
    );
    rule(
        "r-ping",
        "to-lport",
        "1002",
        &format!("outport == @{sg} && ip4 && icmp4 && icmp4.type == 8 && icmp4.code == 0"),
        "allow-related",
    );
    // Rows we cannot take as written: an unknown remote group (OVN skips it too), an allow
    // on IGMP (not compiled: left out), a drop on eth.src (not compiled: fail closed).
    rule(
        "r-bad-remote",
        "to-lport",
        "1002",
        &format!("outport == @{sg} && ip4 && ip4.src == $pg_missing_ip4"),
        "allow-related",
    );
    rule(
        "r-igmp",
        "to-lport",
        "1002",
        &format!("outport == @{sg} && igmp"),
        "allow-related",
    );
    // SCTP as Neutron writes it (`--protocol sctp --dst-port 38412`, a 5G core's N2).
    rule(
        "r-sctp-n2",
        "to-lport",
        "1002",
        &format!("outport == @{sg} && ip4 && ip4.src == 10.20.0.0/16 && sctp && sctp.dst == 38412"),
        "allow-related",
    );

    let c = client(&nb);
    // Our one VF is vm1, found by its MAC (its Neutron port's MAC).
    let ports = [by_mac("vf0", "fa:16:3e:11:11:11"), by_name("up0", "uplink")];
    let opts = TranslateOptions::default();
    let t = translate(&synced(&nb, &c), &ports, opts);
    assert_eq!(t.bindings[0].lsp.as_ref().unwrap().name, vm1);
    let mut outcomes: Vec<(Outcome, bool)> = t
        .refused
        .iter()
        .map(|r| (r.outcome, r.reason.contains("pg_missing_ip4")))
        .collect();
    outcomes.sort();
    assert_eq!(
        outcomes,
        [(Outcome::Skipped, true), (Outcome::AllowOmitted, false)],
        "{}",
        t.report()
    );

    let s = |x: &str, a| (x.to_string(), a);
    let into_vm1 = |t: &Translation, src: &str, dport: u16| {
        judge(t, tcp("up0", "vf0", src, "10.0.0.11", dport))
    };
    // From the other member of the group (not ours: its address is in $pg_..._ip4).
    assert_eq!(
        into_vm1(&t, "10.0.0.12", 22),
        s("r-ssh-remote-group", Action::AllowRelated)
    );
    assert_eq!(
        into_vm1(&t, "10.0.0.99", 22),
        s("Port_Group neutron_pg_drop", Action::Drop)
    );
    assert_eq!(
        into_vm1(&t, "192.168.0.5", 8080),
        s("r-web-cidr", Action::AllowRelated)
    );
    assert_eq!(
        into_vm1(&t, "192.168.0.5", 8081),
        s("Port_Group neutron_pg_drop", Action::Drop)
    );
    let sctp_into_vm1 = |t: &Translation, src: &str, dport: u16| {
        judge(
            t,
            PacketSummary {
                proto: 132,
                ..tcp("up0", "vf0", src, "10.0.0.11", dport)
            },
        )
    };
    assert_eq!(
        sctp_into_vm1(&t, "10.20.1.1", 38412),
        s("r-sctp-n2", Action::AllowRelated)
    );
    assert_eq!(
        sctp_into_vm1(&t, "10.20.1.1", 38413),
        s("Port_Group neutron_pg_drop", Action::Drop),
        "another SCTP port"
    );
    assert_eq!(
        into_vm1(&t, "10.20.1.1", 38412),
        s("Port_Group neutron_pg_drop", Action::Drop),
        "TCP to the same port"
    );
    assert_eq!(
        judge(
            &t,
            PacketSummary::icmp(
                PortId::named("up0"),
                PortId::named("vf0"),
                ip("10.9.9.9"),
                ip("10.0.0.11"),
                8,
                0
            )
        ),
        s("r-ping", Action::AllowRelated)
    );
    // Out of vm1: the egress rule (from-lport), then no to-lport ACL for the uplink.
    assert_eq!(
        judge(&t, tcp("vf0", "up0", "10.0.0.11", "1.1.1.1", 443)),
        s("default", Action::AllowRelated)
    );
    assert_eq!(
        judge(
            &t,
            PacketSummary::tcp(
                PortId::named("vf0"),
                PortId::named("up0"),
                ip("fd00::11"),
                ip("fd00::1"),
                1,
                443
            )
        ),
        s("Port_Group neutron_pg_drop", Action::Drop),
        "no IPv6 egress rule"
    );

    // An unsupported drop above the SSH rule fails closed: SSH from the group is cut.
    rule(
        "r-eth-drop",
        "to-lport",
        "1500",
        &format!("outport == @{sg} && eth.src == fa:16:3e:22:22:22"),
        "drop",
    );
    let t = translate(&synced(&nb, &c), &ports, opts);
    assert_eq!(into_vm1(&t, "10.0.0.12", 22), s("r-eth-drop", Action::Drop));
    assert!(
        t.refused.iter().any(|r| r.outcome == Outcome::DropInstead),
        "{}",
        t.report()
    );
    // ... unless OVN's skip-and-log is chosen.
    let open = TranslateOptions {
        fail_open_unsupported: true,
        ..TranslateOptions::default()
    };
    let t = translate(&synced(&nb, &c), &ports, open);
    assert_eq!(
        into_vm1(&t, "10.0.0.12", 22),
        s("r-ssh-remote-group", Action::AllowRelated)
    );

    // neutron_pg_drop's priority is read, never assumed: at 1000 (Neutron master) the same.
    for u in nb
        .nbctl(&["--bare", "--columns=_uuid", "find", "ACL", "priority=1001"])
        .lines()
        .filter(|l| !l.trim().is_empty())
    {
        nb.nbctl(&["set", "ACL", u.trim(), "priority=1000"]);
    }
    let t = translate(&synced(&nb, &c), &ports, open);
    assert_eq!(
        into_vm1(&t, "10.0.0.99", 22),
        s("Port_Group neutron_pg_drop", Action::Drop)
    );
    assert_eq!(
        into_vm1(&t, "10.0.0.12", 22),
        s("r-ssh-remote-group", Action::AllowRelated)
    );
    assert_eq!(
        t.policy
            .to_lport
            .rules
            .iter()
            .filter(|r| t.acl_origins[r.name.as_deref().unwrap()]
                .owner
                .contains("neutron_pg_drop"))
            .map(|r| r.priority)
            .collect::<Vec<_>>(),
        [1000]
    );

    // Neutron's network log (`openstack network log create --resource-type security_group`)
    // on the SSH rule: log, a name, a meter, a unique label and options:log-related, so
    // that OVN logs the replies of the connections the rule admits too.
    let ssh = nb
        .nbctl(&[
            "--bare",
            "--columns=_uuid",
            "find",
            "ACL",
            "external_ids:\"neutron:security_group_rule_id\"=\"r-ssh-remote-group\"",
        ])
        .trim()
        .to_string();
    nb.nbctl(&[
        "set",
        "ACL",
        &ssh,
        "log=true",
        "name=neutron-4f3e2d1c-log",
        "severity=info",
        "label=101",
        "options:log-related=true",
    ]);
    let t = translate(&synced(&nb, &c), &ports, open);
    let spec = t
        .policy
        .to_lport
        .rules
        .iter()
        .find(|r| r.name.as_deref() == Some(ssh.as_str()))
        .and_then(|r| r.log.clone())
        .expect("the SSH rule logs");
    assert_eq!(spec.name, "neutron-4f3e2d1c-log");
    assert!(spec.related, "log-related with a label: replies logged");
    // Without the label OVN cannot tell whose replies they are, and logs only the rule's.
    nb.nbctl(&["set", "ACL", &ssh, "label=0"]);
    let t = translate(&synced(&nb, &c), &ports, open);
    assert!(
        !t.policy
            .to_lport
            .rules
            .iter()
            .find(|r| r.name.as_deref() == Some(ssh.as_str()))
            .and_then(|r| r.log.clone())
            .unwrap()
            .related
    );
}

/// Load balancers as Octavia's OVN provider writes them: one row per (Octavia LB,
/// protocol) named by the Octavia LB's UUID, `vips` rebuilt from its members, external_ids
/// naming the VIP; one reached through a Load_Balancer_Group.
#[test]
fn octavia_load_balancers() {
    let nb = NbServer::start("octavia");
    let net = "neutron-7c1d2e3f-0000-4000-8000-000000000001";
    nb.nbctl(&["ls-add", net]);
    add_lsp(&nb, net, "vip-port", "fa:16:3e:aa:aa:aa 10.0.0.100");
    nb.nbctl(&["ls-add", "neutron-unrelated"]);
    let octavia = "3f2e1d0c-b9a8-4765-8432-10fedcba9876";
    let lb = |proto: &str, vips: &str, extra: &[&str]| -> String {
        let mut args = vec![
            "create".to_string(),
            "Load_Balancer".to_string(),
            format!("name={octavia}"),
            format!("protocol={proto}"),
            format!("vips:{vips}"),
            "external_ids:\"neutron:vip\"=\"10.0.0.100\"".to_string(),
            "external_ids:enabled=True".to_string(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        nb.nbctl(&a)
    };
    let tcp_lb = lb(
        "tcp",
        "\"10.0.0.100:80\"=\"10.0.0.11:8080,10.0.0.12:8080\"",
        &["selection_fields=ip_src,ip_dst,tp_src,tp_dst"],
    );
    let udp_lb = lb(
        "udp",
        "\"10.0.0.100:53\"=\"10.0.0.11:5353\"",
        &[
            "selection_fields=ip_src,ip_dst",
            "options:affinity_timeout=60",
            // As ovn-kubernetes sets it: no backend, answer (ICMP port unreachable).
            "options:reject=true",
        ],
    );
    let sctp_lb = lb("sctp", "\"10.0.0.100:38412\"=\"10.0.0.11:38412\"", &[]);
    nb.nbctl(&["ls-lb-add", net, &tcp_lb]);
    nb.nbctl(&["ls-lb-add", net, &sctp_lb]);
    let group = nb.nbctl(&[
        "create",
        "Load_Balancer_Group",
        "name=octavia_group",
        &format!("load_balancer={udp_lb}"),
    ]);
    nb.nbctl(&["add", "Logical_Switch", net, "load_balancer_group", &group]);
    // Not on our switch: not taken.
    let other = nb.nbctl(&[
        "create",
        "Load_Balancer",
        "name=other",
        "protocol=tcp",
        "vips:\"10.9.0.1:80\"=\"10.9.0.2:80\"",
    ]);
    nb.nbctl(&["ls-lb-add", "neutron-unrelated", &other]);
    // A stateful switch: a plain allow commits to conntrack as in OVN.
    nb.nbctl(&["acl-add", net, "from-lport", "100", "ip4", "allow"]);

    let c = client(&nb);
    let ports = [by_name("vf0", "vip-port")];
    let t = translate(&synced(&nb, &c), &ports, TranslateOptions::default());
    assert_eq!(t.taken.load_balancers, 3, "{}", t.report());
    assert!(t.refused.is_empty(), "{}", t.report());
    assert_eq!(t.policy.from_lport.rules[0].action, Action::AllowRelated);
    let svcs = &t.policy.services;
    assert_eq!(svcs.len(), 3);
    // An SCTP listener (Octavia's OVN provider supports them): one SCTP service.
    let sctp_svc = svcs
        .iter()
        .find(|s| s.protocol == L4Protocol::Sctp)
        .unwrap();
    assert_eq!(
        (
            sctp_svc.vip,
            sctp_svc.port,
            sctp_svc.backends[0].display_name()
        ),
        (ip("10.0.0.100"), Some(38412), "10.0.0.11:38412".to_string())
    );
    assert_eq!(t.lb_origins[&sctp_svc.name].uuid, sctp_lb);
    let tcp_svc = svcs.iter().find(|s| s.protocol == L4Protocol::Tcp).unwrap();
    assert_eq!((tcp_svc.vip, tcp_svc.port), (ip("10.0.0.100"), Some(80)));
    assert_eq!(
        tcp_svc
            .backends
            .iter()
            .map(|b| b.display_name())
            .collect::<Vec<_>>(),
        ["10.0.0.11:8080", "10.0.0.12:8080"]
    );
    assert_eq!(tcp_svc.hash, HashMode::FiveTuple);
    let udp_svc = svcs.iter().find(|s| s.protocol == L4Protocol::Udp).unwrap();
    assert_eq!(udp_svc.hash, HashMode::SrcIp, "affinity");
    assert!(udp_svc.reject && !tcp_svc.reject, "options:reject");
    let origin = &t.lb_origins[&tcp_svc.name];
    assert_eq!(
        (origin.uuid.as_str(), origin.name.as_str()),
        (tcp_lb.as_str(), octavia)
    );
    assert_eq!(origin.external_ids["neutron:vip"], "10.0.0.100");
    // The services build as the TOML path builds them.
    let cfg = LbConfig {
        services: svcs.clone(),
        ..LbConfig::default()
    };
    cfg.validate().unwrap();
    let mut ids = pipeline::lb::service::IdSpace::default();
    pipeline::lb::service::ServiceTable::build(&cfg, &mut ids, 1).unwrap();

    // A member drained (Octavia rewrites vips without it), then a member added.
    let mut tracker = PolicyTracker::default();
    assert!(tracker.offer(&t.policy));
    nb.nbctl(&[
        "set",
        "Load_Balancer",
        &tcp_lb,
        "vips:\"10.0.0.100:80\"=\"10.0.0.12:8080\"",
    ]);
    let t = translate(&synced(&nb, &c), &ports, TranslateOptions::default());
    assert!(tracker.offer(&t.policy));
    let backends = |p: &Policy| {
        p.services
            .iter()
            .find(|s| s.protocol == L4Protocol::Tcp)
            .unwrap()
            .backends
            .iter()
            .map(|b| b.display_name())
            .collect::<Vec<_>>()
    };
    assert_eq!(backends(&t.policy), ["10.0.0.12:8080"]);
    nb.nbctl(&[
        "set",
        "Load_Balancer",
        &tcp_lb,
        "vips:\"10.0.0.100:80\"=\"10.0.0.12:8080, 10.0.0.13:8080\"",
    ]);
    let t = translate(&synced(&nb, &c), &ports, TranslateOptions::default());
    assert!(tracker.offer(&t.policy));
    assert_eq!(backends(&t.policy), ["10.0.0.12:8080", "10.0.0.13:8080"]);
    // The unrelated LB changes: nothing to publish.
    nb.nbctl(&[
        "set",
        "Load_Balancer",
        &other,
        "vips:\"10.9.0.1:80\"=\"10.9.0.3:80\"",
    ]);
    let t = translate(&synced(&nb, &c), &ports, TranslateOptions::default());
    assert!(!tracker.offer(&t.policy));
}

/// `dataplane check` with `[ovn]`: connects (unix and TLS with the table's certificates),
/// prints each port's LSP and what it took and refused; bad `[ovn]` keys are refused with file, key and reason (exit 2); an NB that
/// cannot be reached is reported within the wait (exit 1).
/// The verdict of the three stages around the load balancer, as OVN applies them to a
/// packet from `inport` to `vip:dport`: the from-lport ACLs on the VIP; the service's
/// `backend`-th backend chosen (DNAT); then the apply-after-lb from-lport ACLs and the
/// to-lport ACLs on the backend (`outport`). Returns the stage that decided (`-` when all
/// allowed), who decided ([`decided_by`]) and the action.
fn judge_through_lb(
    t: &Translation,
    inport: &str,
    src: &str,
    vip: &str,
    dport: u16,
    backend: usize,
    outport: &str,
) -> (&'static str, String, Action) {
    let svc = t
        .policy
        .services
        .iter()
        .find(|s| s.vip == ip(vip) && s.port == Some(dport))
        .expect("a service on the VIP");
    let b = &svc.backends[backend];
    let be_addr = b.address.to_string();
    let be_port = b.port.unwrap_or(dport);
    let stages = [
        (
            "from-lport",
            &t.policy.from_lport,
            vip.to_string(),
            dport,
            "none",
        ),
        (
            "from-lport after-lb",
            &t.policy.after_lb,
            be_addr.clone(),
            be_port,
            outport,
        ),
        ("to-lport", &t.policy.to_lport, be_addr, be_port, outport),
    ];
    for (stage, cfg, dst, port, out) in stages {
        let rules = RuleSet::from_config(cfg).expect("a translated stage builds");
        let pkt = tcp(inport, out, src, &dst, port);
        let v = evaluate(&rules, &pkt);
        if !v.action.permits() {
            return (stage, decided_by(t, &rules, v.acl), v.action);
        }
    }
    ("-", "-".into(), Action::Allow)
}

/// An egress NetworkPolicy as ovn-kubernetes writes it: from-lport ACLs with
/// `options:apply-after-lb=true` (the namespace's default-deny and the policy's allow), so
/// that they see the Service's chosen endpoint, not its ClusterIP. With an `after_lb_node`
/// they form the stage after the load balancer: a connection to the Service is allowed when
/// it is balanced to the allowed pod and dropped by the default-deny when it is balanced to
/// the other; the stage before the LB (seeing the VIP) keeps its own ACLs and default.
/// Without one, they fail closed (the allow left out, the drop over the whole direction).
#[test]
fn ovn_kubernetes_egress_policy_applies_after_lb() {
    let nb = NbServer::start("after-lb");
    nb.nbctl(&["ls-add", "node1"]);
    for (lsp, addr) in [
        ("ns1_client", "0a:58:0a:f4:01:05 10.244.1.5"),
        ("ns2_web-a", "0a:58:0a:f4:02:0a 10.244.2.10"),
        ("ns2_web-b", "0a:58:0a:f4:02:0b 10.244.2.11"),
    ] {
        add_lsp(&nb, "node1", lsp, addr);
    }
    let lb = nb.nbctl(&[
        "create",
        "Load_Balancer",
        "name=Service_ns2/web_TCP_cluster",
        "protocol=tcp",
        "vips:\"10.96.0.50:80\"=\"10.244.2.10:8080,10.244.2.11:8080\"",
        "options:reject=true",
        "external_ids:\"k8s.ovn.org/kind\"=Service",
        "external_ids:\"k8s.ovn.org/owner\"=\"ns2/web\"",
    ]);
    nb.nbctl(&["ls-lb-add", "node1", &lb]);
    // The pods a policy selects are an NB address set (ovn-kubernetes names them by hash).
    nb.nbctl(&[
        "create",
        "Address_Set",
        "name=a4815162342_v4",
        "addresses=\"10.244.2.10\"",
    ]);
    nb.nbctl(&["pg-add", "a1111_egressDefaultDeny", "ns1_client"]);
    nb.nbctl(&["pg-add", "a2222_allow-web-a", "ns1_client"]);
    let acl = |pg: &str, name: &str, dir: &str, prio: &str, m: &str, action: &str, after: bool| {
        let mut args = vec!["--type=port-group".to_string()];
        if after {
            args.push("--apply-after-lb".into());
        }
        args.extend(
            ["acl-add", pg, dir, prio, m, action]
                .iter()
                .map(|a| a.to_string()),
        );
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        nb.nbctl(&a);
        let uuid = nb.nbctl(&[
            "--bare",
            "--columns=_uuid",
            "find",
            "ACL",
            &format!("match={m:?}"),
        ]);
        nb.nbctl(&[
            "set",
            "ACL",
            &uuid,
            &format!("external_ids:\"k8s.ovn.org/name\"=\"{name}\""),
        ]);
        uuid
    };
    let deny = acl(
        "a1111_egressDefaultDeny",
        "egressDefaultDeny",
        "from-lport",
        "1000",
        "inport == @a1111_egressDefaultDeny",
        "drop",
        true,
    );
    let arp = acl(
        "a1111_egressDefaultDeny",
        "egressDefaultDeny-arp",
        "from-lport",
        "1001",
        "inport == @a1111_egressDefaultDeny && (arp || nd)",
        "allow",
        true,
    );
    let allow = acl(
        "a2222_allow-web-a",
        "allow-web-a",
        "from-lport",
        "1001",
        "ip4.dst == $a4815162342_v4 && inport == @a2222_allow-web-a && tcp && tcp.dst==8080",
        "allow-related",
        true,
    );
    // Not after the LB (no option): sees the ClusterIP. OVN ignores the option on to-lport.
    let vip_reject = acl(
        "a2222_allow-web-a",
        "no-https-to-vip",
        "from-lport",
        "1001",
        "inport == @a2222_allow-web-a && ip4.dst == 10.96.0.50 && tcp.dst == 443",
        "reject",
        false,
    );
    let to_lport = acl(
        "a2222_allow-web-a",
        "to-client",
        "to-lport",
        "1001",
        "outport == @a2222_allow-web-a && ip4.src == 10.244.9.9",
        "drop",
        true,
    );

    let c = client(&nb);
    let ports = [
        by_name("c0", "ns1_client"),
        by_name("wa", "ns2_web-a"),
        by_name("wb", "ns2_web-b"),
    ];
    let staged = TranslateOptions {
        after_lb_stage: true,
        ..TranslateOptions::default()
    };
    let t = translate(&synced(&nb, &c), &ports, staged);
    assert!(t.refused.is_empty(), "{}", t.report());
    let names = |cfg: &pipeline::acl::AclConfig| -> Vec<String> {
        let mut v: Vec<String> = cfg.rules.iter().filter_map(|r| r.name.clone()).collect();
        v.sort();
        v
    };
    let mut after = vec![deny.clone(), arp.clone(), allow.clone()];
    after.sort();
    assert_eq!(names(&t.policy.after_lb), after);
    assert_eq!(names(&t.policy.from_lport), [vip_reject.as_str()]);
    assert_eq!(names(&t.policy.to_lport), [to_lport.as_str()]);
    // A stateful switch (allow-related, a load balancer): the defaults allow and commit, so
    // that replies of connections no ACL decided pass the stages whose rules would drop
    // them (the default-deny here, for the web pods' replies).
    assert_eq!(t.policy.after_lb.default, Action::AllowRelated);
    assert_eq!(t.policy.from_lport.default, Action::AllowRelated);
    assert!(
        t.report().contains("3 from-lport after-lb"),
        "{}",
        t.report()
    );
    // The stage only names what its rules reference.
    assert!(t
        .policy
        .after_lb
        .address_sets
        .contains_key("a4815162342_v4"));
    assert!(!t
        .policy
        .from_lport
        .address_sets
        .contains_key("a4815162342_v4"));

    let svc = &t.policy.services[0];
    let pick = |addr: &str| {
        svc.backends
            .iter()
            .position(|b| b.address == ip(addr))
            .unwrap()
    };
    let (a, b) = (pick("10.244.2.10"), pick("10.244.2.11"));
    // Balanced to web-a: allowed by the policy, which sees the endpoint, not the VIP.
    assert_eq!(
        judge_through_lb(&t, "c0", "10.244.1.5", "10.96.0.50", 80, a, "wa"),
        ("-", "-".into(), Action::Allow)
    );
    // Balanced to web-b: the namespace's egress default-deny, after the LB.
    assert_eq!(
        judge_through_lb(&t, "c0", "10.244.1.5", "10.96.0.50", 80, b, "wb"),
        (
            "from-lport after-lb",
            "egressDefaultDeny".into(),
            Action::Drop
        )
    );
    // The ClusterIP is what the stage before the LB sees.
    let rules = RuleSet::from_config(&t.policy.from_lport).unwrap();
    let v = evaluate(&rules, &tcp("c0", "none", "10.244.1.5", "10.96.0.50", 443));
    assert_eq!(v.action, Action::Reject);
    assert_eq!(rules.acls()[v.acl.unwrap()].name, vip_reject);
    // A pod the policies do not select is not denied by them in any stage.
    assert_eq!(
        judge_through_lb(&t, "wa", "10.244.2.10", "10.96.0.50", 80, b, "wb"),
        ("-", "-".into(), Action::Allow)
    );

    // No stage after the LB configured: the after-lb ACLs cannot be applied where OVN
    // applies them and fail closed, each saying why.
    let t = translate(&synced(&nb, &c), &ports, TranslateOptions::default());
    assert!(t.policy.after_lb.rules.is_empty());
    let mut refused: Vec<(&str, Outcome)> = t
        .refused
        .iter()
        .map(|r| (r.uuid.as_str(), r.outcome))
        .collect();
    refused.sort();
    let mut expected = vec![
        (deny.as_str(), Outcome::DropInstead),
        (arp.as_str(), Outcome::AllowOmitted),
        (allow.as_str(), Outcome::AllowOmitted),
    ];
    expected.sort();
    assert_eq!(refused, expected, "{}", t.report());
    assert!(t.refused.iter().all(|r| r.reason.contains("after_lb_node")));
    assert_eq!(
        judge_through_lb(&t, "c0", "10.244.1.5", "10.96.0.50", 80, a, "wa"),
        ("from-lport", "egressDefaultDeny".into(), Action::Drop),
        "fail closed"
    );
}

#[test]
fn dataplane_check_with_ovn() {
    let nb = NbServer::start_tls("check");
    nb.nbctl(&["ls-add", "ls0"]);
    add_lsp(&nb, "ls0", "vm1", "fa:16:3e:11:11:11 10.0.0.11");
    nb.nbctl(&["pg-add", "pg_sg", "vm1"]);
    nb.nbctl(&[
        "--type=port-group",
        "acl-add",
        "pg_sg",
        "to-lport",
        "1002",
        "outport == @pg_sg && ip4 && tcp.dst == 22",
        "allow-related",
    ]);
    nb.nbctl(&[
        "--type=port-group",
        "acl-add",
        "pg_sg",
        "to-lport",
        "1002",
        "outport == @pg_sg && ct.new",
        "allow-related",
    ]);
    let config = |ovn: &str, port_extra: &str| {
        format!(
            r#"
[eal]
lcores = [0, 1]
[ports.vf0]
role = "access"
kind = "vhost-user"
path = "/tmp/ovn-check-vf0.sock"
{port_extra}
[ports.up0]
role = "uplink"
kind = "vhost-user"
path = "/tmp/ovn-check-up0.sock"
[forwarding]
cross_connect = [["vf0", "up0"]]
{ovn}
"#
        )
    };
    let run = |text: &str| {
        let file = nb
            .dir
            .join(format!("cfg-{}.toml", MARK.fetch_add(1, Ordering::Relaxed)));
        std::fs::write(&file, text).unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_dataplane"))
            .args(["check", "--config"])
            .arg(&file)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
            file,
        )
    };
    let ovn = format!("[ovn]\nremotes = \"{}\"\ncheck_wait_s = 10", nb.remote());
    let (code, out, err, _) = run(&config(&ovn, "lsp_mac = \"FA:16:3E:11:11:11\""));
    assert_eq!(code, Some(0), "{out}\n{err}");
    assert!(out.contains("ovn: remotes unix:"), "{out}");
    assert!(out.contains("port vf0 -> vm1 ("), "{out}");
    assert!(
        out.contains("port up0 -> by its own MAC, read when the port starts"),
        "{out}"
    );
    assert!(
        out.contains(
            "took: 1 switches, 1 ACLs (0 from-lport + 0 from-lport after-lb + 1 to-lport rules)"
        ),
        "{out}"
    );
    assert!(out.contains("refused: 1"), "{out}");
    assert!(out.contains("'ct.new' is not compiled here"), "{out}");
    assert!(out.contains("not allowed (fail-closed)"), "{out}");

    // The same over TLS, with the client certificate from the [ovn] table.
    let (_, pki) = nb.tls.as_ref().unwrap();
    let ssl = format!(
        "[ovn]\nremotes = [\"{}\"]\nprivate_key = \"{}\"\ncertificate = \"{}\"\nca_cert = \"{}\"\ncheck_wait_s = 10",
        nb.ssl_remote(),
        pki.client_key.display(),
        pki.client_cert.display(),
        pki.ca.display()
    );
    let (code, out, err, _) = run(&config(&ssl, "lsp_mac = \"FA:16:3E:11:11:11\""));
    assert_eq!(code, Some(0), "{out}\n{err}");
    assert!(out.contains("ovn: read ssl:127.0.0.1:"), "{out}");
    assert!(out.contains("port vf0 -> vm1 ("), "{out}");
    let no_key = ssl.replace("private_key", "# private_key");
    let (code, _, err, file) = run(&config(&no_key, ""));
    assert_eq!(code, Some(2));
    assert!(
        err.contains(&format!(
            "{}: ovn.private_key: required by the ssl: remotes",
            file.display()
        )),
        "{err}"
    );

    let (code, _, err, file) = run(&config(&format!("{ovn}\nremote = 1"), ""));
    assert_eq!(code, Some(2));
    assert!(
        err.contains(&format!("{}: ovn.remote: unknown field", file.display())),
        "{err}"
    );
    let (code, _, err, file) = run(&config("", "lsp = \"vm1\""));
    assert_eq!(code, Some(2));
    assert!(
        err.contains(&format!(
            "{}: ports.vf0.lsp: needs an [ovn] table",
            file.display()
        )),
        "{err}"
    );
    let (code, _, err, _) = run(&config(&format!("{ovn}\nacl_node = \"acl\""), ""));
    assert_eq!(code, Some(2));
    assert!(
        err.contains("ovn.acl_node: no [[pipeline.nodes]] named \"acl\""),
        "{err}"
    );
    let gone = format!(
        "[ovn]\nremotes = \"unix:{}\"\ncheck_wait_s = 1",
        nb.dir.join("none.sock").display()
    );
    let (code, _, err, _) = run(&config(&gone, ""));
    assert_eq!(code, Some(1));
    assert!(err.contains("no NB read within 1.0 s"), "{err}");
}

/// Membership batches by node.
type Batches = std::sync::Arc<std::sync::Mutex<Vec<(String, Vec<pipeline::acl::MemberChange>)>>>;

/// A sink that records what it is given: whole publications (node, rules or backends) and
/// membership batches.
#[derive(Clone, Default)]
struct Recorder(
    std::sync::Arc<std::sync::Mutex<Vec<(String, usize)>>>,
    Batches,
);

impl dataplane::ovn::follow::PolicySink for Recorder {
    fn publish_acl(
        &mut self,
        node: &str,
        cfg: &pipeline::acl::AclConfig,
    ) -> Result<String, String> {
        self.0
            .lock()
            .unwrap()
            .push((node.to_string(), cfg.rules.len()));
        Ok(format!("{node}: {} rules", cfg.rules.len()))
    }
    fn publish_services(
        &mut self,
        node: &str,
        services: &[pipeline::lb::service::ServiceConfig],
    ) -> Result<String, String> {
        let backends = services.iter().map(|s| s.backends.len()).sum();
        self.0.lock().unwrap().push((node.to_string(), backends));
        Ok(format!("{node}: {backends} backends"))
    }
    fn update_members(
        &mut self,
        node: &str,
        changes: &[pipeline::acl::MemberChange],
    ) -> Result<String, String> {
        self.1
            .lock()
            .unwrap()
            .push((node.to_string(), changes.to_vec()));
        Ok(format!("{node}: {} member changes", changes.len()))
    }
}

/// The follower thread: publishes each stage once at start, again only when its policy
/// changes; a change elsewhere, an NB restart (full resync of the same rows) and the NB being
/// away publish nothing (the last policy stays); a change made while it was away is caught up.
/// Members joining and leaving sets the ACLs name (an NB address set, a derived `$pg_ip4`)
/// become membership batches for the stage naming the set, without a translation, and the
/// translation run once the NB is quiet finds nothing more to publish; a backend added to a
/// taken load balancer republishes the services without a translation.
#[test]
fn follower_publishes_only_changes() {
    use dataplane::ovn::follow::Follower;
    let mut nb = NbServer::start("follow");
    seed_vm1_in_pg_sg(&nb);
    nb.nbctl(&["ls-add", "elsewhere"]);
    nb.nbctl(&[
        "--type=port-group",
        "acl-add",
        "pg_sg",
        "to-lport",
        "1002",
        "outport == @pg_sg && ip4 && tcp.dst == 22",
        "allow-related",
    ]);
    nb.nbctl(&[
        "--type=port-group",
        "acl-add",
        "pg_sg",
        "from-lport",
        "1002",
        "inport == @pg_sg && ip4",
        "allow-related",
    ]);
    nb.nbctl(&["lb-add", "lb0", "10.0.0.100:80", "10.0.0.11:8080", "tcp"]);
    nb.nbctl(&["ls-lb-add", "ls0", "lb0"]);
    let rec = Recorder::default();
    let cfg = follower_config(&nb, Some("lb"), Duration::from_millis(50), 0.0);
    let f = Follower::start(cfg, Box::new(rec.clone())).unwrap();
    let st = std::sync::Arc::clone(f.status());
    let wait_until = |what: &str, pred: &dyn Fn() -> bool| wait_for_follower(&st, WAIT, what, pred);
    let published = || rec.0.lock().unwrap().clone();
    let translations = || st.translations.load(Ordering::Relaxed);
    assert_first_publication(&st, &rec, &[("acl_in", 1), ("acl_out", 1), ("lb", 1)]);

    // Elsewhere: translated, nothing published.
    let n = translations();
    nb.nbctl(&["lsp-add", "elsewhere", "other"]);
    wait_until("a translation", &|| translations() > n);
    assert_eq!(published().len(), 3);
    assert!(st.unchanged.load(Ordering::Relaxed) >= 1);

    // A backend added: only the lb stage is published.
    nb.nbctl(&["lb-del", "lb0"]);
    nb.nbctl(&[
        "lb-add",
        "lb0",
        "10.0.0.100:80",
        "10.0.0.11:8080,10.0.0.12:8080",
        "tcp",
    ]);
    nb.nbctl(&["ls-lb-add", "ls0", "lb0"]);
    wait_until("the lb publication", &|| {
        published().last() == Some(&("lb".to_string(), 2))
    });
    assert!(
        published()[3..].iter().all(|(n, _)| n == "lb"),
        "{:?}",
        published()
    );

    // The NB killed: nothing published, state says so; restarted with the same rows: a full
    // resync that changes nothing publishes nothing.
    let before = published().len();
    nb.kill();
    wait_until("the disconnection", &|| {
        !st.last.lock().unwrap().client.connected
    });
    assert!(st.render().contains("disconnected (last policy kept)"));
    let n = st.updates.load(Ordering::Relaxed);
    nb.restart();
    wait_until("the resync", &|| st.updates.load(Ordering::Relaxed) > n);
    assert_eq!(published().len(), before, "{:?}", published());
    // Away again; another client adds an ACL meanwhile; back: caught up, to-lport only.
    nb.restart_hidden();
    wait_until("the disconnection", &|| {
        !st.last.lock().unwrap().client.connected
    });
    nb.nbctl(&[
        "--type=port-group",
        "acl-add",
        "pg_sg",
        "to-lport",
        "1002",
        "outport == @pg_sg && ip4 && tcp.dst == 443",
        "allow-related",
    ]);
    assert_eq!(published().len(), before);
    nb.expose();
    wait_until("the to-lport publication", &|| {
        published().last() == Some(&("acl_out".to_string(), 2))
    });
    assert_eq!(published().len(), before + 1, "{:?}", published());
    assert!(st.render().contains("port vf0 -> vm1"));

    // Sets named by ACLs: an NB address set (to-lport) and the derived $pg_sg_ip4 (from-lport,
    // vm2 elsewhere is a member too). Adding them is translated whole.
    nb.nbctl(&["lsp-add", "elsewhere", "vm2"]);
    nb.nbctl(&["pg-set-ports", "pg_sg", "vm1", "vm2"]);
    nb.nbctl(&[
        "create",
        "Address_Set",
        "name=as_block",
        "addresses=\"10.9.0.1\"",
    ]);
    nb.nbctl(&[
        "--type=port-group",
        "acl-add",
        "pg_sg",
        "to-lport",
        "1003",
        "outport == @pg_sg && ip4.src == $as_block",
        "drop",
    ]);
    nb.nbctl(&[
        "--type=port-group",
        "acl-add",
        "pg_sg",
        "from-lport",
        "1003",
        "inport == @pg_sg && ip4.dst == $pg_sg_ip4",
        "allow-related",
    ]);
    wait_until("both stages with the set rules", &|| {
        let p = published();
        p.contains(&("acl_out".to_string(), 3)) && p.contains(&("acl_in".to_string(), 2))
    });
    let (whole, translated) = (published().len(), translations());
    let batches = || rec.1.lock().unwrap().clone();
    let quiet = |n: u64| {
        wait_until("the confirming translation", &|| {
            st.confirmations.load(Ordering::Relaxed) >= n
        })
    };
    use pipeline::acl::MemberChange::{SetAdd, SetDel};
    let net = |v: &str| v.parse::<pipeline::acl::IpNet>().unwrap();
    // A member joins the NB set: one batch to acl_out, no translation, nothing whole.
    nb.nbctl(&["add", "Address_Set", "as_block", "addresses", "10.9.0.2"]);
    wait_until("the membership batch", &|| batches().len() == 1);
    assert_eq!(
        batches()[0],
        (
            "acl_out".to_string(),
            vec![SetAdd {
                set: "as_block".into(),
                net: net("10.9.0.2")
            }]
        )
    );
    assert_eq!(translations(), translated);
    // The NB goes quiet: one whole translation confirms it, publishing nothing.
    quiet(1);
    assert_eq!(published().len(), whole, "{:?}", published());
    assert_eq!(st.confirm_mismatches.load(Ordering::Relaxed), 0);
    // vm2 gets an address: $pg_sg_ip4 changes, a batch to acl_in; then it moves.
    nb.nbctl(&["lsp-set-addresses", "vm2", "fa:16:3e:22:22:22 10.0.0.22"]);
    wait_until("the second batch", &|| batches().len() == 2);
    assert_eq!(
        batches()[1],
        (
            "acl_in".to_string(),
            vec![SetAdd {
                set: "pg_sg_ip4".into(),
                net: net("10.0.0.22")
            }]
        )
    );
    nb.nbctl(&["lsp-set-addresses", "vm2", "fa:16:3e:22:22:22 10.0.0.23"]);
    wait_until("the third batch", &|| batches().len() == 3);
    assert_eq!(
        batches()[2].1,
        vec![
            SetDel {
                set: "pg_sg_ip4".into(),
                net: net("10.0.0.22")
            },
            SetAdd {
                set: "pg_sg_ip4".into(),
                net: net("10.0.0.23")
            }
        ]
    );
    quiet(2);
    assert_eq!(published().len(), whole, "{:?}", published());
    assert_eq!(st.confirm_mismatches.load(Ordering::Relaxed), 0);
    assert!(st.member_handlings.load(Ordering::Relaxed) >= 3);
    assert!(st.render().contains("mismatches 0"), "{}", st.render());
    // A backend added to the taken LB's VIP: the services alone, published to the lb node.
    let translated = translations();
    nb.nbctl(&[
        "set",
        "Load_Balancer",
        "lb0",
        "vips:\"10.0.0.100:80\"=\"10.0.0.11:8080,10.0.0.12:8080,10.0.0.13:8080\"",
    ]);
    wait_until("the services", &|| {
        published().last() == Some(&("lb".to_string(), 3))
    });
    assert_eq!(translations(), translated);
    assert_eq!(published().len(), whole + 1, "{:?}", published());
    quiet(3);
    assert_eq!(published().len(), whole + 1, "{:?}", published());
    assert_eq!(st.confirm_mismatches.load(Ordering::Relaxed), 0);
    drop(f);
}

/// The stage after the load balancer followed live: the follower publishes the
/// apply-after-lb ACLs to their own acl node, an ACL added there publishes that node only,
/// and a member of a set only its rules name goes to it as one membership batch.
#[test]
fn follower_publishes_the_after_lb_stage() {
    use dataplane::ovn::follow::Follower;
    let nb = NbServer::start("follow-after-lb");
    seed_vm1_in_pg_sg(&nb);
    nb.nbctl(&[
        "create",
        "Address_Set",
        "name=as_pods",
        "addresses=\"10.0.0.50\"",
    ]);
    nb.nbctl(&[
        "--type=port-group",
        "acl-add",
        "pg_sg",
        "from-lport",
        "1001",
        "inport == @pg_sg && ip4",
        "allow-related",
    ]);
    nb.nbctl(&[
        "--type=port-group",
        "--apply-after-lb",
        "acl-add",
        "pg_sg",
        "from-lport",
        "1001",
        "inport == @pg_sg && ip4.dst == $as_pods",
        "allow-related",
    ]);
    let rec = Recorder::default();
    let mut cfg = follower_config(&nb, None, Duration::from_millis(50), 0.0);
    cfg.targets.after_lb = Some("acl_after".into());
    cfg.options.after_lb_stage = true;
    let f = Follower::start(cfg, Box::new(rec.clone())).unwrap();
    let st = std::sync::Arc::clone(f.status());
    let wait_until = |what: &str, pred: &dyn Fn() -> bool| wait_for_follower(&st, WAIT, what, pred);
    let published = || rec.0.lock().unwrap().clone();
    assert_first_publication(
        &st,
        &rec,
        &[("acl_after", 1), ("acl_in", 1), ("acl_out", 0)],
    );
    let text = st.render();
    assert!(text.contains("last publish: acl_after: 1 rules"), "{text}");
    // An egress default-deny after the LB: that stage alone.
    nb.nbctl(&[
        "--type=port-group",
        "--apply-after-lb",
        "acl-add",
        "pg_sg",
        "from-lport",
        "1000",
        "inport == @pg_sg",
        "drop",
    ]);
    wait_until("the after-lb publication", &|| published().len() == 4);
    assert_eq!(published()[3], ("acl_after".to_string(), 2));
    // A pod joins the set only the after-lb stage names: one batch, to that node.
    nb.nbctl(&["add", "Address_Set", "as_pods", "addresses", "10.0.0.51"]);
    wait_until("the membership batch", &|| rec.1.lock().unwrap().len() == 1);
    let batch = rec.1.lock().unwrap()[0].clone();
    assert_eq!(batch.0, "acl_after");
    assert_eq!(
        batch.1,
        vec![pipeline::acl::MemberChange::SetAdd {
            set: "as_pods".into(),
            net: "10.0.0.51".parse().unwrap()
        }]
    );
    assert_eq!(published().len(), 4, "nothing whole: {:?}", published());
    drop(f);
}

/// A [`Recorder`] whose ACL publications take `build` each, as the classifier builds do.
#[derive(Clone, Default)]
struct SlowRecorder(Recorder, Duration);

impl dataplane::ovn::follow::PolicySink for SlowRecorder {
    fn publish_acl(
        &mut self,
        node: &str,
        cfg: &pipeline::acl::AclConfig,
    ) -> Result<String, String> {
        std::thread::sleep(self.1);
        self.0.publish_acl(node, cfg)
    }
    fn publish_services(
        &mut self,
        node: &str,
        services: &[pipeline::lb::service::ServiceConfig],
    ) -> Result<String, String> {
        self.0.publish_services(node, services)
    }
    fn update_members(
        &mut self,
        node: &str,
        changes: &[pipeline::acl::MemberChange],
    ) -> Result<String, String> {
        self.0.update_members(node, changes)
    }
}

/// An NB with switch `ls0`, its port `vm1` (10.0.0.11) and port group `pg_sg` holding it:
/// what the follower tests start from.
fn seed_vm1_in_pg_sg(nb: &NbServer) {
    nb.nbctl(&["ls-add", "ls0"]);
    add_lsp(nb, "ls0", "vm1", "fa:16:3e:11:11:11 10.0.0.11");
    nb.nbctl(&["pg-add", "pg_sg", "vm1"]);
}

/// The follower tests' configuration: port `vf0` bound to `vm1`, stages `acl_in` /
/// `acl_out` (and `lb`), the given coalescing and pacing.
fn follower_config(
    nb: &NbServer,
    lb: Option<&str>,
    coalesce: Duration,
    pacing: f64,
) -> dataplane::ovn::follow::FollowerConfig {
    let mut client = OvnConfig::new(Remote::parse_list(&nb.remote()).unwrap());
    client.backoff_max = Duration::from_millis(500);
    dataplane::ovn::follow::FollowerConfig {
        client,
        ports: vec![by_name("vf0", "vm1")],
        options: TranslateOptions::default(),
        targets: dataplane::ovn::settings::OvnTargets {
            from_lport: Some("acl_in".into()),
            to_lport: Some("acl_out".into()),
            both: None,
            lb: lb.map(str::to_string),
            after_lb: None,
        },
        coalesce,
        pacing,
    }
}

/// Waits for the follower's first publication to every target, then checks it: each node
/// published once, with these rule (or backend) counts, in name order.
fn assert_first_publication(
    st: &dataplane::ovn::follow::FollowerStatus,
    rec: &Recorder,
    expected: &[(&str, usize)],
) {
    let published = || rec.0.lock().unwrap().clone();
    wait_for_follower(st, WAIT, "the first publication", &|| {
        published().len() == expected.len()
    });
    let mut first = published();
    first.sort();
    let expected: Vec<(String, usize)> =
        expected.iter().map(|(n, c)| (n.to_string(), *c)).collect();
    assert_eq!(first, expected);
}

/// Waits up to `limit` for `pred`, failing with `what` and the follower's `show ovn`.
fn wait_for_follower(
    st: &dataplane::ovn::follow::FollowerStatus,
    limit: Duration,
    what: &str,
    pred: &dyn Fn() -> bool,
) {
    let deadline = Instant::now() + limit;
    while !pred() {
        assert!(
            Instant::now() < deadline,
            "waited for {what}: {}",
            st.render()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Whole translations paced under sustained churn (`translation_pacing`): ACLs added one
/// after another while the pacing holds become one paced translation that publishes them
/// all (the last state, nothing lost), counted as paced; a membership change with no whole
/// translation waiting is still handled at once, without a translation.
#[test]
fn follower_paces_whole_translations() {
    use dataplane::ovn::follow::Follower;
    let nb = NbServer::start("pace");
    seed_vm1_in_pg_sg(&nb);
    nb.nbctl(&[
        "create",
        "Address_Set",
        "name=as_block",
        "addresses=\"10.9.0.1\"",
    ]);
    nb.nbctl(&[
        "--type=port-group",
        "acl-add",
        "pg_sg",
        "to-lport",
        "1001",
        "outport == @pg_sg && ip4.src == $as_block",
        "drop",
    ]);
    let rec = Recorder::default();
    // The first whole translation publishes two acl stages at >= 100 ms each, so the next
    // waits >= 30 x 0.2 s = 6 s: far longer than the nbctl commands below take.
    let cfg = follower_config(&nb, None, Duration::from_millis(10), 30.0);
    let f = Follower::start(
        cfg,
        Box::new(SlowRecorder(rec.clone(), Duration::from_millis(100))),
    )
    .unwrap();
    let st = std::sync::Arc::clone(f.status());
    let wait_until = |what: &str, pred: &dyn Fn() -> bool| {
        wait_for_follower(&st, Duration::from_secs(60), what, pred)
    };
    let published = || rec.0.lock().unwrap().clone();
    let translations = || st.translations.load(Ordering::Relaxed);
    wait_until("the first publication", &|| published().len() == 2);
    assert_eq!(translations(), 1);

    // Five ACLs added one by one: held by the pacing, then one translation publishes all.
    for port in 0..5 {
        nb.nbctl(&[
            "--type=port-group",
            "acl-add",
            "pg_sg",
            "to-lport",
            "1002",
            &format!("outport == @pg_sg && ip4 && tcp.dst == {}", 100 + port),
            // Not allow-related: the switch stays stateless, so the from-lport stage's
            // default (which commits on a stateful switch) does not change.
            "allow",
        ]);
    }
    wait_until("the paced publication", &|| published().len() == 3);
    assert_eq!(translations(), 2, "{}", st.render());
    assert_eq!(st.paced.load(Ordering::Relaxed), 1);
    assert!(st.paced_wait_max_ms.load(Ordering::Relaxed) > 0);
    // Only acl_out changed, published once with all six rules.
    assert_eq!(
        published(),
        vec![
            ("acl_in".to_string(), 0),
            ("acl_out".to_string(), 1),
            ("acl_out".to_string(), 6)
        ]
    );
    assert!(st.render().contains("paced 1"), "{}", st.render());

    // Within the new pacing: a member joins the set, handled alone at once (no whole
    // translation waits for it).
    nb.nbctl(&["add", "Address_Set", "as_block", "addresses", "10.9.0.2"]);
    wait_until("the membership batch", &|| rec.1.lock().unwrap().len() == 1);
    assert_eq!(translations(), 2);
    assert_eq!(st.member_handlings.load(Ordering::Relaxed), 1);
    assert_eq!(st.paced.load(Ordering::Relaxed), 1);
    drop(f);
}
