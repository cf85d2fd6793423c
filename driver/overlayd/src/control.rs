//! The control socket's requests: the `dladm` overlay subcommands as
//! `ovadm` sends them, and the statistics snapshot.
//!
//! This module parses requests and formats replies; what a request changes
//! is the [`crate::registry`]'s (overlays, muxes, VNICs) or the target
//! table's. A malformed request gets an error reply naming what was wrong;
//! nothing a client sends can stop the daemon. `create-overlay` checks the
//! search plugin against what varpd announced, has the registry make the
//! overlay, then asks varpd to configure the search plugin and answers once
//! varpd has (or has refused, in which case the overlay is undone).

use crate::daemon::{monotonic_ns, Daemon, Parked, CREATE_WAIT};
use crate::link::release;
use crate::overlay::Overlay;
use crate::port::Port;
use overlay_api::proto::{Reply, Request};
use overlay_api::{
    ApiError, DestMode, DropReason, ErrorKind, OverlaySpec, PropRow, StatsSnapshot, StatusRow,
    TargetCursor, TargetDest, TargetRow,
};
use overlay_probes::overlay as probe;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// Most rows one page of a target-table dump may hold.
const MAX_PAGE: u32 = 65536;

fn err(kind: ErrorKind, msg: impl Into<String>) -> Reply {
    Reply::Error {
        error: ApiError::new(kind, msg),
    }
}

fn ok() -> Reply {
    Reply::Ok { warning: None }
}

impl Daemon {
    pub(crate) fn reply_ok(&mut self, conn: u64, warning: Option<String>) {
        self.reply(conn, &Reply::Ok { warning });
    }

    /// Handles one request line from client `conn`.
    pub(crate) fn handle_line(&mut self, conn: u64, line: &[u8]) {
        let req: Request = match serde_json::from_slice(line) {
            Ok(r) => r,
            Err(e) => {
                return self.reply(
                    conn,
                    &err(ErrorKind::BadRequest, format!("malformed request: {e}")),
                )
            }
        };
        let reply = match req {
            Request::VarpdHello {
                version,
                pid,
                plugins,
            } => {
                if version != overlay_api::PROTOCOL_VERSION {
                    err(
                        ErrorKind::BadRequest,
                        format!(
                            "varpd speaks protocol {version}, overlayd speaks {}",
                            overlay_api::PROTOCOL_VERSION
                        ),
                    )
                } else {
                    return self.link_up(conn, pid, plugins);
                }
            }
            Request::CreateOverlay { spec } => match self.create(conn, &spec) {
                Ok(None) => return,
                Ok(Some(r)) => r,
                Err(r) => r,
            },
            Request::DeleteOverlay { name } => self.delete(&name),
            Request::ShowProps { name } => self
                .with_unrestored(
                    name.as_deref(),
                    |d, ov| d.props(ov),
                    |d, n| d.unrestored_props(n),
                )
                .map(|rows| Reply::Props { rows })
                .unwrap_or_else(|e| e),
            Request::ShowStatus { name } => self
                .with_unrestored(
                    name.as_deref(),
                    |d, ov| d.status(ov),
                    |d, n| d.unrestored_status(n),
                )
                .map(|rows| Reply::Status { rows })
                .unwrap_or_else(|e| e),
            Request::ShowTargets {
                name,
                cursor,
                limit,
            } => self.targets_page(name.as_deref(), cursor, limit),
            Request::Stats { name, max_peers } => self.stats(name.as_deref(), max_peers),
            // Answered once the chore thread has made (or removed) the link.
            Request::CreateVnic { spec } => match self.create_vnic(conn, &spec) {
                Ok(()) => return,
                Err(error) => Reply::Error { error },
            },
            Request::DeleteVnic { name } => match self.delete_vnic(conn, &name) {
                Ok(()) => return,
                Err(error) => Reply::Error { error },
            },
            Request::ShowVnics { name } => self.show_vnics(name.as_deref()),
            Request::SetTarget { name, mac, dest } => self.set_target(&name, mac, dest),
            Request::InjectFrame { name, frame } => self.operator_inject(&name, &frame),
            Request::ResendFrame { name, frame } => self.operator_resend(&name, &frame),
            Request::RemoveTarget { name, mac } => match self.dynamic(&name) {
                Err(e) => e,
                Ok(oid) => {
                    let ov = self.fwd.ports.get_mut(&oid).expect("dynamic() checked");
                    match ov.table.remove(mac) {
                        None => err(
                            ErrorKind::NotFound,
                            format!("overlay {name} has no target entry for {mac}"),
                        ),
                        Some(n) => {
                            probe::target_remove(&name, mac, "operator");
                            ov.drop_many(DropReason::Flushed, n as u64, 0);
                            ok()
                        }
                    }
                }
            },
            Request::FlushTargets { name } => match self.dynamic(&name) {
                Err(e) => e,
                Ok(oid) => {
                    let ov = self.fwd.ports.get_mut(&oid).expect("dynamic() checked");
                    let entries = ov.table.len();
                    let n = ov.table.flush();
                    probe::target_flush(&name, entries, "operator");
                    ov.drop_many(DropReason::Flushed, n as u64, 0);
                    log::info!("{name}: target table flushed");
                    ok()
                }
            },
        };
        self.reply(conn, &reply);
    }

    fn lookup_name(&self, name: &str) -> Result<u64, Reply> {
        self.by_name.get(name).copied().ok_or_else(|| match self.unrestored.get(name) {
            Some((_, why)) => err(
                ErrorKind::NotFound,
                format!("overlay {name} is persistent but could not be restored yet ({why}): it has no TAP device; see show-overlay -f"),
            ),
            None => err(ErrorKind::NotFound, format!("no such overlay: {name}")),
        })
    }

    /// The overlay, which must use the target table (dynamic mode).
    fn dynamic(&self, name: &str) -> Result<u64, Reply> {
        let oid = self.lookup_name(name)?;
        if self.fwd.ports[&oid].mode == Some(DestMode::Point) {
            return Err(err(ErrorKind::BadRequest, format!("overlay {name} sends every frame to one destination (point mode); it has no target table")));
        }
        Ok(oid)
    }

    fn with_overlays<T>(
        &self,
        name: Option<&str>,
        f: impl Fn(&Daemon, &Overlay) -> Vec<T>,
    ) -> Result<Vec<T>, Reply> {
        let mut oids: Vec<u64> = match name {
            Some(n) => vec![self.lookup_name(n)?],
            None => self.fwd.ports.keys().copied().collect(),
        };
        oids.sort_by(|a, b| self.fwd.ports[a].cfg.name.cmp(&self.fwd.ports[b].cfg.name));
        Ok(oids
            .iter()
            .flat_map(|o| f(self, &self.fwd.ports[o]))
            .collect())
    }

    /// As [`Daemon::with_overlays`], with the rows `g` gives of the
    /// persistent overlays that could not be restored, in name order: an
    /// operator sees them (DEGRADED, with the reason) instead of nothing.
    fn with_unrestored<T: HasLink>(
        &self,
        name: Option<&str>,
        f: impl Fn(&Daemon, &Overlay) -> Vec<T>,
        g: impl Fn(&Daemon, Option<&str>) -> Vec<T>,
    ) -> Result<Vec<T>, Reply> {
        if let Some(n) = name.filter(|n| !self.by_name.contains_key(*n)) {
            if self.unrestored.get(n).is_some() {
                return Ok(g(self, Some(n)));
            }
        }
        let mut rows = self.with_overlays(name, f)?;
        if name.is_none() {
            rows.extend(g(self, None));
            rows.sort_by(|a, b| a.link().cmp(b.link())); // stable: keeps each overlay's order
        }
        Ok(rows)
    }

    fn plugin_props(&self, search: &str) -> Option<&[overlay_api::PropSpec]> {
        self.plugins
            .iter()
            .find(|p| p.name == search)
            .map(|p| p.props.as_slice())
    }

    fn props(&self, ov: &Overlay) -> Vec<PropRow> {
        ov.cfg.prop_rows(ov.oid, self.plugin_props(&ov.cfg.search))
    }

    fn status(&self, ov: &Overlay) -> Vec<StatusRow> {
        let (status, details) = ov.status(self.link.is_some());
        vec![StatusRow {
            link: ov.cfg.name.clone(),
            status,
            details,
        }]
    }

    /// One page of a target-table dump: overlays in name order, each
    /// table from its dump position, at most `limit` rows (capped). Pages
    /// are served between frames and hold nothing in between, so a dump of
    /// any size never stops the data path for long.
    fn targets_page(
        &self,
        name: Option<&str>,
        cursor: Option<TargetCursor>,
        limit: Option<u32>,
    ) -> Reply {
        let limit = limit
            .unwrap_or(overlay_api::client::TARGET_PAGE)
            .clamp(1, MAX_PAGE) as usize;
        let mut names: Vec<&str> = match name {
            Some(n) => match self.lookup_name(n) {
                Ok(_) => vec![n],
                Err(e) => return e,
            },
            None => self.by_name.keys().map(String::as_str).collect(),
        };
        names.sort_unstable();
        let (start, mut pos) = match &cursor {
            Some(c) => (
                names
                    .iter()
                    .position(|n| *n >= c.overlay.as_str())
                    .unwrap_or(names.len()),
                c.pos as usize,
            ),
            None => (0, 0),
        };
        if let Some(c) = &cursor {
            if names.get(start) != Some(&c.overlay.as_str()) {
                pos = 0; // that overlay is gone: go on with the next one
            }
        }
        let now = Instant::now();
        let mut rows = Vec::new();
        for (i, n) in names.iter().enumerate().skip(start) {
            let ov = &self.fwd.ports[&self.by_name[*n]];
            let from = if i == start { pos } else { 0 };
            let (page, next) = ov.table.dump_page(from, limit - rows.len(), now);
            rows.extend(page.into_iter().map(|e| TargetRow {
                link: ov.cfg.name.clone(),
                target: e.mac,
                destination: e.dest,
                age_ms: Some(e.age.as_millis() as u64),
                idle_ms: e.idle.map(|d| d.as_millis() as u64),
                frames: Some(e.frames),
                bytes: Some(e.bytes),
            }));
            if let Some(p) = next {
                return Reply::Targets {
                    rows,
                    next: Some(TargetCursor {
                        overlay: n.to_string(),
                        pos: p as u64,
                    }),
                };
            }
            if rows.len() >= limit {
                let next = names.get(i + 1).map(|n| TargetCursor {
                    overlay: n.to_string(),
                    pos: 0,
                });
                return Reply::Targets { rows, next };
            }
        }
        Reply::Targets { rows, next: None }
    }

    fn stats(&self, name: Option<&str>, max_peers: Option<u32>) -> Reply {
        let linked = self.link.is_some();
        let overlays = match self.with_overlays(name, |_, ov| {
            let mut s =
                ov.counters
                    .overlay_stats(&ov.cfg.name, ov.cfg.vnetid, ov.table.len() as u64);
            s.status = ov.status(linked).0;
            s.created_mono_ns = ov.created_mono_ns;
            s.peers = ov.peers.stats();
            s.peers_total = s.peers.len() as u64;
            if let Some(n) = max_peers {
                s.peers.truncate(n as usize);
            }
            s.lookup_latency = ov.lookup_ns.buckets();
            s.lookup_latency_sum_ns = ov.lookup_ns.sum_ns();
            s.vnics = ov.vnics.iter().map(|v| v.stats()).collect();
            let t = ov.table.counters();
            s.table = overlay_api::TableStats {
                entries: t.len,
                max_entries: t.max_entries,
                capacity: t.capacity,
                load: t.load(),
                resizes: t.resizes,
                entries_moved: t.entries_moved,
                resizing: t.resize_in_progress,
                rejected_full: t.rejected_full,
            };
            vec![s]
        }) {
            Ok(v) => v,
            Err(e) => return e,
        };
        let mut muxes: Vec<_> = self
            .fwd
            .muxes
            .values()
            .map(|m| m.counters.mux_stats(m.listen, m.encap.name))
            .collect();
        muxes.sort_by_key(|m| m.listen);
        let time_ns = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        Reply::Stats {
            snapshot: StatsSnapshot {
                time_ns,
                mono_ns: monotonic_ns(),
                varpd_linked: self.link.is_some(),
                overlays,
                muxes,
                started_mono_ns: self.started_mono_ns,
            },
        }
    }

    fn set_target(&mut self, name: &str, mac: overlay_api::Mac, dest: TargetDest) -> Reply {
        let oid = match self.dynamic(name) {
            Ok(o) => o,
            Err(e) => return e,
        };
        if mac.is_multicast() {
            return err(
                ErrorKind::BadRequest,
                format!("{mac} is a group address; target entries are for unicast VL2 MACs"),
            );
        }
        let ov = self.fwd.ports.get_mut(&oid).expect("dynamic() checked");
        match ov.table.set(mac, dest) {
            Err(e) => err(ErrorKind::BadRequest, e),
            Ok(released) => {
                probe::target_set(&ov.cfg.name, mac, &dest, "operator");
                if let (Some(r), Some(mux)) = (released, self.fwd.muxes.get(&ov.mux)) {
                    release(&mut self.fwd.txq, ov, mux, r);
                }
                ok()
            }
        }
    }

    /// Creates an overlay; `Ok(None)` when the reply waits for varpd.
    fn create(&mut self, conn: u64, spec: &OverlaySpec) -> Result<Option<Reply>, Reply> {
        let linked = self.link.is_some();
        let plugin = self
            .link
            .as_ref()
            .and_then(|l| l.plugins.iter().find(|p| p.name == spec.search))
            .map(|p| p.props.clone());
        if linked && plugin.is_none() {
            let have: Vec<_> = self
                .link
                .as_ref()
                .map(|l| l.plugins.iter().map(|p| p.name.clone()).collect())
                .unwrap_or_default();
            return Err(err(
                ErrorKind::Property,
                format!(
                    "unknown search plugin '{}' (varpd has: {})",
                    spec.search,
                    have.join(", ")
                ),
            ));
        }
        let oid = self
            .make_overlay(spec, plugin.as_deref())
            .map_err(|error| Reply::Error { error })?;
        // A persistent overlay of that name that could not be restored is
        // replaced by this one.
        self.unrestored.list.retain(|u| u.name != spec.name);
        if !spec.temporary {
            self.save_state();
        }
        if !linked {
            return Ok(Some(Reply::Ok { warning: Some("varpd is not running: the overlay is DEGRADED until varpd connects and configures its search plugin".into()) }));
        }
        self.send_instance(oid);
        self.parked.push(Parked {
            conn,
            oid,
            deadline: Instant::now() + CREATE_WAIT,
        });
        Ok(None)
    }

    fn delete(&mut self, name: &str) -> Reply {
        match self.lookup_name(name) {
            Err(_) if self.forget_unrestored(name) => {
                log::info!("{name}: deleted (it had not been restored)");
                ok()
            }
            Err(e) => e,
            Ok(oid) => {
                self.remove_overlay(oid);
                log::info!("{name}: deleted");
                ok()
            }
        }
    }
}

impl Daemon {
    /// `show-vnic`: one VNIC or all, by name.
    fn show_vnics(&self, name: Option<&str>) -> Reply {
        let mut rows: Vec<_> = self
            .fwd
            .ports
            .values()
            .flat_map(|ov| ov.vnics.iter().map(|v| v.row(&ov.cfg.name, ov.cfg.mtu)))
            .filter(|r| name.is_none_or(|n| r.link == n))
            .collect();
        if let (Some(n), true) = (name, rows.is_empty()) {
            return err(ErrorKind::NotFound, format!("no such VNIC: {n}"));
        }
        rows.sort_by(|a, b| a.link.cmp(&b.link));
        Reply::Vnics { rows }
    }
}

/// A show-overlay row, which names its overlay.
trait HasLink {
    fn link(&self) -> &str;
}

impl HasLink for PropRow {
    fn link(&self) -> &str {
        &self.link
    }
}

impl HasLink for StatusRow {
    fn link(&self) -> &str {
        &self.link
    }
}

#[cfg(test)]
mod tests {
    use crate::testkit::Kit;
    use overlay_api::proto::{Reply, Request};
    use overlay_api::{DropReason, Mac};
    use overlay_wire::offload::VNET_HDR_LEN;

    fn queue_one(k: &mut Kit, oid: u64) {
        let mut f = vec![0u8; 60];
        f[..6].copy_from_slice(&[2, 0, 0, 0, 0, 2]);
        f[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
        f[12..14].copy_from_slice(&[0x88, 0xb5]);
        k.d.fwd.tapbuf[VNET_HDR_LEN..VNET_HDR_LEN + 60].copy_from_slice(&f);
        k.d.fwd.tapbuf[..VNET_HDR_LEN].fill(0);
        k.d.tx_frame(oid, VNET_HDR_LEN + 60);
    }

    #[test]
    fn a_flush_drops_the_queued_frames_as_flushed() {
        let mut k = Kit::new("flush");
        let (oid, _tap) = k.overlay("ov0", 20);
        let (c, mut client) = k.client();
        queue_one(&mut k, oid);
        queue_one(&mut k, oid);
        let r = k.request(
            c,
            &mut client,
            &Request::FlushTargets { name: "ov0".into() },
        );
        assert_eq!(r, Reply::Ok { warning: None });
        assert_eq!(k.d.fwd.ports[&oid].counters.drops(DropReason::Flushed), 2);
        assert!(k.d.fwd.ports[&oid].table.is_empty());
    }

    #[test]
    fn removing_a_pending_entry_drops_its_frames_as_flushed() {
        let mut k = Kit::new("remove");
        let (oid, _tap) = k.overlay("ov0", 21);
        let (c, mut client) = k.client();
        queue_one(&mut k, oid);
        let mac = Mac([2, 0, 0, 0, 0, 2]);
        let req = Request::RemoveTarget {
            name: "ov0".into(),
            mac,
        };
        assert_eq!(k.request(c, &mut client, &req), Reply::Ok { warning: None });
        assert_eq!(k.d.fwd.ports[&oid].counters.drops(DropReason::Flushed), 1);
        match k.request(c, &mut client, &req) {
            Reply::Error { error } => assert_eq!(
                error.message,
                "overlay ov0 has no target entry for 02:00:00:00:00:02"
            ),
            r => panic!("{r:?}"),
        }
    }

    #[test]
    fn resend_frame_reports_the_verdict() {
        let mut k = Kit::new("resend");
        let (_oid, _tap) = k.overlay("ov0", 22);
        let (c, mut client) = k.client();
        let mut f = vec![0u8; 60];
        f[..6].copy_from_slice(&[2, 0, 0, 0, 0, 2]);
        f[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
        f[12..14].copy_from_slice(&[0x88, 0xb5]);
        let req = Request::ResendFrame {
            name: "ov0".into(),
            frame: f,
        };
        match k.request(c, &mut client, &req) {
            Reply::Ok { warning: Some(w) } => assert!(
                w.contains("no target entry for 02:00:00:00:00:02 yet"),
                "{w}"
            ),
            r => panic!("a frame to an unknown MAC waits for varpd: {r:?}"),
        }
    }
}
