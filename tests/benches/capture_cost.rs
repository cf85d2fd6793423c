//! What the capture point (`ovsnoop --capture`) costs the data path.
//!
//! Two identical two-host overlays run side by side in their own
//! namespaces: one with overlayd as built by default (the capture point
//! compiled in: one relaxed load per frame while no capture runs), one
//! with overlayd built without it (`--no-default-features --features
//! probes`: the load compiled out, probes as usual). The same iperf3 TCP
//! test alternates between them, ROUNDS times; a third run each round goes
//! through the default build with a capture running (`ovsnoop --capture
//! --drops-only`, the way an operator watches drops in production: every
//! frame pays the filter check, only drops are copied). It prints every
//! figure, the medians and the ratios, and writes them to
//! `target/bench/capture-cost.json`. As in the probe-cost benchmark, the
//! steadier figure is overlayd's CPU time per frame forwarded.
//!
//! Run as root: `make bench-capture` (it builds the capture-less overlayd
//! into `target/nocapture` and sets `CAPTURE_COST_BASELINE_DIR`). Env:
//! ROUNDS (5), SECS (5).

mod common;

use common::{alternate, measured, side, CostNames, Guard};
use overlay_tests::env_num;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

fn main() {
    // SAFETY: geteuid(2) cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!(
            "capture_cost: skipped: needs root (network namespaces): run `sudo make bench-capture`"
        );
        return;
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .expect("the workspace root exists");
    let built = std::env::var_os("OVERLAY_BIN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target/release"));
    let Some(baseline) = std::env::var_os("CAPTURE_COST_BASELINE_DIR").map(PathBuf::from) else {
        eprintln!("capture_cost: skipped: CAPTURE_COST_BASELINE_DIR is not set (run `sudo make bench-capture`)");
        return;
    };
    let mut on = side("capture-cost-in", &built, 45);
    let mut off = side("capture-cost-out", &baseline, 46);
    let names = CostNames {
        columns: ["point-off", "compiled-out", "capturing"],
        keys: ["point_off", "compiled_out", "capturing_drops"],
        ratio_keys: ["off_over_compiled_out", "capturing_over_off"],
        ratio_labels: [
            "capture point compiled in, off / compiled out",
            "capturing drops / point off",
        ],
        file: "capture-cost.json",
    };
    alternate(&names, &mut on, &mut off, |on| {
        let snoops: Vec<Guard> = [on.a, on.b]
            .iter()
            .map(|h| {
                let child = Command::new(built.join("ovsnoop"))
                    .args(["--capture", "--drops-only", "--run-dir"])
                    .arg(on.lab.run_dir(*h))
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .expect("ovsnoop (cargo build --release --workspace --bins)");
                Guard(child)
            })
            .collect();
        std::thread::sleep(Duration::from_millis(300));
        let m = measured(on, env_num("SECS", 5));
        drop(snoops);
        m
    });
}
