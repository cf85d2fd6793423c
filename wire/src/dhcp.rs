//! Proxy DHCP: reading a guest's DHCP request (RFC 2131) out of its
//! broadcast Ethernet frame, and re-addressing it to the DHCP server's MAC.
//!
//! illumos varpd proxies DHCP by asking the search plugin which VL2 MAC is
//! the client's DHCP server and resending the client's broadcast frame with
//! that MAC as the Ethernet destination (`libvarpd_dhcp_reply`, then
//! `OVERLAY_TARG_RESEND`): the request crosses the overlay as unicast, to
//! the one host whose server answers, instead of being flooded or lost.
//! Nothing above Ethernet changes: the IPv4 destination stays the limited
//! broadcast address, which a DHCP server takes from any frame addressed to
//! its MAC.
//!
//! A request is accepted when its frame is IPv4 (after at most one 802.1Q
//! tag) with a whole header and a total length inside the frame, not a
//! fragment, UDP from port 68 to port 67 with a length inside the packet,
//! and a BOOTREQUEST over Ethernet (hardware type 1, length 6) carrying the
//! DHCP magic cookie. The client hardware address must be the frame's
//! source: a request relayed for someone else is not ours to proxy.

use crate::eth::{self, ETHERTYPE_IPV4};
use overlay_api::Mac;
use smoltcp::wire::{DhcpMessageType, DhcpPacket, IpAddress, IpProtocol, Ipv4Packet, UdpPacket};

/// The UDP port of DHCP servers.
pub const SERVER_PORT: u16 = 67;
/// The UDP port of DHCP clients.
pub const CLIENT_PORT: u16 = 68;
/// The DHCP magic cookie (RFC 2131 §3): what tells DHCP from plain BOOTP.
pub const MAGIC_COOKIE: u32 = 0x6382_5363;

/// Why a frame is not a DHCP request varpd can proxy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DhcpError {
    /// Shorter than an Ethernet header.
    #[error("runt frame: shorter than an Ethernet header")]
    Runt,
    /// The EtherType (after at most one VLAN tag) is not IPv4.
    #[error("not an IPv4 frame (EtherType {0:#06x})")]
    NotIpv4(u16),
    /// The IPv4 header is cut short, has a bad version or length, or its
    /// total length overruns the frame.
    #[error("malformed IPv4 packet: truncated, wrong version or bad length")]
    MalformedIpv4,
    /// A fragment: a DHCP request fits one datagram.
    #[error("IPv4 fragment")]
    Fragment,
    /// Not UDP.
    #[error("IPv4 protocol {0} is not UDP")]
    NotUdp(u8),
    /// The UDP header is cut short or its length overruns the packet.
    #[error("malformed UDP datagram: truncated or bad length")]
    MalformedUdp,
    /// Not from the client port to the server port.
    #[error("UDP {0} -> {1} is not DHCP client to server (68 -> 67)")]
    Ports(u16, u16),
    /// The BOOTP message is cut short.
    #[error("BOOTP message truncated")]
    MalformedBootp,
    /// A BOOTREPLY, or an unknown BOOTP operation.
    #[error("BOOTP operation {0} is not a request")]
    NotRequest(u8),
    /// Hardware type or length other than Ethernet's.
    #[error("BOOTP hardware type {0} length {1} is not Ethernet")]
    NotEthernet(u8, u8),
    /// No magic cookie: plain BOOTP, not DHCP.
    #[error("no DHCP magic cookie (plain BOOTP)")]
    NoCookie,
    /// The client hardware address is not the frame's source.
    #[error("client hardware address {chaddr} is not the frame's source {src}")]
    NotFromClient {
        /// `chaddr`.
        chaddr: Mac,
        /// Ethernet source.
        src: Mac,
    },
}

/// A DHCP request and who sent it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DhcpRequest {
    /// The client: the frame's Ethernet source and the request's `chaddr`.
    pub client: Mac,
    /// Transaction id.
    pub xid: u32,
    /// The DHCP message type (option 53), if the request carries one.
    pub message_type: Option<u8>,
}

/// Reads the DHCP request that `frame` carries; see the module docs for
/// what is checked.
pub fn parse_request(frame: &[u8]) -> Result<DhcpRequest, DhcpError> {
    let info = eth::classify(frame).ok_or(DhcpError::Runt)?;
    if info.ethertype != ETHERTYPE_IPV4 {
        return Err(DhcpError::NotIpv4(info.ethertype));
    }
    let ip = Ipv4Packet::new_checked(&frame[info.l3..]).map_err(|_| DhcpError::MalformedIpv4)?;
    if ip.version() != 4 {
        return Err(DhcpError::MalformedIpv4);
    }
    if ip.more_frags() || ip.frag_offset() != 0 {
        return Err(DhcpError::Fragment);
    }
    if ip.next_header() != IpProtocol::Udp {
        return Err(DhcpError::NotUdp(ip.next_header().into()));
    }
    let ip_payload = &frame[info.l3 + ip.header_len() as usize..info.l3 + ip.total_len() as usize];
    let udp = UdpPacket::new_checked(ip_payload).map_err(|_| DhcpError::MalformedUdp)?;
    if (udp.src_port(), udp.dst_port()) != (CLIENT_PORT, SERVER_PORT) {
        return Err(DhcpError::Ports(udp.src_port(), udp.dst_port()));
    }
    let bootp = DhcpPacket::new_checked(udp.payload()).map_err(|_| DhcpError::MalformedBootp)?;
    let op = udp.payload()[0];
    if op != 1 {
        return Err(DhcpError::NotRequest(op));
    }
    let (htype, hlen) = (udp.payload()[1], bootp.hardware_len());
    if htype != 1 || hlen != 6 {
        return Err(DhcpError::NotEthernet(htype, hlen));
    }
    if bootp.magic_number() != MAGIC_COOKIE {
        return Err(DhcpError::NoCookie);
    }
    let chaddr = Mac(bootp.client_hardware_address().0);
    if chaddr != info.src {
        return Err(DhcpError::NotFromClient {
            chaddr,
            src: info.src,
        });
    }
    // Option 53; the iterator stops at the end option or at a malformed one.
    let message_type = bootp
        .options()
        .find(|o| o.kind == 53 && o.data.len() == 1)
        .map(|o| o.data[0]);
    Ok(DhcpRequest {
        client: info.src,
        xid: bootp.transaction_id(),
        message_type,
    })
}

/// `frame` with its Ethernet destination replaced by `server`: the request
/// as varpd resends it. Nothing else changes, so no checksum does.
pub fn readdress(frame: &[u8], server: Mac) -> Vec<u8> {
    let mut out = frame.to_vec();
    if out.len() >= eth::HEADER_LEN {
        out[..6].copy_from_slice(&server.0);
    }
    out
}

/// The name of a DHCP message type (option 53), for logs and traces.
pub fn message_type_name(t: u8) -> &'static str {
    match DhcpMessageType::from(t) {
        DhcpMessageType::Discover => "DISCOVER",
        DhcpMessageType::Offer => "OFFER",
        DhcpMessageType::Request => "REQUEST",
        DhcpMessageType::Decline => "DECLINE",
        DhcpMessageType::Ack => "ACK",
        DhcpMessageType::Nak => "NAK",
        DhcpMessageType::Release => "RELEASE",
        DhcpMessageType::Inform => "INFORM",
        _ => "unknown",
    }
}

/// A DHCP request frame from `client` as a guest's DHCP client sends it:
/// broadcast Ethernet and IPv4 (0.0.0.0 → 255.255.255.255), UDP 68 → 67
/// with its checksum, a BOOTREQUEST with `chaddr` = `client`, the magic
/// cookie and option 53 = `message_type`. For tests and examples.
pub fn request_frame(client: Mac, xid: u32, message_type: u8) -> Vec<u8> {
    // BOOTP fixed part (236 bytes), cookie, options 53 and end, padded to
    // the 300 bytes BOOTP clients send at least.
    let mut bootp = vec![0u8; 236];
    bootp[0] = 1; // BOOTREQUEST
    bootp[1] = 1; // Ethernet
    bootp[2] = 6;
    bootp[4..8].copy_from_slice(&xid.to_be_bytes());
    bootp[10] = 0x80; // broadcast flag: answer by broadcast
    bootp[28..34].copy_from_slice(&client.0);
    bootp.extend_from_slice(&MAGIC_COOKIE.to_be_bytes());
    bootp.extend_from_slice(&[53, 1, message_type, 255]);
    bootp.resize(300, 0);

    let udp_len = 8 + bootp.len();
    let total = 20 + udp_len;
    let mut f = Vec::with_capacity(eth::HEADER_LEN + total);
    f.extend_from_slice(&[0xff; 6]);
    f.extend_from_slice(&client.0);
    f.extend_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
    // IPv4: version 4, IHL 5, TOS 0x10 (as dhclient), TTL 64, UDP,
    // 0.0.0.0 -> 255.255.255.255.
    f.extend_from_slice(&[0x45, 0x10]);
    f.extend_from_slice(&(total as u16).to_be_bytes());
    f.extend_from_slice(&[0, 0, 0, 0, 64, 17, 0, 0, 0, 0, 0, 0, 255, 255, 255, 255]);
    f.extend_from_slice(&CLIENT_PORT.to_be_bytes());
    f.extend_from_slice(&SERVER_PORT.to_be_bytes());
    f.extend_from_slice(&(udp_len as u16).to_be_bytes());
    f.extend_from_slice(&[0, 0]);
    f.extend_from_slice(&bootp);
    let mut ip = Ipv4Packet::new_unchecked(&mut f[eth::HEADER_LEN..]);
    ip.fill_checksum();
    let (src, dst) = (ip.src_addr(), ip.dst_addr());
    UdpPacket::new_unchecked(ip.payload_mut())
        .fill_checksum(&IpAddress::Ipv4(src), &IpAddress::Ipv4(dst));
    f
}

#[cfg(test)]
mod tests {
    use super::*;
    use smoltcp::wire::EthernetFrame;

    const CLIENT: Mac = Mac([2, 0x31, 0, 0, 0, 2]);
    const SERVER: Mac = Mac([2, 0x31, 0, 0, 0, 9]);

    #[test]
    fn a_discover_is_a_request_and_keeps_its_checksums_when_readdressed() {
        let f = request_frame(CLIENT, 0x1234_5678, 1);
        let r = parse_request(&f).unwrap();
        assert_eq!(
            r,
            DhcpRequest {
                client: CLIENT,
                xid: 0x1234_5678,
                message_type: Some(1)
            }
        );
        assert_eq!(message_type_name(1), "DISCOVER");
        let out = readdress(&f, SERVER);
        assert_eq!(&out[..6], &SERVER.0);
        assert_eq!(out[6..], f[6..]);
        // smoltcp agrees that both checksums hold.
        let e = EthernetFrame::new_checked(&out[..]).unwrap();
        let ip = Ipv4Packet::new_checked(e.payload()).unwrap();
        assert!(ip.verify_checksum());
        let udp = UdpPacket::new_checked(ip.payload()).unwrap();
        assert!(udp.verify_checksum(
            &IpAddress::Ipv4(ip.src_addr()),
            &IpAddress::Ipv4(ip.dst_addr())
        ));
        assert_eq!(parse_request(&out).unwrap().client, CLIENT);
    }

    #[test]
    fn what_is_not_a_request_is_named() {
        let good = request_frame(CLIENT, 1, 3);
        let with = |at: usize, v: u8| {
            let mut f = good.clone();
            f[at] = v;
            f
        };
        // Offsets: Ethernet 14, IPv4 20 (at 14), UDP 8 (at 34), BOOTP at 42.
        assert_eq!(parse_request(&good[..10]), Err(DhcpError::Runt));
        assert_eq!(
            parse_request(&with(12, 0x86)),
            Err(DhcpError::NotIpv4(0x8600))
        );
        assert_eq!(parse_request(&good[..30]), Err(DhcpError::MalformedIpv4));
        assert_eq!(
            parse_request(&with(14, 0x65)),
            Err(DhcpError::MalformedIpv4)
        );
        assert_eq!(parse_request(&with(20, 0x20)), Err(DhcpError::Fragment));
        assert_eq!(parse_request(&with(23, 6)), Err(DhcpError::NotUdp(6)));
        assert_eq!(parse_request(&with(37, 68)), Err(DhcpError::Ports(68, 68)));
        assert_eq!(parse_request(&with(42, 2)), Err(DhcpError::NotRequest(2)));
        assert_eq!(
            parse_request(&with(43, 6)),
            Err(DhcpError::NotEthernet(6, 6))
        );
        assert_eq!(parse_request(&with(42 + 236, 0)), Err(DhcpError::NoCookie));
        assert_eq!(
            parse_request(&with(42 + 28, 0x0a)),
            Err(DhcpError::NotFromClient {
                chaddr: Mac([0x0a, 0x31, 0, 0, 0, 2]),
                src: CLIENT
            })
        );
        // An IPv4 total length past the frame, and a UDP length past it.
        let mut long = good.clone();
        long[16..18].copy_from_slice(&2000u16.to_be_bytes());
        assert_eq!(parse_request(&long), Err(DhcpError::MalformedIpv4));
        let mut long = good.clone();
        long[38..40].copy_from_slice(&2000u16.to_be_bytes());
        assert_eq!(parse_request(&long), Err(DhcpError::MalformedUdp));
        // Cut inside BOOTP: the IPv4 length still says the whole.
        let mut cut = good[..100].to_vec();
        cut[16..18].copy_from_slice(&86u16.to_be_bytes());
        cut[38..40].copy_from_slice(&66u16.to_be_bytes());
        assert_eq!(parse_request(&cut), Err(DhcpError::MalformedBootp));
    }

    proptest::proptest! {
        /// No input panics; whatever parses names its frame's source.
        #[test]
        fn never_panics(f in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400)) {
            if let Ok(r) = parse_request(&f) {
                proptest::prop_assert_eq!(&r.client.0[..], &f[6..12]);
            }
        }
    }
}
