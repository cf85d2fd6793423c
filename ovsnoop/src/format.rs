//! A decoded [`Frame`] → text: one `snoop`-style line (VNI first), every
//! field of every layer (`-v`), or one JSON object per frame (`--json`,
//! keys `len`, `outer`, `vxlan`, `inner`).

use crate::decode::{App, Frame, Link, Net, Stack, Transport};
use std::fmt::Write;

/// One line: `VNI n (name)  UL3 -> UL3  VL2 -> VL2  inner summary  len N`
/// for VXLAN, `L2 -> L2  summary  len N` for anything else.
pub fn line(f: &Frame) -> String {
    let mut out = String::new();
    match (&f.vxlan, &f.inner) {
        (Some(v), Some(inner)) => {
            let _ = write!(out, "VNI {}", v.vni);
            if let Some(name) = &v.overlay {
                let _ = write!(out, " ({name})");
            }
            if let Some((s, d)) = net_addrs(&f.outer) {
                let _ = write!(out, "  {s} -> {d}");
            }
            let _ = write!(out, "  {}  len {}", stack_line(inner), inner.len);
            if let Some(n) = &f.outer.note {
                let _ = write!(out, "  [outer: {n}]");
            }
        }
        _ => {
            let _ = write!(out, "{}  len {}", stack_line(&f.outer), f.len);
        }
    }
    out
}

fn net_addrs(s: &Stack) -> Option<(String, String)> {
    match s.net.as_ref()? {
        Net::Ipv4 { src, dst, .. } => Some((src.to_string(), dst.to_string())),
        Net::Ipv6 { src, dst, .. } => Some((src.to_string(), dst.to_string())),
        _ => None,
    }
}

fn link_line(l: &Link) -> String {
    let mut out = match (l.src, l.dst) {
        (Some(s), Some(d)) => format!("{s} -> {d}"),
        (Some(s), None) => format!("{s} -> ?"),
        _ => "? -> ?".to_string(),
    };
    for v in &l.vlans {
        let _ = write!(out, " vlan {v}");
    }
    out
}

/// The link addresses and the highest layer's summary of one stack.
fn stack_line(s: &Stack) -> String {
    let mut out = s.link.as_ref().map(link_line).unwrap_or_default();
    let summary = summary(s);
    if !summary.is_empty() {
        if !out.is_empty() {
            out.push_str("  ");
        }
        out.push_str(&summary);
    }
    if let Some(n) = &s.note {
        let _ = write!(out, " [{n}]");
    }
    out
}

fn icmp_name(t: u8, code: u8) -> String {
    match t {
        0 => "echo reply".into(),
        3 => format!("destination unreachable code {code}"),
        5 => "redirect".into(),
        8 => "echo request".into(),
        11 => "time exceeded".into(),
        _ => format!("type {t} code {code}"),
    }
}

fn icmpv6_name(t: u8, code: u8) -> String {
    match t {
        1 => format!("destination unreachable code {code}"),
        2 => "packet too big".into(),
        3 => "time exceeded".into(),
        128 => "echo request".into(),
        129 => "echo reply".into(),
        133 => "router solicitation".into(),
        134 => "router advertisement".into(),
        135 => "neighbor solicitation".into(),
        136 => "neighbor advertisement".into(),
        143 => "multicast listener report v2".into(),
        _ => format!("type {t} code {code}"),
    }
}

fn dhcp_name(t: u8) -> String {
    match t {
        1 => "DISCOVER".into(),
        2 => "OFFER".into(),
        3 => "REQUEST".into(),
        4 => "DECLINE".into(),
        5 => "ACK".into(),
        6 => "NAK".into(),
        7 => "RELEASE".into(),
        8 => "INFORM".into(),
        n => format!("type {n}"),
    }
}

/// The highest decoded layer, `snoop`-style.
fn summary(s: &Stack) -> String {
    let addrs = net_addrs(s);
    let (src, dst) = addrs.clone().unwrap_or_default();
    match (&s.net, &s.transport, &s.app) {
        (
            Some(Net::Arp {
                op, sha, spa, tpa, ..
            }),
            _,
            _,
        ) => match op {
            1 => format!("ARP who-has {tpa} tell {spa}"),
            2 => format!("ARP reply {spa} is-at {sha}"),
            n => format!("ARP op {n} {spa} -> {tpa}"),
        },
        (
            _,
            Some(Transport::Udp { sport, dport, .. }),
            Some(App::Dhcp {
                op,
                xid,
                chaddr,
                yiaddr,
                msg_type,
            }),
        ) => {
            let what = msg_type
                .map(dhcp_name)
                .unwrap_or_else(|| if *op == 1 { "BOOTREQUEST" } else { "BOOTREPLY" }.to_string());
            let mut o = format!(
                "DHCP {what} {src}:{sport} -> {dst}:{dport} xid {xid:#010x} chaddr {chaddr}"
            );
            if !yiaddr.is_unspecified() {
                let _ = write!(o, " yiaddr {yiaddr}");
            }
            o
        }
        (
            _,
            Some(Transport::Icmp {
                icmp_type,
                code,
                id,
                seq,
            }),
            _,
        ) => {
            let mut o = format!("ICMP {} {src} -> {dst}", icmp_name(*icmp_type, *code));
            if let (Some(i), Some(q)) = (id, seq) {
                let _ = write!(o, " id {i} seq {q}");
            }
            o
        }
        (
            _,
            Some(Transport::Icmpv6 {
                icmp_type,
                code,
                id,
                seq,
                target,
                lladdr,
            }),
            _,
        ) => {
            let mut o = format!("ICMPv6 {} {src} -> {dst}", icmpv6_name(*icmp_type, *code));
            if let (Some(i), Some(q)) = (id, seq) {
                let _ = write!(o, " id {i} seq {q}");
            }
            if let Some(t) = target {
                let _ = write!(o, " target {t}");
            }
            if let Some(m) = lladdr {
                let _ = write!(o, " lladdr {m}");
            }
            o
        }
        (
            _,
            Some(Transport::Tcp {
                sport,
                dport,
                seq,
                ack,
                flags,
                win,
            }),
            _,
        ) => {
            format!("TCP {src}:{sport} -> {dst}:{dport} [{flags}] seq {seq} ack {ack} win {win}")
        }
        (_, Some(Transport::Udp { sport, dport, len }), _) => {
            format!("UDP {src}:{sport} -> {dst}:{dport} len {len}")
        }
        (_, Some(Transport::Other { proto }), _) => format!("IP proto {proto} {src} -> {dst}"),
        (Some(Net::Ipv4 { .. }), None, _) => format!("IPv4 {src} -> {dst}"),
        (Some(Net::Ipv6 { .. }), None, _) => format!("IPv6 {src} -> {dst}"),
        (Some(Net::Other { ethertype }), _, _) => format!("ethertype {ethertype:#06x}"),
        (None, _, _) => String::new(),
    }
}

/// Every field of every layer, one per line, `snoop -v` style; ends with a
/// newline, so that the caller's own newline leaves a blank line between frames.
pub fn verbose(f: &Frame, number: u64) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "FRAME:  ----- Frame {number} -----");
    let _ = writeln!(o, "FRAME:  Length = {} bytes", f.len);
    stack_verbose(&mut o, "", &f.outer);
    if let Some(v) = &f.vxlan {
        let p = "VXLAN:  ";
        let _ = writeln!(o, "{p}----- VXLAN Header -----");
        let _ = writeln!(
            o,
            "{p}Flags = {:#04x} (I {})",
            v.flags,
            if v.flags & 0x08 != 0 { "set" } else { "clear" }
        );
        let _ = writeln!(o, "{p}VNI = {}", v.vni);
        let _ = writeln!(o, "{p}Reserved bits = {:#010x}", v.reserved);
        if let Some(n) = &v.overlay {
            let _ = writeln!(o, "{p}Overlay = {n}");
        }
    }
    if let Some(i) = &f.inner {
        stack_verbose(&mut o, "INNER ", i);
    }
    o
}

fn stack_verbose(o: &mut String, side: &str, s: &Stack) {
    if let Some(l) = &s.link {
        let p = format!("{side}ETHER:  ");
        let _ = writeln!(o, "{p}----- Ethernet Header -----");
        let _ = writeln!(o, "{p}Packet size = {} bytes", s.len);
        if let Some(d) = l.dst {
            let _ = writeln!(o, "{p}Destination = {d}");
        }
        if let Some(sr) = l.src {
            let _ = writeln!(o, "{p}Source = {sr}");
        }
        for v in &l.vlans {
            let _ = writeln!(o, "{p}VLAN ID = {v}");
        }
        let _ = writeln!(o, "{p}Ethertype = {:#06x}", l.ethertype);
    }
    match &s.net {
        Some(Net::Arp {
            op,
            sha,
            spa,
            tha,
            tpa,
        }) => {
            let p = format!("{side}ARP:  ");
            let _ = writeln!(o, "{p}----- ARP/RARP Frame -----");
            let _ = writeln!(
                o,
                "{p}Opcode = {op} ({})",
                match op {
                    1 => "ARP Request",
                    2 => "ARP Reply",
                    _ => "?",
                }
            );
            let _ = writeln!(o, "{p}Sender's hardware address = {sha}");
            let _ = writeln!(o, "{p}Sender's protocol address = {spa}");
            let _ = writeln!(o, "{p}Target hardware address = {tha}");
            let _ = writeln!(o, "{p}Target protocol address = {tpa}");
        }
        Some(Net::Ipv4 {
            src,
            dst,
            proto,
            ttl,
            total_len,
            id,
            df,
            frag_off,
            mf,
        }) => {
            let p = format!("{side}IP:  ");
            let _ = writeln!(o, "{p}----- IP Header -----");
            let _ = writeln!(o, "{p}Total length = {total_len} bytes");
            let _ = writeln!(o, "{p}Identification = {id}");
            let _ = writeln!(
                o,
                "{p}Flags = {}",
                [(*df, "DF"), (*mf, "MF")]
                    .iter()
                    .filter(|(on, _)| *on)
                    .map(|(_, n)| *n)
                    .collect::<Vec<_>>()
                    .join(" ")
            );
            let _ = writeln!(o, "{p}Fragment offset = {frag_off} bytes");
            let _ = writeln!(o, "{p}Time to live = {ttl}");
            let _ = writeln!(o, "{p}Protocol = {proto}");
            let _ = writeln!(o, "{p}Source address = {src}");
            let _ = writeln!(o, "{p}Destination address = {dst}");
        }
        Some(Net::Ipv6 {
            src,
            dst,
            next,
            hop_limit,
            payload_len,
            flow,
        }) => {
            let p = format!("{side}IPv6:  ");
            let _ = writeln!(o, "{p}----- IPv6 Header -----");
            let _ = writeln!(o, "{p}Flow label = {flow:#x}");
            let _ = writeln!(o, "{p}Payload length = {payload_len}");
            let _ = writeln!(o, "{p}Next Header = {next}");
            let _ = writeln!(o, "{p}Hop Limit = {hop_limit}");
            let _ = writeln!(o, "{p}Source address = {src}");
            let _ = writeln!(o, "{p}Destination address = {dst}");
        }
        Some(Net::Other { ethertype }) => {
            let _ = writeln!(
                o,
                "{side}ETHER:  (payload of ethertype {ethertype:#06x} not decoded)"
            );
        }
        None => {}
    }
    match &s.transport {
        Some(Transport::Udp { sport, dport, len }) => {
            let p = format!("{side}UDP:  ");
            let _ = writeln!(o, "{p}----- UDP Header -----");
            let _ = writeln!(o, "{p}Source port = {sport}");
            let _ = writeln!(o, "{p}Destination port = {dport}");
            let _ = writeln!(o, "{p}Length = {len}");
        }
        Some(Transport::Tcp {
            sport,
            dport,
            seq,
            ack,
            flags,
            win,
        }) => {
            let p = format!("{side}TCP:  ");
            let _ = writeln!(o, "{p}----- TCP Header -----");
            let _ = writeln!(o, "{p}Source port = {sport}");
            let _ = writeln!(o, "{p}Destination port = {dport}");
            let _ = writeln!(o, "{p}Sequence number = {seq}");
            let _ = writeln!(o, "{p}Acknowledgement number = {ack}");
            let _ = writeln!(o, "{p}Flags = {flags}");
            let _ = writeln!(o, "{p}Window = {win}");
        }
        Some(Transport::Icmp {
            icmp_type,
            code,
            id,
            seq,
        }) => {
            let p = format!("{side}ICMP:  ");
            let _ = writeln!(o, "{p}----- ICMP Header -----");
            let _ = writeln!(
                o,
                "{p}Type = {icmp_type} ({})",
                icmp_name(*icmp_type, *code)
            );
            let _ = writeln!(o, "{p}Code = {code}");
            if let (Some(i), Some(q)) = (id, seq) {
                let _ = writeln!(o, "{p}ID = {i}");
                let _ = writeln!(o, "{p}Sequence number = {q}");
            }
        }
        Some(Transport::Icmpv6 {
            icmp_type,
            code,
            id,
            seq,
            target,
            lladdr,
        }) => {
            let p = format!("{side}ICMPv6:  ");
            let _ = writeln!(o, "{p}----- ICMPv6 Header -----");
            let _ = writeln!(
                o,
                "{p}Type = {icmp_type} ({})",
                icmpv6_name(*icmp_type, *code)
            );
            let _ = writeln!(o, "{p}Code = {code}");
            if let (Some(i), Some(q)) = (id, seq) {
                let _ = writeln!(o, "{p}ID = {i}");
                let _ = writeln!(o, "{p}Sequence number = {q}");
            }
            if let Some(t) = target {
                let _ = writeln!(o, "{p}Target address = {t}");
            }
            if let Some(m) = lladdr {
                let _ = writeln!(o, "{p}Link-layer address = {m}");
            }
        }
        Some(Transport::Other { proto }) => {
            let _ = writeln!(o, "{side}IP:  (payload of protocol {proto} not decoded)");
        }
        None => {}
    }
    if let Some(App::Dhcp {
        op,
        xid,
        chaddr,
        yiaddr,
        msg_type,
    }) = &s.app
    {
        let p = format!("{side}DHCP:  ");
        let _ = writeln!(o, "{p}----- Dynamic Host Configuration Protocol -----");
        let _ = writeln!(o, "{p}Opcode = {op}");
        let _ = writeln!(o, "{p}Transaction ID = {xid:#010x}");
        let _ = writeln!(o, "{p}Client hardware address = {chaddr}");
        let _ = writeln!(o, "{p}Your IP address = {yiaddr}");
        if let Some(t) = msg_type {
            let _ = writeln!(o, "{p}Message type = {}", dhcp_name(*t));
        }
    }
    if let Some(n) = &s.note {
        let _ = writeln!(o, "{side}NOTE:  {n}");
    }
}

/// One JSON object: `{"len", "outer", "vxlan", "inner"}`.
pub fn json(f: &Frame) -> String {
    serde_json::to_string(f).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
}
