//! Decode tests on hand-built frames.

use super::*;
use proptest::prelude::*;

const M1: [u8; 6] = [0x02, 0x77, 0, 0, 0, 1];
const M2: [u8; 6] = [0x02, 0x77, 0, 0, 0, 2];

fn eth(dst: [u8; 6], src: [u8; 6], et: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    f.extend_from_slice(&et.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

fn ipv4(src: [u8; 4], dst: [u8; 4], proto: u8, payload: &[u8]) -> Vec<u8> {
    let mut h = vec![0x45, 0];
    h.extend_from_slice(&((20 + payload.len()) as u16).to_be_bytes());
    h.extend_from_slice(&[0, 7, 0x40, 0, 64, proto, 0, 0]);
    h.extend_from_slice(&src);
    h.extend_from_slice(&dst);
    h.extend_from_slice(payload);
    h
}

fn ipv6(src: Ipv6Addr, dst: Ipv6Addr, next: u8, payload: &[u8]) -> Vec<u8> {
    let mut h = vec![0x60, 0, 0, 0];
    h.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    h.extend_from_slice(&[next, 255]);
    h.extend_from_slice(&src.octets());
    h.extend_from_slice(&dst.octets());
    h.extend_from_slice(payload);
    h
}

fn udp(sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut h = Vec::new();
    h.extend_from_slice(&sport.to_be_bytes());
    h.extend_from_slice(&dport.to_be_bytes());
    h.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    h.extend_from_slice(&[0, 0]);
    h.extend_from_slice(payload);
    h
}

fn vxlan_hdr(vni: u32, inner: &[u8]) -> Vec<u8> {
    let mut h = [0u8; 8];
    vxlan::emit(vni, &mut h);
    let mut v = h.to_vec();
    v.extend_from_slice(inner);
    v
}

fn echo(t: u8, id: u16, seq: u16) -> Vec<u8> {
    let mut e = vec![t, 0, 0, 0];
    e.extend_from_slice(&id.to_be_bytes());
    e.extend_from_slice(&seq.to_be_bytes());
    e.extend_from_slice(&[0xab; 56]);
    e
}

fn inner_icmp() -> Vec<u8> {
    eth(
        M2,
        M1,
        ET_IPV4,
        &ipv4([192, 168, 77, 1], [192, 168, 77, 2], 1, &echo(8, 5, 1)),
    )
}

fn d(f: &[u8]) -> Frame {
    decode(LinkType::Ethernet, f, f.len(), &Options::default())
}

#[test]
fn vxlan_over_ipv4_with_inner_icmp() {
    let inner = inner_icmp();
    let f = eth(
        [2, 0, 0, 0, 0, 0xb],
        [2, 0, 0, 0, 0, 0xa],
        ET_IPV4,
        &ipv4(
            [10, 77, 0, 1],
            [10, 77, 0, 2],
            17,
            &udp(50000, 4789, &vxlan_hdr(4242, &inner)),
        ),
    );
    let fr = d(&f);
    assert_eq!(fr.outer.note, None);
    let v = fr.vxlan.as_ref().unwrap();
    assert_eq!((v.vni, v.flags, v.reserved), (4242, 0x08, 0));
    let i = fr.inner.as_ref().unwrap();
    assert_eq!(i.len, 98);
    assert_eq!(i.link.as_ref().unwrap().src, Some(Mac(M1)));
    assert_eq!(
        i.transport,
        Some(Transport::Icmp {
            icmp_type: 8,
            code: 0,
            id: Some(5),
            seq: Some(1)
        })
    );
    let mut named = fr.clone();
    named.vxlan.as_mut().unwrap().overlay = Some("ov0".into());
    assert_eq!(
        crate::format::line(&named),
        "VNI 4242 (ov0)  10.77.0.1 -> 10.77.0.2  02:77:00:00:00:01 -> 02:77:00:00:00:02  \
         ICMP echo request 192.168.77.1 -> 192.168.77.2 id 5 seq 1  len 98"
    );
    let j: serde_json::Value =
        serde_json::from_str(&crate::format::json(&named, 3, Some(1.5))).unwrap();
    assert_eq!(
        (j["frame"].clone(), j["ts"].clone()),
        (3.into(), 1.5.into())
    );
    assert_eq!(j["vxlan"]["vni"], 4242);
    assert_eq!(j["vxlan"]["flags"], 8);
    assert_eq!(j["vxlan"]["overlay"], "ov0");
    assert_eq!(j["outer"]["src_ip"], "10.77.0.1");
    assert_eq!(j["outer"]["dst_mac"], "02:00:00:00:00:0b");
    assert_eq!(j["outer"]["dport"], 4789);
    assert_eq!(j["inner"]["src_mac"], "02:77:00:00:00:01");
    assert_eq!(j["inner"]["ethertype"], 0x0800);
    assert_eq!(j["inner"]["proto"], 1);
    assert_eq!(j["inner"]["dst_ip"], "192.168.77.2");
    assert_eq!(j["inner"]["icmp"]["type"], 8);
    assert!(j.get("error").is_none(), "{j}");
}

#[test]
fn vxlan_over_ipv6_and_extra_port_and_vlan() {
    let inner = inner_icmp();
    let ul1: Ipv6Addr = "fd00::1".parse().unwrap();
    let ul2: Ipv6Addr = "fd00::2".parse().unwrap();
    let ip = ipv6(ul1, ul2, 17, &udp(1234, 8472, &vxlan_hdr(7, &inner)));
    let mut tagged = vec![0x00, 0x2a];
    tagged.extend_from_slice(&ET_IPV6.to_be_bytes());
    tagged.extend_from_slice(&ip);
    let f = eth(M2, M1, ET_VLAN, &tagged);
    // 8472 is not VXLAN until asked for.
    assert!(d(&f).vxlan.is_none());
    let opts = Options {
        vxlan_ports: vec![4789, 8472],
        ..Options::default()
    };
    let fr = decode(LinkType::Ethernet, &f, f.len(), &opts);
    assert_eq!(fr.outer.link.as_ref().unwrap().vlans, vec![42]);
    assert_eq!(fr.vxlan.as_ref().unwrap().vni, 7);
    assert!(matches!(fr.outer.net, Some(Net::Ipv6 { src, .. }) if src == ul1));
    assert!(fr.inner.unwrap().transport.is_some());
}

#[test]
fn inner_arp() {
    let mut arp = vec![0, 1, 8, 0, 6, 4, 0, 1];
    arp.extend_from_slice(&M1);
    arp.extend_from_slice(&[192, 168, 77, 1]);
    arp.extend_from_slice(&[0; 6]);
    arp.extend_from_slice(&[192, 168, 77, 2]);
    let inner = eth([0xff; 6], M1, ET_ARP, &arp);
    let f = eth(
        M2,
        M1,
        ET_IPV4,
        &ipv4(
            [10, 0, 0, 1],
            [10, 0, 0, 2],
            17,
            &udp(1, 4789, &vxlan_hdr(1, &inner)),
        ),
    );
    let fr = d(&f);
    let line = crate::format::line(&fr);
    assert!(
        line.contains("ARP who-has 192.168.77.2 tell 192.168.77.1"),
        "{line}"
    );
    assert!(line.starts_with("VNI 1  10.0.0.1 -> 10.0.0.2"), "{line}");
}

#[test]
fn arp_errors_name_what_is_wrong() {
    let arp_note = |arp: &[u8]| {
        let fr = d(&eth([0xff; 6], M1, ET_ARP, arp));
        assert!(fr.outer.net.is_none(), "{fr:?}");
        fr.outer.note.unwrap()
    };
    // Full length (28 bytes) but zero hardware and protocol lengths: malformed, not truncated.
    let mut zero = vec![0, 1, 8, 0, 0, 0, 0, 1];
    zero.resize(28, 0);
    assert_eq!(
        arp_note(&zero),
        "malformed ARP: hardware length 0, protocol length 0"
    );
    let mut zero_plen = zero.clone();
    zero_plen[4] = 6;
    assert_eq!(
        arp_note(&zero_plen),
        "malformed ARP: hardware length 6, protocol length 0"
    );
    // Another pair of types is named, lengths and all.
    let mut other = zero.clone();
    other[1] = 6;
    other[4] = 6;
    other[5] = 4;
    let note = arp_note(&other);
    assert!(
        note.contains("not for IPv4 over Ethernet: hardware type 6"),
        "{note}"
    );
    // Too short for the fixed header, or for the addresses: truncated, with the length.
    assert_eq!(arp_note(&[0, 1, 8]), "truncated ARP (3 bytes)");
    let mut short = vec![0, 1, 8, 0, 6, 4, 0, 1];
    short.resize(20, 0);
    assert_eq!(arp_note(&short), "truncated ARP (20 bytes)");
}

#[test]
fn icmpv6_neighbor_solicitation() {
    let src: Ipv6Addr = "fd77::1".parse().unwrap();
    let target: Ipv6Addr = "fd77::2".parse().unwrap();
    let mut ns = vec![135, 0, 0, 0, 0, 0, 0, 0];
    ns.extend_from_slice(&target.octets());
    ns.extend_from_slice(&[1, 1]);
    ns.extend_from_slice(&M1);
    let dst: Ipv6Addr = "ff02::1:ff00:2".parse().unwrap();
    let fr = d(&eth(
        [0x33, 0x33, 0xff, 0, 0, 2],
        M1,
        ET_IPV6,
        &ipv6(src, dst, 58, &ns),
    ));
    assert_eq!(
        fr.outer.transport,
        Some(Transport::Icmpv6 {
            icmp_type: 135,
            code: 0,
            id: None,
            seq: None,
            target: Some(target),
            lladdr: Some(Mac(M1)),
        })
    );
    let line = crate::format::line(&fr);
    assert!(
        line.contains("neighbor solicitation fd77::1 -> ff02::1:ff00:2 target fd77::2"),
        "{line}"
    );
}

#[test]
fn tcp_syn() {
    let mut tcp = Vec::new();
    tcp.extend_from_slice(&40000u16.to_be_bytes());
    tcp.extend_from_slice(&80u16.to_be_bytes());
    tcp.extend_from_slice(&1000u32.to_be_bytes());
    tcp.extend_from_slice(&0u32.to_be_bytes());
    tcp.extend_from_slice(&[0x50, 0x02, 0xff, 0xff, 0, 0, 0, 0]);
    let fr = d(&eth(
        M2,
        M1,
        ET_IPV4,
        &ipv4([1, 1, 1, 1], [2, 2, 2, 2], 6, &tcp),
    ));
    let line = crate::format::line(&fr);
    assert_eq!(
        line,
        "02:77:00:00:00:01 -> 02:77:00:00:00:02  TCP 1.1.1.1:40000 -> 2.2.2.2:80 [SYN] seq 1000 ack 0 win 65535  len 54"
    );
}

#[test]
fn dhcp_discover() {
    let mut b = vec![0u8; 240];
    b[0] = 1;
    b[4..8].copy_from_slice(&0xdead_beefu32.to_be_bytes());
    b[28..34].copy_from_slice(&M1);
    b[236..240].copy_from_slice(&[0x63, 0x82, 0x53, 0x63]);
    b.extend_from_slice(&[53, 1, 1, 255]);
    let fr = d(&eth(
        [0xff; 6],
        M1,
        ET_IPV4,
        &ipv4([0; 4], [255; 4], 17, &udp(68, 67, &b)),
    ));
    assert_eq!(
        fr.outer.app,
        Some(App::Dhcp {
            op: 1,
            xid: 0xdead_beef,
            chaddr: Mac(M1),
            yiaddr: Ipv4Addr::UNSPECIFIED,
            msg_type: Some(1)
        })
    );
    assert!(crate::format::line(&fr)
        .contains("DHCP DISCOVER 0.0.0.0:68 -> 255.255.255.255:67 xid 0xdeadbeef"));
}

#[test]
fn malformed_layers_are_notes() {
    let full = eth(
        M2,
        M1,
        ET_IPV4,
        &ipv4(
            [10, 0, 0, 1],
            [10, 0, 0, 2],
            17,
            &udp(1, 4789, &vxlan_hdr(9, &inner_icmp())),
        ),
    );
    // Cut everywhere: never a panic, always a note once something is missing.
    for n in 0..full.len() {
        let fr = decode(
            LinkType::Ethernet,
            &full[..n],
            full.len(),
            &Options::default(),
        );
        let note = fr
            .outer
            .note
            .clone()
            .or(fr.inner.as_ref().and_then(|i| i.note.clone()));
        assert!(note.is_some(), "cut at {n} gave no note");
        let _ = crate::format::verbose(&fr, 1);
    }
    // A VXLAN header without the I flag.
    let mut bad = full.clone();
    bad[14 + 20 + 8] = 0;
    assert!(d(&bad).outer.note.unwrap().contains("without the I flag"));
    // Reserved bits: in the flags, after them, after the VNI. The inner
    // frame is still decoded (receivers ignore them), with an error.
    for at in [0, 1, 3, 7] {
        let mut r = full.clone();
        r[14 + 20 + 8 + at] |= 0x40;
        let fr = d(&r);
        assert!(fr.inner.as_ref().unwrap().transport.is_some(), "{fr:?}");
        let e = fr.error().unwrap();
        assert!(e.contains("VXLAN reserved bits set"), "{e}");
        assert!(crate::format::line(&fr).contains("[error: outer: VXLAN reserved bits set"));
        let j: serde_json::Value =
            serde_json::from_str(&crate::format::json(&fr, 1, None)).unwrap();
        assert!(j["error"].as_str().unwrap().contains("reserved"), "{j}");
    }
}

#[test]
fn linux_cooked() {
    let ip = ipv4(
        [10, 0, 0, 1],
        [10, 0, 0, 2],
        17,
        &udp(1, 4789, &vxlan_hdr(3, &inner_icmp())),
    );
    let mut sll = vec![0, 0, 0, 1, 0, 6];
    sll.extend_from_slice(&M1);
    sll.extend_from_slice(&[0, 0]);
    sll.extend_from_slice(&ET_IPV4.to_be_bytes());
    sll.extend_from_slice(&ip);
    let fr = decode(LinkType::LinuxSll, &sll, sll.len(), &Options::default());
    assert_eq!(fr.vxlan.unwrap().vni, 3);
    assert_eq!(fr.outer.link.unwrap().src, Some(Mac(M1)));

    let mut sll2 = ET_IPV4.to_be_bytes().to_vec();
    sll2.extend_from_slice(&[0, 0, 0, 0, 0, 2, 0, 1, 0, 6]);
    sll2.extend_from_slice(&M1);
    sll2.extend_from_slice(&[0, 0]);
    sll2.extend_from_slice(&ip);
    let fr = decode(LinkType::LinuxSll2, &sll2, sll2.len(), &Options::default());
    assert_eq!(fr.vxlan.unwrap().vni, 3);
}

proptest! {
    #[test]
    fn never_panics(b in proptest::collection::vec(any::<u8>(), 0..200), lt in 0..3u8) {
        let lt = [LinkType::Ethernet, LinkType::LinuxSll, LinkType::LinuxSll2][lt as usize];
        let opts = Options {
            vxlan_ports: vec![4789, 8472],
            ..Options::default()
        };
        let f = decode(lt, &b, b.len(), &opts);
        let _ = (crate::format::line(&f), crate::format::verbose(&f, 1), crate::format::json(&f, 1, None));
    }

    #[test]
    fn never_panics_behind_vxlan(b in proptest::collection::vec(any::<u8>(), 0..200)) {
        let f = eth(M2, M1, ET_IPV4, &ipv4([10, 0, 0, 1], [10, 0, 0, 2], 17, &udp(1, 4789, &vxlan_hdr(9, &b))));
        let fr = d(&f);
        let _ = (crate::format::line(&fr), crate::format::verbose(&fr, 1));
    }
}

/// A Geneve header (version, flags byte, protocol, VNI, options as
/// (class, type, data words)) in front of `inner`.
fn geneve_hdr(
    ver: u8,
    flags: u8,
    proto: u16,
    vni: u32,
    opts: &[(u16, u8, u8)],
    inner: &[u8],
) -> Vec<u8> {
    let (v, p) = (vni.to_be_bytes(), proto.to_be_bytes());
    let mut h = vec![0, flags, p[0], p[1], v[1], v[2], v[3], 0];
    for &(class, kind, words) in opts {
        h.extend_from_slice(&class.to_be_bytes());
        h.extend_from_slice(&[kind, words]);
        h.extend(std::iter::repeat_n(0x5a, usize::from(words) * 4));
    }
    h[0] = (ver << 6) | ((h.len() - 8) / 4) as u8;
    h.extend_from_slice(inner);
    h
}

fn geneve_frame(g: &[u8]) -> Vec<u8> {
    eth(
        [2, 0, 0, 0, 0, 0xb],
        [2, 0, 0, 0, 0, 0xa],
        ET_IPV6,
        &ipv6(
            "fd00::1".parse().unwrap(),
            "fd00::2".parse().unwrap(),
            17,
            &udp(40000, 6081, g),
        ),
    )
}

#[test]
fn geneve_with_options_over_ipv6() {
    let g = geneve_hdr(
        0,
        0,
        0x6558,
        5151,
        &[(0x0102, 0x03, 1), (0xffff, 0x7f, 0)],
        &inner_icmp(),
    );
    let fr = d(&geneve_frame(&g));
    assert_eq!(fr.error(), None);
    assert!(fr.vxlan.is_none());
    let h = fr.geneve.as_ref().unwrap();
    assert_eq!(
        (h.version, h.opt_len, h.oam, h.critical, h.protocol, h.vni),
        (0, 12, false, false, 0x6558, 5151)
    );
    assert_eq!(
        h.options,
        [
            GeneveOpt {
                class: 0x0102,
                kind: 3,
                len: 4
            },
            GeneveOpt {
                class: 0xffff,
                kind: 0x7f,
                len: 0
            }
        ]
    );
    assert_eq!(fr.vni(), Some(5151));
    let mut named = fr.clone();
    named.set_overlay(Some("ov0".into()));
    assert_eq!(
        crate::format::line(&named),
        "VNI 5151 geneve (ov0)  fd00::1 -> fd00::2  02:77:00:00:00:01 -> 02:77:00:00:00:02  \
         ICMP echo request 192.168.77.1 -> 192.168.77.2 id 5 seq 1  len 98"
    );
    let v = crate::format::verbose(&named, 1);
    assert!(
        v.contains("GENEVE:  Option 1 = class 0x0102 type 0x03 length 4 bytes"),
        "{v}"
    );
    let j: serde_json::Value = serde_json::from_str(&crate::format::json(&named, 1, None)).unwrap();
    assert!(j.get("vxlan").is_none());
    assert_eq!(j["geneve"]["vni"], 5151);
    assert_eq!(j["geneve"]["overlay"], "ov0");
    assert_eq!(j["geneve"]["options"][0]["class"], 0x0102);
    assert_eq!(j["geneve"]["options"][0]["type"], 3);
    assert_eq!(j["geneve"]["options"][1]["len"], 0);
    assert_eq!(j["inner"]["icmp"]["type"], 8);
    assert_eq!(j["outer"]["dport"], 6081);
}

#[test]
fn geneve_errors_are_what_overlayd_drops() {
    let inner = inner_icmp();
    for (g, want) in [
        (geneve_hdr(1, 0, 0x6558, 1, &[], &inner), "version 1"),
        (
            geneve_hdr(0, 0x80, 0x6558, 1, &[], &inner),
            "control message",
        ),
        (
            geneve_hdr(0, 0x40, 0x6558, 1, &[(7, 0x81, 0)], &inner),
            "critical option",
        ),
        (geneve_hdr(0, 0, 0x0800, 1, &[], &inner), "0x0800"),
        (
            geneve_hdr(0, 0, 0x6558, 1, &[], &inner)[..5].to_vec(),
            "shorter",
        ),
    ] {
        let fr = d(&geneve_frame(&g));
        let e = fr.error().unwrap_or_default();
        assert!(e.contains("Geneve") && e.contains(want), "{want}: {e}");
    }
    // A control message's Ethernet payload is still shown.
    let fr = d(&geneve_frame(&geneve_hdr(0, 0x80, 0x6558, 1, &[], &inner)));
    assert!(fr.geneve.as_ref().unwrap().oam && fr.inner.is_some());
}

#[test]
fn nvgre_over_ipv4() {
    let mut g = vec![0x20, 0, 0x65, 0x58, 0x00, 0x1b, 0xbb, 0x07];
    g.extend_from_slice(&inner_icmp());
    let f = eth(
        [2, 0, 0, 0, 0, 0xb],
        [2, 0, 0, 0, 0, 0xa],
        ET_IPV4,
        &ipv4([10, 77, 0, 1], [10, 77, 0, 2], 47, &g),
    );
    let fr = d(&f);
    assert_eq!(fr.error(), None);
    let n = fr.nvgre.as_ref().unwrap();
    assert_eq!(
        (n.flags, n.version, n.protocol, n.key, n.vsid, n.flow_id),
        (0x20, 0, 0x6558, Some(0x001b_bb07), Some(7099), Some(7))
    );
    assert_eq!(fr.vni(), Some(7099));
    assert_eq!(
        crate::format::line(&fr),
        "VNI 7099 nvgre  10.77.0.1 -> 10.77.0.2  02:77:00:00:00:01 -> 02:77:00:00:00:02  \
         ICMP echo request 192.168.77.1 -> 192.168.77.2 id 5 seq 1  len 98"
    );
    let v = crate::format::verbose(&fr, 1);
    assert!(
        v.contains("NVGRE:  Key = 0x001bbb07 (VSID 7099, FlowID 7)"),
        "{v}"
    );
    let j: serde_json::Value = serde_json::from_str(&crate::format::json(&fr, 1, None)).unwrap();
    assert_eq!(j["nvgre"]["vsid"], 7099);
    assert_eq!(j["nvgre"]["key"], 0x001b_bb07);
    assert!(j.get("vxlan").is_none() && j.get("geneve").is_none());
    assert_eq!(j["inner"]["icmp"]["type"], 8);
    // No key: shown, and called what overlayd calls it.
    g[0] = 0;
    let f = eth(
        [2; 6],
        [4; 6],
        ET_IPV4,
        &ipv4([10, 77, 0, 1], [10, 77, 0, 2], 47, &g[..4]),
    );
    let fr = d(&f);
    assert!(
        fr.error().unwrap().contains("invalid NVGRE"),
        "{:?}",
        fr.error()
    );
    assert_eq!(fr.vni(), None);
}
