//! Reclamation: what the writer unlinked waits here until no reader can
//! still reach it.
//!
//! The writer collects what it unlinks (slot ids, destination ids, index
//! arrays, views, slot segments) in an open batch. Sealing a batch defers,
//! through crossbeam-epoch, a closure that only raises the batch's flag; the
//! epoch runs it once every reader that was pinned when the batch was sealed
//! has unpinned. The writer then frees the memory and returns the ids to its
//! free lists itself. So a reader thread never frees a table allocation: at
//! most it runs a flag store while crossbeam collects, and frees the small
//! `Arc` of a flag if the writer let go of it first (it does not: it waits for
//! the count to fall to one).

use crate::index::{Index, View};
use crate::slab::{SegmentBox, Slot};
use crossbeam_epoch::Guard;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// An allocation unlinked from the table; dropping it frees it.
pub(crate) enum Unlinked {
    /// An index array that no current view names.
    Index(NonNull<Index>),
    /// A view that is no longer the current one.
    View(NonNull<View>),
    /// A slot segment taken out of the directory (held only to be dropped).
    #[allow(dead_code)]
    Segment(SegmentBox<Slot>),
}

// SAFETY: an Unlinked value is the only owner of its allocation (the table
// no longer points at it) and is only dropped by the writer, after the
// grace period; the pointees are made of atomics.
unsafe impl Send for Unlinked {}

impl Drop for Unlinked {
    fn drop(&mut self) {
        match self {
            // SAFETY: made by `Box::into_raw` when published, unlinked from
            // the table before being wrapped, and dropped once.
            Unlinked::Index(p) => unsafe { drop(Box::from_raw(p.as_ptr())) },
            // SAFETY: as above.
            Unlinked::View(p) => unsafe { drop(Box::from_raw(p.as_ptr())) },
            Unlinked::Segment(_) => {}
        }
    }
}

/// A sealed batch: freed once `flag` is raised and the writer holds the only
/// reference to it.
struct Sealed {
    flag: Arc<AtomicBool>,
    slots: Vec<u32>,
    dests: Vec<u32>,
    objects: Vec<Unlinked>,
}

/// Batches waiting for their grace period.
#[derive(Default)]
pub(crate) struct Limbo {
    slots: Vec<u32>,
    dests: Vec<u32>,
    objects: Vec<Unlinked>,
    sealed: Vec<Sealed>,
    /// Slot ids in limbo, open or sealed.
    pub(crate) slots_waiting: usize,
}

/// An open batch is sealed at the end of a write once it holds this many ids
/// (or any allocation, or nothing else is waiting): fewer, larger batches.
const SEAL_AT: usize = 256;

impl Limbo {
    /// Retires a slot id (its entry was removed).
    pub(crate) fn slot(&mut self, id: u32) {
        self.slots.push(id);
        self.slots_waiting += 1;
    }

    /// Retires a destination id (no entry names it any more).
    pub(crate) fn dest(&mut self, id: u32) {
        self.dests.push(id);
    }

    /// Retires an allocation.
    pub(crate) fn object(&mut self, o: Unlinked) {
        self.objects.push(o);
    }

    /// True when nothing waits.
    pub(crate) fn is_empty(&self) -> bool {
        self.slots.is_empty()
            && self.dests.is_empty()
            && self.objects.is_empty()
            && self.sealed.is_empty()
    }

    /// Seals the open batch if it is worth it (or `force`), deferring its
    /// flag on `guard`, and flushes the guard so the epoch can move.
    pub(crate) fn seal(&mut self, guard: &Guard, force: bool) {
        let open = self.slots.len() + self.dests.len() + self.objects.len();
        if open == 0 {
            if !self.sealed.is_empty() {
                guard.flush();
            }
            return;
        }
        if !(force || open >= SEAL_AT || !self.objects.is_empty() || self.sealed.is_empty()) {
            return;
        }
        let flag = Arc::new(AtomicBool::new(false));
        let f = Arc::clone(&flag);
        // The closure runs on whichever thread collects: it only stores.
        guard.defer(move || f.store(true, Ordering::Release));
        self.sealed.push(Sealed {
            flag,
            slots: std::mem::take(&mut self.slots),
            dests: std::mem::take(&mut self.dests),
            objects: std::mem::take(&mut self.objects),
        });
        guard.flush();
    }

    /// Frees every batch whose grace period is over, handing its slot and
    /// destination ids to `free_slot` and `free_dest`. Returns how many
    /// batches are still waiting.
    pub(crate) fn collect(
        &mut self,
        mut free_slot: impl FnMut(u32),
        mut free_dest: impl FnMut(u32),
    ) -> usize {
        let mut i = 0;
        while i < self.sealed.len() {
            let b = &self.sealed[i];
            // The count check makes sure the deferred closure (and its clone
            // of the Arc) is gone, so the writer, not a reader, frees it.
            if b.flag.load(Ordering::Acquire) && Arc::strong_count(&b.flag) == 1 {
                let b = self.sealed.swap_remove(i);
                self.slots_waiting -= b.slots.len();
                b.slots.into_iter().for_each(&mut free_slot);
                b.dests.into_iter().for_each(&mut free_dest);
                drop(b.objects);
            } else {
                i += 1;
            }
        }
        self.sealed.len()
    }
}
