//! What can go wrong when the target table is changed.

/// Why a change to the target table was refused.
///
/// Lookups never fail this way: a reader either finds an entry or does not.
/// These errors come back to the writer (the control thread), which counts
/// the drop and carries on; the table is unchanged when one is returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TableError {
    /// The table holds `target/max_entries` entries already: a new MAC is
    /// refused (the frame that missed is dropped and counted by the caller).
    #[error(
        "target table full: {max_entries} entries (target/max_entries); \
         the new entry is refused — raise target/max_entries or remove entries"
    )]
    Full {
        /// The bound in force.
        max_entries: usize,
    },
    /// Every entry slot is live or still awaiting reclamation (readers pinned
    /// for a long time hold back the reuse of removed slots).
    #[error(
        "target table has no free slot: {slots} slots are live or awaiting \
         reclamation; retry after readers move on (Writer::step)"
    )]
    SlotsExhausted {
        /// How many slots the table can address.
        slots: usize,
    },
    /// A `target/max_entries` value outside what the table can hold.
    #[error("invalid target/max_entries {value}: expected 1 to {limit}")]
    InvalidMaxEntries {
        /// What was asked.
        value: usize,
        /// The largest value accepted ([`crate::HARD_MAX_ENTRIES`]).
        limit: usize,
    },
}
