//! Why a frame was dropped: the closed, documented set of reasons.
//!
//! Every place in the data plane that frees a frame without delivering it
//! names one of these. The same kebab-case names appear in counters
//! (`drops` in a statistics snapshot), in the `drop` probe, in ovsnoop and in
//! metrics labels, so an operator can follow one reason through every tool.
//! New reasons are added at the end; a name never changes meaning.

use serde::{Deserialize, Serialize};
use std::fmt;

macro_rules! drop_reasons {
    ($( $(#[doc = $doc:literal])* $variant:ident => $name:literal, )*) => {
        /// A reason for dropping a frame.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(rename_all = "kebab-case")]
        pub enum DropReason {
            $( $(#[doc = $doc])* $variant, )*
        }

        impl DropReason {
            /// Every reason, in counter order.
            pub const ALL: &'static [DropReason] = &[ $(DropReason::$variant,)* ];

            /// The reason's stable kebab-case name.
            pub const fn as_str(self) -> &'static str {
                match self { $(DropReason::$variant => $name,)* }
            }

            /// Looks a reason up by its name.
            pub fn from_name(s: &str) -> Option<DropReason> {
                match s { $($name => Some(DropReason::$variant),)* _ => None }
            }
        }
    };
}

drop_reasons! {
    /// Received datagram shorter than the VXLAN header plus an Ethernet header.
    ShortHeader => "short-header",
    /// Received VXLAN header without the I (valid VNI) flag.
    NoVniFlag => "no-vni-flag",
    /// Received VNI that no overlay on this mux uses.
    UnknownVni => "unknown-vni",
    /// Transmitted frame shorter than an Ethernet header.
    RuntFrame => "runt-frame",
    /// Destination's target entry says drop (set by an operator or a plugin).
    TargetDrop => "target-drop",
    /// Pending entry's queue already holds its limit of bytes (128 KiB), or
    /// the overlay's pending entries together cost 16 MiB of memory (a MAC flood).
    QueueOverflow => "queue-overflow",
    /// Point-mode overlay has no destination yet (varpd has not configured it).
    NoDestination => "no-destination",
    /// Broadcast or multicast frame that no plugin can answer (not ARP, NDP or DHCP).
    MulticastUnsupported => "multicast-unsupported",
    /// Frame needs varpd (proxy ARP/NDP/DHCP) but varpd is not connected.
    VarpdUnavailable => "varpd-unavailable",
    /// Too many frames already wait for varpd's answer.
    VarpdBusy => "varpd-busy",
    /// varpd looked at a broadcast frame and had nothing to do with it.
    NotAnswered => "not-answered",
    /// Pending frames discarded by a table flush, entry removal or overlay deletion.
    Flushed => "flushed",
    /// The underlay socket refused to send (no route, buffer full, ...).
    SendError => "send-error",
    /// The TAP device refused the frame.
    TapWriteError => "tap-write-error",
    /// Frame larger than the overlay's MTU allows.
    TooBig => "too-big",
    /// A miss needed a new target entry but the table holds `target/max_entries`.
    TableFull => "table-full",
    /// The TAP device handed over a frame whose offload (virtio-net) header
    /// does not fit it: a checksum position outside the frame, or a TCP
    /// segmentation request for what is not Ethernet/IP/TCP.
    BadOffload => "bad-offload",
    /// Received encapsulation header of a version this endpoint does not
    /// know (Geneve version other than 0, GRE version other than 0 or with
    /// the RFC 1701 routing, strict-route or recursion bits).
    BadVersion => "bad-version",
    /// Received Geneve control message (O bit): never forwarded to a tenant.
    ControlFrame => "control-frame",
    /// Received Geneve header with a critical option (or the C bit), and
    /// this endpoint understands no option: RFC 8926 says drop it.
    CriticalOption => "critical-option",
    /// Received payload that is not Ethernet: the Geneve or GRE protocol
    /// type is not Transparent Ethernet Bridging (0x6558).
    BadProtocol => "bad-protocol",
    /// Received GRE header without a key (K bit): an NVGRE packet needs its VSID.
    NoKey => "no-key",
    /// Received GRE header whose checksum does not match the packet, or a
    /// received TCP super-frame (one datagram larger than the overlay's
    /// longest frame) whose TCP checksum is neither correct nor exactly
    /// the partial sum a kernel peer leaves.
    BadChecksum => "bad-checksum",
    /// Received frame whose inner source MAC has no valid target entry yet,
    /// on an overlay with `target/check_source=yes`: dropped while varpd is
    /// asked where that MAC lives.
    UnknownPeer => "unknown-peer",
    /// Received frame whose inner source MAC the target table maps to
    /// another underlay address, or to drop (point mode: from an address
    /// other than the destination), on an overlay with
    /// `target/check_source=yes`: a spoofed source or VNI.
    SpoofedSource => "spoofed-source",
}

impl fmt::Display for DropReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_match_serde() {
        for &r in DropReason::ALL {
            assert_eq!(DropReason::from_name(r.as_str()), Some(r));
            assert_eq!(
                serde_json::to_string(&r).unwrap(),
                format!("\"{}\"", r.as_str())
            );
        }
    }
}
