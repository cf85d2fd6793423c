//! Running commands, reading `ping`'s verdict, waiting for conditions.

use overlay_api::Mac;
use std::fmt;
use std::path::Path;
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

/// Debian packages that provide the tools the harness and the tests use.
const PACKAGES: &str = "iproute2 iputils-ping iperf3 ethtool tshark tcpdump bpftrace linux-perf";

/// Panics unless every tool is on `PATH`, saying how to install it.
pub fn require_tools(tools: &[&str]) {
    for t in tools {
        if !on_path(t) {
            panic!("missing tool '{t}': install it (as root, `make deps` installs {PACKAGES})");
        }
    }
}

/// Whether an executable of that name is on `PATH`.
fn on_path(tool: &str) -> bool {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path).any(|dir| {
        std::fs::metadata(dir.join(tool))
            .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            .unwrap_or(false)
    })
}

/// A command as a shell user would type it, for messages.
pub(crate) fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// Runs a command to completion; panics only if it cannot be started.
pub(crate) fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run `{}`: {e}", describe(cmd)))
}

/// Runs a command and panics, showing its output, unless it exits 0.
pub(crate) fn run_ok(cmd: &mut Command) -> Output {
    let out = run(cmd);
    if !out.status.success() {
        panic!(
            "`{}` failed ({}):\n{}",
            describe(cmd),
            out.status,
            text(&out)
        );
    }
    out
}

/// stdout and stderr of a command, for messages and for matching.
pub(crate) fn text(out: &Output) -> String {
    let mut s = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.stderr.is_empty() {
        if !s.is_empty() && !s.ends_with('\n') {
            s.push('\n');
        }
        s.push_str(&String::from_utf8_lossy(&out.stderr));
    }
    s
}

/// The last `lines` lines of a file, or a note saying why there are none.
pub(crate) fn tail(path: &Path, lines: usize) -> String {
    match std::fs::read(path) {
        Ok(b) => {
            let s = String::from_utf8_lossy(&b);
            let all: Vec<&str> = s.lines().collect();
            all[all.len().saturating_sub(lines)..].join("\n")
        }
        Err(e) => format!("(cannot read {}: {e})", path.display()),
    }
}

/// Polls `f` every 100 ms until it holds or `timeout` passes; true if it held.
/// `f` is always tried at least once, and once more at the deadline.
pub fn wait_for(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// What one run of `ping` saw.
#[derive(Clone, Debug)]
pub struct Ping {
    /// Echo requests sent.
    pub transmitted: u32,
    /// Echo replies received.
    pub received: u32,
    /// Everything ping printed, with the command line first.
    pub output: String,
}

impl Ping {
    /// Reads the `N packets transmitted, M received` summary; a run that
    /// printed none (ping could not start) counts as nothing sent.
    pub(crate) fn parse(output: String) -> Ping {
        let mut p = Ping {
            transmitted: 0,
            received: 0,
            output,
        };
        if let Some(line) = p.output.lines().find(|l| l.contains("packets transmitted")) {
            let num_before = |word: &str| -> Option<u32> {
                let head = &line[..line.find(word)?];
                head.rsplit([' ', ','])
                    .find(|t| !t.is_empty())?
                    .parse()
                    .ok()
            };
            p.transmitted = num_before(" packets transmitted").unwrap_or(0);
            p.received = num_before(" received").unwrap_or(0);
        }
        p
    }

    /// Every request was answered (and at least one was sent).
    pub fn all_answered(&self) -> bool {
        self.transmitted > 0 && self.received == self.transmitted
    }

    /// Not one reply came back.
    pub fn none_answered(&self) -> bool {
        self.received == 0
    }
}

impl fmt::Display for Ping {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{} answered\n{}",
            self.received,
            self.transmitted,
            self.output.trim_end()
        )
    }
}

/// A `ping` running in the background, started by
/// [`crate::Lab::ping_background`]; [`BackgroundPing::finish`] waits for it.
/// Dropped unfinished (a test failed first), it is killed and reaped.
pub struct BackgroundPing {
    pub(crate) child: Option<Child>,
    pub(crate) cmd: String,
}

impl BackgroundPing {
    /// Waits for ping to end and reads its verdict.
    pub fn finish(mut self) -> Ping {
        let child = self.child.take().expect("only finish() takes the child");
        let out = child
            .wait_with_output()
            .unwrap_or_else(|e| panic!("waiting for `{}`: {e}", self.cmd));
        Ping::parse(format!("$ {}\n{}", self.cmd, text(&out)))
    }
}

impl Drop for BackgroundPing {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The first line of `text` holding a whitespace-separated word that is the
/// MAC address `mac`, in whichever spelling (`02:08:…` or dladm's `2:8:…`).
pub fn find_mac_line<'a>(text: &'a str, mac: &str) -> Option<&'a str> {
    let want: Mac = mac.parse().unwrap_or_else(|e| panic!("test bug: {e}"));
    text.lines()
        .find(|l| l.split_whitespace().any(|w| w.parse::<Mac>() == Ok(want)))
}

/// A number from the environment variable `name`, or `default` when it is
/// unset or not a number (the benchmarks' ROUNDS, SECS, ...).
pub fn env_num(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The median of some figures (the mean of the middle two for an even count).
pub fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    let n = s.len();
    if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ping_summary_is_read() {
        let p = Ping::parse(
            "x\n3 packets transmitted, 3 received, 0% packet loss, time 402ms\n".into(),
        );
        assert_eq!((p.transmitted, p.received), (3, 3));
        assert!(p.all_answered());
        let p = Ping::parse(
            "3 packets transmitted, 0 received, +3 errors, 100% packet loss, time 2ms\n".into(),
        );
        assert_eq!((p.transmitted, p.received), (3, 0));
        assert!(p.none_answered() && !p.all_answered());
        let p = Ping::parse("ping: connect: Network is unreachable\n".into());
        assert!(!p.all_answered() && p.none_answered());
    }

    #[test]
    fn mac_lines_match_any_spelling() {
        let t = "LINK TARGET DESTINATION\nov0  02:32:00:00:00:02  10.32.0.2:4789\nov0 2:32:0:0:0:3 drop\n";
        assert!(find_mac_line(t, "02:32:00:00:00:02")
            .unwrap()
            .contains("10.32.0.2:4789"));
        assert!(find_mac_line(t, "02:32:00:00:00:03")
            .unwrap()
            .contains("drop"));
        assert!(find_mac_line(t, "02:32:00:00:00:04").is_none());
    }
}
