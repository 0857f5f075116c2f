//! Traffic shapes for the generators: frame-size patterns (single sizes, lists, IMIX),
//! mirrored (reply) frames for stateful DUTs, per-port flow specs (many 5-tuples towards a
//! VIP, a share of flows meant to be denied), in-place replies for a reflecting port, and
//! timestamped latency probes.

use std::net::Ipv4Addr;

/// Simple IMIX (7:4:1 of small, medium and large frames), frame bytes without FCS.
pub const IMIX: [(usize, usize); 3] = [(64, 7), (576, 4), (1500, 1)];

/// The largest frame the generators send (bytes without FCS; fits one 2 KiB mbuf).
pub const MAX_FRAME: usize = 1518;

/// The per-packet size sequence a `--size` spec stands for: `"64"`, `"64,512,1518"`
/// (round robin) or `"imix"` (7x64, 4x576, 1x1500, interleaved). Sizes are 60..=1518.
pub fn size_pattern(spec: &str) -> Result<Vec<usize>, String> {
    let spec = spec.trim();
    if spec.eq_ignore_ascii_case("imix") {
        // Interleave so that every window of 12 packets has the 7:4:1 mix.
        return Ok(vec![64, 576, 64, 64, 576, 64, 1500, 64, 576, 64, 64, 576]);
    }
    let mut v = Vec::new();
    for part in spec.split(',') {
        let n: usize = part
            .trim()
            .parse()
            .map_err(|_| format!("size {part:?}: not a number (or use imix)"))?;
        if !(60..=MAX_FRAME).contains(&n) {
            return Err(format!("size {n}: must be 60..={MAX_FRAME}"));
        }
        v.push(n);
    }
    if v.is_empty() {
        return Err("empty size list".into());
    }
    Ok(v)
}

/// Mean frame size of a pattern (bytes).
pub fn mean_size(pattern: &[usize]) -> f64 {
    pattern.iter().sum::<usize>() as f64 / pattern.len().max(1) as f64
}

/// The reply of an Ethernet/IPv4/UDP `frame`: MACs, IP addresses and UDP ports swapped.
/// The IPv4 header checksum does not change (the sum is commutative).
pub fn reply_frame(frame: &[u8]) -> Vec<u8> {
    let mut r = frame.to_vec();
    if r.len() < 38 {
        return r;
    }
    r[0..6].copy_from_slice(&frame[6..12]);
    r[6..12].copy_from_slice(&frame[0..6]);
    r[26..30].copy_from_slice(&frame[30..34]);
    r[30..34].copy_from_slice(&frame[26..30]);
    r[34..36].copy_from_slice(&frame[36..38]);
    r[36..38].copy_from_slice(&frame[34..36]);
    r
}

/// What one generator port sends: UDP/IPv4 flows whose 5-tuples are drawn from address
/// ranges and a source-port range, optionally with a share of "deny" flows sent to another
/// destination port (for an ACL that drops them), or `reflect`: the port sends nothing of
/// its own and returns every packet it receives as a reply (MACs, addresses and L4 ports
/// swapped), like a server answering each request.
///
/// Text form (`dpgen --spec PORT=SPEC`):
/// `src=10.1.0.0/18,sport=1024-65535,dst=192.0.2.10/32,dport=5001,flows=100000,deny=10,deny_dport=9`
/// (every key optional; defaults below) or `reflect`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PortSpec {
    /// Send these flows.
    Flows(FlowSpec),
    /// Send back what arrives.
    Reflect,
}

/// Flows of a [`PortSpec::Flows`]: flow `f` takes, in mixed radix, source host
/// `f % src_hosts`, then destination host, then source port; so the first `src_hosts` flows
/// differ by source address and the 5-tuples are distinct while `flows` is at most
/// `src_hosts * dst_hosts * sport range`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowSpec {
    /// First source address and prefix length (hosts: all addresses of the prefix).
    pub src: (Ipv4Addr, u8),
    /// Source ports, inclusive.
    pub sport: (u16, u16),
    /// First destination address and prefix length.
    pub dst: (Ipv4Addr, u8),
    /// Destination port of allowed flows.
    pub dport: u16,
    /// Number of distinct flows.
    pub flows: u32,
    /// Percentage (0..=100) of flows sent to `deny_dport` instead: flow `f` is one if
    /// `f % 100 < deny`.
    pub deny: u8,
    /// Destination port of deny flows.
    pub deny_dport: u16,
}

impl Default for FlowSpec {
    fn default() -> Self {
        FlowSpec {
            src: (Ipv4Addr::new(10, 1, 0, 0), 16),
            sport: (1024, 65535),
            dst: (Ipv4Addr::new(10, 2, 0, 1), 32),
            dport: 5001,
            flows: 1024,
            deny: 0,
            deny_dport: 9,
        }
    }
}

fn parse_net(v: &str) -> Result<(Ipv4Addr, u8), String> {
    let (a, l) = v.split_once('/').unwrap_or((v, "32"));
    let a: Ipv4Addr = a
        .parse()
        .map_err(|_| format!("{v:?}: not an IPv4 address"))?;
    let l: u8 = l
        .parse()
        .ok()
        .filter(|l| (8..=32).contains(l))
        .ok_or_else(|| format!("{v:?}: prefix length must be 8..=32"))?;
    Ok((a, l))
}

fn hosts(prefix: u8) -> u64 {
    1u64 << (32 - u32::from(prefix))
}

impl PortSpec {
    /// Parses the text form (see [`PortSpec`]).
    pub fn parse(text: &str) -> Result<PortSpec, String> {
        let text = text.trim();
        if text == "reflect" {
            return Ok(PortSpec::Reflect);
        }
        let mut f = FlowSpec::default();
        for kv in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let (k, v) = kv
                .split_once('=')
                .ok_or_else(|| format!("{kv:?}: expected key=value"))?;
            let num = |v: &str| -> Result<u32, String> {
                v.parse().map_err(|_| format!("{k}: {v:?} is not a number"))
            };
            let port = |v: &str| -> Result<u16, String> {
                v.parse().map_err(|_| format!("{k}: {v:?} is not a port"))
            };
            match k {
                "src" => f.src = parse_net(v)?,
                "dst" => f.dst = parse_net(v)?,
                "sport" => {
                    let (a, b) = v.split_once('-').unwrap_or((v, v));
                    f.sport = (port(a)?, port(b)?);
                }
                "dport" => f.dport = port(v)?,
                "deny_dport" => f.deny_dport = port(v)?,
                "flows" => f.flows = num(v)?,
                "deny" => {
                    f.deny = u8::try_from(num(v)?)
                        .ok()
                        .filter(|d| *d <= 100)
                        .ok_or("deny: a percentage 0..=100")?
                }
                _ => {
                    return Err(format!(
                        "unknown key {k:?} (src, sport, dst, dport, flows, deny, deny_dport)"
                    ))
                }
            }
        }
        if f.sport.0 > f.sport.1 || f.sport.0 == 0 {
            return Err(format!(
                "sport {}-{}: an increasing range of non-zero ports",
                f.sport.0, f.sport.1
            ));
        }
        let space = hosts(f.src.1) * hosts(f.dst.1) * u64::from(f.sport.1 - f.sport.0 + 1);
        if f.flows == 0 || u64::from(f.flows) > space {
            return Err(format!(
                "flows {}: must be 1..={space} for these ranges",
                f.flows
            ));
        }
        Ok(PortSpec::Flows(f))
    }
}

/// One flow's header fields, in network byte order where they go into the frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlowFields {
    /// Source address.
    pub src: [u8; 4],
    /// Destination address.
    pub dst: [u8; 4],
    /// Source port.
    pub sport: u16,
    /// Destination port.
    pub dport: u16,
    /// Sum (RFC 1071, unfolded) of the IPv4 header words that do not depend on the frame
    /// size: everything but the total length and the checksum.
    pub partial: u32,
    /// A flow meant to be denied.
    pub deny: bool,
}

impl FlowSpec {
    /// Flow number `f` (0-based).
    pub fn flow(&self, f: u32) -> FlowFields {
        let (ns, nd) = (hosts(self.src.1), hosts(self.dst.1));
        let mut i = u64::from(f);
        let s = u32::from(self.src.0).wrapping_add((i % ns) as u32);
        i /= ns;
        let d = u32::from(self.dst.0).wrapping_add((i % nd) as u32);
        i /= nd;
        let sport = self.sport.0 + (i % u64::from(self.sport.1 - self.sport.0 + 1)) as u16;
        let deny = (f % 100) < u32::from(self.deny);
        let (src, dst) = (s.to_be_bytes(), d.to_be_bytes());
        // Header words besides total length and checksum: 0x4500, id 0, flags 0, ttl/proto,
        // addresses.
        let mut partial = 0x4500u32 + ((64u32 << 8) | 17);
        for w in [src, dst] {
            partial += u32::from(u16::from_be_bytes([w[0], w[1]]));
            partial += u32::from(u16::from_be_bytes([w[2], w[3]]));
        }
        FlowFields {
            src,
            dst,
            sport,
            dport: if deny { self.deny_dport } else { self.dport },
            partial,
            deny,
        }
    }

    /// All flows, in order.
    pub fn table(&self) -> Vec<FlowFields> {
        (0..self.flows).map(|f| self.flow(f)).collect()
    }
}

impl FlowFields {
    /// Writes the flow into `frame`, an Ethernet/IPv4(20 bytes)/UDP frame from
    /// [`crate::frames::udp_frame`]: addresses, ports and a fresh IPv4 header checksum.
    #[inline]
    pub fn write(&self, frame: &mut [u8]) {
        if frame.len() < 38 {
            return;
        }
        let total = u32::from(u16::from_be_bytes([frame[16], frame[17]]));
        let mut sum = self.partial + total;
        sum = (sum & 0xffff) + (sum >> 16);
        sum = (sum & 0xffff) + (sum >> 16);
        frame[24..26].copy_from_slice(&(!(sum as u16)).to_be_bytes());
        frame[26..30].copy_from_slice(&self.src);
        frame[30..34].copy_from_slice(&self.dst);
        frame[34..36].copy_from_slice(&self.sport.to_be_bytes());
        frame[36..38].copy_from_slice(&self.dport.to_be_bytes());
    }
}

/// Turns a received Ethernet/IPv4/TCP-or-UDP frame into its reply in place: MACs,
/// addresses and L4 ports swapped (checksums stay valid: the sums are commutative). Returns
/// false (frame untouched) for anything else.
#[inline]
pub fn reply_in_place(frame: &mut [u8]) -> bool {
    if frame.len() < 34 || frame[12..14] != [0x08, 0x00] || frame[14] >> 4 != 4 {
        return false;
    }
    let ihl = usize::from(frame[14] & 0x0f) * 4;
    let l4 = 14 + ihl;
    if ihl < 20 || frame.len() < l4 + 4 || !matches!(frame[23], 6 | 17) {
        return false;
    }
    for i in 0..6 {
        frame.swap(i, 6 + i);
    }
    for i in 0..4 {
        frame.swap(26 + i, 30 + i);
    }
    for i in 0..2 {
        frame.swap(l4 + i, l4 + 2 + i);
    }
    true
}

/// The IPv4 source and destination addresses of an untagged Ethernet/IPv4 frame.
#[inline]
pub fn ipv4_addrs(frame: &[u8]) -> Option<([u8; 4], [u8; 4])> {
    if frame.len() < 34 || frame[12..14] != [0x08, 0x00] {
        return None;
    }
    Some((
        frame[26..30].try_into().ok()?,
        frame[30..34].try_into().ok()?,
    ))
}

/// Whether an untagged IPv4 frame's header checksum and TCP/UDP checksum verify (a UDP
/// checksum of 0, "none", passes); computed from scratch, independently of how the frame was
/// rewritten. `None` for anything but IPv4.
pub fn ipv4_checksums_ok(frame: &[u8]) -> Option<bool> {
    use pipeline::wire::checksum::{internet_checksum, pseudo_header_v4, verify};
    if frame.len() < 34 || frame[12..14] != [0x08, 0x00] {
        return None;
    }
    let ihl = usize::from(frame[14] & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([frame[16], frame[17]]));
    if ihl < 20 || total < ihl || frame.len() < 14 + total {
        return Some(false);
    }
    let header_ok = internet_checksum(&frame[14..14 + ihl]) == 0;
    let l4 = &frame[14 + ihl..14 + total];
    let proto = frame[23];
    let l4_ok = match proto {
        17 if l4.len() >= 8 && l4[6..8] == [0, 0] => true,
        6 | 17 => {
            let src: [u8; 4] = frame[26..30].try_into().ok()?;
            let dst: [u8; 4] = frame[30..34].try_into().ok()?;
            verify(pseudo_header_v4(src, dst, proto, l4.len() as u16), l4)
        }
        _ => true,
    };
    Some(header_ok && l4_ok)
}

/// Where a latency probe sits: the UDP payload of an untagged IPv4 frame.
pub const PROBE_OFFSET: usize = 42;
/// Marks a probe.
pub const PROBE_MAGIC: [u8; 8] = *b"dpgenTS1";
/// Bytes a probe needs from the start of the frame.
pub const PROBE_END: usize = PROBE_OFFSET + 16;

/// Writes a probe (magic + TSC) into `frame`'s payload; false if it is too short.
pub fn stamp(frame: &mut [u8], tsc: u64) -> bool {
    if frame.len() < PROBE_END {
        return false;
    }
    frame[PROBE_OFFSET..PROBE_OFFSET + 8].copy_from_slice(&PROBE_MAGIC);
    frame[PROBE_OFFSET + 8..PROBE_END].copy_from_slice(&tsc.to_le_bytes());
    true
}

/// The TSC of a probe in `frame`, if it carries one.
pub fn read_stamp(frame: &[u8]) -> Option<u64> {
    if frame.len() < PROBE_END || frame[PROBE_OFFSET..PROBE_OFFSET + 8] != PROBE_MAGIC {
        return None;
    }
    Some(u64::from_le_bytes(
        frame[PROBE_OFFSET + 8..PROBE_END].try_into().ok()?,
    ))
}

/// A fixed-size latency histogram (buckets of `BUCKET_NS`), exact min, max and sum.
/// Allocated once; `record` never allocates.
#[derive(Debug, Clone)]
pub struct LatencyHistogram {
    buckets: Vec<u64>,
    overflow: u64,
    count: u64,
    sum_ns: u128,
    min_ns: u64,
    max_ns: u64,
}

/// Width of a histogram bucket.
pub const BUCKET_NS: u64 = 50;
/// Buckets (50 ns x 40,000 = 2 ms; slower probes count as overflow, in max and mean).
pub const BUCKETS: usize = 40_000;

impl Default for LatencyHistogram {
    fn default() -> Self {
        LatencyHistogram {
            buckets: vec![0; BUCKETS],
            overflow: 0,
            count: 0,
            sum_ns: 0,
            min_ns: u64::MAX,
            max_ns: 0,
        }
    }
}

impl LatencyHistogram {
    /// Records one round trip.
    pub fn record(&mut self, ns: u64) {
        let b = (ns / BUCKET_NS) as usize;
        match self.buckets.get_mut(b) {
            Some(c) => *c += 1,
            None => self.overflow += 1,
        }
        self.count += 1;
        self.sum_ns += ns as u128;
        self.min_ns = self.min_ns.min(ns);
        self.max_ns = self.max_ns.max(ns);
    }

    /// Probes recorded.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The `q` quantile (0..=1), as the upper edge of its bucket (max if in the overflow).
    pub fn quantile_ns(&self, q: f64) -> u64 {
        if self.count == 0 {
            return 0;
        }
        let rank = ((q * self.count as f64).ceil() as u64).clamp(1, self.count);
        let mut seen = 0;
        for (i, c) in self.buckets.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return ((i as u64 + 1) * BUCKET_NS).min(self.max_ns);
            }
        }
        self.max_ns
    }

    /// Summary as JSON: probes, min, mean, p50, p99, max (ns).
    pub fn summary(&self) -> serde_json::Value {
        if self.count == 0 {
            return serde_json::json!({ "probes": 0 });
        }
        serde_json::json!({
            "probes": self.count,
            "min_ns": self.min_ns,
            "mean_ns": (self.sum_ns / self.count as u128) as u64,
            "p50_ns": self.quantile_ns(0.5),
            "p99_ns": self.quantile_ns(0.99),
            "max_ns": self.max_ns,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frames::{internet_checksum, udp_frame};

    #[test]
    fn size_specs() {
        assert_eq!(size_pattern("64").unwrap(), vec![64]);
        assert_eq!(size_pattern("64, 1518").unwrap(), vec![64, 1518]);
        let imix = size_pattern("IMIX").unwrap();
        for (size, n) in IMIX {
            assert_eq!(imix.iter().filter(|&&s| s == size).count(), n);
        }
        assert!(size_pattern("59").is_err());
        assert!(size_pattern("1519").is_err());
        assert!(size_pattern("abc").is_err());
        assert_eq!(mean_size(&[64, 128]), 96.0);
    }

    #[test]
    fn reply_swaps_endpoints_and_keeps_checksum_valid() {
        let f = udp_frame(64, 0, 1, 300);
        let r = reply_frame(&f);
        assert_eq!(&r[0..6], &f[6..12]);
        assert_eq!(&r[26..30], &f[30..34]);
        assert_eq!(&r[30..34], &f[26..30]);
        assert_eq!(&r[34..36], &f[36..38]);
        assert_eq!(&r[36..38], &f[34..36]);
        assert_eq!(internet_checksum(&r[14..34]), 0);
        assert_eq!(reply_frame(&r), f, "the reply of the reply is the original");
    }

    #[test]
    fn flow_specs_parse_and_refuse() {
        let PortSpec::Flows(f) = PortSpec::parse(
            "src=10.1.0.0/18,sport=1024-65535,dst=192.0.2.10/32,dport=5001,flows=100000,deny=10,deny_dport=9",
        )
        .unwrap() else {
            panic!("flows expected")
        };
        assert_eq!(f.src, (Ipv4Addr::new(10, 1, 0, 0), 18));
        assert_eq!(
            (f.sport, f.dport, f.flows, f.deny, f.deny_dport),
            ((1024, 65535), 5001, 100_000, 10, 9)
        );
        assert_eq!(PortSpec::parse("reflect").unwrap(), PortSpec::Reflect);
        assert_eq!(
            PortSpec::parse("").unwrap(),
            PortSpec::Flows(FlowSpec::default())
        );
        for bad in [
            "src=10.1.0.0/40",
            "flows=0",
            "sport=9-3",
            "deny=101",
            "bogus=1",
            "dst",
            "src=10.0.0.1/32,dst=10.0.0.2/32,sport=5-6,flows=3",
        ] {
            assert!(PortSpec::parse(bad).is_err(), "{bad} should be refused");
        }
    }

    #[test]
    fn flows_are_distinct_5_tuples_with_valid_headers_and_the_deny_share() {
        let f = FlowSpec {
            src: (Ipv4Addr::new(10, 1, 0, 0), 18),
            sport: (1024, 65535),
            dst: (Ipv4Addr::new(192, 0, 2, 10), 32),
            flows: 100_000,
            deny: 10,
            ..FlowSpec::default()
        };
        let t = f.table();
        let set: std::collections::HashSet<_> =
            t.iter().map(|x| (x.src, x.dst, x.sport, x.dport)).collect();
        assert_eq!(set.len(), 100_000, "every flow a distinct 5-tuple");
        assert_eq!(t.iter().filter(|x| x.deny).count(), 10_000);
        assert!(t
            .iter()
            .all(|x| x.dst == [192, 0, 2, 10] && x.dport == if x.deny { 9 } else { 5001 }));
        assert_eq!(t[1].src, [10, 1, 0, 1]);
        assert_eq!(t[16384].sport, 1025);
        for size in [60, 64, 1518] {
            for fl in [&t[0], &t[12345], &t[99_999]] {
                let mut frame = udp_frame(size, 0, 1, 0);
                fl.write(&mut frame);
                assert_eq!(
                    internet_checksum(&frame[14..34]),
                    0,
                    "header checksum after patching"
                );
                assert_eq!(&frame[26..30], &fl.src);
                assert_eq!(&frame[30..34], &fl.dst);
                assert_eq!(u16::from_be_bytes([frame[36], frame[37]]), fl.dport);
            }
        }
    }

    #[test]
    fn reply_in_place_equals_reply_frame() {
        let f = udp_frame(64, 0, 1, 77);
        let mut r = f.clone();
        assert!(reply_in_place(&mut r));
        assert_eq!(r, reply_frame(&f));
        assert_eq!(ipv4_addrs(&r), Some(([10, 2, 0, 77], [10, 1, 0, 1])));
        let mut arp = f.clone();
        arp[12..14].copy_from_slice(&[0x08, 0x06]);
        assert!(!reply_in_place(&mut arp));
        assert_eq!(arp[12..14], [0x08, 0x06]);
        assert!(!reply_in_place(&mut [0u8; 20]));
    }

    #[test]
    fn probes_round_trip_and_plain_frames_are_not_probes() {
        let mut f = udp_frame(64, 0, 1, 1);
        assert_eq!(read_stamp(&f), None);
        assert!(stamp(&mut f, 0x1234_5678_9abc));
        assert_eq!(read_stamp(&f), Some(0x1234_5678_9abc));
        let mut short = vec![0u8; 50];
        assert!(!stamp(&mut short, 1));
    }

    #[test]
    fn histogram_quantiles_match_sorted_samples() {
        let mut h = LatencyHistogram::default();
        let samples: Vec<u64> = (1..=1000).map(|i| i * 97 % 10_000 + 100).collect();
        for &s in &samples {
            h.record(s);
        }
        let mut sorted = samples.clone();
        sorted.sort();
        let exact_p99 = sorted[(0.99 * 1000.0f64).ceil() as usize - 1];
        let p99 = h.quantile_ns(0.99);
        assert!(
            p99 >= exact_p99 && p99 < exact_p99 + BUCKET_NS,
            "p99 {p99} vs exact {exact_p99}"
        );
        assert_eq!(h.summary()["min_ns"], *sorted.first().unwrap());
        assert_eq!(h.summary()["max_ns"], *sorted.last().unwrap());
        h.record(10_000_000);
        assert_eq!(h.quantile_ns(1.0), 10_000_000, "overflow reaches max");
    }
}
