//! # ovsnoop: `snoop` for overlays
//!
//! Theory statement. ovsnoop reads frames captured on the underlay (UL3)
//! and shows each one with its VXLAN layer opened: the VNI first, named
//! with its overlay when overlayd answers, then the UL3 addresses, then the
//! overlay (VL2/VL3) frame inside.
//!
//! ```text
//!  -r FILE ──► read (pcap-parser: pcap/pcapng; Ethernet, Linux cooked v1/v2)
//!  -i IFACE ─► live (AF_PACKET socket on an underlay interface)
//!                │ (link type, bytes, wire length)
//!                ▼
//!              decode (pure: outer Ethernet/VLAN, IPv4/IPv6, UDP ──VXLAN port──►
//!                │      VXLAN ──► inner Ethernet/VLAN, ARP, IPv4/IPv6, ICMP,
//!                │      ICMPv6+NDP, TCP, UDP, DHCP)
//!                ▼
//!              filter ──► format (one line | -v every field | --json) ──► stdout
//!                     └──► write (-w FILE, pcap)
//!  --trace ──► trace (bpftrace on overlayd and varpd; script generated
//!              from probes/*.d) ──► per-frame decisions ──► filter ──► stdout
//!  overlayd.sock ──ShowProps──► VNI → overlay name (optional)
//!  --capture ─► capture (overlayd's copy of each frame it handled, with
//!              its verdict, over overlayd.sock) ──► filter ──► stdout
//!                     └──► pcapng (-w FILE: interface per overlay,
//!                          verdict in each frame's comment)
//! ```
//!
//! Parts: [`decode`] never fails — a truncated or invalid layer ends that
//! frame's decode with a note, and the rest of the file is still shown.
//! [`read`] fails on a file that is not a capture or is corrupt at some
//! record, naming the file and the record; ovsnoop then exits 1 after
//! printing what came before. Usage errors exit 2. overlayd being
//! unreachable is not an error: VNIs are then shown without names.
//! [`live`] captures until SIGINT or SIGTERM. Either source ends with a
//! summary on standard error (frames, VXLAN frames per VNI, frames with
//! errors, frames that passed the filters).
//!
//! [`trace`] (`--trace`) shows the driver's decisions instead of the wire:
//! one bpftrace per daemon, running a program generated from the probes'
//! D definitions, each frame's probes joined into one line with its
//! decision. [`filter`] (`--vni`, `--overlay`, `--mac`, `--host`, `--port`,
//! AND-combined) applies to both; [`write`] (`-w`) saves the frames that
//! passed as pcap. [`json`] is the `--json` shape of a wire frame.
//!
//! [`capture`] (`--capture`) asks overlayd itself for the frames it
//! handled, dropped ones included, each with its verdict; [`pcapng`]
//! writes them (`-w`) with the verdict in each frame's comment, one
//! interface per overlay, for Wireshark and tshark.

pub mod capture;
pub mod decode;
pub mod filter;
pub mod format;
pub mod json;
pub mod live;
pub mod pcapng;
pub mod read;
pub mod trace;
pub mod write;
