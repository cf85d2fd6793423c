//! Dumps: every entry, streamed, without stopping anyone.
//!
//! A dump walks the slot segments in id order. It holds the epoch for one
//! segment (4096 slots) at a time and repins between segments, so it never
//! holds back reclamation for long and never blocks a reader or the writer.
//! Each entry is read while its slot cannot be reused (we are pinned and saw
//! it live), so its MAC, state and destination belong together.
//!
//! An entry that lives for the whole dump is yielded exactly once (slots do
//! not move). One added or removed during the dump may or may not be; one
//! removed and added again may be yielded twice (two lives, two slots).

use crate::key::{unpack, LIVE};
use crate::reader::state_of;
use crate::slab::{MAX_IDS, SEG_LEN, SEG_SHIFT};
use crate::state::{EntrySnapshot, Tick};
use crate::table::Shared;
use crossbeam_epoch::Guard;
use std::sync::atomic::Ordering::{Acquire, Relaxed};

/// An iterator over every live entry (see the module comment).
pub struct Dump<'r> {
    shared: &'r Shared,
    guard: Guard,
    next: usize,
}

impl std::fmt::Debug for Dump<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dump").field("next", &self.next).finish()
    }
}

impl<'r> Dump<'r> {
    pub(crate) fn new(shared: &'r Shared, guard: Guard, from: usize) -> Self {
        Dump {
            shared,
            guard,
            next: from.min(MAX_IDS),
        }
    }

    /// Where the next entry will be looked for: give it to
    /// [`crate::Reader::dump_from`] to resume after the entries yielded so far.
    pub fn position(&self) -> usize {
        self.next
    }
}

impl Iterator for Dump<'_> {
    type Item = EntrySnapshot;

    fn next(&mut self) -> Option<EntrySnapshot> {
        while self.next < MAX_IDS {
            let id = self.next;
            if id & (SEG_LEN - 1) == 0 {
                self.guard.repin();
                if !self.shared.slots.is_installed(id >> SEG_SHIFT) {
                    self.next += SEG_LEN;
                    continue;
                }
            }
            self.next += 1;
            // A segment given back since the check reads as absent: skip it.
            let Some(slot) = self.shared.slots.get(id as u32, &self.guard) else {
                self.next = (id | (SEG_LEN - 1)) + 1;
                continue;
            };
            let key = slot.key.load(Acquire);
            if key & LIVE == 0 {
                continue;
            }
            let last = slot.last_used.load(Relaxed);
            return Some(EntrySnapshot {
                mac: unpack(key),
                state: state_of(self.shared, slot, &self.guard),
                created: Tick(slot.created.load(Relaxed)),
                last_used: (last != 0).then_some(Tick(last)),
                frames: slot.frames.load(Relaxed),
                bytes: slot.bytes.load(Relaxed),
            });
        }
        None
    }
}
