//! Kernel tunnel segmentation through a TAP device (issue 21's prototype,
//! measured by `tests/benches/tunnel_gso.rs`).
//!
//! Since Linux 6.17 a TAP device takes a whole VXLAN super-frame — outer
//! Ethernet/IPv4/UDP/VXLAN, inner Ethernet/IPv4/TCP and up to 64 KiB of
//! payload — behind a 24-byte `struct virtio_net_hdr_v1_hash_tunnel`, and
//! the kernel cuts it into MTU-sized datagrams only where the outgoing
//! device needs it (over a veth: nowhere). This module holds what that
//! takes, from the kernel's own definitions (`include/uapi/linux/
//! virtio_net.h`, `if_tun.h`, `drivers/net/tun_vnet.h`,
//! `include/linux/virtio_net.h`):
//!
//! - [`TunnelVnetHdr`] (overlayd's own, from `overlay_wire::tunnel`): the header. Its first 12 bytes are `virtio_net_hdr_v1`
//!   (`flags`, `gso_type`, `hdr_len`, `gso_size`, `csum_start`,
//!   `csum_offset`, `num_buffers`), then the hash fields (`hash_value_lo`,
//!   `hash_value_hi`, `hash_report`, `padding`: zero here), then
//!   `outer_th_offset` (the outer UDP header) and `inner_nh_offset` (the
//!   inner IP header, past the inner Ethernet header: the kernel treats
//!   outer UDP, VXLAN and inner Ethernet as one tunnel header), both
//!   little-endian and counted from the frame's first byte. `gso_type` is
//!   the inner type (`TCPV4`) ORed with [`GSO_UDP_TUNNEL_IPV4`] or
//!   [`GSO_UDP_TUNNEL_IPV6`] (the outer family); `NEEDS_CSUM` is required,
//!   with `csum_start` at the inner TCP header and the field holding the
//!   inner pseudo-header sum; [`F_UDP_TUNNEL_CSUM`] asks for outer UDP
//!   checksums too (else the outer checksum stays 0, as kernel VXLAN sends
//!   over IPv4 by default).
//! - [`UnderlayTap`]: a TAP device opened with `IFF_VNET_HDR` and
//!   `TUNSETVNETHDRSZ` 24. On *write* (`tun_get_user`) the kernel parses the
//!   tunnel fields whenever the header size is at least 24
//!   (`tun_vnet_hdr_guest_features`), whatever `TUNSETOFFLOAD` says. On
//!   *read* (`tun_put_user`) it hands over whole tunnel super-frames only
//!   when the device's features have `NETIF_F_GSO_UDP_TUNNEL`, which
//!   `TUNSETOFFLOAD` with [`TUN_F_UDP_TUNNEL_GSO`] (and one of the plain
//!   TSO flags) turns on; without it they are cut before they are queued
//!   to the device. A kernel without the feature refuses that
//!   `TUNSETOFFLOAD` with `EINVAL` (unknown flag bits): the probe.
//! - [`SuperFrame`]: one encapsulated TCP super-frame of a flow, built
//!   once, with the sequence number and IP identifications patched per
//!   send; the same bytes serve both paths — written whole to the TAP
//!   device, or cut by `overlay_wire::offload::Tso` (overlayd's own code)
//!   into VXLAN datagrams for a `UDP_SEGMENT` send.
//! - [`vxlan_tcp_ack`]: the acknowledgement and window of a TCP segment
//!   carried in a VXLAN datagram (the receiver's ACKs, read back by the
//!   sender for its flow control).

use overlay_wire::offload::{fold, sum, VnetHdr, F_NEEDS_CSUM, GSO_TCPV4};
pub use overlay_wire::tunnel::{
    TunnelVnetHdr, F_UDP_TUNNEL_CSUM, GSO_UDP_TUNNEL_IPV4, GSO_UDP_TUNNEL_IPV6, TUNNEL_VNET_HDR_LEN,
};
use std::io::{self, IoSlice};
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// `TUN_F_CSUM`: the device takes frames with partial checksums.
pub const TUN_F_CSUM: u32 = 0x01;
/// `TUN_F_TSO4`.
pub const TUN_F_TSO4: u32 = 0x02;
/// `TUN_F_TSO6`.
pub const TUN_F_TSO6: u32 = 0x04;
/// `TUN_F_UDP_TUNNEL_GSO` (6.17): TSO/USO inside UDP tunnels.
pub const TUN_F_UDP_TUNNEL_GSO: u32 = 0x080;
/// `TUN_F_UDP_TUNNEL_GSO_CSUM` (6.17): the same, outer UDP checksum offloaded.
pub const TUN_F_UDP_TUNNEL_GSO_CSUM: u32 = 0x100;

const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
const TUNSETOFFLOAD: libc::c_ulong = 0x4004_54d0;
const TUNSETVNETHDRSZ: libc::c_ulong = 0x4004_54d8;
const IFF_VNET_HDR: libc::c_int = 0x4000;

/// Outer Ethernet + IPv4 + UDP + VXLAN.
pub const OUTER_LEN: usize = 14 + 20 + 8 + 8;
/// Inner Ethernet + IPv4 + TCP (no options).
pub const INNER_HDR_LEN: usize = 14 + 20 + 20;
/// The VXLAN header's I flag.
const VXLAN_I: u8 = 0x08;

/// A TAP device with 24-byte virtio-net headers, in the namespace of the
/// thread that opened it.
pub struct UnderlayTap {
    fd: OwnedFd,
    /// The device's name.
    pub name: String,
}

impl UnderlayTap {
    /// Creates TAP device `name` (`IFF_TAP | IFF_NO_PI | IFF_VNET_HDR`)
    /// with the tunnel header size. No offloads yet: see
    /// [`set_offload`](Self::set_offload).
    pub fn open(name: &str) -> io::Result<UnderlayTap> {
        // SAFETY: open(2) of a constant NUL-terminated path; owned at once.
        let fd = unsafe { libc::open(c"/dev/net/tun".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fd is new and owned by nothing else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: ifreq is plain data; all-zero is valid.
        let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
        for (d, s) in ifr.ifr_name.iter_mut().zip(name.bytes().take(15)) {
            *d = s as libc::c_char;
        }
        ifr.ifr_ifru.ifru_flags = (libc::IFF_TAP | libc::IFF_NO_PI | IFF_VNET_HDR) as libc::c_short;
        // SAFETY: TUNSETIFF takes a pointer to an ifreq that outlives the call.
        if unsafe { libc::ioctl(fd.as_raw_fd(), TUNSETIFF as _, &mut ifr) } < 0 {
            return Err(io::Error::last_os_error());
        }
        let size: libc::c_int = TUNNEL_VNET_HDR_LEN as libc::c_int;
        // SAFETY: TUNSETVNETHDRSZ reads an int through the pointer.
        if unsafe { libc::ioctl(fd.as_raw_fd(), TUNSETVNETHDRSZ as _, &size) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(UnderlayTap {
            fd,
            name: name.to_string(),
        })
    }

    /// `TUNSETOFFLOAD` with `flags` (`TUN_F_*`): what the device may hand
    /// us on read. `EINVAL` for a flag this kernel does not know.
    pub fn set_offload(&self, flags: u32) -> io::Result<()> {
        // SAFETY: TUNSETOFFLOAD takes its flags as the argument itself.
        if unsafe {
            libc::ioctl(
                self.fd.as_raw_fd(),
                TUNSETOFFLOAD as _,
                flags as libc::c_ulong,
            )
        } < 0
        {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Reads without blocking from now on.
    pub fn set_nonblocking(&self) {
        // SAFETY: fcntl(2) on a descriptor we own.
        unsafe {
            let fl = libc::fcntl(self.fd.as_raw_fd(), libc::F_GETFL);
            libc::fcntl(self.fd.as_raw_fd(), libc::F_SETFL, fl | libc::O_NONBLOCK);
        }
    }

    /// One frame, header first, from the pieces in `iov` (one `writev`).
    pub fn write(&self, iov: &[IoSlice<'_>]) -> io::Result<usize> {
        // SAFETY: IoSlice is ABI-compatible with iovec; the slices outlive the call.
        let n = unsafe {
            libc::writev(
                self.fd.as_raw_fd(),
                iov.as_ptr().cast(),
                iov.len() as libc::c_int,
            )
        };
        if n < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(n as usize)
        }
    }

    /// One frame, header first, into `buf` (`WouldBlock` when none waits
    /// on a non-blocking device).
    pub fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        // SAFETY: buf is writable for its whole length.
        let n = unsafe { libc::read(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if n < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(n as usize)
        }
    }
}

/// The addresses of one VXLAN-carried TCP flow.
#[derive(Clone, Copy, Debug)]
pub struct Flow {
    /// Underlay (UL3) source MAC, address and UDP port.
    pub outer_src: ([u8; 6], Ipv4Addr, u16),
    /// Underlay destination MAC, address and UDP port (4789).
    pub outer_dst: ([u8; 6], Ipv4Addr, u16),
    /// VXLAN network identifier.
    pub vni: u32,
    /// Overlay (VL2/VL3) source MAC, address and TCP port.
    pub inner_src: ([u8; 6], Ipv4Addr, u16),
    /// Overlay destination MAC, address and TCP port.
    pub inner_dst: ([u8; 6], Ipv4Addr, u16),
    /// TCP payload bytes per segment (the overlay MTU less 40).
    pub mss: u16,
}

/// One VXLAN-encapsulated TCP super-frame: the 24-byte tunnel header and
/// the outer headers in `outer`, the guest's TSO frame (inner Ethernet,
/// IPv4, TCP, payload) in `inner`, as overlayd holds it after reading its
/// overlay TAP device. The inner TCP checksum field holds the pseudo-header
/// sum (`NEEDS_CSUM`, as the guest's kernel left it).
pub struct SuperFrame {
    outer: [u8; TUNNEL_VNET_HDR_LEN + OUTER_LEN],
    /// The inner frame.
    pub inner: Vec<u8>,
    flow: Flow,
}

impl SuperFrame {
    /// Builds it around `payload` (at most 65,535 − 90 bytes, so that the
    /// outer IPv4 packet fits), sequence number 0, acknowledging `ack`,
    /// advertising `window` (already scaled down).
    pub fn new(flow: Flow, payload: &[u8], ack: u32, window: u16) -> SuperFrame {
        let inner_ip_len = 20 + 20 + payload.len();
        let outer_ip_len = 20 + 8 + 8 + 14 + inner_ip_len;
        assert!(
            outer_ip_len <= 65535,
            "a super-frame of {outer_ip_len} bytes"
        );
        let mut inner = Vec::with_capacity(INNER_HDR_LEN + payload.len());
        inner.extend_from_slice(&flow.inner_dst.0);
        inner.extend_from_slice(&flow.inner_src.0);
        inner.extend_from_slice(&0x0800u16.to_be_bytes());
        inner.extend_from_slice(&ipv4_header(
            inner_ip_len,
            6,
            flow.inner_src.1,
            flow.inner_dst.1,
        ));
        inner.extend_from_slice(&flow.inner_src.2.to_be_bytes());
        inner.extend_from_slice(&flow.inner_dst.2.to_be_bytes());
        inner.extend_from_slice(&0u32.to_be_bytes());
        inner.extend_from_slice(&ack.to_be_bytes());
        inner.extend_from_slice(&[0x50, 0x10]); // 20-byte header, ACK
        inner.extend_from_slice(&window.to_be_bytes());
        inner.extend_from_slice(&[0, 0, 0, 0]);
        inner.extend_from_slice(payload);
        // The partial checksum: the pseudo-header sum, not complemented.
        let tcp_len = 20 + payload.len();
        let pseudo = sum(
            sum(0, &inner[14 + 12..14 + 20]),
            &[0, 6, (tcp_len >> 8) as u8, tcp_len as u8],
        );
        inner[14 + 20 + 16..14 + 20 + 18].copy_from_slice(&fold(pseudo).to_ne_bytes());

        let mut outer = [0u8; TUNNEL_VNET_HDR_LEN + OUTER_LEN];
        let hdr = TunnelVnetHdr {
            flags: F_NEEDS_CSUM,
            gso_type: GSO_TCPV4 | GSO_UDP_TUNNEL_IPV4,
            hdr_len: (OUTER_LEN + INNER_HDR_LEN) as u16,
            gso_size: flow.mss,
            csum_start: (OUTER_LEN + 14 + 20) as u16,
            csum_offset: 16,
            outer_th_offset: (14 + 20) as u16,
            inner_nh_offset: (OUTER_LEN + 14) as u16,
        };
        outer[..TUNNEL_VNET_HDR_LEN].copy_from_slice(&hdr.emit());
        let o = &mut outer[TUNNEL_VNET_HDR_LEN..];
        o[0..6].copy_from_slice(&flow.outer_dst.0);
        o[6..12].copy_from_slice(&flow.outer_src.0);
        o[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
        o[14..34].copy_from_slice(&ipv4_header(
            outer_ip_len,
            17,
            flow.outer_src.1,
            flow.outer_dst.1,
        ));
        o[34..36].copy_from_slice(&flow.outer_src.2.to_be_bytes());
        o[36..38].copy_from_slice(&flow.outer_dst.2.to_be_bytes());
        o[38..40].copy_from_slice(&((outer_ip_len - 20) as u16).to_be_bytes());
        // o[40..42]: outer UDP checksum 0 (no F_UDP_TUNNEL_CSUM).
        let v = flow.vni.to_be_bytes();
        o[42..50].copy_from_slice(&[VXLAN_I, 0, 0, 0, v[1], v[2], v[3], 0]);
        SuperFrame { outer, inner, flow }
    }

    /// Sets the TCP sequence number and both IPv4 identifications (the
    /// kernel, or `Tso::write`, counts them up per segment), fixing the
    /// IPv4 header checksums. The TCP checksum field needs nothing: the
    /// pseudo-header sum does not cover the sequence number.
    pub fn set_seq(&mut self, seq: u32, ip_id: u16) {
        self.inner[14 + 20 + 4..14 + 20 + 8].copy_from_slice(&seq.to_be_bytes());
        set_ip_id(&mut self.inner[14..34], ip_id);
        set_ip_id(
            &mut self.outer[TUNNEL_VNET_HDR_LEN + 14..TUNNEL_VNET_HDR_LEN + 34],
            ip_id,
        );
    }

    /// The virtio-net header overlayd would have read with the inner frame
    /// (a guest's TSO frame), for `overlay_wire::offload::Tso::new`.
    pub fn guest_hdr(&self) -> VnetHdr {
        VnetHdr {
            flags: F_NEEDS_CSUM,
            gso_type: GSO_TCPV4,
            hdr_len: INNER_HDR_LEN as u16,
            gso_size: self.flow.mss,
            csum_start: 14 + 20,
            csum_offset: 16,
        }
    }

    /// The whole frame for the underlay TAP device: tunnel header and
    /// outer headers, then the inner frame (one `writev`, no copy here).
    pub fn tunnel_iov(&self) -> [IoSlice<'_>; 2] {
        [IoSlice::new(&self.outer), IoSlice::new(&self.inner)]
    }

    /// The outer headers alone (Ethernet first), without the virtio header.
    pub fn outer_headers(&self) -> &[u8] {
        &self.outer[TUNNEL_VNET_HDR_LEN..]
    }

    /// The VXLAN header every datagram of the flow starts with.
    pub fn vxlan_header(&self) -> [u8; 8] {
        let mut h = [0u8; 8];
        h.copy_from_slice(&self.outer[TUNNEL_VNET_HDR_LEN + 42..TUNNEL_VNET_HDR_LEN + 50]);
        h
    }

    /// Sets the outer destination UDP port (for probes of other receivers).
    pub fn set_outer_dst_port(&mut self, port: u16) {
        self.outer[TUNNEL_VNET_HDR_LEN + 36..TUNNEL_VNET_HDR_LEN + 38]
            .copy_from_slice(&port.to_be_bytes());
    }

    /// Sets the outer destination MAC (for probes of other receivers).
    pub fn set_outer_dst_mac(&mut self, mac: [u8; 6]) {
        self.outer[TUNNEL_VNET_HDR_LEN..TUNNEL_VNET_HDR_LEN + 6].copy_from_slice(&mac);
    }
}

/// A 20-byte IPv4 header (DF, TTL 64, identification 0) with its checksum.
fn ipv4_header(total: usize, proto: u8, src: Ipv4Addr, dst: Ipv4Addr) -> [u8; 20] {
    let mut h = [0u8; 20];
    h[0] = 0x45;
    h[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    h[6] = 0x40;
    h[8] = 64;
    h[9] = proto;
    h[12..16].copy_from_slice(&src.octets());
    h[16..20].copy_from_slice(&dst.octets());
    let c = !fold(sum(0, &h));
    h[10..12].copy_from_slice(&c.to_ne_bytes());
    h
}

fn set_ip_id(h: &mut [u8], id: u16) {
    h[4..6].copy_from_slice(&id.to_be_bytes());
    h[10..12].fill(0);
    let c = !fold(sum(0, &h[..20]));
    h[10..12].copy_from_slice(&c.to_ne_bytes());
}

/// What a TCP segment inside a VXLAN datagram acknowledges.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ack {
    /// Source and destination TCP ports.
    pub ports: (u16, u16),
    /// The acknowledgement number.
    pub ack: u32,
    /// The window field (not yet scaled).
    pub window: u16,
    /// The TCP flags byte.
    pub flags: u8,
}

/// The TCP acknowledgement a VXLAN datagram (UDP payload) carries, if it
/// carries an IPv4 TCP segment.
pub fn vxlan_tcp_ack(d: &[u8]) -> Option<Ack> {
    let f = d.get(8..)?;
    if f.get(12..14)? != [0x08, 0x00] {
        return None;
    }
    let ip = f.get(14..)?;
    let ihl = usize::from(ip.first()? & 0x0f) * 4;
    if ip.get(9) != Some(&6) || ihl < 20 {
        return None;
    }
    let t = ip.get(ihl..ihl + 20)?;
    let u16at = |at: usize| u16::from_be_bytes([t[at], t[at + 1]]);
    Some(Ack {
        ports: (u16at(0), u16at(2)),
        ack: u32::from_be_bytes([t[8], t[9], t[10], t[11]]),
        window: u16at(14),
        flags: t[13],
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use overlay_wire::offload::{complete_checksum, ChecksumState, TcpLayout, Tso};

    fn flow() -> Flow {
        Flow {
            outer_src: ([2, 0, 0, 0, 0xaa, 1], Ipv4Addr::new(10, 77, 0, 1), 4789),
            outer_dst: ([2, 0, 0, 0, 0xbb, 2], Ipv4Addr::new(10, 77, 0, 2), 4789),
            vni: 0x123456,
            inner_src: ([2, 0, 0, 0x77, 0, 1], Ipv4Addr::new(192, 168, 77, 1), 40000),
            inner_dst: ([2, 0, 0, 0x77, 0, 2], Ipv4Addr::new(192, 168, 77, 2), 5001),
            mss: 1360,
        }
    }

    #[test]
    fn tunnel_header_layout() {
        let h = TunnelVnetHdr {
            flags: 1,
            gso_type: 0x21,
            hdr_len: 104,
            gso_size: 1360,
            csum_start: 84,
            csum_offset: 16,
            outer_th_offset: 34,
            inner_nh_offset: 64,
        };
        let b = h.emit();
        assert_eq!(b.len(), 24);
        assert_eq!(&b[..10], &[1, 0x21, 104, 0, 0x50, 0x05, 84, 0, 16, 0]);
        assert_eq!(&b[10..20], &[0; 10]);
        assert_eq!(&b[20..], &[34, 0, 64, 0]);
        assert_eq!(TunnelVnetHdr::parse(&b), h);
    }

    #[test]
    fn super_frame_is_consistent_and_cuts_into_valid_segments() {
        let payload: Vec<u8> = (0..48 * 1360).map(|i| (i * 7 + 3) as u8).collect();
        let mut sf = SuperFrame::new(flow(), &payload, 1000, 0xffff);
        sf.set_seq(0x0102_0304, 77);
        // Both IPv4 header checksums hold.
        assert_eq!(fold(sum(0, &sf.outer_headers()[14..34])), 0xffff);
        assert_eq!(fold(sum(0, &sf.inner[14..34])), 0xffff);
        // The inner checksum is exactly partial, and completes to a correct one.
        let layout = TcpLayout::of(&sf.inner).unwrap();
        assert_eq!(layout.checksum_state(&sf.inner), ChecksumState::Partial);
        let mut whole = sf.inner.clone();
        complete_checksum(&mut whole, 34, 16).unwrap();
        assert!(layout.checksum_ok(&whole));
        // The tunnel header matches the layout the kernel validates.
        let h = TunnelVnetHdr::parse(sf.outer[..24].try_into().unwrap());
        assert_eq!(
            (h.outer_th_offset, h.inner_nh_offset, h.csum_start),
            (34, 64, 84)
        );
        assert_eq!(&sf.outer_headers()[42..50], &sf.vxlan_header());
        // overlayd's cut of the same frame: 48 segments, each correct.
        let tso = Tso::new(&sf.inner, &sf.guest_hdr()).unwrap();
        assert_eq!(tso.count(), 48);
        let mut out = vec![0u8; 2048];
        for i in 0..tso.count() {
            let n = tso.segment_len(&sf.inner, i);
            tso.write(&sf.inner, i, &mut out);
            let l = TcpLayout::of(&out[..n]).unwrap();
            assert!(l.checksum_ok(&out[..n]), "segment {i}");
        }
    }

    #[test]
    fn ack_is_read_from_a_vxlan_datagram() {
        let sf = SuperFrame::new(flow(), &[], 0xdead_beef, 0x1234);
        let mut d = sf.vxlan_header().to_vec();
        d.extend_from_slice(&sf.inner);
        let a = vxlan_tcp_ack(&d).unwrap();
        assert_eq!(a.ports, (40000, 5001));
        assert_eq!((a.ack, a.window, a.flags), (0xdead_beef, 0x1234, 0x10));
        assert_eq!(vxlan_tcp_ack(&d[..30]), None);
    }
}
