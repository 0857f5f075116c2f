//! Bad configuration is refused with the file, the key and the reason; `dataplane check`
//! exits with code 2 and never panics. Good example configs pass.

use std::path::Path;
use std::process::Command;

use dataplane::config::ConfigFile;
use dataplane::plan;

const GOOD: &str = r#"
[eal]
lcores = [0, 1]
[ports.fh0]
role = "fronthaul"
kind = "vhost-user"
path = "/tmp/x/fh0.sock"
[ports.mh0]
role = "midhaul"
kind = "vhost-user"
path = "/tmp/x/mh0.sock"
[forwarding]
cross_connect = [["fh0", "mh0"]]
"#;

/// Applies a textual edit to the good config and returns (key, reason) of the refusal.
fn refusal(edit: impl Fn(&str) -> String) -> (String, String) {
    let text = edit(GOOD);
    let file = Path::new("bad.toml");
    let err = ConfigFile::parse(&text, file)
        .and_then(|c| plan::build(&c, file, &plan::Host::with_cpus(&[0, 1])))
        .expect_err("must be refused");
    assert_eq!(err.file, file);
    (err.key, err.reason)
}

fn assert_refused(edit: impl Fn(&str) -> String, key: &str, reason_part: &str) {
    let (k, r) = refusal(edit);
    assert_eq!(k, key, "key (reason was: {r})");
    assert!(
        r.contains(reason_part),
        "reason {r:?} should mention {reason_part:?}"
    );
}

#[test]
fn the_good_config_is_accepted() {
    let cfg = ConfigFile::parse(GOOD, Path::new("good.toml")).unwrap();
    let p = plan::build(
        &cfg,
        Path::new("good.toml"),
        &plan::Host::with_cpus(&[0, 1]),
    )
    .unwrap();
    assert_eq!(p.ports.len(), 2);
    assert_eq!(p.workers.len(), 1);
    assert_eq!(p.workers[0].lcore, 1);
    assert_eq!(p.workers[0].rx, vec![(0, 0), (1, 0)]);
    assert_eq!(p.peer, vec![Some(1), Some(0)]);
    let args = p.eal_args.join(" ");
    assert!(args.contains("-l 0,1 --main-lcore 0"), "{args}");
    assert!(
        args.contains("--vdev net_vhost0,iface=/tmp/x/fh0.sock,queues=1"),
        "{args}"
    );
    assert!(args.contains("--no-pci"), "{args}");
}

/// The EAL arguments planned for a config that must be accepted.
fn eal_args(text: &str) -> Vec<String> {
    let file = Path::new("good.toml");
    let cfg = ConfigFile::parse(text, file).unwrap();
    plan::build(&cfg, file, &plan::Host::with_cpus(&[0, 1]))
        .unwrap()
        .eal_args
}

#[test]
fn max_simd_bitwidth_becomes_the_eal_flag() {
    let args = eal_args(&GOOD.replace(
        "lcores = [0, 1]",
        "lcores = [0, 1]\nmax_simd_bitwidth = 512",
    ));
    assert!(
        args.iter().any(|a| a == "--force-max-simd-bitwidth=512"),
        "{args:?}"
    );
    // Absent: DPDK's own default, no flag.
    let args = eal_args(GOOD);
    assert!(
        !args.iter().any(|a| a.starts_with("--force-max-simd")),
        "{args:?}"
    );
}

#[test]
fn refusals_name_the_key_and_the_reason() {
    assert_refused(
        |g| {
            g.replace(
                "lcores = [0, 1]",
                "lcores = [0, 1]\nmax_simd_bitwidth = 300",
            )
        },
        "eal.max_simd_bitwidth",
        "must be 64, 128, 256 or 512",
    );
    assert_refused(
        |g| {
            g.replace(
                "kind = \"vhost-user\"\npath = \"/tmp/x/fh0.sock\"",
                "kind = \"vhost\"",
            )
        },
        "ports.fh0.kind",
        "unknown port kind",
    );
    assert_refused(
        |g| g.replace("path = \"/tmp/x/fh0.sock\"", ""),
        "ports.fh0.path",
        "required for kind vhost-user",
    );
    assert_refused(
        |g| g.replace("role = \"fronthaul\"", "role = \"fronthaul\"\nqueues = 0"),
        "ports.fh0.queues",
        "must be 1 to 16",
    );
    assert_refused(
        |g| g.replace("role = \"fronthaul\"", "role = \"fronthaul\"\nrxd = 10"),
        "ports.fh0.rxd",
        "64 to 16384",
    );
    assert_refused(
        |g| g.replace("role = \"fronthaul\"", "role = \"fronthaul\"\nspeed = 10"),
        "ports.fh0.speed",
        "unknown field `speed`",
    );
    assert_refused(
        |g| g.replace("role = \"fronthaul\"", "role = \"front haul\""),
        "ports.fh0.role",
        "letters, digits",
    );
    assert_refused(
        |g| g.replace("role = \"fronthaul\"", "role = 7"),
        "ports.fh0.role",
        "invalid type",
    );
    assert_refused(
        |g| g.replace("[\"fh0\", \"mh0\"]", "[\"fh0\", \"xx0\"]"),
        "forwarding.cross_connect[0]",
        "no port named \"xx0\"",
    );
    assert_refused(
        |g| g.replace("[\"fh0\", \"mh0\"]", "[\"fh0\", \"fh0\"]"),
        "forwarding.cross_connect[0]",
        "itself",
    );
    assert_refused(
        |g| g.replace("cross_connect = [[\"fh0\", \"mh0\"]]", ""),
        "forwarding.cross_connect",
        "no port pair",
    );
    assert_refused(
        |g| g.replace("lcores = [0, 1]", "lcores = [0, 5]"),
        "eal.lcores",
        "not in this process's allowed CPUs",
    );
    assert_refused(
        |g| g.replace("lcores = [0, 1]", "lcores = [0]"),
        "eal.lcores",
        "no lcore left for a worker",
    );
    assert_refused(
        |g| g.replace("lcores = [0, 1]", "lcores = [0, 1]\nmain_lcore = 3"),
        "eal.main_lcore",
        "not among the lcores",
    );
    assert_refused(
        |g| g.replace("/tmp/x/mh0.sock", "/tmp/x/fh0.sock"),
        "ports.mh0",
        "used by another port",
    );
    assert_refused(
        |g| format!("{g}\n[mempool]\nmbufs = 100\n"),
        "mempool.mbufs",
        "need at least",
    );
    assert_refused(
        |g| format!("{g}\n[[workers]]\nlcore = 1\nrx = [\"fh0:3\"]\n"),
        "workers[0].rx",
        "has 1 queues",
    );
    assert_refused(
        |g| format!("{g}\n[[workers]]\nlcore = 1\nrx = [\"fh0\"]\n"),
        "workers",
        "polled by no worker",
    );
    assert_refused(
        |g| format!("{g}\n[[workers]]\nlcore = 0\nrx = [\"fh0\", \"mh0\"]\n"),
        "workers[0].lcore",
        "not a worker lcore",
    );
    assert_refused(
        |g| {
            g.replace(
                "kind = \"vhost-user\"\npath = \"/tmp/x/fh0.sock\"",
                "kind = \"pci\"\npci = \"3b:02.0\"",
            )
        },
        "ports.fh0.pci",
        "DDDD:BB:DD.F",
    );
    assert_refused(
        |g| g.replace("[forwarding]", "[forwarding]\nburst = 1000"),
        "forwarding.burst",
        "must be 1 to 256",
    );
    assert_refused(
        |g| {
            let g = g.replace("[eal]", "[eal]\nno_huge = true").replace(
                "[[\"fh0\", \"mh0\"]]",
                "[[\"fh0\", \"mh0\"], [\"v0\", \"v1\"]]",
            );
            format!("{g}\n[ports.v0]\nrole = \"x\"\nkind = \"virtio-user\"\npath = \"/tmp/v\"\n[ports.v1]\nrole = \"x\"\nkind = \"null\"\n")
        },
        "eal.no_huge",
        "virtio-user ports need huge pages",
    );
    let pipe = |kind: &str, extra: &str| {
        let kind = kind.to_string();
        let extra = extra.to_string();
        move |g: &str| {
            g.replace("cross_connect = [[\"fh0\", \"mh0\"]]", "")
                + &format!("[pipeline]\n[[pipeline.nodes]]\nname = \"a\"\nkind = \"{kind}\"\n[[pipeline.nodes]]\nname = \"f\"\nkind = \"forward\"\nparams = {{ mode = \"cross-connect\", pairs = [[\"fh0\", \"mh0\"]] }}\n[[pipeline.edges]]\nfrom = \"a\"\nto = \"f\"\n{extra}")
        }
    };
    assert_refused(
        pipe("parsec", ""),
        "pipeline.nodes.a.kind",
        "unknown node kind `parsec`",
    );
    assert_refused(
        pipe("parse", "[[pipeline.edges]]\nfrom = \"f\"\nto = \"a\"\n"),
        "pipeline.edges[1].from",
        "node `f` has no output",
    );
    assert_refused(
        pipe(
            "parse",
            "[[pipeline.edges]]\nfrom = \"a\"\nto = \"nowhere\"\n",
        ),
        "pipeline.edges[1].to",
        "missing node `nowhere`",
    );
    assert_refused(
        |g| {
            pipe("acl", "")(g).replace(
                "kind = \"acl\"\n",
                "kind = \"acl\"\nparams = { acl = { default = \"allow\" }, lb_conntrack = \"f\" }\n",
            )
        },
        "pipeline.nodes.a.params.lb_conntrack",
        "no node named `f` offers its state here (expected an `lb` node)",
    );
    // An ACL's log spec: a severity OVN does not have, a name longer than OVN's 63.
    let logged = |log: &'static str| {
        move |g: &str| {
            pipe("acl", "")(g).replace(
                "kind = \"acl\"\n",
                &format!("kind = \"acl\"\nparams = {{ acl = {{ rules = [{{ name = \"r\", direction = \"to-lport\", priority = 1, match = \"ip4\", action = \"drop\", log = {log} }}] }} }}\n"),
            )
        }
    };
    assert_refused(
        logged("{ severity = \"loud\" }"),
        "pipeline.nodes.a.params",
        "unknown variant `loud`",
    );
    assert_refused(
        logged("{ name = \"0123456789012345678901234567890123456789012345678901234567890123\" }"),
        "pipeline.nodes.a.params.acl",
        "acl 'r': log: name is 64 characters, at most 63",
    );
    assert_refused(
        |g| {
            g.replace(
                "[forwarding]",
                "[stats]\nprometheus = \"localhost\"\n[forwarding]",
            )
        },
        "stats.prometheus",
        "not an address",
    );
    assert_refused(|_| "this is = = not toml".into(), "-", "");
    assert_refused(|_| String::new(), "ports", "no ports configured");
}

#[test]
fn check_exits_2_with_file_key_and_reason() {
    let dir = std::env::temp_dir().join(format!("dp-cfg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.toml");
    std::fs::write(
        &bad,
        GOOD.replace(
            "kind = \"vhost-user\"\npath = \"/tmp/x/fh0.sock\"",
            "kind = \"vhost\"",
        ),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_dataplane"))
        .args(["check", "--config"])
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "{}: ports.fh0.kind: unknown port kind \"vhost\"",
            bad.display()
        )),
        "{err}"
    );

    let missing = dir.join("missing.toml");
    let out = Command::new(env!("CARGO_BIN_EXE_dataplane"))
        .args(["check", "--config"])
        .arg(&missing)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read"));

    let out = Command::new(env!("CARGO_BIN_EXE_dataplane"))
        .args(["run", "--config"])
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "run refuses bad config the same way, before touching DPDK"
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn every_example_config_checks() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config");
    let mut checked = 0;
    for e in std::fs::read_dir(&dir).unwrap() {
        let path = e.unwrap().path();
        if path.extension().is_some_and(|x| x == "toml")
            && std::fs::read_to_string(&path).unwrap().contains("[ports.")
        {
            let out = Command::new(env!("CARGO_BIN_EXE_dataplane"))
                .args(["check", "--config"])
                .arg(&path)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}: {}",
                path.display(),
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(String::from_utf8_lossy(&out.stdout).contains("EAL arguments:"));
            checked += 1;
        }
    }
    assert!(checked >= 1, "no example config found in {}", dir.display());
}

#[test]
fn an_absent_forwarding_table_means_the_defaults() {
    let text = GOOD.replace("[forwarding]\ncross_connect = [[\"fh0\", \"mh0\"]]\n", "")
        + "[pipeline]\n[[pipeline.nodes]]\nname = \"f\"\nkind = \"forward\"\nparams = { mode = \"cross-connect\", pairs = [[\"fh0\", \"mh0\"]] }\n";
    assert!(!text.contains("[forwarding]"));
    let cfg = ConfigFile::parse(&text, Path::new("x.toml")).unwrap();
    let p = plan::build(&cfg, Path::new("x.toml"), &plan::Host::with_cpus(&[0, 1])).unwrap();
    assert_eq!((p.burst, p.tx_retries), (256, 8), "defaults, not zeroes");
}
