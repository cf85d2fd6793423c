//! Dumps of a million entries: complete, consistent with a model, quick, and
//! undisturbed by a writer and readers working meanwhile.

use overlay_api::Mac;
use overlay_table::{Config, EntrySnapshot, TargetState, TargetTable, Tick};
use std::collections::HashMap;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::sync::atomic::{
    AtomicBool,
    Ordering::{Acquire, Release},
};
use std::time::Instant;

const N: u64 = 1_000_000;
/// Inserted so that a million remain once every tenth is removed.
const INSERTED: u64 = 1_111_112;

fn mac(i: u64) -> Mac {
    let b = (i | 0x0200_0000_0000).to_be_bytes();
    Mac([b[2], b[3], b[4], b[5], b[6], b[7]])
}

fn key(m: Mac) -> u64 {
    u64::from_be_bytes([0, 0, m.0[0], m.0[1], m.0[2], m.0[3], m.0[4], m.0[5]]) & !0x0200_0000_0000
}

/// Key `i`'s state at `version`; destinations shared by 64 keys each.
fn state(i: u64, version: u16) -> TargetState {
    match (i + u64::from(version)) % 8 {
        0 => TargetState::Pending,
        1 => TargetState::Drop,
        2 => TargetState::Valid(SocketAddr::V6(SocketAddrV6::new(
            Ipv6Addr::from_bits(u128::from(i / 64) << 64 | 1),
            4789 + version,
            0,
            0,
        ))),
        _ => TargetState::Valid(SocketAddr::V4(SocketAddrV4::new(
            Ipv4Addr::from_bits((i / 64) as u32),
            4789 + version,
        ))),
    }
}

#[test]
fn a_million_entries_dump_as_the_model_says() {
    let t = TargetTable::new(Config::default().max_entries(2 * N as usize)).unwrap();
    let mut w = t.writer();
    let r = t.reader();
    let mut model: HashMap<u64, (TargetState, u64, u64)> =
        HashMap::with_capacity(INSERTED as usize);
    for i in 0..INSERTED {
        w.insert(mac(i), state(i, 0)).unwrap();
        model.insert(i, (state(i, 0), 0, 0));
    }
    // Updates, removals, statistics.
    for i in (0..INSERTED).step_by(3) {
        w.insert(mac(i), state(i, 1)).unwrap();
        model.get_mut(&i).unwrap().0 = state(i, 1);
    }
    for i in (0..INSERTED).step_by(10) {
        w.remove(mac(i));
        model.remove(&i);
    }
    let t0 = t.clock().now();
    let g = r.pin();
    for i in (1..INSERTED).step_by(97) {
        for n in 0..(i % 5 + 1) {
            let hit = g.hit(mac(i), i % 1500 + n, Tick(t0.0 + n));
            let e = model.get_mut(&i);
            assert_eq!(hit, e.as_ref().map(|e| e.0));
            if let Some(e) = e {
                e.1 += 1;
                e.2 += i % 1500 + n;
            }
        }
    }
    drop(g);
    assert_eq!(t.len(), model.len());
    assert_eq!(model.len() as u64, N);

    let start = Instant::now();
    let mut dumped: Vec<EntrySnapshot> = r.dump().collect();
    let took = start.elapsed();
    eprintln!("dump of {} entries: {took:?}", dumped.len());
    assert_eq!(dumped.len(), model.len());
    dumped.sort_unstable_by_key(|e| key(e.mac));
    dumped.dedup_by_key(|e| key(e.mac));
    assert_eq!(dumped.len(), model.len(), "an entry was dumped twice");
    let now = t.clock().now();
    for e in &dumped {
        let k = key(e.mac);
        let &(s, frames, bytes) = model
            .get(&k)
            .unwrap_or_else(|| panic!("dumped {k}, not in the model"));
        assert_eq!((e.state, e.frames, e.bytes), (s, frames, bytes), "key {k}");
        assert!(e.created <= t0 && e.age(now) >= now.since(t0));
        assert_eq!(e.last_used.is_some(), frames > 0);
    }
    // A second dump, iterator-style, stopping early: nothing is held.
    assert_eq!(r.dump().take(10).count(), 10);
    w.insert(mac(INSERTED), TargetState::Drop).unwrap();
    assert_eq!(r.dump().count(), model.len() + 1);
}

#[test]
fn dumps_stay_consistent_while_the_table_changes() {
    let t = TargetTable::new(Config::default()).unwrap();
    let mut w = t.writer();
    // Stable keys 0..200k live throughout; churn keys above come and go.
    const STABLE: u64 = 200_000;
    for i in 0..STABLE {
        w.insert(mac(i), state(i, 0)).unwrap();
    }
    let done = AtomicBool::new(false);
    std::thread::scope(|s| {
        let dumper = s.spawn(|| {
            let r = t.reader();
            let mut dumps = 0;
            while !done.load(Acquire) || dumps < 2 {
                let mut seen = vec![false; STABLE as usize];
                for e in r.dump() {
                    let k = key(e.mac);
                    let ok = (0..3).any(|v| e.state == state(k, v));
                    assert!(ok, "key {k}: {:?} was never written for it", e.state);
                    if k < STABLE {
                        assert!(!seen[k as usize], "stable key {k} dumped twice");
                        seen[k as usize] = true;
                    }
                }
                assert!(
                    seen.iter().all(|&b| b),
                    "a stable key was missing from a dump"
                );
                dumps += 1;
            }
            dumps
        });
        let hitter = s.spawn(|| {
            let r = t.reader();
            let now = t.clock().now();
            let mut n = 0u64;
            while !done.load(Acquire) {
                let g = r.pin();
                for i in 0..64 {
                    let k = (n * 64 + i) * 7919 % STABLE;
                    assert!(g.hit(mac(k), 64, now).is_some());
                }
                n += 1;
            }
        });
        // Churn: a moving window of 300k keys above the stable ones, and
        // updates of stable keys; the table grows and shrinks with it.
        for round in 0..600_000u64 {
            let k = STABLE + round;
            w.insert(mac(k), state(k, (round % 3) as u16)).unwrap();
            if round >= 300_000 {
                w.remove(mac(k - 300_000)).unwrap();
            }
            if round % 4 == 0 {
                let s = round / 4 % STABLE;
                w.insert(mac(s), state(s, (round % 3) as u16)).unwrap();
            }
        }
        done.store(true, Release);
        let dumps = dumper.join().unwrap();
        hitter.join().unwrap();
        eprintln!("{dumps} dumps while churning; {:?}", t.counters());
        assert!(dumps >= 2);
    });
    w.check_invariants();
}

/// A dump taken a page at a time, resuming from `Dump::position`, yields
/// every entry exactly once, as one pass would.
#[test]
fn paged_dump_resumes_where_it_stopped() {
    let table = TargetTable::new(Config::default()).expect("table");
    let mut w = table.writer();
    let n = 10_000u64;
    for i in 0..n {
        w.insert(
            mac(i),
            TargetState::Valid(SocketAddr::from(([10, 0, 0, 1], 4789))),
        )
        .expect("insert");
    }
    for i in (0..n).step_by(7) {
        w.remove(mac(i));
    }
    let r = table.reader();
    let whole: Vec<Mac> = r.dump().map(|e| e.mac).collect();
    let (mut paged, mut pos, mut pages) = (Vec::new(), 0usize, 0);
    loop {
        let mut d = r.dump_from(pos);
        let page: Vec<Mac> = d.by_ref().take(999).map(|e| e.mac).collect();
        pos = d.position();
        pages += 1;
        if page.is_empty() {
            break;
        }
        paged.extend(page);
    }
    assert_eq!(paged, whole);
    assert_eq!(paged.len() as u64, n - n.div_ceil(7));
    assert!(pages > 9, "{pages} pages");
}
