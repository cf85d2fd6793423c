//! What the probe-cost and capture-cost benchmarks share: a two-host files
//! overlay with an iperf3 server, and one measured iperf3 run (Gbit/s and
//! overlayd's CPU nanoseconds per frame forwarded).

// Each benchmark uses the part it needs.
#![allow(dead_code)]

use overlay_tests::bench::{clock_ticks_per_sec, process_ticks};
use overlay_tests::{Daemon, Lab};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A child process killed (and reaped) when dropped.
pub struct Guard(pub Child);

impl Drop for Guard {
    fn drop(&mut self) {
        // SAFETY: kill(2) on the pid of a child we have not reaped.
        unsafe { libc::kill(self.0.id() as i32, libc::SIGINT) };
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One two-host overlay of a benchmark, with an iperf3 server on host b.
pub struct Side {
    pub lab: Lab,
    pub a: overlay_tests::Host,
    pub b: overlay_tests::Host,
    pub server_ip: String,
    pub _server: Guard,
}

/// A files pair numbered `n` whose daemons come from `bin_dir`.
pub fn side(name: &str, bin_dir: &Path, n: u8) -> Side {
    std::env::set_var("OVERLAY_BIN_DIR", bin_dir);
    let mut lab = Lab::new(name);
    let pair = lab.files_pair(n, 4000 + n as u32);
    let (a, b) = (pair.host(1), pair.host(2));
    let server_ip = pair.ip4(2);
    let ns = lab.ns(b).to_string();
    let server = Command::new("ip")
        .args(["netns", "exec", &ns, "iperf3", "-s", "-p", "5201"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("iperf3 -s (install iperf3: make deps)");
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        lab.wait_ping(a, &server_ip, Duration::from_secs(10))
            .all_answered(),
        "{name}: no ping over the overlay"
    );
    Side {
        lab,
        a,
        b,
        server_ip,
        _server: Guard(server),
    }
}

/// CPU time (user + system) of a process so far, in nanoseconds.
pub fn cpu_ns(pid: u32) -> u64 {
    (process_ticks(pid) as f64 * 1e9 / clock_ticks_per_sec()) as u64
}

/// overlayd's CPU time and frames forwarded (tx + rx) on both hosts.
pub fn work(s: &mut Side) -> (u64, u64) {
    let (mut ns, mut frames) = (0, 0);
    for h in [s.a, s.b] {
        ns += s.lab.pid(h, Daemon::Overlayd).map(cpu_ns).unwrap_or(0);
        let st = s.lab.stats(h);
        frames += st
            .overlays
            .iter()
            .map(|o| o.tx_frames + o.rx_frames)
            .sum::<u64>();
    }
    (ns, frames)
}

/// One iperf3 run, in Gbit/s, with overlayd's CPU nanoseconds per frame.
pub fn measured(s: &mut Side, secs: usize) -> (f64, f64) {
    let (ns0, f0) = work(s);
    let g = iperf(s, secs);
    let (ns1, f1) = work(s);
    (
        g,
        ns1.saturating_sub(ns0) as f64 / f1.saturating_sub(f0).max(1) as f64,
    )
}

/// One iperf3 run from host a to host b, in Gbit/s.
pub fn iperf(s: &Side, secs: usize) -> f64 {
    let out = s.lab.exec(
        s.a,
        "iperf3",
        [
            "-c",
            s.server_ip.as_str(),
            "-p",
            "5201",
            "-t",
            &secs.to_string(),
            "-J",
        ],
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "iperf3 output is not JSON ({e}): {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    v["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .unwrap_or_else(|| panic!("no throughput in iperf3 output: {v}"))
        / 1e9
}
