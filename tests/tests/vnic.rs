//! VNICs: many guests on one overlay per host. Three hosts on a bridge,
//! each with overlay `ov0` (files plugin) and three guests, each guest a
//! namespace holding a VNIC made by `ovadm create-vnic --netns`.
//!
//! Address plan (N = 51): host i has underlay `10.51.0.i`; guest k of host i
//! has VNIC `vnick` with MAC `02:51:0i:00:00:0k`, `192.168.51.(10i+k)/24`
//! and `fd51::i:k/64` (the plan of `lab/lab.sh` with `GUESTS=3`, on another
//! prefix).
//!
//! Checked: every guest reaches every other over IPv4 and IPv6; traffic
//! between guests of one host never reaches the underlay (a capture on the
//! host's `ul0`, decoded by tshark, holds none of it, and does hold a
//! cross-host ping as a control); VNIC counters; the errors of create-vnic;
//! ovstat -V; deleting a VNIC drops its counters (also one whose guest
//! namespace went first) and, after the files config loses it
//! and the other hosts flush, leaves no target entry for its MAC anywhere;
//! deleting the overlay removes its VNICs from the guests.

use overlay_api::proto::{Reply, Request};
use overlay_api::{StatsSnapshot, VnicSpec, VnicStats};
use overlay_tests::{find_mac_line, Daemon, FilesEntry, Host, Lab};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const N: u8 = 51;
const HOSTS: u8 = 3;
const GUESTS: u8 = 3;

fn ul(i: u8) -> String {
    format!("10.{N}.0.{i}")
}
fn mac(i: u8, k: u8) -> String {
    format!("02:{N}:{i:02}:00:00:{k:02}")
}
fn ip4(i: u8, k: u8) -> String {
    format!("192.168.{N}.{}", 10 * i + k)
}
fn ip6(i: u8, k: u8) -> String {
    format!("fd{N}::{i}:{k}")
}
fn entry(i: u8, k: u8) -> FilesEntry {
    FilesEntry {
        mac: mac(i, k),
        ip: ul(i),
        port: 4789,
        arp: Some(ip4(i, k)),
        ndp: Some(ip6(i, k)),
    }
}

struct Guests {
    hosts: Vec<Host>,
    /// guests[i-1][k-1]
    guests: Vec<Vec<Host>>,
    config: PathBuf,
}

impl Guests {
    fn host(&self, i: u8) -> Host {
        self.hosts[i as usize - 1]
    }
    fn guest(&self, i: u8, k: u8) -> Host {
        self.guests[i as usize - 1][k as usize - 1]
    }
    fn all() -> impl Iterator<Item = (u8, u8)> {
        (1..=HOSTS).flat_map(|i| (1..=GUESTS).map(move |k| (i, k)))
    }
}

fn setup(lab: &mut Lab) -> Guests {
    let hosts: Vec<Host> = (1..=HOSTS)
        .map(|i| lab.add_host(&format!("h{i}")))
        .collect();
    lab.switch(&format!("10.{N}.0"), &hosts);
    let entries: Vec<FilesEntry> = Guests::all().map(|(i, k)| entry(i, k)).collect();
    let config = lab.write_file("files.json", &FilesEntry::json(&entries));
    let mut guests = Vec::new();
    for (n, &h) in hosts.iter().enumerate() {
        let i = n as u8 + 1;
        lab.overlay_host(h);
        lab.create_files_overlay(h, "ov0", 5151, &ul(i), &config);
        let mut row = Vec::new();
        for k in 1..=GUESTS {
            let g = lab.add_host(&format!("h{i}g{k}"));
            let vnic = format!("vnic{k}");
            lab.ovadm_ok(
                h,
                [
                    "create-vnic",
                    "-l",
                    "ov0",
                    "-m",
                    &mac(i, k),
                    "--netns",
                    lab.ns(g),
                    &vnic,
                ],
            );
            lab.ip(
                g,
                &["addr", "add", &format!("{}/24", ip4(i, k)), "dev", &vnic],
            );
            lab.ip(
                g,
                &[
                    "addr",
                    "add",
                    &format!("{}/64", ip6(i, k)),
                    "dev",
                    &vnic,
                    "nodad",
                ],
            );
            row.push(g);
        }
        guests.push(row);
    }
    Guests {
        hosts,
        guests,
        config,
    }
}

/// Pings, from guest (i, k), every other guest over IPv4 and IPv6 at once;
/// returns the transcripts of those not all answered.
fn ping_all_from(lab: &Lab, g: &Guests, i: u8, k: u8) -> Vec<String> {
    let pings: Vec<_> = Guests::all()
        .filter(|&(j, l)| (j, l) != (i, k))
        .flat_map(|(j, l)| [ip4(j, l), ip6(j, l)])
        .map(|dest| lab.ping_background(g.guest(i, k), &dest, &["-c", "3", "-i", "0.2"]))
        .collect();
    pings
        .into_iter()
        .map(|p| p.finish())
        .filter(|p| !p.all_answered())
        .map(|p| p.to_string())
        .collect()
}

fn vnic_stats<'a>(s: &'a StatsSnapshot, name: &str) -> Option<&'a VnicStats> {
    s.overlays
        .iter()
        .flat_map(|o| &o.vnics)
        .find(|v| v.name == name)
}

/// VXLAN datagrams in a capture whose inner packet matches `filter` (a
/// tshark display filter).
fn count(pcap: &Path, filter: &str) -> usize {
    let out = Command::new("tshark")
        .arg("-r")
        .arg(pcap)
        .args(["-d", "udp.port==4789,vxlan", "-Y"])
        .arg(format!("vxlan && ({filter})"))
        .output()
        .expect("run tshark (apt-get install tshark)");
    assert!(
        out.status.success(),
        "tshark failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).lines().count()
}

#[test]
#[ignore = "needs root and network namespaces: run `sudo make test`"]
fn three_hosts_three_guests_each() {
    let mut lab = Lab::new("vnic");
    let g = setup(&mut lab);
    let (h1, h2, h3) = (g.host(1), g.host(2), g.host(3));

    // show-vnic: the columns, the MTU of the overlay, the guest namespace.
    let shown = lab.ovadm_ok(h1, ["show-vnic"]);
    let lines: Vec<&str> = shown.lines().collect();
    assert_eq!(
        lines[0].split_whitespace().collect::<Vec<_>>(),
        ["LINK", "OVER", "MACADDRESS", "MACADDRTYPE", "NETNS", "MTU"],
        "{shown}"
    );
    assert_eq!(lines.len(), 1 + GUESTS as usize, "{shown}");
    let v1 = find_mac_line(&shown, &mac(1, 1)).unwrap_or_else(|| panic!("{shown}"));
    for word in ["vnic1", "ov0", "fixed", lab.ns(g.guest(1, 1)), "1400"] {
        assert!(v1.contains(word), "show-vnic line lacks {word}: {v1}");
    }
    let link = lab.ip(g.guest(1, 1), &["-o", "link", "show", "vnic1"]);
    let link = String::from_utf8_lossy(&link.stdout).to_string();
    assert!(
        link.contains("mtu 1400") && link.contains(&mac(1, 1)),
        "{link}"
    );

    // Every guest reaches every other, both families (retrying a source
    // once: the first lookups of a cold table may take a while).
    for (i, k) in Guests::all() {
        let mut failed = ping_all_from(&lab, &g, i, k);
        if !failed.is_empty() {
            failed = ping_all_from(&lab, &g, i, k);
        }
        assert!(
            failed.is_empty(),
            "guest {i}.{k} cannot reach every other guest:\n{}",
            failed.join("\n")
        );
    }

    // Same-host guests talk through the kernel's macvlan bridge: nothing of
    // theirs crosses the underlay. A cross-host ping in the same capture
    // shows that the capture sees what does cross.
    let cap = lab.capture(
        h1,
        "ul0",
        &lab.dir().join("h1-ul0.pcap"),
        &["udp", "port", "4789"],
    );
    for (k, l) in [(1, 2), (2, 3), (3, 1)] {
        for dest in [ip4(1, l), ip6(1, l)] {
            let p = lab.ping(g.guest(1, k), &dest, &["-c", "5", "-i", "0.1"]);
            assert!(p.all_answered(), "{p}");
        }
    }
    let p = lab.ping(g.guest(1, 1), &ip4(2, 1), &["-c", "3", "-i", "0.1"]);
    assert!(p.all_answered(), "{p}");
    let pcap = cap.stop();
    let same_host = format!(
        "(ip.src == 192.168.{N}.10/29 && ip.dst == 192.168.{N}.10/29) || \
         (ipv6.src == fd{N}::1:0/112 && ipv6.dst == fd{N}::1:0/112)"
    );
    assert_eq!(
        count(&pcap, &same_host),
        0,
        "traffic between guests of host 1 crossed the underlay (see {})",
        pcap.display()
    );
    let cross = count(
        &pcap,
        &format!("ip.src == {} && ip.dst == {}", ip4(1, 1), ip4(2, 1)),
    );
    assert!(
        cross >= 3,
        "the capture on h1's ul0 should hold the 3 cross-host echo requests, has {cross}"
    );

    // ovsnoop names a guest: --vnic is its MAC, from overlayd.
    let out = Command::new(lab.bin("ovsnoop"))
        .arg("-r")
        .arg(&pcap)
        .args(["--vnic", "vnic1", "--run-dir"])
        .arg(lab.run_dir(h1))
        .output()
        .expect("run ovsnoop");
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        shown.lines().count() >= 6 && shown.lines().all(|l| l.contains(&mac(1, 1))),
        "ovsnoop --vnic vnic1 should show the 3 echo requests and replies of {} only:\n{shown}",
        mac(1, 1)
    );
    let out = Command::new(lab.bin("ovsnoop"))
        .arg("-r")
        .arg(&pcap)
        .args(["--vnic", "nope", "--run-dir"])
        .arg(lab.run_dir(h1))
        .output()
        .expect("run ovsnoop");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--vnic nope: no such VNIC"));

    // Counters per VNIC: guest 1.1 sent to and heard from other hosts.
    let s = lab.stats(h1);
    let c = vnic_stats(&s, "vnic1").unwrap_or_else(|| panic!("no vnic1 in {s:#?}"));
    assert!(
        c.tx_frames >= 12 && c.rx_frames >= 12 && c.tx_bytes > 0 && c.rx_bytes > 0,
        "{c:?}"
    );
    let table = lab.ovadm_ok(
        h1,
        ["show-vnic", "-s", "-p", "-o", "link,ipackets,opackets"],
    );
    assert!(
        table.lines().any(|l| l.starts_with("vnic1:")) && table.lines().count() == 3,
        "{table}"
    );

    // ovstat -V names the guests.
    let out = Command::new("ip")
        .args(["netns", "exec", lab.ns(h1)])
        .arg(lab.bin("ovstat"))
        .arg("--run-dir")
        .arg(lab.run_dir(h1))
        .args(["-V", "-p", "-o", "overlay,vnic,mac"])
        .output()
        .expect("run ovstat");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        (1..=GUESTS)
            .map(|k| format!("ov0:vnic{k}:{}\n", mac(1, k).replace(':', "\\:")))
            .collect::<String>(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // create-vnic's errors name what was wrong, and change nothing.
    for (args, says) in [
        (
            vec!["create-vnic", "-l", "ov0", "-m", &mac(1, 1), "dup"],
            format!(
                "MAC {} is already used by VNIC vnic1 on overlay ov0",
                mac(1, 1)
            ),
        ),
        (
            vec!["create-vnic", "-l", "ov0", "vnic2"],
            "VNIC vnic2 already exists (over ov0)".to_string(),
        ),
        (
            vec!["create-vnic", "-l", "ov9", "x"],
            "no such overlay: ov9".to_string(),
        ),
        (
            vec!["create-vnic", "-l", "ov0", "--netns", "ovt-no-such-ns", "x"],
            "no such network namespace: ovt-no-such-ns".to_string(),
        ),
        (
            vec!["delete-vnic", "nope"],
            "no such VNIC: nope".to_string(),
        ),
    ] {
        let out = lab.ovadm(h1, &args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(err.contains(&says), "{args:?} should say '{says}': {err}");
    }
    let out = lab.ovadm(
        h1,
        ["create-vnic", "-l", "ov0", "-m", "01:00:5e:00:00:01", "x"],
    );
    assert_eq!(out.status.code(), Some(2), "a group MAC is a usage error");
    // overlayd refuses a group MAC itself too (for clients other than ovadm).
    let r = lab
        .client(h1)
        .call(&Request::CreateVnic {
            spec: VnicSpec {
                name: "x".into(),
                over: "ov0".into(),
                mac: Some("33:33:00:00:00:01".parse().expect("mac")),
                netns: None,
            },
        })
        .expect_err("group MAC");
    assert!(r.to_string().contains("unicast"), "{r}");
    // A random MAC, in overlayd's own namespace: local, unicast, `random`.
    let r = lab
        .client(h1)
        .call(&Request::CreateVnic {
            spec: VnicSpec {
                name: "rnd0".into(),
                over: "ov0".into(),
                mac: None,
                netns: None,
            },
        })
        .expect("random VNIC");
    let Reply::Vnics { rows } = r else {
        panic!("{r:?}")
    };
    assert!(rows[0].macaddress.is_unicast() && rows[0].macaddress.is_local());
    let shown = lab.ovadm_ok(h1, ["show-vnic", "-p", "-o", "macaddrtype,netns", "rnd0"]);
    assert_eq!(shown, "random:\n");
    lab.ovadm_ok(h1, ["delete-vnic", "rnd0"]);
    assert_eq!(
        lab.ovadm(h1, ["show-vnic", "rnd0"]).status.code(),
        Some(1),
        "rnd0 is gone"
    );

    // Delete guest 2.3's VNIC: gone from its namespace, from show-vnic and
    // from the counters.
    lab.ovadm_ok(h2, ["delete-vnic", "vnic3"]);
    let out = lab.ovadm_ok(h2, ["show-vnic", "-o", "link"]);
    assert!(!out.contains("vnic3"), "{out}");
    assert!(vnic_stats(&lab.stats(h2), "vnic3").is_none());
    let gone = Command::new("ip")
        .args(["-n", lab.ns(g.guest(2, 3)), "link", "show", "vnic3"])
        .output()
        .expect("ip");
    assert!(!gone.status.success(), "vnic3 still in its namespace");

    // A guest whose namespace was deleted took its VNIC along: delete-vnic
    // then only forgets it.
    let del = Command::new("ip")
        .args(["netns", "del", lab.ns(g.guest(1, 3))])
        .output()
        .expect("ip netns del");
    assert!(del.status.success());
    lab.ovadm_ok(h1, ["delete-vnic", "vnic3"]);
    assert!(vnic_stats(&lab.stats(h1), "vnic3").is_none());

    // The files config loses it; varpd reloads; the other hosts flush. No
    // target entry for its MAC remains, and the others still talk.
    let entries: Vec<FilesEntry> = Guests::all()
        .filter(|&p| p != (2, 3))
        .map(|(i, k)| entry(i, k))
        .collect();
    std::fs::write(&g.config, FilesEntry::json(&entries)).expect("rewrite files.json");
    for h in [h1, h2, h3] {
        let pid = lab.pid(h, Daemon::Varpd).expect("varpd runs");
        // SAFETY: kill(2) of a daemon this test started, by its pid.
        unsafe { libc::kill(pid as i32, libc::SIGHUP) };
    }
    std::thread::sleep(Duration::from_millis(500));
    for h in [h1, h3] {
        lab.ovadm_ok(h, ["modify-overlay", "-f", "ov0"]);
    }
    for (i, k) in [(1, 1), (3, 2)] {
        let p = lab.wait_ping(g.guest(i, k), &ip4(2, 1), Duration::from_secs(10));
        assert!(p.all_answered(), "{p}");
        let p = lab.wait_ping(g.guest(i, k), &ip6(2, 2), Duration::from_secs(10));
        assert!(p.all_answered(), "{p}");
    }
    for h in [h1, h2, h3] {
        let t = lab.ovadm_ok(h, ["show-overlay", "-t", "ov0"]);
        assert!(
            find_mac_line(&t, &mac(2, 3)).is_none(),
            "stale target entry for the deleted VNIC's MAC {}:\n{t}",
            mac(2, 3)
        );
        assert!(find_mac_line(&t, &mac(2, 1)).is_some() || h == h2, "{t}");
    }

    // Deleting the overlay takes its VNICs along, out of the guests too.
    lab.ovadm_ok(h3, ["delete-overlay", "ov0"]);
    for k in 1..=GUESTS {
        let vnic = format!("vnic{k}");
        let gone = Command::new("ip")
            .args(["-n", lab.ns(g.guest(3, k)), "link", "show", &vnic])
            .output()
            .expect("ip");
        assert!(!gone.status.success(), "{vnic} of host 3 outlived ov0");
    }
    assert_eq!(lab.ovadm_ok(h3, ["show-vnic"]), "");
}
