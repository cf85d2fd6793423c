//! Bytes → a layered decode: outer link, network and transport layers, the
//! tunnel header (VXLAN, Geneve with its options, or NVGRE: GRE with a
//! key, IP protocol 47), then the same layers again for the inner frame.
//!
//! Pure and total: any byte string decodes to a [`Frame`]. A layer that is
//! cut short or makes no sense stops the decode there and leaves a
//! [`Stack::note`] saying why; what was read before it is kept, the way
//! `snoop` still shows the Ethernet header of a runt. Fields are read by
//! offset through [`get`]-style accessors that return `None` past the end,
//! rather than through smoltcp's checked views, because those refuse a
//! whole header when any of it is missing and a tracer wants the part that
//! is there. The VXLAN and Geneve headers are `overlay_wire`'s, so that
//! ovsnoop calls an error what overlayd drops.

use overlay_api::Mac;
use overlay_wire::{geneve, nvgre, vxlan};
use serde::Serialize;
use std::net::{Ipv4Addr, Ipv6Addr};

/// How the capture's link layer starts (pcap LINKTYPE_*).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkType {
    /// LINKTYPE_ETHERNET (1).
    Ethernet,
    /// LINKTYPE_LINUX_SLL (113), Linux cooked capture v1.
    LinuxSll,
    /// LINKTYPE_LINUX_SLL2 (276), Linux cooked capture v2.
    LinuxSll2,
}

/// Ethertypes this decoder follows.
const ET_IPV4: u16 = 0x0800;
const ET_ARP: u16 = 0x0806;
const ET_VLAN: u16 = 0x8100;
const ET_QINQ: u16 = 0x88a8;
const ET_IPV6: u16 = 0x86dd;

/// One captured frame, decoded as far as it goes.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Frame {
    /// Length on the wire (may exceed the captured bytes).
    pub len: usize,
    /// The underlay frame (or the only frame, when it is not VXLAN).
    pub outer: Stack,
    /// The VXLAN header, when the outer UDP port is a VXLAN port.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vxlan: Option<Vxlan>,
    /// The Geneve header, when the outer UDP port is a Geneve port.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub geneve: Option<Geneve>,
    /// The GRE header, when the outer IP protocol is GRE (47).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nvgre: Option<Nvgre>,
    /// The overlay frame inside the tunnel header.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inner: Option<Stack>,
}

/// The layers of one Ethernet frame.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Stack {
    /// Bytes of this frame on the wire, link header included.
    pub len: usize,
    /// Link layer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub link: Option<Link>,
    /// Network layer (ARP counts as one here, as in snoop).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub net: Option<Net>,
    /// Transport layer (ICMP counts as one here).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transport: Option<Transport>,
    /// Application layer (DHCP).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub app: Option<App>,
    /// Why the decode stopped early: truncated or invalid layer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// Link-layer header.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Link {
    /// Destination MAC (absent in Linux cooked captures).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dst: Option<Mac>,
    /// Source MAC.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub src: Option<Mac>,
    /// 802.1Q / 802.1ad VLAN IDs, outermost first.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub vlans: Vec<u16>,
    /// Ethertype of the payload.
    pub ethertype: u16,
}

/// Network layer.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Net {
    /// ARP for IPv4 over Ethernet.
    Arp {
        /// 1 request, 2 reply.
        op: u16,
        /// Sender MAC.
        sha: Mac,
        /// Sender IPv4.
        spa: Ipv4Addr,
        /// Target MAC.
        tha: Mac,
        /// Target IPv4.
        tpa: Ipv4Addr,
    },
    /// IPv4.
    Ipv4 {
        /// Source.
        src: Ipv4Addr,
        /// Destination.
        dst: Ipv4Addr,
        /// Protocol number.
        proto: u8,
        /// Time to live.
        ttl: u8,
        /// Total length.
        total_len: u16,
        /// Identification.
        id: u16,
        /// DF flag.
        df: bool,
        /// Fragment offset in bytes (non-first fragments are not decoded further).
        frag_off: u16,
        /// More-fragments flag.
        mf: bool,
    },
    /// IPv6.
    Ipv6 {
        /// Source.
        src: Ipv6Addr,
        /// Destination.
        dst: Ipv6Addr,
        /// Next header after the fixed header.
        next: u8,
        /// Hop limit.
        hop_limit: u8,
        /// Payload length.
        payload_len: u16,
        /// Flow label.
        flow: u32,
    },
    /// An ethertype this decoder does not follow.
    Other {
        /// The ethertype.
        ethertype: u16,
    },
}

/// Transport layer.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Transport {
    /// UDP.
    Udp {
        /// Source port.
        sport: u16,
        /// Destination port.
        dport: u16,
        /// Length field.
        len: u16,
    },
    /// TCP.
    Tcp {
        /// Source port.
        sport: u16,
        /// Destination port.
        dport: u16,
        /// Sequence number.
        seq: u32,
        /// Acknowledgement number.
        ack: u32,
        /// The flags byte (FIN 0x01 … CWR 0x80); [`tcp_flags`] spells it.
        flags: u8,
        /// Window.
        win: u16,
    },
    /// ICMP for IPv4.
    Icmp {
        /// Type.
        icmp_type: u8,
        /// Code.
        code: u8,
        /// Echo identifier, for echo request/reply.
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<u16>,
        /// Echo sequence number, for echo request/reply.
        #[serde(skip_serializing_if = "Option::is_none")]
        seq: Option<u16>,
    },
    /// ICMPv6, with the NDP target for NS/NA.
    Icmpv6 {
        /// Type.
        icmp_type: u8,
        /// Code.
        code: u8,
        /// Echo identifier.
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<u16>,
        /// Echo sequence number.
        #[serde(skip_serializing_if = "Option::is_none")]
        seq: Option<u16>,
        /// Target address of a neighbour solicitation or advertisement.
        #[serde(skip_serializing_if = "Option::is_none")]
        target: Option<Ipv6Addr>,
        /// Link-layer address option (source for NS, target for NA).
        #[serde(skip_serializing_if = "Option::is_none")]
        lladdr: Option<Mac>,
    },
    /// An IP protocol this decoder does not follow.
    Other {
        /// The protocol number.
        proto: u8,
    },
}

/// Application layer.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum App {
    /// DHCPv4 (BOOTP on ports 67/68).
    Dhcp {
        /// 1 BOOTREQUEST, 2 BOOTREPLY.
        op: u8,
        /// Transaction id.
        xid: u32,
        /// Client hardware address.
        chaddr: Mac,
        /// "Your" address.
        yiaddr: Ipv4Addr,
        /// Option 53, the DHCP message type, if present.
        #[serde(skip_serializing_if = "Option::is_none")]
        msg_type: Option<u8>,
    },
}

/// The VXLAN header.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Vxlan {
    /// Flags byte.
    pub flags: u8,
    /// VNI.
    pub vni: u32,
    /// The 24 reserved bits after the flags and the 8 after the VNI, as a
    /// sender left them (RFC 7348: zero on send, ignored on receive).
    pub reserved: u32,
    /// The overlay this VNI belongs to, when overlayd said.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub overlay: Option<String>,
}

/// The Geneve header (RFC 8926), options listed but not interpreted.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Geneve {
    /// Version (0 is the only one).
    pub version: u8,
    /// Bytes of options.
    pub opt_len: usize,
    /// The O bit: a control message, not a tenant frame.
    pub oam: bool,
    /// The C bit: critical options present.
    pub critical: bool,
    /// Protocol type of the payload (0x6558: Ethernet).
    pub protocol: u16,
    /// VNI.
    pub vni: u32,
    /// The options, in order.
    pub options: Vec<GeneveOpt>,
    /// The overlay this VNI belongs to, when overlayd said.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub overlay: Option<String>,
}

/// The GRE header of NVGRE (RFC 7637).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Nvgre {
    /// The first flags byte (C 0x80, R 0x40, K 0x20, S 0x10, s, recursion).
    pub flags: u8,
    /// Version.
    pub version: u8,
    /// Protocol type of the payload (0x6558: Ethernet).
    pub protocol: u16,
    /// The 32-bit key, when K is set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<u32>,
    /// Virtual Subnet ID (the key's top 24 bits), the overlay's VNI.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vsid: Option<u32>,
    /// FlowID (the key's low 8 bits).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub flow_id: Option<u8>,
    /// The overlay this VSID belongs to, when overlayd said.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub overlay: Option<String>,
}

/// One Geneve option.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct GeneveOpt {
    /// Option class.
    pub class: u16,
    /// Type, its high bit the critical bit.
    #[serde(rename = "type")]
    pub kind: u8,
    /// Bytes of data after the 4-byte option header.
    pub len: usize,
}

/// What the decoder needs besides the bytes.
#[derive(Clone, Debug)]
pub struct Options {
    /// UDP destination ports that carry VXLAN.
    pub vxlan_ports: Vec<u16>,
    /// UDP destination ports that carry Geneve.
    pub geneve_ports: Vec<u16>,
    /// Whether IP protocol 47 (GRE) is decoded as NVGRE.
    pub nvgre: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            vxlan_ports: vec![vxlan::DEFAULT_PORT],
            geneve_ports: vec![geneve::DEFAULT_PORT],
            nvgre: true,
        }
    }
}

/// Which tunnel header a transport payload starts with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Tunnel {
    Vxlan,
    Geneve,
    Nvgre,
}

fn u8_at(b: &[u8], i: usize) -> Option<u8> {
    b.get(i).copied()
}
fn u16_at(b: &[u8], i: usize) -> Option<u16> {
    Some(u16::from_be_bytes(
        b.get(i..i.checked_add(2)?)?.try_into().ok()?,
    ))
}
fn u32_at(b: &[u8], i: usize) -> Option<u32> {
    Some(u32::from_be_bytes(
        b.get(i..i.checked_add(4)?)?.try_into().ok()?,
    ))
}
fn mac_at(b: &[u8], i: usize) -> Option<Mac> {
    Some(Mac(b.get(i..i.checked_add(6)?)?.try_into().ok()?))
}
fn v4_at(b: &[u8], i: usize) -> Option<Ipv4Addr> {
    u32_at(b, i).map(Ipv4Addr::from)
}
fn v6_at(b: &[u8], i: usize) -> Option<Ipv6Addr> {
    let a: [u8; 16] = b.get(i..i.checked_add(16)?)?.try_into().ok()?;
    Some(Ipv6Addr::from(a))
}

/// The TCP flags byte as `SYN,ACK`-style text, into `out`.
pub fn tcp_flags(fl: u8, out: &mut impl std::fmt::Write) -> std::fmt::Result {
    const NAMES: [&str; 8] = ["FIN", "SYN", "RST", "PSH", "ACK", "URG", "ECE", "CWR"];
    let mut first = true;
    for (i, n) in NAMES.iter().enumerate() {
        if fl & (1 << i) != 0 {
            if !first {
                out.write_char(',')?;
            }
            out.write_str(n)?;
            first = false;
        }
    }
    Ok(())
}

impl Frame {
    /// The tunnel's VNI, whatever the tunnel.
    pub fn vni(&self) -> Option<u32> {
        match (&self.vxlan, &self.geneve, &self.nvgre) {
            (Some(v), _, _) => Some(v.vni),
            (_, Some(g), _) => Some(g.vni),
            (_, _, Some(n)) => n.vsid,
            _ => None,
        }
    }

    /// The overlay the tunnel's VNI belongs to, when overlayd said.
    pub fn overlay(&self) -> Option<&str> {
        match (&self.vxlan, &self.geneve, &self.nvgre) {
            (Some(v), _, _) => v.overlay.as_deref(),
            (_, Some(g), _) => g.overlay.as_deref(),
            (_, _, Some(n)) => n.overlay.as_deref(),
            _ => None,
        }
    }

    /// Names the overlay of the tunnel's VNI.
    pub fn set_overlay(&mut self, name: Option<String>) {
        if let Some(v) = self.vxlan.as_mut() {
            v.overlay = name;
        } else if let Some(g) = self.geneve.as_mut() {
            g.overlay = name;
        } else if let Some(n) = self.nvgre.as_mut() {
            n.overlay = name;
        }
    }

    /// The first thing wrong with this frame, outer layers first: a
    /// truncated or invalid layer, or VXLAN reserved bits set.
    pub fn error(&self) -> Option<&str> {
        self.outer
            .note
            .as_deref()
            .or_else(|| self.inner.as_ref().and_then(|i| i.note.as_deref()))
    }
}

/// Decodes one captured frame of link type `lt`; `len` is its length on
/// the wire.
pub fn decode(lt: LinkType, data: &[u8], len: usize, opts: &Options) -> Frame {
    let mut f = Frame {
        len,
        outer: Stack {
            len,
            ..Stack::default()
        },
        ..Frame::default()
    };
    let tunnel = decode_stack(lt, data, opts, &mut f.outer);
    if let Some((Tunnel::Geneve, payload)) = tunnel {
        decode_geneve(&mut f, payload, data.len());
    }
    if let Some((Tunnel::Nvgre, payload)) = tunnel {
        decode_nvgre(&mut f, payload, data.len());
    }
    if let Some((Tunnel::Vxlan, payload)) = tunnel {
        match vxlan::parse(payload) {
            Ok(p) => {
                let reserved = u32::from_be_bytes([payload[1], payload[2], payload[3], payload[7]]);
                if p.flags != vxlan::FLAG_I || reserved != 0 {
                    // RFC 7348 receivers ignore them, so the inner frame is
                    // still shown; a tracer says that the sender set them.
                    f.outer.note = Some(format!(
                        "VXLAN reserved bits set (flags {:#04x}, reserved {reserved:#010x})",
                        p.flags
                    ));
                }
                f.vxlan = Some(Vxlan {
                    flags: p.flags,
                    vni: p.vni,
                    reserved,
                    overlay: None,
                });
                let mut inner = Stack {
                    // What the capture cut off belongs to the inner frame.
                    len: p.inner.len() + len.saturating_sub(data.len()),
                    ..Stack::default()
                };
                decode_stack(LinkType::Ethernet, p.inner, &PLAIN, &mut inner);
                f.inner = Some(inner);
            }
            // A capture cut short says so already; that is the cause.
            Err(e) if f.outer.note.is_none() => f.outer.note = Some(format!("invalid VXLAN: {e}")),
            Err(_) => {}
        }
    }
    f
}

/// Fills `s` from `b`; returns the UDP payload when it is for a VXLAN port.
/// Inner frames are never tunnels again for us: no nested decap.
const PLAIN: Options = Options {
    vxlan_ports: Vec::new(),
    geneve_ports: Vec::new(),
    nvgre: false,
};

/// The GRE header and, when it is NVGRE's (Ethernet, a key), the inner
/// frame; what overlayd would drop is noted as an error.
fn decode_nvgre(f: &mut Frame, payload: &[u8], captured: usize) {
    let h = nvgre::Header(payload);
    if payload.len() < 4 {
        if f.outer.note.is_none() {
            f.outer.note = Some(format!(
                "invalid NVGRE: packet of {} bytes is shorter than a GRE header",
                payload.len()
            ));
        }
        return;
    }
    let key = h.key();
    f.nvgre = Some(Nvgre {
        flags: h.flags(),
        version: h.version(),
        protocol: h.protocol(),
        key,
        vsid: key.map(|k| k >> 8),
        flow_id: key.map(|k| k as u8),
        overlay: None,
    });
    if let Err(e) = nvgre::parse(payload) {
        if f.outer.note.is_none() {
            f.outer.note = Some(format!("invalid NVGRE: {e}"));
        }
    }
    if h.version() != 0 || h.protocol() != nvgre::PROTO_TEB {
        return;
    }
    let Some(inner_bytes) = payload
        .get(h.len()..)
        .filter(|b| b.len() >= nvgre::MIN_INNER)
    else {
        return;
    };
    let mut inner = Stack {
        len: inner_bytes.len() + f.len.saturating_sub(captured),
        ..Stack::default()
    };
    decode_stack(LinkType::Ethernet, inner_bytes, &PLAIN, &mut inner);
    f.inner = Some(inner);
}

/// The Geneve header and, when its payload is Ethernet, the inner frame.
/// What overlayd would drop (an unknown version, a control message, a
/// critical option) is noted as an error, but the inner frame is still
/// shown when it can be found: a tracer shows what it cannot forward.
fn decode_geneve(f: &mut Frame, payload: &[u8], captured: usize) {
    let h = geneve::Header(payload);
    if payload.len() < geneve::HEADER_LEN {
        if f.outer.note.is_none() {
            f.outer.note = Some(format!(
                "invalid Geneve: datagram of {} bytes is shorter than the header",
                payload.len()
            ));
        }
        return;
    }
    let options = geneve::options_of(payload)
        .map_while(Result::ok)
        .map(|o| GeneveOpt {
            class: o.class,
            kind: o.kind,
            len: o.data.len(),
        })
        .collect();
    f.geneve = Some(Geneve {
        version: h.version(),
        opt_len: h.options_len(),
        oam: h.control(),
        critical: h.critical(),
        protocol: h.protocol(),
        vni: h.vni(),
        options,
        overlay: None,
    });
    if let Err(e) = geneve::parse(payload) {
        if f.outer.note.is_none() {
            f.outer.note = Some(format!("invalid Geneve: {e}"));
        }
    }
    let start = geneve::HEADER_LEN + h.options_len();
    if h.version() != 0 || h.protocol() != geneve::PROTO_TEB {
        return;
    }
    let Some(inner_bytes) = payload
        .get(start..)
        .filter(|b| b.len() >= geneve::MIN_INNER)
    else {
        return;
    };
    let mut inner = Stack {
        len: inner_bytes.len() + f.len.saturating_sub(captured),
        ..Stack::default()
    };
    decode_stack(LinkType::Ethernet, inner_bytes, &PLAIN, &mut inner);
    f.inner = Some(inner);
}

fn decode_stack<'a>(
    lt: LinkType,
    b: &'a [u8],
    opts: &Options,
    s: &mut Stack,
) -> Option<(Tunnel, &'a [u8])> {
    let (link, rest) = match link(lt, b) {
        Ok(x) => x,
        Err(n) => {
            s.note = Some(n);
            return None;
        }
    };
    let et = link.ethertype;
    s.link = Some(link);
    match et {
        ET_ARP => {
            match arp(rest) {
                Ok(n) => s.net = Some(n),
                Err(note) => s.note = Some(note),
            }
            None
        }
        ET_IPV4 => ipv4(rest, opts, s),
        ET_IPV6 => ipv6(rest, opts, s),
        other => {
            s.net = Some(Net::Other { ethertype: other });
            None
        }
    }
}

fn link(lt: LinkType, b: &[u8]) -> Result<(Link, &[u8]), String> {
    let trunc = |what: &str| format!("truncated {what} header ({} bytes)", b.len());
    let (mut l, mut off) = match lt {
        LinkType::Ethernet => {
            let (Some(dst), Some(src), Some(et)) = (mac_at(b, 0), mac_at(b, 6), u16_at(b, 12))
            else {
                return Err(trunc("Ethernet"));
            };
            let l = Link {
                dst: Some(dst),
                src: Some(src),
                vlans: Vec::new(),
                ethertype: et,
            };
            (l, 14)
        }
        LinkType::LinuxSll => {
            let (Some(alen), Some(et)) = (u16_at(b, 4), u16_at(b, 14)) else {
                return Err(trunc("Linux cooked"));
            };
            let src = if alen == 6 { mac_at(b, 6) } else { None };
            (
                Link {
                    dst: None,
                    src,
                    vlans: Vec::new(),
                    ethertype: et,
                },
                16,
            )
        }
        LinkType::LinuxSll2 => {
            let (Some(et), Some(alen)) = (u16_at(b, 0), u8_at(b, 11)) else {
                return Err(trunc("Linux cooked v2"));
            };
            if b.len() < 20 {
                return Err(trunc("Linux cooked v2"));
            }
            let src = if alen == 6 { mac_at(b, 12) } else { None };
            (
                Link {
                    dst: None,
                    src,
                    vlans: Vec::new(),
                    ethertype: et,
                },
                20,
            )
        }
    };
    while l.ethertype == ET_VLAN || l.ethertype == ET_QINQ {
        let (Some(tci), Some(et)) = (u16_at(b, off), u16_at(b, off + 2)) else {
            return Err(trunc("802.1Q"));
        };
        l.vlans.push(tci & 0x0fff);
        l.ethertype = et;
        off += 4;
    }
    Ok((l, b.get(off..).unwrap_or_default()))
}

/// ARP for IPv4 over Ethernet (htype 1, ptype 0x0800, hlen 6, plen 4). Anything else is named
/// for what is wrong with it: too short for the fixed header or the addresses it announces, zero
/// address lengths (malformed whatever the types), or another hardware/protocol pair.
fn arp(b: &[u8]) -> Result<Net, String> {
    let truncated = || format!("truncated ARP ({} bytes)", b.len());
    let (Some(htype), Some(ptype), Some(hlen), Some(plen)) =
        (u16_at(b, 0), u16_at(b, 2), u8_at(b, 4), u8_at(b, 5))
    else {
        return Err(truncated());
    };
    if hlen == 0 || plen == 0 {
        return Err(format!(
            "malformed ARP: hardware length {hlen}, protocol length {plen}"
        ));
    }
    if (htype, ptype, hlen, plen) != (1, ET_IPV4, 6, 4) {
        return Err(format!(
            "ARP not for IPv4 over Ethernet: hardware type {htype} length {hlen}, \
             protocol type {ptype:#06x} length {plen}"
        ));
    }
    let (Some(op), Some(sha), Some(spa), Some(tha), Some(tpa)) = (
        u16_at(b, 6),
        mac_at(b, 8),
        v4_at(b, 14),
        mac_at(b, 18),
        v4_at(b, 24),
    ) else {
        return Err(truncated());
    };
    Ok(Net::Arp {
        op,
        sha,
        spa,
        tha,
        tpa,
    })
}

fn ipv4<'a>(b: &'a [u8], opts: &Options, s: &mut Stack) -> Option<(Tunnel, &'a [u8])> {
    let vihl = u8_at(b, 0);
    let (
        Some(vihl),
        Some(total_len),
        Some(id),
        Some(frag),
        Some(ttl),
        Some(proto),
        Some(src),
        Some(dst),
    ) = (
        vihl,
        u16_at(b, 2),
        u16_at(b, 4),
        u16_at(b, 6),
        u8_at(b, 8),
        u8_at(b, 9),
        v4_at(b, 12),
        v4_at(b, 16),
    )
    else {
        s.note = Some(format!("truncated IPv4 header ({} bytes)", b.len()));
        return None;
    };
    if vihl >> 4 != 4 {
        s.note = Some(format!("invalid IPv4: version {}", vihl >> 4));
        return None;
    }
    let ihl = usize::from(vihl & 0x0f) * 4;
    s.net = Some(Net::Ipv4 {
        src,
        dst,
        proto,
        ttl,
        total_len,
        id,
        df: frag & 0x4000 != 0,
        frag_off: (frag & 0x1fff) * 8,
        mf: frag & 0x2000 != 0,
    });
    if ihl < 20 || usize::from(total_len) < ihl {
        s.note = Some(format!(
            "invalid IPv4: header length {ihl}, total length {total_len}"
        ));
        return None;
    }
    if frag & 0x1fff != 0 {
        s.note = Some("IPv4 fragment (not reassembled)".into());
        return None;
    }
    // Ethernet padding past the total length is not payload.
    let end = usize::from(total_len).min(b.len());
    let payload = b.get(ihl..end).unwrap_or_default();
    let r = transport(proto, payload, false, opts, s);
    short_note(s, b.len(), usize::from(total_len));
    r
}

fn ipv6<'a>(b: &'a [u8], opts: &Options, s: &mut Stack) -> Option<(Tunnel, &'a [u8])> {
    let (Some(vtf), Some(payload_len), Some(next), Some(hop_limit), Some(src), Some(dst)) = (
        u32_at(b, 0),
        u16_at(b, 4),
        u8_at(b, 6),
        u8_at(b, 7),
        v6_at(b, 8),
        v6_at(b, 24),
    ) else {
        s.note = Some(format!("truncated IPv6 header ({} bytes)", b.len()));
        return None;
    };
    if vtf >> 28 != 6 {
        s.note = Some(format!("invalid IPv6: version {}", vtf >> 28));
        return None;
    }
    s.net = Some(Net::Ipv6 {
        src,
        dst,
        next,
        hop_limit,
        payload_len,
        flow: vtf & 0x000f_ffff,
    });
    let end = (40 + usize::from(payload_len)).min(b.len());
    let mut payload = b.get(40..end).unwrap_or_default();
    let mut proto = next;
    // Skip the extension headers that have the generic (next, len) shape.
    while matches!(proto, 0 | 43 | 60) {
        let (Some(n), Some(l)) = (u8_at(payload, 0), u8_at(payload, 1)) else {
            s.note = Some("truncated IPv6 extension header".into());
            return None;
        };
        let skip = (usize::from(l) + 1) * 8;
        payload = payload.get(skip..).unwrap_or_default();
        proto = n;
    }
    if proto == 44 {
        s.note = Some("IPv6 fragment (not reassembled)".into());
        return None;
    }
    let r = transport(proto, payload, true, opts, s);
    short_note(s, b.len(), 40 + usize::from(payload_len));
    r
}

/// Notes a packet whose capture stops before its IP length says it ends.
fn short_note(s: &mut Stack, have: usize, want: usize) {
    if have < want && s.note.is_none() {
        s.note = Some(format!("truncated: {have} of {want} IP bytes captured"));
    }
}

fn transport<'a>(
    proto: u8,
    b: &'a [u8],
    v6: bool,
    opts: &Options,
    s: &mut Stack,
) -> Option<(Tunnel, &'a [u8])> {
    let trunc = |what: &str| Some(format!("truncated {what} header ({} bytes)", b.len()));
    match proto {
        1 if !v6 => {
            let (Some(t), Some(code)) = (u8_at(b, 0), u8_at(b, 1)) else {
                s.note = trunc("ICMP");
                return None;
            };
            let echo = matches!(t, 0 | 8);
            s.transport = Some(Transport::Icmp {
                icmp_type: t,
                code,
                id: u16_at(b, 4).filter(|_| echo),
                seq: u16_at(b, 6).filter(|_| echo),
            });
            if b.len() < 8 {
                s.note = trunc("ICMP");
            }
        }
        58 if v6 => {
            let (Some(t), Some(code)) = (u8_at(b, 0), u8_at(b, 1)) else {
                s.note = trunc("ICMPv6");
                return None;
            };
            let echo = matches!(t, 128 | 129);
            let nd = matches!(t, 135 | 136);
            // NDP options after the target: type, length in 8-byte units.
            let mut lladdr = None;
            let mut off = 24;
            while nd && off < b.len() {
                let (Some(ot), Some(ol)) = (u8_at(b, off), u8_at(b, off + 1)) else {
                    break;
                };
                if ol == 0 {
                    break;
                }
                if (ot == 1 && t == 135) || (ot == 2 && t == 136) {
                    lladdr = mac_at(b, off + 2);
                }
                off += usize::from(ol) * 8;
            }
            s.transport = Some(Transport::Icmpv6 {
                icmp_type: t,
                code,
                id: u16_at(b, 4).filter(|_| echo),
                seq: u16_at(b, 6).filter(|_| echo),
                target: v6_at(b, 8).filter(|_| nd),
                lladdr,
            });
            if b.len() < 8 || (nd && v6_at(b, 8).is_none()) {
                s.note = trunc("NDP");
            }
        }
        17 => {
            let (Some(sport), Some(dport), Some(len)) = (u16_at(b, 0), u16_at(b, 2), u16_at(b, 4))
            else {
                s.note = trunc("UDP");
                return None;
            };
            s.transport = Some(Transport::Udp { sport, dport, len });
            let end = usize::from(len).clamp(8, b.len().max(8)).min(b.len());
            let payload = b.get(8..end).unwrap_or_default();
            if opts.vxlan_ports.contains(&dport) {
                return Some((Tunnel::Vxlan, payload));
            }
            if opts.geneve_ports.contains(&dport) {
                return Some((Tunnel::Geneve, payload));
            }
            if !v6 && (matches!(sport, 67 | 68) || matches!(dport, 67 | 68)) {
                s.app = dhcp(payload);
                if s.app.is_none() {
                    s.note = Some(format!("truncated DHCP ({} bytes)", payload.len()));
                }
            }
        }
        6 => {
            let (Some(sport), Some(dport), Some(seq), Some(ack), Some(fl), Some(win)) = (
                u16_at(b, 0),
                u16_at(b, 2),
                u32_at(b, 4),
                u32_at(b, 8),
                u8_at(b, 13),
                u16_at(b, 14),
            ) else {
                s.note = trunc("TCP");
                return None;
            };
            s.transport = Some(Transport::Tcp {
                sport,
                dport,
                seq,
                ack,
                flags: fl,
                win,
            });
        }
        47 if opts.nvgre => {
            s.transport = Some(Transport::Other { proto: 47 });
            return Some((Tunnel::Nvgre, b));
        }
        p => s.transport = Some(Transport::Other { proto: p }),
    }
    None
}

fn dhcp(b: &[u8]) -> Option<App> {
    let op = u8_at(b, 0)?;
    let xid = u32_at(b, 4)?;
    let yiaddr = v4_at(b, 16)?;
    let chaddr = mac_at(b, 28)?;
    let mut msg_type = None;
    // Options follow the 236-byte fixed part and the magic cookie.
    if u32_at(b, 236) == Some(0x6382_5363) {
        let mut off = 240;
        while let Some(code) = u8_at(b, off) {
            match code {
                0 => off += 1,
                255 => break,
                _ => {
                    let Some(l) = u8_at(b, off + 1) else { break };
                    if code == 53 {
                        msg_type = u8_at(b, off + 2);
                    }
                    off += 2 + usize::from(l);
                }
            }
        }
    }
    Some(App::Dhcp {
        op,
        xid,
        chaddr,
        yiaddr,
        msg_type,
    })
}

#[cfg(test)]
mod tests;
