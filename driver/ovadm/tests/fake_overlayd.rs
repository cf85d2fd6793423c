//! Runs the built `ovadm` against a tiny fake overlayd: a Unix socket in a
//! temporary run directory that answers each request line with the next
//! canned reply and remembers what it was asked.

use overlay_api::proto::{Reply, Request};
use overlay_api::{
    ApiError, ErrorKind, Mac, OverlayState, Perm, PropRow, StatusRow, TargetCursor, TargetDest,
    TargetRow,
};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

static NEXT_DIR: AtomicUsize = AtomicUsize::new(0);

/// A fresh, empty run directory, removed on drop.
struct RunDir(PathBuf);

impl RunDir {
    fn new() -> RunDir {
        let n = NEXT_DIR.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("ovadm-test-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create run dir");
        RunDir(dir)
    }
}

impl Drop for RunDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A fake overlayd serving one connection with canned replies.
struct FakeOverlayd {
    dir: RunDir,
    server: JoinHandle<Vec<Request>>,
}

impl FakeOverlayd {
    fn start(replies: Vec<Reply>) -> FakeOverlayd {
        let dir = RunDir::new();
        let listener =
            UnixListener::bind(dir.0.join("overlayd.sock")).expect("bind fake overlayd.sock");
        listener.set_nonblocking(true).expect("nonblocking");
        let server = std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(20);
            let conn = loop {
                match listener.accept() {
                    Ok((c, _)) => break c,
                    Err(e)
                        if e.kind() == std::io::ErrorKind::WouldBlock
                            && Instant::now() < deadline =>
                    {
                        std::thread::sleep(Duration::from_millis(10))
                    }
                    Err(e) => panic!("fake overlayd: no client came: {e}"),
                }
            };
            conn.set_nonblocking(false).expect("blocking");
            let mut writer = conn.try_clone().expect("clone");
            let mut seen = Vec::new();
            let mut replies = replies.into_iter();
            for line in BufReader::new(conn).lines() {
                let line = line.expect("read request");
                seen.push(
                    serde_json::from_str(&line)
                        .unwrap_or_else(|e| panic!("not a Request: {line}: {e}")),
                );
                let reply = replies.next().expect("a canned reply for every request");
                let mut out = serde_json::to_string(&reply).expect("reply");
                out.push('\n');
                writer.write_all(out.as_bytes()).expect("write reply");
            }
            seen
        });
        FakeOverlayd { dir, server }
    }

    fn path(&self) -> &Path {
        &self.dir.0
    }

    /// What ovadm asked, once it has gone.
    fn requests(self) -> Vec<Request> {
        self.server.join().expect("fake overlayd panicked")
    }
}

fn ovadm(run_dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ovadm"))
        .env_remove("OVERLAY_RUN_DIR")
        .arg("--run-dir")
        .arg(run_dir)
        .args(args)
        .output()
        .expect("run ovadm")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn mac(s: &str) -> Mac {
    s.parse().expect("test MAC")
}

fn targets() -> Vec<TargetRow> {
    vec![
        TargetRow {
            link: "ov0".into(),
            target: mac("02:08:20:00:00:02"),
            destination: TargetDest::Valid("10.0.0.2:4789".parse().expect("addr")),
            age_ms: None,
            idle_ms: None,
            frames: None,
            bytes: None,
        },
        TargetRow {
            link: "ov0".into(),
            target: mac("02:08:20:00:00:03"),
            destination: TargetDest::Valid("[fd00::2]:4789".parse().expect("addr")),
            age_ms: None,
            idle_ms: None,
            frames: None,
            bytes: None,
        },
        TargetRow {
            link: "overlay1".into(),
            target: mac("02:08:20:00:00:04"),
            destination: TargetDest::Pending,
            age_ms: None,
            idle_ms: None,
            frames: None,
            bytes: None,
        },
        TargetRow {
            link: "overlay1".into(),
            target: mac("02:08:20:00:00:05"),
            destination: TargetDest::Drop,
            age_ms: None,
            idle_ms: None,
            frames: None,
            bytes: None,
        },
    ]
}

#[test]
fn show_overlay_targets() {
    let fake = FakeOverlayd::start(vec![Reply::Targets {
        rows: targets(),
        next: None,
    }]);
    let out = ovadm(fake.path(), &["show-overlay", "-t"]);
    assert_eq!(text(&out.stderr), "");
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        text(&out.stdout),
        "\
LINK      TARGET             DESTINATION
ov0       02:08:20:00:00:02  10.0.0.2:4789
ov0       02:08:20:00:00:03  [fd00::2]:4789
overlay1  02:08:20:00:00:04  pending
overlay1  02:08:20:00:00:05  drop
"
    );
    assert_eq!(
        fake.requests(),
        [Request::ShowTargets {
            name: None,
            cursor: None,
            limit: None
        }]
    );
}

#[test]
fn show_overlay_targets_parseable() {
    let fake = FakeOverlayd::start(vec![Reply::Targets {
        rows: targets()[..2].to_vec(),
        next: None,
    }]);
    let out = ovadm(
        fake.path(),
        &[
            "show-overlay",
            "-t",
            "-p",
            "-o",
            "target,destination",
            "ov0",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "02\\:08\\:20\\:00\\:00\\:02:10.0.0.2\\:4789\n02\\:08\\:20\\:00\\:00\\:03:[fd00\\:\\:2]\\:4789\n");
    assert_eq!(
        fake.requests(),
        [Request::ShowTargets {
            name: Some("ov0".into()),
            cursor: None,
            limit: None
        }]
    );
}

/// A dump of `pages` pages of `per_page` entries each (entry i has MAC
/// 02:00:00:HH:MM:LL and destination 10.0.HH.LL:4789 from i's bytes), each
/// page but the last pointing at the next.
fn paged_dump(pages: usize, per_page: usize) -> Vec<Reply> {
    (0..pages)
        .map(|p| Reply::Targets {
            rows: (p * per_page..(p + 1) * per_page)
                .map(|i| {
                    let b = (i as u32).to_be_bytes();
                    TargetRow {
                        link: "ov0".into(),
                        target: Mac([2, 0, 0, b[1], b[2], b[3]]),
                        destination: TargetDest::Valid(
                            format!("10.{}.{}.{}:4789", b[1], b[2], b[3])
                                .parse()
                                .expect("addr"),
                        ),
                        age_ms: None,
                        idle_ms: None,
                        frames: None,
                        bytes: None,
                    }
                })
                .collect(),
            next: (p + 1 < pages).then(|| TargetCursor {
                overlay: "ov0".into(),
                pos: ((p + 1) * per_page) as u64,
            }),
        })
        .collect()
}

/// ovadm asked for the first page, then for each page at the cursor the
/// previous one returned.
fn assert_followed_cursors(requests: &[Request], pages: usize, per_page: usize) {
    let asked: Vec<Option<u64>> = requests
        .iter()
        .map(|r| match r {
            Request::ShowTargets { cursor, .. } => cursor.as_ref().map(|c| c.pos),
            other => panic!("not a dump request: {other:?}"),
        })
        .collect();
    let want: Vec<Option<u64>> = (0..pages)
        .map(|p| (p > 0).then_some((p * per_page) as u64))
        .collect();
    assert_eq!(asked, want);
}

#[test]
fn show_overlay_targets_streams_many_pages() {
    const PAGES: usize = 100;
    const PER_PAGE: usize = 500;
    let fake = FakeOverlayd::start(paged_dump(PAGES, PER_PAGE));
    let out = ovadm(
        fake.path(),
        &["show-overlay", "-t", "-p", "-o", "target,destination"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), PAGES * PER_PAGE);
    assert_eq!(lines[0], "02\\:00\\:00\\:00\\:00\\:00:10.0.0.0\\:4789");
    assert_eq!(
        lines[PAGES * PER_PAGE - 1],
        "02\\:00\\:00\\:00\\:c3\\:4f:10.0.195.79\\:4789"
    );
    assert_followed_cursors(&fake.requests(), PAGES, PER_PAGE);

    // --json: one valid document, every entry in order.
    let fake = FakeOverlayd::start(paged_dump(PAGES, PER_PAGE));
    let out = ovadm(fake.path(), &["show-overlay", "-t", "--json", "ov0"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).matches('\n').count(), 1, "one line");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON document");
    let rows = v.as_array().expect("an array");
    assert_eq!(rows.len(), PAGES * PER_PAGE);
    for (i, r) in rows.iter().enumerate().step_by(997) {
        let b = (i as u32).to_be_bytes();
        assert_eq!(
            r["target"],
            format!("02:00:00:{:02x}:{:02x}:{:02x}", b[1], b[2], b[3]),
            "{r}"
        );
        assert_eq!(r["link"], "ov0");
    }
    assert_followed_cursors(&fake.requests(), PAGES, PER_PAGE);

    // overlayd failing midway: what came is printed, the array is left open
    // (not a whole dump), and ovadm fails with overlayd's message.
    let mut replies = paged_dump(3, 10);
    replies[2] = Reply::Error {
        error: ApiError::new(ErrorKind::NotFound, "no such overlay: ov0"),
    };
    let fake = FakeOverlayd::start(replies);
    let out = ovadm(fake.path(), &["show-overlay", "-t", "--json"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(text(&out.stderr), "ovadm: no such overlay: ov0\n");
    assert!(serde_json::from_slice::<serde_json::Value>(&out.stdout).is_err());
    assert_eq!(text(&out.stdout).matches("\"target\"").count(), 20);
    drop(fake);
}

#[test]
fn show_overlay_properties() {
    let row = |property: &str,
               perm,
               required,
               value: Option<&str>,
               default: Option<&str>,
               possible: Option<&str>| PropRow {
        link: "ov0".into(),
        property: property.into(),
        perm,
        required,
        value: value.map(Into::into),
        default: default.map(Into::into),
        possible: possible.map(Into::into),
    };
    let rows = vec![
        row("encap", Perm::R, false, Some("vxlan"), None, Some("vxlan")),
        row(
            "mtu",
            Perm::Rw,
            false,
            Some("1400"),
            Some("1400"),
            Some("576-8900"),
        ),
        row(
            "vxlan/listen_ip",
            Perm::R,
            true,
            Some("10.0.0.1"),
            None,
            None,
        ),
    ];
    let fake = FakeOverlayd::start(vec![Reply::Props { rows }]);
    let out = ovadm(fake.path(), &["show-overlay", "ov0"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "\
LINK  PROPERTY         PERM  REQ  VALUE     DEFAULT  POSSIBLE
ov0   encap            r-    -    vxlan     --       vxlan
ov0   mtu              rw    -    1400      1400     576-8900
ov0   vxlan/listen_ip  r-    y    10.0.0.1  --       --
"
    );
    assert_eq!(
        fake.requests(),
        [Request::ShowProps {
            name: Some("ov0".into())
        }]
    );
}

#[test]
fn show_overlay_status_json_with_run_dir_from_environment() {
    let rows = vec![
        StatusRow {
            link: "ov0".into(),
            status: OverlayState::Online,
            details: None,
        },
        StatusRow {
            link: "ov1".into(),
            status: OverlayState::Degraded,
            details: Some("varpd is not running".into()),
        },
    ];
    let fake = FakeOverlayd::start(vec![Reply::Status { rows }]);
    let out = Command::new(env!("CARGO_BIN_EXE_ovadm"))
        .env("OVERLAY_RUN_DIR", fake.path())
        .args(["show-overlay", "-f", "--json"])
        .output()
        .expect("run ovadm");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "[{\"link\":\"ov0\",\"status\":\"ONLINE\",\"details\":null},{\"link\":\"ov1\",\"status\":\"DEGRADED\",\"details\":\"varpd is not running\"}]\n"
    );
    assert_eq!(fake.requests(), [Request::ShowStatus { name: None }]);
}

#[test]
fn error_reply_fails_with_its_message() {
    let msg = "property 'mtu' of ov0: 99999 is out of range 576-8900";
    let fake = FakeOverlayd::start(vec![Reply::Error {
        error: ApiError::new(ErrorKind::Property, msg),
    }]);
    let out = ovadm(
        fake.path(),
        &[
            "create-overlay",
            "-e",
            "vxlan",
            "-s",
            "direct",
            "-v",
            "100",
            "-p",
            "mtu=99999,vxlan/listen_ip=10.0.0.1",
            "ov0",
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(text(&out.stderr), format!("ovadm: {msg}\n"));
    assert_eq!(text(&out.stdout), "");
    let reqs = fake.requests();
    let [Request::CreateOverlay { spec }] = reqs.as_slice() else {
        panic!("{reqs:?}")
    };
    assert_eq!(
        (
            spec.name.as_str(),
            spec.encap.as_str(),
            spec.search.as_str(),
            spec.vnetid
        ),
        ("ov0", "vxlan", "direct", 100)
    );
    assert_eq!(spec.props.get("mtu").map(String::as_str), Some("99999"));
    assert_eq!(spec.props.len(), 2);
}

#[test]
fn warning_is_printed_and_success_kept() {
    let fake = FakeOverlayd::start(vec![Reply::Ok {
        warning: Some("varpd is not running; ov0 is degraded".into()),
    }]);
    let out = ovadm(
        fake.path(),
        &["modify-overlay", "-s", "02:08:20:00:00:02=drop", "ov0"],
    );
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        text(&out.stderr),
        "ovadm: warning: varpd is not running; ov0 is degraded\n"
    );
    assert_eq!(
        fake.requests(),
        [Request::SetTarget {
            name: "ov0".into(),
            mac: mac("02:08:20:00:00:02"),
            dest: TargetDest::Drop
        }]
    );
}

#[test]
fn no_socket_fails_clearly() {
    let dir = RunDir::new();
    let out = ovadm(&dir.0, &["show-overlay", "-t"]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    let sock = dir.0.join("overlayd.sock");
    assert!(
        err.starts_with(&format!("ovadm: cannot connect to {}", sock.display())),
        "{err}"
    );
    assert!(err.contains("--run-dir"), "{err}");
    assert_eq!(text(&out.stdout), "");
}

#[test]
fn usage_error_exits_2_before_connecting() {
    // No daemon here: a usage error must be found before any connection.
    let dir = RunDir::new();
    for args in [
        &["create-overlay", "-e", "vxlan", "-s", "direct", "ov0"][..],
        &["modify-overlay", "-d", "02:08:20:00:00:02", "-f", "ov0"],
        &["show-overlay", "-p"],
        &["show-overlay", "-o", "link,bogus"],
    ] {
        let out = ovadm(&dir.0, args);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            text(&out.stderr)
        );
        assert!(!text(&out.stderr).is_empty());
    }
}

fn vnics() -> Vec<overlay_api::VnicRow> {
    use overlay_api::{MacAddrType, VnicRow};
    vec![
        VnicRow {
            link: "vnic1".into(),
            over: "ov0".into(),
            macaddress: mac("02:77:01:00:00:01"),
            macaddrtype: MacAddrType::Fixed,
            netns: Some("ovlab-h1-g1".into()),
            mtu: 1400,
        },
        VnicRow {
            link: "vnic9".into(),
            over: "ov0".into(),
            macaddress: mac("92:60:14:a2:13:70"),
            macaddrtype: MacAddrType::Random,
            netns: None,
            mtu: 1400,
        },
    ]
}

#[test]
fn create_vnic_is_silent_and_sends_the_spec() {
    let fake = FakeOverlayd::start(vec![Reply::Vnics {
        rows: vnics()[..1].to_vec(),
    }]);
    let out = ovadm(
        fake.path(),
        &[
            "create-vnic",
            "-l",
            "ov0",
            "-m",
            "02:77:01:00:00:01",
            "--netns",
            "ovlab-h1-g1",
            "vnic1",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "");
    assert_eq!(
        fake.requests(),
        [Request::CreateVnic {
            spec: overlay_api::VnicSpec {
                name: "vnic1".into(),
                over: "ov0".into(),
                mac: Some(mac("02:77:01:00:00:01")),
                netns: Some("ovlab-h1-g1".into()),
            }
        }]
    );
}

#[test]
fn create_vnic_error_names_the_mac() {
    let msg =
        "cannot create VNIC v2: MAC 02:77:01:00:00:01 is already used by VNIC vnic1 on overlay ov0";
    let fake = FakeOverlayd::start(vec![Reply::Error {
        error: ApiError::new(ErrorKind::Exists, msg),
    }]);
    let out = ovadm(
        fake.path(),
        &["create-vnic", "-l", "ov0", "-m", "02:77:01:00:00:01", "v2"],
    );
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(text(&out.stderr), format!("ovadm: {msg}\n"));
    fake.requests();
}

/// Runs ovadm once against a fake overlayd holding one canned reply.
fn once(reply: Reply, args: &[&str]) -> (Output, Vec<Request>) {
    let fake = FakeOverlayd::start(vec![reply]);
    let out = ovadm(fake.path(), args);
    (out, fake.requests())
}

#[test]
fn show_vnic_human_parseable_json() {
    let (out, reqs) = once(Reply::Vnics { rows: vnics() }, &["show-vnic"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "\
LINK   OVER  MACADDRESS         MACADDRTYPE  NETNS        MTU
vnic1  ov0   02:77:01:00:00:01  fixed        ovlab-h1-g1  1400
vnic9  ov0   92:60:14:a2:13:70  random       --           1400
"
    );
    assert_eq!(reqs, [Request::ShowVnics { name: None }]);
    let (out, _) = once(
        Reply::Vnics { rows: vnics() },
        &["show-vnic", "-p", "-o", "link,macaddress,netns"],
    );
    assert_eq!(
        text(&out.stdout),
        "vnic1:02\\:77\\:01\\:00\\:00\\:01:ovlab-h1-g1\nvnic9:92\\:60\\:14\\:a2\\:13\\:70:\n"
    );
    let (out, reqs) = once(
        Reply::Vnics {
            rows: vnics()[1..].to_vec(),
        },
        &["show-vnic", "--json", "vnic9"],
    );
    assert_eq!(
        text(&out.stdout),
        r#"[{"link":"vnic9","over":"ov0","macaddress":"92:60:14:a2:13:70","macaddrtype":"random","netns":null,"mtu":"1400"}]
"#
    );
    assert_eq!(
        reqs,
        [Request::ShowVnics {
            name: Some("vnic9".into())
        }]
    );
}

#[test]
fn show_vnic_statistics_from_the_snapshot() {
    use overlay_api::{OverlayStats, StatsSnapshot, VnicStats};
    let v = |name: &str, m: &str, n: u64| VnicStats {
        name: name.into(),
        mac: mac(m),
        rx_frames: n,
        rx_bytes: 100 * n,
        tx_frames: n + 1,
        tx_bytes: 100 * n + 100,
    };
    let snapshot = StatsSnapshot {
        overlays: vec![
            OverlayStats {
                name: "ov1".into(),
                vnics: vec![v("vnic2", "02:00:00:00:00:02", 2)],
                ..Default::default()
            },
            OverlayStats {
                name: "ov0".into(),
                vnics: vec![v("vnic1", "02:00:00:00:00:01", 1)],
                ..Default::default()
            },
        ],
        ..Default::default()
    };
    let (out, reqs) = once(
        Reply::Stats {
            snapshot: snapshot.clone(),
        },
        &["show-vnic", "-s"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "\
LINK   IPACKETS  RBYTES  OPACKETS  OBYTES
vnic1  1         100     2         200
vnic2  2         200     3         300
"
    );
    assert!(
        matches!(reqs.as_slice(), [Request::Stats { name: None, .. }]),
        "{reqs:?}"
    );
    let (out, _) = once(Reply::Stats { snapshot }, &["show-vnic", "-s", "nope"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(text(&out.stderr), "ovadm: no such VNIC: nope\n");
}
