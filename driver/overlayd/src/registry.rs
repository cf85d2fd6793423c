//! The registry: the life of overlays, their muxes and VNICs — created
//! (the mux joined or opened, the TAP device made or re-attached, the
//! workers given their queues and sockets), undone on a failure half-way,
//! deleted, and the workers and the state file told of every change.
//! Requests reach it from [`crate::control`] (which parses them and formats
//! the replies), start-up from [`crate::restore`], and varpd's verdict on a
//! new instance from [`crate::link`].

use crate::chores::VnicOp;
use crate::daemon::{monotonic_ns, Daemon};
use crate::datapath::{token, KIND_MUX, KIND_TAP};
use crate::mux::Mux;
use crate::overlay::{Overlay, ResizeProbe};
use crate::tap::Tap;
use crate::vnic::{self, Vnic, VnicCounters};
use mio::unix::SourceFd;
use mio::Interest;
use overlay_api::proto::Reply;
use overlay_api::{ApiError, ErrorKind, MacAddrType, OverlaySpec, VnicRow, VnicSpec};
use overlay_core::{OverlayConfig, TargetTable};
use std::os::fd::AsRawFd;

fn fail(kind: ErrorKind, msg: impl Into<String>) -> ApiError {
    ApiError::new(kind, msg)
}

fn err<T>(kind: ErrorKind, msg: impl Into<String>) -> Result<T, ApiError> {
    Err(fail(kind, msg))
}

impl Daemon {
    /// Validates `spec` (against the plugin's properties when known), joins
    /// or opens its mux and creates (or re-attaches to) its TAP device: an
    /// overlay, not yet known to varpd. Used by `create-overlay` and by the
    /// restore of persistent overlays at start.
    pub(crate) fn make_overlay(
        &mut self,
        spec: &OverlaySpec,
        plugin: Option<&[overlay_api::PropSpec]>,
    ) -> Result<u64, ApiError> {
        let cfg = OverlayConfig::from_spec(spec, plugin)
            .map_err(|e| fail(ErrorKind::Property, e.to_string()))?;
        if self.by_name.contains_key(&cfg.name) {
            return Err(fail(
                ErrorKind::Exists,
                format!("overlay {} already exists", cfg.name),
            ));
        }
        let table = TargetTable::with(
            cfg.max_entries,
            std::sync::Arc::new(ResizeProbe::new(&cfg.name)),
        )
        .map_err(|e| {
            fail(
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
                        fail(
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
                    .map_err(|e| fail(ErrorKind::System, e.to_string()))?;
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
            return Err(fail(ErrorKind::Exists, e.to_string()));
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
                    return Err(fail(
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
                return Err(fail(
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
            return Err(fail(
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
        self.fwd
            .ports
            .insert(oid, Overlay::new(oid, cfg, tap, mid, table, monotonic_ns()));
        self.report_all();
        Ok(oid)
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
            let (n, mac, ns) = (v.name.clone(), v.mac, v.netns.clone());
            let seq = self
                .chores
                .run(Box::new(move || vnic::delete(&n, mac, ns.as_deref())));
            let op = VnicOp::WithOverlay {
                over: ov.cfg.name.clone(),
                name: v.name.clone(),
            };
            self.vnic_ops.insert(seq, op);
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

    /// Tells the workers overlay `oid`'s destination and VNICs.
    pub(crate) fn sync_workers(&self, oid: u64) {
        let (Some(w), Some(ov)) = (&self.workers, self.fwd.ports.get(&oid)) else {
            return;
        };
        w.each(|_| {
            Some(crate::worker::Command::Update {
                oid,
                mode: ov.mode,
                point: ov.point,
                vnics: ov.vnics.iter().map(|v| v.mac).collect(),
            })
        });
    }

    /// The overlay holding VNIC `name`, and the VNIC's place in it.
    pub(crate) fn find_vnic(&self, name: &str) -> Option<(u64, usize)> {
        self.fwd.ports.iter().find_map(|(oid, ov)| {
            ov.vnics
                .iter()
                .position(|v| v.name == name)
                .map(|i| (*oid, i))
        })
    }

    /// `create-vnic` from client `conn`: checks the request and has the
    /// macvlan made by the chore thread; [`Daemon::vnic_done`] answers
    /// with the new VNIC's row (or the error) once it is.
    pub(crate) fn create_vnic(&mut self, conn: u64, spec: &VnicSpec) -> Result<(), ApiError> {
        let name = spec.name.as_str();
        if let Err(m) = vnic::check_name(name) {
            return err(ErrorKind::BadRequest, m);
        }
        let oid = match self.by_name.get(&spec.over).copied() {
            Some(o) => o,
            None => {
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
        let v = Vnic {
            name: name.to_string(),
            mac,
            addrtype,
            netns: spec.netns.clone(),
            counters: VnicCounters::default(),
        };
        let (n, lower, ns) = (v.name.clone(), over.clone(), v.netns.clone());
        let seq = self.chores.run(Box::new(move || {
            vnic::create(&n, &lower, mac, mtu, ns.as_deref()).map(|()| true)
        }));
        self.vnic_ops.insert(
            seq,
            VnicOp::Create {
                conn,
                oid,
                vnic: v,
                over,
                mtu,
            },
        );
        Ok(())
    }

    /// `delete-vnic` from client `conn`: has the macvlan removed (from its
    /// guest namespace) by the chore thread; [`Daemon::vnic_done`] forgets
    /// the VNIC and its counters, and answers, once it is.
    pub(crate) fn delete_vnic(&mut self, conn: u64, name: &str) -> Result<(), ApiError> {
        let Some((oid, i)) = self.find_vnic(name) else {
            return err(ErrorKind::NotFound, format!("no such VNIC: {name}"));
        };
        let v = &self.fwd.ports[&oid].vnics[i];
        let (n, mac, ns) = (v.name.clone(), v.mac, v.netns.clone());
        let seq = self
            .chores
            .run(Box::new(move || vnic::delete(&n, mac, ns.as_deref())));
        self.vnic_ops.insert(
            seq,
            VnicOp::Delete {
                conn,
                oid,
                name: name.to_string(),
            },
        );
        Ok(())
    }

    /// Finishes the VNIC requests whose chores are done: answers each, and
    /// records what changed (the overlay's VNICs, the workers, the state
    /// file).
    pub(crate) fn vnic_done(&mut self) {
        for (seq, outcome) in self.chores.finished() {
            let Some(op) = self.vnic_ops.remove(&seq) else {
                continue;
            };
            self.unblocked |= op.conn().is_some();
            match op {
                VnicOp::Create {
                    conn,
                    oid,
                    vnic: v,
                    over,
                    mtu,
                } => {
                    let reply = match self.vnic_created(oid, v, &over, mtu, outcome) {
                        Ok(row) => Reply::Vnics { rows: vec![row] },
                        Err(error) => Reply::Error { error },
                    };
                    self.reply(conn, &reply);
                }
                VnicOp::Delete { conn, oid, name } => {
                    let reply = match self.vnic_deleted(oid, &name, outcome) {
                        Ok(()) => Reply::Ok { warning: None },
                        Err(error) => Reply::Error { error },
                    };
                    self.reply(conn, &reply);
                }
                VnicOp::WithOverlay { over, name } => match outcome {
                    Ok(_) => log::info!("{over}: VNIC {name} deleted with it"),
                    Err(e) => log::warn!("{over}: cannot delete VNIC {name}: {e}"),
                },
            }
        }
    }

    fn vnic_created(
        &mut self,
        oid: u64,
        v: Vnic,
        over: &str,
        mtu: u32,
        outcome: std::io::Result<bool>,
    ) -> Result<VnicRow, ApiError> {
        let (name, mac) = (v.name.as_str(), v.mac);
        let where_ = v
            .netns
            .as_deref()
            .map(|n| format!(" in network namespace {n}"))
            .unwrap_or_default();
        if let Err(e) = outcome {
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
        let Some(ov) = self.fwd.ports.get_mut(&oid) else {
            return err(
                ErrorKind::NotFound,
                format!("overlay {over} was deleted while VNIC {name} was being made (the VNIC went with it)"),
            );
        };
        log::info!(
            "{over}: VNIC {name} created ({mac}, {}{where_})",
            v.addrtype
        );
        let row = v.row(over, mtu);
        ov.vnics.push(v);
        let keep = !ov.cfg.temporary;
        self.sync_workers(oid);
        if keep {
            self.save_state();
        }
        Ok(row)
    }

    fn vnic_deleted(
        &mut self,
        oid: u64,
        name: &str,
        outcome: std::io::Result<bool>,
    ) -> Result<(), ApiError> {
        let Some(ov) = self.fwd.ports.get_mut(&oid) else {
            return Ok(()); // its overlay went, and the VNIC with it
        };
        let Some(i) = ov.vnics.iter().position(|v| v.name == name) else {
            return Ok(()); // deleted meanwhile
        };
        match outcome {
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
                        ov.vnics[i]
                            .netns
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
        Ok(())
    }
}
