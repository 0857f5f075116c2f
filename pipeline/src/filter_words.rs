//! The 5-tuple filter words that `trace add` ([`crate::trace::TraceFilter`]) and `show
//! conntrack` ([`crate::ct_sample::CtQuery`]) both take: `src A[/LEN]`, `dst A[/LEN]`,
//! `proto tcp|udp|icmp|icmp4|icmp6|icmpv6|N`, `sport N`, `dport N`. One parser for both, so
//! that the same words mean the same thing and are refused with the same reasons; each
//! command adds its own words (`port NAME`, `--limit N`).

use crate::acl::net::IpNet;
use crate::flow_key::{PROTO_ICMP, PROTO_ICMPV6, PROTO_SCTP, PROTO_TCP, PROTO_UDP};

/// The shared words, as error messages list them.
pub const WORDS: &str = "src, dst, proto, sport, dport";

/// One parsed 5-tuple filter word.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FilterWord {
    /// `src A[/LEN]`: source address or prefix.
    Src(IpNet),
    /// `dst A[/LEN]`: destination address or prefix.
    Dst(IpNet),
    /// `proto NAME|N`: IP protocol number.
    Proto(u8),
    /// `sport N`: L4 source port.
    SrcPort(u16),
    /// `dport N`: L4 destination port.
    DstPort(u16),
}

impl FilterWord {
    /// Parses the word `key` with its `value`: `Ok(None)` when `key` is none of the shared
    /// words (the caller's own, or unknown); an error is one line naming the word and the
    /// value.
    pub fn parse(key: &str, value: &str) -> Result<Option<FilterWord>, String> {
        let net = || {
            value
                .parse::<IpNet>()
                .map_err(|_| format!("{key}: `{value}` is not an address or prefix"))
        };
        let port = || {
            value
                .parse::<u16>()
                .map_err(|_| format!("{key}: `{value}` is not a port (0-65535)"))
        };
        Ok(Some(match key {
            "src" => FilterWord::Src(net()?),
            "dst" => FilterWord::Dst(net()?),
            "sport" => FilterWord::SrcPort(port()?),
            "dport" => FilterWord::DstPort(port()?),
            "proto" => FilterWord::Proto(protocol(value).ok_or_else(|| {
                format!("proto: `{value}` is not tcp, udp, sctp, icmp, icmp6 or 0-255")
            })?),
            _ => return Ok(None),
        }))
    }
}

/// The protocol number of a `proto` value: a name (`tcp`, `udp`, `sctp`, `icmp` or
/// `icmp4`, `icmp6` or `icmpv6`) or a number 0-255.
pub fn protocol(s: &str) -> Option<u8> {
    match s {
        "tcp" => Some(PROTO_TCP),
        "udp" => Some(PROTO_UDP),
        "sctp" => Some(PROTO_SCTP),
        "icmp" | "icmp4" => Some(PROTO_ICMP),
        "icmp6" | "icmpv6" => Some(PROTO_ICMPV6),
        n => n.parse().ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_word_parses_and_bad_values_are_refused_naming_them() {
        let p = |k, v| FilterWord::parse(k, v);
        assert_eq!(
            p("src", "10.0.0.0/8"),
            Ok(Some(FilterWord::Src("10.0.0.0/8".parse().unwrap())))
        );
        assert_eq!(
            p("dst", "2001:db8::1"),
            Ok(Some(FilterWord::Dst("2001:db8::1".parse().unwrap())))
        );
        assert_eq!(p("sport", "53"), Ok(Some(FilterWord::SrcPort(53))));
        assert_eq!(p("dport", "0"), Ok(Some(FilterWord::DstPort(0))));
        for (name, n) in [
            ("tcp", 6),
            ("udp", 17),
            ("icmp", 1),
            ("icmp4", 1),
            ("icmp6", 58),
            ("icmpv6", 58),
            ("sctp", 132),
            ("132", 132),
        ] {
            assert_eq!(p("proto", name), Ok(Some(FilterWord::Proto(n))), "{name}");
        }
        assert_eq!(p("port", "p0"), Ok(None), "not a shared word");
        assert_eq!(p("--limit", "5"), Ok(None));
        for (k, v, want) in [
            ("sport", "70000", "sport: `70000` is not a port (0-65535)"),
            ("dport", "-1", "dport: `-1` is not a port"),
            (
                "src",
                "10.0.0.300",
                "src: `10.0.0.300` is not an address or prefix",
            ),
            ("dst", "x", "dst: `x` is not an address"),
            (
                "proto",
                "gre",
                "proto: `gre` is not tcp, udp, sctp, icmp, icmp6 or 0-255",
            ),
            ("proto", "256", "proto: `256`"),
        ] {
            let e = p(k, v).unwrap_err();
            assert!(e.starts_with(want), "{e}");
        }
    }

    #[test]
    fn trace_and_conntrack_filters_read_the_same_words_alike() {
        let words = [
            "src",
            "10.1.0.0/16",
            "dst",
            "192.0.2.10",
            "proto",
            "icmp6",
            "sport",
            "1024",
            "dport",
            "9",
        ];
        let q = crate::ct_sample::CtQuery::parse(&words).unwrap();
        let mut t = crate::trace::TraceFilter::default();
        for kv in words.chunks(2) {
            t.set(FilterWord::parse(kv[0], kv[1]).unwrap().unwrap());
        }
        let f = &q.filter;
        assert_eq!(
            (f.src, f.dst, f.protocol, f.src_port, f.dst_port),
            (t.src, t.dst, t.protocol, t.src_port, t.dst_port)
        );
        assert_eq!(t.protocol, Some(PROTO_ICMPV6));
        assert_eq!(t.in_port, None);
        // The same refusal from both.
        let e = crate::ct_sample::CtQuery::parse(&["dport", "x"]).unwrap_err();
        assert_eq!(Err(e), FilterWord::parse("dport", "x"));
    }
}
