//! The index arrays: open addressing, one 16-byte bucket an entry, holding
//! the key and a copy of the state word, so a lookup reads one bucket.
//!
//! A bucket is two atomic words:
//!
//! ```text
//!   key word:   EMPTY (0) | TOMB (1) | LIVE:1 | slot_hi:15 | MAC:48
//!   state word: the entry's state word (see state.rs), with slot_lo:14 in bits 2–15
//! ```
//!
//! The slot id (slot_hi:slot_lo) names the entry's slot, where the
//! statistics live. A key's home bucket comes from the high half of its
//! seeded hash; probing is linear and stops at `EMPTY`.
//!
//! A bucket is written once per array: its state word, then (release) its
//! key word; later the writer may store newer state words for the same key,
//! and finally `TOMB` over the key word. A bucket is never reused within an
//! array (inserts take `EMPTY` buckets only; tombstones go when the next
//! migration rebuilds the array), so the state word a reader loads after
//! matching the key word belongs to that key; and live buckets never move
//! within an array, so a reader probing alongside the writer cannot step over
//! the one it looks for.

use crate::key::LIVE;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// A key word never used since the array was made.
pub(crate) const EMPTY: u64 = 0;
/// A key word whose entry was removed.
pub(crate) const TOMB: u64 = 1;

/// The MAC bits of a key word.
const MAC_MASK: u64 = (1 << 48) - 1;
/// The bits a lookup compares: the MAC and `LIVE`.
const MATCH_MASK: u64 = LIVE | MAC_MASK;
const SLOT_LO_BITS: u32 = 14;
const SLOT_LO_MASK: u32 = (1 << SLOT_LO_BITS) - 1;
/// The largest slot id a bucket can name (2^29 - 1).
pub(crate) const MAX_SLOT: u32 = (1 << (15 + SLOT_LO_BITS)) - 1;
const _: () = assert!(crate::slab::MAX_IDS - 1 <= MAX_SLOT as usize);

/// The key word of a live bucket for packed `key` in slot `slot`.
#[inline]
pub(crate) fn key_word(key: u64, slot: u32) -> u64 {
    LIVE | (u64::from(slot >> SLOT_LO_BITS) << 48) | key
}

/// The state word of a bucket: `state` (an encoded state word) with the low
/// bits of `slot`.
#[inline]
pub(crate) fn bucket_state(state: u64, slot: u32) -> u64 {
    state | (u64::from(slot & SLOT_LO_MASK) << 2)
}

/// The slot named by a bucket's two words.
#[inline]
pub(crate) fn slot_of(key_word: u64, state: u64) -> u32 {
    (((key_word >> 48) as u32 & 0x7fff) << SLOT_LO_BITS) | ((state >> 2) as u32 & SLOT_LO_MASK)
}

/// The packed key of a live key word.
#[inline]
pub(crate) fn key_of(key_word: u64) -> u64 {
    key_word & MAC_MASK
}

/// True for a key word that names an entry.
#[inline]
pub(crate) fn is_live(w: u64) -> bool {
    w & LIVE != 0
}

/// One bucket.
#[derive(Debug, Default)]
#[repr(C, align(16))]
pub(crate) struct Bucket {
    pub(crate) key: AtomicU64,
    pub(crate) state: AtomicU64,
}

/// One index array.
#[derive(Debug)]
pub(crate) struct Index {
    buckets: Box<[Bucket]>,
    mask: usize,
}

impl Index {
    /// An array of `cap` empty buckets (`cap` a power of two), its memory
    /// faulted in.
    ///
    /// A large zeroed allocation comes straight from the kernel, its pages
    /// mapped on first touch. Were that touch a reader's probe, the reader
    /// would take the page fault (microseconds) in the middle of a lookup;
    /// the writer takes them all here instead, before any reader can see the
    /// array.
    pub(crate) fn new(cap: usize) -> Self {
        assert!(cap.is_power_of_two());
        let buckets: Box<[Bucket]> = (0..cap).map(|_| Bucket::default()).collect();
        const PER_PAGE: usize = 4096 / std::mem::size_of::<Bucket>();
        for b in buckets.iter().step_by(PER_PAGE) {
            b.key.store(EMPTY, Ordering::Relaxed);
        }
        Index {
            buckets,
            mask: cap - 1,
        }
    }

    /// Number of buckets.
    #[inline]
    pub(crate) fn capacity(&self) -> usize {
        self.mask + 1
    }

    /// The home bucket of a key whose hash has high half `h`.
    #[inline]
    pub(crate) fn home(&self, h: u32) -> usize {
        h as usize & self.mask
    }

    /// Bucket `i`.
    #[inline]
    pub(crate) fn bucket(&self, i: usize) -> &Bucket {
        &self.buckets[i]
    }

    /// Probes for live packed `key` from the home of `h`; returns the bucket
    /// and its key word. Visits every bucket at most once, so it ends even
    /// on an array with no `EMPTY` bucket.
    #[inline(always)]
    pub(crate) fn find(&self, h: u32, key: u64) -> Option<(usize, u64)> {
        let want = LIVE | key;
        let mut i = self.home(h);
        // The home bucket first: at the loads the writer keeps, most
        // lookups end there.
        let w = self.buckets[i].key.load(Ordering::Acquire);
        if w & MATCH_MASK == want {
            return Some((i, w));
        }
        if w == EMPTY {
            return None;
        }
        i = (i + 1) & self.mask;
        for _ in 0..self.mask {
            let w = self.buckets[i].key.load(Ordering::Acquire);
            if w & MATCH_MASK == want {
                return Some((i, w));
            }
            if w == EMPTY {
                return None;
            }
            i = (i + 1) & self.mask;
        }
        None
    }

    /// The first `EMPTY` bucket from the home of `h` (writer only; the
    /// writer keeps every array at most 3/4 filled, tombstones included).
    pub(crate) fn free_bucket(&self, h: u32) -> usize {
        let mut i = self.home(h);
        for _ in 0..=self.mask {
            if self.buckets[i].key.load(Ordering::Relaxed) == EMPTY {
                return i;
            }
            i = (i + 1) & self.mask;
        }
        unreachable!("index array full: the writer keeps it at most 3/4 filled")
    }

    /// Fills `EMPTY` bucket `i` (writer only): state word first, then the
    /// key word with release, which publishes the bucket and the slot.
    #[inline]
    pub(crate) fn fill(&self, i: usize, key_word: u64, state: u64) {
        let b = &self.buckets[i];
        debug_assert_eq!(b.key.load(Ordering::Relaxed), EMPTY);
        b.state.store(state, Ordering::Relaxed);
        b.key.store(key_word, Ordering::Release);
    }
}

/// What readers see: the current array, and during a migration the array it
/// replaces, with the migration cursor (buckets of `old` below it are copied).
///
/// A view is immutable once published, except `cursor`, which only guides the
/// order in which a reader probes the two arrays (either order is correct).
#[derive(Debug)]
pub(crate) struct View {
    pub(crate) new: *const Index,
    pub(crate) old: *const Index,
    pub(crate) cursor: AtomicUsize,
}

// SAFETY: a View only holds pointers to index arrays made of atomics; the
// arrays outlive every view that names them (both are retired together,
// through the epoch, by the writer).
unsafe impl Send for View {}
// SAFETY: as above; shared access only reads the pointers and the atomics.
unsafe impl Sync for View {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_carry_key_and_slot() {
        for (key, slot) in [
            (0, 0),
            (MAC_MASK, MAX_SLOT),
            (0x0200_0000_0001, 12345),
            (7, 1 << 14),
        ] {
            let k = key_word(key, slot);
            let s = bucket_state(0xffff_ffff_ffff_0003, slot);
            assert!(is_live(k));
            assert_eq!((key_of(k), slot_of(k, s)), (key, slot));
            assert_eq!(s & !(0x3fff << 2), 0xffff_ffff_ffff_0003);
        }
        assert!(!is_live(EMPTY) && !is_live(TOMB));
    }

    #[test]
    fn probing_passes_tombstones_and_wraps() {
        let ix = Index::new(8);
        // Three keys with the same home (7): they wrap around to 0 and 1.
        let h = 7;
        for (n, key) in [10u64, 11, 12].into_iter().enumerate() {
            let b = ix.free_bucket(h);
            assert_eq!(b, (7 + n) & 7);
            ix.fill(b, key_word(key, key as u32), bucket_state(0, key as u32));
        }
        ix.bucket(0).key.store(TOMB, Ordering::Relaxed);
        assert_eq!(ix.find(h, 12).map(|(b, _)| b), Some(1));
        assert_eq!(ix.find(h, 11), None);
        // Tombstones are not reused within an array.
        assert_eq!(ix.free_bucket(h), 2);
        assert_eq!(ix.find(h ^ 0x100, 10).map(|(b, _)| b), Some(7));
        assert_eq!(ix.find(3, 99), None);
    }

    #[test]
    fn find_ends_on_a_full_array() {
        let ix = Index::new(4);
        for b in 0..4 {
            ix.bucket(b).key.store(TOMB, Ordering::Relaxed);
        }
        assert_eq!(ix.find(3, 5), None);
    }
}
