//! JSON-RPC 1.0 as OVSDB speaks it: JSON objects written back to back on a stream with no
//! delimiter, requests `{"method","params","id"}`, responses `{"result","error","id"}` and
//! notifications (a request whose `id` is null).
//!
//! [`Framer`] cuts complete values out of the received bytes with a scanner that counts
//! brackets outside strings (each byte is looked at once), refusing a value larger than its
//! bound. [`Conn`] adds the keepalive of OVS's lib/jsonrpc.c: it answers the server's `echo`
//! requests, sends its own `echo` when nothing arrived for a probe interval, and gives up
//! when another interval passes in silence.

use std::fmt;
use std::io::{self, Read, Write};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::stream::Stream;

/// Default bound on one message (a full NB dump of a large cloud stays well below).
pub const DEFAULT_MAX_MESSAGE: usize = 64 << 20;

/// Why a connection is no longer usable.
#[derive(Debug)]
pub enum ConnError {
    /// The socket failed.
    Io(io::Error),
    /// The peer closed the connection.
    Closed,
    /// A message that is not JSON, or not JSON-RPC.
    Malformed(String),
    /// A message larger than the bound.
    TooLarge(usize),
    /// Nothing arrived for two probe intervals (our echo went unanswered).
    EchoTimeout,
}

impl fmt::Display for ConnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnError::Io(e) => write!(f, "{e}"),
            ConnError::Closed => write!(f, "connection closed by the server"),
            ConnError::Malformed(m) => write!(f, "malformed message: {m}"),
            ConnError::TooLarge(n) => write!(f, "message larger than {n} bytes"),
            ConnError::EchoTimeout => write!(f, "no answer to echo (inactivity probe)"),
        }
    }
}

impl From<io::Error> for ConnError {
    fn from(e: io::Error) -> Self {
        ConnError::Io(e)
    }
}

/// Cuts a byte stream into complete JSON values.
#[derive(Debug)]
pub struct Framer {
    buf: Vec<u8>,
    /// Where the current value starts (after whitespace), if one has started.
    start: Option<usize>,
    /// How far the scanner has looked.
    pos: usize,
    depth: u32,
    in_string: bool,
    escaped: bool,
    max: usize,
}

impl Framer {
    /// A framer refusing values above `max` bytes.
    pub fn new(max: usize) -> Framer {
        Framer {
            buf: Vec::new(),
            start: None,
            pos: 0,
            depth: 0,
            in_string: false,
            escaped: false,
            max,
        }
    }

    /// Appends received bytes.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete value, `Ok(None)` if more bytes are needed.
    pub fn next_value(&mut self) -> Result<Option<Value>, ConnError> {
        while self.pos < self.buf.len() {
            let b = self.buf[self.pos];
            let i = self.pos;
            self.pos += 1;
            match self.start {
                None => match b {
                    b' ' | b'\t' | b'\r' | b'\n' => continue,
                    b'{' | b'[' => {
                        self.start = Some(i);
                        self.depth = 1;
                    }
                    _ => {
                        return Err(ConnError::Malformed(format!(
                            "expected a JSON object, found byte {:?}",
                            b as char
                        )))
                    }
                },
                Some(start) => {
                    if self.in_string {
                        if self.escaped {
                            self.escaped = false;
                        } else if b == b'\\' {
                            self.escaped = true;
                        } else if b == b'"' {
                            self.in_string = false;
                        }
                        continue;
                    }
                    match b {
                        b'"' => self.in_string = true,
                        b'{' | b'[' => self.depth += 1,
                        b'}' | b']' => {
                            self.depth -= 1;
                            if self.depth == 0 {
                                let v = serde_json::from_slice(&self.buf[start..=i])
                                    .map_err(|e| ConnError::Malformed(e.to_string()));
                                self.buf.drain(..=i);
                                self.pos = 0;
                                self.start = None;
                                return v.map(Some);
                            }
                        }
                        _ => {}
                    }
                }
            }
        }
        let pending = self.start.map_or(0, |s| self.buf.len() - s);
        if pending > self.max {
            return Err(ConnError::TooLarge(self.max));
        }
        if self.start.is_none() {
            self.buf.clear();
            self.pos = 0;
        }
        Ok(None)
    }
}

/// A message from the server that the session has to act on (echo traffic is handled by
/// [`Conn`] itself).
#[derive(Debug, Clone, PartialEq)]
pub enum Incoming {
    /// A notification (`update2`, `update3`, `monitor_canceled`, ...).
    Notification {
        /// Method name.
        method: String,
        /// Its params.
        params: Value,
    },
    /// The answer to one of our requests: `Ok(result)` or `Err(error)`.
    Response {
        /// The id we sent.
        id: u64,
        /// The result, or the error the server gave.
        result: Result<Value, Value>,
    },
}

/// Keepalive and framing around one [`Stream`].
pub struct Conn {
    stream: Stream,
    framer: Framer,
    next_id: u64,
    probe: Option<Duration>,
    last_rx: Instant,
    echo_sent: Option<Instant>,
    rx: Vec<u8>,
}

impl Conn {
    /// Wraps a connected stream. `probe` is the inactivity probe interval (`None`: off);
    /// `tick` bounds how long one [`Conn::poll`] blocks.
    pub fn new(
        stream: Stream,
        probe: Option<Duration>,
        tick: Duration,
        max_message: usize,
    ) -> io::Result<Conn> {
        stream.set_read_timeout(tick)?;
        Ok(Conn {
            stream,
            framer: Framer::new(max_message),
            next_id: 1,
            probe,
            last_rx: Instant::now(),
            echo_sent: None,
            rx: vec![0; 64 << 10],
        })
    }

    fn send(&mut self, v: &Value) -> Result<(), ConnError> {
        let bytes = serde_json::to_vec(v).expect("a Value always serialises");
        self.stream.write_all(&bytes)?;
        self.stream.flush()?;
        Ok(())
    }

    /// Sends a request and returns its id.
    pub fn request(&mut self, method: &str, params: Value) -> Result<u64, ConnError> {
        let id = self.next_id;
        self.next_id += 1;
        self.send(&json!({"method": method, "params": params, "id": id}))?;
        Ok(id)
    }

    /// Waits at most one tick for a message. Answers echo requests, swallows echo replies,
    /// probes an idle server; `Ok(None)` when the tick passed with nothing to act on.
    pub fn poll(&mut self) -> Result<Option<Incoming>, ConnError> {
        loop {
            if let Some(v) = self.framer.next_value()? {
                if let Some(m) = self.handle(v)? {
                    return Ok(Some(m));
                }
                continue;
            }
            if let Some(p) = self.probe {
                let now = Instant::now();
                match self.echo_sent {
                    Some(t) if now.duration_since(t) >= p => return Err(ConnError::EchoTimeout),
                    None if now.duration_since(self.last_rx) >= p => {
                        self.send(&json!({"method": "echo", "params": [], "id": "echo"}))?;
                        self.echo_sent = Some(now);
                    }
                    _ => {}
                }
            }
            match self.stream.read(&mut self.rx) {
                Ok(0) => return Err(ConnError::Closed),
                Ok(n) => {
                    self.framer.push(&self.rx[..n]);
                    self.last_rx = Instant::now();
                    self.echo_sent = None;
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    return Ok(None)
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(ConnError::Io(e)),
            }
        }
    }

    fn handle(&mut self, v: Value) -> Result<Option<Incoming>, ConnError> {
        let Value::Object(mut o) = v else {
            return Err(ConnError::Malformed(
                "a message that is not an object".into(),
            ));
        };
        let id = o.remove("id").unwrap_or(Value::Null);
        if let Some(method) = o.remove("method") {
            let Value::String(method) = method else {
                return Err(ConnError::Malformed("method is not a string".into()));
            };
            let params = o.remove("params").unwrap_or(Value::Null);
            if id.is_null() {
                return Ok(Some(Incoming::Notification { method, params }));
            }
            // A request from the server: echo is the only one OVSDB servers send.
            let reply = if method == "echo" {
                json!({"result": params, "error": null, "id": id})
            } else {
                json!({"result": null, "error": format!("unknown method {method}"), "id": id})
            };
            self.send(&reply)?;
            return Ok(None);
        }
        if id == Value::String("echo".into()) {
            return Ok(None);
        }
        let Some(id) = id.as_u64() else {
            return Err(ConnError::Malformed(format!(
                "response with an id we never sent: {id}"
            )));
        };
        let error = o.remove("error").unwrap_or(Value::Null);
        let result = if error.is_null() {
            Ok(o.remove("result").unwrap_or(Value::Null))
        } else {
            Err(error)
        };
        Ok(Some(Incoming::Response { id, result }))
    }

    /// Closes the connection.
    pub fn close(mut self) {
        self.stream.shutdown();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(f: &mut Framer) -> Vec<Value> {
        let mut out = Vec::new();
        while let Some(v) = f.next_value().unwrap() {
            out.push(v);
        }
        out
    }

    #[test]
    fn cuts_concatenated_values_fed_byte_by_byte() {
        let text = br#"{"id":1,"result":{"a":"}{[\"x"}} [1,{"b":[]}]
  {"method":"update2","params":["nb",{}],"id":null}"#;
        let mut f = Framer::new(1 << 20);
        let mut got = Vec::new();
        for b in text.iter() {
            f.push(std::slice::from_ref(b));
            got.extend(all(&mut f));
        }
        assert_eq!(got.len(), 3);
        assert_eq!(got[0]["result"]["a"], "}{[\"x");
        assert_eq!(got[1], json!([1, {"b": []}]));
        assert_eq!(got[2]["method"], "update2");
    }

    #[test]
    fn refuses_garbage_and_oversized_values() {
        let mut f = Framer::new(1 << 20);
        f.push(b"  42");
        assert!(matches!(f.next_value(), Err(ConnError::Malformed(_))));
        let mut f = Framer::new(16);
        f.push(br#"{"a":"0123456789012345678"#);
        assert!(matches!(f.next_value(), Err(ConnError::TooLarge(16))));
        let mut f = Framer::new(1 << 20);
        f.push(br#"{"a":tru}"#);
        assert!(matches!(f.next_value(), Err(ConnError::Malformed(_))));
    }
}
