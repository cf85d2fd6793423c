//! A global allocator that counts the bytes the current thread asks for,
//! so that the bench can say what one host's mirror costs: it clones a
//! live mirror on the main thread and counts what the clone allocated
//! (hashbrown's clone keeps the table's capacity, so the clone is the
//! size of the original). Counting is one thread-local add per
//! allocation; other threads' allocations do not enter the figure.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

thread_local! {
    static ALLOCATED: Cell<u64> = const { Cell::new(0) };
}

/// [`System`], counting.
pub struct Counting;

// SAFETY: every call is forwarded to `System` unchanged; the counter is a
// const-initialised thread-local, which allocates nothing.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCATED.try_with(|c| c.set(c.get() + layout.size() as u64));
        // SAFETY: as the caller promised for this call.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCATED.try_with(|c| c.set(c.get() + layout.size() as u64));
        // SAFETY: as the caller promised for this call.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as the caller promised for this call.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let grow = new_size.saturating_sub(layout.size()) as u64;
        let _ = ALLOCATED.try_with(|c| c.set(c.get() + grow));
        // SAFETY: as the caller promised for this call.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

/// Bytes this thread has allocated so far.
pub fn allocated() -> u64 {
    ALLOCATED.with(Cell::get)
}

/// Bytes `f` allocated on this thread (and what it returned, kept alive
/// until the count is taken).
pub fn measure<R>(f: impl FnOnce() -> R) -> (u64, R) {
    let before = allocated();
    let r = f();
    (allocated() - before, r)
}
