//! Who may use the control sockets: root (and the daemons' own user) only,
//! by file mode and by the peer's credentials; with `--group`
//! (`OVERLAY_GROUP`) the members of an operators' group too. Clients run as
//! user `nobody` (65534) from a copy of ovadm that anyone may execute.

use overlay_tests::{Daemon, Lab};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const NOBODY: u32 = 65534;
/// Debian's `nogroup`.
const NOGROUP: u32 = 65534;

fn mode_and_gid(p: &Path) -> (u32, u32) {
    let m = std::fs::metadata(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    (m.permissions().mode() & 0o777, m.gid())
}

fn chmod(p: &Path, mode: u32) {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {}: {e}", p.display()));
}

/// `ovadm --run-dir RUN show-overlay` as uid `uid`, gid `gid`, no
/// supplementary groups.
fn ovadm_as(ovadm: &Path, run: &Path, uid: u32, gid: u32) -> Output {
    Command::new(ovadm)
        .uid(uid)
        .gid(gid)
        .arg("--run-dir")
        .arg(run)
        .arg("show-overlay")
        .output()
        .expect("running ovadm")
}

/// One status request to varpd's socket as `nobody`, by python3 (no
/// project tool asks varpd directly): the reply line, or the error. A
/// refusing varpd may close before the request is written; its reason is
/// still there to read.
fn varpd_status_as_nobody(sock: &Path) -> String {
    let script = "import socket,sys\n\
        s=socket.socket(socket.AF_UNIX)\n\
        try:\n s.connect(sys.argv[1])\n\
        except OSError as e:\n print('connect:', e); sys.exit(0)\n\
        try:\n s.sendall(b'{\"op\":\"status\"}\\n')\n\
        except BrokenPipeError:\n pass\n\
        print(s.makefile().readline().strip())\n";
    let out = Command::new("python3")
        .uid(NOBODY)
        .gid(NOGROUP)
        .args(["-c", script])
        .arg(sock)
        .output()
        .expect("running python3");
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

fn text(o: &Output) -> String {
    format!(
        "exit {:?}\nstdout: {}\nstderr: {}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
#[ignore = "needs root and network namespaces: run `sudo make test`"]
fn control_sockets_admit_root_and_the_operators_group_only() {
    let mut lab = Lab::new("access");
    let h = lab.add_host("a");
    lab.overlay_host(h);
    let run: PathBuf = lab.run_dir(h);
    let (osock, vsock) = (run.join("overlayd.sock"), run.join("varpd.sock"));
    assert_eq!(mode_and_gid(&osock), (0o600, 0));
    assert_eq!(mode_and_gid(&vsock), (0o600, 0));

    // Anyone may reach the sockets' directory and run this ovadm.
    let mut d = run.clone();
    while d.starts_with(lab.dir()) {
        chmod(&d, 0o755);
        d.pop();
    }
    let ovadm = lab.dir().join("ovadm-any");
    std::fs::copy(lab.bin("ovadm"), &ovadm).unwrap();
    chmod(&ovadm, 0o755);

    // Fence 1, the file mode: nobody cannot connect.
    let o = ovadm_as(&ovadm, &run, NOBODY, NOGROUP);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("overlayd.sock") && err.contains("ermission denied"),
        "{}",
        text(&o)
    );

    // Fence 2, the peer's credentials: with the mode opened by mistake,
    // overlayd and varpd still refuse nobody, and say why.
    chmod(&osock, 0o666);
    chmod(&vsock, 0o666);
    let o = ovadm_as(&ovadm, &run, NOBODY, NOGROUP);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("permission denied: uid 65534 (pid "),
        "{}",
        text(&o)
    );
    let v = varpd_status_as_nobody(&vsock);
    assert!(
        v.contains("\"permission\"") && v.contains("uid 65534"),
        "varpd answered nobody: {v}"
    );
    let log = std::fs::read_to_string(lab.log(h, Daemon::Overlayd)).unwrap();
    assert!(
        log.contains("control socket: permission denied: uid 65534"),
        "overlayd did not log the refusal:\n{log}"
    );
    // Root is served as before.
    lab.ovadm_ok(h, ["show-overlay"]);

    // With an operators' group: 0660 in that group; its members are served,
    // others are still kept out by the mode.
    lab.stop(h, Daemon::Varpd);
    lab.stop(h, Daemon::Overlayd);
    // Only this test runs in this binary, and the daemons inherit it.
    std::env::set_var("OVERLAY_GROUP", "nogroup");
    lab.overlay_host(h);
    std::env::remove_var("OVERLAY_GROUP");
    assert_eq!(mode_and_gid(&osock), (0o660, NOGROUP));
    assert_eq!(mode_and_gid(&vsock), (0o660, NOGROUP));
    let o = ovadm_as(&ovadm, &run, NOBODY, NOGROUP);
    assert_eq!(
        o.status.code(),
        Some(0),
        "a member was refused: {}",
        text(&o)
    );
    let v = varpd_status_as_nobody(&vsock);
    assert!(v.contains("\"status\""), "varpd refused a member: {v}");
    let o = ovadm_as(&ovadm, &run, NOBODY, 1);
    assert_eq!(
        o.status.code(),
        Some(1),
        "a non-member got in: {}",
        text(&o)
    );
}
