//! The commands, by area; each area's module lists its own ([`registry`] puts them together).

pub mod acl;
pub mod capture;
pub mod conntrack;
pub mod lb;
pub mod ovn;
pub mod ports;
pub mod reload;
pub mod runtime;
pub mod trace;

use super::{Ctx, Registry};

/// Every command the control socket answers.
pub fn registry<'a>() -> Registry<Ctx<'a>> {
    let mut r = Registry::new();
    r.add(&runtime::commands());
    r.add(&ports::commands());
    r.add(&trace::commands());
    r.add(&acl::commands());
    r.add(&lb::commands());
    r.add(&conntrack::commands());
    r.add(&reload::commands());
    r.add(&capture::commands());
    r.add(&ovn::commands());
    r
}

/// Parses a number argument, naming it in the error.
pub(crate) fn number<T: std::str::FromStr>(what: &str, s: &str) -> Result<T, String> {
    s.parse()
        .map_err(|_| format!("{what}: `{s}` is not a valid number"))
}

/// Serialises a value for a reply's `data` (our types always serialise).
pub(crate) fn json<T: serde::Serialize>(v: &T) -> serde_json::Value {
    serde_json::to_value(v).unwrap_or(serde_json::Value::Null)
}
