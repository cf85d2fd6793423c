//! # overlayd: the overlay data plane
//!
//! Theory statement. overlayd is the Linux counterpart of the illumos
//! `overlay` driver. Each overlay is a TAP device named after it; frames a
//! guest sends on it are encapsulated by the overlay's encapsulation module
//! (VXLAN or Geneve over UDP, NVGRE directly over IP: `overlay_wire::encap`)
//! and sent to the underlay (UL3) address the overlay's destination mode gives: one fixed
//! point, or the target table entry of the destination MAC. Misses, and
//! ARP/NDP/DHCP broadcasts, go to varpd over the *varpd link*; answers fill
//! the table and release the frames that waited. Datagrams from the
//! underlay arrive on a *mux* socket shared by every overlay of the same
//! module listening on that address and port, and are demultiplexed by VNI
//! into TAP devices.
//!
//! ```text
//!  TAP ──► decide_tx ──► target table ──hit──► module encap ──► mux sender ──► underlay
//!                               │ miss
//!                               └──► pending queue ──► link ──► varpd ──► answer / inject
//!  underlay ──► mux socket ──► module decap ──► demux by VNI ──► decide_rx ──► TAP
//! ```
//!
//! ## Threads and what each owns
//!
//! - The **event loop** ([`daemon`]): one thread, one `mio::Poll`. It owns
//!   every overlay ([`overlay::Overlay`]: configuration, target table,
//!   counters, VNICs), every mux, the control connections, the varpd link
//!   and the outstanding lookups, and queue 0 of every TAP device. Control
//!   requests ([`control`]) are served between frames from the same state.
//! - **Workers** ([`worker`], `--workers N`): each owns one queue of every
//!   overlay's multi-queue TAP device, one socket of each mux's
//!   `SO_REUSEPORT` group, and its own counters, which the event loop
//!   collects. They read the target table lock-free and only its valid
//!   entries.
//!
//! - Two threads do the control plane's blocking work, so that no
//!   forwarding thread ever waits for the disk or the kernel: the state
//!   file's writer ([`persist::Saver`]) and the chore thread ([`chores`]:
//!   the netlink requests of VNICs). Worker commands are not waited for
//!   either. A reply to a request waits instead — held, with no further
//!   request taken — until every worker has applied, the state file holds
//!   and the chores have done the changes made before it
//!   (`Daemon::reply`).
//!
//! Both kinds of thread run the same **forwarding engine**
//! ([`datapath::Forwarder`]) over their ports ([`port::Port`], the one
//! trait the engine sees an overlay through). The only difference between
//! them is the engine's [`datapath::Owner`]: what a thread does with a
//! frame it cannot forward itself. The event loop's
//! ([`lookups::EventLoop`]) queues misses and asks varpd; a worker's hands
//! such frames to the event loop, which decides them again.
//!
//! ## How a frame flows
//!
//! tx: the engine reads a frame and its virtio-net header from a TAP queue;
//! `overlay_core::decide::decide_tx` (a pure function of the overlay's
//! state, the frame's facts and the table's entry for its destination)
//! gives the verdict — encapsulate to a destination, queue behind a lookup,
//! send to varpd (ARP/NDP/DHCP), or drop with a reason;
//! `overlay_core::decide::prepare_tx` checks its offloads (a TCP
//! super-frame is cut into MTU-sized segments on the way); the encapsulated
//! datagrams leave in batched `sendmsg` calls ([`txq`]). rx: a batch of
//! datagrams ([`rxq`], UDP GRO) is checked by the mux's encapsulation
//! module, demultiplexed by VNI, decided by `decide_rx` (source checks,
//! size) and written to the TAP device, consecutive TCP segments coalesced.
//! Every frame not delivered is counted under its `DropReason` and traced
//! by the `overlay:drop` probe. While a capture runs (`ovsnoop --capture`), the thread
//! that performs a verdict also copies the frame and the verdict into the
//! capture point's ring ([`capture`]), which the event loop drains to the
//! capturing clients; off, that costs one relaxed load per frame.
//!
//! ## How a lookup lives and ends
//!
//! A miss makes a *pending* entry in the target table, with the frame
//! queued behind it (bounded), and asks varpd ([`lookups`]: the lookup's
//! id, what it is for, when it was asked). It ends when varpd answers
//! ([`link`]: the entry becomes valid and the queued frames go, or a drop),
//! or is asked again after `LOOKUP_RETRY` unanswered or when varpd returns
//! after going away (pending entries keep their frames meanwhile; a
//! broadcast waiting on a varpd that went away is dropped as
//! `varpd-unavailable`), or is dropped with its entry (`flush`, idle
//! expiry, overlay deleted).
//!
//! ## Parts
//!
//! [`capture`] (capture with decisions: a copy of each frame and its
//! verdict, for `ovsnoop --capture`; one relaxed load per frame when no
//! capture runs) and [`capture_sessions`] (the captures clients run, fed
//! from it by the event loop), [`tap`] (TAP devices), [`mux`] (underlay sockets), [`conn`]
//! (line-framed control connections), [`daemon`] (the event loop and its
//! state), [`datapath`] (the forwarding engine), [`port`] (an overlay as
//! one thread sees it), [`lookups`] (the lookups asked of varpd, and the
//! event loop's owner of the engine), [`registry`] (the life of overlays,
//! muxes and VNICs), [`chores`] (blocking control-plane work), [`control`]
//! (requests), [`link`] (the
//! varpd link), [`frames`] (inject and resend, for varpd and the
//! operator), [`vnic`] (VNICs: macvlans over a TAP device, one per guest,
//! and their counters), [`underlay`] (`--underlay-bridge`: TCP super-frames
//! written whole to an underlay TAP device, and its neighbour cache),
//! [`netlink`] (the rtnetlink requests of both), [`persist`] (the state file) and [`restore`]
//! (persistent overlays set up again at start, and saved on every change).
//! Decisions that need no I/O (properties, verdicts, the table, the VNI
//! map, counters) live in `overlay-core`. Modules import each other
//! without cycles: the engine reaches an overlay only through [`port::Port`].
//!
//! Restart: a persistent overlay's TAP device (and the VNICs over it)
//! outlives overlayd; the next overlayd re-attaches to it from the state
//! file, so guests see a gap in forwarding, not a new link.
//!
//! Failure: varpd may be absent or restart at any time; valid entries keep
//! forwarding and pending lookups are asked again when it returns. Malformed
//! datagrams and requests are counted or answered with an error, never fatal.

mod capture;
mod capture_sessions;
mod chores;
mod conn;
mod control;
mod daemon;
mod datapath;
mod frames;
mod link;
mod local;
mod lookups;
mod mux;
mod netlink;
mod overlay;
mod persist;
mod port;
mod registry;
mod restore;
mod rxq;
mod spin;
mod tap;
#[cfg(test)]
mod testkit;
mod txq;
mod underlay;
mod vnic;
mod worker;

use clap::Parser;
use std::path::PathBuf;
use std::process::ExitCode;

/// The overlay data plane daemon (foreground; logs to stderr).
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Directory of the control socket (overlayd.sock).
    #[arg(long, env = "OVERLAY_RUN_DIR", default_value = overlay_api::DEFAULT_RUN_DIR)]
    run_dir: PathBuf,
    /// Directory for persistent state.
    #[arg(long, env = "OVERLAY_STATE_DIR", default_value = overlay_api::DEFAULT_STATE_DIR)]
    state_dir: PathBuf,
    /// Operators' group: overlayd.sock becomes mode 0660 in this group, and
    /// its members may connect (otherwise 0600: root and overlayd's user).
    #[arg(long, value_name = "GROUP", env = "OVERLAY_GROUP")]
    group: Option<String>,
    /// Forwarding threads: the event loop (which also serves the control
    /// socket and varpd) and N-1 workers, each with its own queue of every
    /// overlay's TAP device and its own underlay socket. Default: one per
    /// CPU but one, at least one (the guests and the kernel's softirq need a
    /// core too: on two cores a second thread costs one TCP flow some 10%
    /// and gives four flows some 30%; see the README's benchmarks).
    #[arg(long, value_name = "N", env = "OVERLAY_WORKERS", value_parser = clap::value_parser!(u16).range(1..=256))]
    workers: Option<u16>,
    /// After a wait that brought frames, keep polling the TAP queues and
    /// underlay sockets without blocking for up to this many microseconds
    /// before sleeping in epoll_wait: a reply within the window is taken
    /// without a wake-up. 0 (the default): off. Off by measurement: where
    /// the guests, the kernel and overlayd share two cores, a spinning
    /// thread takes the core the reply needs (see the README's
    /// benchmarks); with cores to spare it saves wake-ups. An idle
    /// overlayd sleeps either way.
    #[arg(long, value_name = "US", env = "OVERLAY_BUSY_POLL_US", default_value_t = 0,
          value_parser = clap::value_parser!(u64).range(0..=100_000))]
    busy_poll_us: u64,
    /// Write TCP super-frames for VXLAN/Geneve peers on link on this
    /// bridge whole to an underlay TAP device enslaved to it (`ovu-PID`),
    /// for the kernel to segment (Linux 6.17+ tunnel GSO), instead of
    /// cutting them into datagrams for the UDP sockets. The bridge must
    /// hold the host's underlay address and link. Off by default; on a
    /// kernel without tunnel GSO, a warning and the socket path.
    #[arg(long, value_name = "BRIDGE", env = "OVERLAY_UNDERLAY_BRIDGE")]
    underlay_bridge: Option<String>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    if let Err(e) = overlay_probes::register() {
        log::warn!("cannot register USDT probes: {e}");
    }
    let run = || -> anyhow::Result<()> {
        std::fs::create_dir_all(&args.state_dir).map_err(|e| {
            anyhow::anyhow!(
                "cannot create state directory {}: {e}",
                args.state_dir.display()
            )
        })?;
        let access = overlay_api::access::Access::from_option(args.group.as_deref())?;
        let threads = args.workers.map_or_else(
            || std::thread::available_parallelism().map_or(1, |n| n.get().saturating_sub(1).max(1)),
            usize::from,
        );
        let spin = spin::Spin::micros(args.busy_poll_us);
        let mut d = daemon::Daemon::new(
            &args.run_dir,
            &args.state_dir,
            access,
            threads,
            spin,
            args.underlay_bridge.as_deref(),
        )?;
        d.restore();
        d.run()
    };
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("overlayd: {e:#}");
            ExitCode::FAILURE
        }
    }
}
