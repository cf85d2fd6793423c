//! The data path against Linux kernel VXLAN, side by side in one run.
//!
//! Two hosts on one veth pair carry two overlays at once: `ov0` between
//! two overlayds (files plugin, UDP 4789) and `kvx` between two kernel
//! VXLAN devices (UDP 4790), both MTU 1400. The same tests alternate
//! between them, ROUNDS times each:
//!
//! - single-flow TCP throughput (iperf3, SECS seconds),
//! - four-flow TCP throughput (iperf3 -P 4),
//! - 64-byte frame rate: UDP with 18-byte payloads (a 64-byte Ethernet
//!   frame with its FCS), as fast as iperf3 can send, counted at the
//!   receiver,
//! - ping latency: PINGS echo requests 10 ms apart, p50 and p99; and, as
//!   the unit to read them in, what one thread wake-up costs on this
//!   machine at the same spacing (`bench::wakeup_ms`): overlayd's round
//!   trip wakes three or four of its threads besides the pinger, kernel
//!   VXLAN's none.
//!
//! Each throughput run also says what it cost, per Gbit the receiver got
//! (per frame received, in nanoseconds, for 64-byte frames): the machine's
//! busy CPU time over the run (all CPUs: user, nice, system, irq, softirq,
//! from `/proc/stat`) and its irq + softirq part; the flow's own CPU time
//! (both overlayds, the iperf3 client and server, the ksoftirqd threads);
//! and the two overlayds' part of it (utime + stime of all their threads,
//! `/proc/PID/stat`; softirq work done on their threads counts there too,
//! see `overlay_tests::bench`). A change that buys throughput by burning
//! cores shows there. The machine's figure holds whatever else ran: each
//! round first measures that background (1 s, nothing of ours running) and
//! prints it; when it is near the number of CPUs, read the flow's figure.
//!
//! It prints every figure, the medians and the ratio overlayd/kernel (for
//! latency and CPU cost, lower is better), and writes them to
//! `target/bench/datapath.json`.
//!
//! Run as root: `make bench` (`cargo bench -p overlay-tests --bench
//! datapath`). Env: ROUNDS (3), SECS (5), PINGS (200), BENCH_OVERLAYD_ARGS
//! (more overlayd options, for an A/B of two runs), BENCH_UNDERLAY
//! (`bridge`: each host's underlay address on a bridge `br0` with the veth
//! enslaved, for both paths — what `BENCH_OVERLAYD_ARGS="--underlay-bridge
//! br0"` needs; default `veth`). The machines are
//! shared and noisy: read medians and ratios, not single rounds.

use overlay_tests::bench::{
    background_cores, clock_ticks_per_sec, iperf_cpu_secs, ksoftirqd_ticks, tcp_received,
    wakeup_ms, write_result, MachineTicks, SideBySide, Via,
};
use overlay_tests::{env_num, median};
use std::time::Duration;

fn percentile(v: &[f64], p: f64) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    s[((s.len() - 1) as f64 * p).round() as usize]
}

/// CPU seconds a run used: the machine's busy time and its irq + softirq
/// part, the flow's processes' (overlayds, iperf3s, ksoftirqd) and the
/// overlayds' part of that.
#[derive(Clone, Copy, Debug, Default)]
struct Cost {
    busy: f64,
    softirq: f64,
    flow: f64,
    overlayd: f64,
}

impl Cost {
    fn per(self, units: f64) -> Cost {
        let u = units.max(f64::MIN_POSITIVE);
        Cost {
            busy: self.busy / u,
            softirq: self.softirq / u,
            flow: self.flow / u,
            overlayd: self.overlayd / u,
        }
    }
}

/// One iperf3 run over `via` with `args`, and the CPU time it cost.
fn costed(s: &mut SideBySide, via: Via, args: &[&str]) -> (serde_json::Value, Cost) {
    let (m0, o0, k0) = (MachineTicks::now(), s.overlayd_ticks(), ksoftirqd_ticks());
    let v = s.iperf(via, args);
    let (m1, o1, k1) = (MachineTicks::now(), s.overlayd_ticks(), ksoftirqd_ticks());
    let (m, hz) = (m1.since(m0), clock_ticks_per_sec());
    let overlayd = o1.saturating_sub(o0) as f64 / hz;
    let cost = Cost {
        busy: m.busy as f64 / hz,
        softirq: m.softirq as f64 / hz,
        flow: overlayd + iperf_cpu_secs(&v) + k1.saturating_sub(k0) as f64 / hz,
        overlayd,
    };
    (v, cost)
}

/// One TCP run of `flows` flows: Gbit/s received, and CPU seconds per Gbit
/// received.
fn tcp(s: &mut SideBySide, via: Via, secs: usize, flows: usize) -> (f64, Cost) {
    let args = ["-t", &secs.to_string(), "-P", &flows.to_string()];
    let (v, cost) = costed(s, via, &args);
    let (gbits, bytes) = tcp_received(&v);
    (gbits, cost.per(bytes as f64 * 8.0 / 1e9))
}

/// 64-byte frames received per second, and CPU nanoseconds per frame
/// received.
fn small_frames(s: &mut SideBySide, via: Via, secs: usize) -> (f64, Cost) {
    let args = ["-u", "-b", "0", "-l", "18", "-t", &secs.to_string()];
    let (v, cost) = costed(s, via, &args);
    let sum = &v["end"]["sum"];
    let (packets, lost, seconds) = (
        sum["packets"].as_f64(),
        sum["lost_packets"].as_f64(),
        sum["seconds"].as_f64(),
    );
    match (packets, lost, seconds) {
        (Some(p), Some(l), Some(t)) if t > 0.0 => {
            let got = (p - l).max(0.0);
            (got / t, cost.per(got / 1e9))
        }
        _ => panic!("no UDP packet counts in iperf3 output: {v}"),
    }
}

/// Round-trip times in milliseconds of `n` pings 10 ms apart.
fn ping_ms(s: &SideBySide, via: Via, n: usize) -> Vec<f64> {
    let dest = s.dest(via);
    let out = s.lab.exec(
        s.a,
        "ping",
        ["-c", &n.to_string(), "-i", "0.01", "-W", "1", dest],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let rtts: Vec<f64> = text
        .lines()
        .filter_map(|l| l.split("time=").nth(1))
        .filter_map(|t| t.split_whitespace().next()?.parse().ok())
        .collect();
    assert!(
        rtts.len() * 10 >= n * 9,
        "most pings to {dest} went unanswered:\n{text}"
    );
    rtts
}

#[derive(Default)]
struct Figures {
    tcp1: Vec<f64>,
    tcp4: Vec<f64>,
    pps: Vec<f64>,
    p50: Vec<f64>,
    p99: Vec<f64>,
    /// CPU seconds per Gbit (one flow, four flows), per frame (64 bytes).
    tcp1_cost: Vec<Cost>,
    tcp4_cost: Vec<Cost>,
    pps_cost: Vec<Cost>,
}

/// One part of a cost in the summary: its JSON key suffix, its label and
/// how to take it.
type CostPart = (&'static str, &'static str, fn(&Cost) -> f64);

/// The median of one part of some costs.
fn med(v: &[Cost], part: fn(&Cost) -> f64) -> f64 {
    median(&v.iter().map(part).collect::<Vec<_>>())
}

fn main() {
    // SAFETY: geteuid(2) has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        println!("datapath bench: skipped (needs root: sudo make bench)");
        return;
    }
    let rounds = env_num("ROUNDS", 3);
    let secs = env_num("SECS", 5);
    let pings = env_num("PINGS", 200);
    let mut s = SideBySide::new("bench_datapath");

    let (mut ov, mut kv) = (Figures::default(), Figures::default());
    let mut background = Vec::new();
    let mut wakeups = Vec::new();
    println!(
        "round  path      tcp-1 Gbit/s  tcp-4 Gbit/s  64B frames/s  ping p50 ms  p99 ms  \
         flow's CPU s/Gbit tcp-1 (overlayd's)  tcp-4  64B ns/frame"
    );
    for r in 1..=rounds {
        let bg = background_cores(Duration::from_secs(1));
        background.push(bg);
        println!("{r:>5}  background: {bg:.2} CPUs busy with nothing of ours running");
        // The unit of a userland path's latency, measured as the pings are
        // spaced (10 ms), in the same minute.
        let w = wakeup_ms(100, Duration::from_millis(10));
        println!(
            "{r:>5}  one thread wake-up after 10 ms idle: p50 {:.3} ms, p99 {:.3} ms",
            percentile(&w, 0.5),
            percentile(&w, 0.99)
        );
        wakeups.push(percentile(&w, 0.5));
        for (via, f) in [(Via::Overlayd, &mut ov), (Via::Kernel, &mut kv)] {
            let (g, c) = tcp(&mut s, via, secs, 1);
            f.tcp1.push(g);
            f.tcp1_cost.push(c);
            let (g, c) = tcp(&mut s, via, secs, 4);
            f.tcp4.push(g);
            f.tcp4_cost.push(c);
            let (pps, c) = small_frames(&mut s, via, secs);
            f.pps.push(pps);
            f.pps_cost.push(c);
            let rtt = ping_ms(&s, via, pings);
            f.p50.push(percentile(&rtt, 0.5));
            f.p99.push(percentile(&rtt, 0.99));
            let i = r - 1;
            println!(
                "{r:>5}  {:<8}  {:>12.2}  {:>12.2}  {:>12.0}  {:>11.3}  {:>6.3}  {:>23.3} ({:.3})  {:>5.3}  {:>12.0}",
                via.name(),
                f.tcp1[i],
                f.tcp4[i],
                f.pps[i],
                f.p50[i],
                f.p99[i],
                f.tcp1_cost[i].flow,
                f.tcp1_cost[i].overlayd,
                f.tcp4_cost[i].flow,
                f.pps_cost[i].flow,
            );
        }
    }
    let rows = [
        ("tcp_1flow_gbits", median(&ov.tcp1), median(&kv.tcp1)),
        ("tcp_4flows_gbits", median(&ov.tcp4), median(&kv.tcp4)),
        ("udp_64byte_frames_per_s", median(&ov.pps), median(&kv.pps)),
        ("ping_p50_ms", median(&ov.p50), median(&kv.p50)),
        ("ping_p99_ms", median(&ov.p99), median(&kv.p99)),
    ];
    // What each throughput test cost: per Gbit received (per frame for
    // 64-byte frames, in nanoseconds), the whole machine and its
    // irq+softirq part, the flow's processes and the overlayds' part.
    let costs = [
        ("tcp_1flow_cpu_s_per_gbit", &ov.tcp1_cost, &kv.tcp1_cost),
        ("tcp_4flows_cpu_s_per_gbit", &ov.tcp4_cost, &kv.tcp4_cost),
        ("udp_64byte_cpu_ns_per_frame", &ov.pps_cost, &kv.pps_cost),
    ];
    let parts: [CostPart; 4] = [
        ("", "", |c| c.busy),
        ("_softirq", "  machine's irq+softirq", |c| c.softirq),
        ("_flow", "  the flow's processes", |c| c.flow),
        ("_overlayd", "    of which overlayds", |c| c.overlayd),
    ];
    println!("\nmedians of {rounds} rounds ({secs} s each, {pings} pings)");
    println!(
        "{:<28} {:>12} {:>12} {:>16}",
        "figure", "overlayd", "kernel", "overlayd/kernel"
    );
    let mut json = serde_json::Map::new();
    for (name, o, k) in rows {
        let ratio = o / k;
        println!("{name:<28} {o:>12.3} {k:>12.3} {ratio:>16.2}");
        json.insert(
            name.into(),
            serde_json::json!({ "overlayd": o, "kernel": k, "ratio": ratio }),
        );
    }
    for (name, o, k) in costs {
        for (suffix, label, part) in parts {
            let (o, k) = (med(o, part), med(k, part));
            let ratio = o / k;
            match suffix {
                "" => println!("{name:<28} {o:>12.3} {k:>12.3} {ratio:>16.2}   (whole machine)"),
                "_flow" => println!("{label:<28} {o:>12.3} {k:>12.3} {ratio:>16.2}"),
                _ => println!("{label:<28} {o:>12.3} {k:>12.3}"),
            }
            json.insert(
                format!("{name}{suffix}"),
                serde_json::json!({ "overlayd": o, "kernel": k, "ratio": ratio }),
            );
        }
    }
    // A ping through two overlayds wakes three or four of their threads
    // (a's on the request's way out, b's on its way in, b's again for the
    // reply unless still awake, a's on the reply's way in) besides the
    // pinger; through kernel VXLAN only the pinger wakes. Say what the
    // difference is in wake-ups of this machine.
    let wake = median(&wakeups);
    let extra = median(&ov.p50) - median(&kv.p50);
    println!(
        "{:<28} {wake:>12.3}   ping p50 overlayd - kernel = {extra:.3} ms = {:.1} wake-ups",
        "thread_wakeup_p50_ms",
        extra / wake
    );
    json.insert("thread_wakeup_p50_ms".into(), wake.into());
    json.insert("ping_p50_extra_wakeups".into(), (extra / wake).into());
    json.insert("background_cpus_busy".into(), background.into());
    json.insert("rounds".into(), rounds.into());
    json.insert("underlay".into(), overlay_tests::bench::underlay().into());
    json.insert(
        "overlayd_args".into(),
        std::env::var("BENCH_OVERLAYD_ARGS")
            .unwrap_or_default()
            .into(),
    );
    json.insert("secs".into(), secs.into());
    // Which way overlayd's TCP super-frames left (socket or underlay TAP).
    let sent = overlay_tests::snapshot::overlay(&s.lab.stats(s.a), "ov0")
        .offload
        .clone();
    println!(
        "host a's overlayd: {} TSO frames; {} UDP GSO sends; {} tunnel-GSO sends ({} segments)",
        sent.tso_frames, sent.gso_sends, sent.tunnel_gso_sends, sent.tunnel_gso_segments
    );
    json.insert(
        "sender_offload".into(),
        serde_json::to_value(&sent).unwrap_or_default(),
    );
    let path = write_result("datapath.json", &serde_json::Value::Object(json));
    println!("written to {}", path.display());
}
