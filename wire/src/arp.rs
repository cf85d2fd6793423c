//! Proxy ARP: reading an ARP packet out of a guest's Ethernet frame, and
//! building the reply varpd injects on behalf of the VL2 MAC that owns the
//! asked-for VL3 address.
//!
//! The reply mirrors illumos `libvarpd_proxy_arp_fini`: it goes to the
//! requester's Ethernet source, comes from the answering MAC, keeps the
//! request's 802.1Q tag, and swaps sender and target: the answer's hardware
//! address becomes the sender, the requester becomes the target.
//!
//! Only Ethernet/IPv4 ARP (hardware type 1, protocol 0x0800, lengths 6 and 4)
//! is understood; everything else is an [`ArpError`]. Nothing here panics,
//! whatever the bytes.

use crate::eth::{self, ETHERTYPE_ARP, ETHERTYPE_VLAN};
use overlay_api::Mac;
use smoltcp::wire::{ArpOperation, ArpPacket, ArpRepr, EthernetAddress};
use std::net::Ipv4Addr;

/// Why a frame is not an ARP packet varpd can work with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ArpError {
    /// Shorter than an Ethernet header.
    #[error("runt frame: shorter than an Ethernet header")]
    Runt,
    /// The EtherType (after at most one VLAN tag) is not ARP.
    #[error("not an ARP frame (EtherType {0:#06x})")]
    NotArp(u16),
    /// The ARP packet is cut short or is not Ethernet/IPv4.
    #[error("malformed ARP packet: truncated, or not Ethernet/IPv4")]
    Malformed,
    /// Asked to answer something that is not a request.
    #[error("ARP operation {0} is not a request")]
    NotRequest(u16),
}

/// The ARP operation of a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation {
    /// Who has `target_ip`? (1)
    Request,
    /// `sender_ip` is at `sender_mac`. (2)
    Reply,
    /// Any other operation code (RARP and friends).
    Other(u16),
}

impl Operation {
    fn code(self) -> u16 {
        match self {
            Operation::Request => 1,
            Operation::Reply => 2,
            Operation::Other(c) => c,
        }
    }
}

/// An Ethernet/IPv4 ARP packet and the Ethernet header it came in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ArpMessage {
    /// Ethernet destination of the frame.
    pub eth_dst: Mac,
    /// Ethernet source of the frame (who a reply goes to).
    pub eth_src: Mac,
    /// The 802.1Q tag control information, if the frame was tagged.
    pub vlan_tci: Option<u16>,
    /// Request, reply or other.
    pub operation: Operation,
    /// Sender hardware address.
    pub sender_mac: Mac,
    /// Sender protocol address.
    pub sender_ip: Ipv4Addr,
    /// Target hardware address (ignored in requests).
    pub target_mac: Mac,
    /// Target protocol address: the address asked for.
    pub target_ip: Ipv4Addr,
}

/// Reads an ARP packet out of an Ethernet frame (untagged or with one
/// 802.1Q tag). Trailing bytes (Ethernet padding) are ignored.
pub fn parse(frame: &[u8]) -> Result<ArpMessage, ArpError> {
    let info = eth::classify(frame).ok_or(ArpError::Runt)?;
    if info.ethertype != ETHERTYPE_ARP {
        return Err(ArpError::NotArp(info.ethertype));
    }
    let vlan_tci = (info.l3 > eth::HEADER_LEN).then(|| u16::from_be_bytes([frame[14], frame[15]]));
    let body = frame.get(info.l3..).ok_or(ArpError::Malformed)?;
    let packet = ArpPacket::new_checked(body).map_err(|_| ArpError::Malformed)?;
    let ArpRepr::EthernetIpv4 {
        operation,
        source_hardware_addr,
        source_protocol_addr,
        target_hardware_addr,
        target_protocol_addr,
    } = ArpRepr::parse(&packet).map_err(|_| ArpError::Malformed)?
    else {
        return Err(ArpError::Malformed);
    };
    let operation = match operation {
        ArpOperation::Request => Operation::Request,
        ArpOperation::Reply => Operation::Reply,
        ArpOperation::Unknown(c) => Operation::Other(c),
    };
    Ok(ArpMessage {
        eth_dst: info.dst,
        eth_src: info.src,
        vlan_tci,
        operation,
        sender_mac: Mac(source_hardware_addr.0),
        sender_ip: source_protocol_addr,
        target_mac: Mac(target_hardware_addr.0),
        target_ip: target_protocol_addr,
    })
}

impl ArpMessage {
    /// A gratuitous ARP announces the sender's own address (sender IP ==
    /// target IP). Answering one would make the guest believe its address is
    /// taken (duplicate address detection), so varpd never does.
    pub fn is_gratuitous(&self) -> bool {
        self.sender_ip == self.target_ip
    }

    /// An ARP probe (RFC 5227) asks with sender IP 0.0.0.0 whether anyone
    /// holds the address the guest is about to take: ARP's duplicate address
    /// detection. A proxy answer could only report a conflict.
    pub fn is_probe(&self) -> bool {
        self.sender_ip.is_unspecified()
    }

    /// Builds the reply to this request: `target_ip` is at `answer`.
    /// Refuses anything that is not a request; gratuitous requests are the
    /// caller's policy, see [`ArpMessage::is_gratuitous`].
    pub fn reply(&self, answer: Mac) -> Result<Vec<u8>, ArpError> {
        if self.operation != Operation::Request {
            return Err(ArpError::NotRequest(self.operation.code()));
        }
        let repr = ArpRepr::EthernetIpv4 {
            operation: ArpOperation::Reply,
            source_hardware_addr: EthernetAddress(answer.0),
            source_protocol_addr: self.target_ip,
            target_hardware_addr: EthernetAddress(self.sender_mac.0),
            target_protocol_addr: self.sender_ip,
        };
        let mut out = Vec::with_capacity(eth::HEADER_LEN + 4 + repr.buffer_len());
        out.extend_from_slice(&self.eth_src.0);
        out.extend_from_slice(&answer.0);
        if let Some(tci) = self.vlan_tci {
            out.extend_from_slice(&ETHERTYPE_VLAN.to_be_bytes());
            out.extend_from_slice(&tci.to_be_bytes());
        }
        out.extend_from_slice(&ETHERTYPE_ARP.to_be_bytes());
        let at = out.len();
        out.resize(at + repr.buffer_len(), 0);
        repr.emit(&mut ArpPacket::new_unchecked(&mut out[at..]));
        Ok(out)
    }
}

/// Parses `frame` and builds the reply saying its target address is at
/// `answer`: [`parse`] then [`ArpMessage::reply`].
pub fn proxy_reply(frame: &[u8], answer: Mac) -> Result<Vec<u8>, ArpError> {
    parse(frame)?.reply(answer)
}

/// A gratuitous ARP request announcing that `ip` is at `mac`, broadcast
/// (sender and target address both `ip`, RFC 5227 §3 "ARP Announcement"):
/// what varpd injects when the owner of a VL3 address changes, so that
/// guests update their neighbour caches at once.
pub fn gratuitous(mac: Mac, ip: Ipv4Addr) -> Vec<u8> {
    let repr = ArpRepr::EthernetIpv4 {
        operation: ArpOperation::Request,
        source_hardware_addr: EthernetAddress(mac.0),
        source_protocol_addr: ip,
        target_hardware_addr: EthernetAddress([0; 6]),
        target_protocol_addr: ip,
    };
    let mut out = Vec::with_capacity(eth::HEADER_LEN + repr.buffer_len());
    out.extend_from_slice(&Mac::BROADCAST.0);
    out.extend_from_slice(&mac.0);
    out.extend_from_slice(&ETHERTYPE_ARP.to_be_bytes());
    let at = out.len();
    out.resize(at + repr.buffer_len(), 0);
    repr.emit(&mut ArpPacket::new_unchecked(&mut out[at..]));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use smoltcp::wire::{EthernetFrame, EthernetProtocol};

    const GUEST: Mac = Mac([0x02, 0x31, 0, 0, 0, 0x02]);
    const OWNER: Mac = Mac([0x02, 0x31, 0, 0, 0, 0x04]);

    /// An ARP request as a Linux guest sends it, built by hand (not with the
    /// code under test), padded to the Ethernet minimum.
    fn request(sender_ip: [u8; 4], target_ip: [u8; 4], vlan: Option<u16>) -> Vec<u8> {
        let mut f = vec![0xff; 6];
        f.extend_from_slice(&GUEST.0);
        if let Some(tci) = vlan {
            f.extend_from_slice(&[0x81, 0x00]);
            f.extend_from_slice(&tci.to_be_bytes());
        }
        f.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 1]);
        f.extend_from_slice(&GUEST.0);
        f.extend_from_slice(&sender_ip);
        f.extend_from_slice(&[0; 6]);
        f.extend_from_slice(&target_ip);
        f.resize(f.len().max(60), 0);
        f
    }

    #[test]
    fn gratuitous_announces_the_address() {
        let f = gratuitous(OWNER, Ipv4Addr::new(10, 0, 0, 9));
        let m = parse(&f).unwrap();
        assert!(m.is_gratuitous() && !m.is_probe());
        assert_eq!(m.operation, Operation::Request);
        assert_eq!(
            (m.eth_dst, m.eth_src, m.sender_mac),
            (Mac::BROADCAST, OWNER, OWNER)
        );
        assert_eq!(m.sender_ip, Ipv4Addr::new(10, 0, 0, 9));
    }

    #[test]
    fn parses_a_request() {
        let m = parse(&request([10, 31, 0, 2], [10, 31, 0, 4], None)).unwrap();
        assert_eq!(m.operation, Operation::Request);
        assert_eq!(
            (m.eth_dst, m.eth_src, m.vlan_tci),
            (Mac::BROADCAST, GUEST, None)
        );
        assert_eq!(
            (m.sender_mac, m.sender_ip),
            (GUEST, Ipv4Addr::new(10, 31, 0, 2))
        );
        assert_eq!(m.target_ip, Ipv4Addr::new(10, 31, 0, 4));
        assert!(!m.is_gratuitous() && !m.is_probe());
        assert!(parse(&request([10, 31, 0, 2], [10, 31, 0, 2], None))
            .unwrap()
            .is_gratuitous());
        assert!(parse(&request([0, 0, 0, 0], [10, 31, 0, 2], None))
            .unwrap()
            .is_probe());
    }

    #[test]
    fn reply_fields_all_check_out() {
        let out = proxy_reply(&request([10, 31, 0, 2], [10, 31, 0, 4], None), OWNER).unwrap();
        assert_eq!(out.len(), 14 + 28);
        let eth = EthernetFrame::new_checked(&out[..]).unwrap();
        assert_eq!(eth.dst_addr(), EthernetAddress(GUEST.0));
        assert_eq!(eth.src_addr(), EthernetAddress(OWNER.0));
        assert_eq!(eth.ethertype(), EthernetProtocol::Arp);
        let pkt = ArpPacket::new_checked(eth.payload()).unwrap();
        assert_eq!(
            ArpRepr::parse(&pkt).unwrap(),
            ArpRepr::EthernetIpv4 {
                operation: ArpOperation::Reply,
                source_hardware_addr: EthernetAddress(OWNER.0),
                source_protocol_addr: Ipv4Addr::new(10, 31, 0, 4),
                target_hardware_addr: EthernetAddress(GUEST.0),
                target_protocol_addr: Ipv4Addr::new(10, 31, 0, 2),
            }
        );
        // The raw header bytes too: hardware type, protocol, lengths, op.
        assert_eq!(&out[14..22], &[0, 1, 0x08, 0, 6, 4, 0, 2]);
    }

    #[test]
    fn reply_keeps_the_vlan_tag() {
        let out = proxy_reply(
            &request([10, 31, 0, 2], [10, 31, 0, 4], Some(0x2007)),
            OWNER,
        )
        .unwrap();
        assert_eq!(&out[12..18], &[0x81, 0x00, 0x20, 0x07, 0x08, 0x06]);
        let back = parse(&out).unwrap();
        assert_eq!(back.vlan_tci, Some(0x2007));
        assert_eq!(back.operation, Operation::Reply);
        assert_eq!(
            (back.sender_mac, back.sender_ip),
            (OWNER, Ipv4Addr::new(10, 31, 0, 4))
        );
        assert_eq!(
            (back.target_mac, back.target_ip),
            (GUEST, Ipv4Addr::new(10, 31, 0, 2))
        );
        assert_eq!((back.eth_dst, back.eth_src), (GUEST, OWNER));
    }

    #[test]
    fn refuses_what_is_not_a_request() {
        let mut f = request([10, 31, 0, 2], [10, 31, 0, 4], None);
        f[21] = 2; // a reply
        assert_eq!(proxy_reply(&f, OWNER), Err(ArpError::NotRequest(2)));
        let mut f = request([10, 31, 0, 2], [10, 31, 0, 4], None);
        f[18] = 8; // hardware length 8
        assert_eq!(parse(&f), Err(ArpError::Malformed));
        assert_eq!(parse(&f[..30]), Err(ArpError::Malformed));
        let mut f = request([10, 31, 0, 2], [10, 31, 0, 4], None);
        f[12..14].copy_from_slice(&[0x86, 0xdd]);
        assert_eq!(parse(&f), Err(ArpError::NotArp(0x86dd)));
        assert_eq!(parse(&f[..10]), Err(ArpError::Runt));
    }

    proptest! {
        #[test]
        fn never_panics(b in proptest::collection::vec(any::<u8>(), 0..80), m in any::<[u8; 6]>()) {
            let _ = proxy_reply(&b, Mac(m));
        }

        #[test]
        fn never_panics_on_arp_shaped_bytes(mut b in proptest::collection::vec(any::<u8>(), 14..80), tag in any::<bool>()) {
            // Steer the random bytes into the ARP parser more often.
            if tag && b.len() >= 18 {
                b[12..14].copy_from_slice(&[0x81, 0]);
                b[16..18].copy_from_slice(&[0x08, 0x06]);
            } else {
                b[12..14].copy_from_slice(&[0x08, 0x06]);
            }
            if let Ok(m) = parse(&b) {
                if let Ok(r) = m.reply(OWNER) {
                    prop_assert_eq!(parse(&r).unwrap().operation, Operation::Reply);
                }
            }
        }
    }
}
