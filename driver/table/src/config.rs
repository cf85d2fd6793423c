//! How a table is made: its bound, its smallest index, its observer.

use crate::error::TableError;
use crate::observer::{NoObserver, ResizeObserver};
use std::fmt;
use std::sync::Arc;

/// The largest `target/max_entries` accepted (16 Mi entries, about 1 GiB of
/// slots): slot ids must leave room for removed slots awaiting reclamation.
pub const HARD_MAX_ENTRIES: usize = 1 << 24;

/// The default `target/max_entries`: 1 Mi entries (64 MiB of slots, 8 MiB to
/// 16 MiB of index at most).
pub const DEFAULT_MAX_ENTRIES: usize = 1 << 20;

/// The default smallest index array, in buckets.
pub const DEFAULT_MIN_CAPACITY: usize = 64;

/// Largest index array: four buckets per entry at [`HARD_MAX_ENTRIES`].
pub(crate) const MAX_CAPACITY: usize = HARD_MAX_ENTRIES * 4;

/// A table's configuration.
#[derive(Clone)]
pub struct Config {
    pub(crate) max_entries: usize,
    pub(crate) min_capacity: usize,
    pub(crate) observer: Arc<dyn ResizeObserver>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_entries: DEFAULT_MAX_ENTRIES,
            min_capacity: DEFAULT_MIN_CAPACITY,
            observer: Arc::new(NoObserver),
        }
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("max_entries", &self.max_entries)
            .field("min_capacity", &self.min_capacity)
            .finish_non_exhaustive()
    }
}

impl Config {
    /// Sets `target/max_entries` (checked by [`crate::TargetTable::new`]).
    pub fn max_entries(mut self, n: usize) -> Self {
        self.max_entries = n;
        self
    }

    /// Sets the smallest index array the table shrinks to, in buckets
    /// (rounded up to a power of two, at least 8).
    pub fn min_capacity(mut self, buckets: usize) -> Self {
        self.min_capacity = buckets.clamp(8, MAX_CAPACITY).next_power_of_two();
        self
    }

    /// Sets the resize observer.
    pub fn observer(mut self, o: Arc<dyn ResizeObserver>) -> Self {
        self.observer = o;
        self
    }
}

/// Checks a `target/max_entries` value.
pub(crate) fn check_max_entries(n: usize) -> Result<usize, TableError> {
    if (1..=HARD_MAX_ENTRIES).contains(&n) {
        Ok(n)
    } else {
        Err(TableError::InvalidMaxEntries {
            value: n,
            limit: HARD_MAX_ENTRIES,
        })
    }
}
