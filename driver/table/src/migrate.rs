//! Live resize: the incremental migration from one index array to another.
//!
//! Starting one publishes a view naming both arrays; each write (and each
//! [`crate::Writer::step`]) then copies the next `budget` buckets of the old
//! array into the new one, never clearing the old; when the cursor reaches
//! the end, a view naming the new array alone is published and the old
//! array and views go to the limbo. Entries themselves never move: only
//! their 16-byte buckets (key and state) are copied; the statistics stay in
//! the slots.

use crate::config::MAX_CAPACITY;
use crate::index::{is_live, key_of, Index, View};
use crate::reclaim::Unlinked;
use crate::writer::Ctx;
use std::ptr::{self, NonNull};
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering::{AcqRel, Relaxed, Release};
use std::time::Instant;

/// Fewest buckets a write moves while a migration is under way.
pub(crate) const MIN_BUDGET: usize = 64;

/// A migration under way.
#[derive(Debug)]
pub(crate) struct Migration {
    pub(crate) old_cap: usize,
    pub(crate) new_cap: usize,
    /// Buckets of the old array copied so far.
    pub(crate) cursor: usize,
    /// Entries copied so far.
    pub(crate) moved: u64,
    /// Entries live when it began (an upper bound of `moved`).
    pub(crate) total: u64,
    /// Buckets each write moves.
    pub(crate) budget: usize,
    pub(crate) started: Instant,
}

/// The array size for `live` entries: the smallest power of two that holds
/// them at a load of 1/3 or less, between the bounds. Growing past a load of
/// 1/2 doubles the array (load about 1/4); shrinking under 1/8 lands between
/// 1/6 and 1/3: far from both triggers.
pub(crate) fn target_capacity(live: usize, min: usize) -> usize {
    live.saturating_mul(3)
        .min(MAX_CAPACITY)
        .next_power_of_two()
        .clamp(min, MAX_CAPACITY)
}

/// Buckets per write so that the copy ends before the writes that come
/// meanwhile can fill the new array past half: the new array starts at a
/// load of 1/3 or less, so at least `new_cap / 6` inserts fit; finish in half
/// that.
fn budget(old_cap: usize, new_cap: usize, live: usize) -> usize {
    let writes = ((new_cap / 2).saturating_sub(live) / 2).max(1);
    old_cap.div_ceil(writes).max(MIN_BUDGET)
}

impl Ctx<'_> {
    /// Starts a migration if the current array is over half filled (live
    /// buckets and tombstones) or under 1/8 live; finishes a migration at once
    /// if inserts outran it (its new array 3/4 filled: should not happen
    /// with the budget above, but the array must never fill).
    pub(crate) fn maybe_resize(&mut self) {
        let cap = self.new_index().capacity();
        if self.st.migration.is_some() {
            if self.st.filled * 4 <= cap * 3 {
                return;
            }
            self.migrate(usize::MAX);
        }
        let (live, filled, min) = (self.st.live, self.st.filled, self.st.min_capacity);
        let over = filled * 2 > cap;
        let under = live * 8 < cap && cap > min;
        if over || under {
            self.start_migration(target_capacity(live, min));
        }
    }

    fn start_migration(&mut self, new_cap: usize) {
        let current = self.sh.view.load(Relaxed);
        let old = self.new_index();
        let old_cap = old.capacity();
        let new = Box::into_raw(Box::new(Index::new(new_cap)));
        let view = Box::into_raw(Box::new(View {
            new,
            old: old as *const Index,
            cursor: AtomicUsize::new(0),
        }));
        self.sh.view.store(view, Release);
        self.retire_view(current);
        let live = self.st.live;
        self.st.filled = 0;
        self.st.migration = Some(Migration {
            old_cap,
            new_cap,
            cursor: 0,
            moved: 0,
            total: live as u64,
            budget: budget(old_cap, new_cap, live),
            started: Instant::now(),
        });
        self.sh.observer.on_resize_start(old_cap, new_cap);
    }

    /// Copies up to `budget` buckets; finishes the migration at the end.
    pub(crate) fn migrate(&mut self, budget: usize) {
        let (Some(old), Some(m)) = (self.old_index(), self.st.migration.as_ref()) else {
            return;
        };
        let new = self.new_index();
        let start = m.cursor;
        let end = start.saturating_add(budget).min(old.capacity());
        let (mut moved, mut filled) = (0u64, 0usize);
        for b in start..end {
            let from = old.bucket(b);
            let k = from.key.load(Relaxed);
            if is_live(k) {
                let to = new.free_bucket(self.sh.hasher.home(key_of(k)));
                new.fill(to, k, from.state.load(Relaxed));
                moved += 1;
                filled += 1;
            }
        }
        self.view().cursor.store(end, Relaxed);
        self.st.filled += filled;
        let m = self.st.migration.as_mut().expect("checked above");
        m.cursor = end;
        m.moved += moved;
        let (so_far, total) = (m.moved, m.total);
        self.sh.counters.entries_moved.fetch_add(moved, Relaxed);
        if end > start {
            self.sh.observer.on_resize_step(so_far, total);
        }
        if end == old.capacity() {
            self.finish_migration();
        }
    }

    /// Publishes the new array alone and retires the old one.
    fn finish_migration(&mut self) {
        let Some(m) = self.st.migration.take() else {
            return;
        };
        let current = self.sh.view.load(Relaxed);
        let view = Box::into_raw(Box::new(View {
            new: self.view().new,
            old: ptr::null(),
            cursor: AtomicUsize::new(0),
        }));
        let old = self.view().old;
        self.sh.view.store(view, Release);
        self.retire_view(current);
        self.retire_index(old);
        self.sh.counters.resizes.fetch_add(1, Relaxed);
        let ns = u64::try_from(m.started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.sh
            .observer
            .on_resize_done(m.old_cap, m.new_cap, m.moved, ns);
    }

    /// Ends a migration without copying the rest (a flush replaces both
    /// arrays anyway).
    pub(crate) fn abort_migration(&mut self) {
        if let Some(m) = self.st.migration.take() {
            let ns = u64::try_from(m.started.elapsed().as_nanos()).unwrap_or(u64::MAX);
            self.sh
                .observer
                .on_resize_done(m.old_cap, m.new_cap, m.moved, ns);
        }
    }

    /// Publishes a fresh empty array of `cap` buckets, retiring the current
    /// view and every array it names.
    pub(crate) fn replace_index(&mut self, cap: usize) {
        let new = Box::into_raw(Box::new(Index::new(cap)));
        let view = Box::into_raw(Box::new(View {
            new,
            old: ptr::null(),
            cursor: AtomicUsize::new(0),
        }));
        let current = self.sh.view.swap(view, AcqRel);
        // SAFETY: `current` was the published view until the swap; it is
        // ours to retire (and still allocated: our pin holds it).
        let (cn, co) = unsafe { ((*current).new, (*current).old) };
        self.retire_view(current);
        self.retire_index(cn);
        self.retire_index(co);
        self.st.filled = 0;
    }

    fn retire_view(&mut self, v: *mut View) {
        if let Some(p) = NonNull::new(v) {
            self.st.limbo.object(Unlinked::View(p));
        }
    }

    fn retire_index(&mut self, ix: *const Index) {
        if let Some(p) = NonNull::new(ix as *mut Index) {
            self.st.limbo.object(Unlinked::Index(p));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capacities_double_and_keep_load_under_a_third() {
        assert_eq!(target_capacity(0, 64), 64);
        assert_eq!(target_capacity(32, 64), 128);
        // The grow trigger (just over half of 1024) doubles.
        assert_eq!(target_capacity(513, 64), 2048);
        assert_eq!(target_capacity(1 << 20, 64), 1 << 22);
        assert_eq!(target_capacity(usize::MAX / 2, 64), MAX_CAPACITY);
    }

    #[test]
    fn budget_finishes_before_the_new_array_fills() {
        for (old_cap, live) in [
            (1024, 512),
            (1 << 21, 1 << 20),
            (1 << 21, 1 << 17),
            (1 << 21, 10),
            (64, 33),
        ] {
            let new_cap = target_capacity(live, 64);
            let b = budget(old_cap, new_cap, live);
            let writes = old_cap.div_ceil(b);
            // Each write adds at most one entry: live + writes stays at or
            // under half the new array.
            assert!(live + writes <= new_cap / 2, "{old_cap} {live} {b}");
        }
    }
}
