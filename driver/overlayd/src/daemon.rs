//! The event loop: one thread, one `mio::Poll`, owning every overlay, mux,
//! connection and the varpd link. Owning everything on one thread is what
//! lets the data path take no lock: a frame is read, decided on and sent
//! without waiting for anything, and control requests are served between
//! frames from the same state, so every snapshot is consistent.
//!
//! With more than one forwarding thread, [`crate::worker`]s beside it
//! forward what needs nothing of this state but the target table (which
//! they read lock-free) and hand the rest to it; their counts are moved
//! into the overlays' here ([`Daemon::collect_workers`]).
//!
//! Tokens carry their kind in the low two bits and an id above them.

use crate::capture::{Capture, Session};
use crate::chores::{Chores, VnicOp};
use crate::conn::Conn;
use crate::datapath::{token, Forwarder, KIND_CONN, KIND_LISTENER, KIND_MUX, KIND_TAP};
use crate::lookups::{EventLoop, Lookups};
use crate::overlay::Overlay;

use crate::persist::Saver;
use crate::spin::Spin;
use crate::worker::{Handover, Workers};
use anyhow::{bail, Context};
use mio::net::UnixListener;
use mio::{Events, Interest, Poll, Token, Waker};
use overlay_api::access::Access;
use overlay_api::proto::{DriverMsg, Reply};
use overlay_api::{Mac, PluginInfo};
use overlay_core::decide::TxVerdict;
use std::collections::{HashMap, VecDeque};
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The token of the waker the workers wake the event loop with.
const WAKE: Token = Token((1 << 2) | KIND_LISTENER);
/// Hand-overs taken per wake-up before other events get a turn.
const HANDOVER_BATCH: usize = 256;

/// How long a create-overlay waits for varpd to configure the instance.
pub(crate) const CREATE_WAIT: Duration = Duration::from_secs(5);
/// A lookup unanswered this long is asked again.
pub(crate) const LOOKUP_RETRY: Duration = Duration::from_secs(3);
/// Housekeeping period.
const TICK: Duration = Duration::from_millis(200);
/// Longest a reply waits for a worker or the state file's thread.
const HOLD_MAX: Duration = Duration::from_secs(5);

/// The varpd link.
#[derive(Debug)]
pub(crate) struct Link {
    pub id: u64,
    pub conn: Conn,
    pub pid: u32,
    pub plugins: Vec<PluginInfo>,
}

/// A create-overlay request waiting for varpd's verdict on the instance.
#[derive(Debug)]
pub(crate) struct Parked {
    pub conn: u64,
    pub oid: u64,
    pub deadline: Instant,
}

/// All of overlayd's state.
pub struct Daemon {
    pub(crate) poll: Poll,
    listener: UnixListener,
    /// Who may use the control socket.
    access: Access,
    sock_path: PathBuf,
    pub(crate) by_name: HashMap<String, u64>,
    /// The forwarding engine: the overlays (ports), muxes and buffers.
    pub(crate) fwd: Forwarder<Overlay>,
    pub(crate) mux_by_addr: HashMap<crate::mux::MuxKey, u64>,
    pub(crate) conns: HashMap<u64, Conn>,
    pub(crate) link: Option<Link>,
    /// Plugins varpd announced last (kept across links for show-overlay).
    pub(crate) plugins: Vec<PluginInfo>,
    pub(crate) lookups: Lookups,
    pub(crate) parked: Vec<Parked>,
    next_id: u64,
    /// When overlayd started (CLOCK_MONOTONIC ns), for `StatsSnapshot`.
    pub(crate) started_mono_ns: u64,
    shutdown: Arc<AtomicBool>,
    /// Where persistent overlays are kept (`persist.rs`).
    pub(crate) state_dir: PathBuf,
    /// Persistent overlays the state file holds that could not be set up
    /// at start (kept in the file, tried again now and then).
    pub(crate) unrestored: crate::persist::Unrestored,
    /// The other forwarding threads, if there are any.
    pub(crate) workers: Option<Workers>,
    /// The thread that writes the state file.
    pub(crate) saver: Saver,
    /// The thread that does the netlink work of VNICs.
    pub(crate) chores: Chores,
    /// VNIC requests waiting for their chores, by chore number.
    pub(crate) vnic_ops: HashMap<u64, VnicOp>,
    /// A VNIC request finished: requests that waited for it may be taken.
    pub(crate) unblocked: bool,
    /// Replies that wait until the workers applied, and the state file
    /// holds, every change made before them (in order; while any waits,
    /// no request is taken).
    held: VecDeque<Held>,
    /// The capture point every forwarding thread shares (`capture.rs`).
    pub(crate) cap: Arc<Capture>,
    /// The captures running, by connection.
    pub(crate) captures: HashMap<u64, Session>,
    /// The capture point's ring losses already told to the sessions.
    pub(crate) cap_ring_lost_seen: u64,
    /// How the event loop waits for frames.
    spin: Spin,
    /// The underlay TAP device's neighbour-cache thread
    /// (`--underlay-bridge`), stopped when the daemon goes.
    _underlay: Option<crate::underlay::Refresher>,
}

/// A reply waiting for the changes before it to be applied and written.
#[derive(Debug)]
struct Held {
    conn: u64,
    reply: Reply,
    /// The state file snapshot it waits for.
    save: u64,
    /// The last chore it waits for.
    chores: u64,
    /// The last command given to each worker.
    commands: Vec<u64>,
    since: Instant,
}

impl Daemon {
    /// Binds the control socket in `run_dir`, with `access`'s owner and
    /// mode (0600, or 0660 with an operators' group); persistent overlays
    /// live in `state_dir` (see [`Daemon::restore`]). `threads` forwarding
    /// threads in all: this event loop and `threads - 1` workers, each
    /// waiting for frames as `spin` says.
    pub fn new(
        run_dir: &Path,
        state_dir: &Path,
        access: Access,
        threads: usize,
        spin: Spin,
        underlay_bridge: Option<&str>,
    ) -> anyhow::Result<Daemon> {
        std::fs::create_dir_all(run_dir)
            .with_context(|| format!("cannot create run directory {}", run_dir.display()))?;
        let sock_path = run_dir.join(overlay_api::OVERLAYD_SOCKET);
        if sock_path.exists() {
            if std::os::unix::net::UnixStream::connect(&sock_path).is_ok() {
                bail!("another overlayd is serving {}", sock_path.display());
            }
            std::fs::remove_file(&sock_path)
                .with_context(|| format!("cannot remove stale socket {}", sock_path.display()))?;
        }
        let mut listener = UnixListener::bind(&sock_path)
            .with_context(|| format!("cannot bind {}", sock_path.display()))?;
        access.secure(&sock_path)?;
        let poll = Poll::new()?;
        poll.registry()
            .register(&mut listener, token(KIND_LISTENER, 0), Interest::READABLE)?;
        let shutdown = Arc::new(AtomicBool::new(false));
        for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
            signal_hook::flag::register(sig, Arc::clone(&shutdown))?;
        }
        let waker = Arc::new(Waker::new(poll.registry(), WAKE)?);
        let cap = Arc::new(Capture::default());
        let (ul, refresher) = match underlay_bridge.map(crate::underlay::Underlay::start) {
            None => (None, None),
            Some(Ok((ul, r))) => (Some(ul), Some(r)),
            Some(Err(e @ crate::underlay::UnderlayError::NoTunnelOffload { .. })) => {
                log::warn!("{e}; TCP super-frames go through the UDP sockets");
                (None, None)
            }
            Some(Err(e)) => return Err(anyhow::Error::new(e).context("--underlay-bridge")),
        };
        let workers = match threads {
            0 | 1 => None,
            n => Some(
                Workers::start(
                    n - 1,
                    Arc::clone(&waker),
                    spin,
                    Arc::clone(&cap),
                    ul.clone(),
                )
                .context("cannot start the forwarding threads")?,
            ),
        };
        let saver = Saver::start(state_dir.to_path_buf(), Arc::clone(&waker))
            .context("cannot start the state file's thread")?;
        let chores = Chores::start(waker).context("cannot start the chore thread")?;
        log::info!(
            "overlayd listening on {} ({}); {} forwarding thread(s)",
            sock_path.display(),
            access.describe(),
            threads.max(1)
        );
        Ok(Daemon {
            poll,
            listener,
            access,
            sock_path,
            by_name: HashMap::new(),
            fwd: Forwarder::with_capture(Arc::clone(&cap))
                .with_underlay(ul.map(crate::underlay::UnderlayTx::new)),
            mux_by_addr: HashMap::new(),
            conns: HashMap::new(),
            link: None,
            plugins: Vec::new(),
            lookups: Lookups::default(),
            parked: Vec::new(),
            next_id: 1,
            started_mono_ns: monotonic_ns(),
            shutdown,
            state_dir: state_dir.to_path_buf(),
            unrestored: Default::default(),
            workers,
            saver,
            chores,
            vnic_ops: HashMap::new(),
            unblocked: false,
            held: VecDeque::new(),
            cap,
            captures: HashMap::new(),
            cap_ring_lost_seen: 0,
            spin,
            _underlay: refresher,
        })
    }

    /// A fresh id (overlay, mux, connection and lookup ids share the space).
    pub(crate) fn next_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    /// Runs until SIGTERM or SIGINT.
    pub fn run(&mut self) -> anyhow::Result<()> {
        let mut events = Events::with_capacity(256);
        let mut last_tick = Instant::now();
        // Whether the last wait brought frames (then the next one spins).
        let mut busy = false;
        while !self.shutdown.load(Ordering::Relaxed) {
            let wait = if self.captures.is_empty() {
                TICK
            } else {
                crate::capture::DRAIN
            };
            match self
                .spin
                .wait(&mut self.poll, &mut events, Some(wait), busy)
            {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e.into()),
            }
            busy = false;
            for ev in events.iter() {
                let t = ev.token().0;
                let id = (t >> 2) as u64;
                busy |= matches!(t & 3, KIND_TAP | KIND_MUX);
                match t & 3 {
                    KIND_LISTENER if ev.token() == WAKE => {
                        self.take_handovers();
                        self.vnic_done();
                        self.release_held(false);
                    }
                    KIND_LISTENER => self.accept(),
                    KIND_TAP => self.tap_readable(id),
                    KIND_MUX => self.mux_readable(id),
                    _ => {
                        // Control requests see counters of everything sent so far.
                        self.flush_tx();
                        self.collect_workers();
                        self.conn_event(id)
                    }
                }
            }
            self.flush_tx();
            self.drain_capture();
            if last_tick.elapsed() >= TICK {
                last_tick = Instant::now();
                self.tick(last_tick);
            }
        }
        // What was changed is written, and every reply goes, before the
        // parked creates are answered (they were saved when they parked).
        self.chores.finish();
        self.vnic_done();
        self.saver.finish();
        self.release_held(true);
        self.answer_parked_at_shutdown();
        let kept = self.fwd.ports.values().filter(|o| !o.cfg.temporary).count();
        log::info!(
            "overlayd shutting down; {kept} persistent overlay(s) keep their TAP devices and VNICs for the next overlayd, {} temporary one(s) go",
            self.fwd.ports.len() - kept
        );
        Ok(())
    }

    /// At shutdown: answers every `create-overlay` still waiting for varpd,
    /// so that no client is left with a closed connection and a device it
    /// cannot account for. A persistent overlay is already saved and its
    /// TAP device persistent (both before the create parked): the next
    /// overlayd restores it. A temporary one goes with this overlayd.
    fn answer_parked_at_shutdown(&mut self) {
        for p in std::mem::take(&mut self.parked) {
            let Some(ov) = self.fwd.ports.get(&p.oid) else {
                continue;
            };
            let name = ov.cfg.name.clone();
            let reply = if ov.cfg.temporary {
                overlay_api::proto::Reply::Error {
                    error: overlay_api::ApiError::new(
                        overlay_api::ErrorKind::System,
                        format!("overlayd is stopping before varpd configured the search plugin: the temporary overlay {name} goes with it"),
                    ),
                }
            } else {
                overlay_api::proto::Reply::Ok {
                    warning: Some(format!("overlayd is stopping before varpd configured the search plugin: {name} is saved, and the next overlayd restores it")),
                }
            };
            log::info!("{name}: create-overlay answered at shutdown (varpd had not configured it)");
            if let Some(c) = self.conns.get_mut(&p.conn) {
                c.send(&reply);
            }
        }
    }

    /// The event loop's owner of its forwarding engine.
    fn owner<'a>(link: &'a mut Option<Link>, lookups: &'a mut Lookups) -> EventLoop<'a> {
        EventLoop {
            link: link.as_mut().map(|l| &mut l.conn),
            lookups,
            asked: None,
        }
    }

    /// Reads and forwards every frame queue 0 of overlay `oid`'s TAP device has.
    pub(crate) fn tap_readable(&mut self, oid: u64) {
        let mut owner = Daemon::owner(&mut self.link, &mut self.lookups);
        self.fwd.tap_readable(oid, &mut owner);
    }

    /// Decides and performs the frame in the TAP buffer (`n` bytes,
    /// virtio-net header first) of overlay `oid`.
    pub(crate) fn tx_frame(&mut self, oid: u64, n: usize) -> Option<TxVerdict> {
        let mut owner = Daemon::owner(&mut self.link, &mut self.lookups);
        self.fwd.tx_frame(oid, n, &mut owner)
    }

    /// Receives every datagram mux `mid` has.
    pub(crate) fn mux_readable(&mut self, mid: u64) {
        let mut owner = Daemon::owner(&mut self.link, &mut self.lookups);
        self.fwd.mux_readable(mid, &mut owner);
    }

    /// Sends what the send queue holds and counts what became of it.
    pub(crate) fn flush_tx(&mut self) {
        self.fwd.flush_tx();
    }

    /// Guest MAC `mac` sent a frame on overlay `oid` at `now` (forwarded by
    /// a worker that told us).
    pub(crate) fn learn(&mut self, oid: u64, mac: Mac, now: Instant) {
        if let Some(ov) = self.fwd.ports.get_mut(&oid) {
            crate::lookups::learn(ov, self.link.as_mut().map(|l| &mut l.conn), mac, now);
        }
    }

    /// Takes what the workers handed over, as if read here.
    fn take_handovers(&mut self) {
        for _ in 0..HANDOVER_BATCH {
            let h = match self.workers.as_ref().map(|w| w.handover.try_recv()) {
                Some(Ok(h)) => h,
                _ => return,
            };
            match h {
                Handover::Tx { oid, frame } => {
                    let n = frame.len().min(self.fwd.tapbuf.len());
                    self.fwd.tapbuf[..n].copy_from_slice(&frame[..n]);
                    self.tx_frame(oid, n);
                    if self.fwd.txq.len() >= crate::datapath::FLUSH_MSGS {
                        self.flush_tx();
                    }
                }
                Handover::Learn { oid, mac } => self.learn(oid, mac, Instant::now()),
                Handover::Rx {
                    mid,
                    mut data,
                    from,
                    seg,
                } => {
                    let mut owner = Daemon::owner(&mut self.link, &mut self.lookups);
                    self.fwd.rx_deferred(mid, &mut data, from, seg, &mut owner);
                }
            }
        }
        // More may wait: come back after the other events.
        if let Some(w) = &self.workers {
            w.wake_loop();
        }
    }

    /// Moves what the workers counted into the overlays' and muxes' counters.
    pub(crate) fn collect_workers(&mut self) {
        let Some(w) = &self.workers else {
            return;
        };
        let (overlays, muxes) = (&mut self.fwd.ports, &mut self.fwd.muxes);
        w.collect(
            |oid, c| {
                if let Some(ov) = overlays.get_mut(&oid) {
                    ov.counters.take_from(&mut c.counters);
                    ov.peers.take_from(&mut c.peers);
                    for (mac, v) in c.vnics.iter_mut() {
                        match crate::vnic::counters_of(&mut ov.vnics, *mac) {
                            Some(t) => t.take_from(v),
                            None => *v = Default::default(),
                        }
                    }
                }
            },
            |mid, c| {
                if let Some(m) = muxes.get_mut(&mid) {
                    m.counters.take_from(c);
                }
            },
        );
    }

    fn accept(&mut self) {
        loop {
            match self.listener.accept() {
                Ok((mut stream, _)) => {
                    if let Err(e) = self.access.check(stream.as_raw_fd()) {
                        log::warn!("control socket: {e}");
                        // One short line into an empty socket buffer.
                        let mut out = serde_json::to_vec(&Reply::Error { error: e })
                            .expect("replies always serialize");
                        out.push(b'\n');
                        let _ = stream.write(&out);
                        continue;
                    }
                    let id = self.next_id();
                    if let Err(e) = self.poll.registry().register(
                        &mut stream,
                        token(KIND_CONN, id),
                        Interest::READABLE | Interest::WRITABLE,
                    ) {
                        log::warn!("cannot register control connection: {e}");
                        continue;
                    }
                    self.conns.insert(id, Conn::new(stream));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) => {
                    log::warn!("accept on control socket: {e}");
                    return;
                }
            }
        }
    }

    fn conn_event(&mut self, id: u64) {
        if self.link.as_ref().is_some_and(|l| l.id == id) {
            self.link_event();
            return;
        }
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        conn.flush();
        if let Err(e) = conn.fill() {
            let reply = overlay_api::proto::Reply::Error {
                error: overlay_api::ApiError::new(overlay_api::ErrorKind::BadRequest, e),
            };
            conn.send(&reply);
            conn.eof = true;
        }
        self.serve(id);
    }

    /// Sends `r` to client `conn` — once the workers have applied, and the
    /// state file holds, every change made so far (at once when nothing
    /// is outstanding, which is the rule): a client told "deleted" finds
    /// the device gone, one told "created" finds it in the state file.
    pub(crate) fn reply(&mut self, conn: u64, r: &Reply) {
        let held = Held {
            conn,
            reply: r.clone(),
            save: self.saver.issued(),
            chores: self.chores.issued(),
            commands: self.workers.as_ref().map(|w| w.sent()).unwrap_or_default(),
            since: Instant::now(),
        };
        if self.held.is_empty() && self.passed(&held) {
            if let Some(c) = self.conns.get_mut(&conn) {
                c.send(r);
            }
            return;
        }
        self.held.push_back(held);
    }

    /// Whether a reply is held or a VNIC request waits for its chore: no
    /// request is taken meanwhile, so that each sees the one before it
    /// done.
    fn busy(&self) -> bool {
        !self.held.is_empty() || self.vnic_ops.values().any(|o| o.conn().is_some())
    }

    fn passed(&self, h: &Held) -> bool {
        self.saver.written(h.save)
            && self.chores.done(h.chores)
            && self
                .workers
                .as_ref()
                .is_none_or(|w| w.caught_up(&h.commands))
    }

    /// Sends the held replies whose changes are done, in order (all of
    /// them with `force`, at shutdown; one held past [`HOLD_MAX`] goes
    /// with an error in the log), then takes the requests that waited.
    pub(crate) fn release_held(&mut self, force: bool) {
        // Most wake-ups (a worker's hand-over) find nothing held and no
        // request waiting: nothing to scan.
        if self.held.is_empty() && !std::mem::take(&mut self.unblocked) {
            return;
        }
        while let Some(h) = self.held.front() {
            let late = h.since.elapsed() > HOLD_MAX;
            if !(force || late || self.passed(h)) {
                return;
            }
            if late {
                log::error!(
                    "a forwarding thread or the state file's thread did not finish a change within {} s; answering anyway",
                    HOLD_MAX.as_secs()
                );
            }
            let h = self.held.pop_front().expect("looked at");
            if let Some(c) = self.conns.get_mut(&h.conn) {
                c.send(&h.reply);
            }
        }
        if self.busy() {
            return;
        }
        let waiting: Vec<u64> = self
            .conns
            .iter()
            .filter(|(_, c)| !c.lines.is_empty() || c.eof)
            .map(|(id, _)| *id)
            .collect();
        for id in waiting {
            self.serve(id);
        }
    }

    /// Handles the queued lines of client `id`, unless it waits for varpd
    /// or a reply is held.
    pub(crate) fn serve(&mut self, id: u64) {
        loop {
            if self.parked.iter().any(|p| p.conn == id)
                || self.link.as_ref().is_some_and(|l| l.id == id)
                || self.busy()
            {
                return;
            }
            let Some(conn) = self.conns.get_mut(&id) else {
                return;
            };
            let Some(line) = conn.lines.pop_front() else {
                break;
            };
            self.handle_line(id, &line);
        }
        if let Some(conn) = self.conns.get_mut(&id) {
            if conn.eof && conn.lines.is_empty() && conn.drained() {
                self.close_conn(id);
            }
        }
    }

    pub(crate) fn close_conn(&mut self, id: u64) {
        self.capture_end(id);
        if let Some(mut c) = self.conns.remove(&id) {
            let _ = self.poll.registry().deregister(&mut c.stream);
        }
        self.parked.retain(|p| p.conn != id);
    }

    fn tick(&mut self, now: Instant) {
        self.collect_workers();
        let expired: Vec<Parked> = {
            let (gone, keep): (Vec<_>, Vec<_>) = std::mem::take(&mut self.parked)
                .into_iter()
                .partition(|p| p.deadline <= now);
            self.parked = keep;
            gone
        };
        for p in expired {
            self.reply_ok(p.conn, Some("varpd did not configure the search plugin within 5 s; the overlay is DEGRADED until it does (see show-overlay -f)".into()));
            self.serve(p.conn);
        }
        if self.link.is_some() {
            if let Some(stale) = now.checked_sub(LOOKUP_RETRY) {
                self.ask_pending(Some(stale), now);
            }
        }
        for ov in self.fwd.ports.values_mut() {
            ov.table.step();
            let gone = ov.local.expire(now);
            if let (Some(link), true) = (self.link.as_mut(), ov.configured) {
                for mac in gone {
                    link.conn.send(&DriverMsg::LocalMac {
                        oid: ov.oid,
                        mac,
                        present: false,
                    });
                }
            }
        }
        self.retry_restore(now);
        self.report_all();
        self.vnic_done();
        self.release_held(false);
    }

    /// Fires degrade/restore probes for every overlay whose health changed.
    pub(crate) fn report_all(&mut self) {
        let linked = self.link.is_some();
        for ov in self.fwd.ports.values_mut() {
            // An overlay whose create waits on varpd's verdict is not yet
            // degraded: it is being configured (the wait is bounded).
            if !self.parked.iter().any(|p| p.oid == ov.oid) {
                ov.report(linked);
            }
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.sock_path);
    }
}

/// CLOCK_MONOTONIC in nanoseconds.
pub(crate) fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}
