//! Verdicts: what becomes of a frame, decided without I/O.
//!
//! Every forwarding thread of overlayd (the event loop and each worker),
//! and `resend-frame`, asks the same questions of every frame, and this
//! module answers them as functions of what the caller passes in — the
//! overlay's state as that thread knows it, what the target table says of
//! one MAC, the frame's facts — with no clock, socket or device behind
//! them. The caller performs the verdict (encapsulate and send, queue
//! behind a lookup, ask varpd, write to the TAP device, count a drop):
//!
//! - [`prepare_tx`]: a frame a guest sent, with its virtio-net header: a
//!   TCP super-frame (TSO) is checked and described for cutting, a partial
//!   checksum completed, an over-size frame refused;
//! - [`decide_tx`]: where that frame goes ([`TxVerdict`]);
//! - [`decide_rx`]: whether a frame received from the underlay reaches
//!   the TAP device ([`RxVerdict`]).
//!
//! A worker knows less than the event loop (whether varpd is there, what
//! the table holds beyond valid entries): it passes what it knows
//! ([`Varpd::NotKnownHere`], [`Entry::Absent`] for anything but a valid
//! entry), performs [`TxVerdict::Encap`] and [`TxVerdict::Drop`] itself and
//! hands every other verdict to the event loop, which decides the frame
//! again with everything it knows.

use crate::props::OverlayConfig;
use crate::target::SourceCheck;
use overlay_api::{DestMode, DropReason, Mac};
use overlay_wire::eth::GroupKind;
use overlay_wire::offload::{self, Tso, VnetHdr, F_NEEDS_CSUM, GSO_NONE};
use std::net::{IpAddr, SocketAddr};

/// Most broadcast/multicast frames an overlay may have waiting on varpd.
pub const BCAST_INFLIGHT_MAX: u32 = 256;

/// varpd, as the deciding thread knows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Varpd {
    /// Linked, and it has configured the overlay's search plugin;
    /// `broadcasts_waiting` broadcast frames of the overlay wait on it.
    Ready {
        /// Broadcast/multicast frames of the overlay now waiting on varpd.
        broadcasts_waiting: u32,
    },
    /// Not linked, or the overlay's search plugin is not configured.
    Unavailable,
    /// This thread does not know (a worker): a frame for varpd goes to the
    /// event loop, which does.
    NotKnownHere,
}

/// One overlay, as the thread deciding one of its outgoing frames knows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TxPort {
    /// The destination mode the search plugin gave (`None`: not yet).
    pub mode: Option<DestMode>,
    /// The point destination, in point mode.
    pub point: Option<SocketAddr>,
    /// varpd.
    pub varpd: Varpd,
}

/// What the target table holds for a destination MAC.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Entry {
    /// Frames go there.
    Valid(SocketAddr),
    /// Frames are dropped (varpd answered so, until the entry expires).
    Drop,
    /// A lookup is under way; frames queue behind it.
    Pending,
    /// Nothing (or, for a worker, nothing it may act on).
    Absent,
}

/// The facts of an outgoing frame that its verdict depends on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TxFacts {
    /// Destination MAC.
    pub dst: Mac,
    /// For a group destination, what the frame carries.
    pub group: Option<GroupKind>,
    /// The frame is a TCP super-frame (TSO).
    pub tso: bool,
}

/// What becomes of a frame a guest sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TxVerdict {
    /// Encapsulate it to `dest`; `table` says the target table gave the
    /// destination (and counts the hit), rather than point mode.
    Encap {
        /// The underlay destination.
        dest: SocketAddr,
        /// From a valid target-table entry.
        table: bool,
    },
    /// Queue it behind the lookup of its destination; `ask` when there
    /// is none yet (the entry is new), so the caller asks varpd.
    Queue {
        /// A new pending entry: ask varpd.
        ask: bool,
    },
    /// A broadcast varpd answers (ARP, neighbour solicitation, DHCP): send
    /// it to varpd with the lookup.
    AskBroadcast,
    /// Drop it, counted under the reason.
    Drop(DropReason),
}

/// Decides where a frame a guest sent goes. `entry` is asked only for a
/// unicast frame of an overlay in dynamic mode.
pub fn decide_tx(port: &TxPort, f: &TxFacts, entry: impl FnOnce(Mac) -> Entry) -> TxVerdict {
    match (port.mode, port.point) {
        (Some(DestMode::Point), Some(dest)) => return TxVerdict::Encap { dest, table: false },
        (Some(DestMode::Dynamic), _) => {}
        _ => return TxVerdict::Drop(DropReason::NoDestination),
    }
    if let Some(kind) = f.group {
        if kind == GroupKind::Other || f.tso {
            return TxVerdict::Drop(DropReason::MulticastUnsupported);
        }
        return match port.varpd {
            Varpd::Unavailable => TxVerdict::Drop(DropReason::VarpdUnavailable),
            Varpd::Ready { broadcasts_waiting } if broadcasts_waiting >= BCAST_INFLIGHT_MAX => {
                TxVerdict::Drop(DropReason::VarpdBusy)
            }
            Varpd::Ready { .. } | Varpd::NotKnownHere => TxVerdict::AskBroadcast,
        };
    }
    match entry(f.dst) {
        Entry::Valid(dest) => TxVerdict::Encap { dest, table: true },
        Entry::Drop => TxVerdict::Drop(DropReason::TargetDrop),
        Entry::Pending => TxVerdict::Queue { ask: false },
        Entry::Absent => TxVerdict::Queue { ask: true },
    }
}

/// Readies a frame a guest sent for encapsulation, given its virtio-net
/// header `hdr`: a TCP super-frame is checked and described for cutting
/// into segments whose IP packets fit the MTU; a partial checksum is
/// completed in `frame` (the caller then sends the frame with a plain
/// header); a frame larger than the overlay carries, or an offload request
/// overlayd cannot honour, is refused with the drop reason.
pub fn prepare_tx(
    cfg: &OverlayConfig,
    hdr: &VnetHdr,
    frame: &mut [u8],
) -> Result<TxPrepared, DropReason> {
    if hdr.is_tso() {
        return match Tso::new(frame, hdr) {
            Ok(t) if t.ip_segment_max() <= cfg.mtu as usize => Ok(TxPrepared::Tso(t)),
            Ok(_) => Err(DropReason::TooBig),
            Err(_) => Err(DropReason::BadOffload),
        };
    }
    if frame.len() > cfg.max_frame() {
        return Err(DropReason::TooBig);
    }
    if hdr.gso_type != GSO_NONE {
        return Err(DropReason::BadOffload);
    }
    if hdr.flags & F_NEEDS_CSUM == 0 {
        return Ok(TxPrepared::Plain);
    }
    match offload::complete_checksum(frame, hdr.csum_start, hdr.csum_offset) {
        Ok(()) => Ok(TxPrepared::Completed),
        Err(_) => Err(DropReason::BadOffload),
    }
}

/// A frame ready for encapsulation.
#[derive(Debug)]
pub enum TxPrepared {
    /// Nothing was left to do.
    Plain,
    /// Its partial checksum was completed: its header is plain now.
    Completed,
    /// A TCP super-frame, to be cut into these segments.
    Tso(Tso),
}

impl TxPrepared {
    /// The super-frame's segmentation, if it is one.
    pub fn tso(self) -> Option<Tso> {
        match self {
            TxPrepared::Tso(t) => Some(t),
            _ => None,
        }
    }
}

/// One overlay, as the thread deciding one of its received frames knows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RxPort {
    /// `target/check_source`: take a frame only from where its inner
    /// source lives.
    pub check_source: bool,
    /// The destination mode the search plugin gave (`None`: not yet).
    pub mode: Option<DestMode>,
    /// The point destination, in point mode.
    pub point: Option<SocketAddr>,
}

/// The facts of a received frame that its verdict depends on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RxFacts {
    /// The inner source MAC.
    pub src: Mac,
    /// The underlay address it came from.
    pub from: IpAddr,
    /// It fits the overlay: a frame within the MTU and its link-layer
    /// header, or a super-frame whose segments' IP packets do.
    pub fits: bool,
}

/// What becomes of a frame received from the underlay.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RxVerdict {
    /// Write it to the TAP device.
    Deliver,
    /// Its source is not known yet and was just made pending: drop it as
    /// `unknown-peer` and ask varpd where the source lives.
    AskSource,
    /// Drop it, counted under the reason.
    Drop(DropReason),
}

/// Decides whether a frame received from the underlay (already matched to
/// its overlay by VNI) reaches the TAP device. `source` (the target
/// table's check of the inner source against the sender) is asked only
/// when the overlay checks sources in dynamic mode.
pub fn decide_rx(
    port: &RxPort,
    f: &RxFacts,
    source: impl FnOnce(Mac, IpAddr) -> SourceCheck,
) -> RxVerdict {
    if port.check_source {
        if f.src.is_multicast() {
            return RxVerdict::Drop(DropReason::SpoofedSource);
        }
        match (port.mode, port.point) {
            (Some(DestMode::Point), Some(p)) if p.ip() == f.from => {}
            (Some(DestMode::Point), _) => return RxVerdict::Drop(DropReason::SpoofedSource),
            // Not configured by varpd yet: nothing is known.
            (None, _) => return RxVerdict::Drop(DropReason::UnknownPeer),
            (Some(DestMode::Dynamic), _) => match source(f.src, f.from) {
                SourceCheck::Known => {}
                SourceCheck::Elsewhere => return RxVerdict::Drop(DropReason::SpoofedSource),
                SourceCheck::Unknown { ask: true } => return RxVerdict::AskSource,
                SourceCheck::Unknown { ask: false } => {
                    return RxVerdict::Drop(DropReason::UnknownPeer)
                }
            },
        }
    }
    if !f.fits {
        return RxVerdict::Drop(DropReason::TooBig);
    }
    RxVerdict::Deliver
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    const A: Mac = Mac([2, 0, 0, 0, 0, 0xa]);
    const B: Mac = Mac([2, 0, 0, 0, 0, 0xb]);

    fn at(last: u8) -> SocketAddr {
        SocketAddr::from(([10, 0, 0, last], 4789))
    }

    fn dynamic(varpd: Varpd) -> TxPort {
        TxPort {
            mode: Some(DestMode::Dynamic),
            point: None,
            varpd,
        }
    }

    const READY: Varpd = Varpd::Ready {
        broadcasts_waiting: 0,
    };

    fn unicast(dst: Mac) -> TxFacts {
        TxFacts {
            dst,
            group: None,
            tso: false,
        }
    }

    fn broadcast(kind: GroupKind) -> TxFacts {
        TxFacts {
            dst: Mac([0xff; 6]),
            group: Some(kind),
            tso: false,
        }
    }

    fn no_lookup(_: Mac) -> Entry {
        panic!("the table must not be asked")
    }

    #[test]
    fn point_mode_sends_everything_to_the_point_without_the_table() {
        let port = TxPort {
            mode: Some(DestMode::Point),
            point: Some(at(9)),
            varpd: Varpd::Unavailable,
        };
        for f in [
            unicast(B),
            broadcast(GroupKind::Other),
            broadcast(GroupKind::Arp),
        ] {
            assert_eq!(
                decide_tx(&port, &f, no_lookup),
                TxVerdict::Encap {
                    dest: at(9),
                    table: false
                }
            );
        }
    }

    #[test]
    fn an_overlay_without_a_destination_mode_drops_as_no_destination() {
        for port in [
            TxPort {
                mode: None,
                point: None,
                varpd: READY,
            },
            // Point mode without its point (a plugin that gave none).
            TxPort {
                mode: Some(DestMode::Point),
                point: None,
                varpd: READY,
            },
        ] {
            assert_eq!(
                decide_tx(&port, &unicast(B), no_lookup),
                TxVerdict::Drop(DropReason::NoDestination)
            );
        }
    }

    #[test]
    fn unicast_follows_the_target_table() {
        let table: HashMap<Mac, Entry> = [(A, Entry::Valid(at(1))), (B, Entry::Drop)].into();
        let look = |m: Mac| table.get(&m).copied().unwrap_or(Entry::Absent);
        let port = dynamic(READY);
        assert_eq!(
            decide_tx(&port, &unicast(A), look),
            TxVerdict::Encap {
                dest: at(1),
                table: true
            }
        );
        assert_eq!(
            decide_tx(&port, &unicast(B), look),
            TxVerdict::Drop(DropReason::TargetDrop)
        );
        assert_eq!(
            decide_tx(&port, &unicast(Mac([2, 0, 0, 0, 0, 0xc])), look),
            TxVerdict::Queue { ask: true }
        );
        assert_eq!(
            decide_tx(&port, &unicast(A), |_| Entry::Pending),
            TxVerdict::Queue { ask: false }
        );
        // Whatever varpd's state: a valid entry keeps forwarding.
        assert_eq!(
            decide_tx(&dynamic(Varpd::Unavailable), &unicast(A), look),
            TxVerdict::Encap {
                dest: at(1),
                table: true
            }
        );
    }

    #[test]
    fn broadcasts_go_to_varpd_only_when_it_can_answer_them() {
        for kind in [GroupKind::Arp, GroupKind::NeighborSolicit, GroupKind::Dhcp] {
            let f = broadcast(kind);
            assert_eq!(
                decide_tx(&dynamic(READY), &f, no_lookup),
                TxVerdict::AskBroadcast
            );
            assert_eq!(
                decide_tx(&dynamic(Varpd::Unavailable), &f, no_lookup),
                TxVerdict::Drop(DropReason::VarpdUnavailable)
            );
            let busy = Varpd::Ready {
                broadcasts_waiting: BCAST_INFLIGHT_MAX,
            };
            assert_eq!(
                decide_tx(&dynamic(busy), &f, no_lookup),
                TxVerdict::Drop(DropReason::VarpdBusy)
            );
            let almost = Varpd::Ready {
                broadcasts_waiting: BCAST_INFLIGHT_MAX - 1,
            };
            assert_eq!(
                decide_tx(&dynamic(almost), &f, no_lookup),
                TxVerdict::AskBroadcast
            );
            // A worker does not know varpd: the event loop decides again.
            assert_eq!(
                decide_tx(&dynamic(Varpd::NotKnownHere), &f, no_lookup),
                TxVerdict::AskBroadcast
            );
        }
    }

    #[test]
    fn other_multicast_and_group_super_frames_are_unsupported() {
        assert_eq!(
            decide_tx(&dynamic(READY), &broadcast(GroupKind::Other), no_lookup),
            TxVerdict::Drop(DropReason::MulticastUnsupported)
        );
        let f = TxFacts {
            tso: true,
            ..broadcast(GroupKind::Arp)
        };
        assert_eq!(
            decide_tx(&dynamic(READY), &f, no_lookup),
            TxVerdict::Drop(DropReason::MulticastUnsupported)
        );
    }

    fn cfg(mtu: u32) -> OverlayConfig {
        let props: std::collections::BTreeMap<String, String> = [
            ("vxlan/listen_ip".to_string(), "10.0.0.1".to_string()),
            ("mtu".to_string(), mtu.to_string()),
        ]
        .into();
        let spec = overlay_api::OverlaySpec {
            name: "ov0".into(),
            encap: "vxlan".into(),
            search: "direct".into(),
            vnetid: 1,
            props,
            temporary: true,
        };
        OverlayConfig::from_spec(&spec, None).expect("a valid spec")
    }

    /// An IPv4 TCP frame with `payload` bytes of data.
    fn tcp4(payload: usize) -> Vec<u8> {
        let mut f = vec![0u8; 14 + 20 + 20 + payload];
        f[..6].copy_from_slice(&B.0);
        f[6..12].copy_from_slice(&A.0);
        f[12..14].copy_from_slice(&[0x08, 0x00]);
        let ip_len = (20 + 20 + payload) as u16;
        f[14] = 0x45;
        f[16..18].copy_from_slice(&ip_len.to_be_bytes());
        f[22] = 64;
        f[23] = 6;
        f[26..30].copy_from_slice(&[192, 168, 0, 1]);
        f[30..34].copy_from_slice(&[192, 168, 0, 2]);
        f[46] = 0x50; // data offset 5
        f
    }

    #[test]
    fn prepare_tx_refuses_what_does_not_fit_or_cannot_be_done() {
        let c = cfg(1400);
        // A plain frame: within max_frame, nothing to do.
        let mut f = tcp4(1400 - 40);
        assert!(matches!(
            prepare_tx(&c, &VnetHdr::default(), &mut f),
            Ok(TxPrepared::Plain)
        ));
        // One byte more than MTU + Ethernet header + VLAN tag.
        let mut f = vec![0u8; c.max_frame() + 1];
        assert_eq!(
            prepare_tx(&c, &VnetHdr::default(), &mut f).unwrap_err(),
            DropReason::TooBig
        );
        // A GSO type without the TSO layout overlayd knows.
        let mut f = tcp4(100);
        let udp = VnetHdr {
            gso_type: 3, // VIRTIO_NET_HDR_GSO_UDP
            gso_size: 100,
            ..VnetHdr::default()
        };
        assert_eq!(
            prepare_tx(&c, &udp, &mut f).unwrap_err(),
            DropReason::BadOffload
        );
        // A partial checksum outside the frame.
        let bad = VnetHdr {
            flags: F_NEEDS_CSUM,
            csum_start: 5000,
            csum_offset: 16,
            ..VnetHdr::default()
        };
        assert_eq!(
            prepare_tx(&c, &bad, &mut tcp4(10)).unwrap_err(),
            DropReason::BadOffload
        );
        // A partial checksum at the TCP header: completed.
        let ok = VnetHdr {
            flags: F_NEEDS_CSUM,
            csum_start: 34,
            csum_offset: 16,
            ..VnetHdr::default()
        };
        let mut f = tcp4(10);
        assert!(matches!(
            prepare_tx(&c, &ok, &mut f),
            Ok(TxPrepared::Completed)
        ));
        assert_ne!(&f[50..52], &[0, 0], "the checksum was written");
    }

    #[test]
    fn prepare_tx_cuts_super_frames_whose_segments_fit_the_mtu_only() {
        let c = cfg(1400);
        let tso = |mss: u16| VnetHdr {
            flags: F_NEEDS_CSUM,
            gso_type: offload::GSO_TCPV4,
            gso_size: mss,
            csum_start: 34,
            csum_offset: 16,
            ..VnetHdr::default()
        };
        let mut f = tcp4(10_000);
        let t = prepare_tx(&c, &tso(1360), &mut f)
            .expect("segments of 1400-byte IP packets fit")
            .tso()
            .expect("a super-frame");
        assert_eq!(t.ip_segment_max(), 1400);
        assert_eq!(
            prepare_tx(&c, &tso(1361), &mut f).unwrap_err(),
            DropReason::TooBig
        );
        // A TSO header on a frame that is not TCP.
        let mut udp = tcp4(3000);
        udp[23] = 17;
        assert_eq!(
            prepare_tx(&c, &tso(1360), &mut udp).unwrap_err(),
            DropReason::BadOffload
        );
    }

    fn rx(check_source: bool, mode: Option<DestMode>, point: Option<SocketAddr>) -> RxPort {
        RxPort {
            check_source,
            mode,
            point,
        }
    }

    fn facts(src: Mac, from: SocketAddr, fits: bool) -> RxFacts {
        RxFacts {
            src,
            from: from.ip(),
            fits,
        }
    }

    fn no_check(_: Mac, _: IpAddr) -> SourceCheck {
        panic!("the table must not be asked")
    }

    #[test]
    fn received_frames_are_delivered_when_they_fit() {
        let port = rx(false, Some(DestMode::Dynamic), None);
        assert_eq!(
            decide_rx(&port, &facts(A, at(1), true), no_check),
            RxVerdict::Deliver
        );
        assert_eq!(
            decide_rx(&port, &facts(A, at(1), false), no_check),
            RxVerdict::Drop(DropReason::TooBig)
        );
        // Without check_source the source is not looked at at all.
        assert_eq!(
            decide_rx(&port, &facts(Mac([0xff; 6]), at(1), true), no_check),
            RxVerdict::Deliver
        );
    }

    #[test]
    fn check_source_takes_frames_only_from_where_their_source_lives() {
        let port = rx(true, Some(DestMode::Dynamic), None);
        let known = |m: Mac, from: IpAddr| match (m, from) {
            (m, f) if m == A && f == at(1).ip() => SourceCheck::Known,
            (m, _) if m == A => SourceCheck::Elsewhere,
            _ => SourceCheck::Unknown { ask: true },
        };
        assert_eq!(
            decide_rx(&port, &facts(A, at(1), true), known),
            RxVerdict::Deliver
        );
        assert_eq!(
            decide_rx(&port, &facts(A, at(2), true), known),
            RxVerdict::Drop(DropReason::SpoofedSource)
        );
        assert_eq!(
            decide_rx(&port, &facts(B, at(2), true), known),
            RxVerdict::AskSource
        );
        assert_eq!(
            decide_rx(&port, &facts(B, at(2), true), |_, _| SourceCheck::Unknown {
                ask: false
            }),
            RxVerdict::Drop(DropReason::UnknownPeer)
        );
        // A group source is never a guest.
        assert_eq!(
            decide_rx(
                &port,
                &facts(Mac([0x33, 0x33, 0, 0, 0, 1]), at(1), true),
                no_check
            ),
            RxVerdict::Drop(DropReason::SpoofedSource)
        );
        // The source is checked before the size: a spoofed frame is
        // counted as such whatever its size.
        assert_eq!(
            decide_rx(&port, &facts(A, at(2), false), known),
            RxVerdict::Drop(DropReason::SpoofedSource)
        );
        assert_eq!(
            decide_rx(&port, &facts(A, at(1), false), known),
            RxVerdict::Drop(DropReason::TooBig)
        );
    }

    #[test]
    fn check_source_in_point_mode_takes_frames_from_the_point_only() {
        let port = rx(true, Some(DestMode::Point), Some(at(7)));
        assert_eq!(
            decide_rx(&port, &facts(A, at(7), true), no_check),
            RxVerdict::Deliver
        );
        assert_eq!(
            decide_rx(&port, &facts(A, at(8), true), no_check),
            RxVerdict::Drop(DropReason::SpoofedSource)
        );
        // Not configured yet: nothing is known of any source.
        assert_eq!(
            decide_rx(&rx(true, None, None), &facts(A, at(7), true), no_check),
            RxVerdict::Drop(DropReason::UnknownPeer)
        );
    }
}
