//! The exporter against real daemons in the namespace lab: a files pair with
//! traffic, both hosts' run directories read by one exporter in the root
//! namespace (it only reads the sockets as files), scraped over 127.0.0.1;
//! then a real Prometheus server scraping it, when one is installed.

mod common;

use common::{get_ok, lab, promtool, start_exporter, Prometheus};
use overlay_tests::{wait_for, Daemon};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

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

    let text = get_ok(port, "/metrics").expect("scraping /metrics");
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
    let text = get_ok(port, "/metrics").expect("scraping /metrics with varpd stopped");
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

#[test]
#[ignore = "needs root, network namespaces and /usr/bin/prometheus: run `sudo make test`"]
fn a_real_prometheus_scrapes_the_exporter() {
    let mut lab = lab("exporter_prom");
    let p = lab.files_pair(42, 4242);
    let r = lab.ping(p.a, &p.ip4(2), &[]);
    assert!(r.all_answered(), "host a cannot reach host b:\n{r}");
    let (_exporter, port) = start_exporter(&[lab.run_dir(p.a), lab.run_dir(p.b)]);

    let prom = Prometheus::start("overlay-exporter-prom", port, None);
    let prom_port = prom.port;

    let mut last = String::new();
    let found = wait_for(Duration::from_secs(60), || {
        last = get_ok(prom_port, "/api/v1/query?query=overlay_rx_frames_total").unwrap_or_default();
        let v: serde_json::Value = serde_json::from_str(&last).unwrap_or_default();
        v["status"] == "success" && v["data"]["result"].as_array().is_some_and(|r| r.len() == 2)
    });
    let prom_log = prom.log();
    assert!(
        found,
        "prometheus has no overlay_rx_frames_total for both hosts; last answer:\n{last}\nits log:\n{prom_log}"
    );
    println!("prometheus: {last}");
    // The scrape itself was healthy: `up` of the job is 1.
    let up =
        get_ok(prom_port, "/api/v1/query?query=up%7Bjob%3D%22overlay%22%7D").unwrap_or_default();
    assert!(up.contains("\"1\""), "job overlay is not up: {up}");
}

/// The one `overlay_info` line of `overlay` on `host`.
fn info_line<'a>(text: &'a str, host: &str, overlay: &str) -> Option<&'a str> {
    let want = [format!("host=\"{host}\""), format!("overlay=\"{overlay}\"")];
    let mut lines = text
        .lines()
        .filter(|l| l.starts_with("overlay_info{") && want.iter().all(|w| l.contains(w)));
    let line = lines.next()?;
    assert!(
        lines.next().is_none(),
        "two overlay_info for {host}/{overlay}:\n{text}"
    );
    Some(line)
}

/// Sends varpd on a host SIGHUP: it reloads its files configuration.
fn sighup_varpd(lab: &mut overlay_tests::Lab, h: overlay_tests::Host) {
    let pid = lab.pid(h, Daemon::Varpd).expect("varpd runs");
    let st = Command::new("kill")
        .args(["-HUP", &pid.to_string()])
        .status()
        .expect("running kill");
    assert!(st.success(), "kill -HUP {pid}");
}

#[test]
#[ignore = "needs root and network namespaces: run `sudo make test`"]
fn a_broken_files_reload_shows_as_degraded_with_its_reason() {
    let mut lab = lab("exporter_degraded");
    let p = lab.files_pair(43, 4343);
    let r = lab.ping(p.a, &p.ip4(2), &[]);
    assert!(r.all_answered(), "host a cannot reach host b:\n{r}");
    let dirs = [lab.run_dir(p.a), lab.run_dir(p.b)];
    let hosts = [host_of(&dirs[0]), host_of(&dirs[1])];
    let (_exporter, port) = start_exporter(&dirs);

    let text = get_ok(port, "/metrics").expect("scraping /metrics");
    for h in &hosts {
        let info = info_line(&text, h, "ov0").unwrap_or_else(|| panic!("no overlay_info:\n{text}"));
        assert!(
            info.contains("status=\"ONLINE\"")
                && info.contains("reason=\"\"")
                && info.ends_with(" 1"),
            "{info}"
        );
        assert_eq!(value(&text, "overlay_degraded", &[("host", h)]), Some(0.0));
    }

    // Host a's varpd reloads a broken file: it keeps serving the old map and
    // tells overlayd (InstanceFailed, serving), which marks ov0 DEGRADED.
    let good = std::fs::read_to_string(&p.config).expect("reading the files config");
    std::fs::write(&p.config, "{ \"02:43:00:00:00:02\": ").expect("breaking the files config");
    sighup_varpd(&mut lab, p.a);
    let want_reason = format!("reason=\"search plugin files: {}:1:", p.config.display());
    let mut text = String::new();
    let degraded = wait_for(Duration::from_secs(10), || {
        text = get_ok(port, "/metrics").unwrap_or_default();
        info_line(&text, &hosts[0], "ov0").is_some_and(|l| l.contains("status=\"DEGRADED\""))
    });
    println!(
        "--- /metrics (files config broken on {}) ---\n{text}",
        hosts[0]
    );
    assert!(degraded, "ov0 on {} is not DEGRADED:\n{text}", hosts[0]);
    let info = info_line(&text, &hosts[0], "ov0").unwrap();
    assert!(
        info.contains(&want_reason),
        "want {want_reason}...; got {info}"
    );
    assert!(
        info.contains("vnetid=\"4343\"") && info.ends_with(" 1"),
        "{info}"
    );
    assert_eq!(
        value(&text, "overlay_degraded", &[("host", &hosts[0])]),
        Some(1.0)
    );
    let vinfo = text
        .lines()
        .find(|l| {
            l.starts_with("varpd_instance_info{") && l.contains(&format!("host=\"{}\"", hosts[0]))
        })
        .unwrap_or_else(|| panic!("no varpd_instance_info:\n{text}"));
    assert!(
        vinfo.contains("status=\"DEGRADED\"")
            && vinfo.contains(&format!("reason=\"{}:1:", p.config.display())),
        "{vinfo}"
    );
    // Degraded, not down: both daemons answer, and host b never reloaded.
    for up in ["overlay_up", "varpd_up"] {
        assert_eq!(value(&text, up, &[("host", &hosts[0])]), Some(1.0), "{up}");
    }
    let b = info_line(&text, &hosts[1], "ov0").unwrap();
    assert!(b.contains("status=\"ONLINE\""), "{b}");
    // The exposition, reason and all, is still valid.
    let (ok, says) = promtool(Path::new("."), &["check", "metrics"], Some(&text));
    assert!(
        ok && says.lines().count() == 1,
        "promtool check metrics:\n{says}"
    );

    // varpd still serves the old map: after a flush, lookups are answered.
    lab.ovadm_ok(p.a, ["modify-overlay", "-f", "ov0"]);
    let r = lab.wait_ping(p.a, &p.ip4(2), Duration::from_secs(10));
    assert!(
        r.all_answered(),
        "a degraded-but-serving varpd stopped answering:\n{r}"
    );

    // Repaired: ONLINE again, the reason gone.
    std::fs::write(&p.config, good).expect("repairing the files config");
    sighup_varpd(&mut lab, p.a);
    let online = wait_for(Duration::from_secs(10), || {
        text = get_ok(port, "/metrics").unwrap_or_default();
        info_line(&text, &hosts[0], "ov0")
            .is_some_and(|l| l.contains("status=\"ONLINE\"") && l.contains("reason=\"\""))
    });
    assert!(online, "ov0 did not come back ONLINE:\n{text}");
    assert_eq!(
        value(&text, "overlay_degraded", &[("host", &hosts[0])]),
        Some(0.0)
    );
}

#[test]
#[ignore = "needs root and network namespaces: run `sudo make test`"]
fn promtool_check_metrics_is_clean_on_a_real_scrape() {
    let mut lab = lab("exporter_promtool");
    let p = lab.files_pair(45, 4545);
    let r = lab.ping(p.a, &p.ip4(2), &[]);
    assert!(r.all_answered(), "host a cannot reach host b:\n{r}");
    let (_exporter, port) = start_exporter(&[lab.run_dir(p.a), lab.run_dir(p.b)]);
    let text = get_ok(port, "/metrics").expect("scraping /metrics");
    let (ok, says) = promtool(Path::new("."), &["check", "metrics"], Some(&text));
    println!("{says}");
    assert!(ok, "promtool check metrics failed:\n{says}\n{text}");
    assert_eq!(
        says.lines().count(),
        1,
        "promtool check metrics has remarks:\n{says}\n{text}"
    );
}
