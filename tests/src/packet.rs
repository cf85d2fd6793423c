//! Raw Ethernet frames in and out of a device (AF_PACKET): how tests play a
//! guest that sends what no tool sends (a DHCP request, a MAC flood) and
//! watch what arrives on a TAP device; and raw IPv4 payloads (hand-made GRE)
//! sent from a host.

use crate::lab::{Host, Lab};
use std::ffi::CString;
use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Instant;

/// An AF_PACKET socket bound to one device of the namespace of the thread
/// that opened it (see [`crate::Lab::in_ns`]), for every EtherType.
pub struct PacketSocket {
    fd: OwnedFd,
    addr: libc::sockaddr_ll,
}

impl PacketSocket {
    /// Opens it on `dev`, with a 200 ms receive timeout. Panics if it
    /// cannot (no device, no privilege).
    pub fn open(dev: &str) -> PacketSocket {
        let proto = (libc::ETH_P_ALL as u16).to_be();
        // SAFETY: plain socket(2); the descriptor is owned right away.
        let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, proto as i32) };
        assert!(fd >= 0, "AF_PACKET socket: {}", io::Error::last_os_error());
        // SAFETY: fd is a new descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let name = CString::new(dev).expect("a device name without NUL");
        // SAFETY: a NUL-terminated name.
        let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
        assert!(ifindex != 0, "no device {dev} in this namespace");
        // SAFETY: sockaddr_ll is plain data; all-zero is a valid value.
        let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        addr.sll_family = libc::AF_PACKET as u16;
        addr.sll_protocol = proto;
        addr.sll_ifindex = ifindex as i32;
        addr.sll_halen = 6;
        // SAFETY: addr lives across the call and its size is passed.
        let r = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                &addr as *const _ as *const libc::sockaddr,
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        assert_eq!(r, 0, "bind to {dev}: {}", io::Error::last_os_error());
        let tv = libc::timeval {
            tv_sec: 0,
            tv_usec: 200_000,
        };
        // SAFETY: tv lives across the call and its size is passed.
        unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                &tv as *const _ as *const libc::c_void,
                std::mem::size_of::<libc::timeval>() as u32,
            )
        };
        PacketSocket { fd, addr }
    }

    /// Sends one whole frame out of the device; false if the device's
    /// queue refused it (ENOBUFS), a panic on any other error.
    pub fn send(&self, frame: &[u8]) -> bool {
        // SAFETY: frame and addr live across the call; sizes are passed.
        let n = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                frame.as_ptr() as *const libc::c_void,
                frame.len(),
                0,
                &self.addr as *const _ as *const libc::sockaddr,
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            assert_eq!(e.raw_os_error(), Some(libc::ENOBUFS), "sendto: {e}");
            return false;
        }
        assert_eq!(n as usize, frame.len(), "short send");
        true
    }

    /// Frames seen on the device (both directions) until `until`, keeping
    /// those `keep` accepts.
    pub fn frames_until(&self, until: Instant, keep: impl Fn(&[u8]) -> bool) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let mut buf = vec![0u8; 65536];
        while Instant::now() < until {
            // SAFETY: buf is writable for its whole length.
            let n = unsafe {
                libc::recv(
                    self.fd.as_raw_fd(),
                    buf.as_mut_ptr() as *mut libc::c_void,
                    buf.len(),
                    0,
                )
            };
            if n > 0 && keep(&buf[..n as usize]) {
                out.push(buf[..n as usize].to_vec());
            }
        }
        out
    }
}

impl Lab {
    /// Sends `packets` as the payloads of IPv4 protocol `proto` (47: GRE)
    /// from inside host `h`'s namespace to `to`, through a raw socket:
    /// the kernel writes the IP header. Panics if a send fails.
    pub fn send_raw_ipv4(&self, h: Host, proto: u8, to: Ipv4Addr, packets: &[Vec<u8>]) {
        self.in_ns(h, || {
            // SAFETY: plain system calls on a descriptor we own, with a
            // sockaddr_in and buffers that outlive them.
            unsafe {
                let fd = libc::socket(libc::AF_INET, libc::SOCK_RAW, i32::from(proto));
                assert!(fd >= 0, "raw socket: {}", io::Error::last_os_error());
                let fd = OwnedFd::from_raw_fd(fd);
                let sa = libc::sockaddr_in {
                    sin_family: libc::AF_INET as libc::sa_family_t,
                    sin_port: 0,
                    sin_addr: libc::in_addr {
                        s_addr: u32::from(to).to_be(),
                    },
                    sin_zero: [0; 8],
                };
                for p in packets {
                    let n = libc::sendto(
                        fd.as_raw_fd(),
                        p.as_ptr().cast(),
                        p.len(),
                        0,
                        (&sa as *const libc::sockaddr_in).cast(),
                        std::mem::size_of::<libc::sockaddr_in>() as u32,
                    );
                    assert!(n >= 0, "sendto: {}", io::Error::last_os_error());
                }
            }
        });
    }
}
