//! Soak: two hosts on the files plugin carry a steady ping (every 50 ms,
//! both address families in turn) while host 1's varpd is restarted, its
//! overlayd is restarted (persistent overlays: the TAP device stays), and
//! its target table is flushed, over and over, for SOAK_SECS (default 60).
//! Afterwards: no echo request was lost outside the windows of those
//! events (each from its start to 3 s after its end), and the daemons that
//! ran throughout did not grow.

use overlay_tests::{env_num, Daemon, Host, Lab};
use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How long after an event a loss is still the event's.
const GRACE: Duration = Duration::from_secs(3);
/// ping's interval.
const INTERVAL: f64 = 0.05;

/// Resident memory of process `pid`, in KiB (VmRSS).
fn rss_kib(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("a daemon's status");
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("a VmRSS line")
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs_f64()
}

/// A `ping -D -O` that is killed if the test fails first.
struct Pinger(Option<Child>);

impl Pinger {
    fn start(lab: &Lab, h: Host, dest: &str, secs: usize) -> Pinger {
        let child = Command::new("ip")
            .args(["netns", "exec", lab.ns(h), "ping", "-D", "-O", "-n"])
            .args(["-i", &INTERVAL.to_string(), "-W", "2"])
            .args(["-w", &(secs + 2).to_string(), dest])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting ping");
        Pinger(Some(child))
    }

    fn finish(mut self) -> String {
        let mut c = self.0.take().expect("finished once");
        let mut out = String::new();
        c.stdout
            .take()
            .expect("piped")
            .read_to_string(&mut out)
            .expect("ping's output");
        let _ = c.wait();
        out
    }
}

impl Drop for Pinger {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The echo requests that never got a reply, each with the time it was
/// sent (`-O` says "no answer yet" when the next one goes out).
fn lost(out: &str) -> Vec<(u32, f64)> {
    let ts = |l: &str| -> Option<f64> { l.strip_prefix('[')?.split(']').next()?.parse().ok() };
    let seq = |l: &str| -> Option<u32> {
        l.split("icmp_seq=")
            .nth(1)?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    };
    let answered: std::collections::HashSet<u32> = out
        .lines()
        .filter(|l| l.contains(" bytes from "))
        .filter_map(seq)
        .collect();
    out.lines()
        .filter(|l| l.contains("no answer yet"))
        .filter_map(|l| Some((seq(l)?, ts(l)? - INTERVAL)))
        .filter(|(s, _)| !answered.contains(s))
        .collect()
}

#[test]
#[ignore = "needs root and network namespaces: run `sudo make test`"]
fn restarts_and_flushes_lose_nothing_outside_their_windows() {
    let secs = env_num("SOAK_SECS", 60);
    let mut lab = Lab::new("soak");
    let p = lab.files_pair(46, 4646);
    let warm = lab.wait_ping(p.a, &p.ip4(2), Duration::from_secs(10));
    assert!(warm.all_answered(), "{warm}");
    let warm = lab.wait_ping(p.a, &p.ip6(2), Duration::from_secs(10));
    assert!(warm.all_answered(), "{warm}");

    // Host 2 runs throughout: its daemons must not grow.
    let steady = [Daemon::Overlayd, Daemon::Varpd].map(|d| lab.pid(p.b, d).expect("running"));
    let rss_start = steady.map(rss_kib);

    let pings = [
        Pinger::start(&lab, p.a, &p.ip4(2), secs),
        Pinger::start(&lab, p.a, &p.ip6(2), secs),
    ];
    let end = Instant::now() + Duration::from_secs(secs as u64);
    let mut windows: Vec<(&str, f64, f64)> = Vec::new();
    let mut rss_mid = None;
    let mut round = 0;
    while Instant::now() < end {
        std::thread::sleep(Duration::from_secs(2));
        let t0 = now();
        let what = match round % 3 {
            0 => {
                lab.stop(p.a, Daemon::Varpd);
                lab.start_varpd(p.a);
                lab.wait_linked(p.a, true);
                "varpd restart"
            }
            1 => {
                lab.stop(p.a, Daemon::Overlayd);
                lab.start_overlayd(p.a);
                lab.wait_linked(p.a, true);
                "overlayd restart"
            }
            _ => {
                lab.ovadm_ok(p.a, ["modify-overlay", "-f", "ov0"]);
                "table flush"
            }
        };
        windows.push((what, t0, now() + GRACE.as_secs_f64()));
        round += 1;
        if round == 3 {
            rss_mid = Some(steady.map(rss_kib));
        }
    }
    let outs = pings.map(Pinger::finish);
    let rss_end = steady.map(rss_kib);

    let mut outside = Vec::new();
    let mut inside = 0;
    for (fam, out) in ["IPv4", "IPv6"].iter().zip(&outs) {
        let sent = out.lines().filter(|l| l.contains("icmp_seq=")).count();
        assert!(sent > secs * 10, "{fam} ping hardly ran:\n{out}");
        for (seq, at) in lost(out) {
            match windows
                .iter()
                .find(|(_, a, b)| *a - INTERVAL <= at && at <= *b)
            {
                Some(_) => inside += 1,
                None => outside.push(format!("{fam} icmp_seq={seq} sent at {at:.3}")),
            }
        }
    }
    eprintln!(
        "soak {secs} s: {} events ({} rounds), {inside} requests lost inside their windows, \
         {} outside; host 2 RSS overlayd {} -> {} KiB, varpd {} -> {} KiB",
        windows.len(),
        round,
        outside.len(),
        rss_start[0],
        rss_end[0],
        rss_start[1],
        rss_end[1]
    );
    assert!(
        outside.is_empty(),
        "requests lost outside every event window {windows:?}:\n{}",
        outside.join("\n")
    );
    // Growth after the first rounds (caches warm) stays under 1 MiB.
    let base = rss_mid.unwrap_or(rss_start);
    for (i, d) in ["overlayd", "varpd"].iter().enumerate() {
        assert!(
            rss_end[i] <= base[i] + 1024,
            "host 2's {d} grew from {} to {} KiB over the soak",
            base[i],
            rss_end[i]
        );
    }
}
