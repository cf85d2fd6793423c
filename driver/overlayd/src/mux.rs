//! The underlay side of a mux: one UDP socket that receives for every
//! overlay listening on an address and port, and a small pool of sending
//! sockets whose ephemeral ports give VXLAN its UDP source-port entropy.
//!
//! RFC 7348 asks for a source port derived from a hash of the inner flow so
//! that ECMP in the underlay spreads flows yet keeps each in order. A UDP
//! socket sends from one port, so a frame's flow hash picks one of
//! [`SENDERS`] sockets bound to ephemeral ports of the listen address: the
//! port depends only on the flow, and the kernel still routes, fragments
//! and checksums (which a raw socket would leave to us).

use mio::net::UdpSocket;
use overlay_core::{Counters, MuxTable};
use std::io;
use std::net::{SocketAddr, UdpSocket as StdUdp};

/// Sending sockets per mux.
pub const SENDERS: usize = 16;

/// A mux.
#[derive(Debug)]
pub struct Mux {
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
    /// Binds the receiving and sending sockets.
    pub fn bind(listen: SocketAddr) -> io::Result<Mux> {
        let sock = UdpSocket::bind(listen)?;
        let senders = (0..SENDERS)
            .map(|_| {
                let s = StdUdp::bind(SocketAddr::new(listen.ip(), 0))?;
                s.set_nonblocking(true)?;
                Ok(s)
            })
            .collect::<io::Result<Vec<_>>>()?;
        Ok(Mux {
            listen,
            sock,
            senders,
            table: MuxTable::new(),
            counters: Counters::default(),
        })
    }

    /// The sending socket for a flow hash.
    #[inline]
    pub fn sender(&self, hash: u32) -> &StdUdp {
        &self.senders[(hash ^ (hash >> 16)) as usize % self.senders.len()]
    }
}
