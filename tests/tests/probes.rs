//! The USDT probes and the script library, against the real binaries.
//!
//! With bpftrace attached to overlayd and varpd of a files pair, the test
//! makes every probe of both providers fire (all but the `table-resize-*`
//! ones, which await the resizable table): pings with proxy ARP and NDP,
//! an unknown-VNI datagram, a drop entry, a pending MAC flooded while varpd
//! is stopped, varpd stopped and restarted, a DHCP discover, and a broken
//! then repaired files configuration with SIGHUP. It checks that each
//! probe fired and that a few carry the right arguments. The second test
//! runs each script of `probes/scripts/` through `probes/ovtrace -p PID`
//! while the same things happen, and checks that each reports them.

use overlay_api::Mac;
use overlay_tests::{
    eth_frame, map_value, ovtrace_path, provider_probes, vxlan_datagram, Daemon, Host, Lab, Pair,
    Trace, VXLAN_FLAG_I,
};
use std::net::UdpSocket;
use std::os::fd::AsRawFd;
use std::process::Command;
use std::time::Duration;

/// A bpftrace program counting every probe of `provider` (but the
/// `table-resize-*` ones and `mac-conflict`, which needs two etcd hosts and
/// is checked in `etcd.rs`) under `@count[NAME]`, plus `extra` blocks.
fn count_every_probe(provider: &str, extra: &str) -> String {
    let bin = match provider {
        "overlay" => "@OVERLAYD@",
        _ => "@VARPD@",
    };
    let mut prog = String::from("BEGIN { printf(\"counting; Hit Ctrl-C to end.\\n\"); }\n");
    for p in provider_probes(provider) {
        if !p.starts_with("table-resize") && p != "mac-conflict" {
            prog.push_str(&format!(
                "usdt:{bin}:{provider}:{p} {{ @count[\"{p}\"] = count(); }}\n"
            ));
        }
    }
    prog.push_str(extra);
    prog
}

/// Arguments worth checking, as maps keyed by them.
const OVERLAY_ARGS: &str = r#"
usdt:@OVERLAYD@:overlay:drop { @drop[str(arg0), str(arg2)] = count(); }
usdt:@OVERLAYD@:overlay:lookup-reply { @reply[str(arg1), str(arg2)] = count(); }
usdt:@OVERLAYD@:overlay:target-set { @set[str(arg1), str(arg2), str(arg3)] = count(); }
usdt:@OVERLAYD@:overlay:encap { @encap[str(arg0), str(arg3), arg4] = count(); }
usdt:@OVERLAYD@:overlay:target-queue-overflow { @overflow[str(arg0), str(arg1)] = count(); @queued = max(arg2); }
usdt:@OVERLAYD@:overlay:target-flush { @flush[str(arg0), str(arg2)] = count(); }
usdt:@OVERLAYD@:overlay:restore { @restore[str(arg0)] = count(); }
"#;

const VARPD_ARGS: &str = r#"
usdt:@VARPD@:varpd:proxy-arp { @arp[str(arg0), str(arg1), str(arg2), str(arg3)] = count(); }
usdt:@VARPD@:varpd:proxy-ndp { @ndp[str(arg0), str(arg1), str(arg2), str(arg3)] = count(); }
usdt:@VARPD@:varpd:proxy-dhcp { @dhcp[str(arg0), str(arg1)] = count(); }
usdt:@VARPD@:varpd:config-reload { @reload[str(arg0), str(arg1), str(arg3)] = count(); }
usdt:@VARPD@:varpd:plugin-error { @error[str(arg0), str(arg1)] = count(); }
"#;

/// Sends, from host 2, one VXLAN datagram with a VNI nobody serves to host
/// 1's overlayd.
fn send_unknown_vni(lab: &Lab, p: &Pair, vni: u32) {
    let target = format!("{}:4789", p.ul(1));
    let src: Mac = "02:99:00:00:00:99".parse().unwrap();
    let frame = eth_frame(Mac::BROADCAST, src, 0x0800, &[0x45, 0, 0, 20]);
    lab.in_ns(p.b, || {
        let s = UdpSocket::bind(format!("{}:0", p.ul(2))).expect("bind in the peer's namespace");
        s.send_to(&vxlan_datagram(VXLAN_FLAG_I, vni, &frame), &target)
            .unwrap_or_else(|e| panic!("send to {target}: {e}"));
    });
}

/// Broadcasts a DHCP discover from host `h`'s `ov0` (UDP 68 to
/// 255.255.255.255:67), as a guest looking for an address would.
fn send_dhcp_discover(lab: &Lab, h: Host, mac: &str) {
    let mac: Mac = mac.parse().unwrap();
    lab.in_ns(h, || {
        let s = UdpSocket::bind("0.0.0.0:68").expect("bind to the DHCP client port");
        s.set_broadcast(true).expect("SO_BROADCAST");
        let dev = b"ov0\0";
        // SAFETY: setsockopt(2) on a socket we own, reading `dev` for its length.
        let rc = unsafe {
            libc::setsockopt(
                s.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_BINDTODEVICE,
                dev.as_ptr().cast(),
                dev.len() as libc::socklen_t,
            )
        };
        assert_eq!(
            rc,
            0,
            "SO_BINDTODEVICE ov0: {}",
            std::io::Error::last_os_error()
        );
        // BOOTP request: op 1, Ethernet, 6-byte addresses, a transaction id,
        // chaddr; the magic cookie and option 53 (DHCPDISCOVER).
        let mut m = vec![0u8; 240];
        m[..4].copy_from_slice(&[1, 1, 6, 0]);
        m[4..8].copy_from_slice(&0x1234_5678u32.to_be_bytes());
        m[28..34].copy_from_slice(&mac.0);
        m[236..240].copy_from_slice(&[99, 130, 83, 99]);
        m.extend_from_slice(&[53, 1, 1, 255]);
        s.send_to(&m, "255.255.255.255:67")
            .unwrap_or_else(|e| panic!("DHCP discover: {e}"));
    });
}

/// With varpd stopped and the table flushed, floods host 2's overlay
/// address from host 1 through a permanent neighbour entry, so that its
/// MAC's pending queue (128 KiB) overflows.
fn flood_pending(lab: &Lab, p: &Pair) {
    lab.ovadm_ok(p.a, ["modify-overlay", "-f", "ov0"]);
    lab.pin_neighbour(p, 1, 2);
    let dest = format!("{}:9", p.ip4(2));
    lab.in_ns(p.a, || {
        let s = UdpSocket::bind(format!("{}:0", p.ip4(1))).expect("bind on ov0's address");
        let payload = [0x5au8; 1000];
        for _ in 0..400 {
            let _ = s.send_to(&payload, &dest);
            std::thread::sleep(Duration::from_micros(200));
        }
    });
    lab.wait_stats(p.a, Duration::from_secs(10), "queue-overflow drops", |s| {
        overlay_tests::snapshot::overlay_drops(s, "ov0", overlay_api::DropReason::QueueOverflow) > 0
    });
    lab.ip(p.a, &["neigh", "del", &p.ip4(2), "dev", "ov0"]);
}

/// Replaces the files configuration with `text` and sends varpd on host
/// `h` SIGHUP, which reloads it.
fn reload_config(lab: &mut Lab, h: Host, p: &Pair, text: &str) {
    std::fs::write(&p.config, text).unwrap_or_else(|e| panic!("rewrite config: {e}"));
    let pid = lab.pid(h, Daemon::Varpd).expect("varpd runs") as libc::pid_t;
    // SAFETY: kill(2) has no memory effects.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGHUP) }, 0, "SIGHUP varpd");
}

/// Stops varpd on host 1 and starts it again, waiting for each change to
/// reach overlayd.
fn bounce_varpd(lab: &mut Lab, p: &Pair) {
    lab.stop(p.a, Daemon::Varpd);
    lab.wait_linked(p.a, false);
    lab.start_varpd(p.a);
    lab.wait_linked(p.a, true);
}

/// Pings host 2 over IPv4 and IPv6 from host 1 after a flush, so that
/// both proxy ARP and NDP answer and lookups go to varpd.
fn ping_fresh(lab: &Lab, p: &Pair) {
    lab.ovadm_ok(p.a, ["modify-overlay", "-f", "ov0"]);
    lab.ip(p.a, &["neigh", "flush", "dev", "ov0"]);
    for dest in [p.ip4(2), p.ip6(2)] {
        let r = lab.wait_ping(p.a, &dest, Duration::from_secs(15));
        assert!(r.all_answered(), "cannot reach {dest}:\n{r}");
    }
}

/// Sets host 2's MAC to drop on host 1, pings it (dropped), and removes
/// the entry again.
fn drop_entry(lab: &Lab, p: &Pair) {
    lab.ovadm_ok(
        p.a,
        ["modify-overlay", "-s", &format!("{}=drop", p.mac(2)), "ov0"],
    );
    let r = lab.ping(p.a, &p.ip4(2), &["-c", "2", "-W", "1"]);
    assert!(r.none_answered(), "a drop entry let pings through:\n{r}");
    lab.ovadm_ok(p.a, ["modify-overlay", "-d", &p.mac(2), "ov0"]);
}

fn assert_has(out: &str, key: &str, what: &str) {
    assert!(
        map_value(out, key).unwrap_or(0) > 0,
        "{what}: no `{key}` in the trace:\n{out}"
    );
}

#[test]
#[ignore = "needs root, network namespaces and bpftrace: run `sudo make test`"]
fn every_probe_fires_with_the_right_arguments() {
    let mut lab = Lab::new("probes_fire");
    let p = lab.files_pair(52, 5252);
    let good = std::fs::read_to_string(&p.config).expect("read the files config");
    let ov = lab.bpftrace(
        p.a,
        Daemon::Overlayd,
        "overlayd-all",
        &count_every_probe("overlay", OVERLAY_ARGS),
    );

    // varpd away: disconnect and degrade; a pending MAC overflows; varpd
    // back: connect and restore, and the queued frames' lookup is answered.
    lab.stop(p.a, Daemon::Varpd);
    lab.wait_linked(p.a, false);
    flood_pending(&lab, &p);
    lab.start_varpd(p.a);
    lab.wait_linked(p.a, true);

    // The varpd now running is the one to trace.
    let vp = lab.bpftrace(
        p.a,
        Daemon::Varpd,
        "varpd-all",
        &count_every_probe("varpd", VARPD_ARGS),
    );
    ping_fresh(&lab, &p);
    send_unknown_vni(&lab, &p, 4999);
    drop_entry(&lab, &p);
    send_dhcp_discover(&lab, p.a, &p.mac(1));
    reload_config(&mut lab, p.a, &p, "{ this is not JSON");
    std::thread::sleep(Duration::from_millis(500));
    reload_config(&mut lab, p.a, &p, &good);
    std::thread::sleep(Duration::from_millis(500));
    // The last ping shows the reload left varpd working.
    let r = lab.ping(p.a, &p.ip4(2), &[]);
    assert!(r.all_answered(), "the pair broke:\n{r}");

    let vout = vp.finish();
    let oout = ov.finish();
    eprintln!("---- overlayd trace ----\n{oout}\n---- varpd trace ----\n{vout}");

    for (provider, out) in [("overlay", &oout), ("varpd", &vout)] {
        let silent: Vec<String> = provider_probes(provider)
            .into_iter()
            .filter(|n| !n.starts_with("table-resize") && n != "mac-conflict")
            .filter(|n| map_value(out, &format!("@count[{n}]")).unwrap_or(0) == 0)
            .collect();
        assert!(
            silent.is_empty(),
            "probes of provider {provider} that never fired: {silent:?}; trace:\n{out}"
        );
    }

    let (ul2, mac2) = (p.ul(2), p.mac(2));
    assert_has(&oout, "@drop[-, unknown-vni]", "drop at the mux, reason");
    assert_has(&oout, "@drop[ov0, target-drop]", "drop by a drop entry");
    assert_has(
        &oout,
        "@drop[ov0, queue-overflow]",
        "drop of an overflowing queue",
    );
    assert_has(
        &oout,
        &format!("@reply[{mac2}, {ul2}:4789]"),
        "lookup-reply result",
    );
    assert_has(
        &oout,
        "@reply[ff:ff:ff:ff:ff:ff, handled]",
        "proxy lookup-reply",
    );
    assert_has(
        &oout,
        &format!("@set[{mac2}, {ul2}:4789, varpd]"),
        "target-set by varpd",
    );
    assert_has(
        &oout,
        &format!("@set[{mac2}, drop, operator]"),
        "target-set drop by the operator",
    );
    assert_has(
        &oout,
        &format!("@encap[ov0, {ul2}, 4789]"),
        "encap destination",
    );
    assert_has(
        &oout,
        &format!("@overflow[ov0, {mac2}]"),
        "queue overflow MAC",
    );
    // The queue is full when a frame overflows it: within one frame of 128 KiB.
    let queued = map_value(&oout, "@queued").expect("queue-overflow reports the bytes queued");
    assert!(
        (128 * 1024 - 1600..=128 * 1024).contains(&queued),
        "target-queue-overflow queued_bytes = {queued}, want a full 128 KiB queue"
    );
    assert_has(&oout, "@flush[ov0, operator]", "target-flush why");
    assert_has(&oout, "@restore[ov0]", "restore overlay");

    let (mac1, ip4, ip6) = (p.mac(1), p.ip4(2), p.ip6(2));
    assert_has(
        &vout,
        &format!("@arp[ov0, {mac1}, {ip4}, {mac2}]"),
        "proxy-arp: requester, address, answer",
    );
    assert_has(
        &vout,
        &format!("@ndp[ov0, {mac1}, {ip6}, {mac2}]"),
        "proxy-ndp: requester, address, answer",
    );
    assert_has(
        &vout,
        &format!("@dhcp[ov0, {mac1}]"),
        "proxy-dhcp requester",
    );
    assert_has(&vout, "@reload[files, ov0, ok]", "config-reload ok");
    assert_has(
        &vout,
        "@error[files, ov0]",
        "plugin-error of the broken config",
    );
}

/// A library script run through ovtrace, with the strings its output must
/// hold.
struct Expect {
    trace: Trace,
    name: &'static str,
    wants: Vec<String>,
}

#[test]
#[ignore = "needs root, network namespaces and bpftrace: run `sudo make test`"]
fn library_scripts_report_what_happened() {
    let mut lab = Lab::new("probes_scripts");
    let p = lab.files_pair(53, 5353);
    let good = std::fs::read_to_string(&p.config).expect("read the files config");
    let (mac1, mac2, ul2) = (p.mac(1), p.mac(2), p.ul(2));
    let (mac9, ip9) = ("02:53:00:00:00:09".to_string(), "192.168.53.9".to_string());

    let mut runs = Vec::new();
    let overlay_scripts: [(&str, Vec<String>); 6] = [
        (
            "drops",
            vec![
                "@frames[-, 4999, unknown-vni]: 1".into(),
                "@frames[ov0, 5353, target-drop]:".into(),
                "@frames[ov0, 5353, not-answered]:".into(),
                "@bytes[ov0, 5353, target-drop]:".into(),
            ],
        ),
        (
            "lookup-latency",
            vec![
                "@ns[ov0]:".into(),
                format!("@results[ov0, {ul2}:4789]:"),
                "@results[ov0, handled]:".into(),
                "@results[ov0, drop:".into(),
            ],
        ),
        (
            "top-misses",
            vec![
                format!("@misses[ov0, {mac2}]:"),
                format!("@lookups[ov0, {mac2}]:"),
                format!("@misses[ov0, {mac9}]:"),
            ],
        ),
        (
            "bytes-by-dest",
            vec![
                format!("@bytes[ov0, {ul2}, 4789]:"),
                format!("@frames[ov0, {ul2}, 4789]:"),
            ],
        ),
        (
            "health",
            vec![
                "varpd-down".into(),
                "degrade      ov0".into(),
                "varpd-up".into(),
                "restore      ov0              ONLINE after".into(),
            ],
        ),
        (
            "targets",
            vec![
                "flush   ov0              -                  ".into(),
                format!("set     ov0              {mac2}  {ul2}:4789, by varpd"),
                format!("set     ov0              {mac2}  drop, by operator"),
                format!("remove  ov0              {mac2}  by operator"),
            ],
        ),
    ];
    for (name, wants) in overlay_scripts {
        runs.push(Expect {
            trace: lab.ovtrace(p.a, Daemon::Overlayd, name),
            name,
            wants,
        });
    }

    bounce_varpd(&mut lab, &p);
    let varpd_scripts: [(&str, Vec<String>); 2] = [
        (
            "proxy",
            vec![
                format!("ov0              arp   {mac1}  {:<24} {mac2}", p.ip4(2)),
                format!("ov0              ndp   {mac1}  {:<24} {mac2}", p.ip6(2)),
                format!("ov0              dhcp  {mac1}  -"),
            ],
        ),
        (
            "reloads",
            vec![
                "reload  files    ov0              0 changed: ".into(),
                "error   files    ov0              ".into(),
                "changed: ok".into(),
            ],
        ),
    ];
    for (name, wants) in varpd_scripts {
        runs.push(Expect {
            trace: lab.ovtrace(p.a, Daemon::Varpd, name),
            name,
            wants,
        });
    }

    ping_fresh(&lab, &p);
    // More traffic for the histograms and byte counts.
    let r = lab.ping(p.a, &p.ip4(2), &["-c", "5", "-i", "0.1", "-s", "1000"]);
    assert!(r.all_answered(), "{r}");
    // A guest that talks to a MAC no plugin knows: it misses, and varpd
    // answers with a drop.
    lab.ip(
        p.a,
        &[
            "neigh",
            "replace",
            &ip9,
            "lladdr",
            &mac9,
            "dev",
            "ov0",
            "nud",
            "permanent",
        ],
    );
    let r = lab.ping(p.a, &ip9, &["-c", "3", "-i", "0.2", "-W", "1"]);
    assert!(r.none_answered(), "{r}");
    send_unknown_vni(&lab, &p, 4999);
    drop_entry(&lab, &p);
    send_dhcp_discover(&lab, p.a, &mac1);
    reload_config(&mut lab, p.a, &p, "{ this is not JSON");
    std::thread::sleep(Duration::from_millis(500));
    reload_config(&mut lab, p.a, &p, &good);
    std::thread::sleep(Duration::from_millis(500));

    // Found by run directory, without -p, as an operator would.
    let run_dir = lab.run_dir(p.a).to_string_lossy().into_owned();
    let by_dir = lab.ovtrace_args("drops-by-run-dir", &["drops", "--run-dir", &run_dir]);
    send_unknown_vni(&lab, &p, 4998);
    runs.push(Expect {
        trace: by_dir,
        name: "drops --run-dir",
        wants: vec!["@frames[-, 4998, unknown-vni]: 1".into()],
    });

    let mut failed = Vec::new();
    for e in runs {
        let cmd = e.trace.command().to_string();
        let out = e.trace.finish();
        eprintln!("---- {} ({cmd}) ----\n{out}", e.name);
        let missing: Vec<&String> = e
            .wants
            .iter()
            .filter(|w| !out.contains(w.as_str()))
            .collect();
        if !missing.is_empty() {
            failed.push(format!("{}: lacks {missing:?}", e.name));
        }
    }
    assert!(
        failed.is_empty(),
        "scripts did not report what happened:\n{}",
        failed.join("\n")
    );
    // The lab runs two overlayds: without -p or --run-dir, ovtrace lists
    // them and exits 2 rather than guess.
    let out = Command::new(ovtrace_path())
        .arg("drops")
        .output()
        .expect("run ovtrace");
    let text = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "ovtrace without -p:\n{text}");
    for h in [p.a, p.b] {
        let pid = lab
            .pid(h, Daemon::Overlayd)
            .expect("overlayd runs")
            .to_string();
        assert!(
            text.contains(&pid),
            "ovtrace without -p should list {pid}:\n{text}"
        );
    }
    let out = Command::new(ovtrace_path())
        .arg("no-such-script")
        .output()
        .expect("run ovtrace");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no script 'no-such-script'"));
}
