//! Overlayd hosts on the files plugin: VL3 reachability both ways over IPv4
//! and IPv6 (proxy ARP and NDP answer, lookups find the peers), full-MTU
//! frames, the target table, and the counters that show it all happened.

use overlay_api::StatsSnapshot;
use overlay_tests::snapshot::overlay;
use overlay_tests::{find_mac_line, FilesEntry, Lab};

#[test]
#[ignore = "needs root and network namespaces: run `sudo make test`"]
fn two_hosts_reach_each_other_and_count_it() {
    let mut lab = Lab::new("files_pair");
    let p = lab.files_pair(40, 4040);
    let before = [lab.stats(p.a), lab.stats(p.b)];

    for (from, to) in [(1, 2), (2, 1)] {
        for dest in [p.ip4(to), p.ip6(to)] {
            let r = lab.ping(p.host(from), &dest, &[]);
            assert!(r.all_answered(), "host {from} cannot reach {dest}:\n{r}");
        }
    }
    // 1372 bytes of ICMP payload fill the default 1400-byte MTU exactly.
    let r = lab.ping(p.a, &p.ip4(2), &["-M", "do", "-s", "1372"]);
    assert!(r.all_answered(), "full-MTU frames do not pass:\n{r}");

    for (me, peer) in [(1, 2), (2, 1)] {
        let t = lab.ovadm_ok(p.host(me), ["show-overlay", "-t", "ov0"]);
        let line = find_mac_line(&t, &p.mac(peer)).unwrap_or_else(|| {
            panic!(
                "show-overlay -t on host {me} lacks the peer {}:\n{t}",
                p.mac(peer)
            )
        });
        assert!(
            line.contains(&p.ul(peer)),
            "host {me}: peer {} should map to {}:\n{t}",
            p.mac(peer),
            p.ul(peer)
        );
        let f = lab.ovadm_ok(p.host(me), ["show-overlay", "-f", "ov0"]);
        assert!(
            f.contains("ONLINE"),
            "host {me}: show-overlay -f should say ONLINE:\n{f}"
        );
    }

    for (i, h) in [p.a, p.b].into_iter().enumerate() {
        let after = lab.stats(h);
        let (b, a) = (overlay(&before[i], "ov0"), overlay(&after, "ov0"));
        let what = format!("host {}: before {b:#?}\nafter {a:#?}", i + 1);
        // Each host sent 3+3 echo requests and 3+3 replies, and 3 big ones
        // (or their replies), over the wire: at least 12 frames each way.
        assert!(
            a.tx_frames >= b.tx_frames + 12 && a.tx_bytes > b.tx_bytes,
            "tx counters did not grow enough; {what}"
        );
        assert!(
            a.rx_frames >= b.rx_frames + 12 && a.rx_bytes > b.rx_bytes,
            "rx counters did not grow enough; {what}"
        );
        assert!(
            a.lookups > b.lookups && a.misses > b.misses,
            "no lookup went to varpd; {what}"
        );
        // One proxy ARP reply and one proxy neighbour advertisement at least.
        assert!(
            a.injected >= b.injected + 2,
            "proxy replies were not injected; {what}"
        );
        assert!(a.table_entries >= 1, "the target table is empty; {what}");
        assert_eq!(a.vnetid, 4040, "{what}");
        let mux = after.muxes.iter().find(|m| {
            m.listen.map(|l| l.to_string()) == Some(format!("{}:4789", p.ul(i as u8 + 1)))
        });
        let mux = mux.unwrap_or_else(|| {
            panic!("no mux listening on {}:4789: {after:#?}", p.ul(i as u8 + 1))
        });
        assert!(mux.rx_datagrams >= 12, "mux received too little: {mux:#?}");
    }

    // ovadm prints the same snapshot as JSON.
    let json = lab.ovadm_ok(p.a, ["show-stats", "--json"]);
    let s: StatsSnapshot = serde_json::from_str(&json)
        .unwrap_or_else(|e| panic!("show-stats --json is not a StatsSnapshot ({e}):\n{json}"));
    let last = lab.stats(p.a);
    assert!(
        overlay(&s, "ov0").tx_frames <= overlay(&last, "ov0").tx_frames
            && overlay(&s, "ov0").tx_frames >= 12,
        "{s:#?}"
    );
}

#[test]
#[ignore = "needs root and network namespaces: run `sudo make test`"]
fn three_hosts_on_a_bridge_reach_each_other() {
    let mut lab = Lab::new("bridge3");
    let hosts: Vec<_> = (1..=3).map(|i| lab.add_host(&format!("h{i}"))).collect();
    lab.switch("10.47.0", &hosts);
    let mac = |i: usize| format!("02:47:00:00:00:{i:02}");
    let entries: Vec<_> = (1..=3)
        .map(|i| FilesEntry {
            mac: mac(i),
            ip: format!("10.47.0.{i}"),
            port: 4789,
            arp: Some(format!("192.168.47.{i}")),
            ndp: Some(format!("fd47::{i}")),
        })
        .collect();
    let config = lab.write_file("files.json", &FilesEntry::json(&entries));
    for (i, &h) in hosts.iter().enumerate() {
        let i = i + 1;
        lab.overlay_host(h);
        lab.create_files_overlay(h, "ov0", 4747, &format!("10.47.0.{i}"), &config);
        lab.addr(
            h,
            "ov0",
            &mac(i),
            &[&format!("192.168.47.{i}/24"), &format!("fd47::{i}/64")],
        );
    }
    for i in 1..=3 {
        for j in (1..=3).filter(|&j| j != i) {
            for dest in [format!("192.168.47.{j}"), format!("fd47::{j}")] {
                let r = lab.ping(hosts[i - 1], &dest, &[]);
                assert!(r.all_answered(), "h{i} cannot reach {dest}:\n{r}");
            }
        }
    }
}
