//! A MAC flood: a guest sends a million frames, each to a new destination
//! MAC, while varpd is gone (nothing answers, everything queues). overlayd
//! keeps its memory bounded — pending entries stop at 16 MiB of memory all
//! together, the table stops growing — counts every refused frame as
//! `queue-overflow`, and serves again once varpd is back.

use overlay_tests::snapshot::overlay;
use overlay_tests::{Daemon, Lab, PacketSocket};
use std::time::Duration;

/// Resident memory of process `pid`, in KiB (VmRSS).
fn rss_kib(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("overlayd's status");
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("a VmRSS line")
}

#[test]
#[ignore = "needs root and network namespaces: run `sudo make test`"]
fn a_million_new_macs_cost_bounded_memory_and_are_counted() {
    let mut lab = Lab::new("mac_flood");
    let p = lab.files_pair(44, 4444);
    lab.stop(p.a, Daemon::Varpd);
    lab.wait_linked(p.a, false);
    let pid = lab.pid(p.a, Daemon::Overlayd).expect("overlayd runs");
    let rss_before = rss_kib(pid);
    let tap_before: u64 = {
        let o = lab.exec(p.a, "cat", ["/sys/class/net/ov0/statistics/tx_packets"]);
        String::from_utf8_lossy(&o.stdout)
            .trim()
            .parse()
            .expect("ov0's tx_packets")
    };
    let before = lab.stats(p.a);

    // 1,000,000 minimum-size frames from host 1's MAC, each to a new
    // unicast destination 06:xx:xx:xx:xx:xx.
    const FLOOD: u32 = 1_000_000;
    let src: Vec<u8> = p
        .mac(1)
        .split(':')
        .map(|b| u8::from_str_radix(b, 16).unwrap())
        .collect();
    let sent = lab.in_ns(p.a, || {
        let sock = PacketSocket::open("ov0");
        let mut f = vec![0u8; 60];
        f[6..12].copy_from_slice(&src);
        f[12..14].copy_from_slice(&0x88b5u16.to_be_bytes()); // local experimental
        let mut sent = 0u32;
        for i in 0..FLOOD {
            f[0] = 0x06;
            f[1] = 0;
            f[2..6].copy_from_slice(&i.to_be_bytes());
            // The TAP's queue is short; a refused frame is sent again.
            while !sock.send(&f) {
                std::thread::sleep(Duration::from_micros(50));
            }
            sent += 1;
        }
        sent
    });
    assert_eq!(sent, FLOOD);

    // The TAP device's queue is short: the kernel drops what overlayd is
    // too slow to read (ov0's tx_dropped). Every frame overlayd did read
    // (ov0's tx_packets) is a miss that queued, or counted as a drop.
    let tap = |what: &str| -> u64 {
        let o = lab.exec(
            p.a,
            "cat",
            [format!("/sys/class/net/ov0/statistics/{what}")],
        );
        String::from_utf8_lossy(&o.stdout)
            .trim()
            .parse()
            .unwrap_or_else(|_| {
                panic!(
                    "reading ov0's {what}: {}",
                    String::from_utf8_lossy(&o.stderr)
                )
            })
    };
    let counted = |s: &overlay_api::StatsSnapshot| {
        let o = overlay(s, "ov0");
        o.tx_frames + o.misses + o.drops.values().sum::<u64>()
    };
    let mut last = counted(&lab.stats(p.a));
    loop {
        std::thread::sleep(Duration::from_millis(500));
        let now = counted(&lab.stats(p.a));
        if now == last {
            break;
        }
        last = now;
    }
    let (read, kernel_dropped) = (tap("tx_packets") - tap_before, tap("tx_dropped"));
    let s = lab.stats(p.a);
    let o = overlay(&s, "ov0");
    let overflow = o.drops.get("queue-overflow").copied().unwrap_or(0);
    let rss_after = rss_kib(pid);
    eprintln!(
        "flood of {FLOOD}: overlayd read {read} (the TAP queue dropped {kernel_dropped}), \
         misses {}, queue-overflow {overflow}, entries {}, RSS {rss_before} -> {rss_after} KiB",
        o.misses, o.table_entries
    );
    assert!(
        counted(&s).abs_diff(counted(&before) + read) <= 16,
        "overlayd read {read} frames but counted {} of them: {o:#?}",
        counted(&s) - counted(&before)
    );
    // The pending limit: 16 MiB of memory, each new entry of one 70-byte
    // queued copy (60 + the 10-byte offload header) costing 70 + 64 (per
    // frame) + 256 (per entry): at most 43,018 entries; the rest refused.
    let most = (16u64 << 20) / (70 + 64 + 256);
    assert!(
        o.table_entries == o.misses && o.misses <= most && o.misses >= most * 9 / 10,
        "the table should fill to the pending limit and stop: {o:#?}"
    );
    assert!(
        overflow + o.misses + 16 >= read,
        "the refused frames were not counted: {o:#?}"
    );
    assert!(
        rss_after < rss_before + 64 * 1024,
        "overlayd grew from {rss_before} to {rss_after} KiB"
    );
    assert!(lab.alive(p.a, Daemon::Overlayd), "overlayd died");

    // varpd returns: the files plugin answers the flood's MACs with drops,
    // and the overlay serves its real peer again.
    lab.start_varpd(p.a);
    lab.wait_linked(p.a, true);
    // Relinked, overlayd asks again for every pending MAC, and again every
    // 3 s while they stay unanswered: the event loop must keep answering
    // requests meanwhile (the retry used to walk every outstanding lookup
    // for each pending MAC: ~10^9 steps, seconds of silence).
    let mut slowest = Duration::ZERO;
    let t = std::time::Instant::now();
    while t.elapsed() < Duration::from_secs(4) {
        let t0 = std::time::Instant::now();
        lab.stats(p.a);
        slowest = slowest.max(t0.elapsed());
        std::thread::sleep(Duration::from_millis(50));
    }
    eprintln!("slowest stats request during the retries: {slowest:.2?}");
    assert!(
        slowest < Duration::from_millis(100),
        "the event loop answered a request only after {slowest:.2?} during the retries"
    );
    let r = lab.wait_ping(p.a, &p.ip4(2), Duration::from_secs(20));
    assert!(r.all_answered(), "no traffic after the flood:\n{r}");
}
