//! The target table by hand: `modify-overlay -s MAC=IP:PORT`, `-s MAC=drop`,
//! `-d MAC` and `-f`, each reflected in `show-overlay -t` — and in the
//! traffic, for an entry of a real peer.

use overlay_api::{DropReason, TargetDest};
use overlay_tests::snapshot::overlay_drops;
use overlay_tests::{find_mac_line, Host, Lab};
use std::time::Duration;

fn table(lab: &Lab, h: Host) -> String {
    lab.ovadm_ok(h, ["show-overlay", "-t", "ov0"])
}

#[test]
#[ignore = "needs root and network namespaces: run `sudo make test`"]
fn modify_overlay_shows_in_the_target_table() {
    let mut lab = Lab::new("target_table");
    let p = lab.files_pair(46, 4646);
    let a = p.a;
    let (x, y) = ("02:46:00:00:00:99", "02:46:00:00:00:98");

    lab.ovadm_ok(
        a,
        [
            "modify-overlay",
            "-s",
            &format!("{x}=10.46.0.9:4789"),
            "ov0",
        ],
    );
    let t = table(&lab, a);
    let line = find_mac_line(&t, x)
        .unwrap_or_else(|| panic!("-s {x}=10.46.0.9:4789 is not in the table:\n{t}"));
    assert!(
        line.contains("10.46.0.9:4789"),
        "{x} should map to 10.46.0.9:4789:\n{t}"
    );

    lab.ovadm_ok(a, ["modify-overlay", "-s", &format!("{y}=drop"), "ov0"]);
    let t = table(&lab, a);
    let line =
        find_mac_line(&t, y).unwrap_or_else(|| panic!("-s {y}=drop is not in the table:\n{t}"));
    assert!(line.contains("drop"), "{y} should say drop:\n{t}");
    // The same, as the control socket tells it.
    let rows = lab.client(a).targets(Some("ov0")).expect("targets");
    assert!(
        rows.iter()
            .any(|r| r.target.to_string() == y && r.destination == TargetDest::Drop),
        "{rows:#?}"
    );

    lab.ovadm_ok(a, ["modify-overlay", "-d", x, "ov0"]);
    let t = table(&lab, a);
    assert!(
        find_mac_line(&t, x).is_none(),
        "-d {x} left it in the table:\n{t}"
    );
    assert!(find_mac_line(&t, y).is_some(), "-d {x} took {y} too:\n{t}");

    // A drop entry for the real peer stops traffic and counts it.
    let r = lab.ping(a, &p.ip4(2), &[]);
    assert!(r.all_answered(), "the pair does not work:\n{r}");
    let before = overlay_drops(&lab.stats(a), "ov0", DropReason::TargetDrop);
    lab.ovadm_ok(
        a,
        ["modify-overlay", "-s", &format!("{}=drop", p.mac(2)), "ov0"],
    );
    let r = lab.ping(a, &p.ip4(2), &["-W", "1"]);
    assert!(
        r.none_answered(),
        "a drop entry for the peer let traffic through:\n{r}"
    );
    let after = overlay_drops(&lab.stats(a), "ov0", DropReason::TargetDrop);
    assert!(
        after >= before + 3,
        "target-drop went from {before} to {after} for 3 dropped pings"
    );

    // Removing it sends the next frame to varpd again, which knows the peer.
    lab.ovadm_ok(a, ["modify-overlay", "-d", &p.mac(2), "ov0"]);
    let r = lab.wait_ping(a, &p.ip4(2), Duration::from_secs(10));
    assert!(
        r.all_answered(),
        "after -d of the drop entry the peer stays unreachable:\n{r}"
    );
    let t = table(&lab, a);
    let line = find_mac_line(&t, &p.mac(2))
        .unwrap_or_else(|| panic!("the peer was looked up again but is not in the table:\n{t}"));
    assert!(
        line.contains(&format!("{}:4789", p.ul(2))),
        "the peer should map to {}:4789 again:\n{t}",
        p.ul(2)
    );

    lab.ovadm_ok(a, ["modify-overlay", "-f", "ov0"]);
    let t = table(&lab, a);
    for m in [y, &p.mac(2)] {
        assert!(
            find_mac_line(&t, m).is_none(),
            "-f left {m} in the table:\n{t}"
        );
    }

    let o = lab.ovadm(
        a,
        ["modify-overlay", "-s", "not-a-mac=10.46.0.9:4789", "ov0"],
    );
    assert!(!o.status.success(), "-s with a bad MAC was accepted");
}
