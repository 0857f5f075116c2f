//! The NB scenario of the churn benchmark (`ovn-churn`): the rows one transaction seeds, the
//! rows the churn changes, and the DUT's pipeline.
//!
//! The NB holds one logical switch `ls0` with the LSPs `fh0` (the clients' port: dpgen port
//! 0, sources 10.1.0.0/18) and `mh0` (the servers' port: the backends 10.2.0.1-4), and a pod
//! `churn-pod` whose addresses churn. Security groups as Neutron writes them: `pg_drop` (both
//! ports) drops all IP at 1001 both ways, `pg_cli` / `pg_srv` allow at 1002 (`allow-related`,
//! the servers only on UDP 5001); `background` more ACLs of 1003..2999 (drops and rejects of
//! other addresses, ports and address sets, half from-lport on `pg_cli`, half to-lport on
//! `pg_srv`) that the benchmark traffic never matches. Churn-facing rules name the churned
//! rows: `$churn_as` (both directions) and `$pg_cli_ip4` (derived from `pg_cli`'s members,
//! `churn-pod` among them). Two load balancers on `ls0`: `bench-lb` (the benchmark's VIP
//! 192.0.2.10:5001 over the four backends, UDP) and `churn-lb` (192.0.2.20:7000, whose
//! backends churn). Everything churned lies in [`crate::nb_writer::CHURN_ADDRESS_BLOCK`], so
//! no change alters the verdict of the benchmark's traffic: any drop is a fault.

use serde_json::{json, Value};

use crate::nb_writer::{ChurnTargets, NB_DB};
use crate::topology::{BACKENDS, VIP, VIP_PORT};

/// The churned VIP (`churn-lb`).
pub const CHURN_VIP: &str = "192.0.2.20:7000";

/// What the churn changes in the seeded NB.
pub fn targets() -> ChurnTargets {
    ChurnTargets {
        address_set: "churn_as".into(),
        lsp: "churn-pod".into(),
        port_group: "pg_cli".into(),
        load_balancer: "churn-lb".into(),
        churn_vip: CHURN_VIP.into(),
    }
}

/// Address sets named by the background ACLs (`bg_set_0` .. `bg_set_9`, 20 hosts each).
const BG_SETS: u32 = 10;

fn acl(name: &str, pg: &str, dir: &str, prio: u32, m: &str, action: &str) -> (String, Value) {
    let port = if dir == "from-lport" {
        "inport"
    } else {
        "outport"
    };
    let row = json!({
        "priority": prio,
        "direction": dir,
        "match": format!("{port} == @{pg} && {m}"),
        "action": action,
        "name": name,
    });
    (pg.to_string(), row)
}

/// The benchmark's ACLs as (port group, row): the security-group rules, the churn-facing
/// rules and `background` more (the first 10 name no port group's members but the group).
pub fn acl_rows(background: usize) -> Vec<(String, Value)> {
    let mut v = vec![
        acl("drop-in", "pg_drop", "from-lport", 1001, "ip", "drop"),
        acl("drop-out", "pg_drop", "to-lport", 1001, "ip", "drop"),
        acl(
            "cli-egress",
            "pg_cli",
            "from-lport",
            1002,
            "ip4",
            "allow-related",
        ),
        acl(
            "cli-ingress",
            "pg_cli",
            "to-lport",
            1002,
            "ip4",
            "allow-related",
        ),
        acl(
            "srv-egress",
            "pg_srv",
            "from-lport",
            1002,
            "ip4",
            "allow-related",
        ),
        acl(
            "srv-ingress",
            "pg_srv",
            "to-lport",
            1002,
            &format!("ip4 && udp.dst == {VIP_PORT}"),
            "allow-related",
        ),
        acl(
            "churn-set-in",
            "pg_cli",
            "from-lport",
            1600,
            "ip4.dst == $churn_as",
            "drop",
        ),
        acl(
            "churn-set-out",
            "pg_srv",
            "to-lport",
            1601,
            "ip4.src == $churn_as",
            "drop",
        ),
        acl(
            "churn-pg-out",
            "pg_srv",
            "to-lport",
            1602,
            "ip4.src == $pg_cli_ip4 && tcp.dst == 22",
            "drop",
        ),
    ];
    for i in 0..background as u32 {
        let (pg, dir) = if i % 2 == 0 {
            ("pg_cli", "from-lport")
        } else {
            ("pg_srv", "to-lport")
        };
        let prio = 1003 + (i * 7) % 1997;
        let m = match i % 4 {
            0 => format!(
                "ip4.src == 10.{}.{}.0/24 && tcp.dst == {}",
                100 + i % 50,
                (i / 50) % 256,
                1000 + i % 4000
            ),
            1 => format!(
                "ip4.dst == $bg_set_{} && udp.dst == {}",
                i % BG_SETS,
                2000 + i % 2000
            ),
            2 => format!("ip4.src == $bg_set_{} && tcp", i % BG_SETS),
            _ => format!("ip4.src == 10.0.0.0/8 && udp.dst == {}", 6000 + i % 2000),
        };
        let action = if i % 5 == 4 { "reject" } else { "drop" };
        v.push(acl(&format!("bg-{i}"), pg, dir, prio, &m, action));
    }
    v
}

/// The `transact` params (`[db, op, ...]`) that seed an empty NB with the scenario and
/// `background` background ACLs, in one transaction.
pub fn seed_params(background: usize) -> Value {
    let mut ops = vec![json!(NB_DB)];
    let lsps = [
        ("fh0", "02:00:00:00:00:01 10.1.0.1"),
        ("mh0", "02:00:00:00:01:01 10.2.0.1"),
        ("churn-pod", "0a:58:0a:f9:ff:ff 10.249.255.255"),
    ];
    for (name, addr) in lsps {
        ops.push(json!({"op": "insert", "table": "Logical_Switch_Port",
            "uuid-name": format!("lsp_{}", name.replace('-', "_")),
            "row": {"name": name, "addresses": addr}}));
    }
    // One permanent member: a set is not empty when the classifier is first built (an empty
    // set cannot be chosen as a set class, whose members change without a rebuild).
    ops.push(json!({"op": "insert", "table": "Address_Set",
        "row": {"name": "churn_as", "addresses": "10.248.255.255"}}));
    for s in 0..BG_SETS {
        let hosts: Vec<String> = (1..=20).map(|h| format!("172.16.{s}.{h}")).collect();
        ops.push(json!({"op": "insert", "table": "Address_Set",
            "row": {"name": format!("bg_set_{s}"), "addresses": ["set", hosts]}}));
    }
    let mut by_pg: std::collections::BTreeMap<String, Vec<Value>> = Default::default();
    for (i, (pg, row)) in acl_rows(background).into_iter().enumerate() {
        let id = format!("acl{i}");
        ops.push(json!({"op": "insert", "table": "ACL", "uuid-name": id, "row": row}));
        by_pg.entry(pg).or_default().push(json!(["named-uuid", id]));
    }
    let pg_ports = [
        ("pg_drop", vec!["lsp_fh0", "lsp_mh0"]),
        ("pg_cli", vec!["lsp_fh0", "lsp_churn_pod"]),
        ("pg_srv", vec!["lsp_mh0"]),
    ];
    for (pg, ports) in pg_ports {
        let ports: Vec<Value> = ports.iter().map(|p| json!(["named-uuid", p])).collect();
        ops.push(json!({"op": "insert", "table": "Port_Group", "row": {
            "name": pg,
            "ports": ["set", ports],
            "acls": ["set", by_pg.remove(pg).unwrap_or_default()],
        }}));
    }
    let backends = BACKENDS
        .iter()
        .map(|b| format!("{b}:{VIP_PORT}"))
        .collect::<Vec<_>>()
        .join(",");
    ops.push(
        json!({"op": "insert", "table": "Load_Balancer", "uuid-name": "lb_bench",
        "row": {"name": "bench-lb", "protocol": "udp",
                "vips": ["map", [[format!("{VIP}:{VIP_PORT}"), backends]]]}}),
    );
    ops.push(
        json!({"op": "insert", "table": "Load_Balancer", "uuid-name": "lb_churn",
        "row": {"name": "churn-lb", "protocol": "udp",
                "vips": ["map", [[CHURN_VIP, "10.251.255.255:7000"]]]}}),
    );
    ops.push(json!({"op": "insert", "table": "Logical_Switch", "row": {
        "name": "ls0",
        "ports": ["set", [["named-uuid", "lsp_fh0"], ["named-uuid", "lsp_mh0"], ["named-uuid", "lsp_churn_pod"]]],
        "load_balancer": ["set", [["named-uuid", "lb_bench"], ["named-uuid", "lb_churn"]]],
    }}));
    Value::Array(ops)
}

/// The DUT's `[control]`, `[ovn]` and `[pipeline]` tables: `parse -> acl_in (from-lport)
/// -> lb -> acl_out (to-lport) -> forward` (cross-connect fh0 <-> mh0), both acl nodes
/// stateful for `ct_capacity` connections, the lb node's services from the NB. `set_class`:
/// the acl nodes' `set_class_min_entries` (address sets from that many entries are matched
/// by membership, and their changes are membership updates; `None`: the node's default).
/// `pacing`: `[ovn] translation_pacing` (`None`: the dataplane's default).
pub fn dut_tables(
    nb_remote: &str,
    control_socket: &str,
    ct_capacity: usize,
    set_class: Option<usize>,
    pacing: Option<f64>,
) -> String {
    let sc = set_class.map_or(String::new(), |n| format!(", set_class_min_entries = {n}"));
    let pipeline = crate::topology::ovn_pipeline(
        nb_remote,
        &format!("stateful = {ct_capacity}{sc}"),
        ct_capacity,
    );
    let pipeline = match pacing {
        Some(k) => pipeline.replacen(
            "[ovn]\n",
            &format!("[ovn]\ntranslation_pacing = {k:?}\n"),
            1,
        ),
        None => pipeline,
    };
    format!("\n[control]\nsocket = \"{control_socket}\"\n{pipeline}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_has_every_acl_once_in_its_port_group() {
        let p = seed_params(100);
        let ops = p.as_array().unwrap();
        assert_eq!(ops[0], "OVN_Northbound");
        let acls = ops.iter().filter(|o| o["table"] == "ACL").count();
        assert_eq!(acls, 9 + 100);
        let refs: usize = ops
            .iter()
            .filter(|o| o["table"] == "Port_Group")
            .map(|o| o["row"]["acls"][1].as_array().unwrap().len())
            .sum();
        assert_eq!(refs, acls);
        let srv = ops
            .iter()
            .find(|o| o["table"] == "Port_Group" && o["row"]["name"] == "pg_srv")
            .unwrap();
        assert_eq!(
            srv["row"]["ports"],
            json!(["set", [["named-uuid", "lsp_mh0"]]])
        );
    }

    #[test]
    fn dut_tables_set_the_pacing_in_the_ovn_table() {
        let t = dut_tables("unix:/nb", "/ctl", 1000, None, Some(0.0));
        let v: toml::Value = toml::from_str(&t).unwrap();
        assert_eq!(v["ovn"]["translation_pacing"].as_float(), Some(0.0));
        let t = dut_tables("unix:/nb", "/ctl", 1000, None, None);
        let v: toml::Value = toml::from_str(&t).unwrap();
        assert!(v["ovn"].get("translation_pacing").is_none());
    }

    #[test]
    fn no_background_acl_names_the_benchmark_traffic() {
        // Requests: UDP 10.1.0.0/18 -> VIP:5001 (from-lport), -> 10.2.0.x:5001 (to-lport).
        for (_, row) in acl_rows(1000).iter().skip(9) {
            let m = row["match"].as_str().unwrap();
            assert!(!m.contains(&format!("udp.dst == {VIP_PORT}")), "{m}");
            assert!(m.contains("tcp") || m.contains("udp.dst == "), "{m}");
        }
    }
}
