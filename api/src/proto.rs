//! The messages on the control sockets: one JSON object per line.
//!
//! ## overlayd.sock
//! A client writes a [`Request`] line and reads one [`Reply`] line, as many
//! times as it likes on one connection. [`Request::VarpdHello`] is special:
//! it turns the connection into the *varpd link*. After the
//! [`Reply::Linked`] answer, overlayd writes [`DriverMsg`] lines and varpd
//! writes [`VarpdMsg`] lines, asynchronously, until either side closes.
//! Only one link exists at a time; a new hello replaces the old link.
//!
//! On (re)link overlayd sends an [`DriverMsg::Instance`] for every overlay,
//! then re-sends every lookup still pending, so varpd may restart at any
//! time and needs no state of its own to resume.
//!
//! ## varpd.sock
//! [`VarpdRequest`] / [`VarpdReply`], request and reply as above.

use crate::hexbytes;
use crate::types::*;
use crate::Mac;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

/// A request to overlayd.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case")]
pub enum Request {
    /// Create an overlay (its TAP device and its varpd instance).
    CreateOverlay {
        /// What to create.
        spec: OverlaySpec,
    },
    /// Delete an overlay and its TAP device.
    DeleteOverlay {
        /// Overlay name.
        name: String,
    },
    /// Properties of one overlay or all.
    ShowProps {
        /// Overlay name; all when absent.
        name: Option<String>,
    },
    /// Health of one overlay or all.
    ShowStatus {
        /// Overlay name; all when absent.
        name: Option<String>,
    },
    /// Target-table dump of one overlay or all, a page at a time.
    ShowTargets {
        /// Overlay name; all when absent.
        name: Option<String>,
        /// Where to resume (the `next` of the previous page); from the start when absent.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cursor: Option<TargetCursor>,
        /// Most rows in this page (overlayd caps it).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        limit: Option<u32>,
    },
    /// Set a target entry by hand (`modify-overlay -s`).
    SetTarget {
        /// Overlay name.
        name: String,
        /// The VL2 MAC.
        mac: Mac,
        /// `Valid(addr)` or `Drop`; `Pending` is refused.
        dest: TargetDest,
    },
    /// Remove one target entry (`modify-overlay -d`).
    RemoveTarget {
        /// Overlay name.
        name: String,
        /// The VL2 MAC.
        mac: Mac,
    },
    /// Remove every target entry (`modify-overlay -f`).
    FlushTargets {
        /// Overlay name.
        name: String,
    },
    /// A statistics snapshot.
    Stats {
        /// Overlay name; all when absent.
        name: Option<String>,
        /// At most this many underlay peers per overlay, the busiest (all
        /// when absent): a scraper that keeps the top N asks for only those.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        max_peers: Option<u32>,
    },
    /// Create a VNIC over an overlay (`create-vnic`); answered with
    /// [`Reply::Vnics`] holding the new VNIC's row.
    CreateVnic {
        /// What to create.
        spec: VnicSpec,
    },
    /// Delete a VNIC (`delete-vnic`).
    DeleteVnic {
        /// VNIC name.
        name: String,
    },
    /// VNICs, one or all (`show-vnic`).
    ShowVnics {
        /// VNIC name; all when absent.
        name: Option<String>,
    },
    /// Write a frame into an overlay's TAP device as if it had come from
    /// the underlay (`ovadm inject-frame`, illumos `OVERLAY_TARG_INJECT`).
    /// The frame must hold an Ethernet header, fit the overlay's MTU and
    /// come from a unicast MAC; overlayd counts it as injected.
    InjectFrame {
        /// Overlay name.
        name: String,
        /// The whole Ethernet frame.
        #[serde(with = "hexbytes")]
        frame: Vec<u8>,
    },
    /// Send a frame out of an overlay as if its TAP device had sent it:
    /// through the target table and the mux like any other (`ovadm
    /// resend-frame`, illumos `OVERLAY_TARG_RESEND`). Checked as
    /// [`Request::InjectFrame`], and its destination must be unicast.
    ResendFrame {
        /// Overlay name.
        name: String,
        /// The whole Ethernet frame.
        #[serde(with = "hexbytes")]
        frame: Vec<u8>,
    },
    /// Start a capture with decisions (`ovsnoop --capture`): answered with
    /// [`Reply::Capturing`], then [`crate::capture::CaptureMsg`] lines on
    /// this connection until [`Request::CaptureStop`] (or the connection
    /// closes). See [`crate::capture`].
    CaptureStart {
        /// Overlays to capture, by name; every overlay (and the muxes'
        /// own drops) when empty.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        overlays: Vec<String>,
        /// Only frames that were dropped.
        #[serde(default)]
        drops_only: bool,
        /// Bytes kept of each frame (0 or absent: all of it).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        snaplen: Option<u32>,
    },
    /// End this connection's capture: answered with
    /// [`crate::capture::CaptureMsg::End`], after every frame captured before.
    CaptureStop,
    /// varpd introduces itself; the connection becomes the varpd link.
    VarpdHello {
        /// Protocol version, [`crate::PROTOCOL_VERSION`].
        version: u32,
        /// varpd's process id (for logs).
        pid: u32,
        /// The plugins it offers.
        plugins: Vec<PluginInfo>,
    },
}

/// overlayd's answer to a [`Request`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "reply", rename_all = "kebab-case")]
pub enum Reply {
    /// Done.
    Ok {
        /// Something the operator should know although it worked (e.g. the
        /// overlay is degraded because varpd is not running).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        warning: Option<String>,
    },
    /// Failed.
    Error {
        /// What failed.
        error: ApiError,
    },
    /// Answer to [`Request::ShowProps`].
    Props {
        /// Rows.
        rows: Vec<PropRow>,
    },
    /// Answer to [`Request::ShowStatus`].
    Status {
        /// Rows.
        rows: Vec<StatusRow>,
    },
    /// Answer to [`Request::ShowTargets`].
    Targets {
        /// Rows.
        rows: Vec<TargetRow>,
        /// Where the next page starts; absent on the last page.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        next: Option<TargetCursor>,
    },
    /// Answer to [`Request::Stats`].
    Stats {
        /// The snapshot.
        snapshot: StatsSnapshot,
    },
    /// Answer to [`Request::ShowVnics`] and [`Request::CreateVnic`].
    Vnics {
        /// Rows, by name.
        rows: Vec<VnicRow>,
    },
    /// Answer to [`Request::VarpdHello`]: the link is up.
    Linked,
    /// Answer to [`Request::CaptureStart`]: the capture runs.
    Capturing {
        /// The overlays captured (every overlay when the request named none).
        overlays: Vec<crate::capture::CaptureOverlay>,
    },
}

/// overlayd → varpd, on the link.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "msg", rename_all = "kebab-case")]
pub enum DriverMsg {
    /// Create (or re-create, after a relink) the plugin instance of an overlay.
    /// varpd answers [`VarpdMsg::InstanceReady`] or [`VarpdMsg::InstanceFailed`].
    Instance {
        /// overlayd's id for this overlay (illumos' varpd instance id).
        oid: u64,
        /// Overlay name.
        overlay: String,
        /// VNI.
        vnetid: u32,
        /// Search plugin.
        search: String,
        /// Every property of the overlay, module and plugin alike.
        props: BTreeMap<String, String>,
    },
    /// The overlay is gone; destroy its instance.
    InstanceDelete {
        /// overlayd's id.
        oid: u64,
    },
    /// Where does `dst` live? For broadcast and multicast frames `frame`
    /// carries the whole frame so the plugin can answer ARP, NDP or DHCP.
    Lookup {
        /// Lookup id, echoed in the reply.
        id: u64,
        /// overlayd's id of the overlay.
        oid: u64,
        /// Source VL2 MAC of the frame that missed.
        src: Mac,
        /// Destination VL2 MAC that missed.
        dst: Mac,
        /// The frame, for broadcast/multicast lookups only.
        #[serde(
            default,
            with = "hexbytes::option",
            skip_serializing_if = "Option::is_none"
        )]
        frame: Option<Vec<u8>>,
    },
    /// The overlay's TAP device sent a frame from VL2 `mac` (a local guest
    /// appeared), or no longer does (`present: false`, idle past overlayd's
    /// timeout). Sent when a MAC is learned or expires, and every current
    /// one again after each [`VarpdMsg::InstanceReady`]; a plugin that
    /// registers where MACs live (etcd) publishes them.
    LocalMac {
        /// overlayd's id of the overlay.
        oid: u64,
        /// The guest's VL2 MAC.
        mac: Mac,
        /// Learned (true) or expired (false).
        present: bool,
    },
}

/// The answer to a lookup.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "kebab-case")]
pub enum LookupResult {
    /// Send frames for this MAC here.
    Target {
        /// Underlay (UL3) address and port.
        dest: SocketAddr,
    },
    /// Drop frames for this MAC.
    Drop {
        /// Why (for logs and traces).
        reason: String,
    },
    /// A broadcast/multicast frame was consumed (answered by proxy, or ignored
    /// by design, such as gratuitous ARP).
    Handled,
    /// A broadcast/multicast frame the plugin had no answer for.
    NotAnswered {
        /// Why (for logs and traces).
        reason: String,
    },
}

/// varpd → overlayd, on the link.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "msg", rename_all = "kebab-case")]
pub enum VarpdMsg {
    /// The instance works.
    InstanceReady {
        /// overlayd's id.
        oid: u64,
        /// The plugin's destination mode.
        mode: DestMode,
        /// For point mode, the one destination (illumos plugin `default` op).
        point: Option<SocketAddr>,
    },
    /// The instance cannot work, or works on stale data; the overlay is
    /// degraded with this reason.
    InstanceFailed {
        /// overlayd's id.
        oid: u64,
        /// What is wrong, naming the file, field or property.
        error: String,
        /// The instance still answers lookups from what it had before (a
        /// configuration reload failed): keep asking it.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        serving: bool,
    },
    /// Answer to [`DriverMsg::Lookup`].
    LookupReply {
        /// The lookup's id.
        id: u64,
        /// overlayd's id of the overlay.
        oid: u64,
        /// The answer.
        result: LookupResult,
    },
    /// Write this frame into the overlay's TAP device (a proxy reply).
    Inject {
        /// overlayd's id.
        oid: u64,
        /// The whole Ethernet frame.
        #[serde(with = "hexbytes")]
        frame: Vec<u8>,
    },
    /// Send this frame out of the overlay as if its TAP device had sent it:
    /// looked up in the target table and encapsulated like any other
    /// (illumos `OVERLAY_TARG_RESEND`). The proxy DHCP answer: a client's
    /// broadcast request re-addressed to its DHCP server's MAC. overlayd
    /// refuses a frame to a group address, so a resend never comes back to
    /// varpd as a broadcast lookup.
    Resend {
        /// overlayd's id.
        oid: u64,
        /// The whole Ethernet frame.
        #[serde(with = "hexbytes")]
        frame: Vec<u8>,
    },
    /// A local MAC ([`DriverMsg::LocalMac`]) now lives on another host
    /// (it moved away): forget it, so that if it comes back its next frame
    /// announces it again.
    ForgetLocalMac {
        /// overlayd's id.
        oid: u64,
        /// The MAC.
        mac: Mac,
    },
    /// Forget a target entry (or all of them) because the mapping changed.
    Invalidate {
        /// overlayd's id.
        oid: u64,
        /// The MAC whose entry changed; every entry when absent.
        mac: Option<Mac>,
    },
}

/// A request to varpd.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case")]
pub enum VarpdRequest {
    /// Link state, plugins and instances.
    Status,
    /// Set mappings by hand in an overlay's search plugin (`ovadm
    /// set-mapping`): `mac` lives at `dest`, and/or `ip` belongs to `mac`.
    /// Only plugins with a shared mapping database take them (etcd, where
    /// they are written without a lease and stay until removed).
    SetMapping {
        /// Overlay name.
        overlay: String,
        /// The VL2 MAC.
        mac: Mac,
        /// Where it lives (UL3).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        dest: Option<SocketAddr>,
        /// A VL3 address it owns.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ip: Option<IpAddr>,
    },
    /// Remove mappings by hand (`ovadm remove-mapping`): where `mac` lives,
    /// and/or who owns `ip`.
    RemoveMapping {
        /// Overlay name.
        overlay: String,
        /// The VL2 MAC.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        mac: Option<Mac>,
        /// The VL3 address.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ip: Option<IpAddr>,
    },
}

/// varpd's answer to a [`VarpdRequest`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "reply", rename_all = "kebab-case")]
pub enum VarpdReply {
    /// Answer to [`VarpdRequest::Status`].
    Status {
        /// Whether the link to overlayd is up.
        linked: bool,
        /// Plugins offered.
        plugins: Vec<PluginInfo>,
        /// Instances.
        instances: Vec<InstanceInfo>,
    },
    /// Failed.
    Error {
        /// What failed.
        error: ApiError,
    },
    /// Done (answer to a change such as [`VarpdRequest::SetMapping`]).
    Done,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_frame_is_hex_and_optional() {
        let m = DriverMsg::Lookup {
            id: 7,
            oid: 1,
            src: Mac([2, 0, 0, 0, 0, 1]),
            dst: Mac::BROADCAST,
            frame: Some(vec![0xde, 0xad]),
        };
        let s = serde_json::to_string(&m).unwrap();
        assert!(s.contains("\"frame\":\"dead\""), "{s}");
        assert_eq!(serde_json::from_str::<DriverMsg>(&s).unwrap(), m);
        let s = r#"{"msg":"lookup","id":1,"oid":1,"src":"02:00:00:00:00:01","dst":"02:00:00:00:00:02"}"#;
        assert!(matches!(
            serde_json::from_str::<DriverMsg>(s).unwrap(),
            DriverMsg::Lookup { frame: None, .. }
        ));
    }

    #[test]
    fn request_shapes() {
        let s = r#"{"op":"set-target","name":"ov0","mac":"02:00:00:00:00:02","dest":{"state":"valid","addr":"10.0.0.2:4789"}}"#;
        let r: Request = serde_json::from_str(s).unwrap();
        assert_eq!(
            r,
            Request::SetTarget {
                name: "ov0".into(),
                mac: "02:00:00:00:00:02".parse().unwrap(),
                dest: TargetDest::Valid("10.0.0.2:4789".parse().unwrap())
            }
        );
        let r = serde_json::to_string(&Reply::Ok { warning: None }).unwrap();
        assert_eq!(r, r#"{"reply":"ok"}"#);
    }
}
