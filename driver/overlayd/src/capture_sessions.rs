//! The captures clients run (`ovsnoop --capture`): one session per
//! control connection that sent `capture-start`, with its overlays,
//! `--drops-only` and snap length; the capture point (`capture.rs`) is set
//! to what the sessions want together. The event loop drains the point's
//! ring after every turn of its poll (every `capture::DRAIN` at the latest while
//! a capture runs) and writes each frame, as a `CaptureMsg` line, to the
//! sessions that want it. A client that leaves more than [`BACKLOG`]
//! bytes unread loses frames instead of growing overlayd's memory or
//! slowing anything: counted, told to it (`CaptureMsg::Lost`), probed
//! (`overlay:capture-overflow`). A session ends with `capture-stop`
//! (answered with the totals once every frame captured before it has
//! gone) or with its connection.

use crate::capture::{Capture, Session};
use crate::daemon::Daemon;
use crate::port::Port;
use overlay_api::capture::{CaptureMsg, CaptureOverlay};
use overlay_api::proto::Reply;
use overlay_api::{ApiError, ErrorKind};
use overlay_probes::overlay as probe;

/// Bytes a capturing client may leave unread before it loses frames.
pub(crate) const BACKLOG: usize = 8 << 20;

impl Daemon {
    /// `CaptureStart` from client `conn`: the capture runs once this returns.
    pub(crate) fn capture_start(
        &mut self,
        conn: u64,
        overlays: &[String],
        drops_only: bool,
        snaplen: Option<u32>,
    ) -> Reply {
        if self.captures.contains_key(&conn) {
            return Reply::Error {
                error: ApiError::new(
                    ErrorKind::BadRequest,
                    "this connection is capturing already; send capture-stop first",
                ),
            };
        }
        let mut oids = Vec::new();
        for name in overlays {
            match self.by_name.get(name) {
                Some(&o) => oids.push(o),
                None => {
                    return Reply::Error {
                        error: ApiError::new(
                            ErrorKind::NotFound,
                            format!("cannot capture on {name}: no such overlay"),
                        ),
                    }
                }
            }
        }
        let mut listed: Vec<CaptureOverlay> = self
            .fwd
            .ports
            .values()
            .filter(|o| oids.is_empty() || oids.contains(&o.oid))
            .map(|o| CaptureOverlay {
                name: o.cfg.name.clone(),
                vnetid: o.cfg.vnetid,
            })
            .collect();
        listed.sort_by(|a, b| a.name.cmp(&b.name));
        let names = listed
            .iter()
            .map(|o| o.name.as_str())
            .collect::<Vec<_>>()
            .join(",");
        log::info!(
            "capture {conn} started on {}{}",
            if oids.is_empty() {
                "every overlay"
            } else {
                names.as_str()
            },
            if drops_only { " (drops only)" } else { "" }
        );
        probe::capture_start(conn, &names, drops_only);
        self.captures.insert(
            conn,
            Session {
                oids: (!oids.is_empty()).then_some(oids),
                drops_only,
                snaplen: snaplen.unwrap_or(0) as usize,
                frames: 0,
                lost: 0,
                told: 0,
            },
        );
        self.capture_filter();
        Reply::Capturing { overlays: listed }
    }

    /// `CaptureStop` from client `conn`: what was captured before goes
    /// first, then the end with the totals.
    pub(crate) fn capture_stop(&mut self, conn: u64) -> Option<CaptureMsg> {
        if !self.captures.contains_key(&conn) {
            return None;
        }
        let records = self.cap.take_all();
        self.send_records(records);
        let s = self.capture_end(conn)?;
        Some(CaptureMsg::End {
            frames: s.frames,
            lost: s.lost,
        })
    }

    /// Client `conn` went or stopped: its session ends.
    pub(crate) fn capture_end(&mut self, conn: u64) -> Option<Session> {
        let s = self.captures.remove(&conn)?;
        log::info!("capture {conn} ended: {} frames, {} lost", s.frames, s.lost);
        probe::capture_stop(conn, s.frames, s.lost);
        self.capture_filter();
        Some(s)
    }

    /// Sets the capture point to what the sessions want together.
    fn capture_filter(&mut self) {
        if self.captures.is_empty() {
            self.cap.set(None);
            return;
        }
        let s = self.captures.values();
        let all = s.clone().any(|s| s.oids.is_none());
        let oids = (!all).then(|| {
            let mut v: Vec<u64> = s
                .clone()
                .flat_map(|s| s.oids.iter().flatten().copied())
                .collect();
            v.sort_unstable();
            v.dedup();
            v
        });
        let drops_only = s.clone().all(|s| s.drops_only);
        let snaplen = if s.clone().any(|s| s.snaplen == 0) {
            0
        } else {
            s.map(|s| s.snaplen).max().unwrap_or(0)
        };
        self.cap.set(Some((oids, drops_only, snaplen)));
    }

    /// Writes what the ring holds to the sessions that want it.
    pub(crate) fn drain_capture(&mut self) {
        if self.captures.is_empty() {
            return;
        }
        let records = self.cap.take();
        self.send_records(records);
    }

    /// Writes `records` to the sessions that want them, and tells each
    /// session of the frames it lost.
    fn send_records(&mut self, records: std::collections::VecDeque<crate::capture::Record>) {
        let ring_lost = self.cap.ring_lost();
        let new_ring_lost = ring_lost - self.cap_ring_lost_seen;
        self.cap_ring_lost_seen = ring_lost;
        let mut slow = 0u64;
        for r in records {
            let ports = &self.fwd.ports;
            let name = |o: u64| {
                ports.get(&o).map_or_else(
                    || format!("(deleted overlay {o})"),
                    |p| p.cfg().name.clone(),
                )
            };
            let (oid, f) = Capture::message(r, name);
            let drop = f.verdict.is_drop();
            let msg = CaptureMsg::Frame(f);
            for (id, s) in self.captures.iter_mut() {
                if !s.wants(oid, drop) {
                    continue;
                }
                let Some(c) = self.conns.get_mut(id) else {
                    continue;
                };
                let sent = c.pending() <= BACKLOG
                    && match &msg {
                        CaptureMsg::Frame(f) if s.snaplen > 0 && f.frame.len() > s.snaplen => {
                            let mut f = f.clone();
                            f.frame.truncate(s.snaplen);
                            c.send(&CaptureMsg::Frame(f))
                        }
                        m => c.send(m),
                    };
                if sent {
                    s.frames += 1;
                } else {
                    s.lost += 1;
                    slow += 1;
                }
            }
        }
        if slow + new_ring_lost > 0 {
            let total = self.cap.lost_after(slow);
            probe::capture_overflow(slow + new_ring_lost, total);
        }
        for (id, s) in self.captures.iter_mut() {
            s.lost += new_ring_lost;
            if s.lost > s.told {
                if let Some(c) = self.conns.get_mut(id) {
                    if c.send(&CaptureMsg::Lost { total: s.lost }) {
                        s.told = s.lost;
                    }
                }
            }
        }
    }
}
