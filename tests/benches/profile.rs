//! Where one TCP flow's CPU time goes, through overlayd and through kernel
//! VXLAN.
//!
//! The two-host lab of the datapath bench (`overlay_tests::bench::SideBySide`:
//! `ov0` between two overlayds, `kvx` between two kernel VXLAN devices, on
//! one veth pair). For each path in turn one iperf3 TCP flow runs SECS + 2
//! seconds; from its first second on, `perf record -e cpu-clock -a -g`
//! samples the whole machine for SECS seconds. Each sample counts under
//! its leaf symbol's bucket (`overlay_tests::perf`): copies, checksums,
//! segmentation, system calls, wake-ups, idle, other kernel, other user.
//!
//! It prints, per path: the Gbit/s iperf3 sent during the recording (its
//! per-second intervals inside the window) and received over the whole
//! run; who the samples ran for (overlayd, the iperf3 client and server,
//! ksoftirqd, softirq on the idle task, kworkers, other processes); each
//! bucket as a share of all samples, of the busy (not idle) ones, of the
//! flow's (busy samples of every group but other processes: on a shared
//! machine the column to read) and of overlayd's; the flow's top 15 leaf
//! symbols; and what the flow's samples come to in CPU seconds per Gbit.
//! Then the buckets of the paths side by side. Results go to
//! `target/bench/profile.json`, the recordings to
//! `target/bench/perf-PATH.data` (for `perf report -i`, call graphs).
//!
//! Run as root: `sudo make profile` (`cargo bench -p overlay-tests --bench
//! profile`). Env: PATHS (`overlayd`, `kernel` or `both`, the default),
//! SECS (8). perf itself costs the flow some throughput. It samples every
//! process on the machine: softirq work of the flow that interrupts some
//! other process counts as that process's, so the flow's share is a little
//! short when the machine is busy with other work.

use overlay_tests::bench::{iperf_finish, result_dir, tcp_received, write_result, SideBySide, Via};
use overlay_tests::env_num;
use overlay_tests::perf::{self, in_flow, process_group, Bucket, Profile, Sample, OTHER_PROCESSES};
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::time::Duration;

/// Seconds of the flow before the recording starts (connection, slow start).
const LEAD_SECS: usize = 1;
/// Symbols in the top list.
const TOP: usize = 15;

fn pct(n: usize, of: usize) -> f64 {
    if of == 0 {
        0.0
    } else {
        100.0 * n as f64 / of as f64
    }
}

/// Gbit/s the sender's per-second intervals report between `from` and
/// `to` seconds into the run.
fn gbits_between(v: &Value, from: f64, to: f64) -> Option<f64> {
    let (mut bits, mut secs) = (0.0, 0.0);
    for i in v["intervals"].as_array()? {
        let s = &i["sum"];
        let (start, end, bps) = (
            s["start"].as_f64()?,
            s["end"].as_f64()?,
            s["bits_per_second"].as_f64()?,
        );
        if start >= from - 0.1 && end <= to + 0.1 {
            bits += bps * (end - start);
            secs += end - start;
        }
    }
    (secs > 0.0).then(|| bits / secs / 1e9)
}

/// Who samples ran for, in the order of the table.
const GROUPS: [&str; 7] = [
    "overlayd",
    "iperf3 client",
    "iperf3 server",
    "ksoftirqd",
    "idle task (swapper)",
    "kworker",
    OTHER_PROCESSES,
];

/// Runs one flow over `via` under perf; prints its profile and returns it
/// as JSON, with the flow's share of each bucket.
fn profile_path(s: &mut SideBySide, via: Via, secs: usize, cpus: usize) -> (Value, Shares) {
    let file = result_dir().join(format!("perf-{}.data", via.name()));
    let flow = s.iperf_spawn(via, &["-t", &(secs + LEAD_SECS + 1).to_string()]);
    let mut pids: HashMap<u32, &'static str> = HashMap::new();
    for pid in s.overlayd_pids() {
        pids.insert(pid, "overlayd");
    }
    pids.insert(flow.id(), "iperf3 client");
    pids.insert(s.server_pid(), "iperf3 server");
    std::thread::sleep(Duration::from_secs(LEAD_SECS as u64));
    perf::record(&file, secs);
    let v = iperf_finish(flow);
    let (run_gbits, _) = tcp_received(&v);
    let window =
        gbits_between(&v, LEAD_SECS as f64, (LEAD_SECS + secs) as f64).unwrap_or(run_gbits);
    let p = Profile::new(perf::script(&file));
    assert!(!p.is_empty(), "perf recorded no samples");

    let n = p.len();
    let is_ovd = |x: &Sample| pids.get(&x.pid) == Some(&"overlayd");
    let is_flow = |x: &Sample| in_flow(x, &pids);
    let (all, _) = p.buckets(|_| true);
    let (busy, busy_n) = p.buckets(|x| x.bucket != Bucket::Idle);
    let (flow_b, flow_n) = p.buckets(is_flow);
    let (ovd, ovd_n) = p.buckets(is_ovd);
    // A sample's share times the CPUs is CPUs busy; per Gbit/s of the
    // recording that is CPU seconds per Gbit.
    let cpus_of = |k: usize| cpus as f64 * k as f64 / n as f64;
    let per_gbit = |k: usize| cpus_of(k) / window.max(f64::MIN_POSITIVE);

    println!(
        "\n== {}: one TCP flow, {secs} s under perf record -e cpu-clock -a -g ({cpus} CPUs)",
        via.name()
    );
    println!(
        "iperf3: {window:.2} Gbit/s sent during the recording ({run_gbits:.2} Gbit/s received over the {} s run)",
        secs + LEAD_SECS + 1
    );
    println!(
        "samples: {n}; busy {:.2} CPUs, the flow's {:.2} CPUs: {:.3} CPU s per Gbit ({:.3} with everything else that ran)",
        cpus_of(busy_n),
        cpus_of(flow_n),
        per_gbit(flow_n),
        per_gbit(busy_n),
    );
    let mut ran_for = Map::new();
    println!("\n{:<22} {:>7} {:>7}", "ran for", "% all", "% busy");
    for g in GROUPS {
        let total = p.count(|x| process_group(x, &pids) == g);
        let busy_g = p.count(|x| x.bucket != Bucket::Idle && process_group(x, &pids) == g);
        println!(
            "{g:<22} {:>7.1} {:>7.1}",
            pct(total, n),
            pct(busy_g, busy_n)
        );
        ran_for.insert(
            g.into(),
            json!({ "all_pct": pct(total, n), "busy_pct": pct(busy_g, busy_n) }),
        );
    }
    let idle = all.get(&Bucket::Idle).copied().unwrap_or(0);
    println!("idle loop              {:>7.1}", pct(idle, n));
    println!("(the flow: every group but the last, idle loop left out)");

    let with_ovd = via == Via::Overlayd;
    println!(
        "\n{:<14} {:>7} {:>7} {:>7} {:>10}",
        "bucket",
        "% all",
        "% busy",
        "% flow",
        if with_ovd { "% overlayd" } else { "" }
    );
    let mut buckets = Map::new();
    let mut shares = Shares::new();
    for b in Bucket::ALL {
        let get = |m: &HashMap<Bucket, usize>| m.get(&b).copied().unwrap_or(0);
        let (a, bu, f, o) = (
            pct(get(&all), n),
            pct(get(&busy), busy_n),
            pct(get(&flow_b), flow_n),
            pct(get(&ovd), ovd_n),
        );
        let shown_o = if with_ovd {
            format!("{o:.1}")
        } else {
            String::new()
        };
        println!("{:<14} {a:>7.1} {bu:>7.1} {f:>7.1} {shown_o:>10}", b.name());
        let ms = f / 100.0 * per_gbit(flow_n) * 1e3;
        let mut e =
            json!({ "all_pct": a, "busy_pct": bu, "flow_pct": f, "flow_cpu_ms_per_gbit": ms });
        if with_ovd {
            e["overlayd_pct"] = o.into();
        }
        buckets.insert(b.name().into(), e);
        shares.insert(b, f);
    }

    println!("\ntop {TOP} leaf symbols of the flow");
    println!(
        "{:>7} {:>10}  {:<13} symbol",
        "% flow",
        if with_ovd { "% overlayd" } else { "" },
        "bucket"
    );
    let mut top = Vec::new();
    for (sym, flow_k, ovd_k, b) in p.top(TOP, is_flow, is_ovd) {
        let (f, o) = (pct(flow_k, flow_n), pct(ovd_k, ovd_n));
        let shown: String = sym.chars().take(80).collect();
        let shown_o = if with_ovd {
            format!("{o:.1}")
        } else {
            String::new()
        };
        println!("{f:>7.1} {shown_o:>10}  {:<13} {shown}", b.name());
        top.push(json!({ "symbol": sym, "flow_pct": f, "overlayd_pct": o, "bucket": b.name() }));
    }
    println!(
        "recording: {} (perf report -i it for call graphs)",
        file.display()
    );
    let out = json!({
        "perf_data": file.display().to_string(),
        "gbits_during_recording": window,
        "gbits_received_run": run_gbits,
        "samples": n,
        "cpus_busy": cpus_of(busy_n),
        "cpus_flow": cpus_of(flow_n),
        "flow_cpu_s_per_gbit": per_gbit(flow_n),
        "busy_cpu_s_per_gbit": per_gbit(busy_n),
        "overlayd_samples": ovd_n,
        "ran_for": ran_for,
        "buckets": buckets,
        "top": top,
    });
    (out, shares)
}

/// A path's share of the flow's samples in each bucket.
type Shares = HashMap<Bucket, f64>;

fn main() {
    // SAFETY: geteuid(2) has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        println!("profile: skipped (needs root: sudo make profile)");
        return;
    }
    overlay_tests::require_tools(&["perf", "iperf3"]);
    let paths = std::env::var("PATHS").unwrap_or_else(|_| "both".into());
    let Some(paths) = Via::parse_list(&paths) else {
        panic!("PATHS={paths}: want overlayd, kernel or both");
    };
    let secs = env_num("SECS", 8).max(1);
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut s = SideBySide::new("bench_profile");
    let mut json = Map::new();
    let mut side = Vec::new();
    for via in paths {
        let (v, shares) = profile_path(&mut s, via, secs, cpus);
        let cost = v["flow_cpu_s_per_gbit"].as_f64().unwrap_or(0.0);
        side.push((via, shares, cost));
        json.insert(via.name().into(), v);
    }
    if side.len() > 1 {
        // A bucket's share of the flow times the flow's CPU s/Gbit: what
        // each costs per Gbit, comparable across paths of unlike speeds.
        println!("\n== side by side: % of the flow's samples, and CPU ms per Gbit");
        print!("{:<14}", "bucket");
        for (via, ..) in &side {
            print!(" {:>9} {:>7}", via.name(), "ms/Gb");
        }
        println!();
        for b in Bucket::ALL.into_iter().filter(|b| *b != Bucket::Idle) {
            print!("{:<14}", b.name());
            for (_, m, cost) in &side {
                let share = m.get(&b).copied().unwrap_or(0.0);
                print!(" {share:>9.1} {:>7.1}", share / 100.0 * cost * 1e3);
            }
            println!();
        }
        print!("{:<14}", "all");
        for (.., cost) in &side {
            print!(" {:>9.1} {:>7.1}", 100.0, cost * 1e3);
        }
        println!();
    }
    let result = json!({ "secs": secs, "cpus": cpus, "paths": Value::Object(json) });
    let path = write_result("profile.json", &result);
    println!("\nwritten to {}", path.display());
}
