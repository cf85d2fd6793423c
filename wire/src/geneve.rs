//! Geneve (RFC 8926) header, and the Geneve encapsulation module.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |Ver|  Opt Len  |O|C|    Rsvd.  |          Protocol Type        |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |        Virtual Network Identifier (VNI)       |    Reserved   |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                    Variable-Length Options                    |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//!
//! Option: |  Option Class (16)  |C|  Type (7) |R|R|R| Length (5) |  data…
//! ```
//!
//! What the RFC asks of a receiving endpoint, and what this one does:
//! a version other than 0 is dropped (`bad-version`); a packet with the O
//! bit is a control message and never reaches a tenant (`control-frame`);
//! this endpoint interprets no option, so an option whose type has the
//! critical bit — or the C bit, which says one is there — drops the packet
//! (`critical-option`); other options are skipped and counted. The payload
//! must be Ethernet (protocol type 0x6558). Senders write version 0, no
//! options, O and C clear.

use crate::encap::{DecapError, Decapped, Encap, EncapError, PropDesc, Socket};
use overlay_api::Perm;

/// Bytes in the fixed part of a Geneve header (what we send: no options).
pub const HEADER_LEN: usize = 8;
/// Largest header: the fixed part and 63 four-byte words of options.
pub const MAX_HEADER_LEN: usize = HEADER_LEN + 63 * 4;
/// IANA port for Geneve.
pub const DEFAULT_PORT: u16 = 6081;
/// Transparent Ethernet Bridging: the payload is an Ethernet frame.
pub const PROTO_TEB: u16 = 0x6558;
/// The O (control message) bit, in byte 1.
pub const FLAG_O: u8 = 0x80;
/// The C (critical options present) bit, in byte 1.
pub const FLAG_C: u8 = 0x40;
/// The critical bit of an option's type.
pub const OPT_CRITICAL: u8 = 0x80;
/// Smallest inner frame: an Ethernet header.
pub const MIN_INNER: usize = 14;

/// A zero-copy view of a Geneve header whose accessors never panic (a
/// short buffer reads as zeros); [`parse`] validates.
#[derive(Clone, Copy, Debug)]
pub struct Header<'a>(pub &'a [u8]);

impl Header<'_> {
    fn byte(&self, i: usize) -> u8 {
        self.0.get(i).copied().unwrap_or(0)
    }
    /// Version (2 bits).
    pub fn version(&self) -> u8 {
        self.byte(0) >> 6
    }
    /// Bytes of options (Opt Len × 4).
    pub fn options_len(&self) -> usize {
        (self.byte(0) & 0x3f) as usize * 4
    }
    /// The O bit.
    pub fn control(&self) -> bool {
        self.byte(1) & FLAG_O != 0
    }
    /// The C bit.
    pub fn critical(&self) -> bool {
        self.byte(1) & FLAG_C != 0
    }
    /// Protocol type of the payload.
    pub fn protocol(&self) -> u16 {
        u16::from_be_bytes([self.byte(2), self.byte(3)])
    }
    /// VNI (24 bits).
    pub fn vni(&self) -> u32 {
        u32::from_be_bytes([0, self.byte(4), self.byte(5), self.byte(6)])
    }
}

/// One option, as carried (not interpreted).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GeneveOption<'a> {
    /// Option class.
    pub class: u16,
    /// Type, with its critical bit ([`OPT_CRITICAL`]).
    pub kind: u8,
    /// Data (Length × 4 bytes).
    pub data: &'a [u8],
}

impl GeneveOption<'_> {
    /// Whether the receiver must understand it or drop the packet.
    pub fn is_critical(&self) -> bool {
        self.kind & OPT_CRITICAL != 0
    }
}

/// The options of a header, in order; stops at the first one that does not
/// fit (which [`parse`] refuses).
#[derive(Clone, Copy, Debug)]
pub struct Options<'a>(&'a [u8]);

impl<'a> Iterator for Options<'a> {
    type Item = Result<GeneveOption<'a>, DecapError>;
    fn next(&mut self) -> Option<Self::Item> {
        if self.0.is_empty() {
            return None;
        }
        let b = self.0;
        let Some(h) = b.first_chunk::<4>() else {
            self.0 = &[];
            return Some(Err(DecapError::Short(b.len())));
        };
        let len = 4 + (h[3] & 0x1f) as usize * 4;
        if len > b.len() {
            self.0 = &[];
            return Some(Err(DecapError::Short(b.len())));
        }
        self.0 = &b[len..];
        Some(Ok(GeneveOption {
            class: u16::from_be_bytes([h[0], h[1]]),
            kind: h[2],
            data: &b[4..len],
        }))
    }
}

/// A validated Geneve packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Packet<'a> {
    /// VNI.
    pub vni: u32,
    /// The flags byte as received (O and C clear; reserved bits as sent).
    pub flags: u8,
    /// The options area, whole.
    pub options: &'a [u8],
    /// Options in it.
    pub option_count: u16,
    /// The inner Ethernet frame.
    pub inner: &'a [u8],
}

impl<'a> Packet<'a> {
    /// The options, one by one.
    pub fn options(&self) -> Options<'a> {
        Options(self.options)
    }
}

/// The options area of any header that holds one whole (for decoders that
/// show what they cannot forward, like ovsnoop).
pub fn options_of(b: &[u8]) -> Options<'_> {
    let h = Header(b);
    Options(
        b.get(HEADER_LEN..HEADER_LEN + h.options_len())
            .unwrap_or(&[]),
    )
}

/// Parses a UDP payload as Geneve, as a receiving endpoint must.
pub fn parse(b: &[u8]) -> Result<Packet<'_>, DecapError> {
    let h = Header(b);
    if b.len() < HEADER_LEN {
        return Err(DecapError::Short(b.len()));
    }
    if h.version() != 0 {
        return Err(DecapError::BadVersion(h.version()));
    }
    let start = HEADER_LEN + h.options_len();
    if b.len() < start + MIN_INNER {
        return Err(DecapError::Short(b.len()));
    }
    if h.control() {
        return Err(DecapError::Control);
    }
    if h.protocol() != PROTO_TEB {
        return Err(DecapError::BadProtocol(h.protocol()));
    }
    let options = &b[HEADER_LEN..start];
    let mut count: u16 = 0;
    let mut first = None;
    for o in Options(options) {
        let o = o?;
        first.get_or_insert((o.class, o.kind));
        if o.is_critical() {
            return Err(DecapError::CriticalOption {
                class: o.class,
                kind: o.kind,
            });
        }
        count += 1;
    }
    if h.critical() {
        let (class, kind) = first.unwrap_or((0, 0));
        return Err(DecapError::CriticalOption { class, kind });
    }
    Ok(Packet {
        vni: h.vni(),
        flags: b[1],
        options,
        option_count: count,
        inner: &b[start..],
    })
}

/// Writes a header without options for `vni` (24 bits) into `out`.
pub fn emit(vni: u32, out: &mut [u8; HEADER_LEN]) {
    debug_assert!(vni <= 0x00ff_ffff);
    let v = vni.to_be_bytes();
    let p = PROTO_TEB.to_be_bytes();
    *out = [0, 0, p[0], p[1], v[1], v[2], v[3], 0];
}

/// The Geneve encapsulation module.
pub const MODULE: Encap = Encap {
    name: "geneve",
    header_len: HEADER_LEN,
    vni_bits: 24,
    socket: Socket::Udp,
    props: &[
        PropDesc {
            name: "geneve/listen_ip",
            perm: Perm::Rw,
            required: true,
            default: None,
            possible: None,
        },
        PropDesc {
            name: "geneve/listen_port",
            perm: Perm::Rw,
            required: true,
            default: Some("6081"),
            possible: Some("1-65535"),
        },
    ],
    encap: |vni, out| {
        let have = out.len();
        let h = out
            .first_chunk_mut::<HEADER_LEN>()
            .ok_or(EncapError::short("geneve", HEADER_LEN, have))?;
        emit(vni, h);
        Ok(())
    },
    decap: |b| {
        parse(b).map(|p| Decapped {
            vni: p.vni,
            inner: p.inner,
            options: p.option_count,
        })
    },
};

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A header with `opts` (class, type, data words) in front of `inner`.
    fn with_options(vni: u32, flags: u8, opts: &[(u16, u8, u8)], inner: &[u8]) -> Vec<u8> {
        let mut b = vec![0u8; HEADER_LEN];
        emit(vni, (&mut b[..]).try_into().unwrap());
        for &(class, kind, words) in opts {
            b.extend_from_slice(&class.to_be_bytes());
            b.extend_from_slice(&[kind, words]);
            b.extend(std::iter::repeat_n(0xa5, words as usize * 4));
        }
        b[0] = ((b.len() - HEADER_LEN) / 4) as u8;
        b[1] = flags;
        b.extend_from_slice(inner);
        b
    }

    proptest! {
        #[test]
        fn encap_decap_round_trip(vni in 0..=0x00ff_ffffu32, inner in proptest::collection::vec(any::<u8>(), MIN_INNER..1600)) {
            let mut pkt = vec![0u8; HEADER_LEN];
            emit(vni, (&mut pkt[..]).try_into().unwrap());
            pkt.extend_from_slice(&inner);
            let p = parse(&pkt).unwrap();
            prop_assert_eq!((p.vni, p.inner, p.option_count), (vni, &inner[..], 0));
        }

        #[test]
        fn non_critical_options_are_skipped(vni in 0..=0x00ff_ffffu32,
                opts in proptest::collection::vec((any::<u16>(), 0u8..0x80, 0u8..4), 0..8)) {
            let inner = [7u8; MIN_INNER];
            let b = with_options(vni, 0, &opts, &inner);
            let p = parse(&b).unwrap();
            prop_assert_eq!(p.vni, vni);
            prop_assert_eq!(p.inner, &inner[..]);
            prop_assert_eq!(p.option_count as usize, opts.len());
            let got: Vec<_> = p.options().map(|o| { let o = o.unwrap(); (o.class, o.kind, (o.data.len() / 4) as u8) }).collect();
            prop_assert_eq!(got, opts);
        }

        #[test]
        fn never_panics(b in proptest::collection::vec(any::<u8>(), 0..300)) {
            if let Ok(p) = parse(&b) {
                prop_assert!(p.inner.len() >= MIN_INNER);
                prop_assert_eq!(HEADER_LEN + p.options.len() + p.inner.len(), b.len());
            }
            for _ in options_of(&b) {}
        }
    }

    #[test]
    fn receiver_rules() {
        let inner = [0u8; MIN_INNER];
        let ok = with_options(5, 0, &[], &inner);
        assert_eq!(parse(&ok).unwrap().vni, 5);
        let mut v1 = ok.clone();
        v1[0] |= 0x40;
        assert_eq!(parse(&v1), Err(DecapError::BadVersion(1)));
        let mut o = ok.clone();
        o[1] = FLAG_O;
        assert_eq!(parse(&o), Err(DecapError::Control));
        let mut p = ok.clone();
        p[2..4].copy_from_slice(&0x0800u16.to_be_bytes());
        assert_eq!(parse(&p), Err(DecapError::BadProtocol(0x0800)));
        let crit = with_options(5, FLAG_C, &[(0x0102, 0x80 | 3, 1)], &inner);
        assert_eq!(
            parse(&crit),
            Err(DecapError::CriticalOption {
                class: 0x0102,
                kind: 0x83
            })
        );
        // A critical option is refused even if the sender forgot the C bit,
        // and the C bit is believed even without one.
        let crit = with_options(5, 0, &[(1, 2, 0), (9, 0x81, 0)], &inner);
        assert_eq!(
            parse(&crit),
            Err(DecapError::CriticalOption {
                class: 9,
                kind: 0x81
            })
        );
        let c = with_options(5, FLAG_C, &[(1, 2, 0)], &inner);
        assert!(matches!(parse(&c), Err(DecapError::CriticalOption { .. })));
        // Truncated: in the header, in the options, in the inner frame, and
        // an option longer than the options area.
        assert_eq!(parse(&ok[..7]), Err(DecapError::Short(7)));
        assert_eq!(parse(&ok[..21]), Err(DecapError::Short(21)));
        let opt = with_options(5, 0, &[(1, 2, 2)], &inner);
        assert_eq!(parse(&opt[..20]), Err(DecapError::Short(20)));
        let mut bad = with_options(5, 0, &[(1, 2, 1)], &inner);
        bad[HEADER_LEN + 3] = 5;
        assert!(matches!(parse(&bad), Err(DecapError::Short(_))));
    }
}
