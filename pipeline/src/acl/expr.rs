//! The OVN match-expression subset used by security-group ACLs: lexer, parser and the
//! expression tree ([`MatchExpr`]).
//!
//! # Supported syntax
//! - `inport` / `outport` `==` or `!=` `@port_group`, `"port name"`, or `{...}` of those;
//! - predicates `ip`, `ip4`, `ip6`, `tcp`, `udp`, `sctp`, `icmp4`, `icmp6`, `icmp`, and the
//!   constants `1` (true) and `0` (false); `arp`/`rarp` (always false here: only IP packets
//!   are classified) and `nd`, `nd_ns`, `nd_na`, `nd_rs`, `nd_ra` (ICMPv6 of those types,
//!   code 0), which ovn-kubernetes's default-deny groups write as `(arp || nd)`;
//! - `ip4.src`, `ip4.dst`, `ip6.src`, `ip6.dst` `==` or `!=` an address, a prefix
//!   (`10.0.0.0/8` or `10.0.0.0/255.0.0.0`), `$address_set`, or `{a, b/len, $set}`;
//! - `tcp.src`, `tcp.dst`, `udp.src`, `udp.dst`, `sctp.src`, `sctp.dst`, `icmp4.type`,
//!   `icmp4.code`,
//!   `icmp6.type`, `icmp6.code`, `ip.proto` with `==`/`!=` (a number or `{n, m}`) and
//!   `<`, `<=`, `>`, `>=` (a number); the OVN range forms `tcp.dst >= 1000 && tcp.dst <= 2000`
//!   and `1000 <= tcp.dst <= 2000` both work;
//! - `&&`, `||`, `!`, parentheses. As in OVN, `&&` and `||` must be parenthesised when
//!   mixed, and `!` needs a parenthesised operand unless it is a predicate (`!tcp`).
//!
//! # Semantics (as OVN)
//! - `!=` against a set means "equal to none of them": `ip4.src != {a, b}` is
//!   `ip4.src != a && ip4.src != b`. `!=` is fully supported; the expansion turns it into
//!   complementary prefixes / ranges.
//! - Negation is pushed down to the comparisons, and a comparison's prerequisites stay
//!   positive: `!(tcp.dst == 80)` means `tcp && tcp.dst != 80` (a UDP packet does not match
//!   it). A field's prerequisites: `ip4.*` needs `ip4`, `ip6.*` needs `ip6`, `tcp.*` needs
//!   `tcp`, `udp.*` needs `udp`, `sctp.*` needs `sctp`, `icmp4.*` needs `icmp4`, `icmp6.*`
//!   needs `icmp6`.
//! - Only IP packets are classified (non-IP traffic never reaches the ACL stage), so `ip`
//!   is always true, `!ip` never, and `!ip4` means `ip6`.
//! - An address set may mix IPv4 and IPv6 entries; `ip4.src == $s` uses its IPv4 entries.
//!
//! The parser produces the expression in negation normal form: [`MatchExpr`] has no `Not`.

use std::collections::BTreeSet;
use std::fmt;

use super::net::{IpNet, IpVersion};

/// A parse error: the byte offset into the expression (0-based) and what went wrong.
/// Displays as `at 27: expected '==' or '!=' after 'ip4.src', found '='`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("at {pos}: {message}")]
pub struct ParseError {
    /// Byte offset (0-based) into the expression text.
    pub pos: usize,
    /// What was expected and what was found.
    pub message: String,
}

impl ParseError {
    /// The error followed by the expression and a caret under the offending byte.
    pub fn render(&self, text: &str) -> String {
        let col = text
            .get(..self.pos.min(text.len()))
            .map_or(self.pos, |s| s.chars().count());
        format!("{self}\n    {text}\n    {}^", " ".repeat(col))
    }
}

/// Source or destination side of a packet header field.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Side {
    /// `*.src`.
    Src,
    /// `*.dst`.
    Dst,
}

/// Which logical port a port match refers to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PortField {
    /// `inport`: the port the packet came in on.
    In,
    /// `outport`: the port the packet is about to leave by.
    Out,
}

/// Transport protocol of a port field.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum L4Proto {
    /// TCP (IP protocol 6).
    Tcp,
    /// UDP (IP protocol 17).
    Udp,
    /// SCTP (IP protocol 132; its ports are the first two fields of the common header, as
    /// TCP's and UDP's).
    Sctp,
}

impl L4Proto {
    /// The IP protocol number.
    pub fn number(self) -> u8 {
        match self {
            L4Proto::Tcp => 6,
            L4Proto::Udp => 17,
            L4Proto::Sctp => 132,
        }
    }

    fn name(self) -> &'static str {
        match self {
            L4Proto::Tcp => "tcp",
            L4Proto::Udp => "udp",
            L4Proto::Sctp => "sctp",
        }
    }
}

/// ICMP header field.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum IcmpField {
    /// `icmpX.type`.
    Type,
    /// `icmpX.code`.
    Code,
}

/// IP protocol number of ICMP for a family (1 for ICMPv4, 58 for ICMPv6).
pub fn icmp_proto(version: IpVersion) -> u8 {
    match version {
        IpVersion::V4 => 1,
        IpVersion::V6 => 58,
    }
}

/// A comparison of an ordinal field against constants.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Cmp<T> {
    /// `== v` or `== {v1, v2}`: equal to one of them.
    In(Vec<T>),
    /// `!= v` or `!= {v1, v2}`: equal to none of them.
    NotIn(Vec<T>),
    /// `< v`.
    Lt(T),
    /// `<= v`.
    Le(T),
    /// `> v`.
    Gt(T),
    /// `>= v`.
    Ge(T),
}

impl<T: Copy + Ord> Cmp<T> {
    /// Whether `v` satisfies the comparison.
    pub fn test(&self, v: T) -> bool {
        match self {
            Cmp::In(xs) => xs.contains(&v),
            Cmp::NotIn(xs) => !xs.contains(&v),
            Cmp::Lt(x) => v < *x,
            Cmp::Le(x) => v <= *x,
            Cmp::Gt(x) => v > *x,
            Cmp::Ge(x) => v >= *x,
        }
    }

    /// The complementary comparison.
    pub fn negate(self) -> Cmp<T> {
        match self {
            Cmp::In(xs) => Cmp::NotIn(xs),
            Cmp::NotIn(xs) => Cmp::In(xs),
            Cmp::Lt(x) => Cmp::Ge(x),
            Cmp::Le(x) => Cmp::Gt(x),
            Cmp::Gt(x) => Cmp::Le(x),
            Cmp::Ge(x) => Cmp::Lt(x),
        }
    }

    fn map<U>(self, f: impl Fn(T) -> U) -> Cmp<U> {
        match self {
            Cmp::In(xs) => Cmp::In(xs.into_iter().map(f).collect()),
            Cmp::NotIn(xs) => Cmp::NotIn(xs.into_iter().map(f).collect()),
            Cmp::Lt(x) => Cmp::Lt(f(x)),
            Cmp::Le(x) => Cmp::Le(f(x)),
            Cmp::Gt(x) => Cmp::Gt(f(x)),
            Cmp::Ge(x) => Cmp::Ge(f(x)),
        }
    }
}

impl<T: fmt::Display> fmt::Display for Cmp<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list = |f: &mut fmt::Formatter<'_>, op: &str, xs: &[T]| -> fmt::Result {
            if xs.len() == 1 {
                write!(f, "{op} {}", xs[0])
            } else {
                write!(f, "{op} {{")?;
                for (i, x) in xs.iter().enumerate() {
                    write!(f, "{}{x}", if i > 0 { ", " } else { "" })?;
                }
                write!(f, "}}")
            }
        };
        match self {
            Cmp::In(xs) => list(f, "==", xs),
            Cmp::NotIn(xs) => list(f, "!=", xs),
            Cmp::Lt(x) => write!(f, "< {x}"),
            Cmp::Le(x) => write!(f, "<= {x}"),
            Cmp::Gt(x) => write!(f, "> {x}"),
            Cmp::Ge(x) => write!(f, ">= {x}"),
        }
    }
}

/// One element of an address comparison.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AddrItem {
    /// A literal address or prefix.
    Net(IpNet),
    /// `$name`: the current entries of an address set.
    Set(String),
}

/// The right-hand side of an `inport`/`outport` comparison.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PortName {
    /// `@name`: any member of the port group.
    Group(String),
    /// `"name"`: one port, by name.
    Named(String),
}

/// A primitive test in a [`MatchExpr`]; negation has already been folded into it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Atom {
    /// `ip4` / `ip6`.
    Version(IpVersion),
    /// `ip.proto` (and `tcp`, `udp`, `sctp`, which are `ip.proto == 6`, `17`, `132`).
    Proto(Cmp<u8>),
    /// `ipX.src`/`ipX.dst` `==` (or, if `negated`, `!=`) any of `items`. Prerequisite: the
    /// packet is of family `version`.
    Addr {
        /// Address family of the field (`ip4.*` or `ip6.*`).
        version: IpVersion,
        /// Source or destination address.
        side: Side,
        /// `!=`: in none of the items.
        negated: bool,
        /// The addresses, prefixes and sets compared against.
        items: Vec<AddrItem>,
    },
    /// `tcp.src`, `udp.dst`, ... Prerequisite: the packet's protocol is `proto`.
    L4Port {
        /// TCP, UDP or SCTP.
        proto: L4Proto,
        /// Source or destination port.
        side: Side,
        /// The comparison.
        cmp: Cmp<u16>,
    },
    /// `icmp4.type`, `icmp6.code`, ... Prerequisite: ICMP of family `version`.
    Icmp {
        /// ICMPv4 or ICMPv6.
        version: IpVersion,
        /// Type or code.
        field: IcmpField,
        /// The comparison.
        cmp: Cmp<u8>,
    },
    /// `inport`/`outport` `==` (or, if `negated`, `!=`) a port or port group.
    Port {
        /// `inport` or `outport`.
        field: PortField,
        /// `!=`: the port is not (a member of) `port`.
        negated: bool,
        /// The port or group.
        port: PortName,
    },
}

impl Atom {
    /// The complementary test (prerequisites kept positive, as in OVN).
    pub fn negate(self) -> MatchExpr {
        match self {
            Atom::Version(v) => MatchExpr::Atom(Atom::Version(match v {
                IpVersion::V4 => IpVersion::V6,
                IpVersion::V6 => IpVersion::V4,
            })),
            Atom::Proto(cmp) => MatchExpr::Atom(Atom::Proto(cmp.negate())),
            Atom::Addr {
                version,
                side,
                negated,
                items,
            } => MatchExpr::Atom(Atom::Addr {
                version,
                side,
                negated: !negated,
                items,
            }),
            Atom::L4Port { proto, side, cmp } => MatchExpr::Atom(Atom::L4Port {
                proto,
                side,
                cmp: cmp.negate(),
            }),
            Atom::Icmp {
                version,
                field,
                cmp,
            } => MatchExpr::Atom(Atom::Icmp {
                version,
                field,
                cmp: cmp.negate(),
            }),
            Atom::Port {
                field,
                negated,
                port,
            } => MatchExpr::Atom(Atom::Port {
                field,
                negated: !negated,
                port,
            }),
        }
    }
}

fn write_quoted(f: &mut fmt::Formatter<'_>, s: &str) -> fmt::Result {
    write!(f, "\"")?;
    for c in s.chars() {
        if c == '"' || c == '\\' {
            write!(f, "\\")?;
        }
        write!(f, "{c}")?;
    }
    write!(f, "\"")
}

impl fmt::Display for Atom {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Atom::Version(v) => write!(f, "{}", v.ovn_name()),
            Atom::Proto(cmp) => write!(f, "ip.proto {cmp}"),
            Atom::Addr {
                version,
                side,
                negated,
                items,
            } => {
                let side = if *side == Side::Src { "src" } else { "dst" };
                write!(
                    f,
                    "{}.{side} {} ",
                    version.ovn_name(),
                    if *negated { "!=" } else { "==" }
                )?;
                if items.len() != 1 {
                    write!(f, "{{")?;
                }
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        write!(f, ", ")?;
                    }
                    match item {
                        AddrItem::Net(n) => write!(f, "{n}")?,
                        AddrItem::Set(s) => write!(f, "${s}")?,
                    }
                }
                if items.len() != 1 {
                    write!(f, "}}")?;
                }
                Ok(())
            }
            Atom::L4Port { proto, side, cmp } => {
                let side = if *side == Side::Src { "src" } else { "dst" };
                write!(f, "{}.{side} {cmp}", proto.name())
            }
            Atom::Icmp {
                version,
                field,
                cmp,
            } => {
                let field = if *field == IcmpField::Type {
                    "type"
                } else {
                    "code"
                };
                let name = if *version == IpVersion::V4 {
                    "icmp4"
                } else {
                    "icmp6"
                };
                write!(f, "{name}.{field} {cmp}")
            }
            Atom::Port {
                field,
                negated,
                port,
            } => {
                let field = if *field == PortField::In {
                    "inport"
                } else {
                    "outport"
                };
                write!(f, "{field} {} ", if *negated { "!=" } else { "==" })?;
                match port {
                    PortName::Group(g) => write!(f, "@{g}"),
                    PortName::Named(n) => write_quoted(f, n),
                }
            }
        }
    }
}

/// A parsed match expression in negation normal form.
///
/// Build it with [`parse`] / [`parse_with`]; [`MatchExpr::and`] and [`MatchExpr::or`]
/// flatten nested operators and fold constants. `Display` prints re-parseable OVN syntax.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum MatchExpr {
    /// `1` (matches everything) or `0` (matches nothing).
    Const(bool),
    /// A primitive test.
    Atom(Atom),
    /// All of them (never empty, never directly nested, no constants).
    And(Vec<MatchExpr>),
    /// Any of them (never empty, never directly nested, no constants).
    Or(Vec<MatchExpr>),
}

impl MatchExpr {
    /// Conjunction, flattening nested `And`s and folding constants.
    pub fn and(items: Vec<MatchExpr>) -> MatchExpr {
        let mut out = Vec::with_capacity(items.len());
        for item in items {
            match item {
                MatchExpr::Const(true) => {}
                MatchExpr::Const(false) => return MatchExpr::Const(false),
                MatchExpr::And(inner) => out.extend(inner),
                other => out.push(other),
            }
        }
        match out.len() {
            0 => MatchExpr::Const(true),
            1 => out.pop().unwrap_or(MatchExpr::Const(true)),
            _ => MatchExpr::And(out),
        }
    }

    /// Disjunction, flattening nested `Or`s and folding constants.
    pub fn or(items: Vec<MatchExpr>) -> MatchExpr {
        let mut out = Vec::with_capacity(items.len());
        for item in items {
            match item {
                MatchExpr::Const(false) => {}
                MatchExpr::Const(true) => return MatchExpr::Const(true),
                MatchExpr::Or(inner) => out.extend(inner),
                other => out.push(other),
            }
        }
        match out.len() {
            0 => MatchExpr::Const(false),
            1 => out.pop().unwrap_or(MatchExpr::Const(false)),
            _ => MatchExpr::Or(out),
        }
    }

    /// The logical negation (De Morgan down to the atoms, OVN prerequisite rules).
    pub fn negate(self) -> MatchExpr {
        match self {
            MatchExpr::Const(b) => MatchExpr::Const(!b),
            MatchExpr::Atom(a) => a.negate(),
            MatchExpr::And(items) => {
                MatchExpr::or(items.into_iter().map(MatchExpr::negate).collect())
            }
            MatchExpr::Or(items) => {
                MatchExpr::and(items.into_iter().map(MatchExpr::negate).collect())
            }
        }
    }

    /// Calls `f` on every atom.
    pub fn for_each_atom<'a>(&'a self, f: &mut impl FnMut(&'a Atom)) {
        match self {
            MatchExpr::Const(_) => {}
            MatchExpr::Atom(a) => f(a),
            MatchExpr::And(items) | MatchExpr::Or(items) => {
                for item in items {
                    item.for_each_atom(f);
                }
            }
        }
    }

    /// Names of the address sets referenced (`$name`).
    pub fn address_sets(&self) -> BTreeSet<&str> {
        let mut out = BTreeSet::new();
        self.for_each_atom(&mut |a| {
            if let Atom::Addr { items, .. } = a {
                for item in items {
                    if let AddrItem::Set(s) = item {
                        out.insert(s.as_str());
                    }
                }
            }
        });
        out
    }

    /// Names of the port groups referenced (`@name`).
    pub fn port_groups(&self) -> BTreeSet<&str> {
        let mut out = BTreeSet::new();
        self.for_each_atom(&mut |a| {
            if let Atom::Port {
                port: PortName::Group(g),
                ..
            } = a
            {
                out.insert(g.as_str());
            }
        });
        out
    }

    /// True if the expression tests `inport` (`PortField::In`) or `outport`.
    pub fn uses_port_field(&self, field: PortField) -> bool {
        let mut found = false;
        self.for_each_atom(&mut |a| {
            if let Atom::Port { field: f, .. } = a {
                found |= *f == field;
            }
        });
        found
    }
}

impl fmt::Display for MatchExpr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let join = |f: &mut fmt::Formatter<'_>, items: &[MatchExpr], op: &str| -> fmt::Result {
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    write!(f, " {op} ")?;
                }
                match item {
                    MatchExpr::And(_) | MatchExpr::Or(_) => write!(f, "({item})")?,
                    _ => write!(f, "{item}")?,
                }
            }
            Ok(())
        };
        match self {
            MatchExpr::Const(b) => write!(f, "{}", u8::from(*b)),
            MatchExpr::Atom(a) => write!(f, "{a}"),
            MatchExpr::And(items) => join(f, items, "&&"),
            MatchExpr::Or(items) => join(f, items, "||"),
        }
    }
}

/// Tells the parser which `@port_group` and `$address_set` names exist.
pub trait NameResolver {
    /// True if a port group of that name exists.
    fn has_port_group(&self, name: &str) -> bool;
    /// True if an address set of that name exists.
    fn has_address_set(&self, name: &str) -> bool;
}

/// Accepts every name (syntax-only parsing).
struct AnyName;

impl NameResolver for AnyName {
    fn has_port_group(&self, _: &str) -> bool {
        true
    }
    fn has_address_set(&self, _: &str) -> bool {
        true
    }
}

/// Parses an expression, checking syntax only (any `@group`/`$set` name is accepted).
pub fn parse(text: &str) -> Result<MatchExpr, ParseError> {
    parse_with(text, &AnyName)
}

/// Parses an expression; an unknown `@group` or `$set` is an error at its position.
pub fn parse_with(text: &str, names: &dyn NameResolver) -> Result<MatchExpr, ParseError> {
    let tokens = lex(text)?;
    let mut p = Parser {
        tokens,
        i: 0,
        names,
    };
    let e = p.parse_expr()?;
    let t = p.peek();
    if t.tok != Tok::Eof {
        return Err(p.error_at(
            t.pos,
            format!("expected '&&', '||' or end of expression, found {}", t.tok),
        ));
    }
    Ok(e)
}

// ---------------------------------------------------------------------------------------
// Lexer

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Rel {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl Rel {
    fn text(self) -> &'static str {
        match self {
            Rel::Eq => "==",
            Rel::Ne => "!=",
            Rel::Lt => "<",
            Rel::Le => "<=",
            Rel::Gt => ">",
            Rel::Ge => ">=",
        }
    }

    /// `c OP field` is `field TURN(OP) c`.
    fn turn(self) -> Rel {
        match self {
            Rel::Lt => Rel::Gt,
            Rel::Le => Rel::Ge,
            Rel::Gt => Rel::Lt,
            Rel::Ge => Rel::Le,
            other => other,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Ident(String),
    Group(String),
    Set(String),
    Str(String),
    Num(u64),
    Net(IpNet),
    Rel(Rel),
    Assign,
    AndAnd,
    OrOr,
    Not,
    LParen,
    RParen,
    LBrace,
    RBrace,
    Comma,
    Eof,
}

impl fmt::Display for Tok {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Tok::Ident(s) => write!(f, "'{s}'"),
            Tok::Group(s) => write!(f, "'@{s}'"),
            Tok::Set(s) => write!(f, "'${s}'"),
            Tok::Str(s) => write!(f, "string \"{s}\""),
            Tok::Num(n) => write!(f, "number {n}"),
            Tok::Net(n) => write!(f, "address {n}"),
            Tok::Rel(r) => write!(f, "'{}'", r.text()),
            Tok::Assign => write!(f, "'='"),
            Tok::AndAnd => write!(f, "'&&'"),
            Tok::OrOr => write!(f, "'||'"),
            Tok::Not => write!(f, "'!'"),
            Tok::LParen => write!(f, "'('"),
            Tok::RParen => write!(f, "')'"),
            Tok::LBrace => write!(f, "'{{'"),
            Tok::RBrace => write!(f, "'}}'"),
            Tok::Comma => write!(f, "','"),
            Tok::Eof => write!(f, "end of expression"),
        }
    }
}

#[derive(Clone, Debug)]
struct Token {
    tok: Tok,
    pos: usize,
}

fn is_name_byte(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c == b'.' || c == b'-'
}

fn is_word_byte(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c == b'.' || c == b':'
}

fn lex_error(pos: usize, message: impl Into<String>) -> ParseError {
    ParseError {
        pos,
        message: message.into(),
    }
}

fn lex(text: &str) -> Result<Vec<Token>, ParseError> {
    let b = text.as_bytes();
    let mut i = 0;
    let mut out = Vec::new();
    let next_is = |i: usize, c: u8| b.get(i + 1) == Some(&c);
    while i < b.len() {
        let c = b[i];
        if c.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        let start = i;
        let tok = match c {
            b'(' | b')' | b'{' | b'}' | b',' => {
                i += 1;
                match c {
                    b'(' => Tok::LParen,
                    b')' => Tok::RParen,
                    b'{' => Tok::LBrace,
                    b'}' => Tok::RBrace,
                    _ => Tok::Comma,
                }
            }
            b'=' | b'!' | b'<' | b'>' => {
                let eq = next_is(i, b'=');
                i += if eq { 2 } else { 1 };
                match (c, eq) {
                    (b'=', true) => Tok::Rel(Rel::Eq),
                    (b'=', false) => Tok::Assign,
                    (b'!', true) => Tok::Rel(Rel::Ne),
                    (b'!', false) => Tok::Not,
                    (b'<', true) => Tok::Rel(Rel::Le),
                    (b'<', false) => Tok::Rel(Rel::Lt),
                    (_, true) => Tok::Rel(Rel::Ge),
                    (_, false) => Tok::Rel(Rel::Gt),
                }
            }
            b'&' | b'|' => {
                if !next_is(i, c) {
                    let op = if c == b'&' { "&&" } else { "||" };
                    return Err(lex_error(
                        i,
                        format!("expected '{op}', found '{}'", c as char),
                    ));
                }
                i += 2;
                if c == b'&' {
                    Tok::AndAnd
                } else {
                    Tok::OrOr
                }
            }
            b'@' | b'$' => {
                i += 1;
                let name_start = i;
                while i < b.len() && is_name_byte(b[i]) {
                    i += 1;
                }
                let name = text[name_start..i].to_string();
                let what = if c == b'@' {
                    "port group"
                } else {
                    "address set"
                };
                if name.is_empty() {
                    return Err(lex_error(
                        start,
                        format!("expected a {what} name after '{}'", c as char),
                    ));
                }
                if c == b'@' {
                    Tok::Group(name)
                } else {
                    Tok::Set(name)
                }
            }
            b'"' => {
                i += 1;
                let mut s = String::new();
                loop {
                    let Some(ch) = text[i..].chars().next() else {
                        return Err(lex_error(start, "unterminated string"));
                    };
                    i += ch.len_utf8();
                    match ch {
                        '"' => break,
                        '\\' => {
                            let Some(esc) = text[i..].chars().next() else {
                                return Err(lex_error(start, "unterminated string"));
                            };
                            i += esc.len_utf8();
                            s.push(esc);
                        }
                        _ => s.push(ch),
                    }
                }
                Tok::Str(s)
            }
            c if is_word_byte(c) => {
                while i < b.len() && is_word_byte(b[i]) {
                    i += 1;
                }
                let word = &text[start..i];
                let first = word.as_bytes()[0];
                if word.contains(':') || (first.is_ascii_digit() && word.contains('.')) {
                    // An address, optionally followed by /len or /mask.
                    let mut full_end = i;
                    if b.get(i) == Some(&b'/') {
                        full_end = i + 1;
                        while full_end < b.len() && is_word_byte(b[full_end]) {
                            full_end += 1;
                        }
                    }
                    let net_text = &text[start..full_end];
                    i = full_end;
                    match net_text.parse::<IpNet>() {
                        Ok(n) => Tok::Net(n),
                        Err(e) => {
                            return Err(lex_error(
                                start,
                                format!("invalid address or prefix '{net_text}': {}", e.reason),
                            ))
                        }
                    }
                } else if first.is_ascii_digit() {
                    let parsed = match word.strip_prefix("0x").or_else(|| word.strip_prefix("0X")) {
                        Some(hex) => u64::from_str_radix(hex, 16),
                        None => word.parse::<u64>(),
                    };
                    match parsed {
                        Ok(n) => Tok::Num(n),
                        Err(_) => return Err(lex_error(start, format!("invalid number '{word}'"))),
                    }
                } else {
                    Tok::Ident(word.to_string())
                }
            }
            _ => {
                let ch = text[i..].chars().next().unwrap_or('?');
                return Err(lex_error(i, format!("unexpected character '{ch}'")));
            }
        };
        out.push(Token { tok, pos: start });
    }
    out.push(Token {
        tok: Tok::Eof,
        pos: text.len(),
    });
    Ok(out)
}

// ---------------------------------------------------------------------------------------
// Parser

#[derive(Clone, Copy, Debug)]
enum Field {
    Port(PortField),
    Addr(IpVersion, Side),
    L4(L4Proto, Side),
    Icmp(IpVersion, IcmpField),
    Proto,
}

impl Field {
    fn lookup(name: &str) -> Option<Field> {
        use IpVersion::{V4, V6};
        Some(match name {
            "inport" => Field::Port(PortField::In),
            "outport" => Field::Port(PortField::Out),
            "ip4.src" => Field::Addr(V4, Side::Src),
            "ip4.dst" => Field::Addr(V4, Side::Dst),
            "ip6.src" => Field::Addr(V6, Side::Src),
            "ip6.dst" => Field::Addr(V6, Side::Dst),
            "tcp.src" => Field::L4(L4Proto::Tcp, Side::Src),
            "tcp.dst" => Field::L4(L4Proto::Tcp, Side::Dst),
            "udp.src" => Field::L4(L4Proto::Udp, Side::Src),
            "udp.dst" => Field::L4(L4Proto::Udp, Side::Dst),
            "sctp.src" => Field::L4(L4Proto::Sctp, Side::Src),
            "sctp.dst" => Field::L4(L4Proto::Sctp, Side::Dst),
            "icmp4.type" => Field::Icmp(V4, IcmpField::Type),
            "icmp4.code" => Field::Icmp(V4, IcmpField::Code),
            "icmp6.type" => Field::Icmp(V6, IcmpField::Type),
            "icmp6.code" => Field::Icmp(V6, IcmpField::Code),
            "ip.proto" => Field::Proto,
            _ => return None,
        })
    }

    fn is_ordinal(self) -> bool {
        matches!(self, Field::L4(..) | Field::Icmp(..) | Field::Proto)
    }

    /// Largest value and a noun for the constants of an ordinal field.
    fn ordinal_range(self) -> (u64, &'static str) {
        match self {
            Field::L4(..) => (65535, "port number"),
            Field::Icmp(_, IcmpField::Type) => (255, "ICMP type"),
            Field::Icmp(_, IcmpField::Code) => (255, "ICMP code"),
            _ => (255, "IP protocol number"),
        }
    }
}

fn predicate(name: &str) -> Option<MatchExpr> {
    let version = |v| MatchExpr::Atom(Atom::Version(v));
    let proto = |p| MatchExpr::Atom(Atom::Proto(Cmp::In(vec![p])));
    let icmp = |v| MatchExpr::and(vec![version(v), proto(icmp_proto(v))]);
    // OVN's `nd*` predicates: ICMPv6 of these types with code 0 (OVN also requires hop
    // limit 255, which the classifier does not see).
    let nd = |types: &[u8]| {
        MatchExpr::and(vec![
            icmp(IpVersion::V6),
            MatchExpr::Atom(Atom::Icmp {
                version: IpVersion::V6,
                field: IcmpField::Type,
                cmp: Cmp::In(types.to_vec()),
            }),
            MatchExpr::Atom(Atom::Icmp {
                version: IpVersion::V6,
                field: IcmpField::Code,
                cmp: Cmp::In(vec![0]),
            }),
        ])
    };
    Some(match name {
        "ip" => MatchExpr::Const(true),
        "ip4" => version(IpVersion::V4),
        "ip6" => version(IpVersion::V6),
        "tcp" => proto(6),
        "udp" => proto(17),
        "sctp" => proto(132),
        "icmp4" => icmp(IpVersion::V4),
        "icmp6" => icmp(IpVersion::V6),
        "icmp" => MatchExpr::or(vec![icmp(IpVersion::V4), icmp(IpVersion::V6)]),
        // Non-IP traffic never reaches the ACL stage, so no classified packet is ARP.
        "arp" | "rarp" => MatchExpr::Const(false),
        "nd" => nd(&[135, 136]),
        "nd_ns" => nd(&[135]),
        "nd_na" => nd(&[136]),
        "nd_rs" => nd(&[133]),
        "nd_ra" => nd(&[134]),
        _ => return None,
    })
}

const SUPPORTED: &str = "inport, outport, ip, ip4, ip6, tcp, udp, sctp, icmp, icmp4, icmp6, arp, \
rarp, nd, nd_ns, nd_na, nd_rs, nd_ra, ip.proto, \
ip4.src, ip4.dst, ip6.src, ip6.dst, tcp.src, tcp.dst, udp.src, udp.dst, sctp.src, sctp.dst, \
icmp4.type, icmp4.code, \
icmp6.type, icmp6.code";

struct Parser<'a> {
    tokens: Vec<Token>,
    i: usize,
    names: &'a dyn NameResolver,
}

impl<'a> Parser<'a> {
    fn peek(&self) -> Token {
        self.tokens[self.i.min(self.tokens.len() - 1)].clone()
    }

    fn peek_at(&self, k: usize) -> &Tok {
        &self.tokens[(self.i + k).min(self.tokens.len() - 1)].tok
    }

    fn bump(&mut self) -> Token {
        let t = self.peek();
        if self.i < self.tokens.len() - 1 {
            self.i += 1;
        }
        t
    }

    fn error_at(&self, pos: usize, message: impl Into<String>) -> ParseError {
        ParseError {
            pos,
            message: message.into(),
        }
    }

    /// expr := unary (('&&' unary)+ | ('||' unary)+)?
    fn parse_expr(&mut self) -> Result<MatchExpr, ParseError> {
        let (first, _) = self.parse_unary()?;
        let op = self.peek().tok;
        if op != Tok::AndAnd && op != Tok::OrOr {
            return Ok(first);
        }
        let mut items = vec![first];
        while self.peek().tok == op {
            self.bump();
            items.push(self.parse_unary()?.0);
        }
        let t = self.peek();
        if t.tok == Tok::AndAnd || t.tok == Tok::OrOr {
            return Err(self.error_at(
                t.pos,
                "'&&' and '||' must be parenthesized when used together",
            ));
        }
        Ok(if op == Tok::AndAnd {
            MatchExpr::and(items)
        } else {
            MatchExpr::or(items)
        })
    }

    /// unary := '!' unary | primary. Returns whether the result is "atomic" (a
    /// parenthesised expression, predicate or constant), which `!` requires.
    fn parse_unary(&mut self) -> Result<(MatchExpr, bool), ParseError> {
        if self.peek().tok == Tok::Not {
            self.bump();
            let operand_pos = self.peek().pos;
            let (e, atomic) = self.parse_unary()?;
            if !atomic {
                return Err(self.error_at(
                    operand_pos,
                    "missing parentheses around operand of '!' (write '!(field == value)')",
                ));
            }
            return Ok((e.negate(), true));
        }
        self.parse_primary()
    }

    fn parse_primary(&mut self) -> Result<(MatchExpr, bool), ParseError> {
        let t = self.bump();
        match t.tok {
            Tok::LParen => {
                let e = self.parse_expr()?;
                let close = self.bump();
                if close.tok != Tok::RParen {
                    return Err(self.error_at(
                        close.pos,
                        format!(
                            "expected ')' to close '(' at {}, found {}",
                            t.pos, close.tok
                        ),
                    ));
                }
                Ok((e, true))
            }
            Tok::Ident(name) => {
                if let Some(e) = predicate(&name) {
                    if let Tok::Rel(r) = self.peek_at(0) {
                        let r = *r;
                        return Err(self.error_at(
                            self.peek().pos,
                            format!(
                                "'{name}' is a predicate and cannot be compared with '{}'",
                                r.text()
                            ),
                        ));
                    }
                    return Ok((e, true));
                }
                let Some(field) = Field::lookup(&name) else {
                    return Err(self.error_at(
                        t.pos,
                        format!("unknown or unsupported field '{name}' (supported: {SUPPORTED})"),
                    ));
                };
                let rel = self.parse_rel(&name, field)?;
                Ok((self.parse_comparison(&name, field, rel)?, false))
            }
            Tok::Num(n) if !matches!(self.peek_at(0), Tok::Rel(_)) && n <= 1 => {
                Ok((MatchExpr::Const(n == 1), true))
            }
            Tok::Num(n) => Ok((self.parse_constant_first(t.pos, n)?, false)),
            other => Err(self.error_at(
                t.pos,
                format!("expected a field, a predicate, '(' or '!', found {other}"),
            )),
        }
    }

    fn parse_rel(&mut self, name: &str, field: Field) -> Result<Rel, ParseError> {
        let t = self.bump();
        let ordinal = field.is_ordinal();
        match t.tok {
            Tok::Rel(r) if ordinal || r == Rel::Eq || r == Rel::Ne => Ok(r),
            Tok::Rel(r) => Err(self.error_at(
                t.pos,
                format!("only '==' and '!=' can be used with '{name}', found '{}'", r.text()),
            )),
            other if ordinal => Err(self.error_at(
                t.pos,
                format!("expected a comparison operator ('==', '!=', '<', '<=', '>', '>=') after '{name}', found {other}"),
            )),
            other => Err(self.error_at(t.pos, format!("expected '==' or '!=' after '{name}', found {other}"))),
        }
    }

    /// `item` or `{item, item ...}` (commas optional, as in OVN; at least one item).
    fn parse_list<T>(
        &mut self,
        mut item: impl FnMut(&mut Self) -> Result<T, ParseError>,
    ) -> Result<(Vec<T>, bool), ParseError> {
        if self.peek().tok != Tok::LBrace {
            return Ok((vec![item(self)?], false));
        }
        self.bump();
        let mut out = vec![item(self)?];
        loop {
            if self.peek().tok == Tok::Comma {
                self.bump();
            }
            if self.peek().tok == Tok::RBrace {
                self.bump();
                return Ok((out, true));
            }
            if self.peek().tok == Tok::Eof {
                let t = self.peek();
                return Err(self.error_at(t.pos, "expected ',' or '}', found end of expression"));
            }
            out.push(item(self)?);
        }
    }

    fn parse_number(&mut self, name: &str, field: Field) -> Result<u64, ParseError> {
        let (max, noun) = field.ordinal_range();
        let t = self.bump();
        match t.tok {
            Tok::Num(n) if n <= max => Ok(n),
            Tok::Num(n) => Err(self.error_at(t.pos, format!("{noun} {n} for '{name}' is out of range 0..={max}"))),
            Tok::Set(s) => Err(self.error_at(
                t.pos,
                format!("address set '${s}' can only be compared with ip4/ip6 address fields, not '{name}'"),
            )),
            other => Err(self.error_at(t.pos, format!("expected a {noun} for '{name}', found {other}"))),
        }
    }

    fn parse_comparison(
        &mut self,
        name: &str,
        field: Field,
        rel: Rel,
    ) -> Result<MatchExpr, ParseError> {
        match field {
            Field::Port(pf) => {
                let (ports, _) = self.parse_list(|p| {
                    let t = p.bump();
                    match t.tok {
                        Tok::Group(g) => {
                            if p.names.has_port_group(&g) {
                                Ok(PortName::Group(g))
                            } else {
                                Err(p.error_at(t.pos, format!("unknown port group '@{g}'")))
                            }
                        }
                        Tok::Str(s) if !s.is_empty() => Ok(PortName::Named(s)),
                        other => Err(p.error_at(
                            t.pos,
                            format!("expected @port_group or \"port name\" after '{name} {}', found {other}", rel.text()),
                        )),
                    }
                })?;
                let negated = rel == Rel::Ne;
                let atoms = ports
                    .into_iter()
                    .map(|port| {
                        MatchExpr::Atom(Atom::Port {
                            field: pf,
                            negated,
                            port,
                        })
                    })
                    .collect();
                // `== {a, b}` is a || b; `!= {a, b}` is "neither": !a && !b.
                Ok(if negated {
                    MatchExpr::and(atoms)
                } else {
                    MatchExpr::or(atoms)
                })
            }
            Field::Addr(version, side) => {
                let (items, _) = self.parse_list(|p| {
                    let t = p.bump();
                    match t.tok {
                        Tok::Net(n) if n.version() == version => Ok(AddrItem::Net(n)),
                        Tok::Net(n) => Err(p.error_at(
                            t.pos,
                            format!("'{name}' needs an {} address, found address {n}", if version == IpVersion::V4 { "IPv4" } else { "IPv6" }),
                        )),
                        Tok::Set(s) => {
                            if p.names.has_address_set(&s) {
                                Ok(AddrItem::Set(s))
                            } else {
                                Err(p.error_at(t.pos, format!("unknown address set '${s}'")))
                            }
                        }
                        other => Err(p.error_at(
                            t.pos,
                            format!("expected an address, a prefix or $address_set for '{name}', found {other}"),
                        )),
                    }
                })?;
                Ok(MatchExpr::Atom(Atom::Addr {
                    version,
                    side,
                    negated: rel == Rel::Ne,
                    items,
                }))
            }
            Field::L4(..) | Field::Icmp(..) | Field::Proto => {
                let cmp = match rel {
                    Rel::Eq | Rel::Ne => {
                        let (values, _) = self.parse_list(|p| p.parse_number(name, field))?;
                        if rel == Rel::Eq {
                            Cmp::In(values)
                        } else {
                            Cmp::NotIn(values)
                        }
                    }
                    _ => {
                        if self.peek().tok == Tok::LBrace {
                            let t = self.peek();
                            return Err(self.error_at(
                                t.pos,
                                format!(
                                    "only '==' and '!=' can compare '{name}' with a set of values"
                                ),
                            ));
                        }
                        let v = self.parse_number(name, field)?;
                        ordinal_cmp(rel, v)
                    }
                };
                Ok(ordinal_atom(field, cmp))
            }
        }
    }

    /// `c OP field` or `c1 OP1 field OP2 c2` (both `<`/`<=` or both `>`/`>=`).
    fn parse_constant_first(&mut self, pos: usize, c1: u64) -> Result<MatchExpr, ParseError> {
        let Tok::Rel(r1) = self.bump().tok else {
            return Err(self.error_at(pos, "expected a comparison after a number"));
        };
        let ft = self.bump();
        let field_and_name = match &ft.tok {
            Tok::Ident(name) => Field::lookup(name)
                .filter(|f| f.is_ordinal())
                .map(|f| (f, name.clone())),
            _ => None,
        };
        let Some((field, name)) = field_and_name else {
            return Err(self.error_at(
                ft.pos,
                format!(
                    "expected a port, ICMP or ip.proto field after '{}', found {}",
                    r1.text(),
                    ft.tok
                ),
            ));
        };
        let (max, noun) = field.ordinal_range();
        if c1 > max {
            return Err(self.error_at(
                pos,
                format!("{noun} {c1} for '{name}' is out of range 0..={max}"),
            ));
        }
        let first = ordinal_atom(field, ordinal_cmp(r1.turn(), c1));
        let Tok::Rel(r2) = *self.peek_at(0) else {
            return Ok(first);
        };
        let r2_pos = self.bump().pos;
        let lower = |r: Rel| matches!(r, Rel::Lt | Rel::Le);
        let upper = |r: Rel| matches!(r, Rel::Gt | Rel::Ge);
        if !((lower(r1) && lower(r2)) || (upper(r1) && upper(r2))) {
            return Err(self.error_at(
                r2_pos,
                "range expressions must have the form 'x < field < y' or 'x > field > y' (each '<' may be '<=', each '>' may be '>=')",
            ));
        }
        let c2 = self.parse_number(&name, field)?;
        Ok(MatchExpr::and(vec![
            first,
            ordinal_atom(field, ordinal_cmp(r2, c2)),
        ]))
    }
}

fn ordinal_cmp(rel: Rel, v: u64) -> Cmp<u64> {
    match rel {
        Rel::Eq => Cmp::In(vec![v]),
        Rel::Ne => Cmp::NotIn(vec![v]),
        Rel::Lt => Cmp::Lt(v),
        Rel::Le => Cmp::Le(v),
        Rel::Gt => Cmp::Gt(v),
        Rel::Ge => Cmp::Ge(v),
    }
}

/// Values were range-checked by the parser, so the narrowing casts are exact.
fn ordinal_atom(field: Field, cmp: Cmp<u64>) -> MatchExpr {
    MatchExpr::Atom(match field {
        Field::L4(proto, side) => Atom::L4Port {
            proto,
            side,
            cmp: cmp.map(|v| v as u16),
        },
        Field::Icmp(version, f) => Atom::Icmp {
            version,
            field: f,
            cmp: cmp.map(|v| v as u8),
        },
        _ => Atom::Proto(cmp.map(|v| v as u8)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> MatchExpr {
        parse(s).unwrap_or_else(|e| panic!("{}", e.render(s)))
    }

    fn err(s: &str) -> ParseError {
        parse(s).expect_err(s)
    }

    #[test]
    fn parses_the_three_tier_rule() {
        let e = p("outport == @pg_DB && ip4 && ip4.src == $pg_BA_ip4 && tcp.dst == 5432");
        let MatchExpr::And(items) = &e else {
            panic!("{e:?}")
        };
        assert_eq!(items.len(), 4);
        assert_eq!(
            e.address_sets().into_iter().collect::<Vec<_>>(),
            vec!["pg_BA_ip4"]
        );
        assert_eq!(
            e.port_groups().into_iter().collect::<Vec<_>>(),
            vec!["pg_DB"]
        );
        assert!(e.uses_port_field(PortField::Out));
        assert!(!e.uses_port_field(PortField::In));
        assert_eq!(
            e.to_string(),
            "outport == @pg_DB && ip4 && ip4.src == $pg_BA_ip4 && tcp.dst == 5432"
        );
    }

    #[test]
    fn error_positions_and_messages() {
        let e = err("outport == @pg_DB && ip4.src = $x");
        assert_eq!(e.pos, 29);
        assert_eq!(
            e.to_string(),
            "at 29: expected '==' or '!=' after 'ip4.src', found '='"
        );
        assert!(e
            .render("outport == @pg_DB && ip4.src = $x")
            .ends_with(&format!("{}^", " ".repeat(29))));

        let e = err("tcp.dst = 80");
        assert!(
            e.message.starts_with("expected a comparison operator"),
            "{e}"
        );
        assert_eq!(
            err("tcp.dst == 70000").to_string(),
            "at 11: port number 70000 for 'tcp.dst' is out of range 0..=65535"
        );
        assert_eq!(err("ip4.src == 2001::1").pos, 11);
        assert!(err("ip4.src < 10.0.0.1")
            .message
            .contains("only '==' and '!='"));
        assert!(err("tcp && udp || ip4")
            .message
            .contains("must be parenthesized"));
        assert_eq!(err("tcp && udp || ip4").pos, 11);
        assert!(err("!tcp.dst == 80")
            .message
            .contains("missing parentheses"));
        assert!(err("eth.src == 1")
            .message
            .contains("unknown or unsupported field 'eth.src'"));
        assert!(err("(tcp").message.contains("expected ')'"));
        assert!(err("tcp &").message.contains("expected '&&'"));
        assert!(err("tcp == 6").message.contains("predicate"));
        assert!(err("ip4.src == 10.0.0.0/33")
            .message
            .contains("invalid address"));
        assert!(err("tcp.dst == {}")
            .message
            .contains("expected a port number"));
        assert!(err("tcp.dst < {1, 2}").message.contains("set of values"));
        assert!(err("tcp.dst == $s")
            .message
            .contains("address set '$s' can only"));
        assert!(err("5 < tcp.dst > 7").message.contains("range expressions"));
        assert!(err("ip4 ip6")
            .message
            .contains("expected '&&', '||' or end"));
        assert!(err("inport == web0")
            .message
            .contains("expected @port_group"));
    }

    #[test]
    fn unknown_names_are_errors_with_the_name() {
        struct Names;
        impl NameResolver for Names {
            fn has_port_group(&self, n: &str) -> bool {
                n == "pg"
            }
            fn has_address_set(&self, n: &str) -> bool {
                n == "as"
            }
        }
        let e = parse_with("inport == @pg && ip4.src == {$as, $nope}", &Names).unwrap_err();
        assert_eq!(e.to_string(), "at 34: unknown address set '$nope'");
        let e = parse_with("inport == @pgx", &Names).unwrap_err();
        assert_eq!(e.to_string(), "at 10: unknown port group '@pgx'");
    }

    #[test]
    fn negation_keeps_prerequisites() {
        let e = p("!(tcp.dst == 80)");
        assert_eq!(
            e,
            MatchExpr::Atom(Atom::L4Port {
                proto: L4Proto::Tcp,
                side: Side::Dst,
                cmp: Cmp::NotIn(vec![80])
            })
        );
        assert_eq!(p("!tcp").to_string(), "ip.proto != 6");
        assert_eq!(p("!icmp4").to_string(), "ip6 || ip.proto != 1");
        assert_eq!(
            p("!(tcp.dst >= 1000 && tcp.dst <= 2000)").to_string(),
            "tcp.dst < 1000 || tcp.dst > 2000"
        );
        assert_eq!(p("!ip"), MatchExpr::Const(false));
        assert_eq!(p("!!ip4"), p("ip4"));
        assert_eq!(
            p("!(inport == {@a, \"b\"})").to_string(),
            "inport != @a && inport != \"b\""
        );
        assert_eq!(
            p("inport != {@a, @b}").to_string(),
            "inport != @a && inport != @b"
        );
        assert_eq!(
            p("ip4.src != {10.0.0.0/8, $x}").to_string(),
            "ip4.src != {10.0.0.0/8, $x}"
        );
    }

    #[test]
    fn ranges_and_constants() {
        assert_eq!(
            p("1000 <= tcp.dst <= 2000"),
            p("tcp.dst >= 1000 && tcp.dst <= 2000")
        );
        assert_eq!(p("80 == udp.src"), p("udp.src == 80"));
        assert_eq!(p("1"), MatchExpr::Const(true));
        assert_eq!(p("0 || tcp"), p("tcp"));
        assert_eq!(p("ip.proto == 0x11"), p("ip.proto == 17"));
        assert_eq!(p("icmp4.type == {0 8}"), p("icmp4.type == {0, 8}"));
        assert_eq!(
            p("ip4.src == 10.0.0.0/255.0.0.0").to_string(),
            "ip4.src == 10.0.0.0/8"
        );
        assert_eq!(
            p("ip6.dst == {fe80::/10, ::1}").to_string(),
            "ip6.dst == {fe80::/10, ::1}"
        );
        assert_eq!(
            p("icmp").to_string(),
            "(ip4 && ip.proto == 1) || (ip6 && ip.proto == 58)"
        );
        assert_eq!(
            p("inport == \"we\\\"b0\"").to_string(),
            "inport == \"we\\\"b0\""
        );
    }

    /// The match strings Neutron and ovn-kubernetes write, spaces or not.
    #[test]
    fn ovn_writers_match_styles() {
        assert_eq!(
            p("ip4.src == {$a1, $a2} && tcp && tcp.dst==80 && outport == @a123"),
            p("ip4.src == {$a1, $a2} && tcp && tcp.dst == 80 && outport == @a123")
        );
        assert_eq!(
            p("1024<=tcp.dst<=2048"),
            p("tcp.dst >= 1024 && tcp.dst <= 2048")
        );
        assert_eq!(p("tcp.dst=={80,443}"), p("tcp.dst == {80, 443}"));
        assert_eq!(
            p("outport == @pg_ab_cd && ip4 && ip4.src == $pg_ef_gh_ip4 && tcp && tcp.dst == 22")
                .to_string(),
            "outport == @pg_ab_cd && ip4 && ip4.src == $pg_ef_gh_ip4 && ip.proto == 6 && tcp.dst == 22"
        );
        assert_eq!(
            p("inport == \"0b4c3a1e-7d1f-4c5e-9a0b-1c2d3e4f5a6b\" && ip").to_string(),
            "inport == \"0b4c3a1e-7d1f-4c5e-9a0b-1c2d3e4f5a6b\""
        );
        // ovn-kubernetes's default-deny companion: ARP never reaches the stage, ND is ICMPv6.
        assert_eq!(
            p("inport == @a1 && (arp || nd)"),
            p("inport == @a1 && icmp6 && icmp6.type == {135, 136} && icmp6.code == 0")
        );
        assert_eq!(p("arp"), MatchExpr::Const(false));
        assert!(err("ct.est && ip4")
            .message
            .contains("unsupported field 'ct.est'"));
    }

    proptest::proptest! {
        /// Arbitrary token soup never panics, and whatever parses re-parses from its
        /// Display to the same tree.
        #[test]
        fn parser_never_panics(parts in proptest::collection::vec(proptest::sample::select(vec![
            "ip4", "tcp", "icmp6", "ip4.src", "tcp.dst", "icmp4.type", "ip.proto", "inport", "outport",
            "==", "!=", "<", "<=", ">=", "=", "!", "&&", "||", "&", "(", ")", "{", "}", ",",
            "10.0.0.0/8", "10.0.0.1", "2001:db8::/32", "::1", "80", "0", "1", "70000", "0x11",
            "@pg", "$as", "\"p0\"", "\"", "é", "$", "1.2.3", ":::",
        ]), 0..12), s in "\\PC{0,20}") {
            let text = parts.join(" ");
            for t in [text.as_str(), s.as_str()] {
                match parse(t) {
                    Ok(e) => proptest::prop_assert_eq!(parse(&e.to_string()), Ok(e)),
                    Err(err) => {
                        proptest::prop_assert!(err.pos <= t.len());
                        let _ = err.render(t);
                    }
                }
            }
        }
    }

    #[test]
    fn display_round_trips() {
        for s in [
            "outport == @pg_DB && ip4 && ip4.src == $pg_BA_ip4 && tcp.dst == 5432",
            "(tcp.dst == {80, 443} || udp.dst == 53) && !(ip4.dst == 10.0.0.0/8)",
            "inport == \"web0\" && (icmp4.type == 8 || icmp6.type != {128, 129})",
            "!(ip.proto < 17 || (ip6 && ip6.src == 2001:db8::/32))",
            "1000 <= udp.src <= 2000 || 0",
        ] {
            let e = p(s);
            assert_eq!(p(&e.to_string()), e, "{s} -> {e}");
        }
    }
}
