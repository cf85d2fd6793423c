//! The varpd link: how overlayd treats varpd the way IP treats ARP.
//!
//! varpd connects to the control socket and says hello; the connection then
//! carries [`DriverMsg`]s out and [`VarpdMsg`]s in. On every (re)link
//! overlayd configures one plugin instance per overlay and asks again every
//! lookup still pending, so varpd can restart at any moment without losing
//! anything but time. When the link drops, valid entries keep forwarding,
//! pending entries keep their queues, and broadcast frames waiting on varpd
//! are dropped as `varpd-unavailable` (the guest will ask again).

use crate::daemon::{Daemon, Link};
use crate::datapath::{encap, send_queued};
use crate::port::Port;
use crate::txq::TxQueue;
use overlay_api::proto::{DriverMsg, LookupResult, Reply, VarpdMsg};
use overlay_api::{ApiError, DestMode, DropReason, ErrorKind, Mac, PluginInfo};
use overlay_core::target::Released;
use overlay_core::Answer;
use overlay_probes::overlay as probe;
use std::time::Instant;

impl Daemon {
    /// Client `id` said hello: it becomes the varpd link.
    pub(crate) fn link_up(&mut self, id: u64, pid: u32, plugins: Vec<PluginInfo>) {
        let Some(mut conn) = self.conns.remove(&id) else {
            return;
        };
        if self.link.is_some() {
            log::warn!("a new varpd (pid {pid}) replaces the linked one");
            self.link_down();
        }
        log::info!(
            "varpd linked (pid {pid}, plugins: {})",
            plugins
                .iter()
                .map(|p| p.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
        conn.send(&Reply::Linked);
        probe::varpd_connect(pid);
        self.plugins = plugins.clone();
        let lines = std::mem::take(&mut conn.lines);
        self.link = Some(Link {
            id,
            conn,
            pid,
            plugins,
        });
        let mut oids: Vec<u64> = self.fwd.ports.keys().copied().collect();
        oids.sort_unstable();
        for oid in oids {
            self.send_instance(oid);
        }
        self.ask_pending(None, Instant::now());
        for line in lines {
            self.link_line(&line);
        }
        self.report_all();
    }

    /// The link is gone (EOF, error, or replaced).
    pub(crate) fn link_down(&mut self) {
        let Some(mut link) = self.link.take() else {
            return;
        };
        let _ = self.poll.registry().deregister(&mut link.conn.stream);
        log::warn!(
            "varpd (pid {}) disconnected; known destinations keep forwarding",
            link.pid
        );
        probe::varpd_disconnect(link.pid);
        for ctx in self.lookups.drain() {
            if let (Some(f), Some(ov)) = (&ctx.frame, self.fwd.ports.get_mut(&ctx.oid)) {
                ov.drop(DropReason::VarpdUnavailable, f.len());
            }
        }
        for ov in self.fwd.ports.values_mut() {
            ov.table.unask_all();
            ov.bcast_inflight = 0;
            ov.instance_error = None;
            ov.configured = false;
        }
        let parked = std::mem::take(&mut self.parked);
        for p in parked {
            self.reply_ok(p.conn, Some("varpd went away before configuring the search plugin; the overlay is DEGRADED until it returns".into()));
            self.serve(p.conn);
        }
        self.report_all();
    }

    /// Sends the instance configuration of overlay `oid` to varpd.
    pub(crate) fn send_instance(&mut self, oid: u64) {
        let (Some(link), Some(ov)) = (self.link.as_mut(), self.fwd.ports.get(&oid)) else {
            return;
        };
        let msg = DriverMsg::Instance {
            oid,
            overlay: ov.cfg.name.clone(),
            vnetid: ov.cfg.vnetid,
            search: ov.cfg.search.clone(),
            props: ov.cfg.props.clone(),
        };
        link.conn.send(&msg);
    }

    /// Tells varpd every local MAC of overlay `oid` (its instance is new, or
    /// just recovered, and may have forgotten them).
    fn send_local_macs(&mut self, oid: u64) {
        let (Some(link), Some(ov)) = (self.link.as_mut(), self.fwd.ports.get(&oid)) else {
            return;
        };
        if !ov.configured {
            return;
        }
        for mac in ov.local.all() {
            link.conn.send(&DriverMsg::LocalMac {
                oid,
                mac,
                present: true,
            });
        }
    }

    /// Asks varpd for every pending entry never asked, or asked before `stale`.
    pub(crate) fn ask_pending(&mut self, stale: Option<Instant>, now: Instant) {
        let Some(link) = self.link.as_mut() else {
            return;
        };
        for (oid, ov) in self.fwd.ports.iter_mut().filter(|(_, o)| o.configured) {
            for mac in ov.table.to_ask(stale) {
                self.lookups.forget_unicast(*oid, mac);
                if !self
                    .lookups
                    .ask_unicast(&mut link.conn, ov, Mac::default(), mac, now)
                {
                    return;
                }
            }
        }
    }

    pub(crate) fn link_event(&mut self) {
        let Some(link) = self.link.as_mut() else {
            return;
        };
        link.conn.flush();
        if let Err(e) = link.conn.fill() {
            log::warn!("varpd link: {e}; dropping the link");
            self.link_down();
            return;
        }
        while let Some(line) = self.link.as_mut().and_then(|l| l.conn.lines.pop_front()) {
            self.link_line(&line);
        }
        if self.link.as_ref().is_some_and(|l| l.conn.eof) {
            self.link_down();
        }
    }

    fn link_line(&mut self, line: &[u8]) {
        match serde_json::from_slice::<VarpdMsg>(line) {
            Ok(m) => self.link_msg(m),
            Err(e) => log::warn!("varpd link: ignoring malformed message: {e}"),
        }
    }

    fn link_msg(&mut self, m: VarpdMsg) {
        let now = Instant::now();
        match m {
            VarpdMsg::InstanceReady { oid, mode, point } => {
                let Some(ov) = self.fwd.ports.get_mut(&oid) else {
                    return;
                };
                if mode == DestMode::Point && point.is_none() {
                    ov.instance_error = Some("point-mode plugin gave no destination".into());
                } else {
                    ov.mode = Some(mode);
                    ov.point = point;
                    ov.instance_error = None;
                    ov.configured = true;
                    log::info!(
                        "{}: search plugin {} ready ({mode:?}{})",
                        ov.cfg.name,
                        ov.cfg.search,
                        point.map(|p| format!(" to {p}")).unwrap_or_default()
                    );
                }
                self.sync_workers(oid);
                self.send_local_macs(oid);
                self.unpark(oid, None);
                self.report_all();
                self.ask_pending(None, now);
            }
            VarpdMsg::InstanceFailed {
                oid,
                error,
                serving,
            } => {
                let Some(ov) = self.fwd.ports.get_mut(&oid) else {
                    return;
                };
                log::warn!("{}: search plugin {}: {error}", ov.cfg.name, ov.cfg.search);
                ov.instance_error = Some(error.clone());
                // A plugin that still serves its old data keeps being asked.
                ov.configured &= serving;
                self.unpark(oid, Some(error));
                self.report_all();
            }
            VarpdMsg::LookupReply { id, oid, result } => self.lookup_reply(id, oid, result, now),
            VarpdMsg::Resend { oid, frame } => {
                // Counted (sent, queued or dropped with its reason) either way.
                let _ = self.resend(oid, &frame);
            }
            VarpdMsg::Inject { oid, frame } => {
                // Counted (injected, or a tap-write-error drop) either way.
                let _ = self.inject(oid, &frame);
            }
            VarpdMsg::ForgetLocalMac { oid, mac } => {
                if let Some(ov) = self.fwd.ports.get_mut(&oid) {
                    ov.local.forget(mac);
                }
            }
            VarpdMsg::Invalidate { oid, mac } => {
                let Some(ov) = self.fwd.ports.get_mut(&oid) else {
                    return;
                };
                match mac {
                    Some(m) => {
                        if ov.table.invalidate(m) {
                            probe::target_remove(&ov.cfg.name, m, "invalidate");
                        }
                    }
                    None => {
                        let before = ov.table.len();
                        ov.table.invalidate_resolved();
                        probe::target_flush(&ov.cfg.name, before - ov.table.len(), "invalidate");
                    }
                }
            }
        }
    }

    fn lookup_reply(&mut self, id: u64, oid: u64, result: LookupResult, now: Instant) {
        let Some(ctx) = self.lookups.remove(id) else {
            return;
        };
        if ctx.oid != oid {
            return;
        }
        let Some(ov) = self.fwd.ports.get_mut(&oid) else {
            return;
        };
        let Some(mux) = self.fwd.muxes.get(&ov.mux) else {
            return;
        };
        let ns = now.saturating_duration_since(ctx.asked).as_nanos() as u64;
        ov.lookup_ns.record(ns);
        probe::lookup_reply(&ov.cfg.name, ctx.mac, &result, ns);
        if let Some(frame) = ctx.frame {
            ov.bcast_inflight = ov.bcast_inflight.saturating_sub(1);
            match result {
                LookupResult::Handled => {}
                LookupResult::Target { dest } => {
                    encap(&mut self.fwd.txq, ov, mux, &frame, None, ctx.mac, dest)
                }
                LookupResult::Drop { .. } | LookupResult::NotAnswered { .. } => {
                    ov.drop(DropReason::NotAnswered, frame.len())
                }
            }
            return;
        }
        let answer = match result {
            LookupResult::Target { dest } => Answer::Dest(dest),
            LookupResult::Drop { reason } => {
                log::debug!(
                    "{}: lookup of {} answered drop: {reason}",
                    ov.cfg.name,
                    ctx.mac
                );
                Answer::Drop
            }
            LookupResult::Handled | LookupResult::NotAnswered { .. } => Answer::Drop,
        };
        if let Some(r) = ov.table.answer(ctx.mac, answer, now) {
            match answer {
                Answer::Dest(d) => probe::target_set(&ov.cfg.name, ctx.mac, &d, "varpd"),
                Answer::Drop => probe::target_set(&ov.cfg.name, ctx.mac, &"drop", "varpd"),
            }
            release(&mut self.fwd.txq, ov, mux, r);
        }
    }

    /// Answers a create-overlay parked on instance `oid`.
    fn unpark(&mut self, oid: u64, error: Option<String>) {
        let Some(i) = self.parked.iter().position(|p| p.oid == oid) else {
            return;
        };
        let p = self.parked.remove(i);
        match error {
            None => self.reply_ok(p.conn, None),
            Some(e) => {
                let name = self
                    .fwd
                    .ports
                    .get(&oid)
                    .map(|o| o.cfg.name.clone())
                    .unwrap_or_default();
                self.remove_overlay(oid);
                self.reply(
                    p.conn,
                    &Reply::Error {
                        error: ApiError::new(
                            ErrorKind::Plugin,
                            format!("cannot create overlay {name}: search plugin: {e}"),
                        ),
                    },
                );
            }
        }
        self.serve(p.conn);
    }
}

/// Queues (or drops) the frames an answer released; each was kept behind
/// its virtio-net header.
pub(crate) fn release(
    txq: &mut TxQueue,
    ov: &mut crate::overlay::Overlay,
    mux: &crate::mux::Mux,
    r: Released,
) {
    match r.dest {
        Some(d) => {
            for f in r.frames {
                send_queued(txq, ov, mux, &f, d);
            }
        }
        None => {
            for f in r.frames {
                let len = f.len().saturating_sub(overlay_wire::offload::VNET_HDR_LEN);
                ov.drop(DropReason::TargetDrop, len);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::testkit::{Kit, Peer};
    use overlay_api::proto::{DriverMsg, LookupResult, VarpdMsg};
    use overlay_api::{DropReason, Mac};
    use overlay_wire::offload::VNET_HDR_LEN;
    use std::net::UdpSocket;
    use std::time::Duration;

    const SRC: Mac = Mac([2, 0, 0, 0, 0, 1]);
    const DST: Mac = Mac([2, 0, 0, 0, 0, 2]);

    fn frame(dst: Mac, ethertype: u16) -> Vec<u8> {
        let mut f = vec![0u8; 60];
        f[..6].copy_from_slice(&dst.0);
        f[6..12].copy_from_slice(&SRC.0);
        f[12..14].copy_from_slice(&ethertype.to_be_bytes());
        f
    }

    /// The guest of overlay `oid` sends `f`.
    fn send(k: &mut Kit, oid: u64, f: &[u8]) {
        k.d.fwd.tapbuf[..VNET_HDR_LEN].fill(0);
        k.d.fwd.tapbuf[VNET_HDR_LEN..VNET_HDR_LEN + f.len()].copy_from_slice(f);
        k.d.tx_frame(oid, VNET_HDR_LEN + f.len());
    }

    /// The lookup id of the next lookup varpd is asked (skipping the
    /// guest's MAC being announced).
    fn asked(varpd: &mut Peer) -> (u64, Option<Vec<u8>>) {
        loop {
            match Kit::lookup_sent(varpd) {
                DriverMsg::Lookup { id, frame, .. } => return (id, frame),
                DriverMsg::LocalMac { .. } => continue,
                m => panic!("not a lookup: {m:?}"),
            }
        }
    }

    fn drops(k: &Kit, oid: u64, r: DropReason) -> u64 {
        k.d.fwd.ports[&oid].counters.drops(r)
    }

    #[test]
    fn a_broadcast_varpd_cannot_answer_is_dropped_as_not_answered() {
        let mut k = Kit::new("not_answered");
        let (oid, _tap) = k.overlay("ov0", 10);
        let mut varpd = k.varpd();
        send(&mut k, oid, &frame(Mac([0xff; 6]), 0x0806));
        let (id, carried) = asked(&mut varpd);
        assert!(carried.is_some(), "a broadcast lookup carries its frame");
        assert_eq!(k.d.fwd.ports[&oid].bcast_inflight, 1);
        let reason = "no such address".to_string();
        k.d.link_msg(VarpdMsg::LookupReply {
            id,
            oid,
            result: LookupResult::NotAnswered { reason },
        });
        assert_eq!(drops(&k, oid, DropReason::NotAnswered), 1);
        assert_eq!(k.d.fwd.ports[&oid].bcast_inflight, 0);
    }

    #[test]
    fn an_answer_sends_the_queued_frames_to_their_destination() {
        let mut k = Kit::new("answer");
        let (oid, _tap) = k.overlay("ov0", 11);
        let mut varpd = k.varpd();
        let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
        peer.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let sent = frame(DST, 0x88b5);
        send(&mut k, oid, &sent);
        send(&mut k, oid, &sent);
        let (id, _) = asked(&mut varpd);
        let dest = peer.local_addr().unwrap();
        k.d.link_msg(VarpdMsg::LookupReply {
            id,
            oid,
            result: LookupResult::Target { dest },
        });
        k.d.flush_tx();
        let mut buf = [0u8; 2048];
        for _ in 0..2 {
            let n = peer.recv(&mut buf).expect("a released frame");
            let p = overlay_wire::vxlan::parse(&buf[..n]).unwrap();
            assert_eq!((p.vni, p.inner), (11, &sent[..]));
        }
        let ov = &k.d.fwd.ports[&oid];
        assert_eq!((ov.counters.misses, ov.counters.tx_frames), (2, 2));
        assert_eq!(
            ov.table.dump(),
            [(DST, overlay_api::TargetDest::Valid(dest))]
        );
    }

    #[test]
    fn a_drop_answer_drops_the_queued_frames_as_target_drop() {
        let mut k = Kit::new("drop_answer");
        let (oid, _tap) = k.overlay("ov0", 12);
        let mut varpd = k.varpd();
        send(&mut k, oid, &frame(DST, 0x88b5));
        let (id, _) = asked(&mut varpd);
        let reason = "no such MAC".to_string();
        k.d.link_msg(VarpdMsg::LookupReply {
            id,
            oid,
            result: LookupResult::Drop { reason },
        });
        assert_eq!(drops(&k, oid, DropReason::TargetDrop), 1);
        // Later frames are dropped at once, while the answer holds.
        send(&mut k, oid, &frame(DST, 0x88b5));
        assert_eq!(drops(&k, oid, DropReason::TargetDrop), 2);
    }

    #[test]
    fn broadcasts_waiting_on_a_varpd_that_goes_away_are_varpd_unavailable() {
        let mut k = Kit::new("link_down");
        let (oid, _tap) = k.overlay("ov0", 13);
        let mut varpd = k.varpd();
        send(&mut k, oid, &frame(Mac([0xff; 6]), 0x0806));
        let _ = asked(&mut varpd);
        k.d.link_down();
        assert_eq!(drops(&k, oid, DropReason::VarpdUnavailable), 1);
        // With no varpd, the next one is refused at once.
        send(&mut k, oid, &frame(Mac([0xff; 6]), 0x0806));
        assert_eq!(drops(&k, oid, DropReason::VarpdUnavailable), 2);
    }
}
