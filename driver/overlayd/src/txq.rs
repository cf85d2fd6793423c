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
//!
//! A queued message holds its sending socket (an `Arc` of the mux's
//! descriptor), so a mux or a worker's copy of it that goes away while
//! frames wait cannot close the socket under them: each frame leaves on
//! the socket it was queued for, never on a descriptor number that the
//! kernel has since handed to something else.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::Arc;

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
    fd: Arc<OwnedFd>,
    dest: SocketAddr,
    start: usize,
    len: usize,
    seg: usize,
    segs: usize,
    oid: u64,
    /// Inner-frame bytes (what the overlay's counters count).
    bytes: u64,
    /// Encapsulation bytes before each inner frame.
    hlen: usize,
    /// Never joined by another datagram (a raw socket has no GSO).
    alone: bool,
}

/// What became of one queued message (or of the part of it that shared a
/// fate: a GSO send refused and resent one datagram at a time may leave in
/// part, and then has one outcome for what left and one for the rest).
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
        fd: &Arc<OwnedFd>,
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
        fd: &Arc<OwnedFd>,
        dest: SocketAddr,
        oid: u64,
        len: usize,
        inner: usize,
    ) -> &mut [u8] {
        self.put(fd, dest, oid, len, inner, true)
    }

    fn put(
        &mut self,
        fd: &Arc<OwnedFd>,
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
                    && Arc::ptr_eq(&m.fd, fd)
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
                fd: Arc::clone(fd),
                dest,
                start,
                len,
                seg: len,
                segs: 1,
                oid,
                bytes: inner as u64,
                hlen: len - inner,
                alone,
            });
        }
        &mut self.buf[start..start + len]
    }

    /// Sends everything queued; outcomes go to [`outcomes`](Self::outcomes).
    pub fn flush(&mut self) {
        for m in self.msgs.drain(..) {
            let data = &self.buf[m.start..m.start + m.len];
            let fd = m.fd.as_raw_fd();
            let outcome = |frames: usize, bytes: u64, error, gso| Outcome {
                oid: m.oid,
                dest: m.dest,
                frames: frames as u64,
                bytes,
                error,
                gso,
            };
            if m.segs == 1 {
                let r = send(fd, m.dest, data, None);
                self.outcomes.push(outcome(1, m.bytes, r.err(), false));
                continue;
            }
            match send(fd, m.dest, data, Some(m.seg)) {
                Ok(()) => self.outcomes.push(outcome(m.segs, m.bytes, None, true)),
                // EIO: no checksum offload on the route; EINVAL: a segment
                // larger than the path MTU. Send them one by one, and count
                // exactly what left and what did not.
                Err(e) if matches!(e.raw_os_error(), Some(libc::EIO | libc::EINVAL)) => {
                    let (sent, sent_bytes, error) =
                        one_by_one(data, m.seg, m.hlen, |d| send(fd, m.dest, d, None));
                    if sent > 0 {
                        self.outcomes.push(outcome(sent, sent_bytes, None, false));
                    }
                    if let Some(e) = error {
                        let rest = m.segs - sent;
                        self.outcomes
                            .push(outcome(rest, m.bytes - sent_bytes, Some(e), false));
                    }
                }
                Err(e) => self.outcomes.push(outcome(m.segs, m.bytes, Some(e), true)),
            }
        }
        self.used = 0;
    }
}

/// Sends the datagrams of `data` (`seg` bytes apart, each with `hlen`
/// bytes of encapsulation) one at a time through `send`, stopping at the
/// first refusal: how many left, their inner bytes, and the refusal.
fn one_by_one(
    data: &[u8],
    seg: usize,
    hlen: usize,
    mut send: impl FnMut(&[u8]) -> io::Result<()>,
) -> (usize, u64, Option<io::Error>) {
    let (mut sent, mut bytes) = (0, 0);
    for d in data.chunks(seg) {
        if let Err(e) = send(d) {
            return (sent, bytes, Some(e));
        }
        sent += 1;
        bytes += (d.len() - hlen) as u64;
    }
    (sent, bytes, None)
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

    #[test]
    fn runs_of_one_size_become_one_gso_send() {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        rx.set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        let tx = Arc::new(OwnedFd::from(UdpSocket::bind("127.0.0.1:0").unwrap()));
        let dest = rx.local_addr().unwrap();
        let mut q = TxQueue::new();
        for i in 0..10u8 {
            q.datagram(&tx, dest, 1, 100, 92).fill(i);
        }
        q.datagram(&tx, dest, 1, 40, 32).fill(10);
        // A longer one starts a new message.
        q.datagram(&tx, dest, 1, 200, 192).fill(11);
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

    #[test]
    fn a_queued_frame_leaves_on_its_own_socket_after_the_mux_let_go() {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        rx.set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        let dest = rx.local_addr().unwrap();
        let old = UdpSocket::bind("127.0.0.1:0").unwrap();
        let old_port = old.local_addr().unwrap().port();
        let old_fd = old.as_raw_fd();
        let sender = Arc::new(OwnedFd::from(old));
        let mut q = TxQueue::new();
        q.datagram(&sender, dest, 1, 64, 56).fill(7);
        // The mux (or a worker's copy of it) goes away while the frame waits,
        // and a new socket is opened: it must not take over the old number.
        drop(sender);
        let new = UdpSocket::bind("127.0.0.1:0").unwrap();
        assert_ne!(new.as_raw_fd(), old_fd, "the queued socket is still open");
        q.flush();
        assert!(q.outcomes.iter().all(|o| o.error.is_none()));
        let mut buf = [0u8; 100];
        let (n, from) = rx.recv_from(&mut buf).unwrap();
        assert_eq!(
            (n, from.port()),
            (64, old_port),
            "sent from the socket it was queued for"
        );
        assert!(q.msgs.is_empty(), "flushed, the queue holds no socket");
        drop(new);
    }

    #[test]
    fn a_gso_send_resent_one_by_one_counts_exactly_what_left() {
        // Five datagrams of 100 bytes (8 of them encapsulation), the last 40;
        // the kernel refuses the fourth.
        let data = vec![0u8; 440];
        let mut calls = 0;
        let (sent, bytes, err) = one_by_one(&data, 100, 8, |_| {
            calls += 1;
            if calls == 4 {
                Err(io::Error::from_raw_os_error(libc::ENOBUFS))
            } else {
                Ok(())
            }
        });
        assert_eq!((sent, bytes), (3, 3 * 92));
        assert_eq!(err.unwrap().raw_os_error(), Some(libc::ENOBUFS));
        let (sent, bytes, err) = one_by_one(&data, 100, 8, |_| Ok(()));
        assert_eq!((sent, bytes, err.is_none()), (5, 4 * 92 + 32, true));
    }
}
