//! Readers against the writer, for real: two reader threads look up (and
//! hit) random keys while the writer inserts a million entries, growing the
//! table from its smallest array to 4 Mi buckets, updates some, and removes
//! all but a thousand, shrinking it back. Readers check that every answer is
//! a value the writer actually wrote for that key, and that every key
//! inserted before the lookup began and not removed is found.

use overlay_api::Mac;
use overlay_table::{Config, TargetState, TargetTable, Writer};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::atomic::{
    AtomicBool, AtomicU64,
    Ordering::{Acquire, Release},
};
use std::time::Instant;

const N: u64 = 1_000_000;
const KEEP: u64 = 1000;

fn mac(i: u64) -> Mac {
    let b = (i | 0x0200_0000_0000).to_be_bytes();
    Mac([b[2], b[3], b[4], b[5], b[6], b[7]])
}

/// Key `i`'s destination at `version`: the key in the address, the version
/// in the port.
fn addr(i: u64, version: u16) -> TargetState {
    TargetState::Valid(SocketAddr::V4(SocketAddrV4::new(
        Ipv4Addr::from_bits(i as u32),
        4789 + version,
    )))
}

fn first_state(i: u64) -> TargetState {
    match i % 16 {
        0 => TargetState::Pending,
        1 => TargetState::Drop,
        _ => addr(i, 0),
    }
}

/// The state an update gives key `i` (every fourth key is updated).
fn second_state(i: u64) -> Option<TargetState> {
    i.is_multiple_of(4).then(|| addr(i, 1))
}

fn written_for(i: u64, s: TargetState) -> bool {
    s == first_state(i) || Some(s) == second_state(i)
}

/// A xorshift: readers need cheap random keys, not good ones.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[derive(Default)]
struct Progress {
    /// Keys below this are inserted (release after each insert).
    inserted: AtomicU64,
    /// Keys below this are removed (release after each removal).
    removed: AtomicU64,
    /// Keys below this are removed or being removed (release before each).
    removing: AtomicU64,
    done: AtomicBool,
}

#[derive(Default, Debug)]
struct ReaderTally {
    lookups: u64,
    found: u64,
    during_resize: u64,
}

fn reader(t: &TargetTable, p: &Progress, seed: u64) -> ReaderTally {
    let r = t.reader();
    let mut rng = Rng(seed);
    let mut tally = ReaderTally::default();
    let clock = t.clock();
    while !p.done.load(Acquire) {
        let resizing = t.counters().resize_in_progress;
        let g = r.pin();
        let now = clock.now();
        for n in 0..64 {
            // Bounds read before the lookup: what happened before it began.
            let removed = p.removed.load(Acquire);
            let inserted = p.inserted.load(Acquire);
            // Mostly keys that should be there, some that should not.
            let i = match rng.next() % 8 {
                0 => rng.next() % N,
                _ if inserted > removed => removed + rng.next() % (inserted - removed),
                _ => rng.next() % N,
            };
            let got = if n % 2 == 0 {
                g.lookup(mac(i))
            } else {
                g.hit(mac(i), 100, now)
            };
            tally.lookups += 1;
            tally.during_resize += u64::from(resizing);
            match got {
                Some(s) => {
                    tally.found += 1;
                    assert!(written_for(i, s), "key {i}: {s:?} was never written for it");
                    assert!(i >= removed, "key {i} removed before the lookup, yet found");
                }
                None => {
                    // A removal may overlap the lookup: what counts is what
                    // was removed by the time it ended.
                    let removed_after = p.removing.load(Acquire);
                    assert!(
                        !(removed_after..inserted).contains(&i),
                        "key {i} inserted before the lookup and not removed, yet not found \
                         (inserted {inserted}, removed {removed}..{removed_after}, again {:?}, counters {:?})",
                        g.lookup(mac(i)), t.counters()
                    );
                }
            }
        }
    }
    tally
}

fn write(w: &mut Writer, t: &TargetTable, p: &Progress) -> (u64, u64) {
    let mut peak = 0;
    for i in 0..N {
        w.insert(mac(i), first_state(i)).unwrap();
        p.inserted.store(i + 1, Release);
        if i % 4096 == 0 {
            peak = peak.max(t.counters().capacity);
        }
    }
    for i in (0..N).step_by(4) {
        w.insert(mac(i), second_state(i).unwrap()).unwrap();
    }
    peak = peak.max(t.counters().capacity);
    for i in 0..N - KEEP {
        p.removing.store(i + 1, Release);
        w.remove(mac(i)).unwrap();
        p.removed.store(i + 1, Release);
    }
    while w.step(1 << 16) {
        std::thread::yield_now();
    }
    (peak, t.counters().capacity)
}

#[test]
fn readers_see_only_written_values_while_the_table_grows_and_shrinks() {
    let t = TargetTable::new(Config::default().min_capacity(1024)).unwrap();
    let p = Progress::default();
    let start = Instant::now();
    let (tallies, (peak, end_cap)) = std::thread::scope(|s| {
        let readers: Vec<_> = (0..2)
            .map(|k| {
                s.spawn({
                    let (t, p) = (&t, &p);
                    move || reader(t, p, 0x9e37_79b9_7f4a_7c15 ^ (k + 1))
                })
            })
            .collect();
        let mut w = t.writer();
        let out = write(&mut w, &t, &p);
        p.done.store(true, Release);
        let tallies: Vec<_> = readers.into_iter().map(|h| h.join().unwrap()).collect();
        w.check_invariants();
        (tallies, out)
    });
    let c = t.counters();
    eprintln!(
        "{:?} in {:?}; peak capacity {peak}, end {end_cap}; {c:?}",
        tallies,
        start.elapsed()
    );
    assert!(
        peak >= 2 * N,
        "the table should have grown to 2M+ buckets: {peak}"
    );
    assert!(
        end_cap <= 4096,
        "the table should have shrunk back: {end_cap}"
    );
    assert_eq!(c.len, KEEP);
    assert!(c.resizes >= 20, "{c:?}");
    for tally in &tallies {
        assert!(tally.lookups > 10_000 && tally.found > 0, "{tally:?}");
        assert!(
            tally.during_resize > 0,
            "no lookup overlapped a resize: {tally:?}"
        );
    }
    let r = t.reader();
    for i in N - KEEP..N {
        assert!(written_for(i, r.lookup(mac(i)).unwrap()));
    }
    assert_eq!(r.dump().count() as u64, KEEP);
}

#[test]
fn hits_from_two_threads_all_count() {
    let t = TargetTable::new(Config::default()).unwrap();
    let mut w = t.writer();
    for i in 0..64 {
        w.insert(mac(i), addr(i, 0)).unwrap();
    }
    let per_thread = 50_000u64;
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                let r = t.reader();
                let now = t.clock().now();
                for n in 0..per_thread {
                    r.hit(mac(n % 64), 3, now).unwrap();
                }
            });
        }
        // The writer churns other entries meanwhile (resizes, reuse of slots).
        for round in 0..20_000u64 {
            let k = 1000 + round % 3000;
            if w.remove(mac(k)).is_none() {
                w.insert(mac(k), TargetState::Drop).unwrap();
            }
        }
    });
    let total: u64 = t
        .reader()
        .dump()
        .filter(|e| e.mac.0[5] < 64 && e.mac.0[4] == 0 && e.mac.0[3] == 0)
        .map(|e| e.frames)
        .sum();
    assert_eq!(total, 2 * per_thread);
}
