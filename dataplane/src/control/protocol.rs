//! The control socket's wire format: one JSON object per line each way.

use serde::{Deserialize, Serialize};

/// Largest request line accepted, in bytes (the newline included).
pub const MAX_REQUEST: usize = 64 * 1024;

/// A request: the command's words, as typed after `dataplane ctl`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Request {
    /// The command and its arguments, e.g. `["trace", "add", "10"]`.
    pub argv: Vec<String>,
}

/// A response to one request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Response {
    /// Whether the command ran.
    pub ok: bool,
    /// What a human reads (tables), when `ok`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub text: String,
    /// The same for machines, when `ok`.
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub data: serde_json::Value,
    /// The one-line reason, when not `ok`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub error: String,
}

impl Response {
    /// A failure with a one-line reason (newlines are folded into spaces).
    pub fn error(reason: impl Into<String>) -> Response {
        Response {
            ok: false,
            text: String::new(),
            data: serde_json::Value::Null,
            error: reason.into().replace('\n', " "),
        }
    }

    /// This response as one line, `\n`-terminated.
    pub fn to_line(&self) -> Vec<u8> {
        let mut v = serde_json::to_vec(self).expect("a response serialises");
        v.push(b'\n');
        v
    }
}

/// Parses one request line (without its newline).
pub fn parse_request(line: &[u8]) -> Result<Request, String> {
    let text = std::str::from_utf8(line).map_err(|_| "request is not UTF-8".to_string())?;
    let req: Request = serde_json::from_str(text.trim())
        .map_err(|e| format!("request is not {{\"argv\": [words]}}: {e}"))?;
    if req.argv.is_empty() {
        return Err("empty command (try `help`)".into());
    }
    Ok(req)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_parse_or_are_refused_with_a_reason() {
        let r = parse_request(br#"{"argv":["show","runtime"]}"#).unwrap();
        assert_eq!(r.argv, ["show", "runtime"]);
        assert!(parse_request(b"show runtime").unwrap_err().contains("argv"));
        assert!(parse_request(br#"{"argv":[]}"#)
            .unwrap_err()
            .contains("empty"));
        assert!(parse_request(br#"{"argv":["x"],"y":1}"#).is_err());
        assert!(parse_request(&[0xff, 0xfe]).unwrap_err().contains("UTF-8"));
    }

    #[test]
    fn an_error_is_one_line() {
        let line = Response::error("a\nb").to_line();
        assert_eq!(line.iter().filter(|&&b| b == b'\n').count(), 1);
        let back: Response = serde_json::from_slice(&line).unwrap();
        assert!(!back.ok);
        assert_eq!(back.error, "a b");
    }
}
