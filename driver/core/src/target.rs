//! The target table: where each VL2 MAC of a dynamic overlay lives.
//!
//! ```text
//!                 miss (frame queued, lookup asked)
//!   (absent) ───────────────────────────────────────► PENDING ──answer: dest──► VALID(ul3:port)
//!      ▲                                                 │   └──answer: drop──► DROP
//!      └──────── remove / flush / invalidate ◄───────────┴──── (any state) ◄───────┘
//! ```
//!
//! A pending entry queues the frames that wait for the answer, at most
//! [`QUEUE_LIMIT`] bytes, and all pending entries of a table together cost
//! at most [`PENDING_LIMIT`] bytes of memory — their frames, and what each
//! frame and entry costs besides ([`FRAME_COST`], [`ENTRY_COST`]) — so that
//! a flood of frames to a million new MACs while varpd is slow or gone
//! costs bounded memory. Past either limit frames are refused (the caller
//! counts `queue-overflow`), and past the table's no new entry is made. An answer drains the queue in order. A *drop* that a
//! plugin answered expires after [`NEGATIVE_TTL`], so a mapping that appears
//! later is found without an operator's flush; a drop set by hand stays.
//!
//! The entries themselves live in an [`overlay_table`] index: lock-free
//! lookups that bump per-entry statistics (frames, bytes, last use), a live
//! incremental resize whose progress a [`ResizeObserver`] sees, a
//! `target/max_entries` bound (a miss past it is dropped as `table-full`),
//! and a streaming dump. What only the control side needs — the queues of
//! pending entries, when each lookup was asked, when a plugin's drop
//! expires — stays here in plain maps, touched only on misses and answers.
//!
//! The hit path ([`TargetTable::tx`] on a valid entry) is one index lookup
//! and allocates nothing; only a miss copies the frame into the queue.

use crate::decide::Entry;
use overlay_api::{DropReason, Mac, TargetDest};
use overlay_table::{Config, EntrySnapshot, Reader, TableCounters, TargetState, Writer};
pub use overlay_table::{NoObserver, ResizeObserver};
use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Bytes of frames one pending entry may hold (illumos' per-entry limit).
pub const QUEUE_LIMIT: usize = 128 * 1024;

/// Memory all pending entries of one table may cost together: 128 entries'
/// worth of full queues, or some 40,000 entries of one small frame each.
pub const PENDING_LIMIT: usize = 16 << 20;

/// What a queued frame costs beyond its bytes (its box, its queue slot and
/// the allocator's rounding), for [`PENDING_LIMIT`].
pub const FRAME_COST: usize = 64;

/// What a pending entry costs beyond its frames (its map slot, its queue,
/// the index entry), for [`PENDING_LIMIT`].
pub const ENTRY_COST: usize = 256;

/// How long a drop answered by a plugin is believed.
pub const NEGATIVE_TTL: Duration = Duration::from_secs(10);

/// Default `target/max_entries`.
pub const DEFAULT_MAX_ENTRIES: usize = 1 << 20;

/// Largest `target/max_entries` (the index addresses 2^25 entry slots).
pub const MAX_MAX_ENTRIES: usize = 1 << 25;

/// Buckets a migration step copies on the housekeeping timer.
pub const STEP_BUDGET: usize = 4096;

#[derive(Debug, Default)]
struct Pending {
    queue: VecDeque<Box<[u8]>>,
    bytes: usize,
    /// When the lookup was last asked, `None` if it could not be (no varpd).
    asked: Option<Instant>,
}

/// What to do with a frame the guest sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TxDecision {
    /// Encapsulate and send it there.
    Send(SocketAddr),
    /// Drop it for this reason.
    Drop(DropReason),
    /// It was queued behind a lookup; `ask` is true when the caller must ask
    /// varpd now (the entry is new).
    Queued {
        /// A new pending entry: ask varpd.
        ask: bool,
    },
}

/// What the table says of a received frame's inner source MAC and the
/// underlay address it came from (`target/check_source`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SourceCheck {
    /// The MAC lives at that address: take the frame.
    Known,
    /// The MAC lives elsewhere, or is to be dropped: a spoofed source.
    Elsewhere,
    /// Nothing is known yet; `ask` is true when the caller must ask varpd
    /// now (a pending entry was just made for the MAC).
    Unknown {
        /// A new pending entry: ask varpd.
        ask: bool,
    },
}

/// varpd's (or an operator's) answer for a MAC.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    /// Send to this destination.
    Dest(SocketAddr),
    /// Drop frames (a plugin's answer, which expires).
    Drop,
}

/// The frames released by an answer, with where they go (`None`: dropped).
#[derive(Debug, Default)]
pub struct Released {
    /// Destination, or `None` when the frames are to be dropped.
    pub dest: Option<SocketAddr>,
    /// The queued frames, oldest first.
    pub frames: VecDeque<Box<[u8]>>,
}

/// One entry as a dump shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DumpEntry {
    /// The VL2 MAC.
    pub mac: Mac,
    /// Its state and destination.
    pub dest: TargetDest,
    /// How long it has existed.
    pub age: Duration,
    /// How long since a frame last used it (`None`: never).
    pub idle: Option<Duration>,
    /// Frames that looked it up.
    pub frames: u64,
    /// Bytes of those frames.
    pub bytes: u64,
}

/// A handle on a table's index that another forwarding thread can take
/// and read through ([`TableHandle::view`]): overlayd's workers forward
/// valid hits themselves and hand every other frame to the thread that
/// owns the [`TargetTable`].
#[derive(Clone, Debug)]
pub struct TableHandle(overlay_table::TargetTable);

impl TableHandle {
    /// The calling thread's view (make it on the thread that reads, and keep it).
    pub fn view(&self) -> TableView {
        TableView {
            reader: self.0.reader(),
            clock: self.0.clock(),
        }
    }
}

/// A forwarding thread's read-only view of a table: valid hits only.
#[derive(Debug)]
pub struct TableView {
    reader: Reader,
    clock: overlay_table::Clock,
}

impl TableView {
    /// Where a unicast frame for `dst` goes, if `dst` has a valid entry;
    /// `None` for anything else (no entry, pending, drop), which the
    /// table's owner must decide. Nothing is counted: a frame that is then
    /// sent is counted with [`hit`](Self::hit), so that one dropped on the
    /// way (too big, a bad offload) never counts as a use of the entry.
    #[inline]
    pub fn valid(&self, dst: Mac) -> Option<SocketAddr> {
        match self.reader.lookup(dst)? {
            TargetState::Valid(a) => Some(a),
            _ => None,
        }
    }

    /// Counts a frame of `len` bytes sent to `dst`'s valid entry at `now`
    /// (nothing if the entry is no longer valid).
    #[inline]
    pub fn hit(&self, dst: Mac, len: usize, now: Instant) {
        let _ = self.reader.hit_valid(dst, len as u64, self.clock.at(now));
    }
}

/// A target table.
pub struct TargetTable {
    index: overlay_table::TargetTable,
    writer: Writer,
    reader: Reader,
    pending: HashMap<Mac, Pending>,
    /// What `pending` costs, all entries together (see [`PENDING_LIMIT`]).
    pending_cost: usize,
    /// When plugin-answered drops stop being believed.
    negative: HashMap<Mac, Instant>,
}

impl std::fmt::Debug for TargetTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TargetTable")
            .field("len", &self.len())
            .field("pending", &self.pending.len())
            .finish()
    }
}

impl Default for TargetTable {
    fn default() -> Self {
        TargetTable::new()
    }
}

fn to_dest(s: TargetState) -> TargetDest {
    match s {
        TargetState::Pending => TargetDest::Pending,
        TargetState::Valid(a) => TargetDest::Valid(a),
        TargetState::Drop => TargetDest::Drop,
    }
}

impl TargetTable {
    /// An empty table with the default bound and no resize observer.
    pub fn new() -> Self {
        TargetTable::with(DEFAULT_MAX_ENTRIES, Arc::new(NoObserver))
            .expect("the default bound is valid")
    }

    /// An empty table holding at most `max_entries`, reporting resizes to `observer`.
    pub fn with(max_entries: usize, observer: Arc<dyn ResizeObserver>) -> Result<Self, String> {
        let index = overlay_table::TargetTable::new(
            Config::default()
                .max_entries(max_entries)
                .observer(observer),
        )
        .map_err(|e| e.to_string())?;
        Ok(TargetTable {
            writer: index.writer(),
            reader: index.reader(),
            index,
            pending: HashMap::new(),
            pending_cost: 0,
            negative: HashMap::new(),
        })
    }

    /// A handle for other forwarding threads ([`TableHandle::view`]).
    pub fn handle(&self) -> TableHandle {
        TableHandle(self.index.clone())
    }

    /// Number of entries (pending ones included).
    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// The index's counters: capacity, load, resizes, entries moved, refusals.
    pub fn counters(&self) -> TableCounters {
        self.index.counters()
    }

    /// Changes the bound (an operator's `target/max_entries`).
    pub fn set_max_entries(&mut self, n: usize) -> Result<(), String> {
        self.writer.set_max_entries(n).map_err(|e| e.to_string())
    }

    /// Moves a live resize along and reclaims what readers let go of; for
    /// the event loop's timer. True while a resize is still under way.
    pub fn step(&mut self) -> bool {
        self.writer.step(STEP_BUDGET)
    }

    fn queue_new(&mut self, dst: Mac, meta: &[u8], frame: &[u8]) -> TxDecision {
        let cost = ENTRY_COST + meta.len() + frame.len() + FRAME_COST;
        if self.pending_cost + cost > PENDING_LIMIT {
            return TxDecision::Drop(DropReason::QueueOverflow);
        }
        if self.writer.insert(dst, TargetState::Pending).is_err() {
            return TxDecision::Drop(DropReason::TableFull);
        }
        let mut p = Pending::default();
        self.pending_cost += ENTRY_COST;
        if p.push(meta, frame) {
            self.pending_cost += cost - ENTRY_COST;
        }
        self.pending.insert(dst, p);
        TxDecision::Queued { ask: true }
    }

    /// Takes `mac`'s pending entry out, with what it cost.
    fn take_pending(&mut self, mac: &Mac) -> Option<Pending> {
        let p = self.pending.remove(mac)?;
        self.pending_cost -= p.cost();
        Some(p)
    }

    /// What the pending entries cost together, frames and bookkeeping (at
    /// most [`PENDING_LIMIT`]).
    pub fn pending_cost(&self) -> usize {
        self.pending_cost
    }

    /// Decides the fate of a unicast frame for `dst`; on a miss the frame is
    /// copied into the pending queue.
    #[inline]
    pub fn tx(&mut self, dst: Mac, frame: &[u8], now: Instant) -> TxDecision {
        self.tx_with(dst, &[], frame, now)
    }

    /// Like [`tx`](Self::tx), but a queued copy is `meta` followed by
    /// `frame`: the caller's own per-frame data (overlayd keeps the frame's
    /// offload header there). Statistics count `frame` alone; the queue
    /// limit counts both.
    #[inline]
    pub fn tx_with(&mut self, dst: Mac, meta: &[u8], frame: &[u8], now: Instant) -> TxDecision {
        let entry = self.entry(dst, now);
        self.hit(dst, frame.len(), now);
        match entry {
            Entry::Valid(a) => TxDecision::Send(a),
            Entry::Drop => TxDecision::Drop(DropReason::TargetDrop),
            Entry::Pending | Entry::Absent => match self.queue(dst, meta, frame) {
                Ok(ask) => TxDecision::Queued { ask },
                Err(r) => TxDecision::Drop(r),
            },
        }
    }

    /// What the table holds for `dst` at `now`, for
    /// [`decide_tx`](crate::decide::decide_tx): a drop answer whose time is
    /// up counts as absent (the MAC is asked again). Nothing is counted.
    #[inline]
    pub fn entry(&self, dst: Mac, now: Instant) -> Entry {
        match self.reader.lookup(dst) {
            Some(TargetState::Valid(a)) => Entry::Valid(a),
            Some(TargetState::Drop) => match self.negative.get(&dst) {
                Some(t) if now >= *t => Entry::Absent,
                _ => Entry::Drop,
            },
            Some(TargetState::Pending) => Entry::Pending,
            None => Entry::Absent,
        }
    }

    /// Counts a frame of `len` bytes the guest sent to `dst` at `now`
    /// against `dst`'s entry, whatever its state (a pending or drop entry
    /// is hit too); nothing if there is none.
    #[inline]
    pub fn hit(&self, dst: Mac, len: usize, now: Instant) {
        let _ = self.reader.hit(dst, len as u64, self.index.clock().at(now));
    }

    /// Queues a copy of `meta` + `frame` behind the lookup of `dst`, as
    /// [`TxVerdict::Queue`](crate::decide::TxVerdict::Queue) says: behind
    /// its pending entry, or in a new one (`Ok(true)`: ask varpd). Refused
    /// past [`PENDING_LIMIT`] (`queue-overflow`) or `target/max_entries`
    /// (`table-full`). Call it only for an entry that
    /// [`entry`](Self::entry) found pending or absent.
    pub fn queue(&mut self, dst: Mac, meta: &[u8], frame: &[u8]) -> Result<bool, DropReason> {
        if let Some(TargetState::Pending) = self.reader.lookup(dst) {
            let cost = meta.len() + frame.len() + FRAME_COST;
            if self.pending_cost + cost > PENDING_LIMIT {
                return Err(DropReason::QueueOverflow);
            }
            let p = self.pending.entry(dst).or_default();
            if !p.push(meta, frame) {
                return Err(DropReason::QueueOverflow);
            }
            self.pending_cost += cost;
            return Ok(false);
        }
        // Absent, or a drop whose time is up.
        self.negative.remove(&dst);
        match self.queue_new(dst, meta, frame) {
            TxDecision::Drop(r) => Err(r),
            _ => Ok(true),
        }
    }

    /// Checks the inner source `mac` of a frame received from underlay
    /// address `from`: known there, known elsewhere (or dropped), or not
    /// known yet. A MAC not in the table gets a pending entry without
    /// frames, so that varpd's answer fills it in (within
    /// `target/max_entries` and [`PENDING_LIMIT`]; past them nothing is
    /// made and the frame is simply unknown).
    pub fn check_source(&mut self, mac: Mac, from: IpAddr, now: Instant) -> SourceCheck {
        match self.reader.lookup(mac) {
            Some(TargetState::Valid(a)) if a.ip() == from => SourceCheck::Known,
            Some(TargetState::Valid(_)) => SourceCheck::Elsewhere,
            Some(TargetState::Pending) => SourceCheck::Unknown { ask: false },
            Some(TargetState::Drop) => match self.negative.get(&mac) {
                Some(t) if now >= *t => {
                    self.negative.remove(&mac);
                    self.want(mac)
                }
                _ => SourceCheck::Elsewhere,
            },
            None => self.want(mac),
        }
    }

    /// A pending entry without frames for `mac`, if there is room.
    fn want(&mut self, mac: Mac) -> SourceCheck {
        if self.pending_cost + ENTRY_COST > PENDING_LIMIT
            || self.writer.insert(mac, TargetState::Pending).is_err()
        {
            return SourceCheck::Unknown { ask: false };
        }
        self.pending_cost += ENTRY_COST;
        self.pending.insert(mac, Pending::default());
        SourceCheck::Unknown { ask: true }
    }

    /// Bytes queued behind the pending entry of `mac` (0 if not pending).
    pub fn queued_bytes(&self, mac: Mac) -> usize {
        self.pending.get(&mac).map_or(0, |p| p.bytes)
    }

    /// Records that the lookup for `mac` was asked at `now`.
    pub fn asked(&mut self, mac: Mac, now: Instant) {
        if let Some(p) = self.pending.get_mut(&mac) {
            p.asked = Some(now);
        }
    }

    /// Forgets that lookups were asked (varpd went away with them).
    pub fn unask_all(&mut self) {
        for p in self.pending.values_mut() {
            p.asked = None;
        }
    }

    /// Pending MACs that must be asked: never asked, or asked before `stale`.
    pub fn to_ask(&self, stale: Option<Instant>) -> Vec<Mac> {
        self.pending
            .iter()
            .filter_map(|(m, p)| match (p.asked, stale) {
                (None, _) => Some(*m),
                (Some(t), Some(s)) if t <= s => Some(*m),
                _ => None,
            })
            .collect()
    }

    /// Applies varpd's answer for `mac`. Only a pending entry takes it (an
    /// answer for an entry flushed or set meanwhile is stale and ignored);
    /// the queued frames are released to the caller.
    pub fn answer(&mut self, mac: Mac, answer: Answer, now: Instant) -> Option<Released> {
        let p = self.take_pending(&mac)?;
        let state = match answer {
            Answer::Dest(a) => TargetState::Valid(a),
            Answer::Drop => {
                self.negative.insert(mac, now + NEGATIVE_TTL);
                TargetState::Drop
            }
        };
        // The entry exists (it is pending), so this is an update and cannot
        // be refused for want of room.
        let _ = self.writer.insert(mac, state);
        Some(Released {
            dest: answer_dest(answer),
            frames: p.queue,
        })
    }

    /// Sets an entry by hand (`modify-overlay -s`); a pending entry's frames
    /// are released to follow the new destination. `Pending` is refused, and
    /// so is a new entry past `target/max_entries`.
    pub fn set(&mut self, mac: Mac, dest: TargetDest) -> Result<Option<Released>, String> {
        let (state, d) = match dest {
            TargetDest::Valid(a) => (TargetState::Valid(a), Some(a)),
            TargetDest::Drop => (TargetState::Drop, None),
            TargetDest::Pending => {
                return Err("an entry cannot be set to pending; remove it instead".into())
            }
        };
        self.writer.insert(mac, state).map_err(|e| e.to_string())?;
        self.negative.remove(&mac);
        Ok(self.take_pending(&mac).map(|p| Released {
            dest: d,
            frames: p.queue,
        }))
    }

    /// Removes one entry; returns the number of queued frames discarded, or
    /// `None` if there was no entry.
    pub fn remove(&mut self, mac: Mac) -> Option<usize> {
        self.writer.remove(mac)?;
        self.negative.remove(&mac);
        Some(self.take_pending(&mac).map_or(0, |p| p.queue.len()))
    }

    /// Removes every valid and drop entry, keeping pending ones (their
    /// lookups are still on their way); for varpd's invalidations.
    pub fn invalidate_resolved(&mut self) {
        self.writer.retain(|_, s| s == TargetState::Pending);
        self.negative.clear();
    }

    /// Removes a resolved entry (valid or drop), keeping a pending one.
    pub fn invalidate(&mut self, mac: Mac) -> bool {
        if self.pending.contains_key(&mac) {
            return false;
        }
        self.negative.remove(&mac);
        self.writer.remove(mac).is_some()
    }

    /// Removes every entry; returns the number of queued frames discarded.
    pub fn flush(&mut self) -> usize {
        self.writer.flush();
        self.negative.clear();
        self.pending_cost = 0;
        self.pending.drain().map(|(_, p)| p.queue.len()).sum()
    }

    /// Up to `limit` entries from dump position `from` (0 to start), and the
    /// position to resume at, `None` when the dump is complete. Nothing is
    /// held between pages and the data path is never stopped.
    pub fn dump_page(
        &self,
        from: usize,
        limit: usize,
        now: Instant,
    ) -> (Vec<DumpEntry>, Option<usize>) {
        let tick = self.index.clock().at(now);
        let mut d = self.reader.dump_from(from);
        let rows: Vec<DumpEntry> = d
            .by_ref()
            .take(limit)
            .map(|e: EntrySnapshot| DumpEntry {
                mac: e.mac,
                dest: to_dest(e.state),
                age: e.age(tick),
                idle: e.idle(tick),
                frames: e.frames,
                bytes: e.bytes,
            })
            .collect();
        let next = (rows.len() == limit).then(|| d.position());
        (rows, next)
    }

    /// Every entry (sorted by MAC): for tests and small tables.
    pub fn dump(&self) -> Vec<(Mac, TargetDest)> {
        let mut v: Vec<_> = self
            .reader
            .dump()
            .map(|e| (e.mac, to_dest(e.state)))
            .collect();
        v.sort_by_key(|(m, _)| *m);
        v
    }
}

fn answer_dest(a: Answer) -> Option<SocketAddr> {
    match a {
        Answer::Dest(d) => Some(d),
        Answer::Drop => None,
    }
}

impl Pending {
    /// What this entry costs against [`PENDING_LIMIT`].
    fn cost(&self) -> usize {
        ENTRY_COST + self.bytes + self.queue.len() * FRAME_COST
    }

    fn push(&mut self, meta: &[u8], frame: &[u8]) -> bool {
        let len = meta.len() + frame.len();
        if self.bytes + len > QUEUE_LIMIT {
            return false;
        }
        self.bytes += len;
        let mut copy = Vec::with_capacity(len);
        copy.extend_from_slice(meta);
        copy.extend_from_slice(frame);
        self.queue.push_back(copy.into_boxed_slice());
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn mac(n: u8) -> Mac {
        Mac([2, 0, 0, 0, 0, n])
    }
    fn addr(n: u8) -> SocketAddr {
        SocketAddr::from(([10, 0, 0, n], 4789))
    }

    /// A flood of frames to new MACs (varpd answering none of them) stops
    /// at PENDING_LIMIT: no more entries, no more memory; answers, removals
    /// and flushes give the room back.
    #[test]
    fn a_mac_flood_is_bounded_by_the_pending_limit() {
        let now = Instant::now();
        let mut t = TargetTable::new();
        let frame = [0u8; 64];
        let each = ENTRY_COST + frame.len() + FRAME_COST;
        let fits = PENDING_LIMIT / each;
        let (mut queued, mut refused) = (0, 0);
        for i in 0..(fits + 1000) as u64 {
            let b = i.to_be_bytes();
            let m = Mac([2, b[3], b[4], b[5], b[6], b[7]]);
            match t.tx(m, &frame, now) {
                TxDecision::Queued { ask: true } => queued += 1,
                TxDecision::Drop(DropReason::QueueOverflow) => refused += 1,
                d => panic!("frame {i}: {d:?}"),
            }
        }
        assert_eq!((queued, refused), (fits, 1000));
        assert_eq!(t.pending_cost(), fits * each);
        assert_eq!(t.len(), queued);
        // A second frame for a pending MAC fits in what is left, or not.
        let first = Mac([2, 0, 0, 0, 0, 0]);
        let room = PENDING_LIMIT - fits * each;
        let second = if room >= frame.len() + FRAME_COST {
            TxDecision::Queued { ask: false }
        } else {
            TxDecision::Drop(DropReason::QueueOverflow)
        };
        assert_eq!(t.tx(first, &frame, now), second);
        let first_cost = t.pending_cost() - (fits - 1) * each;
        // An answer gives its entry's cost back, and a new MAC fits again.
        t.answer(first, Answer::Dest(addr(1)), now).unwrap();
        assert_eq!(t.pending_cost(), (fits - 1) * each);
        let new = Mac([2, 9, 9, 9, 9, 9]);
        assert_eq!(t.tx(new, &frame, now), TxDecision::Queued { ask: true });
        assert_eq!(t.remove(new), Some(1));
        assert_eq!(t.pending_cost(), (fits - 1) * each);
        assert!(first_cost >= each);
        t.flush();
        assert_eq!(t.pending_cost(), 0);
    }

    #[test]
    fn sources_are_checked_against_their_entries() {
        let now = Instant::now();
        let mut t = TargetTable::new();
        let (a, b) = (addr(1).ip(), addr(2).ip());
        // Unknown: a pending entry is made once, and asked for once.
        assert_eq!(
            t.check_source(mac(1), a, now),
            SourceCheck::Unknown { ask: true }
        );
        assert_eq!(
            t.check_source(mac(1), a, now),
            SourceCheck::Unknown { ask: false }
        );
        assert_eq!(t.to_ask(None), vec![mac(1)]);
        assert_eq!(t.pending_cost(), ENTRY_COST);
        // The answer fills it in, with no frames to release.
        let r = t.answer(mac(1), Answer::Dest(addr(1)), now).unwrap();
        assert!(r.frames.is_empty());
        assert_eq!(t.pending_cost(), 0);
        assert_eq!(t.check_source(mac(1), a, now), SourceCheck::Known);
        assert_eq!(t.check_source(mac(1), b, now), SourceCheck::Elsewhere);
        // A plugin's drop is believed until it expires, then asked again.
        t.check_source(mac(2), a, now);
        t.answer(mac(2), Answer::Drop, now).unwrap();
        assert_eq!(t.check_source(mac(2), a, now), SourceCheck::Elsewhere);
        let later = now + NEGATIVE_TTL;
        assert_eq!(
            t.check_source(mac(2), a, later),
            SourceCheck::Unknown { ask: true }
        );
        // A drop set by hand stays.
        t.set(mac(3), TargetDest::Drop).unwrap();
        assert_eq!(t.check_source(mac(3), a, later), SourceCheck::Elsewhere);
    }

    #[test]
    fn miss_pending_valid_drains_in_order() {
        let now = Instant::now();
        let mut t = TargetTable::new();
        assert_eq!(t.tx(mac(1), b"one", now), TxDecision::Queued { ask: true });
        assert_eq!(t.tx(mac(1), b"two", now), TxDecision::Queued { ask: false });
        assert_eq!(t.to_ask(None), vec![mac(1)]);
        t.asked(mac(1), now);
        assert!(t.to_ask(None).is_empty());
        let r = t.answer(mac(1), Answer::Dest(addr(2)), now).unwrap();
        assert_eq!(r.dest, Some(addr(2)));
        assert_eq!(
            r.frames.iter().map(|f| &f[..]).collect::<Vec<_>>(),
            [&b"one"[..], b"two"]
        );
        assert_eq!(t.tx(mac(1), b"three", now), TxDecision::Send(addr(2)));
        assert!(
            t.answer(mac(1), Answer::Drop, now).is_none(),
            "answers only apply to pending entries"
        );
    }

    #[test]
    fn drop_answer_expires_but_manual_drop_stays() {
        let now = Instant::now();
        let mut t = TargetTable::new();
        t.tx(mac(1), b"x", now);
        let r = t.answer(mac(1), Answer::Drop, now).unwrap();
        assert_eq!((r.dest, r.frames.len()), (None, 1));
        assert_eq!(
            t.tx(mac(1), b"x", now),
            TxDecision::Drop(DropReason::TargetDrop)
        );
        assert_eq!(
            t.tx(mac(1), b"x", now + NEGATIVE_TTL),
            TxDecision::Queued { ask: true }
        );
        t.set(mac(2), TargetDest::Drop).unwrap();
        assert_eq!(
            t.tx(mac(2), b"x", now + NEGATIVE_TTL * 100),
            TxDecision::Drop(DropReason::TargetDrop)
        );
        assert!(t.set(mac(3), TargetDest::Pending).is_err());
    }

    #[test]
    fn max_entries_refuses_new_macs_but_updates_existing() {
        let now = Instant::now();
        let mut t = TargetTable::with(2, Arc::new(NoObserver)).unwrap();
        t.set(mac(1), TargetDest::Valid(addr(1))).unwrap();
        assert_eq!(t.tx(mac(2), b"x", now), TxDecision::Queued { ask: true });
        assert_eq!(
            t.tx(mac(3), b"x", now),
            TxDecision::Drop(DropReason::TableFull)
        );
        assert!(t
            .set(mac(4), TargetDest::Drop)
            .unwrap_err()
            .contains("target/max_entries"));
        t.set(mac(1), TargetDest::Valid(addr(2))).unwrap();
        assert_eq!(t.counters().rejected_full, 2);
    }

    #[test]
    fn paged_dump_with_statistics() {
        let now = Instant::now();
        let mut t = TargetTable::new();
        for i in 0..10 {
            t.set(mac(i), TargetDest::Valid(addr(i))).unwrap();
        }
        t.tx(mac(3), &[0u8; 100], now);
        t.tx(mac(3), &[0u8; 50], now);
        let (mut all, mut pos) = (Vec::new(), Some(0));
        while let Some(p) = pos {
            let (rows, next) = t.dump_page(p, 3, now);
            all.extend(rows);
            pos = next;
        }
        assert_eq!(all.len(), 10);
        let e = all.iter().find(|e| e.mac == mac(3)).unwrap();
        assert_eq!(
            (e.frames, e.bytes, e.dest),
            (2, 150, TargetDest::Valid(addr(3)))
        );
        assert!(e.idle.is_some());
        assert!(all.iter().find(|e| e.mac == mac(4)).unwrap().idle.is_none());
    }

    #[test]
    fn queue_cap() {
        let now = Instant::now();
        let mut t = TargetTable::new();
        let f = vec![0u8; 1500];
        let fits = QUEUE_LIMIT / f.len();
        for i in 0..fits {
            assert!(
                matches!(t.tx(mac(1), &f, now), TxDecision::Queued { .. }),
                "frame {i}"
            );
        }
        assert_eq!(
            t.tx(mac(1), &f, now),
            TxDecision::Drop(DropReason::QueueOverflow)
        );
        assert_eq!(t.flush(), fits);
        assert!(t.is_empty());
    }

    #[test]
    fn invalidate_keeps_pending() {
        let now = Instant::now();
        let mut t = TargetTable::new();
        t.set(mac(1), TargetDest::Valid(addr(1))).unwrap();
        t.tx(mac(2), b"q", now);
        assert!(t.invalidate(mac(1)));
        assert!(!t.invalidate(mac(2)));
        t.set(mac(3), TargetDest::Drop).unwrap();
        t.invalidate_resolved();
        assert_eq!(t.dump(), vec![(mac(2), TargetDest::Pending)]);
        let r = t.set(mac(2), TargetDest::Valid(addr(9))).unwrap().unwrap();
        assert_eq!((r.dest, r.frames.len()), (Some(addr(9)), 1));
        assert_eq!(t.remove(mac(2)), Some(0));
        assert_eq!(t.remove(mac(2)), None);
    }

    #[derive(Debug, Clone)]
    enum Op {
        Tx(u8, usize),
        Answer(u8, Option<u8>),
        Set(u8, Option<u8>),
        Remove(u8),
        Flush,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0u8..4, 1usize..40_000).prop_map(|(m, l)| Op::Tx(m, l)),
            (0u8..4, proptest::option::of(0u8..4)).prop_map(|(m, d)| Op::Answer(m, d)),
            (0u8..4, proptest::option::of(0u8..4)).prop_map(|(m, d)| Op::Set(m, d)),
            (0u8..4).prop_map(Op::Remove),
            Just(Op::Flush),
        ]
    }

    proptest! {
        /// Against a simple model: every frame is accounted for exactly once
        /// (sent, dropped, queued), queues never exceed the cap, and frames
        /// are released in the order they were queued.
        #[test]
        fn state_machine_matches_model(ops in proptest::collection::vec(op(), 1..200)) {
            let now = Instant::now();
            let mut t = TargetTable::new();
            let mut model: HashMap<u8, Option<Option<u8>>> = HashMap::new(); // None = pending, Some(None)=drop, Some(Some(d))=valid
            let mut queued: HashMap<u8, Vec<(usize, usize)>> = HashMap::new();
            let mut seq = 0usize;
            for o in ops {
                match o {
                    Op::Tx(m, len) => {
                        seq += 1;
                        let mut f = vec![0u8; len.max(8)];
                        f[..8].copy_from_slice(&(seq as u64).to_be_bytes());
                        let d = t.tx(mac(m), &f, now);
                        match model.get(&m) {
                            Some(Some(Some(a))) => prop_assert_eq!(d, TxDecision::Send(addr(*a))),
                            Some(Some(None)) => prop_assert_eq!(d, TxDecision::Drop(DropReason::TargetDrop)),
                            Some(None) => {
                                let q = queued.entry(m).or_default();
                                let bytes: usize = q.iter().map(|(_, l)| *l).sum::<usize>();
                                if bytes + f.len() > QUEUE_LIMIT {
                                    prop_assert_eq!(d, TxDecision::Drop(DropReason::QueueOverflow));
                                } else {
                                    prop_assert_eq!(d, TxDecision::Queued { ask: false });
                                    q.push((seq, f.len()));
                                }
                            }
                            None => {
                                prop_assert_eq!(d, TxDecision::Queued { ask: true });
                                model.insert(m, None);
                                queued.insert(m, vec![(seq, f.len())]);
                            }
                        }
                    }
                    Op::Answer(m, dest) => {
                        let a = match dest { Some(d) => Answer::Dest(addr(d)), None => Answer::Drop };
                        let r = t.answer(mac(m), a, now);
                        if let Some(None) = model.get(&m) {
                            let r = r.expect("pending entry takes the answer");
                            let got: Vec<usize> = r.frames.iter().map(|f| u64::from_be_bytes(f[..8].try_into().unwrap()) as usize).collect();
                            let want: Vec<usize> = queued.remove(&m).unwrap_or_default().iter().map(|(s, _)| *s).collect();
                            prop_assert_eq!(got, want);
                            model.insert(m, Some(dest));
                        } else {
                            prop_assert!(r.is_none());
                        }
                    }
                    Op::Set(m, dest) => {
                        let td = match dest { Some(d) => TargetDest::Valid(addr(d)), None => TargetDest::Drop };
                        let r = t.set(mac(m), td).unwrap();
                        let was_pending = matches!(model.get(&m), Some(None));
                        prop_assert_eq!(r.is_some(), was_pending);
                        queued.remove(&m);
                        model.insert(m, Some(dest));
                    }
                    Op::Remove(m) => {
                        let n = t.remove(mac(m));
                        prop_assert_eq!(n.is_some(), model.remove(&m).is_some());
                        prop_assert_eq!(n.unwrap_or(0), queued.remove(&m).map(|q| q.len()).unwrap_or(0));
                    }
                    Op::Flush => {
                        let n = t.flush();
                        prop_assert_eq!(n, queued.values().map(Vec::len).sum::<usize>());
                        model.clear();
                        queued.clear();
                    }
                }
                prop_assert_eq!(t.len(), model.len());
            }
        }
    }
}
