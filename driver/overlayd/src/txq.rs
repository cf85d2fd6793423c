//! Batched sends to the underlay: encapsulated datagrams are queued and
//! leave in as few system calls as possible.
//!
//! Consecutive datagrams for the same destination from the same sending
//! socket, all of one size but perhaps a shorter last one, form one message
//! sent with `UDP_SEGMENT` (UDP GSO): one `sendmsg` carries up to
//! [`MAX_SEGS`] datagrams, and the kernel cuts them apart as late as it can
//! — over a veth, not at all, since the receiver's UDP GRO takes the batch
//! whole. The segments of one TSO super-frame always form such a run; so do
//! back-to-back small frames of one flow. The datagrams on the wire are
//! exactly those a frame-at-a-time sender would send, so any VXLAN peer
//! receives them; if the kernel refuses a GSO send (a route without
//! checksum offload, a path MTU smaller than a segment), the message is
//! sent again one datagram at a time.
//!
//! The queue is flushed by the event loop before it waits, and whenever it
//! fills. What happened to each message is kept as an [`Outcome`] for the
//! loop to count, so counters only ever count datagrams the kernel took.

use std::io;
use std::net::SocketAddr;
use std::os::fd::RawFd;

/// Most datagrams in one GSO send (the kernel's `UDP_MAX_SEGMENTS` is 64
/// on older kernels, 128 on newer ones).
pub const MAX_SEGS: usize = 64;
/// Most payload bytes in one GSO send (an IPv6 UDP datagram's payload must
/// stay below 65,535 bytes less the UDP header).
const MAX_GSO_BYTES: usize = 65_000;
/// Bytes of datagrams the queue holds before it flushes by itself.
const BUF_BYTES: usize = 1 << 20;
/// Messages the queue holds before it flushes by itself.
const MAX_MSGS: usize = 512;
/// `SOL_UDP` option that sets the GSO segment size (linux/udp.h).
const UDP_SEGMENT: libc::c_int = 103;

#[derive(Debug)]
struct Msg {
    fd: RawFd,
    dest: SocketAddr,
    start: usize,
    len: usize,
    seg: usize,
    segs: usize,
    oid: u64,
    /// Inner-frame bytes (what the overlay's counters count).
    bytes: u64,
    /// Never joined by another datagram (a raw socket has no GSO).
    alone: bool,
}

/// What became of one queued message.
#[derive(Debug)]
pub struct Outcome {
    /// The overlay whose frames these were.
    pub oid: u64,
    /// Where they went.
    pub dest: SocketAddr,
    /// Datagrams (one frame each).
    pub frames: u64,
    /// Inner-frame bytes.
    pub bytes: u64,
    /// Why the kernel refused them, if it did.
    pub error: Option<io::Error>,
    /// Whether they left in one GSO send.
    pub gso: bool,
}

/// The send queue.
#[derive(Debug)]
pub struct TxQueue {
    buf: Box<[u8]>,
    used: usize,
    msgs: Vec<Msg>,
    /// Outcomes of flushed messages, for the event loop to count and clear.
    pub outcomes: Vec<Outcome>,
}

impl Default for TxQueue {
    fn default() -> Self {
        Self::new()
    }
}

impl TxQueue {
    /// An empty queue.
    pub fn new() -> TxQueue {
        TxQueue {
            buf: vec![0u8; BUF_BYTES].into_boxed_slice(),
            used: 0,
            msgs: Vec::with_capacity(MAX_MSGS),
            outcomes: Vec::with_capacity(MAX_MSGS),
        }
    }

    /// Whether nothing waits to be sent.
    pub fn is_empty(&self) -> bool {
        self.msgs.is_empty()
    }

    /// Messages waiting to be sent.
    pub fn len(&self) -> usize {
        self.msgs.len()
    }

    /// Room for one datagram of `len` bytes (at most 64 KiB) that socket
    /// `fd` sends to `dest` for overlay `oid`, whose inner frame has `inner`
    /// bytes. The caller fills all of it.
    pub fn datagram(
        &mut self,
        fd: RawFd,
        dest: SocketAddr,
        oid: u64,
        len: usize,
        inner: usize,
    ) -> &mut [u8] {
        self.put(fd, dest, oid, len, inner, false)
    }

    /// As [`TxQueue::datagram`], for a socket without GSO (raw IP): the
    /// datagram is sent by a `sendmsg` of its own.
    pub fn datagram_alone(
        &mut self,
        fd: RawFd,
        dest: SocketAddr,
        oid: u64,
        len: usize,
        inner: usize,
    ) -> &mut [u8] {
        self.put(fd, dest, oid, len, inner, true)
    }

    fn put(
        &mut self,
        fd: RawFd,
        dest: SocketAddr,
        oid: u64,
        len: usize,
        inner: usize,
        alone: bool,
    ) -> &mut [u8] {
        if self.used + len > self.buf.len() || self.msgs.len() == MAX_MSGS {
            self.flush();
        }
        let start = self.used;
        self.used += len;
        let joins = !alone
            && self.msgs.last().is_some_and(|m| {
                !m.alone
                    && m.fd == fd
                    && m.dest == dest
                    && m.oid == oid
                    && m.start + m.len == start
                    && m.len == m.seg * m.segs
                    && len <= m.seg
                    && m.segs < MAX_SEGS
                    && m.len + len <= MAX_GSO_BYTES
            });
        if joins {
            let m = self.msgs.last_mut().expect("checked above");
            m.len += len;
            m.segs += 1;
            m.bytes += inner as u64;
        } else {
            self.msgs.push(Msg {
                fd,
                dest,
                start,
                len,
                seg: len,
                segs: 1,
                oid,
                bytes: inner as u64,
                alone,
            });
        }
        &mut self.buf[start..start + len]
    }

    /// Sends everything queued; outcomes go to [`outcomes`](Self::outcomes).
    pub fn flush(&mut self) {
        for m in self.msgs.drain(..) {
            let data = &self.buf[m.start..m.start + m.len];
            let mut r = send(m.fd, m.dest, data, (m.segs > 1).then_some(m.seg));
            let mut gso = m.segs > 1;
            if gso {
                match &r {
                    Ok(()) => {}
                    // EIO: no checksum offload on the route; EINVAL: a segment
                    // larger than the path MTU. Send them one by one.
                    Err(e) if matches!(e.raw_os_error(), Some(libc::EIO | libc::EINVAL)) => {
                        gso = false;
                        r = data
                            .chunks(m.seg)
                            .try_for_each(|d| send(m.fd, m.dest, d, None));
                    }
                    Err(_) => {}
                }
            }
            self.outcomes.push(Outcome {
                oid: m.oid,
                dest: m.dest,
                frames: m.segs as u64,
                bytes: m.bytes,
                error: r.err(),
                gso,
            });
        }
        self.used = 0;
    }
}

/// One `sendmsg(2)` of `data` to `dest`, with a GSO segment size if given.
fn send(fd: RawFd, dest: SocketAddr, data: &[u8], seg: Option<usize>) -> io::Result<()> {
    let addr = socket2::SockAddr::from(dest);
    let mut iov = libc::iovec {
        iov_base: data.as_ptr() as *mut libc::c_void,
        iov_len: data.len(),
    };
    // Room for one cmsg carrying a u16, aligned as cmsghdr wants.
    let mut control = [0u64; 4];
    // SAFETY: msghdr is plain old data; all-zero is a valid value.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_name = addr.as_ptr() as *mut libc::c_void;
    msg.msg_namelen = addr.len();
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    if let Some(seg) = seg {
        // SAFETY: CMSG_SPACE is a pure computation.
        let space = unsafe { libc::CMSG_SPACE(std::mem::size_of::<u16>() as u32) } as usize;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = space;
        // SAFETY: msg_control points at `space` (<= 32) writable bytes, so
        // the first header and its u16 of data fit.
        unsafe {
            let c = libc::CMSG_FIRSTHDR(&msg);
            (*c).cmsg_level = libc::SOL_UDP;
            (*c).cmsg_type = UDP_SEGMENT;
            (*c).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<u16>() as u32) as usize;
            std::ptr::write_unaligned(libc::CMSG_DATA(c).cast::<u16>(), seg as u16);
        }
    }
    loop {
        // SAFETY: msg points at live buffers (address, iovec, control) for
        // the duration of the call; sendmsg only reads them.
        let n = unsafe { libc::sendmsg(fd, &msg, 0) };
        if n >= 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;
    use std::os::fd::AsRawFd;

    #[test]
    fn runs_of_one_size_become_one_gso_send() {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        rx.set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let dest = rx.local_addr().unwrap();
        let mut q = TxQueue::new();
        for i in 0..10u8 {
            q.datagram(tx.as_raw_fd(), dest, 1, 100, 92).fill(i);
        }
        q.datagram(tx.as_raw_fd(), dest, 1, 40, 32).fill(10);
        // A longer one starts a new message.
        q.datagram(tx.as_raw_fd(), dest, 1, 200, 192).fill(11);
        assert_eq!(q.msgs.len(), 2);
        q.flush();
        let sent: Vec<(u64, u64, bool)> = q
            .outcomes
            .iter()
            .map(|o| (o.frames, o.bytes, o.gso))
            .collect();
        assert_eq!(sent, [(11, 952, true), (1, 192, false)]);
        assert!(q.outcomes.iter().all(|o| o.error.is_none()));
        // Without UDP_GRO the receiver sees every datagram on its own, in order.
        let mut buf = [0u8; 1000];
        for i in 0..12u8 {
            let n = rx.recv(&mut buf).unwrap();
            let want = match i {
                10 => 40,
                11 => 200,
                _ => 100,
            };
            assert_eq!((n, buf[0]), (want, i));
        }
    }
}
