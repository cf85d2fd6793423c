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

use common::{measured, side, Guard};
use overlay_tests::{env_num, median};
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
    let (rounds, secs) = (env_num("ROUNDS", 5), env_num("SECS", 5));
    let mut on = side("capture-cost-in", &built, 45);
    let mut off = side("capture-cost-out", &baseline, 46);
    let (mut v_in, mut v_out, mut v_cap) = (Vec::new(), Vec::new(), Vec::new());
    let (mut c_in, mut c_out, mut c_cap) = (Vec::new(), Vec::new(), Vec::new());
    println!("        Gbit/s (iperf3 TCP, {secs} s)               overlayd CPU ns per frame");
    println!("round  point-off  compiled-out  capturing       point-off  compiled-out  capturing");
    for r in 1..=rounds {
        let ((x, cx), (y, cy)) = if r % 2 == 1 {
            let x = measured(&mut on, secs);
            (x, measured(&mut off, secs))
        } else {
            let y = measured(&mut off, secs);
            (measured(&mut on, secs), y)
        };
        let (t, ct) = {
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
            let m = measured(&mut on, secs);
            drop(snoops);
            m
        };
        println!("{r:>5}  {x:>9.3}  {y:>12.3}  {t:>9.3}       {cx:>9.0}  {cy:>12.0}  {ct:>9.0}");
        v_in.push(x);
        v_out.push(y);
        v_cap.push(t);
        c_in.push(cx);
        c_out.push(cy);
        c_cap.push(ct);
    }
    let (m_in, m_out, m_cap) = (median(&v_in), median(&v_out), median(&v_cap));
    let (cm_in, cm_out, cm_cap) = (median(&c_in), median(&c_out), median(&c_cap));
    let ratio =
        |a: &[f64], b: &[f64]| median(&a.iter().zip(b).map(|(x, y)| x / y).collect::<Vec<_>>());
    let (r_off, r_cap) = (ratio(&v_in, &v_out), ratio(&v_cap, &v_in));
    let (rc_off, rc_cap) = (ratio(&c_in, &c_out), ratio(&c_cap, &c_in));
    println!("median {m_in:>9.3}  {m_out:>12.3}  {m_cap:>9.3}       {cm_in:>9.0}  {cm_out:>12.0}  {cm_cap:>9.0}");
    println!("throughput:    capture point compiled in, off / compiled out = {r_off:.3} (median of per-round ratios)");
    println!("throughput:    capturing drops / point off = {r_cap:.3}");
    println!("CPU per frame: capture point compiled in, off / compiled out = {rc_off:.3}");
    println!("CPU per frame: capturing drops / point off = {rc_cap:.3}");
    let json = serde_json::json!({
        "rounds": rounds, "secs": secs,
        "gbps": { "point_off": v_in, "compiled_out": v_out, "capturing_drops": v_cap },
        "median_gbps": { "point_off": m_in, "compiled_out": m_out, "capturing_drops": m_cap },
        "ratio": { "off_over_compiled_out": r_off, "capturing_over_off": r_cap },
        "cpu_ns_per_frame": { "point_off": c_in, "compiled_out": c_out, "capturing_drops": c_cap },
        "cpu_ratio": { "off_over_compiled_out": rc_off, "capturing_over_off": rc_cap },
    });
    let out = root.join("target/bench");
    let _ = std::fs::create_dir_all(&out);
    let path = out.join("capture-cost.json");
    match std::fs::write(
        &path,
        serde_json::to_string_pretty(&json).unwrap_or_default(),
    ) {
        Ok(()) => println!("wrote {}", path.display()),
        Err(e) => eprintln!("cannot write {}: {e}", path.display()),
    }
}
