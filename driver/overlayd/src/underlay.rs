//! The underlay TAP device (`--underlay-bridge BRIDGE`): an opt-in second
//! way out for TCP super-frames, beside the mux's UDP sockets.
//!
//! A guest's TSO frame normally leaves cut in userland into MTU-sized
//! VXLAN datagrams (`txq.rs`, `UDP_SEGMENT`). Since Linux 6.17 a TAP
//! device takes a whole UDP-tunnelled super-frame behind a 24-byte virtio
//! header (`overlay_wire::tunnel`) and the kernel cuts it only where the
//! outgoing device needs it — over a veth, nowhere: the peer's socket (or
//! kernel VXLAN device) gets one 64 KiB packet. This module owns that way:
//!
//! - **The device.** At start overlayd opens TAP device `ovu-<pid>`
//!   (`IFF_TAP | IFF_NO_PI | IFF_VNET_HDR`, header size 24,
//!   `TUNSETOFFLOAD` with `TUN_F_UDP_TUNNEL_GSO`: a kernel without it
//!   refuses with `EINVAL`, logged, and overlayd keeps the socket path
//!   alone), gives it a locally administered MAC starting `fe` and the
//!   bridge's MTU (so that it never lowers the bridge's MTU nor becomes
//!   its MAC), and enslaves it to BRIDGE, up, as a port that neither
//!   learns nor is flooded: overlayd only writes to it. It is not
//!   persistent and goes when overlayd exits.
//! - **Its frames.** Outer Ethernet from the bridge's own MAC (the host's
//!   address on the underlay, as its ARP replies and socket sends give it:
//!   switches and peers see one MAC for the host; since the port does not
//!   learn, the bridge never sees its own address arrive on a port) to the
//!   neighbour's MAC; outer IPv4 from the mux's listen address, DF, TTL
//!   64; UDP from the port the socket path uses for the flow
//!   (`Mux::sender_port`), checksum 0; then the module's header and the
//!   guest's frame, untouched (its TCP checksum stays partial). One
//!   `writev`: headers, frame — no copy of the frame in userland.
//! - **When.** A TCP super-frame to a UDP module's mux listening on a
//!   specific IPv4 address, for an IPv4 destination on link on BRIDGE
//!   (in the subnet of one of its addresses) whose MAC the kernel's
//!   neighbour table holds (REACHABLE, STALE, DELAY or PERMANENT), small
//!   enough for one outer IPv4 packet. Everything else takes the socket
//!   path: so do frames released from a pending lookup (`link.rs`) and
//!   frames whose headers the kernel is not relied on to parse (VLAN-
//!   tagged inside, IPv6 extension headers). A miss takes it too, and the
//!   kernel's send through the socket resolves the neighbour, so the next
//!   refresh finds it. A flow that changes way keeps its order:
//!   the send queue is flushed before a super-frame goes to the device
//!   (the device's write is synchronous, so nothing of the flow waits
//!   anywhere when it goes back to the sockets).
//! - **The neighbour cache** ([`Snapshot`]): the bridge's MAC, its IPv4
//!   subnets and its neighbours, read with rtnetlink dumps by a thread of
//!   its own every [`REFRESH`] (sooner, at most every [`MISS_REFRESH`],
//!   after a miss) — never by a forwarding thread. It is published as an
//!   `Arc` behind a mutex with a generation number: a forwarding thread
//!   ([`UnderlayTx`]) loads the generation (one atomic load per
//!   super-frame) and takes the mutex only when it changed, about once a
//!   second. A snapshot is trusted for [`VALID`] after it was read, so a
//!   stuck refresher turns the path off rather than send to stale MACs.
//!
//! Failure: a write the device refuses counts the frame's segments as
//! `send-error` drops, as a refused socket send does; `EINVAL` (the kernel
//! does not take the header after all) also turns the way off for good,
//! logged, and that frame takes the socket path.

use crate::mux::Mux;
use crate::netlink::request;
use crate::tap::{open_tun, IFF_VNET_HDR, TUN_F_CSUM, TUN_F_TSO4, TUN_F_TSO6};
use netlink_packet_core::{NLM_F_ACK, NLM_F_DUMP};
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::{
    InfoBridgePort, InfoPortData, InfoPortKind, LinkAttribute, LinkFlags, LinkInfo, LinkMessage,
};
use netlink_packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourMessage, NeighbourState,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::Socket;
use overlay_core::FastMap;
use overlay_wire::encap::Socket as EncapSocket;
use overlay_wire::offload::Tso;
use overlay_wire::tunnel::{self, OuterV4, OUTER_V4_LEN, TUNNEL_VNET_HDR_LEN};
use std::io::{self, IoSlice};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How often the neighbour cache is read again.
pub const REFRESH: Duration = Duration::from_secs(1);
/// How soon after a miss it is read again, at the soonest.
pub const MISS_REFRESH: Duration = Duration::from_millis(200);
/// How long a snapshot is trusted after it was read.
pub const VALID: Duration = Duration::from_secs(3);

/// `TUN_F_UDP_TUNNEL_GSO` (6.17): TSO inside UDP tunnels.
const TUN_F_UDP_TUNNEL_GSO: libc::c_uint = 0x080;
/// `TUN_F_UDP_TUNNEL_GSO_CSUM` (6.17): the same, outer checksum offloaded.
const TUN_F_UDP_TUNNEL_GSO_CSUM: libc::c_uint = 0x100;
/// The longest encapsulation header the device's frames carry (VXLAN's
/// and option-less Geneve's are 8 bytes).
const ENCAP_MAX: usize = 16;

/// Why the underlay TAP device could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum UnderlayError {
    /// Opening or configuring the TAP device failed.
    #[error("underlay TAP device {name}: {what}: {err}")]
    Tap {
        /// The device.
        name: String,
        /// The step.
        what: &'static str,
        /// The kernel's answer.
        err: io::Error,
    },
    /// The kernel refused the tunnel offload (before Linux 6.17: `EINVAL`).
    #[error(
        "the kernel refuses TUNSETOFFLOAD with TUN_F_UDP_TUNNEL_GSO on {name} ({err}; \
         errno {errno}): tunnel segmentation needs Linux 6.17 or later"
    )]
    NoTunnelOffload {
        /// The device.
        name: String,
        /// The errno.
        errno: i32,
        /// The kernel's answer.
        err: io::Error,
    },
    /// A netlink request about the bridge or the device failed.
    #[error("bridge {bridge}: {what}: {err}")]
    Netlink {
        /// The bridge.
        bridge: String,
        /// The step.
        what: &'static str,
        /// The kernel's answer.
        err: io::Error,
    },
}

/// What the forwarding threads know of the bridge: its MAC, its IPv4
/// subnets and its neighbours, as of one refresh.
#[derive(Debug, Default)]
pub(crate) struct Snapshot {
    /// Trusted until then (`None`: never read).
    until: Option<Instant>,
    /// The bridge's MAC: the outer source.
    mac: [u8; 6],
    /// The bridge's IPv4 subnets, as (network, mask).
    nets: Vec<(u32, u32)>,
    /// IPv4 neighbours on the bridge with a usable MAC.
    neigh: FastMap<Ipv4Addr, [u8; 6]>,
}

impl Snapshot {
    /// The MAC to send to `ip` with, if `ip` is on link and known.
    fn next_hop(&self, ip: Ipv4Addr, now: Instant) -> Lookup {
        if self.until.is_none_or(|u| now > u) {
            return Lookup::Stale;
        }
        let a = u32::from(ip);
        if !self.nets.iter().any(|&(net, mask)| a & mask == net) {
            return Lookup::OffLink;
        }
        self.neigh
            .get(&ip)
            .map_or(Lookup::Miss, |m| Lookup::Mac(*m))
    }
}

/// What the cache says of a destination.
#[derive(Debug, PartialEq, Eq)]
enum Lookup {
    /// On link, at this MAC.
    Mac([u8; 6]),
    /// On link, MAC unknown.
    Miss,
    /// Not in any of the bridge's subnets.
    OffLink,
    /// The cache is too old to trust (or was never read).
    Stale,
}

/// The underlay TAP device and the neighbour cache, shared by every
/// forwarding thread and the refresher.
#[derive(Debug)]
pub(crate) struct Underlay {
    tap: OwnedFd,
    /// The device's name.
    pub name: String,
    /// The bridge's name.
    pub bridge: String,
    snap: Mutex<Arc<Snapshot>>,
    /// The neighbours the last read found (published or not).
    seen: Mutex<FastMap<Ipv4Addr, [u8; 6]>>,
    /// Counts published snapshots.
    gen: AtomicU64,
    /// A forwarding thread missed a neighbour: refresh soon.
    missed: AtomicBool,
    /// Cleared for good when the kernel refuses the header.
    on: AtomicBool,
    /// Asks the refresher to stop.
    stop: AtomicBool,
}

/// The refresher thread, from the event loop's side: stops it on drop.
pub(crate) struct Refresher {
    ul: Arc<Underlay>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for Refresher {
    fn drop(&mut self) {
        self.ul.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.thread().unpark();
            let _ = t.join();
        }
    }
}

impl Underlay {
    /// Opens the underlay TAP device, enslaves it to `bridge` and starts
    /// the refresher. `Err(NoTunnelOffload)` on kernels without tunnel
    /// segmentation.
    pub fn start(bridge: &str) -> Result<(Arc<Underlay>, Refresher), UnderlayError> {
        let name = format!("ovu-{}", std::process::id());
        let tap = open_tap(&name)?;
        let nl = |what, err| UnderlayError::Netlink {
            bridge: bridge.to_string(),
            what,
            err,
        };
        let sock = nl_socket().map_err(|e| nl("netlink socket", e))?;
        let br = link_by_name(&sock, bridge).map_err(|e| nl("no such link", e))?;
        attach(&sock, &name, &br).map_err(|e| nl("enslaving the underlay TAP device", e))?;
        let ul = Arc::new(Underlay {
            tap,
            name,
            bridge: bridge.to_string(),
            snap: Mutex::new(Arc::default()),
            seen: Mutex::new(FastMap::default()),
            gen: AtomicU64::new(0),
            missed: AtomicBool::new(false),
            on: AtomicBool::new(true),
            stop: AtomicBool::new(false),
        });
        // The first snapshot before any frame: a super-frame at start
        // finds the neighbours the host already knows.
        ul.refresh(&sock, br.index);
        let ul2 = Arc::clone(&ul);
        let thread = std::thread::Builder::new()
            .name("underlay".into())
            .spawn(move || ul2.refresher(sock, br.index))
            .map_err(|e| nl("starting the refresher thread", e))?;
        log::info!(
            "underlay TAP device {} on bridge {bridge}: TCP super-frames to neighbours on it \
             leave whole (kernel tunnel segmentation)",
            ul.name
        );
        let r = Refresher {
            ul: Arc::clone(&ul),
            thread: Some(thread),
        };
        Ok((ul, r))
    }

    /// Reads the bridge's state every [`REFRESH`], or [`MISS_REFRESH`]
    /// after a miss, until told to stop.
    fn refresher(&self, sock: Socket, br_index: u32) {
        let mut last = Instant::now();
        while !self.stop.load(Ordering::Relaxed) {
            let wait = if self.missed.load(Ordering::Relaxed) {
                MISS_REFRESH
            } else {
                REFRESH
            };
            let since = last.elapsed();
            if since < wait {
                std::thread::park_timeout(wait.min(MISS_REFRESH).min(wait - since));
                continue;
            }
            self.missed.store(false, Ordering::Relaxed);
            self.refresh(&sock, br_index);
            last = Instant::now();
        }
    }

    /// Reads the bridge's MAC, subnets and neighbours and publishes them.
    ///
    /// A neighbour is published only when two reads in a row (at least
    /// [`MISS_REFRESH`] apart) found it with the same MAC. A neighbour
    /// the kernel has just resolved may still have datagrams of the socket
    /// path in its queue, which the kernel sends after it marks the entry
    /// valid: a super-frame written to the underlay TAP device at once
    /// could overtake them. By the second read they have long left, so a
    /// flow that goes back from the sockets to the TAP device keeps its
    /// order (`tests/tests/tunnel_gso.rs`).
    fn refresh(&self, sock: &Socket, br_index: u32) {
        let read = || -> io::Result<Snapshot> {
            let br = link_by_index(sock, br_index)?;
            let found = neighbours(sock, br_index)?;
            let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
            let neigh = settled(&seen, &found);
            *seen = found;
            Ok(Snapshot {
                until: Some(Instant::now() + VALID),
                mac: br.mac.unwrap_or_default(),
                nets: subnets(sock, br_index)?,
                neigh,
            })
        };
        match read() {
            Ok(s) => {
                *self.snap.lock().unwrap_or_else(|e| e.into_inner()) = Arc::new(s);
                self.gen.fetch_add(1, Ordering::Release);
            }
            Err(e) => log::debug!("underlay: reading bridge {}: {e}", self.bridge),
        }
    }
}

/// What became of a super-frame offered to the underlay TAP device.
#[derive(Debug)]
pub(crate) enum Sent {
    /// Not for this way: send it through the socket.
    Declined,
    /// Written whole: it stands for this many segments, of these inner bytes.
    Done { segments: u64, bytes: u64 },
    /// The device refused it: these segments, of these bytes, are lost.
    Failed {
        segments: u64,
        bytes: u64,
        error: io::Error,
    },
}

/// One forwarding thread's side of the underlay TAP device: its view of
/// the neighbour cache, the IPv4 identification it counts, and the
/// buffer its headers are written into.
#[derive(Debug)]
pub(crate) struct UnderlayTx {
    ul: Arc<Underlay>,
    snap: Arc<Snapshot>,
    gen: u64,
    ip_id: u16,
    hdrs: [u8; TUNNEL_VNET_HDR_LEN + OUTER_V4_LEN + ENCAP_MAX],
}

impl UnderlayTx {
    /// A thread's side of `ul`.
    pub fn new(ul: Arc<Underlay>) -> UnderlayTx {
        UnderlayTx {
            ul,
            snap: Arc::default(),
            gen: u64::MAX,
            ip_id: 0,
            hdrs: [0; TUNNEL_VNET_HDR_LEN + OUTER_V4_LEN + ENCAP_MAX],
        }
    }

    /// Writes TCP super-frame `frame` (cut as `tso` says) of flow `hash`,
    /// for VNI `vni` on `mux`, to `dest` whole to the underlay TAP device,
    /// if it may go that way (see the module docs); `flush` is called
    /// first, to send what the socket path holds.
    #[allow(clippy::too_many_arguments)]
    pub fn send(
        &mut self,
        mux: &Mux,
        hash: u32,
        vni: u32,
        frame: &[u8],
        tso: &Tso,
        dest: SocketAddr,
        now: Instant,
        flush: impl FnOnce(),
    ) -> Sent {
        let (IpAddr::V4(src), IpAddr::V4(dst)) = (mux.listen.ip(), dest.ip()) else {
            return Sent::Declined;
        };
        let hlen = mux.encap.header_len;
        if mux.encap.socket != EncapSocket::Udp || src.is_unspecified() || hlen > ENCAP_MAX {
            return Sent::Declined;
        }
        if !self.ul.on.load(Ordering::Relaxed) {
            return Sent::Declined;
        }
        let gen = self.ul.gen.load(Ordering::Acquire);
        if gen != self.gen {
            self.snap = Arc::clone(&self.ul.snap.lock().unwrap_or_else(|e| e.into_inner()));
            self.gen = gen;
        }
        let dst_mac = match self.snap.next_hop(dst, now) {
            Lookup::Mac(m) => m,
            Lookup::Miss => {
                // The refresher looks at this every MISS_REFRESH: no
                // wake-up from here. Stored only once, not per frame.
                if !self.ul.missed.load(Ordering::Relaxed) {
                    self.ul.missed.store(true, Ordering::Relaxed);
                }
                return Sent::Declined;
            }
            Lookup::OffLink | Lookup::Stale => return Sent::Declined,
        };
        let outer = OuterV4 {
            dst_mac,
            src_mac: self.snap.mac,
            src,
            dst,
            src_port: mux.sender_port(hash),
            dst_port: dest.port(),
            ip_id: self.ip_id,
        };
        let Ok(n) = tunnel::tunnel_v4(&outer, hlen, frame, tso, &mut self.hdrs) else {
            return Sent::Declined;
        };
        if (mux.encap.encap)(vni, &mut self.hdrs[n..n + hlen]).is_err() {
            return Sent::Declined;
        }
        flush();
        let segments = tso.count() as u64;
        let bytes = tso.segments_len(frame) as u64;
        let iov = [IoSlice::new(&self.hdrs[..n + hlen]), IoSlice::new(frame)];
        match writev(&self.ul.tap, &iov) {
            Ok(_) => {
                // The kernel counts the identification up per segment it cuts.
                self.ip_id = self.ip_id.wrapping_add(segments as u16);
                Sent::Done { segments, bytes }
            }
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                if self.ul.on.swap(false, Ordering::Relaxed) {
                    log::warn!(
                        "underlay TAP device {}: the kernel refused a tunnel super-frame ({e}); \
                         sending through the UDP sockets from now on",
                        self.ul.name
                    );
                }
                Sent::Declined
            }
            Err(error) => Sent::Failed {
                segments,
                bytes,
                error,
            },
        }
    }
}

/// One `writev(2)` of `iov` to `fd`, again if interrupted.
fn writev(fd: &OwnedFd, iov: &[IoSlice<'_>]) -> io::Result<usize> {
    loop {
        // SAFETY: IoSlice is ABI-compatible with iovec; the slices outlive
        // the call, which only reads them.
        let n = unsafe { libc::writev(fd.as_raw_fd(), iov.as_ptr().cast(), iov.len() as i32) };
        if n >= 0 {
            return Ok(n as usize);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// Opens TAP device `name` with 24-byte virtio headers and the tunnel
/// offload.
fn open_tap(name: &str) -> Result<OwnedFd, UnderlayError> {
    let flags = libc::IFF_TAP | libc::IFF_NO_PI | IFF_VNET_HDR;
    let offloads =
        TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6 | TUN_F_UDP_TUNNEL_GSO | TUN_F_UDP_TUNNEL_GSO_CSUM;
    let size = TUNNEL_VNET_HDR_LEN as libc::c_int;
    open_tun(name, flags, Some(size), offloads, false).map_err(|(what, err)| match what {
        "TUNSETOFFLOAD" => UnderlayError::NoTunnelOffload {
            name: name.to_string(),
            errno: err.raw_os_error().unwrap_or(0),
            err,
        },
        what => UnderlayError::Tap {
            name: name.to_string(),
            what,
            err,
        },
    })
}

/// A netlink route socket in overlayd's namespace.
fn nl_socket() -> io::Result<Socket> {
    crate::netlink::socket()
}

/// A link's index, MAC and MTU.
#[derive(Debug)]
struct LinkFacts {
    index: u32,
    mac: Option<[u8; 6]>,
    mtu: Option<u32>,
}

fn link_facts(l: &LinkMessage) -> LinkFacts {
    let mut f = LinkFacts {
        index: l.header.index,
        mac: None,
        mtu: None,
    };
    for a in &l.attributes {
        match a {
            LinkAttribute::Address(b) if b.len() == 6 => {
                let mut m = [0u8; 6];
                m.copy_from_slice(b);
                f.mac = Some(m);
            }
            LinkAttribute::Mtu(m) => f.mtu = Some(*m),
            _ => {}
        }
    }
    f
}

fn get_link(sock: &Socket, m: LinkMessage) -> io::Result<LinkFacts> {
    request(sock, RouteNetlinkMessage::GetLink(m), NLM_F_ACK)?
        .iter()
        .find_map(|r| match r {
            RouteNetlinkMessage::NewLink(l) => Some(link_facts(l)),
            _ => None,
        })
        .ok_or_else(|| io::Error::from_raw_os_error(libc::ENODEV))
}

fn link_by_name(sock: &Socket, name: &str) -> io::Result<LinkFacts> {
    let mut m = LinkMessage::default();
    m.attributes.push(LinkAttribute::IfName(name.to_string()));
    get_link(sock, m)
}

fn link_by_index(sock: &Socket, index: u32) -> io::Result<LinkFacts> {
    let mut m = LinkMessage::default();
    m.header.index = index;
    get_link(sock, m)
}

/// A locally administered unicast MAC that starts with `fe`: above any
/// MAC a NIC or veth is likely to have, so that the bridge (which takes
/// its ports' lowest unless one was set) keeps its own.
fn tap_mac() -> [u8; 6] {
    let mut b = [0u8; 6];
    // SAFETY: getrandom(2) writes at most b.len() bytes into b.
    let n = unsafe { libc::getrandom(b.as_mut_ptr().cast(), b.len(), 0) };
    if n != b.len() as isize {
        let pid = std::process::id().to_be_bytes();
        b[2..].copy_from_slice(&pid);
    }
    b[0] = 0xfe;
    b
}

/// Gives TAP device `name` a MAC and the bridge's MTU, enslaves it to the
/// bridge, up, and makes it a port that neither learns nor is flooded.
fn attach(sock: &Socket, name: &str, br: &LinkFacts) -> io::Result<()> {
    let tap = link_by_name(sock, name)?;
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .write(true)
        .open(format!("/proc/sys/net/ipv6/conf/{name}/disable_ipv6"))
    {
        // A bridge port needs no addresses of its own.
        let _ = io::Write::write_all(&mut f, b"1");
    }
    let mut m = LinkMessage::default();
    m.header.index = tap.index;
    m.attributes
        .push(LinkAttribute::Address(tap_mac().to_vec()));
    if let Some(mtu) = br.mtu {
        m.attributes.push(LinkAttribute::Mtu(mtu));
    }
    request(sock, RouteNetlinkMessage::SetLink(m), NLM_F_ACK)?;
    let mut m = LinkMessage::default();
    m.header.index = tap.index;
    m.header.flags = LinkFlags::Up;
    m.header.change_mask = LinkFlags::Up;
    m.attributes.push(LinkAttribute::Controller(br.index));
    request(sock, RouteNetlinkMessage::SetLink(m), NLM_F_ACK)?;
    let mut m = LinkMessage::default();
    m.header.index = tap.index;
    m.attributes.push(LinkAttribute::LinkInfo(vec![
        LinkInfo::PortKind(InfoPortKind::Bridge),
        LinkInfo::PortData(InfoPortData::BridgePort(vec![
            InfoBridgePort::Learning(false),
            InfoBridgePort::UnicastFlood(false),
            InfoBridgePort::MulticastFlood(false),
            InfoBridgePort::BroadcastFlood(false),
        ])),
    ]));
    request(sock, RouteNetlinkMessage::NewLink(m), NLM_F_ACK)?;
    Ok(())
}

/// The IPv4 subnets of link `index`, as (network, mask).
fn subnets(sock: &Socket, index: u32) -> io::Result<Vec<(u32, u32)>> {
    let mut m = AddressMessage::default();
    m.header.family = AddressFamily::Inet;
    let all = request(sock, RouteNetlinkMessage::GetAddress(m), NLM_F_DUMP)?;
    Ok(all
        .iter()
        .filter_map(|r| match r {
            RouteNetlinkMessage::NewAddress(a) if a.header.index == index => Some(a),
            _ => None,
        })
        .filter_map(|a| {
            let ip = a.attributes.iter().find_map(|x| match x {
                AddressAttribute::Local(IpAddr::V4(ip))
                | AddressAttribute::Address(IpAddr::V4(ip)) => Some(*ip),
                _ => None,
            })?;
            let bits = u32::from(a.header.prefix_len.min(32));
            let mask = u32::MAX.checked_shl(32 - bits).unwrap_or(0);
            Some((u32::from(ip) & mask, mask))
        })
        .collect())
}

/// The neighbours of `now` that `before` (the previous read) held with
/// the same MAC.
fn settled(
    before: &FastMap<Ipv4Addr, [u8; 6]>,
    now: &FastMap<Ipv4Addr, [u8; 6]>,
) -> FastMap<Ipv4Addr, [u8; 6]> {
    now.iter()
        .filter(|(ip, mac)| before.get(ip) == Some(mac))
        .map(|(ip, mac)| (*ip, *mac))
        .collect()
}

/// The IPv4 neighbours of link `index` whose MAC may be used.
fn neighbours(sock: &Socket, index: u32) -> io::Result<FastMap<Ipv4Addr, [u8; 6]>> {
    let mut m = NeighbourMessage::default();
    m.header.family = AddressFamily::Inet;
    let all = request(sock, RouteNetlinkMessage::GetNeighbour(m), NLM_F_DUMP)?;
    let mut out = FastMap::default();
    for r in &all {
        let RouteNetlinkMessage::NewNeighbour(n) = r else {
            continue;
        };
        if n.header.ifindex != index || !usable(n.header.state) {
            continue;
        }
        let mut ip = None;
        let mut mac = None;
        for a in &n.attributes {
            match a {
                NeighbourAttribute::Destination(NeighbourAddress::Inet(i)) => ip = Some(*i),
                NeighbourAttribute::LinkLayerAddress(b) if b.len() == 6 => {
                    let mut m = [0u8; 6];
                    m.copy_from_slice(b);
                    mac = Some(m);
                }
                _ => {}
            }
        }
        if let (Some(ip), Some(mac)) = (ip, mac) {
            out.insert(ip, mac);
        }
    }
    Ok(out)
}

/// Whether a neighbour entry's MAC may be used: the kernel would send to
/// it without asking first.
fn usable(s: NeighbourState) -> bool {
    matches!(
        s,
        NeighbourState::Reachable
            | NeighbourState::Stale
            | NeighbourState::Delay
            | NeighbourState::Permanent
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(until: Instant) -> Snapshot {
        let mut neigh = FastMap::default();
        neigh.insert(Ipv4Addr::new(10, 1, 0, 2), [2, 0, 0, 0, 0, 2]);
        Snapshot {
            until: Some(until),
            mac: [2, 0, 0, 0, 0, 1],
            nets: vec![(u32::from(Ipv4Addr::new(10, 1, 0, 0)), 0xffff_ff00)],
            neigh,
        }
    }

    #[test]
    fn a_neighbour_is_used_once_two_reads_in_a_row_found_it_unchanged() {
        let ip = |n| Ipv4Addr::new(10, 1, 0, n);
        let read = |e: &[(u8, u8)]| -> FastMap<Ipv4Addr, [u8; 6]> {
            e.iter()
                .map(|&(n, m)| (ip(n), [2, 0, 0, 0, 0, m]))
                .collect()
        };
        let first = read(&[(2, 2), (3, 3)]);
        assert!(
            settled(&FastMap::default(), &first).is_empty(),
            "first sighting"
        );
        let second = read(&[(2, 2), (3, 9), (4, 4)]);
        let s = settled(&first, &second);
        assert_eq!(s.len(), 1, "unchanged ones only: {s:?}");
        assert_eq!(s.get(&ip(2)), Some(&[2, 0, 0, 0, 0, 2]));
    }

    #[test]
    fn the_cache_answers_on_link_known_neighbours_only_while_fresh() {
        let now = Instant::now();
        let s = snap(now + VALID);
        let ip = |d| Ipv4Addr::new(10, 1, 0, d);
        assert_eq!(s.next_hop(ip(2), now), Lookup::Mac([2, 0, 0, 0, 0, 2]));
        assert_eq!(s.next_hop(ip(3), now), Lookup::Miss);
        assert_eq!(s.next_hop(Ipv4Addr::new(10, 2, 0, 2), now), Lookup::OffLink);
        assert_eq!(s.next_hop(ip(2), now + VALID * 2), Lookup::Stale);
        assert_eq!(Snapshot::default().next_hop(ip(2), now), Lookup::Stale);
    }

    #[test]
    fn only_resolved_neighbour_states_are_used() {
        for s in [
            NeighbourState::Reachable,
            NeighbourState::Stale,
            NeighbourState::Delay,
            NeighbourState::Permanent,
        ] {
            assert!(usable(s), "{s:?}");
        }
        for s in [
            NeighbourState::Incomplete,
            NeighbourState::Failed,
            NeighbourState::Probe,
            NeighbourState::Noarp,
            NeighbourState::None,
        ] {
            assert!(!usable(s), "{s:?}");
        }
    }

    #[test]
    fn tap_macs_are_local_unicast_and_high() {
        let m = tap_mac();
        assert_eq!(m[0], 0xfe);
        assert_eq!(m[0] & 1, 0, "unicast");
        assert_eq!(m[0] & 2, 2, "locally administered");
    }
}
