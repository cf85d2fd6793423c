//! What the table tells the outside while it works: resize callbacks (for
//! overlayd's USDT probes) and counters (for the stats snapshot).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Hooks on the life of a live resize, called by the writer with its lock
/// held (keep them cheap: a probe, a counter). Every method has an empty
/// default.
pub trait ResizeObserver: Send + Sync {
    /// A migration from an index array of `old_cap` buckets to one of
    /// `new_cap` buckets began (equal capacities: a rehash that clears
    /// tombstones).
    fn on_resize_start(&self, old_cap: usize, new_cap: usize) {
        let _ = (old_cap, new_cap);
    }

    /// A step moved entries: `moved_so_far` of at most `total` (the entries
    /// live when the migration began; removed ones are not moved).
    fn on_resize_step(&self, moved_so_far: u64, total: u64) {
        let _ = (moved_so_far, total);
    }

    /// The migration finished (or was cut short by a flush): `moved` entries
    /// in `ns` nanoseconds of wall time.
    fn on_resize_done(&self, old_cap: usize, new_cap: usize, moved: u64, ns: u64) {
        let _ = (old_cap, new_cap, moved, ns);
    }
}

/// The observer that observes nothing.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoObserver;

impl ResizeObserver for NoObserver {}

/// A snapshot of the table's counters. Each field is read on its own
/// (relaxed): fields may be a write apart from each other.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct TableCounters {
    /// Live entries.
    pub len: u64,
    /// `target/max_entries` in force.
    pub max_entries: u64,
    /// Buckets of the current index array (the new one during a resize).
    pub capacity: u64,
    /// Resizes completed (grows, shrinks and rehashes).
    pub resizes: u64,
    /// Entries moved by migrations, all resizes together.
    pub entries_moved: u64,
    /// True while a migration is under way.
    pub resize_in_progress: bool,
    /// During a migration: buckets of the old array already copied.
    pub resize_cursor: u64,
    /// During a migration: buckets of the old array.
    pub resize_buckets: u64,
    /// New entries refused because the table was at `target/max_entries`.
    pub rejected_full: u64,
    /// Entry slots allocated (live, free and awaiting reclamation).
    pub slots_allocated: u64,
    /// Removed entries' slots awaiting their grace period.
    pub slots_waiting: u64,
    /// Distinct IPv6 UL3 destinations interned (IPv4 ones live in the
    /// entries' state words).
    pub destinations: u64,
}

impl TableCounters {
    /// Live entries per bucket of the current array.
    pub fn load(&self) -> f64 {
        if self.capacity == 0 {
            0.0
        } else {
            self.len as f64 / self.capacity as f64
        }
    }
}

/// The counters' cells, written by the writer (relaxed), read by anyone.
#[derive(Debug, Default)]
pub(crate) struct CounterCells {
    pub(crate) len: AtomicU64,
    pub(crate) max_entries: AtomicU64,
    pub(crate) capacity: AtomicU64,
    pub(crate) resizes: AtomicU64,
    pub(crate) entries_moved: AtomicU64,
    pub(crate) resize_in_progress: AtomicU64,
    pub(crate) resize_cursor: AtomicU64,
    pub(crate) resize_buckets: AtomicU64,
    pub(crate) rejected_full: AtomicU64,
    pub(crate) slots_allocated: AtomicU64,
    pub(crate) slots_waiting: AtomicU64,
    pub(crate) destinations: AtomicU64,
}

impl CounterCells {
    pub(crate) fn snapshot(&self) -> TableCounters {
        TableCounters {
            len: self.len.load(Relaxed),
            max_entries: self.max_entries.load(Relaxed),
            capacity: self.capacity.load(Relaxed),
            resizes: self.resizes.load(Relaxed),
            entries_moved: self.entries_moved.load(Relaxed),
            resize_in_progress: self.resize_in_progress.load(Relaxed) != 0,
            resize_cursor: self.resize_cursor.load(Relaxed),
            resize_buckets: self.resize_buckets.load(Relaxed),
            rejected_full: self.rejected_full.load(Relaxed),
            slots_allocated: self.slots_allocated.load(Relaxed),
            slots_waiting: self.slots_waiting.load(Relaxed),
            destinations: self.destinations.load(Relaxed),
        }
    }
}
