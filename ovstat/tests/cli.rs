//! The command line without a lab: usage errors exit 2, an absent overlayd
//! exits 1 with a message that names the socket.

use std::process::Command;

fn ovstat(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ovstat"))
        .args(args)
        .env_remove("OVERLAY_RUN_DIR")
        .output()
        .expect("running ovstat");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn absent_overlayd_is_exit_1_naming_the_socket() {
    let dir = std::env::temp_dir().join(format!("ovstat-absent-{}", std::process::id()));
    let dir = dir.to_str().expect("utf-8 temp dir");
    let (code, out, err) = ovstat(&["--run-dir", dir, "1", "2"]);
    assert_eq!(code, 1, "stdout {out:?} stderr {err:?}");
    assert!(out.is_empty(), "{out}");
    assert!(
        err.starts_with("ovstat: ") && err.contains(&format!("{dir}/overlayd.sock")),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
}

#[test]
fn usage_errors_are_exit_2() {
    for args in [
        &["-o", "bogus"][..],
        &["0"],
        &["-1"],
        &["abc"],
        &["1", "0"],
        &["-d", "-D"],
        &["-p", "--json"],
        &["--json", "-o", "overlay"],
        &["-d", "-o", "misses_ps"],
    ] {
        let (code, _, err) = ovstat(args);
        assert_eq!(code, 2, "ovstat {args:?}: {err}");
        assert!(err.contains("error:"), "ovstat {args:?}: {err}");
    }
    let (code, out, _) = ovstat(&["--help"]);
    assert_eq!(code, 0);
    assert!(out.contains("since each overlay"), "{out}");
}
