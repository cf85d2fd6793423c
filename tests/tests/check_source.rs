//! `target/check_source=yes`: host 1 takes a frame from the underlay only
//! if its target table maps the inner source MAC to the sender's address.
//! Host 2's real traffic passes (its MAC is looked up on first sight);
//! datagrams from another address of host 2's namespace that claim host 2's
//! MAC, or a MAC nobody owns, are dropped and counted, never delivered.

use overlay_api::Mac;
use overlay_tests::snapshot::overlay;
use overlay_tests::{eth_frame, vxlan_datagram, Lab, VXLAN_FLAG_I};
use std::net::UdpSocket;
use std::time::Duration;

fn drops(lab: &Lab, h: overlay_tests::Host, reason: &str) -> u64 {
    let s = lab.stats(h);
    overlay(&s, "ov0").drops.get(reason).copied().unwrap_or(0)
}

#[test]
#[ignore = "needs root and network namespaces: run `sudo make test`"]
fn only_sources_the_table_places_at_the_sender_are_taken() {
    let mut lab = Lab::new("check_source");
    let p = lab.files_pair(47, 4747);
    // Host 1's overlay again, with the check on.
    lab.ovadm_ok(p.a, ["delete-overlay", "ov0"]);
    let props = format!(
        "vxlan/listen_ip={},files/config={},target/check_source=yes",
        p.ul(1),
        p.config.display()
    );
    let vni = p.vni.to_string();
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
            &props,
            "ov0",
        ],
    );
    lab.addr(
        p.a,
        "ov0",
        &p.mac(1),
        &[&format!("{}/24", p.ip4(1)), &format!("{}/64", p.ip6(1))],
    );
    let shown = lab.ovadm_ok(p.a, ["show-overlay", "-p", "-o", "property,value", "ov0"]);
    assert!(shown.contains("target/check_source:yes"), "{shown}");

    // Host 2's own traffic: its MAC is learnt from varpd, then it passes.
    for dest in [p.ip4(1), p.ip6(1)] {
        let r = lab.wait_ping(p.b, &dest, Duration::from_secs(10));
        assert!(r.all_answered(), "host 2 cannot reach {dest}:\n{r}");
    }
    let spoofed_before = drops(&lab, p.a, "spoofed-source");

    // A second address in host 2's namespace, not in the files config.
    let rogue = format!("10.{}.0.9", p.n);
    lab.ip(p.b, &["addr", "add", &format!("{rogue}/24"), "dev", "ul0"]);
    let to: Mac = p.mac(1).parse().unwrap();
    let b_mac: Mac = p.mac(2).parse().unwrap();
    let nobody: Mac = format!("02:{}:00:00:00:66", p.n).parse().unwrap();
    let rx_before = overlay(&lab.stats(p.a), "ov0").rx_frames;
    let target = format!("{}:4789", p.ul(1));
    lab.in_ns(p.b, || {
        let s = UdpSocket::bind(format!("{rogue}:0")).expect("bind the rogue address");
        for src in [b_mac, nobody, nobody, b_mac] {
            let f = eth_frame(to, src, 0x88b5, b"claims to be someone");
            s.send_to(&vxlan_datagram(VXLAN_FLAG_I, p.vni, &f), &target)
                .expect("send");
            std::thread::sleep(Duration::from_millis(300));
        }
    });
    let s = lab.wait_stats(
        p.a,
        Duration::from_secs(5),
        "the spoofs to be counted",
        |s| {
            let o = overlay(s, "ov0");
            // Host 2's MAC from the rogue address twice; the unknown MAC once
            // while varpd is asked, then once as the drop varpd answered.
            o.drops.get("spoofed-source").copied().unwrap_or(0) >= spoofed_before + 3
                && o.drops.get("unknown-peer").copied().unwrap_or(0) >= 1
        },
    );
    let o = overlay(&s, "ov0");
    assert_eq!(
        o.rx_frames, rx_before,
        "a spoofed frame was delivered: {o:#?}"
    );
    // The unknown MAC has the entry varpd gave it: drop.
    let t = lab.ovadm_ok(p.a, ["show-overlay", "-t", "ov0"]);
    assert!(
        overlay_tests::find_mac_line(&t, &nobody.to_string()).is_some_and(|l| l.contains("drop")),
        "{t}"
    );
    // And host 2 still gets through.
    let r = lab.ping(p.b, &p.ip4(1), &[]);
    assert!(r.all_answered(), "{r}");
}
