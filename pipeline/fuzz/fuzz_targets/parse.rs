//! Fuzzes the `parse` node's packet parser: it must never panic, the fast path must agree with
//! the general path, offsets must stay inside the frame, and the trace summary must not panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pipeline::nodes::parse::{parse_general, parse_packet, FragmentPolicy, ParseConfig};
use pipeline::wire::summary::summarize;
use pipeline::PacketMeta;

fuzz_target!(|data: &[u8]| {
    let Some((&knobs, frame)) = data.split_first() else {
        return;
    };
    let cfg = ParseConfig {
        fragments: if knobs & 1 == 0 {
            FragmentPolicy::Pass
        } else {
            FragmentPolicy::Drop
        },
        verify_ipv4_checksum: knobs & 2 != 0,
    };
    let mut fast = PacketMeta::default();
    let r = parse_packet(frame, &cfg, &mut fast);
    let mut general = PacketMeta::default();
    let rg = parse_general(frame, &cfg, &mut general);
    assert_eq!(r, rg);
    assert_eq!(fast, general);
    if r.is_ok() {
        assert!(usize::from(fast.l3_offset) <= frame.len());
        assert!(usize::from(fast.l4_offset) <= frame.len());
    }
    let _ = summarize(frame);
});
