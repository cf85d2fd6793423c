//! What the USDT probes cost the data path.
//!
//! Two identical two-host overlays (files plugin, VXLAN over a veth pair)
//! run side by side in their own namespaces: one with overlayd built with
//! its probes (the default), one with overlayd built without them
//! (`--no-default-features --features capture`). The same iperf3 TCP test alternates between
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

mod common;

use common::{alternate, measured, side, CostNames, Guard, Side};
use overlay_tests::{env_num, Daemon};
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};

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
    let mut on = side("probe-cost-on", &probes_dir, 41);
    let mut off = side("probe-cost-off", &noprobes_dir, 42);
    let names = CostNames {
        columns: ["disabled", "no-probes", "bpftrace"],
        keys: ["probes_disabled", "no_probes", "bpftrace_attached"],
        ratio_keys: ["disabled_over_none", "traced_over_disabled"],
        ratio_labels: [
            "probes compiled in, disabled / no probes",
            "bpftrace attached (tx, encap, rx, target-hit) / disabled",
        ],
        file: "probe-cost.json",
    };
    alternate(&names, &mut on, &mut off, |on| {
        let (a, b) = (on.a, on.b);
        let _ta = trace(on, a);
        let _tb = trace(on, b);
        measured(on, env_num("SECS", 5))
    });
}
