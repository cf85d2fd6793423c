//! Counters: plain integers owned by the thread that forwards, so counting
//! costs an add; a snapshot copies them out for the control socket.

use overlay_api::{DropReason, MuxStats, OverlayStats};
use std::collections::BTreeMap;

const REASONS: usize = DropReason::ALL.len();

/// The counters of one overlay (or of one mux: only `rx_*` and `drops`).
#[derive(Clone, Debug, Default)]
pub struct Counters {
    /// Frames delivered to the TAP device from the underlay.
    pub rx_frames: u64,
    /// Bytes of those frames.
    pub rx_bytes: u64,
    /// Frames sent to the underlay.
    pub tx_frames: u64,
    /// Bytes of those frames (inner).
    pub tx_bytes: u64,
    /// Lookups asked of varpd.
    pub lookups: u64,
    /// Unicast frames without a valid entry.
    pub misses: u64,
    /// Frames refused by a full pending queue.
    pub queue_overflows: u64,
    /// Frames injected by varpd.
    pub injected: u64,
    drops: [u64; REASONS],
}

impl Counters {
    /// Counts `n` dropped frames for `reason`.
    #[inline]
    pub fn drop(&mut self, reason: DropReason, n: u64) {
        self.drops[reason as usize] += n;
        if reason == DropReason::QueueOverflow {
            self.queue_overflows += n;
        }
    }

    /// Drops counted for `reason`.
    pub fn drops(&self, reason: DropReason) -> u64 {
        self.drops[reason as usize]
    }

    /// Non-zero drop counters by reason name.
    pub fn drop_map(&self) -> BTreeMap<String, u64> {
        DropReason::ALL
            .iter()
            .filter(|r| self.drops(**r) > 0)
            .map(|r| (r.as_str().to_string(), self.drops(*r)))
            .collect()
    }

    /// The overlay snapshot form.
    pub fn overlay_stats(&self, name: &str, vnetid: u32, table_entries: u64) -> OverlayStats {
        OverlayStats {
            name: name.into(),
            vnetid,
            rx_frames: self.rx_frames,
            rx_bytes: self.rx_bytes,
            tx_frames: self.tx_frames,
            tx_bytes: self.tx_bytes,
            lookups: self.lookups,
            misses: self.misses,
            queue_overflows: self.queue_overflows,
            injected: self.injected,
            table_entries,
            drops: self.drop_map(),
        }
    }

    /// The mux snapshot form.
    pub fn mux_stats(&self, listen: std::net::SocketAddr) -> MuxStats {
        MuxStats {
            listen: Some(listen),
            rx_datagrams: self.rx_frames,
            drops: self.drop_map(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drops_by_reason() {
        let mut c = Counters::default();
        c.drop(DropReason::UnknownVni, 2);
        c.drop(DropReason::QueueOverflow, 1);
        assert_eq!(c.drops(DropReason::UnknownVni), 2);
        assert_eq!(c.queue_overflows, 1);
        let m = c.drop_map();
        assert_eq!(m.len(), 2);
        assert_eq!(m["unknown-vni"], 2);
    }
}
