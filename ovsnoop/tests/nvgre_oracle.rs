//! ovsnoop against tshark on real NVGRE traffic: overlayd (`-e nvgre`,
//! point mode) on host `a`, Open vSwitch's userspace datapath on host `b`
//! (`type=gre`, key VSID×256). Over the tunnel go ping and ping6 both ways
//! (with ARP and NDP), and from `b` a few GRE packets with a checksum, a
//! sequence number, a FlowID, and without a key, all captured by tcpdump
//! on `a`'s underlay. For every frame, the fields ovsnoop's `--json` gives
//! (outer and inner MACs and addresses, the GRE flags, version, protocol
//! and key, ARP opcode, ICMP/ICMPv6 type) must equal what `tshark -T
//! fields` decodes from the same file.

mod oracle;

use overlay_api::Mac;
use overlay_tests::{eth_frame, require_tools, Lab};
use serde_json::Value;
use std::time::Duration;

/// tshark fields, in the order they are compared.
const FIELDS: [&str; 15] = [
    "eth.src",
    "eth.dst",
    "ip.src",
    "ip.dst",
    "ipv6.src",
    "ipv6.dst",
    "gre.flags.checksum",
    "gre.flags.key",
    "gre.flags.sequence_number",
    "gre.flags.version",
    "gre.proto",
    "gre.key",
    "arp.opcode",
    "icmp.type",
    "icmpv6.type",
];

/// The values ovsnoop's JSON gives for each of [`FIELDS`], outer layers
/// first, in tshark's notation (hex protocol and key, booleans as 0/1).
fn expected(o: &Value) -> Vec<Vec<String>> {
    let mut f: Vec<Vec<String>> = vec![Vec::new(); FIELDS.len()];
    let s = |v: &Value| match v {
        Value::String(s) => s.clone(),
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
                f[if v6 { 14 } else { 13 }].push(s(&i["type"]));
            }
        }
        if let Some(a) = st.get("arp") {
            f[12].push(s(&a["op"]));
        }
    };
    stack(&mut f, &o["outer"]);
    if let Some(g) = o.get("nvgre") {
        let flags = g["flags"].as_u64().unwrap();
        for (k, bit) in [(6, 0x80), (7, 0x20), (8, 0x10)] {
            f[k].push(u8::from(flags & bit != 0).to_string());
        }
        f[9].push(s(&g["version"]));
        f[10].push(format!("{:#06x}", g["protocol"].as_u64().unwrap()));
        if let Some(k) = g["key"].as_u64() {
            f[11].push(format!("{k:#010x}"));
        }
    }
    stack(&mut f, &o["inner"]);
    f
}

/// A GRE header (flags: C with a right checksum, K with `key`, S with
/// sequence 9) in front of `frame`.
fn gre(flags: u8, key: u32, frame: &[u8]) -> Vec<u8> {
    let mut b = vec![flags, 0, 0x65, 0x58];
    if flags & 0x80 != 0 {
        b.extend_from_slice(&[0; 4]);
    }
    if flags & 0x20 != 0 {
        b.extend_from_slice(&key.to_be_bytes());
    }
    if flags & 0x10 != 0 {
        b.extend_from_slice(&9u32.to_be_bytes());
    }
    b.extend_from_slice(frame);
    if flags & 0x80 != 0 {
        let mut sum: u32 = b
            .chunks(2)
            .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
            .sum();
        while sum >> 16 != 0 {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        b[4..6].copy_from_slice(&(!(sum as u16)).to_be_bytes());
    }
    b
}

#[test]
#[ignore = "needs root, network namespaces and Open vSwitch: run `sudo make test`"]
fn every_field_matches_tshark_on_nvgre_traffic() {
    require_tools(&["tshark", "tcpdump"]);
    let mut lab = Lab::new("ovsnoop_nvgre");
    let a = lab.add_host("a");
    let b = lab.add_host("b");
    lab.link(a, "10.83.0.1/24", b, "10.83.0.2/24");
    lab.tx_csum_off(a, "ul0");
    lab.overlay_host(a);
    lab.ovs_host(b);
    lab.ovadm_ok(
        a,
        [
            "create-overlay",
            "-e",
            "nvgre",
            "-s",
            "direct",
            "-v",
            "8383",
            "-p",
            "nvgre/listen_ip=10.83.0.1,direct/dest_ip=10.83.0.2,direct/dest_port=1",
            "ov0",
        ],
    );
    lab.addr(
        a,
        "ov0",
        "02:83:00:00:00:01",
        &["192.168.83.1/24", "fd83::1/64"],
    );
    lab.ovs_tunnel(b, "gre", 8383 * 256, "10.83.0.1", "gr0");
    lab.addr(
        b,
        "gr0",
        "02:83:00:00:00:02",
        &["192.168.83.2/24", "fd83::2/64"],
    );

    let file = lab.dir().join("nvgre.pcap");
    let capture = lab.capture(a, "ul0", &file, &["ip", "proto", "47"]);

    let mut pings = Vec::new();
    for (h, dest) in [
        (a, "192.168.83.2"),
        (a, "fd83::2"),
        (b, "192.168.83.1"),
        (b, "fd83::1"),
    ] {
        pings.push(lab.wait_ping(h, dest, Duration::from_secs(10)));
    }
    let src: Mac = "02:83:00:00:00:99".parse().unwrap();
    let frame = eth_frame(Mac::BROADCAST, src, 0x88b5, &[0; 46]);
    let key = 8383 << 8;
    lab.send_raw_ipv4(
        b,
        47,
        "10.83.0.1".parse().unwrap(),
        &[
            gre(0xa0, key, &frame),        // checksum and key: delivered
            gre(0x30, key | 0x11, &frame), // key with a FlowID, sequence number: delivered
            gre(0x00, 0, &frame),          // no key: an error
        ],
    );
    capture.stop();
    for p in &pings {
        assert!(p.all_answered(), "NVGRE with OVS does not work:\n{p}");
    }

    let objs = oracle::ovsnoop_json(&file, &[]);
    let verbose = oracle::ovsnoop(&file, &["-v"]);
    assert!(
        verbose.contains("NVGRE:  Flags = 0xa0 (C 1, K 1, S 0), Version = 0")
            && verbose.contains("Key = 0x0020bf11 (VSID 8383, FlowID 17)"),
        "{verbose}"
    );

    let rows = oracle::tshark_fields(&file, &[], &FIELDS);
    let errors = oracle::compare(&objs, &rows, &FIELDS, expected);
    // The packet without a key is an error, and only it.
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].contains("without the K bit"), "{errors:?}");
    assert!(objs
        .iter()
        .all(|o| o.get("vxlan").is_none() && o.get("nvgre").is_some()));
}
