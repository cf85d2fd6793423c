//! NVGRE (RFC 7637, `-e nvgre`): GRE with a key over raw IP sockets.
//! Interoperability with Open vSwitch's userspace datapath, whose GRE key
//! is 32 bits (a VSID V with FlowID 0 is OVS key V×256), in both
//! destination modes, each over IPv4 and IPv6 underlays; overlayd on both
//! sides over IPv4 and IPv6; and malformed GRE counted as drops under
//! their reasons. NVGRE has no port: files entries and the direct plugin
//! leave it out (one case of each gives one, which is ignored).

use overlay_api::{DropReason, Mac};
use overlay_tests::snapshot::{mux_drops, overlay};
use overlay_tests::{eth_frame, find_mac_line, underlay_cidr, Daemon, FilesEntry, Host, Lab};
use std::time::Duration;

/// Two overlayd hosts on a veth pair with underlay addresses `ul1` and
/// `ul2` (CIDRs).
fn overlayd_pair(lab: &mut Lab, ul1: &str, ul2: &str) -> (Host, Host) {
    let a = lab.add_host("a");
    let b = lab.add_host("b");
    lab.link(a, ul1, b, ul2);
    lab.overlay_host(a);
    lab.overlay_host(b);
    (a, b)
}

/// The files entry of host i of overlay n whose underlay address is `ul`,
/// without a port (NVGRE has none).
fn entry(n: u8, i: u8, ul: &str) -> FilesEntry {
    FilesEntry {
        mac: format!("02:{n}:00:00:00:0{i}"),
        ip: ul.into(),
        port: 0,
        arp: Some(format!("192.168.{n}.{i}")),
        ndp: Some(format!("fd{n}::{i}")),
    }
}

/// Overlay `ov0` of number n on host i: NVGRE, files plugin, VSID `vsid`.
fn files_overlay(lab: &Lab, h: Host, n: u8, i: u8, vsid: u32, ul: &str, config: &std::path::Path) {
    lab.create_files_overlay_encap(h, "ov0", "nvgre", vsid, ul, config);
    lab.addr(
        h,
        "ov0",
        &format!("02:{n}:00:00:00:0{i}"),
        &[&format!("192.168.{n}.{i}/24"), &format!("fd{n}::{i}/64")],
    );
}

#[test]
#[ignore = "needs root, network namespaces and Open vSwitch: run `sudo make test`"]
fn point_mode_direct_plugin_with_ovs_gre() {
    for (n, ul1, ul2) in [
        (71u8, "10.71.0.1", "10.71.0.2"),
        (76, "fd00:76::1", "fd00:76::2"),
    ] {
        let mut lab = Lab::new("nvgre_ovs_direct");
        let (a, b) = lab.overlayd_and_ovs(&underlay_cidr(ul1), &underlay_cidr(ul2));
        let vsid = 101 * u32::from(n);
        // No port over IPv4; over IPv6 one given, and ignored.
        let port = if n == 76 { ",direct/dest_port=1" } else { "" };
        lab.ovadm_ok(
            a,
            [
                "create-overlay",
                "-e",
                "nvgre",
                "-s",
                "direct",
                "-v",
                &vsid.to_string(),
                "-p",
                &format!("nvgre/listen_ip={ul1},direct/dest_ip={ul2}{port}"),
                "ov0",
            ],
        );
        lab.addr(
            a,
            "ov0",
            &format!("02:{n}:00:00:00:01"),
            &[&format!("192.168.{n}.1/24"), &format!("fd{n}::1/64")],
        );
        // OVS's key is 32 bits: VSID V with FlowID 0 is key V×256.
        lab.ovs_tunnel(b, "gre", vsid * 256, ul1, "gr0");
        lab.addr(
            b,
            "gr0",
            &format!("02:{n}:00:00:00:02"),
            &[&format!("192.168.{n}.2/24"), &format!("fd{n}::2/64")],
        );
        lab.ping_four_ways(a, b, n, "OVS");
        let r = lab.ping(a, &format!("192.168.{n}.2"), &["-M", "do", "-s", "1372"]);
        assert!(r.all_answered(), "full-MTU (1400) frames do not pass:\n{r}");
        let show = lab.ovadm_ok(a, ["show-overlay", "-p", "-o", "property,value", "ov0"]);
        assert!(
            show.contains("encap:nvgre") && show.contains("nvgre/listen_ip:"),
            "{show}"
        );
        assert!(!show.contains("listen_port"), "NVGRE has no port:\n{show}");
        let s = lab.stats(a);
        let o = overlay(&s, "ov0");
        assert!(
            o.tx_frames >= 12 && o.rx_frames >= 12,
            "counters do not show the traffic: {o:#?}"
        );
        assert_eq!(s.muxes[0].encap, "nvgre", "{s:#?}");
        assert!(
            s.muxes[0].drops.is_empty(),
            "OVS's packets were dropped: {s:#?}"
        );
    }
}

#[test]
#[ignore = "needs root, network namespaces and Open vSwitch: run `sudo make test`"]
fn dynamic_mode_files_plugin_with_ovs_gre() {
    for (n, ul1, ul2) in [
        (72u8, "fd00:72::1", "fd00:72::2"),
        (78, "10.78.0.1", "10.78.0.2"),
    ] {
        let mut lab = Lab::new("nvgre_ovs_files");
        let (a, b) = lab.overlayd_and_ovs(&underlay_cidr(ul1), &underlay_cidr(ul2));
        let vsid = 101 * u32::from(n);
        // No port over IPv6; over IPv4 one given, and ignored.
        let mut peer = entry(n, 2, ul2);
        if n == 78 {
            peer.port = 4789;
        }
        let config = lab.write_file("files.json", &FilesEntry::json(&[peer]));
        files_overlay(&lab, a, n, 1, vsid, ul1, &config);
        lab.ovs_tunnel(b, "gre", vsid * 256, ul1, "gr0");
        lab.addr(
            b,
            "gr0",
            &format!("02:{n}:00:00:00:02"),
            &[&format!("192.168.{n}.2/24"), &format!("fd{n}::2/64")],
        );
        lab.ping_four_ways(a, b, n, "OVS");
        let t = lab.ovadm_ok(a, ["show-overlay", "-t"]);
        let row = find_mac_line(&t, &format!("02:{n}:00:00:00:02"));
        assert_eq!(
            row.and_then(|l| l.split_whitespace().nth(2)),
            Some(ul2),
            "the destination is the address alone, no port:\n{t}"
        );
        let s = lab.stats(a);
        assert!(overlay(&s, "ov0").injected >= 2, "{s:#?}");
        assert!(
            s.muxes[0].drops.is_empty(),
            "OVS's packets were dropped: {s:#?}"
        );
    }
}

#[test]
#[ignore = "needs root and network namespaces: run `sudo make test`"]
fn overlayd_pairs_over_nvgre_ipv4_and_ipv6() {
    for (n, ul1, ul2) in [
        (73u8, "10.73.0.1", "10.73.0.2"),
        (74, "fd00:74::1", "fd00:74::2"),
    ] {
        let mut lab = Lab::new("nvgre_pair");
        let (a, b) = overlayd_pair(&mut lab, &underlay_cidr(ul1), &underlay_cidr(ul2));
        let config = lab.write_file(
            "files.json",
            &FilesEntry::json(&[entry(n, 1, ul1), entry(n, 2, ul2)]),
        );
        let vsid = 100 * u32::from(n) + u32::from(n);
        files_overlay(&lab, a, n, 1, vsid, ul1, &config);
        files_overlay(&lab, b, n, 2, vsid, ul2, &config);
        lab.ping_four_ways(a, b, n, "overlayd");
        let r = lab.ping(
            a,
            &format!("192.168.{n}.2"),
            &["-c", "20", "-i", "0.01", "-s", "1372"],
        );
        assert!(r.all_answered(), "{r}");
        for h in [a, b] {
            let s = lab.stats(h);
            assert!(s.muxes[0].drops.is_empty(), "{s:#?}");
            assert!(overlay(&s, "ov0").rx_frames >= 26, "{s:#?}");
        }
        // Same VSID on the same address: refused, as with VXLAN.
        let out = lab.ovadm(
            a,
            [
                "create-overlay",
                "-e",
                "nvgre",
                "-s",
                "files",
                "-v",
                &vsid.to_string(),
                "-p",
                &format!("nvgre/listen_ip={ul1},files/config={}", config.display()),
                "ov1",
            ],
        );
        assert_eq!(out.status.code(), Some(1), "{out:?}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("is already used by overlay ov0"),
            "{out:?}"
        );
    }
}

/// A GRE header (flags byte, version, protocol, then the key if K) in front of `frame`.
fn gre(flags: u8, ver: u8, proto: u16, key: u32, frame: &[u8]) -> Vec<u8> {
    let mut b = vec![flags, ver];
    b.extend_from_slice(&proto.to_be_bytes());
    if flags & 0x80 != 0 {
        b.extend_from_slice(&[0xde, 0xad, 0, 0]); // a checksum that cannot be right
    }
    if flags & 0x20 != 0 {
        b.extend_from_slice(&key.to_be_bytes());
    }
    b.extend_from_slice(frame);
    b
}

#[test]
#[ignore = "needs root and network namespaces: run `sudo make test`"]
fn malformed_gre_is_counted_by_reason() {
    let mut lab = Lab::new("nvgre_malformed");
    let (a, b) = overlayd_pair(&mut lab, "10.75.0.1/24", "10.75.0.2/24");
    let config = lab.write_file(
        "files.json",
        &FilesEntry::json(&[entry(75, 1, "10.75.0.1"), entry(75, 2, "10.75.0.2")]),
    );
    files_overlay(&lab, a, 75, 1, 7575, "10.75.0.1", &config);
    files_overlay(&lab, b, 75, 2, 7575, "10.75.0.2", &config);
    let r = lab.wait_ping(b, "192.168.75.1", Duration::from_secs(10));
    assert!(
        r.all_answered(),
        "the pair does not work to begin with:\n{r}"
    );
    let before = lab.stats(a);
    let src: Mac = "02:75:00:00:00:99".parse().unwrap();
    let frame = eth_frame(Mac::BROADCAST, src, 0x88b5, &[0; 46]);
    let key = 7575 << 8;
    lab.send_raw_ipv4(
        b,
        47,
        "10.75.0.1".parse().unwrap(),
        &[
            gre(0x00, 0, 0x6558, 0, &frame),                  // no-key
            gre(0x20, 0, 0x0800, key, &frame),                // bad-protocol
            gre(0x20, 0, 0x88be, key, &frame),                // bad-protocol (ERSPAN)
            gre(0x20, 1, 0x6558, key, &frame),                // bad-version
            gre(0x20 | 0x40, 0, 0x6558, key, &frame),         // bad-version: RFC 1701 routing
            gre(0x20 | 0x80, 0, 0x6558, key, &frame),         // bad-checksum
            gre(0x20, 0, 0x6558, key, &frame)[..12].to_vec(), // short-header
            vec![0x20, 0],                                    // short-header
            gre(0x20, 0, 0x6558, 4999 << 8, &frame),          // unknown-vni
            gre(0x20, 0, 0x6558, key | 0x5a, &frame),         // delivered: a FlowID is fine
        ],
    );
    let want = [
        (DropReason::NoKey, 1),
        (DropReason::BadProtocol, 2),
        (DropReason::BadVersion, 2),
        (DropReason::BadChecksum, 1),
        (DropReason::ShortHeader, 2),
        (DropReason::UnknownVni, 1),
    ];
    let s = lab.wait_stats(
        a,
        Duration::from_secs(5),
        "each malformed GRE packet under its reason",
        |s| {
            want.iter()
                .all(|&(r, n)| mux_drops(s, r) == mux_drops(&before, r) + n)
        },
    );
    assert!(
        overlay(&s, "ov0").rx_frames > overlay(&before, "ov0").rx_frames,
        "the packet with a FlowID was not delivered: {s:#?}"
    );
    let shown = lab.ovadm_ok(a, ["show-stats"]);
    // A raw-IP mux has an address and no port.
    assert!(
        shown
            .lines()
            .any(|l| l.starts_with("mux nvgre ") && !l.contains(':')),
        "show-stats does not name the NVGRE mux by its address:\n{shown}"
    );
    for r in ["no-key", "bad-protocol", "bad-version", "bad-checksum"] {
        assert!(shown.contains(r), "show-stats lacks {r}:\n{shown}");
    }
    assert!(
        lab.alive(a, Daemon::Overlayd),
        "overlayd died of malformed input"
    );
    for (h, dest) in [(a, "192.168.75.2"), (b, "192.168.75.1")] {
        let r = lab.ping(h, dest, &[]);
        assert!(
            r.all_answered(),
            "after malformed input, {dest} is unreachable:\n{r}"
        );
    }
}
