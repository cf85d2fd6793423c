//! Workers: the forwarding threads beside the event loop, one per core.
//!
//! Each worker owns one queue of every overlay's multi-queue TAP device,
//! one receiving socket in each UDP mux's `SO_REUSEPORT` group, its own
//! send queue, receive batch and coalescer, and a [`WorkerPort`] per
//! overlay. It forwards what needs nobody else, with the same code as the
//! event loop (`datapath.rs`, through [`Port`]):
//!
//! - a frame from its TAP queue whose destination is the overlay's point,
//!   or a unicast MAC with a *valid* target-table entry (read through the
//!   lock-free [`TableView`]; counted against the entry only once the
//!   frame passed its offload checks);
//! - datagrams from the underlay for overlays without `target/check_source`.
//!
//! A guest MAC new to the worker, or not told for [`LOCAL_REFRESH`], is
//! told to the event loop out of band ([`Handover::Learn`]) while its frame
//! goes on from the worker: learning never takes a frame out of its flow,
//! so a flow's frames keep their order.
//!
//! Everything else — misses, pending and drop entries, broadcasts and
//! multicasts for varpd, a source to check — is
//! *handed over* ([`Handover`]) to the event loop, which owns the target
//! table, the varpd link and the pending queues, and decides it exactly as
//! if it had read it itself. The hand-over queue is bounded; a frame it
//! cannot take is dropped as `queue-overflow`.
//!
//! ```text
//!             event loop (control, varpd link, table writer, queue 0)
//!              ▲ hand-over (bounded)   │ commands (acknowledged)
//!   worker k ──┘                      ▼
//!     TAP queue k ──► valid hit ──► encap ──► mux senders (shared)
//!     mux socket k (SO_REUSEPORT) ──► decap ──► TAP queue k
//! ```
//!
//! Nothing on the way is locked or allocated. A worker's counts live in
//! its ports and muxes and are moved, once per wake-up and only for ports
//! that counted something, into its [`Shard`] under a mutex no frame
//! waits on; the event loop moves them into the overlays' own counters on
//! its timer and before it answers a request ([`Workers::collect`]), so
//! every snapshot includes them.
//!
//! Commands (an overlay or mux added or removed, a destination or the
//! VNICs changed) are numbered and applied between batches; the event loop
//! does not wait for them. Each worker publishes the number of the last
//! one it applied and wakes the event loop, which holds the reply to the
//! request that caused them until every worker has (`Daemon::reply`):
//! when `delete-overlay` is answered, no worker holds the overlay's TAP
//! queue any more.

use crate::capture::Capture;
use crate::datapath::{token, KIND_MUX, KIND_TAP};
use crate::datapath::{Forwarder, Owner};
use crate::mux::Mux;
use crate::port::Port;
use crate::spin::Spin;
use crate::tap::Tap;
use crate::underlay::{Underlay, UnderlayTx};
use crate::vnic::VnicCounters;
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token, Waker};
use overlay_api::{DestMode, DropReason, Mac};
use overlay_core::decide::{self, Entry, RxFacts, RxPort, RxVerdict, TxVerdict, Varpd};
use overlay_core::stats::Peers;
use overlay_core::target::SourceCheck;
use overlay_core::target::{TableHandle, TableView};
use overlay_core::{Counters, OverlayConfig};
use overlay_wire::offload::VNET_HDR_LEN;
use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Frames and buffers waiting for the event loop, from all workers.
const HANDOVER_LIMIT: usize = 4096;
/// A source MAC the event loop has not heard of from this worker for this
/// long is told again ([`Handover::Learn`]), so that the event loop's own
/// guests table (`local.rs`, idle after 30 s) keeps it and varpd hears of
/// new ones.
const LOCAL_REFRESH: Duration = Duration::from_secs(10);
/// Source MACs a worker remembers per overlay (beyond, each of their frames
/// tells the event loop).
const LOCAL_MAX: usize = crate::local::MAX_LOCAL_MACS;

const TOKEN_WAKE: Token = Token(0);

/// What a worker leaves to the event loop.
#[derive(Debug)]
pub(crate) enum Handover {
    /// A frame read from overlay `oid`'s TAP queue, behind its virtio-net header.
    Tx {
        /// The overlay.
        oid: u64,
        /// Virtio-net header and frame.
        frame: Vec<u8>,
    },
    /// A guest MAC that sent on overlay `oid` (new to the worker, or not
    /// told for [`LOCAL_REFRESH`]): its frames went on from the worker, in
    /// order; the event loop only learns it (and tells varpd of new ones).
    Learn {
        /// The overlay.
        oid: u64,
        /// The source MAC.
        mac: Mac,
    },
    /// A buffer received on mux `mid` (one datagram, or a GRO batch of
    /// datagrams `seg` bytes apart).
    Rx {
        /// The mux.
        mid: u64,
        /// What was received.
        data: Vec<u8>,
        /// The sender.
        from: SocketAddr,
        /// Datagram size within `data`.
        seg: usize,
    },
}

/// A change for the workers, applied between batches and acknowledged.
pub(crate) enum Command {
    /// A mux to receive on (if `receives`) and send through.
    Mux {
        /// The mux's id.
        mid: u64,
        /// The worker's own copy ([`Mux::for_worker`]).
        mux: Box<Mux>,
        /// Whether the worker receives on its socket (UDP).
        receives: bool,
    },
    /// A mux closed.
    Unmux {
        /// The mux's id.
        mid: u64,
    },
    /// An overlay to forward for.
    Port {
        /// Its configuration.
        cfg: OverlayConfig,
        /// Its id.
        oid: u64,
        /// Its mux.
        mux: u64,
        /// The worker's TAP queue (read when `reads`; otherwise a duplicate
        /// of the event loop's, only written to).
        tap: Tap,
        /// Whether the queue is the worker's own.
        reads: bool,
        /// The target table, to read valid entries from.
        table: TableHandle,
    },
    /// An overlay's destination and VNICs changed.
    Update {
        /// The overlay.
        oid: u64,
        /// Its destination mode, once varpd configured it.
        mode: Option<DestMode>,
        /// Its point-mode destination.
        point: Option<SocketAddr>,
        /// The MACs of its VNICs.
        vnics: Vec<Mac>,
    },
    /// An overlay removed.
    Unport {
        /// The overlay.
        oid: u64,
    },
}

/// What a worker counted of one overlay, waiting for the event loop.
#[derive(Debug, Default)]
pub(crate) struct PortCounts {
    /// Overlay counters.
    pub counters: Counters,
    /// Per underlay peer.
    pub peers: Peers,
    /// Per VNIC MAC.
    pub vnics: Vec<(Mac, VnicCounters)>,
}

/// A worker's counts, moved in after each wake-up and out by the event loop.
#[derive(Debug, Default)]
pub(crate) struct Shard {
    /// By overlay.
    pub ports: HashMap<u64, PortCounts>,
    /// By mux.
    pub muxes: HashMap<u64, Counters>,
}

/// One overlay as a worker forwards for it.
pub(crate) struct WorkerPort {
    oid: u64,
    cfg: OverlayConfig,
    tap: Tap,
    mux: u64,
    mode: Option<DestMode>,
    point: Option<SocketAddr>,
    table: TableView,
    counts: PortCounts,
    /// Counted something since the last move into the shard.
    dirty: bool,
    /// Source MACs handed over lately, and when.
    local: HashMap<Mac, Instant>,
}

impl Port for WorkerPort {
    fn oid(&self) -> u64 {
        self.oid
    }

    fn mux_id(&self) -> u64 {
        self.mux
    }

    fn mode(&self) -> Option<DestMode> {
        self.mode
    }

    fn point(&self) -> Option<SocketAddr> {
        self.point
    }

    /// Valid entries only: the rest is the event loop's.
    #[inline]
    fn entry(&self, dst: Mac, _: Instant) -> Entry {
        self.table.valid(dst).map_or(Entry::Absent, Entry::Valid)
    }

    #[inline]
    fn hit(&self, dst: Mac, len: usize, now: Instant) {
        self.table.hit(dst, len, now)
    }

    fn cfg(&self) -> &OverlayConfig {
        &self.cfg
    }

    fn tap(&self) -> &Tap {
        &self.tap
    }

    #[inline]
    fn counters(&mut self) -> &mut Counters {
        self.dirty = true;
        &mut self.counts.counters
    }

    #[inline]
    fn peers(&mut self) -> &mut Peers {
        self.dirty = true;
        &mut self.counts.peers
    }

    #[inline]
    fn vnic(&mut self, mac: Mac) -> Option<&mut VnicCounters> {
        self.dirty = true;
        self.counts
            .vnics
            .iter_mut()
            .find(|(m, _)| *m == mac)
            .map(|(_, c)| c)
    }

    /// Datagrams for overlays that check sources are handed over before
    /// they get here (see `WorkerState::needs_event_loop`): a worker has
    /// no source to check.
    fn rx_verdict(&mut self, f: &RxFacts, _: &mut Vec<(u64, Mac)>) -> RxVerdict {
        debug_assert!(!self.cfg.check_source, "handed over, never checked here");
        let port = RxPort {
            check_source: false,
            mode: self.mode,
            point: self.point,
        };
        decide::decide_rx(&port, f, |_, _| SourceCheck::Unknown { ask: false })
    }
}

/// The event loop's side of the workers.
pub(crate) struct Workers {
    workers: Vec<Handle>,
    /// What the workers handed over.
    pub handover: Receiver<Handover>,
    /// Wakes the event loop when something was handed over.
    waker: Arc<Waker>,
}

struct Handle {
    commands: Sender<(u64, Command)>,
    /// The sequence number of the last command the worker has applied.
    applied: Arc<AtomicU64>,
    /// The sequence number of the last command sent.
    sent: AtomicU64,
    waker: Arc<Waker>,
    shard: Arc<Mutex<Shard>>,
    thread: Option<JoinHandle<()>>,
}

impl Workers {
    /// Starts `n` workers, waiting for frames as `spin` says; `waker`
    /// wakes the event loop; they capture into `cap`, and send TCP
    /// super-frames through `underlay` where they may.
    pub fn start(
        n: usize,
        waker: Arc<Waker>,
        spin: Spin,
        cap: Arc<Capture>,
        underlay: Option<Arc<Underlay>>,
    ) -> io::Result<Workers> {
        let (handover_tx, handover) = mpsc::sync_channel(HANDOVER_LIMIT);
        let workers = (1..=n)
            .map(|k| {
                let poll = Poll::new()?;
                let own = Arc::new(Waker::new(poll.registry(), TOKEN_WAKE)?);
                let (commands, rx) = mpsc::channel();
                let applied = Arc::new(AtomicU64::new(0));
                let applied_w = Arc::clone(&applied);
                let shard = Arc::new(Mutex::new(Shard::default()));
                let (shard_w, handover, wake_loop) =
                    (Arc::clone(&shard), handover_tx.clone(), Arc::clone(&waker));
                let cap = Arc::clone(&cap);
                let ul = underlay.clone().map(UnderlayTx::new);
                let thread = std::thread::Builder::new()
                    .name(format!("worker-{k}"))
                    .spawn(move || {
                        WorkerState {
                            poll,
                            spin,
                            commands: rx,
                            applied: applied_w,
                            shard: shard_w,
                            wake_loop,
                            fwd: Forwarder::with_capture(cap).with_underlay(ul),
                            side: WorkerSide {
                                handover,
                                handed: false,
                                checking: 0,
                                rx: Vec::new(),
                            },
                        }
                        .run()
                    })?;
                Ok(Handle {
                    commands,
                    applied,
                    sent: AtomicU64::new(0),
                    waker: own,
                    shard,
                    thread: Some(thread),
                })
            })
            .collect::<io::Result<Vec<_>>>()?;
        Ok(Workers {
            workers,
            handover,
            waker,
        })
    }

    /// How many there are.
    pub fn len(&self) -> usize {
        self.workers.len()
    }

    /// Gives worker `k` (0-based) `cmd`, numbered: the event loop does not
    /// wait for it ([`Workers::caught_up`] says when it is applied).
    fn command(&self, k: usize, cmd: Command) {
        let w = &self.workers[k];
        let seq = w.sent.fetch_add(1, Ordering::Relaxed) + 1;
        if w.commands.send((seq, cmd)).is_err() {
            log::error!("worker-{} is gone", k + 1);
            return;
        }
        let _ = w.waker.wake();
    }

    /// Gives every worker the command `make` builds for it, without
    /// waiting: a reply that must not go before the workers applied it is
    /// held until [`Workers::caught_up`] with [`Workers::sent`].
    pub fn each(&self, mut make: impl FnMut(usize) -> Option<Command>) {
        for k in 0..self.workers.len() {
            if let Some(cmd) = make(k) {
                self.command(k, cmd);
            }
        }
    }

    /// The sequence number of the last command given to each worker.
    pub fn sent(&self) -> Vec<u64> {
        self.workers
            .iter()
            .map(|w| w.sent.load(Ordering::Relaxed))
            .collect()
    }

    /// Whether every worker has applied every command up to `sent` (as
    /// [`Workers::sent`] gave it). A worker that is gone counts as caught
    /// up: nothing of it holds a descriptor any more.
    pub fn caught_up(&self, sent: &[u64]) -> bool {
        self.workers.iter().zip(sent).all(|(w, &s)| {
            w.applied.load(Ordering::Acquire) >= s
                || w.thread.as_ref().is_none_or(|t| t.is_finished())
        })
    }

    /// Moves every worker's counts into `add` (by overlay) and `add_mux`.
    pub fn collect(
        &self,
        mut add: impl FnMut(u64, &mut PortCounts),
        mut add_mux: impl FnMut(u64, &mut Counters),
    ) {
        for w in &self.workers {
            let mut shard = w.shard.lock().unwrap_or_else(|e| e.into_inner());
            for (oid, c) in shard.ports.iter_mut() {
                add(*oid, c);
            }
            for (mid, c) in shard.muxes.iter_mut() {
                add_mux(*mid, c);
            }
        }
    }

    /// Wakes the event loop (after a hand-over).
    pub fn wake_loop(&self) {
        let _ = self.waker.wake();
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        for w in &mut self.workers {
            // A closed command channel is the signal to stop.
            let (dead, _) = mpsc::channel();
            drop(std::mem::replace(&mut w.commands, dead));
            let _ = w.waker.wake();
            if let Some(t) = w.thread.take() {
                let _ = t.join();
            }
        }
    }
}

/// A worker thread's state.
struct WorkerState {
    poll: Poll,
    spin: Spin,
    commands: Receiver<(u64, Command)>,
    /// The sequence number of the last command applied, for the event loop.
    applied: Arc<AtomicU64>,
    shard: Arc<Mutex<Shard>>,
    wake_loop: Arc<Waker>,
    /// Its forwarding engine.
    fwd: Forwarder<WorkerPort>,
    /// What it does with what it does not forward itself.
    side: WorkerSide,
}

/// A worker's [`Owner`]: it performs what needs nothing but valid entries
/// (and drops), and hands every other frame to the event loop, which
/// decides it again; a guest MAC it has not told the event loop about
/// lately goes there out of band, while its frame goes on from here.
struct WorkerSide {
    handover: SyncSender<Handover>,
    /// Something was handed over since the event loop was last woken.
    handed: bool,
    /// Ports with `target/check_source` (their datagrams are handed over).
    checking: usize,
    /// Buffers taken from the current receive batch, to hand over after it.
    rx: Vec<Handover>,
}

impl WorkerSide {
    /// Hands `h` over to the event loop, or gives it back if the queue is
    /// full.
    fn try_hand_over(&mut self, h: Handover) -> Result<(), Handover> {
        match self.handover.try_send(h) {
            Ok(()) => {
                self.handed = true;
                Ok(())
            }
            Err(TrySendError::Full(h) | TrySendError::Disconnected(h)) => Err(h),
        }
    }
}

impl Owner<WorkerPort> for WorkerSide {
    fn varpd(&self, _: &WorkerPort) -> Varpd {
        Varpd::NotKnownHere
    }

    fn performs(&self, v: &TxVerdict) -> bool {
        matches!(v, TxVerdict::Encap { .. } | TxVerdict::Drop(_))
    }

    /// The event loop learns the source from the frame itself. A full
    /// hand-over queue drops the frame as `queue-overflow`.
    fn hand_over(&mut self, p: &mut WorkerPort, frame: &[u8]) {
        let h = Handover::Tx {
            oid: p.oid,
            frame: frame.to_vec(),
        };
        if self.try_hand_over(h).is_err() {
            p.drop(DropReason::QueueOverflow, frame.len() - VNET_HDR_LEN);
        }
    }

    fn learn(&mut self, p: &mut WorkerPort, mac: Mac, now: Instant) {
        let tell = match p.local.get_mut(&mac) {
            Some(t) if now.duration_since(*t) < LOCAL_REFRESH => false,
            Some(t) => {
                *t = now;
                true
            }
            None => {
                if p.local.len() < LOCAL_MAX {
                    p.local.insert(mac, now);
                }
                true
            }
        };
        if tell
            && self
                .try_hand_over(Handover::Learn { oid: p.oid, mac })
                .is_err()
        {
            // A full hand-over queue: tell it with the source's next frame.
            p.local.remove(&mac);
        }
    }

    fn miss(
        &mut self,
        _: &mut WorkerPort,
        v: TxVerdict,
        _: &[u8; VNET_HDR_LEN],
        _: &[u8],
        _: Mac,
        _: Mac,
        _: Instant,
    ) -> TxVerdict {
        unreachable!("a worker hands misses over ({v:?})")
    }

    fn take_rx(
        &mut self,
        mid: u64,
        mux: &Mux,
        ports: &overlay_core::FastMap<u64, WorkerPort>,
        (data, from, seg): (&[u8], SocketAddr, usize),
    ) -> bool {
        if self.checking == 0 || !needs_event_loop(mux, ports, data, seg) {
            return false;
        }
        self.rx.push(Handover::Rx {
            mid,
            data: data.to_vec(),
            from,
            seg,
        });
        true
    }

    fn rx_done(
        &mut self,
        mux: &mut Mux,
        _: &mut overlay_core::FastMap<u64, WorkerPort>,
        _: &[(u64, Mac)],
    ) {
        for h in std::mem::take(&mut self.rx) {
            if let Err(Handover::Rx { data, seg, .. }) = self.try_hand_over(h) {
                let n = data.len().div_ceil(seg.max(1)) as u64;
                mux.counters.rx_frames += n;
                mux.counters.drop(DropReason::QueueOverflow, n);
            }
        }
    }
}

impl WorkerState {
    fn run(mut self) {
        let mut events = Events::with_capacity(256);
        // Whether the last wait brought frames (then the next one spins).
        let mut busy = false;
        loop {
            match self.spin.wait(&mut self.poll, &mut events, None, busy) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    log::error!("worker: poll: {e}");
                    return;
                }
            }
            busy = false;
            for ev in events.iter() {
                let t = ev.token();
                if t == TOKEN_WAKE {
                    if !self.apply_commands() {
                        return;
                    }
                    continue;
                }
                let id = (t.0 >> 2) as u64;
                busy = true;
                match t.0 & 3 {
                    KIND_TAP => self.fwd.tap_readable(id, &mut self.side),
                    KIND_MUX => self.fwd.mux_readable(id, &mut self.side),
                    _ => {}
                }
            }
            self.fwd.flush_tx();
            if std::mem::take(&mut self.side.handed) {
                let _ = self.wake_loop.wake();
            }
            self.publish();
        }
    }

    /// Applies the queued commands; false when the event loop is gone.
    fn apply_commands(&mut self) -> bool {
        loop {
            match self.commands.try_recv() {
                Ok((seq, cmd)) => {
                    self.apply(cmd);
                    self.applied.store(seq, Ordering::Release);
                    // The event loop may hold a reply until this one.
                    let _ = self.wake_loop.wake();
                }
                Err(mpsc::TryRecvError::Empty) => return true,
                Err(mpsc::TryRecvError::Disconnected) => return false,
            }
        }
    }

    fn apply(&mut self, cmd: Command) {
        let registry = self.poll.registry();
        match cmd {
            Command::Mux { mid, mux, receives } => {
                if receives {
                    let fd = mux.sock.as_raw_fd();
                    if let Err(e) = registry.register(
                        &mut SourceFd(&fd),
                        token(KIND_MUX, mid),
                        Interest::READABLE,
                    ) {
                        log::warn!("worker: cannot watch mux {}: {e}", mux.listen);
                    }
                }
                self.fwd.muxes.insert(mid, *mux);
            }
            Command::Unmux { mid } => {
                if let Some(m) = self.fwd.muxes.remove(&mid) {
                    let _ = registry.deregister(&mut SourceFd(&m.sock.as_raw_fd()));
                }
                self.lock().muxes.remove(&mid);
            }
            Command::Port {
                cfg,
                oid,
                mux,
                tap,
                reads,
                table,
            } => {
                if reads {
                    if let Err(e) = registry.register(
                        &mut SourceFd(&tap.as_raw_fd()),
                        token(KIND_TAP, oid),
                        Interest::READABLE,
                    ) {
                        log::warn!("worker: cannot watch TAP queue of {}: {e}", cfg.name);
                    }
                }
                if let Some(m) = self.fwd.muxes.get_mut(&mux) {
                    let _ = m.table.join(cfg.listen, cfg.vnetid, oid, &cfg.name);
                }
                self.side.checking += usize::from(cfg.check_source);
                self.fwd.ports.insert(
                    oid,
                    WorkerPort {
                        oid,
                        cfg,
                        tap,
                        mux,
                        mode: None,
                        point: None,
                        table: table.view(),
                        counts: PortCounts::default(),
                        dirty: false,
                        local: HashMap::new(),
                    },
                );
            }
            Command::Update {
                oid,
                mode,
                point,
                vnics,
            } => {
                if let Some(p) = self.fwd.ports.get_mut(&oid) {
                    (p.mode, p.point) = (mode, point);
                    let old = std::mem::take(&mut p.counts.vnics);
                    p.counts.vnics = vnics
                        .into_iter()
                        .map(|m| {
                            let c = old.iter().find(|(o, _)| *o == m).map(|(_, c)| *c);
                            (m, c.unwrap_or_default())
                        })
                        .collect();
                    p.dirty = true;
                }
            }
            Command::Unport { oid } => {
                if let Some(p) = self.fwd.ports.remove(&oid) {
                    let _ = registry.deregister(&mut SourceFd(&p.tap.as_raw_fd()));
                    if let Some(m) = self.fwd.muxes.get_mut(&p.mux) {
                        m.table.leave(p.cfg.vnetid);
                    }
                    self.side.checking -= usize::from(p.cfg.check_source);
                    // Dropping the port closes the worker's TAP queue.
                }
                self.lock().ports.remove(&oid);
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Shard> {
        self.shard.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Moves what the ports and muxes counted into the shard.
    fn publish(&mut self) {
        let mut shard = self.shard.lock().unwrap_or_else(|e| e.into_inner());
        for p in self.fwd.ports.values_mut().filter(|p| p.dirty) {
            p.dirty = false;
            let s = shard.ports.entry(p.oid).or_default();
            s.counters.take_from(&mut p.counts.counters);
            s.peers.take_from(&mut p.counts.peers);
            for (mac, c) in p.counts.vnics.iter_mut() {
                match s.vnics.iter_mut().find(|(m, _)| m == mac) {
                    Some((_, t)) => t.take_from(c),
                    None => s.vnics.push((*mac, std::mem::take(c))),
                }
            }
        }
        for (mid, m) in self.fwd.muxes.iter_mut() {
            shard
                .muxes
                .entry(*mid)
                .or_default()
                .take_from(&mut m.counters);
        }
    }
}

/// Whether a received buffer holds a datagram for an overlay that checks
/// sources (`target/check_source`: the event loop asks varpd about new
/// ones), which only the event loop may take. Looks at each datagram's
/// header only.
fn needs_event_loop(
    mux: &Mux,
    ports: &overlay_core::FastMap<u64, WorkerPort>,
    data: &[u8],
    seg: usize,
) -> bool {
    data.chunks(seg.max(1)).any(|d| {
        (mux.encap.decap)(d)
            .ok()
            .and_then(|p| mux.table.demux(p.vni))
            .and_then(|oid| ports.get(&oid))
            .is_some_and(|p| p.cfg.check_source)
    })
}
