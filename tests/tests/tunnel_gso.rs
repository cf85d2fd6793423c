//! overlayd's opt-in tunnel-GSO send path end to end
//! (`overlayd --underlay-bridge br0`): each host's underlay address lives
//! on a bridge with the veth enslaved to it, overlayd adds its underlay TAP
//! device to the bridge, and a guest's TCP super-frames to a peer on the
//! bridge leave whole, behind the outer headers overlayd writes, for the
//! kernel to segment (over a veth: not at all). Verified TCP streams must
//! arrive intact both ways between two overlayds (VXLAN and Geneve, with
//! IPv4 and IPv6 inside) and from overlayd to a kernel VXLAN peer, with no
//! checksum error, no data-path drop, and the counters showing that the
//! super-frames took the tunnel path; and a flow whose frames change way
//! mid-stream (the neighbour entry flushed again and again) keeps its
//! order. A kernel that refuses
//! `TUN_F_UDP_TUNNEL_GSO` (before 6.17) makes overlayd fall back to its
//! sockets with a warning; the tests then say so and pass.

use overlay_api::{DropReason, OverlayStats};
use overlay_tests::snapshot::overlay;
use overlay_tests::stream::{self, csum_errors, tcp_disorder, Amount};
use overlay_tests::{Daemon, Host, Lab, Pair};
use std::net::SocketAddr;
use std::time::Duration;

/// Bytes each stream carries.
const STREAM: usize = 48 << 20;

/// The overlayd options of every test here.
const ARGS: &[&str] = &["--underlay-bridge", "br0"];

fn stream(lab: &Lab, client: Host, server: Host, addr: SocketAddr, seed: u64) {
    stream::stream(lab, client, server, addr, seed, Amount::Bytes(STREAM));
}

/// No frame of the streams was lost inside overlayd.
fn assert_no_data_drops(o: &OverlayStats) {
    stream::assert_no_data_drops(o, &[DropReason::BadChecksum]);
}

/// Why overlayd on `h` runs without its underlay TAP device, if it does
/// (the kernel refused the tunnel offload: its warning).
fn refused(lab: &Lab, h: Host) -> Option<String> {
    let log = std::fs::read_to_string(lab.log(h, Daemon::Overlayd)).unwrap_or_default();
    log.lines()
        .find(|l| l.contains("refuses TUNSETOFFLOAD"))
        .map(str::to_string)
}

/// The underlay TAP device overlayd on `h` put on `br0`, if any.
fn underlay_tap(lab: &Lab, h: Host) -> Option<String> {
    let out = lab.ip(h, &["-o", "link", "show", "master", "br0"]);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap_or(n).to_string())
        .find(|n| n.starts_with("ovu-"))
}

/// Whether the tests may go on: overlayd on every host of `hosts` has its
/// underlay TAP device, or the kernel refused it (printed; the test passes).
fn supported(lab: &Lab, hosts: &[Host]) -> bool {
    for &h in hosts {
        if let Some(why) = refused(lab, h) {
            println!("skipped: this kernel has no tunnel GSO for TAP devices: {why}");
            return false;
        }
        assert!(
            underlay_tap(lab, h).is_some(),
            "{h:?}: no ovu-* device on br0 and no warning in overlayd's log"
        );
    }
    true
}

/// Streams both ways between the hosts of a bridged pair, IPv4 and IPv6
/// inside, and what the counters must show.
fn pair_streams(lab: &Lab, p: &Pair) {
    let (a, b) = (p.a, p.b);
    for (i, dest) in [(1u8, p.ip4(2)), (2, p.ip4(1)), (1, p.ip6(2))] {
        let r = lab.wait_ping(p.host(i), &dest, Duration::from_secs(10));
        assert!(r.all_answered(), "no path before the streams:\n{r}");
    }
    // The refresher reads the neighbours the pings made at least once a second.
    std::thread::sleep(Duration::from_millis(1200));
    stream::both_ways_v4_v6(lab, p, Amount::Bytes(STREAM));
    for h in [a, b] {
        assert_eq!(csum_errors(lab, h), 0, "TCP checksum errors on {h:?}");
        let s = lab.stats(h);
        let o = overlay(&s, "ov0");
        let off = &o.offload;
        eprintln!("{h:?}: {off:?}");
        assert!(
            off.tunnel_gso_sends > 100 && off.tunnel_gso_segments > 10 * off.tunnel_gso_sends,
            "{h:?}: the super-frames did not leave whole through the underlay TAP device: {off:?}"
        );
        assert!(
            off.tunnel_gso_sends * 2 > off.tso_frames,
            "{h:?}: most super-frames took the socket path: {off:?}"
        );
        // The peer's super-frames arrive as one datagram each, written
        // whole to the TAP device (`rx_super`), not coalesced.
        assert_no_data_drops(o);
    }
}

#[test]
#[ignore = "needs root and network namespaces: run `sudo make test`"]
fn tcp_streams_between_two_overlayds_leave_whole_through_the_underlay_tap() {
    let mut lab = Lab::new("tunnel_gso_pair");
    lab.overlayd_args(ARGS);
    let p = lab.files_pair_bridged(64, 6464, "vxlan");
    if supported(&lab, &[p.a, p.b]) {
        pair_streams(&lab, &p);
    }
}

#[test]
#[ignore = "needs root and network namespaces: run `sudo make test`"]
fn tcp_streams_over_geneve_leave_whole_through_the_underlay_tap_too() {
    let mut lab = Lab::new("tunnel_gso_geneve");
    lab.overlayd_args(ARGS);
    let p = lab.files_pair_bridged(65, 6565, "geneve");
    if supported(&lab, &[p.a, p.b]) {
        pair_streams(&lab, &p);
    }
}

#[test]
#[ignore = "needs root and network namespaces: run `sudo make test`"]
fn a_kernel_vxlan_peer_receives_streams_sent_through_the_underlay_tap() {
    let mut lab = Lab::new("tunnel_gso_kernel");
    lab.overlayd_args(ARGS);
    let n = 66;
    let (a, b) = lab.kernel_vxlan_pair_bridged(n);
    if !supported(&lab, &[a]) {
        return;
    }
    std::thread::sleep(Duration::from_millis(1200));
    let at = |i: u8, port: u16| SocketAddr::new(format!("192.168.{n}.{i}").parse().unwrap(), port);
    stream(&lab, a, b, at(2, 5001), 5);
    stream(&lab, b, a, at(1, 5002), 6);
    let v6 = SocketAddr::new(format!("fd{n}::2").parse().unwrap(), 5003);
    stream(&lab, a, b, v6, 7);
    for h in [a, b] {
        assert_eq!(csum_errors(&lab, h), 0, "TCP checksum errors on {h:?}");
    }
    let s = lab.stats(a);
    let o = overlay(&s, "ov0");
    eprintln!("{:?}", o.offload);
    assert!(
        o.offload.tunnel_gso_sends > 100,
        "overlayd did not send through the underlay TAP device: {:?}",
        o.offload
    );
    assert_no_data_drops(o);
}

#[test]
#[ignore = "needs root and network namespaces: run `sudo make test`"]
fn a_flow_that_changes_way_mid_stream_keeps_its_order() {
    let mut lab = Lab::new("tunnel_gso_switch");
    lab.overlayd_args(ARGS);
    let p = lab.files_pair_bridged(67, 6767, "vxlan");
    if !supported(&lab, &[p.a, p.b]) {
        return;
    }
    let r = lab.wait_ping(p.a, &p.ip4(2), Duration::from_secs(10));
    assert!(r.all_answered(), "no path before the stream:\n{r}");
    std::thread::sleep(Duration::from_millis(1200));
    let (reorder0, retrans0) = tcp_disorder(&lab, p.a);
    let lab = &lab;
    let addr = SocketAddr::new(p.ip4(2).parse().unwrap(), 5400);
    let done = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        // Host a forgets b's MAC every 300 ms: the flow's super-frames go
        // through the sockets until the kernel has resolved it again and
        // the cache has read it, then through the underlay TAP again.
        s.spawn(|| {
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(300));
                lab.ip(p.a, &["neigh", "flush", "dev", "br0"]);
            }
        });
        stream::stream(lab, p.a, p.b, addr, 40, Amount::For(Duration::from_secs(6)));
        done.store(true, std::sync::atomic::Ordering::Relaxed);
    });
    let (reorder1, retrans1) = tcp_disorder(lab, p.a);
    let s = lab.stats(p.a);
    let o = overlay(&s, "ov0");
    let off = &o.offload;
    eprintln!(
        "{off:?}; sender: {} reordering events, {} segments retransmitted",
        reorder1 - reorder0,
        retrans1 - retrans0
    );
    assert!(
        off.tunnel_gso_sends > 100 && off.tso_frames > off.tunnel_gso_sends + 10,
        "the flow did not take both ways: {off:?}"
    );
    assert_eq!(
        reorder1 - reorder0,
        0,
        "the flow was reordered ({} retransmissions)",
        retrans1 - retrans0
    );
    assert_eq!(csum_errors(lab, p.b), 0, "TCP checksum errors on host b");
    assert_no_data_drops(o);
}
