//! Persistence: an overlayd restart deconfigures nothing.
//!
//! Two hosts on the files plugin (pair N = 61's address plan, plus a guest
//! namespace `g` on host a holding VNIC `g1`, MAC `02:61:00:00:01:01`,
//! `192.168.61.11/24`). Checked:
//!
//! - overlayd killed with SIGKILL, and stopped with SIGTERM, then started
//!   again while the guest pings host b every 20 ms: `ov0` keeps its
//!   ifindex, MAC and addresses, the guest's VNIC is the same link, pings
//!   answer again (the lost ones are counted and printed: the gap), and
//!   `show-overlay` shows the same properties; a temporary (`-t`) overlay
//!   is gone and not restored;
//! - "reboot": overlayd stopped and `ov0` deleted by hand (the VNIC goes
//!   with it), and the underlay address removed: the next overlayd keeps
//!   `ov0` in its state file, shows it (`show-overlay -f`: DEGRADED, not
//!   restored, with the reason) and, once the address is back, makes `ov0`
//!   and `g1` anew; once the overlay addresses are back (the host's job)
//!   traffic flows;
//! - varpd saves ov0's files instance and a new varpd restores it;
//! - delete-overlay removes the device, its VNIC and its state entry (and
//!   varpd's);
//! - a corrupt state file: overlayd starts with no overlays, logs the path
//!   and the error, and keeps the file aside, contents intact; a device of
//!   the overlay's name that overlayd did not leave is not adopted.

use overlay_tests::{wait_for, Daemon, FilesEntry, Host, Lab};
use serde_json::Value;
use std::time::{Duration, Instant};

const N: u8 = 61;
const VNI: u32 = 6161;
const GUEST_MAC: &str = "02:61:00:00:01:01";
const GUEST_IP: &str = "192.168.61.11";

struct Setup {
    a: Host,
    b: Host,
    g: Host,
}

fn ul(i: u8) -> String {
    format!("10.{N}.0.{i}")
}

fn ip4(i: u8) -> String {
    format!("192.168.{N}.{i}")
}

fn entry(mac: &str, ul: String, ip: &str) -> FilesEntry {
    FilesEntry {
        mac: mac.into(),
        ip: ul,
        port: 4789,
        arp: Some(ip.into()),
        ndp: None,
    }
}

fn setup(lab: &mut Lab) -> Setup {
    let a = lab.add_host("a");
    let b = lab.add_host("b");
    let g = lab.add_host("g");
    lab.link(a, &format!("{}/24", ul(1)), b, &format!("{}/24", ul(2)));
    let mac = |i: u8| format!("02:{N}:00:00:00:{i:02}");
    let config = lab.write_file(
        "files.json",
        &FilesEntry::json(&[
            entry(&mac(1), ul(1), &ip4(1)),
            entry(&mac(2), ul(2), &ip4(2)),
            entry(GUEST_MAC, ul(1), GUEST_IP),
        ]),
    );
    for (i, h) in [(1, a), (2, b)] {
        lab.overlay_host(h);
        lab.create_files_overlay(h, "ov0", VNI, &ul(i), &config);
        lab.addr(h, "ov0", &mac(i), &[&format!("{}/24", ip4(i))]);
    }
    let gns = lab.ns(g).to_string();
    lab.ovadm_ok(
        a,
        [
            "create-vnic",
            "-l",
            "ov0",
            "-m",
            GUEST_MAC,
            "--netns",
            &gns,
            "g1",
        ],
    );
    guest_addr(lab, g);
    Setup { a, b, g }
}

fn guest_addr(lab: &Lab, g: Host) {
    lab.ip(g, &["addr", "add", &format!("{GUEST_IP}/24"), "dev", "g1"]);
}

/// What must not change across an overlayd restart: a link's ifindex and
/// MAC, and its addresses.
fn link_identity(lab: &Lab, h: Host, dev: &str) -> (u64, String, Vec<String>) {
    let out = lab.ip(h, &["-j", "addr", "show", "dev", dev]);
    let v: Value = serde_json::from_slice(&out.stdout).expect("ip -j prints JSON");
    let l = &v[0];
    let mut addrs: Vec<String> = l["addr_info"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|i| format!("{}/{}", i["local"].as_str().unwrap_or("?"), i["prefixlen"]))
                .collect()
        })
        .unwrap_or_default();
    addrs.sort();
    (
        l["ifindex"].as_u64().expect("an ifindex"),
        l["address"].as_str().unwrap_or("").to_string(),
        addrs,
    )
}

/// `show-overlay -p` without `varpd/id` (overlayd's id for the instance,
/// which a new overlayd may number differently).
fn props(lab: &Lab, h: Host) -> String {
    lab.ovadm_ok(
        h,
        ["show-overlay", "-p", "-o", "link,property,value", "ov0"],
    )
    .lines()
    .filter(|l| !l.contains("varpd/id"))
    .collect::<Vec<_>>()
    .join("\n")
}

fn link_exists(lab: &Lab, h: Host, dev: &str) -> bool {
    lab.exec(h, "ip", ["link", "show", dev]).status.success()
}

fn state(lab: &Lab, h: Host) -> Value {
    let p = lab.state_dir(h).join("overlays.json");
    let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}\n{text}", p.display()))
}

fn varpd_state(lab: &Lab, h: Host) -> Value {
    let p = lab.state_dir(h).join("varpd.json");
    let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}\n{text}", p.display()))
}

fn state_names(lab: &Lab, h: Host) -> Vec<String> {
    state(lab, h)["overlays"]
        .as_array()
        .expect("an overlays array")
        .iter()
        .map(|o| o["name"].as_str().unwrap_or("").to_string())
        .collect()
}

/// Restarts overlayd on host a (killed with SIGKILL or stopped with
/// SIGTERM) while the guest pings host b every 20 ms; returns the pings
/// lost (each one 20 ms of gap).
fn restart_under_traffic(lab: &mut Lab, s: &Setup, how: &str) -> u32 {
    let before = (
        link_identity(lab, s.a, "ov0"),
        link_identity(lab, s.g, "g1"),
        props(lab, s.a),
    );
    let pings = lab.ping_background(s.g, &ip4(2), &["-c", "300", "-i", "0.02", "-W", "1"]);
    std::thread::sleep(Duration::from_secs(2));
    let t = Instant::now();
    match how {
        "SIGKILL" => lab.kill(s.a, Daemon::Overlayd),
        _ => lab.stop(s.a, Daemon::Overlayd),
    }
    assert!(
        link_exists(lab, s.a, "ov0"),
        "ov0 went away with overlayd ({how})"
    );
    lab.start_overlayd(s.a);
    let up = t.elapsed();
    lab.wait_linked(s.a, true);
    let linked = t.elapsed();
    let r = pings.finish();
    let lost = r.transmitted - r.received;
    // Frames held while no overlayd reads the TAP device show as a late
    // answer: the largest round trip is the other measure of the gap.
    let rtt = r
        .output
        .lines()
        .find(|l| l.starts_with("rtt"))
        .unwrap_or("");
    eprintln!("overlayd {how}: {rtt}");
    eprintln!(
        "overlayd {how} + restart: control socket after {up:?}, varpd linked after {linked:?}; \
         {lost} of {} pings (20 ms apart) lost, a gap of about {} ms",
        r.transmitted,
        lost * 20
    );
    assert!(r.received > 150, "traffic did not resume after {how}:\n{r}");
    let last = lab.ping(s.g, &ip4(2), &[]);
    assert!(last.all_answered(), "after {how}:\n{last}");
    let after = (
        link_identity(lab, s.a, "ov0"),
        link_identity(lab, s.g, "g1"),
        props(lab, s.a),
    );
    assert_eq!(
        before, after,
        "the links or properties changed across {how}"
    );
    lost
}

#[test]
#[ignore = "needs root and network namespaces: run `sudo make test`"]
fn restart_keeps_the_links_and_traffic_resumes() {
    let mut lab = Lab::new("persist_restart");
    let s = setup(&mut lab);
    let r = lab.wait_ping(s.g, &ip4(2), Duration::from_secs(10));
    assert!(r.all_answered(), "the guest cannot reach host b:\n{r}");
    // A temporary overlay beside it.
    lab.ovadm_ok(
        s.a,
        [
            "create-overlay",
            "-t",
            "-e",
            "vxlan",
            "-s",
            "direct",
            "-v",
            "77",
            "-p",
            &format!(
                "vxlan/listen_ip={},direct/dest_ip={},direct/dest_port=4789",
                ul(1),
                ul(2)
            ),
            "tmp0",
        ],
    );
    assert!(link_exists(&lab, s.a, "tmp0"));
    assert_eq!(state_names(&lab, s.a), ["ov0"], "a -t overlay was saved");

    let killed = restart_under_traffic(&mut lab, &s, "SIGKILL");
    assert!(
        !link_exists(&lab, s.a, "tmp0"),
        "the -t overlay's device outlived overlayd"
    );
    let shown = lab.ovadm_ok(s.a, ["show-overlay", "-f"]);
    assert!(
        !shown.contains("tmp0") && shown.contains("ov0"),
        "after a restart show-overlay should list ov0 and not the -t overlay:\n{shown}"
    );
    let vnics = lab.ovadm_ok(s.a, ["show-vnic"]);
    assert!(vnics.contains("g1"), "g1 was not re-adopted:\n{vnics}");
    let log = std::fs::read_to_string(lab.log(s.a, Daemon::Overlayd)).expect("overlayd log");
    assert!(
        log.contains("ov0: re-attached to its TAP device") && log.contains("VNIC g1"),
        "the log does not say ov0 and g1 were re-adopted:\n{log}"
    );
    let stopped = restart_under_traffic(&mut lab, &s, "SIGTERM");
    eprintln!("pings lost: {killed} across SIGKILL, {stopped} across SIGTERM");

    // varpd saved ov0's files instance, and a new varpd restores it.
    let saved = varpd_state(&lab, s.a);
    assert_eq!(saved["instances"]["ov0"]["search"], "files", "{saved}");
    lab.kill(s.a, Daemon::Varpd);
    lab.start_varpd(s.a);
    lab.wait_linked(s.a, true);
    let r = lab.wait_ping(s.g, &ip4(2), Duration::from_secs(10));
    assert!(r.all_answered(), "after a varpd restart:\n{r}");
    let log = std::fs::read_to_string(lab.log(s.a, Daemon::Varpd)).expect("varpd log");
    assert!(
        log.contains("overlay ov0: files instance restored from its saved state"),
        "{log}"
    );

    // delete-overlay: the device, its VNIC and its state entry go.
    lab.ovadm_ok(s.a, ["delete-overlay", "ov0"]);
    assert!(
        !link_exists(&lab, s.a, "ov0"),
        "ov0 outlived delete-overlay"
    );
    assert!(!link_exists(&lab, s.g, "g1"), "g1 outlived delete-overlay");
    assert!(state_names(&lab, s.a).is_empty(), "{}", state(&lab, s.a));
    let forgot = wait_for(Duration::from_secs(5), || {
        varpd_state(&lab, s.a)["instances"].get("ov0").is_none()
    });
    assert!(forgot, "varpd kept ov0's state: {}", varpd_state(&lab, s.a));
    lab.stop(s.a, Daemon::Overlayd);
    lab.start_overlayd(s.a);
    let shown = lab.ovadm_ok(s.a, ["show-overlay", "-f"]);
    assert!(
        !shown.contains("ov0"),
        "a deleted overlay came back:\n{shown}"
    );
}

#[test]
#[ignore = "needs root and network namespaces: run `sudo make test`"]
fn reboot_recreates_overlays_and_vnics_from_state() {
    let mut lab = Lab::new("persist_reboot");
    let s = setup(&mut lab);
    let r = lab.wait_ping(s.g, &ip4(2), Duration::from_secs(10));
    assert!(r.all_answered(), "the guest cannot reach host b:\n{r}");
    let before = props(&lab, s.a);

    lab.stop(s.a, Daemon::Overlayd);
    lab.ip(s.a, &["link", "del", "ov0"]);
    assert!(!link_exists(&lab, s.g, "g1"), "g1 outlived its TAP device");
    // The underlay address comes up after overlayd, as it may after a
    // reboot: ov0 cannot listen yet, stays in the state file, and is
    // restored once the address is there.
    let ul_cidr = format!("{}/24", ul(1));
    lab.ip(s.a, &["addr", "del", &ul_cidr, "dev", "ul0"]);
    lab.start_overlayd(s.a);
    // It is not hidden: show-overlay -f has it DEGRADED with the reason,
    // and show-overlay its saved properties.
    let shown = lab.ovadm_ok(s.a, ["show-overlay", "-f"]);
    eprintln!("$ ovadm show-overlay -f\n{shown}");
    let row = shown
        .lines()
        .find(|l| l.starts_with("ov0 "))
        .unwrap_or_else(|| panic!("ov0 without its listen address is not shown:\n{shown}"));
    for words in [
        "DEGRADED",
        "not restored from the state file: cannot listen on 10.61.0.1:4789",
        "tried again every 5 s",
    ] {
        assert!(row.contains(words), "expected '{words}' in:\n{shown}");
    }
    assert_eq!(
        props(&lab, s.a),
        before,
        "show-overlay of ov0 unrestored: its saved properties"
    );
    let out = lab.ovadm(s.a, ["show-overlay", "-t", "ov0"]);
    assert_eq!(out.status.code(), Some(1));
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains("overlay ov0 is persistent but could not be restored yet (cannot listen on"),
        "{said}"
    );
    assert_eq!(state_names(&lab, s.a), ["ov0"], "ov0 left the state file");
    let log = std::fs::read_to_string(lab.log(s.a, Daemon::Overlayd)).expect("overlayd log");
    assert!(
        log.contains("ov0: cannot restore the persistent overlay: cannot listen on 10.61.0.1:4789"),
        "{log}"
    );
    lab.ip(s.a, &["addr", "add", &ul_cidr, "dev", "ul0"]);
    let t = std::time::Instant::now();
    assert!(
        wait_for(Duration::from_secs(10), || link_exists(&lab, s.a, "ov0")),
        "ov0 was not restored once its address was back"
    );
    eprintln!(
        "ov0 restored {:?} after its listen address came back",
        t.elapsed()
    );
    assert!(link_exists(&lab, s.a, "ov0"), "ov0 was not recreated");
    // A normal overlay again: its status is its own, not the restore's.
    assert!(
        wait_for(Duration::from_secs(5), || {
            let shown = lab.ovadm_ok(s.a, ["show-overlay", "-f", "ov0"]);
            !shown.contains("not restored") && shown.contains("ONLINE")
        }),
        "ov0 is not ONLINE after its restore:\n{}",
        lab.ovadm_ok(s.a, ["show-overlay", "-f", "ov0"])
    );
    assert!(link_exists(&lab, s.g, "g1"), "g1 was not recreated");
    let (_, mac, _) = link_identity(&lab, s.g, "g1");
    assert_eq!(mac, GUEST_MAC);
    assert_eq!(props(&lab, s.a), before);
    let log = std::fs::read_to_string(lab.log(s.a, Daemon::Overlayd)).expect("overlayd log");
    assert!(
        log.contains("VNIC g1 (02:61:00:00:01:01) recreated"),
        "{log}"
    );

    // Addresses are the host's job after a reboot, as in the lab.
    lab.addr(
        s.a,
        "ov0",
        &format!("02:{N}:00:00:00:01"),
        &[&format!("{}/24", ip4(1))],
    );
    guest_addr(&lab, s.g);
    lab.wait_linked(s.a, true);
    let r = lab.wait_ping(s.g, &ip4(2), Duration::from_secs(10));
    assert!(r.all_answered(), "no traffic after the reboot:\n{r}");
    let r = lab.ping(s.b, &ip4(1), &[]);
    assert!(r.all_answered(), "host b cannot reach host a's ov0:\n{r}");
}

#[test]
#[ignore = "needs root and network namespaces: run `sudo make test`"]
fn a_corrupt_state_file_is_kept_aside_and_reported() {
    let mut lab = Lab::new("persist_corrupt");
    let h = lab.add_host("a");
    let dir = lab.state_dir(h);
    let text = "{\"version\": 1,\n \"overlays\": [\n  {\"name\": \"ov0\", \"encap\": }\n";
    std::fs::write(dir.join("overlays.json"), text).expect("write state");
    lab.start_overlayd(h);
    let shown = lab.ovadm_ok(h, ["show-overlay", "-f"]);
    assert!(!shown.contains("ov0"), "{shown}");
    let kept: Vec<_> = std::fs::read_dir(&dir)
        .expect("state dir")
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("overlays.json.corrupt-")
        })
        .collect();
    assert_eq!(kept.len(), 1, "the corrupt file was not kept aside");
    assert_eq!(
        std::fs::read_to_string(kept[0].path()).expect("kept file"),
        text
    );
    assert!(!dir.join("overlays.json").exists());
    let log = std::fs::read_to_string(lab.log(h, Daemon::Overlayd)).expect("overlayd log");
    let path = dir.join("overlays.json");
    assert!(
        log.contains(&format!("state file {}: malformed:", path.display()))
            && log.contains("line 3 column")
            && log.contains(&kept[0].path().display().to_string()),
        "the log should name the file, the error and where it went:\n{log}"
    );
    eprintln!(
        "{}",
        log.lines().find(|l| l.contains("state file")).unwrap_or("")
    );

    // A file of another version, or that fails validation, likewise.
    lab.stop(h, Daemon::Overlayd);
    let bad = "{\"version\": 1, \"overlays\": [{\"name\": \"ov0\", \"encap\": \"vxlan\", \
               \"search\": \"files\", \"vnetid\": 1, \"props\": {\"vxlan/listen_ip\": \"10.0.0.1\", \
               \"mtu\": \"99999\"}}]}";
    std::fs::write(dir.join("overlays.json"), bad).expect("write state");
    lab.start_overlayd(h);
    let log = std::fs::read_to_string(lab.log(h, Daemon::Overlayd)).expect("overlayd log");
    assert!(
        log.contains("overlays[0] (ov0): mtu: '99999' is not in 576-8900"),
        "{log}"
    );
    assert!(!lab.ovadm_ok(h, ["show-overlay", "-f"]).contains("ov0"));

    // A device of an overlay's name that overlayd did not leave is not
    // adopted: a veth, or a TAP device made by someone else.
    lab.ip(
        h,
        &["link", "add", "ov9", "type", "veth", "peer", "name", "ov9p"],
    );
    lab.ip(h, &["tuntap", "add", "dev", "ov8", "mode", "tap"]);
    for dev in ["ov9", "ov8"] {
        let out = lab.ovadm(
            h,
            [
                "create-overlay",
                "-e",
                "vxlan",
                "-s",
                "files",
                "-v",
                "9",
                "-p",
                "vxlan/listen_ip=127.0.0.1,files/config=/x.json",
                dev,
            ],
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.code() == Some(1)
                && err.contains(&format!(
                    "a network device named {dev} exists and is not a TAP device left by overlayd"
                )),
            "{dev}: {out:?}"
        );
        eprintln!("{}", err.trim());
    }
}

/// Stops overlayd (SIGTERM) at `delay` after `create-overlay` returned and
/// the host gave `ov0` its addresses, while `ov0` pings host b; then checks
/// that the device kept its ifindex, MAC and addresses, that the state
/// file holds it, and that the next overlayd re-attaches to the same
/// device and forwards. Leaves overlayd running with `ov0` deleted.
fn stop_after_create(lab: &mut Lab, a: Host, config: &std::path::Path, delay: Duration) {
    let ctx = format!("overlayd stopped {delay:?} after create-overlay");
    lab.create_files_overlay(a, "ov0", VNI, &ul(1), config);
    lab.addr(
        a,
        "ov0",
        &format!("02:{N}:00:00:00:01"),
        &[&format!("{}/24", ip4(1)), &format!("fd{N}::1/64")],
    );
    let before = link_identity(lab, a, "ov0");
    let pings = lab.ping_background(a, &ip4(2), &["-c", "20", "-i", "0.01", "-W", "1"]);
    std::thread::sleep(delay);
    lab.stop(a, Daemon::Overlayd);
    drop(pings.finish());
    assert!(link_exists(lab, a, "ov0"), "{ctx}: ov0 went away");
    assert_eq!(
        link_identity(lab, a, "ov0"),
        before,
        "{ctx}: ov0 lost its identity or addresses"
    );
    assert_eq!(state_names(lab, a), ["ov0"], "{ctx}: the state file");
    lab.start_overlayd(a);
    assert_eq!(
        link_identity(lab, a, "ov0"),
        before,
        "{ctx}: the next overlayd did not re-attach to the same ov0"
    );
    let log = std::fs::read_to_string(lab.log(a, Daemon::Overlayd)).expect("overlayd log");
    assert!(
        log.contains("ov0: re-attached to its TAP device"),
        "{ctx}: the next overlayd did not re-attach:\n{log}"
    );
    lab.wait_linked(a, true);
    let r = lab.wait_ping(a, &ip4(2), Duration::from_secs(10));
    assert!(
        r.all_answered(),
        "{ctx}: no traffic after the restart:\n{r}"
    );
    lab.ovadm_ok(a, ["delete-overlay", "ov0"]);
    assert!(!link_exists(lab, a, "ov0"), "{ctx}: delete-overlay");
}

/// Issue 16, item 8: `ov0`'s address was once gone after overlayd was
/// stopped a second after `create-overlay`. Whenever overlayd stops after
/// a create that succeeded, with one forwarding thread (a single-queue TAP
/// device) or two (multi-queue), the device and its addresses stay, and
/// the next overlayd re-attaches to them. A create that overlayd could not
/// finish before it stopped (varpd had not answered yet) is answered, not
/// dropped: it is saved, says so, and is restored.
#[test]
#[ignore = "needs root and network namespaces: run `sudo make test`"]
fn stopping_overlayd_right_after_create_overlay_keeps_the_device_and_its_addresses() {
    let mut lab = Lab::new("persist_stop_window");
    let a = lab.add_host("a");
    let b = lab.add_host("b");
    lab.link(a, &format!("{}/24", ul(1)), b, &format!("{}/24", ul(2)));
    let mac = |i: u8| format!("02:{N}:00:00:00:{i:02}");
    let config = lab.write_file(
        "files.json",
        &FilesEntry::json(&[
            entry(&mac(1), ul(1), &ip4(1)),
            entry(&mac(2), ul(2), &ip4(2)),
        ]),
    );
    lab.overlay_host(b);
    lab.create_files_overlay(b, "ov0", VNI, &ul(2), &config);
    lab.addr(b, "ov0", &mac(2), &[&format!("{}/24", ip4(2))]);
    let delays = [0u64, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000];
    for workers in ["1", "2"] {
        lab.overlayd_args(&["--workers", workers]);
        lab.overlay_host(a);
        for ms in delays {
            eprintln!("--workers {workers}: stop {ms} ms after create-overlay");
            stop_after_create(&mut lab, a, &config, Duration::from_millis(ms));
        }
        lab.stop(a, Daemon::Varpd);
        lab.stop(a, Daemon::Overlayd);
    }

    // varpd linked but not answering: the create waits for it when
    // overlayd is told to stop.
    lab.overlayd_args(&[]);
    lab.overlay_host(a);
    let varpd = lab.pid(a, Daemon::Varpd).expect("varpd runs");
    // SAFETY: kill(2) on a child the lab started and still owns.
    unsafe { libc::kill(varpd as i32, libc::SIGSTOP) };
    let create = {
        let run_dir = lab.run_dir(a);
        let ns = lab.ns(a).to_string();
        let ovadm = lab.bin("ovadm");
        let props = format!(
            "vxlan/listen_ip={},files/config={}",
            ul(1),
            config.display()
        );
        std::thread::spawn(move || {
            std::process::Command::new("ip")
                .args(["netns", "exec", &ns])
                .arg(ovadm)
                .arg("--run-dir")
                .arg(run_dir)
                .args(["create-overlay", "-e", "vxlan", "-s", "files", "-v"])
                .arg(VNI.to_string())
                .args(["-p", &props, "ov0"])
                .output()
                .expect("run ovadm")
        })
    };
    assert!(
        wait_for(Duration::from_secs(5), || link_exists(&lab, a, "ov0")),
        "create-overlay did not make ov0"
    );
    lab.stop(a, Daemon::Overlayd);
    let out = create.join().expect("the ovadm thread");
    // SAFETY: as above.
    unsafe { libc::kill(varpd as i32, libc::SIGCONT) };
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("create-overlay cut short by SIGTERM: {said}");
    assert!(
        out.status.success() && said.contains("overlayd is stopping"),
        "a create-overlay overlayd was still finishing when told to stop got no answer: {:?}\n{said}",
        out.status
    );
    assert!(link_exists(&lab, a, "ov0"), "ov0 went away");
    assert_eq!(state_names(&lab, a), ["ov0"], "the state file");
    lab.start_overlayd(a);
    lab.wait_linked(a, true);
    let shown = lab.ovadm_ok(a, ["show-overlay", "-f", "ov0"]);
    assert!(shown.contains("ONLINE"), "{shown}");
}
