//! Operator errors: each one fails with exit status 1 (2 for usage), names
//! what was wrong, and leaves overlayd working. Also what reaches the
//! control socket without ovadm: a garbage line gets an error reply.

use overlay_api::proto::Reply;
use overlay_tests::{Daemon, FilesEntry, Host, Lab};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::Output;
use std::time::Duration;

/// Host `a` with overlayd and varpd, underlay 10.45.0.1 on a veth pair to
/// an idle host `b`, and a valid files configuration.
fn setup(lab: &mut Lab) -> (Host, PathBuf) {
    let a = lab.add_host("a");
    let b = lab.add_host("b");
    lab.link(a, "10.45.0.1/24", b, "10.45.0.2/24");
    lab.overlay_host(a);
    let peer = FilesEntry {
        mac: "02:45:00:00:00:02".into(),
        ip: "10.45.0.2".into(),
        port: 4789,
        arp: Some("192.168.45.2".into()),
        ndp: None,
    };
    let config = lab.write_file("files.json", &FilesEntry::json(&[peer]));
    (a, config)
}

fn all_text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Asserts that ovadm failed with `code` and said every one of `words`.
fn assert_fails(o: &Output, code: i32, words: &[&str], what: &str) {
    let t = all_text(o);
    assert_eq!(
        o.status.code(),
        Some(code),
        "{what}: want exit {code}, got {}:\n{t}",
        o.status
    );
    for w in words {
        assert!(
            t.contains(w),
            "{what}: the message should mention '{w}':\n{t}"
        );
    }
}

/// overlayd still runs and has no overlay named `name` (nor its TAP device).
fn assert_absent(lab: &mut Lab, a: Host, name: &str) {
    assert!(lab.alive(a, Daemon::Overlayd), "overlayd died");
    let s = lab.stats(a);
    assert!(
        s.overlays.iter().all(|o| o.name != name),
        "overlay {name} exists after a refused create: {s:#?}"
    );
    let link = lab.exec(a, "ip", ["link", "show", name]);
    assert!(
        !link.status.success(),
        "device {name} exists after a refused create:\n{}",
        all_text(&link)
    );
}

#[test]
#[ignore = "needs root and network namespaces: run `sudo make test`"]
fn missing_listen_ip_is_refused() {
    let mut lab = Lab::new("err_listen_ip");
    let (a, config) = setup(&mut lab);
    let o = lab.ovadm(
        a,
        [
            "create-overlay",
            "-e",
            "vxlan",
            "-s",
            "files",
            "-v",
            "4545",
            "-p",
            &format!("files/config={}", config.display()),
            "ov0",
        ],
    );
    assert_fails(
        &o,
        1,
        &["unset required property: vxlan/listen_ip"],
        "create-overlay without vxlan/listen_ip",
    );
    assert_absent(&mut lab, a, "ov0");
}

#[test]
#[ignore = "needs root and network namespaces: run `sudo make test`"]
fn mtu_out_of_range_is_refused() {
    let mut lab = Lab::new("err_mtu");
    let (a, config) = setup(&mut lab);
    for mtu in ["100", "9000"] {
        let props = format!(
            "vxlan/listen_ip=10.45.0.1,files/config={},mtu={mtu}",
            config.display()
        );
        let o = lab.ovadm(
            a,
            [
                "create-overlay",
                "-e",
                "vxlan",
                "-s",
                "files",
                "-v",
                "4545",
                "-p",
                &props,
                "ov0",
            ],
        );
        assert_fails(
            &o,
            1,
            &["mtu", "576-8900"],
            &format!("create-overlay with mtu={mtu}"),
        );
        assert_absent(&mut lab, a, "ov0");
    }
}

#[test]
#[ignore = "needs root and network namespaces: run `sudo make test`"]
fn same_vni_on_the_same_listen_address_is_refused() {
    let mut lab = Lab::new("err_dup_vni");
    let (a, config) = setup(&mut lab);
    let create = |lab: &Lab, name: &str, vni: &str, extra: &str| {
        let props = format!(
            "vxlan/listen_ip=10.45.0.1,files/config={}{extra}",
            config.display()
        );
        lab.ovadm(
            a,
            [
                "create-overlay",
                "-e",
                "vxlan",
                "-s",
                "files",
                "-v",
                vni,
                "-p",
                &props,
                name,
            ],
        )
    };
    let o = create(&lab, "ov0", "4545", "");
    assert!(
        o.status.success(),
        "the first overlay failed:\n{}",
        all_text(&o)
    );
    let o = create(&lab, "ov1", "4545", "");
    assert_fails(
        &o,
        1,
        &[],
        "a second overlay with VNI 4545 on 10.45.0.1:4789",
    );
    assert_absent(&mut lab, a, "ov1");
    // Another VNI shares the mux; the same VNI on another port is another mux.
    let o = create(&lab, "ov2", "4546", "");
    assert!(
        o.status.success(),
        "another VNI on the same listen address should share the mux:\n{}",
        all_text(&o)
    );
    let o = create(&lab, "ov3", "4545", ",vxlan/listen_port=4790");
    assert!(
        o.status.success(),
        "the same VNI on another port is another mux:\n{}",
        all_text(&o)
    );
    lab.ovadm_ok(a, ["show-overlay", "ov0"]);
}

#[test]
#[ignore = "needs root and network namespaces: run `sudo make test`"]
fn files_config_with_a_syntax_error_is_refused_naming_the_path() {
    let mut lab = Lab::new("err_files_syntax");
    let (a, _) = setup(&mut lab);
    let bad = lab.write_file(
        "broken.json",
        "{ \"02:45:00:00:00:02\": { \"ip\": \"10.45.0.2\", \"port\": 4789,\n",
    );
    let props = format!("vxlan/listen_ip=10.45.0.1,files/config={}", bad.display());
    let o = lab.ovadm(
        a,
        [
            "create-overlay",
            "-e",
            "vxlan",
            "-s",
            "files",
            "-v",
            "4545",
            "-p",
            &props,
            "ov0",
        ],
    );
    assert_fails(
        &o,
        1,
        &[&bad.display().to_string()],
        "create-overlay with a broken files config",
    );
    assert_absent(&mut lab, a, "ov0");
}

/// Sends one raw line to overlayd's control socket and reads its reply.
fn raw_exchange(lab: &Lab, a: Host, line: &[u8]) -> Option<Reply> {
    let path = lab.run_dir(a).join(overlay_api::OVERLAYD_SOCKET);
    let mut s =
        UnixStream::connect(&path).unwrap_or_else(|e| panic!("connect {}: {e}", path.display()));
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    // overlayd may close as soon as it has seen enough of an overlong line.
    let _ = s.write_all(line);
    let mut reply = String::new();
    BufReader::new(s).read_line(&mut reply).ok()?;
    let reply = reply.trim_end();
    Some(
        serde_json::from_str(reply)
            .unwrap_or_else(|e| panic!("reply is not a Reply ({e}): {reply:?}")),
    )
}

#[test]
#[ignore = "needs root and network namespaces: run `sudo make test`"]
fn garbage_on_the_control_socket_gets_an_error_reply() {
    let mut lab = Lab::new("err_garbage");
    let (a, config) = setup(&mut lab);
    lab.create_files_overlay(a, "ov0", 4545, "10.45.0.1", &config);
    let mut overlong = vec![b'x'; overlay_api::MAX_MESSAGE + 16];
    overlong.push(b'\n');
    let lines: [(&str, &[u8]); 4] = [
        ("not JSON", b"hello, this is not JSON\n"),
        ("an unknown op", b"{\"op\":\"frobnicate\"}\n"),
        (
            "a request missing its fields",
            b"{\"op\":\"delete-overlay\"}\n",
        ),
        ("an overlong line", &overlong),
    ];
    for (what, line) in lines {
        match raw_exchange(&lab, a, line) {
            Some(Reply::Error { .. }) => {}
            other => panic!("{what} on the control socket: want an error reply, got {other:?}"),
        }
        assert!(lab.alive(a, Daemon::Overlayd), "overlayd died of {what}");
    }
    let t = lab.ovadm_ok(a, ["show-overlay", "ov0"]);
    assert!(t.contains("ov0"), "show-overlay after garbage:\n{t}");
    lab.stats(a);
}

#[test]
#[ignore = "needs root and network namespaces: run `sudo make test`"]
fn usage_errors_exit_2_and_no_daemon_exits_1() {
    let mut lab = Lab::new("err_usage");
    let a = lab.add_host("a");
    for args in [
        &["frobnicate-overlay"][..],
        &["create-overlay"],
        &[
            "create-overlay",
            "-e",
            "vxlan",
            "-s",
            "files",
            "-v",
            "not-a-number",
            "ov0",
        ],
        &["modify-overlay", "ov0"],
    ] {
        let o = lab.ovadm(a, args);
        assert_fails(&o, 2, &[], &format!("ovadm {}", args.join(" ")));
        assert!(
            !all_text(&o).trim().is_empty(),
            "ovadm {} failed without a word",
            args.join(" ")
        );
    }
    // No overlayd on this host: the error names the socket it tried.
    let o = lab.ovadm(a, ["show-overlay"]);
    let sock = lab.run_dir(a).join(overlay_api::OVERLAYD_SOCKET);
    assert_fails(
        &o,
        1,
        &[&sock.display().to_string()],
        "show-overlay with no overlayd",
    );
}
