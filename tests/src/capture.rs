//! tcpdump on a lab host's device, writing a pcap file that tests hand to
//! tshark or ovsnoop.

use crate::lab::{Host, Lab};
use crate::tools::require_tools;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A running capture, started by [`Lab::capture`]; [`Capture::stop`] ends
/// it with the file complete. Dropped unstopped (a test failed first), it
/// is killed and reaped.
pub struct Capture {
    child: Option<Child>,
    file: PathBuf,
}

impl Lab {
    /// Starts `tcpdump --immediate-mode -i DEV -U -n -w FILE FILTER...` in
    /// host `h`'s namespace and returns once it captures (tcpdump says
    /// "listening on"). Panics if tcpdump is missing or does not start.
    pub fn capture(&self, h: Host, dev: &str, file: &Path, filter: &[&str]) -> Capture {
        require_tools(&["tcpdump"]);
        let mut child = Command::new("ip")
            .args(["netns", "exec", self.ns(h), "tcpdump", "--immediate-mode"])
            .args(["-i", dev, "-U", "-n", "-w"])
            .arg(file)
            .args(filter)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run tcpdump in {}: {e}", self.ns(h)));
        let mut first = String::new();
        let _ = BufReader::new(child.stderr.take().expect("piped")).read_line(&mut first);
        let c = Capture {
            child: Some(child),
            file: file.to_path_buf(),
        };
        assert!(first.contains("listening on"), "tcpdump: {first}");
        c
    }
}

impl Capture {
    /// Lets the last frames reach the file (500 ms), stops tcpdump with
    /// SIGINT so the file is complete, and returns its path.
    pub fn stop(mut self) -> PathBuf {
        std::thread::sleep(Duration::from_millis(500));
        let mut c = self.child.take().expect("only stop() takes the child");
        // SAFETY: kill(2) of the child we started, by its pid.
        unsafe { libc::kill(c.id() as i32, libc::SIGINT) };
        let _ = c.wait();
        self.file.clone()
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
