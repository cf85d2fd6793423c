//! `-w FILE`: the frames that passed the filters, as a pcap file that
//! tshark, Wireshark and tcpdump read.
//!
//! pcap-parser serializes the header and the records (its `serialize`
//! feature). The file is nanosecond pcap of the source's link type; its
//! header is written with the first frame, so an empty result is still a
//! valid capture (Ethernet). A source that mixes link types (a pcapng with
//! an Ethernet and a cooked interface) cannot be one pcap: that frame is
//! refused with an error naming it.

use crate::decode::LinkType;
use crate::read::Record;
use pcap_parser::{LegacyPcapBlock, Linktype, PcapHeader, ToVec};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

/// The magic of a pcap whose timestamp fractions are nanoseconds.
const MAGIC_NS: u32 = 0xa1b2_3c4d;

/// Why `-w` cannot write.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// The file cannot be created or written.
    #[error("cannot write {path}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Frames of two link types cannot share one pcap file.
    #[error("{path}: frame {frame} has link type {got:?} but the file holds {want:?}; a pcap file has one link type")]
    MixedLinkTypes {
        /// The file.
        path: PathBuf,
        /// The frame's number in the source.
        frame: u64,
        /// The file's link type.
        want: LinkType,
        /// The frame's.
        got: LinkType,
    },
}

/// A pcap file being written.
pub struct PcapWriter {
    path: PathBuf,
    out: BufWriter<File>,
    link: Option<LinkType>,
}

fn linktype(l: LinkType) -> Linktype {
    match l {
        LinkType::Ethernet => Linktype::ETHERNET,
        LinkType::LinuxSll => Linktype::LINUX_SLL,
        LinkType::LinuxSll2 => Linktype::LINUX_SLL2,
    }
}

impl PcapWriter {
    /// Creates (or truncates) `path`.
    pub fn create(path: &Path) -> Result<PcapWriter, WriteError> {
        let f = File::create(path).map_err(|source| WriteError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(PcapWriter {
            path: path.to_path_buf(),
            out: BufWriter::with_capacity(1 << 16, f),
            link: None,
        })
    }

    fn io(&self, source: std::io::Error) -> WriteError {
        WriteError::Io {
            path: self.path.clone(),
            source,
        }
    }

    fn header(&mut self, l: LinkType) -> Result<(), WriteError> {
        let mut h = PcapHeader::new();
        h.magic_number = MAGIC_NS;
        h.snaplen = 262_144;
        h.network = linktype(l);
        let bytes = h
            .to_vec_raw()
            .map_err(|e| self.io(std::io::Error::other(format!("{e:?}"))))?;
        self.out.write_all(&bytes).map_err(|e| self.io(e))?;
        self.link = Some(l);
        Ok(())
    }

    /// Appends frame number `frame` of the source.
    pub fn write(&mut self, frame: u64, r: &Record<'_>) -> Result<(), WriteError> {
        match self.link {
            None => self.header(r.link)?,
            Some(l) if l != r.link => {
                return Err(WriteError::MixedLinkTypes {
                    path: self.path.clone(),
                    frame,
                    want: l,
                    got: r.link,
                })
            }
            Some(_) => {}
        }
        let b = LegacyPcapBlock {
            ts_sec: (r.ts_ns / 1_000_000_000) as u32,
            ts_usec: (r.ts_ns % 1_000_000_000) as u32,
            caplen: r.data.len() as u32,
            origlen: r.len.max(r.data.len()) as u32,
            data: r.data,
        };
        let bytes = b
            .to_vec_raw()
            .map_err(|e| self.io(std::io::Error::other(format!("{e:?}"))))?;
        self.out.write_all(&bytes).map_err(|e| self.io(e))
    }

    /// Writes the header if no frame did, and flushes.
    pub fn finish(mut self) -> Result<(), WriteError> {
        if self.link.is_none() {
            self.header(LinkType::Ethernet)?;
        }
        self.out.flush().map_err(|e| self.io(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_files_read_back() {
        let p = std::env::temp_dir().join(format!("ovsnoop-w-{}.pcap", std::process::id()));
        let mut w = PcapWriter::create(&p).unwrap();
        let a = [7u8; 60];
        let r = Record {
            link: LinkType::Ethernet,
            data: &a,
            len: 70,
            ts_ns: 1_700_000_000_123_456_789,
        };
        w.write(1, &r).unwrap();
        let sll = Record {
            link: LinkType::LinuxSll,
            ..r
        };
        assert!(matches!(
            w.write(2, &sll),
            Err(WriteError::MixedLinkTypes { frame: 2, .. })
        ));
        w.finish().unwrap();
        let mut got = Vec::new();
        crate::read::read_file(&p, |r| got.push((r.data.to_vec(), r.len, r.ts_ns))).unwrap();
        std::fs::remove_file(&p).unwrap();
        assert_eq!(got, vec![(a.to_vec(), 70, 1_700_000_000_123_456_789)]);
    }
}
