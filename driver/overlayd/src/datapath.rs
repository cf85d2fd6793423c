//! The data path: frames from a TAP device out to the underlay (tx), and
//! datagrams from the underlay into a TAP device (rx).
//!
//! tx: read a frame and its virtio-net header from the TAP device; complete
//! a checksum the kernel left partial, or take a TCP super-frame (TSO) as
//! it is; decide where it goes (point destination, target table, or varpd
//! for ARP/NDP/DHCP); encapsulate it — a super-frame cut into MTU-sized
//! segments on the way — into the send queue ([`TxQueue`]), which leaves in
//! batched, GSO-sized `sendmsg` calls. rx: receive a batch of datagrams
//! ([`RxBatch`], UDP GRO), check each header with the mux's encapsulation
//! module (VXLAN, Geneve: [`overlay_wire::encap`]), demultiplex by VNI, and
//! write the inner frames to the TAP device, consecutive TCP segments of a
//! flow coalesced into one super-frame ([`Coalescer`]), and a checksum that
//! a kernel peer left partial kept partial
//! ([`offload::partial_checksum`]).
//!
//! On the hit path nothing is locked and nothing is allocated; every frame
//! that is not delivered is counted under a [`DropReason`] and traced by
//! the `overlay:drop` probe with the same reason. Counters count frames as
//! they cross the underlay: one per segment, not per super-frame.

use crate::daemon::{Daemon, LookupCtx};
use crate::mux::Mux;
use crate::overlay::Overlay;
use crate::txq::TxQueue;
use crate::vnic;
use overlay_api::proto::DriverMsg;
use overlay_api::{DestMode, DropReason, Mac};
use overlay_core::{SourceCheck, TxDecision};
use overlay_probes::overlay as probe;
use overlay_wire::eth::{self, GroupKind};
use overlay_wire::offload::{
    self, Coalescer, TcpLayout, Tso, VnetHdr, F_NEEDS_CSUM, GSO_NONE, VNET_HDR_LEN,
};
use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd;
use std::time::Instant;

/// Most broadcast/multicast frames an overlay may have waiting on varpd.
const BCAST_INFLIGHT_MAX: u32 = 256;
/// Messages queued before the TAP read loop flushes the send queue.
const FLUSH_MSGS: usize = 32;
/// Received buffers up to this size are plain datagrams for any overlay
/// (the smallest MTU, 576, with the Ethernet header and the smallest
/// encapsulation header, VXLAN's or Geneve's 8 bytes): only larger ones are
/// looked at as possible super-frames.
const SUPER_MIN: usize = 576 + 18 + 8;
/// The virtio-net header of a frame with nothing left to do.
const PLAIN: [u8; VNET_HDR_LEN] = [0; VNET_HDR_LEN];

/// Queues `frame` (checksums complete, or a TSO super-frame described by
/// `tso`) for `dst`, encapsulated, to be sent to `dest` from the flow's
/// socket. Counters are counted when the queue is flushed.
pub(crate) fn encap(
    txq: &mut TxQueue,
    ov: &Overlay,
    mux: &Mux,
    frame: &[u8],
    tso: Option<&Tso>,
    dst: Mac,
    dest: SocketAddr,
) {
    let hash = eth::flow_hash(frame);
    let fd = mux.sender(hash).as_raw_fd();
    let vni = ov.cfg.vnetid;
    let (hlen, emit, gso) = (mux.encap.header_len, mux.encap.encap, mux.gso);
    // A raw IP socket has no port; an IPv6 one refuses any but 0 (or its
    // protocol), whatever port the plugin gave.
    let dest = if gso {
        dest
    } else {
        SocketAddr::new(dest.ip(), 0)
    };
    let mut put = |len: usize, fill: &mut dyn FnMut(&mut [u8])| {
        let out = if gso {
            txq.datagram(fd, dest, ov.oid, hlen + len, len)
        } else {
            txq.datagram_alone(fd, dest, ov.oid, hlen + len, len)
        };
        let (hdr, inner) = out.split_at_mut(hlen);
        emit(vni, hash, hdr);
        fill(inner);
        probe::encap(&ov.cfg.name, vni, dst, dest, len);
    };
    match tso {
        None => put(frame.len(), &mut |out| out.copy_from_slice(frame)),
        Some(t) => {
            for i in 0..t.count() {
                put(t.segment_len(frame, i), &mut |out| t.write(frame, i, out));
            }
        }
    }
}

/// Queues a frame released from a pending queue, where it was kept behind
/// its virtio-net header.
pub(crate) fn send_queued(
    txq: &mut TxQueue,
    ov: &mut Overlay,
    mux: &Mux,
    stored: &[u8],
    dest: SocketAddr,
) {
    let Some((h, frame)) = stored.split_first_chunk::<VNET_HDR_LEN>() else {
        return ov.drop(DropReason::RuntFrame, stored.len());
    };
    let hdr = VnetHdr::parse(h);
    let tso = match hdr.is_tso().then(|| Tso::new(frame, &hdr)) {
        None => None,
        Some(Ok(t)) => Some(t),
        Some(Err(_)) => return ov.drop(DropReason::BadOffload, frame.len()),
    };
    let dst = eth::classify(frame).map(|i| i.dst).unwrap_or_default();
    encap(txq, ov, mux, frame, tso.as_ref(), dst, dest);
}

/// The TCP super-frame being coalesced for the TAP device, and what it
/// holds for the counters.
#[derive(Debug, Default)]
pub(crate) struct Gro {
    c: Coalescer,
    oid: u64,
    from: Option<IpAddr>,
    frames: u64,
    bytes: u64,
}

impl Gro {
    /// Writes the held super-frame (if any) to its overlay's TAP device.
    pub(crate) fn flush(&mut self, overlays: &mut HashMap<u64, Overlay>) {
        let (oid, frames, bytes) = (self.oid, self.frames, self.bytes);
        let Some((hdr, frame)) = self.c.finish() else {
            return;
        };
        if let (Some(ov), Some(from)) = (overlays.get_mut(&oid), self.from) {
            ov.deliver(&hdr.emit(), frame, from, frames, bytes);
        }
    }
}

impl Daemon {
    /// Sends what the send queue holds and counts what became of it.
    pub(crate) fn flush_tx(&mut self) {
        if self.txq.is_empty() {
            return;
        }
        self.txq.flush();
        for o in self.txq.outcomes.drain(..) {
            let Some(ov) = self.overlays.get_mut(&o.oid) else {
                continue;
            };
            match o.error {
                None => {
                    ov.counters.tx_frames += o.frames;
                    ov.counters.tx_bytes += o.bytes;
                    if o.gso {
                        ov.counters.offload.gso_sends += 1;
                        ov.counters.offload.gso_datagrams += o.frames;
                    }
                    ov.peers.tx_many(o.dest.ip(), o.frames, o.bytes);
                }
                Some(e) => {
                    log::debug!("{}: send to {}: {e}", ov.cfg.name, o.dest);
                    ov.drop_many(
                        DropReason::SendError,
                        o.frames,
                        (o.bytes / o.frames) as usize,
                    );
                }
            }
        }
    }

    /// Reads every frame the TAP device of overlay `oid` has.
    pub(crate) fn tap_readable(&mut self, oid: u64) {
        loop {
            let Some(ov) = self.overlays.get(&oid) else {
                return;
            };
            let n = match ov.tap.read(&mut self.tapbuf) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    log::warn!("{}: TAP read: {e}", ov.cfg.name);
                    return;
                }
            };
            self.tx_frame(oid, n);
            if self.txq.len() >= FLUSH_MSGS {
                self.flush_tx();
            }
        }
    }

    /// Sends `frame` out of overlay `oid` as if its TAP device had sent it
    /// (varpd's proxy DHCP, illumos `OVERLAY_TARG_RESEND`): through the
    /// target table and the mux like any frame, counted and traced as one.
    /// A frame to a group address is refused, for it would go back to varpd
    /// as one more broadcast lookup.
    pub(crate) fn resend(&mut self, oid: u64, frame: &[u8]) {
        let Some(ov) = self.overlays.get_mut(&oid) else {
            return;
        };
        let n = VNET_HDR_LEN + frame.len();
        match eth::classify(frame) {
            None => return ov.drop(DropReason::RuntFrame, frame.len()),
            Some(i) if i.group.is_some() => {
                log::warn!(
                    "{}: varpd asked to resend a frame to group address {}; dropped",
                    ov.cfg.name,
                    i.dst
                );
                return ov.drop(DropReason::MulticastUnsupported, frame.len());
            }
            Some(_) if n > self.tapbuf.len() => return ov.drop(DropReason::TooBig, frame.len()),
            Some(_) => {}
        }
        self.tapbuf[..VNET_HDR_LEN].copy_from_slice(&PLAIN);
        self.tapbuf[VNET_HDR_LEN..n].copy_from_slice(frame);
        self.tx_frame(oid, n);
    }

    fn tx_frame(&mut self, oid: u64, n: usize) {
        let now = Instant::now();
        let Some(ov) = self.overlays.get_mut(&oid) else {
            return;
        };
        let Some(mux) = self.muxes.get(&ov.mux) else {
            return;
        };
        let Some((h, frame)) = self.tapbuf[..n].split_first_chunk_mut::<VNET_HDR_LEN>() else {
            return ov.drop(DropReason::RuntFrame, n);
        };
        let hdr = VnetHdr::parse(h);
        let Some(info) = eth::classify(frame) else {
            return ov.drop(DropReason::RuntFrame, frame.len());
        };
        let len = frame.len();
        probe::tx(&ov.cfg.name, ov.cfg.vnetid, info.src, info.dst, len);
        if ov.local.touch(info.src, now) && ov.configured {
            if let Some(link) = self.link.as_mut() {
                link.conn.send(&DriverMsg::LocalMac {
                    oid,
                    mac: info.src,
                    present: true,
                });
            }
        }
        let max = ov.cfg.mtu as usize + eth::HEADER_LEN + 4;
        let tso = if hdr.is_tso() {
            match Tso::new(frame, &hdr) {
                Ok(t) if t.header_len() + hdr.gso_size as usize <= max => {
                    ov.counters.offload.tso_frames += 1;
                    ov.counters.offload.tso_segments += t.count() as u64;
                    Some(t)
                }
                Ok(_) => return ov.drop(DropReason::TooBig, len),
                Err(e) => {
                    log::debug!("{}: {e}", ov.cfg.name);
                    return ov.drop(DropReason::BadOffload, len);
                }
            }
        } else {
            if len > max {
                return ov.drop(DropReason::TooBig, len);
            }
            if hdr.gso_type != GSO_NONE {
                return ov.drop(DropReason::BadOffload, len);
            }
            if hdr.flags & F_NEEDS_CSUM != 0 {
                if let Err(e) = offload::complete_checksum(frame, hdr.csum_start, hdr.csum_offset) {
                    log::debug!("{}: {e}", ov.cfg.name);
                    return ov.drop(DropReason::BadOffload, len);
                }
                *h = PLAIN;
            }
            None
        };
        if !ov.vnics.is_empty() {
            if let Some(c) = vnic::counters_of(&mut ov.vnics, info.src) {
                // Segments and their bytes, as they will cross the underlay.
                let (n, bytes) = match &tso {
                    None => (1, len as u64),
                    Some(t) => {
                        let n = t.count() as u64;
                        (n, len as u64 + t.header_len() as u64 * n.saturating_sub(1))
                    }
                };
                c.tx_frames += n;
                c.tx_bytes += bytes;
            }
        }
        let frame = &*frame;
        match (ov.mode, ov.point) {
            (Some(DestMode::Point), Some(dest)) => {
                return encap(&mut self.txq, ov, mux, frame, tso.as_ref(), info.dst, dest)
            }
            (Some(DestMode::Dynamic), _) => {}
            _ => return ov.drop(DropReason::NoDestination, len),
        }
        if let Some(kind) = info.group {
            if kind == GroupKind::Other || tso.is_some() {
                return ov.drop(DropReason::MulticastUnsupported, len);
            }
            let Some(link) = self.link.as_mut().filter(|_| ov.configured) else {
                return ov.drop(DropReason::VarpdUnavailable, len);
            };
            if ov.bcast_inflight >= BCAST_INFLIGHT_MAX {
                return ov.drop(DropReason::VarpdBusy, len);
            }
            self.next_lookup += 1;
            let id = self.next_lookup;
            let frame: Box<[u8]> = frame.into();
            let msg = DriverMsg::Lookup {
                id,
                oid,
                src: info.src,
                dst: info.dst,
                frame: Some(frame.to_vec()),
            };
            if !link.conn.send(&msg) {
                return ov.drop(DropReason::VarpdBusy, len);
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
        match ov.table.tx_with(info.dst, h, frame, now) {
            TxDecision::Send(dest) => {
                probe::target_hit(&ov.cfg.name, info.dst, dest);
                encap(&mut self.txq, ov, mux, frame, tso.as_ref(), info.dst, dest)
            }
            TxDecision::Drop(DropReason::QueueOverflow) => {
                probe::target_queue_overflow(
                    &ov.cfg.name,
                    info.dst,
                    ov.table.queued_bytes(info.dst),
                );
                ov.drop(DropReason::QueueOverflow, len)
            }
            TxDecision::Drop(r) => ov.drop(r, len),
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

    /// Receives every datagram mux `mid` has, a batch at a time.
    pub(crate) fn mux_readable(&mut self, mid: u64) {
        loop {
            let Some(mux) = self.muxes.get_mut(&mid) else {
                return;
            };
            let n = match self.rxq.recv(mux.sock.as_raw_fd()) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // ICMP errors surface here on some kernels; they are not fatal.
                    log::debug!("mux {}: recv: {e}", mux.listen);
                    continue;
                }
            };
            for i in 0..n {
                let Some((data, from, seg)) = self.rxq.get(i) else {
                    // Truncated (cannot happen with 64 KiB buffers) or no sender.
                    mux.counters.rx_frames += 1;
                    mux.counters.drop(DropReason::ShortHeader, 1);
                    continue;
                };
                // An IPv4 raw socket delivers the IP header too; skip it.
                let (data, seg) = if mux.ip_header {
                    let ihl = usize::from(data.first().map_or(0, |b| b & 0x0f)) * 4;
                    let Some(d) = data.get_mut(ihl..).filter(|d| ihl >= 20 && !d.is_empty()) else {
                        mux.counters.rx_frames += 1;
                        mux.counters.drop(DropReason::ShortHeader, 1);
                        continue;
                    };
                    let n = d.len().max(1);
                    (d, n)
                } else {
                    (data, seg)
                };
                let asks = &mut self.rx_asks;
                if data.len() > SUPER_MIN
                    && rx_super(
                        mux,
                        &mut self.overlays,
                        &mut self.gro,
                        asks,
                        data,
                        from,
                        seg,
                    )
                {
                    continue;
                }
                for d in data.chunks(seg) {
                    rx_datagram(mux, &mut self.overlays, &mut self.gro, asks, d, from);
                }
            }
            // Coalesce only within what one system call brought.
            self.gro.flush(&mut self.overlays);
        }
        if !self.rx_asks.is_empty() {
            self.ask_rx_sources(Instant::now());
        }
    }
}

/// Takes a buffer that is one datagram (VXLAN, Geneve) around a whole TCP
/// super-frame, if it is one: what a kernel VXLAN peer in a neighbouring
/// namespace sends, since its TSO frame crosses the veth unsegmented and
/// the socket's UDP GRO takes it as it is. The frame goes to the TAP device
/// whole, for the kernel to cut if it must, in segments of the size the
/// kernel reported (`seg`, when smaller than the buffer) or else of the
/// largest size the overlay's MTU allows, which is what the peer's TCP,
/// on a device of the same MTU, used. False, having touched nothing, if
/// the buffer is something else (a batch of datagrams, or a frame that is
/// not TCP: the caller handles, or drops, those).
fn rx_super(
    mux: &mut Mux,
    overlays: &mut HashMap<u64, Overlay>,
    gro: &mut Gro,
    asks: &mut Vec<(u64, Mac)>,
    data: &mut [u8],
    from: SocketAddr,
    seg: usize,
) -> bool {
    let len = data.len();
    let Ok(p) = (mux.encap.decap)(data) else {
        return false;
    };
    let (vni, at, options) = (p.vni, len - p.inner.len(), p.options);
    let Some(oid) = mux.table.demux(vni).filter(|o| overlays.contains_key(o)) else {
        return false;
    };
    let inner = &mut data[at..];
    let max = overlays[&oid].cfg.mtu as usize + eth::HEADER_LEN + 4;
    if inner.len() <= max && seg >= len {
        return false;
    }
    // A batch's first datagram is `seg` long, so its inner frame cannot
    // fill the buffer: only a single super-frame has a layout here.
    let Some(layout) = TcpLayout::of(inner) else {
        return false;
    };
    let mss = if seg < len {
        seg
    } else {
        max.saturating_sub(layout.payload)
    };
    let hint = VnetHdr {
        gso_type: if layout.v6 {
            offload::GSO_TCPV6
        } else {
            offload::GSO_TCPV4
        },
        gso_size: mss as u16,
        ..VnetHdr::default()
    };
    let Ok(tso) = Tso::new(inner, &hint) else {
        return false;
    };
    gro.flush(overlays);
    mux.counters.rx_frames += 1;
    mux.counters.options_skipped += u64::from(options);
    let ov = overlays.get_mut(&oid).expect("checked above");
    let (frames, bytes) = (tso.count() as u64, tso.segments_len(inner) as u64);
    if tso.header_len() + mss > max {
        ov.drop(DropReason::TooBig, inner.len());
        return true;
    }
    let mac = |at: usize| Mac(inner[at..at + 6].try_into().expect("a TCP frame"));
    if !source_ok(ov, oid, mac(6), from.ip(), inner.len(), asks) {
        return true;
    }
    for i in 0..tso.count() {
        let len = tso.segment_len(inner, i);
        probe::rx(&ov.cfg.name, ov.cfg.vnetid, mac(6), mac(0), len, from.ip());
    }
    let hdr = tso.to_tap(inner);
    ov.deliver(&hdr.emit(), inner, from.ip(), frames, bytes);
    true
}

/// Takes one datagram from the underlay.
fn rx_datagram(
    mux: &mut Mux,
    overlays: &mut HashMap<u64, Overlay>,
    gro: &mut Gro,
    asks: &mut Vec<(u64, Mac)>,
    d: &[u8],
    from: SocketAddr,
) {
    let n = d.len();
    mux.counters.rx_frames += 1;
    let mux_drop = |mux: &mut Mux, reason: DropReason, vni: u32| {
        mux.counters.drop(reason, 1);
        probe::drop("-", vni, reason, n);
    };
    let p = match (mux.encap.decap)(d) {
        Ok(p) => p,
        Err(e) => return mux_drop(mux, e.reason(), 0),
    };
    mux.counters.options_skipped += u64::from(p.options);
    let Some(oid) = mux.table.demux(p.vni).filter(|o| overlays.contains_key(o)) else {
        return mux_drop(mux, DropReason::UnknownVni, p.vni);
    };
    let inner = p.inner;
    let len = inner.len();
    let mac = |at: usize| {
        Mac(inner[at..at + 6]
            .try_into()
            .expect("parse() checked the length"))
    };
    let ip = from.ip();
    if !source_ok(
        overlays.get_mut(&oid).expect("checked above"),
        oid,
        mac(6),
        ip,
        len,
        asks,
    ) {
        return;
    }
    if !gro.c.is_empty() {
        if gro.oid == oid && gro.from == Some(ip) && gro.c.append(inner) {
            gro.frames += 1;
            gro.bytes += len as u64;
            let ov = &overlays[&oid];
            probe::rx(&ov.cfg.name, ov.cfg.vnetid, mac(6), mac(0), len, ip);
            return;
        }
        gro.flush(overlays);
    }
    let ov = overlays.get_mut(&oid).expect("checked above");
    if len > ov.cfg.mtu as usize + eth::HEADER_LEN + 4 {
        return ov.drop(DropReason::TooBig, len);
    }
    probe::rx(&ov.cfg.name, ov.cfg.vnetid, mac(6), mac(0), len, ip);
    if gro.c.start(inner) {
        (gro.oid, gro.from, gro.frames, gro.bytes) = (oid, Some(ip), 1, len as u64);
        return;
    }
    // A kernel peer over a veth leaves checksums partial: keep them so.
    let hdr = offload::partial_checksum(inner).map_or(PLAIN, |h| h.emit());
    ov.deliver(&hdr, inner, ip, 1, len as u64);
}

/// `target/check_source`: whether overlay `oid` takes a frame whose inner
/// source is `src` from underlay address `from`. In point mode the sender
/// must be the destination; in dynamic mode the target table must map
/// `src` there. A source not known yet is queued in `asks` for varpd (once)
/// and its frame dropped as `unknown-peer`; a source known elsewhere, or
/// to be dropped, is `spoofed-source`.
fn source_ok(
    ov: &mut Overlay,
    oid: u64,
    src: Mac,
    from: IpAddr,
    len: usize,
    asks: &mut Vec<(u64, Mac)>,
) -> bool {
    if !ov.cfg.check_source {
        return true;
    }
    let verdict = if src.is_multicast() {
        Err(DropReason::SpoofedSource)
    } else {
        match (ov.mode, ov.point) {
            (Some(DestMode::Point), Some(p)) if p.ip() == from => Ok(()),
            (Some(DestMode::Point), _) => Err(DropReason::SpoofedSource),
            // Not configured by varpd yet: nothing is known.
            (None, _) => Err(DropReason::UnknownPeer),
            (Some(DestMode::Dynamic), _) => {
                match ov.table.check_source(src, from, Instant::now()) {
                    SourceCheck::Known => Ok(()),
                    SourceCheck::Elsewhere => Err(DropReason::SpoofedSource),
                    SourceCheck::Unknown { ask } => {
                        if ask {
                            asks.push((oid, src));
                        }
                        Err(DropReason::UnknownPeer)
                    }
                }
            }
        }
    };
    match verdict {
        Ok(()) => true,
        Err(reason) => {
            ov.drop(reason, len);
            false
        }
    }
}
