//! The target table index: where each VL2 MAC of an overlay lives, read by
//! every forwarding thread at once and changed by one control thread.
//!
//! # Theory statement
//!
//! ## Terms
//!
//! - **Entry**: one VL2 MAC (the key, packed in a `u64`) with its
//!   [`TargetState`] — `Pending`, `Valid(UL3 address:port)` or `Drop` — and
//!   its statistics: when it was created, when a frame last hit it, frames and
//!   bytes. The statistics live in the entry's **slot**, one cache line in a
//!   **segment** of 4096 slots; slots never move while anyone can see them.
//! - **State word**: an entry's state and destination in one atomic word:
//!   an IPv4 UL3 address and port inline, or the 32-bit id of a
//!   **destination record** for IPv6 (interned by the writer; many MACs share
//!   one UL3 host, so the few records stay hot).
//! - **Index array**: a power-of-two array of 16-byte **buckets**, open
//!   addressing with linear probing from the key's **home** (the high half of
//!   its seeded hash, masked). A bucket is a **key word** — `EMPTY`, `TOMB`
//!   (removed) or `LIVE | slot_hi | MAC` — and a copy of the entry's state
//!   word carrying `slot_lo`. A lookup reads one bucket; only a hit, to bump
//!   the statistics, goes on to the slot.
//! - **View**: what readers load first: the current array, and during a
//!   **migration** (a live resize) also the array it replaces, with the
//!   migration **cursor**.
//! - **Reader** (a forwarding thread) and **Writer** (the control thread:
//!   varpd answers, operator set/remove/flush, invalidations).
//! - **Limbo**: what the writer unlinked, waiting for its grace period.
//!
//! ## Layout and migration
//!
//! ```text
//!  Shared.view ──► View { new, old, cursor }          (one pointer, swapped)
//!                     │     │
//!     old (cap C)     │     ▼          copied ◄── cursor ──► not yet copied
//!     ┌────┬────┬────┬┴───┬────┬────┬────┬────┐
//!     │ b  │TOMB│ b  │ ·  │ b  │ ·  │ b  │ ·  │   buckets are only ever copied,
//!     └─┬──┴────┴─┬──┴────┴─┬──┴────┴─┬──┴────┘   never cleared, until the
//!       │ copy     │         │         │           whole array is retired
//!     new (cap 2C) ▼         │         │
//!     ┌────┬────┬────┬────┬─┼──┬────┬─┼──┬── … ──┐
//!     │ b  │ ·  │ b  │ b* │ · │ … │    │  …      │  b* = inserted since the
//!     └─┬──┴────┴─┬──┴─┬──┴───┴───┴────┴─────────┘       migration began
//!       │  bucket = [ LIVE|slot_hi|MAC ][ state word|slot_lo ]
//!       ▼          ▼    ▼      (slot id: the hit path's way to the statistics)
//!   slots: segment 0 [slot|slot|slot|…]  segment 1 […]   (never move; a slot
//!          ┌──────────────────────────────────────┐      is reused only after
//!          │ key|LIVE  state word  created         │      its grace period)
//!          │ last_used frames      bytes           │
//!          └──────────────────────────────────────┘
//!   state word = Valid4 | port | IPv4        (inline)
//!              | Valid6 | dest id ──► destination records [addr|addr|…]
//! ```
//!
//! The writer grows the array (doubling it) when its buckets (live and
//! tombstones) pass half full, and shrinks it when live entries fall under
//! 1/8; both land at a load between 1/6 and 1/3, far from either trigger
//! (hysteresis). A migration to the same size clears tombstones. Migration
//! is incremental: each write, and [`Writer::step`] on the event loop's
//! timer, copies a bounded number of old buckets (at least 64, more if
//! needed to finish before inserts could fill the new array past half). Only
//! buckets are copied: the statistics readers bump stay in their slots. The
//! writer faults in a new array's pages before publishing it, so no reader
//! takes a page fault on a fresh array. [`ResizeObserver`] sees the start,
//! each step and the end; [`TableCounters`] shows resizes, entries moved,
//! capacity, length, load and the cursor.
//!
//! ## Reader protocol (lock-free, no retry, no allocation)
//!
//! 1. Pin the table's epoch ([`Reader::pin`], once per batch of frames).
//! 2. Load the view (acquire). Probe `new`, and during a migration also
//!    `old` — `old` first when the key's home bucket is at or past the
//!    cursor (not copied yet), `new` first otherwise. Every key that lived
//!    when the migration began is still in `old`, every key added since is
//!    in `new`, and copying never clears a bucket, so probing both, in
//!    either order, cannot miss a key that lived before the lookup began and
//!    was not removed.
//! 3. A key word (acquire) equal to `LIVE | MAC` in its compared bits is the
//!    entry; `EMPTY` ends the probe. The bucket's state word (acquire) then
//!    gives the state, and for IPv6 the record it names. A bucket is never
//!    reused within an array (inserts take `EMPTY` buckets only), so that
//!    state word was written for this key: the newest, or — in a retired
//!    array a slow reader still holds — an older one, which is what a lookup
//!    overlapping the update may return anyway.
//! 4. A hit bumps frames, bytes and last use, with relaxed atomics, in the
//!    slot the bucket names. That slot cannot have been reused for another
//!    MAC: it is reclaimed only after every reader pinned when its entry was
//!    removed has unpinned.
//!
//! A reader never waits for the writer: key words and state words are
//! single atomic words, written whole; destination records are immutable
//! while named; probing is bounded by the array size.
//!
//! ## Writer protocol (one at a time, behind a mutex readers never touch)
//!
//! - *Create*: intern an IPv6 destination, take a free slot (lowest segment
//!   first), write its fields and key, then fill the first `EMPTY` bucket of
//!   the key's probe sequence in the current array: state word, then key
//!   word with release. Beyond `target/max_entries`: [`TableError::Full`],
//!   nothing changed.
//! - *Update*: store the new state word (release) in the slot and in the
//!   key's bucket in each array, then drop the old destination's reference.
//! - *Remove*: store `TOMB` over its key word in both arrays, clear `LIVE`
//!   in the slot, retire the slot (and the destination if unreferenced).
//! - Then: migrate a step, maybe start a migration, reclaim, publish counters.
//!
//! ## Reclamation
//!
//! Slot ids, destination ids, index arrays, views and emptied slot segments
//! are retired through **crossbeam-epoch** with a collector of the table's
//! own (so no other structure's garbage runs on our forwarding threads). The
//! writer batches what it unlinks and defers, per batch, a closure that only
//! raises a flag; once it is raised (every reader pinned at retirement has
//! unpinned) the writer itself frees the memory and reuses the ids. A reader
//! therefore never frees a table allocation (crossbeam's own bookkeeping is
//! another matter: every 128th pin collects, which runs a few of those flag
//! closures and may free or allocate one of crossbeam's small queue nodes —
//! the only allocator traffic a reader can see), and a slot is never reused — so
//! a late statistics bump never lands on another MAC's entry — while a
//! reader that might have found it is still pinned. Entries living in
//! never-moving slots is what keeps the epoch's work small: a resize retires
//! only the old bucket array.
//!
//! ## Failure
//!
//! - Table full: inserts of new MACs fail with [`TableError::Full`] and are
//!   counted (`rejected_full`); the caller drops the frame that missed.
//!   Existing entries still update.
//! - A reader pinned for a long time (a stuck thread) holds back
//!   reclamation: removed slots wait (`slots_waiting`), and new entries take
//!   fresh slots; past the addressable slots, [`TableError::SlotsExhausted`].
//!   Lookups and resizes carry on regardless.
//! - Inserts that outrun a migration (they cannot with the budget above)
//!   make the writer finish it in one go rather than let the array fill.
//! - A writer that panics mid-change poisons the writer mutex: later writes
//!   panic rather than work on a half-changed table; readers carry on with
//!   what was published.
//!
//! ## Use
//!
//! ```
//! use overlay_table::{Config, TargetState, TargetTable};
//! use overlay_api::Mac;
//!
//! let table = TargetTable::new(Config::default().max_entries(1 << 16)).unwrap();
//! let mut writer = table.writer();               // the control thread
//! let mac = Mac([2, 8, 0x20, 0, 0, 1]);
//! writer.insert(mac, TargetState::Valid("192.0.2.7:4789".parse().unwrap())).unwrap();
//!
//! let reader = table.reader();                   // each forwarding thread
//! let now = table.clock().now();                 // once per batch
//! let batch = reader.pin();
//! assert!(matches!(batch.hit(mac, 1514, now), Some(TargetState::Valid(_))));
//! drop(batch);
//!
//! let entries: Vec<_> = reader.dump().collect(); // streaming, non-blocking
//! assert_eq!(entries[0].frames, 1);
//! ```
//!
//! Benchmarks against papaya and dashmap: `cargo bench -p overlay-table
//! --bench lookup` and `--bench resize_latency` (see the crate's README).

#![warn(missing_docs)]

mod alloc;
mod config;
mod dests;
mod dump;
mod error;
mod index;
mod key;
mod migrate;
mod observer;
mod reader;
mod reclaim;
mod slab;
mod state;
mod table;
mod writer;

pub use config::{Config, DEFAULT_MAX_ENTRIES, DEFAULT_MIN_CAPACITY, HARD_MAX_ENTRIES};
pub use dump::Dump;
pub use error::TableError;
pub use observer::{NoObserver, ResizeObserver, TableCounters};
pub use reader::{ReadGuard, Reader};
pub use state::{Clock, EntrySnapshot, TargetState, Tick};
pub use table::TargetTable;
pub use writer::{Inserted, Writer};
