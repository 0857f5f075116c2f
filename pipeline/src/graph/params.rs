//! Node parameters: a TOML table, deserialised into each kind's parameter struct.

use serde::de::{self, DeserializeOwned, Deserializer, Visitor};
use std::fmt;

/// The parameters of one node, as written in the graph's TOML (`params = { ... }`).
pub type Params = toml::Table;

/// The field names a `#[derive(Deserialize)]` struct accepts (as serde's derive reports
/// them, renames applied). Empty for types that are not plain structs.
pub fn struct_fields<T: DeserializeOwned>() -> &'static [&'static str] {
    let mut out = None;
    let _ = T::deserialize(FieldProbe { out: &mut out });
    out.unwrap_or(&[])
}

/// A deserializer that records the field list of the struct asked for, and fails.
struct FieldProbe<'a> {
    out: &'a mut Option<&'static [&'static str]>,
}

#[derive(Debug)]
struct ProbeDone;

impl fmt::Display for ProbeDone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("field probe")
    }
}

impl std::error::Error for ProbeDone {}

impl de::Error for ProbeDone {
    fn custom<T: fmt::Display>(_msg: T) -> Self {
        ProbeDone
    }
}

impl<'de> Deserializer<'de> for FieldProbe<'_> {
    type Error = ProbeDone;

    fn deserialize_any<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value, ProbeDone> {
        Err(ProbeDone)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        _visitor: V,
    ) -> Result<V::Value, ProbeDone> {
        *self.out = Some(fields);
        Err(ProbeDone)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier
        ignored_any
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Deserialize)]
    #[allow(dead_code)]
    struct Example {
        alpha: u32,
        #[serde(rename = "beta-x")]
        beta: String,
    }

    #[test]
    fn probe_reports_fields() {
        assert_eq!(struct_fields::<Example>(), &["alpha", "beta-x"]);
        assert!(struct_fields::<u32>().is_empty());
    }
}
