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
//! Run as root: `make bench-probes` (it builds the no-probes overlayd into
//! `target/noprobes` and sets `PROBE_COST_NOPROBES_DIR`). Env: ROUNDS (5),
//! SECS (5). The machines are shared and noisy: read the medians and the
//! spread, not one round.

use overlay_tests::{Daemon, Lab};
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
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

fn env_num(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    let n = s.len();
    if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    }
}

struct Side {
    lab: Lab,
    a: overlay_tests::Host,
    b: overlay_tests::Host,
    server_ip: String,
    _server: Guard,
}

fn side(name: &str, bin_dir: &PathBuf, n: u8) -> Side {
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
    let off = side("probe-cost-off", &noprobes_dir, 42);
    let (mut v_on, mut v_off, mut v_traced) = (Vec::new(), Vec::new(), Vec::new());
    println!(
        "round  probes-disabled  no-probes  bpftrace-attached   (Gbit/s, iperf3 TCP, {secs} s)"
    );
    for r in 1..=rounds {
        let (x, y) = if r % 2 == 1 {
            (iperf(&on, secs), iperf(&off, secs))
        } else {
            let y = iperf(&off, secs);
            (iperf(&on, secs), y)
        };
        let t = {
            let (a, b) = (on.a, on.b);
            let _ta = trace(&mut on, a);
            let _tb = trace(&mut on, b);
            iperf(&on, secs)
        };
        println!("{r:>5}  {x:>15.3}  {y:>9.3}  {t:>17.3}");
        v_on.push(x);
        v_off.push(y);
        v_traced.push(t);
    }
    let (m_on, m_off, m_t) = (median(&v_on), median(&v_off), median(&v_traced));
    let ratio =
        |a: &[f64], b: &[f64]| median(&a.iter().zip(b).map(|(x, y)| x / y).collect::<Vec<_>>());
    let (r_disabled, r_traced) = (ratio(&v_on, &v_off), ratio(&v_traced, &v_on));
    println!("median  {m_on:>14.3}  {m_off:>9.3}  {m_t:>17.3}");
    println!("probes compiled in and disabled / no probes = {r_disabled:.3} (median of per-round ratios)");
    println!("bpftrace attached (tx, encap, rx, target-hit) / disabled = {r_traced:.3}");
    let json = serde_json::json!({
        "rounds": rounds, "secs": secs,
        "gbps": { "probes_disabled": v_on, "no_probes": v_off, "bpftrace_attached": v_traced },
        "median_gbps": { "probes_disabled": m_on, "no_probes": m_off, "bpftrace_attached": m_t },
        "ratio": { "disabled_over_none": r_disabled, "traced_over_disabled": r_traced },
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
