//! The Grafana dashboard and the alerting rules in `dashboards/`: promtool
//! checks the rules; the dashboard parses and every panel has queries; and, in
//! the namespace lab, a real Prometheus (loading the rules) scraping the
//! exporter evaluates every dashboard query and every rule.

mod common;

use common::{get, lab, start_exporter, Prometheus};
use overlay_tests::{wait_for, Daemon};
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

fn dashboards() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../dashboards")
}

/// Every `expr` of the dashboard's panels (rows excluded), with its panel.
fn panel_exprs() -> Vec<(String, String)> {
    let path = dashboards().join("overlay.json");
    let text = std::fs::read_to_string(&path).expect("reading dashboards/overlay.json");
    let d: Value = serde_json::from_str(&text).expect("dashboards/overlay.json is not JSON");
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
    let out = Command::new("promtool")
        .arg("check")
        .arg("rules")
        .arg(dashboards().join("alerts.yml"))
        .output()
        .expect("running promtool (`make deps` installs the prometheus package)");
    let says = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    println!("{says}");
    assert!(out.status.success(), "promtool check rules failed:\n{says}");

    let exprs = panel_exprs();
    assert!(exprs.len() >= 10, "only {} queries", exprs.len());
    let names = alert_names();
    for a in [
        "OverlaydDown",
        "VarpdDown",
        "OverlayDegraded",
        "OverlayDropRateHigh",
        "OverlayQueueOverflows",
        "TargetTableNearFull",
    ] {
        assert!(names.contains(a), "no alert {a} in alerts.yml: {names:?}");
    }
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
        .replace("$host", ".*")
        .replace("$overlay", ".*")
}

#[test]
#[ignore = "needs root and network namespaces: run `sudo make test`"]
fn the_dashboard_queries_and_the_rules_run_on_a_real_prometheus() {
    let mut lab = lab("dashboards");
    let p = lab.files_pair(48, 4848);
    let _ping = lab.ping_background(p.a, &p.ip4(2), &["-c", "600", "-i", "0.2"]);
    let r = lab.ping(p.b, &p.ip4(1), &[]);
    assert!(r.all_answered(), "host b cannot reach host a:\n{r}");

    let (_exporter, port) = start_exporter(&[lab.run_dir(p.a), lab.run_dir(p.b)]);

    let rules = dashboards().join("alerts.yml").canonicalize().unwrap();
    let prom = Prometheus::start("overlay-dashboards-prom", port, Some(&rules));
    let prom_port = prom.port;
    let prom_log = || prom.log();

    // A few scrapes, so that rate() over 1m has two samples per series.
    let frames = expand(
        &panel_exprs()
            .into_iter()
            .find(|(t, _)| t == "Frames/s")
            .expect("no Frames/s panel")
            .1,
    );
    let mut last = Value::Null;
    let ok = wait_for(Duration::from_secs(60), || {
        last = query(prom_port, &frames);
        last["status"] == "success" && results(&last) >= 2
    });
    assert!(ok, "no frame rates for both hosts: {last}\n{}", prom_log());
    println!("prometheus, Frames/s ({frames}):\n{last}");

    for (title, expr) in panel_exprs() {
        let q = expand(&expr);
        let v = query(prom_port, &q);
        assert_eq!(v["status"], "success", "panel {title:?}: {q}\nanswered {v}");
        println!("panel {title:?}: {} series for {q}", results(&v));
    }
    let latency = expand(
        &panel_exprs()
            .into_iter()
            .find(|(t, _)| t == "varpd lookup latency")
            .expect("no latency panel")
            .1,
    );
    println!(
        "prometheus, latency p50 ({latency}):\n{}",
        query(prom_port, &latency)
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
