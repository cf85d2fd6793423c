//! Frames an operator (or varpd) hands overlayd: *inject* writes one into an
//! overlay's TAP device as if it had come from the underlay (illumos
//! `OVERLAY_TARG_INJECT`); *resend* sends one out of the overlay as if its
//! TAP device had sent it, through the target table and the mux (illumos
//! `OVERLAY_TARG_RESEND`).
//!
//! varpd's link uses both (proxy ARP/NDP replies are injected, proxy DHCP
//! requests resent); `ovadm inject-frame` and `ovadm resend-frame` reach the
//! same operations over the control socket. An operator's frame is checked
//! first and refused with an error naming what is wrong: shorter than an
//! Ethernet header, longer than the overlay's MTU allows (MTU + 14 bytes of
//! Ethernet header + 4 of one VLAN tag, what a guest may send), a group
//! source MAC, or, for a resend, a group destination (it would come back to
//! varpd as a broadcast lookup). Both are counted and traced as the link's
//! versions are: an injected frame in `injected` and the `inject` probe; a
//! resent one as a transmitted frame (`tx` and `encap` probes, tx counters,
//! or a drop with its reason).

use crate::daemon::Daemon;
use crate::port::Port;
use overlay_api::capture::{CaptureDir, CaptureVerdict};
use overlay_api::proto::Reply;
use overlay_api::{ApiError, DropReason, ErrorKind};
use overlay_core::decide::TxVerdict;
use overlay_core::props::L2_OVERHEAD;
use overlay_probes::overlay as probe;
use overlay_wire::eth;
use overlay_wire::offload::VNET_HDR_LEN;
use std::io;

fn error(kind: ErrorKind, msg: String) -> Reply {
    Reply::Error {
        error: ApiError::new(kind, msg),
    }
}

/// Why an operator's frame for an overlay of MTU `mtu` is refused, if it is.
/// `resend` adds the check of the destination.
pub(crate) fn check(frame: &[u8], mtu: u32, resend: bool) -> Result<(), String> {
    let max = mtu as usize + L2_OVERHEAD;
    let Some(info) = eth::classify(frame) else {
        return Err(format!(
            "a frame of {} bytes is shorter than an Ethernet header ({} bytes)",
            frame.len(),
            eth::HEADER_LEN
        ));
    };
    if frame.len() > max {
        return Err(format!(
            "a frame of {} bytes is longer than the overlay carries ({max}: MTU {mtu} + {} bytes of Ethernet header and VLAN tag)",
            frame.len(),
            L2_OVERHEAD
        ));
    }
    if info.src.is_multicast() {
        return Err(format!(
            "source MAC {} is a group address; a frame comes from a unicast MAC",
            info.src
        ));
    }
    if resend && info.dst.is_multicast() {
        return Err(format!(
            "destination MAC {} is a group address; a resent frame goes to one unicast MAC through the target table (a group frame would go back to varpd as a lookup)",
            info.dst
        ));
    }
    Ok(())
}

impl Daemon {
    /// Sends `frame` out of overlay `oid` as if its TAP device had sent it
    /// (varpd's proxy DHCP, illumos `OVERLAY_TARG_RESEND`): through the
    /// target table and the mux like any frame, counted and traced as one.
    /// A frame to a group address is refused, for it would go back to varpd
    /// as one more broadcast lookup. Returns the verdict as performed.
    pub(crate) fn resend(&mut self, oid: u64, frame: &[u8]) -> Option<TxVerdict> {
        let ov = self.fwd.ports.get_mut(&oid)?;
        let n = VNET_HDR_LEN + frame.len();
        let refuse = |ov: &mut crate::overlay::Overlay, reason: DropReason| {
            ov.drop(reason, frame.len());
            Some(TxVerdict::Drop(reason))
        };
        match eth::classify(frame) {
            None => return refuse(ov, DropReason::RuntFrame),
            Some(i) if i.group.is_some() => {
                log::warn!(
                    "{}: varpd asked to resend a frame to group address {}; dropped",
                    ov.cfg.name,
                    i.dst
                );
                return refuse(ov, DropReason::MulticastUnsupported);
            }
            Some(_) if n > self.fwd.tapbuf.len() => return refuse(ov, DropReason::TooBig),
            Some(_) => {}
        }
        self.fwd.tapbuf[..VNET_HDR_LEN].fill(0);
        self.fwd.tapbuf[VNET_HDR_LEN..n].copy_from_slice(frame);
        self.tx_frame(oid, n)
    }

    /// Writes `frame` into the TAP device of overlay `oid` and counts it as
    /// injected (`inject` probe); a write error is counted as a
    /// `tap-write-error` drop and returned.
    pub(crate) fn inject(&mut self, oid: u64, frame: &[u8]) -> io::Result<()> {
        let Some(ov) = self.fwd.ports.get_mut(&oid) else {
            return Ok(());
        };
        let written = ov
            .tap
            .write(&[0; overlay_wire::offload::VNET_HDR_LEN], frame);
        if self.fwd.cap.on() {
            let v = match &written {
                Ok(_) => CaptureVerdict::Injected,
                Err(_) => CaptureVerdict::Dropped {
                    reason: DropReason::TapWriteError,
                },
            };
            self.fwd
                .cap
                .frame(oid, ov.cfg.vnetid, CaptureDir::Inject, v, frame);
        }
        match written {
            Ok(_) => {
                ov.counters.injected += 1;
                if let Some(i) = eth::classify(frame) {
                    probe::inject(&ov.cfg.name, ov.cfg.vnetid, i.src, i.dst, frame.len());
                }
                Ok(())
            }
            Err(e) => {
                log::debug!("{}: inject: {e}", ov.cfg.name);
                ov.drop(DropReason::TapWriteError, frame.len());
                Err(e)
            }
        }
    }

    /// The overlay named `name` and a frame fit for it, or the error reply.
    fn operator_frame(&self, name: &str, frame: &[u8], resend: bool) -> Result<u64, Reply> {
        let (what, into) = if resend {
            ("resend", "out of")
        } else {
            ("inject", "into")
        };
        let Some(oid) = self.by_name.get(name).copied() else {
            return Err(error(
                ErrorKind::NotFound,
                format!("cannot {what} a frame: no such overlay: {name}"),
            ));
        };
        let mtu = self.fwd.ports[&oid].cfg.mtu;
        check(frame, mtu, resend).map_err(|m| {
            error(
                ErrorKind::BadRequest,
                format!("cannot {what} the frame {into} {name}: {m}"),
            )
        })?;
        Ok(oid)
    }

    /// `inject-frame`: the frame goes up the overlay's TAP device.
    pub(crate) fn operator_inject(&mut self, name: &str, frame: &[u8]) -> Reply {
        let oid = match self.operator_frame(name, frame, false) {
            Ok(o) => o,
            Err(r) => return r,
        };
        match self.inject(oid, frame) {
            Ok(()) => {
                log::info!("{name}: operator injected a frame of {} bytes", frame.len());
                Reply::Ok { warning: None }
            }
            Err(e) => error(
                ErrorKind::System,
                format!("cannot inject the frame into {name}: writing to its TAP device: {e}"),
            ),
        }
    }

    /// `resend-frame`: the frame goes out through the target table. The
    /// reply says what became of it: sent (Ok), waiting for a lookup (Ok
    /// with a warning), or dropped (an error naming the drop reason).
    pub(crate) fn operator_resend(&mut self, name: &str, frame: &[u8]) -> Reply {
        let oid = match self.operator_frame(name, frame, true) {
            Ok(o) => o,
            Err(r) => return r,
        };
        let dst = eth::classify(frame).map(|i| i.dst).unwrap_or_default();
        let send_errors = |d: &Daemon| d.fwd.ports[&oid].counters.drops(DropReason::SendError);
        let before = send_errors(self);
        let verdict = self.resend(oid, frame);
        // Sent now, so that the counters say what the reply says, and a
        // send that failed is told as the drop it is.
        self.flush_tx();
        let verdict = match verdict {
            Some(TxVerdict::Encap { .. }) if send_errors(self) > before => {
                Some(TxVerdict::Drop(DropReason::SendError))
            }
            v => v,
        };
        match verdict {
            Some(TxVerdict::Drop(r)) => error(
                ErrorKind::BadRequest,
                format!("the frame to {dst} was dropped by {name}: {r}"),
            ),
            None => error(ErrorKind::NotFound, format!("overlay {name} went away")),
            Some(v) => {
                log::info!(
                    "{name}: operator resent a frame of {} bytes to {dst}",
                    frame.len()
                );
                Reply::Ok {
                    warning: matches!(v, TxVerdict::Queue { .. }).then(|| format!(
                        "{name} has no target entry for {dst} yet: the frame waits for varpd's answer (see show-overlay -t)"
                    )),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::check;

    fn frame(dst: [u8; 6], src: [u8; 6], len: usize) -> Vec<u8> {
        let mut f = vec![0u8; len];
        f[..6].copy_from_slice(&dst);
        f[6..12].copy_from_slice(&src);
        f[12..14].copy_from_slice(&[0x88, 0xb5]);
        f
    }

    const A: [u8; 6] = [2, 0, 0, 0, 0, 1];
    const B: [u8; 6] = [2, 0, 0, 0, 0, 2];

    #[test]
    fn frames_are_checked_with_reasons() {
        assert_eq!(check(&frame(B, A, 60), 1400, true), Ok(()));
        assert_eq!(check(&frame(B, A, 1418), 1400, true), Ok(()));
        assert_eq!(
            check(&[1, 2, 3], 1400, false).unwrap_err(),
            "a frame of 3 bytes is shorter than an Ethernet header (14 bytes)"
        );
        assert_eq!(
            check(&frame(B, A, 1419), 1400, false).unwrap_err(),
            "a frame of 1419 bytes is longer than the overlay carries (1418: MTU 1400 + 18 bytes of Ethernet header and VLAN tag)"
        );
        let group = [0x33, 0x33, 0, 0, 0, 1];
        assert!(check(&frame(B, group, 60), 1400, false)
            .unwrap_err()
            .starts_with("source MAC 33:33:00:00:00:01 is a group address"));
        // A group destination may be injected (a broadcast from the
        // underlay) but not resent.
        assert_eq!(check(&frame([0xff; 6], A, 60), 1400, false), Ok(()));
        assert!(check(&frame([0xff; 6], A, 60), 1400, true)
            .unwrap_err()
            .starts_with("destination MAC ff:ff:ff:ff:ff:ff is a group address"));
    }
}
