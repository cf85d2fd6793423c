//! Who may use a control socket: overlayd's and varpd's sockets are the keys
//! to the overlay (creating overlays, setting targets, injecting frames), so
//! they are root's.
//!
//! Two fences, as the illumos daemons had (door credentials and file modes):
//!
//! 1. The socket file: mode 0600, owned by the daemon's user (root); or,
//!    with a configured group (`--group`), mode 0660 and that group, so that
//!    an operators' group can run `ovadm`, `ovstat` and the exporter
//!    without root.
//! 2. The peer's credentials (`SO_PEERCRED`), checked on every accepted
//!    connection: root, the daemon's own user, or a member of the group
//!    (primary or supplementary). The file mode alone is one `chmod` away
//!    from open; a refused peer is told why and logged with its pid and uid.

use crate::{ApiError, ErrorKind};
use std::ffi::CString;
use std::io;
use std::os::fd::RawFd;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// Who is allowed on a control socket.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Access {
    /// The operators' group, if one is configured: name and gid.
    group: Option<(String, u32)>,
}

/// The credentials of a connected peer, as the kernel took them at
/// `connect(2)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Peer {
    /// Process id.
    pub pid: i32,
    /// Effective user id.
    pub uid: u32,
    /// Effective group id.
    pub gid: u32,
}

/// Why an access policy cannot be set up.
#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    /// `--group` names no group of this system.
    #[error("unknown group \"{0}\" (not in the group database)")]
    UnknownGroup(String),
    /// The socket file's owner or mode could not be set.
    #[error("{path}: cannot set owner and mode: {source}")]
    Secure {
        /// The socket.
        path: String,
        /// What the system said.
        source: io::Error,
    },
}

impl Access {
    /// Root and the daemon's own user only.
    pub fn owner_only() -> Access {
        Access { group: None }
    }

    /// Root, the daemon's user, and the members of group `name` (looked up
    /// in the group database now).
    pub fn with_group(name: &str) -> Result<Access, AccessError> {
        let unknown = || AccessError::UnknownGroup(name.to_string());
        let c = CString::new(name).map_err(|_| unknown())?;
        // SAFETY: getgrnam_r with buffers that outlive the call; the result
        // pointer is only read when it is set.
        let gid = unsafe {
            let mut grp: libc::group = std::mem::zeroed();
            let mut buf = vec![0 as libc::c_char; 16384];
            let mut out: *mut libc::group = std::ptr::null_mut();
            let r = libc::getgrnam_r(c.as_ptr(), &mut grp, buf.as_mut_ptr(), buf.len(), &mut out);
            if r != 0 || out.is_null() {
                return Err(unknown());
            }
            grp.gr_gid
        };
        Ok(Access {
            group: Some((name.to_string(), gid)),
        })
    }

    /// From a `--group` option: [`Access::with_group`] when given.
    pub fn from_option(group: Option<&str>) -> Result<Access, AccessError> {
        match group {
            Some(g) => Access::with_group(g),
            None => Ok(Access::owner_only()),
        }
    }

    /// The socket file's mode and owner: 0600, or 0660 with the group.
    pub fn secure(&self, path: &Path) -> Result<(), AccessError> {
        let fail = |source| AccessError::Secure {
            path: path.display().to_string(),
            source,
        };
        let mode = match &self.group {
            None => 0o600,
            Some((_, gid)) => {
                std::os::unix::fs::chown(path, None, Some(*gid)).map_err(fail)?;
                0o660
            }
        };
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(fail)
    }

    /// Says who may connect, for the daemon's start-up log.
    pub fn describe(&self) -> String {
        match &self.group {
            None => "mode 0600: root and this daemon's user".into(),
            Some((name, gid)) => {
                format!("mode 0660: root, this daemon's user and group {name} ({gid})")
            }
        }
    }

    /// Whether `peer` may use the socket.
    pub fn allows(&self, peer: &Peer) -> bool {
        // SAFETY: geteuid cannot fail.
        if peer.uid == 0 || peer.uid == unsafe { libc::geteuid() } {
            return true;
        }
        match &self.group {
            None => false,
            Some((_, gid)) => peer.gid == *gid || supplementary_groups(peer.pid).contains(gid),
        }
    }

    /// The peer on `fd`, if it may use the socket; otherwise the error to
    /// answer it with.
    pub fn check(&self, fd: RawFd) -> Result<Peer, ApiError> {
        let peer = peer(fd).map_err(|e| {
            ApiError::new(
                ErrorKind::System,
                format!("cannot read the peer's credentials: {e}"),
            )
        })?;
        if self.allows(&peer) {
            return Ok(peer);
        }
        let who = match &self.group {
            None => "root or this daemon's user".to_string(),
            Some((name, _)) => format!("root, this daemon's user or a member of group {name}"),
        };
        Err(ApiError::new(
            ErrorKind::Permission,
            format!(
                "permission denied: uid {} (pid {}) may not use this socket; it takes {who}",
                peer.uid, peer.pid
            ),
        ))
    }
}

/// `SO_PEERCRED` of the Unix socket `fd`.
pub fn peer(fd: RawFd) -> io::Result<Peer> {
    let mut cred = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: cred and len live across the call, and len is cred's size.
    let r = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            &mut cred as *mut _ as *mut libc::c_void,
            &mut len,
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(Peer {
        pid: cred.pid,
        uid: cred.uid,
        gid: cred.gid,
    })
}

/// The supplementary groups of process `pid` (`Groups:` of
/// /proc/PID/status); empty when it cannot be read.
fn supplementary_groups(pid: i32) -> Vec<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| l.strip_prefix("Groups:")).map(|g| {
                g.split_whitespace()
                    .filter_map(|x| x.parse().ok())
                    .collect()
            })
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;
    use std::os::unix::net::UnixStream;

    #[test]
    fn a_socketpair_peer_is_this_process_and_allowed() {
        let (a, _b) = UnixStream::pair().unwrap();
        let p = peer(a.as_raw_fd()).unwrap();
        assert_eq!(p.pid, std::process::id() as i32);
        // SAFETY: getuid/getgid cannot fail.
        assert_eq!((p.uid, p.gid), unsafe {
            (libc::geteuid(), libc::getegid())
        });
        assert!(Access::owner_only().allows(&p));
        assert!(Access::owner_only().check(a.as_raw_fd()).is_ok());
    }

    #[test]
    fn strangers_need_the_group() {
        // SAFETY: geteuid cannot fail.
        let me = unsafe { libc::geteuid() };
        let stranger = Peer {
            pid: i32::MAX,
            uid: if me == 4242 { 4243 } else { 4242 },
            gid: 4242,
        };
        assert!(!Access::owner_only().allows(&stranger));
        let g = Access {
            group: Some(("ops".into(), 4242)),
        };
        assert!(g.allows(&stranger));
        let other = Access {
            group: Some(("ops".into(), 4343)),
        };
        // pid i32::MAX has no /proc entry: no supplementary groups.
        assert!(!other.allows(&stranger));
        assert!(g.describe().contains("group ops (4242)"));
    }

    #[test]
    fn groups_are_looked_up_and_unknown_ones_named() {
        // Group 0 is "root" on every Linux system.
        let root = Access::with_group("root").unwrap();
        assert_eq!(root.group, Some(("root".into(), 0)));
        let e = Access::with_group("no-such-group-here").unwrap_err();
        assert_eq!(
            e.to_string(),
            "unknown group \"no-such-group-here\" (not in the group database)"
        );
    }
}
