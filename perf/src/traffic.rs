//! Traffic shapes for the generators: frame-size patterns (single sizes, lists, IMIX),
//! mirrored (reply) frames for stateful DUTs, and timestamped latency probes.

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
