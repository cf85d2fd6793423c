//! One measured run: a TCP stream of known bytes from host a's "guest" to
//! a repaired TCP socket behind host b's kernel VXLAN device, sent one of
//! the two ways, with what it cost.
//!
//! The stream is a sequence of super-frames of [`SEGS`] × [`MSS`] bytes —
//! the guest's TSO frames — all with the same payload, so no byte is copied
//! in user space to make one: the sender only patches the sequence number
//! and IP identifications of one [`SuperFrame`]. Then:
//!
//! - **socket** (today's overlayd): `Tso::write` (overlayd's own code) cuts
//!   the frame into 48 segments, each behind its VXLAN header in one send
//!   buffer with its TCP and IPv4 checksums, and `sendmsg` with
//!   `UDP_SEGMENT` sends them, at most 65,000 bytes a call (45 + 3);
//! - **tunnel**: one `writev` of the 24-byte tunnel header, the outer
//!   headers and the frame to the underlay TAP device.
//!
//! Two peers on b receive ([`Peer`]): the kernel's VXLAN device with a
//! repaired TCP socket behind it — the sender keeps to the window b's TCP
//! advertises (its ACKs come back to a's UDP socket, VXLAN-encapsulated by
//! b's kernel), and goes back to the first unacknowledged byte when nothing
//! has been acknowledged for [`STALL`] (go-back-N: a dropped frame costs a
//! retransmission, counted) — or a UDP socket with `UDP_GRO`, as a
//! receiving overlayd has, which the sender keeps at most 4 MiB ahead of.
//! Either reader on b checks every payload byte against the pattern.

use crate::net::{
    recv_gro, send_gso, sockaddr, Underlay, A_TAP_MAC, A_UL, A_VL, A_VL_MAC, B_UL, B_VL, B_VL_MAC,
    UDP_PEER_PORT, VNI, VXLAN_PORT,
};
use overlay_tests::bench::{clock_ticks_per_sec, MachineTicks};
use overlay_tests::tcp_repair::{Repair, RepairedTcp};
use overlay_tests::tunnel_gso::{vxlan_tcp_ack, Flow, SuperFrame, INNER_HDR_LEN};
use overlay_wire::offload::Tso;
use std::net::SocketAddrV4;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// TCP payload per segment: the overlay MTU (1400) less IPv4 and TCP headers.
pub const MSS: usize = 1360;
/// Segments per super-frame: 65,280 bytes of payload, the most whole MSS
/// that keep the outer IPv4 packet within 65,535 bytes.
pub const SEGS: usize = 48;
/// Payload bytes per super-frame.
pub const SUPER: usize = MSS * SEGS;
/// One VXLAN datagram (UDP payload) of the socket way.
pub const DGRAM: usize = 8 + INNER_HDR_LEN + MSS;
/// Most bytes per `UDP_SEGMENT` send, as overlayd (`txq.rs`).
const MAX_GSO_BYTES: usize = 65_000;
/// The guest's first sequence number, and b's.
const ISN: u32 = 1;
const B_ISN: u32 = 1000;
/// Window scaling both ways (b's windows are read as `window << WSCALE`).
const WSCALE: u8 = 7;
/// b's starting receive window (it opens as fast as b reads anyway) and
/// receive buffer (8 MiB, as overlayd's sockets; the kernel doubles it).
const RCV_WND: u32 = 4 << 20;
const RCVBUF: libc::c_int = 8 << 20;
/// The guest's TCP port.
const A_PORT: u16 = 40000;
/// Nothing acknowledged for this long: send again from the first
/// unacknowledged byte.
const STALL: Duration = Duration::from_millis(100);
/// A run that takes longer than this has failed.
const DEADLINE: Duration = Duration::from_secs(120);

/// The two ways of sending.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Way {
    /// Cut in user space, `sendmsg` with `UDP_SEGMENT` (overlayd today).
    Socket,
    /// Whole, to the underlay TAP device with the tunnel header.
    Tunnel,
}

impl Way {
    /// Both, in the order of even rounds.
    pub const BOTH: [Way; 2] = [Way::Socket, Way::Tunnel];

    /// The name in tables and JSON.
    pub fn name(self) -> &'static str {
        match self {
            Way::Socket => "socket",
            Way::Tunnel => "tunnel",
        }
    }
}

/// The payload every super-frame carries (the stream repeats it).
pub fn pattern() -> Vec<u8> {
    (0..SUPER as u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect()
}

/// The guest's flow to b's TCP port `port`, on the underlay toward b's MAC.
pub fn flow(u: &Underlay, port: u16) -> Flow {
    Flow {
        outer_src: (A_TAP_MAC, A_UL, VXLAN_PORT),
        outer_dst: (u.b_mac, B_UL, VXLAN_PORT),
        vni: VNI,
        inner_src: (A_VL_MAC, A_VL, A_PORT),
        inner_dst: (B_VL_MAC, B_VL, port),
        mss: MSS as u16,
    }
}

/// Emits super-frames of one flow either way.
pub struct Sender<'a> {
    u: &'a Underlay,
    /// The frame (public for the probes, which change its destination).
    pub sf: SuperFrame,
    buf: Vec<u8>,
    dest: libc::sockaddr_in,
    ip_id: u16,
    /// System calls made to send.
    pub syscalls: u64,
}

impl<'a> Sender<'a> {
    /// A sender of `flow`'s frames, each carrying `payload`.
    pub fn new(u: &'a Underlay, flow: Flow, payload: &[u8]) -> Sender<'a> {
        let window = u16::MAX;
        Sender {
            u,
            sf: SuperFrame::new(flow, payload, B_ISN, window),
            buf: vec![0u8; SEGS * DGRAM],
            dest: sockaddr(SocketAddrV4::new(flow.outer_dst.1, flow.outer_dst.2)),
            ip_id: 0,
            syscalls: 0,
        }
    }

    /// Sends the super-frame whose first byte is stream offset `off`.
    pub fn emit(&mut self, way: Way, off: u64) -> std::io::Result<()> {
        self.sf.set_seq(ISN.wrapping_add(off as u32), self.ip_id);
        self.ip_id = self.ip_id.wrapping_add(SEGS as u16);
        match way {
            Way::Tunnel => {
                self.syscalls += 1;
                self.u.tap.write(&self.sf.tunnel_iov()).map(|_| ())
            }
            Way::Socket => {
                let tso = Tso::new(&self.sf.inner, &self.sf.guest_hdr())
                    .expect("the super-frame is a TSO frame");
                let vx = self.sf.vxlan_header();
                for i in 0..tso.count() {
                    let d = &mut self.buf[i * DGRAM..(i + 1) * DGRAM];
                    d[..8].copy_from_slice(&vx);
                    tso.write(&self.sf.inner, i, &mut d[8..]);
                }
                let per = MAX_GSO_BYTES / DGRAM;
                for run in self.buf.chunks(per * DGRAM) {
                    self.syscalls += 1;
                    send_gso(&self.u.udp, &self.dest, run, DGRAM as u16)?;
                }
                Ok(())
            }
        }
    }
}

/// CPU seconds (user, system) of the calling thread so far.
fn thread_cpu() -> (f64, f64) {
    // SAFETY: rusage is plain data; getrusage fills it.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: a valid `who` and a pointer to a live rusage.
    unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut ru) };
    let s = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    (s(ru.ru_utime), s(ru.ru_stime))
}

/// Who receives on host b.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Peer {
    /// b's kernel VXLAN device, and a repaired TCP socket behind it whose
    /// reader checks every byte; the sender keeps to its window.
    Kernel,
    /// b's UDP socket with `UDP_GRO` (what a receiving overlayd reads),
    /// whose reader checks every inner payload byte by its sequence
    /// number; the sender keeps at most [`UDP_IN_FLIGHT`] bytes ahead of it.
    Udp,
}

impl Peer {
    /// Both, in the order of the table.
    pub const BOTH: [Peer; 2] = [Peer::Kernel, Peer::Udp];

    /// The name in tables and JSON.
    pub fn name(self) -> &'static str {
        match self {
            Peer::Kernel => "kernel VXLAN + TCP",
            Peer::Udp => "UDP socket (UDP_GRO)",
        }
    }
}

/// Bytes the sender may be ahead of b's UDP reader.
const UDP_IN_FLIGHT: u64 = 4 << 20;

/// What one run did and cost.
#[derive(Clone, Debug, Default)]
pub struct Run {
    /// Payload bytes b's reader got (and checked).
    pub bytes: u64,
    /// Wall-clock seconds from the first send to the last byte read.
    pub secs: f64,
    /// The sending thread's CPU seconds in user space.
    pub sender_user: f64,
    /// … and in the kernel: a's send path, and b's receive path as far as
    /// the veth runs it in softirq on the sending thread.
    pub sender_sys: f64,
    /// The reading thread's CPU seconds (b's receive copy, the check).
    pub reader: f64,
    /// The machine's busy CPU seconds (all CPUs, everything that ran).
    pub busy: f64,
    /// … of which irq + softirq.
    pub softirq: f64,
    /// Busy CPUs before the round, with nothing of ours running (set by
    /// the caller).
    pub background: f64,
    /// Packets b's VXLAN device received (one per datagram or per whole
    /// super-frame, as they arrived).
    pub vx_packets: u64,
    /// Datagrams (or GRO batches) b's UDP reader got.
    pub udp_reads: u64,
    /// b's TCP checksum errors during the run.
    pub csum_errors: u64,
    /// Super-frames sent (retransmissions included).
    pub frames: u64,
    /// Times the sender went back to the first unacknowledged byte.
    pub retransmits: u64,
    /// System calls made to send.
    pub syscalls: u64,
    /// ACKs read back.
    pub acks: u64,
}

/// Runs one stream of `total` bytes (a multiple of [`SUPER`]) to `peer`,
/// on b's TCP port `port` (a new repaired socket for the kernel peer).
/// Err: what went wrong.
pub fn run(
    u: &Underlay,
    peer: Peer,
    way: Way,
    port: u16,
    total: u64,
    pat: &[u8],
) -> Result<Run, String> {
    // Whatever an earlier run left (late ACKs, datagrams) goes; a repaired
    // socket then sends its window probe, which opens the sender's window.
    let mut buf = vec![0u8; 1 << 17];
    while recv_gro(&u.udp, &mut buf).0 > 0 {}
    while recv_gro(&u.b_udp, &mut buf).0 > 0 {}
    let rx = match peer {
        Peer::Kernel => {
            let repair = Repair {
                local: SocketAddrV4::new(B_VL, port),
                peer: SocketAddrV4::new(A_VL, A_PORT),
                rcv_nxt: ISN,
                snd_nxt: B_ISN,
                mss: MSS as u16,
                snd_wscale: WSCALE,
                rcv_wscale: WSCALE,
                rcv_wnd: RCV_WND,
                rcvbuf: Some(RCVBUF),
            };
            let rx = u
                .lab
                .in_ns(u.b, || repair.establish())
                .map_err(|e| format!("TCP_REPAIR socket on b: {e}"))?;
            rx.set_read_timeout(5).map_err(|e| e.to_string())?;
            Some(rx)
        }
        Peer::Udp => None,
    };
    let delivered = AtomicU64::new(0);
    let (vx0, _) = crate::net::rx_counters(&u.lab, u.b, "vx0");
    let csum0 = crate::net::tcp_csum_errors(&u.lab, u.b);
    let m0 = MachineTicks::now();
    let t0 = Instant::now();
    let (sent, read) = std::thread::scope(|s| {
        let reader = s.spawn(|| match &rx {
            Some(rx) => read_stream(rx, total, pat),
            None => read_udp(u, total, pat, &delivered),
        });
        let sender = s.spawn(|| send_stream(u, peer, way, port, total, pat, &delivered));
        (sender.join(), reader.join())
    });
    let secs = t0.elapsed().as_secs_f64();
    let m = MachineTicks::now().since(m0);
    let (vx1, _) = crate::net::rx_counters(&u.lab, u.b, "vx0");
    let csum1 = crate::net::tcp_csum_errors(&u.lab, u.b);
    let mut r = sent.map_err(|_| "the sender panicked".to_string())??;
    let (bytes, reads, reader) = read.map_err(|_| "the reader panicked".to_string())??;
    let hz = clock_ticks_per_sec();
    r.bytes = bytes;
    r.udp_reads = reads;
    r.reader = reader;
    r.secs = secs;
    r.busy = m.busy as f64 / hz;
    r.softirq = m.softirq as f64 / hz;
    r.vx_packets = vx1.saturating_sub(vx0);
    r.csum_errors = csum1.saturating_sub(csum0);
    Ok(r)
}

/// The sending thread: frames within the peer's window (b's TCP window,
/// read from its ACKs; or [`UDP_IN_FLIGHT`] ahead of b's UDP reader).
fn send_stream(
    u: &Underlay,
    peer: Peer,
    way: Way,
    port: u16,
    total: u64,
    pat: &[u8],
    delivered: &AtomicU64,
) -> Result<Run, String> {
    let mut f = flow(u, port);
    if peer == Peer::Udp {
        f.outer_dst.2 = UDP_PEER_PORT;
    }
    let mut tx = Sender::new(u, f, pat);
    let mut buf = vec![0u8; 2048];
    let (u0, s0) = thread_cpu();
    let t0 = Instant::now();
    let (mut una, mut nxt, mut high, mut wnd) = (0u64, 0u64, 0u64, 0u64);
    let (mut frames, mut retransmits, mut acks) = (0u64, 0u64, 0u64);
    let mut progress = Instant::now();
    let mut first_window = true;
    if peer == Peer::Udp {
        wnd = UDP_IN_FLIGHT;
    }
    while una < total {
        if nxt < total && nxt + SUPER as u64 <= una + wnd {
            tx.emit(way, nxt)
                .map_err(|e| format!("{} send failed: {e}", way.name()))?;
            frames += 1;
            nxt += SUPER as u64;
            high = high.max(nxt);
            continue;
        }
        if t0.elapsed() > DEADLINE {
            return Err(format!(
                "{}: {una} of {total} bytes delivered after {} s (window {wnd})",
                way.name(),
                DEADLINE.as_secs()
            ));
        }
        if peer == Peer::Udp {
            // Sleep, not spin: the wait must not count as the sender's CPU.
            std::thread::sleep(Duration::from_micros(50));
            let d = delivered.load(Ordering::Acquire);
            if d > una {
                una = d;
                progress = Instant::now();
            } else if progress.elapsed() > Duration::from_secs(3) {
                return Err(format!(
                    "{}: b's UDP reader stuck at {una} of {total} bytes (datagrams lost?)",
                    way.name()
                ));
            }
            continue;
        }
        // Blocked by the window (or done sending): read what b said.
        let mut got = false;
        loop {
            let (n, _) = recv_gro(&u.udp, &mut buf);
            if n == 0 {
                break;
            }
            let Some(a) = vxlan_tcp_ack(&buf[..n]) else {
                continue;
            };
            if a.ports != (port, A_PORT) {
                continue;
            }
            acks += 1;
            got = true;
            let off = u64::from(a.ack.wrapping_sub(ISN));
            // b's window probe acknowledges ISN - 1 + 1 = ISN: offset 0.
            if off <= high && (off > una || first_window) {
                if off > una {
                    progress = Instant::now();
                }
                una = off;
                // Frames start at multiples of SUPER (their payload is
                // the pattern's start): resume at the one holding `una`.
                nxt = nxt.max(una - una % SUPER as u64);
            }
            first_window = false;
            wnd = u64::from(a.window) << WSCALE;
        }
        if got {
            continue;
        }
        let mut p = libc::pollfd {
            fd: u.udp.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one live pollfd.
        unsafe { libc::poll(&mut p, 1, 10) };
        if progress.elapsed() > STALL && nxt > una {
            nxt = una - una % SUPER as u64;
            retransmits += 1;
            progress = Instant::now();
        }
    }
    let (u1, s1) = thread_cpu();
    Ok(Run {
        sender_user: u1 - u0,
        sender_sys: s1 - s0,
        frames,
        retransmits,
        syscalls: tx.syscalls,
        acks,
        ..Run::default()
    })
}

/// Checks `data` against the stream's bytes from `off` on.
fn check(data: &[u8], off: u64, pat: &[u8]) -> Result<(), String> {
    let mut at = 0;
    while at < data.len() {
        let pos = ((off + at as u64) % SUPER as u64) as usize;
        let m = (SUPER - pos).min(data.len() - at);
        if data[at..at + m] != pat[pos..pos + m] {
            let i = (0..m).find(|&i| data[at + i] != pat[pos + i]).unwrap_or(0);
            let show = |b: &[u8]| {
                b.iter()
                    .take(16)
                    .map(|x| format!("{x:02x}"))
                    .collect::<String>()
            };
            return Err(format!(
                "b read wrong bytes at stream offset {}: got {}, want {}",
                off + (at + i) as u64,
                show(&data[at + i..]),
                show(&pat[pos + i..])
            ));
        }
        at += m;
    }
    Ok(())
}

/// The reading thread of the kernel peer: `total` bytes from the repaired
/// socket, each checked; (bytes, reads, CPU seconds).
fn read_stream(rx: &RepairedTcp, total: u64, pat: &[u8]) -> Result<(u64, u64, f64), String> {
    let (u0, s0) = thread_cpu();
    let mut buf = vec![0u8; 1 << 20];
    let (mut got, mut reads) = (0u64, 0u64);
    while got < total {
        let n = rx
            .read(&mut buf)
            .map_err(|e| format!("b's TCP socket, {got} of {total} bytes read: {e}"))?;
        if n == 0 {
            return Err(format!("b's TCP stream ended at {got} bytes"));
        }
        reads += 1;
        check(&buf[..n], got, pat)?;
        got += n as u64;
    }
    let (u1, s1) = thread_cpu();
    Ok((got, reads, (u1 - u0) + (s1 - s0)))
}

/// The reading thread of the UDP peer: datagrams (GRO batches, or whole
/// super-frames) until `total` payload bytes came, each inner segment's
/// payload checked at the offset its sequence number gives; publishes the
/// count in `delivered`. (bytes, reads, CPU seconds).
fn read_udp(
    u: &Underlay,
    total: u64,
    pat: &[u8],
    delivered: &AtomicU64,
) -> Result<(u64, u64, f64), String> {
    const HDRS: usize = 8 + INNER_HDR_LEN;
    let (u0, s0) = thread_cpu();
    let mut buf = vec![0u8; 1 << 17];
    let (mut got, mut reads) = (0u64, 0u64);
    let mut idle = Instant::now();
    while got < total {
        let (n, seg) = recv_gro(&u.b_udp, &mut buf);
        if n == 0 {
            if idle.elapsed() > Duration::from_secs(2) {
                return Err(format!(
                    "b's UDP socket: {got} of {total} bytes, then nothing for 2 s"
                ));
            }
            let mut p = libc::pollfd {
                fd: u.b_udp.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one live pollfd.
            unsafe { libc::poll(&mut p, 1, 100) };
            continue;
        }
        idle = Instant::now();
        reads += 1;
        let seg = seg.map_or(n, |s| s as usize);
        for d in buf[..n].chunks(seg) {
            if d.len() <= HDRS {
                return Err(format!("b's UDP socket: a {}-byte datagram", d.len()));
            }
            let seq = u32::from_be_bytes(d[8 + 38..8 + 42].try_into().expect("4 bytes"));
            let off = u64::from(seq.wrapping_sub(ISN));
            check(&d[HDRS..], off, pat)?;
            got += (d.len() - HDRS) as u64;
        }
        delivered.store(got, Ordering::Release);
    }
    let (u1, s1) = thread_cpu();
    Ok((got, reads, (u1 - u0) + (s1 - s0)))
}
