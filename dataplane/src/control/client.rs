//! The client side (`dataplane ctl`): finds the socket, sends one request, reads one answer.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::protocol::{Request, Response};
use super::SOCKET_DIR;

/// How long the client waits for an answer.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);

/// The socket to use when none is named: the only live one in [`SOCKET_DIR`] (a socket a
/// process answers on); with several, the caller must choose, and the error lists them.
pub fn find_socket() -> Result<PathBuf, String> {
    find_socket_in(Path::new(SOCKET_DIR))
}

/// [`find_socket`] in folder `dir`.
pub fn find_socket_in(dir: &Path) -> Result<PathBuf, String> {
    let mut live: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| {
            format!(
                "no control socket: {}: {e} (is a dataplane running? else name one with --socket)",
                dir.display()
            )
        })?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "sock"))
        .filter(|p| {
            std::fs::symlink_metadata(p).is_ok_and(|m| m.file_type().is_socket())
                && UnixStream::connect(p).is_ok()
        })
        .collect();
    live.sort();
    match live.len() {
        0 => Err(format!(
            "no live control socket in {} (is a dataplane running? else name one with --socket)",
            dir.display()
        )),
        1 => Ok(live.remove(0)),
        _ => Err(format!(
            "several dataplanes are running; choose one with --socket: {}",
            live.iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

/// Sends `argv` to the dataplane at `socket` and returns its answer.
pub fn request(socket: &Path, argv: &[String]) -> Result<Response, String> {
    let mut s = UnixStream::connect(socket)
        .map_err(|e| format!("cannot connect to {}: {e}", socket.display()))?;
    s.set_read_timeout(Some(ANSWER_TIMEOUT))
        .and_then(|_| s.set_write_timeout(Some(ANSWER_TIMEOUT)))
        .map_err(|e| e.to_string())?;
    let mut line = serde_json::to_vec(&Request {
        argv: argv.to_vec(),
    })
    .expect("a request serialises");
    line.push(b'\n');
    s.write_all(&line)
        .map_err(|e| format!("sending to {}: {e}", socket.display()))?;
    let mut answer = String::new();
    BufReader::new(&s)
        .read_line(&mut answer)
        .map_err(|e| format!("reading from {}: {e}", socket.display()))?;
    if answer.is_empty() {
        return Err(format!("{} closed the connection", socket.display()));
    }
    serde_json::from_str(&answer).map_err(|e| format!("bad answer from {}: {e}", socket.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;

    #[test]
    fn the_only_live_socket_is_found_and_several_must_be_chosen() {
        let dir = std::env::temp_dir().join(format!("ctl-find-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let e = find_socket_in(&dir).unwrap_err();
        assert!(e.contains("no live control socket"), "{e}");
        // A stale socket file (nobody listening) and a non-socket file do not count.
        drop(UnixListener::bind(dir.join("stale.sock")).unwrap());
        std::fs::write(dir.join("file.sock"), b"").unwrap();
        assert!(find_socket_in(&dir).is_err());
        let a = UnixListener::bind(dir.join("a.sock")).unwrap();
        assert_eq!(find_socket_in(&dir).unwrap(), dir.join("a.sock"));
        let b = UnixListener::bind(dir.join("b.sock")).unwrap();
        let e = find_socket_in(&dir).unwrap_err();
        assert!(
            e.contains("a.sock") && e.contains("b.sock") && e.contains("--socket"),
            "{e}"
        );
        drop((a, b));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
