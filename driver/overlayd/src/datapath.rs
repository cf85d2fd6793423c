//! The data path: frames from a TAP device out to the underlay (tx), and
//! datagrams from the underlay into a TAP device (rx).
//!
//! tx: read a frame into the shared buffer just after [`HEADROOM`] bytes,
//! decide where it goes (point destination, target table, or varpd for
//! ARP/NDP/DHCP), write the VXLAN header into the headroom and send the lot
//! with one `send_to` from the flow's socket. rx: receive a datagram, check
//! the VXLAN header, demultiplex by VNI, write the inner frame to the TAP.
//! On the hit path nothing is locked and nothing is allocated; every frame
//! that is not delivered is counted under a [`DropReason`] and traced by
//! the `overlay:drop` probe with the same reason.

use crate::daemon::{Daemon, LookupCtx, HEADROOM};
use crate::mux::Mux;
use crate::overlay::Overlay;
use overlay_api::proto::DriverMsg;
use overlay_api::{DestMode, DropReason, Mac};
use overlay_core::TxDecision;
use overlay_probes::overlay as probe;
use overlay_wire::eth::{self, GroupKind};
use overlay_wire::vxlan;
use std::io;
use std::net::SocketAddr;
use std::time::Instant;

/// Most broadcast/multicast frames an overlay may have waiting on varpd.
const BCAST_INFLIGHT_MAX: u32 = 256;

/// Encapsulates `pkt[HEADROOM..]` (a frame for `dst`) in place and sends it to `dest`.
#[inline]
pub(crate) fn send_encap(ov: &mut Overlay, mux: &Mux, pkt: &mut [u8], dst: Mac, dest: SocketAddr) {
    let frame_len = pkt.len() - HEADROOM;
    let hash = eth::flow_hash(&pkt[HEADROOM..]);
    let hdr: &mut [u8; HEADROOM] = (&mut pkt[..HEADROOM])
        .try_into()
        .expect("headroom is a VXLAN header");
    vxlan::emit(ov.cfg.vnetid, hdr);
    match mux.sender(hash).send_to(pkt, dest) {
        Ok(_) => {
            ov.counters.tx_frames += 1;
            ov.counters.tx_bytes += frame_len as u64;
            ov.peers.tx(dest.ip(), frame_len);
            probe::encap(&ov.cfg.name, ov.cfg.vnetid, dst, dest, frame_len);
        }
        Err(e) => {
            log::debug!("{}: send to {dest}: {e}", ov.cfg.name);
            ov.drop(DropReason::SendError, frame_len);
        }
    }
}

/// Sends a frame that is not in the shared buffer (a released queue entry).
pub(crate) fn send_copy(ov: &mut Overlay, mux: &Mux, frame: &[u8], dest: SocketAddr) {
    let mut pkt = vec![0u8; HEADROOM + frame.len()];
    pkt[HEADROOM..].copy_from_slice(frame);
    let dst = eth::classify(frame).map(|i| i.dst).unwrap_or_default();
    send_encap(ov, mux, &mut pkt, dst, dest);
}

impl Daemon {
    /// Reads every frame the TAP device of overlay `oid` has.
    pub(crate) fn tap_readable(&mut self, oid: u64) {
        loop {
            let Some(ov) = self.overlays.get(&oid) else {
                return;
            };
            let n = match ov.tap.read(&mut self.buf[HEADROOM..]) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    log::warn!("{}: TAP read: {e}", ov.cfg.name);
                    return;
                }
            };
            self.tx_frame(oid, n);
        }
    }

    fn tx_frame(&mut self, oid: u64, n: usize) {
        let now = Instant::now();
        let Some(ov) = self.overlays.get_mut(&oid) else {
            return;
        };
        let Some(mux) = self.muxes.get(&ov.mux) else {
            return;
        };
        let pkt = &mut self.buf[..HEADROOM + n];
        let Some(info) = eth::classify(&pkt[HEADROOM..]) else {
            return ov.drop(DropReason::RuntFrame, n);
        };
        probe::tx(&ov.cfg.name, ov.cfg.vnetid, info.src, info.dst, n);
        if n > ov.cfg.mtu as usize + eth::HEADER_LEN + 4 {
            return ov.drop(DropReason::TooBig, n);
        }
        match (ov.mode, ov.point) {
            (Some(DestMode::Point), Some(dest)) => return send_encap(ov, mux, pkt, info.dst, dest),
            (Some(DestMode::Dynamic), _) => {}
            _ => return ov.drop(DropReason::NoDestination, n),
        }
        if let Some(kind) = info.group {
            if kind == GroupKind::Other {
                return ov.drop(DropReason::MulticastUnsupported, n);
            }
            let Some(link) = self.link.as_mut().filter(|_| ov.configured) else {
                return ov.drop(DropReason::VarpdUnavailable, n);
            };
            if ov.bcast_inflight >= BCAST_INFLIGHT_MAX {
                return ov.drop(DropReason::VarpdBusy, n);
            }
            self.next_lookup += 1;
            let id = self.next_lookup;
            let frame: Box<[u8]> = pkt[HEADROOM..].into();
            let msg = DriverMsg::Lookup {
                id,
                oid,
                src: info.src,
                dst: info.dst,
                frame: Some(frame.to_vec()),
            };
            if !link.conn.send(&msg) {
                return ov.drop(DropReason::VarpdBusy, n);
            }
            ov.counters.lookups += 1;
            ov.bcast_inflight += 1;
            probe::lookup_request(&ov.cfg.name, info.dst, id, true);
            self.lookups.insert(
                id,
                LookupCtx {
                    oid,
                    mac: info.dst,
                    frame: Some(frame),
                    asked: now,
                },
            );
            return;
        }
        match ov.table.tx(info.dst, &pkt[HEADROOM..], now) {
            TxDecision::Send(dest) => {
                probe::target_hit(&ov.cfg.name, info.dst, dest);
                send_encap(ov, mux, pkt, info.dst, dest)
            }
            TxDecision::Drop(DropReason::QueueOverflow) => {
                probe::target_queue_overflow(
                    &ov.cfg.name,
                    info.dst,
                    ov.table.queued_bytes(info.dst),
                );
                ov.drop(DropReason::QueueOverflow, n)
            }
            TxDecision::Drop(r) => ov.drop(r, n),
            TxDecision::Queued { ask } => {
                ov.counters.misses += 1;
                probe::target_miss(&ov.cfg.name, info.dst, ask);
                if ask && ov.configured {
                    if let Some(link) = self.link.as_mut() {
                        self.next_lookup += 1;
                        let id = self.next_lookup;
                        if link.conn.send(&DriverMsg::Lookup {
                            id,
                            oid,
                            src: info.src,
                            dst: info.dst,
                            frame: None,
                        }) {
                            ov.counters.lookups += 1;
                            ov.table.asked(info.dst, now);
                            probe::lookup_request(&ov.cfg.name, info.dst, id, false);
                            self.lookups.insert(
                                id,
                                LookupCtx {
                                    oid,
                                    mac: info.dst,
                                    frame: None,
                                    asked: now,
                                },
                            );
                        }
                    }
                }
            }
        }
    }

    /// Receives every datagram mux `mid` has.
    pub(crate) fn mux_readable(&mut self, mid: u64) {
        loop {
            let Some(mux) = self.muxes.get_mut(&mid) else {
                return;
            };
            let (n, from) = match mux.sock.recv_from(&mut self.buf) {
                Ok(r) => r,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // ICMP errors surface here on some kernels; they are not fatal.
                    log::debug!("mux {}: recv: {e}", mux.listen);
                    continue;
                }
            };
            mux.counters.rx_frames += 1;
            let mux_drop = |mux: &mut Mux, reason: DropReason, vni: u32| {
                mux.counters.drop(reason, 1);
                probe::drop("-", vni, reason, n);
            };
            let p = match vxlan::parse(&self.buf[..n]) {
                Ok(p) => p,
                Err(vxlan::VxlanError::Short(_)) => {
                    mux_drop(mux, DropReason::ShortHeader, 0);
                    continue;
                }
                Err(vxlan::VxlanError::NoVniFlag(_)) => {
                    mux_drop(mux, DropReason::NoVniFlag, 0);
                    continue;
                }
            };
            let Some(ov) = mux
                .table
                .demux(p.vni)
                .and_then(|oid| self.overlays.get_mut(&oid))
            else {
                mux_drop(mux, DropReason::UnknownVni, p.vni);
                continue;
            };
            let len = p.inner.len();
            if len > ov.cfg.mtu as usize + eth::HEADER_LEN + 4 {
                ov.drop(DropReason::TooBig, len);
                continue;
            }
            match ov.tap.write(p.inner) {
                Ok(_) => {
                    ov.counters.rx_frames += 1;
                    ov.counters.rx_bytes += len as u64;
                    ov.peers.rx(from.ip(), len);
                    let mac = |at: usize| {
                        Mac(p.inner[at..at + 6]
                            .try_into()
                            .expect("parse() checked the length"))
                    };
                    probe::rx(&ov.cfg.name, ov.cfg.vnetid, mac(6), mac(0), len, from.ip());
                }
                Err(e) => {
                    log::debug!("{}: TAP write: {e}", ov.cfg.name);
                    ov.drop(DropReason::TapWriteError, len);
                }
            }
        }
    }
}
