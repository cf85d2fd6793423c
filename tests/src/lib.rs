//! # overlay-tests: the namespace lab every end-to-end test stands on
//!
//! Theory statement. An end-to-end test of the overlay system needs several
//! *hosts*, each with its own underlay (UL3) addresses, its own `overlayd`
//! and `varpd`, and its own overlay devices carrying VL2/VL3 traffic. On one
//! Linux machine a host is a network namespace. This crate builds such labs,
//! drives the daemons and the operator's CLI inside them, and takes them
//! down again, so that every test in `tests/tests/` shares one harness
//! instead of each growing its own.
//!
//! ## Parts
//!
//! - [`Lab`] (`lab.rs`): one lab per test. It names its namespaces
//!   `ovt<pid>-<n>-<host>`, unique per process and per lab, so tests run in
//!   parallel and runs never collide; it joins hosts by a veth pair
//!   ([`Lab::link`]) or by a bridge inside a namespace of its own
//!   ([`Lab::switch`]); it starts and stops daemons; it runs `ovadm`, `ip`
//!   and `ping` inside a host; it reads statistics over the control socket
//!   with [`overlay_api::Client`]; and [`Lab::in_ns`] runs a closure on a
//!   thread that has entered a host's namespace, so a test can send crafted
//!   datagrams from there.
//! - `daemon.rs`: a daemon is `ip netns exec NS BIN --run-dir R --state-dir S`
//!   in a process group of its own, logging to a file in the lab directory;
//!   it is ready when its control socket accepts a connection.
//! - `netns.rs`: creating and deleting namespaces, entering one with
//!   `setns(2)`, and reaping namespaces that a killed test run left behind.
//! - `scenario.rs`: the recurring setups (two overlayd hosts with the files
//!   plugin, the address plan they use) and the files-plugin configuration.
//! - [`snapshot`]: reading a statistics snapshot (an overlay's counters,
//!   drops by reason).
//! - `etcd.rs`: [`EtcdCluster`], a real etcd (one member or several) in
//!   lab namespaces ([`Lab::etcd`]), the etcd-plugin overlay and the guest
//!   set-up that announces itself.
//! - `craft.rs`: VXLAN and Geneve datagrams built by hand, well formed or not.
//! - `decisions.rs`: [`StalledCapture`], a capture with decisions whose
//!   client does not read (overlayd must lose frames for it, counted).
//! - [`stream`]: TCP streams of known content checked byte by byte, and a
//!   host kernel's TCP counters (checksum errors, retransmissions, reordering).
//! - `ovs.rs`: Open vSwitch's userspace datapath as an independent peer
//!   ([`Lab::ovs_host`], [`Lab::ovs_tunnel`]): VXLAN, Geneve and GRE.
//! - `bpftrace.rs`: [`Trace`], bpftrace attached to a daemon's pid
//!   ([`Lab::bpftrace`]) or a library script run through `probes/ovtrace`
//!   ([`Lab::ovtrace`]), stopped with SIGINT so that its maps are printed.
//! - `tools.rs`: running commands, [`Ping`] results, waiting for conditions.
//! - [`bench`]: what the benches share — overlayd and kernel VXLAN side by
//!   side on two hosts ([`bench::SideBySide`]), iperf3 runs, CPU time from
//!   `/proc`, results in `target/bench/`.
//! - [`tunnel_gso`]: the kernel's tunnel segmentation through a TAP
//!   device (a VXLAN super-frame behind a 24-byte virtio-net header), and
//!   [`tcp_repair`]: a kernel TCP receiver put into ESTABLISHED without a
//!   handshake — what `make bench-tunnel-gso` measures with.
//! - [`perf`]: `perf record -e cpu-clock -a -g` over a flow and its samples
//!   sorted into copies, segmentation, checksums, system calls, wake-ups
//!   and idle (`make profile`).
//!
//! ## Rules the harness keeps
//!
//! - All test traffic stays inside namespaces the lab made. Hosts have no
//!   default route; nothing is sent from the root namespace to a lab
//!   address. (Control sockets are Unix sockets, reached by path.)
//! - The binaries under test are the release builds in `target/release`
//!   (found from `CARGO_MANIFEST_DIR`), or those in `$OVERLAY_BIN_DIR`.
//!   The harness does not build them: `make test` builds first.
//! - Dropping a [`Lab`] kills every process it started and every process
//!   still inside its namespaces, then deletes the namespaces — also when
//!   the test panicked, in which case it first prints the tail of every
//!   daemon's log and keeps the lab directory for a post-mortem.
//! - A missing tool (`ip`, `ping`, ...) or binary is a panic that says what
//!   to install or build, never a silent pass. Tests that need root are
//!   `#[ignore = "needs root ..."]`, so an ordinary `cargo test` lists them
//!   as ignored with the reason.

pub mod bench;
mod bpftrace;
mod capture;
mod craft;
mod daemon;
mod decisions;
mod etcd;
mod lab;
mod netns;
mod ovs;
mod packet;
pub mod perf;
mod scenario;
pub mod snapshot;
pub mod stream;
pub mod tcp_repair;
mod tools;
pub mod tunnel_gso;

pub use bpftrace::{map_value, ovtrace_path, provider_probes, Trace, READY};
pub use capture::Capture;
pub use craft::{
    eth_frame, geneve_datagram, tcp4_packet, vxlan_datagram, GENEVE_PROTO_TEB, VXLAN_FLAG_I,
};
pub use daemon::Daemon;
pub use decisions::{CaptureTotals, StalledCapture};
pub use etcd::{EtcdCluster, EtcdEvent, EtcdTls};
pub use lab::{Host, Lab};
pub use ovs::underlay_cidr;
pub use packet::PacketSocket;
pub use scenario::{FilesEntry, Pair};
pub use tools::{env_num, find_mac_line, median, require_tools, wait_for, BackgroundPing, Ping};
