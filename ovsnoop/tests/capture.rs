//! ovsnoop on a real capture: tcpdump on host 1's underlay `ul0` while the
//! two files-plugin hosts ping each other over the overlay (IPv4 and IPv6);
//! ovsnoop must show the VNI with its overlay name and the inner echo
//! requests and replies, no overlay ARP (proxy ARP answers it locally), and
//! as many VXLAN frames as tshark, the decoding oracle, finds.

use overlay_tests::Lab;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Output, Stdio};

fn ovsnoop(file: &Path, run_dir: &Path, extra: &[&str]) -> String {
    let out: Output = Command::new(env!("CARGO_BIN_EXE_ovsnoop"))
        .arg("-r")
        .arg(file)
        .arg("--run-dir")
        .arg(run_dir)
        .args(extra)
        .output()
        .expect("ovsnoop runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "ovsnoop {extra:?} failed: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

#[test]
#[ignore = "needs root and network namespaces: run `sudo make test`"]
fn ovsnoop_decodes_a_real_overlay_capture() {
    let mut lab = Lab::new("ovsnoop_capture");
    let p = lab.files_pair(77, 4242);
    let file = lab.dir().join("ul0.pcap");

    let capture = lab.capture(p.a, "ul0", &file, &[]);
    let pings: Vec<_> = [p.ip4(2), p.ip6(2)]
        .iter()
        .map(|dest| lab.ping(p.a, dest, &[]))
        .chain(
            [p.ip4(1), p.ip6(1)]
                .iter()
                .map(|dest| lab.ping(p.b, dest, &[])),
        )
        .collect();
    capture.stop();
    for r in &pings {
        assert!(r.all_answered(), "the overlay does not work:\n{r}");
    }

    let run_dir = lab.run_dir(p.a);
    let lines = ovsnoop(&file, &run_dir, &[]);
    eprintln!("ovsnoop -r:\n{lines}");
    let vxlan: Vec<&str> = lines.lines().filter(|l| l.starts_with("VNI ")).collect();
    assert!(
        vxlan
            .iter()
            .all(|l| l.starts_with("VNI 4242 (ov0)  10.77.0.")),
        "VNIs are not shown with their overlay:\n{lines}"
    );
    for want in [
        "ICMP echo request 192.168.77.1 -> 192.168.77.2",
        "ICMP echo reply 192.168.77.2 -> 192.168.77.1",
        "ICMP echo request 192.168.77.2 -> 192.168.77.1",
        "ICMPv6 echo request fd77::1 -> fd77::2",
        "ICMPv6 echo reply fd77::2 -> fd77::1",
        "ICMPv6 echo request fd77::2 -> fd77::1",
    ] {
        assert!(
            vxlan.iter().any(|l| l.contains(want)),
            "no VXLAN line with `{want}`:\n{lines}"
        );
    }
    assert!(
        !vxlan.iter().any(|l| l.contains(" ARP ")),
        "overlay ARP went over the wire although varpd proxies it:\n{lines}"
    );

    let oracle = Command::new("tshark")
        .arg("-r")
        .arg(&file)
        .args(["-Y", "vxlan"])
        .output()
        .expect("tshark runs");
    let tshark = String::from_utf8_lossy(&oracle.stdout);
    assert_eq!(
        vxlan.len(),
        tshark.lines().count(),
        "ovsnoop and tshark disagree on VXLAN frames:\n{lines}\ntshark:\n{tshark}"
    );

    let v = ovsnoop(&file, &run_dir, &["-v"]);
    assert!(
        v.contains("VXLAN:  VNI = 4242") && v.contains("VXLAN:  Overlay = ov0"),
        "{v}"
    );
    assert!(v.contains("INNER ICMP:  Type = 8 (echo request)"), "{v}");
    eprintln!(
        "ovsnoop -v (first frames):\n{}",
        v.split("\n\n").take(3).collect::<Vec<_>>().join("\n\n")
    );

    let j = ovsnoop(&file, &run_dir, &["--json"]);
    let objs: Vec<serde_json::Value> = j
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON ({e}): {l}")))
        .collect();
    let vx: Vec<_> = objs.iter().filter(|o| o.get("vxlan").is_some()).collect();
    assert_eq!(vx.len(), vxlan.len());
    assert!(vx
        .iter()
        .all(|o| o["vxlan"]["vni"] == 4242 && o["inner"].is_object() && o["outer"].is_object()));
    eprintln!(
        "ovsnoop --json (first VXLAN frame):\n{}",
        serde_json::to_string(vx[0]).unwrap()
    );
}

#[test]
#[ignore = "needs root and network namespaces: run `sudo make test`"]
fn ovsnoop_live_capture_on_the_underlay() {
    let mut lab = Lab::new("ovsnoop_live");
    let p = lab.files_pair(78, 4343);
    let mut snoop = Command::new("ip")
        .args([
            "netns",
            "exec",
            lab.ns(p.a),
            env!("CARGO_BIN_EXE_ovsnoop"),
            "-i",
            "ul0",
        ])
        .arg("--run-dir")
        .arg(lab.run_dir(p.a))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ovsnoop runs");
    let mut stderr = BufReader::new(snoop.stderr.take().expect("piped"));
    let mut first = String::new();
    let _ = stderr.read_line(&mut first);
    assert!(first.contains("listening on ul0"), "ovsnoop -i: {first}");
    let r4 = lab.ping(p.a, &p.ip4(2), &[]);
    let r6 = lab.ping(p.b, &p.ip6(1), &[]);
    let _ = Command::new("kill")
        .args(["-INT", &snoop.id().to_string()])
        .status();
    let out = snoop.wait_with_output().expect("ovsnoop stops on SIGINT");
    let mut rest = String::new();
    let _ = std::io::Read::read_to_string(&mut stderr, &mut rest);
    let lines = String::from_utf8_lossy(&out.stdout);
    eprintln!("ovsnoop -i ul0:\n{lines}{rest}");
    assert!(r4.all_answered() && r6.all_answered(), "{r4}\n{r6}");
    assert!(
        out.status.success(),
        "ovsnoop -i exited {}: {rest}",
        out.status
    );
    for want in [
        "VNI 4343 (ov0)  10.78.0.1 -> 10.78.0.2  02:78:00:00:00:01 -> 02:78:00:00:00:02  ICMP echo request 192.168.78.1 -> 192.168.78.2",
        "VNI 4343 (ov0)  10.78.0.2 -> 10.78.0.1  02:78:00:00:00:02 -> 02:78:00:00:00:01  ICMPv6 echo request fd78::2 -> fd78::1",
        "ICMPv6 echo reply fd78::1 -> fd78::2",
    ] {
        assert!(lines.contains(want), "no `{want}` in:\n{lines}");
    }
    let vxlan = lines.lines().filter(|l| l.starts_with("VNI 4343")).count();
    assert!(
        rest.contains(&format!(", {vxlan} VXLAN; VNI 4343: {vxlan}")),
        "the Ctrl-C summary does not match the {vxlan} VXLAN lines: {rest}"
    );
}
