//! One overlay as overlayd holds it: configuration, TAP device, destination
//! mode, target table, counters and health.

use crate::local::LocalMacs;
use crate::port::Port;
use crate::tap::Tap;
use crate::vnic::{self, Vnic, VnicCounters};
use overlay_api::{DestMode, Mac, OverlayState};
use overlay_core::decide::{self, Entry, RxFacts, RxPort, RxVerdict};
use overlay_core::stats::{Histogram, Peers};
use overlay_core::{Counters, OverlayConfig, TargetTable};
use overlay_probes::overlay as probe;
use std::net::SocketAddr;
use std::time::Instant;

/// An overlay.
#[derive(Debug)]
pub struct Overlay {
    /// overlayd's id (illumos' varpd instance id).
    pub oid: u64,
    /// Validated configuration.
    pub cfg: OverlayConfig,
    /// Its TAP device.
    pub tap: Tap,
    /// The mux it listens on.
    pub mux: u64,
    /// Destination mode, once varpd has configured the plugin instance.
    pub mode: Option<DestMode>,
    /// Point-mode destination.
    pub point: Option<SocketAddr>,
    /// varpd has confirmed the plugin instance on the current link, so
    /// lookups may be asked (asking before would get "no instance").
    pub configured: bool,
    /// Why varpd could not configure the instance, if it could not.
    pub instance_error: Option<String>,
    /// Target table (dynamic mode).
    pub table: TargetTable,
    /// Counters.
    pub counters: Counters,
    /// Broadcast/multicast frames handed to varpd and not yet answered.
    pub bcast_inflight: u32,
    /// Counters per underlay peer.
    pub peers: Peers,
    /// Lookup latency.
    pub lookup_ns: Histogram,
    /// The health last reported (by the degrade/restore probes).
    pub reported: (OverlayState, Option<String>),
    /// CLOCK_MONOTONIC nanoseconds when it was created (its counters start
    /// there; `OverlayStats::created_mono_ns`).
    pub created_mono_ns: u64,
    /// VNICs over its TAP device, with their counters.
    pub vnics: Vec<Vnic>,
    /// The VL2 MACs its TAP device sends from (its own guests).
    pub local: LocalMacs,
}

impl Overlay {
    /// A new overlay `oid` on mux `mid`, not yet configured by varpd,
    /// created at `created_mono_ns`.
    pub fn new(
        oid: u64,
        cfg: OverlayConfig,
        tap: Tap,
        mid: u64,
        table: TargetTable,
        created_mono_ns: u64,
    ) -> Overlay {
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
            reported: (OverlayState::Online, None),
            created_mono_ns,
            vnics: Vec::new(),
            local: Default::default(),
        }
    }
}

/// Fires the `table-resize-*` probes for one overlay's target table.
#[derive(Debug)]
pub struct ResizeProbe {
    overlay: String,
}

impl ResizeProbe {
    /// An observer for the table of `overlay`.
    pub fn new(overlay: &str) -> Self {
        ResizeProbe {
            overlay: overlay.to_string(),
        }
    }
}

impl overlay_core::target::ResizeObserver for ResizeProbe {
    fn on_resize_start(&self, old_cap: usize, new_cap: usize) {
        log::debug!(
            "{}: target table resizing {old_cap} -> {new_cap} buckets",
            self.overlay
        );
        probe::table_resize_start(&self.overlay, old_cap as u64, new_cap as u64);
    }

    fn on_resize_step(&self, moved: u64, total: u64) {
        probe::table_resize_step(&self.overlay, moved, total);
    }

    fn on_resize_done(&self, old_cap: usize, new_cap: usize, moved: u64, ns: u64) {
        log::debug!("{}: target table resized {old_cap} -> {new_cap} buckets, {moved} entries moved in {ns} ns", self.overlay);
        probe::table_resize_done(&self.overlay, old_cap as u64, new_cap as u64, moved, ns);
    }
}

impl Port for Overlay {
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

    #[inline]
    fn entry(&self, dst: Mac, now: Instant) -> Entry {
        self.table.entry(dst, now)
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
        &mut self.counters
    }

    #[inline]
    fn peers(&mut self) -> &mut Peers {
        &mut self.peers
    }

    #[inline]
    fn vnic(&mut self, mac: Mac) -> Option<&mut VnicCounters> {
        vnic::counters_of(&mut self.vnics, mac)
    }

    /// With `target/check_source`, in point mode the sender must be the
    /// destination; in dynamic mode the target table must map the source
    /// there ([`TargetTable::check_source`], which makes an unknown source
    /// pending: it goes to `asks`, once).
    fn rx_verdict(&mut self, f: &RxFacts, asks: &mut Vec<(u64, Mac)>) -> RxVerdict {
        let port = RxPort {
            check_source: self.cfg.check_source,
            mode: self.mode,
            point: self.point,
        };
        let table = &mut self.table;
        let v = decide::decide_rx(&port, f, |src, from| {
            table.check_source(src, from, Instant::now())
        });
        if v == RxVerdict::AskSource {
            asks.push((self.oid, f.src));
        }
        v
    }
}

impl Overlay {
    /// Fires `overlay:degrade` / `overlay:restore` if health changed since
    /// it was last reported.
    pub fn report(&mut self, linked: bool) {
        let now = self.status(linked);
        if now == self.reported {
            return;
        }
        match &now {
            (OverlayState::Degraded, reason) => {
                let r = reason.as_deref().unwrap_or("");
                log::warn!("{}: DEGRADED: {r}", self.cfg.name);
                probe::degrade(&self.cfg.name, r);
            }
            (OverlayState::Online, _) => {
                log::info!("{}: ONLINE", self.cfg.name);
                probe::restore(&self.cfg.name);
            }
        }
        self.reported = now;
    }

    /// Health and its reason, given whether varpd is linked.
    pub fn status(&self, linked: bool) -> (OverlayState, Option<String>) {
        if let Some(e) = &self.instance_error {
            return (
                OverlayState::Degraded,
                Some(format!("search plugin {}: {e}", self.cfg.search)),
            );
        }
        let reason = match (self.mode, linked) {
            (None, false) => "varpd is not running: the search plugin is not configured yet",
            (None, true) => "waiting for varpd to configure the search plugin",
            (Some(DestMode::Dynamic), false) => {
                "varpd is not connected: known destinations keep forwarding, lookups wait"
            }
            (Some(DestMode::Point), _) if self.point.is_none() => {
                "the search plugin gave no destination"
            }
            _ => return (OverlayState::Online, None),
        };
        (OverlayState::Degraded, Some(reason.to_string()))
    }
}
