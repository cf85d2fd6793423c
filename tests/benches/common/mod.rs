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

/// What a cost bench calls its three measurements: the feature compiled in
/// and idle, compiled out, and in use (on the compiled-in side).
pub struct CostNames {
    /// Short column titles, in that order.
    pub columns: [&'static str; 3],
    /// JSON keys, in that order.
    pub keys: [&'static str; 3],
    /// JSON keys of the two ratios: idle over compiled out, in use over idle.
    pub ratio_keys: [&'static str; 2],
    /// The two ratios as printed.
    pub ratio_labels: [&'static str; 2],
    /// The file under `target/bench`.
    pub file: &'static str,
}

/// Runs ROUNDS rounds of a cost bench: `on` (compiled in, idle) and `off`
/// (compiled out) alternate which goes first, then `in_use` measures the
/// `on` side with the feature used. Prints every round, the medians and
/// the medians of per-round ratios, and writes them to `target/bench`.
pub fn alternate(
    names: &CostNames,
    on: &mut Side,
    off: &mut Side,
    mut in_use: impl FnMut(&mut Side) -> (f64, f64),
) {
    use overlay_tests::{env_num, median};
    let (rounds, secs) = (env_num("ROUNDS", 5), env_num("SECS", 5));
    let [c0, c1, c2] = names.columns;
    println!("        Gbit/s (iperf3 TCP, {secs} s)                   overlayd CPU ns per frame");
    println!("round  {c0:>12}  {c1:>12}  {c2:>12}   {c0:>12}  {c1:>12}  {c2:>12}");
    let (mut gbps, mut cpu): ([Vec<f64>; 3], [Vec<f64>; 3]) = Default::default();
    for r in 1..=rounds {
        let ((x, cx), (y, cy)) = if r % 2 == 1 {
            let x = measured(on, secs);
            (x, measured(off, secs))
        } else {
            let y = measured(off, secs);
            (measured(on, secs), y)
        };
        let (t, ct) = in_use(on);
        println!("{r:>5}  {x:>12.3}  {y:>12.3}  {t:>12.3}   {cx:>12.0}  {cy:>12.0}  {ct:>12.0}");
        for (v, m) in gbps.iter_mut().zip([x, y, t]) {
            v.push(m);
        }
        for (v, m) in cpu.iter_mut().zip([cx, cy, ct]) {
            v.push(m);
        }
    }
    let med = |v: &[Vec<f64>; 3]| [median(&v[0]), median(&v[1]), median(&v[2])];
    let (mg, mc) = (med(&gbps), med(&cpu));
    let ratio =
        |a: &[f64], b: &[f64]| median(&a.iter().zip(b).map(|(x, y)| x / y).collect::<Vec<_>>());
    let ratios = |v: &[Vec<f64>; 3]| [ratio(&v[0], &v[1]), ratio(&v[2], &v[0])];
    let (rg, rc) = (ratios(&gbps), ratios(&cpu));
    println!(
        "median {:>11.3}  {:>12.3}  {:>12.3}   {:>12.0}  {:>12.0}  {:>12.0}",
        mg[0], mg[1], mg[2], mc[0], mc[1], mc[2]
    );
    let [l0, l1] = names.ratio_labels;
    println!(
        "throughput:    {l0} = {:.3} (median of per-round ratios)",
        rg[0]
    );
    println!("throughput:    {l1} = {:.3}", rg[1]);
    println!("CPU per frame: {l0} = {:.3}", rc[0]);
    println!("CPU per frame: {l1} = {:.3}", rc[1]);
    let [k0, k1, k2] = names.keys;
    let [q0, q1] = names.ratio_keys;
    let json = serde_json::json!({
        "rounds": rounds, "secs": secs,
        "gbps": { k0: gbps[0], k1: gbps[1], k2: gbps[2] },
        "median_gbps": { k0: mg[0], k1: mg[1], k2: mg[2] },
        "ratio": { q0: rg[0], q1: rg[1] },
        "cpu_ns_per_frame": { k0: cpu[0], k1: cpu[1], k2: cpu[2] },
        "cpu_ratio": { q0: rc[0], q1: rc[1] },
    });
    let path = overlay_tests::bench::write_result(names.file, &json);
    println!("wrote {}", path.display());
}
