//! The two hosts of the bench and the sockets and devices it sends and
//! receives with.
//!
//! ```text
//!  host a                                             host b
//!  UDP socket 10.77.0.1:4789 ─┐                   ┌─ br0 10.77.0.2 ── vx0 (kernel VXLAN, VNI 7777,
//!   (way i: UDP_SEGMENT;      ├─ br0 ── ul0 ═veth═ ul0 ─┤        192.168.77.2, MTU 1400) ── TCP (repaired)
//!    receives the ACKs)       │   (10.77.0.1)           └─ tapb (a TAP device: what a far TAP reads)
//!  utap0 (way ii: tunnel GSO)─┘
//! ```
//!
//! Host a plays a sending overlayd: way (i) is its socket, way (ii) an
//! underlay TAP device bridged with its underlay link, for which it writes
//! the outer Ethernet and IPv4 headers itself (the next hop's MAC from the
//! kernel's neighbour table: the resolution overlayd would have to do).
//! Host b is a real VXLAN peer: the kernel's VXLAN device, and behind it a
//! kernel TCP socket in ESTABLISHED (made with `TCP_REPAIR`) that must
//! accept the inner segments in order. b's veth end runs NAPI (GRO and UDP
//! GRO forwarding on) in a thread of its own (`threaded`), so that what b's
//! kernel does to receive is charged to that thread, not to a's sender. Neither bridge calls
//! netfilter (`bridge-nf-call-iptables` 0).

use overlay_tests::tunnel_gso::{
    UnderlayTap, TUN_F_CSUM, TUN_F_TSO4, TUN_F_TSO6, TUN_F_UDP_TUNNEL_GSO,
    TUN_F_UDP_TUNNEL_GSO_CSUM,
};
use overlay_tests::{Host, Lab};
use std::io;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// Host a's underlay address.
pub const A_UL: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);
/// Host b's underlay address.
pub const B_UL: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 2);
/// The overlay address of the sending "guest" on host a (no device: the
/// bench writes its frames).
pub const A_VL: Ipv4Addr = Ipv4Addr::new(192, 168, 77, 1);
/// The guest's MAC.
pub const A_VL_MAC: [u8; 6] = [2, 0, 0, 0x77, 0, 1];
/// b's VXLAN device's overlay address and MAC.
pub const B_VL: Ipv4Addr = Ipv4Addr::new(192, 168, 77, 2);
/// b's VXLAN device's MAC.
pub const B_VL_MAC: [u8; 6] = [2, 0, 0, 0x77, 0, 2];
/// The MAC host a's overlayd would use on its underlay TAP device.
pub const A_TAP_MAC: [u8; 6] = [2, 0, 0, 0, 0xaa, 1];
/// VXLAN UDP port.
pub const VXLAN_PORT: u16 = 4789;
/// The UDP port of b's overlayd-like socket.
pub const UDP_PEER_PORT: u16 = 4800;
/// VNI of the overlay.
pub const VNI: u32 = 7777;
/// The overlay MTU (as overlayd's default).
pub const MTU: usize = 1400;
/// Buffer sizes of the underlay sockets, as overlayd's mux sets them.
const SNDBUF: libc::c_int = 4 << 20;
const RCVBUF: libc::c_int = 8 << 20;
/// `SOL_UDP` options (linux/udp.h).
pub const UDP_SEGMENT: libc::c_int = 103;
pub const UDP_GRO: libc::c_int = 104;

/// The hosts, devices and sockets of a run.
pub struct Underlay {
    /// The namespaces (removed on drop, with everything in them).
    pub lab: Lab,
    /// The sender.
    pub a: Host,
    /// The receiver.
    pub b: Host,
    /// Host a's underlay TAP device, bridged with its veth end.
    pub tap: UnderlayTap,
    /// Host a's UDP socket on 10.77.0.1:4789: way (i) sends on it, and
    /// b's TCP acknowledgements come back to it.
    pub udp: OwnedFd,
    /// b's underlay MAC (its bridge's), from a's neighbour table.
    pub b_mac: [u8; 6],
    /// b's UDP socket on 10.77.0.2:4800 with `UDP_GRO` (the peer that
    /// stands for a receiving overlayd).
    pub b_udp: OwnedFd,
}

/// What became of the kernel-support probe.
pub enum Probe {
    /// The kernel took `TUNSETOFFLOAD` with the tunnel flags.
    Supported(Box<Underlay>),
    /// It refused them (or the TAP device): the reason, and the lab to drop.
    Refused(String, Box<Lab>),
}

/// Builds the two hosts and probes the kernel. Panics if a step that any
/// kernel here should take fails.
pub fn build() -> Probe {
    overlay_tests::require_tools(&["ip", "ethtool", "ping"]);
    let mut lab = Lab::new("tunnel_gso");
    let a = lab.add_host("a");
    let b = lab.add_host("b");
    let nb = lab.ns(b).to_string();
    lab.ip(
        a,
        &[
            "link", "add", "ul0", "type", "veth", "peer", "name", "ul0", "netns", &nb,
        ],
    );
    for (h, addr) in [(a, A_UL), (b, B_UL)] {
        let out = lab.exec(h, "sysctl", ["-qw", "net.bridge.bridge-nf-call-iptables=0"]);
        if !out.status.success() {
            eprintln!("note: could not turn off bridge-nf-call-iptables (br_netfilter absent?)");
        }
        lab.ip(h, &["link", "add", "br0", "type", "bridge"]);
        lab.ip(h, &["link", "set", "ul0", "master", "br0", "up"]);
        lab.ip(h, &["addr", "add", &format!("{addr}/24"), "dev", "br0"]);
        lab.ip(h, &["link", "set", "br0", "up"]);
    }

    // The underlay TAP device of host a, and the probe.
    let tap = match lab.in_ns(a, || UnderlayTap::open("utap0")) {
        Ok(t) => t,
        Err(e) => {
            return Probe::Refused(
                format!("opening a TAP device with a 24-byte virtio-net header failed: {e}"),
                Box::new(lab),
            )
        }
    };
    // PROBE_EXTRA_FLAGS (hex, e.g. 0x8000: a flag no kernel knows) makes
    // this kernel refuse as one before 6.17 does, to check the fallback.
    let extra = std::env::var("PROBE_EXTRA_FLAGS")
        .ok()
        .and_then(|v| u32::from_str_radix(v.trim_start_matches("0x"), 16).ok())
        .unwrap_or(0);
    let flags = TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6 | TUN_F_UDP_TUNNEL_GSO | extra;
    if let Err(e) = tap.set_offload(flags | TUN_F_UDP_TUNNEL_GSO_CSUM) {
        return Probe::Refused(
            format!(
                "TUNSETOFFLOAD(TUN_F_CSUM|TSO4|TSO6|UDP_TUNNEL_GSO|UDP_TUNNEL_GSO_CSUM = {:#x}) \
                 failed: {e}",
                flags | TUN_F_UDP_TUNNEL_GSO_CSUM,
            ),
            Box::new(lab),
        );
    }
    lab.ip(a, &["link", "set", "utap0", "address", &mac_str(A_TAP_MAC)]);
    lab.ip(a, &["link", "set", "utap0", "master", "br0", "up"]);

    // Host b: kernel VXLAN, its guest address, and a's guest as a neighbour.
    let vx = [
        "link", "add", "vx0", "type", "vxlan", "id", "7777", "dstport", "4789",
    ];
    let ends = [
        "local",
        "10.77.0.2",
        "remote",
        "10.77.0.1",
        "dev",
        "br0",
        "nolearning",
    ];
    lab.ip(b, &[&vx[..], &ends[..]].concat());
    lab.ip(b, &["link", "set", "vx0", "address", &mac_str(B_VL_MAC)]);
    lab.ip(b, &["link", "set", "vx0", "mtu", &MTU.to_string(), "up"]);
    lab.ip(b, &["addr", "add", &format!("{B_VL}/24"), "dev", "vx0"]);
    lab.ip(
        b,
        &[
            "neigh",
            "add",
            &A_VL.to_string(),
            "lladdr",
            &mac_str(A_VL_MAC),
            "dev",
            "vx0",
            "nud",
            "permanent",
        ],
    );

    // b's UDP socket: what a receiving overlayd reads (UDP_GRO on).
    let b_udp = lab
        .in_ns(b, || {
            udp_socket(SocketAddrV4::new(B_UL, UDP_PEER_PORT), true)
        })
        .expect("b's UDP socket");

    // a's socket, and b's MAC as a's kernel resolves it.
    let udp = lab
        .in_ns(a, || udp_socket(SocketAddrV4::new(A_UL, VXLAN_PORT), false))
        .expect("a's UDP socket on 10.77.0.1:4789");
    assert!(
        lab.wait_ping(a, &B_UL.to_string(), std::time::Duration::from_secs(5))
            .all_answered(),
        "no ping over the underlay"
    );
    let b_mac = neighbour_mac(&lab, a, B_UL).expect("a's neighbour entry for 10.77.0.2");
    Probe::Supported(Box::new(Underlay {
        lab,
        a,
        b,
        tap,
        udp,
        b_mac,
        b_udp,
    }))
}

/// `aa:bb:...` of a MAC.
pub fn mac_str(m: [u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let v: Vec<u8> = s
        .split(':')
        .filter_map(|x| u8::from_str_radix(x, 16).ok())
        .collect();
    v.try_into().ok()
}

fn neighbour_mac(lab: &Lab, h: Host, ip: Ipv4Addr) -> Option<[u8; 6]> {
    let out = lab.ip(h, &["-j", "neigh", "show", &ip.to_string()]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    parse_mac(v[0]["lladdr"].as_str()?)
}

/// Receive counters of a device on a host: (packets, bytes).
pub fn rx_counters(lab: &Lab, h: Host, dev: &str) -> (u64, u64) {
    let out = lab.ip(h, &["-j", "-s", "link", "show", dev]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    let rx = &v[0]["stats64"]["rx"];
    (
        rx["packets"].as_u64().unwrap_or(0),
        rx["bytes"].as_u64().unwrap_or(0),
    )
}

/// A host kernel's TCP checksum errors so far (`Tcp: InCsumErrors`).
pub fn tcp_csum_errors(lab: &Lab, h: Host) -> u64 {
    lab.in_ns(h, || {
        let s = std::fs::read_to_string("/proc/thread-self/net/snmp").unwrap_or_default();
        let rows: Vec<&str> = s.lines().filter(|l| l.starts_with("Tcp:")).collect();
        let (Some(names), Some(values)) = (rows.first(), rows.get(1)) else {
            return 0;
        };
        names
            .split_whitespace()
            .zip(values.split_whitespace())
            .find(|(n, _)| *n == "InCsumErrors")
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(0)
    })
}

fn set_int(fd: &OwnedFd, level: libc::c_int, name: libc::c_int, v: libc::c_int) -> io::Result<()> {
    // SAFETY: v lives across the call and its size is passed.
    let r = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (&v as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// A non-blocking UDP socket bound to `at` in the calling thread's
/// namespace, with overlayd's buffer sizes, and `UDP_GRO` if `gro`.
pub fn udp_socket(at: SocketAddrV4, gro: bool) -> io::Result<OwnedFd> {
    // SAFETY: plain socket(2); owned at once.
    let fd = unsafe {
        libc::socket(
            libc::AF_INET,
            libc::SOCK_DGRAM | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
            0,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is new and owned by nothing else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    set_int(&fd, libc::SOL_SOCKET, libc::SO_SNDBUFFORCE, SNDBUF)?;
    set_int(&fd, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, RCVBUF)?;
    if gro {
        set_int(&fd, libc::SOL_UDP, UDP_GRO, 1)?;
    }
    let sa = sockaddr(at);
    // SAFETY: sa lives across the call; its size is passed.
    let r = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&sa as *const libc::sockaddr_in).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(fd)
}

/// A `sockaddr_in`.
pub fn sockaddr(a: SocketAddrV4) -> libc::sockaddr_in {
    libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: a.port().to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(*a.ip()).to_be(),
        },
        sin_zero: [0; 8],
    }
}

/// One `sendmsg(2)` of `data` to `dest`, cut by the kernel into `seg`-byte
/// datagrams (`UDP_SEGMENT`), as overlayd's `TxQueue` sends a run; when
/// the socket's send buffer is full, waits for room (`POLLOUT`) and again.
pub fn send_gso(fd: &OwnedFd, dest: &libc::sockaddr_in, data: &[u8], seg: u16) -> io::Result<()> {
    let mut iov = libc::iovec {
        iov_base: data.as_ptr() as *mut libc::c_void,
        iov_len: data.len(),
    };
    let mut control = [0u64; 4];
    // SAFETY: msghdr is plain data; all-zero is valid.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_name = (dest as *const libc::sockaddr_in).cast_mut().cast();
    msg.msg_namelen = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    // SAFETY: CMSG_SPACE is a pure computation; control has room (32 bytes)
    // for one header and its u16; msg points at live buffers during sendmsg.
    unsafe {
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = libc::CMSG_SPACE(2) as usize;
        let c = libc::CMSG_FIRSTHDR(&msg);
        (*c).cmsg_level = libc::SOL_UDP;
        (*c).cmsg_type = UDP_SEGMENT;
        (*c).cmsg_len = libc::CMSG_LEN(2) as usize;
        std::ptr::write_unaligned(libc::CMSG_DATA(c).cast::<u16>(), seg);
        loop {
            if libc::sendmsg(fd.as_raw_fd(), &msg, 0) >= 0 {
                return Ok(());
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::WouldBlock {
                return Err(e);
            }
            let mut p = libc::pollfd {
                fd: fd.as_raw_fd(),
                events: libc::POLLOUT,
                revents: 0,
            };
            libc::poll(&mut p, 1, 10);
        }
    }
}

/// One `recvmsg(2)` without waiting: the datagram's length (0: none) and
/// the `UDP_GRO` segment size the kernel reported with it, if any.
pub fn recv_gro(fd: &OwnedFd, buf: &mut [u8]) -> (usize, Option<i32>) {
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    let mut control = [0u64; 8];
    // SAFETY: msghdr is plain data; all-zero is valid.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&control);
    // SAFETY: msg points at live, writable buffers for the call; the cmsg
    // walk stays within msg_controllen as the kernel set it.
    unsafe {
        let n = libc::recvmsg(fd.as_raw_fd(), &mut msg, libc::MSG_DONTWAIT);
        if n <= 0 {
            return (0, None);
        }
        let mut seg = None;
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_UDP && (*c).cmsg_type == UDP_GRO {
                seg = Some(std::ptr::read_unaligned(libc::CMSG_DATA(c).cast::<i32>()));
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
        (n as usize, seg)
    }
}
