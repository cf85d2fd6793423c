//! Issue 21's prototype: the kernel's tunnel segmentation through a TAP
//! device, measured against overlayd's socket path in the same run.
//!
//! Since Linux 6.17 a TAP device takes an already-encapsulated VXLAN
//! super-frame behind a `virtio_net_hdr_v1_hash_tunnel` header
//! (`overlay_tests::tunnel_gso` has the layout and where it comes from)
//! and the kernel segments it only where the outgoing device needs it, as
//! kernel VXLAN's own skbs are. This bench builds two namespaces joined by
//! a veth (`net.rs` draws them): on host a an underlay TAP device bridged
//! with the veth, and a UDP socket like overlayd's mux; on host b a real
//! VXLAN peer — the kernel's VXLAN device, and behind it a kernel TCP
//! socket made ESTABLISHED with `TCP_REPAIR`, which must accept every inner
//! segment in order and whose reader checks every byte.
//!
//! It first probes the kernel (`TUNSETOFFLOAD` with `TUN_F_UDP_TUNNEL_GSO`;
//! a kernel without it says `EINVAL`, and the bench says so and exits 0),
//! then shows what receivers get (`checks.rs`): (a) plain UDP sockets on b,
//! with and without `UDP_GRO`; (c) a TAP device bridged on b, with and
//! without tunnel GSO negotiated. Then, ROUNDS times, alternating which
//! goes first, the same stream of MB MiB (65,280-byte super-frames of
//! 48 × 1,360-byte segments, overlay MTU 1400) is sent both ways from a
//! sender thread on a (`flow.rs`):
//!
//! - **socket**: what overlayd does today — `Tso::write` cuts each
//!   super-frame into VXLAN datagrams with their checksums, `sendmsg` with
//!   `UDP_SEGMENT` sends them (≤ 65,000 bytes a call);
//! - **tunnel**: one `writev` per super-frame to the underlay TAP device,
//!   the inner checksum left partial.
//!
//! Per GB delivered it reports: the sender thread's CPU seconds (its own
//! `getrusage(RUSAGE_THREAD)`: user space and the kernel's send path on
//! a — bridge, veth), b's receive path (b's veth runs NAPI in a thread of
//! its own, whose CPU time holds GRO, IP, UDP, VXLAN decapsulation and
//! TCP), b's reading thread, the machine's busy and softirq CPU (whatever
//! else ran too: each round first measures the background), throughput,
//! and what b's VXLAN device counted per super-frame (48: it got the
//! datagrams one by one; 1: whole). Medians over the rounds and the ratio
//! tunnel/socket; `target/bench/tunnel-gso.json` has every run.
//!
//! Run as root: `make bench-tunnel-gso` (`cargo bench -p overlay-tests
//! --bench tunnel_gso`). Env: ROUNDS (5), MB (1024 MiB per run),
//! PROBE_EXTRA_FLAGS (e.g. `0x8000`: the probe asks for a flag no kernel
//! knows, so this one refuses as a kernel before 6.17 does — to see the
//! fallback).

mod checks;
mod flow;
mod net;

use flow::{pattern, Peer, Run, Way, SUPER};
use net::{Probe, Underlay};
use overlay_tests::bench::{background_cores, write_result};
use overlay_tests::{env_num, median};
use serde_json::json;
use std::time::Duration;

/// One line of the table: its label, and the figure from a run.
struct Row {
    label: &'static str,
    value: fn(&Run) -> f64,
    digits: usize,
}

fn gb(r: &Run) -> f64 {
    r.bytes as f64 / 1e9
}

const ROWS: &[Row] = &[
    Row {
        label: "sender thread, CPU s/GB",
        value: |r| (r.sender_user + r.sender_sys) / gb(r),
        digits: 3,
    },
    Row {
        label: "  … user space (cut, checksums)",
        value: |r| r.sender_user / gb(r),
        digits: 3,
    },
    Row {
        label: "  … kernel (a's send path, b's receive softirq)",
        value: |r| r.sender_sys / gb(r),
        digits: 3,
    },
    Row {
        label: "b's reader thread, s/GB",
        value: |r| r.reader / gb(r),
        digits: 3,
    },
    Row {
        label: "sender + reader, s/GB",
        value: |r| (r.sender_user + r.sender_sys + r.reader) / gb(r),
        digits: 3,
    },
    Row {
        label: "machine busy CPU, s/GB",
        value: |r| r.busy / gb(r),
        digits: 3,
    },
    Row {
        label: "  … irq + softirq",
        value: |r| r.softirq / gb(r),
        digits: 3,
    },
    Row {
        label: "throughput, Gbit/s",
        value: |r| r.bytes as f64 * 8.0 / r.secs / 1e9,
        digits: 2,
    },
    Row {
        label: "b's vx0 packets per super-frame",
        value: |r| r.vx_packets as f64 / (r.bytes as f64 / SUPER as f64),
        digits: 1,
    },
    Row {
        label: "b's UDP reads per super-frame",
        value: |r| r.udp_reads as f64 / (r.bytes as f64 / SUPER as f64),
        digits: 2,
    },
    Row {
        label: "send syscalls per super-frame",
        value: |r| r.syscalls as f64 / r.frames.max(1) as f64,
        digits: 2,
    },
    Row {
        label: "retransmissions (go-back-N)",
        value: |r| r.retransmits as f64,
        digits: 0,
    },
    Row {
        label: "b's TCP checksum errors",
        value: |r| r.csum_errors as f64,
        digits: 0,
    },
];

/// The rows that mean something for a peer.
fn rows_for(peer: Peer) -> impl Iterator<Item = &'static Row> {
    ROWS.iter().filter(move |r| match peer {
        Peer::Kernel => r.label != "b's UDP reads per super-frame",
        Peer::Udp => {
            !r.label.starts_with("b's vx0")
                && !r.label.contains("retrans")
                && !r.label.contains("TCP checksum")
        }
    })
}

fn run_json(r: &Run) -> serde_json::Value {
    json!({
        "bytes": r.bytes, "secs": r.secs, "sender_user": r.sender_user,
        "sender_sys": r.sender_sys, "reader": r.reader, "busy": r.busy, "background": r.background,
        "softirq": r.softirq, "vx_packets": r.vx_packets, "udp_reads": r.udp_reads,
        "csum_errors": r.csum_errors,
        "frames": r.frames, "retransmits": r.retransmits, "syscalls": r.syscalls, "acks": r.acks,
    })
}

fn main() {
    let rounds = env_num("ROUNDS", 5).max(1);
    let mb = env_num("MB", 1024).max(64);
    // Whole super-frames; the sequence space of one run stays under 4 GiB.
    let total = ((mb as u64) << 20).div_ceil(SUPER as u64).min(60_000) * SUPER as u64;
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let kernel = kernel.trim();
    println!("== tunnel GSO through a TAP device against UDP_SEGMENT, kernel {kernel}");

    let u = match net::build() {
        Probe::Supported(u) => u,
        Probe::Refused(why, lab) => {
            println!(
                "this kernel ({kernel}) does not take VXLAN super-frames through a TAP device:"
            );
            println!("  {why}");
            println!("  (TUN_F_UDP_TUNNEL_GSO came with Linux 6.17.) Only the socket path");
            println!("  (UDP_SEGMENT) is available here; nothing to compare.");
            drop(lab);
            let _ = write_result(
                "tunnel-gso.json",
                &json!({"kernel": kernel, "supported": false, "why": why}),
            );
            return;
        }
    };
    report_setup(&u);
    for line in checks::udp_receivers(&u)
        .into_iter()
        .chain(checks::far_tap(&u))
    {
        println!("{line}");
    }

    let pat = pattern();
    println!(
        "\n{rounds} rounds of {} MB each way to each peer ({} super-frames of {SUPER} bytes), \
         alternating:",
        total / 1_000_000,
        total / SUPER as u64
    );
    // One unmeasured run each: caches, the neighbour entries, the bridges' tables.
    let mut port = 5001u16;
    for peer in Peer::BOTH {
        for way in Way::BOTH {
            port += 1;
            if let Err(e) = flow::run(&u, peer, way, port, 64 * SUPER as u64, &pat) {
                panic!("warm-up, {} to {}: {e}", way.name(), peer.name());
            }
        }
    }
    let mut runs: Vec<(Peer, Way, Run)> = Vec::new();
    let mut background = Vec::new();
    for r in 0..rounds {
        let bg = background_cores(Duration::from_secs(1));
        background.push(bg);
        println!("  round {} (background {bg:.2} CPUs busy)", r + 1);
        let order = if r % 2 == 0 {
            Way::BOTH
        } else {
            [Way::Tunnel, Way::Socket]
        };
        for peer in Peer::BOTH {
            for way in order {
                port += 1;
                let mut run = flow::run(&u, peer, way, port, total, &pat).unwrap_or_else(|e| {
                    panic!("round {}, {} to {}: {e}", r + 1, way.name(), peer.name())
                });
                run.background = bg;
                println!(
                    "    {:<20} {:<6}: {:6.2} Gbit/s, sender {:.3} s/GB (user {:.3}), \
                     reader {:.3} s/GB, {} retransmissions",
                    peer.name(),
                    way.name(),
                    run.bytes as f64 * 8.0 / run.secs / 1e9,
                    (run.sender_user + run.sender_sys) / gb(&run),
                    run.sender_user / gb(&run),
                    run.reader / gb(&run),
                    run.retransmits
                );
                runs.push((peer, way, run));
            }
        }
    }
    for peer in Peer::BOTH {
        print_table(peer, &runs, rounds, &background);
    }
    let path = write_result(
        "tunnel-gso.json",
        &json!({
            "kernel": kernel, "supported": true, "rounds": rounds, "bytes_per_run": total,
            "background_cpus": background,
            "runs": runs.iter().map(|(p, w, r)| json!({
                "peer": p.name(), "way": w.name(), "run": run_json(r)
            })).collect::<Vec<_>>(),
        }),
    );
    println!("results: {}", path.display());
}

fn report_setup(u: &Underlay) {
    println!(
        "probe: TUNSETOFFLOAD with TUN_F_UDP_TUNNEL_GSO|_CSUM taken; TUNSETVNETHDRSZ 24 taken"
    );
    let k = u.lab.exec(u.a, "ethtool", ["-k", "utap0"]);
    let feats: Vec<String> = String::from_utf8_lossy(&k.stdout)
        .lines()
        .filter(|l| l.contains("udp_tnl") || l.contains("tcp-segmentation-offload"))
        .map(|l| l.trim().to_string())
        .collect();
    println!("utap0 (a's underlay TAP): {}", feats.join("; "));
    println!(
        "a resolves b's underlay MAC {} (from its neighbour table)",
        net::mac_str(u.b_mac)
    );
}

fn print_table(peer: Peer, runs: &[(Peer, Way, Run)], rounds: usize, background: &[f64]) {
    println!(
        "\n| to {}: per GB delivered, median of {rounds} (background {:.2} CPUs) | socket (UDP_SEGMENT) | tunnel GSO (TAP) | tunnel/socket |",
        peer.name(),
        median(background)
    );
    println!("|---|---|---|---|");
    for row in rows_for(peer) {
        let med = |w: Way| {
            let v: Vec<f64> = runs
                .iter()
                .filter(|(p, x, _)| *p == peer && *x == w)
                .map(|(_, _, r)| (row.value)(r))
                .collect();
            median(&v)
        };
        let (s, t) = (med(Way::Socket), med(Way::Tunnel));
        let ratio = if s > 0.0 {
            format!("{:.2}", t / s)
        } else {
            "—".to_string()
        };
        println!(
            "| {} | {:.*} | {:.*} | {ratio} |",
            row.label, row.digits, s, row.digits, t
        );
    }
}
