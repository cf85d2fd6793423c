//! Writes a deterministic VXLAN capture for the benchmark
//! (`make bench-ovsnoop`): `gen_capture FILE [FRAMES]` (default 1,000,000).
//!
//! Every frame is VXLAN over IPv4/UDP 4789 between two of eight UL3 hosts,
//! VNI 4242 or 4343, with an inner frame that cycles through what an
//! overlay carries: ICMP echo (request and reply), TCP, UDP, ARP and
//! ICMPv6 echo, as a real lab capture would. Same arguments, same bytes.

use ovsnoop::decode::LinkType;
use ovsnoop::read::Record;
use ovsnoop::write::PcapWriter;
use std::path::PathBuf;

fn eth(dst: [u8; 6], src: [u8; 6], et: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(14 + payload.len());
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    f.extend_from_slice(&et.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

fn ipv4(src: [u8; 4], dst: [u8; 4], proto: u8, id: u16, payload: &[u8]) -> Vec<u8> {
    let mut h = vec![0x45, 0];
    h.extend_from_slice(&((20 + payload.len()) as u16).to_be_bytes());
    h.extend_from_slice(&id.to_be_bytes());
    h.extend_from_slice(&[0x40, 0, 64, proto, 0, 0]);
    h.extend_from_slice(&src);
    h.extend_from_slice(&dst);
    let sum = checksum(&h);
    h[10..12].copy_from_slice(&sum.to_be_bytes());
    h.extend_from_slice(payload);
    h
}

fn checksum(b: &[u8]) -> u16 {
    let mut s: u32 = b
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    !(s as u16)
}

fn udp(sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut u = Vec::with_capacity(8 + payload.len());
    u.extend_from_slice(&sport.to_be_bytes());
    u.extend_from_slice(&dport.to_be_bytes());
    u.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    u.extend_from_slice(&[0, 0]);
    u.extend_from_slice(payload);
    u
}

fn inner(i: u64) -> Vec<u8> {
    let h = (i % 8) as u8 + 1;
    let peer = h % 8 + 1;
    let m = |n: u8| [0x02, 0x42, 0, 0, 0, n];
    let ip = |n: u8| [192, 168, 42, n];
    let seq = (i / 8) as u16;
    match i % 20 {
        0..=9 => {
            // ICMP echo request / reply with 56 bytes of data, like ping.
            let t = if i.is_multiple_of(2) { 8 } else { 0 };
            let mut icmp = vec![t, 0, 0, 0];
            icmp.extend_from_slice(&(1000 + u16::from(h)).to_be_bytes());
            icmp.extend_from_slice(&seq.to_be_bytes());
            icmp.extend((0..56).map(|x| x as u8));
            let c = checksum(&icmp);
            icmp[2..4].copy_from_slice(&c.to_be_bytes());
            eth(m(peer), m(h), 0x0800, &ipv4(ip(h), ip(peer), 1, seq, &icmp))
        }
        10..=14 => {
            let mut tcp = Vec::new();
            tcp.extend_from_slice(&(40000 + u16::from(h)).to_be_bytes());
            tcp.extend_from_slice(&5201u16.to_be_bytes());
            tcp.extend_from_slice(&(u32::from(seq) * 1448).to_be_bytes());
            tcp.extend_from_slice(&7u32.to_be_bytes());
            tcp.extend_from_slice(&[0x50, 0x18, 0x01, 0xf5, 0, 0, 0, 0]);
            tcp.extend((0..64).map(|x| x as u8));
            eth(m(peer), m(h), 0x0800, &ipv4(ip(h), ip(peer), 6, seq, &tcp))
        }
        15..=17 => eth(
            m(peer),
            m(h),
            0x0800,
            &ipv4(ip(h), ip(peer), 17, seq, &udp(5353, 53, &[0x55; 40])),
        ),
        18 => {
            let mut arp = vec![0, 1, 8, 0, 6, 4, 0, 1];
            arp.extend_from_slice(&m(h));
            arp.extend_from_slice(&ip(h));
            arp.extend_from_slice(&[0; 6]);
            arp.extend_from_slice(&ip(peer));
            arp.resize(46, 0);
            eth([0xff; 6], m(h), 0x0806, &arp)
        }
        _ => {
            let mut v6 = vec![0x60, 0, 0, 0];
            let mut icmp = vec![128, 0, 0, 0];
            icmp.extend_from_slice(&(2000 + u16::from(h)).to_be_bytes());
            icmp.extend_from_slice(&seq.to_be_bytes());
            icmp.extend((0..56).map(|x| x as u8));
            v6.extend_from_slice(&(icmp.len() as u16).to_be_bytes());
            v6.extend_from_slice(&[58, 64]);
            let a = |n: u8| [0xfd, 0x42, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, n];
            v6.extend_from_slice(&a(h));
            v6.extend_from_slice(&a(peer));
            v6.extend_from_slice(&icmp);
            eth(m(peer), m(h), 0x86dd, &v6)
        }
    }
}

fn frame(i: u64) -> Vec<u8> {
    let inner = inner(i);
    let h = (i % 8) as u8 + 1;
    let peer = h % 8 + 1;
    let vni: u32 = if i.is_multiple_of(3) { 4343 } else { 4242 };
    let mut vx = vec![0x08, 0, 0, 0];
    vx.extend_from_slice(&vni.to_be_bytes()[1..]);
    vx.push(0);
    vx.extend_from_slice(&inner);
    let sport = 50000 + (i % 997) as u16;
    eth(
        [0x02, 0, 0x0a, 0x4d, 0, peer],
        [0x02, 0, 0x0a, 0x4d, 0, h],
        0x0800,
        &ipv4(
            [10, 77, 0, h],
            [10, 77, 0, peer],
            17,
            i as u16,
            &udp(sport, 4789, &vx),
        ),
    )
}

fn main() {
    let mut args = std::env::args_os().skip(1);
    let Some(out) = args.next().map(PathBuf::from) else {
        eprintln!("usage: gen_capture FILE [FRAMES]");
        std::process::exit(2);
    };
    let n: u64 = args
        .next()
        .and_then(|a| a.to_str()?.parse().ok())
        .unwrap_or(1_000_000);
    let mut w = PcapWriter::create(&out).unwrap_or_else(|e| {
        eprintln!("gen_capture: {e}");
        std::process::exit(1);
    });
    for i in 0..n {
        let f = frame(i);
        let r = Record {
            link: LinkType::Ethernet,
            data: &f,
            len: f.len(),
            // 1.7e9 s plus 20 µs per frame.
            ts_ns: 1_700_000_000_000_000_000 + i * 20_000,
        };
        if let Err(e) = w.write(i + 1, &r) {
            eprintln!("gen_capture: {e}");
            std::process::exit(1);
        }
    }
    if let Err(e) = w.finish() {
        eprintln!("gen_capture: {e}");
        std::process::exit(1);
    }
}
