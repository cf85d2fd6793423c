//! The values carried by control-socket messages.

use crate::Mac;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;

/// How an overlay picks the underlay destination of a frame (illumos
/// `OVERLAY_TARGET_POINT` / `OVERLAY_TARGET_DYNAMIC`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DestMode {
    /// Every frame goes to one destination that the plugin names.
    Point,
    /// Each destination MAC is looked up in the target table.
    Dynamic,
}

/// What an overlay is made of, as `ovadm create-overlay` gives it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OverlaySpec {
    /// Link name, also the name of the TAP device.
    pub name: String,
    /// Encapsulation module (`vxlan`).
    pub encap: String,
    /// Search plugin in varpd (`direct`, `files`, ...).
    pub search: String,
    /// Virtual network id (the VXLAN VNI), 0..=16777215.
    pub vnetid: u32,
    /// Temporary: not persisted across overlayd restarts.
    #[serde(default)]
    pub temporary: bool,
    /// Every other property, by its full name (`mtu`, `vxlan/listen_ip`, `files/config`, ...).
    #[serde(default)]
    pub props: BTreeMap<String, String>,
}

/// Whether a property can be changed after creation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Perm {
    /// Read and write (`rw`).
    Rw,
    /// Read only (`r-`).
    R,
}

impl fmt::Display for Perm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Perm::Rw => "rw",
            Perm::R => "r-",
        })
    }
}

/// A property's definition (its name, permissions, default and range),
/// as a module or plugin declares it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PropSpec {
    /// Full name, `module/name` for module and plugin properties.
    pub name: String,
    /// Permissions.
    pub perm: Perm,
    /// Must be set at creation.
    pub required: bool,
    /// Default value, if any.
    pub default: Option<String>,
    /// Accepted values or range, as text (`576-8900`, `1-65535`), if bounded.
    pub possible: Option<String>,
}

/// One row of `show-overlay`: a property of one overlay.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PropRow {
    /// Overlay name.
    pub link: String,
    /// Property name.
    pub property: String,
    /// Permissions.
    pub perm: Perm,
    /// Required at creation.
    pub required: bool,
    /// Current value, if set.
    pub value: Option<String>,
    /// Default value, if any.
    pub default: Option<String>,
    /// Accepted values, if bounded.
    pub possible: Option<String>,
}

/// Health of an overlay (`show-overlay -f`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OverlayState {
    /// Forwarding with everything it needs.
    #[default]
    Online,
    /// Missing something (varpd, a plugin, a configuration); the reason says what.
    Degraded,
}

impl fmt::Display for OverlayState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            OverlayState::Online => "ONLINE",
            OverlayState::Degraded => "DEGRADED",
        })
    }
}

/// One row of `show-overlay -f`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusRow {
    /// Overlay name.
    pub link: String,
    /// Health.
    pub status: OverlayState,
    /// Why it is degraded, if it is.
    pub details: Option<String>,
}

/// Where frames for one VL2 MAC go.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "state", content = "addr")]
pub enum TargetDest {
    /// Asked varpd, waiting for the answer; frames are queued.
    Pending,
    /// Frames are dropped.
    Drop,
    /// Frames are encapsulated to this underlay (UL3) address and port.
    Valid(SocketAddr),
}

impl fmt::Display for TargetDest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TargetDest::Pending => f.write_str("pending"),
            TargetDest::Drop => f.write_str("drop"),
            // Port 0: an encapsulation without ports (NVGRE), so the address alone.
            TargetDest::Valid(a) if a.port() == 0 => write!(f, "{}", a.ip()),
            TargetDest::Valid(a) => write!(f, "{a}"),
        }
    }
}

/// One row of `show-overlay -t`: a target-table entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetRow {
    /// Overlay name.
    pub link: String,
    /// The VL2 MAC.
    pub target: Mac,
    /// Its destination.
    pub destination: TargetDest,
    /// Milliseconds since the entry was created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub age_ms: Option<u64>,
    /// Milliseconds since a frame last used it (absent: never used).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_ms: Option<u64>,
    /// Frames that looked it up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frames: Option<u64>,
    /// Bytes of those frames.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
}

/// Where a paged target-table dump resumes: the overlay, and the position
/// in its table. Opaque to clients: give back what the last page returned.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetCursor {
    /// The overlay being dumped.
    pub overlay: String,
    /// Position in its table.
    pub pos: u64,
}

/// What the data path's offloads did: TCP super-frames cut apart on the
/// way out (TSO), segments coalesced on the way in (GRO), batched UDP sends
/// (GSO), and super-frames written whole to the underlay TAP device for the
/// kernel to cut (tunnel GSO). Frame counters elsewhere count segments, as
/// on the wire.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OffloadStats {
    /// TCP super-frames read from the TAP device.
    pub tso_frames: u64,
    /// Segments they were cut into.
    pub tso_segments: u64,
    /// Coalesced super-frames written to the TAP device.
    pub gro_frames: u64,
    /// Segments they were made of.
    pub gro_segments: u64,
    /// UDP sends that carried more than one datagram.
    pub gso_sends: u64,
    /// Datagrams those sends carried.
    pub gso_datagrams: u64,
    /// TCP super-frames written whole to the underlay TAP device for the
    /// kernel to segment (`overlayd --underlay-bridge`).
    #[serde(default)]
    pub tunnel_gso_sends: u64,
    /// Segments (datagrams on the wire) those super-frames stand for.
    #[serde(default)]
    pub tunnel_gso_segments: u64,
}

/// The target table's shape and its live resizes.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TableStats {
    /// Entries.
    pub entries: u64,
    /// `target/max_entries`.
    pub max_entries: u64,
    /// Buckets of the index.
    pub capacity: u64,
    /// Entries per bucket.
    pub load: f64,
    /// Resizes completed.
    pub resizes: u64,
    /// Entries moved by resizes.
    pub entries_moved: u64,
    /// A resize is under way.
    pub resizing: bool,
    /// New entries refused at `target/max_entries`.
    pub rejected_full: u64,
}

/// Counters of one overlay, since it was created.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct OverlayStats {
    /// Overlay name.
    pub name: String,
    /// Its VNI.
    pub vnetid: u32,
    /// Frames written to the TAP device (from the underlay or injected).
    pub rx_frames: u64,
    /// Bytes of those frames.
    pub rx_bytes: u64,
    /// Frames read from the TAP device and sent to the underlay.
    pub tx_frames: u64,
    /// Bytes of those frames (inner frame length).
    pub tx_bytes: u64,
    /// Lookups sent to varpd.
    pub lookups: u64,
    /// Unicast frames that found no valid target entry.
    pub misses: u64,
    /// Frames dropped because a pending entry's queue was full.
    pub queue_overflows: u64,
    /// Frames injected by varpd (proxy ARP/NDP replies).
    pub injected: u64,
    /// Entries in the target table now.
    pub table_entries: u64,
    /// Drops, by [`crate::DropReason`] name; reasons that never happened may be absent.
    pub drops: BTreeMap<String, u64>,
    /// Health now.
    #[serde(default = "online")]
    pub status: OverlayState,
    /// Counters per underlay peer (UL3 address), busiest first (only the
    /// busiest `max_peers` when the request said so).
    #[serde(default)]
    pub peers: Vec<PeerStats>,
    /// Underlay peers counted, including any that `max_peers` left out of
    /// `peers`; 0 from an older overlayd.
    #[serde(default)]
    pub peers_total: u64,
    /// Latency of varpd lookups (request to answer), as a histogram.
    #[serde(default)]
    pub lookup_latency: Vec<HistBucket>,
    /// The sum of every latency in `lookup_latency`, in nanoseconds
    /// (saturating); 0 from an older overlayd that did not keep it.
    #[serde(default)]
    pub lookup_latency_sum_ns: u64,
    /// The target table.
    #[serde(default)]
    pub table: TableStats,
    /// CLOCK_MONOTONIC nanoseconds when the overlay was created (the clock
    /// of [`StatsSnapshot::mono_ns`]): its counters count since then. 0 if
    /// overlayd did not say (older overlayd).
    #[serde(default)]
    pub created_mono_ns: u64,
    /// What the offloads did.
    #[serde(default)]
    pub offload: OffloadStats,
    /// Counters per VNIC on this overlay, by name (absent from an older
    /// overlayd).
    #[serde(default)]
    pub vnics: Vec<VnicStats>,
}

fn online() -> OverlayState {
    OverlayState::Online
}

/// Traffic between one overlay and one underlay peer.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerStats {
    /// The peer's UL3 address.
    pub addr: Option<std::net::IpAddr>,
    /// Frames sent to it.
    pub tx_frames: u64,
    /// Bytes (inner) sent to it.
    pub tx_bytes: u64,
    /// Frames received from it.
    pub rx_frames: u64,
    /// Bytes (inner) received from it.
    pub rx_bytes: u64,
}

/// What `ovadm create-vnic` asks for: a VNIC (a macvlan in bridge mode on
/// the overlay's TAP device), optionally moved into a network namespace.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VnicSpec {
    /// Link name of the VNIC (unique per overlayd; 1-15 bytes).
    pub name: String,
    /// The overlay it is created over (`-l`).
    pub over: String,
    /// Its MAC (`-m`); a random locally administered one when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<Mac>,
    /// The network namespace (a name under `/run/netns`) to move it into.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub netns: Option<String>,
}

/// Where a VNIC's MAC came from (dladm's `MACADDRTYPE`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MacAddrType {
    /// Chosen by overlayd: random, locally administered, unicast.
    Random,
    /// Given by the operator (`-m MAC`).
    Fixed,
}

impl fmt::Display for MacAddrType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MacAddrType::Random => "random",
            MacAddrType::Fixed => "fixed",
        })
    }
}

/// One row of `show-vnic`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VnicRow {
    /// VNIC name.
    pub link: String,
    /// The overlay it is over.
    pub over: String,
    /// Its MAC.
    pub macaddress: Mac,
    /// Where the MAC came from.
    pub macaddrtype: MacAddrType,
    /// The network namespace it lives in; overlayd's own when absent.
    pub netns: Option<String>,
    /// Its MTU (the overlay's).
    pub mtu: u32,
}

/// Counters of one VNIC, from the guest's point of view: *rx* is what
/// overlayd delivered from the underlay to the VNIC's MAC, *tx* what it
/// read from the TAP device with the VNIC's MAC as source (whatever its
/// destination). Broadcast and multicast frames delivered are not counted
/// per VNIC, nor is traffic between VNICs of one host, which the kernel's
/// macvlan bridge carries without overlayd.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VnicStats {
    /// VNIC name.
    pub name: String,
    /// Its MAC.
    pub mac: Mac,
    /// Frames delivered to it.
    pub rx_frames: u64,
    /// Bytes of those frames.
    pub rx_bytes: u64,
    /// Frames it sent (segments, as on the wire).
    pub tx_frames: u64,
    /// Bytes of those frames.
    pub tx_bytes: u64,
}

/// One histogram bucket: how many observations were at most `le_ns`
/// (and more than the previous bucket's bound). Only non-empty buckets are
/// listed.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistBucket {
    /// Upper bound, in nanoseconds.
    pub le_ns: u64,
    /// Observations in this bucket.
    pub count: u64,
}

/// Counters of one mux (a shared underlay socket).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MuxStats {
    /// Listen address and port.
    pub listen: Option<SocketAddr>,
    /// Datagrams received.
    pub rx_datagrams: u64,
    /// Drops that belong to no overlay (short header, no VNI flag, unknown
    /// VNI, and the header errors of every encapsulation module).
    pub drops: BTreeMap<String, u64>,
    /// Encapsulation module of the mux (`vxlan`, `geneve`, ...).
    #[serde(default)]
    pub encap: String,
    /// Header options received and skipped, not interpreted (Geneve's
    /// non-critical options).
    #[serde(default)]
    pub options_skipped: u64,
}

/// A consistent snapshot of overlayd's counters.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct StatsSnapshot {
    /// Nanoseconds since the Unix epoch when the snapshot was taken.
    pub time_ns: u64,
    /// CLOCK_MONOTONIC nanoseconds when the snapshot was taken (for rates).
    #[serde(default)]
    pub mono_ns: u64,
    /// Whether varpd is linked now.
    pub varpd_linked: bool,
    /// Per overlay.
    pub overlays: Vec<OverlayStats>,
    /// Per mux.
    pub muxes: Vec<MuxStats>,
    /// CLOCK_MONOTONIC nanoseconds when overlayd started (the clock of
    /// `mono_ns`); 0 if overlayd did not say (older overlayd).
    #[serde(default)]
    pub started_mono_ns: u64,
    /// Capture counters (`ovsnoop --capture`); zero from an older overlayd.
    #[serde(default)]
    pub capture: crate::capture::CaptureStats,
}

/// A search plugin as varpd announces it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginInfo {
    /// Plugin name (`direct`, `files`).
    pub name: String,
    /// Destination mode of overlays that use it.
    pub mode: DestMode,
    /// Its properties.
    pub props: Vec<PropSpec>,
}

/// What a varpd instance reports about itself (`varpd.sock` status).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceInfo {
    /// overlayd's id for the overlay.
    pub oid: u64,
    /// Overlay name.
    pub overlay: String,
    /// Plugin name.
    pub search: String,
    /// Whether the instance works.
    pub status: OverlayState,
    /// Why not, if not.
    pub details: Option<String>,
    /// Lookups answered.
    pub lookups: u64,
    /// ARP requests answered by proxy.
    pub proxy_arp: u64,
    /// Neighbour solicitations answered by proxy.
    pub proxy_ndp: u64,
    /// DHCP requests re-addressed to the client's DHCP server and resent.
    #[serde(default)]
    pub proxy_dhcp: u64,
    /// Target entries the plugin invalidated in overlayd because their
    /// mapping changed, moved or expired.
    #[serde(default)]
    pub invalidations: u64,
    /// MAC conflicts the instance yielded: a MAC one of this host's guests
    /// uses was registered, later, by another host (the etcd plugin).
    #[serde(default)]
    pub mac_conflicts: u64,
}

/// Kinds of failure a control socket reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ErrorKind {
    /// The request could not be parsed or makes no sense.
    BadRequest,
    /// No such overlay (or entry).
    NotFound,
    /// Something by that name (or id) already exists.
    Exists,
    /// A property is unknown, missing or out of range.
    Property,
    /// A search plugin rejected its configuration.
    Plugin,
    /// The operation needs a system resource that could not be had.
    System,
    /// The peer may not use this control socket (see [`crate::access`]).
    Permission,
}

/// An error reply: what failed, in words that name the culprit.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    /// Category.
    pub kind: ErrorKind,
    /// Human-readable message naming what was wrong.
    pub message: String,
}

impl ApiError {
    /// Builds an error of `kind`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        ApiError {
            kind,
            message: message.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_snapshot_carries_overlayds_start_and_an_older_one_still_parses() {
        let s = StatsSnapshot {
            time_ns: 1,
            mono_ns: 100_000_000_000,
            started_mono_ns: 70_000_000_000,
            ..StatsSnapshot::default()
        };
        let back: StatsSnapshot =
            serde_json::from_str(&serde_json::to_string(&s).unwrap()).unwrap();
        assert_eq!(back, s);
        // What an overlayd from before the start time sent: no mono_ns, no
        // started_mono_ns. Both read as 0 ("not said").
        let old = r#"{"time_ns":5,"varpd_linked":true,"overlays":[],"muxes":[]}"#;
        let s: StatsSnapshot = serde_json::from_str(old).unwrap();
        assert_eq!((s.time_ns, s.mono_ns, s.started_mono_ns), (5, 0, 0));
        assert!(s.varpd_linked);
    }
}
