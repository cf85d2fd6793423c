//! Batched receives from the underlay: one `recvmmsg(2)` fills up to
//! [`SLOTS`] buffers, and with `UDP_GRO` on the socket each buffer may hold
//! many datagrams of one size that the kernel kept together (a peer's GSO
//! send crosses a veth whole), cut apart here by the segment size the
//! kernel reports in a control message.

use std::io;
use std::net::SocketAddr;
use std::os::fd::RawFd;

/// Buffers filled by one system call.
pub const SLOTS: usize = 8;
/// Size of each buffer: the largest UDP payload.
const SLOT_BYTES: usize = 65_536;
/// `SOL_UDP` option and control message that carry the GRO segment size.
pub const UDP_GRO: libc::c_int = 104;

/// The receive buffers and their bookkeeping.
pub struct RxBatch {
    bufs: Box<[u8]>,
    names: Box<[libc::sockaddr_storage; SLOTS]>,
    controls: Box<[[u64; 8]; SLOTS]>,
    iovs: Box<[libc::iovec; SLOTS]>,
    hdrs: Box<[libc::mmsghdr; SLOTS]>,
    filled: usize,
}

impl std::fmt::Debug for RxBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RxBatch")
            .field("filled", &self.filled)
            .finish()
    }
}

impl Default for RxBatch {
    fn default() -> Self {
        Self::new()
    }
}

impl RxBatch {
    /// Empty buffers.
    pub fn new() -> RxBatch {
        // SAFETY (all three): sockaddr_storage, iovec and mmsghdr are plain
        // old data; all-zero is a valid value of each.
        RxBatch {
            bufs: vec![0u8; SLOTS * SLOT_BYTES].into_boxed_slice(),
            names: Box::new(unsafe { std::mem::zeroed() }),
            controls: Box::new([[0u64; 8]; SLOTS]),
            iovs: Box::new(unsafe { std::mem::zeroed() }),
            hdrs: Box::new(unsafe { std::mem::zeroed() }),
            filled: 0,
        }
    }

    /// Receives what socket `fd` has (up to [`SLOTS`] buffers); 0 is never
    /// returned: an empty socket is `WouldBlock`.
    pub fn recv(&mut self, fd: RawFd) -> io::Result<usize> {
        for i in 0..SLOTS {
            self.iovs[i] = libc::iovec {
                iov_base: self.bufs[i * SLOT_BYTES..].as_mut_ptr().cast(),
                iov_len: SLOT_BYTES,
            };
            let h = &mut self.hdrs[i].msg_hdr;
            h.msg_name = (&mut self.names[i] as *mut libc::sockaddr_storage).cast();
            h.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as u32;
            h.msg_iov = &mut self.iovs[i];
            h.msg_iovlen = 1;
            h.msg_control = self.controls[i].as_mut_ptr().cast();
            h.msg_controllen = std::mem::size_of::<[u64; 8]>();
            h.msg_flags = 0;
            self.hdrs[i].msg_len = 0;
        }
        // SAFETY: every header points at live buffers owned by self, of the
        // lengths given, for the duration of the call.
        let n = unsafe {
            libc::recvmmsg(
                fd,
                self.hdrs.as_mut_ptr(),
                SLOTS as u32,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            self.filled = 0;
            return Err(io::Error::last_os_error());
        }
        self.filled = n as usize;
        Ok(self.filled)
    }

    /// Buffer `i` of the last receive: its bytes, the sender, and the size
    /// of the datagrams it holds (all of that size but perhaps a shorter
    /// last one). `None` for a truncated buffer or an unknown sender.
    pub fn get(&mut self, i: usize) -> Option<(&mut [u8], SocketAddr, usize)> {
        if i >= self.filled {
            return None;
        }
        let h = &self.hdrs[i];
        let len = h.msg_len as usize;
        if h.msg_hdr.msg_flags & libc::MSG_TRUNC != 0 {
            return None;
        }
        let from = socket_addr(&self.names[i])?;
        let mut seg = len;
        // SAFETY: the control buffer holds msg_controllen bytes of cmsgs
        // written by the kernel; the CMSG macros walk them within bounds.
        unsafe {
            let mut c = libc::CMSG_FIRSTHDR(&h.msg_hdr);
            while !c.is_null() {
                if (*c).cmsg_level == libc::SOL_UDP && (*c).cmsg_type == UDP_GRO {
                    let s = std::ptr::read_unaligned(libc::CMSG_DATA(c).cast::<libc::c_int>());
                    if s > 0 {
                        seg = s as usize;
                    }
                }
                c = libc::CMSG_NXTHDR(&h.msg_hdr, c);
            }
        }
        let data = &mut self.bufs[i * SLOT_BYTES..i * SLOT_BYTES + len];
        Some((data, from, seg.max(1)))
    }
}

/// The address in a `sockaddr_storage` the kernel filled.
fn socket_addr(s: &libc::sockaddr_storage) -> Option<SocketAddr> {
    let p: *const libc::sockaddr_storage = s;
    match s.ss_family as libc::c_int {
        libc::AF_INET => {
            // SAFETY: the family says the storage holds a sockaddr_in, which fits in it.
            let a = unsafe { &*p.cast::<libc::sockaddr_in>() };
            let ip = std::net::Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr));
            Some(SocketAddr::new(ip.into(), u16::from_be(a.sin_port)))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says the storage holds a sockaddr_in6, which fits in it.
            let a = unsafe { &*p.cast::<libc::sockaddr_in6>() };
            let ip = std::net::Ipv6Addr::from(a.sin6_addr.s6_addr);
            Some(
                std::net::SocketAddrV6::new(
                    ip,
                    u16::from_be(a.sin6_port),
                    a.sin6_flowinfo,
                    a.sin6_scope_id,
                )
                .into(),
            )
        }
        _ => None,
    }
}

/// Sets an integer socket option.
pub fn set_int(
    fd: RawFd,
    level: libc::c_int,
    opt: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    // SAFETY: setsockopt with a pointer to a live c_int of the given size.
    let r = unsafe {
        libc::setsockopt(
            fd,
            level,
            opt,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as u32,
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;
    use std::os::fd::AsRawFd;

    #[test]
    fn receives_a_batch_with_senders() {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        for i in 0..3u8 {
            tx.send_to(&[i; 50], rx.local_addr().unwrap()).unwrap();
        }
        let mut b = RxBatch::new();
        let mut got = Vec::new();
        while got.len() < 3 {
            match b.recv(rx.as_raw_fd()) {
                Ok(n) => {
                    for i in 0..n {
                        let (d, from, seg) = b.get(i).unwrap();
                        assert_eq!((from, seg, d.len()), (tx.local_addr().unwrap(), 50, 50));
                        got.push(d[0]);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => std::thread::yield_now(),
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(got, [0, 1, 2]);
    }
}
