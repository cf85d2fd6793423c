//! VXLAN (RFC 7348) header.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |R|R|R|R|I|R|R|R|            Reserved                           |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                VXLAN Network Identifier (VNI) |   Reserved    |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//!
//! Senders set I and zero everything else. Receivers require I and, as the
//! RFC says, ignore the reserved bits.

use crate::encap::{DecapError, Decapped, Encap, EncapError, PropDesc, Socket};
use overlay_api::Perm;

/// Bytes in a VXLAN header.
pub const HEADER_LEN: usize = 8;
/// The I flag: the VNI is valid.
pub const FLAG_I: u8 = 0x08;
/// Largest VNI (24 bits).
pub const VNI_MAX: u32 = 0x00ff_ffff;
/// IANA port for VXLAN.
pub const DEFAULT_PORT: u16 = 4789;
/// Smallest inner frame: an Ethernet header.
pub const MIN_INNER: usize = 14;

/// Why a datagram is not a usable VXLAN packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum VxlanError {
    /// Shorter than the header plus an Ethernet header.
    #[error("datagram of {0} bytes is shorter than a VXLAN header and an Ethernet header")]
    Short(usize),
    /// The I flag is clear.
    #[error("VXLAN header without the I flag (flags {0:#04x})")]
    NoVniFlag(u8),
}

/// A validated VXLAN packet: the VNI and the inner Ethernet frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Packet<'a> {
    /// Flags byte as received (I set; reserved bits as the sender left them).
    pub flags: u8,
    /// Virtual network identifier.
    pub vni: u32,
    /// The inner Ethernet frame.
    pub inner: &'a [u8],
}

/// A view of the VXLAN header at the start of a buffer, as Geneve's and
/// NVGRE's: a field past the buffer's end reads as 0, so no accessor
/// panics whatever the buffer ([`parse`] checks the length first).
#[derive(Clone, Copy, Debug)]
pub struct Header<'a>(pub &'a [u8]);

impl Header<'_> {
    fn byte(&self, i: usize) -> u8 {
        self.0.get(i).copied().unwrap_or(0)
    }
    /// The flags byte (I, and reserved bits as the sender left them).
    pub fn flags(&self) -> u8 {
        self.byte(0)
    }
    /// The I flag: the VNI is valid.
    pub fn has_vni(&self) -> bool {
        self.flags() & FLAG_I != 0
    }
    /// VNI (24 bits).
    pub fn vni(&self) -> u32 {
        u32::from_be_bytes([0, self.byte(4), self.byte(5), self.byte(6)])
    }
}

/// Parses a UDP payload as VXLAN.
pub fn parse(b: &[u8]) -> Result<Packet<'_>, VxlanError> {
    let h = Header(b);
    if b.len() < HEADER_LEN + MIN_INNER {
        return Err(VxlanError::Short(b.len()));
    }
    if !h.has_vni() {
        return Err(VxlanError::NoVniFlag(h.flags()));
    }
    Ok(Packet {
        flags: h.flags(),
        vni: h.vni(),
        inner: b.get(HEADER_LEN..).unwrap_or_default(),
    })
}

/// Writes a header for `vni` (which must fit in 24 bits) into `out`.
pub fn emit(vni: u32, out: &mut [u8; HEADER_LEN]) {
    debug_assert!(vni <= VNI_MAX);
    let v = vni.to_be_bytes();
    *out = [FLAG_I, 0, 0, 0, v[1], v[2], v[3], 0];
}

/// The VXLAN encapsulation module.
pub const MODULE: Encap = Encap {
    name: "vxlan",
    header_len: HEADER_LEN,
    vni_bits: 24,
    socket: Socket::Udp,
    props: &[
        PropDesc {
            name: "vxlan/listen_ip",
            perm: Perm::Rw,
            required: true,
            default: None,
            possible: None,
        },
        PropDesc {
            name: "vxlan/listen_port",
            perm: Perm::Rw,
            required: true,
            default: Some("4789"),
            possible: Some("1-65535"),
        },
    ],
    encap: |vni, out| {
        let have = out.len();
        let h = out
            .first_chunk_mut::<HEADER_LEN>()
            .ok_or(EncapError::short("vxlan", HEADER_LEN, have))?;
        emit(vni, h);
        Ok(())
    },
    decap: |b| match parse(b) {
        Ok(p) => Ok(Decapped {
            vni: p.vni,
            inner: p.inner,
            options: 0,
        }),
        Err(VxlanError::Short(n)) => Err(DecapError::Short(n)),
        Err(VxlanError::NoVniFlag(f)) => Err(DecapError::NoVniFlag(f)),
    },
};

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn encap_decap_round_trip(vni in 0..=VNI_MAX, inner in proptest::collection::vec(any::<u8>(), MIN_INNER..1600)) {
            let mut pkt = vec![0u8; HEADER_LEN];
            emit(vni, (&mut pkt[..HEADER_LEN]).try_into().unwrap());
            pkt.extend_from_slice(&inner);
            let p = parse(&pkt).unwrap();
            prop_assert_eq!(p.vni, vni);
            prop_assert_eq!(p.inner, &inner[..]);
            prop_assert_eq!(p.flags, FLAG_I);
        }

        #[test]
        fn never_panics(b in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = parse(&b);
            let h = Header(&b);
            let _ = (h.flags(), h.has_vni(), h.vni());
        }

        #[test]
        fn reserved_bits_ignored(vni in 0..=VNI_MAX, r in any::<[u8; 4]>()) {
            let mut pkt = vec![0u8; HEADER_LEN + MIN_INNER];
            emit(vni, (&mut pkt[..HEADER_LEN]).try_into().unwrap());
            pkt[0] |= r[0] & !FLAG_I; pkt[1] = r[1]; pkt[2] = r[2]; pkt[7] = r[3];
            prop_assert_eq!(parse(&pkt).unwrap().vni, vni);
        }
    }

    #[test]
    fn short_and_flagless_are_errors() {
        assert_eq!(parse(&[0x08; 21]), Err(VxlanError::Short(21)));
        let mut p = [0u8; 22];
        assert_eq!(parse(&p), Err(VxlanError::NoVniFlag(0)));
        p[0] = FLAG_I;
        p[4..7].copy_from_slice(&[0x12, 0x34, 0x56]);
        assert_eq!(parse(&p).unwrap().vni, 0x123456);
    }
}
