//! The underlay side of a mux: one socket that receives for every overlay
//! of one encapsulation module listening on an address (and port, for UDP
//! modules) — the mux's key is the module and the address: two modules
//! never share a socket, and each module's overlays are told apart by VNI —
//! and the sockets that send.
//!
//! UDP modules (VXLAN, Geneve): RFC 7348 and RFC 8926 ask for a source port
//! derived from a hash of the inner flow so that ECMP in the underlay
//! spreads flows yet keeps each in order. A UDP socket sends from one
//! port, so a frame's flow hash picks one of [`SENDERS`] sockets bound to
//! ephemeral ports of the listen address: the port depends only on the
//! flow, and the kernel still routes, fragments and checksums. The
//! receiving socket has `UDP_GRO` on, so a peer's batch of datagrams may
//! arrive in one piece (see `rxq.rs`), and sends are batched with GSO.
//!
//! Raw-IP modules (NVGRE, IP protocol 47): one raw socket bound to the
//! listen address both receives and sends, one datagram per `sendmsg` (no
//! GSO for raw sockets). An IPv4 raw socket hands over each packet with its
//! IP header, which the receive path skips ([`Mux::ip_header`]); an IPv6
//! one does not. All sockets get large buffers so that a burst of 64 KiB
//! super-frames does not overflow them.
//!
//! Workers: with more than one forwarding thread, a UDP mux's receiving
//! socket is one of a `SO_REUSEPORT` group, one socket per thread
//! ([`Mux::for_worker`]); the kernel gives each peer flow (its addresses
//! and ports) to one of them. The group is open to any process of the same
//! user that sets the option too, as `SO_REUSEPORT` always is. A worker
//! sends through the same sending sockets, so a flow's source
//! port does not depend on the thread. A raw socket receives a copy of
//! every packet, so a raw mux receives on the event loop alone.

use crate::rxq::{set_int, UDP_GRO};
use mio::event::Source;
use mio::unix::SourceFd;
use mio::{Interest, Registry, Token};
use overlay_core::{Counters, MuxTable};
use overlay_wire::encap::{Encap, Socket};
use std::io;
use std::net::{SocketAddr, UdpSocket as StdUdp};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::Arc;

/// Sending sockets per mux.
pub const SENDERS: usize = 16;
/// Receive buffer of the mux socket.
const RCVBUF: libc::c_int = 8 << 20;
/// Send buffer of each sending socket.
const SNDBUF: libc::c_int = 4 << 20;

/// Sets a buffer size past the sysctl limit when allowed (root), else as
/// far as the limit goes.
fn buffer(fd: RawFd, force: libc::c_int, plain: libc::c_int, size: libc::c_int) {
    if set_int(fd, libc::SOL_SOCKET, force, size).is_err() {
        let _ = set_int(fd, libc::SOL_SOCKET, plain, size);
    }
}

/// What tells muxes apart: the encapsulation module's name and the address.
pub type MuxKey = (&'static str, SocketAddr);

/// A non-blocking UDP socket bound to `listen` with a large receive buffer
/// and UDP GRO; `shared` sets `SO_REUSEPORT` first.
fn udp_receiver(listen: SocketAddr, shared: bool) -> io::Result<OwnedFd> {
    let s = socket2::Socket::new(
        socket2::Domain::for_address(listen),
        socket2::Type::DGRAM,
        Some(socket2::Protocol::UDP),
    )?;
    if shared {
        set_int(s.as_raw_fd(), libc::SOL_SOCKET, libc::SO_REUSEPORT, 1)?;
    }
    s.bind(&listen.into())?;
    s.set_nonblocking(true)?;
    let fd = s.as_raw_fd();
    buffer(fd, libc::SO_RCVBUFFORCE, libc::SO_RCVBUF, RCVBUF);
    if let Err(e) = set_int(fd, libc::SOL_UDP, UDP_GRO, 1) {
        log::warn!("mux {listen}: no UDP GRO ({e}); receiving one datagram at a time");
    }
    Ok(OwnedFd::from(s))
}

/// A mux's receiving socket, UDP or raw IP, as the event loop watches it.
#[derive(Debug)]
pub struct MuxSocket(OwnedFd);

impl AsRawFd for MuxSocket {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }
}

impl Source for MuxSocket {
    fn register(&mut self, r: &Registry, t: Token, i: Interest) -> io::Result<()> {
        SourceFd(&self.0.as_raw_fd()).register(r, t, i)
    }
    fn reregister(&mut self, r: &Registry, t: Token, i: Interest) -> io::Result<()> {
        SourceFd(&self.0.as_raw_fd()).reregister(r, t, i)
    }
    fn deregister(&mut self, r: &Registry) -> io::Result<()> {
        SourceFd(&self.0.as_raw_fd()).deregister(r)
    }
}

/// A mux.
#[derive(Debug)]
pub struct Mux {
    /// The encapsulation module of every overlay on it.
    pub encap: &'static Encap,
    /// Where it listens.
    pub listen: SocketAddr,
    /// The receiving socket.
    pub sock: MuxSocket,
    /// Sending sockets, shared with the workers' copies of the mux and with
    /// every queued message that will leave through one ([`crate::txq`]):
    /// a socket closes only when nothing can send on it any more.
    pub senders: Vec<Arc<OwnedFd>>,
    /// The local port of each sending socket (0 for a raw socket): the UDP
    /// source port of a flow's datagrams, which the underlay TAP device's
    /// sends (`underlay.rs`) use too, so that a flow keeps one 5-tuple
    /// whichever way its frames leave.
    pub ports: Vec<u16>,
    /// Whether sends may be batched with UDP GSO (UDP modules).
    pub gso: bool,
    /// Whether received buffers start with an IPv4 header (raw IPv4).
    pub ip_header: bool,
    /// VNI → overlay id.
    pub table: MuxTable<u64>,
    /// Datagrams received, and drops that belong to no overlay.
    pub counters: Counters,
}

impl Mux {
    /// Binds the receiving and sending sockets of a mux for `encap`;
    /// `shared` makes the receiving socket (of a UDP module) the first of a
    /// `SO_REUSEPORT` group for workers to join ([`Mux::for_worker`]).
    pub fn bind(encap: &'static Encap, listen: SocketAddr, shared: bool) -> io::Result<Mux> {
        if let Socket::RawIp(proto) = encap.socket {
            return Mux::bind_raw(encap, listen, proto);
        }
        let sock = udp_receiver(listen, shared)?;
        let (senders, ports) = (0..SENDERS)
            .map(|_| {
                let s = StdUdp::bind(SocketAddr::new(listen.ip(), 0))?;
                s.set_nonblocking(true)?;
                buffer(s.as_raw_fd(), libc::SO_SNDBUFFORCE, libc::SO_SNDBUF, SNDBUF);
                let port = s.local_addr()?.port();
                Ok((Arc::new(OwnedFd::from(s)), port))
            })
            .collect::<io::Result<(Vec<_>, Vec<_>)>>()?;
        Ok(Mux {
            encap,
            listen,
            sock: MuxSocket(sock),
            senders,
            ports,
            gso: true,
            ip_header: false,
            table: MuxTable::new(),
            counters: Counters::default(),
        })
    }

    /// This mux as a worker holds it: a receiving socket of its own in the
    /// `SO_REUSEPORT` group (UDP; a raw mux receives on the event loop
    /// alone), the same sending sockets, no VNIs yet
    /// and counters of its own.
    pub fn for_worker(&self) -> io::Result<(Mux, bool)> {
        let (sock, receives) = match self.encap.socket {
            Socket::Udp => (udp_receiver(self.listen, true)?, true),
            Socket::RawIp(_) => (self.sock.0.try_clone()?, false),
        };
        let senders = self.senders.clone();
        let mux = Mux {
            encap: self.encap,
            listen: self.listen,
            sock: MuxSocket(sock),
            senders,
            ports: self.ports.clone(),
            gso: self.gso,
            ip_header: self.ip_header,
            table: MuxTable::new(),
            counters: Counters::default(),
        };
        Ok((mux, receives))
    }

    /// One raw socket of IP protocol `proto` on the listen address, for
    /// receiving and sending.
    fn bind_raw(encap: &'static Encap, listen: SocketAddr, proto: u8) -> io::Result<Mux> {
        let listen = SocketAddr::new(listen.ip(), 0);
        let domain = if listen.is_ipv4() {
            libc::AF_INET
        } else {
            libc::AF_INET6
        };
        let ty = libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC;
        // SAFETY: socket(2) takes no pointers; a descriptor it returns is
        // new and ours, so OwnedFd may own it.
        let s = unsafe {
            let fd = libc::socket(domain, ty, libc::c_int::from(proto));
            if fd < 0 {
                return Err(io::Error::last_os_error());
            }
            socket2::Socket::from(OwnedFd::from_raw_fd(fd))
        };
        s.bind(&listen.into())?;
        let fd = s.as_raw_fd();
        buffer(fd, libc::SO_RCVBUFFORCE, libc::SO_RCVBUF, RCVBUF);
        buffer(fd, libc::SO_SNDBUFFORCE, libc::SO_SNDBUF, SNDBUF);
        let sock = OwnedFd::from(s);
        let sender = sock.try_clone()?;
        Ok(Mux {
            encap,
            listen,
            sock: MuxSocket(sock),
            senders: vec![Arc::new(sender)],
            ports: vec![0],
            gso: false,
            ip_header: listen.is_ipv4(),
            table: MuxTable::new(),
            counters: Counters::default(),
        })
    }

    /// Its key among the daemon's muxes.
    pub fn key(&self) -> MuxKey {
        (self.encap.name, self.listen)
    }

    /// The sending socket for a flow hash.
    #[inline]
    pub fn sender(&self, hash: u32) -> &Arc<OwnedFd> {
        &self.senders[self.sender_index(hash)]
    }

    /// The UDP source port of a flow hash's datagrams: its sending
    /// socket's ([`Mux::sender`]).
    #[inline]
    pub fn sender_port(&self, hash: u32) -> u16 {
        self.ports[self.sender_index(hash)]
    }

    #[inline]
    fn sender_index(&self, hash: u32) -> usize {
        (hash ^ (hash >> 16)) as usize % self.senders.len()
    }
}
