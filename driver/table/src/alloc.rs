//! The writer's slot allocator: which slot ids are free, lowest first.
//!
//! Allocation takes from the lowest segment that has a free slot, so that
//! when the table shrinks the high segments empty out and can be given back
//! (through the epoch: a pinned reader or dump may still be reading one).
//! A freed id comes back here only after its grace period (`reclaim.rs`).

use crate::slab::{SegmentBox, Segmented, Slot, DIR_LEN, SEG_LEN, SEG_SHIFT};
use std::collections::BTreeSet;

/// Per-segment bookkeeping.
struct SegState {
    /// Free offsets, ready to hand out.
    free: Vec<u16>,
    /// Slots live or in limbo.
    used: usize,
}

/// Slot ids: installed segments, their free lists.
#[derive(Default)]
pub(crate) struct SlotAlloc {
    segs: Vec<Option<SegState>>,
    /// Installed segments with a free slot.
    nonfull: BTreeSet<usize>,
    /// Installed segments with no slot live or in limbo.
    empty: BTreeSet<usize>,
    installed: usize,
    free_total: usize,
}

impl SlotAlloc {
    /// A free slot id, installing a segment if none has one; `None` when all
    /// [`crate::slab::MAX_IDS`] ids are live or in limbo.
    pub(crate) fn alloc(&mut self, slab: &Segmented<Slot>) -> Option<u32> {
        let seg = match self.nonfull.first() {
            Some(&s) => s,
            None => {
                let s = self
                    .segs
                    .iter()
                    .position(Option::is_none)
                    .unwrap_or(self.segs.len());
                if s >= DIR_LEN {
                    return None;
                }
                slab.install(s);
                if s == self.segs.len() {
                    self.segs.push(None);
                }
                // Pop order hands out low offsets first.
                self.segs[s] = Some(SegState {
                    free: (0..SEG_LEN as u16).rev().collect(),
                    used: 0,
                });
                self.nonfull.insert(s);
                self.empty.insert(s);
                self.installed += 1;
                self.free_total += SEG_LEN;
                s
            }
        };
        let st = self.segs[seg]
            .as_mut()
            .expect("nonfull names an installed segment");
        let off = st.free.pop().expect("nonfull segment has a free slot");
        if st.used == 0 {
            self.empty.remove(&seg);
        }
        st.used += 1;
        if st.free.is_empty() {
            self.nonfull.remove(&seg);
        }
        self.free_total -= 1;
        Some(((seg << SEG_SHIFT) | usize::from(off)) as u32)
    }

    /// Returns `id` to the free list (its grace period is over).
    pub(crate) fn release(&mut self, id: u32) {
        let seg = (id >> SEG_SHIFT) as usize;
        let st = self.segs[seg]
            .as_mut()
            .expect("released slot in an installed segment");
        st.free.push((id as usize & (SEG_LEN - 1)) as u16);
        st.used -= 1;
        if st.used == 0 {
            self.empty.insert(seg);
        }
        self.nonfull.insert(seg);
        self.free_total += 1;
    }

    /// Takes the highest entirely free segment out of the directory, if the
    /// others keep at least half a segment of free slots (hysteresis: churn
    /// at a segment boundary does not install and free it over and over).
    /// The caller retires the box through the epoch.
    pub(crate) fn trim(&mut self, slab: &Segmented<Slot>) -> Option<SegmentBox<Slot>> {
        let &seg = self.empty.last()?;
        if self.installed <= 1 || self.free_total - SEG_LEN < SEG_LEN / 2 {
            return None;
        }
        self.empty.remove(&seg);
        self.nonfull.remove(&seg);
        self.segs[seg] = None;
        self.installed -= 1;
        self.free_total -= SEG_LEN;
        slab.uninstall(seg)
    }

    /// Installed segments, in order (for walks over every slot).
    pub(crate) fn installed_segments(&self) -> impl Iterator<Item = usize> + '_ {
        self.segs
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.as_ref().map(|_| i))
    }

    /// Slots the installed segments hold.
    pub(crate) fn capacity(&self) -> usize {
        self.installed * SEG_LEN
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lowest_first_and_trim_with_hysteresis() {
        let slab: Segmented<Slot> = Segmented::new();
        let mut a = SlotAlloc::default();
        let ids: Vec<u32> = (0..3 * SEG_LEN).map(|_| a.alloc(&slab).unwrap()).collect();
        assert_eq!(ids[0], 0);
        assert_eq!(ids[SEG_LEN] as usize, SEG_LEN);
        assert_eq!(a.capacity(), 3 * SEG_LEN);
        // Free the top segment: the others are full, so no slack: kept.
        for &id in &ids[2 * SEG_LEN..] {
            a.release(id);
        }
        assert!(a.trim(&slab).is_none());
        // Free half of segment 1: now there is slack and segment 2 goes.
        for &id in &ids[SEG_LEN..SEG_LEN + SEG_LEN / 2] {
            a.release(id);
        }
        assert!(a.trim(&slab).is_some());
        assert!(!slab.is_installed(2));
        assert_eq!(a.capacity(), 2 * SEG_LEN);
        // Reuse comes from the lowest segment with room.
        let reused = a.alloc(&slab).unwrap();
        assert_eq!(reused as usize >> SEG_SHIFT, 1);
        a.release(reused);
        assert_eq!(a.installed_segments().collect::<Vec<_>>(), vec![0, 1]);
        // Any empty segment can go, not only the top one.
        for &id in &ids[..SEG_LEN] {
            a.release(id);
        }
        assert!(a.trim(&slab).is_some());
        assert!(!slab.is_installed(0) && slab.is_installed(1));
        assert!(a.trim(&slab).is_none());
    }
}
