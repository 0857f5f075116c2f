//! The Kubernetes Downward API annotations file: one `key="value"` line per annotation,
//! the value quoted the way Go's `%q` quotes strings (`\"`, `\\`, `\n`, `\t`, `\xHH`,
//! `\uHHHH`, `\UHHHHHHHH`, octal `\ooo`, ...).

use std::collections::BTreeMap;

/// The Multus network-status annotation key.
pub const NETWORK_STATUS_KEY: &str = "k8s.v1.cni.cncf.io/network-status";
/// The deprecated spelling older Multus versions write.
pub const NETWORKS_STATUS_KEY_OLD: &str = "k8s.v1.cni.cncf.io/networks-status";
/// Userspace CNI's per-interface configuration (a JSON array).
pub const USERSPACE_CONFIG_KEY: &str = "userspace/configuration-data";
/// Userspace CNI's directory, inside the pod, where the socket files are.
pub const USERSPACE_MAPPED_DIR_KEY: &str = "userspace/mapped-dir";

/// Why a line of the annotations file could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {reason}")]
pub struct AnnotationParseError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong with it.
    pub reason: String,
}

/// Parse a whole annotations file into key -> unescaped value. Blank lines are skipped;
/// any other line that is not `key="quoted"` is an error naming the line.
pub fn parse_annotations(text: &str) -> Result<BTreeMap<String, String>, AnnotationParseError> {
    let mut out = BTreeMap::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim_end_matches('\r');
        if line.trim().is_empty() {
            continue;
        }
        let err = |reason: String| AnnotationParseError {
            line: i + 1,
            reason,
        };
        let Some((key, value)) = line.split_once('=') else {
            return Err(err("expected key=\"value\", found no `=`".into()));
        };
        let key = key.trim();
        if key.is_empty() {
            return Err(err("empty key before `=`".into()));
        }
        let value = unquote_go(value.trim()).map_err(|e| err(format!("value of {key}: {e}")))?;
        out.insert(key.to_string(), value);
    }
    Ok(out)
}

fn hex_value(digits: &[char]) -> Option<u32> {
    let mut v: u32 = 0;
    for d in digits {
        v = v.checked_mul(16)?.checked_add(d.to_digit(16)?)?;
    }
    Some(v)
}

/// Undo Go's `strconv.Quote`: `s` must be one double-quoted string and nothing else.
pub fn unquote_go(s: &str) -> Result<String, String> {
    let mut chars = s.chars();
    if chars.next() != Some('"') {
        return Err("value does not start with `\"`".into());
    }
    let mut out: Vec<u8> = Vec::with_capacity(s.len());
    let mut buf = [0u8; 4];
    let mut closed = false;
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                closed = true;
                break;
            }
            '\\' => {
                let Some(e) = chars.next() else {
                    return Err("string ends inside an escape".into());
                };
                let simple = match e {
                    'a' => Some(0x07u8),
                    'b' => Some(0x08),
                    'f' => Some(0x0c),
                    'n' => Some(b'\n'),
                    'r' => Some(b'\r'),
                    't' => Some(b'\t'),
                    'v' => Some(0x0b),
                    '\\' => Some(b'\\'),
                    '"' => Some(b'"'),
                    '\'' => Some(b'\''),
                    _ => None,
                };
                if let Some(b) = simple {
                    out.push(b);
                    continue;
                }
                let mut take = |n: usize| -> Result<Vec<char>, String> {
                    let v: Vec<char> = chars.by_ref().take(n).collect();
                    if v.len() == n {
                        Ok(v)
                    } else {
                        Err(format!("escape \\{e} needs {n} more characters"))
                    }
                };
                match e {
                    'x' => {
                        let d = take(2)?;
                        let v = hex_value(&d).ok_or_else(|| {
                            format!("bad hex escape \\x{}", d.iter().collect::<String>())
                        })?;
                        out.push(v as u8);
                    }
                    'u' | 'U' => {
                        let d = take(if e == 'u' { 4 } else { 8 })?;
                        let text: String = d.iter().collect();
                        let ch = hex_value(&d)
                            .and_then(char::from_u32)
                            .ok_or_else(|| format!("bad unicode escape \\{e}{text}"))?;
                        out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                    }
                    '0'..='7' => {
                        let mut d = vec![e];
                        d.extend(take(2)?);
                        let mut v: u32 = 0;
                        for c in &d {
                            v = v * 8
                                + c.to_digit(8).ok_or_else(|| {
                                    format!("bad octal escape \\{}", d.iter().collect::<String>())
                                })?;
                        }
                        let b = u8::try_from(v).map_err(|_| {
                            format!("octal escape \\{} above 255", d.iter().collect::<String>())
                        })?;
                        out.push(b);
                    }
                    other => return Err(format!("unknown escape \\{other}")),
                }
            }
            '\n' => return Err("raw newline inside the quoted value".into()),
            c => out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes()),
        }
    }
    if !closed {
        return Err("missing closing `\"`".into());
    }
    let rest: String = chars.collect();
    if !rest.trim().is_empty() {
        return Err(format!("unexpected text after the closing quote: `{rest}`"));
    }
    String::from_utf8(out).map_err(|e| format!("value is not UTF-8 after unescaping: {e}"))
}

/// Quote `s` the way Go's `%q` does for the characters Kubernetes writes (test helper and
/// for writing fixtures): `"`, `\` and control characters are escaped.
pub fn quote_go(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn unquotes_go_escapes() {
        assert_eq!(
            unquote_go(r#""a\"b\\c\nd\te""#).as_deref(),
            Ok("a\"b\\c\nd\te")
        );
        assert_eq!(
            unquote_go(r#""\x41\u00e9\U0001F600\101""#).as_deref(),
            Ok("Aé😀A")
        );
        assert_eq!(unquote_go(r#""\xc3\xa9""#).as_deref(), Ok("é"));
        assert_eq!(unquote_go(r#""""#).as_deref(), Ok(""));
    }

    #[test]
    fn rejects_bad_quoting() {
        for (input, key) in [
            ("abc", "does not start"),
            (r#""abc"#, "missing closing"),
            (r#""a\"#, "ends inside an escape"),
            (r#""\q""#, "unknown escape \\q"),
            (r#""\x4"#, "needs 2 more"),
            (r#""\x4""#, "bad hex escape \\x4\""),
            (r#""\xzz""#, "bad hex escape"),
            (r#""\ud800""#, "bad unicode escape"),
            (r#""\777""#, "above 255"),
            (r#""\xff""#, "not UTF-8"),
            (r#""a" b"#, "after the closing quote"),
        ] {
            let e = unquote_go(input).unwrap_err();
            assert!(e.contains(key), "{input}: {e}");
        }
    }

    #[test]
    fn parses_reference_file() {
        let text = include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/discovery/podnetinfo-annotations"
        ));
        let map = parse_annotations(text).unwrap_or_default();
        assert_eq!(
            map.get("kubernetes.io/config.source").map(String::as_str),
            Some("api")
        );
        assert_eq!(
            map.get("k8s.v1.cni.cncf.io/networks").map(String::as_str),
            Some("fronthaul-net,midhaul-net,userspace-net")
        );
        let status = map.get(NETWORK_STATUS_KEY).cloned().unwrap_or_default();
        assert!(
            status.starts_with("[{\n    \"name\": \"default/calico\""),
            "{status}"
        );
        assert!(serde_json::from_str::<serde_json::Value>(&status).is_ok());
    }

    #[test]
    fn bad_lines_name_their_number() {
        let e = parse_annotations("a=\"1\"\n\nno equals sign\n").unwrap_err();
        assert_eq!(e.line, 3);
        assert!(
            e.to_string().contains("line 3: expected key=\"value\""),
            "{e}"
        );
        let e = parse_annotations("a=\"1\"\nb=\"unterminated\n").unwrap_err();
        assert_eq!(e.to_string(), "line 2: value of b: missing closing `\"`");
        let e = parse_annotations("=\"x\"").unwrap_err();
        assert!(e.reason.contains("empty key"));
    }

    #[test]
    fn quote_roundtrip() {
        let s = "[{\"name\": \"a\\\\b\"}]\n\t\u{1}é";
        assert_eq!(unquote_go(&quote_go(s)).as_deref(), Ok(s));
    }

    proptest! {
        #[test]
        fn annotation_parser_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let text = String::from_utf8_lossy(&bytes);
            let _ = parse_annotations(&text);
            let _ = unquote_go(&text);
        }

        #[test]
        fn annotation_parser_never_panics_on_near_misses(s in "[a-z=\"\\\\xuU0-9a-fA-F\n ]{0,64}") {
            let _ = parse_annotations(&s);
        }

        #[test]
        fn quote_then_unquote_is_identity(s in any::<String>()) {
            prop_assert_eq!(unquote_go(&quote_go(&s)), Ok(s));
        }
    }
}
