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
//! - ping latency: PINGS echo requests 10 ms apart, p50 and p99.
//!
//! It prints every figure, the medians and the ratio overlayd/kernel (for
//! latency, lower is better), and writes them to `target/bench/datapath.json`.
//!
//! Run as root: `make bench` (`cargo bench -p overlay-tests --bench
//! datapath`). Env: ROUNDS (3), SECS (5), PINGS (200). The machines are
//! shared and noisy: read medians and ratios, not single rounds.

use overlay_tests::{env_num, median, Host, Lab};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

fn percentile(v: &[f64], p: f64) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    s[((s.len() - 1) as f64 * p).round() as usize]
}

/// iperf3 servers, killed when dropped.
struct Servers(Vec<Child>);

impl Drop for Servers {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// One iperf3 client run from `a`; the parsed JSON.
fn iperf(lab: &Lab, a: Host, dest: &str, args: &[&str]) -> serde_json::Value {
    let mut all = vec!["-c", dest, "-p", "5201", "-J"];
    all.extend_from_slice(args);
    let out = lab.exec(a, "iperf3", &all);
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "iperf3 {all:?} output is not JSON ({e}): {}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn tcp_gbits(lab: &Lab, a: Host, dest: &str, secs: usize, flows: usize) -> f64 {
    let v = iperf(
        lab,
        a,
        dest,
        &["-t", &secs.to_string(), "-P", &flows.to_string()],
    );
    v["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .unwrap_or_else(|| panic!("no throughput in iperf3 output: {v}"))
        / 1e9
}

/// Frames per second received of 64-byte frames.
fn small_frame_rate(lab: &Lab, a: Host, dest: &str, secs: usize) -> f64 {
    let v = iperf(
        lab,
        a,
        dest,
        &["-u", "-b", "0", "-l", "18", "-t", &secs.to_string()],
    );
    let s = &v["end"]["sum"];
    let (packets, lost, seconds) = (
        s["packets"].as_f64(),
        s["lost_packets"].as_f64(),
        s["seconds"].as_f64(),
    );
    match (packets, lost, seconds) {
        (Some(p), Some(l), Some(t)) if t > 0.0 => (p - l).max(0.0) / t,
        _ => panic!("no UDP packet counts in iperf3 output: {v}"),
    }
}

/// Round-trip times in milliseconds of `n` pings 10 ms apart.
fn ping_ms(lab: &Lab, a: Host, dest: &str, n: usize) -> Vec<f64> {
    let out = lab.exec(
        a,
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
    let mut lab = Lab::new("bench_datapath");
    let p = lab.files_pair(71, 7171);
    let (a, b) = (p.a, p.b);
    for (i, h) in [(1u8, a), (2, b)] {
        let o = 3 - i;
        let dev = [
            "link", "add", "kvx", "type", "vxlan", "id", "7272", "dstport", "4790",
        ];
        let ends = ["local", &p.ul(i), "remote", &p.ul(o), "nolearning"];
        lab.ip(h, &[&dev[..], &ends[..]].concat());
        lab.ip(h, &["link", "set", "kvx", "mtu", "1400", "up"]);
        lab.ip(
            h,
            &["addr", "add", &format!("192.168.72.{i}/24"), "dev", "kvx"],
        );
    }
    let ov_dest = p.ip4(2);
    let kv_dest = "192.168.72.2".to_string();
    for d in [&ov_dest, &kv_dest] {
        assert!(
            lab.wait_ping(a, d, Duration::from_secs(10)).all_answered(),
            "no ping to {d}"
        );
    }
    let server = Command::new("ip")
        .args(["netns", "exec", lab.ns(b), "iperf3", "-s", "-p", "5201"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("iperf3 -s (install iperf3: make deps)");
    let _servers = Servers(vec![server]);
    std::thread::sleep(Duration::from_millis(500));

    let (mut ov, mut kv) = (Figures::default(), Figures::default());
    println!("round  path      tcp-1 Gbit/s  tcp-4 Gbit/s  64B frames/s  ping p50 ms  p99 ms");
    for r in 1..=rounds {
        for (name, dest, f) in [
            ("overlayd", &ov_dest, &mut ov),
            ("kernel", &kv_dest, &mut kv),
        ] {
            f.tcp1.push(tcp_gbits(&lab, a, dest, secs, 1));
            f.tcp4.push(tcp_gbits(&lab, a, dest, secs, 4));
            f.pps.push(small_frame_rate(&lab, a, dest, secs));
            let rtt = ping_ms(&lab, a, dest, pings);
            f.p50.push(percentile(&rtt, 0.5));
            f.p99.push(percentile(&rtt, 0.99));
            println!(
                "{r:>5}  {name:<8}  {:>12.2}  {:>12.2}  {:>12.0}  {:>11.3}  {:>6.3}",
                f.tcp1[r - 1],
                f.tcp4[r - 1],
                f.pps[r - 1],
                f.p50[r - 1],
                f.p99[r - 1]
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
    println!("\nmedians of {rounds} rounds ({secs} s each, {pings} pings)");
    println!(
        "{:<26} {:>12} {:>12} {:>16}",
        "figure", "overlayd", "kernel", "overlayd/kernel"
    );
    let mut json = serde_json::Map::new();
    for (name, o, k) in rows {
        let ratio = o / k;
        println!("{name:<26} {o:>12.3} {k:>12.3} {ratio:>16.2}");
        json.insert(
            name.into(),
            serde_json::json!({ "overlayd": o, "kernel": k, "ratio": ratio }),
        );
    }
    json.insert("rounds".into(), rounds.into());
    json.insert("secs".into(), secs.into());
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench");
    std::fs::create_dir_all(&dir).expect("create target/bench");
    let path = dir.canonicalize().unwrap_or(dir).join("datapath.json");
    std::fs::write(
        &path,
        serde_json::to_string_pretty(&serde_json::Value::Object(json)).expect("JSON"),
    )
    .expect("write the JSON");
    println!("written to {}", path.display());
}
