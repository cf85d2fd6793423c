//! VNICs: many guests on one overlay per host.
//!
//! On illumos one creates VNICs over an overlay device, one per zone or VM.
//! On Linux a VNIC is a *macvlan* in bridge mode over the overlay's TAP
//! device, optionally moved into a network namespace (a guest). Frames a
//! guest sends to another VNIC of the same TAP cross the kernel's macvlan
//! bridge and never reach overlayd; frames for anyone else leave through the
//! TAP device, where overlayd reads them as any other frame, and frames
//! overlayd writes into the TAP device are delivered by the kernel to the
//! VNIC that owns the destination MAC (broadcasts to every VNIC).
//!
//! The links are made with rtnetlink on a blocking socket (no runtime):
//! `RTM_NEWLINK` (kind macvlan, mode bridge, `IFLA_LINK` the TAP's ifindex,
//! `IFLA_ADDRESS`, `IFLA_MTU` the overlay's, `IFLA_NET_NS_FD` for a guest)
//! and `RTM_DELLINK`. A VNIC inside a guest namespace is deleted from there:
//! a short-lived thread `setns`es into the namespace and opens its netlink
//! socket, whose namespace is fixed at creation. When the TAP device goes
//! (the overlay is deleted, or a temporary overlay's overlayd exits) the
//! kernel removes every macvlan over it, wherever it lives. A persistent
//! overlay's TAP device outlives overlayd, and so do its VNICs: a restarted
//! overlayd finds them again ([`exists`]) or, after a reboot, makes them
//! anew (see `persist.rs`).
//!
//! Counters per VNIC MAC live in [`VnicCounters`] in the overlay, and the
//! data path looks them up by a linear scan of a short vector: no hashing,
//! no allocation, and nothing at all when the overlay has no VNICs.

use netlink_packet_core::{NLM_F_ACK, NLM_F_CREATE, NLM_F_EXCL};
use netlink_packet_route::link::{
    InfoData, InfoKind, InfoMacVlan, LinkAttribute, LinkFlags, LinkInfo, LinkMessage, MacVlanMode,
};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_sys::Socket;
use overlay_api::{Mac, MacAddrType, VnicRow, VnicStats};
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::path::PathBuf;

/// Where `ip netns` keeps its named namespaces.
pub const NETNS_DIR: &str = "/run/netns";

/// A VNIC as overlayd holds it: what it is and what it counted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vnic {
    /// Link name.
    pub name: String,
    /// Its MAC.
    pub mac: Mac,
    /// Random or fixed.
    pub addrtype: MacAddrType,
    /// The guest namespace it lives in, if not overlayd's.
    pub netns: Option<String>,
    /// Counters.
    pub counters: VnicCounters,
}

/// Frames and bytes to and from one VNIC's MAC, as overlayd saw them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VnicCounters {
    /// Frames delivered to the VNIC from the underlay.
    pub rx_frames: u64,
    /// Their bytes.
    pub rx_bytes: u64,
    /// Frames read from the TAP device with the VNIC's source MAC.
    pub tx_frames: u64,
    /// Their bytes.
    pub tx_bytes: u64,
}

impl VnicCounters {
    /// Moves what `other` counted into these, leaving `other` at zero.
    pub fn take_from(&mut self, other: &mut VnicCounters) {
        let o = std::mem::take(other);
        self.rx_frames += o.rx_frames;
        self.rx_bytes += o.rx_bytes;
        self.tx_frames += o.tx_frames;
        self.tx_bytes += o.tx_bytes;
    }
}

impl Vnic {
    /// Its `show-vnic` row, over overlay `over` of MTU `mtu`.
    pub fn row(&self, over: &str, mtu: u32) -> VnicRow {
        VnicRow {
            link: self.name.clone(),
            over: over.to_string(),
            macaddress: self.mac,
            macaddrtype: self.addrtype,
            netns: self.netns.clone(),
            mtu,
        }
    }

    /// Its counters for the statistics snapshot.
    pub fn stats(&self) -> VnicStats {
        let c = &self.counters;
        VnicStats {
            name: self.name.clone(),
            mac: self.mac,
            rx_frames: c.rx_frames,
            rx_bytes: c.rx_bytes,
            tx_frames: c.tx_frames,
            tx_bytes: c.tx_bytes,
        }
    }
}

/// The counters of the VNIC whose MAC is `mac`, if one has it.
#[inline]
pub fn counters_of(vnics: &mut [Vnic], mac: Mac) -> Option<&mut VnicCounters> {
    vnics
        .iter_mut()
        .find(|v| v.mac == mac)
        .map(|v| &mut v.counters)
}

/// Checks a VNIC (link) name as the kernel will take it: 1-15 bytes, no
/// `/`, `:` or whitespace, not `.` or `..`.
pub fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() >= libc::IFNAMSIZ {
        return Err(format!(
            "VNIC name '{name}' must have 1-{} bytes",
            libc::IFNAMSIZ - 1
        ));
    }
    if name == "."
        || name == ".."
        || name
            .chars()
            .any(|c| c == '/' || c == ':' || c.is_whitespace())
    {
        return Err(format!(
            "VNIC name '{name}' is not a valid link name (no '/', ':' or spaces, not '.' or '..')"
        ));
    }
    Ok(())
}

/// The path of a named network namespace, checking that the name is one
/// (no path separators) and that the namespace exists.
pub fn netns_path(ns: &str) -> Result<PathBuf, String> {
    if ns.is_empty() || ns == "." || ns == ".." || ns.contains('/') {
        return Err(format!(
            "'{ns}' is not a network namespace name (as `ip netns` names them)"
        ));
    }
    let p = PathBuf::from(NETNS_DIR).join(ns);
    if !p.exists() {
        return Err(format!(
            "no such network namespace: {ns} ({} does not exist; create it with `ip netns add {ns}`)",
            p.display()
        ));
    }
    Ok(p)
}

/// A random locally administered unicast MAC.
pub fn random_mac() -> io::Result<Mac> {
    let mut b = [0u8; 6];
    // SAFETY: getrandom(2) writes at most b.len() bytes into b.
    let n = unsafe { libc::getrandom(b.as_mut_ptr().cast(), b.len(), 0) };
    if n != b.len() as isize {
        return Err(io::Error::last_os_error());
    }
    Ok(Mac::local_unicast(b))
}

/// A netlink route socket in the calling thread's network namespace.
fn socket() -> io::Result<Socket> {
    crate::netlink::socket()
}

/// Sends one request and collects the link messages of its answer, until
/// the kernel's acknowledgement; a negative acknowledgement is the error.
fn request(sock: &Socket, msg: RouteNetlinkMessage, flags: u16) -> io::Result<Vec<LinkMessage>> {
    let replies = crate::netlink::request(sock, msg, NLM_F_ACK | flags)?;
    Ok(replies
        .into_iter()
        .filter_map(|m| match m {
            RouteNetlinkMessage::NewLink(l) => Some(l),
            _ => None,
        })
        .collect())
}

/// The ifindex and MAC of link `name` in the calling thread's namespace.
fn link_by_name(sock: &Socket, name: &str) -> io::Result<(u32, Option<Mac>)> {
    let mut m = LinkMessage::default();
    m.attributes.push(LinkAttribute::IfName(name.to_string()));
    let links = request(sock, RouteNetlinkMessage::GetLink(m), 0)?;
    let l = links
        .first()
        .ok_or_else(|| io::Error::from_raw_os_error(libc::ENODEV))?;
    let mac = l.attributes.iter().find_map(|a| match a {
        LinkAttribute::Address(b) if b.len() == 6 => {
            let mut m = [0u8; 6];
            m.copy_from_slice(b);
            Some(Mac(m))
        }
        _ => None,
    });
    Ok((l.header.index, mac))
}

/// The MAC of a link in overlayd's namespace (the TAP device's own).
pub fn link_mac(name: &str) -> io::Result<Option<Mac>> {
    link_by_name(&socket()?, name).map(|(_, mac)| mac)
}

/// Creates VNIC `name`: a macvlan in bridge mode over TAP device `lower`
/// with `mac` and `mtu`, up, in guest namespace `netns` if given. Brings
/// the TAP device up too, since a VNIC over a down link carries nothing.
pub fn create(name: &str, lower: &str, mac: Mac, mtu: u32, netns: Option<&str>) -> io::Result<()> {
    let ns_file = match netns {
        Some(ns) => Some(File::open(PathBuf::from(NETNS_DIR).join(ns))?),
        None => None,
    };
    let sock = socket()?;
    let (lower_index, _) = link_by_name(&sock, lower)?;
    let mut up = LinkMessage::default();
    up.header.index = lower_index;
    up.header.flags = LinkFlags::Up;
    up.header.change_mask = LinkFlags::Up;
    request(&sock, RouteNetlinkMessage::SetLink(up), 0)?;

    let mut m = LinkMessage::default();
    m.header.flags = LinkFlags::Up;
    m.header.change_mask = LinkFlags::Up;
    m.attributes = vec![
        LinkAttribute::IfName(name.to_string()),
        LinkAttribute::Link(lower_index),
        LinkAttribute::Address(mac.0.to_vec()),
        LinkAttribute::Mtu(mtu),
        LinkAttribute::LinkInfo(vec![
            LinkInfo::Kind(InfoKind::MacVlan),
            LinkInfo::Data(InfoData::MacVlan(vec![InfoMacVlan::Mode(
                MacVlanMode::Bridge,
            )])),
        ]),
    ];
    if let Some(f) = &ns_file {
        m.attributes.push(LinkAttribute::NetNsFd(f.as_raw_fd()));
    }
    request(
        &sock,
        RouteNetlinkMessage::NewLink(m),
        NLM_F_CREATE | NLM_F_EXCL,
    )?;
    Ok(())
}

/// Deletes VNIC `name` (of MAC `mac`) from guest namespace `netns`, or from
/// overlayd's own. A link of that name with another MAC is not ours and is
/// left alone; one that is already gone (its namespace was deleted, taking
/// it along) is not an error: `Ok(false)` says there was nothing to delete.
pub fn delete(name: &str, mac: Mac, netns: Option<&str>) -> io::Result<bool> {
    let del = || -> io::Result<bool> {
        let sock = socket()?;
        let (index, have) = match link_by_name(&sock, name) {
            Ok(l) => l,
            Err(e) if e.raw_os_error() == Some(libc::ENODEV) => return Ok(false),
            Err(e) => return Err(e),
        };
        if have != Some(mac) {
            return Ok(false);
        }
        let mut m = LinkMessage::default();
        m.header.index = index;
        match request(&sock, RouteNetlinkMessage::DelLink(m), 0) {
            Ok(_) => Ok(true),
            Err(e) if e.raw_os_error() == Some(libc::ENODEV) => Ok(false),
            Err(e) => Err(e),
        }
    };
    match netns {
        None => del(),
        Some(ns) => {
            let f = match File::open(PathBuf::from(NETNS_DIR).join(ns)) {
                Ok(f) => f,
                // The namespace is gone, and the VNIC with it.
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
                Err(e) => return Err(e),
            };
            in_ns(&f, del)
        }
    }
}

/// Runs `op` on a short-lived thread inside the network namespace `ns`
/// (an open `/run/netns` file), where its netlink sockets belong.
fn in_ns<T: Send>(ns: &File, op: impl FnOnce() -> io::Result<T> + Send) -> io::Result<T> {
    std::thread::scope(|s| {
        s.spawn(|| {
            // SAFETY: setns(2) on a descriptor we hold; it changes
            // only this short-lived thread's network namespace.
            if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                return Err(io::Error::last_os_error());
            }
            op()
        })
        .join()
        .unwrap_or_else(|_| Err(io::Error::other("netns helper thread panicked")))
    })
}

/// Whether VNIC `name` with MAC `mac` exists in guest namespace `netns`
/// (or overlayd's own): what a restarted overlayd re-adopts instead of
/// creating again. A missing namespace holds no VNIC.
pub fn exists(name: &str, mac: Mac, netns: Option<&str>) -> io::Result<bool> {
    let look = || -> io::Result<bool> {
        match link_by_name(&socket()?, name) {
            Ok((_, have)) => Ok(have == Some(mac)),
            Err(e) if e.raw_os_error() == Some(libc::ENODEV) => Ok(false),
            Err(e) => Err(e),
        }
    };
    match netns {
        None => look(),
        Some(ns) => match File::open(PathBuf::from(NETNS_DIR).join(ns)) {
            Ok(f) => in_ns(&f, look),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked_like_the_kernel() {
        assert!(check_name("g1").is_ok());
        assert!(check_name("ov0-vnic-12345").is_ok());
        assert!(check_name("").unwrap_err().contains("1-15 bytes"));
        assert!(check_name("sixteen-chars-xx").is_err());
        for bad in [".", "..", "a/b", "a b", "a:1"] {
            assert!(
                check_name(bad)
                    .unwrap_err()
                    .contains("not a valid link name"),
                "{bad}"
            );
        }
    }

    #[test]
    fn netns_names_are_names_and_must_exist() {
        assert!(netns_path("../etc")
            .unwrap_err()
            .contains("not a network namespace name"));
        assert!(netns_path("").is_err());
        let e = netns_path("ovt-no-such-namespace-here").unwrap_err();
        assert!(
            e.contains("no such network namespace: ovt-no-such-namespace-here"),
            "{e}"
        );
    }

    #[test]
    fn random_macs_are_local_unicast_and_differ() {
        let a = random_mac().expect("getrandom");
        let b = random_mac().expect("getrandom");
        assert!(a.is_unicast() && a.is_local(), "{a}");
        assert_ne!(a, b);
    }

    #[test]
    fn counters_are_found_by_mac() {
        let v = |name: &str, last| Vnic {
            name: name.into(),
            mac: Mac([2, 0, 0, 0, 0, last]),
            addrtype: MacAddrType::Fixed,
            netns: None,
            counters: VnicCounters::default(),
        };
        let mut vnics = vec![v("a", 1), v("b", 2)];
        counters_of(&mut vnics, Mac([2, 0, 0, 0, 0, 2]))
            .expect("b")
            .rx_frames += 1;
        assert!(counters_of(&mut vnics, Mac([2, 0, 0, 0, 0, 3])).is_none());
        assert_eq!(vnics[1].stats().rx_frames, 1);
        assert_eq!(vnics[0].stats().rx_frames, 0);
        let row = vnics[1].row("ov0", 1400);
        assert_eq!((row.over.as_str(), row.mtu), ("ov0", 1400));
    }
}
