//! A local copy of the monitored OVSDB tables, kept current by `update2`/`update3` row
//! updates, and the [`ChangeSet`] each applied update yields.
//!
//! Data model (RFC 7047 §5.1): an atom is an integer, real, boolean, string or UUID; a column
//! holds a scalar (exactly one atom), a set (`["set",[..]]`, or one bare atom) or a map
//! (`["map",[[k,v]..]]`); the server's schema says which ([`ColumnType`]). Rows are stored with
//! every monitored column, defaults filled in: `insert`/`initial` updates omit columns that
//! hold their type's default.
//!
//! A `modify` carries a DIFF per changed column, as OVS's `ovsdb_datum_apply_diff` applies it:
//! a column of at most one element (scalar, or optional value: `max` 1) -> the new value
//! (an empty set clears an optional value); set -> the symmetric difference (each element
//! toggled); map -> a key absent from the row is added, a key present with the same value is
//! removed, a key present with another value takes the new value.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde_json::Value;

/// The type of an atom.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AtomType {
    /// 64-bit signed integer.
    Integer,
    /// Double.
    Real,
    /// Boolean.
    Boolean,
    /// UTF-8 string.
    String,
    /// UUID (a reference to a row, or a plain identifier).
    Uuid,
}

impl AtomType {
    fn parse(v: &Value) -> Result<AtomType, String> {
        let name = match v {
            Value::String(s) => s.as_str(),
            Value::Object(o) => o.get("type").and_then(Value::as_str).unwrap_or(""),
            _ => "",
        };
        Ok(match name {
            "integer" => AtomType::Integer,
            "real" => AtomType::Real,
            "boolean" => AtomType::Boolean,
            "string" => AtomType::String,
            "uuid" => AtomType::Uuid,
            _ => return Err(format!("unknown atomic type {v}")),
        })
    }

    /// The default atom of this type (RFC 7047 §5.1: 0, 0.0, false, "", the all-zero UUID).
    pub fn default_atom(self) -> Atom {
        match self {
            AtomType::Integer => Atom::Integer(0),
            AtomType::Real => Atom::Real(Real(0.0)),
            AtomType::Boolean => Atom::Boolean(false),
            AtomType::String => Atom::String(String::new()),
            AtomType::Uuid => Atom::Uuid(ZERO_UUID.to_string()),
        }
    }
}

/// The all-zero UUID.
pub const ZERO_UUID: &str = "00000000-0000-0000-0000-000000000000";

/// A column's type: key atom type, value atom type for a map, and element count bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ColumnType {
    /// Type of the atoms (of the keys, for a map).
    pub key: AtomType,
    /// Type of the values of a map.
    pub value: Option<AtomType>,
    /// Minimum number of elements (0 or 1).
    pub min: u64,
    /// Maximum number of elements, `None` for unlimited.
    pub max: Option<u64>,
}

impl ColumnType {
    /// A scalar column (one atom, no map).
    pub fn scalar(key: AtomType) -> ColumnType {
        ColumnType {
            key,
            value: None,
            min: 1,
            max: Some(1),
        }
    }

    /// A set column with `min..=max` elements.
    pub fn set(key: AtomType, min: u64, max: Option<u64>) -> ColumnType {
        ColumnType {
            key,
            value: None,
            min,
            max,
        }
    }

    /// A map column.
    pub fn map(key: AtomType, value: AtomType) -> ColumnType {
        ColumnType {
            key,
            value: Some(value),
            min: 0,
            max: None,
        }
    }

    /// Parses a `<type>` of the schema (RFC 7047 §3.2).
    pub fn parse(v: &Value) -> Result<ColumnType, String> {
        match v {
            Value::String(_) => Ok(ColumnType::scalar(AtomType::parse(v)?)),
            Value::Object(o) => {
                let key = AtomType::parse(o.get("key").ok_or("type without key")?)?;
                let value = o.get("value").map(AtomType::parse).transpose()?;
                let min = match o.get("min") {
                    None => 1,
                    Some(m) => m.as_u64().ok_or_else(|| format!("bad min {m}"))?,
                };
                let max = match o.get("max") {
                    None => Some(1),
                    Some(Value::String(s)) if s == "unlimited" => None,
                    Some(m) => Some(m.as_u64().ok_or_else(|| format!("bad max {m}"))?),
                };
                Ok(ColumnType {
                    key,
                    value,
                    min,
                    max,
                })
            }
            _ => Err(format!("bad column type {v}")),
        }
    }

    /// One atom, exactly: the column holds a bare value.
    pub fn is_scalar(&self) -> bool {
        self.value.is_none() && self.min == 1 && self.max == Some(1)
    }

    /// The value a row holds when the column is not given.
    pub fn default_datum(&self) -> Datum {
        if self.value.is_some() {
            Datum::Map(BTreeMap::new())
        } else if self.is_scalar() {
            Datum::Scalar(self.key.default_atom())
        } else {
            Datum::Set(BTreeSet::new())
        }
    }

    /// Parses a value of this column from its JSON (`<value>` of RFC 7047 §5.1).
    pub fn parse_datum(&self, v: &Value) -> Result<Datum, String> {
        if let Some(vt) = self.value {
            let pairs =
                tagged(v, "map").ok_or_else(|| format!("expected [\"map\",..], got {v}"))?;
            let mut m = BTreeMap::new();
            for p in pairs {
                match p.as_array().map(Vec::as_slice) {
                    Some([k, val]) => {
                        m.insert(Atom::parse(self.key, k)?, Atom::parse(vt, val)?);
                    }
                    _ => return Err(format!("bad map pair {p}")),
                }
            }
            return Ok(Datum::Map(m));
        }
        let elems: Vec<Atom> = match tagged(v, "set") {
            Some(list) => list
                .iter()
                .map(|a| Atom::parse(self.key, a))
                .collect::<Result<_, _>>()?,
            None => vec![Atom::parse(self.key, v)?],
        };
        if self.is_scalar() {
            match <[Atom; 1]>::try_from(elems) {
                Ok([a]) => Ok(Datum::Scalar(a)),
                Err(e) => Err(format!("scalar column given {} values", e.len())),
            }
        } else {
            Ok(Datum::Set(elems.into_iter().collect()))
        }
    }

    /// More than one element possible: a `modify` then carries a diff to toggle; a column
    /// of at most one element (a scalar, an optional value) carries its new value (OVS's
    /// `ovsdb_datum_diff`: `ovsdb_type_is_composite()` is `n_max > 1`).
    pub fn is_composite(&self) -> bool {
        self.max != Some(1)
    }

    /// Applies an update2 `modify` diff for this column to `old`.
    pub fn apply_diff(&self, old: &Datum, diff: &Value) -> Result<Datum, String> {
        let d = self.parse_datum(diff)?;
        if !self.is_composite() {
            return Ok(d);
        }
        Ok(match (old, d) {
            (_, Datum::Scalar(a)) => Datum::Scalar(a),
            (Datum::Set(old), Datum::Set(toggle)) => {
                Datum::Set(old.symmetric_difference(&toggle).cloned().collect())
            }
            (Datum::Map(old), Datum::Map(diff)) => {
                let mut m = old.clone();
                for (k, v) in diff {
                    match m.get(&k) {
                        Some(cur) if *cur == v => {
                            m.remove(&k);
                        }
                        _ => {
                            m.insert(k, v);
                        }
                    }
                }
                Datum::Map(m)
            }
            (old, d) => return Err(format!("diff {d:?} does not fit value {old:?}")),
        })
    }
}

/// `["tag", [...]]` -> the list.
fn tagged<'a>(v: &'a Value, tag: &str) -> Option<&'a Vec<Value>> {
    match v.as_array().map(Vec::as_slice) {
        Some([Value::String(t), Value::Array(list)]) if t == tag => Some(list),
        _ => None,
    }
}

/// A double with a total order (so that sets and maps of reals work).
#[derive(Debug, Clone, Copy)]
pub struct Real(pub f64);

impl PartialEq for Real {
    fn eq(&self, o: &Self) -> bool {
        self.0.total_cmp(&o.0) == Ordering::Equal
    }
}
impl Eq for Real {}
impl PartialOrd for Real {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Real {
    fn cmp(&self, o: &Self) -> Ordering {
        self.0.total_cmp(&o.0)
    }
}

/// One OVSDB atom.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Atom {
    /// Integer.
    Integer(i64),
    /// Real.
    Real(Real),
    /// Boolean.
    Boolean(bool),
    /// String.
    String(String),
    /// `["uuid", "..."]`.
    Uuid(String),
    /// `["named-uuid", "..."]` (only meaningful inside a transaction).
    NamedUuid(String),
}

impl Atom {
    /// Parses an atom of type `t`.
    pub fn parse(t: AtomType, v: &Value) -> Result<Atom, String> {
        let bad = || format!("expected {t:?}, got {v}");
        Ok(match t {
            AtomType::Integer => Atom::Integer(v.as_i64().ok_or_else(bad)?),
            AtomType::Real => Atom::Real(Real(v.as_f64().ok_or_else(bad)?)),
            AtomType::Boolean => Atom::Boolean(v.as_bool().ok_or_else(bad)?),
            AtomType::String => Atom::String(v.as_str().ok_or_else(bad)?.to_string()),
            AtomType::Uuid => match v.as_array().map(Vec::as_slice) {
                Some([Value::String(t), Value::String(u)]) if t == "uuid" => Atom::Uuid(u.clone()),
                Some([Value::String(t), Value::String(u)]) if t == "named-uuid" => {
                    Atom::NamedUuid(u.clone())
                }
                _ => return Err(bad()),
            },
        })
    }

    /// The string, for a string atom.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Atom::String(s) => Some(s),
            _ => None,
        }
    }

    /// The UUID, for a UUID atom.
    pub fn as_uuid(&self) -> Option<&str> {
        match self {
            Atom::Uuid(s) | Atom::NamedUuid(s) => Some(s),
            _ => None,
        }
    }

    /// The integer, for an integer atom.
    pub fn as_integer(&self) -> Option<i64> {
        match self {
            Atom::Integer(i) => Some(*i),
            _ => None,
        }
    }
}

impl fmt::Display for Atom {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Atom::Integer(i) => write!(f, "{i}"),
            Atom::Real(r) => write!(f, "{}", r.0),
            Atom::Boolean(b) => write!(f, "{b}"),
            Atom::String(s) => write!(f, "{s:?}"),
            Atom::Uuid(u) | Atom::NamedUuid(u) => write!(f, "{u}"),
        }
    }
}

/// A column's value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Datum {
    /// A scalar column's one atom.
    Scalar(Atom),
    /// A set column's elements (an optional value is a set of 0 or 1).
    Set(BTreeSet<Atom>),
    /// A map column's pairs.
    Map(BTreeMap<Atom, Atom>),
}

impl Datum {
    /// The atoms of a scalar or set (the keys of a map).
    pub fn atoms(&self) -> Vec<&Atom> {
        match self {
            Datum::Scalar(a) => vec![a],
            Datum::Set(s) => s.iter().collect(),
            Datum::Map(m) => m.keys().collect(),
        }
    }

    /// The single atom of a scalar or of a set of one.
    pub fn single(&self) -> Option<&Atom> {
        match self {
            Datum::Scalar(a) => Some(a),
            Datum::Set(s) if s.len() == 1 => s.iter().next(),
            _ => None,
        }
    }

    /// The value of a string-keyed map entry.
    pub fn map_get(&self, key: &str) -> Option<&Atom> {
        match self {
            Datum::Map(m) => m.get(&Atom::String(key.to_string())),
            _ => None,
        }
    }
}

/// One row: every monitored column.
pub type Row = BTreeMap<String, Datum>;
/// One table: rows by UUID.
pub type Table = BTreeMap<String, Row>;
/// The columns of each table, with their types.
pub type Schema = BTreeMap<String, BTreeMap<String, ColumnType>>;

/// Parses the `tables` of a `get_schema` reply into column types; a column whose type we
/// cannot read is left out (and named in the second value).
pub fn parse_schema(v: &Value) -> Result<(Schema, Vec<String>), String> {
    let tables = v
        .get("tables")
        .and_then(Value::as_object)
        .ok_or("schema without tables")?;
    let mut out = Schema::new();
    let mut skipped = Vec::new();
    for (t, tv) in tables {
        let cols = tv
            .get("columns")
            .and_then(Value::as_object)
            .ok_or_else(|| format!("table {t} without columns"))?;
        let mut cm = BTreeMap::new();
        for (c, cv) in cols {
            match cv.get("type").map(ColumnType::parse) {
                Some(Ok(ty)) => {
                    cm.insert(c.clone(), ty);
                }
                _ => skipped.push(format!("{t}.{c}")),
            }
        }
        out.insert(t.clone(), cm);
    }
    Ok((out, skipped))
}

/// Old and new values of a modified row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowChange {
    /// Before the update.
    pub old: Row,
    /// After it.
    pub new: Row,
}

impl RowChange {
    /// The columns whose value differs.
    pub fn changed_columns(&self) -> Vec<&str> {
        self.new
            .iter()
            .filter(|(c, v)| self.old.get(*c) != Some(*v))
            .map(|(c, _)| c.as_str())
            .collect()
    }
}

/// What one update did to one table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TableChanges {
    /// Rows that appeared, by UUID.
    pub inserted: BTreeMap<String, Row>,
    /// Rows that went away, with their last value.
    pub deleted: BTreeMap<String, Row>,
    /// Rows that changed, old and new.
    pub modified: BTreeMap<String, RowChange>,
}

impl TableChanges {
    /// Nothing changed.
    pub fn is_empty(&self) -> bool {
        self.inserted.is_empty() && self.deleted.is_empty() && self.modified.is_empty()
    }
}

/// What one applied update (a transaction, or a resync) changed, per table: what a
/// translation step consumes to rebuild only what changed. Tables without changes are absent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChangeSet {
    /// Changes by table name.
    pub tables: BTreeMap<String, TableChanges>,
}

impl ChangeSet {
    /// Nothing changed.
    pub fn is_empty(&self) -> bool {
        self.tables.values().all(TableChanges::is_empty)
    }

    /// The changes to one table, if any.
    pub fn table(&self, name: &str) -> Option<&TableChanges> {
        self.tables.get(name)
    }

    /// Rows inserted + deleted + modified, over all tables.
    pub fn rows(&self) -> usize {
        self.tables
            .values()
            .map(|t| t.inserted.len() + t.deleted.len() + t.modified.len())
            .sum()
    }

    fn entry(&mut self, table: &str) -> &mut TableChanges {
        self.tables.entry(table.to_string()).or_default()
    }

    fn prune(mut self) -> ChangeSet {
        self.tables.retain(|_, t| !t.is_empty());
        self
    }

    /// The difference from `old` to `new` contents (tables of either side).
    pub fn between(old: &BTreeMap<String, Table>, new: &BTreeMap<String, Table>) -> ChangeSet {
        let mut cs = ChangeSet::default();
        let empty = Table::new();
        let names: BTreeSet<&String> = old.keys().chain(new.keys()).collect();
        for name in names {
            let (o, n) = (
                old.get(name).unwrap_or(&empty),
                new.get(name).unwrap_or(&empty),
            );
            let t = cs.entry(name);
            for (uuid, row) in o {
                match n.get(uuid) {
                    None => {
                        t.deleted.insert(uuid.clone(), row.clone());
                    }
                    Some(nr) if nr != row => {
                        t.modified.insert(
                            uuid.clone(),
                            RowChange {
                                old: row.clone(),
                                new: nr.clone(),
                            },
                        );
                    }
                    Some(_) => {}
                }
            }
            for (uuid, row) in n {
                if !o.contains_key(uuid) {
                    t.inserted.insert(uuid.clone(), row.clone());
                }
            }
        }
        cs.prune()
    }
}

/// The monitored tables' schema and contents.
#[derive(Debug, Clone, Default)]
pub struct Replica {
    schema: Schema,
    tables: BTreeMap<String, Table>,
}

impl Replica {
    /// An empty replica of the tables in `schema`.
    pub fn new(schema: Schema) -> Replica {
        let tables = schema.keys().map(|t| (t.clone(), Table::new())).collect();
        Replica { schema, tables }
    }

    /// The schema of the monitored tables.
    pub fn schema(&self) -> &Schema {
        &self.schema
    }

    /// The rows, by table.
    pub fn tables(&self) -> &BTreeMap<String, Table> {
        &self.tables
    }

    /// One table's rows (empty if not monitored).
    pub fn table(&self, name: &str) -> Option<&Table> {
        self.tables.get(name)
    }

    /// Row count per table.
    pub fn counts(&self) -> BTreeMap<String, usize> {
        self.tables
            .iter()
            .map(|(t, r)| (t.clone(), r.len()))
            .collect()
    }

    /// Takes a new schema (after a reconnect to a server whose schema may differ), keeping
    /// the rows of the tables it still has and their columns that it still has.
    pub fn set_schema(&mut self, schema: Schema) {
        let mut tables = BTreeMap::new();
        for (t, cols) in &schema {
            let mut rows = self.tables.remove(t).unwrap_or_default();
            for row in rows.values_mut() {
                row.retain(|c, _| cols.contains_key(c));
                for (c, ty) in cols {
                    row.entry(c.clone()).or_insert_with(|| ty.default_datum());
                }
            }
            tables.insert(t.clone(), rows);
        }
        self.schema = schema;
        self.tables = tables;
    }

    /// Applies `<table-updates2>` incrementally. Rows that cannot be applied are skipped and
    /// described in the second value; the rest is applied.
    pub fn apply(&mut self, updates: &Value) -> (ChangeSet, Vec<String>) {
        let mut cs = ChangeSet::default();
        let mut errors = Vec::new();
        let Some(tables) = updates.as_object() else {
            errors.push(format!("table-updates is not an object: {updates}"));
            return (cs, errors);
        };
        for (tname, rows) in tables {
            let (Some(cols), Some(rows)) = (self.schema.get(tname), rows.as_object()) else {
                errors.push(format!(
                    "{tname}: not a monitored table, or rows not an object"
                ));
                continue;
            };
            let table = self.tables.entry(tname.clone()).or_default();
            let changes = cs.entry(tname);
            for (uuid, ru) in rows {
                if let Err(e) = apply_row(cols, table, changes, uuid, ru) {
                    errors.push(format!("{tname} {uuid}: {e}"));
                }
            }
        }
        (cs.prune(), errors)
    }

    /// Replaces the contents with the full `<table-updates2>` of a monitor reply (rows as
    /// `initial`) and returns only the difference from the previous contents: a resync that
    /// changed nothing yields an empty change set.
    pub fn replace(&mut self, updates: &Value) -> (ChangeSet, Vec<String>) {
        let mut fresh = Replica::new(self.schema.clone());
        let (_, errors) = fresh.apply(updates);
        let cs = ChangeSet::between(&self.tables, &fresh.tables);
        self.tables = fresh.tables;
        (cs, errors)
    }
}

fn full_row(cols: &BTreeMap<String, ColumnType>, given: &Value) -> Result<Row, String> {
    let given = given.as_object().ok_or("row is not an object")?;
    let mut row: Row = cols
        .iter()
        .map(|(c, t)| (c.clone(), t.default_datum()))
        .collect();
    for (c, v) in given {
        // Columns we did not ask for (a newer server) are ignored.
        if let Some(t) = cols.get(c) {
            row.insert(
                c.clone(),
                t.parse_datum(v).map_err(|e| format!("{c}: {e}"))?,
            );
        }
    }
    Ok(row)
}

fn apply_row(
    cols: &BTreeMap<String, ColumnType>,
    table: &mut Table,
    changes: &mut TableChanges,
    uuid: &str,
    ru: &Value,
) -> Result<(), String> {
    let ru = ru.as_object().ok_or("row update is not an object")?;
    if ru.len() != 1 {
        return Err(format!("row update with {} members (want 1)", ru.len()));
    }
    let (kind, body) = ru.iter().next().expect("one member");
    match kind.as_str() {
        "initial" | "insert" => {
            let row = full_row(cols, body)?;
            match table.insert(uuid.to_string(), row.clone()) {
                Some(old) if old != row => {
                    changes
                        .modified
                        .insert(uuid.to_string(), RowChange { old, new: row });
                }
                Some(_) => {}
                None => {
                    changes.inserted.insert(uuid.to_string(), row);
                }
            }
        }
        "delete" => {
            let old = table.remove(uuid).ok_or("delete of a row we do not have")?;
            changes.deleted.insert(uuid.to_string(), old);
        }
        "modify" => {
            let diff = body.as_object().ok_or("modify is not an object")?;
            let old = table.get(uuid).ok_or("modify of a row we do not have")?;
            let mut new = old.clone();
            for (c, d) in diff {
                if let (Some(t), Some(cur)) = (cols.get(c), old.get(c)) {
                    new.insert(
                        c.clone(),
                        t.apply_diff(cur, d).map_err(|e| format!("{c}: {e}"))?,
                    );
                }
            }
            if new != *old {
                let old = table
                    .insert(uuid.to_string(), new.clone())
                    .expect("present");
                changes
                    .modified
                    .insert(uuid.to_string(), RowChange { old, new });
            }
        }
        other => return Err(format!("unknown row update kind {other:?}")),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    const UUIDS: [&str; 3] = [
        "11111111-1111-1111-1111-111111111111",
        "22222222-2222-2222-2222-222222222222",
        "33333333-3333-3333-3333-333333333333",
    ];

    fn cols() -> BTreeMap<String, ColumnType> {
        use AtomType::*;
        [
            ("name", ColumnType::scalar(String)),
            ("priority", ColumnType::scalar(Integer)),
            ("weight", ColumnType::scalar(Real)),
            ("enabled", ColumnType::set(Boolean, 0, Some(1))),
            ("parent", ColumnType::set(Uuid, 0, Some(1))),
            ("ports", ColumnType::set(Uuid, 0, None)),
            ("addresses", ColumnType::set(String, 0, None)),
            ("external_ids", ColumnType::map(String, String)),
            ("options", ColumnType::map(String, Integer)),
        ]
        .into_iter()
        .map(|(c, t)| (c.to_string(), t))
        .collect()
    }

    fn replica() -> Replica {
        Replica::new([("T".to_string(), cols())].into())
    }

    // The test's own encoder (RFC 7047 §5.1), independent of the parser under test.
    fn atom_json(a: &Atom) -> Value {
        match a {
            Atom::Integer(i) => json!(i),
            Atom::Real(r) => json!(r.0),
            Atom::Boolean(b) => json!(b),
            Atom::String(s) => json!(s),
            Atom::Uuid(u) => json!(["uuid", u]),
            Atom::NamedUuid(u) => json!(["named-uuid", u]),
        }
    }

    fn set_json<'a>(atoms: impl Iterator<Item = &'a Atom>) -> Value {
        let list: Vec<Value> = atoms.map(atom_json).collect();
        if list.len() == 1 {
            list.into_iter().next().unwrap() // a one-element set may be a bare atom
        } else {
            json!(["set", list])
        }
    }

    fn datum_json(d: &Datum) -> Value {
        match d {
            Datum::Scalar(a) => atom_json(a),
            Datum::Set(s) => set_json(s.iter()),
            Datum::Map(m) => json!([
                "map",
                m.iter()
                    .map(|(k, v)| json!([atom_json(k), atom_json(v)]))
                    .collect::<Vec<_>>()
            ]),
        }
    }

    fn diff_json(t: &ColumnType, old: &Datum, new: &Datum) -> Value {
        if t.max == Some(1) {
            return datum_json(new); // what ovsdb-server sends for a column of one element
        }
        match (old, new) {
            (Datum::Set(o), Datum::Set(n)) => set_json(o.symmetric_difference(n)),
            (Datum::Map(o), Datum::Map(n)) => {
                let mut pairs = Vec::new();
                for (k, v) in o {
                    if !n.contains_key(k) {
                        pairs.push(json!([atom_json(k), atom_json(v)]));
                    }
                }
                for (k, v) in n {
                    if o.get(k) != Some(v) {
                        pairs.push(json!([atom_json(k), atom_json(v)]));
                    }
                }
                json!(["map", pairs])
            }
            _ => datum_json(new),
        }
    }

    fn atom_of(t: AtomType) -> BoxedStrategy<Atom> {
        match t {
            AtomType::Integer => (-2i64..3).prop_map(Atom::Integer).boxed(),
            AtomType::Real => prop::sample::select(vec![0.0, 1.5, -2.25])
                .prop_map(|r| Atom::Real(Real(r)))
                .boxed(),
            AtomType::Boolean => any::<bool>().prop_map(Atom::Boolean).boxed(),
            AtomType::String => prop::sample::select(vec!["", "a", "b", "10.0.0.1 x"])
                .prop_map(|s| Atom::String(s.to_string()))
                .boxed(),
            AtomType::Uuid => prop::sample::select(UUIDS.to_vec())
                .prop_map(|s| Atom::Uuid(s.to_string()))
                .boxed(),
        }
    }

    fn datum_of(t: ColumnType) -> BoxedStrategy<Datum> {
        if let Some(vt) = t.value {
            prop::collection::btree_map(atom_of(t.key), atom_of(vt), 0..4)
                .prop_map(Datum::Map)
                .boxed()
        } else if t.is_scalar() {
            atom_of(t.key).prop_map(Datum::Scalar).boxed()
        } else {
            let max = t.max.map_or(4, |m| m as usize + 1);
            prop::collection::btree_set(atom_of(t.key), 0..max)
                .prop_map(Datum::Set)
                .boxed()
        }
    }

    fn row_strategy() -> BoxedStrategy<Row> {
        cols()
            .into_iter()
            .map(|(c, t)| datum_of(t).prop_map(move |d| (c.clone(), d)))
            .collect::<Vec<_>>()
            .prop_map(|v| v.into_iter().collect())
            .boxed()
    }

    #[derive(Debug, Clone)]
    enum Op {
        Put(u8, Row),
        Delete(u8),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            3 => (0u8..5, row_strategy()).prop_map(|(k, r)| Op::Put(k, r)),
            1 => (0u8..5).prop_map(Op::Delete),
        ]
    }

    fn uuid(k: u8) -> String {
        format!("aaaaaaaa-0000-0000-0000-{k:012}")
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        /// Random row operations applied to a reference model and, as the update2 messages a
        /// server would send for them, to the replica: equal tables and exact change sets.
        #[test]
        fn update2_diffs_rebuild_the_reference(batches in prop::collection::vec(prop::collection::vec(op(), 1..5), 1..12)) {
            let cols = cols();
            let mut reference: Table = Table::new();
            let mut r = replica();
            for batch in batches {
                let mut msg = serde_json::Map::new();
                let mut expect = TableChanges::default();
                for op in batch {
                    let (k, u) = match &op { Op::Put(k, _) | Op::Delete(k) => (*k, uuid(*k)) };
                    let _ = k;
                    if msg.contains_key(&u) {
                        continue; // one update per row per message, as servers send
                    }
                    match op {
                        Op::Put(_, row) => match reference.get(&u) {
                            None => {
                                let given: serde_json::Map<String, Value> = row
                                    .iter()
                                    .filter(|(c, d)| **d != cols[*c].default_datum())
                                    .map(|(c, d)| (c.clone(), datum_json(d)))
                                    .collect();
                                msg.insert(u.clone(), json!({"insert": given}));
                                expect.inserted.insert(u.clone(), row.clone());
                                reference.insert(u, row);
                            }
                            Some(old) => {
                                let diff: serde_json::Map<String, Value> = row
                                    .iter()
                                    .filter(|(c, d)| old.get(*c) != Some(*d))
                                    .map(|(c, d)| (c.clone(), diff_json(&cols[c], &old[c], d)))
                                    .collect();
                                if diff.is_empty() {
                                    continue;
                                }
                                msg.insert(u.clone(), json!({"modify": diff}));
                                expect.modified.insert(u.clone(), RowChange { old: old.clone(), new: row.clone() });
                                reference.insert(u, row);
                            }
                        },
                        Op::Delete(_) => {
                            if let Some(old) = reference.remove(&u) {
                                msg.insert(u.clone(), json!({"delete": null}));
                                expect.deleted.insert(u, old);
                            }
                        }
                    }
                }
                let (cs, errors) = r.apply(&json!({ "T": msg }));
                prop_assert!(errors.is_empty(), "{errors:?}");
                prop_assert_eq!(r.table("T").unwrap(), &reference);
                prop_assert_eq!(cs.table("T").cloned().unwrap_or_default(), expect);
            }
        }
    }

    fn initial(rows: &[(&str, Value)]) -> Value {
        let m: serde_json::Map<String, Value> = rows
            .iter()
            .map(|(u, r)| (u.to_string(), json!({ "initial": r })))
            .collect();
        json!({ "T": m })
    }

    #[test]
    fn a_full_resync_yields_only_the_difference() {
        let mut r = replica();
        let a = json!({"name": "a", "ports": ["set", [["uuid", UUIDS[0]], ["uuid", UUIDS[1]]]]});
        let b = json!({"name": "b", "external_ids": ["map", [["k", "v"]]]});
        let (cs, e) = r.replace(&initial(&[(UUIDS[0], a.clone()), (UUIDS[1], b.clone())]));
        assert!(e.is_empty());
        assert_eq!(cs.table("T").unwrap().inserted.len(), 2);
        assert_eq!(
            r.table("T").unwrap()[UUIDS[0]]["priority"],
            Datum::Scalar(Atom::Integer(0))
        );

        // The same contents again: nothing changed, nothing to rebuild.
        let (cs, _) = r.replace(&initial(&[(UUIDS[0], a.clone()), (UUIDS[1], b)]));
        assert!(cs.is_empty(), "{cs:?}");

        // One row gone, one changed, one new.
        let a2 = json!({"name": "a", "ports": ["uuid", UUIDS[1]]});
        let (cs, _) = r.replace(&initial(&[
            (UUIDS[0], a2),
            (UUIDS[2], json!({"priority": 7})),
        ]));
        let t = cs.table("T").unwrap();
        assert_eq!(t.deleted.keys().collect::<Vec<_>>(), [UUIDS[1]]);
        assert_eq!(t.inserted.keys().collect::<Vec<_>>(), [UUIDS[2]]);
        assert_eq!(t.modified[UUIDS[0]].changed_columns(), ["ports"]);
        assert_eq!(
            t.modified[UUIDS[0]].new["ports"],
            Datum::Set([Atom::Uuid(UUIDS[1].into())].into())
        );
    }

    #[test]
    fn bad_rows_are_reported_and_the_rest_applied() {
        let mut r = replica();
        let (cs, errors) = r.apply(&json!({"T": {
            UUIDS[0]: {"insert": {"priority": "high"}},
            UUIDS[1]: {"insert": {"name": "ok"}},
            UUIDS[2]: {"modify": {"name": "x"}},
        }, "Nope": {}}));
        assert_eq!(errors.len(), 3, "{errors:?}");
        assert_eq!(
            cs.table("T").unwrap().inserted.keys().collect::<Vec<_>>(),
            [UUIDS[1]]
        );
    }

    #[test]
    fn schema_types_parse_as_ovsdb_defines_them() {
        let t = |v: Value| ColumnType::parse(&v).unwrap();
        assert!(t(json!("string")).is_scalar());
        let opt =
            t(json!({"key": {"type": "string", "enum": ["set", ["a", "b"]]}, "min": 0, "max": 1}));
        assert!(!opt.is_scalar());
        assert_eq!(opt.default_datum(), Datum::Set(BTreeSet::new()));
        let m = t(json!({"key": "string", "value": "string", "min": 0, "max": "unlimited"}));
        assert_eq!(m.value, Some(AtomType::String));
        assert_eq!(m.max, None);
        let p = t(json!({"key": {"type": "integer", "minInteger": 0, "maxInteger": 32767}}));
        assert_eq!(p.default_datum(), Datum::Scalar(Atom::Integer(0)));
    }
}
