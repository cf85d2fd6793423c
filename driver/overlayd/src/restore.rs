//! Restore and save: the event loop's side of persistence ([`crate::persist`]
//! is the file and its checks). At start every overlay of the state file is
//! set up again, re-attaching to the TAP devices and VNICs that survived;
//! one that cannot be yet stays in the file and is tried again every
//! [`RETRY`]; every change to a persistent overlay or
//! VNIC writes the file again.

use crate::daemon::Daemon;
use crate::persist::{load, set_aside, SavedOverlay, SavedVnic, RETRY, STATE_FILE};
use crate::vnic::{self, Vnic, VnicCounters};
use overlay_api::{OverlayState, PropRow, StatusRow};
use overlay_core::OverlayConfig;
use std::time::Instant;

fn where_(netns: Option<&str>) -> String {
    netns
        .map(|n| format!(" in network namespace {n}"))
        .unwrap_or_default()
}

impl Daemon {
    /// The persistent overlays, as the state file holds them, by name.
    fn saved(&self) -> Vec<SavedOverlay> {
        let mut v: Vec<SavedOverlay> = self
            .fwd
            .ports
            .values()
            .filter(|o| !o.cfg.temporary)
            .map(|o| SavedOverlay {
                name: o.cfg.name.clone(),
                encap: o.cfg.encap.clone(),
                search: o.cfg.search.clone(),
                vnetid: o.cfg.vnetid,
                props: o.cfg.props.clone(),
                vnics: o
                    .vnics
                    .iter()
                    .map(|v| SavedVnic {
                        name: v.name.clone(),
                        mac: v.mac,
                        addrtype: v.addrtype,
                        netns: v.netns.clone(),
                    })
                    .collect(),
            })
            .collect();
        v.extend(
            self.unrestored
                .list
                .iter()
                .filter(|u| !self.by_name.contains_key(&u.name))
                .cloned(),
        );
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    /// Has the state file written after a change to a persistent overlay
    /// or VNIC, by the [`Saver`](crate::persist::Saver)'s thread: the event loop does not wait
    /// for the disk, and a reply to the request that made the change waits
    /// for the write instead (`Daemon::reply`).
    pub(crate) fn save_state(&mut self) {
        let overlays = self.saved();
        self.saver.save(overlays);
    }

    /// Forgets a persistent overlay that could not be restored (for
    /// `delete-overlay`); true if there was one of that name.
    pub(crate) fn forget_unrestored(&mut self, name: &str) -> bool {
        let before = self.unrestored.list.len();
        self.unrestored.list.retain(|u| u.name != name);
        if self.unrestored.list.len() == before {
            return false;
        }
        self.save_state();
        true
    }

    /// At start: sets up every overlay of the state file again, re-attaching
    /// to TAP devices and VNICs that survived, and making anew those that
    /// did not (a reboot). A state file that cannot be used is set aside and
    /// reported; overlayd then starts with no overlays.
    pub fn restore(&mut self) {
        let path = self.state_dir.join(STATE_FILE);
        let saved = match load(&self.state_dir) {
            Ok(v) => v,
            Err(e) => {
                match set_aside(&self.state_dir) {
                    Ok(to) => log::error!(
                        "state file {}: {e}; it is kept as {} (contents intact) and overlayd starts with NO overlays: fix it and move it back before the next start, or re-create the overlays",
                        path.display(),
                        to.display()
                    ),
                    Err(e2) => log::error!(
                        "state file {}: {e}; cannot set it aside ({e2}); overlayd starts with NO overlays",
                        path.display()
                    ),
                }
                return;
            }
        };
        if saved.is_empty() {
            return;
        }
        log::info!(
            "restoring {} persistent overlay(s) from {}",
            saved.len(),
            path.display()
        );
        let mut changed = false;
        for o in saved {
            match self.restore_one(&o) {
                Ok(forgot) => changed |= forgot,
                Err(e) => {
                    log::error!(
                        "{}: cannot restore the persistent overlay: {e}; it stays in {} and is tried again every {} s",
                        o.name,
                        path.display(),
                        RETRY.as_secs()
                    );
                    self.unrestored.failed(o, e);
                }
            }
        }
        self.unrestored.next = Some(Instant::now() + RETRY);
        if changed {
            self.save_state();
        }
    }

    /// Sets up one saved overlay and its VNICs; `Ok(true)` if a VNIC could
    /// not be recreated and was forgotten.
    fn restore_one(&mut self, o: &SavedOverlay) -> Result<bool, String> {
        let oid = self.make_overlay(&o.spec(), None).map_err(|e| e.message)?;
        let mut forgot = false;
        for v in &o.vnics {
            forgot |= !self.restore_vnic(oid, v);
        }
        Ok(forgot)
    }

    /// Re-adopts VNIC `v` of overlay `oid` if it still exists (name and MAC
    /// in its namespace), else creates it again; false if that failed (its
    /// namespace is gone, say), and then it is forgotten.
    fn restore_vnic(&mut self, oid: u64, v: &SavedVnic) -> bool {
        let ov = self.fwd.ports.get_mut(&oid).expect("just made");
        let (over, mtu, ns) = (ov.cfg.name.clone(), ov.cfg.mtu, v.netns.as_deref());
        match vnic::exists(&v.name, v.mac, ns) {
            Ok(true) => log::info!(
                "{over}: VNIC {} ({}) re-adopted{}",
                v.name,
                v.mac,
                where_(ns)
            ),
            other => {
                if let Err(e) = other {
                    log::warn!("{over}: cannot look for VNIC {}{}: {e}", v.name, where_(ns));
                }
                if let Err(e) = vnic::create(&v.name, &over, v.mac, mtu, ns) {
                    log::error!(
                        "{over}: cannot recreate VNIC {} ({}){}: {e}; it is forgotten (create it again with create-vnic)",
                        v.name,
                        v.mac,
                        where_(ns)
                    );
                    return false;
                }
                log::info!(
                    "{over}: VNIC {} ({}) recreated{}",
                    v.name,
                    v.mac,
                    where_(ns)
                );
            }
        }
        ov.vnics.push(Vnic {
            name: v.name.clone(),
            mac: v.mac,
            addrtype: v.addrtype,
            netns: v.netns.clone(),
            counters: VnicCounters::default(),
        });
        self.sync_workers(oid);
        true
    }

    /// `show-overlay -f` rows of the persistent overlays that could not be
    /// restored (`name`'s only, if given): DEGRADED, with why and when it
    /// is tried again. They have no TAP device yet, so they forward nothing.
    pub(crate) fn unrestored_status(&self, name: Option<&str>) -> Vec<StatusRow> {
        self.unrestored
            .sorted()
            .into_iter()
            .filter(|o| name.is_none_or(|n| o.name == n))
            .map(|o| StatusRow {
                link: o.name.clone(),
                status: OverlayState::Degraded,
                details: Some(format!(
                    "not restored from the state file: {}; tried again every {} s",
                    self.unrestored.get(&o.name).map_or("", |(_, why)| why),
                    RETRY.as_secs()
                )),
            })
            .collect()
    }

    /// `show-overlay` property rows of the persistent overlays that could
    /// not be restored (`name`'s only, if given), as saved; `varpd/id` is
    /// unset, for no varpd instance exists.
    pub(crate) fn unrestored_props(&self, name: Option<&str>) -> Vec<PropRow> {
        self.unrestored
            .sorted()
            .into_iter()
            .filter(|o| name.is_none_or(|n| o.name == n))
            .flat_map(|o| {
                let spec = o.spec();
                let plugin = self
                    .plugins
                    .iter()
                    .find(|p| p.name == o.search)
                    .map(|p| p.props.as_slice());
                let cfg = OverlayConfig::from_spec(&spec, plugin)
                    .or_else(|_| OverlayConfig::from_spec(&spec, None));
                let mut rows = match cfg {
                    Ok(c) => c.prop_rows(0, plugin),
                    Err(_) => Vec::new(),
                };
                for r in rows.iter_mut().filter(|r| r.property == "varpd/id") {
                    r.value = None;
                }
                rows
            })
            .collect()
    }

    /// Tries the overlays that could not be restored again, every [`RETRY`].
    pub(crate) fn retry_restore(&mut self, now: Instant) {
        if self.unrestored.list.is_empty() || self.unrestored.next.is_some_and(|t| t > now) {
            return;
        }
        self.unrestored.next = Some(now + RETRY);
        let mut changed = false;
        for o in std::mem::take(&mut self.unrestored.list) {
            if self.by_name.contains_key(&o.name) {
                continue; // re-created by hand meanwhile
            }
            match self.restore_one(&o) {
                Ok(forgot) => {
                    log::info!("{}: persistent overlay restored", o.name);
                    self.unrestored.why.remove(&o.name);
                    changed |= forgot;
                    if let Some(oid) = self.by_name.get(&o.name).copied() {
                        self.send_instance(oid);
                    }
                }
                Err(e) => {
                    log::debug!("{}: still cannot restore: {e}", o.name);
                    self.unrestored.failed(o, e);
                }
            }
        }
        if changed {
            self.save_state();
        }
    }
}
