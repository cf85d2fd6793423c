//! Capture with decisions: the frames overlayd handled, each with what it
//! did with it, streamed to a client over the control socket.
//!
//! A client sends [`crate::proto::Request::CaptureStart`]; overlayd answers
//! [`crate::proto::Reply::Capturing`] (the overlays captured, with their
//! VNIs) and from then on writes one [`CaptureMsg`] per line on that
//! connection: a [`CaptureMsg::Frame`] per frame, and a
//! [`CaptureMsg::Lost`] whenever frames were lost (the ring between the
//! forwarding threads and the event loop was full, or this client read
//! too slowly: forwarding never waits for a capture). The client ends it
//! with [`crate::proto::Request::CaptureStop`], answered by
//! [`CaptureMsg::End`] with the totals; the connection then serves
//! requests again. Closing the connection ends the capture too.

use crate::hexbytes;
use crate::DropReason;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::SocketAddr;

/// Which way a captured frame went.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CaptureDir {
    /// Read from the overlay's TAP device (a guest sent it), or resent.
    Tx,
    /// Received from the underlay.
    Rx,
    /// Written into the TAP device by overlayd (varpd's proxy ARP/NDP
    /// reply, or `ovadm inject-frame`).
    Inject,
}

impl CaptureDir {
    /// The direction's name (`tx`, `rx`, `inject`).
    pub fn as_str(self) -> &'static str {
        match self {
            CaptureDir::Tx => "tx",
            CaptureDir::Rx => "rx",
            CaptureDir::Inject => "inject",
        }
    }
}

/// What overlayd did with a captured frame: its verdict as performed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "verdict", rename_all = "kebab-case")]
pub enum CaptureVerdict {
    /// Encapsulated and sent to this underlay (UL3) address.
    Sent {
        /// Where.
        dest: SocketAddr,
    },
    /// Written to the overlay's TAP device, received from this UL3 address
    /// (named `peer`: the frame's own `from` is the same address).
    Delivered {
        /// The sender.
        peer: SocketAddr,
    },
    /// Queued behind a lookup of its destination (asked now with this
    /// lookup id, or behind one already asked).
    Queued {
        /// The lookup asked for it, if this frame asked one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        lookup: Option<u64>,
    },
    /// Handed to varpd with its lookup (ARP, NDP, DHCP).
    ToVarpd {
        /// The lookup id.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        lookup: Option<u64>,
    },
    /// varpd answered the broadcast it was handed itself (its proxy reply,
    /// if any, is captured as injected).
    Answered,
    /// Written into the TAP device by overlayd.
    Injected,
    /// Dropped, with its reason.
    Dropped {
        /// Why.
        reason: DropReason,
    },
}

impl CaptureVerdict {
    /// Whether the frame was dropped.
    pub fn is_drop(&self) -> bool {
        matches!(self, CaptureVerdict::Dropped { .. })
    }
}

impl fmt::Display for CaptureVerdict {
    /// The verdict as `ovsnoop --trace` words it, and as the pcapng
    /// comment holds it: `sent to 10.0.0.2:4789`, `dropped: not-answered`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CaptureVerdict::Sent { dest } => write!(f, "sent to {dest}"),
            CaptureVerdict::Delivered { peer } => write!(f, "delivered from {peer}"),
            CaptureVerdict::Queued { lookup: Some(id) } => {
                write!(f, "queued for lookup (lookup {id})")
            }
            CaptureVerdict::Queued { lookup: None } => write!(f, "queued for lookup"),
            CaptureVerdict::ToVarpd { lookup: Some(id) } => {
                write!(f, "handed to varpd (lookup {id})")
            }
            CaptureVerdict::ToVarpd { lookup: None } => write!(f, "handed to varpd"),
            CaptureVerdict::Answered => write!(f, "answered by varpd"),
            CaptureVerdict::Injected => write!(f, "injected"),
            CaptureVerdict::Dropped { reason } => write!(f, "dropped: {reason}"),
        }
    }
}

/// An overlay being captured, as [`crate::proto::Reply::Capturing`] lists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaptureOverlay {
    /// Overlay name.
    pub name: String,
    /// Its VNI.
    pub vnetid: u32,
}

/// One captured frame.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaptureFrame {
    /// When overlayd handled it, nanoseconds since the Unix epoch.
    pub ts_ns: u64,
    /// The overlay; absent for a datagram that a mux dropped before any
    /// overlay (unknown VNI, a bad header).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overlay: Option<String>,
    /// The overlay's VNI (for a mux drop, the VNI the datagram carried,
    /// 0 if none could be read).
    pub vni: u32,
    /// Which way it went.
    pub dir: CaptureDir,
    /// What overlayd did with it.
    #[serde(flatten)]
    pub verdict: CaptureVerdict,
    /// Its length (`frame` may be cut to the capture's snap length).
    pub len: u32,
    /// The inner Ethernet frame (for a mux drop, the datagram's payload as
    /// received: encapsulation header first).
    #[serde(with = "hexbytes")]
    pub frame: Vec<u8>,
    /// rx: the underlay sender.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<SocketAddr>,
    /// rx: the mux (underlay address and port) it arrived on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listen: Option<SocketAddr>,
    /// rx: the outer encapsulation header (VXLAN, Geneve, GRE), as received.
    #[serde(default, with = "hexbytes", skip_serializing_if = "Vec::is_empty")]
    pub outer: Vec<u8>,
}

/// A line overlayd writes on a capturing connection.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "capture", rename_all = "kebab-case")]
pub enum CaptureMsg {
    /// A frame.
    Frame(CaptureFrame),
    /// Frames were lost to this capture; `total` since it started.
    Lost {
        /// Frames lost so far.
        total: u64,
    },
    /// The capture ended (answer to [`crate::proto::Request::CaptureStop`]).
    End {
        /// Frames sent to this client.
        frames: u64,
        /// Frames lost to it.
        lost: u64,
    },
}

/// overlayd's capture counters, in a statistics snapshot.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaptureStats {
    /// Captures running now.
    pub sessions: u32,
    /// Frames captured (copied into the ring) since overlayd started.
    pub frames: u64,
    /// Frames lost to a capture since overlayd started: the ring was full
    /// or busy, or a client read too slowly.
    pub lost: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frame_line_round_trips_with_its_verdict_flat() {
        let f = CaptureMsg::Frame(CaptureFrame {
            ts_ns: 1,
            overlay: Some("ov0".into()),
            vni: 7,
            dir: CaptureDir::Tx,
            verdict: CaptureVerdict::Dropped {
                reason: DropReason::NotAnswered,
            },
            len: 3,
            frame: vec![1, 2, 3],
            from: None,
            listen: None,
            outer: vec![],
        });
        let s = serde_json::to_string(&f).unwrap();
        assert!(
            s.contains(r#""verdict":"dropped","reason":"not-answered""#),
            "{s}"
        );
        assert_eq!(serde_json::from_str::<CaptureMsg>(&s).unwrap(), f);
        let CaptureMsg::Frame(fr) = f else {
            unreachable!()
        };
        assert_eq!(fr.verdict.to_string(), "dropped: not-answered");
        // A delivered frame's sender is in the verdict and the frame alike.
        let from: SocketAddr = "10.0.0.2:4789".parse().unwrap();
        let d = CaptureMsg::Frame(CaptureFrame {
            dir: CaptureDir::Rx,
            verdict: CaptureVerdict::Delivered { peer: from },
            from: Some(from),
            outer: vec![8, 0, 0, 0, 0, 0, 7, 0],
            ..fr
        });
        let s = serde_json::to_string(&d).unwrap();
        assert_eq!(s.matches("\"from\"").count(), 1, "{s}");
        assert_eq!(serde_json::from_str::<CaptureMsg>(&s).unwrap(), d);
    }
}
