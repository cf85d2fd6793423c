//! VXLAN datagrams built by hand (RFC 7348), well formed or deliberately not,
//! for tests that feed overlayd's underlay socket directly.

use overlay_api::Mac;
use overlay_wire::offload::{fold, sum};
use std::net::Ipv4Addr;

/// The I flag: "the VNI is valid". Receivers must drop datagrams without it.
pub const VXLAN_FLAG_I: u8 = 0x08;

/// A VXLAN UDP payload: the 8-byte header (flags, 3 reserved bytes, the
/// 24-bit VNI, 1 reserved byte) followed by `frame`.
pub fn vxlan_datagram(flags: u8, vni: u32, frame: &[u8]) -> Vec<u8> {
    assert!(vni < 1 << 24, "VNI {vni} does not fit 24 bits");
    let v = vni.to_be_bytes();
    let mut d = vec![flags, 0, 0, 0, v[1], v[2], v[3], 0];
    d.extend_from_slice(frame);
    d
}

/// Geneve's protocol type for Ethernet payloads (Transparent Ethernet Bridging).
pub const GENEVE_PROTO_TEB: u16 = 0x6558;

/// A Geneve UDP payload (RFC 8926): version `ver`, the flags byte `flags`
/// (O = 0x80, C = 0x40), protocol type `proto`, the 24-bit VNI, then the
/// options `(class, type, data words)` (data bytes 0xa5), then `frame`.
pub fn geneve_datagram(
    ver: u8,
    flags: u8,
    proto: u16,
    vni: u32,
    options: &[(u16, u8, u8)],
    frame: &[u8],
) -> Vec<u8> {
    assert!(vni < 1 << 24, "VNI {vni} does not fit 24 bits");
    let (v, p) = (vni.to_be_bytes(), proto.to_be_bytes());
    let mut d = vec![0, flags, p[0], p[1], v[1], v[2], v[3], 0];
    for &(class, kind, words) in options {
        d.extend_from_slice(&class.to_be_bytes());
        d.extend_from_slice(&[kind, words & 0x1f]);
        d.extend(std::iter::repeat_n(0xa5, usize::from(words & 0x1f) * 4));
    }
    let words = (d.len() - 8) / 4;
    assert!(words < 64, "options do not fit a Geneve header");
    d[0] = (ver << 6) | words as u8;
    d.extend_from_slice(frame);
    d
}

/// An Ethernet frame: destination, source, EtherType, then `payload`
/// zero-padded to the 60-byte minimum (no FCS, as on a TAP device).
pub fn eth_frame(dst: Mac, src: Mac, ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(60.max(14 + payload.len()));
    f.extend_from_slice(&dst.0);
    f.extend_from_slice(&src.0);
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(payload);
    f.resize(f.len().max(60), 0);
    f
}

/// An IPv4 packet (no options, DF) carrying a TCP segment (no options,
/// ACK and PSH) from `src:sport` to `dst:dport` at sequence number `seq`,
/// with `payload`; both checksums correct.
pub fn tcp4_packet(
    src: Ipv4Addr,
    dst: Ipv4Addr,
    sport: u16,
    dport: u16,
    seq: u32,
    payload: &[u8],
) -> Vec<u8> {
    let tcp_len = 20 + payload.len();
    let total = 20 + tcp_len;
    assert!(total <= 65535, "an IPv4 packet of {total} bytes");
    let mut p = vec![0x45, 0];
    p.extend_from_slice(&(total as u16).to_be_bytes());
    p.extend_from_slice(&[0x12, 0x34, 0x40, 0, 64, 6, 0, 0]);
    p.extend_from_slice(&src.octets());
    p.extend_from_slice(&dst.octets());
    let c = !fold(sum(0, &p[..20]));
    p[10..12].copy_from_slice(&c.to_ne_bytes());
    p.extend_from_slice(&sport.to_be_bytes());
    p.extend_from_slice(&dport.to_be_bytes());
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&[0, 0, 0, 1, 0x50, 0x18, 0xff, 0xff, 0, 0, 0, 0]);
    p.extend_from_slice(payload);
    let pseudo = sum(
        sum(sum(0, &src.octets()), &dst.octets()),
        &[0, 6, (tcp_len >> 8) as u8, tcp_len as u8],
    );
    let c = !fold(sum(pseudo, &p[20..]));
    p[36..38].copy_from_slice(&c.to_ne_bytes());
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_layout() {
        let f = eth_frame(Mac::BROADCAST, Mac([2, 0, 0, 0, 0, 1]), 0x0800, &[]);
        assert_eq!(f.len(), 60);
        let d = vxlan_datagram(VXLAN_FLAG_I, 0x123456, &f);
        assert_eq!(&d[..8], &[0x08, 0, 0, 0, 0x12, 0x34, 0x56, 0]);
        assert_eq!(d.len(), 68);
        assert_eq!(&d[8..14], &[0xff; 6]);
        assert_eq!(&d[20..22], &[0x08, 0x00]);
    }
}
