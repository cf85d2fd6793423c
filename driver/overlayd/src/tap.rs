//! TAP devices: the Linux stand-in for an illumos GLDv3 overlay NIC.
//!
//! Opening `/dev/net/tun` with `IFF_TAP | IFF_NO_PI` gives a file descriptor
//! that reads and writes whole Ethernet frames. This is the thin I/O shell
//! around two ioctls (TUNSETIFF, SIOCSIFMTU); the device vanishes when the
//! descriptor closes.

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

const TUNSETIFF: libc::c_ulong = 0x4004_54ca;

/// An open TAP device.
#[derive(Debug)]
pub struct Tap {
    fd: OwnedFd,
    name: String,
}

fn ifreq(name: &str) -> io::Result<libc::ifreq> {
    // SAFETY: ifreq is plain old data; all-zero is a valid value.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    if name.is_empty() || name.len() >= libc::IFNAMSIZ {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("device name '{name}' must have 1-15 bytes"),
        ));
    }
    for (d, s) in ifr.ifr_name.iter_mut().zip(name.bytes()) {
        *d = s as libc::c_char;
    }
    Ok(ifr)
}

impl Tap {
    /// Creates (or attaches to) TAP device `name`, non-blocking, with `mtu`.
    pub fn create(name: &str, mtu: u32) -> io::Result<Tap> {
        let path: &CStr = c"/dev/net/tun";
        // SAFETY: plain open(2) of a NUL-terminated path.
        let raw = unsafe {
            libc::open(
                path.as_ptr(),
                libc::O_RDWR | libc::O_NONBLOCK | libc::O_CLOEXEC,
            )
        };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: raw is a fresh descriptor we own.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let mut ifr = ifreq(name)?;
        ifr.ifr_ifru.ifru_flags = (libc::IFF_TAP | libc::IFF_NO_PI) as libc::c_short;
        // SAFETY: TUNSETIFF takes a pointer to an ifreq that lives across the call.
        if unsafe { libc::ioctl(fd.as_raw_fd(), TUNSETIFF as _, &mut ifr) } < 0 {
            return Err(io::Error::last_os_error());
        }
        let tap = Tap {
            fd,
            name: name.to_string(),
        };
        tap.set_mtu(mtu)?;
        Ok(tap)
    }

    /// Sets the device MTU.
    pub fn set_mtu(&self, mtu: u32) -> io::Result<()> {
        // SAFETY: socket(2) with constant arguments.
        let s = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
        if s < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: s is a fresh descriptor we own.
        let s = unsafe { OwnedFd::from_raw_fd(s) };
        let mut ifr = ifreq(&self.name)?;
        ifr.ifr_ifru.ifru_mtu = mtu as libc::c_int;
        // SAFETY: SIOCSIFMTU takes a pointer to an ifreq that lives across the call.
        if unsafe { libc::ioctl(s.as_raw_fd(), libc::SIOCSIFMTU as _, &mut ifr) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Reads one frame; `WouldBlock` when none is waiting.
    #[inline]
    pub fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        // SAFETY: buf is valid for buf.len() bytes.
        let n = unsafe { libc::read(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if n < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(n as usize)
        }
    }

    /// Writes one frame.
    #[inline]
    pub fn write(&self, frame: &[u8]) -> io::Result<usize> {
        // SAFETY: frame is valid for frame.len() bytes.
        let n = unsafe { libc::write(self.fd.as_raw_fd(), frame.as_ptr().cast(), frame.len()) };
        if n < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(n as usize)
        }
    }
}

impl AsRawFd for Tap {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}
