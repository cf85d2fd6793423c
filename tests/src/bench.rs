//! What the benches over the lab share (`tests/benches/`): the two-host
//! setup that carries an overlayd overlay and a kernel VXLAN overlay side
//! by side, iperf3 runs read from their JSON, the CPU time a run cost, and
//! where results are written.
//!
//! CPU time comes from the kernel's tick accounting: the machine's busy
//! time from `/proc/stat` (user, nice, system, irq and softirq of every
//! CPU) and a process's from `/proc/PID/stat` (utime and stime of all its
//! threads), both in clock ticks (`sysconf(_SC_CLK_TCK)`). A tick is
//! charged to softirq when it finds a CPU serving one, whatever task it
//! interrupted, and to that task's stime as well: softirq work done on
//! overlayd's threads (a veth delivering its datagrams to the peer's
//! socket, for one) is in both overlayd's figure and the softirq figure.
//! The machine's figure holds everything that ran, the lab's and anyone
//! else's: on a shared machine, read it beside [`background_cores`] —
//! with the CPUs full of other work it says only how long the run took.
//! The flow's own figure adds what its processes used: the overlayds, the
//! iperf3 client and server (as iperf3 reports them, [`iperf_cpu_secs`])
//! and the `ksoftirqd` threads ([`ksoftirqd_ticks`]); softirq work that a
//! tick finds on the idle task, or on someone else's process, escapes it.

use crate::daemon::Daemon;
use crate::lab::{Host, Lab};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// One of the two data paths a bench compares.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Via {
    /// Two overlayds (TAP devices, VXLAN over UDP sockets).
    Overlayd,
    /// Two Linux kernel VXLAN devices.
    Kernel,
}

impl Via {
    /// Both, in the order the benches alternate them.
    pub const BOTH: [Via; 2] = [Via::Overlayd, Via::Kernel];

    /// The name in tables and JSON.
    pub fn name(self) -> &'static str {
        match self {
            Via::Overlayd => "overlayd",
            Via::Kernel => "kernel",
        }
    }

    /// `overlayd`, `kernel` or `both`.
    pub fn parse_list(s: &str) -> Option<Vec<Via>> {
        match s {
            "overlayd" => Some(vec![Via::Overlayd]),
            "kernel" => Some(vec![Via::Kernel]),
            "both" => Some(Via::BOTH.to_vec()),
            _ => None,
        }
    }
}

/// Two hosts on one veth pair (each end on a bridge with
/// `BENCH_UNDERLAY=bridge`) carrying two overlays at once: `ov0` between
/// two overlayds (files plugin, VXLAN on UDP 4789, `192.168.71.0/24`) and
/// `kvx` between two kernel VXLAN devices (UDP 4790, `192.168.72.0/24`),
/// both MTU 1400; an iperf3 server listens on host b (port 5201), killed
/// on drop before the lab goes.
pub struct SideBySide {
    /// The lab (overlayd and varpd on both hosts).
    pub lab: Lab,
    /// The sending host.
    pub a: Host,
    /// The receiving host (iperf3 server).
    pub b: Host,
    ov_dest: String,
    kv_dest: String,
    server: Child,
}

impl SideBySide {
    /// Builds the lab `name`, checks both overlays with pings and starts
    /// the iperf3 server. Panics if a tool is missing or a path is dead.
    /// The overlayds get the options in `BENCH_OVERLAYD_ARGS` too (e.g.
    /// `--busy-poll-us 50`), for an A/B of two runs. `BENCH_UNDERLAY=bridge`
    /// puts each host's underlay address on a bridge `br0` with its veth
    /// enslaved, for both overlays alike (what `overlayd --underlay-bridge
    /// br0` needs); the default, `veth`, leaves it on the veth.
    pub fn new(name: &str) -> SideBySide {
        crate::require_tools(&["iperf3"]);
        let mut lab = Lab::new(name);
        let extra = std::env::var("BENCH_OVERLAYD_ARGS").unwrap_or_default();
        let extra: Vec<&str> = extra.split_whitespace().collect();
        if !extra.is_empty() {
            println!("overlayd options: {}", extra.join(" "));
            lab.overlayd_args(&extra);
        }
        let p = match underlay().as_str() {
            "bridge" => {
                println!("underlay: each host's address on a bridge br0 with its veth enslaved");
                lab.files_pair_bridged(71, 7171, "vxlan")
            }
            "" | "veth" => lab.files_pair(71, 7171),
            other => panic!("BENCH_UNDERLAY={other}: expected `veth` (the default) or `bridge`"),
        };
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
        std::thread::sleep(Duration::from_millis(500));
        SideBySide {
            lab,
            a,
            b,
            ov_dest,
            kv_dest,
            server,
        }
    }

    /// Host b's overlay address on a path.
    pub fn dest(&self, via: Via) -> &str {
        match via {
            Via::Overlayd => &self.ov_dest,
            Via::Kernel => &self.kv_dest,
        }
    }

    fn iperf_command(&self, via: Via, args: &[&str]) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", self.lab.ns(self.a), "iperf3", "-c"])
            .arg(self.dest(via))
            .args(["-p", "5201", "-J"])
            .args(args);
        cmd
    }

    /// One iperf3 client run from host a to host b over a path; its JSON.
    pub fn iperf(&self, via: Via, args: &[&str]) -> serde_json::Value {
        let out = self
            .iperf_command(via, args)
            .stdin(Stdio::null())
            .output()
            .expect("run iperf3 (install iperf3: make deps)");
        iperf_json(&out.stdout, &out.stderr, args)
    }

    /// As [`SideBySide::iperf`], started in the background: read it with
    /// [`iperf_finish`].
    pub fn iperf_spawn(&self, via: Via, args: &[&str]) -> Child {
        self.iperf_command(via, args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run iperf3 (install iperf3: make deps)")
    }

    /// Process id of the iperf3 server.
    pub fn server_pid(&self) -> u32 {
        self.server.id()
    }

    /// Process ids of the two overlayds.
    pub fn overlayd_pids(&mut self) -> Vec<u32> {
        [self.a, self.b]
            .into_iter()
            .filter_map(|h| self.lab.pid(h, Daemon::Overlayd))
            .collect()
    }

    /// CPU ticks both overlayds have used so far (all their threads).
    pub fn overlayd_ticks(&mut self) -> u64 {
        self.overlayd_pids().into_iter().map(process_ticks).sum()
    }
}

/// `BENCH_UNDERLAY`: `veth` (or unset) or `bridge` (see [`SideBySide::new`]).
pub fn underlay() -> String {
    std::env::var("BENCH_UNDERLAY").unwrap_or_default()
}

impl Drop for SideBySide {
    fn drop(&mut self) {
        let _ = self.server.kill();
        let _ = self.server.wait();
    }
}

/// Waits for an iperf3 client started by [`SideBySide::iperf_spawn`]; its JSON.
pub fn iperf_finish(child: Child) -> serde_json::Value {
    let out = child.wait_with_output().expect("wait for iperf3");
    iperf_json(&out.stdout, &out.stderr, &[])
}

fn iperf_json(stdout: &[u8], stderr: &[u8], args: &[&str]) -> serde_json::Value {
    serde_json::from_slice(stdout).unwrap_or_else(|e| {
        panic!(
            "iperf3 {args:?} output is not JSON ({e}): {}{}",
            String::from_utf8_lossy(stdout),
            String::from_utf8_lossy(stderr)
        )
    })
}

/// Gbit/s and bytes a TCP run's receiver got (`end.sum_received`).
pub fn tcp_received(v: &serde_json::Value) -> (f64, u64) {
    let s = &v["end"]["sum_received"];
    match (s["bits_per_second"].as_f64(), s["bytes"].as_u64()) {
        (Some(bps), Some(bytes)) => (bps / 1e9, bytes),
        _ => panic!("no received throughput in iperf3 output: {v}"),
    }
}

/// CPU seconds the iperf3 client and server of a run used, as each
/// reported (`end.cpu_utilization_percent`: 100 is one CPU over the run).
pub fn iperf_cpu_secs(v: &serde_json::Value) -> f64 {
    let end = &v["end"];
    let u = &end["cpu_utilization_percent"];
    let pct = u["host_total"].as_f64().unwrap_or(0.0) + u["remote_total"].as_f64().unwrap_or(0.0);
    let secs = ["sum_sent", "sum"]
        .iter()
        .find_map(|k| end[k]["seconds"].as_f64())
        .unwrap_or(0.0);
    pct / 100.0 * secs
}

/// CPU ticks the kernel's softirq threads (`ksoftirqd/N`) have used so far.
pub fn ksoftirqd_ticks() -> u64 {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0;
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|c| c.starts_with("ksoftirqd/"))
        })
        .map(process_ticks)
        .sum()
}

/// Clock ticks per second of `/proc`'s CPU times.
pub fn clock_ticks_per_sec() -> f64 {
    // SAFETY: sysconf(3) with a constant name has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if hz > 0 {
        hz as f64
    } else {
        100.0
    }
}

/// CPU ticks a process has used so far (utime + stime of all its threads);
/// 0 for a process that is gone.
pub fn process_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The fields after the command (which may hold spaces) start after ") ";
    // utime and stime are fields 14 and 15 of stat: 11 and 12 after it.
    let rest = stat.rsplit_once(") ").map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split(' ').collect();
    let field = |i: usize| f.get(i).and_then(|x| x.parse::<u64>().ok()).unwrap_or(0);
    field(11) + field(12)
}

/// The machine's CPU time so far, all CPUs, in clock ticks (`/proc/stat`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MachineTicks {
    /// user + nice + system + irq + softirq.
    pub busy: u64,
    /// irq + softirq (part of `busy`).
    pub softirq: u64,
}

impl MachineTicks {
    /// Reads `/proc/stat` now.
    pub fn now() -> MachineTicks {
        let stat = std::fs::read_to_string("/proc/stat").expect("read /proc/stat");
        Self::parse(&stat).expect("/proc/stat has a `cpu` line")
    }

    /// The first line (`cpu  user nice system idle iowait irq softirq
    /// ...`) of `/proc/stat`'s text.
    pub fn parse(stat: &str) -> Option<MachineTicks> {
        let line = stat.lines().find(|l| l.starts_with("cpu "))?;
        let f: Vec<u64> = line
            .split_whitespace()
            .skip(1)
            .map(|x| x.parse().unwrap_or(0))
            .collect();
        let at = |i: usize| f.get(i).copied().unwrap_or(0);
        let softirq = at(5) + at(6);
        Some(MachineTicks {
            busy: at(0) + at(1) + at(2) + softirq,
            softirq,
        })
    }

    /// What was used since `earlier`.
    pub fn since(self, earlier: MachineTicks) -> MachineTicks {
        MachineTicks {
            busy: self.busy.saturating_sub(earlier.busy),
            softirq: self.softirq.saturating_sub(earlier.softirq),
        }
    }
}

/// Busy CPUs (busy seconds per second) on the machine over `window`, with
/// nothing of ours running: the background a measurement carries.
pub fn background_cores(window: Duration) -> f64 {
    let (t0, c0) = (Instant::now(), MachineTicks::now());
    std::thread::sleep(window);
    let used = MachineTicks::now().since(c0);
    used.busy as f64 / clock_ticks_per_sec() / t0.elapsed().as_secs_f64()
}

/// What one thread wake-up costs on this machine, the unit a userland
/// data path pays in latency: two threads hand a byte back and forth over
/// a Unix socket pair `n` times, `gap` apart (the first sleeps between
/// exchanges, so both block and their CPUs may idle, as between two pings
/// `gap` apart). Each exchange wakes the second thread and then the first
/// again: half of it is one wake-up (with one write and one read).
/// Returns each exchange's half, in ms, in the order measured.
pub fn wakeup_ms(n: usize, gap: Duration) -> Vec<f64> {
    use std::io::{Read, Write};
    let (mut a, mut b) = std::os::unix::net::UnixStream::pair().expect("a socket pair");
    let echo = std::thread::spawn(move || {
        let mut byte = [0u8];
        while b.read_exact(&mut byte).is_ok() && b.write_all(&byte).is_ok() {}
    });
    let mut halves = Vec::with_capacity(n);
    let mut byte = [0u8];
    for _ in 0..n {
        std::thread::sleep(gap);
        let t = Instant::now();
        a.write_all(&[1]).expect("write to the echo thread");
        a.read_exact(&mut byte).expect("read from the echo thread");
        halves.push(t.elapsed().as_secs_f64() * 1e3 / 2.0);
    }
    drop(a);
    echo.join().expect("the echo thread");
    halves
}

/// `target/bench` of the workspace (made if missing), where benches leave
/// their results.
pub fn result_dir() -> PathBuf {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench");
    std::fs::create_dir_all(&dir).expect("create target/bench");
    dir.canonicalize().unwrap_or(dir)
}

/// Writes a bench's results to `target/bench/NAME` and returns the path.
pub fn write_result(name: &str, value: &serde_json::Value) -> PathBuf {
    let path = result_dir().join(name);
    let text = serde_json::to_string_pretty(value).expect("JSON values always serialize");
    std::fs::write(&path, text).unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
    path
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wake_up_takes_some_time_and_less_than_the_gap() {
        let w = wakeup_ms(5, Duration::from_millis(2));
        assert_eq!(w.len(), 5);
        assert!(w.iter().all(|&ms| ms > 0.0 && ms < 1000.0), "{w:?}");
    }

    #[test]
    fn proc_stat_busy_and_softirq_are_read() {
        let stat = "cpu  100 5 40 9000 7 3 20 11 0 0\ncpu0 50 2 20 4500 3 1 10 5 0 0\n";
        let t = MachineTicks::parse(stat).unwrap();
        assert_eq!(t.busy, 100 + 5 + 40 + 3 + 20);
        assert_eq!(t.softirq, 23);
        let later = MachineTicks {
            busy: t.busy + 30,
            softirq: t.softirq + 4,
        };
        assert_eq!(
            later.since(t),
            MachineTicks {
                busy: 30,
                softirq: 4
            }
        );
        assert!(MachineTicks::parse("intr 1 2 3\n").is_none());
    }

    #[test]
    fn paths_are_named() {
        assert_eq!(
            Via::parse_list("both"),
            Some(vec![Via::Overlayd, Via::Kernel])
        );
        assert_eq!(Via::parse_list("kernel"), Some(vec![Via::Kernel]));
        assert_eq!(Via::parse_list("ovl"), None);
    }
}
