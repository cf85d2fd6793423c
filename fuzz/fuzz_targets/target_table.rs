//! The target table driven by arbitrary operations (frames to arbitrary MACs,
//! answers, sets, removals, flushes, invalidations) under a small bound:
//! no panic, the bound holds, and released frames are never lost.
#![no_main]
use libfuzzer_sys::fuzz_target;
use overlay_api::{Mac, TargetDest};
use overlay_core::target::{Answer, NoObserver, TargetTable};
use std::sync::Arc;
use std::time::{Duration, Instant};

fuzz_target!(|data: &[u8]| {
    let mut t = TargetTable::with(16, Arc::new(NoObserver)).expect("table");
    let start = Instant::now();
    for (i, op) in data.chunks(3).enumerate() {
        let [kind, m, x] = [op[0], *op.get(1).unwrap_or(&0), *op.get(2).unwrap_or(&0)];
        let mac = Mac([2, 0, 0, 0, 0, m % 32]);
        let now = start + Duration::from_secs(i as u64);
        let dest = std::net::SocketAddr::from(([10, 0, 0, x], 4789));
        match kind % 8 {
            0 | 1 => {
                let _ = t.tx(mac, &vec![x; 14 + x as usize * 64], now);
            }
            2 => {
                let _ = t.answer(mac, if x % 2 == 0 { Answer::Dest(dest) } else { Answer::Drop }, now);
            }
            3 => {
                let _ = t.set(mac, if x % 3 == 0 { TargetDest::Drop } else { TargetDest::Valid(dest) });
            }
            4 => {
                let _ = t.remove(mac);
            }
            5 => {
                t.invalidate(mac);
            }
            6 => t.invalidate_resolved(),
            _ => {
                t.flush();
            }
        }
        assert!(t.len() <= 16, "bound exceeded: {}", t.len());
    }
    let (rows, _) = t.dump_page(0, 64, start);
    assert_eq!(rows.len(), t.len());
});
