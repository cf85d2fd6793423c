//! # bench-scale: the etcd plugin at a thousand hosts
//!
//! Theory statement. The `etcd` search plugin keeps, on every host, a
//! *mirror* of all of an overlay's mappings (`PREFIX/VNI/vl2/MAC` → UL3,
//! `PREFIX/VNI/vl3/IP` → MAC), filled by one ranged GET and kept current by
//! one watch; each host registers its own guests under its own lease. The
//! question here is what that costs and how fast it converges as hosts are
//! added, measured rather than argued.
//!
//! ## Parts
//!
//! - [`etcd`]: a three-member etcd cluster of real `etcd` processes on
//!   loopback ports, data in a temporary directory, killed and removed on
//!   exit (also on failure or Ctrl-C).
//! - [`hosts`]: HOSTS simulated hosts, each a real
//!   [`varpd::plugins::etcd::EtcdInstance`] — the code varpd runs, with its
//!   own etcd client, lease, registrations, watch, mirror and invalidation
//!   path — packed into shards (one thread and one current-thread runtime
//!   each, as varpd runs). Each shard's stand-in for overlayd reads what
//!   its instances send and stamps when a [`hosts::Goal`] first holds at
//!   each host.
//! - [`alloc`]: a counting allocator, for the bytes of one mirror.
//! - this file: the phases, the figures, `target/bench/scale.json`.
//!
//! ## Phases (each figure is in brackets, as in the JSON)
//!
//! ```text
//!  start etcd ─► cold start: every host starts and registers GUESTS guests (MAC, IPv4, IPv6)
//!                  until every mirror holds every mapping                       [register_s]
//!             ─► M migrations: a guest re-registered on another host, until
//!                  every mirror has its new address                [migration_p50/p99/max_ms]
//!             ─► leader SIGKILLed, restarted on its data: lookups keep going to
//!                  the mirrors [failed_lookups]; a canary key written after the kill
//!                  tells when every host follows etcd again                    [resync_s]
//!             ─► a host dropped without goodbye (no revoke): until every other
//!                  mirror has lost its guests, against the lease TTL           [expiry_s]
//!             ─► mirror bytes per mapping, etcd DB size and CPU seconds
//! ```
//!
//! ## Failure
//!
//! Each wait has a limit; running past it fails the run with what was
//! missing (which hosts, what they reported). etcd members die with the
//! bench whatever happens (`PR_SET_PDEATHSIG`, and `Drop`).

mod alloc;
mod etcd;
mod hosts;

use anyhow::{bail, Context, Result};
use clap::Parser;
use hosts::{listen, Board, Goal, Guest, HostConfig};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use varpd::plugin::{Instance, LookupQuery};
use varpd::plugins::etcd::schema::{self, Key, Schema};

#[global_allocator]
static ALLOC: alloc::Counting = alloc::Counting;

/// The etcd plugin at scale: a real three-member etcd cluster and HOSTS
/// real plugin instances; prints every figure and writes them as JSON.
#[derive(Parser, Debug)]
#[command(name = "bench-scale")]
struct Args {
    /// Simulated hosts (plugin instances).
    #[arg(long, default_value_t = 1000)]
    hosts: usize,
    /// Guests each host registers (MAC + IPv4 + IPv6 each).
    #[arg(long, default_value_t = 10)]
    guests: usize,
    /// Guest migrations to time.
    #[arg(long, default_value_t = 20)]
    migrations: usize,
    /// Lease TTL of every host, seconds (the plugin's etcd/lease_ttl).
    #[arg(long, default_value_t = varpd::plugins::etcd::config::DEFAULT_TTL as u32)]
    ttl: u32,
    /// Most hosts starting at once at the cold start (started but not yet
    /// through their first read of etcd), as a fleet boots; 0: every host
    /// at the same instant.
    #[arg(long, default_value_t = 16)]
    boot_concurrency: usize,
    /// Shards (threads, one runtime each) the hosts are packed into;
    /// default: one per CPU.
    #[arg(long)]
    shards: Option<usize>,
    /// Where the figures go, as JSON.
    #[arg(long, default_value = "target/bench/scale.json")]
    out: PathBuf,
    /// Directory for etcd's data (a new subdirectory, removed at exit).
    #[arg(long, default_value_os_t = std::env::temp_dir())]
    data_dir: PathBuf,
    /// Longest any one phase may take, seconds.
    #[arg(long, default_value_t = 300)]
    phase_limit: u64,
    /// Seed of the choice of guests, hosts and lookups.
    #[arg(long, default_value_t = 19)]
    seed: u64,
}

/// A small deterministic generator (xorshift64*), so runs are repeatable.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 33) as usize % n.max(1)
    }
}

/// Raises the open-file limit to what HOSTS clients need (each keeps a
/// connection to every member) and fails early, saying so, if it cannot.
fn raise_nofile(hosts: usize) -> Result<()> {
    let need = (hosts * (etcd::MEMBERS + 1) + 1024) as libc::rlim_t;
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit write and read only the struct given.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            bail!("getrlimit: {}", std::io::Error::last_os_error());
        }
        if lim.rlim_cur >= need {
            return Ok(());
        }
        let want = libc::rlimit {
            rlim_cur: need,
            rlim_max: lim.rlim_max.max(need),
        };
        if libc::setrlimit(libc::RLIMIT_NOFILE, &want) != 0 {
            bail!(
                "{hosts} hosts need {need} open files, the limit is {} (hard {}): {} \
                 (run as root, or raise it with ulimit -n)",
                lim.rlim_cur,
                lim.rlim_max,
                std::io::Error::last_os_error()
            );
        }
    }
    Ok(())
}

/// The process's resident set, bytes.
fn rss_bytes() -> u64 {
    let s = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = s
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    // SAFETY: sysconf has no memory effects.
    pages * unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(0) as u64
}

fn secs(ns: u64) -> f64 {
    ns as f64 / 1e9
}

/// Nearest-rank percentile of sorted `v`.
fn percentile(v: &[f64], p: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    let rank = ((p * v.len() as f64).ceil() as usize).clamp(1, v.len());
    v[rank - 1]
}

/// What the run measured.
#[derive(Default)]
struct Figures {
    register_s: f64,
    migrations_ms: Vec<f64>,
    lookups: u64,
    failed_lookups: u64,
    failed_examples: Vec<String>,
    leader_elect_s: f64,
    writable_s: f64,
    resync_s: f64,
    sessions_failed: u64,
    expiry_s: f64,
    mirror_bytes: u64,
    mirror_mappings: usize,
    rss_per_host: f64,
    etcd_db_bytes: i64,
    etcd_cpu_s: f64,
    wall_s: f64,
}

/// Everything a phase needs.
struct Bench {
    args: Args,
    board: Arc<Board>,
    /// The host each guest is registered on now.
    loc: Vec<usize>,
    /// Hosts killed so far.
    dead: Vec<usize>,
    rng: Rng,
    schema: Schema,
    /// A client of the bench's own, for the canary.
    client: etcd_client::Client,
}

impl Bench {
    fn n_guests(&self) -> usize {
        self.args.hosts * self.args.guests
    }

    /// Waits until every host met the goal; its latest stamp. Fails after
    /// the phase limit, naming the hosts still waiting.
    async fn wait_all(&self, what: &str) -> Result<u64> {
        let start = Instant::now();
        let limit = Duration::from_secs(self.args.phase_limit);
        let mut report = start;
        while self.board.done() < self.args.hosts {
            if start.elapsed() > limit {
                let nd = self.board.not_done();
                bail!(
                    "{what}: {} of {} hosts still waiting after {limit:?} (e.g. hosts {:?}); \
                     sessions failed {} times",
                    nd.len(),
                    self.args.hosts,
                    &nd[..nd.len().min(10)],
                    self.board.counters.failed.load(Ordering::Relaxed)
                );
            }
            if report.elapsed() > Duration::from_secs(10) {
                report = Instant::now();
                eprintln!(
                    "bench-scale:   {what}: {}/{} hosts after {:.0} s",
                    self.board.done(),
                    self.args.hosts,
                    start.elapsed().as_secs_f64()
                );
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        Ok(self.board.last_done())
    }

    fn alive(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.args.hosts).filter(|i| !self.dead.contains(i))
    }

    fn instance(&self, i: usize) -> Result<Arc<varpd::plugins::etcd::EtcdInstance>> {
        self.board.hosts[i]
            .instance()
            .with_context(|| format!("host {i} has no running instance"))
    }

    /// Every host starts at once and registers its guests.
    async fn cold_start(&mut self, go: &tokio::sync::watch::Sender<bool>) -> Result<f64> {
        let (vl2, vl3) = (self.n_guests(), 2 * self.n_guests());
        self.board.set_goal(Goal::Full { vl2, vl3 }, &[]);
        let t0 = self.board.now();
        go.send(true).context("the shards are gone")?;
        let end = self.wait_all("cold start").await?;
        // The count matched; now every value, once, outside the timing.
        for i in 0..self.args.hosts {
            let wrong = self
                .instance(i)?
                .with_mirror(|m| {
                    (0..self.n_guests())
                        .filter(|&k| {
                            let g = Guest::new(k);
                            m.vl2(&g.mac) != Some(listen(self.loc[k]))
                                || m.vl3(&g.ip4.into()) != Some(g.mac)
                                || m.vl3(&g.ip6.into()) != Some(g.mac)
                        })
                        .count()
                })
                .unwrap_or(usize::MAX);
            if wrong != 0 {
                bail!("cold start: host {i}'s mirror has {wrong} guests wrong or missing");
            }
        }
        Ok(secs(end - t0))
    }

    /// One guest moves to another host; the time until every mirror has
    /// its new address, in ms.
    async fn migrate(&mut self) -> Result<f64> {
        let k = self.rng.below(self.n_guests());
        let alive: Vec<usize> = self.alive().filter(|&h| h != self.loc[k]).collect();
        let to = alive[self.rng.below(alive.len())];
        let g = Guest::new(k);
        let inst = self.instance(to)?;
        self.board.set_goal(
            Goal::Moved {
                mac: g.mac,
                dest: listen(to),
            },
            &self.dead,
        );
        let t0 = self.board.now();
        // What overlayd on the new host tells varpd: the guest's first
        // frame (its MAC), then its announcements (its addresses).
        inst.local_mac(g.mac, true);
        inst.local_ip(g.ip4.into(), g.mac);
        inst.local_ip(g.ip6.into(), g.mac);
        let end = self.wait_all("migration").await?;
        self.loc[k] = to;
        Ok((end - t0) as f64 / 1e6)
    }

    /// Writes the canary's vl2 key with port `seq`, retrying until it
    /// succeeds (etcd may be electing).
    async fn canary(client: &etcd_client::Client, key: &str, seq: u16) {
        let value = schema::vl2_value(canary_dest(seq));
        loop {
            let mut c = client.clone();
            let put = c.put(key, value.clone(), None);
            if let Ok(Ok(_)) = tokio::time::timeout(Duration::from_secs(1), put).await {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The leader is killed and restarted; lookups run against the
    /// mirrors meanwhile. Returns (resync s, election s, lookups, failed,
    /// examples of failures).
    async fn leader_kill(&mut self, cluster: &mut etcd::Cluster, f: &mut Figures) -> Result<()> {
        let canary = Guest::new(u32::MAX as usize >> 1).mac;
        let key = self.schema.key(Key::Vl2(canary));
        // The canary is one more vl2 key; every host must hold it first.
        self.board.set_goal(
            Goal::Moved {
                mac: canary,
                dest: canary_dest(1),
            },
            &self.dead,
        );
        Self::canary(&self.client, &key, 1).await;
        self.wait_all("canary").await?;
        let (vl2, vl3) = (self.n_guests() + 1, 2 * self.n_guests());
        self.board.set_goal(
            Goal::Resynced {
                vl2,
                vl3,
                canary,
                seq: 2,
            },
            &self.dead,
        );
        let failed_before = self.board.counters.failed.load(Ordering::Relaxed);

        // Lookups from random hosts for random guests, all three kinds,
        // until told to stop.
        let stop = Arc::new(AtomicBool::new(false));
        let load = {
            let board = self.board.clone();
            let loc = self.loc.clone();
            let alive: Vec<usize> = self.alive().collect();
            let stop = stop.clone();
            let mut rng = Rng(self.rng.0 ^ 0x5eed);
            tokio::spawn(async move {
                let (mut n, mut failed, mut examples) = (0u64, 0u64, Vec::new());
                let mut tick = tokio::time::interval(Duration::from_millis(1));
                while !stop.load(Ordering::Relaxed) {
                    tick.tick().await;
                    let h = alive[rng.below(alive.len())];
                    let k = rng.below(loc.len());
                    let g = Guest::new(k);
                    let Some(inst) = board.hosts[h].instance() else {
                        continue;
                    };
                    let (ok, what) = match n % 3 {
                        0 => {
                            let q = LookupQuery {
                                src: g.mac,
                                dst: g.mac,
                            };
                            let r = inst.lookup(q).await;
                            let ok = matches!(&r,
                                overlay_api::proto::LookupResult::Target { dest } if *dest == listen(loc[k]));
                            (ok, format!("host {h} lookup {}: {r:?}", g.mac))
                        }
                        1 => {
                            let r = inst.arp(g.ip4).await;
                            (r == Ok(g.mac), format!("host {h} arp {}: {r:?}", g.ip4))
                        }
                        _ => {
                            let r = inst.ndp(g.ip6).await;
                            (r == Ok(g.mac), format!("host {h} ndp {}: {r:?}", g.ip6))
                        }
                    };
                    n += 1;
                    if !ok {
                        failed += 1;
                        if examples.len() < 5 {
                            examples.push(what);
                        }
                    }
                }
                (n, failed, examples)
            })
        };
        // Lookups run a while before the kill too.
        tokio::time::sleep(Duration::from_millis(500)).await;

        let leader = cluster.leader().await.context("no etcd leader to kill")?;
        eprintln!(
            "bench-scale:   killing the leader, {}",
            cluster.name(leader)
        );
        let t_kill = self.board.now();
        cluster.kill(leader);
        // The canary, written only after the kill: every 200 ms a higher port.
        let seq = Arc::new(AtomicU64::new(2));
        let first_write = Arc::new(AtomicU64::new(0));
        let writer = {
            let client = self.client.clone();
            let (stop, seq, key) = (stop.clone(), seq.clone(), key.clone());
            let (first, board) = (first_write.clone(), self.board.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let s = seq.load(Ordering::Relaxed) as u16;
                    Self::canary(&client, &key, s).await;
                    if s == 2 {
                        first.store(board.now(), Ordering::Relaxed);
                    }
                    seq.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            })
        };
        let elect_limit = Instant::now() + Duration::from_secs(30);
        loop {
            match cluster.leader().await {
                Some(l) if l != leader => break,
                _ if Instant::now() > elect_limit => {
                    bail!("no new etcd leader 30 s after the kill")
                }
                _ => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
        f.leader_elect_s = secs(self.board.now() - t_kill);
        cluster.restart(leader)?;
        cluster
            .wait_up(leader, Duration::from_secs(30))
            .await
            .context("the killed leader, restarted")?;
        let t_back = self.board.now();
        // Done when every host follows etcd again and no session has
        // failed for a whole keep-alive period since the restart.
        let quiet = Duration::from_millis(self.args.ttl as u64 * 1000 / 3 + 1000).as_nanos() as u64;
        let start = Instant::now();
        loop {
            self.wait_all("resync").await?;
            let now = self.board.now();
            let last_fail = self.board.last_failure.load(Ordering::Relaxed);
            if now > t_back + quiet
                && now > last_fail + quiet
                && self.board.done() == self.args.hosts
            {
                break;
            }
            if start.elapsed() > Duration::from_secs(self.args.phase_limit) {
                bail!("resync: sessions still failing after {:?}", start.elapsed());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        f.resync_s = secs(self.board.last_done().saturating_sub(t_kill));
        f.writable_s = secs(first_write.load(Ordering::Relaxed).saturating_sub(t_kill));
        stop.store(true, Ordering::Relaxed);
        let (n, failed, examples) = load.await?;
        writer.await?;
        f.lookups = n;
        f.failed_lookups = failed;
        f.failed_examples = examples;
        f.sessions_failed = self.board.counters.failed.load(Ordering::Relaxed) - failed_before;
        // The canary goes, so the mirrors hold just the guests again.
        self.board.set_goal(
            Goal::Full {
                vl2: self.n_guests(),
                vl3: 2 * self.n_guests(),
            },
            &self.dead,
        );
        let mut c = self.client.clone();
        c.delete(key, None).await.context("deleting the canary")?;
        self.wait_all("canary removal").await?;
        Ok(())
    }

    /// A host vanishes without revoking its lease; the time until every
    /// other mirror has lost its guests.
    async fn host_kill(&mut self) -> Result<f64> {
        let alive: Vec<usize> = self.alive().collect();
        let x = alive[self.rng.below(alive.len())];
        let guests: Vec<Guest> = (0..self.n_guests())
            .filter(|&k| self.loc[k] == x)
            .map(Guest::new)
            .collect();
        self.dead.push(x);
        self.board.set_goal(
            Goal::Gone {
                macs: guests.iter().map(|g| g.mac).collect(),
                ips: guests
                    .iter()
                    .flat_map(|g| [g.ip4.into(), g.ip6.into()])
                    .collect(),
            },
            &self.dead,
        );
        let t0 = self.board.now();
        // Dropping the instance aborts its session (no revoke, no
        // goodbye) and closes its connections.
        let inst = self.board.hosts[x]
            .inst
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        drop(inst);
        eprintln!(
            "bench-scale:   host {x} gone with its {} guests",
            guests.len()
        );
        let end = self.wait_all("expiry").await?;
        Ok(secs(end - t0))
    }
}

/// The canary's UL3 address; its port carries the sequence number.
fn canary_dest(seq: u16) -> SocketAddr {
    SocketAddr::new([10, 255, 255, 254].into(), seq)
}

async fn run(args: Args, cluster_slot: &mut Option<etcd::Cluster>) -> Result<Figures> {
    if args.hosts < 2 || args.guests < 1 {
        bail!(
            "need at least 2 hosts and 1 guest (got {} and {})",
            args.hosts,
            args.guests
        );
    }
    let wall = Instant::now();
    raise_nofile(args.hosts)?;
    let shards = args
        .shards
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()))
        .clamp(1, args.hosts);
    eprintln!(
        "bench-scale: {} hosts × {} guests ({} mappings per mirror), {} etcd members, {shards} shards, lease TTL {} s",
        args.hosts,
        args.guests,
        3 * args.hosts * args.guests,
        etcd::MEMBERS,
        args.ttl
    );
    let cluster = cluster_slot.insert(etcd::Cluster::start(&args.data_dir).await?);
    let endpoints = cluster.endpoints();
    let client = etcd_client::Client::connect(
        &endpoints,
        Some(
            etcd_client::ConnectOptions::new()
                .with_connect_timeout(Duration::from_secs(1))
                .with_timeout(Duration::from_secs(2)),
        ),
    )
    .await
    .context("connecting to etcd")?;
    let board = Arc::new(Board::new(args.hosts));
    let cfg = HostConfig {
        endpoints: endpoints.join(","),
        ttl: args.ttl,
        guests: args.guests,
        boot_concurrency: args.boot_concurrency,
    };
    let (go_tx, go_rx) = tokio::sync::watch::channel(false);
    hosts::spawn_shards(&board, &cfg, shards, go_rx)?;
    let mut b = Bench {
        loc: (0..args.hosts * args.guests)
            .map(|k| k / args.guests)
            .collect(),
        dead: Vec::new(),
        rng: Rng(args.seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1),
        schema: Schema::new(hosts::PREFIX, hosts::VNI),
        client,
        board,
        args,
    };
    let mut f = Figures::default();

    let rss0 = rss_bytes();
    eprintln!("bench-scale: cold start");
    f.register_s = b.cold_start(&go_tx).await?;
    f.rss_per_host = rss_bytes().saturating_sub(rss0) as f64 / b.args.hosts as f64;
    eprintln!(
        "bench-scale:   every mirror full after {:.2} s",
        f.register_s
    );
    let (bytes, mappings) = b
        .instance(0)?
        .with_mirror(|m| {
            let (n, copy) = alloc::measure(|| m.clone());
            let (l2, l3) = copy.len();
            (n, l2 + l3)
        })
        .context("host 0 has no mirror")?;
    (f.mirror_bytes, f.mirror_mappings) = (bytes, mappings);

    eprintln!("bench-scale: {} migrations", b.args.migrations);
    for _ in 0..b.args.migrations {
        let ms = b.migrate().await?;
        f.migrations_ms.push(ms);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    f.migrations_ms.sort_by(f64::total_cmp);

    eprintln!("bench-scale: leader kill");
    b.leader_kill(cluster, &mut f).await?;
    eprintln!(
        "bench-scale:   re-synced after {:.2} s; {} of {} lookups failed",
        f.resync_s, f.failed_lookups, f.lookups
    );

    eprintln!("bench-scale: host kill");
    f.expiry_s = b.host_kill().await?;

    f.etcd_db_bytes = cluster.db_bytes().await?;
    f.etcd_cpu_s = cluster.cpu_s();
    f.wall_s = wall.elapsed().as_secs_f64();
    Ok(f)
}

fn report(args: &Args, f: &Figures, shards: usize) -> Result<()> {
    let m = &f.migrations_ms;
    let per_mapping = f.mirror_bytes as f64 / f.mirror_mappings.max(1) as f64;
    let json = serde_json::json!({
        "hosts": args.hosts,
        "guests": args.guests,
        "register_s": f.register_s,
        "migrations": m.len(),
        "migration_p50_ms": percentile(m, 0.50),
        "migration_p99_ms": percentile(m, 0.99),
        "migration_max_ms": m.last().copied().unwrap_or(0.0),
        "lookups": f.lookups,
        "failed_lookups": f.failed_lookups,
        "leader_elect_s": f.leader_elect_s,
        "etcd_writable_s": f.writable_s,
        "resync_s": f.resync_s,
        "sessions_failed": f.sessions_failed,
        "lease_ttl_s": args.ttl,
        "expiry_s": f.expiry_s,
        "mirror_bytes_per_mapping": per_mapping,
        "mirror_mappings": f.mirror_mappings,
        "rss_bytes_per_host": f.rss_per_host,
        "etcd_db_bytes": f.etcd_db_bytes,
        "etcd_quota_bytes": etcd::QUOTA_BYTES,
        "etcd_cpu_s": f.etcd_cpu_s,
        "shards": shards,
        "boot_concurrency": args.boot_concurrency,
        "wall_s": f.wall_s,
    });
    if let Some(dir) = args.out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(&args.out, serde_json::to_string_pretty(&json)? + "\n")
        .with_context(|| format!("writing {}", args.out.display()))?;
    println!(
        "bench-scale: {} hosts × {} guests, {} mappings per mirror, lease TTL {} s, \
         at most {} hosts booting at once, {:.0} s in all",
        args.hosts, args.guests, f.mirror_mappings, args.ttl, args.boot_concurrency, f.wall_s
    );
    println!(
        "  cold start, every mirror full        register_s         {:>10.2} s",
        f.register_s
    );
    println!(
        "  migration ({:>2}×) p50 / p99 / max      migration_*_ms     {:>10.1} / {:.1} / {:.1} ms",
        m.len(),
        percentile(m, 0.5),
        percentile(m, 0.99),
        m.last().copied().unwrap_or(0.0)
    );
    println!(
        "  leader killed: failed lookups        failed_lookups     {:>10} of {}",
        f.failed_lookups, f.lookups
    );
    println!(
        "  leader killed: every host re-synced  resync_s           {:>10.2} s (new leader after {:.2} s, first write {:.2} s, {} sessions failed)",
        f.resync_s, f.leader_elect_s, f.writable_s, f.sessions_failed
    );
    println!(
        "  host killed: its guests gone         expiry_s           {:>10.2} s (lease TTL {} s)",
        f.expiry_s, args.ttl
    );
    println!(
        "  one mirror, per mapping              mirror_bytes_per_mapping {:>4.1} B ({} B for {} mappings; whole host {:.0} KiB RSS)",
        per_mapping,
        f.mirror_bytes,
        f.mirror_mappings,
        f.rss_per_host / 1024.0
    );
    println!(
        "  etcd DB size                         etcd_db_bytes      {:>10} B ({:.1} MiB of a {} GiB quota)",
        f.etcd_db_bytes,
        f.etcd_db_bytes as f64 / (1 << 20) as f64,
        etcd::QUOTA_BYTES >> 30
    );
    println!(
        "  etcd CPU, 3 members, whole run       etcd_cpu_s         {:>10.1} s",
        f.etcd_cpu_s
    );
    for e in &f.failed_examples {
        println!("  failed lookup: {e}");
    }
    println!("  (written to {})", args.out.display());
    Ok(())
}

fn main() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let args = Args::parse();
    let shards = args
        .shards
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()))
        .clamp(1, args.hosts.max(1));
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("bench-scale: cannot start the async runtime: {e}");
            std::process::exit(1);
        }
    };
    let mut cluster = None;
    let result = rt.block_on(async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .context("cannot catch SIGTERM")?;
        tokio::select! {
            r = run(Args::parse(), &mut cluster) => r,
            _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
            _ = term.recv() => Err(anyhow::anyhow!("terminated")),
        }
    });
    // etcd goes before anything is printed, whatever happened.
    drop(cluster);
    match result.and_then(|f| report(&args, &f, shards)) {
        Ok(()) => {}
        Err(e) => {
            eprintln!("bench-scale: {e:#}");
            std::process::exit(1);
        }
    }
}
