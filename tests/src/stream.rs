//! TCP streams of known content through a lab, checked byte by byte on
//! arrival, and the kernel's own TCP counters of a host (checksum errors,
//! retransmissions, reordering), read from its namespace's `/proc/net`.

use crate::lab::{Host, Lab};
use overlay_api::{DropReason, OverlayStats};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

/// How much a stream carries.
#[derive(Clone, Copy, Debug)]
pub enum Amount {
    /// Exactly this many bytes.
    Bytes(usize),
    /// As many bytes as the path takes in this long (whole MiB).
    For(Duration),
}

/// The byte at position `i` of a stream seeded with `seed`.
pub fn pattern(seed: u64, i: u64) -> u8 {
    let mut x = (i / 8)
        .wrapping_add(seed)
        .wrapping_mul(0x9e37_79b9_7f4a_7c15);
    x ^= x >> 29;
    x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    (x >> ((i % 8) * 8)) as u8
}

/// Sends a stream from `client` to a listener on `server` at `addr` and
/// checks every byte on arrival; returns the bytes carried. Panics if a
/// byte differs, the stream arrives short, or the path stalls for 30 s.
pub fn stream(
    lab: &Lab,
    client: Host,
    server: Host,
    addr: SocketAddr,
    seed: u64,
    amount: Amount,
) -> u64 {
    let t0 = Instant::now();
    let listener = lab.in_ns(server, || TcpListener::bind(addr).expect("bind the server"));
    let reader = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().expect("accept");
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut buf = vec![0u8; 1 << 16];
        let mut at = 0u64;
        loop {
            let n = s.read(&mut buf).expect("read the stream");
            if n == 0 {
                break;
            }
            for (k, b) in buf[..n].iter().enumerate() {
                let i = at + k as u64;
                assert_eq!(*b, pattern(seed, i), "byte {i} of stream {seed} differs");
            }
            at += n as u64;
        }
        at
    });
    let mut s = lab.in_ns(client, || {
        TcpStream::connect_timeout(&addr, Duration::from_secs(10)).expect("connect")
    });
    s.set_write_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut chunk = vec![0u8; 1 << 20];
    let mut sent = 0usize;
    loop {
        let more = match amount {
            Amount::Bytes(n) => sent < n,
            Amount::For(d) => t0.elapsed() < d,
        };
        if !more {
            break;
        }
        for (k, b) in chunk.iter_mut().enumerate() {
            *b = pattern(seed, (sent + k) as u64);
        }
        let n = match amount {
            Amount::Bytes(n) => chunk.len().min(n - sent),
            Amount::For(_) => chunk.len(),
        };
        s.write_all(&chunk[..n])
            .unwrap_or_else(|e| panic!("stream {seed} to {addr} stalled after {sent} bytes: {e}"));
        sent += n;
    }
    drop(s);
    let got = reader.join().expect("the reader checked every byte");
    assert_eq!(got, sent as u64, "stream {seed} arrived short");
    eprintln!(
        "stream {seed}: {} MiB to {addr} in {:.2?}",
        sent >> 20,
        t0.elapsed()
    );
    got
}

/// One counter of host `h`'s kernel from a `/proc/net` table (`snmp` or
/// `netstat`): `group` is the line prefix (`Tcp`, `TcpExt`), `name` the column.
pub fn kernel_counter(lab: &Lab, h: Host, table: &str, group: &str, name: &str) -> u64 {
    let out = lab.exec(h, "cat", [format!("/proc/net/{table}")]);
    let text = String::from_utf8_lossy(&out.stdout);
    let prefix = format!("{group}:");
    let lines: Vec<&str> = text.lines().filter(|l| l.starts_with(&prefix)).collect();
    assert_eq!(
        lines.len(),
        2,
        "no {group} lines in /proc/net/{table}:\n{text}"
    );
    let names: Vec<&str> = lines[0].split_whitespace().collect();
    let values: Vec<&str> = lines[1].split_whitespace().collect();
    let at = names
        .iter()
        .position(|n| *n == name)
        .unwrap_or_else(|| panic!("no {name} in /proc/net/{table}"));
    values[at].parse().expect("a number")
}

/// TCP checksum errors the kernel of host `h` counted.
pub fn csum_errors(lab: &Lab, h: Host) -> u64 {
    kernel_counter(lab, h, "snmp", "Tcp", "InCsumErrors")
}

/// The reordering host `h`'s TCP detected (all `TcpExt` `*Reorder`
/// counters) and the segments it retransmitted, as a sender sees them.
pub fn tcp_disorder(lab: &Lab, h: Host) -> (u64, u64) {
    let reorder = [
        "TCPTSReorder",
        "TCPSACKReorder",
        "TCPRenoReorder",
        "TCPFACKReorder",
    ]
    .iter()
    .filter(|n| {
        let out = lab.exec(h, "cat", ["/proc/net/netstat"]);
        String::from_utf8_lossy(&out.stdout).contains(*n)
    })
    .map(|n| kernel_counter(lab, h, "netstat", "TcpExt", n))
    .sum();
    (
        reorder,
        kernel_counter(lab, h, "snmp", "Tcp", "RetransSegs"),
    )
}

/// The drops a stream's frames may meet inside overlayd: none of them may
/// be counted while verified streams run (the hosts' own multicast, such
/// as MLD reports, is dropped as ever under other reasons).
pub const DATA_DROPS: [DropReason; 5] = [
    DropReason::SendError,
    DropReason::TapWriteError,
    DropReason::TooBig,
    DropReason::BadOffload,
    DropReason::QueueOverflow,
];

/// Asserts that overlay `o` counted none of [`DATA_DROPS`], nor any of
/// `also`.
pub fn assert_no_data_drops(o: &OverlayStats, also: &[DropReason]) {
    for r in DATA_DROPS.iter().chain(also) {
        assert!(
            !o.drops.contains_key(r.as_str()),
            "{}: {r} drops during the streams: {:?}",
            o.name,
            o.drops
        );
    }
}

/// Four verified streams of `amount` across pair `p`: host 1 to 2 and
/// back over IPv4 (port 5001), then the same over IPv6 (port 5002).
pub fn both_ways_v4_v6(lab: &Lab, p: &crate::Pair, amount: Amount) {
    let v4 = |i: u8| SocketAddr::new(p.ip4(i).parse().expect("an IPv4 address"), 5001);
    let v6 = |i: u8| SocketAddr::new(p.ip6(i).parse().expect("an IPv6 address"), 5002);
    let (a, b) = (p.a, p.b);
    for (seed, (from, to, addr)) in [(a, b, v4(2)), (b, a, v4(1)), (a, b, v6(2)), (b, a, v6(1))]
        .into_iter()
        .enumerate()
    {
        stream(lab, from, to, addr, seed as u64 + 1, amount);
    }
}
