//! Keys: a VL2 MAC packed into a `u64`, and the seeded hash that places it.

use overlay_api::Mac;
use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;

/// Bit 63 of a slot's key word: set while the slot holds a live entry.
pub(crate) const LIVE: u64 = 1 << 63;

/// The MAC as the low 48 bits of a `u64` (network order, first octet highest).
#[inline]
pub(crate) fn pack(mac: Mac) -> u64 {
    let m = mac.0;
    u64::from_be_bytes([0, 0, m[0], m[1], m[2], m[3], m[4], m[5]])
}

/// The inverse of [`pack`]; bits above 48 (such as [`LIVE`]) are ignored.
#[inline]
pub(crate) fn unpack(key: u64) -> Mac {
    let b = key.to_be_bytes();
    Mac([b[2], b[3], b[4], b[5], b[6], b[7]])
}

/// A seeded hash of packed MACs.
///
/// MACs come from the network, so the seed is random per table: a sender
/// cannot pick addresses that collide in every overlayd. Two rounds of a
/// folded 64×64→128 multiply (the foldhash/ahash mixer) spread sequential
/// MACs over the high bits, which is where the index takes a key's home.
#[derive(Clone, Copy, Debug)]
pub(crate) struct KeyHasher {
    seed: [u64; 2],
}

const MUL0: u64 = 0x243f_6a88_85a3_08d3;
const MUL1: u64 = 0x1319_8a2e_0370_7344;

#[inline]
fn folded_multiply(a: u64, b: u64) -> u64 {
    let full = u128::from(a) * u128::from(b);
    (full as u64) ^ ((full >> 64) as u64)
}

impl KeyHasher {
    /// A hasher with a seed drawn from the process's random keys.
    pub(crate) fn random() -> Self {
        let s = RandomState::new();
        KeyHasher {
            seed: [s.hash_one(0x5eed_u64), s.hash_one(0xfeed_u64)],
        }
    }

    /// A hasher with a fixed seed (tests that want reproducible layouts).
    #[cfg(test)]
    pub(crate) fn with_seed(seed: [u64; 2]) -> Self {
        KeyHasher { seed }
    }

    /// The 64-bit hash of a packed key.
    #[inline(always)]
    pub(crate) fn hash(&self, key: u64) -> u64 {
        folded_multiply(
            folded_multiply(key ^ self.seed[0], MUL0) ^ self.seed[1],
            MUL1,
        )
    }

    /// The hash's high half, from which a key's home bucket is masked.
    #[inline]
    pub(crate) fn home(&self, key: u64) -> u32 {
        (self.hash(key) >> 32) as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pack_round_trips_and_keeps_live_bit_clear() {
        let m = Mac([0xff, 0x02, 0x03, 0x04, 0x05, 0xfe]);
        let k = pack(m);
        assert_eq!(k & LIVE, 0);
        assert_eq!(unpack(k), m);
        assert_eq!(unpack(k | LIVE), m);
    }

    #[test]
    fn sequential_macs_spread_over_homes() {
        let h = KeyHasher::with_seed([1, 2]);
        let mut buckets = [0u32; 64];
        for i in 0..64 * 1024u64 {
            buckets[(h.home(i) & 63) as usize] += 1;
        }
        // Each of 64 buckets expects 1024; a decent mixer stays well within ±25%.
        assert!(
            buckets.iter().all(|&n| (768..1280).contains(&n)),
            "{buckets:?}"
        );
    }
}
