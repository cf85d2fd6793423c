//! The data path's offloads end to end. A guest's TCP hands overlayd
//! super-frames of up to 64 KiB (TSO on the TAP device); overlayd cuts them
//! into MTU-sized segments with their checksums, sends them in GSO batches,
//! and the receiving overlayd coalesces the segments back (GRO) before
//! writing them to its TAP device. Each test moves TCP streams of known
//! content through the overlay and checks every byte, that the receiving
//! kernels counted no checksum error, and that the offloads were really
//! used — between two overlayd hosts, over IPv4 and IPv6, in VXLAN and
//! in Geneve (whose datagrams are batched the same way), and between
//! overlayd and a kernel VXLAN peer with and without offloads — and spread
//! over overlayd's forwarding threads (multi-queue TAP, `SO_REUSEPORT`).

use overlay_api::OverlayStats;
use overlay_tests::snapshot::overlay;
use overlay_tests::stream::{self, csum_errors, Amount};
use overlay_tests::{Daemon, Host, Lab, Pair};
use std::net::SocketAddr;
use std::time::Duration;

/// Bytes each stream carries.
const STREAM: usize = 48 << 20;

/// Sends STREAM bytes from `client` to a listener on `server` at `addr`
/// and checks every byte on arrival.
fn stream(lab: &Lab, client: Host, server: Host, addr: SocketAddr, seed: u64) {
    stream::stream(lab, client, server, addr, seed, Amount::Bytes(STREAM));
}

/// No frame of the streams was lost inside overlayd.
fn assert_no_data_drops(o: &OverlayStats) {
    stream::assert_no_data_drops(o, &[]);
}

#[test]
#[ignore = "needs root and network namespaces: run `sudo make test`"]
fn tcp_streams_between_two_overlayd_hosts_use_tso_gso_and_gro() {
    let mut lab = Lab::new("offload_pair");
    let p = lab.files_pair(61, 6161);
    pair_streams(&lab, &p, true);
}

#[test]
#[ignore = "needs root and network namespaces: run `sudo make test`"]
fn tcp_streams_over_geneve_use_tso_gso_and_gro_too() {
    let mut lab = Lab::new("offload_geneve");
    let p = lab.files_pair_encap(62, 6262, "geneve");
    pair_streams(&lab, &p, true);
}

#[test]
#[ignore = "needs root and network namespaces: run `sudo make test`"]
fn tcp_streams_over_nvgre_raw_sockets_without_gso() {
    let mut lab = Lab::new("offload_nvgre");
    let p = lab.files_pair_encap(63, 6363, "nvgre");
    pair_streams(&lab, &p, false);
}

/// Four streams between the hosts of a pair, both ways over IPv4 and IPv6,
/// every offload used (but GSO where the module's socket has none: NVGRE's
/// raw sockets send one packet per call) and no checksum error or data
/// drop on either side.
fn pair_streams(lab: &Lab, p: &Pair, gso: bool) {
    let (a, b) = (p.a, p.b);
    for (i, dest) in [(1u8, p.ip4(2)), (2, p.ip6(1))] {
        let r = lab.wait_ping(p.host(i), &dest, Duration::from_secs(10));
        assert!(r.all_answered(), "no path before the streams:\n{r}");
    }
    stream::both_ways_v4_v6(lab, p, Amount::Bytes(STREAM));

    for h in [a, b] {
        assert_eq!(csum_errors(lab, h), 0, "TCP checksum errors on {h:?}");
        let s = lab.stats(h);
        let o = &overlay(&s, "ov0").offload;
        // Each host sent two streams and received two.
        assert!(
            o.tso_frames > 100 && o.tso_segments > 10 * o.tso_frames,
            "{h:?}: TCP super-frames were not cut in overlayd: {o:?}"
        );
        if gso {
            assert!(
                o.gso_sends > 100 && o.gso_datagrams > 10 * o.gso_sends,
                "{h:?}: segments did not leave in GSO batches: {o:?}"
            );
        } else {
            assert_eq!(o.gso_sends, 0, "{h:?}: GSO on a raw socket? {o:?}");
        }
        assert!(
            // Without GSO the peer's segments come a few per receive call,
            // so fewer of them can be coalesced at once.
            o.gro_frames > 100 && o.gro_segments > if gso { 10 } else { 2 } * o.gro_frames,
            "{h:?}: received segments were not coalesced: {o:?}"
        );
        assert_no_data_drops(overlay(&s, "ov0"));
    }
}

#[test]
#[ignore = "needs root and network namespaces: run `sudo make test`"]
fn tcp_streams_with_a_kernel_vxlan_peer_with_and_without_offloads() {
    let mut lab = Lab::new("offload_kernel");
    let n = 62;
    let (a, b) = lab.kernel_vxlan_pair(n);
    let at = |i: u8, port: u16| SocketAddr::new(format!("192.168.{n}.{i}").parse().unwrap(), port);
    stream(&lab, a, b, at(2, 5001), 5);
    stream(&lab, b, a, at(1, 5002), 6);
    let s = lab.stats(a);
    let o = &overlay(&s, "ov0").offload;
    assert!(
        o.tso_frames > 100 && o.gso_sends > 100,
        "overlayd did not use TSO/GSO towards the kernel peer: {o:?}"
    );
    assert!(
        o.gro_frames > 100,
        "overlayd did not coalesce what the kernel peer sent: {o:?}"
    );

    // The kernel peer without any offload: it sends and takes one plain
    // datagram at a time and checks every checksum in software.
    for (dev, feats) in [
        (
            "ul0",
            &[
                "tx", "off", "sg", "off", "tso", "off", "gso", "off", "gro", "off",
            ][..],
        ),
        (
            "vx0",
            &[
                "tx", "off", "sg", "off", "tso", "off", "gso", "off", "gro", "off",
            ][..],
        ),
    ] {
        let out = lab.exec(b, "ethtool", [&["-K", dev][..], feats].concat());
        assert!(
            out.status.success(),
            "ethtool -K {dev} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    stream(&lab, a, b, at(2, 5003), 7);
    stream(
        &lab,
        b,
        a,
        SocketAddr::new(format!("fd{n}::1").parse().unwrap(), 5004),
        8,
    );
    for h in [a, b] {
        assert_eq!(csum_errors(&lab, h), 0, "TCP checksum errors on {h:?}");
    }
    assert_no_data_drops(overlay(&lab.stats(a), "ov0"));
}

/// Counts, per thread name, the frames each thread encapsulated and
/// received (one per segment, as the counters count them).
const PER_THREAD: &str = r#"
BEGIN { printf("counting; Hit Ctrl-C to end.\n"); }
usdt:@OVERLAYD@:overlay:encap { @encap[comm] = count(); }
usdt:@OVERLAYD@:overlay:rx { @rx[comm] = count(); }
"#;

/// `@MAP[thread]: N` lines of a finished trace, as (thread, N).
fn per_thread(out: &str, map: &str) -> Vec<(String, u64)> {
    let open = format!("@{map}[");
    out.lines()
        .filter_map(|l| {
            let (k, v) = l.trim().strip_prefix(&open)?.split_once("]: ")?;
            Some((k.to_string(), v.trim().parse().ok()?))
        })
        .collect()
}

#[test]
#[ignore = "needs root, network namespaces and bpftrace: run `sudo make test`"]
fn streams_spread_over_the_forwarding_threads() {
    let mut lab = Lab::new("offload_workers");
    lab.overlayd_args(&["--workers", "3"]);
    let p = lab.files_pair(57, 5757);
    for h in [p.a, p.b] {
        let out = lab.exec(h, "ls", ["/sys/class/net/ov0/queues"]);
        let queues = String::from_utf8_lossy(&out.stdout).into_owned();
        let tx = queues.split_whitespace().filter(|q| q.starts_with("tx-"));
        assert_eq!(tx.count(), 3, "{h:?}: ov0 should have 3 queues:\n{queues}");
        let pid = lab.pid(h, Daemon::Overlayd).expect("overlayd runs");
        let mut threads: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/task"))
            .expect("overlayd's threads")
            .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
            .map(|c| c.trim().to_string())
            .collect();
        threads.sort();
        for w in ["worker-1", "worker-2"] {
            assert!(threads.iter().any(|t| t == w), "{h:?}: no {w}: {threads:?}");
        }
    }
    let r = lab.wait_ping(p.a, &p.ip4(2), Duration::from_secs(10));
    assert!(r.all_answered(), "no path before the streams:\n{r}");
    let ta = lab.bpftrace(p.a, Daemon::Overlayd, "threads-a", PER_THREAD);
    let tb = lab.bpftrace(p.b, Daemon::Overlayd, "threads-b", PER_THREAD);
    let before = [lab.stats(p.a), lab.stats(p.b)];
    // Eight flows (one after the other): the kernel spreads them over the
    // TAP queues on host a and over the mux sockets on host b.
    for i in 0..8u16 {
        let addr = SocketAddr::new(p.ip4(2).parse().unwrap(), 5100 + i);
        stream(&lab, p.a, p.b, addr, 10 + u64::from(i));
    }
    std::thread::sleep(Duration::from_millis(500));
    let after = [lab.stats(p.a), lab.stats(p.b)];
    let (ta, tb) = (ta.finish(), tb.finish());
    eprintln!("---- host a ----\n{ta}\n---- host b ----\n{tb}");
    assert_eq!(csum_errors(&lab, p.b), 0, "TCP checksum errors on host b");
    for s in &after {
        assert_no_data_drops(overlay(s, "ov0"));
    }
    let (a0, a1) = (overlay(&before[0], "ov0"), overlay(&after[0], "ov0"));
    let (b0, b1) = (overlay(&before[1], "ov0"), overlay(&after[1], "ov0"));
    for (what, counts, delta) in [
        (
            "host a encapsulated",
            per_thread(&ta, "encap"),
            a1.tx_frames - a0.tx_frames,
        ),
        (
            "host b received",
            per_thread(&tb, "rx"),
            b1.rx_frames - b0.rx_frames,
        ),
    ] {
        let busy: Vec<_> = counts.iter().filter(|(_, n)| *n > 1000).collect();
        assert!(
            busy.len() >= 2,
            "{what} on one thread only: {counts:?} (the streams were not spread)"
        );
        // Every frame a thread counted reached the overlay's counters.
        let total: u64 = counts.iter().map(|(_, n)| n).sum();
        assert_eq!(
            total, delta,
            "{what} {total} frames by the probes, {delta} by the counters: {counts:?}"
        );
    }
}
