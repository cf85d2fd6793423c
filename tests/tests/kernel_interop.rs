//! Interoperability with Linux kernel VXLAN, the reference peer: host `a`
//! runs overlayd and varpd, host `b` a kernel VXLAN device. Both destination
//! modes are tried, IPv4 and IPv6, in both directions.

use overlay_tests::snapshot::overlay;
use overlay_tests::{find_mac_line, FilesEntry, Host, Lab};

/// Pings both ways over IPv4 and IPv6 between `a` (1) and `b` (2) of the
/// overlay numbered `n`.
fn ping_four_ways(lab: &Lab, a: Host, b: Host, n: u8) {
    for (from, h, to) in [("overlayd", a, 2), ("kernel", b, 1)] {
        for dest in [format!("192.168.{n}.{to}"), format!("fd{n}::{to}")] {
            let r = lab.ping(h, &dest, &[]);
            assert!(r.all_answered(), "{from} side cannot reach {dest}:\n{r}");
        }
    }
}

/// Two hosts on a veth pair, underlay 10.N.0.1 and 10.N.0.2, overlayd and
/// varpd on the first.
fn setup(lab: &mut Lab, n: u8) -> (Host, Host) {
    let a = lab.add_host("a");
    let b = lab.add_host("b");
    lab.link(a, &format!("10.{n}.0.1/24"), b, &format!("10.{n}.0.2/24"));
    lab.overlay_host(a);
    (a, b)
}

#[test]
#[ignore = "needs root and network namespaces: run `sudo make test`"]
fn point_mode_direct_plugin_with_kernel_vxlan() {
    let mut lab = Lab::new("kernel_direct");
    let (a, b) = setup(&mut lab, 41);
    lab.ovadm_ok(
        a,
        [
            "create-overlay",
            "-e",
            "vxlan",
            "-s",
            "direct",
            "-v",
            "4141",
            "-p",
            "vxlan/listen_ip=10.41.0.1,direct/dest_ip=10.41.0.2,direct/dest_port=4789",
            "ov0",
        ],
    );
    lab.addr(
        a,
        "ov0",
        "02:41:00:00:00:01",
        &["192.168.41.1/24", "fd41::1/64"],
    );
    lab.kernel_vxlan(b, "vx0", 4141, "10.41.0.2", "10.41.0.1");
    lab.addr(
        b,
        "vx0",
        "02:41:00:00:00:02",
        &["192.168.41.2/24", "fd41::2/64"],
    );

    ping_four_ways(&lab, a, b, 41);
    let r = lab.ping(a, "192.168.41.2", &["-M", "do", "-s", "1372"]);
    assert!(r.all_answered(), "full-MTU (1400) frames do not pass:\n{r}");
    let s = lab.stats(a);
    let o = overlay(&s, "ov0");
    assert!(
        o.tx_frames >= 12 && o.rx_frames >= 12,
        "counters do not show the traffic: {o:#?}"
    );
}

#[test]
#[ignore = "needs root and network namespaces: run `sudo make test`"]
fn dynamic_mode_files_plugin_with_kernel_vxlan() {
    let mut lab = Lab::new("kernel_files");
    let (a, b) = setup(&mut lab, 42);
    let peer = FilesEntry {
        mac: "02:42:00:00:00:02".into(),
        ip: "10.42.0.2".into(),
        port: 4789,
        arp: Some("192.168.42.2".into()),
        ndp: Some("fd42::2".into()),
    };
    let config = lab.write_file("files.json", &FilesEntry::json(&[peer]));
    lab.create_files_overlay(a, "ov0", 4242, "10.42.0.1", &config);
    lab.addr(
        a,
        "ov0",
        "02:42:00:00:00:01",
        &["192.168.42.1/24", "fd42::1/64"],
    );
    lab.kernel_vxlan(b, "vx0", 4242, "10.42.0.2", "10.42.0.1");
    lab.addr(
        b,
        "vx0",
        "02:42:00:00:00:02",
        &["192.168.42.2/24", "fd42::2/64"],
    );

    ping_four_ways(&lab, a, b, 42);
    let t = lab.ovadm_ok(a, ["show-overlay", "-t", "ov0"]);
    let line = find_mac_line(&t, "02:42:00:00:00:02")
        .unwrap_or_else(|| panic!("show-overlay -t lacks the kernel peer:\n{t}"));
    assert!(
        line.contains("10.42.0.2"),
        "the kernel peer should map to 10.42.0.2:\n{t}"
    );
    let s = lab.stats(a);
    let o = overlay(&s, "ov0");
    assert!(
        o.injected >= 2,
        "proxy ARP and NDP replies should have been injected: {o:#?}"
    );
}
