//! `--vni`, `--overlay`, `--mac`, `--host`, `--port`: which frames (or
//! traced events) to show.
//!
//! Different options combine with AND; an option given more than once
//! matches any of its values (OR), as `tcpdump 'port 1 or port 2'` would.
//! `--mac`, `--host` and `--port` look at both directions and at every
//! layer: outer (UL3) and inner (VL2/VL3) addresses and ports, and the
//! addresses inside ARP. `--overlay` needs overlayd to name VNIs (or a
//! traced event, which carries the name); a frame whose VNI has no name
//! does not match it.

use crate::decode::{Frame, Net, Stack, Transport};
use overlay_api::Mac;
use std::net::IpAddr;

/// The filters of one run; the default passes everything.
#[derive(Clone, Debug, Default)]
pub struct Filter {
    /// VNIs (any of).
    pub vnis: Vec<u32>,
    /// Overlay names (any of).
    pub overlays: Vec<String>,
    /// MACs, source or destination, outer or inner (any of).
    pub macs: Vec<Mac>,
    /// IP addresses, source or destination, outer or inner (any of).
    pub hosts: Vec<IpAddr>,
    /// TCP/UDP ports, source or destination, outer or inner (any of).
    pub ports: Vec<u16>,
}

/// What a filter looks at, from a frame or from a traced event.
pub trait Subject {
    /// The VNI, if any.
    fn vni(&self) -> Option<u32>;
    /// The overlay's name, if known.
    fn overlay(&self) -> Option<&str>;
    /// Whether any MAC of it is `m`.
    fn has_mac(&self, m: &Mac) -> bool;
    /// Whether any IP address of it is `a`.
    fn has_host(&self, a: &IpAddr) -> bool;
    /// Whether any port of it is `p`.
    fn has_port(&self, p: u16) -> bool;
}

impl Filter {
    /// Whether no filter is set (the fast path skips the checks).
    pub fn is_empty(&self) -> bool {
        self.vnis.is_empty()
            && self.overlays.is_empty()
            && self.macs.is_empty()
            && self.hosts.is_empty()
            && self.ports.is_empty()
    }

    /// Whether `s` passes every filter that is set.
    pub fn matches(&self, s: &impl Subject) -> bool {
        (self.vnis.is_empty() || s.vni().is_some_and(|v| self.vnis.contains(&v)))
            && (self.overlays.is_empty()
                || s.overlay()
                    .is_some_and(|o| self.overlays.iter().any(|w| w == o)))
            && (self.macs.is_empty() || self.macs.iter().any(|m| s.has_mac(m)))
            && (self.hosts.is_empty() || self.hosts.iter().any(|h| s.has_host(h)))
            && (self.ports.is_empty() || self.ports.iter().any(|p| s.has_port(*p)))
    }
}

fn stacks(f: &Frame) -> impl Iterator<Item = &Stack> {
    std::iter::once(&f.outer).chain(f.inner.as_ref())
}

impl Subject for Frame {
    fn vni(&self) -> Option<u32> {
        Frame::vni(self)
    }

    fn overlay(&self) -> Option<&str> {
        Frame::overlay(self)
    }

    fn has_mac(&self, m: &Mac) -> bool {
        stacks(self).any(|s| {
            s.link
                .as_ref()
                .is_some_and(|l| l.src.as_ref() == Some(m) || l.dst.as_ref() == Some(m))
                || matches!(&s.net, Some(Net::Arp { sha, tha, .. }) if sha == m || tha == m)
        })
    }

    fn has_host(&self, a: &IpAddr) -> bool {
        stacks(self).any(|s| match (&s.net, a) {
            (Some(Net::Ipv4 { src, dst, .. }), IpAddr::V4(a)) => src == a || dst == a,
            (Some(Net::Ipv6 { src, dst, .. }), IpAddr::V6(a)) => src == a || dst == a,
            (Some(Net::Arp { spa, tpa, .. }), IpAddr::V4(a)) => spa == a || tpa == a,
            _ => false,
        })
    }

    fn has_port(&self, p: u16) -> bool {
        stacks(self).any(|s| match &s.transport {
            Some(Transport::Udp { sport, dport, .. } | Transport::Tcp { sport, dport, .. }) => {
                *sport == p || *dport == p
            }
            _ => false,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::{decode, LinkType, Options};

    /// A VXLAN frame: UL3 10.0.0.1:5000 -> 10.0.0.2:4789, VNI 7, inner
    /// 02:..:01 -> 02:..:02 UDP 192.168.0.1:53 -> 192.168.0.2:9999.
    fn frame() -> Frame {
        let mut inner = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00];
        let mut ip = vec![
            0x45, 0, 0, 28, 0, 0, 0, 0, 64, 17, 0, 0, 192, 168, 0, 1, 192, 168, 0, 2,
        ];
        ip.extend_from_slice(&[0, 53, 0x27, 0x0f, 0, 8, 0, 0]);
        inner.extend_from_slice(&ip);
        let mut vx = vec![8, 0, 0, 0, 0, 0, 7, 0];
        vx.extend_from_slice(&inner);
        let mut udp = vec![0x13, 0x88, 0x12, 0xb5];
        udp.extend_from_slice(&((vx.len() + 8) as u16).to_be_bytes());
        udp.extend_from_slice(&[0, 0]);
        udp.extend_from_slice(&vx);
        let tl = (20 + udp.len()) as u16;
        let mut oip = vec![
            0x45, 0, 0, 0, 0, 0, 0, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
        ];
        oip[2..4].copy_from_slice(&tl.to_be_bytes());
        oip.extend_from_slice(&udp);
        let mut eth = vec![0xaa, 0, 0, 0, 0, 2, 0xaa, 0, 0, 0, 0, 1, 0x08, 0x00];
        eth.extend_from_slice(&oip);
        let mut f = decode(LinkType::Ethernet, &eth, eth.len(), &Options::default());
        f.vxlan.as_mut().unwrap().overlay = Some("ov0".into());
        f
    }

    #[test]
    fn every_filter_and_their_and() {
        let f = frame();
        assert_eq!(f.vxlan.as_ref().unwrap().vni, 7);
        let all = Filter::default();
        assert!(all.is_empty() && all.matches(&f));
        let yes = [
            Filter {
                vnis: vec![3, 7],
                ..Filter::default()
            },
            Filter {
                overlays: vec!["ov0".into()],
                ..Filter::default()
            },
            Filter {
                macs: vec!["02:00:00:00:00:02".parse().unwrap()],
                ..Filter::default()
            },
            Filter {
                macs: vec!["aa:00:00:00:00:01".parse().unwrap()],
                ..Filter::default()
            },
            Filter {
                hosts: vec!["192.168.0.1".parse().unwrap()],
                ..Filter::default()
            },
            Filter {
                hosts: vec!["10.0.0.2".parse().unwrap()],
                ..Filter::default()
            },
            Filter {
                ports: vec![9999],
                ..Filter::default()
            },
            Filter {
                ports: vec![4789],
                ..Filter::default()
            },
            Filter {
                vnis: vec![7],
                overlays: vec!["ov0".into()],
                macs: vec!["02:00:00:00:00:01".parse().unwrap()],
                hosts: vec!["192.168.0.2".parse().unwrap()],
                ports: vec![53],
            },
        ];
        for y in &yes {
            assert!(y.matches(&f), "{y:?}");
        }
        let no = [
            Filter {
                vnis: vec![8],
                ..Filter::default()
            },
            Filter {
                overlays: vec!["ov1".into()],
                ..Filter::default()
            },
            Filter {
                macs: vec!["02:00:00:00:00:03".parse().unwrap()],
                ..Filter::default()
            },
            Filter {
                hosts: vec!["fd00::1".parse().unwrap()],
                ..Filter::default()
            },
            Filter {
                ports: vec![80],
                ..Filter::default()
            },
            // AND: one wrong option is enough to refuse.
            Filter {
                vnis: vec![7],
                ports: vec![80],
                ..Filter::default()
            },
        ];
        for n in &no {
            assert!(!n.matches(&f), "{n:?}");
        }
    }
}
