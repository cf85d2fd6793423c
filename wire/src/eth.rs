//! What the data plane must know of an inner Ethernet frame to forward it.
//!
//! The transmit path looks at every frame a guest sends, so this is a few
//! fixed-offset reads: destination and source MAC, the EtherType (past one
//! 802.1Q tag), and for group-addressed frames whether varpd can answer
//! them (ARP, IPv6 neighbour solicitation, DHCP). The flow hash feeds the
//! VXLAN UDP source port so that ECMP spreads flows but keeps each in order.

use overlay_api::Mac;

/// EtherType of IPv4.
pub const ETHERTYPE_IPV4: u16 = 0x0800;
/// EtherType of ARP.
pub const ETHERTYPE_ARP: u16 = 0x0806;
/// EtherType of IPv6.
pub const ETHERTYPE_IPV6: u16 = 0x86dd;
/// EtherType of an 802.1Q tag.
pub const ETHERTYPE_VLAN: u16 = 0x8100;
/// Length of an untagged Ethernet header.
pub const HEADER_LEN: usize = 14;

/// What kind of group-addressed (broadcast or multicast) frame this is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GroupKind {
    /// An ARP packet.
    Arp,
    /// An ICMPv6 neighbour solicitation.
    NeighborSolicit,
    /// A DHCPv4 client message (UDP to port 67).
    Dhcp,
    /// Anything else.
    Other,
}

/// The forwarding-relevant fields of an Ethernet frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameInfo {
    /// Destination MAC.
    pub dst: Mac,
    /// Source MAC.
    pub src: Mac,
    /// EtherType after at most one VLAN tag.
    pub ethertype: u16,
    /// Offset of the layer-3 header.
    pub l3: usize,
    /// For group-addressed frames, what they carry; `None` for unicast.
    pub group: Option<GroupKind>,
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

fn mac_at(b: &[u8], at: usize) -> Mac {
    let mut m = [0u8; 6];
    m.copy_from_slice(&b[at..at + 6]);
    Mac(m)
}

/// Reads the forwarding-relevant fields; `None` for a frame shorter than an
/// Ethernet header (a runt).
pub fn classify(f: &[u8]) -> Option<FrameInfo> {
    if f.len() < HEADER_LEN {
        return None;
    }
    let dst = mac_at(f, 0);
    let src = mac_at(f, 6);
    let (mut ethertype, mut l3) = (be16(f, 12)?, HEADER_LEN);
    if ethertype == ETHERTYPE_VLAN {
        if let Some(t) = be16(f, 16) {
            ethertype = t;
            l3 = HEADER_LEN + 4;
        }
    }
    let group = dst.is_multicast().then(|| group_kind(f, ethertype, l3));
    Some(FrameInfo {
        dst,
        src,
        ethertype,
        l3,
        group,
    })
}

fn group_kind(f: &[u8], ethertype: u16, l3: usize) -> GroupKind {
    match ethertype {
        ETHERTYPE_ARP => GroupKind::Arp,
        // IPv6 with next header ICMPv6 (58) and type 135 (NS); extension
        // headers before ICMPv6 are not followed: NS never carries them.
        ETHERTYPE_IPV6 if f.get(l3 + 6) == Some(&58) && f.get(l3 + 40) == Some(&135) => {
            GroupKind::NeighborSolicit
        }
        ETHERTYPE_IPV4 => {
            let ihl = (*f.get(l3).unwrap_or(&0) as usize & 0x0f) * 4;
            if f.get(l3 + 9) == Some(&17) && ihl >= 20 && be16(f, l3 + ihl + 2) == Some(67) {
                GroupKind::Dhcp
            } else {
                GroupKind::Other
            }
        }
        _ => GroupKind::Other,
    }
}

/// FNV-1a over a few byte ranges; small, fast, allocation-free and good
/// enough for spreading flows over UDP source ports.
struct Fnv(u32);

impl Fnv {
    fn eat(&mut self, b: &[u8]) {
        for &x in b {
            self.0 ^= x as u32;
            self.0 = self.0.wrapping_mul(0x0100_0193);
        }
    }
}

/// A hash of the frame's flow: MACs, and when present the IP addresses,
/// protocol and TCP/UDP ports. Frames of one flow always hash alike.
pub fn flow_hash(f: &[u8]) -> u32 {
    let mut h = Fnv(0x811c_9dc5);
    let Some(info) = classify(f) else {
        h.eat(f);
        return h.0;
    };
    h.eat(&f[..12]);
    let l3 = info.l3;
    let (proto, l4) = match info.ethertype {
        ETHERTYPE_IPV4 if f.len() >= l3 + 20 => {
            h.eat(&f[l3 + 12..l3 + 20]);
            let frag = u16::from_be_bytes([f[l3 + 6], f[l3 + 7]]) & 0x3fff != 0;
            let ihl = (f[l3] as usize & 0x0f) * 4;
            (f[l3 + 9], (!frag).then_some(l3 + ihl))
        }
        ETHERTYPE_IPV6 if f.len() >= l3 + 40 => {
            h.eat(&f[l3 + 8..l3 + 40]);
            (f[l3 + 6], Some(l3 + 40))
        }
        _ => return h.0,
    };
    h.eat(&[proto]);
    if let (6 | 17, Some(l4)) = (proto, l4) {
        if let Some(ports) = f.get(l4..l4 + 4) {
            h.eat(ports);
        }
    }
    h.0
}

/// Maps a flow hash into a UDP source port range `[lo, hi]`, as RFC 7348
/// recommends (49152–65535 by default).
pub fn source_port(hash: u32, lo: u16, hi: u16) -> u16 {
    let span = (hi.max(lo) - lo) as u32 + 1;
    lo + ((hash ^ (hash >> 16)) % span) as u16
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn frame(dst: [u8; 6], ethertype: u16, payload: &[u8]) -> Vec<u8> {
        let mut f = dst.to_vec();
        f.extend_from_slice(&[2, 0, 0, 0, 0, 1]);
        f.extend_from_slice(&ethertype.to_be_bytes());
        f.extend_from_slice(payload);
        f
    }

    #[test]
    fn classifies_group_frames() {
        let arp = frame([0xff; 6], ETHERTYPE_ARP, &[0; 28]);
        assert_eq!(classify(&arp).unwrap().group, Some(GroupKind::Arp));
        let mut ns = vec![0u8; 64];
        ns[6] = 58;
        ns[40] = 135;
        let ns = frame([0x33, 0x33, 0xff, 0, 0, 2], ETHERTYPE_IPV6, &ns);
        assert_eq!(
            classify(&ns).unwrap().group,
            Some(GroupKind::NeighborSolicit)
        );
        let mut dhcp = vec![0u8; 300];
        dhcp[0] = 0x45;
        dhcp[9] = 17;
        dhcp[22..24].copy_from_slice(&67u16.to_be_bytes());
        let dhcp = frame([0xff; 6], ETHERTYPE_IPV4, &dhcp);
        assert_eq!(classify(&dhcp).unwrap().group, Some(GroupKind::Dhcp));
        let mld = frame([0x33, 0x33, 0, 0, 0, 0x16], ETHERTYPE_IPV6, &[0; 60]);
        assert_eq!(classify(&mld).unwrap().group, Some(GroupKind::Other));
        let uni = frame([2, 0, 0, 0, 0, 2], ETHERTYPE_IPV4, &[0; 40]);
        assert_eq!(classify(&uni).unwrap().group, None);
        assert!(classify(&uni[..13]).is_none());
    }

    #[test]
    fn vlan_tag_is_skipped() {
        let f = frame([0xff; 6], ETHERTYPE_VLAN, &[0, 5, 0x08, 0x06, 0, 0]);
        let i = classify(&f).unwrap();
        assert_eq!(
            (i.ethertype, i.l3, i.group),
            (ETHERTYPE_ARP, 18, Some(GroupKind::Arp))
        );
    }

    proptest! {
        #[test]
        fn never_panics(b in proptest::collection::vec(any::<u8>(), 0..120)) {
            let _ = classify(&b);
            let _ = flow_hash(&b);
        }

        #[test]
        fn ports_stay_in_range(h in any::<u32>(), lo in 1024u16..60000, w in 0u16..5000) {
            let hi = lo.saturating_add(w);
            let p = source_port(h, lo, hi);
            prop_assert!(p >= lo && p <= hi);
        }
    }

    #[test]
    fn flows_differ_by_port() {
        let mut ip = vec![0u8; 40];
        ip[0] = 0x45;
        ip[9] = 6;
        let a = frame([2, 0, 0, 0, 0, 2], ETHERTYPE_IPV4, &ip);
        ip[21] = 1;
        let b = frame([2, 0, 0, 0, 0, 2], ETHERTYPE_IPV4, &ip);
        assert_ne!(flow_hash(&a), flow_hash(&b));
        assert_eq!(flow_hash(&a), flow_hash(&a.clone()));
    }
}
