//! A daemon for unit tests that need no root: a real [`Daemon`] (control
//! socket and state directory in a temporary directory, one forwarding
//! thread), overlays whose "TAP device" is a pipe, muxes on loopback, a
//! stand-in varpd at the end of a socket pair and clients likewise.

use crate::conn::Conn;
use crate::daemon::{Daemon, Link};
use crate::mux::Mux;
use crate::overlay::Overlay;
use crate::tap::Tap;
use overlay_api::access::Access;
use overlay_api::proto::{DriverMsg, Reply, Request};
use overlay_api::{DestMode, OverlaySpec};
use overlay_core::{OverlayConfig, TargetTable};
use std::io::{BufRead, BufReader};
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;

/// An Ethernet/IPv4/TCP frame (ACK|PSH, from 10.0.0.1 to 10.0.0.2) with
/// `payload` bytes of a pattern, its checksums left for the segmentation
/// to compute: what a guest's TSO hands its TAP device.
pub(crate) fn tcp_super_frame(payload: usize) -> Vec<u8> {
    let mut f = vec![2, 0, 0, 0, 0, 0xb, 2, 0, 0, 0, 0, 0xa, 0x08, 0x00];
    f.extend_from_slice(&[0x45, 0]);
    f.extend_from_slice(&((40 + payload) as u16).to_be_bytes());
    f.extend_from_slice(&[0x12, 0x34, 0x40, 0, 64, 6, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2]);
    f.extend_from_slice(&[0x9c, 0x40, 0x14, 0x51, 0, 0, 1, 0, 0, 0, 0, 7]);
    f.extend_from_slice(&[0x50, 0x18, 0x01, 0xf5, 0, 0, 0, 0]);
    f.extend((0..payload).map(|i| (i * 7 + i / 251) as u8));
    f
}

/// A pipe standing in for a TAP queue (extra `flags` for pipe2(2), such as
/// `O_NONBLOCK`): the read end, and the write end the daemon writes to.
pub(crate) fn pipe(flags: libc::c_int) -> (std::fs::File, OwnedFd) {
    let mut fds = [0; 2];
    // SAFETY: pipe2(2) fills two descriptors we then own.
    assert_eq!(
        unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | flags) },
        0
    );
    // SAFETY: fresh descriptors owned by nothing else.
    unsafe {
        (
            std::fs::File::from_raw_fd(fds[0]),
            OwnedFd::from_raw_fd(fds[1]),
        )
    }
}

/// A test daemon and its temporary directory (removed on drop).
pub(crate) struct Kit {
    pub d: Daemon,
    dir: PathBuf,
}

impl Drop for Kit {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The far end of a line-framed connection (varpd's or a client's).
pub(crate) struct Peer(BufReader<UnixStream>);

impl Peer {
    /// The next JSON line the daemon sent.
    pub fn recv<T: serde::de::DeserializeOwned>(&mut self) -> T {
        let mut line = String::new();
        self.0.read_line(&mut line).expect("a line from the daemon");
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"))
    }
}

impl Kit {
    /// A daemon in a fresh temporary directory.
    pub fn new(name: &str) -> Kit {
        let dir = std::env::temp_dir().join(format!("overlayd-kit-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let d = Daemon::new(
            &dir.join("run"),
            &dir.join("state"),
            Access::owner_only(),
            1,
            crate::spin::Spin::default(),
            None,
        )
        .expect("a daemon");
        Kit { d, dir }
    }

    /// A temporary dynamic VXLAN overlay `name` (VNI `vni`) on a mux of
    /// its own on loopback, configured by "varpd"; returns its id and the
    /// read end of its "TAP device".
    pub fn overlay(&mut self, name: &str, vni: u32) -> (u64, std::fs::File) {
        let (r, w) = pipe(0);
        let port = std::net::UdpSocket::bind("127.0.0.1:0")
            .and_then(|s| s.local_addr())
            .unwrap()
            .port();
        let spec = OverlaySpec {
            name: name.into(),
            encap: "vxlan".into(),
            search: "files".into(),
            vnetid: vni,
            props: [
                ("vxlan/listen_ip".to_string(), "127.0.0.1".to_string()),
                ("vxlan/listen_port".to_string(), port.to_string()),
            ]
            .into(),
            temporary: true,
        };
        let cfg = OverlayConfig::from_spec(&spec, None).unwrap();
        let (oid, mid) = (self.d.next_id(), self.d.next_id());
        let mut mux = Mux::bind(&overlay_wire::vxlan::MODULE, cfg.listen, false).unwrap();
        mux.table.join(cfg.listen, vni, oid, name).unwrap();
        self.d.fwd.muxes.insert(mid, mux);
        let mut ov = Overlay::new(oid, cfg, Tap::for_test(w, name), mid, TargetTable::new(), 0);
        ov.mode = Some(DestMode::Dynamic);
        ov.configured = true;
        self.d.fwd.ports.insert(oid, ov);
        self.d.by_name.insert(name.into(), oid);
        (oid, r)
    }

    /// A stand-in varpd, linked.
    pub fn varpd(&mut self) -> Peer {
        let (a, b) = UnixStream::pair().unwrap();
        a.set_nonblocking(true).unwrap();
        let id = self.d.next_id();
        self.d.link = Some(Link {
            id,
            conn: Conn::new(mio::net::UnixStream::from_std(a)),
            pid: 1,
            plugins: Vec::new(),
        });
        Peer(BufReader::new(b))
    }

    /// A control client; its connection id.
    pub fn client(&mut self) -> (u64, Peer) {
        let (a, b) = UnixStream::pair().unwrap();
        a.set_nonblocking(true).unwrap();
        let id = self.d.next_id();
        self.d
            .conns
            .insert(id, Conn::new(mio::net::UnixStream::from_std(a)));
        (id, Peer(BufReader::new(b)))
    }

    /// Client `id`'s request, handled as the event loop would.
    pub fn request(&mut self, id: u64, peer: &mut Peer, r: &Request) -> Reply {
        let line = serde_json::to_vec(r).unwrap();
        self.d.handle_line(id, &line);
        peer.recv()
    }

    /// The next message the daemon sent "varpd".
    pub fn lookup_sent(varpd: &mut Peer) -> DriverMsg {
        varpd.recv()
    }
}
