//! `--capture -w FILE`: captured frames as pcapng, each with overlayd's
//! verdict in its comment, so that Wireshark and tshark show why
//! (`tshark -r FILE -T fields -e frame.interface_name -e frame.comment`).
//!
//! One interface description block per overlay (named after it, its VNI
//! in the description, Ethernet, nanosecond timestamps), written when the
//! capture starts, so an overlay that sent nothing still has its
//! interface; one per mux for the datagrams a mux dropped before any
//! overlay (raw IP: an IPv4 or IPv6 and UDP header — or GRE, for a mux
//! without a port — is put in front of the datagram as it was received,
//! so that Wireshark decodes the encapsulation; with `--outer`, received
//! frames too, as the datagrams they came in). Each frame is an enhanced
//! packet block whose comment option holds the verdict (`dropped:
//! not-answered`, `sent to 10.0.0.2:4789`). At the end, an interface
//! statistics block per interface gives the frames captured on it and,
//! when frames were lost, says how many in its comment (and in
//! `isb_ifdrop` of the first interface).
//!
//! pcap-parser (its `serialize` feature, as `-w` for pcap) writes the
//! blocks; lengths and padding are its.

use overlay_api::capture::CaptureDir;
use pcap_parser::{
    EnhancedPacketBlock, InterfaceDescriptionBlock, InterfaceStatisticsBlock, Linktype, OptionCode,
    PcapNGOption, SectionHeaderBlock, ToVec,
};
use std::borrow::Cow;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

/// Why the pcapng file cannot be written.
#[derive(Debug, thiserror::Error)]
#[error("cannot write {path}: {detail}")]
pub struct PcapngError {
    /// The file.
    pub path: PathBuf,
    /// What failed.
    pub detail: String,
}

/// An interface of the file.
struct Iface {
    key: String,
    frames: u64,
}

/// A pcapng file being written.
pub struct PcapngWriter {
    path: PathBuf,
    out: BufWriter<File>,
    ifaces: Vec<Iface>,
}

fn opt(code: OptionCode, value: Vec<u8>) -> PcapNGOption<'static> {
    PcapNGOption {
        code,
        len: value.len() as u16,
        value: Cow::Owned(value),
    }
}

fn text(code: OptionCode, s: &str) -> PcapNGOption<'static> {
    opt(code, s.as_bytes().to_vec())
}

impl PcapngWriter {
    /// Creates (or truncates) `path` and writes the section header.
    pub fn create(path: &Path) -> Result<PcapngWriter, PcapngError> {
        let f = File::create(path).map_err(|e| PcapngError {
            path: path.to_path_buf(),
            detail: e.to_string(),
        })?;
        let mut w = PcapngWriter {
            path: path.to_path_buf(),
            out: BufWriter::with_capacity(1 << 16, f),
            ifaces: Vec::new(),
        };
        let mut shb = SectionHeaderBlock {
            block_type: 0,
            block_len1: 0,
            bom: 0,
            major_version: 1,
            minor_version: 0,
            section_len: -1,
            options: vec![
                text(
                    OptionCode::ShbUserAppl,
                    &format!("ovsnoop {} --capture", env!("CARGO_PKG_VERSION")),
                ),
                text(
                    OptionCode::Comment,
                    "overlayd capture with decisions: each frame's comment is what overlayd did with it",
                ),
            ],
            block_len2: 0,
        };
        w.put(shb.to_vec())?;
        Ok(w)
    }

    fn err(&self, detail: impl ToString) -> PcapngError {
        PcapngError {
            path: self.path.clone(),
            detail: detail.to_string(),
        }
    }

    fn put(&mut self, block: Result<Vec<u8>, impl std::fmt::Debug>) -> Result<(), PcapngError> {
        let b = block.map_err(|e| self.err(format!("cannot serialize a block: {e:?}")))?;
        self.out.write_all(&b).map_err(|e| self.err(e))
    }

    /// The id of the interface keyed `key`, if written.
    pub fn find(&self, key: &str) -> Option<u32> {
        self.ifaces
            .iter()
            .position(|i| i.key == key)
            .map(|i| i as u32)
    }

    fn interface(
        &mut self,
        key: String,
        linktype: Linktype,
        name: &str,
        description: &str,
    ) -> Result<u32, PcapngError> {
        if let Some(id) = self.find(&key) {
            return Ok(id);
        }
        let mut idb = InterfaceDescriptionBlock {
            block_type: 0,
            block_len1: 0,
            linktype,
            reserved: 0,
            snaplen: 0,
            options: vec![
                text(OptionCode::IfName, name),
                text(OptionCode::IfDescription, description),
            ],
            block_len2: 0,
            if_tsresol: 9,
            if_tsoffset: 0,
        };
        self.put(idb.to_vec())?;
        self.ifaces.push(Iface { key, frames: 0 });
        Ok(self.ifaces.len() as u32 - 1)
    }

    /// The interface of overlay `name` (VNI `vni`), written if new.
    pub fn overlay(&mut self, name: &str, vni: u32) -> Result<u32, PcapngError> {
        self.interface(
            format!("overlay {name}"),
            Linktype::ETHERNET,
            name,
            &format!("overlay {name}, VNI {vni}: inner frames with overlayd's verdicts"),
        )
    }

    /// The interface of the mux listening on `listen` (for its own
    /// drops), written if new.
    pub fn mux(&mut self, listen: Option<SocketAddr>) -> Result<u32, PcapngError> {
        let at = listen.map_or_else(|| "?".to_string(), |a| a.to_string());
        self.interface(
            format!("mux {at}"),
            Linktype::RAW,
            &format!("mux {at}"),
            &format!("underlay socket {at}: datagrams dropped before any overlay"),
        )
    }

    /// Writes a frame on interface `id` with `comment`, and its direction
    /// as `epb_flags` (tx: outbound from the guest, rx and inject: inbound).
    pub fn packet(
        &mut self,
        id: u32,
        ts_ns: u64,
        data: &[u8],
        len: u32,
        comment: &str,
        dir: CaptureDir,
    ) -> Result<(), PcapngError> {
        let flags: u32 = match dir {
            CaptureDir::Tx => 2,
            CaptureDir::Rx | CaptureDir::Inject => 1,
        };
        let mut epb = EnhancedPacketBlock {
            block_type: 0,
            block_len1: 0,
            if_id: id,
            ts_high: (ts_ns >> 32) as u32,
            ts_low: ts_ns as u32,
            caplen: data.len() as u32,
            origlen: len.max(data.len() as u32),
            data,
            options: vec![
                text(OptionCode::Comment, comment),
                opt(OptionCode(2), flags.to_le_bytes().to_vec()),
            ],
            block_len2: 0,
        };
        self.put(epb.to_vec())?;
        if let Some(i) = self.ifaces.get_mut(id as usize) {
            i.frames += 1;
        }
        Ok(())
    }

    /// Writes the statistics blocks (frames per interface, and `lost`)
    /// and flushes the file.
    pub fn finish(mut self, ts_ns: u64, lost: u64) -> Result<(), PcapngError> {
        for id in 0..self.ifaces.len() {
            let mut options = vec![opt(
                OptionCode::IsbUsrDeliv,
                self.ifaces[id].frames.to_le_bytes().to_vec(),
            )];
            if id == 0 {
                options.push(opt(OptionCode::IsbIfDrop, lost.to_le_bytes().to_vec()));
            }
            if lost > 0 {
                options.push(text(
                    OptionCode::Comment,
                    &format!("{lost} frames lost by this capture (all interfaces): overlayd's capture ring was full, or ovsnoop read too slowly"),
                ));
            }
            let mut isb = InterfaceStatisticsBlock {
                block_type: 0,
                block_len1: 0,
                if_id: id as u32,
                ts_high: (ts_ns >> 32) as u32,
                ts_low: ts_ns as u32,
                options,
                block_len2: 0,
            };
            self.put(isb.to_vec())?;
        }
        self.out.flush().map_err(|e| self.err(e))
    }
}

/// The datagram `payload` as an IP packet from `from` to `to` (UDP, or
/// GRE when `to` has no port), for a raw-IP interface.
pub fn ip_packet(from: SocketAddr, to: SocketAddr, payload: &[u8]) -> Vec<u8> {
    let gre = to.port() == 0;
    let l4 = if gre { 0 } else { 8 };
    let (proto, total) = (if gre { 47u8 } else { 17 }, l4 + payload.len());
    let mut p = Vec::with_capacity(40 + total);
    match (from.ip(), to.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let len = (20 + total).min(65535) as u16;
            p.extend_from_slice(&[0x45, 0]);
            p.extend_from_slice(&len.to_be_bytes());
            p.extend_from_slice(&[0, 0, 0x40, 0, 64, proto, 0, 0]);
            p.extend_from_slice(&s.octets());
            p.extend_from_slice(&d.octets());
            let sum = checksum(&p[..20]);
            p[10..12].copy_from_slice(&sum.to_be_bytes());
        }
        (s, d) => {
            let v6 = |a: IpAddr| match a {
                IpAddr::V6(a) => a.octets(),
                IpAddr::V4(a) => a.to_ipv6_mapped().octets(),
            };
            p.extend_from_slice(&[0x60, 0, 0, 0]);
            p.extend_from_slice(&(total.min(65535) as u16).to_be_bytes());
            p.extend_from_slice(&[proto, 64]);
            p.extend_from_slice(&v6(s));
            p.extend_from_slice(&v6(d));
        }
    }
    if !gre {
        // A zero UDP checksum: "not computed" (IPv4), and Wireshark does
        // not check it unless asked.
        p.extend_from_slice(&from.port().to_be_bytes());
        p.extend_from_slice(&to.port().to_be_bytes());
        p.extend_from_slice(&(total.min(65535) as u16).to_be_bytes());
        p.extend_from_slice(&[0, 0]);
    }
    p.extend_from_slice(payload);
    p
}

fn checksum(b: &[u8]) -> u16 {
    let mut sum: u32 = b
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_parses_back_with_its_interfaces_and_comments() {
        let dir = std::env::temp_dir().join(format!("ovsnoop-pcapng-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("t.pcapng");
        let mut w = PcapngWriter::create(&path).unwrap();
        let a = w.overlay("ov0", 7).unwrap();
        let b = w.overlay("ov1", 8).unwrap();
        assert_eq!((a, b, w.overlay("ov0", 7).unwrap()), (0, 1, 0));
        w.packet(b, 5, &[0u8; 60], 60, "dropped: too-big", CaptureDir::Tx)
            .unwrap();
        w.finish(6, 0).unwrap();
        let data = std::fs::read(&path).unwrap();
        let (_, shb) = pcap_parser::pcapng::parse_sectionheaderblock(&data).unwrap();
        assert!(!shb.big_endian());
        let mut rest = &data[shb.block_len1 as usize..];
        let mut comments = Vec::new();
        let mut names = Vec::new();
        while !rest.is_empty() {
            let (r, block) = pcap_parser::pcapng::parse_block_le(rest).unwrap();
            match block {
                pcap_parser::Block::InterfaceDescription(i) => {
                    let n = i.options.iter().find(|o| o.code == OptionCode::IfName);
                    let n = n.unwrap();
                    names.push(String::from_utf8_lossy(&n.value[..n.len as usize]).to_string());
                }
                pcap_parser::Block::EnhancedPacket(e) => {
                    assert_eq!((e.if_id, e.caplen), (1, 60));
                    let c = e.options.iter().find(|o| o.code == OptionCode::Comment);
                    let c = c.unwrap();
                    comments.push(String::from_utf8_lossy(&c.value[..c.len as usize]).to_string());
                }
                _ => {}
            }
            rest = r;
        }
        assert_eq!(names, ["ov0", "ov1"]);
        assert_eq!(comments, ["dropped: too-big"]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn an_ip_header_is_put_in_front_of_a_mux_drop() {
        let p = ip_packet(
            "10.0.0.1:5000".parse().unwrap(),
            "10.0.0.2:4789".parse().unwrap(),
            &[8, 0, 0, 0, 0, 0, 0x10, 0],
        );
        assert_eq!(p.len(), 20 + 8 + 8);
        assert_eq!(checksum(&p[..20]), 0, "the IPv4 header checksum holds");
        assert_eq!(&p[22..24], &4789u16.to_be_bytes());
    }
}
