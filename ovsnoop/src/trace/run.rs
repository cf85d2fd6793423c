//! Running the trace: find the daemons, start one bpftrace per daemon with
//! the generated program, merge their lines in firing order, stop cleanly.
//!
//! The daemons are those whose run directory is ovsnoop's `--run-dir`
//! (their `--run-dir` argument, else `OVERLAY_RUN_DIR`, else
//! `/run/overlay`), as `probes/ovtrace` finds them. overlayd is required;
//! varpd is optional (without it, injected frames are not named by proxy
//! kind). bpftrace attaches with `-p PID` (the probes are gated by
//! semaphores) to the binary as `/proc/PID/exe` names it: its canonical
//! path, which is the only one under which bpftrace finds the probes'
//! arguments (or `/proc/PID/exe` itself when the file was replaced).
//!
//! Each bpftrace runs in a process group of its own, with a parent-death
//! signal, writing to a pipe that a thread reads. Lines are held for
//! [`REORDER`] and released in `nsecs` order, so that varpd's `proxy-arp`
//! comes before the `inject` it caused in overlayd. On SIGINT or SIGTERM
//! (the caller's `stop` flag), or when overlayd's tracer ends because
//! overlayd did, every bpftrace gets SIGINT, then SIGKILL after 5 s, and
//! is reaped before `run` returns.

use super::event::{Assembler, ProbeEvent, Record};
use super::script::{self, Probe};
use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a line waits for lines of the other tracer that fired earlier.
const REORDER: Duration = Duration::from_millis(150);
/// How long bpftrace may take to compile and attach on a busy machine.
const ATTACH_TIMEOUT: Duration = Duration::from_secs(120);

/// Why a trace cannot start or go on.
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    /// The probe definitions are not what ovsnoop reads.
    #[error(transparent)]
    Script(#[from] script::ScriptError),
    /// No overlayd for this run directory.
    #[error("no overlayd runs with run directory {0} (start it, or give --run-dir DIR)")]
    NoOverlayd(PathBuf),
    /// Several daemons share the run directory.
    #[error("{n} {daemon} processes run with run directory {dir}: {pids}")]
    Several {
        /// Which daemon.
        daemon: &'static str,
        /// How many.
        n: usize,
        /// The run directory.
        dir: PathBuf,
        /// Their pids.
        pids: String,
    },
    /// bpftrace is not installed.
    #[error(
        "bpftrace is not installed (Debian: apt-get install bpftrace; lab/deps.sh installs it)"
    )]
    NoBpftrace,
    /// The daemon's binary cannot be read.
    #[error("cannot read /proc/{pid}/exe (are you root?): {source}")]
    Exe {
        /// The daemon.
        pid: u32,
        /// Why.
        source: std::io::Error,
    },
    /// bpftrace could not start or attach.
    #[error("bpftrace on {daemon} (pid {pid}) failed: {detail}")]
    Bpftrace {
        /// Which daemon.
        daemon: &'static str,
        /// Its pid.
        pid: u32,
        /// bpftrace's own words.
        detail: String,
    },
}

/// The run directory a process uses, as overlayd and varpd choose it.
fn run_dir_of(pid: u32) -> Option<PathBuf> {
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
    for (i, a) in args.iter().enumerate() {
        if *a == b"--run-dir" {
            return args
                .get(i + 1)
                .map(|v| PathBuf::from(String::from_utf8_lossy(v).as_ref()));
        }
        if let Some(v) = a.strip_prefix(b"--run-dir=") {
            return Some(PathBuf::from(String::from_utf8_lossy(v).as_ref()));
        }
    }
    if let Ok(env) = std::fs::read(format!("/proc/{pid}/environ")) {
        for kv in env.split(|b| *b == 0) {
            if let Some(v) = kv.strip_prefix(b"OVERLAY_RUN_DIR=") {
                return Some(PathBuf::from(String::from_utf8_lossy(v).as_ref()));
            }
        }
    }
    Some(PathBuf::from("/run/overlay"))
}

fn canon(p: &Path) -> PathBuf {
    p.canonicalize().unwrap_or_else(|_| p.to_path_buf())
}

/// The pids of processes named `daemon` whose run directory is `dir`.
pub fn find_daemon(daemon: &'static str, dir: &Path) -> Result<Option<u32>, TraceError> {
    let want = canon(dir);
    let mut found = Vec::new();
    if let Ok(rd) = std::fs::read_dir("/proc") {
        for e in rd.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            if comm.trim_end() != daemon {
                continue;
            }
            if run_dir_of(pid).is_some_and(|d| canon(&d) == want) {
                found.push(pid);
            }
        }
    }
    match found.len() {
        0 => Ok(None),
        1 => Ok(Some(found[0])),
        n => Err(TraceError::Several {
            daemon,
            n,
            dir: dir.to_path_buf(),
            pids: found
                .iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join(", "),
        }),
    }
}

/// The daemon's binary, as bpftrace must name it.
fn exe(pid: u32) -> Result<String, TraceError> {
    let p = std::fs::read_link(format!("/proc/{pid}/exe"))
        .map_err(|source| TraceError::Exe { pid, source })?;
    let s = p.to_string_lossy().into_owned();
    if s.ends_with(" (deleted)") {
        return Ok(format!("/proc/{pid}/exe"));
    }
    Ok(s)
}

/// The generated program for the daemon `daemon` running `bin`.
pub fn program_for(daemon: &str, bin: &str) -> Result<(String, Vec<Probe>), TraceError> {
    let (file, text, wants) = if daemon == "overlayd" {
        ("overlay.d", script::OVERLAY_D, script::OVERLAY_WANTS)
    } else {
        ("varpd.d", script::VARPD_D, script::VARPD_WANTS)
    };
    let all = script::probes(file, text)?;
    let sel = script::select(file, &all, wants)?;
    Ok((script::program(bin, &sel), sel))
}

enum Msg {
    Line(usize, String),
    Eof(usize),
}

struct Tracer {
    daemon: &'static str,
    pid: u32,
    child: Child,
    stderr: Arc<Mutex<String>>,
    ready: bool,
    done: bool,
}

impl Tracer {
    fn bpftrace_pid(&self) -> u32 {
        self.child.id()
    }

    fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on the tracer's own process group; ESRCH if gone.
        unsafe { libc::kill(-(self.child.id() as libc::pid_t), sig) };
    }

    fn detail(&self) -> String {
        let e = self.stderr.lock().map(|s| s.clone()).unwrap_or_default();
        let e = e.trim();
        if e.is_empty() {
            "it exited without a word".into()
        } else {
            e.to_string()
        }
    }
}

fn on_path(tool: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
}

fn spawn(
    idx: usize,
    daemon: &'static str,
    pid: u32,
    program: &str,
    tx: mpsc::Sender<Msg>,
) -> Result<Tracer, TraceError> {
    let mut cmd = Command::new("bpftrace");
    cmd.args(["-B", "line", "-p", &pid.to_string(), "-e", program])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    // SAFETY: prctl(2) is async-signal-safe; it only sets a flag on the child.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
            Ok(())
        });
    }
    let mut child = cmd.spawn().map_err(|e| TraceError::Bpftrace {
        daemon,
        pid,
        detail: format!("cannot run bpftrace: {e}"),
    })?;
    let stdout = child.stdout.take().expect("piped");
    let mut stderr = child.stderr.take().expect("piped");
    let err_text = Arc::new(Mutex::new(String::new()));
    let et = Arc::clone(&err_text);
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = stderr.read(&mut buf) {
            if n == 0 {
                break;
            }
            if let Ok(mut s) = et.lock() {
                s.push_str(&String::from_utf8_lossy(&buf[..n]));
                if s.len() > 16384 {
                    let cut = s.len() - 8192;
                    let cut = (cut..s.len()).find(|i| s.is_char_boundary(*i)).unwrap_or(0);
                    s.drain(..cut);
                }
            }
        }
    });
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(Msg::Line(idx, line)).is_err() {
                return;
            }
        }
        let _ = tx.send(Msg::Eof(idx));
    });
    Ok(Tracer {
        daemon,
        pid,
        child,
        stderr: err_text,
        ready: false,
        done: false,
    })
}

/// What one trace saw, for the summary.
#[derive(Default, Debug)]
pub struct Summary {
    /// Records made (frames and lookup answers).
    pub records: u64,
    /// Frames per decision kind (`sent`, `dropped`, ...).
    pub by_decision: std::collections::BTreeMap<&'static str, u64>,
    /// Drops per reason.
    pub drops: std::collections::BTreeMap<String, u64>,
}

impl Summary {
    fn count(&mut self, r: &Record) {
        use super::event::Decision as D;
        self.records += 1;
        let k = match &r.decision {
            D::Sent { .. } => "sent",
            D::Queued { .. } => "queued",
            D::ToVarpd { .. } => "to varpd",
            D::Dropped { reason } => {
                *self.drops.entry(reason.clone()).or_default() += 1;
                "dropped"
            }
            D::Delivered { .. } => "delivered",
            D::Injected { .. } => "injected",
            D::Answered { .. } => "lookups answered",
            D::Unknown => "undecided",
        };
        *self.by_decision.entry(k).or_default() += 1;
    }

    /// `N events: sent X, dropped Y (reason n), ...`.
    pub fn text(&self) -> String {
        let mut s = format!("{} events traced", self.records);
        for (k, n) in &self.by_decision {
            s.push_str(&format!("; {k} {n}"));
            if *k == "dropped" {
                let r: Vec<String> = self.drops.iter().map(|(r, n)| format!("{r} {n}")).collect();
                s.push_str(&format!(" ({})", r.join(", ")));
            }
        }
        s
    }
}

/// CLOCK_REALTIME − CLOCK_MONOTONIC, to turn bpftrace's `nsecs` into wall time.
fn wall_offset_ns() -> i128 {
    let now = |clk| {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `ts` is a valid timespec to write.
        unsafe { libc::clock_gettime(clk, &mut ts) };
        i128::from(ts.tv_sec) * 1_000_000_000 + i128::from(ts.tv_nsec)
    };
    now(libc::CLOCK_REALTIME) - now(libc::CLOCK_MONOTONIC)
}

/// Traces the daemons of `run_dir` until `stop` is set or overlayd exits,
/// calling `ready` once every probe is attached (with a description of
/// what is traced) and `each` for every record, with its wall-clock time.
pub fn run(
    run_dir: &Path,
    stop: &AtomicBool,
    ready: impl FnOnce(&str),
    mut each: impl FnMut(u64, &Record),
) -> Result<Summary, TraceError> {
    if !on_path("bpftrace") {
        return Err(TraceError::NoBpftrace);
    }
    let overlayd =
        find_daemon("overlayd", run_dir)?.ok_or_else(|| TraceError::NoOverlayd(run_dir.into()))?;
    let varpd = find_daemon("varpd", run_dir)?;
    let (tx, rx) = mpsc::channel();
    let mut tracers: Vec<Tracer> = Vec::new();
    let mut probes: Vec<Probe> = Vec::new();
    let result = (|| {
        for (daemon, pid) in [("overlayd", Some(overlayd)), ("varpd", varpd)] {
            let Some(pid) = pid else { continue };
            let (prog, sel) = program_for(daemon, &exe(pid)?)?;
            probes.extend(sel);
            let t = spawn(tracers.len(), daemon, pid, &prog, tx.clone())?;
            tracers.push(t);
        }
        Ok::<(), TraceError>(())
    })();
    drop(tx);
    let result = result.and_then(|()| wait_ready(&mut tracers, &rx, stop));
    if let Err(e) = result {
        stop_all(&mut tracers);
        return Err(e);
    }
    let what: Vec<String> = tracers
        .iter()
        .map(|t| {
            format!(
                "{} (pid {}, bpftrace pid {})",
                t.daemon,
                t.pid,
                t.bpftrace_pid()
            )
        })
        .collect();
    ready(&what.join(" and "));

    let offset = wall_offset_ns();
    let wall = |ns: u64| (i128::from(ns) + offset).max(0) as u64;
    let mut summary = Summary::default();
    let mut asm = Assembler::default();
    let mut held: Vec<(Instant, u64, ProbeEvent)> = Vec::new();
    let mut seq = 0u64;
    let mut emit = |e: &ProbeEvent, asm: &mut Assembler, summary: &mut Summary| {
        for r in asm.push(e) {
            summary.count(&r);
            each(wall(r.ns), &r);
        }
    };
    let mut release = |held: &mut Vec<(Instant, u64, ProbeEvent)>,
                       all: bool,
                       asm: &mut Assembler,
                       summary: &mut Summary| {
        held.sort_by_key(|(_, s, e)| (e.ns, *s));
        let now = Instant::now();
        let n = if all {
            held.len()
        } else {
            held.iter()
                .position(|(at, _, _)| now.duration_since(*at) < REORDER)
                .unwrap_or(held.len())
        };
        for (_, _, e) in held.drain(..n) {
            emit(&e, asm, summary);
        }
    };
    let mut overlayd_gone = false;
    while !stop.load(Ordering::Relaxed) && !overlayd_gone {
        match rx.recv_timeout(Duration::from_millis(50)) {
            Ok(Msg::Line(_, l)) => {
                if let Some(e) = ProbeEvent::parse(&l, &probes) {
                    seq += 1;
                    held.push((Instant::now(), seq, e));
                }
            }
            Ok(Msg::Eof(i)) => {
                tracers[i].done = true;
                if tracers[i].daemon == "overlayd" {
                    overlayd_gone = true;
                    eprintln!(
                        "ovsnoop: the trace of overlayd (pid {}) ended: {}",
                        tracers[i].pid,
                        tracers[i].detail()
                    );
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
        release(&mut held, false, &mut asm, &mut summary);
    }
    stop_all(&mut tracers);
    // What the tracers printed before they stopped.
    while let Ok(m) = rx.try_recv() {
        if let Msg::Line(_, l) = m {
            if let Some(e) = ProbeEvent::parse(&l, &probes) {
                seq += 1;
                held.push((Instant::now(), seq, e));
            }
        }
    }
    release(&mut held, true, &mut asm, &mut summary);
    if let Some(r) = asm.finish() {
        summary.count(&r);
        each(wall(r.ns), &r);
    }
    Ok(summary)
}

fn wait_ready(
    tracers: &mut [Tracer],
    rx: &mpsc::Receiver<Msg>,
    stop: &AtomicBool,
) -> Result<(), TraceError> {
    let deadline = Instant::now() + ATTACH_TIMEOUT;
    let ready_line = format!("{}\tready", script::TAG);
    while tracers.iter().any(|t| !t.ready) {
        if stop.load(Ordering::Relaxed) {
            return Ok(());
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            let t = tracers.iter().find(|t| !t.ready).expect("one is not ready");
            return Err(TraceError::Bpftrace {
                daemon: t.daemon,
                pid: t.pid,
                detail: format!("not attached after {ATTACH_TIMEOUT:?}: {}", t.detail()),
            });
        }
        match rx.recv_timeout(left.min(Duration::from_millis(100))) {
            Ok(Msg::Line(i, l)) if l == ready_line => tracers[i].ready = true,
            Ok(Msg::Line(..)) => {}
            Ok(Msg::Eof(i)) => {
                let t = &mut tracers[i];
                t.done = true;
                // Give stderr's reader a moment to collect the reason.
                let _ = t.child.wait();
                std::thread::sleep(Duration::from_millis(100));
                return Err(TraceError::Bpftrace {
                    daemon: t.daemon,
                    pid: t.pid,
                    detail: t.detail(),
                });
            }
            Err(_) => {}
        }
    }
    Ok(())
}

/// SIGINT to every tracer, SIGKILL to those still there after 5 s; reaps all.
fn stop_all(tracers: &mut [Tracer]) {
    for t in tracers.iter() {
        t.signal(libc::SIGINT);
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    for t in tracers.iter_mut() {
        loop {
            match t.child.try_wait() {
                Ok(Some(_)) | Err(_) => break,
                Ok(None) if Instant::now() >= deadline => {
                    t.signal(libc::SIGKILL);
                    let _ = t.child.wait();
                    break;
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    }
}
