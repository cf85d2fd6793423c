//! Where a flow's CPU time goes: `perf record -e cpu-clock -a -g` over the
//! whole machine, and its samples sorted into the costs a data path has —
//! copies, segmentation (TSO/GSO and GRO, the kernel's and overlayd's),
//! checksums, system-call entry and exit, wake-ups and scheduling, idle,
//! and the rest of the kernel or of user space.
//!
//! A sample counts where it was taken: the symbol of its own address (the
//! leaf), read from `perf script -G` (see [`parse_script`] for why not
//! from the call chain). The rules are name patterns
//! ([`classify`]), first match wins, in the order of [`Bucket::ALL`]:
//! a copy that checksums on the way (`csum_partial_copy_*`) is a copy, a
//! GRO checksum check is a checksum. overlayd's own checksum loop
//! (`offload::sum`) is inlined into its callers, so its cost shows under
//! the segmentation code that calls it (`Tso::write`, `Coalescer::append`)
//! or a function named for checksums (`checksum_state`, `to_tap`); its
//! copies call libc's `memcpy` and count as copies.
//!
//! `cpu-clock` is a timer: in a VM without hardware counters it fires only
//! when interrupts are on, so time spent with them off shows at the point
//! they come back on (`_raw_spin_unlock_irqrestore`, `__local_bh_enable_ip`
//! are such points), under "other kernel".

use std::collections::HashMap;
use std::path::Path;
use std::process::{Command, Stdio};

/// What a sample was spent on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Bucket {
    /// Nothing: the idle loop.
    Idle,
    /// Moving bytes: user↔kernel copies, `memcpy`/`memmove`.
    Copies,
    /// Computing or checking checksums.
    Checksums,
    /// Cutting super-frames (TSO, GSO) and gluing segments (GRO).
    Segmentation,
    /// System-call entry and exit.
    Syscalls,
    /// Waking, sleeping, switching tasks, epoll and futexes.
    Wakeups,
    /// The rest of the kernel (protocols, devices, locks, allocation).
    OtherKernel,
    /// The rest of user space (overlayd's decisions, iperf3, libc).
    OtherUser,
}

impl Bucket {
    /// Every bucket, in the order the rules try them (and tables show them).
    pub const ALL: [Bucket; 8] = [
        Bucket::Idle,
        Bucket::Copies,
        Bucket::Checksums,
        Bucket::Segmentation,
        Bucket::Syscalls,
        Bucket::Wakeups,
        Bucket::OtherKernel,
        Bucket::OtherUser,
    ];

    /// The name in tables and JSON.
    pub fn name(self) -> &'static str {
        match self {
            Bucket::Idle => "idle",
            Bucket::Copies => "copies",
            Bucket::Checksums => "checksums",
            Bucket::Segmentation => "segmentation",
            Bucket::Syscalls => "syscalls",
            Bucket::Wakeups => "wake-ups",
            Bucket::OtherKernel => "other kernel",
            Bucket::OtherUser => "other user",
        }
    }
}

const IDLE: &[&str] = &[
    "default_idle",
    "cpuidle",
    "__cpuidle",
    "pv_native_safe_halt",
    "native_safe_halt",
    "arch_cpu_idle",
    "cpu_idle_poll",
    "do_idle",
    "acpi_idle",
    "intel_idle",
    "mwait_idle",
    "poll_idle",
    "cpu_startup_entry",
];
const COPIES: &[&str] = &[
    "copy_from_iter",
    "copy_to_iter",
    "copy_user",
    "copy_from_user",
    "copy_to_user",
    "copy_mc",
    "copy_page",
    "rep_movs",
    "memcpy",
    "memmove",
    "skb_copy_bits",
    "skb_copy_datagram",
    "csum_partial_copy",
    "csum_and_copy",
];
const CHECKSUMS: &[&str] = &["csum", "checksum"];
/// Words (between `_` or `:`) that name segmentation or GRO.
const SEGMENTATION_WORDS: &[&str] = &["gso", "gro", "tso", "segment", "segs", "Tso", "Coalescer"];
const SYSCALLS: &[&str] = &[
    "entry_SYSCALL",
    "do_syscall_64",
    "syscall_",
    "__x64_sys_",
    "__ia32_sys_",
    "exit_to_user_mode",
    "clear_bhb_loop",
];
const WAKEUPS: &[&str] = &[
    "schedule",
    "try_to_wake_up",
    "ttwu",
    "futex",
    "ep_poll",
    "ep_item_poll",
    "ep_send_events",
    "ep_done_scan",
    "epoll_wait",
    "finish_task_switch",
    "wake_up",
    "autoremove_wake_function",
    "prepare_to_wait",
    "pick_next",
    "enqueue_task",
    "enqueue_entity",
    "dequeue_task",
    "dequeue_entity",
    "__switch_to",
    "switch_mm",
    "update_curr",
    "sched_",
    "select_task_rq",
    "select_idle",
    "psi_",
    "set_next_entity",
    "put_prev",
    "update_load_avg",
    "check_preempt",
    "resched",
    "sock_def_readable",
];

/// The bucket of a sample whose leaf symbol is `sym` (demangled, without
/// offset), in the kernel or not.
pub fn classify(sym: &str, kernel: bool) -> Bucket {
    let has = |pats: &[&str]| pats.iter().any(|p| sym.contains(p));
    let word = |words: &[&str]| {
        sym.split(|c: char| !c.is_ascii_alphanumeric())
            .any(|w| words.contains(&w))
    };
    if kernel && IDLE.iter().any(|p| sym.starts_with(p)) {
        Bucket::Idle
    } else if has(COPIES) {
        Bucket::Copies
    } else if has(CHECKSUMS) {
        Bucket::Checksums
    } else if word(SEGMENTATION_WORDS) {
        Bucket::Segmentation
    } else if kernel && SYSCALLS.iter().any(|p| sym.starts_with(p)) {
        Bucket::Syscalls
    } else if has(WAKEUPS) {
        Bucket::Wakeups
    } else if kernel {
        Bucket::OtherKernel
    } else {
        Bucket::OtherUser
    }
}

/// One sample: who was running and its leaf frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sample {
    /// The thread's command name.
    pub comm: String,
    /// Its process id.
    pub pid: u32,
    /// The leaf symbol (`[unknown]` when perf could not name it), with
    /// Rust's hash suffix and any `+0x…` offset taken off.
    pub sym: String,
    /// Whether the leaf was in the kernel.
    pub kernel: bool,
    /// What it was spent on ([`classify`]).
    pub bucket: Bucket,
}

/// The samples of `perf script -G -F comm,pid,tid,ip,sym,dso` output: one
/// line per sample, `COMM PID/TID IP SYM (DSO)`, where COMM and SYM may
/// hold spaces. Lines that are not samples are skipped.
///
/// The leaf is the sample's own address (`-G` hides the call chain), not
/// the chain's first frame: perf 6.1 on a 6.18 kernel prints an empty call
/// chain for about a quarter of the samples (those taken in `recvmmsg`,
/// for one), and reading leaves from chains would silently lose them.
pub fn parse_script(text: &str) -> Vec<Sample> {
    text.lines().filter_map(parse_line).collect()
}

fn parse_line(line: &str) -> Option<Sample> {
    // Words with their byte offsets, to cut COMM and SYM out whole.
    let mut words = Vec::new();
    let mut start = None;
    for (i, c) in line
        .char_indices()
        .chain(std::iter::once((line.len(), ' ')))
    {
        match (c.is_whitespace(), start) {
            (true, Some(s)) => {
                words.push((s, i));
                start = None;
            }
            (false, None) => start = Some(i),
            _ => {}
        }
    }
    let word = |k: usize| words.get(k).map(|&(s, e)| &line[s..e]);
    // PID/TID, then the address in hex, then SYM (DSO).
    let at = (1..words.len()).find(|&k| {
        let ids = word(k).unwrap_or("").split_once('/');
        let ids_ok = ids.is_some_and(|(p, t)| {
            [p, t]
                .iter()
                .all(|x| !x.is_empty() && x.bytes().all(|b| b.is_ascii_digit()))
        });
        ids_ok && word(k + 1).is_some_and(|w| u64::from_str_radix(w, 16).is_ok())
    })?;
    let pid = word(at)?.split('/').next()?.parse().ok()?;
    let comm = line[words[0].0..words[at - 1].1].to_string();
    let ip = u64::from_str_radix(word(at + 1)?, 16).ok()?;
    let rest = line[words[at + 1].1..].trim();
    let sym = match rest.rfind(" (") {
        Some(i) if rest.ends_with(')') => &rest[..i],
        _ => rest,
    };
    let (sym, kernel) = (clean_symbol(sym.trim()), ip >= 0xffff_8000_0000_0000);
    Some(Sample {
        comm,
        pid,
        bucket: classify(&sym, kernel),
        sym,
        kernel,
    })
}

/// A symbol without its `+0x…` offset and Rust's `::h<16 hex>` hash.
fn clean_symbol(sym: &str) -> String {
    let sym = match sym.rfind("+0x") {
        Some(i) => &sym[..i],
        None => sym,
    };
    let sym = match sym.rsplit_once("::h") {
        Some((s, h)) if h.len() == 16 && h.bytes().all(|b| b.is_ascii_hexdigit()) => s,
        _ => sym,
    };
    if sym.is_empty() {
        "[unknown]".into()
    } else {
        sym.into()
    }
}

/// Who a sample ran for, from the flow's own processes (`pids`: process id
/// to name, such as overlayd and the two iperf3s) and the kernel's threads
/// that run its softirq work; "other processes" for the rest.
pub fn process_group(s: &Sample, pids: &HashMap<u32, &'static str>) -> &'static str {
    if let Some(name) = pids.get(&s.pid) {
        name
    } else if s.comm.starts_with("ksoftirqd") {
        "ksoftirqd"
    } else if s.pid == 0 {
        "idle task (swapper)"
    } else if s.comm.starts_with("kworker") {
        "kworker"
    } else {
        OTHER_PROCESSES
    }
}

/// The group of processes that are not the flow's ([`process_group`]).
pub const OTHER_PROCESSES: &str = "other processes";

/// Whether a sample is the flow's work: not idle, and run for one of its
/// processes or by the kernel's threads (softirq on any of them; softirq
/// that interrupted another process counts as that process's, and is left
/// out).
pub fn in_flow(s: &Sample, pids: &HashMap<u32, &'static str>) -> bool {
    s.bucket != Bucket::Idle && process_group(s, pids) != OTHER_PROCESSES
}

/// A recording's samples.
pub struct Profile {
    /// The samples.
    pub samples: Vec<Sample>,
}

impl Profile {
    /// The samples as one profile.
    pub fn new(samples: Vec<Sample>) -> Profile {
        Profile { samples }
    }

    /// Samples, in all.
    pub fn len(&self) -> usize {
        self.samples.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    /// Samples that `keep` keeps.
    pub fn count(&self, keep: impl Fn(&Sample) -> bool) -> usize {
        self.samples.iter().filter(|s| keep(s)).count()
    }

    /// How many samples that `keep` keeps fall in each bucket, and how many
    /// it keeps.
    pub fn buckets(&self, keep: impl Fn(&Sample) -> bool) -> (HashMap<Bucket, usize>, usize) {
        let mut m = HashMap::new();
        let mut n = 0;
        for s in self.samples.iter().filter(|s| keep(s)) {
            *m.entry(s.bucket).or_insert(0) += 1;
            n += 1;
        }
        (m, n)
    }

    /// The `n` commonest leaf symbols among the samples `keep` keeps:
    /// symbol, samples kept, of them those `part` also keeps, bucket.
    pub fn top(
        &self,
        n: usize,
        keep: impl Fn(&Sample) -> bool,
        part: impl Fn(&Sample) -> bool,
    ) -> Vec<(String, usize, usize, Bucket)> {
        let mut m: HashMap<&str, (usize, usize, Bucket)> = HashMap::new();
        for s in self.samples.iter().filter(|s| keep(s)) {
            let e = m.entry(&s.sym).or_insert((0, 0, s.bucket));
            e.0 += 1;
            e.1 += usize::from(part(s));
        }
        let mut v: Vec<_> = m
            .into_iter()
            .map(|(s, (kept, part, b))| (s.to_string(), kept, part, b))
            .collect();
        v.sort_by(|x, y| y.1.cmp(&x.1).then_with(|| x.0.cmp(&y.0)));
        v.truncate(n);
        v
    }
}

/// Sampling frequency: about 1,000 samples a second per CPU is plenty for
/// shares of a few percent and costs the flow less than perf's default 4,000.
const FREQ: &str = "999";

/// Records `perf record -e cpu-clock -a -g` of the whole machine for
/// `secs` seconds into `file` (at [`FREQ`] Hz, no build-id cache). Panics
/// if perf fails.
pub fn record(file: &Path, secs: usize) {
    let out = Command::new("perf")
        .args([
            "record",
            "-e",
            "cpu-clock",
            "-F",
            FREQ,
            "-a",
            "-g",
            "-N",
            "-q",
            "-o",
        ])
        .arg(file)
        .args(["--", "sleep", &secs.to_string()])
        .stdin(Stdio::null())
        .output()
        .expect("run perf (install linux-perf: make deps)");
    assert!(
        out.status.success(),
        "perf record failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The samples of a recording (`perf script -G`: each sample's own address).
pub fn script(file: &Path) -> Vec<Sample> {
    let out = Command::new("perf")
        .args(["script", "-G", "-F", "comm,pid,tid,ip,sym,dso", "-i"])
        .arg(file)
        .stdin(Stdio::null())
        .output()
        .expect("run perf script");
    assert!(
        out.status.success(),
        "perf script failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    parse_script(&String::from_utf8_lossy(&out.stdout))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leaf_symbols_fall_in_their_buckets() {
        let k = |s| classify(s, true);
        let u = |s| classify(s, false);
        assert_eq!(k("pv_native_safe_halt"), Bucket::Idle);
        assert_eq!(k("default_idle_call"), Bucket::Idle);
        assert_eq!(k("_copy_from_iter"), Bucket::Copies);
        assert_eq!(k("rep_movs_alternative"), Bucket::Copies);
        assert_eq!(k("csum_partial_copy_generic"), Bucket::Copies);
        assert_eq!(u("__memmove_avx_unaligned_erms"), Bucket::Copies);
        assert_eq!(k("csum_partial"), Bucket::Checksums);
        assert_eq!(k("__skb_gro_checksum_complete"), Bucket::Checksums);
        assert_eq!(
            u("overlay_wire::offload::TcpLayout::checksum_state"),
            Bucket::Checksums
        );
        assert_eq!(k("skb_segment"), Bucket::Segmentation);
        assert_eq!(k("__udp_gso_segment"), Bucket::Segmentation);
        assert_eq!(k("dev_gro_receive"), Bucket::Segmentation);
        assert_eq!(u("overlay_wire::offload::Tso::write"), Bucket::Segmentation);
        assert_eq!(
            u("overlay_wire::offload::Coalescer::append"),
            Bucket::Segmentation
        );
        assert_eq!(k("cgroup_rstat_updated"), Bucket::OtherKernel);
        assert_eq!(k("entry_SYSCALL_64_after_hwframe"), Bucket::Syscalls);
        assert_eq!(k("syscall_return_via_sysret"), Bucket::Syscalls);
        assert_eq!(k("__x64_sys_sendmsg"), Bucket::Syscalls);
        assert_eq!(k("__schedule"), Bucket::Wakeups);
        assert_eq!(k("try_to_wake_up"), Bucket::Wakeups);
        assert_eq!(k("ep_poll_callback"), Bucket::Wakeups);
        assert_eq!(k("enqueue_to_backlog"), Bucket::OtherKernel);
        assert_eq!(k("_raw_spin_unlock_irqrestore"), Bucket::OtherKernel);
        assert_eq!(
            u("overlayd::datapath::Forwarder<P>::tx_frame"),
            Bucket::OtherUser
        );
        // A user-space symbol named like an idle function is not idle.
        assert_eq!(u("do_idle_things"), Bucket::OtherUser);
    }

    #[test]
    fn perf_script_samples_are_read_leaf_first() {
        let text = [
            "        overlayd  4242/4242   ffffffffa1234567 _copy_to_iter+0x2b ([kernel.kallsyms])",
            "        worker-1  4242/4250       55d0c0de9999 <overlay_wire::offload::Tso as core::fmt::Debug>::fmt (/t/overlayd)",
            "         swapper     0/0     ffffffffa1000000 pv_native_safe_halt+0xa ([kernel.kallsyms])",
            "    Timer thread    77/78        7f0000000000 [unknown] ([unknown])",
            "        overlayd  4242/4242       55d0c0de1234 overlayd::port::Port::read_frame::h0123456789abcdef (/t/overlayd)",
            "# a comment, not a sample",
            "",
        ]
        .join("\n");
        let s = parse_script(&text);
        assert_eq!(s.len(), 5);
        assert_eq!(
            s[0],
            Sample {
                comm: "overlayd".into(),
                pid: 4242,
                sym: "_copy_to_iter".into(),
                kernel: true,
                bucket: Bucket::Copies,
            }
        );
        assert_eq!(s[1].comm, "worker-1");
        assert_eq!(
            s[1].sym,
            "<overlay_wire::offload::Tso as core::fmt::Debug>::fmt"
        );
        assert!(!s[1].kernel);
        assert_eq!((s[2].pid, s[2].sym.as_str()), (0, "pv_native_safe_halt"));
        assert_eq!(s[2].bucket, Bucket::Idle);
        assert_eq!((s[3].comm.as_str(), s[3].pid), ("Timer thread", 77));
        assert_eq!(s[3].sym, "[unknown]");
        assert_eq!(s[4].sym, "overlayd::port::Port::read_frame");
        assert_eq!(s[4].bucket, Bucket::OtherUser);
        let p = Profile::new(s);
        let (b, n) = p.buckets(|s| s.pid == 4242);
        assert_eq!((n, b[&Bucket::Copies], b[&Bucket::Segmentation]), (3, 1, 1));
        assert_eq!(p.top(1, |_| true, |s| s.pid == 0)[0].1, 1);
        assert_eq!(p.top(9, |s| s.pid == 4242, |_| true).len(), 3);
    }
}
