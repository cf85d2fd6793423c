//! The lookups overlayd has asked varpd and not yet heard back about,
//! by lookup id, with an index of the unicast ones by (overlay, MAC); and
//! how a miss is asked: [`Lookups::ask_unicast`] (a MAC the target table
//! made pending, from the transmit path, a retry, or the receive path's
//! unknown source) and [`Lookups::ask_broadcast`] (an ARP, neighbour
//! solicitation or DHCP frame that varpd answers). Answers, retries and a
//! varpd that goes away are the link's (`link.rs`), which takes lookups
//! back from here by id.
//!
//! A relink after a MAC flood asks again for every pending MAC (tens of
//! thousands) and must first forget the unicast lookups already asked for
//! each; with the index that is one step per MAC instead of a walk over
//! every outstanding lookup per MAC (~10⁹ steps on the event loop at
//! 43,000 pending), so the event loop keeps answering requests meanwhile.

use crate::conn::Conn;
use crate::datapath::Owner;
use crate::mux::Mux;
use crate::overlay::Overlay;
use crate::port::Port;
use overlay_api::proto::DriverMsg;
use overlay_api::{DropReason, Mac};
use overlay_core::decide::{TxVerdict, Varpd};
use overlay_probes::overlay as probe;
use overlay_wire::offload::VNET_HDR_LEN;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Instant;

/// An outstanding lookup.
#[derive(Debug)]
pub(crate) struct LookupCtx {
    pub oid: u64,
    pub mac: Mac,
    /// For broadcast/multicast lookups, the frame (sent on if varpd names a destination).
    pub frame: Option<Box<[u8]>>,
    /// When it was asked (for the latency histogram and probe).
    pub asked: Instant,
}

/// Outstanding lookups by id, unicast ones also by (overlay, MAC).
#[derive(Debug, Default)]
pub(crate) struct Lookups {
    /// The last lookup id given.
    last_id: u64,
    by_id: HashMap<u64, LookupCtx>,
    /// Ids of the unicast lookups (no frame) of each (overlay, MAC).
    unicast: HashMap<(u64, Mac), Vec<u64>>,
}

impl Lookups {
    /// Asks varpd (over `link`) where `mac` of overlay `ov` lives, for a
    /// frame from `src` (`Mac::default()` for a retry or a source check),
    /// and records the lookup: counted, probed, and the pending entry
    /// marked asked. False if the link would not take it (it is full).
    pub fn ask_unicast(
        &mut self,
        link: &mut Conn,
        ov: &mut Overlay,
        src: Mac,
        mac: Mac,
        now: Instant,
    ) -> bool {
        self.last_id += 1;
        let id = self.last_id;
        if !link.send(&DriverMsg::Lookup {
            id,
            oid: ov.oid,
            src,
            dst: mac,
            frame: None,
        }) {
            return false;
        }
        ov.counters.lookups += 1;
        ov.table.asked(mac, now);
        probe::lookup_request(&ov.cfg.name, mac, id, false);
        self.insert(
            id,
            LookupCtx {
                oid: ov.oid,
                mac,
                frame: None,
                asked: now,
            },
        );
        true
    }

    /// Sends varpd a broadcast `frame` of overlay `ov` from `src` to `dst`
    /// with its lookup, and keeps the frame until the answer (which may
    /// name where it goes). `varpd-busy` if the link would not take it.
    pub fn ask_broadcast(
        &mut self,
        link: &mut Conn,
        ov: &mut Overlay,
        src: Mac,
        dst: Mac,
        frame: &[u8],
        now: Instant,
    ) -> Result<(), DropReason> {
        self.last_id += 1;
        let id = self.last_id;
        if !link.send(&DriverMsg::Lookup {
            id,
            oid: ov.oid,
            src,
            dst,
            frame: Some(frame.to_vec()),
        }) {
            return Err(DropReason::VarpdBusy);
        }
        ov.counters.lookups += 1;
        ov.bcast_inflight += 1;
        probe::lookup_request(&ov.cfg.name, dst, id, true);
        self.insert(
            id,
            LookupCtx {
                oid: ov.oid,
                mac: dst,
                frame: Some(frame.into()),
                asked: now,
            },
        );
        Ok(())
    }

    /// Records lookup `id`.
    pub fn insert(&mut self, id: u64, ctx: LookupCtx) {
        if ctx.frame.is_none() {
            self.unicast.entry((ctx.oid, ctx.mac)).or_default().push(id);
        }
        self.by_id.insert(id, ctx);
    }

    /// Takes lookup `id` (answered).
    pub fn remove(&mut self, id: u64) -> Option<LookupCtx> {
        let ctx = self.by_id.remove(&id)?;
        if ctx.frame.is_none() {
            let key = (ctx.oid, ctx.mac);
            if let Some(ids) = self.unicast.get_mut(&key) {
                ids.retain(|&i| i != id);
                if ids.is_empty() {
                    self.unicast.remove(&key);
                }
            }
        }
        Some(ctx)
    }

    /// Forgets the unicast lookups of `mac` on overlay `oid` (about to be
    /// asked again): one step, whatever else is outstanding.
    pub fn forget_unicast(&mut self, oid: u64, mac: Mac) {
        for id in self.unicast.remove(&(oid, mac)).unwrap_or_default() {
            self.by_id.remove(&id);
        }
    }

    /// Forgets every lookup of overlay `oid` (deleted).
    pub fn forget_overlay(&mut self, oid: u64) {
        self.by_id.retain(|_, c| c.oid != oid);
        self.unicast.retain(|&(o, _), _| o != oid);
    }

    /// Takes every lookup (the link went down).
    pub fn drain(&mut self) -> impl Iterator<Item = LookupCtx> + '_ {
        self.unicast.clear();
        self.by_id.drain().map(|(_, c)| c)
    }

    /// Outstanding lookups.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.by_id.len()
    }
}

/// The event loop's [`Owner`]: it owns the target tables and the varpd
/// link, so it performs every verdict — a miss is queued behind its lookup
/// and asked, a broadcast sent to varpd, an unknown source asked about —
/// and learns every guest MAC (varpd hears of new ones).
pub(crate) struct EventLoop<'a> {
    /// The varpd link's connection, when varpd is linked.
    pub link: Option<&'a mut Conn>,
    /// The outstanding lookups.
    pub lookups: &'a mut Lookups,
    /// The lookup the last miss asked, if it asked one (for the capture).
    pub asked: Option<u64>,
}

impl Owner<Overlay> for EventLoop<'_> {
    fn varpd(&self, ov: &Overlay) -> Varpd {
        match (&self.link, ov.configured) {
            (Some(_), true) => Varpd::Ready {
                broadcasts_waiting: ov.bcast_inflight,
            },
            _ => Varpd::Unavailable,
        }
    }

    fn performs(&self, _: &TxVerdict) -> bool {
        true
    }

    fn hand_over(&mut self, _: &mut Overlay, _: &[u8]) {
        unreachable!("the event loop performs every verdict")
    }

    fn learn(&mut self, ov: &mut Overlay, mac: Mac, now: Instant) {
        learn(ov, self.link.as_deref_mut(), mac, now);
    }

    fn miss(
        &mut self,
        ov: &mut Overlay,
        v: TxVerdict,
        h: &[u8; VNET_HDR_LEN],
        frame: &[u8],
        src: Mac,
        dst: Mac,
        now: Instant,
    ) -> TxVerdict {
        let drop = |ov: &mut Overlay, reason: DropReason| {
            ov.drop(reason, frame.len());
            TxVerdict::Drop(reason)
        };
        self.asked = None;
        match v {
            TxVerdict::AskBroadcast => {
                let Some(link) = self.link.as_deref_mut() else {
                    return drop(ov, DropReason::VarpdUnavailable);
                };
                match self.lookups.ask_broadcast(link, ov, src, dst, frame, now) {
                    Ok(()) => {
                        self.asked = Some(self.lookups.last_id);
                        v
                    }
                    Err(reason) => drop(ov, reason),
                }
            }
            TxVerdict::Queue { .. } => {
                let ask = match ov.table.queue(dst, h, frame) {
                    Ok(ask) => ask,
                    Err(DropReason::QueueOverflow) => {
                        probe::target_queue_overflow(&ov.cfg.name, dst, ov.table.queued_bytes(dst));
                        return drop(ov, DropReason::QueueOverflow);
                    }
                    Err(reason) => return drop(ov, reason),
                };
                ov.counters.misses += 1;
                probe::target_miss(&ov.cfg.name, dst, ask);
                // A link that does not take the lookup now leaves it to
                // the retry (`LOOKUP_RETRY`): the entry is not marked asked.
                if let (true, Some(link)) = (ask && ov.configured, self.link.as_deref_mut()) {
                    if self.lookups.ask_unicast(link, ov, src, dst, now) {
                        self.asked = Some(self.lookups.last_id);
                    }
                }
                TxVerdict::Queue { ask }
            }
            // Performed by the engine itself.
            v @ (TxVerdict::Encap { .. } | TxVerdict::Drop(_)) => v,
        }
    }

    fn take_rx(
        &mut self,
        _: u64,
        _: &Mux,
        _: &overlay_core::FastMap<u64, Overlay>,
        _: (&[u8], SocketAddr, usize),
    ) -> bool {
        false
    }

    fn asked(&self) -> Option<u64> {
        self.asked
    }

    /// Asks varpd where the unknown sources live (overlays with
    /// `target/check_source`), while the link takes them.
    fn rx_done(
        &mut self,
        _: &mut Mux,
        ports: &mut overlay_core::FastMap<u64, Overlay>,
        asks: &[(u64, Mac)],
    ) {
        let Some(link) = self.link.as_deref_mut() else {
            return;
        };
        let now = Instant::now();
        for &(oid, mac) in asks {
            let Some(ov) = ports.get_mut(&oid).filter(|o| o.configured) else {
                continue;
            };
            if !self.lookups.ask_unicast(link, ov, Mac::default(), mac, now) {
                break;
            }
        }
    }
}

/// Guest MAC `mac` sent a frame on `ov` at `now`: varpd hears of new ones
/// (the etcd plugin publishes them).
pub(crate) fn learn(ov: &mut Overlay, link: Option<&mut Conn>, mac: Mac, now: Instant) {
    if ov.local.touch(mac, now) && ov.configured {
        if let Some(link) = link {
            link.send(&DriverMsg::LocalMac {
                oid: ov.oid,
                mac,
                present: true,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tap::Tap;
    use overlay_api::proto::DriverMsg;
    use overlay_api::{DestMode, OverlaySpec};
    use overlay_core::{OverlayConfig, TargetTable};
    use std::io::{BufRead, BufReader};

    /// A configured dynamic overlay (its "TAP queue" the write end of a
    /// pipe), a link to a stand-in varpd (the other end of a socket pair,
    /// returned for reading), and an empty set of lookups.
    fn setup() -> (Overlay, Conn, BufReader<std::os::unix::net::UnixStream>) {
        let (_, w) = crate::testkit::pipe(0);
        let spec = OverlaySpec {
            name: "ov0".into(),
            encap: "vxlan".into(),
            search: "files".into(),
            vnetid: 9,
            props: [("vxlan/listen_ip".to_string(), "127.0.0.1".to_string())].into(),
            temporary: true,
        };
        let cfg = OverlayConfig::from_spec(&spec, None).unwrap();
        let mut ov = Overlay::new(3, cfg, Tap::for_test(w, "ov0"), 1, TargetTable::new(), 0);
        ov.mode = Some(DestMode::Dynamic);
        ov.configured = true;
        let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        a.set_nonblocking(true).unwrap();
        let link = Conn::new(mio::net::UnixStream::from_std(a));
        (ov, link, BufReader::new(b))
    }

    fn sent(varpd: &mut BufReader<std::os::unix::net::UnixStream>) -> DriverMsg {
        let mut line = String::new();
        varpd.read_line(&mut line).unwrap();
        serde_json::from_str(&line).unwrap()
    }

    const SRC: Mac = Mac([2, 0, 0, 0, 0, 1]);
    const DST: Mac = Mac([2, 0, 0, 0, 0, 2]);
    const HDR: [u8; VNET_HDR_LEN] = [0; VNET_HDR_LEN];

    #[test]
    fn a_miss_is_queued_and_asked_once() {
        let (mut ov, mut link, mut varpd) = setup();
        let mut lookups = Lookups::default();
        let frame = [0u8; 60];
        let mut owner = EventLoop {
            link: Some(&mut link),
            lookups: &mut lookups,
            asked: None,
        };
        let now = Instant::now();
        let q = TxVerdict::Queue { ask: true };
        assert_eq!(owner.miss(&mut ov, q, &HDR, &frame, SRC, DST, now), q);
        // The second frame waits behind the same lookup.
        assert_eq!(
            owner.miss(&mut ov, q, &HDR, &frame, SRC, DST, now),
            TxVerdict::Queue { ask: false }
        );
        match sent(&mut varpd) {
            DriverMsg::Lookup {
                id,
                oid,
                src,
                dst,
                frame,
            } => {
                assert_eq!((oid, src, dst, frame), (3, SRC, DST, None));
                assert!(lookups.remove(id).is_some(), "the lookup is recorded");
            }
            m => panic!("not a lookup: {m:?}"),
        }
        assert_eq!((ov.counters.misses, ov.counters.lookups), (2, 1));
        assert_eq!(ov.table.queued_bytes(DST), 2 * (VNET_HDR_LEN + 60));
    }

    #[test]
    fn a_broadcast_goes_to_varpd_with_its_frame_or_is_dropped_without_varpd() {
        let (mut ov, mut link, mut varpd) = setup();
        let mut lookups = Lookups::default();
        let arp = [0xffu8; 60];
        let now = Instant::now();
        let ask = TxVerdict::AskBroadcast;
        let mut owner = EventLoop {
            link: Some(&mut link),
            lookups: &mut lookups,
            asked: None,
        };
        assert_eq!(owner.miss(&mut ov, ask, &HDR, &arp, SRC, DST, now), ask);
        match sent(&mut varpd) {
            DriverMsg::Lookup { frame, .. } => assert_eq!(frame.as_deref(), Some(&arp[..])),
            m => panic!("not a lookup: {m:?}"),
        }
        assert_eq!(ov.bcast_inflight, 1);
        let mut alone = EventLoop {
            link: None,
            lookups: &mut lookups,
            asked: None,
        };
        assert_eq!(
            alone.miss(&mut ov, ask, &HDR, &arp, SRC, DST, now),
            TxVerdict::Drop(DropReason::VarpdUnavailable)
        );
        assert_eq!(ov.counters.drops(DropReason::VarpdUnavailable), 1);
        assert_eq!(
            alone.varpd(&ov),
            Varpd::Unavailable,
            "no link: varpd is unavailable"
        );
    }

    #[test]
    fn a_full_pending_queue_is_queue_overflow() {
        let (mut ov, mut link, _varpd) = setup();
        let mut lookups = Lookups::default();
        let mut owner = EventLoop {
            link: Some(&mut link),
            lookups: &mut lookups,
            asked: None,
        };
        let frame = vec![0u8; 1500];
        let now = Instant::now();
        let q = TxVerdict::Queue { ask: true };
        let refused = (0..1000)
            .map(|_| owner.miss(&mut ov, q, &HDR, &frame, SRC, DST, now))
            .filter(|v| *v == TxVerdict::Drop(DropReason::QueueOverflow))
            .count();
        assert!(refused > 0, "a pending entry's queue is bounded");
        assert_eq!(ov.counters.drops(DropReason::QueueOverflow), refused as u64);
    }

    #[test]
    fn unknown_sources_are_asked_after_the_batch() {
        let (ov, mut link, mut varpd) = setup();
        let mut lookups = Lookups::default();
        let mut ports: overlay_core::FastMap<u64, Overlay> = [(3, ov)].into_iter().collect();
        let mut mux = crate::mux::Mux::bind(
            &overlay_wire::vxlan::MODULE,
            "127.0.0.1:0".parse().unwrap(),
            false,
        )
        .unwrap();
        let mut owner = EventLoop {
            link: Some(&mut link),
            lookups: &mut lookups,
            asked: None,
        };
        owner.rx_done(&mut mux, &mut ports, &[(3, SRC), (99, DST)]);
        match sent(&mut varpd) {
            DriverMsg::Lookup { oid, dst, .. } => assert_eq!((oid, dst), (3, SRC)),
            m => panic!("not a lookup: {m:?}"),
        }
        assert_eq!(lookups.len(), 1, "an unknown overlay's source is not asked");
    }

    fn ctx(oid: u64, mac: u8, frame: bool) -> LookupCtx {
        LookupCtx {
            oid,
            mac: Mac([2, 0, 0, 0, 0, mac]),
            frame: frame.then(|| vec![0u8; 60].into_boxed_slice()),
            asked: Instant::now(),
        }
    }

    #[test]
    fn the_unicast_index_follows_every_change() {
        let mut l = Lookups::default();
        l.insert(1, ctx(7, 1, false));
        l.insert(2, ctx(7, 1, false));
        l.insert(3, ctx(7, 1, true)); // a broadcast lookup is not indexed
        l.insert(4, ctx(8, 1, false));
        l.forget_unicast(7, Mac([2, 0, 0, 0, 0, 1]));
        assert!(l.remove(1).is_none() && l.remove(2).is_none());
        assert!(l.remove(3).is_some(), "the broadcast lookup stays");
        assert_eq!(l.len(), 1);
        let c = l.remove(4).expect("overlay 8's lookup stays");
        assert_eq!(c.oid, 8);
        assert!(l.unicast.is_empty(), "answered lookups leave no index");
        l.insert(5, ctx(9, 2, false));
        l.insert(6, ctx(10, 2, false));
        l.forget_overlay(9);
        assert!(l.remove(5).is_none() && l.remove(6).is_some());
        l.insert(7, ctx(9, 3, false));
        assert_eq!(l.drain().count(), 1);
        assert!(l.unicast.is_empty());
    }

    #[test]
    fn asking_again_after_a_flood_is_linear() {
        // 100,000 pending MACs, each forgotten and asked again: with a walk
        // over every lookup per MAC this is 10^10 steps; here it is instant.
        let mut l = Lookups::default();
        let macs: Vec<Mac> = (0..100_000u32)
            .map(|i| {
                let b = i.to_be_bytes();
                Mac([2, 0, b[0], b[1], b[2], b[3]])
            })
            .collect();
        for (i, m) in macs.iter().enumerate() {
            l.insert(
                i as u64,
                LookupCtx {
                    oid: 1,
                    mac: *m,
                    frame: None,
                    asked: Instant::now(),
                },
            );
        }
        let t = Instant::now();
        for (i, m) in macs.iter().enumerate() {
            l.forget_unicast(1, *m);
            l.insert(
                1_000_000 + i as u64,
                LookupCtx {
                    oid: 1,
                    mac: *m,
                    frame: None,
                    asked: Instant::now(),
                },
            );
        }
        assert_eq!(l.len(), macs.len());
        assert!(t.elapsed().as_secs() < 5, "took {:?}", t.elapsed());
    }
}
