//! ovsnoop against tshark on real kernel-VXLAN traffic. Two namespaces
//! carry two Linux VXLAN devices: `vx0` (VNI 100, IPv4 underlay, port
//! 4789) and `vx1` (VNI 200, IPv6 underlay, port 8472). Over them go ping
//! (with ARP), ping6 (with NDP), a TCP connection, a UDP datagram to a
//! closed port (and its ICMP error), captured by tcpdump on the underlay.
//! For every frame of the capture, the fields ovsnoop's `--json` gives
//! (outer and inner MACs, IPv4/IPv6 addresses, UDP/TCP ports, VNI, ARP
//! opcode and addresses, ICMP/ICMPv6 type) must equal what
//! `tshark -T fields` decodes from the same file.

mod oracle;

use overlay_tests::{require_tools, Lab};
use serde_json::Value;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::time::Duration;

/// tshark fields, in the order they are compared.
const FIELDS: [&str; 16] = [
    "eth.src",
    "eth.dst",
    "ip.src",
    "ip.dst",
    "ipv6.src",
    "ipv6.dst",
    "udp.srcport",
    "udp.dstport",
    "vxlan.vni",
    "tcp.srcport",
    "tcp.dstport",
    "arp.opcode",
    "arp.src.proto_ipv4",
    "arp.dst.proto_ipv4",
    "icmp.type",
    "icmpv6.type",
];

/// The values ovsnoop's JSON gives for each of [`FIELDS`], outer layers
/// first (as tshark lists a field's occurrences).
fn expected(o: &Value) -> Vec<Vec<String>> {
    let mut f: Vec<Vec<String>> = vec![Vec::new(); FIELDS.len()];
    let s = |v: &Value| match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let mut stack = |st: &Value, vni: Option<&Value>| {
        if st.is_null() {
            return;
        }
        if let (Some(a), Some(b)) = (st.get("src_mac"), st.get("dst_mac")) {
            f[0].push(s(a));
            f[1].push(s(b));
        }
        if let (Some(a), Some(b)) = (st.get("src_ip"), st.get("dst_ip")) {
            let v6 = s(a).contains(':');
            f[if v6 { 4 } else { 2 }].push(s(a));
            f[if v6 { 5 } else { 3 }].push(s(b));
            if let Some(i) = st.get("icmp") {
                f[if v6 { 15 } else { 14 }].push(s(&i["type"]));
            }
        }
        if let (Some(a), Some(b)) = (st.get("sport"), st.get("dport")) {
            let tcp = st.get("tcp").is_some();
            f[if tcp { 9 } else { 6 }].push(s(a));
            f[if tcp { 10 } else { 7 }].push(s(b));
        }
        if let Some(v) = vni {
            f[8].push(s(v));
        }
        if let Some(a) = st.get("arp") {
            f[11].push(s(&a["op"]));
            f[12].push(s(&a["sender_ip"]));
            f[13].push(s(&a["target_ip"]));
        }
    };
    stack(&o["outer"], o.get("vxlan").map(|v| &v["vni"]));
    stack(&o["inner"], None);
    f
}

#[test]
#[ignore = "needs root and network namespaces: run `sudo make test`"]
fn every_field_matches_tshark_on_kernel_vxlan_traffic() {
    require_tools(&["tshark", "tcpdump"]);
    let mut lab = Lab::new("ovsnoop_oracle");
    let a = lab.add_host("a");
    let b = lab.add_host("b");
    lab.link(a, "10.80.0.1/24", b, "10.80.0.2/24");
    for (h, i, j) in [(a, 1, 2), (b, 2, 1)] {
        lab.ip(
            h,
            &[
                "addr",
                "add",
                &format!("fd80:1::{i}/64"),
                "dev",
                "ul0",
                "nodad",
            ],
        );
        lab.kernel_vxlan(
            h,
            "vx0",
            100,
            &format!("10.80.0.{i}"),
            &format!("10.80.0.{j}"),
        );
        lab.ip(
            h,
            &[
                "link",
                "add",
                "vx1",
                "type",
                "vxlan",
                "id",
                "200",
                "dstport",
                "8472",
                "local",
                &format!("fd80:1::{i}"),
                "remote",
                &format!("fd80:1::{j}"),
                "nolearning",
            ],
        );
        lab.ip(h, &["link", "set", "vx1", "mtu", "1400"]);
        lab.addr(
            h,
            "vx0",
            &format!("02:80:00:00:00:0{i}"),
            &[&format!("192.168.80.{i}/24"), &format!("fd80::{i}/64")],
        );
        lab.addr(
            h,
            "vx1",
            &format!("02:81:00:00:00:0{i}"),
            &[&format!("192.168.81.{i}/24"), &format!("fd81::{i}/64")],
        );
    }
    let file = lab.dir().join("kernel.pcap");
    let capture = lab.capture(a, "ul0", &file, &[]);

    let mut pings = Vec::new();
    for dest in ["192.168.80.2", "fd80::2", "192.168.81.2", "fd81::2"] {
        pings.push(lab.wait_ping(a, dest, Duration::from_secs(10)));
    }
    // TCP over vx0 (IPv4 underlay) and vx1 (IPv6 underlay).
    for (srv, port) in [("192.168.80.2", 5001), ("[fd81::2]", 5002)] {
        let addr = format!("{srv}:{port}");
        let l = lab.in_ns(b, || TcpListener::bind(&addr).expect("listen in b"));
        lab.in_ns(a, || {
            let mut s = TcpStream::connect_timeout(&addr.parse().unwrap(), Duration::from_secs(5))
                .expect("connect over the overlay");
            s.write_all(b"hello over vxlan").unwrap();
        });
        let (mut c, _) = l.accept().unwrap();
        let mut got = Vec::new();
        c.read_to_end(&mut got).unwrap();
        assert_eq!(got, b"hello over vxlan");
    }
    // UDP to a closed port: the answer is an ICMP port unreachable.
    lab.in_ns(a, || {
        let s = UdpSocket::bind("192.168.80.1:0").unwrap();
        s.send_to(b"anyone?", "192.168.80.2:9").unwrap();
        let s6 = UdpSocket::bind("[fd81::1]:0").unwrap();
        s6.send_to(b"anyone?", "[fd81::2]:9").unwrap();
    });
    capture.stop();
    for p in &pings {
        assert!(p.all_answered(), "kernel VXLAN does not work:\n{p}");
    }

    let objs = oracle::ovsnoop_json(&file, &["--vxlan-port", "8472"]);
    eprintln!(
        "ovsnoop -r:\n{}",
        oracle::ovsnoop(&file, &["--vxlan-port", "8472"])
    );
    let rows = oracle::tshark_fields(&file, &["-d", "udp.port==8472,vxlan"], &FIELDS);
    let errors = oracle::compare(&objs, &rows, &FIELDS, expected);
    assert!(errors.is_empty(), "frames with errors: {errors:?}");
    // Every kind of traffic was there to compare.
    let vnis: std::collections::BTreeSet<String> = objs
        .iter()
        .filter_map(|o| o.get("vxlan").map(|v| v["vni"].to_string()))
        .collect();
    assert_eq!(vnis.into_iter().collect::<Vec<_>>(), ["100", "200"]);
    let dports: std::collections::BTreeSet<u64> = objs
        .iter()
        .filter(|o| o.get("vxlan").is_some())
        .filter_map(|o| o["outer"]["dport"].as_u64())
        .collect();
    assert!(
        dports.contains(&4789) && dports.contains(&8472),
        "{dports:?}"
    );
    let ndp = objs
        .iter()
        .any(|o| o["inner"]["icmp"]["type"] == 135 && o["inner"]["icmp"]["target"].is_string());
    assert!(ndp, "no neighbour solicitation inside VXLAN");
}
