//! The control socket's requests: the `dladm` overlay subcommands as
//! `ovadm` sends them, and the statistics snapshot.
//!
//! A malformed request gets an error reply naming what was wrong; nothing a
//! client sends can stop the daemon. `create-overlay` validates properties
//! (naming the property and its range), joins or opens the mux, creates the
//! TAP device, then asks varpd to configure the search plugin and answers
//! once varpd has (or has refused, in which case the overlay is undone).
//! The vnic requests (`create-vnic`, `delete-vnic`, `show-vnic`) check
//! names, MACs and namespaces here and leave the netlink work to
//! [`crate::vnic`].

use crate::daemon::{monotonic_ns, Daemon, Parked, CREATE_WAIT};
use crate::datapath::{token, KIND_MUX, KIND_TAP};
use crate::link::release;
use crate::mux::Mux;
use crate::overlay::{Overlay, ResizeProbe};
use crate::port::Port;
use crate::tap::Tap;
use crate::vnic::{self, Vnic, VnicCounters};
use mio::unix::SourceFd;
use mio::Interest;
use overlay_api::proto::{Reply, Request};
use overlay_api::{
    ApiError, DestMode, DropReason, ErrorKind, MacAddrType, OverlaySpec, PropRow, StatsSnapshot,
    StatusRow, TargetCursor, TargetDest, TargetRow, VnicSpec,
};
use overlay_core::{Counters, OverlayConfig, TargetTable};
use overlay_probes::overlay as probe;
use std::os::fd::AsRawFd;
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
    pub(crate) fn reply(&mut self, conn: u64, r: &Reply) {
        if let Some(c) = self.conns.get_mut(&conn) {
            c.send(r);
        }
    }

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
            Request::CreateVnic { spec } => self.create_vnic(&spec),
            Request::DeleteVnic { name } => self.delete_vnic(&name),
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
        let oid = self.make_overlay(spec, plugin.as_deref())?;
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

    /// Validates `spec` (against the plugin's properties when known), joins
    /// or opens its mux and creates (or re-attaches to) its TAP device: an
    /// overlay, not yet known to varpd. Used by `create-overlay` and by the
    /// restore of persistent overlays at start.
    pub(crate) fn make_overlay(
        &mut self,
        spec: &OverlaySpec,
        plugin: Option<&[overlay_api::PropSpec]>,
    ) -> Result<u64, Reply> {
        let cfg = OverlayConfig::from_spec(spec, plugin)
            .map_err(|e| err(ErrorKind::Property, e.to_string()))?;
        if self.by_name.contains_key(&cfg.name) {
            return Err(err(
                ErrorKind::Exists,
                format!("overlay {} already exists", cfg.name),
            ));
        }
        let table = TargetTable::with(
            cfg.max_entries,
            std::sync::Arc::new(ResizeProbe::new(&cfg.name)),
        )
        .map_err(|e| {
            err(
                ErrorKind::System,
                format!("cannot make the target table of {}: {e}", cfg.name),
            )
        })?;
        let oid = self.next_id();
        // The mux: join the one on this address, or open it.
        let key = (cfg.module.name, cfg.listen);
        let (mid, new_mux) = match self.mux_by_addr.get(&key) {
            Some(m) => (*m, None),
            None => {
                let mut m =
                    Mux::bind(cfg.module, cfg.listen, self.workers.is_some()).map_err(|e| {
                        err(
                            ErrorKind::System,
                            format!(
                                "cannot listen on {} ({}): {e}",
                                cfg.listen,
                                cfg.module
                                    .props
                                    .iter()
                                    .map(|p| p.name)
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            ),
                        )
                    })?;
                let mid = self.next_id();
                self.poll
                    .registry()
                    .register(&mut m.sock, token(KIND_MUX, mid), Interest::READABLE)
                    .map_err(|e| err(ErrorKind::System, e.to_string()))?;
                (mid, Some(m))
            }
        };
        let joined = match &new_mux {
            Some(_) => Ok(()),
            None => self
                .fwd
                .muxes
                .get_mut(&mid)
                .expect("mux_by_addr is in sync")
                .table
                .join(cfg.listen, cfg.vnetid, oid, &cfg.name),
        };
        // Only an existing mux can refuse the VNI, and then nothing was taken.
        if let Err(e) = joined {
            return Err(err(ErrorKind::Exists, e.to_string()));
        }
        // Undoes the mux side of a create that fails from here on: closes a
        // mux opened for this overlay, or gives the VNI back to a shared one.
        let vni = cfg.vnetid;
        let undo = |d: &mut Daemon, new_mux: Option<Mux>| match new_mux {
            Some(mut m) => {
                let _ = d.poll.registry().deregister(&mut m.sock);
            }
            None => d
                .fwd
                .muxes
                .get_mut(&mid)
                .expect("mux_by_addr is in sync")
                .table
                .leave(vni),
        };
        // The workers' copies of a new mux, made before anything is kept.
        let worker_muxes = match (&new_mux, &self.workers) {
            (Some(m), Some(w)) => match (0..w.len()).map(|_| m.for_worker()).collect() {
                Ok(v) => v,
                Err(e) => {
                    undo(self, new_mux);
                    return Err(err(
                        ErrorKind::System,
                        format!(
                            "cannot share {} with the forwarding threads: {e}",
                            cfg.listen
                        ),
                    ));
                }
            },
            _ => Vec::new(),
        };
        let queues = self.workers.as_ref().map_or(1, |w| w.len() + 1);
        let (tap, mut more) = match Tap::create(&cfg.name, cfg.mtu, !cfg.temporary, queues) {
            Ok(t) => t,
            Err(e) => {
                undo(self, new_mux);
                return Err(err(
                    ErrorKind::System,
                    format!("cannot create TAP device {}: {e}", cfg.name),
                ));
            }
        };
        if let Err(e) = self.poll.registry().register(
            &mut SourceFd(&tap.as_raw_fd()),
            token(KIND_TAP, oid),
            Interest::READABLE,
        ) {
            undo(self, new_mux);
            if !tap.adopted {
                let _ = tap.set_persist(false); // it goes with the descriptor
            }
            return Err(err(
                ErrorKind::System,
                format!("cannot watch TAP device {}: {e}", cfg.name),
            ));
        }
        if let Some(mut m) = new_mux {
            m.table
                .join(cfg.listen, cfg.vnetid, oid, &cfg.name)
                .expect("a new mux has no VNI yet");
            self.mux_by_addr.insert(key, mid);
            self.fwd.muxes.insert(mid, m);
        }
        if let Some(w) = &self.workers {
            let mut worker_muxes = worker_muxes.into_iter();
            let handle = table.handle();
            // A device adopted with one queue: the workers write through
            // duplicates of ours and read nothing.
            more.reverse();
            w.each(|_| {
                worker_muxes
                    .next()
                    .map(|(mux, receives)| crate::worker::Command::Mux {
                        mid,
                        mux: Box::new(mux),
                        receives,
                    })
            });
            w.each(|k| {
                let (tap, reads) = match more.pop() {
                    Some(q) => (q, true),
                    None => match tap.try_clone() {
                        Ok(d) => (d, false),
                        Err(e) => {
                            log::warn!(
                                "{}: worker-{} cannot write to the TAP device: {e}",
                                cfg.name,
                                k + 1
                            );
                            return None;
                        }
                    },
                };
                Some(crate::worker::Command::Port {
                    cfg: cfg.clone(),
                    oid,
                    mux: mid,
                    tap,
                    reads,
                    table: handle.clone(),
                })
            });
        }
        log::info!(
            "{}: {} (vnetid {}, {} on {}, search {}{})",
            cfg.name,
            if tap.adopted {
                "re-attached to its TAP device"
            } else {
                "created"
            },
            cfg.vnetid,
            cfg.encap,
            cfg.listen,
            cfg.search,
            if cfg.temporary { ", temporary" } else { "" }
        );
        self.by_name.insert(cfg.name.clone(), oid);
        self.fwd.ports.insert(
            oid,
            Overlay {
                oid,
                cfg,
                tap,
                mux: mid,
                mode: None,
                point: None,
                configured: false,
                instance_error: None,
                table,
                counters: Counters::default(),
                bcast_inflight: 0,
                peers: Default::default(),
                lookup_ns: Default::default(),
                reported: (overlay_api::OverlayState::Online, None),
                created_mono_ns: monotonic_ns(),
                vnics: Vec::new(),
                local: Default::default(),
            },
        );
        self.report_all();
        Ok(oid)
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

    /// Tears an overlay down: VNICs, TAP device, mux membership, varpd
    /// instance.
    pub(crate) fn remove_overlay(&mut self, oid: u64) {
        let Some(ov) = self.fwd.ports.remove(&oid) else {
            return;
        };
        // The workers close their queues of its TAP device first.
        if let Some(w) = &self.workers {
            w.each(|_| Some(crate::worker::Command::Unport { oid }));
        }
        // The kernel would remove them with the TAP device anyway; deleting
        // them first says so in the log and leaves nothing to chance.
        for v in &ov.vnics {
            match vnic::delete(&v.name, v.mac, v.netns.as_deref()) {
                Ok(_) => log::info!("{}: VNIC {} deleted with it", ov.cfg.name, v.name),
                Err(e) => log::warn!("{}: cannot delete VNIC {}: {e}", ov.cfg.name, v.name),
            }
        }
        self.by_name.remove(&ov.cfg.name);
        let _ = self
            .poll
            .registry()
            .deregister(&mut SourceFd(&ov.tap.as_raw_fd()));
        if let Some(m) = self.fwd.muxes.get_mut(&ov.mux) {
            m.table.leave(ov.cfg.vnetid);
            if m.table.is_empty() {
                let mut m = self.fwd.muxes.remove(&ov.mux).expect("just looked up");
                self.mux_by_addr.remove(&m.key());
                if let Some(w) = &self.workers {
                    w.each(|_| Some(crate::worker::Command::Unmux { mid: ov.mux }));
                }
                let _ = self.poll.registry().deregister(&mut m.sock);
            }
        }
        self.lookups.forget_overlay(oid);
        if let Some(link) = self.link.as_mut() {
            link.conn
                .send(&overlay_api::proto::DriverMsg::InstanceDelete { oid });
        }
        // Dropping `ov` closes the TAP descriptor, which removes the device
        // once it is no longer persistent.
        if let Err(e) = ov.tap.set_persist(false) {
            log::warn!(
                "{}: cannot clear TUNSETPERSIST ({e}); the device may stay: `ip link del {}`",
                ov.cfg.name,
                ov.cfg.name
            );
        }
        if !ov.cfg.temporary {
            drop(ov);
            self.save_state();
        }
    }
}

impl Daemon {
    /// The overlay holding VNIC `name`, and the VNIC's place in it.
    fn find_vnic(&self, name: &str) -> Option<(u64, usize)> {
        self.fwd.ports.iter().find_map(|(oid, ov)| {
            ov.vnics
                .iter()
                .position(|v| v.name == name)
                .map(|i| (*oid, i))
        })
    }

    /// `create-vnic`: checks the request, makes the macvlan, and answers
    /// with the new VNIC's row.
    fn create_vnic(&mut self, spec: &VnicSpec) -> Reply {
        let name = spec.name.as_str();
        if let Err(m) = vnic::check_name(name) {
            return err(ErrorKind::BadRequest, m);
        }
        let oid = match self.lookup_name(&spec.over) {
            Ok(o) => o,
            Err(_) => {
                return err(
                    ErrorKind::NotFound,
                    format!("cannot create VNIC {name}: no such overlay: {}", spec.over),
                )
            }
        };
        if let Some((o, _)) = self.find_vnic(name) {
            return err(
                ErrorKind::Exists,
                format!(
                    "VNIC {name} already exists (over {})",
                    self.fwd.ports[&o].cfg.name
                ),
            );
        }
        if self.by_name.contains_key(name) {
            return err(
                ErrorKind::Exists,
                format!("cannot create VNIC {name}: an overlay has that name"),
            );
        }
        if let Some(ns) = &spec.netns {
            if let Err(m) = vnic::netns_path(ns) {
                return err(
                    ErrorKind::NotFound,
                    format!("cannot create VNIC {name}: {m}"),
                );
            }
        }
        let ov = &self.fwd.ports[&oid];
        let (mac, addrtype) = match spec.mac {
            Some(m) if !m.is_unicast() => {
                return err(
                    ErrorKind::BadRequest,
                    format!("cannot create VNIC {name}: {m} is a group (multicast) address; a VNIC needs a unicast MAC"),
                )
            }
            Some(m) if m.0 == [0; 6] => {
                return err(
                    ErrorKind::BadRequest,
                    format!("cannot create VNIC {name}: {m} is not a usable MAC"),
                )
            }
            Some(m) => (m, MacAddrType::Fixed),
            None => {
                // Draw until the MAC is free on this overlay (a clash is
                // astronomically unlikely, but cheap to rule out).
                let mut tries = 0;
                loop {
                    let m = match vnic::random_mac() {
                        Ok(m) => m,
                        Err(e) => {
                            return err(ErrorKind::System, format!("cannot draw a random MAC: {e}"))
                        }
                    };
                    tries += 1;
                    if !ov.vnics.iter().any(|v| v.mac == m) || tries > 8 {
                        break (m, MacAddrType::Random);
                    }
                }
            }
        };
        if let Some(v) = ov.vnics.iter().find(|v| v.mac == mac) {
            return err(
                ErrorKind::Exists,
                format!(
                    "cannot create VNIC {name}: MAC {mac} is already used by VNIC {} on overlay {}",
                    v.name, ov.cfg.name
                ),
            );
        }
        if let Ok(Some(own)) = vnic::link_mac(&ov.cfg.name) {
            if own == mac {
                return err(
                    ErrorKind::Exists,
                    format!(
                        "cannot create VNIC {name}: MAC {mac} is the address of overlay {} itself",
                        ov.cfg.name
                    ),
                );
            }
        }
        let (over, mtu) = (ov.cfg.name.clone(), ov.cfg.mtu);
        if let Err(e) = vnic::create(name, &over, mac, mtu, spec.netns.as_deref()) {
            let where_ = spec
                .netns
                .as_deref()
                .map(|n| format!(" in network namespace {n}"))
                .unwrap_or_default();
            let why = match e.raw_os_error() {
                Some(libc::EEXIST) => {
                    format!("a network device named {name} already exists{where_}")
                }
                Some(libc::EADDRINUSE) => format!("MAC {mac} is already in use over {over}"),
                _ => e.to_string(),
            };
            return err(
                ErrorKind::System,
                format!("cannot create VNIC {name} over {over}{where_}: {why}"),
            );
        }
        let v = Vnic {
            name: name.to_string(),
            mac,
            addrtype,
            netns: spec.netns.clone(),
            counters: VnicCounters::default(),
        };
        log::info!(
            "{over}: VNIC {name} created ({mac}, {addrtype}{})",
            v.netns
                .as_deref()
                .map(|n| format!(", in network namespace {n}"))
                .unwrap_or_default()
        );
        let row = v.row(&over, mtu);
        let ov = self.fwd.ports.get_mut(&oid).expect("looked up above");
        ov.vnics.push(v);
        let keep = !ov.cfg.temporary;
        self.sync_workers(oid);
        if keep {
            self.save_state();
        }
        Reply::Vnics { rows: vec![row] }
    }

    /// `delete-vnic`: removes the macvlan (from its guest namespace) and
    /// forgets the VNIC and its counters.
    fn delete_vnic(&mut self, name: &str) -> Reply {
        let Some((oid, i)) = self.find_vnic(name) else {
            return err(ErrorKind::NotFound, format!("no such VNIC: {name}"));
        };
        let ov = self.fwd.ports.get_mut(&oid).expect("find_vnic found it");
        let v = &ov.vnics[i];
        match vnic::delete(&v.name, v.mac, v.netns.as_deref()) {
            Ok(true) => log::info!("{}: VNIC {name} deleted", ov.cfg.name),
            Ok(false) => log::info!(
                "{}: VNIC {name} was already gone (its namespace was deleted?); forgotten",
                ov.cfg.name
            ),
            Err(e) => {
                return err(
                    ErrorKind::System,
                    format!(
                        "cannot delete VNIC {name}{}: {e}",
                        v.netns
                            .as_deref()
                            .map(|n| format!(" in network namespace {n}"))
                            .unwrap_or_default()
                    ),
                )
            }
        }
        ov.vnics.remove(i);
        let keep = !ov.cfg.temporary;
        self.sync_workers(oid);
        if keep {
            self.save_state();
        }
        ok()
    }

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
