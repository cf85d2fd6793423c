//! The underlay side of a mux: one UDP socket that receives for every
//! overlay of one encapsulation module listening on an address and port
//! (the mux's key is the module and the address: two modules never share a
//! socket, and each module's overlays are told apart by VNI), and a small pool of sending
//! sockets whose ephemeral ports give VXLAN its UDP source-port entropy.
//!
//! RFC 7348 asks for a source port derived from a hash of the inner flow so
//! that ECMP in the underlay spreads flows yet keeps each in order. A UDP
//! socket sends from one port, so a frame's flow hash picks one of
//! [`SENDERS`] sockets bound to ephemeral ports of the listen address: the
//! port depends only on the flow, and the kernel still routes, fragments
//! and checksums (which a raw socket would leave to us).
//!
//! The receiving socket has `UDP_GRO` on, so a peer's batch of datagrams
//! may arrive in one piece (see `rxq.rs`); all sockets get large buffers
//! so that a burst of 64 KiB super-frames does not overflow them.

use crate::rxq::{set_int, UDP_GRO};
use mio::net::UdpSocket;
use overlay_core::{Counters, MuxTable};
use overlay_wire::encap::{Encap, Socket};
use std::io;
use std::net::{SocketAddr, UdpSocket as StdUdp};
use std::os::fd::{AsRawFd, RawFd};

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

/// A mux.
#[derive(Debug)]
pub struct Mux {
    /// The encapsulation module of every overlay on it.
    pub encap: &'static Encap,
    /// Where it listens.
    pub listen: SocketAddr,
    /// The receiving socket.
    pub sock: UdpSocket,
    /// Sending sockets.
    pub senders: Vec<StdUdp>,
    /// VNI → overlay id.
    pub table: MuxTable<u64>,
    /// Datagrams received, and drops that belong to no overlay.
    pub counters: Counters,
}

impl Mux {
    /// Binds the receiving and sending sockets of a mux for `encap`.
    pub fn bind(encap: &'static Encap, listen: SocketAddr) -> io::Result<Mux> {
        if encap.socket != Socket::Udp {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                format!(
                    "{} needs a raw IP socket, which overlayd does not have",
                    encap.name
                ),
            ));
        }
        let sock = UdpSocket::bind(listen)?;
        let fd = sock.as_raw_fd();
        buffer(fd, libc::SO_RCVBUFFORCE, libc::SO_RCVBUF, RCVBUF);
        if let Err(e) = set_int(fd, libc::SOL_UDP, UDP_GRO, 1) {
            log::warn!("mux {listen}: no UDP GRO ({e}); receiving one datagram at a time");
        }
        let senders = (0..SENDERS)
            .map(|_| {
                let s = StdUdp::bind(SocketAddr::new(listen.ip(), 0))?;
                s.set_nonblocking(true)?;
                buffer(s.as_raw_fd(), libc::SO_SNDBUFFORCE, libc::SO_SNDBUF, SNDBUF);
                Ok(s)
            })
            .collect::<io::Result<Vec<_>>>()?;
        Ok(Mux {
            encap,
            listen,
            sock,
            senders,
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
    pub fn sender(&self, hash: u32) -> &StdUdp {
        &self.senders[(hash ^ (hash >> 16)) as usize % self.senders.len()]
    }
}
