//! Network namespaces: making them, entering one from a thread, deleting
//! them with everything inside, and reaping those a killed run left behind.

use crate::tools::{run, run_ok};
use std::fs::File;
use std::os::fd::AsRawFd;
use std::process::Command;
use std::sync::Mutex;
use std::time::Duration;

/// Prefix of every namespace the harness makes: `ovt<pid>-<n>-<host>`.
pub(crate) const PREFIX: &str = "ovt";

/// Serialises `ip netns add`/`del` within this process: parallel tests would
/// otherwise race on the first mount of `/run/netns`.
static NETNS_LOCK: Mutex<()> = Mutex::new(());

fn lock() -> std::sync::MutexGuard<'static, ()> {
    // A test that panicked while holding the lock left nothing half-done
    // that matters here, so a poisoned lock is still good.
    NETNS_LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

/// Makes namespace `name` with its loopback up.
pub(crate) fn add(name: &str) {
    {
        let _g = lock();
        run_ok(Command::new("ip").args(["netns", "add", name]));
    }
    run_ok(Command::new("ip").args(["-n", name, "link", "set", "lo", "up"]));
}

/// Process ids inside namespace `name` (empty when it is gone).
pub(crate) fn pids(name: &str) -> Vec<i32> {
    let out = run(Command::new("ip").args(["netns", "pids", name]));
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

/// Kills every process in namespace `name`, then deletes it. Never panics:
/// it runs from `Drop`, also while a test is already panicking.
pub(crate) fn delete(name: &str) {
    for _ in 0..20 {
        let p = pids(name);
        if p.is_empty() {
            break;
        }
        for pid in p {
            // SAFETY: kill(2) has no memory effects; a stale pid is harmless (ESRCH).
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _g = lock();
    let _ = Command::new("ip").args(["netns", "del", name]).output();
}

/// Deletes namespaces of earlier runs whose process is gone (a test binary
/// killed by a timeout cannot run its `Drop`s). Namespaces of live
/// processes, including parallel runs, are left alone.
pub(crate) fn reap_stale() {
    let out = run(Command::new("ip").args(["netns", "list"]));
    let me = std::process::id();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Some(name) = line.split_whitespace().next() else {
            continue;
        };
        let Some(rest) = name.strip_prefix(PREFIX) else {
            continue;
        };
        let Some(Ok(pid)) = rest.split('-').next().map(str::parse::<u32>) else {
            continue;
        };
        if pid != me && !running(pid) {
            delete(name);
        }
    }
}

/// Whether process `pid` exists and is not a zombie (a killed run stays a
/// zombie until its parent or init reaps it).
fn running(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/status")) {
        Ok(s) => !s
            .lines()
            .any(|l| l.starts_with("State:") && l.contains('Z')),
        Err(_) => false,
    }
}

/// Runs `f` on a new thread that has entered namespace `name` with
/// `setns(2)`, and returns what it returns. Sockets that `f` opens live in
/// that namespace. A panic in `f` is passed on to the caller as it was.
pub(crate) fn run_in<R: Send, F: FnOnce() -> R + Send>(name: &str, f: F) -> R {
    let path = format!("/run/netns/{name}");
    let ns = File::open(&path).unwrap_or_else(|e| panic!("cannot open {path}: {e}"));
    std::thread::scope(|s| {
        let h = s.spawn(|| {
            // SAFETY: setns(2) on a descriptor we own; a network namespace
            // may be entered by one thread of a multithreaded process, and
            // only this thread (which ends with `f`) changes namespace.
            let rc = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
            if rc != 0 {
                panic!("setns({path}): {}", std::io::Error::last_os_error());
            }
            f()
        });
        h.join().unwrap_or_else(|p| std::panic::resume_unwind(p))
    })
}
