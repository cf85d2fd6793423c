//! Live capture on an underlay interface through an AF_PACKET socket.
//!
//! One raw socket bound to the interface sees every frame it sends and
//! receives, link header included, as tcpdump does. Reads time out every
//! 200 ms so that a stop request (SIGINT, SIGTERM) is noticed while the
//! wire is quiet. Only Ethernet-framed interfaces are decoded (ARPHRD
//! ether and loopback); others are refused up front.

use crate::decode::LinkType;
use crate::read::Record;
use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};

/// Why live capture cannot start or go on.
#[derive(Debug, thiserror::Error)]
pub enum LiveError {
    /// No such interface (in this network namespace).
    #[error("no interface named {0} here (is ovsnoop in the right network namespace?)")]
    NoInterface(String),
    /// The interface does not carry Ethernet frames.
    #[error("interface {iface} has link type {hatype}; only Ethernet interfaces can be captured")]
    NotEthernet {
        /// The interface.
        iface: String,
        /// Its ARPHRD_* type.
        hatype: String,
    },
    /// A socket call failed.
    #[error("cannot capture on {iface}: {what}")]
    Socket {
        /// The interface.
        iface: String,
        /// Which call.
        what: &'static str,
        /// Why.
        #[source]
        source: io::Error,
    },
}

/// Captures on `iface` until `stop` is set, calling `each` for every frame.
pub fn capture(
    iface: &str,
    stop: &AtomicBool,
    ready: impl FnOnce(),
    mut each: impl FnMut(Record<'_>),
) -> Result<(), LiveError> {
    let sock_err = |what, source| LiveError::Socket {
        iface: iface.to_string(),
        what,
        source,
    };
    let name = CString::new(iface).map_err(|_| LiveError::NoInterface(iface.to_string()))?;
    // SAFETY: `name` is a valid NUL-terminated string.
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
    if index == 0 {
        return Err(LiveError::NoInterface(iface.to_string()));
    }
    if let Ok(t) = std::fs::read_to_string(format!("/sys/class/net/{iface}/type")) {
        let t = t.trim();
        // ARPHRD_ETHER and ARPHRD_LOOPBACK both carry an Ethernet header.
        if t != "1" && t != "772" {
            return Err(LiveError::NotEthernet {
                iface: iface.to_string(),
                hatype: t.to_string(),
            });
        }
    }
    let proto = (libc::ETH_P_ALL as u16).to_be();
    // SAFETY: plain socket(2) call; the result is checked before use.
    let fd = unsafe {
        libc::socket(
            libc::AF_PACKET,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            i32::from(proto),
        )
    };
    if fd < 0 {
        return Err(sock_err("socket(AF_PACKET)", io::Error::last_os_error()));
    }
    // SAFETY: `fd` is a fresh descriptor that nothing else owns.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: sockaddr_ll is plain data; all-zero is a valid value.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_protocol = proto;
    sll.sll_ifindex = index as i32;
    // SAFETY: `sll` is a valid sockaddr_ll and the length says so.
    let r = unsafe {
        libc::bind(
            sock.as_raw_fd(),
            std::ptr::addr_of!(sll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    if r < 0 {
        return Err(sock_err("bind", io::Error::last_os_error()));
    }
    let tv = libc::timeval {
        tv_sec: 0,
        tv_usec: 200_000,
    };
    // SAFETY: `tv` is a valid timeval and the length says so.
    let r = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            std::ptr::addr_of!(tv).cast(),
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        )
    };
    if r < 0 {
        return Err(sock_err(
            "setsockopt(SO_RCVTIMEO)",
            io::Error::last_os_error(),
        ));
    }
    ready();
    let mut buf = vec![0u8; 65536];
    while !stop.load(Ordering::Relaxed) {
        // MSG_TRUNC: the return value is the frame's full length.
        // SAFETY: `buf` is valid for writes of its length.
        let n = unsafe {
            libc::recv(
                sock.as_raw_fd(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                libc::MSG_TRUNC,
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            match e.kind() {
                io::ErrorKind::WouldBlock
                | io::ErrorKind::Interrupted
                | io::ErrorKind::TimedOut => continue,
                _ => return Err(sock_err("recv", e)),
            }
        }
        let len = n as usize;
        let ts_ns = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        each(Record {
            link: LinkType::Ethernet,
            data: &buf[..len.min(buf.len())],
            len,
            ts_ns,
        });
    }
    Ok(())
}
