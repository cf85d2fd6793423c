//! What a plugin instance may call back into (illumos
//! `varpd_provider_handle_t`), and the per-instance status varpd reports.
//!
//! A [`Provider`] is handed to each instance at `create`. It carries the
//! overlay's identity and the link's outbox, so that what an instance learns
//! on its own — a mapping changed, its configuration broke or recovered —
//! reaches overlayd as a [`VarpdMsg`]. The outbox belongs to one link: when
//! the link drops, every instance is dropped with it and late messages go
//! nowhere, which is right since overlayd re-sends everything on relink.

use overlay_api::proto::VarpdMsg;
use overlay_api::{DestMode, Mac, OverlayState};
pub use overlay_wire::encap::DestType;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc::UnboundedSender;

/// Where messages to overlayd go: the writer half of the current link.
pub type Outbox = UnboundedSender<VarpdMsg>;

/// Counters and health of one instance, shared by the instance's provider,
/// the query tasks and the control socket.
#[derive(Debug)]
pub struct InstanceStatus {
    /// Lookups received (unicast and proxy alike).
    pub lookups: AtomicU64,
    /// ARP requests answered by proxy.
    pub proxy_arp: AtomicU64,
    /// Neighbour solicitations answered by proxy.
    pub proxy_ndp: AtomicU64,
    /// DHCP requests resent to the client's DHCP server.
    pub proxy_dhcp: AtomicU64,
    /// Target entries the plugin invalidated in overlayd (mappings that
    /// changed, moved or expired).
    pub invalidations: AtomicU64,
    /// MAC conflicts the instance yielded (another host registered, later,
    /// a MAC a guest of this host still uses).
    pub mac_conflicts: AtomicU64,
    health: Mutex<Option<String>>,
}

impl InstanceStatus {
    fn new() -> Self {
        InstanceStatus {
            lookups: AtomicU64::new(0),
            proxy_arp: AtomicU64::new(0),
            proxy_ndp: AtomicU64::new(0),
            proxy_dhcp: AtomicU64::new(0),
            invalidations: AtomicU64::new(0),
            mac_conflicts: AtomicU64::new(0),
            health: Mutex::new(None),
        }
    }

    /// Adds one to a counter.
    pub fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Online, or degraded with the reason.
    pub fn health(&self) -> (OverlayState, Option<String>) {
        match &*self.health.lock().unwrap_or_else(|p| p.into_inner()) {
            None => (OverlayState::Online, None),
            Some(e) => (OverlayState::Degraded, Some(e.clone())),
        }
    }

    fn set_health(&self, error: Option<String>) {
        *self.health.lock().unwrap_or_else(|p| p.into_inner()) = error;
    }
}

/// A plugin instance's handle on varpd.
#[derive(Clone, Debug)]
pub struct Provider {
    oid: u64,
    overlay: Arc<str>,
    vnetid: u32,
    mode: DestMode,
    dest: DestType,
    outbox: Outbox,
    status: Arc<InstanceStatus>,
}

impl Provider {
    /// A handle for instance `oid` of overlay `overlay`, whose plugin has
    /// destination mode `mode`, sending to `outbox`.
    pub fn new(oid: u64, overlay: &str, vnetid: u32, mode: DestMode, outbox: Outbox) -> Provider {
        Provider {
            oid,
            overlay: overlay.into(),
            vnetid,
            mode,
            dest: DestType::IpPort,
            outbox,
            status: Arc::new(InstanceStatus::new()),
        }
    }

    /// The same handle for an overlay whose encapsulation's destinations
    /// are `dest` (an IP address and port unless told otherwise).
    pub fn with_dest(mut self, dest: DestType) -> Provider {
        self.dest = dest;
        self
    }

    /// What the overlay's encapsulation sends to: an IP address and a
    /// port, or an IP address only (NVGRE). Plugins ask for a port only
    /// when there is one (illumos passes `overlay_plugin_dest_t` to
    /// `create`).
    pub fn dest(&self) -> DestType {
        self.dest
    }

    /// overlayd's id of the overlay.
    pub fn oid(&self) -> u64 {
        self.oid
    }

    /// The overlay's name (for logs).
    pub fn overlay(&self) -> &str {
        &self.overlay
    }

    /// The overlay's VNI.
    pub fn vnetid(&self) -> u32 {
        self.vnetid
    }

    /// The instance's counters and health.
    pub fn status(&self) -> &Arc<InstanceStatus> {
        &self.status
    }

    /// Whether the instance last reported itself degraded.
    pub fn is_degraded(&self) -> bool {
        self.status.health().0 == OverlayState::Degraded
    }

    /// Tells overlayd to forget its target entry for `mac` (every entry
    /// when `None`) because the mapping changed.
    pub fn invalidate(&self, mac: Option<Mac>) {
        InstanceStatus::bump(&self.status.invalidations);
        self.send(VarpdMsg::Invalidate { oid: self.oid, mac });
    }

    /// Tells overlayd that its local MAC `mac` now lives elsewhere, so that
    /// it announces it again should it come back.
    pub fn forget_local_mac(&self, mac: Mac) {
        self.send(VarpdMsg::ForgetLocalMac { oid: self.oid, mac });
    }

    /// Has overlayd write `frame` into the overlay (an announcement such as
    /// a gratuitous ARP after a mapping changed).
    pub fn inject(&self, frame: Vec<u8>) {
        self.send(VarpdMsg::Inject {
            oid: self.oid,
            frame,
        });
    }

    /// Marks the instance degraded and tells overlayd why; it cannot serve.
    pub fn degraded(&self, error: String) {
        self.status.set_health(Some(error.clone()));
        self.send(VarpdMsg::InstanceFailed {
            oid: self.oid,
            error,
            serving: false,
        });
    }

    /// Marks the instance degraded but still answering from what it had
    /// (a reload failed), and tells overlayd why.
    pub fn degraded_serving(&self, error: String) {
        self.status.set_health(Some(error.clone()));
        self.send(VarpdMsg::InstanceFailed {
            oid: self.oid,
            error,
            serving: true,
        });
    }

    /// Marks the instance working and tells overlayd, with the point
    /// destination for point plugins.
    pub fn ready(&self, point: Option<SocketAddr>) {
        self.status.set_health(None);
        self.send(VarpdMsg::InstanceReady {
            oid: self.oid,
            mode: self.mode,
            point,
        });
    }

    fn send(&self, msg: VarpdMsg) {
        if self.outbox.send(msg).is_err() {
            log::debug!(
                "overlay {} (oid {}): link gone, message dropped",
                self.overlay,
                self.oid
            );
        }
    }
}
