//! A port: what the data path needs of one overlay on one forwarding
//! thread. The event loop's [`crate::overlay::Overlay`] is one (queue 0 of
//! the TAP device, and the owner of the target table, the varpd link and
//! everything else); each worker holds a [`crate::worker::WorkerPort`] per
//! overlay (a queue of its own, a read-only view of the table, counters of
//! its own that reach the overlay's when the event loop collects them).
//! The frame handling in `datapath.rs` is written once, against this trait.

use crate::tap::Tap;
use crate::vnic::VnicCounters;
use overlay_api::{DropReason, Mac};
use overlay_core::stats::Peers;
use overlay_core::{Counters, OverlayConfig};
use overlay_probes::overlay as probe;
use overlay_wire::offload::VNET_HDR_LEN;
use std::net::IpAddr;

/// One overlay as one forwarding thread sees it.
pub(crate) trait Port {
    /// overlayd's id of the overlay.
    fn oid(&self) -> u64;
    /// Its configuration.
    fn cfg(&self) -> &OverlayConfig;
    /// The TAP queue this thread writes to.
    fn tap(&self) -> &Tap;
    /// This thread's counters of the overlay.
    fn counters(&mut self) -> &mut Counters;
    /// This thread's counters per underlay peer.
    fn peers(&mut self) -> &mut Peers;
    /// This thread's counters of the VNIC whose MAC is `mac`, if one has it.
    fn vnic(&mut self, mac: Mac) -> Option<&mut VnicCounters>;
    /// `target/check_source`: whether a frame whose inner source is `src`
    /// may come from underlay address `from` (a refused one is counted);
    /// sources to ask varpd about go to `asks`.
    fn source_ok(&mut self, src: Mac, from: IpAddr, len: usize, asks: &mut Vec<(u64, Mac)>)
        -> bool;

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
