//! OVSDB remote strings as OVS writes them: `unix:PATH`, `tcp:IP:PORT`, `ssl:IP:PORT`
//! (IPv6 as `[ADDR]:PORT`), and comma-separated lists of them (a clustered NB).

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

/// One place an OVSDB server listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Remote {
    /// A unix domain socket (`unix:PATH`).
    Unix(PathBuf),
    /// Plain TCP (`tcp:IP:PORT`).
    Tcp(SocketAddr),
    /// TLS over TCP (`ssl:IP:PORT`), mutual: the client shows a certificate.
    Ssl(SocketAddr),
}

impl fmt::Display for Remote {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Remote::Unix(p) => write!(f, "unix:{}", p.display()),
            Remote::Tcp(a) => write!(f, "tcp:{}", fmt_addr(a)),
            Remote::Ssl(a) => write!(f, "ssl:{}", fmt_addr(a)),
        }
    }
}

fn fmt_addr(a: &SocketAddr) -> String {
    match a {
        SocketAddr::V4(v4) => format!("{}:{}", v4.ip(), v4.port()),
        SocketAddr::V6(v6) => format!("[{}]:{}", v6.ip(), v6.port()),
    }
}

impl Remote {
    /// Parses one remote; the error says what was expected.
    pub fn parse(s: &str) -> Result<Remote, String> {
        let s = s.trim();
        let (kind, rest) = s
            .split_once(':')
            .ok_or_else(|| format!("{s:?}: expected unix:PATH, tcp:IP:PORT or ssl:IP:PORT"))?;
        match kind {
            "unix" if rest.is_empty() => Err(format!("{s:?}: unix: needs a socket path")),
            "unix" => Ok(Remote::Unix(PathBuf::from(rest))),
            "tcp" => Ok(Remote::Tcp(parse_addr(s, rest)?)),
            "ssl" => Ok(Remote::Ssl(parse_addr(s, rest)?)),
            other => Err(format!(
                "{s:?}: unknown remote kind {other:?} (expected unix, tcp or ssl)"
            )),
        }
    }

    /// Parses a comma-separated list of remotes (at least one).
    pub fn parse_list(s: &str) -> Result<Vec<Remote>, String> {
        let list: Vec<Remote> = s
            .split(',')
            .filter(|p| !p.trim().is_empty())
            .map(Remote::parse)
            .collect::<Result<_, _>>()?;
        if list.is_empty() {
            return Err(format!("{s:?}: no remote"));
        }
        Ok(list)
    }

    /// Whether this remote needs TLS files.
    pub fn is_ssl(&self) -> bool {
        matches!(self, Remote::Ssl(_))
    }
}

/// `IP:PORT` or `[IPv6]:PORT` (OVS also accepts a bare IPv6 with the port after the last
/// colon; we ask for brackets, which is unambiguous).
fn parse_addr(whole: &str, rest: &str) -> Result<SocketAddr, String> {
    let (host, port) = if let Some(r) = rest.strip_prefix('[') {
        let (h, p) = r
            .split_once(']')
            .ok_or_else(|| format!("{whole:?}: missing ']' after the IPv6 address"))?;
        let p = p
            .strip_prefix(':')
            .ok_or_else(|| format!("{whole:?}: expected :PORT after ']'"))?;
        (h, p)
    } else {
        let (h, p) = rest
            .rsplit_once(':')
            .ok_or_else(|| format!("{whole:?}: expected IP:PORT"))?;
        if h.contains(':') {
            return Err(format!("{whole:?}: write an IPv6 address as [ADDR]:PORT"));
        }
        (h, p)
    };
    let ip: IpAddr = host
        .parse()
        .map_err(|_| format!("{whole:?}: {host:?} is not an IP address"))?;
    let port: u16 = port
        .parse()
        .map_err(|_| format!("{whole:?}: {port:?} is not a port number"))?;
    if port == 0 {
        return Err(format!("{whole:?}: port 0"));
    }
    Ok(SocketAddr::new(ip, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_each_kind_and_lists() {
        assert_eq!(
            Remote::parse("unix:/run/ovn/ovnnb_db.sock").unwrap(),
            Remote::Unix("/run/ovn/ovnnb_db.sock".into())
        );
        assert_eq!(
            Remote::parse("tcp:127.0.0.1:6641").unwrap(),
            Remote::Tcp("127.0.0.1:6641".parse().unwrap())
        );
        let v6 = Remote::parse("ssl:[fd00::1]:6641").unwrap();
        assert_eq!(v6, Remote::Ssl("[fd00::1]:6641".parse().unwrap()));
        assert_eq!(v6.to_string(), "ssl:[fd00::1]:6641");
        let l =
            Remote::parse_list("ssl:10.0.0.1:6641, ssl:10.0.0.2:6641,ssl:10.0.0.3:6641").unwrap();
        assert_eq!(l.len(), 3);
        assert_eq!(l[1].to_string(), "ssl:10.0.0.2:6641");
    }

    #[test]
    fn refuses_with_the_reason() {
        for (s, why) in [
            ("http:1.2.3.4:80", "unknown remote kind"),
            ("tcp:1.2.3.4", "expected IP:PORT"),
            ("tcp:host.example:6641", "not an IP address"),
            ("tcp:1.2.3.4:70000", "not a port number"),
            ("tcp:fd00::1:6641", "[ADDR]:PORT"),
            ("ssl:[fd00::1:6641", "missing ']'"),
            ("unix:", "socket path"),
            ("6641", "expected unix:PATH"),
            (" , ", "no remote"),
        ] {
            let e = Remote::parse_list(s).unwrap_err();
            assert!(e.contains(why), "{s}: {e}");
        }
    }
}
