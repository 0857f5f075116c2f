//! `capture start PORT FILE [count N]`, `capture stop`, `show capture`: a port's packets,
//! both directions, into a pcapng file, in-process (for images without `dpdk-dumpcap`).
//! The capture itself is [`crate::dpdk::capture`]; the control loop drains it every pass.

use std::path::Path;

use serde_json::json;

use super::{json, number};
use crate::control::context::PortCapture;
use crate::control::registry::{no_args, Command, Reply};
use crate::control::Ctx;
use crate::dpdk::capture::{Capture, CaptureStatus};

/// This area's commands.
pub fn commands<'a>() -> Vec<Command<Ctx<'a>>> {
    vec![
        Command {
            path: "capture start",
            usage: "PORT FILE [count N]",
            help: "capture a port's packets (both directions) into a pcapng file (absolute path)",
            run: capture_start,
        },
        Command {
            path: "capture stop",
            usage: "",
            help: "stop the running capture: packets written and dropped",
            run: capture_stop,
        },
        Command {
            path: "show capture",
            usage: "",
            help: "the capture: state, port, file, packets written so far, dropped",
            run: show_capture,
        },
    ]
}

/// The capture's status with its port name, for `data`.
fn data(port: &str, s: &CaptureStatus) -> serde_json::Value {
    let mut v = json(s);
    v["port"] = json!(port);
    v
}

fn describe(port: &str, s: &CaptureStatus) -> String {
    let limit = s.limit.map_or(String::new(), |n| format!(" of {n}"));
    let error = s
        .error
        .as_ref()
        .map_or(String::new(), |e| format!(" (stopped: {e})"));
    format!(
        "capture of {port} into {}: {}, {} packets written{limit}, {} dropped{error}\n",
        s.file.display(),
        s.state.as_str(),
        s.written,
        s.dropped
    )
}

fn capture_start(cx: &mut Ctx<'_>, args: &[String]) -> Result<Reply, String> {
    let (port, file) = match args {
        [p, f, ..] => (p, f),
        _ => return Err("needs a port and a file".into()),
    };
    let limit = match &args[2..] {
        [] => None,
        [k, n] if k == "count" => {
            let n: u64 = number("count", n)?;
            if n == 0 {
                return Err("count must be at least 1".into());
            }
            Some(n)
        }
        [k, ..] if k == "count" => return Err("`count` needs one number".into()),
        [other, ..] => return Err(format!("unexpected argument `{other}`")),
    };
    if let Some(c) = &cx.state.capture {
        if c.capture.is_running() {
            return Err(format!(
                "a capture of {} into {} is running (capture stop first)",
                c.port,
                c.capture.status().file.display()
            ));
        }
    }
    let i = cx
        .port_index(port)
        .ok_or_else(|| format!("no port `{port}`"))?;
    let path = Path::new(file);
    if !path.is_absolute() {
        return Err(format!(
            "`{file}` is not an absolute path (the dataplane's working directory is not yours)"
        ));
    }
    let name = cx.plan.ports[i].name.clone();
    let capture = Capture::start(&cx.ports[i], path, limit).map_err(|e| e.to_string())?;
    let status = capture.status();
    cx.state.capture = Some(PortCapture {
        port: name.clone(),
        capture,
    });
    let what = limit.map_or("until `capture stop`".to_string(), |n| {
        format!("{n} packets")
    });
    Ok(Reply::new(
        format!("capturing {name} into {} ({what})\n", path.display()),
        data(&name, &status),
    ))
}

fn capture_stop(cx: &mut Ctx<'_>, args: &[String]) -> Result<Reply, String> {
    no_args(args)?;
    let Some(c) = cx.state.capture.as_mut() else {
        return Err("no capture was started".into());
    };
    let was_running = c.capture.is_running();
    let s = c.capture.stop();
    let mut text = describe(&c.port, &s);
    if !was_running {
        text = format!("(it had already finished) {text}");
    }
    Ok(Reply::new(text, data(&c.port, &s)))
}

fn show_capture(cx: &mut Ctx<'_>, args: &[String]) -> Result<Reply, String> {
    no_args(args)?;
    Ok(match &cx.state.capture {
        None => Reply::new("no capture\n", json!({ "state": "none" })),
        Some(c) => {
            let s = c.capture.status();
            Reply::new(describe(&c.port, &s), data(&c.port, &s))
        }
    })
}
