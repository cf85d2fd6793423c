//! ovstat against a live two-host files lab with traffic: every output mode
//! reads the real counters, rates show the traffic, Ctrl-C ends it cleanly.
//! Each run's output is printed (`--nocapture`) as an example.

use overlay_tests::Lab;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

fn ovstat(run_dir: &Path, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_ovstat"))
        .arg("--run-dir")
        .arg(run_dir)
        .args(args)
        .output()
        .expect("running ovstat");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "ovstat {args:?} failed ({}): {stderr}\n{stdout}",
        out.status
    );
    eprintln!("$ ovstat {}\n{stdout}", args.join(" "));
    stdout
}

#[test]
#[ignore = "needs root and network namespaces: run `sudo make test`"]
fn ovstat_reports_a_lab_with_traffic() {
    let mut lab = Lab::new("ovstat");
    let p = lab.files_pair(63, 6363);
    let r = lab.wait_ping(p.a, &p.ip4(2), Duration::from_secs(10));
    assert!(r.all_answered(), "the pair does not reach itself:\n{r}");
    // 100 frames a second each way for 20 s, and ARP for an address nobody
    // answers (proxy ARP has nothing to say: drops with a reason).
    let _traffic = lab.ping_background(p.a, &p.ip4(2), &["-c", "2000", "-i", "0.01"]);
    let _unanswered = lab.ping_background(p.a, "192.168.63.99", &["-c", "40", "-i", "0.5"]);
    let run_dir = lab.run_dir(p.a);

    // -p -o: three reports, each "ov0:<tx_pps>" with traffic in it.
    let out = ovstat(&run_dir, &["-p", "-o", "overlay,tx_pps", "1", "3"]);
    let lines: Vec<_> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    for l in &lines[1..] {
        let (name, pps) = l.split_once(':').unwrap_or_else(|| panic!("{out}"));
        let pps: f64 = pps.parse().unwrap_or_else(|e| panic!("{e}: {out}"));
        assert_eq!(name, "ov0", "{out}");
        assert!(pps > 20.0, "ping -i 0.01 should show ~100 tx pps: {out}");
    }

    // --json: one object per overlay per interval with the required keys.
    let out = ovstat(&run_dir, &["--json", "0.5", "3"]);
    assert_eq!(out.lines().count(), 3, "{out}");
    for l in out.lines() {
        let v: serde_json::Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"));
        for k in [
            "overlay",
            "vni",
            "rx_pps",
            "tx_pps",
            "rx_bps",
            "tx_bps",
            "drops_ps",
            "misses_ps",
        ] {
            assert!(v.get(k).is_some(), "{k} missing: {l}");
        }
        assert_eq!(v["overlay"], "ov0", "{l}");
        assert_eq!(v["vni"], 6363, "{l}");
        let num = |k: &str| {
            v[k].as_f64()
                .unwrap_or_else(|| panic!("{k} not a number: {l}"))
        };
        assert!(num("tx_pps") > 20.0 && num("rx_pps") > 20.0, "{l}");
        assert!(
            num("tx_bps") > num("tx_pps") * 8.0 * 60.0,
            "bits, not bytes: {l}"
        );
    }

    // Columns: a header, then one line per overlay per report.
    let out = ovstat(&run_dir, &["1", "2"]);
    let lines: Vec<_> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert!(
        lines[0].starts_with("OVERLAY ") && lines[0].contains("TX_PPS"),
        "{out}"
    );
    assert!(
        lines[1].starts_with("ov0 ") && lines[1].contains(" 6363 "),
        "{out}"
    );

    // Without INTERVAL: one report, at once, of the counters since ov0 was
    // created (vmstat's first line), with the traffic in it.
    let started = std::time::Instant::now();
    let out = ovstat(&run_dir, &["-p", "-o", "overlay,tx_pps,rx_pps"]);
    let took = started.elapsed();
    assert!(
        took < Duration::from_millis(800),
        "the first report waited {took:?}: it should need no sample"
    );
    let f: Vec<_> = out.trim().split(':').collect();
    assert_eq!((f.len(), f[0]), (3, "ov0"), "{out}");
    for v in &f[1..] {
        let v: f64 = v.parse().unwrap_or_else(|e| panic!("{e}: {out}"));
        assert!(v > 1.0, "no traffic since creation: {out}");
    }
    let out = ovstat(&run_dir, &[]);
    assert_eq!(out.lines().count(), 2, "{out}");

    // -d: the peer's UL3 address carries the traffic.
    let out = ovstat(&run_dir, &["-d", "1", "2"]);
    let peer = out
        .lines()
        .find(|l| l.split_whitespace().nth(1) == Some(p.ul(2).as_str()))
        .unwrap_or_else(|| panic!("no line for peer {}:\n{out}", p.ul(2)));
    let tx: f64 = peer.split_whitespace().nth(3).unwrap().parse().unwrap();
    assert!(tx > 20.0, "{out}");
    let out = ovstat(&run_dir, &["-d", "-p", "1", "1"]);
    assert!(out.contains(&format!("ov0:{}:", p.ul(2))), "{out}");

    // -D: one line per reason, parseable as overlay:reason:rate.
    let out = ovstat(&run_dir, &["-D", "1", "2"]);
    assert!(out.starts_with("OVERLAY    REASON"), "{out}");
    let out = ovstat(&run_dir, &["-D", "-p", "1", "1"]);
    for l in out.lines() {
        let f: Vec<_> = l.split(':').collect();
        assert!(f.len() == 3 && f[0] == "ov0", "{out}");
        assert!(f[2].parse::<f64>().is_ok(), "{out}");
    }

    // Ctrl-C: stops between reports, exit 0, whole lines only.
    let child = Command::new(env!("CARGO_BIN_EXE_ovstat"))
        .arg("--run-dir")
        .arg(&run_dir)
        .args(["-p", "0.2"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("running ovstat");
    std::thread::sleep(Duration::from_millis(1700));
    let kill = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("running kill");
    assert!(kill.success());
    let out = child.wait_with_output().expect("waiting for ovstat");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}: {text}", out.status);
    assert!(text.lines().count() >= 3 && text.ends_with('\n'), "{text}");
}
