//! A TCP socket put straight into ESTABLISHED with `TCP_REPAIR` (as CRIU
//! restores one), so that a bench can feed a real kernel TCP receiver with
//! hand-made segments — no handshake, known sequence numbers — and learn
//! from the bytes it reads that every segment was accepted: in order,
//! within the window, with a checksum the kernel took.
//!
//! The steps are the kernel's repair protocol (`net/ipv4/tcp.c`,
//! `do_tcp_setsockopt`): `TCP_REPAIR` on; the receive and send queues'
//! sequence numbers (`TCP_REPAIR_QUEUE` + `TCP_QUEUE_SEQ`, only while
//! closed); `bind` and `connect` (which, in repair mode, sends nothing and
//! finishes the connection); the options the handshake would have agreed
//! (`TCP_REPAIR_OPTIONS`: MSS and window scaling, no timestamps, no SACK)
//! and the windows (`TCP_REPAIR_WINDOW`); `TCP_REPAIR` off, upon which the kernel sends one window probe. Closing
//! it in repair mode sends nothing either.

use std::io;
use std::net::SocketAddrV4;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

const TCP_REPAIR: libc::c_int = 19;
const TCP_REPAIR_QUEUE: libc::c_int = 20;
const TCP_QUEUE_SEQ: libc::c_int = 21;
const TCP_REPAIR_OPTIONS: libc::c_int = 22;
const TCP_REPAIR_WINDOW: libc::c_int = 29;
const TCP_RECV_QUEUE: libc::c_int = 1;
const TCP_SEND_QUEUE: libc::c_int = 2;
const TCPOPT_MAXSEG: u32 = 2;
const TCPOPT_WINDOW: u32 = 3;

/// An established, repaired TCP socket in the namespace of the thread
/// that made it.
pub struct RepairedTcp {
    fd: OwnedFd,
}

fn setsockopt<T>(fd: &OwnedFd, level: libc::c_int, name: libc::c_int, v: &T) -> io::Result<()> {
    // SAFETY: v lives across the call and its size is passed.
    let r = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (v as *const T).cast(),
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

fn sockaddr(a: SocketAddrV4) -> libc::sockaddr_in {
    libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: a.port().to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(*a.ip()).to_be(),
        },
        sin_zero: [0; 8],
    }
}

/// What the handshake would have agreed, and the state to start from.
#[derive(Clone, Copy, Debug)]
pub struct Repair {
    /// Our address and port.
    pub local: SocketAddrV4,
    /// The peer's.
    pub peer: SocketAddrV4,
    /// The sequence number of the next byte the peer sends.
    pub rcv_nxt: u32,
    /// Ours.
    pub snd_nxt: u32,
    /// The MSS.
    pub mss: u16,
    /// The peer scales the windows it advertises by `2^snd_wscale`.
    pub snd_wscale: u8,
    /// We scale ours by `2^rcv_wscale`.
    pub rcv_wscale: u8,
    /// The receive window to start with (`TCP_REPAIR_WINDOW`); a fresh
    /// connection would offer ten segments, and let it grow from there.
    pub rcv_wnd: u32,
    /// `SO_RCVBUF`, if set (which turns receive-buffer autotuning off).
    pub rcvbuf: Option<libc::c_int>,
}

impl Repair {
    /// Makes the socket, in the calling thread's namespace.
    pub fn establish(&self) -> io::Result<RepairedTcp> {
        // SAFETY: plain socket(2); the descriptor is owned at once.
        let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fd is new and owned by nothing else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let on: libc::c_int = 1;
        setsockopt(&fd, libc::SOL_SOCKET, libc::SO_REUSEADDR, &on)?;
        if let Some(b) = self.rcvbuf {
            setsockopt(&fd, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, &b)?;
        }
        setsockopt(&fd, libc::IPPROTO_TCP, TCP_REPAIR, &on)?;
        setsockopt(&fd, libc::IPPROTO_TCP, TCP_REPAIR_QUEUE, &TCP_RECV_QUEUE)?;
        setsockopt(&fd, libc::IPPROTO_TCP, TCP_QUEUE_SEQ, &self.rcv_nxt)?;
        setsockopt(&fd, libc::IPPROTO_TCP, TCP_REPAIR_QUEUE, &TCP_SEND_QUEUE)?;
        setsockopt(&fd, libc::IPPROTO_TCP, TCP_QUEUE_SEQ, &self.snd_nxt)?;
        let (l, p) = (sockaddr(self.local), sockaddr(self.peer));
        let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
        // SAFETY: the sockaddrs live across the calls; their size is passed.
        unsafe {
            if libc::bind(fd.as_raw_fd(), (&l as *const libc::sockaddr_in).cast(), len) < 0 {
                return Err(io::Error::last_os_error());
            }
            if libc::connect(fd.as_raw_fd(), (&p as *const libc::sockaddr_in).cast(), len) < 0 {
                return Err(io::Error::last_os_error());
            }
        }
        // struct tcp_repair_opt { __u32 opt_code; __u32 opt_val; }
        let opts: [[u32; 2]; 2] = [
            [TCPOPT_MAXSEG, u32::from(self.mss)],
            [
                TCPOPT_WINDOW,
                u32::from(self.snd_wscale) | (u32::from(self.rcv_wscale) << 16),
            ],
        ];
        setsockopt(&fd, libc::IPPROTO_TCP, TCP_REPAIR_OPTIONS, &opts)?;
        // struct tcp_repair_window { snd_wl1, snd_wnd, max_window, rcv_wnd, rcv_wup }
        let peer_wnd = 0xffff_u32 << self.snd_wscale;
        let win: [u32; 5] = [self.rcv_nxt, peer_wnd, peer_wnd, self.rcv_wnd, self.rcv_nxt];
        setsockopt(&fd, libc::IPPROTO_TCP, TCP_REPAIR_WINDOW, &win)?;
        let off: libc::c_int = 0;
        setsockopt(&fd, libc::IPPROTO_TCP, TCP_REPAIR, &off)?;
        Ok(RepairedTcp { fd })
    }
}

impl RepairedTcp {
    /// Waits at most `secs` in each read from now on.
    pub fn set_read_timeout(&self, secs: i64) -> io::Result<()> {
        let tv = libc::timeval {
            tv_sec: secs,
            tv_usec: 0,
        };
        setsockopt(&self.fd, libc::SOL_SOCKET, libc::SO_RCVTIMEO, &tv)
    }

    /// One `recv(2)`: bytes read, 0 at the end of the stream.
    pub fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        // SAFETY: buf is writable for its whole length.
        let n = unsafe { libc::recv(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(n as usize)
        }
    }
}

impl Drop for RepairedTcp {
    /// Back into repair mode first, so that closing sends nothing (no FIN,
    /// no RST) to a peer that is only a bench's hand-made segments.
    fn drop(&mut self) {
        let on: libc::c_int = 1;
        let _ = setsockopt(&self.fd, libc::IPPROTO_TCP, TCP_REPAIR, &on);
    }
}
