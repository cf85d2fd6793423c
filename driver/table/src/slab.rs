//! Entry slots in segments that never move while a reader can see them.
//!
//! A [`Segmented`] array is a directory of pointers to fixed-size segments.
//! The writer installs a segment before it hands out an id in it and
//! uninstalls one only when every id in it is free; an uninstalled segment is
//! freed through the epoch (see `reclaim.rs`), so a pinned reader that loaded
//! its pointer can still read it. Ids are stable for an entry's whole life,
//! which is what lets readers bump statistics in place while the index arrays
//! above them are rebuilt.

use crossbeam_epoch::Guard;
use std::ptr::{self, NonNull};
use std::sync::atomic::{AtomicPtr, AtomicU64, Ordering};

/// log2 of the number of elements in a segment.
pub(crate) const SEG_SHIFT: u32 = 12;
/// Elements in a segment (4096: 256 KiB of slots, 128 KiB of destinations).
pub(crate) const SEG_LEN: usize = 1 << SEG_SHIFT;
/// Segments a directory can address.
pub(crate) const DIR_LEN: usize = 8192;
/// Ids a [`Segmented`] array can address (2^25).
pub(crate) const MAX_IDS: usize = SEG_LEN * DIR_LEN;

/// One target entry. Its own cache line: readers that bump the statistics of
/// different entries do not share a line.
#[derive(Default, Debug)]
#[repr(C, align(64))]
pub(crate) struct Slot {
    /// The packed MAC, with [`crate::key::LIVE`] set while the entry lives.
    /// Written (release) after the other fields when an entry is created.
    pub(crate) key: AtomicU64,
    /// The [`crate::state::StateWord`]; written (release) by the writer.
    pub(crate) state: AtomicU64,
    /// [`crate::Tick`] of creation.
    pub(crate) created: AtomicU64,
    /// [`crate::Tick`] of the last hit, 0 if none (readers, relaxed).
    pub(crate) last_used: AtomicU64,
    /// Frames that hit the entry (readers, relaxed).
    pub(crate) frames: AtomicU64,
    /// Bytes of those frames (readers, relaxed).
    pub(crate) bytes: AtomicU64,
}

/// A directory of never-moving segments of `T`.
pub(crate) struct Segmented<T> {
    dir: Box<[AtomicPtr<T>]>,
}

/// A segment taken out of its directory, freed when dropped.
///
/// Dropping it is only sound once no reader can hold a pointer into it: it
/// travels through the epoch limbo first (`reclaim.rs`).
pub(crate) struct SegmentBox<T>(NonNull<T>);

// SAFETY: a SegmentBox owns its allocation exclusively once out of the
// directory (the writer holds it in limbo); T is made of atomics and is Send.
unsafe impl<T: Send> Send for SegmentBox<T> {}

impl<T> Drop for SegmentBox<T> {
    fn drop(&mut self) {
        // SAFETY: the pointer came from `Box::<[T]>::into_raw` of a SEG_LEN
        // slice in `Segmented::install`, and it is dropped exactly once.
        unsafe {
            drop(Box::from_raw(ptr::slice_from_raw_parts_mut(
                self.0.as_ptr(),
                SEG_LEN,
            )))
        }
    }
}

impl<T: Default> Segmented<T> {
    pub(crate) fn new() -> Self {
        Segmented {
            dir: (0..DIR_LEN)
                .map(|_| AtomicPtr::new(ptr::null_mut()))
                .collect(),
        }
    }

    /// The element `id`, if its segment is installed. `guard` proves the
    /// caller is pinned, so an uninstalled segment is not freed under it.
    #[inline]
    pub(crate) fn get<'g>(&'g self, id: u32, _guard: &'g Guard) -> Option<&'g T> {
        let seg = self.dir.get((id >> SEG_SHIFT) as usize)?;
        let p = seg.load(Ordering::Acquire);
        if p.is_null() {
            return None;
        }
        // SAFETY: a non-null directory entry points at a live SEG_LEN array
        // (published with release in `install`); it is only freed after a
        // grace period that starts after it was unlinked, and the caller is
        // pinned; the offset is below SEG_LEN.
        Some(unsafe { &*p.add(id as usize & (SEG_LEN - 1)) })
    }

    /// True if segment `seg` is installed.
    pub(crate) fn is_installed(&self, seg: usize) -> bool {
        !self.dir[seg].load(Ordering::Acquire).is_null()
    }

    /// Installs a fresh segment at `seg` (writer only; it must be empty).
    pub(crate) fn install(&self, seg: usize) {
        let b: Box<[T]> = (0..SEG_LEN).map(|_| T::default()).collect();
        let p = Box::into_raw(b) as *mut T;
        let old = self.dir[seg].swap(p, Ordering::Release);
        assert!(old.is_null(), "segment {seg} installed twice");
    }

    /// Takes segment `seg` out of the directory (writer only). The caller
    /// must retire the box through the epoch rather than drop it.
    pub(crate) fn uninstall(&self, seg: usize) -> Option<SegmentBox<T>> {
        NonNull::new(self.dir[seg].swap(ptr::null_mut(), Ordering::AcqRel)).map(SegmentBox)
    }
}

impl<T> Drop for Segmented<T> {
    fn drop(&mut self) {
        for seg in self.dir.iter_mut() {
            if let Some(p) = NonNull::new(*seg.get_mut()) {
                drop(SegmentBox(p));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_one_cache_line() {
        assert_eq!(std::mem::size_of::<Slot>(), 64);
        assert_eq!(std::mem::align_of::<Slot>(), 64);
    }

    #[test]
    fn install_get_uninstall() {
        let c = crossbeam_epoch::Collector::new();
        let h = c.register();
        let g = h.pin();
        let s: Segmented<Slot> = Segmented::new();
        assert!(s.get(5, &g).is_none());
        assert!(s.get(u32::MAX, &g).is_none());
        s.install(0);
        s.get(5, &g).unwrap().frames.store(7, Ordering::Relaxed);
        assert_eq!(s.get(5, &g).unwrap().frames.load(Ordering::Relaxed), 7);
        assert!(s.is_installed(0) && !s.is_installed(1));
        let b = s.uninstall(0).unwrap();
        assert!(s.get(5, &g).is_none());
        drop(b);
        s.install(DIR_LEN - 1);
        assert!(s.get((MAX_IDS - 1) as u32, &g).is_some());
    }
}
