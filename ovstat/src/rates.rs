//! Rates: two counter snapshots in, per-second rates per overlay out.
//!
//! Pure functions. Overlays are matched by name, underlay peers by their UL3
//! address, drops by reason name. A counter that went backwards means the
//! overlay was deleted and created again (or overlayd restarted) between the
//! two snapshots; then every counter of that overlay is taken as counted
//! since its (re)creation, that is, inside the interval (over the part of
//! the interval since its creation, when overlayd says when that was). The
//! same holds for an overlay, a peer or a drop reason that the earlier
//! snapshot lacks, and for an overlay whose creation time changed.
//!
//! [`since_creation`] gives vmstat's first line from one snapshot: each
//! overlay's counters over the time since it was created.

use overlay_api::{OverlayState, OverlayStats, PeerStats, StatsSnapshot, VnicStats};
use serde::Serialize;
use std::collections::BTreeMap;

/// Rates of one underlay peer of one overlay.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PeerRates {
    /// The peer's UL3 address (`-` if overlayd did not know it).
    pub peer: String,
    /// Frames per second received from it.
    pub rx_pps: f64,
    /// Frames per second sent to it.
    pub tx_pps: f64,
    /// Bits per second (inner frames) received from it.
    pub rx_bps: f64,
    /// Bits per second (inner frames) sent to it.
    pub tx_bps: f64,
}

/// Rates of one VNIC (guest) of one overlay, from the guest's side: rx is
/// what overlayd delivered to it, tx what it sent through overlayd.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct VnicRates {
    /// VNIC name.
    pub vnic: String,
    /// Its MAC.
    pub mac: String,
    /// Frames per second delivered to it.
    pub rx_pps: f64,
    /// Frames per second it sent.
    pub tx_pps: f64,
    /// Bits per second delivered to it.
    pub rx_bps: f64,
    /// Bits per second it sent.
    pub tx_bps: f64,
}

/// Rates of one overlay over one interval.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct OverlayRates {
    /// Overlay name.
    pub overlay: String,
    /// Its VNI.
    pub vni: u32,
    /// Seconds the rates are taken over.
    pub interval_s: f64,
    /// Frames per second written to the TAP device.
    pub rx_pps: f64,
    /// Frames per second read from the TAP device and sent.
    pub tx_pps: f64,
    /// Bits per second (inner frames) in.
    pub rx_bps: f64,
    /// Bits per second (inner frames) out.
    pub tx_bps: f64,
    /// Drops per second, all reasons.
    pub drops_ps: f64,
    /// Target-table misses per second.
    pub misses_ps: f64,
    /// varpd lookups per second.
    pub lookups_ps: f64,
    /// Target-table entries at the end of the interval (a level, not a rate).
    pub entries: u64,
    /// Health at the end of the interval.
    pub status: OverlayState,
    /// Rates are of the counters since the overlay's creation: the first
    /// report ([`since_creation`]), or the counters went backwards, or the
    /// overlay is new.
    pub reset: bool,
    /// Per underlay peer, in overlayd's order (busiest first).
    pub peers: Vec<PeerRates>,
    /// Drops per second by reason name; a reason seen in either snapshot is
    /// listed (after a reset, in the later one only).
    pub drops: BTreeMap<String, f64>,
    /// Per VNIC, by name.
    pub vnics: Vec<VnicRates>,
}

/// Seconds between two snapshots, from their monotonic clocks (or, if a
/// snapshot lacks one, their wall clocks); `None` if neither is usable.
pub fn interval_secs(prev: &StatsSnapshot, cur: &StatsSnapshot) -> Option<f64> {
    let span = |a: u64, b: u64| (a != 0 && b > a).then(|| (b - a) as f64 / 1e9);
    span(prev.mono_ns, cur.mono_ns).or_else(|| span(prev.time_ns, cur.time_ns))
}

/// Seconds that `ov`'s counters have been counting at the time of `snap`:
/// since the overlay was created, or, if overlayd did not say when, since
/// overlayd started; `None` if the snapshot says neither (an older
/// overlayd) or the times make no sense.
pub fn counting_secs(snap: &StatsSnapshot, ov: &OverlayStats) -> Option<f64> {
    let start = if ov.created_mono_ns != 0 {
        ov.created_mono_ns
    } else {
        snap.started_mono_ns
    };
    (start != 0 && snap.mono_ns > start).then(|| (snap.mono_ns - start) as f64 / 1e9)
}

/// vmstat's first line: per-overlay rates of the counters since each
/// overlay's creation, from one snapshot, in its order; every row has
/// `reset` set. `None` if the snapshot lacks the creation times (an older
/// overlayd), in which case a first interval has to be sampled instead.
pub fn since_creation(cur: &StatsSnapshot) -> Option<Vec<OverlayRates>> {
    cur.overlays
        .iter()
        .map(|c| counting_secs(cur, c).map(|secs| overlay_rates(None, c, secs)))
        .collect()
}

/// Per-overlay rates from `prev` to `cur` over `secs` seconds (see
/// [`interval_secs`]), in `cur`'s order. Overlays that `cur` lacks are gone
/// and not listed. An overlay counted from zero (new, or recreated) is
/// rated over the time since its creation when that is known and shorter.
pub fn rates(prev: &StatsSnapshot, cur: &StatsSnapshot, secs: f64) -> Vec<OverlayRates> {
    cur.overlays
        .iter()
        .map(|c| {
            let p = prev.overlays.iter().find(|p| p.name == c.name);
            let secs = match p {
                Some(p) if !went_back(p, c) => secs,
                _ => match (c.created_mono_ns, counting_secs(cur, c)) {
                    (created, Some(since)) if created != 0 => since.min(secs),
                    _ => secs,
                },
            };
            overlay_rates(p, c, secs)
        })
        .collect()
}

fn went_back(p: &OverlayStats, c: &OverlayStats) -> bool {
    let pairs = [
        (p.rx_frames, c.rx_frames),
        (p.rx_bytes, c.rx_bytes),
        (p.tx_frames, c.tx_frames),
        (p.tx_bytes, c.tx_bytes),
        (p.lookups, c.lookups),
        (p.misses, c.misses),
    ];
    p.vnetid != c.vnetid
        || (p.created_mono_ns != 0
            && c.created_mono_ns != 0
            && p.created_mono_ns != c.created_mono_ns)
        || pairs.iter().any(|(a, b)| b < a)
        || p.drops
            .iter()
            .any(|(r, &n)| c.drops.get(r).copied().unwrap_or(0) < n)
}

fn overlay_rates(prev: Option<&OverlayStats>, c: &OverlayStats, secs: f64) -> OverlayRates {
    let reset = prev.is_none_or(|p| went_back(p, c));
    let zero = OverlayStats::default();
    let p = if reset { &zero } else { prev.unwrap_or(&zero) };
    let secs = if secs > 0.0 { secs } else { f64::NAN };
    let ps = |a: u64, b: u64| b.saturating_sub(a) as f64 / secs;

    let mut drops = BTreeMap::new();
    for reason in p.drops.keys().chain(c.drops.keys()) {
        let before = p.drops.get(reason).copied().unwrap_or(0);
        let now = c.drops.get(reason).copied().unwrap_or(0);
        drops.insert(reason.clone(), ps(before, now));
    }
    let peers = c
        .peers
        .iter()
        .map(|cp| {
            let pp = p.peers.iter().find(|pp| pp.addr == cp.addr);
            peer_rates(pp, cp, secs)
        })
        .collect();

    let vnics = c
        .vnics
        .iter()
        .map(|cv| {
            let pv = p
                .vnics
                .iter()
                .find(|pv| pv.name == cv.name && pv.mac == cv.mac);
            vnic_rates(pv, cv, secs)
        })
        .collect();

    OverlayRates {
        vnics,
        overlay: c.name.clone(),
        vni: c.vnetid,
        interval_s: secs,
        rx_pps: ps(p.rx_frames, c.rx_frames),
        tx_pps: ps(p.tx_frames, c.tx_frames),
        rx_bps: ps(p.rx_bytes, c.rx_bytes) * 8.0,
        tx_bps: ps(p.tx_bytes, c.tx_bytes) * 8.0,
        drops_ps: drops.values().sum(),
        misses_ps: ps(p.misses, c.misses),
        lookups_ps: ps(p.lookups, c.lookups),
        entries: c.table_entries,
        status: c.status,
        reset,
        peers,
        drops,
    }
}

/// A VNIC's rates; one recreated under the same name and MAC with lower
/// counters counts from zero.
fn vnic_rates(prev: Option<&VnicStats>, c: &VnicStats, secs: f64) -> VnicRates {
    let zero = VnicStats::default();
    let p = match prev {
        Some(p)
            if c.tx_frames >= p.tx_frames
                && c.rx_frames >= p.rx_frames
                && c.tx_bytes >= p.tx_bytes
                && c.rx_bytes >= p.rx_bytes =>
        {
            p
        }
        _ => &zero,
    };
    let ps = |a: u64, b: u64| b.saturating_sub(a) as f64 / secs;
    VnicRates {
        vnic: c.name.clone(),
        mac: c.mac.to_string(),
        rx_pps: ps(p.rx_frames, c.rx_frames),
        tx_pps: ps(p.tx_frames, c.tx_frames),
        rx_bps: ps(p.rx_bytes, c.rx_bytes) * 8.0,
        tx_bps: ps(p.tx_bytes, c.tx_bytes) * 8.0,
    }
}

fn peer_rates(prev: Option<&PeerStats>, c: &PeerStats, secs: f64) -> PeerRates {
    let zero = PeerStats::default();
    let p = match prev {
        Some(p)
            if c.tx_frames >= p.tx_frames
                && c.rx_frames >= p.rx_frames
                && c.tx_bytes >= p.tx_bytes
                && c.rx_bytes >= p.rx_bytes =>
        {
            p
        }
        _ => &zero,
    };
    let ps = |a: u64, b: u64| b.saturating_sub(a) as f64 / secs;
    PeerRates {
        peer: c.addr.map_or_else(|| "-".to_string(), |a| a.to_string()),
        rx_pps: ps(p.rx_frames, c.rx_frames),
        tx_pps: ps(p.tx_frames, c.tx_frames),
        rx_bps: ps(p.rx_bytes, c.rx_bytes) * 8.0,
        tx_bps: ps(p.tx_bytes, c.tx_bytes) * 8.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ov(name: &str, frames: u64, bytes: u64) -> OverlayStats {
        OverlayStats {
            offload: Default::default(),
            peers_total: 0,
            name: name.into(),
            vnetid: 42,
            rx_frames: frames,
            rx_bytes: bytes,
            tx_frames: frames * 2,
            tx_bytes: bytes * 2,
            lookups: frames / 10,
            misses: frames / 5,
            table_entries: 3,
            ..Default::default()
        }
    }

    fn snap(mono_s: u64, overlays: Vec<OverlayStats>) -> StatsSnapshot {
        StatsSnapshot {
            time_ns: 1_700_000_000_000_000_000 + mono_s * 1_000_000_000,
            mono_ns: mono_s * 1_000_000_000,
            overlays,
            ..Default::default()
        }
    }

    #[test]
    fn interval_comes_from_the_monotonic_clock() {
        let (a, b) = (snap(10, vec![]), snap(12, vec![]));
        assert_eq!(interval_secs(&a, &b), Some(2.0));
        let (mut a, mut b) = (a, b);
        a.mono_ns = 0;
        b.time_ns = a.time_ns + 500_000_000;
        assert_eq!(interval_secs(&a, &b), Some(0.5), "wall clock fallback");
        b.time_ns = a.time_ns;
        assert_eq!(interval_secs(&a, &b), None);
    }

    #[test]
    fn rates_are_deltas_over_the_interval() {
        let a = snap(10, vec![ov("ov0", 100, 10_000)]);
        let mut o = ov("ov0", 300, 30_000);
        o.drops.insert("target-drop".into(), 8);
        let b = snap(12, vec![o]);
        let r = rates(&a, &b, interval_secs(&a, &b).unwrap());
        assert_eq!(r.len(), 1);
        let r = &r[0];
        assert!(!r.reset);
        assert_eq!((r.overlay.as_str(), r.vni), ("ov0", 42));
        assert_eq!(r.rx_pps, 100.0);
        assert_eq!(r.tx_pps, 200.0);
        assert_eq!(r.rx_bps, 80_000.0);
        assert_eq!(r.tx_bps, 160_000.0);
        assert_eq!(r.misses_ps, 20.0);
        assert_eq!(r.lookups_ps, 10.0);
        assert_eq!(r.drops_ps, 4.0);
        assert_eq!(r.drops["target-drop"], 4.0);
        assert_eq!(r.entries, 3);
    }

    #[test]
    fn a_reset_counts_since_the_overlay_was_created() {
        let mut old = ov("ov0", 1_000, 100_000);
        old.drops.insert("unknown-vni".into(), 50);
        let a = snap(10, vec![old]);
        // Recreated: every counter starts again from zero.
        let b = snap(11, vec![ov("ov0", 40, 4_000)]);
        let r = &rates(&a, &b, 1.0)[0];
        assert!(r.reset);
        assert_eq!(r.rx_pps, 40.0);
        assert_eq!(r.tx_bps, 64_000.0);
        assert_eq!(r.drops_ps, 0.0, "old drops do not count: {r:?}");
        assert!(r.drops.is_empty(), "{r:?}");
    }

    #[test]
    fn a_new_overlay_counts_since_creation_and_gone_ones_vanish() {
        let a = snap(10, vec![ov("gone", 5, 5)]);
        let b = snap(11, vec![ov("new", 7, 70)]);
        let r = rates(&a, &b, 1.0);
        assert_eq!(r.len(), 1);
        assert_eq!(
            (r[0].overlay.as_str(), r[0].reset, r[0].rx_pps),
            ("new", true, 7.0)
        );
    }

    #[test]
    fn the_first_report_is_since_each_overlays_creation() {
        let mut a = ov("ov0", 1_000, 100_000);
        a.created_mono_ns = 90_000_000_000; // created at 90 s
        a.drops.insert("no-destination".into(), 50);
        let mut b = ov("ov1", 30, 3_000);
        b.created_mono_ns = 0; // not said: since overlayd started, at 70 s
        let mut s = snap(100, vec![a, b]);
        s.started_mono_ns = 70_000_000_000;
        let r = since_creation(&s).expect("the snapshot has creation times");
        assert_eq!(r.len(), 2);
        assert_eq!((r[0].overlay.as_str(), r[0].interval_s), ("ov0", 10.0));
        assert!(r[0].reset, "{r:?}");
        assert_eq!(r[0].rx_pps, 100.0);
        assert_eq!(r[0].tx_bps, 160_000.0);
        assert_eq!(r[0].drops_ps, 5.0);
        assert_eq!(r[0].lookups_ps, 10.0);
        assert_eq!((r[1].interval_s, r[1].rx_pps), (30.0, 1.0));
        // An older overlayd says neither: no first line from one snapshot.
        s.started_mono_ns = 0;
        assert_eq!(since_creation(&s), None);
        // Nor from times that make no sense (created after the snapshot).
        let mut late = ov("ov0", 1, 1);
        late.created_mono_ns = 200_000_000_000;
        assert_eq!(since_creation(&snap(100, vec![late])), None);
        // No overlays: an empty first report.
        assert_eq!(since_creation(&snap(100, vec![])), Some(vec![]));
    }

    #[test]
    fn a_recreated_overlay_is_rated_since_its_creation() {
        let mut old = ov("ov0", 10, 1_000);
        old.created_mono_ns = 1_000_000_000;
        // Recreated at 19.5 s with counters already past the old ones: the
        // changed creation time is what shows the reset.
        let mut new = ov("ov0", 50, 5_000);
        new.created_mono_ns = 19_500_000_000;
        let (a, b) = (snap(10, vec![old.clone()]), snap(20, vec![new]));
        let r = &rates(&a, &b, interval_secs(&a, &b).unwrap())[0];
        assert!(r.reset, "{r:?}");
        assert_eq!(r.interval_s, 0.5);
        assert_eq!(r.rx_pps, 100.0);
        // A new overlay created before the earlier snapshot (it was just not
        // listed then) is rated over the interval, not longer.
        let mut early = ov("ov1", 20, 2_000);
        early.created_mono_ns = 1_000_000_000;
        let r = &rates(&a, &snap(20, vec![early]), 10.0)[0];
        assert_eq!((r.interval_s, r.rx_pps), (10.0, 2.0));
        // Same creation time, counters up: an ordinary interval.
        let mut same = old.clone();
        same.rx_frames = 30;
        let r = &rates(&a, &snap(20, vec![same]), 10.0)[0];
        assert!(!r.reset);
        assert_eq!(r.rx_pps, 2.0);
    }

    #[test]
    fn vnics_are_matched_by_name_and_mac() {
        let v = |name: &str, last: u8, n: u64| VnicStats {
            name: name.into(),
            mac: overlay_api::Mac([2, 0, 0, 0, 0, last]),
            rx_frames: n,
            rx_bytes: 100 * n,
            tx_frames: 2 * n,
            tx_bytes: 200 * n,
        };
        let (mut o1, mut o2) = (ov("ov0", 0, 0), ov("ov0", 0, 0));
        o1.vnics = vec![v("vnic1", 1, 10), v("vnic2", 2, 10)];
        // vnic2 was deleted and made again with another MAC: from zero.
        o2.vnics = vec![v("vnic1", 1, 30), v("vnic2", 3, 4)];
        let r = overlay_rates(Some(&o1), &o2, 2.0);
        assert_eq!(r.vnics[0].vnic, "vnic1");
        assert_eq!((r.vnics[0].rx_pps, r.vnics[0].tx_pps), (10.0, 20.0));
        assert_eq!(r.vnics[0].rx_bps, 100.0 * 20.0 * 8.0 / 2.0);
        assert_eq!(
            (r.vnics[1].mac.as_str(), r.vnics[1].rx_pps),
            ("02:00:00:00:00:03", 2.0)
        );
    }

    #[test]
    fn peers_are_matched_by_address_and_reset_alone() {
        let peer = |ip: &str, n: u64| PeerStats {
            addr: Some(ip.parse().unwrap()),
            tx_frames: n,
            tx_bytes: n * 100,
            rx_frames: n,
            rx_bytes: n * 100,
        };
        let mut o1 = ov("ov0", 10, 10);
        o1.peers = vec![peer("10.0.0.1", 10), peer("10.0.0.2", 50)];
        let mut o2 = ov("ov0", 20, 20);
        o2.peers = vec![
            peer("10.0.0.2", 5),
            peer("10.0.0.1", 30),
            peer("fd00::3", 4),
        ];
        let r = &rates(&snap(1, vec![o1]), &snap(3, vec![o2]), 2.0)[0];
        let got: Vec<_> = r
            .peers
            .iter()
            .map(|p| (p.peer.as_str(), p.tx_pps))
            .collect();
        assert_eq!(
            got,
            [("10.0.0.2", 2.5), ("10.0.0.1", 10.0), ("fd00::3", 2.0)]
        );
        assert_eq!(r.peers[1].rx_bps, 8_000.0);
    }
}
