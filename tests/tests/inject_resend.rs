//! `ovadm inject-frame` and `ovadm resend-frame` through the real parts:
//! a frame injected into host 1's overlay comes up its TAP device and
//! reaches a guest (a VNIC in its own namespace) as if it had crossed the
//! underlay; a frame resent from host 1 goes through its target table
//! (a miss, answered by varpd's files plugin), is encapsulated and arrives
//! on host 2's TAP device. Frames that are not fit are refused with an error
//! naming what is wrong, and not counted.

use overlay_tests::snapshot::overlay;
use overlay_tests::{eth_frame, wait_for, Host, Lab, PacketSocket};
use std::process::Output;
use std::sync::Barrier;
use std::time::{Duration, Instant};

/// The IEEE local experimental EtherType: nothing in a namespace answers it.
const ETHERTYPE_TEST: u16 = 0x88b5;

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Prints what ovadm was asked and said (shown with `--nocapture`: the
/// README's transcript comes from here).
fn show(args: &[&str], o: &Output) {
    println!(
        "$ ovadm {}\n{}{}",
        args.join(" "),
        String::from_utf8_lossy(&o.stdout),
        stderr(o)
    );
}

/// Runs `ovadm` on `h` with `send` while a packet socket on `dev` in
/// `watch`'s namespace listens; returns what `ovadm` did and the frames of
/// the test EtherType that arrived within 5 s.
fn send_and_watch(
    lab: &Lab,
    h: Host,
    send: &[&str],
    watch: Host,
    dev: &str,
    payload: &[u8],
) -> (Output, Vec<Vec<u8>>) {
    let ready = Barrier::new(2);
    std::thread::scope(|s| {
        let listener = s.spawn(|| {
            lab.in_ns(watch, || {
                let sock = PacketSocket::open(dev);
                ready.wait();
                let deadline = Instant::now() + Duration::from_secs(5);
                let mut seen = Vec::new();
                while Instant::now() < deadline && seen.is_empty() {
                    seen = sock.frames_until(Instant::now() + Duration::from_millis(300), |f| {
                        f.len() >= 14
                            && f[12..14] == ETHERTYPE_TEST.to_be_bytes()
                            && f.windows(payload.len()).any(|w| w == payload)
                    });
                }
                seen
            })
        });
        ready.wait();
        let out = lab.ovadm(h, send);
        show(send, &out);
        (out, listener.join().expect("listener thread"))
    })
}

#[test]
#[ignore = "needs root and network namespaces: run `sudo make test`"]
fn injected_frames_reach_the_guest_and_resent_frames_the_peer() {
    let mut lab = Lab::new("inject_resend");
    let p = lab.files_pair(47, 4747);
    let g = lab.add_host("g");
    let guest = "02:47:00:00:01:01";
    lab.attach_guest(p.a, g, "g1", guest, &[]);

    // Inject, given in hex: a frame "from host 2" to the guest comes up
    // host 1's ov0 and through the macvlan into the guest's namespace.
    let payload = b"injected by ovadm inject-frame";
    let frame = eth_frame(
        guest.parse().unwrap(),
        p.mac(2).parse().unwrap(),
        ETHERTYPE_TEST,
        payload,
    );
    let before = lab.stats(p.a);
    let x = hex(&frame);
    let (out, seen) = send_and_watch(
        &lab,
        p.a,
        &["inject-frame", "-l", "ov0", "-x", &x],
        g,
        "g1",
        payload,
    );
    assert!(out.status.success(), "inject-frame: {}", stderr(&out));
    assert_eq!(
        seen.first(),
        Some(&frame),
        "the injected frame did not reach the guest byte for byte"
    );
    let after = lab.stats(p.a);
    assert_eq!(
        overlay(&after, "ov0").injected,
        overlay(&before, "ov0").injected + 1,
        "an injected frame is counted once"
    );

    // Resend, given as a file: a frame from host 1 to host 2's MAC misses
    // in the target table, varpd answers, and it leaves encapsulated.
    let payload = b"resent by ovadm resend-frame";
    let frame = eth_frame(
        p.mac(2).parse().unwrap(),
        p.mac(1).parse().unwrap(),
        ETHERTYPE_TEST,
        payload,
    );
    let file = lab.dir().join("frame.bin");
    std::fs::write(&file, &frame).unwrap();
    let (b_before, a_before) = (lab.stats(p.b), lab.stats(p.a));
    let path = file.to_str().unwrap();
    let (out, seen) = send_and_watch(
        &lab,
        p.a,
        &["resend-frame", "-l", "ov0", path],
        p.b,
        "ov0",
        payload,
    );
    assert!(out.status.success(), "resend-frame: {}", stderr(&out));
    assert!(
        stderr(&out).contains("has no target entry for") || stderr(&out).is_empty(),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        seen.first(),
        Some(&frame),
        "the resent frame did not reach host 2's ov0 byte for byte"
    );
    assert!(
        wait_for(Duration::from_secs(3), || {
            let s = lab.stats(p.b);
            overlay(&s, "ov0").rx_frames > overlay(&b_before, "ov0").rx_frames
        }),
        "host 2 did not count the frame as received from the underlay"
    );
    let a_after = lab.stats(p.a);
    assert!(
        overlay(&a_after, "ov0").tx_frames > overlay(&a_before, "ov0").tx_frames,
        "host 1 did not count the resent frame as sent"
    );
    // Now the entry is known: a second resend is sent at once, no warning.
    let out = lab.ovadm(p.a, ["resend-frame", "-l", "ov0", path]);
    show(&["resend-frame", "-l", "ov0", path], &out);
    assert!(out.status.success(), "resend-frame: {}", stderr(&out));
    assert_eq!(stderr(&out), "", "a resend to a known MAC needs no warning");

    // Frames that are not fit: refused (exit 1), naming why, not counted.
    let injected = overlay(&lab.stats(p.a), "ov0").injected;
    let big = eth_frame(
        guest.parse().unwrap(),
        p.mac(2).parse().unwrap(),
        ETHERTYPE_TEST,
        &[0u8; 1500],
    );
    let bcast = eth_frame(
        overlay_api::Mac::BROADCAST,
        p.mac(1).parse().unwrap(),
        ETHERTYPE_TEST,
        payload,
    );
    let cases: [(&str, &str, String, &str); 4] = [
        (
            "inject-frame",
            "ov0",
            "0102030405".into(),
            "a frame of 5 bytes is shorter than an Ethernet header (14 bytes)",
        ),
        (
            "inject-frame",
            "ov0",
            hex(&big),
            "a frame of 1514 bytes is longer than the overlay carries (1418: MTU 1400",
        ),
        (
            "resend-frame",
            "ov0",
            hex(&bcast),
            "destination MAC ff:ff:ff:ff:ff:ff is a group address",
        ),
        (
            "inject-frame",
            "nosuch",
            hex(&frame),
            "no such overlay: nosuch",
        ),
    ];
    for (cmd, link, x, words) in &cases {
        let out = lab.ovadm(p.a, [*cmd, "-l", link, "-x", x]);
        show(&[cmd, "-l", link, "-x", x], &out);
        assert_eq!(
            out.status.code(),
            Some(1),
            "{cmd} {words}: {}",
            stderr(&out)
        );
        assert!(
            stderr(&out).contains(words),
            "{cmd}: expected '{words}' in: {}",
            stderr(&out)
        );
    }
    assert_eq!(
        overlay(&lab.stats(p.a), "ov0").injected,
        injected,
        "a refused frame is not counted"
    );
}
