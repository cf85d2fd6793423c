//! The Grafana dashboard and the alerting rules in `dashboards/`: promtool
//! checks the rules; the dashboard parses and every panel has queries; and, in
//! the namespace lab, a real Prometheus (loading the rules) scraping the
//! exporter evaluates every dashboard query and every rule.

mod common;

use common::{get, lab, promtool, start_exporter, Prometheus};
use overlay_api::{
    HistBucket, InstanceInfo, MuxStats, OverlayState, OverlayStats, PeerStats, StatsSnapshot,
    StatusRow, TableStats,
};
use overlay_exporter::collect::{HostSample, Options, OverlaydSample, VarpdSample};
use overlay_tests::{wait_for, Daemon};
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

fn dashboards() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../dashboards")
}

/// dashboards/overlay.json.
fn dashboard() -> Value {
    let path = dashboards().join("overlay.json");
    let text = std::fs::read_to_string(&path).expect("reading dashboards/overlay.json");
    serde_json::from_str(&text).expect("dashboards/overlay.json is not JSON")
}

/// Every `expr` of the dashboard's panels (rows excluded), with its panel.
fn panel_exprs() -> Vec<(String, String)> {
    let d = dashboard();
    let mut out = Vec::new();
    for p in d["panels"].as_array().expect("no panels") {
        if p["type"] == "row" {
            continue;
        }
        let title = p["title"].as_str().unwrap_or("?").to_string();
        let targets = p["targets"].as_array();
        assert!(
            targets.is_some_and(|t| !t.is_empty()),
            "panel {title:?} has no targets"
        );
        for t in targets.unwrap() {
            let expr = t["expr"].as_str().unwrap_or("").trim();
            assert!(
                !expr.is_empty(),
                "panel {title:?} has a target without expr"
            );
            out.push((title.clone(), expr.to_string()));
        }
    }
    out
}

/// The alert names in alerts.yml (a line-level read; promtool checks the rest).
fn alert_names() -> BTreeSet<String> {
    let text = std::fs::read_to_string(dashboards().join("alerts.yml")).unwrap();
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("- alert:"))
        .map(|n| n.trim().to_string())
        .collect()
}

#[test]
fn promtool_checks_the_rules_and_the_dashboard_has_queries() {
    let (ok, says) = promtool(&dashboards(), &["check", "rules", "alerts.yml"], None);
    println!("{says}");
    assert!(ok, "promtool check rules failed:\n{says}");

    let exprs = panel_exprs();
    assert!(exprs.len() >= 10, "only {} queries", exprs.len());
    let names = alert_names();
    for a in [
        "OverlaydDown",
        "VarpdDown",
        "OverlayDegraded",
        "OverlayDropRateHigh",
        "OverlayQueueOverflows",
        "VarpdLookupLatencyHigh",
        "TargetTableNearFull",
        "TargetTableFull",
        "TargetTableRejecting",
    ] {
        assert!(names.contains(a), "no alert {a} in alerts.yml: {names:?}");
    }
    let heatmaps: Vec<_> = dashboard()["panels"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["type"] == "heatmap")
        .map(|p| p["targets"][0]["expr"].as_str().unwrap_or("").to_string())
        .collect();
    assert!(
        heatmaps
            .iter()
            .any(|e| e.contains("overlay_varpd_lookup_duration_seconds_bucket")),
        "no lookup-latency heatmap: {heatmaps:?}"
    );
    let vars: Vec<_> = dashboard()["templating"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap_or("").to_string())
        .collect();
    for v in ["job", "host", "overlay"] {
        assert!(vars.iter().any(|x| x == v), "no ${v} variable: {vars:?}");
    }
    for (title, e) in &exprs {
        assert!(
            e.contains("job=~\"$job\"") && e.contains("host=~\"$host\""),
            "panel {title:?} ignores $job or $host: {e}"
        );
    }
}

/// For each `alertname:` of alerts_test.yml, whether some test expects it to
/// fire (a non-empty `exp_alerts`) and whether some test expects silence
/// (`exp_alerts: []`). A line-level read: promtool checks the rest.
fn alert_tests() -> (BTreeSet<String>, BTreeSet<String>) {
    let text = std::fs::read_to_string(dashboards().join("alerts_test.yml"))
        .expect("reading dashboards/alerts_test.yml");
    let (mut fires, mut silent) = (BTreeSet::new(), BTreeSet::new());
    let mut current = None;
    for l in text.lines().map(str::trim) {
        if let Some(n) = l.strip_prefix("alertname:") {
            current = Some(n.trim().to_string());
        } else if let (Some(rest), Some(n)) = (l.strip_prefix("exp_alerts:"), current.take()) {
            if rest.trim() == "[]" {
                silent.insert(n);
            } else {
                fires.insert(n);
            }
        }
    }
    (fires, silent)
}

#[test]
fn promtool_unit_tests_fire_every_alert_and_spare_healthy_series() {
    let names = alert_names();
    let (fires, silent) = alert_tests();
    assert_eq!(
        fires, names,
        "alerts_test.yml must make every alert of alerts.yml fire"
    );
    assert_eq!(
        silent, names,
        "alerts_test.yml must show every alert silent on healthy series"
    );
    let (ok, says) = promtool(&dashboards(), &["test", "rules", "alerts_test.yml"], None);
    println!("{says}");
    assert!(ok, "promtool test rules failed:\n{says}");
    assert!(says.contains("SUCCESS"), "{says}");
}

/// A scrape's worth of canned snapshots: two hosts, one with two overlays
/// (one degraded), peers, drops, latency; the other unreachable.
fn canned_hosts() -> Vec<HostSample> {
    let ov = |name: &str, vnetid: u32, status: OverlayState| OverlayStats {
        offload: Default::default(),
        vnics: Vec::new(),
        peers_total: 0,
        name: name.into(),
        vnetid,
        rx_frames: 5,
        rx_bytes: 500,
        tx_frames: 6,
        tx_bytes: 600,
        lookups: 3,
        misses: 4,
        drops: [("no-destination".to_string(), 9)].into(),
        status,
        peers: (1..=3u8)
            .map(|i| PeerStats {
                addr: Some(format!("10.0.0.{i}").parse().unwrap()),
                tx_frames: i.into(),
                tx_bytes: 100 * u64::from(i),
                rx_frames: 1,
                rx_bytes: 10,
            })
            .collect(),
        lookup_latency: vec![HistBucket {
            le_ns: 1 << 17,
            count: 3,
        }],
        table: TableStats {
            entries: 7,
            max_entries: 1000,
            capacity: 64,
            load: 0.1,
            ..Default::default()
        },
        ..Default::default()
    };
    vec![
        HostSample {
            host: Some("a".into()),
            overlayd: Some(OverlaydSample {
                stats: StatsSnapshot {
                    varpd_linked: true,
                    overlays: vec![
                        ov("ov0", 4242, OverlayState::Online),
                        ov("ov1", 7, OverlayState::Degraded),
                    ],
                    muxes: vec![MuxStats {
                        listen: Some("10.0.0.9:4789".parse().unwrap()),
                        rx_datagrams: 3,
                        drops: [("unknown-vni".to_string(), 1)].into(),
                        ..Default::default()
                    }],
                    ..Default::default()
                },
                status: vec![StatusRow {
                    link: "ov1".into(),
                    status: OverlayState::Degraded,
                    details: Some("search plugin files: /x.json:1:3: \"bad\"\\".into()),
                }],
            }),
            varpd: Some(VarpdSample {
                linked: true,
                plugins: 2,
                instances: vec![InstanceInfo {
                    oid: 1,
                    overlay: "ov0".into(),
                    search: "files".into(),
                    status: OverlayState::Online,
                    details: None,
                    lookups: 3,
                    proxy_arp: 1,
                    proxy_ndp: 1,
                    proxy_dhcp: 1,
                    invalidations: 0,
                    mac_conflicts: 0,
                }],
            }),
        },
        HostSample {
            host: Some("b".into()),
            overlayd: None,
            varpd: None,
        },
    ]
}

#[test]
fn promtool_check_metrics_is_clean() {
    let text = overlay_exporter::collect::text(&canned_hosts(), &Options::default()).unwrap();
    let (ok, says) = promtool(&dashboards(), &["check", "metrics"], Some(&text));
    println!("{says}");
    assert!(ok, "promtool check metrics failed:\n{says}\n{text}");
    assert_eq!(
        says.lines().count(),
        1,
        "promtool check metrics has remarks:\n{says}\n{text}"
    );
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// An instant query: Prometheus's JSON answer (status "error" when unreachable).
fn query(port: u16, q: &str) -> Value {
    let body = get(port, &format!("/api/v1/query?query={}", urlencode(q)))
        .map(|(_, b)| b)
        .unwrap_or_default();
    serde_json::from_str(&body)
        .unwrap_or_else(|_| serde_json::json!({"status": "error", "body": body}))
}

fn results(v: &Value) -> usize {
    v["data"]["result"].as_array().map_or(0, Vec::len)
}

/// A dashboard query as Grafana would send it with every variable at "All".
fn expand(expr: &str) -> String {
    expr.replace("$__rate_interval", "1m")
        .replace("$job", ".*")
        .replace("$host", ".*")
        .replace("$overlay", ".*")
}

#[test]
#[ignore = "needs root and network namespaces: run `sudo make test`"]
fn the_dashboard_queries_and_the_rules_run_on_a_real_prometheus() {
    let mut lab = lab("dashboards");
    let p = lab.files_pair(48, 4848);
    let (_exporter, port) = start_exporter(&[lab.run_dir(p.a), lab.run_dir(p.b)]);

    let rules = dashboards().join("alerts.yml").canonicalize().unwrap();
    let prom = Prometheus::start("overlay-dashboards-prom", port, Some(&rules));
    let prom_port = prom.port;
    let prom_log = || prom.log();

    // Prometheus scrapes once before any lookup happens, so that rate()
    // over the latency buckets sees them increase (a first sample that
    // already holds every lookup leaves the quantiles NaN).
    let mut last = Value::Null;
    let scraped = wait_for(Duration::from_secs(30), || {
        last = query(prom_port, "overlay_lookups_total");
        last["status"] == "success" && results(&last) >= 2
    });
    assert!(scraped, "no first scrape: {last}\n{}", prom_log());
    println!("prometheus, before any traffic: {last}");

    // Now traffic: the first pings each way need lookups.
    for (from, to) in [(1, 2), (2, 1)] {
        let r = lab.ping(p.host(from), &p.ip4(to), &[]);
        assert!(r.all_answered(), "host {from} cannot reach host {to}:\n{r}");
    }
    let _ping = lab.ping_background(p.a, &p.ip4(2), &["-c", "600", "-i", "0.2"]);
    // And ARP for an address nobody has: drops with a reason, for the drops panel.
    let _nobody = lab.ping_background(p.a, "192.168.48.99", &["-c", "100", "-i", "0.5"]);

    // A few scrapes, so that rate() over 1m has two samples per series.
    let frames = expand(
        &panel_exprs()
            .into_iter()
            .find(|(t, _)| t == "Frames/s")
            .expect("no Frames/s panel")
            .1,
    );
    let ok = wait_for(Duration::from_secs(60), || {
        last = query(prom_port, &frames);
        last["status"] == "success" && results(&last) >= 2
    });
    assert!(ok, "no frame rates for both hosts: {last}\n{}", prom_log());
    println!("prometheus, Frames/s ({frames}):\n{last}");

    // The latency quantiles are real numbers (seconds, under a second).
    for (i, latency) in panel_exprs()
        .into_iter()
        .filter(|(t, _)| t == "varpd lookup latency")
        .map(|(_, e)| expand(&e))
        .enumerate()
    {
        let mut v = Value::Null;
        let finite = |v: &Value| -> Vec<f64> {
            v["data"]["result"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|r| r["value"][1].as_str()?.parse::<f64>().ok())
                .filter(|x| x.is_finite())
                .collect()
        };
        let real = wait_for(Duration::from_secs(30), || {
            v = query(prom_port, &latency);
            !finite(&v).is_empty()
        });
        assert!(real, "latency quantile {i} is not a number: {latency}\n{v}");
        for x in finite(&v) {
            assert!(x > 0.0 && x < 1.0, "lookup latency {x} s? {v}");
        }
        println!("prometheus, latency ({latency}):\n{v}");
    }

    // Every panel's query evaluates, and returns data.
    let mut empty = Vec::new();
    for (title, expr) in panel_exprs() {
        let q = expand(&expr);
        let mut v = Value::Null;
        let some = wait_for(Duration::from_secs(15), || {
            v = query(prom_port, &q);
            assert_eq!(v["status"], "success", "panel {title:?}: {q}\nanswered {v}");
            results(&v) > 0
        });
        println!("panel {title:?}: {} series for {q}", results(&v));
        if !some {
            empty.push(format!("{title}: {q}"));
        }
    }
    assert!(
        empty.is_empty(),
        "queries without data:\n{}",
        empty.join("\n")
    );

    // Every alert is loaded and evaluates cleanly.
    let want = alert_names();
    let mut seen = BTreeSet::new();
    let mut rules_body = String::new();
    let healthy = wait_for(Duration::from_secs(20), || {
        rules_body = get(prom_port, "/api/v1/rules?type=alert")
            .map(|(_, b)| b)
            .unwrap_or_default();
        let v: Value = serde_json::from_str(&rules_body).unwrap_or_default();
        seen.clear();
        let mut all_ok = true;
        for g in v["data"]["groups"].as_array().into_iter().flatten() {
            for r in g["rules"].as_array().into_iter().flatten() {
                seen.insert(r["name"].as_str().unwrap_or("").to_string());
                all_ok &= r["health"] == "ok";
            }
        }
        all_ok && seen == want
    });
    assert!(
        healthy,
        "rules {seen:?} (want {want:?}) not all healthy:\n{rules_body}\n{}",
        prom_log()
    );

    // varpd goes on host b: VarpdDown's expression matches, and the alert is
    // pending (its `for:` is not waited out).
    lab.stop(p.b, Daemon::Varpd);
    let mut down = Value::Null;
    assert!(
        wait_for(Duration::from_secs(10), || {
            down = query(prom_port, "varpd_up == 0");
            results(&down) == 1
        }),
        "varpd_up == 0 has no series 10 s after stopping varpd: {down}"
    );
    println!("prometheus, varpd_up == 0:\n{down}");
    let mut pending = Value::Null;
    assert!(
        wait_for(Duration::from_secs(10), || {
            pending = query(prom_port, "ALERTS{alertname=\"VarpdDown\"}");
            results(&pending) == 1
        }),
        "VarpdDown is not pending: {pending}"
    );
    println!("prometheus, ALERTS: {pending}");
}
