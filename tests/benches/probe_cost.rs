//! What the USDT probes cost the data path.
//!
//! Two identical two-host overlays (files plugin, VXLAN over a veth pair)
//! run side by side in their own namespaces: one with overlayd built with
//! its probes (the default), one with overlayd built without them
//! (`--no-default-features`). The same iperf3 TCP test alternates between
//! them, ROUNDS times, and a third run each round goes through the probed
//! build with bpftrace attached to both overlayds counting `tx`, `encap`,
//! `rx` and `target-hit` (the per-frame probes). It prints every figure,
//! the medians, and the ratios probes-disabled/no-probes and
//! traced/probes-disabled, and writes them to `target/bench/probe-cost.json`.
//!
//! Throughput on two shared cores swings by tens of percent from run to
//! run, so each run also measures what the probes would actually cost:
//! overlayd's CPU time (user + system, from /proc, both hosts) per frame
//! it forwarded (tx + rx, from its counters). That figure is steadier.
//!
//! Run as root: `make bench-probes` (it builds the no-probes overlayd into
//! `target/noprobes` and sets `PROBE_COST_NOPROBES_DIR`). Env: ROUNDS (5),
//! SECS (5). The machines are shared and noisy: read the medians and the
//! spread, not one round.

use overlay_tests::bench::{clock_ticks_per_sec, process_ticks};
use overlay_tests::{env_num, median, Daemon, Lab};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A child process killed (and reaped) when dropped.
struct Guard(Child);

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

struct Side {
    lab: Lab,
    a: overlay_tests::Host,
    b: overlay_tests::Host,
    server_ip: String,
    _server: Guard,
}

fn side(name: &str, bin_dir: &Path, n: u8) -> Side {
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
fn cpu_ns(pid: u32) -> u64 {
    (process_ticks(pid) as f64 * 1e9 / clock_ticks_per_sec()) as u64
}

/// overlayd's CPU time and frames forwarded (tx + rx) on both hosts.
fn work(s: &mut Side) -> (u64, u64) {
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
fn measured(s: &mut Side, secs: usize) -> (f64, f64) {
    let (ns0, f0) = work(s);
    let g = iperf(s, secs);
    let (ns1, f1) = work(s);
    (
        g,
        ns1.saturating_sub(ns0) as f64 / f1.saturating_sub(f0).max(1) as f64,
    )
}

/// One iperf3 run from host a to host b, in Gbit/s.
fn iperf(s: &Side, secs: usize) -> f64 {
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

/// bpftrace attached to one overlayd, counting the per-frame probes.
fn trace(s: &mut Side, h: overlay_tests::Host) -> Guard {
    let bin = s
        .lab
        .bin("overlayd")
        .canonicalize()
        .expect("overlayd exists");
    let pid = s.lab.pid(h, Daemon::Overlayd).expect("overlayd runs");
    let p = |probe: &str| format!("usdt:{}:overlay:{probe}", bin.display());
    let prog = format!(
        "{},{},{},{} {{ @[probe] = count(); }}",
        p("tx"),
        p("encap"),
        p("rx"),
        p("target-hit")
    );
    let mut child = Command::new("bpftrace")
        .args(["-p", &pid.to_string(), "-e", &prog])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("bpftrace (install it: make deps)");
    let stdout = child.stdout.take().expect("piped");
    let mut lines = BufReader::new(stdout).lines();
    let attached = lines.next().and_then(Result::ok).unwrap_or_default();
    assert!(
        attached.starts_with("Attaching"),
        "bpftrace did not attach: {attached:?}"
    );
    std::thread::spawn(move || for _ in lines {});
    Guard(child)
}

fn main() {
    // SAFETY: geteuid(2) cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!(
            "probe_cost: skipped: needs root (network namespaces): run `sudo make bench-probes`"
        );
        return;
    }
    // Canonical, so the path bpftrace is given matches /proc/PID/exe.
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .expect("the workspace root exists");
    let probes_dir = std::env::var_os("OVERLAY_BIN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target/release"));
    let Some(noprobes_dir) = std::env::var_os("PROBE_COST_NOPROBES_DIR").map(PathBuf::from) else {
        eprintln!("probe_cost: skipped: PROBE_COST_NOPROBES_DIR is not set (run `sudo make bench-probes`)");
        return;
    };
    let (rounds, secs) = (env_num("ROUNDS", 5), env_num("SECS", 5));
    let mut on = side("probe-cost-on", &probes_dir, 41);
    let mut off = side("probe-cost-off", &noprobes_dir, 42);
    let (mut v_on, mut v_off, mut v_traced) = (Vec::new(), Vec::new(), Vec::new());
    let (mut c_on, mut c_off, mut c_traced) = (Vec::new(), Vec::new(), Vec::new());
    println!("        Gbit/s (iperf3 TCP, {secs} s)            overlayd CPU ns per frame");
    println!("round  disabled  no-probes  bpftrace        disabled  no-probes  bpftrace");
    for r in 1..=rounds {
        let ((x, cx), (y, cy)) = if r % 2 == 1 {
            let x = measured(&mut on, secs);
            (x, measured(&mut off, secs))
        } else {
            let y = measured(&mut off, secs);
            (measured(&mut on, secs), y)
        };
        let (t, ct) = {
            let (a, b) = (on.a, on.b);
            let _ta = trace(&mut on, a);
            let _tb = trace(&mut on, b);
            measured(&mut on, secs)
        };
        println!("{r:>5}  {x:>8.3}  {y:>9.3}  {t:>8.3}        {cx:>8.0}  {cy:>9.0}  {ct:>8.0}");
        v_on.push(x);
        v_off.push(y);
        v_traced.push(t);
        c_on.push(cx);
        c_off.push(cy);
        c_traced.push(ct);
    }
    let (m_on, m_off, m_t) = (median(&v_on), median(&v_off), median(&v_traced));
    let (cm_on, cm_off, cm_t) = (median(&c_on), median(&c_off), median(&c_traced));
    let ratio =
        |a: &[f64], b: &[f64]| median(&a.iter().zip(b).map(|(x, y)| x / y).collect::<Vec<_>>());
    let (r_disabled, r_traced) = (ratio(&v_on, &v_off), ratio(&v_traced, &v_on));
    let (rc_disabled, rc_traced) = (ratio(&c_on, &c_off), ratio(&c_traced, &c_on));
    println!("median {m_on:>8.3}  {m_off:>9.3}  {m_t:>8.3}        {cm_on:>8.0}  {cm_off:>9.0}  {cm_t:>8.0}");
    println!("throughput:    probes compiled in, disabled / no probes = {r_disabled:.3} (median of per-round ratios)");
    println!(
        "throughput:    bpftrace attached (tx, encap, rx, target-hit) / disabled = {r_traced:.3}"
    );
    println!("CPU per frame: probes compiled in, disabled / no probes = {rc_disabled:.3}");
    println!("CPU per frame: bpftrace attached / disabled = {rc_traced:.3}");
    let json = serde_json::json!({
        "rounds": rounds, "secs": secs,
        "gbps": { "probes_disabled": v_on, "no_probes": v_off, "bpftrace_attached": v_traced },
        "median_gbps": { "probes_disabled": m_on, "no_probes": m_off, "bpftrace_attached": m_t },
        "ratio": { "disabled_over_none": r_disabled, "traced_over_disabled": r_traced },
        "cpu_ns_per_frame": { "probes_disabled": c_on, "no_probes": c_off, "bpftrace_attached": c_traced },
        "cpu_ratio": { "disabled_over_none": rc_disabled, "traced_over_disabled": rc_traced },
    });
    let out = root.join("target/bench");
    let _ = std::fs::create_dir_all(&out);
    let path = out.join("probe-cost.json");
    match std::fs::write(
        &path,
        serde_json::to_string_pretty(&json).unwrap_or_default(),
    ) {
        Ok(()) => println!("wrote {}", path.display()),
        Err(e) => eprintln!("cannot write {}: {e}", path.display()),
    }
}
