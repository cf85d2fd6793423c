//! `ovsnoop --capture -w FILE` against a files pair whose host 1 runs two
//! overlays (`ov0` with `target/check_source=yes`, and `ov1`) on two
//! forwarding threads: normal traffic (a ping to host 2), pings to
//! addresses nobody has (ARP that varpd cannot answer), datagrams that
//! claim host 2's MAC from another address (spoofed source) and frames
//! larger than the MTU. The pcapng must open in tshark with one interface
//! per overlay (named, with its VNI) and each frame's verdict in its
//! comment — `sent to …`, `delivered from …`, `dropped: not-answered`,
//! `dropped: spoofed-source`, `dropped: too-big` — and hold every drop
//! overlayd counted in the same window: as many as the counters for the
//! drops the test caused, at least as many for any other reason (the
//! capture brackets the counters' window), with nothing lost.

use overlay_api::Mac;
use overlay_tests::{eth_frame, require_tools, vxlan_datagram, wait_for, Lab, VXLAN_FLAG_I};
use pcap_parser::{Block, OptionCode};
use std::collections::BTreeMap;
use std::fs::File;
use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// One `ovsnoop --capture`, its output in the lab directory; killed if the
/// test fails before it is stopped.
struct Snoop {
    child: Option<Child>,
    out: PathBuf,
    err: PathBuf,
}

impl Snoop {
    fn start(lab: &Lab, run_dir: &Path, label: &str, extra: &[&str]) -> Snoop {
        let out = lab.dir().join(format!("{label}.out"));
        let err = lab.dir().join(format!("{label}.err"));
        let child = Command::new(env!("CARGO_BIN_EXE_ovsnoop"))
            .arg("--capture")
            .arg("--run-dir")
            .arg(run_dir)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(File::create(&out).unwrap())
            .stderr(File::create(&err).unwrap())
            .spawn()
            .expect("ovsnoop runs");
        let mut s = Snoop {
            child: Some(child),
            out,
            err,
        };
        let ok = wait_for(Duration::from_secs(20), || {
            s.stderr().contains("Hit Ctrl-C")
                || matches!(s.child.as_mut().unwrap().try_wait(), Ok(Some(_)))
        });
        assert!(
            ok && s.stderr().contains("Hit Ctrl-C"),
            "ovsnoop --capture did not start:\n{}",
            s.stderr()
        );
        s
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.err).unwrap_or_default()
    }

    /// SIGINT, and the exit; returns (stdout, stderr).
    fn stop(&mut self) -> (String, String) {
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(self.child.as_ref().unwrap().id() as i32, libc::SIGINT) };
        self.wait()
    }

    /// The exit (within 20 s); returns (stdout, stderr).
    fn wait(&mut self) -> (String, String) {
        let mut c = self.child.take().unwrap();
        let mut status = None;
        wait_for(Duration::from_secs(20), || {
            status = c.try_wait().ok().flatten();
            status.is_some()
        });
        let Some(status) = status else {
            let _ = c.kill();
            let _ = c.wait();
            panic!("ovsnoop --capture did not stop:\n{}", self.stderr());
        };
        let out = std::fs::read_to_string(&self.out).unwrap_or_default();
        assert!(
            status.success(),
            "ovsnoop --capture exited {status}:\n{}\n{out}",
            self.stderr()
        );
        (out, self.stderr())
    }
}

impl Drop for Snoop {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The interfaces of a pcapng file: (name, description).
fn interfaces(file: &Path) -> Vec<(String, String)> {
    let data = std::fs::read(file).expect("the capture file");
    let (_, shb) = pcap_parser::pcapng::parse_sectionheaderblock(&data).expect("a pcapng");
    let mut rest = &data[shb.block_len1 as usize..];
    let mut out = Vec::new();
    let text = |o: Option<&pcap_parser::PcapNGOption>| {
        o.map(|o| String::from_utf8_lossy(&o.value[..o.len as usize]).into_owned())
            .unwrap_or_default()
    };
    while !rest.is_empty() {
        let (r, block) = pcap_parser::pcapng::parse_block_le(rest).expect("a block");
        if let Block::InterfaceDescription(i) = block {
            let find = |c| i.options.iter().find(|o| o.code == c);
            out.push((
                text(find(OptionCode::IfName)),
                text(find(OptionCode::IfDescription)),
            ));
        }
        rest = r;
    }
    out
}

/// Drops by (overlay, reason) on host `h`, and the muxes' own as
/// (`mux IP:PORT`, reason): the interface names of the pcapng.
fn drops(lab: &Lab, h: overlay_tests::Host) -> BTreeMap<(String, String), u64> {
    let s = lab.stats(h);
    let mut m = BTreeMap::new();
    for o in &s.overlays {
        for (r, n) in &o.drops {
            m.insert((o.name.clone(), r.clone()), *n);
        }
    }
    for x in &s.muxes {
        let at = x.listen.map(|l| l.to_string()).unwrap_or_default();
        for (r, n) in &x.drops {
            m.insert((format!("mux {at}"), r.clone()), *n);
        }
    }
    m
}

#[test]
#[ignore = "needs root, network namespaces and tshark: run `sudo make test`"]
fn capture_writes_every_decision_into_a_pcapng_tshark_reads() {
    require_tools(&["tshark"]);
    let mut lab = Lab::new("capture_decisions");
    lab.overlayd_args(&["--workers", "2"]);
    let p = lab.files_pair(58, 5858);
    // Host 1's ov0 again, with the source check on.
    lab.ovadm_ok(p.a, ["delete-overlay", "ov0"]);
    let props = |extra: &str| {
        format!(
            "vxlan/listen_ip={},files/config={}{extra}",
            p.ul(1),
            p.config.display()
        )
    };
    let create = |name: &str, vni: u32, props: &str| {
        let vni = vni.to_string();
        lab.ovadm_ok(
            p.a,
            [
                "create-overlay",
                "-e",
                "vxlan",
                "-s",
                "files",
                "-v",
                &vni,
                "-p",
                props,
                name,
            ],
        );
    };
    // IPv6 off on host 1's overlays: no DAD or router solicitation for
    // varpd to leave unanswered while the test counts its own.
    let no_v6 = |dev: &str| {
        let key = format!("net.ipv6.conf.{dev}.disable_ipv6=1");
        lab.exec(p.a, "sysctl", ["-q", "-w", key.as_str()]);
    };
    create("ov0", p.vni, &props(",target/check_source=yes"));
    no_v6("ov0");
    lab.addr(p.a, "ov0", &p.mac(1), &[&format!("{}/24", p.ip4(1))]);
    // A second overlay on the same mux, whose neighbours nobody knows.
    create("ov1", p.vni + 1, &props(""));
    no_v6("ov1");
    lab.addr(p.a, "ov1", "02:58:00:00:01:01", &["192.168.159.1/24"]);
    let r = lab.wait_ping(p.a, &p.ip4(2), Duration::from_secs(10));
    assert!(r.all_answered(), "no path to begin with:\n{r}");

    let file = lab.dir().join("decisions.pcapng");
    let file_arg = file.to_str().unwrap().to_string();
    let mut snoop = Snoop::start(
        &lab,
        &lab.run_dir(p.a),
        "capture",
        &["-w", &file_arg, "--outer"],
    );
    let before = drops(&lab, p.a);

    // Normal traffic, both ways.
    let r = lab.ping(p.a, &p.ip4(2), &["-c", "3", "-i", "0.2"]);
    assert!(r.all_answered(), "{r}");
    // Addresses nobody has: ARP that varpd cannot answer, on both overlays.
    lab.ping(p.a, &format!("192.168.{}.99", p.n), &["-c", "1", "-W", "1"]);
    lab.ping(p.a, "192.168.159.9", &["-c", "1", "-W", "1"]);
    // Host 2's MAC claimed from another address of host 2's namespace.
    let rogue = format!("10.{}.0.9", p.n);
    lab.ip(p.b, &["addr", "add", &format!("{rogue}/24"), "dev", "ul0"]);
    let to: Mac = p.mac(1).parse().unwrap();
    let b_mac: Mac = p.mac(2).parse().unwrap();
    let target = format!("{}:4789", p.ul(1));
    lab.in_ns(p.b, || {
        let s = UdpSocket::bind(format!("{rogue}:0")).expect("bind the rogue address");
        for _ in 0..2 {
            let f = eth_frame(to, b_mac, 0x88b5, b"claims to be host 2");
            s.send_to(&vxlan_datagram(VXLAN_FLAG_I, p.vni, &f), &target)
                .expect("send");
        }
        // And a VNI nobody uses: the mux's own drop.
        let f = eth_frame(to, b_mac, 0x88b5, b"for nobody");
        s.send_to(&vxlan_datagram(VXLAN_FLAG_I, 9999, &f), &target)
            .expect("send");
    });
    // Frames larger than the MTU: the TAP device's MTU raised behind
    // overlayd's back, host 2's MAC pinned (no ARP on the way).
    lab.pin_neighbour(&p, 1, 2);
    lab.ip(p.a, &["link", "set", "ov0", "mtu", "1500"]);
    lab.in_ns(p.a, || {
        let s = UdpSocket::bind(format!("{}:0", p.ip4(1))).expect("bind in host 1");
        for port in 0..3u16 {
            s.send_to(&[7u8; 1450], (p.ip4(2).as_str(), 7000 + port))
                .expect("send a large datagram");
        }
    });
    lab.ip(p.a, &["link", "set", "ov0", "mtu", "1400"]);
    let key = |o: &str, r: &str| (o.to_string(), r.to_string());
    let mux = format!("mux {}:4789", p.ul(1));
    let caused = [
        key("ov0", "not-answered"),
        key("ov1", "not-answered"),
        key("ov0", "spoofed-source"),
        key("ov0", "too-big"),
        key(&mux, "unknown-vni"),
    ];
    let got =
        |m: &BTreeMap<(String, String), u64>, k: &(String, String)| m.get(k).copied().unwrap_or(0);
    wait_for(Duration::from_secs(10), || {
        let now = drops(&lab, p.a);
        got(&now, &caused[0]) > got(&before, &caused[0])
            && got(&now, &caused[1]) > got(&before, &caused[1])
            && got(&now, &caused[2]) >= got(&before, &caused[2]) + 2
            && got(&now, &caused[3]) >= got(&before, &caused[3]) + 3
            && got(&now, &caused[4]) > got(&before, &caused[4])
    });
    // The kernel asks for the unknown addresses up to 3 times, a second
    // apart: the window ends when it has given up.
    std::thread::sleep(Duration::from_millis(3500));
    let after = drops(&lab, p.a);
    std::thread::sleep(Duration::from_millis(300));
    let (out, err) = snoop.stop();
    assert!(err.contains("; 0 lost"), "frames were lost:\n{err}");

    // OVSNOOP_CAPTURE_KEEP=FILE keeps a copy (for a look in Wireshark).
    if let Some(keep) = std::env::var_os("OVSNOOP_CAPTURE_KEEP") {
        std::fs::copy(&file, keep).expect("copy the capture");
    }
    // One interface per overlay, named, with its VNI, and the mux's.
    let ifaces = interfaces(&file);
    for (name, vni) in [("ov0", p.vni), ("ov1", p.vni + 1)] {
        assert!(
            ifaces
                .iter()
                .any(|(n, d)| n == name && d.contains(&format!("VNI {vni}"))),
            "no interface for {name}: {ifaces:?}"
        );
    }
    let overlay_ifaces = ifaces
        .iter()
        .filter(|(n, _)| !n.starts_with("mux "))
        .count();
    assert_eq!(overlay_ifaces, 2, "{ifaces:?}");

    // tshark, the decoding oracle, reads every frame's interface and comment.
    let t = Command::new("tshark")
        .arg("-r")
        .arg(&file)
        .args([
            "-T",
            "fields",
            "-e",
            "frame.interface_name",
            "-e",
            "frame.comment",
        ])
        .output()
        .expect("tshark runs");
    assert!(
        t.status.success(),
        "tshark cannot read the file: {}",
        String::from_utf8_lossy(&t.stderr)
    );
    let fields = String::from_utf8_lossy(&t.stdout).into_owned();
    let mut in_file: BTreeMap<(String, String), u64> = BTreeMap::new();
    let mut verdicts: Vec<(String, String)> = Vec::new();
    for l in fields.lines() {
        let (iface, comment) = l.split_once('\t').unwrap_or((l, ""));
        if let Some(reason) = comment.strip_prefix("dropped: ") {
            *in_file.entry(key(iface, reason)).or_default() += 1;
        }
        verdicts.push((iface.to_string(), comment.to_string()));
    }
    let has = |iface: &str, prefix: &str| {
        verdicts
            .iter()
            .any(|(i, c)| i == iface && c.starts_with(prefix))
    };
    let ul2 = format!("{}:4789", p.ul(2));
    assert!(has("ov0", &format!("sent to {ul2}")), "{fields}");
    assert!(
        has("ov0", &format!("delivered from {}:", p.ul(2))),
        "{fields}"
    );
    assert!(has("ov0", "handed to varpd (lookup "), "{fields}");
    for k in &caused {
        assert!(
            has(&k.0, &format!("dropped: {}", k.1)),
            "no {k:?}:\n{fields}"
        );
    }
    // Every drop counted in the window is in the file: exactly those the
    // test caused, at least as many of any other (the capture began
    // before the first snapshot and ended after the second).
    for (k, n) in &after {
        let delta = n - got(&before, k);
        let f = got(&in_file, k);
        if caused.contains(k) {
            assert_eq!(
                f, delta,
                "{k:?}: {f} in the file, {delta} counted\n{fields}"
            );
        } else {
            assert!(
                f >= delta,
                "{k:?}: {f} in the file, {delta} counted\n{fields}"
            );
        }
    }
    // The mux's drop is the datagram as received, behind an IP and UDP
    // header: Wireshark opens its VXLAN.
    let t = Command::new("tshark")
        .arg("-r")
        .arg(&file)
        .args([
            "-Y",
            "vxlan.vni == 9999",
            "-T",
            "fields",
            "-e",
            "frame.interface_name",
            "-e",
            "ip.src",
            "-e",
            "frame.comment",
        ])
        .output()
        .expect("tshark runs");
    let vx = String::from_utf8_lossy(&t.stdout);
    assert_eq!(
        vx.trim(),
        format!("{mux}\t{rogue}\tdropped: unknown-vni"),
        "{fields}"
    );
    // --outer: each received frame also as its datagram, on the mux's
    // interface, which Wireshark opens down to the inner frame.
    let t = Command::new("tshark")
        .arg("-r")
        .arg(&file)
        .args([
            "-Y",
            &format!("vxlan.vni == {} && icmp", p.vni),
            "-T",
            "fields",
            "-e",
            "frame.interface_name",
            "-e",
            "frame.comment",
        ])
        .output()
        .expect("tshark runs");
    let outer = String::from_utf8_lossy(&t.stdout);
    assert_eq!(
        outer
            .lines()
            .filter(|l| l.starts_with(&format!("{mux}\tdelivered from {}:", p.ul(2))))
            .count(),
        3,
        "{outer}"
    );
    // Wireshark decodes the frames themselves: the too-big ones are the
    // UDP datagrams to ports 7000-7002.
    let t = Command::new("tshark")
        .arg("-r")
        .arg(&file)
        .args([
            "-Y",
            "frame.comment == \"dropped: too-big\"",
            "-T",
            "fields",
            "-e",
            "udp.dstport",
        ])
        .output()
        .expect("tshark runs");
    let ports = String::from_utf8_lossy(&t.stdout);
    assert!(ports.contains("7000"), "{ports}");
    // The one-line output says the same.
    assert!(
        out.lines()
            .any(|l| l.starts_with(&format!("VNI {} (ov0)  tx", p.vni))
                && l.ends_with("dropped: too-big")),
        "{out}"
    );
    // What the run looked like (shown with --nocapture; the README quotes it).
    eprintln!("--- ovsnoop --capture stdout:\n{out}--- stderr:\n{err}--- tshark fields:\n{fields}");
    // overlayd's capture counters.
    let s = lab.stats(p.a);
    assert!(
        s.capture.frames > 0 && s.capture.sessions == 0,
        "{:?}",
        s.capture
    );

    // Filtered by overlayd (one overlay, drops only), as JSON, ending by
    // itself after its count.
    let mut one = Snoop::start(
        &lab,
        &lab.run_dir(p.a),
        "one-drop",
        &[
            "--overlay",
            "ov1",
            "--drops-only",
            "--json",
            "-c",
            "1",
            "--duration",
            "20",
        ],
    );
    let ping = lab.ping(p.a, "192.168.159.9", &["-c", "1", "-W", "1"]);
    let (out, err) = one.wait();
    let lines: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert_eq!(lines.len(), 1, "-c 1: {out}\n{err}\n{ping}");
    let v = &lines[0];
    assert_eq!(
        (&v["overlay"], &v["dir"], &v["verdict"], &v["reason"]),
        (
            &serde_json::json!("ov1"),
            &serde_json::json!("tx"),
            &serde_json::json!("dropped"),
            &serde_json::json!("not-answered")
        ),
        "{v}"
    );
    assert_eq!(v["decision"], "dropped: not-answered", "{v}");
}

/// A capturing client that does not read loses frames — counted, told to
/// it, in the statistics — and forwarding goes on as if nobody captured:
/// a ping flood with big frames loses no echo.
#[test]
#[ignore = "needs root and network namespaces: run `sudo make test`"]
fn a_reader_that_falls_behind_loses_frames_counted_and_never_slows_forwarding() {
    let mut lab = Lab::new("capture_slow_reader");
    let p = lab.files_pair(59, 5959);
    let r = lab.wait_ping(p.a, &p.ip4(2), Duration::from_secs(10));
    assert!(r.all_answered(), "no path to begin with:\n{r}");
    let stalled = overlay_tests::StalledCapture::start(&lab.run_dir(p.a), &["ov0"]);
    // Some 12,000 frames of 1,242 bytes: some 30 MB of capture lines, far
    // more than overlayd keeps for a reader (8 MiB) and the socket holds.
    let flood = lab.ping(
        p.a,
        &p.ip4(2),
        &["-f", "-i", "0", "-c", "6000", "-s", "1200"],
    );
    let lost_now = lab.stats(p.a).capture.lost;
    let t = stalled.finish();
    assert!(
        flood.all_answered(),
        "forwarding lost echoes while a capture was stuck:\n{flood}"
    );
    let (frames, lost) = t.end.expect("overlayd's end line with the totals");
    assert!(
        lost > 0,
        "nothing lost for a reader that read nothing: {t:?}"
    );
    assert!(
        t.lost_told > 0,
        "the client was not told of its losses: {t:?}"
    );
    assert_eq!(
        frames, t.frames_read,
        "every frame counted as sent was read"
    );
    assert!(
        frames + lost >= 12_000,
        "each echo and reply is sent or lost: {t:?}"
    );
    let s = lab.stats(p.a);
    assert!(
        lost_now > 0 && s.capture.lost >= lost,
        "the losses are in the statistics: {:?}",
        s.capture
    );
}
