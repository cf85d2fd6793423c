//! pcap and pcapng files → records of (link type, bytes, wire length).
//!
//! pcap-parser does the file format; this module tracks each pcapng
//! interface's link type and refuses the link types [`decode`] cannot start
//! from, naming the file and the record.
//!
//! [`decode`]: crate::decode

use crate::decode::LinkType;
use pcap_parser::pcapng::Block;
use pcap_parser::{Linktype, PcapBlockOwned, PcapError};
use std::fs::File;
use std::path::{Path, PathBuf};

/// Why a capture file cannot be read (further).
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The file cannot be opened.
    #[error("cannot open {path}")]
    Open {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not pcap or pcapng, or is corrupt at some record.
    #[error("{path}: record {record}: {detail}")]
    Format {
        /// The file.
        path: PathBuf,
        /// 1-based record (block) number where it went wrong; 0 for the file header.
        record: u64,
        /// What is wrong.
        detail: String,
    },
}

/// One captured frame, borrowed from the reader's buffer.
pub struct Record<'a> {
    /// Link type of the interface it was captured on.
    pub link: LinkType,
    /// Captured bytes.
    pub data: &'a [u8],
    /// Length on the wire.
    pub len: usize,
    /// When it was captured, in nanoseconds since the epoch.
    pub ts_ns: u64,
}

fn link_type(l: Linktype) -> Result<LinkType, String> {
    match l.0 {
        1 => Ok(LinkType::Ethernet),
        113 => Ok(LinkType::LinuxSll),
        276 => Ok(LinkType::LinuxSll2),
        n => Err(format!(
            "link type {n} is not supported (Ethernet 1, Linux cooked 113 and 276 are)"
        )),
    }
}

/// Reads every frame of `path`, calling `each` for each one in order.
pub fn read_file(path: &Path, each: impl FnMut(Record<'_>)) -> Result<u64, ReadError> {
    let file = File::open(path).map_err(|source| ReadError::Open {
        path: path.to_path_buf(),
        source,
    })?;
    read(file, path, each)
}

/// Reads every frame of the capture `file` (named `path` in errors),
/// calling `each` for each one in order.
pub fn read(
    file: impl std::io::Read + Send + 'static,
    path: &Path,
    mut each: impl FnMut(Record<'_>),
) -> Result<u64, ReadError> {
    let fail = |record: u64, detail: String| ReadError::Format {
        path: path.to_path_buf(),
        record,
        detail,
    };
    let mut reader = pcap_parser::create_reader(1 << 20, file)
        .map_err(|e| fail(0, format!("not a pcap or pcapng file ({e})")))?;
    // The legacy header's link type, and whether its fractions are ns.
    let mut legacy: Option<(LinkType, bool)> = None;
    // Each pcapng interface's link type, and its timestamp offset (s) and units per second.
    let mut ifaces: Vec<Result<(LinkType, u64, u64), String>> = Vec::new();
    let mut record = 0u64;
    let mut frames = 0u64;
    loop {
        match reader.next() {
            Ok((offset, block)) => {
                record += 1;
                let got = match block {
                    PcapBlockOwned::LegacyHeader(h) => {
                        let lt = link_type(h.network).map_err(|d| fail(0, d))?;
                        legacy = Some((lt, h.is_nanosecond_precision()));
                        None
                    }
                    PcapBlockOwned::Legacy(b) => {
                        let (lt, nano) =
                            legacy.ok_or_else(|| fail(record, "no file header".into()))?;
                        let frac = u64::from(b.ts_usec) * if nano { 1 } else { 1000 };
                        let ts = u64::from(b.ts_sec) * 1_000_000_000 + frac;
                        Some((lt, b.data, b.origlen as usize, ts))
                    }
                    PcapBlockOwned::NG(Block::SectionHeader(_)) => {
                        ifaces.clear();
                        None
                    }
                    PcapBlockOwned::NG(Block::InterfaceDescription(idb)) => {
                        let res = idb.ts_resolution().unwrap_or(1_000_000);
                        let off = u64::try_from(idb.if_tsoffset).unwrap_or(0);
                        ifaces.push(link_type(idb.linktype).map(|lt| (lt, off, res)));
                        None
                    }
                    PcapBlockOwned::NG(Block::EnhancedPacket(epb)) => {
                        let (lt, off, res) = match ifaces.get(epb.if_id as usize) {
                            Some(Ok(x)) => *x,
                            Some(Err(d)) => return Err(fail(record, d.clone())),
                            None => {
                                return Err(fail(
                                    record,
                                    format!("packet on undeclared interface {}", epb.if_id),
                                ))
                            }
                        };
                        let cap = (epb.caplen as usize).min(epb.data.len());
                        let (sec, frac) = epb.decode_ts(off, res);
                        let ts = u64::from(sec) * 1_000_000_000
                            + u64::from(frac) * 1_000_000_000 / res.max(1);
                        Some((lt, &epb.data[..cap], epb.origlen as usize, ts))
                    }
                    PcapBlockOwned::NG(Block::SimplePacket(spb)) => {
                        let lt = match ifaces.first() {
                            Some(Ok((lt, _, _))) => *lt,
                            Some(Err(d)) => return Err(fail(record, d.clone())),
                            None => return Err(fail(record, "packet before any interface".into())),
                        };
                        let cap = (spb.origlen as usize).min(spb.data.len());
                        Some((lt, &spb.data[..cap], spb.origlen as usize, 0))
                    }
                    PcapBlockOwned::NG(_) => None,
                };
                if let Some((link, data, len, ts_ns)) = got {
                    frames += 1;
                    each(Record {
                        link,
                        data,
                        len,
                        ts_ns,
                    });
                }
                reader.consume(offset);
            }
            Err(PcapError::Eof) => break,
            Err(PcapError::Incomplete(_)) => reader
                .refill()
                .map_err(|e| fail(record + 1, format!("cannot read: {e}")))?,
            Err(e) => return Err(fail(record + 1, format!("corrupt record: {e}"))),
        }
    }
    Ok(frames)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A little-endian pcap file, microsecond timestamps, of link type `lt`.
    fn pcap(lt: u32, frames: &[&[u8]]) -> Vec<u8> {
        let mut f = Vec::new();
        f.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
        f.extend_from_slice(&2u16.to_le_bytes());
        f.extend_from_slice(&4u16.to_le_bytes());
        f.extend_from_slice(&0i32.to_le_bytes());
        f.extend_from_slice(&0u32.to_le_bytes());
        f.extend_from_slice(&65535u32.to_le_bytes());
        f.extend_from_slice(&lt.to_le_bytes());
        for (i, fr) in frames.iter().enumerate() {
            f.extend_from_slice(&(i as u32).to_le_bytes());
            f.extend_from_slice(&0u32.to_le_bytes());
            f.extend_from_slice(&(fr.len() as u32).to_le_bytes());
            f.extend_from_slice(&(fr.len() as u32).to_le_bytes());
            f.extend_from_slice(fr);
        }
        f
    }

    fn tmp(name: &str, bytes: &[u8]) -> PathBuf {
        let p = std::env::temp_dir().join(format!("ovsnoop-{}-{name}", std::process::id()));
        std::fs::write(&p, bytes).unwrap();
        p
    }

    #[test]
    fn pcap_round_trip() {
        let a = [1u8; 60];
        let b: Vec<u8> = (0..=255).collect();
        let p = tmp("rt.pcap", &pcap(1, &[&a, &b]));
        let mut got = Vec::new();
        let n = read_file(&p, |r| got.push((r.link, r.data.to_vec(), r.len, r.ts_ns))).unwrap();
        std::fs::remove_file(&p).unwrap();
        assert_eq!(n, 2);
        assert_eq!(got[0].1, a);
        assert_eq!(got[1].1, b);
        assert_eq!(got[1].2, 256);
        assert_eq!(got[1].3, 1_000_000_000);
        assert!(got.iter().all(|r| r.0 == LinkType::Ethernet));
    }

    #[test]
    fn bad_files_name_file_and_record() {
        let p = tmp(
            "garbage.pcap",
            b"this is not a capture at all, not even close",
        );
        let e = read_file(&p, |_| {}).unwrap_err().to_string();
        std::fs::remove_file(&p).unwrap();
        assert!(e.contains("garbage.pcap") && e.contains("record 0"), "{e}");

        let p = tmp("lt.pcap", &pcap(105, &[&[0u8; 20]]));
        let e = read_file(&p, |_| {}).unwrap_err().to_string();
        std::fs::remove_file(&p).unwrap();
        assert!(e.contains("link type 105"), "{e}");

        let mut bytes = pcap(1, &[&[0u8; 60], &[0u8; 60]]);
        bytes.truncate(bytes.len() - 10);
        let p = tmp("cut.pcap", &bytes);
        let mut n = 0;
        let e = read_file(&p, |_| n += 1).unwrap_err().to_string();
        std::fs::remove_file(&p).unwrap();
        assert_eq!(n, 1);
        assert!(e.contains("cut.pcap") && e.contains("record"), "{e}");
    }
}
