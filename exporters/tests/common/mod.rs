//! What the exporter's lab tests share: processes and directories that clean
//! up after themselves, a loopback HTTP GET, the exporter and a real
//! Prometheus started on free loopback ports.

// Each test binary uses its own part of this module.
#![allow(dead_code)]

use overlay_tests::{wait_for, Lab};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A child process killed and reaped when dropped.
pub struct Guard(pub Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A temporary directory removed when dropped.
pub struct TempDir(pub PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A loopback TCP port nobody listens on now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A plain HTTP/1.0 GET on 127.0.0.1: the status line and the body.
pub fn get(port: u16, path: &str) -> Option<(String, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut r = String::new();
    s.read_to_string(&mut r).ok()?;
    let (head, body) = r.split_once("\r\n\r\n")?;
    Some((head.lines().next()?.to_string(), body.to_string()))
}

/// The body of a GET, if the status is 200.
pub fn get_ok(port: u16, path: &str) -> Option<String> {
    let (status, body) = get(port, path)?;
    (status.starts_with("HTTP/1.1 200") || status.starts_with("HTTP/1.0 200")).then_some(body)
}

/// A lab whose daemons sit beside the exporter that cargo built for this
/// test, unless OVERLAY_BIN_DIR says otherwise.
pub fn lab(name: &str) -> Lab {
    if std::env::var_os("OVERLAY_BIN_DIR").is_none() {
        let exe = Path::new(env!("CARGO_BIN_EXE_overlay-exporter"));
        std::env::set_var("OVERLAY_BIN_DIR", exe.parent().unwrap());
    }
    Lab::new(name)
}

/// The exporter reading `run_dirs`, on a free loopback port, answering.
pub fn start_exporter(run_dirs: &[PathBuf]) -> (Guard, u16) {
    let port = free_port();
    let mut c = Command::new(env!("CARGO_BIN_EXE_overlay-exporter"));
    for d in run_dirs {
        c.arg("--run-dir").arg(d);
    }
    c.args(["--listen", &format!("127.0.0.1:{port}")])
        .stdin(Stdio::null());
    let g = Guard(c.spawn().expect("starting overlay-exporter"));
    assert!(
        wait_for(Duration::from_secs(10), || get(port, "/").is_some()),
        "overlay-exporter does not answer on 127.0.0.1:{port}"
    );
    (g, port)
}

/// A real Prometheus server (Debian's /usr/bin/prometheus) scraping the
/// exporter every second, with its data and log in a directory of its own.
pub struct Prometheus {
    /// Its HTTP port on 127.0.0.1.
    pub port: u16,
    _process: Guard,
    dir: TempDir,
}

impl Prometheus {
    /// Starts one that scrapes `exporter_port` and loads `rules`, if given.
    pub fn start(tag: &str, exporter_port: u16, rules: Option<&Path>) -> Prometheus {
        let prom = Path::new("/usr/bin/prometheus");
        assert!(
            prom.is_file(),
            "no {}: `make deps` installs it",
            prom.display()
        );
        let dir = TempDir(std::env::temp_dir().join(format!("{tag}-{}", std::process::id())));
        std::fs::create_dir_all(dir.0.join("data")).unwrap();
        let rule_files = rules
            .map(|r| format!("rule_files:\n  - '{}'\n", r.display()))
            .unwrap_or_default();
        let config = dir.0.join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
                 {rule_files}\
                 scrape_configs:\n  - job_name: overlay\n    static_configs:\n      \
                 - targets: ['127.0.0.1:{exporter_port}']\n"
            ),
        )
        .unwrap();
        let port = free_port();
        let log = std::fs::File::create(dir.0.join("prometheus.log")).unwrap();
        let process = Guard(
            Command::new(prom)
                .arg(format!("--config.file={}", config.display()))
                .arg(format!(
                    "--storage.tsdb.path={}",
                    dir.0.join("data").display()
                ))
                .arg(format!("--web.listen-address=127.0.0.1:{port}"))
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .expect("starting prometheus"),
        );
        Prometheus {
            port,
            _process: process,
            dir,
        }
    }

    /// What it has logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.0.join("prometheus.log")).unwrap_or_default()
    }
}

/// What to install when promtool is missing: never pass without it.
pub const NO_PROMTOOL: &str = "promtool not found: install the Debian package `prometheus` \
     (`sudo apt-get install prometheus`, or `sudo make deps`, which runs lab/deps.sh)";

/// Runs promtool with `args` in `dir` (stdin from `input`, if given): its
/// success and everything it said. Panics, saying what to install, if
/// promtool is not installed.
pub fn promtool(dir: &Path, args: &[&str], input: Option<&str>) -> (bool, String) {
    let mut child = match Command::new("promtool")
        .args(args)
        .current_dir(dir)
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!("{NO_PROMTOOL}"),
        Err(e) => panic!("running promtool: {e}"),
    };
    if let Some(text) = input {
        let mut stdin = child.stdin.take().unwrap();
        stdin
            .write_all(text.as_bytes())
            .expect("writing to promtool");
    }
    let out = child.wait_with_output().expect("waiting for promtool");
    let says = format!(
        "$ promtool {}\n{}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), says)
}
