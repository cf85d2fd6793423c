//! # overlay-api: what the outside world sees of the overlay system
//!
//! Theory statement. Two daemons own the overlay system: `overlayd`, the data
//! plane (one TAP device per overlay, VXLAN over UDP, the target table), and
//! `varpd`, the virtual ARP daemon that answers target-table misses through
//! search plugins. Everything else — `ovadm`, `ovstat`, `ovsnoop`, the
//! exporter, and varpd's own link to the driver — talks to them over Unix
//! control sockets (`RUN_DIR/overlayd.sock`, `RUN_DIR/varpd.sock`, mode 0600,
//! or 0660 with an operators' group).
//!
//! This crate is the whole contract of those sockets and nothing more:
//!
//! - [`mac`]: VL2 (overlay) MAC addresses as users type and read them.
//! - [`types`]: overlay properties, target entries, status rows and
//!   statistics snapshots — the values requests carry and replies return.
//! - [`drop`]: the closed set of reasons a frame can be dropped for, shared
//!   by counters, probes, ovsnoop and metrics.
//! - [`proto`]: the messages. Every message is one JSON object on one line.
//!   A client sends a [`proto::Request`] and reads one [`proto::Reply`].
//!   varpd upgrades its connection with [`proto::Request::VarpdHello`]; from
//!   then on overlayd sends [`proto::DriverMsg`] and varpd answers with
//!   [`proto::VarpdMsg`], in any order, for as long as the link lives.
//! - [`client`]: a small blocking client for the request/reply sockets.
//! - [`statefile`]: the daemons' state files, written atomically, read
//!   back, set aside when unusable.
//! - [`capture`]: capture with decisions, the frames overlayd handled and
//!   what it did with each, streamed on a control connection.
//! - [`access`]: who may use the sockets (file mode, group, and the peer's
//!   credentials checked on every connection).
//!
//! Consumers link this crate, never the data-plane internals, so the driver
//! may change how it works without breaking its tools.

pub mod access;
pub mod capture;
pub mod client;
pub mod drop;
pub mod hexbytes;
pub mod mac;
pub mod proto;
pub mod statefile;
pub mod types;

pub use client::{Client, ClientError};
pub use drop::DropReason;
pub use mac::Mac;
pub use types::*;

/// Largest message, in bytes, that either daemon accepts on a control socket.
/// A longer line is refused with an error reply and the connection closed.
pub const MAX_MESSAGE: usize = 1 << 20;

/// Largest reply a [`Client`] reads. Requests are small, but a statistics
/// snapshot of a thousand overlays with their peers is several MiB.
pub const MAX_REPLY: usize = 256 << 20;

/// Version of the control protocol, exchanged in the varpd hello.
pub const PROTOCOL_VERSION: u32 = 1;

/// File name of overlayd's control socket inside the run directory.
pub const OVERLAYD_SOCKET: &str = "overlayd.sock";

/// File name of varpd's control socket inside the run directory.
pub const VARPD_SOCKET: &str = "varpd.sock";

/// Default run directory (sockets), overridden by `--run-dir` or `OVERLAY_RUN_DIR`.
pub const DEFAULT_RUN_DIR: &str = "/run/overlay";

/// Default state directory, overridden by `--state-dir` or `OVERLAY_STATE_DIR`.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/overlay";
