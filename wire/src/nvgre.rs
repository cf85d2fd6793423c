//! NVGRE (RFC 7637): Ethernet in GRE (RFC 2784, key and sequence number
//! from RFC 2890) directly over IP, and the NVGRE encapsulation module.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |C| |K|S|  Reserved0    | Ver |  Protocol Type 0x6558         |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |      Checksum (if C)          |       Reserved1 (if C)        |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |  Virtual Subnet ID (VSID)                     |    FlowID     |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |      Sequence Number (if S)                                   |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//!
//! Senders write K only, version 0, protocol 0x6558, the VSID and FlowID 0
//! (RFC 7637: "if a FlowID is not generated, it MUST be set to all zeros";
//! peers such as Open vSwitch match the whole 32-bit key, so a VSID V is
//! their key V×256). Receivers take what RFC 2784/2890 allow and NVGRE can
//! use: a checksum (C) is verified and a sequence number (S) skipped; the
//! key must be there (`no-key`), the protocol must be Ethernet
//! (`bad-protocol`), the version 0 and the RFC 1701 bits (routing, strict
//! source route, recursion) clear (`bad-version`). The FlowID is not part
//! of the network's identity: demultiplexing is by VSID alone.

use crate::encap::{DecapError, Decapped, Encap, EncapError, PropDesc, Socket};
use crate::offload::{fold, sum};
use overlay_api::Perm;

/// Bytes of the header we send: the base and the key.
pub const HEADER_LEN: usize = 8;
/// IP protocol number of GRE.
pub const IPPROTO_GRE: u8 = 47;
/// Transparent Ethernet Bridging.
pub const PROTO_TEB: u16 = 0x6558;
/// Checksum present.
pub const FLAG_C: u8 = 0x80;
/// Key present.
pub const FLAG_K: u8 = 0x20;
/// Sequence number present.
pub const FLAG_S: u8 = 0x10;
/// RFC 1701 bits RFC 2784 receivers refuse: routing, strict source route,
/// and the recursion control.
pub const FLAGS_1701: u8 = 0x40 | 0x08 | 0x07;
/// Smallest inner frame: an Ethernet header.
pub const MIN_INNER: usize = 14;

/// A zero-copy view of a GRE header whose accessors never panic (a short
/// buffer reads as zeros); [`parse`] validates.
#[derive(Clone, Copy, Debug)]
pub struct Header<'a>(pub &'a [u8]);

impl Header<'_> {
    fn byte(&self, i: usize) -> u8 {
        self.0.get(i).copied().unwrap_or(0)
    }
    /// The first flags byte (C, R, K, S, s, Recur).
    pub fn flags(&self) -> u8 {
        self.byte(0)
    }
    /// Version (3 bits).
    pub fn version(&self) -> u8 {
        self.byte(1) & 0x07
    }
    /// Protocol type of the payload.
    pub fn protocol(&self) -> u16 {
        u16::from_be_bytes([self.byte(2), self.byte(3)])
    }
    /// Length of the header its flags announce.
    pub fn len(&self) -> usize {
        let f = self.flags();
        4 + 4
            * (usize::from(f & FLAG_C != 0)
                + usize::from(f & FLAG_K != 0)
                + usize::from(f & FLAG_S != 0))
    }
    /// Always false: a header is at least 4 bytes.
    pub fn is_empty(&self) -> bool {
        false
    }
    /// The key (VSID << 8 | FlowID), if K is set and it is there.
    pub fn key(&self) -> Option<u32> {
        if self.flags() & FLAG_K == 0 {
            return None;
        }
        let at = if self.flags() & FLAG_C != 0 { 8 } else { 4 };
        let k = self.0.get(at..at + 4)?;
        Some(u32::from_be_bytes([k[0], k[1], k[2], k[3]]))
    }
}

/// A validated NVGRE packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Packet<'a> {
    /// Virtual Subnet ID (24 bits).
    pub vsid: u32,
    /// FlowID.
    pub flow_id: u8,
    /// The first flags byte as received.
    pub flags: u8,
    /// The inner Ethernet frame.
    pub inner: &'a [u8],
}

/// Parses an IP payload as NVGRE, as a receiving endpoint must.
pub fn parse(b: &[u8]) -> Result<Packet<'_>, DecapError> {
    let h = Header(b);
    if b.len() < 4 {
        return Err(DecapError::Short(b.len()));
    }
    if h.version() != 0 || h.flags() & FLAGS_1701 != 0 {
        return Err(DecapError::BadVersion(h.version()));
    }
    if b.len() < h.len() + MIN_INNER {
        return Err(DecapError::Short(b.len()));
    }
    if h.protocol() != PROTO_TEB {
        return Err(DecapError::BadProtocol(h.protocol()));
    }
    let Some(key) = h.key() else {
        return Err(DecapError::NoKey);
    };
    // The checksum covers the GRE header and payload (RFC 2784 2.2).
    if h.flags() & FLAG_C != 0 && fold(sum(0, b)) != 0xffff {
        return Err(DecapError::BadChecksum);
    }
    Ok(Packet {
        vsid: key >> 8,
        flow_id: key as u8,
        flags: h.flags(),
        inner: &b[h.len()..],
    })
}

/// Writes a header for `vsid` (24 bits) and `flow_id` into `out`.
pub fn emit(vsid: u32, flow_id: u8, out: &mut [u8; HEADER_LEN]) {
    debug_assert!(vsid <= 0x00ff_ffff);
    let v = vsid.to_be_bytes();
    let p = PROTO_TEB.to_be_bytes();
    *out = [FLAG_K, 0, p[0], p[1], v[1], v[2], v[3], flow_id];
}

/// The NVGRE encapsulation module.
pub const MODULE: Encap = Encap {
    name: "nvgre",
    header_len: HEADER_LEN,
    vni_bits: 24,
    socket: Socket::RawIp(IPPROTO_GRE),
    props: &[PropDesc {
        name: "nvgre/listen_ip",
        perm: Perm::Rw,
        required: true,
        default: None,
        possible: None,
    }],
    encap: |vni, out| {
        let have = out.len();
        let h = out
            .first_chunk_mut::<HEADER_LEN>()
            .ok_or(EncapError::short("nvgre", HEADER_LEN, have))?;
        emit(vni, 0, h);
        Ok(())
    },
    decap: |b| {
        parse(b).map(|p| Decapped {
            vni: p.vsid,
            inner: p.inner,
            options: 0,
        })
    },
};

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A GRE header with the given flags (C: checksum computed, K: `key`,
    /// S: sequence 7), protocol and version, before `inner`.
    fn gre(flags: u8, ver: u8, proto: u16, key: u32, inner: &[u8]) -> Vec<u8> {
        let mut b = vec![flags, ver];
        b.extend_from_slice(&proto.to_be_bytes());
        if flags & FLAG_C != 0 {
            b.extend_from_slice(&[0; 4]);
        }
        if flags & FLAG_K != 0 {
            b.extend_from_slice(&key.to_be_bytes());
        }
        if flags & FLAG_S != 0 {
            b.extend_from_slice(&7u32.to_be_bytes());
        }
        b.extend_from_slice(inner);
        if flags & FLAG_C != 0 {
            let c = !fold(sum(0, &b));
            b[4..6].copy_from_slice(&c.to_ne_bytes());
        }
        b
    }

    proptest! {
        #[test]
        fn encap_decap_round_trip(vsid in 0..=0x00ff_ffffu32, flow in any::<u8>(),
                inner in proptest::collection::vec(any::<u8>(), MIN_INNER..1600)) {
            let mut pkt = vec![0u8; HEADER_LEN];
            emit(vsid, flow, (&mut pkt[..]).try_into().unwrap());
            pkt.extend_from_slice(&inner);
            let p = parse(&pkt).unwrap();
            prop_assert_eq!((p.vsid, p.flow_id, p.inner), (vsid, flow, &inner[..]));
        }

        #[test]
        fn optional_fields_are_taken(c in any::<bool>(), s in any::<bool>(), key in any::<u32>(),
                inner in proptest::collection::vec(any::<u8>(), MIN_INNER..200)) {
            let flags = FLAG_K | if c { FLAG_C } else { 0 } | if s { FLAG_S } else { 0 };
            let b = gre(flags, 0, PROTO_TEB, key, &inner);
            let p = parse(&b).unwrap();
            prop_assert_eq!((p.vsid, p.flow_id, p.inner), (key >> 8, key as u8, &inner[..]));
        }

        #[test]
        fn never_panics(b in proptest::collection::vec(any::<u8>(), 0..64)) {
            if let Ok(p) = parse(&b) {
                prop_assert!(p.inner.len() >= MIN_INNER && b.ends_with(p.inner));
            }
        }
    }

    #[test]
    fn receiver_rules() {
        let inner = [0u8; MIN_INNER];
        let ok = gre(FLAG_K, 0, PROTO_TEB, 0x0012_3400, &inner);
        assert_eq!(parse(&ok).unwrap().vsid, 0x1234);
        assert_eq!(
            parse(&gre(0, 0, PROTO_TEB, 0, &inner)),
            Err(DecapError::NoKey)
        );
        assert_eq!(
            parse(&gre(FLAG_K, 0, 0x0800, 1, &inner)),
            Err(DecapError::BadProtocol(0x0800))
        );
        assert_eq!(
            parse(&gre(FLAG_K, 1, PROTO_TEB, 1, &inner)),
            Err(DecapError::BadVersion(1))
        );
        assert_eq!(
            parse(&gre(FLAG_K | 0x40, 0, PROTO_TEB, 1, &inner)),
            Err(DecapError::BadVersion(0))
        );
        let mut bad = gre(FLAG_K | FLAG_C, 0, PROTO_TEB, 1, &inner);
        bad[12] ^= 1;
        assert_eq!(parse(&bad), Err(DecapError::BadChecksum));
        assert_eq!(parse(&ok[..3]), Err(DecapError::Short(3)));
        assert_eq!(parse(&ok[..21]), Err(DecapError::Short(21)));
    }
}
