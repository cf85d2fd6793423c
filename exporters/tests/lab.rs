//! The exporter against real daemons in the namespace lab: a files pair with
//! traffic, both hosts' run directories read by one exporter in the root
//! namespace (it only reads the sockets as files), scraped over 127.0.0.1;
//! then a real Prometheus server scraping it, when one is installed.

use overlay_tests::{wait_for, Daemon, Lab};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A child process killed and reaped when dropped.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A plain HTTP/1.0 GET; the body, if the status is 200.
fn get(port: u16, path: &str) -> Option<String> {
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
    head.starts_with("HTTP/1.1 200")
        .then(|| body.to_string())
        .or_else(|| head.starts_with("HTTP/1.0 200").then(|| body.to_string()))
}

fn start_exporter(run_dirs: &[PathBuf]) -> (Guard, u16) {
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

/// The value of the one sample of `name` whose labels include all of `labels`.
fn value(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let mut found = text.lines().filter(|l| {
        let Some(rest) = l.strip_prefix(name) else {
            return false;
        };
        (rest.starts_with('{') || rest.starts_with(' '))
            && labels
                .iter()
                .all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")))
    });
    let line = found.next()?;
    assert!(
        found.next().is_none(),
        "{name}{labels:?} matches several samples:\n{text}"
    );
    line.rsplit_once(' ')?.1.parse().ok()
}

fn host_of(run_dir: &Path) -> String {
    run_dir
        .parent()
        .unwrap()
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned()
}

/// The daemons under test sit beside the exporter that cargo built for this
/// test, unless OVERLAY_BIN_DIR says otherwise.
fn lab(name: &str) -> Lab {
    if std::env::var_os("OVERLAY_BIN_DIR").is_none() {
        let exe = Path::new(env!("CARGO_BIN_EXE_overlay-exporter"));
        std::env::set_var("OVERLAY_BIN_DIR", exe.parent().unwrap());
    }
    Lab::new(name)
}

#[test]
#[ignore = "needs root and network namespaces: run `sudo make test`"]
fn exporter_reads_both_hosts_and_notices_varpd_going() {
    let mut lab = lab("exporter_pair");
    let p = lab.files_pair(41, 4141);
    for (from, to) in [(1, 2), (2, 1)] {
        let r = lab.ping(p.host(from), &p.ip4(to), &[]);
        assert!(r.all_answered(), "host {from} cannot reach host {to}:\n{r}");
    }
    let dirs = [lab.run_dir(p.a), lab.run_dir(p.b)];
    let hosts = [host_of(&dirs[0]), host_of(&dirs[1])];
    assert_ne!(
        hosts[0], hosts[1],
        "the lab's hosts need distinct parent dirs"
    );
    let (_exporter, port) = start_exporter(&dirs);

    let text = get(port, "/metrics").expect("scraping /metrics");
    println!("--- /metrics (both daemons up) ---\n{text}");
    for h in &hosts {
        let l = [("host", h.as_str()), ("overlay", "ov0")];
        for name in ["overlay_rx_frames_total", "overlay_tx_frames_total"] {
            let v = value(&text, name, &l).unwrap_or_else(|| panic!("no {name}{l:?}:\n{text}"));
            assert!(v > 0.0, "{name}{l:?} = {v}:\n{text}");
        }
        for up in ["overlay_up", "varpd_up"] {
            assert_eq!(
                value(&text, up, &[("host", h)]),
                Some(1.0),
                "{up} on {h}:\n{text}"
            );
        }
        assert!(
            value(
                &text,
                "varpd_lookups_total",
                &[("host", h), ("overlay", "ov0")]
            )
            .unwrap_or(0.0)
                > 0.0,
            "varpd on {h} answered no lookup:\n{text}"
        );
        let count = value(&text, "overlay_varpd_lookup_duration_seconds_count", &l);
        assert!(
            count.unwrap_or(0.0) > 0.0,
            "no lookup latency on {h}:\n{text}"
        );
    }

    lab.stop(p.b, Daemon::Varpd);
    let text = get(port, "/metrics").expect("scraping /metrics with varpd stopped");
    println!("--- /metrics (varpd stopped on {}) ---\n{text}", hosts[1]);
    assert_eq!(
        value(&text, "varpd_up", &[("host", &hosts[1])]),
        Some(0.0),
        "{text}"
    );
    assert_eq!(
        value(&text, "varpd_up", &[("host", &hosts[0])]),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        value(&text, "overlay_up", &[("host", &hosts[1])]),
        Some(1.0),
        "{text}"
    );
    assert!(
        value(&text, "varpd_lookups_total", &[("host", &hosts[1])]).is_none(),
        "a stopped varpd keeps series:\n{text}"
    );
}

/// A temporary directory removed when dropped.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
#[ignore = "needs root, network namespaces and /usr/bin/prometheus: run `sudo make test`"]
fn a_real_prometheus_scrapes_the_exporter() {
    let prom = Path::new("/usr/bin/prometheus");
    assert!(
        prom.is_file(),
        "no {}: `make deps` installs it",
        prom.display()
    );
    let mut lab = lab("exporter_prom");
    let p = lab.files_pair(42, 4242);
    let r = lab.ping(p.a, &p.ip4(2), &[]);
    assert!(r.all_answered(), "host a cannot reach host b:\n{r}");
    let (_exporter, port) = start_exporter(&[lab.run_dir(p.a), lab.run_dir(p.b)]);

    let tmp =
        TempDir(std::env::temp_dir().join(format!("overlay-exporter-prom-{}", std::process::id())));
    std::fs::create_dir_all(tmp.0.join("data")).unwrap();
    let config = tmp.0.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
             scrape_configs:\n  - job_name: overlay\n    static_configs:\n      \
             - targets: ['127.0.0.1:{port}']\n"
        ),
    )
    .unwrap();
    let prom_port = free_port();
    let log = std::fs::File::create(tmp.0.join("prometheus.log")).unwrap();
    let _prom = Guard(
        Command::new(prom)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                tmp.0.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{prom_port}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("starting prometheus"),
    );

    let mut last = String::new();
    let found = wait_for(Duration::from_secs(60), || {
        last = get(prom_port, "/api/v1/query?query=overlay_rx_frames_total").unwrap_or_default();
        let v: serde_json::Value = serde_json::from_str(&last).unwrap_or_default();
        v["status"] == "success" && v["data"]["result"].as_array().is_some_and(|r| r.len() == 2)
    });
    let prom_log = std::fs::read_to_string(tmp.0.join("prometheus.log")).unwrap_or_default();
    assert!(
        found,
        "prometheus has no overlay_rx_frames_total for both hosts; last answer:\n{last}\nits log:\n{prom_log}"
    );
    println!("prometheus: {last}");
    // The scrape itself was healthy: `up` of the job is 1.
    let up = get(prom_port, "/api/v1/query?query=up%7Bjob%3D%22overlay%22%7D").unwrap_or_default();
    assert!(up.contains("\"1\""), "job overlay is not up: {up}");
}
