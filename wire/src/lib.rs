//! # overlay-wire: the bytes of the overlay
//!
//! Theory statement. Everything the overlay reads from or writes to a
//! network is a pure function over byte slices here: no I/O, no allocation
//! on the fast path, and no panic on any input — a malformed packet is an
//! error value that the caller counts as a drop with a reason.
//!
//! - [`encap`]: the encapsulation plugin interface (illumos'
//!   `overlay_plugin.h`): each module's name, header size, VNI width,
//!   socket type, properties, and its encap and decap operations; decap
//!   errors are one typed set, each with its drop reason.
//! - [`vxlan`]: the VXLAN header (RFC 7348), written by hand since no
//!   parsing library carries it: a zero-copy view plus `parse`/`emit`.
//! - [`geneve`]: the Geneve header (RFC 8926), with its options carried
//!   and counted but not interpreted.
//! - [`nvgre`]: NVGRE (RFC 7637), Ethernet in GRE with a 24-bit VSID and
//!   an 8-bit FlowID in the key, directly over IP.
//! - [`eth`]: what the data plane needs to know of an inner Ethernet frame
//!   to forward it — destination, source, whether varpd must see it (ARP,
//!   NDP, DHCP) — and the flow hash that gives VXLAN its UDP source port.
//! - [`arp`], [`ndp`]: proxy answers that varpd builds for the overlay
//!   (ARP replies, neighbour advertisements), on top of smoltcp's wire module.
//! - [`dhcp`]: a guest's DHCP request, checked and re-addressed to its DHCP
//!   server's MAC (proxy DHCP).
//! - [`offload`]: the virtio-net header of a TAP device with offloads, the
//!   Internet checksum, TCP segmentation of the kernel's super-frames and
//!   coalescing of received segments (TSO/GRO at layer 2).
//! - [`tunnel`]: the 24-byte tunnel virtio-net header and the outer
//!   Ethernet/IPv4/UDP headers that hand a whole tunnelled TCP super-frame
//!   to an underlay TAP device, for the kernel to segment (Linux 6.17+).
//!
//! Standard protocols are parsed with smoltcp's `wire` module; only what no
//! library has (VXLAN, Geneve, NVGRE) is written here by hand.

pub mod arp;
pub mod dhcp;
pub mod encap;
pub mod eth;
pub mod geneve;
pub mod ndp;
pub mod nvgre;
pub mod offload;
pub mod tunnel;
pub mod vxlan;

pub use overlay_api::Mac;
