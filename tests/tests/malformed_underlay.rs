//! Malformed underlay input is counted, not fatal. From the peer's
//! namespace, datagrams go to overlayd's VXLAN port with an unknown VNI,
//! shorter than the header, and with the I flag clear; each must show up
//! under its drop reason in the mux counters, and overlayd must keep
//! answering and forwarding. A burst of random bytes follows, for luck.

use overlay_api::{DropReason, Mac};
use overlay_tests::snapshot::mux_drops;
use overlay_tests::{eth_frame, vxlan_datagram, Daemon, Lab, VXLAN_FLAG_I};
use std::net::UdpSocket;
use std::time::Duration;

#[test]
#[ignore = "needs root and network namespaces: run `sudo make test`"]
fn malformed_datagrams_are_counted_not_fatal() {
    let mut lab = Lab::new("malformed");
    let p = lab.files_pair(43, 4343);
    let r = lab.ping(p.b, &p.ip4(1), &[]);
    assert!(
        r.all_answered(),
        "the pair does not work to begin with:\n{r}"
    );

    let before = lab.stats(p.a);
    let target = format!("{}:4789", p.ul(1));
    let src: Mac = "02:43:00:00:00:99".parse().unwrap();
    let frame = eth_frame(Mac::BROADCAST, src, 0x0800, &[0x45, 0, 0, 20]);
    lab.in_ns(p.b, || {
        let s = UdpSocket::bind(format!("{}:0", p.ul(2))).expect("bind in the peer's namespace");
        let send = |d: &[u8]| {
            s.send_to(d, &target)
                .unwrap_or_else(|e| panic!("send to {target}: {e}"));
        };
        for vni in [4999, 1, 0xff_ffff] {
            send(&vxlan_datagram(VXLAN_FLAG_I, vni, &frame)); // unknown-vni x3
        }
        send(&[VXLAN_FLAG_I, 0, 0, 0]); // short-header: half a header
        send(&vxlan_datagram(VXLAN_FLAG_I, p.vni, &[])); // short-header: no frame at all
        send(&vxlan_datagram(VXLAN_FLAG_I, p.vni, &frame[..10])); // short-header: no whole Ethernet header
        for _ in 0..2 {
            send(&vxlan_datagram(0, p.vni, &frame)); // no-vni-flag x2
        }
    });
    let want = [
        (DropReason::UnknownVni, 3),
        (DropReason::ShortHeader, 3),
        (DropReason::NoVniFlag, 2),
    ];
    lab.wait_stats(
        p.a,
        Duration::from_secs(5),
        "unknown-vni +3, short-header +3, no-vni-flag +2 in the mux drops",
        |s| {
            want.iter()
                .all(|&(r, n)| mux_drops(s, r) >= mux_drops(&before, r) + n)
        },
    );
    assert!(
        lab.alive(p.a, Daemon::Overlayd),
        "overlayd died of malformed input"
    );

    // Random datagrams of every small length, empty ones included.
    lab.in_ns(p.b, || {
        let s = UdpSocket::bind(format!("{}:0", p.ul(2))).expect("bind in the peer's namespace");
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for i in 0..600usize {
            let d: Vec<u8> = (0..i % 120)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect();
            let _ = s.send_to(&d, &target);
        }
    });
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        lab.alive(p.a, Daemon::Overlayd),
        "overlayd died of random input"
    );
    let s = lab.stats(p.a);
    assert!(
        s.muxes.iter().map(|m| m.rx_datagrams).sum::<u64>()
            > before.muxes.iter().map(|m| m.rx_datagrams).sum::<u64>() + 8,
        "{s:#?}"
    );
    lab.ovadm_ok(p.a, ["show-overlay", "ov0"]);
    for (from, to) in [(1, 2), (2, 1)] {
        let r = lab.ping(p.host(from), &p.ip4(to), &[]);
        assert!(
            r.all_answered(),
            "after malformed input, host {from} cannot reach host {to}:\n{r}"
        );
    }
}
