//! The data plane treats varpd as IP treats ARP: it can fail. With varpd
//! killed, destinations overlayd already knows keep flowing; after a table
//! flush, lookups cannot be answered and traffic stops, but nothing crashes;
//! once varpd runs again, traffic resumes with no restart of overlayd.

use overlay_tests::{Daemon, Lab};
use std::time::Duration;

#[test]
#[ignore = "needs root and network namespaces: run `sudo make test`"]
fn varpd_killed_and_restarted_while_traffic_flows() {
    let mut lab = Lab::new("varpd_failure");
    let p = lab.files_pair(44, 4444);
    let (a, peer) = (p.a, p.ip4(2));
    for (h, dest) in [(a, peer.clone()), (p.b, p.ip6(1))] {
        let r = lab.ping(h, &dest, &[]);
        assert!(
            r.all_answered(),
            "the pair does not work to begin with ({dest}):\n{r}"
        );
    }
    let overlayd = lab.pid(a, Daemon::Overlayd);

    // Steady traffic across the crash: 4 s of pings, varpd killed after 1.
    let steady = lab.ping_background(a, &peer, &["-c", "40", "-i", "0.1"]);
    std::thread::sleep(Duration::from_secs(1));
    lab.kill(a, Daemon::Varpd);
    lab.wait_linked(a, false);
    let r = steady.finish();
    assert!(
        r.all_answered(),
        "with varpd killed, traffic to a known destination was lost:\n{r}"
    );
    assert!(
        lab.alive(a, Daemon::Overlayd),
        "overlayd died when varpd went away"
    );
    let f = lab.ovadm_ok(a, ["show-overlay", "-f", "ov0"]);
    assert!(
        f.contains("DEGRADED"),
        "with varpd gone, ov0 should be DEGRADED:\n{f}"
    );

    // Flushed with varpd down: the next frame misses and nobody answers.
    lab.ovadm_ok(a, ["modify-overlay", "-f", "ov0"]);
    let r = lab.ping(a, &peer, &["-W", "1"]);
    assert!(
        r.none_answered(),
        "traffic flowed after a flush with varpd down; where did the lookup come from?\n{r}"
    );
    assert!(
        lab.alive(a, Daemon::Overlayd),
        "overlayd died with lookups pending"
    );

    // varpd again: the pending lookups are answered, traffic resumes.
    lab.start_varpd(a);
    lab.wait_linked(a, true);
    let r = lab.wait_ping(a, &peer, Duration::from_secs(15));
    assert!(
        r.all_answered(),
        "traffic did not resume after varpd restarted:\n{r}"
    );
    assert_eq!(
        lab.pid(a, Daemon::Overlayd),
        overlayd,
        "overlayd restarted or died"
    );
    let online = overlay_tests::wait_for(Duration::from_secs(5), || {
        lab.ovadm_ok(a, ["show-overlay", "-f", "ov0"])
            .contains("ONLINE")
    });
    assert!(
        online,
        "ov0 did not come back ONLINE:\n{}",
        lab.ovadm_ok(a, ["show-overlay", "-f", "ov0"])
    );
}
