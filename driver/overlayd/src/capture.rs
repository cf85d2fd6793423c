//! Capture with decisions: a copy of every frame a forwarding thread
//! handled on the overlays being captured, with what it did with it, for
//! `ovsnoop --capture` (the illumos `snoop` on an overlay device, with the
//! driver's verdicts that no wire capture can see: a frame dropped as
//! `not-answered` never reaches a wire).
//!
//! ```text
//!  forwarding thread (event loop, worker k)
//!    verdict performed ──cap.on()?──► Capture::record ──try_lock──► ring (bounded)
//!                                                         │ full/busy: lost, counted
//!  event loop: drain ──► each session's filter ──► its connection (CaptureMsg lines)
//!                                                         │ backlog: lost, counted
//! ```
//!
//! Off (no session), a capture point costs one relaxed load of
//! [`Capture::on`] per frame; with the `capture` feature off (the baseline
//! of the capture-cost benchmark) not even that. On, the thread copies the
//! frame into a record and puts it into one ring shared by every thread,
//! under a mutex it only *tries*: a ring that is busy (after a few spins)
//! or full (records or bytes) loses the record, counted — forwarding never
//! waits for a capture. The event loop drains the ring after every turn of
//! its poll (`capture_sessions.rs`: every 20 ms at the latest while a
//! capture runs) and writes each record to the sessions that want it; a
//! session whose client reads too slowly loses records too, counted, and
//! is told how many (`CaptureMsg::Lost`). Losses fire
//! `overlay:capture-overflow` and are in the statistics snapshot (the
//! exporter's `overlay_capture_lost_total`).
//!
//! Where frames are captured: the transmit path once a thread performed
//! the verdict (a worker's hand-over is captured by the event loop, which
//! decides it), the receive path at its verdict (delivered, or dropped by
//! the overlay or by the mux before any overlay), the lookup replies that
//! release or drop queued and broadcast frames (`link.rs`), and injection
//! (`frames.rs`). Frames dropped in bulk without their bytes (a table
//! flush, a failed `sendmsg` of a batch, a TAP write that fails after the
//! verdict) are counted but not captured.

use overlay_api::capture::{CaptureDir, CaptureFrame, CaptureStats, CaptureVerdict};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Mutex, RwLock, TryLockError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Records the ring holds at most.
const RING_RECORDS: usize = 16_384;
/// Frame bytes the ring holds at most.
const RING_BYTES: usize = 32 << 20;
/// Longest the event loop sleeps while a capture runs (frames captured by
/// workers wait at most this long in the ring).
pub(crate) const DRAIN: Duration = Duration::from_millis(20);

/// One captured frame, as a forwarding thread saw it.
#[derive(Debug)]
pub(crate) struct Record {
    ts_ns: u64,
    /// The overlay; `None` for a mux's own drop.
    oid: Option<u64>,
    vni: u32,
    dir: CaptureDir,
    verdict: CaptureVerdict,
    len: u32,
    frame: Vec<u8>,
    from: Option<SocketAddr>,
    listen: Option<SocketAddr>,
    outer: Vec<u8>,
}

#[cfg(test)]
impl Record {
    /// Its overlay, direction, verdict and frame length (for tests).
    pub fn parts(&self) -> (Option<u64>, CaptureDir, CaptureVerdict, u32) {
        (self.oid, self.dir, self.verdict, self.len)
    }
}

/// Where a received frame came from, for its record.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Outer<'a> {
    /// The underlay sender.
    pub from: SocketAddr,
    /// The mux's address.
    pub listen: SocketAddr,
    /// The encapsulation header as received.
    pub header: &'a [u8],
}

#[derive(Debug, Default)]
struct Ring {
    q: VecDeque<Record>,
    bytes: usize,
}

/// The capture point every forwarding thread shares (one per overlayd).
#[derive(Debug, Default)]
pub(crate) struct Capture {
    on: AtomicBool,
    drops_only: AtomicBool,
    snaplen: AtomicUsize,
    /// Overlays any session captures; `None`: every overlay and the muxes.
    oids: RwLock<Option<Vec<u64>>>,
    ring: Mutex<Ring>,
    /// Records taken into the ring.
    frames: AtomicU64,
    /// Records lost: the ring full or busy, or a session's client slow.
    lost: AtomicU64,
    /// Of `lost`, those lost at the ring (every session misses them).
    ring_lost: AtomicU64,
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

impl Capture {
    /// Whether a capture runs: the one load a frame pays when none does.
    #[inline(always)]
    pub fn on(&self) -> bool {
        #[cfg(feature = "capture")]
        {
            self.on.load(Relaxed)
        }
        #[cfg(not(feature = "capture"))]
        false
    }

    /// Whether some session wants a frame of `oid` (`None`: a mux's).
    fn wants(&self, oid: Option<u64>, verdict: &CaptureVerdict) -> bool {
        if !verdict.is_drop() && self.drops_only.load(Relaxed) {
            return false;
        }
        match self.oids.try_read() {
            Ok(g) => match (&*g, oid) {
                (None, _) => true,
                (Some(v), Some(o)) => v.contains(&o),
                (Some(_), None) => false,
            },
            // Being changed: the event loop filters again.
            Err(_) => true,
        }
    }

    /// Turns a record into what a client is sent, `name` naming its
    /// overlay.
    pub fn message(r: Record, name: impl FnOnce(u64) -> String) -> (Option<u64>, CaptureFrame) {
        (
            r.oid,
            CaptureFrame {
                ts_ns: r.ts_ns,
                overlay: r.oid.map(name),
                vni: r.vni,
                dir: r.dir,
                verdict: r.verdict,
                len: r.len,
                frame: r.frame,
                from: r.from,
                listen: r.listen,
                outer: r.outer,
            },
        )
    }

    /// Records a frame of overlay `oid` (VNI `vni`) and its verdict.
    #[cold]
    #[inline(never)]
    pub fn frame(
        &self,
        oid: u64,
        vni: u32,
        dir: CaptureDir,
        verdict: CaptureVerdict,
        frame: &[u8],
    ) {
        self.record(Some(oid), vni, dir, verdict, frame, None);
    }

    /// Records a received frame (`oid` `None`: dropped by the mux before
    /// any overlay, `frame` then the whole datagram).
    #[cold]
    #[inline(never)]
    pub fn rx(
        &self,
        oid: Option<u64>,
        vni: u32,
        verdict: CaptureVerdict,
        frame: &[u8],
        outer: Outer<'_>,
    ) {
        self.record(oid, vni, CaptureDir::Rx, verdict, frame, Some(outer));
    }

    fn record(
        &self,
        oid: Option<u64>,
        vni: u32,
        dir: CaptureDir,
        verdict: CaptureVerdict,
        frame: &[u8],
        outer: Option<Outer<'_>>,
    ) {
        if !self.wants(oid, &verdict) {
            return;
        }
        let snap = match self.snaplen.load(Relaxed) {
            0 => frame.len(),
            n => n.min(frame.len()),
        };
        let rec = Record {
            ts_ns: now_ns(),
            oid,
            vni,
            dir,
            verdict,
            len: frame.len() as u32,
            frame: frame[..snap].to_vec(),
            from: outer.map(|o| o.from),
            listen: outer.map(|o| o.listen),
            outer: outer.map(|o| o.header.to_vec()).unwrap_or_default(),
        };
        let mut ring = None;
        for _ in 0..64 {
            match self.ring.try_lock() {
                Ok(g) => ring = Some(g),
                Err(TryLockError::Poisoned(e)) => ring = Some(e.into_inner()),
                Err(TryLockError::WouldBlock) => {
                    std::hint::spin_loop();
                    continue;
                }
            }
            break;
        }
        match ring {
            Some(mut r) if r.q.len() < RING_RECORDS && r.bytes + snap <= RING_BYTES => {
                r.bytes += snap;
                r.q.push_back(rec);
                self.frames.fetch_add(1, Relaxed);
            }
            _ => {
                self.lost.fetch_add(1, Relaxed);
                self.ring_lost.fetch_add(1, Relaxed);
            }
        }
    }

    /// Takes what the ring holds — nothing if a thread is putting a
    /// record in it just now (the event loop forwards too: it does not
    /// wait either, and takes the rest on its next turn).
    pub fn take(&self) -> VecDeque<Record> {
        let mut r = match self.ring.try_lock() {
            Ok(r) => r,
            Err(TryLockError::Poisoned(e)) => e.into_inner(),
            Err(TryLockError::WouldBlock) => return VecDeque::new(),
        };
        r.bytes = 0;
        std::mem::take(&mut r.q)
    }

    /// Takes what the ring holds, waiting for a thread putting a record
    /// in it (at a capture's end, off the forwarding path's turn).
    pub fn take_all(&self) -> VecDeque<Record> {
        let mut r = self.ring.lock().unwrap_or_else(|e| e.into_inner());
        r.bytes = 0;
        std::mem::take(&mut r.q)
    }

    /// Sets what is captured — the overlays (`None`: all, and the muxes),
    /// drops only, the snap length — or, with `None`, stops capturing.
    pub fn set(&self, what: Option<(Option<Vec<u64>>, bool, usize)>) {
        match what {
            None => {
                self.on.store(false, Relaxed);
                *self.oids.write().unwrap_or_else(|e| e.into_inner()) = Some(Vec::new());
            }
            Some((oids, drops_only, snaplen)) => {
                *self.oids.write().unwrap_or_else(|e| e.into_inner()) = oids;
                self.drops_only.store(drops_only, Relaxed);
                self.snaplen.store(snaplen, Relaxed);
                self.on.store(true, Relaxed);
            }
        }
    }

    /// Records lost at the ring since overlayd started.
    pub fn ring_lost(&self) -> u64 {
        self.ring_lost.load(Relaxed)
    }

    /// Counts `n` records lost after the ring (a slow client); returns
    /// every loss since overlayd started.
    pub fn lost_after(&self, n: u64) -> u64 {
        self.lost.fetch_add(n, Relaxed) + n
    }

    /// The counters of the statistics snapshot.
    pub fn stats(&self, sessions: usize) -> CaptureStats {
        CaptureStats {
            sessions: sessions as u32,
            frames: self.frames.load(Relaxed),
            lost: self.lost.load(Relaxed),
        }
    }
}

/// One client's capture.
#[derive(Debug)]
pub(crate) struct Session {
    /// Its overlays; `None`: all, and the muxes' drops.
    pub oids: Option<Vec<u64>>,
    /// Only drops.
    pub drops_only: bool,
    /// Bytes kept of each frame (0: all).
    pub snaplen: usize,
    /// Frames sent to the client.
    pub frames: u64,
    /// Frames lost to it.
    pub lost: u64,
    /// `lost` as last told to the client.
    pub told: u64,
}

impl Session {
    /// Whether it wants a frame of `oid` (`None`: a mux's), dropped or not.
    pub fn wants(&self, oid: Option<u64>, drop: bool) -> bool {
        (drop || !self.drops_only)
            && match (&self.oids, oid) {
                (None, _) => true,
                (Some(v), Some(o)) => v.contains(&o),
                (Some(_), None) => false,
            }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use overlay_api::DropReason;

    fn drop_verdict() -> CaptureVerdict {
        CaptureVerdict::Dropped {
            reason: DropReason::TooBig,
        }
    }

    #[test]
    fn off_records_nothing_and_on_records_what_the_filter_wants() {
        let c = Capture::default();
        assert!(!c.on());
        c.set(Some((Some(vec![7]), true, 4)));
        #[cfg(feature = "capture")]
        assert!(c.on());
        c.frame(7, 1, CaptureDir::Tx, drop_verdict(), &[1, 2, 3, 4, 5, 6]);
        c.frame(8, 1, CaptureDir::Tx, drop_verdict(), &[1]);
        let sent = CaptureVerdict::Sent {
            dest: "10.0.0.1:4789".parse().unwrap(),
        };
        c.frame(7, 1, CaptureDir::Tx, sent, &[1]);
        let got = c.take();
        assert_eq!(got.len(), 1, "overlay 8 and a non-drop are filtered out");
        assert_eq!((got[0].len, &got[0].frame[..]), (6, &[1, 2, 3, 4][..]));
        c.set(None);
        assert!(!c.on());
    }

    #[test]
    fn a_full_ring_loses_records_and_counts_them() {
        let c = Capture::default();
        c.set(Some((None, false, 0)));
        for _ in 0..RING_RECORDS + 5 {
            c.frame(1, 1, CaptureDir::Tx, drop_verdict(), &[0; 14]);
        }
        assert_eq!(c.stats(1).lost, 5);
        assert_eq!(c.take().len(), RING_RECORDS);
        c.frame(1, 1, CaptureDir::Tx, drop_verdict(), &[0; 14]);
        assert_eq!(c.take().len(), 1, "drained, the ring takes records again");
    }
}
