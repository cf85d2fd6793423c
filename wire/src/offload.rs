//! Offloads between a TAP device and the underlay: the virtio-net header,
//! the Internet checksum, TCP segmentation of the super-frames the kernel
//! hands over (TSO), and coalescing of received TCP segments into one
//! super-frame (GRO).
//!
//! With `IFF_VNET_HDR` and `TUNSETOFFLOAD` a TAP device exchanges frames
//! prefixed by a [`VnetHdr`]. On read the kernel may leave the transport
//! checksum to us ([`F_NEEDS_CSUM`]: [`complete_checksum`]) and may hand
//! over one TCP frame of up to 64 KiB to be cut into `gso_size` pieces
//! ([`segment`]), which is how a guest's TCP reaches many gigabits without
//! a system call per 1.4 KB. On write we may give the kernel one large TCP
//! frame built from consecutive segments of a flow ([`Coalescer`]), with its
//! checksum left partial. Existing TUN libraries do this at layer 3; here it
//! is at layer 2, past an Ethernet header and at most one 802.1Q tag.
//!
//! The checksum is summed in native byte order, 32 bits at a time into a
//! 64-bit accumulator (RFC 1071 §2(B): byte order does not matter as long
//! as the result is stored the same way), and folded at the end.

/// Length of `struct virtio_net_hdr` (without `num_buffers`).
pub const VNET_HDR_LEN: usize = 10;
/// `VIRTIO_NET_HDR_F_NEEDS_CSUM`: the checksum at `csum_start + csum_offset`
/// holds the pseudo-header sum and must be completed over `csum_start..`.
pub const F_NEEDS_CSUM: u8 = 1;
/// `VIRTIO_NET_HDR_F_DATA_VALID`: the checksums were verified.
pub const F_DATA_VALID: u8 = 2;
/// `VIRTIO_NET_HDR_GSO_NONE`.
pub const GSO_NONE: u8 = 0;
/// `VIRTIO_NET_HDR_GSO_TCPV4`.
pub const GSO_TCPV4: u8 = 1;
/// `VIRTIO_NET_HDR_GSO_TCPV6`.
pub const GSO_TCPV6: u8 = 4;
/// `VIRTIO_NET_HDR_GSO_ECN` (a flag over the type).
pub const GSO_ECN: u8 = 0x80;

const TCP_FIN: u8 = 0x01;
const TCP_PSH: u8 = 0x08;
const TCP_ACK: u8 = 0x10;
const TCP_CWR: u8 = 0x80;
const PROTO_TCP: u8 = 6;
/// Largest IPv4 total length / IPv6 payload length.
const IP_MAX: usize = 65535;

/// The virtio-net header before every frame of a TAP device opened with
/// `IFF_VNET_HDR` (fields in the host's byte order).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VnetHdr {
    /// [`F_NEEDS_CSUM`], [`F_DATA_VALID`].
    pub flags: u8,
    /// [`GSO_NONE`], [`GSO_TCPV4`], [`GSO_TCPV6`], possibly with [`GSO_ECN`].
    pub gso_type: u8,
    /// Length of the headers before the payload (a hint).
    pub hdr_len: u16,
    /// Payload bytes per segment.
    pub gso_size: u16,
    /// Where checksumming starts.
    pub csum_start: u16,
    /// Where, from `csum_start`, the checksum is stored.
    pub csum_offset: u16,
}

impl VnetHdr {
    /// Reads a header.
    pub fn parse(b: &[u8; VNET_HDR_LEN]) -> VnetHdr {
        let u = |at: usize| u16::from_ne_bytes([b[at], b[at + 1]]);
        VnetHdr {
            flags: b[0],
            gso_type: b[1],
            hdr_len: u(2),
            gso_size: u(4),
            csum_start: u(6),
            csum_offset: u(8),
        }
    }

    /// Writes the header.
    pub fn emit(&self) -> [u8; VNET_HDR_LEN] {
        let mut b = [0u8; VNET_HDR_LEN];
        b[0] = self.flags;
        b[1] = self.gso_type;
        b[2..4].copy_from_slice(&self.hdr_len.to_ne_bytes());
        b[4..6].copy_from_slice(&self.gso_size.to_ne_bytes());
        b[6..8].copy_from_slice(&self.csum_start.to_ne_bytes());
        b[8..10].copy_from_slice(&self.csum_offset.to_ne_bytes());
        b
    }

    /// Whether the frame is a TCP super-frame to be segmented.
    pub fn is_tso(&self) -> bool {
        matches!(self.gso_type & !GSO_ECN, GSO_TCPV4 | GSO_TCPV6)
    }
}

/// Why an offloaded frame cannot be handled.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum OffloadError {
    /// The checksum position lies outside the frame.
    #[error("checksum offset {start}+{offset} outside a {len}-byte frame")]
    ChecksumOutside {
        /// `csum_start`.
        start: u16,
        /// `csum_offset`.
        offset: u16,
        /// Frame length.
        len: usize,
    },
    /// A GSO type other than TCP over IPv4/IPv6 (never enabled by us).
    #[error("unsupported GSO type {0:#x}")]
    GsoType(u8),
    /// A TSO frame whose headers are not Ethernet/IP/TCP.
    #[error("TSO frame is not plain Ethernet/IP/TCP")]
    NotTcp,
    /// A TSO frame with a zero segment size.
    #[error("TSO frame with gso_size 0")]
    ZeroSegment,
}

/// Adds `data` to a running ones'-complement sum (not folded). Slices added
/// one after another must each start at an even offset of the summed range.
#[inline]
pub fn sum(mut acc: u64, data: &[u8]) -> u64 {
    let mut words = data.chunks_exact(4);
    for w in &mut words {
        acc += u32::from_ne_bytes([w[0], w[1], w[2], w[3]]) as u64;
    }
    let rest = words.remainder();
    let mut tail = [0u8; 4];
    tail[..rest.len()].copy_from_slice(rest);
    acc + u32::from_ne_bytes(tail) as u64
}

/// Folds a sum to 16 bits (native byte order, not complemented).
#[inline]
pub fn fold(mut acc: u64) -> u16 {
    while acc >> 16 != 0 {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

/// The sum of the TCP/UDP pseudo-header of an IPv4 (`l3` 20+ bytes, v4) or
/// IPv6 packet whose transport part is `l4_len` bytes.
#[inline]
fn pseudo(ip: &[u8], v6: bool, proto: u8, l4_len: usize) -> u64 {
    if v6 {
        let acc = sum(0, &ip[8..40]);
        let acc = sum(acc, &(l4_len as u32).to_be_bytes());
        sum(acc, &[0, 0, 0, proto])
    } else {
        let acc = sum(0, &ip[12..20]);
        sum(acc, &[0, proto, (l4_len >> 8) as u8, l4_len as u8])
    }
}

/// Completes a checksum the kernel left partial ([`F_NEEDS_CSUM`]): sums
/// `frame[start..]` (the field holds the pseudo-header sum) and stores the
/// result at `start + offset`, as `skb_checksum_help` does.
pub fn complete_checksum(frame: &mut [u8], start: u16, offset: u16) -> Result<(), OffloadError> {
    let (s, at) = (start as usize, start as usize + offset as usize);
    if at + 2 > frame.len() || offset & 1 != 0 {
        return Err(OffloadError::ChecksumOutside {
            start,
            offset,
            len: frame.len(),
        });
    }
    let c = !fold(sum(0, &frame[s..]));
    let c = if c == 0 { 0xffff } else { c };
    frame[at..at + 2].copy_from_slice(&c.to_ne_bytes());
    Ok(())
}

/// `ETHERTYPE_QINQ`: an 802.1ad service tag, before an 802.1Q one.
const ETHERTYPE_QINQ: u16 = 0x88a8;
/// IPv6 extension headers a TCP segment may carry and that segmentation
/// copies unchanged: hop-by-hop options, routing, destination options.
const IPV6_HOP_BY_HOP: u8 = 0;
const IPV6_ROUTING: u8 = 43;
const IPV6_DEST_OPTS: u8 = 60;
/// Most extension headers walked before the frame is taken as something else.
const IPV6_EXT_MAX: usize = 8;

/// Where the IP header of an Ethernet frame (no tag, one 802.1Q tag, or an
/// 802.1ad/QinQ pair) is, and what it says: an unfragmented IPv4 packet or
/// an IPv6 packet, past its hop-by-hop, routing and destination-options
/// extension headers.
struct Ip {
    /// Offset of the IP header.
    l3: usize,
    /// Offset of the transport header.
    l4: usize,
    /// IPv6 (else IPv4).
    v6: bool,
    /// The transport protocol.
    proto: u8,
    /// Where the IP packet ends by its own length (may lie past the frame).
    end: usize,
    /// An IPv6 routing header with segments left: the transport
    /// pseudo-header holds the final destination, not the header's.
    routed: bool,
}

impl Ip {
    fn of(f: &[u8]) -> Option<Ip> {
        let be16 = |at: usize| Some(u16::from_be_bytes([*f.get(at)?, *f.get(at + 1)?]));
        let (mut et, mut l3) = (be16(12)?, 14);
        if et == ETHERTYPE_QINQ || et == crate::eth::ETHERTYPE_VLAN {
            et = be16(16)?;
            l3 = 18;
            if et == crate::eth::ETHERTYPE_VLAN {
                et = be16(20)?;
                l3 = 22;
            }
        }
        let version = *f.get(l3)? >> 4;
        match et {
            crate::eth::ETHERTYPE_IPV4 => {
                let ihl = (*f.get(l3)? & 0x0f) as usize * 4;
                if version != 4 || ihl < 20 || be16(l3 + 6)? & 0x3fff != 0 {
                    return None;
                }
                Some(Ip {
                    l3,
                    l4: l3 + ihl,
                    v6: false,
                    proto: *f.get(l3 + 9)?,
                    end: l3 + be16(l3 + 2)? as usize,
                    routed: false,
                })
            }
            crate::eth::ETHERTYPE_IPV6 if version == 6 => {
                let (mut next, mut at, mut routed) = (*f.get(l3 + 6)?, l3 + 40, false);
                for _ in 0..IPV6_EXT_MAX {
                    match next {
                        IPV6_HOP_BY_HOP | IPV6_DEST_OPTS => {}
                        IPV6_ROUTING => routed |= *f.get(at + 3)? != 0,
                        _ => break,
                    }
                    next = *f.get(at)?;
                    at += (*f.get(at + 1)? as usize + 1) * 8;
                }
                if matches!(next, IPV6_HOP_BY_HOP | IPV6_ROUTING | IPV6_DEST_OPTS) {
                    return None;
                }
                Some(Ip {
                    l3,
                    l4: at,
                    v6: true,
                    proto: next,
                    end: l3 + 40 + be16(l3 + 4)? as usize,
                    routed,
                })
            }
            _ => None,
        }
    }
}

/// The virtio-net header under which a received frame must be written to
/// a TAP device: `NEEDS_CSUM` when its TCP or UDP checksum is *partial*,
/// `None` when it needs nothing.
///
/// A Linux sender that offloads checksums leaves in the checksum field only
/// the sum of the pseudo-header, for the NIC to complete. Over a veth no
/// NIC does, so a kernel VXLAN peer in the next namespace sends exactly
/// that, and its own VXLAN receiver trusts such frames (`CHECKSUM_PARTIAL`).
/// Written plainly to a TAP device, they would be dropped as corrupt; under
/// `NEEDS_CSUM` the kernel treats them as its own VXLAN device would. A
/// checksum is taken as partial only when the field holds exactly the
/// pseudo-header sum *and* the full checksum fails, so a correct frame is
/// never marked, and a corrupt one stays corrupt (and is dropped by the
/// kernel) unless its damage left precisely the pseudo-header sum.
pub fn partial_checksum(f: &[u8]) -> Option<VnetHdr> {
    let Ip {
        l3,
        l4,
        v6,
        proto,
        end,
        routed,
    } = Ip::of(f)?;
    if routed {
        // The pseudo-header's destination is not in the IP header.
        return None;
    }
    let offset = match proto {
        PROTO_TCP => 16,
        17 => 6,
        _ => return None,
    };
    if end > f.len() || l4 + offset + 2 > end {
        return None;
    }
    let field = u16::from_ne_bytes([f[l4 + offset], f[l4 + offset + 1]]);
    let p = pseudo(&f[l3..], v6, proto, end - l4);
    if (proto == 17 && field == 0) || field != fold(p) || fold(sum(p, &f[l4..end])) == 0xffff {
        return None;
    }
    Some(VnetHdr {
        flags: F_NEEDS_CSUM,
        csum_start: l4 as u16,
        csum_offset: offset as u16,
        ..VnetHdr::default()
    })
}

/// Where the headers of an Ethernet/IP/TCP frame are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcpLayout {
    /// Offset of the IP header (14, 18 past an 802.1Q tag, 22 past a QinQ pair).
    pub l3: usize,
    /// Offset of the TCP header (past any IPv6 extension headers).
    pub l4: usize,
    /// Offset of the TCP payload.
    pub payload: usize,
    /// IPv6 (else IPv4).
    pub v6: bool,
    /// An IPv6 routing header with segments left: the TCP pseudo-header's
    /// destination is the final one, not the IP header's, so the checksum
    /// cannot be computed from the headers alone.
    pub routed: bool,
}

/// What a frame's TCP checksum field holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChecksumState {
    /// The full, correct checksum.
    Correct,
    /// Exactly the pseudo-header sum a sender with checksum offload leaves
    /// (see [`partial_checksum`]).
    Partial,
    /// Neither: the frame is corrupt.
    Wrong,
}

impl TcpLayout {
    /// Reads the layout of an Ethernet (no tag, one 802.1Q tag or an
    /// 802.1ad/QinQ pair) + IPv4 (unfragmented) or IPv6 (past hop-by-hop,
    /// routing and destination-options headers) + TCP frame whose IP length
    /// matches the frame; `None` for anything else.
    pub fn of(f: &[u8]) -> Option<TcpLayout> {
        let Ip {
            l3,
            l4,
            v6,
            proto,
            end,
            routed,
        } = Ip::of(f)?;
        if proto != PROTO_TCP || end != f.len() {
            return None;
        }
        let doff = (*f.get(l4 + 12)? >> 4) as usize * 4;
        if doff < 20 || l4 + doff > f.len() {
            return None;
        }
        Some(TcpLayout {
            l3,
            l4,
            payload: l4 + doff,
            v6,
            routed,
        })
    }

    /// Bytes of IP and TCP headers (with IPv6 extension headers) each
    /// segment carries: what an IP packet has besides its TCP payload.
    pub fn ip_header_len(&self) -> usize {
        self.payload - self.l3
    }

    /// The largest TCP payload of a segment whose IP packet fits `mtu`
    /// (link-layer header and tags are not part of the MTU), at least 1.
    pub fn mss_for_mtu(&self, mtu: usize) -> usize {
        mtu.saturating_sub(self.ip_header_len()).max(1)
    }

    /// Whether IPv6 extension headers sit between the IP and TCP headers.
    pub fn has_extensions(&self) -> bool {
        self.v6 && self.l4 != self.l3 + 40
    }

    fn pseudo(&self, f: &[u8], l4_len: usize) -> u64 {
        pseudo(&f[self.l3..], self.v6, PROTO_TCP, l4_len)
    }

    /// Whether the TCP checksum of `f` (laid out by `self`) is correct.
    pub fn checksum_ok(&self, f: &[u8]) -> bool {
        self.checksum_state(f) == ChecksumState::Correct
    }

    /// What the TCP checksum field of `f` (laid out by `self`) holds. A
    /// routed frame's pseudo-header cannot be known from its headers: its
    /// checksum is never taken as correct or partial.
    pub fn checksum_state(&self, f: &[u8]) -> ChecksumState {
        if self.routed {
            return ChecksumState::Wrong;
        }
        let p = self.pseudo(f, f.len() - self.l4);
        let full_ok = fold(sum(p, &f[self.l4..])) == 0xffff;
        let field = u16::from_ne_bytes([f[self.l4 + 16], f[self.l4 + 17]]);
        match (full_ok, field == fold(p)) {
            (true, _) => ChecksumState::Correct,
            (false, true) => ChecksumState::Partial,
            (false, false) => ChecksumState::Wrong,
        }
    }
}

/// The length and protocol words of an IPv6 TCP pseudo-header.
fn pseudo_len_v6(l4_len: usize) -> u64 {
    sum(
        sum(0, &(l4_len as u32).to_be_bytes()),
        &[0, 0, 0, PROTO_TCP],
    )
}

/// A TCP super-frame read from a TAP device, ready to be cut into segments.
#[derive(Clone, Copy, Debug)]
pub struct Tso {
    layout: TcpLayout,
    mss: usize,
    count: usize,
    /// For a routed IPv6 frame: the sum of the pseudo-header's addresses,
    /// recovered from the partial checksum the kernel left in the field
    /// (which it computed with the final destination).
    addrs: Option<u64>,
}

impl Tso {
    /// Checks a super-frame against its virtio-net header.
    pub fn new(frame: &[u8], hdr: &VnetHdr) -> Result<Tso, OffloadError> {
        if !hdr.is_tso() {
            return Err(OffloadError::GsoType(hdr.gso_type));
        }
        let layout = TcpLayout::of(frame).ok_or(OffloadError::NotTcp)?;
        if layout.v6 != (hdr.gso_type & !GSO_ECN == GSO_TCPV6) {
            return Err(OffloadError::NotTcp);
        }
        let mss = hdr.gso_size as usize;
        if mss == 0 {
            return Err(OffloadError::ZeroSegment);
        }
        // The field holds fold(addresses + length + protocol): take the
        // length and protocol back out (ones'-complement subtraction).
        let addrs = layout.routed.then(|| {
            let l4 = layout.l4;
            let field = u16::from_ne_bytes([frame[l4 + 16], frame[l4 + 17]]);
            let rest = fold(pseudo_len_v6(frame.len() - l4));
            u64::from(field) + u64::from(!rest)
        });
        let payload = frame.len() - layout.payload;
        Ok(Tso {
            layout,
            mss,
            count: payload.div_ceil(mss).max(1),
            addrs,
        })
    }

    /// The virtio-net header that hands `frame` to a TAP device whole, for
    /// the kernel to cut (a super-frame received from the underlay), or
    /// `None` if the frame's TCP checksum is neither correct nor exactly
    /// partial (nor verifiable, for a routed frame): such a frame is
    /// corrupt and must be dropped, never marked for the kernel to
    /// complete over bad data. The TCP checksum field of a frame that
    /// passes is set to the pseudo-header sum that `NEEDS_CSUM` asks for;
    /// a frame that carries CWR is marked `GSO_ECN`, so the kernel keeps
    /// CWR on the first segment only.
    pub fn to_tap(&self, frame: &mut [u8]) -> Option<VnetHdr> {
        let l = self.layout;
        if l.checksum_state(frame) == ChecksumState::Wrong {
            return None;
        }
        let c = fold(l.pseudo(frame, frame.len() - l.l4));
        frame[l.l4 + 16..l.l4 + 18].copy_from_slice(&c.to_ne_bytes());
        let ecn = if frame[l.l4 + 13] & TCP_CWR != 0 {
            GSO_ECN
        } else {
            0
        };
        Some(VnetHdr {
            flags: F_NEEDS_CSUM,
            gso_type: if l.v6 { GSO_TCPV6 } else { GSO_TCPV4 } | ecn,
            hdr_len: l.payload as u16,
            gso_size: self.mss as u16,
            csum_start: l.l4 as u16,
            csum_offset: 16,
        })
    }

    /// The layout of the frame's headers.
    pub fn layout(&self) -> &TcpLayout {
        &self.layout
    }

    /// The size of the largest segment's IP packet (headers and `mss`
    /// bytes of payload), to be held against the next hop's MTU.
    pub fn ip_segment_max(&self) -> usize {
        self.layout.ip_header_len() + self.mss
    }

    /// Total bytes of the segments (each repeats the headers).
    pub fn segments_len(&self, frame: &[u8]) -> usize {
        frame.len() + (self.count - 1) * self.layout.payload
    }

    /// TCP payload bytes per segment (the last may carry fewer).
    pub fn mss(&self) -> usize {
        self.mss
    }

    /// Number of segments.
    pub fn count(&self) -> usize {
        self.count
    }

    /// Length of the headers each segment repeats.
    pub fn header_len(&self) -> usize {
        self.layout.payload
    }

    /// Length of segment `i` of `frame`.
    pub fn segment_len(&self, frame: &[u8], i: usize) -> usize {
        let payload = frame.len() - self.layout.payload;
        self.layout.payload + (payload - i * self.mss).min(self.mss)
    }

    /// Writes segment `i` of `frame` into `out` (exactly
    /// [`segment_len`](Self::segment_len) bytes): headers copied, IP length
    /// and identification, TCP sequence number and flags adjusted, both
    /// checksums computed.
    pub fn write(&self, frame: &[u8], i: usize, out: &mut [u8]) {
        let TcpLayout {
            l3,
            l4,
            payload,
            v6,
            ..
        } = self.layout;
        let len = self.segment_len(frame, i);
        let out = &mut out[..len];
        let from = payload + i * self.mss;
        out[..payload].copy_from_slice(&frame[..payload]);
        out[payload..].copy_from_slice(&frame[from..from + len - payload]);
        if v6 {
            out[l3 + 4..l3 + 6].copy_from_slice(&((len - l3 - 40) as u16).to_be_bytes());
        } else {
            let ihl = l4 - l3;
            out[l3 + 2..l3 + 4].copy_from_slice(&((len - l3) as u16).to_be_bytes());
            let id = u16::from_be_bytes([frame[l3 + 4], frame[l3 + 5]]).wrapping_add(i as u16);
            out[l3 + 4..l3 + 6].copy_from_slice(&id.to_be_bytes());
            out[l3 + 10..l3 + 12].fill(0);
            let c = !fold(sum(0, &out[l3..l3 + ihl]));
            out[l3 + 10..l3 + 12].copy_from_slice(&c.to_ne_bytes());
        }
        let seq = u32::from_be_bytes([frame[l4 + 4], frame[l4 + 5], frame[l4 + 6], frame[l4 + 7]])
            .wrapping_add((i * self.mss) as u32);
        out[l4 + 4..l4 + 8].copy_from_slice(&seq.to_be_bytes());
        if i + 1 < self.count {
            out[l4 + 13] &= !(TCP_FIN | TCP_PSH);
        }
        if i > 0 {
            out[l4 + 13] &= !TCP_CWR;
        }
        out[l4 + 16..l4 + 18].fill(0);
        let acc = match self.addrs {
            Some(a) => a + pseudo_len_v6(len - l4),
            None => self.layout.pseudo(out, len - l4),
        };
        let c = !fold(sum(acc, &out[l4..]));
        out[l4 + 16..l4 + 18].copy_from_slice(&c.to_ne_bytes());
    }
}

/// Coalesces consecutive TCP segments of one flow into one super-frame to
/// be written to a TAP device with a GSO virtio-net header.
///
/// A segment joins the held super-frame when it continues it exactly: same
/// Ethernet and IP header (but lengths, IPv4 identification and checksum),
/// same ports, acknowledgement, window and options, the next sequence
/// number, at most `mss` bytes, and only ACK (and PSH) set. The held frame
/// stops growing after a short segment or a PSH. Every segment's checksum
/// is verified before it joins; one that fails is never coalesced, so the
/// kernel sees it as it came and drops it itself. A partial checksum (see
/// [`partial_checksum`]) is accepted as the kernel accepts it, and the
/// frame goes out with its checksum left partial.
#[derive(Debug)]
pub struct Coalescer {
    buf: Vec<u8>,
    layout: Option<TcpLayout>,
    mss: usize,
    segs: usize,
    next_seq: u32,
    closed: bool,
    partial: bool,
}

impl Default for Coalescer {
    fn default() -> Self {
        Self::new()
    }
}

impl Coalescer {
    /// An empty coalescer (its buffer holds the largest IP packet).
    pub fn new() -> Coalescer {
        Coalescer {
            buf: Vec::with_capacity(IP_MAX + 18),
            layout: None,
            mss: 0,
            segs: 0,
            next_seq: 0,
            closed: false,
            partial: false,
        }
    }

    /// Whether a super-frame is held.
    pub fn is_empty(&self) -> bool {
        self.layout.is_none()
    }

    /// Segments in the held super-frame.
    pub fn segments(&self) -> usize {
        self.segs
    }

    /// The layout of `f` and whether its checksum is partial, if it is a
    /// segment that may be coalesced.
    fn candidate(f: &[u8]) -> Option<(TcpLayout, bool)> {
        let l = TcpLayout::of(f)?;
        let flags = f[l.l4 + 13];
        // Plain headers only: no IPv4 options, no IPv6 extension headers.
        let plain = l.l4 - l.l3 == if l.v6 { 40 } else { 20 };
        let ok = plain
            && f.len() > l.payload
            && flags & TCP_ACK != 0
            && flags & !(TCP_ACK | TCP_PSH) == 0;
        if !ok {
            return None;
        }
        match l.checksum_state(f) {
            ChecksumState::Wrong => None,
            state => Some((l, state == ChecksumState::Partial)),
        }
    }

    /// Starts a super-frame with `f`; false (and nothing held) if `f` is not
    /// a segment that may be coalesced. Call only when empty.
    pub fn start(&mut self, f: &[u8]) -> bool {
        debug_assert!(self.is_empty());
        let Some((l, partial)) = Self::candidate(f) else {
            return false;
        };
        self.partial = partial;
        self.buf.clear();
        self.buf.extend_from_slice(f);
        self.mss = f.len() - l.payload;
        self.segs = 1;
        self.next_seq = seq(f, l.l4).wrapping_add(self.mss as u32);
        self.closed = f[l.l4 + 13] & TCP_PSH != 0;
        self.layout = Some(l);
        true
    }

    /// Appends `f` to the held super-frame; false if it does not continue it
    /// (the caller then writes the held frame out and tries [`start`](Self::start)).
    pub fn append(&mut self, f: &[u8]) -> bool {
        let Some(h) = self.layout else {
            return false;
        };
        if self.closed || f.len() <= h.payload || f.len() - h.payload > self.mss {
            return false;
        }
        let plen = f.len() - h.payload;
        if self.buf.len() + plen - h.l3 > IP_MAX + if h.v6 { 40 } else { 0 } {
            return false;
        }
        let (b, l3, l4) = (&self.buf, h.l3, h.l4);
        let same = |r: std::ops::Range<usize>| b[r.clone()] == f[r];
        let ip_same = if h.v6 {
            same(0..l3 + 4) && same(l3 + 6..l4)
        } else {
            same(0..l3 + 2) && same(l3 + 6..l3 + 10) && same(l3 + 12..l4)
        };
        // Ports; acknowledgement, data offset, window, urgent pointer, options.
        let tcp_same = same(l4..l4 + 4)
            && same(l4 + 8..l4 + 13)
            && same(l4 + 14..l4 + 16)
            && same(l4 + 18..h.payload);
        if !ip_same || !tcp_same || seq(f, l4) != self.next_seq {
            return false;
        }
        let flags = f[l4 + 13];
        if flags & !(TCP_ACK | TCP_PSH) != 0 {
            return false;
        }
        match h.checksum_state(f) {
            ChecksumState::Wrong => return false,
            state => self.partial |= state == ChecksumState::Partial,
        }
        self.buf.extend_from_slice(&f[h.payload..]);
        self.segs += 1;
        self.next_seq = self.next_seq.wrapping_add(plen as u32);
        if flags & TCP_PSH != 0 {
            self.buf[l4 + 13] |= TCP_PSH;
            self.closed = true;
        }
        if plen < self.mss {
            self.closed = true;
        }
        true
    }

    /// Takes the held super-frame: its virtio-net header and bytes. A single
    /// segment goes out unchanged, marked verified (or partial, as it came);
    /// several become one GSO frame whose TCP checksum is left partial for
    /// the kernel.
    pub fn finish(&mut self) -> Option<(VnetHdr, &[u8])> {
        let h = self.layout.take()?;
        if self.segs == 1 {
            let hdr = if self.partial {
                VnetHdr {
                    flags: F_NEEDS_CSUM,
                    csum_start: h.l4 as u16,
                    csum_offset: 16,
                    ..VnetHdr::default()
                }
            } else {
                VnetHdr {
                    flags: F_DATA_VALID,
                    ..VnetHdr::default()
                }
            };
            return Some((hdr, &self.buf));
        }
        let (l3, l4, len) = (h.l3, h.l4, self.buf.len());
        let b = &mut self.buf;
        if h.v6 {
            b[l3 + 4..l3 + 6].copy_from_slice(&((len - l3 - 40) as u16).to_be_bytes());
        } else {
            b[l3 + 2..l3 + 4].copy_from_slice(&((len - l3) as u16).to_be_bytes());
            b[l3 + 10..l3 + 12].fill(0);
            let c = !fold(sum(0, &b[l3..l4]));
            b[l3 + 10..l3 + 12].copy_from_slice(&c.to_ne_bytes());
        }
        let c = fold(h.pseudo(b, len - l4));
        b[l4 + 16..l4 + 18].copy_from_slice(&c.to_ne_bytes());
        let hdr = VnetHdr {
            flags: F_NEEDS_CSUM,
            gso_type: if h.v6 { GSO_TCPV6 } else { GSO_TCPV4 },
            hdr_len: h.payload as u16,
            gso_size: self.mss as u16,
            csum_start: l4 as u16,
            csum_offset: 16,
        };
        Some((hdr, &self.buf))
    }
}

fn seq(f: &[u8], l4: usize) -> u32 {
    u32::from_be_bytes([f[l4 + 4], f[l4 + 5], f[l4 + 6], f[l4 + 7]])
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A TCP frame (IPv4 or IPv6, optional VLAN tag) with `payload`, checksums correct.
    fn tcp_frame(v6: bool, vlan: bool, seq0: u32, flags: u8, payload: &[u8]) -> Vec<u8> {
        let mut f = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1];
        if vlan {
            f.extend_from_slice(&[0x81, 0x00, 0x00, 0x05]);
        }
        let l3 = f.len() + 2;
        let tcp_len = 32 + payload.len();
        if v6 {
            f.extend_from_slice(&[0x86, 0xdd, 0x60, 0, 0, 0]);
            f.extend_from_slice(&(tcp_len as u16).to_be_bytes());
            f.extend_from_slice(&[6, 64]);
            f.extend_from_slice(&[0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
            f.extend_from_slice(&[0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
        } else {
            f.extend_from_slice(&[0x08, 0x00, 0x45, 0]);
            f.extend_from_slice(&((20 + tcp_len) as u16).to_be_bytes());
            f.extend_from_slice(&[
                0x12, 0x34, 0x40, 0, 64, 6, 0, 0, 192, 168, 1, 1, 192, 168, 1, 2,
            ]);
        }
        let l4 = f.len();
        f.extend_from_slice(&[0x9c, 0x40, 0x14, 0x51]);
        f.extend_from_slice(&seq0.to_be_bytes());
        f.extend_from_slice(&[0, 0, 0, 7, 0x80, flags, 0x01, 0xf5, 0, 0, 0, 0]);
        f.extend_from_slice(&[1, 1, 8, 10, 0, 0, 0, 9, 0, 0, 0, 3]);
        f.extend_from_slice(payload);
        if !v6 {
            let c = !fold(sum(0, &f[l3..l3 + 20]));
            f[l3 + 10..l3 + 12].copy_from_slice(&c.to_ne_bytes());
        }
        let l = TcpLayout::of(&f).expect("a TCP frame");
        let c = !fold(sum(l.pseudo(&f, f.len() - l4), &f[l4..]));
        f[l4 + 16..l4 + 18].copy_from_slice(&c.to_ne_bytes());
        f
    }

    /// The reference checksum: 16 bits at a time, big-endian (RFC 1071).
    fn reference(data: &[u8]) -> u16 {
        let mut s: u32 = 0;
        for c in data.chunks(2) {
            s += u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]) as u32;
        }
        while s >> 16 != 0 {
            s = (s & 0xffff) + (s >> 16);
        }
        !(s as u16)
    }

    fn tso_hdr(v6: bool, mss: u16) -> VnetHdr {
        VnetHdr {
            flags: F_NEEDS_CSUM,
            gso_type: if v6 { GSO_TCPV6 } else { GSO_TCPV4 },
            gso_size: mss,
            ..VnetHdr::default()
        }
    }

    fn segments(frame: &[u8], tso: &Tso) -> Vec<Vec<u8>> {
        (0..tso.count())
            .map(|i| {
                let mut out = vec![0u8; tso.segment_len(frame, i)];
                tso.write(frame, i, &mut out);
                out
            })
            .collect()
    }

    #[test]
    fn header_round_trips() {
        let h = VnetHdr {
            flags: 1,
            gso_type: GSO_TCPV6 | GSO_ECN,
            hdr_len: 86,
            gso_size: 1348,
            csum_start: 54,
            csum_offset: 16,
        };
        assert_eq!(VnetHdr::parse(&h.emit()), h);
        assert!(h.is_tso());
    }

    #[test]
    fn completes_a_partial_checksum() {
        let mut f = tcp_frame(false, false, 1, TCP_ACK, b"hello world");
        let l = TcpLayout::of(&f).unwrap();
        let want = f[l.l4 + 16..l.l4 + 18].to_vec();
        // What the kernel leaves: the pseudo-header sum, not complemented.
        let p = fold(l.pseudo(&f, f.len() - l.l4));
        f[l.l4 + 16..l.l4 + 18].copy_from_slice(&p.to_ne_bytes());
        complete_checksum(&mut f, l.l4 as u16, 16).unwrap();
        assert_eq!(&f[l.l4 + 16..l.l4 + 18], &want[..]);
        assert!(complete_checksum(&mut f, 60, 200).is_err());
    }

    #[test]
    fn segments_and_coalesces_back() {
        let payload: Vec<u8> = (0..10_000u32).map(|i| (i * 7 + i / 3) as u8).collect();
        for (v6, vlan) in [(false, false), (true, false), (false, true), (true, true)] {
            let big = tcp_frame(v6, vlan, 0xffff_fff0, TCP_ACK | TCP_PSH, &payload);
            let tso = Tso::new(&big, &tso_hdr(v6, 1400)).unwrap();
            assert_eq!(tso.count(), 8);
            let segs = segments(&big, &tso);
            let mut c = Coalescer::new();
            assert!(c.start(&segs[0]));
            for s in &segs[1..] {
                let l = TcpLayout::of(s).unwrap();
                assert!(l.checksum_ok(s), "segment checksum");
                assert!(c.append(s));
            }
            assert_eq!(c.segments(), 8);
            let (hdr, out) = c.finish().unwrap();
            assert_eq!(hdr.gso_size, 1400);
            assert_eq!(hdr.flags, F_NEEDS_CSUM);
            assert_eq!(out.len(), big.len());
            let l = TcpLayout::of(out).unwrap();
            assert_eq!(&out[l.payload..], &big[l.payload..]);
            assert_eq!(out[l.l4 + 13], TCP_ACK | TCP_PSH);
            // The partial checksum completes to the original frame's.
            let mut done = out.to_vec();
            complete_checksum(&mut done, hdr.csum_start, hdr.csum_offset).unwrap();
            assert!(l.checksum_ok(&done));
            assert!(c.is_empty());
        }
    }

    #[test]
    fn refuses_what_does_not_continue_the_flow() {
        let a = tcp_frame(false, false, 1000, TCP_ACK, &[1; 100]);
        let mut c = Coalescer::new();
        assert!(c.start(&a));
        // A gap in the sequence.
        assert!(!c.append(&tcp_frame(false, false, 1200, TCP_ACK, &[1; 100])));
        // Larger than the first segment.
        assert!(!c.append(&tcp_frame(false, false, 1100, TCP_ACK, &[1; 101])));
        // A SYN or FIN.
        assert!(!c.append(&tcp_frame(false, false, 1100, TCP_ACK | TCP_FIN, &[1; 100])));
        // A corrupted checksum.
        let mut bad = tcp_frame(false, false, 1100, TCP_ACK, &[1; 100]);
        let n = bad.len();
        bad[n - 1] ^= 0x55;
        assert!(!c.append(&bad));
        // The next segment joins; a short one closes the frame.
        assert!(c.append(&tcp_frame(false, false, 1100, TCP_ACK, &[1; 60])));
        assert!(!c.append(&tcp_frame(false, false, 1160, TCP_ACK, &[1; 60])));
        assert_eq!(c.segments(), 2);
        // A pure ACK and a corrupted segment are not candidates at all.
        let mut c = Coalescer::new();
        assert!(!c.start(&tcp_frame(false, false, 1, TCP_ACK, &[])));
        assert!(!c.start(&bad));
        // A single segment goes out as it came, marked verified.
        assert!(c.start(&a));
        let (hdr, out) = c.finish().unwrap();
        assert_eq!(
            (hdr.flags, hdr.gso_type, out),
            (F_DATA_VALID, GSO_NONE, &a[..])
        );
    }

    /// What a Linux sender with checksum offload leaves in the field.
    fn make_partial(f: &mut [u8]) {
        let l = TcpLayout::of(f).unwrap();
        let p = fold(l.pseudo(f, f.len() - l.l4));
        f[l.l4 + 16..l.l4 + 18].copy_from_slice(&p.to_ne_bytes());
    }

    #[test]
    fn partial_checksums_are_recognised_and_kept_partial() {
        let good = tcp_frame(false, false, 1, TCP_ACK | TCP_PSH, &[9; 300]);
        assert_eq!(
            partial_checksum(&good),
            None,
            "a correct checksum is left alone"
        );
        let mut part = good.clone();
        make_partial(&mut part);
        let h = partial_checksum(&part).expect("a partial checksum");
        assert_eq!(
            (h.flags, h.csum_start, h.csum_offset),
            (F_NEEDS_CSUM, 34, 16)
        );
        let mut done = part.clone();
        complete_checksum(&mut done, h.csum_start, h.csum_offset).unwrap();
        assert_eq!(done, good, "completing it gives the real checksum");
        let mut bad = good.clone();
        bad[60] ^= 1;
        assert_eq!(
            partial_checksum(&bad),
            None,
            "a corrupt checksum is not partial"
        );

        // Segments with partial checksums coalesce, and stay partial.
        let mut c = Coalescer::new();
        let mut s1 = tcp_frame(true, false, 1, TCP_ACK, &[1; 200]);
        let mut s2 = tcp_frame(true, false, 201, TCP_ACK, &[2; 200]);
        make_partial(&mut s1);
        make_partial(&mut s2);
        assert!(c.start(&s1));
        let (hdr, _) = c.finish().unwrap();
        assert_eq!((hdr.flags, hdr.gso_type), (F_NEEDS_CSUM, GSO_NONE));
        assert!(c.start(&s1) && c.append(&s2));
        let (hdr, out) = c.finish().unwrap();
        assert_eq!(
            (hdr.flags, hdr.gso_type, out.len()),
            (F_NEEDS_CSUM, GSO_TCPV6, s1.len() + 200)
        );
    }

    #[test]
    fn a_super_frame_goes_to_the_tap_whole() {
        let mut big = tcp_frame(false, true, 7, TCP_ACK, &[3; 5000]);
        let tso = Tso::new(&big, &tso_hdr(false, 1000)).unwrap();
        assert_eq!(tso.segments_len(&big), big.len() + 4 * tso.header_len());
        let h = tso.to_tap(&mut big).expect("a correct checksum");
        assert_eq!(
            (h.gso_type, h.gso_size, h.csum_start, h.hdr_len),
            (GSO_TCPV4, 1000, 38, 70)
        );
        complete_checksum(&mut big, h.csum_start, h.csum_offset).unwrap();
        assert!(TcpLayout::of(&big).unwrap().checksum_ok(&big));
    }

    /// An IPv6 TCP frame behind `tags` (ethertype, TCI pairs) with the
    /// extension headers `ext` (each `(type, body)`, body padded to 8-byte
    /// units by the caller) and `payload`; checksum correct for the
    /// pseudo-header destination `final_dst` (the header's unless routed).
    fn v6_ext_frame(
        tags: &[u16],
        ext: &[(u8, Vec<u8>)],
        final_dst: [u8; 16],
        payload: &[u8],
    ) -> Vec<u8> {
        let mut f = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1];
        for t in tags {
            f.extend_from_slice(&t.to_be_bytes());
            f.extend_from_slice(&[0x00, 0x05]);
        }
        f.extend_from_slice(&[0x86, 0xdd]);
        let l3 = f.len();
        let ext_len: usize = ext.iter().map(|(_, b)| b.len() + 2).sum();
        let tcp_len = 32 + payload.len();
        f.extend_from_slice(&[0x60, 0, 0, 0]);
        f.extend_from_slice(&((ext_len + tcp_len) as u16).to_be_bytes());
        f.push(ext.first().map_or(6, |e| e.0));
        f.push(64);
        f.extend_from_slice(&[0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        f.extend_from_slice(&[0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
        for (i, (_, body)) in ext.iter().enumerate() {
            assert_eq!(
                (body.len() + 2) % 8,
                0,
                "extension headers are 8-byte units"
            );
            f.push(ext.get(i + 1).map_or(6, |e| e.0));
            f.push(((body.len() + 2) / 8 - 1) as u8);
            f.extend_from_slice(body);
        }
        let l4 = f.len();
        f.extend_from_slice(&[0x9c, 0x40, 0x14, 0x51, 0, 0, 0, 1]);
        f.extend_from_slice(&[0, 0, 0, 7, 0x80, TCP_ACK, 0x01, 0xf5, 0, 0, 0, 0]);
        f.extend_from_slice(&[1, 1, 8, 10, 0, 0, 0, 9, 0, 0, 0, 3]);
        f.extend_from_slice(payload);
        let c = !fold(sum(
            final_pseudo(&f[l3..], final_dst, f.len() - l4),
            &f[l4..],
        ));
        f[l4 + 16..l4 + 18].copy_from_slice(&c.to_ne_bytes());
        f
    }

    /// The IPv6 TCP pseudo-header sum with destination `dst`.
    fn final_pseudo(ip: &[u8], dst: [u8; 16], l4_len: usize) -> u64 {
        sum(sum(0, &ip[8..24]), &dst) + pseudo_len_v6(l4_len)
    }

    const DST: [u8; 16] = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];
    const FINAL: [u8; 16] = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9];

    /// Cuts `big` as a TAP's TSO frame (checksum field left partial, as the
    /// kernel hands it over) and checks every segment against `dst`.
    fn cut_and_check(big: &[u8], dst: [u8; 16], mss: u16) -> usize {
        let l = TcpLayout::of(big).expect("a TCP frame");
        let mut tap = big.to_vec();
        let p = fold(final_pseudo(&tap[l.l3..], dst, tap.len() - l.l4));
        tap[l.l4 + 16..l.l4 + 18].copy_from_slice(&p.to_ne_bytes());
        let tso = Tso::new(&tap, &tso_hdr(true, mss)).expect("a TSO frame we can cut");
        let segs = segments(&tap, &tso);
        let mut payload = Vec::new();
        for s in &segs {
            let sl = TcpLayout::of(s).expect("each segment is a TCP frame");
            let acc = final_pseudo(&s[sl.l3..], dst, s.len() - sl.l4);
            assert_eq!(fold(sum(acc, &s[sl.l4..])), 0xffff, "segment checksum");
            assert!(s.len() - sl.l3 <= sl.ip_header_len() + mss as usize);
            payload.extend_from_slice(&s[sl.payload..]);
        }
        assert_eq!(&payload[..], &big[l.payload..]);
        segs.len()
    }

    #[test]
    fn tso_with_ipv6_extension_headers_is_cut() {
        let data: Vec<u8> = (0..5000u32).map(|i| (i * 13) as u8).collect();
        let hbh = (IPV6_HOP_BY_HOP, vec![1, 4, 0, 0, 0, 0]);
        let dopt = (
            IPV6_DEST_OPTS,
            vec![1, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        );
        let big = v6_ext_frame(&[], &[hbh.clone(), dopt.clone()], DST, &data);
        let l = TcpLayout::of(&big).unwrap();
        assert_eq!((l.l4, l.routed), (14 + 40 + 8 + 16, false));
        assert_eq!(cut_and_check(&big, DST, 1000), 5);
        // A routing header with no segments left: the header's destination.
        let rh0 = (IPV6_ROUTING, vec![4, 0, 0, 0, 0, 0]);
        let big = v6_ext_frame(&[], &[rh0], DST, &data);
        assert!(!TcpLayout::of(&big).unwrap().routed);
        assert_eq!(cut_and_check(&big, DST, 1000), 5);
        // A segment routing header with one segment left: the checksum is
        // over the final destination, which only the kernel's partial sum
        // tells.
        let mut srh = vec![4, 1, 0, 0, 0, 0];
        srh.extend_from_slice(&FINAL);
        srh.extend_from_slice(&DST);
        let big = v6_ext_frame(&[], &[hbh, (IPV6_ROUTING, srh), dopt], FINAL, &data);
        assert!(TcpLayout::of(&big).unwrap().routed);
        assert_eq!(cut_and_check(&big, FINAL, 1400), 4);
        // A fragment header is never TSO.
        let frag = v6_ext_frame(&[], &[(44, vec![0, 0, 0, 0, 0, 0])], DST, &data);
        assert_eq!(
            Tso::new(&frag, &tso_hdr(true, 1000)).unwrap_err(),
            OffloadError::NotTcp
        );
    }

    #[test]
    fn tso_under_a_qinq_pair_is_cut() {
        let data: Vec<u8> = (0..4000u32).map(|i| (i * 5) as u8).collect();
        for tags in [&[0x88a8, 0x8100][..], &[0x8100, 0x8100], &[0x88a8]] {
            let big = v6_ext_frame(tags, &[], DST, &data);
            let l = TcpLayout::of(&big).expect("a tagged TCP frame");
            assert_eq!(l.l3, 14 + 4 * tags.len());
            assert_eq!(cut_and_check(&big, DST, 1400), 3);
        }
    }

    #[test]
    fn resegmented_super_frames_fit_the_mtu() {
        // IPv4 + TCP with timestamps (20 + 32 header bytes), MTU 1400: the
        // segments' IP packets are exactly 1400 bytes, tagged or not.
        for (v6, vlan) in [(false, false), (false, true), (true, false), (true, true)] {
            let big = tcp_frame(v6, vlan, 1, TCP_ACK, &[7; 30_000]);
            let l = TcpLayout::of(&big).unwrap();
            let mss = l.mss_for_mtu(1400);
            assert_eq!(mss, if v6 { 1400 - 72 } else { 1400 - 52 });
            let tso = Tso::new(&big, &tso_hdr(v6, mss as u16)).unwrap();
            assert_eq!(tso.ip_segment_max(), 1400);
            for s in segments(&big, &tso) {
                assert!(
                    s.len() - l.l3 <= 1400,
                    "segment of {} bytes",
                    s.len() - l.l3
                );
            }
        }
    }

    #[test]
    fn a_corrupt_super_frame_is_refused_not_marked() {
        let good = tcp_frame(false, false, 1, TCP_ACK, &[4; 6000]);
        let hint = tso_hdr(false, 1348);
        let tso = Tso::new(&good, &hint).unwrap();
        assert!(tso.to_tap(&mut good.clone()).is_some(), "correct");
        let mut part = good.clone();
        make_partial(&mut part);
        assert!(tso.to_tap(&mut part).is_some(), "partial");
        let mut bad = good.clone();
        bad[3000] ^= 0x40;
        let before = bad.clone();
        assert_eq!(tso.to_tap(&mut bad), None, "corrupt payload");
        assert_eq!(bad, before, "a refused frame is left as it came");
        // A field that is neither the checksum nor the pseudo-header sum.
        let mut bad = good.clone();
        let l = TcpLayout::of(&bad).unwrap();
        bad[l.l4 + 16] ^= 0x10;
        assert_eq!(tso.to_tap(&mut bad), None);
    }

    #[test]
    fn a_cwr_super_frame_is_marked_ecn() {
        let mut big = tcp_frame(false, false, 1, TCP_ACK | TCP_CWR, &[4; 6000]);
        let tso = Tso::new(&big, &tso_hdr(false, 1000)).unwrap();
        let h = tso.to_tap(&mut big).unwrap();
        assert_eq!(h.gso_type, GSO_TCPV4 | GSO_ECN);
        let mut plain = tcp_frame(false, false, 1, TCP_ACK, &[4; 6000]);
        assert_eq!(tso.to_tap(&mut plain).unwrap().gso_type, GSO_TCPV4);
    }

    #[test]
    fn rejects_bad_tso_headers() {
        let big = tcp_frame(false, false, 1, TCP_ACK, &[0; 3000]);
        assert_eq!(
            Tso::new(&big, &tso_hdr(true, 1400)).unwrap_err(),
            OffloadError::NotTcp
        );
        assert_eq!(
            Tso::new(&big, &tso_hdr(false, 0)).unwrap_err(),
            OffloadError::ZeroSegment
        );
        assert!(Tso::new(&big[..100], &tso_hdr(false, 1400)).is_err());
    }

    proptest! {
        #[test]
        fn sum_matches_the_reference(data in proptest::collection::vec(any::<u8>(), 0..3000)) {
            prop_assert_eq!((!fold(sum(0, &data))).to_ne_bytes(), reference(&data).to_be_bytes());
        }

        #[test]
        fn any_segmentation_coalesces_back(
            len in 1usize..20_000, mss in 200u16..1460, v6 in any::<bool>(), seq0 in any::<u32>()
        ) {
            let payload: Vec<u8> = (0..len).map(|i| (i as u8).wrapping_mul(31)).collect();
            let big = tcp_frame(v6, false, seq0, TCP_ACK, &payload);
            let tso = Tso::new(&big, &tso_hdr(v6, mss)).unwrap();
            let segs = segments(&big, &tso);
            let mut c = Coalescer::new();
            prop_assert!(c.start(&segs[0]));
            for s in &segs[1..] {
                prop_assert!(c.append(s));
            }
            let (_, out) = c.finish().unwrap();
            let l = TcpLayout::of(out).unwrap();
            prop_assert_eq!(&out[l.payload..], &big[l.payload..]);
        }
    }
}
