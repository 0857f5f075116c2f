//! Graph validation: each error names its key and reason; port parameters are checked at build.

use pipeline::graph::{KindInfo, Node, ParamError};
use pipeline::nodes::NodeImpl;
use pipeline::{
    Frame, Graph, GraphSpec, PortInfo, Registry, SpecError, SpecErrorReason as R, TestBuf, Verdict,
};
use serde::Deserialize;

fn reg() -> Registry<TestBuf> {
    Registry::with_builtins()
}

fn ports() -> Vec<PortInfo> {
    vec![
        PortInfo::new(0, "fh0", "fronthaul"),
        PortInfo::new(1, "mh0", "midhaul"),
    ]
}

fn spec(toml: &str) -> GraphSpec {
    GraphSpec::from_toml(toml).expect("spec parses")
}

fn err(toml: &str) -> SpecError {
    spec(toml)
        .validate(&reg())
        .expect_err("spec must be invalid")
}

fn build_err(toml: &str) -> SpecError {
    let s = spec(toml);
    s.validate(&reg()).expect("structurally valid");
    match Graph::build(&s, &reg(), &ports()) {
        Ok(_) => panic!("build must fail"),
        Err(e) => e,
    }
}

const XC: &str = r#"
[[nodes]]
name = "parse"
kind = "parse"
params = { fragments = "drop" }
[[nodes]]
name = "xc"
kind = "forward"
params = { mode = "cross-connect", pairs = [["fh0", "mh0"]] }
[[edges]]
from = "parse"
to = "xc"
"#;

#[test]
fn valid_spec_validates_and_builds() {
    let s = spec(XC);
    s.validate(&reg()).unwrap();
    let g = Graph::build(&s, &reg(), &ports()).unwrap();
    assert_eq!(g.node_names().collect::<Vec<_>>(), ["parse", "xc"]);
    // Round trip through TOML.
    let text = toml::to_string(&s).unwrap();
    assert_eq!(GraphSpec::from_toml(&text).unwrap(), s);
}

#[test]
fn no_nodes() {
    let e = GraphSpec::new().validate(&reg()).unwrap_err();
    assert_eq!((e.key.as_str(), e.reason), ("nodes", R::NoNodes));
}

#[test]
fn unknown_kind() {
    let e = err(&XC.replace("kind = \"forward\"", "kind = \"frobnicate\""));
    assert_eq!(e.key, "nodes.xc.kind");
    assert!(
        matches!(&e.reason, R::UnknownKind { kind, known } if kind == "frobnicate" && known.contains("parse")),
        "{e}"
    );
    assert!(
        e.to_string()
            .starts_with("nodes.xc.kind: unknown node kind `frobnicate`"),
        "{e}"
    );
}

#[test]
fn unknown_param() {
    let e = err(&XC.replace("fragments = \"drop\"", "fragments = \"drop\", colour = 3"));
    assert_eq!(e.key, "nodes.parse.params.colour");
    assert!(
        matches!(&e.reason, R::UnknownParam { param, kind, accepted } if param == "colour" && kind == "parse" && accepted.contains("fragments")),
        "{e}"
    );
}

#[test]
fn bad_param_value() {
    let e = err(&XC.replace("fragments = \"drop\"", "fragments = \"maybe\""));
    assert_eq!(e.key, "nodes.parse.params");
    assert!(
        matches!(&e.reason, R::BadParam(m) if m.contains("maybe")),
        "{e}"
    );
    let e = err(&XC.replace("mode = \"cross-connect\", ", ""));
    assert_eq!(e.key, "nodes.xc.params");
    assert!(
        matches!(&e.reason, R::BadParam(m) if m.contains("mode")),
        "{e}"
    );
}

#[test]
fn dangling_edges() {
    let e = err(&XC.replace("to = \"xc\"", "to = \"nowhere\""));
    assert_eq!(
        (e.key.as_str(), e.reason),
        ("edges[0].to", R::DanglingEdge("nowhere".into()))
    );
    let e = err(&XC.replace("from = \"parse\"", "from = \"ghost\""));
    assert_eq!(
        (e.key.as_str(), e.reason),
        ("edges[0].from", R::DanglingEdge("ghost".into()))
    );
}

#[test]
fn unknown_output_and_edges_from_terminals() {
    let e = err(&XC.replace(
        "from = \"parse\"",
        "from = \"parse\"\noutput = \"sideways\"",
    ));
    assert_eq!(e.key, "edges[0].output");
    assert!(
        matches!(&e.reason, R::UnknownOutput { node, output, .. } if node == "parse" && output == "sideways")
    );
    let e = err(&format!("{XC}\n[[edges]]\nfrom = \"xc\"\nto = \"parse\"\n"));
    assert_eq!(e.key, "edges[1].from");
    assert!(
        matches!(&e.reason, R::UnknownOutput { node, outputs, .. } if node == "xc" && outputs == "none")
    );
}

#[test]
fn duplicate_edge_and_node() {
    let e = err(&format!("{XC}\n[[edges]]\nfrom = \"parse\"\nto = \"xc\"\n"));
    assert_eq!(
        (e.key.as_str(), e.reason),
        ("edges[1]", R::DuplicateEdge("parse.next".into()))
    );
    let e = err(&format!(
        "{XC}\n[[nodes]]\nname = \"xc\"\nkind = \"drop\"\n"
    ));
    assert_eq!(
        (e.key.as_str(), e.reason),
        ("nodes.xc", R::DuplicateNode("xc".into()))
    );
}

#[test]
fn unused_output() {
    let e = err(&format!("{XC}\n[[nodes]]\nname = \"t\"\nkind = \"tap\"\n"));
    assert_eq!(
        (e.key.as_str(), e.reason),
        ("nodes.t.outputs.next", R::UnusedOutput("next".into()))
    );
}

#[test]
fn cycle() {
    let e = err(r#"
        [[nodes]]
        name = "in"
        kind = "null"
        [[nodes]]
        name = "a"
        kind = "tap"
        [[nodes]]
        name = "b"
        kind = "macswap"
        [[edges]]
        from = "in"
        to = "a"
        [[edges]]
        from = "a"
        to = "b"
        [[edges]]
        from = "b"
        to = "a"
    "#);
    assert_eq!(
        (e.key.as_str(), e.reason),
        ("nodes.a", R::Cycle("a -> b -> a".into()))
    );
}

#[test]
fn unreachable_node() {
    let e = err(&format!(
        "{XC}\n[[nodes]]\nname = \"orphan\"\nkind = \"drop\"\n"
    ));
    assert_eq!(
        (e.key.as_str(), e.reason),
        ("nodes.orphan", R::Unreachable("parse".into()))
    );
}

#[test]
fn no_path_to_an_output() {
    let e = err(r#"
        [[nodes]]
        name = "parse"
        kind = "parse"
        [[nodes]]
        name = "sink"
        kind = "drop"
        [[edges]]
        from = "parse"
        to = "sink"
    "#);
    assert_eq!(
        (e.key.as_str(), e.reason),
        ("nodes", R::NoOutputPath("parse".into()))
    );
}

#[test]
fn unknown_input() {
    let e = err(&format!("input = \"nope\"\n{XC}"));
    assert_eq!(
        (e.key.as_str(), e.reason),
        ("input", R::UnknownInput("nope".into()))
    );
    // An explicit input other than the first node works.
    let s = spec(&format!("input = \"parse\"\n{}", XC));
    s.validate(&reg()).unwrap();
}

#[test]
fn port_parameters_are_checked_at_build() {
    let e = build_err(&XC.replace("\"mh0\"]", "\"bh9\"]"));
    assert_eq!(e.key, "nodes.xc.params.pairs");
    assert!(
        matches!(&e.reason, R::BadParam(m) if m.contains("bh9")),
        "{e}"
    );
    let e = build_err(&XC.replace(
        "pairs = [[\"fh0\", \"mh0\"]]",
        "pairs = [[\"fh0\", \"mh0\"], [\"mh0\", \"fh0\"]]",
    ));
    assert_eq!(e.key, "nodes.xc.params.pairs");
    let e = build_err(&XC.replace(", pairs = [[\"fh0\", \"mh0\"]]", ""));
    assert_eq!(e.key, "nodes.xc.params.pairs");
    let e = build_err(&XC.replace("cross-connect", "by-metadata"));
    assert_eq!(e.key, "nodes.xc.params.pairs");
    // Ports may be named by a role only one port has.
    let s = spec(&XC.replace("[\"fh0\", \"mh0\"]", "[\"fronthaul\", \"midhaul\"]"));
    Graph::build(&s, &reg(), &ports()).unwrap();
    // Duplicate ports.
    let dup = vec![PortInfo::new(0, "a", ""), PortInfo::new(0, "b", "")];
    assert_eq!(
        Graph::build(&spec(XC), &reg(), &dup).err().unwrap().key,
        "ports[1]"
    );
}

/// A custom kind registered by name, with its own parameters.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MarkParams {
    value: u16,
}

struct Mark(u16);

impl Node<TestBuf> for Mark {
    fn process(&mut self, f: Frame<'_, TestBuf>) -> Verdict {
        for m in f.meta.iter_mut() {
            m.next = self.0;
        }
        Verdict::All(pipeline::Decision::Next(0))
    }
}

#[test]
fn custom_kinds_plug_in_by_name() {
    let mut r = reg();
    let info = KindInfo {
        outputs: &["next"],
        drop_reasons: &[],
        counters: &[],
        transmits: false,
        fills_meta: false,
        description: "marks packets",
    };
    r.register::<MarkParams, _>("mark", info, |p, _| {
        if p.value == 0 {
            return Err(ParamError::new("value", "must not be 0"));
        }
        Ok(NodeImpl::Custom(Box::new(Mark(p.value))))
    })
    .unwrap();
    assert!(r
        .register::<MarkParams, _>("mark", info, |p, _| Ok(NodeImpl::Custom(Box::new(Mark(
            p.value
        )))))
        .is_err());
    let text = r#"
        [[nodes]]
        name = "m"
        kind = "mark"
        params = { value = 7 }
        [[nodes]]
        name = "xc"
        kind = "forward"
        params = { mode = "cross-connect", pairs = [["fh0", "mh0"]] }
        [[edges]]
        from = "m"
        to = "xc"
    "#;
    spec(text).validate(&r).unwrap();
    Graph::build(&spec(text), &r, &ports()).unwrap();
    let e = spec(&text.replace("value = 7", "value = 7, extra = 1"))
        .validate(&r)
        .unwrap_err();
    assert_eq!(e.key, "nodes.m.params.extra");
    let e = Graph::build(&spec(&text.replace("value = 7", "value = 0")), &r, &ports())
        .err()
        .unwrap();
    assert_eq!(
        (e.key.as_str(), e.reason),
        ("nodes.m.params.value", R::BadParam("must not be 0".into()))
    );
    let e = spec(&text.replace("value = 7", ""))
        .validate(&r)
        .unwrap_err();
    assert_eq!(e.key, "nodes.m.params");
}
