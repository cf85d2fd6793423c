//! The etcd search plugin on a real etcd, in namespaces: hosts with no
//! static configuration find each other through etcd, follow a guest that
//! moves, forget a host that dies, ride out an etcd member restart, and
//! serve what they know while etcd is down.
//!
//! Address plan (N per test): host i (1-3) has underlay `10.N.0.i` on the
//! lab switch and overlay `ov0` with MAC `02:N:00:00:00:0i`,
//! `192.168.N.i/24`, `fdN::i/64`; etcd members follow the hosts on the
//! switch (`10.N.0.4` and up), each in its own namespace. Guests announce
//! themselves (gratuitous ARP on link-up, IPv6 duplicate address
//! detection): that, and the frames they send, is all the plugin learns
//! from. Mappings set by hand go through `etcdctl put` (see the README).

use overlay_api::proto::{VarpdReply, VarpdRequest};
use overlay_api::InstanceInfo;
use overlay_tests::{find_mac_line, wait_for, Daemon, EtcdCluster, EtcdTls, Host, Lab};
use std::time::{Duration, Instant};

const VNI: u32 = 6100;

struct Setup {
    lab: Lab,
    hosts: Vec<Host>,
    etcd: EtcdCluster,
    n: u8,
}

impl Setup {
    fn mac(&self, i: usize) -> String {
        format!("02:{}:00:00:00:{i:02}", self.n)
    }
    fn ul(&self, i: usize) -> String {
        format!("10.{}.0.{i}", self.n)
    }
    fn ip4(&self, i: usize) -> String {
        format!("192.168.{}.{i}", self.n)
    }
    fn ip6(&self, i: usize) -> String {
        format!("fd{}::{i}", self.n)
    }
    fn h(&self, i: usize) -> Host {
        self.hosts[i - 1]
    }
    fn prefix(&self) -> String {
        format!("/overlay/{VNI}/")
    }

    /// The varpd instance of ov0 on host i.
    fn instance(&self, i: usize) -> InstanceInfo {
        let mut c = overlay_api::Client::varpd(&self.lab.run_dir(self.h(i))).expect("varpd.sock");
        match c.call_varpd(&VarpdRequest::Status) {
            Ok(VarpdReply::Status { instances, .. }) => instances
                .into_iter()
                .find(|x| x.overlay == "ov0")
                .expect("an ov0 instance"),
            other => panic!("varpd status: {other:?}"),
        }
    }

    fn status(&self, i: usize) -> String {
        self.lab.ovadm_ok(self.h(i), ["show-overlay", "-f", "ov0"])
    }

    /// Waits for every host to reach every other, IPv4 and IPv6.
    fn full_mesh(&self, timeout: Duration) {
        for i in 1..=self.hosts.len() {
            for j in (1..=self.hosts.len()).filter(|&j| j != i) {
                for dest in [self.ip4(j), self.ip6(j)] {
                    let r = self.lab.wait_ping(self.h(i), &dest, timeout);
                    assert!(r.all_answered(), "host {i} cannot reach {dest}:\n{r}");
                }
            }
        }
    }
}

/// `nhosts` overlay hosts and `members` etcd members on one switch, ov0 on
/// the etcd plugin on every host (lease TTL `ttl`), guests up.
fn setup(name: &str, n: u8, nhosts: usize, members: usize, ttl: u32) -> Setup {
    let mut lab = Lab::new(name);
    let hosts: Vec<Host> = (1..=nhosts)
        .map(|i| lab.add_host(&format!("h{i}")))
        .collect();
    let eh: Vec<Host> = (1..=members)
        .map(|i| lab.add_host(&format!("etcd{i}")))
        .collect();
    let all: Vec<Host> = hosts.iter().chain(&eh).copied().collect();
    lab.switch(&format!("10.{n}.0"), &all);
    let ips: Vec<String> = (1..=members)
        .map(|k| format!("10.{n}.0.{}", nhosts + k))
        .collect();
    let ip_refs: Vec<&str> = ips.iter().map(String::as_str).collect();
    let etcd = lab.etcd(&eh, &ip_refs);
    let s = Setup {
        lab,
        hosts,
        etcd,
        n,
    };
    let mut s = s;
    let endpoints = s.etcd.endpoints();
    for i in 1..=nhosts {
        let h = s.h(i);
        s.lab.overlay_host(h);
        s.lab.create_etcd_overlay(
            h,
            "ov0",
            VNI,
            &s.ul(i),
            &endpoints,
            &format!("etcd/lease_ttl={ttl}"),
        );
        let (mac, a4, a6) = (s.mac(i), s.ip4(i), s.ip6(i));
        s.lab
            .guest_addr(h, "ov0", &mac, &[&format!("{a4}/24"), &format!("{a6}/64")]);
    }
    s
}

#[test]
#[ignore = "needs root, network namespaces and etcd: run `sudo make test`"]
fn three_hosts_on_one_etcd_reach_each_other_with_no_static_config() {
    let s = setup("etcd_three", 61, 3, 1, 10);
    s.full_mesh(Duration::from_secs(15));
    // What the hosts registered: every guest's MAC at its host, and its
    // addresses.
    let keys = s.etcd.keys(&s.prefix());
    for i in 1..=3 {
        let k = format!("{}vl2/{}", s.prefix(), s.mac(i));
        assert!(keys.contains(&k), "{k} missing from etcd: {keys:#?}");
        let v = s.etcd.etcdctl_ok(&["get", "--print-value-only", &k]);
        assert_eq!(
            v.trim(),
            format!(r#"{{"ip":"{}","port":4789}}"#, s.ul(i)),
            "{k}"
        );
        for ip in [s.ip4(i), s.ip6(i)] {
            let k = format!("{}vl3/{ip}", s.prefix());
            assert!(keys.contains(&k), "{k} missing from etcd: {keys:#?}");
        }
    }
    for i in 1..=3 {
        let t = s.lab.ovadm_ok(s.h(i), ["show-overlay", "-t", "ov0"]);
        for j in (1..=3).filter(|&j| j != i) {
            let line = find_mac_line(&t, &s.mac(j))
                .unwrap_or_else(|| panic!("host {i} has no entry for {}:\n{t}", s.mac(j)));
            assert!(line.contains(&s.ul(j)), "host {i}: {line}");
        }
        assert!(s.status(i).contains("ONLINE"), "{}", s.status(i));
        // No configuration file anywhere: only etcd properties.
        let p = s.lab.ovadm_ok(s.h(i), ["show-overlay", "ov0"]);
        assert!(!p.contains("files/"), "{p}");
    }

    // Mappings by hand (ovadm set-mapping / remove-mapping, through varpd):
    // an address host 2's guest never announced, given to it by hand.
    let extra = format!("192.168.{}.77", s.n);
    s.lab.ip(
        s.h(2),
        &["addr", "add", &format!("{extra}/24"), "dev", "ov0"],
    );
    let mac2 = s.mac(2);
    s.lab.ovadm_ok(
        s.h(1),
        [
            "set-mapping",
            "-m",
            mac2.as_str(),
            "-a",
            extra.as_str(),
            "ov0",
        ],
    );
    let k = format!("{}vl3/{extra}", s.prefix());
    let v = s.etcd.etcdctl_ok(&["get", "--print-value-only", &k]);
    assert_eq!(v.trim(), format!(r#"{{"mac":"{mac2}"}}"#));
    let r = s.lab.wait_ping(s.h(3), &extra, Duration::from_secs(5));
    assert!(r.all_answered(), "the address set by hand:\n{r}");
    let fake = format!("02:{}:00:00:00:99", s.n);
    let dest = format!("{}:4789", s.ul(3));
    s.lab.ovadm_ok(
        s.h(1),
        [
            "set-mapping",
            "-m",
            fake.as_str(),
            "-d",
            dest.as_str(),
            "ov0",
        ],
    );
    let k2 = format!("{}vl2/{fake}", s.prefix());
    let v = s.etcd.etcdctl_ok(&["get", "--print-value-only", &k2]);
    assert!(v.contains(&s.ul(3)), "{k2} = {v}");
    s.lab.ovadm_ok(
        s.h(2),
        [
            "remove-mapping",
            "-m",
            fake.as_str(),
            "-a",
            extra.as_str(),
            "ov0",
        ],
    );
    let keys = s.etcd.keys(&s.prefix());
    assert!(!keys.contains(&k) && !keys.contains(&k2), "{keys:#?}");
    let out = s
        .lab
        .ovadm(s.h(2), ["remove-mapping", "-m", fake.as_str(), "ov0"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains(&format!("no etcd key {k2}")), "{err}");
}

/// Pings `dest` from host `from` once a try (1 s wait) until it answers or
/// `limit` passes; the time it took.
fn time_to_reach(s: &Setup, from: usize, dest: &str, limit: Duration) -> Option<Duration> {
    let t0 = Instant::now();
    while t0.elapsed() < limit {
        if s.lab
            .ping(s.h(from), dest, &["-c", "1", "-W", "1"])
            .all_answered()
        {
            return Some(t0.elapsed());
        }
    }
    None
}

#[test]
#[ignore = "needs root, network namespaces and etcd: run `sudo make test`"]
fn a_guest_that_moves_is_followed_within_two_seconds() {
    let mut s = setup("etcd_migrate", 62, 3, 1, 10);
    // A guest of its own: a namespace with a VNIC over host 2's ov0.
    let g = s.lab.add_host("guest");
    let (gmac, g4, g6) = ("02:62:00:00:00:50", "192.168.62.50", "fd62::50");
    let attach = |s: &Setup, host: usize| {
        let cidrs = [format!("{g4}/24"), format!("{g6}/64")];
        s.lab
            .attach_guest(s.h(host), g, "vnicg", gmac, &[&cidrs[0], &cidrs[1]]);
    };
    attach(&s, 2);
    for dest in [g4, g6] {
        let r = s.lab.wait_ping(s.h(1), dest, Duration::from_secs(15));
        assert!(
            r.all_answered(),
            "host 1 cannot reach the guest at {dest}:\n{r}"
        );
    }
    let t = s.lab.ovadm_ok(s.h(1), ["show-overlay", "-t", "ov0"]);
    assert!(
        find_mac_line(&t, gmac).is_some_and(|l| l.contains(&s.ul(2))),
        "host 1 should send the guest to host 2:\n{t}"
    );
    let inval = s.instance(1).invalidations;

    // The move: gone from host 2, up on host 3. No flush anywhere. The
    // clock starts when the guest is gone from host 2.
    s.lab.ovadm_ok(s.h(2), ["delete-vnic", "vnicg"]);
    let t0 = Instant::now();
    attach(&s, 3);
    let took = time_to_reach(&s, 1, g4, Duration::from_secs(5))
        .map(|_| t0.elapsed())
        .unwrap_or_else(|| panic!("host 1 never reached the guest on host 3"));
    println!("migration: host 1 reached the guest at host 3 after {took:?}");
    assert!(
        took <= Duration::from_secs(2),
        "host 1 took {took:?} to follow the guest"
    );
    let t = s.lab.ovadm_ok(s.h(1), ["show-overlay", "-t", "ov0"]);
    assert!(
        find_mac_line(&t, gmac).is_some_and(|l| l.contains(&s.ul(3))),
        "host 1 should now send the guest to host 3:\n{t}"
    );
    assert!(
        s.instance(1).invalidations > inval,
        "the move was not invalidated"
    );
    let k = format!("{}vl2/{gmac}", s.prefix());
    let v = s.etcd.etcdctl_ok(&["get", "--print-value-only", &k]);
    assert!(v.contains(&s.ul(3)), "{k} = {v}");
    let r = s.lab.wait_ping(s.h(1), g6, Duration::from_secs(5));
    assert!(r.all_answered(), "IPv6 to the moved guest:\n{r}");

    // And back to host 2, well within its idle timeout for the MAC: host 2
    // was told the MAC had left, so it announces it again.
    s.lab.ovadm_ok(s.h(3), ["delete-vnic", "vnicg"]);
    let t0 = Instant::now();
    attach(&s, 2);
    let took = time_to_reach(&s, 1, g4, Duration::from_secs(5))
        .map(|_| t0.elapsed())
        .unwrap_or_else(|| panic!("host 1 never reached the guest back on host 2"));
    println!("migration back: host 1 reached the guest at host 2 after {took:?}");
    assert!(took <= Duration::from_secs(2), "host 1 took {took:?}");
    drop(s.lab.ovadm(s.h(3), ["delete-vnic", "vnicg"]));
}

#[test]
#[ignore = "needs root, network namespaces and etcd: run `sudo make test`"]
fn a_dead_hosts_entries_expire_with_its_lease() {
    let ttl = 4;
    let mut s = setup("etcd_death", 63, 3, 1, ttl);
    s.full_mesh(Duration::from_secs(15));
    let k3 = format!("{}vl2/{}", s.prefix(), s.mac(3));
    assert!(s.etcd.keys(&s.prefix()).contains(&k3));
    let inval = s.instance(1).invalidations;

    let h3 = s.h(3);
    s.lab.kill(h3, Daemon::Overlayd);
    s.lab.kill(h3, Daemon::Varpd);
    let t0 = Instant::now();
    let gone = wait_for(Duration::from_secs(ttl as u64 + 5), || {
        !s.etcd
            .keys(&s.prefix())
            .iter()
            .any(|k| k.ends_with(&s.mac(3)) || k.ends_with(&s.ip4(3)) || k.ends_with(&s.ip6(3)))
    });
    let took = t0.elapsed();
    println!("host death: host 3's keys expired after {took:?} (lease TTL {ttl} s)");
    assert!(
        gone,
        "host 3's keys outlived its lease: {:#?}",
        s.etcd.keys(&s.prefix())
    );
    // Host 1 heard of it (vl2 and both vl3 keys) and forgot the entry.
    assert!(
        wait_for(Duration::from_secs(2), || s.instance(1).invalidations
            >= inval + 3),
        "host 1 counted {} invalidations, expected at least {}",
        s.instance(1).invalidations,
        inval + 3
    );
    let t = s.lab.ovadm_ok(s.h(1), ["show-overlay", "-t", "ov0"]);
    assert!(
        find_mac_line(&t, &s.mac(3)).is_none_or(|l| !l.contains(&s.ul(3))),
        "host 1 still sends host 3's MAC to it:\n{t}"
    );
    // The living keep their own entries and each other.
    let keys = s.etcd.keys(&s.prefix());
    for i in [1, 2] {
        assert!(
            keys.contains(&format!("{}vl2/{}", s.prefix(), s.mac(i))),
            "{keys:#?}"
        );
    }
    s.hosts.truncate(2);
    s.full_mesh(Duration::from_secs(5));
}

#[test]
#[ignore = "needs root, network namespaces and etcd: run `sudo make test`"]
fn etcd_down_degrades_and_etcd_back_restores_without_restarts() {
    let mut s = setup("etcd_down", 64, 3, 1, 4);
    s.full_mesh(Duration::from_secs(15));
    let pids: Vec<_> = (1..=3)
        .flat_map(|i| Daemon::ALL.map(|d| (i, d)))
        .map(|(i, d)| {
            let h = s.h(i);
            s.lab.pid(h, d)
        })
        .collect();

    s.etcd.stop(0, false);
    let degraded = wait_for(Duration::from_secs(10), || {
        (1..=3).all(|i| s.status(i).contains("DEGRADED"))
    });
    let f = s.status(1);
    assert!(degraded, "etcd is down but: {f}");
    assert!(
        f.contains("etcd http://"),
        "the reason should name etcd: {f}"
    );
    let i1 = s.instance(1);
    assert_eq!(i1.status, overlay_api::OverlayState::Degraded, "{i1:?}");
    // Valid entries keep forwarding, and known mappings keep answering.
    s.full_mesh(Duration::from_secs(5));
    s.lab.ovadm_ok(s.h(1), ["modify-overlay", "-f", "ov0"]);
    let r = s.lab.wait_ping(s.h(1), &s.ip4(2), Duration::from_secs(5));
    assert!(
        r.all_answered(),
        "lookups from the mirror while etcd is down:\n{r}"
    );

    s.etcd.start(0);
    s.etcd.wait_healthy(Duration::from_secs(20));
    let online = wait_for(Duration::from_secs(15), || {
        (1..=3).all(|i| s.status(i).contains("ONLINE"))
    });
    assert!(online, "etcd is back but: {}", s.status(1));
    for i in 1..=3 {
        s.lab.ovadm_ok(s.h(i), ["modify-overlay", "-f", "ov0"]);
    }
    s.full_mesh(Duration::from_secs(10));
    let after: Vec<_> = (1..=3)
        .flat_map(|i| Daemon::ALL.map(|d| (i, d)))
        .map(|(i, d)| {
            let h = s.h(i);
            s.lab.pid(h, d)
        })
        .collect();
    assert_eq!(pids, after, "no daemon may restart");
    // Registrations are back under a new lease.
    let keys = s.etcd.keys(&s.prefix());
    for i in 1..=3 {
        assert!(
            keys.contains(&format!("{}vl2/{}", s.prefix(), s.mac(i))),
            "{keys:#?}"
        );
    }
}

#[test]
#[ignore = "needs root, network namespaces and etcd: run `sudo make test`"]
fn a_cluster_member_restart_costs_no_more_than_an_election() {
    let mut s = setup("etcd_cluster", 65, 2, 3, 10);
    s.full_mesh(Duration::from_secs(15));
    // Stop the leader: the worst case, an election.
    let status = s.etcd.etcdctl_ok(&["endpoint", "status", "-w", "simple"]);
    let leader = status
        .lines()
        .position(|l| l.split(", ").nth(4) == Some("true"))
        .unwrap_or_else(|| panic!("no leader in:\n{status}"));
    let mut worst = Duration::ZERO;
    let mut fail_since: Option<Instant> = None;
    let mut probe = |s: &Setup| {
        // A fresh lookup every time: flush, then ping.
        s.lab.ovadm_ok(s.h(1), ["modify-overlay", "-f", "ov0"]);
        let ok = s
            .lab
            .ping(s.h(1), &s.ip4(2), &["-c", "1", "-W", "1"])
            .all_answered();
        match (ok, fail_since) {
            (true, Some(t)) => {
                worst = worst.max(t.elapsed());
                fail_since = None;
            }
            (false, None) => fail_since = Some(Instant::now()),
            _ => {}
        }
    };
    // A mapping set by hand that host 1 uses (a neighbour entry by hand,
    // so that its frames go to that MAC): host 3's underlay for now.
    let (fake, fake_ip) = ("02:65:00:00:00:99", "192.168.65.99");
    let points_to = |s: &Setup, ul: &str| {
        wait_for(Duration::from_secs(5), || {
            s.lab.ping(s.h(1), fake_ip, &["-c", "1", "-W", "1"]);
            let t = s.lab.ovadm_ok(s.h(1), ["show-overlay", "-t", "ov0"]);
            find_mac_line(&t, fake).is_some_and(|l| l.contains(ul))
        })
    };
    s.lab.ovadm_ok(
        s.h(2),
        ["set-mapping", "-m", fake, "-d", "10.65.0.3:4789", "ov0"],
    );
    s.lab.ip(
        s.h(1),
        &["neigh", "replace", fake_ip, "lladdr", fake, "dev", "ov0"],
    );
    assert!(points_to(&s, "10.65.0.3"), "host 1 never used the mapping");

    let t0 = Instant::now();
    s.etcd.stop(leader, true);
    // Changed through a member that is up while host 1's watch may be
    // restarting: host 1 must not miss it. (A write during the election
    // may time out; the operator tries again.)
    assert!(
        wait_for(Duration::from_secs(8), || s
            .lab
            .ovadm(
                s.h(2),
                ["set-mapping", "-m", fake, "-d", "10.65.0.2:4789", "ov0"]
            )
            .status
            .success()),
        "set-mapping failed for 8 s with one member of three down"
    );
    while t0.elapsed() < Duration::from_secs(4) {
        probe(&s);
    }
    assert!(
        points_to(&s, "10.65.0.2"),
        "host 1 missed the change made while the leader was down:\n{}",
        s.lab.ovadm_ok(s.h(1), ["show-overlay", "-t", "ov0"])
    );
    s.etcd.start(leader);
    let t1 = Instant::now();
    while t1.elapsed() < Duration::from_secs(4) {
        probe(&s);
    }
    s.etcd.wait_healthy(Duration::from_secs(20));
    probe(&s);
    if let Some(t) = fail_since {
        worst = worst.max(t.elapsed());
    }
    println!("cluster: leader e{leader} stopped and restarted; longest lookup failure {worst:?}");
    assert!(
        worst <= Duration::from_secs(2),
        "lookups failed for {worst:?}, longer than an election (1 s timeout)"
    );
    for i in 1..=2 {
        assert!(s.status(i).contains("ONLINE"), "{}", s.status(i));
        // One member down is not etcd down: no host went degraded.
        let log = std::fs::read_to_string(s.lab.log(s.h(i), Daemon::Varpd)).unwrap_or_default();
        assert!(
            !log.contains("serving what is known"),
            "host {i} went degraded over one member:\n{log}"
        );
    }
    // New registrations still land: a new guest on host 2 is found.
    let g = s.lab.add_host("guest");
    let gmac = "02:65:00:00:00:20";
    s.lab
        .attach_guest(s.h(2), g, "vnicg", gmac, &["192.168.65.20/24"]);
    let r = s
        .lab
        .wait_ping(s.h(1), "192.168.65.20", Duration::from_secs(10));
    assert!(r.all_answered(), "{r}");
}

#[test]
#[ignore = "needs root, network namespaces, etcd and openssl: run `sudo make test`"]
fn mutual_tls_to_etcd() {
    let mut lab = Lab::new("etcd_tls");
    let hosts: Vec<Host> = (1..=2).map(|i| lab.add_host(&format!("h{i}"))).collect();
    let e = lab.add_host("etcd1");
    lab.switch("10.68.0", &[hosts[0], hosts[1], e]);
    let tls = EtcdTls::generate(lab.dir(), &["10.68.0.3"]);
    let etcd = lab.etcd_with(&[e], &["10.68.0.3"], Some(tls.clone()));
    assert!(etcd.endpoints().starts_with("https://"));
    let files = format!(
        "etcd/ca={},etcd/cert={},etcd/key={}",
        tls.ca.display(),
        tls.client_cert.display(),
        tls.client_key.display()
    );
    for (i, &h) in hosts.iter().enumerate() {
        let i = i + 1;
        lab.overlay_host(h);
        let ul = format!("10.68.0.{i}");
        lab.create_etcd_overlay(h, "ov0", VNI, &ul, &etcd.endpoints(), &files);
        lab.guest_addr(
            h,
            "ov0",
            &format!("02:68:00:00:00:{i:02}"),
            &[&format!("192.168.68.{i}/24")],
        );
    }
    for (from, to) in [(0, 2), (1, 1)] {
        let dest = format!("192.168.68.{to}");
        let r = lab.wait_ping(hosts[from], &dest, Duration::from_secs(15));
        assert!(r.all_answered(), "over mutual TLS:\n{r}");
    }
    let keys = etcd.keys(&format!("/overlay/{VNI}/vl2/"));
    assert_eq!(keys.len(), 2, "{keys:#?}");

    // Without a client certificate etcd refuses the session, and the
    // overlay says so (it still starts: the session is retried).
    lab.create_etcd_overlay(
        hosts[0],
        "ov1",
        VNI + 1,
        "10.68.0.1",
        &etcd.endpoints(),
        &format!("etcd/ca={}", tls.ca.display()),
    );
    let status = || lab.ovadm_ok(hosts[0], ["show-overlay", "-f", "ov1"]);
    assert!(
        wait_for(Duration::from_secs(10), || status().contains("DEGRADED")),
        "{}",
        status()
    );
    assert!(
        status().contains("etcd https://10.68.0.3:2379"),
        "{}",
        status()
    );
}

#[test]
#[ignore = "needs root, network namespaces and etcd: run `sudo make test`"]
fn a_host_cut_off_from_etcd_does_not_reclaim_a_guest_that_moved_meanwhile() {
    let mut s = setup("etcd_partition", 69, 3, 1, 4);
    let g = s.lab.add_host("guest");
    let gmac = "02:69:00:00:00:50";
    let g4 = "192.168.69.50";
    let attach = |s: &Setup, host: usize| {
        s.lab
            .attach_guest(s.h(host), g, "vnicg", gmac, &[&format!("{g4}/24")]);
    };
    attach(&s, 2);
    let r = s.lab.wait_ping(s.h(1), g4, Duration::from_secs(15));
    assert!(r.all_answered(), "{r}");
    // Host 2 loses etcd (and only etcd).
    s.lab
        .ip(s.h(2), &["route", "add", "blackhole", "10.69.0.4/32"]);
    assert!(
        wait_for(Duration::from_secs(12), || s.status(2).contains("DEGRADED")),
        "{}",
        s.status(2)
    );
    // Meanwhile the guest moves to host 3, which registers it.
    s.lab.ovadm_ok(s.h(2), ["delete-vnic", "vnicg"]);
    attach(&s, 3);
    let r = s.lab.wait_ping(s.h(1), g4, Duration::from_secs(5));
    assert!(r.all_answered(), "{r}");
    // Host 2 comes back: it must not publish the guest as its own again.
    s.lab
        .ip(s.h(2), &["route", "del", "blackhole", "10.69.0.4/32"]);
    assert!(
        wait_for(Duration::from_secs(15), || s.status(2).contains("ONLINE")),
        "{}",
        s.status(2)
    );
    std::thread::sleep(Duration::from_millis(500));
    let k = format!("{}vl2/{gmac}", s.prefix());
    let v = s.etcd.etcdctl_ok(&["get", "--print-value-only", &k]);
    assert!(
        v.contains(&s.ul(3)),
        "host 2 took the guest back: {k} = {v}"
    );
    let r = s.lab.wait_ping(s.h(1), g4, Duration::from_secs(3));
    assert!(r.all_answered(), "{r}");
}

/// Host `r`'s own keys: its guest's vl2 key and both its vl3 keys.
fn own_keys(s: &Setup, r: usize) -> Vec<String> {
    vec![
        format!("{}vl2/{}", s.prefix(), s.mac(r)),
        format!("{}vl3/{}", s.prefix(), s.ip4(r)),
        format!("{}vl3/{}", s.prefix(), s.ip6(r)),
    ]
}

/// Restarts varpd on host `r` (SIGKILL when `kill`, else SIGTERM, and 2 s
/// down, as an upgrade) while pings run every 100 ms between host `r`'s
/// guest and every other host's, both ways; asserts that not one is lost,
/// that etcd saw no deletion under the overlay's prefix and that no other
/// host's mirror changed (their invalidation counts stand still). Returns
/// the revision the restart started at.
fn restart_under_traffic(s: &mut Setup, r: usize, kill: bool) -> i64 {
    let others: Vec<usize> = (1..=s.hosts.len()).filter(|&j| j != r).collect();
    let inval: Vec<u64> = others
        .iter()
        .map(|&j| s.instance(j).invalidations)
        .collect();
    let rev = s.etcd.revision();
    let opts = ["-c", "100", "-i", "0.1"];
    let mut pings = Vec::new();
    for &j in &others {
        pings.push(s.lab.ping_background(s.h(r), &s.ip4(j), &opts));
        pings.push(s.lab.ping_background(s.h(j), &s.ip4(r), &opts));
        pings.push(s.lab.ping_background(s.h(j), &s.ip6(r), &opts));
    }
    std::thread::sleep(Duration::from_secs(2));
    let h = s.h(r);
    if kill {
        s.lab.kill(h, Daemon::Varpd);
    } else {
        s.lab.stop(h, Daemon::Varpd);
    }
    s.lab.wait_linked(h, false);
    std::thread::sleep(Duration::from_secs(2));
    s.lab.start_varpd(h);
    s.lab.wait_linked(h, true);
    assert!(
        wait_for(Duration::from_secs(5), || s.status(r).contains("ONLINE")),
        "{}",
        s.status(r)
    );
    let how = if kill { "SIGKILL" } else { "SIGTERM" };
    for p in pings {
        let p = p.finish();
        assert!(
            p.all_answered(),
            "pings lost across a varpd restart ({how}) on host {r}:\n{p}"
        );
    }
    let events = s
        .etcd
        .events_since(&s.prefix(), rev + 1, Duration::from_secs(2));
    let deletes: Vec<_> = events.iter().filter(|e| !e.put).collect();
    assert!(
        deletes.is_empty(),
        "a varpd restart ({how}) deleted keys: {deletes:#?}"
    );
    for (&j, before) in others.iter().zip(inval) {
        assert_eq!(
            s.instance(j).invalidations,
            before,
            "host {j}'s mirror changed across host {r}'s varpd restart ({how}): {events:#?}"
        );
    }
    println!(
        "varpd restart ({how}) on host {r}: no ping lost, {} puts and no deletes in etcd",
        events.len()
    );
    rev
}

#[test]
#[ignore = "needs root, network namespaces and etcd: run `sudo make test`"]
fn a_varpd_restart_loses_no_ping_and_only_deleting_the_overlay_withdraws() {
    let ttl = 8;
    let mut s = setup("etcd_restart", 72, 3, 1, ttl);
    s.full_mesh(Duration::from_secs(15));
    let r = 3;
    let keys = own_keys(&s, r);
    assert!(
        wait_for(Duration::from_secs(5), || {
            let all = s.etcd.keys(&s.prefix());
            keys.iter().all(|k| all.contains(k))
        }),
        "host {r}'s keys are not all in etcd: {:#?}",
        s.etcd.keys(&s.prefix())
    );
    let first = s.etcd.lease_of(&keys[0]).expect("the vl2 key");
    assert_ne!(first, 0, "a registration carries the host's lease");

    // A crash: no lease was saved (the instance saved its state before its
    // lease existed), so the next varpd grants a new one and adopts the
    // keys that name this host, which then outlive the old lease.
    let rev = restart_under_traffic(&mut s, r, true);
    let second = s.etcd.lease_of(&keys[0]).expect("the vl2 key");
    assert_ne!(second, first, "after a crash, a new lease");
    for k in &keys {
        assert_eq!(s.etcd.lease_of(k), Some(second), "{k} was not adopted");
    }
    std::thread::sleep(Duration::from_secs(ttl as u64 + 2));
    let events = s
        .etcd
        .events_since(&s.prefix(), rev + 1, Duration::from_secs(2));
    assert!(
        events.iter().all(|e| e.put),
        "the old lease expired with keys on it: {events:#?}"
    );
    let log = std::fs::read_to_string(s.lab.log(s.h(r), Daemon::Varpd)).unwrap_or_default();
    assert!(log.contains("adopted under lease"), "{log}");

    // An upgrade (SIGTERM): the lease is saved, and taken over.
    restart_under_traffic(&mut s, r, false);
    for k in &keys {
        assert_eq!(
            s.etcd.lease_of(k),
            Some(second),
            "{k}: lease not taken over"
        );
    }
    let log = std::fs::read_to_string(s.lab.log(s.h(r), Daemon::Varpd)).unwrap_or_default();
    assert!(
        log.contains(&format!("taking over lease {second:x}")),
        "{log}"
    );
    s.full_mesh(Duration::from_secs(5));

    // Deleting the overlay withdraws host 3's keys at once (not after the
    // TTL), and the others hear of it.
    let inval = s.instance(1).invalidations;
    s.lab.ovadm_ok(s.h(r), ["delete-overlay", "ov0"]);
    let t0 = Instant::now();
    let gone = wait_for(Duration::from_secs(2), || {
        let all = s.etcd.keys(&s.prefix());
        !keys.iter().any(|k| all.contains(k))
    });
    println!(
        "delete-overlay: host {r}'s keys gone after {:?}",
        t0.elapsed()
    );
    assert!(
        gone,
        "host {r}'s keys outlived its overlay: {:#?}",
        s.etcd.keys(&s.prefix())
    );
    assert!(
        wait_for(Duration::from_secs(2), || s.instance(1).invalidations
            >= inval + 3),
        "host 1 did not hear of the withdrawal"
    );
}

/// One scrape of the Prometheus exporter (the real binary, in the root
/// namespace, reading `run_dir`'s sockets as files) on a free loopback port.
fn scrape(lab: &Lab, run_dir: &std::path::Path) -> String {
    use std::io::{Read, Write};
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port();
    let mut child = std::process::Command::new(lab.bin("overlay-exporter"))
        .arg("--run-dir")
        .arg(run_dir)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .stdin(std::process::Stdio::null())
        .spawn()
        .expect("starting overlay-exporter");
    let mut body = None;
    wait_for(Duration::from_secs(10), || {
        let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
            return false;
        };
        let mut r = String::new();
        let ok = write!(s, "GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").is_ok()
            && s.read_to_string(&mut r).is_ok();
        body = r.split_once("\r\n\r\n").map(|(_, b)| b.to_string());
        ok && body.is_some()
    });
    let _ = child.kill();
    let _ = child.wait();
    body.expect("the exporter answered /metrics")
}

#[test]
#[ignore = "needs root, network namespaces, etcd and bpftrace: run `sudo make test`"]
fn the_same_mac_on_two_hosts_does_not_flap_and_the_conflict_is_shown() {
    let ttl = 4;
    let mut s = setup("etcd_conflict", 73, 2, 1, ttl);
    s.full_mesh(Duration::from_secs(15));
    let traces: Vec<_> = (1..=2)
        .map(|i| {
            let h = s.h(i);
            s.lab.bpftrace(
                h,
                Daemon::Varpd,
                &format!("conflict-h{i}"),
                "BEGIN { printf(\"Hit Ctrl-C to end.\\n\"); }\n\
                 usdt:@VARPD@:varpd:mac-conflict { @c[str(arg0), str(arg1), str(arg2), str(arg3), str(arg4)] = count(); }\n",
            )
        })
        .collect();
    // One MAC, two guests: host 1's first, then host 2's (a cloned VM).
    // Each keeps sending (pings to the other host), so each host's
    // overlayd keeps reporting it local.
    let x = "02:73:00:00:00:50";
    let key = format!("{}vl2/{x}", s.prefix());
    let rev0 = s.etcd.revision();
    let g1 = s.lab.add_host("g1");
    let g2 = s.lab.add_host("g2");
    s.lab
        .attach_guest(s.h(1), g1, "vnicx", x, &["192.168.73.50/24"]);
    let names = |s: &Setup, i: usize| {
        let v = s.etcd.etcdctl_ok(&["get", "--print-value-only", &key]);
        v.contains(&format!("\"{}\"", s.ul(i)))
    };
    assert!(
        wait_for(Duration::from_secs(10), || {
            s.lab.ping(g1, &s.ip4(2), &["-c", "1", "-W", "1"]);
            names(&s, 1)
        }),
        "host 1 never registered {x}"
    );
    let opts = ["-c", "1000", "-i", "0.1", "-W", "1"];
    let _p1 = s.lab.ping_background(g1, &s.ip4(2), &opts);
    s.lab
        .attach_guest(s.h(2), g2, "vnicx", x, &["192.168.73.51/24"]);
    let _p2 = s.lab.ping_background(g2, &s.ip4(1), &opts);

    // A conflict is found, by one host: the loser.
    let conflicted = |s: &Setup| (1..=2).find(|&i| s.status(i).contains("MAC conflict"));
    assert!(
        wait_for(Duration::from_secs(15), || conflicted(&s).is_some()),
        "no conflict shown:\n{}\n{}",
        s.status(1),
        s.status(2)
    );
    let loser = conflicted(&s).unwrap();
    let winner = 3 - loser;
    // It settles: over several lease refreshes (TTL/3), not one more put
    // of the key, and it names the winner throughout.
    let rev1 = s.etcd.revision();
    std::thread::sleep(Duration::from_secs(3 * ttl as u64));
    let after = s.etcd.events_since(&key, rev1 + 1, Duration::from_secs(2));
    assert!(after.is_empty(), "{key} flaps: {after:#?}");
    assert!(
        names(&s, winner),
        "{key} does not name the winner, host {winner}"
    );
    let all = s.etcd.events_since(&key, rev0 + 1, Duration::from_secs(2));
    println!(
        "conflict: {} puts of {key} in all (host {loser} yielded to host {winner}): {:?}",
        all.len(),
        all.iter().map(|e| &e.value).collect::<Vec<_>>()
    );
    assert!(
        all.iter().all(|e| e.put) && all.len() <= 4,
        "more than one claim back per host: {all:#?}"
    );
    assert_eq!(
        all.last().map(|e| e.value.contains(&s.ul(winner))),
        Some(true)
    );

    // Shown: show-overlay -f on the loser names the MAC and both hosts.
    let (wl, ll) = (
        format!("{}:4789", s.ul(winner)),
        format!("{}:4789", s.ul(loser)),
    );
    let f = s.status(loser);
    println!("{f}");
    assert!(
        f.contains("DEGRADED") && f.contains(x) && f.contains(&wl) && f.contains(&ll),
        "show-overlay -f should name {x}, {ll} and {wl}:\n{f}"
    );
    assert!(s.status(winner).contains("ONLINE"), "{}", s.status(winner));
    // Counted: varpd's status, and the exporter's metric.
    assert_eq!(s.instance(loser).mac_conflicts, 1);
    assert_eq!(s.instance(winner).mac_conflicts, 0);
    let metrics = scrape(&s.lab, &s.lab.run_dir(s.h(loser)));
    let line = metrics
        .lines()
        .find(|l| l.starts_with("varpd_mac_conflicts_total{") && l.contains("overlay=\"ov0\""))
        .unwrap_or_else(|| panic!("no varpd_mac_conflicts_total:\n{metrics}"));
    assert!(line.ends_with(" 1"), "{line}");
    // Probed: varpd:mac-conflict on the loser, with the MAC and both hosts.
    let outs: Vec<String> = traces.into_iter().map(|t| t.finish()).collect();
    let want = format!("@c[etcd, ov0, {x}, {wl}, {ll}]: 1");
    assert!(
        outs[loser - 1].contains(&want),
        "no {want} in the loser's trace:\n{}",
        outs[loser - 1]
    );
    assert!(
        !outs[winner - 1].contains("@c["),
        "the winner fired mac-conflict:\n{}",
        outs[winner - 1]
    );
}
