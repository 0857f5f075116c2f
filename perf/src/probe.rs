//! Probe-verdict timing: one probe flow that the generator sends at a fixed interval beside
//! its background traffic, and the record of *when* the probe's verdict changed (received or
//! not, and with which destination address, so a load balancer's DNAT shows), in
//! CLOCK_REALTIME nanoseconds, for a harness that changes policy and wants to know when the
//! device under test enforced it.
//!
//! The generator (`dpgen --probe P=SPEC --probe-log FILE`) numbers each probe and keeps the
//! TSC it was sent at in a ring ([`ProbeTracker`]); a verdict change is dated by the send
//! time of the first probe that saw the new verdict: the first probe received with another
//! destination, or the first probe missing once no probe has arrived for the timeout. It
//! writes one [`ProbeEvent`] line per change; the harness reads the file while the generator
//! runs ([`read_events`], [`settled_change`]).

use std::net::Ipv4Addr;

use crate::traffic::{FlowSpec, PortSpec};

/// Where the probe mark sits: the UDP payload of an untagged IPv4 frame.
pub const MARK_OFFSET: usize = 42;
/// Marks a verdict probe (distinct from the latency stamp's magic).
pub const MARK_MAGIC: [u8; 8] = *b"dpgenPV1";
/// Bytes a probe needs from the start of the frame (magic and sequence number).
pub const MARK_END: usize = MARK_OFFSET + 16;
/// Send times kept (a power of two): the oldest probe a change can be dated by.
pub const RING: usize = 1 << 16;

/// The probe flow: its 5-tuple(s), interval and loss timeout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeSpec {
    /// The flow; with `fresh`, probe `k` is flow `k` of it (a new 5-tuple each), else flow 0.
    pub flow: FlowSpec,
    /// Microseconds between probes.
    pub every_us: u32,
    /// Every probe is a new connection (source address and port vary), so a stateful device
    /// judges each one afresh (a load balancer picks a backend for each).
    pub fresh: bool,
    /// Microseconds without a probe after which the probe counts as not received.
    pub timeout_us: u32,
}

impl ProbeSpec {
    /// Parses `src=IP[/LEN],sport=A[-B],dst=IP,dport=N[,every_us=N][,timeout_us=N][,fresh]`
    /// (keys of [`PortSpec`] plus the probe's own). Defaults: every 10 µs, timeout 1000 µs;
    /// without `fresh` a single 5-tuple (the first of the ranges).
    pub fn parse(text: &str) -> Result<ProbeSpec, String> {
        let (mut every_us, mut timeout_us, mut fresh) = (10u32, 1000u32, false);
        let mut rest = Vec::new();
        for kv in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let num = |v: &str, k: &str| -> Result<u32, String> {
                v.parse::<u32>()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| format!("{k}: {v:?} is not a positive number"))
            };
            match kv.split_once('=') {
                Some(("every_us", v)) => every_us = num(v, "every_us")?,
                Some(("timeout_us", v)) => timeout_us = num(v, "timeout_us")?,
                None if kv == "fresh" => fresh = true,
                Some(("flows", _)) => return Err("flows: not a probe key (use fresh)".into()),
                _ => rest.push(kv),
            }
        }
        if timeout_us <= every_us {
            return Err(format!(
                "timeout_us {timeout_us} must exceed every_us {every_us}"
            ));
        }
        rest.push("flows=1");
        let mut flow = match PortSpec::parse(&rest.join(","))? {
            PortSpec::Flows(f) => f,
            PortSpec::Reflect => return Err("reflect is not a probe".into()),
        };
        flow.deny = 0;
        if fresh {
            let space = (1u64 << (32 - u32::from(flow.src.1)))
                * (1u64 << (32 - u32::from(flow.dst.1)))
                * u64::from(flow.sport.1 - flow.sport.0 + 1);
            flow.flows = u32::try_from(space).unwrap_or(u32::MAX);
        } else {
            flow.flows = 1;
        }
        Ok(ProbeSpec {
            flow,
            every_us,
            fresh,
            timeout_us,
        })
    }

    /// The flow index of probe number `seq`.
    pub fn flow_of(&self, seq: u64) -> u32 {
        if self.fresh {
            (seq % u64::from(self.flow.flows)) as u32
        } else {
            0
        }
    }
}

/// Writes the probe mark (magic and sequence number) into `frame`; false if too short.
pub fn mark(frame: &mut [u8], seq: u64) -> bool {
    if frame.len() < MARK_END {
        return false;
    }
    frame[MARK_OFFSET..MARK_OFFSET + 8].copy_from_slice(&MARK_MAGIC);
    frame[MARK_OFFSET + 8..MARK_END].copy_from_slice(&seq.to_le_bytes());
    true
}

/// The sequence number and IPv4 destination of a probe frame (none for other frames).
#[inline]
pub fn read_mark(frame: &[u8]) -> Option<(u64, [u8; 4])> {
    if frame.len() < MARK_END || frame[MARK_OFFSET..MARK_OFFSET + 8] != MARK_MAGIC {
        return None;
    }
    let seq = u64::from_le_bytes(frame[MARK_OFFSET + 8..MARK_END].try_into().ok()?);
    Some((seq, frame[30..34].try_into().ok()?))
}

/// What the probe currently sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Not received (dropped, or nothing received yet).
    Lost,
    /// Received, with this destination address (after any DNAT).
    Received(Ipv4Addr),
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Verdict::Lost => write!(f, "lost"),
            Verdict::Received(a) => write!(f, "dst={a}"),
        }
    }
}

/// One change of verdict: the probe that first saw it and when it was sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProbeEvent {
    /// CLOCK_REALTIME nanoseconds (from the send TSC; in the tracker, the TSC itself).
    pub ns: u64,
    /// The probe's sequence number.
    pub seq: u64,
    /// The new verdict.
    pub verdict: Verdict,
}

impl ProbeEvent {
    /// The log line: `probe NS SEQ lost` or `probe NS SEQ dst=A.B.C.D`.
    pub fn line(&self) -> String {
        format!("probe {} {} {}", self.ns, self.seq, self.verdict)
    }

    /// Parses a [`ProbeEvent::line`] (none for other lines).
    pub fn parse(line: &str) -> Option<ProbeEvent> {
        let mut w = line.split_whitespace();
        if w.next()? != "probe" {
            return None;
        }
        let ns = w.next()?.parse().ok()?;
        let seq = w.next()?.parse().ok()?;
        let v = w.next()?;
        let verdict = if v == "lost" {
            Verdict::Lost
        } else {
            Verdict::Received(v.strip_prefix("dst=")?.parse().ok()?)
        };
        w.next()
            .is_none()
            .then_some(ProbeEvent { ns, seq, verdict })
    }
}

/// The events of a probe log (other lines skipped).
pub fn read_events(text: &str) -> Vec<ProbeEvent> {
    text.lines().filter_map(ProbeEvent::parse).collect()
}

/// When the verdict last became one that `want` accepts, if that change is among the events
/// logged from index `since` on (those written after a policy change was committed), it is
/// the verdict now, and it has been since before `now_ns - hold_ns` (so a passing hiccup,
/// e.g. a burst lost while a shared core was busy, is not taken for the change). `None`
/// while that is not (yet) the case. The date may precede the commit: a probe sent before
/// it but still queued on its way when the change took effect sees the new verdict first,
/// and the change is dated by that probe's send time.
pub fn settled_change(
    events: &[ProbeEvent],
    since: usize,
    want: impl Fn(Verdict) -> bool,
    now_ns: u64,
    hold_ns: u64,
) -> Option<u64> {
    let last = events.last()?;
    if events.len() <= since || !want(last.verdict) || last.ns + hold_ns > now_ns {
        return None;
    }
    Some(last.ns)
}

/// The generator side: send times of recent probes and the current verdict. Pure (TSC values
/// in, events out), allocated once; no call allocates.
#[derive(Debug)]
pub struct ProbeTracker {
    sent_tsc: Vec<u64>,
    next_seq: u64,
    last_rx_seq: Option<u64>,
    last_rx_tsc: u64,
    timeout_ticks: u64,
    verdict: Verdict,
    /// A verdict has been reported (the first one may be `Lost`: nothing ever arrived).
    reported: bool,
}

impl ProbeTracker {
    /// A tracker that declares the probe lost after `timeout_ticks` TSC ticks without one.
    pub fn new(timeout_ticks: u64) -> ProbeTracker {
        ProbeTracker {
            sent_tsc: vec![0; RING],
            next_seq: 0,
            last_rx_seq: None,
            last_rx_tsc: 0,
            timeout_ticks,
            verdict: Verdict::Lost,
            reported: false,
        }
    }

    /// Takes the number of the next probe, sent at `tsc`.
    pub fn send(&mut self, tsc: u64) -> u64 {
        let seq = self.next_seq;
        self.sent_tsc[(seq as usize) & (RING - 1)] = tsc;
        self.next_seq += 1;
        seq
    }

    /// Undoes the last [`ProbeTracker::send`] (the probe could not be sent).
    pub fn unsend(&mut self) {
        self.next_seq = self.next_seq.saturating_sub(1);
    }

    fn sent_at(&self, seq: u64) -> Option<u64> {
        (seq < self.next_seq && self.next_seq - seq <= RING as u64)
            .then(|| self.sent_tsc[(seq as usize) & (RING - 1)])
    }

    /// Probe `seq` arrived with destination `dst` at `now`: the change, if it is one (dated by
    /// its send TSC).
    pub fn received(&mut self, seq: u64, dst: [u8; 4], now: u64) -> Option<ProbeEvent> {
        let sent = self.sent_at(seq)?;
        if self.last_rx_seq.is_some_and(|l| seq <= l) {
            return None; // late or duplicate
        }
        self.last_rx_seq = Some(seq);
        self.last_rx_tsc = now;
        self.reported = true;
        let v = Verdict::Received(Ipv4Addr::from(dst));
        (v != self.verdict).then(|| {
            self.verdict = v;
            ProbeEvent {
                ns: sent,
                seq,
                verdict: v,
            }
        })
    }

    /// Called regularly: once no probe has arrived for the timeout while later ones were
    /// sent, the probe is lost, dated by the send TSC of the first probe that did not arrive.
    pub fn tick(&mut self, now: u64) -> Option<ProbeEvent> {
        if !self.reported {
            // Nothing has arrived since the start: once the first probe is older than the
            // timeout, say so (a harness waiting for "lost" must not wait for a change).
            let first = self.sent_at(0)?;
            if now.wrapping_sub(first) < self.timeout_ticks {
                return None;
            }
            self.reported = true;
            return Some(ProbeEvent {
                ns: first,
                seq: 0,
                verdict: Verdict::Lost,
            });
        }
        if self.verdict == Verdict::Lost || now.wrapping_sub(self.last_rx_tsc) < self.timeout_ticks
        {
            return None;
        }
        let first_missing = self.last_rx_seq.map_or(0, |l| l + 1);
        let sent = self.sent_at(first_missing)?;
        // The missing probe itself must be older than the timeout (not merely in flight).
        if now.wrapping_sub(sent) < self.timeout_ticks {
            return None;
        }
        self.verdict = Verdict::Lost;
        Some(ProbeEvent {
            ns: sent,
            seq: first_missing,
            verdict: Verdict::Lost,
        })
    }

    /// The current verdict.
    pub fn verdict(&self) -> Verdict {
        self.verdict
    }
}

/// Converts a TSC value to CLOCK_REALTIME ns given one (tsc, realtime ns) pair taken together
/// and the TSC rate.
pub fn tsc_to_realtime(tsc: u64, anchor_tsc: u64, anchor_ns: u64, hz: u64) -> u64 {
    let d = anchor_tsc.wrapping_sub(tsc) as i64 as i128;
    let ns = i128::from(anchor_ns) - d * 1_000_000_000 / i128::from(hz.max(1));
    ns.max(0) as u64
}

/// CLOCK_REALTIME now, in ns.
pub fn realtime_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_parses_probe_keys_and_flow_keys() {
        let s = ProbeSpec::parse(
            "src=10.1.200.0/24,sport=2000-2999,dst=10.2.0.1,dport=7777,every_us=50,fresh",
        )
        .unwrap();
        assert!(s.fresh);
        assert_eq!(s.every_us, 50);
        assert_eq!(s.timeout_us, 1000);
        assert_eq!(s.flow.flows, 256 * 1000);
        assert_eq!(s.flow.dport, 7777);
        // Fresh: consecutive probes are distinct 5-tuples.
        let (a, b) = (s.flow.flow(s.flow_of(0)), s.flow.flow(s.flow_of(1)));
        assert_ne!((a.src, a.sport), (b.src, b.sport));
        let one = ProbeSpec::parse("src=10.1.200.1,sport=7000,dst=10.2.0.1,dport=7777").unwrap();
        assert!(!one.fresh);
        assert_eq!(one.flow_of(12345), 0);
        assert!(ProbeSpec::parse("every_us=10,timeout_us=5").is_err());
        assert!(ProbeSpec::parse("reflect").is_err());
        assert!(ProbeSpec::parse("flows=10").is_err());
        assert!(ProbeSpec::parse("every_us=0").is_err());
    }

    #[test]
    fn mark_round_trips_and_other_frames_are_not_probes() {
        let mut f = crate::frames::udp_frame(64, 0, 1, 7);
        assert_eq!(read_mark(&f), None);
        assert!(mark(&mut f, 42));
        assert_eq!(read_mark(&f), Some((42, [10, 2, 0, 7])));
        assert!(!mark(&mut [0u8; 50], 1));
    }

    #[test]
    fn event_lines_round_trip() {
        for v in [
            Verdict::Lost,
            Verdict::Received(Ipv4Addr::new(10, 2, 100, 2)),
        ] {
            let e = ProbeEvent {
                ns: 1_700_000_000_123_456_789,
                seq: 99,
                verdict: v,
            };
            assert_eq!(ProbeEvent::parse(&e.line()), Some(e));
        }
        assert_eq!(ProbeEvent::parse("[ 1.0s] port 0 tx"), None);
        assert_eq!(ProbeEvent::parse("probe 1 2 dst=nonsense"), None);
        let log = "probe 10 1 dst=10.2.0.1\nnoise\nprobe 20 5 lost\n";
        assert_eq!(read_events(log).len(), 2);
    }

    #[test]
    fn tracker_dates_a_drop_by_the_first_missing_probe() {
        let mut t = ProbeTracker::new(100);
        // Probes 0..5 sent at 10, 20, ..; 0..2 arrive 5 ticks later.
        for k in 0..6u64 {
            t.send(10 * (k + 1));
        }
        assert_eq!(
            t.received(0, [10, 2, 0, 1], 15).map(|e| (e.seq, e.ns)),
            Some((0, 10)),
            "first reception is a change"
        );
        assert_eq!(t.received(1, [10, 2, 0, 1], 25), None, "same verdict");
        assert_eq!(t.received(2, [10, 2, 0, 1], 35), None);
        assert_eq!(t.received(1, [10, 2, 0, 9], 36), None, "late probe ignored");
        assert_eq!(t.tick(100), None, "within the timeout");
        assert_eq!(t.tick(136), None, "probe 3 itself not yet timed out");
        let e = t.tick(140).expect("lost after the timeout");
        assert_eq!((e.seq, e.ns, e.verdict), (3, 40, Verdict::Lost));
        assert_eq!(t.tick(500), None, "reported once");
        // Probe 5 arrives DNATed elsewhere: a change dated by its send time.
        let e = t.received(5, [10, 2, 100, 2], 600).unwrap();
        assert_eq!((e.seq, e.ns), (5, 60));
        assert_eq!(t.verdict(), Verdict::Received(Ipv4Addr::new(10, 2, 100, 2)));
    }

    #[test]
    fn tracker_reports_a_probe_that_never_arrives_once() {
        let mut t = ProbeTracker::new(100);
        assert_eq!(t.tick(1000), None, "nothing sent yet");
        t.send(1000);
        t.send(1010);
        assert_eq!(t.tick(1050), None, "first probe still in flight");
        let e = t.tick(1100).expect("reported lost");
        assert_eq!((e.seq, e.ns, e.verdict), (0, 1000, Verdict::Lost));
        assert_eq!(t.tick(5000), None, "once");
    }

    #[test]
    fn tracker_does_not_call_a_probe_in_flight_lost() {
        let mut t = ProbeTracker::new(100);
        t.send(0);
        t.received(0, [1, 2, 3, 4], 5);
        // Nothing sent since: no change however long.
        assert_eq!(t.tick(10_000), None);
        // One sent just now: still in flight.
        t.send(9_990);
        assert_eq!(t.tick(10_000), None);
        assert_eq!(t.tick(10_100).map(|e| e.seq), Some(1));
    }

    #[test]
    fn settled_change_needs_the_wanted_verdict_held_and_logged_since() {
        let rx = Verdict::Received(Ipv4Addr::new(10, 2, 0, 1));
        let ev = |ns, verdict| ProbeEvent {
            ns,
            seq: 0,
            verdict,
        };
        let lost = |v| v == Verdict::Lost;
        let evs = [
            ev(100, rx),
            ev(200, Verdict::Lost),
            ev(300, rx),
            ev(400, Verdict::Lost),
        ];
        assert_eq!(settled_change(&evs, 1, lost, 1000, 100), Some(400));
        assert_eq!(
            settled_change(&evs, 1, lost, 450, 100),
            None,
            "not held yet"
        );
        assert_eq!(
            settled_change(&evs, 1, |v| v == rx, 1000, 100),
            None,
            "not the verdict now"
        );
        assert_eq!(
            settled_change(&evs, 4, lost, 1000, 100),
            None,
            "logged before the commit"
        );
        // Logged after the commit but dated before it (a queued probe saw it first): the
        // change still counts, with its own date.
        assert_eq!(settled_change(&evs, 3, lost, 1000, 100), Some(400));
        assert_eq!(settled_change(&[], 0, |_| true, 1000, 0), None);
    }

    #[test]
    fn tsc_converts_to_realtime_around_the_anchor() {
        // 1 GHz: one tick per ns.
        assert_eq!(tsc_to_realtime(900, 1000, 5_000, 1_000_000_000), 4_900);
        assert_eq!(tsc_to_realtime(1100, 1000, 5_000, 1_000_000_000), 5_100);
        // 2 GHz: 2000 ticks before the anchor = 1 µs.
        assert_eq!(tsc_to_realtime(0, 2000, 10_000, 2_000_000_000), 9_000);
    }
}
