//! The encapsulation plugin interface: what overlayd needs to know of an
//! encapsulation module, in the shape of illumos' `overlay_plugin_register_t`
//! (`overlay_plugin.h`): a name, the properties it adds to an overlay with
//! their PERM/REQ/DEFAULT/POSSIBLE, the kind of socket it travels on, the
//! width of its virtual network identifier, and its two operations, encap
//! (write a header) and decap (validate a header and find the inner frame).
//!
//! A module is one file that defines one [`Encap`] value (`vxlan::MODULE`,
//! `geneve::MODULE`, ...) and one line in [`MODULES`]; the property checks,
//! the mux, the data path and the counters take everything from here.
//!
//! Decap errors are one shared, typed set ([`DecapError`]) so that each maps
//! to one [`DropReason`] whatever module found it: a Geneve header of an
//! unknown version and a GRE header of an unknown version are both
//! `bad-version`.

use overlay_api::{DropReason, Perm};

/// How a module's datagrams travel on the underlay.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Socket {
    /// In UDP, on a listen port (`<module>/listen_port`).
    Udp,
    /// Directly in IP, with this protocol number, on a raw socket (no port).
    RawIp(u8),
}

/// What a module's underlay destinations are made of: what a search plugin
/// must say of each VL2 MAC (illumos' `overlay_plugin_dest_t`, which each
/// encapsulation module declares: `OVERLAY_PLUGIN_D_IP`, with
/// `OVERLAY_PLUGIN_D_PORT` for the UDP ones).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DestType {
    /// An IP address only (NVGRE: raw IP, no port).
    Ip,
    /// An IP address and a UDP port (VXLAN, Geneve).
    #[default]
    IpPort,
}

/// One property a module adds to an overlay (`show-overlay`'s row).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PropDesc {
    /// Full name, `<module>/<property>`.
    pub name: &'static str,
    /// Whether it may be set.
    pub perm: Perm,
    /// Whether an overlay needs it (given, or from its default).
    pub required: bool,
    /// Value when not given.
    pub default: Option<&'static str>,
    /// What it accepts, as shown.
    pub possible: Option<&'static str>,
}

/// What decap found in a valid header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decapped<'a> {
    /// Virtual network identifier.
    pub vni: u32,
    /// The inner Ethernet frame (at least an Ethernet header long).
    pub inner: &'a [u8],
    /// Options the header carried that were skipped, not interpreted
    /// (Geneve's non-critical options; 0 for modules without options).
    pub options: u16,
}

/// Why a header could not be written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EncapError {
    /// The buffer is shorter than the module's header.
    #[error("a {name} header needs {need} bytes, the buffer has {have}")]
    Short {
        /// The module.
        name: &'static str,
        /// Its header's length.
        need: usize,
        /// The buffer's length.
        have: usize,
    },
}

impl EncapError {
    /// The error for module `name`, whose header is `need` bytes, writing
    /// into `have` bytes.
    pub fn short(name: &'static str, need: usize, have: usize) -> EncapError {
        EncapError::Short { name, need, have }
    }
}

/// Why a received datagram is not a usable packet of a module.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecapError {
    /// Shorter than the header (with its options) and an Ethernet header.
    #[error("datagram of {0} bytes is shorter than the header and an Ethernet header")]
    Short(usize),
    /// VXLAN's I flag is clear.
    #[error("VXLAN header without the I flag (flags {0:#04x})")]
    NoVniFlag(u8),
    /// A header version this module does not know.
    #[error("header version {0} is not supported")]
    BadVersion(u8),
    /// A control message (Geneve's O bit), never forwarded to a tenant.
    #[error("control message (O bit set), not a tenant frame")]
    Control,
    /// An option marked critical that this endpoint does not understand.
    #[error("critical option class {class:#06x} type {kind:#04x} is not understood")]
    CriticalOption {
        /// Option class.
        class: u16,
        /// Option type (with its critical bit).
        kind: u8,
    },
    /// The payload is not Ethernet (Transparent Ethernet Bridging, 0x6558).
    #[error("protocol type {0:#06x} is not Transparent Ethernet Bridging (0x6558)")]
    BadProtocol(u16),
    /// A GRE header without a key (NVGRE needs its VSID).
    #[error("GRE header without the K bit: no VSID")]
    NoKey,
    /// A GRE checksum that does not match the packet.
    #[error("GRE checksum does not match")]
    BadChecksum,
}

impl DecapError {
    /// The drop reason counters and probes show for this error.
    pub fn reason(self) -> DropReason {
        match self {
            DecapError::Short(_) => DropReason::ShortHeader,
            DecapError::NoVniFlag(_) => DropReason::NoVniFlag,
            DecapError::BadVersion(_) => DropReason::BadVersion,
            DecapError::Control => DropReason::ControlFrame,
            DecapError::CriticalOption { .. } => DropReason::CriticalOption,
            DecapError::BadProtocol(_) => DropReason::BadProtocol,
            DecapError::NoKey => DropReason::NoKey,
            DecapError::BadChecksum => DropReason::BadChecksum,
        }
    }
}

/// An encapsulation module.
#[derive(Clone, Copy, Debug)]
pub struct Encap {
    /// Its name (`-e NAME`, the `encap` property).
    pub name: &'static str,
    /// Bytes of the header [`Encap::encap`] writes.
    pub header_len: usize,
    /// Bits in its virtual network identifier.
    pub vni_bits: u32,
    /// Its socket.
    pub socket: Socket,
    /// Its properties. Every module has `<name>/listen_ip`; UDP modules
    /// also `<name>/listen_port`, whose default is the module's port.
    pub props: &'static [PropDesc],
    /// Writes a header for `vni` into the first `header_len` bytes of
    /// `out`; an `out` shorter than that is refused, with nothing written.
    /// (Flow entropy is the underlay's: UDP modules carry it in the source
    /// port, and NVGRE's FlowID is left 0, as RFC 7637 allows.)
    pub encap: fn(vni: u32, out: &mut [u8]) -> Result<(), EncapError>,
    /// Validates a received datagram (UDP payload, or IP payload for a raw
    /// module) and finds its VNI and inner frame.
    pub decap: fn(&[u8]) -> Result<Decapped<'_>, DecapError>,
}

/// Modules are one per name: two are the same if their names are.
impl PartialEq for Encap {
    fn eq(&self, other: &Encap) -> bool {
        self.name == other.name
    }
}
impl Eq for Encap {}

impl Encap {
    /// Largest VNI the module carries.
    pub const fn vni_max(&self) -> u32 {
        if self.vni_bits >= 32 {
            u32::MAX
        } else {
            (1 << self.vni_bits) - 1
        }
    }

    /// The full name of one of its properties (`<name>/<prop>`), if it has it.
    pub fn prop(&self, suffix: &str) -> Option<&'static PropDesc> {
        self.props.iter().find(|p| {
            p.name
                .strip_prefix(self.name)
                .and_then(|s| s.strip_prefix('/'))
                == Some(suffix)
        })
    }

    /// What its destinations are made of: a port only if it travels in UDP.
    pub const fn dest(&self) -> DestType {
        match self.socket {
            Socket::Udp => DestType::IpPort,
            Socket::RawIp(_) => DestType::Ip,
        }
    }

    /// Default UDP port (from `<name>/listen_port`), or None for raw-IP modules.
    pub fn default_port(&self) -> Option<u16> {
        self.prop("listen_port")?.default?.parse().ok()
    }
}

/// Every module this build has.
pub const MODULES: &[&Encap] = &[
    &crate::vxlan::MODULE,
    &crate::geneve::MODULE,
    &crate::nvgre::MODULE,
];

/// The module called `name`.
pub fn module(name: &str) -> Option<&'static Encap> {
    MODULES.iter().copied().find(|m| m.name == name)
}

/// The names of every module, in order.
pub fn names() -> impl Iterator<Item = &'static str> {
    MODULES.iter().map(|m| m.name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_module_is_whole() {
        for m in MODULES {
            assert_eq!(module(m.name).map(|x| x.name), Some(m.name));
            let ip = m.prop("listen_ip").expect("listen_ip");
            assert!(ip.required && ip.perm == Perm::Rw);
            match m.socket {
                Socket::Udp => {
                    assert!(m.default_port().is_some(), "{}", m.name);
                    assert_eq!(m.dest(), DestType::IpPort, "{}", m.name);
                }
                Socket::RawIp(_) => {
                    assert!(m.prop("listen_port").is_none());
                    assert_eq!(m.dest(), DestType::Ip, "{}", m.name);
                }
            }
            assert_eq!(m.vni_max(), 0x00ff_ffff);
            // What encap writes, decap reads back.
            let mut d = vec![0u8; m.header_len + 14];
            (m.encap)(0x12_3456, &mut d[..m.header_len]).unwrap();
            // A short buffer is refused, untouched.
            let mut short = vec![0x5au8; m.header_len - 1];
            assert_eq!(
                (m.encap)(1, &mut short),
                Err(EncapError::short(m.name, m.header_len, m.header_len - 1))
            );
            assert!(short.iter().all(|b| *b == 0x5a), "{}", m.name);
            let p = (m.decap)(&d).unwrap();
            assert_eq!((p.vni, p.inner.len(), p.options), (0x12_3456, 14, 0));
        }
    }
}
