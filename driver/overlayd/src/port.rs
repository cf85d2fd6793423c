//! A port: what the data path needs of one overlay on one forwarding
//! thread. The event loop's [`crate::overlay::Overlay`] is one (queue 0 of
//! the TAP device, and the owner of the target table, the varpd link and
//! everything else); each worker holds a [`crate::worker::WorkerPort`] per
//! overlay (a queue of its own, a read-only view of the table, counters of
//! its own that reach the overlay's when the event loop collects them).
//! The frame handling in `datapath.rs` is written once, against this trait.

use crate::tap::Tap;
use crate::vnic::VnicCounters;
use overlay_api::DestMode;
use overlay_api::{DropReason, Mac};
use overlay_core::decide::{Entry, RxFacts, RxVerdict};
use overlay_core::stats::Peers;
use overlay_core::{Counters, OverlayConfig};
use overlay_probes::overlay as probe;
use overlay_wire::offload::VNET_HDR_LEN;
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

/// One overlay as one forwarding thread sees it.
pub(crate) trait Port {
    /// overlayd's id of the overlay.
    fn oid(&self) -> u64;
    /// Its configuration.
    fn cfg(&self) -> &OverlayConfig;
    /// The TAP queue this thread writes to.
    fn tap(&self) -> &Tap;
    /// The id of the mux it sends through.
    fn mux_id(&self) -> u64;
    /// Its destination mode, once varpd configured it.
    fn mode(&self) -> Option<DestMode>;
    /// Its point-mode destination.
    fn point(&self) -> Option<SocketAddr>;
    /// What this thread's view of the target table holds for `dst` at
    /// `now` (a worker sees valid entries only: anything else is absent).
    fn entry(&self, dst: Mac, now: Instant) -> Entry;
    /// Counts a frame of `len` bytes sent to `dst` against its entry.
    fn hit(&self, dst: Mac, len: usize, now: Instant);
    /// This thread's counters of the overlay.
    fn counters(&mut self) -> &mut Counters;
    /// This thread's counters per underlay peer.
    fn peers(&mut self) -> &mut Peers;
    /// This thread's counters of the VNIC whose MAC is `mac`, if one has it.
    fn vnic(&mut self, mac: Mac) -> Option<&mut VnicCounters>;
    /// What becomes of a received frame with these facts
    /// ([`overlay_core::decide::decide_rx`], with this thread's knowledge of the
    /// overlay); a source to ask varpd about goes to `asks`.
    fn rx_verdict(&mut self, f: &RxFacts, asks: &mut Vec<(u64, Mac)>) -> RxVerdict;

    /// Performs [`rx_verdict`](Self::rx_verdict) up to delivery: `Ok` if
    /// the frame (of `len` bytes) is to be delivered, else it is counted
    /// as dropped with its reason, which is returned.
    fn admit(
        &mut self,
        f: &RxFacts,
        len: usize,
        asks: &mut Vec<(u64, Mac)>,
    ) -> Result<(), DropReason> {
        let reason = match self.rx_verdict(f, asks) {
            RxVerdict::Deliver => return Ok(()),
            RxVerdict::AskSource => DropReason::UnknownPeer,
            RxVerdict::Drop(reason) => reason,
        };
        self.drop(reason, len);
        Err(reason)
    }

    /// Reads one frame (behind its virtio-net header) from this thread's
    /// TAP queue into `buf`: its length, or `None` when none waits (or the
    /// read failed, which is logged).
    fn read_frame(&self, buf: &mut [u8]) -> Option<usize> {
        loop {
            match self.tap().read(buf) {
                Ok(n) => return Some(n),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return None,
                Err(e) => {
                    log::warn!("{}: TAP read: {e}", self.cfg().name);
                    return None;
                }
            }
        }
    }

    /// Counts a dropped frame of `len` bytes and fires `overlay:drop`.
    #[inline]
    fn drop(&mut self, reason: DropReason, len: usize) {
        self.counters().drop(reason, 1);
        let cfg = self.cfg();
        probe::drop(&cfg.name, cfg.vnetid, reason, len);
    }

    /// Counts `n` frames of `len` bytes each discarded in bulk (0 when
    /// their lengths are unknown).
    fn drop_many(&mut self, reason: DropReason, n: u64, len: usize) {
        for _ in 0..n {
            self.drop(reason, len);
        }
    }

    /// Writes `frame` to the TAP queue behind its virtio-net header and
    /// counts it: `frames` frames of `bytes` bytes in all as they crossed
    /// the underlay from `from` (several when the frame is a super-frame,
    /// which also counts as coalesced), or as many dropped.
    fn deliver(
        &mut self,
        hdr: &[u8; VNET_HDR_LEN],
        frame: &[u8],
        from: IpAddr,
        frames: u64,
        bytes: u64,
    ) {
        match self.tap().write(hdr, frame) {
            Ok(_) => {
                let c = self.counters();
                c.rx_frames += frames;
                c.rx_bytes += bytes;
                if frames > 1 {
                    c.offload.gro_frames += 1;
                    c.offload.gro_segments += frames;
                }
                if let Some(dst) = frame.first_chunk::<6>() {
                    if let Some(c) = self.vnic(Mac(*dst)) {
                        c.rx_frames += frames;
                        c.rx_bytes += bytes;
                    }
                }
                self.peers().rx_many(from, frames, bytes);
            }
            Err(e) => {
                log::debug!("{}: TAP write: {e}", self.cfg().name);
                self.drop_many(DropReason::TapWriteError, frames, (bytes / frames) as usize);
            }
        }
    }
}
