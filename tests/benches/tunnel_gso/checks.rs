//! What the receiving side gets, checked before the measured rounds: a
//! super-frame sent each way reaches (a) plain UDP sockets on host b, with
//! and without `UDP_GRO`, and (c) a TAP device bridged on b, read with and
//! without tunnel GSO negotiated. (b), b's kernel VXLAN device, is read
//! from its counters during the rounds.

use crate::flow::{flow, pattern, Sender, Way, DGRAM, SEGS};
use crate::net::{mac_str, recv_gro, udp_socket, Underlay, B_UL};
use overlay_tests::tunnel_gso::{
    TunnelVnetHdr, UnderlayTap, TUNNEL_VNET_HDR_LEN, TUN_F_CSUM, TUN_F_TSO4, TUN_F_TSO6,
    TUN_F_UDP_TUNNEL_GSO,
};
use std::collections::BTreeMap;
use std::net::SocketAddrV4;
use std::time::Duration;

/// A MAC behind b's TAP device: unknown to b's bridge, so flooded to it.
const FAR_MAC: [u8; 6] = [2, 0, 0, 0, 0xcc, 3];

/// Lengths seen, as `N × LEN` runs, in order of first sight.
fn summary(items: &[String]) -> String {
    let mut order: Vec<&String> = Vec::new();
    let mut count: BTreeMap<&String, usize> = BTreeMap::new();
    for i in items {
        if !count.contains_key(i) {
            order.push(i);
        }
        *count.entry(i).or_default() += 1;
    }
    if order.is_empty() {
        return "nothing".to_string();
    }
    order
        .iter()
        .map(|i| format!("{} × {i}", count[i]))
        .collect::<Vec<_>>()
        .join(", ")
}

/// (a): plain UDP sockets on b. Lines to print.
pub fn udp_receivers(u: &Underlay) -> Vec<String> {
    let pat = pattern();
    let mut lines = Vec::new();
    for (port, gro) in [(4798u16, false), (4799u16, true)] {
        let sock = u
            .lab
            .in_ns(u.b, || udp_socket(SocketAddrV4::new(B_UL, port), gro))
            .expect("a UDP socket on b");
        for way in Way::BOTH {
            let mut f = flow(u, 9);
            f.outer_dst.2 = port;
            let mut tx = Sender::new(u, f, &pat);
            let sent = tx.emit(way, 0);
            std::thread::sleep(Duration::from_millis(200));
            let mut buf = vec![0u8; 1 << 17];
            let mut got = Vec::new();
            loop {
                let (n, seg) = recv_gro(&sock, &mut buf);
                if n == 0 {
                    break;
                }
                got.push(match seg {
                    Some(s) => format!("{n} bytes (UDP_GRO segment size {s})"),
                    None => format!("{n} bytes (no UDP_GRO size)"),
                });
            }
            lines.push(format!(
                "(a) {:<6} → UDP socket {}: {}{}",
                way.name(),
                if gro {
                    "with UDP_GRO   "
                } else {
                    "without UDP_GRO"
                },
                summary(&got),
                match sent {
                    Ok(()) => String::new(),
                    Err(e) => format!(" [send failed: {e}]"),
                }
            ));
        }
    }
    lines
}

/// (c): a TAP device bridged on b, with and without tunnel GSO
/// negotiated. Lines to print.
pub fn far_tap(u: &Underlay) -> Vec<String> {
    let pat = pattern();
    let tap = match u.lab.in_ns(u.b, || UnderlayTap::open("tapb")) {
        Ok(t) => t,
        Err(e) => return vec![format!("(c) cannot open a TAP device on b: {e}")],
    };
    tap.set_nonblocking();
    u.lab
        .ip(u.b, &["link", "set", "tapb", "master", "br0", "up"]);
    std::thread::sleep(Duration::from_millis(200));
    let mut buf = vec![0u8; 1 << 17];
    while tap.read(&mut buf).is_ok() {}
    let mut lines = Vec::new();
    let plain = TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6;
    for (label, flags) in [
        ("tunnel GSO negotiated", plain | TUN_F_UDP_TUNNEL_GSO),
        ("TSO only", plain),
    ] {
        if let Err(e) = tap.set_offload(flags) {
            lines.push(format!("(c) TUNSETOFFLOAD {flags:#x}: {e}"));
            continue;
        }
        // Only the tunnel way can address the TAP device: the socket way's
        // datagrams carry b's MAC, set by a's kernel, and go to b's stack.
        let mut tx = Sender::new(u, flow(u, 9), &pat);
        tx.sf.set_outer_dst_mac(FAR_MAC);
        let sent = tx.emit(Way::Tunnel, 0);
        std::thread::sleep(Duration::from_millis(200));
        let mut got = Vec::new();
        while let Ok(n) = tap.read(&mut buf) {
            if n < TUNNEL_VNET_HDR_LEN + 14
                || buf[TUNNEL_VNET_HDR_LEN..TUNNEL_VNET_HDR_LEN + 6] != FAR_MAC
            {
                continue;
            }
            let h = TunnelVnetHdr::parse(buf[..TUNNEL_VNET_HDR_LEN].try_into().expect("24 bytes"));
            got.push(format!(
                "{} bytes (gso_type {:#04x}, gso_size {}, outer_th {}, inner_nh {})",
                n - TUNNEL_VNET_HDR_LEN,
                h.gso_type,
                h.gso_size,
                h.outer_th_offset,
                h.inner_nh_offset
            ));
        }
        lines.push(format!(
            "(c) tunnel → TAP on b ({label}): {}{}",
            summary(&got),
            match sent {
                Ok(()) => String::new(),
                Err(e) => format!(" [send failed: {e}]"),
            }
        ));
    }
    lines.push(format!(
        "    (one super-frame is {} bytes of frame; its {SEGS} datagrams {} bytes each with \
         Ethernet, IPv4 and UDP; destination {})",
        crate::flow::SUPER + 14 + 20 + 8 + 8 + 14 + 20 + 20,
        DGRAM + 14 + 20 + 8,
        mac_str(FAR_MAC)
    ));
    lines
}
