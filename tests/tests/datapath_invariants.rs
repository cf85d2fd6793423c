//! What a network engineer checks of a data path, end to end: every
//! segment overlayd hands a guest fits the overlay's MTU at the guest's
//! next hop; a checksum is verified before a frame is trusted, so a
//! corrupt super-frame from the underlay is dropped with its reason, not
//! delivered as valid; and a flow's frames keep their order while
//! overlayd's forwarding threads learn its guests' MACs.

use overlay_api::{DropReason, Mac};
use overlay_tests::snapshot::overlay;
use overlay_tests::stream::{csum_errors, stream, tcp_disorder, Amount};
use overlay_tests::{eth_frame, tcp4_packet, vxlan_datagram, Lab, VXLAN_FLAG_I};
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::time::Duration;

/// Data-path drops that no test traffic here may cause.
const DATA_DROPS: [DropReason; 6] = [
    DropReason::SendError,
    DropReason::TapWriteError,
    DropReason::TooBig,
    DropReason::BadOffload,
    DropReason::BadChecksum,
    DropReason::QueueOverflow,
];

/// A kernel VXLAN peer's bulk TCP crosses overlayd to a guest that routes
/// it on over a link of the overlay's MTU, and back. The peer's TSO frames
/// cross the veth whole and overlayd hands them to the TAP device as one
/// super-frame; if its segment size let an IP packet exceed the MTU, the
/// routing guest would drop every one (`skb_gso_validate_network_len`) and
/// the flow would stall.
#[test]
#[ignore = "needs root and network namespaces: run `sudo make test`"]
fn a_routed_guest_forwards_a_kernel_peers_bulk_tcp_at_the_overlay_mtu() {
    let mut lab = Lab::new("routed_guest");
    let n = 64;
    let (a, b) = lab.kernel_vxlan_pair(n);
    // Host a is the guest that routes: ov0 on one side, r0 (MTU 1400, the
    // overlay's) to host c on the other.
    let c = lab.add_host("c");
    let (a_r0, c_r0) = (format!("10.{n}.9.1"), format!("10.{n}.9.2"));
    lab.link_dev("r0", a, &format!("{a_r0}/24"), c, &format!("{c_r0}/24"));
    for h in [a, c] {
        lab.ip(h, &["link", "set", "r0", "mtu", "1400"]);
    }
    let fwd = lab.exec(a, "sh", ["-c", "echo 1 > /proc/sys/net/ipv4/ip_forward"]);
    assert!(fwd.status.success(), "cannot turn forwarding on in host a");
    lab.ip(
        b,
        &[
            "route",
            "add",
            &format!("10.{n}.9.0/24"),
            "via",
            &format!("192.168.{n}.1"),
        ],
    );
    lab.ip(
        c,
        &["route", "add", &format!("192.168.{n}.0/24"), "via", &a_r0],
    );
    let r = lab.wait_ping(b, &c_r0, Duration::from_secs(10));
    assert!(
        r.all_answered(),
        "no routed path from the peer to host c:\n{r}"
    );

    let before = lab.stats(a);
    let to_c = SocketAddr::new(c_r0.parse().unwrap(), 5201);
    let to_b = SocketAddr::new(format!("192.168.{n}.2").parse().unwrap(), 5202);
    stream(&lab, b, c, to_c, 21, Amount::Bytes(64 << 20));
    stream(&lab, c, b, to_b, 22, Amount::Bytes(64 << 20));
    let s = lab.stats(a);
    let (o0, o1) = (overlay(&before, "ov0"), overlay(&s, "ov0"));
    assert!(
        o1.rx_frames - o0.rx_frames > 40_000,
        "the peer's stream did not cross overlayd: {} frames",
        o1.rx_frames - o0.rx_frames
    );
    for r in DATA_DROPS {
        assert_eq!(
            o1.drops.get(r.as_str()),
            o0.drops.get(r.as_str()),
            "{r} drops on host a"
        );
    }
    for h in [a, b, c] {
        assert_eq!(csum_errors(&lab, h), 0, "TCP checksum errors on {h:?}");
    }
}

/// A single datagram larger than the overlay's longest frame (a peer with a
/// larger MTU, a fragmented underlay), carried with VXLAN's usual zero UDP
/// checksum, holds a TCP super-frame: overlayd verifies its checksum
/// before it hands it to the guest whole. A corrupt one is dropped as
/// `bad-checksum`, counted and probed; a correct one is delivered.
#[test]
#[ignore = "needs root and network namespaces: run `sudo make test`"]
fn a_corrupt_oversize_datagram_is_dropped_as_bad_checksum() {
    let mut lab = Lab::new("oversize_csum");
    let p = lab.files_pair(65, 6565);
    let r = lab.wait_ping(p.b, &p.ip4(1), Duration::from_secs(10));
    assert!(
        r.all_answered(),
        "the pair does not work to begin with:\n{r}"
    );
    let mac = |i: u8| p.mac(i).parse::<Mac>().unwrap();
    let ip = |i: u8| p.ip4(i).parse::<Ipv4Addr>().unwrap();
    let payload: Vec<u8> = (0..6000u32).map(|i| (i * 31) as u8).collect();
    let good = tcp4_packet(ip(2), ip(1), 40_000, 9, 1, &payload);
    let mut bad = good.clone();
    bad[3000] ^= 0x5a;
    let datagram =
        |pkt: &[u8]| vxlan_datagram(VXLAN_FLAG_I, p.vni, &eth_frame(mac(1), mac(2), 0x0800, pkt));
    let target = format!("{}:4789", p.ul(1));

    let send = |d: Vec<u8>| {
        lab.in_ns(p.b, || {
            let s =
                UdpSocket::bind(format!("{}:0", p.ul(2))).expect("bind in the peer's namespace");
            s.send_to(&d, &target)
                .unwrap_or_else(|e| panic!("send to {target}: {e}"));
        })
    };
    let count = |s: &overlay_api::StatsSnapshot, r: DropReason| {
        overlay(s, "ov0")
            .drops
            .get(r.as_str())
            .copied()
            .unwrap_or(0)
    };
    let before = lab.stats(p.a);
    send(datagram(&bad));
    let s = lab.wait_stats(p.a, Duration::from_secs(5), "bad-checksum +1 on ov0", |s| {
        count(s, DropReason::BadChecksum) > count(&before, DropReason::BadChecksum)
    });
    assert_eq!(
        count(&s, DropReason::BadChecksum),
        count(&before, DropReason::BadChecksum) + 1
    );
    let (o0, o1) = (overlay(&before, "ov0"), overlay(&s, "ov0"));
    assert_eq!(
        o1.rx_frames, o0.rx_frames,
        "the corrupt super-frame was delivered"
    );

    // The same frame intact is taken whole (as segments of the MTU).
    send(datagram(&good));
    let s = lab.wait_stats(
        p.a,
        Duration::from_secs(5),
        "the good super-frame delivered",
        |s| overlay(s, "ov0").rx_frames > o1.rx_frames,
    );
    assert_eq!(
        count(&s, DropReason::BadChecksum),
        count(&before, DropReason::BadChecksum) + 1
    );
    assert_eq!(
        csum_errors(&lab, p.a),
        0,
        "host a's kernel saw a corrupt segment"
    );
}

/// With a worker beside the event loop, overlayd learns each guest MAC
/// again every 10 s per thread (for varpd and the etcd plugin). That must
/// never take a frame out of its flow: four TCP flows run across the
/// refresh, and the sender's TCP sees no reordering at all (handing a
/// 64 KiB super-frame to the event loop while later ones went on used to
/// cost a burst of dup-ACKs and spurious retransmissions every 10 s).
#[test]
#[ignore = "needs root and network namespaces: run `sudo make test`"]
fn flows_keep_their_order_while_workers_learn_source_macs() {
    let mut lab = Lab::new("learn_order");
    lab.overlayd_args(&["--workers", "2"]);
    let p = lab.files_pair(66, 6666);
    let r = lab.wait_ping(p.a, &p.ip4(2), Duration::from_secs(10));
    assert!(r.all_answered(), "no path before the streams:\n{r}");
    let (reorder0, retrans0) = tcp_disorder(&lab, p.a);
    let lab = &lab;
    std::thread::scope(|s| {
        for i in 0..4u16 {
            let addr = SocketAddr::new(p.ip4(2).parse().unwrap(), 5300 + i);
            s.spawn(move || {
                stream(
                    lab,
                    p.a,
                    p.b,
                    addr,
                    30 + u64::from(i),
                    Amount::For(Duration::from_secs(14)),
                )
            });
        }
    });
    let (reorder1, retrans1) = tcp_disorder(lab, p.a);
    eprintln!(
        "sender: {} reordering events, {} segments retransmitted",
        reorder1 - reorder0,
        retrans1 - retrans0
    );
    assert_eq!(
        reorder1 - reorder0,
        0,
        "the flows were reordered ({} retransmissions)",
        retrans1 - retrans0
    );
    for h in [p.a, p.b] {
        let s = lab.stats(h);
        for r in DATA_DROPS {
            assert!(
                !overlay(&s, "ov0").drops.contains_key(r.as_str()),
                "{h:?}: {r} drops"
            );
        }
    }
}

/// Frames a target entry counted (`show-overlay -t`), by its MAC.
fn entry_frames(lab: &Lab, h: overlay_tests::Host, mac: &str) -> u64 {
    let out = lab.ovadm_ok(
        h,
        ["show-overlay", "-t", "-p", "-o", "target,frames", "ov0"],
    );
    let escaped = mac.replace(':', "\\:");
    out.lines()
        .find_map(|l| l.strip_prefix(&format!("{escaped}:")))
        .unwrap_or_else(|| panic!("no entry for {mac} in:\n{out}"))
        .parse()
        .expect("a frame count")
}

/// A frame a worker reads for a valid entry and then drops (here: larger
/// than the overlay's MTU allows, the TAP device's MTU raised behind
/// overlayd's back) is counted as `too-big`, never as a use of the entry:
/// an entry's frames are frames that went to its destination.
#[test]
#[ignore = "needs root and network namespaces: run `sudo make test`"]
fn a_frame_dropped_on_a_worker_is_not_counted_on_its_target_entry() {
    let mut lab = Lab::new("worker_hits");
    lab.overlayd_args(&["--workers", "2"]);
    let p = lab.files_pair(67, 6767);
    let r = lab.wait_ping(p.a, &p.ip4(2), Duration::from_secs(10));
    assert!(r.all_answered(), "no path to begin with:\n{r}");
    // Only the datagrams below go to host b's MAC from now on.
    lab.pin_neighbour(&p, 1, 2);
    lab.ip(p.a, &["link", "set", "ov0", "mtu", "1500"]);
    let too_big = |s: &overlay_api::StatsSnapshot| {
        overlay(s, "ov0")
            .drops
            .get(DropReason::TooBig.as_str())
            .copied()
            .unwrap_or(0)
    };
    let (frames0, big0) = (entry_frames(&lab, p.a, &p.mac(2)), too_big(&lab.stats(p.a)));
    // 32 flows (ports), so the TAP device spreads them over both queues.
    let n = 32u64;
    lab.in_ns(p.a, || {
        let s = UdpSocket::bind(format!("{}:0", p.ip4(1))).expect("bind in host a");
        for port in 0..n as u16 {
            s.send_to(&[7u8; 1450], (p.ip4(2).as_str(), 7000 + port))
                .expect("send a large datagram");
        }
    });
    let s = lab.wait_stats(p.a, Duration::from_secs(5), "32 more too-big drops", |s| {
        too_big(s) >= big0 + n
    });
    assert_eq!(
        too_big(&s),
        big0 + n,
        "every large datagram is one too-big drop"
    );
    assert_eq!(
        entry_frames(&lab, p.a, &p.mac(2)),
        frames0,
        "frames dropped as too big were counted on the target entry"
    );
}
