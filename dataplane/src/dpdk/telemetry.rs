//! Commands of our own on DPDK's telemetry socket (`dpdk-telemetry.py`, the collectd and
//! telegraf DPDK plugins): `/dataplane/runtime`, `/dataplane/errors`, ... beside DPDK's
//! `/ethdev/stats`.
//!
//! DPDK calls a command's handler on its telemetry thread, never on a worker. A command is
//! registered with DPDK once per process ([`register`]); what it answers comes from a
//! *source*, a closure the run installs ([`set_source`]) over handles that are safe to read
//! from any thread (the graphs' stats, the LB controls, the ACL hubs) and removes when it
//! stops ([`clear_sources`]: the command then answers an empty dictionary).
//!
//! Answers are a dictionary of numbers and strings, with one level of dictionaries inside
//! (what DPDK 22.11's telemetry can carry). Names may hold only letters, digits, `_` and `/`;
//! other characters become `_`.

use std::collections::BTreeMap;
use std::ffi::{c_char, c_int, CStr, CString};
use std::sync::{Arc, Mutex};

use super::DpdkError;

/// One value in an answer.
#[derive(Debug, Clone, PartialEq)]
pub enum TelValue {
    /// An unsigned number.
    U64(u64),
    /// A string (at most 127 bytes are sent).
    Str(String),
    /// A dictionary of numbers and strings (nested dictionaries inside it are dropped).
    Dict(Vec<(String, TelValue)>),
}

/// What a command answers: (name, value) pairs.
pub type TelDict = Vec<(String, TelValue)>;

/// A command's source of answers (called on the telemetry thread with the request's
/// parameters).
pub type TelSource = Arc<dyn Fn(&str) -> TelDict + Send + Sync>;

static SOURCES: Mutex<BTreeMap<String, TelSource>> = Mutex::new(BTreeMap::new());
static REGISTERED: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Most entries DPDK keeps in one dictionary.
const MAX_ENTRIES: usize = dpdk_sys::RTE_TEL_MAX_DICT_ENTRIES as usize;

/// A name as DPDK accepts it: letters, digits, `_` and `/` (anything else becomes `_`).
pub fn tel_name(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '/' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Registers `path` (e.g. `/dataplane/runtime`) with DPDK's telemetry, once per process;
/// it answers from the source [`set_source`] installs. Needs an initialised EAL.
pub fn register(path: &str, help: &str) -> Result<(), DpdkError> {
    let mut done = REGISTERED.lock().unwrap_or_else(|e| e.into_inner());
    if done.iter().any(|p| p == path) {
        return Ok(());
    }
    let cpath = CString::new(path).map_err(|_| DpdkError::new(format!("telemetry {path}"), 22))?;
    let chelp = CString::new(help).map_err(|_| DpdkError::new(format!("telemetry {path}"), 22))?;
    // SAFETY: both strings are valid NUL-terminated C strings that DPDK keeps pointers to for
    // the life of the process, so they are leaked on purpose; `handler` has the
    // `telemetry_cb` signature and stays valid forever.
    let rc = unsafe {
        dpdk_sys::rte_telemetry_register_cmd(cpath.into_raw(), Some(handler), chelp.into_raw())
    };
    super::check(rc, || format!("registering telemetry command {path}"))?;
    done.push(path.to_string());
    Ok(())
}

/// Makes `path` answer from `source` (replacing any earlier source).
pub fn set_source(path: &str, source: TelSource) {
    SOURCES
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(path.to_string(), source);
}

/// Removes every source (the commands answer an empty dictionary until a run sets them).
pub fn clear_sources() {
    SOURCES.lock().unwrap_or_else(|e| e.into_inner()).clear();
}

/// Fills `d` (started as a dictionary) with `entries`; nested dictionaries one level deep.
///
/// # Safety
/// `d` must be a telemetry data structure DPDK handed to a callback, or one from
/// `rte_tel_data_alloc`.
unsafe fn fill(d: *mut dpdk_sys::rte_tel_data, entries: &[(String, TelValue)], nested: bool) {
    // SAFETY: `d` is valid per this function's contract.
    unsafe { dpdk_sys::rte_tel_data_start_dict(d) };
    for (name, value) in entries.iter().take(MAX_ENTRIES) {
        let Ok(cname) = CString::new(tel_name(name)) else {
            continue;
        };
        match value {
            // SAFETY: `d` is a started dictionary and `cname` a valid C string.
            TelValue::U64(v) => unsafe {
                dpdk_sys::rte_tel_data_add_dict_u64(d, cname.as_ptr(), *v);
            },
            TelValue::Str(s) => {
                let Ok(cs) = CString::new(s.as_str()) else {
                    continue;
                };
                // SAFETY: as above; DPDK copies (and truncates) the string.
                unsafe { dpdk_sys::rte_tel_data_add_dict_string(d, cname.as_ptr(), cs.as_ptr()) };
            }
            TelValue::Dict(inner) if !nested => {
                // SAFETY: allocates a fresh structure (null when out of memory).
                let child = unsafe { dpdk_sys::rte_tel_data_alloc() };
                if child.is_null() {
                    continue;
                }
                // SAFETY: `child` is freshly allocated; with keep = 0 the library frees it
                // with `d` once it has answered, and frees it now if adding fails.
                unsafe {
                    fill(child, inner, true);
                    if dpdk_sys::rte_tel_data_add_dict_container(d, cname.as_ptr(), child, 0) != 0 {
                        dpdk_sys::rte_tel_data_free(child);
                    }
                }
            }
            TelValue::Dict(_) => {}
        }
    }
}

/// The C handler of every command registered here: finds the command's source by name.
extern "C" fn handler(
    cmd: *const c_char,
    params: *const c_char,
    d: *mut dpdk_sys::rte_tel_data,
) -> c_int {
    if cmd.is_null() || d.is_null() {
        return -22;
    }
    // SAFETY: DPDK passes NUL-terminated strings (params may be null) valid for this call.
    let (cmd, params) = unsafe {
        (
            CStr::from_ptr(cmd).to_string_lossy().into_owned(),
            if params.is_null() {
                String::new()
            } else {
                CStr::from_ptr(params).to_string_lossy().into_owned()
            },
        )
    };
    let source = SOURCES
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(&cmd)
        .cloned();
    let entries = match source {
        Some(s) => s(&params),
        None => Vec::new(),
    };
    // SAFETY: `d` is the structure DPDK handed this callback.
    unsafe { fill(d, &entries, false) };
    0
}

#[cfg(test)]
mod tests {
    use super::tel_name;

    #[test]
    fn names_keep_only_what_dpdk_accepts() {
        assert_eq!(tel_name("acl-deny"), "acl_deny");
        assert_eq!(tel_name("lcore 1"), "lcore_1");
        assert_eq!(
            tel_name("bench-vip/10.2.0.1:5001"),
            "bench_vip/10_2_0_1_5001"
        );
        assert_eq!(tel_name("parse"), "parse");
    }
}
