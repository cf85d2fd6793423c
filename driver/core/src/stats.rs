//! Counters: plain integers owned by the thread that forwards, so counting
//! costs an add; a snapshot copies them out for the control socket.

use crate::FastMap as HashMap;
use overlay_api::{DropReason, HistBucket, MuxStats, OffloadStats, OverlayStats, PeerStats};
use std::collections::BTreeMap;
use std::net::IpAddr;

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
    /// What the offloads did.
    pub offload: OffloadStats,
    /// Encapsulation header options skipped (a mux's only).
    pub options_skipped: u64,
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

    /// Moves everything `other` counted into these counters, leaving
    /// `other` at zero: how a forwarding thread's counts reach the
    /// overlay's (no allocation either way).
    pub fn take_from(&mut self, other: &mut Counters) {
        // Destructured whole, so that a counter added later cannot be missed.
        let Counters {
            rx_frames,
            rx_bytes,
            tx_frames,
            tx_bytes,
            lookups,
            misses,
            queue_overflows,
            injected,
            offload,
            options_skipped,
            drops,
        } = std::mem::take(other);
        let OffloadStats {
            tso_frames,
            tso_segments,
            gro_frames,
            gro_segments,
            gso_sends,
            gso_datagrams,
            tunnel_gso_sends,
            tunnel_gso_segments,
        } = offload;
        self.rx_frames += rx_frames;
        self.rx_bytes += rx_bytes;
        self.tx_frames += tx_frames;
        self.tx_bytes += tx_bytes;
        self.lookups += lookups;
        self.misses += misses;
        self.queue_overflows += queue_overflows;
        self.injected += injected;
        let a = &mut self.offload;
        a.tso_frames += tso_frames;
        a.tso_segments += tso_segments;
        a.gro_frames += gro_frames;
        a.gro_segments += gro_segments;
        a.gso_sends += gso_sends;
        a.gso_datagrams += gso_datagrams;
        a.tunnel_gso_sends += tunnel_gso_sends;
        a.tunnel_gso_segments += tunnel_gso_segments;
        self.options_skipped += options_skipped;
        for (d, n) in self.drops.iter_mut().zip(drops) {
            *d += n;
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

    /// The overlay snapshot form (peers, latency, status and creation time
    /// are filled by the caller).
    pub fn overlay_stats(&self, name: &str, vnetid: u32, table_entries: u64) -> OverlayStats {
        OverlayStats {
            status: Default::default(),
            created_mono_ns: 0,
            offload: self.offload.clone(),
            peers_total: 0,
            peers: Vec::new(),
            vnics: Vec::new(),
            lookup_latency: Vec::new(),
            lookup_latency_sum_ns: 0,
            table: Default::default(),
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
    pub fn mux_stats(&self, listen: std::net::SocketAddr, encap: &str) -> MuxStats {
        MuxStats {
            listen: Some(listen),
            rx_datagrams: self.rx_frames,
            drops: self.drop_map(),
            encap: encap.into(),
            options_skipped: self.options_skipped,
        }
    }
}

/// Traffic with one underlay peer.
#[derive(Clone, Copy, Debug, Default)]
pub struct PeerCounters {
    /// Frames sent.
    pub tx_frames: u64,
    /// Inner bytes sent.
    pub tx_bytes: u64,
    /// Frames received.
    pub rx_frames: u64,
    /// Inner bytes received.
    pub rx_bytes: u64,
}

/// Counters per underlay peer of one overlay. Peers are keyed by address
/// only (a peer's VXLAN source port varies with the flow).
#[derive(Clone, Debug, Default)]
pub struct Peers(HashMap<IpAddr, PeerCounters>);

impl Peers {
    /// Counts a frame of `len` bytes sent to `peer`.
    #[inline]
    pub fn tx(&mut self, peer: IpAddr, len: usize) {
        let c = self.0.entry(peer).or_default();
        c.tx_frames += 1;
        c.tx_bytes += len as u64;
    }

    /// Counts `frames` frames of `bytes` bytes in all sent to `peer`.
    pub fn tx_many(&mut self, peer: IpAddr, frames: u64, bytes: u64) {
        let c = self.0.entry(peer).or_default();
        c.tx_frames += frames;
        c.tx_bytes += bytes;
    }

    /// Counts `frames` frames of `bytes` bytes in all received from `peer`.
    pub fn rx_many(&mut self, peer: IpAddr, frames: u64, bytes: u64) {
        let c = self.0.entry(peer).or_default();
        c.rx_frames += frames;
        c.rx_bytes += bytes;
    }

    /// Counts a frame of `len` bytes received from `peer`.
    #[inline]
    pub fn rx(&mut self, peer: IpAddr, len: usize) {
        let c = self.0.entry(peer).or_default();
        c.rx_frames += 1;
        c.rx_bytes += len as u64;
    }

    /// Moves everything `other` counted into these counters, leaving
    /// `other`'s peers in place at zero (so that counting them again
    /// allocates nothing).
    pub fn take_from(&mut self, other: &mut Peers) {
        for (ip, o) in other.0.iter_mut() {
            let o = std::mem::take(o);
            if o.tx_frames == 0 && o.rx_frames == 0 {
                continue;
            }
            let c = self.0.entry(*ip).or_default();
            c.tx_frames += o.tx_frames;
            c.tx_bytes += o.tx_bytes;
            c.rx_frames += o.rx_frames;
            c.rx_bytes += o.rx_bytes;
        }
    }

    /// Snapshot form, busiest (by bytes both ways) first.
    pub fn stats(&self) -> Vec<PeerStats> {
        let mut v: Vec<PeerStats> = self
            .0
            .iter()
            .map(|(a, c)| PeerStats {
                addr: Some(*a),
                tx_frames: c.tx_frames,
                tx_bytes: c.tx_bytes,
                rx_frames: c.rx_frames,
                rx_bytes: c.rx_bytes,
            })
            .collect();
        v.sort_by(|a, b| {
            (b.tx_bytes + b.rx_bytes)
                .cmp(&(a.tx_bytes + a.rx_bytes))
                .then(a.addr.cmp(&b.addr))
        });
        v
    }
}

/// A log2 histogram of nanosecond durations: bucket `i` holds values in
/// `(2^(i-1), 2^i]`; the last bucket holds everything above 2^62. The sum
/// of every duration is kept beside it, exactly (saturating at `u64::MAX`
/// ns, some 584 years), for a Prometheus `_sum` and a true mean.
#[derive(Clone, Debug)]
pub struct Histogram {
    buckets: [u64; 64],
    sum_ns: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            buckets: [0; 64],
            sum_ns: 0,
        }
    }
}

impl Histogram {
    /// Records one duration.
    #[inline]
    pub fn record(&mut self, ns: u64) {
        let i = if ns <= 1 {
            0
        } else {
            64 - (ns - 1).leading_zeros() as usize
        };
        self.buckets[i.min(63)] += 1;
        self.sum_ns = self.sum_ns.saturating_add(ns);
    }

    /// Observations recorded.
    pub fn count(&self) -> u64 {
        self.buckets.iter().sum()
    }

    /// The sum of every recorded duration, in nanoseconds.
    pub fn sum_ns(&self) -> u64 {
        self.sum_ns
    }

    /// Non-empty buckets.
    pub fn buckets(&self) -> Vec<HistBucket> {
        self.buckets
            .iter()
            .enumerate()
            .filter(|(_, c)| **c > 0)
            .map(|(i, c)| HistBucket {
                le_ns: if i == 63 { u64::MAX } else { 1u64 << i },
                count: *c,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_keeps_the_exact_sum() {
        let mut h = Histogram::default();
        for ns in [1_500, 70_000, 3_000_000] {
            h.record(ns);
        }
        assert_eq!((h.count(), h.sum_ns()), (3, 3_071_500));
        h.record(u64::MAX);
        assert_eq!(h.sum_ns(), u64::MAX, "saturates, never wraps");
    }

    #[test]
    fn histogram_buckets_are_log2() {
        let mut h = Histogram::default();
        for ns in [1, 2, 3, 4, 5, 1000, 1024, 1025, u64::MAX] {
            h.record(ns);
        }
        let b: Vec<(u64, u64)> = h.buckets().iter().map(|b| (b.le_ns, b.count)).collect();
        assert_eq!(
            b,
            [
                (1, 1),
                (2, 1),
                (4, 2),
                (8, 1),
                (1024, 2),
                (2048, 1),
                (u64::MAX, 1)
            ]
        );
        assert_eq!(h.count(), 9);
    }

    #[test]
    fn take_from_moves_every_count() {
        let mut w = Counters {
            rx_frames: 1,
            tx_bytes: 2,
            options_skipped: 3,
            ..Default::default()
        };
        w.offload.gso_sends = 4;
        w.drop(DropReason::QueueOverflow, 5);
        let mut c = Counters::default();
        c.drop(DropReason::QueueOverflow, 1);
        c.take_from(&mut w);
        assert_eq!(
            (
                c.rx_frames,
                c.tx_bytes,
                c.options_skipped,
                c.offload.gso_sends
            ),
            (1, 2, 3, 4)
        );
        assert_eq!(
            (c.drops(DropReason::QueueOverflow), c.queue_overflows),
            (6, 6)
        );
        assert_eq!(w.drops(DropReason::QueueOverflow) + w.rx_frames, 0);
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let (mut p, mut q) = (Peers::default(), Peers::default());
        q.tx(a, 100);
        q.rx(b, 50);
        p.tx(a, 10);
        p.take_from(&mut q);
        p.take_from(&mut q);
        let s = p.stats();
        assert_eq!(s.len(), 2);
        assert!(q.stats().iter().all(|s| s.tx_bytes + s.rx_bytes == 0));
    }

    #[test]
    fn peers_sorted_by_traffic() {
        let mut p = Peers::default();
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        p.tx(a, 100);
        p.rx(b, 500);
        p.tx(b, 1);
        let s = p.stats();
        assert_eq!(
            (s[0].addr, s[0].rx_bytes, s[0].tx_frames),
            (Some(b), 500, 1)
        );
        assert_eq!(s[1].addr, Some(a));
    }

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
