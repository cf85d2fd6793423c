//! One overlay as overlayd holds it: configuration, TAP device, destination
//! mode, target table, counters and health.

use crate::tap::Tap;
use overlay_api::{DestMode, OverlayState};
use overlay_core::{Counters, OverlayConfig, TargetTable};
use std::net::SocketAddr;

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
}

impl Overlay {
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
