//! varpd's control socket, `RUN_DIR/varpd.sock` (mode 0600): one
//! [`VarpdRequest`] line in, one [`VarpdReply`] line out, as many times as
//! the client likes. A request that does not parse gets an error reply and
//! the connection stays usable; a line longer than [`MAX_MESSAGE`] gets an
//! error reply and the connection is closed. Nothing a client sends can stop
//! the daemon.

use crate::engine::Engine;
use crate::lines::{Line, LineReader};
use overlay_api::access::{Access, AccessError};
use overlay_api::proto::{VarpdReply, VarpdRequest};
use overlay_api::{ApiError, ErrorKind, MAX_MESSAGE};
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};

/// Why the control socket could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// The socket's owner or mode could not be set, or `--group` is unknown.
    #[error(transparent)]
    Access(#[from] AccessError),
    /// Another process answers on the socket.
    #[error("{0}: another varpd is running (its socket answers); stop it first or use another --run-dir")]
    InUse(PathBuf),
    /// Something that is not a socket sits where the socket goes.
    #[error("{0}: exists and is not a socket; remove it or use another --run-dir")]
    NotASocket(PathBuf),
    /// A system call failed.
    #[error("{path}: {source}")]
    Io {
        /// The socket path.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// Binds the control socket at `path`, replacing a stale socket file left
/// by a varpd that died, and gives it `access`'s owner and mode (0600, or
/// 0660 with an operators' group).
pub fn bind(path: &Path, access: &Access) -> Result<UnixListener, ControlError> {
    let io = |source| ControlError::Io {
        path: path.to_path_buf(),
        source,
    };
    match std::fs::symlink_metadata(path) {
        Ok(meta) if !meta.file_type().is_socket() => {
            return Err(ControlError::NotASocket(path.to_path_buf()))
        }
        Ok(_) => {
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                return Err(ControlError::InUse(path.to_path_buf()));
            }
            log::info!("removing stale socket {}", path.display());
            std::fs::remove_file(path).map_err(io)?;
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(e)),
    }
    let listener = UnixListener::bind(path).map_err(io)?;
    access.secure(path)?;
    Ok(listener)
}

/// Accepts clients forever, one task each; a peer that `access` refuses is
/// told why and disconnected.
pub async fn serve(listener: UnixListener, engine: Arc<Engine>, access: Access) {
    loop {
        match listener.accept().await {
            Ok((mut stream, _)) => {
                if let Err(e) = access.check(stream.as_raw_fd()) {
                    log::warn!("control socket: {e}");
                    let mut out = serde_json::to_vec(&VarpdReply::Error { error: e })
                        .expect("replies always serialize");
                    out.push(b'\n');
                    let _ = stream.write_all(&out).await;
                    continue;
                }
                let engine = engine.clone();
                tokio::spawn(async move {
                    if let Err(e) = client(stream, &engine).await {
                        log::debug!("control client: {e}");
                    }
                });
            }
            Err(e) => {
                // Out of descriptors, typically: wait rather than spin.
                log::warn!("control socket accept: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

fn error(kind: ErrorKind, message: String) -> VarpdReply {
    VarpdReply::Error {
        error: ApiError::new(kind, message),
    }
}

async fn answer(engine: &Engine, line: &[u8]) -> VarpdReply {
    use crate::plugin::HandMapping as H;
    match serde_json::from_slice::<VarpdRequest>(line) {
        Ok(VarpdRequest::Status) => engine.status(),
        Ok(VarpdRequest::SetMapping {
            overlay,
            mac,
            dest,
            ip,
        }) => {
            let mut ops = Vec::new();
            ops.extend(dest.map(|d| H::SetVl2(mac, d)));
            ops.extend(ip.map(|i| H::SetVl3(i, mac)));
            if ops.is_empty() {
                return error(
                    ErrorKind::BadRequest,
                    "set-mapping needs a destination or an address".into(),
                );
            }
            engine.hand_mappings(&overlay, ops).await
        }
        Ok(VarpdRequest::RemoveMapping { overlay, mac, ip }) => {
            let mut ops = Vec::new();
            ops.extend(mac.map(H::RemoveVl2));
            ops.extend(ip.map(H::RemoveVl3));
            if ops.is_empty() {
                return error(
                    ErrorKind::BadRequest,
                    "remove-mapping needs a MAC or an address".into(),
                );
            }
            engine.hand_mappings(&overlay, ops).await
        }
        Err(e) => error(ErrorKind::BadRequest, format!("bad request: {e}")),
    }
}

async fn client(stream: UnixStream, engine: &Engine) -> std::io::Result<()> {
    let (rd, mut wr) = stream.into_split();
    let mut lines = LineReader::new(BufReader::new(rd), MAX_MESSAGE);
    loop {
        let (reply, close) = match lines.next().await? {
            Line::Eof => return Ok(()),
            Line::Text(t) => (answer(engine, &t).await, false),
            Line::TooLong(n) => (
                error(
                    ErrorKind::BadRequest,
                    format!("request of {n} bytes is longer than {MAX_MESSAGE}"),
                ),
                true,
            ),
        };
        let mut out = serde_json::to_vec(&reply).map_err(std::io::Error::other)?;
        out.push(b'\n');
        wr.write_all(&out).await?;
        if close {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins;
    use crate::testutil::TempDir;
    use overlay_api::Client;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    async fn roundtrip(stream: &mut UnixStream, lines: &[u8]) -> Vec<VarpdReply> {
        use tokio::io::AsyncBufReadExt;
        stream.write_all(lines).await.unwrap();
        let n = lines.iter().filter(|&&b| b == b'\n').count();
        let mut rd = BufReader::new(stream);
        let mut out = Vec::new();
        for _ in 0..n {
            let mut s = String::new();
            rd.read_line(&mut s).await.unwrap();
            out.push(serde_json::from_str(&s).unwrap());
        }
        out
    }

    #[tokio::test]
    async fn binds_0600_and_replaces_only_stale_sockets() {
        let dir = TempDir::new("control-bind");
        let path = dir.join("varpd.sock");
        let l = bind(&path, &Access::owner_only()).unwrap();
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        // A live socket is not taken over.
        assert!(matches!(
            bind(&path, &Access::owner_only()),
            Err(ControlError::InUse(_))
        ));
        // A dead one is.
        drop(l);
        let _l = bind(&path, &Access::owner_only()).unwrap();
        // With an operators' group (root's, here): 0660 in that group.
        let grouped = dir.join("grouped.sock");
        let _g = bind(&grouped, &Access::with_group("root").unwrap()).unwrap();
        let meta = std::fs::metadata(&grouped).unwrap();
        assert_eq!((meta.permissions().mode() & 0o777, meta.gid()), (0o660, 0));
        // A file that is not a socket is left alone.
        let other = dir.join("not-a-socket");
        std::fs::write(&other, "x").unwrap();
        assert!(matches!(
            bind(&other, &Access::owner_only()),
            Err(ControlError::NotASocket(_))
        ));
        assert!(other.exists());
    }

    #[tokio::test]
    async fn status_and_bad_requests() {
        let dir = TempDir::new("control-serve");
        let path = dir.join("varpd.sock");
        let engine = Arc::new(Engine::new(plugins::all()));
        let access = Access::owner_only();
        let task = tokio::spawn(serve(bind(&path, &access).unwrap(), engine, access));

        // The blocking client ovadm uses.
        let p = path.clone();
        let reply = tokio::task::spawn_blocking(move || {
            Client::connect(&p)
                .unwrap()
                .call_varpd(&VarpdRequest::Status)
        })
        .await
        .unwrap()
        .unwrap();
        match reply {
            VarpdReply::Status {
                linked,
                plugins,
                instances,
            } => {
                assert!(!linked);
                assert_eq!(
                    plugins.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(),
                    ["direct", "files", "etcd"]
                );
                assert!(instances.is_empty());
            }
            other => panic!("{other:?}"),
        }

        // Garbage gets an error and the connection stays usable.
        let mut s = UnixStream::connect(&path).await.unwrap();
        let replies = roundtrip(&mut s, b"hello\n{\"op\":\"reboot\"}\n{\"op\":\"status\"}\n").await;
        for r in &replies[..2] {
            match r {
                VarpdReply::Error { error } => {
                    assert_eq!(error.kind, ErrorKind::BadRequest);
                    assert!(
                        error.message.starts_with("bad request: "),
                        "{}",
                        error.message
                    );
                }
                other => panic!("{other:?}"),
            }
        }
        assert!(matches!(replies[2], VarpdReply::Status { .. }));

        // An over-long line gets an error and the connection is closed.
        let mut s = UnixStream::connect(&path).await.unwrap();
        let mut long = vec![b'{'; MAX_MESSAGE + 1];
        long.push(b'\n');
        let replies = roundtrip(&mut s, &long).await;
        assert!(
            matches!(&replies[0], VarpdReply::Error { error } if error.message.contains("longer than"))
        );
        let mut rest = Vec::new();
        tokio::io::AsyncReadExt::read_to_end(&mut s, &mut rest)
            .await
            .unwrap();
        assert!(rest.is_empty());
        task.abort();
    }
}
