//! What both benchmarks share: the three tables behind one trait, the same
//! hash for all of them, keys, statistics and a cycle timer.
//!
//! Fairness: papaya and dashmap get the very hash function overlay-table uses
//! (a seeded two-round folded multiply), so the figures compare the tables,
//! not SipHash against a fast mixer. Values are the same `TargetState` in all
//! three. Readers of overlay-table and papaya pin per lookup or per batch of
//! 64 (the data plane's batch), as labelled; dashmap has no pin (each lookup
//! takes a shard's read lock).

#![allow(dead_code)]

use overlay_api::Mac;
use overlay_table::{Config, Reader, TargetState, TargetTable, Writer};
use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};

/// Frames a forwarding thread handles per pin.
pub const BATCH: usize = 64;

/// The hash overlay-table uses, for the peers.
#[derive(Clone)]
pub struct FoldHash {
    seed: [u64; 2],
}

impl Default for FoldHash {
    fn default() -> Self {
        let s = RandomState::new();
        FoldHash {
            seed: [s.hash_one(1u64), s.hash_one(2u64)],
        }
    }
}

pub struct FoldHasher {
    seed: [u64; 2],
    h: u64,
}

#[inline]
fn folded_multiply(a: u64, b: u64) -> u64 {
    let full = u128::from(a) * u128::from(b);
    (full as u64) ^ ((full >> 64) as u64)
}

impl Hasher for FoldHasher {
    fn finish(&self) -> u64 {
        self.h
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }
    #[inline]
    fn write_u64(&mut self, key: u64) {
        self.h = folded_multiply(
            folded_multiply(key ^ self.seed[0], 0x243f_6a88_85a3_08d3) ^ self.seed[1],
            0x1319_8a2e_0370_7344,
        );
    }
}

impl BuildHasher for FoldHash {
    type Hasher = FoldHasher;
    fn build_hasher(&self) -> FoldHasher {
        FoldHasher {
            seed: self.seed,
            h: 0,
        }
    }
}

/// Key `i` (a locally administered unicast MAC, packed).
#[inline]
pub fn key(i: u64) -> u64 {
    0x0200_0000_0000 | i
}

#[inline]
pub fn mac(k: u64) -> Mac {
    let b = k.to_be_bytes();
    Mac([b[2], b[3], b[4], b[5], b[6], b[7]])
}

/// Key `i`'s destination: one of 1000 UL3 hosts, as in a real overlay where
/// many VL2 MACs live behind one host.
pub fn value(i: u64, version: u16) -> TargetState {
    TargetState::Valid(SocketAddr::V4(SocketAddrV4::new(
        Ipv4Addr::new(10, 1, (i % 1000 / 256) as u8, (i % 256) as u8),
        4789 + version,
    )))
}

/// Something of the answer, so the lookup is not optimised away.
#[inline]
pub fn port(s: Option<TargetState>) -> u64 {
    match s {
        Some(TargetState::Valid(a)) => u64::from(a.port()),
        Some(_) => 1,
        None => 0,
    }
}

/// A table under test.
pub trait Subject: Sync {
    /// A reading thread's handle.
    type Local<'a>
    where
        Self: 'a;
    /// A writing thread's handle.
    type WriterLocal<'a>
    where
        Self: 'a;
    fn local(&self) -> Self::Local<'_>;
    fn writer(&self) -> Self::WriterLocal<'_>;
    /// One lookup, pinned on its own.
    fn lookup(l: &Self::Local<'_>, k: u64) -> u64;
    /// A batch of lookups under one pin.
    fn lookup_batch(l: &Self::Local<'_>, keys: &[u64]) -> u64;
    fn insert(w: &mut Self::WriterLocal<'_>, k: u64, v: TargetState);
    /// What the table says about itself (overlay-table: its counters).
    fn info(&self) -> String {
        String::new()
    }
}

pub struct Ours(pub TargetTable);
pub struct Papaya(pub papaya::HashMap<u64, TargetState, FoldHash>);
pub struct Dash(pub dashmap::DashMap<u64, TargetState, FoldHash>);

impl Ours {
    pub fn new(min_capacity: usize) -> Self {
        Ours(
            TargetTable::new(
                Config::default()
                    .max_entries(1 << 22)
                    .min_capacity(min_capacity),
            )
            .unwrap(),
        )
    }
}

impl Papaya {
    pub fn new() -> Self {
        Papaya(
            papaya::HashMap::builder()
                .hasher(FoldHash::default())
                .build(),
        )
    }
}

impl Dash {
    pub fn new() -> Self {
        Dash(dashmap::DashMap::with_hasher(FoldHash::default()))
    }
}

impl Subject for Ours {
    type Local<'a> = Reader;
    type WriterLocal<'a> = Writer;
    fn local(&self) -> Reader {
        self.0.reader()
    }
    fn writer(&self) -> Writer {
        self.0.writer()
    }
    #[inline]
    fn lookup(l: &Reader, k: u64) -> u64 {
        port(l.lookup(mac(k)))
    }
    #[inline]
    fn lookup_batch(l: &Reader, keys: &[u64]) -> u64 {
        let g = l.pin();
        keys.iter().map(|&k| port(g.lookup(mac(k)))).sum()
    }
    fn insert(w: &mut Writer, k: u64, v: TargetState) {
        w.insert(mac(k), v).unwrap();
    }
    fn info(&self) -> String {
        let c = self.0.counters();
        format!(
            "{} entries, capacity {}, {} resizes, {} entries moved",
            c.len, c.capacity, c.resizes, c.entries_moved
        )
    }
}

/// overlay-table's hit path: lookup plus the statistics bump.
pub struct OursHit<'t>(pub &'t Ours);

impl Subject for OursHit<'_> {
    type Local<'a>
        = (Reader, overlay_table::Clock)
    where
        Self: 'a;
    type WriterLocal<'a>
        = Writer
    where
        Self: 'a;
    fn local(&self) -> (Reader, overlay_table::Clock) {
        (self.0 .0.reader(), self.0 .0.clock())
    }
    fn writer(&self) -> Writer {
        self.0 .0.writer()
    }
    #[inline]
    fn lookup(l: &(Reader, overlay_table::Clock), k: u64) -> u64 {
        port(l.0.hit(mac(k), 1500, l.1.now()))
    }
    #[inline]
    fn lookup_batch(l: &(Reader, overlay_table::Clock), keys: &[u64]) -> u64 {
        let now = l.1.now();
        let g = l.0.pin();
        keys.iter().map(|&k| port(g.hit(mac(k), 1500, now))).sum()
    }
    fn insert(w: &mut Writer, k: u64, v: TargetState) {
        w.insert(mac(k), v).unwrap();
    }
}

impl Subject for Papaya {
    type Local<'a> = &'a papaya::HashMap<u64, TargetState, FoldHash>;
    type WriterLocal<'a> = &'a papaya::HashMap<u64, TargetState, FoldHash>;
    fn local(&self) -> Self::Local<'_> {
        &self.0
    }
    fn writer(&self) -> Self::WriterLocal<'_> {
        &self.0
    }
    #[inline]
    fn lookup(l: &Self::Local<'_>, k: u64) -> u64 {
        port(l.pin().get(&k).copied())
    }
    #[inline]
    fn lookup_batch(l: &Self::Local<'_>, keys: &[u64]) -> u64 {
        let m = l.pin();
        keys.iter().map(|k| port(m.get(k).copied())).sum()
    }
    fn insert(w: &mut Self::WriterLocal<'_>, k: u64, v: TargetState) {
        w.pin().insert(k, v);
    }
}

impl Subject for Dash {
    type Local<'a> = &'a dashmap::DashMap<u64, TargetState, FoldHash>;
    type WriterLocal<'a> = &'a dashmap::DashMap<u64, TargetState, FoldHash>;
    fn local(&self) -> Self::Local<'_> {
        &self.0
    }
    fn writer(&self) -> Self::WriterLocal<'_> {
        &self.0
    }
    #[inline]
    fn lookup(l: &Self::Local<'_>, k: u64) -> u64 {
        port(l.get(&k).map(|v| *v))
    }
    #[inline]
    fn lookup_batch(l: &Self::Local<'_>, keys: &[u64]) -> u64 {
        keys.iter().map(|k| port(l.get(k).map(|v| *v))).sum()
    }
    fn insert(w: &mut Self::WriterLocal<'_>, k: u64, v: TargetState) {
        w.insert(k, v);
    }
}

/// Fills a subject with keys `from..to`.
pub fn populate<S: Subject>(s: &S, from: u64, to: u64) {
    let mut w = s.writer();
    for i in from..to {
        S::insert(&mut w, key(i), value(i, 0));
    }
}

/// A xorshift, for key choices that cost nothing.
pub struct Rng(pub u64);

impl Rng {
    #[inline]
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// The median of some figures.
pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// The number of runs, from `BENCH_RUNS` (default `default`).
pub fn runs(default: usize) -> usize {
    std::env::var("BENCH_RUNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}
