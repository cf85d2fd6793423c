//! Proxy NDP: reading an ICMPv6 neighbour solicitation (RFC 4861 §4.3) out
//! of a guest's Ethernet frame, and building the solicited neighbour
//! advertisement varpd injects on behalf of the VL2 MAC that owns the target.
//!
//! A solicitation is accepted when it passes the receiver checks of RFC 4861
//! §7.1.1 that matter here: IPv6 with ICMPv6 as the next header (NS never
//! carries extension headers), hop limit 255, a valid ICMPv6 checksum, code 0,
//! a target that is not multicast, and a multicast IPv6 destination (it came
//! in a group-addressed frame). A solicitation from the unspecified address
//! is duplicate address detection ([`NeighborSolicit::is_dad`]): answering it
//! would tell the guest its tentative address is taken, so no advertisement
//! is built for it.
//!
//! The advertisement follows illumos `libvarpd_proxy_ndp_fini`: Ethernet to
//! the requester's source MAC from the answering MAC (802.1Q tag kept), IPv6
//! from the target address to the solicitation's source, hop limit 255,
//! flags Solicited and Override, a target link-layer address option carrying
//! the answering MAC, and the ICMPv6 checksum over the pseudo-header.

use crate::eth::{self, ETHERTYPE_IPV6, ETHERTYPE_VLAN};
use overlay_api::Mac;
use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{
    EthernetAddress, Icmpv6Packet, Icmpv6Repr, IpProtocol, Ipv6Packet, Ipv6Repr,
    NdiscNeighborFlags, NdiscRepr, RawHardwareAddress,
};
use std::net::Ipv6Addr;

/// The only hop limit a neighbour discovery message may carry (RFC 4861):
/// proof that it was not forwarded by a router.
pub const ND_HOP_LIMIT: u8 = 255;

/// Why a frame is not a neighbour solicitation varpd can answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NdpError {
    /// Shorter than an Ethernet header.
    #[error("runt frame: shorter than an Ethernet header")]
    Runt,
    /// The EtherType (after at most one VLAN tag) is not IPv6.
    #[error("not an IPv6 frame (EtherType {0:#06x})")]
    NotIpv6(u16),
    /// The IPv6 header is cut short, or its payload length overruns the frame.
    #[error("malformed IPv6 packet: truncated or wrong version")]
    MalformedIpv6,
    /// The next header is not ICMPv6.
    #[error("IPv6 next header {0} is not ICMPv6")]
    NotIcmpv6(u8),
    /// The hop limit is not 255: the packet was routed, or forged.
    #[error("hop limit {0} is not 255")]
    HopLimit(u8),
    /// The ICMPv6 message is truncated, has a bad checksum or a bad option.
    #[error("malformed ICMPv6 message or bad checksum")]
    MalformedIcmpv6,
    /// A valid ICMPv6 message, but not a neighbour solicitation.
    #[error("ICMPv6 message is not a neighbour solicitation")]
    NotSolicitation,
    /// The target of the solicitation is a multicast address.
    #[error("solicitation target {0} is multicast")]
    MulticastTarget(Ipv6Addr),
    /// The IPv6 destination is not multicast.
    #[error("solicitation sent to unicast {0} in a group-addressed frame")]
    UnicastDestination(Ipv6Addr),
    /// Duplicate address detection (unspecified source): never answered.
    #[error("duplicate address detection (unspecified source) is not answered")]
    Dad,
}

/// A neighbour solicitation and the Ethernet header it came in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NeighborSolicit {
    /// Ethernet destination (a 33:33:xx multicast address, normally).
    pub eth_dst: Mac,
    /// Ethernet source: who the advertisement goes to.
    pub eth_src: Mac,
    /// The 802.1Q tag control information, if the frame was tagged.
    pub vlan_tci: Option<u16>,
    /// IPv6 source; unspecified (`::`) for duplicate address detection.
    pub ip_src: Ipv6Addr,
    /// IPv6 destination (the target's solicited-node group, normally).
    pub ip_dst: Ipv6Addr,
    /// The address whose link-layer address is asked for.
    pub target: Ipv6Addr,
    /// The source link-layer address option, if present and Ethernet-sized.
    pub source_lladdr: Option<Mac>,
}

/// Reads a neighbour solicitation out of an Ethernet frame.
pub fn parse_solicit(frame: &[u8]) -> Result<NeighborSolicit, NdpError> {
    let info = eth::classify(frame).ok_or(NdpError::Runt)?;
    if info.ethertype != ETHERTYPE_IPV6 {
        return Err(NdpError::NotIpv6(info.ethertype));
    }
    let vlan_tci = (info.l3 > eth::HEADER_LEN).then(|| u16::from_be_bytes([frame[14], frame[15]]));
    let body = frame.get(info.l3..).ok_or(NdpError::MalformedIpv6)?;
    let ip = Ipv6Packet::new_checked(body).map_err(|_| NdpError::MalformedIpv6)?;
    let ip_repr = Ipv6Repr::parse(&ip).map_err(|_| NdpError::MalformedIpv6)?;
    if ip_repr.next_header != IpProtocol::Icmpv6 {
        return Err(NdpError::NotIcmpv6(ip_repr.next_header.into()));
    }
    if ip_repr.hop_limit != ND_HOP_LIMIT {
        return Err(NdpError::HopLimit(ip_repr.hop_limit));
    }
    // new_checked guaranteed the payload length fits; Ethernet padding after
    // it is not part of the message (nor of its checksum).
    let icmp_bytes = ip
        .payload()
        .get(..ip_repr.payload_len)
        .ok_or(NdpError::MalformedIpv6)?;
    let icmp = Icmpv6Packet::new_checked(icmp_bytes).map_err(|_| NdpError::MalformedIcmpv6)?;
    let repr = Icmpv6Repr::parse(
        &ip_repr.src_addr,
        &ip_repr.dst_addr,
        &icmp,
        &ChecksumCapabilities::default(),
    )
    .map_err(|_| NdpError::MalformedIcmpv6)?;
    let Icmpv6Repr::Ndisc(NdiscRepr::NeighborSolicit {
        target_addr,
        lladdr,
    }) = repr
    else {
        return Err(NdpError::NotSolicitation);
    };
    if icmp.msg_code() != 0 {
        return Err(NdpError::MalformedIcmpv6);
    }
    if target_addr.is_multicast() {
        return Err(NdpError::MulticastTarget(target_addr));
    }
    if !ip_repr.dst_addr.is_multicast() {
        return Err(NdpError::UnicastDestination(ip_repr.dst_addr));
    }
    let source_lladdr = lladdr.and_then(|a: RawHardwareAddress| {
        let b = a.as_bytes().get(..6)?;
        let mut m = [0u8; 6];
        m.copy_from_slice(b);
        Some(Mac(m))
    });
    Ok(NeighborSolicit {
        eth_dst: info.dst,
        eth_src: info.src,
        vlan_tci,
        ip_src: ip_repr.src_addr,
        ip_dst: ip_repr.dst_addr,
        target: target_addr,
        source_lladdr,
    })
}

impl NeighborSolicit {
    /// True for duplicate address detection: the source is unspecified.
    pub fn is_dad(&self) -> bool {
        self.ip_src.is_unspecified()
    }

    /// Builds the solicited advertisement saying `target` is at `answer`.
    /// A DAD solicitation has no one to answer to and gets [`NdpError::Dad`].
    pub fn advertisement(&self, answer: Mac) -> Result<Vec<u8>, NdpError> {
        if self.is_dad() {
            return Err(NdpError::Dad);
        }
        let icmp = Icmpv6Repr::Ndisc(NdiscRepr::NeighborAdvert {
            flags: NdiscNeighborFlags::SOLICITED | NdiscNeighborFlags::OVERRIDE,
            target_addr: self.target,
            lladdr: Some(RawHardwareAddress::from(EthernetAddress(answer.0))),
        });
        let ip = Ipv6Repr {
            src_addr: self.target,
            dst_addr: self.ip_src,
            next_header: IpProtocol::Icmpv6,
            payload_len: icmp.buffer_len(),
            hop_limit: ND_HOP_LIMIT,
        };
        let mut out = Vec::with_capacity(eth::HEADER_LEN + 4 + ip.buffer_len() + ip.payload_len);
        out.extend_from_slice(&self.eth_src.0);
        out.extend_from_slice(&answer.0);
        if let Some(tci) = self.vlan_tci {
            out.extend_from_slice(&ETHERTYPE_VLAN.to_be_bytes());
            out.extend_from_slice(&tci.to_be_bytes());
        }
        out.extend_from_slice(&ETHERTYPE_IPV6.to_be_bytes());
        let at = out.len();
        out.resize(at + ip.buffer_len() + ip.payload_len, 0);
        let mut packet = Ipv6Packet::new_unchecked(&mut out[at..]);
        ip.emit(&mut packet);
        icmp.emit(
            &ip.src_addr,
            &ip.dst_addr,
            &mut Icmpv6Packet::new_unchecked(packet.payload_mut()),
            &ChecksumCapabilities::default(),
        );
        Ok(out)
    }
}

/// Parses `frame` and builds the advertisement saying its target is at
/// `answer`: [`parse_solicit`] then [`NeighborSolicit::advertisement`].
pub fn proxy_advertisement(frame: &[u8], answer: Mac) -> Result<Vec<u8>, NdpError> {
    parse_solicit(frame)?.advertisement(answer)
}

/// An unsolicited neighbour advertisement (RFC 4861 §7.2.6) saying that
/// `target` is at `mac`, to all nodes (`ff02::1`), flag Override, with the
/// target link-layer address option: what varpd injects when the owner of
/// a VL3 address changes.
pub fn unsolicited_advertisement(mac: Mac, target: Ipv6Addr) -> Vec<u8> {
    let icmp = Icmpv6Repr::Ndisc(NdiscRepr::NeighborAdvert {
        flags: NdiscNeighborFlags::OVERRIDE,
        target_addr: target,
        lladdr: Some(RawHardwareAddress::from(EthernetAddress(mac.0))),
    });
    let ip = Ipv6Repr {
        src_addr: target,
        dst_addr: Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1),
        next_header: IpProtocol::Icmpv6,
        payload_len: icmp.buffer_len(),
        hop_limit: ND_HOP_LIMIT,
    };
    let mut out = Vec::with_capacity(eth::HEADER_LEN + ip.buffer_len() + ip.payload_len);
    out.extend_from_slice(&[0x33, 0x33, 0, 0, 0, 1]);
    out.extend_from_slice(&mac.0);
    out.extend_from_slice(&ETHERTYPE_IPV6.to_be_bytes());
    let at = out.len();
    out.resize(at + ip.buffer_len() + ip.payload_len, 0);
    let mut packet = Ipv6Packet::new_unchecked(&mut out[at..]);
    ip.emit(&mut packet);
    icmp.emit(
        &ip.src_addr,
        &ip.dst_addr,
        &mut Icmpv6Packet::new_unchecked(packet.payload_mut()),
        &ChecksumCapabilities::default(),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use smoltcp::wire::{EthernetFrame, EthernetProtocol, Icmpv6Message};

    const GUEST: Mac = Mac([0x02, 0x32, 0, 0, 0, 0x02]);
    const OWNER: Mac = Mac([0x02, 0x32, 0, 0, 0, 0x04]);

    fn addr(s: &str) -> Ipv6Addr {
        s.parse().unwrap()
    }

    /// RFC 1071 one's complement sum, written independently of smoltcp.
    fn csum(chunks: &[&[u8]]) -> u16 {
        let mut sum = 0u32;
        for c in chunks {
            for pair in c.chunks(2) {
                let hi = pair[0] as u32;
                let lo = *pair.get(1).unwrap_or(&0) as u32;
                sum += (hi << 8) | lo;
            }
        }
        while sum >> 16 != 0 {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        !(sum as u16)
    }

    /// A neighbour solicitation built by hand, as Linux sends one, with a
    /// source link-layer address option unless `src` is unspecified.
    fn solicit(src: Ipv6Addr, target: Ipv6Addr, hop: u8, vlan: Option<u16>) -> Vec<u8> {
        let t = target.octets();
        let dst = Ipv6Addr::new(
            0xff02,
            0,
            0,
            0,
            0,
            1,
            0xff00 | t[13] as u16,
            (t[14] as u16) << 8 | t[15] as u16,
        );
        let mut icmp = vec![135, 0, 0, 0, 0, 0, 0, 0];
        icmp.extend_from_slice(&t);
        if !src.is_unspecified() {
            icmp.extend_from_slice(&[1, 1]);
            icmp.extend_from_slice(&GUEST.0);
        }
        let len = (icmp.len() as u16).to_be_bytes();
        let c = csum(&[
            &src.octets(),
            &dst.octets(),
            &[0, 0],
            &len,
            &[0, 0, 0, 58],
            &icmp,
        ]);
        icmp[2..4].copy_from_slice(&c.to_be_bytes());
        let mut f = vec![0x33, 0x33, 0xff, t[13], t[14], t[15]];
        f.extend_from_slice(&GUEST.0);
        if let Some(tci) = vlan {
            f.extend_from_slice(&[0x81, 0x00]);
            f.extend_from_slice(&tci.to_be_bytes());
        }
        f.extend_from_slice(&[0x86, 0xdd, 0x60, 0, 0, 0]);
        f.extend_from_slice(&len);
        f.extend_from_slice(&[58, hop]);
        f.extend_from_slice(&src.octets());
        f.extend_from_slice(&dst.octets());
        f.extend_from_slice(&icmp);
        f
    }

    #[test]
    fn parses_a_solicitation() {
        let ns = parse_solicit(&solicit(addr("fd32::2"), addr("fd32::4"), 255, None)).unwrap();
        assert_eq!(ns.eth_src, GUEST);
        assert_eq!(ns.ip_src, addr("fd32::2"));
        assert_eq!(ns.ip_dst, addr("ff02::1:ff00:4"));
        assert_eq!(ns.target, addr("fd32::4"));
        assert_eq!(ns.source_lladdr, Some(GUEST));
        assert!(!ns.is_dad());
    }

    #[test]
    fn unsolicited_advertisement_to_all_nodes() {
        let out = unsolicited_advertisement(OWNER, addr("fd32::4"));
        let eth = EthernetFrame::new_checked(&out[..]).unwrap();
        assert_eq!(eth.dst_addr(), EthernetAddress([0x33, 0x33, 0, 0, 0, 1]));
        assert_eq!(eth.src_addr(), EthernetAddress(OWNER.0));
        let ip = Ipv6Packet::new_checked(eth.payload()).unwrap();
        assert_eq!((ip.hop_limit(), ip.src_addr()), (255, addr("fd32::4")));
        assert_eq!(ip.dst_addr(), addr("ff02::1"));
        let icmp = Icmpv6Packet::new_checked(ip.payload()).unwrap();
        assert!(icmp.verify_checksum(&ip.src_addr(), &ip.dst_addr()));
        let p = ip.payload();
        // Override only (not Solicited), then the target link-layer option.
        assert_eq!(&p[4..8], &[0x20, 0, 0, 0]);
        assert_eq!(&p[26..32], &OWNER.0);
    }

    #[test]
    fn advertisement_fields_all_check_out() {
        let out = proxy_advertisement(&solicit(addr("fd32::2"), addr("fd32::4"), 255, None), OWNER)
            .unwrap();
        let eth = EthernetFrame::new_checked(&out[..]).unwrap();
        assert_eq!(eth.dst_addr(), EthernetAddress(GUEST.0));
        assert_eq!(eth.src_addr(), EthernetAddress(OWNER.0));
        assert_eq!(eth.ethertype(), EthernetProtocol::Ipv6);
        let ip = Ipv6Packet::new_checked(eth.payload()).unwrap();
        assert_eq!(ip.version(), 6);
        assert_eq!((ip.traffic_class(), ip.flow_label()), (0, 0));
        assert_eq!(ip.next_header(), IpProtocol::Icmpv6);
        assert_eq!(ip.hop_limit(), 255);
        assert_eq!(ip.src_addr(), addr("fd32::4"));
        assert_eq!(ip.dst_addr(), addr("fd32::2"));
        // 24 bytes of NA + 8 bytes of target link-layer address option.
        assert_eq!(ip.payload_len(), 32);
        assert_eq!(ip.payload().len(), 32);
        let icmp = Icmpv6Packet::new_checked(ip.payload()).unwrap();
        assert_eq!(icmp.msg_type(), Icmpv6Message::NeighborAdvert);
        assert_eq!(icmp.msg_code(), 0);
        assert!(icmp.verify_checksum(&ip.src_addr(), &ip.dst_addr()));
        // And against an independent checksum: summing over the message with
        // its checksum in place must give zero.
        let p = ip.payload();
        let sum = csum(&[
            &ip.src_addr().octets(),
            &ip.dst_addr().octets(),
            &[0, 0, 0, 32],
            &[0, 0, 0, 58],
            p,
        ]);
        assert_eq!(sum, 0);
        let repr = Icmpv6Repr::parse(
            &ip.src_addr(),
            &ip.dst_addr(),
            &icmp,
            &ChecksumCapabilities::default(),
        )
        .unwrap();
        assert_eq!(
            repr,
            Icmpv6Repr::Ndisc(NdiscRepr::NeighborAdvert {
                flags: NdiscNeighborFlags::SOLICITED | NdiscNeighborFlags::OVERRIDE,
                target_addr: addr("fd32::4"),
                lladdr: Some(RawHardwareAddress::from_bytes(&OWNER.0)),
            })
        );
        // Raw bytes: flags (S|O, R clear), reserved zero, option type 2 len 1.
        assert_eq!(&p[4..8], &[0x60, 0, 0, 0]);
        assert_eq!(&p[24..26], &[2, 1]);
        assert_eq!(&p[26..32], &OWNER.0);
    }

    #[test]
    fn advertisement_keeps_the_vlan_tag() {
        let out = proxy_advertisement(
            &solicit(addr("fd32::2"), addr("fd32::4"), 255, Some(7)),
            OWNER,
        )
        .unwrap();
        assert_eq!(&out[12..18], &[0x81, 0x00, 0, 7, 0x86, 0xdd]);
        let ip = Ipv6Packet::new_checked(&out[18..]).unwrap();
        assert_eq!(ip.dst_addr(), addr("fd32::2"));
    }

    #[test]
    fn dad_is_recognised_and_not_answered() {
        let ns =
            parse_solicit(&solicit(Ipv6Addr::UNSPECIFIED, addr("fd32::4"), 255, None)).unwrap();
        assert!(ns.is_dad());
        assert_eq!(ns.source_lladdr, None);
        assert_eq!(ns.advertisement(OWNER), Err(NdpError::Dad));
    }

    #[test]
    fn refuses_bad_solicitations() {
        let good = solicit(addr("fd32::2"), addr("fd32::4"), 255, None);
        assert_eq!(
            parse_solicit(&solicit(addr("fd32::2"), addr("fd32::4"), 64, None)),
            Err(NdpError::HopLimit(64))
        );
        let mut bad = good.clone();
        bad[14 + 40 + 20] ^= 1; // the target, under the checksum
        assert_eq!(parse_solicit(&bad), Err(NdpError::MalformedIcmpv6));
        let mut bad = good.clone();
        bad[20] = 17; // UDP
        assert_eq!(parse_solicit(&bad), Err(NdpError::NotIcmpv6(17)));
        assert_eq!(
            parse_solicit(&good[..good.len() - 1]),
            Err(NdpError::MalformedIpv6)
        );
        let mut padded = good.clone();
        padded.extend_from_slice(&[0; 10]);
        assert!(
            parse_solicit(&padded).is_ok(),
            "Ethernet padding is not part of the message"
        );
        assert_eq!(
            parse_solicit(&solicit(addr("fd32::2"), addr("ff02::1"), 255, None)),
            Err(NdpError::MulticastTarget(addr("ff02::1")))
        );
        let mut ra = good.clone();
        ra[12..14].copy_from_slice(&[0x08, 0x00]);
        assert_eq!(parse_solicit(&ra), Err(NdpError::NotIpv6(0x0800)));
        assert_eq!(parse_solicit(&good[..5]), Err(NdpError::Runt));
    }

    proptest! {
        #[test]
        fn never_panics(b in proptest::collection::vec(any::<u8>(), 0..120), m in any::<[u8; 6]>()) {
            let _ = proxy_advertisement(&b, Mac(m));
        }

        #[test]
        fn never_panics_on_ns_shaped_bytes(
            noise in proptest::collection::vec(any::<u8>(), 0..64),
            at in 0usize..96,
            cut in 0usize..120,
        ) {
            // A valid solicitation with random bytes written over part of it
            // and a random length, so the parser gets past its first checks.
            let mut f = solicit(addr("fd32::2"), addr("fd32::4"), 255, None);
            for (i, x) in noise.iter().enumerate() {
                if let Some(b) = f.get_mut(at + i) {
                    *b = *x;
                }
            }
            f.truncate(cut.max(1));
            if let Ok(ns) = parse_solicit(&f) {
                if let Ok(r) = ns.advertisement(OWNER) {
                    prop_assert_eq!(parse_solicit(&r), Err(NdpError::NotSolicitation));
                }
            }
        }
    }
}
