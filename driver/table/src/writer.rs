//! The write side: inserts, updates, removals, flushes, and the migration
//! steps and reclamation that ride along with them.
//!
//! Every change takes the writer mutex (readers never do), pins the epoch,
//! makes its change, then: moves a bounded number of buckets if a migration
//! is under way, starts one if the load calls for it, seals and collects the
//! limbo, and publishes the counters.

use crate::alloc::SlotAlloc;
use crate::config::check_max_entries;
use crate::dests::DestInterner;
use crate::error::TableError;
use crate::index::{bucket_state, key_word, slot_of, Index, View, EMPTY, TOMB};
use crate::key::{pack, unpack, LIVE};
use crate::migrate::Migration;
use crate::reader::state_of;
use crate::reclaim::Limbo;
use crate::slab::{Slot, SEG_LEN, SEG_SHIFT};
use crate::state::{StateWord, TargetState};
use crate::table::{Shared, TargetTable};
use crossbeam_epoch::{Guard, LocalHandle};
use overlay_api::Mac;
use std::net::SocketAddr;
use std::sync::atomic::Ordering::{Relaxed, Release};
use std::sync::{Arc, MutexGuard};

/// What [`Writer::insert`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Inserted {
    /// A new entry (statistics start at zero).
    Created,
    /// The entry existed; its state changed, its statistics were kept.
    Updated {
        /// The state it had.
        previous: TargetState,
    },
}

/// A control thread's handle on a table. Not `Send`: make one on the thread
/// that writes.
pub struct Writer {
    shared: Arc<Shared>,
    handle: LocalHandle,
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writer").finish_non_exhaustive()
    }
}

/// The writer's private state, behind the writer mutex.
pub(crate) struct WriterState {
    pub(crate) alloc: SlotAlloc,
    pub(crate) dests: DestInterner,
    pub(crate) limbo: Limbo,
    pub(crate) migration: Option<Migration>,
    /// Live entries.
    pub(crate) live: usize,
    /// Non-empty buckets (live and tombstones) of the current array.
    pub(crate) filled: usize,
    pub(crate) max_entries: usize,
    pub(crate) min_capacity: usize,
}

impl WriterState {
    pub(crate) fn new(max_entries: usize, min_capacity: usize) -> Self {
        WriterState {
            alloc: SlotAlloc::default(),
            dests: DestInterner::default(),
            limbo: Limbo::default(),
            migration: None,
            live: 0,
            filled: 0,
            max_entries,
            min_capacity,
        }
    }
}

/// One write in progress: the shared table, the writer state (locked), and
/// the writer's pin.
pub(crate) struct Ctx<'a> {
    pub(crate) sh: &'a Shared,
    pub(crate) st: MutexGuard<'a, WriterState>,
    pub(crate) guard: &'a Guard,
}

/// Where a key was found.
struct Located {
    slot: u32,
    new_bucket: Option<usize>,
    old_bucket: Option<usize>,
}

impl Writer {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        let handle = shared.collector.register();
        Writer { shared, handle }
    }

    fn with<R>(&mut self, step: Option<usize>, f: impl FnOnce(&mut Ctx<'_>) -> R) -> R {
        let guard = self.handle.pin();
        let st = self
            .shared
            .writer
            .lock()
            .expect("a target table writer panicked mid-change");
        let mut cx = Ctx {
            sh: &self.shared,
            st,
            guard: &guard,
        };
        let r = f(&mut cx);
        cx.finish(step);
        r
    }

    /// Sets `mac`'s state, creating the entry if it has none.
    ///
    /// A new entry beyond `target/max_entries` is refused with
    /// [`TableError::Full`] (counted in `rejected_full`); the caller drops
    /// the frame that missed and counts it.
    pub fn insert(&mut self, mac: Mac, state: TargetState) -> Result<Inserted, TableError> {
        self.with(None, |cx| cx.insert(mac, state))
    }

    /// Removes `mac`'s entry; returns the state it had.
    pub fn remove(&mut self, mac: Mac) -> Option<TargetState> {
        self.with(None, |cx| cx.remove(mac))
    }

    /// Removes every entry; returns how many there were. The index goes
    /// back to its smallest size at once (a resize under way is cut short).
    pub fn flush(&mut self) -> usize {
        self.with(None, |cx| cx.flush())
    }

    /// Keeps only the entries for which `keep` is true (invalidations, the
    /// expiry of drop answers); returns how many were removed.
    pub fn retain(&mut self, keep: impl FnMut(Mac, TargetState) -> bool) -> usize {
        self.with(None, |cx| cx.retain(keep))
    }

    /// The state of `mac`'s entry, as the writer sees it.
    pub fn get(&mut self, mac: Mac) -> Option<TargetState> {
        self.with(None, |cx| {
            let key = pack(mac);
            let loc = cx.locate(key, cx.sh.hasher.home(key))?;
            Some(state_of(cx.sh, cx.slot(loc.slot), cx.guard))
        })
    }

    /// Moves up to `budget` buckets of a migration under way and reclaims
    /// what readers have let go of. For the event loop's timer, so that a
    /// resize finishes and memory returns even when no change comes. Returns
    /// true while work remains (a migration, or memory awaiting readers).
    pub fn step(&mut self, budget: usize) -> bool {
        self.with(Some(budget), |_| ());
        let st = self
            .shared
            .writer
            .lock()
            .expect("a target table writer panicked mid-change");
        st.migration.is_some() || !st.limbo.is_empty()
    }

    /// Steps until no migration is under way and everything removed has been
    /// reclaimed, or `rounds` steps have passed (readers pinned for long hold
    /// reclamation back). Returns true if it got there.
    pub fn quiesce(&mut self, rounds: usize) -> bool {
        for _ in 0..rounds {
            if !self.step(usize::MAX) {
                return true;
            }
            std::thread::yield_now();
        }
        false
    }

    /// Sets `target/max_entries`. Lowering it below the number of entries
    /// removes nothing: new entries are refused until enough are removed.
    pub fn set_max_entries(&mut self, n: usize) -> Result<(), TableError> {
        let n = check_max_entries(n)?;
        self.with(None, |cx| cx.st.max_entries = n);
        Ok(())
    }

    /// The table this writer writes.
    pub fn table(&self) -> TargetTable {
        TargetTable {
            shared: Arc::clone(&self.shared),
        }
    }

    /// Checks the table's internal invariants, panicking on the first broken
    /// one (tests; O(slots + buckets)).
    #[doc(hidden)]
    pub fn check_invariants(&mut self) {
        self.with(None, |cx| cx.check_invariants());
    }
}

impl<'a> Ctx<'a> {
    /// The current view.
    pub(crate) fn view(&self) -> &'a View {
        // SAFETY: only the writer (us, holding the lock) replaces the view,
        // and a replaced view is freed only after a grace period that our
        // own pin holds back.
        unsafe { &*self.sh.view.load(Relaxed) }
    }

    /// The current array (the new one during a migration).
    pub(crate) fn new_index(&self) -> &'a Index {
        // SAFETY: a view's arrays live as long as the view (see `view`).
        unsafe { &*self.view().new }
    }

    /// The array being migrated from, if any.
    pub(crate) fn old_index(&self) -> Option<&'a Index> {
        let old = self.view().old;
        // SAFETY: as for `new_index`.
        (!old.is_null()).then(|| unsafe { &*old })
    }

    /// Slot `id` (installed: the writer only names slots it allocated).
    pub(crate) fn slot(&self, id: u32) -> &'a Slot {
        self.sh
            .slots
            .get(id, self.guard)
            .expect("the writer names only installed slots")
    }

    fn locate(&self, key: u64, h: u32) -> Option<Located> {
        let new = self.new_index();
        let old = self.old_index();
        let in_new = new.find(h, key);
        let in_old = old.and_then(|o| o.find(h, key));
        let (ix, (b, k)) = match (in_new, in_old) {
            (Some(f), _) => (new, f),
            (None, Some(f)) => (old.expect("found in it"), f),
            (None, None) => return None,
        };
        Some(Located {
            slot: slot_of(k, ix.bucket(b).state.load(Relaxed)),
            new_bucket: in_new.map(|(b, _)| b),
            old_bucket: in_old.map(|(b, _)| b),
        })
    }

    /// Stores the encoded state word `w` of the entry at `loc` everywhere it
    /// is kept: its slot and its bucket in each array.
    fn set_state(&self, loc: &Located, w: u64) {
        self.slot(loc.slot).state.store(w, Release);
        let bw = bucket_state(w, loc.slot);
        if let Some(b) = loc.new_bucket {
            self.new_index().bucket(b).state.store(bw, Release);
        }
        if let (Some(b), Some(old)) = (loc.old_bucket, self.old_index()) {
            old.bucket(b).state.store(bw, Release);
        }
    }

    fn intern(&mut self, state: TargetState) -> Result<StateWord, TableError> {
        Ok(match state {
            TargetState::Pending => StateWord::Pending,
            TargetState::Drop => StateWord::Drop,
            TargetState::Valid(SocketAddr::V4(a)) => StateWord::Valid4(a),
            TargetState::Valid(a) => {
                let st = &mut *self.st;
                StateWord::Valid6(st.dests.acquire(a, &self.sh.dests, self.guard)?)
            }
        })
    }

    fn release(&mut self, w: StateWord) {
        if let StateWord::Valid6(id) = w {
            if self.st.dests.release(id) {
                self.st.limbo.dest(id);
            }
        }
    }

    fn insert(&mut self, mac: Mac, state: TargetState) -> Result<Inserted, TableError> {
        let key = pack(mac);
        let h = self.sh.hasher.home(key);
        if let Some(loc) = self.locate(key, h) {
            let slot = self.slot(loc.slot);
            let previous = state_of(self.sh, slot, self.guard);
            let w = self.intern(state)?;
            let old = StateWord::decode(slot.state.load(Relaxed));
            self.set_state(&loc, w.encode());
            self.release(old);
            return Ok(Inserted::Updated { previous });
        }
        if self.st.live >= self.st.max_entries {
            self.sh.counters.rejected_full.fetch_add(1, Relaxed);
            return Err(TableError::Full {
                max_entries: self.st.max_entries,
            });
        }
        let w = self.intern(state)?;
        let Some(id) = self.st.alloc.alloc(&self.sh.slots) else {
            self.release(w);
            return Err(TableError::SlotsExhausted {
                slots: crate::slab::MAX_IDS,
            });
        };
        let slot = self.slot(id);
        slot.state.store(w.encode(), Relaxed);
        slot.created.store(self.sh.clock.now().0, Relaxed);
        slot.last_used.store(0, Relaxed);
        slot.frames.store(0, Relaxed);
        slot.bytes.store(0, Relaxed);
        // For dumps, which walk the slots.
        slot.key.store(key | LIVE, Release);
        // Publishes the slot's fields to a reader that finds the bucket.
        let new = self.new_index();
        new.fill(
            new.free_bucket(h),
            key_word(key, id),
            bucket_state(w.encode(), id),
        );
        self.st.filled += 1;
        self.st.live += 1;
        Ok(Inserted::Created)
    }

    fn remove(&mut self, mac: Mac) -> Option<TargetState> {
        let key = pack(mac);
        let loc = self.locate(key, self.sh.hasher.home(key))?;
        if let Some(b) = loc.new_bucket {
            self.new_index().bucket(b).key.store(TOMB, Release);
        }
        if let (Some(b), Some(old)) = (loc.old_bucket, self.old_index()) {
            old.bucket(b).key.store(TOMB, Release);
        }
        Some(self.kill(loc.slot))
    }

    /// Ends the life of the entry in slot `id` (its buckets are gone or
    /// about to go) and retires the slot.
    fn kill(&mut self, id: u32) -> TargetState {
        let slot = self.slot(id);
        let previous = state_of(self.sh, slot, self.guard);
        slot.key.store(slot.key.load(Relaxed) & !LIVE, Release);
        self.release(StateWord::decode(slot.state.load(Relaxed)));
        self.st.limbo.slot(id);
        self.st.live -= 1;
        previous
    }

    /// Every live slot id (writer walks).
    fn live_slots(&self) -> Vec<u32> {
        let mut ids = Vec::with_capacity(self.st.live);
        for seg in self.st.alloc.installed_segments() {
            for off in 0..SEG_LEN {
                let id = ((seg << SEG_SHIFT) | off) as u32;
                if self.slot(id).key.load(Relaxed) & LIVE != 0 {
                    ids.push(id);
                }
            }
        }
        ids
    }

    fn flush(&mut self) -> usize {
        self.abort_migration();
        self.replace_index(self.st.min_capacity);
        let ids = self.live_slots();
        for &id in &ids {
            self.kill(id);
        }
        ids.len()
    }

    fn retain(&mut self, mut keep: impl FnMut(Mac, TargetState) -> bool) -> usize {
        let mut removed = 0;
        for id in self.live_slots() {
            let slot = self.slot(id);
            let mac = unpack(slot.key.load(Relaxed));
            if !keep(mac, state_of(self.sh, slot, self.guard)) {
                self.remove(mac);
                removed += 1;
            }
        }
        removed
    }

    /// After a change: migrate, maybe start a migration, reclaim, publish.
    fn finish(&mut self, step: Option<usize>) {
        let budget = step.or(self.st.migration.as_ref().map(|m| m.budget));
        if let Some(b) = budget {
            self.migrate(b);
        }
        self.maybe_resize();
        self.reclaim(step.is_some());
        self.publish();
    }

    fn reclaim(&mut self, force: bool) {
        let st = &mut *self.st;
        let (alloc, dests) = (&mut st.alloc, &mut st.dests);
        st.limbo
            .collect(|id| alloc.release(id), |id| dests.free_id(id));
        while let Some(seg) = st.alloc.trim(&self.sh.slots) {
            st.limbo.object(crate::reclaim::Unlinked::Segment(seg));
        }
        st.limbo.seal(self.guard, force);
    }

    fn publish(&self) {
        let c = &self.sh.counters;
        let st = &*self.st;
        c.len.store(st.live as u64, Relaxed);
        c.max_entries.store(st.max_entries as u64, Relaxed);
        c.capacity
            .store(self.new_index().capacity() as u64, Relaxed);
        c.slots_allocated.store(st.alloc.capacity() as u64, Relaxed);
        c.slots_waiting
            .store(st.limbo.slots_waiting as u64, Relaxed);
        c.destinations.store(st.dests.len() as u64, Relaxed);
        match &st.migration {
            Some(m) => {
                c.resize_in_progress.store(1, Relaxed);
                c.resize_cursor.store(m.cursor as u64, Relaxed);
                c.resize_buckets.store(m.old_cap as u64, Relaxed);
            }
            None => {
                c.resize_in_progress.store(0, Relaxed);
                c.resize_cursor.store(0, Relaxed);
                c.resize_buckets.store(0, Relaxed);
            }
        }
    }

    fn check_invariants(&self) {
        let live = self.live_slots();
        assert_eq!(live.len(), self.st.live, "live count");
        let new = self.new_index();
        let mut filled = 0;
        for b in 0..new.capacity() {
            filled += usize::from(new.bucket(b).key.load(Relaxed) != EMPTY);
        }
        assert_eq!(filled, self.st.filled, "filled count");
        assert!(filled * 4 <= new.capacity() * 3, "array over 3/4 filled");
        for id in live {
            let slot = self.slot(id);
            let key = slot.key.load(Relaxed) & !LIVE;
            let loc = self.locate(key, self.sh.hasher.home(key));
            let loc = loc.unwrap_or_else(|| panic!("live slot {id} not indexed"));
            assert_eq!(loc.slot, id, "bucket names another slot");
            let w = bucket_state(slot.state.load(Relaxed), id);
            for (b, ix) in [
                (loc.new_bucket, Some(new)),
                (loc.old_bucket, self.old_index()),
            ] {
                if let (Some(b), Some(ix)) = (b, ix) {
                    assert_eq!(
                        ix.bucket(b).state.load(Relaxed),
                        w,
                        "bucket state differs from slot"
                    );
                }
            }
        }
    }
}
