//! A small run of `bench-scale` (20 hosts × 2 guests, lease TTL 3 s): every
//! phase runs against a real etcd cluster and every figure comes out, in
//! about 15 seconds. `sudo make test` runs it; the full run is
//! `make bench-scale`.

use std::process::Command;

#[test]
#[ignore = "needs etcd (etcd-server package) and runs real etcd members; sudo make test runs it"]
fn twenty_hosts_every_figure() {
    let dir = std::env::temp_dir().join(format!("bench-scale-smoke-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let out = dir.join("scale.json");
    let run = Command::new(env!("CARGO_BIN_EXE_bench-scale"))
        .args([
            "--hosts",
            "20",
            "--guests",
            "2",
            "--ttl",
            "3",
            "--migrations",
            "5",
        ])
        .args(["--phase-limit", "60"])
        .arg("--out")
        .arg(&out)
        .arg("--data-dir")
        .arg(&dir)
        .output()
        .expect("run bench-scale");
    let stdout = String::from_utf8_lossy(&run.stdout);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        run.status.success(),
        "bench-scale failed:\n{stdout}\n{stderr}"
    );
    let text = std::fs::read_to_string(&out).expect("scale.json written");
    let _ = std::fs::remove_dir_all(&dir);
    let v: serde_json::Value = serde_json::from_str(&text).expect("scale.json is JSON");
    for key in [
        "register_s",
        "migration_p50_ms",
        "migration_p99_ms",
        "migration_max_ms",
        "failed_lookups",
        "resync_s",
        "expiry_s",
        "mirror_bytes_per_mapping",
        "etcd_db_bytes",
        "etcd_cpu_s",
    ] {
        let x = v[key]
            .as_f64()
            .unwrap_or_else(|| panic!("{key} missing:\n{text}"));
        assert!(x >= 0.0, "{key} = {x}");
    }
    assert_eq!(
        (v["hosts"].as_u64(), v["guests"].as_u64()),
        (Some(20), Some(2))
    );
    // A dead host's guests go with its lease: not before a third of the
    // TTL has passed since its last renewal, not long after the TTL.
    let expiry = v["expiry_s"].as_f64().unwrap();
    assert!((1.0..8.0).contains(&expiry), "expiry_s = {expiry}");
    for line in [
        "register_s",
        "migration_*_ms",
        "failed_lookups",
        "resync_s",
        "expiry_s",
    ] {
        assert!(stdout.contains(line), "{line} not printed:\n{stdout}");
    }
}
