//! The read side: lookups and hits from the forwarding threads.
//!
//! A lookup pins the epoch, loads the current view, probes its array(s) for
//! the key, and reads the bucket's state word and (for an IPv6 destination)
//! the destination record: one bucket, usually one cache line. A hit also
//! bumps the statistics in the entry's slot. Nothing on this path waits,
//! retries, allocates or writes shared memory, except those statistics.

use crate::dump::Dump;
use crate::index::{slot_of, Index};
use crate::key::pack;
use crate::slab::Slot;
use crate::state::{StateWord, TargetState, Tick};
use crate::table::{Shared, TargetTable};
use crossbeam_epoch::{Guard, LocalHandle};
use overlay_api::Mac;
use std::net::SocketAddr;
use std::sync::atomic::Ordering::{Acquire, Relaxed};
use std::sync::Arc;

/// A forwarding thread's handle on a table. Not `Send`: make one on each
/// thread that reads, and keep it (making one registers with the table's
/// epoch domain).
pub struct Reader {
    shared: Arc<Shared>,
    handle: LocalHandle,
}

impl std::fmt::Debug for Reader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reader").finish_non_exhaustive()
    }
}

/// A pinned reader: lookups through it see a table whose memory stays put
/// until the guard drops. Pin once per batch of frames, not per frame; do not
/// hold one across a blocking call (it holds back reclamation, not the
/// writer).
pub struct ReadGuard<'r> {
    shared: &'r Shared,
    guard: Guard,
}

impl Reader {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        let handle = shared.collector.register();
        Reader { shared, handle }
    }

    /// Pins, for a batch of lookups.
    #[inline]
    pub fn pin(&self) -> ReadGuard<'_> {
        ReadGuard {
            shared: &self.shared,
            guard: self.handle.pin(),
        }
    }

    /// One lookup, pinning for it alone.
    #[inline]
    pub fn lookup(&self, mac: Mac) -> Option<TargetState> {
        self.pin().lookup(mac)
    }

    /// One hit, pinning for it alone (see [`ReadGuard::hit`]).
    #[inline]
    pub fn hit(&self, mac: Mac, bytes: u64, now: Tick) -> Option<TargetState> {
        self.pin().hit(mac, bytes, now)
    }

    /// One valid hit, pinning for it alone (see [`ReadGuard::hit_valid`]).
    #[inline]
    pub fn hit_valid(&self, mac: Mac, bytes: u64, now: Tick) -> Option<SocketAddr> {
        self.pin().hit_valid(mac, bytes, now)
    }

    /// Streams every entry (see [`Dump`]).
    pub fn dump(&self) -> Dump<'_> {
        Dump::new(&self.shared, self.handle.pin(), 0)
    }

    /// Streams the entries from slot position `from` on: a dump resumed
    /// from [`Dump::position`], so a control socket can hand a large table
    /// out a page at a time without holding anything between pages.
    pub fn dump_from(&self, from: usize) -> Dump<'_> {
        Dump::new(&self.shared, self.handle.pin(), from)
    }

    /// The table this reader reads.
    pub fn table(&self) -> TargetTable {
        TargetTable {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl ReadGuard<'_> {
    /// The state of `mac`'s entry, without counting a frame.
    #[inline]
    pub fn lookup(&self, mac: Mac) -> Option<TargetState> {
        self.find(mac)
            .map(|(_, s)| decode(self.shared, s, &self.guard))
    }

    /// The state of `mac`'s entry, counting one frame of `bytes` bytes
    /// against it at `now` (relaxed atomics on the entry's own line). Frames
    /// are counted whatever the state: a pending or drop entry is hit too.
    #[inline]
    pub fn hit(&self, mac: Mac, bytes: u64, now: Tick) -> Option<TargetState> {
        let (k, s) = self.find(mac)?;
        let state = decode(self.shared, s, &self.guard);
        self.count(k, s, bytes, now);
        Some(state)
    }

    /// The destination of `mac`'s entry if it is valid, counting one frame
    /// of `bytes` bytes against it at `now`; nothing is counted otherwise.
    /// For a forwarding thread that hands every other frame on to the
    /// thread that owns the writer (which then counts it with
    /// [`hit`](Self::hit)), so that each frame is counted once.
    #[inline]
    pub fn hit_valid(&self, mac: Mac, bytes: u64, now: Tick) -> Option<SocketAddr> {
        let (k, s) = self.find(mac)?;
        let TargetState::Valid(a) = decode(self.shared, s, &self.guard) else {
            return None;
        };
        self.count(k, s, bytes, now);
        Some(a)
    }

    /// Counts one frame against the slot a bucket names.
    #[inline(always)]
    fn count(&self, k: u64, s: u64, bytes: u64, now: Tick) {
        if let Some(slot) = self.shared.slots.get(slot_of(k, s), &self.guard) {
            slot.frames.fetch_add(1, Relaxed);
            slot.bytes.fetch_add(bytes, Relaxed);
            slot.last_used.store(now.0, Relaxed);
        }
    }

    /// The key word and state word of `mac`'s live bucket, if any.
    #[inline(always)]
    fn find(&self, mac: Mac) -> Option<(u64, u64)> {
        let key = pack(mac);
        let h = self.shared.hasher.home(key);
        // SAFETY: the view pointer is always valid (made by Box::into_raw,
        // replaced by the writer with a release store) and a replaced view
        // and its arrays are freed only after every reader pinned at the
        // time of replacement, us included, has unpinned.
        let view = unsafe { &*self.shared.view.load(Acquire) };
        // SAFETY: as above: a view's arrays live at least as long as it.
        let new = unsafe { &*view.new };
        let probe = |ix: &Index| {
            ix.find(h, key)
                .map(|(i, k)| (k, ix.bucket(i).state.load(Acquire)))
        };
        if view.old.is_null() {
            return probe(new);
        }
        // SAFETY: as above.
        let old = unsafe { &*view.old };
        // Every key that lived when the migration began is still in `old`
        // (copying never clears a bucket) and every key added since is in
        // `new`, so probing both, in either order, misses nothing. Buckets
        // below the cursor are copied: try `new` first there.
        if old.home(h) >= view.cursor.load(Relaxed) {
            probe(old).or_else(|| probe(new))
        } else {
            probe(new).or_else(|| probe(old))
        }
    }
}

/// The state in `slot` (dumps and the writer; the caller is pinned).
#[inline]
pub(crate) fn state_of(shared: &Shared, slot: &Slot, guard: &Guard) -> TargetState {
    decode(shared, slot.state.load(Acquire), guard)
}

/// The state a state word says (the caller is pinned and acquired it).
#[inline]
pub(crate) fn decode(shared: &Shared, w: u64, guard: &Guard) -> TargetState {
    match StateWord::decode(w) {
        StateWord::Pending => TargetState::Pending,
        StateWord::Drop => TargetState::Drop,
        // Destination segments are installed before their first id is
        // published and never removed, so `get` cannot fail here; should
        // that break, a pending answer makes the data path ask again rather
        // than send somewhere wrong.
        StateWord::Valid4(a) => TargetState::Valid(SocketAddr::V4(a)),
        StateWord::Valid6(id) => shared
            .dests
            .get(id, guard)
            .map_or(TargetState::Pending, |r| TargetState::Valid(r.load())),
    }
}
