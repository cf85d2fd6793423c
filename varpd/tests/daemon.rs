//! The `varpd` binary end to end, against a fake overlayd: start-up before
//! overlayd, the link, proxy NDP, the control socket, SIGHUP, SIGTERM, and
//! refusing a second varpd on the same run directory.

use overlay_api::proto::{DriverMsg, LookupResult, Request, VarpdMsg, VarpdReply, VarpdRequest};
use overlay_api::{Client, DestMode, Mac};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(10);

struct Lab {
    dir: PathBuf,
}

impl Lab {
    fn new(tag: &str) -> Lab {
        let dir = std::env::temp_dir().join(format!("varpd-it-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Lab { dir }
    }

    fn run_dir(&self) -> PathBuf {
        self.dir.join("run")
    }

    fn varpd(&self, log: &str) -> Child {
        Command::new(env!("CARGO_BIN_EXE_varpd"))
            .arg("--run-dir")
            .arg(self.run_dir())
            .env("OVERLAY_STATE_DIR", self.dir.join("state"))
            .env("RUST_LOG", "debug")
            .stdin(Stdio::null())
            .stderr(std::fs::File::create(self.dir.join(log)).unwrap())
            .spawn()
            .unwrap()
    }

    fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.join(name)).unwrap_or_default()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Kills the child on drop, so a failed test leaves no daemon behind.
struct Daemon(Child);

impl Daemon {
    fn signal(&self, sig: libc::c_int) {
        // SAFETY: kill(2) on our own child's pid has no memory effects.
        assert_eq!(unsafe { libc::kill(self.0.id() as libc::pid_t, sig) }, 0);
    }

    fn wait(&mut self) -> ExitStatus {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(st) = self.0.try_wait().unwrap() {
                return st;
            }
            assert!(Instant::now() < deadline, "varpd did not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

struct Peer {
    rd: BufReader<UnixStream>,
    wr: UnixStream,
}

impl Peer {
    fn accept(l: &UnixListener) -> Peer {
        l.set_nonblocking(true).unwrap();
        let mut stream = None;
        wait_for("varpd to connect", || match l.accept() {
            Ok((s, _)) => {
                stream = Some(s);
                true
            }
            Err(_) => false,
        });
        let s = stream.unwrap();
        s.set_nonblocking(false).unwrap();
        s.set_read_timeout(Some(WAIT)).unwrap();
        let mut p = Peer {
            rd: BufReader::new(s.try_clone().unwrap()),
            wr: s,
        };
        let mut line = String::new();
        p.rd.read_line(&mut line).unwrap();
        assert!(
            matches!(
                serde_json::from_str(&line).unwrap(),
                Request::VarpdHello { version: 1, .. }
            ),
            "{line}"
        );
        p.wr.write_all(b"{\"reply\":\"linked\"}\n").unwrap();
        p
    }

    fn send(&mut self, m: &DriverMsg) {
        let mut b = serde_json::to_vec(m).unwrap();
        b.push(b'\n');
        self.wr.write_all(&b).unwrap();
    }

    fn recv(&mut self) -> VarpdMsg {
        let mut line = String::new();
        self.rd.read_line(&mut line).unwrap();
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line:?}"))
    }
}

/// A neighbour solicitation from 02:32:00:00:00:02 (fd32::2) for `target`,
/// built by hand with its ICMPv6 checksum.
fn solicit(target: [u8; 16]) -> Vec<u8> {
    let src: [u8; 16] = "fd32::2".parse::<std::net::Ipv6Addr>().unwrap().octets();
    let mut dst = [0u8; 16];
    dst[..2].copy_from_slice(&[0xff, 0x02]);
    dst[11..13].copy_from_slice(&[1, 0xff]);
    dst[13..].copy_from_slice(&target[13..]);
    let mac = [2, 0x32, 0, 0, 0, 2];
    let mut icmp = vec![135, 0, 0, 0, 0, 0, 0, 0];
    icmp.extend_from_slice(&target);
    icmp.extend_from_slice(&[1, 1]);
    icmp.extend_from_slice(&mac);
    let mut sum = 0u32;
    for c in [
        &src[..],
        &dst[..],
        &[0, 0, 0, icmp.len() as u8, 0, 0, 0, 58],
        &icmp,
    ] {
        for p in c.chunks(2) {
            sum += (p[0] as u32) << 8 | p[1] as u32;
        }
    }
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    icmp[2..4].copy_from_slice(&(!(sum as u16)).to_be_bytes());
    let mut f = vec![0x33, 0x33, 0xff, target[13], target[14], target[15]];
    f.extend_from_slice(&mac);
    f.extend_from_slice(&[0x86, 0xdd, 0x60, 0, 0, 0, 0, icmp.len() as u8, 58, 255]);
    f.extend_from_slice(&src);
    f.extend_from_slice(&dst);
    f.extend_from_slice(&icmp);
    f
}

fn write_atomically(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

#[test]
fn daemon_links_answers_reloads_and_stops() {
    let lab = Lab::new("main");
    let config = lab.dir.join("files.json");
    std::fs::write(
        &config,
        r#"{"02:32:00:00:00:04": {"ip": "10.32.0.4", "port": 4789, "ndp": "fd32::4"}}"#,
    )
    .unwrap();
    let mut varpd = Daemon(lab.varpd("varpd.log"));

    // varpd first: it creates the run directory and its socket, then waits.
    let sock = lab.run_dir().join("varpd.sock");
    wait_for("varpd.sock", || sock.exists());
    assert_eq!(
        std::fs::metadata(&sock).unwrap().permissions().mode() & 0o777,
        0o600
    );

    let listener = UnixListener::bind(lab.run_dir().join("overlayd.sock")).unwrap();
    let mut od = Peer::accept(&listener);
    let props = [
        ("files/config".to_string(), config.display().to_string()),
        ("mtu".into(), "1400".into()),
    ];
    od.send(&DriverMsg::Instance {
        oid: 7,
        overlay: "ov7".into(),
        vnetid: 7,
        search: "files".into(),
        props: props.into_iter().collect(),
    });
    assert_eq!(
        od.recv(),
        VarpdMsg::InstanceReady {
            oid: 7,
            mode: DestMode::Dynamic,
            point: None
        }
    );

    // Proxy NDP, end to end.
    let target = "fd32::4".parse::<std::net::Ipv6Addr>().unwrap().octets();
    let src: Mac = "02:32:00:00:00:02".parse().unwrap();
    let dst: Mac = "33:33:ff:00:00:04".parse().unwrap();
    od.send(&DriverMsg::Lookup {
        id: 1,
        oid: 7,
        src,
        dst,
        frame: Some(solicit(target)),
    });
    match od.recv() {
        VarpdMsg::Inject { oid: 7, frame } => {
            assert_eq!(&frame[..6], &src.0);
            assert_eq!(&frame[6..12], &[2, 0x32, 0, 0, 0, 4]);
            assert_eq!(frame[14 + 40], 136, "a neighbour advertisement");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        od.recv(),
        VarpdMsg::LookupReply {
            id: 1,
            oid: 7,
            result: LookupResult::Handled
        }
    );

    // The control socket.
    match Client::varpd(&lab.run_dir())
        .unwrap()
        .call_varpd(&VarpdRequest::Status)
        .unwrap()
    {
        VarpdReply::Status {
            linked, instances, ..
        } => {
            assert!(linked);
            assert_eq!(instances.len(), 1);
            assert_eq!(
                (
                    instances[0].overlay.as_str(),
                    instances[0].lookups,
                    instances[0].proxy_ndp
                ),
                ("ov7", 1, 1)
            );
        }
        other => panic!("{other:?}"),
    }

    // A second varpd on the same run directory refuses to start.
    let mut second = Daemon(lab.varpd("second.log"));
    assert_eq!(second.wait().code(), Some(1));
    assert!(
        lab.log("second.log").contains("another varpd is running"),
        "{}",
        lab.log("second.log")
    );
    assert!(sock.exists());

    // SIGHUP re-reads the file.
    write_atomically(
        &config,
        r#"{"02:32:00:00:00:04": {"ip": "10.32.0.44", "port": 4789, "ndp": "fd32::4"}}"#,
    );
    varpd.signal(libc::SIGHUP);
    assert_eq!(
        od.recv(),
        VarpdMsg::Invalidate {
            oid: 7,
            mac: Some("02:32:00:00:00:04".parse().unwrap())
        }
    );

    // SIGTERM: a clean exit, socket removed.
    varpd.signal(libc::SIGTERM);
    assert!(varpd.wait().success());
    assert!(!sock.exists());
    let log = lab.log("varpd.log");
    assert!(log.contains("linked to overlayd"), "{log}");
    assert!(log.contains("SIGTERM: shutting down"), "{log}");
}

#[test]
fn usage_errors_exit_2() {
    let st = Command::new(env!("CARGO_BIN_EXE_varpd"))
        .arg("--bogus")
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert_eq!(st.code(), Some(2));
}
