//! Property test: random operation sequences against a `HashMap` model, on a
//! table with a tiny minimum capacity so that grows, shrinks, rehashes and
//! migrations under way are everywhere.

use overlay_api::Mac;
use overlay_table::{Config, Inserted, TableError, TargetState, TargetTable, Tick};
use proptest::prelude::*;
use std::collections::HashMap;
use std::net::SocketAddr;

fn mac(k: u64) -> Mac {
    let b = k.to_be_bytes();
    Mac([b[2], b[3], b[4], b[5], b[6], b[7]])
}

fn state(s: u8) -> TargetState {
    match s {
        0 => TargetState::Pending,
        1 => TargetState::Drop,
        n => {
            let a: SocketAddr = if n % 2 == 0 {
                format!("192.0.2.{n}:{}", 4789 + u16::from(n))
                    .parse()
                    .unwrap()
            } else {
                format!("[2001:db8::{n}]:4789").parse().unwrap()
            };
            TargetState::Valid(a)
        }
    }
}

#[derive(Debug, Clone)]
enum Op {
    Insert(u64, u8),
    Remove(u64),
    Hit(u64, u16),
    InsertRange(u64, u64, u8),
    RemoveRange(u64, u64),
    Step(usize),
    Retain(u8),
    SetMax(usize),
    Flush,
}

const KEYS: u64 = 4000;

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (0..KEYS, 0u8..8).prop_map(|(k, s)| Op::Insert(k, s)),
        4 => (0..KEYS).prop_map(Op::Remove),
        4 => (0..KEYS, 1u16..1500).prop_map(|(k, b)| Op::Hit(k, b)),
        2 => (0..KEYS, 1u64..1500, 0u8..8).prop_map(|(k, n, s)| Op::InsertRange(k, n, s)),
        2 => (0..KEYS, 1u64..3000).prop_map(|(k, n)| Op::RemoveRange(k, n)),
        2 => (0usize..300).prop_map(Op::Step),
        1 => (0u8..8).prop_map(Op::Retain),
        1 => (1usize..5000).prop_map(Op::SetMax),
        1 => Just(Op::Flush),
    ]
}

#[derive(Default, Clone, Copy, PartialEq, Eq, Debug)]
struct Model {
    state: Option<TargetState>,
    frames: u64,
    bytes: u64,
}

proptest! {
    // 96 cases by default; PROPTEST_CASES=N for a longer search.
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|s| s.parse().ok()).unwrap_or(96),
        ..ProptestConfig::default()
    })]

    #[test]
    fn table_matches_a_hashmap(ops in proptest::collection::vec(op(), 1..120), max in 200usize..6000) {
        let t = TargetTable::new(Config::default().min_capacity(8).max_entries(max)).unwrap();
        let mut w = t.writer();
        let r = t.reader();
        let mut max = max;
        let mut m: HashMap<u64, Model> = HashMap::new();
        let insert = |w: &mut overlay_table::Writer, m: &mut HashMap<u64, Model>, max: usize, k: u64, s: u8| {
            let got = w.insert(mac(k), state(s));
            let len = m.len();
            match m.get_mut(&k) {
                Some(e) => {
                    prop_assert_eq!(got, Ok(Inserted::Updated { previous: e.state.unwrap() }));
                    e.state = Some(state(s));
                }
                None if len >= max => {
                    prop_assert_eq!(got, Err(TableError::Full { max_entries: max }));
                }
                None => {
                    prop_assert_eq!(got, Ok(Inserted::Created));
                    m.insert(k, Model { state: Some(state(s)), frames: 0, bytes: 0 });
                }
            }
            Ok(())
        };
        for (n, op) in ops.into_iter().enumerate() {
            match op {
                Op::Insert(k, s) => {
                    insert(&mut w, &mut m, max, k, s)?;
                    prop_assert_eq!(r.lookup(mac(k)), m.get(&k).and_then(|e| e.state));
                }
                Op::Remove(k) => {
                    prop_assert_eq!(w.remove(mac(k)), m.remove(&k).and_then(|e| e.state));
                    prop_assert_eq!(r.lookup(mac(k)), None);
                }
                Op::Hit(k, b) => {
                    let got = r.hit(mac(k), u64::from(b), Tick(n as u64 + 1));
                    if let Some(e) = m.get_mut(&k) {
                        e.frames += 1;
                        e.bytes += u64::from(b);
                    }
                    prop_assert_eq!(got, m.get(&k).and_then(|e| e.state));
                }
                Op::InsertRange(k, len, s) => {
                    for k in k..k + len {
                        insert(&mut w, &mut m, max, k, s)?;
                    }
                }
                Op::RemoveRange(k, len) => {
                    for k in k..k + len {
                        prop_assert_eq!(w.remove(mac(k)), m.remove(&k).and_then(|e| e.state));
                    }
                }
                Op::Step(b) => {
                    w.step(b);
                }
                Op::Retain(s) => {
                    let drop_it = state(s);
                    let removed = w.retain(|_, st| st != drop_it);
                    let before = m.len();
                    m.retain(|_, e| e.state != Some(drop_it));
                    prop_assert_eq!(removed, before - m.len());
                }
                Op::SetMax(n) => {
                    w.set_max_entries(n).unwrap();
                    max = n;
                }
                Op::Flush => {
                    prop_assert_eq!(w.flush(), m.len());
                    m.clear();
                }
            }
            prop_assert_eq!(t.len(), m.len());
        }
        w.check_invariants();
        for k in 0..KEYS * 2 {
            prop_assert_eq!(r.lookup(mac(k)), m.get(&k).and_then(|e| e.state), "key {}", k);
        }
        let mut dumped = HashMap::new();
        for e in r.dump() {
            let k = u64::from_be_bytes([0, 0, e.mac.0[0], e.mac.0[1], e.mac.0[2], e.mac.0[3], e.mac.0[4], e.mac.0[5]]);
            let prev = dumped.insert(k, Model { state: Some(e.state), frames: e.frames, bytes: e.bytes });
            prop_assert!(prev.is_none(), "key {} dumped twice", k);
        }
        prop_assert_eq!(dumped, m);
        // Everything removed comes back once readers have moved on.
        prop_assert!(w.quiesce(1000));
        prop_assert_eq!(t.counters().slots_waiting, 0);
    }
}
