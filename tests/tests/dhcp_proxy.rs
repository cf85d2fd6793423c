//! Proxy DHCP through the real parts: a guest's broadcast DHCP request on
//! host 1's TAP device goes to varpd, whose files plugin names the guest's
//! DHCP server (`dhcp-proxy`); varpd has overlayd resend the request
//! re-addressed to that MAC, and it arrives on host 2's TAP device as a
//! unicast frame, byte for byte the same otherwise. A request from a MAC
//! without `dhcp-proxy` goes nowhere and is counted as not answered.

use overlay_api::proto::{VarpdReply, VarpdRequest};
use overlay_api::{Client, Mac};
use overlay_tests::snapshot::overlay;
use overlay_tests::{wait_for, Daemon, FilesEntry, Lab};
use overlay_wire::dhcp;
use serde_json::Value;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Barrier;
use std::time::{Duration, Instant};

/// An AF_PACKET socket bound to `dev` in the calling thread's namespace,
/// seeing every frame of every EtherType, with a 200 ms receive timeout.
fn packet_socket(dev: &str) -> (OwnedFd, libc::sockaddr_ll) {
    let proto = (libc::ETH_P_ALL as u16).to_be();
    // SAFETY: plain socket(2); the descriptor is owned right away.
    let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, proto as i32) };
    assert!(
        fd >= 0,
        "AF_PACKET socket: {}",
        std::io::Error::last_os_error()
    );
    // SAFETY: fd is a new descriptor that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let name = std::ffi::CString::new(dev).unwrap();
    // SAFETY: a NUL-terminated name.
    let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
    assert!(ifindex != 0, "no device {dev}");
    // SAFETY: sockaddr_ll is plain data; all-zero is a valid value.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_protocol = proto;
    sll.sll_ifindex = ifindex as i32;
    sll.sll_halen = 6;
    // SAFETY: sll lives across the call and its size is passed.
    let r = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            &sll as *const _ as *const libc::sockaddr,
            std::mem::size_of::<libc::sockaddr_ll>() as u32,
        )
    };
    assert_eq!(r, 0, "bind: {}", std::io::Error::last_os_error());
    let tv = libc::timeval {
        tv_sec: 0,
        tv_usec: 200_000,
    };
    // SAFETY: tv lives across the call and its size is passed.
    unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            &tv as *const _ as *const libc::c_void,
            std::mem::size_of::<libc::timeval>() as u32,
        )
    };
    (fd, sll)
}

fn send_frame(fd: &OwnedFd, sll: &libc::sockaddr_ll, frame: &[u8]) {
    // SAFETY: frame and sll live across the call; their sizes are passed.
    let n = unsafe {
        libc::sendto(
            fd.as_raw_fd(),
            frame.as_ptr() as *const libc::c_void,
            frame.len(),
            0,
            sll as *const _ as *const libc::sockaddr,
            std::mem::size_of::<libc::sockaddr_ll>() as u32,
        )
    };
    assert_eq!(
        n,
        frame.len() as isize,
        "sendto: {}",
        std::io::Error::last_os_error()
    );
}

/// Frames seen on `fd` until `until`, keeping those `keep` accepts.
fn frames_until(fd: &OwnedFd, until: Instant, keep: impl Fn(&[u8]) -> bool) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; 65536];
    while Instant::now() < until {
        // SAFETY: buf is writable for its whole length.
        let n = unsafe {
            libc::recv(
                fd.as_raw_fd(),
                buf.as_mut_ptr() as *mut libc::c_void,
                buf.len(),
                0,
            )
        };
        if n > 0 && keep(&buf[..n as usize]) {
            out.push(buf[..n as usize].to_vec());
        }
    }
    out
}

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
                let (fd, _) = packet_socket("ov0");
                ready.wait();
                let mut seen = Vec::new();
                let deadline = Instant::now() + Duration::from_secs(10);
                while Instant::now() < deadline {
                    let until = Instant::now() + Duration::from_millis(500);
                    seen.extend(frames_until(&fd, until, is_dhcp_to_server));
                    if seen.iter().any(|f| f[6..12] == request[6..12]) {
                        found.store(true, Ordering::Relaxed);
                        seen.extend(frames_until(
                            &fd,
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
            let (fd, sll) = packet_socket("ov0");
            ready.wait();
            send_frame(&fd, &sll, &stray_request);
            while !found.load(Ordering::Relaxed) {
                send_frame(&fd, &sll, &request);
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
