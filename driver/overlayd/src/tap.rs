//! TAP devices: the Linux stand-in for an illumos GLDv3 overlay NIC.
//!
//! Opening `/dev/net/tun` with `IFF_TAP | IFF_NO_PI | IFF_VNET_HDR` gives a
//! file descriptor that reads and writes whole Ethernet frames, each behind
//! a virtio-net header ([`overlay_wire::offload::VnetHdr`]). `TUNSETOFFLOAD`
//! then lets the kernel leave TCP/UDP checksums to us and hand over TCP
//! super-frames of up to 64 KiB (TSO), and accept such frames from us: the
//! data path cuts and coalesces them (see `datapath.rs`). This is the thin
//! I/O shell around those ioctls and SIOCSIFMTU.
//!
//! Persistence: a temporary overlay's device vanishes when the descriptor
//! closes (overlayd exits or crashes). A persistent overlay's device is
//! marked `TUNSETPERSIST`, so it outlives overlayd with its ifindex,
//! addresses, routes and the macvlans (VNICs) over it; the next overlayd
//! attaches to it again with the same `TUNSETIFF` (the kernel accepts that
//! only for an existing *TAP* device that no other descriptor holds, and
//! refuses anything else of that name with `EINVAL` or `EBUSY`).
//! `delete-overlay` clears the mark before closing, and the device goes.
//!
//! Queues: with more than one forwarding thread the device is made
//! `IFF_MULTI_QUEUE` and opened once per thread, each descriptor a queue of
//! its own. The kernel picks the queue of a frame the guest sends by its
//! flow (the queue that last wrote that flow to it, else a hash), so each
//! flow stays with one thread both ways. A persistent device left by an
//! overlayd with one queue keeps one: the kernel attaches only with the
//! flags the device was made with, and the other threads then write to it
//! through a duplicate of the one descriptor.

use overlay_wire::offload::VNET_HDR_LEN;
use std::ffi::CStr;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
const TUNSETOFFLOAD: libc::c_ulong = 0x4004_54d0;
const TUNSETPERSIST: libc::c_ulong = 0x4004_54cb;
const TUNSETVNETHDRSZ: libc::c_ulong = 0x4004_54d8;
/// `IFF_VNET_HDR`: frames are read and written behind a virtio-net header.
pub(crate) const IFF_VNET_HDR: libc::c_int = 0x4000;
const IFF_PERSIST: u32 = 0x0800;
const IFF_MULTI_QUEUE: libc::c_int = 0x0100;
/// `TUN_F_CSUM`: the device takes frames with partial checksums.
pub(crate) const TUN_F_CSUM: libc::c_uint = 0x01;
/// `TUN_F_TSO4`.
pub(crate) const TUN_F_TSO4: libc::c_uint = 0x02;
/// `TUN_F_TSO6`.
pub(crate) const TUN_F_TSO6: libc::c_uint = 0x04;

/// An open TAP device.
#[derive(Debug)]
pub struct Tap {
    fd: OwnedFd,
    name: String,
    /// The device existed before we opened it (a persistent TAP device
    /// left by an earlier overlayd), and we attached to it.
    pub adopted: bool,
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
    /// Creates (or attaches to) TAP device `name`, non-blocking, with `mtu`,
    /// virtio-net headers and checksum and TCP segmentation offloads;
    /// `persist` says whether the device outlives this descriptor. With
    /// `queues` > 1 the device is multi-queue and the other queues come
    /// back beside it (fewer when an adopted device has one queue: see the
    /// module's text).
    pub fn create(
        name: &str,
        mtu: u32,
        persist: bool,
        queues: usize,
    ) -> io::Result<(Tap, Vec<Tap>)> {
        let adopted = ifindex(name).is_some();
        // An adopted device keeps the flags it was made with; where sysfs
        // does not show them, the kernel's refusal (EINVAL) says so.
        let mut multi = match adopted {
            true => match check_ours(name)? {
                Some(f) => f & IFF_MULTI_QUEUE as u32 != 0,
                None => queues > 1,
            },
            false => queues > 1,
        };
        let base = libc::IFF_TAP | libc::IFF_NO_PI | IFF_VNET_HDR;
        let flags = |multi: bool| base | if multi { IFF_MULTI_QUEUE } else { 0 };
        let first = match open_queue(name, flags(multi)) {
            Err(e) if adopted && multi && e.raw_os_error() == Some(libc::EINVAL) => {
                multi = false;
                open_queue(name, flags(false))
            }
            r => r,
        }?;
        let open = |fd: OwnedFd| Tap {
            fd,
            name: name.to_string(),
            adopted,
        };
        let tap = open(first);
        // MTU first: a failure then leaves no new persistent device behind.
        tap.set_mtu(mtu)?;
        tap.set_persist(persist)?;
        let more = match multi {
            true => (1..queues)
                .map(|_| open_queue(name, flags(true)).map(open))
                .collect::<io::Result<Vec<_>>>(),
            false => Ok(Vec::new()),
        };
        match more {
            Ok(more) => Ok((tap, more)),
            Err(e) => {
                if !adopted {
                    let _ = tap.set_persist(false);
                }
                Err(e)
            }
        }
    }

    /// A stand-in for a TAP queue over any descriptor (a pipe's write end in
    /// the forwarding engine's unit tests, which need no TAP device).
    #[cfg(test)]
    pub fn for_test(fd: OwnedFd, name: &str) -> Tap {
        Tap {
            fd,
            name: name.to_string(),
            adopted: false,
        }
    }

    /// A second descriptor of the same queue (for a thread that only writes).
    pub fn try_clone(&self) -> io::Result<Tap> {
        Ok(Tap {
            fd: self.fd.try_clone()?,
            name: self.name.clone(),
            adopted: self.adopted,
        })
    }

    /// Marks the device persistent (it outlives the descriptor) or not (it
    /// goes when the descriptor closes).
    pub fn set_persist(&self, persist: bool) -> io::Result<()> {
        // SAFETY: TUNSETPERSIST takes its flag as the argument itself.
        if unsafe {
            libc::ioctl(
                self.fd.as_raw_fd(),
                TUNSETPERSIST as _,
                persist as libc::c_ulong,
            )
        } < 0
        {
            return Err(io::Error::last_os_error());
        }
        Ok(())
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

    /// Reads one virtio-net header and frame; `WouldBlock` when none is waiting.
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

    /// Writes one frame behind its virtio-net header.
    #[inline]
    pub fn write(&self, hdr: &[u8; VNET_HDR_LEN], frame: &[u8]) -> io::Result<usize> {
        let iov = [
            libc::iovec {
                iov_base: hdr.as_ptr() as *mut libc::c_void,
                iov_len: hdr.len(),
            },
            libc::iovec {
                iov_base: frame.as_ptr() as *mut libc::c_void,
                iov_len: frame.len(),
            },
        ];
        // SAFETY: both iovecs point at live buffers of their lengths, which
        // writev(2) only reads.
        let n = unsafe { libc::writev(self.fd.as_raw_fd(), iov.as_ptr(), 2) };
        if n < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(n as usize)
        }
    }
}

/// Opens one queue of TAP device `name` with `flags`: `TUNSETIFF` (which
/// creates the device, or attaches to it) and `TUNSETOFFLOAD`.
fn open_queue(name: &str, flags: libc::c_int) -> io::Result<OwnedFd> {
    open_tun(
        name,
        flags,
        None,
        TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6,
        true,
    )
    .map_err(|(_, e)| e)
}

/// Opens `/dev/net/tun` as device `name` with `flags` (`TUNSETIFF`), a
/// virtio-net header of `vnet_hdr` bytes if given (`TUNSETVNETHDRSZ`), and
/// `offloads` (`TUNSETOFFLOAD`), non-blocking if asked; on failure, the
/// step that failed (its ioctl's name) and the error.
pub(crate) fn open_tun(
    name: &str,
    flags: libc::c_int,
    vnet_hdr: Option<libc::c_int>,
    offloads: libc::c_uint,
    nonblock: bool,
) -> Result<OwnedFd, (&'static str, io::Error)> {
    let path: &CStr = c"/dev/net/tun";
    let mode = libc::O_RDWR | libc::O_CLOEXEC | if nonblock { libc::O_NONBLOCK } else { 0 };
    // SAFETY: plain open(2) of a NUL-terminated path.
    let raw = unsafe { libc::open(path.as_ptr(), mode) };
    if raw < 0 {
        return Err(("open /dev/net/tun", io::Error::last_os_error()));
    }
    // SAFETY: raw is a fresh descriptor we own.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    let mut ifr = ifreq(name).map_err(|e| ("TUNSETIFF", e))?;
    ifr.ifr_ifru.ifru_flags = flags as libc::c_short;
    // SAFETY: TUNSETIFF takes a pointer to an ifreq that lives across the call.
    if unsafe { libc::ioctl(fd.as_raw_fd(), TUNSETIFF as _, &mut ifr) } < 0 {
        return Err(("TUNSETIFF", io::Error::last_os_error()));
    }
    if let Some(size) = vnet_hdr {
        // SAFETY: TUNSETVNETHDRSZ reads an int through the pointer, which
        // outlives the call.
        if unsafe { libc::ioctl(fd.as_raw_fd(), TUNSETVNETHDRSZ as _, &size) } < 0 {
            return Err(("TUNSETVNETHDRSZ", io::Error::last_os_error()));
        }
    }
    // SAFETY: TUNSETOFFLOAD takes its flags as the argument itself.
    if unsafe {
        libc::ioctl(
            fd.as_raw_fd(),
            TUNSETOFFLOAD as _,
            offloads as libc::c_ulong,
        )
    } < 0
    {
        return Err(("TUNSETOFFLOAD", io::Error::last_os_error()));
    }
    Ok(fd)
}

/// Checks that the existing device `name` is one a persistent overlay
/// leaves behind: a TAP device with our flags and `IFF_PERSIST`, as sysfs
/// shows them (`tun_flags`). Where sysfs does not show our namespace's
/// devices the check is skipped (`None`), and `TUNSETIFF` still refuses
/// anything that is not a free TAP device. The device's flags otherwise.
fn check_ours(name: &str) -> io::Result<Option<u32>> {
    let dir = std::path::Path::new("/sys/class/net").join(name);
    if !dir.exists() {
        return Ok(None);
    }
    let not_ours = |what: String| {
        io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!("a network device named {name} exists and is not a TAP device left by overlayd ({what}); delete it or pick another name"),
        )
    };
    let text = match std::fs::read_to_string(dir.join("tun_flags")) {
        Ok(t) => t,
        Err(_) => return Err(not_ours("it is not a TUN/TAP device".into())),
    };
    let flags = u32::from_str_radix(text.trim().trim_start_matches("0x"), 16).unwrap_or(0);
    let want = (libc::IFF_TAP | libc::IFF_NO_PI | IFF_VNET_HDR) as u32 | IFF_PERSIST;
    if flags & want != want {
        return Err(not_ours(format!("tun_flags {flags:#x}, not {want:#x}")));
    }
    Ok(Some(flags))
}

/// The ifindex of network device `name` in our namespace, if there is one.
pub fn ifindex(name: &str) -> Option<u32> {
    let c = std::ffi::CString::new(name).ok()?;
    // SAFETY: if_nametoindex(3) reads a NUL-terminated string we own.
    let i = unsafe { libc::if_nametoindex(c.as_ptr()) };
    (i != 0).then_some(i)
}

impl AsRawFd for Tap {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}
