//! Kernel tunnel segmentation: the headers that hand a whole UDP-tunnelled
//! TCP super-frame to an underlay TAP device (Linux 6.17+), for the kernel
//! to cut only where the outgoing device needs it.
//!
//! What goes to the TAP device is one `writev` of three pieces:
//!
//! ```text
//!  [ virtio_net_hdr_v1_hash_tunnel, 24 B ][ Eth | IPv4 | UDP ][ VXLAN/Geneve ][ inner Eth | IP | TCP | payload … ]
//!  └──────────── written here (tunnel_v4) ─────────────────┘ └ module encap ┘ └ the guest's TSO frame, untouched ┘
//! ```
//!
//! The 24-byte header ([`TunnelVnetHdr`]) is `virtio_net_hdr_v1` (12 bytes:
//! `flags`, `gso_type`, `hdr_len`, `gso_size`, `csum_start`, `csum_offset`,
//! `num_buffers`), the hash fields (8 bytes, zero) and two little-endian
//! offsets counted from the frame's first byte: the outer UDP header and
//! the inner IP header (the kernel takes outer UDP, the tunnel header and
//! the inner Ethernet header as one tunnel header). `gso_type` is the inner
//! type (`TCPV4`/`TCPV6`, with `ECN` if the frame carries CWR) ORed with
//! [`GSO_UDP_TUNNEL_IPV4`]; `NEEDS_CSUM` is required, with `csum_start` at
//! the inner TCP header and that header's checksum field holding the
//! pseudo-header sum — as the guest's kernel left it in a TSO frame read
//! from an overlay TAP device, so the inner frame is passed on as it is.
//!
//! The outer UDP checksum is left 0 (RFC 7348 and RFC 8926 allow it over
//! IPv4; kernel VXLAN sends so by default) and [`F_UDP_TUNNEL_CSUM`] is not
//! set: nobody sums the outer packet, here or in the kernel. The outer IPv4
//! header has DF, TTL 64, the given identification (the kernel counts it
//! up per segment where it cuts) and its checksum.
//!
//! Pure functions over byte slices: no I/O, no allocation, no panic.

use crate::offload::{fold, sum, Tso, F_NEEDS_CSUM, GSO_ECN, GSO_TCPV4, GSO_TCPV6};
use std::net::Ipv4Addr;

/// `sizeof(struct virtio_net_hdr_v1_hash_tunnel)`.
pub const TUNNEL_VNET_HDR_LEN: usize = 24;
/// `VIRTIO_NET_HDR_GSO_UDP_TUNNEL_IPV4`: an IPv4 UDP tunnel around the GSO type.
pub const GSO_UDP_TUNNEL_IPV4: u8 = 0x20;
/// `VIRTIO_NET_HDR_GSO_UDP_TUNNEL_IPV6`.
pub const GSO_UDP_TUNNEL_IPV6: u8 = 0x40;
/// `VIRTIO_NET_HDR_F_UDP_TUNNEL_CSUM`: the outer UDP checksum is offloaded too.
pub const F_UDP_TUNNEL_CSUM: u8 = 8;
/// Outer Ethernet, IPv4 and UDP headers.
pub const OUTER_V4_LEN: usize = 14 + 20 + 8;
/// Largest IPv4 total length.
const IP_MAX: usize = 65_535;
const TCP_CWR: u8 = 0x80;
const PROTO_UDP: u8 = 17;
const ETHERTYPE_IPV4: u16 = 0x0800;

/// `struct virtio_net_hdr_v1_hash_tunnel` (the hash fields always zero).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TunnelVnetHdr {
    /// `NEEDS_CSUM`, [`F_UDP_TUNNEL_CSUM`].
    pub flags: u8,
    /// Inner GSO type ORed with [`GSO_UDP_TUNNEL_IPV4`]/[`GSO_UDP_TUNNEL_IPV6`].
    pub gso_type: u8,
    /// All headers' length, outer and inner (a hint).
    pub hdr_len: u16,
    /// Inner payload bytes per segment.
    pub gso_size: u16,
    /// The inner transport header.
    pub csum_start: u16,
    /// The checksum field, from `csum_start`.
    pub csum_offset: u16,
    /// The outer UDP header.
    pub outer_th_offset: u16,
    /// The inner IP header.
    pub inner_nh_offset: u16,
}

impl TunnelVnetHdr {
    /// The 24 bytes, little-endian (a TAP device's byte order on a
    /// little-endian host without `TUNSETVNETBE`; the two tunnel offsets
    /// are little-endian on any host).
    pub fn emit(&self) -> [u8; TUNNEL_VNET_HDR_LEN] {
        let mut b = [0u8; TUNNEL_VNET_HDR_LEN];
        b[0] = self.flags;
        b[1] = self.gso_type;
        b[2..4].copy_from_slice(&self.hdr_len.to_le_bytes());
        b[4..6].copy_from_slice(&self.gso_size.to_le_bytes());
        b[6..8].copy_from_slice(&self.csum_start.to_le_bytes());
        b[8..10].copy_from_slice(&self.csum_offset.to_le_bytes());
        // 10..12 num_buffers, 12..20 hash_value_lo/hi, hash_report, padding.
        b[20..22].copy_from_slice(&self.outer_th_offset.to_le_bytes());
        b[22..24].copy_from_slice(&self.inner_nh_offset.to_le_bytes());
        b
    }

    /// Reads one.
    pub fn parse(b: &[u8; TUNNEL_VNET_HDR_LEN]) -> TunnelVnetHdr {
        let u = |at: usize| u16::from_le_bytes([b[at], b[at + 1]]);
        TunnelVnetHdr {
            flags: b[0],
            gso_type: b[1],
            hdr_len: u(2),
            gso_size: u(4),
            csum_start: u(6),
            csum_offset: u(8),
            outer_th_offset: u(20),
            inner_nh_offset: u(22),
        }
    }
}

/// The outer addresses of one tunnelled frame over IPv4.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OuterV4 {
    /// The next hop's MAC (the destination's, on link).
    pub dst_mac: [u8; 6],
    /// The sender's MAC.
    pub src_mac: [u8; 6],
    /// The underlay (UL3) source address: the mux's listen address.
    pub src: Ipv4Addr,
    /// The underlay destination.
    pub dst: Ipv4Addr,
    /// UDP source port (the flow's).
    pub src_port: u16,
    /// UDP destination port.
    pub dst_port: u16,
    /// IPv4 identification of the first segment.
    pub ip_id: u16,
}

/// Why a super-frame cannot be handed to the kernel whole.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TunnelError {
    /// The outer IPv4 packet would exceed 65,535 bytes.
    #[error("an outer IPv4 packet of {0} bytes exceeds 65535")]
    TooLong(usize),
    /// The inner frame is not untagged Ethernet + IP + TCP (a VLAN tag or
    /// IPv6 extension headers, which the kernel's tunnel parsing is not
    /// relied on for).
    #[error("the inner frame is not untagged Ethernet/IP/TCP without extension headers")]
    Layout,
    /// The output buffer is shorter than the headers.
    #[error("{need} bytes of headers do not fit a {have}-byte buffer")]
    Short {
        /// Bytes needed.
        need: usize,
        /// Bytes given.
        have: usize,
    },
}

/// Writes the 24-byte tunnel virtio-net header and the outer Ethernet,
/// IPv4 and UDP headers into `out` (at least
/// `TUNNEL_VNET_HDR_LEN + OUTER_V4_LEN` bytes), for a tunnel header of
/// `encap_len` bytes (written by the caller right after them) around the
/// TCP super-frame `inner` described by `tso`. Returns the bytes written.
pub fn tunnel_v4(
    outer: &OuterV4,
    encap_len: usize,
    inner: &[u8],
    tso: &Tso,
    out: &mut [u8],
) -> Result<usize, TunnelError> {
    let need = TUNNEL_VNET_HDR_LEN + OUTER_V4_LEN;
    let have = out.len();
    let out = out
        .get_mut(..need)
        .ok_or(TunnelError::Short { need, have })?;
    let l = tso.layout();
    if l.l3 != 14 || l.has_extensions() || l.routed {
        return Err(TunnelError::Layout);
    }
    let udp_len = 8 + encap_len + inner.len();
    let ip_len = 20 + udp_len;
    if ip_len > IP_MAX {
        return Err(TunnelError::TooLong(ip_len));
    }
    let (hdr, o) = out.split_at_mut(TUNNEL_VNET_HDR_LEN);
    // Offsets from the outer Ethernet header's first byte.
    let inner_at = OUTER_V4_LEN + encap_len;
    let ecn = if inner.get(l.l4 + 13).is_some_and(|f| f & TCP_CWR != 0) {
        GSO_ECN
    } else {
        0
    };
    let inner_type = if l.v6 { GSO_TCPV6 } else { GSO_TCPV4 };
    let off = |x: usize| u16::try_from(x).map_err(|_| TunnelError::TooLong(x));
    let v = TunnelVnetHdr {
        flags: F_NEEDS_CSUM,
        gso_type: inner_type | ecn | GSO_UDP_TUNNEL_IPV4,
        hdr_len: off(inner_at + l.payload)?,
        gso_size: off(tso.mss())?,
        csum_start: off(inner_at + l.l4)?,
        csum_offset: 16,
        outer_th_offset: 14 + 20,
        inner_nh_offset: off(inner_at + l.l3)?,
    };
    hdr.copy_from_slice(&v.emit());
    o[0..6].copy_from_slice(&outer.dst_mac);
    o[6..12].copy_from_slice(&outer.src_mac);
    o[12..14].copy_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
    let ip = &mut o[14..34];
    ip.fill(0);
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&(ip_len as u16).to_be_bytes());
    ip[4..6].copy_from_slice(&outer.ip_id.to_be_bytes());
    ip[6] = 0x40; // DF
    ip[8] = 64;
    ip[9] = PROTO_UDP;
    ip[12..16].copy_from_slice(&outer.src.octets());
    ip[16..20].copy_from_slice(&outer.dst.octets());
    let c = !fold(sum(0, ip));
    ip[10..12].copy_from_slice(&c.to_ne_bytes());
    let udp = &mut o[34..42];
    udp[0..2].copy_from_slice(&outer.src_port.to_be_bytes());
    udp[2..4].copy_from_slice(&outer.dst_port.to_be_bytes());
    udp[4..6].copy_from_slice(&(udp_len as u16).to_be_bytes());
    udp[6..8].fill(0);
    Ok(need)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::offload::VnetHdr;

    /// An untagged Ethernet/IPv4/TCP super-frame of `payload` bytes whose
    /// TCP checksum field holds the pseudo-header sum (as a guest's TSO
    /// frame does), with `flags` in the TCP header.
    fn guest_frame(payload: usize, flags: u8) -> Vec<u8> {
        let mut f = vec![0u8; 14 + 20 + 20 + payload];
        f[12..14].copy_from_slice(&[0x08, 0x00]);
        let ip_len = (20 + 20 + payload) as u16;
        f[14] = 0x45;
        f[16..18].copy_from_slice(&ip_len.to_be_bytes());
        f[22] = 64;
        f[23] = 6;
        f[26..30].copy_from_slice(&[192, 168, 1, 1]);
        f[30..34].copy_from_slice(&[192, 168, 1, 2]);
        f[46] = 0x50;
        f[47] = flags;
        f
    }

    #[test]
    fn headers_are_laid_out_field_by_field() {
        let inner = guest_frame(48 * 1360, 0x10);
        let hint = VnetHdr {
            gso_type: GSO_TCPV4,
            gso_size: 1360,
            ..VnetHdr::default()
        };
        let tso = Tso::new(&inner, &hint).unwrap();
        let outer = OuterV4 {
            dst_mac: [2, 0, 0, 0, 0xbb, 2],
            src_mac: [2, 0, 0, 0, 0xaa, 1],
            src: Ipv4Addr::new(10, 77, 0, 1),
            dst: Ipv4Addr::new(10, 77, 0, 2),
            src_port: 54321,
            dst_port: 4789,
            ip_id: 0x1234,
        };
        let mut out = [0xeeu8; 80];
        let n = tunnel_v4(&outer, 8, &inner, &tso, &mut out).unwrap();
        assert_eq!(n, 24 + 42);
        assert_eq!(out[n], 0xee, "nothing written past the headers");

        // The virtio header: every byte.
        let h = TunnelVnetHdr::parse(out[..24].try_into().unwrap());
        assert_eq!(
            h,
            TunnelVnetHdr {
                flags: F_NEEDS_CSUM,
                gso_type: GSO_TCPV4 | GSO_UDP_TUNNEL_IPV4,
                hdr_len: 42 + 8 + 54,
                gso_size: 1360,
                csum_start: 42 + 8 + 34,
                csum_offset: 16,
                outer_th_offset: 34,
                inner_nh_offset: 42 + 8 + 14,
            }
        );
        assert_eq!(&out[..2], &[1, 0x21]);
        assert_eq!(&out[2..10], &[104, 0, 0x50, 0x05, 84, 0, 16, 0]);
        assert_eq!(&out[10..20], &[0; 10], "num_buffers and hash fields");
        assert_eq!(&out[20..24], &[34, 0, 64, 0]);

        // Ethernet.
        let o = &out[24..n];
        assert_eq!(&o[0..6], &outer.dst_mac);
        assert_eq!(&o[6..12], &outer.src_mac);
        assert_eq!(&o[12..14], &[0x08, 0x00]);
        // IPv4: version/IHL, length, id, DF, TTL, protocol, addresses, checksum.
        let ip = &o[14..34];
        let total = 20 + 8 + 8 + inner.len();
        assert_eq!(ip[0], 0x45);
        assert_eq!(u16::from_be_bytes([ip[2], ip[3]]) as usize, total);
        assert_eq!(&ip[4..6], &[0x12, 0x34]);
        assert_eq!(&ip[6..8], &[0x40, 0], "DF, no fragment offset");
        assert_eq!((ip[8], ip[9]), (64, 17));
        assert_eq!(&ip[12..16], &[10, 77, 0, 1]);
        assert_eq!(&ip[16..20], &[10, 77, 0, 2]);
        assert_eq!(fold(sum(0, ip)), 0xffff, "the IPv4 checksum verifies");
        // UDP: ports, length, checksum 0.
        let udp = &o[34..42];
        assert_eq!(u16::from_be_bytes([udp[0], udp[1]]), 54321);
        assert_eq!(u16::from_be_bytes([udp[2], udp[3]]), 4789);
        assert_eq!(u16::from_be_bytes([udp[4], udp[5]]) as usize, total - 20);
        assert_eq!(&udp[6..8], &[0, 0]);
    }

    #[test]
    fn cwr_and_ipv6_inner_frames_and_limits() {
        let hint = |t| VnetHdr {
            gso_type: t,
            gso_size: 1000,
            ..VnetHdr::default()
        };
        let outer = OuterV4 {
            dst_mac: [2; 6],
            src_mac: [4; 6],
            src: Ipv4Addr::new(10, 0, 0, 1),
            dst: Ipv4Addr::new(10, 0, 0, 2),
            src_port: 1,
            dst_port: 6081,
            ip_id: 0,
        };
        let mut out = [0u8; 66];
        // CWR: GSO_ECN, so the kernel keeps it on the first segment only.
        let f = guest_frame(5000, 0x90);
        let tso = Tso::new(&f, &hint(GSO_TCPV4)).unwrap();
        tunnel_v4(&outer, 8, &f, &tso, &mut out).unwrap();
        assert_eq!(out[1], GSO_TCPV4 | GSO_ECN | GSO_UDP_TUNNEL_IPV4);
        // An outer packet past 65,535 bytes is refused.
        let f = guest_frame(65_535 - 40, 0x10);
        let tso = Tso::new(&f, &hint(GSO_TCPV4)).unwrap();
        assert_eq!(
            tunnel_v4(&outer, 8, &f, &tso, &mut out),
            Err(TunnelError::TooLong(20 + 8 + 8 + f.len()))
        );
        // A short buffer is refused, untouched.
        let f = guest_frame(5000, 0x10);
        let tso = Tso::new(&f, &hint(GSO_TCPV4)).unwrap();
        let mut short = [7u8; 65];
        assert_eq!(
            tunnel_v4(&outer, 8, &f, &tso, &mut short),
            Err(TunnelError::Short { need: 66, have: 65 })
        );
        assert_eq!(short, [7u8; 65]);
        // IPv6 inside IPv4: TCPV6 | UDP_TUNNEL_IPV4, offsets past the
        // 40-byte IPv6 header.
        let mut f = vec![0u8; 14 + 40 + 20 + 3000];
        f[12..14].copy_from_slice(&[0x86, 0xdd]);
        f[14] = 0x60;
        f[18..20].copy_from_slice(&((20 + 3000) as u16).to_be_bytes());
        f[20] = 6;
        f[21] = 64;
        f[14 + 40 + 12] = 0x50;
        let tso = Tso::new(&f, &hint(GSO_TCPV6)).unwrap();
        tunnel_v4(&outer, 8, &f, &tso, &mut out).unwrap();
        let h = TunnelVnetHdr::parse(out[..24].try_into().unwrap());
        assert_eq!(h.gso_type, GSO_TCPV6 | GSO_UDP_TUNNEL_IPV4);
        assert_eq!((h.inner_nh_offset, h.csum_start), (64, 64 + 40));
    }
}
