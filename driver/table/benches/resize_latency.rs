//! Lookup latency while the table grows from 1k to 1M entries, against the
//! same reader in steady state: overlay-table, papaya and dashmap.
//!
//! ```text
//! cargo bench -p overlay-table --bench resize_latency
//! BENCH_RUNS=5 cargo bench -p overlay-table --bench resize_latency
//! ```
//!
//! One reader thread times single lookups (each pinned on its own, the
//! conservative case) with the CPU's timestamp counter, on random keys
//! already inserted. Three phases per subject and run:
//!
//! - *steady*: the table holds 1M entries and the writer is idle;
//! - *updates*: 1M entries, the writer rewrites existing entries' values as
//!   fast as it can (no resize): the cost of a busy writer alone;
//! - *resize*: the table starts with 1k entries and the writer inserts up to
//!   1M as fast as it can: every grow of the table happens under the reader.
//!
//! Printed: p50, p99, p99.9 and max in ns (medians over runs), and the ratio
//! p99.9(resize) / p99.9(steady). The timer's own overhead is printed too; it
//! is in every figure alike.

mod common;

use common::*;
use std::hint::black_box;
use std::sync::atomic::{
    AtomicBool, AtomicU64,
    Ordering::{Acquire, Relaxed, Release},
};
use std::time::{Duration, Instant};

const START: u64 = 1_000;
const END: u64 = 1_000_000;
const STEADY_SAMPLES: usize = 3_000_000;
const MAX_SAMPLES: usize = 1 << 24;

#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn ticks() -> u64 {
    use std::arch::x86_64::{__rdtscp, _mm_lfence};
    let mut aux = 0;
    // SAFETY: rdtscp and lfence exist on every x86-64 CPU this runs on;
    // they only read the timestamp counter and order instructions.
    unsafe {
        let t = __rdtscp(&mut aux);
        _mm_lfence();
        t
    }
}

#[cfg(not(target_arch = "x86_64"))]
fn ticks() -> u64 {
    use std::sync::OnceLock;
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

/// Timestamp-counter ticks per nanosecond.
fn calibrate() -> f64 {
    let (t0, i0) = (ticks(), Instant::now());
    while i0.elapsed() < Duration::from_millis(200) {}
    let (t1, e) = (ticks(), i0.elapsed());
    (t1 - t0) as f64 / e.as_nanos() as f64
}

#[derive(Clone, Copy, Default)]
struct Pcts {
    p50: f64,
    p99: f64,
    p999: f64,
    max: f64,
    n: usize,
}

fn percentiles(mut v: Vec<u32>, per_ns: f64) -> Pcts {
    v.sort_unstable();
    let at = |q: f64| v[((v.len() as f64 * q) as usize).min(v.len() - 1)] as f64 / per_ns;
    Pcts {
        p50: at(0.5),
        p99: at(0.99),
        p999: at(0.999),
        max: *v.last().unwrap() as f64 / per_ns,
        n: v.len(),
    }
}

/// Times lookups of random keys below `*limit` until `stop` (or `samples`).
fn sample<S: Subject>(
    s: &S,
    limit: &AtomicU64,
    stop: &AtomicBool,
    samples: usize,
    seed: u64,
) -> Vec<u32> {
    let l = s.local();
    let mut rng = Rng(seed);
    let mut out = Vec::with_capacity(samples.min(MAX_SAMPLES));
    let mut sink = 0;
    while out.len() < samples && !stop.load(Relaxed) {
        let n = limit.load(Acquire);
        for _ in 0..64 {
            let k = key(rng.next() % n);
            let t0 = ticks();
            sink += S::lookup(&l, k);
            let t1 = ticks();
            out.push((t1 - t0).min(u64::from(u32::MAX)) as u32);
        }
    }
    black_box(sink);
    out
}

enum Phase {
    Steady,
    Updates,
    Resize,
}

/// Runs one phase on a fresh table; returns the samples and what the table
/// says about itself afterwards.
fn phase<S: Subject + Sync>(make: impl Fn() -> S, which: Phase, seed: u64) -> (Vec<u32>, String) {
    let s = make();
    let start = match which {
        Phase::Resize => START,
        _ => END,
    };
    populate(&s, 0, start);
    let limit = AtomicU64::new(start);
    let stop = AtomicBool::new(false);
    let samples = std::thread::scope(|sc| {
        let reader = sc.spawn(|| {
            let samples = match which {
                Phase::Steady => STEADY_SAMPLES,
                _ => MAX_SAMPLES,
            };
            sample(&s, &limit, &stop, samples, seed)
        });
        match which {
            Phase::Steady => {}
            Phase::Updates => {
                let mut w = s.writer();
                let t = Instant::now();
                let mut i = 0;
                while t.elapsed() < Duration::from_millis(700) {
                    for _ in 0..1024 {
                        S::insert(&mut w, key(i % END), value(i, 1 + (i / END) as u16));
                        i += 1;
                    }
                }
                stop.store(true, Release);
            }
            Phase::Resize => {
                let mut w = s.writer();
                for i in START..END {
                    S::insert(&mut w, key(i), value(i, 0));
                    if i % 64 == 0 {
                        limit.store(i, Release);
                    }
                }
                stop.store(true, Release);
            }
        }
        reader.join().unwrap()
    });
    (samples, s.info())
}

const PHASES: [&str; 3] = ["steady", "updates", "resize"];

fn which(p: usize) -> Phase {
    match p {
        0 => Phase::Steady,
        1 => Phase::Updates,
        _ => Phase::Resize,
    }
}

fn main() {
    let runs = runs(3);
    let per_ns = calibrate();
    let overhead = {
        let mut v = Vec::with_capacity(100_000);
        for _ in 0..100_000 {
            let t0 = ticks();
            let t1 = ticks();
            v.push((t1 - t0) as u32);
        }
        percentiles(v, per_ns)
    };
    let names = ["overlay-table", "papaya", "dashmap"];
    // res[subject][phase] = per-run percentiles
    let mut res: Vec<Vec<Vec<Pcts>>> = vec![vec![Vec::new(); 3]; 3];
    for run in 0..runs {
        let seed = 0x9e37_79b9_7f4a_7c15 ^ run as u64;
        for p in 0..PHASES.len() {
            let (v, info) = phase(|| Ours::new(1024), which(p), seed);
            if p == 2 {
                eprintln!("overlay-table after the resize phase: {info}");
            }
            let figures = [
                v,
                phase(Papaya::new, which(p), seed).0,
                phase(Dash::new, which(p), seed).0,
            ];
            for (per_subject, v) in res.iter_mut().zip(figures) {
                per_subject[p].push(percentiles(v, per_ns));
            }
        }
        eprintln!("run {}/{runs} done", run + 1);
    }
    println!();
    println!(
        "lookup latency, one reader thread, one lookup per pin, ns; median of {runs} runs \
         (timer overhead, in every figure: p50 {:.0} ns)",
        overhead.p50
    );
    println!(
        "{:<14} {:<8} {:>8} {:>8} {:>8} {:>9} {:>10}",
        "subject", "phase", "p50", "p99", "p99.9", "max", "samples"
    );
    let mut ratios = Vec::new();
    for (si, name) in names.iter().enumerate() {
        for (pi, pname) in PHASES.iter().enumerate() {
            let r = &res[si][pi];
            let med = |f: fn(&Pcts) -> f64| median(r.iter().map(f).collect());
            println!(
                "{:<14} {:<8} {:>8.0} {:>8.0} {:>8.0} {:>9.0} {:>10}",
                name,
                pname,
                med(|p| p.p50),
                med(|p| p.p99),
                med(|p| p.p999),
                med(|p| p.max),
                r.iter().map(|p| p.n).sum::<usize>() / r.len()
            );
        }
        // The ratio within each run (same machine weather), then its median.
        let per_run: Vec<f64> = res[si][2]
            .iter()
            .zip(&res[si][0])
            .map(|(r, s)| r.p999 / s.p999)
            .collect();
        let all: Vec<String> = per_run.iter().map(|r| format!("{r:.2}")).collect();
        ratios.push((name, median(per_run), all.join(" ")));
    }
    println!();
    println!("p99.9(resize) / p99.9(steady), median of the per-run ratios [each run]:");
    for (name, r, all) in ratios {
        println!("  {name:<14} {r:>6.2}   [{all}]");
    }
}
