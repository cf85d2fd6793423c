//! ovsnoop against tshark on real Geneve traffic: overlayd (`-e geneve`,
//! point mode) on host `a`, Open vSwitch's userspace datapath on host `b`.
//! Over the tunnel go ping and ping6 both ways (with ARP and NDP), and from
//! `b` a few Geneve datagrams with options, critical and not, and a control
//! message, all captured by tcpdump on `a`'s underlay. For every frame, the
//! fields ovsnoop's `--json` gives (outer and inner MACs and addresses, UDP
//! ports, the Geneve version, flags, protocol, VNI, each option's class,
//! type and length, ARP opcode, ICMP/ICMPv6 type) must equal what
//! `tshark -T fields` decodes from the same file.

mod oracle;

use overlay_api::Mac;
use overlay_tests::{eth_frame, geneve_datagram, require_tools, Lab, GENEVE_PROTO_TEB};
use serde_json::Value;
use std::net::UdpSocket;
use std::time::Duration;

/// tshark fields, in the order they are compared.
const FIELDS: [&str; 19] = [
    "eth.src",
    "eth.dst",
    "ip.src",
    "ip.dst",
    "ipv6.src",
    "ipv6.dst",
    "udp.srcport",
    "udp.dstport",
    "geneve.version",
    "geneve.flags.oam",
    "geneve.flags.critical",
    "geneve.proto_type",
    "geneve.vni",
    "geneve.option.class",
    "geneve.option.type",
    "geneve.option.length",
    "arp.opcode",
    "icmp.type",
    "icmpv6.type",
];

/// The values ovsnoop's JSON gives for each of [`FIELDS`], outer layers
/// first, in tshark's notation (hex protocol, VNI, option class and type,
/// booleans as 0/1, an option's length with its 4-byte header).
fn expected(o: &Value) -> Vec<Vec<String>> {
    let mut f: Vec<Vec<String>> = vec![Vec::new(); FIELDS.len()];
    let s = |v: &Value| match v {
        Value::String(s) => s.clone(),
        Value::Bool(b) => u8::from(*b).to_string(),
        other => other.to_string(),
    };
    let stack = |f: &mut Vec<Vec<String>>, st: &Value| {
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
                f[if v6 { 18 } else { 17 }].push(s(&i["type"]));
            }
        }
        if let (Some(a), Some(b), None) = (st.get("sport"), st.get("dport"), st.get("tcp")) {
            f[6].push(s(a));
            f[7].push(s(b));
        }
        if let Some(a) = st.get("arp") {
            f[16].push(s(&a["op"]));
        }
    };
    stack(&mut f, &o["outer"]);
    if let Some(g) = o.get("geneve") {
        f[8].push(s(&g["version"]));
        f[9].push(s(&g["oam"]));
        f[10].push(s(&g["critical"]));
        f[11].push(format!("{:#06x}", g["protocol"].as_u64().unwrap()));
        f[12].push(format!("{:#08x}", g["vni"].as_u64().unwrap()));
        // tshark's option.length is first the whole options area, when
        // there is one, then each option's length with its header.
        if g["opt_len"].as_u64() != Some(0) {
            f[15].push(s(&g["opt_len"]));
        }
        for op in g["options"].as_array().unwrap() {
            f[13].push(format!("{:#06x}", op["class"].as_u64().unwrap()));
            f[14].push(format!("{:#04x}", op["type"].as_u64().unwrap()));
            f[15].push((op["len"].as_u64().unwrap() + 4).to_string());
        }
    }
    stack(&mut f, &o["inner"]);
    f
}

#[test]
#[ignore = "needs root, network namespaces and Open vSwitch: run `sudo make test`"]
fn every_field_matches_tshark_on_geneve_traffic() {
    require_tools(&["tshark", "tcpdump"]);
    let mut lab = Lab::new("ovsnoop_geneve");
    let a = lab.add_host("a");
    let b = lab.add_host("b");
    lab.link(a, "10.82.0.1/24", b, "10.82.0.2/24");
    lab.tx_csum_off(a, "ul0");
    lab.overlay_host(a);
    lab.ovs_host(b);
    lab.ovadm_ok(
        a,
        [
            "create-overlay",
            "-e",
            "geneve",
            "-s",
            "direct",
            "-v",
            "8282",
            "-p",
            "geneve/listen_ip=10.82.0.1,direct/dest_ip=10.82.0.2,direct/dest_port=6081",
            "ov0",
        ],
    );
    lab.addr(
        a,
        "ov0",
        "02:82:00:00:00:01",
        &["192.168.82.1/24", "fd82::1/64"],
    );
    lab.ovs_tunnel(b, "geneve", 8282, "10.82.0.1", "gv0");
    lab.addr(
        b,
        "gv0",
        "02:82:00:00:00:02",
        &["192.168.82.2/24", "fd82::2/64"],
    );

    let file = lab.dir().join("geneve.pcap");
    let capture = lab.capture(a, "ul0", &file, &["udp"]);

    let mut pings = Vec::new();
    for (h, dest) in [
        (a, "192.168.82.2"),
        (a, "fd82::2"),
        (b, "192.168.82.1"),
        (b, "fd82::1"),
    ] {
        pings.push(lab.wait_ping(h, dest, Duration::from_secs(10)));
    }
    let src: Mac = "02:82:00:00:00:99".parse().unwrap();
    let frame = eth_frame(Mac::BROADCAST, src, 0x88b5, &[0; 46]);
    lab.in_ns(b, || {
        let s = UdpSocket::bind("10.82.0.2:0").expect("bind in b");
        let teb = GENEVE_PROTO_TEB;
        for d in [
            geneve_datagram(
                0,
                0,
                teb,
                8282,
                &[(0x0102, 0x03, 1), (0xffff, 0x7f, 0)],
                &frame,
            ),
            geneve_datagram(0, 0x40, teb, 8282, &[(0x0104, 0x81, 2)], &frame),
            geneve_datagram(0, 0x80, teb, 8282, &[], &frame),
        ] {
            s.send_to(&d, "10.82.0.1:6081").expect("send to a");
        }
    });
    capture.stop();
    for p in &pings {
        assert!(p.all_answered(), "Geneve with OVS does not work:\n{p}");
    }

    let objs = oracle::ovsnoop_json(&file, &[]);
    let verbose = oracle::ovsnoop(&file, &["-v"]);
    assert!(
        verbose.contains("GENEVE:  Option 2 = class 0xffff type 0x7f length 0 bytes")
            && verbose.contains("type 0x81 (critical) length 8 bytes"),
        "{verbose}"
    );

    let rows = oracle::tshark_fields(&file, &[], &FIELDS);
    let errors = oracle::compare(&objs, &rows, &FIELDS, expected);
    // The critical option and the control message are errors, and only they.
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(
        errors.iter().any(|e| e.contains("critical option")),
        "{errors:?}"
    );
    assert!(
        errors.iter().any(|e| e.contains("control message")),
        "{errors:?}"
    );
    assert!(objs
        .iter()
        .all(|o| o.get("vxlan").is_none() && o.get("geneve").is_some()));
}
