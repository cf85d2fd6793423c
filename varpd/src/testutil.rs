//! Helpers shared by the unit tests.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

/// A fresh directory under the system temp dir, removed on drop.
pub struct TempDir {
    pub path: PathBuf,
}

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: AtomicU32 = AtomicU32::new(0);
        let path = std::env::temp_dir().join(format!(
            "varpd-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        TempDir { path }
    }

    pub fn join(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// A `files.json` in its own [`TempDir`].
pub struct TempFile {
    _dir: TempDir,
    pub path: PathBuf,
}

impl TempFile {
    pub fn new(tag: &str, text: &str) -> TempFile {
        let dir = TempDir::new(tag);
        let path = dir.join("files.json");
        std::fs::write(&path, text).unwrap();
        TempFile { _dir: dir, path }
    }

    pub fn write(&self, text: &str) {
        write_atomically(&self.path, text);
    }
}

/// Replaces a file's contents the way an editor or config manager should:
/// write a sibling, then rename over.
pub fn write_atomically(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// An ARP packet (operation 1 request, 2 reply) from `mac`/`sender_ip`
/// asking for `target_ip`, broadcast, built by hand.
pub fn arp_frame(op: u8, mac: [u8; 6], sender_ip: [u8; 4], target_ip: [u8; 4]) -> Vec<u8> {
    let mut f = vec![0xff; 6];
    f.extend_from_slice(&mac);
    f.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, op]);
    f.extend_from_slice(&mac);
    f.extend_from_slice(&sender_ip);
    f.extend_from_slice(&[0; 6]);
    f.extend_from_slice(&target_ip);
    f.resize(60, 0);
    f
}

fn csum(chunks: &[&[u8]]) -> u16 {
    let mut sum = 0u32;
    for c in chunks {
        for pair in c.chunks(2) {
            sum += (pair[0] as u32) << 8 | *pair.get(1).unwrap_or(&0) as u32;
        }
    }
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// A neighbour solicitation from `mac`/`src` for `target`, to the target's
/// solicited-node group, built by hand; `src` unspecified makes it DAD.
pub fn ns_frame(mac: [u8; 6], src: std::net::Ipv6Addr, target: std::net::Ipv6Addr) -> Vec<u8> {
    let t = target.octets();
    let mut dst = [0u8; 16];
    dst[..2].copy_from_slice(&[0xff, 0x02]);
    dst[11..13].copy_from_slice(&[1, 0xff]);
    dst[13..].copy_from_slice(&t[13..]);
    let mut icmp = vec![135, 0, 0, 0, 0, 0, 0, 0];
    icmp.extend_from_slice(&t);
    if !src.is_unspecified() {
        icmp.extend_from_slice(&[1, 1]);
        icmp.extend_from_slice(&mac);
    }
    let len = (icmp.len() as u16).to_be_bytes();
    let c = csum(&[&src.octets(), &dst, &[0, 0], &len, &[0, 0, 0, 58], &icmp]);
    icmp[2..4].copy_from_slice(&c.to_be_bytes());
    let mut f = vec![0x33, 0x33, 0xff, t[13], t[14], t[15]];
    f.extend_from_slice(&mac);
    f.extend_from_slice(&[0x86, 0xdd, 0x60, 0, 0, 0]);
    f.extend_from_slice(&len);
    f.extend_from_slice(&[58, 255]);
    f.extend_from_slice(&src.octets());
    f.extend_from_slice(&dst);
    f.extend_from_slice(&icmp);
    f
}

/// A DHCPDISCOVER from `mac`: broadcast, IPv4/UDP 68 → 67, a BOOTREQUEST
/// with the magic cookie.
pub fn dhcp_frame(mac: [u8; 6]) -> Vec<u8> {
    overlay_wire::dhcp::request_frame(overlay_api::Mac(mac), 0x0bad_cafe, 1)
}
