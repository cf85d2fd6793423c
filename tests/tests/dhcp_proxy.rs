//! Proxy DHCP through the real parts: a guest's broadcast DHCP request on
//! host 1's TAP device goes to varpd, whose files plugin names the guest's
//! DHCP server (`dhcp-proxy`); varpd has overlayd resend the request
//! re-addressed to that MAC, and it arrives on host 2's TAP device as a
//! unicast frame, byte for byte the same otherwise. A request from a MAC
//! without `dhcp-proxy` goes nowhere and is counted as not answered.

use overlay_api::proto::{VarpdReply, VarpdRequest};
use overlay_api::{Client, Mac};
use overlay_tests::snapshot::overlay;
use overlay_tests::{wait_for, Daemon, FilesEntry, Lab, PacketSocket};
use overlay_wire::dhcp;
use serde_json::Value;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Barrier;
use std::time::{Duration, Instant};

/// A DHCP client message (UDP to port 67) in an untagged IPv4 frame.
fn is_dhcp_to_server(f: &[u8]) -> bool {
    f.len() > 42 && f[12..14] == [8, 0] && f[23] == 17 && f[36..38] == [0, 67]
}

fn varpd_proxy_dhcp(lab: &Lab, h: overlay_tests::Host) -> u64 {
    let mut c = Client::varpd(&lab.run_dir(h)).expect("varpd socket");
    match c.call_varpd(&VarpdRequest::Status).expect("varpd status") {
        VarpdReply::Status { instances, .. } => instances.iter().map(|i| i.proxy_dhcp).sum(),
        other => panic!("varpd status: unexpected {other:?}"),
    }
}

#[test]
#[ignore = "needs root and network namespaces: run `sudo make test`"]
fn a_dhcp_request_is_resent_to_its_server_across_the_overlay() {
    let mut lab = Lab::new("dhcp_proxy");
    let p = lab.files_pair(43, 4343);
    let (client, server) = (p.mac(1), p.mac(2));
    // A guest MAC on host 1 with no dhcp-proxy: its requests go nowhere.
    let stray: Mac = "02:43:00:00:00:09".parse().unwrap();

    // Host 1's entry names host 2's MAC as its DHCP server; varpd reloads.
    let mut cfg: Value =
        serde_json::from_str(&FilesEntry::json(&[p.entry(1), p.entry(2)])).unwrap();
    cfg[&client]["dhcp-proxy"] = Value::from(server.as_str());
    std::fs::write(&p.config, serde_json::to_string_pretty(&cfg).unwrap()).unwrap();
    let pid = lab.pid(p.a, Daemon::Varpd).expect("varpd runs on host 1");
    // SAFETY: kill(2) on a pid we started.
    assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGHUP) }, 0);

    let request = dhcp::request_frame(client.parse().unwrap(), 0x4343_0001, 1);
    let stray_request = dhcp::request_frame(stray, 0x4343_0002, 1);
    let before = lab.stats(p.a);

    // Host 2 listens on its TAP device; once it does, host 1 sends until
    // host 2 has seen the request (the first may find varpd still
    // reloading), then a little longer for anything else to arrive.
    let b_ns = lab.ns(p.b).to_string();
    let (ready, found) = (Barrier::new(2), AtomicBool::new(false));
    let seen = std::thread::scope(|s| {
        let listener = s.spawn(|| {
            lab.in_ns(p.b, || {
                let sock = PacketSocket::open("ov0");
                ready.wait();
                let mut seen = Vec::new();
                let deadline = Instant::now() + Duration::from_secs(10);
                while Instant::now() < deadline {
                    let until = Instant::now() + Duration::from_millis(500);
                    seen.extend(sock.frames_until(until, is_dhcp_to_server));
                    if seen.iter().any(|f| f[6..12] == request[6..12]) {
                        found.store(true, Ordering::Relaxed);
                        seen.extend(sock.frames_until(
                            Instant::now() + Duration::from_secs(1),
                            is_dhcp_to_server,
                        ));
                        break;
                    }
                }
                found.store(true, Ordering::Relaxed);
                seen
            })
        });
        lab.in_ns(p.a, || {
            let sock = PacketSocket::open("ov0");
            ready.wait();
            assert!(sock.send(&stray_request));
            while !found.load(Ordering::Relaxed) {
                assert!(sock.send(&request));
                std::thread::sleep(Duration::from_millis(300));
            }
        });
        listener.join().expect("listener on host 2")
    });

    assert!(
        varpd_proxy_dhcp(&lab, p.a) >= 1,
        "varpd on host 1 never resent a DHCP request"
    );
    let resent: Vec<_> = seen.iter().filter(|f| f[6..12] == request[6..12]).collect();
    assert!(
        !resent.is_empty(),
        "no DHCP request from {client} reached ov0 in {b_ns}; saw {} DHCP frames\n\
         host 1: {:#?}\nhost 2: {:#?}",
        seen.len(),
        overlay(&lab.stats(p.a), "ov0"),
        overlay(&lab.stats(p.b), "ov0"),
    );
    for f in &resent {
        assert_eq!(
            &f[..6],
            &server.parse::<Mac>().unwrap().0,
            "the request must arrive addressed to the DHCP server's MAC"
        );
        assert_eq!(f[6..], request[6..], "only the destination MAC may change");
    }
    assert!(
        seen.iter().all(|f| f[6..12] != stray.0),
        "a request from {stray}, which has no dhcp-proxy, crossed the overlay"
    );

    // Host 1 counted the resends as sent frames, and the stray request as a
    // broadcast varpd had no answer for.
    let after = lab.stats(p.a);
    let (b, a) = (overlay(&before, "ov0"), overlay(&after, "ov0"));
    assert!(
        a.tx_frames >= b.tx_frames + resent.len() as u64,
        "tx_frames {} -> {}",
        b.tx_frames,
        a.tx_frames
    );
    assert!(
        wait_for(Duration::from_secs(3), || {
            let s = lab.stats(p.a);
            overlay(&s, "ov0")
                .drops
                .get("not-answered")
                .copied()
                .unwrap_or(0)
                > b.drops.get("not-answered").copied().unwrap_or(0)
        }),
        "the stray request was not counted as not-answered: {:#?}",
        overlay(&lab.stats(p.a), "ov0").drops
    );
}
