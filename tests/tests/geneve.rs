//! Geneve (RFC 8926, `-e geneve`): interoperability with Open vSwitch's
//! userspace datapath in both destination modes, each over IPv4 and IPv6
//! underlays; overlayd on both sides (dynamic mode over IPv4, point mode
//! over IPv6); the mux rules it shares with VXLAN; and malformed Geneve
//! headers counted as drops under their reasons.

use overlay_api::{DropReason, Mac};
use overlay_tests::snapshot::{mux_drops, overlay};
use overlay_tests::{
    eth_frame, geneve_datagram, underlay_cidr, Daemon, FilesEntry, Lab, GENEVE_PROTO_TEB,
};
use std::net::UdpSocket;
use std::time::Duration;

/// `[ip]:port` or `ip:port`.
fn sockaddr(ul: &str, port: u16) -> String {
    if ul.contains(':') {
        format!("[{ul}]:{port}")
    } else {
        format!("{ul}:{port}")
    }
}

#[test]
#[ignore = "needs root, network namespaces and Open vSwitch: run `sudo make test`"]
fn point_mode_direct_plugin_with_ovs_geneve() {
    for (n, ul1, ul2) in [
        (51u8, "10.51.0.1", "10.51.0.2"),
        (56, "fd00:56::1", "fd00:56::2"),
    ] {
        let mut lab = Lab::new("geneve_ovs_direct");
        let (a, b) = lab.overlayd_and_ovs(&underlay_cidr(ul1), &underlay_cidr(ul2));
        let vni = 101 * u32::from(n);
        lab.ovadm_ok(
            a,
            [
                "create-overlay",
                "-e",
                "geneve",
                "-s",
                "direct",
                "-v",
                &vni.to_string(),
                "-p",
                &format!("geneve/listen_ip={ul1},direct/dest_ip={ul2},direct/dest_port=6081"),
                "ov0",
            ],
        );
        lab.addr(
            a,
            "ov0",
            &format!("02:{n}:00:00:00:01"),
            &[&format!("192.168.{n}.1/24"), &format!("fd{n}::1/64")],
        );
        lab.ovs_tunnel(b, "geneve", vni, ul1, "gv0");
        lab.addr(
            b,
            "gv0",
            &format!("02:{n}:00:00:00:02"),
            &[&format!("192.168.{n}.2/24"), &format!("fd{n}::2/64")],
        );
        lab.ping_four_ways(a, b, n, "OVS");
        let r = lab.ping(a, &format!("192.168.{n}.2"), &["-M", "do", "-s", "1372"]);
        assert!(r.all_answered(), "full-MTU (1400) frames do not pass:\n{r}");
        let show = lab.ovadm_ok(a, ["show-overlay", "-p", "-o", "property,value", "ov0"]);
        assert!(
            show.contains("encap:geneve") && show.contains("geneve/listen_port:6081"),
            "{show}"
        );
        let s = lab.stats(a);
        let o = overlay(&s, "ov0");
        assert!(
            o.tx_frames >= 12 && o.rx_frames >= 12,
            "counters do not show the traffic: {o:#?}"
        );
        assert_eq!(s.muxes[0].encap, "geneve", "{s:#?}");
        assert!(
            s.muxes[0].drops.is_empty(),
            "OVS's datagrams were dropped: {s:#?}"
        );
    }
}

#[test]
#[ignore = "needs root, network namespaces and Open vSwitch: run `sudo make test`"]
fn dynamic_mode_files_plugin_with_ovs_geneve() {
    for (n, ul1, ul2) in [
        (52u8, "fd00:52::1", "fd00:52::2"),
        (57, "10.57.0.1", "10.57.0.2"),
    ] {
        let mut lab = Lab::new("geneve_ovs_files");
        let (a, b) = lab.overlayd_and_ovs(&underlay_cidr(ul1), &underlay_cidr(ul2));
        let vni = 101 * u32::from(n);
        let peer = FilesEntry {
            mac: format!("02:{n}:00:00:00:02"),
            ip: ul2.into(),
            port: 6081,
            arp: Some(format!("192.168.{n}.2")),
            ndp: Some(format!("fd{n}::2")),
        };
        let config = lab.write_file("files.json", &FilesEntry::json(&[peer]));
        lab.create_files_overlay_encap(a, "ov0", "geneve", vni, ul1, &config);
        lab.addr(
            a,
            "ov0",
            &format!("02:{n}:00:00:00:01"),
            &[&format!("192.168.{n}.1/24"), &format!("fd{n}::1/64")],
        );
        lab.ovs_tunnel(b, "geneve", vni, ul1, "gv0");
        lab.addr(
            b,
            "gv0",
            &format!("02:{n}:00:00:00:02"),
            &[&format!("192.168.{n}.2/24"), &format!("fd{n}::2/64")],
        );
        lab.ping_four_ways(a, b, n, "OVS");
        let t = lab.ovadm_ok(a, ["show-overlay", "-t", "ov0"]);
        assert!(
            t.contains(&sockaddr(ul2, 6081)),
            "the OVS peer should map to {}:\n{t}",
            sockaddr(ul2, 6081)
        );
        let s = lab.stats(a);
        let o = overlay(&s, "ov0");
        assert!(
            o.injected >= 2,
            "proxy ARP and NDP replies should have been injected: {o:#?}"
        );
        assert!(s.muxes[0].drops.is_empty(), "{s:#?}");
    }
}

#[test]
#[ignore = "needs root and network namespaces: run `sudo make test`"]
fn overlayd_pair_over_geneve_point_mode_ipv6_underlay() {
    let mut lab = Lab::new("geneve_pair_direct6");
    let a = lab.add_host("a");
    let b = lab.add_host("b");
    lab.link(a, "fd00:55::1/64", b, "fd00:55::2/64");
    for (h, i, me, peer) in [
        (a, 1, "fd00:55::1", "fd00:55::2"),
        (b, 2, "fd00:55::2", "fd00:55::1"),
    ] {
        lab.overlay_host(h);
        lab.ovadm_ok(
            h,
            [
                "create-overlay",
                "-e",
                "geneve",
                "-s",
                "direct",
                "-v",
                "5555",
                "-p",
                &format!("geneve/listen_ip={me},direct/dest_ip={peer},direct/dest_port=6081"),
                "ov0",
            ],
        );
        lab.addr(
            h,
            "ov0",
            &format!("02:55:00:00:00:0{i}"),
            &[&format!("192.168.55.{i}/24"), &format!("fd55::{i}/64")],
        );
    }
    lab.ping_four_ways(a, b, 55, "overlayd");
    for h in [a, b] {
        let s = lab.stats(h);
        assert!(
            s.muxes[0].drops.is_empty() && overlay(&s, "ov0").rx_frames >= 12,
            "{s:#?}"
        );
    }
}

#[test]
#[ignore = "needs root and network namespaces: run `sudo make test`"]
fn overlayd_pair_over_geneve_shares_the_mux_rules() {
    let mut lab = Lab::new("geneve_pair");
    let p = lab.files_pair_encap(53, 5353, "geneve");
    lab.ping_four_ways(p.a, p.b, 53, "overlayd");
    // Same VNI and module on the same address: refused, as with VXLAN.
    let config = p.config.display().to_string();
    let out = lab.ovadm(
        p.a,
        [
            "create-overlay",
            "-e",
            "geneve",
            "-s",
            "files",
            "-v",
            "5353",
            "-p",
            &format!("geneve/listen_ip={},files/config={config}", p.ul(1)),
            "ov1",
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(
        e.contains("vnetid 5353 is already used by overlay ov0 on 10.53.0.1:6081"),
        "{e}"
    );
    // The same VNI in another module is another mux.
    lab.create_files_overlay_encap(p.a, "ov2", "vxlan", 5353, &p.ul(1), &p.config);
    let s = lab.stats(p.a);
    let mut encaps: Vec<_> = s.muxes.iter().map(|m| m.encap.as_str()).collect();
    encaps.sort();
    assert_eq!(encaps, ["geneve", "vxlan"], "{s:#?}");
    // A bulk TCP-sized ping exercises the batched paths.
    let r = lab.ping(p.a, &p.ip4(2), &["-c", "20", "-i", "0.01", "-s", "1372"]);
    assert!(r.all_answered(), "{r}");
}

#[test]
#[ignore = "needs root and network namespaces: run `sudo make test`"]
fn malformed_geneve_is_counted_by_reason() {
    let mut lab = Lab::new("geneve_malformed");
    let p = lab.files_pair_encap(54, 5454, "geneve");
    let r = lab.ping(p.b, &p.ip4(1), &[]);
    assert!(
        r.all_answered(),
        "the pair does not work to begin with:\n{r}"
    );
    let before = lab.stats(p.a);
    let target = format!("{}:6081", p.ul(1));
    let src: Mac = "02:54:00:00:00:99".parse().unwrap();
    let frame = eth_frame(Mac::BROADCAST, src, 0x88b5, &[0; 46]);
    let (vni, teb) = (p.vni, GENEVE_PROTO_TEB);
    lab.in_ns(p.b, || {
        let s = UdpSocket::bind(format!("{}:0", p.ul(2))).expect("bind in the peer's namespace");
        let send = |d: &[u8]| {
            s.send_to(d, &target)
                .unwrap_or_else(|e| panic!("send to {target}: {e}"));
        };
        send(&geneve_datagram(1, 0, teb, vni, &[], &frame)); // bad-version
        send(&geneve_datagram(3, 0, teb, vni, &[], &frame)); // bad-version
        send(&geneve_datagram(0, 0x80, teb, vni, &[], &frame)); // control-frame
        send(&geneve_datagram(
            0,
            0x40,
            teb,
            vni,
            &[(0x0104, 0x81, 1)],
            &frame,
        )); // critical-option
        send(&geneve_datagram(
            0,
            0,
            teb,
            vni,
            &[(0x0104, 0x81, 0)],
            &frame,
        )); // critical-option, C unset
        send(&geneve_datagram(0, 0, 0x0800, vni, &[], &frame)); // bad-protocol
        send(&geneve_datagram(0, 0, teb, vni, &[], &frame)[..12]); // short-header
        send(&[0, 0, 0x65]); // short-header
        send(&geneve_datagram(0, 0, teb, vni, &[(1, 2, 4)], &frame)[..20]); // short-header: options cut
        send(&geneve_datagram(0, 0, teb, 4999, &[], &frame)); // unknown-vni
                                                              // Well formed, with two non-critical options: delivered, options counted.
        send(&geneve_datagram(
            0,
            0,
            teb,
            vni,
            &[(0x0104, 0x01, 1), (0xffff, 0x7f, 0)],
            &frame,
        ));
    });
    let want = [
        (DropReason::BadVersion, 2),
        (DropReason::ControlFrame, 1),
        (DropReason::CriticalOption, 2),
        (DropReason::BadProtocol, 1),
        (DropReason::ShortHeader, 3),
        (DropReason::UnknownVni, 1),
    ];
    let s = lab.wait_stats(
        p.a,
        Duration::from_secs(5),
        "each malformed Geneve datagram under its reason",
        |s| {
            want.iter()
                .all(|&(r, n)| mux_drops(s, r) == mux_drops(&before, r) + n)
                && s.muxes[0].options_skipped == before.muxes[0].options_skipped + 2
        },
    );
    let o = overlay(&s, "ov0");
    assert!(
        o.rx_frames > overlay(&before, "ov0").rx_frames,
        "the frame with options was not delivered: {o:#?}"
    );
    let shown = lab.ovadm_ok(p.a, ["show-stats"]);
    assert!(
        shown.contains("mux geneve "),
        "show-stats does not name the module:\n{shown}"
    );
    for r in [
        "bad-version",
        "control-frame",
        "critical-option",
        "bad-protocol",
    ] {
        assert!(shown.contains(r), "show-stats lacks {r}:\n{shown}");
    }
    assert!(
        lab.alive(p.a, Daemon::Overlayd),
        "overlayd died of malformed input"
    );
    for (from, to) in [(1, 2), (2, 1)] {
        let r = lab.ping(p.host(from), &p.ip4(to), &[]);
        assert!(
            r.all_answered(),
            "after malformed input, host {from} cannot reach host {to}:\n{r}"
        );
    }
}
