//! Lookup throughput on 1 and 2 threads: overlay-table against papaya and
//! dashmap, same keys, same hash, same values, same run.
//!
//! ```text
//! cargo bench -p overlay-table --bench lookup
//! BENCH_RUNS=9 BENCH_SECS=1 cargo bench -p overlay-table --bench lookup
//! ```
//!
//! Each table holds 100k entries; every thread looks up random hits from a
//! precomputed list for BENCH_SECS (default 0.5 s). Each run measures every
//! subject once, in turn, so noise on a shared machine falls on all alike;
//! the table shows the median of the runs in million lookups per second
//! (all threads together) and the ratio of overlay-table to the best peer
//! in the same pinning mode.

mod common;

use common::*;
use std::hint::black_box;
use std::sync::Barrier;
use std::time::{Duration, Instant};

fn entries() -> u64 {
    std::env::var("BENCH_ENTRIES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(100_000)
}
const KEYS: usize = 1 << 20;

/// Million lookups per second over `threads` threads.
fn throughput<S: Subject>(s: &S, keys: &[u64], threads: usize, batched: bool, secs: f64) -> f64 {
    let barrier = Barrier::new(threads);
    let dur = Duration::from_secs_f64(secs);
    let counts: Vec<(u64, Duration)> = std::thread::scope(|sc| {
        let hs: Vec<_> = (0..threads)
            .map(|t| {
                let barrier = &barrier;
                sc.spawn(move || {
                    let l = s.local();
                    let mut pos = t * KEYS / threads;
                    let mut n = 0u64;
                    let mut sink = 0u64;
                    barrier.wait();
                    let start = Instant::now();
                    loop {
                        for _ in 0..16 {
                            if pos + BATCH > keys.len() {
                                pos = 0;
                            }
                            let b = &keys[pos..pos + BATCH];
                            if batched {
                                sink += S::lookup_batch(&l, b);
                            } else {
                                for &k in b {
                                    sink += S::lookup(&l, k);
                                }
                            }
                            pos += BATCH;
                            n += BATCH as u64;
                        }
                        let e = start.elapsed();
                        if e >= dur {
                            black_box(sink);
                            return (n, e);
                        }
                    }
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    counts
        .iter()
        .map(|&(n, e)| n as f64 / e.as_secs_f64() / 1e6)
        .sum()
}

fn main() {
    let runs = runs(5);
    let secs: f64 = std::env::var("BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0.5);
    let ours = Ours::new(64);
    let papaya = Papaya::new();
    let dash = Dash::new();
    populate(&ours, 0, entries());
    populate(&papaya, 0, entries());
    populate(&dash, 0, entries());
    ours.0.writer().quiesce(1000);
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let keys: Vec<u64> = (0..KEYS).map(|_| key(rng.next() % entries())).collect();
    // Sanity: every key is a hit in every table.
    for &k in keys.iter().take(1000) {
        assert!(
            Ours::lookup(&ours.local(), k) > 1
                && Papaya::lookup(&papaya.local(), k) > 1
                && Dash::lookup(&dash.local(), k) > 1
        );
    }

    let names = [
        "overlay-table   pin/lookup",
        "papaya          pin/lookup",
        "dashmap         (no pin)",
        "overlay-table   pin/64",
        "papaya          pin/64",
        "overlay-table   hit+stats pin/64",
    ];
    // figures[threads-1][subject] = per-run values
    let mut figures = vec![vec![Vec::new(); names.len()]; 2];
    for run in 0..runs {
        for threads in 1..=2 {
            let f = &mut figures[threads - 1];
            f[0].push(throughput(&ours, &keys, threads, false, secs));
            f[1].push(throughput(&papaya, &keys, threads, false, secs));
            f[2].push(throughput(&dash, &keys, threads, false, secs));
            f[3].push(throughput(&ours, &keys, threads, true, secs));
            f[4].push(throughput(&papaya, &keys, threads, true, secs));
            f[5].push(throughput(&OursHit(&ours), &keys, threads, true, secs));
        }
        eprintln!("run {}/{runs} done", run + 1);
    }
    let med: Vec<Vec<f64>> = figures
        .into_iter()
        .map(|per| per.into_iter().map(median).collect())
        .collect();
    println!();
    println!(
        "lookup throughput: {} entries, random hits, Mlookups/s (all threads), median of {runs} runs of {secs} s",
        entries()
    );
    println!("{:<34} {:>10} {:>10}", "subject", "1 thread", "2 threads");
    for (i, n) in names.iter().enumerate() {
        println!("{:<34} {:>10.1} {:>10.1}", n, med[0][i], med[1][i]);
    }
    let ratio = |t: usize, ours: usize, peers: &[usize]| {
        let best = peers.iter().map(|&p| med[t][p]).fold(0.0, f64::max);
        med[t][ours] / best
    };
    println!(
        "{:<34} {:>10.2} {:>10.2}",
        "ratio ours/best peer, pin/lookup",
        ratio(0, 0, &[1, 2]),
        ratio(1, 0, &[1, 2])
    );
    println!(
        "{:<34} {:>10.2} {:>10.2}",
        "ratio ours/best peer, pin/64",
        ratio(0, 3, &[4, 2]),
        ratio(1, 3, &[4, 2])
    );
}
