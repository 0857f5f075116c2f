//! Reading the dataplane's stats JSON (`dataplane run --stats-json`) in tests and tools.

use serde_json::Value;

/// Node `name` of the first worker's pipeline in a stats report. Panics if it is absent.
pub fn pipeline_node<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["pipeline"][0]["nodes"]
        .as_array()
        .expect("pipeline nodes")
        .iter()
        .find(|n| n["name"] == name)
        .unwrap_or_else(|| panic!("no node {name}"))
}

/// The count of entry `name` in a list of `{name, count}` (a node's `counters` or `drops`).
/// Panics if it is absent or not a count.
pub fn named_count(list: &Value, name: &str) -> u64 {
    let entry = list
        .as_array()
        .expect("list")
        .iter()
        .find(|x| x["name"] == name)
        .unwrap_or_else(|| panic!("no {name} in {list}"));
    entry["count"]
        .as_u64()
        .unwrap_or_else(|| panic!("not a count: {entry}"))
}
