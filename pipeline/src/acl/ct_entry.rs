//! What a stateful `acl` node keeps in each of its connection-table entries: the generation
//! of the rules that last allowed the connection and which ACL did (for OVN's
//! `options:log-related`: the replies of a connection are logged under the ACL that
//! admitted it), packed into one `u64` so that the entry stays one 64-byte slot
//! ([`crate::conntrack`]).
//!
//! Layout: the generation's low 40 bits above the classifier result (the ACL's index + 1;
//! 0 for the default) in the low 24 bits. 2^40 generations is 35 years of a publication a
//! millisecond; an ACL index of 2^24 - 1 or more is stored as 0 (its replies are not logged,
//! they still pass).

/// Bits of the classifier result.
pub const RULE_BITS: u32 = 24;
const RULE_MASK: u64 = (1 << RULE_BITS) - 1;
const GENERATION_MASK: u64 = u64::MAX >> RULE_BITS;

/// The payload of a connection that the rules of `generation` allowed by classifier result
/// `ud`.
#[inline(always)]
pub fn pack(generation: u64, ud: u32) -> u64 {
    let ud = if u64::from(ud) > RULE_MASK {
        0
    } else {
        u64::from(ud)
    };
    ((generation & GENERATION_MASK) << RULE_BITS) | ud
}

/// Whether `payload` was written under `generation`.
#[inline(always)]
pub fn is_of(payload: u64, generation: u64) -> bool {
    payload >> RULE_BITS == generation & GENERATION_MASK
}

/// The generation `payload` was written under (its low 40 bits).
#[inline(always)]
pub fn generation(payload: u64) -> u64 {
    payload >> RULE_BITS
}

/// The classifier result that allowed the connection (0: the default, or unknown).
#[inline(always)]
pub fn rule_ud(payload: u64) -> u32 {
    (payload & RULE_MASK) as u32
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn packs_and_unpacks(generation in 0u64..(1 << 40), ud in 0u32..(1 << 24), other in any::<u64>()) {
            let p = pack(generation, ud);
            prop_assert_eq!(rule_ud(p), ud);
            prop_assert_eq!(generation_of(p), generation);
            prop_assert!(is_of(p, generation));
            prop_assert_eq!(is_of(p, other), other & GENERATION_MASK == generation);
        }
    }

    fn generation_of(p: u64) -> u64 {
        generation(p)
    }

    #[test]
    fn an_index_beyond_the_field_is_stored_as_the_default() {
        assert_eq!(rule_ud(pack(7, 1 << 24)), 0);
        assert_eq!(rule_ud(pack(7, u32::MAX)), 0);
        assert_eq!(generation(pack(7, u32::MAX)), 7);
        // The generation wraps at 2^40, on both sides of the comparison.
        assert!(is_of(pack((1 << 40) + 5, 1), 5));
    }
}
