//! bpftrace attached to a daemon of the lab, and reading what it printed.
//!
//! The USDT probes are gated by semaphores, so bpftrace attaches to the
//! running daemon (`-p PID`), from the root namespace (a pid is a pid in
//! every network namespace). A [`Trace`] is one bpftrace, run directly
//! ([`Lab::bpftrace`]) or through the library's runner `probes/ovtrace`
//! ([`Lab::ovtrace`]). It runs in a process group of its own, writing its
//! stdout and stderr, line-buffered, to a file in the lab directory (a pipe
//! nobody reads could block it). It is ready once the program's `BEGIN`
//! has printed "Hit Ctrl-C" (every library script does) after bpftrace's
//! "Attaching N probes...": bpftrace fires `BEGIN` only after every probe
//! is attached. [`Trace::finish`]
//! sends SIGINT, so that `END` runs and the maps are printed; a `Trace`
//! dropped unfinished is killed. bpftrace also exits by itself when the
//! daemon it traces does.

use crate::daemon::Daemon;
use crate::lab::{Host, Lab};
use crate::tools::{describe, require_tools};
use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long bpftrace may take to attach (it compiles the program and
/// reads the binary's notes; slow on a busy machine).
const ATTACH_TIMEOUT: Duration = Duration::from_secs(60);

/// What a program prints in `BEGIN` to say it is tracing.
pub const READY: &str = "Hit Ctrl-C";

/// A running bpftrace, see the module docs.
pub struct Trace {
    child: Option<Child>,
    out: PathBuf,
    cmd: String,
}

impl Trace {
    /// Starts `cmd` (a bpftrace, or something that execs one) writing to
    /// `out`, and waits until its program has started.
    fn start(mut cmd: Command, out: PathBuf) -> Trace {
        let shown = describe(&cmd);
        let f = File::create(&out).unwrap_or_else(|e| panic!("cannot make {}: {e}", out.display()));
        let f2 = f.try_clone().expect("dup trace output fd");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(f)
            .stderr(f2)
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run `{shown}`: {e}"));
        let mut t = Trace {
            child: Some(child),
            out,
            cmd: shown,
        };
        t.wait_ready();
        t
    }

    /// Everything the trace has printed so far.
    pub fn output(&self) -> String {
        read_lossy(&self.out)
    }

    /// The command line, for messages.
    pub fn command(&self) -> &str {
        &self.cmd
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + ATTACH_TIMEOUT;
        loop {
            let out = self.output();
            if let Some(i) = out.find("Attaching ") {
                if out[i..].contains(READY) {
                    return;
                }
            }
            let child = self.child.as_mut().expect("a started trace has its child");
            if let Ok(Some(st)) = child.try_wait() {
                panic!("`{}` exited before it was ready ({st}):\n{out}", self.cmd);
            }
            if Instant::now() >= deadline {
                panic!(
                    "`{}` was not ready within {ATTACH_TIMEOUT:?}:\n{out}",
                    self.cmd
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Stops the trace with SIGINT (its `END` prints the maps), waits up to
    /// 60 s for it to exit (detaching can take long on a loaded machine),
    /// and returns everything it printed.
    pub fn finish(mut self) -> String {
        let mut child = self.child.take().expect("only finish() takes the child");
        signal(&child, libc::SIGINT);
        let deadline = Instant::now() + Duration::from_secs(60);
        let done = loop {
            if let Ok(Some(_)) = child.try_wait() {
                break true;
            }
            if Instant::now() >= deadline {
                break false;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        if !done {
            signal(&child, libc::SIGKILL);
            let _ = child.wait();
            panic!(
                "`{}` did not stop on SIGINT within 60 s:\n{}",
                self.cmd,
                self.output()
            );
        }
        self.output()
    }
}

impl Drop for Trace {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            signal(&c, libc::SIGKILL);
            let _ = c.wait();
        }
    }
}

fn signal(child: &Child, sig: i32) {
    // SAFETY: kill(2) has no memory effects; a group that is gone gives ESRCH.
    unsafe { libc::kill(-(child.id() as libc::pid_t), sig) };
}

fn read_lossy(p: &Path) -> String {
    std::fs::read(p)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

/// The path of the library's runner, `probes/ovtrace`.
pub fn ovtrace_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("probes")
        .join("ovtrace")
}

/// The probes a provider's D file defines (`probes/NAME.d`), with the
/// dashed names traces use (`target__miss` is `target-miss`).
pub fn provider_probes(provider: &str) -> Vec<String> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("probes")
        .join(format!("{provider}.d"));
    let text = read_lossy(&p);
    let names: Vec<String> = text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("probe "))
        .filter_map(|l| l.split('(').next())
        .map(|n| n.trim().replace("__", "-"))
        .collect();
    assert!(!names.is_empty(), "no probes found in {}", p.display());
    names
}

/// The value of the map entry printed as `KEY: VALUE` (e.g.
/// `@count[tx]`) in a trace's output, if it is there.
pub fn map_value(output: &str, key: &str) -> Option<u64> {
    output
        .lines()
        .filter_map(|l| l.trim().strip_prefix(key)?.strip_prefix(": "))
        .find_map(|v| v.trim().parse().ok())
}

impl Lab {
    /// Attaches bpftrace with `program` to a daemon on a host, and waits
    /// until it is ready (`program` must print [`READY`] in `BEGIN`). In the
    /// program, `@OVERLAYD@` and `@VARPD@` stand for the binaries' paths,
    /// as in the library's scripts.
    pub fn bpftrace(&mut self, h: Host, d: Daemon, label: &str, program: &str) -> Trace {
        require_tools(&["bpftrace"]);
        let pid = self.daemon_pid(h, d);
        // bpftrace finds a probe's arguments only under the binary's
        // canonical path (no `..`), the one /proc/PID/exe shows.
        let canon = |name: &str| {
            let b = self.bin(name);
            let c = b
                .canonicalize()
                .unwrap_or_else(|e| panic!("{}: {e}", b.display()));
            c.to_string_lossy().into_owned()
        };
        let program = program
            .replace("@OVERLAYD@", &canon("overlayd"))
            .replace("@VARPD@", &canon("varpd"));
        let mut cmd = Command::new("bpftrace");
        cmd.args(["-B", "line", "-p", &pid.to_string(), "-e", &program]);
        Trace::start(cmd, self.dir().join(format!("{label}.trace")))
    }

    /// Runs a library script through `probes/ovtrace NAME -p PID` on a
    /// daemon of a host, and waits until it is ready.
    pub fn ovtrace(&mut self, h: Host, d: Daemon, script: &str) -> Trace {
        let pid = self.daemon_pid(h, d).to_string();
        self.ovtrace_args(script, &[script, "-p", &pid])
    }

    /// Runs `probes/ovtrace ARGS` (from the root namespace, as an operator
    /// would), and waits until its trace is ready; `label` names its
    /// output file in the lab directory.
    pub fn ovtrace_args(&self, label: &str, args: &[&str]) -> Trace {
        require_tools(&["bpftrace"]);
        let mut cmd = Command::new(ovtrace_path());
        cmd.args(args);
        Trace::start(cmd, self.dir().join(format!("{label}.ovtrace")))
    }

    fn daemon_pid(&mut self, h: Host, d: Daemon) -> u32 {
        self.pid(h, d)
            .unwrap_or_else(|| panic!("{} does not run on host {}", d.binary(), self.ns(h)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn map_values_are_read() {
        let out =
            "Attaching 3 probes...\n\n@count[tx]: 12\n@count[tx-other]: 3\n@r[-, unknown-vni]: 1\n";
        assert_eq!(map_value(out, "@count[tx]"), Some(12));
        assert_eq!(map_value(out, "@r[-, unknown-vni]"), Some(1));
        assert_eq!(map_value(out, "@count[rx]"), None);
    }

    #[test]
    fn probes_are_read_from_the_d_files() {
        let o = provider_probes("overlay");
        assert!(o.contains(&"target-queue-overflow".to_string()), "{o:?}");
        assert!(o.contains(&"tx".to_string()), "{o:?}");
        let v = provider_probes("varpd");
        assert!(v.contains(&"proxy-arp".to_string()), "{v:?}");
    }
}
