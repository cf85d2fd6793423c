//! The daemons under test, as processes inside a host's namespace.
//!
//! A daemon runs as `ip netns exec NS BIN --run-dir R --state-dir S`.
//! `ip netns exec` execs the daemon in place, so the child we hold *is* the
//! daemon; it gets a process group of its own so that stopping it reaches
//! anything it might spawn. Its stderr (its log) and stdout are appended to
//! one file per host and daemon, kept across restarts. A daemon is ready
//! when its control socket accepts a connection: a socket file alone proves
//! nothing after a kill, since a stale one stays behind.

use crate::tools::tail;
use std::fs::OpenOptions;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The two daemons a host runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Daemon {
    /// The data plane.
    Overlayd,
    /// The virtual ARP daemon.
    Varpd,
}

impl Daemon {
    /// Both, in the order a host starts them.
    pub const ALL: [Daemon; 2] = [Daemon::Overlayd, Daemon::Varpd];

    /// The binary's file name (also the log's stem).
    pub fn binary(self) -> &'static str {
        match self {
            Daemon::Overlayd => "overlayd",
            Daemon::Varpd => "varpd",
        }
    }

    /// Its control socket's file name in the run directory.
    pub fn socket(self) -> &'static str {
        match self {
            Daemon::Overlayd => overlay_api::OVERLAYD_SOCKET,
            Daemon::Varpd => overlay_api::VARPD_SOCKET,
        }
    }
}

/// Where a daemon's files are.
pub(crate) struct Paths<'a> {
    pub bin: &'a Path,
    pub ns: &'a str,
    pub run_dir: &'a Path,
    pub state_dir: &'a Path,
    pub log: &'a Path,
    /// More arguments for the daemon.
    pub args: &'a [String],
}

/// A daemon the lab started and has not stopped yet.
pub(crate) struct Running {
    pub host: usize,
    pub daemon: Daemon,
    pub child: Child,
}

/// Starts a daemon in its namespace, and waits until its control socket
/// answers. Panics, showing the end of its log, if it exits or stays
/// silent for 10 s.
pub(crate) fn start(daemon: Daemon, p: &Paths<'_>) -> Child {
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(p.log)
        .unwrap_or_else(|e| panic!("cannot open log {}: {e}", p.log.display()));
    let log2 = log.try_clone().expect("dup log fd");
    let mut child = Command::new("ip")
        .args(["netns", "exec", p.ns])
        .arg(p.bin)
        .arg("--run-dir")
        .arg(p.run_dir)
        .arg("--state-dir")
        .arg(p.state_dir)
        .args(p.args)
        .stdin(Stdio::null())
        .stdout(log2)
        .stderr(log)
        .process_group(0)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", p.bin.display()));
    let sock = p.run_dir.join(daemon.socket());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(Some(st)) = child.try_wait() {
            panic!(
                "{} in {} exited at start ({st}); its log {}:\n{}",
                daemon.binary(),
                p.ns,
                p.log.display(),
                tail(p.log, 40)
            );
        }
        if UnixStream::connect(&sock).is_ok() {
            return child;
        }
        if Instant::now() >= deadline {
            stop(&mut child, libc::SIGKILL, Duration::ZERO);
            panic!(
                "{} in {} did not answer on {} within 10 s; its log:\n{}",
                daemon.binary(),
                p.ns,
                sock.display(),
                tail(p.log, 40)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Sends `sig` to the daemon's process group, waits up to `grace` for it to
/// exit, then kills the group outright and reaps the child.
pub(crate) fn stop(child: &mut Child, sig: i32, grace: Duration) {
    signal(child, sig);
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    signal(child, libc::SIGKILL);
    let _ = child.wait();
}

/// Sends `sig` to the child's process group (the child leads it).
pub(crate) fn signal(child: &Child, sig: i32) {
    let pgid = child.id() as libc::pid_t;
    // SAFETY: kill(2) has no memory effects; a group that is gone gives ESRCH.
    unsafe { libc::kill(-pgid, sig) };
}
