//! A decoded [`Frame`] → one flat JSON object, the shape scripts want:
//!
//! ```text
//! {"frame": 1, "ts": 1700000000.5, "len": 148,
//!  "outer": {"src_mac", "dst_mac", "vlan", "ethertype", "src_ip", "dst_ip", "proto", "sport", "dport"},
//!  "vxlan": {"flags", "vni", "reserved", "overlay"},
//!  "geneve": {"version", "opt_len", "oam", "critical", "protocol", "vni",
//!             "options": [{"class", "type", "len"}], "overlay"},   (in place of "vxlan")
//!  "nvgre": {"flags", "version", "protocol", "key", "vsid", "flow_id", "overlay"},  (the same)
//!  "inner": {… as outer, and "arp": {"op", "sender_mac", "sender_ip", "target_mac", "target_ip"},
//!            "icmp", "tcp", "dhcp" …},
//!  "error": "…"}
//! ```
//!
//! Keys whose layer is absent are left out (`vxlan` and `inner` on a frame
//! that is not in a tunnel). MACs are lowercase with colons, IPv6 addresses in
//! RFC 5952 form (Rust's `Ipv6Addr` display).

use crate::decode::{App, Frame, Geneve, Net, Nvgre, Stack, Transport};
use overlay_api::Mac;
use serde::Serialize;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

#[derive(Serialize)]
struct JFrame<'a> {
    frame: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    ts: Option<f64>,
    len: usize,
    outer: JStack<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    vxlan: Option<JVxlan<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    geneve: Option<&'a Geneve>,
    #[serde(skip_serializing_if = "Option::is_none")]
    nvgre: Option<&'a Nvgre>,
    #[serde(skip_serializing_if = "Option::is_none")]
    inner: Option<JStack<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a str>,
}

#[derive(Serialize)]
struct JVxlan<'a> {
    flags: u8,
    vni: u32,
    reserved: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    overlay: Option<&'a str>,
}

#[derive(Default, Serialize)]
struct JStack<'a> {
    len: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    src_mac: Option<Mac>,
    #[serde(skip_serializing_if = "Option::is_none")]
    dst_mac: Option<Mac>,
    #[serde(skip_serializing_if = "Option::is_none")]
    vlan: Option<u16>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    vlans: Vec<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ethertype: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    src_ip: Option<IpAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    dst_ip: Option<IpAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    proto: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ttl: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sport: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    dport: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    arp: Option<JArp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    icmp: Option<JIcmp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tcp: Option<JTcp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    dhcp: Option<JDhcp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a str>,
}

#[derive(Serialize)]
struct JArp {
    op: u16,
    sender_mac: Mac,
    sender_ip: Ipv4Addr,
    target_mac: Mac,
    target_ip: Ipv4Addr,
}

#[derive(Serialize)]
struct JIcmp {
    #[serde(rename = "type")]
    icmp_type: u8,
    code: u8,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    seq: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    target: Option<Ipv6Addr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    lladdr: Option<Mac>,
}

#[derive(Serialize)]
struct JTcp {
    seq: u32,
    ack: u32,
    flags: String,
    win: u16,
}

#[derive(Serialize)]
struct JDhcp {
    op: u8,
    xid: u32,
    chaddr: Mac,
    yiaddr: Ipv4Addr,
    #[serde(skip_serializing_if = "Option::is_none")]
    msg_type: Option<u8>,
}

fn stack(s: &Stack) -> JStack<'_> {
    let mut j = JStack {
        len: s.len,
        error: s.note.as_deref(),
        ..JStack::default()
    };
    if let Some(l) = &s.link {
        j.src_mac = l.src;
        j.dst_mac = l.dst;
        j.vlan = l.vlans.first().copied();
        if l.vlans.len() > 1 {
            j.vlans = l.vlans.clone();
        }
        j.ethertype = Some(l.ethertype);
    }
    match &s.net {
        Some(Net::Arp {
            op,
            sha,
            spa,
            tha,
            tpa,
        }) => {
            j.arp = Some(JArp {
                op: *op,
                sender_mac: *sha,
                sender_ip: *spa,
                target_mac: *tha,
                target_ip: *tpa,
            })
        }
        Some(Net::Ipv4 {
            src,
            dst,
            proto,
            ttl,
            ..
        }) => {
            j.src_ip = Some(IpAddr::V4(*src));
            j.dst_ip = Some(IpAddr::V4(*dst));
            j.proto = Some(*proto);
            j.ttl = Some(*ttl);
        }
        Some(Net::Ipv6 {
            src,
            dst,
            next,
            hop_limit,
            ..
        }) => {
            j.src_ip = Some(IpAddr::V6(*src));
            j.dst_ip = Some(IpAddr::V6(*dst));
            j.proto = Some(*next);
            j.ttl = Some(*hop_limit);
        }
        Some(Net::Other { .. }) | None => {}
    }
    match &s.transport {
        Some(Transport::Udp { sport, dport, .. }) => {
            j.sport = Some(*sport);
            j.dport = Some(*dport);
        }
        Some(Transport::Tcp {
            sport,
            dport,
            seq,
            ack,
            flags,
            win,
        }) => {
            j.sport = Some(*sport);
            j.dport = Some(*dport);
            let mut f = String::new();
            let _ = crate::decode::tcp_flags(*flags, &mut f);
            j.tcp = Some(JTcp {
                seq: *seq,
                ack: *ack,
                flags: f,
                win: *win,
            });
        }
        Some(Transport::Icmp {
            icmp_type,
            code,
            id,
            seq,
        }) => {
            j.icmp = Some(JIcmp {
                icmp_type: *icmp_type,
                code: *code,
                id: *id,
                seq: *seq,
                target: None,
                lladdr: None,
            })
        }
        Some(Transport::Icmpv6 {
            icmp_type,
            code,
            id,
            seq,
            target,
            lladdr,
        }) => {
            j.icmp = Some(JIcmp {
                icmp_type: *icmp_type,
                code: *code,
                id: *id,
                seq: *seq,
                target: *target,
                lladdr: *lladdr,
            })
        }
        Some(Transport::Other { proto }) => j.proto = Some(*proto),
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
        j.dhcp = Some(JDhcp {
            op: *op,
            xid: *xid,
            chaddr: *chaddr,
            yiaddr: *yiaddr,
            msg_type: *msg_type,
        });
    }
    j
}

/// Frame number `number` (1-based, in the source) captured at `ts`
/// (seconds since the epoch) as one JSON object.
pub fn frame(f: &Frame, number: u64, ts: Option<f64>) -> String {
    let j = JFrame {
        frame: number,
        ts,
        len: f.len,
        outer: stack(&f.outer),
        vxlan: f.vxlan.as_ref().map(|v| JVxlan {
            flags: v.flags,
            vni: v.vni,
            reserved: v.reserved,
            overlay: v.overlay.as_deref(),
        }),
        geneve: f.geneve.as_ref(),
        nvgre: f.nvgre.as_ref(),
        inner: f.inner.as_ref().map(stack),
        error: f.error(),
    };
    serde_json::to_string(&j).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
}
