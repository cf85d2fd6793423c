//! Lookup latency, files against etcd, and how fast a moved guest is
//! followed on etcd.
//!
//! Lookup latency: the time from a target-table miss to varpd's answer.
//! Each round flushes host 1's target table (`modify-overlay -f`), then
//! pings host 2 twice: the first echo waits for the lookup, the second
//! does not; the difference of their round-trip times is the lookup. The
//! same rounds also read overlayd's own lookup-latency histogram (its
//! median bucket). Two labs side by side, one on the files plugin, one on
//! the etcd plugin with a real etcd; both answer from memory (the files
//! mapping, the etcd plugin's watched mirror), so the ratio is what the
//! etcd plugin costs on the hot miss path.
//!
//! Migration: a guest (a VNIC in its own namespace) moves back and forth
//! between hosts 2 and 3 of the etcd lab, MOVES times; each time, the clock
//! runs from the guest's removal on the old host until host 1's one-echo
//! pings (1 s timeout each) reach it again at the new one.
//!
//! Run as root: `cargo bench -p overlay-tests --bench lookup_latency`
//! (release binaries built first, as for the tests). Env: ROUNDS (30),
//! MOVES (5).

use overlay_api::{HistBucket, StatsSnapshot};
use overlay_tests::{env_num, median, Host, Lab};
use std::time::{Duration, Instant};

/// The RTT of one echo, in ms, if it was answered.
fn rtt_ms(lab: &Lab, h: Host, dest: &str) -> Option<f64> {
    let p = lab.ping(h, dest, &["-c", "1", "-W", "1"]);
    if !p.all_answered() {
        return None;
    }
    // The summary (the lab's pings are quiet): "rtt min/avg/max/mdev = a/b/c/d ms".
    let line = p.output.lines().find(|l| l.contains("min/avg/max"))?;
    let t = line.split("= ").nth(1)?.split('/').nth(1)?;
    t.parse().ok()
}

fn histogram(s: &StatsSnapshot) -> Vec<HistBucket> {
    s.overlays
        .iter()
        .find(|o| o.name == "ov0")
        .map(|o| o.lookup_latency.clone())
        .unwrap_or_default()
}

/// The upper bound of the bucket holding the median of what was added
/// between two histograms.
fn median_bucket(before: &[HistBucket], after: &[HistBucket]) -> Option<u64> {
    let delta: Vec<(u64, u64)> = after
        .iter()
        .map(|a| {
            let b = before
                .iter()
                .find(|b| b.le_ns == a.le_ns)
                .map_or(0, |b| b.count);
            (a.le_ns, a.count.saturating_sub(b))
        })
        .collect();
    let total: u64 = delta.iter().map(|d| d.1).sum();
    let mut seen = 0;
    for (le, n) in delta {
        seen += n;
        if total > 0 && seen * 2 >= total {
            return Some(le);
        }
    }
    None
}

/// Lookup latency over `rounds` on a lab whose host 1 reaches `dest` on
/// host `h2`: (median ping-derived ms, median histogram bucket ns).
fn lookups(lab: &Lab, h1: Host, dest: &str, rounds: usize) -> (f64, Option<u64>) {
    assert!(
        lab.wait_ping(h1, dest, Duration::from_secs(15))
            .all_answered(),
        "{dest} unreachable"
    );
    let before = histogram(&lab.stats(h1));
    let mut d = Vec::new();
    for _ in 0..rounds {
        lab.ovadm_ok(h1, ["modify-overlay", "-f", "ov0"]);
        let (Some(cold), Some(warm)) = (rtt_ms(lab, h1, dest), rtt_ms(lab, h1, dest)) else {
            continue;
        };
        d.push((cold - warm).max(0.0));
    }
    let after = histogram(&lab.stats(h1));
    (median(&d), median_bucket(&before, &after))
}

fn main() {
    // SAFETY: geteuid(2) cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("lookup_latency: needs root (network namespaces); skipped");
        return;
    }
    let rounds = env_num("ROUNDS", 30);
    let moves = env_num("MOVES", 5);

    // files: the two-host pair of the tests.
    let (files_ms, files_hist) = {
        let mut lab = Lab::new("bench_lookup_files");
        let p = lab.files_pair(66, 6600);
        lookups(&lab, p.a, &p.ip4(2), rounds)
    };

    // etcd: three hosts and one etcd member on a switch.
    let mut lab = Lab::new("bench_lookup_etcd");
    let hosts: Vec<Host> = (1..=3).map(|i| lab.add_host(&format!("h{i}"))).collect();
    let e = lab.add_host("etcd");
    let mut all = hosts.clone();
    all.push(e);
    lab.switch("10.67.0", &all);
    let etcd = lab.etcd(&[e], &["10.67.0.4"]);
    for (i, &h) in hosts.iter().enumerate() {
        let i = i + 1;
        lab.overlay_host(h);
        lab.create_etcd_overlay(
            h,
            "ov0",
            6700,
            &format!("10.67.0.{i}"),
            &etcd.endpoints(),
            "",
        );
        lab.guest_addr(
            h,
            "ov0",
            &format!("02:67:00:00:00:{i:02}"),
            &[&format!("192.168.67.{i}/24")],
        );
    }
    let (etcd_ms, etcd_hist) = lookups(&lab, hosts[0], "192.168.67.2", rounds);

    // Migration.
    let g = lab.add_host("guest");
    let gmac = "02:67:00:00:00:50";
    let attach = |lab: &Lab, h: Host| lab.attach_guest(h, g, "vnicg", gmac, &["192.168.67.50/24"]);
    attach(&lab, hosts[1]);
    assert!(lab
        .wait_ping(hosts[0], "192.168.67.50", Duration::from_secs(15))
        .all_answered());
    let mut took = Vec::new();
    let mut at = 1;
    for _ in 0..moves {
        let to = if at == 1 { 2 } else { 1 };
        lab.ovadm_ok(hosts[at], ["delete-vnic", "vnicg"]);
        let t0 = Instant::now();
        attach(&lab, hosts[to]);
        while rtt_ms(&lab, hosts[0], "192.168.67.50").is_none() {
            assert!(
                t0.elapsed() < Duration::from_secs(30),
                "the guest was never found"
            );
        }
        took.push(t0.elapsed().as_secs_f64() * 1000.0);
        at = to;
    }

    let hist = |h: Option<u64>| h.map_or("-".into(), |n| format!("<= {} us", n / 1000));
    println!("lookup latency (miss to answer; median of {rounds} rounds):");
    println!(
        "  files: {files_ms:.3} ms (ping-derived), overlayd histogram median {}",
        hist(files_hist)
    );
    println!(
        "  etcd:  {etcd_ms:.3} ms (ping-derived), overlayd histogram median {}",
        hist(etcd_hist)
    );
    if files_ms > 0.0 {
        println!("  ratio etcd/files: {:.2}", etcd_ms / files_ms);
    }
    let max = took.iter().cloned().fold(0.0, f64::max);
    println!(
        "migration convergence (guest removed on the old host -> reached on the new; {moves} moves): median {:.0} ms, max {max:.0} ms, all {:?}",
        median(&took),
        took.iter().map(|t| t.round() as u64).collect::<Vec<_>>()
    );
}
