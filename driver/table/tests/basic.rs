//! The table's behaviour, one thread at a time: states, statistics, bounds,
//! resizes and their observer, flush, retain, dumps.

use overlay_api::Mac;
use overlay_table::{Config, Inserted, ResizeObserver, TableError, TargetState, TargetTable, Tick};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

fn mac(i: u64) -> Mac {
    let b = (i | 0x0200_0000_0000).to_be_bytes();
    Mac([b[2], b[3], b[4], b[5], b[6], b[7]])
}

/// Odd keys get IPv4 destinations (inline), even ones IPv6 (interned).
fn dest(i: u64) -> TargetState {
    let a: SocketAddr = if i % 2 == 1 {
        format!("10.{}.{}.{}:4789", (i >> 16) & 255, (i >> 8) & 255, i & 255)
    } else {
        format!("[2001:db8::{:x}:{:x}]:4789", i >> 16, i & 0xffff)
    }
    .parse()
    .unwrap();
    TargetState::Valid(a)
}

#[test]
fn insert_update_remove() {
    let t = TargetTable::new(Config::default()).unwrap();
    let mut w = t.writer();
    let r = t.reader();
    assert_eq!(r.lookup(mac(1)), None);
    assert_eq!(
        w.insert(mac(1), TargetState::Pending),
        Ok(Inserted::Created)
    );
    assert_eq!(r.lookup(mac(1)), Some(TargetState::Pending));
    assert_eq!(
        w.insert(mac(1), dest(7)),
        Ok(Inserted::Updated {
            previous: TargetState::Pending
        })
    );
    assert_eq!(r.lookup(mac(1)), Some(dest(7)));
    assert_eq!(w.get(mac(1)), Some(dest(7)));
    w.insert(mac(2), TargetState::Drop).unwrap();
    assert_eq!(r.lookup(mac(2)), Some(TargetState::Drop));
    assert_eq!(t.len(), 2);
    assert_eq!(w.remove(mac(1)), Some(dest(7)));
    assert_eq!(w.remove(mac(1)), None);
    assert_eq!(r.lookup(mac(1)), None);
    assert_eq!(t.len(), 1);
    let v6: SocketAddr = "[2001:db8::1%3]:4789".parse().unwrap();
    w.insert(mac(3), TargetState::Valid(v6)).unwrap();
    assert_eq!(r.lookup(mac(3)), Some(TargetState::Valid(v6)));
    w.check_invariants();
}

#[test]
fn hits_count_and_updates_keep_statistics() {
    let t = TargetTable::new(Config::default()).unwrap();
    let mut w = t.writer();
    let r = t.reader();
    w.insert(mac(1), TargetState::Pending).unwrap();
    let t0 = t.clock().now();
    let g = r.pin();
    assert_eq!(g.hit(mac(1), 100, t0), Some(TargetState::Pending));
    assert_eq!(
        g.hit(mac(1), 60, Tick(t0.0 + 5)),
        Some(TargetState::Pending)
    );
    assert_eq!(g.hit(mac(9), 60, t0), None);
    drop(g);
    w.insert(mac(1), dest(1)).unwrap();
    let e: Vec<_> = r.dump().collect();
    assert_eq!(e.len(), 1);
    assert_eq!(
        (e[0].mac, e[0].state, e[0].frames, e[0].bytes),
        (mac(1), dest(1), 2, 160)
    );
    assert_eq!(e[0].last_used, Some(Tick(t0.0 + 5)));
    assert!(e[0].created <= t0);
    assert!(e[0].age(t.clock().now()) >= e[0].age(t0));
    // A removed and re-created entry starts from zero.
    w.remove(mac(1));
    w.insert(mac(1), dest(1)).unwrap();
    let e: Vec<_> = r.dump().collect();
    assert_eq!((e[0].frames, e[0].bytes, e[0].last_used), (0, 0, None));
}

#[test]
fn valid_hits_count_only_valid_entries() {
    let t = TargetTable::new(Config::default()).unwrap();
    let mut w = t.writer();
    let r = t.reader();
    let t0 = t.clock().now();
    w.insert(mac(1), TargetState::Pending).unwrap();
    w.insert(mac(2), TargetState::Drop).unwrap();
    w.insert(mac(3), dest(3)).unwrap();
    w.insert(mac(4), dest(4)).unwrap();
    let g = r.pin();
    assert_eq!(g.hit_valid(mac(1), 100, t0), None);
    assert_eq!(g.hit_valid(mac(2), 100, t0), None);
    assert_eq!(g.hit_valid(mac(9), 100, t0), None);
    let TargetState::Valid(d3) = dest(3) else {
        unreachable!()
    };
    let TargetState::Valid(d4) = dest(4) else {
        unreachable!()
    };
    assert_eq!(g.hit_valid(mac(3), 70, t0), Some(d3));
    assert_eq!(r.hit_valid(mac(4), 30, t0), Some(d4));
    drop(g);
    let mut e: Vec<_> = r.dump().map(|e| (e.mac, e.frames, e.bytes)).collect();
    e.sort();
    assert_eq!(
        e,
        vec![
            (mac(1), 0, 0),
            (mac(2), 0, 0),
            (mac(3), 1, 70),
            (mac(4), 1, 30)
        ]
    );
}

#[test]
fn max_entries_bounds_new_entries_only() {
    let t = TargetTable::new(Config::default().max_entries(100)).unwrap();
    let mut w = t.writer();
    for i in 0..100 {
        w.insert(mac(i), TargetState::Pending).unwrap();
    }
    for i in 100..1100 {
        assert_eq!(
            w.insert(mac(i), TargetState::Pending),
            Err(TableError::Full { max_entries: 100 })
        );
    }
    assert_eq!(t.len(), 100);
    assert_eq!(t.counters().rejected_full, 1000);
    // Existing entries still update; a removal makes room.
    assert!(w.insert(mac(5), TargetState::Drop).is_ok());
    w.remove(mac(5));
    assert_eq!(
        w.insert(mac(100), TargetState::Pending),
        Ok(Inserted::Created)
    );
    // Raising and lowering the bound.
    w.set_max_entries(101).unwrap();
    assert!(w.insert(mac(101), TargetState::Pending).is_ok());
    w.set_max_entries(10).unwrap();
    assert!(w.insert(mac(102), TargetState::Pending).is_err());
    assert_eq!(t.len(), 101);
    assert!(matches!(
        w.set_max_entries(0),
        Err(TableError::InvalidMaxEntries { .. })
    ));
    assert!(TargetTable::new(Config::default().max_entries(usize::MAX)).is_err());
    // The flood did not grow the table: memory follows the bound.
    assert!(t.counters().capacity <= 1024, "{:?}", t.counters());
    w.check_invariants();
}

#[derive(Default)]
struct Recorder {
    events: Mutex<Vec<String>>,
    steps: AtomicU64,
}

impl ResizeObserver for Recorder {
    fn on_resize_start(&self, old_cap: usize, new_cap: usize) {
        self.events
            .lock()
            .unwrap()
            .push(format!("start {old_cap}->{new_cap}"));
    }
    fn on_resize_step(&self, moved: u64, total: u64) {
        assert!(moved <= total);
        self.steps.fetch_add(1, Relaxed);
    }
    fn on_resize_done(&self, old_cap: usize, new_cap: usize, moved: u64, _ns: u64) {
        self.events
            .lock()
            .unwrap()
            .push(format!("done {old_cap}->{new_cap} moved {moved}"));
    }
}

#[test]
fn grows_and_shrinks_with_observer_and_counters() {
    let rec = Arc::new(Recorder::default());
    let t = TargetTable::new(Config::default().observer(rec.clone())).unwrap();
    let mut w = t.writer();
    let r = t.reader();
    let n = 100_000;
    for i in 0..n {
        w.insert(mac(i), dest(i % 300)).unwrap();
    }
    let c = t.counters();
    assert_eq!(c.len, n);
    assert!(c.capacity >= 2 * n && c.capacity <= 8 * n, "{c:?}");
    assert!(c.resizes >= 10, "{c:?}");
    assert!(c.entries_moved >= n / 2, "{c:?}");
    assert_eq!(c.destinations, 150);
    assert!(rec.steps.load(Relaxed) > 0);
    {
        let ev = rec.events.lock().unwrap();
        assert_eq!(ev[0], "start 64->128");
        assert!(ev[1].starts_with("done 64->128 moved "));
    }
    while w.step(1 << 20) {}
    assert!(!t.counters().resize_in_progress);
    for i in (0..n).step_by(7) {
        assert_eq!(r.lookup(mac(i)), Some(dest(i % 300)));
    }
    w.check_invariants();
    for i in 0..n - 10 {
        w.remove(mac(i));
    }
    assert!(w.quiesce(1000));
    let c = t.counters();
    assert_eq!(c.len, 10);
    assert!(c.capacity <= 128, "{c:?}");
    assert_eq!(c.destinations, 5);
    assert_eq!(c.slots_waiting, 0);
    // Slot segments went back, but one (and some slack) stays.
    assert!(c.slots_allocated <= 2 * 4096, "{c:?}");
    let ev = rec.events.lock().unwrap();
    assert!(
        ev.iter()
            .any(|e| e.starts_with("start") && e.contains("->64")),
        "{ev:?}"
    );
    assert_eq!(
        ev.iter().filter(|e| e.starts_with("start")).count(),
        ev.iter().filter(|e| e.starts_with("done")).count()
    );
    for i in n - 10..n {
        assert_eq!(r.lookup(mac(i)), Some(dest(i % 300)));
    }
    drop(ev);
    w.check_invariants();
}

#[test]
fn churn_rehashes_tombstones_away() {
    let t = TargetTable::new(Config::default()).unwrap();
    let mut w = t.writer();
    for round in 0..20_000u64 {
        w.insert(mac(round), TargetState::Drop).unwrap();
        if round >= 20 {
            w.remove(mac(round - 20));
        }
    }
    w.check_invariants();
    let c = t.counters();
    assert_eq!(c.len, 20);
    assert!(c.capacity <= 256, "{c:?}");
    assert!(c.resizes > 10, "tombstones should force rehashes: {c:?}");
}

#[test]
fn flush_and_retain() {
    let t = TargetTable::new(Config::default()).unwrap();
    let mut w = t.writer();
    let r = t.reader();
    for i in 0..5000 {
        let s = match i % 3 {
            0 => TargetState::Pending,
            1 => TargetState::Drop,
            _ => dest(i),
        };
        w.insert(mac(i), s).unwrap();
    }
    let removed = w.retain(|_, s| s != TargetState::Drop);
    assert_eq!(removed, 1667);
    assert_eq!(t.len(), 5000 - 1667);
    assert_eq!(r.lookup(mac(1)), None);
    assert_eq!(r.lookup(mac(2)), Some(dest(2)));
    w.check_invariants();
    // Flush in the middle of a resize.
    for i in 5000..9000 {
        w.insert(mac(i), TargetState::Pending).unwrap();
    }
    assert_eq!(w.flush(), 9000 - 1667);
    assert!(t.is_empty());
    assert_eq!(r.lookup(mac(2)), None);
    assert_eq!(r.dump().count(), 0);
    assert_eq!(t.counters().capacity, 64);
    w.insert(mac(2), TargetState::Drop).unwrap();
    assert_eq!(r.lookup(mac(2)), Some(TargetState::Drop));
    w.check_invariants();
    assert!(w.quiesce(1000));
    assert_eq!(t.counters().destinations, 0);
}

#[test]
fn writers_on_two_threads_serialise() {
    let t = TargetTable::new(Config::default()).unwrap();
    std::thread::scope(|s| {
        for k in 0..2u64 {
            let t = t.clone();
            s.spawn(move || {
                let mut w = t.writer();
                for i in 0..20_000 {
                    w.insert(mac(k << 32 | i), dest(i)).unwrap();
                }
            });
        }
    });
    assert_eq!(t.len(), 40_000);
    t.writer().check_invariants();
}
