//! A small IP prefix type ([`IpNet`]) and the interval arithmetic the expansion uses
//! (prefix sets, complements, range-to-prefix decomposition).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// IP address family of a packet, prefix or flat rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum IpVersion {
    /// IPv4 (OVN `ip4`).
    #[serde(rename = "ip4")]
    V4,
    /// IPv6 (OVN `ip6`).
    #[serde(rename = "ip6")]
    V6,
}

impl IpVersion {
    /// Both families, IPv4 first.
    pub const ALL: [IpVersion; 2] = [IpVersion::V4, IpVersion::V6];

    /// Address width in bits (32 or 128).
    pub fn bits(self) -> u32 {
        match self {
            IpVersion::V4 => 32,
            IpVersion::V6 => 128,
        }
    }

    /// The family of an address.
    pub fn of(addr: &IpAddr) -> IpVersion {
        match addr {
            IpAddr::V4(_) => IpVersion::V4,
            IpAddr::V6(_) => IpVersion::V6,
        }
    }

    /// The largest address of the family as an integer.
    pub fn max_value(self) -> u128 {
        match self {
            IpVersion::V4 => u32::MAX as u128,
            IpVersion::V6 => u128::MAX,
        }
    }

    /// The OVN spelling: `ip4` or `ip6`.
    pub fn ovn_name(self) -> &'static str {
        match self {
            IpVersion::V4 => "ip4",
            IpVersion::V6 => "ip6",
        }
    }
}

/// Error from parsing or building an [`IpNet`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid address or prefix '{input}': {reason}")]
pub struct NetError {
    /// The text (or rendering) that was refused.
    pub input: String,
    /// Why it was refused.
    pub reason: String,
}

/// An IPv4 or IPv6 prefix in canonical form: host bits are always zero.
///
/// Parsed from `a.b.c.d`, `a.b.c.d/len`, an IPv6 address, or `v6addr/len`; an address
/// without a length is a host prefix (`/32`, `/128`). Host bits given in the text are
/// cleared (`10.0.2.5/24` becomes `10.0.2.0/24`), as OVN does.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IpNet {
    addr: IpAddr,
    len: u8,
}

/// The mask of a `len`-bit prefix in a `bits`-wide address, as an integer.
pub(crate) fn prefix_mask(len: u32, bits: u32) -> u128 {
    debug_assert!(len <= bits && bits <= 128);
    if len == 0 {
        return 0;
    }
    let all = if bits == 128 {
        u128::MAX
    } else {
        (1u128 << bits) - 1
    };
    let host = if bits - len == 128 {
        u128::MAX
    } else {
        (1u128 << (bits - len)) - 1
    };
    all & !host
}

/// An address as an integer (IPv4 in the low 32 bits).
pub(crate) fn addr_bits(addr: &IpAddr) -> u128 {
    match addr {
        IpAddr::V4(a) => u32::from(*a) as u128,
        IpAddr::V6(a) => u128::from(*a),
    }
}

fn addr_from_bits(version: IpVersion, value: u128) -> IpAddr {
    match version {
        IpVersion::V4 => IpAddr::V4(Ipv4Addr::from(value as u32)),
        IpVersion::V6 => IpAddr::V6(Ipv6Addr::from(value)),
    }
}

impl IpNet {
    /// A prefix of `len` bits; host bits of `addr` are cleared. Fails if `len` exceeds
    /// the address width.
    pub fn new(addr: IpAddr, len: u8) -> Result<IpNet, NetError> {
        let version = IpVersion::of(&addr);
        if u32::from(len) > version.bits() {
            return Err(NetError {
                input: format!("{addr}/{len}"),
                reason: format!("prefix length {len} is longer than {}", version.bits()),
            });
        }
        let value = addr_bits(&addr) & prefix_mask(u32::from(len), version.bits());
        Ok(IpNet {
            addr: addr_from_bits(version, value),
            len,
        })
    }

    /// The host prefix of one address (`/32` or `/128`).
    pub fn host(addr: IpAddr) -> IpNet {
        IpNet {
            addr,
            len: IpVersion::of(&addr).bits() as u8,
        }
    }

    /// The prefix matching every address of a family (`0.0.0.0/0` or `::/0`).
    pub fn any(version: IpVersion) -> IpNet {
        IpNet {
            addr: addr_from_bits(version, 0),
            len: 0,
        }
    }

    /// Builds a prefix from an integer value (host bits are cleared).
    pub fn from_bits(version: IpVersion, value: u128, len: u8) -> Result<IpNet, NetError> {
        IpNet::new(addr_from_bits(version, value & version.max_value()), len)
    }

    /// The network address (host bits zero).
    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    /// The prefix length in bits.
    pub fn prefix_len(&self) -> u8 {
        self.len
    }

    /// The address family.
    pub fn version(&self) -> IpVersion {
        IpVersion::of(&self.addr)
    }

    /// True for `/0`: every address of the family.
    pub fn is_any(&self) -> bool {
        self.len == 0
    }

    /// True for a single address (`/32`, `/128`).
    pub fn is_host(&self) -> bool {
        u32::from(self.len) == self.version().bits()
    }

    /// The network mask as an integer (IPv4 in the low 32 bits), as rte_acl's
    /// mask fields want it.
    pub fn mask_bits(&self) -> u128 {
        prefix_mask(u32::from(self.len), self.version().bits())
    }

    /// First and last address covered, as integers (inclusive).
    pub fn range(&self) -> (u128, u128) {
        let lo = addr_bits(&self.addr);
        let hi = lo | (!self.mask_bits() & self.version().max_value());
        (lo, hi)
    }

    /// True if `addr` is of the same family and inside the prefix.
    pub fn contains(&self, addr: &IpAddr) -> bool {
        IpVersion::of(addr) == self.version()
            && addr_bits(addr) & self.mask_bits() == addr_bits(&self.addr)
    }

    /// True if every address of `other` is inside `self` (same family only).
    pub fn contains_net(&self, other: &IpNet) -> bool {
        other.version() == self.version() && other.len >= self.len && self.contains(&other.addr)
    }
}

impl fmt::Display for IpNet {
    /// Host prefixes print as the bare address, others as `addr/len`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_host() {
            write!(f, "{}", self.addr)
        } else {
            write!(f, "{}/{}", self.addr, self.len)
        }
    }
}

impl fmt::Debug for IpNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

/// Converts a contiguous mask (`255.255.255.0`) to a prefix length.
pub(crate) fn mask_to_len(mask: &IpAddr) -> Option<u8> {
    let version = IpVersion::of(mask);
    let bits = addr_bits(mask);
    let len = (bits << (128 - version.bits())).leading_ones();
    (prefix_mask(len, version.bits()) == bits).then_some(len as u8)
}

impl FromStr for IpNet {
    type Err = NetError;

    fn from_str(s: &str) -> Result<IpNet, NetError> {
        let err = |reason: &str| NetError {
            input: s.to_string(),
            reason: reason.to_string(),
        };
        let (addr_text, len_text) = match s.split_once('/') {
            Some((a, l)) => (a, Some(l)),
            None => (s, None),
        };
        let addr: IpAddr = addr_text
            .trim()
            .parse()
            .map_err(|_| err("not an IPv4 or IPv6 address"))?;
        let Some(len_text) = len_text else {
            return Ok(IpNet::host(addr));
        };
        let len_text = len_text.trim();
        let len = if len_text.contains('.') || len_text.contains(':') {
            let mask: IpAddr = len_text.parse().map_err(|_| err("invalid mask"))?;
            if IpVersion::of(&mask) != IpVersion::of(&addr) {
                return Err(err("mask and address are of different families"));
            }
            mask_to_len(&mask).ok_or_else(|| err("non-contiguous masks are not supported"))?
        } else {
            len_text
                .parse::<u8>()
                .map_err(|_| err("invalid prefix length"))?
        };
        IpNet::new(addr, len).map_err(|e| NetError {
            input: s.to_string(),
            reason: e.reason,
        })
    }
}

impl Serialize for IpNet {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for IpNet {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<IpNet, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// A set of integers in `0..=max`, kept as sorted, disjoint, non-adjacent inclusive ranges.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Intervals {
    max: u128,
    ranges: Vec<(u128, u128)>,
}

impl Intervals {
    /// Every value in `0..=max`.
    pub(crate) fn full(max: u128) -> Intervals {
        Intervals {
            max,
            ranges: vec![(0, max)],
        }
    }

    /// No value.
    pub(crate) fn empty(max: u128) -> Intervals {
        Intervals {
            max,
            ranges: Vec::new(),
        }
    }

    /// The union of arbitrary inclusive ranges (clamped to `max`; `lo > hi` ignored).
    pub(crate) fn from_ranges(
        max: u128,
        ranges: impl IntoIterator<Item = (u128, u128)>,
    ) -> Intervals {
        let mut v: Vec<(u128, u128)> = ranges
            .into_iter()
            .filter(|&(lo, hi)| lo <= hi && lo <= max)
            .map(|(lo, hi)| (lo, hi.min(max)))
            .collect();
        v.sort_unstable();
        let mut out: Vec<(u128, u128)> = Vec::with_capacity(v.len());
        for (lo, hi) in v {
            match out.last_mut() {
                Some(last) if last.1 == u128::MAX || lo <= last.1 + 1 => last.1 = last.1.max(hi),
                _ => out.push((lo, hi)),
            }
        }
        Intervals { max, ranges: out }
    }

    /// The sorted disjoint ranges.
    pub(crate) fn ranges(&self) -> &[(u128, u128)] {
        &self.ranges
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    pub(crate) fn is_full(&self) -> bool {
        self.ranges == [(0, self.max)]
    }

    /// Values in both sets.
    pub(crate) fn intersect(&self, other: &Intervals) -> Intervals {
        if other.is_full() {
            return self.clone();
        }
        if self.is_full() {
            return other.clone();
        }
        let (mut i, mut j) = (0, 0);
        let mut out = Vec::new();
        while i < self.ranges.len() && j < other.ranges.len() {
            let (a_lo, a_hi) = self.ranges[i];
            let (b_lo, b_hi) = other.ranges[j];
            let lo = a_lo.max(b_lo);
            let hi = a_hi.min(b_hi);
            if lo <= hi {
                out.push((lo, hi));
            }
            if a_hi < b_hi {
                i += 1;
            } else {
                j += 1;
            }
        }
        Intervals {
            max: self.max.min(other.max),
            ranges: out,
        }
    }

    /// Values in `0..=max` not in the set.
    pub(crate) fn complement(&self) -> Intervals {
        let mut out = Vec::new();
        let mut next = Some(0u128);
        for &(lo, hi) in &self.ranges {
            if let Some(n) = next {
                if lo > n {
                    out.push((n, lo - 1));
                }
            }
            next = hi.checked_add(1);
        }
        if let Some(n) = next {
            if n <= self.max {
                out.push((n, self.max));
            }
        }
        Intervals {
            max: self.max,
            ranges: out,
        }
    }

    /// The minimal list of `(value, prefix_len)` prefixes of a `bits`-wide field
    /// covering exactly the set.
    pub(crate) fn to_prefixes(&self, bits: u32) -> Vec<(u128, u8)> {
        let mut out = Vec::new();
        for &(lo, hi) in &self.ranges {
            range_to_prefixes(lo, hi, bits, &mut out);
        }
        out
    }

    /// How many prefixes [`Intervals::to_prefixes`] would return, without building them.
    pub(crate) fn prefix_count(&self, bits: u32) -> u128 {
        let mut n = 0u128;
        for &(lo, hi) in &self.ranges {
            n += range_prefix_count(lo, hi, bits);
        }
        n
    }
}

/// `2^k - 1` without overflow for `k = 128`.
fn span(k: u32) -> u128 {
    if k >= 128 {
        u128::MAX
    } else {
        (1u128 << k) - 1
    }
}

/// Walks the largest aligned blocks covering `lo..=hi`, calling `f(value, k)` for a block
/// of `2^k` values starting at `value`.
fn for_each_block(mut lo: u128, hi: u128, bits: u32, mut f: impl FnMut(u128, u32)) {
    loop {
        let mut k = if lo == 0 {
            bits
        } else {
            lo.trailing_zeros().min(bits)
        };
        while k > 0 && span(k) > hi - lo {
            k -= 1;
        }
        f(lo, k);
        let end = lo + span(k);
        if end >= hi {
            break;
        }
        lo = end + 1;
    }
}

/// Appends the minimal prefix cover of `lo..=hi` (in a `bits`-wide field) to `out`.
pub(crate) fn range_to_prefixes(lo: u128, hi: u128, bits: u32, out: &mut Vec<(u128, u8)>) {
    for_each_block(lo, hi, bits, |value, k| out.push((value, (bits - k) as u8)));
}

fn range_prefix_count(lo: u128, hi: u128, bits: u32) -> u128 {
    let mut n = 0;
    for_each_block(lo, hi, bits, |_, _| n += 1);
    n
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    #[test]
    fn parse_and_canonicalise() {
        assert_eq!(net("10.0.2.5/24").to_string(), "10.0.2.0/24");
        assert_eq!(net("10.0.9.7").to_string(), "10.0.9.7");
        assert_eq!(net("10.0.9.7").prefix_len(), 32);
        assert_eq!(net("10.0.0.0/255.255.0.0"), net("10.0.0.0/16"));
        assert_eq!(net("2001:db8::1/32").to_string(), "2001:db8::/32");
        assert_eq!(net("::/0"), IpNet::any(IpVersion::V6));
        assert!("10.0.0.0/33".parse::<IpNet>().is_err());
        assert!("10.0.0.0/255.0.255.0"
            .parse::<IpNet>()
            .unwrap_err()
            .reason
            .contains("non-contiguous"));
        assert!("10.0.0".parse::<IpNet>().is_err());
        assert!("2001:db8::/129".parse::<IpNet>().is_err());
    }

    #[test]
    fn containment() {
        let n = net("10.0.2.0/24");
        assert!(n.contains(&"10.0.2.255".parse().unwrap()));
        assert!(!n.contains(&"10.0.3.0".parse().unwrap()));
        assert!(!n.contains(&"::1".parse().unwrap()));
        assert!(n.contains_net(&net("10.0.2.128/25")));
        assert!(!n.contains_net(&net("10.0.0.0/16")));
        assert!(IpNet::any(IpVersion::V4).contains(&"1.2.3.4".parse().unwrap()));
        assert!(IpNet::any(IpVersion::V6).contains(&"2001::1".parse().unwrap()));
        assert_eq!(n.range(), (0x0a00_0200, 0x0a00_02ff));
        assert_eq!(net("0.0.0.0/0").range(), (0, u32::MAX as u128));
        assert_eq!(net("::/0").range(), (0, u128::MAX));
    }

    #[test]
    fn intervals_basics() {
        let a = Intervals::from_ranges(255, [(10, 20), (21, 30), (50, 60)]);
        assert_eq!(a.ranges(), &[(10, 30), (50, 60)]);
        assert_eq!(a.complement().ranges(), &[(0, 9), (31, 49), (61, 255)]);
        let b = Intervals::from_ranges(255, [(25, 55)]);
        assert_eq!(a.intersect(&b).ranges(), &[(25, 30), (50, 55)]);
        assert!(Intervals::full(u128::MAX).complement().is_empty());
        assert!(Intervals::empty(u128::MAX).complement().is_full());
        assert_eq!(Intervals::full(u128::MAX).to_prefixes(128), vec![(0, 0)]);
        // Everything but 6 in a byte: 8 prefixes.
        let not6 = Intervals::from_ranges(255, [(6, 6)]).complement();
        assert_eq!(not6.to_prefixes(8).len(), 8, "one prefix per bit");
        assert_eq!(not6.prefix_count(8), 8);
    }

    proptest! {
        #[test]
        fn prefixes_cover_exactly(lo in 0u128..=300, len in 0u128..=300, probe in 0u128..=600) {
            let hi = lo + len;
            let set = Intervals::from_ranges(1023, [(lo, hi)]);
            let prefixes = set.to_prefixes(10);
            prop_assert_eq!(prefixes.len() as u128, set.prefix_count(10));
            let covered = prefixes.iter().filter(|&&(v, l)| {
                let m = prefix_mask(u32::from(l), 10);
                v & !m == 0 && probe & m == v
            }).count();
            prop_assert!(covered <= 1, "prefixes overlap");
            prop_assert_eq!(covered == 1, probe >= lo && probe <= hi);
        }

        #[test]
        fn ipnet_display_round_trips(a in any::<u32>(), l in 0u8..=32, b in any::<u128>(), m in 0u8..=128) {
            let n4 = IpNet::new(IpAddr::V4(Ipv4Addr::from(a)), l).unwrap();
            prop_assert_eq!(n4.to_string().parse::<IpNet>().unwrap(), n4);
            prop_assert!(n4.contains(&IpAddr::V4(Ipv4Addr::from(a))));
            let n6 = IpNet::new(IpAddr::V6(Ipv6Addr::from(b)), m).unwrap();
            prop_assert_eq!(n6.to_string().parse::<IpNet>().unwrap(), n6);
            prop_assert!(n6.contains(&IpAddr::V6(Ipv6Addr::from(b))));
        }
    }
}
