//! Typed reads of replica rows: a missing column or a value of another type reads as empty,
//! so a row from an older or newer schema never stops the translation.

use std::collections::BTreeMap;

use crate::ovn::replica::{Atom, Datum, Row, Table};

/// The string of a scalar (or optional) string column; `""` if absent or empty.
pub fn text<'a>(row: &'a Row, col: &str) -> &'a str {
    row.get(col)
        .and_then(Datum::single)
        .and_then(Atom::as_str)
        .unwrap_or("")
}

/// The integer of a scalar (or optional) integer column.
pub fn int(row: &Row, col: &str) -> Option<i64> {
    row.get(col)
        .and_then(Datum::single)
        .and_then(Atom::as_integer)
}

/// The boolean of a scalar (or optional) boolean column.
pub fn boolean(row: &Row, col: &str) -> Option<bool> {
    match row.get(col).and_then(Datum::single) {
        Some(Atom::Boolean(b)) => Some(*b),
        _ => None,
    }
}

/// The strings of a set column (a scalar reads as a set of one).
pub fn strings<'a>(row: &'a Row, col: &str) -> Vec<&'a str> {
    row.get(col)
        .map(|d| d.atoms().into_iter().filter_map(Atom::as_str).collect())
        .unwrap_or_default()
}

/// The UUIDs of a set-of-references column.
pub fn uuids<'a>(row: &'a Row, col: &str) -> Vec<&'a str> {
    row.get(col)
        .map(|d| d.atoms().into_iter().filter_map(Atom::as_uuid).collect())
        .unwrap_or_default()
}

/// A string-to-string map column (`options`, `external_ids`, `vips`).
pub fn map(row: &Row, col: &str) -> BTreeMap<String, String> {
    match row.get(col) {
        Some(Datum::Map(m)) => m
            .iter()
            .filter_map(|(k, v)| Some((k.as_str()?.to_string(), v.as_str()?.to_string())))
            .collect(),
        _ => BTreeMap::new(),
    }
}

/// A table of the replica, or an empty one when it was not monitored.
pub fn table<'a>(tables: &'a BTreeMap<String, Table>, name: &str) -> &'a Table {
    static EMPTY: Table = Table::new();
    tables.get(name).unwrap_or(&EMPTY)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn reads_tolerate_missing_and_mistyped_columns() {
        let mut row = Row::new();
        row.insert("name".into(), Datum::Scalar(Atom::String("a".into())));
        row.insert(
            "prio".into(),
            Datum::Set(BTreeSet::from([Atom::Integer(7)])),
        );
        row.insert(
            "ports".into(),
            Datum::Set(BTreeSet::from([
                Atom::Uuid("u1".into()),
                Atom::Uuid("u2".into()),
            ])),
        );
        row.insert(
            "options".into(),
            Datum::Map(BTreeMap::from([(
                Atom::String("k".into()),
                Atom::String("v".into()),
            )])),
        );
        assert_eq!(text(&row, "name"), "a");
        assert_eq!(text(&row, "prio"), "", "an integer is not a string");
        assert_eq!(text(&row, "absent"), "");
        assert_eq!(int(&row, "prio"), Some(7));
        assert_eq!(int(&row, "name"), None);
        assert_eq!(uuids(&row, "ports"), ["u1", "u2"]);
        assert!(strings(&row, "ports").is_empty());
        assert_eq!(map(&row, "options")["k"], "v");
        assert!(map(&row, "name").is_empty());
        assert_eq!(boolean(&row, "name"), None);
    }
}
