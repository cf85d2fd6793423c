//! The table itself: what readers and the writer share, and the handle that
//! makes them.

use crate::config::{check_max_entries, Config};
use crate::error::TableError;
use crate::index::{Index, View};
use crate::key::KeyHasher;
use crate::observer::{CounterCells, ResizeObserver, TableCounters};
use crate::reader::Reader;
use crate::slab::{Segmented, Slot};
use crate::state::{Clock, DestRecord};
use crate::writer::{Writer, WriterState};
use crossbeam_epoch::Collector;
use std::ptr;
use std::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// What every handle of a table points at.
pub(crate) struct Shared {
    /// The current [`View`] (made by `Box::into_raw`; replaced and retired
    /// only by the writer).
    pub(crate) view: AtomicPtr<View>,
    pub(crate) slots: Segmented<Slot>,
    pub(crate) dests: Segmented<DestRecord>,
    pub(crate) hasher: KeyHasher,
    pub(crate) clock: Clock,
    /// This table's epoch domain: its readers and writers only, so another
    /// structure's garbage never runs on our forwarding threads.
    pub(crate) collector: Collector,
    pub(crate) counters: CounterCells,
    pub(crate) observer: Arc<dyn ResizeObserver>,
    pub(crate) writer: Mutex<WriterState>,
}

impl Drop for Shared {
    fn drop(&mut self) {
        let v = *self.view.get_mut();
        // SAFETY: no handle is left (this is the last Arc), so nothing reads
        // the view or its arrays; each was made by `Box::into_raw` and only
        // the current view's are still owned here (retired ones are owned by
        // the limbo, which drops them itself).
        unsafe {
            let v = Box::from_raw(v);
            drop(Box::from_raw(v.new as *mut Index));
            if !v.old.is_null() {
                drop(Box::from_raw(v.old as *mut Index));
            }
        }
    }
}

/// A target table: VL2 MAC → [`crate::TargetState`] plus statistics.
///
/// Cloning is cheap (a reference count). Make one [`Reader`] per forwarding
/// thread and one [`Writer`] per control thread.
#[derive(Clone)]
pub struct TargetTable {
    pub(crate) shared: Arc<Shared>,
}

impl std::fmt::Debug for TargetTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TargetTable")
            .field("counters", &self.counters())
            .finish()
    }
}

impl TargetTable {
    /// An empty table.
    pub fn new(config: Config) -> Result<Self, TableError> {
        let max_entries = check_max_entries(config.max_entries)?;
        let index = Box::into_raw(Box::new(Index::new(config.min_capacity)));
        let view = Box::into_raw(Box::new(View {
            new: index,
            old: ptr::null(),
            cursor: AtomicUsize::new(0),
        }));
        let counters = CounterCells::default();
        counters
            .capacity
            .store(config.min_capacity as u64, Ordering::Relaxed);
        counters
            .max_entries
            .store(max_entries as u64, Ordering::Relaxed);
        let shared = Shared {
            view: AtomicPtr::new(view),
            slots: Segmented::new(),
            dests: Segmented::new(),
            hasher: KeyHasher::random(),
            clock: Clock::new(),
            collector: Collector::new(),
            counters,
            observer: config.observer,
            writer: Mutex::new(WriterState::new(max_entries, config.min_capacity)),
        };
        Ok(TargetTable {
            shared: Arc::new(shared),
        })
    }

    /// A reader for the calling thread (forwarding threads: one each, kept).
    pub fn reader(&self) -> Reader {
        Reader::new(Arc::clone(&self.shared))
    }

    /// A writer for the calling thread. Writers may be several; their
    /// changes are serialised by an internal mutex readers never touch.
    pub fn writer(&self) -> Writer {
        Writer::new(Arc::clone(&self.shared))
    }

    /// The table's clock (for the `now` that hits carry).
    pub fn clock(&self) -> Clock {
        self.shared.clock
    }

    /// Live entries.
    pub fn len(&self) -> usize {
        self.shared.counters.len.load(Ordering::Relaxed) as usize
    }

    /// True when no entry lives.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The counters: size, resizes, migration progress, refusals.
    pub fn counters(&self) -> TableCounters {
        self.shared.counters.snapshot()
    }
}
