//! Reading statistics snapshots: one overlay's counters, drops by reason.

use overlay_api::{DropReason, OverlayStats, StatsSnapshot};

/// The counters of overlay `name`; panics, showing the snapshot, if absent.
pub fn overlay<'a>(s: &'a StatsSnapshot, name: &str) -> &'a OverlayStats {
    s.overlays
        .iter()
        .find(|o| o.name == name)
        .unwrap_or_else(|| panic!("no overlay '{name}' in the snapshot:\n{s:#?}"))
}

/// Drops for `reason` counted by the overlay `name` (0 if never).
pub fn overlay_drops(s: &StatsSnapshot, name: &str, reason: DropReason) -> u64 {
    overlay(s, name)
        .drops
        .get(reason.as_str())
        .copied()
        .unwrap_or(0)
}

/// Drops for `reason` counted by every mux together: what was dropped
/// before any overlay could be named (short header, no VNI flag, unknown VNI).
pub fn mux_drops(s: &StatsSnapshot, reason: DropReason) -> u64 {
    s.muxes
        .iter()
        .map(|m| m.drops.get(reason.as_str()).copied().unwrap_or(0))
        .sum()
}
