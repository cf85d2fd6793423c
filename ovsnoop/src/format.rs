//! A decoded [`Frame`] → text: one `snoop`-style line (VNI first), every
//! field of every layer (`-v`), or one JSON object per frame (`--json`,
//! keys `len`, `outer`, `vxlan`, `geneve` or `nvgre`, `inner`).

use crate::decode::{App, Frame, Link, Net, Stack, Transport};
use overlay_api::Mac;
use std::fmt::Write;

/// One line: `VNI n (name)  UL3 -> UL3  VL2 -> VL2  inner summary  len N`
/// for VXLAN, `L2 -> L2  summary  len N` for anything else; a frame with
/// something wrong ends with `[error: ...]`.
pub fn line(f: &Frame) -> String {
    let mut out = String::new();
    line_into(&mut out, f);
    out
}

/// [`line`], appended to `out` (the hot path: no allocation once `out`
/// has grown to a line's size).
pub fn line_into(out: &mut String, f: &Frame) {
    let _ = line_fmt(out, f);
}

fn line_fmt(out: &mut String, f: &Frame) -> std::fmt::Result {
    match (f.vni(), &f.inner) {
        (Some(vni), Some(inner)) => {
            write!(out, "VNI {vni}")?;
            if f.geneve.is_some() {
                out.push_str(" geneve");
            } else if f.nvgre.is_some() {
                out.push_str(" nvgre");
            }
            if let Some(name) = f.overlay() {
                write!(out, " ({name})")?;
            }
            if let Some((s, d)) = net_addrs(&f.outer) {
                write!(out, "  {s} -> {d}")?;
            }
            out.push_str("  ");
            stack_line(out, inner)?;
            write!(out, "  len {}", inner.len)?;
            if let Some(n) = &f.outer.note {
                write!(out, "  [error: outer: {n}]")?;
            }
        }
        _ => {
            stack_line(out, &f.outer)?;
            write!(out, "  len {}", f.len)?;
        }
    }
    Ok(())
}

/// An IPv4 or IPv6 address, printed without allocating.
#[derive(Clone, Copy)]
enum Addr<'a> {
    V4(&'a std::net::Ipv4Addr),
    V6(&'a std::net::Ipv6Addr),
}

impl std::fmt::Display for Addr<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Addr::V4(a) => a.fmt(f),
            Addr::V6(a) => a.fmt(f),
        }
    }
}

fn net_addrs(s: &Stack) -> Option<(Addr<'_>, Addr<'_>)> {
    match s.net.as_ref()? {
        Net::Ipv4 { src, dst, .. } => Some((Addr::V4(src), Addr::V4(dst))),
        Net::Ipv6 { src, dst, .. } => Some((Addr::V6(src), Addr::V6(dst))),
        _ => None,
    }
}

/// A MAC in lowercase hex with colons, written digit by digit: this runs
/// for every frame, and `{:02x}` six times is most of a line's cost.
fn mac(out: &mut String, m: &Mac) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for (i, b) in m.0.iter().enumerate() {
        if i > 0 {
            out.push(':');
        }
        out.push(HEX[usize::from(b >> 4)] as char);
        out.push(HEX[usize::from(b & 0x0f)] as char);
    }
}

fn link_line(out: &mut String, l: &Link) -> std::fmt::Result {
    match (l.src, l.dst) {
        (Some(s), Some(d)) => {
            mac(out, &s);
            out.push_str(" -> ");
            mac(out, &d);
        }
        (Some(s), None) => {
            mac(out, &s);
            out.push_str(" -> ?");
        }
        _ => out.push_str("? -> ?"),
    }
    for v in &l.vlans {
        write!(out, " vlan {v}")?;
    }
    Ok(())
}

/// The link addresses and the highest layer's summary of one stack.
fn stack_line(out: &mut String, s: &Stack) -> std::fmt::Result {
    let start = out.len();
    if let Some(l) = &s.link {
        link_line(out, l)?;
    }
    let before = out.len();
    if before > start {
        out.push_str("  ");
    }
    let at = out.len();
    summary(out, s)?;
    if out.len() == at {
        out.truncate(before);
    }
    if let Some(n) = &s.note {
        write!(out, " [error: {n}]")?;
    }
    Ok(())
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

/// [`icmp_name`] without allocating, for the one-line path.
fn icmp_name_into(out: &mut String, t: u8, code: u8) -> std::fmt::Result {
    match t {
        0 => out.push_str("echo reply"),
        8 => out.push_str("echo request"),
        _ => out.push_str(&icmp_name(t, code)),
    }
    Ok(())
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
fn summary(out: &mut String, s: &Stack) -> std::fmt::Result {
    let addrs = net_addrs(s);
    let src = addrs.map(|a| a.0);
    let dst = addrs.map(|a| a.1);
    // Writes an optional address (always present when a transport is).
    struct A<'a>(Option<Addr<'a>>);
    impl std::fmt::Display for A<'_> {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            match self.0 {
                Some(a) => a.fmt(f),
                None => Ok(()),
            }
        }
    }
    let (src, dst) = (A(src), A(dst));
    match (&s.net, &s.transport, &s.app) {
        (
            Some(Net::Arp {
                op, sha, spa, tpa, ..
            }),
            _,
            _,
        ) => match op {
            1 => write!(out, "ARP who-has {tpa} tell {spa}")?,
            2 => {
                write!(out, "ARP reply {spa} is-at ")?;
                mac(out, sha);
            }
            n => write!(out, "ARP op {n} {spa} -> {tpa}")?,
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
            write!(
                out,
                "DHCP {what} {src}:{sport} -> {dst}:{dport} xid {xid:#010x} chaddr {chaddr}"
            )?;
            if !yiaddr.is_unspecified() {
                write!(out, " yiaddr {yiaddr}")?;
            }
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
            out.push_str("ICMP ");
            icmp_name_into(out, *icmp_type, *code)?;
            write!(out, " {src} -> {dst}")?;
            if let (Some(i), Some(q)) = (id, seq) {
                write!(out, " id {i} seq {q}")?;
            }
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
            write!(
                out,
                "ICMPv6 {} {src} -> {dst}",
                icmpv6_name(*icmp_type, *code)
            )?;
            if let (Some(i), Some(q)) = (id, seq) {
                write!(out, " id {i} seq {q}")?;
            }
            if let Some(t) = target {
                write!(out, " target {t}")?;
            }
            if let Some(m) = lladdr {
                out.push_str(" lladdr ");
                mac(out, m);
            }
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
            write!(out, "TCP {src}:{sport} -> {dst}:{dport} [")?;
            crate::decode::tcp_flags(*flags, out)?;
            write!(out, "] seq {seq} ack {ack} win {win}")?;
        }
        (_, Some(Transport::Udp { sport, dport, len }), _) => {
            write!(out, "UDP {src}:{sport} -> {dst}:{dport} len {len}")?;
        }
        (_, Some(Transport::Other { proto }), _) => write!(out, "IP proto {proto} {src} -> {dst}")?,
        (Some(Net::Ipv4 { .. }), None, _) => write!(out, "IPv4 {src} -> {dst}")?,
        (Some(Net::Ipv6 { .. }), None, _) => write!(out, "IPv6 {src} -> {dst}")?,
        (Some(Net::Other { ethertype }), _, _) => write!(out, "ethertype {ethertype:#06x}")?,
        (None, _, _) => {}
    }
    Ok(())
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
    if let Some(g) = &f.geneve {
        let p = "GENEVE:  ";
        let _ = writeln!(o, "{p}----- Geneve Header -----");
        let _ = writeln!(o, "{p}Version = {}", g.version);
        let _ = writeln!(o, "{p}Options length = {} bytes", g.opt_len);
        let _ = writeln!(
            o,
            "{p}O (control) = {}, C (critical options) = {}",
            u8::from(g.oam),
            u8::from(g.critical)
        );
        let _ = writeln!(o, "{p}Protocol type = {:#06x}", g.protocol);
        let _ = writeln!(o, "{p}VNI = {}", g.vni);
        for (i, op) in g.options.iter().enumerate() {
            let _ = writeln!(
                o,
                "{p}Option {} = class {:#06x} type {:#04x}{} length {} bytes",
                i + 1,
                op.class,
                op.kind,
                if op.kind & 0x80 != 0 {
                    " (critical)"
                } else {
                    ""
                },
                op.len
            );
        }
        if let Some(n) = &g.overlay {
            let _ = writeln!(o, "{p}Overlay = {n}");
        }
    }
    if let Some(g) = &f.nvgre {
        let p = "NVGRE:  ";
        let bit = |b: u8| u8::from(g.flags & b != 0);
        let _ = writeln!(o, "{p}----- GRE Header -----");
        let _ = writeln!(
            o,
            "{p}Flags = {:#04x} (C {}, K {}, S {}), Version = {}",
            g.flags,
            bit(0x80),
            bit(0x20),
            bit(0x10),
            g.version
        );
        let _ = writeln!(o, "{p}Protocol type = {:#06x}", g.protocol);
        if let (Some(k), Some(v), Some(fl)) = (g.key, g.vsid, g.flow_id) {
            let _ = writeln!(o, "{p}Key = {k:#010x} (VSID {v}, FlowID {fl})");
        }
        if let Some(n) = &g.overlay {
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
            let mut fl = String::new();
            let _ = crate::decode::tcp_flags(*flags, &mut fl);
            let _ = writeln!(o, "{p}Flags = {fl}");
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

/// One JSON object per frame; see [`crate::json`] for its keys.
pub fn json(f: &Frame, number: u64, ts: Option<f64>) -> String {
    crate::json::frame(f, number, ts)
}
