//! Simulated hosts: each one real etcd plugin instance (its own client,
//! lease, registrations, watch and mirror), packed into shards, with a
//! stand-in for overlayd's side of the link that records what the
//! instances tell it.
//!
//! ## Shards
//!
//! A shard is one OS thread running one current-thread tokio runtime, as
//! varpd does, holding a slice of the hosts: their sessions run there, and
//! so does the shard's *driver*, which reads the messages every instance
//! of the shard sends to "overlayd" (one outbox per shard, one overlay id
//! per host). The orchestrator (the main thread) calls the instances
//! directly, as varpd's engine does: `local_mac`, `local_ip`, `lookup`.
//!
//! ## Goals: how a "time until every host …" is taken
//!
//! The orchestrator sets a [`Goal`] (every mapping held, a MAC at its new
//! address, a dead host's guests gone, …) and then acts. Each driver, for
//! every host that reported something (an invalidation, ready, failed),
//! checks the goal against that host's mirror and stamps the first time it
//! holds. The plugin invalidates a MAC only after its mirror changed, so
//! the stamp is when overlayd would learn of the change, not a polling
//! interval later. The figure is the latest stamp minus the time of the
//! action.

use overlay_api::proto::VarpdMsg;
use overlay_api::{DestMode, Mac};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use varpd::plugin::Instance;
use varpd::plugins::etcd::schema::Mirror;
use varpd::plugins::etcd::{config, EtcdInstance};
use varpd::provider::Provider;

/// The VNI every host carries: one overlay spanning all of them, so that
/// every mirror holds every mapping (the worst case).
pub const VNI: u32 = 4242;
/// The key prefix.
pub const PREFIX: &str = "/overlay";
/// The UL3 port of every host.
pub const PORT: u16 = 4789;

/// One guest's VL2 and VL3 addresses; guest `k` of the whole run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Guest {
    /// VL2 MAC.
    pub mac: Mac,
    /// IPv4 VL3 address.
    pub ip4: Ipv4Addr,
    /// IPv6 VL3 address.
    pub ip6: Ipv6Addr,
}

impl Guest {
    /// Guest number `k` (host `k / GUESTS`, slot `k % GUESTS` at the start).
    pub fn new(k: usize) -> Guest {
        let k = k as u32;
        let b = k.to_be_bytes();
        Guest {
            mac: Mac([0x02, 0x5c, b[0], b[1], b[2], b[3]]),
            ip4: Ipv4Addr::from(u32::from(Ipv4Addr::new(100, 64, 0, 0)) + k),
            ip6: Ipv6Addr::from(0xfd00_u128 << 112 | k as u128),
        }
    }
}

/// Host `i`'s underlay address (what its guests' vl2 keys say).
pub fn listen(i: usize) -> SocketAddr {
    let ip = Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 0, 0, 0)) + 1 + i as u32);
    SocketAddr::new(ip.into(), PORT)
}

/// What the orchestrator waits for, checked per host against its mirror.
#[derive(Clone, Debug)]
pub enum Goal {
    /// The mirror holds exactly this many vl2 and vl3 keys.
    Full { vl2: usize, vl3: usize },
    /// `mac` is at `dest`.
    Moved { mac: Mac, dest: SocketAddr },
    /// None of these MACs and addresses is known any more.
    Gone { macs: Vec<Mac>, ips: Vec<IpAddr> },
    /// The session is up (not degraded), the mirror holds `vl2`/`vl3` keys,
    /// and the canary MAC's port is at least `seq`: the host follows
    /// etcd again after a failure.
    Resynced {
        vl2: usize,
        vl3: usize,
        canary: Mac,
        seq: u16,
    },
}

impl Goal {
    fn holds(&self, m: &Mirror, degraded: bool) -> bool {
        match self {
            Goal::Full { vl2, vl3 } => m.len() == (*vl2, *vl3),
            Goal::Moved { mac, dest } => m.vl2(mac) == Some(*dest),
            Goal::Gone { macs, ips } => {
                macs.iter().all(|x| m.vl2(x).is_none()) && ips.iter().all(|x| m.vl3(x).is_none())
            }
            Goal::Resynced {
                vl2,
                vl3,
                canary,
                seq,
            } => {
                !degraded
                    && m.len() == (*vl2, *vl3)
                    && m.vl2(canary).is_some_and(|d| d.port() >= *seq)
            }
        }
    }
}

/// One simulated host.
pub struct Host {
    /// The instance; `None` before it starts and after it is killed.
    pub inst: RwLock<Option<Arc<EtcdInstance>>>,
    /// Its provider (a clone shares the instance's counters and health).
    pub provider: Mutex<Option<Provider>>,
    /// Nanoseconds since [`Board::epoch`] at which the current goal first
    /// held here, plus one; 0 while it does not.
    done: AtomicU64,
    /// Its instance has read etcd once.
    synced: AtomicBool,
}

impl Host {
    /// The running instance, if any.
    pub fn instance(&self) -> Option<Arc<EtcdInstance>> {
        self.inst.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn degraded(&self) -> bool {
        let p = self.provider.lock().unwrap_or_else(|p| p.into_inner());
        p.as_ref().is_some_and(Provider::is_degraded)
    }
}

/// Counts of what the instances told "overlayd".
#[derive(Default)]
pub struct Counters {
    /// `Invalidate` messages.
    pub invalidations: AtomicU64,
    /// `Inject` (gratuitous ARP, unsolicited NA) messages.
    pub injects: AtomicU64,
    /// `ForgetLocalMac` messages (a guest moved away).
    pub forgets: AtomicU64,
    /// `InstanceFailed` messages (a session failed; serving degraded).
    pub failed: AtomicU64,
    /// `InstanceReady` messages (a session came back).
    pub ready: AtomicU64,
}

/// The hosts, the current goal and what the drivers saw.
pub struct Board {
    /// Every host, by index (= overlay id).
    pub hosts: Vec<Host>,
    goal: RwLock<Option<Goal>>,
    done_count: AtomicUsize,
    /// The time every stamp counts from.
    pub epoch: Instant,
    /// Message counts.
    pub counters: Counters,
    /// The last time any session failed (ns since epoch, + 1).
    pub last_failure: AtomicU64,
    /// Hosts started that have not read etcd yet.
    pub booting: AtomicUsize,
}

impl Board {
    /// A board of `n` hosts, none started.
    pub fn new(n: usize) -> Board {
        Board {
            hosts: (0..n)
                .map(|_| Host {
                    inst: RwLock::new(None),
                    provider: Mutex::new(None),
                    done: AtomicU64::new(0),
                    synced: AtomicBool::new(false),
                })
                .collect(),
            goal: RwLock::new(None),
            done_count: AtomicUsize::new(0),
            epoch: Instant::now(),
            counters: Counters::default(),
            last_failure: AtomicU64::new(0),
            booting: AtomicUsize::new(0),
        }
    }

    /// Nanoseconds since the epoch, plus one (never 0).
    pub fn now(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64 + 1
    }

    /// Sets a new goal; every host starts not done, except those in
    /// `exclude` (killed hosts), which count as done at once. Then checks
    /// every host once, for those where the goal already holds.
    pub fn set_goal(&self, goal: Goal, exclude: &[usize]) {
        {
            let mut g = self.goal.write().unwrap_or_else(|p| p.into_inner());
            for h in &self.hosts {
                h.done.store(0, Ordering::Relaxed);
            }
            let now = self.now();
            for &i in exclude {
                self.hosts[i].done.store(now, Ordering::Relaxed);
            }
            self.done_count.store(exclude.len(), Ordering::Relaxed);
            *g = Some(goal);
        }
        for i in (0..self.hosts.len()).filter(|i| !exclude.contains(i)) {
            self.check(i);
        }
    }

    /// How many hosts have met the goal.
    pub fn done(&self) -> usize {
        self.done_count.load(Ordering::Relaxed)
    }

    /// The hosts that have not met the goal (for error messages).
    pub fn not_done(&self) -> Vec<usize> {
        (0..self.hosts.len())
            .filter(|&i| self.hosts[i].done.load(Ordering::Relaxed) == 0)
            .collect()
    }

    /// The latest stamp, in ns since the epoch.
    pub fn last_done(&self) -> u64 {
        self.hosts
            .iter()
            .map(|h| h.done.load(Ordering::Relaxed).saturating_sub(1))
            .max()
            .unwrap_or(0)
    }

    /// Checks the goal at host `i` and stamps it if it holds now.
    pub fn check(&self, i: usize) {
        let g = self.goal.read().unwrap_or_else(|p| p.into_inner());
        let Some(goal) = g.as_ref() else { return };
        let h = &self.hosts[i];
        if h.done.load(Ordering::Relaxed) != 0 {
            return;
        }
        let Some(inst) = h.instance() else { return };
        let degraded = matches!(goal, Goal::Resynced { .. }) && h.degraded();
        if inst.with_mirror(|m| goal.holds(m, degraded)) == Some(true)
            && h.done
                .compare_exchange(0, self.now(), Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            self.done_count.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Host `i`'s session failed: it no longer meets a goal that asks for
    /// a working session.
    fn failed(&self, i: usize) {
        self.last_failure.store(self.now(), Ordering::Relaxed);
        let g = self.goal.read().unwrap_or_else(|p| p.into_inner());
        if matches!(g.as_ref(), Some(Goal::Resynced { .. }))
            && self.hosts[i].done.swap(0, Ordering::Relaxed) != 0
        {
            self.done_count.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// How each host's instance is configured.
#[derive(Clone, Debug)]
pub struct HostConfig {
    /// `etcd/endpoints`.
    pub endpoints: String,
    /// `etcd/lease_ttl`, seconds.
    pub ttl: u32,
    /// Guests per host at the start.
    pub guests: usize,
    /// Most hosts starting at once at the cold start: started, but not
    /// yet through their first read of etcd (0: no limit).
    pub boot_concurrency: usize,
}

/// Starts host `i`: creates, configures and starts its instance (inside
/// the shard's runtime), then tells it about its guests the way overlayd
/// does after `InstanceReady` (every local MAC, and each guest's two
/// addresses as it announces them).
fn start_host(board: &Board, cfg: &HostConfig, i: usize, outbox: &mpsc::UnboundedSender<VarpdMsg>) {
    let provider = Provider::new(
        i as u64,
        &format!("h{i}"),
        VNI,
        DestMode::Dynamic,
        outbox.clone(),
    );
    let mut inst = EtcdInstance::new(provider.clone());
    let set = |inst: &mut EtcdInstance, k: &str, v: &str| {
        inst.setprop(k, v)
            .unwrap_or_else(|e| panic!("host {i}: {k}={v}: {e}"))
    };
    set(&mut inst, config::PROP_ENDPOINTS, &cfg.endpoints);
    set(&mut inst, config::PROP_PREFIX, PREFIX);
    set(&mut inst, config::PROP_TTL, &cfg.ttl.to_string());
    inst.underlay(listen(i));
    inst.start()
        .unwrap_or_else(|e| panic!("host {i}: start: {e}"));
    for k in i * cfg.guests..(i + 1) * cfg.guests {
        let g = Guest::new(k);
        inst.local_mac(g.mac, true);
        inst.local_ip(g.ip4.into(), g.mac);
        inst.local_ip(g.ip6.into(), g.mac);
    }
    *board.hosts[i]
        .provider
        .lock()
        .unwrap_or_else(|p| p.into_inner()) = Some(provider);
    *board.hosts[i]
        .inst
        .write()
        .unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(inst));
}

/// Reads one shard's outbox for ever: counts each message and checks the
/// goal at each host that sent something, once per batch.
async fn driver(board: Arc<Board>, mut rx: mpsc::UnboundedReceiver<VarpdMsg>) {
    let mut batch = Vec::with_capacity(4096);
    let mut seen = vec![false; board.hosts.len()];
    let mut touched = Vec::new();
    let c = &board.counters;
    while rx.recv_many(&mut batch, 4096).await > 0 {
        for msg in batch.drain(..) {
            let oid = match msg {
                VarpdMsg::Invalidate { oid, mac } => {
                    c.invalidations.fetch_add(1, Ordering::Relaxed);
                    // Every entry at once: the instance's first read.
                    if mac.is_none()
                        && !board.hosts[oid as usize]
                            .synced
                            .swap(true, Ordering::Relaxed)
                    {
                        board.booting.fetch_sub(1, Ordering::Relaxed);
                    }
                    oid
                }
                VarpdMsg::Inject { .. } => {
                    c.injects.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                VarpdMsg::ForgetLocalMac { .. } => {
                    c.forgets.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                VarpdMsg::InstanceFailed { oid, error, .. } => {
                    c.failed.fetch_add(1, Ordering::Relaxed);
                    log::debug!("host {oid}: {error}");
                    board.failed(oid as usize);
                    oid
                }
                VarpdMsg::InstanceReady { oid, .. } => {
                    c.ready.fetch_add(1, Ordering::Relaxed);
                    oid
                }
                _ => continue,
            } as usize;
            if !seen[oid] {
                seen[oid] = true;
                touched.push(oid);
            }
        }
        for oid in touched.drain(..) {
            seen[oid] = false;
            board.check(oid);
        }
    }
}

/// Starts `shards` threads, each with its share of the hosts (host `i` in
/// shard `i % shards`); they start their hosts when `go` fires. Returns at
/// once; the threads run until the process ends.
pub fn spawn_shards(
    board: &Arc<Board>,
    cfg: &HostConfig,
    shards: usize,
    go: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<()> {
    for s in 0..shards {
        let board = board.clone();
        let cfg = cfg.clone();
        let mut go = go.clone();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        std::thread::Builder::new()
            .name(format!("shard{s}"))
            .spawn(move || {
                rt.block_on(async move {
                    let (tx, rx) = mpsc::unbounded_channel();
                    let drv = tokio::spawn(driver(board.clone(), rx));
                    let _ = go.wait_for(|g| *g).await;
                    for i in (s..board.hosts.len()).step_by(shards) {
                        // At most `boot_concurrency` hosts between start
                        // and their first read of etcd, fleet-wide.
                        while cfg.boot_concurrency > 0
                            && board.booting.load(Ordering::Relaxed) >= cfg.boot_concurrency
                        {
                            tokio::time::sleep(Duration::from_millis(1)).await;
                        }
                        board.booting.fetch_add(1, Ordering::Relaxed);
                        start_host(&board, &cfg, i, &tx);
                    }
                    drop(tx);
                    let _ = drv.await;
                    // Every host of the shard is gone; keep the runtime
                    // for the instances' last tasks until the process ends.
                    std::future::pending::<()>().await
                })
            })?;
    }
    Ok(())
}
