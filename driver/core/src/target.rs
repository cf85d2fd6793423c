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
//! [`QUEUE_LIMIT`] bytes; past that frames are refused (the caller counts
//! `queue-overflow`). An answer drains the queue in order. A *drop* that a
//! plugin answered expires after [`NEGATIVE_TTL`], so a mapping that appears
//! later is found without an operator's flush; a drop set by hand stays.
//!
//! The hit path ([`TargetTable::tx`] on a valid entry) is one hash lookup and
//! allocates nothing; only a miss copies the frame into the queue.

use overlay_api::{DropReason, Mac, TargetDest};
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Bytes of frames one pending entry may hold (illumos' per-entry limit).
pub const QUEUE_LIMIT: usize = 128 * 1024;

/// How long a drop answered by a plugin is believed.
pub const NEGATIVE_TTL: Duration = Duration::from_secs(10);

/// One entry.
#[derive(Debug)]
enum Entry {
    Valid(SocketAddr),
    Drop { until: Option<Instant> },
    Pending(Pending),
}

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

/// A target table.
#[derive(Debug, Default)]
pub struct TargetTable {
    entries: HashMap<Mac, Entry>,
}

impl TargetTable {
    /// An empty table.
    pub fn new() -> Self {
        TargetTable::default()
    }

    /// Number of entries (pending ones included).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Decides the fate of a unicast frame for `dst`; on a miss the frame is
    /// copied into the pending queue.
    #[inline]
    pub fn tx(&mut self, dst: Mac, frame: &[u8], now: Instant) -> TxDecision {
        match self.entries.get_mut(&dst) {
            Some(Entry::Valid(a)) => TxDecision::Send(*a),
            Some(Entry::Drop { until: Some(t) }) if now >= *t => {
                let mut p = Pending::default();
                p.push(frame);
                self.entries.insert(dst, Entry::Pending(p));
                TxDecision::Queued { ask: true }
            }
            Some(Entry::Drop { .. }) => TxDecision::Drop(DropReason::TargetDrop),
            Some(Entry::Pending(p)) => {
                if p.push(frame) {
                    TxDecision::Queued { ask: false }
                } else {
                    TxDecision::Drop(DropReason::QueueOverflow)
                }
            }
            None => {
                let mut p = Pending::default();
                p.push(frame);
                self.entries.insert(dst, Entry::Pending(p));
                TxDecision::Queued { ask: true }
            }
        }
    }

    /// Bytes queued behind the pending entry of `mac` (0 if not pending).
    pub fn queued_bytes(&self, mac: Mac) -> usize {
        match self.entries.get(&mac) {
            Some(Entry::Pending(p)) => p.bytes,
            _ => 0,
        }
    }

    /// Records that the lookup for `mac` was asked at `now`.
    pub fn asked(&mut self, mac: Mac, now: Instant) {
        if let Some(Entry::Pending(p)) = self.entries.get_mut(&mac) {
            p.asked = Some(now);
        }
    }

    /// Forgets that lookups were asked (varpd went away with them).
    pub fn unask_all(&mut self) {
        for e in self.entries.values_mut() {
            if let Entry::Pending(p) = e {
                p.asked = None;
            }
        }
    }

    /// Pending MACs that must be asked: never asked, or asked before `stale`.
    pub fn to_ask(&self, stale: Option<Instant>) -> Vec<Mac> {
        self.entries
            .iter()
            .filter_map(|(m, e)| match e {
                Entry::Pending(p) => match (p.asked, stale) {
                    (None, _) => Some(*m),
                    (Some(t), Some(s)) if t <= s => Some(*m),
                    _ => None,
                },
                _ => None,
            })
            .collect()
    }

    /// Applies varpd's answer for `mac`. Only a pending entry takes it (an
    /// answer for an entry flushed or set meanwhile is stale and ignored);
    /// the queued frames are released to the caller.
    pub fn answer(&mut self, mac: Mac, answer: Answer, now: Instant) -> Option<Released> {
        let Some(Entry::Pending(_)) = self.entries.get(&mac) else {
            return None;
        };
        let new = match answer {
            Answer::Dest(a) => Entry::Valid(a),
            Answer::Drop => Entry::Drop {
                until: Some(now + NEGATIVE_TTL),
            },
        };
        match self.entries.insert(mac, new) {
            Some(Entry::Pending(p)) => Some(Released {
                dest: answer_dest(answer),
                frames: p.queue,
            }),
            _ => None,
        }
    }

    /// Sets an entry by hand (`modify-overlay -s`); a pending entry's frames
    /// are released to follow the new destination. `Pending` is refused.
    pub fn set(&mut self, mac: Mac, dest: TargetDest) -> Result<Option<Released>, &'static str> {
        let (new, d) = match dest {
            TargetDest::Valid(a) => (Entry::Valid(a), Some(a)),
            TargetDest::Drop => (Entry::Drop { until: None }, None),
            TargetDest::Pending => {
                return Err("an entry cannot be set to pending; remove it instead")
            }
        };
        Ok(match self.entries.insert(mac, new) {
            Some(Entry::Pending(p)) => Some(Released {
                dest: d,
                frames: p.queue,
            }),
            _ => None,
        })
    }

    /// Removes one entry; returns the number of queued frames discarded, or
    /// `None` if there was no entry.
    pub fn remove(&mut self, mac: Mac) -> Option<usize> {
        self.entries.remove(&mac).map(|e| match e {
            Entry::Pending(p) => p.queue.len(),
            _ => 0,
        })
    }

    /// Removes every valid and drop entry, keeping pending ones (their
    /// lookups are still on their way); for varpd's invalidations.
    pub fn invalidate_resolved(&mut self) {
        self.entries.retain(|_, e| matches!(e, Entry::Pending(_)));
    }

    /// Removes a resolved entry (valid or drop), keeping a pending one.
    pub fn invalidate(&mut self, mac: Mac) -> bool {
        if let Some(Entry::Pending(_)) = self.entries.get(&mac) {
            return false;
        }
        self.entries.remove(&mac).is_some()
    }

    /// Removes every entry; returns the number of queued frames discarded.
    pub fn flush(&mut self) -> usize {
        let n = self
            .entries
            .values()
            .map(|e| {
                if let Entry::Pending(p) = e {
                    p.queue.len()
                } else {
                    0
                }
            })
            .sum();
        self.entries.clear();
        n
    }

    /// Every entry, as `show-overlay -t` lists them (sorted by MAC).
    pub fn dump(&self) -> Vec<(Mac, TargetDest)> {
        let mut v: Vec<_> = self
            .entries
            .iter()
            .map(|(m, e)| {
                (
                    *m,
                    match e {
                        Entry::Valid(a) => TargetDest::Valid(*a),
                        Entry::Drop { .. } => TargetDest::Drop,
                        Entry::Pending(_) => TargetDest::Pending,
                    },
                )
            })
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
    fn push(&mut self, frame: &[u8]) -> bool {
        if self.bytes + frame.len() > QUEUE_LIMIT {
            return false;
        }
        self.bytes += frame.len();
        self.queue.push_back(frame.into());
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
